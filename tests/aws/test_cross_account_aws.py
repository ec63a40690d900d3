"""AWS tier: CrossAccountRepoAccess reconcile and delete against the moto HTTP server.

Given repositories (and sometimes foreign statements) in moto's ECR, when
``controller.reconcile.cross_account`` runs, then the repository policies carry
exactly the owned statements and nothing else changes. ECR calls are counted
with a botocore ``before-call`` hook on the real client factory.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from controller.api import reasons
from controller.aws import policydoc
from controller.aws import repository_policies as policies
from controller.aws.clients import Clients
from controller.reconcile import cross_account
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS = "team-a"
CLUSTER = "test"  # the cluster id every reconcile here runs with
ROLE = "arn:aws:iam::444455556666:role/ci-puller"
FOREIGN = {
    "Sid": "TerraformManagedPull",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
}
WRITE_OPERATIONS = {"SetRepositoryPolicy", "DeleteRepositoryPolicy"}


class Clock:
    """An injected clock the tests move by hand."""

    def __init__(self) -> None:
        self.moment = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += dt.timedelta(seconds=seconds)


@pytest.fixture
def calls(factory):
    """Every ECR operation made through the factory, by name."""
    seen: Counter[str] = Counter()

    def count(model, **_):
        seen[model.name] += 1

    factory.add_hook("before-call.ecr", count)
    return seen


@pytest.fixture
def ecr(factory):
    return factory.client("ecr")


@pytest.fixture
def clock():
    return Clock()


def spec(repositories, grants=None, **extra):
    return {
        "repositories": repositories,
        "grants": grants or [{"principals": [{"accountId": "111122223333"}, {"roleArn": ROLE}], "access": "Pull"}],
        **extra,
    }


def run(factory, clock, name, body, status=None, generation=1, **kwargs):
    return cross_account.reconcile(
        NS, name, generation, body, status or {},
        clients_for=lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external),
        cluster_id=CLUSTER, now=clock, **kwargs, tenancy_policy=OPEN)


def remove(factory, clock, name, body, status):
    return cross_account.delete(
        NS, name, 1, body, status,
        clients_for=lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external),
        cluster_id=CLUSTER, now=clock, tenancy_policy=OPEN)


def policy(ecr, repository):
    return json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])


def writes(calls) -> int:
    return sum(calls[op] for op in WRITE_OPERATIONS)


def test_creates_statements_and_status_rows(factory, ecr, calls, clock):
    # given two repositories without policies
    for repo in ("app", "tools/base"):
        ecr.create_repository(repositoryName=repo)
    # when
    result = run(factory, clock, "pullers", spec(["app", "tools/base"]))
    # then
    assert result.ready and result.retry_after is None, result.status
    assert writes(calls) == 2
    prefix = policies.sid_prefix(CLUSTER, NS, "pullers")
    for repo in ("app", "tools/base"):
        statements = policy(ecr, repo)["Statement"]
        assert [s["Sid"].startswith(prefix) for s in statements] == [True]
        assert set(statements[0]["Principal"]["AWS"]) == {"arn:aws:iam::111122223333:root", ROLE}
        assert "Resource" not in statements[0]
    rows = result.status["repositories"]
    assert [(r["name"], r["synced"], r["message"]) for r in rows] == [("app", True, ""), ("tools/base", True, "")]
    assert rows[0]["arn"].endswith(":repository/app")
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", reasons.RECONCILED)
    assert result.status["lastSyncTime"] and result.status["observedGeneration"] == 1


def test_foreign_statement_is_preserved_exactly(factory, ecr, calls, clock):
    # given a policy written by someone else (with whitespace and its own Version)
    ecr.create_repository(repositoryName="app")
    foreign_doc = {"Version": "2008-10-17", "Statement": [FOREIGN]}
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps(foreign_doc, indent=2))
    # when
    result = run(factory, clock, "pullers", spec(["app"]))
    # then the foreign statement and the Version are unchanged, ours follow
    assert result.ready
    doc = policy(ecr, "app")
    assert doc["Version"] == "2008-10-17"
    assert doc["Statement"][0] == FOREIGN
    assert len(doc["Statement"]) == 2


def test_two_resources_on_one_repository_coexist(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    first = run(factory, clock, "pullers", spec(["app"]))
    second = run(factory, clock, "pushers", spec(["app"], [{"principals": [{"organizationId": "o-abcdefghij"}], "access": "Push"}]))
    assert first.ready and second.ready
    # a resync of the first does not touch the second's statement, and writes nothing
    before = writes(calls)
    again = run(factory, clock, "pullers", spec(["app"]), status=first.status)
    assert again.ready and writes(calls) == before
    sids = [s["Sid"] for s in policy(ecr, "app")["Statement"]]
    assert sids[0] == "TerraformManagedPull"
    assert sum(s.startswith(policies.sid_prefix(CLUSTER, NS, "pullers")) for s in sids) == 1
    assert sum(s.startswith(policies.sid_prefix(CLUSTER, NS, "pushers")) for s in sids) == 1


def test_noop_resync_makes_zero_ecr_writes_and_same_status(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    first = run(factory, clock, "pullers", spec(["app"]))
    assert first.ready
    calls.clear()
    clock.advance(600)
    second = run(factory, clock, "pullers", spec(["app"]), status=first.status)
    assert second.ready
    assert writes(calls) == 0, dict(calls)
    assert calls["GetRepositoryPolicy"] == 1
    assert second.status == first.status  # so the handler can skip the status patch
    assert second.events == []


def test_drift_is_remediated_and_recorded(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    first = run(factory, clock, "pullers", spec(["app"]))
    # someone narrows our statement by hand
    doc = policy(ecr, "app")
    doc["Statement"][0]["Action"] = ["ecr:BatchGetImage"]
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps(doc))
    calls.clear()
    result = run(factory, clock, "pullers", spec(["app"]), status=first.status, drift_check=True)
    assert result.ready and writes(calls) == 1
    record = result.status["drift"][-1]
    assert record["object"] == "repositoryPolicy/app" and record["remediated"] is True
    assert record["field"].startswith("Statement[" + policies.sid_prefix(CLUSTER, NS, "pullers"))
    assert result.drift_remediated == {"repositoryPolicy": 1}
    assert result.status["lastDriftCheckTime"]
    assert any(e.reason == reasons.DRIFT_REMEDIATED for e in result.events)


def test_drift_policy_report_reports_without_writing(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    body = spec(["app"], driftPolicy="Report")
    first = run(factory, clock, "pullers", body)
    assert first.ready
    doc = policy(ecr, "app")
    doc["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::111122223333:root"}
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps(doc))
    calls.clear()
    reported = run(factory, clock, "pullers", body, status=first.status)
    assert writes(calls) == 0
    drifted = next(c for c in reported.status["conditions"] if c["type"] == "Drifted")
    assert (drifted["status"], drifted["reason"]) == ("True", reasons.DRIFT_REPORTED)
    assert reported.status["repositories"][0]["synced"] is False
    # the next resync still reports, still does not write, and records the drift once
    clock.advance(60)
    again = run(factory, clock, "pullers", body, status=reported.status)
    assert writes(calls) == 0
    assert again.status == reported.status
    # a new generation applies the spec
    applied = run(factory, clock, "pullers", body, status=again.status, generation=2)
    assert applied.ready and writes(calls) == 1


def test_deletion_removes_only_owned_statements(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    first = run(factory, clock, "pullers", spec(["app"]))
    result = remove(factory, clock, "pullers", spec(["app"]), first.status)
    assert result.retry_after is None and result.outcome == "success"
    assert policy(ecr, "app")["Statement"] == [FOREIGN]


def test_deletion_deletes_policy_when_nothing_else_is_left(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    first = run(factory, clock, "pullers", spec(["app"]))
    calls.clear()
    result = remove(factory, clock, "pullers", spec(["app"]), first.status)
    assert result.retry_after is None
    assert calls["DeleteRepositoryPolicy"] == 1 and calls["SetRepositoryPolicy"] == 0
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName="app")
    # deleting again is a no-op
    calls.clear()
    assert remove(factory, clock, "pullers", spec(["app"]), first.status).retry_after is None
    assert writes(calls) == 0


def test_retain_leaves_statements(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    body = spec(["app"], deletionPolicy="Retain")
    first = run(factory, clock, "pullers", body)
    before = policy(ecr, "app")
    calls.clear()
    result = remove(factory, clock, "pullers", body, first.status)
    assert result.retry_after is None and sum(calls.values()) == 0
    assert policy(ecr, "app") == before


def test_repository_dropped_from_spec_is_cleaned(factory, ecr, calls, clock):
    for repo in ("app", "old"):
        ecr.create_repository(repositoryName=repo)
    first = run(factory, clock, "pullers", spec(["app", "old"]))
    second = run(factory, clock, "pullers", spec(["app"]), status=first.status, generation=2)
    assert second.ready
    assert [r["name"] for r in second.status["repositories"]] == ["app"]
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName="old")


def test_missing_repository_is_retryable(factory, ecr, calls, clock):
    result = run(factory, clock, "pullers", spec(["not-yet"]))
    assert not result.ready and result.retry_after is not None
    assert writes(calls) == 0
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.DEPENDENCY_MISSING
    assert result.status["repositories"] == [
        {"name": "not-yet", "arn": None, "synced": False, "message": ready["message"]}
    ]
    # once the repository exists the next reconcile converges
    ecr.create_repository(repositoryName="not-yet")
    assert run(factory, clock, "pullers", spec(["not-yet"]), status=result.status).ready


def test_invalid_spec_makes_no_aws_call(factory, calls, clock):
    def no_clients(*_):
        raise AssertionError("an invalid spec must not reach AWS")

    body = spec(["app"], [{"principals": [{"accountId": "1234"}], "access": "Pull"}])
    result = cross_account.reconcile(NS, "bad", 3, body, {}, clients_for=no_clients, cluster_id=CLUSTER, now=clock,
                                     tenancy_policy=OPEN)
    assert sum(calls.values()) == 0
    assert result.outcome == "invalid" and result.retry_after is None
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.INVALID_GRANT and "spec.grants[0].principals[0].accountId" in ready["message"]
    assert [e.type for e in result.events] == ["Warning"]


# ----------------------------------------------------------------------------- eventual consistency

INVALID_POLICY_MESSAGE = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'"
)


def reject_first(request, factory, n: int):
    """Make ECR answer "Invalid repository policy provided" to the first n SetRepositoryPolicy calls.

    moto accepts principals that do not exist, so it never gives that answer by itself.
    Preferred: the shared harness's server-side fault layer (``aws_server`` fixture,
    ``fail_first``), which answers over the wire like ECR. Where that fixture is not
    available yet, a CLIENT-SIDE stand-in, for this test only: a botocore 'before-call'
    handler short-circuits the call with ECR's exact error; botocore takes the
    (http_response, parsed) tuple it returns as the response and raises the ClientError
    itself, so the operator's own code path runs. Returns a function giving how many
    calls were rejected so far.
    """
    try:
        server = request.getfixturevalue("aws_server")
    except pytest.FixtureLookupError:
        server = None
    if server is not None:
        server.faults.configure(
            {"fail_first": [{"service": "ecr", "operation": "SetRepositoryPolicy", "count": n,
                             "code": "InvalidParameterException", "message": INVALID_POLICY_MESSAGE}]}
        )
        return lambda: server.faults.injected(kind="failFirst", operation="SetRepositoryPolicy")

    state = {"left": n, "rejected": 0}

    def handler(**_):
        if state["left"] <= 0:
            return None
        state["left"] -= 1
        state["rejected"] += 1
        parsed = {
            "Error": {"Code": "InvalidParameterException", "Message": INVALID_POLICY_MESSAGE},
            "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "0f0e0d0c-0000-1111-2222-333344445555"},
        }
        return _Response(400), parsed

    factory.add_hook("before-call.ecr.SetRepositoryPolicy", handler)
    return lambda: state["rejected"]


class _Response:
    """The little of an HTTP response botocore reads from a before-call short-circuit."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""


