"""Secrets Manager secrets: the secret kind's adapter of ``controller.aws.protocol``.

``SECRET`` (a ``SecretKind``) is what ``controller.reconcile.secret`` hands to
the loop (``controller.reconcile.loop``). It reports facts and makes thin calls;
whether to create, adopt, update, only report or refuse is the loop's decision.

- ``observe``: one DescribeSecret (metadata, tags and the AWSCURRENT version ID,
  never the value). GetSecretValue only when the value may differ: AWSCURRENT
  is not the version status recorded, or the source Secret changed, and it is
  not the version already reported as different (versions never change), and only
  of our own secret (an unmarked one's value is compared when it is adopted;
  another owner's is never read). A KMS key spelled
  differently in AWS (key ARN) and in the spec (alias) is settled with the key
  ARN the caller resolved before, so a drift check makes no KMS call.
- The owner is the tag ``regaccess.io/owner`` (``owner_of_mark``).
- Differences are ``Difference(path, observed, desired)`` with the paths
  ``DeletedDate`` (scheduled for deletion: restored first), ``Description``,
  ``KmsKeyId``, ``Tags`` and ``SecretString``. The value itself never appears in
  a difference, an exception or a repr: ``"<value>"`` stands for it.
- Writes touch only what differs, so a no-op resync writes nothing and the same
  value written again makes no new version.

The value is passed straight to boto3, and boto3's own debug logging of request
bodies is held at INFO by ``controller.logging``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from controller.api.validation import ResolvedRegistryCredential
from controller.aws.clients import Clients
from controller.aws import errors, kms
from controller.aws.protocol import (
    ABSENT,
    OWNER_TAG,
    Action,
    Difference,
    Observation,
    Owner,
    Written,
    owner_of_mark,
)
from controller.sources import Credential

SERVICE = "secretsmanager"
KIND = "secret"
DESCRIPTION_DEFAULT = "Private registry credential managed by regaccess ({owner})"
AWS_MANAGED_KEY = "alias/aws/secretsmanager"
# Stands for a secret value wherever a value would be shown (plan, differences).
VALUE = "<value>"
# What ``predict`` answers for what AWS assigns on create (``regaccess plan``).
PENDING_ARN = "<ARN of secret {name}, assigned when it is created>"
PENDING_VERSION = "<new version>"

FIELD_DELETED = "DeletedDate"
FIELD_DESCRIPTION = "Description"
FIELD_KMS = "KmsKeyId"
FIELD_TAGS = "Tags"
FIELD_VALUE = "SecretString"
METADATA_FIELDS = (FIELD_DESCRIPTION, FIELD_KMS)


@dataclass(frozen=True)
class DesiredSecret:
    name: str
    description: str
    kms_key_id: str | None
    tags: dict[str, str]
    # The SecretString wanted; None: do not compare the value (deleting, planning without it).
    # Kept out of repr and equality so it cannot leak into a log line or a test diff.
    value: str | None = field(default=None, repr=False, compare=False)
    # status.secretVersionId: the AWSCURRENT version we last wrote or found equal.
    known_version: str | None = None
    # The source Secret changed since the last sync: the value must be compared.
    source_changed: bool = True
    # status.reportedSecretVersionId: a version already found to differ (driftPolicy Report).
    reported_version: str | None = None
    # The key ARN kms_key_id resolves to (resolved once by the caller, carried in status).
    kms_key_arn: str | None = None
    recovery_window_days: int | None = None
    force_delete: bool = False

    @property
    def owner(self) -> str:
        return self.tags[OWNER_TAG]

    def tag_list(self) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())]


@dataclass(frozen=True)
class SecretFacts:
    """``Observation.observed`` of a secret: what the writes and the caller need."""

    described: dict[str, Any]
    # True/False: GetSecretValue was called and the value differs / is equal; None: not read.
    value_differs: bool | None = None

    @property
    def arn(self) -> str:
        return self.described["ARN"]

    @property
    def version(self) -> str | None:
        return current_version(self.described)


def desired(resolved: ResolvedRegistryCredential, *, value: str | None = None, known_version: str | None = None,
            source_changed: bool = True, kms_key_arn: str | None = None,
            reported_version: str | None = None) -> DesiredSecret:
    spec = resolved.spec.secret
    tags = dict(spec.tags)
    tags[OWNER_TAG] = resolved.owner
    return DesiredSecret(
        name=resolved.secret_name,
        description=spec.description if spec.description is not None else DESCRIPTION_DEFAULT.format(owner=resolved.owner),
        kms_key_id=spec.kmsKeyId,
        tags=tags,
        value=value,
        known_version=known_version,
        source_changed=source_changed,
        kms_key_arn=kms_key_arn,
        reported_version=reported_version,
        recovery_window_days=spec.recoveryWindowInDays,
        force_delete=bool(spec.forceDeleteWithoutRecovery),
    )


def secret_string(credential: Credential, *, pull_through_cache: bool) -> str:
    """The SecretString AWS expects: ECS/Batch want username/password, ECR's
    pull-through cache wants username/accessToken."""
    key = "accessToken" if pull_through_cache else "password"
    return json.dumps({"username": credential.username, key: credential.password}, separators=(",", ":"))


def same_value(a: str | None, b: str | None) -> bool:
    """Compare two SecretStrings by meaning (JSON key order and spacing do not matter)."""
    if a is None or b is None:
        return a == b
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return a == b


def _tags(observed: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in observed.get("Tags") or []}


def mark_of(described: dict[str, Any]) -> str | None:
    """The owner mark a described secret carries (None: unmarked)."""
    return _tags(described).get(OWNER_TAG) or None


def current_version(observed: dict[str, Any]) -> str | None:
    for version, stages in (observed.get("VersionIdsToStages") or {}).items():
        if "AWSCURRENT" in stages:
            return version
    return None


def compare(want: DesiredSecret, observed: dict[str, Any], *, kms_key_equal: bool | None = None) -> tuple[str, ...]:
    """Names of the metadata fields that differ (never the value).

    ``kms_key_equal`` lets the caller settle KMS keys that are spelled differently
    (alias vs key ARN) after resolving both; None means compare the strings.
    """
    found = []
    if (observed.get("Description") or "") != want.description:
        found.append(FIELD_DESCRIPTION)
    observed_key = observed.get("KmsKeyId")
    if kms_key_equal is None:
        kms_same = (observed_key or None) == (want.kms_key_id or None) or (
            want.kms_key_id is None and observed_key in (None, "", AWS_MANAGED_KEY)
        )
    else:
        kms_same = kms_key_equal
    if not kms_same:
        found.append(FIELD_KMS)
    have = _tags(observed)
    if any(have.get(k) != v for k, v in want.tags.items()):
        found.append(FIELD_TAGS)
    return tuple(found)


def kms_settled(want: DesiredSecret, observed_key: str | None) -> bool | None:
    """Pure: True when the observed key is the resolved key ARN; None when the strings decide
    (or a KMS lookup is needed: see ``SecretKind.observe``)."""
    if want.kms_key_id and observed_key not in (None, want.kms_key_id) and want.kms_key_arn \
            and observed_key == want.kms_key_arn:
        return True
    return None


def value_may_differ(want: DesiredSecret, described: dict[str, Any]) -> bool:
    """Pure: is a GetSecretValue due? Only when AWSCURRENT is not the version we know
    or the source Secret changed (the call budget: a steady state never reads the value)."""
    if want.value is None:
        return False
    if described.get(FIELD_DELETED):
        # GetSecretValue is refused while the secret is scheduled for deletion; the
        # update restores it first and compares the value then.
        return False
    version = current_version(described)
    return version is None or version != want.known_version or want.source_changed


def known_to_differ(want: DesiredSecret, described: dict[str, Any]) -> bool:
    """Pure: AWSCURRENT is the version already found to differ (and reported), for the same
    source value. A Secrets Manager version never changes, so it still differs: no read."""
    return (want.reported_version is not None and not want.source_changed
            and current_version(described) == want.reported_version)


def observation_of(want: DesiredSecret, described: dict[str, Any], *, value_differs: bool | None = None,
                   kms_key_equal: bool | None = None) -> Observation:
    """Pure: the Observation of a described secret (owner from its tag, named differences)."""
    mark = mark_of(described)
    owner = owner_of_mark(mark, want.owner)
    found: list[Difference] = []
    if described.get(FIELD_DELETED):
        found.append(Difference(FIELD_DELETED, str(described[FIELD_DELETED]), None))
    have = _tags(described)
    for name in compare(want, described, kms_key_equal=kms_key_equal):
        if name == FIELD_DESCRIPTION:
            found.append(Difference(name, described.get("Description"), want.description))
        elif name == FIELD_KMS:
            found.append(Difference(name, described.get("KmsKeyId"), want.kms_key_id or AWS_MANAGED_KEY))
        else:
            wanted = {k: v for k, v in sorted(want.tags.items()) if have.get(k) != v}
            found.append(Difference(name, {k: have.get(k) for k in wanted}, wanted))
    if value_differs:
        found.append(Difference(FIELD_VALUE, VALUE, VALUE))
    return Observation(exists=True, owner=owner, differences=tuple(found),
                       observed=SecretFacts(described, value_differs), mark=mark)


def _read_value(client: Any, arn: str) -> str | None:
    """GetSecretValue of AWSCURRENT (None when there is none)."""
    try:
        return client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as error:  # noqa: BLE001 - classified below
        if errors.is_not_found(error, SERVICE):
            return None
        raise


class SecretKind:
    """The adapter of one Secrets Manager secret. ``client`` is a ``Clients`` (service -> client):
    observe may need KMS to settle a key spelled differently."""

    kind = KIND
    service = SERVICE

    def label(self, want: DesiredSecret) -> str:
        return f"secret {want.name!r}"

    def observe(self, clients: Clients, want: DesiredSecret) -> Observation:
        client = clients(SERVICE)
        try:
            described = client.describe_secret(SecretId=want.name)
        except Exception as error:  # noqa: BLE001 - NotFound is "absent", the rest propagates
            if errors.is_not_found(error, SERVICE):
                return ABSENT
            raise
        owner = owner_of_mark(mark_of(described), want.owner)
        if owner is Owner.FOREIGN:
            # Another owner's secret: nothing of it is ours to compare, least of all its value.
            return observation_of(want, described)
        observed_key = described.get("KmsKeyId")
        kms_equal = kms_settled(want, observed_key)
        if kms_equal is None and want.kms_key_id and observed_key not in (None, want.kms_key_id):
            # Spelled differently and not the key ARN we resolved: ask KMS once (rare).
            kms_equal = kms.describe(clients("kms"), observed_key).arn == want.kms_key_arn
        value_differs = None
        if owner is Owner.OURS and value_may_differ(want, described):
            # An unmarked secret's value is read only if it is adopted (see update).
            value_differs = known_to_differ(want, described) or not same_value(
                _read_value(client, described["ARN"]), want.value)
        return observation_of(want, described, value_differs=value_differs, kms_key_equal=kms_equal)

    def create(self, clients: Clients, want: DesiredSecret, observation: Observation) -> Written:
        if want.value is None:
            raise ValueError("creating a secret needs its value")
        request: dict[str, Any] = {
            "Name": want.name,
            "SecretString": want.value,
            "Description": want.description,
            "Tags": want.tag_list(),
        }
        if want.kms_key_id:
            request["KmsKeyId"] = want.kms_key_id
        # boto3 fills ClientRequestToken once per call, so its own retries stay idempotent.
        created = clients(SERVICE).create_secret(**request)
        return Written(1, {"arn": created["ARN"], "versionId": created.get("VersionId"), "created": True})

    def update(self, clients: Clients, want: DesiredSecret, observation: Observation) -> Written:
        """Touch only what differs: restore, UpdateSecret, TagResource, PutSecretValue."""
        client = clients(SERVICE)
        facts: SecretFacts = observation.observed
        arn = facts.arn
        fields = set(observation.fields)
        calls = 0
        done: list[str] = []
        value_differs = facts.value_differs
        if FIELD_DELETED in fields:
            # Ours and scheduled for deletion (the resource was deleted and created again):
            # restore it, or every other write fails with InvalidRequestException.
            client.restore_secret(SecretId=arn)
            calls += 1
            done.append(FIELD_DELETED)
        if want.value is not None and value_differs is None and (
                FIELD_DELETED in fields or observation.owner is not Owner.OURS):
            # Not read by observe: it could not be while the secret was scheduled for
            # deletion, and an unmarked secret's value is read only once it is adopted.
            value_differs = not same_value(_read_value(client, arn), want.value)
        if fields.intersection(METADATA_FIELDS):
            request: dict[str, Any] = {"SecretId": arn}
            if FIELD_DESCRIPTION in fields:
                request["Description"] = want.description
            if FIELD_KMS in fields:
                # Back to the AWS managed key when the spec no longer names one.
                request["KmsKeyId"] = want.kms_key_id or AWS_MANAGED_KEY
            client.update_secret(**request)
            calls += 1
            done += [name for name in METADATA_FIELDS if name in fields]
        if FIELD_TAGS in fields:
            have = _tags(facts.described)
            changed = [{"Key": k, "Value": v} for k, v in sorted(want.tags.items()) if have.get(k) != v]
            client.tag_resource(SecretId=arn, Tags=changed)
            calls += 1
            done.append(FIELD_TAGS)
        version = facts.version
        if value_differs:
            version = client.put_secret_value(SecretId=arn, SecretString=want.value)["VersionId"]
            calls += 1
            done.append(FIELD_VALUE)
        return Written(calls, {"arn": arn, "versionId": version, "fields": tuple(done)})

    def adopt(self, clients: Clients, want: DesiredSecret, observation: Observation) -> Written:
        # An unmarked secret lacks our owner tag, so its Tags difference carries the mark:
        # adopting is the same touch-what-differs update.
        return self.update(clients, want, observation)

    def delete(self, clients: Clients, want: DesiredSecret, observation: Observation) -> Written:
        facts: SecretFacts | None = observation.observed
        if facts is not None and facts.described.get(FIELD_DELETED) and not want.force_delete:
            return Written(0)  # already scheduled for deletion: nothing left to do
        delete(clients(SERVICE), facts.arn if facts is not None else want.name,
               recovery_window_days=want.recovery_window_days, force=want.force_delete)
        return Written(1)

    def predict(self, want: DesiredSecret, observation: Observation, action: Action) -> Written:
        """What a write would return (``regaccess plan``): placeholders for what AWS assigns."""
        if action is Action.CREATE:
            return Written(1, {"arn": PENDING_ARN.format(name=want.name), "versionId": PENDING_VERSION,
                               "created": True})
        if action is Action.DELETE:
            return Written(1)
        facts: SecretFacts = observation.observed
        fields = set(observation.fields)
        paths = tuple(d.path for d in observation.differences)
        if want.value is not None and facts.value_differs is None and (
                FIELD_DELETED in fields or observation.owner is not Owner.OURS):
            # update() compares the value only then (restored, or adopted): it may be written.
            fields.add(FIELD_VALUE)
            paths += (FIELD_VALUE,)
        calls = sum((FIELD_DELETED in fields, bool(fields.intersection(METADATA_FIELDS)), FIELD_TAGS in fields,
                     FIELD_VALUE in fields))
        version = PENDING_VERSION if FIELD_VALUE in fields else facts.version
        return Written(calls, {"arn": facts.arn, "versionId": version, "fields": paths})


SECRET = SecretKind()


def delete(client: Any, arn: str, *, recovery_window_days: int | None, force: bool) -> None:
    """DeleteSecret; a secret already gone, or already scheduled for deletion, is done.

    The second case is botocore's retry of our own DeleteSecret whose first answer
    was lost (a 5xx, a throttle, a closed connection): Secrets Manager refuses a
    second deletion with InvalidRequestException. One DescribeSecret tells that
    apart from a real refusal.
    """
    request: dict[str, Any] = {"SecretId": arn}
    if force:
        request["ForceDeleteWithoutRecovery"] = True
    elif recovery_window_days is not None:
        request["RecoveryWindowInDays"] = recovery_window_days
    try:
        client.delete_secret(**request)
    except Exception as error:  # noqa: BLE001
        if errors.is_not_found(error, SERVICE):
            return
        if _code(error) == "InvalidRequestException" and _scheduled_for_deletion(client, arn):
            return
        raise


def _code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None


def _scheduled_for_deletion(client: Any, arn: str) -> bool:
    try:
        return bool(client.describe_secret(SecretId=arn).get("DeletedDate"))
    except Exception as error:  # noqa: BLE001
        if errors.is_not_found(error, SERVICE):
            return True  # gone meanwhile (the recovery window ended): deleted either way
        raise
