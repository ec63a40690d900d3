"""End-to-end tier: a real kube-apiserver + etcd, the moto HTTP server, and the
operator as a real process (``python -m controller run``).

The control plane comes from KUBEBUILDER_ASSETS (see ../shared/envtest). Without
it the tier is skipped with a visible reason; with REGACCESS_REQUIRE_E2E=1 (set by
.ci/run) a missing control plane fails instead, so CI can never pass silently
without this tier.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from controller.api import crdgen
from tests.e2e import controlplane
from tests.e2e.kube import GiveUp, Kube, wait_for

REPO = Path(__file__).resolve().parents[2]
E2E_DRIFT_INTERVAL = "4"


def _assets() -> str | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / "kube-apiserver").exists():
        return assets
    return None


@pytest.fixture(scope="session")
def control_plane():
    assets = _assets()
    if assets is None:
        message = ("e2e tier skipped: set KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd "
                   "(for example ../shared/envtest/bin)")
        if os.environ.get("REGACCESS_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cp = controlplane.start(assets)
    yield cp
    cp.stop()


TENANCY_POLICIES = "/apis/regaccess.io/v1alpha1/tenancypolicies"
OPEN_TENANCY_POLICY = {"apiVersion": "regaccess.io/v1alpha1", "kind": "TenancyPolicy",
                       "metadata": {"name": "default"},
                       "spec": {"defaultAction": "Allow", "default": {}}}


@pytest.fixture(scope="session")
def kube(control_plane) -> Kube:
    client = Kube(control_plane.server, controlplane.ADMIN_TOKEN)
    client.apply_crds(list(crdgen.render_all().values()))
    # An open TenancyPolicy (no rules, defaultAction Allow): most e2e tests exercise the second
    # line of defence, the owner marks, with names the shipped tenancy default would refuse
    # first. tests/e2e/test_tenancy_guard.py narrows it (and deletes it: the shipped default)
    # and puts it back.
    client.create(TENANCY_POLICIES, OPEN_TENANCY_POLICY)
    return client


@dataclass
class Operator:
    proc: subprocess.Popen
    log_path: Path
    metrics_url: str
    env: dict
    args: list

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return requests.get(f"{self.metrics_url}/metrics", timeout=5).text

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def restart(self) -> None:
        self.kill(signal.SIGTERM)
        self.proc = _spawn(self.args, self.env, self.log_path)
        _wait_operator_ready(self)


def _spawn(args: list, env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _wait_operator_ready(op: Operator) -> None:
    def ready() -> bool:
        if not op.alive():
            raise GiveUp("operator exited:\n" + op.log_text()[-4000:])
        try:
            return requests.get(f"{op.metrics_url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, 60, "operator /readyz")


def start_operator(control_plane, aws_url: str, tmp_path: Path, *, kubeconfig: Path | None = None,
                   extra_args: list | None = None, extra_env: dict | None = None,
                   namespaces: list[str] | None = None) -> Operator:
    """Run the operator as a process; ``namespaces`` limits it to those (``-n``), else ``-A``."""
    port = controlplane.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_"))}
    env.update({
        "KUBECONFIG": str(kubeconfig or control_plane.kubeconfig),
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "REGACCESS_CLUSTER_ID": "e2e",
        "REGACCESS_DRIFT_INTERVAL": E2E_DRIFT_INTERVAL,
        "REGACCESS_METRICS_BIND": "127.0.0.1",
        "REGACCESS_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    scope = [arg for ns in namespaces for arg in ("-n", ns)] if namespaces else ["-A"]
    args = [sys.executable, "-m", "controller", "run", *scope, "--metrics-port", str(port), *(extra_args or [])]
    log_path = tmp_path / f"operator-{uuid.uuid4().hex[:6]}.log"
    op = Operator(_spawn(args, env, log_path), log_path, f"http://127.0.0.1:{port}", env, args)
    _wait_operator_ready(op)
    return op


@pytest.fixture(scope="module")
def operator(control_plane, kube, moto_server, tmp_path_factory):
    op = start_operator(control_plane, moto_server, tmp_path_factory.mktemp("operator"))
    yield op
    op.kill(signal.SIGTERM)


@pytest.fixture
def namespace(kube) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    return name


@pytest.fixture
def aws_e2e(moto_server, monkeypatch):
    """boto3 in the test process pointed at the same moto server as the operator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    return boto3.session.Session(region_name="us-east-1")
