"""Shared pieces of the benchmarks: deadlines, the operator process, the test servers.

Used by ``bench/drift_bench.py`` and ``bench/perf_bench.py`` (never by the
product or the tests). Everything here is bounded in time: every wait goes
through a ``Deadline`` that ends the run with a clear message.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.api import crdgen  # noqa: E402
from tests.e2e import controlplane  # noqa: E402
from tests.e2e.kube import Kube  # noqa: E402
from tests.harness import awsserver  # noqa: E402

REGION = "us-east-1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION}


class OutOfTime(SystemExit):
    """The run's time limit was reached; the message says what it was waiting for."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise OutOfTime(f"bench: out of time ({self.seconds:.0f} s) {what} (raise --max-seconds)")

    def wait(self, predicate: Callable[[], Any], what: str, poll: float = 1.0) -> None:
        while not predicate():
            self.check(f"waiting for {what}")
            time.sleep(poll)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def process_status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Operator:
    """``python -m controller run`` as a child process, with its /metrics and /readyz."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def peak_rss_mib(self) -> float:
        return process_status_mib(self.proc.pid, "VmHWM")

    def rss_mib(self) -> float:
        return process_status_mib(self.proc.pid, "VmRSS")

    def metrics(self) -> dict[tuple[str, tuple], float]:
        values: dict[tuple[str, tuple], float] = {}
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit("bench: operator exited:\n" + self.log.read_text(errors="replace")[-3000:])
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, deadline: Deadline, poll: float = 0.05) -> float:
        """Wait for /readyz; returns seconds from process start (the startup time)."""
        deadline.wait(self.ready, "operator /readyz", poll=poll)
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# The benchmarks name roles, families and job definitions (bench-exec-<i>, ...) that the
# shipped tenancy default refuses (it scopes every field to the namespace). The bench follows
# a TenancyPolicy of its own, written explicitly open, never the cluster's "default".
BENCH_TENANCY_POLICY = "regaccess-bench"
BENCH_TENANCY_BODY = {"apiVersion": "regaccess.io/v1alpha1", "kind": "TenancyPolicy",
                      "metadata": {"name": BENCH_TENANCY_POLICY},
                      "spec": {"defaultAction": "Allow", "default": {}}}


def start_operator(kubeconfig: Path, aws_url: str, workdir: Path, *, drift_interval: float,
                   namespaces: list[str] | None = None, extra_args: list[str] | None = None,
                   extra_env: dict[str, str] | None = None, python: list[str] | None = None) -> Operator:
    """Start the operator (``-n`` each of ``namespaces``, else ``-A``); does not wait for it.

    ``python`` replaces ``[sys.executable]`` (e.g. to run it under a profiler)."""
    port = controlplane.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_"))}
    env.update(AWS_ENV)
    env.update({
        "KUBECONFIG": str(kubeconfig), "AWS_ENDPOINT_URL": aws_url, "REGACCESS_CLUSTER_ID": "bench",
        "REGACCESS_METRICS_BIND": "127.0.0.1", "REGACCESS_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    scope = [arg for ns in namespaces for arg in ("-n", ns)] if namespaces else ["-A"]
    args = [*(python or [sys.executable]), "-m", "controller", "run", *scope, "--metrics-port", str(port),
            "--drift-interval", str(drift_interval), "--tenancy-policy", BENCH_TENANCY_POLICY, *(extra_args or [])]
    return Operator(args, env, workdir / f"operator-{uuid.uuid4().hex[:6]}.log", port)


def metric_sum(values: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in values.items() if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def use_aws_env(url: str) -> None:
    """Point boto3 in this process at the AWS test server."""
    os.environ.update(AWS_ENV)
    os.environ["AWS_ENDPOINT_URL"] = url


class AwsProcess:
    """The AWS test server as its own process (``python -m tests.harness.awsserver``).

    Its own process, so moto's request handling does not share this script's
    interpreter lock with the boto3 floor and the polling."""

    def __init__(self, workdir: Path, max_seconds: float) -> None:
        self.log = workdir / "awsserver.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.awsserver", "--port", "0", "--max-seconds", str(max_seconds)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http://"):
            self.stop()
            raise SystemExit(f"bench: the AWS test server did not start (see {self.log})")
        self.remote = awsserver.connect(line)
        self.remote.wait_ready(30)
        self.url = self.remote.url
        self.calls = self.remote.calls

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class ControlPlane:
    """A kube-apiserver from KUBEBUILDER_ASSETS, or a test cluster named by a kubeconfig (token auth)."""

    def __init__(self, kubeconfig: str | None) -> None:
        self._cp = None
        if kubeconfig:
            self.kubeconfig = Path(kubeconfig)
            config = yaml.safe_load(self.kubeconfig.read_text())
            self.kube = Kube(config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"])
        else:
            assets = os.environ.get("KUBEBUILDER_ASSETS")
            if not assets:
                raise SystemExit("bench: set KUBEBUILDER_ASSETS (../shared/envtest/bin) or pass --kubeconfig")
            self._cp = controlplane.start(assets)
            self.kubeconfig = self._cp.kubeconfig
            self.kube = Kube(self._cp.server, controlplane.ADMIN_TOKEN)
        self.kube.apply_crds(list(crdgen.render_all().values()))
        path = "/apis/regaccess.io/v1alpha1/tenancypolicies"
        if self.kube.get_or_none(f"{path}/{BENCH_TENANCY_POLICY}") is None:
            self.kube.create(path, BENCH_TENANCY_BODY)

    def cpu_seconds(self) -> float | None:
        """CPU of the local kube-apiserver and etcd (None for a --kubeconfig cluster): they share
        the machine's cores with the operator, so a write saved per object shows up here."""
        if self._cp is None:
            return None
        return process_cpu_seconds(self._cp.apiserver.pid) + process_cpu_seconds(self._cp.etcd.pid)

    def stop(self) -> None:
        if self._cp is not None:
            self._cp.stop()
