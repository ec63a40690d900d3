"""controller.reconcile.services' pure decisions: which ECS service is updated, followed or reported.

Table-tested over the facts a DescribeServices answer gives (controller.aws.ecs_services.Service),
the family's revision that is ours, and the service's row of the last status.
"""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.aws import ecs_services as ecs
from controller.reconcile import services
from controller.reconcile.conditions import get_condition, progress_conditions

TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/{}"
R1, R2, R3 = TD.format("web:1"), TD.format("web:2"), TD.format("web:3")
OTHER = TD.format("api:4")
OURS = {"web": R2}


def deployment(td: str, state: str | None = "IN_PROGRESS", status: str = "PRIMARY", reason: str = "",
               running: int = 0, created: float | None = 100.0) -> ecs.Deployment:
    return ecs.Deployment("ecs-svc/1", status, td, state, reason, running, 2, created)


def service(td: str | None, *deployments: ecs.Deployment, found: bool = True,
            controller: str = "ECS") -> ecs.Service:
    return ecs.Service("apps", "web-svc", found, "arn:svc", td, controller, 2, tuple(deployments))


def decide(svc: ecs.Service, previous: dict | None = None, ours: dict | None = None) -> services.Verdict:
    return services.decide(svc, listed_families={"web"}, ours=OURS if ours is None else ours, previous=previous)


CASES = [
    # (name, service, previous row, ours, expected action, reason)
    ("old revision, no record: update", service(R1, deployment(R1, "COMPLETED")), None, None,
     services.UPDATE, reasons.ROLLOUT_IN_PROGRESS),
    ("recorded an older revision: a new one is rolled", service(R1), {"taskDefinition": R1}, None,
     services.UPDATE, reasons.ROLLOUT_IN_PROGRESS),
    ("runs ours, in progress: follow", service(R2, deployment(R2)), None, None,
     services.FOLLOW, reasons.ROLLOUT_IN_PROGRESS),
    ("runs ours, completed", service(R2, deployment(R2, "COMPLETED", running=2)), None, None,
     services.FOLLOW, reasons.ROLLED_OUT),
    ("runs ours, no deployment record: completed", service(R2), None, None,
     services.FOLLOW, reasons.ROLLED_OUT),
    ("runs ours, deployment failed without rollback", service(R2, deployment(R2, "FAILED", reason="cb")), None,
     None, services.REPORT, reasons.ROLLOUT_FAILED),
    ("rolled back by the circuit breaker", service(R1, deployment(R1, "COMPLETED"),
                                                   deployment(R2, "FAILED", "ACTIVE", "cb")),
     {"taskDefinition": R2}, None, services.REPORT, reasons.ROLLOUT_FAILED),
    ("failed deployment drained away: stays failed", service(R1), {"taskDefinition": R2, "rolloutState": "FAILED",
                                                                   "message": "cb"}, None,
     services.REPORT, reasons.ROLLOUT_FAILED),
    ("rolled once, a person moved it: not again", service(R1), {"taskDefinition": R2, "rolloutState": "COMPLETED"},
     None, services.REPORT, reasons.SERVICE_MOVED_ON),
    ("another family: never moved", service(OTHER), None, None, services.REPORT, reasons.SERVICE_IN_OTHER_FAMILY),
    ("family moved on by a person: not ours", service(R1), None, {}, services.REPORT, reasons.REVISION_NOT_OURS),
    ("CodeDeploy: not touched", service(R1, controller="CODE_DEPLOY"), None, None,
     services.REPORT, reasons.SERVICE_NOT_ROLLING_UPDATE),
    ("missing", service(None, found=False), None, None, services.REPORT, reasons.SERVICE_NOT_FOUND),
]


@pytest.mark.parametrize("name,svc,previous,ours,action,reason", CASES, ids=[c[0] for c in CASES])
def test_decide(name, svc, previous, ours, action, reason):
    verdict = decide(svc, previous, ours)
    assert (verdict.action, verdict.reason) == (action, reason)
    if action == services.UPDATE:
        assert verdict.target == R2  # always the family's revision that is ours, never another


