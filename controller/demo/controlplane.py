"""A throwaway Kubernetes control plane (etcd + kube-apiserver) on 127.0.0.1.

Used by ``regaccess demo`` (``controller.demo.story``) when KUBEBUILDER_ASSETS
is set or ``--control-plane local`` is given, and by the end-to-end test tier
(``tests/e2e/controlplane.py`` re-exports it). Started from the binaries in a
KUBEBUILDER_ASSETS directory with the flags ../shared/envtest/control-plane
uses (a working set for v1.20), bound to 127.0.0.1 only, with static tokens:
``admin-token`` (cluster-admin) and ``sa-token``
(system:serviceaccount:regaccess-system:regaccess-operator).

The service-account signing key is made with cryptography (the ``demo`` extra);
the readiness probe uses the demo's and the tests' client (``controller.kubeclient``).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controller.kubeclient import ApiError, Client

ADMIN_TOKEN = "admin-token"
SA_TOKEN = "sa-token"
SA_USER = "system:serviceaccount:regaccess-system:regaccess-operator"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_keys(directory: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "sa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    )
    (directory / "sa.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def kubeconfig_text(server: str, token: str, user: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: {user}
  user: {{token: {token}}}
contexts:
- name: envtest
  context: {{cluster: envtest, user: {user}, namespace: default}}
current-context: envtest
"""


def assets_dir(value: str | os.PathLike[str] | None) -> Path | None:
    """The KUBEBUILDER_ASSETS directory when it holds kube-apiserver and etcd, else None."""
    if not value:
        return None
    path = Path(value)
    if (path / "kube-apiserver").exists() and (path / "etcd").exists():
        return path
    return None


@dataclass
class ControlPlane:
    directory: Path
    server: str
    etcd: subprocess.Popen
    apiserver: subprocess.Popen
    api_port: int
    etcd_port: int
    assets: Path

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def kubeconfig_sa(self) -> Path:
        return self.directory / "kubeconfig-sa"

    def stop_apiserver(self) -> None:
        _stop(self.apiserver)

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on the same port against the same etcd."""
        self.apiserver = _start_apiserver(self.assets, self.directory, self.api_port, self.etcd_port)
        _wait_ready(self.server, self.directory, self.apiserver)

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            if proc.poll() is None:
                proc.terminate()
        for proc in (self.apiserver, self.etcd):
            _stop(proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _start_apiserver(assets: Path, directory: Path, api_port: int, etcd_port: int) -> subprocess.Popen:
    log = open(directory / "apiserver.log", "ab")
    return subprocess.Popen(
        [str(assets / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
         "--bind-address", "127.0.0.1", "--secure-port", str(api_port), "--cert-dir", str(directory / "certs"),
         "--token-auth-file", str(directory / "tokens.csv"), "--authorization-mode", "RBAC",
         "--service-account-issuer", "https://kubernetes.default.svc",
         "--service-account-key-file", str(directory / "sa.pub"),
         "--service-account-signing-key-file", str(directory / "sa.key"),
         "--service-cluster-ip-range", "10.0.0.0/24", "--advertise-address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def _get_status(client: Client, path: str) -> int | None:
    """The answer's HTTP status, or None while the server does not answer at all."""
    try:
        client.get(path)
    except ApiError as error:
        return error.status
    except (OSError, http.client.HTTPException):  # refused, reset, or cut short while it starts
        return None
    return 200


def _wait_ready(server: str, directory: Path, proc: subprocess.Popen, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    # The API server's serving certificate is self-signed, made a moment ago.
    client = Client.unverified(server, ADMIN_TOKEN, timeout=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited; see {directory / 'apiserver.log'}")
        # The default namespace is created by the apiserver's bootstrap controller after /readyz.
        if _get_status(client, "/readyz") == 200 and _get_status(client, "/api/v1/namespaces/default") == 200:
            return
        time.sleep(0.3)
    raise RuntimeError(f"kube-apiserver not ready after {timeout}s; see {directory / 'apiserver.log'}")


def start(assets: str | os.PathLike[str]) -> ControlPlane:
    """Start etcd and kube-apiserver in a fresh temporary directory; ready when it returns."""
    assets = Path(assets)
    directory = Path(tempfile.mkdtemp(prefix="regaccess-cp-"))
    _write_keys(directory)
    (directory / "tokens.csv").write_text(
        f"{ADMIN_TOKEN},admin,admin,system:masters\n"
        f'{SA_TOKEN},{SA_USER},sa-uid,"system:serviceaccounts,system:serviceaccounts:regaccess-system"\n'
    )
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd = subprocess.Popen(
        [str(assets / "etcd"), "--data-dir", str(directory / "etcd"), "--name", "envtest",
         "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"envtest=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync"],
        stdout=open(directory / "etcd.log", "ab"), stderr=subprocess.STDOUT,
    )
    apiserver = _start_apiserver(assets, directory, api_port, etcd_port)
    server = f"https://127.0.0.1:{api_port}"
    cp = ControlPlane(directory, server, etcd, apiserver, api_port, etcd_port, assets)
    try:
        _wait_ready(server, directory, apiserver)
    except Exception:
        cp.stop()
        raise
    (directory / "kubeconfig").write_text(kubeconfig_text(server, ADMIN_TOKEN, "admin"))
    (directory / "kubeconfig-sa").write_text(kubeconfig_text(server, SA_TOKEN, "sa"))
    return cp
