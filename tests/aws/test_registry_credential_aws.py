"""The RegistryCredential reconcile (secret step first) over the wire against the AWS test server.

Given a source Secret body (as the handlers' index holds it), when reconcile()
runs, then Secrets Manager ends up as declared, a no-op resync makes one read
and zero writes, values are read only when something changed, and drift is
repaired or only reported as driftPolicy says.
"""

from __future__ import annotations

import base64
import json

import pytest

from controller.api import reasons
from controller.aws.clients import Clients
from controller.reconcile import registry_credential as rc
from controller.reconcile.conditions import get_condition
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS, NAME, CLUSTER = "team", "hub", "c1"
SECRET_NAME = f"regaccess/{NS}/{NAME}"
PASSWORD = "pw-0123456789"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def source(password: str = PASSWORD, rv: str = "1") -> dict:
    return {"type": "kubernetes.io/basic-auth", "metadata": {"name": "src", "namespace": NS, "resourceVersion": rv},
            "data": {"username": b64("robot"), "password": b64(password)}}


class Driver:
    """Runs reconcile() the way the handlers do, carrying status between runs."""

    def __init__(self, factory, spec: dict) -> None:
        self.factory = factory
        self.spec = spec
        self.status: dict = {}
        self.generation = 1
        self.secret = source()

    def clients_for(self, region, role_arn, external_id):
        return Clients(self.factory, region=region, role_arn=role_arn, external_id=external_id)

    def run(self, drift_check: bool = False):
        request = rc.Request(NS, NAME, self.generation, self.spec, self.status, self.secret, CLUSTER, drift_check)
        result = rc.reconcile(request, self.clients_for, tenancy_policy=OPEN)
        self.status = result.status
        return result

    def delete(self):
        return rc.delete(rc.Request(NS, NAME, self.generation, self.spec, self.status, None, CLUSTER), self.clients_for, tenancy_policy=OPEN)


