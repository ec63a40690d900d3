"""Reconcile one CrossAccountRepoAccess: its statements in ECR repository policies.

Called by ``controller.handlers`` (create / update / resume and the drift timer
call ``reconcile()``; the delete handler calls ``delete()``). Level-triggered:
every call observes each repository's policy, compares the statements this
resource owns (by Sid prefix, by meaning) with the spec, writes only what
differs, and returns a ``ReconcileResult`` (status, Events, retry). Knows
nothing about kopf; all AWS calls go through ``controller.aws.repository_policies``.

Decisions that matter to users:

- An invalid spec makes no AWS call at all: Ready=False with the problem's reason.
- A no-op resync (and a drift check) makes zero ECR writes and one read per
  repository (GetRepositoryPolicy).
- ``driftPolicy: Report``: when this generation was already synced and the owned
  statements changed in AWS, the drift is recorded and reported, never written.
- A repository that does not exist is a missing dependency: retried.
- ECR's "Invalid repository policy provided" / "Principal not found" right after
  a role was created is IAM eventual consistency: retried with backoff for
  ``PRINCIPAL_PROPAGATION_WINDOW`` (first seen in ``repositories[].rejectedSince``),
  then Ready=False ``PrincipalRejected`` naming the principals.
- A repository dropped from ``spec.repositories`` loses our statements (the
  resource no longer asks for them there).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from controller.api import reasons
from controller.api.models import ECR_REPOSITORY_PATTERN, DeletionPolicy, DriftPolicy
from controller.api.validation import Problem
from controller.api.validation_xrepo import validate_cross_account
from controller.aws import repository_policies as policies
from controller.aws.clients import Clients
from controller.aws.errors import Classified, ErrorClass, classify
from controller.reconcile.conditions import get_condition, set_condition
from controller.reconcile.result import MAX_DRIFT_RECORDS, Event, ReconcileResult, normal, warning

ClientsFor = Callable[[str | None, str | None, str | None], Clients]

DRIFT_OBJECT = "repositoryPolicy/{repository}"
# A repository row whose message starts so was synced for this generation and then drifted.
DRIFT_REPORTED_PREFIX = "owned statements changed in AWS"
PRINCIPAL_PROPAGATION_WINDOW = dt.timedelta(minutes=2)
PRINCIPAL_RETRY_MIN = 5.0
PRINCIPAL_RETRY_MAX = 30.0
# After the window the principal is reported, but still retried slowly: a role created
# later must be picked up without a spec change (ACK issue 1844, stuck Terminal).
PRINCIPAL_REJECTED_RETRY = 300.0
RETRY_AFTER = {
    ErrorClass.THROTTLED: 10.0,
    ErrorClass.TRANSIENT: 15.0,
    ErrorClass.DEPENDENCY: 30.0,
    ErrorClass.NOT_FOUND: 30.0,
    # Terminal until IAM changes, but IAM changes are not events we can watch: retry slowly.
    ErrorClass.ACCESS_DENIED: 300.0,
}
# A finalizer must not be dropped while our statements remain, so every delete error is
# retried; terminal ones slowly (the user can switch to deletionPolicy Retain to let go).
DELETE_TERMINAL_RETRY = 300.0
MAX_MESSAGE = 1000

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
MSG_AWS_ERROR = "repository {repository}: {error}"
MSG_SYNCED = "{count} repository policies carry this resource's {statements} statement(s)"
MSG_DRIFT_REPORTED = DRIFT_REPORTED_PREFIX + " (driftPolicy Report, not repaired): {fields}"
MSG_DRIFT_REMEDIATED = "owned statements changed in AWS and were restored: {fields}"
MSG_NO_DRIFT = "owned statements match the spec"
DRIFT_DETECTED_EVENT = "DriftDetected"
MSG_DRIFT_DETECTED = "changed outside regaccess: {fields}"
MSG_UPDATED = "updated the policy of repositories {repositories}"
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


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    retry_after: float | None  # None: terminal until the spec or AWS changes


@dataclass
class RepoOutcome:
    row: dict[str, Any] | None  # None: the repository leaves status (cleaned up)
    writes: int = 0
    observed: bool = False  # the owned statements could be compared
    drift: list[str] = field(default_factory=list)  # Statement[<sid>] fields
    remediated: bool = False
    failure: Failure | None = None


def _failure_from(error: BaseException, repository: str) -> Failure:
    classified: Classified = classify(error, "ecr")
    return Failure(
        classified.reason,
        MSG_AWS_ERROR.format(repository=repository, error=classified.describe()),
        RETRY_AFTER.get(classified.error_class),
    )


def _row(repository: str, arn: str | None, synced: bool, message: str = "", rejected_since: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": repository, "arn": arn, "synced": synced, "message": message}
    if rejected_since:
        row["rejectedSince"] = rejected_since
    return row


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


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
    actor: Any = None


def _sync_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    with _repository_lock(ctx.region, ctx.role_arn, repository):
        return _sync_repository_locked(ctx, repository, previous)


def _sync_repository_locked(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    try:
        observation = policies.observe(ctx.ecr, repository, ctx.prefix, ctx.desired, known_arn=previous.get("arn"))
    except (ClientError, BotoCoreError, OSError) as error:
        failure = _failure_from(error, repository)
        return RepoOutcome(_row(repository, previous.get("arn"), False, failure.message), failure=failure)
    if not observation.exists:
        # The repository may be created later (by Terraform, another controller): retry.
        message = MSG_REPOSITORY_MISSING.format(repository=repository, region=ctx.region)
        failure = Failure(reasons.DEPENDENCY_MISSING, message, RETRY_AFTER[ErrorClass.DEPENDENCY])
        return RepoOutcome(_row(repository, None, False, message), failure=failure)

    arn = observation.observed.get("arn")
    if observation.up_to_date:
        return RepoOutcome(_row(repository, arn, True), observed=True)

    differences = list(observation.differences)
    # Drift is a change in AWS to statements we already synced for this generation;
    # differences after a spec change are just the change being applied.
    applied = previous.get("synced") is True or str(previous.get("message", "")).startswith(DRIFT_REPORTED_PREFIX)
    drifted = ctx.same_generation and applied
    if drifted and ctx.report_only:
        message = MSG_DRIFT_REPORTED.format(fields=", ".join(differences))
        return RepoOutcome(_row(repository, arn, False, _bounded(message)), observed=True, drift=differences)

    merged = policies.merge(observation.observed.get("policy"), ctx.prefix, ctx.desired)
    too_large = policies.oversize_message(repository, merged, ctx.prefix, ctx.desired)
    if too_large:
        failure = Failure(reasons.REPOSITORY_POLICY_TOO_LARGE, too_large, None)
        return RepoOutcome(_row(repository, arn, False, too_large), observed=True, failure=failure)

    try:
        policies.put(ctx.ecr, repository, merged)
    except (ClientError, BotoCoreError, OSError) as error:
        if policies.is_principal_rejection(error):
            return _principal_rejected(ctx, repository, arn, previous, error)
        if policies.is_repository_missing(error):
            message = MSG_REPOSITORY_MISSING.format(repository=repository, region=ctx.region)
            failure = Failure(reasons.DEPENDENCY_MISSING, message, RETRY_AFTER[ErrorClass.DEPENDENCY])
            return RepoOutcome(_row(repository, arn, False, message), writes=1, failure=failure)
        failure = _failure_from(error, repository)
        return RepoOutcome(_row(repository, arn, False, failure.message), writes=1, failure=failure)
    return RepoOutcome(
        _row(repository, arn, True),
        writes=1,
        observed=True,
        drift=differences if drifted else [],
        remediated=drifted,
    )


def _principal_rejected(
    ctx: _Context, repository: str, arn: str | None, previous: dict[str, Any], error: BaseException
) -> RepoOutcome:
    # The clock restarts with a new generation: its principals may be newly created too.
    first_seen = parse_rfc3339(previous.get("rejectedSince")) if ctx.same_generation else None
    decision = principal_rejection_decision(first_seen, ctx.now)
    since = rfc3339(decision.first_seen)
    # Account roots and organizations exist; roles are what IAM may not know yet.
    named = policies.role_principals(ctx.desired) or policies.all_principals(ctx.desired)
    principals = ", ".join(named)
    if decision.within_window:
        message = MSG_PRINCIPAL_PENDING.format(principals=principals, repository=repository, since=since)
        failure = Failure(reasons.DEPENDENCY_MISSING, _bounded(message), decision.retry_after)
    else:
        message = MSG_PRINCIPAL_REJECTED.format(
            repository=repository,
            principals=principals,
            window=int(PRINCIPAL_PROPAGATION_WINDOW.total_seconds()),
            since=since,
            aws=classify(error, "ecr").describe(),
        )
        failure = Failure(reasons.PRINCIPAL_REJECTED, _bounded(message), decision.retry_after)
    return RepoOutcome(
        _row(repository, arn, False, failure.message, rejected_since=since), writes=1, observed=True, failure=failure
    )


def _remove_from_repository(
    ecr: Any, repository: str, prefix: str, lock_scope: tuple[str | None, str | None]
) -> tuple[int, bool]:
    """Take our statements out of one repository policy: (writes, changed). Raises AWS errors."""
    with _repository_lock(*lock_scope, repository):
        return _remove_locked(ecr, repository, prefix)


def _remove_locked(ecr: Any, repository: str, prefix: str) -> tuple[int, bool]:
    observation = policies.observe(ecr, repository, prefix, [])
    if not observation.exists or observation.up_to_date:
        return 0, False  # no repository, or nothing of ours in its policy
    rest = policies.removal(observation.observed.get("policy"), prefix)
    if rest is None:
        # Ours were the only statements: delete the policy rather than write an empty one.
        policies.delete_policy(ecr, repository)
    else:
        policies.put(ecr, repository, rest)
    return 1, True


def _cleanup_repository(ctx: _Context, repository: str, previous: dict[str, Any]) -> RepoOutcome:
    try:
        writes, _ = _remove_from_repository(ctx.ecr, repository, ctx.prefix, (ctx.region, ctx.role_arn))
    except (ClientError, BotoCoreError, OSError) as error:
        failure = _failure_from(error, repository)
        return RepoOutcome(_row(repository, previous.get("arn"), False, failure.message), failure=failure)
    return RepoOutcome(None, writes=writes, observed=True)


# --------------------------------------------------------------------------- status assembly


def _drift_records(
    previous: list[dict[str, Any]], found: list[tuple[str, str]], *, remediated: bool, now: str
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Append new drift records, bounded; returns (records, the pairs that are new)."""
    records = [dict(r) for r in previous]
    new: list[tuple[str, str]] = []
    for obj, fld in found:
        last = next((r for r in reversed(records) if r.get("object") == obj and r.get("field") == fld), None)
        # Under Report the same drift is seen on every resync: record it once, so the
        # status (and its patch) does not change on every pass.
        if not remediated and last is not None and not last.get("remediated"):
            continue
        records.append({"object": obj, "field": fld, "time": now, "remediated": remediated})
        new.append((obj, fld))
    return records[-MAX_DRIFT_RECORDS:], new


