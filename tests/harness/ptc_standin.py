"""A small, stateful stand-in for ECR's pull-through cache rule API (moto lacks it).

It implements exactly five operations of ECR's JSON protocol (target prefix
``AmazonEC2ContainerRegistry_V20150921``): CreatePullThroughCacheRule,
DescribePullThroughCacheRules, UpdatePullThroughCacheRule,
DeletePullThroughCacheRule and ValidatePullThroughCacheRule. ``awsserver``
mounts it in front of moto, so boto3 talks to it over the wire exactly as it
would to AWS; every other ECR call goes to moto.

The rules it enforces are the documented ones (../shared/DESIGN.md and the ECR
API reference), and tests/unit/test_harness_shapes.py checks its request and
response shapes and error codes against botocore's ECR service model:

- input constraints of the model (required members, types, lengths, patterns,
  enums) -> ValidationException, as AWS's request validation answers;
- ``ecrRepositoryPrefix``: 2-30 characters of ECR's pattern, or ``ROOT``;
  unique per registry (PullThroughCacheRuleAlreadyExistsException);
- at most 50 rules per registry (LimitExceededException);
- the upstream is inferred from / checked against ``upstreamRegistryUrl``
  (unknown URL -> UnsupportedUpstreamRegistryException);
- ``credentialArn`` is required for docker-hub, github-container-registry,
  gitlab-container-registry, azure-container-registry and chainguard, refused for the
  others (InvalidParameterException); it must name a Secrets Manager secret
  called ``ecr-pullthroughcache/...`` that exists in moto's secretsmanager
  backend of the rule's account and Region (SecretNotFoundException), is not
  scheduled for deletion (UnableToAccessSecretException) and is not encrypted
  with a customer managed KMS key (UnableToDecryptSecretValueException);
- ``ecr-public-premium`` (``ecr-premium.aws.com``) takes no ``credentialArn``;
  ``customRoleArn`` and ``upstreamRoleArn`` go together there (neither: ECR's
  service-linked role), and ``upstreamRoleArn`` is refused for every other upstream
  (InvalidParameterException), as botocore's model documents;
- UpdatePullThroughCacheRule changes only ``credentialArn`` / ``customRoleArn`` /
  ``upstreamRoleArn`` (the model has no ``upstreamRegistryUrl`` for it: changing the
  upstream means delete + create); ``upstreamRoleArn`` needs ``customRoleArn`` in the
  same request;
- an unknown prefix -> PullThroughCacheRuleNotFoundException.

What it does not do: pull images, create cache repositories, check the upstream
credential against the real upstream (Validate only re-checks the secret), or
validate ``customRoleArn`` / ``upstreamRoleArn`` beyond their length (no IAM lookup).

The core (``PullThroughCacheStandIn.handle``) takes and returns plain dicts, so
the unit tier can check shapes without a server; ``wsgi_app`` wraps it.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
OPERATIONS = frozenset({
    "CreatePullThroughCacheRule",
    "DescribePullThroughCacheRules",
    "UpdatePullThroughCacheRule",
    "DeletePullThroughCacheRule",
    "ValidatePullThroughCacheRule",
})
MAX_RULES_PER_REGISTRY = 50
MAX_DESCRIBE_RESULTS = 1000
DEFAULT_DESCRIBE_RESULTS = 100
MAX_DESCRIBE_PREFIXES = 100

# ECR's own pattern and bounds, copied from botocore's model (PullThroughCacheRuleRepositoryPrefix,
# CredentialArn, RegistryId); the shape test fails if botocore's model changes them.
PREFIX_PATTERN = r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
PREFIX_MIN, PREFIX_MAX = 2, 30
CREDENTIAL_ARN_PATTERN = (
    r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
)
CREDENTIAL_ARN_MIN, CREDENTIAL_ARN_MAX = 50, 612
REGISTRY_ID_PATTERN = r"[0-9]{12}"
CUSTOM_ROLE_ARN_MAX = 2048
UPSTREAM_REGISTRIES = (
    "ecr", "ecr-public", "ecr-public-premium", "quay", "k8s", "docker-hub", "github-container-registry",
    "azure-container-registry", "gitlab-container-registry", "chainguard",
)
CREDENTIAL_UPSTREAMS = frozenset({
    "docker-hub", "github-container-registry", "gitlab-container-registry", "azure-container-registry",
    "chainguard",
})
PREMIUM = "ecr-public-premium"
# The members a rule has only when they were given (Describe leaves them out otherwise).
OPTIONAL_MEMBERS = ("credentialArn", "customRoleArn", "upstreamRoleArn", "upstreamRepositoryPrefix")
_FIXED_UPSTREAM_URLS = {
    "public.ecr.aws": "ecr-public",
    "ecr-premium.aws.com": "ecr-public-premium",
    "quay.io": "quay",
    "registry.k8s.io": "k8s",
    "registry-1.docker.io": "docker-hub",
    "ghcr.io": "github-container-registry",
    "registry.gitlab.com": "gitlab-container-registry",
    "cgr.dev": "chainguard",
}
_AZURE_URL = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")
_ECR_URL = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
_SECRET_ARN = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):secret:(?P<rest>.+)$"
)

# Error codes (each declared in botocore's model for the operations that emit it).
VALIDATION = "ValidationException"
INVALID_PARAMETER = "InvalidParameterException"
ALREADY_EXISTS = "PullThroughCacheRuleAlreadyExistsException"
NOT_FOUND = "PullThroughCacheRuleNotFoundException"
LIMIT_EXCEEDED = "LimitExceededException"
UNSUPPORTED_UPSTREAM = "UnsupportedUpstreamRegistryException"
SECRET_NOT_FOUND = "SecretNotFoundException"
UNABLE_TO_ACCESS_SECRET = "UnableToAccessSecretException"
UNABLE_TO_DECRYPT = "UnableToDecryptSecretValueException"

# The codes each operation can emit; the shape test checks each against the model.
EMITTABLE_ERRORS: dict[str, frozenset[str]] = {
    "CreatePullThroughCacheRule": frozenset({
        VALIDATION, INVALID_PARAMETER, ALREADY_EXISTS, LIMIT_EXCEEDED, UNSUPPORTED_UPSTREAM,
        SECRET_NOT_FOUND, UNABLE_TO_ACCESS_SECRET, UNABLE_TO_DECRYPT,
    }),
    "DescribePullThroughCacheRules": frozenset({VALIDATION, INVALID_PARAMETER, NOT_FOUND}),
    "UpdatePullThroughCacheRule": frozenset({
        VALIDATION, INVALID_PARAMETER, NOT_FOUND, SECRET_NOT_FOUND, UNABLE_TO_ACCESS_SECRET,
        UNABLE_TO_DECRYPT,
    }),
    "DeletePullThroughCacheRule": frozenset({VALIDATION, NOT_FOUND}),
    "ValidatePullThroughCacheRule": frozenset({VALIDATION, NOT_FOUND}),
}

MSG_REQUIRED = "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
MSG_TYPE = "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must be of type {type}"
MSG_LENGTH = (
    "1 validation error detected: Value at '{field}' failed to satisfy constraint: "
    "Member must have length between {low} and {high}"
)
MSG_PATTERN = (
    "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
    "Member must satisfy regular expression pattern: {pattern}"
)
MSG_ENUM = (
    "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
    "Member must satisfy enum value set: [{values}]"
)
MSG_RANGE = "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must be between {low} and {high}"
MSG_UNKNOWN_FIELD = "Unknown field '{field}'"
MSG_ALREADY_EXISTS = "The pull through cache rule with prefix '{prefix}' already exists in the registry with id '{registry}'"
MSG_NOT_FOUND = "The pull through cache rule with prefix '{prefix}' does not exist in the registry with id '{registry}'"
MSG_LIMIT = "The maximum number of pull through cache rules ({limit}) has been reached for the registry with id '{registry}'"
MSG_UNSUPPORTED = "The upstream registry URL '{url}' is not supported"
MSG_UPSTREAM_MISMATCH = "The upstream registry URL '{url}' does not match the upstream registry '{upstream}'"
MSG_CREDENTIAL_REQUIRED = "A credentialArn is required for the upstream registry '{upstream}'"
MSG_CREDENTIAL_REFUSED = "The upstream registry '{upstream}' does not take a credentialArn"
MSG_UPSTREAM_PREFIX_REFUSED = "upstreamRepositoryPrefix is only supported for the upstream registry 'ecr'"
MSG_NOTHING_TO_UPDATE = "Specify credentialArn, customRoleArn or upstreamRoleArn to update"
MSG_UPSTREAM_ROLE_REFUSED = "upstreamRoleArn is only supported for the upstream registry 'ecr-public-premium'"
MSG_ROLES_TOGETHER = "Specify customRoleArn and upstreamRoleArn together for the upstream registry 'ecr-public-premium'"
MSG_SECRET_NOT_FOUND = "The secret '{arn}' was not found in the account and Region of the registry"
MSG_SECRET_DELETED = "The secret '{arn}' is scheduled for deletion and cannot be accessed"
MSG_SECRET_KMS = "The secret '{arn}' is encrypted with a customer managed key; use the aws/secretsmanager key"
MSG_BAD_TOKEN = "Invalid nextToken"
MSG_BAD_JSON = "Request body is not a JSON object"


class StandInError(Exception):
    """An AWS error answer: code and message, rendered as ECR's JSON error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SecretInfo:
    """What the stand-in needs to know about a Secrets Manager secret."""

    arn: str
    deleted: bool = False
    kms_key_id: str | None = None


