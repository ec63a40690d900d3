"""Unit tests for controller.aws.marks: the Sid mark no tenant can forge or collide (issue 30 §2).

What these tests prove, and what they do not:

- distinct owners (cluster id, namespace, name) get distinct marks, and no mark
  starts another owner's Sids, over an exhaustive grid of tricky names (split
  points, sanitised look-alikes, truncated readable parts, other clusters);
- the mark carries 128 bits of HMAC-SHA256 (32 hex digits, checked against an
  independent computation), so a search of 10^7 names matches one given victim
  with probability 10^7 / 2^128 < 2^-104: the bound is arithmetic, not a run;
- an actual bounded search (10^5 names from an attacker's namespace) does not even
  match the victim's first 20 bits more often than chance allows (a sanity check of
  the hash's spread, not a proof: no test can run 2^128 tries);
- the legacy mark and the new mark never start each other's Sids, and the legacy
  mark counts as ours only where status records the object (the migration rule).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re

import pytest

from controller.aws import iam_policies, marks
from controller.aws import repository_policies as rp

NAMES = ["a", "b", "ab", "bc", "c", "a-b", "a.b", "ab-c", "x1", "x10", "1", "0", "00", "default", "kube-system",
         "team-a", "teama", "team-a-b", "y" * 60]
CLUSTERS = ["default", "c1", "c10", "prod-eu-1", "a", "ab"]


def _owners():
    return list(itertools.product(CLUSTERS, NAMES[:12], NAMES))


def test_no_two_distinct_owners_share_a_mark_and_none_starts_anothers_sids():
    owners = _owners()
    prefixes = {owner: marks.sid_prefix(*owner) for owner in owners}
    # Distinct owners, distinct marks (7,000+ owners, every pair).
    assert len(set(prefixes.values())) == len(owners)
    # Prefix-free: in sorted order every string that starts with x follows x directly (all
    # strings between x and one it starts also start with x), so walking forward from each
    # mark while the strings start with it sees every string it starts: only its own Sid.
    ordered = sorted(set(prefixes.values()) | {p + "G12Org" for p in prefixes.values()})
    for i, mark in enumerate(ordered):
        j = i + 1
        while j < len(ordered) and ordered[j].startswith(mark):
            assert ordered[j] == mark + "G12Org", (mark, ordered[j])
            j += 1


@pytest.mark.parametrize(
    "one, other",
    [
        (("c1", "a", "bc"), ("c1", "ab", "c")),             # the namespace/name split point
        (("c1", "ns", "a.b"), ("c1", "ns", "a-b")),         # both read "nsab"
        (("c1", "x", "y" * 40), ("c1", "x", "y" * 41)),     # readable part truncated alike
        (("c1", "team-a", "app"), ("c2", "team-a", "app")),  # the same ns/name in two clusters
        (("c", "1ns", "app"), ("c1", "ns", "app")),          # the cluster/namespace split point
        (("default", "team-a", "app"), ("Default", "team-a", "app")),
    ],
    ids=["ns-name-boundary", "sanitised-equal", "truncation", "other-cluster", "cluster-ns-boundary", "case"],
)
def test_tricky_owners_get_different_unrelated_marks(one, other):
    a, b = marks.sid_prefix(*one), marks.sid_prefix(*other)
    assert a != b and not a.startswith(b) and not b.startswith(a)
    # The readable part may be equal; the hash part, the one compared, is not.
    assert marks.owner_digest(*one) != marks.owner_digest(*other)
    assert not rp.is_owned({"Sid": b + "G0"}, a) and not rp.is_owned({"Sid": a + "G0Org"}, b)


def test_the_mark_is_128_bits_of_hmac_sha256_keyed_with_the_cluster_id():
    cluster, namespace, name = "prod-eu-1", "team-a", "pullers"
    message = b"9:prod-eu-1" + b"6:team-a" + b"7:pullers"
    expected = hmac.new(b"prod-eu-1", message, hashlib.sha256).hexdigest()[:32].upper()
    prefix = marks.sid_prefix(cluster, namespace, name)
    assert prefix == f"Regaccessteamapullers{expected}Z"
    assert len(expected) * 4 == 128
    # IAM and ECR Sids: ASCII letters and digits only; the longest mark is MAX_MARK_CHARS.
    longest = marks.sid_prefix("c" * 63, "n" * 63, "m" * 253)
    assert longest.isascii() and longest.isalnum() and len(longest) == marks.MAX_MARK_CHARS == 92
    # Both kinds use this one rule.
    assert rp.sid_prefix(cluster, namespace, name) == prefix
    assert iam_policies.sid_prefix(f"{cluster}/{namespace}/{name}") == prefix


def test_a_forged_name_search_of_ten_million_tries_is_hopeless():
    """The bound of the issue's acceptance ("finds nothing in 10^7 tries"), made exact: each try
    matches a fixed 128-bit value with probability 2^-128 (HMAC-SHA256 as a PRF), so 10^7
    tries match with probability at most 10^7 * 2^-128."""
    bits = marks.HASH_CHARS * 4
    assert bits >= 128
    assert 10 ** 7 / 2 ** bits < 2 ** -100


def _first_bits(hex_digits: str, bits: int) -> int:
    return int(hex_digits, 16) >> (len(hex_digits) * 4 - bits)


def test_a_bounded_search_finds_no_partial_match_beyond_chance_where_the_old_mark_fell():
    """10^5 names from the attacker's namespace against the victim's mark, on the first 20 bits.

    Expected matches by chance: 10^5 / 2^20 ~ 0.1; more than 3 would be a broken hash
    (P < 10^-4). The issue's attacker ran this search against the old 40-bit mark, where
    a full match needs ~2^40 tries; here it needs ~2^128."""
    victim = marks.owner_digest("c1", "team-victim", "shared")
    target = _first_bits(victim, 20)
    hits = sum(_first_bits(marks.owner_digest("c1", "team-x", f"n{i}"), 20) == target for i in range(100_000))
    assert hits <= 3
    # And the full victim mark is never produced (10^5 tries against 2^128).
    assert all(marks.owner_digest("c1", "team-x", f"n{i}") != victim for i in range(1000))


def test_legacy_and_new_marks_never_start_each_others_sids():
    for cluster, namespace, name in _owners()[:2000]:
        new = marks.sid_prefix(cluster, namespace, name)
        old_ecr = rp.legacy_sid_prefix(namespace, name)
        old_iam = iam_policies.legacy_sid_prefix(f"{cluster}/{namespace}/{name}")
        for old in (old_ecr, old_iam):
            assert re.fullmatch(r"Regaccess[a-z0-9]*[0-9A-F]{10}X", old)
            assert not (new + "G0").startswith(old) and not (old + "G0").startswith(new)
            # Both are marks to the detector of "some owner's mark" (another owner's is a conflict).
            assert marks.ANY_MARK.match(old + "G0").group(0) == old
        assert marks.ANY_MARK.match(new + "ReadRegistryCredential").group(0) == new


def test_legacy_marks_are_what_earlier_versions_wrote():
    """Pinned values of the 40-bit marks before this change (sha256 of "ns/name", 10 hex, X):
    the migration must recognise exactly those."""
    assert rp.legacy_sid_prefix("team-a", "pullers") == (
        "Regaccessteamapullers" + hashlib.sha256(b"team-a/pullers").hexdigest()[:10].upper() + "X")
    assert iam_policies.legacy_sid_prefix("c1/team-a/hub") == (
        "Regaccessc1teamahub" + hashlib.sha256(b"c1/team-a/hub").hexdigest()[:10].upper() + "X")


def test_remarked_changes_only_sids_with_the_old_mark():
    assert marks.remarked("OLDG0", "OLD", "NEW") == "NEWG0"
    assert marks.remarked("OTHERG0", "OLD", "NEW") == "OTHERG0"


# ----------------------------------------------------------------------------- migration (pure)

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/team-a/hub-AbCdEf"
OWNER = "c1/team-a/hub"


def _old_marked(owner: str) -> dict:
    """Our policy as the previous version wrote it: the same statements, the 40-bit mark."""
    new, old = iam_policies.sid_prefix(owner), iam_policies.legacy_sid_prefix(owner)
    return iam_policies.remarked(iam_policies.desired(SECRET, None, owner), new, old)


def test_an_old_marked_policy_is_ours_and_outdated_only_where_status_records_it():
    from controller.aws.protocol import Owner

    document = _old_marked(OWNER)
    recorded = iam_policies.role_policy("exec", "p", OWNER, SECRET, recorded=True)
    owner, mark = iam_policies.owner_of(document, OWNER, recorded.legacy, recorded=True)
    assert (owner, mark) == (Owner.OURS, iam_policies.legacy_sid_prefix(OWNER))
    assert iam_policies.outdated(recorded, document, owner, mark)   # rewritten once, not drift
    assert iam_policies.compare(recorded.document, document)        # ... so there is a write
    # Without the record the forgeable mark proves nothing: a conflict unless adoptExisting.
    assert iam_policies.owner_of(document, OWNER, recorded.legacy, recorded=False) == (Owner.UNMARKED, None)
    # Changed by hand besides the old mark: ours, and that change is drift like any other.
    edited = {**document, "Statement": [{**document["Statement"][0], "Resource": "*"}]}
    owner, mark = iam_policies.owner_of(edited, OWNER, recorded.legacy, recorded=True)
    assert owner is Owner.OURS and not iam_policies.outdated(recorded, edited, owner, mark)
    # Another owner's old mark stays another owner's (never ours, recorded or not).
    theirs = _old_marked("c1/team-b/hub")
    assert iam_policies.owner_of(theirs, OWNER, recorded.legacy, recorded=True)[0] is Owner.FOREIGN


def test_old_marked_statements_are_ours_and_outdated_only_with_the_old_prefix_given():
    from controller.aws.protocol import Owner

    new, old = rp.sid_prefix("c1", "team-a", "pullers"), rp.legacy_sid_prefix("team-a", "pullers")
    statement = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                 "Action": list(rp.PULL_ACTIONS)}
    want = [{"Sid": new + "G0", **statement}]
    person = {"Sid": "AllowCi", **statement}
    found = {"arn": "arn", "policy": {"Version": "2012-10-17", "Statement": [person, {"Sid": old + "G0", **statement}]}}
    accepted = rp.observation_of(found, rp.DesiredStatements("app", new, want, old_prefix=old))
    assert accepted.owner is Owner.OURS and accepted.outdated and accepted.differences
    merged = rp.STATEMENTS.merged(rp.DesiredStatements("app", new, want, old_prefix=old), accepted)
    assert merged["Statement"] == [person, *want]                 # old out, new in, the person's kept
    # Without the record: not ours (absent), and a merge keeps the old statement as someone's.
    unrecorded = rp.observation_of(found, rp.DesiredStatements("app", new, want))
    assert unrecorded.owner is Owner.ABSENT and not unrecorded.outdated
    # Old-marked but changed: ours, not outdated (a difference besides the mark is drift).
    edited = {"arn": "arn", "policy": {"Statement": [{"Sid": old + "G0", **statement, "Action": "ecr:*"}]}}
    assert not rp.observation_of(edited, rp.DesiredStatements("app", new, want, old_prefix=old)).outdated


def test_the_loop_never_counts_an_outdated_object_as_drift():
    """The one decision core: an object of ours in an earlier version's format (old mark) is
    written even under driftPolicy Report, and its differences are not drift."""
    from controller.aws.protocol import Difference, Observation, Owner
    from controller.reconcile import loop

    changed = (Difference("Statement[x]", 1, 2),)
    outdated = Observation(exists=True, owner=Owner.OURS, differences=changed, outdated=True)
    edited = Observation(exists=True, owner=Owner.OURS, differences=changed)
    options = dict(adopt_existing=False, report_only=True, managed_before=True)
    assert loop.decide(outdated, **options) is loop.Decision.UPDATE
    assert loop.decide(edited, **options) is loop.Decision.REPORT
    assert loop._drift(outdated, True) == () and loop._drift(edited, True) == ("Statement[x]",)
