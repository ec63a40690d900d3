"""Pure parts of controller.aws.batch_job_definitions: latest revision, compare, the revision copy."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import validate_parameters

from controller.aws import batch_job_definitions as jobdefs

FIXTURES = Path(__file__).parent.parent / "fixtures"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/cred-AbCdEf"
OWNER = "cluster-1/ns/cred"
READ_ONLY = {"jobDefinitionArn", "revision", "status", "containerOrchestrationType"}


def _definitions() -> list[dict]:
    return json.loads((FIXTURES / "batch_describe_fargate_job_two_revisions.json").read_text())["jobDefinitions"]


def _latest() -> jobdefs.Latest:
    return jobdefs.Latest(job_definition=jobdefs.pick_latest(_definitions()))


def _input_shape():
    model = botocore.session.get_session().get_service_model("batch")
    return model.operation_model("RegisterJobDefinition").input_shape


def test_registrable_fields_come_from_botocore_and_exclude_output_fields():
    fields = jobdefs.registrable_fields()
    assert {"jobDefinitionName", "type", "containerProperties", "tags", "propagateTags"} <= fields
    assert not fields & READ_ONLY


@pytest.mark.parametrize(
    "definitions, revision",
    [
        (_definitions(), 2),
        (list(reversed(_definitions())), 2),
        ([{**_definitions()[0], "status": "INACTIVE"}, _definitions()[1]], 1),
        ([], None),
    ],
    ids=["highest-first", "highest-last", "inactive-ignored", "none"],
)
def test_pick_latest(definitions, revision):
    latest = jobdefs.pick_latest(definitions)
    assert (latest or {}).get("revision") == revision


@pytest.mark.parametrize(
    "credentials, differences",
    [
        (None, ("containerProperties.repositoryCredentials",)),
        ({"credentialsParameter": SECRET}, ()),
        ({"credentialsParameter": "regaccess/ns/cred"}, ()),
        ({"credentialsParameter": "arn:aws:secretsmanager:us-east-1:123456789012:secret:old-QwErTy"},
         ("containerProperties.repositoryCredentials",)),
    ],
    ids=["no-credentials", "references-by-arn", "references-by-name", "references-other-secret"],
)
def test_compare(credentials, differences):
    definition = copy.deepcopy(_latest().job_definition)
    if credentials is not None:
        definition["containerProperties"]["repositoryCredentials"] = credentials
    assert jobdefs.compare(definition, SECRET, "regaccess/ns/cred") == differences


def test_revision_copy_changes_only_repository_credentials():
    latest = _latest()
    before = copy.deepcopy(latest.job_definition)
    request = jobdefs.revision_request(latest, SECRET, OWNER)

    assert latest.job_definition == before  # observation not mutated
    validate_parameters(request, _input_shape())
    assert not set(request) & READ_ONLY
    assert request["containerProperties"]["repositoryCredentials"] == {"credentialsParameter": SECRET}
    rest = {k: v for k, v in request["containerProperties"].items() if k != "repositoryCredentials"}
    assert rest == before["containerProperties"]
    for key in jobdefs.registrable_fields() - {"containerProperties", "tags"}:
        assert request.get(key) == before.get(key), key
    assert request["tags"] == {"team": "data", "regaccess.io/owner": OWNER}


def test_revision_copy_replaces_other_secret():
    latest = _latest()
    definition = copy.deepcopy(latest.job_definition)
    definition["containerProperties"]["repositoryCredentials"] = {"credentialsParameter": "old"}
    request = jobdefs.revision_request(jobdefs.Latest(definition), SECRET)
    assert request["containerProperties"]["repositoryCredentials"] == {"credentialsParameter": SECRET}


@pytest.mark.parametrize(
    "tags, owner, expected",
    [
        ({"team": "data", "aws:x": "y"}, OWNER, {"team": "data", "regaccess.io/owner": OWNER}),
        ({"regaccess.io/owner": "old"}, OWNER, {"regaccess.io/owner": OWNER}),
        (None, None, {}),
        ({f"k{i}": "v" for i in range(50)}, OWNER, {f"k{i}": "v" for i in range(50)}),
    ],
    ids=["user-tags-kept-aws-reserved-dropped", "owner-tag-updated", "no-tags", "full-tag-set-untouched"],
)
def test_copied_tags(tags, owner, expected):
    assert jobdefs.copied_tags(tags, owner) == expected


def test_no_container_properties_is_left_alone():
    definition = {k: v for k, v in _latest().job_definition.items() if k != "containerProperties"}
    definition["nodeProperties"] = {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": []}
    latest = jobdefs.Latest(definition)
    assert latest.container is None
    assert "containerProperties" not in jobdefs.revision_request(latest, SECRET)
