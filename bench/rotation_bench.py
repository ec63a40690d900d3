"""Benchmark: the operator's memory after 10,000 rotations of its source Secrets (issue 30 §4).

Run by hand (it asserts nothing; figures in bench/RESULTS.md):

    KUBEBUILDER_ASSETS=../shared/envtest/bin .venv/bin/python -m bench.rotation_bench
    .venv/bin/python -m bench.rotation_bench --secrets 50 --rotations 10000 --before-src /tmp/regaccess-before

What grew before: the Secret index kept every credential Secret's data, and the log redactor
every value it ever read (two per rotation, forever). Now the index keeps a digest and the
redactor the current values of managed resources only (controller/source_index.py,
controller/logging.py). Each arm runs on the same control plane and AWS test server
(``tests.harness.awsserver`` in its own process), in a namespace of its own, with
``--secrets`` basic-auth Secrets (labelled to opt in) and as many RegistryCredentials:

- **regaccess**: this tree's operator. A round patches every Secret's password once and
  waits until every resource's ``status.sourceResourceVersion`` is the patched version,
  so each rotation is read and written to Secrets Manager (none coalesced away); rounds
  repeat until ``--rotations`` rotations were made.
- **before** (with ``--before-src DIR``, e.g. ``git archive <commit> | tar -x -C DIR``): the
  operator of another tree, the same way.
- **bare kopf** (``bench.bare_kopf``): kopf with a trivial handler, indexing the same Secrets:
  what kopf itself does with memory under the same rotations (no reconcile follows them).

RSS (``VmRSS``) is read after the first round (every Secret rotated once: every code path
warm) and after the last, each after a settle pause; printed per arm beside bare kopf's.
Every wait is bounded (``--max-seconds`` for the whole run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (  # noqa: E402 - also puts the repository on sys.path
    AwsProcess, ControlPlane, Deadline, Operator, b64, metric_sum, start_operator,
)
from tests.e2e import controlplane  # noqa: E402
from tests.e2e.kube import Kube, condition, registry_credential  # noqa: E402

SETTLE = 3.0  # seconds before an RSS reading: in-flight work done, the allocator settled


def secret(namespace: str, i: int, password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": f"src-{i}", "namespace": namespace, "labels": {"regaccess.io/source": "true"}},
            "data": {"username": b64("robot"), "password": b64(password)}}


def password(arm: str, i: int, rotation: int) -> str:
    # Unique per rotation and as long as a real token: a redactor that keeps them shows.
    return f"{arm}-{i:04d}-{rotation:06d}-" + uuid.uuid4().hex * 2


class Arm:
    def __init__(self, name: str, kube: Kube, secrets: int, reconciles: bool) -> None:
        self.name, self.kube, self.secrets, self.reconciles = name, kube, secrets, reconciles
        self.namespace = f"rot-{name.replace(' ', '-')}-{uuid.uuid4().hex[:5]}"

    def create(self, deadline: Deadline) -> None:
        kube = self.kube
        kube.create_namespace(self.namespace)
        for i in range(self.secrets):
            kube.create(kube.secret_path(self.namespace), secret(self.namespace, i, password(self.name, i, 0)))
            kube.create(kube.rc_path(self.namespace), registry_credential(self.namespace, f"cred-{i}", {
                "source": {"secretRef": {"name": f"src-{i}"}}, "secret": {"forceDeleteWithoutRecovery": True}}))
        deadline.check("creating the resources")

    def all_ready(self) -> bool:
        items = self.kube.get(self.kube.rc_path(self.namespace))["items"]
        return len(items) == self.secrets and all(condition(o, "Ready").get("status") == "True" for o in items)

    def synced(self, versions: dict[str, str]) -> bool:
        items = self.kube.get(self.kube.rc_path(self.namespace))["items"]
        seen = {o["spec"]["source"]["secretRef"]["name"]: (o.get("status") or {}).get("sourceResourceVersion")
                for o in items}
        return all(seen.get(name) == rv for name, rv in versions.items())

    def rotate(self, rotation: int, deadline: Deadline) -> None:
        """One round: every Secret's password once; for a reconciling arm, wait until all synced."""
        versions = {}
        for i in range(self.secrets):
            answer = self.kube.merge_patch(self.kube.secret_path(self.namespace, f"src-{i}"),
                                           {"data": {"password": b64(password(self.name, i, rotation))}})
            versions[f"src-{i}"] = answer["metadata"]["resourceVersion"]
        if self.reconciles:
            deadline.wait(lambda: self.synced(versions), f"{self.name}: round {rotation} synced", poll=0.1)


