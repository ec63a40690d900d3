"""The pull-through cache step over the wire, against moto + the harness's ECR stand-in.

Each test runs ``sync`` / ``delete`` with a real client factory, then checks
the rule in the stand-in and the AWS calls the server recorded (a no-op resync
must make zero writes; a conflict must make none).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from controller.api import reasons
from controller.api.validation import validate_registry_credential
from controller.aws.clients import ClientFactory, Clients
from controller.reconcile import pull_through_cache as step
from controller.reconcile.steps import StepContext, StepOutcome

pytestmark = pytest.mark.aws

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "docker"


@pytest.fixture
def no_retry_factory(aws) -> ClientFactory:
    """Clients without botocore retries (one attempt): botocore retries throttling and LimitExceededException
    (it counts that code as throttling) with backoff, which would only slow these tests."""
    return ClientFactory(max_attempts=1, session=boto3.session.Session(region_name=REGION))


def _secret(name: str = "ecr-pullthroughcache/ns/cred") -> str:
    sm = boto3.client("secretsmanager", region_name=REGION)
    return sm.create_secret(Name=name, SecretString='{"username":"u","accessToken":"t"}')["ARN"]


def _ctx(factory, secret_arn: str | None, previous: dict[str, Any] | None = None, *, remediate: bool = True,
         **spec: Any) -> StepContext:
    ptc = spec.pop("pullThroughCache", {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": PREFIX})
    body = {"source": {"secretRef": {"name": "src"}}, **spec}
    if ptc is not None:
        body["pullThroughCache"] = ptc
    resolved, problems = validate_registry_credential("ns", "cred", body, cluster_id="c1")
    assert problems == []
    return StepContext(
        resolved=resolved,
        clients=Clients(factory, region=REGION, role_arn=None, external_id=None),
        previous_status=previous or {},
        remediate=remediate,
        secret_arn=secret_arn,
        now="2024-01-01T00:00:00Z",
    )


def _status(out: StepOutcome, secret_arn: str) -> dict[str, Any]:
    """The status a reconciler would write from this outcome (what the next run reads)."""
    return {"secretArn": secret_arn, "managed": out.managed, **out.status}


def _rules(aws_server) -> dict[str, dict[str, Any]]:
    return {rule["ecrRepositoryPrefix"]: rule for rule in aws_server.standin.rules(ACCOUNT, REGION)}


def _ecr():
    return boto3.client("ecr", region_name=REGION)


def _writes(aws_server, mark: int) -> list[str]:
    return [call.operation for call in aws_server.calls.writes(since=mark)]


def _synced_once(aws_server, factory) -> tuple[str, dict[str, Any]]:
    arn = _secret()
    out = step.sync(_ctx(factory, arn))
    assert out.error is None
    return arn, _status(out, arn)


def test_create(aws_server, factory):
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn))
    assert out.error is None and out.writes == 1
    assert out.status["pullThroughCacheRule"] == {
        "ecrRepositoryPrefix": PREFIX, "upstreamRegistryUrl": "registry-1.docker.io", "credentialArn": arn}
    assert out.managed == [{"kind": "pullThroughCacheRule", "name": PREFIX, "arn": None, "state": "Synced",
                            "message": ""}]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == arn
    assert _writes(aws_server, mark) == ["CreatePullThroughCacheRule"]
    assert [e.reason for e in out.events] == [reasons.RECONCILED]


def test_a_no_op_resync_makes_no_write(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status))
    assert out.error is None and out.writes == 0 and out.drifted == []
    assert _writes(aws_server, mark) == []
    assert aws_server.calls.counts(since=mark) == {"ecr:DescribePullThroughCacheRules": 1}


def test_a_new_secret_arn_updates_the_rule(aws_server, factory):
    _, status = _synced_once(aws_server, factory)
    new_arn = _secret("ecr-pullthroughcache/ns/cred-v2")
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, new_arn, status))
    assert out.error is None and out.writes == 1 and out.drifted == []
    assert _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == new_arn


def test_a_new_upstream_recreates_the_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status,
                         pullThroughCache={"upstreamRegistry": "github-container-registry", "ecrRepositoryPrefix": PREFIX}))
    assert out.error is None and out.writes == 2
    assert _writes(aws_server, mark) == ["DeletePullThroughCacheRule", "CreatePullThroughCacheRule"]
    rule = _rules(aws_server)[PREFIX]
    assert (rule["upstreamRegistryUrl"], rule["upstreamRegistry"]) == ("ghcr.io", "github-container-registry")
    assert out.status["pullThroughCacheRule"]["upstreamRegistryUrl"] == "ghcr.io"


def test_a_foreign_rule_is_a_conflict_and_is_not_touched(aws_server, factory):
    theirs = _secret("ecr-pullthroughcache/someone/else")
    _ecr().create_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="registry-1.docker.io",
                                          credentialArn=theirs)
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn))
    assert out.error is not None and out.error.reason == reasons.OWNERSHIP_CONFLICT and not out.error.retryable
    assert out.writes == 0 and _writes(aws_server, mark) == []
    assert out.managed[0]["state"] == "Conflict"
    assert "pullThroughCacheRule" not in out.status
    assert _rules(aws_server)[PREFIX]["credentialArn"] == theirs
    assert [e.reason for e in out.events] == [reasons.OWNERSHIP_CONFLICT]


def test_a_foreign_rule_is_adopted_when_asked(aws_server, factory):
    theirs = _secret("ecr-pullthroughcache/someone/else")
    _ecr().create_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="registry-1.docker.io",
                                          credentialArn=theirs)
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, adoptExisting=True))
    assert out.error is None and out.writes == 1
    assert _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == arn
    # and from now on it is ours: a resync makes no write
    again = step.sync(_ctx(factory, arn, _status(out, arn), adoptExisting=True))
    assert again.error is None and again.writes == 0


def test_a_rule_deleted_by_hand_is_drift_and_is_recreated(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    _ecr().delete_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX)
    out = step.sync(_ctx(factory, arn, status))
    assert out.error is None and out.writes == 1 and out.remediated
    assert out.drifted == [("pullThroughCacheRule/docker", "exists")]
    assert PREFIX in _rules(aws_server)


def test_a_credential_changed_by_hand_is_repaired(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    _ecr().update_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX,
                                          credentialArn=_secret("ecr-pullthroughcache/hand/made"))
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status))
    assert out.error is None and out.remediated
    assert out.drifted == [("pullThroughCacheRule/docker", "credentialArn")]
    assert _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == arn


def test_drift_is_only_reported_when_not_remediating(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    hand = _secret("ecr-pullthroughcache/hand/made")
    _ecr().update_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, credentialArn=hand)
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status, remediate=False, driftPolicy="Report"))
    assert out.error is None and out.writes == 0 and not out.remediated
    assert out.drifted == [("pullThroughCacheRule/docker", "credentialArn")]
    assert _writes(aws_server, mark) == []
    assert _rules(aws_server)[PREFIX]["credentialArn"] == hand
    assert out.status["pullThroughCacheRule"] == status["pullThroughCacheRule"]
    assert [e.reason for e in out.events] == [reasons.DRIFT_REPORTED]


def test_delete_removes_our_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.delete(_ctx(factory, arn, status))
    assert out.error is None and out.writes == 1
    assert _writes(aws_server, mark) == ["DeletePullThroughCacheRule"]
    assert _rules(aws_server) == {}
    # deleting again is done at once (NotFound means done)
    assert step.delete(_ctx(factory, arn, status)).writes == 0


def test_delete_with_retain_keeps_the_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    mark = aws_server.calls.mark()
    out = step.delete(_ctx(factory, arn, status, deletionPolicy="Retain"))
    assert out.error is None and out.writes == 0
    assert aws_server.calls.list(since=mark) == []
    assert out.managed[0]["state"] == "Retained"
    assert PREFIX in _rules(aws_server)


def test_delete_never_removes_a_foreign_rule(aws_server, factory):
    theirs = _secret("ecr-pullthroughcache/someone/else")
    _ecr().create_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="registry-1.docker.io",
                                          credentialArn=theirs)
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.delete(_ctx(factory, arn))
    assert out.writes == 0 and _writes(aws_server, mark) == []
    assert _rules(aws_server)[PREFIX]["credentialArn"] == theirs


def test_a_changed_prefix_moves_the_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    out = step.sync(_ctx(factory, arn, status,
                         pullThroughCache={"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"}))
    assert out.error is None
    assert set(_rules(aws_server)) == {"hub"}
    assert out.status["pullThroughCacheRule"]["ecrRepositoryPrefix"] == "hub"


def test_a_changed_prefix_after_a_failed_sync_still_moves_the_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    status["managed"] = [{**row, "state": "Error", "message": "throttled"} for row in status["managed"]]
    out = step.sync(_ctx(factory, arn, status,
                         pullThroughCache={"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"}))
    assert out.error is None
    assert set(_rules(aws_server)) == {"hub"}


def test_removing_pull_through_cache_from_the_spec_deletes_our_rule(aws_server, factory):
    arn, status = _synced_once(aws_server, factory)
    out = step.sync(_ctx(factory, arn, status, pullThroughCache=None, secret={"name": "ecr-pullthroughcache/ns/cred"}))
    assert out.error is None and out.writes == 1
    assert _rules(aws_server) == {} and out.status["pullThroughCacheRule"] is None


def test_the_50_rule_limit_is_a_clear_terminal_reason(aws_server, no_retry_factory):
    ecr = _ecr()
    for index in range(50):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=f"quay-{index:02d}", upstreamRegistryUrl="quay.io")
    out = step.sync(_ctx(no_retry_factory, _secret()))
    assert out.error is not None
    assert (out.error.reason, out.error.retryable) == (reasons.PULL_THROUGH_CACHE_LIMIT, False)
    assert "50" in out.error.message
    assert out.managed[0]["state"] == "Error"


def test_no_secret_arn_yet_is_a_retryable_missing_dependency(aws_server, factory):
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, None))
    assert (out.error.reason, out.error.retryable) == (reasons.DEPENDENCY_MISSING, True)
    assert aws_server.calls.list(since=mark) == []


def test_a_secret_ecr_cannot_see_yet_is_retried(aws_server, factory):
    aws_server.faults.configure(fail_first=[{"operation": "CreatePullThroughCacheRule", "count": 100,
                                             "code": "SecretNotFoundException", "message": "not found"}])
    out = step.sync(_ctx(factory, _secret()))
    assert (out.error.reason, out.error.retryable) == (reasons.DEPENDENCY_MISSING, True)


def test_throttling_that_outlasts_the_retries_is_retryable(aws_server, no_retry_factory):
    aws_server.faults.configure(scoped=[{"service": "ecr", "rates": {"throttle": 1.0}}])
    out = step.sync(_ctx(no_retry_factory, _secret()))
    assert (out.error.reason, out.error.retryable) == (reasons.AWS_THROTTLED, True)
    assert "request" not in out.error.message.lower()


def _owned_secret(name: str, owner: str) -> str:
    sm = boto3.client("secretsmanager", region_name=REGION)
    return sm.create_secret(Name=name, SecretString='{"username":"u","accessToken":"t"}',
                            Tags=[{"Key": "regaccess.io/owner", "Value": owner}])["ARN"]


def test_another_owners_rule_is_a_conflict_even_when_adopting(aws_server, factory):
    """Issue 17: a rule whose credential is another owner's secret is never adopted, updated or deleted."""
    theirs = _owned_secret("ecr-pullthroughcache/team-b/hub", "c1/team-b/hub")
    _ecr().create_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="registry-1.docker.io",
                                          credentialArn=theirs)
    arn = _secret()
    mark = aws_server.calls.mark()
    for check in (step.precheck, step.sync):
        out = check(_ctx(factory, arn, adoptExisting=True))
        assert out.error is not None and out.error.reason == reasons.OWNERSHIP_CONFLICT, check
        assert "'docker'" in out.error.message and "c1/team-b/hub" in out.error.message
        assert out.managed[0]["state"] == "Conflict"
    assert out.writes == 0 and _writes(aws_server, mark) == []
    # The credential's owner was read once per look (DescribeSecret), on this path only.
    assert aws_server.calls.count("secretsmanager", "DescribeSecret", since=mark) == 2

    out = step.delete(_ctx(factory, arn, adoptExisting=True))
    assert out.error is None and out.writes == 0 and _writes(aws_server, mark) == []
    assert [e.reason for e in out.events] == [reasons.OWNERSHIP_CONFLICT]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == theirs


