"""controller.drift_events: parse, event -> object keys, resource -> object keys, the poller's handling.

Envelopes come from tests.harness.cloudtrail.envelope (the documented CloudTrail/EventBridge
shape), with boto3 member names in, as a test's out-of-band call would pass them.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from controller import drift_events as de
from tests.harness.cloudtrail import envelope

ACCOUNT = "123456789012"
SECRET = "regaccess/team-a/cred"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{SECRET}-AbCdEf"
TD_ARN = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/web:7"
JD_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/nightly:3"
REPO_ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/base/python"


def event(service: str, operation: str, request: dict, response: dict | None = None, **kw) -> de.Event:
    return de.parse(json.dumps(envelope(service, operation, request, response, **kw)))


# (id, service, eventName, boto3 request, response, expected keys)
EVENTS = [
    ("PutSecretValue-name", "secretsmanager", "PutSecretValue", {"SecretId": SECRET, "SecretString": "x"}, None,
     {("secret", SECRET)}),
    ("PutSecretValue-arn", "secretsmanager", "PutSecretValue", {"SecretId": SECRET_ARN}, None,
     {("secret", SECRET_ARN), ("secret", f"{SECRET}-AbCdEf"), ("secret", SECRET)}),
    ("UpdateSecret", "secretsmanager", "UpdateSecret", {"SecretId": SECRET, "Description": "hand"}, None,
     {("secret", SECRET)}),
    ("DeleteSecret", "secretsmanager", "DeleteSecret", {"SecretId": SECRET}, None, {("secret", SECRET)}),
    ("RestoreSecret", "secretsmanager", "RestoreSecret", {"SecretId": SECRET}, None, {("secret", SECRET)}),
    ("TagResource-secret", "secretsmanager", "TagResource", {"SecretId": SECRET, "Tags": []}, None,
     {("secret", SECRET)}),
    ("UntagResource-secret", "secretsmanager", "UntagResource", {"SecretId": SECRET_ARN, "TagKeys": ["a"]}, None,
     {("secret", SECRET_ARN), ("secret", f"{SECRET}-AbCdEf"), ("secret", SECRET)}),
    ("PutRolePolicy", "iam", "PutRolePolicy", {"RoleName": "exec", "PolicyName": "p", "PolicyDocument": "{}"}, None,
     {("rolePolicy", "exec", "p")}),
    ("DeleteRolePolicy", "iam", "DeleteRolePolicy", {"RoleName": "exec", "PolicyName": "p"}, None,
     {("rolePolicy", "exec", "p")}),
    ("DeleteRole", "iam", "DeleteRole", {"RoleName": "exec"}, None, {("role", "exec")}),
    ("RegisterTaskDefinition", "ecs", "RegisterTaskDefinition", {"family": "web", "containerDefinitions": []},
     {"taskDefinition": {"family": "web", "revision": 8}}, {("taskDefinition", "web")}),
    ("DeregisterTaskDefinition-arn", "ecs", "DeregisterTaskDefinition", {"taskDefinition": TD_ARN}, None,
     {("taskDefinition", "web")}),
    ("DeregisterTaskDefinition-family-rev", "ecs", "DeregisterTaskDefinition", {"taskDefinition": "web:7"}, None,
     {("taskDefinition", "web")}),
    ("TagResource-ecs", "ecs", "TagResource", {"resourceArn": TD_ARN, "tags": []}, None, {("taskDefinition", "web")}),
    ("UntagResource-ecs", "ecs", "UntagResource", {"resourceArn": TD_ARN, "tagKeys": []}, None,
     {("taskDefinition", "web")}),
    ("RegisterJobDefinition", "batch", "RegisterJobDefinition", {"jobDefinitionName": "nightly", "type": "container"},
     {"jobDefinitionName": "nightly", "revision": 4}, {("jobDefinition", "nightly")}),
    ("DeregisterJobDefinition-arn", "batch", "DeregisterJobDefinition", {"jobDefinition": JD_ARN}, None,
     {("jobDefinition", "nightly")}),
    ("DeregisterJobDefinition-name-rev", "batch", "DeregisterJobDefinition", {"jobDefinition": "nightly:3"}, None,
     {("jobDefinition", "nightly")}),
    ("TagResource-batch", "batch", "TagResource", {"resourceArn": JD_ARN, "tags": {}}, None,
     {("jobDefinition", "nightly")}),
    ("SetRepositoryPolicy", "ecr", "SetRepositoryPolicy", {"repositoryName": "base/python", "policyText": "{}"}, None,
     {("repository", "base/python")}),
    ("DeleteRepositoryPolicy", "ecr", "DeleteRepositoryPolicy", {"repositoryName": "base/python"}, None,
     {("repository", "base/python")}),
    ("DeleteRepository", "ecr", "DeleteRepository", {"repositoryName": "base/python"}, None,
     {("repository", "base/python")}),
    ("TagResource-ecr", "ecr", "TagResource", {"resourceArn": REPO_ARN, "tags": []}, None,
     {("repository", "base/python")}),
    ("UntagResource-ecr", "ecr", "UntagResource", {"resourceArn": REPO_ARN, "tagKeys": []}, None,
     {("repository", "base/python")}),
    ("CreatePullThroughCacheRule", "ecr", "CreatePullThroughCacheRule",
     {"ecrRepositoryPrefix": "dh", "upstreamRegistryUrl": "registry-1.docker.io"}, None, {("pullThroughCache", "dh")}),
    ("UpdatePullThroughCacheRule", "ecr", "UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "dh"}, None,
     {("pullThroughCache", "dh")}),
    ("DeletePullThroughCacheRule", "ecr", "DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "dh"}, None,
     {("pullThroughCache", "dh")}),
    # Nothing this operator manages, or nothing changed.
    ("unrelated-event-name", "iam", "AttachRolePolicy", {"RoleName": "exec", "PolicyArn": "arn:x"}, None, set()),
    ("iam-no-role", "iam", "PutRolePolicy", {"PolicyName": "p"}, None, set()),
    ("ecs-arn-of-a-service", "ecs", "TagResource",
     {"resourceArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/c/s", "tags": []}, None, set()),
]


@pytest.mark.parametrize("service,name,request_,response,expected", [e[1:] for e in EVENTS], ids=[e[0] for e in EVENTS])
def test_event_names_the_objects_it_changed(service, name, request_, response, expected):
    assert de.object_keys(event(service, name, request_, response)) == expected


def test_every_event_name_of_the_issue_is_in_the_table():
    issue = {"PutSecretValue", "UpdateSecret", "DeleteSecret", "RestoreSecret", "TagResource", "UntagResource",
             "PutRolePolicy", "DeleteRolePolicy", "DeleteRole", "RegisterTaskDefinition", "DeregisterTaskDefinition",
             "RegisterJobDefinition", "DeregisterJobDefinition", "SetRepositoryPolicy", "DeleteRepositoryPolicy",
             "DeleteRepository", "CreatePullThroughCacheRule", "UpdatePullThroughCacheRule",
             "DeletePullThroughCacheRule"}
    assert issue == de.EVENT_NAMES
    assert issue <= {e[2] for e in EVENTS if e[5]}


def test_a_refused_call_changed_nothing():
    refused = event("iam", "PutRolePolicy", {"RoleName": "exec", "PolicyName": "p"}, error_code="AccessDenied")
    assert refused.failed and de.object_keys(refused) == set()


def test_the_envelope_parts_are_read():
    parsed = event("iam", "PutRolePolicy", {"RoleName": "exec", "PolicyName": "p"})
    assert (parsed.source, parsed.name, parsed.request["roleName"]) == ("aws.iam", "PutRolePolicy", "exec")
    assert parsed.actor.endswith(":user/alice") and parsed.time is not None


def test_the_stand_in_leaves_secret_values_out_like_cloudtrail():
    parsed = event("secretsmanager", "PutSecretValue", {"SecretId": SECRET, "SecretString": "HANDSET-secret"})
    assert "HANDSET-secret" not in json.dumps(parsed.request)


GOOD = envelope("iam", "DeleteRole", {"RoleName": "exec"})
MALFORMED = [
    ("not-json", "{nope"),
    ("not-an-object", "[1, 2]"),
    ("empty", ""),
    ("other-detail-type", json.dumps({**GOOD, "detail-type": "EC2 Instance State-change Notification"})),
    ("no-detail", json.dumps({k: v for k, v in GOOD.items() if k != "detail"})),
    ("detail-not-object", json.dumps({**GOOD, "detail": "x"})),
    ("no-event-name", json.dumps({**GOOD, "detail": {**GOOD["detail"], "eventName": None}})),
    ("request-not-object", json.dumps({**GOOD, "detail": {**GOOD["detail"], "requestParameters": "roleName=x"}})),
    ("sns-wrapped", json.dumps({"Type": "Notification", "Message": json.dumps(GOOD)})),
]


@pytest.mark.parametrize("body", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_messages_raise_a_reason_without_the_body(body):
    with pytest.raises(de.Malformed) as caught:
        de.parse(body)
    assert body[:20] not in str(caught.value) or not body


# --------------------------------------------------------------------------- resources -> keys

RC_SPEC = {
    "source": {"secretRef": {"name": "robot"}},
    "grants": {"executionRoles": ["exec-a", f"arn:aws:iam::{ACCOUNT}:role/path/exec-b"]},
    "consumers": {"ecsTaskDefinitions": [{"family": "web"}], "batchJobDefinitions": [{"name": "nightly"}]},
    "pullThroughCache": {"ecrRepositoryPrefix": "dh"},
}
RESOURCES = [
    ("rc-defaults", "RegistryCredential", RC_SPEC, {},
     {("secret", "regaccess/team-a/cred"), ("role", "exec-a"), ("role", "exec-b"),
      ("rolePolicy", "exec-a", "regaccess-team-a-cred"), ("rolePolicy", "exec-b", "regaccess-team-a-cred"),
      ("taskDefinition", "web"), ("jobDefinition", "nightly"), ("pullThroughCache", "dh")}),
    ("rc-named-and-status", "RegistryCredential",
     {"secret": {"name": "custom"}, "grants": {"executionRoles": ["exec-a"], "policyName": "mine"}},
     {"secretArn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:custom-AbCdEf",
      "managed": [{"kind": "rolePolicy", "name": "exec-old"}, {"kind": "taskDefinition", "name": "old-web"},
                  {"kind": "pullThroughCacheRule", "name": "old-dh"}, {"kind": "secret", "name": "custom"}]},
     {("secret", "custom"), ("secret", f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:custom-AbCdEf"),
      ("secret", "custom-AbCdEf"), ("role", "exec-a"), ("rolePolicy", "exec-a", "mine"), ("role", "exec-old"),
      ("rolePolicy", "exec-old", "mine"), ("taskDefinition", "old-web"), ("pullThroughCache", "old-dh")}),
    ("xrepo", "CrossAccountRepoAccess", {"repositories": ["base/python"]},
     {"repositories": [{"name": "base/old"}]}, {("repository", "base/python"), ("repository", "base/old")}),
]


@pytest.mark.parametrize("kind,spec,status,expected", [r[1:] for r in RESOURCES], ids=[r[0] for r in RESOURCES])
def test_resource_keys(kind, spec, status, expected):
    assert de.resource_keys(kind, "team-a", "cred", spec, status) == expected


def test_an_event_finds_the_resources_through_the_index():
    index: dict = {}
    for uid, spec in (("u1", RC_SPEC), ("u2", {"grants": {"executionRoles": ["exec-a"], "policyName": "other"}})):
        for key, value in de.index_entries("RegistryCredential", "team-a", "cred", uid, spec, {}).items():
            index.setdefault(key, set()).add(value)
    ours = event("iam", "PutRolePolicy", {"RoleName": "exec-a", "PolicyName": "regaccess-team-a-cred"})
    assert de.matching(de.object_keys(ours), index.get) == {"u1"}
    deleted = event("iam", "DeleteRole", {"RoleName": "exec-a"})
    assert de.matching(de.object_keys(deleted), index.get) == {"u1", "u2"}
    foreign = event("iam", "PutRolePolicy", {"RoleName": "exec-a", "PolicyName": "someone-elses"})
    assert de.matching(de.object_keys(foreign), index.get) == set()


# --------------------------------------------------------------------------- the poller


async def _direct(fn, *args):
    return fn(*args)


def _poller(messages, handle, *, fail_receive=False, fail_check=False, states=None):
    deleted, counts, errors = [], [], []

    def receive(url):
        if fail_receive:
            raise ConnectionError("no route")
        return messages

    def attributes(url):
        if fail_check:
            raise ConnectionError("no route")
        return {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q", "ApproximateNumberOfMessages": "0"}

    poller = de.Poller(["q"], receive=receive, delete=lambda url, receipt: deleted.append(receipt),
                       handle=handle, blocking=_direct, count=counts.append, queue_error=errors.append,
                       attributes=attributes, queue_up=lambda url, up: (states if states is not None else []).append(up),
                       error_pause=0)
    return poller, deleted, counts, errors


def test_every_message_is_counted_and_deleted_whatever_it_was():
    messages = [
        {"MessageId": "1", "ReceiptHandle": "r1", "Body": json.dumps(GOOD)},
        {"MessageId": "2", "ReceiptHandle": "r2", "Body": "{not json, HANDSET-body"},
        {"MessageId": "3", "ReceiptHandle": "r3",
         "Body": json.dumps(envelope("iam", "DeleteRole", {"RoleName": "nobodys"}))},
    ]
    poller, deleted, counts, _ = _poller(messages, lambda e: 1 if e.request.get("roleName") == "exec" else 0)
    assert asyncio.run(poller.poll_once("q")) == 3
    assert deleted == ["r1", "r2", "r3"]
    assert counts == ["received", "matched", "received", "malformed", "received", "dropped"]


def test_a_handler_that_raises_does_not_stop_the_poller_and_the_message_is_deleted():
    def boom(event):
        raise RuntimeError("bug")

    poller, deleted, counts, _ = _poller([{"ReceiptHandle": "r1", "Body": json.dumps(GOOD)}], boom)
    asyncio.run(poller.poll_once("q"))
    assert deleted == ["r1"] and counts[-1] == "malformed"


def test_an_unreachable_queue_is_counted_not_raised():
    states = []
    poller, deleted, counts, errors = _poller([], lambda e: 0, fail_receive=True, states=states)
    assert asyncio.run(poller.poll_once("q")) is None
    assert errors == ["q"] and deleted == [] and counts == [] and states == [False]


def test_the_queue_is_checked_before_the_first_receive():
    states = []
    poller, _, _, errors = _poller([], lambda e: 0, states=states)
    assert asyncio.run(poller.check("q")) is True and states == [True] and errors == []
    states.clear()
    poller, _, _, errors = _poller([], lambda e: 0, fail_check=True, states=states)
    assert asyncio.run(poller.check("q")) is False and states == [False] and errors == ["q"]


def test_a_queue_that_stays_unreachable_is_checked_again_with_a_growing_pause():
    # Bounded: the loop is cancelled after a few rounds; no receive is tried while the check fails.
    received = []
    poller, _, _, errors = _poller([], lambda e: 0, fail_check=True)
    poller._receive = received.append

    async def rounds():
        task = asyncio.ensure_future(poller.run_queue("q"))
        for _ in range(20):
            if len(errors) >= 3:
                break
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(rounds())
    assert len(errors) >= 3 and received == []
    assert [de.error_pause(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_in_daemon_thread_returns_and_raises():
    async def main():
        assert await de.in_daemon_thread(lambda a: a + 1, 1) == 2
        with pytest.raises(ValueError):
            await de.in_daemon_thread(int, "x")

    asyncio.run(main())
