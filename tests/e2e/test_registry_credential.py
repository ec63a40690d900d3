"""RegistryCredential end to end: real API server, operator process, moto server.

Driven only through the Kubernetes API, as a GitOps user would.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.kube import ApiError, condition, registry_credential, wait_for

pytestmark = pytest.mark.e2e

# Recognisable values: the leak test scans everything the operator emits for them.
PASSWORD = "LEAKCHECK-pw-7f3a9c"
ROTATED = "LEAKCHECK-rotated-91bd2e"
TOKEN = "LEAKCHECK-token-c0ffee"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic_auth_secret(namespace: str, name: str, username: str = "robot", password: str = PASSWORD) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"username": b64(username), "password": b64(password)}}


def ready(kube, namespace: str, name: str, reason: str | None = None):
    def check():
        obj = kube.get(kube.rc_path(namespace, name))
        c = condition(obj, "Ready")
        if reason is None:
            return obj if c.get("status") == "True" else None
        return obj if c.get("reason") == reason else None
    return check


def sm_value(session, name: str) -> dict:
    return json.loads(session.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def test_create_rotate_update_delete(kube, operator, namespace, aws_e2e):
    sm = aws_e2e.client("secretsmanager")
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "hub"))
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "hub", {
        "source": {"secretRef": {"name": "hub"}},
        "secret": {"description": "docker hub robot", "tags": {"team": "platform"}, "forceDeleteWithoutRecovery": True},
    }))
    obj = wait_for(ready(kube, namespace, "hub"), 30, "Ready")
    name = f"regaccess/{namespace}/hub"
    status = obj["status"]
    assert status["secretName"] == name
    assert status["secretArn"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert sm_value(aws_e2e, name) == {"username": "robot", "password": PASSWORD}
    described = sm.describe_secret(SecretId=name)
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["regaccess.io/owner"] == f"e2e/{namespace}/hub"
    assert tags["team"] == "platform"
    assert described["Description"] == "docker hub robot"
    assert status["secretVersionId"] in described["VersionIdsToStages"]
    reasons = {e["reason"] for e in kube.events_for(namespace, "hub")}
    assert "SecretCreated" in reasons

    # Rotation: the new value reaches Secrets Manager within 10 seconds.
    kube.merge_patch(kube.secret_path(namespace, "hub"), {"data": {"password": b64(ROTATED)}})
    wait_for(lambda: sm_value(aws_e2e, name)["password"] == ROTATED, 10, "rotated value in Secrets Manager")
    versions = len(sm.list_secret_version_ids(SecretId=name)["Versions"])

    # A change of the Secret that leaves the value alone makes no new version.
    kube.merge_patch(kube.secret_path(namespace, "hub"), {"metadata": {"labels": {"touched": "yes"}}})
    rv = kube.get(kube.secret_path(namespace, "hub"))["metadata"]["resourceVersion"]
    wait_for(lambda: kube.get(kube.rc_path(namespace, "hub"))["status"].get("sourceResourceVersion") == rv, 10,
             "operator saw the label change")
    assert len(sm.list_secret_version_ids(SecretId=name)["Versions"]) == versions

    # Spec update: description changes in place.
    kube.merge_patch(kube.rc_path(namespace, "hub"), {"spec": {"secret": {"description": "rotated robot"}}})
    wait_for(lambda: sm.describe_secret(SecretId=name)["Description"] == "rotated robot", 15, "description updated")

    # Delete with forceDeleteWithoutRecovery: gone from Secrets Manager, finalizer released.
    kube.delete(kube.rc_path(namespace, "hub"))
    wait_for(lambda: kube.get_or_none(kube.rc_path(namespace, "hub")) is None, 30, "resource deleted")
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=name)


def test_delete_with_recovery_window_and_retain(kube, operator, namespace, aws_e2e):
    sm = aws_e2e.client("secretsmanager")
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    for name, extra in (("windowed", {"secret": {"recoveryWindowInDays": 7}}),
                        ("kept", {"deletionPolicy": "Retain"})):
        kube.create(kube.rc_path(namespace), registry_credential(namespace, name, {
            "source": {"secretRef": {"name": "src"}}, **extra}))
    for name in ("windowed", "kept"):
        wait_for(ready(kube, namespace, name), 30, f"{name} Ready")
        kube.delete(kube.rc_path(namespace, name))
    for name in ("windowed", "kept"):
        wait_for(lambda: kube.get_or_none(kube.rc_path(namespace, name)) is None, 30, f"{name} deleted")
    windowed = sm.describe_secret(SecretId=f"regaccess/{namespace}/windowed")
    assert "DeletedDate" in windowed  # scheduled, recoverable
    kept = sm.describe_secret(SecretId=f"regaccess/{namespace}/kept")
    assert "DeletedDate" not in kept
    assert sm_value(aws_e2e, f"regaccess/{namespace}/kept")["password"] == PASSWORD


def test_conflict_with_foreign_secret_then_adopt(kube, operator, namespace, aws_e2e):
    sm = aws_e2e.client("secretsmanager")
    name = f"regaccess/{namespace}/taken"
    sm.create_secret(Name=name, SecretString=json.dumps({"username": "someone", "password": "else-1234"}))
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "taken", {"source": {"secretRef": {"name": "src"}}}))
    obj = wait_for(ready(kube, namespace, "taken", "OwnershipConflict"), 30, "OwnershipConflict")
    assert "adoptExisting" in condition(obj, "Ready")["message"]
    assert sm_value(aws_e2e, name)["username"] == "someone"  # nothing written
    warnings = [e for e in kube.events_for(namespace, "taken") if e["type"] == "Warning"]
    assert any(e["reason"] == "OwnershipConflict" for e in warnings)

    kube.merge_patch(kube.rc_path(namespace, "taken"), {"spec": {"adoptExisting": True}})
    wait_for(ready(kube, namespace, "taken"), 30, "adopted and Ready")
    assert sm_value(aws_e2e, name) == {"username": "robot", "password": PASSWORD}
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=name)["Tags"]}
    assert tags["regaccess.io/owner"] == f"e2e/{namespace}/taken"


def test_source_shapes(kube, operator, namespace, aws_e2e):
    docker = {"auths": {"https://index.docker.io/v1/": {"auth": b64("hubuser:" + TOKEN)},
                        "ghcr.io": {"username": "gh", "password": "gh-" + TOKEN}}}
    kube.create(kube.secret_path(namespace), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "dockercfg"}, "data": {".dockerconfigjson": b64(json.dumps(docker))}})
    kube.create(kube.secret_path(namespace), {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "opaque"},
        "data": {"user": b64("opaque-user"), "token": b64(TOKEN)}})
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "from-docker", {
        "source": {"secretRef": {"name": "dockercfg"}, "registry": "index.docker.io"}}))
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "from-ghcr", {
        "source": {"secretRef": {"name": "dockercfg"}, "registry": "ghcr.io"}}))
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "from-opaque", {
        "source": {"secretRef": {"name": "opaque"}, "usernameKey": "user", "passwordKey": "token"}}))
    for name in ("from-docker", "from-ghcr", "from-opaque"):
        wait_for(ready(kube, namespace, name), 30, f"{name} Ready")
    # "from-docker" ends in a hyphen and six characters: the default name gets /credential.
    assert sm_value(aws_e2e, f"regaccess/{namespace}/from-docker/credential") == {"username": "hubuser", "password": TOKEN}
    assert sm_value(aws_e2e, f"regaccess/{namespace}/from-ghcr") == {"username": "gh", "password": "gh-" + TOKEN}
    assert sm_value(aws_e2e, f"regaccess/{namespace}/from-opaque/credential") == {"username": "opaque-user", "password": TOKEN}


BAD_SPECS = {
    "missing-source-secret": ({"source": {"secretRef": {"name": "nope"}}}, "SourceSecretNotFound"),
    "missing-keys": ({"source": {"secretRef": {"name": "opaque-empty"}}}, "SourceKeyMissing"),
    "arn-suffix-name": ({"source": {"secretRef": {"name": "ok"}}, "secret": {"name": "team/registry-abcdef"}},
                        "InvalidSecretName"),
    "window-and-force": ({"source": {"secretRef": {"name": "ok"}},
                          "secret": {"recoveryWindowInDays": 10, "forceDeleteWithoutRecovery": True}},
                         "InvalidDeletionSettings"),
    "value-too-large": ({"source": {"secretRef": {"name": "huge"}}}, "SecretValueTooLarge"),
    "registry-not-in-config": ({"source": {"secretRef": {"name": "dockercfg"}, "registry": "quay.io"}},
                               "SourceRegistryNotFound"),
}


def test_bad_input_gets_a_reason_and_no_aws_write(kube, operator, namespace, aws_e2e):
    sm = aws_e2e.client("secretsmanager")
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "ok"))
    kube.create(kube.secret_path(namespace), {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                              "metadata": {"name": "opaque-empty"}, "data": {"other": b64("x")}})
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "huge", password="p" * 70_000))
    kube.create(kube.secret_path(namespace), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "dockercfg"},
        "data": {".dockerconfigjson": b64(json.dumps({"auths": {"ghcr.io": {"auth": b64("a:b-secret")}}}))}})
    for name, (spec, _) in BAD_SPECS.items():
        kube.create(kube.rc_path(namespace), registry_credential(namespace, name, spec))
    # A valid one among them is still served.
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "fine", {"source": {"secretRef": {"name": "ok"}}}))
    for name, (_, reason) in BAD_SPECS.items():
        obj = wait_for(ready(kube, namespace, name, reason), 30, f"{name}: {reason}")
        assert condition(obj, "Ready")["status"] == "False"
        # kopf posts Events from a queue of its own: it may land a moment after the status.
        wait_for(lambda: any(e["reason"] == reason and e["type"] == "Warning"
                             for e in kube.events_for(namespace, name)), 15, f"{name}: Warning {reason}")
    wait_for(ready(kube, namespace, "fine"), 30, "valid resource Ready")
    names = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    written = {n for n in names if n.startswith(f"regaccess/{namespace}/") or n == "team/registry-abcdef"}
    assert written == {f"regaccess/{namespace}/fine"}

    # The missing Secret appears: the operator notices through its watch, no edit of the resource needed.
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "nope"))
    wait_for(ready(kube, namespace, "missing-source-secret"), 15, "Ready once the Secret exists")


@pytest.mark.parametrize("spec, field", [
    ({"source": {"secretRef": {"name": "x"}}, "secret": {"recoveryWindowInDays": 3}}, "recoveryWindowInDays"),
    ({"source": {"secretRef": {"name": "x"}}, "deletionPolicy": "Keep"}, "deletionPolicy"),
    ({"source": {"secretRef": {"name": "x"}}, "secret": {"name": "bad name!"}}, "secret.name"),
    ({"source": {"secretRef": {"name": "x"}}, "grants": {"executionRoles": ["arn:aws:iam::12:role/x"]}}, "executionRoles"),
], ids=["window-too-short", "unknown-deletion-policy", "secret-name-charset", "malformed-role-arn"])
def test_schema_rejects_at_admission(kube, namespace, spec, field):
    with pytest.raises(ApiError) as info:
        kube.create(kube.rc_path(namespace), registry_credential(namespace, "schema", spec))
    assert info.value.status == 422
    assert field in info.value.body


def test_no_secret_value_leaks(kube, operator, namespace, aws_e2e):
    """Runs last in this module: every value used above must be absent from logs, Events, status, metrics."""
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "leak"))
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "leak", {"source": {"secretRef": {"name": "leak"}}}))
    wait_for(ready(kube, namespace, "leak"), 30, "Ready")
    haystacks = {
        "operator log": operator.log_text(),
        "events": json.dumps(kube.all_events()),
        "status": json.dumps(kube.get("/apis/regaccess.io/v1alpha1/registrycredentials")),
        "metrics": operator.metrics(),
    }
    assert "reconciled" in haystacks["operator log"]  # the log is really captured
    for where, text in haystacks.items():
        for value in (PASSWORD, ROTATED, TOKEN, b64(PASSWORD), "p" * 1000):
            assert value not in text, f"secret value found in {where}"
