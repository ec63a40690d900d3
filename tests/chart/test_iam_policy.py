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

from controller import iampolicy

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
    "ecr_tokens": "ecr",  # ECRPullSecret: GetAuthorizationToken (Resource "*": ECR has no resource-level permission for it)
    "revisioned_definitions": ("ecs", "batch"),
    "ecs_services": "ecs",  # service rollouts: DescribeServices / UpdateService on grantable services
    "event_queue": "sqs",
    "role_policies": ("iam", "secretsmanager", "kms"),  # PullReady's reads (role, secret, key policies)
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
UNSCOPED = {"EcsDescribeTaskDefinitionsNoResourceLevelPermissions", "EcsRegisterOnlyWithOurOwnerTag",
            "BatchDescribeJobDefinitionsNoResourceLevelPermissions", "EcrPullThroughCacheRulesRegistryLevel",
            "EcrCreationTemplatesAndRegistryPolicyRegistryLevel",
            "EcrAuthorizationTokenNoResourceLevelPermissions"}
OWNER_KEY = "aws:ResourceTag/regaccess.io/owner"
REQUEST_OWNER_KEY = "aws:RequestTag/regaccess.io/owner"
GRANTABLE_KEY = "aws:ResourceTag/regaccess.io/grantable"
# Rendered for a concrete account and cluster, as an administrator would (regaccess iam-policy).
RENDERED = iampolicy.document(iampolicy.Options(partition="aws-us-gov", account="111122223333", cluster_id="c1"))


def _list(value):
    return value if isinstance(value, list) else [value]


def _statements_with(action, document=None):
    return [s for s in (document or RENDERED)["Statement"] if action in _list(s["Action"])]


def _conditions(statement):
    """{(operator, key): values} of one statement."""
    return {(op, key): _list(values) for op, block in (statement.get("Condition") or {}).items()
            for key, values in block.items()}


def test_the_deploy_file_is_the_generator_output_with_its_placeholders():
    # One source: `regaccess iam-policy > deploy/iam-policy.json` after a change.
    assert POLICY.read_text() == iampolicy.dumps()
    text = POLICY.read_text()
    for placeholder in ("${AWS_PARTITION}", "${AWS_ACCOUNT_ID}", "${REGACCESS_CLUSTER_ID}"):
        assert placeholder in text


def test_resources_are_narrow():
    for statement in RENDERED["Statement"]:
        resources = _list(statement["Resource"])
        if statement["Sid"] in UNSCOPED:
            assert resources == ["*"]
            continue
        assert "*" not in resources, statement["Sid"]
        for arn in resources:
            # The partition and account are filled in; only STS may name roles of any account.
            assert arn.startswith("arn:aws-us-gov:"), arn
            account = arn.split(":")[4]
            if statement["Sid"] == "StsAssumeRolesUnderOurPath":
                assert account == "*" and arn.endswith(":role/regaccess/*")
            elif statement["Sid"] == "IamReadManagedPoliciesForPullReady":
                # AWS managed policies (AmazonECSTaskExecutionRolePolicy) live in the account "aws".
                assert account in ("111122223333", "aws") and arn.endswith(":policy/*"), arn
            else:
                assert account == "111122223333", arn
        if any(a.startswith("secretsmanager:") for a in statement["Action"]):
            assert all(":secret:regaccess/" in r or ":secret:ecr-pullthroughcache/" in r for r in resources)


@pytest.mark.parametrize("action", ["secretsmanager:GetSecretValue", "secretsmanager:UpdateSecret",
                                    "secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret",
                                    "secretsmanager:RestoreSecret"])
def test_secret_value_reads_and_writes_need_this_clusters_owner_tag(action):
    statements = _statements_with(action)
    assert statements
    for statement in statements:
        assert _conditions(statement).get(("StringLike", OWNER_KEY)) == ["c1/*"], statement["Sid"]


@pytest.mark.parametrize("action", ["secretsmanager:CreateSecret", "secretsmanager:TagResource",
                                    "ecs:RegisterTaskDefinition", "ecs:TagResource",
                                    "batch:RegisterJobDefinition", "batch:TagResource"])
