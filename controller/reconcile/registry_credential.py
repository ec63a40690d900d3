"""Level-triggered reconcile of one RegistryCredential (kopf-free).

Called by ``controller.handlers`` on create/update/resume, when the source
Secret changes, and by the drift timer, always with the same inputs: the
object's spec and status, the source Secret as the informer index holds it,
and a way to get AWS clients. It validates (no AWS call on bad input), runs
the steps in order (secret, role policies, task definitions, job definitions,
pull-through cache rule), and computes the whole status.

``driftPolicy: Report`` is applied here, once: steps get ``remediate=False``
when neither the spec (generation) nor the source Secret changed since the
last sync, so any difference they find is drift someone made in AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from controller.api import reasons
from controller.api.validation import (
    Problem,
    ResolvedRegistryCredential,
    secret_value_problems,
    validate_registry_credential,
)
from controller.aws.clients import Clients
from controller.aws import secrets as sm
from controller.logging import REDACTOR
from controller.reconcile import secret as secret_step
from controller.reconcile import definitions, pull_through_cache, wiring
from controller.reconcile.conditions import now_rfc3339, set_condition
from controller.reconcile.result import MAX_DRIFT_RECORDS, ReconcileResult, normal, warning
from controller.reconcile.steps import Step, StepContext, StepOutcome, open_drift
from controller.sources import Credential, SourceError, read_credential

ClientsFor = Callable[[str | None, str | None, str | None], Clients]

# Retry delays (seconds). Why: throttling and 5xx clear within seconds; a missing
# dependency (role, family, repository) usually needs a person or a pipeline.
RETRY_TRANSIENT = 10.0
RETRY_DEPENDENCY = 30.0
# A message that says something, rather than an empty one (see kubeapi.patchable).
NO_DRIFT_MESSAGE = "AWS matches the declared state"


@dataclass(frozen=True)
class Request:
    namespace: str
    name: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]
    source_secret: dict[str, Any] | None  # the Secret body, None when it does not exist
    cluster_id: str
    drift_check: bool = False


def sync_steps(resolved: ResolvedRegistryCredential) -> list[tuple[str, Step]]:
    """The steps, in dependency order: everything after the secret needs its ARN.

    Wiring steps always run (not only when their spec list is non-empty) because an
    emptied list must remove what an earlier generation put in place."""
    return [
        # A prefix taken by someone else's rule stops everything before the first write.
        ("pullThroughCacheRule", pull_through_cache.precheck),
        ("secret", secret_step.sync),
        ("pullThroughCacheRule", pull_through_cache.sync),
        ("rolePolicy", wiring.sync_role_policies),
        ("taskDefinition", definitions.sync_task_definitions),
        ("jobDefinition", definitions.sync_job_definitions),
    ]


def delete_steps(resolved: ResolvedRegistryCredential) -> list[tuple[str, Step]]:
    """Reverse dependency order: users of the secret go before the secret."""
    return [
        ("jobDefinition", definitions.delete_job_definitions),
        ("taskDefinition", definitions.delete_task_definitions),
        ("rolePolicy", wiring.delete_role_policies),
        ("pullThroughCacheRule", pull_through_cache.delete),
        ("secret", secret_step.delete),
    ]


def _source_resource_version(secret: dict[str, Any] | None) -> str | None:
    return ((secret or {}).get("metadata") or {}).get("resourceVersion")


def _load_credential(request: Request, resolved: ResolvedRegistryCredential) -> tuple[Credential | None, list[Problem]]:
    ref = resolved.spec.source.secretRef.name
    if request.source_secret is None:
        return None, [Problem(reasons.SOURCE_SECRET_NOT_FOUND, "spec.source.secretRef.name",
                              f"Secret {ref!r} not found in namespace {request.namespace!r}")]
    try:
        credential = read_credential(
            request.source_secret,
            registry=resolved.spec.source.registry,
            username_key=resolved.spec.source.usernameKey,
            password_key=resolved.spec.source.passwordKey,
        )
    except SourceError as error:
        return None, [Problem(error.reason, "spec.source.secretRef", error.message)]
    # From here on the password is scrubbed from every log line and exception text.
    REDACTOR.remember(credential.password)
    value = sm.secret_string(credential, pull_through_cache=resolved.spec.pullThroughCache is not None)
    REDACTOR.remember(value)
    return credential, secret_value_problems(value)


def _invalid(request: Request, problems: list[Problem]) -> ReconcileResult:
    first = problems[0]
    message = "; ".join(str(p) for p in problems)[:1000]
    status = dict(request.status)
    conditions = status.get("conditions")
    conditions = set_condition(conditions, "Ready", False, first.reason, message, generation=request.generation)
    conditions = set_condition(conditions, "Synced", False, first.reason, message, generation=request.generation)
    status["conditions"] = conditions
    status["observedGeneration"] = request.generation
    # Seen, even though unusable: the timer then waits for the next change of the Secret
    # instead of re-validating it every tick.
    status["sourceResourceVersion"] = _source_resource_version(request.source_secret)
    if request.drift_check:
        # Stamped so the timer waits a whole interval before validating the same spec again.
        status["lastDriftCheckTime"] = now_rfc3339()
    # Post the Warning only when this problem is new: a timer re-validating the same bad
    # spec must not spam Events.
    previous = next((c for c in request.status.get("conditions") or [] if c.get("type") == "Ready"), {})
    events = [] if previous.get("reason") == first.reason and previous.get("message") == message else [
        warning(first.reason, message)
    ]
    return ReconcileResult(status=status, events=events, outcome="invalid")


def _merge_drift(previous_status: dict[str, Any], found: list[tuple[str, str]], remediated: bool,
                 now: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Append the drift found, bounded; returns (records, the pairs that are new).

    Under driftPolicy Report the same drift is found at every check: it is recorded
    (and announced) once, while it stays open, so status does not churn.
    """
    records = list(previous_status.get("drift") or [])
    already = set() if remediated else open_drift(previous_status)
    new = [pair for pair in dict.fromkeys(found) if pair not in already]
    for obj, field in new:
        records.append({"object": obj, "field": field, "time": now, "remediated": remediated})
    return records[-MAX_DRIFT_RECORDS:], new


