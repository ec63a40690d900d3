"""Reconcile one CrossAccountRepoAccess: its statements in ECR repository policies.

Called by ``controller.handlers`` (create / update / resume and the drift timer
call ``reconcile()``; the delete handler calls ``delete()``). Level-triggered:
every call runs each repository through the one loop
(``controller.reconcile.loop``) with the adapter
``controller.aws.repository_policies.STATEMENTS`` ("this resource's statements in
one repository policy", owned by Sid prefix, compared by meaning, everyone else's
statements kept as they are), and hands what it found to
``controller.reconcile.outcome.assemble``, the status assembly both kinds share.
Knows nothing about kopf.

What is particular to this kind (the rest is the loop's and the assembly's):

- An invalid spec makes no AWS call at all: Ready=False with the problem's reason;
  so do grants whose statements alone exceed ECR's policy limit.
- One lock per repository serialises our own read-merge-write (ECR has no
  conditional write); the merged policy is checked against the size limit before
  the write.
- A repository that does not exist is a missing dependency: retried.
- ECR's "Invalid repository policy provided" / "Principal not found" right after
  a role was created is IAM eventual consistency: retried with backoff for
  ``PRINCIPAL_PROPAGATION_WINDOW`` (first seen in ``repositories[].rejectedSince``),
  then Ready=False ``PrincipalRejected`` naming the principals.
- A repository dropped from ``spec.repositories`` loses our statements (the
  resource no longer asks for them there).
- Deletion works from status rows when the spec became invalid; Retain leaves all.
- Statements under this owner's legacy 40-bit Sid mark are ours only in documents
  status has a row for (``_Context.old_prefix``): re-marked once, never drift.
- ``spec.repositoryPrefixes``: the repositories under each prefix are listed at
  every pass and synced like listed ones; each prefix's creation template
  (``TEMPLATE_STATEMENTS``, rows in ``status.templates``) and, for Pull grants on
  prefixes with a pull-through cache rule, the registry policy
  (``REGISTRY_STATEMENTS``, ``status.registryPolicy``) go through the same loop
  (``_sync_document``). A listing that fails keeps every row (nothing is cleaned
  up on a guess).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from controller import tenancy
from controller.api import reasons
from controller.api.models import ECR_PREFIX_PATTERN, ECR_REPOSITORY_PATTERN, Access, DeletionPolicy, DriftPolicy
from controller.api.validation import Problem
from controller.api.validation_xrepo import validate_cross_account
from controller.aws import repository_policies as policies
from controller.aws.clients import Clients
from controller.aws.repository_policies import (
    REGISTRY_STATEMENTS,
    STATEMENTS,
    TEMPLATE_STATEMENTS,
    DesiredStatements,
    PrincipalRejected,
    RepositoryMissing,
)
from controller.reconcile import loop
from controller.reconcile.conditions import set_condition
from controller.reconcile.outcome import (
    not_permitted_delete,
    ERROR,
    PENDING,
    RETRY_DEPENDENCY,
    SYNCED,
    Pass,
    assemble,
    bounded,
    invalid,
    retry_delay,
    status_row,
)
from controller.reconcile.result import Event, ReconcileResult, normal, warning
from controller.reconcile.steps import StepError, open_drift

ClientsFor = Callable[[str | None, str | None, str | None], Clients]

DRIFT_OBJECT = "repositoryPolicy/{repository}"
# Drift objects of the other documents: templatePolicy/<prefix>, registryPolicy/<registry>.
DOCUMENT_DRIFT_OBJECT = "{kind}/{target}"
PRINCIPAL_PROPAGATION_WINDOW = dt.timedelta(minutes=2)
PRINCIPAL_RETRY_MIN = 5.0
PRINCIPAL_RETRY_MAX = 30.0
# After the window the principal is reported, but still retried slowly: a role created
# later must be picked up without a spec change (ACK issue 1844, stuck Terminal).
PRINCIPAL_REJECTED_RETRY = 300.0
# A finalizer must not be dropped while our statements remain, so every delete error is
# retried; terminal ones slowly (the user can switch to deletionPolicy Retain to let go).
DELETE_TERMINAL_RETRY = 300.0

MSG_REPOSITORY_MISSING = "repository {repository} does not exist (yet) in {region}; retrying"
MSG_PRINCIPAL_PENDING = (
    "ECR does not accept principal(s) {principals} in the policy of {repository} yet; a role "
    "created moments ago takes up to two minutes to become visible (IAM eventual "
    "consistency); retrying since {since}"
)
MSG_PRINCIPAL_REJECTED = (
    "ECR rejected the policy of {repository} naming principal(s) {principals} for more than "
    "{window} seconds since {since}: check that they exist ({aws})"
)
MSG_SYNCED = "{count} repository policies carry this resource's {statements} statement(s)"
MSG_SYNCED_DOCUMENTS = "; {templates} repository creation template(s) and {registry} registry policy carry them too"
MSG_TEMPLATES_UPDATED = "updated the repository creation templates of prefixes {prefixes}"
MSG_REGISTRY_UPDATED = "updated the registry policy (pull-through cache statements)"
MSG_REMOVED_DOCUMENTS = "removed this resource's statements from {documents}"
MSG_LISTING = "listing the repositories under spec.repositoryPrefixes"
MSG_RULES = "listing the pull-through cache rules"
# The registry policy's row name until ECR tells the registry (account) ID.
REGISTRY_TARGET = "registry"
MSG_ROW_DRIFT_REPORTED = "owned statements changed in AWS (driftPolicy Report, not repaired): {fields}"
MSG_UPDATED = "updated the policy of repositories {repositories}"
MSG_CLEANED = "removed statements from repositories dropped from the spec"
MSG_REMOVED = "removed this resource's statements from repositories {repositories}"
MSG_RETAINED = "deletionPolicy Retain: left this resource's statements in repositories {repositories}"
MSG_DELETING = "removing this resource's statements from repository policies"


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class RejectionDecision:
    """What to do when ECR rejects a policy for a principal IAM does not know."""

    first_seen: dt.datetime
    within_window: bool
    retry_after: float


def principal_rejection_decision(
    first_seen: dt.datetime | None,
    now: dt.datetime,
    *,
    window: dt.timedelta = PRINCIPAL_PROPAGATION_WINDOW,
) -> RejectionDecision:
    """Retry with growing delays inside the propagation window, then report.

    The delay follows the time already waited (5 s, 5 s, 10 s, 20 s, 30 s ...), and the
    last retry inside the window lands at its end so the verdict is not late.
    """
    first = first_seen or now
    elapsed = max((now - first).total_seconds(), 0.0)
    remaining = window.total_seconds() - elapsed
    if remaining > 0:
        delay = min(max(PRINCIPAL_RETRY_MIN, elapsed), PRINCIPAL_RETRY_MAX)
        return RejectionDecision(first, True, max(min(delay, remaining), 1.0))
    return RejectionDecision(first, False, PRINCIPAL_REJECTED_RETRY)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None  # a hand-edited status must not break the reconcile


@dataclass
class RepoOutcome:
    """What one repository's pass did: its status row (None: it leaves status) and findings."""

    row: dict[str, Any] | None
    writes: int = 0
    observed: bool = False  # the owned statements could be compared
    drift: list[str] = field(default_factory=list)  # Statement[<sid>] fields changed outside
    remediated: bool = False
    error: StepError | None = None


