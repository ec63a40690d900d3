"""RegistryCredential validation (pure): every rule names its field and reason."""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.api.validation import (
    default_secret_name,
    secret_value_problems,
    validate_registry_credential,
)

SRC = {"source": {"secretRef": {"name": "src"}}}


def validate(spec, namespace="team", name="hub"):
    return validate_registry_credential(namespace, name, spec, cluster_id="c1")


def test_defaults_are_resolved():
    resolved, problems = validate(SRC)
    assert problems == []
    assert resolved.secret_name == "regaccess/team/hub"
    assert resolved.policy_name == "regaccess-team-hub"
    assert resolved.owner == "c1/team/hub"
    assert resolved.upstream_url is None
    assert resolved.spec.deletionPolicy == "Delete" and resolved.spec.driftPolicy == "Remediate"


@pytest.mark.parametrize("namespace, name, ptc, expected", [
    ("team", "hub", False, "regaccess/team/hub"),
    ("team", "from-docker", False, "regaccess/team/from-docker/credential"),
    ("team", "hub", True, "ecr-pullthroughcache/team/hub"),
    ("team", "my-secret", True, "ecr-pullthroughcache/team/my-secret/credential"),
], ids=["plain", "arn-suffix-collision", "pull-through-cache", "ptc-collision"])
def test_default_secret_name(namespace, name, ptc, expected):
    assert default_secret_name(namespace, name, pull_through_cache=ptc) == expected


PTC = {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "docker-hub"}

BAD = {
    "missing-source": ({}, reasons.INVALID_SPEC, "spec.source"),
    "unknown-field": ({**SRC, "secrett": {}}, reasons.INVALID_SPEC, "spec.secrett"),
    "secret-ref-other-namespace": ({"source": {"secretRef": {"name": "src", "namespace": "x"}}}, reasons.INVALID_SPEC,
                                   "spec.source.secretRef.namespace"),
    "arn-suffix-name": ({**SRC, "secret": {"name": "team/registry-abc123"}}, reasons.INVALID_SECRET_NAME, "spec.secret.name"),
    "name-charset": ({**SRC, "secret": {"name": "bad name"}}, reasons.INVALID_SPEC, "spec.secret.name"),
    "name-too-long": ({**SRC, "secret": {"name": "a" * 513}}, reasons.INVALID_SPEC, "spec.secret.name"),
    "window-too-short": ({**SRC, "secret": {"recoveryWindowInDays": 6}}, reasons.INVALID_SPEC, "spec.secret.recoveryWindowInDays"),
    "window-too-long": ({**SRC, "secret": {"recoveryWindowInDays": 31}}, reasons.INVALID_SPEC, "spec.secret.recoveryWindowInDays"),
    "window-and-force": ({**SRC, "secret": {"recoveryWindowInDays": 7, "forceDeleteWithoutRecovery": True}},
                         reasons.INVALID_DELETION_SETTINGS, "spec.secret"),
    "reserved-tag": ({**SRC, "secret": {"tags": {"regaccess.io/owner": "me"}}}, reasons.INVALID_SPEC, "spec.secret.tags"),
    "aws-tag": ({**SRC, "secret": {"tags": {"aws:x": "y"}}}, reasons.INVALID_SPEC, "spec.secret.tags"),
    "too-many-tags": ({**SRC, "secret": {"tags": {f"k{i}": "v" for i in range(50)}}}, reasons.INVALID_SPEC, "spec.secret.tags"),
    "malformed-role-arn": ({**SRC, "grants": {"executionRoles": ["arn:aws:iam::12:role/x"]}}, reasons.INVALID_SPEC,
                           "spec.grants.executionRoles"),
    "duplicate-role": ({**SRC, "grants": {"executionRoles": ["exec", "arn:aws:iam::123456789012:role/exec"]}},
                       reasons.INVALID_SPEC, "spec.grants.executionRoles[1]"),
    "duplicate-family": ({**SRC, "consumers": {"ecsTaskDefinitions": [{"family": "a"}, {"family": "a"}]}},
                         reasons.INVALID_SPEC, "spec.consumers.ecsTaskDefinitions"),
    "duplicate-job": ({**SRC, "consumers": {"batchJobDefinitions": [{"name": "j"}, {"name": "j"}]}},
                      reasons.INVALID_SPEC, "spec.consumers.batchJobDefinitions"),
    "bad-region": ({**SRC, "region": "mars-1"}, reasons.INVALID_SPEC, "spec.region"),
    "bad-deletion-policy": ({**SRC, "deletionPolicy": "Keep"}, reasons.INVALID_SPEC, "spec.deletionPolicy"),
    "bad-drift-policy": ({**SRC, "driftPolicy": "Ignore"}, reasons.INVALID_SPEC, "spec.driftPolicy"),
    "ptc-name-without-prefix": ({**SRC, "secret": {"name": "mine"}, "pullThroughCache": PTC},
                                reasons.INVALID_PULL_THROUGH_CACHE, "spec.secret.name"),
    "ptc-kms-key": ({**SRC, "secret": {"kmsKeyId": "alias/mine"}, "pullThroughCache": PTC},
                    reasons.INVALID_PULL_THROUGH_CACHE, "spec.secret.kmsKeyId"),
    "ptc-azure-without-url": ({**SRC, "pullThroughCache": {**PTC, "upstreamRegistry": "azure-container-registry"}},
                              reasons.INVALID_PULL_THROUGH_CACHE, "spec.pullThroughCache.upstreamRegistryUrl"),
    "ptc-azure-bad-url": ({**SRC, "pullThroughCache": {**PTC, "upstreamRegistry": "azure-container-registry",
                                                         "upstreamRegistryUrl": "example.com"}},
                          reasons.INVALID_PULL_THROUGH_CACHE, "spec.pullThroughCache.upstreamRegistryUrl"),
    "ptc-unknown-upstream": ({**SRC, "pullThroughCache": {**PTC, "upstreamRegistry": "nexus"}}, reasons.INVALID_SPEC,
                             "spec.pullThroughCache.upstreamRegistry"),
    "ptc-upstream-without-credential": ({**SRC, "pullThroughCache": {**PTC, "upstreamRegistry": "quay"}},
                                        reasons.UPSTREAM_TAKES_NO_CREDENTIAL, "spec.pullThroughCache.upstreamRegistry"),
    "ptc-prefix-too-short": ({**SRC, "pullThroughCache": {**PTC, "ecrRepositoryPrefix": "a"}}, reasons.INVALID_SPEC,
                             "spec.pullThroughCache.ecrRepositoryPrefix"),
    "ptc-prefix-uppercase": ({**SRC, "pullThroughCache": {**PTC, "ecrRepositoryPrefix": "Docker"}}, reasons.INVALID_SPEC,
                             "spec.pullThroughCache.ecrRepositoryPrefix"),
}


