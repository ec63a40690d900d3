"""Validate a custom resource before any AWS call (pure).

One entry point per kind returns either a resolved, defaulted view of the
resource or a list of problems, each naming the field and the rule broken.
The operator, ``regaccess plan`` and the tests all use these functions, so a
manifest is judged the same way everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydantic

from controller.api import reasons
from controller.api.models import (
    RegistryCredentialSpec,
    UpstreamRegistry,
)

# The tag that marks an AWS object as one resource's (its one home; controller.aws.protocol
# re-exports it for the adapters).
OWNER_TAG = "regaccess.io/owner"
# AWS allows 50 user tags on secrets, task and job definitions; one is the owner tag.
MAX_TAGS = 50
RESERVED_TAG_PREFIXES = ("regaccess.io/", "aws:")
SECRET_NAME_MAX = 512
SECRET_VALUE_MAX_BYTES = 65_536
POLICY_NAME_MAX = 128
PTC_SECRET_PREFIX = "ecr-pullthroughcache/"
# AWS appends "-" and six random characters to a secret's ARN; a name that already
# ends like that makes partial-ARN lookups ambiguous, so AWS says not to.
_ARN_SUFFIX_COLLISION = re.compile(r"-.{6}$")
_SECRET_NAME_CHARS = re.compile(r"^[A-Za-z0-9/_+=.@-]+$")
_AZURE_URL = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")



@dataclass(frozen=True)
class Upstream:
    """What ECR asks of one upstream registry's pull-through cache rule.

    ``credential``: the rule takes a Secrets Manager credential (then the secret rules
    apply: name under ecr-pullthroughcache/, keys username and accessToken, the default
    aws/secretsmanager key). ``roles``: the rule authenticates with IAM roles instead
    (``customRoleArn``, and for ecr-public-premium ``upstreamRoleArn``); the rule then sits
    beside this resource's secret and does not use it. Neither: ``refusal`` says why this
    resource cannot make one. ``url``: the one URL ECR accepts (None: given by the user,
    matching ``url_pattern``). ``upstream_prefix``: takes ``upstreamRepositoryPrefix``.
    """

    credential: bool
    url: str | None = None
    url_pattern: str | None = None
    refusal: str = ""
    roles: tuple[str, ...] = ()
    upstream_prefix: bool = False

    @property
    def kept(self) -> bool:
        """A RegistryCredential can keep this upstream's rule."""
        return self.credential or bool(self.roles)


_NO_CREDENTIAL = "a public upstream: ECR takes no credential for it, so a RegistryCredential has nothing to keep"
_ECR_URL = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
FIELD_CUSTOM_ROLE = "customRoleArn"
FIELD_UPSTREAM_ROLE = "upstreamRoleArn"
FIELD_UPSTREAM_PREFIX = "upstreamRepositoryPrefix"
# One row per value of UpstreamRegistry (botocore's ECR model); a unit test checks both.
UPSTREAMS: dict[str, Upstream] = {
    UpstreamRegistry.docker_hub.value: Upstream(True, "registry-1.docker.io"),
    UpstreamRegistry.github_container_registry.value: Upstream(True, "ghcr.io"),
    UpstreamRegistry.gitlab_container_registry.value: Upstream(True, "registry.gitlab.com"),
    UpstreamRegistry.azure_container_registry.value: Upstream(True, None, _AZURE_URL.pattern),
    UpstreamRegistry.chainguard.value: Upstream(True, "cgr.dev"),
    UpstreamRegistry.ecr.value: Upstream(False, None, _ECR_URL.pattern, roles=(FIELD_CUSTOM_ROLE,),
                                         upstream_prefix=True),
    UpstreamRegistry.ecr_public_premium.value: Upstream(False, "ecr-premium.aws.com",
                                                        roles=(FIELD_CUSTOM_ROLE, FIELD_UPSTREAM_ROLE)),
    UpstreamRegistry.ecr_public.value: Upstream(False, "public.ecr.aws", refusal=_NO_CREDENTIAL),
    UpstreamRegistry.quay.value: Upstream(False, "quay.io", refusal=_NO_CREDENTIAL),
    UpstreamRegistry.k8s.value: Upstream(False, "registry.k8s.io", refusal=_NO_CREDENTIAL),
}
UPSTREAM_DEFAULT_URLS = {name: u.url for name, u in UPSTREAMS.items() if u.kept and u.url}
URL_FORMS = {
    UpstreamRegistry.azure_container_registry.value: "<name>.azurecr.io",
    UpstreamRegistry.ecr.value: "<account>.dkr.ecr.<region>.amazonaws.com",
}
# IAM role ARNs: customRoleArn in any partition (it is in the rule's own account);
# upstreamRoleArn in the aws partition only, as ECR Public Premium requires.
_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$")
MSG_UPSTREAM_NO_CREDENTIAL = "upstream {upstream} takes no credential: {why}"
MSG_ROLE_NOT_TAKEN = "{upstream} does not take {field}; it is for {takers}"
MSG_ROLE_ARN = "must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
MSG_ROLE_PARTITION = "must be a role in the aws partition (arn:aws:iam::...), not {partition}"
MSG_ROLES_TOGETHER = "{upstream} takes customRoleArn and upstreamRoleArn together (or neither, for ECR's service-linked role); set {missing}"
MSG_UPSTREAM_PREFIX = "only ecr takes upstreamRepositoryPrefix"
MSG_UPSTREAM_URL = "must be {url} for {upstream} (the only URL ECR accepts for it)"


