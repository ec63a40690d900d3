"""Benchmark: regaccess beside the bounds AWS sets (round trips and request quotas).

Run by hand (figures, not tests; nothing here asserts a speed):

    KUBEBUILDER_ASSETS=../shared/envtest/bin .venv/bin/python -m bench.perf_bench
    KUBEBUILDER_ASSETS=../shared/envtest/bin .venv/bin/python -m bench.perf_bench --n 100,1000 --max-seconds 3000
    .venv/bin/python -m bench.perf_bench --kubeconfig ~/.kube/test-cluster   # a test cluster, token auth

It starts the AWS test server as its own process (``tests.harness.awsserver``:
moto + the pull-through cache stand-in, with a call record), a kube-apiserver
from KUBEBUILDER_ASSETS (or uses ``--kubeconfig``), and the operator as a real
process (``python -m controller run``, client-side rate limits at the published
quotas, i.e. its defaults), one operator per section, each watching only that
section's namespace so the sections do not disturb one another. Sections:

1. latency: apply-to-Ready of one RegistryCredential (``--shape``, default a
   secret + one execution-role policy + one task definition), ``--runs`` times
   after one cold run, beside the floor: the same AWS operations, in the order
   the operator made them (read from the call record of that very run), made
   by a plain boto3 script against the same server in the same run;
2. throughput: N (``--n``) RegistryCredentials (``--throughput-shape``) applied
   at once, time until all are Ready, beside the quota floor: for every rate
   limit bucket (``controller.aws.ratelimit`` defaults) the calls the operator
   made beyond the bucket's burst divided by its rate, and the largest of
   those. Also: calls that would have exceeded the published quota (the call
   record's timestamps replayed through the same token buckets), throttling
   answers seen and surfaced, operator CPU seconds and peak RSS, and idle CPU
   (the per-resource timers) once everything is Ready;
3. AWS calls per managed object for create, for a no-op resync (the operator
   restarted) and for one round of drift checks, on the first N;
4. operator startup time: process start to /readyz answering 200.

Prints a table and writes JSON (``--json``, default bench/results/perf-<time>.json).
The whole run is bounded by ``--max-seconds``; it stops with a clear message.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError

from bench.common import (  # also puts the repository on sys.path
    REPO, AwsProcess, ControlPlane, Deadline, Operator, OutOfTime, b64, metric_sum, parse_time, start_operator, use_aws_env,
)
from controller.api.models import GROUP, REGISTRY_CREDENTIAL, VERSION
from controller.aws import iam_policies, ratelimit
from tests.e2e import controlplane
from tests.e2e.kube import Kube, condition, registry_credential
from tests.harness import world

PARTS = ("secret", "policy", "taskdef", "jobdef")
# One thread: moto's IAM is not thread-safe under concurrent CreateRole ("dictionary changed size
# during iteration", a 500), and this setup is never timed.
SETUP_THREADS = 1
APPLY_THREADS = 8

# Documented behaviour of comparable operators (not measured here): what one
# periodic resync / refresh of the same objects costs them.
DOCUMENTED = [
    ("ACK (iam-controller, secretsmanager-controller)",
     "every resync reads the whole resource: each inline policy of a Role is read by name "
     "(GetRolePolicy per policy, after ListRolePolicies), DescribeSecret for a Secret; "
     "default resync every 10 h"),
    ("External Secrets Operator",
     "every refreshInterval (default 1 h) reads the secret value from the provider "
     "(GetSecretValue for AWS Secrets Manager), whether or not it changed"),
]


# --------------------------------------------------------------------------- shapes and setup


def parse_shape(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or "secret" not in parts:
        raise argparse.ArgumentTypeError(f"shape: a comma-separated subset of {','.join(PARTS)} with secret")
    return parts


def parse_counts(text: str) -> list[tuple[int, tuple[str, ...] | None]]:
    """``1000,10000:secret`` -> [(1000, None), (10000, ("secret",))] (None: --throughput-shape)."""
    out: list[tuple[int, tuple[str, ...] | None]] = []
    for item in (x.strip() for x in text.split(",")):
        if item:
            count, _, shape = item.partition(":")
            out.append((int(count), parse_shape(shape.replace("+", ",")) if shape else None))
    return out


def names(prefix: str, i: int) -> dict[str, str]:
    return {"role": f"{prefix}-exec-{i}", "family": f"{prefix}-web-{i}", "job": f"{prefix}-job-{i}",
            "source": f"src-{i}", "rc": f"cred-{i}"}


def aws_client() -> Callable[[str], Any]:
    session = boto3.session.Session()
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service)
        return cache[service]

    return client


def create_prerequisites(client: Callable[[str], Any], shape: tuple[str, ...], prefix: str, count: int,
                         deadline: Deadline) -> None:
    """What users' pipelines create before the custom resources (never timed)."""

    def one(i: int) -> None:
        n = names(prefix, i)
        if shape == ("secret",):
            return  # nothing in AWS before the secret itself
        role_arn = world.make_role(client, n["role"])  # the task definition needs a role either way
        if "taskdef" in shape:
            world.register_family(client, n["family"], role_arn)
        if "jobdef" in shape:
            world.register_job(client, n["job"], role_arn)

    with concurrent.futures.ThreadPoolExecutor(SETUP_THREADS) as pool:
        for future in [pool.submit(one, i) for i in range(count)]:
            deadline.check("creating the AWS prerequisites")
            future.result(timeout=max(1.0, deadline.left()))


def rc_spec(shape: tuple[str, ...], n: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"secretRef": {"name": n["source"]}},
                            "secret": {"forceDeleteWithoutRecovery": True}}
    if "policy" in shape:
        spec["grants"] = {"executionRoles": [n["role"]]}
    consumers: dict[str, Any] = {}
    if "taskdef" in shape:
        consumers["ecsTaskDefinitions"] = [{"family": n["family"]}]
    if "jobdef" in shape:
        consumers["batchJobDefinitions"] = [{"name": n["job"]}]
    if consumers:
        spec["consumers"] = consumers
    return spec


