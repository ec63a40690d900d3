"""ECR policy documents: the statements one CrossAccountRepoAccess owns in them.

Called by ``controller.reconcile.cross_account`` (through the one loop,
``controller.reconcile.loop``) and by ``regaccess plan``. The kind protocol
(``controller.aws.protocol``) is provided by one class, ``Statements``,
parameterised by where the document lives:

- ``STATEMENTS``: a repository's policy (Get/Set/DeleteRepositoryPolicy);
- ``TEMPLATE_STATEMENTS``: the ``repositoryPolicy`` of the repository creation
  template of a prefix (Describe/Create/Update/DeleteRepositoryCreationTemplate;
  an absent template is created with ``appliedFor`` and ``TEMPLATE_MARK`` as its
  description, and deleted again only when it carries that mark and nothing but
  our statements);
- ``REGISTRY_STATEMENTS``: the registry policy (Get/Put/DeleteRegistryPolicy),
  where ``cache_statements()`` lets Pull grantees fill pull-through caches.

``repositories_under()`` lists the repositories under prefixes (paginated) and
``cache_rules()`` the pull-through cache rules. For a repository policy:

- ``observe(ecr, DesiredStatements)``: one GetRepositoryPolicy. No statement
  with our Sid prefix means ``exists=False`` (a create merges ours in); ours
  present is ``Owner.OURS`` with one ``Difference`` per statement Sid, compared by
  meaning. Statements under this owner's legacy (40-bit) mark are ours too when
  the caller accepts that mark (``DesiredStatements.old_prefix``, only where status
  records the document): ``outdated`` when that mark is their only difference. A
  repository that does not exist raises ``RepositoryMissing`` (a missing
  dependency, not "absent statements": there is nothing to create into);
- ``create`` / ``update``: SetRepositoryPolicy of the merged document;
  ``delete``: our statements out (DeleteRepositoryPolicy when nothing else is
  left); ``predict``: what those would return, without AWS. ECR refusing a
  principal IAM does not know (yet) raises ``PrincipalRejected``.

Pure helpers: ``sid_prefix()`` (ownership), ``desired_statements()``,
``compare()`` / ``statement_differences()`` (owned statements only, by meaning),
``merge()`` / ``removal()`` (every statement we do not own is kept as the very
same dict, in its order), ``grants_too_large_message()`` /
``oversize_message()`` (the 10,240-character policy limit) and
``is_principal_rejection()``.

Ownership is by ``Sid`` prefix (``controller.aws.marks``: 128 bits of HMAC-SHA256
keyed with the cluster id), because repository policies have no tags: a
repository policy may hold statements written by people, Terraform and other
CrossAccountRepoAccess objects at once, and the operator must never touch those.
Those foreign statements are not objects of this kind at all, so its owner is
only ever ``OURS`` or ``ABSENT``.

Access levels (decided here, documented in docs/cross-account-pull.md):
``Pull`` is the three pull actions. ``Push`` is the four upload actions plus
``ecr:BatchCheckLayerAvailability`` and ``ecr:BatchGetImage``, exactly the set
AWS's "IAM permissions for pushing an image" page lists: a docker push asks
which layers exist and reads the manifest before it uploads; without them a push
fails. ``Push`` alone does not include ``ecr:GetDownloadUrlForLayer``, so it
cannot download layers; ``PullPush`` is the union of both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from controller.api.models import Access
from controller.api.validation_xrepo import ResolvedCrossAccountRepoAccess
from controller.aws import marks
from controller.aws import policydoc
from controller.aws import protocol
from controller.aws.protocol import Action, Difference, Owner, Written

MAX_POLICY_CHARS = 10_240
POLICY_VERSION = "2012-10-17"

PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
PUSH_ONLY_ACTIONS = ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload")
# What a push needs besides the uploads (AWS: "IAM permissions for pushing an image").
PUSH_READ_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage")
ACTIONS: dict[str, tuple[str, ...]] = {
    Access.Pull.value: PULL_ACTIONS,
    Access.Push.value: PUSH_ONLY_ACTIONS + PUSH_READ_ACTIONS,
    Access.PullPush.value: PULL_ACTIONS + PUSH_ONLY_ACTIONS,
}

ORG_CONDITION_KEY = "aws:PrincipalOrgID"

# The Sid marks (one rule for every document without tags: controller.aws.marks).
SID_HEAD = marks.SID_HEAD
SID_TAIL = marks.SID_TAIL

ERROR_REPOSITORY_NOT_FOUND = "RepositoryNotFoundException"
ERROR_POLICY_NOT_FOUND = "RepositoryPolicyNotFoundException"
ERROR_INVALID_PARAMETER = "InvalidParameterException"
# What ECR answers when a policy names a principal IAM does not know (yet).
REJECTION_MARKERS = ("invalid repository policy provided", "principal not found")

MSG_TOO_LARGE = (
    "{what} would be {total} characters, over ECR's limit of "
    "{limit}: statements owned by others take {foreign}, this resource's take {ours} "
    "(largest: spec.grants[{grant}], {grant_size}); split the grants over fewer principals "
    "per repository or use an organizationId"
)
MSG_GRANTS_TOO_LARGE = (
    "this resource's statements alone are {total} characters, over ECR's limit of {limit} per "
    "repository policy (largest: spec.grants[{grant}], {grant_size}); split the grants over "
    "several resources or use an organizationId"
)


# --------------------------------------------------------------------------- ownership


def sid_prefix(cluster_id: str, namespace: str, name: str) -> str:
    """The Sid prefix that marks statements owned by cluster_id/namespace/name.

    ``controller.aws.marks.sid_prefix``: readable part, 128 bits of HMAC-SHA256 keyed
    with the cluster id, tail ``Z``; one owner's prefix never starts another's Sids.
    """
    return marks.sid_prefix(cluster_id, namespace, name)


def legacy_sid_prefix(namespace: str, name: str) -> str:
    """The prefix versions before keyed marks gave namespace/name's statements (no cluster
    id, 40 bits of sha256): recognised as ours-but-outdated where status records the
    document as ours (``DesiredStatements.old_prefix``), never written."""
    return marks.legacy_mark(namespace, name)


Prefixes = str | tuple[str, ...]


def is_owned(statement: Any, prefix: Prefixes) -> bool:
    """Does the statement's Sid carry ``prefix`` (or one of them, our new and our old mark)?"""
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    return isinstance(sid, str) and sid.startswith(prefix)


