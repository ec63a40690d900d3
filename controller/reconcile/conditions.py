"""Kubernetes-style conditions (pure).

``set_condition`` keeps ``lastTransitionTime`` when the status does not
change, so a resync that finds everything in order writes an identical
status and the handler can skip the patch entirely.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


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
    order = {"Ready": 0, "Synced": 1, "Drifted": 2}
    return sorted(out, key=lambda c: (order.get(c["type"], 9), c["type"]))


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