def value(session, name=SECRET_NAME) -> dict:
    return json.loads(session.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def version_ids(session, name=SECRET_NAME) -> list[tuple[str, list[str]]]:
    """The secret's versions and their stages (not their dates: moto moves those when a
    version is read, so comparing them failed whenever a second boundary fell in between)."""
    versions = session.client("secretsmanager").list_secret_version_ids(SecretId=name)["Versions"]
    return sorted((v["VersionId"], sorted(v["VersionStages"])) for v in versions)


@pytest.fixture
def boto(aws):
    import boto3

    return boto3.session.Session(region_name="us-east-1")


BASE = {"source": {"secretRef": {"name": "src"}}}


def test_create_then_noop_resync_is_one_read_and_no_write(factory, aws_server, boto):
    d = Driver(factory, {**BASE, "secret": {"description": "robot", "tags": {"team": "a"}}})
    result = d.run()
    assert result.ready and result.outcome == "success"
    assert value(boto) == {"username": "robot", "password": PASSWORD}
    assert d.status["secretArn"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert get_condition(d.status["conditions"], "Ready")["status"] == "True"
    assert [e.reason for e in result.events] == ["SecretCreated"]

    mark = aws_server.calls.mark()
    result = d.run(drift_check=True)
    assert result.events == []
    assert aws_server.calls.writes(since=mark) == []
    assert aws_server.calls.counts(since=mark) == {"secretsmanager:DescribeSecret": 1}
    assert "lastDriftCheckTime" in d.status


def test_rotation_writes_once_and_same_value_writes_nothing(factory, aws_server, boto):
    d = Driver(factory, BASE)
    d.run()
    d.secret = source("rotated-123456", rv="2")
    mark = aws_server.calls.mark()
    d.run()
    assert value(boto)["password"] == "rotated-123456"
    assert aws_server.calls.count("secretsmanager", "PutSecretValue", since=mark) == 1
    versions = version_ids(boto)

    # The Secret changed (new resourceVersion) but its value did not: read, compare, no write.
    d.secret = source("rotated-123456", rv="3")
    mark = aws_server.calls.mark()
    d.run()
    assert aws_server.calls.count("secretsmanager", "GetSecretValue", since=mark) == 1
    assert aws_server.calls.writes(since=mark) == []
    assert version_ids(boto) == versions
    assert d.status["sourceResourceVersion"] == "3"


@pytest.mark.parametrize("policy, repaired", [("Remediate", True), ("Report", False)])
def test_value_put_by_hand_is_drift(factory, aws_server, boto, policy, repaired):
    d = Driver(factory, {**BASE, "driftPolicy": policy})
    d.run()
    boto.client("secretsmanager").put_secret_value(SecretId=SECRET_NAME, SecretString='{"username":"x","password":"hand"}')
    result = d.run(drift_check=True)
    assert ("secret", "SecretString") in {(r["object"], r["field"]) for r in d.status["drift"]}
    assert result.drift_found == {"secret": 1}
    drifted = get_condition(d.status["conditions"], "Drifted")
    if repaired:
        assert value(boto)["password"] == PASSWORD
        assert drifted["status"] == "False" and drifted["reason"] == reasons.DRIFT_REMEDIATED
        assert result.drift_remediated == {"secret": 1}
    else:
        assert value(boto)["password"] == "hand"
        assert drifted["status"] == "True" and drifted["reason"] == reasons.DRIFT_REPORTED
    assert any(e.reason == "DriftDetected" for e in result.events)
    assert all("hand" not in e.message and PASSWORD not in e.message for e in result.events)


def test_metadata_drift_and_spec_change(factory, aws_server, boto):
    d = Driver(factory, {**BASE, "secret": {"description": "one"}})
    d.run()
    sm = boto.client("secretsmanager")
    sm.update_secret(SecretId=SECRET_NAME, Description="changed by hand")
    d.run(drift_check=True)
    assert sm.describe_secret(SecretId=SECRET_NAME)["Description"] == "one"
    assert d.status["drift"][-1]["field"] == "Description"

    # A spec change is applied, and is not drift.
    d.spec = {**BASE, "secret": {"description": "two"}}
    d.generation = 2
    drift_before = list(d.status["drift"])
    mark = aws_server.calls.mark()
    d.run()
    assert sm.describe_secret(SecretId=SECRET_NAME)["Description"] == "two"
    assert [c.operation for c in aws_server.calls.writes(since=mark)] == ["UpdateSecret"]
    assert d.status["drift"] == drift_before
    assert d.status["observedGeneration"] == 2


def test_foreign_secret_is_a_conflict_until_adopted(factory, aws_server, boto):
    sm = boto.client("secretsmanager")
    sm.create_secret(Name=SECRET_NAME, SecretString='{"username":"other","password":"other-pw"}')
    d = Driver(factory, BASE)
    mark = aws_server.calls.mark()
    result = d.run()
    assert get_condition(d.status["conditions"], "Ready")["reason"] == reasons.OWNERSHIP_CONFLICT
    assert result.retry_after is None and result.outcome == "conflict"
    assert aws_server.calls.writes(since=mark) == []
    # A secret we are not taking over: its value is not read either.
    assert aws_server.calls.count("secretsmanager", "GetSecretValue", since=mark) == 0
    d.spec = {**BASE, "adoptExisting": True}
    d.generation = 2
    assert d.run().ready
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=SECRET_NAME)["Tags"]}
    assert tags["regaccess.io/owner"] == f"{CLUSTER}/{NS}/{NAME}"
    assert value(boto)["username"] == "robot"


def test_delete_policies(factory, aws_server, boto):
    sm = boto.client("secretsmanager")
    d = Driver(factory, {**BASE, "secret": {"recoveryWindowInDays": 7}})
    d.run()
    assert d.delete().ready
    assert "DeletedDate" in sm.describe_secret(SecretId=SECRET_NAME)
    # Re-created resource: the secret pending deletion is restored, not a failure.
    d2 = Driver(factory, BASE)
    result = d2.run()
    assert result.ready and "SecretRestored" in [e.reason for e in result.events]
    assert "DeletedDate" not in sm.describe_secret(SecretId=SECRET_NAME)

    d2.spec = {**BASE, "deletionPolicy": "Retain"}
    assert d2.delete().ready
    assert "DeletedDate" not in sm.describe_secret(SecretId=SECRET_NAME)

    d2.spec = {**BASE, "secret": {"forceDeleteWithoutRecovery": True}}
    assert d2.delete().ready
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=SECRET_NAME)


