"""Pure parts of the pull-through cache rule kind: desired, compare, recreate, owner via the credential, drift."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.validation import validate_registry_credential
from controller.aws import pull_through_cache as rules
from controller.aws.protocol import Action, Difference, Observation, Owner
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


# --------------------------------------------------------------------------- the adapter's owner verdict

OWNER = "c1/ns/cred"  # _resolved()'s mark
THEIR_MARK = "c1/other/x"


def _want(secret_arn: str | None = OURS, recorded: dict[str, Any] | None = None) -> rules.DesiredRule:
    return rules.desired_rule(_resolved(upstreamRegistry="docker-hub", ecrRepositoryPrefix="docker"), secret_arn,
                              recorded)


RULE_OWNER_CASES = {
    # (want, observed rule, the credential secret's owner tag, owner, mark, difference paths)
    "credential-is-our-secret": (_want(), _rule(), None, Owner.OURS, OWNER, ()),
    "recorded-in-status-credential-changed-by-hand": (
        _want(recorded={"ecrRepositoryPrefix": "docker"}), _rule(credentialArn=THEIRS), None, Owner.OURS, OWNER,
        ("credentialArn",)),
    "credential-secret-carries-another-owners-mark": (
        _want(), _rule(credentialArn=THEIRS), THEIR_MARK, Owner.FOREIGN, THEIR_MARK, ("credentialArn",)),
    "credential-secret-carries-our-mark-under-another-arn": (
        _want(), _rule(credentialArn=THEIRS), OWNER, Owner.OURS, OWNER, ("credentialArn",)),
    "credential-secret-unmarked": (_want(), _rule(credentialArn=THEIRS), None, Owner.UNMARKED, None,
                                   ("credentialArn",)),
    "no-credential": (_want(), _rule(credentialArn=None), None, Owner.UNMARKED, None, ("credentialArn",)),
    "status-for-another-prefix-does-not-count": (
        _want(recorded={"ecrRepositoryPrefix": "ghcr"}), _rule(credentialArn=THEIRS), None, Owner.UNMARKED, None,
        ("credentialArn",)),
    "precheck-our-secret-by-name": (_want(None), _rule(), None, Owner.OURS, OWNER, ()),
    "precheck-another-owners-secret": (_want(None), _rule(credentialArn=THEIRS), THEIR_MARK, Owner.FOREIGN,
                                       THEIR_MARK, ()),
    "upstream-differs": (_want(), _rule(upstreamRegistryUrl="ghcr.io", upstreamRegistry="github-container-registry"),
                         None, Owner.OURS, OWNER, ("upstreamRegistryUrl", "upstreamRegistry")),
}


@pytest.mark.parametrize(("want", "observed", "credential_mark", "owner", "mark", "paths"),
                         RULE_OWNER_CASES.values(), ids=RULE_OWNER_CASES.keys())
def test_a_rule_is_owned_through_its_credential(want, observed, credential_mark, owner, mark, paths):
    needs_lookup = not rules.owned_without_lookup(want, observed)
    seen = rules.observation_of(want, observed, credential_mark=credential_mark if needs_lookup else None)
    assert (seen.owner, seen.mark, seen.fields) == (owner, mark, paths)
    # The credential's tag is looked up only when what we know does not settle it.
    assert needs_lookup is (credential_mark is not None or owner is not Owner.OURS)


PREDICT_CASES = {
    "create": (Action.CREATE, (), 1),
    "new-credential-is-one-update": (Action.UPDATE, ("credentialArn",), 1),
    "new-upstream-is-delete-and-create": (Action.UPDATE, ("upstreamRegistryUrl", "upstreamRegistry"), 2),
    "adopt-points-it-at-our-secret": (Action.ADOPT, ("credentialArn",), 1),
    "delete": (Action.DELETE, (), 1),
}


@pytest.mark.parametrize(("action", "paths", "calls"), PREDICT_CASES.values(), ids=PREDICT_CASES.keys())
def test_predict_counts_the_calls_a_write_would_make(action, paths, calls):
    seen = Observation(True, Owner.OURS, tuple(Difference(p) for p in paths), observed=_rule())
    assert rules.RULE.predict(_want(), seen, action).calls == calls


# --------------------------------------------------------------------------- role upstreams (ecr, ecr-public-premium)

CUSTOM_ROLE = "arn:aws:iam::123456789012:role/ecr-pull-through"
UPSTREAM_ROLE = "arn:aws:iam::210987654321:role/premium"
OTHER_ROLE = "arn:aws:iam::210987654321:role/someone-elses"


def _premium_resolved(**roles: Any):
    return _resolved(upstreamRegistry="ecr-public-premium", ecrRepositoryPrefix="premium", **roles)


def _premium_rule(**fields: Any) -> dict[str, Any]:
    return {"ecrRepositoryPrefix": "premium", "upstreamRegistryUrl": "ecr-premium.aws.com",
            "upstreamRegistry": "ecr-public-premium", "customRoleArn": CUSTOM_ROLE,
            "upstreamRoleArn": UPSTREAM_ROLE, **fields}


def test_premium_desired_sends_both_roles_and_no_credential():
    # credentialArn is absent, not None: ECR refuses a credential for this upstream.
    want = rules.desired(_premium_resolved(customRoleArn=CUSTOM_ROLE, upstreamRoleArn=UPSTREAM_ROLE), OURS)
    assert want == _premium_rule()


def test_premium_with_the_service_linked_role_sends_no_role():
    assert rules.desired(_premium_resolved(), OURS) == {
        "ecrRepositoryPrefix": "premium", "upstreamRegistryUrl": "ecr-premium.aws.com",
        "upstreamRegistry": "ecr-public-premium"}


def test_ecr_to_ecr_desired_sends_custom_role_and_upstream_prefix():
    resolved = _resolved(upstreamRegistry="ecr", ecrRepositoryPrefix="mirror", customRoleArn=CUSTOM_ROLE,
                         upstreamRegistryUrl="210987654321.dkr.ecr.eu-west-1.amazonaws.com",
                         upstreamRepositoryPrefix="team-a")
    assert rules.desired(resolved, OURS) == {
        "ecrRepositoryPrefix": "mirror", "upstreamRegistryUrl": "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
        "upstreamRegistry": "ecr", "customRoleArn": CUSTOM_ROLE, "upstreamRepositoryPrefix": "team-a"}


ROLE_COMPARE_CASES = {
    # want, observed -> differences, recreate, the UpdatePullThroughCacheRule request
    "same": (_premium_rule(), _premium_rule(), (), False, None),
    "upstream-role-changed": (_premium_rule(), _premium_rule(upstreamRoleArn=OTHER_ROLE), ("upstreamRoleArn",), False,
                              {"ecrRepositoryPrefix": "premium", "customRoleArn": CUSTOM_ROLE,
                               "upstreamRoleArn": UPSTREAM_ROLE}),
    "custom-role-changed": (_premium_rule(), _premium_rule(customRoleArn=OTHER_ROLE), ("customRoleArn",), False,
                            {"ecrRepositoryPrefix": "premium", "customRoleArn": CUSTOM_ROLE}),
    # Update cannot clear a role: roles added by hand to a service-linked-role rule mean delete + create.
    "roles-added-by-hand": ({k: v for k, v in _premium_rule().items() if not k.endswith("RoleArn")}, _premium_rule(),
                            ("customRoleArn", "upstreamRoleArn"), True, None),
    "upstream-prefix-changed": (
        {"ecrRepositoryPrefix": "m", "upstreamRegistryUrl": "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
         "upstreamRegistry": "ecr", "upstreamRepositoryPrefix": "team-a"},
        {"ecrRepositoryPrefix": "m", "upstreamRegistryUrl": "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
         "upstreamRegistry": "ecr", "upstreamRepositoryPrefix": "team-b"},
        ("upstreamRepositoryPrefix",), True, None),
}


@pytest.mark.parametrize(("want", "observed", "differences", "recreate", "update"), ROLE_COMPARE_CASES.values(),
                         ids=ROLE_COMPARE_CASES.keys())
def test_roles_compare_and_update(want, observed, differences, recreate, update):
    assert rules.compare(want, observed) == differences
    assert rules.needs_recreate(differences, want) is recreate
    if not recreate:
        assert rules.update_request(want, differences) == update


def test_a_hand_edit_of_the_upstream_role_is_drift():
    previous = rules.status_of(_premium_rule())
    assert previous["upstreamRoleArn"] == UPSTREAM_ROLE and "credentialArn" in previous
    assert step._drift_fields(("upstreamRoleArn",), _premium_rule(), previous) == ["upstreamRoleArn"]
    # a new upstreamRoleArn in the spec is our change, not drift
    assert step._drift_fields(("upstreamRoleArn",), _premium_rule(upstreamRoleArn=OTHER_ROLE), previous) == []


def test_a_role_rule_is_ours_only_by_our_record():
    resolved = _premium_resolved(customRoleArn=CUSTOM_ROLE, upstreamRoleArn=UPSTREAM_ROLE)
    recorded = rules.desired_rule(resolved, OURS, {"ecrRepositoryPrefix": "premium"})
    stranger = rules.desired_rule(resolved, OURS, None)
    assert rules.observation_of(recorded, _premium_rule(upstreamRoleArn=OTHER_ROLE)).owner is Owner.OURS
    # no credential to carry a mark: an unrecorded rule is unmarked (a conflict unless adoptExisting)
    assert not rules.owned_without_lookup(stranger, _premium_rule())
    assert rules.observation_of(stranger, _premium_rule()).owner is Owner.UNMARKED


def test_predict_a_role_change_is_one_update():
    want = rules.desired_rule(_premium_resolved(customRoleArn=CUSTOM_ROLE, upstreamRoleArn=UPSTREAM_ROLE), OURS,
                              {"ecrRepositoryPrefix": "premium"})
    seen = Observation(True, Owner.OURS, (Difference("upstreamRoleArn"),), observed=_premium_rule())
    assert rules.RULE.predict(want, seen, Action.UPDATE).calls == 1
