"""CrossAccountRepoAccess end to end (issue 5): statements in ECR repository
policies, through the real API server and the operator process, against the AWS
test server.

Given ECR repositories (one with a statement Terraform wrote), when users apply,
resync, delete and misconfigure CrossAccountRepoAccess objects, then the
operator writes only its own statements, leaves everyone else's as they were,
makes no ECR write on a no-op resync (the harness's call record), retries
through IAM eventual consistency (the harness's fail_first fault) and reports
bad input with a reason and a Warning Event without touching ECR.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import ApiError, condition, wait_for
from tests.e2e.support import (
    ACCOUNT,
    SETTLE,
    custom_resource,
    delete_all,
    quiet_resync,
    wait_condition,
    wait_ready,
    wait_warning,
    xrepo_path,
)

pytestmark = pytest.mark.e2e

# The action sets of ../shared/DESIGN.md, written out here as the test's own oracle.
PULL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
PUSH = {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"}
FOREIGN = {
    "Sid": "TerraformReadOnly",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
}
INVALID_POLICY = "Invalid repository policy provided"


def xrepo(namespace: str, name: str, spec: dict) -> dict:
    return custom_resource("CrossAccountRepoAccess", namespace, name, spec)


def policy(session, repository: str) -> dict | None:
    ecr = session.client("ecr")
    try:
        return json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        return None


def as_set(value) -> set:
    return set(value) if isinstance(value, list) else {value}


def ours(document: dict, foreign_sids: set[str]) -> list[dict]:
    return [s for s in document["Statement"] if s.get("Sid") not in foreign_sids]


def grant_of(statement: dict) -> tuple:
    """(principals, actions, org condition) of a statement, by meaning."""
    principal = statement["Principal"]
    principals = frozenset(as_set(principal["AWS"])) if isinstance(principal, dict) else principal
    orgs = (statement.get("Condition") or {}).get("StringEquals", {}).get("aws:PrincipalOrgID")
    return principals, frozenset(as_set(statement["Action"])), frozenset(as_set(orgs)) if orgs else None


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


def test_statements_coexist_with_foreign_and_each_other_then_delete_and_retain(
        kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    ecr = aws_e2e.client("ecr")
    app, worker = f"{namespace}/app", f"{namespace}/worker"
    arns = {r: ecr.create_repository(repositoryName=r)["repository"]["repositoryArn"] for r in (app, worker)}
    ecr.set_repository_policy(repositoryName=app, policyText=json.dumps(
        {"Version": "2012-10-17", "Statement": [FOREIGN]}))
    ci_role = "arn:aws:iam::333333333333:role/ci"

    kube.create(xrepo_path(namespace), xrepo(namespace, "alpha", {
        "repositories": [app, worker],
        "grants": [
            {"principals": [{"accountId": "222222222222"}, {"roleArn": ci_role}], "access": "PullPush"},
            {"principals": [{"organizationId": "o-abcdefghij"}], "access": "Pull"},
        ],
    }))
    obj = wait_ready(kube, xrepo_path(namespace, "alpha"))
    rows = {r["name"]: r for r in obj["status"]["repositories"]}
    assert {n: (r["arn"], r["synced"]) for n, r in rows.items()} == {app: (arns[app], True), worker: (arns[worker], True)}
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    alpha_grants = {
        (frozenset({"arn:aws:iam::222222222222:root", ci_role}), frozenset(PULL | PUSH), None),
        ("*", frozenset(PULL), frozenset({"o-abcdefghij"})),
    }
    document = policy(aws_e2e, app)
    assert document["Statement"][0] == FOREIGN  # kept exactly, in its place
    alpha_app = ours(document, {"TerraformReadOnly"})
    assert {grant_of(s) for s in alpha_app} == alpha_grants
    assert all("Resource" not in s and s["Effect"] == "Allow" for s in alpha_app)
    assert {grant_of(s) for s in policy(aws_e2e, worker)["Statement"]} == alpha_grants
    alpha_sids = {s["Sid"] for s in alpha_app}

    # A second resource on the same repository: both sets of statements, and Terraform's.
    kube.create(xrepo_path(namespace), xrepo(namespace, "beta", {
        "repositories": [app], "grants": [{"principals": [{"accountId": "444444444444"}], "access": "Pull"}]}))
    wait_ready(kube, xrepo_path(namespace, "beta"))
    document = policy(aws_e2e, app)
    assert document["Statement"][0] == FOREIGN
    beta_app = ours(document, {"TerraformReadOnly"} | alpha_sids)
    assert [grant_of(s) for s in beta_app] == [(frozenset({"arn:aws:iam::444444444444:root"}), frozenset(PULL), None)]
    assert {grant_of(s) for s in ours(document, {"TerraformReadOnly"}) if s["Sid"] in alpha_sids} == alpha_grants
    assert not any(sid.startswith(beta_app[0]["Sid"].split("G")[0]) for sid in alpha_sids)  # distinct prefixes

    # A no-op resync of both makes zero ECR writes (and reads each repository).
    mark = quiet_resync(kube, [xrepo_path(namespace, "alpha"), xrepo_path(namespace, "beta")])(calls)
    assert calls.writes(since=mark, service="ecr") == []
    assert calls.count("ecr", "GetRepositoryPolicy", since=mark) >= 3

    # Deleting alpha removes only its statements; worker had nothing else: its policy goes.
    kube.delete(xrepo_path(namespace, "alpha"))
    wait_for(lambda: kube.get_or_none(xrepo_path(namespace, "alpha")) is None, SETTLE, "alpha deleted")
    document = policy(aws_e2e, app)
    assert document["Statement"][0] == FOREIGN
    assert [grant_of(s) for s in document["Statement"][1:]] == [grant_of(beta_app[0])]
    assert policy(aws_e2e, worker) is None

    # Retain: beta's statement outlives beta.
    kube.merge_patch(xrepo_path(namespace, "beta"), {"spec": {"deletionPolicy": "Retain"}})
    wait_for(lambda: kube.get(xrepo_path(namespace, "beta"))["status"].get("observedGeneration") == 2, SETTLE,
             "Retain seen")
    kube.delete(xrepo_path(namespace, "beta"))
    wait_for(lambda: kube.get_or_none(xrepo_path(namespace, "beta")) is None, SETTLE, "beta deleted")
    assert policy(aws_e2e, app)["Statement"] == document["Statement"]


def test_eventual_consistency_retried_until_the_principal_is_accepted(
        kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    server = aws_server_session
    repository = f"{namespace}/fresh"
    aws_e2e.client("ecr").create_repository(repositoryName=repository)
    role = f"arn:aws:iam::{ACCOUNT}:role/{namespace}-just-created"
    failures = 2
    try:
        # ECR answers as it does while IAM has not yet propagated a new role.
        server.faults.configure(fail_first=[{"service": "ecr", "operation": "SetRepositoryPolicy", "count": failures,
                                             "code": "InvalidParameterException", "message": INVALID_POLICY}])
        mark = server.calls.mark()
        kube.create(xrepo_path(namespace), xrepo(namespace, "fresh", {
            "repositories": [repository], "grants": [{"principals": [{"roleArn": role}], "access": "Pull"}]}))
        obj = wait_condition(kube, xrepo_path(namespace, "fresh"), status="False", reason="DependencyMissing")
        ready = condition(obj, "Ready")
        assert role in ready["message"] and "eventual consistency" in ready["message"]
        assert obj["status"]["repositories"][0]["rejectedSince"]
        wait_warning(kube, namespace, "fresh", "DependencyMissing")

        obj = wait_ready(kube, xrepo_path(namespace, "fresh"), timeout=60)
        assert server.faults.injected("failFirst", "ecr", "SetRepositoryPolicy") == failures
        assert server.calls.count("ecr", "SetRepositoryPolicy", since=mark) == failures + 1
        row = obj["status"]["repositories"][0]
        assert row["synced"] is True and "rejectedSince" not in row
        assert [grant_of(s) for s in policy(aws_e2e, repository)["Statement"]] == [
            (frozenset({role}), frozenset(PULL), None)]
    finally:
        server.faults.clear()


def test_invalid_specs_reason_event_and_no_ecr_call(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    repository = f"{namespace}/app"
    aws_e2e.client("ecr").create_repository(repositoryName=repository)
    invalid = {
        "duplicate-principal": ({"grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"},
                                            {"principals": [{"accountId": "222222222222"}], "access": "Push"}]},
                                "InvalidGrant", "222222222222"),
        "two-kinds": ({"grants": [{"principals": [{"accountId": "222222222222",
                                                   "organizationId": "o-abcdefghij"}], "access": "Pull"}]},
                      "InvalidGrant", "accountId, organizationId"),
        "no-kind": ({"grants": [{"principals": [{}], "access": "Pull"}]}, "InvalidGrant", "sets none"),
        "duplicate-repository": ({"repositories": [repository, repository],
                                  "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"}]},
                                 "InvalidSpec", "listed twice"),
    }
    mark = calls.mark()
    for name, (spec, _, _) in invalid.items():
        kube.create(xrepo_path(namespace), xrepo(namespace, name, {"repositories": [repository], **spec}))
    for name, (_, reason, detail) in invalid.items():
        obj = wait_condition(kube, xrepo_path(namespace, name), reason=reason, what=f"{name}: {reason}")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and detail in ready["message"], (name, ready)
        # Judged before any AWS call: no repository was ever observed for it.
        assert obj["status"].get("repositories") in (None, []), (name, obj["status"])
        wait_warning(kube, namespace, name, reason)
    # Nothing written anywhere. (Reads are not counted here: resources of earlier tests in this
    # module share the AWS server and may run their drift checks meanwhile; the AWS tier proves
    # an invalid spec makes no call at all.)
    assert calls.writes(since=mark) == []
    assert policy(aws_e2e, repository) is None

    # A valid resource on the same repository is served as usual.
    kube.create(xrepo_path(namespace), xrepo(namespace, "fine", {
        "repositories": [repository], "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"}]}))
    wait_ready(kube, xrepo_path(namespace, "fine"))
    assert len(policy(aws_e2e, repository)["Statement"]) == 1


@pytest.mark.parametrize("spec, field", [
    ({"repositories": ["app"], "grants": [{"principals": [{"accountId": "12345678901"}], "access": "Pull"}]},
     "accountId"),
    ({"repositories": ["app"], "grants": [{"principals": [{"roleArn": "arn:aws:iam::1:role/x"}], "access": "Pull"}]},
     "roleArn"),
    ({"repositories": ["app"], "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Admin"}]},
     "access"),
    ({"repositories": ["app"], "grants": []}, "grants"),
    ({"repositories": ["Bad_Repo"], "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"}]},
     "repositories"),
], ids=["account-id-11-digits", "malformed-role-arn", "unknown-access", "empty-grants", "repository-pattern"])
def test_schema_rejects_at_admission(kube, namespace, spec, field):
    with pytest.raises(ApiError) as info:
        kube.create(xrepo_path(namespace), xrepo(namespace, "bad", spec))
    assert info.value.status == 422
    assert field in info.value.body