SecretLookup = Callable[[str, str, str], "SecretInfo | None"]  # (account, region, arn)

_DEFAULT_KMS_KEYS = (None, "", "alias/aws/secretsmanager")


def moto_secret_lookup(account: str, region: str, arn: str) -> SecretInfo | None:
    """Find a secret in moto's secretsmanager backend of (account, region), by full or partial ARN."""
    from moto.secretsmanager.models import secretsmanager_backends

    match = _SECRET_ARN.match(arn)
    if not match or match["account"] != account or match["region"] != region:
        return None  # ECR reads the secret in the rule's own account and Region only
    backend = secretsmanager_backends[account][region]
    secret = backend.secrets.get(arn)
    if secret is None:
        return None
    kms = getattr(secret, "kms_key_id", None)
    return SecretInfo(arn=secret.arn, deleted=bool(getattr(secret, "deleted_date", None)), kms_key_id=kms)


# Input constraints per operation, mirroring botocore's model; the shape test compares them.
_STRING = "string"
_INPUT_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "CreatePullThroughCacheRule": {
        "ecrRepositoryPrefix": {"type": _STRING, "required": True, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                "pattern": PREFIX_PATTERN},
        "upstreamRegistryUrl": {"type": _STRING, "required": True},
        "registryId": {"type": _STRING, "pattern": REGISTRY_ID_PATTERN},
        "upstreamRegistry": {"type": _STRING, "enum": UPSTREAM_REGISTRIES},
        "credentialArn": {"type": _STRING, "min": CREDENTIAL_ARN_MIN, "max": CREDENTIAL_ARN_MAX,
                          "pattern": CREDENTIAL_ARN_PATTERN},
        "customRoleArn": {"type": _STRING, "max": CUSTOM_ROLE_ARN_MAX},
        "upstreamRoleArn": {"type": _STRING, "max": CUSTOM_ROLE_ARN_MAX},
        "upstreamRepositoryPrefix": {"type": _STRING, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                     "pattern": PREFIX_PATTERN},
    },
    "DescribePullThroughCacheRules": {
        "registryId": {"type": _STRING, "pattern": REGISTRY_ID_PATTERN},
        "ecrRepositoryPrefixes": {"type": "list", "min": 1, "max": MAX_DESCRIBE_PREFIXES,
                                  "member": {"type": _STRING, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                             "pattern": PREFIX_PATTERN}},
        "nextToken": {"type": _STRING},
        "maxResults": {"type": "integer", "min": 1, "max": MAX_DESCRIBE_RESULTS},
    },
    "UpdatePullThroughCacheRule": {
        "registryId": {"type": _STRING, "pattern": REGISTRY_ID_PATTERN},
        "ecrRepositoryPrefix": {"type": _STRING, "required": True, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                "pattern": PREFIX_PATTERN},
        "credentialArn": {"type": _STRING, "min": CREDENTIAL_ARN_MIN, "max": CREDENTIAL_ARN_MAX,
                          "pattern": CREDENTIAL_ARN_PATTERN},
        "customRoleArn": {"type": _STRING, "max": CUSTOM_ROLE_ARN_MAX},
        "upstreamRoleArn": {"type": _STRING, "max": CUSTOM_ROLE_ARN_MAX},
    },
    "DeletePullThroughCacheRule": {
        "ecrRepositoryPrefix": {"type": _STRING, "required": True, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                "pattern": PREFIX_PATTERN},
        "registryId": {"type": _STRING, "pattern": REGISTRY_ID_PATTERN},
    },
    "ValidatePullThroughCacheRule": {
        "ecrRepositoryPrefix": {"type": _STRING, "required": True, "min": PREFIX_MIN, "max": PREFIX_MAX,
                                "pattern": PREFIX_PATTERN},
        "registryId": {"type": _STRING, "pattern": REGISTRY_ID_PATTERN},
    },
}