def test_principal_rejection_retries_then_converges(request, factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    rejected = reject_first(request, factory, 2)
    body = spec(["app"])
    first = run(factory, clock, "pullers", body)
    assert not first.ready and first.retry_after is not None and first.retry_after <= 30
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.DEPENDENCY_MISSING
    assert ROLE in ready["message"] and "RequestId" not in ready["message"]
    row = first.status["repositories"][0]
    assert row["rejectedSince"] == "2026-01-01T12:00:00Z"
    clock.advance(first.retry_after)
    second = run(factory, clock, "pullers", body, status=first.status)
    assert not second.ready
    assert second.status["repositories"][0]["rejectedSince"] == row["rejectedSince"]  # first seen kept
    clock.advance(second.retry_after)
    third = run(factory, clock, "pullers", body, status=second.status)
    assert third.ready and rejected() == 2
    assert "rejectedSince" not in third.status["repositories"][0]
    assert policies.owned_statements(policy(ecr, "app"), policies.sid_prefix(CLUSTER, NS, "pullers"))


def test_principal_rejection_reported_after_window(request, factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    reject_first(request, factory, 1000)
    body = spec(["app"])
    status: dict = {}
    for _ in range(20):
        result = run(factory, clock, "pullers", body, status=status)
        status = result.status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        if ready["reason"] == reasons.PRINCIPAL_REJECTED:
            break
        clock.advance(result.retry_after)
    else:
        pytest.fail("never reported PrincipalRejected")
    elapsed = (clock() - dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)).total_seconds()
    assert 115 <= elapsed <= 135
    assert ROLE in ready["message"] and "111122223333" not in ready["message"]
    # still retried, slowly, so a role created later is picked up
    assert result.retry_after == cross_account.PRINCIPAL_REJECTED_RETRY
    assert any(e.type == "Warning" and e.reason == reasons.PRINCIPAL_REJECTED for e in result.events)


def test_status_validates_against_the_model(factory, ecr, clock):
    from controller.api.models import CrossAccountRepoAccessStatus

    ecr.create_repository(repositoryName="app")
    result = run(factory, clock, "pullers", spec(["app", "missing"]))
    CrossAccountRepoAccessStatus.model_validate(result.status)
    assert policydoc.size(policy(ecr, "app")) < policies.MAX_POLICY_CHARS


def test_concurrent_resources_on_one_repository_keep_each_others_statements(factory, ecr, clock):
    # given six resources reconciled at the same moment in worker threads (as kopf does)
    from concurrent.futures import ThreadPoolExecutor

    ecr.create_repository(repositoryName="app")
    names = [f"team-{i}" for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: run(factory, clock, n, spec(["app"])), names))
    # then every one of them finds its statement in the policy
    assert all(r.ready for r in results)
    document = policy(ecr, "app")
    for n in names:
        assert len(policies.owned_statements(document, policies.sid_prefix(CLUSTER, NS, n))) == 1, n


