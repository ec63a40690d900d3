"""AWS tier: ``regaccess plan`` against prepared AWS state on the harness server.

Given AWS objects prepared in moto (and the pull-through cache stand-in), when
plan runs on a manifest, then it lists exactly the changes the operator would
make, field by field, and the harness's call record shows zero write calls.
Where the operator itself converges the state first (``reconcile()``), plan
must then list nothing to do: the plan and the operator agree.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import boto3
import pytest
import yaml

from controller import plan
from controller.aws.clients import Clients
from controller.reconcile import cross_account
from controller.reconcile import registry_credential as rc
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS = "team"
CLUSTER = "plan"
REGION = "us-east-1"
PASSWORD = "PLAN-LEAKCHECK-pw-51c2"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def rc_manifest(name: str = "hub", **spec: Any) -> dict[str, Any]:
    body = {"source": {"secretRef": {"name": "hub-robot"}}, **spec}
    return {"apiVersion": "regaccess.io/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def xrepo_manifest(name: str = "shared", **spec: Any) -> dict[str, Any]:
    body = {"repositories": ["base/python"], "grants": [{"access": "Pull", "principals": [{"accountId": "444455556666"}]}],
            **spec}
    return {"apiVersion": "regaccess.io/v1alpha1", "kind": "CrossAccountRepoAccess",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def source_secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "hub-robot", "namespace": NS, "resourceVersion": "1"},
            "data": {"username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(PASSWORD.encode()).decode()}}


def run_plan(factory, *docs: dict[str, Any], live: Any = None) -> list[plan.ObjectPlan]:
    manifests = [plan.Manifest(f"doc{i}", d) for i, d in enumerate(docs)]
    return plan.plan_objects(manifests, default_namespace=NS, cluster_id=CLUSTER, factory=factory, live=live, tenancy_policy=OPEN)


class Converged:
    """The cluster as ``plan --kube`` reads it: the status the operator wrote, the source's version."""

    def __init__(self, spec: dict[str, Any], status: dict[str, Any]) -> None:
        self.live = plan.Live(1, spec, status)

    def resource(self, kind: str, namespace: str, name: str) -> plan.Live | None:
        return self.live

    def source_version(self, namespace: str, name: str) -> str | None:
        return source_secret()["metadata"]["resourceVersion"]


def actions(objects: list[plan.ObjectPlan]) -> list[tuple[str, str]]:
    return [(c.action, c.object) for o in objects for c in o.changes]


@pytest.fixture
def ro_factory(aws):
    return plan.read_only_factory()


