"""``regaccess plan -f FILE_OR_DIR``: validate manifests and preview what the operator would do.

Called by ``controller.__main__`` (``plan``); tests and the demo call
``load_manifests()``, ``plan_objects()``, ``render_text()`` / ``render_json()``.

1. Validation with the operator's validators (``controller.api.validation*``;
   ``extra=forbid`` catches typos the API server would silently prune). Source
   Secrets among the manifests are checked for the keys the credential needs.
2. Given AWS access, the operator's own reconcile runs with a recording actor
   (``controller.reconcile.loop.RecordingActor``) and read-only clients: the loop
   decides as in the operator, the actor records each write and predicts its result
   (placeholder ARNs, next revision numbers). Nothing is decided here; the recorded
   writes and the result's status rows and Ready condition become the report.

Read-only by construction: every AWS client carries a ``before-call`` guard that
refuses any non-read (a step writing around the actor is reported, exit 3). Secret
values are never read: the source Secret is a placeholder credential and
GetSecretValue is answered by the guard, so a value write is planned exactly when
the operator would compare the value.

``--kube`` GETs the live resources (current kubeconfig context): their status is
the previous status, so what the operator would stop managing shows as planned
deletes and drift as drift; the source Secret is read as metadata only. Without it
every resource is planned as new to the operator.

An ECRPullSecret's reconcile observes Kubernetes objects (its Secret, the
ServiceAccounts) through ``ReadOnlyKube``; with ``--kube`` that GETs its Secret
whole, as the operator does, because a hand edit is judged by the data's digest.
The data and the token GetAuthorizationToken answers reach no output: the
adapter's differences say ``<value>`` and its predictions carry no data.

Exit codes: 0 valid, 1 a manifest is invalid, 2 usage error, 3 AWS or the cluster
could not be read for some object (the plan is incomplete).
"""

from __future__ import annotations

import base64
import datetime as dt
import difflib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from controller import tenancy
from controller.api import reasons
from controller.api.models import (
    API_VERSION, CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, GROUP, REGISTRY_CREDENTIAL, TENANCY_POLICY, VERSION,
)
from controller.api.validation_pull import validate_pull_secret
from controller.aws.ecr_tokens import regions as ecr_regions
from controller.api.validate import validate
from controller.api.validation import Problem, ResolvedRegistryCredential
from controller.aws import secrets as sm
from controller.aws.clients import ClientFactory, Clients
from controller.aws.protocol import Action, Difference, Observation, Written
from controller.aws.repository_policies import STATEMENTS
from controller.kubeobjects import IMAGE_PULL_SECRETS, PULL_SECRETS
from controller.kubeclient import METADATA_ONLY, ApiError, Client, KubeconfigError, core_path
from controller.reconcile import cost
from controller.reconcile import cross_account
from controller.reconcile import pull_secret
from controller.reconcile import registry_credential as rc
from controller.reconcile.loop import RecordingActor
from controller.reconcile.result import ReconcileResult
from controller.sources import BASIC_AUTH, DOCKER_CONFIG_JSON

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_AWS_ERROR = 3

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
READ_PREFIXES = ("Describe", "Get", "List")
NOT_SENT = frozenset({"GetSecretValue"})  # reads of secret values: answered by the guard (below)

# Actions: the loop's writes, then what plan says of objects nothing is written to.
CREATE, UPDATE, ADOPT, DELETE = (a.value for a in Action)
WRITE_ACTIONS = frozenset(a.value for a in Action)
UNCHANGED = "unchanged"  # in the declared state
REPORT = "report"        # differs, driftPolicy Report: recorded as drift, not written
RETAIN = "retain"        # left in place (deletionPolicy Retain)
BLOCKED = "blocked"      # the operator waits (a dependency, a limit, a spec that AWS refuses)
CONFLICT = "conflict"    # another owner's or an unmarked object: never written
UNKNOWN = "unknown"      # AWS or the cluster could not be read: the plan is incomplete

