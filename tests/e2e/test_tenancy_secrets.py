"""Tenancy end to end (issue 17): one namespace can never take another's secret or cache rule.

Two namespaces on one cluster (team-a, team-b), the operator as a real process,
the real API server and the moto server. team-b's RegistryCredential owns its
Secrets Manager secret (and pull-through cache rule); team-a's names the same
object with ``adoptExisting: true``. Then team-a's resource is
``Ready=False`` reason ``OwnershipConflict`` naming the object and team-b's
owner mark, with a Warning Event; the harness's call record shows no AWS write
at all from the moment team-a's resource is created (team-b's is converged, so
its drift checks only read); the object is unchanged; and deleting team-a's
resource leaves it in place.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.kube import condition, wait_for
from tests.e2e.support import (
    SETTLE,
    basic_auth_secret,
    custom_resource,
    delete_all,
    managed,
    rc_path,
    wait_condition,
    wait_ready,
    wait_warning,
)

pytestmark = pytest.mark.e2e

CLUSTER_ID = "e2e"  # REGACCESS_CLUSTER_ID of the e2e operator (tests/e2e/conftest.py)
TEAM_B_PASSWORD = "pw-team-b-4d1e"
TEAM_A_PASSWORD = "pw-team-a-9b07"
WATCHED = ("secretsmanager", "ecr")


@pytest.fixture
def teams(kube, operator):
    """Two fresh namespaces, team-a and team-b; every resource in them is deleted afterwards."""
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b = f"team-a-{suffix}", f"team-b-{suffix}"
    for name in (team_a, team_b):
        kube.create_namespace(name)
    yield team_a, team_b
    print("\n".join(line for line in operator.log_text().splitlines() if suffix in line)[-20000:])
    delete_all(kube, team_a)
    delete_all(kube, team_b)


def aws_writes(calls, mark: int) -> list[str]:
    return [f"{c.service}:{c.operation}" for c in calls.writes(since=mark) if c.service in WATCHED]


def snapshot(sm, secret_id: str) -> dict:
    """What must not change: tags, versions, value, and no deletion date."""
    described = sm.describe_secret(SecretId=secret_id)
    return {"tags": sorted((t["Key"], t["Value"]) for t in described.get("Tags") or []),
            "versions": described["VersionIdsToStages"], "deleted": described.get("DeletedDate"),
            "value": json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"])}


def create_credential(kube, namespace: str, name: str, spec: dict, password: str) -> None:
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src", password=password))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, name, {
        "source": {"secretRef": {"name": "src"}}, **spec}))


def refused(kube, namespace: str, name: str, *, names: str, owner: str) -> dict:
    obj = wait_condition(kube, rc_path(namespace, name), status="False", reason="OwnershipConflict",
                         what=f"{namespace}/{name} refused")
    message = condition(obj, "Ready")["message"]
    assert names in message and owner in message, message
    wait_warning(kube, namespace, name, "OwnershipConflict")
    return obj


def delete_and_wait(kube, namespace: str, name: str) -> None:
    kube.delete(rc_path(namespace, name))
    wait_for(lambda: kube.get_or_none(rc_path(namespace, name)) is None, SETTLE, f"{namespace}/{name} deleted")


def test_another_namespaces_secret_is_never_adopted_written_or_deleted(kube, teams, aws_e2e, aws_server_session):
    team_a, team_b = teams
    calls, sm = aws_server_session.calls, aws_e2e.client("secretsmanager")
    create_credential(kube, team_b, "hub", {"secret": {"forceDeleteWithoutRecovery": True}}, TEAM_B_PASSWORD)
    theirs = wait_ready(kube, rc_path(team_b, "hub"))["status"]
    secret_name = f"regaccess/{team_b}/hub"
    assert theirs["secretName"] == secret_name
    before = snapshot(sm, secret_name)

    mark = calls.mark()
    create_credential(kube, team_a, "stolen", {"secret": {"name": secret_name}, "adoptExisting": True},
                      TEAM_A_PASSWORD)
    obj = refused(kube, team_a, "stolen", names=secret_name, owner=f"{CLUSTER_ID}/{team_b}/hub")
    assert "secretArn" not in obj["status"]
    assert aws_writes(calls, mark) == []
    assert snapshot(sm, secret_name) == before

    delete_and_wait(kube, team_a, "stolen")
    assert aws_writes(calls, mark) == []
    assert snapshot(sm, secret_name) == before  # still there, not scheduled for deletion
    # and team-b is untouched by all of it
    assert condition(kube.get(rc_path(team_b, "hub")), "Ready")["status"] == "True"


def test_another_namespaces_cache_rule_is_never_adopted_updated_or_deleted(kube, teams, aws_e2e, aws_server_session):
    team_a, team_b = teams
    calls, sm, ecr = aws_server_session.calls, aws_e2e.client("secretsmanager"), aws_e2e.client("ecr")
    prefix = f"{team_b}-hub"
    cache = {"pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": prefix},
             "secret": {"forceDeleteWithoutRecovery": True}}
    create_credential(kube, team_b, "hub", cache, TEAM_B_PASSWORD)
    theirs = wait_ready(kube, rc_path(team_b, "hub"))["status"]

    def rule() -> dict:
        return ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])["pullThroughCacheRules"][0]

    assert rule()["credentialArn"] == theirs["secretArn"]
    rule_before, secret_before = rule(), snapshot(sm, theirs["secretArn"])

    mark = calls.mark()
    create_credential(kube, team_a, "stolen", {**cache, "adoptExisting": True}, TEAM_A_PASSWORD)
    obj = refused(kube, team_a, "stolen", names=repr(prefix), owner=f"{CLUSTER_ID}/{team_b}/hub")
    assert managed(obj)[("pullThroughCacheRule", prefix)]["state"] == "Conflict"
    # Refused before the first write: team-a's own secret was not even created.
    assert aws_writes(calls, mark) == []
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=f"ecr-pullthroughcache/{team_a}/stolen")
    assert rule() == rule_before

    delete_and_wait(kube, team_a, "stolen")
    assert aws_writes(calls, mark) == []
    assert rule() == rule_before
    assert snapshot(sm, theirs["secretArn"]) == secret_before
    assert condition(kube.get(rc_path(team_b, "hub")), "Ready")["status"] == "True"
