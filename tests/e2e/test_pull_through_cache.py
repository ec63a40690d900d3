"""RegistryCredential with an ECR pull-through cache rule (issue 4), end to end.

The rule lives in the harness's pull-through cache stand-in (moto has none),
reached over the wire like every other AWS call; the operator runs as a process
against the real API server. Driven only through the Kubernetes API.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import ApiError, condition, wait_for
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
)

pytestmark = pytest.mark.e2e

TOKEN = "dckr_pat_e2e-kinds-0c3f"
PTC_WRITES = ("CreatePullThroughCacheRule", "UpdatePullThroughCacheRule", "DeletePullThroughCacheRule")


def rule(session, prefix: str) -> dict | None:
    ecr = session.client("ecr")
    try:
        return ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])["pullThroughCacheRules"][0]
    except ecr.exceptions.PullThroughCacheRuleNotFoundException:
        return None


def ptc_spec(prefix: str, **extra) -> dict:
    return {"source": {"secretRef": {"name": "hub"}}, "secret": {"forceDeleteWithoutRecovery": True},
            "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": prefix}, **extra}


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


def test_rule_created_resynced_recreated_and_deleted(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    sm = aws_e2e.client("secretsmanager")
    prefix = f"{namespace}-hub"
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub", username="hubuser", password=TOKEN))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "hub", ptc_spec(prefix)))
    obj = wait_ready(kube, rc_path(namespace, "hub"))
    status = obj["status"]

    # The secret follows ECR's rules: the prefix in its name, username/accessToken keys.
    assert status["secretName"] == f"ecr-pullthroughcache/{namespace}/hub"
    value = json.loads(sm.get_secret_value(SecretId=status["secretArn"])["SecretString"])
    assert value == {"username": "hubuser", "accessToken": TOKEN}
    found = rule(aws_e2e, prefix)
    assert found["credentialArn"] == status["secretArn"]
    assert (found["upstreamRegistryUrl"], found["upstreamRegistry"]) == ("registry-1.docker.io", "docker-hub")
    assert status["pullThroughCacheRule"] == {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "registry-1.docker.io",
                                              "credentialArn": status["secretArn"]}
    assert managed(obj)[("pullThroughCacheRule", prefix)]["state"] == "Synced"
    assert any("created pull-through cache rule" in e["message"] for e in kube.events_for(namespace, "hub"))

    # No-op resync: zero ECR writes (and the rule was read).
    mark = quiet_resync(kube, [rc_path(namespace, "hub")])(calls)
    assert calls.writes(since=mark, service="ecr") == []
    assert calls.count("ecr", "DescribePullThroughCacheRules", since=mark) >= 1

    # Another upstream: ECR cannot update it, so the rule is deleted and created again.
    mark = calls.mark()
    kube.merge_patch(rc_path(namespace, "hub"), {"spec": {"pullThroughCache": {"upstreamRegistry": "github-container-registry"}}})
    wait_for(lambda: (rule(aws_e2e, prefix) or {}).get("upstreamRegistryUrl") == "ghcr.io", SETTLE, "rule for ghcr.io")
    obj = wait_ready(kube, rc_path(namespace, "hub"))
    assert obj["status"]["pullThroughCacheRule"]["upstreamRegistryUrl"] == "ghcr.io"
    assert [c.operation for c in calls.writes(since=mark, service="ecr")] == [
        "DeletePullThroughCacheRule", "CreatePullThroughCacheRule"]

    # Delete: the rule and (forced) the secret go.
    kube.delete(rc_path(namespace, "hub"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "hub")) is None, SETTLE, "resource deleted")
    assert rule(aws_e2e, prefix) is None
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=status["secretArn"])


def test_retain_keeps_rule_and_secret(kube, operator, namespace, aws_e2e, cleanup):
    prefix = f"{namespace}-kept"
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub", password=TOKEN))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "kept", {
        **ptc_spec(prefix), "secret": {}, "deletionPolicy": "Retain"}))
    secret_arn = wait_ready(kube, rc_path(namespace, "kept"))["status"]["secretArn"]
    kube.delete(rc_path(namespace, "kept"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "kept")) is None, SETTLE, "resource deleted")
    assert rule(aws_e2e, prefix)["credentialArn"] == secret_arn
    assert "DeletedDate" not in aws_e2e.client("secretsmanager").describe_secret(SecretId=secret_arn)
    # Kept rules count against the 50 per registry: clean up what this test left on purpose.
    aws_e2e.client("ecr").delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)


def test_bad_input_reason_event_and_no_aws_write(kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    calls = aws_server_session.calls
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub", password=TOKEN))
    invalid = {
        "name-without-prefix": ({"secret": {"name": f"team/{namespace}/hub-credential"}}, "spec.secret.name"),
        "kms-key": ({"secret": {"kmsKeyId": "alias/registry"}}, "spec.secret.kmsKeyId"),
        "azure-without-url": ({"pullThroughCache": {"upstreamRegistry": "azure-container-registry",
                                                    "ecrRepositoryPrefix": f"{namespace}-az"}},
                              "spec.pullThroughCache.upstreamRegistryUrl"),
    }
    mark = calls.mark()
    for index, (name, (extra, _)) in enumerate(invalid.items()):
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, name,
                                                        {**ptc_spec(f"{namespace}-bad{index}"), **extra}))
    for name, (_, field) in invalid.items():
        obj = wait_condition(kube, rc_path(namespace, name), reason="InvalidPullThroughCache")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and field in ready["message"], (name, ready)
        wait_warning(kube, namespace, name, "InvalidPullThroughCache")
    # Judged before any AWS call: no write anywhere, no rule observed, no secret made. (Reads
    # are not counted: resources other tests left behind share this AWS server and may run
    # their drift checks meanwhile; the AWS tier proves an invalid spec makes no call at all.)
    assert calls.writes(since=mark) == [], calls.counts(since=mark)
    for name in invalid:
        assert not kube.get(rc_path(namespace, name))["status"].get("pullThroughCacheRule"), name
    pages = aws_e2e.client("secretsmanager").get_paginator("list_secrets").paginate()
    names = {s["Name"] for page in pages for s in page["SecretList"]}
    assert not [n for n in names if namespace in n], names

    # A prefix already taken by a rule that is not ours: a conflict, never an overwrite.
    sm, ecr = aws_e2e.client("secretsmanager"), aws_e2e.client("ecr")
    foreign_secret = sm.create_secret(Name=f"ecr-pullthroughcache/{namespace}/someone-else",
                                      SecretString=json.dumps({"username": "x", "accessToken": "y"}))["ARN"]
    taken = f"{namespace}-taken"
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=taken, upstreamRegistryUrl="registry-1.docker.io",
                                       upstreamRegistry="docker-hub", credentialArn=foreign_secret)
    mark = calls.mark()
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "taken", ptc_spec(taken)))
    obj = wait_condition(kube, rc_path(namespace, "taken"), reason="OwnershipConflict")
    assert "adoptExisting" in condition(obj, "Ready")["message"]
    assert managed(obj)[("pullThroughCacheRule", taken)]["state"] == "Conflict"
    wait_warning(kube, namespace, "taken", "OwnershipConflict")
    assert rule(aws_e2e, taken)["credentialArn"] == foreign_secret
    assert [c for c in calls.writes(since=mark, service="ecr") if c.operation in PTC_WRITES] == []
    # Judged before the first write: not even our secret was created.
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=f"ecr-pullthroughcache/{namespace}/taken")

    # Deleting the conflicting resource never deletes the foreign rule.
    kube.delete(rc_path(namespace, "taken"))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, "taken")) is None, SETTLE, "resource deleted")
    assert rule(aws_e2e, taken)["credentialArn"] == foreign_secret
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=taken)


@pytest.mark.parametrize("cache, field", [
    ({"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "x"}, "ecrRepositoryPrefix"),
    ({"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "Upper-Case"}, "ecrRepositoryPrefix"),
    ({"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "a" * 31}, "ecrRepositoryPrefix"),
    ({"upstreamRegistry": "nexus", "ecrRepositoryPrefix": "quay"}, "upstreamRegistry"),
], ids=["prefix-too-short", "prefix-pattern", "prefix-too-long", "unknown-upstream"])
def test_schema_rejects_at_admission(kube, namespace, cache, field):
    with pytest.raises(ApiError) as info:
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "bad", {
            "source": {"secretRef": {"name": "hub"}}, "pullThroughCache": cache}))
    assert info.value.status == 422
    assert field in info.value.body
