"""Benchmark: what a drift check and a no-op resync cost, per managed AWS object, at N resources.

Run by hand (or CI, for figures; it asserts nothing about speed):

    KUBEBUILDER_ASSETS=../shared/envtest/bin .venv/bin/python -m bench.drift_bench --n 100
    .venv/bin/python -m bench.drift_bench --n 1000 --kubeconfig ~/.kube/test-cluster --json out.json

It starts the AWS test server (``tests.harness.awsserver``, moto + the
pull-through cache stand-in, with a call record) in this process, a
kube-apiserver from KUBEBUILDER_ASSETS (unless ``--kubeconfig`` names a test
cluster, token auth), and the operator as a real process
(``python -m controller run``). It creates N RegistryCredentials (each: a
secret, a role policy, a task definition and a job definition: 4 AWS objects)
and N/10 CrossAccountRepoAccess (each: 2 repository policies), then measures:

1. create: until every resource is Ready;
2. drift check: one full round of timer-driven drift checks (every resource's
   lastDriftCheckTime moves past the mark);
3. no-op resync: the operator restarted (kopf's resume handlers reconcile
   every resource; nothing changed, so nothing may be written).

For each phase: AWS calls by operation (from the server's call record), reads
and writes per managed object, wall time, mean reconcile duration (from the
operator's own histogram), operator CPU seconds (utime+stime from
/proc/PID/stat) and peak RSS (VmHWM from /proc/PID/status). Prints a table and
writes JSON. Every wait is bounded (``--max-seconds`` for the whole run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from bench.common import (  # noqa: E402 - also puts the repository on sys.path
    REGION, ControlPlane, Deadline, Operator, b64, metric_sum, parse_time, start_operator,
)
from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS  # noqa: E402
from tests.e2e.kube import Kube, condition, registry_credential  # noqa: E402
from tests.harness import awsserver, world  # noqa: E402

RC_OBJECTS = 4      # secret, role policy, task definition, job definition
XREPO_REPOSITORIES = 2


# --------------------------------------------------------------------------- setup


def create_aws(n: int, n_xrepo: int) -> None:
    """What users' pipelines create before the custom resources (not counted in any phase)."""
    client = boto3.session.Session(region_name=REGION).client
    for i in range(n):
        # A role per resource: inline policies of one role share a 10,240-character budget.
        role_arn = world.make_role(client, f"bench-exec-{i}")
        world.register_family(client, f"bench-web-{i}", role_arn)
        world.register_job(client, f"bench-job-{i}", role_arn)
    for i in range(n_xrepo):
        for j in range(XREPO_REPOSITORIES):
            world.make_repository(client, f"bench/app-{i}-{j}")


