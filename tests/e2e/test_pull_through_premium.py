"""RegistryCredential with an ecr-public-premium pull-through cache rule (issue 29), end to end.

The rule authenticates with IAM roles (customRoleArn, and upstreamRoleArn in the aws partition)
instead of the secret, which keeps its regaccess/ name and password key. Acceptance: the rule
converges, a hand edit of its upstreamRoleArn is drift (found by the drift check and repaired),
and a missing customRoleArn is Ready=False with a reason and no AWS write. The rule lives in the
harness's stand-in (moto has none), reached over the wire; the operator is a real process
against the real API server.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import condition, wait_for
from tests.e2e.support import (
    DRIFT_WAIT,
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
)

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
CUSTOM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-pull-through"
UPSTREAM_ROLE = "arn:aws:iam::210987654321:role/premium-entitled"
HAND_ROLE = "arn:aws:iam::210987654321:role/hand-made"
PASSWORD = "premium-e2e-pw-7d21"


def rule(session, prefix: str) -> dict | None:
    ecr = session.client("ecr")
    try:
        return ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])["pullThroughCacheRules"][0]
    except ecr.exceptions.PullThroughCacheRuleNotFoundException:
        return None


def premium_spec(prefix: str, **roles: str) -> dict:
    return {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True},
            "pullThroughCache": {"upstreamRegistry": "ecr-public-premium", "ecrRepositoryPrefix": prefix, **roles}}


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


def test_premium_rule_converges_and_a_hand_edit_of_upstream_role_is_drift(
        kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    prefix = f"{namespace}-prem"
    path = rc_path(namespace, "prem")
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src", username="robot", password=PASSWORD))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "prem", premium_spec(
        prefix, customRoleArn=CUSTOM_ROLE, upstreamRoleArn=UPSTREAM_ROLE)))
    obj = wait_ready(kube, path)
    status = obj["status"]

    # The rule takes no credential: both roles, no credentialArn; the secret is an ordinary one.
    found = rule(aws_e2e, prefix)
    assert (found["upstreamRegistry"], found["upstreamRegistryUrl"]) == ("ecr-public-premium", "ecr-premium.aws.com")
    assert (found["customRoleArn"], found["upstreamRoleArn"]) == (CUSTOM_ROLE, UPSTREAM_ROLE)
    assert "credentialArn" not in found
    assert status["secretName"] == f"regaccess/{namespace}/prem"
    value = json.loads(aws_e2e.client("secretsmanager").get_secret_value(SecretId=status["secretArn"])["SecretString"])
    assert value == {"username": "robot", "password": PASSWORD}
    assert status["pullThroughCacheRule"] == {
        "ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "ecr-premium.aws.com",
        "customRoleArn": CUSTOM_ROLE, "upstreamRoleArn": UPSTREAM_ROLE}
    assert managed(obj)[("pullThroughCacheRule", prefix)]["state"] == "Synced"

    # Converged: a whole drift check later, no ECR write.
    mark = quiet_resync(kube, [path])(calls)
    assert calls.writes(since=mark, service="ecr") == []

    # A hand edit of upstreamRoleArn: found by the drift check and put back (driftPolicy Remediate).
    aws_e2e.client("ecr").update_pull_through_cache_rule(ecrRepositoryPrefix=prefix, customRoleArn=CUSTOM_ROLE,
                                                         upstreamRoleArn=HAND_ROLE)
    assert rule(aws_e2e, prefix)["upstreamRoleArn"] == HAND_ROLE
    mark = calls.mark()
    wait_for(lambda: rule(aws_e2e, prefix)["upstreamRoleArn"] == UPSTREAM_ROLE, DRIFT_WAIT, "upstreamRoleArn repaired")
    obj = wait_for(lambda: next((o for o in [kube.get(path)] if any(
        d["field"] == "upstreamRoleArn" and d["object"] == f"pullThroughCacheRule/{prefix}"
        for d in o["status"].get("drift") or [])), None), SETTLE, "the drift recorded in status")
    assert [c.operation for c in calls.writes(since=mark, service="ecr")] == ["UpdatePullThroughCacheRule"]
    assert any("upstreamRoleArn" in e["message"] for e in kube.events_for(namespace, "prem")
               if e["reason"] == "DriftRemediated")
    assert condition(wait_ready(kube, path), "Ready")["status"] == "True"

    # Deleting the resource deletes the rule.
    kube.delete(path)
    wait_for(lambda: kube.get_or_none(path) is None, SETTLE, "resource deleted")
    assert rule(aws_e2e, prefix) is None


def test_a_missing_custom_role_is_ready_false_with_no_aws_write(
        kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    prefix = f"{namespace}-half"
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src", password=PASSWORD))
    mark = calls.mark()
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "half", premium_spec(
        prefix, upstreamRoleArn=UPSTREAM_ROLE)))
    obj = wait_condition(kube, rc_path(namespace, "half"), reason="InvalidPullThroughCache")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert "spec.pullThroughCache.customRoleArn" in ready["message"] and "together" in ready["message"]
    wait_warning(kube, namespace, "half", "InvalidPullThroughCache")
    # Judged before any AWS call: no write anywhere (other tests' drift checks may read
    # meanwhile), no rule, no secret.
    assert calls.writes(since=mark) == [], calls.counts(since=mark)
    assert rule(aws_e2e, prefix) is None
    assert not obj["status"].get("pullThroughCacheRule")
    pages = aws_e2e.client("secretsmanager").get_paginator("list_secrets").paginate()
    assert not [s["Name"] for page in pages for s in page["SecretList"] if namespace in s["Name"]]
