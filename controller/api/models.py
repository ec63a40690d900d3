"""Pydantic models of the custom resources' spec and status.

These models are the single source of truth for the API: the CRD YAML in
``crds/`` is generated from them (``controller.api.crdgen``), the operator
parses every object through them, and ``regaccess plan`` validates manifests
with them. Field names are a contract with users' Git repositories: add fields,
never rename them.

Only rules that a structural OpenAPI schema can express live here (types,
enums, patterns, lengths, ranges). Rules that span fields or need the cluster
(for example "recovery window and force delete are exclusive", or the default
secret name) live in ``controller.api.validation`` so that one function gives
every semantic error with its field path.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

GROUP = "regaccess.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# AWS patterns, kept here because both the CRD schema and the validators use them.
ACCOUNT_ID_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$"
ROLE_ARN_PATTERN = r"^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9/_+=.@-]{1,512}$"
ORGANIZATION_ID_PATTERN = r"^o-[a-z0-9]{10,32}$"
# ECR repository names: lower-case components separated by / . _ -
ECR_REPOSITORY_PATTERN = r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
# Pull-through cache prefix: 2-30 characters (ECR's own pattern) or the literal ROOT.
ECR_PREFIX_PATTERN = r"^(ROOT|(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]+$"  # length 2-1224 set on the fields (RE2 caps repeats at 1000)
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Role names or role ARNs, as users list them under grants.executionRoles.
ROLE_NAME_OR_ARN_PATTERN = (
    r"^([A-Za-z0-9_+=,.@-]{1,64}|arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512})$"
)
# Inline policy names (IAM: 1-128 characters of [A-Za-z0-9_+=,.@-]).
POLICY_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]{1,128}$"
TASK_FAMILY_PATTERN = r"^[a-zA-Z0-9_-]{1,255}$"
JOB_DEFINITION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,128}$"


RoleNameOrArn = Annotated[str, Field(pattern=ROLE_NAME_OR_ARN_PATTERN, max_length=2048)]
RepositoryName = Annotated[str, Field(pattern=ECR_REPOSITORY_PATTERN, min_length=2, max_length=256)]
# A repository creation template prefix (ECR assumes the trailing "/"), or ROOT.
TemplatePrefix = Annotated[str, Field(pattern=ECR_PREFIX_PATTERN, min_length=2, max_length=256)]
ContainerName = Annotated[str, Field(min_length=1, max_length=255)]


class _Model(BaseModel):
    """Base: camelCase names exactly as written in manifests; unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


# --------------------------------------------------------------------------- enums


class DeletionPolicy(str, Enum):
    Delete = "Delete"
    Retain = "Retain"


class DriftPolicy(str, Enum):
    Remediate = "Remediate"
    Report = "Report"


class UpstreamRegistry(str, Enum):
    """ECR's own API values for upstream registries: every one in botocore's ECR model.

    Those that take a credential keep this resource's secret as the rule's credential;
    ``ecr`` (ECR to ECR) and ``ecr-public-premium`` authenticate with IAM roles
    (customRoleArn, upstreamRoleArn) instead, and the rule sits beside the secret; the
    public upstreams are refused by validation with the reason UpstreamTakesNoCredential
    (controller.api.validation.UPSTREAMS).
    """

    docker_hub = "docker-hub"
    github_container_registry = "github-container-registry"
    gitlab_container_registry = "gitlab-container-registry"
    azure_container_registry = "azure-container-registry"
    chainguard = "chainguard"
    ecr = "ecr"
    ecr_public = "ecr-public"
    ecr_public_premium = "ecr-public-premium"
    quay = "quay"
    k8s = "k8s"


class Access(str, Enum):
    Pull = "Pull"
    Push = "Push"
    PullPush = "PullPush"


# --------------------------------------------------------------------------- RegistryCredential spec


class SecretRef(_Model):
    name: str = Field(
        description="Name of a Secret in the RegistryCredential's own namespace "
        "(other namespaces are never read).",
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
    )


class Source(_Model):
    secretRef: SecretRef = Field(description="The Kubernetes Secret that holds the credential.")
    registry: str | None = Field(
        default=None,
        description="For kubernetes.io/dockerconfigjson Secrets: the registry entry to use "
        "(key of .auths, for example https://index.docker.io/v1/ or ghcr.io). Required when "
        "the Secret has more than one entry.",
        min_length=1,
        max_length=512,
    )
    usernameKey: str = Field(
        default="username",
        description="For Opaque Secrets: the data key that holds the username.",
        min_length=1,
        max_length=253,
    )
    passwordKey: str = Field(
        default="password",
        description="For Opaque Secrets: the data key that holds the password or access token.",
        min_length=1,
        max_length=253,
    )


