"""ECS service rollouts end to end (issue 31 §1): a real kube-apiserver, the operator as a
process, the moto server with the ECS deployments stand-in (tests/harness/ecs_standin.py).

- a service on family F is updated exactly once to the new revision after a change that
  needs a new revision (the first wiring, then a new secret name), and not updated after a
  rotation that needs none (the password only);
- a kill -9 between RegisterTaskDefinition and UpdateService neither skips nor repeats the
  update (the window held open with the harness's latency fault on DescribeServices, the
  first call after the register);
- a circuit-breaker failure shows ServicesRolledOut False with reason RolloutFailed and ECS's
  reason, and is not fought; with a 600 s drift interval, so the rollout poll of the one
  scheduler (status.nextRolloutCheckTime) is what saw it end, and it stops polling then.

Each test runs an operator of its own watching only its namespace (as test_wiring_crash.py).
"""

from __future__ import annotations

import signal
import time

import pytest

from controller.api import reasons
from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import b64, basic_auth_secret, custom_resource, delete_all, managed, rc_path, wait_ready
from tests.e2e.test_wiring import make_role, register_family
from tests.e2e.test_wiring_crash import WINDOW_SECONDS
from tests.harness.faults import MAX_LATENCY_SECONDS, FaultConfig, FaultLayer

pytestmark = pytest.mark.e2e

REGION, CLUSTER = "us-east-1", "apps"
POLL = 0.05
ROLLOUT_WAIT = 45.0


def given(aws_e2e, namespace: str) -> tuple[str, str, str]:
    """A role, family ``<ns>-web`` at revision 1 and service ``<ns>-web`` running it."""
    role = f"{namespace}-exec"
    role_arn = make_role(aws_e2e, role)
    family = service = f"{namespace}-web"
    first = register_family(aws_e2e, family, role_arn)
    ecs = aws_e2e.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.create_service(cluster=CLUSTER, serviceName=service, taskDefinition=first, desiredCount=2)
    return role, family, first


def spec(namespace: str, role: str, family: str, **extra) -> dict:
    return {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True, **extra},
            "grants": {"executionRoles": [role]},
            "consumers": {"ecsTaskDefinitions": [{"family": family}],
                          "ecsServices": [{"cluster": CLUSTER, "service": family}]}}


def service_td(aws_e2e, service: str) -> str:
    return aws_e2e.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]


def rolled(kube, path: str, reason: str, timeout: float = ROLLOUT_WAIT) -> dict:
    def check() -> dict | None:
        obj = kube.get(path)
        return obj if condition(obj, reasons.SERVICES_ROLLED_OUT).get("reason") == reason else None
    return wait_for(check, timeout, f"ServicesRolledOut reason {reason}")


def two_drift_checks(kube, path: str) -> None:
    """Wait until the operator has finished two more drift checks of the resource (any update
    it were going to make would have been sent by then)."""
    for round_ in range(2):
        before = (kube.get(path).get("status") or {}).get("lastDriftCheckTime")
        wait_for(lambda: (kube.get(path).get("status") or {}).get("lastDriftCheckTime") not in (None, before),
                 30, f"drift check {round_ + 1}", interval=0.5)


def updates(server, mark: int) -> list[str]:
    return [c.operation for c in server.calls.done("ecs", "UpdateService", since=mark)]


def test_rolled_once_per_revision_and_not_for_a_rotation_without_one(
        control_plane, kube, moto_server, aws_server_session, aws_e2e, namespace, tmp_path):
    server = aws_server_session
    role, family, first = given(aws_e2e, namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace])
    path = rc_path(namespace, "svc")
    try:
        mark = server.calls.mark()
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "svc",
                                                        spec(namespace, role, family)))
        obj = rolled(kube, path, reasons.ROLLOUT_IN_PROGRESS)
        revision = managed(obj)[("taskDefinition", family)]["arn"]
        assert revision != first and service_td(aws_e2e, family) == revision
        assert condition(obj, "Reconciling").get("reason") == reasons.ROLLOUT_IN_PROGRESS
        assert obj["status"]["services"][0]["taskDefinition"] == revision

        server.settle_deployment(REGION, CLUSTER, family, "COMPLETED")
        obj = rolled(kube, path, reasons.ROLLED_OUT)  # the scheduler's rollout poll saw it end
        assert obj["status"]["services"][0]["runningCount"] == 2
        assert "nextRolloutCheckTime" not in obj["status"]
        assert updates(server, mark) == ["UpdateService"]

        # A rotation that needs no revision: the password only. Wait until it is synced.
        kube.merge_patch(kube.secret_path(namespace, "src"), {"data": {"password": b64("pw-rotated")}})
        wait_for(lambda: server.calls.count("secretsmanager", "PutSecretValue", since=mark) >= 1, 30,
                 "the rotated value written")
        two_drift_checks(kube, path)
        assert updates(server, mark) == ["UpdateService"]
        assert server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1

        # A change that needs a revision: a new secret (new ARN) -> one more revision, one more update.
        kube.merge_patch(path, {"spec": {"secret": {"name": f"regaccess/{namespace}/moved"}}})
        def second() -> str | None:
            rows = (kube.get(path).get("status") or {}).get("services") or []
            td = rows[0].get("taskDefinition") if rows else None
            return td if td not in (None, revision) else None
        newer = wait_for(second, ROLLOUT_WAIT, "the second revision rolled")
        assert service_td(aws_e2e, family) == newer
        server.settle_deployment(REGION, CLUSTER, family, "COMPLETED")
        rolled(kube, path, reasons.ROLLED_OUT)
        assert updates(server, mark) == ["UpdateService", "UpdateService"]
        assert server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 2
    finally:
        if op.alive():
            delete_all(kube, namespace)
        print(op.log_text()[-20000:])
        op.kill(signal.SIGTERM)