def test_customer_managed_kms_key(factory, aws_server, boto):
    kms = boto.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/registry", TargetKeyId=key["KeyId"])
    d = Driver(factory, {**BASE, "secret": {"kmsKeyId": "alias/registry"}})
    assert d.run().ready
    assert d.status["kmsKeyArn"] == key["Arn"]
    mark = aws_server.calls.mark()
    d.run(drift_check=True)
    # The alias was resolved once and is carried in status: no KMS call on a resync.
    assert aws_server.calls.count("kms", since=mark) == 0
    assert aws_server.calls.writes(since=mark) == []


def test_throttling_is_retryable_with_a_stable_message(aws_server):
    import boto3

    from controller.aws.clients import ClientFactory

    # One attempt per call: botocore's own backoff is not what this test is about.
    d = Driver(ClientFactory(max_attempts=1, session=boto3.session.Session(region_name="us-east-1")), BASE)
    aws_server.faults.configure(fail_first=[{"service": "secretsmanager", "operation": "DescribeSecret", "count": 20,
                                             "code": "ThrottlingException", "message": "Rate exceeded", "status": 400}])
    first = d.run()
    second = d.run()
    assert first.retry_after is not None and first.outcome == "retry"
    ready = get_condition(d.status["conditions"], "Ready")
    assert ready["reason"] == reasons.AWS_THROTTLED
    assert first.retry_reason == second.retry_reason


def test_invalid_source_makes_no_aws_call(factory, aws_server):
    d = Driver(factory, BASE)
    d.secret = {"type": "Opaque", "metadata": {"name": "src", "resourceVersion": "1"}, "data": {"user": b64("x")}}
    mark = aws_server.calls.mark()
    result = d.run()
    assert result.outcome == "invalid" and result.retry_after is None
    assert get_condition(d.status["conditions"], "Ready")["reason"] == reasons.SOURCE_KEY_MISSING
    assert aws_server.calls.count(since=mark) == 0
    # The same problem again posts no second Event.
    assert d.run().events == []