def _invalid(previous_status: dict[str, Any], generation: int, problems: list, now: str,
             drift_check: bool = False) -> ReconcileResult:
    message = _bounded("; ".join(str(p) for p in problems))
    reason = problems[0].reason
    status = dict(previous_status)
    conditions = status.get("conditions") or []
    previous_ready = get_condition(conditions, reasons.READY) or {}
    # The same problem found again (a drift check of a still-invalid spec) posts no new Event.
    repeated = previous_ready.get("reason") == reason and previous_ready.get("message") == message
    conditions = set_condition(conditions, reasons.READY, False, reason, message, generation=generation, now=now)
    conditions = set_condition(conditions, reasons.SYNCED, False, reason, message, generation=generation, now=now)
    status.update(observedGeneration=generation, conditions=conditions)
    status.setdefault("repositories", [])
    status.setdefault("drift", [])
    if drift_check:
        status["lastDriftCheckTime"] = now
    return ReconcileResult(status=status, events=[] if repeated else [warning(reason, message)], outcome="invalid")


# --------------------------------------------------------------------------- entry points


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
        actor=actor,
    )
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    outcomes = [_sync_repository(ctx, repo, previous_rows.get(repo) or {}) for repo in model.repositories]
    for repo, row in previous_rows.items():
        if repo not in model.repositories and isinstance(repo, str):
            outcomes.append(_cleanup_repository(ctx, repo, row))
    return _assemble(previous_status, generation, outcomes, ctx, stamp, drift_check)