def slow_first_describe_services() -> FaultConfig:
    """The first DescribeServices sleeps at least WINDOW_SECONDS (see test_wiring_crash)."""
    for seed in range(1000):
        config = FaultConfig(seed=seed, latency_max_seconds=MAX_LATENCY_SECONDS,
                             scoped=[{"service": "ecs", "operation": "DescribeServices", "rates": {"latency": 1.0}}])
        probe = FaultLayer(app=lambda environ, start_response: [])
        probe.configure(config)
        if probe.decide("ecs", "DescribeServices").latency >= WINDOW_SECONDS:
            return config
    raise AssertionError("no seed below 1000 gives a long first latency")


def test_kill_between_register_and_update_neither_skips_nor_repeats(
        control_plane, kube, moto_server, aws_server_session, aws_e2e, namespace, tmp_path):
    server = aws_server_session
    role, family, first = given(aws_e2e, namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace])
    path = rc_path(namespace, "svc")
    try:
        server.faults.configure(slow_first_describe_services())
        mark = server.calls.mark()
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "svc",
                                                        spec(namespace, role, family)))
        wait_for(lambda: server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1, 45,
                 "the revision registered", interval=POLL)
        registered_at = time.monotonic()
        wait_for(lambda: managed(kube.get(path)).get(("taskDefinition", family)), WINDOW_SECONDS,
                 "the revision recorded", interval=POLL)
        op.kill(signal.SIGKILL)
        assert time.monotonic() - registered_at < WINDOW_SECONDS
        assert updates(server, mark) == []  # killed before the update
        assert service_td(aws_e2e, family) == first

        server.faults.clear()
        op.restart()
        obj = rolled(kube, path, reasons.ROLLOUT_IN_PROGRESS)
        revision = managed(obj)[("taskDefinition", family)]["arn"]
        assert service_td(aws_e2e, family) == revision
        server.settle_deployment(REGION, CLUSTER, family, "COMPLETED")
        rolled(kube, path, reasons.ROLLED_OUT)
        assert updates(server, mark) == ["UpdateService"]
        assert server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1
    finally:
        server.faults.clear()
        if op.alive():
            delete_all(kube, namespace)
        print(op.log_text()[-20000:])
        op.kill(signal.SIGTERM)


def test_circuit_breaker_failure_is_false_with_the_reason_and_not_fought(
        control_plane, kube, moto_server, aws_server_session, aws_e2e, namespace, tmp_path):
    server = aws_server_session
    role, family, first = given(aws_e2e, namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    # A drift interval far beyond the test: what follows the deployment is the rollout poll
    # (status.nextRolloutCheckTime in the one scheduler), not the drift check.
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                        extra_env={"REGACCESS_DRIFT_INTERVAL": "600"})
    path = rc_path(namespace, "svc")
    try:
        mark = server.calls.mark()
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "svc",
                                                        spec(namespace, role, family)))
        obj = rolled(kube, path, reasons.ROLLOUT_IN_PROGRESS)
        assert obj["status"]["nextRolloutCheckTime"]
        server.settle_deployment(REGION, CLUSTER, family, "FAILED")
        obj = rolled(kube, path, reasons.ROLLOUT_FAILED)
        rolled_out = condition(obj, reasons.SERVICES_ROLLED_OUT)
        assert rolled_out["status"] == "False" and "circuit breaker" in rolled_out["message"]
        assert obj["status"]["services"][0]["rolloutState"] == "FAILED"
        assert condition(obj, "Ready")["status"] == "True"
        assert service_td(aws_e2e, family) == first  # ECS rolled back; the operator leaves it so
        assert "nextRolloutCheckTime" not in obj["status"]  # the rollout ended: no more polls
        assert updates(server, mark) == ["UpdateService"]
        wait_ready(kube, path)
    finally:
        if op.alive():
            delete_all(kube, namespace)
        print(op.log_text()[-20000:])
        op.kill(signal.SIGTERM)