def input_fields(operation: str) -> dict[str, dict[str, Any]]:
    """The input constraints the stand-in enforces for one operation (read by the shape test)."""
    return _INPUT_FIELDS[operation]


def _check_value(field: str, value: Any, rule: dict[str, Any]) -> None:
    kind = rule["type"]
    if kind == _STRING:
        if not isinstance(value, str):
            raise StandInError(VALIDATION, MSG_TYPE.format(field=field, type="string"))
        low, high = rule.get("min", 0), rule.get("max")
        if len(value) < low or (high is not None and len(value) > high):
            raise StandInError(VALIDATION, MSG_LENGTH.format(field=field, low=low, high=high or "unbounded"))
        if "pattern" in rule and not re.search(rule["pattern"], value):
            raise StandInError(VALIDATION, MSG_PATTERN.format(value=value, field=field, pattern=rule["pattern"]))
        if "enum" in rule and value not in rule["enum"]:
            raise StandInError(VALIDATION, MSG_ENUM.format(value=value, field=field, values=", ".join(rule["enum"])))
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise StandInError(VALIDATION, MSG_TYPE.format(field=field, type="integer"))
        if not rule["min"] <= value <= rule["max"]:
            raise StandInError(VALIDATION, MSG_RANGE.format(field=field, low=rule["min"], high=rule["max"]))
    elif kind == "list":
        if not isinstance(value, list):
            raise StandInError(VALIDATION, MSG_TYPE.format(field=field, type="list"))
        if not rule["min"] <= len(value) <= rule["max"]:
            raise StandInError(VALIDATION, MSG_LENGTH.format(field=field, low=rule["min"], high=rule["max"]))
        for index, item in enumerate(value):
            _check_value(f"{field}.{index + 1}.member", item, rule["member"])


