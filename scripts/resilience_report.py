#!/usr/bin/env python3
"""Run the resilience scenarios and print their figures.

Anyone can run it from the project's root (it needs the e2e tier's control
plane: KUBEBUILDER_ASSETS, defaulting to ../shared/envtest/bin when present):

    .venv/bin/python scripts/resilience_report.py            # runs the tests, about 4 minutes
    .venv/bin/python scripts/resilience_report.py --from DIR # only prints figures a run left in DIR

It runs tests/e2e/test_soak.py, test_crash.py, test_bad_input.py,
test_leaks.py and tests/unit/test_fuzz.py with pytest; the e2e tests write
their measured figures as JSON into $REGACCESS_RESILIENCE_FIGURES
(tests/e2e/resilience.py ``record_figures``), which this script reads back and
prints. Exit status: non-zero when a test failed or any leak was found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/e2e/test_soak.py", "tests/e2e/test_crash.py", "tests/e2e/test_bad_input.py",
         "tests/e2e/test_leaks.py", "tests/unit/test_fuzz.py"]


def run_tests(figures: Path, seed: str | None) -> int:
    env = dict(os.environ, REGACCESS_RESILIENCE_FIGURES=str(figures))
    if seed:
        env["REGACCESS_RESILIENCE_SEED"] = seed
    default_assets = ROOT.parent / "shared" / "envtest" / "bin"
    if not env.get("KUBEBUILDER_ASSETS") and default_assets.exists():
        env["KUBEBUILDER_ASSETS"] = str(default_assets)
    env.setdefault("REGACCESS_REQUIRE_E2E", "1")  # a skipped e2e tier would report nothing
    command = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:warnings", "-p", "no:cacheprovider"]
    print("$", " ".join(command), file=sys.stderr)
    return subprocess.call(command, cwd=ROOT, env=env)


def load(figures: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(figures.glob("*.json"))}


def report(found: dict[str, dict]) -> list[tuple[str, object]]:
    soak, crash = found.get("soak", {}), found.get("crash", {})
    sigterm, bad, leaks = found.get("sigterm", {}), found.get("bad_input", {}), found.get("leaks", {})
    converged = sum(f.get("resources_converged", 0) for f in (soak, crash, sigterm))
    return [
        ("faults injected (soak)", soak.get("faults_injected")),
        ("  by kind", soak.get("faults_by_kind")),
        ("  failure rate configured", soak.get("fault_rate")),
        ("  AWS calls during soak", soak.get("aws_calls")),
        ("  throttles counted by the operator", soak.get("throttles_counted")),
        ("  seconds waited in the rate limiter", soak.get("rate_limit_wait_seconds")),
        ("  seconds to all Ready / converged", f"{soak.get('seconds_to_ready')} / {soak.get('seconds_to_converged')}"),
        ("kill -9 rounds survived", f"{crash.get('rounds_survived')} of {crash.get('rounds')}"),
        ("kube-apiserver restarts survived", crash.get("apiserver_restarts")),
        ("SIGTERM mid-reconcile: exit seconds", sigterm.get("sigterm_exit_seconds")),
        ("resources converged (soak + crash + sigterm)", converged),
        ("resources deleted without leftovers", soak.get("deleted", 0) + crash.get("resources_deleted_cleanly", 0)),
        ("duplicate revisions / orphaned secrets / lost secrets",
         "/".join(str(sum(f.get(k, 0) for f in (soak, crash, sigterm)))
                  for k in ("duplicate_revisions", "orphaned_secrets", "lost_secrets"))),
        ("bad inputs tried", bad.get("bad_inputs_tried")),
        ("  refused at admission (422)", bad.get("rejected_at_admission")),
        ("  semantic: reason + Warning", bad.get("semantic_with_reason_and_warning")),
        ("  AWS calls made for invalid resources", bad.get("aws_calls_for_invalid")),
        ("leak scenarios / bytes scanned", f"{leaks.get('scenarios')} / {leaks.get('bytes_scanned')}"),
        ("leaks found", leaks.get("leaks_found")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", metavar="DIR", help="read figures from DIR instead of running tests")
    parser.add_argument("--seed", help="REGACCESS_RESILIENCE_SEED for the scenarios (default: the tests' own)")
    args = parser.parse_args(argv)
    status = 0
    if args.source:
        figures = Path(args.source)
    else:
        figures = Path(tempfile.mkdtemp(prefix="regaccess-resilience-"))
        status = run_tests(figures, args.seed)
    found = load(figures)
    if not found:
        print(f"no figures in {figures}", file=sys.stderr)
        return status or 1
    print(f"\nregaccess resilience report (figures in {figures})")
    for label, value in report(found):
        print(f"  {label:<52} {value}")
    if (found.get("leaks") or {}).get("leaks_found", 1) != 0:
        status = status or 1
    print("\nresult:", "PASS" if status == 0 else "FAIL (see the pytest output above)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
