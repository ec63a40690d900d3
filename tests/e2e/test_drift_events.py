"""Drift events end to end: a hand change in AWS is repaired within seconds through its CloudTrail event.

Its own operator process on the real API server, with a real (moto) SQS queue as
``--drift-events-queue-url`` and the drift check pushed out of the way
(``--drift-backstop-interval 3600``): anything repaired within seconds was repaired
by the event. The operator is used once its poller has checked the queue
(``regaccess_drift_event_queue_up`` 1), so no event is sent before anyone reads it.
The events come from ``tests.harness.cloudtrail`` (the documented stand-in for
CloudTrail + EventBridge: the test's out-of-band call, then its envelope to the queue).

- a widened inline role policy and a new secret value are each repaired within
  EVENT_DEADLINE (5 s, the issue's bound) of the call, far below the backstop interval;
  the status and metrics of those reconciles are written after the repair, so they are
  waited for, not read at once;
- an event for an object nobody manages and a malformed message trigger nothing
  (no reconcile, no AWS write) and are counted;
- the operator's own write seen again as an event (an echo) is one reconcile that
  writes nothing.
"""

from __future__ import annotations

import json
import signal
import time

import boto3
import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.test_drift import counter, metric_values
from tests.e2e.test_registry_credential import basic_auth_secret
from tests.harness import cloudtrail, world

pytestmark = pytest.mark.e2e

BACKSTOP = 3600.0
# The issue's bound. The event path: the long poll answers as soon as the message is sent, the
# trigger is due at once (no kopf handler, no API call), then one reconcile (a drift check's reads
# and the repair): a few hundred milliseconds when idle.
EVENT_DEADLINE = 5.0
QUEUE = "regaccess-drift-events-e2e"
THEIRS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


@pytest.fixture(scope="module")
def queue_url(moto_server) -> str:
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return sqs.create_queue(QueueName=QUEUE)["QueueUrl"]


@pytest.fixture(scope="module")
def events_operator(control_plane, kube, moto_server, queue_url, tmp_path_factory):
    op = start_operator(control_plane, moto_server, tmp_path_factory.mktemp("events-operator"), extra_env={
        "REGACCESS_DRIFT_EVENTS_QUEUE_URL": queue_url,
        "REGACCESS_DRIFT_BACKSTOP_INTERVAL": str(BACKSTOP),
    })
    # Ready (/readyz) says kopf watches; the poller checks its queue on its own: wait for that.
    wait_for(lambda: counter(metric_values(op.metrics()), "regaccess_drift_event_queue_up", queue=QUEUE) == 1,
             30, "the drift-event queue checked by the poller")
    yield op
    op.kill(signal.SIGTERM)


class Scene:
    """One RegistryCredential (secret + one role's inline policy), named after its namespace."""

    def __init__(self, kube, namespace: str, session) -> None:
        self.kube, self.ns, self.client = kube, namespace, session.client
        self.role, self.policy = f"exec-{namespace}", f"regaccess-{namespace}-cred"
        self.secret = f"regaccess/{namespace}/cred"
        world.make_role(self.client, self.role)
        kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
        kube.create(kube.rc_path(namespace), registry_credential(namespace, "cred", {
            "source": {"secretRef": {"name": "src"}},
            "secret": {"forceDeleteWithoutRecovery": True},
            "grants": {"executionRoles": [self.role]},
        }))
        wait_for(lambda: condition(self.rc(), "Ready").get("status") == "True", 60, "RegistryCredential Ready")

    def rc(self) -> dict:
        return self.kube.get(self.kube.rc_path(self.ns, "cred"))

    def document(self) -> dict:
        return world.role_policy(self.client, self.role, self.policy)

    def secret_value(self) -> dict:
        return json.loads(self.client("secretsmanager").get_secret_value(SecretId=self.secret)["SecretString"])

    def delete(self) -> None:
        self.kube.delete(self.kube.rc_path(self.ns, "cred"))
        wait_for(lambda: self.kube.get_or_none(self.kube.rc_path(self.ns, "cred")) is None, 60, "deleted")


@pytest.fixture
def scene(kube, events_operator, namespace, aws_e2e):
    made = Scene(kube, namespace, aws_e2e)
    yield made
    made.delete()


def event_reconciles(op) -> float:
    return counter(metric_values(op.metrics()), "regaccess_reconcile_total", trigger="event")


