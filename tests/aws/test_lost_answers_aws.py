"""AWS tier: writes whose answer is lost converge without duplicates or orphans.

Given the AWS test server losing the answer of 30 % of the operator's writes
(AWS performs the call, the client gets a throttle, a 500, a 503 or a dropped
connection instead: fault kind ``lost``) on top of ordinary faults on every call,
when twelve RegistryCredentials, each with its own roles, one ECS task
definition family and one Batch job definition (every third also with a
pull-through cache rule), go through create, source rotation, a spec change,
deletion and re-creation, each phase driven by a bounded number of reconcile
passes the way the operator's handlers drive them, then:

- every family and job definition got exactly one new revision over all phases
  (RegisterTaskDefinition / RegisterJobDefinition are not retried blindly by
  botocore, and the reconcile observes the latest revision before registering);
- every secret exists once, with exactly one AWSCURRENT version and exactly the
  versions the operator meant to write: one for the create and one for the
  rotation (botocore's retries resend the same ClientRequestToken, and the
  reconcile compares the current value before writing another);
- every role carries exactly the inline policies the spec says, none left
  behind after a role is dropped or the resource deleted; every cache rule
  exists once while wanted and not after;
- a CrossAccountRepoAccess under the same faults ends with exactly its
  statements beside the foreign one, and none after it is deleted.

The test prints what the fault layer did (faults injected, answers lost per
operation) so the run documents itself: ``pytest tests/aws/test_lost_answers_aws.py -s``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import boto3
import pytest

from controller.api.validation_xrepo import validate_cross_account
from controller.aws import repository_policies as policies
from controller.aws.clients import Clients
from controller.aws.retries import NON_IDEMPOTENT, RETRY_SAFE_WRITES
from controller.reconcile import cross_account
from controller.reconcile import registry_credential as rc
from tests.conftest import ACCOUNT, REGION
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS, CLUSTER = "team", "c1"
COUNT = 12
SEED = 20261201
MAX_PASSES = 25   # per phase; with these faults a phase needs far fewer (printed below)
WORKERS = 4       # reconciles run concurrently, as in the operator's worker threads
LOST_RATE = 0.30
FAULTS = {
    "seed": SEED,
    # Ordinary faults on every call (reads and writes)...
    "rates": {"throttle": 0.08, "error5xx": 0.05, "drop": 0.02, "abort": 0.01},
    # ...and on writes, 30 % of the answers lost after AWS did the work.
    "scoped": [{"calls": "writes", "rates": {"lost": LOST_RATE, "throttle": 0.05, "error5xx": 0.05, "drop": 0.02}}],
}
# Writes whose lost answers the test must have seen (the ones the issue measured, and one per service).
MUST_LOSE = {("ecs", "RegisterTaskDefinition"), ("batch", "RegisterJobDefinition"),
             ("secretsmanager", "CreateSecret"), ("secretsmanager", "PutSecretValue"),
             ("iam", "PutRolePolicy"), ("ecr", "CreatePullThroughCacheRule")}


def raw(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def name_of(i: int) -> str:
    return f"cred-{i:02d}"


def has_cache(i: int) -> bool:
    return i % 3 == 0


def forced(i: int) -> bool:
    return i % 2 == 0


def secret_name(i: int) -> str:
    return f"{'ecr-pullthroughcache' if has_cache(i) else 'regaccess'}/{NS}/{name_of(i)}"


def policy_name(i: int) -> str:
    return f"regaccess-{NS}-{name_of(i)}"


def spec(i: int, *, narrowed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"secretRef": {"name": f"src-{i:02d}"}},
        "grants": {"executionRoles": [f"exec-{i:02d}-a", *([] if narrowed else [f"exec-{i:02d}-b"])]},
        "consumers": {"ecsTaskDefinitions": [{"family": f"web-{i:02d}"}],
                      "batchJobDefinitions": [{"name": f"job-{i:02d}"}]},
        "secret": {"forceDeleteWithoutRecovery": True} if forced(i) else {"recoveryWindowInDays": 7},
    }
    if narrowed:
        body["secret"].update(description="registry credential (narrowed)", tags={"team": "payments"})
    if has_cache(i):
        body["pullThroughCache"] = {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": f"hub-{i:02d}"}
    return body


def source(i: int, version: int) -> dict[str, Any]:
    return {"type": "kubernetes.io/basic-auth",
            "data": {"username": b64(f"robot-{i}"), "password": b64(f"pw-{i}-v{version}")},
            "metadata": {"name": f"src-{i:02d}", "namespace": NS, "resourceVersion": str(version)}}


def password_key(i: int) -> str:
    return "accessToken" if has_cache(i) else "password"


class Fleet:
    """The custom resources' side: spec, generation, source and status per resource, as kopf keeps them."""

    def __init__(self, factory: Any) -> None:
        self.clients_for = lambda region, role, external: Clients(factory, region=region, role_arn=role,
                                                                  external_id=external)
        self.specs = {i: spec(i) for i in range(COUNT)}
        self.generation = dict.fromkeys(range(COUNT), 1)
        self.source_version = dict.fromkeys(range(COUNT), 1)
        self.status: dict[int, dict[str, Any]] = {i: {} for i in range(COUNT)}

    def _request(self, i: int) -> rc.Request:
        return rc.Request(namespace=NS, name=name_of(i), generation=self.generation[i], spec=self.specs[i],
                          status=self.status[i], source_secret=source(i, self.source_version[i]),
                          cluster_id=CLUSTER)

    def _record_now(self, i: int) -> Callable[[dict[str, Any]], None]:
        """What the operator's status writer does with a registered revision: upsert the row at once."""

        def record(patch: dict[str, Any]) -> None:
            rows = {(r["kind"], r["name"]): r for r in self.status[i].get("managed") or []}
            rows.update({(r["kind"], r["name"]): r for r in patch.get("managed") or []})
            self.status[i] = {**self.status[i], "managed": list(rows.values())}

        return record

    def _once(self, i: int, deleting: bool) -> bool:
        if deleting:
            result = rc.delete(self._request(i), self.clients_for, tenancy_policy=OPEN)
            self.status[i] = result.status
            return result.ready and result.retry_after is None
        result = rc.reconcile(self._request(i), self.clients_for, record_now=self._record_now(i), tenancy_policy=OPEN)
        self.status[i] = result.status
        return result.ready and result.retry_after is None

    def converge(self, which: list[int], *, deleting: bool = False) -> int:
        """Reconcile (or delete) until every resource is done; returns the passes it took."""
        pending = list(which)
        with ThreadPoolExecutor(WORKERS) as pool:
            for passes in range(1, MAX_PASSES + 1):
                done = list(pool.map(lambda i: self._once(i, deleting), pending))
                pending = [i for i, finished in zip(pending, done) if not finished]
                if not pending:
                    return passes
        raise AssertionError(f"not converged after {MAX_PASSES} passes: {[name_of(i) for i in pending]}")


