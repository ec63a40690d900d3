"""A hand edit that strips our marks does not take an object away from us (issue 30 §1).

Against the moto HTTP server, through the whole RegistryCredential reconcile, status
carried between runs as the handlers carry it: the inline policy is replaced with
``{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}`` (no Sid, as people
and consoles write them), or the secret's ``regaccess.io/owner`` tag is removed. Our record
(status) holds both, so each is drift: restored with the marks under Remediate, reported as
``MarkRemoved`` under Report (and still, with no write, at the next check), and deleted
with the resource. The server's call record measures the writes.
"""

from __future__ import annotations

import json

import pytest

from controller.api import reasons
from controller.aws import iam_policies
from controller.aws.protocol import OWNER_TAG
from controller.reconcile.conditions import get_condition
from tests.aws.test_registry_credential_aws import BASE, CLUSTER, NAME, NS, SECRET_NAME, Driver
from tests.harness import world

pytestmark = pytest.mark.aws

ROLE = "exec-mark"
POLICY = f"regaccess-{NS}-{NAME}"
WIDENED = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
OWNER = f"{CLUSTER}/{NS}/{NAME}"


@pytest.fixture
def boto(aws):
    import boto3

    return boto3.session.Session(region_name="us-east-1")


def client_of(boto):
    return lambda service: boto.client(service)


def driver(factory, boto, policy: str) -> Driver:
    world.make_execution_role(client_of(boto), ROLE)
    d = Driver(factory, {**BASE, "driftPolicy": policy, "grants": {"executionRoles": [ROLE]}})
    assert d.run().ready
    return d


def strip_policy_marks(boto) -> None:
    boto.client("iam").put_role_policy(RoleName=ROLE, PolicyName=POLICY, PolicyDocument=json.dumps(WIDENED))


def document(boto) -> dict | None:
    iam = boto.client("iam")
    if POLICY not in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        return None
    return world.role_policy(client_of(boto), ROLE, POLICY)


def owner_tag(boto) -> str | None:
    tags = boto.client("secretsmanager").describe_secret(SecretId=SECRET_NAME).get("Tags") or []
    return {t["Key"]: t["Value"] for t in tags}.get(OWNER_TAG)


def drift_fields(d: Driver) -> set[tuple[str, str]]:
    return {(r["object"], r["field"]) for r in d.status.get("drift") or []}


def test_a_widened_policy_without_marks_is_restored_with_them(factory, aws_server, boto):
    d = driver(factory, boto, "Remediate")
    strip_policy_marks(boto)
    mark = aws_server.calls.mark()

    result = d.run(drift_check=True)

    assert result.ready, d.status["conditions"]
    restored = document(boto)
    assert iam_policies.sid_marks(restored) == {iam_policies.sid_prefix(OWNER)}
    assert all(s["Resource"] != "*" for s in restored["Statement"])
    assert [c.operation for c in aws_server.calls.writes(since=mark)] == ["PutRolePolicy"]
    assert (f"rolePolicy/{ROLE}", "mark") in drift_fields(d)
    drifted = get_condition(d.status["conditions"], "Drifted")
    assert drifted["status"] == "False" and drifted["reason"] == reasons.DRIFT_REMEDIATED
    assert result.drift_remediated

    # Restored: the next check is quiet again.
    mark = aws_server.calls.mark()
    assert d.run(drift_check=True).ready
    assert aws_server.calls.writes(since=mark) == []


def test_under_report_a_stripped_mark_is_reported_as_mark_removed_and_stays_reported(factory, aws_server, boto):
    d = driver(factory, boto, "Report")
    strip_policy_marks(boto)
    mark = aws_server.calls.mark()

    d.run(drift_check=True)
    for _ in range(2):  # the next check still reports it, and writes nothing either
        drifted = get_condition(d.status["conditions"], "Drifted")
        ready = get_condition(d.status["conditions"], "Ready")
        assert drifted["status"] == "True" and drifted["reason"] == reasons.MARK_REMOVED
        assert ready["status"] == "False" and ready["reason"] == reasons.MARK_REMOVED
        assert (f"rolePolicy/{ROLE}", "mark") in drift_fields(d)
        assert document(boto) == WIDENED
        assert aws_server.calls.writes(since=mark) == []
        d.run(drift_check=True)


def test_deleting_the_resource_removes_the_stripped_policy(factory, aws_server, boto):
    d = driver(factory, boto, "Remediate")
    strip_policy_marks(boto)

    assert d.delete().ready

    assert document(boto) is None  # the widening does not outlive its resource


def test_a_persons_policy_we_never_held_stays_a_conflict(factory, aws_server, boto):
    world.make_execution_role(client_of(boto), ROLE)
    strip_policy_marks(boto)  # there before us, under our name: a stranger's
    d = Driver(factory, {**BASE, "grants": {"executionRoles": [ROLE]}})
    mark = aws_server.calls.mark()

    result = d.run()

    assert get_condition(d.status["conditions"], "Ready")["reason"] == reasons.OWNERSHIP_CONFLICT
    assert "PutRolePolicy" not in [c.operation for c in aws_server.calls.writes(since=mark)]
    assert document(boto) == WIDENED
    assert result.outcome == "conflict"
    assert d.delete().ready
    assert document(boto) == WIDENED  # not ours, so not deleted either


@pytest.mark.parametrize("policy", ["Remediate", "Report"])
def test_a_secret_whose_owner_tag_was_removed_is_ours(factory, aws_server, boto, policy):
    d = Driver(factory, {**BASE, "driftPolicy": policy})
    assert d.run().ready
    sm = boto.client("secretsmanager")
    sm.untag_resource(SecretId=SECRET_NAME, TagKeys=[OWNER_TAG])
    mark = aws_server.calls.mark()

    d.run(drift_check=True)

    assert ("secret", "mark") in drift_fields(d)
    drifted = get_condition(d.status["conditions"], "Drifted")
    if policy == "Remediate":
        assert owner_tag(boto) == OWNER
        assert [c.operation for c in aws_server.calls.writes(since=mark)] == ["TagResource"]
        assert drifted["reason"] == reasons.DRIFT_REMEDIATED
    else:
        assert owner_tag(boto) is None
        assert aws_server.calls.writes(since=mark) == []
        assert drifted["status"] == "True" and drifted["reason"] == reasons.MARK_REMOVED
    d.spec = {**d.spec, "secret": {"forceDeleteWithoutRecovery": True}}
    assert d.delete().ready
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=SECRET_NAME)


def test_a_same_named_secret_created_again_by_someone_else_is_not_ours(factory, aws_server, boto):
    """The record names the secret's ARN (AWS adds a random suffix): a secret deleted and
    created again under our name by someone else is a stranger's, not ours without a tag."""
    d = Driver(factory, BASE)
    assert d.run().ready
    sm = boto.client("secretsmanager")
    sm.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
    sm.create_secret(Name=SECRET_NAME, SecretString='{"username":"other","password":"other-pw-1"}')
    mark = aws_server.calls.mark()

    d.run(drift_check=True)

    assert get_condition(d.status["conditions"], "Ready")["reason"] == reasons.OWNERSHIP_CONFLICT
    assert aws_server.calls.writes(since=mark) == []
    assert owner_tag(boto) is None
