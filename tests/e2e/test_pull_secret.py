"""ECRPullSecret end to end: the real API server, the operator as a process, moto's GetAuthorizationToken.

The operator runs with a short lifetime setting (``--pull-secret-max-lifetime 16``):
tokens are taken to live 16 s, so a refresh comes about 8 s after the last one.
Proves: the Secret is created (an ``auths`` entry per registry, ``auth`` as docker
login writes it, ownerReference and marks), added to a ServiceAccount's
imagePullSecrets without touching its other entries, recreated after deletion,
restored after a hand edit, refreshed before expiry, removed from the
ServiceAccount when dropped from the spec, and deleted with the resource; bad
input gets a specific reason and no write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal

import pytest

from controller.api.models import ECR_PULL_SECRET
from controller.kubeobjects import EXPIRES_ANNOTATION, OWNER_ANNOTATION, SHA_ANNOTATION
from tests.e2e.conftest import start_operator
from tests.e2e.kube import Kube, condition, core_path, custom_resource_path, wait_for
from tests.e2e.support import ACCOUNT, SETTLE, custom_resource, wait_condition, wait_ready, warnings

PLURAL = ECR_PULL_SECRET.plural
LIFETIME = 16
OTHER_ACCOUNT = "210987654321"


@pytest.fixture(scope="module")
def pull_operator(control_plane, kube, moto_server, tmp_path_factory):
    op = start_operator(control_plane, moto_server, tmp_path_factory.mktemp("pull-operator"),
                        extra_env={"REGACCESS_PULL_SECRET_MAX_LIFETIME": str(LIFETIME)})
    yield op
    op.kill(signal.SIGTERM)


def path(namespace: str, name: str | None = None) -> str:
    return custom_resource_path(PLURAL, namespace, name)


def secret_path(namespace: str, name: str) -> str:
    return core_path("secrets", namespace, name)


def sa_path(namespace: str, name: str) -> str:
    return core_path("serviceaccounts", namespace, name)


def auths(secret: dict) -> dict:
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]


def intact(secret: dict | None) -> bool:
    """The Secret holds what the operator wrote (its digest annotation matches the data)."""
    if not secret:
        return False
    value = (secret.get("data") or {}).get(".dockerconfigjson", "")
    return hashlib.sha256(value.encode()).hexdigest() == secret["metadata"]["annotations"].get(SHA_ANNOTATION)


def pull_names(kube: Kube, namespace: str, account: str) -> list[str]:
    return [e["name"] for e in kube.get(sa_path(namespace, account)).get("imagePullSecrets") or []]


def test_pull_secret_lifecycle(kube, pull_operator, namespace, aws_server_session):
    kube.create(core_path("serviceaccounts", namespace), {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"},
        "imagePullSecrets": [{"name": "someone-elses"}]})
    kube.create(path(namespace), custom_resource("ECRPullSecret", namespace, "pull", {
        "registries": [{}, {"registryId": OTHER_ACCOUNT, "region": "eu-west-1"}],
        "serviceAccounts": ["builder"]}))
    obj = wait_ready(kube, path(namespace, "pull"))
    status = obj["status"]
    secret = kube.get(secret_path(namespace, "pull"))

    # Created: one entry per registry, auth = base64("AWS:" + token), marks and ownerReference.
    hosts = {f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", f"{OTHER_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"}
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert set(auths(secret)) == hosts == set(status["registries"])
    for entry in auths(secret).values():
        assert base64.b64decode(entry["auth"]).decode().startswith("AWS:")
    assert secret["metadata"]["annotations"][OWNER_ANNOTATION] == f"e2e/{namespace}/pull"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "regaccess"
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
    assert status["expiresAt"] and status["lastRefreshTime"] and status["nextRefreshTime"]
    assert status["nextRefreshTime"] < status["expiresAt"]
    assert condition(obj, "Synced")["status"] == "True"
    # Added to the ServiceAccount; its other entry is kept.
    wait_for(lambda: pull_names(kube, namespace, "builder") == ["someone-elses", "pull"], SETTLE, "SA lists it")
    # No token in status.
    tokens = [entry["auth"] for entry in auths(secret).values()]
    assert not any(t in json.dumps(obj) for t in tokens)

    # Refreshed before expiry: lastRefreshTime moves while the previous tokens are still valid.
    first = kube.get(path(namespace, "pull"))["status"]
    refreshed = wait_for(lambda: (s := kube.get(path(namespace, "pull"))["status"])["lastRefreshTime"]
                         != first["lastRefreshTime"] and s, LIFETIME + 10, "a refresh")
    assert refreshed["lastRefreshTime"] < first["expiresAt"]
    assert refreshed["expiresAt"] > first["expiresAt"]
    assert wait_for(lambda: kube.get(secret_path(namespace, "pull"))["metadata"]["annotations"][EXPIRES_ANNOTATION]
                    == kube.get(path(namespace, "pull"))["status"]["expiresAt"], 10, "the Secret carries the expiry")

    # Deleted by hand: recreated at once (the Secret watch, not the next refresh).
    old_uid = kube.get(secret_path(namespace, "pull"))["metadata"]["uid"]
    kube.delete(secret_path(namespace, "pull"))
    again = wait_for(lambda: (s := kube.get_or_none(secret_path(namespace, "pull"))) and s["metadata"]["uid"] != old_uid
                     and s, 10, "the Secret recreated")
    assert intact(again) and set(auths(again)) == hosts

    # Edited by hand: restored at once.
    kube.merge_patch(secret_path(namespace, "pull"), {"data": {".dockerconfigjson": base64.b64encode(
        b'{"auths":{"evil.example":{"auth":"eDp5"}}}').decode()}})
    restored = wait_for(lambda: (s := kube.get(secret_path(namespace, "pull"))) and intact(s) and s, 10,
                        "the Secret restored")
    assert set(auths(restored)) == hosts
    assert "SecretRestored" in {e["reason"] for e in kube.events_for(namespace, "pull")}

    # Its marks removed by hand (owner annotation, managed-by label, ownerReference): still ours by
    # our record (status), so restored with them, not taken for a stranger's (issue 30 §1).
    kube.merge_patch(secret_path(namespace, "pull"), {"metadata": {
        "annotations": {OWNER_ANNOTATION: None}, "labels": {"app.kubernetes.io/managed-by": None},
        "ownerReferences": None}})
    remarked = wait_for(lambda: (s := kube.get(secret_path(namespace, "pull"))) and intact(s)
                        and s["metadata"].get("ownerReferences") and s, 10, "the Secret's marks restored")
    assert remarked["metadata"]["annotations"][OWNER_ANNOTATION] == f"e2e/{namespace}/pull"
    assert [r["uid"] for r in remarked["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
    assert condition(wait_ready(kube, path(namespace, "pull")), "Ready")["status"] == "True"

    # Dropped from the spec: taken out of the ServiceAccount, nothing else of it changed.
    kube.merge_patch(path(namespace, "pull"), {"spec": {"serviceAccounts": []}})
    wait_for(lambda: pull_names(kube, namespace, "builder") == ["someone-elses"], SETTLE, "SA entry removed")

    # Deleted with the resource.
    kube.delete(path(namespace, "pull"))
    wait_for(lambda: kube.get_or_none(path(namespace, "pull")) is None, SETTLE, "resource gone")
    wait_for(lambda: kube.get_or_none(secret_path(namespace, "pull")) is None, SETTLE, "Secret gone")
    assert pull_names(kube, namespace, "builder") == ["someone-elses"]
    # The token never reached the operator's log.
    log = pull_operator.log_text()
    assert not any(t in log for t in tokens)
    assert not any(base64.b64decode(t).decode().split(":", 1)[1] in log for t in tokens)


def test_removed_from_service_accounts_on_delete(kube, pull_operator, namespace):
    kube.create(core_path("serviceaccounts", namespace), {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}})
    kube.create(path(namespace), custom_resource("ECRPullSecret", namespace, "regcreds", {
        "secretName": "ecr-login", "serviceAccounts": ["runner"]}))
    wait_ready(kube, path(namespace, "regcreds"))
    wait_for(lambda: pull_names(kube, namespace, "runner") == ["ecr-login"], SETTLE, "SA lists it")
    kube.delete(path(namespace, "regcreds"))
    wait_for(lambda: kube.get_or_none(secret_path(namespace, "ecr-login")) is None, SETTLE, "Secret gone")
    wait_for(lambda: pull_names(kube, namespace, "runner") == [], SETTLE, "SA entry removed")


def _no_writes(kube: Kube, namespace: str, name: str, secret: str) -> None:
    assert kube.get_or_none(secret_path(namespace, secret)) is None


@pytest.mark.parametrize("spec, reason", [
    ({"registries": [{"region": "us-nowhere-1"}]}, "UnknownRegion"),
    ({"serviceAccounts": ["ghost"]}, "ServiceAccountNotFound"),
    # The CRD schema takes any short registryId: the object is stored and its status names the fault.
    ({"registries": [{"registryId": "12345"}]}, "InvalidRegistryId"),
], ids=["unknown-region", "missing-service-account", "registry-id-not-twelve-digits"])
def test_bad_input_has_a_reason_and_writes_nothing(kube, pull_operator, namespace, aws_server_session, spec, reason):
    since = aws_server_session.calls.mark()
    kube.create(path(namespace), custom_resource("ECRPullSecret", namespace, "bad", spec))
    wait_condition(kube, path(namespace, "bad"), status="False", reason=reason)
    wait_for(lambda: reason in warnings(kube, namespace, "bad"), 15, f"Warning {reason}")
    _no_writes(kube, namespace, "bad", "bad")
    assert aws_server_session.calls.count("ecr", "GetAuthorizationToken", since=since) == 0


def test_existing_foreign_secret_is_a_conflict_and_untouched(kube, pull_operator, namespace, aws_server_session):
    kube.create(core_path("secrets", namespace), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "taken"},
        "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}})
    before = kube.get(secret_path(namespace, "taken"))["metadata"]["resourceVersion"]
    since = aws_server_session.calls.mark()
    kube.create(path(namespace), custom_resource("ECRPullSecret", namespace, "wants", {"secretName": "taken"}))
    obj = wait_condition(kube, path(namespace, "wants"), status="False", reason="OwnershipConflict")
    assert f"Secret {namespace}/taken" in condition(obj, "Ready")["message"]
    wait_for(lambda: "OwnershipConflict" in warnings(kube, namespace, "wants"), 15, "Warning OwnershipConflict")
    assert kube.get(secret_path(namespace, "taken"))["metadata"]["resourceVersion"] == before
    assert aws_server_session.calls.count("ecr", "GetAuthorizationToken", since=since) == 0
    # Deleting the refused resource leaves the Secret in place.
    kube.delete(path(namespace, "wants"))
    wait_for(lambda: kube.get_or_none(path(namespace, "wants")) is None, SETTLE, "resource gone")
    assert kube.get(secret_path(namespace, "taken"))["metadata"]["resourceVersion"] == before


def test_failing_refreshes_warn_before_the_token_expires(kube, pull_operator, namespace, aws_server_session):
    """Refreshes refused by AWS: Synced False (AwsAccessDenied) with the Secret kept, then,
    within the last quarter of the (short) lifetime, Ready False TokenExpiring and a Warning;
    once AWS answers again the next retry writes fresh tokens."""
    kube.create(path(namespace), custom_resource("ECRPullSecret", namespace, "fragile", {}))
    first = wait_ready(kube, path(namespace, "fragile"))["status"]
    server = aws_server_session
    server.faults.configure(seed=31, fail_first=[{"service": "ecr", "operation": "GetAuthorizationToken",
                                                  "count": 1000, "code": "AccessDeniedException",
                                                  "message": "not authorized"}])
    try:
        obj = wait_condition(kube, path(namespace, "fragile"), status="False", reason="TokenExpiring",
                             timeout=LIFETIME + 10)
        assert condition(obj, "Synced")["reason"] == "AwsAccessDenied"
        assert obj["status"]["refreshFailures"] >= 1
        assert obj["status"]["expiresAt"] == first["expiresAt"]  # the last good tokens are kept
        assert kube.get_or_none(secret_path(namespace, "fragile")) is not None
        wait_for(lambda: "TokenExpiring" in warnings(kube, namespace, "fragile"), 15, "Warning TokenExpiring")
    finally:
        server.faults.clear()
    again = wait_ready(kube, path(namespace, "fragile"), timeout=60)["status"]
    assert again["lastRefreshTime"] > first["lastRefreshTime"] and "refreshFailures" not in again
    kube.delete(path(namespace, "fragile"))
