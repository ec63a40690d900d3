"""ECS service rollouts (controller.reconcile.services) through the whole reconcile, against moto.

Given a task definition family ``web`` with one revision and an ECS service running it,
when a RegistryCredential lists the family and the service, then the operator registers
``web:2`` and calls UpdateService with exactly that revision, once; follows the deployment
(the deployments stand-in, tests/harness/ecs_standin.py) to COMPLETED; sends nothing when no
revision is needed; after a crash right after the register it updates exactly once; a
circuit-breaker failure reads False with ECS's reason and is not fought; a service on
another family is reported and not touched. Calls are counted on the wire (the server's
call record).
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.api import reasons
from controller.reconcile import registry_credential as rc
from controller.reconcile.conditions import get_condition
from tests.aws import wired_world as ww
from tests.conftest import REGION
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

CLUSTER_NAME, SERVICE = "apps", "team-web"


class Crash(Exception):
    """Stands for kill -9: raised from record_now, right after the revision was recorded."""


def spec(**extra: Any) -> dict[str, Any]:
    return {"source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": ["exec-a"]},
            "secret": {"forceDeleteWithoutRecovery": True},
            "consumers": {"ecsTaskDefinitions": [{"family": "web"}],
                          "ecsServices": [{"cluster": CLUSTER_NAME, "service": SERVICE}]}, **extra}


def given_service(family: str = "web") -> str:
    role = world.make_role(ww.raw, "exec-a")
    first = world.register_family(ww.raw, family, role)
    if family != "web":
        world.register_family(ww.raw, "web", role)
    ecs = ww.raw("ecs")
    ecs.create_cluster(clusterName=CLUSTER_NAME)
    ecs.create_service(cluster=CLUSTER_NAME, serviceName=SERVICE, taskDefinition=first, desiredCount=2)
    return first


def service_now() -> dict[str, Any]:
    return ww.raw("ecs").describe_services(cluster=CLUSTER_NAME, services=[SERVICE])["services"][0]


def run(factory, status: dict[str, Any], *, source=ww.SOURCE, generation: int = 1, record_now=None,
        the_spec: dict[str, Any] | None = None, tenancy_policy=OPEN) -> rc.ReconcileResult:
    request = rc.Request(namespace=ww.NS, name=ww.NAME, generation=generation, spec=the_spec or spec(),
                         status=status, source_secret=source, cluster_id=ww.CLUSTER)
    return rc.reconcile(request, ww.clients_for(factory), record_now=record_now, tenancy_policy=tenancy_policy)


def updates(aws_server, mark: int) -> list[str]:
    return [c.operation for c in aws_server.calls.done("ecs", "UpdateService", since=mark)]


def rolled_out(status: dict[str, Any]) -> dict[str, Any]:
    return get_condition(status["conditions"], reasons.SERVICES_ROLLED_OUT) or {}


def test_a_new_revision_is_rolled_once_and_followed_to_completed(factory, aws_server):
    given_service()
    mark = aws_server.calls.mark()
    first = run(factory, {})
    assert first.ready, first.status
    latest = world.latest_task_definition(ww.raw, "web")
    assert latest["revision"] == 2
    assert updates(aws_server, mark) == ["UpdateService"]
    assert service_now()["taskDefinition"] == latest["taskDefinitionArn"]
    row = first.status["services"][0]
    assert (row["taskDefinition"], row["rolloutState"], row["reason"]) == (
        latest["taskDefinitionArn"], "IN_PROGRESS", reasons.ROLLOUT_IN_PROGRESS)
    assert rolled_out(first.status)["status"] == "False"
    assert first.status["nextRolloutCheckTime"]

    mark = aws_server.calls.mark()
    again = run(factory, first.status)
    assert updates(aws_server, mark) == []
    assert again.status["services"][0]["rolloutState"] == "IN_PROGRESS"

    aws_server.settle_deployment(REGION, CLUSTER_NAME, SERVICE, "COMPLETED")
    done = run(factory, again.status)
    assert updates(aws_server, mark) == []
    row = done.status["services"][0]
    assert (row["rolloutState"], row["runningCount"], row["reason"]) == ("COMPLETED", 2, reasons.ROLLED_OUT)
    assert (rolled_out(done.status)["status"], rolled_out(done.status)["reason"]) == ("True", reasons.ROLLED_OUT)
    assert "nextRolloutCheckTime" not in done.status


def test_no_revision_needed_no_update(factory, aws_server):
    given_service()
    status = run(factory, {}).status
    aws_server.settle_deployment(REGION, CLUSTER_NAME, SERVICE, "COMPLETED")
    status = run(factory, status).status
    # A password rotation: the secret's value changes, its ARN does not, so no revision and no update.
    rotated = {**ww.SOURCE, "data": {"username": ww.b64("robot"), "password": ww.b64("pw-2")},
               "metadata": {**ww.SOURCE["metadata"], "resourceVersion": "8"}}
    mark = aws_server.calls.mark()
    result = run(factory, status, source=rotated)
    assert result.ready, result.status
    assert aws_server.calls.done("secretsmanager", "PutSecretValue", since=mark)
    assert aws_server.calls.done("ecs", "RegisterTaskDefinition", since=mark) == []
    assert updates(aws_server, mark) == []
    assert world.latest_task_definition(ww.raw, "web")["revision"] == 2


def test_crash_between_register_and_update_updates_exactly_once(factory, aws_server):
    given_service()
    recorded: dict[str, Any] = {}

    def record_then_die(partial: dict[str, Any]) -> None:
        recorded.setdefault("managed", []).extend(partial.get("managed") or [])
        raise Crash()

    mark = aws_server.calls.mark()
    with pytest.raises(Crash):
        run(factory, {}, record_now=record_then_die)
    assert [c.operation for c in aws_server.calls.done("ecs", "RegisterTaskDefinition", since=mark)] == [
        "RegisterTaskDefinition"]
    assert updates(aws_server, mark) == []
    # The restarted operator starts from what the crashed one had recorded.
    result = run(factory, recorded)
    latest = world.latest_task_definition(ww.raw, "web")
    assert latest["revision"] == 2  # never registered twice
    assert updates(aws_server, mark) == ["UpdateService"]
    assert service_now()["taskDefinition"] == latest["taskDefinitionArn"]
    run(factory, result.status)
    assert updates(aws_server, mark) == ["UpdateService"]


def test_circuit_breaker_failure_reads_false_with_the_reason_and_is_not_fought(factory, aws_server):
    first = given_service()
    status = run(factory, {}).status
    aws_server.settle_deployment(REGION, CLUSTER_NAME, SERVICE, "FAILED")
    mark = aws_server.calls.mark()
    failed = run(factory, status)
    assert service_now()["taskDefinition"] == first  # ECS rolled back
    condition = rolled_out(failed.status)
    assert (condition["status"], condition["reason"]) == ("False", reasons.ROLLOUT_FAILED)
    assert "circuit breaker" in condition["message"]
    assert failed.status["services"][0]["rolloutState"] == "FAILED"
    assert any(e.reason == reasons.ROLLOUT_FAILED for e in failed.events)
    again = run(factory, failed.status)
    assert updates(aws_server, mark) == []
    assert rolled_out(again.status)["reason"] == reasons.ROLLOUT_FAILED
    assert again.ready  # the AWS objects are in place; the rollout is its own condition


def test_a_service_on_another_family_is_reported_not_touched(factory, aws_server):
    given_service(family="api")
    mark = aws_server.calls.mark()
    result = run(factory, {})
    assert updates(aws_server, mark) == []
    row = result.status["services"][0]
    assert row["reason"] == reasons.SERVICE_IN_OTHER_FAMILY
    assert rolled_out(result.status)["reason"] == reasons.SERVICE_IN_OTHER_FAMILY
    assert service_now()["taskDefinition"].endswith("task-definition/api:1")


def test_a_missing_service_is_reported(factory, aws_server):
    given_service()
    the_spec = spec()
    the_spec["consumers"]["ecsServices"] = [{"cluster": CLUSTER_NAME, "service": "team-nope"}]
    mark = aws_server.calls.mark()
    result = run(factory, {}, the_spec=the_spec)
    assert updates(aws_server, mark) == []
    assert result.status["services"][0]["reason"] == reasons.SERVICE_NOT_FOUND


def test_without_services_status_has_no_service_fields(factory, aws_server):
    given_service()
    the_spec = spec()
    del the_spec["consumers"]["ecsServices"]
    mark = aws_server.calls.mark()
    result = run(factory, {}, the_spec=the_spec)
    assert aws_server.calls.count("ecs", "DescribeServices", since=mark) == 0
    assert "services" not in result.status and rolled_out(result.status) == {}


def test_a_service_outside_the_namespace_is_not_permitted_and_nothing_is_called(factory, aws_server):
    given_service()
    the_spec = spec()
    the_spec["consumers"]["ecsServices"] = [{"cluster": CLUSTER_NAME, "service": "payments-web"}]
    mark = aws_server.calls.mark()
    # The shipped default (no TenancyPolicy): services are */<namespace>-*.
    from controller import tenancy

    result = run(factory, {}, the_spec=the_spec, tenancy_policy=tenancy.SHIPPED)
    assert aws_server.calls.list(since=mark) == []
    ready = get_condition(result.status["conditions"], reasons.READY)
    assert (ready["status"], ready["reason"]) == ("False", reasons.NOT_PERMITTED)
    assert "ecsServices" in ready["message"]


def test_plan_shows_the_update_service_it_would_make_and_makes_none(aws_server):
    from controller import plan
    from tests.aws import test_plan_aws as tp

    given_service()
    doc = tp.rc_manifest(grants={"executionRoles": ["exec-a"]},
                         consumers=spec()["consumers"])
    mark = aws_server.calls.mark()
    [obj] = tp.run_plan(plan.read_only_factory(), doc, tp.source_secret())
    assert aws_server.calls.writes(since=mark) == []
    assert ("update", "task definition web") in tp.actions([obj])
    assert ("update", f"ECS service {CLUSTER_NAME}/{SERVICE}") in tp.actions([obj])
    rollout = next(c for c in obj.changes if c.kind == "ecsService")
    assert rollout.predicted["taskDefinition"].startswith("<ARN of task definition web:2")


def test_a_lost_update_answer_is_observed_not_repeated(factory, aws_server):
    from tests.harness.faults import FaultConfig

    given_service()
    aws_server.faults.configure(FaultConfig(max_lost_per_operation=1, scoped=[
        {"service": "ecs", "operation": "UpdateService", "rates": {"lost": 1.0}}]))
    mark = aws_server.calls.mark()
    try:
        first = run(factory, {})
    finally:
        aws_server.faults.clear()
    assert first.retry_after is not None  # the answer was lost: retried, never blindly resent
    latest = world.latest_task_definition(ww.raw, "web")
    assert service_now()["taskDefinition"] == latest["taskDefinitionArn"]  # ECS did it anyway
    again = run(factory, first.status)
    assert updates(aws_server, mark) == ["UpdateService"]
    assert again.status["services"][0]["reason"] == reasons.ROLLOUT_IN_PROGRESS


def test_a_service_listed_twice_is_updated_once_and_described_once(factory, aws_server):
    given_service()
    the_spec = spec()
    arn = f"arn:aws:ecs:{REGION}:123456789012:cluster/{CLUSTER_NAME}"
    the_spec["consumers"]["ecsServices"].append({"cluster": arn, "service": SERVICE})
    mark = aws_server.calls.mark()
    result = run(factory, {}, the_spec=the_spec)
    assert updates(aws_server, mark) == ["UpdateService"]
    assert len(result.status["services"]) == 1
    assert aws_server.calls.count("ecs", "DescribeServices", since=mark) == 1


def test_under_report_a_drift_check_reports_a_service_behind_and_does_not_roll_it(factory, aws_server):
    first = given_service()
    the_spec = spec(driftPolicy="Report")
    status = run(factory, {}, the_spec=the_spec).status
    aws_server.settle_deployment(REGION, CLUSTER_NAME, SERVICE, "COMPLETED")
    ww.raw("ecs").update_service(cluster=CLUSTER_NAME, service=SERVICE, taskDefinition=first)  # a person
    # The person's move, with no record of ours for it in status (as after an older operator version).
    status = {**status, "services": []}
    mark = aws_server.calls.mark()
    result = run(factory, status, the_spec=the_spec)
    assert updates(aws_server, mark) == []
    assert result.status["services"][0]["reason"] == reasons.DRIFT_REPORTED


def test_a_drift_check_describes_services_ten_a_call_and_writes_nothing(factory, aws_server):
    first = given_service()
    names = [SERVICE] + [f"team-web-{i}" for i in range(11)]
    for name in names[1:]:
        ww.raw("ecs").create_service(cluster=CLUSTER_NAME, serviceName=name, taskDefinition=first, desiredCount=1)
    the_spec = spec()
    the_spec["consumers"]["ecsServices"] = [{"cluster": CLUSTER_NAME, "service": n} for n in names]
    status = run(factory, {}, the_spec=the_spec).status
    for name in names:
        aws_server.settle_deployment(REGION, CLUSTER_NAME, name, "COMPLETED")
    status = run(factory, status, the_spec=the_spec).status
    assert {r["reason"] for r in status["services"]} == {reasons.ROLLED_OUT}
    mark = aws_server.calls.mark()
    request = rc.Request(namespace=ww.NS, name=ww.NAME, generation=1, spec=the_spec, status=status,
                         source_secret=ww.SOURCE, cluster_id=ww.CLUSTER, drift_check=True)
    result = rc.reconcile(request, ww.clients_for(factory), tenancy_policy=OPEN)
    assert result.ready
    assert aws_server.calls.count("ecs", "DescribeServices", since=mark) == 2  # 12 services, 10 a call
    assert aws_server.calls.writes(since=mark) == []
    assert "nextRolloutCheckTime" not in result.status  # every rollout ended: no polling
