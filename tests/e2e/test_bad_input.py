"""Bad input: a matrix of invalid manifests of both kinds, and the operator keeps serving valid ones.

Schema-level cases are refused by the real API server at admission (HTTP 422,
naming the field) from the CRD schema the models generate. Semantic cases pass
admission; the operator gives each its specific condition reason (Ready=False)
and a Warning Event, and makes no AWS call for them at all: the AWS test
server's call record shows zero calls (reads or writes) while only invalid
resources exist. Then valid resources created next to them become Ready, and a
fixed one converges.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e import resilience as r
from tests.e2e.kube import ApiError, condition, wait_for

pytestmark = pytest.mark.e2e

OK = {"source": {"secretRef": {"name": "ok"}}}
ROLE_ARN = "arn:aws:iam::123456789012:role/exec"
XOK = {"repositories": ["team/app"], "grants": [{"principals": [{"accountId": "210987654321"}], "access": "Pull"}]}


def rc(**fields):
    return {**OK, **fields}


def xr(**fields):
    return {**XOK, **fields}


def grant(*principals, access="Pull"):
    return [{"principals": list(principals), "access": access}]


# (kind, spec, a field the 422 names)
SCHEMA_CASES = {
    "rc-window-too-short": ("rc", rc(secret={"recoveryWindowInDays": 3}), "recoveryWindowInDays"),
    "rc-window-too-long": ("rc", rc(secret={"recoveryWindowInDays": 31}), "recoveryWindowInDays"),
    "rc-deletion-policy": ("rc", rc(deletionPolicy="Keep"), "deletionPolicy"),
    "rc-drift-policy": ("rc", rc(driftPolicy="Ignore"), "driftPolicy"),
    "rc-secret-name-chars": ("rc", rc(secret={"name": "bad name!"}), "secret.name"),
    "rc-secret-name-too-long": ("rc", rc(secret={"name": "a" * 513}), "secret.name"),
    "rc-role-arn-grant": ("rc", rc(grants={"executionRoles": ["arn:aws:iam::12:role/x"]}), "executionRoles"),
    "rc-region": ("rc", rc(region="mars-1"), "region"),
    "rc-role-arn": ("rc", rc(roleArn="arn:aws:iam::1:role/x"), "roleArn"),
    "rc-external-id-short": ("rc", rc(roleArn=ROLE_ARN, externalId="a"), "externalId"),
    "rc-no-source": ("rc", {"secret": {"name": "x"}}, "source"),
    "rc-secret-ref-name": ("rc", {"source": {"secretRef": {"name": "Bad_Name"}}}, "secretRef.name"),
    "rc-upstream": ("rc", rc(pullThroughCache={"upstreamRegistry": "nexus", "ecrRepositoryPrefix": "hub"}),
                    "upstreamRegistry"),
    "rc-prefix-short": ("rc", rc(pullThroughCache={"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "a"}),
                        "ecrRepositoryPrefix"),
    "rc-family": ("rc", rc(consumers={"ecsTaskDefinitions": [{"family": "bad family!"}]}), "family"),
    "rc-job-name": ("rc", rc(consumers={"batchJobDefinitions": [{"name": "j" * 129}]}), "name"),
    "rc-policy-name": ("rc", rc(grants={"policyName": "bad name"}), "policyName"),
    "rc-adopt-type": ("rc", rc(adoptExisting="yes"), "adoptExisting"),
    "rc-consumers-type": ("rc", rc(consumers={"ecsTaskDefinitions": "web"}), "ecsTaskDefinitions"),
    "x-no-grants": ("x", xr(grants=[]), "grants"),
    "x-account": ("x", xr(grants=grant({"accountId": "123"})), "accountId"),
    "x-access": ("x", xr(grants=grant({"accountId": "210987654321"}, access="Read")), "access"),
    "x-organization": ("x", xr(grants=grant({"organizationId": "org-1"})), "organizationId"),
    "x-repository-case": ("x", xr(repositories=["UPPER/Case"]), "repositories"),
    "x-no-principals": ("x", xr(grants=[{"principals": [], "access": "Pull"}]), "principals"),
    "x-region": ("x", xr(region="x"), "region"),
    "x-principal-role": ("x", xr(grants=grant({"roleArn": "arn:aws:iam::123:role/x"})), "roleArn"),
}

LONG_NAME = "p" + "x" * 118  # the default policy name regaccess-<ns>-<name> exceeds 128 characters

# (kind, resource name, spec, condition reason)
SEMANTIC_CASES = {
    "rc-source-missing": ("rc", "missing", {"source": {"secretRef": {"name": "nope"}}}, "SourceSecretNotFound"),
    "rc-opaque-keys": ("rc", "opaque-keys", {"source": {"secretRef": {"name": "opaque-empty"}}}, "SourceKeyMissing"),
    "rc-opaque-empty-pw": ("rc", "opaque-empty-pw", {"source": {"secretRef": {"name": "opaque-blank"}}},
                           "SourceKeyMissing"),
    "rc-arn-suffix": ("rc", "arn-suffix", rc(secret={"name": "team/registry-abcdef"}), "InvalidSecretName"),
    "rc-window-and-force": ("rc", "window-force", rc(secret={"recoveryWindowInDays": 10,
                                                             "forceDeleteWithoutRecovery": True}),
                            "InvalidDeletionSettings"),
    "rc-too-large": ("rc", "too-large", {"source": {"secretRef": {"name": "huge"}}}, "SecretValueTooLarge"),
    "rc-registry-absent": ("rc", "registry-absent", {"source": {"secretRef": {"name": "dockercfg"}, "registry": "quay.io"}},
                           "SourceRegistryNotFound"),
    "rc-registry-ambiguous": ("rc", "registry-ambiguous", {"source": {"secretRef": {"name": "dockercfg-two"}}},
                              "SourceRegistryNotFound"),
    "rc-no-auths": ("rc", "no-auths", {"source": {"secretRef": {"name": "dockercfg-empty"}}}, "SourceSecretInvalid"),
    "rc-auth-no-colon": ("rc", "auth-no-colon", {"source": {"secretRef": {"name": "dockercfg-bad-auth"}}},
                         "SourceKeyMissing"),
    "rc-ptc-name": ("rc", "ptc-name", rc(secret={"name": "team/hub"}, pullThroughCache={
        "upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"}), "InvalidPullThroughCache"),
    "rc-ptc-kms": ("rc", "ptc-kms", rc(secret={"kmsKeyId": "alias/team"}, pullThroughCache={
        "upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"}), "InvalidPullThroughCache"),
    "rc-ptc-azure-url": ("rc", "ptc-azure", rc(pullThroughCache={
        "upstreamRegistry": "azure-container-registry", "ecrRepositoryPrefix": "az"}), "InvalidPullThroughCache"),
    "rc-ptc-azure-bad-url": ("rc", "ptc-azure-bad", rc(pullThroughCache={
        "upstreamRegistry": "azure-container-registry", "upstreamRegistryUrl": "example.com",
        "ecrRepositoryPrefix": "az"}), "InvalidPullThroughCache"),
    "rc-reserved-tag": ("rc", "reserved-tag", rc(secret={"tags": {"regaccess.io/owner": "me"}}), "InvalidSpec"),
    "rc-too-many-tags": ("rc", "many-tags", rc(secret={"tags": {f"k{i}": "v" for i in range(50)}}), "InvalidSpec"),
    "rc-tag-value-long": ("rc", "tag-long", rc(secret={"tags": {"k": "v" * 257}}), "InvalidSpec"),
    "rc-duplicate-roles": ("rc", "dup-roles", rc(grants={"executionRoles": ["exec", ROLE_ARN]}), "InvalidSpec"),
    "rc-duplicate-families": ("rc", "dup-families", rc(consumers={"ecsTaskDefinitions": [{"family": "web"},
                                                                                        {"family": "web"}]}),
                              "InvalidSpec"),
    "rc-duplicate-jobs": ("rc", "dup-jobs", rc(consumers={"batchJobDefinitions": [{"name": "j"}, {"name": "j"}]}),
                          "InvalidSpec"),
    "rc-policy-name-long": ("rc", LONG_NAME, OK, "InvalidPolicyName"),
    "x-principal-none": ("x", "principal-none", xr(grants=grant({})), "InvalidGrant"),
    "x-principal-two": ("x", "principal-two", xr(grants=grant({"accountId": "210987654321",
                                                               "organizationId": "o-abcdefghij"})), "InvalidGrant"),
    "x-principal-twice": ("x", "principal-twice", xr(grants=[
        {"principals": [{"accountId": "210987654321"}], "access": "Pull"},
        {"principals": [{"accountId": "210987654321"}], "access": "Push"}]), "InvalidGrant"),
    "x-repository-twice": ("x", "repo-twice", xr(repositories=["team/app", "team/app"]), "InvalidSpec"),
    # Admitted since repositoryPrefixes may stand alone; neither list is the operator's to refuse.
    "x-no-repositories": ("x", "no-repositories", xr(repositories=[]), "InvalidRepositoryName"),
    "rc-upstream-no-credential": ("rc", "upstream-quay", rc(pullThroughCache={"upstreamRegistry": "quay",
                                                                              "ecrRepositoryPrefix": "hub"}),
                                  "UpstreamTakesNoCredential"),
}


def _source_secrets(ns: str) -> list[dict]:
    def secret(name, type_, data):
        return {"apiVersion": "v1", "kind": "Secret", "type": type_, "metadata": {"name": name, "namespace": ns},
                "data": {k: r.b64(v) for k, v in data.items()}}
    docker = "kubernetes.io/dockerconfigjson"
    return [
        r.basic_auth_secret(ns, "ok", "robot", "BADINPUT-pw-1"),
        secret("opaque-empty", "Opaque", {"other": "x"}),
        secret("opaque-blank", "Opaque", {"username": "robot", "password": ""}),
        r.basic_auth_secret(ns, "huge", "robot", "p" * 70_000),
        secret("dockercfg", docker, {".dockerconfigjson": json.dumps({"auths": {"ghcr.io": {"auth": r.b64("a:b-pw")}}})}),
        secret("dockercfg-two", docker, {".dockerconfigjson": json.dumps({"auths": {
            "ghcr.io": {"auth": r.b64("a:b-pw")}, "quay.io": {"username": "q", "password": "q-pw"}}})}),
        secret("dockercfg-empty", docker, {".dockerconfigjson": json.dumps({"auths": {}})}),
        secret("dockercfg-bad-auth", docker, {".dockerconfigjson": json.dumps({"auths": {
            "ghcr.io": {"auth": r.b64("no-colon-here")}}})}),
    ]


def _path(kind: str, ns: str, name: str | None = None) -> str:
    return r.xrepo_path(ns, name) if kind == "x" else r.Kube.rc_path(ns, name)


def _manifest(kind: str, ns: str, name: str, spec: dict) -> dict:
    return r.cross_account(ns, name, spec) if kind == "x" else r.registry_credential(ns, name, spec)


def test_bad_input_matrix(control_plane, kube, aws_server_session, aws_e2e, tmp_path):
    server = aws_server_session
    assert len(SCHEMA_CASES) + len(SEMANTIC_CASES) >= 40
    ns = f"bad-{r.seeded('bad').randrange(16**6):06x}"
    kube.create_namespace(ns)
    for secret in _source_secrets(ns):
        kube.create(kube.secret_path(ns), secret)

    # Schema level: refused at admission, naming the field.
    for case, (kind, spec, field) in SCHEMA_CASES.items():
        with pytest.raises(ApiError) as info:
            kube.create(_path(kind, ns), _manifest(kind, ns, "schema-" + case.lower()[:40], spec))
        assert info.value.status == 422, case
        assert field in info.value.body, f"{case}: {info.value.body[:300]}"

    op = r.scoped_operator(control_plane, server.url, tmp_path, [ns])
    try:
        # Semantic: admitted; the operator answers each with its reason and a Warning, and no AWS call.
        mark = server.calls.mark()
        for case, (kind, name, spec, _) in SEMANTIC_CASES.items():
            kube.create(_path(kind, ns), _manifest(kind, ns, name, spec))
        for case, (kind, name, _, reason) in SEMANTIC_CASES.items():
            obj = wait_for(lambda: (lambda o: o if condition(o, "Ready").get("reason") == reason else None)(
                kube.get(_path(kind, ns, name))), 60, f"{case}: {reason}")
            assert condition(obj, "Ready")["status"] == "False", case
            wait_for(lambda: any(e["type"] == "Warning" and e["reason"] == reason
                                 for e in kube.events_for(ns, name)), 30, f"{case}: Warning {reason}")
        # The per-resource timers tick every second: let a few ticks pass before counting.
        time.sleep(3)
        calls_for_invalid = server.calls.count(since=mark)
        assert calls_for_invalid == 0, server.calls.counts(since=mark)

        # The operator keeps serving valid resources next to them.
        r.make_repository("team/app")
        kube.create(kube.rc_path(ns), r.registry_credential(ns, "fine", OK))
        kube.create(r.xrepo_path(ns), r.cross_account(ns, "fine-x", XOK))
        wait_for(lambda: not r.not_ready(kube, [kube.rc_path(ns, "fine"), r.xrepo_path(ns, "fine-x")]), 60,
                 "valid resources Ready")
        assert server.calls.writes(since=mark), "the call record shows the valid resources' writes"
        # And a fixed one converges without touching the resource: the missing Secret appears.
        kube.create(kube.secret_path(ns), r.basic_auth_secret(ns, "nope", "robot", "BADINPUT-pw-2"))
        wait_for(lambda: r.is_ready(kube.get(kube.rc_path(ns, "missing"))), 30, "fixed resource Ready")
        for case, (kind, name, _, reason) in SEMANTIC_CASES.items():
            if name != "missing":
                assert condition(kube.get(_path(kind, ns, name)), "Ready")["reason"] == reason, case
        assert op.alive()
    finally:
        op.kill()
    r.record_figures("bad_input", {
        "bad_inputs_tried": len(SCHEMA_CASES) + len(SEMANTIC_CASES),
        "rejected_at_admission": len(SCHEMA_CASES),
        "semantic_with_reason_and_warning": len(SEMANTIC_CASES),
        "aws_calls_for_invalid": calls_for_invalid,
        "valid_served_alongside": 2,
    })
