"""What the operator keeps of source Secrets between reconciles: a digest, never the data.

Called by ``controller.handlers`` (the kopf index of Secrets and the RegistryCredential
reconcile) and ``controller.reconcile.registry_credential`` (the opt-in check).

- ``entry``: the index's value for one Secret of a credential type: its name, namespace,
  resourceVersion, the SHA-256 of the data a credential is read from
  (``controller.sources.needed_data``) and the opt-in label/annotation, if set. The data
  itself is dropped as soon as the digest is taken: memory holds no credential of a Secret
  between reconciles, whether a resource references it or not.
- ``read``: the Secret's value, fetched from the API server (a list by name, which the
  operator's list/watch RBAC allows) by the reconcile that needs it, and dropped with it.
- ``OptIn`` / ``opted_in``: the admin's rule a source Secret must satisfy before the
  operator copies it to AWS (``--source-secret-opt-in``, default ``regaccess.io/source=true``):
  without it a tenant who may create a RegistryCredential but may not read a Secret of its
  namespace could have the operator copy that Secret to Secrets Manager for them.

Everything here except ``read`` is pure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

from controller import sources

DEFAULT_OPT_IN = "regaccess.io/source=true"
# The setting's value that turns the opt-in check off (unsafe on a shared cluster).
NO_OPT_IN = "none"
ANNOTATION_PREFIX = "annotation:"


@dataclass(frozen=True)
class OptIn:
    """A label (or, with ``annotation:``, an annotation) ``key=value`` a source Secret must carry."""

    key: str
    value: str
    annotation: bool = False

    def __str__(self) -> str:
        return f"{ANNOTATION_PREFIX if self.annotation else ''}{self.key}={self.value}"

    @property
    def what(self) -> str:
        return "annotation" if self.annotation else "label"


def parse_opt_in(text: str) -> OptIn | None:
    """``KEY=VALUE`` (a label), ``annotation:KEY=VALUE``, or ``none`` (no check: None).

    Raises ValueError with a message naming the expected form."""
    text = text.strip()
    if text.lower() == NO_OPT_IN:
        return None
    annotation = text.startswith(ANNOTATION_PREFIX)
    body = text[len(ANNOTATION_PREFIX):] if annotation else text
    key, sep, value = body.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value or any(c in key + value for c in ",!() \t"):
        raise ValueError(f"expected KEY=VALUE (a label), annotation:KEY=VALUE or {NO_OPT_IN!r}; got {text!r}")
    return OptIn(key, value, annotation)


def opted_in(rule: OptIn | None, secret: dict[str, Any] | None) -> bool:
    """Pure: does this Secret (a body, or an index entry) carry the opt-in? No rule: yes."""
    if rule is None:
        return True
    meta = (secret or {}).get("metadata") or {}
    marks = meta.get("annotations" if rule.annotation else "labels") or {}
    return isinstance(marks, dict) and marks.get(rule.key) == rule.value


def digest(secret_type: str | None, data: dict[str, Any] | None) -> str:
    """Pure: SHA-256 of the part of a Secret a credential is read from (type included)."""
    needed = sources.needed_data(secret_type, data if isinstance(data, dict) else {})
    canonical = json.dumps({"type": secret_type or "Opaque", "data": needed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def entry(namespace: str, name: str, body: dict[str, Any], rule: OptIn | None) -> dict[str, Any]:
    """Pure: the index's value for one Secret: metadata, digest and opt-in mark, no data."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {"name": name, "namespace": namespace, "resourceVersion": meta.get("resourceVersion")}
    if rule is not None:
        where = "annotations" if rule.annotation else "labels"
        marks = meta.get(where) or {}
        if isinstance(marks, dict) and rule.key in marks:
            kept[where] = {rule.key: marks[rule.key]}
    return {"type": body.get("type"), "digest": digest(body.get("type"), body.get("data")), "metadata": kept}


def list_path(namespace: str, name: str) -> str:
    """The list-by-name request for one Secret (list is the verb the operator has on Secrets)."""
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets?fieldSelector=" + quote(
        f"metadata.name={name}", safe="")


def read(get: Callable[[str], Any], namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret as the API server has it now (None: no such Secret). ``get``: a kube client's."""
    answer = get(list_path(namespace, name)) or {}
    items = [item for item in answer.get("items") or []
             if ((item.get("metadata") or {}).get("name")) == name]
    if not items:
        return None
    secret = dict(items[0])
    secret.setdefault("metadata", {})
    return secret
