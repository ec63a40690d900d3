"""PullReady end to end (issue 31 §2): the operator process evaluates the consumers'
execution roles against the AWS test server and sets the condition beside Ready.

Given three execution roles — one with an explicit Deny on the secret, one whose customer
managed key's key policy does not let it decrypt, one as users have it — and task
definitions that run with them, when RegistryCredentials wire them, then PullReady is
False (ExplicitDeny, naming the statement) / False (PermissionMissing, naming kms:Decrypt)
/ True, while Ready is True for all three (the condition is informative). Image lint: an ECR
sidecar on a role without ECR permissions and a registry image without credentials are
both reported.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import condition, wait_for
from tests.e2e.support import SETTLE, basic_auth_secret, custom_resource, delete_all, rc_path, wait_ready
from tests.harness import world

pytestmark = pytest.mark.e2e


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


def family(session, name: str, role_arn: str, sidecar: str | None = None) -> None:
    containers = [{"name": "app", "image": "registry.example.com/team/app:1", "essential": True}]
    if sidecar:
        containers.append({"name": "sidecar", "image": sidecar, "essential": False})
    session.client("ecs").register_task_definition(
        family=name, executionRoleArn=role_arn, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=containers)


def credential(kube, namespace: str, name: str, role: str, fam: str, **secret) -> None:
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, name, {
        "source": {"secretRef": {"name": "src"}},
        "secret": {"forceDeleteWithoutRecovery": True, **secret},
        "grants": {"executionRoles": [role]},
        "consumers": {"ecsTaskDefinitions": [{"family": fam, "containers": ["app"]}]},
    }))


def wait_pull_ready(kube, path: str, status: str, reason: str) -> dict:
    def check():
        found = condition(kube.get(path), "PullReady")
        return found if found.get("status") == status and found.get("reason") == reason else None
    try:
        return wait_for(check, SETTLE, f"{path} PullReady {status}/{reason}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last: {condition(kube.get(path), 'PullReady')}") from None


def test_deny_missing_decrypt_and_fine(kube, operator, namespace, aws_e2e, cleanup):
    iam = aws_e2e.client("iam")
    deny_role, kms_role, ok_role = (f"{namespace}-exec-{x}" for x in ("deny", "kms", "ok"))
    deny_arn, kms_arn, ok_arn = (world.make_execution_role(aws_e2e.client, r) for r in (deny_role, kms_role, ok_role))
    iam.put_role_policy(RoleName=deny_role, PolicyName="guard", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "NoSecretsHere", "Effect": "Deny", "Action": "secretsmanager:GetSecretValue",
                       "Resource": "*"}]}))
    key = aws_e2e.client("kms").create_key(Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "KeyAdminsOnly", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{world.ACCOUNT}:role/key-admins"},
                       "Action": "kms:*", "Resource": "*"}]}))["KeyMetadata"]
    for role, arn in ((deny_role, deny_arn), (kms_role, kms_arn), (ok_role, ok_arn)):
        family(aws_e2e, f"{role}-web", arn)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    credential(kube, namespace, "deny", deny_role, f"{deny_role}-web")
    credential(kube, namespace, "kms", kms_role, f"{kms_role}-web", kmsKeyId=key["Arn"])
    credential(kube, namespace, "ok", ok_role, f"{ok_role}-web")

    denied = wait_pull_ready(kube, rc_path(namespace, "deny"), "False", "ExplicitDeny")
    assert "secretsmanager:GetSecretValue" in denied["message"]
    assert "inline policy guard statement 'NoSecretsHere'" in denied["message"]
    missing = wait_pull_ready(kube, rc_path(namespace, "kms"), "False", "PermissionMissing")
    assert f"kms:Decrypt on {key['Arn']}" in missing["message"] and kms_arn in missing["message"]
    fine = wait_pull_ready(kube, rc_path(namespace, "ok"), "True", "PullReady")
    assert fine["observedGeneration"] == 1
    for name in ("deny", "kms", "ok"):
        obj = wait_ready(kube, rc_path(namespace, name))  # informative: Ready is not changed by it
        text = json.dumps(obj["status"])
        assert "pw-e2e-kinds" not in text


def test_image_lint_each_way(kube, operator, namespace, aws_e2e, cleanup):
    bare, ok = f"{namespace}-exec-bare", f"{namespace}-exec-lint"
    bare_arn = world.make_role(aws_e2e.client, bare)  # trust only: no ECR permissions
    ok_arn = world.make_execution_role(aws_e2e.client, ok)
    ecr = f"{world.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{namespace}/envoy:1"
    family(aws_e2e, f"{bare}-web", bare_arn, sidecar=ecr)
    family(aws_e2e, f"{ok}-web", ok_arn, sidecar="docker.io/library/busybox:1")
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    credential(kube, namespace, "ecr", bare, f"{bare}-web")
    credential(kube, namespace, "public", ok, f"{ok}-web")

    no_ecr = wait_pull_ready(kube, rc_path(namespace, "ecr"), "False", "PermissionMissing")
    assert "ecr:GetAuthorizationToken" in no_ecr["message"]
    lint = wait_pull_ready(kube, rc_path(namespace, "public"), "False", "ImageNeedsRepositoryCredentials")
    assert "sidecar" in lint["message"] and "docker.io/library/busybox:1" in lint["message"]

    # Fixing the role (the managed policy users attach) turns it True once the cache is dropped:
    # the operator rewrites its own inline policy on a grants change, which re-reads the role.
    iam = aws_e2e.client("iam")
    iam.put_role_policy(RoleName=bare, PolicyName="ecr-pull", PolicyDocument=json.dumps(world.EXECUTION_POLICY))
    kube.merge_patch(rc_path(namespace, "ecr"), {"spec": {"grants": {"executionRoles": [bare, ok]}}})
    wait_pull_ready(kube, rc_path(namespace, "ecr"), "True", "PullReady")