@pytest.fixture
def role_and_family(aws):
    iam, ecs = boto3.client("iam", region_name=REGION), boto3.client("ecs", region_name=REGION)
    arn = iam.create_role(RoleName="exec", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    ecs.register_task_definition(family="web", executionRoleArn=arn, containerDefinitions=[
        {"name": "app", "image": "docker.io/acme/web:1", "memory": 256},
        {"name": "sidecar", "image": "public.ecr.aws/x/y:1", "memory": 64}])
    return arn


@pytest.fixture
def no_writes(aws_server):
    """Asserts after the test that nothing but reads reached AWS since the test's own setup."""
    marks: dict[str, int] = {}

    def start() -> None:
        marks["since"] = aws_server.calls.mark()

    yield start
    assert "since" in marks, "the test must call no_writes() after preparing AWS"
    writes = aws_server.calls.writes(since=marks["since"])
    assert writes == [], f"plan wrote to AWS: {writes}"


def converge_rc(factory, doc: dict[str, Any]) -> dict[str, Any]:
    request = rc.Request(NS, doc["metadata"]["name"], 1, doc["spec"], {}, source_secret(), CLUSTER)
    result = rc.reconcile(request, lambda r, a, e: Clients(factory, region=r, role_arn=a, external_id=e), tenancy_policy=OPEN)
    assert result.ready, result.status.get("conditions")
    return result.status


# --------------------------------------------------------------------------- RegistryCredential


def test_new_credential_lists_creates_and_a_revision_with_predicted_results(ro_factory, role_and_family, no_writes):
    no_writes()
    doc = rc_manifest(grants={"executionRoles": ["exec"]}, consumers={"ecsTaskDefinitions": [{"family": "web", "containers": ["app"]}]},
                      secret={"description": "robot", "tags": {"team": "a"}})
    [obj] = run_plan(ro_factory, doc, source_secret())

    assert not obj.problems
    assert actions([obj]) == [("create", "secret 'regaccess/team/hub'"),
                              ("create", "inline policy regaccess-team-hub on role exec"),
                              ("update", "task definition web")]
    secret, policy, taskdef = obj.changes
    pending = "<ARN of secret regaccess/team/hub, assigned when it is created>"
    assert secret.predicted["arn"] == pending
    assert taskdef.predicted["revision"] == 2  # the next revision of family web
    assert [(f.field, f.before, f.after) for f in taskdef.fields] == [
        ("containerDefinitions[app].repositoryCredentials", None, pending)]


def test_after_the_operator_converged_plan_lists_nothing_to_do(factory, ro_factory, role_and_family, no_writes):
    doc = rc_manifest(grants={"executionRoles": ["exec"]}, consumers={"ecsTaskDefinitions": [{"family": "web"}]})
    status = converge_rc(factory, doc)
    no_writes()

    [obj] = run_plan(ro_factory, doc, live=Converged(doc["spec"], status))

    assert {c.action for c in obj.changes} == {"unchanged"}, actions([obj])
    assert len(obj.changes) == 3


def test_drifted_inline_policy_is_an_update_with_a_document_diff(factory, ro_factory, role_and_family, no_writes):
    doc = rc_manifest(grants={"executionRoles": ["exec"]})
    status = converge_rc(factory, doc)
    world.edit_role_policy(lambda service: boto3.client(service, region_name=REGION), "exec", "regaccess-team-hub")
    no_writes()

    [obj] = run_plan(ro_factory, doc, live=Converged(doc["spec"], status))

    assert actions([obj]) == [("unchanged", "secret regaccess/team/hub"),
                              ("update", "inline policy regaccess-team-hub on role exec")]
    diff = "\n".join(obj.changes[1].diff)
    assert '-      "Resource": "*",' in diff
    assert f'+      "Resource": "{status["secretArn"]}",' in diff


def test_without_status_the_value_is_planned_as_compared_never_read(factory, ro_factory, aws, aws_server):
    doc = rc_manifest()
    status = converge_rc(factory, doc)
    since = aws_server.calls.mark()

    [fresh] = run_plan(ro_factory, doc)                                     # no --kube: new to the operator
    [known] = run_plan(ro_factory, doc, live=Converged(doc["spec"], status))  # --kube: status says it is synced

    [secret] = fresh.changes
    assert secret.action == "update"
    assert [(f.field, f.before, f.after) for f in secret.fields] == [
        ("SecretString", "(not read)", "from Secret team/hub-robot, if different (plan never reads values)")]
    assert actions([known]) == [("unchanged", "secret regaccess/team/hub")]
    assert aws_server.calls.count(operation="GetSecretValue", since=since) == 0
    assert aws_server.calls.writes(since=since) == []


def test_changed_description_and_tag_are_field_updates(factory, ro_factory, aws, no_writes):
    doc = rc_manifest(secret={"description": "old", "tags": {"team": "a"}})
    status = converge_rc(factory, doc)
    no_writes()
    changed = rc_manifest(secret={"description": "new", "tags": {"team": "b"}})

    [obj] = run_plan(ro_factory, changed, live=Converged(doc["spec"], status))

    [secret] = obj.changes
    assert secret.action == "update"
    assert [(f.field, f.before, f.after) for f in secret.fields] == [("Description", "old", "new"),
                                                                     ("Tags", {"team": "a"}, {"team": "b"})]


@pytest.mark.parametrize("adopt, action", [(False, "conflict"), (True, "adopt")], ids=["conflict", "adopt"])
def test_a_secret_made_by_someone_else(ro_factory, aws, no_writes, adopt, action):
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="regaccess/team/hub", SecretString="{}")
    no_writes()

    [obj] = run_plan(ro_factory, rc_manifest(adoptExisting=adopt))

    assert obj.changes[0].action == action
    if action == "conflict":
        assert obj.changes[0].reason == "OwnershipConflict"
        assert "regaccess/team/hub" in obj.changes[0].message
        assert len(obj.changes) == 1  # the operator stops at the secret too
    else:
        tags = next(f for f in obj.changes[0].fields if f.field == "Tags")
        assert tags.after == {"regaccess.io/owner": "plan/team/hub"}


@pytest.mark.parametrize("spec, reason", [
    ({"grants": {"executionRoles": ["missing-role"]}}, "DependencyMissing"),
    ({"consumers": {"ecsTaskDefinitions": [{"family": "nope"}]}}, "TaskDefinitionNotFound"),
    ({"consumers": {"ecsTaskDefinitions": [{"family": "web", "containers": ["ghost"]}]}}, "ContainerNotFound"),
    ({"consumers": {"batchJobDefinitions": [{"name": "nightly"}]}}, "JobDefinitionNotFound"),
], ids=["role-missing", "family-missing", "container-missing", "job-missing"])
def test_blocked_objects_name_the_reason(ro_factory, role_and_family, no_writes, spec, reason):
    no_writes()

    [obj] = run_plan(ro_factory, rc_manifest(**spec))

    blocked = [c for c in obj.changes if c.action == "blocked"]
    assert [c.reason for c in blocked] == [reason], actions([obj])


