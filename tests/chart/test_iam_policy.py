"""deploy/iam-policy.json grants exactly the AWS actions the operator's code calls.

Mechanical: the AST of every controller/aws/*.py module is scanned for boto3 client
method calls (``client.put_role_policy(...)``, ``client.get_paginator("list_...")``);
botocore's service model maps each snake_case method to its operation (operation name ->
IAM action ``<signing name>:<Operation>``). The set, plus the documented authorization
dependencies below (IAM checks that AWS makes on top of an operation's own action), must
equal the policy's actions: a new call without a grant fails, and so does a grant nothing
calls. Pure: no server, botocore's bundled models only.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

REPO = Path(__file__).resolve().parents[2]
AWS_DIR = REPO / "controller" / "aws"
POLICY = REPO / "deploy" / "iam-policy.json"

# Each module under controller/aws talks to one service (the shape STYLE.md asks for), except
# the one adapter of revisioned definitions, whose table has a row per service; modules
# without client calls (errors, base, policydoc, clients) are not listed.
MODULE_SERVICE: dict[str, str | tuple[str, ...]] = {
    "secrets": "secretsmanager",
    "iam_policies": "iam",
    "kms": "kms",
    "pull_through_cache": "ecr",
    "repository_policies": "ecr",
    "revisioned_definitions": ("ecs", "batch"),
    "event_queue": "sqs",
}


def _services(module: str) -> tuple[str, ...]:
    service = MODULE_SERVICE.get(module, ())
    return service if isinstance(service, tuple) else (service,)

# IAM authorization that AWS performs besides the operation's own action, per called action.
# Every entry is AWS-documented behaviour; an entry whose trigger is no longer called drops out.
DEPENDENT_ACTIONS = {
    # RegisterTaskDefinition passes the definition's executionRoleArn/taskRoleArn (iam:PassRole)
    # and, with tags in the request (we copy them and add the owner tag), needs ecs:TagResource.
    "ecs:RegisterTaskDefinition": {"iam:PassRole", "ecs:TagResource"},
    # Same for Batch: roles in containerProperties, tags on register.
    "batch:RegisterJobDefinition": {"iam:PassRole", "batch:TagResource"},
    # A secret with a customer managed key: Secrets Manager calls KMS with the caller's rights.
    "secretsmanager:CreateSecret": {"kms:GenerateDataKey", "kms:Decrypt"},
    "secretsmanager:PutSecretValue": {"kms:GenerateDataKey", "kms:Decrypt"},
    "secretsmanager:GetSecretValue": {"kms:Decrypt"},
}

# Calls made by botocore on the code's behalf rather than as client.method(...).
IMPLICIT_CALLS = {
    # clients.py: AssumeRoleCredentialFetcher for spec.roleArn (cross-account).
    "AssumeRoleCredentialFetcher": "sts:AssumeRole",
}


def _service_ops(service: str) -> tuple[str, dict[str, str]]:
    model = botocore.session.get_session().get_service_model(service)
    prefix = model.signing_name
    return prefix, {xform_name(op): op for op in model.operation_names}


def called_actions() -> dict[str, set[str]]:
    """IAM action -> the modules that call it."""
    found: dict[str, set[str]] = {}
    for path in sorted(AWS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in IMPLICIT_CALLS:
                found.setdefault(IMPLICIT_CALLS[node.id], set()).add(path.stem)
        for service in _services(path.stem):
            prefix, ops = _service_ops(service)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                method = node.func.attr
                if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                    method = node.args[0].value
                if method in ops:
                    found.setdefault(f"{prefix}:{ops[method]}", set()).add(path.stem)
    return found


def policy_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in document["Statement"]:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def test_every_aws_module_with_client_calls_is_mapped():
    # A new module with boto3 calls must be mapped, or its calls would escape the check.
    all_ops = {}
    for service in {s for module in MODULE_SERVICE for s in _services(module)}:
        all_ops.update(_service_ops(service)[1])
    for path in AWS_DIR.glob("*.py"):
        if path.stem in MODULE_SERVICE:
            continue
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & set(all_ops), f"{path.name} calls AWS operations {calls & set(all_ops)}: map it"


def test_scanner_finds_the_calls_it_should():
    # Guards the scanner itself: known calls in known modules are seen.
    found = called_actions()
    assert "iam:PutRolePolicy" in found and found["iam:PutRolePolicy"] == {"iam_policies"}
    assert "batch:DescribeJobDefinitions" in found  # through get_paginator("describe_job_definitions")
    assert "sts:AssumeRole" in found
    assert "ecr:SetRepositoryPolicy" in found


def test_policy_grants_exactly_what_the_code_calls():
    called = set(called_actions())
    needed = set(called)
    for action in called:
        needed |= DEPENDENT_ACTIONS.get(action, set())
    granted = policy_actions()
    assert not needed - granted, f"called but not granted: {sorted(needed - granted)}"
    assert not granted - needed, f"granted but never called: {sorted(granted - needed)}"


def test_policy_document_shape():
    document = json.loads(POLICY.read_text())
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        assert all(":" in a and "*" not in a for a in (statement["Action"] if isinstance(statement["Action"], list)
                                                       else [statement["Action"]])), statement["Sid"]


# Statements allowed a bare "*" resource, each because AWS offers no resource-level permission
# for those actions (docs/install.md, "IAM policy").
UNSCOPED = {"EcsTaskDefinitionsNoResourceLevelPermissions", "BatchDescribeJobDefinitionsNoResourceLevelPermissions",
            "EcrPullThroughCacheRulesRegistryLevel"}


def test_resources_are_narrow():
    document = json.loads(POLICY.read_text())
    for statement in document["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Sid"] in UNSCOPED:
            assert resources == ["*"]
            continue
        assert "*" not in resources, statement["Sid"]
        for arn in resources:
            assert arn.startswith("arn:aws:"), arn
        if any(a.startswith("secretsmanager:") for a in statement["Action"]):
            assert all(":secret:regaccess/" in r or ":secret:ecr-pullthroughcache/" in r for r in resources)


@pytest.mark.parametrize("action", ["secretsmanager:UpdateSecret", "secretsmanager:PutSecretValue",
                                    "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret"])
def test_secret_writes_need_the_owner_tag(action):
    document = json.loads(POLICY.read_text())
    statements = [s for s in document["Statement"] if action in s["Action"]]
    assert statements
    for statement in statements:
        condition = statement.get("Condition") or {}
        keys = {k for block in condition.values() for k in block}
        assert "aws:ResourceTag/regaccess.io/owner" in keys, statement["Sid"]


def test_create_requires_the_owner_tag_in_the_request():
    document = json.loads(POLICY.read_text())
    (statement,) = [s for s in document["Statement"] if "secretsmanager:CreateSecret" in s["Action"]]
    assert statement["Condition"]["Null"]["aws:RequestTag/regaccess.io/owner"] == "false"