def source_secret(n: dict[str, str], i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": n["source"]}, "data": {"username": b64("robot"), "password": b64(f"pw-{i}")}}


def parallel(fn: Callable[[int], Any], count: int, deadline: Deadline, what: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(APPLY_THREADS) as pool:
        for future in [pool.submit(fn, i) for i in range(count)]:
            deadline.check(what)
            future.result(timeout=max(1.0, deadline.left()))


def rc_list(kube: Kube, namespace: str) -> tuple[list[dict[str, Any]], str]:
    """Every RegistryCredential of the namespace, in pages (one list of 10,000 can outlast a
    request timeout on a busy machine), and the list's resourceVersion."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page = kube.get(kube.rc_path(namespace) + "?limit=500" + (f"&continue={token}" if token else ""))
        items += page["items"]
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items, page["metadata"]["resourceVersion"]


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready").get("status") == "True"


# --------------------------------------------------------------------------- quota arithmetic (pure)


def bucket_counts(counts: dict[tuple[str, str], int], rules: list[ratelimit.Rule]) -> dict[str, tuple[ratelimit.Rule, int]]:
    """Calls per rate-limit bucket (the first matching rule, as the limiter decides)."""
    limiter = ratelimit.RateLimiter(rules)
    out: dict[str, tuple[ratelimit.Rule, int]] = {}
    for (service, operation), n in counts.items():
        rule = limiter.rule_for(service, operation)
        if rule is None or rule.rate == ratelimit.INFINITE:
            continue
        previous = out.get(rule.key, (rule, 0))[1]
        out[rule.key] = (rule, previous + n)
    return out


def quota_floor(counts: dict[tuple[str, str], int], rules: list[ratelimit.Rule]) -> tuple[float, str | None, dict[str, float]]:
    """Seconds the quotas alone need for these calls: max over buckets of (calls - burst) / rate."""
    per_bucket = {key: max(0.0, (n - rule.burst) / rule.rate) for key, (rule, n) in bucket_counts(counts, rules).items()}
    if not per_bucket:
        return 0.0, None, {}
    binding = max(per_bucket, key=per_bucket.__getitem__)
    return per_bucket[binding], binding, per_bucket


def over_quota(calls: list[Any], rules: list[ratelimit.Rule], tolerance: float = 1.0) -> dict[str, int]:
    """Calls that a server enforcing the published quotas would have throttled.

    The call record's arrival times replayed through a token bucket per rule
    (rate, burst); ``tolerance`` extra tokens absorb the network jitter between
    the client's token and the server's clock."""
    limiter = ratelimit.RateLimiter(rules)
    state: dict[str, list[float]] = {}
    over: dict[str, int] = defaultdict(int)
    for call in sorted(calls, key=lambda c: c.time):
        rule = limiter.rule_for(call.service, call.operation)
        if rule is None or rule.rate == ratelimit.INFINITE:
            continue
        tokens, stamp = state.get(rule.key, [float(rule.burst), call.time])
        tokens = min(float(rule.burst), tokens + (call.time - stamp) * rule.rate) - 1.0
        if tokens < -tolerance:
            over[rule.key] += 1
            tokens += 1.0  # refused: a throttled call takes no token
        state[rule.key] = [tokens, call.time]
    return dict(over)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- the boto3 floor


class Floor:
    """The same AWS operations as the operator's create, made directly with boto3."""

    def __init__(self, client: Callable[[str], Any], cluster_id: str) -> None:
        self.client = client
        self.cluster_id = cluster_id

    def run(self, operations: list[tuple[str, str]], namespace: str, n: dict[str, str]) -> tuple[float, list[str]]:
        """Make ``operations`` in order; returns (seconds, operations it could not replay)."""
        secret_name = f"regaccess/{namespace}/{n['rc']}"
        owner = f"{self.cluster_id}/{namespace}/{n['rc']}"
        policy = f"regaccess-{namespace}-{n['rc']}"
        sm, iam, ecs, batch = (self.client(s) for s in ("secretsmanager", "iam", "ecs", "batch"))
        state: dict[str, Any] = {"arn": f"arn:aws:secretsmanager:us-east-1:{world.ACCOUNT}:secret:{secret_name}"}
        missing: list[str] = []

        def miss(call: Callable[[], Any]) -> Any:
            try:
                return call()
            except ClientError:
                return None

        def register_copy() -> None:
            latest = state["taskdef"]
            td = dict(latest["taskDefinition"])
            keep = {"family", "executionRoleArn", "networkMode", "requiresCompatibilities", "cpu", "memory",
                    "containerDefinitions"}
            request = {k: v for k, v in td.items() if k in keep}
            for c in request["containerDefinitions"]:
                c["repositoryCredentials"] = {"credentialsParameter": state["arn"]}
            request["tags"] = [{"key": "regaccess.io/owner", "value": owner}]
            ecs.register_task_definition(**request)

        def register_job() -> None:
            latest = max(state["jobdef"]["jobDefinitions"], key=lambda d: d["revision"])
            container = dict(latest["containerProperties"])
            container["repositoryCredentials"] = {"credentialsParameter": state["arn"]}
            batch.register_job_definition(jobDefinitionName=latest["jobDefinitionName"], type=latest["type"],
                                          platformCapabilities=latest.get("platformCapabilities", []),
                                          containerProperties=container,
                                          tags={"regaccess.io/owner": owner})

        def create_secret() -> None:
            state["arn"] = sm.create_secret(
                Name=secret_name, SecretString=json.dumps({"username": "robot", "password": "pw"}),
                Description=f"Private registry credential managed by regaccess ({owner})",
                Tags=[{"Key": "regaccess.io/owner", "Value": owner}])["ARN"]

        actions: dict[tuple[str, str], Callable[[], Any]] = {
            ("secretsmanager", "DescribeSecret"): lambda: miss(lambda: sm.describe_secret(SecretId=secret_name)),
            ("secretsmanager", "CreateSecret"): create_secret,
            ("iam", "GetRolePolicy"): lambda: miss(lambda: iam.get_role_policy(RoleName=n["role"], PolicyName=policy)),
            ("iam", "ListRolePolicies"): lambda: iam.list_role_policies(RoleName=n["role"]),
            ("iam", "PutRolePolicy"): lambda: iam.put_role_policy(
                RoleName=n["role"], PolicyName=policy,
                PolicyDocument=json.dumps(iam_policies.desired(state["arn"], None))),
            ("iam", "GetRole"): lambda: iam.get_role(RoleName=n["role"]),
            ("ecs", "DescribeTaskDefinition"): lambda: state.__setitem__(
                "taskdef", ecs.describe_task_definition(taskDefinition=n["family"], include=["TAGS"])),
            ("ecs", "RegisterTaskDefinition"): register_copy,
            ("batch", "DescribeJobDefinitions"): lambda: state.__setitem__(
                "jobdef", batch.describe_job_definitions(jobDefinitionName=n["job"], status="ACTIVE")),
            ("batch", "RegisterJobDefinition"): register_job,
        }
        started = time.perf_counter()
        for op in operations:
            action = actions.get(op)
            if action is None:
                missing.append(":".join(op))
                continue
            action()
        return time.perf_counter() - started, missing


# --------------------------------------------------------------------------- waiting for Ready


def watch_until_ready(kube: Kube, namespace: str, name: str, resource_version: str, deadline: Deadline,
                      writes: list[tuple[float, str]] | None = None) -> float:
    """Follow one object's watch stream from ``resource_version``; returns time.monotonic() when Ready.
    ``writes`` receives (time.time(), what_changed(...)) for every write the watch shows."""
    return watch_all_ready(kube, namespace, 1, resource_version, deadline, name=name, writes=writes)


def what_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """Pure: one word for a write seen on the watch (the latency timeline's labels)."""
    if ready(after):
        return "Ready"
    meta, old_meta = after.get("metadata") or {}, (before or {}).get("metadata") or {}
    if meta.get("finalizers") != old_meta.get("finalizers"):
        return "finalizer"
    if after.get("status") != (before or {}).get("status"):
        return "status"
    return "metadata"


def timeline(started: float, posted: float, writes: list[tuple[float, str]], calls: list[Any]) -> dict[str, float]:
    """Pure: ms from the start of the POST to each step of one create (wall clock throughout)."""
    def ms(t: float) -> float:
        return round(1000 * (t - started), 1)

    out = {"POST answered": ms(posted)}
    if calls:
        out["first AWS answer"] = ms(min(c.time for c in calls))
        out["last AWS answer"] = ms(max(c.time for c in calls))
    seen: dict[str, int] = {}
    for when, what in writes:
        seen[what] = seen.get(what, 0) + 1
        out[what if seen[what] == 1 else f"{what} {seen[what]}"] = ms(when)
    return out


def watch_all_ready(kube: Kube, namespace: str, count: int, resource_version: str, deadline: Deadline,
                    name: str | None = None, writes: list[tuple[float, str]] | None = None) -> float:
    """Follow the namespace's RegistryCredentials (or the one called ``name``) from
    ``resource_version`` until ``count`` of them are Ready at once; returns time.monotonic() then.
    An expired resourceVersion (410) starts again from a fresh list."""
    selector = f"&fieldSelector=metadata.name%3D{name}" if name else ""
    ready_names: set[str] = set()
    last: dict[str, dict[str, Any]] = {}
    while True:
        path = (f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{REGISTRY_CREDENTIAL.plural}"
                f"?watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}{selector}")
        deadline.check(f"waiting for {count} RegistryCredentials Ready")
        for event in kube.watch(path, int(max(1, min(60, deadline.left())))):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                items, resource_version = rc_list(kube, namespace)
                ready_names = {o["metadata"]["name"] for o in items
                               if ready(o) and name in (None, o["metadata"]["name"])}
                break
            resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
            if kind == "BOOKMARK":
                continue
            if writes is not None and kind == "MODIFIED":
                writes.append((time.time(), what_changed(last.get(obj["metadata"]["name"]), obj)))
                last[obj["metadata"]["name"]] = obj
            if kind != "DELETED" and ready(obj):
                ready_names.add(obj["metadata"]["name"])
            else:
                ready_names.discard(obj["metadata"]["name"])
            if len(ready_names) >= count:
                return time.monotonic()
        if len(ready_names) >= count:  # the fresh list after an ERROR may already hold them all
            return time.monotonic()


# --------------------------------------------------------------------------- sections


class Run:
    def __init__(self, args: argparse.Namespace, deadline: Deadline, workdir: Path, aws: AwsProcess,
                 cp: ControlPlane) -> None:
        self.args, self.deadline, self.workdir, self.aws, self.cp = args, deadline, workdir, aws, cp
        self.kube = cp.kube
        self.client = aws_client()
        self.rules = ratelimit.merge_rules(ratelimit.parse_rules(args.aws_rate_limits))
        self.operators: list[Operator] = []

    def operator(self, namespace: str, drift_interval: float, traced: Path | None = None) -> tuple[Operator, float]:
        extra = ["--aws-rate-limits", self.args.aws_rate_limits] if self.args.aws_rate_limits else []
        python = [sys.executable, "-m", "bench.traced", str(traced), "--"] if traced else None
        op = start_operator(self.cp.kubeconfig, self.aws.url, self.workdir, drift_interval=drift_interval,
                            namespaces=[namespace], extra_args=[*extra, *self.args.operator_arg],
                            extra_env=dict(kv.split("=", 1) for kv in self.args.operator_env), python=python)
        self.operators.append(op)
        startup = op.wait_ready(self.deadline)
        if self.args.py_spy:
            # Sampling profiler attached from outside (nothing in the product): collapsed stacks of
            # the samples that hold the GIL (where CPU goes, not where threads wait), written when
            # the operator exits. Its figures are then not representative.
            out = Path(self.args.py_spy) / f"{namespace}-{op.proc.pid}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(op.proc.pid),
                              "--format", "raw", "--rate", "100", "--nonblocking", "--threads", "--gil", "-o", str(out)],
                             stdout=subprocess.DEVNULL, stderr=open(self.workdir / "py-spy.log", "ab"))
        return op, startup

    def stop(self, op: Operator) -> None:
        op.stop()
        if op in self.operators:
            self.operators.remove(op)

    def calls_since(self, mark: int) -> list[Any]:
        return self.aws.calls.list(since=mark)

    # ------------------------------------------------------------------ 1. latency

    def latency(self) -> dict[str, Any]:
        shape, runs = self.args.shape, self.args.runs
        namespace = f"lat-{uuid.uuid4().hex[:6]}"
        self.kube.create_namespace(namespace)
        op, startup = self.operator(namespace, 24 * 3600)
        total = runs + 1  # the first is the cold run (the operator's first AWS clients)
        create_prerequisites(self.client, shape, "lat", total, self.deadline)
        create_prerequisites(self.client, shape, "floor", total, self.deadline)
        floor = Floor(self.client, "bench")
        floor_ns = f"floor-{uuid.uuid4().hex[:6]}"
        rows = []
        for i in range(total):
            n = names("lat", i)
            self.kube.create(self.kube.secret_path(namespace), source_secret(n, i))
            time.sleep(0.5)  # the Secret reaches the operator's index before the resource does
            mark = self.aws.calls.mark()
            started, started_wall = time.monotonic(), time.time()
            body = registry_credential(namespace, n["rc"], rc_spec(shape, n))
            created = self.kube.create(self.kube.rc_path(namespace), body)
            posted = time.time()
            writes: list[tuple[float, str]] = []
            done = watch_until_ready(self.kube, namespace, n["rc"], created["metadata"]["resourceVersion"], self.deadline,
                                     writes=writes)
            operator_seconds = done - started
            calls = self.calls_since(mark)
            operations = [(c.service, c.operation) for c in calls]
            floor_seconds, missing = floor.run(operations, floor_ns, names("floor", i))
            rows.append({"run": i, "cold": i == 0, "operator_seconds": round(operator_seconds, 4),
                         "floor_seconds": round(floor_seconds, 4), "operations": [":".join(o) for o in operations],
                         "floor_missing": missing, "timeline_ms": timeline(started_wall, posted, writes, calls)})
        warm = [r for r in rows if not r["cold"]]
        op_times = [r["operator_seconds"] for r in warm]
        floor_times = [r["floor_seconds"] for r in warm]
        cpu = op.cpu_seconds()
        self.stop(op)
        median_op, median_floor = statistics.median(op_times), statistics.median(floor_times)
        return {
            "shape": list(shape), "runs": runs, "startup_seconds": round(startup, 3),
            "operator_median_seconds": round(median_op, 4), "operator_p95_seconds": round(percentile(op_times, 0.95), 4),
            "floor_median_seconds": round(median_floor, 4), "floor_p95_seconds": round(percentile(floor_times, 0.95), 4),
            "ratio_median": round(median_op / median_floor, 2) if median_floor else None,
            "cold_operator_seconds": rows[0]["operator_seconds"], "cold_floor_seconds": rows[0]["floor_seconds"],
            "create_operations": rows[-1]["operations"], "floor_missing": sorted({m for r in rows for m in r["floor_missing"]}),
            "timeline_median_ms": median_timeline([r["timeline_ms"] for r in warm]),
            "operator_cpu_seconds": round(cpu, 2), "rows": rows,
        }

    # ------------------------------------------------------------------ 2. throughput (+ 3. calls per object)

    def populate(self, count: int, shape: tuple[str, ...], tag: str) -> tuple[str, str, float]:
        """A namespace with the AWS prerequisites and N source Secrets (never timed)."""
        namespace = f"{tag}{count}-{uuid.uuid4().hex[:6]}"
        prefix = namespace.split("-")[0] + uuid.uuid4().hex[:4]
        self.kube.create_namespace(namespace)
        t_setup = time.monotonic()
        create_prerequisites(self.client, shape, prefix, count, self.deadline)
        parallel(lambda i: self.kube.create(self.kube.secret_path(namespace), source_secret(names(prefix, i), i)),
                 count, self.deadline, "creating source Secrets")
        return namespace, prefix, time.monotonic() - t_setup

    def apply_and_wait(self, namespace: str, prefix: str, count: int, shape: tuple[str, ...]
                       ) -> tuple[float, float, list[dict[str, Any]]]:
        """Apply N RegistryCredentials at once; (apply seconds, seconds until all Ready, the objects)."""
        _, resource_version = rc_list(self.kube, namespace)  # empty: the watch starts here
        started = time.monotonic()
        waiter = concurrent.futures.ThreadPoolExecutor(1)
        # Followed by one watch, not by polling lists: listing N objects every few seconds was
        # work for the API server beside the operator's (and timed out at 10,000).
        try:
            done = waiter.submit(watch_all_ready, self.kube, namespace, count, resource_version, self.deadline)
            parallel(lambda i: self.kube.create(self.kube.rc_path(namespace), registry_credential(
                namespace, names(prefix, i)["rc"], rc_spec(shape, names(prefix, i)))), count, self.deadline,
                "applying the RegistryCredentials")
            applied = time.monotonic() - started
            ready_at = done.result(timeout=max(1.0, self.deadline.left()))
        finally:
            waiter.shutdown(wait=False)
        items, _ = rc_list(self.kube, namespace)
        return applied, ready_at - started, items

    def idle_cpu(self, op: Operator) -> float:
        spy = None
        if self.args.py_spy_idle:
            # The idle window alone (--py-spy profiles the whole life, where the burst hides it).
            out = Path(self.args.py_spy_idle) / f"idle-{op.proc.pid}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(op.proc.pid),
                                    "--format", "raw", "--rate", "100", "--nonblocking", "--threads", "--gil",
                                    "--duration", str(max(1, int(self.args.idle_seconds))), "-o", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=open(self.workdir / "py-spy.log", "ab"))
        cpu0 = op.cpu_seconds()
        time.sleep(self.args.idle_seconds)
        cpu = op.cpu_seconds() - cpu0
        if spy is not None:
            spy.wait(timeout=60)
        return cpu

    def baseline(self, count: int, shape: tuple[str, ...]) -> dict[str, Any]:
        """The same N objects under a bare kopf operator with a trivial handler (``bench.bare_kopf``)."""
        namespace, prefix, setup_seconds = self.populate(count, shape, "base")
        port = controlplane.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_"))}
        env.update({"KUBECONFIG": str(self.cp.kubeconfig), "PYTHONUNBUFFERED": "1"})
        env.update(kv.split("=", 1) for kv in self.args.operator_env)  # the same process environment
        as_released = ["--kopf-as-released"] if self.args.baseline_kopf_as_released else []
        op = Operator([sys.executable, "-m", "bench.bare_kopf", "-n", namespace, "--metrics-port", str(port), *as_released],
                      env, self.workdir / f"bare-kopf-{namespace}.log", port)
        self.operators.append(op)
        startup = op.wait_ready(self.deadline)
        cpu0, cp_cpu0 = op.cpu_seconds(), self.cp.cpu_seconds()
        applied, wall, _ = self.apply_and_wait(namespace, prefix, count, shape)
        cpu = op.cpu_seconds() - cpu0
        cp_cpu = control_plane_cpu(cp_cpu0, self.cp.cpu_seconds())
        peak = op.peak_rss_mib()
        idle = self.idle_cpu(op)
        self.stop(op)
        return {"n": count, "shape": list(shape), "kopf_as_released": bool(as_released),
                "setup_seconds": round(setup_seconds, 1), "startup_seconds": round(startup, 3), "apply_seconds": round(applied, 2),
                "ready_seconds": round(wall, 2), "operator_cpu_seconds": round(cpu, 2),
                "control_plane_cpu_seconds": cp_cpu,
                "cpu_ms_per_create": round(1000 * cpu / count, 1), "operator_peak_rss_mib": round(peak, 1),
                "idle_seconds": self.args.idle_seconds, "idle_operator_cpu_seconds": round(idle, 2)}

    def throughput(self, count: int, shape: tuple[str, ...], with_steady_state: bool) -> dict[str, Any]:
        objects_per = len(shape)
        namespace, prefix, setup_seconds = self.populate(count, shape, "tp")
        traced = Path(self.workdir / f"tracemalloc-{count}.json") if self.args.tracemalloc else None
        op, startup = self.operator(namespace, 24 * 3600, traced=traced)
        metrics0 = op.metrics()
        cpu0 = op.cpu_seconds()
        mark = self.aws.calls.mark()
        server_cpu0, cp_cpu0 = self.aws.cpu_seconds(), self.cp.cpu_seconds()
        applied, wall, items = self.apply_and_wait(namespace, prefix, count, shape)
        cpu = op.cpu_seconds() - cpu0
        server_cpu = self.aws.cpu_seconds() - server_cpu0
        cp_cpu = control_plane_cpu(cp_cpu0, self.cp.cpu_seconds())
        peak = op.peak_rss_mib()
        calls = self.calls_since(mark)
        counts = Counter((c.service, c.operation) for c in calls)
        floor, binding, per_bucket = quota_floor(counts, self.rules)
        metrics1 = op.metrics()
        throttled_attempts = metric_sum(metrics1, "regaccess_aws_throttles_total") - metric_sum(metrics0, "regaccess_aws_throttles_total")
        throttled_final = (metric_sum(metrics1, "regaccess_aws_api_calls_total", outcome="throttled")
                           - metric_sum(metrics0, "regaccess_aws_api_calls_total", outcome="throttled"))
        throttled_conditions = sum(1 for o in items for c in (o.get("status") or {}).get("conditions") or []
                                   if "Throttl" in str(c.get("reason", "")))
        throttle_events = sum(1 for e in self.kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
                              if "Throttl" in str(e.get("reason", "")))
        reconciles = metric_sum(metrics1, "regaccess_reconcile_total") - metric_sum(metrics0, "regaccess_reconcile_total")
        waits = (metric_sum(metrics1, "regaccess_aws_rate_limit_wait_seconds_sum")
                 - metric_sum(metrics0, "regaccess_aws_rate_limit_wait_seconds_sum"))
        # Idle cost once everything is Ready (the drift scheduler sleeping until the first check is due).
        idle_mark = self.aws.calls.mark()
        idle_cpu = self.idle_cpu(op)
        idle_calls = len(self.calls_since(idle_mark))
        memory = self.trace(op, traced) if traced else None
        binding_rule = bucket_counts(counts, self.rules).get(binding or "", (None, 0))[0]
        result: dict[str, Any] = {
            "n": count, "shape": list(shape), "managed_objects": count * objects_per,
            "setup_seconds": round(setup_seconds, 1), "startup_seconds": round(startup, 3),
            "apply_seconds": round(applied, 2), "ready_seconds": round(wall, 2),
            "quota_floor_seconds": round(floor, 2), "binding_bucket": binding,
            "binding_quota": f"{binding_rule.rate:g}/s, burst {binding_rule.burst}" if binding_rule else None,
            "ratio": round(wall / floor, 2) if floor else None,
            "floor_by_bucket": {k: round(v, 2) for k, v in sorted(per_bucket.items())},
            "calls": len(calls), "calls_by_operation": {f"{s}:{o}": n for (s, o), n in sorted(counts.items())},
            "calls_per_object": round(len(calls) / (count * objects_per), 3),
            "calls_per_resource": round(len(calls) / count, 3),
            "over_quota_calls": over_quota(calls, self.rules),
            "throttled_attempts": throttled_attempts, "throttled_surfaced": throttled_final + throttled_conditions + throttle_events,
            "reconciles": reconciles, "rate_limit_wait_seconds_total": round(waits, 1),
            "operator_cpu_seconds": round(cpu, 2), "cpu_ms_per_create": round(1000 * cpu / count, 1),
            "operator_peak_rss_mib": round(peak, 1),
            "aws_server_cpu_seconds": round(server_cpu, 2), "control_plane_cpu_seconds": cp_cpu,
            "idle_seconds": self.args.idle_seconds, "idle_operator_cpu_seconds": round(idle_cpu, 2),
            "idle_aws_calls": idle_calls,
        }
        if memory is not None:
            result["memory"] = memory
        if with_steady_state:
            result["steady_state"] = self.steady_state(op, namespace, items, count, objects_per)
        else:
            self.stop(op)
        return result

    def trace(self, op: Operator, out: Path) -> dict[str, Any]:
        """Ask the traced operator (``bench.traced``) for its snapshot summary and read it."""
        out.unlink(missing_ok=True)
        op.proc.send_signal(signal.SIGUSR1)
        self.deadline.wait(lambda: out.exists() and out.stat().st_size > 0, "the tracemalloc snapshot", poll=1)
        time.sleep(1)  # written in one call; let it finish
        summary = json.loads(out.read_text())
        summary["rss_mib_at_snapshot"] = round(op.rss_mib(), 1)
        return summary

    def steady_state(self, op: Operator, namespace: str, items: list[dict[str, Any]], count: int,
                     objects_per: int) -> dict[str, Any]:
        """No-op resync (a restarted operator resumes everything), then one round of drift checks."""
        self.stop(op)
        objects = count * objects_per
        oldest_sync = min(parse_time((o.get("status") or {}).get("lastSyncTime")) for o in items)
        # The first drift check comes this long after the restart: time enough for the resync.
        drift_interval = max(10.0, time.time() - oldest_sync + self.args.resync_gap)
        mark = self.aws.calls.mark()
        op, startup = self.operator(namespace, drift_interval)
        t0 = time.monotonic()

        def resumed() -> bool:
            return metric_sum(op.metrics(), "regaccess_reconcile_total", trigger="resume") >= count

        self.deadline.wait(resumed, "every resource resumed", poll=0.25)
        resync_wall = time.monotonic() - t0
        metrics = op.metrics()
        mixed = metric_sum(metrics, "regaccess_reconcile_total", trigger="drift") > 0
        resync_calls = self.calls_since(mark)
        resync = phase_calls(resync_calls, objects)
        resync.update(wall_seconds=round(resync_wall, 2), operator_startup_seconds=round(startup, 3),
                      drift_checks_mixed_in=mixed)
        drift_mark, mark_time, t1 = self.aws.calls.mark(), time.time(), time.monotonic()

        def checked() -> bool:
            return all(parse_time((o.get("status") or {}).get("lastDriftCheckTime")) >= mark_time
                       for o in rc_list(self.kube, namespace)[0])

        self.deadline.wait(checked, "a full round of drift checks", poll=1)
        drift = phase_calls(self.calls_since(drift_mark), objects)
        drift["wall_seconds"] = round(time.monotonic() - t1, 2)
        drift["drift_interval_seconds"] = round(drift_interval, 1)
        self.stop(op)
        return {"no_op_resync": resync, "drift_check": drift}