def events_counted(op, outcome: str) -> float:
    return counter(metric_values(op.metrics()), "regaccess_drift_events_total", outcome=outcome)


def test_a_widened_policy_and_a_new_secret_value_are_repaired_within_seconds(scene, events_operator, aws_e2e,
                                                                              queue_url):
    sqs = aws_e2e.client("sqs")
    ours, value = scene.document(), scene.secret_value()
    widened = json.loads(json.dumps(ours))
    widened["Statement"][0]["Resource"] = "*"

    started = time.monotonic()
    cloudtrail.out_of_band(aws_e2e.client("iam"), "PutRolePolicy", sqs, queue_url, RoleName=scene.role,
                           PolicyName=scene.policy, PolicyDocument=json.dumps(widened))
    assert scene.document() != ours  # the hand change is in AWS
    wait_for(lambda: scene.document() == ours, EVENT_DEADLINE, "inline policy repaired through its event")
    policy_repaired = time.monotonic() - started

    started = time.monotonic()
    cloudtrail.out_of_band(aws_e2e.client("secretsmanager"), "PutSecretValue", sqs, queue_url,
                           SecretId=scene.secret, SecretString=json.dumps({"username": "x", "password": "HANDSET-9"}))
    wait_for(lambda: scene.secret_value() == value, EVENT_DEADLINE, "secret value repaired through its event")
    secret_repaired = time.monotonic() - started

    assert max(policy_repaired, secret_repaired) < EVENT_DEADLINE < BACKSTOP / 10
    # The reconcile writes its status and counts itself after the repair: wait for those, do not race them.
    wanted = {(f"rolePolicy/{scene.role}", "PolicyDocument"), ("secret", "SecretString")}
    wait_for(lambda: wanted <= {(r["object"], r["field"]) for r in scene.rc()["status"].get("drift") or []},
             EVENT_DEADLINE, "both repairs recorded in status.drift")
    wait_for(lambda: event_reconciles(events_operator) >= 2, EVENT_DEADLINE, "two event reconciles counted")
    assert events_counted(events_operator, "matched") >= 2
    first_seen = metric_values(events_operator.metrics())
    assert counter(first_seen, "regaccess_drift_first_seen_total", trigger="event", object_type="rolePolicy") >= 1
    assert counter(first_seen, "regaccess_drift_first_seen_total", trigger="drift") == 0  # no silent-queue signal


def test_unmanaged_and_malformed_events_trigger_nothing(scene, events_operator, aws_e2e, queue_url,
                                                        aws_server_session):
    sqs = aws_e2e.client("sqs")
    other = f"other-{scene.ns}"
    world.make_role(aws_e2e.client, other)
    before = metric_values(events_operator.metrics())
    mark = aws_server_session.calls.mark()
    # Someone's own role, and a policy name on our role that is not ours: nobody manages either.
    cloudtrail.out_of_band(aws_e2e.client("iam"), "PutRolePolicy", sqs, queue_url, RoleName=other,
                           PolicyName="theirs", PolicyDocument=json.dumps(THEIRS))
    cloudtrail.out_of_band(aws_e2e.client("iam"), "PutRolePolicy", sqs, queue_url, RoleName=scene.role,
                           PolicyName="theirs", PolicyDocument=json.dumps(THEIRS))
    sqs.send_message(QueueUrl=queue_url, MessageBody="{not an event HANDSET-body")

    def handled() -> bool:
        now = metric_values(events_operator.metrics())
        return (counter(now, "regaccess_drift_events_total", outcome="dropped")
                - counter(before, "regaccess_drift_events_total", outcome="dropped") >= 2
                and counter(now, "regaccess_drift_events_total", outcome="malformed")
                - counter(before, "regaccess_drift_events_total", outcome="malformed") >= 1)

    wait_for(handled, EVENT_DEADLINE, "dropped and malformed events counted")
    time.sleep(1.0)  # a reconcile they wrongly triggered would have started by now
    after = metric_values(events_operator.metrics())
    assert counter(after, "regaccess_reconcile_total", trigger="event") == counter(
        before, "regaccess_reconcile_total", trigger="event")
    operator_writes = [c for c in aws_server_session.calls.writes(since=mark)
                       if c.service in ("iam", "secretsmanager") and c.operation != "PutRolePolicy"]
    assert operator_writes == []
    # Only the test's two PutRolePolicy calls: the operator wrote nothing.
    assert aws_server_session.calls.count("iam", "PutRolePolicy", since=mark) == 2
    assert "HANDSET-body" not in events_operator.log_text()
    assert sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_an_echo_of_our_own_write_is_one_reconcile_that_writes_nothing(scene, events_operator, aws_e2e, queue_url,
                                                                       aws_server_session):
    sqs = aws_e2e.client("sqs")
    before = event_reconciles(events_operator)
    mark = aws_server_session.calls.mark()
    operator = {**cloudtrail.PERSON, "type": "AssumedRole", "arn": f"arn:aws:sts::{world.ACCOUNT}:assumed-role/regaccess/pod"}
    cloudtrail.send(sqs, queue_url, cloudtrail.envelope(
        "iam", "PutRolePolicy", {"RoleName": scene.role, "PolicyName": scene.policy,
                                 "PolicyDocument": json.dumps(scene.document())}, identity=operator))
    wait_for(lambda: event_reconciles(events_operator) >= before + 1, EVENT_DEADLINE, "the echo's reconcile")
    time.sleep(1.0)
    assert event_reconciles(events_operator) == before + 1
    assert [c for c in aws_server_session.calls.writes(since=mark) if c.service in ("iam", "secretsmanager")] == []


