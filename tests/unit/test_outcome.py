"""The one outcome assembly (controller.reconcile.outcome) both custom resources use.

Given what a pass found (failures, drift, writes), when ``assemble`` builds the
status, then conditions, drift records, Events, retry and outcome follow one rule
for both kinds; and a pass that finds what the last one found changes nothing.
"""

from __future__ import annotations

import pytest

from controller.api import reasons
from controller.reconcile.conditions import get_condition
from controller.reconcile.outcome import (
    MSG_NO_DRIFT,
    RETRY_DEPENDENCY,
    RETRY_TRANSIENT,
    Pass,
    assemble,
    invalid,
    status_row,
)
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepError

PAIR = ("repositoryPolicy/app", "Statement[RegaccessX]")
THROTTLED = StepError(reasons.AWS_THROTTLED, "repository app: ThrottlingException", True)
MISSING = StepError(reasons.DEPENDENCY_MISSING, "repository b does not exist (yet)", True)
DENIED = StepError(reasons.AWS_ACCESS_DENIED, "repository c: AccessDenied", False)
CONFLICT = StepError(reasons.OWNERSHIP_CONFLICT, "secret x carries the mark of c/ns/other", False)
SLOW = StepError(reasons.PRINCIPAL_REJECTED, "ECR rejected the policy", True, 300.0)
SECRET_GONE = StepError(reasons.DRIFT_REPORTED, "secret 'x' was deleted outside regaccess", False)


def one(found: Pass, previous: dict | None = None):
    previous = previous or {}
    return assemble(previous, dict(previous), found)


def cond(result, type_: str) -> tuple[str, str] | None:
    c = get_condition(result.status.get("conditions"), type_)
    return (c["status"], c["reason"]) if c else None


# ---- given a pass, then Ready / Synced / Drifted, outcome, retry

CASES = {
    "converged": (Pass(1, "t1", wrote=True), ("True", "Reconciled"), ("True", "Reconciled"),
                  ("False", "NoDrift"), "success", None),
    "first-failure-names-the-reason": (Pass(1, "t1", failures=[DENIED, THROTTLED], judged=False), ("False", "AwsAccessDenied"),
                                       ("False", "AwsAccessDenied"), None, "retry", RETRY_TRANSIENT),
    "dependency-retry": (Pass(1, "t1", failures=[MISSING], judged=False), ("False", "DependencyMissing"),
                         ("False", "DependencyMissing"), None, "retry", RETRY_DEPENDENCY),
    "smallest-hint-wins": (Pass(1, "t1", failures=[SLOW, MISSING], judged=False), ("False", "PrincipalRejected"),
                           ("False", "PrincipalRejected"), None, "retry", RETRY_DEPENDENCY),
    # the object was compared before its write failed: Drifted may still say so
    "terminal-after-compare": (Pass(1, "t1", failures=[DENIED]), ("False", "AwsAccessDenied"),
                               ("False", "AwsAccessDenied"), ("False", "NoDrift"), "error", None),
    "conflict": (Pass(1, "t1", failures=[CONFLICT], judged=False), ("False", "OwnershipConflict"), ("False", "OwnershipConflict"),
                 None, "conflict", None),
    "report-drift": (Pass(1, "t1", drift=[PAIR]), ("False", "DriftReported"), ("False", "DriftReported"),
                     ("True", "DriftReported"), "drift", None),
    "remediated": (Pass(1, "t1", drift=[PAIR], remediated=True, wrote=True), ("True", "Reconciled"),
                   ("True", "Reconciled"), ("False", "DriftRemediated"), "success", None),
    "report-drift-that-stopped-the-pass": (Pass(1, "t1", failures=[SECRET_GONE], drift=[("secret", "existence")],
                                                judged=False),
                                           ("False", "DriftReported"), ("False", "DriftReported"),
                                           ("True", "DriftReported"), "drift", None),
    "not-compared-says-nothing-about-drift": (Pass(1, "t1", failures=[THROTTLED], judged=False),
                                              ("False", "AwsThrottled"), ("False", "AwsThrottled"), None, "retry",
                                              RETRY_TRANSIENT),
    "written-but-not-usable": (Pass(1, "t1", not_ready=(reasons.EXECUTION_ROLE_NOT_GRANTED, "role x")),
                               ("False", "ExecutionRoleNotGranted"), ("True", "Reconciled"), ("False", "NoDrift"),
                               "success", None),
}


@pytest.mark.parametrize("found, ready, synced, drifted, outcome, retry", CASES.values(), ids=CASES.keys())
def test_conditions_outcome_and_retry(found, ready, synced, drifted, outcome, retry):
    result = one(found)
    assert cond(result, "Ready") == ready
    assert cond(result, "Synced") == synced
    assert cond(result, "Drifted") == drifted
    assert (result.outcome, result.retry_after) == (outcome, retry)
    assert ("lastSyncTime" in result.status) is (outcome == "success")


