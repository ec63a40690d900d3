"""The drift scheduler's pure parts, with a fake clock: due times, ordering, the bound, handover.

``controller.scheduler``: ``due_time`` (interval plus the fixed per-resource
jitter), ``DueQueue`` (earliest first, one entry per key), and ``Scheduler``'s
bookkeeping (``start_due`` under ``max_concurrent``, ``finish``, triggers and
forgets that arrive during a check). No event loop runs: ``spawn`` records
the check instead of starting it.
"""

from __future__ import annotations

import datetime as dt

import pytest

from controller import scheduler as sch
from controller.scheduler import DueQueue, Scheduler

T0 = 1_800_000_000.0


def stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(T0 + seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(max_concurrent: int = 2, clock: Clock | None = None) -> tuple[Scheduler, list]:
    started: list = []

    async def check(key):  # never awaited: spawn only records
        return None

    def spawn(coroutine):
        coroutine.close()  # not run: these tests drive finish() by hand
        started.append(coroutine)
        return coroutine

    return Scheduler(check, max_concurrent=max_concurrent, clock=clock or Clock(), spawn=spawn), started


DUE_CASES = {
    "never-reconciled": ({}, None),
    "from-last-sync": ({"lastSyncTime": stamp(0)}, 300),
    "drift-check-wins-over-sync": ({"lastSyncTime": stamp(0), "lastDriftCheckTime": stamp(100)}, 400),
    "garbage-check-time-falls-back": ({"lastSyncTime": stamp(0), "lastDriftCheckTime": "garbage"}, 300),
    "refused-counts-from-ready-transition": (
        {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": stamp(50)}]}, 350),
}


@pytest.mark.parametrize("status, base", DUE_CASES.values(), ids=DUE_CASES.keys())
def test_due_time_is_the_interval_plus_the_resources_own_jitter(status, base):
    due = sch.due_time(status, "uid-1", 300)
    if base is None:
        assert due is None
    else:
        assert due == pytest.approx(T0 + base + 300 * sch.jitter("uid-1"))
        assert T0 + base <= due <= T0 + base + 300 * sch.DRIFT_JITTER


def test_jitter_spreads_resources_and_is_stable():
    values = {sch.jitter(f"uid-{i}") for i in range(200)}
    assert all(0 <= v <= sch.DRIFT_JITTER for v in values) and len(values) > 50
    assert sch.jitter("uid-7") == sch.jitter("uid-7")


QUEUE_CASES = {
    # puts (key, due), then pop_due(now, limit) -> keys, and what is left
    "earliest-first": ([("a", 30), ("b", 10), ("c", 20)], 100, 10, ["b", "c", "a"], []),
    "only-what-is-due": ([("a", 30), ("b", 10), ("c", 20)], 20, 10, ["b", "c"], ["a"]),
    "limit-bounds-one-pop": ([("a", 1), ("b", 2), ("c", 3)], 100, 2, ["a", "b"], ["c"]),
    "a-new-due-time-replaces-the-old": ([("a", 5), ("b", 10), ("a", 50)], 20, 10, ["b"], ["a"]),
    "moved-earlier": ([("a", 50), ("b", 10), ("a", 1)], 20, 10, ["a", "b"], []),
    "nothing-due": ([("a", 50)], 20, 10, [], ["a"]),
}


@pytest.mark.parametrize("puts, now, limit, popped, left", QUEUE_CASES.values(), ids=QUEUE_CASES.keys())
def test_due_queue(puts, now, limit, popped, left):
    queue = DueQueue()
    for key, due in puts:
        queue.put(key, due)
    assert queue.pop_due(now, limit) == popped
    assert sorted(k for k in left) == sorted(k for k in ("a", "b", "c") if k in queue)
    assert len(queue) == len(left)


def test_due_queue_remove_and_bounded_memory():
    queue = DueQueue()
    queue.put("a", 1)
    queue.remove("a")
    assert queue.next_due() is None and queue.pop_due(10, 10) == []
    for i in range(10_000):  # reschedule one key many times: stale heap entries are compacted
        queue.put("k", float(i))
    assert len(queue) == 1 and len(queue._heap) < 200
    assert queue.next_due() == 9_999.0


BOUND_CASES = {
    # max_concurrent, keys due, already running -> started now
    "all-fit": (4, ["a", "b"], [], ["a", "b"]),
    "bounded": (2, ["a", "b", "c"], [], ["a", "b"]),
    "running-ones-count": (2, ["a", "b", "c"], ["x"], ["a"]),
    "full": (1, ["a"], ["x"], []),
}


@pytest.mark.parametrize("bound, due, running, started", BOUND_CASES.values(), ids=BOUND_CASES.keys())
def test_at_most_max_concurrent_checks_run(bound, due, running, started):
    s, spawned = make(bound)
    for key in running:
        s.running[key] = object()
    for i, key in enumerate(due):
        s.schedule(key, T0 - 10 + i)
    assert s.start_due(T0) == started
    assert len(spawned) == len(started) and len(s.running) <= bound
    assert len(s.queue) == len(due) - len(started)  # the rest wait, in due-time order


def test_a_trigger_goes_before_every_due_drift_check():
    s, _ = make(1)
    s.schedule("drift", T0 - 100)
    s.trigger("rotated")
    assert s.start_due(T0) == ["rotated"]


def test_a_check_answers_its_next_due_time_and_is_requeued():
    clock = Clock()
    s, _ = make(1, clock)
    s.schedule("a", T0)
    assert s.start_due(T0) == ["a"]
    s.finish("a", T0 + 300)
    assert "a" not in s.running and s.queue.due("a") == T0 + 300
    clock.now = T0 + 299
    assert s.start_due(clock.now) == []
    clock.now = T0 + 300
    assert s.start_due(clock.now) == ["a"]


def test_never_sooner_than_min_recheck():
    """A status whose check time did not move (a failed write) must not become a hot loop."""
    clock = Clock()
    s, _ = make(1, clock)
    s.schedule("a", T0)
    s.start_due(T0)
    s.finish("a", T0 - 50)
    assert s.queue.due("a") == T0 + sch.MIN_RECHECK


def test_a_stale_watch_event_cannot_move_a_check_earlier():
    clock = Clock()
    s, _ = make(1, clock)
    s.schedule("a", T0)
    s.start_due(T0)
    s.finish("a", T0 + 300)
    s.schedule("a", T0)  # an event from before the check's own status write
    assert s.queue.due("a") == T0 + 300


SEQUENCE_CASES = {
    # what arrives while the key's check runs -> where the key is afterwards
    "nothing": ([], T0 + 300),
    "trigger-runs-it-again-first": (["trigger"], sch.TRIGGERED),
    "schedule-yields-to-the-checks-answer": (["schedule"], T0 + 300),
    "forget-drops-it": (["forget"], None),
    "trigger-then-forget": (["trigger", "forget"], None),
}


@pytest.mark.parametrize("during, after", SEQUENCE_CASES.values(), ids=SEQUENCE_CASES.keys())
def test_what_arrives_during_a_check(during, after):
    s, _ = make(1)
    s.schedule("a", T0)
    s.start_due(T0)
    for what in during:
        if what == "trigger":
            s.trigger("a")
        elif what == "schedule":
            s.schedule("a", T0 + 5)
        else:
            s.forget("a")
    assert s.start_due(T0 + 1000) == []  # never two checks of one key at once
    s.finish("a", T0 + 300)
    assert s.queue.due("a") == after


def test_forget_is_the_handover_to_another_shard():
    """Relabelled away: the old shard's filtered watch says DELETED, the key leaves the queue."""
    s, _ = make(1)
    s.schedule("a", T0 + 10)
    s.forget("a")
    s.schedule("b", T0 + 20)
    assert s.start_due(T0 + 100) == ["b"]


def test_the_loop_runs_checks_and_beats():
    """The real loop: beats the heartbeat, runs due checks through ``check``, requeues them."""
    import asyncio

    checked: list = []
    beats: list = []
    clock = Clock()

    async def check(key):
        checked.append(key)
        return clock.now + 300

    async def main():
        s = Scheduler(check, max_concurrent=2, clock=clock, beat=lambda: beats.append(1), idle_wake=0.01)
        s.schedule("a", T0)
        s.schedule("b", T0 + 1000)
        task = asyncio.create_task(s.run())
        for _ in range(200):  # bounded
            await asyncio.sleep(0.005)
            if checked:
                break
        await asyncio.sleep(0.05)
        task.cancel()
        return s

    s = asyncio.run(main())
    assert checked == ["a"] and len(beats) > 1
    assert s.queue.due("a") == T0 + 300 and s.queue.due("b") == T0 + 1000


# --------------------------------------------------------------------------- ECRPullSecret refreshes


def test_refresh_time_is_the_status_next_refresh_time():
    assert sch.refresh_time({"nextRefreshTime": stamp(21600)}) == T0 + 21600
    assert sch.refresh_time({}) is None and sch.refresh_time({"nextRefreshTime": "garbage"}) is None


def test_a_refresh_is_an_entry_of_the_same_queue_and_bound():
    """Drift checks and token refreshes share one time order and one concurrency bound."""
    clock = Clock()
    s, _ = make(1, clock)
    s.schedule(("CrossAccountRepoAccess", "x"), T0 + 20)
    s.schedule(("ECRPullSecret", "p"), sch.refresh_time({"nextRefreshTime": stamp(10)}))
    clock.now = T0 + 30
    assert s.start_due(clock.now) == [("ECRPullSecret", "p")]  # earliest first, one at a time
    assert s.start_due(clock.now) == []
    s.finish(("ECRPullSecret", "p"), T0 + 21600)
    assert s.start_due(clock.now) == [("CrossAccountRepoAccess", "x")]


def test_a_handler_pass_replaces_the_last_checks_answer_even_when_sooner():
    """A failed refresh in a kopf handler retries after its backoff, not at the old floor."""
    clock = Clock()
    s, _ = make(1, clock)
    key = ("ECRPullSecret", "p")
    s.schedule(key, T0)
    s.start_due(T0)
    s.finish(key, T0 + 21600)
    s.schedule(key, T0 + 10)          # a watch event: cannot move the check earlier
    assert s.queue.due(key) == T0 + 21600
    s.replace(key, T0 + 10)           # the handler's own answer (retry backoff): can
    assert s.queue.due(key) == T0 + 10
    s.replace(key, None)              # nothing to refresh any more (an invalid spec)
    assert key not in s.queue
