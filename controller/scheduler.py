"""One scheduler for every drift check and source trigger: work proportional to change.

Called by ``controller.handlers``: its watch handlers tell the scheduler when a
resource appeared or changed (``schedule``: due at its next drift check), when
a source Secret it reads changed (``trigger``: due now, ahead of every drift
check) and when it left this operator's watch (``forget``: deleted, or moved
to another shard). The scheduler sleeps until the earliest due time and runs
at most ``max_concurrent`` checks at once; the check itself (the reconcile
under the resource's lock, the status write, the Events) is the handlers'
``check`` callable, which answers the resource's next due time.

An idle operator therefore does nothing per resource: one sleeping loop instead
of one kopf timer per resource waking every few seconds (31 % of a core at
1,000 resources, measured). The loop wakes at least every ``idle_wake``
seconds to beat the liveness heartbeat (``/healthz``): a stalled scheduler
is a dead operator.

ECRPullSecret token refreshes are entries of the same queue, keyed
``("ECRPullSecret", uid)``: their due time is ``refresh_time``, the
``status.nextRefreshTime`` the pull-secret reconcile wrote (``fraction`` of the
token's lifetime from its ``expiresAt``, with per-resource jitter, or the
backoff after a failed refresh: ``controller.reconcile.pull_secret``'s pure
``refresh_at`` / ``retry_delay``); a hand edit of the Secret is a ``trigger``.
So one bound (``max_concurrent``) covers drift checks and refreshes, and no
handler keeps a timer of its own.

Pure parts, tested with a fake clock: ``due_time`` (the interval plus the
fixed per-resource jitter), ``refresh_time``, ``DueQueue`` (time-ordered, one
entry per key) and the concurrency bound in ``Scheduler.start_due``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import heapq
import itertools
import time
from typing import Any, Awaitable, Callable, Hashable

DRIFT_JITTER = 0.1  # up to 10% later than the interval, fixed per resource
# A check never comes back sooner than this after the last one: a status that does not
# move its check time (a failed status write) must not become a hot loop.
MIN_RECHECK = 1.0
# A check that raised (a bug, an API server outage) is tried again after this long.
ERROR_RECHECK = 10.0
TRIGGERED = 0.0  # the due time of a source trigger: before every drift check

Key = Hashable


def jitter(uid: str) -> float:
    digest = hashlib.sha256(uid.encode()).digest()
    return DRIFT_JITTER * digest[0] / 255


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def due_time(status: dict[str, Any], uid: str, interval: float) -> float | None:
    """Pure: when the resource's next drift check is due (epoch seconds); None: never yet.

    Counted from the last drift check, else the last sync, else the Ready condition's
    last transition: a resource that never synced because AWS refused (access denied,
    an ownership conflict) is then checked again one interval later, so a fix made on
    the AWS side is picked up without a spec change.
    """
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    last = (parse_time(status.get("lastDriftCheckTime")) or parse_time(status.get("lastSyncTime"))
            or parse_time(ready.get("lastTransitionTime")))
    if last is None:
        return None  # never reconciled: the create/resume handler owns the first run
    due = last + interval * (1 + jitter(uid))
    # An ECS rollout in progress is looked at again sooner, with the backoff the
    # reconcile chose (controller.reconcile.services); absent once it has ended.
    rollout = parse_time(status.get("nextRolloutCheckTime"))
    return due if rollout is None else min(due, rollout)


def refresh_time(status: dict[str, Any]) -> float | None:
    """Pure: when an ECRPullSecret's next token refresh (or retry) is due (epoch seconds).

    The reconcile decides it and writes ``status.nextRefreshTime``; None: nothing to refresh
    (an invalid spec, a conflict), until the watch reports a change."""
    return parse_time(status.get("nextRefreshTime"))


def drift_due(status: dict[str, Any], uid: str, interval: float, now: float) -> bool:
    """Pure: has the resource's drift interval (with its jitter) elapsed?"""
    due = due_time(status, uid, interval)
    return due is not None and now >= due