# Condition reasons that mean "could not read AWS" (plan never writes, so they came from a read).
UNREADABLE_REASONS = frozenset({reasons.AWS_THROTTLED, reasons.AWS_UNAVAILABLE, reasons.AWS_ACCESS_DENIED,
                                reasons.AWS_ERROR, reasons.AWS_REJECTED})
# PullReady after the planned writes (controller.reconcile.pull_ready; docs/conditions.md).
MSG_PULL_READY = "PullReady {status} ({reason}): {message}"
READY_OBJECT = "Ready"  # a failure no status row names: the condition the operator would set

SECRET_KIND, REPOSITORY_KIND = sm.KIND, STATEMENTS.kind
VALUE_IN_AWS = "(not read)"
VALUE_FROM = "from Secret {secret}, if different (plan never reads values)"
PLACEHOLDER_USERNAME = "<username of Secret {ref}>"
PLACEHOLDER_VALUE = "<value of Secret {ref}, never read by plan>"
NO_VERSION = "<not known to plan>"
MSG_UNKNOWN_KIND = "kind {kind!r} is not served by {group}; expected RegistryCredential or CrossAccountRepoAccess"
MSG_API_VERSION = "apiVersion must be {expected}"
MSG_PRUNED = "unknown top-level field; the API server would silently drop it"
MSG_NAME = "metadata.name is required"
MSG_SPEC = "spec is required and must be a mapping"
MSG_NO_REGION = "no AWS Region: set AWS_REGION or spec.region"
MSG_REFUSED = ("a step of the operator tried to write to AWS without going through the loop's actor, so plan "
               "cannot predict what follows ({refused}); the plan of this resource is incomplete")
MSG_KUBE_UNREADABLE = "could not read the live resource from the cluster: {error}"
MSG_PREDICTED = "predicted: {facts}"


class ReadOnlyViolation(RuntimeError):
    """A plan tried to call an AWS operation that is not a read (a bug: plan never writes)."""


def read_only_guard(model: Any = None, **_: Any) -> tuple[Any, dict[str, Any]] | None:
    """botocore ``before-call`` hook: refuse every operation that is not a read.

    GetSecretValue is answered here, never sent: plan cannot know the source's value, so
    "no value" (taken as different) makes the loop plan a write wherever it would compare.
    """
    name = getattr(model, "name", "")
    if name in NOT_SENT:
        from botocore.awsrequest import AWSResponse

        return AWSResponse("", 200, {}, None), {"SecretString": None}
    if not name.startswith(READ_PREFIXES):
        raise ReadOnlyViolation(f"regaccess plan never writes to AWS; refused {name}")
    return None


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
    kind: str = ""                                    # the status row kind (secret, rolePolicy, ...)
    predicted: dict[str, Any] = field(default_factory=dict)  # what the write would return (placeholders)

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


# --------------------------------------------------------------------------- live resources (--kube)


@dataclass(frozen=True)
class Live:
    """A resource as the cluster has it: what the operator would start from."""

    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]
    uid: str = ""


PLURALS = {REGISTRY_CREDENTIAL.kind: REGISTRY_CREDENTIAL.plural,
           CROSS_ACCOUNT_REPO_ACCESS.kind: CROSS_ACCOUNT_REPO_ACCESS.plural,
           ECR_PULL_SECRET.kind: ECR_PULL_SECRET.plural}


