"""Unit tier: Reconciling / Stalled and observedGeneration, the status GitOps tools read.

``progress_conditions`` and ``settle`` (controller/reconcile) decide them once for both
kinds; these cases walk every outcome a reconcile of either kind ends with (given the Ready
condition it wrote and whether a retry is scheduled, then the conditions that come out).
"""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.handlers import source_changed
from controller.reconcile.conditions import get_condition, progress_conditions, set_condition
from controller.reconcile.result import ReconcileResult, settle, synced_generation

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def ready(status: bool, reason: str, message: str = "why") -> list[dict]:
    return set_condition(None, reasons.READY, status, reason, message, generation=3, now=T0)


# (id, outcome as the reconcilers name it, Ready it wrote, retry scheduled, expected abnormal condition)
CASES = [
    ("success", "success", ready(True, reasons.RECONCILED), False, None),
    ("success-drift-reported-rc", "success", ready(True, reasons.DRIFT_REPORTED), False, None),
    ("success-role-not-granted", "success", ready(False, reasons.EXECUTION_ROLE_NOT_GRANTED), False,
     (reasons.STALLED, reasons.EXECUTION_ROLE_NOT_GRANTED)),
    ("success-drift-reported-xrepo", "success", ready(False, reasons.DRIFT_REPORTED), False,
     (reasons.STALLED, reasons.DRIFT_REPORTED)),
    ("invalid-spec", "invalid", ready(False, reasons.INVALID_SPEC), False, (reasons.STALLED, reasons.INVALID_SPEC)),
    ("invalid-secret-name", "invalid", ready(False, reasons.INVALID_SECRET_NAME), False,
     (reasons.STALLED, reasons.INVALID_SECRET_NAME)),
    ("invalid-source-secret-missing", "invalid", ready(False, reasons.SOURCE_SECRET_NOT_FOUND), False,
     (reasons.RECONCILING_TYPE, reasons.SOURCE_SECRET_NOT_FOUND)),
    ("conflict", "conflict", ready(False, reasons.OWNERSHIP_CONFLICT), False,
     (reasons.STALLED, reasons.OWNERSHIP_CONFLICT)),
    ("error-access-denied", "error", ready(False, reasons.AWS_ACCESS_DENIED), False,
     (reasons.STALLED, reasons.AWS_ACCESS_DENIED)),
    ("error-policy-too-large", "error", ready(False, reasons.REPOSITORY_POLICY_TOO_LARGE), False,
     (reasons.STALLED, reasons.REPOSITORY_POLICY_TOO_LARGE)),
    ("drift-reported-stops-sequence", "drift", ready(False, reasons.DRIFT_REPORTED), False,
     (reasons.STALLED, reasons.DRIFT_REPORTED)),
    ("retry-throttled", "retry", ready(False, reasons.AWS_THROTTLED), True,
     (reasons.RECONCILING_TYPE, reasons.AWS_THROTTLED)),
    ("retry-unavailable", "retry", ready(False, reasons.AWS_UNAVAILABLE), True,
     (reasons.RECONCILING_TYPE, reasons.AWS_UNAVAILABLE)),
    ("retry-dependency-missing", "retry", ready(False, reasons.DEPENDENCY_MISSING), True,
     (reasons.RECONCILING_TYPE, reasons.DEPENDENCY_MISSING)),
    ("retry-principal-rejected-after-window", "retry", ready(False, reasons.PRINCIPAL_REJECTED), True,
     (reasons.STALLED, reasons.PRINCIPAL_REJECTED)),
]