def test_execution_role_not_granted_is_said_on_the_registration(ro_factory, role_and_family, no_writes):
    no_writes()

    [obj] = run_plan(ro_factory, rc_manifest(consumers={"ecsTaskDefinitions": [{"family": "web"}]}))

    register = obj.changes[-1]
    assert (register.action, register.object) == ("update", "task definition web")
    assert register.reason == "ExecutionRoleNotGranted" and "not in spec.grants.executionRoles" in register.message
    assert [f.field for f in register.fields] == ["containerDefinitions[app].repositoryCredentials",
                                                  "containerDefinitions[sidecar].repositoryCredentials"]


def test_pull_through_cache_rule_create(ro_factory, aws, no_writes):
    no_writes()
    doc = rc_manifest(pullThroughCache={"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"})

    [obj] = run_plan(ro_factory, doc)

    assert actions([obj]) == [("create", "secret 'ecr-pullthroughcache/team/hub'"), ("create", "pull-through cache rule 'hub'")]
    rule = obj.changes[1].predicted["rule"]
    assert rule["upstreamRegistryUrl"] == "registry-1.docker.io" and rule["upstreamRegistry"] == "docker-hub"
    assert rule["credentialArn"] == "<ARN of secret ecr-pullthroughcache/team/hub, assigned when it is created>"


def test_premium_pull_through_cache_rule_create_shows_the_roles_and_no_credential(ro_factory, aws, no_writes):
    no_writes()
    roles = {"customRoleArn": "arn:aws:iam::123456789012:role/ecr-ptc",
             "upstreamRoleArn": "arn:aws:iam::210987654321:role/premium"}
    doc = rc_manifest(pullThroughCache={"upstreamRegistry": "ecr-public-premium", "ecrRepositoryPrefix": "prem", **roles})

    [obj] = run_plan(ro_factory, doc)

    # the rule takes no credential, so the secret keeps the ordinary regaccess/ name
    assert actions([obj]) == [("create", "secret 'regaccess/team/hub'"), ("create", "pull-through cache rule 'prem'")]
    rule = obj.changes[1].predicted["rule"]
    assert rule == {"ecrRepositoryPrefix": "prem", "upstreamRegistryUrl": "ecr-premium.aws.com",
                    "upstreamRegistry": "ecr-public-premium", **roles}


# --------------------------------------------------------------------------- CrossAccountRepoAccess


@pytest.fixture
def repository(aws):
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="base/python")
    ecr.set_repository_policy(repositoryName="base/python", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "ecr:BatchGetImage"}]}))
    return ecr


def test_repository_policy_statements_added_keep_foreign_ones(ro_factory, repository, no_writes):
    no_writes()

    [obj] = run_plan(ro_factory, xrepo_manifest())

    [change] = obj.changes
    assert (change.action, change.object) == ("create", "repository base/python")
    assert change.predicted["othersKept"] == 1
    [field] = change.fields
    assert field.field.startswith("Statement[Regaccess") and field.before is None
    assert field.after["Principal"] == {"AWS": "arn:aws:iam::444455556666:root"}
    assert not any("Theirs" in line for line in change.diff)


def test_repository_converged_then_missing_repository(factory, ro_factory, repository, no_writes):
    doc = xrepo_manifest(repositories=["base/python", "base/absent"])
    cross_account.reconcile(NS, "shared", 1, doc["spec"], {}, cluster_id=CLUSTER, now=lambda: __import__("datetime").datetime.now(__import__("datetime").timezone.utc),
                            clients_for=lambda r, a, e: Clients(factory, region=r, role_arn=a, external_id=e), tenancy_policy=OPEN)
    no_writes()

    [obj] = run_plan(ro_factory, doc)

    assert [(c.action, c.reason) for c in obj.changes] == [("unchanged", ""), ("blocked", "DependencyMissing")]


# --------------------------------------------------------------------------- invalid input, the guard, run()