@pytest.mark.parametrize("spec, reason, field", BAD.values(), ids=BAD.keys())
def test_bad_spec(spec, reason, field):
    resolved, problems = validate(spec)
    assert resolved is None
    assert any(p.reason == reason and p.field.startswith(field) for p in problems), problems
    assert all(p.message for p in problems)


def test_default_policy_name_too_long_asks_for_one():
    resolved, problems = validate(SRC, namespace="n" * 63, name="x" * 70)
    assert resolved is None
    assert problems[0].reason == reasons.INVALID_POLICY_NAME
    assert "spec.grants.policyName" in problems[0].message
    resolved, problems = validate({**SRC, "grants": {"policyName": "short"}}, namespace="n" * 63, name="x" * 70)
    assert problems == [] and resolved.policy_name == "short"


def test_azure_with_url_and_ptc_defaults():
    resolved, problems = validate({**SRC, "pullThroughCache": {"upstreamRegistry": "azure-container-registry",
                                                              "upstreamRegistryUrl": "myregistry.azurecr.io",
                                                              "ecrRepositoryPrefix": "ROOT"}})
    assert problems == [] and resolved.upstream_url == "myregistry.azurecr.io"
    resolved, _ = validate({**SRC, "pullThroughCache": PTC})
    assert resolved.upstream_url == "registry-1.docker.io"
    assert resolved.secret_name == "ecr-pullthroughcache/team/hub"


@pytest.mark.parametrize("size, ok", [(65_536, True), (65_537, False)], ids=["at-limit", "over-limit"])
def test_secret_value_limit(size, ok):
    problems = secret_value_problems("x" * size)
    assert (problems == []) is ok
    if not ok:
        assert problems[0].reason == reasons.SECRET_VALUE_TOO_LARGE and "65536" in problems[0].message


