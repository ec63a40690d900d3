"""Two namespaces, one IAM role: an inline policy that is not ours is never written or deleted.

Given a real API server, the operator as a process and the AWS test server, when a
RegistryCredential's ``grants.policyName`` names an inline policy on a granted role that
a person wrote (a), or that another namespace's RegistryCredential put there (b, even
with ``adoptExisting: true``), then the resource is Ready=False with reason
OwnershipConflict naming the policy and the role (and, for (b), the other owner's Sid
prefix), a Warning Event is posted, the harness's call record shows no PutRolePolicy or
DeleteRolePolicy from then on, the document is unchanged, and deleting the refused
resource leaves the policy in place.

The call record names operations, not their parameters, so "no write to that policy" is
asserted as "no IAM policy write at all" over a window in which only the refused
resource acts (the other one is converged: its drift checks only read).
"""

from __future__ import annotations

import uuid

import pytest

from controller.aws import iam_policies, policydoc
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import (
    SETTLE,
    basic_auth_secret,
    custom_resource,
    delete_all,
    rc_path,
    wait_condition,
    wait_ready,
    wait_warning,
)
from tests.harness import world

pytestmark = pytest.mark.e2e

POLICY_WRITES = ("PutRolePolicy", "DeleteRolePolicy")
# A person's policy that grants more than ours would; it must survive untouched.
PERSONS = {"Version": "2012-10-17", "Statement": [
    {"Sid": "OnCallReadsAllSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}


@pytest.fixture
def two_namespaces(kube, operator, namespace):
    team_b = f"t-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(team_b)
    yield namespace, team_b
    # Shown by pytest only when the test failed: what the operator said about these namespaces.
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line or team_b in line)[-20000:])
    for ns in (namespace, team_b):
        delete_all(kube, ns)


def policy_writes(calls, since: int) -> list[str]:
    return [c.operation for c in calls.writes(since=since, service="iam") if c.operation in POLICY_WRITES]


def document(session, role: str, policy: str) -> dict:
    return policydoc.parse(session.client("iam").get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])


def credential(kube, namespace: str, role: str, policy: str, **spec) -> None:
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub"))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "hub", {
        "source": {"secretRef": {"name": "hub"}},
        "secret": {"forceDeleteWithoutRecovery": True},
        "grants": {"executionRoles": [role], "policyName": policy},
        **spec,
    }))


def delete_and_wait(kube, namespace: str) -> None:
    kube.delete(rc_path(namespace, "hub"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "hub")) is None, SETTLE, f"{namespace}/hub deleted")


def test_a_persons_inline_policy_is_a_conflict_and_survives_the_delete(kube, two_namespaces, aws_e2e, aws_server_session):
    team_a, _ = two_namespaces
    calls = aws_server_session.calls
    role, policy = f"{team_a}-exec", f"{team_a}-oncall-read"
    world.make_execution_role(aws_e2e.client, role)
    aws_e2e.client("iam").put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=policydoc.dumps(PERSONS))
    mark = calls.mark()

    credential(kube, team_a, role, policy)

    obj = wait_condition(kube, rc_path(team_a, "hub"), status="False", reason="OwnershipConflict")
    message = condition(obj, "Ready")["message"]
    assert f"inline policy {policy} on role {role}" in message and "adoptExisting" in message
    wait_warning(kube, team_a, "hub", "OwnershipConflict")
    assert policy_writes(calls, mark) == []
    assert policydoc.equivalent(document(aws_e2e, role, policy), PERSONS)

    delete_and_wait(kube, team_a)

    assert policy_writes(calls, mark) == []
    assert policydoc.equivalent(document(aws_e2e, role, policy), PERSONS)


def test_another_namespaces_policy_is_never_adopted_and_survives_the_delete(kube, two_namespaces, aws_e2e,
                                                                            aws_server_session):
    team_a, team_b = two_namespaces
    calls = aws_server_session.calls
    role, policy = f"{team_b}-exec", f"{team_b}-registry-read"
    world.make_execution_role(aws_e2e.client, role)
    credential(kube, team_b, role, policy)
    secret_b = wait_ready(kube, rc_path(team_b, "hub"))["status"]["secretArn"]
    theirs = document(aws_e2e, role, policy)
    prefix_b = iam_policies.sid_prefix(f"e2e/{team_b}/hub")
    assert iam_policies.sid_marks(theirs) == {prefix_b}
    assert iam_policies.same_grants(theirs, iam_policies.desired(secret_b))
    mark = calls.mark()

    # team-a asks for the same policy on the same role, and even says it may adopt.
    credential(kube, team_a, role, policy, adoptExisting=True)

    obj = wait_condition(kube, rc_path(team_a, "hub"), status="False", reason="OwnershipConflict")
    message = condition(obj, "Ready")["message"]
    assert f"inline policy {policy} on role {role}" in message and prefix_b in message
    wait_warning(kube, team_a, "hub", "OwnershipConflict")
    assert policy_writes(calls, mark) == []
    assert policydoc.equivalent(document(aws_e2e, role, policy), theirs)

    delete_and_wait(kube, team_a)

    assert policy_writes(calls, mark) == []
    assert policydoc.equivalent(document(aws_e2e, role, policy), theirs)
    assert condition(kube.get(rc_path(team_b, "hub")), "Ready")["status"] == "True"