class KubeLive:
    """The cluster, read-only, over GETs: ``get(path, accept) -> body | None`` (None: not found)."""

    def __init__(self, get: Callable[[str, str], dict[str, Any] | None]) -> None:
        self._get = get

    @classmethod
    def login(cls) -> "KubeLive":
        """The current context of KUBECONFIG / ~/.kube/config, with the demo's and the tests' client."""
        try:
            client, _ = Client.from_kubeconfig()
        except (KubeconfigError, OSError) as error:
            raise UsageError(str(error)) from None
        return cls(lambda path, accept: client.get_or_none(path, accept=accept))

    def resource(self, kind: str, namespace: str, name: str) -> Live | None:
        body = self._get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURALS[kind]}/{name}", "application/json")
        if body is None:
            return None
        meta = body.get("metadata") or {}
        return Live(meta.get("generation"), body.get("spec") or {}, body.get("status") or {}, str(meta.get("uid") or ""))

    def object(self, path: str) -> dict[str, Any] | None:
        """A core object (an ECRPullSecret's Secret or ServiceAccount), as the operator reads it."""
        return self._get(path, "application/json")

    def tenancy_policy(self, name: str) -> tenancy.Policy | None:
        """The cluster's TenancyPolicy ``name`` (None: there is none)."""
        body = self._get(f"/apis/{GROUP}/{VERSION}/{TENANCY_POLICY.plural}/{name}", "application/json")
        return None if body is None else tenancy.from_spec(name, body.get("spec") or {})

    def source_version(self, namespace: str, name: str) -> str | None:
        # Metadata only: the API server never sends the Secret's data.
        body = self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}", METADATA_ONLY)
        return None if body is None else str((body.get("metadata") or {}).get("resourceVersion") or "")


def _placeholder_source(namespace: str, ref: str, resource_version: str) -> dict[str, Any]:
    """A source Secret with the right shape and no real value: plan never reads the real one."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {"apiVersion": "v1", "kind": "Secret", "type": BASIC_AUTH,
            "metadata": {"name": ref, "namespace": namespace, "resourceVersion": resource_version},
            "data": {"username": b64(PLACEHOLDER_USERNAME.format(ref=ref)),
                     "password": b64(PLACEHOLDER_VALUE.format(ref=ref))}}


# --------------------------------------------------------------------------- the cluster, read-only


class ReadOnlyKube:
    """The Kubernetes client ``pull_secret.reconcile`` gets in a plan: GETs only.

    With ``--kube`` the cluster answers; without, the ServiceAccounts and Secrets among the
    manifests do, and a ServiceAccount named by the spec but not among them is taken to exist
    with no imagePullSecrets (a note says it must). Every write is refused: the loop's actor
    records them instead, so a write here is a step writing around it (a bug)."""

    def __init__(self, live: "KubeLive | None", manifests: dict[str, dict[str, Any]], assumed: set[str]) -> None:
        self._live, self._manifests, self._assumed = live, manifests, assumed

    def get_or_none(self, path: str, **_: Any) -> dict[str, Any] | None:
        if self._live is not None:
            return self._live.object(path)
        if path in self._manifests:
            return self._manifests[path]
        if path in self._assumed:
            return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"resourceVersion": ""}}
        return None

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyViolation("regaccess plan never writes to the cluster")

    create = merge_patch = request = _refuse


def _core_objects(manifests: list[Manifest], default_namespace: str) -> dict[str, dict[str, Any]]:
    plurals = {"Secret": "secrets", "ServiceAccount": "serviceaccounts"}
    return {core_path(plurals[m.kind], m.namespace(default_namespace), m.name): m.body
            for m in manifests if m.kind in plurals and m.body.get("apiVersion") == "v1" and m.name}


# --------------------------------------------------------------------------- the reconcile, recorded


@dataclass
class PlanActor(RecordingActor):
    """The loop's recording actor, keeping also what a report shows: the differences and the prediction."""

    details: list[tuple[Observation, Written]] = field(default_factory=list)

    def perform(self, kind: Any, client: Any, action: Action, desired: Any, observation: Observation) -> Written:
        written = super().perform(kind, client, action, desired, observation)
        self.details.append((observation, written))
        return written


def _pretty(document: Any) -> list[str]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return [document]
    return json.dumps(document, indent=2, sort_keys=True).splitlines() if document is not None else []


def _document_diff(before: Any, after: Any, name: str) -> list[str]:
    return list(difflib.unified_diff(_pretty(before), _pretty(after), f"{name} (AWS now)", f"{name} (planned)",
                                     lineterm=""))