# ----------------------------------------------------------------------------- upstream rules

import botocore.session  # noqa: E402

from controller.api.models import UpstreamRegistry  # noqa: E402
from controller.api.validation import UPSTREAMS, validate_registry_credential  # noqa: E402

ECR_MODEL = botocore.session.get_session().get_service_model("ecr")


@pytest.mark.upstream
def test_every_upstream_in_botocores_model_has_a_rule():
    values = set(ECR_MODEL.shape_for("UpstreamRegistry").enum)
    assert set(UPSTREAMS) == values == {u.value for u in UpstreamRegistry}


def _ptc(upstream, url=None):
    ptc = {"upstreamRegistry": upstream, "ecrRepositoryPrefix": "cache"}
    if url:
        ptc["upstreamRegistryUrl"] = url
    return {**SRC, "pullThroughCache": ptc}


UPSTREAM_CASES = {
    # upstream, URL given -> (reason of the first problem or None, URL used)
    "docker-hub": ("docker-hub", None, None, "registry-1.docker.io"),
    "github": ("github-container-registry", None, None, "ghcr.io"),
    "gitlab": ("gitlab-container-registry", None, None, "registry.gitlab.com"),
    "azure": ("azure-container-registry", "myreg12.azurecr.io", None, "myreg12.azurecr.io"),
    "chainguard": ("chainguard", None, None, "cgr.dev"),
    "chainguard-wrong-url": ("chainguard", "registry.example.com", reasons.INVALID_PULL_THROUGH_CACHE, None),
    "docker-hub-wrong-url": ("docker-hub", "docker.io", reasons.INVALID_PULL_THROUGH_CACHE, None),
    "quay": ("quay", None, reasons.UPSTREAM_TAKES_NO_CREDENTIAL, None),
    "k8s": ("k8s", None, reasons.UPSTREAM_TAKES_NO_CREDENTIAL, None),
    "ecr-public": ("ecr-public", None, reasons.UPSTREAM_TAKES_NO_CREDENTIAL, None),
    # ECR to ECR and ECR Public Premium authenticate with roles: the rule sits beside the secret
    "ecr": ("ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com", None,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
    "ecr-no-url": ("ecr", None, reasons.INVALID_PULL_THROUGH_CACHE, None),
    "ecr-wrong-url": ("ecr", "public.ecr.aws", reasons.INVALID_PULL_THROUGH_CACHE, None),
    "ecr-public-premium": ("ecr-public-premium", None, None, "ecr-premium.aws.com"),
    "ecr-public-premium-wrong-url": ("ecr-public-premium", "public.ecr.aws", reasons.INVALID_PULL_THROUGH_CACHE, None),
}


@pytest.mark.parametrize("upstream, url, reason, used", UPSTREAM_CASES.values(), ids=UPSTREAM_CASES.keys())
def test_upstream_rules(upstream, url, reason, used):
    resolved, problems = validate_registry_credential("ns", "cred", _ptc(upstream, url), cluster_id="c")
    if reason is None:
        assert problems == [] and resolved.upstream_url == used
        # the secret rules hold for every upstream that takes a credential, and only for those
        prefix = "ecr-pullthroughcache/" if UPSTREAMS[upstream].credential else "regaccess/"
        assert resolved.secret_name.startswith(prefix)
    else:
        assert resolved is None and problems[0].reason == reason
        if reason == reasons.UPSTREAM_TAKES_NO_CREDENTIAL:
            assert upstream in problems[0].message and "credential" in problems[0].message


def test_chainguard_keeps_the_secret_rules():
    spec = {**_ptc("chainguard"), "secret": {"kmsKeyId": "alias/mine"}}
    _, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c")
    assert [p.field for p in problems] == ["spec.secret.kmsKeyId"]


# ----------------------------------------------------------------------------- role upstreams

CUSTOM_ROLE = "arn:aws:iam::123456789012:role/ecr-pull-through"
UPSTREAM_ROLE = "arn:aws:iam::210987654321:role/premium-entitled"


def _premium(**fields):
    spec = _ptc("ecr-public-premium")
    spec["pullThroughCache"].update(fields)
    return spec


def test_premium_with_both_roles_resolves_and_leaves_the_secret_alone():
    spec = {**_premium(customRoleArn=CUSTOM_ROLE, upstreamRoleArn=UPSTREAM_ROLE), "secret": {"kmsKeyId": "alias/mine"}}
    resolved, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c")
    assert problems == []
    # no credential rule: the secret keeps the ordinary name, and a customer managed key is fine
    assert resolved.secret_name == "regaccess/ns/cred"
    assert resolved.spec.pullThroughCache.upstreamRoleArn == UPSTREAM_ROLE


def test_premium_with_neither_role_uses_the_service_linked_role():
    resolved, problems = validate_registry_credential("ns", "cred", _premium(), cluster_id="c")
    assert problems == [] and resolved.upstream_url == "ecr-premium.aws.com"


PREMIUM_CASES = {
    # fields -> (field of the one problem, words in its message)
    "missing-customRoleArn": ({"upstreamRoleArn": UPSTREAM_ROLE}, "customRoleArn", "together"),
    "missing-upstreamRoleArn": ({"customRoleArn": CUSTOM_ROLE}, "upstreamRoleArn", "together"),
    "upstream-role-other-partition": (
        {"customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": "arn:aws-cn:iam::210987654321:role/premium"},
        "upstreamRoleArn", "aws-cn"),
    "upstream-role-not-an-arn": ({"customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": "premium-entitled"},
                                 "upstreamRoleArn", "IAM role ARN"),
    "custom-role-a-user": ({"customRoleArn": "arn:aws:iam::123456789012:user/bob", "upstreamRoleArn": UPSTREAM_ROLE},
                           "customRoleArn", "IAM role ARN"),
    "upstream-prefix": ({"customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": UPSTREAM_ROLE,
                         "upstreamRepositoryPrefix": "team"}, "upstreamRepositoryPrefix", "only ecr"),
}


@pytest.mark.parametrize("fields, field, words", PREMIUM_CASES.values(), ids=PREMIUM_CASES.keys())
def test_premium_role_rules(fields, field, words):
    resolved, problems = validate_registry_credential("ns", "cred", _premium(**fields), cluster_id="c")
    assert resolved is None
    assert [(p.reason, p.field) for p in problems] == [
        (reasons.INVALID_PULL_THROUGH_CACHE, f"spec.pullThroughCache.{field}")]
    assert words in problems[0].message


def test_custom_role_in_another_partition_is_accepted():
    # customRoleArn lives in the rule's own account, whatever its partition; only the
    # upstream role must be in aws.
    spec = _premium(customRoleArn="arn:aws-cn:iam::123456789012:role/ecr", upstreamRoleArn=UPSTREAM_ROLE)
    assert validate_registry_credential("ns", "cred", spec, cluster_id="c")[1] == []


def test_premium_takes_no_credential_arn_field():
    # credentialArn is not a spec field at all: the secret is the credential, and the
    # schema refuses the member by name.
    _, problems = validate_registry_credential("ns", "cred", _premium(credentialArn="arn:x"), cluster_id="c")
    assert [p.reason for p in problems] == [reasons.INVALID_SPEC]


@pytest.mark.parametrize("upstream", ["docker-hub", "chainguard", "ecr"])
def test_upstream_role_is_for_premium_only(upstream):
    url = "123456789012.dkr.ecr.us-east-1.amazonaws.com" if upstream == "ecr" else None
    spec = _ptc(upstream, url)
    spec["pullThroughCache"]["upstreamRoleArn"] = UPSTREAM_ROLE
    _, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c")
    assert [p.field for p in problems] == ["spec.pullThroughCache.upstreamRoleArn"]
    assert "ecr-public-premium" in problems[0].message


def test_credential_upstreams_take_no_custom_role():
    spec = _ptc("docker-hub")
    spec["pullThroughCache"]["customRoleArn"] = CUSTOM_ROLE
    _, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c")
    assert [p.field for p in problems] == ["spec.pullThroughCache.customRoleArn"]


def test_ecr_to_ecr_takes_custom_role_and_upstream_prefix():
    spec = _ptc("ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com")
    spec["pullThroughCache"].update(customRoleArn=CUSTOM_ROLE, upstreamRepositoryPrefix="team-a")
    resolved, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c")
    assert problems == [] and resolved.spec.pullThroughCache.upstreamRepositoryPrefix == "team-a"
