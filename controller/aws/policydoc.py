"""Compare IAM-style policy documents by meaning, never as text (pure).

Used for IAM inline policies and ECR repository policies. String comparison
caused endless update loops in crossplane provider-aws (issues 792, 1757):
AWS returns documents with keys reordered, single-element lists collapsed to
strings, and principals rewritten. ``canonical()`` folds all of that away:

- a string and a one-element list are the same (Action, Resource, Principal
  values, condition values);
- order of statements, actions, resources, principals and condition values
  does not matter; action names are case-insensitive (IAM treats them so);
- ``Principal: {"AWS": "123456789012"}`` equals the account root ARN;
- the Version defaults to 2008-10-17 when absent (AWS's own default).

``size()`` counts characters the way IAM's quota does (whitespace not counted).
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACCOUNT_ONLY = re.compile(r"^[0-9]{12}$")
_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")


def _as_sorted_list(value: Any, *, lower: bool = False) -> tuple:
    items = value if isinstance(value, list) else [value]
    normalised = [str(v).lower() if lower else v for v in items]
    return tuple(sorted(normalised, key=lambda v: json.dumps(v, sort_keys=True)))


def _principal(value: Any) -> Any:
    if value == "*":
        return "*"
    if not isinstance(value, dict):
        return value
    out = {}
    for kind, principals in value.items():
        items = principals if isinstance(principals, list) else [principals]
        if kind == "AWS":
            items = [f"arn:aws:iam::{p}:root" if isinstance(p, str) and _ACCOUNT_ONLY.match(p) else p for p in items]
        out[kind] = tuple(sorted(set(items)))
    # {"AWS": "*"} and "*" mean the same thing to IAM.
    if out == {"AWS": ("*",)}:
        return "*"
    return tuple(sorted(out.items()))


def _condition(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return tuple(
        sorted(
            (operator, tuple(sorted((key, _as_sorted_list(v)) for key, v in (body or {}).items())))
            for operator, body in value.items()
        )
    )


def canonical_statement(statement: dict[str, Any]) -> tuple:
    """A hashable, order-free form of one statement (Sid included)."""
    items: list[tuple[str, Any]] = []
    for key, value in statement.items():
        if key in ("Action", "NotAction"):
            items.append((key, _as_sorted_list(value, lower=True)))
        elif key in _LIST_KEYS:
            items.append((key, _as_sorted_list(value)))
        elif key in ("Principal", "NotPrincipal"):
            items.append((key, _principal(value)))
        elif key == "Condition":
            items.append((key, _condition(value)))
        else:
            items.append((key, value))
    return tuple(sorted(items))


def parse(document: str | dict[str, Any] | None) -> dict[str, Any]:
    """Accept a JSON string (possibly URL-encoded by IAM's boto3 layer: already decoded) or a dict."""
    if document is None:
        return {}
    if isinstance(document, str):
        return json.loads(document) if document.strip() else {}
    return document


def statements(document: str | dict[str, Any] | None) -> list[dict[str, Any]]:
    doc = parse(document)
    found = doc.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def canonical(document: str | dict[str, Any] | None) -> tuple:
    doc = parse(document)
    version = doc.get("Version", "2008-10-17")
    extras = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in doc.items() if k not in ("Version", "Statement")))
    return (version, extras, tuple(sorted(canonical_statement(s) for s in statements(doc))))


def equivalent(a: str | dict[str, Any] | None, b: str | dict[str, Any] | None) -> bool:
    return canonical(a) == canonical(b)


def dumps(document: dict[str, Any]) -> str:
    """Compact JSON, the form the operator writes (smallest against the size quotas)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=False)


def size(document: str | dict[str, Any]) -> int:
    """Characters IAM counts against its quotas: the document without whitespace."""
    text = document if isinstance(document, str) else dumps(document)
    return sum(1 for ch in text if not ch.isspace())
