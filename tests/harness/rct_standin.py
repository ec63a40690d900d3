"""A small, stateful stand-in for ECR's repository creation template API (moto lacks it).

Exactly four operations of ECR's JSON protocol (target prefix
``AmazonEC2ContainerRegistry_V20150921``): CreateRepositoryCreationTemplate,
DescribeRepositoryCreationTemplates, UpdateRepositoryCreationTemplate and
DeleteRepositoryCreationTemplate. ``awsserver`` mounts it in front of moto beside
the pull-through cache stand-in (``ptc_standin``, whose input validation, error
type and request parsing it shares), so boto3 talks to it over the wire; every
other ECR call goes to moto. tests/unit/test_harness_shapes.py checks its request
and response shapes and error codes against botocore's ECR model.

The rules it enforces are the documented ones:

- the model's input constraints (required ``prefix``, and ``appliedFor`` on
  create; lengths, patterns, enums) -> ValidationException;
- ``prefix`` unique per registry (TemplateAlreadyExistsException); an unknown
  prefix on Update / Delete -> TemplateNotFoundException; Describe with
  ``prefixes`` returns the ones that exist (the model declares no NotFound for
  it), paginated by ``maxResults`` / ``nextToken``;
- ``repositoryPolicy`` must be a JSON policy document (an object with a
  ``Statement``) -> InvalidParameterException; at most 10,240 characters (the
  model's bound, ValidationException);
- ``appliedFor`` values from REPLICATION / PULL_THROUGH_CACHE / CREATE_ON_PUSH,
  at least one;
- defaults as AWS sets them on create: ``imageTagMutability`` MUTABLE and
  ``encryptionConfiguration`` AES256;
- Update changes only the members it is given (an empty ``repositoryPolicy``
  clears the policy, as AWS does).

What it does not do: apply templates to repositories (moto's CreateRepository
knows nothing of them: the operator covers repositories under a prefix by
listing them, not by trusting the template), the per-registry template quota,
or validating ``customRoleArn`` and ``lifecyclePolicy`` beyond their lengths.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterable

from tests.harness.ptc_standin import (
    _decode_token,
    _encode_token,
    _STRING,
    INVALID_PARAMETER,
    REGISTRY_ID_PATTERN,
    TARGET_PREFIX,
    VALIDATION,
    StandInError,
    answer_json_request,
)
from tests.harness.ptc_standin import validate_input as validate_shared

OPERATIONS = frozenset({
    "CreateRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates",
    "UpdateRepositoryCreationTemplate",
    "DeleteRepositoryCreationTemplate",
})
ALREADY_EXISTS = "TemplateAlreadyExistsException"
NOT_FOUND = "TemplateNotFoundException"

# botocore's model (Prefix, RepositoryPolicyText, LifecyclePolicyTextForRepositoryCreationTemplate, RCTAppliedFor...).
PREFIX_PATTERN = r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
PREFIX_MIN, PREFIX_MAX = 1, 256
APPLIED_FOR = ("REPLICATION", "PULL_THROUGH_CACHE", "CREATE_ON_PUSH")
TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
MAX_POLICY = 10_240
MAX_LIFECYCLE = 30_720
MAX_DESCRIPTION = 256
MAX_ROLE = 2048
MAX_DESCRIBE_RESULTS = 1000
DEFAULT_DESCRIBE_RESULTS = 100
DEFAULTS = {"imageTagMutability": "MUTABLE", "encryptionConfiguration": {"encryptionType": "AES256"}}

EMITTABLE_ERRORS: dict[str, frozenset[str]] = {
    "CreateRepositoryCreationTemplate": frozenset({VALIDATION, INVALID_PARAMETER, ALREADY_EXISTS}),
    "DescribeRepositoryCreationTemplates": frozenset({VALIDATION, INVALID_PARAMETER}),
    "UpdateRepositoryCreationTemplate": frozenset({VALIDATION, INVALID_PARAMETER, NOT_FOUND}),
    "DeleteRepositoryCreationTemplate": frozenset({VALIDATION, NOT_FOUND}),
}

MSG_ALREADY_EXISTS = "The repository creation template with prefix '{prefix}' already exists in the registry with id '{registry}'"
MSG_NOT_FOUND = "The repository creation template with prefix '{prefix}' does not exist in the registry with id '{registry}'"
MSG_BAD_POLICY = "Invalid repository policy provided"
MSG_BAD_TOKEN = "Invalid nextToken"
# Request-level answers (bad JSON, unknown or missing fields) are the shared ones of
# tests.harness.ptc_standin, which validates both stand-ins' input.
MSG_BAD_JSON = "Request body is not a JSON object"

_PREFIX = {"type": _STRING, "required": True, "min": PREFIX_MIN, "max": PREFIX_MAX, "pattern": PREFIX_PATTERN}
_SETTINGS: dict[str, dict[str, Any]] = {
    "description": {"type": _STRING, "max": MAX_DESCRIPTION},
    "encryptionConfiguration": {"type": "structure"},
    "resourceTags": {"type": "list", "min": 0, "max": 50, "member": {"type": "structure"}},
    "imageTagMutability": {"type": _STRING, "enum": TAG_MUTABILITY},
    "imageTagMutabilityExclusionFilters": {"type": "list", "min": 1, "max": 5, "member": {"type": "structure"}},
    "repositoryPolicy": {"type": _STRING, "min": 0, "max": MAX_POLICY},
    "lifecyclePolicy": {"type": _STRING, "min": 0, "max": MAX_LIFECYCLE},
    "appliedFor": {"type": "list", "min": 1, "max": len(APPLIED_FOR),
                   "member": {"type": _STRING, "enum": APPLIED_FOR}},
    "customRoleArn": {"type": _STRING, "max": MAX_ROLE},
}
_INPUT_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "CreateRepositoryCreationTemplate": {
        "prefix": _PREFIX, **_SETTINGS, "appliedFor": {**_SETTINGS["appliedFor"], "required": True},
    },
    "DescribeRepositoryCreationTemplates": {
        "prefixes": {"type": "list", "min": 0, "max": 100, "member": {k: v for k, v in _PREFIX.items()
                                                                       if k != "required"}},
        "nextToken": {"type": _STRING},
        "maxResults": {"type": "integer", "min": 1, "max": MAX_DESCRIBE_RESULTS},
    },
    "UpdateRepositoryCreationTemplate": {"prefix": _PREFIX, **_SETTINGS},
    "DeleteRepositoryCreationTemplate": {"prefix": _PREFIX},
}
SETTINGS = tuple(_SETTINGS)


def input_fields(operation: str) -> dict[str, dict[str, Any]]:
    """The input constraints the stand-in enforces for one operation (read by the shape test)."""
    return _INPUT_FIELDS[operation]


def validate_input(operation: str, body: dict[str, Any]) -> None:
    validate_shared(operation, body, _INPUT_FIELDS)


def _check_policy(text: str) -> None:
    if text == "":
        return  # an empty policy clears it
    try:
        document = json.loads(text)
    except ValueError as error:
        raise StandInError(INVALID_PARAMETER, MSG_BAD_POLICY) from error
    if not isinstance(document, dict) or "Statement" not in document:
        raise StandInError(INVALID_PARAMETER, MSG_BAD_POLICY)


class RepositoryCreationTemplateStandIn:
    """The templates of every (registry, Region), behind one lock; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # (registryId, region) -> prefix -> template (the wire shape of RepositoryCreationTemplate)
        self._templates: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def reset(self) -> None:
        with self._lock:
            self._templates.clear()

    def templates(self, registry: str, region: str) -> list[dict[str, Any]]:
        """A copy of one registry's templates (for tests and debugging)."""
        with self._lock:
            return [json.loads(json.dumps(t)) for t in self._templates.get((registry, region), {}).values()]

    def handle(self, operation: str, body: dict[str, Any], *, account: str, region: str) -> dict[str, Any]:
        if operation not in OPERATIONS:
            raise KeyError(operation)
        if not isinstance(body, dict):
            raise StandInError(VALIDATION, MSG_BAD_JSON)
        validate_input(operation, body)
        if body.get("repositoryPolicy") is not None:
            _check_policy(body["repositoryPolicy"])
        with self._lock:
            templates = self._templates.setdefault((account, region), {})
            answer = getattr(self, "_" + operation)(body, templates, account)
            return {"registryId": account, **json.loads(json.dumps(answer))}

    def _CreateRepositoryCreationTemplate(self, body, templates, registry):  # noqa: N802 - AWS names
        prefix = body["prefix"]
        if prefix in templates:
            raise StandInError(ALREADY_EXISTS, MSG_ALREADY_EXISTS.format(prefix=prefix, registry=registry))
        now = self._clock()
        template = {"prefix": prefix, **DEFAULTS, **{k: body[k] for k in SETTINGS if body.get(k) is not None}}
        if template.get("repositoryPolicy") == "":
            del template["repositoryPolicy"]
        template.update(createdAt=now, updatedAt=now)
        templates[prefix] = template
        return {"repositoryCreationTemplate": template}

    def _DescribeRepositoryCreationTemplates(self, body, templates, registry):  # noqa: N802
        prefixes = body.get("prefixes")
        selected = ([templates[p] for p in dict.fromkeys(prefixes) if p in templates] if prefixes
                    else [templates[p] for p in sorted(templates)])
        start = _decode_token(body.get("nextToken"), len(selected), "rct")
        limit = body.get("maxResults") or DEFAULT_DESCRIBE_RESULTS
        answer: dict[str, Any] = {"repositoryCreationTemplates": selected[start:start + limit]}
        if start + limit < len(selected):
            answer["nextToken"] = _encode_token(start + limit, "rct")
        return answer

    def _UpdateRepositoryCreationTemplate(self, body, templates, registry):  # noqa: N802
        prefix = body["prefix"]
        template = templates.get(prefix)
        if template is None:
            raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
        for key in SETTINGS:
            if body.get(key) is not None:
                template[key] = body[key]
        if template.get("repositoryPolicy") == "":
            del template["repositoryPolicy"]
        template["updatedAt"] = self._clock()
        return {"repositoryCreationTemplate": template}

    def _DeleteRepositoryCreationTemplate(self, body, templates, registry):  # noqa: N802
        prefix = body["prefix"]
        template = templates.pop(prefix, None)
        if template is None:
            raise StandInError(NOT_FOUND, MSG_NOT_FOUND.format(prefix=prefix, registry=registry))
        return {"repositoryCreationTemplate": template}

    # ------------------------------------------------------------------ WSGI

    def wants(self, environ: dict[str, Any]) -> bool:
        prefix, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        return prefix == TARGET_PREFIX and operation in OPERATIONS

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return answer_json_request(self.handle, environ, start_response)


__all__ = ["RepositoryCreationTemplateStandIn", "OPERATIONS", "REGISTRY_ID_PATTERN"]
