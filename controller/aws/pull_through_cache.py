"""ECR pull-through cache rules: the rule kind's adapter of ``controller.aws.protocol``.

``RULE`` (a ``RuleKind``) is what ``controller.reconcile.pull_through_cache``
hands to the loop (``controller.reconcile.loop``); ``desired`` and ``compare``
are pure, the writes are thin calls on ECR. Facts only: adopting, reporting and
refusing are the loop's decisions.

ECR's rules (../shared/DESIGN.md): one rule per ``ecrRepositoryPrefix`` per
registry, at most 50 rules per registry; ``UpdatePullThroughCacheRule`` can
change only ``credentialArn``, ``customRoleArn`` and ``upstreamRoleArn`` (and only
set them, never clear them), so a new upstream URL, upstream registry or
``upstreamRepositoryPrefix``, or a role to remove, means delete + create.

Which members a rule carries depends on its upstream
(``controller.api.validation.UPSTREAMS``): a credential upstream takes our secret as
``credentialArn``; ``ecr`` takes ``customRoleArn`` and ``upstreamRepositoryPrefix``;
``ecr-public-premium`` takes ``customRoleArn`` with ``upstreamRoleArn`` and no credential.

Ownership: rules carry no tags, so a rule's mark is its credential's (a role-only
rule, ecr or ecr-public-premium, is ours only by our status record). A rule is
**ours** when its ``credentialArn`` is our secret's ARN, when our status records
that we created the rule for that prefix, or (before our secret's ARN is known,
the pre-check) when the credential is the secret of our name. Otherwise its
credential secret's ``regaccess.io/owner`` tag decides, read with one
DescribeSecret on this path only (the steady state never pays it): another
owner's mark -> **foreign** (never adopted, updated or deleted); no mark, no
such secret or no credential -> **unmarked**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from controller.api.validation import ResolvedRegistryCredential, rule_takes_credential
from controller.aws.clients import Clients
from controller.aws.errors import is_not_found
from controller.aws.secrets import mark_of
from controller.aws.protocol import (
    ABSENT,
    Action,
    Difference,
    Observation,
    Owner,
    Written,
    owner_of_mark,
)

SERVICE = "ecr"
KIND = "pullThroughCacheRule"
MAX_RULES_PER_REGISTRY = 50

# The fields of a rule the operator keeps; compare() names differences by these.
FIELD_UPSTREAM_URL = "upstreamRegistryUrl"
FIELD_UPSTREAM_REGISTRY = "upstreamRegistry"
FIELD_CREDENTIAL = "credentialArn"
FIELD_CUSTOM_ROLE = "customRoleArn"
FIELD_UPSTREAM_ROLE = "upstreamRoleArn"
FIELD_UPSTREAM_PREFIX = "upstreamRepositoryPrefix"
# The members UpdatePullThroughCacheRule can set (it cannot clear one: sending none keeps it).
UPDATABLE_FIELDS = (FIELD_CREDENTIAL, FIELD_CUSTOM_ROLE, FIELD_UPSTREAM_ROLE)
COMPARED_FIELDS = (FIELD_UPSTREAM_URL, FIELD_UPSTREAM_REGISTRY, FIELD_CREDENTIAL, FIELD_CUSTOM_ROLE,
                   FIELD_UPSTREAM_ROLE, FIELD_UPSTREAM_PREFIX)
# UpdatePullThroughCacheRule has no member for these: changing one means delete + create.
RECREATE_FIELDS = frozenset({FIELD_UPSTREAM_URL, FIELD_UPSTREAM_REGISTRY, FIELD_UPSTREAM_PREFIX})
STATUS_FIELDS = ("ecrRepositoryPrefix", FIELD_UPSTREAM_URL, FIELD_CREDENTIAL)
# In status only when set, so the rows of credential rules stay as they were.
OPTIONAL_STATUS_FIELDS = (FIELD_CUSTOM_ROLE, FIELD_UPSTREAM_ROLE, FIELD_UPSTREAM_PREFIX)


SECRETS_SERVICE = "secretsmanager"


@dataclass(frozen=True)
class DesiredRule:
    """What the loop is given for one rule."""

    # The exact CreatePullThroughCacheRule request; its credentialArn is None while our
    # secret's ARN is not known yet (the pre-check), and absent for a role-only upstream.
    request: dict[str, Any]
    secret_name: str  # our secret's name (the credential)
    owner: str        # our mark, <cluster-id>/<namespace>/<name>
    # status.pullThroughCacheRule's prefix: a rule we created, whatever its credential now.
    recorded_prefix: str | None = None

    @property
    def prefix(self) -> str:
        return self.request["ecrRepositoryPrefix"]

    @property
    def credential(self) -> str | None:
        return self.request.get(FIELD_CREDENTIAL)


def desired_rule(resolved: ResolvedRegistryCredential, secret_arn: str | None,
                 recorded: dict[str, Any] | None = None) -> DesiredRule:
    """The rule of spec.pullThroughCache (``secret_arn`` None: not known yet)."""
    return DesiredRule(desired(resolved, secret_arn), resolved.secret_name, resolved.owner,
                       (recorded or {}).get("ecrRepositoryPrefix"))


def probe(prefix: str, *, secret_name: str, owner: str, secret_arn: str | None,
          recorded: dict[str, Any] | None) -> DesiredRule:
    """A rule known only by its prefix (to delete one the spec no longer names)."""
    return DesiredRule({"ecrRepositoryPrefix": prefix, FIELD_CREDENTIAL: secret_arn}, secret_name, owner,
                       (recorded or {}).get("ecrRepositoryPrefix"))


def desired(resolved: ResolvedRegistryCredential, secret_arn: str | None) -> dict[str, Any]:
    """The exact CreatePullThroughCacheRule request for this RegistryCredential."""
    ptc = resolved.spec.pullThroughCache
    if ptc is None or resolved.upstream_url is None:
        raise ValueError("desired() needs a validated spec with pullThroughCache")
    request: dict[str, Any] = {
        "ecrRepositoryPrefix": ptc.ecrRepositoryPrefix,
        FIELD_UPSTREAM_URL: resolved.upstream_url,
        # use_enum_values gives a str; a model built in code may still hold the Enum member.
        FIELD_UPSTREAM_REGISTRY: getattr(ptc.upstreamRegistry, "value", ptc.upstreamRegistry),
    }
    if rule_takes_credential(resolved.spec):
        request[FIELD_CREDENTIAL] = secret_arn
    # Validation lets these through only for the upstreams that take them; absent means
    # "not set", which is also how Describe shows a rule without them.
    for name in (FIELD_CUSTOM_ROLE, FIELD_UPSTREAM_ROLE, FIELD_UPSTREAM_PREFIX):
        if getattr(ptc, name, None) is not None:
            request[name] = getattr(ptc, name)
    return request


def compare(want: dict[str, Any], observed: dict[str, Any]) -> tuple[str, ...]:
    """Names of the kept fields that differ (in COMPARED_FIELDS order)."""
    return tuple(name for name in COMPARED_FIELDS if want.get(name) != observed.get(name))


def needs_recreate(differences: tuple[str, ...], want: dict[str, Any] | None = None) -> bool:
    """Can UpdatePullThroughCacheRule not make the rule ``want``? (``want`` None: judge by
    field names only.) Update cannot change the upstream, nor clear a role set by hand."""
    if RECREATE_FIELDS.intersection(differences):
        return True
    return want is not None and any(want.get(name) is None for name in differences if name in UPDATABLE_FIELDS
                                    and name != FIELD_CREDENTIAL)


def update_request(want: dict[str, Any], differences: tuple[str, ...]) -> dict[str, Any] | None:
    """The UpdatePullThroughCacheRule request that makes the rule ``want`` (None: nothing to send).
    The two roles of ecr-public-premium go together, as ECR takes them."""
    changed = [name for name in UPDATABLE_FIELDS if name in differences and want.get(name) is not None]
    if not changed:
        return None
    if FIELD_UPSTREAM_ROLE in changed and FIELD_CUSTOM_ROLE not in changed:
        changed.append(FIELD_CUSTOM_ROLE)
    request = {"ecrRepositoryPrefix": want["ecrRepositoryPrefix"]}
    request.update({name: want[name] for name in UPDATABLE_FIELDS if name in changed})
    return request


def owned_without_lookup(want: DesiredRule, rule: dict[str, Any]) -> bool:
    """Pure: is the rule ours by what we know already (no AWS call)?"""
    credential = rule.get(FIELD_CREDENTIAL)
    if want.credential and credential == want.credential:
        return True
    if want.recorded_prefix and want.recorded_prefix == rule.get("ecrRepositoryPrefix"):
        return True  # we created it; a different credential is drift, not a stranger
    # Before our secret's ARN is known (the pre-check), the credential's name says it.
    return not want.credential and credential_secret_name(credential) == want.secret_name


def observation_of(want: DesiredRule, rule: dict[str, Any], *, credential_mark: str | None = None) -> Observation:
    """Pure: the Observation of an existing rule. ``credential_mark`` is the owner tag of
    its credential secret (looked up only when the rule is not ours by what we know)."""
    if owned_without_lookup(want, rule):
        owner, mark = Owner.OURS, want.owner
    else:
        owner, mark = owner_of_mark(credential_mark, want.owner), credential_mark
    fields = compare(want.request, rule)
    if not want.credential:
        fields = tuple(f for f in fields if f != FIELD_CREDENTIAL)  # ours is not known yet
    found = tuple(Difference(name, rule.get(name), want.request.get(name)) for name in fields)
    return Observation(exists=True, owner=owner, differences=found, observed=rule, mark=mark)


def credential_secret_name(credential_arn: str | None) -> str | None:
    """The secret name inside a Secrets Manager ARN (``...:secret:NAME-XXXXXX``), or None (pure)."""
    if not credential_arn or ":secret:" not in credential_arn:
        return None
    name = credential_arn.split(":secret:", 1)[1]
    # AWS appends "-" and six random characters to every secret's ARN.
    return name[:-7] if len(name) > 7 and name[-7] == "-" else None


def status_of(rule: dict[str, Any]) -> dict[str, Any]:
    """status.pullThroughCacheRule for a rule (no timestamps: they would churn status)."""
    row = {name: rule.get(name) for name in STATUS_FIELDS}
    row.update({name: rule[name] for name in OPTIONAL_STATUS_FIELDS if rule.get(name) is not None})
    return row


def _kept(rule: dict[str, Any]) -> dict[str, Any]:
    return {name: rule[name] for name in ("ecrRepositoryPrefix", *COMPARED_FIELDS, "registryId") if name in rule}


# --------------------------------------------------------------------------- the adapter


def _describe_rule(client: Any, prefix: str) -> dict[str, Any] | None:
    """One DescribePullThroughCacheRules for the prefix; None when there is none."""
    try:
        answer = client.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])
    except ClientError as error:
        if is_not_found(error, SERVICE):
            return None
        raise
    rules = [r for r in answer.get("pullThroughCacheRules", []) if r.get("ecrRepositoryPrefix") == prefix]
    return _kept(rules[0]) if rules else None


def credential_mark(clients: Clients, credential_arn: str | None) -> str | None:
    """The owner tag of the rule's credential secret (None: none, no such secret, no credential)."""
    if not credential_arn or credential_secret_name(credential_arn) is None:
        return None
    try:
        described = clients(SECRETS_SERVICE).describe_secret(SecretId=credential_arn)
    except ClientError as error:
        if is_not_found(error, SECRETS_SERVICE):
            return None
        raise
    return mark_of(described)


