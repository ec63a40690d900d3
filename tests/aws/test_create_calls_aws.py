"""The AWS calls a role policy costs on create, counted on the operator's own clients.

Given a role without our inline policy, when the role-policy step runs, then it
makes exactly GetRolePolicy (miss), ListRolePolicies (the budget check) and
PutRolePolicy: no GetRole, because the budget check's ListRolePolicies already
tells a missing role apart (IAM read quotas bound how fast 1,000 resources get
Ready; see bench/perf_bench.py). A missing role is still a retryable
DependencyMissing, whether it is found by the budget check (a write is due) or,
under driftPolicy Report, by the one GetRole made when nothing will be written.
"""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.aws import iam_policies
from controller.reconcile import wiring
from tests.aws.test_wiring_aws import POLICY, context, make_role, policy_on, raw, recorder, secret_arn  # noqa: F401

pytestmark = pytest.mark.aws


def test_create_makes_one_read_before_the_budget_check_and_no_get_role(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")

    outcome = wiring.sync_role_policies(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}}))

    assert outcome.error is None and outcome.writes == 1
    assert recorder.calls == ["iam.GetRolePolicy", "iam.ListRolePolicies", "iam.PutRolePolicy"]
    assert policy_on(raw, "exec-a") is not None


def test_missing_role_found_by_the_budget_check_is_a_dependency(factory, raw, recorder, secret_arn):
    outcome = wiring.sync_role_policies(context(factory, secret_arn, {"grants": {"executionRoles": ["ghost"]}}))

    assert outcome.error is not None and outcome.error.reason == reasons.DEPENDENCY_MISSING
    assert outcome.error.retryable is True and outcome.error.message == "role ghost does not exist"
    assert recorder.writes() == [] and "iam.GetRole" not in recorder.calls
    assert outcome.managed[0]["state"] == wiring.PENDING


def test_deleted_role_under_report_only_is_a_dependency_not_policy_drift(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    spec = {"grants": {"executionRoles": ["exec-a"]}}
    synced = wiring.sync_role_policies(context(factory, secret_arn, spec))
    assert synced.error is None
    iam = raw("iam")
    iam.delete_role_policy(RoleName="exec-a", PolicyName=POLICY)
    for attached in iam.list_attached_role_policies(RoleName="exec-a")["AttachedPolicies"]:
        iam.detach_role_policy(RoleName="exec-a", PolicyArn=attached["PolicyArn"])
    iam.delete_role(RoleName="exec-a")
    recorder.reset()

    outcome = wiring.sync_role_policies(context(factory, secret_arn, spec, previous=synced, remediate=False))

    assert outcome.error is not None and outcome.error.reason == reasons.DEPENDENCY_MISSING
    assert outcome.error.message == str(iam_policies.RoleMissing("exec-a"))
    assert recorder.calls == ["iam.GetRolePolicy", "iam.GetRole"]
    assert outcome.drifted == [] and recorder.writes() == []
