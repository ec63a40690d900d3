"""status.observedGeneration says what was evaluated; status.syncedGeneration what was applied.

Every reconcile now sets observedGeneration (kstatus reads it before any condition), so a
RegistryCredential remembers the generation it last applied in full in syncedGeneration.
Given ``driftPolicy: Report``, when a spec change fails half-way and is retried, then the
retry applies it (it is the change, not drift); and a status written by an older version
(observedGeneration only, set then only after a full sync) keeps Report from writing.
Statuses go through ``settle`` as the handlers do.
"""

from __future__ import annotations

import copy

import pytest

from controller.reconcile import registry_credential as rc
from controller.reconcile.result import settle
from tests.aws.wired_world import (
    CLUSTER, NAME, NS, POLICY, SOURCE, clients_for, converge, full_spec, given_wired_world, on_the_wire, raw,
)
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws


def reconcile(factory, spec, status, generation, *, drift_check=False) -> rc.ReconcileResult:
    request = rc.Request(namespace=NS, name=NAME, generation=generation, spec=spec, status=status,
                         source_secret=SOURCE, cluster_id=CLUSTER, drift_check=drift_check)
    return settle(rc.reconcile(request, clients_for(factory), tenancy_policy=OPEN), generation)


def test_a_spec_change_that_failed_is_applied_by_the_retry_under_report(aws_server, factory):
    given_wired_world()
    spec = full_spec(driftPolicy="Report")
    status = settle(rc.ReconcileResult(status=converge(factory, spec), outcome="success"), 1).status
    assert status["syncedGeneration"] == 1
    changed = copy.deepcopy(spec)
    changed["secret"]["description"] = "generation two"

    # Generation 2's description cannot be written yet (every attempt throttled).
    aws_server.faults.configure(fail_first=[{"service": "secretsmanager", "operation": "UpdateSecret", "count": 50,
                                             "code": "ThrottlingException", "message": "Rate exceeded",
                                             "status": 400}])
    failed = reconcile(factory, changed, status, 2)
    assert failed.outcome == "retry"
    assert failed.status["observedGeneration"] == 2 and failed.status["syncedGeneration"] == 1

    aws_server.faults.clear()
    mark = aws_server.calls.mark()
    retried = reconcile(factory, changed, failed.status, 2)
    _, writes = on_the_wire(aws_server, mark)
    assert retried.outcome == "success", retried.status["conditions"]
    # Applied as the change it is, not reported as drift and left alone.
    assert "secretsmanager:UpdateSecret" in writes
    assert raw("secretsmanager").describe_secret(SecretId=status["secretArn"])["Description"] == "generation two"
    assert not [d for d in retried.status.get("drift") or [] if d["object"] == "secret"]
    assert retried.status["syncedGeneration"] == 2


def test_a_status_from_an_older_version_keeps_report_from_writing(aws_server, factory):
    given_wired_world()
    spec = full_spec(driftPolicy="Report")
    legacy = {k: v for k, v in converge(factory, spec).items() if k != "syncedGeneration"}
    assert legacy["observedGeneration"] == 1
    world.edit_role_policy(raw, "exec-a", POLICY)  # drift behind the operator's back

    mark = aws_server.calls.mark()
    result = reconcile(factory, spec, legacy, 1, drift_check=True)
    _, writes = on_the_wire(aws_server, mark)
    assert writes == []
    assert ("rolePolicy/exec-a", "PolicyDocument") in {(d["object"], d["field"]) for d in result.status["drift"]}
    assert result.status["syncedGeneration"] == 1
