"""ECS services: the thin adapter behind service rollouts (DescribeServices / UpdateService).

Called by ``controller.reconcile.services``. Facts only: what a service runs (its
task definition, deployment controller, deployments with their ``rolloutState``)
and one write, ``update``, which sets the service's task definition to one
revision. Which revision, and whether at all, is decided in
``controller.reconcile.services`` (pure).

``update`` always names the revision (``taskDefinition``) and never sends
``forceNewDeployment``: a forced deployment of whatever the service runs would
restart tasks of another family or a revision a person chose. One call, never
retried here: a lost answer is observed again on the next pass, which sees the
service already on the revision and does not send it twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from controller.aws.protocol import Action, Difference, Observation, Owner, Written

SERVICE = "ecs"
TASK_DEFINITION_FIELD = "taskDefinition"
NEVER_CREATED = "an ECS service is never created or adopted by the operator: it belongs to its user"
NEVER_DELETED = "an ECS service is never deleted by the operator"
KIND = "ecsService"
ROLLING_UPDATE = "ECS"  # deploymentController.type that UpdateService can roll
PRIMARY = "PRIMARY"
IN_PROGRESS, COMPLETED, FAILED = "IN_PROGRESS", "COMPLETED", "FAILED"


@dataclass(frozen=True)
class Deployment:
    id: str
    status: str                 # PRIMARY | ACTIVE | INACTIVE
    task_definition: str
    rollout_state: str | None   # IN_PROGRESS | COMPLETED | FAILED (absent for old services)
    rollout_state_reason: str
    running_count: int
    desired_count: int
    created_at: float | None    # epoch seconds


@dataclass(frozen=True)
class Service:
    """One DescribeServices answer for one service; ``found`` False: missing or not ACTIVE."""

    cluster: str
    name: str
    found: bool
    arn: str | None = None
    task_definition: str | None = None
    controller: str = ROLLING_UPDATE
    running_count: int = 0
    deployments: tuple[Deployment, ...] = ()

    def deployment_of(self, task_definition: str) -> Deployment | None:
        """The newest deployment of ``task_definition`` (PRIMARY first), or None."""
        found = [d for d in self.deployments if d.task_definition == task_definition]
        found.sort(key=lambda d: (d.status != PRIMARY, -(d.created_at or 0.0)))
        return found[0] if found else None


def family_of(task_definition_arn: str | None) -> str | None:
    """Pure: ``arn:...:task-definition/web:3`` (or ``web:3``) -> ``web``."""
    if not task_definition_arn:
        return None
    tail = task_definition_arn.rsplit("/", 1)[-1]
    return tail.rsplit(":", 1)[0] if ":" in tail else tail


def cluster_name(cluster: str) -> str:
    """Pure: a cluster ARN or name -> the name (tenancy rules and messages name clusters so)."""
    return cluster.rsplit("/", 1)[-1] if cluster.startswith("arn:") else cluster


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _deployment(raw: dict[str, Any]) -> Deployment:
    return Deployment(
        id=str(raw.get("id") or ""), status=str(raw.get("status") or ""),
        task_definition=str(raw.get("taskDefinition") or ""), rollout_state=raw.get("rolloutState"),
        rollout_state_reason=str(raw.get("rolloutStateReason") or ""),
        running_count=int(raw.get("runningCount") or 0), desired_count=int(raw.get("desiredCount") or 0),
        created_at=_epoch(raw.get("createdAt")),
    )


def service_facts(cluster: str, name: str, raw: dict[str, Any] | None) -> Service:
    """Pure: one member of DescribeServices' ``services`` (None: listed under failures)."""
    if raw is None or raw.get("status") not in (None, "ACTIVE"):
        return Service(cluster, name, found=False, arn=(raw or {}).get("serviceArn"))
    return Service(
        cluster=cluster, name=name, found=True, arn=raw.get("serviceArn"), task_definition=raw.get("taskDefinition"),
        controller=str((raw.get("deploymentController") or {}).get("type") or ROLLING_UPDATE),
        running_count=int(raw.get("runningCount") or 0),
        deployments=tuple(_deployment(d) for d in raw.get("deployments") or []),
    )


# DescribeServices takes at most 10 services of one cluster per call.
MAX_DESCRIBE = 10


def describe(client: Any, cluster: str, name: str) -> Service:
    """DescribeServices for one service (one read)."""
    return describe_many(client, cluster, [name])[name]


def describe_many(client: Any, cluster: str, names: list[str]) -> dict[str, Service]:
    """DescribeServices for services of one cluster, ten per call (one read per ten)."""
    found: dict[str, Service] = {}
    unique = list(dict.fromkeys(names))
    for start in range(0, len(unique), MAX_DESCRIBE):
        chunk = unique[start:start + MAX_DESCRIBE]
        answer = client.describe_services(cluster=cluster, services=chunk)
        by_name = {s.get("serviceName"): s for s in answer.get("services") or []}
        for name in chunk:
            found[name] = service_facts(cluster, name, by_name.get(name))
    return found


def update(client: Any, cluster: str, name: str, task_definition: str) -> Service:
    """UpdateService to ``task_definition`` (one write); the answer's facts."""
    answer = client.update_service(cluster=cluster, service=name, taskDefinition=task_definition)
    return service_facts(cluster, name, answer.get("service"))


@dataclass(frozen=True)
class Rollout:
    """What the service step asks for: this service on this revision (the adapter's desired)."""

    cluster: str
    service: str
    task_definition: str


class Rollouts:
    """The write as a ``controller.aws.protocol.Kind``, so it goes through the loop's actors:
    the AWS actor sends UpdateService, ``regaccess plan``'s recording actor records it and
    asks ``predict``. Services are never created or deleted by the operator."""

    kind = KIND
    service = SERVICE

    def label(self, desired: Rollout) -> str:
        return f"ECS service {cluster_name(desired.cluster)}/{desired.service}"

    def observe(self, client: Any, desired: Rollout) -> Observation:
        found = describe(client, desired.cluster, desired.service)
        differences = () if found.task_definition == desired.task_definition else (
            Difference(TASK_DEFINITION_FIELD, found.task_definition, desired.task_definition),)
        return Observation(exists=found.found, owner=Owner.OURS, differences=differences, observed=found)

    def update(self, client: Any, desired: Rollout, observation: Observation) -> Written:
        answer = update(client, desired.cluster, desired.service, desired.task_definition)
        return Written(1, {"service": answer})

    def predict(self, desired: Rollout, observation: Observation, action: Action) -> Written:
        return Written(1, {"taskDefinition": desired.task_definition})

    def create(self, client: Any, desired: Rollout, observation: Observation) -> Written:
        raise NotImplementedError(NEVER_CREATED)

    adopt = create

    def delete(self, client: Any, desired: Rollout, observation: Observation) -> Written:
        raise NotImplementedError(NEVER_DELETED)


ROLLOUTS = Rollouts()