def test_creates_and_tags_need_this_clusters_owner_tag_in_the_request(action):
    statements = _statements_with(action)
    assert statements
    for statement in statements:
        assert _conditions(statement).get(("StringLike", REQUEST_OWNER_KEY)) == ["c1/*"], statement["Sid"]


def test_secret_tagging_only_where_the_owner_tag_is_absent_or_already_ours():
    # Each TagResource grant also pins the resource's own owner tag: absent, or this cluster's.
    guards = sorted(tuple(sorted((op, key, tuple(v)) for (op, key), v in _conditions(s).items() if key == OWNER_KEY))
                    for s in _statements_with("secretsmanager:TagResource"))
    assert guards == [(("Null", OWNER_KEY, ("true",)),), (("StringLike", OWNER_KEY, ("c1/*",)),)]


@pytest.mark.parametrize("action", ["iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:PassRole",
                                    "ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"])
def test_writes_on_others_roles_and_repositories_only_where_they_opt_in(action):
    for statement in _statements_with(action):
        assert _conditions(statement).get(("StringEquals", GRANTABLE_KEY)) == ["true"], statement["Sid"]


def test_kms_use_only_through_secrets_manager_for_our_secrets():
    (statement,) = _statements_with("kms:Decrypt")
    conditions = _conditions(statement)
    assert conditions[("StringLike", "kms:ViaService")] == ["secretsmanager.*.amazonaws.com"]
    assert conditions[("StringLike", "kms:EncryptionContext:SecretARN")] == [
        "arn:aws-us-gov:secretsmanager:*:111122223333:secret:regaccess/*",
        "arn:aws-us-gov:secretsmanager:*:111122223333:secret:ecr-pullthroughcache/*"]


def test_generator_options_reach_every_arn():
    document = iampolicy.document(iampolicy.Options(partition="aws-cn", account="210987654321", cluster_id="prod-eu",
                                                    region="cn-north-1", assume_role_path="/platform/regaccess/"))
    text = json.dumps(document)
    assert "${" not in text and "arn:aws:" not in text
    assert "secretsmanager.cn-north-1.amazonaws.com" in text and '"prod-eu/*"' in text
    (sts,) = _statements_with("sts:AssumeRole", document)
    assert sts["Resource"] == "arn:aws-cn:iam::*:role/platform/regaccess/*"
    for statement in document["Statement"]:
        for arn in _list(statement["Resource"]):
            parts = arn.split(":")
            assert arn == "*" or parts[3] in ("", "cn-north-1"), arn


@pytest.mark.parametrize("path", ["regaccess/", "/regaccess", ""])
def test_generator_refuses_a_malformed_role_path(path):
    with pytest.raises(ValueError):
        iampolicy.Options(assume_role_path=path)


def test_cli_prints_the_rendered_policy(capsys):
    from controller.__main__ import main

    assert main(["iam-policy", "--account", "111122223333", "--partition", "aws-us-gov", "--cluster-id", "c1"]) == 0
    assert json.loads(capsys.readouterr().out) == RENDERED


def _missing_grants(document):
    """What the operator needs that the document does not grant: called actions (and their
    dependent actions), and both secret-tagging cases (unmarked, already ours)."""
    needed = set(called_actions())
    for action in list(needed):
        needed |= DEPENDENT_ACTIONS.get(action, set())
    granted = {a for s in document["Statement"] for a in _list(s["Action"])}
    missing = sorted(needed - granted)
    guards = {op for s in _statements_with("secretsmanager:TagResource", document)
              for (op, key) in _conditions(s) if key == OWNER_KEY}
    missing += [f"secretsmanager:TagResource where the owner tag is {op}" for op in {"Null", "StringLike"} - guards]
    return missing


def test_the_shipped_policy_grants_everything_needed():
    assert _missing_grants(RENDERED) == []


@pytest.mark.parametrize("sid", [s["Sid"] for s in RENDERED["Statement"]])
def test_removing_any_statement_loses_a_needed_grant(sid):
    # The acceptance check for statements moto cannot evaluate (tests/aws/test_iam_enforcement_aws.py
    # proves the rest under enforcement): without this statement something needed is missing.
    reduced = {**RENDERED, "Statement": [s for s in RENDERED["Statement"] if s["Sid"] != sid]}
    assert _missing_grants(reduced), f"{sid} grants nothing the operator needs"