def validate_input(operation: str, body: dict[str, Any],
                   fields_of: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
    """Enforce the model's input constraints, as AWS's request validation does.

    ``fields_of``: another stand-in's table of the same form (the creation-template
    stand-in); structures are checked for their type only, their members by the caller."""
    fields = (fields_of or _INPUT_FIELDS)[operation]
    for name in body:
        if name not in fields:
            raise StandInError(VALIDATION, MSG_UNKNOWN_FIELD.format(field=name))
    for name, rule in fields.items():
        if name not in body or body[name] is None:
            if rule.get("required"):
                raise StandInError(VALIDATION, MSG_REQUIRED.format(field=name))
            continue
        if rule["type"] == "structure":
            if not isinstance(body[name], dict):
                raise StandInError(VALIDATION, f"Value at '{name}' must be a structure")
            continue
        if rule["type"] == "list" and rule["member"]["type"] == "structure":
            if not isinstance(body[name], list) or not all(isinstance(i, dict) for i in body[name]):
                raise StandInError(VALIDATION, f"Value at '{name}' must be a list of structures")
            continue
        _check_value(name, body[name], rule)


def infer_upstream(url: str) -> str | None:
    """The upstream registry an upstreamRegistryUrl belongs to, or None when ECR does not support it."""
    if url in _FIXED_UPSTREAM_URLS:
        return _FIXED_UPSTREAM_URLS[url]
    if _AZURE_URL.match(url):
        return "azure-container-registry"
    if _ECR_URL.match(url):
        return "ecr"
    return None


class PullThroughCacheStandIn:
    """The rules of every (registry, Region), behind one lock; thread-safe."""

    def __init__(self, secret_lookup: SecretLookup = moto_secret_lookup,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret_lookup = secret_lookup
        self._clock = clock
        self._lock = threading.Lock()
        # (registryId, region) -> prefix -> rule (the wire shape of PullThroughCacheRule)
        self._rules: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self, registry: str, region: str) -> list[dict[str, Any]]:
        """A copy of one registry's rules (for tests and debugging)."""
        with self._lock:
            return [dict(rule) for rule in self._rules.get((registry, region), {}).values()]

    def handle(self, operation: str, body: dict[str, Any], *, account: str, region: str) -> dict[str, Any]:
        """Run one operation; returns the response body or raises StandInError."""
        if operation not in OPERATIONS:
            raise KeyError(operation)
        if not isinstance(body, dict):
            raise StandInError(VALIDATION, MSG_BAD_JSON)
        validate_input(operation, body)
        registry = body.get("registryId") or account
        with self._lock:
            rules = self._rules.setdefault((registry, region), {})
            handler = getattr(self, "_" + operation)
            return handler(body, rules, registry, region)

    # ------------------------------------------------------------------ operations

    def _check_secret(self, arn: str, registry: str, region: str) -> None:
        secret = self._secret_lookup(registry, region, arn)
        if secret is None:
            raise StandInError(SECRET_NOT_FOUND, MSG_SECRET_NOT_FOUND.format(arn=arn))
        if secret.deleted:
            raise StandInError(UNABLE_TO_ACCESS_SECRET, MSG_SECRET_DELETED.format(arn=arn))
        if secret.kms_key_id not in _DEFAULT_KMS_KEYS:
            raise StandInError(UNABLE_TO_DECRYPT, MSG_SECRET_KMS.format(arn=arn))

    def _CreatePullThroughCacheRule(self, body, rules, registry, region):  # noqa: N802 - AWS names
        prefix = body["ecrRepositoryPrefix"]
        url = body["upstreamRegistryUrl"]
        inferred = infer_upstream(url)
        if inferred is None:
            raise StandInError(UNSUPPORTED_UPSTREAM, MSG_UNSUPPORTED.format(url=url))
        upstream = body.get("upstreamRegistry") or inferred
        if upstream != inferred:
            raise StandInError(INVALID_PARAMETER, MSG_UPSTREAM_MISMATCH.format(url=url, upstream=upstream))
        credential = body.get("credentialArn")
        if upstream in CREDENTIAL_UPSTREAMS and not credential:
            raise StandInError(INVALID_PARAMETER, MSG_CREDENTIAL_REQUIRED.format(upstream=upstream))
        if upstream not in CREDENTIAL_UPSTREAMS and credential:
            raise StandInError(INVALID_PARAMETER, MSG_CREDENTIAL_REFUSED.format(upstream=upstream))
        if body.get("upstreamRepositoryPrefix") and upstream != "ecr":
            raise StandInError(INVALID_PARAMETER, MSG_UPSTREAM_PREFIX_REFUSED)
        if body.get("upstreamRoleArn") and upstream != PREMIUM:
            raise StandInError(INVALID_PARAMETER, MSG_UPSTREAM_ROLE_REFUSED)
        if upstream == PREMIUM and bool(body.get("customRoleArn")) != bool(body.get("upstreamRoleArn")):
            raise StandInError(INVALID_PARAMETER, MSG_ROLES_TOGETHER)
        if prefix in rules:
            raise StandInError(ALREADY_EXISTS, MSG_ALREADY_EXISTS.format(prefix=prefix, registry=registry))
        if len(rules) >= MAX_RULES_PER_REGISTRY:
            raise StandInError(LIMIT_EXCEEDED, MSG_LIMIT.format(limit=MAX_RULES_PER_REGISTRY, registry=registry))
        if credential:
            self._check_secret(credential, registry, region)
        now = self._clock()
        rule = {
            "ecrRepositoryPrefix": prefix,
            "upstreamRegistryUrl": url,
            "createdAt": now,
            "registryId": registry,
            "upstreamRegistry": upstream,
            "updatedAt": now,
        }
        for optional in OPTIONAL_MEMBERS:
            if body.get(optional):
                rule[optional] = body[optional]
        rules[prefix] = rule
        return {k: v for k, v in rule.items() if k != "updatedAt"}

    def _DescribePullThroughCacheRules(self, body, rules, registry, region):  # noqa: N802
        prefixes = body.get("ecrRepositoryPrefixes")
        if prefixes:
            for prefix in prefixes:
                if prefix not in rules:
                    raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
            selected = [rules[p] for p in dict.fromkeys(prefixes)]
        else:
            selected = [rules[p] for p in sorted(rules)]
        start = _decode_token(body.get("nextToken"), len(selected))
        limit = body.get("maxResults") or DEFAULT_DESCRIBE_RESULTS
        page = selected[start:start + limit]
        answer: dict[str, Any] = {"pullThroughCacheRules": [dict(rule) for rule in page]}
        if start + limit < len(selected):
            answer["nextToken"] = _encode_token(start + limit)
        return answer

    def _UpdatePullThroughCacheRule(self, body, rules, registry, region):  # noqa: N802
        prefix = body["ecrRepositoryPrefix"]
        rule = rules.get(prefix)
        if rule is None:
            raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
        credential = body.get("credentialArn")
        role = body.get("customRoleArn")
        upstream_role = body.get("upstreamRoleArn")
        if not credential and not role and not upstream_role:
            raise StandInError(INVALID_PARAMETER, MSG_NOTHING_TO_UPDATE)
        if credential and rule["upstreamRegistry"] not in CREDENTIAL_UPSTREAMS:
            raise StandInError(INVALID_PARAMETER, MSG_CREDENTIAL_REFUSED.format(upstream=rule["upstreamRegistry"]))
        if upstream_role and rule["upstreamRegistry"] != PREMIUM:
            raise StandInError(INVALID_PARAMETER, MSG_UPSTREAM_ROLE_REFUSED)
        if upstream_role and not role:
            raise StandInError(INVALID_PARAMETER, MSG_ROLES_TOGETHER)
        if credential:
            self._check_secret(credential, registry, region)
            rule["credentialArn"] = credential
        if role:
            rule["customRoleArn"] = role
        if upstream_role:
            rule["upstreamRoleArn"] = upstream_role
        rule["updatedAt"] = self._clock()
        answer = {"ecrRepositoryPrefix": prefix, "registryId": registry, "updatedAt": rule["updatedAt"]}
        for optional in OPTIONAL_MEMBERS:
            if rule.get(optional):
                answer[optional] = rule[optional]
        return answer

    def _DeletePullThroughCacheRule(self, body, rules, registry, region):  # noqa: N802
        prefix = body["ecrRepositoryPrefix"]
        rule = rules.pop(prefix, None)
        if rule is None:
            raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
        return {k: v for k, v in rule.items() if k not in ("updatedAt", "upstreamRegistry")}

    def _ValidatePullThroughCacheRule(self, body, rules, registry, region):  # noqa: N802
        prefix = body["ecrRepositoryPrefix"]
        rule = rules.get(prefix)
        if rule is None:
            raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
        answer = {
            "ecrRepositoryPrefix": prefix,
            "registryId": registry,
            "upstreamRegistryUrl": rule["upstreamRegistryUrl"],
            "isValid": True,
        }
        for optional in OPTIONAL_MEMBERS:
            if rule.get(optional):
                answer[optional] = rule[optional]
        if rule.get("credentialArn"):
            try:
                self._check_secret(rule["credentialArn"], registry, region)
            except StandInError as error:
                # Validate reports a broken credential in the answer, not as an error.
                answer["isValid"] = False
                answer["failure"] = error.message
        return answer

    # ------------------------------------------------------------------ WSGI

    def wants(self, environ: dict[str, Any]) -> bool:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix, _, operation = target.partition(".")
        return prefix == TARGET_PREFIX and operation in OPERATIONS

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer one ECR JSON request for the five operations (``wants(environ)`` must be true)."""
        return answer_json_request(self.handle, environ, start_response)


def answer_json_request(handle: Callable[..., dict[str, Any]], environ: dict[str, Any],
                        start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One ECR JSON-protocol request answered by a stand-in's ``handle``, errors as ECR sends them."""
    operation = environ["HTTP_X_AMZ_TARGET"].partition(".")[2]
    account, region = request_account_region(environ)
    try:
        try:
            body = json.loads(_read_body(environ) or b"{}")
        except ValueError as error:
            raise StandInError(VALIDATION, MSG_BAD_JSON) from error
        status, answer = 200, handle(operation, body, account=account, region=region)
        headers = []
    except StandInError as error:
        status, answer = error.status, {"__type": error.code, "message": error.message}
        headers = [("x-amzn-ErrorType", error.code)]
    payload = json.dumps(answer).encode()
    headers += [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(payload))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", headers)
    return [payload]


def _encode_token(offset: int, kind: str = "ptc") -> str:
    """A paging token as ECR's are: opaque to the client; ``kind`` keeps each stand-in's apart."""
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()


def _decode_token(token: str | None, total: int, kind: str = "ptc") -> int:
    if not token:
        return 0
    try:
        found, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        offset = int(number)
    except (ValueError, UnicodeDecodeError) as error:
        raise StandInError(INVALID_PARAMETER, MSG_BAD_TOKEN) from error
    if found != kind or not 0 <= offset <= total:
        raise StandInError(INVALID_PARAMETER, MSG_BAD_TOKEN)
    return offset


_CREDENTIAL_SCOPE = re.compile(r"Credential=(?P<key>[^/,\s]+)/[0-9]{8}/(?P<region>[a-z0-9-]+)/")
DEFAULT_REGION = "us-east-1"


def request_account_region(environ: dict[str, Any]) -> tuple[str, str]:
    """The caller's account and Region, decided the way moto decides them."""
    import os

    from moto.core import DEFAULT_ACCOUNT_ID

    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region = match["region"] if match else DEFAULT_REGION
    if os.environ.get("MOTO_ACCOUNT_ID"):
        return os.environ["MOTO_ACCOUNT_ID"], region
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"], region
    if match:
        from moto.iam.models import get_account_id_from

        return get_account_id_from(match["key"]), region
    return DEFAULT_ACCOUNT_ID, region


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""
