"""Compare IAM-style policy documents exactly as IAM reads them, never as text (pure).

Used for IAM inline policies and ECR repository policies. String comparison
caused endless update loops in crossplane provider-aws (issues 792, 1757):
AWS returns documents with keys reordered, single-element lists collapsed to
strings, and principals rewritten. ``canonical()`` folds away exactly what IAM
itself ignores, and nothing more. Each rule names the IAM User Guide page
("IAM JSON policy elements reference" and "grammar of the IAM JSON policy
language") it follows:

- ``Version``: absent means ``2008-10-17`` (Version element).
- ``Statement``: one object or a list of them (Statement element); statement
  order does not matter (statements are OR-ed).
- ``Sid``: an empty Sid and no Sid are the same (Sid is an optional label).
- ``Effect``: compared exactly; ``Allow``/``Deny`` are case-sensitive (grammar:
  ``<effect_block> = "Effect" : ("Allow" | "Deny")``).
- ``Action``/``NotAction``: a string equals a one-element list; order and
  duplicates do not matter; action names are case-insensitive (Action element:
  "action names are case-insensitive").
- ``Resource``/``NotResource``: a string equals a one-element list; order and
  duplicates do not matter; ARNs are case-sensitive (Resource element).
- ``Principal``/``NotPrincipal``: ``"*"`` is *not* ``{"AWS": "*"}`` (Principal
  element: ``"*"`` also admits anonymous callers and every service principal).
  Within a principal type a string equals a one-element list, order and
  duplicates do not matter, and a 12-digit account ID equals that account's root
  ARN (IAM stores the ID as ``arn:<partition>:iam::<id>:root``; a document lives
  in one partition and IAM rejects principals of another, so the partition of a
  root ARN carries no meaning between two valid documents). An empty list of a
  principal type names nobody and is dropped; an empty ``Principal`` is not the
  same as a missing one (a resource policy requires the element).
- ``Condition``: condition *key* names are case-insensitive (Condition element:
  "condition key names are not case-sensitive"); operators and values are
  compared as written, except that the grammar makes quotes optional around
  numbers and booleans (``<condition_value> = "string" | number | Boolean``), so
  ``5`` equals ``"5"`` and ``true`` equals ``"true"`` — but ``true`` never equals
  ``1``. Values are sets (order and duplicates do not matter).
- every other value compares by JSON type and value (``true`` is not ``1``).

A document that is not a policy (not JSON, not an object, a Statement that is
not an object or list of objects) raises ``PolicyDocumentError``, a ValueError
with a clear message; a valid document never raises.

``size()`` counts characters the way IAM's quota does (whitespace not counted).
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACCOUNT_ONLY = re.compile(r"^[0-9]{12}$")
_ROOT_ARN = re.compile(r"^arn:[a-z0-9-]+:iam::(?P<account>[0-9]{12}):root$", re.IGNORECASE)
_CASE_INSENSITIVE_LISTS = ("Action", "NotAction")
_CASE_SENSITIVE_LISTS = ("Resource", "NotResource")
_PRINCIPALS = ("Principal", "NotPrincipal")
DEFAULT_VERSION = "2008-10-17"


class PolicyDocumentError(ValueError):
    """The text is not an IAM policy document."""


def _leaf(value: Any) -> str:
    """One value as typed JSON text: comparable, sortable, and ``true`` is not ``1``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _value_set(value: Any, *, lower: bool = False) -> tuple[str, ...]:
    items = [v.lower() if lower and isinstance(v, str) else v for v in _items(value)]
    return tuple(sorted({_leaf(v) for v in items}))


def _principal_id(kind: str, value: Any) -> str:
    if kind == "AWS" and isinstance(value, str):
        match = _ROOT_ARN.match(value)
        account = match["account"] if match else (value if _ACCOUNT_ONLY.match(value) else None)
        if account:
            return _leaf(["account-root", account])
    return _leaf(value)


