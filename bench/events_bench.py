"""Benchmark: from an out-of-band change in AWS to its repair, with drift events vs polling only.

Run by hand (it asserts nothing about speed; figures in bench/RESULTS.md):

    KUBEBUILDER_ASSETS=../shared/envtest/bin .venv/bin/python -m bench.events_bench
    .venv/bin/python -m bench.events_bench --changes 50 --batch 10 --poll-interval 10 --json out.json

One run, two arms on the same control plane and AWS test server (moto + stand-ins,
``tests.harness.awsserver`` in its own process, with a real SQS queue):

- **events**: the operator with ``--drift-events-queue-url`` and the backstop check
  at 3600 s, so only the event can repair within the run. Each change is made the
  way ``tests/harness/cloudtrail.py`` makes it: the hand call, then its
  CloudTrail/EventBridge envelope sent to the queue (the documented stand-in for
  CloudTrail's delivery, which in AWS adds its own seconds: that part is not here).
- **polling**: the operator with ``--drift-interval`` set to ``--poll-interval`` and
  no queue: the same hand calls, found by the scheduled drift check.

Each arm manages ``--batch`` RegistryCredentials (a secret and one role's inline
policy each). A change widens one inline policy (Resource ``*``); ``--changes``
changes are made in rounds of ``--batch`` (one per resource, each at a random moment
within ``--poll-interval`` of the round's start, the same moments in both arms), and the
time from a change to the moment the policy in AWS is ours again (repaired, which
under ``driftPolicy: Remediate`` is when DriftDetected is recorded) is measured by
reading the policy every 50 ms. Prints p50 / p95 / max per arm and, beside them, the
operator's mean reconcile duration for the trigger that found the change (``event`` /
``drift``, from its own histogram): with events, the rest of the time is the long poll's
answer and the trigger. Writes JSON.
Every wait is bounded (``--max-seconds`` for the whole run).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from bench.common import (  # noqa: E402 - also puts the repository on sys.path
    REGION, AwsProcess, ControlPlane, Deadline, Operator, b64, metric_sum, start_operator, use_aws_env,
)
from tests.e2e.kube import Kube, condition, registry_credential  # noqa: E402
from tests.harness import cloudtrail, world  # noqa: E402

QUEUE = "regaccess-drift-events-bench"
BACKSTOP = 3600
READ_EVERY = 0.05
SEED = 20261202  # the moments of the changes: the same in every run


def percentile(values: list[float], fraction: float) -> float:
    """Pure: the nearest-rank percentile (p50: fraction 0.5)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


class Arm:
    """One operator and its ``batch`` RegistryCredentials in a namespace of their own."""

    def __init__(self, name: str, kube: Kube, batch: int) -> None:
        self.name, self.kube, self.batch = name, kube, batch
        self.namespace = f"bench-{name}-{uuid.uuid4().hex[:4]}"
        self.client = boto3.session.Session(region_name=REGION).client
        self.roles = [f"bench-{name}-{i}" for i in range(batch)]
        self.policy_names = [f"regaccess-{self.namespace}-cred-{i}" for i in range(batch)]

    def create(self, deadline: Deadline) -> None:
        kube = self.kube
        kube.create_namespace(self.namespace)
        for i, role in enumerate(self.roles):
            world.make_role(self.client, role)
            kube.create(kube.secret_path(self.namespace), {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                "metadata": {"name": f"src-{i}"}, "data": {"username": b64("robot"), "password": b64(f"pw-{i}")}})
            kube.create(kube.rc_path(self.namespace), registry_credential(self.namespace, f"cred-{i}", {
                "source": {"secretRef": {"name": f"src-{i}"}},
                "secret": {"forceDeleteWithoutRecovery": True},
                "grants": {"executionRoles": [role], "policyName": self.policy_names[i]},
            }))

        def all_ready() -> bool:
            items = kube.get(kube.rc_path(self.namespace))["items"]
            return len(items) == self.batch and all(condition(o, "Ready").get("status") == "True" for o in items)

        deadline.wait(all_ready, f"{self.batch} RegistryCredentials Ready ({self.name})", poll=0.5)

    def document(self, i: int) -> dict[str, Any]:
        return world.role_policy(self.client, self.roles[i], self.policy_names[i])

    def rounds(self, changes: int, deadline: Deadline, change: Any, spread: float) -> list[float]:
        """``changes`` changes in rounds of ``batch``, each at a random moment within ``spread``
        seconds of its round's start: seconds from each change to its repair."""
        ours = [self.document(i) for i in range(self.batch)]
        widened = []
        for doc in ours:
            wide = json.loads(json.dumps(doc))
            wide["Statement"][0]["Resource"] = "*"
            widened.append(json.dumps(wide))
        found: list[float] = []
        rng = random.Random(SEED)
        while len(found) < changes:
            count = min(self.batch, changes - len(found))
            # Each change at a random moment of the round: a hand change does not wait for the
            # drift check's phase, so the polling arm samples every point of its interval.
            round_start = time.monotonic()
            due = {i: round_start + rng.uniform(0, spread) for i in range(count)}
            started: dict[int, float] = {}
            while due or started:
                deadline.check(f"repairs of the {self.name} arm ({len(found)} of {changes} so far)")
                for i in [i for i, at in due.items() if time.monotonic() >= at]:
                    del due[i]
                    change(self.roles[i], self.policy_names[i], widened[i])
                    started[i] = time.monotonic()
                for i in list(started):
                    if self.document(i) == ours[i]:
                        found.append(time.monotonic() - started.pop(i))
                time.sleep(READ_EVERY)
        return found


