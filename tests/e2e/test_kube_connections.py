"""The connection bound end to end: a burst of resources never opens more API server connections
than ``--kube-connections`` allows, and every resource still becomes Ready.

Given a real API server and the operator as a process watching one namespace with
``--kube-connections 2 --workers 4``, when 40 RegistryCredentials are created at once,
then all 40 become Ready (the watch streams keep their own connections, so the bound
starves no request), and the operator's established TCP connections to the API server,
sampled from ``/proc`` every 50 ms throughout, never exceed kopf's bound (one per watch
stream plus 2: ``controller.handlers.connection_limit``) plus one kept-open status
connection per AWS worker thread. Without the bound (``--kube-connections 0``) the same
burst holds one connection per resource in flight: more than that (the check can fail).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import urllib.parse
import uuid

import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.support import SETTLE, basic_auth_secret, delete_all

pytestmark = pytest.mark.e2e

COUNT = 40
REQUESTS = 2
WORKERS = 4


def api_connections(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` on 127.0.0.1 (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open(f"/proc/{pid}/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def test_a_burst_stays_within_the_connection_bound(kube, control_plane, moto_server, tmp_path, aws_e2e):
    from controller.handlers import NAMESPACED_WATCHES, OTHER_WATCHES

    namespace = f"conn-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    port = urllib.parse.urlsplit(control_plane.server).port
    operator = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                              extra_args=["--kube-connections", str(REQUESTS), "--workers", str(WORKERS)])
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            try:
                peak[0] = max(peak[0], api_connections(operator.proc.pid, port))
            except OSError:
                return  # the process is gone; the test says why below

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        def create(i: int) -> None:
            kube.create(kube.rc_path(namespace), registry_credential(namespace, f"burst-{i:02d}", {
                "source": {"secretRef": {"name": "src"}},
                "secret": {"name": f"regaccess/{namespace}/burst-{i:02d}", "forceDeleteWithoutRecovery": True}}))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(COUNT)))

        def all_ready() -> bool:
            items = kube.get(kube.rc_path(namespace))["items"]
            return len(items) == COUNT and all(condition(o, "Ready").get("status") == "True" for o in items)

        wait_for(all_ready, SETTLE * 4, f"{COUNT} RegistryCredentials Ready under the bound")
        stop.set()
        sampler.join(5)
        assert operator.alive()
        bound = NAMESPACED_WATCHES + OTHER_WATCHES + REQUESTS + WORKERS
        assert 0 < peak[0] <= bound, f"{peak[0]} connections to the API server, bound {bound}"
    finally:
        stop.set()
        delete_all(kube, namespace)
        operator.kill(signal.SIGTERM)