def median_timeline(runs: list[dict[str, float]]) -> dict[str, float]:
    """Pure: per step, the median over the runs that had it, in order of those medians."""
    steps = {step for run in runs for step in run}
    medians = {step: round(statistics.median(r[step] for r in runs if step in r), 1) for step in steps}
    return dict(sorted(medians.items(), key=lambda kv: kv[1]))


def control_plane_cpu(before: float | None, after: float | None) -> float | None:
    """kube-apiserver + etcd CPU seconds between two readings (None without a local control plane)."""
    return round(after - before, 2) if before is not None and after is not None else None


def phase_calls(calls: list[Any], objects: int) -> dict[str, Any]:
    writes = [c for c in calls if not c.is_read]
    reads = len(calls) - len(writes)
    return {"reads": reads, "writes": len(writes), "reads_per_object": round(reads / objects, 3),
            "writes_per_object": round(len(writes) / objects, 3),
            "calls_by_operation": dict(sorted(Counter(f"{c.service}:{c.operation}" for c in calls).items()))}


# --------------------------------------------------------------------------- report


RSS_GOAL_MB = {1000: 200, 10000: 1000}  # issue 18: < 200 MB at 1,000, < 1 GB at 10,000
IAM_ASSUMPTION = ("IAM publishes no rate quota: the limiter assumes 20/s for Get*/List* and 10/s for "
                  "writes (controller.aws.ratelimit), below the rates at which IAM is reported to throttle")