def test_delete_with_a_spec_that_became_invalid_uses_status_rows(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="app")
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    first = run(factory, clock, "pullers", spec(["app"]))
    broken = spec(["App!"], [{"principals": [{"accountId": "12"}], "access": "Pull"}])
    result = remove(factory, clock, "pullers", broken, first.status)
    assert result.retry_after is None
    assert policy(ecr, "app")["Statement"] == [FOREIGN]


def test_recording_actor_plans_exactly_the_writes_the_operator_then_makes(factory, ecr, calls, clock):
    from controller.reconcile.loop import RecordingActor

    # given a converged resource on two repositories, then a hand edit and a new spec
    for repo in ("app", "old", "new"):
        ecr.create_repository(repositoryName=repo)
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    first = run(factory, clock, "pullers", spec(["app", "old"]))
    doc = policy(ecr, "app")
    doc["Statement"][1]["Action"] = ["ecr:BatchGetImage"]
    ecr.set_repository_policy(repositoryName="app", policyText=json.dumps(doc))
    body = spec(["app", "new"])
    # when the same reconcile runs with a recording actor
    actor = RecordingActor()
    calls.clear()
    run(factory, clock, "pullers", body, status=first.status, generation=2, actor=actor)
    # then nothing is written, and the plan names each repository's write
    assert writes(calls) == 0, dict(calls)
    assert [(p.kind, p.name, p.action) for p in actor.planned] == [
        ("repositoryPolicy", "repository app", "update"),
        ("repositoryPolicy", "repository new", "create"),
        ("repositoryPolicy", "repository old", "delete"),
    ]
    # and the operator makes exactly those writes
    result = run(factory, clock, "pullers", body, status=first.status, generation=2)
    assert result.ready
    assert (calls["SetRepositoryPolicy"], calls["DeleteRepositoryPolicy"]) == (2, 1)
    assert policy(ecr, "app")["Statement"][0] == FOREIGN