def _written(actor: PlanActor, value_from: str = "") -> list[Change]:
    """One change per write the loop asked the actor for, in the order the operator makes them."""
    changes = []
    for planned, (observation, written) in zip(actor.planned, actor.details):
        # A field the write compares only when it runs (a restored or adopted secret's value).
        later = [Difference(path) for path in written.facts.get("fields") or () if path not in observation.fields]
        fields = [FieldChange(d.path, VALUE_IN_AWS, VALUE_FROM.format(secret=value_from))
                  if planned.kind == SECRET_KIND and d.path == sm.FIELD_VALUE
                  else FieldChange(d.path, d.observed, d.desired) for d in (*observation.differences, *later)]
        diff: list[str] = []
        for d in observation.differences:
            if isinstance(d.observed, (dict, list)) or isinstance(d.desired, (dict, list)):
                diff += _document_diff(d.observed, d.desired, f"{planned.name} {d.path}")
        predicted = {k: v for k, v in sorted(written.facts.items()) if v is not None}
        facts = ", ".join(f"{k}: {_short(v)}" for k, v in predicted.items())
        changes.append(Change(planned.action, planned.name, fields, message=MSG_PREDICTED.format(facts=facts) if facts else "",
                              diff=diff, kind=planned.kind, predicted=predicted))
    return changes


def _names(text: str) -> set[str]:
    return set(re.split(r"[\s'\"]+", text)) - {""}


def _warning_reasons(result: ReconcileResult) -> dict[str, str]:
    return {e.message: e.reason for e in result.events if e.type == "Warning"}


def _ready(result: ReconcileResult) -> dict[str, Any]:
    return next((c for c in result.status.get("conditions") or [] if c.get("type") == "Ready"), {})


def _failed_action(reason: str) -> str:
    if reason == reasons.OWNERSHIP_CONFLICT:
        return CONFLICT
    if reason == reasons.DRIFT_REPORTED:
        return REPORT
    return UNKNOWN if reason in UNREADABLE_REASONS else BLOCKED


ROW_STATES = {"Synced": UNCHANGED, "Retained": RETAIN, "Conflict": CONFLICT}


def _row_change(kind: str, name: str, state: str, message: str, result: ReconcileResult) -> Change:
    """A status row no write covers: unchanged, retained, reported or blocked (why: the Warning naming it)."""
    action = ROW_STATES.get(state)
    ready = _ready(result)
    reason = _warning_reasons(result).get(message) or (ready.get("reason", "") if message and message == ready.get("message") else "")
    if action is None:  # Pending / Error / not synced
        action = _failed_action(reason) if reason else (REPORT if state == "Pending" else BLOCKED)
        reason = reason or (reasons.DRIFT_REPORTED if action == REPORT else "")
    return Change(action, f"{kind} {name}", message=message, reason=reason, kind=kind)


def _in_order(rows: list[tuple[str, str, str, str]], result: ReconcileResult, written: list[Change]) -> list[Change]:
    """The status rows (kind, name, state, message) in the operator's order, each row a write
    covers replaced by that write; writes without a row (deletes) after their kind's rows."""
    out: list[Change] = []
    emitted: set[int] = set()
    for kind, name, state, message in rows:
        covering = [i for i, c in enumerate(written) if c.kind == kind and name in _names(c.object)]
        if not covering:
            out.append(_row_change(kind, name, state, message, result))
            continue
        for i in range(max(covering) + 1):  # earlier writes first: the operator made them first
            if i not in emitted:
                out.append(written[i])
                emitted.add(i)
        if message:  # what status will say of the object after the write (e.g. its role is not granted)
            row = _row_change(kind, name, state, message, result)
            last = written[max(covering)]
            last.message = "; ".join(m for m in (last.message, message) if m)
            last.reason = last.reason or row.reason
    for i, change in enumerate(written):
        if i not in emitted:
            at = max((n + 1 for n, c in enumerate(out) if c.kind == change.kind), default=len(out))
            out.insert(at, change)
    return out


