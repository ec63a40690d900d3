"""Execution roles given as ARNs are judged by their real ARN (issue 30 §3), against moto.

The operator writes to a role by name (PutRolePolicy takes RoleName), so an ARN's path and
account prove nothing: ``arn:aws:iam::ACCT:role/team-x/team-y-exec`` names team-y's role
``team-y-exec`` wherever it lives. The role-identity step resolves the name (iam:GetRole,
cached per name) and judges the real ARN before any write.
"""

from __future__ import annotations

import pytest

from controller import tenancy
from controller.api import reasons
from controller.reconcile import registry_credential as rc
from controller.reconcile.conditions import get_condition
from tests.aws.wired_world import SOURCE, clients_for, raw
from tests.harness import world

pytestmark = pytest.mark.aws

NS = "team-x"
# An admin's rule by path: team-x's roles are those under /team-x/, in the one account.
# Every other field keeps the shipped default (spec.default left out).
BY_PATH = tenancy.from_spec("paths", {"defaultAction": "Deny", "namespaces": {"team-*": {
    "executionRoles": ["arn:aws:iam::*:role/{namespace}/*"], "accounts": [world.ACCOUNT]}}})


def run(factory, roles, policy=BY_PATH):
    spec = {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True},
            "grants": {"executionRoles": roles}}
    request = rc.Request(namespace=NS, name="cred", generation=1, spec=spec, status={},
                         source_secret=SOURCE, cluster_id="c1")
    return rc.reconcile(request, clients_for(factory), tenancy_policy=policy)


def test_an_arn_whose_path_is_not_the_roles_is_refused_with_no_write(factory, aws_server):
    world.make_execution_role(raw, "team-y-exec", path="/team-y/")
    claimed = f"arn:aws:iam::{world.ACCOUNT}:role/team-x/team-y-exec"
    assert tenancy.violations(BY_PATH, NS, [("r", "executionRoles", claimed, "role"),
                                            ("r", "accounts", world.ACCOUNT, "value")]) == []  # the text fits
    mark = aws_server.calls.mark()
    result = run(factory, [claimed])
    ready = get_condition(result.status["conditions"], reasons.READY)
    assert (ready["status"], ready["reason"]) == ("False", reasons.NOT_PERMITTED), ready
    assert f"IAM's role team-y-exec is arn:aws:iam::{world.ACCOUNT}:role/team-y/team-y-exec" in ready["message"]
    assert aws_server.calls.writes(since=mark) == []  # not even the secret
    assert aws_server.calls.counts(since=mark) == {"iam:GetRole": 1}
    assert raw("iam").list_role_policies(RoleName="team-y-exec")["PolicyNames"] == []


def test_the_real_arn_is_judged_and_read_once_per_name(factory, aws_server):
    real = world.make_execution_role(raw, "team-x-exec", path="/team-x/")
    first = run(factory, [real])
    assert first.ready, first.status["conditions"]
    assert raw("iam").list_role_policies(RoleName="team-x-exec")["PolicyNames"] == ["regaccess-team-x-cred"]
    mark = aws_server.calls.mark()
    run(factory, [real])
    assert aws_server.calls.count("iam", "GetRole", since=mark) == 0  # cached per name (TTL)


def test_a_role_under_another_path_fails_the_rule_by_its_real_arn(factory, aws_server):
    real = world.make_execution_role(raw, "shared-exec", path="/platform/")
    result = run(factory, [real])
    ready = get_condition(result.status["conditions"], reasons.READY)
    assert (ready["status"], ready["reason"]) == ("False", reasons.NOT_PERMITTED), ready
    assert "spec.grants.executionRoles[0]" in ready["message"]


def test_roles_given_by_name_cost_no_read(factory, aws_server):
    world.make_execution_role(raw, "team-x-byname")
    mark = aws_server.calls.mark()
    result = run(factory, ["team-x-byname"], policy=tenancy.SHIPPED)
    assert result.ready, result.status["conditions"]
    assert aws_server.calls.count("iam", "GetRole", since=mark) == 0
