"""Read a registry credential out of a Kubernetes Secret (pure).

Called by the RegistryCredential reconciler with the Secret body that the
handlers' Secret index holds. Three Secret shapes are understood:

- ``kubernetes.io/basic-auth``: keys ``username`` and ``password``;
- ``kubernetes.io/dockerconfigjson``: the ``.dockerconfigjson`` document, entry
  ``source.registry`` (or the only entry); ``username``/``password`` of the
  entry, else its base64 ``auth`` ("user:password");
- ``Opaque`` (and any other type): keys ``source.usernameKey`` /
  ``source.passwordKey``.

Errors carry a reason and a message that name keys and registries, never
values: they end up in conditions and Events.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from controller.api import reasons

BASIC_AUTH = "kubernetes.io/basic-auth"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"


@dataclass(frozen=True)
class Credential:
    """A username and password; repr never shows the password."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:  # pragma: no cover - trivial, but keep it explicit
        return f"Credential(username=<{len(self.username)} chars>, password=<redacted>)"

    __str__ = __repr__


class SourceError(Exception):
    """The source Secret cannot give a credential. ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _decode(data: dict[str, str], key: str, secret_name: str) -> str:
    if key not in data:
        raise SourceError(
            reasons.SOURCE_KEY_MISSING, f"Secret {secret_name!r} has no key {key!r}"
        )
    try:
        return base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SourceError(
            reasons.SOURCE_SECRET_INVALID,
            f"Secret {secret_name!r} key {key!r} is not base64-encoded UTF-8",
        ) from None


DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


def _normalise_registry(value: str) -> str:
    """Registry host only: 'https://index.docker.io/v1/', 'index.docker.io' and 'docker.io'
    all name Docker Hub, as docker login writes and reads them."""
    value = value.strip().lower()
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme):]
    host = value.split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB_ALIASES else host


def parse_dockerconfigjson(document: str, registry: str | None, secret_name: str) -> Credential:
    """Pick one entry of a .dockerconfigjson document (pure, fuzzed by hypothesis)."""
    try:
        config = json.loads(document)
    except (ValueError, RecursionError):
        raise SourceError(
            reasons.SOURCE_SECRET_INVALID, f"Secret {secret_name!r}: .dockerconfigjson is not JSON"
        ) from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict) or not auths:
        raise SourceError(
            reasons.SOURCE_SECRET_INVALID,
            f"Secret {secret_name!r}: .dockerconfigjson has no 'auths' entries",
        )
    if registry is None:
        if len(auths) != 1:
            raise SourceError(
                reasons.SOURCE_REGISTRY_NOT_FOUND,
                f"Secret {secret_name!r} has {len(auths)} registries in .dockerconfigjson; "
                "set spec.source.registry to choose one",
            )
        entry = next(iter(auths.values()))
    else:
        wanted = _normalise_registry(registry)
        matches = [v for k, v in auths.items() if isinstance(k, str) and _normalise_registry(k) == wanted]
        if not matches:
            raise SourceError(
                reasons.SOURCE_REGISTRY_NOT_FOUND,
                f"Secret {secret_name!r} has no .dockerconfigjson entry for registry {registry!r}",
            )
        entry = matches[0]
    if not isinstance(entry, dict):
        raise SourceError(
            reasons.SOURCE_SECRET_INVALID, f"Secret {secret_name!r}: registry entry is not an object"
        )
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return Credential(username, password)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        user, sep, pw = decoded.partition(":")
        if sep and user and pw:
            return Credential(user, pw)
    raise SourceError(
        reasons.SOURCE_KEY_MISSING,
        f"Secret {secret_name!r}: registry entry has neither username/password nor a valid "
        "'auth' (base64 of user:password)",
    )


# The data keys a Secret of a fixed type is read by (an Opaque Secret's keys are named by the
# resources that reference it: all are kept).
_NEEDED_KEYS = {DOCKER_CONFIG_JSON: (".dockerconfigjson",), BASIC_AUTH: ("username", "password")}


def needed_data(secret_type: str | None, data: dict[str, str] | None) -> dict[str, str]:
    """Pure: the part of a Secret's data the Secret index keeps: exactly what
    ``read_credential`` reads for a typed Secret, all of an Opaque one (its keys are
    ``source.usernameKey`` / ``source.passwordKey`` of whichever resources reference it, which
    the index of Secrets cannot know)."""
    data = dict(data or {})
    keys = _NEEDED_KEYS.get(secret_type or "Opaque")
    return data if keys is None else {k: v for k, v in data.items() if k in keys}


def read_credential(
    secret: dict, *, registry: str | None, username_key: str, password_key: str
) -> Credential:
    """Extract the credential from a Secret body (as the API server returns it)."""
    name = (secret.get("metadata") or {}).get("name", "?")
    data = secret.get("data") or {}
    if not isinstance(data, dict):
        raise SourceError(reasons.SOURCE_SECRET_INVALID, f"Secret {name!r} has malformed data")
    secret_type = secret.get("type") or "Opaque"
    if secret_type == DOCKER_CONFIG_JSON:
        return parse_dockerconfigjson(_decode(data, ".dockerconfigjson", name), registry, name)
    if secret_type == BASIC_AUTH:
        username_key, password_key = "username", "password"
    username = _decode(data, username_key, name)
    password = _decode(data, password_key, name)
    if not username or not password:
        raise SourceError(
            reasons.SOURCE_KEY_MISSING,
            f"Secret {name!r}: key {username_key if not username else password_key!r} is empty",
        )
    return Credential(username, password)