class SecretSpec(_Model):
    name: str | None = Field(
        default=None,
        description="Secrets Manager secret name. Default regaccess/<namespace>/<name>, or "
        "ecr-pullthroughcache/<namespace>/<name> with a pull-through cache (with /credential "
        "appended when the default would end in a hyphen and six characters). 1-512 characters "
        "of ASCII letters, digits and /_+=.@-, not ending in a hyphen followed by six "
        "characters (AWS reserves that for the ARN suffix).",
        min_length=1,
        max_length=512,
        pattern=SECRET_NAME_PATTERN,
    )
    kmsKeyId: str | None = Field(
        default=None,
        description="Customer managed KMS key (key ID, key ARN, alias name or alias ARN) that "
        "encrypts the secret. Default: the aws/secretsmanager key. Not allowed with a "
        "pull-through cache.",
        min_length=1,
        max_length=2048,
    )
    description: str | None = Field(
        default=None, description="Secret description.", max_length=2048
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra tags on the secret. Keys starting with regaccess.io/ are reserved.",
    )
    recoveryWindowInDays: int | None = Field(
        default=None,
        description="Days Secrets Manager keeps a deleted secret recoverable (7-30; AWS "
        "default 30). Exclusive with forceDeleteWithoutRecovery.",
        ge=7,
        le=30,
    )
    forceDeleteWithoutRecovery: bool | None = Field(
        default=None,
        description="Delete the secret at once, without a recovery window. Exclusive with "
        "recoveryWindowInDays.",
    )


