"""Secrets Manager secrets: desired / compare (pure) and thin observe / write calls.

Called by ``controller.reconcile.secret``. The value is never logged or put in
an exception: callers pass it straight to boto3, and boto3's own debug logging
of request bodies is held at INFO by ``controller.logging``.

Cheap by construction: ``observe`` is one DescribeSecret (metadata and the
AWSCURRENT version ID, never the value); ``current_value`` (GetSecretValue) is
called only when the version or the source changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.api.validation import OWNER_TAG, ResolvedRegistryCredential
from controller.aws import errors
from controller.aws.base import ABSENT, Observation
from controller.sources import Credential

DESCRIPTION_DEFAULT = "Private registry credential managed by regaccess ({owner})"


@dataclass(frozen=True)
class DesiredSecret:
    name: str
    description: str
    kms_key_id: str | None
    tags: dict[str, str]

    def tag_list(self) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())]


def desired(resolved: ResolvedRegistryCredential) -> DesiredSecret:
    spec = resolved.spec.secret
    tags = dict(spec.tags)
    tags[OWNER_TAG] = resolved.owner
    return DesiredSecret(
        name=resolved.secret_name,
        description=spec.description if spec.description is not None else DESCRIPTION_DEFAULT.format(owner=resolved.owner),
        kms_key_id=spec.kmsKeyId,
        tags=tags,
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


def current_version(observed: dict[str, Any]) -> str | None:
    for version, stages in (observed.get("VersionIdsToStages") or {}).items():
        if "AWSCURRENT" in stages:
            return version
    return None


def compare(want: DesiredSecret, observed: dict[str, Any], *, kms_key_equal: bool | None = None) -> tuple[str, ...]:
    """Named differences between desired and observed metadata (never the value).

    ``kms_key_equal`` lets the caller settle KMS keys that are spelled differently
    (alias vs key ARN) after resolving both; None means compare the strings.
    """
    differences = []
    if (observed.get("Description") or "") != want.description:
        differences.append("Description")
    observed_key = observed.get("KmsKeyId")
    if kms_key_equal is None:
        kms_same = (observed_key or None) == (want.kms_key_id or None) or (
            want.kms_key_id is None and observed_key in (None, "", "alias/aws/secretsmanager")
        )
    else:
        kms_same = kms_key_equal
    if not kms_same:
        differences.append("KmsKeyId")
    have = _tags(observed)
    if any(have.get(k) != v for k, v in want.tags.items()):
        differences.append("Tags")
    return tuple(differences)


def observe(client: Any, name: str, owner: str) -> Observation:
    try:
        observed = client.describe_secret(SecretId=name)
    except Exception as error:  # noqa: BLE001 - classified below
        if errors.is_not_found(error):
            return ABSENT
        raise
    return Observation(exists=True, owned=_tags(observed).get(OWNER_TAG) == owner, observed=observed)


def create(client: Any, want: DesiredSecret, value: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "Name": want.name,
        "SecretString": value,
        "Description": want.description,
        "Tags": want.tag_list(),
    }
    if want.kms_key_id:
        request["KmsKeyId"] = want.kms_key_id
    return client.create_secret(**request)


def update_metadata(client: Any, arn: str, want: DesiredSecret, differences: tuple[str, ...],
                    observed: dict[str, Any]) -> int:
    """Touch only what differs; returns the number of write calls made."""
    writes = 0
    if "Description" in differences or "KmsKeyId" in differences:
        request: dict[str, Any] = {"SecretId": arn}
        if "Description" in differences:
            request["Description"] = want.description
        if "KmsKeyId" in differences:
            # Back to the AWS managed key when the spec no longer names one.
            request["KmsKeyId"] = want.kms_key_id or "alias/aws/secretsmanager"
        client.update_secret(**request)
        writes += 1
    if "Tags" in differences:
        have = _tags(observed)
        changed = [{"Key": k, "Value": v} for k, v in sorted(want.tags.items()) if have.get(k) != v]
        client.tag_resource(SecretId=arn, Tags=changed)
        writes += 1
    return writes


def adopt(client: Any, arn: str, owner: str) -> None:
    client.tag_resource(SecretId=arn, Tags=[{"Key": OWNER_TAG, "Value": owner}])


def current_value(client: Any, arn: str) -> str | None:
    """GetSecretValue of AWSCURRENT. Only called when the value may differ."""
    try:
        return client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as error:  # noqa: BLE001
        if errors.is_not_found(error):
            return None
        raise


def put_value(client: Any, arn: str, value: str) -> str:
    return client.put_secret_value(SecretId=arn, SecretString=value)["VersionId"]


def restore(client: Any, arn: str) -> None:
    client.restore_secret(SecretId=arn)


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
        if errors.is_not_found(error):
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
        if errors.is_not_found(error):
            return True  # gone meanwhile (the recovery window ended): deleted either way
        raise
