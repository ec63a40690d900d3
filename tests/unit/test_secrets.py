"""The secret kind's adapter (controller.aws.secrets), pure parts: owner, differences, value reads.

Given a described secret (DescribeSecret's answer) and the desired state, the
observation says whose it is (the regaccess.io/owner tag), what differs as
(path, observed, desired) triples with the value never shown, and whether the
value must be read at all (the call budget).
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.validation import validate_registry_credential
from controller.aws import secrets as sm
from controller.aws.protocol import OWNER_TAG, Action, Difference, Owner

OURS = "c1/ns/cred"
THEIRS = "c1/team-b/cred"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/cred-AbCdEf"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VALUE = '{"username":"robot","password":"pw-unit-0001"}'


def _want(value: str | None = VALUE, **secret: Any) -> sm.DesiredSecret:
    spec = {"source": {"secretRef": {"name": "src"}}, "secret": {"description": "d", **secret}}
    resolved, problems = validate_registry_credential("ns", "cred", spec, cluster_id="c1")
    assert problems == []
    return sm.desired(resolved, value=value, known_version="v1", source_changed=False,
                      kms_key_arn=KEY_ARN if secret.get("kmsKeyId") else None)


def _described(owner: str | None = OURS, **fields: Any) -> dict[str, Any]:
    tags = [{"Key": OWNER_TAG, "Value": owner}] if owner is not None else []
    return {"ARN": ARN, "Name": "regaccess/ns/cred", "Description": "d", "Tags": tags,
            "VersionIdsToStages": {"v1": ["AWSCURRENT"]}, **fields}


OBSERVE_CASES = {
    "ours-in-step": (_described(), {}, Owner.OURS, ()),
    "unmarked-lacks-our-tag": (
        _described(owner=None), {}, Owner.UNMARKED,
        (Difference("Tags", {OWNER_TAG: None}, {OWNER_TAG: OURS}),)),
    "empty-tag-is-unmarked": (
        _described(owner=""), {}, Owner.UNMARKED,
        (Difference("Tags", {OWNER_TAG: ""}, {OWNER_TAG: OURS}),)),
    "another-owners-mark-is-foreign": (
        _described(owner=THEIRS), {}, Owner.FOREIGN,
        (Difference("Tags", {OWNER_TAG: THEIRS}, {OWNER_TAG: OURS}),)),
    "description-changed": (
        _described(Description="by hand"), {}, Owner.OURS, (Difference("Description", "by hand", "d"),)),
    "kms-key-added-by-hand": (
        _described(KmsKeyId="alias/other"), {}, Owner.OURS,
        (Difference("KmsKeyId", "alias/other", "alias/aws/secretsmanager"),)),
    "aws-managed-key-named-is-the-default": (_described(KmsKeyId="alias/aws/secretsmanager"), {}, Owner.OURS, ()),
    "scheduled-for-deletion-comes-first": (
        _described(Description="x", DeletedDate="2026-01-01"), {}, Owner.OURS,
        (Difference("DeletedDate", "2026-01-01", None), Difference("Description", "x", "d"))),
    "value-read-and-differs-shows-no-value": (
        _described(), {"value_differs": True}, Owner.OURS, (Difference("SecretString", "<value>", "<value>"),)),
    "value-read-and-equal": (_described(), {"value_differs": False}, Owner.OURS, ()),
    "key-arn-settled-equal": (_described(KmsKeyId=KEY_ARN), {"kms_key_equal": True}, Owner.OURS, ()),
}


@pytest.mark.parametrize(("described", "facts", "owner", "differences"), OBSERVE_CASES.values(),
                         ids=OBSERVE_CASES.keys())
def test_observation_owner_and_differences(described, facts, owner, differences):
    want = _want(**({"kmsKeyId": "alias/registry"} if "kms_key_equal" in facts else {}))
    seen = sm.observation_of(want, described, **facts)
    assert seen.exists and seen.owner is owner
    assert seen.differences == differences
    assert seen.mark == {Owner.OURS: OURS, Owner.FOREIGN: THEIRS, Owner.UNMARKED: None}[owner]
    assert seen.observed.arn == ARN


def test_the_value_never_appears_in_an_observation_or_a_desired_repr():
    want = _want()
    seen = sm.observation_of(want, _described(), value_differs=True)
    assert "pw-unit-0001" not in repr(seen) and "pw-unit-0001" not in repr(want)


READ_CASES = {
    "steady-state-reads-nothing": ({}, {}, False),
    "aws-has-another-version": ({"VersionIdsToStages": {"v2": ["AWSCURRENT"], "v1": ["AWSPREVIOUS"]}}, {}, True),
    "no-current-version": ({"VersionIdsToStages": {}}, {}, True),
    "source-changed": ({}, {"source_changed": True}, True),
    "status-knows-no-version": ({}, {"known_version": None}, True),
    "scheduled-for-deletion-cannot-be-read": ({"DeletedDate": "2026-01-01"}, {"source_changed": True}, False),
    "no-value-given-never-reads": ({}, {"value": None, "source_changed": True}, False),
}


@pytest.mark.parametrize(("described", "want_fields", "expected"), READ_CASES.values(), ids=READ_CASES.keys())
def test_value_is_read_only_when_it_may_differ(described, want_fields, expected):
    want = _want()
    want = sm.DesiredSecret(**{**{f: getattr(want, f) for f in want.__dataclass_fields__}, **want_fields})
    assert sm.value_may_differ(want, _described(**described)) is expected


KMS_CASES = {
    "spelled-as-the-resolved-key-arn": ({"kmsKeyId": "alias/registry"}, KEY_ARN, True),
    "same-string": ({"kmsKeyId": "alias/registry"}, "alias/registry", None),
    "another-key-needs-kms": ({"kmsKeyId": "alias/registry"}, "arn:aws:kms:us-east-1:1:key/other", None),
    "no-key-in-spec": ({}, KEY_ARN, None),
}


@pytest.mark.parametrize(("secret", "observed", "expected"), KMS_CASES.values(), ids=KMS_CASES.keys())
def test_kms_alias_versus_key_arn_is_settled_without_kms(secret, observed, expected):
    assert sm.kms_settled(_want(**secret), observed) is expected


PREDICT_CASES = {
    "create-gives-a-placeholder-arn": (Action.CREATE, {}, 1,
                                       {"arn": "<ARN of secret regaccess/ns/cred, assigned when it is created>",
                                        "versionId": "<new version>"}),
    "value-put-gives-a-new-version": (Action.UPDATE, {"value_differs": True}, 1,
                                      {"arn": ARN, "versionId": "<new version>"}),
    # The value of an unmarked or restored secret is compared only by the write itself
    # (update reads it then), so a value write may follow: planned as one.
    "adopt-tags-then-compares-the-value": (Action.ADOPT, {"owner": None}, 2,
                                           {"arn": ARN, "versionId": "<new version>",
                                            "fields": ("Tags", "SecretString")}),
    "restore-describe-then-compares-the-value": (Action.UPDATE, {"DeletedDate": "2026", "Description": "x"}, 3,
                                                 {"arn": ARN, "versionId": "<new version>"}),
    "adopt-of-a-value-already-compared-keeps-the-version": (Action.ADOPT, {"owner": None, "value_differs": False}, 1,
                                                           {"arn": ARN, "versionId": "v1"}),
}


@pytest.mark.parametrize(("action", "fields", "calls", "facts"), PREDICT_CASES.values(), ids=PREDICT_CASES.keys())
def test_predict_says_what_a_write_would_return(action, fields, calls, facts):
    want = _want()
    value_differs = fields.pop("value_differs", None)
    owner = fields.pop("owner", OURS)
    seen = sm.observation_of(want, _described(owner=owner, **fields), value_differs=value_differs)
    written = sm.SECRET.predict(want, seen, action)
    assert written.calls == calls
    assert {k: written.facts[k] for k in facts} == facts


KNOWN_CASES = {
    # driftPolicy Report: a version already found different is not read again
    "reported-version-still-current": ({"VersionIdsToStages": {"v2": ["AWSCURRENT"]}}, {"reported_version": "v2"}, True),
    "aws-moved-on-since": ({"VersionIdsToStages": {"v3": ["AWSCURRENT"]}}, {"reported_version": "v2"}, False),
    "source-changed-compares-again": (
        {"VersionIdsToStages": {"v2": ["AWSCURRENT"]}}, {"reported_version": "v2", "source_changed": True}, False),
    "nothing-reported": ({"VersionIdsToStages": {"v2": ["AWSCURRENT"]}}, {}, False),
}


@pytest.mark.parametrize(("described", "want_fields", "expected"), KNOWN_CASES.values(), ids=KNOWN_CASES.keys())
def test_a_reported_version_is_known_to_differ_without_a_read(described, want_fields, expected):
    want = _want()
    want = sm.DesiredSecret(**{**{f: getattr(want, f) for f in want.__dataclass_fields__}, **want_fields})
    assert sm.known_to_differ(want, _described(**described)) is expected
