"""Unit tests for controller.api.validation_xrepo: each bad input yields its own reason and field."""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.api.validation_xrepo import validate_cross_account

ROLE = "arn:aws:iam::444455556666:role/ci"


def base(**override):
    spec = {
        "repositories": ["app", "tools/base"],
        "grants": [{"principals": [{"accountId": "111122223333"}, {"roleArn": ROLE}], "access": "Pull"}],
    }
    spec.update(override)
    return spec


def grant(*principals, access="Pull"):
    return {"principals": list(principals), "access": access}


CASES = {
    "account-id-too-short": (
        base(grants=[grant({"accountId": "12345"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].accountId", "12 digits"),
    "account-id-not-digits": (
        base(grants=[grant({"accountId": "11112222333a"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].accountId", "12 digits"),
    "role-arn-is-a-user": (
        base(grants=[grant({"roleArn": "arn:aws:iam::444455556666:user/bob"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].roleArn", "role ARN"),
    "role-arn-short-account": (
        base(grants=[grant({"roleArn": "arn:aws:iam::4444:role/ci"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].roleArn", "role ARN"),
    "organization-id-malformed": (
        base(grants=[grant({"organizationId": "org-123"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].organizationId", "o- followed by"),
    "empty-grant-list": (
        base(grants=[]), reasons.INVALID_GRANT, "spec.grants", "at least one grant"),
    "grants-missing": (
        {"repositories": ["app"]}, reasons.INVALID_GRANT, "spec.grants", "Field required"),
    "grant-without-principals": (
        base(grants=[grant()]), reasons.INVALID_GRANT, "spec.grants[0].principals", "at least one principal"),
    "principal-sets-none": (
        base(grants=[grant({})]), reasons.INVALID_GRANT, "spec.grants[0].principals[0]", "sets none"),
    "principal-sets-two": (
        base(grants=[grant({"accountId": "111122223333", "roleArn": ROLE})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0]", "sets accountId, roleArn"),
    "duplicate-principal-same-grant": (
        base(grants=[grant({"accountId": "111122223333"}, {"accountId": "111122223333"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[1]", "already granted by spec.grants[0].principals[0]"),
    "duplicate-principal-different-access": (
        base(grants=[grant({"roleArn": ROLE}), grant({"roleArn": ROLE}, access="Push")]),
        reasons.INVALID_GRANT, "spec.grants[1].principals[0]", "already granted by spec.grants[0].principals[0] (access Pull)"),
    "unknown-access-level": (
        base(grants=[grant({"accountId": "111122223333"}, access="Read")]),
        reasons.INVALID_GRANT, "spec.grants[0].access", "'Pull', 'Push' or 'PullPush'"),
    "unknown-principal-field": (
        base(grants=[grant({"userArn": "arn:aws:iam::444455556666:user/bob"})]),
        reasons.INVALID_GRANT, "spec.grants[0].principals[0].userArn", "Extra inputs"),
    "repository-upper-case": (
        base(repositories=["App"]), reasons.INVALID_REPOSITORY_NAME, "spec.repositories[0]", "lower-case"),
    "repository-trailing-slash": (
        base(repositories=["app", "team/"]), reasons.INVALID_REPOSITORY_NAME, "spec.repositories[1]", "lower-case"),
    "repository-too-short": (
        base(repositories=["a"]), reasons.INVALID_REPOSITORY_NAME, "spec.repositories[0]", "2-256"),
    "repository-list-empty": (
        base(repositories=[]), reasons.INVALID_REPOSITORY_NAME, "spec.repositories",
        "at least one of spec.repositories and spec.repositoryPrefixes"),
    "prefix-upper-case": (
        base(repositoryPrefixes=["Team"]), reasons.INVALID_REPOSITORY_NAME, "spec.repositoryPrefixes[0]", "ROOT or"),
    "prefix-trailing-slash": (
        base(repositoryPrefixes=["team/"]), reasons.INVALID_REPOSITORY_NAME, "spec.repositoryPrefixes[0]", "ROOT or"),
    "prefix-duplicate": (
        base(repositoryPrefixes=["team", "team"]), reasons.INVALID_SPEC, "spec.repositoryPrefixes[1]", "listed twice"),
    "repository-duplicate": (
        base(repositories=["app", "app"]), reasons.INVALID_SPEC, "spec.repositories[1]", "listed twice"),
    "bad-region": (
        base(region="Europe"), reasons.INVALID_SPEC, "spec.region", "pattern"),
    "bad-access-role": (
        base(roleArn="role/admin"), reasons.INVALID_SPEC, "spec.roleArn", "role ARN"),
    "unknown-top-level-field": (
        base(principals=[]), reasons.INVALID_SPEC, "spec.principals", "Extra inputs"),
}


@pytest.mark.parametrize("spec,reason,field,text", CASES.values(), ids=CASES.keys())
def test_bad_input_yields_its_reason(spec, reason, field, text):
    resolved, problems = validate_cross_account("team-a", "pullers", spec, cluster_id="c")
    assert resolved is None
    matching = [p for p in problems if p.field == field]
    assert matching, problems
    assert matching[0].reason == reason
    assert text in matching[0].message, matching[0].message


def test_every_problem_is_reported_at_once():
    spec = base(
        repositories=["app", "app"],
        grants=[grant({}), grant({"accountId": "111122223333"}), grant({"accountId": "111122223333"}, access="PullPush")],
    )
    _, problems = validate_cross_account("team-a", "pullers", spec, cluster_id="c")
    assert [p.field for p in problems] == [
        "spec.grants[0].principals[0]", "spec.grants[2].principals[0]", "spec.repositories[1]"
    ]


def test_valid_spec_resolves_with_defaults():
    resolved, problems = validate_cross_account(
        "team-a", "pullers",
        base(grants=[grant({"accountId": "111122223333"}), grant({"organizationId": "o-abcdefghij"}, access="PullPush")]),
        cluster_id="prod",
    )
    assert problems == []
    assert resolved.owner == "prod/team-a/pullers"
    assert resolved.spec.deletionPolicy == "Delete" and resolved.spec.driftPolicy == "Remediate"


def test_same_account_as_account_and_role_is_not_a_duplicate():
    # a role is a narrower principal than its account: both may be granted
    _, problems = validate_cross_account(
        "team-a", "pullers",
        base(grants=[grant({"accountId": "444455556666"}), grant({"roleArn": ROLE}, access="Push")]),
        cluster_id="c",
    )
    assert problems == []


def test_example_manifest_is_valid():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "crossaccountrepoaccess.yaml"
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == "regaccess.io/v1alpha1" and manifest["kind"] == "CrossAccountRepoAccess"
    meta = manifest["metadata"]
    resolved, problems = validate_cross_account(meta["namespace"], meta["name"], manifest["spec"], cluster_id="c")
    assert problems == [] and resolved is not None


@pytest.mark.parametrize("override", [
    {"repositories": [], "repositoryPrefixes": ["team"]},
    {"repositoryPrefixes": ["ROOT"]},
    {"repositoryPrefixes": ["team/cache", "ghcr"]},
], ids=["prefixes-only", "root", "both"])
def test_prefixes_alone_or_beside_repositories_are_valid(override):
    resolved, problems = validate_cross_account("team-a", "pullers", base(**override), cluster_id="c")
    assert problems == [] and resolved.spec.repositoryPrefixes == override["repositoryPrefixes"]
