"""One outcome assembly for both custom resources (RegistryCredential, CrossAccountRepoAccess).

The reconcilers (``registry_credential``, ``cross_account``) run their objects
through the loop and hand what one pass found to ``assemble()``, which builds
everything users see, the same way for both kinds:

- ``Ready`` / ``Synced`` from the first failure (all failures' messages joined),
  or from reported drift (``DriftReported``: Ready and Synced False, AWS is not in
  the declared state and driftPolicy Report leaves it so), or Reconciled;
- ``Drifted`` and the drift Events (``DriftDetected`` once per new drift,
  ``DriftRemediated`` when repaired, ``DriftReported`` once per new reported drift),
  object and field only, never a value;
- ``status.drift``: bounded records, one per drift while it stays open;
- ``lastSyncTime``, ``lastDriftCheckTime``, ``observedGeneration``;
- ``retry_after`` / ``outcome`` for the handler and metrics;
- ``invalid()``: the result for a spec (or source) that cannot be used, no AWS call.

The handlers then pass every result through ``result.settle()``: observedGeneration for
every outcome and the kstatus conditions Reconciling / Stalled (``conditions.progress``).

Status rows of both kinds (``managed[]`` and ``repositories[]``) come from
``status_row()``. Pure functions over dicts: no kopf, no AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from controller.api import reasons
from controller.aws.protocol import MARK_FIELD
from controller.reconcile.conditions import get_condition, set_condition
from controller.reconcile.result import MAX_DRIFT_RECORDS, Event, ReconcileResult, normal, warning
from controller.reconcile.steps import StepError, open_drift

MAX_MESSAGE = 1000

# Retry delays (seconds) when a retryable error gives no hint of its own. Why: throttling
# and 5xx clear within seconds; a missing dependency (role, family, repository) usually
# needs a person or a pipeline.
RETRY_TRANSIENT = 10.0
RETRY_DEPENDENCY = 30.0

# Row states (managed[].state; repositories[].synced is state == Synced).
SYNCED = "Synced"
PENDING = "Pending"
ERROR = "Error"
RETAINED = "Retained"

DRIFT_DETECTED_EVENT = "DriftDetected"
MSG_DRIFT_DETECTED = "changed outside regaccess: {fields}"
MSG_DRIFT_REMEDIATED = "changed outside regaccess and repaired: {fields}"
MSG_DRIFT_REPORTED = "changed outside regaccess, not repaired (driftPolicy Report): {fields}"
MSG_DRIFT_OPEN = "changed outside regaccess, not repaired: {fields}"
# A message that says something, rather than an empty one (see kubeapi.patchable).
MSG_NO_DRIFT = "AWS matches the declared state"
MSG_READY = "all AWS objects in the declared state"

Pair = tuple[str, str]  # (object, field), e.g. ("repositoryPolicy/app", "Statement[...]")


def bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def fields_text(pairs: Iterable[Pair]) -> str:
    """``object.field, ...`` sorted and unique: the one way drift is named to people."""
    return ", ".join(sorted({f"{o}.{f}" for o, f in pairs}))


# --------------------------------------------------------------------------- rows


def status_row(name: str, arn: str | None, state: str, message: str = "", *, kind: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """One status row: ``managed[]`` ({kind,name,arn,state,message}) when ``kind`` is given,
    else ``repositories[]`` ({name,arn,synced,message}). ``extra`` fields are added when set
    (``rejectedSince``)."""
    if kind is not None:
        row: dict[str, Any] = {"kind": kind, "name": name, "arn": arn, "state": state, "message": message}
    else:
        row = {"name": name, "arn": arn, "synced": state == SYNCED, "message": message}
    row.update({key: value for key, value in extra.items() if value})
    return row


# --------------------------------------------------------------------------- drift


def merge_drift(previous_status: dict[str, Any], found: list[Pair], remediated: bool,
                now: str) -> tuple[list[dict[str, Any]], list[Pair]]:
    """Append the drift found, bounded; returns (records, the pairs that are new).

    Under driftPolicy Report the same drift is found at every check: it is recorded
    (and announced) once, while it stays open, so status does not churn. A repaired
    drift is recorded each time.
    """
    records = list(previous_status.get("drift") or [])
    already = set() if remediated else open_drift(previous_status)
    new = [pair for pair in dict.fromkeys(found) if pair not in already]
    for obj, fld in new:
        records.append({"object": obj, "field": fld, "time": now, "remediated": remediated})
    return records[-MAX_DRIFT_RECORDS:], new


def _counts(pairs: list[Pair]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj, _ in pairs:
        object_type = obj.split("/", 1)[0]
        counts[object_type] = counts.get(object_type, 0) + 1
    return counts


# --------------------------------------------------------------------------- retry


def retry_delay(error: StepError) -> float | None:
    """Seconds until the next attempt, or None: wait for a change of the spec or of AWS."""
    if not error.retryable:
        return None
    if error.retry_after is not None:
        return error.retry_after
    return RETRY_DEPENDENCY if error.reason == reasons.DEPENDENCY_MISSING else RETRY_TRANSIENT


# --------------------------------------------------------------------------- one pass


@dataclass
class Pass:
    """What one reconcile pass of either kind found (the input of ``assemble``)."""

    generation: int | None
    now: str
    # Every failure, in order (the first names Ready's reason). A failure with reason
    # DriftReported is a report-only drift that stopped the pass, not an error.
    failures: list[StepError] = field(default_factory=list)
    # Drift found on objects managed before, and whether this pass repaired it.
    drift: list[Pair] = field(default_factory=list)
    remediated: bool = False
    # Every object could be compared, so "no drift" may be said.
    judged: bool = True
    # The kind's own Events (posted first); ``warned``: the failing object already
    # posted a Warning for its failure.
    events: list[Event] = field(default_factory=list)
    warned: bool = False
    wrote: bool = False
    # The spec changed (or nothing was ever synced): lastSyncTime moves even without writes.
    first_sync: bool = False
    drift_check: bool = False
    ready_message: str = MSG_READY
    # All written, yet not usable (RegistryCredential: an execution role not granted).
    not_ready: tuple[str, str] | None = None
    # observedGeneration also after a failure (rows carry per-object progress).
    generation_always: bool = False


def assemble(previous_status: dict[str, Any], status: dict[str, Any], found: Pass) -> ReconcileResult:
    """The whole status, Events, retry and outcome of one pass.

    ``status`` is the new status as the kind built it (previous status plus its rows
    and own fields); conditions, drift records and times are set here. A pass that
    finds what the last one found produces an identical status (zero patches).
    """
    previous_status = previous_status or {}
    generation, now = found.generation, found.now
    errors = [f for f in found.failures if f.reason != reasons.DRIFT_REPORTED]
    stopped = [f for f in found.failures if f.reason == reasons.DRIFT_REPORTED]
    fixed = bool(found.drift) and found.remediated and not stopped
    # Open drift that includes a removed mark says so: the object is ours by our record, and
    # someone took the mark off (often with a widened document).
    drift_reason = (reasons.MARK_REMOVED if any(path == MARK_FIELD for _, path in found.drift)
                    else reasons.DRIFT_REPORTED)
    result = ReconcileResult(status=status, events=list(found.events))
    conditions = previous_status.get("conditions") or []

    def condition(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, bounded(message), generation=generation, now=now)

    # ---- drift records, the Drifted condition, drift Events
    if found.drift:
        status["drift"], new = merge_drift(previous_status, found.drift, fixed, now)
        result.drift_found = _counts(found.drift)
        result.drift_first_seen = _counts(new)
        if fixed:
            result.drift_remediated = _counts(found.drift)
            condition(reasons.DRIFTED, False, reasons.DRIFT_REMEDIATED, MSG_DRIFT_REMEDIATED.format(
                fields=fields_text(found.drift)))
        else:
            condition(reasons.DRIFTED, True, drift_reason,
                      stopped[0].message if stopped else MSG_DRIFT_OPEN.format(fields=fields_text(found.drift)))
        if new:
            # Names the object and field only (never a value); once per new drift.
            result.events.append((normal if fixed else warning)(
                DRIFT_DETECTED_EVENT, bounded(MSG_DRIFT_DETECTED.format(fields=fields_text(new)))))
        if fixed:
            result.events.append(normal(reasons.DRIFT_REMEDIATED, bounded(MSG_DRIFT_REMEDIATED.format(
                fields=fields_text(found.drift)))))
        elif new and not any(e.reason == reasons.DRIFT_REPORTED for e in result.events):
            result.events.append(warning(reasons.DRIFT_REPORTED, bounded(MSG_DRIFT_REPORTED.format(
                fields=fields_text(new)))))
    elif stopped:
        condition(reasons.DRIFTED, True, reasons.DRIFT_REPORTED, stopped[0].message)
    elif found.judged:
        previous = get_condition(conditions, reasons.DRIFTED)
        # Keep "DriftRemediated" until something changes, so a quiet check writes nothing.
        if previous and previous.get("status") == "False" and previous.get("reason") == reasons.DRIFT_REMEDIATED:
            condition(reasons.DRIFTED, False, reasons.DRIFT_REMEDIATED, previous.get("message", ""))
        else:
            condition(reasons.DRIFTED, False, reasons.NO_DRIFT, MSG_NO_DRIFT)

    # ---- Ready / Synced, retry, outcome
    if errors:
        first = errors[0]
        message = bounded("; ".join(dict.fromkeys(e.message for e in errors)))
        condition(reasons.READY, False, first.reason, message)
        condition(reasons.SYNCED, False, first.reason, message)
        previous_ready = get_condition(previous_status.get("conditions"), reasons.READY) or {}
        # Post the Warning when the problem is new: a retry that finds it again stays quiet.
        if previous_ready.get("message") != message and not found.warned:
            result.events.append(warning(first.reason, message))
        delays = [(d, e) for e in errors if (d := retry_delay(e)) is not None]
        if delays:
            delay, why = min(delays, key=lambda pair: pair[0])
            result.retry_after, result.retry_reason, result.outcome = delay, why.message, "retry"
        else:
            result.outcome = "conflict" if first.reason == reasons.OWNERSHIP_CONFLICT else "error"
    elif stopped or (found.drift and not fixed):
        # Report-only drift: AWS is not in the declared state, and nothing was written.
        message = stopped[0].message if stopped else MSG_DRIFT_REPORTED.format(fields=fields_text(found.drift))
        condition(reasons.READY, False, drift_reason, message)
        condition(reasons.SYNCED, False, drift_reason, message)
        result.outcome = "drift"
    else:
        condition(reasons.READY, True, reasons.RECONCILED, found.ready_message)
        condition(reasons.SYNCED, True, reasons.RECONCILED, found.ready_message)
        if found.not_ready is not None:
            condition(reasons.READY, False, *found.not_ready)
        result.ready = True
        if found.wrote or found.first_sync or not previous_status.get("lastSyncTime"):
            status["lastSyncTime"] = now
    if not errors or found.generation_always:
        status["observedGeneration"] = generation
    if found.drift_check:
        status["lastDriftCheckTime"] = now
    status["conditions"] = conditions
    return result


def invalid(previous_status: dict[str, Any], generation: int | None, problems: list, now: str,
            *, drift_check: bool = False) -> ReconcileResult:
    """Ready/Synced False with the first problem's reason; no AWS call was made.

    The Warning is posted only when the problem is new: a drift check re-validating
    the same bad spec must not spam Events.
    """
    message = bounded("; ".join(str(p) for p in problems))
    reason = problems[0].reason
    status = dict(previous_status or {})
    conditions = status.get("conditions") or []
    previous_ready = get_condition(conditions, reasons.READY) or {}
    repeated = previous_ready.get("reason") == reason and previous_ready.get("message") == message
    conditions = set_condition(conditions, reasons.READY, False, reason, message, generation=generation, now=now)
    conditions = set_condition(conditions, reasons.SYNCED, False, reason, message, generation=generation, now=now)
    status.update(observedGeneration=generation, conditions=conditions)
    if drift_check:
        # Stamped so the timer waits a whole interval before validating the same spec again.
        status["lastDriftCheckTime"] = now
    return ReconcileResult(status=status, events=[] if repeated else [warning(reason, message)], outcome="invalid")


MSG_NOT_PERMITTED_DELETE = "nothing in AWS was deleted or changed (outside this namespace's tenancy rules): {problems}"


def not_permitted_delete(previous_status: dict[str, Any] | None, problems: list) -> ReconcileResult:
    """A delete outside the namespace's tenancy rules: no AWS call, the finalizer may go.

    Anything such a resource made while it was still permitted (before the admin
    narrowed the rules) stays in AWS, named in the Warning, for the admin to clean up."""
    message = bounded(MSG_NOT_PERMITTED_DELETE.format(problems="; ".join(str(p) for p in problems)))
    return ReconcileResult(status=dict(previous_status or {}), ready=True,
                           events=[warning(problems[0].reason, message)])