def _stopped(result: ReconcileResult, changes: list[Change]) -> list[Change]:
    """The failure that stopped the reconcile, when no row says it already."""
    ready = _ready(result)
    reason, message = ready.get("reason", ""), ready.get("message", "")
    if ready.get("status") != "False" or reason in (reasons.RECONCILED, reasons.EXECUTION_ROLE_NOT_GRANTED):
        return []
    if any(message and (c.message == message or message.startswith(c.message)) for c in changes if c.message):
        return []
    return [Change(_failed_action(reason), READY_OBJECT, message=message, reason=reason)]


def _same_spec(kind: str, namespace: str, name: str, live: dict[str, Any], spec: dict[str, Any],
               cluster_id: str) -> bool:
    """Would applying ``spec`` leave the live spec's meaning (and so its generation) as it is?"""
    before, after = (validate(kind, namespace, name, s, cluster_id=cluster_id)[0] for s in (live, spec))
    return before is not None and after is not None and before.spec == after.spec


def choose_tenancy(manifests: list[Manifest], name: str,
                   read_cluster: Callable[[str], tenancy.Policy | None] | None) -> tuple[tenancy.Policy, list[str]]:
    """The rules plan judges under, and notes saying which (the operator's rules, not the PR's).

    With the cluster (``--kube``): its TenancyPolicy ``name``, as the operator follows it; one
    the manifests bring is *not* used, because a pull request must not be judged by rules it
    adds itself (it takes effect when it is applied, by whoever may write TenancyPolicies).
    Without the cluster: the one among the manifests, else what the operator uses while none
    exists (``tenancy.absent``: the shipped default for ``default``, else refuse everything).
    """
    if not name:
        return tenancy.SHIPPED, ["tenancy rules: the shipped default (--tenancy-policy empty)"]
    notes: list[str] = []
    proposed = tenancy_from_manifests(manifests, name)
    if read_cluster is not None:
        policy = read_cluster(name)
        if proposed is not None:
            notes.append(f"tenancy rules: the manifests' TenancyPolicy {name} is not used: resources are judged "
                         "under the cluster's rules until it is applied")
        if policy is not None:
            return policy, [*notes, f"tenancy rules: TenancyPolicy {name} from the cluster"]
    elif proposed is not None:
        return proposed, [f"tenancy rules: TenancyPolicy {name} from the manifests"]
    policy = tenancy.absent(name)
    if policy.missing:
        return policy, [*notes, f"tenancy rules: TenancyPolicy {name} does not exist: the operator refuses "
                                "every resource (TenancyPolicyMissing)"]
    return policy, [*notes, "tenancy rules: the shipped default (every rule field scoped to the namespace; "
                            "docs/security.md)"]


def tenancy_from_manifests(manifests: list[Manifest], name: str) -> tenancy.Policy | None:
    """The TenancyPolicy ``name`` among the manifests, as the operator would read it."""
    for manifest in manifests:
        if manifest.kind == TENANCY_POLICY.kind and manifest.name == name:
            spec = manifest.body.get("spec")
            return tenancy.from_spec(name, spec if isinstance(spec, dict) else {})
    return None


