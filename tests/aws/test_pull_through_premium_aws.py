"""ecr-public-premium and ecr (ECR to ECR) cache rules over the wire, against moto + the ECR stand-in.

These rules authenticate with IAM roles (customRoleArn, and for ecr-public-premium
upstreamRoleArn) instead of this resource's secret: the step sends the roles, reads them back,
repairs or reports a hand edit of them, and never sends a credentialArn.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from controller.api import reasons
from controller.api.validation import validate_registry_credential
from controller.aws.clients import Clients
from controller.reconcile import pull_through_cache as step
from controller.reconcile.steps import StepContext, StepOutcome

pytestmark = pytest.mark.aws

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "premium"
CUSTOM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-pull-through"
UPSTREAM_ROLE = "arn:aws:iam::210987654321:role/premium-entitled"
HAND_ROLE = "arn:aws:iam::210987654321:role/hand-made"
PREMIUM = {"upstreamRegistry": "ecr-public-premium", "ecrRepositoryPrefix": PREFIX,
           "customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": UPSTREAM_ROLE}


def _secret() -> str:
    sm = boto3.client("secretsmanager", region_name=REGION)
    return sm.create_secret(Name="regaccess/ns/cred", SecretString='{"username":"u","password":"p"}')["ARN"]


def _ctx(factory, secret_arn: str, previous: dict[str, Any] | None = None, *, remediate: bool = True,
         ptc: dict[str, Any] | None = None, **spec: Any) -> StepContext:
    body = {"source": {"secretRef": {"name": "src"}}, "pullThroughCache": ptc or PREMIUM, **spec}
    resolved, problems = validate_registry_credential("ns", "cred", body, cluster_id="c1")
    assert problems == []
    return StepContext(resolved=resolved, clients=Clients(factory, region=REGION, role_arn=None, external_id=None),
                       previous_status=previous or {}, remediate=remediate, secret_arn=secret_arn,
                       now="2024-01-01T00:00:00Z")


def _status(out: StepOutcome, secret_arn: str) -> dict[str, Any]:
    return {"secretArn": secret_arn, "managed": out.managed, **out.status}


def _rule(aws_server, prefix: str = PREFIX) -> dict[str, Any]:
    return {r["ecrRepositoryPrefix"]: r for r in aws_server.standin.rules(ACCOUNT, REGION)}[prefix]


def _writes(aws_server, mark: int) -> list[str]:
    return [call.operation for call in aws_server.calls.writes(since=mark)]


def _synced_once(aws_server, factory, **kw: Any) -> tuple[str, dict[str, Any]]:
    arn = _secret()
    out = step.sync(_ctx(factory, arn, **kw))
    assert out.error is None, out.error
    return arn, _status(out, arn)


def test_a_premium_rule_is_created_with_both_roles_and_no_credential(aws_server, factory):
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn))
    assert out.error is None and out.writes == 1
    rule = _rule(aws_server)
    assert (rule["upstreamRegistry"], rule["upstreamRegistryUrl"]) == ("ecr-public-premium", "ecr-premium.aws.com")
    assert (rule["customRoleArn"], rule["upstreamRoleArn"]) == (CUSTOM_ROLE, UPSTREAM_ROLE)
    assert "credentialArn" not in rule
    assert _writes(aws_server, mark) == ["CreatePullThroughCacheRule"]
    assert out.status["pullThroughCacheRule"] == {
        "ecrRepositoryPrefix": PREFIX, "upstreamRegistryUrl": "ecr-premium.aws.com", "credentialArn": None,
        "customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": UPSTREAM_ROLE}


def test_a_no_op_resync_makes_no_write(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status))
    assert out.error is None and out.writes == 0 and out.drifted == []
    assert aws_server.calls.counts(since=mark) == {"ecr:DescribePullThroughCacheRules": 1}


def test_a_hand_edit_of_the_upstream_role_is_drift_and_repaired(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    boto3.client("ecr", region_name=REGION).update_pull_through_cache_rule(
        ecrRepositoryPrefix=PREFIX, customRoleArn=CUSTOM_ROLE, upstreamRoleArn=HAND_ROLE)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status))
    assert out.error is None and out.remediated
    assert out.drifted == [(f"pullThroughCacheRule/{PREFIX}", "upstreamRoleArn")]
    # one Update (the stand-in, as ECR, refuses upstreamRoleArn without customRoleArn and any credential)
    assert _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rule(aws_server)["upstreamRoleArn"] == UPSTREAM_ROLE and "credentialArn" not in _rule(aws_server)
    assert [e.reason for e in out.events] == [reasons.DRIFT_REMEDIATED]


def test_a_hand_edit_of_the_upstream_role_is_only_reported_under_report(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    boto3.client("ecr", region_name=REGION).update_pull_through_cache_rule(
        ecrRepositoryPrefix=PREFIX, customRoleArn=CUSTOM_ROLE, upstreamRoleArn=HAND_ROLE)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status, remediate=False, driftPolicy="Report"))
    assert out.error is None and out.writes == 0 and not out.remediated
    assert out.drifted == [(f"pullThroughCacheRule/{PREFIX}", "upstreamRoleArn")]
    assert _writes(aws_server, mark) == []
    assert _rule(aws_server)["upstreamRoleArn"] == HAND_ROLE


def test_a_new_upstream_role_in_the_spec_is_one_update_not_drift(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status, ptc={**PREMIUM, "upstreamRoleArn": HAND_ROLE}))
    assert out.error is None and out.writes == 1 and out.drifted == []
    assert _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rule(aws_server)["upstreamRoleArn"] == HAND_ROLE
    assert out.status["pullThroughCacheRule"]["upstreamRoleArn"] == HAND_ROLE


def test_dropping_the_roles_recreates_the_rule_with_the_service_linked_role(aws_server, factory):
    # UpdatePullThroughCacheRule cannot clear a role: delete + create.
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    plain = {"upstreamRegistry": "ecr-public-premium", "ecrRepositoryPrefix": PREFIX}
    out = step.sync(_ctx(factory, arn, status, ptc=plain))
    assert out.error is None and out.writes == 2
    assert _writes(aws_server, mark) == ["DeletePullThroughCacheRule", "CreatePullThroughCacheRule"]
    assert "customRoleArn" not in _rule(aws_server) and "upstreamRoleArn" not in _rule(aws_server)


def test_an_unrecorded_premium_rule_is_a_conflict_and_untouched(aws_server, factory):
    boto3.client("ecr", region_name=REGION).create_pull_through_cache_rule(
        ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="ecr-premium.aws.com", upstreamRegistry="ecr-public-premium",
        customRoleArn=CUSTOM_ROLE, upstreamRoleArn=HAND_ROLE)
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn))
    assert out.error is not None and out.error.reason == reasons.OWNERSHIP_CONFLICT
    assert _writes(aws_server, mark) == []
    assert _rule(aws_server)["upstreamRoleArn"] == HAND_ROLE


def test_delete_removes_our_premium_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    out = step.delete(_ctx(factory, arn, status))
    assert out.error is None and out.writes == 1
    assert aws_server.standin.rules(ACCOUNT, REGION) == []


ECR_URL = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
ECR_TO_ECR = {"upstreamRegistry": "ecr", "ecrRepositoryPrefix": "mirror", "upstreamRegistryUrl": ECR_URL,
              "customRoleArn": CUSTOM_ROLE, "upstreamRepositoryPrefix": "team-a"}


def test_an_ecr_to_ecr_rule_converges_and_a_new_upstream_prefix_recreates_it(aws_server, factory):
    arn, status = _synced_once(aws_server, factory, ptc=ECR_TO_ECR)
    rule = _rule(aws_server, "mirror")
    assert (rule["upstreamRegistry"], rule["customRoleArn"], rule["upstreamRepositoryPrefix"]) == (
        "ecr", CUSTOM_ROLE, "team-a")
    mark = aws_server.calls.mark()
    assert step.sync(_ctx(factory, arn, status, ptc=ECR_TO_ECR)).writes == 0
    out = step.sync(_ctx(factory, arn, status, ptc={**ECR_TO_ECR, "upstreamRepositoryPrefix": "team-b"}))
    assert out.error is None and out.writes == 2 and out.drifted == []
    assert _writes(aws_server, mark) == ["DeletePullThroughCacheRule", "CreatePullThroughCacheRule"]
    assert _rule(aws_server, "mirror")["upstreamRepositoryPrefix"] == "team-b"
