"""ECS task definitions whose containers pull through ``repositoryCredentials``.

Called by ``controller.reconcile.wiring.sync_task_definitions``. A task
definition revision is immutable, so "update" means registering a new revision
that is a faithful copy of the latest ACTIVE one with only
``repositoryCredentials`` of the chosen containers changed. The copy is a pure
function (``revision_request``); the set of fields it copies is derived from
botocore's own input shape of RegisterTaskDefinition, so a field AWS adds later
is copied without a code change and read-only output fields (ARN, revision,
status, requiresAttributes, compatibilities, registeredAt/By, ...) never are.

Revisions are never deregistered here: see ``controller.reconcile.wiring``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.exceptions import ClientError

from controller.aws.base import ABSENT, Observation

OWNER_TAG = "regaccess.io/owner"
# AWS reserves the aws: prefix; such tags (e.g. from CloudFormation) come back from
# describe but RegisterTaskDefinition rejects them, so the copy leaves them out.
RESERVED_TAG_PREFIX = "aws:"
MAX_TAGS = 50

CREDENTIAL_FIELD = "containerDefinitions[{container}].repositoryCredentials"
UNKNOWN_CONTAINERS_MESSAGE = (
    "task definition {revision} has no container named {unknown}; its containers are {known}"
)
NO_EXECUTION_ROLE_MESSAGE = (
    "task definition {revision} has no executionRoleArn; ECS needs an execution role to read "
    "repository credentials, so no revision was registered. Register a revision with an "
    "execution role"
)
FAMILY_MISSING_MESSAGE = "task definition family {family} has no ACTIVE revision"


@functools.cache
def registrable_fields() -> frozenset[str]:
    """Top-level parameters RegisterTaskDefinition accepts, from botocore's service model."""
    model = botocore.session.get_session().get_service_model("ecs")
    return frozenset(model.operation_model("RegisterTaskDefinition").input_shape.members)


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class Latest:
    """The latest ACTIVE revision of a family, as describe_task_definition returns it."""

    task_definition: dict[str, Any]
    tags: list[dict[str, str]]

    @property
    def arn(self) -> str:
        return self.task_definition.get("taskDefinitionArn", "")

    @property
    def label(self) -> str:
        td = self.task_definition
        return f"{td.get('family')}:{td.get('revision')}"


def references_secret(value: str | None, secret_arn: str, secret_name: str | None = None) -> bool:
    """Whether a credentialsParameter points at our secret.

    ECS accepts the full ARN, or the secret's name (or partial ARN, without AWS's
    6-character suffix) in the same account and Region; a CI pipeline using either
    form is recognised rather than fought.
    """
    if not value:
        return False
    if value == secret_arn:
        return True
    partial = secret_arn[:-7] if len(secret_arn) > 7 and secret_arn[-7] == "-" else None
    return value in {v for v in (secret_name, partial) if v}


def chosen_containers(task_definition: dict[str, Any], wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """(chosen container names in definition order, names asked for that do not exist)."""
    names = [c.get("name", "") for c in task_definition.get("containerDefinitions", [])]
    if not wanted:
        return names, []
    unknown = [w for w in wanted if w not in names]
    return [n for n in names if n in wanted], unknown


def compare(task_definition: dict[str, Any], chosen: list[str], secret_arn: str,
            secret_name: str | None = None) -> tuple[str, ...]:
    """Named differences: each chosen container that does not reference the secret."""
    differences = []
    for container in task_definition.get("containerDefinitions", []):
        if container.get("name") not in chosen:
            continue
        value = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
        if not references_secret(value, secret_arn, secret_name):
            differences.append(CREDENTIAL_FIELD.format(container=container.get("name")))
    return tuple(differences)


def copied_tags(tags: list[dict[str, str]], owner: str | None) -> list[dict[str, str]]:
    """The revision's own tags minus aws:-reserved ones, plus (or updating) our owner tag."""
    out = [dict(t) for t in tags or [] if not str(t.get("key", "")).startswith(RESERVED_TAG_PREFIX)]
    if owner:
        out = [t for t in out if t.get("key") != OWNER_TAG]
        # A full tag set is the user's; dropping one of theirs to add ours would not be a
        # faithful copy, so ownership then stays unrecorded on this revision.
        if len(out) < MAX_TAGS:
            out.append({"key": OWNER_TAG, "value": owner})
    return out


def revision_request(latest: Latest, chosen: list[str], secret_arn: str, owner: str | None = None) -> dict[str, Any]:
    """The RegisterTaskDefinition parameters: a copy of ``latest`` that references the secret.

    Every registrable field is copied as is (deep copies; the observation is not
    mutated); only the chosen containers' repositoryCredentials change.
    """
    fields = registrable_fields()
    request = {
        key: copy.deepcopy(value)
        for key, value in latest.task_definition.items()
        if key in fields and key != "tags" and value is not None
    }
    for container in request.get("containerDefinitions", []):
        if container.get("name") in chosen:
            credentials = dict(container.get("repositoryCredentials") or {})
            credentials["credentialsParameter"] = secret_arn
            container["repositoryCredentials"] = credentials
    tags = copied_tags(latest.tags, owner)
    if tags:
        request["tags"] = tags
    return request


# --------------------------------------------------------------------------- AWS calls


def observe(client: Any, family: str) -> Observation:
    """The latest ACTIVE revision of ``family`` with its tags; ABSENT when there is none.

    ECS answers a family without ACTIVE revisions with a plain ClientException
    ("Unable to describe task definition."), not a NotFound code.
    """
    try:
        response = client.describe_task_definition(taskDefinition=family, include=["TAGS"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ClientException":
            return ABSENT
        raise
    latest = Latest(task_definition=response["taskDefinition"], tags=response.get("tags") or [])
    return Observation(exists=True, owned=True, observed={"latest": latest})


def register(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Register a revision; returns the new taskDefinition (ARN, revision)."""
    return client.register_task_definition(**request)["taskDefinition"]