def owned_statements(document: str | dict[str, Any] | None, prefix: Prefixes) -> list[dict[str, Any]]:
    return [s for s in policydoc.statements(document) if is_owned(s, prefix)]


# --------------------------------------------------------------------------- desired


def partition_of(region: str | None) -> str:
    """The ARN partition of a Region (account root ARNs are partition-specific)."""
    region = region or ""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def account_root_arn(account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:root"


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def desired_statements(resolved: ResolvedCrossAccountRepoAccess, *, partition: str = "aws") -> list[dict[str, Any]]:
    """The statements one resource owns in each of its repositories' policies.

    One statement per grant for its accounts and roles (Sid ``<prefix>G<i>``), and one
    for its organizations (``<prefix>G<i>Org``: Principal ``*`` with a StringEquals
    aws:PrincipalOrgID condition, which matches any of the listed IDs). Grouping keeps
    the policy small against the 10,240-character limit. No Resource element: a
    repository policy applies to its repository.
    """
    prefix = marks.owner_sid_prefix(resolved.owner)
    out: list[dict[str, Any]] = []
    for index, grant in enumerate(resolved.spec.grants):
        actions = list(ACTIONS[grant.access])
        aws: list[str] = []
        orgs: list[str] = []
        for principal in grant.principals:
            if principal.accountId:
                aws.append(account_root_arn(principal.accountId, partition))
            elif principal.roleArn:
                aws.append(principal.roleArn)
            elif principal.organizationId:
                orgs.append(principal.organizationId)
        if aws:
            out.append(
                {
                    "Sid": f"{prefix}G{index}",
                    "Effect": "Allow",
                    "Principal": {"AWS": _one_or_list(aws)},
                    "Action": actions,
                }
            )
        if orgs:
            out.append(
                {
                    "Sid": f"{prefix}G{index}Org",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": actions,
                    "Condition": {"StringEquals": {ORG_CONDITION_KEY: _one_or_list(orgs)}},
                }
            )
    return out


def role_principals(statements: list[dict[str, Any]]) -> list[str]:
    """Role ARNs named in statements: the principals IAM may not know yet."""
    found: list[str] = []
    for statement in statements:
        principal = statement.get("Principal")
        values = principal.get("AWS", []) if isinstance(principal, dict) else []
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and ":role/" in value and value not in found:
                found.append(value)
    return found


def all_principals(statements: list[dict[str, Any]]) -> list[str]:
    """Every principal named in statements (ARNs and organization IDs), in order."""
    found: list[str] = []
    for statement in statements:
        principal = statement.get("Principal")
        values: Any = principal.get("AWS", []) if isinstance(principal, dict) else []
        orgs = statement.get("Condition", {}).get("StringEquals", {}).get(ORG_CONDITION_KEY, [])
        for value in [*(values if isinstance(values, list) else [values]),
                      *(orgs if isinstance(orgs, list) else [orgs])]:
            if value not in found:
                found.append(value)
    return found


# --------------------------------------------------------------------------- compare, merge, removal


def statement_differences(
    existing: str | dict[str, Any] | None, prefix: Prefixes, desired: list[dict[str, Any]]
) -> tuple[Difference, ...]:
    """Named differences between the owned statements and desired, by meaning.

    One ``Difference("Statement[<sid>]", observed, desired)`` per Sid that is
    missing, changed or extra (observed/desired: the statement, or a list when a
    Sid is used twice; None when absent). Statements we do not own are not looked
    at. Order, string-vs-list and account-ID-vs-root-ARN principal forms do not
    count (``controller.aws.policydoc``).
    """
    have: dict[str, list[dict[str, Any]]] = {}
    for statement in owned_statements(existing, prefix):
        have.setdefault(statement["Sid"], []).append(statement)
    want: dict[str, list[dict[str, Any]]] = {}
    for statement in desired:
        want.setdefault(statement["Sid"], []).append(statement)

    def meaning(statements: list[dict[str, Any]]) -> list[Any]:
        return sorted(policydoc.canonical_statement(s) for s in statements)

    def shown(statements: list[dict[str, Any]] | None) -> Any:
        return None if not statements else statements[0] if len(statements) == 1 else statements

    return tuple(
        Difference(f"Statement[{sid}]", shown(have.get(sid)), shown(want.get(sid)))
        for sid in sorted(set(have) | set(want))
        if meaning(have.get(sid, [])) != meaning(want.get(sid, []))
    )


def compare(
    existing: str | dict[str, Any] | None, prefix: Prefixes, desired: list[dict[str, Any]]
) -> tuple[str, ...]:
    """The paths of ``statement_differences`` (``Statement[<sid>]``)."""
    return tuple(d.path for d in statement_differences(existing, prefix, desired))


def _without_owned(document: str | dict[str, Any] | None, prefix: Prefixes) -> tuple[dict[str, Any], list[Any]]:
    doc = policydoc.parse(document)
    foreign = [s for s in policydoc.statements(doc) if not is_owned(s, prefix)]
    # Keep the document's own keys (Version, Id) in their order; only Statement changes.
    head = {key: value for key, value in doc.items() if key != "Statement"}
    if "Version" not in head:
        head = {"Version": POLICY_VERSION, **head}
    return head, foreign


def merge(
    existing: str | dict[str, Any] | None, prefix: Prefixes, desired: list[dict[str, Any]]
) -> dict[str, Any]:
    """The policy with our statements replaced by desired and everyone else's kept.

    Foreign statements are the very same objects, in their original order; ours
    follow them.
    """
    head, foreign = _without_owned(existing, prefix)
    return {**head, "Statement": [*foreign, *desired]}


def removal(existing: str | dict[str, Any] | None, prefix: Prefixes) -> dict[str, Any] | None:
    """The policy without our statements, or None when nothing else is left (delete it)."""
    head, foreign = _without_owned(existing, prefix)
    if not foreign:
        return None
    return {**head, "Statement": foreign}


def policy_size(document: dict[str, Any]) -> int:
    return policydoc.size(document)


def _largest_grant(prefix: str, desired: list[dict[str, Any]]) -> tuple[int, int]:
    """(grant index, characters) of the grant whose statements are largest."""
    by_grant: dict[int, int] = {}
    for statement in desired:
        match = re.match(r"G(\d+)", statement["Sid"][len(prefix):])
        grant = int(match.group(1)) if match else 0
        by_grant[grant] = by_grant.get(grant, 0) + policy_size(statement)
    if not by_grant:
        return 0, 0
    largest = max(by_grant, key=lambda g: by_grant[g])
    return largest, by_grant[largest]


def grants_too_large_message(prefix: str, desired: list[dict[str, Any]]) -> str | None:
    """None when our statements fit a policy on their own; else a message naming the grant.

    Checked before any AWS call: no repository can take such a spec.
    """
    total = policy_size({"Version": POLICY_VERSION, "Statement": desired})
    if total <= MAX_POLICY_CHARS:
        return None
    grant, grant_size = _largest_grant(prefix, desired)
    return MSG_GRANTS_TOO_LARGE.format(total=total, limit=MAX_POLICY_CHARS, grant=grant, grant_size=grant_size)


def oversize_message(
    repository: str, merged: dict[str, Any], prefix: str, desired: list[dict[str, Any]], *, what: str | None = None
) -> str | None:
    """None when the merged policy fits; else a message naming the document and grant.

    ``what`` names the document (default: the repository policy of ``repository``);
    creation templates and the registry policy have the same 10,240-character limit.
    """
    total = policy_size(merged)
    if total <= MAX_POLICY_CHARS:
        return None
    ours = sum(policy_size(s) for s in desired)
    grant, grant_size = _largest_grant(prefix, desired)
    return MSG_TOO_LARGE.format(
        what=what or f"the repository policy of {repository}",
        total=total,
        limit=MAX_POLICY_CHARS,
        foreign=max(total - ours, 0),
        ours=ours,
        grant=grant,
        grant_size=grant_size,
    )


# --------------------------------------------------------------------------- errors


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or "")
    return ""


