"""ECR authorization tokens: one read, facts only (ECRPullSecret).

``fetch(ecr, registry_ids)`` calls ``GetAuthorizationToken`` once for a set of
registries of one Region and one principal and returns one ``Token`` per
registry: the registry ID and host taken from ``proxyEndpoint``, the
``expiresAt`` ECR reports, and the ``auth`` value exactly as ``docker login``
writes it into ``config.json`` (ECR's ``authorizationToken`` already is
base64("AWS:" + password)). With no registry IDs ECR answers for the
caller's own registry, which is how the default registry (the account of the
operator's identity, or of ``roleArn``) is found without an STS call.

ECR supports no resource-level permissions for this action: the IAM policy
grants ``ecr:GetAuthorizationToken`` on ``Resource: "*"``; what the token may
pull is decided by each repository's policy (CrossAccountRepoAccess).

The token is a credential: ``Token``'s repr never shows it, and the reconcile
(``controller.reconcile.pull_secret``) registers it and its password with the
log redactor the moment ``fetch`` returns (this layer never imports it). Deciding when to refresh is not done here
(``controller.reconcile.pull_secret``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import botocore.session

SERVICE = "ecr"


@dataclass(frozen=True)
class Token:
    registry_id: str
    host: str                 # <registryId>.dkr.ecr.<region>.amazonaws.com
    expires_at: dt.datetime   # as ECR reports it (UTC)
    auth: str = field(repr=False)  # base64("AWS:" + password): never logged, never in status

    def __repr__(self) -> str:  # dataclass's repr would skip auth anyway; say so explicitly
        return f"Token(registry_id={self.registry_id!r}, host={self.host!r}, expires_at={self.expires_at!r})"


def registry_host(registry_id: str, region: str, suffix: str = "amazonaws.com") -> str:
    """Pure: the registry host of an account in a Region, as images name it."""
    return f"{registry_id}.dkr.ecr.{region}.{suffix}"


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)


@functools.lru_cache(maxsize=1)
def regions() -> frozenset[str]:
    """Every Region with an ECR endpoint in botocore's bundled endpoint data (no network)."""
    session = botocore.session.get_session()
    return frozenset(region for partition in session.get_available_partitions()
                     for region in session.get_available_regions(SERVICE, partition_name=partition))


def secrets_of(token: Token) -> tuple[str, ...]:
    """Pure: the strings of a token that must never be shown (auth and the password inside)."""
    try:
        password = base64.b64decode(token.auth).decode().split(":", 1)[-1]
    except (ValueError, UnicodeDecodeError):
        password = ""
    return tuple(value for value in (token.auth, password) if value)


def fetch(ecr: Any, registry_ids: list[str] | tuple[str, ...] = ()) -> list[Token]:
    """One GetAuthorizationToken call; one Token per registry ECR answered for.

    botocore's errors propagate (the reconcile loop's classifier judges them).
    """
    kwargs: dict[str, Any] = {"registryIds": list(registry_ids)} if registry_ids else {}
    answer = ecr.get_authorization_token(**kwargs)
    tokens: list[Token] = []
    for item in answer.get("authorizationData") or []:
        auth = str(item.get("authorizationToken") or "")
        host = urlsplit(str(item.get("proxyEndpoint") or "")).hostname or ""
        tokens.append(Token(host.split(".", 1)[0], host, _utc(item.get("expiresAt") or 0), auth))
    return tokens
