"""A throwaway Kubernetes control plane (etcd + kube-apiserver) for the e2e tier.

Started from the binaries in KUBEBUILDER_ASSETS with the flags that
../shared/envtest/control-plane uses (a working set for v1.20), on 127.0.0.1
only, with static tokens: ``admin-token`` (cluster-admin) and ``sa-token``
(system:serviceaccount:regaccess-system:regaccess-operator). Also used by
``regaccess demo``-style local runs through ``scripts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

ADMIN_TOKEN = "admin-token"
SA_TOKEN = "sa-token"
SA_USER = "system:serviceaccount:regaccess-system:regaccess-operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_keys(directory: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

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
        self.apiserver.terminate()
        try:
            self.apiserver.wait(20)
        except subprocess.TimeoutExpired:
            self.apiserver.kill()
            self.apiserver.wait(10)

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on the same port against the same etcd."""
        self.apiserver = _start_apiserver(self.assets, self.directory, self.api_port, self.etcd_port)
        _wait_ready(self.server, self.directory, self.apiserver)

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            proc.terminate()
        for proc in (self.apiserver, self.etcd):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


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


def _wait_ready(server: str, directory: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited; see {directory / 'apiserver.log'}")
        try:
            r = requests.get(f"{server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             verify=False, timeout=2)
            if r.status_code == 200:
                # The default namespace is created by the apiserver's bootstrap controller.
                ns = requests.get(f"{server}/api/v1/namespaces/default",
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, verify=False, timeout=2)
                if ns.status_code == 200:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"kube-apiserver not ready after {timeout}s; see {directory / 'apiserver.log'}")


def start(assets: str | os.PathLike[str]) -> ControlPlane:
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
