"""Pure decisions for ECR pull-through cache rules: desired, compare, recreate, ownership, drift."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.validation import validate_registry_credential
from controller.aws import pull_through_cache as rules
from controller.reconcile import pull_through_cache as step

OURS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/ns/cred-AbCdEf"
THEIRS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/other/x-ZyXwVu"


def _resolved(**ptc: Any):
    spec = {"source": {"secretRef": {"name": "src"}}, "pullThroughCache": ptc}
    resolved, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c1")
    assert problems == []
    return resolved


def _rule(**fields: Any) -> dict[str, Any]:
    return {"ecrRepositoryPrefix": "docker", "upstreamRegistryUrl": "registry-1.docker.io",
            "upstreamRegistry": "docker-hub", "credentialArn": OURS, **fields}


DESIRED_CASES = {
    "docker-hub-defaults-its-url": (
        {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "docker"},
        _rule(),
    ),
    "github-defaults-ghcr": (
        {"upstreamRegistry": "github-container-registry", "ecrRepositoryPrefix": "ghcr"},
        _rule(ecrRepositoryPrefix="ghcr", upstreamRegistryUrl="ghcr.io", upstreamRegistry="github-container-registry"),
    ),
    "gitlab-defaults-its-url": (
        {"upstreamRegistry": "gitlab-container-registry", "ecrRepositoryPrefix": "gitlab"},
        _rule(ecrRepositoryPrefix="gitlab", upstreamRegistryUrl="registry.gitlab.com",
              upstreamRegistry="gitlab-container-registry"),
    ),
    "azure-takes-the-given-url": (
        {"upstreamRegistry": "azure-container-registry", "upstreamRegistryUrl": "myreg1.azurecr.io",
         "ecrRepositoryPrefix": "ROOT"},
        _rule(ecrRepositoryPrefix="ROOT", upstreamRegistryUrl="myreg1.azurecr.io",
              upstreamRegistry="azure-container-registry"),
    ),
}


@pytest.mark.parametrize(("spec", "expected"), DESIRED_CASES.values(), ids=DESIRED_CASES.keys())
def test_desired_is_the_exact_create_request(spec, expected):
    assert rules.desired(_resolved(**spec), OURS) == expected


def test_desired_refuses_a_spec_without_pull_through_cache():
    resolved, _ = validate_registry_credential("ns", "cred", {"source": {"secretRef": {"name": "src"}}},
                                               cluster_id="c1")
    with pytest.raises(ValueError):
        rules.desired(resolved, OURS)


COMPARE_CASES = {
    "same": (_rule(), _rule(), (), False),
    "credential-changed": (_rule(), _rule(credentialArn=THEIRS), ("credentialArn",), False),
    "credential-missing": (_rule(), {k: v for k, v in _rule().items() if k != "credentialArn"},
                           ("credentialArn",), False),
    "upstream-url-changed": (_rule(), _rule(upstreamRegistryUrl="ghcr.io", upstreamRegistry="github-container-registry"),
                             ("upstreamRegistryUrl", "upstreamRegistry"), True),
    "everything-changed": (_rule(), _rule(upstreamRegistryUrl="quay.io", upstreamRegistry="quay", credentialArn=None),
                           ("upstreamRegistryUrl", "upstreamRegistry", "credentialArn"), True),
    "timestamps-and-registry-id-ignored": (_rule(), _rule(createdAt=1, updatedAt=2, registryId="123456789012"), (),
                                           False),
}


@pytest.mark.parametrize(("want", "observed", "differences", "recreate"), COMPARE_CASES.values(),
                         ids=COMPARE_CASES.keys())
def test_compare_names_the_differences_and_whether_ecr_can_update_them(want, observed, differences, recreate):
    assert rules.compare(want, observed) == differences
    assert rules.needs_recreate(differences) is recreate


OWNERSHIP_CASES = {
    "our-credential": (_rule(), None, False, rules.Ownership.OURS),
    "our-credential-even-when-adopting": (_rule(), None, True, rules.Ownership.OURS),
    "recorded-in-status-credential-changed-by-hand": (
        _rule(credentialArn=THEIRS), {"ecrRepositoryPrefix": "docker", "credentialArn": OURS}, False,
        rules.Ownership.OURS),
    "foreign": (_rule(credentialArn=THEIRS), None, False, rules.Ownership.CONFLICT),
    "foreign-with-status-for-another-prefix": (
        _rule(credentialArn=THEIRS), {"ecrRepositoryPrefix": "ghcr"}, False, rules.Ownership.CONFLICT),
    "foreign-without-credential": (_rule(credentialArn=None), None, False, rules.Ownership.CONFLICT),
    "foreign-adopted": (_rule(credentialArn=THEIRS), None, True, rules.Ownership.ADOPT),
}


@pytest.mark.parametrize(("observed", "previous", "adopt", "expected"), OWNERSHIP_CASES.values(),
                         ids=OWNERSHIP_CASES.keys())
def test_ownership(observed, previous, adopt, expected):
    assert rules.ownership(observed, secret_arn=OURS, previous=previous, adopt=adopt) is expected


DRIFT_CASES = {
    "credential-changed-by-hand": (("credentialArn",), _rule(), _rule(), ["credentialArn"]),
    "our-secret-changed-is-not-drift": (("credentialArn",), _rule(credentialArn=THEIRS), _rule(), []),
    "upstream-changed-by-hand": (("upstreamRegistryUrl", "upstreamRegistry"), _rule(), _rule(),
                                 ["upstreamRegistryUrl", "upstreamRegistry"]),
    "spec-changed-upstream-is-not-drift": (("upstreamRegistryUrl", "upstreamRegistry"),
                                           _rule(upstreamRegistryUrl="quay.io"), _rule(), []),
    "never-synced-is-not-drift": (("credentialArn",), None, _rule(), []),
    "another-prefix-is-not-drift": (("credentialArn",), _rule(ecrRepositoryPrefix="ghcr"), _rule(), []),
}


@pytest.mark.parametrize(("differences", "previous", "want", "expected"), DRIFT_CASES.values(), ids=DRIFT_CASES.keys())
def test_drift_is_a_difference_from_what_we_last_synced(differences, previous, want, expected):
    previous = rules.status_of(previous) if previous else None
    assert step._drift_fields(differences, want, previous) == expected


def test_status_has_prefix_url_and_credential_only():
    assert rules.status_of({**_rule(), "createdAt": 1}) == {
        "ecrRepositoryPrefix": "docker", "upstreamRegistryUrl": "registry-1.docker.io", "credentialArn": OURS}
