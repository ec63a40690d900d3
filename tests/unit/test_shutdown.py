"""controller.shutdown.TrackingExecutor and the shutdown/rate-limit settings (no AWS, no kopf)."""

from __future__ import annotations

import argparse
import threading

import pytest

from controller.settings import add_run_arguments, settings_from_args
from controller.shutdown import TrackingExecutor


def test_drain_waits_for_work_in_flight_and_cancels_the_queue():
    release = threading.Event()
    started = threading.Event()
    executor = TrackingExecutor(max_workers=1)
    running = executor.submit(lambda: (started.set(), release.wait(5)))
    queued = executor.submit(lambda: "never")
    started.wait(5)
    assert executor.in_flight() == 2
    threading.Timer(0.05, release.set).start()
    assert executor.drain(timeout=5) == 0
    assert running.done() and queued.cancelled()
    assert executor.in_flight() == 0


def test_drain_is_bounded_and_says_what_it_left():
    stuck = threading.Event()
    executor = TrackingExecutor(max_workers=2)
    executor.submit(stuck.wait, 10)
    assert executor.drain(timeout=0.05) == 1
    assert executor.in_flight() == 1
    stuck.set()


def test_drain_with_nothing_in_flight():
    assert TrackingExecutor(max_workers=1).drain(timeout=0) == 0


def _parse(argv, env=None):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, environ=env or {})
    return settings_from_args(parser.parse_args(argv), environ=env or {})


def test_rate_limits_option_and_env():
    assert _parse([]).aws_rate_limits == ""
    assert _parse(["--aws-rate-limits", "ecs:RegisterTaskDefinition=1/20"]).aws_rate_limits == "ecs:RegisterTaskDefinition=1/20"
    assert _parse([], {"REGACCESS_AWS_RATE_LIMITS": "batch:*=50"}).aws_rate_limits == "batch:*=50"
    assert _parse([], {"REGACCESS_SHUTDOWN_TIMEOUT": "5"}).shutdown_timeout == 5.0
    assert _parse([]).shutdown_timeout == 20.0


@pytest.mark.parametrize("bad", ["ecs", "ecs:Op=0", "ecs:Op=1/0"])
def test_bad_rate_limits_stop_startup(bad, capsys):
    with pytest.raises(SystemExit):
        _parse(["--aws-rate-limits", bad])
    err = capsys.readouterr().err
    assert repr(bad) in err and ("RATE" in err or "BURST" in err)