def _assemble(
    previous_status: dict[str, Any],
    generation: int,
    outcomes: list[RepoOutcome],
    ctx: _Context,
    stamp: str,
    drift_check: bool,
) -> ReconcileResult:
    failures = [o.failure for o in outcomes if o.failure is not None]
    rows = [o.row for o in outcomes if o.row is not None]
    writes = sum(o.writes for o in outcomes)
    found = [(DRIFT_OBJECT.format(repository=o.row["name"]), f) for o in outcomes if o.row for f in o.drift]
    remediated = [pair for o in outcomes if o.remediated and o.row for pair in
                  [(DRIFT_OBJECT.format(repository=o.row["name"]), f) for f in o.drift]]
    reported = [pair for pair in found if pair not in remediated]

    drift, new_reported = _drift_records(previous_status.get("drift") or [], reported, remediated=False, now=stamp)
    drift, _ = _drift_records(drift, remediated, remediated=True, now=stamp)

    events: list[Event] = []
    conditions = previous_status.get("conditions") or []
    if failures:
        first = failures[0]
        message = _bounded("; ".join(f.message for f in failures))
        ready = synced = (False, first.reason, message)
    elif reported:
        message = _bounded(MSG_DRIFT_REPORTED.format(fields=", ".join(f"{o} {f}" for o, f in reported)))
        ready = synced = (False, reasons.DRIFT_REPORTED, message)
    else:
        statements = len(ctx.desired)
        message = MSG_SYNCED.format(count=len(rows), statements=statements)
        ready = synced = (True, reasons.RECONCILED, message)
    conditions = set_condition(conditions, reasons.READY, *ready, generation=generation, now=stamp)
    conditions = set_condition(conditions, reasons.SYNCED, *synced, generation=generation, now=stamp)
    # Drifted is only judged when every repository's statements could be compared.
    if all(o.observed for o in outcomes):
        if reported:
            drifted = (True, reasons.DRIFT_REPORTED, _bounded(MSG_DRIFT_REPORTED.format(
                fields=", ".join(f"{o} {f}" for o, f in reported))))
        elif remediated:
            drifted = (False, reasons.DRIFT_REMEDIATED, _bounded(MSG_DRIFT_REMEDIATED.format(
                fields=", ".join(f"{o} {f}" for o, f in remediated))))
        else:
            previous = get_condition(conditions, reasons.DRIFTED)
            # Keep "DriftRemediated" until something changes, so a quiet resync writes nothing.
            if previous and previous.get("status") == "False" and previous.get("reason") == reasons.DRIFT_REMEDIATED:
                drifted = (False, reasons.DRIFT_REMEDIATED, previous.get("message", ""))
            else:
                drifted = (False, reasons.NO_DRIFT, MSG_NO_DRIFT)
        conditions = set_condition(conditions, reasons.DRIFTED, *drifted, generation=generation, now=stamp)

    announced = [*remediated, *new_reported]
    if announced:
        # The Event every kind posts for drift: object and field, never a value.
        drift_event = warning if new_reported else normal
        events.append(drift_event(DRIFT_DETECTED_EVENT, _bounded(MSG_DRIFT_DETECTED.format(
            fields=", ".join(sorted({f"{o}.{f}" for o, f in announced}))))))
    if remediated:
        events.append(warning(reasons.DRIFT_REMEDIATED, _bounded(MSG_DRIFT_REMEDIATED.format(
            fields=", ".join(f"{o} {f}" for o, f in remediated)))))
    if new_reported:
        events.append(warning(reasons.DRIFT_REPORTED, _bounded(MSG_DRIFT_REPORTED.format(
            fields=", ".join(f"{o} {f}" for o, f in new_reported)))))
    written = [o.row["name"] for o in outcomes if o.row and o.writes and o.failure is None and not o.remediated]
    cleaned = [o for o in outcomes if o.row is None and o.writes]
    if written:
        events.append(normal(reasons.RECONCILED, MSG_UPDATED.format(repositories=", ".join(written))))
    if cleaned:
        events.append(normal(reasons.RECONCILED, "removed statements from repositories dropped from the spec"))
    if failures:
        events.append(warning(failures[0].reason, _bounded("; ".join(f.message for f in failures))))

    status = dict(previous_status)
    all_synced = not failures and not reported
    first_sync = previous_status.get("observedGeneration") != generation or not previous_status.get("lastSyncTime")
    last_sync = stamp if all_synced and (writes or first_sync) else previous_status.get("lastSyncTime")
    status.update(
        observedGeneration=generation,
        conditions=conditions,
        repositories=rows,
        lastSyncTime=last_sync,
        lastDriftCheckTime=stamp if drift_check else previous_status.get("lastDriftCheckTime"),
        drift=drift,
    )
    retries = [f.retry_after for f in failures if f.retry_after is not None]
    retry_after = min(retries) if retries else None
    if failures:
        outcome = "retry" if retry_after is not None else "error"
        retry_reason = failures[0].reason if retry_after is not None else ""
    else:
        outcome, retry_reason = "success", ""
    return ReconcileResult(
        status=status,
        events=events,
        retry_after=retry_after,
        retry_reason=retry_reason,
        ready=all_synced,
        drift_found={"repositoryPolicy": len(found)} if found else {},
        drift_remediated={"repositoryPolicy": len(remediated)} if remediated else {},
        outcome=outcome,
    )


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
    failures: list[Failure] = []
    removed: list[str] = []
    previous_rows = {row.get("name"): row for row in previous_status.get("repositories") or []}
    for repo in repos:
        try:
            _, changed = _remove_from_repository(ecr, repo, prefix, (region or clients.region, role_arn))
        except (ClientError, BotoCoreError, OSError) as error:
            failure = _failure_from(error, repo)
            failures.append(Failure(failure.reason, failure.message, failure.retry_after or DELETE_TERMINAL_RETRY))
            rows.append(_row(repo, (previous_rows.get(repo) or {}).get("arn"), False, failure.message))
            continue
        if changed:
            removed.append(repo)

    events: list[Event] = []
    if removed:
        events.append(normal(reasons.DELETING, MSG_REMOVED.format(repositories=", ".join(removed))))
    status["repositories"] = rows
    if failures:
        message = _bounded("; ".join(f.message for f in failures))
        conditions = set_condition(
            conditions, reasons.READY, False, failures[0].reason, message, generation=generation, now=stamp
        )
        events.append(warning(failures[0].reason, message))
    status["conditions"] = conditions
    retry_after = min(f.retry_after for f in failures if f.retry_after is not None) if failures else None
    return ReconcileResult(
        status=status,
        events=events,
        retry_after=retry_after,
        retry_reason=failures[0].reason if failures else "",
        outcome="retry" if failures else "success",
    )
