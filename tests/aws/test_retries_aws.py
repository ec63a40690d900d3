"""controller.aws.retries and the rate limiter over the wire, through ClientFactory's clients.

Given the AWS test server's fault layer, when a non-idempotent register call
loses its answer (``abort`` or ``lost``: the write happened, then the
connection closed or the answer became a throttle or a 5xx), then botocore does
not retry it into duplicate revisions; idempotent writes keep botocore's retries
and, for Secrets Manager, the same ClientRequestToken on each of them, so a
repeat creates nothing twice. When the factory's gate closes, no new call starts
and a failed attempt is not retried.
"""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from controller.aws import ratelimit, retries
from controller.aws.clients import ClientFactory
from tests.conftest import REGION

pytestmark = pytest.mark.aws

CONTAINERS = [{"name": "app", "image": "registry.example.com/app:1", "memory": 128}]


def _revisions(family: str) -> list[str]:
    ecs = boto3.client("ecs", region_name=REGION)
    return ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


def test_aborted_register_is_not_retried_into_duplicates(factory, aws_server):
    ecs = factory.client("ecs")
    ecs.register_task_definition(family="web", containerDefinitions=CONTAINERS)
    aws_server.faults.configure(seed=7, scoped=[
        {"service": "ecs", "operation": "RegisterTaskDefinition", "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()
    with pytest.raises(ConnectionClosedError):
        ecs.register_task_definition(family="web", containerDefinitions=CONTAINERS)
    aws_server.faults.clear()
    # One attempt went out, and it did register: exactly one new revision.
    assert aws_server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1
    assert len(_revisions("web")) == 2


def test_aborted_batch_register_is_not_retried(factory, aws_server):
    batch = factory.client("batch")
    aws_server.faults.configure(seed=7, scoped=[
        {"service": "batch", "operation": "RegisterJobDefinition", "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()
    with pytest.raises(ConnectionClosedError):
        batch.register_job_definition(jobDefinitionName="job", type="container", containerProperties={
            "image": "registry.example.com/job:1", "vcpus": 1, "memory": 128})
    aws_server.faults.clear()
    assert aws_server.calls.count("batch", "RegisterJobDefinition", since=mark) == 1


@pytest.mark.parametrize("answer, code", [("throttle", "ThrottlingException"), ("500", "InternalFailure"),
                                          ("503", "ServiceUnavailable")], ids=["throttle", "500", "503"])
def test_a_register_whose_answer_is_lost_is_not_retried_into_duplicates(factory, aws_server, answer, code):
    """The issue's measurement: every answer a lost 503 made one call into 5 revisions (max_attempts 5)."""
    ecs = factory.client("ecs")
    aws_server.faults.configure(seed=11, lost_answers=[answer], scoped=[
        {"service": "ecs", "operation": "RegisterTaskDefinition", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    with pytest.raises(ClientError) as caught:
        ecs.register_task_definition(family="api", containerDefinitions=CONTAINERS)
    aws_server.faults.clear()
    assert caught.value.response["Error"]["Code"] == code
    assert aws_server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1
    assert len(aws_server.calls.lost("ecs", "RegisterTaskDefinition", since=mark)) == 1
    assert len(_revisions("api")) == 1


def test_a_batch_register_whose_answer_is_lost_is_not_retried(factory, aws_server):
    batch = factory.client("batch")
    aws_server.faults.configure(seed=11, lost_answers=["503"], scoped=[
        {"service": "batch", "operation": "RegisterJobDefinition", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    with pytest.raises(ClientError):
        batch.register_job_definition(jobDefinitionName="job", type="container", containerProperties={
            "image": "registry.example.com/job:1", "vcpus": 1, "memory": 128})
    aws_server.faults.clear()
    assert aws_server.calls.count("batch", "RegisterJobDefinition", since=mark) == 1
    found = boto3.client("batch", region_name=REGION).describe_job_definitions(jobDefinitionName="job")
    assert len(found["jobDefinitions"]) == 1


def test_a_refused_register_is_not_retried_either(factory, aws_server):
    """A throttle before AWS did anything looks the same to the client: one attempt, the loop retries."""
    ecs = factory.client("ecs")
    aws_server.faults.configure(seed=1, fail_first=[
        {"service": "ecs", "operation": "RegisterTaskDefinition", "count": 2, "code": "ThrottlingException",
         "message": "Rate exceeded"}])
    mark = aws_server.calls.mark()
    with pytest.raises(ClientError):
        ecs.register_task_definition(family="api", containerDefinitions=CONTAINERS)
    ecs.describe_clusters()  # reads keep botocore's retries (none needed here)
    assert aws_server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1
    assert _revisions("api") == []


def test_put_secret_value_retried_after_lost_answers_makes_one_version(factory, aws_server):
    """botocore fills ClientRequestToken once per call and resends it on every retry."""
    sm = factory.client("secretsmanager")
    arn = sm.create_secret(Name="token", SecretString='{"v":1}')["ARN"]
    tokens: list[str] = []
    sm.meta.events.register("before-send.secrets-manager.PutSecretValue",
                            lambda request, **_: tokens.append(request.body))
    aws_server.faults.configure(seed=2, lost_answers=["503", "drop"], max_lost_per_operation=3, scoped=[
        {"service": "secretsmanager", "operation": "PutSecretValue", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    version = sm.put_secret_value(SecretId=arn, SecretString='{"v":2}')["VersionId"]
    aws_server.faults.clear()
    # Four attempts, all performed by AWS, three answers lost, one request token.
    assert len(aws_server.calls.done("secretsmanager", "PutSecretValue", since=mark)) == 4
    assert len(aws_server.calls.lost("secretsmanager", "PutSecretValue", since=mark)) == 3
    assert len({body for body in tokens}) == 1 and version.encode() in tokens[0]
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert len(stages) == 2 and stages[version] == ["AWSCURRENT"]


def test_create_secret_retried_after_lost_answers_makes_one_secret(factory, aws_server):
    sm = factory.client("secretsmanager")
    aws_server.faults.configure(seed=2, lost_answers=["500"], max_lost_per_operation=2, scoped=[
        {"service": "secretsmanager", "operation": "CreateSecret", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    created = sm.create_secret(Name="once", SecretString='{"v":1}')
    aws_server.faults.clear()
    assert len(aws_server.calls.done("secretsmanager", "CreateSecret", since=mark)) == 3
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == ["once"]
    assert list(sm.describe_secret(SecretId="once")["VersionIdsToStages"]) == [created["VersionId"]]


def test_idempotent_calls_keep_botocore_retries_on_abort(factory, aws_server):
    sm = factory.client("secretsmanager")
    sm.create_secret(Name="keep", SecretString="{}")
    aws_server.faults.configure(seed=3, fail_first=[], scoped=[
        {"service": "secretsmanager", "operation": "DescribeSecret", "rates": {"abort": 0.5}}])
    for _ in range(10):
        assert sm.describe_secret(SecretId="keep")["Name"] == "keep"
    aws_server.faults.clear()
    assert aws_server.faults.injected("abort") > 0


def test_closed_gate_refuses_new_calls(factory, aws_server):
    sm = factory.client("secretsmanager")
    factory.close()
    mark = aws_server.calls.mark()
    with pytest.raises(retries.OperatorShuttingDown):
        sm.list_secrets()
    with pytest.raises(retries.OperatorShuttingDown):
        factory.client("iam").list_roles()  # clients made after closing too
    assert aws_server.calls.count(since=mark) == 0


def test_closed_gate_stops_retrying(factory, aws_server):
    """A throttled attempt answered after shutdown began is not retried: one call on the wire."""
    sm = factory.client("secretsmanager")
    # SIGTERM arrives while the first attempt is on the wire.
    sm.meta.events.register("response-received", lambda **_: factory.close())
    aws_server.faults.configure(seed=1, scoped=[{"service": "secretsmanager", "rates": {"throttle": 1.0}}])
    mark = aws_server.calls.mark()
    with pytest.raises(retries.OperatorShuttingDown):
        sm.list_secrets()
    aws_server.faults.clear()
    assert aws_server.calls.count("secretsmanager", since=mark) == 1


def test_gate_sleep_wakes_up_on_close():
    gate = retries.Gate()
    threading.Timer(0.05, gate.close).start()
    with pytest.raises(retries.OperatorShuttingDown):
        gate.sleep(30)
    assert gate.closed


def test_rate_limiter_paces_real_calls(aws_server):
    """Through real clients: 25 registrations with 1/s burst 20 wait 1+2+3+4+5 s (an injected clock)."""
    now = [0.0]
    sleeps: list[float] = []
    waits: list[tuple[str, str, float]] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    limiter = ratelimit.RateLimiter(ratelimit.DEFAULT_RULES, clock=lambda: now[0], sleep=sleep,
                                    on_wait=lambda s, o, w: waits.append((s, o, w)))
    f = ClientFactory(session=boto3.session.Session(region_name=REGION), hooks=[("before-call", limiter.before_call)])
    ecs = f.client("ecs")
    for _ in range(25):
        ecs.register_task_definition(family="paced", containerDefinitions=CONTAINERS)
    assert sleeps == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])
    assert {(s, o) for s, o, _ in waits} == {("ecs", "RegisterTaskDefinition")}
    # ECR's client name (not its endpoint prefix api.ecr) is what rules match on.
    f.client("ecr").describe_repositories()
    assert ("ecr", "DescribeRepositories") in {(s, o) for s, o, _ in waits}


def test_failed_call_keeps_its_botocore_error_with_the_metrics_hooks(aws_server):
    """Regression: the after-call-error metrics hook read a model botocore does not pass, and its
    AttributeError replaced the ConnectionClosedError (unclassified: kopf's 60 s backoff)."""
    from controller import metrics

    f = ClientFactory(session=boto3.session.Session(region_name=REGION), hooks=list(metrics.CLIENT_HOOKS))
    ecs = f.client("ecs")
    aws_server.faults.configure(seed=7, scoped=[
        {"service": "ecs", "operation": "RegisterTaskDefinition", "rates": {"abort": 1.0}}])
    before = metrics.AWS_CALLS.labels("ecs", "RegisterTaskDefinition", "connection_error")._value.get()
    with pytest.raises(ConnectionClosedError):
        ecs.register_task_definition(family="metered", containerDefinitions=CONTAINERS)
    aws_server.faults.clear()
    assert metrics.AWS_CALLS.labels("ecs", "RegisterTaskDefinition", "connection_error")._value.get() == before + 1


def test_a_vetoed_throttle_is_counted_as_throttled(aws_server):
    """The veto ends the call in after-call-error: the metrics still see the answer it was."""
    from controller import metrics

    f = ClientFactory(session=boto3.session.Session(region_name=REGION), hooks=list(metrics.CLIENT_HOOKS))
    ecs = f.client("ecs")
    aws_server.faults.configure(seed=7, lost_answers=["throttle"], scoped=[
        {"service": "ecs", "operation": "RegisterTaskDefinition", "rates": {"lost": 1.0}}])
    calls = metrics.AWS_CALLS.labels("ecs", "RegisterTaskDefinition", "throttled")
    throttles = metrics.AWS_THROTTLES.labels("ecs", "RegisterTaskDefinition")
    before = (calls._value.get(), throttles._value.get())
    with pytest.raises(ClientError):
        ecs.register_task_definition(family="metered", containerDefinitions=CONTAINERS)
    aws_server.faults.clear()
    assert (calls._value.get(), throttles._value.get()) == (before[0] + 1, before[1] + 1)