class DueQueue:
    """Pure: keys ordered by due time, at most one entry per key (a heap with lazy removal)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._entries: dict[Key, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def due(self, key: Key) -> float | None:
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def put(self, key: Key, due: float) -> None:
        """Set the key's due time (replacing an earlier or later one)."""
        entry = (due, next(self._seq))
        self._entries[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._compact()  # many reschedules leave stale entries behind; keep memory bounded

    def remove(self, key: Key) -> None:
        self._entries.pop(key, None)

    def _valid(self, item: tuple[float, int, Key]) -> bool:
        return self._entries.get(item[2]) == (item[0], item[1])

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if self._valid(item)]
        heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        while self._heap and not self._valid(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[Key]:
        """Remove and return up to ``limit`` keys due at ``now``, earliest first."""
        keys: list[Key] = []
        while len(keys) < limit:
            due = self.next_due()
            if due is None or due > now:
                break
            _, _, key = heapq.heappop(self._heap)
            del self._entries[key]
            keys.append(key)
        return keys


Check = Callable[[Key], Awaitable[float | None]]


class Scheduler:
    """Runs ``check(key)`` for keys as they fall due, at most ``max_concurrent`` at once.

    ``check`` returns the key's next due time (None: keep it out of the queue until the
    watch reports it again). A key is never checked twice at once: a trigger or
    schedule that arrives during its check is remembered and applied afterwards.
    """

    def __init__(self, check: Check, *, max_concurrent: int, clock: Callable[[], float] = time.time,
                 beat: Callable[[], None] = lambda: None, idle_wake: float = 5.0,
                 spawn: Callable[[Awaitable[None]], Any] | None = None,
                 on_error: Callable[[Key, BaseException], None] = lambda key, error: None) -> None:
        self._check = check
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._beat = beat
        self._idle_wake = idle_wake
        self._spawn = spawn
        self._on_error = on_error
        self.queue = DueQueue()
        self.running: dict[Key, Any] = {}
        self._after: dict[Key, float | None] = {}  # what arrived during a key's check (None: forget)
        self._floor: dict[Key, float] = {}         # the due time the last check answered
        self._wake: asyncio.Event | None = None

    # -------------------------------------------------------------- what the watch reports

    def schedule(self, key: Key, due: float | None) -> None:
        """The resource's status says its next drift check is at ``due`` (None: not yet)."""
        if due is None:
            return
        # A watch event older than our own status write would move the check earlier again.
        due = max(due, self._floor.get(key, due))
        if key in self.running:
            if key not in self._after:
                self._after[key] = due
            return
        if self.queue.due(key) != due:
            self.queue.put(key, due)
            self._notify()

    def replace(self, key: Key, due: float | None) -> None:
        """A pass outside the scheduler (a kopf handler, under the resource's lock) answered
        ``due``: newer than the last check's answer, so it replaces it, earlier or later."""
        self._floor.pop(key, None)
        if key in self.running:
            return  # its check answers when it finishes; a trigger or forget meanwhile still applies
        if due is None:
            self.queue.remove(key)
            return
        self.queue.put(key, due)
        self._notify()

    def trigger(self, key: Key) -> None:
        """Check the key now, before every drift check that is due (its source changed)."""
        if key in self.running:
            self._after[key] = TRIGGERED
            return
        self.queue.put(key, TRIGGERED)
        self._notify()

    def forget(self, key: Key) -> None:
        """The resource left this operator's watch (deleted, or handed to another shard)."""
        self.queue.remove(key)
        self._floor.pop(key, None)
        if key in self.running:
            self._after[key] = None

    # -------------------------------------------------------------- the loop

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def start_due(self, now: float) -> list[Key]:
        """Pure but for the spawn: start the checks due at ``now`` that the bound allows."""
        free = self.max_concurrent - len(self.running)
        keys = self.queue.pop_due(now, free) if free > 0 else []
        for key in keys:
            self.running[key] = None
            coroutine = self._one(key)
            self.running[key] = self._spawn(coroutine) if self._spawn else asyncio.ensure_future(coroutine)
        return keys

    async def _one(self, key: Key) -> None:
        try:
            try:
                due = await self._check(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - one resource's failure must not stop the loop
                self._on_error(key, error)
                due = self._clock() + ERROR_RECHECK
            self.finish(key, due)
        finally:
            self.running.pop(key, None)
            self._notify()

    def finish(self, key: Key, due: float | None) -> None:
        """Pure: requeue a key whose check answered ``due`` (and whatever arrived meanwhile)."""
        self.running.pop(key, None)
        if key in self._after:
            later = self._after.pop(key)
            if later is None:
                return  # forgotten during its check
            if later == TRIGGERED:
                self.queue.put(key, TRIGGERED)
                return
        if due is None:
            self._floor.pop(key, None)
            return
        due = max(due, self._clock() + MIN_RECHECK)
        self._floor[key] = due
        self.queue.put(key, due)

    async def run(self) -> None:
        """Forever: beat, start what is due, sleep until the next due time (or a change)."""
        self._wake = asyncio.Event()
        while True:
            self._beat()
            self._wake.clear()
            now = self._clock()
            self.start_due(now)
            next_due = self.queue.next_due()
            timeout = self._idle_wake
            if next_due is not None and len(self.running) < self.max_concurrent:
                timeout = min(timeout, max(0.0, next_due - now))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass
