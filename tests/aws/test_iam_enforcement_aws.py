"""The shipped IAM policy under moto's own IAM enforcement: allowed, and refused without it.

An IAM user carries exactly ``regaccess iam-policy`` rendered for moto's account
(123456789012, partition aws, cluster ``c1``) as its only policy; its access key signs the
operator's own boto3 calls against the harness server, with moto's enforcement on
(``moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0``: moto's documented switch, here flipped
in-process after the setup, as moto's ``set_initial_no_auth_action_count`` does; the server
runs in this process). Per statement: one call the statement allows succeeds, and the same
call with that one statement removed from the policy is refused with AccessDenied, so
removing any statement moto can evaluate makes a named test fail.

What moto 5.2 evaluates, and therefore what this proves (moto/iam/access_control.py):

- Action: always, with wildcards.
- Resource: only for IAM calls naming an existing role (the role's ARN), for
  sts:AssumeRole (the RoleArn) and for SQS calls naming an existing queue (the queue's
  ARN: the drift-event statement, allowed on ``regaccess-drift-events*`` and refused on
  another queue). Every other service is authorised against the resource
  ``*``, which a scoped Resource never matches: the Secrets Manager, KMS, ECR repository,
  ecs:TagResource and Batch statements (all scoped to ARNs) cannot be granted under moto at
  all, so they are not exercised here; their shape (owner-tag, request-tag, grantable-tag
  and KMS conditions, ARNs) is checked mechanically by tests/chart/test_iam_policy.py.
- Batch (a REST service): moto names the action from the URL in lower case
  (``batch:describejobdefinitions``), which no correctly spelled policy matches, so no
  Batch call can be granted under moto; not exercised here.
- ECR pull-through cache rules are served by the harness stand-in
  (tests/harness/ptc_standin.py), not moto: no enforcement there.
- Condition: not evaluated for identity policies (moto passes no request context; only
  StringEquals on sts:ExternalId exists). A conditioned statement acts as if its condition
  held: ``aws:ResourceTag``, ``aws:RequestTag``, ``iam:PassedToService``, ``kms:ViaService``
  are unproven by moto, and the refused cases below are refused by Action or Resource only.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from controller import iampolicy
from controller.aws import event_queue, iam_policies
from tests.conftest import ACCOUNT, REGION

CLUSTER = "c1"
USER = "regaccess-operator"
POLICY_NAME = "regaccess"
GRANTABLE_ROLE = "exec-grantable"
ASSUMABLE_ROLE = "tenant-a"
EVENT_QUEUE, OTHER_QUEUE = "regaccess-drift-events-us-east-1", "someone-elses-events"
# moto checks the trust policy's principal literally: name the operator's user.
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{USER}"}, "Action": "sts:AssumeRole"}]})

POLICY = iampolicy.document(iampolicy.Options(partition="aws", account=ACCOUNT, cluster_id=CLUSTER))
SIDS = [s["Sid"] for s in POLICY["Statement"]]


def _admin(service, endpoint):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def world(aws):
    """The user with the shipped policy, two roles; yields a function giving the user's clients."""
    iam = _admin("iam", aws)
    iam.create_user(UserName=USER)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    iam.create_role(RoleName=GRANTABLE_ROLE, AssumeRolePolicyDocument=TRUST,
                    Tags=[{"Key": iampolicy.GRANTABLE_TAG, "Value": "true"}])
    iam.create_role(RoleName=ASSUMABLE_ROLE, Path="/regaccess/", AssumeRolePolicyDocument=TRUST)
    iam.create_role(RoleName="elsewhere", Path="/other/", AssumeRolePolicyDocument=TRUST)
    sqs = _admin("sqs", aws)
    queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in (EVENT_QUEUE, OTHER_QUEUE)}
    QUEUE_URLS.update(queues)

    def as_operator(service):
        return boto3.client(service, region_name=REGION, endpoint_url=aws,
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])

    def attach(document):
        iam.put_user_policy(UserName=USER, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))

    attach(POLICY)
    yield as_operator, attach


@pytest.fixture
def enforced(world, monkeypatch):
    """moto's IAM enforcement on from now until the end of the test (setup is done unsigned)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    as_operator, attach = world

    def set_policy(document):
        # Changing the user's policy is an admin's act: made with enforcement off for that call.
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
        attach(document)
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)

    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    yield as_operator, set_policy


QUEUE_URLS: dict[str, str] = {}  # queue name -> URL, filled by the world fixture


def _without(sid):
    return {**POLICY, "Statement": [s for s in POLICY["Statement"] if s["Sid"] != sid]}


def _register_task_definition(c):
    return c("ecs").register_task_definition(
        family="app", containerDefinitions=[{"name": "app", "image": "nginx", "memory": 128}],
        tags=[{"key": "regaccess.io/owner", "value": f"{CLUSTER}/team-a/hub"}])


# Statement -> (the operator's call it allows, the same kind of call outside it, or None).
# Every call here is one the operator makes (controller/aws), with its own parameters.
SCENARIOS = {
    "IamReadRolesOfTheAccount": (
        lambda c: iam_policies.other_policy_sizes(c("iam"), GRANTABLE_ROLE, "regaccess-team-a-hub"),
        None),
    "IamInlinePolicyOnlyOnGrantableRoles": (
        lambda c: c("iam").put_role_policy(
            RoleName=GRANTABLE_ROLE, PolicyName="regaccess-team-a-hub",
            PolicyDocument=json.dumps(iam_policies.desired(
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:regaccess/team-a/hub-AbCdEf", None,
                f"{CLUSTER}/team-a/hub"))),
        None),
    "StsAssumeRolesUnderOurPath": (
        lambda c: c("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/regaccess/{ASSUMABLE_ROLE}",
                                       RoleSessionName="regaccess"),
        lambda c: c("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/other/elsewhere",
                                       RoleSessionName="regaccess")),
    "EcsDescribeTaskDefinitionsNoResourceLevelPermissions": (
        lambda c: (_register_task_definition(c), c("ecs").describe_task_definition(taskDefinition="app")),
        None),
    "EcsRegisterOnlyWithOurOwnerTag": (_register_task_definition, None),
    # The poller's calls on each queue: GetQueueAttributes first, then a receive (delete shares the statement).
    "SqsDriftEventQueues": (
        lambda c: (event_queue.attributes(c("sqs"), QUEUE_URLS[EVENT_QUEUE]),
                   event_queue.receive(c("sqs"), QUEUE_URLS[EVENT_QUEUE], wait_seconds=0)),
        lambda c: event_queue.attributes(c("sqs"), QUEUE_URLS[OTHER_QUEUE])),
}


def _refused(call, as_operator):
    with pytest.raises(ClientError) as caught:
        call(as_operator)
    error = caught.value.response["Error"]
    # JSON-protocol services get moto's refusal as an XML body botocore cannot parse: the code
    # is then the HTTP status and the refusal is in the message.
    assert error["Code"] in ("AccessDenied", "AccessDeniedException") or (
        error["Code"] == "403" and "<Code>AccessDenied</Code>" in error.get("Message", "")), error


def test_every_scenario_names_a_shipped_statement():
    assert set(SCENARIOS) <= set(SIDS)


@pytest.mark.parametrize("sid", sorted(SCENARIOS))
def test_allowed_under_the_shipped_policy(enforced, sid):
    as_operator, _ = enforced
    allowed, _outside = SCENARIOS[sid]
    # (The ECS describe scenario registers first: EcsRegisterOnlyWithOurOwnerTag, also shipped.)
    allowed(as_operator)  # raises on AccessDenied


@pytest.mark.parametrize("sid", sorted(SCENARIOS))
def test_refused_when_the_statement_is_removed(enforced, sid):
    as_operator, set_policy = enforced
    allowed, _outside = SCENARIOS[sid]
    set_policy(_without(sid))
    _refused(allowed, as_operator)


@pytest.mark.parametrize("sid", sorted(s for s, (_, outside) in SCENARIOS.items() if outside))
def test_refused_outside_the_statement(enforced, sid):
    as_operator, _ = enforced
    _refused(SCENARIOS[sid][1], as_operator)


def test_an_action_the_policy_never_grants_is_refused(enforced):
    as_operator, _ = enforced
    _refused(lambda c: c("iam").create_user(UserName="intruder"), as_operator)
    _refused(lambda c: c("secretsmanager").list_secrets(), as_operator)