def test_a_rule_whose_credential_carries_our_mark_is_ours(aws_server, factory):
    """Our secret under another ARN (re-created): its tag says the rule is ours, so it is updated."""
    old = _owned_secret("ecr-pullthroughcache/ns/old", "c1/ns/cred")
    _ecr().create_pull_through_cache_rule(ecrRepositoryPrefix=PREFIX, upstreamRegistryUrl="registry-1.docker.io",
                                          credentialArn=old)
    arn = _secret()
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn))
    assert out.error is None and _writes(aws_server, mark) == ["UpdatePullThroughCacheRule"]
    assert _rules(aws_server)[PREFIX]["credentialArn"] == arn


@pytest.mark.parametrize("operation", ["CreatePullThroughCacheRule", "UpdatePullThroughCacheRule"])
def test_a_rule_write_whose_answer_is_lost_is_observed_and_taken_as_done(aws_server, factory, operation):
    """ECR does the write and the answer never arrives: the loop looks again and finds the rule
    as declared, so the outcome is Synced and nothing is written twice after the retries."""
    arn, status = (_secret(), {}) if operation.startswith("Create") else _synced_once(aws_server, factory)
    if operation.startswith("Update"):
        arn = _secret("ecr-pullthroughcache/ns/cred-v2")
    aws_server.faults.configure(scoped=[{"service": "ecr", "operation": operation, "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()
    out = step.sync(_ctx(factory, arn, status))
    aws_server.faults.clear()
    assert out.error is None, out.error
    assert out.managed[0]["state"] == "Synced" and out.status["pullThroughCacheRule"]["credentialArn"] == arn
    assert _rules(aws_server)[PREFIX]["credentialArn"] == arn
    assert {c.operation for c in aws_server.calls.writes(since=mark)} == {operation}