class Grants(_Model):
    executionRoles: list[RoleNameOrArn] = Field(
        default_factory=list,
        description="ECS/Batch task execution roles (names or ARNs) that receive an inline "
        "policy allowing secretsmanager:GetSecretValue on exactly this secret (and "
        "kms:Decrypt on its customer managed key). At most 20.",
        max_length=20,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    policyName: str | None = Field(
        default=None,
        description="Inline policy name. Default regaccess-<namespace>-<name> (at most 128 "
        "characters).",
        min_length=1,
        max_length=128,
        pattern=POLICY_NAME_PATTERN,
    )


class EcsTaskDefinitionConsumer(_Model):
    family: str = Field(
        description="ECS task definition family.", pattern=TASK_FAMILY_PATTERN
    )
    containers: list[ContainerName] | None = Field(
        default=None,
        description="Container names that pull from the private registry. Default: all "
        "containers of the latest ACTIVE revision. At most 50.",
        max_length=50,  # bounds one resource's AWS calls (its share of the rate limiter)
    )


class BatchJobDefinitionConsumer(_Model):
    name: str = Field(
        description="AWS Batch job definition name.", pattern=JOB_DEFINITION_NAME_PATTERN
    )


ECS_CLUSTER_PATTERN = r"^([a-zA-Z0-9_-]{1,255}|arn:aws[a-zA-Z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[a-zA-Z0-9_-]{1,255})$"
ECS_SERVICE_PATTERN = r"^[a-zA-Z0-9_-]{1,255}$"


class EcsServiceConsumer(_Model):
    cluster: str = Field(description="ECS cluster name or ARN the service runs in.", pattern=ECS_CLUSTER_PATTERN)
    service: str = Field(description="ECS service name.", pattern=ECS_SERVICE_PATTERN)


class Consumers(_Model):
    ecsTaskDefinitions: list[EcsTaskDefinitionConsumer] = Field(
        default_factory=list,
        description="Task definition families whose containers reference the secret through "
        "repositoryCredentials.credentialsParameter. At most 50.",
        max_length=50,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    batchJobDefinitions: list[BatchJobDefinitionConsumer] = Field(
        default_factory=list,
        description="Batch job definitions whose containerProperties reference the secret. At most 50.",
        max_length=50,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    ecsServices: list[EcsServiceConsumer] = Field(
        default_factory=list,
        max_length=50,  # bounds one resource's AWS calls (its share of the rate limiter)
        description="ECS services to roll (opt-in): when the operator registers a new revision of a "
        "listed family that one of these services runs, it calls UpdateService with that revision, "
        "once per revision, and follows the deployment in status.services. A service on another "
        "family, or whose family's latest ACTIVE revision is not the operator's, is reported, not "
        "touched (docs/services.md). At most 50.",
    )


class PullThroughCache(_Model):
    upstreamRegistry: UpstreamRegistry = Field(
        description="Upstream registry, as ECR's API names it."
    )
    upstreamRegistryUrl: str | None = Field(
        default=None,
        description="Upstream registry URL. Defaulted per upstream (registry-1.docker.io, "
        "ghcr.io, registry.gitlab.com, cgr.dev, ecr-premium.aws.com); required for "
        "azure-container-registry (<name>.azurecr.io) and ecr (<account>.dkr.ecr.<region>.amazonaws.com).",
        min_length=1,
        max_length=512,
    )
    ecrRepositoryPrefix: str = Field(
        description="ECR repository prefix of the rule: 2-30 characters, or ROOT.",
        min_length=2,
        max_length=30,
        pattern=ECR_PREFIX_PATTERN,
    )
    # Plain strings in the schema: validation names what is wrong (an ARN, its partition,
    # which upstream takes it) in status, instead of a 422 that GitOps tools hide.
    customRoleArn: str | None = Field(
        default=None,
        description="ecr and ecr-public-premium only: IAM role ARN in the rule's account that ECR "
        "assumes to reach the upstream. ecr-public-premium: required together with upstreamRoleArn "
        "(neither: ECR's service-linked role). Other upstreams take the secret instead.",
        min_length=1,
        max_length=2048,
    )
    upstreamRoleArn: str | None = Field(
        default=None,
        description="ecr-public-premium only: IAM role ARN in the aws partition that ECR assumes "
        "through customRoleArn to reach ECR Public Premium; requires customRoleArn.",
        min_length=1,
        max_length=2048,
    )
    upstreamRepositoryPrefix: str | None = Field(
        default=None,
        description="ecr only: repository prefix in the upstream registry to match (ECR's default: ROOT).",
        min_length=2,
        max_length=30,
        pattern=ECR_PREFIX_PATTERN,
    )


class RegistryCredentialSpec(_Model):
    source: Source = Field(description="Where the credential comes from.")
    secret: SecretSpec = Field(
        default_factory=SecretSpec, description="The Secrets Manager secret that holds it."
    )
    region: str | None = Field(
        default=None,
        description="AWS Region to act in. Default: the operator's AWS_REGION.",
        pattern=REGION_PATTERN,
    )
    roleArn: str | None = Field(
        default=None,
        description="Role to assume to act in another account.",
        pattern=ROLE_ARN_PATTERN,
    )
    externalId: str | None = Field(
        default=None,
        description="External ID for assuming roleArn.",
        pattern=EXTERNAL_ID_PATTERN,
        min_length=2,
        max_length=1224,
    )
    grants: Grants = Field(
        default_factory=Grants, description="IAM inline policies on task execution roles."
    )
    consumers: Consumers = Field(
        default_factory=Consumers,
        description="ECS task definitions and Batch job definitions to wire to the secret.",
    )
    pullThroughCache: PullThroughCache | None = Field(
        default=None,
        description="Keep an ECR pull-through cache rule whose upstream credential is this "
        "secret.",
    )
    adoptExisting: bool = Field(
        default=False,
        description="Take over AWS objects that already exist without the regaccess.io/owner "
        "tag (a secret, a pull-through cache rule) or, for an inline role policy, without "
        "this resource's Sid prefix, instead of reporting a conflict. Objects marked by "
        "another owner are never taken over.",
    )
    deletionPolicy: DeletionPolicy = Field(
        default=DeletionPolicy.Delete,
        description="Delete: remove the AWS objects with the resource. Retain: leave them.",
    )
    driftPolicy: DriftPolicy = Field(
        default=DriftPolicy.Remediate,
        description="Remediate: repair manual changes in AWS. Report: only report them.",
    )


# --------------------------------------------------------------------------- CrossAccountRepoAccess spec


class Principal(_Model):
    accountId: str | None = Field(
        default=None,
        description="A whole AWS account (becomes arn:aws:iam::<id>:root).",
        pattern=ACCOUNT_ID_PATTERN,
    )
    roleArn: str | None = Field(
        default=None, description="One IAM role.", pattern=ROLE_ARN_PATTERN
    )
    organizationId: str | None = Field(
        default=None,
        description="A whole AWS Organization (Principal * with an aws:PrincipalOrgID "
        "condition).",
        pattern=ORGANIZATION_ID_PATTERN,
    )


class RepoGrant(_Model):
    principals: list[Principal] = Field(
        description="Who is granted access; each entry sets exactly one of accountId, "
        "roleArn, organizationId. At most 250.",
        min_length=1,
        max_length=250,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    access: Access = Field(description="Pull, Push or PullPush.")


class CrossAccountRepoAccessSpec(_Model):
    region: str | None = Field(
        default=None,
        description="AWS Region of the repositories. Default: the operator's AWS_REGION.",
        pattern=REGION_PATTERN,
    )
    roleArn: str | None = Field(
        default=None, description="Role to assume to act in another account.", pattern=ROLE_ARN_PATTERN
    )
    externalId: str | None = Field(
        default=None, description="External ID for assuming roleArn.", pattern=EXTERNAL_ID_PATTERN,
        min_length=2, max_length=1224,
    )
    repositories: list[RepositoryName] = Field(
        default_factory=list,
        description="ECR repository names whose policies carry the grants. At least one of "
        "repositories and repositoryPrefixes is required. At most 100.",
        max_length=100,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    repositoryPrefixes: list[TemplatePrefix] = Field(
        default_factory=list,
        description="ECR repository name prefixes (ROOT: every repository): the repositories "
        "that exist under each prefix, the repository creation template for the prefix "
        "(created when absent), and, for Pull grants where a pull-through cache rule has the "
        "prefix, statements in the registry policy that let the grantees create the cache "
        "repository and import the upstream image. At most 20.",
        max_length=20,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    grants: list[RepoGrant] = Field(description="Grants to keep. At most 20.", min_length=1, max_length=20)
    deletionPolicy: DeletionPolicy = Field(
        default=DeletionPolicy.Delete,
        description="Delete: remove the owned statements with the resource. Retain: leave them.",
    )
    driftPolicy: DriftPolicy = Field(
        default=DriftPolicy.Remediate,
        description="Remediate: repair manual changes in AWS. Report: only report them.",
    )


# --------------------------------------------------------------------------- ECRPullSecret spec


class EcrRegistry(_Model):
    registryId: str | None = Field(
        default=None,
        description="AWS account ID of the registry (12 digits). Default: the account of the "
        "operator's identity, or of roleArn when set. The schema takes any short string: the "
        "operator checks the 12 digits and reports InvalidRegistryId as a condition.",
        # No pattern in the schema: a wrong ID is stored and gets Ready=False InvalidRegistryId
        # (validation_pull.py), which GitOps tools show, instead of a 422 nobody sees.
        max_length=64,
    )
    region: str | None = Field(
        default=None,
        description="AWS Region of the registry. Default: the operator's AWS_REGION.",
        pattern=REGION_PATTERN,
    )


class ECRPullSecretSpec(_Model):
    registries: list[EcrRegistry] = Field(
        default_factory=list,
        description="Registries the Secret holds an auths entry for "
        "(<registryId>.dkr.ecr.<region>.amazonaws.com). Default: one, the registry of the "
        "operator's (or roleArn's) account in the operator's Region. At most 20.",
        max_length=20,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    roleArn: str | None = Field(
        default=None,
        description="Role to assume for GetAuthorizationToken: the pulling account's principal of "
        "a cross-account grant.",
        pattern=ROLE_ARN_PATTERN,
    )
    externalId: str | None = Field(
        default=None, description="External ID for assuming roleArn.", pattern=EXTERNAL_ID_PATTERN,
        min_length=2, max_length=1224,
    )
    secretName: str | None = Field(
        default=None,
        description="Name of the kubernetes.io/dockerconfigjson Secret, in the resource's own "
        "namespace. Default: metadata.name.",
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
    )
    serviceAccounts: list[Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]] = Field(
        default_factory=list,
        description="ServiceAccounts in the same namespace whose imagePullSecrets get the Secret "
        "(removed again when the resource is deleted or the entry dropped); nothing else of "
        "them is changed. At most 50.",
        max_length=50,  # bounds one resource's AWS calls (its share of the rate limiter)
    )
    adoptExisting: bool = Field(
        default=False,
        description="Take over an existing Secret of that name that the operator did not create "
        "(no regaccess.io/owner annotation) instead of reporting a conflict. A Secret of "
        "another ECRPullSecret is never taken over.",
    )


# --------------------------------------------------------------------------- status


class Condition(_Model):
    type: str = Field(description="Ready, Synced or Drifted; Reconciling or Stalled while not Ready.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="Stable CamelCase reason (see docs/conditions.md).")
    message: str = Field(default="", description="Human-readable detail; never secret material.")
    lastTransitionTime: str | None = Field(default=None, description="RFC 3339 time.")
    observedGeneration: int | None = Field(default=None, description="Generation evaluated.")


class DriftRecord(_Model):
    object: str = Field(description="The AWS object, for example secret or rolePolicy/my-role.")
    field: str = Field(description="The field found changed.")
    time: str = Field(description="When it was found (RFC 3339).")
    remediated: bool = Field(default=False, description="Whether the operator repaired it.")


class ManagedObject(_Model):
    """One AWS object the operator manages, as shown in status."""

    kind: str = Field(description="rolePolicy, taskDefinition, jobDefinition or pullThroughCacheRule.")
    name: str = Field(description="Role name, family, job definition name or prefix.")
    arn: str | None = Field(default=None, description="ARN of the object or of the revision kept.")
    state: str = Field(description="Synced, Pending, Conflict, Error or Retained.")
    message: str = Field(default="", description="Why, when not Synced.")
    owned: bool | None = Field(
        default=None, description="Set on a row that is not Synced when the operator's record holds the object "
        "(it created or took it over): ownership evidence beside the object's mark, so a failed write does not "
        "turn the object into a stranger's (docs/concepts.md#ownership).")


# kopf's diff base (controller.diffbase), in the status of every kind kopf handles.
DiffBase = Annotated[str | None, Field(
    description="Written by the operator (kopf's diff base): the spec, labels and annotations it last "
    "handled, as JSON, so that a spec change is told apart from other writes.")]


class ServiceStatus(_Model):
    """One ECS service of spec.consumers.ecsServices and its rollout (docs/services.md)."""

    cluster: str = Field(description="Cluster as the spec names it.")
    service: str = Field(description="Service name.")
    arn: str | None = Field(default=None, description="Service ARN.")
    taskDefinition: str | None = Field(
        default=None, description="The revision the operator rolled the service to (or found it on).")
    rolloutState: str | None = Field(
        default=None, description="IN_PROGRESS, COMPLETED or FAILED: the ECS deployment's rolloutState.")
    runningCount: int | None = Field(default=None, description="Running tasks of that deployment.")
    reason: str = Field(default="", description="Stable CamelCase reason (docs/conditions.md).")
    message: str = Field(default="", description="Why, when not rolled out; the ECS rolloutStateReason.")


class PullThroughCacheStatus(_Model):
    ecrRepositoryPrefix: str
    upstreamRegistryUrl: str
    credentialArn: str | None = None
    customRoleArn: str | None = None
    upstreamRoleArn: str | None = None
    upstreamRepositoryPrefix: str | None = None


class RegistryCredentialStatus(_Model):
    observedGeneration: int | None = Field(
        default=None, description="Generation the conditions describe (set by every reconcile)."
    )
    syncedGeneration: int | None = Field(
        default=None,
        description="Generation last applied to AWS in full, or found invalid; 0: none yet.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    secretName: str | None = None
    secretArn: str | None = None
    secretVersionId: str | None = Field(
        default=None, description="Secrets Manager version the operator last wrote or verified."
    )
    reportedSecretVersionId: str | None = Field(
        default=None, description="driftPolicy Report: the AWSCURRENT version whose value was found "
        "different and reported; not read again until AWSCURRENT or the source Secret changes.",
    )
    kmsKeyId: str | None = Field(default=None, description="spec.secret.kmsKeyId that kmsKeyArn was resolved from.")
    kmsKeyArn: str | None = Field(default=None, description="Key ARN of the customer managed KMS key, if any.")
    sourceResourceVersion: str | None = Field(
        default=None,
        description="resourceVersion of the source Secret whose value was last synced.",
    )
    managed: list[ManagedObject] = Field(
        default_factory=list,
        description="Role policies, task/job definition revisions and the pull-through cache rule kept.",
    )
    pullThroughCacheRule: PullThroughCacheStatus | None = None
    monthlyCost: str | None = Field(
        default=None, description="What the managed objects cost per month at list price, in dollars "
        "(Secrets Manager secrets at --secret-monthly-price; docs/metrics.md).")
    services: list[ServiceStatus] = Field(
        default_factory=list, description="spec.consumers.ecsServices and their rollouts.")
    nextRolloutCheckTime: str | None = Field(
        default=None, description="When the operator looks at a rollout in progress again (RFC 3339); "
        "absent when no rollout is in progress.")
    lastSyncTime: str | None = None
    lastDriftCheckTime: str | None = None
    drift: list[DriftRecord] = Field(default_factory=list, description="Most recent drift, bounded.")
    lastHandledConfiguration: DiffBase = None


class RepositoryStatus(_Model):
    name: str
    arn: str | None = None
    synced: bool = False
    message: str = ""
    rejectedSince: str | None = Field(
        default=None,
        description="When ECR first rejected this repository's policy for a principal it did "
        "not know (RFC 3339); the operator retries for about two minutes (IAM eventual "
        "consistency) before reporting PrincipalRejected.",
    )


class PolicyDocumentStatus(_Model):
    name: str = Field(description="Template prefix, or the registry (account ID) of the registry policy.")
    arn: str | None = None
    synced: bool = False
    message: str = ""


class CrossAccountRepoAccessStatus(_Model):
    observedGeneration: int | None = Field(
        default=None, description="Generation the conditions describe (set by every reconcile)."
    )
    conditions: list[Condition] = Field(default_factory=list)
    repositories: list[RepositoryStatus] = Field(
        default_factory=list,
        description="One row per repository: listed ones and those found under repositoryPrefixes.",
    )
    templates: list[PolicyDocumentStatus] = Field(
        default_factory=list, description="One row per repository creation template (by prefix)."
    )
    registryPolicy: PolicyDocumentStatus | None = Field(
        default=None,
        description="The registry policy row, while statements for pull-through cache are kept there.",
    )
    lastSyncTime: str | None = None
    lastDriftCheckTime: str | None = None
    drift: list[DriftRecord] = Field(default_factory=list)
    lastHandledConfiguration: DiffBase = None


class ECRPullSecretStatus(_Model):
    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    secretName: str | None = Field(default=None, description="The Secret kept.")
    registries: list[str] = Field(
        default_factory=list, description="Registry hosts the Secret holds an entry for."
    )
    serviceAccounts: list[str] = Field(
        default_factory=list, description="ServiceAccounts whose imagePullSecrets carry the Secret."
    )
    expiresAt: str | None = Field(
        default=None, description="When the earliest token in the Secret expires (RFC 3339)."
    )
    lastRefreshTime: str | None = Field(
        default=None, description="When the tokens in the Secret were fetched (RFC 3339)."
    )
    nextRefreshTime: str | None = Field(
        default=None, description="When the operator fetches new tokens (or retries a failed refresh)."
    )
    refreshFailures: int | None = Field(
        default=None, description="Failed refresh attempts since the last successful one."
    )
    lastSyncTime: str | None = None
    lastHandledConfiguration: DiffBase = None


# --------------------------------------------------------------------------- TenancyPolicy

TenancyPattern = Annotated[str, Field(min_length=1, max_length=2048)]


class TenancyAction(str, Enum):
    Allow = "Allow"
    Deny = "Deny"


def _rule(what: str) -> Any:
    return Field(default=None, description=f"Glob patterns for {what}. Left out: the next rule decides.")


class TenancyRules(_Model):
    """Per-field glob patterns: * any characters, ? one, {namespace} the resource's namespace (docs/security.md)."""

    secretNames: list[TenancyPattern] | None = _rule("Secrets Manager secret names")
    policyNames: list[TenancyPattern] | None = _rule("IAM inline policy names")
    executionRoles: list[TenancyPattern] | None = _rule(
        "execution roles granted (a pattern starting with arn: matches role ARNs, others the role name)")
    taskDefinitionFamilies: list[TenancyPattern] | None = _rule("ECS task definition families")
    jobDefinitions: list[TenancyPattern] | None = _rule("Batch job definition names")
    ecsServices: list[TenancyPattern] | None = _rule(
        "ECS services rolled (spec.consumers.ecsServices), as <cluster name>/<service name>")
    pullThroughCachePrefixes: list[TenancyPattern] | None = _rule("ECR pull-through cache prefixes")
    repositories: list[TenancyPattern] | None = _rule(
        "ECR repositories; a repositoryPrefixes entry needs a pattern ending in * that covers it")
    regions: list[TenancyPattern] | None = _rule("Regions a resource names (spec.region, registries[].region)")
    accounts: list[TenancyPattern] | None = _rule(
        "AWS account IDs a resource acts in (of spec.roleArn, execution role ARNs, registries[].registryId)")
    roleArns: list[TenancyPattern] | None = _rule(
        "roles a resource assumes (spec.roleArn) or has ECR assume (spec.pullThroughCache.customRoleArn, upstreamRoleArn)")


class TenancyPolicySpec(_Model):
    defaultAction: TenancyAction = Field(
        default=TenancyAction.Deny,
        description="What a rule field that neither the namespace's entry nor default lists allows: "
        "Deny (nothing; the default) or Allow (anything).",
    )
    default: TenancyRules | None = Field(
        default=None,
        description="Rules for every namespace. Left out: the shipped default, every field scoped "
        "to the namespace (secretNames regaccess/{namespace}/* and ecr-pullthroughcache/{namespace}/*, "
        "policyNames regaccess-{namespace}-*, executionRoles, taskDefinitionFamilies and jobDefinitions "
        "{namespace}-*, ecsServices */{namespace}-*, pullThroughCachePrefixes {namespace} and "
        "{namespace}/*, repositories {namespace}/*; regions, accounts and roleArns none). "
        "{} means no rules (defaultAction decides every field).",
    )
    namespaces: dict[str, TenancyRules] = Field(
        default_factory=dict,
        description="Namespace glob -> rules overriding default field by field; the most specific "
        "matching key wins (exact name, then most literal characters).",
    )


class TenancyPolicyStatus(_Model):
    """Not written: the operator reports a refused resource on the resource itself."""


# --------------------------------------------------------------------------- kinds


class KindInfo(BaseModel):
    """What crdgen and the handlers need to know about one custom resource kind."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    # Printer columns besides the conditions and Age: (name, type, jsonPath).
    printer_columns: list[tuple[str, str, str]] = []
    conditions: list[str] = ["Ready", "Synced", "Drifted"]
    scope: str = "Namespaced"
    has_status: bool = True


REGISTRY_CREDENTIAL = KindInfo(
    kind="RegistryCredential",
    plural="registrycredentials",
    singular="registrycredential",
    short_names=["regcred"],
    spec_model=RegistryCredentialSpec,
    status_model=RegistryCredentialStatus,
    description="A private-registry credential kept in AWS Secrets Manager, with the IAM, "
    "ECS, Batch and ECR objects that use it.",
    printer_columns=[("Cost/Month", "string", ".status.monthlyCost")],
)

CROSS_ACCOUNT_REPO_ACCESS = KindInfo(
    kind="CrossAccountRepoAccess",
    plural="crossaccountrepoaccesses",
    singular="crossaccountrepoaccess",
    short_names=["xrepo"],
    spec_model=CrossAccountRepoAccessSpec,
    status_model=CrossAccountRepoAccessStatus,
    description="Statements in ECR repository policies that let other AWS accounts, roles or "
    "an AWS Organization pull and/or push.",
)

ECR_PULL_SECRET = KindInfo(
    kind="ECRPullSecret",
    plural="ecrpullsecrets",
    singular="ecrpullsecret",
    short_names=["ecrpull"],
    spec_model=ECRPullSecretSpec,
    status_model=ECRPullSecretStatus,
    description="A kubernetes.io/dockerconfigjson Secret kept fresh from ECR's 12-hour "
    "authorization token, optionally listed in ServiceAccounts' imagePullSecrets.",
    printer_columns=[("Expires", "date", ".status.expiresAt")],
    conditions=["Ready", "Synced"],
)

TENANCY_POLICY = KindInfo(
    kind="TenancyPolicy",
    plural="tenancypolicies",
    singular="tenancypolicy",
    short_names=["tenancy"],
    spec_model=TenancyPolicySpec,
    status_model=TenancyPolicyStatus,
    description="Cluster-scoped, written by the cluster admin: what each namespace's regaccess "
    "resources may name in AWS (secret and policy names, roles, families, repositories, Regions, "
    "accounts). The operator follows the one named by --tenancy-policy.",
    printer_columns=[("Default", "string", ".spec.defaultAction")],
    conditions=[],
    scope="Cluster",
    has_status=False,
)

KINDS = [REGISTRY_CREDENTIAL, CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, TENANCY_POLICY]
# The kinds the operator reconciles (namespaced, with status); TenancyPolicy is only read.
RECONCILED_KINDS = [REGISTRY_CREDENTIAL, CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET]