def is_principal_rejection(error: BaseException) -> bool:
    """True for ECR's answer to a principal IAM does not know (yet)."""
    if error_code(error) != ERROR_INVALID_PARAMETER:
        return False
    message = str(error.response.get("Error", {}).get("Message") or "").lower()  # type: ignore[attr-defined]
    return any(marker in message for marker in REJECTION_MARKERS)


def is_repository_missing(error: BaseException) -> bool:
    return error_code(error) == ERROR_REPOSITORY_NOT_FOUND


# --------------------------------------------------------------------------- AWS (thin)


def repository_arn(partition: str, region: str, registry_id: str, repository: str) -> str:
    """ECR's documented ARN format; GetRepositoryPolicy names the registry, not the ARN."""
    return f"arn:{partition}:ecr:{region}:{registry_id}:repository/{repository}"


class RepositoryMissing(Exception):
    """The repository does not exist (yet): a missing dependency, retried by the reconciler."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"repository {repository} does not exist")
        self.repository = repository


class PrincipalRejected(Exception):
    """ECR refused the policy because it names a principal IAM does not know (yet)."""

    def __init__(self, repository: str, error: ClientError) -> None:
        super().__init__(f"ECR rejected the policy of repository {repository}")
        self.repository = repository
        self.error = error


def _read(ecr: Any, repository: str, known_arn: str | None) -> dict[str, Any]:
    """{arn, registryId, policy}: one GetRepositoryPolicy in steady state, no writes.

    A repository without a policy has ``policy`` None and then, unless
    ``known_arn`` is given, one DescribeRepositories for its ARN (a write follows
    anyway: our statements are missing). Raises ``RepositoryMissing``.
    """
    try:
        answer = ecr.get_repository_policy(repositoryName=repository)
    except ClientError as error:
        if is_repository_missing(error):
            raise RepositoryMissing(repository) from None
        if error_code(error) != ERROR_POLICY_NOT_FOUND:
            raise
        answer = None
    if answer is not None:
        text = answer.get("policyText")
        registry_id = answer.get("registryId")
        arn = known_arn or (
            repository_arn(ecr.meta.partition, ecr.meta.region_name, registry_id, repository) if registry_id else None
        )
    else:
        text, registry_id, arn = None, None, known_arn
    if arn is None:
        try:
            found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        except ClientError as error:
            if is_repository_missing(error):
                raise RepositoryMissing(repository) from None
            raise
        arn, registry_id = found.get("repositoryArn"), found.get("registryId")
    return {"arn": arn, "registryId": registry_id, "policy": policydoc.parse(text) if text else None}


def put(ecr: Any, repository: str, document: dict[str, Any]) -> None:
    """SetRepositoryPolicy; ECR's answers for a missing repository or principal are raised as facts."""
    try:
        ecr.set_repository_policy(repositoryName=repository, policyText=policydoc.dumps(document))
    except ClientError as error:
        if is_repository_missing(error):
            raise RepositoryMissing(repository) from None
        if is_principal_rejection(error):
            raise PrincipalRejected(repository, error) from None
        raise


