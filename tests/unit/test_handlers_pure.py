"""The few decisions the kopf glue makes are pure functions: test them without kopf running."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.handlers import _apply_status, _jitter, drift_due, source_changed


def at(seconds_ago: float, now: float) -> str:
    return dt.datetime.fromtimestamp(now - seconds_ago, dt.timezone.utc).isoformat().replace("+00:00", "Z")


NOW = 1_800_000_000.0


@pytest.mark.parametrize("status, interval, expected", [
    ({}, 300, False),
    ({"lastSyncTime": at(100, NOW)}, 300, False),
    ({"lastSyncTime": at(400, NOW)}, 300, True),
    ({"lastSyncTime": at(400, NOW), "lastDriftCheckTime": at(10, NOW)}, 300, False),
    ({"lastDriftCheckTime": at(331, NOW)}, 300, True),  # past interval + the 10 % maximum jitter
    ({"lastDriftCheckTime": "not a time"}, 300, False),
], ids=["never-synced", "recent-sync", "old-sync", "recent-check", "old-check", "garbage-time"])
def test_drift_due(status, interval, expected):
    assert drift_due(status, "uid-1", interval, NOW) is expected


def test_jitter_is_stable_and_bounded():
    values = {_jitter(f"uid-{i}") for i in range(200)}
    assert all(0 <= v <= 0.1 for v in values)
    assert len(values) > 20  # spread, not one value
    assert _jitter("uid-7") == _jitter("uid-7")


@pytest.mark.parametrize("status, secret, expected", [
    ({}, {"metadata": {"resourceVersion": "2"}}, False),
    ({"observedGeneration": 1, "sourceResourceVersion": "2"}, {"metadata": {"resourceVersion": "2"}}, False),
    ({"observedGeneration": 1, "sourceResourceVersion": "2"}, {"metadata": {"resourceVersion": "3"}}, True),
    ({"observedGeneration": 1, "sourceResourceVersion": None}, {"metadata": {"resourceVersion": "3"}}, True),
    ({"observedGeneration": 1, "sourceResourceVersion": "2"}, None, True),
    ({"observedGeneration": 1, "sourceResourceVersion": None}, None, False),
], ids=["never-reconciled", "same", "rotated", "appeared", "vanished", "still-missing"])
def test_source_changed(status, secret, expected):
    assert source_changed(status, secret) is expected


class FakePatch:
    def __init__(self) -> None:
        self.status: dict = {}


def test_apply_status_writes_only_changes_and_removes_dropped_keys():
    patch = FakePatch()
    assert not _apply_status(patch, {"a": 1, "b": [1]}, {"a": 1, "b": [1]})
    assert patch.status == {}
    assert _apply_status(patch, {"a": 1, "b": [1], "gone": "x"}, {"a": 2, "b": [1]})
    assert patch.status == {"a": 2, "gone": None}