def _principal(value: Any) -> str:
    if value == "*":
        return _leaf("*")
    if not isinstance(value, dict):
        # Outside IAM's grammar (a bare ID or list); read it as AWS principals rather
        # than fail a comparison, but never as "*".
        value = {"AWS": value}
    out = []
    for kind, principals in value.items():
        ids = sorted({_principal_id(kind, p) for p in _items(principals)})
        if ids:
            out.append((kind, ids))
    return _leaf(sorted(out))


def _condition_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    return _leaf(value)


def _condition(value: Any) -> str:
    if not isinstance(value, dict):
        raise PolicyDocumentError("a Condition must be an object of operators")
    out = []
    for operator, body in value.items():
        if not isinstance(body, dict):
            raise PolicyDocumentError(f"condition operator {operator} must map keys to values")
        keys: dict[str, set[str]] = {}
        for key, values in body.items():
            keys.setdefault(str(key).lower(), set()).update(_condition_value(v) for v in _items(values))
        out.append((operator, sorted((k, sorted(v)) for k, v in keys.items())))
    return _leaf(sorted(out))


def canonical_statement(statement: dict[str, Any]) -> str:
    """A hashable, sortable, order-free form of one statement (Sid included)."""
    if not isinstance(statement, dict):
        raise PolicyDocumentError("each Statement entry must be an object")
    items: list[tuple[str, str]] = []
    for key, value in statement.items():
        if key == "Sid" and value in ("", None):
            continue  # an empty Sid labels nothing
        if key in _CASE_INSENSITIVE_LISTS:
            items.append((key, _leaf(_value_set(value, lower=True))))
        elif key in _CASE_SENSITIVE_LISTS:
            items.append((key, _leaf(_value_set(value))))
        elif key in _PRINCIPALS:
            items.append((key, _principal(value)))
        elif key == "Condition":
            items.append((key, _condition(value)))
        else:
            items.append((key, _leaf(value)))
    return _leaf(sorted(items))


def parse(document: str | dict[str, Any] | None) -> dict[str, Any]:
    """A JSON string (IAM's boto3 layer has already URL-decoded it) or a dict, as a dict.

    Raises PolicyDocumentError for text that is not a JSON object."""
    if document is None:
        return {}
    if isinstance(document, str):
        if not document.strip():
            return {}
        try:
            document = json.loads(document)
        except ValueError as error:
            raise PolicyDocumentError(f"not a JSON policy document: {error.msg} at position {error.pos}") from None
    if not isinstance(document, dict):
        raise PolicyDocumentError("a policy document must be a JSON object")
    return document


def statements(document: str | dict[str, Any] | None) -> list[dict[str, Any]]:
    doc = parse(document)
    found = doc.get("Statement", [])
    found = [found] if isinstance(found, dict) else found
    if not isinstance(found, list) or not all(isinstance(s, dict) for s in found):
        raise PolicyDocumentError("Statement must be an object or a list of objects")
    return list(found)


def canonical(document: str | dict[str, Any] | None) -> tuple:
    doc = parse(document)
    version = doc.get("Version", DEFAULT_VERSION)
    extras = tuple(sorted((k, _leaf(v)) for k, v in doc.items() if k not in ("Version", "Statement")))
    return (_leaf(version), extras, tuple(sorted(canonical_statement(s) for s in statements(doc))))


def equivalent(a: str | dict[str, Any] | None, b: str | dict[str, Any] | None) -> bool:
    """Do two policy documents mean the same to IAM? Raises PolicyDocumentError on a non-policy."""
    return canonical(a) == canonical(b)


def dumps(document: dict[str, Any]) -> str:
    """Compact JSON, the form the operator writes (smallest against the size quotas)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=False)


def size(document: str | dict[str, Any]) -> int:
    """Characters IAM counts against its quotas: the document without whitespace."""
    text = document if isinstance(document, str) else dumps(document)
    return sum(1 for ch in text if not ch.isspace())
