"""Kubernetes-style conditions (pure).

``set_condition`` keeps ``lastTransitionTime`` when the status does not
change, so a resync that finds everything in order writes an identical
status and the handler can skip the patch entirely.

``progress_conditions`` adds the two "abnormal-true" conditions that Flux's
kstatus (sigs.k8s.io/cli-utils) and Argo CD read, for both kinds, in one
place (``controller.reconcile.result.settle`` calls it for every reconcile):
``Reconciling`` True while the operator is still working on the resource (a
retry is scheduled), ``Stalled`` True when it cannot get further without a
change (bad input, an ownership conflict, a terminal AWS error). A Ready
resource carries neither: kstatus prefers them absent to False.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.api import reasons

# Ready=False reasons that wait for something expected to appear although no retry is
# scheduled: the operator's Secret watch brings the change in (a Secret created by
# External Secrets or Sealed Secrets a moment after the resource is the usual case).
WAITING_REASONS = frozenset({reasons.SOURCE_SECRET_NOT_FOUND})
# Ready=False reasons that are stuck although a slow retry is scheduled: ECR still refuses a
# principal after the IAM propagation window, so only a change (create the role, fix the
# spec) will help.
STUCK_REASONS = frozenset({reasons.PRINCIPAL_REJECTED})


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    value = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in (conditions or []) if c.get("type") != type_]
    previous = next((c for c in conditions or [] if c.get("type") == type_), None)
    transition = (
        previous.get("lastTransitionTime")
        if previous is not None and previous.get("status") == value and previous.get("lastTransitionTime")
        else (now or now_rfc3339())
    )
    out.append(
        {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition,
            "observedGeneration": generation,
        }
    )
    order = {reasons.READY: 0, reasons.SYNCED: 1, reasons.DRIFTED: 2, reasons.RECONCILING_TYPE: 3, reasons.STALLED: 4}
    return sorted(out, key=lambda c: (order.get(c["type"], 9), c["type"]))


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def progress(ready: dict[str, Any] | None, *, retry_pending: bool) -> tuple[str, str, str] | None:
    """Which abnormal-true condition a resource carries: (type, reason, message), or None.

    Decided from the Ready condition the reconcile just wrote and whether a retry is
    scheduled; the reason and message are Ready's, so they stay the documented ones.
    """
    if ready is None:
        return None
    reason, message = str(ready.get("reason") or ""), str(ready.get("message") or "")
    if ready.get("status") == "True":
        return None
    if reason in STUCK_REASONS:
        return reasons.STALLED, reason, message
    if retry_pending or reason in WAITING_REASONS:
        return reasons.RECONCILING_TYPE, reason, message
    # Not Ready and nothing scheduled: the next step needs a change of the spec, the
    # source Secret or AWS (the drift timer's slow retry notices the last one).
    return reasons.STALLED, reason, message


def progress_conditions(
    conditions: list[dict[str, Any]] | None,
    *,
    retry_pending: bool,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with Reconciling / Stalled set as ``progress`` decides, the other removed.

    Unchanged input gives an equal list (same order, same lastTransitionTime), so a quiet
    resync still writes nothing.
    """
    verdict = progress(get_condition(conditions, reasons.READY), retry_pending=retry_pending)
    rolling = get_condition(conditions, reasons.SERVICES_ROLLED_OUT)
    if verdict is None and rolling is not None and rolling.get("reason") == reasons.ROLLOUT_IN_PROGRESS:
        # Ready (the AWS objects are in place) while an ECS rollout the operator started runs:
        # kstatus readers should still wait for it (controller.reconcile.services).
        verdict = reasons.RECONCILING_TYPE, reasons.ROLLOUT_IN_PROGRESS, str(rolling.get("message") or "")
    kept = verdict[0] if verdict else None
    out = [dict(c) for c in conditions or []
           if c.get("type") not in (reasons.RECONCILING_TYPE, reasons.STALLED) or c.get("type") == kept]
    if verdict is None:
        return out
    type_, reason, message = verdict
    return set_condition(out, type_, True, reason, message, generation=generation, now=now)
