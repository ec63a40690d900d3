"""RegistryCredential step: the ECR pull-through cache rule that uses our secret.

``precheck(ctx)``, ``sync(ctx)`` and ``delete(ctx)`` follow
``controller.reconcile.steps``; the RegistryCredential reconciler runs the
pre-check before the secret step and ``sync`` after it (it needs
``ctx.secret_arn``). Every rule goes through ``controller.reconcile.loop`` with
the adapter ``controller.aws.pull_through_cache.RULE``, which decides:

- absent -> create (AlreadyExists: observe again, once);
- ours (its credential is our secret, or our status records the rule) with a
  different credential or role (customRoleArn, upstreamRoleArn) ->
  UpdatePullThroughCacheRule; a different upstream or upstreamRepositoryPrefix, or a
  role to clear -> delete + create (ECR cannot update those);
- unmarked (its credential is nobody's secret) -> OwnershipConflict, no write,
  unless ``spec.adoptExisting``; another owner's (its credential secret carries
  another owner's tag) -> OwnershipConflict always: never adopted, updated or
  deleted;
- a rule we had synced that was deleted or changed by hand is drift: repaired
  under driftPolicy Remediate, else only reported.

This module keeps only what is particular to rules: the pre-check (a prefix
taken by someone else stops everything before the first write), moving the rule
when the prefix changes or ``pullThroughCache`` is removed (the old rule, ours,
is deleted unless ``deletionPolicy: Retain``), the 50-rule limit as its own
reason, and the status row. The rule ARN does not exist in ECR's API, so the
status.managed row carries the prefix as its name and no ARN.
"""

from __future__ import annotations

from typing import Any

from controller.api import reasons
from controller.api.models import DeletionPolicy
from controller.aws import pull_through_cache as rules
from controller.aws.errors import ErrorClass, classify
from controller.aws.protocol import Owner
from controller.reconcile import loop
from controller.reconcile.loop import AWS_ERRORS, WRITES, Decision
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome

STATUS_KEY = "pullThroughCacheRule"
STATE_SYNCED = "Synced"
STATE_PENDING = "Pending"
STATE_CONFLICT = "Conflict"
STATE_ERROR = "Error"
STATE_RETAINED = "Retained"
DRIFT_EXISTS = "exists"  # the drift field when the whole rule was deleted by hand

MSG_NO_SECRET = "the secret step has not produced a secret ARN yet"
MSG_LIMIT = (
    "the registry already has the maximum of {limit} pull-through cache rules; delete an unused rule "
    "or use another account or Region"
)
MSG_CREATED = "created pull-through cache rule {prefix!r} for {url}"
MSG_UPDATED = "updated {fields} of pull-through cache rule {prefix!r}"
MSG_RECREATED = "recreated pull-through cache rule {prefix!r} for {url} (ECR cannot change a rule's upstream)"
MSG_ADOPTED = "adopted the existing pull-through cache rule {prefix!r}"
MSG_DELETED = "deleted pull-through cache rule {prefix!r}"
MSG_RETAINED = "kept pull-through cache rule {prefix!r} (deletionPolicy Retain)"
MSG_DRIFT_REPAIRED = "repaired pull-through cache rule {prefix!r}: {fields} changed outside the operator"
MSG_DRIFT_REPORTED = (
    "pull-through cache rule {prefix!r}: {fields} changed outside the operator; driftPolicy Report leaves it"
)


def _object(prefix: str) -> str:
    return f"{STATUS_KEY}/{prefix}"


def _row(prefix: str, state: str, message: str = "") -> dict[str, Any]:
    return {"kind": rules.KIND, "name": prefix, "arn": None, "state": state, "message": message}


def _secret_arn(ctx: StepContext) -> str | None:
    return ctx.secret_arn or ctx.previous_status.get("secretArn")


def _previous(ctx: StepContext) -> dict[str, Any] | None:
    """status.pullThroughCacheRule, when the rule it names was last Synced."""
    previous = ctx.previous_status.get(STATUS_KEY)
    if not previous or not previous.get("ecrRepositoryPrefix"):
        return None
    row = ctx.previous_managed(rules.KIND).get(previous["ecrRepositoryPrefix"])
    if row is not None and row.get("state") != STATE_SYNCED:
        # A Pending row left by a reported drift is still that drift (driftPolicy Report).
        if not (row.get("state") == STATE_PENDING and ctx.reported_before(_object(previous["ecrRepositoryPrefix"]))):
            return None
    return previous