def reconcile(request: Request, clients_for: ClientsFor, *, record_now: Callable[[dict[str, Any]], None] | None = None,
              actor: Any = None) -> ReconcileResult:
    """One level-triggered pass; ``actor`` performs the writes (controller.reconcile.loop)."""
    resolved, problems = validate_registry_credential(
        request.namespace, request.name, request.spec, cluster_id=request.cluster_id
    )
    if resolved is None:
        return _invalid(request, problems)
    credential, problems = _load_credential(request, resolved)
    if problems:
        return _invalid(request, problems)

    previous = request.status or {}
    source_rv = _source_resource_version(request.source_secret)
    spec_changed = previous.get("observedGeneration") != request.generation
    source_changed = previous.get("sourceResourceVersion") != source_rv
    report_only = resolved.spec.driftPolicy == "Report" and not spec_changed and not source_changed
    now = now_rfc3339()
    ctx = StepContext(
        resolved=resolved,
        clients=clients_for(resolved.spec.region, resolved.spec.roleArn, resolved.spec.externalId),
        previous_status=previous,
        remediate=not report_only,
        credential=credential,
        record_now=record_now,
        source_resource_version=source_rv,
        now=now,
        actor=actor,
    )
    outcomes: list[StepOutcome] = []
    failed: tuple[str, StepOutcome] | None = None
    for label, step in sync_steps(resolved):
        outcome = step(ctx)
        outcomes.append(outcome)
        if outcome.error is not None:
            failed = (label, outcome)
            break
    return _result(request, ctx, outcomes, failed, spec_changed=spec_changed, source_changed=source_changed, now=now)


