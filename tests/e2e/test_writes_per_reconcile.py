"""What a reconcile writes to the API server, watched from outside as a user's watch sees it.

- A create is two writes of the object: kopf's finalizer, then one status patch that makes
  it Ready and carries kopf's diff base (``status.lastHandledConfiguration``, no annotation).
  Each write is a request, an etcd write and a watch event for every watcher, at 10,000
  resources a share of the machine (bench/RESULTS.md).
- The reconcile's Events are posted before that status: a client that sees Ready finds them.
- An object handled by an earlier version (diff base in the annotation) is not created
  again: a spec that differs from the annotation is an update, and the annotation goes.
"""

from __future__ import annotations

import json
import threading

import pytest

from controller.api.models import API_VERSION
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.support import reconciled
from tests.e2e.test_registry_credential import basic_auth_secret

pytestmark = pytest.mark.e2e

LEGACY = "kopf.regaccess.io/last-handled-configuration"
FINALIZER = "regaccess.io/finalizer"


def spec(description: str) -> dict:
    return {"source": {"secretRef": {"name": "src"}},
            "secret": {"description": description, "forceDeleteWithoutRecovery": True}}


def follow(kube, namespace: str, name: str, resource_version: str, seen: list, ready: threading.Event) -> None:
    """Record every watch event of one object until it is Ready, and the Events listed then."""
    path = (f"/apis/{API_VERSION}/namespaces/{namespace}/registrycredentials?watch=1"
            f"&fieldSelector=metadata.name%3D{name}&resourceVersion={resource_version}")
    for event in kube.watch(path, 30):
        seen.append(event)
        if condition(event["object"], "Ready").get("status") == "True":
            # Listed at once, the moment Ready is visible: before anything else could post them.
            seen.append({"type": "EVENTS", "reasons": [e["reason"] for e in kube.events_for(namespace, name)]})
            ready.set()
            return


def test_a_create_is_a_finalizer_and_one_status_write_and_its_events_come_first(kube, operator, namespace, aws_e2e):
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    created = kube.create(kube.rc_path(namespace), registry_credential(namespace, "one", spec("first")))
    seen: list = []
    ready = threading.Event()
    watcher = threading.Thread(target=follow, daemon=True,
                               args=(kube, namespace, "one", created["metadata"]["resourceVersion"], seen, ready))
    watcher.start()
    assert ready.wait(40), f"not Ready; watch saw {[e['type'] for e in seen]}"
    watcher.join(5)

    writes = [e["object"] for e in seen if e["type"] == "MODIFIED"]
    assert [w["metadata"].get("finalizers") for w in writes] == [[FINALIZER], [FINALIZER]], \
        "expected the finalizer write, then the status write that is Ready"
    assert "status" not in writes[0] or not writes[0]["status"].get("conditions")
    done = writes[-1]
    assert LEGACY not in (done["metadata"].get("annotations") or {})
    # The spec as stored (with the schema's defaults filled in by the API server).
    assert json.loads(done["status"]["lastHandledConfiguration"])["spec"] == done["spec"]
    assert "SecretCreated" in seen[-1]["reasons"], "the Event was not there when Ready was"

    # A spec change is seen as one (the diff base in status works as the annotation did).
    kube.merge_patch(kube.rc_path(namespace, "one"), {"spec": {"secret": {"description": "second"}}})

    def updated():
        obj = kube.get(kube.rc_path(namespace, "one"))
        status = obj.get("status") or {}
        return (status.get("observedGeneration") == obj["metadata"]["generation"]
                and json.loads(status["lastHandledConfiguration"])["spec"] == obj["spec"]
                and obj["spec"]["secret"]["description"] == "second")

    wait_for(updated, 20, "the update handled and its diff base stored")
    assert reconciled(operator, namespace)["one"][:2] == ["create", "update"]
    sm = aws_e2e.client("secretsmanager")
    assert sm.describe_secret(SecretId=f"regaccess/{namespace}/one")["Description"] == "second"


def test_an_object_with_the_annotation_of_an_earlier_version_is_updated_not_created(kube, operator, namespace,
                                                                                     aws_e2e):
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    body = registry_credential(namespace, "old", spec("now"))
    # As the earlier version left it: finalizer on, diff base in the annotation (kopf's
    # encoding), the spec changed since (the operator was down during the change).
    body["metadata"]["finalizers"] = [FINALIZER]
    body["metadata"]["annotations"] = {LEGACY: json.dumps({"spec": spec("then")}, separators=(",", ":")) + "\n"}
    kube.create(kube.rc_path(namespace), body)

    def migrated():
        obj = kube.get(kube.rc_path(namespace, "old"))
        base = (obj.get("status") or {}).get("lastHandledConfiguration")
        gone = LEGACY not in (obj["metadata"].get("annotations") or {})
        return obj if base and gone and condition(obj, "Ready").get("status") == "True" else None

    obj = wait_for(migrated, 30, "Ready, diff base in status, annotation removed")
    assert json.loads(obj["status"]["lastHandledConfiguration"])["spec"] == obj["spec"]
    # kopf compared with the annotation's spec: an update, never a second create.
    assert reconciled(operator, namespace)["old"][0] == "update"
    assert "create" not in reconciled(operator, namespace)["old"]
