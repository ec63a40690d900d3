"""The benchmark's pure helpers: N[:shape] parsing and the per-N goals (bench/perf_bench.py)."""

from __future__ import annotations

import argparse

import pytest

from bench import perf_bench


def test_counts_take_an_optional_shape_per_n():
    assert perf_bench.parse_counts("1000,10000:secret") == [(1000, None), (10000, ("secret",))]
    assert perf_bench.parse_counts("5:secret+policy") == [(5, ("secret", "policy"))]
    with pytest.raises(argparse.ArgumentTypeError):
        perf_bench.parse_counts("5:policy")  # every shape has the secret


def _tp(n, rss, idle, cpu_ms, ratio):
    return {"n": n, "ratio": ratio, "throttled_surfaced": 0, "operator_peak_rss_mib": rss,
            "idle_operator_cpu_seconds": idle, "idle_seconds": 20.0, "cpu_ms_per_create": cpu_ms}


def test_goals_are_judged_per_n_against_the_issue_figures():
    goals = {g: ok for g, _, ok in perf_bench.goals({"throughput": [
        _tp(1000, 190.0, 0.5, 25.0, 1.2), _tp(10000, 960.0, 1.5, 10.0, 1.3)]})}
    assert goals["N=1000: peak RSS < 200 MB"] is True      # 190 MiB = 199 MB
    assert goals["N=10000: peak RSS < 1000 MB"] is False   # 960 MiB = 1007 MB
    assert goals["N=1000: CPU per create <= 20 ms"] is False
    assert goals["N=10000: idle CPU < 1 s per 20 s"] is False
    assert goals["N=1000: Ready <= 1.25x quota floor"] is True
    assert goals["N=10000: Ready <= 1.25x quota floor"] is False


@pytest.mark.parametrize("values, fraction, expected", [
    ([3.0, 1.0, 2.0], 0.5, 2.0),
    (list(map(float, range(1, 101))), 0.5, 50.0),
    (list(map(float, range(1, 101))), 0.95, 95.0),
    (list(map(float, range(1, 51))), 0.95, 48.0),
    ([7.0], 0.95, 7.0),
], ids=["odd-median", "p50-of-100", "p95-of-100", "p95-of-50", "one-value"])
def test_events_bench_percentile_is_nearest_rank(values, fraction, expected):
    from bench import events_bench

    assert events_bench.percentile(values, fraction) == expected


def test_events_bench_mean_reconcile_is_the_trigger_s_delta_between_two_scrapes():
    from bench import events_bench

    def scrape(total, count):
        return {("regaccess_reconcile_duration_seconds_sum", (("kind", "RegistryCredential"), ("trigger", "event"))): total,
                ("regaccess_reconcile_duration_seconds_count", (("kind", "RegistryCredential"), ("trigger", "event"))): count,
                ("regaccess_reconcile_duration_seconds_sum", (("kind", "RegistryCredential"), ("trigger", "create"))): 9.0}

    assert events_bench.mean_reconcile(scrape(1.0, 10), scrape(3.0, 60), "event") == 0.04
    assert events_bench.mean_reconcile(scrape(1.0, 10), scrape(1.0, 10), "event") is None  # nothing ran


def _obj(finalizers=None, status=None, ready=False):
    status = dict(status or {})
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    return {"metadata": {"finalizers": finalizers} if finalizers else {}, "status": status}


def test_the_latency_timeline_names_each_write_and_counts_repeats():
    first = _obj(["regaccess.io/finalizer"])
    assert perf_bench.what_changed(_obj(), first) == "finalizer"
    record = _obj(["regaccess.io/finalizer"], {"managed": [{"kind": "taskDefinition"}]})
    assert perf_bench.what_changed(first, record) == "status"
    assert perf_bench.what_changed(record, _obj(["regaccess.io/finalizer"], ready=True)) == "Ready"

    class Call:
        def __init__(self, t):
            self.time = t

    line = perf_bench.timeline(100.0, 100.008, [(100.015, "finalizer"), (100.05, "status"), (100.052, "status"),
                                                (100.06, "Ready")], [Call(100.03), Call(100.02)])
    assert line == {"POST answered": 8.0, "first AWS answer": 20.0, "last AWS answer": 30.0, "finalizer": 15.0,
                    "status": 50.0, "status 2": 52.0, "Ready": 60.0}
    # Medians per step over the runs that had it, in time order.
    assert perf_bench.median_timeline([{"Ready": 60.0, "finalizer": 15.0}, {"Ready": 50.0, "finalizer": 17.0},
                                       {"Ready": 70.0, "finalizer": 16.0, "status": 40.0}]) == \
        {"finalizer": 16.0, "status": 40.0, "Ready": 60.0}