class RuleKind:
    """The adapter of one pull-through cache rule. ``client`` is a ``Clients`` (service ->
    client): a rule whose owner is not known from our status needs its credential's tag."""

    kind = KIND
    service = SERVICE

    def label(self, want: DesiredRule) -> str:
        return f"pull-through cache rule {want.prefix!r}"

    def observe(self, clients: Clients, want: DesiredRule) -> Observation:
        rule = _describe_rule(clients(SERVICE), want.prefix)
        if rule is None:
            return ABSENT
        mark = None
        if not owned_without_lookup(want, rule):
            mark = credential_mark(clients, rule.get(FIELD_CREDENTIAL))
        return observation_of(want, rule, credential_mark=mark)

    def create(self, clients: Clients, want: DesiredRule, observation: Observation) -> Written:
        """CreatePullThroughCacheRule; AlreadyExists propagates (the loop observes again)."""
        return Written(1, {"rule": _kept(clients(SERVICE).create_pull_through_cache_rule(**want.request))})

    def update(self, clients: Clients, want: DesiredRule, observation: Observation) -> Written:
        """A new credential or role is an update; a new upstream (or a role to clear) is
        delete + create (ECR cannot change it)."""
        client = clients(SERVICE)
        if needs_recreate(observation.fields, want.request):
            delete_rule(client, want.prefix)
            created = client.create_pull_through_cache_rule(**want.request)
            return Written(2, {"rule": _kept(created), "recreated": True})
        request = update_request(want.request, observation.fields)
        if request is None:
            return Written(0)
        updated = client.update_pull_through_cache_rule(**request)
        return Written(1, {"rule": _kept(updated)})

    def adopt(self, clients: Clients, want: DesiredRule, observation: Observation) -> Written:
        # A rule has no mark of its own: pointing it at our secret is what makes it ours.
        return self.update(clients, want, observation)

    def delete(self, clients: Clients, want: DesiredRule, observation: Observation) -> Written:
        delete_rule(clients(SERVICE), want.prefix)  # NotFound means done
        return Written(1)

    def predict(self, want: DesiredRule, observation: Observation, action: Action) -> Written:
        if action in (Action.UPDATE, Action.ADOPT):
            if needs_recreate(observation.fields, want.request):
                return Written(2, {"rule": want.request, "recreated": True})
            return Written(0 if update_request(want.request, observation.fields) is None else 1,
                           {"rule": want.request})
        return Written(1, {"rule": want.request})


RULE = RuleKind()


def delete_rule(client: Any, prefix: str) -> bool:
    """DeletePullThroughCacheRule; False when it was already gone (NotFound means done)."""
    try:
        client.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    except ClientError as error:
        if is_not_found(error, SERVICE):
            return False
        raise
    return True
