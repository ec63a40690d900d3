"""PullReady over the wire: the RegistryCredential reconcile reads the execution roles'
policies from the AWS test server (moto's IAM, Secrets Manager, KMS) and sets the
condition; Ready is not changed by it; a second check reads nothing (the cache).
"""

from __future__ import annotations

import json

import pytest

from controller.api import reasons
from controller.reconcile.conditions import get_condition
from tests.aws.wired_world import SOURCE, clients_for, raw
from tests.harness import world
from controller.reconcile import registry_credential as rc
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS, NAME, CLUSTER = "team", "cred", "c1"
ECR_IMAGE = f"{world.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/team/app:1"


def spec(roles, families, **secret):
    return {"source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": roles},
            "consumers": {"ecsTaskDefinitions": [{"family": f, "containers": ["app"]} for f in families]},
            "secret": {"forceDeleteWithoutRecovery": True, **secret}}


def family(name: str, role_arn: str, *, sidecar: str | None = None) -> None:
    containers = [{"name": "app", "image": "registry.example.com/team/app:1", "essential": True}]
    if sidecar:
        containers.append({"name": "sidecar", "image": sidecar, "essential": False})
    raw("ecs").register_task_definition(family=name, executionRoleArn=role_arn, networkMode="awsvpc",
                                        requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
                                        containerDefinitions=containers)


def run(factory, the_spec, status=None, drift_check=False):
    request = rc.Request(namespace=NS, name=NAME, generation=1, spec=the_spec, status=status or {},
                         source_secret=SOURCE, cluster_id=CLUSTER, drift_check=drift_check)
    return rc.reconcile(request, clients_for(factory), tenancy_policy=OPEN)


def pull_ready(status):
    return get_condition(status.get("conditions"), reasons.PULL_READY_TYPE)


def test_fine_role_is_true_and_a_second_check_reads_nothing(factory, aws_server):
    arn = world.make_execution_role(raw, "exec-ok")
    family("team-ok", arn, sidecar=ECR_IMAGE)
    result = run(factory, spec(["exec-ok"], ["team-ok"]))
    assert result.ready
    condition = pull_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("True", reasons.PULL_READY), condition

    mark = aws_server.calls.mark()
    again = run(factory, spec(["exec-ok"], ["team-ok"]), result.status, drift_check=True)
    counts = aws_server.calls.counts(since=mark)
    assert not {k for k in counts if k.startswith("iam:")} - {"iam:GetRolePolicy"}, counts
    assert "secretsmanager:GetResourcePolicy" not in counts
    assert pull_ready(again.status)["lastTransitionTime"] == condition["lastTransitionTime"]


def test_explicit_deny_names_the_statement_and_ready_stays_true(factory, aws_server):
    arn = world.make_execution_role(raw, "exec-deny")
    raw("iam").put_role_policy(RoleName="exec-deny", PolicyName="guard", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "NoSecrets", "Effect": "Deny", "Action": "secretsmanager:GetSecretValue",
                       "Resource": "*"}]}))
    family("team-deny", arn)
    result = run(factory, spec(["exec-deny"], ["team-deny"]))
    condition = pull_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("False", reasons.EXPLICIT_DENY), condition
    assert "inline policy guard statement 'NoSecrets'" in condition["message"]
    assert "secretsmanager:GetSecretValue" in condition["message"]
    assert result.ready  # informative: the operator's writes are done


def test_key_policy_without_the_role_is_missing_kms_decrypt(factory, aws_server):
    arn = world.make_execution_role(raw, "exec-kms")
    key = raw("kms").create_key(Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "OnlyAdmins", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{world.ACCOUNT}:role/admins"},
                       "Action": "kms:*", "Resource": "*"}]}))["KeyMetadata"]
    family("team-kms", arn)
    result = run(factory, spec(["exec-kms"], ["team-kms"], kmsKeyId=key["Arn"]))
    condition = pull_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("False", reasons.PERMISSION_MISSING), condition
    assert f"kms:Decrypt on {key['Arn']}" in condition["message"]


def test_default_key_policy_delegates_to_iam_and_our_grant_allows(factory, aws_server):
    arn = world.make_execution_role(raw, "exec-kms-ok")
    key = raw("kms").create_key()["KeyMetadata"]  # moto's default policy: the account root
    family("team-kms-ok", arn)
    result = run(factory, spec(["exec-kms-ok"], ["team-kms-ok"], kmsKeyId=key["Arn"]))
    condition = pull_ready(result.status)
    assert condition["status"] == "True", condition


def test_image_lint_both_ways(factory, aws_server):
    bare = world.make_role(raw, "exec-bare")  # no ECR permissions at all
    family("team-lint", bare, sidecar=ECR_IMAGE)
    result = run(factory, spec(["exec-bare"], ["team-lint"]))
    condition = pull_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("False", reasons.PERMISSION_MISSING), condition
    assert "ecr:GetAuthorizationToken" in condition["message"]

    ok = world.make_execution_role(raw, "exec-lint")
    family("team-public", ok, sidecar="docker.io/library/busybox:1")
    result = run(factory, spec(["exec-lint"], ["team-public"]))
    condition = pull_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("False", reasons.IMAGE_NEEDS_REPOSITORY_CREDENTIALS)
    assert "sidecar" in condition["message"] and "docker.io/library/busybox:1" in condition["message"]


def test_unknown_condition_key_is_unknown(factory, aws_server):
    arn = world.make_execution_role(raw, "exec-ip")
    raw("iam").put_role_policy(RoleName="exec-ip", PolicyName="from-vpc", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "OnlyFromVpce", "Effect": "Deny", "Action": "secretsmanager:*", "Resource": "*",
                       "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}}]}))
    family("team-ip", arn)
    condition = pull_ready(run(factory, spec(["exec-ip"], ["team-ip"])).status)
    assert (condition["status"], condition["reason"]) == ("Unknown", reasons.EVALUATION_UNKNOWN), condition
    assert "aws:SourceVpce" in condition["message"]


def test_no_consumers_no_condition(factory, aws_server):
    world.make_execution_role(raw, "exec-none")
    result = run(factory, spec(["exec-none"], []))
    assert pull_ready(result.status) is None


def test_plan_shows_the_verdict_after_its_planned_writes(factory, aws_server):
    """regaccess plan runs the same step: a fresh resource's own grant is counted as the
    planned write (not yet in AWS), and an explicit Deny on the role shows as it will."""
    from controller import plan

    fine = world.make_execution_role(raw, "exec-plan")
    arn = world.make_execution_role(raw, "exec-plan-deny")
    raw("iam").put_role_policy(RoleName="exec-plan-deny", PolicyName="guard", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "NoSecrets", "Effect": "Deny", "Action": "secretsmanager:*", "Resource": "*"}]}))
    family("team-plan", fine)
    family("team-plan-deny", arn)
    clients = clients_for(factory)
    for fam, role, expected in (("team-plan", "exec-plan", "PullReady True (PullReady)"),
                                ("team-plan-deny", "exec-plan-deny", "PullReady False (ExplicitDeny)")):
        notes: list[str] = []
        mark = aws_server.calls.mark()
        plan.plan_aws("RegistryCredential", NS, NAME, spec([role], [fam]), clients, cluster_id=CLUSTER,
                      source_ref="src", source_version="1", notes=notes, tenancy_policy=OPEN)
        assert aws_server.calls.writes(since=mark) == []
        assert [n for n in notes if n.startswith(expected)], notes
