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
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from controller.api import reasons
from controller.api.models import ECR_REPOSITORY_PATTERN, DeletionPolicy, DriftPolicy
from controller.api.validation import Problem
from controller.api.validation_xrepo import validate_cross_account
from controller.aws import repository_policies as policies
from controller.aws.clients import Clients
from controller.aws.repository_policies import STATEMENTS, DesiredStatements, PrincipalRejected, RepositoryMissing
from controller.reconcile import loop
from controller.reconcile.conditions import set_condition
from controller.reconcile.outcome import (
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
    same_generation: bool
    report_only: bool
    now: dt.datetime
    previous_status: dict[str, Any]
    actor: Any = None

    def managed_before(self, repository: str, previous: dict[str, Any]) -> bool:
        """Were our statements there as declared for this generation (so a difference is drift)?

        A row left unsynced by a reported drift that is still open is that drift, not
        unfinished work; differences after a spec change are the change being applied.
        """
        reported = any(o == DRIFT_OBJECT.format(repository=repository) for o, _ in open_drift(self.previous_status))
        return self.same_generation and (previous.get("synced") is True or reported)


def _sync_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    with _repository_lock(ctx.region, ctx.role_arn, repository):
        return _sync_repository_locked(ctx, repository, previous)


def _sync_repository_locked(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    desired = DesiredStatements(repository, ctx.prefix, ctx.desired, known_arn=previous.get("arn"))
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
    if done.error is not None:
        return _failed(repository, arn, done.error, writes=1 if decision in loop.WRITES else 0, observed=True)
    drift = list(done.drifted)
    if done.decision is loop.Decision.REPORT:
        message = bounded(MSG_ROW_DRIFT_REPORTED.format(fields=", ".join(drift)))
        return RepoOutcome(status_row(repository, arn, PENDING, message), observed=True, drift=drift)
    # A write whose answer was lost and that observing again showed done is still a write.
    writes = done.calls or (1 if done.recovered else 0)
    return RepoOutcome(status_row(repository, arn, SYNCED), writes=writes, observed=True,
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


def _remove_from_repository(ecr: Any, repository: str, prefix: str, lock_scope: tuple[str | None, str | None],
                            actor: Any) -> loop.ObjectResult | None:
    """Take our statements out of one repository policy; None when the repository is gone."""
    with _repository_lock(*lock_scope, repository):
        try:
            return loop.delete_object(STATEMENTS, ecr, DesiredStatements(repository, prefix), actor=actor or loop.AWS_ACTOR)
        except RepositoryMissing:
            return None  # no repository: nothing of ours is left in it


def _cleanup_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    done = _remove_from_repository(ctx.ecr, repository, ctx.prefix, (ctx.region, ctx.role_arn), ctx.actor)
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
) -> ReconcileResult:
    """Make the repository policies carry exactly this resource's statements.

    ``actor`` performs the writes (controller.reconcile.loop; None: AWS)."""
    moment = now()
    stamp = rfc3339(moment)
    previous_status = dict(previous_status or {})
    resolved, problems = validate_cross_account(namespace, name, spec, cluster_id=cluster_id)
    if resolved is None:
        return _invalid(previous_status, generation, problems, stamp, drift_check)
    model = resolved.spec

    clients = clients_for(model.region, model.roleArn, model.externalId)
    prefix = policies.sid_prefix(namespace, name)
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
        desired=desired,
        same_generation=previous_status.get("observedGeneration") == generation,
        report_only=model.driftPolicy == DriftPolicy.Report.value,
        now=moment,
        previous_status=previous_status,
        actor=actor,
    )
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    outcomes = [_sync_repository(ctx, repo, previous_rows.get(repo) or {}) for repo in model.repositories]
    for repo, row in previous_rows.items():
        if repo not in model.repositories and isinstance(repo, str):
            outcomes.append(_cleanup_repository(ctx, repo, row))

    rows = [o.row for o in outcomes if o.row is not None]
    events: list[Event] = []
    written = [o.row["name"] for o in outcomes if o.row and o.writes and o.error is None and not o.remediated]
    if written:
        events.append(normal(reasons.RECONCILED, MSG_UPDATED.format(repositories=", ".join(written))))
    if any(o.row is None and o.writes for o in outcomes):
        events.append(normal(reasons.RECONCILED, MSG_CLEANED))
    status = {**previous_status, "repositories": rows}
    status.setdefault("drift", [])
    return assemble(previous_status, status, Pass(
        generation=generation,
        now=stamp,
        failures=[o.error for o in outcomes if o.error is not None],
        drift=[(DRIFT_OBJECT.format(repository=o.row["name"]), f) for o in outcomes if o.row for f in o.drift],
        remediated=any(o.remediated for o in outcomes),
        judged=all(o.observed for o in outcomes),
        events=events,
        wrote=any(o.writes for o in outcomes),
        first_sync=not ctx.same_generation,
        drift_check=drift_check,
        ready_message=MSG_SYNCED.format(count=len(rows), statements=len(desired)),
        # Rows carry each repository's progress (and rejectedSince): the generation is seen.
        generation_always=True,
    ))


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
) -> ReconcileResult:
    """Remove this resource's statements (or leave them under deletionPolicy Retain).

    ``retry_after`` is None only when nothing of ours is left (or Retain): then the
    handler may drop the finalizer.
    """
    stamp = rfc3339(now())
    previous_status = dict(previous_status or {})
    region, role_arn, external_id, repos, deletion_policy = _lenient_target(spec, previous_status)
    resolved, _ = validate_cross_account(namespace, name, spec, cluster_id=cluster_id)
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
        message = MSG_RETAINED.format(repositories=", ".join(repos) or "(none)")
        return ReconcileResult(status=status, events=[normal(reasons.DELETING, message)])

    clients = clients_for(region, role_arn, external_id)
    ecr = clients("ecr")
    prefix = policies.sid_prefix(namespace, name)
    rows: list[dict[str, Any]] = []
    failures: list[StepError] = []
    removed: list[str] = []
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    for repo in repos:
        done = _remove_from_repository(ecr, repo, prefix, (region or clients.region, role_arn), actor)
        if done is not None and done.error is not None:
            failures.append(done.error)
            rows.append(status_row(repo, (previous_rows.get(repo) or {}).get("arn"), ERROR, done.error.message))
        elif done is not None and done.decision is loop.Decision.DELETE:
            removed.append(repo)

    events: list[Event] = []
    if removed:
        events.append(normal(reasons.DELETING, MSG_REMOVED.format(repositories=", ".join(removed))))
    status["repositories"] = rows
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
