"""Pure drift decisions: when a check is due, which reported drift is still open, what is new.

``controller.handlers.drift_due`` (interval and per-resource jitter),
``controller.reconcile.steps.open_drift`` and
``controller.reconcile.outcome.merge_drift`` (record and announce
a drift once while it stays open under driftPolicy Report).
"""

from __future__ import annotations

import datetime as dt

import pytest

from controller import handlers
from controller.reconcile.outcome import merge_drift
from controller.reconcile.result import MAX_DRIFT_RECORDS
from controller.reconcile.steps import open_drift

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def stamp(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def drifted(status: str) -> dict:
    return {"type": "Drifted", "status": status, "reason": "DriftReported"}


CASES = {
    "never-synced": ({}, 10_000, False),
    "synced-just-now": ({"lastSyncTime": stamp(0)}, 1, False),
    "synced-one-interval-and-jitter-ago": ({"lastSyncTime": stamp(0)}, 300 * 1.1, True),
    "drift-check-time-wins-over-sync-time": ({"lastSyncTime": stamp(0), "lastDriftCheckTime": stamp(300)}, 400, False),
    "unparseable-time-falls-back": ({"lastSyncTime": stamp(0), "lastDriftCheckTime": "garbage"}, 400, True),
}


@pytest.mark.parametrize("status, elapsed, due", CASES.values(), ids=CASES.keys())
def test_drift_due(status, elapsed, due):
    now = T0.timestamp() + elapsed
    assert handlers.drift_due(status, "uid-1", 300, now) is due


def test_jitter_is_per_resource_bounded_and_stable():
    jitters = {handlers._jitter(f"uid-{i}") for i in range(200)}
    assert all(0 <= j <= handlers.DRIFT_JITTER for j in jitters)
    assert len(jitters) > 50  # resources spread out instead of checking in lockstep
    assert handlers._jitter("uid-7") == handlers._jitter("uid-7")


def test_open_drift_needs_drifted_true():
    records = [{"object": "rolePolicy/a", "field": "PolicyDocument", "remediated": False},
               {"object": "secret", "field": "Description", "remediated": True}]
    assert open_drift({"drift": records, "conditions": [drifted("True")]}) == {("rolePolicy/a", "PolicyDocument")}
    # a check that found nothing closed it: the same drift later is new again
    assert open_drift({"drift": records, "conditions": [drifted("False")]}) == set()
    assert open_drift({"drift": records}) == set()


def test_merge_drift_records_an_open_drift_once():
    pair = ("rolePolicy/a", "PolicyDocument")
    first, new = merge_drift({}, [pair, pair], False, stamp(0))
    assert new == [pair] and len(first) == 1
    status = {"drift": first, "conditions": [drifted("True")]}
    again, new = merge_drift(status, [pair, ("secret", "SecretString")], False, stamp(10))
    assert new == [("secret", "SecretString")] and len(again) == 2


def test_merge_drift_remediated_is_always_recorded_and_bounded():
    pair = ("taskDefinition/web", "containerDefinitions[app].repositoryCredentials")
    status: dict = {"drift": [], "conditions": [drifted("True")]}
    for i in range(MAX_DRIFT_RECORDS + 5):
        status["drift"], new = merge_drift(status, [pair], True, stamp(i))
        assert new == [pair]
    assert len(status["drift"]) == MAX_DRIFT_RECORDS
    assert status["drift"][-1]["time"] == stamp(MAX_DRIFT_RECORDS + 4)