def test_all_failure_messages_are_joined_and_the_retry_says_why():
    result = one(Pass(1, "t1", failures=[DENIED, THROTTLED]))
    ready = get_condition(result.status["conditions"], "Ready")
    assert ready["message"] == f"{DENIED.message}; {THROTTLED.message}"
    assert result.retry_reason == THROTTLED.message


# ---- Events

def test_failure_warning_is_posted_once_per_problem():
    first = one(Pass(1, "t1", failures=[MISSING]))
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "DependencyMissing")]
    again = assemble(first.status, dict(first.status), Pass(1, "t2", failures=[MISSING]))
    assert again.events == [] and again.status == first.status


def test_a_step_that_warned_is_not_warned_twice():
    result = one(Pass(1, "t1", failures=[MISSING], events=[warning("X", "x")], warned=True))
    assert [e.reason for e in result.events] == ["X"]


def test_reported_drift_is_recorded_and_announced_once_and_counted_each_time():
    first = one(Pass(1, "t1", drift=[PAIR]))
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "DriftDetected"), ("Warning", "DriftReported")]
    assert all(f"{PAIR[0]}.{PAIR[1]}" in e.message for e in first.events)
    assert first.status["drift"] == [{"object": PAIR[0], "field": PAIR[1], "time": "t1", "remediated": False}]
    again = assemble(first.status, dict(first.status), Pass(1, "t2", drift=[PAIR], drift_check=True))
    assert again.events == [] and again.status["drift"] == first.status["drift"]
    assert first.drift_found == again.drift_found == {"repositoryPolicy": 1} and again.drift_remediated == {}
    # First seen once: drift left in place is not news at the next check (the silent-queue alert).
    assert first.drift_first_seen == {"repositoryPolicy": 1} and again.drift_first_seen == {}


def test_a_step_event_for_reported_drift_is_not_doubled():
    result = one(Pass(1, "t1", drift=[PAIR], events=[warning(reasons.DRIFT_REPORTED, "rolePolicy/a: ...")]))
    assert [e.reason for e in result.events] == [reasons.DRIFT_REPORTED, "DriftDetected"]


def test_remediated_drift_events_and_records():
    result = one(Pass(1, "t1", drift=[PAIR], remediated=True, wrote=True))
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "DriftDetected"), ("Normal", "DriftRemediated")]
    assert result.status["drift"][-1]["remediated"] is True
    assert result.drift_remediated == {"repositoryPolicy": 1}
    assert result.drift_first_seen == {"repositoryPolicy": 1}  # each repaired drift is news


def test_remediated_stays_until_something_changes_so_a_quiet_check_writes_nothing():
    repaired = one(Pass(1, "t1", drift=[PAIR], remediated=True, wrote=True))
    quiet = assemble(repaired.status, dict(repaired.status), Pass(1, "t2"))
    assert quiet.status == repaired.status and quiet.events == []


def test_noop_resync_is_an_identical_status():
    first = one(Pass(1, "t1", wrote=True, events=[normal("Reconciled", "wrote")]))
    second = assemble(first.status, dict(first.status), Pass(1, "t2"))
    assert second.status == first.status and second.events == []
    assert get_condition(second.status["conditions"], "Drifted")["message"] == MSG_NO_DRIFT


def test_observed_generation_after_a_failure_only_when_rows_carry_progress():
    previous = {"observedGeneration": 1}
    assert one(Pass(2, "t1", failures=[MISSING]), previous).status["observedGeneration"] == 1
    assert one(Pass(2, "t1", failures=[MISSING], generation_always=True), previous).status["observedGeneration"] == 2


# ---- invalid input and rows

def test_invalid_warns_once_and_keeps_the_status():
    from controller.api.validation import Problem

    problems = [Problem(reasons.INVALID_GRANT, "spec.grants[0]", "bad")]
    first = invalid({}, 3, problems, "t1")
    assert cond(first, "Ready") == cond(first, "Synced") == ("False", reasons.INVALID_GRANT)
    assert first.outcome == "invalid" and [e.type for e in first.events] == ["Warning"]
    again = invalid(first.status, 3, problems, "t2", drift_check=True)
    assert again.events == [] and again.status["lastDriftCheckTime"] == "t2"
    assert again.status["conditions"] == first.status["conditions"]


ROWS = {
    "managed": (dict(kind="rolePolicy"), "Synced",
                {"kind": "rolePolicy", "name": "n", "arn": "a", "state": "Synced", "message": ""}),
    "repositories-synced": ({}, "Synced", {"name": "n", "arn": "a", "synced": True, "message": ""}),
    "repositories-rejected": (dict(rejectedSince="t0"), "Error",
                              {"name": "n", "arn": "a", "synced": False, "message": "", "rejectedSince": "t0"}),
    "extra-unset-is-left-out": (dict(rejectedSince=None), "Pending", {"name": "n", "arn": "a", "synced": False,
                                                                       "message": ""}),
}


@pytest.mark.parametrize("extra, state, row", ROWS.values(), ids=ROWS.keys())
def test_status_row_shapes(extra, state, row):
    assert status_row("n", "a", state, **extra) == row
