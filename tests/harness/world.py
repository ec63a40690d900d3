"""The AWS objects a test (or benchmark) needs around one custom resource.

Used by ``tests/aws/test_drift_budget_aws.py``, ``tests/e2e/test_drift.py`` and
``bench/drift_bench.py`` to put in place, with plain boto3 against the AWS test
server, what a user's pipeline would have created before applying a
RegistryCredential or CrossAccountRepoAccess: task execution roles, an ECS task
definition family, a Batch job definition and ECR repositories. Also the
"behind the operator's back" edits the drift tests make, so every tier changes
AWS the same way.

Nothing here talks to the operator or to Kubernetes.
"""

from __future__ import annotations

import json
from typing import Any, Callable

ACCOUNT = "123456789012"  # moto's default account
ECS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}

EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
# The AWS managed policy's document, for when moto has not loaded AWS managed policies.
EXECUTION_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                   "ecr:BatchGetImage", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*",
    }],
}

ClientOf = Callable[[str], Any]


def make_role(client: ClientOf, name: str) -> str:
    """A task execution role (trust policy only; moto does not check managed policies)."""
    return client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))["Role"]["Arn"]


def make_execution_role(client: ClientOf, name: str, path: str = "/") -> str:
    """A task execution role as AWS users have it: ECS trust, the managed policy attached."""
    iam = client("iam")
    arn = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))["Role"]["Arn"]
    try:
        iam.attach_role_policy(RoleName=name, PolicyArn=EXECUTION_POLICY_ARN)
    except iam.exceptions.NoSuchEntityException:
        # moto loads AWS managed policies only on request: a same-named customer policy
        # with the same document stands in for it.
        try:
            policy_arn = iam.create_policy(PolicyName="AmazonECSTaskExecutionRolePolicy", Path="/service-role/",
                                           PolicyDocument=json.dumps(EXECUTION_POLICY))["Policy"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            policy_arn = f"arn:aws:iam::{ACCOUNT}:policy/service-role/AmazonECSTaskExecutionRolePolicy"
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    return arn


def three_container_task_definition(family: str, execution_role: str | None, **extra: Any) -> dict[str, Any]:
    """RegisterTaskDefinition parameters of a realistic Fargate service: app, mesh sidecar, log router."""
    params: dict[str, Any] = {
        "family": family,
        "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{family}-task",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "containerDefinitions": [
            {"name": "app", "image": "registry.example.com/team/app:1", "essential": True,
             "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
             "environment": [{"name": "MODE", "value": "prod"}]},
            {"name": "envoy", "image": "registry.example.com/mesh/envoy:1", "essential": True, "user": "1337"},
            {"name": "log-router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
             "essential": False},
        ],
        "tags": [{"key": "team", "value": "payments"}],
        **extra,
    }
    if execution_role:
        params["executionRoleArn"] = execution_role
    return params


def register_family(client: ClientOf, family: str, execution_role_arn: str) -> str:
    """A Fargate task definition without repository credentials; returns its ARN."""
    return client("ecs").register_task_definition(
        family=family,
        executionRoleArn=execution_role_arn,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "app", "image": "registry.example.com/team/app:1", "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]


def register_job(client: ClientOf, name: str, execution_role_arn: str) -> str:
    """A Fargate Batch job definition without repository credentials; returns its ARN."""
    return client("batch").register_job_definition(
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "registry.example.com/team/job:1",
            "command": ["run"],
            "executionRoleArn": execution_role_arn,
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
        },
    )["jobDefinitionArn"]


def make_repository(client: ClientOf, name: str) -> str:
    return client("ecr").create_repository(repositoryName=name)["repository"]["repositoryArn"]


# --------------------------------------------------------------------------- edits behind the operator's back


def put_secret_value(client: ClientOf, secret_id: str, value: dict[str, str]) -> str:
    """A new AWSCURRENT version with another value (what a person with console access does)."""
    return client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))["VersionId"]


def edit_role_policy(client: ClientOf, role: str, policy: str) -> None:
    """Widen our inline policy to every secret (a classic hand edit in the console's JSON
    editor: the first statement's Resource becomes "*", its Sid, the owner's mark, stays)."""
    document = role_policy(client, role, policy)
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    statements[0]["Resource"] = "*"
    document["Statement"] = statements[:1]
    client("iam").put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document))


def role_policy(client: ClientOf, role: str, policy: str) -> dict[str, Any]:
    document = client("iam").get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def add_action_to_owned_statement(client: ClientOf, repository: str, sid_prefix: str,
                                  action: str = "ecr:PutImage") -> str:
    """Add an action to the first statement whose Sid carries ``sid_prefix``; returns that Sid."""
    ecr = client("ecr")
    document = json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])
    statement = next(s for s in document["Statement"] if str(s.get("Sid", "")).startswith(sid_prefix))
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    statement["Action"] = [*actions, action]
    ecr.set_repository_policy(repositoryName=repository, policyText=json.dumps(document))
    return statement["Sid"]


def repository_policy(client: ClientOf, repository: str) -> dict[str, Any]:
    return json.loads(client("ecr").get_repository_policy(repositoryName=repository)["policyText"])


def latest_task_definition(client: ClientOf, family: str) -> dict[str, Any]:
    return client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]


def latest_job_definition(client: ClientOf, name: str) -> dict[str, Any]:
    found = client("batch").describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
    return max(found, key=lambda d: d["revision"])


def delete_rule(client: ClientOf, prefix: str) -> None:
    client("ecr").delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)


def rules(client: ClientOf, prefix: str) -> list[dict[str, Any]]:
    ecr = client("ecr")
    try:
        return ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])["pullThroughCacheRules"]
    except ecr.exceptions.PullThroughCacheRuleNotFoundException:
        return []
