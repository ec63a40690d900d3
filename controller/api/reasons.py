"""Condition types and the stable CamelCase reasons the operator sets.

Every reason here is documented in docs/conditions.md (cause and fix); a unit
test fails when one is missing there. Reasons are API: dashboards, alerts and
users' scripts match on them, so never rename one.
"""

from __future__ import annotations

# Condition types. Reconciling and Stalled are kstatus's "abnormal-true" conditions (present
# only while the resource is not Ready; their reason is Ready's): see docs/conditions.md.
READY = "Ready"
SYNCED = "Synced"
DRIFTED = "Drifted"
RECONCILING_TYPE = "Reconciling"  # the reason RECONCILING below has the same spelling
STALLED = "Stalled"
CONDITION_TYPES = (READY, SYNCED, DRIFTED, RECONCILING_TYPE, STALLED)
# Only on a RegistryCredential that lists spec.consumers.ecsServices (docs/services.md).
SERVICES_ROLLED_OUT = "ServicesRolledOut"
# Informative (RegistryCredential with consumers): can the consumers' tasks pull? Never changes Ready.
PULL_READY_TYPE = "PullReady"

# Success / neutral.
RECONCILED = "Reconciled"
NO_DRIFT = "NoDrift"
DRIFT_REMEDIATED = "DriftRemediated"
DRIFT_REPORTED = "DriftReported"
# Drift (driftPolicy Report): an object the operator's record holds has lost its mark to a hand edit.
MARK_REMOVED = "MarkRemoved"
RECONCILING = "Reconciling"
DELETING = "Deleting"

# Bad input (terminal until the spec or the source Secret changes).
INVALID_SPEC = "InvalidSpec"
INVALID_SECRET_NAME = "InvalidSecretName"
INVALID_DELETION_SETTINGS = "InvalidDeletionSettings"
SOURCE_SECRET_NOT_FOUND = "SourceSecretNotFound"
# The source Secret lacks the admin's opt-in label/annotation (--source-secret-opt-in).
SOURCE_NOT_OPTED_IN = "SourceNotOptedIn"
SOURCE_SECRET_INVALID = "SourceSecretInvalid"
SOURCE_KEY_MISSING = "SourceKeyMissing"
SOURCE_REGISTRY_NOT_FOUND = "SourceRegistryNotFound"
SECRET_VALUE_TOO_LARGE = "SecretValueTooLarge"
INVALID_POLICY_NAME = "InvalidPolicyName"
INVALID_PULL_THROUGH_CACHE = "InvalidPullThroughCache"
# pullThroughCache.upstreamRegistry is a public one ECR takes no credential or role for (quay, k8s, ecr-public).
UPSTREAM_TAKES_NO_CREDENTIAL = "UpstreamTakesNoCredential"
INVALID_GRANT = "InvalidGrant"
INVALID_REPOSITORY_NAME = "InvalidRepositoryName"
REPOSITORY_POLICY_TOO_LARGE = "RepositoryPolicyTooLarge"

# ECRPullSecret input (terminal until the spec changes, except a missing ServiceAccount).
INVALID_REGISTRY_ID = "InvalidRegistryId"            # registries[].registryId is not 12 digits
UNKNOWN_REGION = "UnknownRegion"                     # a Region botocore does not know for ECR
SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"  # spec.serviceAccounts names a missing one

# ECRPullSecret tokens.
TOKEN_EXPIRING = "TokenExpiring"  # a refresh failed and the token in the Secret expires before a retry

# Kubernetes API answers to the operator's own writes (the ECRPullSecret's Secret and ServiceAccounts).
KUBERNETES_FORBIDDEN = "KubernetesForbidden"
KUBERNETES_ERROR = "KubernetesError"