class _Witness:
    """Hands writes to the real actor and keeps the AWS error one raised: the loop turns it
    into a StepError, and the 50-rule limit deserves its own reason (see ``_limit``)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.records = getattr(actor, "records", False)
        self.error: BaseException | None = None

    def perform(self, kind: Any, client: Any, action: Any, desired: Any, observation: Any) -> Any:
        try:
            return self.actor.perform(kind, client, action, desired, observation)
        except AWS_ERRORS as error:
            self.error = error
            raise


def _limit(error: StepError, witness: _Witness) -> StepError:
    if witness.error is not None and classify(witness.error, rules.SERVICE).error_class is ErrorClass.LIMIT:
        # Terminal: only freeing a rule (or another registry) helps; retrying cannot.
        return StepError(reasons.PULL_THROUGH_CACHE_LIMIT, MSG_LIMIT.format(limit=rules.MAX_RULES_PER_REGISTRY),
                         retryable=False)
    # Throttling, 5xx and a not-yet-visible secret retry with backoff; the rest waits for a change.
    return error


def _fail(out: StepOutcome, error: StepError, prefix: str) -> StepOutcome:
    out.error = error
    state = STATE_CONFLICT if error.reason == reasons.OWNERSHIP_CONFLICT else STATE_ERROR
    out.managed.append(_row(prefix, state, error.message))
    return out


def _drift_fields(differences: tuple[str, ...], want: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """The differences that are hand changes: the field's desired value is what we last synced."""
    if previous is None or previous.get("ecrRepositoryPrefix") != want["ecrRepositoryPrefix"]:
        return []
    fields = []
    for name in differences:
        # upstreamRegistry is not in status; it follows the URL, so judge it by the URL.
        kept = rules.FIELD_UPSTREAM_URL if name == rules.FIELD_UPSTREAM_REGISTRY else name
        if previous.get(kept) == want.get(kept):
            fields.append(name)
    return fields


# --------------------------------------------------------------------------- sync


def _conflict(ctx: StepContext, want: rules.DesiredRule, observation: Any) -> StepError:
    message = loop.conflict_message(rules.RULE, want, observation, ctx.resolved.owner)
    return StepError(reasons.OWNERSHIP_CONFLICT, message, retryable=False)


def precheck(ctx: StepContext) -> StepOutcome:
    """Before the secret is written: is the prefix taken by a rule that is not ours?

    Runs only while status records no rule of ours (the first sync, or a conflict being
    resolved), so a prefix already taken costs one read (and one DescribeSecret of the
    rule's credential, for its owner) and no write at all; the steady state pays
    nothing. The secret's ARN is not known yet, so a rule counts as ours when its
    credential is the secret of our name. Another owner's rule stops here even with
    ``adoptExisting``; an unmarked one only without it.
    """
    out = StepOutcome()
    ptc = ctx.resolved.spec.pullThroughCache
    if ptc is None or _previous(ctx) is not None:
        return out
    want = rules.desired_rule(ctx.resolved, None, ctx.previous_status.get(STATUS_KEY))
    try:
        seen = rules.RULE.observe(ctx.clients, want)
    except AWS_ERRORS as error:
        return _fail(out, loop.failure(error, rules.SERVICE, rules.RULE.label(want)), want.prefix)
    decision = loop.decide(seen, adopt_existing=ctx.resolved.spec.adoptExisting, report_only=False,
                           managed_before=False)
    if decision is Decision.CONFLICT:
        return _fail(out, _conflict(ctx, want, seen), want.prefix)
    return out


def sync(ctx: StepContext) -> StepOutcome:
    """Keep the rule of spec.pullThroughCache; remove the one we left behind when it changed."""
    out = StepOutcome()
    ptc = ctx.resolved.spec.pullThroughCache
    new_prefix = ptc.ecrRepositoryPrefix if ptc else None
    recorded = ctx.previous_status.get(STATUS_KEY) or {}
    if recorded.get("ecrRepositoryPrefix") and recorded["ecrRepositoryPrefix"] != new_prefix:
        # The prefix changed or the cache was removed: the rule we recorded is ours to clean
        # up, whatever the last sync's outcome was (else it would be orphaned).
        if not _remove(ctx, out, recorded["ecrRepositoryPrefix"]):
            return out
        if ptc is None:
            out.status[STATUS_KEY] = None
    if ptc is None:
        return out
    secret_arn = ctx.secret_arn
    if not secret_arn:
        # Retry: the secret step runs first and fills ctx.secret_arn.
        return _fail(out, StepError(reasons.DEPENDENCY_MISSING, MSG_NO_SECRET, retryable=True), new_prefix)
    # Ownership trusts any status record of the prefix (we created that rule); drift is judged
    # only against a record whose last outcome was Synced.
    want = rules.desired_rule(ctx.resolved, secret_arn, ctx.previous_status.get(STATUS_KEY))
    return _sync_rule(ctx, out, want)