class Measure:
    """What the fault layer did in one phase, from the harness's call record."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.rows: list[str] = []
        self.lost_by_operation: Counter[tuple[str, str]] = Counter()
        self.write_operations: set[tuple[str, str]] = set()

    def phase(self, label: str, run: Callable[[], int]) -> None:
        mark = self.server.calls.mark()
        before = self.server.faults.counts()
        self.server.faults.configure(FAULTS)
        try:
            passes = run()
        finally:
            self.server.faults.clear()
        calls = self.server.calls.list(since=mark)
        writes = [c for c in calls if not c.is_read]
        lost = [c for c in calls if c.lost]
        self.lost_by_operation.update((c.service, c.operation) for c in lost if not c.is_read)
        self.write_operations.update((c.service, c.operation) for c in writes)
        faults = {k: n - before.get(k, 0) for k, n in self.server.faults.counts().items() if n - before.get(k, 0)}
        self.rows.append(
            f"{label:<10} passes={passes:<2} calls={len(calls):<5} writes={len(writes):<4} "
            f"writes done by AWS={sum(c.done for c in writes):<4} answers lost={len(lost):<4} faults={faults}"
        )

    def report(self) -> str:
        lost = ", ".join(f"{s}:{o}={n}" for (s, o), n in sorted(self.lost_by_operation.items()))
        return "\n".join([*self.rows, f"lost answers by operation: {lost}"])


# --------------------------------------------------------------------------- then: what AWS holds


def secret_arns() -> dict[str, str]:
    found = raw("secretsmanager").list_secrets(IncludePlannedDeletion=True)["SecretList"]
    names = Counter(s["Name"] for s in found)
    assert all(n == 1 for n in names.values()), names
    return {s["Name"]: s["ARN"] for s in found}


def assert_secret(i: int, fleet: Fleet, *, versions: int, value_version: int) -> str:
    sm = raw("secretsmanager")
    described = sm.describe_secret(SecretId=secret_name(i))
    stages = described["VersionIdsToStages"]
    current = [v for v, labels in stages.items() if "AWSCURRENT" in labels]
    assert len(current) == 1, stages
    # Exactly the versions the operator meant to write: no second version behind a lost answer.
    assert len(stages) == versions, (name_of(i), stages)
    value = json.loads(sm.get_secret_value(SecretId=secret_name(i))["SecretString"])
    assert value == {"username": f"robot-{i}", password_key(i): f"pw-{i}-v{value_version}"}
    status = fleet.status[i]
    assert (status["secretArn"], status["secretVersionId"]) == (described["ARN"], current[0])
    return described["ARN"]


def assert_one_new_revision(i: int, arn: str) -> None:
    family = f"web-{i:02d}"
    revisions = raw("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert len(revisions) == 2, (family, revisions)  # the pipeline's, and exactly one of ours
    latest = world.latest_task_definition(raw, family)
    assert latest["containerDefinitions"][0]["repositoryCredentials"]["credentialsParameter"] == arn
    job = f"job-{i:02d}"
    definitions = raw("batch").describe_job_definitions(jobDefinitionName=job)["jobDefinitions"]
    assert sorted(d["revision"] for d in definitions) == [1, 2], (job, definitions)
    latest_job = world.latest_job_definition(raw, job)
    assert latest_job["containerProperties"]["repositoryCredentials"]["credentialsParameter"] == arn


def role_policies(role: str) -> list[str]:
    return raw("iam").list_role_policies(RoleName=role)["PolicyNames"]


def cache_rules(server: Any) -> dict[str, str]:
    found = server.standin.rules(ACCOUNT, REGION)
    prefixes = Counter(r["ecrRepositoryPrefix"] for r in found)
    assert all(n == 1 for n in prefixes.values()), prefixes
    return {r["ecrRepositoryPrefix"]: r.get("credentialArn") for r in found}


# --------------------------------------------------------------------------- the scenario


def test_twelve_credentials_converge_under_lost_answers_without_duplicates(factory, aws_server):
    # given what a user's pipeline created: two roles, a family and a job definition per resource
    for i in range(COUNT):
        arn_a = world.make_role(raw, f"exec-{i:02d}-a")
        world.make_role(raw, f"exec-{i:02d}-b")
        world.register_family(raw, f"web-{i:02d}", arn_a)
        world.register_job(raw, f"job-{i:02d}", arn_a)
    fleet = Fleet(factory)
    measure = Measure(aws_server)
    everyone = list(range(COUNT))

    # when the resources are created
    measure.phase("create", lambda: fleet.converge(everyone))
    # then
    arns = {i: assert_secret(i, fleet, versions=1, value_version=1) for i in everyone}
    assert set(secret_arns()) == {secret_name(i) for i in everyone}
    for i in everyone:
        assert_one_new_revision(i, arns[i])
        for role in (f"exec-{i:02d}-a", f"exec-{i:02d}-b"):
            assert role_policies(role) == [policy_name(i)]
    assert cache_rules(aws_server) == {f"hub-{i:02d}": arns[i] for i in everyone if has_cache(i)}

    # when every source Secret is rotated
    for i in everyone:
        fleet.source_version[i] = 2
    measure.phase("rotate", lambda: fleet.converge(everyone))
    # then one new version each, nothing else new
    for i in everyone:
        assert assert_secret(i, fleet, versions=2, value_version=2) == arns[i]
        assert_one_new_revision(i, arns[i])

    # when the specs drop role b and change the secret's description and tags
    for i in everyone:
        fleet.specs[i] = spec(i, narrowed=True)
        fleet.generation[i] += 1
    measure.phase("narrow", lambda: fleet.converge(everyone))
    # then
    sm = raw("secretsmanager")
    for i in everyone:
        assert (role_policies(f"exec-{i:02d}-a"), role_policies(f"exec-{i:02d}-b")) == ([policy_name(i)], [])
        described = sm.describe_secret(SecretId=secret_name(i))
        assert described["Description"] == "registry credential (narrowed)"
        assert {"Key": "team", "Value": "payments"} in described["Tags"]
        assert assert_secret(i, fleet, versions=2, value_version=2) == arns[i]
        assert_one_new_revision(i, arns[i])

    # when every resource is deleted
    measure.phase("delete", lambda: fleet.converge(everyone, deleting=True))
    # then nothing of ours is left but what deletion keeps on purpose (revisions; scheduled secrets)
    left = secret_arns()
    for i in everyone:
        assert role_policies(f"exec-{i:02d}-a") == [] and role_policies(f"exec-{i:02d}-b") == []
        if forced(i):
            assert secret_name(i) not in left
        else:
            assert sm.describe_secret(SecretId=secret_name(i)).get("DeletedDate")
        assert_one_new_revision(i, arns[i])
    assert cache_rules(aws_server) == {}

    # when the resources with a recovery window are created again
    again = [i for i in everyone if not forced(i)]
    for i in again:
        fleet.status[i], fleet.generation[i] = {}, 1
    measure.phase("restore", lambda: fleet.converge(again))
    # then their secrets are restored, not duplicated, and still nothing is registered twice
    assert set(secret_arns()) == {secret_name(i) for i in again}
    for i in again:
        assert not sm.describe_secret(SecretId=secret_name(i)).get("DeletedDate")
        assert assert_secret(i, fleet, versions=2, value_version=2) == arns[i]
        assert_one_new_revision(i, arns[i])
        assert role_policies(f"exec-{i:02d}-a") == [policy_name(i)]
    assert cache_rules(aws_server) == {f"hub-{i:02d}": arns[i] for i in again if has_cache(i)}

    new_revisions = Counter(
        len(raw("ecs").list_task_definitions(familyPrefix=f"web-{i:02d}")["taskDefinitionArns"]) - 1 for i in everyone)
    new_job_revisions = Counter(
        len(raw("batch").describe_job_definitions(jobDefinitionName=f"job-{i:02d}")["jobDefinitions"]) - 1
        for i in everyone)
    print("\n" + measure.report())
    print(f"families by new revisions: {dict(new_revisions)}; job definitions by new revisions: "
          f"{dict(new_job_revisions)}")
    # The faults really happened, on the writes that matter...
    assert MUST_LOSE <= set(measure.lost_by_operation), measure.report()
    # ...and every write the operator made has a stated retry rule.
    assert measure.write_operations <= NON_IDEMPOTENT | set(RETRY_SAFE_WRITES), measure.write_operations


# --------------------------------------------------------------------------- CrossAccountRepoAccess

FOREIGN = {"Sid": "TerraformManagedPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
           "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}
REPOSITORIES = ("app", "web", "tools", "batch", "docs", "shared")
XREPOS = {
    "pullers": {"repositories": ["app", "shared", "web"],
                "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]},
    "pushers": {"repositories": ["tools", "shared", "batch"],
                "grants": [{"principals": [{"accountId": "444455556666"}], "access": "PullPush"},
                           {"principals": [{"organizationId": "o-abcdef1234"}], "access": "Pull"}]},
    "readers": {"repositories": ["app", "tools", "docs"],
                "grants": [{"principals": [{"accountId": "777788889999"}], "access": "Pull"}]},
    "ci": {"repositories": ["web", "batch", "docs", "shared"],
           "grants": [{"principals": [{"accountId": "222233334444"}, {"accountId": "333344445555"}],
                       "access": "PullPush"}]},
}
DELETED = ("pullers", "readers")


def _now() -> dt.datetime:
    return dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def policy_document(repository: str) -> dict[str, Any] | None:
    try:
        return world.repository_policy(raw, repository)
    except raw("ecr").exceptions.RepositoryPolicyNotFoundException:
        return None


def assert_exact_statements(live: list[str]) -> None:
    """Each repository: the foreign statement as written, and exactly the live resources' statements."""
    for repository in REPOSITORIES:
        document = policy_document(repository)
        found = (document or {}).get("Statement", [])
        sids = [statement["Sid"] for statement in found]
        assert len(sids) == len(set(sids)), (repository, sids)  # nothing twice
        expected = 1 if repository == "shared" else 0
        for name, body in XREPOS.items():
            prefix = policies.sid_prefix(CLUSTER, NS, name)
            want = policies.desired_statements(validate_cross_account(NS, name, body, cluster_id=CLUSTER)[0])
            wanted_here = name in live and repository in body["repositories"]
            assert policies.compare(document, prefix, want if wanted_here else []) == (), (repository, name)
            expected += len(want) if wanted_here else 0
        assert len(found) == expected, (repository, found)  # nobody else's, nothing orphaned
        if repository == "shared":
            assert found[0] == FOREIGN
        if expected == 0:
            assert document is None  # an emptied policy is deleted, not left as an empty document


