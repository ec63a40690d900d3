"""No secret value ever leaves the operator except into Secrets Manager.

Runs every scenario with recognisable values (each password is unique and
appears nowhere else): create, rotate, invalid sources (a password next to a
missing key, a Secret that did not opt in, a dockerconfigjson whose registry is absent, an ``auth`` field
without a colon), a dockerconfigjson read through its base64 ``auth`` field, an
ownership conflict, AWS faults whose error text echoes the request (as a
validation error might) and plain throttling/5xx faults, then delete. Then
scans the operator's logs (including exception tracebacks), every Event, every
object as stored (status and annotations), and /metrics for each value, its
base64, base64 of user:value (the ``auth`` form) and its JSON-escaped form.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e import resilience as r
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import ACCOUNT

pytestmark = pytest.mark.e2e

PW = {k: f"LEAKCHECK-{k}-5e1f{i:02d}" for i, k in enumerate([
    "create", "rotated", "invalid-opaque", "docker-absent", "docker-auth", "docker-nocolon", "conflict",
    "echo-invalid", "echo-5xx", "faulted", "not-opted-in", "rotated-twice"])}


def _docker(ns: str, name: str, auths: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": ns},
            "data": {".dockerconfigjson": r.b64(json.dumps({"auths": auths}))}}


def test_no_secret_value_leaks_anywhere(control_plane, kube, aws_server_session, aws_e2e, tmp_path):
    server = aws_server_session
    ns = f"leak-{r.seeded('leak').randrange(16**6):06x}"
    kube.create_namespace(ns)
    sm = r.aws_client("secretsmanager")
    sm.create_secret(Name=f"regaccess/{ns}/conflict", SecretString=json.dumps({"username": "x", "password": "other"}))
    secrets = [
        r.basic_auth_secret(ns, "plain", "robot", PW["create"]),
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "opaque", "namespace": ns},
         "data": {"password": r.b64(PW["invalid-opaque"])}},
        _docker(ns, "docker-absent", {"ghcr.io": {"username": "leaker", "password": PW["docker-absent"]}}),
        _docker(ns, "docker-auth", {"https://index.docker.io/v1/": {"auth": r.b64("hubuser:" + PW["docker-auth"])}}),
        _docker(ns, "docker-nocolon", {"ghcr.io": {"auth": r.b64("leaker" + PW["docker-nocolon"])}}),
        r.basic_auth_secret(ns, "conflict", "robot", PW["conflict"]),
        r.basic_auth_secret(ns, "echo-invalid", "robot", PW["echo-invalid"]),
        r.basic_auth_secret(ns, "echo-5xx", "robot", PW["echo-5xx"]),
        r.basic_auth_secret(ns, "faulted", "robot", PW["faulted"]),
        # Not opted in (--source-secret-opt-in): never read, so never anywhere but the Secret.
        {**r.basic_auth_secret(ns, "not-opted-in", "robot", PW["not-opted-in"]),
         "metadata": {"name": "not-opted-in", "namespace": ns, "labels": {"regaccess.io/source": "no"}}},
    ]
    for secret in secrets:
        kube.create(kube.secret_path(ns), secret)

    def echo(value: str) -> str:
        # An AWS error that quotes the request body back.
        return f"Invalid SecretString {json.dumps({'username': 'robot', 'password': value})} for {value}"

    # The echoing errors hit the first CreateSecret calls: the resources are created one by one below.
    ops = []
    op = r.scoped_operator(control_plane, server.url, tmp_path, [ns])
    ops.append(op)
    try:
        spec = lambda src, **extra: {"source": {"secretRef": {"name": src}, **extra},  # noqa: E731
                                     "secret": {"forceDeleteWithoutRecovery": True}}
        server.faults.configure(seed=11, fail_first=[{"service": "secretsmanager", "operation": "CreateSecret",
                                                      "count": 1, "code": "ValidationException",
                                                      "message": echo(PW["echo-invalid"])}])
        kube.create(kube.rc_path(ns), r.registry_credential(ns, "echo-invalid", spec("echo-invalid")))
        wait_for(lambda: condition(kube.get(kube.rc_path(ns, "echo-invalid")), "Ready").get("reason") == "AwsRejected",
                 30, "echo-invalid rejected")
        rejected = json.dumps(kube.get(kube.rc_path(ns, "echo-invalid")))  # its status quotes the AWS error
        server.faults.configure(seed=12, fail_first=[{"service": "secretsmanager", "operation": "CreateSecret",
                                                      "count": 2, "code": "InternalFailure", "status": 500,
                                                      "message": echo(PW["echo-5xx"])}])
        kube.create(kube.rc_path(ns), r.registry_credential(ns, "echo-5xx", spec("echo-5xx")))
        wait_for(lambda: r.is_ready(kube.get(kube.rc_path(ns, "echo-5xx"))), 60, "echo-5xx Ready after retries")
        server.faults.configure(seed=13, rates={"throttle": 0.2, "error5xx": 0.1, "abort": 0.05})
        for name, extra in [("plain", {}), ("opaque", {"usernameKey": "user"}),
                            ("docker-absent", {"registry": "quay.io"}), ("docker-auth", {"registry": "docker.io"}),
                            ("docker-nocolon", {}), ("conflict", {}), ("faulted", {}), ("not-opted-in", {})]:
            kube.create(kube.rc_path(ns), r.registry_credential(ns, name, spec(name, **extra)))
        expected = {"plain": None, "opaque": "SourceKeyMissing", "docker-absent": "SourceRegistryNotFound",
                    "docker-auth": None, "docker-nocolon": "SourceKeyMissing", "conflict": "OwnershipConflict",
                    "faulted": None, "not-opted-in": "SourceNotOptedIn"}
        for name, reason in expected.items():
            wait_for(lambda: (r.is_ready if reason is None else
                              (lambda o: condition(o, "Ready").get("reason") == reason))(
                kube.get(kube.rc_path(ns, name))), 90, f"{name}: {reason or 'Ready'}")
        # Rotate under faults; the new value arrives.
        kube.merge_patch(kube.secret_path(ns, "plain"), {"data": {"password": r.b64(PW["rotated"])}})
        wait_for(lambda: r.secret_value(f"regaccess/{ns}/plain")["password"] == PW["rotated"], 60, "rotated")
        # Again: the redactor lets the replaced values go (it holds current ones only), and
        # still nothing of the old or the new value appears anywhere.
        kube.merge_patch(kube.secret_path(ns, "plain"), {"data": {"password": r.b64(PW["rotated-twice"])}})
        wait_for(lambda: r.secret_value(f"regaccess/{ns}/plain")["password"] == PW["rotated-twice"], 60,
                 "rotated twice")
        assert r.secret_value(f"regaccess/{ns}/docker-auth")["password"] == PW["docker-auth"]
        # A restart: the new process reads every credential again (and logs its start-up).
        op.kill()
        op = r.scoped_operator(control_plane, server.url, tmp_path, [ns])
        ops.append(op)
        stored = json.dumps(kube.get(kube.rc_path(ns)))  # status, annotations, everything stored
        # Delete everything (still under faults).
        for name in [*expected, "echo-invalid", "echo-5xx"]:
            kube.delete(kube.rc_path(ns, name))
        wait_for(lambda: not kube.get(kube.rc_path(ns))["items"], 90, "all deleted")
        metrics = op.metrics()
    finally:
        server.faults.clear()
        op.kill()
    logs = "\n".join(o.log_text() for o in ops)
    haystacks = {
        "operator logs": logs,
        "events": json.dumps(kube.get(f"/api/v1/namespaces/{ns}/events")),
        "objects": stored + rejected,
        "metrics": metrics,
    }
    # The haystacks are real: the scenarios above wrote into each of them.
    assert '"event": "reconciled"' in logs and '"outcome": "invalid"' in logs
    assert "OwnershipConflict" in haystacks["events"] and "SourceKeyMissing" in haystacks["events"]
    assert "SourceNotOptedIn" in haystacks["events"] + haystacks["objects"]
    # The echoing AWS error reached the Events and the status (and must have been scrubbed there).
    assert "ValidationException: Invalid SecretString" in haystacks["events"]
    assert "ValidationException" in rejected and "regaccess_aws_api_calls_total" in metrics
    leaks = r.find_leaks(haystacks, PW.values())
    r.record_figures("leaks", {
        "scenarios": len(PW), "values_checked": len(PW), "forms_per_value": len(r.leak_forms(["x"])),
        "bytes_scanned": sum(len(t) for t in haystacks.values()), "leaks_found": len(leaks),
    })
    assert leaks == []



def test_no_ecr_token_leaks_anywhere(control_plane, kube, aws_server_session, aws_e2e, tmp_path):
    """ECRPullSecret: the token (moto's is ``<account>-auth-token``) reaches only the Secret.

    Scenarios: create (with a ServiceAccount), refreshes (short lifetime), a refresh whose
    AWS error quotes the token back, a Secret deleted by hand and restored, an ownership
    conflict, delete. Then logs, Events, the ECRPullSecret objects as stored, and /metrics
    are scanned for the token, its base64, base64 of ``AWS:<token>`` (the auth field) and
    its JSON-escaped form.
    """
    server = aws_server_session
    token = f"{ACCOUNT}-auth-token"
    ns = f"leak-ecr-{r.seeded('leak-ecr').randrange(16**6):06x}"
    kube.create_namespace(ns)
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}})
    kube.create(kube.secret_path(ns), _docker(ns, "taken", {}))
    pull_path = lambda name=None: kube.rc_path(ns, name, plural="ecrpullsecrets")  # noqa: E731
    ops = [r.scoped_operator(control_plane, server.url, tmp_path, [ns],
                             extra_env={"REGACCESS_PULL_SECRET_MAX_LIFETIME": "12"})]
    op = ops[0]
    try:
        def resource(name: str, spec: dict) -> dict:
            return {"apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret",
                    "metadata": {"name": name, "namespace": ns}, "spec": spec}

        kube.create(pull_path(), resource("pull", {"serviceAccounts": ["builder"]}))
        kube.create(pull_path(), resource("conflict", {"secretName": "taken"}))
        wait_for(lambda: r.is_ready(kube.get(pull_path("pull"))), 45, "pull Ready")
        wait_for(lambda: condition(kube.get(pull_path("conflict")), "Ready").get("reason") == "OwnershipConflict",
                 45, "conflict refused")
        secret = kube.get(kube.secret_path(ns, "pull"))
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        # The value looked for is really the one in the Secret (so its absence elsewhere means something).
        assert [base64.b64decode(e["auth"]).decode() for e in auths.values()] == [f"AWS:{token}"]
        # A refresh whose error quotes the token back.
        server.faults.configure(seed=21, fail_first=[{"service": "ecr", "operation": "GetAuthorizationToken",
                                                      "count": 2, "code": "AccessDeniedException",
                                                      "message": f"not authorized for token {token}"}])
        wait_for(lambda: condition(kube.get(pull_path("pull")), "Synced").get("reason") == "AwsAccessDenied",
                 45, "refresh refused")
        failed = json.dumps(kube.get(pull_path("pull")))
        server.faults.clear()
        wait_for(lambda: condition(kube.get(pull_path("pull")), "Synced").get("status") == "True", 60,
                 "refresh again")
        # Deleted by hand: restored.
        kube.delete(kube.secret_path(ns, "pull"))
        wait_for(lambda: kube.get_or_none(kube.secret_path(ns, "pull")), 20, "restored")
        stored = json.dumps(kube.get(pull_path()))
        for name in ("pull", "conflict"):
            kube.delete(pull_path(name))
        wait_for(lambda: not kube.get(pull_path())["items"], 60, "all deleted")
        metrics = op.metrics()
    finally:
        server.faults.clear()
        op.kill()
    logs = "\n".join(o.log_text() for o in ops)
    haystacks = {
        "operator logs": logs,
        "events": json.dumps(kube.get(f"/api/v1/namespaces/{ns}/events")),
        "objects": stored + failed,
        "metrics": metrics,
    }
    # The haystacks are real: the scenarios wrote into each of them.
    assert "AccessDeniedException: not authorized for token" in haystacks["events"]
    assert "OwnershipConflict" in haystacks["events"] and "SecretRestored" in haystacks["events"]
    assert "regaccess_pull_secret_expiry_seconds" in metrics and '"kind": "ECRPullSecret"' in logs
    assert r.find_leaks(haystacks, [token]) == []