def test_pull_through_cache_prefix_taken_stops_before_any_write(factory, aws_server, boto):
    """Issue 4: a prefix already taken by someone else's rule is a conflict with no AWS write at all."""
    sm, ecr = boto.client("secretsmanager"), boto.client("ecr")
    theirs = sm.create_secret(Name="ecr-pullthroughcache/theirs", SecretString='{"username":"u","accessToken":"t-123456"}')
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub", upstreamRegistryUrl="registry-1.docker.io",
                                       upstreamRegistry="docker-hub", credentialArn=theirs["ARN"])
    d = Driver(factory, {**BASE, "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "docker-hub"}})
    mark = aws_server.calls.mark()
    result = d.run()
    assert get_condition(d.status["conditions"], "Ready")["reason"] == reasons.OWNERSHIP_CONFLICT
    assert aws_server.calls.writes(since=mark) == []
    assert any(e.reason == reasons.OWNERSHIP_CONFLICT and e.type == "Warning" for e in result.events)

    # Adopting takes it over: our secret is written and the rule now uses it.
    d.spec = {**d.spec, "adoptExisting": True}
    d.generation = 2
    assert d.run().ready
    rule = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["docker-hub"])["pullThroughCacheRules"][0]
    assert rule["credentialArn"] == d.status["secretArn"]
    # Once it is ours, a resync makes no pre-check read: one DescribePullThroughCacheRules.
    mark = aws_server.calls.mark()
    d.run(drift_check=True)
    assert aws_server.calls.count("ecr", "DescribePullThroughCacheRules", since=mark) == 1


def test_another_owners_secret_is_never_adopted_written_or_deleted(factory, aws_server, boto):
    """Issue 17: team-a names team-b's secret with adoptExisting; team-b's secret stays team-b's."""
    sm = boto.client("secretsmanager")
    theirs = f"{CLUSTER}/team-b/hub"
    sm.create_secret(Name=SECRET_NAME, SecretString='{"username":"b","password":"team-b-pw"}',
                     Tags=[{"Key": "regaccess.io/owner", "Value": theirs}])
    before = sm.describe_secret(SecretId=SECRET_NAME)
    d = Driver(factory, {**BASE, "adoptExisting": True})
    mark = aws_server.calls.mark()
    result = d.run()
    ready = get_condition(d.status["conditions"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reasons.OWNERSHIP_CONFLICT)
    assert SECRET_NAME in ready["message"] and theirs in ready["message"]
    assert result.outcome == "conflict" and result.retry_after is None
    assert [(e.type, e.reason) for e in result.events] == [("Warning", reasons.OWNERSHIP_CONFLICT)]
    assert aws_server.calls.writes(since=mark) == []
    # Not even read: another owner's value is none of our business.
    assert aws_server.calls.count("secretsmanager", "GetSecretValue", since=mark) == 0
    assert "secretArn" not in d.status

    assert d.delete().ready
    assert aws_server.calls.writes(since=mark) == []
    after = sm.describe_secret(SecretId=SECRET_NAME)
    assert "DeletedDate" not in after and after["Tags"] == before["Tags"]
    assert after["VersionIdsToStages"] == before["VersionIdsToStages"]
    assert value(boto) == {"username": "b", "password": "team-b-pw"}


def test_plan_actor_records_the_writes_and_makes_none(factory, aws_server, boto):
    """The secret and rule steps write only through the actor: a recording actor makes no AWS write,
    and the placeholder ARN lets the rule after the secret be planned."""
    from controller.reconcile.loop import RecordingActor

    actor = RecordingActor()
    spec = {**BASE, "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "docker-hub"}}
    d = Driver(factory, spec)
    mark = aws_server.calls.mark()
    request = rc.Request(NS, NAME, 1, spec, {}, d.secret, CLUSTER)
    result = rc.reconcile(request, d.clients_for, actor=actor, tenancy_policy=OPEN)
    assert aws_server.calls.writes(since=mark) == []
    assert [(w.kind, w.name, w.action) for w in actor.planned] == [
        ("secret", f"secret 'ecr-pullthroughcache/{NS}/{NAME}'", "create"),
        ("pullThroughCacheRule", "pull-through cache rule 'docker-hub'", "create"),
    ]
    assert result.status["secretArn"].startswith("<ARN of secret ecr-pullthroughcache/")


@pytest.mark.parametrize("operation", ["CreateSecret", "PutSecretValue"])
def test_a_write_whose_answer_is_lost_is_observed_not_repeated(factory, aws_server, boto, operation):
    """AWS does the write and the connection drops before every answer: botocore's retries carry
    the same ClientRequestToken (no second version), and the loop then looks again, finds it done
    and writes nothing more (the ARN and version still reach status)."""
    d = Driver(factory, BASE)
    if operation == "PutSecretValue":
        d.run()
        d.secret = source("rotated-lost-answer", rv="2")
    aws_server.faults.configure(scoped=[{"service": "secretsmanager", "operation": operation,
                                         "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()
    result = d.run()
    aws_server.faults.clear()
    assert aws_server.calls.count("secretsmanager", operation, since=mark) >= 1
    assert result.ready, d.status.get("conditions")
    sm = boto.client("secretsmanager")
    versions = sm.list_secret_version_ids(SecretId=SECRET_NAME)["Versions"]
    assert len(versions) == (1 if operation == "CreateSecret" else 2)
    described = sm.describe_secret(SecretId=SECRET_NAME)
    assert d.status["secretArn"] == described["ARN"]
    current = next(v for v, stages in described["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
    assert d.status["secretVersionId"] == current
    assert value(boto)["password"] == (PASSWORD if operation == "CreateSecret" else "rotated-lost-answer")
    # and the next resync is quiet: the version in status is AWS's current one
    mark = aws_server.calls.mark()
    d.run()
    assert aws_server.calls.writes(since=mark) == []
