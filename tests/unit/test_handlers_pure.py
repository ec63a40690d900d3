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
    ({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": at(400, NOW)}]}, 300, True),
    ({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": at(10, NOW)}]}, 300, False),
], ids=["never-synced", "recent-sync", "old-sync", "recent-check", "old-check", "garbage-time",
        "refused-long-ago-retries", "refused-recently-waits"])
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


def test_a_drift_check_of_an_invalid_spec_is_stamped_and_quiet():
    """Otherwise drift_due stays true and the timer re-validates every tick."""
    import datetime as dt

    from controller.reconcile import cross_account as xrepo
    from controller.reconcile import registry_credential as rc

    request = rc.Request("ns", "n", 1, {"source": {"secretRef": {"name": "s"}}}, {}, None, "c", drift_check=False)
    first = rc.reconcile(request, clients_for=None)
    again = rc.reconcile(rc.Request("ns", "n", 1, request.spec, first.status, None, "c", drift_check=True), clients_for=None)
    assert first.events and not again.events
    assert "lastDriftCheckTime" in again.status and "lastDriftCheckTime" not in first.status

    now = lambda: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # noqa: E731
    spec = {"repositories": ["app"], "grants": []}
    first = xrepo.reconcile("ns", "n", 1, spec, {}, clients_for=None, cluster_id="c", now=now)
    again = xrepo.reconcile("ns", "n", 1, spec, first.status, clients_for=None, cluster_id="c", now=now, drift_check=True)
    assert first.events and not again.events
    assert again.status["lastDriftCheckTime"] and "lastDriftCheckTime" not in first.status


def test_no_kopf_timer_or_daemon_per_resource():
    """Idle work must not grow with the resources: one scheduler, fed by watch events."""
    from controller import handlers
    from controller.aws.clients import ClientFactory
    from controller.settings import Settings

    runtime = handlers.Runtime(settings=Settings(), factory=ClientFactory())
    registry = handlers.build_registry(runtime)
    assert registry._spawning.get_all_handlers() == []  # kopf's timers and daemons
    assert {h.id for h in registry._indexing.get_all_handlers()} == {
        "source_secrets", "rc_bodies", "xrepo_bodies", "tenancy_policies"}
    assert runtime.scheduler is not None and runtime.scheduler.max_concurrent == Settings().max_concurrent_drift_checks


@pytest.mark.parametrize("shard, selector", [("", "!regaccess.io/shard"), ("a", "regaccess.io/shard=a")],
                         ids=["default-shard-takes-the-unlabelled", "named-shard"])
def test_shard_selector(shard, selector):
    from controller.handlers import shard_selector

    assert shard_selector(shard) == selector


@pytest.mark.parametrize("argv, limit", [
    ([], 4 + 5 + 32),
    (["-n", "a", "-n", "b", "-n", "c"], 3 * 4 + 5 + 32),
    (["-n", "a", "--kube-connections", "8"], 4 + 5 + 8),
    (["--kube-connections", "0"], None),
    (["-n", "team-*"], None),
    (["-n", "a", "-n", "!b"], None),
    (["-n", "a", "-n", "b", "-n", "c", "--peering", "p"], 3 * 5 + 5 + 32),
], ids=["all-namespaces", "three-namespaces", "fewer-requests", "zero-is-no-bound",
        "a-pattern-is-no-bound", "a-negation-is-no-bound", "peering-watched-per-namespace"])
def test_connection_limit_leaves_one_per_watch_stream_and_bounds_requests(argv, limit):
    import argparse

    from controller.handlers import connection_limit
    from controller.settings import add_run_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, {})
    assert connection_limit(settings_from_args(parser.parse_args(argv), {})) == limit


def test_bounded_session_keeps_kopfs_credentials_and_tls():
    """The session kopf gets carries the same Authorization header and TLS settings kopf builds."""
    import asyncio

    import kopf

    from controller.handlers import bounded_session

    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", token="t0ken", insecure=True,
                               default_namespace="ns", priority=7)

    async def build():
        context = bounded_session(info, 12)
        try:
            connector = context.aiohttp_session.connector
            return (context.server, context.default_namespace, context.priority, connector.limit,
                    dict(context.aiohttp_session.headers), connector._ssl.verify_mode)
        finally:
            await context.aiohttp_session.close()

    import ssl

    server, namespace, priority, limit, headers, verify = asyncio.run(build())
    assert (server, namespace, priority, limit) == ("https://127.0.0.1:6443", "ns", 7, 12)
    assert headers["Authorization"] == "Bearer t0ken"
    assert verify == ssl.CERT_NONE  # insecure=True, as kopf's own context would have it


def test_handlers_keep_no_timers_of_their_own():
    """One scheduler (controller.scheduler): refreshes and drift checks are its entries, not asyncio timers."""
    import inspect

    from controller import handlers

    source = inspect.getsource(handlers)
    for timer in ("call_later", "call_at", "TimerHandle", "asyncio.sleep"):
        assert timer not in source, f"controller/handlers.py uses {timer}: schedule through runtime.scheduler"
