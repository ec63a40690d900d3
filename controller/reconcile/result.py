"""What a reconcile returns: status to write, Events to post, whether to retry.

Reconcilers know nothing about kopf; ``controller.handlers`` passes every
``ReconcileResult`` of both kinds through ``settle`` (the GitOps-readable
part of status, decided once) and turns it into Events (posted before the
status), a status patch and, when ``retry_after`` is set, a
``kopf.TemporaryError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from controller.api import reasons
from controller.reconcile.conditions import progress_conditions

MAX_DRIFT_RECORDS = 20


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class ReconcileResult:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # None: converged or terminal (wait for a change). A number: retry after that many seconds.
    retry_after: float | None = None
    # Why the retry: a short, stable text (no request IDs) for kopf's TemporaryError.
    retry_reason: str = ""
    ready: bool = False
    # Counters for metrics: object type -> number of drifts found / remediated.
    drift_found: dict[str, int] = field(default_factory=dict)
    drift_remediated: dict[str, int] = field(default_factory=dict)
    drift_first_seen: dict[str, int] = field(default_factory=dict)  # new status.drift records, by object type
    outcome: str = "success"  # success | invalid | conflict | error | retry | drift


def normal(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


def warning(reason: str, message: str) -> Event:
    return Event("Warning", reason, message)


def settle(result: ReconcileResult, generation: int | None) -> ReconcileResult:
    """The status a reconcile of either kind ends with, as kstatus, Argo CD and kubectl read it.

    ``observedGeneration`` says which generation the conditions describe; kstatus trusts no
    condition until it equals ``metadata.generation``, so it is set whatever the outcome
    (a terminal error must read as Stalled, not as "generation not observed yet").
    Reconciling / Stalled come from ``progress_conditions``. A quiet resync settles to the
    status it started from, so it still writes nothing.
    """
    status = dict(result.status)
    status["observedGeneration"] = generation
    if status.get("conditions"):
        status["conditions"] = progress_conditions(
            status["conditions"], retry_pending=result.retry_after is not None, generation=generation
        )
    return dataclasses.replace(result, status=status)


def synced_generation(status: dict[str, Any]) -> int | None:
    """The generation a RegistryCredential's spec was last applied for in full (or found invalid).

    ``status.syncedGeneration``; a status written before that field existed has only
    ``observedGeneration``, which those versions set in exactly those cases. 0 or None:
    never.
    """
    if "syncedGeneration" in status:
        return status.get("syncedGeneration")
    return status.get("observedGeneration")


__all__ = ["settle", "synced_generation", "Event", "ReconcileResult", "normal", "warning", "MAX_DRIFT_RECORDS", "reasons"]