def delete_policy(ecr: Any, repository: str) -> None:
    """Delete the whole policy; already gone (policy or repository) means done."""
    try:
        ecr.delete_repository_policy(repositoryName=repository)
    except ClientError as error:
        if error_code(error) not in (ERROR_POLICY_NOT_FOUND, ERROR_REPOSITORY_NOT_FOUND):
            raise


# --------------------------------------------------------------------------- the kind adapter

# Repository creation templates (no tags, no ARN): a template this operator creates says
# so in its description, so it is deleted again once nothing but ours would remain.
TEMPLATE_MARK = "Created by regaccess for repositories under this prefix"
DEFAULT_APPLIED_FOR = ("PULL_THROUGH_CACHE", "REPLICATION")
ERROR_TEMPLATE_NOT_FOUND = "TemplateNotFoundException"
ERROR_REGISTRY_POLICY_NOT_FOUND = "RegistryPolicyNotFoundException"
# Template settings someone other than the operator may have set: while any is there, a
# template we created is kept (only our statements are taken out).
TEMPLATE_OTHER_SETTINGS = ("lifecyclePolicy", "customRoleArn", "resourceTags", "imageTagMutabilityExclusionFilters")
# Registry policy statements for pull-through cache: what another account needs to make
# the first pull through a cache rule create the repository and import the image.
CACHE_ACTIONS = ("ecr:CreateRepository", "ecr:BatchImportUpstreamImage")


