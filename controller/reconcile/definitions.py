"""RegistryCredential steps for ECS task definitions and Batch job definitions, one module.

Called by ``controller.reconcile.registry_credential`` after the secret step has
set ``ctx.secret_arn``::

    sync_task_definitions(ctx) / delete_task_definitions(ctx)
    sync_job_definitions(ctx)  / delete_job_definitions(ctx)

Both are the same step over one row of ``controller.aws.revisioned_definitions``
(the adapter): for every listed consumer, observe the latest ACTIVE revision,
check what only a person can fix (no revision yet: retried at a calm pace; a
container that does not exist, no execution role, an unsupported job
definition layout: terminal), then hand the object to ``loop.sync_object``,
which decides and has the actor register a new revision when it differs. Rows
follow ``controller.reconcile.wiring`` (one per definition; Synced / Pending /
Error / Retained).

Ownership, decided here because only this kind has it: a family or job
definition belongs to its user; the operator registers new revisions *into* it.
Listing it in ``spec.consumers`` is the user's consent, so a latest revision
that is unmarked (a CI pipeline registered it from its own template) or ours is
OURS, without ``adoptExisting`` (the behaviour before the decision core, which
users rely on: every pipeline deploy would otherwise be a conflict). A latest
revision carrying ANOTHER resource's mark while a chosen container references
another secret is FOREIGN: two resources wiring the same container would
otherwise register revisions against each other forever. Another owner's mark
while the chosen containers reference our secret or no secret at all takes
nothing from that owner and counts as ours.

Crash safety: a registered revision goes to ``ctx.record_now`` at once, before
anything else can fail; a retry that finds the latest revision already
referencing the secret registers nothing. A register whose answer is lost is
observed again by the loop, never sent twice on one pass.

Revisions are never deregistered: deregistering would break every running
service and scheduled task (ECS cannot start new tasks from an INACTIVE
revision) and queued job submissions, and cannot be undone. Under deletionPolicy
Delete the definitions are simply no longer watched (the role policies are what
is revoked); under Retain the rows say so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from controller.api import reasons
from controller.api.models import DeletionPolicy
from controller.aws.protocol import Observation, Owner
from controller.aws.revisioned_definitions import JOB_DEFINITIONS, TASK_DEFINITIONS, Definitions, Desired, Latest
from controller.reconcile import loop
from controller.reconcile.pull_ready import ConsumerFacts, ContainerFacts
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome
from controller.reconcile.wiring import (
    DRIFT_REPORTED_MESSAGE,
    NO_SECRET_ARN_MESSAGE,
    PENDING,
    SYNCED,
    _carry_forward,
    _fail,
    _retained,
    _row,
    _summary,
    execution_role_granted,
)

TASK_DEFINITION = TASK_DEFINITIONS.kind
JOB_DEFINITION = JOB_DEFINITIONS.kind

EVENT_TASK_DEFINITION_REGISTERED = "TaskDefinitionRegistered"
EVENT_JOB_DEFINITION_REGISTERED = "JobDefinitionRegistered"
REVISION_REGISTERED_MESSAGE = "registered {arn} referencing the registry credential"
NOT_GRANTED_MESSAGE = (
    "{reason}: {what} runs with execution role {role}, which is not in spec.grants.executionRoles; "
    "its tasks cannot read the registry credential and so cannot pull the image"
)

# A family or job definition that does not exist may be registered by a pipeline
# soon; look again at a calm pace rather than hammering Describe.
DEFINITION_RETRY_SECONDS = 120.0


@dataclass(frozen=True)
class Step:
    """What differs between the two steps besides the adapter row."""

    table: Definitions
    not_found_reason: str
    event_reason: str
    plural: str  # for the waiting-for-the-secret message


TASKS = Step(TASK_DEFINITIONS, reasons.TASK_DEFINITION_NOT_FOUND, EVENT_TASK_DEFINITION_REGISTERED, "task definitions")
JOBS = Step(JOB_DEFINITIONS, reasons.JOB_DEFINITION_NOT_FOUND, EVENT_JOB_DEFINITION_REGISTERED, "job definitions")


def consumer_owner(observation: Observation) -> Observation:
    """Pure: the ownership rule for a listed consumer (see the module docstring).

    Another owner's mark stays FOREIGN only while a chosen container references a
    secret that is not ours (``Difference.observed`` set); unmarked, ours, or
    another's mark with nothing of theirs to overwrite count as OURS.
    """
    if not observation.exists or observation.owner is Owner.OURS:
        return observation
    if observation.owner is Owner.FOREIGN and any(d.observed for d in observation.differences):
        return observation
    return replace(observation, owner=Owner.OURS)


def _not_granted(ctx: StepContext, execution_role: str, what: str) -> str:
    if execution_role_granted(execution_role, list(ctx.resolved.spec.grants.executionRoles)):
        return ""
    return NOT_GRANTED_MESSAGE.format(reason=reasons.EXECUTION_ROLE_NOT_GRANTED, what=what, role=execution_role)


def _managed_before(ctx: StepContext, kind: str, name: str) -> bool:
    """A difference is drift only on a definition Synced before against the same secret ARN.

    After the secret ARN changed, the difference is our own pending change, not
    someone else's edit.
    """
    previous = ctx.previous_status.get("secretArn")
    return ctx.managed_before(kind, name) and not (previous and previous != ctx.secret_arn)


def _problem(step: Step, latest: Latest) -> StepError | None:
    """What only a person can fix; terminal until the spec or the definition changes."""
    table = step.table
    if latest.containers is None:
        return StepError(reasons.UNSUPPORTED_JOB_DEFINITION, table.unsupported_message(latest), False)
    if latest.unknown:
        return StepError(reasons.CONTAINER_NOT_FOUND, table.unknown_containers_message(latest), False)
    if not latest.execution_role:
        return StepError(reasons.EXECUTION_ROLE_MISSING, table.no_execution_role_message(latest), False)
    return None


class _Rows:
    """The outcome being built for one step: rows, events and the per-object errors."""

    def __init__(self, ctx: StepContext, step: Step) -> None:
        self.ctx, self.step, self.kind = ctx, step, step.table.kind
        self.out, self.errors = StepOutcome(), []
        self.previous = ctx.previous_managed(self.kind)

    def fail(self, name: str, arn: str | None, error: StepError) -> None:
        _fail(self.out, self.errors, self.kind, name, arn, error)

    def ours(self, name: str, arn: str) -> None:
        """The latest revision references the secret: the one the service step rolls to."""
        if self.kind == TASK_DEFINITION:
            self.ctx.revisions[name] = arn

    def synced(self, name: str, arn: str, execution_role: str, what: str) -> None:
        self.ours(name, arn)
        message = _not_granted(self.ctx, execution_role, what)
        self.out.managed.append(_row(self.kind, name, arn, SYNCED, message))
        # Warn when it becomes so, not again on every drift check that finds it still so
        # (the Ready condition keeps saying it); the previous row carries the message.
        if message and (self.previous.get(name) or {}).get("message") != message:
            self.out.events.append(warning(reasons.EXECUTION_ROLE_NOT_GRANTED, message))

    def registered(self, name: str, arn: str, execution_role: str, what: str) -> None:
        self.ours(name, arn)
        message = _not_granted(self.ctx, execution_role, what)
        row = _row(self.kind, name, arn, SYNCED, message)
        # First thing after the register call: a crash from here on must not lose the revision.
        if self.ctx.record_now is not None:
            self.ctx.record_now({"managed": [dict(row)]})
        self.out.managed.append(row)
        self.out.events.append(normal(self.step.event_reason, REVISION_REGISTERED_MESSAGE.format(arn=arn)))
        if message:
            self.out.events.append(warning(reasons.EXECUTION_ROLE_NOT_GRANTED, message))

    def reported(self, name: str, arn: str, fields: tuple[str, ...]) -> None:
        obj = f"{self.kind}/{name}"
        message = DRIFT_REPORTED_MESSAGE.format(fields=", ".join(fields))
        self.out.managed.append(_row(self.kind, name, arn, PENDING, message))
        if not self.ctx.reported_before(obj):  # once per drift, not at every check
            self.out.events.append(warning(reasons.DRIFT_REPORTED, f"{obj}: {message}"))


def _consumer(ctx: StepContext, what: str, role: str, latest: Latest) -> None:
    """Hand the PullReady step what this definition runs (its chosen containers reference
    the secret now: the revision was synced or just registered)."""
    containers = tuple(
        ContainerFacts(name=c.name or "(the job's container)", image=str(c.body.get("image") or ""),
                       wired=c.name in latest.chosen,
                       has_credentials=c.name in latest.chosen or bool((c.body.get("repositoryCredentials") or {})
                                                                      .get("credentialsParameter")))
        for c in latest.containers or ())
    ctx.consumers.append(ConsumerFacts(label=what, execution_role=role, containers=containers))


def _sync_one(rows: _Rows, client: Any, desired: Desired) -> None:
    ctx, step, table, name = rows.ctx, rows.step, rows.step.table, desired.name
    previous_arn = (rows.previous.get(name) or {}).get("arn")
    try:
        observation = table.observe(client, desired)
    except loop.AWS_ERRORS as error:
        rows.fail(name, previous_arn, loop.failure(error, table.service, table.label(desired)))
        return
    if not observation.exists:
        # Never created by us (the definition is its user's): wait for a pipeline to register one.
        rows.fail(name, previous_arn, StepError(step.not_found_reason, table.not_found_message(name), True,
                                                DEFINITION_RETRY_SECONDS))
        return
    latest: Latest = observation.observed
    problem = _problem(step, latest)
    if problem is not None:
        rows.fail(name, latest.arn, problem)
        return
    role = latest.execution_role or ""
    result = loop.sync_object(
        table, client, desired, actor=ctx.actor or loop.AWS_ACTOR, report_only=not ctx.remediate,
        managed_before=_managed_before(ctx, rows.kind, name), ours=ctx.resolved.owner,
        observation=consumer_owner(observation),
    )
    rows.out.drifted.extend((f"{rows.kind}/{name}", f) for f in result.drifted)
    if result.decision in loop.WRITES:
        rows.out.writes += 1
    if result.error is not None:
        rows.fail(name, latest.arn, result.error)
        return
    rows.out.remediated = rows.out.remediated or result.remediated
    if result.decision is loop.Decision.REPORT:
        rows.reported(name, latest.arn, observation.fields)
    elif result.written is not None:
        # Named by revision, as later resyncs name it, so the not-granted message stays the same.
        facts = result.written.facts
        rows.registered(name, facts["arn"], role, f"{table.noun} {name}:{facts['revision']}")
        _consumer(ctx, f"{table.noun} {name}:{facts['revision']}", role, latest)
    elif result.recovered:
        # The register's answer was lost but observing again found the revision: it is ours.
        again: Latest = result.observation.observed
        rows.registered(name, again.arn, again.execution_role or role, f"{table.noun} {again.label}")
        _consumer(ctx, f"{table.noun} {again.label}", again.execution_role or role, again)
    else:
        rows.synced(name, latest.arn, role, f"{table.noun} {latest.label}")
        _consumer(ctx, f"{table.noun} {latest.label}", role, latest)


def _sync(ctx: StepContext, step: Step, consumers: list[Desired]) -> StepOutcome:
    rows = _Rows(ctx, step)
    if not ctx.secret_arn:
        rows.out.error = StepError(reasons.DEPENDENCY_MISSING, NO_SECRET_ARN_MESSAGE.format(what=step.plural), True)
        return _carry_forward(ctx, rows.kind, rows.out)
    if consumers:
        client = ctx.clients(step.table.service)
        for desired in consumers:
            _sync_one(rows, client, desired)
    rows.out.error = _summary(rows.errors)
    return rows.out


def _desired(ctx: StepContext, name: str, containers: list[str] | None = None) -> Desired:
    return Desired(name=name, secret_arn=ctx.secret_arn or "", owner=ctx.resolved.owner,
                   secret_name=ctx.resolved.secret_name, containers=tuple(containers or ()))


def sync_task_definitions(ctx: StepContext) -> StepOutcome:
    """Make the latest ACTIVE revision of every listed family reference the secret.

    Families removed from the spec are simply no longer managed: their revisions
    keep working and are left as they are.
    """
    consumers = ctx.resolved.spec.consumers.ecsTaskDefinitions
    return _sync(ctx, TASKS, [_desired(ctx, c.family, c.containers) for c in consumers])


def sync_job_definitions(ctx: StepContext) -> StepOutcome:
    """Make the highest ACTIVE revision of every listed job definition reference the secret."""
    consumers = ctx.resolved.spec.consumers.batchJobDefinitions
    return _sync(ctx, JOBS, [_desired(ctx, c.name) for c in consumers])


def delete_task_definitions(ctx: StepContext) -> StepOutcome:
    """Stop managing the families; never deregister a revision (module docstring)."""
    if ctx.resolved.spec.deletionPolicy == DeletionPolicy.Retain.value:
        return _retained(ctx, TASK_DEFINITION, [c.family for c in ctx.resolved.spec.consumers.ecsTaskDefinitions])
    return StepOutcome()


def delete_job_definitions(ctx: StepContext) -> StepOutcome:
    """Stop managing the job definitions; never deregister a revision (module docstring)."""
    if ctx.resolved.spec.deletionPolicy == DeletionPolicy.Retain.value:
        return _retained(ctx, JOB_DEFINITION, [c.name for c in ctx.resolved.spec.consumers.batchJobDefinitions])
    return StepOutcome()
