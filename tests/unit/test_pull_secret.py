"""ECRPullSecret: refresh timing with an injected clock, validation, and the Secret adapter's judgement (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from controller.api import reasons
from controller.api.validation_pull import validate_pull_secret
from controller.aws.ecr_tokens import Token, regions
from controller.aws.protocol import Owner
from controller.kubeobjects import (
    DOCKER_CONFIG_JSON, EXPIRES_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION, PULL_SECRETS,
    SHA_ANNOTATION, DesiredPullSecret, digest, dockerconfig,
)
from controller.reconcile.pull_secret import (
    Timing, effective_expiry, expiring, jitter_of, refresh_at, refresh_due, retry_delay,
)

T0 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.timezone.utc)
H = dt.timedelta(hours=1)
S = dt.timedelta(seconds=1)
DEFAULT = Timing()


# --------------------------------------------------------------------------- timing


@pytest.mark.parametrize("reported, timing, expected", [
    (T0 + 12 * H, DEFAULT, T0 + 12 * H),
    (T0 + 2 * H, DEFAULT, T0 + 2 * H),                                 # a shorter token is taken as it is
    (T0 + 12 * H, Timing(max_lifetime=30), T0 + 30 * S),               # the short lifetime setting caps it
    (T0 - 24 * H, DEFAULT, T0 + 12 * H),                               # expiresAt already past: nominal 12 h
    (T0, Timing(max_lifetime=60), T0 + 60 * S),
], ids=["ecr-12h", "shorter", "capped", "past-expiry-nominal", "equal-to-issue-capped"])
def test_effective_expiry(reported, timing, expected):
    assert effective_expiry(T0, reported, timing) == expected


@pytest.mark.parametrize("uid", ["a", "b", "c", "0e1f", "uid-1234"])
def test_refresh_at_is_half_the_lifetime_minus_at_most_ten_percent(uid):
    at = refresh_at(T0, T0 + 12 * H, uid, DEFAULT)
    assert T0 + 6 * H * 0.9 <= at <= T0 + 6 * H
    assert at == T0 + 6 * H * (1 - 0.1 * jitter_of(uid))  # fixed per resource
    assert refresh_at(T0, T0 + 12 * H, uid, DEFAULT) == at


def test_jitter_spreads_resources():
    times = {refresh_at(T0, T0 + 12 * H, f"uid-{i}", DEFAULT) for i in range(50)}
    assert len(times) > 20


@pytest.mark.parametrize("fraction, lifetime, jitter, earliest, latest", [
    (0.5, 12 * H, 0.0, 6 * H, 6 * H),
    (0.8, 10 * H, 0.0, 8 * H, 8 * H),
    (0.5, 30 * S, 0.1, 13.5 * S, 15 * S),
], ids=["half", "eighty-percent", "short-lifetime"])
def test_refresh_at_follows_the_fraction(fraction, lifetime, jitter, earliest, latest):
    at = refresh_at(T0, T0 + lifetime, "x", Timing(fraction=fraction, jitter=jitter))
    assert T0 + earliest <= at <= T0 + latest


@pytest.mark.parametrize("failures, remaining, expected", [
    (1, None, 10.0),
    (2, None, 20.0),
    (4, None, 80.0),
    (20, None, 900.0),                   # capped at retry_max
    (20, 6 * 3600.0, 900.0),
    (20, 1000.0, 250.0),                 # never later than a quarter of what is left
    (3, 8.0, 2.0),
    (1, 2.0, 1.0),                       # at least a second
    (1, -5.0, 10.0),                     # expired: backoff, but at least every 30 s
    (8, -5.0, 30.0),
], ids=["first", "second", "fourth", "cap", "cap-plenty-left", "quarter-left", "short", "floor", "expired",
        "expired-capped"])
def test_retry_delay(failures, remaining, expected):
    assert retry_delay(failures, remaining, DEFAULT) == expected


@pytest.mark.parametrize("now, issued, expires, timing, expected", [
    (T0 + 6 * H, T0, T0 + 12 * H, DEFAULT, False),
    (T0 + 11 * H, T0, T0 + 12 * H, DEFAULT, True),           # within the hour of the alert
    (T0 + 10 * H + 59 * 60 * S, T0, T0 + 12 * H, DEFAULT, False),
    (T0 + 13 * H, T0, T0 + 12 * H, DEFAULT, True),           # expired
    (T0 + 20 * S, T0, T0 + 30 * S, DEFAULT, False),          # short lifetime: last quarter only
    (T0 + 23 * S, T0, T0 + 30 * S, DEFAULT, True),
    (T0, None, None, DEFAULT, True),                         # no token at all
], ids=["fresh", "last-hour", "just-before-hour", "expired", "short-early", "short-late", "none"])
def test_expiring(now, issued, expires, timing, expected):
    assert expiring(now, issued, expires, timing) is expected


def test_refresh_due_reads_next_refresh_time_with_an_injected_clock():
    status = {"nextRefreshTime": "2026-12-01T06:00:00Z"}
    assert not refresh_due(status, T0 + 5 * H)
    assert refresh_due(status, T0 + 6 * H)
    assert not refresh_due({}, T0 + 100 * H)


def test_a_whole_day_of_refreshes_never_lets_a_token_expire():
    """Walk the clock: refresh at the scheduled time, fail two attempts in three; the Secret
    always holds a valid token (retries come well before expiry)."""
    now, issued, expires, failures, attempts = T0, T0, T0 + 12 * H, 0, 0
    while now < T0 + 24 * H:
        now = refresh_at(issued, expires, "uid", DEFAULT) if failures == 0 else now
        for _ in range(1000):
            attempts += 1
            if attempts % 3 == 0:  # success
                issued, expires, failures = now, now + 12 * H, 0
                break
            failures += 1
            now += dt.timedelta(seconds=retry_delay(failures, (expires - now).total_seconds(), DEFAULT))
            assert now < expires
        else:
            pytest.fail("no success")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("spec, reason, field", [
    ({"registries": [{"registryId": "12345"}]}, reasons.INVALID_REGISTRY_ID, "spec.registries[0].registryId"),
    ({"registries": [{"registryId": "12345678901a"}]}, reasons.INVALID_REGISTRY_ID, "spec.registries[0].registryId"),
    ({"registries": [{"region": "us-nowhere-1"}]}, reasons.UNKNOWN_REGION, "spec.registries[0].region"),
    ({"registries": [{"region": "Not A Region"}]}, reasons.UNKNOWN_REGION, "spec.registries[0].region"),
    ({"registries": [{"registryId": "111111111111"}, {"registryId": "111111111111"}]}, reasons.INVALID_SPEC,
     "spec.registries[1]"),
    ({"secretName": "Bad_Name"}, reasons.INVALID_SPEC, "spec.secretName"),
    ({"serviceAccounts": ["a", "a"]}, reasons.INVALID_SPEC, "spec.serviceAccounts[1]"),
    ({"unknown": 1}, reasons.INVALID_SPEC, "spec.unknown"),
], ids=["short-id", "letters-in-id", "unknown-region", "malformed-region", "duplicate", "secret-name",
        "duplicate-sa", "unknown-field"])
def test_bad_input_has_a_specific_reason(spec, reason, field):
    resolved, problems = validate_pull_secret("ns", "pull", spec, cluster_id="c", default_region="eu-west-1",
                                              known_regions=regions())
    assert resolved is None
    assert (problems[0].reason, problems[0].field) == (reason, field)


def test_defaults():
    resolved, problems = validate_pull_secret("ns", "pull", {}, cluster_id="c", default_region="eu-west-1",
                                              known_regions=regions())
    assert problems == []
    assert resolved.secret_name == "pull" and resolved.owner == "c/ns/pull"
    assert [(r.registry_id, r.region) for r in resolved.registries] == [(None, None)]


def test_unknown_operator_region_is_named():
    _, problems = validate_pull_secret("ns", "pull", {}, cluster_id="c", default_region="mars-north-1",
                                   known_regions=regions())
    assert problems[0].reason == reasons.UNKNOWN_REGION and "AWS_REGION" in problems[0].field


# --------------------------------------------------------------------------- the Secret adapter (pure part)

TOKEN = Token("111111111111", "111111111111.dkr.ecr.eu-west-1.amazonaws.com", T0 + 12 * H, "QVdTOnNlY3JldA==")
DESIRED = DesiredPullSecret("ns", "pull", "c/ns/pull", "pull", "uid-1",
                            hosts=(TOKEN.host,))
VALUE = dockerconfig([TOKEN])


def _secret(**changes):
    meta = {"name": "pull", "namespace": "ns", "uid": "s-1", "resourceVersion": "7",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {OWNER_ANNOTATION: "c/ns/pull", SHA_ANNOTATION: digest(VALUE),
                            EXPIRES_ANNOTATION: "2026-12-01T12:00:00Z"},
            "ownerReferences": [{"apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret", "name": "pull",
                                 "uid": "uid-1"}]}
    body = {"type": DOCKER_CONFIG_JSON, "metadata": meta, "data": {".dockerconfigjson": VALUE}}
    for path, value in changes.items():
        node = body
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return body


@pytest.mark.parametrize("changes, owner, fields", [
    ({}, Owner.OURS, ()),
    ({"data": {".dockerconfigjson": dockerconfig([dataclasses.replace(TOKEN, auth="ZWRpdGVk")])}},
     Owner.OURS, ("data",)),
    ({"data": {}}, Owner.OURS, ("data",)),
    ({"metadata__annotations": {}}, Owner.OURS, (f"metadata.annotations[{OWNER_ANNOTATION}]", "data")),
    ({"metadata__labels": {}}, Owner.OURS, (f"metadata.labels[{MANAGED_BY_LABEL}]",)),
    ({"metadata__annotations__" + OWNER_ANNOTATION: "c/ns/other"}, Owner.FOREIGN,
     (f"metadata.annotations[{OWNER_ANNOTATION}]",)),
    ({"metadata__annotations": {}, "metadata__ownerReferences": [{"apiVersion": "regaccess.io/v1alpha1",
      "kind": "ECRPullSecret", "name": "other", "uid": "uid-2"}]}, Owner.FOREIGN, None),
    ({"metadata__annotations": {}, "metadata__ownerReferences": [], "metadata__labels": {}}, Owner.UNMARKED, None),
    ({"type": "Opaque"}, Owner.OURS, ("type",)),
], ids=["ours-in-step", "data-edited", "data-removed", "annotations-removed-ownerref-kept", "label-removed",
        "another-mark", "another-resources-ownerref", "unmarked", "wrong-type"])
def test_secret_owner_and_differences(changes, owner, fields):
    observation = PULL_SECRETS.judge(PULL_SECRETS.facts(_secret(**changes)), DESIRED)
    assert observation.exists and observation.owner is owner
    if fields is not None:
        assert observation.fields == fields
    # No value ever reaches a difference or the facts.
    text = repr(observation)
    assert VALUE not in text and TOKEN.auth not in text


def test_new_tokens_differ_and_expiry_annotation_moves():
    fresh = dataclasses.replace(TOKEN, auth="QVdTOm5ldw==")
    desired = dataclasses.replace(DESIRED, tokens=(fresh,), expires_at="2026-12-01T18:00:00Z")
    observation = PULL_SECRETS.judge(PULL_SECRETS.facts(_secret()), desired)
    assert observation.fields == ("data", f"metadata.annotations[{EXPIRES_ANNOTATION}]")


def test_registries_changed_is_a_difference_of_the_hosts():
    desired = dataclasses.replace(DESIRED, hosts=(TOKEN.host, "222222222222.dkr.ecr.eu-west-1.amazonaws.com"))
    observation = PULL_SECRETS.judge(PULL_SECRETS.facts(_secret()), desired)
    assert observation.fields == ("data.auths",)
    assert observation.differences[0].observed == [TOKEN.host]


def test_token_repr_hides_the_credential():
    assert TOKEN.auth not in repr(TOKEN) and TOKEN.auth not in repr(DESIRED)