@pytest.mark.parametrize("outcome, conditions, retry, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_progress_conditions_per_outcome(outcome, conditions, retry, expected):
    # The outcome and the retry flag travel together in every result the reconcilers build.
    assert (outcome == "retry") == retry
    out = progress_conditions(conditions, retry_pending=retry, generation=3, now=T1)
    abnormal = [c for c in out if c["type"] in (reasons.RECONCILING_TYPE, reasons.STALLED)]
    if expected is None:
        assert abnormal == []  # absent, as kstatus prefers, not False
    else:
        type_, reason = expected
        assert [(c["type"], c["status"], c["reason"]) for c in abnormal] == [(type_, "True", reason)]
        assert abnormal[0]["message"] == "why" and abnormal[0]["observedGeneration"] == 3
    assert get_condition(out, reasons.READY) == get_condition(conditions, reasons.READY)  # Ready untouched


@pytest.mark.parametrize("before, retry, after", [
    ("stalled", False, "ready"),
    ("reconciling", True, "stalled"),
    ("reconciling", True, "ready"),
    ("stalled", False, "reconciling"),
], ids=["stalled-then-fixed", "retrying-then-terminal", "retrying-then-ready", "stalled-then-retrying"])
def test_one_abnormal_condition_replaces_the_other(before, retry, after):
    start = {
        "stalled": (ready(False, reasons.OWNERSHIP_CONFLICT), False),
        "reconciling": (ready(False, reasons.AWS_THROTTLED), True),
    }[before]
    conditions = progress_conditions(start[0], retry_pending=start[1], generation=3, now=T0)
    new_ready = {
        "ready": (True, reasons.RECONCILED, False),
        "stalled": (False, reasons.AWS_ACCESS_DENIED, False),
        "reconciling": (False, reasons.DEPENDENCY_MISSING, True),
    }[after]
    conditions = set_condition(conditions, reasons.READY, new_ready[0], new_ready[1], "now", generation=4, now=T1)
    out = progress_conditions(conditions, retry_pending=new_ready[2], generation=4, now=T1)
    types = [c["type"] for c in out]
    expected = {"ready": [], "stalled": [reasons.STALLED], "reconciling": [reasons.RECONCILING_TYPE]}[after]
    assert [t for t in types if t in (reasons.RECONCILING_TYPE, reasons.STALLED)] == expected


def test_a_quiet_resync_gives_an_equal_list():
    conditions = progress_conditions(ready(False, reasons.AWS_THROTTLED), retry_pending=True, generation=3, now=T0)
    again = progress_conditions(conditions, retry_pending=True, generation=3, now=T1)
    assert again == conditions  # lastTransitionTime kept: no status patch
    assert get_condition(again, reasons.RECONCILING_TYPE)["lastTransitionTime"] == T0
    fine = set_condition(None, reasons.READY, True, reasons.RECONCILED, "ok", generation=3, now=T0)
    assert progress_conditions(fine, retry_pending=False, generation=3, now=T1) == fine


def test_no_ready_condition_no_verdict():
    assert progress_conditions([], retry_pending=True, generation=1) == []


# ------------------------------------------------------------------------------ settle


@pytest.mark.parametrize("outcome, retry_after", [
    ("success", None), ("invalid", None), ("conflict", None), ("error", None), ("retry", 5.0), ("drift", None),
], ids=["success", "invalid", "conflict", "error", "retry", "drift"])
def test_settle_sets_observed_generation_for_every_outcome(outcome, retry_after):
    # A reconciler that left observedGeneration at the last generation it applied.
    result = ReconcileResult(status={"observedGeneration": 1, "conditions": ready(outcome == "success", "X")},
                             retry_after=retry_after, outcome=outcome)
    settled = settle(result, 2)
    assert settled.status["observedGeneration"] == 2
    assert result.status["observedGeneration"] == 1  # the input is left alone
    assert settled.outcome == outcome and settled.retry_after == retry_after


def test_settle_of_a_settled_status_is_the_same_status():
    status = {"observedGeneration": 2, "conditions": progress_conditions(
        ready(False, reasons.OWNERSHIP_CONFLICT), retry_pending=False, generation=2, now=T0)}
    assert settle(ReconcileResult(status=status, outcome="conflict"), 2).status == status


@pytest.mark.parametrize("status, expected", [
    ({}, None),
    ({"observedGeneration": 4}, 4),  # written before syncedGeneration existed: only when synced
    ({"observedGeneration": 4, "syncedGeneration": 0}, 0),
    ({"observedGeneration": 4, "syncedGeneration": 3}, 3),
], ids=["never", "legacy", "observed-not-synced", "synced-older"])
def test_synced_generation(status, expected):
    assert synced_generation(status) == expected


def test_source_watch_waits_for_a_first_sync():
    # observedGeneration now comes with a failed first attempt too: the Secret watch must
    # not start a reconcile every tick beside kopf's own retry.
    assert not source_changed({"observedGeneration": 1, "syncedGeneration": 0}, {"metadata": {"resourceVersion": "9"}})
    assert source_changed({"observedGeneration": 1, "syncedGeneration": 1}, {"metadata": {"resourceVersion": "9"}})