def create_kube(kube: Kube, namespace: str, n: int, n_xrepo: int) -> None:
    kube.create_namespace(namespace)
    for i in range(n):
        kube.create(kube.secret_path(namespace), {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": f"src-{i}"}, "data": {"username": b64("robot"), "password": b64(f"pw-{i}")}})
        kube.create(kube.rc_path(namespace), registry_credential(namespace, f"cred-{i}", {
            "source": {"secretRef": {"name": f"src-{i}"}},
            "secret": {"forceDeleteWithoutRecovery": True},
            "grants": {"executionRoles": [f"bench-exec-{i}"]},
            "consumers": {"ecsTaskDefinitions": [{"family": f"bench-web-{i}"}],
                          "batchJobDefinitions": [{"name": f"bench-job-{i}"}]},
        }))
    for i in range(n_xrepo):
        kube.create(kube.rc_path(namespace, plural=CROSS_ACCOUNT_REPO_ACCESS.plural), {
            "apiVersion": "regaccess.io/v1alpha1", "kind": "CrossAccountRepoAccess",
            "metadata": {"name": f"pullers-{i}"},
            "spec": {"repositories": [f"bench/app-{i}-{j}" for j in range(XREPO_REPOSITORIES)],
                     "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}})


def list_all(kube: Kube, namespace: str) -> list[dict]:
    items = kube.get(kube.rc_path(namespace))["items"]
    items += kube.get(kube.rc_path(namespace, plural=CROSS_ACCOUNT_REPO_ACCESS.plural))["items"]
    return items


# --------------------------------------------------------------------------- measuring


class Phase:
    """Calls, CPU and time between start() and stop()."""

    def __init__(self, name: str, server: Any, operator: Operator, objects: int) -> None:
        self.name, self.server, self.operator, self.objects = name, server, operator, objects

    def start(self) -> None:
        self.mark = self.server.calls.mark()
        self.cpu0 = self.operator.cpu_seconds()
        self.metrics0 = self.operator.metrics()
        self.t0 = time.monotonic()

    def stop(self, trigger: str) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        calls = self.server.calls.list(since=self.mark)
        writes = [f"{c.service}:{c.operation}" for c in self.server.calls.writes(since=self.mark)]
        by_operation = Counter(f"{c.service}:{c.operation}" for c in calls)
        metrics1 = self.operator.metrics()
        reconciles = {kind: metric_sum(metrics1, "regaccess_reconcile_total", kind=kind, trigger=trigger)
                      - metric_sum(self.metrics0, "regaccess_reconcile_total", kind=kind, trigger=trigger)
                      for kind in ("RegistryCredential", "CrossAccountRepoAccess")}
        seconds = (metric_sum(metrics1, "regaccess_reconcile_duration_seconds_sum", trigger=trigger)
                   - metric_sum(self.metrics0, "regaccess_reconcile_duration_seconds_sum", trigger=trigger))
        count = sum(reconciles.values())
        objects_checked = reconciles["RegistryCredential"] * RC_OBJECTS + reconciles[
            "CrossAccountRepoAccess"] * XREPO_REPOSITORIES
        reads = len(calls) - len(writes)
        return {
            "phase": self.name,
            "trigger": trigger,
            "reconciles": reconciles,
            "aws_calls": len(calls),
            "aws_reads": reads,
            "aws_writes": len(writes),
            "write_operations": dict(Counter(writes)),
            "reads_per_object": round(reads / objects_checked, 3) if objects_checked else None,
            "writes_per_object": round(len(writes) / objects_checked, 3) if objects_checked else None,
            "calls_by_operation": dict(sorted(by_operation.items())),
            "wall_seconds": round(wall, 2),
            "mean_reconcile_seconds": round(seconds / count, 4) if count else None,
            "operator_cpu_seconds": round(self.operator.cpu_seconds() - self.cpu0, 2),
            "operator_peak_rss_mib": round(self.operator.peak_rss_mib(), 1),
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = Deadline(args.max_seconds)
    workdir = Path(args.workdir or f"/tmp/regaccess-bench-{uuid.uuid4().hex[:6]}")
    workdir.mkdir(parents=True, exist_ok=True)
    server = awsserver.start(port=0)
    os.environ.update({"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION})
    cp: ControlPlane | None = None
    operator: Operator | None = None
    try:
        cp = ControlPlane(args.kubeconfig)
        kube, kubeconfig = cp.kube, cp.kubeconfig
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        n, n_xrepo = args.n, max(1, args.n // 10)
        objects = n * RC_OBJECTS + n_xrepo * XREPO_REPOSITORIES
        total = n + n_xrepo

        setup_started = time.monotonic()
        operator = start_operator(kubeconfig, server.url, workdir, drift_interval=args.drift_interval)
        deadline.wait(operator.ready, "operator /readyz")
        create_aws(n, n_xrepo)
        create = Phase("create", server, operator, objects)
        create.start()
        create_kube(kube, namespace, n, n_xrepo)

        def all_ready() -> bool:
            items = list_all(kube, namespace)
            return len(items) == total and all(condition(o, "Ready").get("status") == "True" for o in items)

        deadline.wait(all_ready, f"{total} resources Ready", poll=2)
        results = [create.stop("create")]
        results[0]["setup_seconds"] = round(time.monotonic() - setup_started, 2)

        # 2. One round of drift checks (the timer, as in production).
        drift = Phase("drift check", server, operator, objects)
        drift.start()
        mark_time = time.time()

        def all_checked() -> bool:
            return all(parse_time((o.get("status") or {}).get("lastDriftCheckTime")) >= mark_time
                       for o in list_all(kube, namespace))

        deadline.wait(all_checked, "a full round of drift checks", poll=1)
        results.append(drift.stop("drift"))

        # 3. No-op resync: a restarted operator resumes every resource (drift timer out of the way).
        operator.stop()
        resync = Phase("no-op resync", server, None, objects)  # type: ignore[arg-type]
        # Baseline before the process starts: it has used no CPU and counted nothing yet.
        resync.mark, resync.cpu0, resync.metrics0, resync.t0 = server.calls.mark(), 0.0, {}, time.monotonic()
        operator = start_operator(kubeconfig, server.url, workdir, drift_interval=24 * 3600)
        resync.operator = operator

        def all_resumed() -> bool:
            if not operator.ready():
                return False
            return metric_sum(operator.metrics(), "regaccess_reconcile_total", trigger="resume") >= total

        deadline.wait(all_resumed, "every resource resumed", poll=1)
        results.append(resync.stop("resume"))
        return {"n_registry_credentials": n, "n_cross_account": n_xrepo, "managed_objects": objects,
                "drift_interval_seconds": args.drift_interval, "phases": results,
                "operator_log": str(operator.log)}
    finally:
        if operator is not None:
            operator.stop()
        if cp is not None:
            cp.stop()
        server.stop()


def table(report: dict[str, Any]) -> str:
    head = ("phase", "reconciles", "reads", "writes", "reads/obj", "writes/obj", "wall s", "mean rec s",
            "cpu s", "peak RSS MiB")
    rows = [head]
    for p in report["phases"]:
        rows.append((p["phase"], str(int(sum(p["reconciles"].values()))), str(p["aws_reads"]), str(p["aws_writes"]),
                     str(p["reads_per_object"]), str(p["writes_per_object"]), str(p["wall_seconds"]),
                     str(p["mean_reconcile_seconds"]), str(p["operator_cpu_seconds"]),
                     str(p["operator_peak_rss_mib"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = (f"regaccess drift bench: {report['n_registry_credentials']} RegistryCredentials x {RC_OBJECTS} objects + "
             f"{report['n_cross_account']} CrossAccountRepoAccess x {XREPO_REPOSITORIES} repositories = "
             f"{report['managed_objects']} managed AWS objects")
    drift = next(p for p in report["phases"] if p["phase"] == "drift check")
    reads = ", ".join(f"{k} {v}" for k, v in drift["calls_by_operation"].items())
    return "\n".join([title, *lines, f"drift check calls: {reads}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="RegistryCredentials to create (N/10 CrossAccountRepoAccess).")
    parser.add_argument("--drift-interval", type=float, default=None,
                        help="Operator --drift-interval for the drift phase (default: 30 s, +1 s per 10 resources).")
    parser.add_argument("--kubeconfig", help="A test cluster (token auth) instead of KUBEBUILDER_ASSETS.")
    parser.add_argument("--json", default="bench-drift.json", help="Where to write the figures.")
    parser.add_argument("--max-seconds", type=float, default=1800, help="Upper bound for the whole run.")
    parser.add_argument("--workdir", help="Operator logs go here (default: a new /tmp directory).")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    if args.drift_interval is None:
        args.drift_interval = 30 + args.n / 10
    report = run(args)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {args.json}")
    failed = [p["phase"] for p in report["phases"][1:] if p["aws_writes"]]
    if failed:
        print(f"WRITES IN STEADY STATE: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