def goals(report: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    lat = report.get("latency") or {}
    tps = report.get("throughput") or []
    steady = next((t["steady_state"] for t in tps if "steady_state" in t), None)
    out: list[tuple[str, str, bool | None]] = []
    if lat:
        out.append(("single-resource latency <= 1.5x boto3 floor", f"{lat['ratio_median']}x", lat["ratio_median"] <= 1.5))
    for t in tps:
        n = t["n"]
        out.append((f"N={n}: Ready <= 1.25x quota floor", f"{t['ratio']}x", t["ratio"] is not None and t["ratio"] <= 1.25))
        out.append((f"N={n}: zero throttling errors surfaced", str(int(t["throttled_surfaced"])), t["throttled_surfaced"] == 0))
        goal = RSS_GOAL_MB.get(n)
        rss = t["operator_peak_rss_mib"]
        out.append((f"N={n}: peak RSS < {goal} MB" if goal else f"N={n}: peak RSS (no goal at this N)",
                    f"{rss} MiB ({rss * 2**20 / 1e6:.0f} MB)", (rss * 2**20 / 1e6 < goal) if goal else None))
        out.append((f"N={n}: idle CPU < 1 s per 20 s",
                    f"{round(t['idle_operator_cpu_seconds'] * 20 / t['idle_seconds'], 2)} s",
                    t["idle_operator_cpu_seconds"] * 20 / t["idle_seconds"] < 1.0))
        out.append((f"N={n}: CPU per create <= 20 ms", f"{t['cpu_ms_per_create']} ms", t["cpu_ms_per_create"] <= 20))
    if steady:
        out.append(("zero AWS writes on a no-op resync", str(steady["no_op_resync"]["writes"]),
                    steady["no_op_resync"]["writes"] == 0))
        out.append(("<= 1 read per managed object per drift check", str(steady["drift_check"]["reads_per_object"]),
                    steady["drift_check"]["reads_per_object"] <= 1.0))
    return out


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render(report: dict[str, Any]) -> str:
    out = [f"regaccess perf bench ({report['started']}, {report['machine']})", ""]
    lat = report.get("latency")
    if lat:
        out.append(f"1. latency, apply to Ready, shape {'+'.join(lat['shape'])}, {lat['runs']} warm runs "
                   f"(+1 cold: operator {lat['cold_operator_seconds']} s, floor {lat['cold_floor_seconds']} s)")
        out += table([("", "median s", "p95 s"),
                      ("regaccess", str(lat["operator_median_seconds"]), str(lat["operator_p95_seconds"])),
                      ("boto3 floor", str(lat["floor_median_seconds"]), str(lat["floor_p95_seconds"])),
                      ("ratio", f"{lat['ratio_median']}x", "")])
        out.append("   calls: " + ", ".join(lat["create_operations"]))
        if lat.get("timeline_median_ms"):
            out.append("   where the time goes (median ms from the start of the POST; writes as the bench's watch "
                       "sees them): " + ", ".join(f"{k} {v}" for k, v in lat["timeline_median_ms"].items()))
        if lat["floor_missing"]:
            out.append("   floor could not replay: " + ", ".join(lat["floor_missing"]))
        out.append("")
    tps = report.get("throughput") or []
    if tps:
        idle = f"idle CPU s/{tps[0]['idle_seconds']:g}s"
        out.append("2. throughput, N applied at once, rate limits at the published quotas; beside each N the bare "
                   "kopf baseline (bench.bare_kopf: same objects, trivial handler, same control plane)")
        rows = [("N", "shape", "operator", "Ready s", "quota floor s", "ratio", "binding quota", "calls/resource",
                 "over quota", "throttled seen/surfaced", "CPU s", "CPU ms/create", "API server+etcd CPU s",
                 "peak RSS MiB", "startup s", idle)]
        for t in tps:
            rows.append((str(t["n"]), "+".join(t["shape"]), "regaccess", str(t["ready_seconds"]),
                         str(t["quota_floor_seconds"]), f"{t['ratio']}x", f"{t['binding_bucket']} {t.get('binding_quota')}",
                         str(t["calls_per_resource"]), str(sum(t["over_quota_calls"].values())),
                         f"{int(t['throttled_attempts'])}/{int(t['throttled_surfaced'])}", str(t["operator_cpu_seconds"]),
                         str(t["cpu_ms_per_create"]), str(t.get("control_plane_cpu_seconds")),
                         str(t["operator_peak_rss_mib"]), str(t["startup_seconds"]), str(t["idle_operator_cpu_seconds"])))
            b = t.get("baseline")
            if b:
                rows.append(("", "", "bare kopf", str(b["ready_seconds"]), "", "", "", "0", "", "", str(b["operator_cpu_seconds"]),
                             str(b["cpu_ms_per_create"]), str(b.get("control_plane_cpu_seconds")),
                             str(b["operator_peak_rss_mib"]), str(b["startup_seconds"]), str(b["idle_operator_cpu_seconds"])))
        out += table(rows)
        for t in tps:
            out.append(f"   N={t['n']} calls: " + ", ".join(f"{k} {v}" for k, v in t["calls_by_operation"].items()))
            out.append(f"   N={t['n']} floor by bucket: " + ", ".join(f"{k} {v} s" for k, v in t["floor_by_bucket"].items()))
        if any(k.startswith("iam") for t in tps for k in t["floor_by_bucket"]):
            out.append("   " + IAM_ASSUMPTION)
        for t in tps:
            m = t.get("memory")
            if not m:
                continue
            out.append(f"   N={t['n']} memory (tracemalloc, {m['frames']} frames, at Ready): RSS {m['rss_mib_at_snapshot']} MiB, "
                       f"live traced {m['live_traced_mib']} MiB, traced peak {m['traced_peak_mib']} MiB")
            for title, key in (("by package", "by_package"), ("by our innermost frame", "by_our_frame")):
                out.append(f"     {title}: " + ", ".join(f"{k} {v}" for k, v in m[key][:15]))
        out.append("")
    steady = next((t for t in tps if "steady_state" in t), None)
    if steady:
        s = steady["steady_state"]
        objects = steady["managed_objects"]
        out.append(f"3. AWS calls per managed object (N={steady['n']}, {objects} objects)")
        create_writes = sum(v for k, v in steady["calls_by_operation"].items()
                            if not k.split(":", 1)[1].startswith(("Describe", "Get", "List")))
        create_reads = steady["calls"] - create_writes
        out += table([("phase", "reads/obj", "writes/obj", "calls"),
                      ("create", str(round(create_reads / objects, 3)), str(round(create_writes / objects, 3)),
                       ", ".join(f"{k} {v}" for k, v in steady["calls_by_operation"].items())),
                      ("no-op resync", str(s["no_op_resync"]["reads_per_object"]), str(s["no_op_resync"]["writes_per_object"]),
                       ", ".join(f"{k} {v}" for k, v in s["no_op_resync"]["calls_by_operation"].items())),
                      ("drift check", str(s["drift_check"]["reads_per_object"]), str(s["drift_check"]["writes_per_object"]),
                       ", ".join(f"{k} {v}" for k, v in s["drift_check"]["calls_by_operation"].items()))])
        out.append("   documented behaviour of others (not measured):")
        out += [f"   - {who}: {what}" for who, what in DOCUMENTED]
        out.append("")
    out.append("goals")
    out += table([("goal", "measured", "met")] + [(g, m, {True: "yes", False: "NO", None: "-"}[ok])
                                                 for g, m, ok in report["goals"]])
    return "\n".join(out)


def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    deadline = Deadline(args.max_seconds)
    workdir = Path(report["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    aws = AwsProcess(workdir, args.max_seconds + 120)
    use_aws_env(aws.url)
    cp: ControlPlane | None = None
    bench: Run | None = None
    try:
        cp = ControlPlane(args.kubeconfig)
        bench = Run(args, deadline, workdir, aws, cp)
        if args.runs > 0:
            report["latency"] = bench.latency()
        report["throughput"] = []
        for k, (count, shape) in enumerate(args.n):
            result = bench.throughput(count, shape or args.throughput_shape,
                                      with_steady_state=(k == 0 and not args.skip_steady_state))
            # Stored before the baseline runs: a baseline that fails leaves regaccess's figures in the report.
            report["throughput"].append(result)
            if args.baseline:
                result["baseline"] = bench.baseline(count, shape or args.throughput_shape)
    finally:
        report["goals"] = goals(report)
        if bench is not None:
            for op in list(bench.operators):
                op.stop()
        if cp is not None:
            cp.stop()
        aws.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Warm latency runs (0 skips the latency section).")
    parser.add_argument("--shape", type=parse_shape, default=parse_shape("secret,policy,taskdef"),
                        help="What one RegistryCredential manages in the latency section (subset of "
                        f"{','.join(PARTS)}).")
    parser.add_argument("--n", type=parse_counts, default=parse_counts("100,1000"),
                        help="Comma-separated N[:SHAPE] for the throughput section, SHAPE with + (e.g. "
                        "1000,10000:secret); the first also gets section 3.")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="Skip the bare kopf baseline (bench.bare_kopf) beside each N.")
    parser.add_argument("--baseline-kopf-as-released", action="store_true",
                        help="Run the baseline's kopf without the fix regaccess applies to its start-up gate "
                        "(controller/kopfpatches.py), to see what that fix saves.")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="Run the throughput operators under tracemalloc (bench.traced) and report where "
                        "the memory goes once all are Ready; CPU and time figures of such a run are not representative.")
    parser.add_argument("--throughput-shape", type=parse_shape, default=parse_shape("secret,policy"),
                        help="What each RegistryCredential manages in the throughput section. Default without "
                        "taskdef: ECS allows RegisterTaskDefinition at 1/s, so N task definitions take N-20 s "
                        "whatever the operator does.")
    parser.add_argument("--aws-rate-limits", default="", help="Passed to the operator (default: the published quotas).")
    parser.add_argument("--operator-arg", action="append", default=[], help="Extra operator argument (repeatable).")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                        help="Extra environment variable for the operator and the bare kopf baseline (repeatable), "
                        "e.g. MALLOC_ARENA_MAX=2.")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="Idle window after Ready (timer CPU).")
    parser.add_argument("--resync-gap", type=float, default=30.0,
                        help="Seconds between the restart and the first drift check in section 3.")
    parser.add_argument("--py-spy", metavar="DIR", help="Profile each operator with py-spy (pip install py-spy) "
                        "into DIR (collapsed stacks); the figures of such a run are not representative.")
    parser.add_argument("--py-spy-idle", metavar="DIR", help="Profile only the idle window after Ready with py-spy "
                        "(samples holding the GIL, collapsed stacks) into DIR.")
    parser.add_argument("--skip-steady-state", action="store_true", help="Skip section 3.")
    parser.add_argument("--kubeconfig", help="A test cluster (token auth) instead of KUBEBUILDER_ASSETS.")
    parser.add_argument("--json", help="Where to write the figures (default bench/results/perf-<time>.json).")
    parser.add_argument("--max-seconds", type=float, default=2400, help="Upper bound for the whole run.")
    parser.add_argument("--workdir", help="Operator and server logs go here (default: a new /tmp directory).")
    args = parser.parse_args(argv)
    if any(n < 1 for n, _ in args.n) or args.runs < 0:
        parser.error("--n values must be >= 1 and --runs >= 0")
    report: dict[str, Any] = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                              "machine": f"{os.cpu_count()} CPUs", "command": " ".join(["python -m bench.perf_bench", *(argv or sys.argv[1:])]),
                              "workdir": args.workdir or f"/tmp/regaccess-perf-{uuid.uuid4().hex[:6]}"}
    path = Path(args.json or REPO / "bench" / "results" / f"perf-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    aborted = None
    try:
        run(args, report)
    except Exception as error:  # noqa: BLE001 - out of time or not, write what was measured
        aborted = str(error) if isinstance(error, OutOfTime) else f"{type(error).__name__}: {error}"
        report["aborted"] = aborted
        if not isinstance(error, OutOfTime):
            traceback.print_exc()
    path.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    print(f"wrote {path}")
    if aborted:
        print(aborted, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