def test_update_targets_our_revision_of_the_services_own_family_only():
    verdict = services.decide(service(R1), listed_families={"web", "api"}, ours={"web": R3, "api": OTHER},
                              previous=None)
    assert verdict.target == R3


def test_the_circuit_breaker_reason_is_in_the_message():
    verdict = decide(service(R1, deployment(R2, "FAILED", "ACTIVE", "ECS deployment circuit breaker: tasks failed")),
                     {"taskDefinition": R2})
    assert "circuit breaker" in verdict.message


@pytest.mark.parametrize("age,delay", [(0, 5.0), (4, 5.0), (30, 15.0), (100, 50.0), (1000, 60.0)])
def test_poll_backoff_grows_with_the_deployments_age(age, delay):
    assert services.poll_delay(1000.0 + age, 1000.0) == delay


def test_family_of():
    assert ecs.family_of(R2) == "web"
    assert ecs.family_of("web:2") == "web"
    assert ecs.family_of(None) is None
    assert ecs.cluster_name("arn:aws:ecs:us-east-1:123456789012:cluster/apps") == "apps"


@pytest.mark.parametrize("rows,expected", [
    ([{"reason": reasons.ROLLED_OUT}], ("True", reasons.ROLLED_OUT)),
    ([{"reason": reasons.ROLLED_OUT}, {"reason": reasons.ROLLOUT_IN_PROGRESS, "message": "m"}],
     ("False", reasons.ROLLOUT_IN_PROGRESS)),
    ([{"reason": reasons.ROLLOUT_IN_PROGRESS}, {"reason": reasons.ROLLOUT_FAILED, "message": "cb"}],
     ("False", reasons.ROLLOUT_FAILED)),
    ([{"reason": reasons.SERVICE_IN_OTHER_FAMILY, "message": "m"}], ("False", reasons.SERVICE_IN_OTHER_FAMILY)),
])
def test_condition(rows, expected):
    status = {"services": rows, "conditions": []}
    services.set_rolled_out(status, 1, "2026-01-01T00:00:00Z")
    condition = get_condition(status["conditions"], reasons.SERVICES_ROLLED_OUT)
    assert (condition["status"], condition["reason"]) == expected


def test_no_services_no_condition():
    status = {"conditions": [{"type": reasons.SERVICES_ROLLED_OUT, "status": "True"}]}
    services.set_rolled_out(status, 1, "2026-01-01T00:00:00Z")
    assert status["conditions"] == []


def test_a_rollout_in_progress_reads_reconciling_while_ready():
    conditions = [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": ""},
                  {"type": reasons.SERVICES_ROLLED_OUT, "status": "False", "reason": reasons.ROLLOUT_IN_PROGRESS,
                   "message": "2 of 3"}]
    out = progress_conditions(conditions, retry_pending=False, generation=1)
    reconciling = get_condition(out, reasons.RECONCILING_TYPE)
    assert (reconciling["status"], reconciling["reason"]) == ("True", reasons.ROLLOUT_IN_PROGRESS)
    conditions[1].update(status="True", reason=reasons.ROLLED_OUT)
    assert get_condition(progress_conditions(conditions, retry_pending=False, generation=1),
                         reasons.RECONCILING_TYPE) is None


def test_the_scheduler_looks_again_at_a_rollout_before_the_drift_interval():
    from controller.scheduler import due_time, parse_time

    status = {"lastDriftCheckTime": "2026-01-01T00:00:00Z"}
    drift = due_time(status, "uid", 300.0)
    soon = due_time({**status, "nextRolloutCheckTime": "2026-01-01T00:00:05Z"}, "uid", 300.0)
    assert soon == parse_time("2026-01-01T00:00:05Z") and soon < drift
    # A rollout check later than the drift check does not delay the drift check.
    assert due_time({**status, "nextRolloutCheckTime": "2026-01-02T00:00:00Z"}, "uid", 300.0) == drift
