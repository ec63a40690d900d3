"""The repository creation template stand-in speaks ECR's API as botocore's model declares it.

Given a scripted scenario through the four operations and every error the stand-in
can emit, then each answer fits the operation's output shape (recursively), each
error code is declared for its operation, the enforced input constraints are the
model's, and state carries over (Update keeps what it is not given). Runs the
stand-in's core directly (no server).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import ptc_standin as ptc
from tests.harness import rct_standin as rct
from tests.unit.test_harness_shapes import MODEL, _shape_problems

# botocore's model against ours: the tripwire scripts/check-upstream runs on the newest botocore.
pytestmark = pytest.mark.upstream

ACCOUNT = "123456789012"
REGION = "us-east-1"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow", "Principal": "*",
                                                             "Action": "ecr:BatchGetImage"}]})


def _create(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"prefix": prefix, "appliedFor": ["PULL_THROUGH_CACHE"], **extra}


SCENARIO: list[tuple[str, dict[str, Any], str | None]] = [
    ("CreateRepositoryCreationTemplate", _create("team", repositoryPolicy=POLICY, lifecyclePolicy="{}",
                                                 description="theirs"), None),
    ("CreateRepositoryCreationTemplate", _create("ROOT"), None),
    ("CreateRepositoryCreationTemplate", _create("team"), rct.ALREADY_EXISTS),
    ("CreateRepositoryCreationTemplate", {"prefix": "x1"}, ptc.VALIDATION),
    ("CreateRepositoryCreationTemplate", _create("Bad"), ptc.VALIDATION),
    ("CreateRepositoryCreationTemplate", _create("y1", appliedFor=["NEVER"]), ptc.VALIDATION),
    ("CreateRepositoryCreationTemplate", _create("y2", repositoryPolicy="not json"), ptc.INVALID_PARAMETER),
    ("CreateRepositoryCreationTemplate", _create("y3", repositoryPolicy="x" * 10_241), ptc.VALIDATION),
    ("CreateRepositoryCreationTemplate", _create("y4", surprise=1), ptc.VALIDATION),
    ("DescribeRepositoryCreationTemplates", {}, None),
    ("DescribeRepositoryCreationTemplates", {"prefixes": ["team", "nothere"]}, None),
    ("DescribeRepositoryCreationTemplates", {"maxResults": 1}, None),
    ("DescribeRepositoryCreationTemplates", {"maxResults": 0}, ptc.VALIDATION),
    ("DescribeRepositoryCreationTemplates", {"nextToken": "garbage"}, ptc.INVALID_PARAMETER),
    ("UpdateRepositoryCreationTemplate", {"prefix": "team", "repositoryPolicy": ""}, None),
    ("UpdateRepositoryCreationTemplate", {"prefix": "nothere", "repositoryPolicy": POLICY}, rct.NOT_FOUND),
    ("UpdateRepositoryCreationTemplate", {"prefix": "team", "repositoryPolicy": "[]"}, ptc.INVALID_PARAMETER),
    ("UpdateRepositoryCreationTemplate", {"prefix": "team", "imageTagMutability": "SOMETIMES"}, ptc.VALIDATION),
    ("DeleteRepositoryCreationTemplate", {"prefix": "ROOT"}, None),
    ("DeleteRepositoryCreationTemplate", {"prefix": "ROOT"}, rct.NOT_FOUND),
    ("DeleteRepositoryCreationTemplate", {}, ptc.VALIDATION),
]


def _run():
    standin = rct.RepositoryCreationTemplateStandIn(clock=lambda: 1_700_000_000.0)
    out = []
    for operation, body, _ in SCENARIO:
        try:
            out.append((operation, None, standin.handle(operation, dict(body), account=ACCOUNT, region=REGION)))
        except ptc.StandInError as error:
            out.append((operation, error.code, None))
    return standin, out


STANDIN, RESULTS = _run()
IDS = [f"{i:02d}-{op}-{code or 'ok'}" for i, (op, _, code) in enumerate(SCENARIO)]


def test_the_standin_implements_exactly_the_models_template_operations():
    assert rct.OPERATIONS == {name for name in MODEL.operation_names if "RepositoryCreationTemplate" in name}


@pytest.mark.parametrize("index", range(len(SCENARIO)), ids=IDS)
def test_each_answer_is_expected_fits_the_shape_and_errors_are_declared(index):
    operation, code, answer = RESULTS[index]
    assert code == SCENARIO[index][2]
    op_model = MODEL.operation_model(operation)
    if code is None:
        assert _shape_problems(answer, op_model.output_shape, operation) == []
    else:
        assert code in {shape.name for shape in op_model.error_shapes}


def test_the_scenario_reaches_every_error_the_standin_can_emit():
    emitted: dict[str, set[str]] = {}
    for operation, code, _ in RESULTS:
        if code:
            emitted.setdefault(operation, set()).add(code)
    for operation, codes in rct.EMITTABLE_ERRORS.items():
        assert emitted.get(operation, set()) == set(codes), operation
        assert codes <= {s.name for s in MODEL.operation_model(operation).error_shapes}


@pytest.mark.parametrize("operation", sorted(rct.OPERATIONS))
def test_the_input_constraints_are_the_models(operation):
    shape = MODEL.operation_model(operation).input_shape
    fields = rct.input_fields(operation)
    assert set(fields) == set(shape.members)
    for name, member in shape.members.items():
        rule = fields[name]
        assert bool(rule.get("required")) == (name in shape.required_members), name
        assert rule["type"] == member.type_name, name
        if member.type_name == "list":
            rule, member = rule["member"], member.member
            assert rule["type"] == member.type_name, name
        for key in ("min", "max", "pattern"):
            if key in member.metadata:
                assert rule.get(key) == member.metadata[key], (name, key)
        assert tuple(rule.get("enum") or ()) == tuple(member.metadata.get("enum") or ()), name


def test_state_carries_over_and_update_keeps_what_it_is_not_given():
    [team] = [t for t in STANDIN.templates(ACCOUNT, REGION) if t["prefix"] == "team"]
    # the policy was cleared by an empty repositoryPolicy; every other setting stayed
    assert "repositoryPolicy" not in team
    assert (team["lifecyclePolicy"], team["description"], team["appliedFor"]) == ("{}", "theirs",
                                                                                   ["PULL_THROUGH_CACHE"])
    assert team["imageTagMutability"] == "MUTABLE" and team["encryptionConfiguration"] == {"encryptionType": "AES256"}
    # paging: one of two, then the other
    first = RESULTS[11][2]
    assert len(first["repositoryCreationTemplates"]) == 1 and first["nextToken"]
    assert [t["prefix"] for t in RESULTS[10][2]["repositoryCreationTemplates"]] == ["team"]
