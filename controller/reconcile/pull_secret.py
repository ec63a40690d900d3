"""Reconcile one ECRPullSecret: a dockerconfigjson Secret kept fresh from ECR's 12-hour token.

Called by ``controller.handlers`` (create / update / resume, the refresh
scheduler and the Secret watch call ``reconcile()``; the delete handler calls
``delete()``) and by ``regaccess plan`` (with a recording actor). Knows nothing
about kopf.

One pass, in this order (every write through the loop, ``controller.reconcile.loop``):

1. validate the spec (``controller.api.validation_pull``): a bad registry ID or
   Region is Ready=False with its own reason and no call at all;
2. observe every listed ServiceAccount: one that does not exist is
   ``ServiceAccountNotFound``, retried, and nothing is written;
3. observe the Secret (``controller.kubeobjects.PULL_SECRETS``) and decide:
   another ECRPullSecret's Secret, or one the operator did not create (unless
   ``adoptExisting``), is ``OwnershipConflict``: no token is fetched, nothing is
   written;
4. fetch tokens (``controller.aws.ecr_tokens``, one GetAuthorizationToken per
   Region and principal) only when a write is due anyway (Secret missing,
   edited by hand, registries changed) or the refresh time has come, and write
   the Secret with them;
5. add the Secret to the ServiceAccounts' imagePullSecrets, and take it out of
   those dropped from the list.

Refresh timing is pure (``Timing``, ``refresh_at``, ``retry_delay``) and written
to ``status.nextRefreshTime``, which is the only thing the scheduler reads:

- a token is refreshed at ``fraction`` of its lifetime (default 0.5: six hours
  into a 12-hour token), up to ``jitter`` (10 %) earlier, fixed per resource, so
  that resources created together spread out. Half the lifetime leaves six hours
  of retries for an ECR, STS or network outage before a pull fails, where
  refreshing at a fixed 60 minutes (registry-creds) or at an unrelated interval
  (ESO) either wastes calls or lets tokens expire;
- the lifetime is counted from when the token arrived to its ``expiresAt``,
  capped at ``max_lifetime``; an ``expiresAt`` not after its arrival (a clock
  that disagrees with AWS's by hours) counts as the nominal 12 hours;
- a failed refresh is retried with exponential backoff (``retry_min`` doubling
  up to ``retry_max``), never later than a quarter of the time the token in the
  Secret has left, so several attempts happen well before it expires (and, once
  it has expired, at least every 30 seconds);
- while refreshes fail and the token expires within an hour (or within the
  last quarter of its lifetime, for short lifetimes), Ready is False with
  ``TokenExpiring`` and a Warning Event says so; the Secret is still the last
  good one.

No token, nor any value derived from it, is put in status, Events, messages or
logs; the Secret holds it and ``controller.logging.REDACTOR`` knows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from controller import tenancy
from controller.api import reasons
from controller.api.validation_pull import ResolvedPullSecret, validate_pull_secret
from controller.aws import ecr_tokens
from controller.aws.clients import Clients
from controller.logging import REDACTOR, owner_key
from controller.kubeobjects import (IMAGE_PULL_SECRETS, OWNER_KIND, PULL_SECRETS, DesiredPullEntry, DesiredPullSecret,
                                    dockerconfig)
from controller.reconcile import loop
from controller.reconcile.conditions import get_condition, set_condition
from controller.reconcile.cross_account import parse_rfc3339, rfc3339
from controller.reconcile.outcome import bounded, invalid, retry_delay as error_retry_delay
from controller.reconcile.result import Event, ReconcileResult, normal, warning
from controller.reconcile.steps import StepError

ClientsFor = Callable[[str | None, str | None, str | None], Clients]

NOMINAL_LIFETIME = dt.timedelta(hours=12)  # what ECR documents for GetAuthorizationToken
EXPIRY_WARNING = dt.timedelta(hours=1)      # same threshold as the PrometheusRule alert
# Once the token has expired, pulls fail now: retry at least this often, whatever the backoff.
EXPIRED_RETRY = 30.0

EVENT_CREATED = "SecretCreated"
EVENT_REFRESHED = "TokenRefreshed"
EVENT_RESTORED = "SecretRestored"
EVENT_SERVICE_ACCOUNT = "ServiceAccountUpdated"
EVENT_REMOVED = "SecretRemoved"
EVENT_LEFT = "SecretLeft"

MSG_READY = "Secret {secret} holds ECR tokens for {hosts}"
MSG_SA_MISSING = "ServiceAccount(s) {names} do not exist in namespace {namespace}; nothing written, retrying"
MSG_REFRESH_FAILING = "refreshing the tokens failed ({error}); the Secret keeps the tokens that expire at {expires}"
MSG_EXPIRING = ("no refresh has succeeded ({error}); the tokens in Secret {secret} expire at {expires}: "
                "pulls fail after that")
MSG_EXPIRED = "no refresh has succeeded ({error}); the tokens in Secret {secret} expired at {expires}"
MSG_CREATED = "created Secret {secret} with tokens for {hosts}"
MSG_REFRESHED = "refreshed the tokens in Secret {secret}; they expire at {expires}"
MSG_RESTORED = "Secret {secret} was changed or deleted outside the operator ({fields}); restored"
MSG_SA_ADDED = "added Secret {secret} to imagePullSecrets of ServiceAccount {sa}"
MSG_SA_REMOVED = "removed Secret {secret} from imagePullSecrets of ServiceAccount {sa}"
MSG_REMOVED = "deleted Secret {secret}"


# --------------------------------------------------------------------------- timing (pure)


@dataclass(frozen=True)
class Timing:
    """When to refresh and retry (``regaccess run --pull-secret-*`` options)."""

    fraction: float = 0.5
    jitter: float = 0.1
    max_lifetime: float = NOMINAL_LIFETIME.total_seconds()
    retry_min: float = 10.0
    retry_max: float = 900.0


def jitter_of(uid: str) -> float:
    """Pure: a fixed number in [0, 1] per resource."""
    return hashlib.sha256(f"refresh/{uid}".encode()).digest()[0] / 255


def effective_expiry(issued: dt.datetime, reported: dt.datetime, timing: Timing) -> dt.datetime:
    """Pure: when a token fetched at ``issued`` is taken to expire."""
    expires = reported if reported > issued else issued + NOMINAL_LIFETIME
    return min(expires, issued + dt.timedelta(seconds=timing.max_lifetime))


def refresh_at(issued: dt.datetime, expires: dt.datetime, uid: str, timing: Timing) -> dt.datetime:
    """Pure: ``fraction`` of the lifetime after ``issued``, up to ``jitter`` of that earlier."""
    lifetime = max((expires - issued).total_seconds(), 0.0)
    return issued + dt.timedelta(seconds=lifetime * timing.fraction * (1 - timing.jitter * jitter_of(uid)))


def retry_delay(failures: int, remaining: float | None, timing: Timing) -> float:
    """Pure: seconds until the next attempt after ``failures`` failed ones in a row.

    Exponential from ``retry_min`` up to ``retry_max``, and never more than a quarter of
    the time the current token has left (``remaining``), so retries come well before it
    expires; once it has expired, at most ``EXPIRED_RETRY``. At least one second.
    """
    delay = min(timing.retry_min * 2 ** max(failures - 1, 0), timing.retry_max)
    if remaining is not None and remaining > 0:
        delay = min(delay, remaining / 4)
    elif remaining is not None:
        delay = min(delay, EXPIRED_RETRY)
    return max(delay, 1.0)


def expiring(now: dt.datetime, issued: dt.datetime | None, expires: dt.datetime | None, timing: Timing) -> bool:
    """Pure: does the token in the Secret expire within the warning window?"""
    if expires is None:
        return True
    lifetime = (expires - issued).total_seconds() if issued else NOMINAL_LIFETIME.total_seconds()
    window = min(EXPIRY_WARNING.total_seconds(), lifetime * (1 - timing.fraction) / 2)
    return (expires - now).total_seconds() <= window


def refresh_due(status: dict[str, Any], now: dt.datetime) -> bool:
    """Pure: has ``status.nextRefreshTime`` come (the scheduler's question)?"""
    due = parse_rfc3339(status.get("nextRefreshTime"))
    return due is not None and now >= due


# --------------------------------------------------------------------------- one pass


@dataclass(frozen=True)
class Request:
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]


