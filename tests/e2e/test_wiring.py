"""RegistryCredential wiring end to end (issue 3): execution-role policies, ECS task
definitions and Batch job definitions, through the real API server and the
operator process, against the AWS test server.

Given IAM roles with the ECS trust policy and AmazonECSTaskExecutionRolePolicy,
and existing task/job definitions with several containers, when a user applies
and edits RegistryCredentials, then IAM/ECS/Batch follow, status says what is
managed, bad input gets a specific reason and a Warning Event, and deletion
revokes (or, under Retain, keeps) the policies. The crash-between-register-and-
status test lives in test_wiring_crash.py: it needs an operator of its own,
which must not share the cluster with this module's operator.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.aws import iam_policies, policydoc
from tests.e2e.kube import ApiError, condition, wait_for
from tests.harness import world
from tests.e2e.support import (
    SETTLE,
    basic_auth_secret,
    custom_resource,
    delete_all,
    managed,
    quiet_resync,
    rc_path,
    wait_condition,
    wait_ready,
    wait_warning,
    warnings,
)

pytestmark = pytest.mark.e2e

WIRING_SERVICES = ("iam", "ecs", "batch")


# --------------------------------------------------------------------------- AWS givens


def make_role(session, name: str) -> str:
    return world.make_execution_role(session.client, name)


def register_family(session, family: str, execution_role: str | None) -> str:
    params = world.three_container_task_definition(family, execution_role)
    return session.client("ecs").register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"]


def register_job(session, name: str, execution_role: str | None) -> str:
    container: dict[str, Any] = {
        "image": "registry.example.com/team/nightly:1",
        "command": ["run", "--all"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
        "environment": [{"name": "MODE", "value": "batch"}],
    }
    if execution_role:
        container["executionRoleArn"] = execution_role
    return session.client("batch").register_job_definition(
        jobDefinitionName=name, type="container", containerProperties=container,
        platformCapabilities=["FARGATE"], retryStrategy={"attempts": 2}, tags={"team": "data"},
    )["jobDefinitionArn"]


def family_revisions(session, family: str) -> list[str]:
    return session.client("ecs").list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]


def job_revisions(session, name: str) -> dict[int, dict]:
    found = session.client("batch").describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
    return {jd["revision"]: jd for jd in found}


def role_policy(session, role: str, policy: str) -> dict | None:
    iam = session.client("iam")
    if policy not in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        return None
    return policydoc.parse(iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])


def statements(document: dict) -> dict[str, tuple[str, str]]:
    """Statement name (the Sid after its owner's prefix) -> (action, resource), normalising
    IAM's string-or-list forms. Every Sid must carry one and the same owner's mark."""
    [mark] = iam_policies.sid_marks(document)
    out = {}
    for statement in document["Statement"]:
        assert statement["Sid"].startswith(mark), statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert len(actions) == 1 and len(resources) == 1, statement  # exactly one thing, no wildcard
        assert statement["Effect"] == "Allow"
        out[statement["Sid"][len(mark):]] = (actions[0], resources[0])
    return out


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    # Shown by pytest only when the test failed: what the operator said about this namespace.
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


# --------------------------------------------------------------------------- the main flow


def test_apply_change_roles_change_kms_and_delete(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    role_a, role_b, role_c = (f"{namespace}-exec-{x}" for x in "abc")
    arn_a, arn_b, _ = (make_role(aws_e2e, r) for r in (role_a, role_b, role_c))
    family, job = f"{namespace}-web", f"{namespace}-nightly"
    first_task = register_family(aws_e2e, family, arn_a)
    register_job(aws_e2e, job, arn_b)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub"))
    policy = f"regaccess-{namespace}-hub"

    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "hub", {
        "source": {"secretRef": {"name": "hub"}},
        "secret": {"forceDeleteWithoutRecovery": True},
        # One bare name and one ARN: both forms users write.
        "grants": {"executionRoles": [role_a, arn_b]},
        "consumers": {"ecsTaskDefinitions": [{"family": family, "containers": ["app", "envoy"]}],
                      "batchJobDefinitions": [{"name": job}]},
    }))
    obj = wait_ready(kube, rc_path(namespace, "hub"))
    secret_arn = obj["status"]["secretArn"]

    # IAM: exactly GetSecretValue on exactly the secret ARN, on both roles; no KMS statement.
    for role in (role_a, role_b):
        assert statements(role_policy(aws_e2e, role, policy)) == {
            iam_policies.SECRET_SID: ("secretsmanager:GetSecretValue", secret_arn)}
        assert iam_policies.sid_marks(role_policy(aws_e2e, role, policy)) == {
            iam_policies.sid_prefix(f"e2e/{namespace}/hub")}

    # ECS: a second revision, a faithful copy with only the chosen containers changed.
    revisions = family_revisions(aws_e2e, family)
    assert len(revisions) == 2 and first_task in revisions
    new_task_arn = next(r for r in revisions if r != first_task)
    described = aws_e2e.client("ecs").describe_task_definition(taskDefinition=new_task_arn, include=["TAGS"])
    task = described["taskDefinition"]
    credentials = {c["name"]: (c.get("repositoryCredentials") or {}).get("credentialsParameter")
                   for c in task["containerDefinitions"]}
    assert credentials == {"app": secret_arn, "envoy": secret_arn, "log-router": None}
    assert (task["cpu"], task["memory"], task["networkMode"], task["executionRoleArn"]) == ("512", "1024", "awsvpc", arn_a)
    assert task["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 8080
    assert task["containerDefinitions"][1]["user"] == "1337"
    tags = {t["key"]: t["value"] for t in described.get("tags", [])}
    assert tags == {"team": "payments", "regaccess.io/owner": f"e2e/{namespace}/hub"}

    # Batch: revision 2 references the secret, the rest copied.
    jobs = job_revisions(aws_e2e, job)
    assert sorted(jobs) == [1, 2]
    container = jobs[2]["containerProperties"]
    assert container["repositoryCredentials"] == {"credentialsParameter": secret_arn}
    assert container["command"] == ["run", "--all"] and container["executionRoleArn"] == arn_b
    assert "repositoryCredentials" not in jobs[1]["containerProperties"]

    # Status: one row per managed object, with the revisions kept.
    rows = managed(obj)
    assert {k: r["state"] for k, r in rows.items()} == {
        ("rolePolicy", role_a): "Synced", ("rolePolicy", role_b): "Synced",
        ("taskDefinition", family): "Synced", ("jobDefinition", job): "Synced"}
    assert rows[("taskDefinition", family)]["arn"] == new_task_arn
    assert rows[("jobDefinition", job)]["arn"] == jobs[2]["jobDefinitionArn"]
    reasons = {e["reason"] for e in kube.events_for(namespace, "hub")}
    assert {"RolePolicyPut", "TaskDefinitionRegistered", "JobDefinitionRegistered"} <= reasons

    # A no-op resync writes nothing to IAM, ECS or Batch (and does read them).
    mark = quiet_resync(kube, [rc_path(namespace, "hub")])(calls)
    assert [c for c in calls.writes(since=mark) if c.service in WIRING_SERVICES] == []
    assert calls.count("iam", "GetRolePolicy", since=mark) >= 2
    assert calls.count("ecs", "DescribeTaskDefinition", since=mark) >= 1

    # Change the role list: B dropped (its policy removed), C added.
    kube.merge_patch(rc_path(namespace, "hub"), {"spec": {"grants": {"executionRoles": [role_a, role_c]}}})
    wait_for(lambda: role_policy(aws_e2e, role_b, policy) is None, SETTLE, "policy removed from the dropped role")
    # The job definition runs with B, which is no longer granted: its tasks could not pull,
    # so the resource says so instead of claiming Ready.
    obj = wait_condition(kube, rc_path(namespace, "hub"), status="False", reason="ExecutionRoleNotGranted")
    assert arn_b in condition(obj, "Ready")["message"]
    rows = managed(obj)
    assert set(rows) == {("rolePolicy", role_a), ("rolePolicy", role_c), ("taskDefinition", family),
                         ("jobDefinition", job)}
    assert rows[("jobDefinition", job)]["message"].startswith("ExecutionRoleNotGranted")
    assert rows[("taskDefinition", family)].get("message", "") == ""
    assert statements(role_policy(aws_e2e, role_c, policy)) == {
        iam_policies.SECRET_SID: ("secretsmanager:GetSecretValue", secret_arn)}
    assert role_policy(aws_e2e, role_a, policy) is not None
    assert "RolePolicyRemoved" in {e["reason"] for e in kube.events_for(namespace, "hub")}
    wait_warning(kube, namespace, "hub", "ExecutionRoleNotGranted")

    # Change the secret's KMS key (given as an alias): policies gain kms:Decrypt on the key ARN.
    kms = aws_e2e.client("kms")
    key_arn = kms.create_key(Description=f"{namespace} registry")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=f"alias/{namespace}-registry", TargetKeyId=key_arn)
    kube.merge_patch(rc_path(namespace, "hub"), {"spec": {"secret": {"kmsKeyId": f"alias/{namespace}-registry"}}})

    def decrypt_granted() -> bool:
        return all(statements(role_policy(aws_e2e, r, policy)).get(iam_policies.KMS_SID) == ("kms:Decrypt", key_arn)
                   for r in (role_a, role_c))

    wait_for(decrypt_granted, SETTLE, "kms:Decrypt on the key ARN")
    for role in (role_a, role_c):
        assert statements(role_policy(aws_e2e, role, policy)) == {
            iam_policies.SECRET_SID: ("secretsmanager:GetSecretValue", secret_arn),
            iam_policies.KMS_SID: ("kms:Decrypt", key_arn)}
    obj = wait_for(lambda: (lambda o: o if (o.get("status") or {}).get("kmsKeyArn") == key_arn else None)(
        kube.get(rc_path(namespace, "hub"))), SETTLE, "status.kmsKeyArn")
    assert aws_e2e.client("secretsmanager").describe_secret(SecretId=secret_arn)["KmsKeyId"] in (
        key_arn, f"alias/{namespace}-registry", key_arn.rsplit("/", 1)[-1])
    # Same secret ARN: no new task/job revision for a key change.
    assert len(family_revisions(aws_e2e, family)) == 2 and sorted(job_revisions(aws_e2e, job)) == [1, 2]

    # Delete: our policies leave every role; the revisions stay (running services use them).
    kube.delete(rc_path(namespace, "hub"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "hub")) is None, SETTLE, "resource deleted")
    for role in (role_a, role_b, role_c):
        assert role_policy(aws_e2e, role, policy) is None, role
    assert len(family_revisions(aws_e2e, family)) == 2
    # The roles themselves and their managed policy are not ours: untouched.
    attached = aws_e2e.client("iam").list_attached_role_policies(RoleName=role_a)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonECSTaskExecutionRolePolicy"]


def test_execution_role_not_granted_then_granted(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    granted, other = f"{namespace}-granted", f"{namespace}-other"
    make_role(aws_e2e, granted)
    other_arn = make_role(aws_e2e, other)
    family = f"{namespace}-api"
    register_family(aws_e2e, family, other_arn)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "api", {
        "source": {"secretRef": {"name": "src"}},
        "grants": {"executionRoles": [granted]},
        "consumers": {"ecsTaskDefinitions": [{"family": family}]},
    }))
    obj = wait_condition(kube, rc_path(namespace, "api"), reason="ExecutionRoleNotGranted")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and other_arn in ready["message"]
    # The revision is still registered (the credential reference is right); only the role is missing.
    row = managed(obj)[("taskDefinition", family)]
    assert row["state"] == "Synced" and row["message"].startswith("ExecutionRoleNotGranted")
    assert len(family_revisions(aws_e2e, family)) == 2
    wait_warning(kube, namespace, "api", "ExecutionRoleNotGranted")
    # Said once: drift checks that find the same situation do not post it again.
    quiet_resync(kube, [rc_path(namespace, "api")])(aws_server_session.calls)
    not_granted = [e for e in kube.events_for(namespace, "api") if e["reason"] == "ExecutionRoleNotGranted"]
    assert sum(e.get("count", 1) for e in not_granted) == 1, not_granted

    kube.merge_patch(rc_path(namespace, "api"), {"spec": {"grants": {"executionRoles": [granted, other]}}})
    obj = wait_ready(kube, rc_path(namespace, "api"))
    assert role_policy(aws_e2e, other, f"regaccess-{namespace}-api") is not None
    assert managed(obj)[("taskDefinition", family)].get("message", "") == ""
    assert len(family_revisions(aws_e2e, family)) == 2  # nothing registered again


def test_retain_keeps_policies(kube, operator, namespace, aws_e2e, cleanup):
    role = f"{namespace}-kept"
    make_role(aws_e2e, role)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "kept", {
        "source": {"secretRef": {"name": "src"}}, "deletionPolicy": "Retain",
        "grants": {"executionRoles": [role]},
    }))
    secret_arn = wait_ready(kube, rc_path(namespace, "kept"))["status"]["secretArn"]
    kube.delete(rc_path(namespace, "kept"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "kept")) is None, SETTLE, "resource deleted")
    assert statements(role_policy(aws_e2e, role, f"regaccess-{namespace}-kept")) == {
        iam_policies.SECRET_SID: ("secretsmanager:GetSecretValue", secret_arn)}
    assert "DeletedDate" not in aws_e2e.client("secretsmanager").describe_secret(SecretId=secret_arn)


# --------------------------------------------------------------------------- bad input


def test_bad_input_reason_event_nothing_half_written(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    role = f"{namespace}-exec"
    role_arn = make_role(aws_e2e, role)
    web, noexec, fine = f"{namespace}-web", f"{namespace}-noexec", f"{namespace}-fine"
    register_family(aws_e2e, web, role_arn)
    register_family(aws_e2e, noexec, None)
    register_family(aws_e2e, fine, role_arn)
    register_job(aws_e2e, f"{namespace}-jobnoexec", None)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    foreign_role = "arn:aws:iam::999999999999:role/elsewhere"
    bad = {
        # A role ARN of another account cannot carry an inline policy of this account.
        "foreign-role": ({"grants": {"executionRoles": [foreign_role]}}, "InvalidGrant"),
        "unknown-family": ({"consumers": {"ecsTaskDefinitions": [{"family": f"{namespace}-nope"}]}},
                           "TaskDefinitionNotFound"),
        "unknown-job": ({"consumers": {"batchJobDefinitions": [{"name": f"{namespace}-nope"}]}},
                        "JobDefinitionNotFound"),
        "unknown-container": ({"consumers": {"ecsTaskDefinitions": [{"family": web, "containers": ["app", "sidecar"]}]}},
                              "ContainerNotFound"),
        "no-execution-role": ({"consumers": {"ecsTaskDefinitions": [{"family": noexec}]}}, "ExecutionRoleMissing"),
        "job-no-execution-role": ({"consumers": {"batchJobDefinitions": [{"name": f"{namespace}-jobnoexec"}]}},
                                  "ExecutionRoleMissing"),
    }
    mark = calls.mark()
    for name, (spec, _) in bad.items():
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, name, {
            "source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}, **spec}))
    # A valid resource next to them is served as usual.
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "fine", {
        "source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": [role]},
        "consumers": {"ecsTaskDefinitions": [{"family": fine}]}}))

    for name, (_, reason) in bad.items():
        obj = wait_condition(kube, rc_path(namespace, name), reason=reason, what=f"{name}: {reason}")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and ready["message"], name
        wait_warning(kube, namespace, name, reason)
    messages = {name: condition(kube.get(rc_path(namespace, name)), "Ready")["message"] for name in bad}
    assert foreign_role in messages["foreign-role"]
    assert "sidecar" in messages["unknown-container"] and "log-router" in messages["unknown-container"]
    assert f"{namespace}-nope" in messages["unknown-family"] and f"{namespace}-nope" in messages["unknown-job"]
    assert f"{noexec}:1" in messages["no-execution-role"]
    wait_ready(kube, rc_path(namespace, "fine"))

    # Nothing half-written: no revision for any bad consumer (not even for the one
    # container that does exist), no policy anywhere but the valid resource's.
    assert len(family_revisions(aws_e2e, web)) == 1
    assert len(family_revisions(aws_e2e, noexec)) == 1
    assert sorted(job_revisions(aws_e2e, f"{namespace}-jobnoexec")) == [1]
    assert len(family_revisions(aws_e2e, fine)) == 2
    assert aws_e2e.client("iam").list_role_policies(RoleName=role)["PolicyNames"] == [f"regaccess-{namespace}-fine"]
    written = [(c.service, c.operation) for c in calls.writes(since=mark) if c.service in WIRING_SERVICES]
    assert sorted(written) == [("ecs", "RegisterTaskDefinition"), ("iam", "PutRolePolicy")]
    # The bad resources are not retried into a storm of Events: one Warning per reason.
    for name, (_, reason) in bad.items():
        count = sum(e.get("count", 1) for e in kube.events_for(namespace, name)
                    if e["type"] == "Warning" and e["reason"] == reason)
        assert count <= 3, (name, count)
    assert "InvalidGrant" not in warnings(kube, namespace, "fine")


def test_another_namespaces_wiring_is_a_conflict_and_left_alone(kube, operator, namespace, aws_e2e, aws_server_session,
                                                                 cleanup):
    """Two namespaces list the same family with different secrets: the second never takes it over."""
    calls = aws_server_session.calls
    other = f"{namespace}-b"
    kube.create_namespace(other)
    try:
        role = f"{namespace}-exec"
        family = f"{namespace}-shared"
        register_family(aws_e2e, family, make_role(aws_e2e, role))
        spec = {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True},
                "grants": {"executionRoles": [role]}, "consumers": {"ecsTaskDefinitions": [{"family": family}]}}
        for ns in (other, namespace):
            kube.create(kube.secret_path(ns), basic_auth_secret(ns, "src"))
        kube.create(rc_path(other), custom_resource("RegistryCredential", other, "b", spec))
        theirs = wait_ready(kube, rc_path(other, "b"))
        their_revision = managed(theirs)[("taskDefinition", family)]["arn"]
        mark = calls.mark()

        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "a", spec))

        obj = wait_condition(kube, rc_path(namespace, "a"), status="False", reason="OwnershipConflict")
        message = condition(obj, "Ready")["message"]
        assert f"task definition {family}" in message and f"e2e/{other}/b" in message
        assert managed(obj)[("taskDefinition", family)]["state"] == "Error"
        wait_warning(kube, namespace, "a", "OwnershipConflict")
        assert calls.count("ecs", "RegisterTaskDefinition", since=mark) == 0

        # Deleting the refused resource leaves the other namespace's revision as it was.
        kube.delete(rc_path(namespace, "a"))
        wait_for(lambda: kube.get_or_none(rc_path(namespace, "a")) is None, SETTLE, "the refused resource deleted")
        assert calls.count("ecs", "RegisterTaskDefinition", since=mark) == 0
        revisions = family_revisions(aws_e2e, family)
        assert len(revisions) == 2 and their_revision in revisions
        latest = aws_e2e.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
        assert latest["taskDefinitionArn"] == their_revision
        assert {(c.get("repositoryCredentials") or {}).get("credentialsParameter")
                for c in latest["containerDefinitions"]} == {theirs["status"]["secretArn"]}
        assert condition(kube.get(rc_path(other, "b")), "Ready")["status"] == "True"
    finally:
        delete_all(kube, other)


@pytest.mark.parametrize("roles", [["has space"], ["arn:aws:iam::12345:role/short-account"], ["arn:aws:iam::123456789012:user/bob"]],
                         ids=["role-name-charset", "arn-account-digits", "arn-not-a-role"])
def test_malformed_role_rejected_at_admission(kube, namespace, roles):
    with pytest.raises(ApiError) as info:
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "bad-role", {
            "source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": roles}}))
    assert info.value.status == 422
    assert "executionRoles" in info.value.body
