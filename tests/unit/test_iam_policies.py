"""Pure parts of controller.aws.iam_policies and controller.aws.kms: documents, ownership marks, compare, budget."""

from __future__ import annotations

import json

import pytest

from controller.aws import iam_policies, kms, policydoc
from controller.aws.protocol import Owner

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/cred-AbCdEf"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


# --------------------------------------------------------------------------- desired


@pytest.mark.parametrize(
    "kms_key, expected_statements",
    [
        (
            None,
            [{"Sid": "ReadRegistryCredential", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET}],
        ),
        (
            KEY,
            [
                {"Sid": "ReadRegistryCredential", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET},
                {"Sid": "DecryptRegistryCredential", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY,
                 # Only through Secrets Manager in the secret's region, only for this secret.
                 "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
                                                "kms:EncryptionContext:SecretARN": SECRET}}},
            ],
        ),
    ],
    ids=["default-key-no-kms-statement", "customer-managed-key-adds-decrypt"],
)
def test_desired_document(kms_key, expected_statements):
    doc = iam_policies.desired(SECRET, kms_key)
    assert doc == {"Version": "2012-10-17", "Statement": expected_statements}
    # No wildcards anywhere: exactly the secret and key ARNs.
    assert "*" not in json.dumps(doc)


# --------------------------------------------------------------------------- compare

WANT = iam_policies.desired(SECRET, KEY)


def _doc(*statements, version="2012-10-17"):
    return {"Version": version, "Statement": list(statements)}


READ = {"Sid": "ReadRegistryCredential", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET}
DECRYPT = {"Sid": "DecryptRegistryCredential", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY,
           "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
                                          "kms:EncryptionContext:SecretARN": SECRET}}}


