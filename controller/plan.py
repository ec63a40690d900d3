"""``regaccess plan -f FILE_OR_DIR``: validate manifests and preview what the operator would do.

Called by ``controller.__main__`` (the ``plan`` subcommand); tests call
``load_manifests()``, ``plan_objects()`` and ``render_text()`` / ``render_json()``
directly.

Two stages, each reusing the operator's own code so that a plan says exactly
what the operator would decide:

1. Validation, with the operator's validators (``controller.api.validation``,
   ``controller.api.validation_xrepo``; pydantic models with ``extra=forbid``
   catch typos the API server would silently prune). Every problem names the
   field and the rule broken. Source Secrets found among the manifests are
   checked for the keys the credential needs (key names only, never values).
2. Given AWS access (credentials from the standard chain; ``AWS_ENDPOINT_URL``
   for moto or LocalStack), a read-only comparison with AWS through the pure
   ``desired()`` / ``compare()`` functions of ``controller.aws.*``: which
   objects would be created, updated, registered or left alone, field by field.

Read-only by construction: every client this module uses carries a botocore
``before-call`` guard that refuses any operation that is not a read
(``ReadOnlyViolation``), and it never talks to Kubernetes. Secret values are
never read or printed: the secret's value is reported as "set from Secret X".

What a plan cannot see: the resource's status in the cluster. So objects the
operator would *stop* managing (a role removed from ``grants.executionRoles``,
a repository removed from ``repositories``) are not listed, and every
difference is shown as a change to apply (the operator may call some of them
drift repairs).

Exit codes: 0 valid (changes or not), 1 at least one manifest invalid,
2 usage error (no such path, no manifests), 3 AWS could not be read for some
object (the plan is incomplete).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from controller.api import reasons
from controller.api.models import API_VERSION, CROSS_ACCOUNT_REPO_ACCESS, GROUP, REGISTRY_CREDENTIAL
from controller.api.validation import (
    OWNER_TAG,
    Problem,
    ResolvedRegistryCredential,
    validate_registry_credential,
)
from controller.api.validation_xrepo import ResolvedCrossAccountRepoAccess, validate_cross_account
from controller.aws import batch_job_definitions as jobdefs
from controller.aws import ecs_task_definitions as taskdefs
from controller.aws import errors as aws_errors
from controller.aws import iam_policies, kms, policydoc
from controller.aws import pull_through_cache as ptc
from controller.aws import repository_policies as repo_policies
from controller.aws import secrets as sm
from controller.aws.clients import ClientFactory, Clients
from controller.reconcile.wiring import execution_role_granted
from controller.sources import BASIC_AUTH, DOCKER_CONFIG_JSON

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_AWS_ERROR = 3

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
READ_PREFIXES = ("Describe", "Get", "List")

# Actions; the first group writes to AWS when the operator applies the manifest.
CREATE, UPDATE, PUT, REGISTER, REPLACE, ADOPT, RESTORE = (
    "create", "update", "put", "register", "replace", "adopt", "restore")
WRITE_ACTIONS = frozenset({CREATE, UPDATE, PUT, REGISTER, REPLACE, ADOPT, RESTORE})
UNCHANGED, BLOCKED, CONFLICT, UNKNOWN = "unchanged", "blocked", "conflict", "unknown"

PENDING_ARN = "<ARN of secret {name}, assigned when it is created>"
VALUE_FROM = "set from Secret {secret} (value never read or shown by plan)"
MSG_UNKNOWN_KIND = "kind {kind!r} is not served by {group}; expected RegistryCredential or CrossAccountRepoAccess"
MSG_API_VERSION = "apiVersion must be {expected}"
MSG_PRUNED = "unknown top-level field; the API server would silently drop it"
MSG_NAME = "metadata.name is required"
MSG_SPEC = "spec is required and must be a mapping"
MSG_NO_REGION = "no AWS Region: set AWS_REGION or spec.region"


class ReadOnlyViolation(RuntimeError):
    """A plan tried to call an AWS operation that is not a read (a bug: plan never writes)."""


def read_only_guard(model: Any = None, **_: Any) -> None:
    """botocore ``before-call`` hook: refuse every operation that is not a read."""
    name = getattr(model, "name", "")
    if not name.startswith(READ_PREFIXES):
        raise ReadOnlyViolation(f"regaccess plan never writes to AWS; refused {name}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Manifest:
    source: str                 # path:line of the document
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name") or "")

    def namespace(self, default: str) -> str:
        return str((self.body.get("metadata") or {}).get("namespace") or default)


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any = None
    after: Any = None


@dataclass
class Change:
    """One AWS object and what the operator would do to it."""

    action: str
    object: str
    fields: list[FieldChange] = field(default_factory=list)
    message: str = ""
    reason: str = ""                                  # a condition reason, for blocked/conflict/unknown
    diff: list[str] = field(default_factory=list)     # unified diff of a policy document

    @property
    def writes(self) -> bool:
        return self.action in WRITE_ACTIONS


@dataclass
class ObjectPlan:
    source: str
    kind: str
    namespace: str
    name: str
    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.name else f"{self.kind or 'document'}"


@dataclass
class Plan:
    objects: list[ObjectPlan]
    aws: bool                 # whether AWS was compared
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(o.problems for o in self.objects)

    @property
    def aws_errors(self) -> int:
        return sum(1 for o in self.objects for c in o.changes if c.action == UNKNOWN)

    @property
    def write_count(self) -> int:
        return sum(1 for o in self.objects for c in o.changes if c.writes)

    def exit_code(self) -> int:
        if not self.valid:
            return EXIT_INVALID
        if self.aws_errors:
            return EXIT_AWS_ERROR
        return EXIT_OK


class UsageError(Exception):
    """No such path, or nothing to plan."""


# --------------------------------------------------------------------------- loading


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    return found


def load_text(text: str, origin: str) -> tuple[list[Manifest], list[ObjectPlan]]:
    """(manifests, plans of documents that could not be read) from one YAML/JSON text."""
    manifests: list[Manifest] = []
    broken: list[ObjectPlan] = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1
            body = loader.construct_document(node)
            if body is None:
                continue
            source = f"{origin}:{line}"
            if not isinstance(body, dict):
                broken.append(ObjectPlan(source, "", "", "", [Problem(reasons.INVALID_SPEC, "(document)",
                                                                      "a manifest must be a mapping")]))
                continue
            manifests.append(Manifest(source, body))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(error, "problem", None) or str(error)
        broken.append(ObjectPlan(where, "", "", "", [Problem(reasons.INVALID_SPEC, "(document)",
                                                             f"not valid YAML: {problem}")]))
    finally:
        loader.dispose()
    return manifests, broken


def load_manifests(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Manifest], list[ObjectPlan]]:
    manifests: list[Manifest] = []
    broken: list[ObjectPlan] = []
    files = _files(paths)
    if not files:
        raise UsageError("no manifest files (*.yaml, *.yml, *.json) found")
    for path in files:
        found, bad = load_text(path.read_text(), str(path))
        manifests += found
        broken += bad
    return manifests, broken


# --------------------------------------------------------------------------- validation


def _envelope_problems(manifest: Manifest) -> list[Problem]:
    problems = []
    body = manifest.body
    if body.get("apiVersion") != API_VERSION:
        problems.append(Problem(reasons.INVALID_SPEC, "apiVersion", MSG_API_VERSION.format(expected=API_VERSION)))
    for key in sorted(set(body) - TOP_LEVEL_FIELDS):
        problems.append(Problem(reasons.INVALID_SPEC, key, MSG_PRUNED))
    if not manifest.name:
        problems.append(Problem(reasons.INVALID_SPEC, "metadata.name", MSG_NAME))
    if not isinstance(body.get("spec"), dict):
        problems.append(Problem(reasons.INVALID_SPEC, "spec", MSG_SPEC))
    return problems


def _source_secret_problems(resolved: ResolvedRegistryCredential, secret: dict[str, Any] | None) -> list[Problem]:
    """Key names the credential needs, checked on a Secret found among the manifests (never values)."""
    if secret is None:
        return []
    keys = set((secret.get("data") or {})) | set((secret.get("stringData") or {}))
    secret_type = secret.get("type") or "Opaque"
    name = resolved.spec.source.secretRef.name
    if secret_type == DOCKER_CONFIG_JSON:
        needed = [".dockerconfigjson"]
    elif secret_type == BASIC_AUTH:
        needed = ["username", "password"]
    else:
        needed = [resolved.spec.source.usernameKey, resolved.spec.source.passwordKey]
    return [
        Problem(reasons.SOURCE_KEY_MISSING, "spec.source.secretRef", f"Secret {name!r} (type {secret_type}) has no key {key!r}")
        for key in needed if key not in keys
    ]


def _secrets_in(manifests: list[Manifest], default_namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m.namespace(default_namespace), m.name): m.body
        for m in manifests
        if m.kind == "Secret" and m.body.get("apiVersion") == "v1" and m.name
    }


# --------------------------------------------------------------------------- AWS: RegistryCredential


def _pretty(document: Any) -> list[str]:
    return json.dumps(document, indent=2, sort_keys=True).splitlines() if document is not None else []


def _document_diff(before: Any, after: Any, name: str) -> list[str]:
    return list(difflib.unified_diff(_pretty(before), _pretty(after), f"{name} (AWS now)", f"{name} (planned)",
                                     lineterm=""))


def _unknown(what: str, error: BaseException, service: str) -> Change:
    found = aws_errors.classify(error, service)
    return Change(UNKNOWN, what, message=f"could not read: {found.describe()}", reason=found.reason)


def _plan_secret(resolved: ResolvedRegistryCredential, clients: Clients, secret_ref: str) -> tuple[Change, str | None, str | None]:
    """(change, the secret's ARN if it exists, the KMS key ARN to grant)."""
    want = sm.desired(resolved)
    what = f"secret {want.name}"
    client = clients("secretsmanager")
    key_arn: str | None = None
    key_id = resolved.spec.secret.kmsKeyId
    if key_id:
        if kms.is_key_arn(key_id):
            key_arn = key_id
        else:
            try:
                info = kms.describe(clients("kms"), key_id)
            except (ClientError, BotoCoreError) as error:
                if aws_errors.is_not_found(error, "kms"):
                    return (Change(BLOCKED, what, message=f"KMS key {key_id} does not exist; the operator waits for it",
                                   reason=reasons.DEPENDENCY_MISSING), None, None)
                return _unknown(f"KMS key {key_id}", error, "kms"), None, None
            key_arn = info.arn if info.customer_managed else None
    try:
        obs = sm.observe(client, want.name, resolved.owner)
    except (ClientError, BotoCoreError) as error:
        return _unknown(what, error, "secretsmanager"), None, key_arn
    value = FieldChange("SecretString", None, VALUE_FROM.format(secret=secret_ref))
    if not obs.exists:
        fields = [FieldChange("Description", None, want.description),
                  FieldChange("Tags", None, dict(sorted(want.tags.items()))), value]
        if want.kms_key_id:
            fields.insert(1, FieldChange("KmsKeyId", None, want.kms_key_id))
        return Change(CREATE, what, fields), None, key_arn
    observed = obs.observed
    arn = observed.get("ARN")
    if not obs.owned and not resolved.spec.adoptExisting:
        from controller.reconcile.secret import CONFLICT_MESSAGE

        return (Change(CONFLICT, what, message=CONFLICT_MESSAGE.format(name=want.name, owner=resolved.owner),
                       reason=reasons.OWNERSHIP_CONFLICT), arn, key_arn)
    changes: list[FieldChange] = []
    action = UNCHANGED
    messages = []
    if not obs.owned:
        action = ADOPT
        have = {t["Key"]: t.get("Value", "") for t in observed.get("Tags") or []}
        changes.append(FieldChange(f"Tags[{OWNER_TAG}]", have.get(OWNER_TAG), resolved.owner))
    if observed.get("DeletedDate"):
        action = RESTORE if action == UNCHANGED else action
        messages.append("scheduled for deletion: the operator restores it")
    kms_equal = None
    if want.kms_key_id and observed.get("KmsKeyId") not in (None, want.kms_key_id) and key_arn:
        try:
            kms_equal = kms.describe(clients("kms"), observed["KmsKeyId"]).arn == key_arn
        except (ClientError, BotoCoreError) as error:
            return _unknown(what, error, "kms"), arn, key_arn
    differences = sm.compare(want, observed, kms_key_equal=kms_equal)
    have_tags = {t["Key"]: t.get("Value", "") for t in observed.get("Tags") or []}
    for name in differences:
        if name == "Description":
            changes.append(FieldChange("Description", observed.get("Description"), want.description))
        elif name == "KmsKeyId":
            changes.append(FieldChange("KmsKeyId", observed.get("KmsKeyId"), want.kms_key_id or "alias/aws/secretsmanager"))
        elif name == "Tags":
            for key, val in sorted(want.tags.items()):
                if have_tags.get(key) != val and not (key == OWNER_TAG and action == ADOPT):
                    changes.append(FieldChange(f"Tags[{key}]", have_tags.get(key), val))
    if differences and action == UNCHANGED:
        action = UPDATE
    messages.append("value: kept equal to Secret " + secret_ref + "; compared when the operator runs (plan never reads values)")
    return Change(action, what, changes, message="; ".join(messages)), arn, key_arn


def _plan_pull_through_cache(resolved: ResolvedRegistryCredential, clients: Clients, secret_arn: str | None) -> Change:
    prefix = resolved.spec.pullThroughCache.ecrRepositoryPrefix  # type: ignore[union-attr]
    what = f"pullThroughCacheRule {prefix}"
    credential = secret_arn or PENDING_ARN.format(name=resolved.secret_name)
    want = ptc.desired(resolved, credential)
    try:
        obs = ptc.observe(clients("ecr"), want, secret_arn=secret_arn, previous=None, adopt=resolved.spec.adoptExisting)
    except (ClientError, BotoCoreError) as error:
        return _unknown(what, error, "ecr")
    if not obs.exists:
        return Change(CREATE, what, [FieldChange(k, None, v) for k, v in want.items() if k != "ecrRepositoryPrefix"])
    ownership = ptc.ownership(obs.observed, secret_arn=secret_arn, previous=None, adopt=resolved.spec.adoptExisting)
    if ownership is ptc.Ownership.CONFLICT:
        return Change(CONFLICT, what, reason=reasons.OWNERSHIP_CONFLICT,
                      message=f"a rule for prefix {prefix} exists with another credential; set spec.adoptExisting: "
                              "true to take it over, or choose another ecrRepositoryPrefix")
    fields = [FieldChange(name, obs.observed.get(name), want.get(name)) for name in obs.differences]
    if not fields:
        return Change(UNCHANGED, what)
    action = REPLACE if ptc.needs_recreate(obs.differences) else UPDATE
    message = "ECR cannot change a rule's upstream: delete and create" if action == REPLACE else ""
    return Change(action, what, fields, message=message)


def _plan_role_policies(resolved: ResolvedRegistryCredential, clients: Clients, secret_arn: str | None,
                        key_arn: str | None) -> list[Change]:
    policy = resolved.policy_name
    want = iam_policies.desired(secret_arn or PENDING_ARN.format(name=resolved.secret_name), key_arn)
    changes = []
    iam = clients("iam") if resolved.spec.grants.executionRoles else None
    for role in resolved.spec.grants.executionRoles:
        ref = iam_policies.role_ref(role)
        what = f"rolePolicy {policy} on role {ref.name}"
        problem = iam_policies.account_problem(ref, secret_arn) if secret_arn else None
        if problem:
            changes.append(Change(BLOCKED, what, message=problem, reason=reasons.INVALID_GRANT))
            continue
        try:
            obs = iam_policies.observe(iam, ref.name, policy, want)
        except iam_policies.RoleMissing as missing:
            changes.append(Change(BLOCKED, what, message=f"{missing}; the operator waits for it",
                                  reason=reasons.DEPENDENCY_MISSING))
            continue
        except (ClientError, BotoCoreError) as error:
            changes.append(_unknown(what, error, "iam"))
            continue
        if obs.up_to_date:
            changes.append(Change(UNCHANGED, what))
            continue
        try:
            sizes = iam_policies.other_policy_sizes(iam, ref.name, policy)
        except iam_policies.RoleMissing as missing:
            changes.append(Change(BLOCKED, what, message=f"{missing}; the operator waits for it",
                                  reason=reasons.DEPENDENCY_MISSING))
            continue
        except (ClientError, BotoCoreError) as error:
            changes.append(_unknown(what, error, "iam"))
            continue
        budget = iam_policies.budget_problem(ref.name, sizes, policydoc.size(want))
        if budget:
            changes.append(Change(BLOCKED, what, message=budget, reason=reasons.POLICY_BUDGET_EXCEEDED))
            continue
        before = obs.observed if obs.exists else None
        changes.append(Change(PUT, what, [FieldChange(iam_policies.DOCUMENT_FIELD, before, want)],
                              message="create" if before is None else "replace the document",
                              diff=_document_diff(before, want, f"{ref.name}/{policy}")))
    return changes


def _not_granted_note(resolved: ResolvedRegistryCredential, execution_role: str, what: str) -> str:
    if execution_role_granted(execution_role, list(resolved.spec.grants.executionRoles)):
        return ""
    return (f"{reasons.EXECUTION_ROLE_NOT_GRANTED}: {what} runs with execution role {execution_role}, which is not "
            "in spec.grants.executionRoles; its tasks could not read the credential")


def _plan_task_definitions(resolved: ResolvedRegistryCredential, clients: Clients, secret_arn: str | None) -> list[Change]:
    changes = []
    arn = secret_arn or PENDING_ARN.format(name=resolved.secret_name)
    ecs = clients("ecs") if resolved.spec.consumers.ecsTaskDefinitions else None
    for consumer in resolved.spec.consumers.ecsTaskDefinitions:
        what = f"taskDefinition {consumer.family}"
        try:
            obs = taskdefs.observe(ecs, consumer.family)
        except (ClientError, BotoCoreError) as error:
            changes.append(_unknown(what, error, "ecs"))
            continue
        if not obs.exists:
            changes.append(Change(BLOCKED, what, reason=reasons.TASK_DEFINITION_NOT_FOUND,
                                  message=taskdefs.FAMILY_MISSING_MESSAGE.format(family=consumer.family)
                                  + "; the operator waits for one"))
            continue
        latest: taskdefs.Latest = obs.observed["latest"]
        definition = latest.task_definition
        chosen, unknown = taskdefs.chosen_containers(definition, consumer.containers)
        if unknown:
            known = ", ".join(c.get("name", "") for c in definition.get("containerDefinitions", []))
            changes.append(Change(BLOCKED, what, reason=reasons.CONTAINER_NOT_FOUND,
                                  message=taskdefs.UNKNOWN_CONTAINERS_MESSAGE.format(
                                      revision=latest.label, unknown=", ".join(unknown), known=known)))
            continue
        role = definition.get("executionRoleArn")
        if not role:
            changes.append(Change(BLOCKED, what, reason=reasons.EXECUTION_ROLE_MISSING,
                                  message=taskdefs.NO_EXECUTION_ROLE_MESSAGE.format(revision=latest.label)))
            continue
        note = _not_granted_note(resolved, role, f"task definition {latest.label}")
        differences = taskdefs.compare(definition, chosen, secret_arn or "", resolved.secret_name)
        if not differences:
            changes.append(Change(UNCHANGED, what, message=note, reason=reasons.EXECUTION_ROLE_NOT_GRANTED if note else ""))
            continue
        request = taskdefs.revision_request(latest, chosen, arn, resolved.owner)
        fields = []
        by_name = {c.get("name"): c for c in definition.get("containerDefinitions", [])}
        for container in request.get("containerDefinitions", []):
            name = container.get("name")
            if name in chosen:
                before = ((by_name.get(name) or {}).get("repositoryCredentials") or {}).get("credentialsParameter")
                after = container["repositoryCredentials"]["credentialsParameter"]
                if before != after:
                    fields.append(FieldChange(f"containerDefinitions[{name}].repositoryCredentials.credentialsParameter",
                                              before, after))
        revision = int(definition.get("revision") or 0)
        message = f"register revision {revision + 1} of family {consumer.family} (a copy of {latest.label})"
        changes.append(Change(REGISTER, what, fields, message=message + (f"; {note}" if note else ""),
                              reason=reasons.EXECUTION_ROLE_NOT_GRANTED if note else ""))
    return changes


def _plan_job_definitions(resolved: ResolvedRegistryCredential, clients: Clients, secret_arn: str | None) -> list[Change]:
    changes = []
    arn = secret_arn or PENDING_ARN.format(name=resolved.secret_name)
    batch = clients("batch") if resolved.spec.consumers.batchJobDefinitions else None
    for consumer in resolved.spec.consumers.batchJobDefinitions:
        what = f"jobDefinition {consumer.name}"
        try:
            obs = jobdefs.observe(batch, consumer.name)
        except (ClientError, BotoCoreError) as error:
            changes.append(_unknown(what, error, "batch"))
            continue
        if not obs.exists:
            changes.append(Change(BLOCKED, what, reason=reasons.JOB_DEFINITION_NOT_FOUND,
                                  message=jobdefs.NOT_FOUND_MESSAGE.format(name=consumer.name) + "; the operator waits for one"))
            continue
        latest: jobdefs.Latest = obs.observed["latest"]
        container = latest.container
        if container is None:
            changes.append(Change(BLOCKED, what, reason=reasons.UNSUPPORTED_JOB_DEFINITION,
                                  message=jobdefs.UNSUPPORTED_MESSAGE.format(revision=latest.label)))
            continue
        role = container.get("executionRoleArn")
        if not role:
            changes.append(Change(BLOCKED, what, reason=reasons.EXECUTION_ROLE_MISSING,
                                  message=jobdefs.NO_EXECUTION_ROLE_MESSAGE.format(revision=latest.label)))
            continue
        note = _not_granted_note(resolved, role, f"job definition {latest.label}")
        if not jobdefs.compare(latest.job_definition, secret_arn or "", resolved.secret_name):
            changes.append(Change(UNCHANGED, what, message=note, reason=reasons.EXECUTION_ROLE_NOT_GRANTED if note else ""))
            continue
        before = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
        revision = int(latest.job_definition.get("revision") or 0)
        message = f"register revision {revision + 1} of job definition {consumer.name} (a copy of {latest.label})"
        changes.append(Change(REGISTER, what,
                              [FieldChange(jobdefs.CREDENTIAL_FIELD + ".credentialsParameter", before, arn)],
                              message=message + (f"; {note}" if note else ""),
                              reason=reasons.EXECUTION_ROLE_NOT_GRANTED if note else ""))
    return changes


def plan_registry_credential(resolved: ResolvedRegistryCredential, clients: Clients, secret_ref: str) -> list[Change]:
    """Every change the RegistryCredential reconciler would make, in its step order."""
    secret_change, secret_arn, key_arn = _plan_secret(resolved, clients, secret_ref)
    changes = [secret_change]
    if secret_change.action in (CONFLICT, UNKNOWN):
        # The operator stops at the secret too: nothing after it runs.
        return changes
    if resolved.spec.pullThroughCache is not None:
        changes.append(_plan_pull_through_cache(resolved, clients, secret_arn))
    changes += _plan_role_policies(resolved, clients, secret_arn, key_arn)
    changes += _plan_task_definitions(resolved, clients, secret_arn)
    changes += _plan_job_definitions(resolved, clients, secret_arn)
    return changes


# --------------------------------------------------------------------------- AWS: CrossAccountRepoAccess


def _statement_fields(existing: dict[str, Any] | None, prefix: str, desired: list[dict[str, Any]],
                      differences: tuple[str, ...]) -> list[FieldChange]:
    have = {s["Sid"]: s for s in repo_policies.owned_statements(existing, prefix)}
    want = {s["Sid"]: s for s in desired}
    fields = []
    for name in differences:
        sid = name[len("Statement["):-1]
        fields.append(FieldChange(name, have.get(sid), want.get(sid)))
    return fields


def plan_cross_account(resolved: ResolvedCrossAccountRepoAccess, clients: Clients) -> list[Change]:
    """Per repository: the owned statements to add, change or remove (others are kept untouched)."""
    model = resolved.spec
    prefix = repo_policies.sid_prefix(resolved.namespace, resolved.name)
    desired = repo_policies.desired_statements(
        resolved, partition=repo_policies.partition_of(model.region or clients.region))
    alone = repo_policies.grants_too_large_message(prefix, desired)
    if alone:
        return [Change(BLOCKED, "repositoryPolicy (all)", message=alone, reason=reasons.REPOSITORY_POLICY_TOO_LARGE)]
    ecr = clients("ecr")
    changes = []
    for repository in model.repositories:
        what = f"repositoryPolicy {repository}"
        try:
            obs = repo_policies.observe(ecr, repository, prefix, desired)
        except (ClientError, BotoCoreError) as error:
            changes.append(_unknown(what, error, "ecr"))
            continue
        if not obs.exists:
            changes.append(Change(BLOCKED, what, reason=reasons.DEPENDENCY_MISSING,
                                  message=f"repository {repository} does not exist in "
                                          f"{model.region or clients.region}; the operator waits for it"))
            continue
        existing = obs.observed.get("policy")
        foreign = len(policydoc.statements(existing)) - len(repo_policies.owned_statements(existing, prefix))
        if obs.up_to_date:
            changes.append(Change(UNCHANGED, what))
            continue
        merged = repo_policies.merge(existing, prefix, desired)
        too_large = repo_policies.oversize_message(repository, merged, prefix, desired)
        if too_large:
            changes.append(Change(BLOCKED, what, message=too_large, reason=reasons.REPOSITORY_POLICY_TOO_LARGE))
            continue
        kept = f"{foreign} statement(s) of others kept unchanged" if foreign else "no other statements"
        changes.append(Change(UPDATE if existing else CREATE, what,
                              _statement_fields(existing, prefix, desired, obs.differences),
                              message=("set the repository policy" if not existing else "update owned statements")
                              + f"; {kept}",
                              diff=_document_diff(existing, merged, f"{repository} policy")))
    return changes


# --------------------------------------------------------------------------- driver


def aws_available(session: Any = None) -> bool:
    """Credentials from boto3's standard chain (environment, profile, SSO, IRSA, instance role)."""
    import boto3

    try:
        return (session or boto3.session.Session()).get_credentials() is not None
    except Exception:  # noqa: BLE001 - a broken profile means "no AWS", said in the output
        return False


def read_only_factory() -> ClientFactory:
    """A client factory whose every client refuses non-read operations."""
    # No retries beyond two attempts: a plan in CI should fail fast, not hang on a dead endpoint.
    return ClientFactory(max_attempts=2, hooks=[("before-call", read_only_guard)])


def plan_objects(manifests: list[Manifest], *, default_namespace: str = "default", cluster_id: str = "default",
                 factory: ClientFactory | None = None,
                 progress: Callable[[str], None] | None = None) -> list[ObjectPlan]:
    """Validate each manifest and, with a factory, compare it with AWS (reads only)."""
    secrets = _secrets_in(manifests, default_namespace)
    plans: list[ObjectPlan] = []
    for manifest in manifests:
        kind = manifest.kind
        api_version = str(manifest.body.get("apiVersion") or "")
        if not api_version.startswith(GROUP + "/") and kind not in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind):
            continue  # Secrets, Namespaces, ...: applied by kubectl, not planned here
        namespace = manifest.namespace(default_namespace)
        plan = ObjectPlan(manifest.source, kind, namespace, manifest.name)
        plans.append(plan)
        if progress:
            progress(f"planning {plan.label} ({manifest.source})")
        if kind not in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind):
            plan.problems.append(Problem(reasons.INVALID_SPEC, "kind", MSG_UNKNOWN_KIND.format(kind=kind, group=GROUP)))
            continue
        plan.problems += _envelope_problems(manifest)
        spec = manifest.body.get("spec") if isinstance(manifest.body.get("spec"), dict) else {}
        if kind == REGISTRY_CREDENTIAL.kind:
            resolved, problems = validate_registry_credential(namespace, manifest.name or "x", spec, cluster_id=cluster_id)
            plan.problems += problems
            if resolved is None or plan.problems:
                continue
            ref = resolved.spec.source.secretRef.name
            source = secrets.get((namespace, ref))
            plan.problems += _source_secret_problems(resolved, source)
            if plan.problems:
                continue
            if source is None:
                plan.notes.append(f"source Secret {namespace}/{ref} is not among these manifests: it must exist in the cluster")
            if factory is None:
                continue
            clients = Clients(factory, region=resolved.spec.region, role_arn=resolved.spec.roleArn,
                              external_id=resolved.spec.externalId)
            if not clients.region:
                plan.changes.append(Change(UNKNOWN, "AWS", message=MSG_NO_REGION, reason=reasons.INVALID_SPEC))
                continue
            plan.changes += plan_registry_credential(resolved, clients, f"{namespace}/{ref}")
        else:
            resolved_x, problems = validate_cross_account(namespace, manifest.name or "x", spec, cluster_id=cluster_id)
            plan.problems += problems
            if resolved_x is None or plan.problems:
                continue
            if factory is None:
                continue
            clients = Clients(factory, region=resolved_x.spec.region, role_arn=resolved_x.spec.roleArn,
                              external_id=resolved_x.spec.externalId)
            if not clients.region:
                plan.changes.append(Change(UNKNOWN, "AWS", message=MSG_NO_REGION, reason=reasons.INVALID_SPEC))
                continue
            plan.changes += plan_cross_account(resolved_x, clients)
    return plans