def plan_aws(kind: str, namespace: str, name: str, spec: dict[str, Any], clients_for: rc.ClientsFor, *,
             cluster_id: str, current: Live | None = None, source_ref: str = "",
             source_version: str | None = NO_VERSION, kube: Any = None,
             tenancy_policy: tenancy.Policy = tenancy.SHIPPED,
             notes: list[str] | None = None) -> tuple[list[Change], list[Problem]]:
    """The writes the resource's reconcile would make (recorded, not made) and what it leaves alone.

    ``notes``: gets the PullReady verdict the operator would set (a RegistryCredential with
    consumers), as one line: it is not a change, so it is not among the changes.

    ``current``: the live resource (None: new to the operator); ``source_version``: the
    source Secret's resourceVersion (None: no such Secret); ``kube``: the read-only
    cluster an ECRPullSecret's reconcile observes its Secret and ServiceAccounts in
    (``ReadOnlyKube``). The token GetAuthorizationToken answers stays in the desired
    Secret the actor is handed; the adapter's differences and predictions never carry it."""
    same = current is not None and _same_spec(kind, namespace, name, current.spec, spec, cluster_id)
    generation = 1 if current is None or current.generation is None else current.generation + (0 if same else 1)
    previous = current.status if current else {}
    actor = PlanActor()
    try:
        if kind == REGISTRY_CREDENTIAL.kind:
            source = None if source_version is None else _placeholder_source(namespace, source_ref, source_version)
            result = rc.reconcile(rc.Request(namespace, name, generation, spec, previous, source, cluster_id),
                                  clients_for, actor=actor, tenancy_policy=tenancy_policy)
        elif kind == ECR_PULL_SECRET.kind:
            uid = (current.uid if current else "") or "<uid>"
            result = pull_secret.reconcile(pull_secret.Request(namespace, name, uid, generation, spec, previous),
                                           clients_for=clients_for, kube=kube, cluster_id=cluster_id,
                                           now=dt.datetime.now(dt.timezone.utc), actor=actor,
                                           tenancy_policy=tenancy_policy)
        else:
            result = cross_account.reconcile(namespace, name, generation, spec, previous, clients_for=clients_for,
                                             cluster_id=cluster_id, now=lambda: dt.datetime.now(dt.timezone.utc),
                                             actor=actor, tenancy_policy=tenancy_policy)
    except ReadOnlyViolation as error:
        return _written(actor) + [Change(UNKNOWN, "AWS", message=MSG_REFUSED.format(refused=error))], []
    ready = _ready(result)
    if result.outcome == "invalid":  # the condition message is "field: rule; ..."
        field_name, _, rule = str(ready.get("message", "")).partition(": ")
        return [], [Problem(ready.get("reason", reasons.INVALID_SPEC), field_name, rule)]
    status = result.status
    pulled = next((c for c in status.get("conditions") or [] if c.get("type") == reasons.PULL_READY_TYPE), None)
    if notes is not None and pulled is not None and kind == REGISTRY_CREDENTIAL.kind:
        notes.append(MSG_PULL_READY.format(**pulled))
    if kind == REGISTRY_CREDENTIAL.kind:
        rows = [(SECRET_KIND, status["secretName"], "Synced", "")] if status.get("secretName") else []
        rows += [(r.get("kind", ""), str(r.get("name", "")), r.get("state", ""), r.get("message") or "")
                 for r in status.get("managed") or []]
    elif kind == ECR_PULL_SECRET.kind:
        # The adapters' labels ("Secret ns/name", "... ServiceAccount ns/sa") name the rows.
        rows = [(PULL_SECRETS.kind, f"{namespace}/{status['secretName']}", "Synced", "")] if result.ready else []
        rows += [(IMAGE_PULL_SECRETS.kind, f"{namespace}/{a}", "Synced", "") for a in status.get("serviceAccounts") or []
                 if result.ready]
    else:
        rows = [(REPOSITORY_KIND, str(r.get("name", "")), "Synced" if r.get("synced") else "", r.get("message") or "")
                for r in status.get("repositories") or []]
    changes = _in_order(rows, result, _written(actor, value_from=f"{namespace}/{source_ref}"))
    return changes + _stopped(result, changes), []


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


def _clients_for(factory: ClientFactory) -> Callable[[str | None, str | None, str | None], Clients]:
    return lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external)


MSG_PULL_SECRET_NOTE = ("spec valid; without AWS the Secret and ServiceAccount writes are not planned (they need "
                        "GetAuthorizationToken's answer, which plan never prints)")
MSG_SERVICE_ACCOUNT_ASSUMED = ("ServiceAccount {namespace}/{name} is not among these manifests: planned as existing "
                               "with no imagePullSecrets; it must exist in the cluster")


