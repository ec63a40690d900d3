"""A crash between registering a task definition revision and kopf's status patch
never registers a second revision (issue 3), end to end.

The operator process is killed with SIGKILL inside that window and restarted.
The window is made wide and deterministic with the AWS harness's latency fault
on the first call the operator makes after RegisterTaskDefinition (Batch's
DescribeJobDefinitions, the next step's first read): the reconcile is then
provably past the register and not yet returned to kopf.

Its own module because it runs an operator of its own (``start_operator``,
watching only the test's namespace), which must not share the cluster with the
module-scoped ``operator`` of test_wiring.py: two standalone operators would
both reconcile the resource.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import basic_auth_secret, custom_resource, delete_all, managed, rc_path, wait_ready
from tests.e2e.test_wiring import family_revisions, job_revisions, make_role, register_family, register_job
from tests.harness.faults import MAX_LATENCY_SECONDS, FaultConfig, FaultLayer

pytestmark = pytest.mark.e2e

SLOW_SERVICE, SLOW_OPERATION = "batch", "DescribeJobDefinitions"
WINDOW_SECONDS = 4.5  # how long the first slow call sleeps at least
POLL = 0.05


def slow_first_call_config() -> FaultConfig:
    """A fault config whose first DescribeJobDefinitions sleeps at least WINDOW_SECONDS.

    The harness draws the latency of the n-th call of an operation from its seed; ask
    the harness's own decision function (not a copy of its formula) which seed gives a
    long first sleep.
    """
    for seed in range(1000):
        config = FaultConfig(
            seed=seed, latency_max_seconds=MAX_LATENCY_SECONDS,
            scoped=[{"service": SLOW_SERVICE, "operation": SLOW_OPERATION, "rates": {"latency": 1.0}}],
        )
        probe = FaultLayer(app=lambda environ, start_response: [])
        probe.configure(config)
        if probe.decide(SLOW_SERVICE, SLOW_OPERATION).latency >= WINDOW_SECONDS:
            return config
    raise AssertionError("no seed below 1000 gives a long first latency")


def test_kill_between_register_and_status_patch_registers_once(
        control_plane, kube, moto_server, aws_server_session, aws_e2e, namespace, tmp_path):
    server = aws_server_session
    role_arn = make_role(aws_e2e, f"{namespace}-exec")
    family, job = f"{namespace}-web", f"{namespace}-nightly"
    first_task = register_family(aws_e2e, family, role_arn)
    register_job(aws_e2e, job, role_arn)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace])
    try:
        server.faults.configure(slow_first_call_config())
        mark = server.calls.mark()
        kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "crash", {
            "source": {"secretRef": {"name": "src"}},
            "grants": {"executionRoles": [f"{namespace}-exec"]},
            "consumers": {"ecsTaskDefinitions": [{"family": family}], "batchJobDefinitions": [{"name": job}]},
        }))
        wait_for(lambda: server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1, 45,
                 "the revision registered", interval=POLL)
        registered_at = time.monotonic()
        new_task = next(r for r in family_revisions(aws_e2e, family) if r != first_task)

        # Right after the register, before the handler returns: status.managed already
        # names the new revision (StatusWriter, record_now), and kopf has patched nothing.
        def recorded() -> dict | None:
            obj = kube.get(rc_path(namespace, "crash"))
            return obj if managed(obj).get(("taskDefinition", family), {}).get("arn") == new_task else None

        obj = wait_for(recorded, WINDOW_SECONDS, "the revision ARN in status.managed", interval=POLL)
        # observedGeneration 0 is the CRD's default: kopf has patched nothing yet.
        assert condition(obj, "Ready") == {} and obj["status"].get("observedGeneration") == 0, obj["status"]
        op.kill(signal.SIGKILL)
        # Killed inside the window (the slow next call keeps the reconcile from returning
        # for WINDOW_SECONDS): the Batch step had not registered, kopf had not patched.
        assert time.monotonic() - registered_at < WINDOW_SECONDS
        assert server.calls.count(SLOW_SERVICE, "RegisterJobDefinition", since=mark) == 0
        after_kill = kube.get(rc_path(namespace, "crash"))
        assert condition(after_kill, "Ready") == {} and after_kill["status"].get("observedGeneration") == 0

        server.faults.clear()
        op.restart()
        obj = wait_ready(kube, rc_path(namespace, "crash"))

        # One revision of ours, registered once; the restart only did the Batch part.
        assert server.calls.count("ecs", "RegisterTaskDefinition", since=mark) == 1
        assert sorted(family_revisions(aws_e2e, family)) == sorted([first_task, new_task])
        assert managed(obj)[("taskDefinition", family)]["arn"] == new_task
        assert sorted(job_revisions(aws_e2e, job)) == [1, 2]
        assert server.calls.count(SLOW_SERVICE, "RegisterJobDefinition", since=mark) == 1
    finally:
        server.faults.clear()
        if op.alive():
            delete_all(kube, namespace)
        print(op.log_text()[-20000:])  # shown by pytest only on failure
        op.kill(signal.SIGTERM)
