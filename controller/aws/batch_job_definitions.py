"""AWS Batch job definitions whose containers pull through ``repositoryCredentials``.

Called by ``controller.reconcile.wiring.sync_job_definitions``. Like ECS task
definitions, Batch revisions are immutable: "update" registers a new revision
copying every registrable field of the highest ACTIVE revision (the field list
comes from botocore's input shape of RegisterJobDefinition) and changing only
``containerProperties.repositoryCredentials``. Only single-container job
definitions (``containerProperties``) are supported; multi-node, ECS- and
EKS-properties definitions are reported, not touched.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import botocore.session

from controller.aws.base import ABSENT, Observation
from controller.aws.ecs_task_definitions import OWNER_TAG, RESERVED_TAG_PREFIX, references_secret

MAX_TAGS = 50
CREDENTIAL_FIELD = "containerProperties.repositoryCredentials"
NOT_FOUND_MESSAGE = "job definition {name} has no ACTIVE revision"
UNSUPPORTED_MESSAGE = (
    "job definition {revision} has no containerProperties (multi-node, ECS- and EKS-properties "
    "job definitions are not supported); nothing was registered"
)
NO_EXECUTION_ROLE_MESSAGE = (
    "job definition {revision} has no containerProperties.executionRoleArn; Batch needs an "
    "execution role to read repository credentials, so no revision was registered. Register a "
    "revision with an execution role"
)


@functools.cache
def registrable_fields() -> frozenset[str]:
    """Top-level parameters RegisterJobDefinition accepts, from botocore's service model."""
    model = botocore.session.get_session().get_service_model("batch")
    return frozenset(model.operation_model("RegisterJobDefinition").input_shape.members)


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class Latest:
    job_definition: dict[str, Any]

    @property
    def arn(self) -> str:
        return self.job_definition.get("jobDefinitionArn", "")

    @property
    def label(self) -> str:
        jd = self.job_definition
        return f"{jd.get('jobDefinitionName')}:{jd.get('revision')}"

    @property
    def container(self) -> dict[str, Any] | None:
        return self.job_definition.get("containerProperties")


def pick_latest(job_definitions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest ACTIVE revision (describe_job_definitions returns them in no promised order)."""
    active = [jd for jd in job_definitions if jd.get("status", "ACTIVE") == "ACTIVE"]
    return max(active, key=lambda jd: int(jd.get("revision", 0)), default=None)


def compare(job_definition: dict[str, Any], secret_arn: str, secret_name: str | None = None) -> tuple[str, ...]:
    container = job_definition.get("containerProperties") or {}
    value = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
    return () if references_secret(value, secret_arn, secret_name) else (CREDENTIAL_FIELD,)


def copied_tags(tags: dict[str, str] | None, owner: str | None) -> dict[str, str]:
    out = {k: v for k, v in (tags or {}).items() if not k.startswith(RESERVED_TAG_PREFIX)}
    if owner:
        out.pop(OWNER_TAG, None)
        # A full tag set is the user's; see ecs_task_definitions.copied_tags.
        if len(out) < MAX_TAGS:
            out[OWNER_TAG] = owner
    return out


def revision_request(latest: Latest, secret_arn: str, owner: str | None = None) -> dict[str, Any]:
    """The RegisterJobDefinition parameters: a copy of ``latest`` that references the secret."""
    fields = registrable_fields()
    request = {
        key: copy.deepcopy(value)
        for key, value in latest.job_definition.items()
        if key in fields and key != "tags" and value is not None
    }
    container = request.get("containerProperties")
    if container is not None:
        credentials = dict(container.get("repositoryCredentials") or {})
        credentials["credentialsParameter"] = secret_arn
        container["repositoryCredentials"] = credentials
    tags = copied_tags(latest.job_definition.get("tags"), owner)
    if tags:
        request["tags"] = tags
    return request


# --------------------------------------------------------------------------- AWS calls


def observe(client: Any, name: str) -> Observation:
    """The highest ACTIVE revision of ``name``; ABSENT when there is none (Batch answers an empty list)."""
    found: list[dict[str, Any]] = []
    paginator = client.get_paginator("describe_job_definitions")
    for page in paginator.paginate(jobDefinitionName=name, status="ACTIVE"):
        found.extend(page.get("jobDefinitions", []))
    latest = pick_latest(found)
    if latest is None:
        return ABSENT
    return Observation(exists=True, owned=True, observed={"latest": Latest(job_definition=latest)})


def register(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Register a revision; returns jobDefinitionName, jobDefinitionArn and revision."""
    response = client.register_job_definition(**request)
    return {k: response.get(k) for k in ("jobDefinitionName", "jobDefinitionArn", "revision")}