def plan_objects(manifests: list[Manifest], *, default_namespace: str = "default", cluster_id: str = "default",
                 factory: ClientFactory | None = None, live: KubeLive | None = None,
                 progress: Callable[[str], None] | None = None,
                 tenancy_policy: tenancy.Policy = tenancy.SHIPPED,
                 secret_monthly_price: float = cost.DEFAULT_SECRET_MONTHLY_PRICE) -> list[ObjectPlan]:
    """Validate each manifest and, with a factory, run its reconcile with the recording actor (reads only).

    ``tenancy_policy``: the rules the operator would hold each namespace to; a resource
    outside them is a NotPermitted problem (the operator's reconcile makes the same check).

    ``live``: where the resources' current status comes from (``KubeLive``); None plans
    every resource as new to the operator."""
    secrets = _secrets_in(manifests, default_namespace)
    core_objects = _core_objects(manifests, default_namespace)
    plans: list[ObjectPlan] = []
    for manifest in manifests:
        kind = manifest.kind
        if kind == TENANCY_POLICY.kind:
            continue  # the rules themselves (read by run()), not a resource to plan
        api_version = str(manifest.body.get("apiVersion") or "")
        if not api_version.startswith(GROUP + "/") and kind not in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind,
                                                                    ECR_PULL_SECRET.kind):
            continue  # Secrets, Namespaces, ...: applied by kubectl, not planned here
        namespace = manifest.namespace(default_namespace)
        plan = ObjectPlan(manifest.source, kind, namespace, manifest.name)
        plans.append(plan)
        if progress:
            progress(f"planning {plan.label} ({manifest.source})")
        if kind == ECR_PULL_SECRET.kind:
            # Judged like the operator judges it; its writes are Kubernetes objects (a Secret,
            # ServiceAccounts), which the plan does not yet run through the recording actor.
            plan.problems += _envelope_problems(manifest)
            spec = manifest.body.get("spec") if isinstance(manifest.body.get("spec"), dict) else {}
            resolved_pull, problems = validate_pull_secret(namespace, manifest.name or "x", spec, cluster_id=cluster_id,
                                                           known_regions=ecr_regions())
            plan.problems += problems
            if resolved_pull is not None:
                plan.problems += tenancy.violations(tenancy_policy, namespace, tenancy.values_of(kind, resolved_pull))
            if plan.problems or resolved_pull is None:
                continue
            if factory is None:
                plan.notes.append(MSG_PULL_SECRET_NOTE)
                continue
            assumed: set[str] = set()
            if live is None:
                for account in resolved_pull.service_accounts:
                    account_path = core_path("serviceaccounts", namespace, account)
                    if account_path not in core_objects:
                        assumed.add(account_path)
                        plan.notes.append(MSG_SERVICE_ACCOUNT_ASSUMED.format(namespace=namespace, name=account))
            try:
                current = live.resource(kind, namespace, manifest.name) if live else None
            except (OSError, ValueError, ApiError) as error:
                plan.changes.append(Change(UNKNOWN, plan.label, message=MSG_KUBE_UNREADABLE.format(error=error)))
                continue
            changes, problems = plan_aws(kind, namespace, manifest.name, spec, _clients_for(factory),
                                         cluster_id=cluster_id, current=current,
                                         kube=ReadOnlyKube(live, core_objects, assumed), tenancy_policy=tenancy_policy)
            plan.changes += changes
            plan.problems += problems
            continue
        if kind not in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind):
            plan.problems.append(Problem(reasons.INVALID_SPEC, "kind", MSG_UNKNOWN_KIND.format(kind=kind, group=GROUP)))
            continue
        plan.problems += _envelope_problems(manifest)
        spec = manifest.body.get("spec") if isinstance(manifest.body.get("spec"), dict) else {}
        resolved, problems = validate(kind, namespace, manifest.name or "x", spec, cluster_id=cluster_id)
        plan.problems += problems
        if resolved is not None:
            plan.problems += tenancy.violations(tenancy_policy, namespace, tenancy.values_of(kind, resolved))
        if resolved is None or plan.problems:
            continue
        ref = ""
        if isinstance(resolved, ResolvedRegistryCredential):
            ref = resolved.spec.source.secretRef.name
            source = secrets.get((namespace, ref))
            plan.problems += _source_secret_problems(resolved, source)
            if plan.problems:
                continue
            if source is None and live is None:
                plan.notes.append(f"source Secret {namespace}/{ref} is not among these manifests: it must exist in the cluster")
        if factory is None:
            continue
        if not Clients(factory, region=resolved.spec.region, role_arn=None, external_id=None).region:
            plan.changes.append(Change(UNKNOWN, "AWS", message=MSG_NO_REGION, reason=reasons.INVALID_SPEC))
            continue
        try:
            current = live.resource(kind, namespace, manifest.name) if live else None
            version = live.source_version(namespace, ref) if live and ref else NO_VERSION
            if version is None and (namespace, ref) in secrets:
                version = NO_VERSION  # not in the cluster yet: applied with these manifests
        except (OSError, ValueError, ApiError) as error:  # refused connections, 4xx/5xx, a body that is not JSON
            plan.changes.append(Change(UNKNOWN, plan.label, message=MSG_KUBE_UNREADABLE.format(error=error)))
            continue
        changes, problems = plan_aws(kind, namespace, manifest.name, spec, _clients_for(factory), cluster_id=cluster_id,
                                     current=current, source_ref=ref, source_version=version,
                                     tenancy_policy=tenancy_policy, notes=plan.notes)
        plan.changes += changes
        plan.problems += problems
        if kind == REGISTRY_CREDENTIAL.kind and not problems:
            # One secret per RegistryCredential; the line says what the pull request changes.
            plan.notes.append(cost.plan_note(current.status if current else None, 1, secret_monthly_price))
    return plans