def _failed(repository: str, arn: str | None, error: StepError, writes: int = 0, observed: bool = False,
            rejected_since: str | None = None) -> RepoOutcome:
    row = status_row(repository, arn, ERROR, error.message, rejectedSince=rejected_since)
    return RepoOutcome(row, writes=writes, observed=observed, error=error)


def _missing(repository: str, region: str | None) -> StepError:
    # The repository may be created later (by Terraform, another controller): retry.
    return StepError(reasons.DEPENDENCY_MISSING, MSG_REPOSITORY_MISSING.format(repository=repository, region=region),
                     True, RETRY_DEPENDENCY)


# --------------------------------------------------------------------------- one repository

# ECR has no conditional write: SetRepositoryPolicy replaces the whole document. Two
# resources of this operator on one repository, reconciled at once in worker threads,
# would each write back a policy without the other's fresh statements. One lock per
# repository serialises our own read-merge-write; writers outside the operator can
# still race, and the next resync repairs that (level-triggered).
_REPOSITORY_LOCKS: dict[tuple[str | None, str | None, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _repository_lock(region: str | None, role_arn: str | None, repository: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _REPOSITORY_LOCKS.setdefault((region, role_arn, repository), threading.Lock())


@dataclass(frozen=True)
class _Context:
    ecr: Any
    region: str | None
    role_arn: str | None
    prefix: str
    desired: list[dict[str, Any]]
    # This owner's legacy (40-bit) Sid mark: accepted as ours only on documents status
    # has a row for (the operator's own record; the old mark alone is forgeable).
    old_prefix: str
    same_generation: bool
    report_only: bool
    now: dt.datetime
    previous_status: dict[str, Any]
    actor: Any = None
    applied_for: tuple[str, ...] = policies.DEFAULT_APPLIED_FOR

    def managed_before(self, repository: str, previous: dict[str, Any], kind: str = STATEMENTS.kind) -> bool:
        """Were our statements there as declared for this generation (so a difference is drift)?

        A row left unsynced by a reported drift that is still open is that drift, not
        unfinished work; differences after a spec change are the change being applied.
        """
        drift_object = DOCUMENT_DRIFT_OBJECT.format(kind=kind, target=repository)
        reported = any(o == drift_object for o, _ in open_drift(self.previous_status))
        return self.same_generation and (previous.get("synced") is True or reported)


def _sync_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    with _repository_lock(ctx.region, ctx.role_arn, repository):
        return _sync_repository_locked(ctx, repository, previous)


def _sync_repository_locked(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    desired = DesiredStatements(repository, ctx.prefix, ctx.desired, known_arn=previous.get("arn"),
                                old_prefix=ctx.old_prefix if previous else None)
    try:
        observation = STATEMENTS.observe(ctx.ecr, desired)
    except RepositoryMissing:
        return _failed(repository, None, _missing(repository, ctx.region))
    except loop.AWS_ERRORS as error:
        return _failed(repository, previous.get("arn"), loop.failure(error, STATEMENTS.service, STATEMENTS.label(desired)))
    arn = observation.observed["arn"]
    managed_before = ctx.managed_before(repository, previous)
    decision = loop.decide(observation, adopt_existing=False, report_only=ctx.report_only, managed_before=managed_before)
    if decision in loop.WRITES:
        # The whole document must fit ECR's limit together with everyone else's statements.
        too_large = policies.oversize_message(repository, STATEMENTS.merged(desired, observation), ctx.prefix,
                                              ctx.desired)
        if too_large:
            return _failed(repository, arn, StepError(reasons.REPOSITORY_POLICY_TOO_LARGE, too_large, False),
                           observed=True)
    try:
        done = loop.sync_object(STATEMENTS, ctx.ecr, desired, actor=ctx.actor or loop.AWS_ACTOR,
                                report_only=ctx.report_only, managed_before=managed_before, observation=observation)
    except RepositoryMissing:
        return _failed(repository, arn, _missing(repository, ctx.region), writes=1)
    except PrincipalRejected as rejected:
        return _principal_rejected(ctx, repository, arn, previous, rejected)
    return _outcome(repository, arn, done, decision)


def _outcome(target: str, arn: str | None, done: loop.ObjectResult, decision: loop.Decision) -> RepoOutcome:
    """One document's loop result as its status row and counts (repository, template, registry)."""
    if done.error is not None:
        return _failed(target, arn, done.error, writes=1 if decision in loop.WRITES else 0, observed=True)
    drift = list(done.drifted)
    if done.decision is loop.Decision.REPORT:
        message = bounded(MSG_ROW_DRIFT_REPORTED.format(fields=", ".join(drift)))
        return RepoOutcome(status_row(target, arn, PENDING, message), observed=True, drift=drift)
    # A write whose answer was lost and that observing again showed done is still a write.
    writes = done.calls or (1 if done.recovered else 0)
    return RepoOutcome(status_row(target, arn, SYNCED), writes=writes, observed=True,
                       drift=drift if done.remediated else [], remediated=done.remediated)


def _principal_rejected(ctx: _Context, repository: str, arn: str | None, previous: dict[str, Any],
                        rejected: PrincipalRejected) -> RepoOutcome:
    # The clock restarts with a new generation: its principals may be newly created too.
    first_seen = parse_rfc3339(previous.get("rejectedSince")) if ctx.same_generation else None
    decision = principal_rejection_decision(first_seen, ctx.now)
    since = rfc3339(decision.first_seen)
    # Account roots and organizations exist; roles are what IAM may not know yet.
    principals = ", ".join(policies.role_principals(ctx.desired) or policies.all_principals(ctx.desired))
    if decision.within_window:
        reason = reasons.DEPENDENCY_MISSING
        message = MSG_PRINCIPAL_PENDING.format(principals=principals, repository=repository, since=since)
    else:
        reason = reasons.PRINCIPAL_REJECTED
        message = MSG_PRINCIPAL_REJECTED.format(
            repository=repository, principals=principals, window=int(PRINCIPAL_PROPAGATION_WINDOW.total_seconds()),
            since=since, aws=loop.describe(rejected.error, STATEMENTS.service),
        )
    # Retried either way: after the window slowly, so a role created later is picked up.
    error = StepError(reason, bounded(message), True, decision.retry_after)
    return _failed(repository, arn, error, writes=1, observed=True, rejected_since=since)


def _sync_document(ctx: _Context, adapter: Any, target: str, statements: list[dict[str, Any]],
                   previous: dict[str, Any]) -> RepoOutcome:
    """One creation template or the registry policy: our statements in it, through the loop.

    The same decisions as a repository's (``loop.decide``), the same size check before
    the write; a document shared by several resources is locked like a repository.
    """
    with _repository_lock(ctx.region, ctx.role_arn, f"{adapter.kind}:{target}"):
        desired = DesiredStatements(target, ctx.prefix, statements, applied_for=ctx.applied_for,
                                    old_prefix=ctx.old_prefix if previous else None)
        what = adapter.label(desired)
        try:
            observation = adapter.observe(ctx.ecr, desired)
        except loop.AWS_ERRORS as error:
            return _failed(target, None, loop.failure(error, adapter.service, what))
        managed_before = ctx.managed_before(target, previous, adapter.kind)
        decision = loop.decide(observation, adopt_existing=False, report_only=ctx.report_only,
                               managed_before=managed_before)
        if decision in loop.WRITES:
            too_large = policies.oversize_message(target, adapter.merged(desired, observation), ctx.prefix,
                                                  statements, what=f"the policy of {what}")
            if too_large:
                return _failed(target, None, StepError(reasons.REPOSITORY_POLICY_TOO_LARGE, too_large, False),
                               observed=True)
        done = loop.sync_object(adapter, ctx.ecr, desired, actor=ctx.actor or loop.AWS_ACTOR,
                                report_only=ctx.report_only, managed_before=managed_before, observation=observation)
        return _outcome(target, None, done, decision)


def _remove_document(ecr: Any, adapter: Any, target: str, prefix: str, lock_scope: tuple[str | None, str | None],
                     actor: Any, old_prefix: str | None = None) -> loop.ObjectResult:
    """Take our statements out of a template or the registry policy (the rest is kept).

    ``old_prefix``: our legacy mark, given when status records the document."""
    with _repository_lock(*lock_scope, f"{adapter.kind}:{target}"):
        return loop.delete_object(adapter, ecr, DesiredStatements(target, prefix, old_prefix=old_prefix),
                                  actor=actor or loop.AWS_ACTOR)


def _remove_from_repository(ecr: Any, repository: str, prefix: str, lock_scope: tuple[str | None, str | None],
                            actor: Any, old_prefix: str | None = None) -> loop.ObjectResult | None:
    """Take our statements out of one repository policy; None when the repository is gone."""
    with _repository_lock(*lock_scope, repository):
        try:
            return loop.delete_object(STATEMENTS, ecr, DesiredStatements(repository, prefix, old_prefix=old_prefix),
                                      actor=actor or loop.AWS_ACTOR)
        except RepositoryMissing:
            return None  # no repository: nothing of ours is left in it


def _cleanup_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    done = _remove_from_repository(ctx.ecr, repository, ctx.prefix, (ctx.region, ctx.role_arn), ctx.actor,
                                   old_prefix=ctx.old_prefix)
    if done is not None and done.error is not None:
        return _failed(repository, previous.get("arn"), done.error)
    return RepoOutcome(None, writes=done.calls if done is not None else 0, observed=True)


# --------------------------------------------------------------------------- entry points


def _invalid(previous_status: dict[str, Any], generation: int, problems: list, now: str,
             drift_check: bool = False) -> ReconcileResult:
    result = invalid(previous_status, generation, problems, now, drift_check=drift_check)
    result.status.setdefault("repositories", [])
    result.status.setdefault("drift", [])
    return result


def reconcile(
    namespace: str,
    name: str,
    generation: int,
    spec: dict[str, Any],
    previous_status: dict[str, Any],
    *,
    clients_for: ClientsFor,
    cluster_id: str,
    now: Callable[[], dt.datetime],
    drift_check: bool = False,
    actor: Any = None,
    template_applied_for: tuple[str, ...] = policies.DEFAULT_APPLIED_FOR,
    tenancy_policy: tenancy.Policy = tenancy.SHIPPED,
) -> ReconcileResult:
    """Make the repository policies (and, for prefixes, the creation templates and the
    registry policy) carry exactly this resource's statements.

    ``actor`` performs the writes (controller.reconcile.loop; None: AWS);
    ``template_applied_for``: appliedFor of a creation template the operator creates
    (the admin's ``--template-applied-for``)."""
    moment = now()
    stamp = rfc3339(moment)
    previous_status = dict(previous_status or {})
    resolved, problems = validate_cross_account(namespace, name, spec, cluster_id=cluster_id)
    if resolved is None:
        return _invalid(previous_status, generation, problems, stamp, drift_check)
    problems = tenancy.violations(tenancy_policy, namespace, tenancy.cross_account_values(resolved))
    if problems:  # outside the namespace's tenancy rules: no AWS call
        return _invalid(previous_status, generation, problems, stamp, drift_check)
    model = resolved.spec

    clients = clients_for(model.region, model.roleArn, model.externalId)
    prefix = policies.sid_prefix(cluster_id, namespace, name)
    desired = policies.desired_statements(resolved, partition=policies.partition_of(model.region or clients.region))
    # Our statements alone over the limit is a spec problem: say so before any AWS call.
    alone = policies.grants_too_large_message(prefix, desired)
    if alone:
        return _invalid(
            previous_status, generation, [Problem(reasons.REPOSITORY_POLICY_TOO_LARGE, "spec.grants", alone)], stamp,
            drift_check,
        )

    ctx = _Context(
        ecr=clients("ecr"),
        region=model.region or clients.region,
        role_arn=model.roleArn,
        prefix=prefix,
        old_prefix=policies.legacy_sid_prefix(namespace, name),
        desired=desired,
        same_generation=previous_status.get("observedGeneration") == generation,
        report_only=model.driftPolicy == DriftPolicy.Report.value,
        now=moment,
        previous_status=previous_status,
        actor=actor,
        applied_for=tuple(template_applied_for),
    )
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    prefixes = list(model.repositoryPrefixes)
    wanted = list(model.repositories)
    listing_failures: list[StepError] = []
    if prefixes:
        # Repositories under the prefixes, listed at every sync and drift check (one
        # DescribeRepositories per 1,000 repositories of the registry).
        try:
            found, _ = policies.repositories_under(ctx.ecr, prefixes)
        except loop.AWS_ERRORS as error:
            listing_failures.append(loop.failure(error, STATEMENTS.service, MSG_LISTING))
            # Unknown which are still there: keep every row rather than clean any up.
            found = [repo for repo in previous_rows if isinstance(repo, str)]
        wanted += [repo for repo in found if repo not in wanted]
    outcomes = [_sync_repository(ctx, repo, previous_rows.get(repo) or {}) for repo in wanted]
    for repo, row in previous_rows.items():
        if repo not in wanted and isinstance(repo, str):
            outcomes.append(_cleanup_repository(ctx, repo, row))
    documents = _sync_templates(ctx, prefixes) + _sync_registry_policy(ctx, resolved, prefixes)

    rows = [o.row for o in outcomes if o.row is not None]
    events: list[Event] = []
    written = [o.row["name"] for o in outcomes if o.row and o.writes and o.error is None and not o.remediated]
    if written:
        events.append(normal(reasons.RECONCILED, MSG_UPDATED.format(repositories=", ".join(written))))
    if any(o.row is None and o.writes for o in outcomes):
        events.append(normal(reasons.RECONCILED, MSG_CLEANED))
    templates_written = [o.row["name"] for kind, o in documents
                         if kind == TEMPLATE_STATEMENTS.kind and o.row and o.writes and o.error is None
                         and not o.remediated]
    if templates_written:
        events.append(normal(reasons.RECONCILED, MSG_TEMPLATES_UPDATED.format(prefixes=", ".join(templates_written))))
    if any(kind == REGISTRY_STATEMENTS.kind and o.row and o.writes and o.error is None and not o.remediated
           for kind, o in documents):
        events.append(normal(reasons.RECONCILED, MSG_REGISTRY_UPDATED))
    status = {**previous_status, "repositories": rows}
    template_rows = [o.row for kind, o in documents if kind == TEMPLATE_STATEMENTS.kind and o.row is not None]
    if template_rows or status.get("templates"):
        status["templates"] = template_rows
    registry_rows = [o.row for kind, o in documents if kind == REGISTRY_STATEMENTS.kind and o.row is not None]
    if registry_rows or status.get("registryPolicy"):
        status["registryPolicy"] = registry_rows[0] if registry_rows else None
    status.setdefault("drift", [])
    every = [(STATEMENTS.kind, o) for o in outcomes] + documents
    return assemble(previous_status, status, Pass(
        generation=generation,
        now=stamp,
        failures=listing_failures + [o.error for _, o in every if o.error is not None],
        drift=[(DOCUMENT_DRIFT_OBJECT.format(kind=kind, target=o.row["name"]), f)
               for kind, o in every if o.row for f in o.drift],
        remediated=any(o.remediated for _, o in every),
        judged=not listing_failures and all(o.observed for _, o in every),
        events=events,
        wrote=any(o.writes for _, o in every),
        first_sync=not ctx.same_generation,
        drift_check=drift_check,
        ready_message=MSG_SYNCED.format(count=len(rows), statements=len(desired))
        + (MSG_SYNCED_DOCUMENTS.format(templates=len(template_rows), registry=len(registry_rows))
           if prefixes else ""),
        # Rows carry each repository's progress (and rejectedSince): the generation is seen.
        generation_always=True,
    ))


def _sync_templates(ctx: _Context, prefixes: list[str]) -> list[tuple[str, RepoOutcome]]:
    """The creation template of each prefix carries our statements; dropped prefixes lose them."""
    kind = TEMPLATE_STATEMENTS.kind
    previous = {row.get("name"): row for row in ctx.previous_status.get("templates") or []}
    out = [(kind, _sync_document(ctx, TEMPLATE_STATEMENTS, prefix, ctx.desired, previous.get(prefix) or {}))
           for prefix in prefixes]
    for prefix in previous:
        if isinstance(prefix, str) and prefix not in prefixes:
            done = _remove_document(ctx.ecr, TEMPLATE_STATEMENTS, prefix, ctx.prefix, (ctx.region, ctx.role_arn),
                                    ctx.actor, old_prefix=ctx.old_prefix)
            row = status_row(prefix, None, ERROR, done.error.message) if done.error else None
            out.append((kind, RepoOutcome(row, writes=done.calls, observed=done.error is None, error=done.error)))
    return out


def pull_sids(resolved: Any, prefix: str) -> set[str]:
    """Sids of the statements of grants that include Pull (they also get cache statements)."""
    return {f"{prefix}G{index}{tail}" for index, grant in enumerate(resolved.spec.grants)
            if grant.access in (Access.Pull.value, Access.PullPush.value) for tail in ("", "Org")}


def _sync_registry_policy(ctx: _Context, resolved: Any, prefixes: list[str]) -> list[tuple[str, RepoOutcome]]:
    """Registry policy statements for Pull grants on prefixes that have a pull-through cache rule.

    One DescribePullThroughCacheRules per pass (only when a Pull grant and a prefix
    exist), one GetRegistryPolicy when statements are wanted or were kept before.
    """
    kind = REGISTRY_STATEMENTS.kind
    previous = ctx.previous_status.get("registryPolicy") or {}
    sids = pull_sids(resolved, ctx.prefix)
    wanted: list[dict[str, Any]] = []
    target = previous.get("name") or REGISTRY_TARGET
    if prefixes and sids:
        try:
            rules = policies.cache_rules(ctx.ecr)
        except loop.AWS_ERRORS as error:
            failed = loop.failure(error, REGISTRY_STATEMENTS.service, MSG_RULES)
            return [(kind, _failed(target, None, failed))] if previous else [(kind, RepoOutcome(None, error=failed))]
        cached = [p for p in prefixes if p in rules]
        if cached:
            target = rules[cached[0]] or target
            wanted = policies.cache_statements(ctx.desired, cached, partition=policies.partition_of(ctx.region),
                                               region=ctx.region or "", account=target, pull_grants=sids)
    if wanted:
        return [(kind, _sync_document(ctx, REGISTRY_STATEMENTS, target, wanted, previous))]
    if not previous:
        return []
    done = _remove_document(ctx.ecr, REGISTRY_STATEMENTS, target, ctx.prefix, (ctx.region, ctx.role_arn), ctx.actor,
                            old_prefix=ctx.old_prefix)
    row = status_row(target, None, ERROR, done.error.message) if done.error else None
    return [(kind, RepoOutcome(row, writes=done.calls, observed=done.error is None, error=done.error))]


def lenient_prefixes(spec: dict[str, Any], previous_status: dict[str, Any]) -> list[str]:
    """The prefixes of a spec that may be invalid, with those status has template rows for."""
    pattern = re.compile(ECR_PREFIX_PATTERN)
    listed = (spec or {}).get("repositoryPrefixes")
    out: list[str] = []
    for prefix in [*(listed if isinstance(listed, list) else []),
                   *(row.get("name") for row in previous_status.get("templates") or [])]:
        if isinstance(prefix, str) and pattern.match(prefix) and prefix not in out:
            out.append(prefix)
    return out


def _lenient_target(spec: dict[str, Any], previous_status: dict[str, Any]) -> tuple[
    str | None, str | None, str | None, list[str], str
]:
    """Region, role, external ID, repositories and deletion policy of a spec that may be invalid.

    A resource whose spec became invalid must still be deletable: its statements were
    written under the last valid spec, whose repositories are in status.
    """
    def text(key: str) -> str | None:
        value = (spec or {}).get(key)
        return value if isinstance(value, str) else None

    pattern = re.compile(ECR_REPOSITORY_PATTERN)
    repos: list[str] = []
    listed = (spec or {}).get("repositories")
    candidates = [*(listed if isinstance(listed, list) else []),
                  *(row.get("name") for row in previous_status.get("repositories") or [])]
    for repo in candidates:
        if isinstance(repo, str) and pattern.match(repo) and repo not in repos:
            repos.append(repo)
    return text("region"), text("roleArn"), text("externalId"), repos, text("deletionPolicy") or DeletionPolicy.Delete.value


def delete(
    namespace: str,
    name: str,
    generation: int,
    spec: dict[str, Any],
    previous_status: dict[str, Any],
    *,
    clients_for: ClientsFor,
    cluster_id: str,
    now: Callable[[], dt.datetime],
    actor: Any = None,
    tenancy_policy: tenancy.Policy = tenancy.SHIPPED,
) -> ReconcileResult:
    """Remove this resource's statements (or leave them under deletionPolicy Retain).

    Repositories, creation templates and the registry policy: only our statements go
    (a template the operator created goes with them when nothing else is in it).
    Repositories under the prefixes are listed again: one created since the last pass
    (by a cache rule, from the template) carries our statements too.
    ``retry_after`` is None only when nothing of ours is left (or Retain): then the
    handler may drop the finalizer.
    """
    stamp = rfc3339(now())
    previous_status = dict(previous_status or {})
    region, role_arn, external_id, repos, deletion_policy = _lenient_target(spec, previous_status)
    prefixes = lenient_prefixes(spec, previous_status)
    resolved, _ = validate_cross_account(namespace, name, spec, cluster_id=cluster_id)
    # The guard runs before any AWS call whether or not the spec is valid: an invalid one is
    # judged on what its delete would act on (the lenient target), or a tenant could write an
    # invalid spec naming another team's repositories or role and delete to reach them.
    named = (tenancy.cross_account_values(resolved) if resolved is not None
             else tenancy.cross_account_target_values(region, role_arn, repos, prefixes))
    refused = tenancy.violations(tenancy_policy, namespace, named)
    if refused:
        return not_permitted_delete(previous_status, refused)
    if resolved is not None:
        model = resolved.spec
        region, role_arn, external_id = model.region, model.roleArn, model.externalId
        deletion_policy = model.deletionPolicy

    status = dict(previous_status)
    conditions = set_condition(
        status.get("conditions") or [], reasons.READY, False, reasons.DELETING, MSG_DELETING,
        generation=generation, now=stamp,
    )
    if deletion_policy == DeletionPolicy.Retain.value:
        status["conditions"] = conditions
        message = MSG_RETAINED.format(repositories=", ".join(repos + prefixes) or "(none)")
        return ReconcileResult(status=status, events=[normal(reasons.DELETING, message)])

    clients = clients_for(region, role_arn, external_id)
    ecr = clients("ecr")
    prefix = policies.sid_prefix(cluster_id, namespace, name)
    old_prefix = policies.legacy_sid_prefix(namespace, name)
    scope = (region or clients.region, role_arn)
    rows: list[dict[str, Any]] = []
    failures: list[StepError] = []
    removed: list[str] = []
    if prefixes:
        try:
            found, _ = policies.repositories_under(ecr, prefixes)
            repos += [repo for repo in found if repo not in repos]
        except loop.AWS_ERRORS as error:
            failures.append(loop.failure(error, STATEMENTS.service, MSG_LISTING))
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    for repo in repos:
        # Our legacy mark counts only where status records the repository.
        done = _remove_from_repository(ecr, repo, prefix, scope, actor,
                                       old_prefix=old_prefix if repo in previous_rows else None)
        if done is not None and done.error is not None:
            failures.append(done.error)
            rows.append(status_row(repo, (previous_rows.get(repo) or {}).get("arn"), ERROR, done.error.message))
        elif done is not None and done.decision is loop.Decision.DELETE:
            removed.append(repo)
    template_rows: list[dict[str, Any]] = []
    documents: list[str] = []
    recorded_templates = {row.get("name") for row in previous_status.get("templates") or []}
    for template in prefixes:
        gone = _remove_document(ecr, TEMPLATE_STATEMENTS, template, prefix, scope, actor,
                                old_prefix=old_prefix if template in recorded_templates else None)
        if gone.error is not None:
            failures.append(gone.error)
            template_rows.append(status_row(template, None, ERROR, gone.error.message))
        elif gone.decision is loop.Decision.DELETE:
            documents.append(TEMPLATE_STATEMENTS.where.label(template))
    registry_row = None
    registry = previous_status.get("registryPolicy") or {}
    if prefixes or registry:
        target = registry.get("name") or REGISTRY_TARGET
        gone = _remove_document(ecr, REGISTRY_STATEMENTS, target, prefix, scope, actor,
                                old_prefix=old_prefix if registry else None)
        if gone.error is not None:
            failures.append(gone.error)
            registry_row = status_row(target, None, ERROR, gone.error.message)
        elif gone.decision is loop.Decision.DELETE:
            documents.append("the registry policy")

    events: list[Event] = []
    if removed:
        events.append(normal(reasons.DELETING, MSG_REMOVED.format(repositories=", ".join(removed))))
    if documents:
        events.append(normal(reasons.DELETING, MSG_REMOVED_DOCUMENTS.format(documents=", ".join(documents))))
    status["repositories"] = rows
    if template_rows or status.get("templates"):
        status["templates"] = template_rows
    if registry_row or status.get("registryPolicy"):
        status["registryPolicy"] = registry_row
    retry_after = None
    if failures:
        message = bounded("; ".join(f.message for f in failures))
        conditions = set_condition(
            conditions, reasons.READY, False, failures[0].reason, message, generation=generation, now=stamp
        )
        events.append(warning(failures[0].reason, message))
        retry_after = min(retry_delay(f) or DELETE_TERMINAL_RETRY for f in failures)
    status["conditions"] = conditions
    return ReconcileResult(
        status=status,
        events=events,
        retry_after=retry_after,
        retry_reason=failures[0].message if failures else "",
        outcome="retry" if failures else "success",
    )
