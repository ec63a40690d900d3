"""IAM inline policies on task execution roles that let them read the secret.

The role-policy adapter of ``controller.aws.protocol`` (``ROLE_POLICIES``),
driven by ``controller.reconcile.wiring`` through ``controller.reconcile.loop``.
Pure parts: ``desired()`` (the document), ``sid_prefix()`` / ``owner_of()``
(ownership), ``compare()`` (by meaning), ``budget_problem()`` and the role-ARN
helpers. AWS parts: the adapter's ``observe`` (one GetRolePolicy) and writes (one
PutRolePolicy / DeleteRolePolicy each), ``other_policy_sizes`` (the budget
reads, made only when a put is due) and ``role_exists``.

Ownership: inline policies carry no tags, so the mark is inside the document.
Every statement's Sid starts with the owner's Sid prefix, derived from the owner
mark ``<cluster-id>/<namespace>/<name>`` by the one rule of ``controller.aws.marks``
(readable part + 128 bits of HMAC-SHA256 keyed with the cluster id + ``Z``, so no
prefix is a prefix of another's). A same-named policy is OURS when its statements
carry our prefix, FOREIGN when any carries another regaccess prefix, UNMARKED without
a mark. Migration from the 40-bit marks of earlier versions: a policy carrying this
owner's old mark (``legacy_sid_prefix``) is ours and outdated when status records it
(``RolePolicy.recorded``), rewritten once with the new mark and not drift when that
mark is its only difference; without the record the old mark proves nothing (it is
forgeable) and the policy is UNMARKED. A policy written before marks existed has the
Sids ``ReadRegistryCredential`` / ``DecryptRegistryCredential``; exactly that document
for this resource's secret ARN (and KMS key ARN) is recognised as ours and
reported as different, so the next write gives it the marked Sids
(docs/adopting.md). Likewise a marked document as versions before the KMS
conditions wrote it (``kms:Decrypt`` without ``kms:ViaService`` /
``kms:EncryptionContext:SecretARN``) is ours and outdated: rewritten once, and
not drift (``Observed.legacy``).

This module reports facts; adoption, conflicts and drift are decided in
``controller.reconcile.loop``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from controller.aws import marks, policydoc
from controller.aws.errors import is_not_found
from controller.aws.protocol import ABSENT, Action, Difference, Observation, Owner, Written, owner_of_mark

POLICY_VERSION = "2012-10-17"
SECRET_ACTION = "secretsmanager:GetSecretValue"
KMS_ACTION = "kms:Decrypt"
# The statements' names. Alone they are the Sids written before ownership marks
# (the migration rule recognises them); marked Sids are <owner's Sid prefix> + these.
SECRET_SID = "ReadRegistryCredential"
KMS_SID = "DecryptRegistryCredential"
# IAM: all inline policies of one role share 10,240 characters, whitespace not counted.
INLINE_BUDGET = 10_240
DOCUMENT_FIELD = "PolicyDocument"

ROLE_MISSING_MESSAGE = "role {role} does not exist"
BUDGET_MESSAGE = (
    "role {role}: its other inline policies use {others} of {limit} characters and ours needs "
    "{ours}; IAM would reject the policy. Remove or shrink inline policies on the role, or "
    "grant another role"
)
ACCOUNT_MISMATCH_MESSAGE = (
    "role {role} is in account {role_account}, but the secret lives in account "
    "{secret_account}; an inline policy can only be put on a role of the account the "
    "operator acts in"
)

_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::(?P<account>[0-9]{12}):role/(?:.*/)?(?P<name>[^/]+)$")
_SECRET_REGION = re.compile(r"^arn:aws[a-zA-Z-]*:secretsmanager:(?P<region>[a-z0-9-]+):")
# Secrets Manager calls KMS on the caller's behalf from this endpoint (kms:ViaService), and
# always with the secret's ARN in the encryption context under this key (AWS: "How Secrets
# Manager uses AWS KMS", encryption context).
VIA_SERVICE = "secretsmanager.{region}.amazonaws.com"
VIA_SERVICE_KEY = "kms:ViaService"
CONTEXT_KEY = "kms:EncryptionContext:SecretARN"
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-zA-Z-]*:[a-z0-9-]+:[a-z0-9-]*:(?P<account>[0-9]{12}):")
# The shape of any owner's Sid prefix, current or legacy (controller.aws.marks). A Sid
# that merely starts with the head ("RegaccessNotes") is no mark.
_SID_MARK = marks.ANY_MARK


class RoleMissing(Exception):
    """The role itself does not exist (as opposed to our policy missing on it)."""

    def __init__(self, role: str) -> None:
        super().__init__(ROLE_MISSING_MESSAGE.format(role=role))
        self.role = role


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class RoleRef:
    """One entry of grants.executionRoles, normalised."""

    name: str              # what IAM's RoleName parameters take (the path is not part of it)
    account: str | None    # only known when the entry is an ARN
    given: str             # as written in the spec, for messages


def role_ref(role: str) -> RoleRef:
    """Normalise a role name or role ARN (with or without a path) to its name."""
    match = _ROLE_ARN.match(role)
    if match:
        return RoleRef(name=match["name"], account=match["account"], given=role)
    return RoleRef(name=role, account=None, given=role)


def arn_account(arn: str | None) -> str | None:
    match = _ARN_ACCOUNT.match(arn or "")
    return match["account"] if match else None


def account_problem(ref: RoleRef, secret_arn: str) -> str | None:
    """A role ARN in another account than the secret's cannot be granted by this operator."""
    secret_account = arn_account(secret_arn)
    if ref.account and secret_account and ref.account != secret_account:
        return ACCOUNT_MISMATCH_MESSAGE.format(
            role=ref.given, role_account=ref.account, secret_account=secret_account
        )
    return None