@dataclass
class _Pass:
    errors: list[StepError] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    writes: int = 0


def _desired(request: Request, resolved: ResolvedPullSecret, name: str | None = None,
             hosts: tuple[str, ...] | None = None) -> DesiredPullSecret:
    return DesiredPullSecret(request.namespace, name or resolved.secret_name, resolved.owner, request.name,
                             request.uid, hosts=hosts)


def _fetch(resolved: ResolvedPullSecret, clients_for: ClientsFor, owner: Any = None) -> list[ecr_tokens.Token]:
    """One GetAuthorizationToken per Region (plus one for the default registry there).

    ``owner``: the redactor's owner of the tokens (controller.logging.owner_key): the
    fresh tokens and their ``.dockerconfigjson`` replace the ones it held."""
    spec = resolved.spec
    by_region: dict[str | None, list[str | None]] = {}
    for registry in resolved.registries:
        by_region.setdefault(registry.region, []).append(registry.registry_id)
    tokens: dict[str, ecr_tokens.Token] = {}
    for region, ids in by_region.items():
        ecr = clients_for(region, spec.roleArn, spec.externalId)(ecr_tokens.SERVICE)
        named = [i for i in ids if i]
        for group in ([named] if named else []) + ([[]] if None in ids else []):
            for token in ecr_tokens.fetch(ecr, group):
                # Known to the redactor before anything could log, post or raise with it.
                REDACTOR.remember(*ecr_tokens.secrets_of(token), owner=owner)
                tokens[token.host] = token
    found = [tokens[host] for host in sorted(tokens)]
    if owner is not None:
        # Only this resource's current tokens stay known: the last refresh's go.
        REDACTOR.replace(owner, [value for token in found for value in ecr_tokens.secrets_of(token)]
                         + ([dockerconfig(found)] if found else []))
    return found


