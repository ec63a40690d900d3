"""The operator's own least-privilege IAM policy (``regaccess iam-policy``; deploy/iam-policy.json).

One source for the document: ``document()`` builds it from the options below, and
deploy/iam-policy.json is its output with every option left at its placeholder
(``${AWS_PARTITION}``, ``${AWS_ACCOUNT_ID}``, ``${REGACCESS_CLUSTER_ID}``), so either
``regaccess iam-policy --account ... --cluster-id ...`` or ``envsubst`` on the file gives
the policy to attach (tests/chart/test_iam_policy.py checks the file is in step).

What holds the line, statement by statement (docs/install.md, "IAM policy"):

- Secrets: reads of metadata on our two prefixes; ``GetSecretValue`` and every write only on
  secrets whose ``regaccess.io/owner`` tag is this cluster's (``StringLike
  <cluster-id>/*``); ``CreateSecret`` and ``TagResource`` only with this cluster's owner
  tag in the request, and ``TagResource`` only where the tag is absent (adopting) or already
  this cluster's: tagging first cannot defeat the owner guard on writes.
- KMS: keys of this account, used only through Secrets Manager and only for secrets under
  our prefixes (``kms:EncryptionContext:SecretARN``).
- PullReady: reads only (attached managed policies and their versions, a secret's resource
  policy, a key's key policy).
- IAM: inline policy writes only on roles that opt in with the tag
  ``regaccess.io/grantable=true``; ``iam:PassRole`` of those roles only to ECS and Batch.
- ECS / Batch: registering only with this cluster's owner tag in the request; describing and
  updating ECS services (rollouts, docs/services.md) only on services tagged
  ``regaccess.io/grantable=true``.
- ECR: repository policy writes only on repositories tagged ``regaccess.io/grantable=true``.
- STS: ``AssumeRole`` only of roles under one path (default ``/regaccess/``), any account.

Pure: no AWS call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.aws.protocol import OWNER_TAG

POLICY_VERSION = "2012-10-17"
GRANTABLE_TAG = "regaccess.io/grantable"
GRANTABLE_VALUE = "true"
SECRET_PREFIXES = ("regaccess/", "ecr-pullthroughcache/")
DEFAULT_ASSUME_ROLE_PATH = "/regaccess/"
PASSED_TO = ("ecs-tasks.amazonaws.com", "batch.amazonaws.com")

# The placeholders deploy/iam-policy.json carries (envsubst-compatible names).
PARTITION_PLACEHOLDER = "${AWS_PARTITION}"
ACCOUNT_PLACEHOLDER = "${AWS_ACCOUNT_ID}"
CLUSTER_PLACEHOLDER = "${REGACCESS_CLUSTER_ID}"


@dataclass(frozen=True)
class Options:
    """What an administrator fills in (every field is a ``regaccess iam-policy`` option)."""

    partition: str = PARTITION_PLACEHOLDER     # aws, aws-cn, aws-us-gov
    account: str = ACCOUNT_PLACEHOLDER         # the account the operator acts in
    cluster_id: str = CLUSTER_PLACEHOLDER      # the operator's --cluster-id
    region: str = "*"                          # one region, or * for all
    assume_role_path: str = DEFAULT_ASSUME_ROLE_PATH  # roles spec.roleArn may name

    def __post_init__(self) -> None:
        path = self.assume_role_path
        if not (path.startswith("/") and path.endswith("/")):
            raise ValueError(f"assume role path {path!r} must start and end with /")


def _arn(o: Options, service: str, resource: str, *, region: bool = True, account: str | None = None) -> str:
    return f"arn:{o.partition}:{service}:{o.region if region else ''}:{o.account if account is None else account}:{resource}"


def _secrets(o: Options) -> list[str]:
    return [_arn(o, "secretsmanager", f"secret:{prefix}*") for prefix in SECRET_PREFIXES]


def _statement(sid: str, actions: list[str], resources: str | list[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def document(o: Options | None = None) -> dict[str, Any]:
    """The policy document for these options."""
    o = o or Options()
    ours = f"{o.cluster_id}/*"  # owner marks are <cluster-id>/<namespace>/<name>
    owned = {"StringLike": {f"aws:ResourceTag/{OWNER_TAG}": ours}}
    request_owned = {f"aws:RequestTag/{OWNER_TAG}": ours}
    grantable = {"StringEquals": {f"aws:ResourceTag/{GRANTABLE_TAG}": GRANTABLE_VALUE}}
    roles = _arn(o, "iam", "role/*", region=False)
    statements = [
        _statement("SecretsDescribeUnderOurPrefixes", ["secretsmanager:DescribeSecret",
                                                       "secretsmanager:GetResourcePolicy"], _secrets(o)),
        _statement("SecretsReadValueOnlyOwned", ["secretsmanager:GetSecretValue"], _secrets(o), owned),
        _statement("SecretsCreateOnlyWithOurOwnerTag", ["secretsmanager:CreateSecret"], _secrets(o),
                   {"StringLike": request_owned}),
        # Tagging is the only way to change the owner tag: only to our mark, and only on a
        # secret without one (adopting; also CreateSecret's tags) or already ours.
        _statement("SecretsTagUnmarkedWithOurOwnerTag", ["secretsmanager:TagResource"], _secrets(o),
                   {"StringLike": request_owned, "Null": {f"aws:ResourceTag/{OWNER_TAG}": "true"}}),
        _statement("SecretsTagOwnedWithOurOwnerTag", ["secretsmanager:TagResource"], _secrets(o),
                   {"StringLike": {**request_owned, f"aws:ResourceTag/{OWNER_TAG}": ours}}),
        _statement("SecretsWriteOnlyOwned", ["secretsmanager:UpdateSecret", "secretsmanager:PutSecretValue",
                                              "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret"],
                   _secrets(o), owned),
        _statement("KmsDescribeKeysOfTheAccount", ["kms:DescribeKey", "kms:GetKeyPolicy"], _arn(o, "kms", "key/*")),
        _statement("KmsUseKeysOnlyThroughSecretsManagerForOurSecrets", ["kms:GenerateDataKey", "kms:Decrypt"],
                   _arn(o, "kms", "key/*"),
                   {"StringLike": {"kms:ViaService": f"secretsmanager.{o.region}.amazonaws.com",
                                   "kms:EncryptionContext:SecretARN": _secrets(o)}}),
        # Reads tell a missing role from a missing policy and measure the inline budget.
        _statement("IamReadRolesOfTheAccount", ["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy",
                                                "iam:ListAttachedRolePolicies"], roles),
        # PullReady reads the execution roles' attached managed policies; AWS managed ones live
        # in the "aws" account, customer managed ones in this account: both, reads only.
        _statement("IamReadManagedPoliciesForPullReady", ["iam:GetPolicy", "iam:GetPolicyVersion"],
                   [_arn(o, "iam", "policy/*", region=False), _arn(o, "iam", "policy/*", region=False, account="aws")]),
        _statement("IamInlinePolicyOnlyOnGrantableRoles", ["iam:PutRolePolicy", "iam:DeleteRolePolicy"], roles,
                   grantable),
        _statement("IamPassGrantableRolesToEcsAndBatch", ["iam:PassRole"], roles,
                   {**grantable, "StringEquals": {**grantable["StringEquals"],
                                                  "iam:PassedToService": list(PASSED_TO)}}),
        _statement("EcsDescribeTaskDefinitionsNoResourceLevelPermissions", ["ecs:DescribeTaskDefinition"], "*"),
        _statement("EcsRegisterOnlyWithOurOwnerTag", ["ecs:RegisterTaskDefinition"], "*",
                   {"StringLike": request_owned}),
        _statement("EcsTagOnRegisterOnlyTaskDefinitions", ["ecs:TagResource"],
                   _arn(o, "ecs", "task-definition/*"),
                   {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}, "StringLike": request_owned}),
        # Service rollouts (spec.consumers.ecsServices): only services their owner opted in.
        _statement("EcsServicesRolloutOnlyOnGrantableServices", ["ecs:DescribeServices", "ecs:UpdateService"],
                   _arn(o, "ecs", "service/*"), grantable),
        _statement("BatchDescribeJobDefinitionsNoResourceLevelPermissions", ["batch:DescribeJobDefinitions"], "*"),
        _statement("BatchRegisterAndTagOnlyWithOurOwnerTag", ["batch:RegisterJobDefinition", "batch:TagResource"],
                   _arn(o, "batch", "job-definition/*"), {"StringLike": request_owned}),
        _statement("EcrPullThroughCacheRulesRegistryLevel",
                   ["ecr:DescribePullThroughCacheRules", "ecr:CreatePullThroughCacheRule",
                    "ecr:UpdatePullThroughCacheRule", "ecr:DeletePullThroughCacheRule"], "*"),
        # CrossAccountRepoAccess repositoryPrefixes: registry-level objects with no ARN or tags.
        _statement("EcrCreationTemplatesAndRegistryPolicyRegistryLevel",
                   ["ecr:DescribeRepositoryCreationTemplates", "ecr:CreateRepositoryCreationTemplate",
                    "ecr:UpdateRepositoryCreationTemplate", "ecr:DeleteRepositoryCreationTemplate",
                    "ecr:GetRegistryPolicy", "ecr:PutRegistryPolicy", "ecr:DeleteRegistryPolicy"], "*"),
        # ECRPullSecret: ECR offers no resource-level permission for this call ("*" is the only form).
        _statement("EcrAuthorizationTokenNoResourceLevelPermissions", ["ecr:GetAuthorizationToken"], "*"),
        _statement("EcrReadRepositoriesOfTheAccount", ["ecr:DescribeRepositories", "ecr:GetRepositoryPolicy"],
                   _arn(o, "ecr", "repository/*")),
        _statement("EcrRepositoryPolicyOnlyOnGrantableRepositories",
                   ["ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"], _arn(o, "ecr", "repository/*"), grantable),
        # Drift events (--drift-events-queue-url): only the operator's own queues.
        _statement("SqsDriftEventQueues", ["sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
                   _arn(o, "sqs", "regaccess-drift-events*")),
        # Cross-account by design: the role's account is the spec's roleArn's; the path is the admin's.
        _statement("StsAssumeRolesUnderOurPath", ["sts:AssumeRole"],
                   _arn(o, "iam", f"role{o.assume_role_path}*", region=False, account="*")),
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}


def dumps(o: Options | None = None) -> str:
    return json.dumps(document(o), indent=2) + "\n"
