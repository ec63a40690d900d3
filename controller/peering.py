"""Peering priority for running several replicas (kopf peering).

Called by ``controller.__main__`` when ``--peering NAME`` is set. kopf pauses an
operator while it sees a live peer of higher priority, and lets peers of equal
priority run side by side with only a warning: replicas of one Deployment
share one pod template, so each derives its own priority from what differs
between them, the pod name (the hostname in a pod) and the process id.
The replica with the highest priority is active; the others stand by.
"""

from __future__ import annotations

import hashlib

# kopf compares priorities as integers; keep them positive and within int32
# so that they read well in the peering object's status.
PRIORITY_SPAN = 2**31 - 2


def replica_priority(hostname: str, pid: int) -> int:
    """Pure: a stable priority in [1, 2**31 - 1] for this (hostname, pid)."""
    digest = hashlib.sha256(f"{hostname}/{pid}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % PRIORITY_SPAN
