"""The revisioned-definition adapter (controller.aws.revisioned_definitions), no server.

Given a describe answer of one service (fixtures recorded from ECS and Batch),
when the adapter observes, compares or copies it, then the facts are right. Every
test that applies to both services runs once per table row (ids ``ecs`` /
``batch``); the ECS-only (named containers) and Batch-only (highest revision,
unsupported layouts) cases are their own tables. The ownership rule of listed
consumers (controller.reconcile.definitions.consumer_owner) is tested with the
loop's own decision at the end.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from controller.aws import revisioned_definitions as rd
from controller.aws.protocol import OWNER_TAG, Action, Difference, Owner
from controller.reconcile import loop
from controller.reconcile.definitions import consumer_owner

FIXTURES = Path(__file__).parent.parent / "fixtures"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/cred-AbCdEf"
SECRET_NAME = "regaccess/ns/cred"
OLD_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:old-cred-QwErTy"
OURS = "cluster-1/ns/cred"
THEIRS = "cluster-1/other/cred"


def _ecs() -> tuple[dict, list[tuple[str, str]]]:
    raw = json.loads((FIXTURES / "ecs_describe_fargate_three_containers.json").read_text())
    return raw["taskDefinition"], [(t["key"], t["value"]) for t in raw["tags"]]


def _batch_revisions() -> list[dict]:
    return json.loads((FIXTURES / "batch_describe_fargate_job_two_revisions.json").read_text())["jobDefinitions"]


def _batch() -> tuple[dict, list[tuple[str, str]]]:
    latest = rd.pick_latest(_batch_revisions())
    return latest, list(latest["tags"].items())


@dataclass(frozen=True)
class Service:
    table: rd.Definitions
    describe: Any             # () -> (definition, tags) as the adapter's read returns them
    read_only: frozenset[str]  # output fields a register request must never carry
    required: frozenset[str]   # fields botocore's input shape must list
    paths: tuple[str, ...]     # every container credential path of the fixture, in order
    user_tags: Any             # the fixture's user tags in the service's own request format

    def request_tags(self, request: dict) -> list[tuple[str, str]]:
        tags = request.get("tags") or ([] if self.table.tags_as_list else {})
        return [(t["key"], t["value"]) for t in tags] if self.table.tags_as_list else list(tags.items())

    def credentials(self, definition: dict) -> dict[str, Any]:
        """container path -> its credentialsParameter."""
        return {c.path: (c.body.get("repositoryCredentials") or {}).get("credentialsParameter")
                for c in self.table.containers_of(definition) or ()}


ECS = Service(
    rd.TASK_DEFINITIONS, _ecs,
    frozenset({"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
               "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt"}),
    frozenset({"family", "containerDefinitions", "executionRoleArn", "tags", "runtimePlatform"}),
    ("containerDefinitions[app]", "containerDefinitions[envoy]", "containerDefinitions[log-router]"),
    [{"key": "team", "value": "payments"}],
)
BATCH = Service(
    rd.JOB_DEFINITIONS, _batch,
    frozenset({"jobDefinitionArn", "revision", "status", "containerOrchestrationType"}),
    frozenset({"jobDefinitionName", "type", "containerProperties", "tags", "propagateTags"}),
    ("containerProperties",),
    {"team": "data"},
)
SERVICES = pytest.mark.parametrize("service", [ECS, BATCH], ids=["ecs", "batch"])


def desired(containers: tuple[str, ...] = (), owner: str = OURS) -> rd.Desired:
    return rd.Desired(name="x", secret_arn=SECRET, owner=owner, secret_name=SECRET_NAME, containers=containers)


def with_credentials(service: Service, values: dict[str, str | None]) -> tuple[dict, list]:
    """The fixture revision with the given container paths set to reference ``values``."""
    definition, tags = service.describe()
    definition = copy.deepcopy(definition)
    for container in service.table.containers_of(definition):
        if container.path in values:
            container.body.pop("repositoryCredentials", None)
            if values[container.path]:
                container.body["repositoryCredentials"] = {"credentialsParameter": values[container.path]}
    return definition, tags


def input_shape(service: Service):
    model = botocore.session.get_session().get_service_model(service.table.service)
    return model.operation_model(service.table.register_operation).input_shape


# --------------------------------------------------------------------------- the table


@pytest.mark.upstream
@SERVICES
def test_registrable_fields_come_from_botocore_and_exclude_output_fields(service):
    fields = service.table.fields()
    assert service.required <= fields
    assert not fields & service.read_only


@SERVICES
def test_latest_facts(service):
    definition, tags = service.describe()
    latest = service.table.latest(definition, tags)
    assert latest.arn == definition[service.table.arn_field]
    assert latest.label == f"{definition[service.table.name_field]}:{definition['revision']}"
    assert latest.execution_role and latest.execution_role.startswith("arn:aws:iam::")
    assert [c.path for c in latest.containers] == list(service.paths)
    assert latest.unknown == ()


# --------------------------------------------------------------------------- references / differences


@pytest.mark.parametrize(
    "value, references",
    [(SECRET, True), (SECRET_NAME, True), (SECRET[:-7], True), (OLD_SECRET, False), (None, False), ("", False)],
    ids=["full-arn", "name-same-account", "partial-arn", "other-secret", "none", "empty"],
)
def test_references_secret(value, references):
    assert rd.references_secret(value, SECRET, SECRET_NAME) is references


@SERVICES
@pytest.mark.parametrize(
    "referencing, other",
    [((), ()), ("all", ()), ((), "all"), ("first", ()), ("first-by-name", "rest")],
    ids=["none-referencing", "all-referencing", "all-other-secret", "first-referencing", "name-and-other-secret"],
)
def test_differences_name_each_container_with_what_it_references(service, referencing, other):
    pick = {"all": service.paths, "first": service.paths[:1], "first-by-name": service.paths[:1],
            "rest": service.paths[1:], (): ()}
    values = {p: None for p in service.paths}
    values.update({p: OLD_SECRET for p in pick[other]})
    values.update({p: (SECRET_NAME if referencing == "first-by-name" else SECRET) for p in pick[referencing]})
    definition, tags = with_credentials(service, values)

    observation = service.table.observation(definition, tags, desired())

    expected = tuple(Difference(f"{p}.repositoryCredentials", values[p], SECRET)
                     for p in service.paths if values[p] not in (SECRET, SECRET_NAME))
    assert observation.differences == expected
    assert observation.exists and observation.observed.arn == definition[service.table.arn_field]


@pytest.mark.parametrize(
    "wanted, chosen, unknown",
    [
        ((), ("app", "envoy", "log-router"), ()),
        (("envoy", "app"), ("app", "envoy"), ()),
        (("app", "sidecar"), ("app",), ("sidecar",)),
    ],
    ids=["default-all", "named-in-definition-order", "unknown-container"],
)
def test_ecs_chosen_containers(wanted, chosen, unknown):
    definition, tags = _ecs()
    latest = rd.TASK_DEFINITIONS.latest(definition, tags, wanted)
    assert (latest.chosen, latest.unknown) == (chosen, unknown)


def test_ecs_unknown_container_message_names_the_revision_and_its_containers():
    definition, tags = _ecs()
    latest = rd.TASK_DEFINITIONS.latest(definition, tags, ("app", "sidecar"))
    assert rd.TASK_DEFINITIONS.unknown_containers_message(latest) == (
        f"task definition {latest.label} has no container named sidecar; its containers are app, envoy, log-router")


def test_ecs_differences_only_for_chosen_containers():
    definition, tags = with_credentials(ECS, {"containerDefinitions[envoy]": SECRET})
    observation = rd.TASK_DEFINITIONS.observation(definition, tags, desired(("app", "envoy")))
    assert observation.fields == ("containerDefinitions[app].repositoryCredentials",)


@pytest.mark.parametrize(
    "definitions, revision",
    [
        (_batch_revisions(), 2),
        (list(reversed(_batch_revisions())), 2),
        ([{**_batch_revisions()[0], "status": "INACTIVE"}, _batch_revisions()[1]], 1),
        ([], None),
    ],
    ids=["highest-first", "highest-last", "inactive-ignored", "none"],
)
def test_batch_pick_latest(definitions, revision):
    assert (rd.pick_latest(definitions) or {}).get("revision") == revision


def test_batch_without_container_properties_is_unsupported_and_left_alone():
    definition, tags = _batch()
    definition = {k: v for k, v in definition.items() if k != "containerProperties"}
    definition["nodeProperties"] = {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": []}
    latest = rd.JOB_DEFINITIONS.latest(definition, tags)
    assert latest.containers is None and latest.execution_role is None
    assert rd.JOB_DEFINITIONS.unsupported_message(latest).startswith("job definition nightly:2 has no containerProperties")
    assert "containerProperties" not in rd.JOB_DEFINITIONS.revision_request(latest, desired())


@pytest.mark.parametrize(
    "service, message",
    [
        (ECS, "task definition web:7 has no executionRoleArn; ECS needs an execution role"),
        (BATCH, "job definition nightly:2 has no containerProperties.executionRoleArn; Batch needs an execution role"),
    ],
    ids=["ecs", "batch"],
)
def test_no_execution_role(service, message):
    definition, tags = service.describe()
    definition = copy.deepcopy(definition)
    definition.pop("executionRoleArn", None)
    (definition.get("containerProperties") or {}).pop("executionRoleArn", None)
    latest = service.table.latest(definition, tags)
    assert latest.execution_role is None
    assert service.table.no_execution_role_message(latest).startswith(message)


# --------------------------------------------------------------------------- owner


@SERVICES
@pytest.mark.parametrize(
    "mark, owner",
    [(OURS, Owner.OURS), (THEIRS, Owner.FOREIGN), (None, Owner.UNMARKED)],
    ids=["ours", "another-owner", "unmarked"],
)
def test_owner_is_the_latest_revisions_owner_tag(service, mark, owner):
    definition, tags = service.describe()
    tags = [*tags, (OWNER_TAG, mark)] if mark else tags
    observation = service.table.observation(definition, tags, desired())
    assert (observation.owner, observation.mark) == (owner, mark)


# --------------------------------------------------------------------------- the revision copy


@SERVICES
def test_revision_copy_changes_only_chosen_credentials(service):
    definition, tags = with_credentials(service, {service.paths[0]: OLD_SECRET})
    before = copy.deepcopy(definition)
    observation = service.table.observation(definition, tags, desired())

    request = service.table.revision_request(observation.observed, desired())

    assert definition == before  # the observation is not mutated
    validate_parameters(request, input_shape(service))  # botocore would accept it
    assert not set(request) & service.read_only
    assert set(service.credentials(request).values()) == {SECRET}
    for container in service.table.containers_of(request):
        original = next(c for c in service.table.containers_of(before) if c.path == container.path)
        rest = {k: v for k, v in container.body.items() if k != "repositoryCredentials"}
        assert rest == {k: v for k, v in original.body.items() if k != "repositoryCredentials"}
    for key in service.table.fields() - {"containerDefinitions", "containerProperties", "tags"}:
        assert request.get(key) == before.get(key), key


def test_ecs_revision_copy_keeps_unchosen_containers_order_and_count():
    definition, tags = _ecs()
    latest = rd.TASK_DEFINITIONS.latest(definition, tags, ("app",))
    request = rd.TASK_DEFINITIONS.revision_request(latest, desired(("app",)))
    assert [c["name"] for c in request["containerDefinitions"]] == ["app", "envoy", "log-router"]
    assert ECS.credentials(request) == {"containerDefinitions[app]": SECRET, "containerDefinitions[envoy]": OLD_SECRET,
                                        "containerDefinitions[log-router]": None}


@SERVICES
def test_revision_copy_carries_tags_in_the_services_format(service):
    definition, tags = service.describe()
    request = service.table.revision_request(service.table.latest(definition, tags), desired())
    expected = copy.deepcopy(service.user_tags)
    if service.table.tags_as_list:
        expected.append({"key": OWNER_TAG, "value": OURS})
    else:
        expected[OWNER_TAG] = OURS
    assert request["tags"] == expected


@SERVICES
def test_revision_copy_omits_tags_when_there_are_none(service):
    definition, _ = service.describe()
    request = service.table.revision_request(service.table.latest(definition, []), desired(owner=""))
    assert "tags" not in request


@pytest.mark.parametrize(
    "tags, owner, expected",
    [
        ([("team", "payments"), ("aws:cloudformation:stack-name", "s")], OURS, [("team", "payments"), (OWNER_TAG, OURS)]),
        ([(OWNER_TAG, "old/ns/x")], OURS, [(OWNER_TAG, OURS)]),
        ([("team", "payments")], None, [("team", "payments")]),
        ([], None, []),
        ([(f"k{i}", "v") for i in range(50)], OURS, [(f"k{i}", "v") for i in range(50)]),
    ],
    ids=["user-tags-kept-aws-reserved-dropped", "owner-tag-updated", "no-owner", "no-tags", "full-tag-set-untouched"],
)
def test_copied_tags(tags, owner, expected):
    assert rd.copied_tags(tags, owner) == expected


# --------------------------------------------------------------------------- predict / refused writes


@SERVICES
def test_predict_next_revision_and_placeholder_arn(service):
    definition, tags = service.describe()
    observation = service.table.observation(definition, tags, desired())
    written = service.table.predict(desired(), observation, Action.UPDATE)
    revision = definition["revision"] + 1
    assert written.calls == 1 and written.facts["revision"] == revision
    assert written.facts["arn"] == f"<ARN of {service.table.noun} x:{revision}, assigned when it is registered>"


@SERVICES
@pytest.mark.parametrize("action", [Action.CREATE, Action.DELETE], ids=["create", "delete"])
def test_definitions_are_never_created_or_deregistered(service, action):
    definition, tags = service.describe()
    observation = service.table.observation(definition, tags, desired())
    with pytest.raises(NotImplementedError):
        getattr(service.table, action.value)(None, desired(), observation)
    with pytest.raises(NotImplementedError):
        service.table.predict(desired(), observation, action)


# --------------------------------------------------------------------------- whose revision (reconcile policy)


@SERVICES
@pytest.mark.parametrize(
    "mark, credential, owner, decision",
    [
        (None, None, Owner.OURS, loop.Decision.UPDATE),
        (None, OLD_SECRET, Owner.OURS, loop.Decision.UPDATE),
        (None, SECRET, Owner.OURS, loop.Decision.NOOP),
        (OURS, OLD_SECRET, Owner.OURS, loop.Decision.UPDATE),
        (THEIRS, OLD_SECRET, Owner.FOREIGN, loop.Decision.CONFLICT),
        (THEIRS, None, Owner.OURS, loop.Decision.UPDATE),
        (THEIRS, SECRET, Owner.OURS, loop.Decision.NOOP),
    ],
    ids=["unmarked-pipeline-revision", "unmarked-old-secret", "unmarked-already-referencing", "ours-old-secret",
         "another-owner-wires-it", "another-owner-nothing-to-take", "another-owner-already-ours"],
)
def test_listed_consumer_ownership(service, mark, credential, owner, decision):
    definition, tags = with_credentials(service, {p: credential for p in service.paths})
    tags = [*tags, (OWNER_TAG, mark)] if mark else tags
    observation = consumer_owner(service.table.observation(definition, tags, desired()))
    assert observation.owner is owner
    # No adoptExisting: listing the consumer is the consent (controller.reconcile.definitions).
    assert loop.decide(observation, adopt_existing=False, report_only=False, managed_before=True) is decision