def _failure_status(status: dict[str, Any], request: Request, resolved: ResolvedPullSecret, error: StepError,
                    now: dt.datetime, timing: Timing, found: _Pass, token_failure: bool) -> ReconcileResult:
    stamp = rfc3339(now)
    expires = parse_rfc3339(status.get("expiresAt")) if status.get("secretName") == resolved.secret_name else None
    issued = parse_rfc3339(status.get("lastRefreshTime"))
    remaining = (expires - now).total_seconds() if expires else None
    conditions = status.get("conditions") or []
    previous_ready = get_condition(conditions, reasons.READY) or {}
    message = bounded(error.message)
    if token_failure:
        failures = int(status.get("refreshFailures") or 0) + 1
        status["refreshFailures"] = failures
        delay = retry_delay(failures, remaining, timing)
    else:
        delay = error_retry_delay(error)
    ready: tuple[bool, str, str]
    if expires is not None and not expiring(now, issued, expires, timing) and error.reason != reasons.OWNERSHIP_CONFLICT:
        ready = (True, reasons.RECONCILED, bounded(MSG_REFRESH_FAILING.format(error=error.message,
                                                                               expires=rfc3339(expires))))
    elif expires is not None and error.reason != reasons.OWNERSHIP_CONFLICT:
        template = MSG_EXPIRED if remaining is not None and remaining <= 0 else MSG_EXPIRING
        ready = (False, reasons.TOKEN_EXPIRING, bounded(template.format(
            error=error.message, secret=resolved.secret_name, expires=rfc3339(expires))))
    else:
        ready = (False, error.reason, message)
    conditions = set_condition(conditions, reasons.READY, ready[0], ready[1], ready[2],
                               generation=request.generation, now=stamp)
    conditions = set_condition(conditions, reasons.SYNCED, False, error.reason, message,
                               generation=request.generation, now=stamp)
    events = list(found.events)
    if ready[1] == reasons.TOKEN_EXPIRING and previous_ready.get("reason") != reasons.TOKEN_EXPIRING:
        events.append(warning(reasons.TOKEN_EXPIRING, ready[2]))
    previous_synced = get_condition(status.get("conditions"), reasons.SYNCED) or {}
    if previous_synced.get("message") != message:
        events.append(warning(error.reason, message))
    status["conditions"] = conditions
    status["observedGeneration"] = request.generation
    nxt: dt.datetime | None = None
    if error.retryable or token_failure:
        nxt = now + dt.timedelta(seconds=delay)
        scheduled = parse_rfc3339(status.get("nextRefreshTime"))
        if not token_failure and scheduled and scheduled > now:
            nxt = min(nxt, scheduled)
    if nxt is not None:
        status["nextRefreshTime"] = rfc3339(nxt)
    else:
        status.pop("nextRefreshTime", None)
    outcome = "conflict" if error.reason == reasons.OWNERSHIP_CONFLICT else ("retry" if nxt else "error")
    return ReconcileResult(status=status, events=events, outcome=outcome)