@pytest.mark.parametrize("doc, field, reason", [
    (rc_manifest(secrets={"name": "x"}), "spec.secrets", "InvalidSpec"),
    (rc_manifest(secret={"recoveryWindowInDays": 7, "forceDeleteWithoutRecovery": True}), "spec.secret", "InvalidDeletionSettings"),
    (rc_manifest(secret={"name": "regaccess/team/app-abcdef"}), "spec.secret.name", "InvalidSecretName"),
    (xrepo_manifest(grants=[{"access": "Pull", "principals": [{"accountId": "12345"}]}]),
     "spec.grants[0].principals[0].accountId", "InvalidGrant"),
    (xrepo_manifest(grants=[{"access": "Read", "principals": [{"accountId": "444455556666"}]}]), "spec.grants[0].access", "InvalidGrant"),
    ({**rc_manifest(), "specs": {}}, "specs", "InvalidSpec"),
], ids=["typo-field", "exclusive-deletion", "arn-suffix-name", "bad-account", "bad-access", "top-level-typo"])
def test_invalid_manifests_name_field_and_rule_and_touch_no_aws(ro_factory, aws_server, doc, field, reason):
    since = aws_server.calls.mark()

    [obj] = run_plan(ro_factory, doc)

    assert (field, reason) in [(p.field, p.reason) for p in obj.problems], obj.problems
    assert obj.changes == []
    assert aws_server.calls.list(since=since) == []  # no AWS call at all for an invalid manifest


def test_the_guard_refuses_writes_before_they_leave_the_process(ro_factory, aws_server):
    since = aws_server.calls.mark()
    with pytest.raises(plan.ReadOnlyViolation, match="PutRolePolicy"):
        ro_factory.client("iam").put_role_policy(RoleName="r", PolicyName="p", PolicyDocument="{}")
    assert aws_server.calls.list(since=since) == []


def test_run_exit_codes_and_json_output(tmp_path, role_and_family, no_writes):
    no_writes()
    good = tmp_path / "good"
    good.mkdir()
    (good / "rc.yaml").write_text(yaml.safe_dump_all([source_secret(), rc_manifest(grants={"executionRoles": ["exec"]})]))
    # The role "exec" does not carry the namespace: plan judges under the TenancyPolicy the
    # manifests bring (an explicit, open one), as the operator would under that policy.
    (good / "tenancy.yaml").write_text(yaml.safe_dump({
        "apiVersion": "regaccess.io/v1alpha1", "kind": "TenancyPolicy", "metadata": {"name": "default"},
        "spec": {"defaultAction": "Allow", "default": {}}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(xrepo_manifest(repositories=["Not_Valid"])))
    out = io.StringIO()

    assert plan.run([str(good)], output="json", cluster_id=CLUSTER, stdout=out, stderr=io.StringIO()) == plan.EXIT_OK
    report = json.loads(out.getvalue())
    assert report["valid"] and report["awsCompared"] and report["summary"]["changes"] == 2
    assert PASSWORD not in out.getvalue() and base64.b64encode(PASSWORD.encode()).decode() not in out.getvalue()

    out = io.StringIO()
    assert plan.run([str(good), str(bad)], stdout=out, stderr=io.StringIO()) == plan.EXIT_INVALID
    assert "x spec.repositories[0]: ECR repository names are 2-256 characters" in out.getvalue()
    assert plan.run([str(tmp_path / "missing")], stdout=io.StringIO(), stderr=io.StringIO()) == plan.EXIT_USAGE


def test_unreadable_aws_is_exit_3(aws, monkeypatch, tmp_path):
    # Credentials that the endpoint accepts, a Region moto serves, but an endpoint that is not there.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    path = tmp_path / "rc.yaml"
    path.write_text(yaml.safe_dump(rc_manifest()))
    out = io.StringIO()

    assert plan.run([str(path)], output="json", stdout=out, stderr=io.StringIO()) == plan.EXIT_AWS_ERROR
    report = json.loads(out.getvalue())
    assert report["objects"][0]["changes"][0]["action"] == "unknown"


class EmptyCluster:
    """--kube against a cluster that has neither the resource nor its source Secret yet."""

    def resource(self, kind: str, namespace: str, name: str) -> plan.Live | None:
        return None

    def source_version(self, namespace: str, name: str) -> str | None:
        return None


def test_with_kube_a_source_secret_neither_in_the_cluster_nor_the_manifests_is_invalid(ro_factory, aws, no_writes):
    no_writes()

    [missing] = run_plan(ro_factory, rc_manifest(), live=EmptyCluster())
    [applied_with] = run_plan(ro_factory, rc_manifest(), source_secret(), live=EmptyCluster())

    assert [(p.field, p.reason) for p in missing.problems] == [("spec.source.secretRef.name", "SourceSecretNotFound")]
    assert missing.changes == []
    assert applied_with.problems == [] and actions([applied_with]) == [("create", "secret 'regaccess/team/hub'")]