# --------------------------------------------------------------------------- output


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


SYMBOLS = {CREATE: "+", UPDATE: "~", PUT: "~", REGISTER: "+", REPLACE: "-/+", ADOPT: "~", RESTORE: "~",
           UNCHANGED: "=", BLOCKED: "!", CONFLICT: "!", UNKNOWN: "?"}


def render_text(plan: Plan, *, show_unchanged: bool = True) -> str:
    lines: list[str] = []
    for note in plan.notes:
        lines.append(f"note: {note}")
    for obj in plan.objects:
        status = "INVALID" if obj.problems else "valid"
        lines.append(f"{obj.label}  [{status}]  {obj.source}")
        for problem in obj.problems:
            lines.append(f"  x {problem.field}: {problem.message}  ({problem.reason})")
        for note in obj.notes:
            lines.append(f"  note: {note}")
        for change in obj.changes:
            if change.action == UNCHANGED and not show_unchanged and not change.message:
                continue
            head = f"  {SYMBOLS.get(change.action, '*')} {change.action} {change.object}"
            if change.reason:
                head += f"  ({change.reason})"
            lines.append(head)
            if change.message:
                lines.append(f"      {change.message}")
            for fc in change.fields:
                if isinstance(fc.before, (dict, list)) or isinstance(fc.after, (dict, list)):
                    if change.diff:
                        continue  # the document diff below says it better
                lines.append(f"      {fc.field}: {_short(fc.before)} -> {_short(fc.after)}")
            for line in change.diff:
                lines.append(f"      {line}")
    invalid = sum(1 for o in plan.objects if o.problems)
    summary = f"{len(plan.objects)} resource(s), {invalid} invalid"
    if plan.aws:
        summary += f", {plan.write_count} AWS change(s) planned"
        if plan.aws_errors:
            summary += f", {plan.aws_errors} object(s) could not be read"
    else:
        summary += ", AWS not compared"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def to_dict(plan: Plan) -> dict[str, Any]:
    def change(c: Change) -> dict[str, Any]:
        out = asdict(c)
        out["writes"] = c.writes
        return out

    return {
        "valid": plan.valid,
        "awsCompared": plan.aws,
        "exitCode": plan.exit_code(),
        "notes": plan.notes,
        "summary": {
            "resources": len(plan.objects),
            "invalid": sum(1 for o in plan.objects if o.problems),
            "changes": plan.write_count,
            "unreadable": plan.aws_errors,
        },
        "objects": [
            {
                "source": o.source, "kind": o.kind, "namespace": o.namespace, "name": o.name,
                "valid": not o.problems,
                "problems": [{"field": p.field, "rule": p.message, "reason": p.reason} for p in o.problems],
                "notes": o.notes,
                "changes": [change(c) for c in o.changes],
            }
            for o in plan.objects
        ],
    }