@pytest.mark.parametrize(
    "observed, differences",
    [
        (_doc(READ, DECRYPT), ()),
        (_doc(DECRYPT, READ), ()),
        (_doc({**READ, "Action": ["secretsmanager:GetSecretValue"]}, {**DECRYPT, "Resource": [KEY]}), ()),
        (_doc({**READ, "Action": "SecretsManager:getSecretValue"}, {**DECRYPT, "Action": "KMS:Decrypt"}), ()),
        (json.dumps(_doc(READ, DECRYPT), indent=4), ()),
        (_doc(READ), ("PolicyDocument",)),
        (_doc(READ, {**DECRYPT, "Resource": "*"}), ("PolicyDocument",)),
        (_doc({**READ, "Resource": SECRET.replace("AbCdEf", "XyZ123")}, DECRYPT), ("PolicyDocument",)),
        (_doc({**READ, "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]}, DECRYPT), ("PolicyDocument",)),
        (_doc(READ, DECRYPT, version="2008-10-17"), ("PolicyDocument",)),
        (None, ("PolicyDocument",)),
    ],
    ids=[
        "identical",
        "statement-order",
        "list-vs-string",
        "action-case",
        "pretty-printed-json-string",
        "kms-statement-missing",
        "resource-widened-to-wildcard",
        "other-secret",
        "extra-action",
        "other-version",
        "absent",
    ],
)
def test_compare_by_meaning(observed, differences):
    assert iam_policies.compare(WANT, observed) == differences


# --------------------------------------------------------------------------- role names


@pytest.mark.parametrize(
    "given, name, account",
    [
        ("exec-role", "exec-role", None),
        ("arn:aws:iam::123456789012:role/exec-role", "exec-role", "123456789012"),
        ("arn:aws:iam::123456789012:role/service-role/team/exec-role", "exec-role", "123456789012"),
        ("arn:aws-us-gov:iam::210987654321:role/exec", "exec", "210987654321"),
    ],
    ids=["bare-name", "arn", "arn-with-path", "other-partition"],
)
def test_role_ref_normalises_to_name(given, name, account):
    ref = iam_policies.role_ref(given)
    assert (ref.name, ref.account, ref.given) == (name, account, given)


@pytest.mark.parametrize(
    "role, problem",
    [
        ("exec-role", False),
        ("arn:aws:iam::123456789012:role/exec-role", False),
        ("arn:aws:iam::999999999999:role/exec-role", True),
    ],
    ids=["name-only", "same-account", "other-account"],
)
def test_account_problem(role, problem):
    message = iam_policies.account_problem(iam_policies.role_ref(role), SECRET)
    assert (message is not None) == problem
    if problem:
        assert "999999999999" in message and "123456789012" in message


# --------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    "others, ours, fits",
    [
        ([], 300, True),
        ([5000, 4940], 300, True),   # exactly 10,240
        ([5000, 4941], 300, False),  # one over
        ([10_240], 1, False),
    ],
    ids=["empty-role", "exactly-at-limit", "one-over", "full-role"],
)
def test_budget_problem(others, ours, fits):
    problem = iam_policies.budget_problem("exec-role", others, ours)
    assert (problem is None) == fits
    if not fits:
        assert "exec-role" in problem and "10240" in problem and str(ours) in problem


def test_budget_counts_without_whitespace():
    pretty = json.dumps(WANT, indent=4)
    assert policydoc.size(pretty) == policydoc.size(WANT) < len(pretty)


# --------------------------------------------------------------------------- kms


@pytest.mark.parametrize(
    "value, is_arn",
    [
        (KEY, True),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", False),
        ("alias/my-key", False),
        ("arn:aws:kms:us-east-1:123456789012:alias/my-key", False),
        (None, False),
        ("", False),
    ],
    ids=["key-arn", "key-id", "alias-name", "alias-arn", "none", "empty"],
)
def test_is_key_arn(value, is_arn):
    assert kms.is_key_arn(value) is is_arn


# --------------------------------------------------------------------------- ownership marks

OWNER = "c1/team-a/hub"
OTHER = "c1/team-b/hub"
PREFIX = iam_policies.sid_prefix(OWNER)
LEGACY = iam_policies.desired(SECRET, KEY, kms_conditions=False)  # what versions before marks wrote
MARKED = iam_policies.desired(SECRET, KEY, OWNER)
PERSON = {"Sid": "ReadRegistryCredential", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
NOTES = {"Sid": "RegaccessNotes", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}


UNCONDITIONED = iam_policies.desired(SECRET, KEY, OWNER, kms_conditions=False)  # marked, before KMS conditions


def test_marked_document_grants_what_the_pre_mark_one_did_narrowed_by_the_kms_conditions():
    assert [s["Sid"] for s in MARKED["Statement"]] == [PREFIX + "ReadRegistryCredential", PREFIX + "DecryptRegistryCredential"]
    assert iam_policies.same_grants(UNCONDITIONED, LEGACY) and not policydoc.equivalent(UNCONDITIONED, LEGACY)
    # The conditions are a real difference: an outdated document is rewritten, not taken as equal.
    assert not iam_policies.same_grants(MARKED, UNCONDITIONED)
    assert MARKED["Statement"][1]["Condition"] == {"StringEquals": {
        "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com", "kms:EncryptionContext:SecretARN": SECRET}}
    assert "*" not in json.dumps(MARKED)


@pytest.mark.parametrize(
    "written, legacy, differs",
    [
        (LEGACY, True, True),            # before ownership marks (and KMS conditions)
        (UNCONDITIONED, True, True),     # marked, before the KMS conditions
        (MARKED, False, False),          # what this version writes: nothing to do
    ],
    ids=["pre-mark", "marked-without-kms-conditions", "current"],
)
def test_an_outdated_document_of_ours_is_rewritten_once_and_is_not_drift(written, legacy, differs):
    desired = iam_policies.role_policy("exec", "p", OWNER, SECRET, KEY)
    owner, mark = iam_policies.owner_of(written, OWNER, desired.legacy)
    assert owner is Owner.OURS
    # What observe reports as Observed.legacy: the step does not count it as drift.
    assert iam_policies.outdated(desired, written, owner, mark) is legacy
    assert bool(iam_policies.compare(desired.document, written)) is differs
    # After the one rewrite the document is the current one: equal from then on.
    assert not iam_policies.compare(desired.document, MARKED)


def test_no_kms_condition_without_a_region_in_the_secret_arn():
    # The secret ARN is not known yet (plan before create): no made-up condition.
    assert "Condition" not in iam_policies.desired("", KEY, OWNER)["Statement"][1]


@pytest.mark.parametrize(
    "owner",
    ["c1/team-a/hub", "default/ns/name", "a-very-long-cluster-identifier-0123456789/namespace-x/resource.with.dots"],
    ids=["short", "default-cluster", "long-and-dotted"],
)
def test_sid_prefix_is_deterministic_and_iam_legal(owner):
    prefix = iam_policies.sid_prefix(owner)
    assert prefix == iam_policies.sid_prefix(owner)
    assert prefix.isalnum() and prefix.isascii()  # IAM Sids allow [A-Za-z0-9] only
    assert iam_policies.sid_marks(iam_policies.desired(SECRET, None, owner)) == {prefix}


@pytest.mark.parametrize(
    "one, other",
    [("c1/a/bc", "c1/ab/c"), ("c1/ns/app", "c1/ns/app2"), ("c1/ns/app", "c2/ns/app"), ("c/1ns/app", "c1/ns/app")],
    ids=["namespace-name-boundary", "name-is-a-prefix", "other-cluster", "cluster-namespace-boundary"],
)
def test_no_owner_prefix_starts_another_owners(one, other):
    a, b = iam_policies.sid_prefix(one), iam_policies.sid_prefix(other)
    assert a != b and not a.startswith(b) and not b.startswith(a)


def _statements(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


OURS_READ, OURS_DECRYPT = MARKED["Statement"]
THEIRS_READ = iam_policies.desired(SECRET, None, OTHER)["Statement"][0]


@pytest.mark.parametrize(
    "document, legacy, owner, mark",
    [
        (MARKED, LEGACY, Owner.OURS, PREFIX),
        (_statements({**OURS_READ, "Resource": "*"}), LEGACY, Owner.OURS, PREFIX),
        (_statements(OURS_READ, OURS_DECRYPT, PERSON), LEGACY, Owner.OURS, PREFIX),
        (iam_policies.desired(SECRET, KEY, OTHER), LEGACY, Owner.FOREIGN, iam_policies.sid_prefix(OTHER)),
        (iam_policies.desired(SECRET, KEY, "c2/team-a/hub"), LEGACY, Owner.FOREIGN, iam_policies.sid_prefix("c2/team-a/hub")),
        (_statements(OURS_READ, THEIRS_READ), LEGACY, Owner.FOREIGN, iam_policies.sid_prefix(OTHER)),
        (_statements(PERSON), LEGACY, Owner.UNMARKED, None),
        (_statements({k: v for k, v in PERSON.items() if k != "Sid"}), LEGACY, Owner.UNMARKED, None),
        (_statements(NOTES), LEGACY, Owner.UNMARKED, None),
        (LEGACY, LEGACY, Owner.OURS, None),
        (json.dumps(LEGACY, indent=2), LEGACY, Owner.OURS, None),
        (iam_policies.desired(SECRET.replace("AbCdEf", "XyZ123"), KEY), LEGACY, Owner.UNMARKED, None),
        (iam_policies.desired(SECRET), LEGACY, Owner.UNMARKED, None),
        (_statements({**LEGACY["Statement"][0], "Resource": "*"}, LEGACY["Statement"][1]), LEGACY, Owner.UNMARKED, None),
        (LEGACY, None, Owner.UNMARKED, None),
    ],
    ids=[
        "ours",
        "ours-edited-by-hand",
        "ours-with-a-person's-statement-added",
        "another-namespace",
        "same-name-another-cluster",
        "another-owner's-statement-beside-ours",
        "person-legacy-sid-widened",
        "person-no-sid",
        "head-without-prefix-shape-is-no-mark",
        "legacy-exact",
        "legacy-pretty-printed",
        "legacy-for-another-secret",
        "legacy-without-the-kms-statement",
        "legacy-widened",
        "legacy-with-unknown-secret-arn",
    ],
)
def test_owner_of(document, legacy, owner, mark):
    assert iam_policies.owner_of(document, OWNER, legacy) == (owner, mark)