def sid_prefix(owner: str) -> str:
    """The Sid prefix that marks our statements, from the owner mark cluster/namespace/name.

    The one rule of ``controller.aws.marks`` (as for ECR statements): the keyed hash
    covers cluster id, namespace and name, so two clusters sharing an account never
    take each other's policy for their own.
    """
    return marks.owner_sid_prefix(owner)


def legacy_sid_prefix(owner: str) -> str:
    """The 40-bit mark versions before keyed marks gave this owner's Sids (the hash of
    the whole owner mark, the readable part of ``<cluster-id>/<namespace>`` and name)."""
    scope, _, name = owner.rpartition("/")
    return marks.legacy_mark(scope, name)


def remarked(document: str | dict[str, Any] | None, old: str, new: str) -> dict[str, Any]:
    """The document with every Sid carrying the mark ``old`` carrying ``new`` instead."""
    doc = dict(policydoc.parse(document))
    doc["Statement"] = [
        {**s, "Sid": marks.remarked(s["Sid"], old, new)} if isinstance(s, dict) and isinstance(s.get("Sid"), str) else s
        for s in policydoc.statements(doc)
    ]
    return doc


def secret_region(secret_arn: str | None) -> str | None:
    match = _SECRET_REGION.match(secret_arn or "")
    return match["region"] if match else None


def kms_condition(secret_arn: str) -> dict[str, Any] | None:
    """The condition on kms:Decrypt: only through Secrets Manager in the secret's region, and
    only for this secret (its ARN in the encryption context). None when the ARN names no
    region (not yet known): the statement is then written without one."""
    region = secret_region(secret_arn)
    if region is None:
        return None
    return {"StringEquals": {VIA_SERVICE_KEY: VIA_SERVICE.format(region=region), CONTEXT_KEY: secret_arn}}


def desired(secret_arn: str, kms_key_arn: str | None = None, owner: str | None = None, *,
            kms_conditions: bool = True) -> dict[str, Any]:
    """The policy document: read exactly this secret (and decrypt with exactly its CMK, only
    through Secrets Manager, only for this secret).

    With ``owner`` every Sid carries its Sid prefix (what the operator writes). Without,
    the document as versions before ownership marks wrote it: the migration rule
    recognises exactly that one as ours. ``kms_conditions=False`` gives the document as
    versions before the KMS conditions wrote it (recognised as outdated, not drift)."""
    prefix = sid_prefix(owner) if owner else ""
    statements: list[dict[str, Any]] = [
        {"Sid": prefix + SECRET_SID, "Effect": "Allow", "Action": SECRET_ACTION, "Resource": secret_arn}
    ]
    if kms_key_arn:
        statement: dict[str, Any] = {"Sid": prefix + KMS_SID, "Effect": "Allow", "Action": KMS_ACTION,
                                     "Resource": kms_key_arn}
        condition = kms_condition(secret_arn) if kms_conditions else None
        if condition:
            statement["Condition"] = condition
        statements.append(statement)
    return {"Version": POLICY_VERSION, "Statement": statements}