@dataclass(frozen=True)
class DesiredStatements:
    """Desired: this resource's statements (``prefix``) in one policy document.

    ``target``: the repository, the template's prefix or the registry (account) whose
    document it is. ``statements`` empty: none wanted (a delete observes with it).
    ``known_arn``: the repository ARN status already has, which saves a
    DescribeRepositories. ``applied_for``: the template's appliedFor when it must be
    created. ``old_prefix``: this owner's legacy mark (``legacy_sid_prefix``), given only
    when status records the document as ours: statements carrying it are ours, outdated,
    and the next write replaces them with ``prefix``-marked ones. Without it they are
    someone else's statements, kept as they are (the legacy mark is forgeable).
    """

    target: str
    prefix: str
    statements: list[dict[str, Any]] = field(default_factory=list)
    known_arn: str | None = None
    applied_for: tuple[str, ...] = DEFAULT_APPLIED_FOR
    old_prefix: str | None = None

    @property
    def owns(self) -> Prefixes:
        """The prefixes whose statements are ours: the mark, and the old one when accepted."""
        return (self.prefix, self.old_prefix) if self.old_prefix else self.prefix

    @property
    def repository(self) -> str:
        return self.target


class RepositoryPolicyDocument:
    """Where: the policy of one repository (Get/Set/DeleteRepositoryPolicy)."""

    kind = "repositoryPolicy"

    def label(self, target: str) -> str:
        return f"repository {target}"

    def read(self, ecr: Any, desired: DesiredStatements) -> dict[str, Any]:
        return _read(ecr, desired.target, desired.known_arn)

    def write(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any], document: dict[str, Any]) -> None:
        put(ecr, desired.target, document)

    def clear(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any]) -> None:
        delete_policy(ecr, desired.target)


