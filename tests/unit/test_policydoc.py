"""Policy comparison exactly as IAM reads it (controller.aws.policydoc).

One table row per IAM rule (given two documents, then equal or not), the peer
projects' own tables (../shared/peers) with the cases where IAM's documented
rule overrides a lenient peer named and explained, and a property-based test:
AWS-style rewritings of a policy compare equal, changing one meaningful value
compares different.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.aws import policydoc
from controller.aws.policydoc import PolicyDocumentError, equivalent

PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "policy-equivalence-cases.json"


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    out: dict[str, Any] = {"Statement": list(statements)}
    if version:
        out["Version"] = version
    return out


def stmt(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Effect": "Allow", "Action": "ecr:BatchGetImage"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


ROOT = "arn:aws:iam::111122223333:root"

# (id, a, b, equal) - each row is one rule of the IAM User Guide (see policydoc's docstring).
RULES = [
    ("star-is-not-aws-star", doc(stmt(Principal="*")), doc(stmt(Principal={"AWS": "*"})), False),
    ("aws-star-string-vs-list", doc(stmt(Principal={"AWS": "*"})), doc(stmt(Principal={"AWS": ["*"]})), True),
    ("true-is-not-1", doc(stmt(Sid="A", Extra=True)), doc(stmt(Sid="A", Extra=1)), False),
    ("false-is-not-0-in-condition", doc(stmt(Condition={"Bool": {"aws:SecureTransport": False}})),
     doc(stmt(Condition={"Bool": {"aws:SecureTransport": 0}})), False),
    ("principal-forms-differ-no-typeerror", doc(stmt(Principal="*"), stmt(Principal={"AWS": ROOT})),
     doc(stmt(Principal={"AWS": ROOT}), stmt(Principal={"AWS": "*"})), False),
    ("account-id-vs-root-arn-aws", doc(stmt(Principal={"AWS": "111122223333"})), doc(stmt(Principal={"AWS": ROOT})), True),
    ("account-id-vs-root-arn-aws-cn", doc(stmt(Principal={"AWS": "111122223333"})),
     doc(stmt(Principal={"AWS": "arn:aws-cn:iam::111122223333:root"})), True),
    ("account-id-vs-root-arn-aws-us-gov", doc(stmt(Principal={"AWS": ["111122223333"]})),
     doc(stmt(Principal={"AWS": "arn:aws-us-gov:iam::111122223333:root"})), True),
    ("other-account-differs", doc(stmt(Principal={"AWS": "111122223333"})),
     doc(stmt(Principal={"AWS": "arn:aws:iam::444455556666:root"})), False),
    ("role-arn-is-not-root", doc(stmt(Principal={"AWS": ROOT})),
     doc(stmt(Principal={"AWS": "arn:aws:iam::111122223333:role/r"})), False),
    ("quoted-number-in-condition", doc(stmt(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": 3600}})),
     doc(stmt(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})), True),
    ("quoted-boolean-in-condition", doc(stmt(Condition={"Bool": {"aws:SecureTransport": True}})),
     doc(stmt(Condition={"Bool": {"aws:SecureTransport": "true"}})), True),
    ("condition-key-case", doc(stmt(Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc"}})),
     doc(stmt(Condition={"StringEquals": {"AWS:principalorgid": "o-abc"}})), True),
    ("string-equals-value-case-sensitive", doc(stmt(Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc"}})),
     doc(stmt(Condition={"StringEquals": {"aws:PrincipalOrgID": "O-ABC"}})), False),
    ("duplicate-actions", doc(stmt(Action=["ecr:BatchGetImage", "ecr:BatchGetImage"])),
     doc(stmt(Action="ecr:BatchGetImage")), True),
    ("duplicate-principals", doc(stmt(Principal={"AWS": [ROOT, "111122223333"]})), doc(stmt(Principal={"AWS": ROOT})), True),
    ("duplicate-condition-values", doc(stmt(Condition={"StringEquals": {"k": ["a", "a", "b"]}})),
     doc(stmt(Condition={"StringEquals": {"k": ["b", "a"]}})), True),
    ("empty-sid-vs-none", doc(stmt(Sid="")), doc(stmt()), True),
    ("sid-differs", doc(stmt(Sid="A")), doc(stmt(Sid="B")), False),
    ("missing-version-is-2008", doc(stmt(), version=None), doc(stmt(), version="2008-10-17"), True),
    ("missing-version-is-not-2012", doc(stmt(), version=None), doc(stmt(), version="2012-10-17"), False),
    ("action-case-insensitive", doc(stmt(Action="ECR:batchgetimage")), doc(stmt(Action="ecr:BatchGetImage")), True),
    ("resource-case-sensitive", doc(stmt(Resource="arn:aws:s3:::Bucket")), doc(stmt(Resource="arn:aws:s3:::bucket")), False),
    ("effect-case-sensitive", doc(stmt(Effect="allow")), doc(stmt(Effect="Allow")), False),
    ("statement-object-vs-list", {"Version": "2012-10-17", "Statement": stmt()}, doc(stmt()), True),
    ("statement-order", doc(stmt(Sid="A"), stmt(Sid="B")), doc(stmt(Sid="B"), stmt(Sid="A")), True),
    ("string-vs-one-element-list", doc(stmt(Resource="arn:aws:s3:::b")), doc(stmt(Resource=["arn:aws:s3:::b"])), True),
    ("empty-principal-type-names-nobody", doc(stmt(Principal={"Service": []})), doc(stmt(Principal={"AWS": []})), True),
    ("empty-principal-is-not-missing", doc(stmt(Principal={})), doc(stmt()), False),
    ("deny-is-not-allow", doc(stmt(Effect="Deny")), doc(stmt()), False),
    ("not-action-is-not-action", doc(stmt(Action=None, NotAction="ecr:BatchGetImage")), doc(stmt()), False),
]


@pytest.mark.parametrize("a,b,equal", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_iam_rule(a: dict, b: dict, equal: bool) -> None:
    assert equivalent(a, b) is equal
    assert equivalent(b, a) is equal
    assert equivalent(json.dumps(a), json.dumps(b)) is equal  # text and dict alike


@pytest.mark.parametrize("text", ["{", "[]", "[{}]", '"policy"', '{"Statement": 42}', '{"Statement": [1]}',
                                  '{"Statement": [{"Condition": "x"}]}'],
                         ids=["truncated", "list", "list-of-object", "string", "statement-number",
                              "statement-entry-number", "condition-string"])
def test_not_a_policy_is_a_clear_error(text: str) -> None:
    with pytest.raises(PolicyDocumentError) as raised:
        equivalent(text, text)
    assert isinstance(raised.value, ValueError) and str(raised.value)


# Where a peer is lenient about something IAM distinguishes, IAM's rule wins: name and reason.
PEER_OVERRIDES = {
    "Casing of Effect": (False, "Effect values are case-sensitive (Allow | Deny)"),
    "Single Statement vs []Statement": (False, "the second document's Effect is 'allow'; object vs list alone is equal"),
    "Empty Principal set": (False, "the second document's Effect is 'allow'"),
    "Empty Principals sets of different types have the same effect": (False, "the second document's Effect is 'allow'"),
    "Empty Principal and missing Principal have the same effect": (False, "Effect 'allow'; and an empty Principal is not a missing one"),
    "Principal with empty sets and missing Principal have the same effect": (False, "Effect 'allow'; empty vs missing Principal"),
    "Incorrect Statement type": ("error", "Statement 42 is not a policy statement"),
    "Different empty lists": ("error", "a policy document is a JSON object, not a list"),
}


def _peer_cases() -> list[dict[str, Any]]:
    if not PEERS.exists():
        pytest.skip(f"peer tables not found at {PEERS}")
    return json.loads(PEERS.read_text())["cases"]


def test_peer_tables() -> None:
    cases = _peer_cases()
    assert len(cases) >= 50
    disagreements = []
    for case in cases:
        expected: Any = "error" if case["error"] else case["equivalent"]
        expected = PEER_OVERRIDES.get(case["name"], (expected, ""))[0]
        try:
            got: Any = equivalent(case["policy1"], case["policy2"])
        except PolicyDocumentError:
            got = "error"
        if got != expected:
            disagreements.append((case["source"], case["name"], expected, got))
    assert disagreements == []
    assert set(PEER_OVERRIDES) <= {c["name"] for c in cases}  # no stale override


# --------------------------------------------------------------------------- properties

ACTIONS = st.sampled_from(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:PutImage", "s3:GetObject"])
ACCOUNTS = st.sampled_from(["111122223333", "444455556666", "777788889999"])
CONDITION_VALUES = st.one_of(st.integers(0, 10_000), st.booleans(), st.sampled_from(["o-abc", "vpce-1"]))


@st.composite
def statements(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Sid": draw(st.sampled_from(["", "A", "Pull", "Push"])),
        "Effect": draw(st.sampled_from(["Allow", "Deny"])),
        "Action": draw(st.lists(ACTIONS, min_size=1, max_size=3, unique=True)),
    }
    if draw(st.booleans()):
        out["Principal"] = {"AWS": [f"arn:aws:iam::{a}:root" for a in draw(st.lists(ACCOUNTS, min_size=1, max_size=3, unique=True))]}
    else:
        out["Resource"] = draw(st.lists(st.sampled_from(["arn:aws:s3:::a", "arn:aws:s3:::b/*"]), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        out["Condition"] = {"NumericLessThan" if draw(st.booleans()) else "Bool":
                            {"aws:Key": draw(st.lists(CONDITION_VALUES, min_size=1, max_size=2, unique=True))}}
    return out


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    body = draw(st.lists(statements(), min_size=1, max_size=3))
    # Sids must be unique in a valid policy; blank the repeats.
    seen: set[str] = set()
    for s in body:
        if s["Sid"] in seen:
            s["Sid"] = ""
        seen.add(s["Sid"])
    return {"Version": "2012-10-17", "Statement": body}


def rewrite_as_aws(policy: dict[str, Any], flip: int) -> dict[str, Any]:
    """What AWS (or a person) may legitimately do to a policy without changing its meaning."""
    out = copy.deepcopy(policy)
    body = list(reversed(out["Statement"]))
    for i, s in enumerate(body):
        s["Action"] = [a.upper() if (flip + i) % 2 else a for a in reversed(s["Action"])]
        if len(s["Action"]) == 1:
            s["Action"] = s["Action"][0]
        if "Principal" in s:
            arns = s["Principal"]["AWS"]
            s["Principal"]["AWS"] = [a.split(":")[4] if (flip + i) % 3 == 0 else a for a in arns] + arns[:1]
        if "Condition" in s:
            for body_ in s["Condition"].values():
                for key in list(body_):
                    values = [json.dumps(v) if not isinstance(v, str) else v for v in body_[key]]
                    del body_[key]
                    body_[key.upper() if flip % 2 else key] = values[0] if len(values) == 1 else values
        if s.get("Sid") == "":
            del s["Sid"]
        out["Statement"] = body
    if len(body) == 1 and flip % 2:
        out["Statement"] = body[0]
    return dict(reversed(list(out.items())))


@settings(max_examples=150, deadline=None)
@given(policies(), st.integers(0, 5))
def test_aws_rewritings_compare_equal(policy: dict[str, Any], flip: int) -> None:
    assert equivalent(policy, rewrite_as_aws(policy, flip))


def mutations(policy: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    first = policy["Statement"][0]

    def mutate(label: str, change: Any) -> None:
        copy_ = copy.deepcopy(policy)
        change(copy_["Statement"][0])
        out.append((label, copy_))

    mutate("effect", lambda s: s.update(Effect="Deny" if s["Effect"] == "Allow" else "Allow"))
    mutate("action", lambda s: s.update(Action=[*s["Action"], "ecr:DeleteRepository"]))
    if "Principal" in first:
        mutate("principal", lambda s: s["Principal"].update(AWS=[*s["Principal"]["AWS"], "arn:aws:iam::000000000000:root"]))
        mutate("principal-star", lambda s: s.update(Principal="*"))
    else:
        mutate("resource", lambda s: s.update(Resource=[*s["Resource"], "arn:aws:s3:::other"]))
    if "Condition" in first:
        def change_value(s: dict[str, Any]) -> None:
            body = next(iter(s["Condition"].values()))
            body["aws:Key"] = [*body["aws:Key"], 99_999]
        mutate("condition-value", change_value)
    return out


@settings(max_examples=150, deadline=None)
@given(policies())
def test_one_meaningful_change_compares_different(policy: dict[str, Any]) -> None:
    for label, changed in mutations(policy):
        assert not equivalent(policy, changed), label
        assert not equivalent(rewrite_as_aws(policy, 1), changed), label


def test_size_counts_without_whitespace() -> None:
    assert policydoc.size('{ "a" : 1 }') == len('{"a":1}')