def run_arm(arm: Arm, op: Operator, args: argparse.Namespace, deadline: Deadline) -> dict[str, Any]:
    try:
        op.wait_ready(deadline)
        if arm.reconciles:
            deadline.wait(arm.all_ready, f"{arm.name}: every resource Ready", poll=0.5)
        rounds = max(1, args.rotations // args.secrets)
        started = time.monotonic()
        arm.rotate(1, deadline)
        time.sleep(SETTLE)
        first = op.rss_mib()
        for rotation in range(2, rounds + 1):
            arm.rotate(rotation, deadline)
            if rotation % 20 == 0:
                print(f"  {arm.name}: {rotation * args.secrets} rotations, RSS {op.rss_mib():.1f} MiB",
                      file=sys.stderr, flush=True)
        time.sleep(SETTLE)
        last = op.rss_mib()
        values = op.metrics() if arm.reconciles else {}
        return {"arm": arm.name, "rotations": rounds * args.secrets, "secrets": args.secrets,
                "source_reconciles": metric_sum(values, "regaccess_reconcile_total", trigger="source")
                if values else None,
                "seconds": round(time.monotonic() - started, 1), "rss_first_mib": round(first, 1),
                "rss_last_mib": round(last, 1), "peak_rss_mib": round(op.peak_rss_mib(), 1),
                "growth_pct": round(100.0 * (last - first) / first, 1)}
    finally:
        op.stop()


def before_operator(src: Path, kubeconfig: Path, aws_url: str, workdir: Path, namespace: str) -> Operator:
    """The operator of another tree (``src``), with this tree's bench harness around it."""
    # start_operator appends "-m controller run ...": drop "-m controller", import from ``src``.
    boot = (f"import runpy, sys; sys.path.insert(0, {str(src)!r}); sys.argv[1:3] = []; "
            "runpy.run_module('controller', run_name='__main__', alter_sys=True)")
    return start_operator(kubeconfig, aws_url, workdir, drift_interval=3600, namespaces=[namespace],
                          python=[sys.executable, "-c", boot])


def table(results: list[dict[str, Any]]) -> str:
    rows = [("arm", "rotations", "source reconciles", "s", "RSS after 1st round MiB", "RSS after last MiB",
             "growth %", "peak RSS MiB")]
    for r in results:
        rows.append((r["arm"], str(r["rotations"]), "-" if r["source_reconciles"] is None else f"{r['source_reconciles']:.0f}",
                     f"{r['seconds']:.0f}", f"{r['rss_first_mib']:.1f}", f"{r['rss_last_mib']:.1f}",
                     f"{r['growth_pct']:+.1f}", f"{r['peak_rss_mib']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join([lines[0], "-+-".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=50, help="Source Secrets (and RegistryCredentials) per arm.")
    parser.add_argument("--rotations", type=int, default=10_000, help="Rotations per arm (rounds x secrets).")
    parser.add_argument("--before-src", type=Path, help="A tree whose operator to run as the 'before' arm.")
    parser.add_argument("--no-kopf", action="store_true", help="Skip the bare kopf baseline.")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=Path("bench-rotation.json"))
    parser.add_argument("--kubeconfig", help="A test cluster (token auth) instead of KUBEBUILDER_ASSETS.")
    args = parser.parse_args(argv)
    if args.secrets < 1 or args.rotations < args.secrets:
        parser.error("--rotations must be at least --secrets (one round)")
    deadline = Deadline(args.max_seconds)
    workdir = Path(tempfile.mkdtemp(prefix="bench-rotation-"))
    cp = ControlPlane(args.kubeconfig)
    aws = AwsProcess(workdir, args.max_seconds + 60)
    results: list[dict[str, Any]] = []
    try:
        arms: list[tuple[Arm, Any]] = []
        mine = Arm("regaccess", cp.kube, args.secrets, reconciles=True)
        arms.append((mine, lambda a: start_operator(cp.kubeconfig, aws.url, workdir, drift_interval=3600,
                                                    namespaces=[a.namespace])))
        if args.before_src:
            before = Arm("before", cp.kube, args.secrets, reconciles=True)
            arms.append((before, lambda a: before_operator(args.before_src, cp.kubeconfig, aws.url, workdir,
                                                           a.namespace)))
        if not args.no_kopf:
            bare = Arm("bare kopf", cp.kube, args.secrets, reconciles=False)

            def bare_kopf(a: Arm) -> Operator:
                port = controlplane.free_port()
                import os
                env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
                return Operator([sys.executable, "-m", "bench.bare_kopf", "-n", a.namespace, "--metrics-port",
                                 str(port)], env, workdir / f"bare-kopf-{a.namespace}.log", port)
            arms.append((bare, bare_kopf))
        for arm, start in arms:
            arm.create(deadline)
            print(f"bench: arm {arm.name} ({args.rotations} rotations of {args.secrets} Secrets)", file=sys.stderr,
                  flush=True)
            results.append(run_arm(arm, start(arm), args, deadline))
    finally:
        aws.stop()
        cp.stop()
    print(table(results))
    args.json.write_text(json.dumps({"results": results, "settle_seconds": SETTLE}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
