"""KMS keys: resolve a key ID, key ARN, alias name or alias ARN to the key ARN.

Called by ``controller.reconcile.wiring`` (and usable by the secret step): an
IAM ``kms:Decrypt`` statement must name the key ARN exactly, never an alias
(IAM does not resolve aliases in ``Resource``) and never a wildcard. Read-only:
the operator never creates or changes KMS keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_KEY_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")


@dataclass(frozen=True)
class KeyInfo:
    arn: str
    # False for AWS managed keys (aws/secretsmanager): every principal in the account
    # that may read the secret may use them, so no kms:Decrypt grant is needed.
    customer_managed: bool


def is_key_arn(value: str | None) -> bool:
    """True for a full key ARN (not an alias ARN, not a bare key ID)."""
    return bool(value) and bool(_KEY_ARN.match(value or ""))


def describe(client: Any, key_id: str) -> KeyInfo:
    """One describe_key call; raises botocore's NotFoundException for an unknown key or alias."""
    metadata = client.describe_key(KeyId=key_id)["KeyMetadata"]
    return KeyInfo(arn=metadata["Arn"], customer_managed=metadata.get("KeyManager") == "CUSTOMER")
