"""The performance benchmark still runs: ``bench/perf_bench.py`` at a tiny N, end to end.

Figures are not judged here (the benchmark is where they are printed, on a quiet machine);
this only proves that anyone can still run it: given KUBEBUILDER_ASSETS, when the benchmark
runs one warm latency run and N=3 applied at once, then it exits 0, writes its JSON with a
latency row, a throughput row for the 3 resources (all made Ready, the AWS calls counted),
and a goals table. It broke once unnoticed when the client it used changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_the_perf_benchmark_runs_at_a_tiny_n(control_plane, tmp_path):
    out = tmp_path / "perf.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench.perf_bench", "--runs", "1", "--n", "3",
                           "--skip-steady-state", "--no-baseline", "--idle-seconds", "1",
                           "--max-seconds", "240", "--json", str(out), "--workdir", str(tmp_path / "work")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["latency"]["runs"] == 1 and report["latency"]["operator_median_seconds"] > 0
    assert "secretsmanager:CreateSecret" in report["latency"]["create_operations"]
    (row,) = report["throughput"]
    assert row["n"] == 3 and row["ready_seconds"] > 0
    assert row["calls_by_operation"]["secretsmanager:CreateSecret"] == 3
    assert row["operator_peak_rss_mib"] > 0
    assert any(goal.startswith("N=3: peak RSS") for goal, _, _ in report["goals"])
    assert "goals" in done.stdout
