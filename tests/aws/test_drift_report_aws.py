"""driftPolicy Report stays Report, check after check (RegistryCredential and CrossAccountRepoAccess).

Given converged resources under ``driftPolicy: Report`` and every kind of AWS
object changed behind the operator's back, when drift checks run again and
again, then nothing is ever written to AWS (counted by the AWS test server's
call record), Drifted stays True, and the drift is recorded and announced once
(Event, status.drift) but counted at every check. Regression: a Pending row
left by a reported drift used to be taken for unfinished work, so the second
check repaired it.
"""


from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from controller.api import reasons
from controller.aws import repository_policies as policies
from controller.reconcile import cross_account
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

from tests.aws.wired_world import (
    CLUSTER, NS, POLICY, PREFIX, clients_for, converge, full_spec, given_wired_world, on_the_wire, raw, run,
)




class Clock:
    def __init__(self) -> None:
        self.moment = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        self.moment += dt.timedelta(seconds=1)
        return self.moment


def run_xrepo(factory, spec: dict[str, Any], status: dict[str, Any], clock: Clock, *, drift_check: bool):
    return cross_account.reconcile(NS, "pullers", 1, spec, status, clients_for=clients_for(factory),
                                   cluster_id=CLUSTER, now=clock, drift_check=drift_check, tenancy_policy=OPEN)


def test_report_drift_is_never_repaired_by_a_later_check(aws_server, factory):
    given_wired_world()
    spec = full_spec(driftPolicy="Report")
    status = converge(factory, spec)
    secret_arn = status["secretArn"]
    # behind the operator's back: every kind of object changes
    world.edit_role_policy(raw, "exec-a", POLICY)
    world.register_family(raw, "web", world.make_role(raw, "exec-c"))
    world.register_job(raw, "nightly", f"arn:aws:iam::{world.ACCOUNT}:role/exec-a")
    world.delete_rule(raw, PREFIX)
    world.put_secret_value(raw, secret_arn, {"username": "someone", "accessToken": "else"})
    expected = {
        ("secret", "SecretString"),
        ("rolePolicy/exec-a", "PolicyDocument"),
        ("taskDefinition/web", "containerDefinitions[app].repositoryCredentials"),
        ("jobDefinition/nightly", "containerProperties.repositoryCredentials"),
        (f"pullThroughCacheRule/{PREFIX}", "exists"),
    }

    events_seen: list[list[str]] = []
    for check in range(3):
        mark = aws_server.calls.mark()
        result = run(factory, spec, status, drift_check=True)
        reads, writes = on_the_wire(aws_server, mark)
        assert writes == [], f"check {check} wrote {writes}"
        # The hand-written value is read once; the same AWSCURRENT version is not read again
        # (a version never changes), yet its drift stays reported.
        assert reads["secretsmanager:GetSecretValue"] == (1 if check == 0 else 0), (check, reads)
        found = {(r["object"], r["field"]) for r in result.status["drift"]}
        assert expected <= found, found
        drifted = next(c for c in result.status["conditions"] if c["type"] == "Drifted")
        assert (drifted["status"], drifted["reason"]) == ("True", reasons.DRIFT_REPORTED)
        events_seen.append(sorted({e.reason for e in result.events}))
        # counted at every check: the drift is still there
        assert sum(result.drift_found.values()) >= len(expected) and result.drift_remediated == {}
        status = result.status
    # the Event and the drift records are written once, not at every check
    assert events_seen[0] == ["DriftDetected", reasons.DRIFT_REPORTED] and events_seen[1:] == [[], []]
    assert len(status["drift"]) == len({(r["object"], r["field"]) for r in status["drift"]})
    assert world.rules(raw, PREFIX) == []
    assert world.role_policy(raw, "exec-a", POLICY)["Statement"][0]["Resource"] == "*"

    # AWSCURRENT moves again (another hand-written value): read once, still reported.
    world.put_secret_value(raw, secret_arn, {"username": "someone", "accessToken": "other"})
    mark = aws_server.calls.mark()
    moved = run(factory, spec, status, drift_check=True)
    reads, _ = on_the_wire(aws_server, mark)
    assert reads["secretsmanager:GetSecretValue"] == 1
    assert ("secret", "SecretString") in {(r["object"], r["field"]) for r in moved.status["drift"]}
    assert moved.status["reportedSecretVersionId"] != status["reportedSecretVersionId"]


def test_report_then_remediate_repairs(aws_server, factory):
    given_wired_world()
    status = converge(factory, full_spec(driftPolicy="Report"))
    world.edit_role_policy(raw, "exec-b", POLICY)
    reported = run(factory, full_spec(driftPolicy="Report"), status, drift_check=True)
    assert ("rolePolicy/exec-b", "PolicyDocument") in {(r["object"], r["field"]) for r in reported.status["drift"]}

    # the user switches to Remediate (a spec change: generation 2 applies the spec)
    repaired = run(factory, full_spec(), reported.status, drift_check=False, generation=2)
    assert repaired.ready and repaired.outcome == "success"
    assert world.role_policy(raw, "exec-b", POLICY)["Statement"][0]["Resource"] == reported.status["secretArn"]
    drifted = next(c for c in repaired.status["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "False"


def test_xrepo_owned_sid_edit_counted_once_per_check(aws_server, factory):
    world.make_repository(raw, "app")
    spec = {"repositories": ["app"], "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}],
            "driftPolicy": "Report"}
    clock = Clock()
    first = run_xrepo(factory, spec, {}, clock, drift_check=False)
    world.add_action_to_owned_statement(raw, "app", policies.sid_prefix(CLUSTER, NS, "pullers"))
    status = first.status
    for _ in range(2):
        mark = aws_server.calls.mark()
        result = run_xrepo(factory, spec, status, clock, drift_check=True)
        assert on_the_wire(aws_server, mark)[1] == []
        assert result.drift_found == {"repositoryPolicy": 1}
        status = result.status
    assert "ecr:PutImage" in json.dumps(world.repository_policy(raw, "app"))
