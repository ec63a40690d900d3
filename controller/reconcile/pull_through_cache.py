"""RegistryCredential step: the ECR pull-through cache rule that uses our secret.

``sync(ctx)`` and ``delete(ctx)`` follow ``controller.reconcile.steps``; the
RegistryCredential reconciler runs this step after the secret step (it needs
``ctx.secret_arn``). Decisions come from the pure functions in
``controller.aws.pull_through_cache``; this module only sequences the calls:

- absent -> create (AlreadyExists: observe again, once);
- a rule that is not ours (another credential, not recorded in our status) ->
  OwnershipConflict, no write, unless ``spec.adoptExisting``;
- a different credential -> UpdatePullThroughCacheRule; a different upstream ->
  delete + create (ECR cannot update it);
- a rule we had synced that was deleted or changed by hand is drift: repaired
  when ``ctx.remediate``, else only reported;
- a prefix that changed, or ``pullThroughCache`` removed from the spec: the old
  rule (ours) is deleted, unless ``deletionPolicy: Retain``.

The rule ARN does not exist in ECR's API, so the status.managed row carries the
prefix as its name and no ARN.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.api import reasons
from controller.api.models import DeletionPolicy
from controller.aws import pull_through_cache as rules
from controller.aws.errors import ErrorClass, classify
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
MSG_CONFLICT = (
    "an ECR pull-through cache rule for prefix {prefix!r} already exists and does not use this "
    "resource's secret; set spec.adoptExisting: true to take it over, or choose another "
    "spec.pullThroughCache.ecrRepositoryPrefix"
)
MSG_LIMIT = (
    "the registry already has the maximum of {limit} pull-through cache rules; delete an unused rule "
    "or use another account or Region"
)
MSG_AWS = "{action} pull-through cache rule {prefix!r}: {detail}"
MSG_CREATED = "created pull-through cache rule {prefix!r} for {url}"
MSG_UPDATED = "updated the credential of pull-through cache rule {prefix!r}"
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


def _failure(error: BaseException, action: str, prefix: str) -> StepError:
    classified = classify(error, rules.SERVICE)
    if classified.error_class is ErrorClass.LIMIT:
        # Terminal: only freeing a rule (or another registry) helps; retrying cannot.
        return StepError(reasons.PULL_THROUGH_CACHE_LIMIT, MSG_LIMIT.format(limit=rules.MAX_RULES_PER_REGISTRY),
                         retryable=False)
    # Throttling, 5xx and a not-yet-visible secret retry with backoff; the rest waits for a change.
    return StepError(classified.reason, MSG_AWS.format(action=action, prefix=prefix, detail=classified.describe()),
                     retryable=classified.retryable)


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


def precheck(ctx: StepContext) -> StepOutcome:
    """Before the secret is written: is the prefix taken by a rule that is not ours?

    Runs only while status records no rule of ours (the first sync, or a conflict being
    resolved), so a prefix already taken costs one read and no write at all; the steady
    state pays nothing. The secret's ARN is not known yet, so a rule counts as ours when
    its credential names our secret.
    """
    out = StepOutcome()
    ptc = ctx.resolved.spec.pullThroughCache
    if ptc is None or _previous(ctx) is not None or ctx.resolved.spec.adoptExisting:
        return out
    prefix = ptc.ecrRepositoryPrefix
    try:
        answer = ctx.clients(rules.SERVICE).describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])
    except (ClientError, BotoCoreError) as error:
        if isinstance(error, ClientError) and classify(error, rules.SERVICE).error_class is ErrorClass.NOT_FOUND:
            return out
        return _fail(out, _failure(error, "look up", prefix), prefix)
    for rule in answer.get("pullThroughCacheRules", []):
        credential = rule.get(rules.FIELD_CREDENTIAL)
        if rule.get("ecrRepositoryPrefix") == prefix and rules.credential_secret_name(credential) != ctx.resolved.secret_name:
            return _fail(out, StepError(reasons.OWNERSHIP_CONFLICT, MSG_CONFLICT.format(prefix=prefix), retryable=False),
                         prefix)
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
    want = rules.desired(ctx.resolved, secret_arn)
    return _sync_rule(ctx, out, want, attempts_left=2)


def _sync_rule(ctx: StepContext, out: StepOutcome, want: dict[str, Any], attempts_left: int) -> StepOutcome:
    prefix = want["ecrRepositoryPrefix"]
    client = ctx.clients(rules.SERVICE)
    adopt = ctx.resolved.spec.adoptExisting
    # Ownership trusts any status record of the prefix (we created that rule); drift is judged
    # only against a record whose last outcome was Synced.
    recorded = ctx.previous_status.get(STATUS_KEY)
    previous = _previous(ctx)
    try:
        seen = rules.observe(client, want, secret_arn=want[rules.FIELD_CREDENTIAL], previous=recorded, adopt=adopt)
    except (ClientError, BotoCoreError, OSError) as error:
        return _fail(out, _failure(error, "describe", prefix), prefix)

    if not seen.exists:
        drift = [DRIFT_EXISTS] if previous and previous.get("ecrRepositoryPrefix") == prefix else []
        if drift and not ctx.remediate:
            return _report(ctx, out, prefix, drift, previous)
        try:
            out.writes += 1
            rules.create(client, want)
        except (ClientError, BotoCoreError, OSError) as error:
            if attempts_left > 1 and classify(error, rules.SERVICE).error_class is ErrorClass.ALREADY_EXISTS:
                # Someone created it between our describe and create: look again, once.
                return _sync_rule(ctx, out, want, attempts_left - 1)
            return _fail(out, _failure(error, "create", prefix), prefix)
        if drift:
            _repaired(ctx, out, prefix, drift)
        else:
            out.events.append(normal(reasons.RECONCILED, MSG_CREATED.format(prefix=prefix, url=want[rules.FIELD_UPSTREAM_URL])))
        return _synced(out, want)

    adopting = False
    if not seen.owned:
        if not adopt:
            out.events.append(warning(reasons.OWNERSHIP_CONFLICT, MSG_CONFLICT.format(prefix=prefix)))
            return _fail(out, StepError(reasons.OWNERSHIP_CONFLICT, MSG_CONFLICT.format(prefix=prefix), retryable=False),
                         prefix)
        adopting = True

    if not seen.differences:
        if adopting:
            out.events.append(normal(reasons.RECONCILED, MSG_ADOPTED.format(prefix=prefix)))
        return _synced(out, want)

    drift = [] if adopting else _drift_fields(seen.differences, want, previous)
    if drift and not ctx.remediate and len(drift) == len(seen.differences):
        return _report(ctx, out, prefix, drift, previous)
    try:
        if rules.needs_recreate(seen.differences):
            out.writes += 1
            rules.delete(client, prefix)
            out.writes += 1
            rules.create(client, want)
            message = MSG_RECREATED.format(prefix=prefix, url=want[rules.FIELD_UPSTREAM_URL])
        else:
            out.writes += 1
            rules.update_credential(client, prefix, want[rules.FIELD_CREDENTIAL])
            message = MSG_UPDATED.format(prefix=prefix)
    except (ClientError, BotoCoreError, OSError) as error:
        return _fail(out, _failure(error, "update", prefix), prefix)
    if drift:
        _repaired(ctx, out, prefix, drift)
    else:
        out.events.append(normal(reasons.RECONCILED, MSG_ADOPTED.format(prefix=prefix) if adopting else message))
    return _synced(out, want)


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
    client = ctx.clients(rules.SERVICE)
    previous = ctx.previous_status.get(STATUS_KEY)
    probe = {"ecrRepositoryPrefix": prefix}
    try:
        seen = rules.observe(client, probe, secret_arn=_secret_arn(ctx), previous=previous, adopt=False)
    except (ClientError, BotoCoreError, OSError) as error:
        _fail(out, _failure(error, "describe", prefix), prefix)
        return False
    if not seen.exists:
        return True
    if not seen.owned:
        # Never delete a rule that is not ours, even on our own deletion.
        out.events.append(warning(reasons.OWNERSHIP_CONFLICT, MSG_CONFLICT.format(prefix=prefix)))
        return True
    try:
        out.writes += 1
        rules.delete(client, prefix)
    except (ClientError, BotoCoreError, OSError) as error:
        _fail(out, _failure(error, "delete", prefix), prefix)
        return False
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