def compare(want: dict[str, Any], observed: str | dict[str, Any] | None) -> tuple[str, ...]:
    """Named differences; documents are compared by meaning (order, string-vs-list, case)."""
    return () if policydoc.equivalent(want, observed) else (DOCUMENT_FIELD,)


def without_sids(document: str | dict[str, Any] | None) -> dict[str, Any]:
    """The document with every statement's Sid dropped: what it grants, not whose it is."""
    doc = dict(policydoc.parse(document))
    doc["Statement"] = [{k: v for k, v in s.items() if k != "Sid"} for s in policydoc.statements(doc)]
    return doc


def same_grants(a: str | dict[str, Any] | None, b: str | dict[str, Any] | None) -> bool:
    """Do two documents grant the same, whatever their Sids say about ownership?"""
    return policydoc.equivalent(without_sids(a), without_sids(b))


def sid_marks(document: str | dict[str, Any] | None) -> set[str]:
    """The owners' Sid prefixes found on the document's statements (our own included)."""
    found = set()
    for statement in policydoc.statements(document):
        sid = statement.get("Sid") if isinstance(statement, dict) else None
        match = _SID_MARK.match(sid) if isinstance(sid, str) else None
        if match:
            found.add(match.group(0))
    return found


def owner_of(document: str | dict[str, Any] | None, owner: str,
             legacy: dict[str, Any] | None = None, recorded: bool = False) -> tuple[Owner, str | None]:
    """Pure: whose an existing same-named policy is, and the mark that says so.

    Another owner's Sid prefix on any statement makes it FOREIGN (never ours to
    write, even beside our own statements); our prefix makes it OURS; so does our
    legacy (40-bit) mark when status records the policy as ours (``recorded``), and
    the pre-mark document ``legacy`` exactly (the migration rules); anything else is
    UNMARKED (a person's or another tool's policy). Our legacy mark without the record
    is UNMARKED too: being forgeable, it proves nothing on its own."""
    ours = sid_prefix(owner)
    old = legacy_sid_prefix(owner)
    found = sid_marks(document)
    others = sorted(found - {ours, old})
    # Another owner's mark wins over ours: one of its statements would be overwritten.
    if others:
        return Owner.FOREIGN, others[0]
    if ours in found:
        return Owner.OURS, ours
    if old in found:
        return (Owner.OURS, old) if recorded else (Owner.UNMARKED, None)
    if legacy is not None and policydoc.equivalent(legacy, document):
        return Owner.OURS, None
    return owner_of_mark(None, ours), None


def outdated(desired: "RolePolicy", document: str | dict[str, Any] | None, owner: Owner, mark: str | None) -> bool:
    """Pure: is this our policy as an earlier version wrote it (before marks, under the
    legacy 40-bit mark, or marked but before the KMS conditions)? Its rewrite is our own
    change, never drift. Under the legacy mark only when that mark is the only
    difference: anything else changed in it is drift like in any policy of ours."""
    if owner is not Owner.OURS:
        return False
    if mark is None:
        return True
    ours = sid_prefix(desired.owner)
    if mark != ours:
        document = remarked(document, mark, ours)
        if policydoc.equivalent(desired.document, document):
            return True
    return desired.previous is not None and policydoc.equivalent(desired.previous, document)


def budget_problem(role: str, other_sizes: list[int], ours: int, limit: int = INLINE_BUDGET) -> str | None:
    """None when our policy fits next to the role's other inline policies, else why not."""
    others = sum(other_sizes)
    if others + ours > limit:
        return BUDGET_MESSAGE.format(role=role, others=others, ours=ours, limit=limit)
    return None


# --------------------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class RolePolicy:
    """The desired state of one inline policy on one role."""

    role: str                  # RoleName
    policy: str                # PolicyName (grants.policyName)
    owner: str                 # <cluster-id>/<namespace>/<name>
    document: dict[str, Any]   # desired(..., owner=owner): what a put writes
    # The pre-mark document for the same secret and key (migration), None when unknown.
    legacy: dict[str, Any] | None = None
    # Our marked document as written before the KMS conditions (None: it equals ``document``).
    previous: dict[str, Any] | None = None
    # Status records this policy as ours: only then is our legacy (forgeable) mark accepted.
    recorded: bool = False


@dataclass(frozen=True)
class Observed:
    """Facts of an existing policy the writes and the step need."""

    document: dict[str, Any]
    # Ours as an earlier version wrote it (not yet marked, or without the KMS conditions):
    # the rewrite is our own change, never drift.
    legacy: bool = False


