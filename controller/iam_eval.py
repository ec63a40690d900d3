"""A small IAM policy evaluator: "does this principal's policy set allow this one request?"

Pure (no AWS, no kopf); used by ``controller.reconcile.pull_ready`` to say whether a
task execution role can read its registry credential (``secretsmanager:GetSecretValue``,
``kms:Decrypt``) and pull from ECR. It covers what matters there, following AWS's
documented policy evaluation logic (IAM User Guide, "Policy evaluation logic" and
"IAM JSON policy elements reference"), and says *Unknown* rather than *Allow* wherever
it does not know:

- ``Effect`` Allow/Deny; an explicit Deny in any policy wins over every Allow; no
  matching Allow is an implicit deny.
- ``Action`` / ``NotAction``: ``service:Name`` matched case-insensitively, ``*`` and ``?``
  wildcards; ``"*"`` matches every action.
- ``Resource`` / ``NotResource``: ARNs matched case-sensitively with ``*`` / ``?``; a
  policy variable (``${...}``) makes the statement's match Unknown.
- ``Condition``: the operators our own policies use and their close family: String*
  (Equals, NotEquals, EqualsIgnoreCase, NotEqualsIgnoreCase, Like, NotLike), Arn*
  (Equals, Like, NotEquals, NotLike), Bool and Null, each with the ``...IfExists`` suffix
  and the ``ForAnyValue:`` / ``ForAllValues:`` set qualifiers. Values in one key are ORed,
  keys and operators are ANDed. A key absent from the request context makes a positive
  operator false and a negated one true (the documented rule). A key the caller did not
  declare *known* (its value, or its absence, in ``Request.context``) and any other
  operator make the condition Unknown.
- ``Principal`` / ``NotPrincipal`` (resource-based policies only, see
  ``evaluate(..., principal=...)``): ``"*"``, ``{"AWS": "*"}``, the role ARN, the account
  (``123456789012`` or its ``:root`` ARN); other forms and ``NotPrincipal`` are Unknown.

Not evaluated (the caller says Unknown when they apply): permissions boundaries, SCPs and
RCPs, session policies, policy variables, and what a key policy's grants allow.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping

ABSENT = None  # a known key with no value in the request


class Decision(str, Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"  # no statement allows it
    UNKNOWN = "Unknown"


class _Tri(Enum):
    YES = 1
    NO = 0
    MAYBE = 2


@dataclass(frozen=True)
class Policy:
    """One policy document and how messages name it (``inline policy X``, a managed ARN...)."""

    name: str
    document: Mapping[str, Any] | str


@dataclass(frozen=True)
class Request:
    """One request: ``context`` holds every key whose value (or absence: None) is known."""

    action: str
    resource: str
    context: Mapping[str, str | list[str] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    # The statement that decided it: "<policy name> statement <Sid or index>", or "" (implicit).
    statement: str = ""
    detail: str = ""  # why Unknown (the operator or key), empty otherwise


def statements(document: Mapping[str, Any] | str) -> list[dict[str, Any]]:
    """The Statement list of a document given as dict or JSON text (a single object allowed)."""
    doc = json.loads(document) if isinstance(document, str) else document
    found = (doc or {}).get("Statement") or []
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    # fnmatch's [] classes are not IAM's: escape them so only * and ? are wildcards.
    pattern = pattern.replace("[", "[[]")
    if not case:
        return fnmatch.fnmatchcase(value.lower(), pattern.lower())
    return fnmatch.fnmatchcase(value, pattern)


def action_matches(pattern: str, action: str) -> bool:
    """Case-insensitive, ``*`` and ``?`` wildcards (``s3:Get*``, ``*``)."""
    return _glob(str(pattern), action, case=False)


def _resource_match(pattern: str, resource: str) -> _Tri:
    pattern = str(pattern)
    if "${" in pattern:
        return _Tri.MAYBE
    return _Tri.YES if _glob(pattern, resource, case=True) else _Tri.NO


def _any(results: Iterable[_Tri]) -> _Tri:
    out = _Tri.NO
    for r in results:
        if r is _Tri.YES:
            return _Tri.YES
        if r is _Tri.MAYBE:
            out = _Tri.MAYBE
    return out


def _not(t: _Tri) -> _Tri:
    return {_Tri.YES: _Tri.NO, _Tri.NO: _Tri.YES, _Tri.MAYBE: _Tri.MAYBE}[t]


def _and(results: Iterable[_Tri]) -> _Tri:
    out = _Tri.YES
    for r in results:
        if r is _Tri.NO:
            return _Tri.NO
        if r is _Tri.MAYBE:
            out = _Tri.MAYBE
    return out


def _action_part(statement: dict[str, Any], action: str) -> _Tri:
    if "Action" in statement:
        return _Tri.YES if any(action_matches(p, action) for p in _list(statement["Action"])) else _Tri.NO
    if "NotAction" in statement:
        return _Tri.NO if any(action_matches(p, action) for p in _list(statement["NotAction"])) else _Tri.YES
    return _Tri.NO  # a statement without either is invalid; IAM would refuse it


def _resource_part(statement: dict[str, Any], resource: str) -> _Tri:
    if "Resource" in statement:
        return _any(_resource_match(p, resource) for p in _list(statement["Resource"]))
    if "NotResource" in statement:
        return _not(_any(_resource_match(p, resource) for p in _list(statement["NotResource"])))
    # Resource-based policies (secret, key) leave Resource out: the resource is the policy's own.
    return _Tri.YES


# --------------------------------------------------------------------------- conditions

_STRING = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: _glob(p, v, case=True), False),
    "StringNotLike": (lambda p, v: _glob(p, v, case=True), True),
    "ArnEquals": (lambda p, v: p == v, False),
    "ArnLike": (lambda p, v: _glob(p, v, case=True), False),
    "ArnNotEquals": (lambda p, v: p == v, True),
    "ArnNotLike": (lambda p, v: _glob(p, v, case=True), True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False),
}


def _condition_key(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> tuple[_Tri, str]:
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return _Tri.MAYBE, f"condition operator {operator}"
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    known = {k.lower(): v for k, v in context.items()}
    if key.lower() not in known:
        return _Tri.MAYBE, f"condition key {key}"
    value = known[key.lower()]
    expected_values = [str(e).lower() if isinstance(e, bool) else str(e) for e in _list(expected)]
    if base == "Null":
        # "true": the key must be absent; "false": present.
        want_absent = any(e.lower() == "true" for e in expected_values)
        return (_Tri.YES if (value is None) == want_absent else _Tri.NO), ""
    if base not in _STRING:
        return _Tri.MAYBE, f"condition operator {operator}"
    if any("${" in e for e in expected_values):
        return _Tri.MAYBE, f"policy variable in condition {key}"
    match, negated = _STRING[base]
    values = [str(v) for v in _list(value)]
    if value is None or not values:
        # Absent key: IfExists and negated operators and ForAllValues are true, the rest false.
        return (_Tri.YES if if_exists or negated or qualifier == "ForAllValues" else _Tri.NO), ""

    def one(v: str) -> bool:
        hit = any(match(p, v) for p in expected_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        ok = all(one(v) for v in values)
    elif qualifier == "ForAnyValue":
        ok = any(one(v) for v in values)
    else:
        if len(values) > 1:  # a multivalued key needs a set qualifier; without one AWS is subtle
            return _Tri.MAYBE, f"multivalued condition key {key} without ForAnyValue/ForAllValues"
        ok = one(values[0])
    return (_Tri.YES if ok else _Tri.NO), ""


def _condition_part(statement: dict[str, Any], context: Mapping[str, Any]) -> tuple[_Tri, str]:
    block = statement.get("Condition") or {}
    if not isinstance(block, dict):
        return _Tri.MAYBE, "malformed Condition"
    out, why = _Tri.YES, ""
    for operator, keys in block.items():
        if not isinstance(keys, dict):
            return _Tri.MAYBE, f"malformed condition {operator}"
        for key, expected in keys.items():
            result, reason = _condition_key(operator, key, expected, context)
            if result is _Tri.NO:
                return _Tri.NO, ""
            if result is _Tri.MAYBE:
                out, why = _Tri.MAYBE, why or reason
    return out, why


# --------------------------------------------------------------------------- principals


def _principal_part(statement: dict[str, Any], principal: str) -> tuple[_Tri, str]:
    if "NotPrincipal" in statement:
        return _Tri.MAYBE, "NotPrincipal"
    given = statement.get("Principal")
    if given is None:
        return _Tri.NO, ""
    if given == "*":
        return _Tri.YES, ""
    if not isinstance(given, dict):
        return _Tri.MAYBE, "Principal form"
    account = principal.split(":")[4] if principal.count(":") >= 5 else ""
    result = _Tri.NO
    for kind, values in given.items():
        for value in _list(values):
            value = str(value)
            if kind != "AWS":
                continue  # a service or federated principal is not our role
            if value == "*" or value == principal:
                return _Tri.YES, ""
            if value in (account, f"arn:aws:iam::{account}:root"):
                result = _Tri.YES if result is _Tri.NO else result
            elif "*" in value or "?" in value:
                result = _Tri.MAYBE
    return result, ("Principal wildcard" if result is _Tri.MAYBE else "")


def account_principal(statement: dict[str, Any], account: str) -> bool:
    """Does a resource-policy statement name the whole account (``root`` or the bare ID)?"""
    given = statement.get("Principal")
    aws = given.get("AWS") if isinstance(given, dict) else None
    return any(str(v) in (account, f"arn:aws:iam::{account}:root") for v in _list(aws))


# --------------------------------------------------------------------------- evaluation


def _label(policy: Policy, index: int, statement: dict[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"{policy.name} statement {sid!r}" if sid else f"{policy.name} statement #{index}"


def evaluate(policies: Iterable[Policy], request: Request, *, principal: str | None = None) -> Verdict:
    """The decision of this policy set for ``request``.

    ``principal``: evaluate as resource-based policies for that principal ARN (a
    statement applies only when its Principal matches). Order of precedence, per AWS:
    an applicable Deny -> ExplicitDeny; else a Deny that may apply -> Unknown (never
    Allow); else an applicable Allow -> Allow; else an Allow that may apply -> Unknown;
    else ImplicitDeny.
    """
    deny_maybe: Verdict | None = None
    allow: Verdict | None = None
    allow_maybe: Verdict | None = None
    for policy in policies:
        try:
            found = statements(policy.document)
        except (ValueError, TypeError):
            deny_maybe = deny_maybe or Verdict(Decision.UNKNOWN, policy.name, f"{policy.name} is not valid JSON")
            continue
        for index, statement in enumerate(found):
            parts = [_action_part(statement, request.action), _resource_part(statement, request.resource)]
            why = ""
            if principal is not None:
                p, why = _principal_part(statement, principal)
                parts.append(p)
            matched = _and(parts)
            if matched is _Tri.NO:
                continue
            condition, reason = _condition_part(statement, request.context)
            applies = _and([matched, condition])
            if applies is _Tri.NO:
                continue
            why = reason or why or ("policy variable in Resource" if matched is _Tri.MAYBE else "")
            label = _label(policy, index, statement)
            effect = str(statement.get("Effect", ""))
            if effect == "Deny":
                if applies is _Tri.YES:
                    return Verdict(Decision.EXPLICIT_DENY, label)
                deny_maybe = deny_maybe or Verdict(Decision.UNKNOWN, label, why)
            elif effect == "Allow":
                if applies is _Tri.YES:
                    allow = allow or Verdict(Decision.ALLOW, label)
                else:
                    allow_maybe = allow_maybe or Verdict(Decision.UNKNOWN, label, why)
    if deny_maybe is not None:
        return deny_maybe
    if allow is not None:
        return allow
    if allow_maybe is not None:
        return allow_maybe
    return Verdict(Decision.IMPLICIT_DENY)


ECR_IMAGE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                       r"(?P<repository>[^:@]+)")


def ecr_image(image: str) -> tuple[str, str, str] | None:
    """Pure: (account, region, repository) of a private ECR image reference, else None."""
    found = ECR_IMAGE.match(image or "")
    return None if found is None else (found["account"], found["region"], found["repository"])
