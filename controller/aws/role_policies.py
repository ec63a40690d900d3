"""Reads for PullReady: a role's effective identity policies, a secret's resource policy,
a KMS key's key policy; facts only, cached.

Called by ``controller.reconcile.pull_ready``. A role's policy set is

- its inline policies (``ListRolePolicies`` + ``GetRolePolicy`` each; the operator's own
  inline grant is one of them),
- its attached managed policies at their default version (``ListAttachedRolePolicies``,
  ``GetPolicy`` for ``DefaultVersionId``, ``GetPolicyVersion``),
- and whether a permissions boundary is attached (``GetRole``; the boundary itself is not
  evaluated, so the verdict is Unknown then).

Read cost (issue 31: work proportional to change). A role's set is read at most once per
``ROLE_TTL_SECONDS`` per operator process, whichever resources share the role, and dropped
early when the operator itself writes an inline policy on it (``forget``). A managed policy
version is immutable, so its document is cached by (policy ARN, version id) with no expiry
(bounded, least recently used dropped). Secret resource policies and key policies are cached
for the same TTL by ARN. So one drift check costs on average
``(calls of a full read) * interval / ROLE_TTL_SECONDS`` reads per role (bench/pull_ready.py
prints the figure beside the baseline without PullReady).

Unreadable is a fact, not an error: an AccessDenied (or any other client error) on a read
gives ``unreadable`` with the call's name; the verdict then says Unknown. Throttling and
5xx raise (the caller keeps the previous verdict and tries at the next check).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from controller.aws.errors import THROTTLING_CODES
from controller.iam_eval import Policy

# Why 30 minutes: six drift checks at the default 300 s interval share one full read, so a
# role with one inline and one managed policy (5 calls) costs under one read per check.
ROLE_TTL_SECONDS = 1800.0
MAX_VERSIONS = 1024
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class RoleFacts:
    arn: str
    policies: tuple[Policy, ...] = ()
    boundary: str | None = None       # the permissions boundary's ARN, when one is attached
    unreadable: str | None = None     # the call that was refused; policies are then incomplete
    missing: bool = False             # the role does not exist


@dataclass(frozen=True)
class ResourcePolicy:
    document: str | None = None       # None: no policy
    unreadable: str | None = None


def _transient(error: Exception) -> bool:
    if isinstance(error, BotoCoreError):
        return True
    code = error.response.get("Error", {}).get("Code", "")  # type: ignore[attr-defined]
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)  # type: ignore[attr-defined]
    return code in THROTTLING_CODES or int(status or 0) >= 500


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def role_name(role: str) -> str:
    """``arn:aws:iam::1:role/path/name`` or ``name`` -> ``name`` (IAM's calls take the name)."""
    return role.rsplit("/", 1)[-1] if role.startswith("arn:") else role


class Cache:
    """Per-process cache of the reads above; thread-safe, bounded."""

    def __init__(self, ttl: float = ROLE_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._clock = ttl, clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._versions: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def _get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is None or self._clock() - found[0] >= self.ttl:
                return None
            return found[1]

    def _put(self, key: tuple[str, str], value: Any) -> Any:
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return value

    def forget(self, role: str) -> None:
        """The operator changed this role's inline policies: read it again next time."""
        with self._lock:
            self._entries.pop(("role", role_name(role)), None)

    def _version(self, iam: Any, arn: str, version: str) -> Any:
        with self._lock:
            if (arn, version) in self._versions:
                self._versions.move_to_end((arn, version))
                return self._versions[(arn, version)]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        with self._lock:
            self._versions[(arn, version)] = document
            while len(self._versions) > MAX_VERSIONS:
                self._versions.popitem(last=False)
        return document

    # ------------------------------------------------------------------ reads

    def role(self, iam: Any, role: str) -> RoleFacts:
        key = ("role", role_name(role))
        cached = self._get(key)
        if cached is not None:
            return cached
        return self._put(key, self._read_role(iam, role))

    def role_arn(self, iam: Any, role: str) -> str | None:
        """The ARN IAM answers for the role's name (None: no such role); one GetRole per
        name per TTL, whichever resources name it (the tenancy check of ARN-given roles)."""
        key = ("arn", role_name(role))
        cached = self._get(key)
        if cached is not None:
            return cached or None
        try:
            arn = iam.get_role(RoleName=role_name(role))["Role"]["Arn"]
        except ClientError as error:
            if _code(error) != "NoSuchEntity":
                raise  # refused or transient: the caller classifies it, and writes nothing
            arn = ""
        return self._put(key, arn) or None

    def _read_role(self, iam: Any, role: str) -> RoleFacts:
        name = role_name(role)
        arn = role if role.startswith("arn:") else ""
        step = "iam:GetRole"
        try:
            info = iam.get_role(RoleName=name)["Role"]
            arn = info.get("Arn", arn)
            boundary = (info.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
            policies: list[Policy] = []
            step = "iam:ListRolePolicies"
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
                for policy_name in page.get("PolicyNames", []):
                    step = "iam:GetRolePolicy"
                    document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
                    policies.append(Policy(f"inline policy {policy_name}", document))
            step = "iam:ListAttachedRolePolicies"
            for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
                for attached in page.get("AttachedPolicies", []):
                    policy_arn = attached["PolicyArn"]
                    step = "iam:GetPolicy"
                    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
                    step = "iam:GetPolicyVersion"
                    policies.append(Policy(f"managed policy {policy_arn}", self._version(iam, policy_arn, version)))
        except ClientError as error:
            if _transient(error):
                raise
            if _code(error) == "NoSuchEntity" and step == "iam:GetRole":
                return RoleFacts(arn=arn or name, missing=True)
            return RoleFacts(arn=arn or name, unreadable=step)
        return RoleFacts(arn=arn, policies=tuple(policies), boundary=boundary)

    def secret_policy(self, sm: Any, secret_arn: str) -> ResourcePolicy:
        key = ("secret", secret_arn)
        cached = self._get(key)
        if cached is not None:
            return cached
        try:
            document = sm.get_resource_policy(SecretId=secret_arn).get("ResourcePolicy")
            found = ResourcePolicy(document=document)
        except ClientError as error:
            if _transient(error):
                raise
            # No secret yet (regaccess plan before its create): no policy, nothing denies.
            found = ResourcePolicy() if _code(error) == "ResourceNotFoundException" else \
                ResourcePolicy(unreadable="secretsmanager:GetResourcePolicy")
        return self._put(key, found)

    def key_policy(self, kms_client: Any, key_arn: str) -> ResourcePolicy:
        key = ("key", key_arn)
        cached = self._get(key)
        if cached is not None:
            return cached
        try:
            document = kms_client.get_key_policy(KeyId=key_arn, PolicyName="default").get("Policy")
            found = ResourcePolicy(document=document)
        except ClientError as error:
            if _transient(error):
                raise
            found = ResourcePolicy(unreadable="kms:GetKeyPolicy")
        return self._put(key, found)


_CACHES: "weakref.WeakKeyDictionary[Any, Cache]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(owner: Any) -> Cache:
    """One cache per client factory (one per operator process; each test's own factory
    gets a fresh one, so a reset AWS test server is never answered from another test)."""
    with _CACHES_LOCK:
        found = _CACHES.get(owner)
        if found is None:
            found = _CACHES[owner] = Cache()
        return found


READ_ERRORS = (ClientError, BotoCoreError)
