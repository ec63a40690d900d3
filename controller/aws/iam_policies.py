"""IAM inline policies on task execution roles that let them read the secret.

Called by ``controller.reconcile.wiring`` (``sync_role_policies`` /
``delete_role_policies``). Follows ``controller.aws.base``: ``desired()`` and
``compare()`` are pure; ``observe``/``put``/``delete`` are one boto3 call each;
the budget check reads the role's other inline policies and is called only
when a write is actually needed, so a no-op resync costs one read per role.

Inline policies carry no tags; the policy *name* (``grants.policyName``,
default ``regaccess-<namespace>-<name>``) is what marks a policy as ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from controller.aws import policydoc
from controller.aws.base import ABSENT, Observation
from controller.aws.errors import is_not_found

POLICY_VERSION = "2012-10-17"
SECRET_ACTION = "secretsmanager:GetSecretValue"
KMS_ACTION = "kms:Decrypt"
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
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-zA-Z-]*:[a-z0-9-]+:[a-z0-9-]*:(?P<account>[0-9]{12}):")


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


def desired(secret_arn: str, kms_key_arn: str | None = None) -> dict[str, Any]:
    """The policy document: read exactly this secret (and decrypt with exactly its CMK)."""
    statements: list[dict[str, Any]] = [
        {"Sid": SECRET_SID, "Effect": "Allow", "Action": SECRET_ACTION, "Resource": secret_arn}
    ]
    if kms_key_arn:
        statements.append(
            {"Sid": KMS_SID, "Effect": "Allow", "Action": KMS_ACTION, "Resource": kms_key_arn}
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def compare(want: dict[str, Any], observed: str | dict[str, Any] | None) -> tuple[str, ...]:
    """Named differences; documents are compared by meaning (order, string-vs-list, case)."""
    return () if policydoc.equivalent(want, observed) else (DOCUMENT_FIELD,)


def budget_problem(role: str, other_sizes: list[int], ours: int, limit: int = INLINE_BUDGET) -> str | None:
    """None when our policy fits next to the role's other inline policies, else why not."""
    others = sum(other_sizes)
    if others + ours > limit:
        return BUDGET_MESSAGE.format(role=role, others=others, ours=ours, limit=limit)
    return None


# --------------------------------------------------------------------------- AWS calls


def role_exists(client: Any, role_name: str) -> bool:
    try:
        client.get_role(RoleName=role_name)
    except ClientError as error:
        if is_not_found(error, "iam"):
            return False
        raise
    return True


def observe(client: Any, role_name: str, policy_name: str, want: dict[str, Any], *,
            check_role: bool = True) -> Observation:
    """Read our inline policy on one role; raises RoleMissing when the role is gone.

    IAM answers NoSuchEntity both for a missing policy and a missing role, and
    its message text is not a stable API, so only then one get_role tells them
    apart; a present policy costs exactly one read. ``check_role=False`` skips
    that get_role (ABSENT then means "policy or role missing") for callers that
    read the role's policy list next anyway: ``other_policy_sizes`` raises
    RoleMissing itself.
    """
    try:
        response = client.get_role_policy(RoleName=role_name, PolicyName=policy_name)
    except ClientError as error:
        if not is_not_found(error, "iam"):
            raise
        if check_role and not role_exists(client, role_name):
            raise RoleMissing(role_name) from None
        return ABSENT
    document = policydoc.parse(response.get("PolicyDocument"))
    return Observation(exists=True, owned=True, differences=compare(want, document), observed=document)


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


def put(client: Any, role_name: str, policy_name: str, document: dict[str, Any]) -> None:
    client.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=policydoc.dumps(document))


def delete(client: Any, role_name: str, policy_name: str) -> bool:
    """Remove our policy; False when it (or the role) was already gone (NotFound means done)."""
    try:
        client.delete_role_policy(RoleName=role_name, PolicyName=policy_name)
    except ClientError as error:
        if is_not_found(error, "iam"):
            return False
        raise
    return True
