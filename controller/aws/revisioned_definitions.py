"""Revisioned definitions: ECS task definitions and AWS Batch job definitions, one adapter.

Both services keep a definition as a series of immutable revisions, and both let
a container pull from a private registry through
``repositoryCredentials.credentialsParameter``. So one adapter of
``controller.aws.protocol.Kind`` serves both, driven by one ``Definitions`` row
per service (``TASK_DEFINITIONS``, ``JOB_DEFINITIONS``): its describe and
register calls, where the containers are, where the execution role is, the tag
format and the messages. Called by ``controller.reconcile.definitions``.

- ``observe`` reads the latest ACTIVE revision (absent when there is none) and
  reports its owner (the ``regaccess.io/owner`` tag of that revision) and one
  ``Difference`` per chosen container whose credentialsParameter does not
  reference the secret (observed: what it references now, or None).
- ``update`` (and ``adopt``) registers a new revision, a faithful copy of the
  latest one with only the chosen containers' repositoryCredentials changed. The
  copied fields come from botocore's input shape of the register operation, so a
  field AWS adds later is copied without a code change and read-only output
  fields (ARN, revision, status, registeredAt, ...) never are.
- ``predict`` says what a register would return: the next revision number and a
  placeholder ARN.
- Revisions are never created from nothing (the definition belongs to its user)
  and never deregistered (running services and queued jobs use them): ``create``
  and ``delete`` refuse; see ``controller.reconcile.definitions``.

Facts only: which revision counts as ours is decided in
``controller.reconcile.definitions`` and ``controller.reconcile.loop``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import botocore.session
from botocore.exceptions import ClientError

from controller.aws.protocol import ABSENT, MAX_TAGS, OWNER_TAG, Action, Difference, Observation, Written, owner_of_mark

# AWS reserves the aws: prefix; such tags (e.g. from CloudFormation) come back from
# describe but the register calls reject them, so the copy leaves them out.
RESERVED_TAG_PREFIX = "aws:"
CREDENTIALS = "repositoryCredentials"
PARAMETER = "credentialsParameter"

NOT_FOUND_MESSAGE = "{missing} {name} has no ACTIVE revision"
UNKNOWN_CONTAINERS_MESSAGE = "{noun} {revision} has no container named {unknown}; its containers are {known}"
NO_EXECUTION_ROLE_MESSAGE = (
    "{noun} {revision} has no {role_field}; {product} needs an execution role to read repository "
    "credentials, so no revision was registered. Register a revision with an execution role"
)
UNSUPPORTED_MESSAGE = (
    "{noun} {revision} has no containerProperties (multi-node, ECS- and EKS-properties "
    "job definitions are not supported); nothing was registered"
)
PLANNED_ARN = "<ARN of {noun} {name}:{revision}, assigned when it is registered>"
NEVER_CREATED = "a {noun} is never registered from nothing: it belongs to its user"
NEVER_DEREGISTERED = "a {noun} revision is never deregistered: services and jobs may still use it"


@dataclass(frozen=True)
class Container:
    """One container of a revision: its name (None for Batch's single one) and status path."""

    name: str | None
    path: str  # e.g. "containerDefinitions[app]" / "containerProperties"
    body: dict[str, Any]


@dataclass(frozen=True)
class Desired:
    """What a consumer asks for: the definition, the secret and (ECS) which containers."""

    name: str                      # ECS family / Batch job definition name
    secret_arn: str
    owner: str                     # our mark, <cluster-id>/<namespace>/<name>
    secret_name: str | None = None  # ECS/Batch accept the name in the same account and Region
    containers: tuple[str, ...] = ()  # ECS: containers to wire, empty means all


@dataclass(frozen=True)
class Latest:
    """The latest ACTIVE revision and the facts the step and the copy need."""

    definition: dict[str, Any]
    tags: list[tuple[str, str]]    # (key, value) pairs, whatever the service's format
    arn: str
    revision: int
    label: str                     # "web:3": the revision, as messages name it
    containers: tuple[Container, ...] | None  # None: a layout the adapter does not support
    chosen: tuple[str | None, ...] = ()       # container names to wire, in definition order
    unknown: tuple[str, ...] = ()             # asked for but not in the revision
    execution_role: str | None = None


def _ecs_containers(definition: dict[str, Any]) -> tuple[Container, ...]:
    return tuple(Container(c.get("name", ""), f"containerDefinitions[{c.get('name', '')}]", c)
                 for c in definition.get("containerDefinitions", []))


def _batch_containers(definition: dict[str, Any]) -> tuple[Container, ...] | None:
    # Only single-container job definitions: multi-node, ECS- and EKS-properties ones are
    # reported, not touched.
    body = definition.get("containerProperties")
    return None if body is None else (Container(None, "containerProperties", body),)


def _read_task_definition(client: Any, family: str) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    """ECS answers a family without ACTIVE revisions with a plain ClientException, not NotFound."""
    try:
        response = client.describe_task_definition(taskDefinition=family, include=["TAGS"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ClientException":
            return None
        raise
    tags = [(t.get("key", ""), t.get("value", "")) for t in response.get("tags") or []]
    return response["taskDefinition"], tags


def _read_job_definition(client: Any, name: str) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    """Batch answers an empty list for an unknown name; revisions come in no promised order."""
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("describe_job_definitions").paginate(jobDefinitionName=name, status="ACTIVE"):
        found.extend(page.get("jobDefinitions", []))
    latest = pick_latest(found)
    return None if latest is None else (latest, list((latest.get("tags") or {}).items()))


def _register_task_definition(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    return client.register_task_definition(**request)["taskDefinition"]


def _register_job_definition(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    return client.register_job_definition(**request)


def pick_latest(definitions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pure: the highest ACTIVE revision."""
    active = [d for d in definitions if d.get("status", "ACTIVE") == "ACTIVE"]
    return max(active, key=lambda d: int(d.get("revision", 0)), default=None)


def references_secret(value: str | None, secret_arn: str, secret_name: str | None = None) -> bool:
    """Pure: does a credentialsParameter point at our secret?

    ECS and Batch accept the full ARN, or the secret's name (or partial ARN, without
    AWS's 6-character suffix) in the same account and Region; a CI pipeline using
    either form is recognised rather than fought.
    """
    if not value:
        return False
    if value == secret_arn:
        return True
    partial = secret_arn[:-7] if len(secret_arn) > 7 and secret_arn[-7] == "-" else None
    return value in {v for v in (secret_name, partial) if v}


def copied_tags(tags: list[tuple[str, str]], owner: str | None) -> list[tuple[str, str]]:
    """Pure: the revision's tags minus aws:-reserved ones, plus (or updating) our owner tag."""
    out = [(k, v) for k, v in tags if not k.startswith(RESERVED_TAG_PREFIX)]
    if owner:
        out = [(k, v) for k, v in out if k != OWNER_TAG]
        # A full tag set is the user's; dropping one of theirs to add ours would not be a
        # faithful copy, so ownership then stays unrecorded on this revision.
        if len(out) < MAX_TAGS:
            out.append((OWNER_TAG, owner))
    return out


@functools.cache
def registrable_fields(service: str, operation: str) -> frozenset[str]:
    """Top-level parameters a register operation accepts, from botocore's service model."""
    model = botocore.session.get_session().get_service_model(service)
    return frozenset(model.operation_model(operation).input_shape.members)


@dataclass(frozen=True)
class Definitions:
    """One service's row of the table, and the adapter itself (``controller.aws.protocol.Kind``)."""

    kind: str               # status row kind and metrics label
    service: str            # boto3 service name, for the error classifier
    noun: str               # how messages name one: "task definition"
    missing: str            # how the not-found message names the definition
    product: str            # who needs the execution role, in messages
    register_operation: str  # its input shape lists the fields a copy carries
    name_field: str
    arn_field: str
    role_field: str         # where the execution role is, dotted from the definition
    tags_as_list: bool      # ECS: [{key, value}]; Batch: {key: value}
    containers_of: Callable[[dict[str, Any]], tuple[Container, ...] | None] = field(repr=False)
    read: Callable[[Any, str], tuple[dict[str, Any], list[tuple[str, str]]] | None] = field(repr=False)
    register: Callable[[Any, dict[str, Any]], dict[str, Any]] = field(repr=False)

    # ------------------------------------------------------------------ pure

    def label(self, desired: Desired) -> str:
        return f"{self.noun} {desired.name}"

    def fields(self) -> frozenset[str]:
        return registrable_fields(self.service, self.register_operation)

    def latest(self, definition: dict[str, Any], tags: list[tuple[str, str]], wanted: tuple[str, ...] = ()) -> Latest:
        """Pure: the facts of one revision; ``wanted`` picks containers (empty: all)."""
        containers = self.containers_of(definition)
        names = [c.name for c in containers or ()]
        chosen = tuple(n for n in names if not wanted or n in wanted)
        unknown = tuple(w for w in wanted if w not in names) if containers is not None else ()
        role: Any = definition
        for part in self.role_field.split("."):
            role = (role or {}).get(part)
        revision = int(definition.get("revision") or 0)
        return Latest(definition=definition, tags=list(tags), arn=definition.get(self.arn_field, ""),
                      revision=revision, label=f"{definition.get(self.name_field)}:{revision}",
                      containers=containers, chosen=chosen, unknown=unknown, execution_role=role or None)

    def differences(self, latest: Latest, desired: Desired) -> tuple[Difference, ...]:
        """Pure: one Difference per chosen container that does not reference the secret."""
        found = []
        for container in latest.containers or ():
            if container.name not in latest.chosen:
                continue
            value = (container.body.get(CREDENTIALS) or {}).get(PARAMETER)
            if not references_secret(value, desired.secret_arn, desired.secret_name):
                found.append(Difference(f"{container.path}.{CREDENTIALS}", value, desired.secret_arn))
        return tuple(found)

    def observation(self, definition: dict[str, Any], tags: list[tuple[str, str]], desired: Desired) -> Observation:
        """Pure: what one describe answer says about ``desired``."""
        latest = self.latest(definition, tags, desired.containers)
        mark = dict(tags).get(OWNER_TAG)
        return Observation(exists=True, owner=owner_of_mark(mark, desired.owner),
                           differences=self.differences(latest, desired), observed=latest, mark=mark)

    def revision_request(self, latest: Latest, desired: Desired) -> dict[str, Any]:
        """Pure: the register parameters, a copy of ``latest`` that references the secret.

        Every registrable field is copied as is (deep copies; the observation is not
        mutated); only the chosen containers' repositoryCredentials change.
        """
        fields = self.fields()
        request = {key: copy.deepcopy(value) for key, value in latest.definition.items()
                   if key in fields and key != "tags" and value is not None}
        for container in self.containers_of(request) or ():
            if container.name in latest.chosen:
                container.body[CREDENTIALS] = {**(container.body.get(CREDENTIALS) or {}),
                                               PARAMETER: desired.secret_arn}
        tags = copied_tags(latest.tags, desired.owner)
        if tags:
            request["tags"] = [{"key": k, "value": v} for k, v in tags] if self.tags_as_list else dict(tags)
        return request

    def not_found_message(self, name: str) -> str:
        return NOT_FOUND_MESSAGE.format(missing=self.missing, name=name)

    def unknown_containers_message(self, latest: Latest) -> str:
        return UNKNOWN_CONTAINERS_MESSAGE.format(noun=self.noun, revision=latest.label, unknown=", ".join(latest.unknown),
                                                 known=", ".join(str(c.name) for c in latest.containers or ()))

    def no_execution_role_message(self, latest: Latest) -> str:
        return NO_EXECUTION_ROLE_MESSAGE.format(noun=self.noun, revision=latest.label, role_field=self.role_field,
                                                product=self.product)

    def unsupported_message(self, latest: Latest) -> str:
        return UNSUPPORTED_MESSAGE.format(noun=self.noun, revision=latest.label)

    # ------------------------------------------------------------------ the protocol

    def observe(self, client: Any, desired: Desired) -> Observation:
        """The latest ACTIVE revision of ``desired.name``; ABSENT when there is none."""
        found = self.read(client, desired.name)
        return ABSENT if found is None else self.observation(found[0], found[1], desired)

    def update(self, client: Any, desired: Desired, observation: Observation) -> Written:
        """Register the copy; one write call, never retried here (the loop observes again)."""
        registered = self.register(client, self.revision_request(observation.observed, desired))
        return Written(1, {"arn": registered.get(self.arn_field), "revision": registered.get("revision")})

    # Taking over an unmarked revision is the same write: a new revision carrying our tag.
    adopt = update

    def create(self, client: Any, desired: Desired, observation: Observation) -> Written:
        raise NotImplementedError(NEVER_CREATED.format(noun=self.noun))

    def delete(self, client: Any, desired: Desired, observation: Observation) -> Written:
        raise NotImplementedError(NEVER_DEREGISTERED.format(noun=self.noun))

    def predict(self, desired: Desired, observation: Observation, action: Action) -> Written:
        if action not in (Action.UPDATE, Action.ADOPT):
            raise NotImplementedError((NEVER_CREATED if action is Action.CREATE else NEVER_DEREGISTERED)
                                      .format(noun=self.noun))
        revision = observation.observed.revision + 1
        return Written(1, {"arn": PLANNED_ARN.format(noun=self.noun, name=desired.name, revision=revision),
                           "revision": revision})


TASK_DEFINITIONS = Definitions(
    kind="taskDefinition", service="ecs", noun="task definition", missing="task definition family",
    product="ECS", register_operation="RegisterTaskDefinition", name_field="family",
    arn_field="taskDefinitionArn", role_field="executionRoleArn", tags_as_list=True,
    containers_of=_ecs_containers, read=_read_task_definition, register=_register_task_definition,
)
JOB_DEFINITIONS = Definitions(
    kind="jobDefinition", service="batch", noun="job definition", missing="job definition",
    product="Batch", register_operation="RegisterJobDefinition", name_field="jobDefinitionName",
    arn_field="jobDefinitionArn", role_field="containerProperties.executionRoleArn", tags_as_list=False,
    containers_of=_batch_containers, read=_read_job_definition, register=_register_job_definition,
)
