"""Pure parts of controller.aws.ecs_task_definitions: container choice, compare, the revision copy."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import validate_parameters

from controller.aws import ecs_task_definitions as taskdefs

FIXTURES = Path(__file__).parent.parent / "fixtures"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/cred-AbCdEf"
SECRET_NAME = "regaccess/ns/cred"
OWNER = "cluster-1/ns/cred"
READ_ONLY = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt",
}


def _fixture() -> taskdefs.Latest:
    raw = json.loads((FIXTURES / "ecs_describe_fargate_three_containers.json").read_text())
    return taskdefs.Latest(task_definition=raw["taskDefinition"], tags=raw["tags"])


def _input_shape():
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


def _credentials(request, name):
    container = next(c for c in request["containerDefinitions"] if c["name"] == name)
    return (container.get("repositoryCredentials") or {}).get("credentialsParameter")


def test_registrable_fields_come_from_botocore_and_exclude_output_fields():
    fields = taskdefs.registrable_fields()
    assert {"family", "containerDefinitions", "executionRoleArn", "tags", "runtimePlatform"} <= fields
    assert not fields & READ_ONLY


# --------------------------------------------------------------------------- chosen containers


@pytest.mark.parametrize(
    "wanted, chosen, unknown",
    [
        (None, ["app", "envoy", "log-router"], []),
        ([], ["app", "envoy", "log-router"], []),
        (["envoy", "app"], ["app", "envoy"], []),
        (["app", "sidecar"], ["app"], ["sidecar"]),
    ],
    ids=["default-all", "empty-list-means-all", "named-in-definition-order", "unknown-container"],
)
def test_chosen_containers(wanted, chosen, unknown):
    assert taskdefs.chosen_containers(_fixture().task_definition, wanted) == (chosen, unknown)


# --------------------------------------------------------------------------- references / compare


@pytest.mark.parametrize(
    "value, references",
    [
        (SECRET, True),
        (SECRET_NAME, True),
        (SECRET[:-7], True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf", False),
        (None, False),
        ("", False),
    ],
    ids=["full-arn", "name-same-account", "partial-arn", "other-secret", "none", "empty"],
)
def test_references_secret(value, references):
    assert taskdefs.references_secret(value, SECRET, SECRET_NAME) is references


@pytest.mark.parametrize(
    "chosen, referencing, differences",
    [
        (["app", "envoy", "log-router"], [], (
            "containerDefinitions[app].repositoryCredentials",
            "containerDefinitions[envoy].repositoryCredentials",
            "containerDefinitions[log-router].repositoryCredentials",
        )),
        (["app"], ["app"], ()),
        (["app"], ["envoy"], ("containerDefinitions[app].repositoryCredentials",)),
        (["app", "envoy"], ["app", "envoy"], ()),
    ],
    ids=["none-referencing", "chosen-already-referencing", "other-container-referencing", "all-chosen-referencing"],
)
def test_compare(chosen, referencing, differences):
    definition = copy.deepcopy(_fixture().task_definition)
    for container in definition["containerDefinitions"]:
        if container["name"] in referencing:
            container["repositoryCredentials"] = {"credentialsParameter": SECRET}
    assert taskdefs.compare(definition, chosen, SECRET, SECRET_NAME) == differences


# --------------------------------------------------------------------------- the revision copy


@pytest.mark.parametrize(
    "chosen",
    [["app", "envoy", "log-router"], ["envoy"], ["app", "log-router"]],
    ids=["all-containers", "one-container-replacing-old-secret", "two-of-three"],
)
def test_revision_copy_changes_only_chosen_credentials(chosen):
    latest = _fixture()
    before = copy.deepcopy(latest.task_definition)
    request = taskdefs.revision_request(latest, chosen, SECRET, OWNER)

    # The observation is not mutated.
    assert latest.task_definition == before
    # Registrable per botocore: the request would pass client-side validation.
    validate_parameters(request, _input_shape())
    # No read-only output field survives.
    assert not set(request) & READ_ONLY
    for container in request["containerDefinitions"]:
        original = next(c for c in before["containerDefinitions"] if c["name"] == container["name"])
        if container["name"] in chosen:
            assert container["repositoryCredentials"] == {"credentialsParameter": SECRET}
            rest = {k: v for k, v in container.items() if k != "repositoryCredentials"}
            assert rest == {k: v for k, v in original.items() if k != "repositoryCredentials"}
        else:
            assert container == original
    # Every other registrable field is copied as is.
    for key in taskdefs.registrable_fields() - {"containerDefinitions", "tags"}:
        assert request.get(key) == before.get(key), key


def test_revision_copy_keeps_container_order_and_count():
    request = taskdefs.revision_request(_fixture(), ["app"], SECRET)
    assert [c["name"] for c in request["containerDefinitions"]] == ["app", "envoy", "log-router"]


@pytest.mark.parametrize(
    "tags, owner, expected",
    [
        (
            [{"key": "team", "value": "payments"}, {"key": "aws:cloudformation:stack-name", "value": "s"}],
            OWNER,
            [{"key": "team", "value": "payments"}, {"key": "regaccess.io/owner", "value": OWNER}],
        ),
        ([{"key": "regaccess.io/owner", "value": "old/ns/x"}], OWNER, [{"key": "regaccess.io/owner", "value": OWNER}]),
        ([{"key": "team", "value": "payments"}], None, [{"key": "team", "value": "payments"}]),
        ([], None, []),
        ([{"key": f"k{i}", "value": "v"} for i in range(50)], OWNER, [{"key": f"k{i}", "value": "v"} for i in range(50)]),
    ],
    ids=["user-tags-kept-aws-reserved-dropped", "owner-tag-updated", "no-owner", "no-tags", "full-tag-set-untouched"],
)
def test_copied_tags(tags, owner, expected):
    assert taskdefs.copied_tags(tags, owner) == expected


def test_revision_copy_omits_tags_when_there_are_none():
    latest = _fixture()
    request = taskdefs.revision_request(taskdefs.Latest(latest.task_definition, []), ["app"], SECRET)
    assert "tags" not in request


def test_revision_copy_of_fixture_carries_tags():
    request = taskdefs.revision_request(_fixture(), ["app"], SECRET, OWNER)
    assert request["tags"] == [{"key": "team", "value": "payments"}, {"key": "regaccess.io/owner", "value": OWNER}]