def role_policy(role: str, policy: str, owner: str, secret_arn: str | None,
                kms_key_arn: str | None = None, *, recorded: bool = False) -> RolePolicy:
    """Pure: the desired value for one role. The legacy document is for the same secret
    and key (unknown, None, when the secret ARN is); ``recorded``: status has a row for
    this role's policy."""
    document = desired(secret_arn or "", kms_key_arn, owner)
    previous = desired(secret_arn or "", kms_key_arn, owner, kms_conditions=False)
    return RolePolicy(role=role, policy=policy, owner=owner, document=document,
                      legacy=desired(secret_arn, kms_key_arn, kms_conditions=False) if secret_arn else None,
                      previous=previous if previous != document else None, recorded=recorded)


class RolePolicies:
    """Adapter of ``controller.aws.protocol.Kind`` for IAM inline role policies."""

    kind = "rolePolicy"
    service = "iam"

    def label(self, desired: RolePolicy) -> str:
        return f"inline policy {desired.policy} on role {desired.role}"

    def observe(self, client: Any, desired: RolePolicy) -> Observation:
        """One GetRolePolicy. NoSuchEntity is absent: the policy, or the role itself (IAM
        says the same for both; the budget check's ListRolePolicies, made before any put,
        tells a missing role apart, so no GetRole here)."""
        try:
            response = client.get_role_policy(RoleName=desired.role, PolicyName=desired.policy)
        except ClientError as error:
            if is_not_found(error, "iam"):
                return ABSENT
            raise
        document = policydoc.parse(response.get("PolicyDocument"))
        owner, mark = owner_of(document, desired.owner, desired.legacy, desired.recorded)
        legacy = outdated(desired, document, owner, mark)
        differences: tuple[Difference, ...] = ()
        if compare(desired.document, document):
            differences = (Difference(DOCUMENT_FIELD, document, desired.document),)
        return Observation(exists=True, owner=owner, differences=differences,
                           observed=Observed(document, legacy), mark=mark, outdated=legacy)

    def _put(self, client: Any, desired: RolePolicy) -> Written:
        try:
            client.put_role_policy(RoleName=desired.role, PolicyName=desired.policy,
                                   PolicyDocument=policydoc.dumps(desired.document))
        except ClientError as error:
            # Deleted between the budget check and the put: the same as missing from the start.
            if is_not_found(error, "iam"):
                raise RoleMissing(desired.role) from None
            raise
        return Written(1)

    def create(self, client: Any, desired: RolePolicy, observation: Observation) -> Written:
        return self._put(client, desired)

    def update(self, client: Any, desired: RolePolicy, observation: Observation) -> Written:
        return self._put(client, desired)

    def adopt(self, client: Any, desired: RolePolicy, observation: Observation) -> Written:
        # Taking a policy over is writing our marked document over it.
        return self._put(client, desired)

    def delete(self, client: Any, desired: RolePolicy, observation: Observation) -> Written:
        """Remove the policy; NotFound (policy or role gone) means done."""
        try:
            client.delete_role_policy(RoleName=desired.role, PolicyName=desired.policy)
        except ClientError as error:
            if is_not_found(error, "iam"):
                return Written(1, {"removed": False})
            raise
        return Written(1, {"removed": True})

    def predict(self, desired: RolePolicy, observation: Observation, action: Action) -> Written:
        return Written(1, {"removed": True} if action is Action.DELETE else {})


ROLE_POLICIES = RolePolicies()


# --------------------------------------------------------------------------- other AWS reads


def role_exists(client: Any, role_name: str) -> bool:
    try:
        client.get_role(RoleName=role_name)
    except ClientError as error:
        if is_not_found(error, "iam"):
            return False
        raise
    return True


def other_policy_sizes(client: Any, role_name: str, policy_name: str) -> list[int]:
    """Sizes (IAM's count) of every inline policy on the role except ours. Reads only.

    Raises RoleMissing when the role does not exist (ListRolePolicies' NoSuchEntity
    can only mean the role)."""
    sizes = []
    try:
        pages = list(client.get_paginator("list_role_policies").paginate(RoleName=role_name))
    except ClientError as error:
        if is_not_found(error, "iam"):
            raise RoleMissing(role_name) from None
        raise
    for page in pages:
        for name in page.get("PolicyNames", []):
            if name == policy_name:
                continue
            try:
                document = client.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
            except ClientError as error:
                # Deleted between list and get: it no longer uses budget.
                if is_not_found(error, "iam"):
                    continue
                raise
            sizes.append(policydoc.size(policydoc.parse(document)))
    return sizes