def render_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2, default=str) + "\n"


def run(paths: list[str], *, output: str = "text", aws: str = "auto", namespace: str = "default",
        cluster_id: str = "default", stdout: Any = None, stderr: Any = None) -> int:
    """The ``plan`` subcommand: returns the exit code."""
    import sys

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        manifests, broken = load_manifests(paths)
    except UsageError as error:
        print(f"regaccess plan: {error}", file=stderr)
        return EXIT_USAGE
    notes = []
    factory = None
    if aws == "off":
        notes.append("AWS comparison off (--aws off): validation only")
    elif aws_available():
        factory = read_only_factory()
    else:
        notes.append("no AWS credentials found (standard chain): validation only")
    progress = (lambda text: print(text, file=stderr)) if output == "text" and getattr(stderr, "isatty", lambda: False)() else None
    objects = broken + plan_objects(manifests, default_namespace=namespace, cluster_id=cluster_id,
                                    factory=factory, progress=progress)
    if not objects:
        print("regaccess plan: no RegistryCredential or CrossAccountRepoAccess in the given manifests", file=stderr)
        return EXIT_USAGE
    plan = Plan(objects, aws=factory is not None, notes=notes)
    stdout.write(render_json(plan) if output == "json" else render_text(plan))
    return plan.exit_code()