def reconcile(request: Request, *, clients_for: ClientsFor, kube: Any, cluster_id: str, now: dt.datetime,
              timing: Timing = Timing(), actor: Any = None,
              tenancy_policy: tenancy.Policy = tenancy.SHIPPED) -> ReconcileResult:
    """Make the Secret hold fresh tokens and the ServiceAccounts list it.

    Outside the namespace's tenancy rules (Regions, registry accounts, roleArn): no token
    is fetched and nothing is written. (Delete touches only this namespace's Secret and
    ServiceAccounts, never AWS, so it needs no such check.)"""
    actor = actor or loop.AWS_ACTOR
    stamp = rfc3339(now)
    status = dict(request.status or {})
    default_region = clients_for(None, None, None).region
    resolved, problems = validate_pull_secret(request.namespace, request.name, request.spec,
                                              cluster_id=cluster_id, default_region=default_region,
                                              known_regions=ecr_tokens.regions())
    if resolved is not None:
        problems = tenancy.violations(tenancy_policy, request.namespace, tenancy.pull_secret_values(resolved))
    if resolved is None or problems:
        result = invalid(status, request.generation, problems, stamp)
        result.status.pop("nextRefreshTime", None)
        return result
    found = _Pass()
    ns, secret = request.namespace, resolved.secret_name

    # 2. ServiceAccounts first: a missing one means no write at all.
    entries: dict[str, Any] = {}
    try:
        for account in resolved.service_accounts:
            entries[account] = IMAGE_PULL_SECRETS.observe(kube, DesiredPullEntry(ns, account, secret))
    except loop.AWS_ERRORS as error:
        return _failure_status(status, request, resolved, loop.failure(error, "kubernetes", "ServiceAccounts"),
                               now, timing, found, False)
    missing = [a for a, o in entries.items() if o.observed is None]
    if missing:
        error = StepError(reasons.SERVICE_ACCOUNT_NOT_FOUND,
                          MSG_SA_MISSING.format(names=", ".join(missing), namespace=ns), True)
        return _failure_status(status, request, resolved, error, now, timing, found, False)

    # 3. The Secret: observe and decide before any token is fetched.
    same = status.get("observedGeneration") == request.generation and status.get("secretName") == secret
    hosts = tuple(status.get("registries") or ()) if same and status.get("registries") else None
    shape = _desired(request, resolved, hosts=hosts)
    try:
        observation = PULL_SECRETS.observe(kube, shape)
    except loop.AWS_ERRORS as error:
        return _failure_status(status, request, resolved, loop.failure(error, "kubernetes", PULL_SECRETS.label(shape)),
                               now, timing, found, False)
    adopt = resolved.spec.adoptExisting
    managed_before = bool(status.get("lastRefreshTime")) and status.get("secretName") == secret
    # Our record of the Secret (a refresh wrote it under this name): with it, a Secret whose
    # owner reference and labels someone removed is ours with the mark gone, restored (drift).
    recorded = managed_before
    decision = loop.decide(observation, adopt_existing=adopt, report_only=False, managed_before=managed_before,
                           recorded=recorded)
    if decision is loop.Decision.CONFLICT:
        done = loop.sync_object(PULL_SECRETS, kube, shape, actor=actor, adopt_existing=adopt,
                                ours=resolved.owner, observation=observation, recorded=recorded)
        return _failure_status(status, request, resolved, done.error, now, timing, found, False)

    # 4. Tokens only when the Secret must be written anyway or the refresh time has come.
    issued, expires = parse_rfc3339(status.get("lastRefreshTime")), parse_rfc3339(status.get("expiresAt"))
    due = refresh_at(issued, expires, request.uid, timing) if same and issued and expires else None
    fetched = decision in loop.WRITES or due is None or now >= due
    if fetched:
        try:
            tokens = _fetch(resolved, clients_for, owner_key(OWNER_KIND, request.namespace, request.name))
        except loop.AWS_ERRORS as error:
            what = f"GetAuthorizationToken for {', '.join(r.registry_id or 'the default registry' for r in resolved.registries)}"
            return _failure_status(status, request, resolved, loop.failure(error, ecr_tokens.SERVICE, what),
                                   now, timing, found, True)
        if not tokens:
            error = StepError(reasons.AWS_ERROR, "GetAuthorizationToken answered no authorization data", True)
            return _failure_status(status, request, resolved, error, now, timing, found, True)
        issued = now
        expires = min(effective_expiry(now, t.expires_at, timing) for t in tokens)
        desired = dataclasses.replace(shape, hosts=tuple(t.host for t in tokens), tokens=tuple(tokens),
                                      expires_at=rfc3339(expires))
        if observation.exists:
            observation = PULL_SECRETS.judge(observation.observed, desired)
        done = loop.sync_object(PULL_SECRETS, kube, desired, actor=actor, adopt_existing=adopt,
                                managed_before=managed_before, ours=resolved.owner, observation=observation,
                                recorded=recorded)
        if done.error is not None:
            return _failure_status(status, request, resolved, done.error, now, timing, found, True)
        found.writes += done.calls
        host_list = ", ".join(desired.hosts or ())
        if done.drifted:
            found.events.append(normal(EVENT_RESTORED, MSG_RESTORED.format(secret=secret,
                                                                           fields=", ".join(done.drifted))))
        elif done.decision is loop.Decision.CREATE:
            found.events.append(normal(EVENT_CREATED, MSG_CREATED.format(secret=secret, hosts=host_list)))
        elif done.decision in loop.WRITES:
            found.events.append(normal(EVENT_REFRESHED, MSG_REFRESHED.format(secret=secret, expires=rfc3339(expires))))
        status.update(registries=list(desired.hosts or ()), expiresAt=rfc3339(expires), lastRefreshTime=stamp)
        status.pop("refreshFailures", None)

    # 5. ServiceAccounts: add ours, take it out of those no longer listed.
    listed: list[str] = []
    for account, entry in entries.items():
        done = loop.sync_object(IMAGE_PULL_SECRETS, kube, DesiredPullEntry(ns, account, secret), actor=actor,
                                ours=resolved.owner, observation=entry)
        if done.error is not None:
            found.errors.append(done.error)
            continue
        listed.append(account)
        if done.decision in loop.WRITES:
            found.writes += done.calls
            found.events.append(normal(EVENT_SERVICE_ACCOUNT, MSG_SA_ADDED.format(secret=secret, sa=account)))
    old_secret = status.get("secretName") or secret
    for account in status.get("serviceAccounts") or []:
        if account in resolved.service_accounts and old_secret == secret:
            continue
        done = loop.delete_object(IMAGE_PULL_SECRETS, kube, DesiredPullEntry(ns, account, old_secret), actor=actor)
        if done.error is not None:
            found.errors.append(done.error)
            listed.append(account)  # still ours to remove next time
        elif done.decision is loop.Decision.DELETE:
            found.writes += done.calls
            found.events.append(normal(EVENT_SERVICE_ACCOUNT, MSG_SA_REMOVED.format(secret=old_secret, sa=account)))
    if old_secret != secret:
        # secretName changed: the old Secret goes (only if it is ours).
        done = loop.delete_object(PULL_SECRETS, kube, _desired(request, resolved, name=old_secret), actor=actor)
        if done.error is not None:
            found.errors.append(done.error)
    status.update(secretName=secret, serviceAccounts=listed)
    if found.errors:
        return _failure_status(status, request, resolved, found.errors[0], now, timing, found, False)

    # 6. Conditions and the next refresh.
    message = MSG_READY.format(secret=secret, hosts=", ".join(status.get("registries") or ()))
    conditions = status.get("conditions") or []
    for type_ in (reasons.READY, reasons.SYNCED):
        conditions = set_condition(conditions, type_, True, reasons.RECONCILED, bounded(message),
                                   generation=request.generation, now=stamp)
    status["conditions"] = conditions
    status["observedGeneration"] = request.generation
    if issued and expires:
        status["nextRefreshTime"] = rfc3339(refresh_at(issued, expires, request.uid, timing))
    if found.writes or not status.get("lastSyncTime"):
        status["lastSyncTime"] = stamp
    return ReconcileResult(status=status, events=found.events, ready=True)