def _sync_rule(ctx: StepContext, out: StepOutcome, want: rules.DesiredRule) -> StepOutcome:
    prefix = want.prefix
    previous = _previous(ctx)
    try:
        seen = rules.RULE.observe(ctx.clients, want)
    except AWS_ERRORS as error:
        return _fail(out, loop.failure(error, rules.SERVICE, rules.RULE.label(want)), prefix)
    synced_before = previous is not None and previous.get("ecrRepositoryPrefix") == prefix
    if not seen.exists:
        drift = [DRIFT_EXISTS] if synced_before else []
    else:
        drift = _drift_fields(seen.fields, want.request, previous) if seen.owner is Owner.OURS else []
    # Drift only when every difference is a hand change: a difference that is our own
    # change (a new secret ARN, a spec change) is unfinished work, written under either policy.
    managed_before = synced_before and (not seen.exists or len(drift) == len(seen.differences))
    witness = _Witness(ctx.actor or loop.AWS_ACTOR)
    result = loop.sync_object(
        rules.RULE, ctx.clients, want, actor=witness, adopt_existing=ctx.resolved.spec.adoptExisting,
        report_only=not ctx.remediate, managed_before=managed_before, ours=ctx.resolved.owner, observation=seen,
    )
    if result.error is not None:
        if result.decision is Decision.CONFLICT:
            out.events.append(warning(reasons.OWNERSHIP_CONFLICT, result.error.message))
        return _fail(out, _limit(result.error, witness), prefix)
    if result.decision is Decision.REPORT:
        return _report(ctx, out, prefix, drift, previous)
    out.writes += result.calls
    if result.decision in WRITES:
        if drift:
            _repaired(ctx, out, prefix, drift)
        elif result.decision is Decision.CREATE:
            out.events.append(normal(reasons.RECONCILED, MSG_CREATED.format(prefix=prefix, url=want.request[rules.FIELD_UPSTREAM_URL])))
        elif result.decision is Decision.ADOPT:
            out.events.append(normal(reasons.RECONCILED, MSG_ADOPTED.format(prefix=prefix)))
        elif rules.needs_recreate(result.observation.fields, want.request):
            out.events.append(normal(reasons.RECONCILED, MSG_RECREATED.format(prefix=prefix, url=want.request[rules.FIELD_UPSTREAM_URL])))
        else:
            fields = [f for f in rules.UPDATABLE_FIELDS if f in result.observation.fields]
            out.events.append(normal(reasons.RECONCILED, MSG_UPDATED.format(prefix=prefix, fields=", ".join(fields))))
    return _synced(out, want.request)


def _synced(out: StepOutcome, want: dict[str, Any]) -> StepOutcome:
    out.status[STATUS_KEY] = rules.status_of(want)
    out.managed.append(_row(want["ecrRepositoryPrefix"], STATE_SYNCED))
    return out


def _repaired(ctx: StepContext, out: StepOutcome, prefix: str, fields: list[str]) -> None:
    out.drifted += [(_object(prefix), name) for name in fields]
    out.remediated = True
    out.events.append(normal(reasons.DRIFT_REMEDIATED, MSG_DRIFT_REPAIRED.format(prefix=prefix, fields=", ".join(fields))))


def _report(ctx: StepContext, out: StepOutcome, prefix: str, fields: list[str],
            previous: dict[str, Any] | None) -> StepOutcome:
    message = MSG_DRIFT_REPORTED.format(prefix=prefix, fields=", ".join(fields))
    out.drifted += [(_object(prefix), name) for name in fields]
    if not ctx.reported_before(_object(prefix)):  # once per drift, not at every check
        out.events.append(warning(reasons.DRIFT_REPORTED, message))
    # Status keeps what we last synced, so the next check still sees the drift.
    out.status[STATUS_KEY] = previous
    out.managed.append(_row(prefix, STATE_PENDING, message))
    return out


# --------------------------------------------------------------------------- delete


def _remove(ctx: StepContext, out: StepOutcome, prefix: str) -> bool:
    """Delete our rule for ``prefix`` unless Retain; False (with out.error set) on failure."""
    if ctx.resolved.spec.deletionPolicy == DeletionPolicy.Retain.value:
        out.managed.append(_row(prefix, STATE_RETAINED, MSG_RETAINED.format(prefix=prefix)))
        out.events.append(normal(reasons.DELETING, MSG_RETAINED.format(prefix=prefix)))
        return True
    want = rules.probe(prefix, secret_name=ctx.resolved.secret_name, owner=ctx.resolved.owner,
                       secret_arn=_secret_arn(ctx), recorded=ctx.previous_status.get(STATUS_KEY))
    result = loop.delete_object(rules.RULE, ctx.clients, want, actor=ctx.actor or loop.AWS_ACTOR)
    if result.error is not None:
        _fail(out, result.error, prefix)
        return False
    if result.decision is Decision.LEAVE and result.observation.exists:
        # Never delete a rule that is not ours, even on our own deletion.
        out.events.append(warning(reasons.OWNERSHIP_CONFLICT, loop.left_message(rules.RULE, want)))
    elif result.decision is Decision.DELETE:
        out.writes += result.calls
        out.events.append(normal(reasons.DELETING, MSG_DELETED.format(prefix=prefix)))
    return True


def delete(ctx: StepContext) -> StepOutcome:
    """Delete the rule with the resource (ours only), or keep it under deletionPolicy Retain."""
    out = StepOutcome()
    ptc = ctx.resolved.spec.pullThroughCache
    previous = ctx.previous_status.get(STATUS_KEY) or {}
    prefixes = [p for p in dict.fromkeys([previous.get("ecrRepositoryPrefix"),
                                          ptc.ecrRepositoryPrefix if ptc else None]) if p]
    for prefix in prefixes:  # at most two: the recorded one and the spec's
        if not _remove(ctx, out, prefix):
            return out
    if ctx.resolved.spec.deletionPolicy != DeletionPolicy.Retain.value:
        out.status[STATUS_KEY] = None
    return out
