"""RegistryCredential step: roll listed ECS services to the operator's revision (opt-in).

Runs after the task definition step (``controller.reconcile.definitions``), which
leaves in ``ctx.revisions`` the latest ACTIVE revision of every listed family that
references the secret (the one it registered this pass, or found). For every
``spec.consumers.ecsServices`` entry this step describes the service
(``controller.aws.ecs_services``) and ``decide()`` (pure) says what to do:

- the service runs a family not listed under ``ecsTaskDefinitions``: reported
  (``ServiceInOtherFamily``), never moved to another family;
- its family's latest ACTIVE revision is not ours (``ctx.revisions`` has none: a
  person or a pipeline moved the family on, or drift is only reported): reported
  (``RevisionNotOurs``), not fought;
- CODE_DEPLOY / EXTERNAL deployment controller: reported (``ServiceNotRollingUpdate``);
- it runs our revision: follow that deployment (rolloutState, runningCount);
- a deployment of our revision FAILED (the circuit breaker rolled it back): reported
  (``RolloutFailed`` with ECS's reason), not updated again;
- status says we rolled it to this revision before and it now runs another one: a
  person moved it (``ServiceMovedOn``), not updated again;
- otherwise: UpdateService with our revision, once.

Crash safety comes from facts, not memory: the revision record (status.managed,
written the moment the revision is registered) and the service's own task
definition. A kill -9 between register and update leaves the family's latest
revision ours and the service on the old one, so the next pass updates it; a kill
-9 after the update finds the service on our revision and only follows it.

While any rollout is IN_PROGRESS, ``status.nextRolloutCheckTime`` asks the one
scheduler (``controller.scheduler.due_time``) for another pass, with backoff
(``poll_delay``); it is removed when every rollout has ended.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from controller.api import reasons
from controller.aws import ecs_services as ecs
from controller.aws.protocol import Action, Difference, Observation, Owner
from controller.reconcile import loop
from controller.reconcile.conditions import set_condition
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome

KIND = ecs.KIND
UPDATE, FOLLOW, REPORT = "update", "follow", "report"
EVENT_SERVICE_UPDATED = "ServiceUpdated"

# Rollout polling: the first look soon after the update, then half the deployment's age,
# never more often than MIN nor less often than MAX (ECS rollouts take minutes).
POLL_MIN_SECONDS = 5.0
POLL_MAX_SECONDS = 60.0

MSG_UPDATED = "updated ECS service {service} to task definition {revision}"
MSG_OTHER_FAMILY = ("ECS service {service} runs task definition family {family}, which "
                    "spec.consumers.ecsTaskDefinitions does not list; not touched")
MSG_NOT_OURS = ("ECS service {service}: the latest ACTIVE revision of family {family} does not reference "
                "the registry credential; not touched")
MSG_MOVED_ON = ("ECS service {service} was rolled to {revision} and now runs {current}; someone moved it "
                "on, so it is not updated again for this revision")
MSG_NOT_ROLLING = ("ECS service {service} uses the {controller} deployment controller; UpdateService cannot "
                   "roll it, not touched")
MSG_NOT_FOUND = "ECS service {service} not found (no ACTIVE service of that name)"
MSG_FAILED = "ECS service {service}: deployment of {revision} failed: {why}"
MSG_IN_PROGRESS = "ECS service {service}: deployment of {revision} in progress ({running}/{desired} running)"
MSG_REPORT_ONLY = ("ECS service {service} does not run {revision}; not rolled because driftPolicy is Report "
                   "and nothing in the spec or the source changed")
MSG_STARTED = "ECS service {service}: deployment of {revision} started"
MSG_ROLLED_OUT = "every listed ECS service runs the operator's revision"


@dataclass(frozen=True)
class Verdict:
    action: str                 # update | follow | report
    reason: str                 # status.services[].reason
    message: str = ""
    target: str | None = None   # the revision to update to, or the one followed/recorded
    rollout_state: str | None = None
    running_count: int | None = None


def label(service: ecs.Service) -> str:
    return f"{ecs.cluster_name(service.cluster)}/{service.name}"


def decide(service: ecs.Service, *, listed_families: set[str], ours: dict[str, str],
           previous: dict[str, Any] | None) -> Verdict:
    """Pure: what to do with one listed service (module docstring).

    ``ours``: family -> the latest ACTIVE revision ARN that references the secret;
    ``previous``: this service's row of the last status (its ``taskDefinition`` is the
    revision we rolled it to, or found it on)."""
    name = label(service)
    previous = previous or {}
    recorded = previous.get("taskDefinition")
    if not service.found:
        return Verdict(REPORT, reasons.SERVICE_NOT_FOUND, MSG_NOT_FOUND.format(service=name), recorded)
    if service.controller != ecs.ROLLING_UPDATE:
        return Verdict(REPORT, reasons.SERVICE_NOT_ROLLING_UPDATE,
                       MSG_NOT_ROLLING.format(service=name, controller=service.controller), recorded)
    family = ecs.family_of(service.task_definition)
    if family not in listed_families:
        return Verdict(REPORT, reasons.SERVICE_IN_OTHER_FAMILY,
                       MSG_OTHER_FAMILY.format(service=name, family=family), recorded)
    target = ours.get(family)
    if target is None:
        return Verdict(REPORT, reasons.REVISION_NOT_OURS, MSG_NOT_OURS.format(service=name, family=family), recorded)
    deployment = service.deployment_of(target)
    revision = target.rsplit("/", 1)[-1]
    if deployment is not None and deployment.rollout_state == ecs.FAILED:
        return Verdict(REPORT, reasons.ROLLOUT_FAILED, MSG_FAILED.format(
            service=name, revision=revision, why=deployment.rollout_state_reason or "circuit breaker"),
            target, ecs.FAILED, deployment.running_count)
    if service.task_definition == target:
        return follow(service, target, deployment)
    if recorded == target:
        if previous.get("rolloutState") == ecs.FAILED:
            # The failed deployment has drained away since; it stays failed for this revision.
            return Verdict(REPORT, reasons.ROLLOUT_FAILED, previous.get("message") or "", target, ecs.FAILED,
                           previous.get("runningCount"))
        return Verdict(REPORT, reasons.SERVICE_MOVED_ON, MSG_MOVED_ON.format(
            service=name, revision=revision, current=str(service.task_definition).rsplit("/", 1)[-1]), target)
    return Verdict(UPDATE, reasons.ROLLOUT_IN_PROGRESS, MSG_UPDATED.format(service=name, revision=revision),
                   target, ecs.IN_PROGRESS, 0)


def follow(service: ecs.Service, target: str, deployment: ecs.Deployment | None) -> Verdict:
    """Pure: the rollout state of a service that runs our revision."""
    name, revision = label(service), target.rsplit("/", 1)[-1]
    if deployment is None or deployment.rollout_state in (None, ecs.COMPLETED):
        # No deployment record of it (ECS keeps only the live ones; an old service has no
        # rolloutState): the service runs it, which is what a completed rollout means.
        running = deployment.running_count if deployment is not None else service.running_count
        return Verdict(FOLLOW, reasons.ROLLED_OUT, "", target, ecs.COMPLETED, running)
    if deployment.rollout_state == ecs.FAILED:
        return Verdict(FOLLOW, reasons.ROLLOUT_FAILED, MSG_FAILED.format(
            service=name, revision=revision, why=deployment.rollout_state_reason), target, ecs.FAILED,
            deployment.running_count)
    return Verdict(FOLLOW, reasons.ROLLOUT_IN_PROGRESS, MSG_IN_PROGRESS.format(
        service=name, revision=revision, running=deployment.running_count, desired=deployment.desired_count),
        target, ecs.IN_PROGRESS, deployment.running_count)


def poll_delay(now: float, started: float | None) -> float:
    """Pure: seconds until the next look at a rollout in progress (backoff with its age)."""
    age = max(0.0, now - started) if started is not None else 0.0
    return min(POLL_MAX_SECONDS, max(POLL_MIN_SECONDS, age / 2))


def rolled_out_condition(rows: list[dict[str, Any]]) -> tuple[bool, str, str]:
    """Pure: ServicesRolledOut (status, reason, message) from the status.services rows."""
    for wanted in (reasons.ROLLOUT_FAILED, reasons.ROLLOUT_IN_PROGRESS):
        found = [r for r in rows if r.get("reason") == wanted]
        if found:
            return False, wanted, "; ".join(r.get("message") or "" for r in found)
    reported = [r for r in rows if r.get("reason") != reasons.ROLLED_OUT]
    if reported:
        return False, reported[0]["reason"], "; ".join(r.get("message") or "" for r in reported)
    return True, reasons.ROLLED_OUT, MSG_ROLLED_OUT


def set_rolled_out(status: dict[str, Any], generation: int | None, now: str) -> None:
    """Pure on ``status``: the ServicesRolledOut condition from status.services (absent without services)."""
    rows = status.get("services") or []
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != reasons.SERVICES_ROLLED_OUT]
    if rows:
        value, reason, message = rolled_out_condition(rows)
        previous = status.get("conditions") or []
        kept = [c for c in previous if c.get("type") == reasons.SERVICES_ROLLED_OUT]
        conditions = set_condition(conditions + kept, reasons.SERVICES_ROLLED_OUT, value, reason, message[:1000],
                                   generation=generation, now=now)
    status["conditions"] = conditions


def _row(service: ecs.Service, verdict: Verdict) -> dict[str, Any]:
    row: dict[str, Any] = {"cluster": service.cluster, "service": service.name, "arn": service.arn,
                           "taskDefinition": verdict.target, "rolloutState": verdict.rollout_state,
                           "runningCount": verdict.running_count, "reason": verdict.reason,
                           "message": verdict.message}
    return {k: v for k, v in row.items() if v is not None}


def _epoch(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else 0.0


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sync_services(ctx: StepContext) -> StepOutcome:
    """Roll every listed service that runs a listed family to our revision (module docstring)."""
    out = StepOutcome()
    # One entry per service however often it is listed (by name or by cluster ARN): two
    # entries deciding from one stale describe would update it twice.
    consumers = list({(ecs.cluster_name(c.cluster), c.service): c
                      for c in ctx.resolved.spec.consumers.ecsServices}.values())
    if not consumers:
        out.status = {"services": None, "nextRolloutCheckTime": None}  # None: removed from status
        return out
    client = ctx.clients(ecs.SERVICE)
    listed = {c.family for c in ctx.resolved.spec.consumers.ecsTaskDefinitions}
    previous = {(r.get("cluster"), r.get("service")): r for r in ctx.previous_status.get("services") or []}
    rows: list[dict[str, Any]] = []
    errors = []
    now = _epoch(ctx.now) if ctx.now else dt.datetime.now(dt.timezone.utc).timestamp()
    next_poll: float | None = None
    # One DescribeServices per cluster (per ten services), not one per service.
    described: dict[str, dict[str, ecs.Service] | StepError] = {}
    for cluster in dict.fromkeys(c.cluster for c in consumers):
        try:
            described[cluster] = ecs.describe_many(client, cluster, [c.service for c in consumers
                                                                     if c.cluster == cluster])
        except loop.AWS_ERRORS as error:
            described[cluster] = loop.failure(error, ecs.SERVICE, f"ECS services of cluster {ecs.cluster_name(cluster)}")
    for consumer in consumers:
        key = (consumer.cluster, consumer.service)
        what = f"ECS service {ecs.cluster_name(consumer.cluster)}/{consumer.service}"
        answer = described[consumer.cluster]
        if isinstance(answer, StepError):
            if answer not in errors:
                errors.append(answer)
            if key in previous:
                rows.append(dict(previous[key]))
            continue
        service = answer[consumer.service]
        verdict = decide(service, listed_families=listed, ours=ctx.revisions, previous=previous.get(key))
        if verdict.action == UPDATE and not ctx.remediate:
            # driftPolicy Report and nothing in the spec or the source changed: a service found
            # behind is someone's doing (or theirs to roll); report it, do not roll it.
            verdict = Verdict(REPORT, reasons.DRIFT_REPORTED, MSG_REPORT_ONLY.format(
                service=label(service), revision=(verdict.target or "").rsplit("/", 1)[-1]),
                (previous.get(key) or {}).get("taskDefinition"))
        if verdict.action == UPDATE:
            actor = ctx.actor or loop.AWS_ACTOR
            target = verdict.target or ""
            desired = ecs.Rollout(consumer.cluster, consumer.service, target)
            observation = Observation(exists=True, owner=Owner.OURS, observed=service, differences=(
                Difference(ecs.TASK_DEFINITION_FIELD, service.task_definition, target),))
            try:
                # The AWS actor sends UpdateService; regaccess plan's recording actor records it.
                written = actor.perform(ecs.ROLLOUTS, client, Action.UPDATE, desired, observation)
            except loop.AWS_ERRORS as error:
                # Not sent again blindly: the next pass observes the service and decides.
                errors.append(loop.failure(error, ecs.SERVICE, what))
                if key in previous:
                    rows.append(dict(previous[key]))
                continue
            updated = written.facts.get("service") or service
            out.writes += 1
            out.events.append(normal(EVENT_SERVICE_UPDATED, verdict.message))
            deployment = updated.deployment_of(target)
            verdict = follow(updated, target, deployment) if deployment is not None else Verdict(
                FOLLOW, reasons.ROLLOUT_IN_PROGRESS, MSG_STARTED.format(
                    service=label(service), revision=target.rsplit("/", 1)[-1]), target, ecs.IN_PROGRESS, 0)
            started: float | None = now
            service = updated
        else:
            deployment = service.deployment_of(verdict.target) if verdict.target else None
            started = deployment.created_at if deployment is not None else None
        row = _row(service, verdict)
        before = previous.get(key) or {}
        if verdict.reason != before.get("reason") and verdict.action == REPORT:
            # Once when it becomes so, not at every drift check.
            out.events.append(warning(verdict.reason, verdict.message))
        if verdict.reason == reasons.ROLLOUT_FAILED and before.get("reason") != reasons.ROLLOUT_FAILED \
                and verdict.action == FOLLOW:
            out.events.append(warning(verdict.reason, verdict.message))
        if verdict.rollout_state == ecs.IN_PROGRESS:
            due = now + poll_delay(now, started)
            next_poll = due if next_poll is None else min(next_poll, due)
        rows.append(row)
    out.status = {"services": rows,
                  "nextRolloutCheckTime": _rfc3339(next_poll) if next_poll is not None else None}
    if errors:
        first = errors[0]
        out.error = first if len(errors) == 1 else StepError(
            first.reason, f"{first.message} (and {len(errors) - 1} more; see status.services)", first.retryable,
            first.retry_after)
    return out
