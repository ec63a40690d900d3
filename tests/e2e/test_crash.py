"""Crash safety: kill -9 the operator at random moments, restart the API server, SIGTERM mid-reconcile.

Given roles, task definition families and repositories in the AWS test server
(with latency injected, so kills land in the middle of reconciles), when a
create / rotate / update / delete workload runs in rounds and the operator is
killed with SIGKILL at a seeded random moment of every round (and the
kube-apiserver is restarted once, on the same port and etcd, while the
operator runs), then after the last restart every resource converges and:

- each family has exactly one new task definition revision (no duplicate from
  a register whose answer or status write the kill interrupted);
- deleted resources left no secret and no inline policy (no half-deleted state);
- every remaining secret holds the latest value (no secret lost).

And SIGTERM during reconciles: the process exits within --shutdown-timeout
plus a margin, and a restart converges with the same invariants.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Callable

import pytest

from controller.aws.repository_policies import sid_prefix
from tests.e2e import resilience as r
from tests.e2e.kube import Kube, wait_for

pytestmark = pytest.mark.e2e

ROUNDS = 6
N_CREDENTIALS = 8
CONVERGE_TIMEOUT = 150
SHUTDOWN_TIMEOUT = 5
EXIT_MARGIN = 20  # kopf's own stop (watchers, 2 s queue drain) plus process exit


def _retrying(action: Callable[[], Any], what: str) -> Any:
    """Test-side API calls across an API server restart: the first one may hit a dead connection."""
    return wait_for(lambda: action() or True, 30, what, interval=0.5)


class Workload:
    def __init__(self, kube: Kube, ns: str, role: str, families: dict[int, str], repos: dict[int, str]) -> None:
        self.kube, self.ns, self.role, self.families, self.repos = kube, ns, role, families, repos
        self.passwords: dict[int, str] = {}
        self.created: set[int] = set()
        self.deleted: set[int] = set()
        self.xcreated: set[int] = set()
        self.xdeleted: set[int] = set()
        self.generation = 0

    def create(self, indexes: list[int], rng) -> None:
        for i in indexes:
            self.passwords[i] = f"CRASHPW-{i}-{rng.randrange(10**9):09d}"
            _retrying(lambda: self.kube.create(self.kube.secret_path(self.ns), r.basic_auth_secret(
                self.ns, f"src-{i}", "robot", self.passwords[i])), f"create src-{i}")
            _retrying(lambda: self.kube.create(self.kube.rc_path(self.ns), r.registry_credential(
                self.ns, f"cred-{i}", r.wired_spec(f"src-{i}", self.role, self.families[i]))), f"create cred-{i}")
            self.created.add(i)

    def rotate(self, indexes: list[int], rng) -> None:
        for i in indexes:
            self.passwords[i] = f"CRASHPW-rotated-{i}-{rng.randrange(10**9):09d}"
            _retrying(lambda: self.kube.merge_patch(self.kube.secret_path(self.ns, f"src-{i}"), {
                "data": {"password": r.b64(self.passwords[i])}}), f"rotate src-{i}")

    def describe(self, indexes: list[int]) -> None:
        self.generation += 1
        for i in indexes:
            _retrying(lambda: self.kube.merge_patch(self.kube.rc_path(self.ns, f"cred-{i}"), {
                "spec": {"secret": {"description": f"round {self.generation}"}}}), f"update cred-{i}")

    def delete(self, indexes: list[int]) -> None:
        for i in indexes:
            _retrying(lambda: self.kube.delete(self.kube.rc_path(self.ns, f"cred-{i}")), f"delete cred-{i}")
            self.deleted.add(i)

    def create_x(self, i: int) -> None:
        _retrying(lambda: self.kube.create(r.xrepo_path(self.ns), r.cross_account(
            self.ns, f"share-{i}", r.xrepo_spec(self.repos[i], "210987654321"))), f"create share-{i}")
        self.xcreated.add(i)

    def delete_x(self, i: int) -> None:
        _retrying(lambda: self.kube.delete(r.xrepo_path(self.ns, f"share-{i}")), f"delete share-{i}")
        self.xdeleted.add(i)

    def converged(self) -> bool:
        kube, ns = self.kube, self.ns
        if any(kube.get_or_none(kube.rc_path(ns, f"cred-{i}")) is not None for i in self.deleted):
            return False
        if any(kube.get_or_none(r.xrepo_path(ns, f"share-{i}")) is not None for i in self.xdeleted):
            return False
        live = sorted(self.created - self.deleted)
        paths = [kube.rc_path(ns, f"cred-{i}") for i in live]
        paths += [r.xrepo_path(ns, f"share-{i}") for i in sorted(self.xcreated - self.xdeleted)]
        if r.not_ready(kube, paths):
            return False
        return all(r.secret_value(f"regaccess/{ns}/cred-{i}")["password"] == self.passwords[i] for i in live)

    def check_invariants(self) -> None:
        ns = self.ns
        live = self.created - self.deleted
        for i in sorted(self.created):
            revs = r.revisions(self.families[i])
            assert len(revs) == 2, f"{self.families[i]}: revisions {[d['revision'] for d in revs]}"
            assert f"regaccess/{ns}/cred-{i}" in (r.credentials_parameter(revs[-1]) or "")
        assert r.secret_names(f"regaccess/{ns}/") == {f"regaccess/{ns}/cred-{i}" for i in live}
        for i in live:
            assert r.secret_value(f"regaccess/{ns}/cred-{i}") == {"username": "robot", "password": self.passwords[i]}
        assert r.role_policies(self.role) == {f"regaccess-{ns}-cred-{i}" for i in live}
        for i in self.xcreated:
            owned = {s for s in r.repository_sids(self.repos[i]) if s.startswith(sid_prefix("e2e", ns, f"share-{i}"))}
            assert bool(owned) == (i not in self.xdeleted), self.repos[i]


def _setup(kube: Kube, name: str, n: int, n_repos: int):
    rng = r.seeded(name)
    run = rng.randrange(16**6)
    ns = f"{name}-{run:06x}"
    kube.create_namespace(ns)
    role = f"{name}-exec-{run:06x}"
    role_arn = r.make_role(role)
    families = {i: f"{name}-{run:06x}-{i}" for i in range(n)}
    for family in families.values():
        r.make_family(family, role_arn)
    repos = {i: f"{name}-{run:06x}/repo-{i}" for i in range(n_repos)}
    for repo in repos.values():
        r.make_repository(repo)
    return rng, ns, Workload(kube, ns, role, families, repos)


def test_kill9_rounds_and_apiserver_restart(control_plane, kube, aws_server_session, aws_e2e, tmp_path):
    server = aws_server_session
    rng, ns, work = _setup(kube, "crash", N_CREDENTIALS, 2)
    # Latency on every AWS call widens the windows a kill can land in; no failures here
    # (the soak covers those), so every effect seen is the kill's.
    server.faults.configure(seed=99, rates={"latency": 0.6}, latency_max_seconds=0.4)
    rounds: list[Callable[[], None]] = [
        lambda: (work.create([0, 1, 2, 3], rng), work.create_x(0)),
        lambda: (work.create([4, 5, 6, 7], rng), work.create_x(1)),
        lambda: work.rotate([0, 1, 2, 3], rng),
        lambda: work.describe([4, 5]),
        lambda: (work.delete([1, 5]), work.delete_x(0)),
        lambda: (work.rotate([6, 7], rng), work.delete([2])),
    ]
    assert len(rounds) == ROUNDS
    kills, apiserver_restarts, kill_delays = 0, 0, []
    op = r.scoped_operator(control_plane, server.url, tmp_path, [ns])
    try:
        for index, action in enumerate(rounds):
            action()
            if index == 3:
                # The API server goes away under the running operator and comes back on the
                # same port and etcd: watches break (and resume, or get 410 Gone and re-list).
                time.sleep(rng.uniform(0.5, 1.5))
                control_plane.stop_apiserver()
                time.sleep(2)
                control_plane.start_apiserver()
                apiserver_restarts += 1
            delay = rng.uniform(0.2, 3.0)
            kill_delays.append(round(delay, 2))
            time.sleep(delay)
            op.kill(signal.SIGKILL)
            kills += 1
            op = r.scoped_operator(control_plane, server.url, tmp_path, [ns])
        wait_for(work.converged, CONVERGE_TIMEOUT, "convergence after the last restart", interval=1)
    finally:
        server.faults.clear()
        op.kill(signal.SIGTERM)
    work.check_invariants()
    r.record_figures("crash", {
        "rounds": ROUNDS, "rounds_survived": ROUNDS, "kill9": kills, "apiserver_restarts": apiserver_restarts,
        "kill_delays_seconds": kill_delays,
        "resources": len(work.created) + len(work.xcreated),
        "resources_converged": len(work.created - work.deleted) + len(work.xcreated - work.xdeleted),
        "resources_deleted_cleanly": len(work.deleted) + len(work.xdeleted),
        "duplicate_revisions": 0, "orphaned_secrets": 0, "lost_secrets": 0,
    })


def test_sigterm_mid_reconcile_exits_in_bounded_time_and_converges(control_plane, kube, aws_server_session,
                                                                   aws_e2e, tmp_path):
    server = aws_server_session
    rng, ns, work = _setup(kube, "term", 4, 0)
    # Slow AWS: every call waits up to 1 s, so SIGTERM finds reconciles mid-way.
    server.faults.configure(seed=5, rates={"latency": 1.0}, latency_max_seconds=1.0)
    env = {"REGACCESS_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    op = r.scoped_operator(control_plane, server.url, tmp_path, [ns], extra_env=env)
    try:
        mark = server.calls.mark()
        work.create([0, 1, 2, 3], rng)
        wait_for(lambda: server.calls.count("secretsmanager", since=mark) > 0, 30, "reconciles under way", interval=0.1)
        time.sleep(rng.uniform(0.5, 1.5))
        sent = time.monotonic()
        op.proc.send_signal(signal.SIGTERM)
        op.proc.wait(SHUTDOWN_TIMEOUT + EXIT_MARGIN)  # raises TimeoutExpired: not bounded
        exit_seconds = time.monotonic() - sent
        log = op.log_text()
        assert '"event": "stopped"' in log
        server.faults.configure(seed=6, rates={"latency": 0.3}, latency_max_seconds=0.3)
        op = r.scoped_operator(control_plane, server.url, tmp_path, [ns], extra_env=env)
        wait_for(work.converged, CONVERGE_TIMEOUT, "convergence after SIGTERM and restart", interval=1)
    finally:
        server.faults.clear()
        op.kill(signal.SIGTERM)
    work.check_invariants()
    r.record_figures("sigterm", {
        "sigterm_exit_seconds": round(exit_seconds, 1), "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "resources_converged": len(work.created), "duplicate_revisions": 0, "lost_secrets": 0,
    })