# --------------------------------------------------------------------------- output


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


SYMBOLS = {CREATE: "+", UPDATE: "~", ADOPT: "~", DELETE: "-", UNCHANGED: "=", RETAIN: "=", REPORT: "*",
           BLOCKED: "!", CONFLICT: "!", UNKNOWN: "?"}


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
        cluster_id: str = "default", kube: bool = False, stdout: Any = None, stderr: Any = None,
        tenancy_policy: str = "default") -> int:
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
    live = None
    if kube and factory is not None:
        try:
            live = KubeLive.login()
        except UsageError as error:
            print(f"regaccess plan: --kube: {error}", file=stderr)
            return EXIT_USAGE
        notes.append("live status read from the cluster (--kube): objects the operator would stop managing are listed")
    elif kube:
        notes.append("--kube without AWS: validation only, under the cluster's TenancyPolicy")
    cluster = live
    if kube and tenancy_policy and cluster is None:
        # Without AWS there is no live status to compare, but the rules still come from the cluster.
        try:
            cluster = KubeLive.login()
        except UsageError as error:
            print(f"regaccess plan: --kube: {error}", file=stderr)
            return EXIT_USAGE
    try:
        policy, policy_notes = choose_tenancy(manifests, tenancy_policy,
                                              cluster.tenancy_policy if cluster is not None else None)
    except (OSError, ValueError, ApiError) as error:
        print(f"regaccess plan: --kube: TenancyPolicy {tenancy_policy} unreadable: {error}", file=stderr)
        return EXIT_USAGE
    notes += policy_notes
    progress = (lambda text: print(text, file=stderr)) if output == "text" and getattr(stderr, "isatty", lambda: False)() else None
    objects = broken + plan_objects(manifests, default_namespace=namespace, cluster_id=cluster_id,
                                    factory=factory, live=live, progress=progress, tenancy_policy=policy)
    if not objects:
        print("regaccess plan: no RegistryCredential or CrossAccountRepoAccess in the given manifests", file=stderr)
        return EXIT_USAGE
    plan = Plan(objects, aws=factory is not None, notes=notes)
    stdout.write(render_json(plan) if output == "json" else render_text(plan))
    return plan.exit_code()
