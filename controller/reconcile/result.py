"""What a reconcile returns: status to write, Events to post, whether to retry.

Reconcilers know nothing about kopf; ``controller.handlers`` turns a
``ReconcileResult`` into a status patch, ``kopf.event`` calls and, when
``retry_after`` is set, a ``kopf.TemporaryError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.api import reasons

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
    outcome: str = "success"  # success | invalid | conflict | error | retry


def normal(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


def warning(reason: str, message: str) -> Event:
    return Event("Warning", reason, message)


__all__ = ["Event", "ReconcileResult", "normal", "warning", "MAX_DRIFT_RECORDS", "reasons"]
