"""Where kopf keeps the last handled spec of a resource: in its status, written with it.

kopf compares an object with the configuration it last handled (its *diff base*) to
tell a spec change (run the update handler) from any other write. Its default home, an
annotation, costs a request of its own after every handler: kopf merge-patches the
object for the annotation and then the status subresource for our status, two writes,
two watch events to process, and Ready only after both. Kept in
``status.lastHandledConfiguration`` (a string in every kind's status schema), it goes
out in the same status patch as the handler's result: one write per reconcile.

Objects handled by an earlier version carry the annotation instead. Its value is read
when the status has none, so an upgrade does not replay create for every resource, and
the first store removes it (one extra write per object, once).

The field must be in the installed CRDs: the API server prunes an undeclared status field,
kopf would then find no diff base after every write and run create again, write, and so
on. So the operator reads the CRDs at start (``storage_for``) and keeps the annotation
while any of them is older than this version (and says so in the log).
"""

from __future__ import annotations

import json
from typing import Any

import kopf

FIELD = "lastHandledConfiguration"
PREFIX = "kopf.regaccess.io"
KEY = "last-handled-configuration"
LEGACY_ANNOTATION = f"{PREFIX}/{KEY}"


class StatusDiffBase(kopf.StatusDiffBaseStorage):
    """kopf's status diff-base storage at ``status.lastHandledConfiguration``, reading the
    annotation of earlier versions until the first store replaces it."""

    def __init__(self) -> None:
        super().__init__(field=f"status.{FIELD}")

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        essence = super().build(body=body, extra_fields=extra_fields)
        # The legacy annotation is storage, not configuration: leaving it in the essence
        # would make its removal look like a change of the object.
        annotations = (essence.get("metadata") or {}).get("annotations")
        if annotations and LEGACY_ANNOTATION in annotations:
            del annotations[LEGACY_ANNOTATION]
            if not annotations:
                del essence["metadata"]["annotations"]
            if not essence["metadata"]:
                del essence["metadata"]
        return essence

    def fetch(self, *, body: Any) -> Any:
        # Whoever may edit the object may write the annotation (and, with status rights, the
        # field): a value that is not kopf's JSON is no diff base, not an error that would
        # stop kopf from ever handling the object.
        for value in (((body.get("status") or {}).get(FIELD)),
                      ((body.get("metadata") or {}).get("annotations") or {}).get(LEGACY_ANNOTATION)):
            try:
                found = json.loads(value) if isinstance(value, str) and value else None
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        super().store(body=body, patch=patch, essence=essence)
        if LEGACY_ANNOTATION in ((body.get("metadata") or {}).get("annotations") or {}):
            patch.metadata.annotations[LEGACY_ANNOTATION] = None


def declares_field(crd: dict[str, Any] | None) -> bool:
    """Pure: does every served version of this CRD declare ``status.lastHandledConfiguration``?"""
    versions = [v for v in ((crd or {}).get("spec") or {}).get("versions") or [] if v.get("served")]

    def status_properties(version: dict[str, Any]) -> dict[str, Any]:
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        return ((schema.get("properties") or {}).get("status") or {}).get("properties") or {}

    return bool(versions) and all(FIELD in status_properties(v) for v in versions)


def storage_for(crds: dict[str, dict[str, Any] | None]) -> tuple[kopf.DiffBaseStorage, list[str]]:
    """Pure: the storage for these CRDs (name -> the installed object, None when not read),
    and the names of those that do not declare the field (then: the annotation)."""
    outdated = sorted(name for name, crd in crds.items() if not declares_field(crd))
    if outdated:
        return kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=KEY), outdated
    return StatusDiffBase(), []
