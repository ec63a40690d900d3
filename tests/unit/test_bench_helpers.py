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