def test_an_unreachable_queue_degrades_to_drift_checks_not_a_crash(control_plane, kube, moto_server, namespace,
                                                                   aws_e2e, tmp_path):
    """A queue that does not exist: the operator still starts, reconciles and checks drift; the
    failures are counted (a warning metric, no condition)."""
    missing = moto_server.rstrip("/") + f"/{world.ACCOUNT}/no-such-drift-queue"
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace], extra_env={
        "REGACCESS_DRIFT_EVENTS_QUEUE_URL": missing, "REGACCESS_DRIFT_BACKSTOP_INTERVAL": "3"})
    try:
        made = Scene(kube, namespace, aws_e2e)  # Ready: reconciles go on
        ours = made.document()
        world.edit_role_policy(aws_e2e.client, made.role, made.policy)  # no event: only the check can see it
        wait_for(lambda: made.document() == ours, 30, "repaired by the backstop drift check")
        # The backstop found it: the RegaccessDriftEventsSilent signal (with no message received),
        # counted after the repair and the status write: waited for, not raced.
        values = wait_for(lambda: (lambda v: v if counter(v, "regaccess_drift_first_seen_total", trigger="drift",
                                                          object_type="rolePolicy") >= 1 else None)(
            metric_values(op.metrics())), 10, "the drift the check found counted")
        assert counter(values, "regaccess_drift_event_queue_errors_total") >= 1 and op.alive()
        assert counter(values, "regaccess_drift_event_queue_up", queue="no-such-drift-queue") == 0
        assert counter(values, "regaccess_drift_events_received_total") == 0
        assert "drift event queue unreachable" in op.log_text()
        assert {c["type"] for c in made.rc()["status"]["conditions"]} <= {"Ready", "Synced", "Drifted",
                                                                         "Reconciling", "Stalled"}
        made.delete()
    finally:
        op.kill(signal.SIGTERM)


def test_a_policy_replaced_without_marks_is_restored_with_them_within_seconds(scene, events_operator, aws_e2e,
                                                                               queue_url):
    """The hand edit of issue 30 §1: the policy replaced with one whose statement has no Sid
    (the mark gone with it). Our record holds the policy, so it is drift, repaired through
    its event like any other, with the marks back."""
    sqs = aws_e2e.client("sqs")
    ours = scene.document()
    widened = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*",
                                                       "Resource": "*"}]}

    started = time.monotonic()
    cloudtrail.out_of_band(aws_e2e.client("iam"), "PutRolePolicy", sqs, queue_url, RoleName=scene.role,
                           PolicyName=scene.policy, PolicyDocument=json.dumps(widened))
    assert scene.document() == widened
    wait_for(lambda: scene.document() == ours, EVENT_DEADLINE, "stripped policy restored through its event")
    assert time.monotonic() - started < EVENT_DEADLINE
    wait_for(lambda: (f"rolePolicy/{scene.role}", "mark") in {
        (r["object"], r["field"]) for r in scene.rc()["status"].get("drift") or []}, EVENT_DEADLINE,
        "the removed mark recorded in status.drift")
