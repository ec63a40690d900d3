"""A small, stateful stand-in for ECS service deployments (moto has services, not rollouts).

moto keeps one deployment per service, made at CreateService, and UpdateService
with a new task definition changes the service but not its deployments: no new
PRIMARY deployment, no rolloutState progress, no deployment circuit breaker. The
service rollout code (controller/reconcile/services.py) follows exactly those, so
this module extends moto's ECS backend in place (``install``, idempotent), keeping
everything else moto does:

- UpdateService with a task definition other than the one the service runs (and the
  ECS deployment controller) starts a deployment as ECS does: the old PRIMARY becomes
  ACTIVE, a new PRIMARY of the new revision starts IN_PROGRESS with runningCount 0; the
  service's ``taskDefinition`` is the revision's full ARN (AWS answers the ARN even when
  the request named ``family:revision``).
- ``settle(..., "COMPLETED")``: the PRIMARY deployment completes (runningCount =
  desiredCount, rolloutState COMPLETED), the ACTIVE ones drain away.
- ``settle(..., "FAILED")``: the circuit breaker with rollback: the PRIMARY deployment
  becomes ACTIVE with rolloutState FAILED and ECS's reason ("ECS deployment circuit
  breaker: tasks failed to start."), and a new PRIMARY of the previous revision rolls the
  service back (COMPLETED here, at once).

Every deployment member written is one of botocore's ``Deployment`` shape, with its type
and enum values; tests/unit/test_harness_ecs_shapes.py holds it to botocore's model. The
test server exposes ``settle`` at ``POST /_harness/ecs/settle`` (tests/harness/awsserver.py).

What it does not do: run tasks, honour minimumHealthyPercent / maximumPercent, or fail
a deployment on its own: a test decides when a deployment ends and how.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

DEFAULT_ACCOUNT = "123456789012"
OUTCOMES = ("COMPLETED", "FAILED")
CIRCUIT_BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
MSG_NO_DEPLOYMENT = "service {service} has no PRIMARY deployment to settle"
MSG_BAD_OUTCOME = "outcome must be one of {outcomes}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_deployment(service: Any, task_definition: str, *, state: str = "IN_PROGRESS") -> dict[str, Any]:
    """A deployment as DescribeServices answers it (members of botocore's Deployment shape)."""
    deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
    desired = int(service.desired_count or 0)
    running = desired if state == "COMPLETED" else 0
    now = _now()
    return {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "desiredCount": desired,
        "pendingCount": desired - running,
        "runningCount": running,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type or "EC2",
        "rolloutState": state,
        "rolloutStateReason": f"ECS deployment {deployment_id} {'completed' if state == 'COMPLETED' else 'in progress'}.",
    }


def install() -> None:
    """Make moto's UpdateService start a deployment (module docstring); idempotent."""
    from moto.ecs.models import EC2ContainerServiceBackend

    if getattr(EC2ContainerServiceBackend, "_regaccess_deployments", False):
        return
    moto_update = EC2ContainerServiceBackend.update_service

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        cluster = service_properties.get("cluster", "default")
        name = str(service_properties.get("service", "")).split("/")[-1]
        wanted = service_properties.get("task_definition")
        before = self._get_service(cluster, name).task_definition
        service = moto_update(self, service_properties)
        if wanted and (service.deployment_controller or {}).get("type", "ECS") == "ECS":
            arn = self.describe_task_definition(wanted).arn
            service.task_definition = arn
            if arn != before:
                for deployment in service.deployments:
                    if deployment.get("status") == "PRIMARY":
                        deployment["status"] = "ACTIVE"
                        deployment["updatedAt"] = _now()
                service.deployments.insert(0, new_deployment(service, arn))
        return service

    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend._regaccess_deployments = True  # type: ignore[attr-defined]


def settle(region: str, cluster: str, service_name: str, outcome: str, account: str = DEFAULT_ACCOUNT) -> None:
    """End the service's PRIMARY deployment: COMPLETED, or FAILED by the circuit breaker (rolled back)."""
    from moto.ecs.models import ecs_backends

    if outcome not in OUTCOMES:
        raise ValueError(MSG_BAD_OUTCOME.format(outcomes=", ".join(OUTCOMES)))
    service = ecs_backends[account][region]._get_service(cluster, service_name)
    primary = next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        raise ValueError(MSG_NO_DEPLOYMENT.format(service=service_name))
    now = _now()
    if outcome == "COMPLETED":
        desired = int(service.desired_count or 0)
        primary.update(rolloutState="COMPLETED", runningCount=desired, pendingCount=0, updatedAt=now,
                       rolloutStateReason=f"ECS deployment {primary['id']} completed.")
        service.deployments = [primary]
        service.running_count, service.pending_count = desired, 0
        return
    previous = next((d for d in service.deployments if d.get("status") == "ACTIVE"), None)
    primary.update(status="ACTIVE", rolloutState="FAILED", rolloutStateReason=CIRCUIT_BREAKER_REASON,
                   failedTasks=int(primary.get("failedTasks") or 0) + 1, runningCount=0, updatedAt=now)
    if previous is not None:
        # Rollback: ECS deploys the last revision that completed as a new PRIMARY deployment.
        back = new_deployment(service, previous["taskDefinition"], state="COMPLETED")
        service.task_definition = previous["taskDefinition"]
        service.deployments = [back, primary]