class TemplatePolicyDocument:
    """Where: the repositoryPolicy of the repository creation template for one prefix.

    Absent template: created with ``appliedFor`` and our mark in its description.
    Everything else in the template (settings, other statements) is written back as
    it was: UpdateRepositoryCreationTemplate changes only the members it is given.
    """

    kind = "templatePolicy"

    def label(self, target: str) -> str:
        return f"repository creation template {target}"

    def read(self, ecr: Any, desired: DesiredStatements) -> dict[str, Any]:
        found = ecr.describe_repository_creation_templates(prefixes=[desired.target])
        template = next((t for t in found.get("repositoryCreationTemplates") or []
                         if t.get("prefix") == desired.target), None)
        text = (template or {}).get("repositoryPolicy")
        return {"arn": None, "template": template, "policy": policydoc.parse(text) if text else None}

    def write(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any], document: dict[str, Any]) -> None:
        text = policydoc.dumps(document)
        if found.get("template") is None:
            ecr.create_repository_creation_template(
                prefix=desired.target, description=TEMPLATE_MARK, appliedFor=list(desired.applied_for),
                repositoryPolicy=text)
        else:
            ecr.update_repository_creation_template(prefix=desired.target, repositoryPolicy=text)

    def clear(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any]) -> None:
        template = found.get("template") or {}
        ours_alone = template.get("description") == TEMPLATE_MARK and not any(
            template.get(key) for key in TEMPLATE_OTHER_SETTINGS)
        try:
            if ours_alone:
                ecr.delete_repository_creation_template(prefix=desired.target)
            else:
                # An empty repositoryPolicy clears it; every other setting stays.
                ecr.update_repository_creation_template(prefix=desired.target, repositoryPolicy="")
        except ClientError as error:
            if error_code(error) != ERROR_TEMPLATE_NOT_FOUND:
                raise


class RegistryPolicyDocument:
    """Where: the registry policy of the account and Region (Get/Put/DeleteRegistryPolicy)."""

    kind = "registryPolicy"

    def label(self, target: str) -> str:
        return f"registry policy of {target}"

    def read(self, ecr: Any, desired: DesiredStatements) -> dict[str, Any]:
        try:
            answer = ecr.get_registry_policy()
        except ClientError as error:
            if error_code(error) != ERROR_REGISTRY_POLICY_NOT_FOUND:
                raise
            return {"arn": None, "policy": None}
        text = answer.get("policyText")
        return {"arn": None, "registryId": answer.get("registryId"), "policy": policydoc.parse(text) if text else None}

    def write(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any], document: dict[str, Any]) -> None:
        ecr.put_registry_policy(policyText=policydoc.dumps(document))

    def clear(self, ecr: Any, desired: DesiredStatements, found: dict[str, Any]) -> None:
        try:
            ecr.delete_registry_policy()
        except ClientError as error:
            if error_code(error) != ERROR_REGISTRY_POLICY_NOT_FOUND:
                raise


def observation_of(found: dict[str, Any], desired: DesiredStatements) -> protocol.Observation:
    """Pure: what one read of a document ({arn, policy, ...}) says about our statements.

    Statements under our accepted old mark are ours; when, re-marked, they are exactly
    the desired ones, the observation is ``outdated``: the differences are our own old
    mark, and their rewrite is never drift."""
    policy = found.get("policy")
    ours = owned_statements(policy, desired.owns)
    outdated = False
    if desired.old_prefix and owned_statements(policy, desired.old_prefix):
        old, new = desired.old_prefix, desired.prefix
        again = [{**s, "Sid": marks.remarked(s["Sid"], old, new)} for s in ours]
        outdated = not statement_differences({"Statement": again}, new, desired.statements)
    return protocol.Observation(
        exists=bool(ours),
        owner=Owner.OURS if ours else Owner.ABSENT,
        differences=statement_differences(policy, desired.owns, desired.statements),
        observed=found,
        outdated=outdated,
    )


