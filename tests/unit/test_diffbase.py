"""kopf's diff base in status (``controller.diffbase``).

The end-to-end side (two writes per create, Events visible at Ready, an object of an
earlier version updated rather than created) is tests/e2e/test_writes_per_reconcile.py.
"""

from __future__ import annotations

import json

import kopf

from controller import diffbase
from controller.handlers import _apply_status, _status_patch

SPEC = {"source": {"secretRef": {"name": "src"}}, "driftPolicy": "Remediate"}


def legacy_body(spec_then: dict) -> dict:
    """An object as the annotation-storing version left it (kopf's own encoding)."""
    return {"apiVersion": "regaccess.io/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": "x", "namespace": "team-a", "labels": {"team": "a"},
                         "annotations": {"kopf.regaccess.io/kopf-managed": "yes",
                                         diffbase.LEGACY_ANNOTATION: json.dumps({"spec": spec_then}) + "\n",
                                         "note": "kept"}},
            "spec": SPEC, "status": {"observedGeneration": 1}}


def test_the_essence_is_the_one_the_annotation_storage_built():
    # Same essence, so an upgrade compares like with like and sees no change that is not one.
    body = kopf.Body(legacy_body(SPEC))
    ours = diffbase.StatusDiffBase().build(body=body)
    theirs = kopf.AnnotationsDiffBaseStorage(prefix="kopf.regaccess.io", key="last-handled-configuration").build(body=body)
    assert ours == theirs
    assert diffbase.LEGACY_ANNOTATION not in json.dumps(ours)


def test_the_annotation_is_read_until_status_has_a_diff_base_then_status_wins():
    body = legacy_body({"source": {"secretRef": {"name": "old"}}})
    storage = diffbase.StatusDiffBase()
    assert storage.fetch(body=kopf.Body(body)) == {"spec": {"source": {"secretRef": {"name": "old"}}}}
    body["status"][diffbase.FIELD] = json.dumps({"spec": SPEC})
    assert storage.fetch(body=kopf.Body(body)) == {"spec": SPEC}
    plain = {"metadata": {"name": "x"}, "spec": SPEC}
    assert storage.fetch(body=kopf.Body(plain)) is None


def test_store_writes_status_and_removes_the_annotation_once():
    storage = diffbase.StatusDiffBase()
    body = kopf.Body(legacy_body(SPEC))
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert json.loads(patch["status"][diffbase.FIELD])["spec"] == SPEC
    assert patch["metadata"]["annotations"] == {diffbase.LEGACY_ANNOTATION: None}
    # Without the annotation the patch is status only: kopf then sends one request.
    fresh = kopf.Body({"metadata": {"name": "x"}, "spec": SPEC})
    patch = kopf.Patch()
    storage.store(body=fresh, patch=patch, essence=storage.build(body=fresh))
    assert set(patch) == {"status"}


class _Patch:
    def __init__(self) -> None:
        self.status: dict = {}


def test_a_reconcile_result_never_writes_or_clears_the_diff_base():
    old = {"observedGeneration": 1, diffbase.FIELD: '{"spec":{}}'}
    patch = _Patch()
    # A result built without the field (it is kopf's, not the reconcile's) ...
    assert _apply_status(patch, old, {"observedGeneration": 2})
    assert patch.status == {"observedGeneration": 2}
    # ... or carrying a value it read earlier.
    patch = _Patch()
    assert not _apply_status(patch, old, {"observedGeneration": 1, diffbase.FIELD: '{"spec":{"stale":1}}'})
    assert patch.status == {}
    # The ECRPullSecret refresh's own status patch follows the same rule.
    assert _status_patch(old, {"observedGeneration": 2, diffbase.FIELD: "stale"}) == {"observedGeneration": 2}


def shipped_crds() -> dict:
    import yaml

    from controller.api import crdgen

    docs = [yaml.safe_load(text) for text in crdgen.render_all().values()]
    return {doc["metadata"]["name"]: doc for doc in docs}


def test_the_shipped_crds_declare_the_field_so_status_holds_the_diff_base():
    from controller.handlers import HANDLED_CRDS

    crds = shipped_crds()
    storage, outdated = diffbase.storage_for({name: crds[name] for name in HANDLED_CRDS})
    assert isinstance(storage, diffbase.StatusDiffBase) and outdated == []


def test_an_older_or_unreadable_crd_keeps_the_annotation():
    # The API server would prune the field: kopf would never find its diff base again.
    from controller.handlers import HANDLED_CRDS

    crds = shipped_crds()
    old = json.loads(json.dumps(crds[HANDLED_CRDS[1]]))
    for version in old["spec"]["versions"]:
        del version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][diffbase.FIELD]
    given = {name: crds[name] for name in HANDLED_CRDS}
    storage, outdated = diffbase.storage_for({**given, HANDLED_CRDS[1]: old})
    assert isinstance(storage, kopf.AnnotationsDiffBaseStorage) and outdated == [HANDLED_CRDS[1]]
    storage, outdated = diffbase.storage_for({**given, HANDLED_CRDS[0]: None})
    assert isinstance(storage, kopf.AnnotationsDiffBaseStorage) and outdated == [HANDLED_CRDS[0]]
    # The annotation storage is the one earlier versions used (same prefix and key).
    body = kopf.Body({"metadata": {"name": "x"}, "spec": SPEC})
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert diffbase.LEGACY_ANNOTATION in patch["metadata"]["annotations"]


def test_a_diff_base_that_is_not_kopfs_json_is_none_not_an_error():
    # A tenant may write the annotation on their own object; kopf must still handle it.
    storage = diffbase.StatusDiffBase()
    for junk in ("{not json", "[1, 2]", "42", ""):
        body = {"metadata": {"name": "x", "annotations": {diffbase.LEGACY_ANNOTATION: junk}}, "spec": SPEC}
        assert storage.fetch(body=kopf.Body(body)) is None
        body = {"metadata": {"name": "x"}, "spec": SPEC, "status": {diffbase.FIELD: junk}}
        assert storage.fetch(body=kopf.Body(body)) is None
    # A broken status value falls back to a good annotation.
    body = {"metadata": {"name": "x", "annotations": {diffbase.LEGACY_ANNOTATION: '{"spec":{"a":1}}'}},
            "status": {diffbase.FIELD: "{broken"}}
    assert storage.fetch(body=kopf.Body(body)) == {"spec": {"a": 1}}