def _result(request: Request, ctx: StepContext, outcomes: list[StepOutcome], failed: tuple[str, StepOutcome] | None,
            *, spec_changed: bool, source_changed: bool, now: str) -> ReconcileResult:
    previous = request.status or {}
    status: dict[str, Any] = {k: v for k, v in previous.items()}
    result = ReconcileResult(status=status)
    managed: list[dict[str, Any]] = []
    drift: list[tuple[str, str]] = []
    remediated = False
    for outcome in outcomes:
        status.update(outcome.status)
        managed += outcome.managed
        result.events += outcome.events
        # A difference caused by a spec or source change is the change being applied, not drift.
        if not spec_changed and not source_changed:
            drift += outcome.drifted
        remediated = remediated or outcome.remediated
    # Keep rows of steps that did not run this time (a failure stopped the sequence).
    ran = {row["kind"] for row in managed}
    managed += [row for row in previous.get("managed") or [] if row.get("kind") not in ran and failed is not None]
    status["managed"] = managed
    conditions = previous.get("conditions")
    generation = request.generation

    if drift:
        objects = sorted({f"{o}.{f}" for o, f in drift})
        for obj, field in drift:
            result.drift_found[obj.split("/", 1)[0]] = result.drift_found.get(obj.split("/", 1)[0], 0) + 1
            if ctx.remediate and remediated:
                key = obj.split("/", 1)[0]
                result.drift_remediated[key] = result.drift_remediated.get(key, 0) + 1
        fixed = ctx.remediate and remediated
        status["drift"], new = _merge_drift(previous, drift, fixed, now)
        reason = reasons.DRIFT_REMEDIATED if fixed else reasons.DRIFT_REPORTED
        message = ("repaired" if fixed else "found (driftPolicy Report)") + ": " + ", ".join(objects)
        conditions = set_condition(conditions, "Drifted", not fixed, reason, message[:1000], generation=generation)
        if new:
            # Names the object and field only (never a value); once per new drift.
            result.events.append((normal if fixed else warning)(
                "DriftDetected", "changed outside regaccess: " + ", ".join(sorted({f"{o}.{f}" for o, f in new}))))
        if fixed:
            result.events.append(normal("DriftRemediated", "repaired: " + ", ".join(objects)))
    elif failed is None:
        conditions = set_condition(conditions, "Drifted", False, reasons.NO_DRIFT, NO_DRIFT_MESSAGE, generation=generation)

    if failed is not None:
        label, outcome = failed
        error = outcome.error
        assert error is not None
        if error.reason == reasons.DRIFT_REPORTED:
            # Report-only drift that stopped the sequence (e.g. the secret was deleted by hand).
            conditions = set_condition(conditions, "Ready", False, error.reason, error.message, generation=generation)
            conditions = set_condition(conditions, "Drifted", True, error.reason, error.message, generation=generation)
            result.outcome = "drift"
        else:
            conditions = set_condition(conditions, "Ready", False, error.reason, error.message, generation=generation)
            conditions = set_condition(conditions, "Synced", False, error.reason, error.message, generation=generation)
            previous_ready = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
            # Steps that fail per object already posted a Warning for each one.
            already_warned = any(e.type == "Warning" for e in outcome.events)
            if previous_ready.get("message") != error.message and not already_warned:
                result.events.append(warning(error.reason, error.message))
            if error.retryable:
                result.retry_after = error.retry_after or (
                    RETRY_DEPENDENCY if error.reason == reasons.DEPENDENCY_MISSING else RETRY_TRANSIENT
                )
                result.retry_reason = error.message
                result.outcome = "retry"
            else:
                result.outcome = "conflict" if error.reason == reasons.OWNERSHIP_CONFLICT else "error"
    else:
        report_drift = bool(drift) and not (ctx.remediate and remediated)
        ready_message = "all AWS objects in the declared state"
        conditions = set_condition(conditions, "Ready", True, reasons.RECONCILED, ready_message, generation=generation)
        conditions = set_condition(conditions, "Synced", True, reasons.RECONCILED, ready_message, generation=generation)
        if report_drift:
            conditions = set_condition(conditions, "Ready", True, reasons.DRIFT_REPORTED, "AWS differs from the spec; driftPolicy Report leaves it", generation=generation)
        # Everything is written, but a consumer runs with a role that cannot read the
        # secret: its tasks cannot pull. That is not Ready for the user.
        not_granted = [row["message"] for row in managed if str(row.get("message", "")).startswith(reasons.EXECUTION_ROLE_NOT_GRANTED)]
        if not_granted:
            conditions = set_condition(conditions, "Ready", False, reasons.EXECUTION_ROLE_NOT_GRANTED,
                                       "; ".join(not_granted)[:1000], generation=generation)
        result.ready = True
        status["lastSyncTime"] = now if any(o.writes for o in outcomes) or spec_changed or not previous.get("lastSyncTime") else previous.get("lastSyncTime")
        status["observedGeneration"] = generation
    if request.drift_check:
        status["lastDriftCheckTime"] = now
    status["conditions"] = conditions
    result.status = status
    return result


def delete(request: Request, clients_for: ClientsFor, *, actor: Any = None) -> ReconcileResult:
    """Remove (or retain) the AWS objects; result.retry_after set means try again."""
    resolved, problems = validate_registry_credential(
        request.namespace, request.name, request.spec, cluster_id=request.cluster_id
    )
    if resolved is None:
        # An invalid spec never created anything we could identify safely: nothing to undo.
        return ReconcileResult(status=dict(request.status or {}), ready=True)
    ctx = StepContext(
        resolved=resolved,
        clients=clients_for(resolved.spec.region, resolved.spec.roleArn, resolved.spec.externalId),
        previous_status=request.status or {},
        now=now_rfc3339(),
        actor=actor,
    )
    result = ReconcileResult(status=dict(request.status or {}))
    for label, step in delete_steps(resolved):
        outcome = step(ctx)
        result.events += outcome.events
        if outcome.error is not None:
            result.retry_after = RETRY_TRANSIENT if outcome.error.retryable else RETRY_DEPENDENCY
            result.retry_reason = outcome.error.message
            result.outcome = "retry"
            result.events.append(warning(outcome.error.reason, outcome.error.message))
            return result
    result.ready = True
    return result