class Statements:
    """``protocol.Kind`` for one resource's statements in one policy document.

    One adapter, parameterised by where the document lives (``where``: a repository
    policy, a creation template's repositoryPolicy, the registry policy): observe is
    one read of the document; create/update merge ours in with every other statement
    kept; delete takes ours out (``where.clear`` when nothing else is left).
    """

    service = "ecr"

    def __init__(self, where: Any) -> None:
        self.where = where
        self.kind = where.kind

    def label(self, desired: DesiredStatements) -> str:
        return self.where.label(desired.target)

    def observe(self, ecr: Any, desired: DesiredStatements) -> protocol.Observation:
        return observation_of(self.where.read(ecr, desired), desired)

    def merged(self, desired: DesiredStatements, observation: protocol.Observation) -> dict[str, Any]:
        """The whole document a create/update writes: foreign statements as they are, ours after."""
        return merge((observation.observed or {}).get("policy"), desired.owns, desired.statements)

    def create(self, ecr: Any, desired: DesiredStatements, observation: protocol.Observation) -> Written:
        self.where.write(ecr, desired, observation.observed or {}, self.merged(desired, observation))
        return Written(1, {"arn": (observation.observed or {}).get("arn")})

    # The same merge-and-write: ours are replaced, every other statement kept.
    update = create
    adopt = create  # never asked for: statements without our Sid are not ours

    def delete(self, ecr: Any, desired: DesiredStatements, observation: protocol.Observation) -> Written:
        found = observation.observed or {}
        rest = removal(found.get("policy"), desired.owns)
        if rest is None:
            # Ours were the only statements: delete the document rather than write an empty one.
            self.where.clear(ecr, desired, found)
        else:
            self.where.write(ecr, desired, found, rest)
        return Written(1)

    def predict(self, desired: DesiredStatements, observation: protocol.Observation, action: Action) -> Written:
        policy = (observation.observed or {}).get("policy")
        # What plan shows: how many statements of others the write keeps, and whether a
        # delete removes the whole policy (DeleteRepositoryPolicy) or rewrites it.
        others = len(policydoc.statements(policy)) - len(owned_statements(policy, desired.owns))
        if action is Action.DELETE:
            return Written(1, {"policyDeleted": others == 0, "othersKept": others})
        return Written(1, {"arn": (observation.observed or {}).get("arn"), "othersKept": others})


RepositoryStatements = Statements  # the name before templates and the registry policy joined
STATEMENTS = Statements(RepositoryPolicyDocument())
TEMPLATE_STATEMENTS = Statements(TemplatePolicyDocument())
REGISTRY_STATEMENTS = Statements(RegistryPolicyDocument())


# --------------------------------------------------------------------------- prefixes


def repositories_under(ecr: Any, prefixes: list[str]) -> tuple[list[str], int]:
    """(names of existing repositories under any of ``prefixes``, DescribeRepositories pages read).

    ECR has no server-side name filter: one DescribeRepositories page per 1,000
    repositories of the registry, read once per pass whatever the number of prefixes.
    A prefix covers ``<prefix>/...`` (ECR's template rule); ``ROOT`` covers all.
    """
    found: list[str] = []
    pages = 0
    token = None
    while True:
        answer = ecr.describe_repositories(maxResults=1000, **({"nextToken": token} if token else {}))
        pages += 1
        for repo in answer.get("repositories") or []:
            name = repo.get("repositoryName", "")
            if any(p == "ROOT" or name.startswith(p.rstrip("/") + "/") for p in prefixes) and name not in found:
                found.append(name)
        token = answer.get("nextToken")
        if not token:
            return found, pages


def cache_rules(ecr: Any) -> dict[str, str]:
    """{ecrRepositoryPrefix: registryId} of every pull-through cache rule (at most 50: one page)."""
    rules: dict[str, str] = {}
    token = None
    while True:
        answer = ecr.describe_pull_through_cache_rules(**({"nextToken": token} if token else {}))
        for rule in answer.get("pullThroughCacheRules") or []:
            rules[str(rule.get("ecrRepositoryPrefix", "")).rstrip("/")] = str(rule.get("registryId") or "")
        token = answer.get("nextToken")
        if not token:
            return rules


def cache_statements(statements: list[dict[str, Any]], cached_prefixes: list[str], *, partition: str,
                     region: str, account: str, pull_grants: set[str]) -> list[dict[str, Any]]:
    """Pure: registry policy statements letting Pull grantees fill the caches of ``cached_prefixes``.

    One statement per repository-policy statement of a Pull (or PullPush) grant, with
    Sid ``<its Sid>Cache``, the grant's principals (and organization condition), the
    actions ``ecr:CreateRepository`` and ``ecr:BatchImportUpstreamImage``, and a
    Resource per prefix (``arn:<partition>:ecr:<region>:<account>:repository/<prefix>/*``).
    """
    if not cached_prefixes:
        return []
    resources = [f"arn:{partition}:ecr:{region}:{account}:repository/"
                 + ("*" if p == "ROOT" else f"{p.rstrip('/')}/*") for p in cached_prefixes]
    out = []
    for statement in statements:
        if statement["Sid"] not in pull_grants:
            continue
        out.append({**{k: v for k, v in statement.items() if k != "Action"}, "Sid": statement["Sid"] + "Cache",
                    "Action": list(CACHE_ACTIONS), "Resource": _one_or_list(resources)})
    return out
