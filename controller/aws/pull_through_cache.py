"""ECR pull-through cache rules whose upstream credential is the operator's secret.

The rooms of ``controller.aws.base``: ``desired`` and ``compare`` and
``ownership`` are pure; ``observe``, ``create``, ``update`` and ``delete`` are
thin calls on an ECR client. Called by ``controller.reconcile.pull_through_cache``.

ECR's rules (../shared/DESIGN.md): one rule per ``ecrRepositoryPrefix`` per
registry, at most 50 rules per registry; ``UpdatePullThroughCacheRule`` can
change only ``credentialArn`` (and ``customRoleArn``), so a new upstream URL or
upstream registry means delete + create. Rules carry no tags, so ownership is
decided from the credential: a rule is ours when its ``credentialArn`` is our
secret's ARN, or when our status says we created the rule for that prefix.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from controller.api.validation import ResolvedRegistryCredential
from controller.aws.base import ABSENT, Observation
from controller.aws.errors import is_not_found

SERVICE = "ecr"
KIND = "pullThroughCacheRule"
MAX_RULES_PER_REGISTRY = 50

# The fields of a rule the operator keeps; compare() names differences by these.
FIELD_UPSTREAM_URL = "upstreamRegistryUrl"
FIELD_UPSTREAM_REGISTRY = "upstreamRegistry"
FIELD_CREDENTIAL = "credentialArn"
COMPARED_FIELDS = (FIELD_UPSTREAM_URL, FIELD_UPSTREAM_REGISTRY, FIELD_CREDENTIAL)
# UpdatePullThroughCacheRule has no member for these: changing one means delete + create.
RECREATE_FIELDS = frozenset({FIELD_UPSTREAM_URL, FIELD_UPSTREAM_REGISTRY})
STATUS_FIELDS = ("ecrRepositoryPrefix", FIELD_UPSTREAM_URL, FIELD_CREDENTIAL)


class Ownership(str, Enum):
    OURS = "Ours"          # act on it
    ADOPT = "Adopt"        # not ours, but spec.adoptExisting: take it over
    CONFLICT = "Conflict"  # not ours: report, never write


def desired(resolved: ResolvedRegistryCredential, secret_arn: str) -> dict[str, Any]:
    """The exact CreatePullThroughCacheRule request for this RegistryCredential."""
    ptc = resolved.spec.pullThroughCache
    if ptc is None or resolved.upstream_url is None:
        raise ValueError("desired() needs a validated spec with pullThroughCache")
    return {
        "ecrRepositoryPrefix": ptc.ecrRepositoryPrefix,
        FIELD_UPSTREAM_URL: resolved.upstream_url,
        # use_enum_values gives a str; a model built in code may still hold the Enum member.
        FIELD_UPSTREAM_REGISTRY: getattr(ptc.upstreamRegistry, "value", ptc.upstreamRegistry),
        FIELD_CREDENTIAL: secret_arn,
    }


def compare(want: dict[str, Any], observed: dict[str, Any]) -> tuple[str, ...]:
    """Names of the kept fields that differ (in COMPARED_FIELDS order)."""
    return tuple(name for name in COMPARED_FIELDS if want.get(name) != observed.get(name))


def needs_recreate(differences: tuple[str, ...]) -> bool:
    return bool(RECREATE_FIELDS.intersection(differences))


def ownership(observed: dict[str, Any], *, secret_arn: str | None, previous: dict[str, Any] | None,
              adopt: bool) -> Ownership:
    """Whose an existing rule is. ``previous`` is status.pullThroughCacheRule (or None)."""
    prefix = observed.get("ecrRepositoryPrefix")
    credential = observed.get(FIELD_CREDENTIAL)
    if secret_arn and credential == secret_arn:
        return Ownership.OURS
    if previous and previous.get("ecrRepositoryPrefix") == prefix:
        return Ownership.OURS  # we created it; a different credential is drift, not a stranger
    return Ownership.ADOPT if adopt else Ownership.CONFLICT


def credential_secret_name(credential_arn: str | None) -> str | None:
    """The secret name inside a Secrets Manager ARN (``...:secret:NAME-XXXXXX``), or None (pure)."""
    if not credential_arn or ":secret:" not in credential_arn:
        return None
    name = credential_arn.split(":secret:", 1)[1]
    # AWS appends "-" and six random characters to every secret's ARN.
    return name[:-7] if len(name) > 7 and name[-7] == "-" else None


def status_of(rule: dict[str, Any]) -> dict[str, Any]:
    """status.pullThroughCacheRule for a rule (no timestamps: they would churn status)."""
    return {name: rule.get(name) for name in STATUS_FIELDS}


def _kept(rule: dict[str, Any]) -> dict[str, Any]:
    return {name: rule[name] for name in ("ecrRepositoryPrefix", *COMPARED_FIELDS, "registryId") if name in rule}


# --------------------------------------------------------------------------- thin AWS calls


def observe(client: Any, want: dict[str, Any], *, secret_arn: str | None, previous: dict[str, Any] | None,
            adopt: bool) -> Observation:
    """One DescribePullThroughCacheRules for the prefix; NotFound means absent."""
    try:
        answer = client.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[want["ecrRepositoryPrefix"]])
    except ClientError as error:
        if is_not_found(error, SERVICE):
            return ABSENT
        raise
    rules = [r for r in answer.get("pullThroughCacheRules", []) if r.get("ecrRepositoryPrefix") == want["ecrRepositoryPrefix"]]
    if not rules:
        return ABSENT
    rule = _kept(rules[0])
    owner = ownership(rule, secret_arn=secret_arn, previous=previous, adopt=adopt)
    return Observation(exists=True, owned=owner is Ownership.OURS, differences=compare(want, rule), observed=rule)


def create(client: Any, want: dict[str, Any]) -> dict[str, Any]:
    """CreatePullThroughCacheRule; AlreadyExists propagates (the caller observes again)."""
    return _kept(client.create_pull_through_cache_rule(**want))


def update_credential(client: Any, prefix: str, credential_arn: str) -> dict[str, Any]:
    return _kept(client.update_pull_through_cache_rule(ecrRepositoryPrefix=prefix, credentialArn=credential_arn))


def delete(client: Any, prefix: str) -> bool:
    """DeletePullThroughCacheRule; False when it was already gone (NotFound means done)."""
    try:
        client.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    except ClientError as error:
        if is_not_found(error, SERVICE):
            return False
        raise
    return True
