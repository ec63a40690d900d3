"""A converged RegistryCredential that manages six AWS objects, for the drift tests of the AWS tier.

Shared by test_drift_budget_aws.py (the call budget of a check) and
test_drift_report_aws.py (driftPolicy Report stays Report): one secret, two role
policies, a task definition, a job definition and a pull-through cache rule.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import boto3

from controller.aws.clients import Clients
from controller.reconcile import registry_credential as rc
from tests.conftest import REGION
from tests.harness import world
from tests.aws.open_tenancy import OPEN

NS, NAME, CLUSTER = "team", "cred", "c1"
POLICY = f"regaccess-{NS}-{NAME}"
PREFIX = "hub"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SOURCE = {"type": "kubernetes.io/basic-auth", "data": {"username": b64("robot"), "password": b64("pw-1")},
          "metadata": {"name": "src", "namespace": NS, "resourceVersion": "7"}}


def raw(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def clients_for(factory):
    return lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external)


def full_spec(**extra: Any) -> dict[str, Any]:
    return {
        "source": {"secretRef": {"name": "src"}},
        "grants": {"executionRoles": ["exec-a", "exec-b"]},
        "consumers": {"ecsTaskDefinitions": [{"family": "web"}], "batchJobDefinitions": [{"name": "nightly"}]},
        "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": PREFIX},
        "secret": {"forceDeleteWithoutRecovery": True},
        **extra,
    }


def given_wired_world() -> None:
    arn_a = world.make_role(raw, "exec-a")
    world.make_role(raw, "exec-b")
    world.register_family(raw, "web", arn_a)
    world.register_job(raw, "nightly", arn_a)


def run(factory, spec: dict[str, Any], status: dict[str, Any], *, drift_check: bool,
        generation: int = 1) -> rc.ReconcileResult:
    request = rc.Request(namespace=NS, name=NAME, generation=generation, spec=spec, status=status,
                         source_secret=SOURCE, cluster_id=CLUSTER, drift_check=drift_check)
    return rc.reconcile(request, clients_for(factory), tenancy_policy=OPEN)


def converge(factory, spec: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(3):  # the first run creates; a second may be needed for nothing else
        result = run(factory, spec, status, drift_check=False)
        assert result.retry_after is None and result.outcome == "success", result.status
        status = result.status
        if result.ready:
            return status
    raise AssertionError(status)


def on_the_wire(aws_server, mark: int) -> tuple[Counter, list[str]]:
    calls = aws_server.calls.list(since=mark)
    reads = Counter(f"{c.service}:{c.operation}" for c in calls)
    writes = [f"{c.service}:{c.operation}" for c in aws_server.calls.writes(since=mark)]
    for write in writes:
        reads[write] -= 1
    return +reads, writes