def test_cross_account_statements_are_exact_under_lost_answers(factory, aws_server):
    ecr = raw("ecr")
    for repository in REPOSITORIES:
        world.make_repository(raw, repository)
    ecr.set_repository_policy(repositoryName="shared",
                              policyText=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))

    def clients_for(region: str | None, role: str | None, external: str | None) -> Clients:
        return Clients(factory, region=region, role_arn=role, external_id=external)

    status: dict[str, dict[str, Any]] = {name: {} for name in XREPOS}

    def once(name: str, deleting: bool) -> bool:
        call = cross_account.delete if deleting else cross_account.reconcile
        result = call(NS, name, 1, XREPOS[name], status[name], clients_for=clients_for, cluster_id=CLUSTER, now=_now,
                      tenancy_policy=OPEN)
        status[name] = result.status
        return (deleting or result.ready) and result.retry_after is None

    def converge(names: list[str], *, deleting: bool = False) -> int:
        pending = list(names)
        with ThreadPoolExecutor(WORKERS) as pool:
            for passes in range(1, MAX_PASSES + 1):
                done = list(pool.map(lambda name: once(name, deleting), pending))
                pending = [name for name, finished in zip(pending, done) if not finished]
                if not pending:
                    return passes
        raise AssertionError(f"not converged after {MAX_PASSES} passes: {pending}")

    measure = Measure(aws_server)
    # when the four resources are reconciled under faults (two or three share each repository)
    measure.phase("xrepo", lambda: converge(list(XREPOS)))
    # then
    assert_exact_statements(list(XREPOS))
    # when two of them are deleted under faults
    measure.phase("xrepo-del", lambda: converge(list(DELETED), deleting=True))
    # then their statements are gone everywhere ("app" had only theirs: no policy left)
    assert_exact_statements([name for name in XREPOS if name not in DELETED])
    print("\n" + measure.report())
    assert measure.lost_by_operation[("ecr", "SetRepositoryPolicy")] > 0, measure.report()
    assert measure.write_operations <= NON_IDEMPOTENT | set(RETRY_SAFE_WRITES), measure.write_operations