@dataclass(frozen=True)
class Problem:
    """One broken rule: a condition reason, the field path and a message naming the rule."""

    reason: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ResolvedRegistryCredential:
    """A RegistryCredential with every default applied; what reconcile works from."""

    namespace: str
    name: str
    spec: RegistryCredentialSpec
    secret_name: str
    policy_name: str
    owner: str  # value of the regaccess.io/owner tag
    upstream_url: str | None


# The cluster id (--cluster-id, the chart's clusterId): characters AWS tag values take,
# without "/" (it separates the parts of the owner mark <cluster-id>/<namespace>/<name>),
# so without "*" and "?" (IAM wildcards in the operator's own policy: "<cluster-id>/*")
# and spaces. 1 to 63 characters. The same pattern is in charts/regaccess/values.schema.json.
CLUSTER_ID_PATTERN = r"^[A-Za-z0-9_.:=+@-]{1,63}$"
CLUSTER_ID_MESSAGE = (
    "a cluster id is 1 to 63 of the characters A-Z a-z 0-9 _ . : = + @ - (no '/', '*', '?' "
    "or spaces: it is the first part of the owner mark <cluster-id>/<namespace>/<name> and "
    "of the IAM condition <cluster-id>/*); got {value!r}"
)


def check_cluster_id(value: str) -> str:
    """The cluster id, or ValueError saying what a cluster id may be."""
    if not isinstance(value, str) or not re.fullmatch(CLUSTER_ID_PATTERN, value):
        raise ValueError(CLUSTER_ID_MESSAGE.format(value=value))
    return value


def owner_value(cluster_id: str, namespace: str, name: str) -> str:
    return f"{cluster_id}/{namespace}/{name}"


def pydantic_problems(error: pydantic.ValidationError, prefix: str = "spec") -> list[Problem]:
    problems = []
    for item in error.errors():
        path = ".".join([prefix, *(str(p) for p in item["loc"])])
        # pydantic messages quote the rule ("String should match pattern ..."), never
        # secret material: specs hold no secrets.
        problems.append(Problem(reasons.INVALID_SPEC, path, item["msg"]))
    return problems


def secret_name_problems(name: str, field: str, *, pull_through_cache: bool) -> list[Problem]:
    problems = []
    if not 1 <= len(name) <= SECRET_NAME_MAX:
        problems.append(Problem(reasons.INVALID_SECRET_NAME, field, f"must be 1-{SECRET_NAME_MAX} characters"))
    if not _SECRET_NAME_CHARS.match(name):
        problems.append(
            Problem(reasons.INVALID_SECRET_NAME, field, "may contain only ASCII letters, digits and /_+=.@-")
        )
    if _ARN_SUFFIX_COLLISION.search(name):
        problems.append(
            Problem(
                reasons.INVALID_SECRET_NAME,
                field,
                f"{name!r} ends with a hyphen followed by six characters, which AWS reserves for "
                "the ARN suffix; set spec.secret.name to a name that does not",
            )
        )
    if pull_through_cache and not name.startswith(PTC_SECRET_PREFIX):
        problems.append(
            Problem(
                reasons.INVALID_PULL_THROUGH_CACHE,
                field,
                f"a pull-through cache credential's secret name must start with {PTC_SECRET_PREFIX!r}",
            )
        )
    return problems