# Tenancy: the namespace's TenancyPolicy rules do not allow a name the spec uses (no AWS call).
NOT_PERMITTED = "NotPermitted"
# The TenancyPolicy named (other than "default") by --tenancy-policy does not exist: nothing is
# judged under a fall-back the admin did not choose, every resource is refused (no AWS call).
TENANCY_POLICY_MISSING = "TenancyPolicyMissing"

# AWS state.
OWNERSHIP_CONFLICT = "OwnershipConflict"
AWS_THROTTLED = "AwsThrottled"
AWS_UNAVAILABLE = "AwsUnavailable"
AWS_ACCESS_DENIED = "AwsAccessDenied"
AWS_REJECTED = "AwsRejected"
AWS_ERROR = "AwsError"
DEPENDENCY_MISSING = "DependencyMissing"
PULL_THROUGH_CACHE_LIMIT = "PullThroughCacheLimitExceeded"  # 50 rules per registry
SECRET_PENDING_DELETION = "SecretPendingDeletion"
# ECR rejected a repository policy naming a principal after the IAM propagation window.
PRINCIPAL_REJECTED = "PrincipalRejected"

# Wiring (role policies, task and job definitions).
POLICY_BUDGET_EXCEEDED = "PolicyBudgetExceeded"        # a role's 10,240-character inline budget
TASK_DEFINITION_NOT_FOUND = "TaskDefinitionNotFound"   # no ACTIVE revision of the family
JOB_DEFINITION_NOT_FOUND = "JobDefinitionNotFound"     # no ACTIVE revision of the job definition
CONTAINER_NOT_FOUND = "ContainerNotFound"              # spec names a container the revision lacks
UNSUPPORTED_JOB_DEFINITION = "UnsupportedJobDefinition"  # no containerProperties (multi-node, EKS, ECS)
EXECUTION_ROLE_MISSING = "ExecutionRoleMissing"        # the definition has no executionRoleArn
EXECUTION_ROLE_NOT_GRANTED = "ExecutionRoleNotGranted"  # its execution role is not in grants

# ECS service rollouts (condition ServicesRolledOut and status.services[].reason).
ROLLED_OUT = "RolledOut"                        # every listed service runs our revision, deployment COMPLETED
ROLLOUT_IN_PROGRESS = "RolloutInProgress"       # a deployment to our revision is IN_PROGRESS
ROLLOUT_FAILED = "RolloutFailed"                # the deployment circuit breaker failed (and rolled back)
SERVICE_IN_OTHER_FAMILY = "ServiceInOtherFamily"  # the service runs a family not in ecsTaskDefinitions
REVISION_NOT_OURS = "RevisionNotOurs"           # the family's latest ACTIVE revision does not reference the secret
SERVICE_MOVED_ON = "ServiceMovedOn"             # rolled once; a person has since put it on another revision
SERVICE_NOT_ROLLING_UPDATE = "ServiceNotRollingUpdate"  # CODE_DEPLOY or EXTERNAL deployment controller
SERVICE_NOT_FOUND = "ServiceNotFound"           # no ACTIVE service of that name in the cluster
# PullReady (controller.reconcile.pull_ready): the verdict of the execution roles' policies.
PULL_READY = "PullReady"                               # True: every check allows
PERMISSION_MISSING = "PermissionMissing"               # no statement allows an action the pull needs
EXPLICIT_DENY = "ExplicitDeny"                         # a Deny statement blocks it
EVALUATION_UNKNOWN = "EvaluationUnknown"               # a condition, boundary or unreadable policy
IMAGE_NEEDS_REPOSITORY_CREDENTIALS = "ImageNeedsRepositoryCredentials"  # non-ECR image, no credentials
ECR_IMAGE_WITH_REPOSITORY_CREDENTIALS = "EcrImageWithRepositoryCredentials"  # ECR takes none

ALL_REASONS = sorted(
    value
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str) and name not in ("READY", "SYNCED", "DRIFTED", "RECONCILING_TYPE", "STALLED",
                                                                            "SERVICES_ROLLED_OUT", "PULL_READY_TYPE")
)
