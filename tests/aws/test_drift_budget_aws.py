"""The steady-state call budget of a drift check, counted on the wire.

Given a RegistryCredential that manages a secret, two role policies, a task
definition, a job definition and a pull-through cache rule (six AWS objects),
and a CrossAccountRepoAccess on two repositories, all converged: a drift check
(and a no-op resync) makes at most one read call per managed object, no write,
and never reads the secret value. Calls are counted by the AWS test server's
call record (``aws_server.calls``), i.e. what really reached "AWS", retries
included.

Also: under ``driftPolicy: Report`` a drift stays reported, check after check,
and is never repaired by a later check.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest

from controller.reconcile import cross_account
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

from tests.aws.wired_world import (
    CLUSTER, NAME, NS, POLICY, clients_for, converge, full_spec, given_wired_world, on_the_wire, raw, run,
)


# One read per managed object, named: the budget the issue sets.
RC_BUDGET = Counter({
    "secretsmanager:DescribeSecret": 1,          # the secret (AWSCURRENT version vs status.secretVersionId)
    "iam:GetRolePolicy": 2,                      # two role policies
    "ecs:DescribeTaskDefinition": 1,             # one task definition family
    "batch:DescribeJobDefinitions": 1,           # one job definition (one page of ACTIVE revisions)
    "ecr:DescribePullThroughCacheRules": 1,      # one pull-through cache rule
})


@pytest.mark.parametrize("drift_check", [True, False], ids=["drift-check", "noop-resync"])
def test_registry_credential_check_costs_one_read_per_object(aws_server, factory, drift_check):
    given_wired_world()
    spec = full_spec()
    status = converge(factory, spec)
    managed_objects = 1 + len(status["managed"])
    assert managed_objects == 6, status["managed"]

    mark = aws_server.calls.mark()
    result = run(factory, spec, status, drift_check=drift_check)

    reads, writes = on_the_wire(aws_server, mark)
    assert result.outcome == "success" and result.ready, result.status
    assert writes == []
    assert sum(reads.values()) <= managed_objects
    assert reads == RC_BUDGET
    assert reads["secretsmanager:GetSecretValue"] == 0
    assert result.drift_found == {}
    if drift_check:
        assert result.status["lastDriftCheckTime"]


def test_customer_managed_key_given_as_alias_costs_no_kms_call_in_steady_state(aws_server, factory):
    key = raw("kms").create_key()["KeyMetadata"]
    raw("kms").create_alias(AliasName="alias/registry", TargetKeyId=key["KeyId"])
    world.make_role(raw, "exec-a")
    spec = {"source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": ["exec-a"]},
            "secret": {"kmsKeyId": "alias/registry"}}
    status = converge(factory, spec)
    assert status["kmsKeyArn"] == key["Arn"]
    statements = world.role_policy(raw, "exec-a", POLICY)["Statement"]
    assert {"kms:Decrypt"} == {s["Action"] for s in statements if s["Action"] == "kms:Decrypt"}

    mark = aws_server.calls.mark()
    result = run(factory, spec, status, drift_check=True)

    reads, writes = on_the_wire(aws_server, mark)
    assert result.ready and writes == []
    assert reads == Counter({"secretsmanager:DescribeSecret": 1, "iam:GetRolePolicy": 1}), reads


def test_secret_encrypted_with_the_key_arn_while_the_spec_names_its_alias_costs_no_kms_call(aws_server, factory):
    # AWS may answer DescribeSecret with the key ARN although the spec names an alias.
    key = raw("kms").create_key()["KeyMetadata"]
    raw("kms").create_alias(AliasName="alias/registry", TargetKeyId=key["KeyId"])
    raw("secretsmanager").create_secret(Name=f"regaccess/{NS}/{NAME}", KmsKeyId=key["Arn"],
                                        SecretString=json.dumps({"username": "robot", "password": "pw-1"}))
    spec = {"source": {"secretRef": {"name": "src"}}, "adoptExisting": True, "secret": {"kmsKeyId": "alias/registry"}}
    status = converge(factory, spec)
    assert status["kmsKeyArn"] == key["Arn"]

    mark = aws_server.calls.mark()
    result = run(factory, spec, status, drift_check=True)

    reads, writes = on_the_wire(aws_server, mark)
    assert result.ready and writes == [] and result.drift_found == {}
    assert reads == Counter({"secretsmanager:DescribeSecret": 1}), reads


class Clock:
    def __init__(self) -> None:
        self.moment = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        self.moment += dt.timedelta(seconds=1)
        return self.moment


def run_xrepo(factory, spec: dict[str, Any], status: dict[str, Any], clock: Clock, *, drift_check: bool):
    return cross_account.reconcile(NS, "pullers", 1, spec, status, clients_for=clients_for(factory),
                                   cluster_id=CLUSTER, now=clock, drift_check=drift_check, tenancy_policy=OPEN)


@pytest.mark.parametrize("drift_check", [True, False], ids=["drift-check", "noop-resync"])
def test_cross_account_check_costs_one_read_per_repository(aws_server, factory, drift_check):
    for repository in ("app", "tools/base"):
        world.make_repository(raw, repository)
    spec = {"repositories": ["app", "tools/base"],
            "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}
    clock = Clock()
    first = run_xrepo(factory, spec, {}, clock, drift_check=False)
    assert first.ready, first.status

    mark = aws_server.calls.mark()
    result = run_xrepo(factory, spec, first.status, clock, drift_check=drift_check)

    reads, writes = on_the_wire(aws_server, mark)
    assert result.ready and writes == []
    assert reads == Counter({"ecr:GetRepositoryPolicy": 2}), reads
    # The repository ARN is still reported, without a DescribeRepositories.
    assert [r["arn"] for r in result.status["repositories"]] == [r["arn"] for r in first.status["repositories"]]
    assert result.status["repositories"][0]["arn"].endswith(":repository/app")


def test_cross_account_first_sync_of_a_repository_without_policy_reports_its_arn(aws_server, factory):
    arn = world.make_repository(raw, "fresh")
    spec = {"repositories": ["fresh"], "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}
    result = run_xrepo(factory, spec, {}, Clock(), drift_check=False)
    assert result.ready
    assert result.status["repositories"][0]["arn"] == arn


def test_cross_account_missing_repository_is_still_a_missing_dependency(aws_server, factory):
    spec = {"repositories": ["ghost"], "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}
    result = run_xrepo(factory, spec, {}, Clock(), drift_check=False)
    assert not result.ready and result.retry_after
    assert result.status["repositories"][0]["message"].startswith("repository ghost does not exist")
