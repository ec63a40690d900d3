"""Unit tests for the pure decisions in controller.reconcile.cross_account (injected clock)."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.api import reasons
from controller.reconcile import cross_account as xa

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "first_seen,now,within,retry_after",
    [
        (None, at(0), True, 5.0),
        (T0, at(5), True, 5.0),
        (T0, at(20), True, 20.0),
        (T0, at(60), True, 30.0),
        (T0, at(110), True, 10.0),  # the last retry lands at the window's end
        (T0, at(120), False, xa.PRINCIPAL_REJECTED_RETRY),
        (T0, at(3600), False, xa.PRINCIPAL_REJECTED_RETRY),
        (at(10), at(0), True, 5.0),  # a clock that went backwards is not "past the window"
    ],
    ids=["first-seen-now", "early", "growing", "capped", "window-end", "window-over", "long-over", "clock-skew"],
)
def test_principal_rejection_decision(first_seen, now, within, retry_after):
    decision = xa.principal_rejection_decision(first_seen, now)
    assert decision.within_window is within
    assert decision.retry_after == retry_after
    assert decision.first_seen == (first_seen or now)


def test_rejection_retries_fit_the_window():
    # following the decision's own delays reaches the verdict in about two minutes
    moment, steps = T0, 0
    while True:
        decision = xa.principal_rejection_decision(T0, moment)
        if not decision.within_window:
            break
        moment += dt.timedelta(seconds=decision.retry_after)
        steps += 1
    assert 5 <= steps <= 12
    assert (moment - T0) == xa.PRINCIPAL_PROPAGATION_WINDOW


def test_rfc3339_round_trip_and_bad_input():
    assert xa.rfc3339(at(1.5)) == "2026-01-01T12:00:01Z"
    assert xa.parse_rfc3339("2026-01-01T12:00:01Z") == at(1)
    assert xa.parse_rfc3339("yesterday") is None and xa.parse_rfc3339(None) is None


# Drift records (once per open drift, bounded) are the shared assembly's: tests/unit/test_drift_decisions.py
# and tests/unit/test_outcome.py.


def test_invalid_spec_result_has_no_retry_and_keeps_transition_time():
    def no_clients(*_):
        raise AssertionError("an invalid spec must not reach AWS")

    spec = {"repositories": ["App"], "grants": []}
    first = xa.reconcile("ns", "n", 1, spec, {}, clients_for=no_clients, cluster_id="c", now=lambda: T0)
    assert first.outcome == "invalid" and first.retry_after is None and not first.ready
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.INVALID_REPOSITORY_NAME
    assert "spec.grants" in ready["message"] and "spec.repositories[0]" in ready["message"]
    second = xa.reconcile("ns", "n", 1, spec, first.status, clients_for=no_clients, cluster_id="c", now=lambda: at(60))
    assert second.status == first.status


def test_grants_too_large_for_any_policy_are_reported_before_aws():
    def no_clients(region, role, external):
        class Clients:
            region = "us-east-1"

            def __call__(self, service):
                raise AssertionError("no AWS client may be used")

        return Clients()

    roles = [{"roleArn": f"arn:aws:iam::444455556666:role/a-rather-long-role-name-number-{i:04d}"} for i in range(200)]
    spec = {"repositories": ["ns/app"], "grants": [{"principals": roles, "access": "PullPush"}]}
    result = xa.reconcile("ns", "n", 1, spec, {}, clients_for=no_clients, cluster_id="c", now=lambda: T0)
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.REPOSITORY_POLICY_TOO_LARGE and "spec.grants[0]" in ready["message"]
    assert result.retry_after is None


def test_delete_of_an_invalid_spec_is_judged_by_the_tenancy_guard_before_aws():
    """An invalid spec is no way around the guard: its delete would act on what it names."""
    from controller import tenancy

    def no_clients(*_):
        raise AssertionError("a refused delete must not reach AWS")

    # grants [] is invalid; the repository and the role are another team's.
    for spec in ({"repositories": ["team-y/api"], "grants": []},
                 {"repositories": ["team-x/api"], "grants": [], "roleArn": "arn:aws:iam::111122223333:role/team-y"},
                 {"repositories": [], "repositoryPrefixes": ["ROOT"], "grants": []}):
        assert xa.validate_cross_account("team-x", "n", spec, cluster_id="c")[0] is None
        result = xa.delete("team-x", "n", 1, spec, {}, clients_for=no_clients, cluster_id="c", now=lambda: T0,
                           tenancy_policy=tenancy.SHIPPED)
        assert result.retry_after is None
        [event] = result.events
        assert event.reason == reasons.NOT_PERMITTED and "team-x" in event.message, spec

    # Inside the namespace's rules the same invalid spec's delete goes ahead (it must stay deletable).
    asked = []

    def recording(region, role, external):
        asked.append((region, role))
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError):
        xa.delete("team-x", "n", 1, {"repositories": ["team-x/api"], "grants": []}, {}, clients_for=recording,
                  cluster_id="c", now=lambda: T0, tenancy_policy=tenancy.SHIPPED)
    assert asked == [(None, None)]