def _tag_problems(tags: dict[str, str]) -> list[Problem]:
    problems = []
    for key, value in tags.items():
        field = f"spec.secret.tags[{key}]"
        if key.startswith(RESERVED_TAG_PREFIXES):
            problems.append(Problem(reasons.INVALID_SPEC, field, "tag keys starting with regaccess.io/ or aws: are reserved"))
        if not 1 <= len(key) <= 128:
            problems.append(Problem(reasons.INVALID_SPEC, field, "tag keys must be 1-128 characters"))
        if len(value) > 256:
            problems.append(Problem(reasons.INVALID_SPEC, field, "tag values must be at most 256 characters"))
    if len(tags) > MAX_TAGS - 1:  # one of AWS's 50 is the owner tag
        problems.append(Problem(reasons.INVALID_SPEC, "spec.secret.tags",
                                f"at most {MAX_TAGS - 1} tags (the owner tag is the {MAX_TAGS}th)"))
    return problems


def default_secret_name(namespace: str, name: str, *, pull_through_cache: bool) -> str:
    """regaccess/<namespace>/<name> (ecr-pullthroughcache/... with a pull-through cache).

    Kubernetes names like "from-docker" end in a hyphen and six characters, which AWS
    reserves for the ARN suffix; such defaults get "/credential" appended so that the
    default is always a name AWS recommends (documented on spec.secret.name)."""
    prefix = PTC_SECRET_PREFIX if pull_through_cache else "regaccess/"
    candidate = f"{prefix}{namespace}/{name}"
    return f"{candidate}/credential" if _ARN_SUFFIX_COLLISION.search(candidate) else candidate


def rule_takes_credential(spec: RegistryCredentialSpec) -> bool:
    """Pure: does spec.pullThroughCache's rule use this resource's secret as its credential?

    True for the upstreams that take one (then the secret is named ecr-pullthroughcache/...,
    holds username and accessToken, and uses the default key); False without a cache rule
    and for ecr / ecr-public-premium, which authenticate with IAM roles.
    """
    ptc = spec.pullThroughCache
    if ptc is None:
        return False
    upstream = UPSTREAMS.get(getattr(ptc.upstreamRegistry, "value", ptc.upstreamRegistry))
    return upstream is not None and upstream.credential


def _rule_role_problems(ptc: Any, upstream_name: str, upstream: Upstream) -> list[Problem]:
    """customRoleArn / upstreamRoleArn / upstreamRepositoryPrefix against what the upstream takes."""
    problems: list[Problem] = []
    given = {FIELD_CUSTOM_ROLE: ptc.customRoleArn, FIELD_UPSTREAM_ROLE: ptc.upstreamRoleArn}
    for field, value in given.items():
        path = f"spec.pullThroughCache.{field}"
        if value is None:
            continue
        if field not in upstream.roles:
            takers = sorted(n for n, u in UPSTREAMS.items() if field in u.roles)
            problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, path, MSG_ROLE_NOT_TAKEN.format(
                upstream=upstream_name, field=field, takers=", ".join(takers))))
            continue
        found = _ROLE_ARN.match(value)
        if found is None:
            problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, path, MSG_ROLE_ARN))
        elif field == FIELD_UPSTREAM_ROLE and found["partition"] != "aws":
            problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, path,
                                    MSG_ROLE_PARTITION.format(partition=found["partition"])))
    if FIELD_UPSTREAM_ROLE in upstream.roles and (given[FIELD_CUSTOM_ROLE] is None) != (given[FIELD_UPSTREAM_ROLE] is None):
        missing = FIELD_CUSTOM_ROLE if given[FIELD_CUSTOM_ROLE] is None else FIELD_UPSTREAM_ROLE
        problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, f"spec.pullThroughCache.{missing}",
                                MSG_ROLES_TOGETHER.format(upstream=upstream_name, missing=missing)))
    if ptc.upstreamRepositoryPrefix is not None and not upstream.upstream_prefix:
        problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, f"spec.pullThroughCache.{FIELD_UPSTREAM_PREFIX}",
                                MSG_UPSTREAM_PREFIX))
    return problems


def _role_key(role: str) -> str:
    return role.rsplit("/", 1)[-1] if role.startswith("arn:") else role


