"""Tenancy: what a namespace's resources may name in AWS, decided before any AWS call.

The cluster admin writes one cluster-scoped ``TenancyPolicy`` (the operator follows the
one named by ``--tenancy-policy``, default ``default``). Only cluster-scoped RBAC can
change it, so a tenant who may create RegistryCredentials in one namespace cannot widen
its own rules. Namespace annotations (ACK's CARM) were not chosen: whoever may patch a
Namespace could change them, and globs for ten fields do not fit annotations well.

Called by every kind's reconcile and delete (``controller.reconcile.*``) right after
validation, and therefore by ``regaccess plan`` too: a resource outside its
namespace's rules gets ``Ready=False`` reason ``NotPermitted`` naming the field, the
value and the rule, and no AWS call is made. Pure: no I/O here.

Rules (docs/security.md has examples):
- ``spec.namespaces`` maps namespace globs to rules; the most specific key matching a
  namespace is used (an exact name, else the glob with the most literal characters,
  ties broken by the key's spelling). ``spec.default`` applies to every namespace.
- Per rule field: the namespace entry's list if it has one, else ``spec.default``'s,
  else ``spec.defaultAction`` (``Deny``, the default: nothing; ``Allow``: anything).
- Patterns are globs: ``*`` any run of characters (``/`` included), ``?`` one
  character, everything else literal and case-sensitive; ``{namespace}`` is replaced
  by the resource's namespace.
- ``spec.default`` left out means the shipped default below; ``default: {}`` means no
  rules (then ``defaultAction`` decides every field).
- What a spec leaves out (no ``region``, no ``roleArn``) is the operator's own Region
  and identity, chosen by the admin: rules apply to what a tenant writes.
- The shipped default scopes every field to the namespace and denies what cannot be
  scoped (Regions, accounts, roles to assume). While the policy followed does not exist,
  ``absent`` decides: the shipped default for ``default``, refuse everything for any other
  name. Execution roles given as ARNs are judged again by their real ARN
  (``real_role_problems``, fed one cached GetRole by the first RegistryCredential step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from controller.api import reasons
from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, REGISTRY_CREDENTIAL
from controller.api.validation import Problem

ALLOW = "Allow"
DENY = "Deny"
NAMESPACE_PLACEHOLDER = "{namespace}"

# Rule field -> what it limits (docs/security.md and the CRD descriptions say the same).
RULE_FIELDS: dict[str, str] = {
    "secretNames": "Secrets Manager secret names (RegistryCredential spec.secret.name, defaulted or written)",
    "policyNames": "IAM inline policy names (RegistryCredential spec.grants.policyName, defaulted or written)",
    "executionRoles": "execution roles granted (RegistryCredential spec.grants.executionRoles): a pattern "
                      "starting with arn: matches role ARNs, any other pattern matches the role name",
    "taskDefinitionFamilies": "ECS task definition families (spec.consumers.ecsTaskDefinitions[].family)",
    "jobDefinitions": "Batch job definition names (spec.consumers.batchJobDefinitions[].name)",
    "ecsServices": "ECS services rolled, as <cluster name>/<service name> (spec.consumers.ecsServices[])",
    "pullThroughCachePrefixes": "ECR pull-through cache prefixes (spec.pullThroughCache.ecrRepositoryPrefix)",
    "repositories": "ECR repositories of a CrossAccountRepoAccess (spec.repositories); a prefix in "
                    "spec.repositoryPrefixes is permitted when a pattern ending in * covers every "
                    "repository under it",
    "regions": "Regions a resource acts in (spec.region, ECRPullSecret spec.registries[].region)",
    "accounts": "AWS accounts a resource acts in: the account of spec.roleArn and of execution role ARNs, "
                "ECRPullSecret spec.registries[].registryId",
    "roleArns": "roles a resource assumes (spec.roleArn) or has ECR assume (spec.pullThroughCache.customRoleArn, upstreamRoleArn)",
}

# The shipped default (no TenancyPolicy, or one without spec.default): every rule field is
# scoped to the namespace, and what cannot be scoped to it is denied. docs/security.md gives
# the reason for each line and the one TenancyPolicy that opens it up.
SHIPPED_DEFAULT: dict[str, tuple[str, ...]] = {
    # The defaults regaccess/<ns>/<name>, ecr-pullthroughcache/<ns>/<name> and
    # regaccess-<ns>-<name> always fit.
    "secretNames": ("regaccess/{namespace}/*", "ecr-pullthroughcache/{namespace}/*"),
    "policyNames": ("regaccess-{namespace}-*",),
    # Roles, families, job definitions and services named after their namespace. A role is
    # judged by its name (IAM names are unique per account whatever the path).
    "executionRoles": ("{namespace}-*",),
    "taskDefinitionFamilies": ("{namespace}-*",),
    "jobDefinitions": ("{namespace}-*",),
    "ecsServices": ("*/{namespace}-*",),
    # A cache rule's prefix is a repository path head: the namespace itself or below it;
    # ROOT (every repository of the registry) fits neither.
    "pullThroughCachePrefixes": ("{namespace}", "{namespace}/*"),
    # Repositories under <namespace>/ (a repositoryPrefixes entry must lie under it; ROOT
    # never does).
    "repositories": ("{namespace}/*",),
    # Nothing a namespace could own: another Region, another account, a role to assume (or
    # for ECR to assume). Left out of a spec, these are the operator's own, which the admin
    # chose, and stay allowed: rules apply to what a tenant writes.
    "regions": (),
    "accounts": (),
    "roleArns": (),
}
SHIPPED_NAME = "(shipped default)"
MSG_NOT_PERMITTED = "{value!r} is not permitted in namespace {namespace}: {rule}"
MSG_POLICY_INVALID = "TenancyPolicy {name} cannot be read ({error}): every resource is refused until it is fixed"
MSG_POLICY_MISSING = ("TenancyPolicy {name} (named by --tenancy-policy) does not exist: every resource is "
                      "refused until it is created")
# The name the operator follows unless told otherwise: while no such object exists, the
# shipped default applies (a first install works). Any other name is the admin's explicit
# choice, and its absence is an error, not a silent fall-back to the shipped default.
DEFAULT_POLICY_NAME = "default"


@dataclass(frozen=True)
class Policy:
    """A parsed TenancyPolicy (or the shipped default)."""

    name: str = SHIPPED_NAME
    # Deny: a rule field added later and not yet in SHIPPED_DEFAULT is closed, not open.
    default_action: str = DENY
    default: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SHIPPED_DEFAULT))
    namespaces: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # Set when the TenancyPolicy object could not be parsed: every resource is refused.
    error: str | None = None
    # Set when the explicitly named TenancyPolicy does not exist: every resource is refused.
    missing: bool = False


SHIPPED = Policy()


def absent(name: str) -> Policy:
    """Pure: the policy in force while the TenancyPolicy ``name`` does not exist.

    ``default`` (or no name: none is read) means the shipped default; a name the admin chose
    refuses everything until it exists (TenancyPolicyMissing), so a typo in the name or a
    policy not yet synced from Git is loud, not a quiet switch to other rules.
    """
    if not name or name == DEFAULT_POLICY_NAME:
        return SHIPPED
    return Policy(name=name, missing=True)


def _rules(raw: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    return {key: tuple(value) for key, value in (raw or {}).items() if value is not None}


def from_spec(name: str, spec: dict[str, Any] | None) -> Policy:
    """Pure: the Policy of a TenancyPolicy's spec; an unreadable one refuses everything."""
    from controller.api.models import TenancyPolicySpec  # models import nothing of ours

    try:
        model = TenancyPolicySpec.model_validate(spec or {})
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        first = error.errors()[0] if hasattr(error, "errors") else {"msg": str(error), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc") or ())
        return Policy(name=name, error=f"spec.{where}: {first.get('msg')}" if where else str(first.get("msg")))
    default = SHIPPED_DEFAULT if model.default is None else _rules(model.default.model_dump())
    return Policy(
        name=name,
        default_action=model.defaultAction,
        default=dict(default),
        namespaces={key: _rules(rules.model_dump()) for key, rules in model.namespaces.items()},
    )


# --------------------------------------------------------------------------- matching


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def glob_match(pattern: str, value: str) -> bool:
    """``*`` any run of characters, ``?`` one, the rest literal (case-sensitive)."""
    return _compiled(pattern).fullmatch(value) is not None


def _literal_count(pattern: str) -> int:
    return sum(1 for char in pattern if char not in "*?")


def entry_for(policy: Policy, namespace: str) -> str | None:
    """The key of ``spec.namespaces`` that governs ``namespace`` (most specific), if any."""
    matching = [key for key in policy.namespaces if glob_match(key, namespace)]
    if not matching:
        return None
    # Exact names first, then more literal characters, then the key itself (deterministic).
    return min(matching, key=lambda key: (key != namespace, -_literal_count(key), key))


@dataclass(frozen=True)
class Rule:
    """The patterns one field is held to in one namespace, and where they come from."""

    field: str
    patterns: tuple[str, ...] | None  # None: the default action applies
    source: str                       # "namespaces[team-*]", "default" or "defaultAction"
    default_action: str

    def describe(self, policy_name: str) -> str:
        if self.patterns is None:
            return (f"TenancyPolicy {policy_name} lists no {self.field} for this namespace "
                    f"and its defaultAction is {self.default_action}")
        shown = ", ".join(self.patterns) if self.patterns else "(none)"
        return f"TenancyPolicy {policy_name} allows {self.field} {shown} ({self.source})"


def rule_for(policy: Policy, namespace: str, rule_field: str) -> Rule:
    key = entry_for(policy, namespace)
    if key is not None and rule_field in policy.namespaces[key]:
        patterns, source = policy.namespaces[key][rule_field], f"namespaces[{key}]"
    elif rule_field in policy.default:
        patterns, source = policy.default[rule_field], "default"
    else:
        return Rule(rule_field, None, "defaultAction", policy.default_action)
    substituted = tuple(p.replace(NAMESPACE_PLACEHOLDER, namespace) for p in patterns)
    return Rule(rule_field, substituted, source, policy.default_action)


def _role_permitted(patterns: Iterable[str], value: str) -> bool:
    is_arn = value.startswith("arn:")
    role_name = value.rsplit("/", 1)[-1] if is_arn else value
    for pattern in patterns:
        if pattern.startswith("arn:"):
            if is_arn and glob_match(pattern, value):
                return True
        elif glob_match(pattern, role_name):
            return True
    return False


def _prefix_permitted(patterns: Iterable[str], prefix: str) -> bool:
    """A repository prefix is permitted when one pattern admits every repository under it.

    ``H*`` matches ``prefix/`` (its ``*`` taking the rest) only if ``H`` matches a
    leading part of ``prefix/``; then ``H*`` also matches ``prefix/`` followed by
    anything. ``ROOT`` (every repository of the registry) needs a pattern that is ``*``.
    """
    if prefix == "ROOT":
        return any(p == "*" for p in patterns)
    return any(p.endswith("*") and glob_match(p, prefix + "/") for p in patterns)


def permitted(rule: Rule, value: str, *, kind: str = "value") -> bool:
    if rule.patterns is None:
        return rule.default_action == ALLOW
    if kind == "role":
        return _role_permitted(rule.patterns, value)
    if kind == "prefix":
        return _prefix_permitted(rule.patterns, value)
    return any(glob_match(p, value) for p in rule.patterns)


# --------------------------------------------------------------------------- per kind

# (field path, rule field, value, match kind) for each thing a resource names.
Value = tuple[str, str, str, str]


def _account_of_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None


def _common(spec: Any) -> list[Value]:
    return _region_and_role(getattr(spec, "region", None), getattr(spec, "roleArn", None))


def _region_and_role(region: str | None, role_arn: str | None) -> list[Value]:
    """spec.region and spec.roleArn (with its account) as the rules judge them."""
    values: list[Value] = []
    if region:
        values.append(("spec.region", "regions", region, "value"))
    if role_arn:
        values.append(("spec.roleArn", "roleArns", role_arn, "value"))
        account = _account_of_arn(role_arn)
        if account:
            values.append(("spec.roleArn", "accounts", account, "value"))
    return values


def registry_credential_values(resolved: Any) -> list[Value]:
    """What a resolved RegistryCredential names (controller.api.validation)."""
    spec = resolved.spec
    values: list[Value] = [("spec.secret.name", "secretNames", resolved.secret_name, "value")]
    roles = list(spec.grants.executionRoles)
    if roles:
        # The inline policy exists only where there is a role to put it on.
        values.append(("spec.grants.policyName", "policyNames", resolved.policy_name, "value"))
    for i, role in enumerate(roles):
        values.append((f"spec.grants.executionRoles[{i}]", "executionRoles", role, "role"))
        account = _account_of_arn(role) if role.startswith("arn:") else None
        if account:
            values.append((f"spec.grants.executionRoles[{i}]", "accounts", account, "value"))
    for i, consumer in enumerate(spec.consumers.ecsTaskDefinitions):
        values.append((f"spec.consumers.ecsTaskDefinitions[{i}].family", "taskDefinitionFamilies",
                       consumer.family, "value"))
    for i, consumer in enumerate(spec.consumers.batchJobDefinitions):
        values.append((f"spec.consumers.batchJobDefinitions[{i}].name", "jobDefinitions", consumer.name, "value"))
    for i, consumer in enumerate(spec.consumers.ecsServices):
        cluster = consumer.cluster.rsplit("/", 1)[-1] if consumer.cluster.startswith("arn:") else consumer.cluster
        values.append((f"spec.consumers.ecsServices[{i}]", "ecsServices", f"{cluster}/{consumer.service}", "value"))
        account = _account_of_arn(consumer.cluster) if consumer.cluster.startswith("arn:") else None
        if account:
            values.append((f"spec.consumers.ecsServices[{i}].cluster", "accounts", account, "value"))
    if spec.pullThroughCache is not None:
        values.append(("spec.pullThroughCache.ecrRepositoryPrefix", "pullThroughCachePrefixes",
                       spec.pullThroughCache.ecrRepositoryPrefix, "value"))
        # ECR assumes these for the rule (ecr, ecr-public-premium): a namespace naming another
        # team's role would have ECR pull with that team's access, so they are judged as roleArn is.
        for field in ("customRoleArn", "upstreamRoleArn"):
            role = getattr(spec.pullThroughCache, field, None)
            if role:
                values.append((f"spec.pullThroughCache.{field}", "roleArns", role, "value"))
    return values + _common(spec)


def cross_account_values(resolved: Any) -> list[Value]:
    """What a resolved CrossAccountRepoAccess names (controller.api.validation_xrepo)."""
    spec = resolved.spec
    values: list[Value] = [(f"spec.repositories[{i}]", "repositories", repository, "value")
                           for i, repository in enumerate(spec.repositories)]
    values += [(f"spec.repositoryPrefixes[{i}]", "repositories", prefix, "prefix")
               for i, prefix in enumerate(spec.repositoryPrefixes)]
    return values + _common(spec)


def cross_account_target_values(region: str | None, role_arn: str | None, repositories: Iterable[str],
                                prefixes: Iterable[str]) -> list[Value]:
    """What a CrossAccountRepoAccess whose spec fails validation would act on when deleted.

    Its delete still removes statements (from what the spec and status name), so the guard
    judges those as it judges a valid spec: an invalid spec must not be a way around it.
    """
    values: list[Value] = [("spec.repositories", "repositories", repository, "value") for repository in repositories]
    values += [("spec.repositoryPrefixes", "repositories", prefix, "prefix") for prefix in prefixes]
    return values + _region_and_role(region, role_arn)


def pull_secret_values(resolved: Any) -> list[Value]:
    """What a resolved ECRPullSecret names (controller.api.validation_pull)."""
    spec = resolved.spec
    values: list[Value] = []
    for i, registry in enumerate(spec.registries):
        if registry.region:
            values.append((f"spec.registries[{i}].region", "regions", registry.region, "value"))
        if registry.registryId:
            values.append((f"spec.registries[{i}].registryId", "accounts", registry.registryId, "value"))
    return values + _common(spec)


MSG_ROLE_NOT_AS_GIVEN = ("{given!r} is not the role the operator would write to: IAM's role {name} is {real} "
                         "(the operator writes to a role by name, so the role's real ARN is judged)")


def real_role_problems(policy: Policy, namespace: str, roles: Iterable[str],
                       real: dict[str, str | None]) -> list[Problem]:
    """Pure: execution roles given as ARNs, judged by the ARN IAM answers for their name.

    IAM writes (PutRolePolicy) take the role *name*, so ``arn:...:role/team-x/team-y-exec``
    would write to the role ``team-y-exec`` wherever its path is: the ARN's text proves
    nothing. ``real`` maps each given ARN to the ARN ``iam:GetRole`` answered for its name
    (None: no such role, left to the grant step to report). A given ARN that is not the real
    one is refused; the real one is judged against ``executionRoles`` and ``accounts``.
    """
    if policy.missing or policy.error is not None:
        return violations(policy, namespace, [])
    values: list[Value] = []
    problems: list[Problem] = []
    for i, given in enumerate(roles):
        actual = real.get(given)
        if not given.startswith("arn:") or actual is None:
            continue
        path = f"spec.grants.executionRoles[{i}]"
        if actual != given:
            problems.append(Problem(reasons.NOT_PERMITTED, path, MSG_ROLE_NOT_AS_GIVEN.format(
                given=given, name=given.rsplit("/", 1)[-1], real=actual)))
            continue
        values.append((path, "executionRoles", actual, "role"))
        account = _account_of_arn(actual)
        if account:
            values.append((path, "accounts", account, "value"))
    return problems + violations(policy, namespace, values)


def values_of(kind: str, resolved: Any) -> list[Value]:
    """What a resolved resource of ``kind`` names: the one dispatch for callers holding any kind."""
    return _VALUES_OF[kind](resolved)


_VALUES_OF = {
    REGISTRY_CREDENTIAL.kind: registry_credential_values,
    CROSS_ACCOUNT_REPO_ACCESS.kind: cross_account_values,
    ECR_PULL_SECRET.kind: pull_secret_values,
}


def violations(policy: Policy, namespace: str, values: Iterable[Value]) -> list[Problem]:
    """Pure: one NotPermitted problem per named thing the namespace's rules do not allow."""
    if policy.missing:
        return [Problem(reasons.TENANCY_POLICY_MISSING, "spec", MSG_POLICY_MISSING.format(name=policy.name))]
    if policy.error is not None:
        return [Problem(reasons.NOT_PERMITTED, "spec", MSG_POLICY_INVALID.format(name=policy.name, error=policy.error))]
    problems = []
    for path, rule_field, value, kind in values:
        rule = rule_for(policy, namespace, rule_field)
        if not permitted(rule, value, kind=kind):
            problems.append(Problem(reasons.NOT_PERMITTED, path, MSG_NOT_PERMITTED.format(
                value=value, namespace=namespace, rule=rule.describe(policy.name))))
    return problems


def verdict(policy: Policy, namespace: str, values: Iterable[Value]) -> tuple[str, ...]:
    """What changes when a policy changes: the refused fields (compared old vs new)."""
    return tuple(str(p) for p in violations(policy, namespace, values))


__all__ = [
    "ALLOW", "DEFAULT_POLICY_NAME", "DENY", "Policy", "absent", "RULE_FIELDS", "SHIPPED", "SHIPPED_DEFAULT", "cross_account_target_values",
    "cross_account_values", "entry_for",
    "from_spec", "glob_match", "permitted", "pull_secret_values", "real_role_problems", "registry_credential_values", "rule_for", "values_of",
    "verdict", "violations",
]
