"""Source Secrets opt in (--source-secret-opt-in, default the label regaccess.io/source=true).

Issue 30 §4, the operator as confused deputy: a tenant who may create a RegistryCredential
but not read a Secret must not get that Secret copied to Secrets Manager by naming it. On the
real API server with the operator's default setting: a source Secret without the label is
Ready=False ``SourceNotOptedIn`` and the harness's call record shows not one AWS call;
labelling it converges; taking the label away stops the next rotation from reaching AWS;
an admin's annotation rule works the same way.
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.support import b64, basic_auth_secret, delete_all, wait_condition, wait_ready

pytestmark = pytest.mark.e2e

LABEL = "regaccess.io/source"
PASSWORD = "LEAKCHECK-optin-5e1d0a"
ROTATED = "LEAKCHECK-optin-rotated-77aa01"


@pytest.fixture
def scope(kube, control_plane, moto_server, tmp_path):
    """A fresh namespace and an operator watching only it (the call record then is its own)."""
    namespace = f"optin-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(namespace)
    operators = []

    def run(**env):
        operators.append(start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                                        extra_env=env))
        return operators[-1]

    try:
        yield namespace, run
        delete_all(kube, namespace)
    finally:
        for op in operators:
            op.kill(signal.SIGTERM)


def spec(name: str) -> dict:
    return {"source": {"secretRef": {"name": name}}, "secret": {"forceDeleteWithoutRecovery": True}}


def test_a_secret_without_the_label_is_never_copied(kube, scope, aws_server_session, aws_e2e):
    namespace, run = scope
    run()
    calls, sm = aws_server_session.calls, aws_e2e.client("secretsmanager")
    secret = basic_auth_secret(namespace, "hub", password=PASSWORD)
    secret["metadata"]["labels"] = {LABEL: "no"}             # someone else's Secret, not opted in
    kube.create(kube.secret_path(namespace), secret)
    mark = calls.mark()
    path = kube.rc_path(namespace, "hub")
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "hub", spec("hub")))
    obj = wait_condition(kube, path, status="False", reason="SourceNotOptedIn", what="not opted in")
    message = condition(obj, "Ready")["message"]
    assert f"{LABEL}=true" in message and PASSWORD not in json.dumps(obj)
    assert calls.counts(since=mark) == {}                    # not one AWS call, reads included

    # The Secret's owner opts in: it converges, without a change to the RegistryCredential.
    kube.merge_patch(kube.secret_path(namespace, "hub"), {"metadata": {"labels": {LABEL: "true"}}})
    wait_ready(kube, path)
    name = f"regaccess/{namespace}/hub"
    assert json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["password"] == PASSWORD
    assert calls.count("secretsmanager", "CreateSecret", since=mark) == 1

    # The label taken away, then a rotation: refused, and the new value never reaches AWS.
    kube.merge_patch(kube.secret_path(namespace, "hub"), {"metadata": {"labels": {LABEL: None}},
                                                          "data": {"password": b64(ROTATED)}})
    wait_condition(kube, path, status="False", reason="SourceNotOptedIn", what="opt-in withdrawn")
    after = calls.mark()
    wait_for(lambda: kube.get(path)["status"].get("sourceResourceVersion")
             == kube.get(kube.secret_path(namespace, "hub"))["metadata"]["resourceVersion"], 30,
             "the withdrawn Secret judged")
    assert calls.count("secretsmanager", "PutSecretValue", since=mark) == 0
    assert calls.count("secretsmanager", "GetSecretValue", since=after) == 0
    assert json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["password"] == PASSWORD


def test_an_annotation_the_admin_chose(kube, scope, aws_server_session):
    namespace, run = scope
    run(REGACCESS_SOURCE_SECRET_OPT_IN="annotation:example.com/copy-to-aws=yes")
    calls = aws_server_session.calls
    # Labelled as the default wants, but this installation asks for its annotation.
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "plain", password=PASSWORD))
    annotated = basic_auth_secret(namespace, "annotated", password=PASSWORD)
    annotated["metadata"]["annotations"] = {"example.com/copy-to-aws": "yes"}
    kube.create(kube.secret_path(namespace), annotated)
    mark = calls.mark()
    for name in ("plain", "annotated"):
        kube.create(kube.rc_path(namespace), registry_credential(namespace, name, spec(name)))
    obj = wait_condition(kube, kube.rc_path(namespace, "plain"), status="False", reason="SourceNotOptedIn",
                         what="label is not the annotation")
    assert "annotation example.com/copy-to-aws=yes" in condition(obj, "Ready")["message"]
    wait_ready(kube, kube.rc_path(namespace, "annotated"))
    assert calls.count("secretsmanager", "CreateSecret", since=mark) == 1