def validate_registry_credential(
    namespace: str, name: str, spec: dict[str, Any], *, cluster_id: str
) -> tuple[ResolvedRegistryCredential | None, list[Problem]]:
    """Parse and check a RegistryCredential spec; returns (resolved, []) or (None, problems)."""
    try:
        model = RegistryCredentialSpec.model_validate(spec or {})
    except pydantic.ValidationError as error:
        return None, pydantic_problems(error)

    problems: list[Problem] = []
    ptc = model.pullThroughCache
    # The ecr-pullthroughcache/ secret rules hold only when the rule uses our secret as its
    # credential; ecr and ecr-public-premium rules authenticate with roles and leave it alone.
    credential_rule = rule_takes_credential(model)
    secret_name = model.secret.name or default_secret_name(namespace, name, pull_through_cache=credential_rule)
    problems += secret_name_problems(secret_name, "spec.secret.name", pull_through_cache=credential_rule)

    if model.secret.recoveryWindowInDays is not None and model.secret.forceDeleteWithoutRecovery:
        problems.append(
            Problem(
                reasons.INVALID_DELETION_SETTINGS,
                "spec.secret",
                "recoveryWindowInDays and forceDeleteWithoutRecovery are exclusive; set one",
            )
        )
    problems += _tag_problems(model.secret.tags)

    policy_name = model.grants.policyName or f"regaccess-{namespace}-{name}"
    if len(policy_name) > POLICY_NAME_MAX:
        problems.append(
            Problem(
                reasons.INVALID_POLICY_NAME,
                "spec.grants.policyName",
                f"the default policy name is {len(policy_name)} characters (IAM allows "
                f"{POLICY_NAME_MAX}); set spec.grants.policyName",
            )
        )
    seen: dict[str, str] = {}
    for index, role in enumerate(model.grants.executionRoles):
        key = _role_key(role)
        if key in seen:
            problems.append(
                Problem(
                    reasons.INVALID_SPEC,
                    f"spec.grants.executionRoles[{index}]",
                    f"role {role!r} is listed twice (also as {seen[key]!r})",
                )
            )
        seen[key] = role
    families = [c.family for c in model.consumers.ecsTaskDefinitions]
    for family in {f for f in families if families.count(f) > 1}:
        problems.append(
            Problem(reasons.INVALID_SPEC, "spec.consumers.ecsTaskDefinitions", f"family {family!r} is listed twice")
        )
    jobs = [c.name for c in model.consumers.batchJobDefinitions]
    for job in {j for j in jobs if jobs.count(j) > 1}:
        problems.append(
            Problem(reasons.INVALID_SPEC, "spec.consumers.batchJobDefinitions", f"job definition {job!r} is listed twice")
        )

    upstream_url = None
    if ptc is not None:
        if model.secret.kmsKeyId and credential_rule:
            problems.append(
                Problem(
                    reasons.INVALID_PULL_THROUGH_CACHE,
                    "spec.secret.kmsKeyId",
                    "a pull-through cache credential must use the default aws/secretsmanager key; "
                    "remove kmsKeyId",
                )
            )
        upstream_name = getattr(ptc.upstreamRegistry, "value", ptc.upstreamRegistry)
        upstream = UPSTREAMS[upstream_name]
        upstream_url = ptc.upstreamRegistryUrl or UPSTREAM_DEFAULT_URLS.get(upstream_name)
        if not upstream.kept:
            problems.append(Problem(reasons.UPSTREAM_TAKES_NO_CREDENTIAL, "spec.pullThroughCache.upstreamRegistry",
                                    MSG_UPSTREAM_NO_CREDENTIAL.format(upstream=upstream_name, why=upstream.refusal)))
        elif upstream_url is None:
            problems.append(
                Problem(
                    reasons.INVALID_PULL_THROUGH_CACHE,
                    "spec.pullThroughCache.upstreamRegistryUrl",
                    f"required for {upstream_name} ({URL_FORMS[upstream_name]})",
                )
            )
        elif upstream.url_pattern and not re.match(upstream.url_pattern, upstream_url):
            problems.append(
                Problem(
                    reasons.INVALID_PULL_THROUGH_CACHE,
                    "spec.pullThroughCache.upstreamRegistryUrl",
                    f"must be {URL_FORMS[upstream_name]} for {upstream_name}",
                )
            )
        elif upstream.url and upstream_url != upstream.url:
            problems.append(Problem(reasons.INVALID_PULL_THROUGH_CACHE, "spec.pullThroughCache.upstreamRegistryUrl",
                                    MSG_UPSTREAM_URL.format(url=upstream.url, upstream=upstream_name)))
        if upstream.kept:
            problems += _rule_role_problems(ptc, upstream_name, upstream)
    if problems:
        return None, problems
    return (
        ResolvedRegistryCredential(
            namespace=namespace,
            name=name,
            spec=model,
            secret_name=secret_name,
            policy_name=policy_name,
            owner=owner_value(cluster_id, namespace, name),
            upstream_url=upstream_url,
        ),
        [],
    )


def secret_value_problems(value: str) -> list[Problem]:
    size = len(value.encode("utf-8"))
    if size > SECRET_VALUE_MAX_BYTES:
        return [
            Problem(
                reasons.SECRET_VALUE_TOO_LARGE,
                "spec.source.secretRef",
                f"the credential is {size} bytes as JSON; Secrets Manager allows {SECRET_VALUE_MAX_BYTES}",
            )
        ]
    return []
