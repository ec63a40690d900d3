"""Drift events against the AWS test server: moto's real SQS, the CloudTrail stand-in, the poller.

- ``controller.aws.event_queue`` receives (long poll) and deletes on a moto queue;
- ``tests.harness.cloudtrail.out_of_band`` makes the call and delivers an envelope of the
  documented CloudTrail/EventBridge shape, which ``drift_events.parse`` and
  ``object_keys`` read back to the object the call changed;
- the ``Poller`` handles and deletes every message (good, malformed, unmanaged), checks a
  queue (GetQueueAttributes) before receiving from it, and counts an unreachable queue
  (check or receive) and reports it down instead of raising.
"""

from __future__ import annotations

import asyncio
import json

import boto3
import pytest

from controller import drift_events as de
from controller.aws import event_queue
from tests.harness import cloudtrail, world

pytestmark = pytest.mark.aws

# The CloudTrail record members the operator reads, and the envelope's (EventBridge) members.
ENVELOPE_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
DETAIL_KEYS = {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
               "requestParameters", "responseElements", "eventID", "eventType", "recipientAccountId"}


@pytest.fixture
def queue(aws):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="drift-events-aws")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def _all(sqs, url, rounds: int = 5) -> list[dict]:
    messages: list[dict] = []
    for _ in range(rounds):  # bounded: a few short polls until the queue is empty
        batch = event_queue.receive(sqs, url, wait_seconds=1)
        if not batch:
            break
        messages += batch
    return messages


def test_out_of_band_calls_arrive_as_cloudtrail_envelopes_naming_their_object(aws, queue):
    sqs, url = queue
    client = boto3.client
    world.make_role(client, "exec-aws")
    cloudtrail.out_of_band(client("iam"), "PutRolePolicy", sqs, url, RoleName="exec-aws", PolicyName="p",
                           PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                               {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    cloudtrail.out_of_band(client("ecs"), "RegisterTaskDefinition", sqs, url, family="web-aws",
                           containerDefinitions=[{"name": "app", "image": "nginx", "memory": 128}])
    cloudtrail.out_of_band(client("ecr"), "CreateRepository", sqs, url, repositoryName="base/aws")
    cloudtrail.out_of_band(client("ecr"), "SetRepositoryPolicy", sqs, url, repositoryName="base/aws",
                           policyText=json.dumps({"Version": "2012-10-17", "Statement": [
                               {"Sid": "x", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}]}))
    created = client("secretsmanager").create_secret(Name="regaccess/aws/x", SecretString="v0")
    cloudtrail.out_of_band(client("secretsmanager"), "PutSecretValue", sqs, url, SecretId=created["ARN"],
                           SecretString="HANDSET-aws-value")
    messages = _all(sqs, url)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert all(set(b) == ENVELOPE_KEYS and DETAIL_KEYS <= set(b["detail"]) for b in bodies)
    assert all(b["detail"]["eventSource"] == b["source"][4:] + ".amazonaws.com" for b in bodies)
    assert not any("HANDSET-aws-value" in m["Body"] for m in messages)
    keys = {name: de.object_keys(de.parse(m["Body"])) for name, m in
            ((json.loads(m["Body"])["detail"]["eventName"], m) for m in messages)}
    assert keys["PutRolePolicy"] == {("rolePolicy", "exec-aws", "p")}
    assert keys["RegisterTaskDefinition"] == {("taskDefinition", "web-aws")}  # from responseElements too
    assert keys["SetRepositoryPolicy"] == {("repository", "base/aws")}
    assert keys["CreateRepository"] == set()  # not an event this operator maps
    assert ("secret", "regaccess/aws/x") in keys["PutSecretValue"]  # the ARN's random suffix is cut


def test_the_poller_handles_and_deletes_every_message(aws, queue):
    sqs, url = queue
    cloudtrail.send(sqs, url, cloudtrail.envelope("iam", "DeleteRole", {"RoleName": "ours"}))
    cloudtrail.send(sqs, url, cloudtrail.envelope("iam", "DeleteRole", {"RoleName": "nobodys"}))
    sqs.send_message(QueueUrl=url, MessageBody="{broken")
    counts: list[str] = []
    seen: list[str] = []

    def handle(event: de.Event) -> int:
        seen.append(event.request["roleName"])
        return 1 if event.request["roleName"] == "ours" else 0

    poller = de.Poller([url], receive=lambda u: event_queue.receive(sqs, u, wait_seconds=1),
                       delete=lambda u, r: event_queue.delete(sqs, u, r), handle=handle,
                       blocking=de.in_daemon_thread, count=counts.append)

    async def drain() -> None:
        for _ in range(5):  # bounded
            if counts.count("received") >= 3:
                return
            await poller.poll_once(url)

    asyncio.run(drain())
    assert sorted(seen) == ["nobodys", "ours"]
    assert sorted(c for c in counts if c != "received") == ["dropped", "malformed", "matched"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessagesNotVisible"] == "0"
    assert _all(sqs, url, rounds=1) == []  # deleted, not merely hidden


def test_an_unreachable_queue_is_counted_and_the_poller_goes_on(aws):
    sqs = boto3.client("sqs")
    missing = sqs.meta.endpoint_url.rstrip("/") + f"/{world.ACCOUNT}/no-such-queue"
    errors: list[str] = []
    states: list[bool] = []
    poller = de.Poller([missing], receive=lambda u: event_queue.receive(sqs, u, wait_seconds=1),
                       delete=lambda u, r: None, handle=lambda e: 0, blocking=de.in_daemon_thread,
                       queue_error=errors.append, attributes=lambda u: event_queue.attributes(sqs, u),
                       queue_up=lambda u, up: states.append(up), error_pause=0)
    assert asyncio.run(poller.check(missing)) is False
    assert asyncio.run(poller.poll_once(missing)) is None
    assert errors == [missing, missing] and states == [False, False]


def test_a_reachable_queue_is_checked_with_its_attributes(aws, queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody="{waiting")
    found = event_queue.attributes(sqs, url)
    assert found["QueueArn"] == f"arn:aws:sqs:us-east-1:{world.ACCOUNT}:drift-events-aws"
    assert found["ApproximateNumberOfMessages"] == "1"
    states: list[bool] = []
    poller = de.Poller([url], receive=lambda u: [], delete=lambda u, r: None, handle=lambda e: 0,
                       blocking=de.in_daemon_thread, attributes=lambda u: event_queue.attributes(sqs, u),
                       queue_up=lambda u, up: states.append(up))
    assert asyncio.run(poller.check(url)) is True and states == [True]
    assert event_queue.queue_name(url) == "drift-events-aws"


def test_queue_region_from_url():
    assert event_queue.queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert event_queue.queue_region("http://127.0.0.1:5000/123456789012/q") is None