def summary(name: str, seconds: list[float], detail: str, reconcile_seconds: float | None = None) -> dict[str, Any]:
    return {"arm": name, "detail": detail, "changes": len(seconds),
            "p50_seconds": round(percentile(seconds, 0.5), 3), "p95_seconds": round(percentile(seconds, 0.95), 3),
            "max_seconds": round(max(seconds), 3), "mean_seconds": round(statistics.fmean(seconds), 3),
            "mean_reconcile_seconds": reconcile_seconds}


def mean_reconcile(before: dict, after: dict, trigger: str) -> float | None:
    """Pure: the operator's mean reconcile duration for ``trigger`` between two scrapes (where the time goes)."""
    total = (metric_sum(after, "regaccess_reconcile_duration_seconds_sum", trigger=trigger)
             - metric_sum(before, "regaccess_reconcile_duration_seconds_sum", trigger=trigger))
    count = (metric_sum(after, "regaccess_reconcile_duration_seconds_count", trigger=trigger)
             - metric_sum(before, "regaccess_reconcile_duration_seconds_count", trigger=trigger))
    return round(total / count, 4) if count else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = Deadline(args.max_seconds)
    workdir = Path(args.workdir or f"/tmp/regaccess-bench-{uuid.uuid4().hex[:6]}")
    workdir.mkdir(parents=True, exist_ok=True)
    aws = AwsProcess(workdir, args.max_seconds + 60)
    use_aws_env(aws.url)
    cp: ControlPlane | None = None
    operator: Operator | None = None
    results = []
    try:
        cp = ControlPlane(args.kubeconfig)
        sqs = boto3.session.Session(region_name=REGION).client("sqs")
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        iam = boto3.session.Session(region_name=REGION).client("iam")

        # Arm 1: drift events, backstop out of the way.
        events = Arm("events", cp.kube, args.batch)
        operator = start_operator(cp.kubeconfig, aws.url, workdir, drift_interval=BACKSTOP,
                                  namespaces=[events.namespace], extra_env={
                                      "REGACCESS_DRIFT_EVENTS_QUEUE_URL": queue_url,
                                      "REGACCESS_DRIFT_BACKSTOP_INTERVAL": str(BACKSTOP)})
        events.create(deadline)
        deadline.wait(lambda: metric_sum(operator.metrics(), "regaccess_drift_event_queue_up") == 1,
                      "the drift-event queue checked by the poller", poll=0.2)

        def by_event(role: str, policy: str, document: str) -> None:
            cloudtrail.out_of_band(iam, "PutRolePolicy", sqs, queue_url, RoleName=role, PolicyName=policy,
                                   PolicyDocument=document)

        before = operator.metrics()
        seconds = events.rounds(args.changes, deadline, by_event, args.poll_interval)
        results.append(summary("events", seconds, f"SQS queue, backstop {BACKSTOP} s",
                               mean_reconcile(before, operator.metrics(), "event")))
        operator.stop()

        # Arm 2: polling only, at --poll-interval.
        polling = Arm("polling", cp.kube, args.batch)
        operator = start_operator(cp.kubeconfig, aws.url, workdir, drift_interval=args.poll_interval,
                                  namespaces=[polling.namespace])
        polling.create(deadline)

        def by_hand(role: str, policy: str, document: str) -> None:
            iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=document)

        before = operator.metrics()
        seconds = polling.rounds(args.changes, deadline, by_hand, args.poll_interval)
        results.append(summary("polling", seconds, f"--drift-interval {args.poll_interval:g} s, no queue",
                               mean_reconcile(before, operator.metrics(), "drift")))
        return {"changes": args.changes, "batch": args.batch, "arms": results}
    finally:
        if operator is not None:
            operator.stop()
        if cp is not None:
            cp.stop()
        aws.stop()


def table(report: dict[str, Any]) -> str:
    lines = [f"{'arm':<9} {'changes':>7} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'reconcile s':>12}  how"]
    for arm in report["arms"]:
        reconcile = arm.get("mean_reconcile_seconds")
        lines.append(f"{arm['arm']:<9} {arm['changes']:>7} {arm['p50_seconds']:>8.2f} {arm['p95_seconds']:>8.2f} "
                     f"{arm['max_seconds']:>8.2f} {reconcile if reconcile is not None else '-':>12}  {arm['detail']}")
    lines.append("reconcile s: the operator's mean reconcile duration (trigger event / drift) in the arm: the part "
                 "of the time that is the reconcile itself")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="Out-of-band changes per arm (default 50).")
    parser.add_argument("--batch", type=int, default=10,
                        help="RegistryCredentials per arm; changes are made in rounds of this many (default 10).")
    parser.add_argument("--poll-interval", type=float, default=10.0,
                        help="--drift-interval of the polling arm, seconds (default 10; production default 300).")
    parser.add_argument("--kubeconfig", help="A test cluster (token auth) instead of KUBEBUILDER_ASSETS.")
    parser.add_argument("--json", default="bench-events.json", help="Where to write the figures.")
    parser.add_argument("--max-seconds", type=float, default=900, help="Upper bound for the whole run.")
    parser.add_argument("--workdir", help="Operator logs go here (default: a new /tmp directory).")
    args = parser.parse_args(argv)
    if args.changes < 1 or args.batch < 1 or args.poll_interval <= 0:
        parser.error("--changes and --batch must be >= 1, --poll-interval > 0")
    report = run(args)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