# --------------------------------------------------------------------------- one write at a time


@pytest.mark.parametrize("answer", ["503", "throttle", "drop"])
def test_a_deletion_retried_after_its_lost_answer_is_done(factory, aws_server, answer):
    """botocore repeats DeleteSecret; Secrets Manager refuses a second scheduling (InvalidRequestException)."""
    from controller.aws import secrets

    sm = factory.client("secretsmanager")
    arn = sm.create_secret(Name="regaccess/team/gone", SecretString="{}")["ARN"]
    aws_server.faults.configure(seed=3, lost_answers=[answer], max_lost_per_operation=1, scoped=[
        {"service": "secretsmanager", "operation": "DeleteSecret", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    secrets.delete(sm, arn, recovery_window_days=7, force=False)  # no exception: done
    aws_server.faults.clear()
    deletes = [c for c in aws_server.calls.list(since=mark) if c.operation == "DeleteSecret"]
    assert [(c.done, c.lost) for c in deletes] == [(True, True), (False, False)]  # the repeat was refused
    assert raw("secretsmanager").describe_secret(SecretId=arn).get("DeletedDate")


def test_the_reconcile_observes_again_after_a_lost_register(factory, aws_server):
    """Step by step: a register that lost its answer is observed again in the same pass, never repeated."""
    arn_a = world.make_role(raw, "exec-00-a")
    world.make_role(raw, "exec-00-b")
    world.register_family(raw, "web-00", arn_a)
    world.register_job(raw, "job-00", arn_a)
    fleet = Fleet(factory)
    aws_server.faults.configure(seed=1, lost_answers=["503"], max_lost_per_operation=1, scoped=[
        {"operation": "RegisterTaskDefinition", "rates": {"lost": 1.0}},
        {"operation": "RegisterJobDefinition", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    seen = []
    for _ in range(3):
        result = rc.reconcile(fleet._request(0), fleet.clients_for, record_now=fleet._record_now(0), tenancy_policy=OPEN)
        fleet.status[0] = result.status
        rows = {r["kind"]: r["state"] for r in result.status["managed"]}
        seen.append((result.outcome, rows.get("taskDefinition"), rows.get("jobDefinition"), result.retry_after))
    aws_server.faults.clear()
    # Both answers are lost (503); the loop observes again, finds each revision that AWS
    # did register, records it and is Ready in the first pass; later passes write nothing.
    assert seen == [("success", "Synced", "Synced", None)] * 3
    registers = [(c.operation, c.lost) for c in aws_server.calls.list(since=mark) if c.operation.startswith("Register")]
    assert registers == [("RegisterTaskDefinition", True), ("RegisterJobDefinition", True)]
    arn = fleet.status[0]["secretArn"]
    assert_one_new_revision(0, arn)
    task_row = next(r for r in fleet.status[0]["managed"] if r["kind"] == "taskDefinition")
    assert task_row["arn"].endswith("task-definition/web-00:2")