# --------------------------------------------------------------------------- delete


def _lenient(request: Request, cluster_id: str) -> tuple[str, list[str], str]:
    """Secret name, ServiceAccounts and owner mark of a spec that may have become invalid."""
    from controller.api.validation import owner_value

    spec, status = request.spec or {}, request.status or {}
    name = status.get("secretName") or (spec.get("secretName") if isinstance(spec.get("secretName"), str) else None)
    accounts = [a for a in [*(status.get("serviceAccounts") or []), *(spec.get("serviceAccounts") or [])]
                if isinstance(a, str)]
    return name or request.name, list(dict.fromkeys(accounts)), owner_value(cluster_id, request.namespace, request.name)


def delete(request: Request, *, kube: Any, cluster_id: str, now: dt.datetime, actor: Any = None) -> ReconcileResult:
    """Take the Secret out of the ServiceAccounts and delete it, if it is ours.

    ``retry_after`` is None only when nothing of ours is left: then the handler may
    drop the finalizer. (The Secret's ownerReference lets Kubernetes collect it too.)
    """
    actor = actor or loop.AWS_ACTOR
    secret, accounts, owner = _lenient(request, cluster_id)
    ns = request.namespace
    events: list[Event] = []
    errors: list[StepError] = []
    for account in accounts:
        done = loop.delete_object(IMAGE_PULL_SECRETS, kube, DesiredPullEntry(ns, account, secret), actor=actor)
        if done.error is not None:
            errors.append(done.error)
        elif done.decision is loop.Decision.DELETE:
            events.append(normal(EVENT_SERVICE_ACCOUNT, MSG_SA_REMOVED.format(secret=secret, sa=account)))
    desired = DesiredPullSecret(ns, secret, owner, request.name, request.uid)
    done = loop.delete_object(PULL_SECRETS, kube, desired, actor=actor)
    if done.error is not None:
        errors.append(done.error)
    elif done.decision is loop.Decision.DELETE:
        events.append(normal(EVENT_REMOVED, MSG_REMOVED.format(secret=secret)))
    elif done.decision is loop.Decision.LEAVE:
        events.append(normal(EVENT_LEFT, loop.left_message(PULL_SECRETS, desired)))
    status = dict(request.status or {})
    status["conditions"] = set_condition(status.get("conditions") or [], reasons.READY, False, reasons.DELETING,
                                         "removing the Secret and its imagePullSecrets entries",
                                         generation=request.generation, now=rfc3339(now))
    if errors:
        message = bounded("; ".join(e.message for e in errors))
        events.append(warning(errors[0].reason, message))
        return ReconcileResult(status=status, events=events, retry_after=error_retry_delay(errors[0]) or 300.0,
                               retry_reason=message, outcome="retry")
    return ReconcileResult(status=status, events=events)
