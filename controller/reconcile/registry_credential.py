"""Level-triggered reconcile of one RegistryCredential (kopf-free).

Called by ``controller.handlers`` on create/update/resume, when the source
Secret changes, and by the drift timer, always with the same inputs: the
object's spec and status, the source Secret as the informer index holds it,
and a way to get AWS clients. It validates (no AWS call on bad input), runs
the steps in order (secret, role policies, task definitions, job definitions,
pull-through cache rule), and hands what they found to
``controller.reconcile.outcome.assemble`` (the status assembly both kinds share).

``driftPolicy: Report`` is applied here, once: steps get ``remediate=False``
when neither the spec (generation) nor the source Secret changed since the
last sync, so any difference they find is drift someone made in AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from controller import source_index, tenancy
from controller.api import reasons
from controller.api.validation import (
    Problem,
    ResolvedRegistryCredential,
    rule_takes_credential,
    secret_value_problems,
    validate_registry_credential,
)
from controller.aws.clients import Clients
from controller.aws import secrets as sm
from controller.logging import REDACTOR, owner_key
from controller.reconcile import secret as secret_step
from controller.reconcile import cost, definitions, pull_ready, pull_through_cache, services, wiring
from controller.reconcile.conditions import now_rfc3339, set_condition
from controller.reconcile.outcome import RETRY_DEPENDENCY, RETRY_TRANSIENT, Pass, assemble, bounded, invalid, not_permitted_delete
from controller.reconcile.result import ReconcileResult, synced_generation, warning
from controller.reconcile.steps import Step, StepContext, StepOutcome
from controller.sources import Credential, SourceError, read_credential

KIND = "RegistryCredential"
ClientsFor = Callable[[str | None, str | None, str | None], Clients]

@dataclass(frozen=True)
class Request:
    namespace: str
    name: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]
    # The Secret body, None when it does not exist. From the operator's index it has no
    # data (controller.source_index.entry: metadata and digest): ``read_source`` then
    # fetches the value, and only once the pass has got as far as needing it.
    source_secret: dict[str, Any] | None
    cluster_id: str
    drift_check: bool = False
    read_source: Callable[[], dict[str, Any] | None] | None = field(default=None, repr=False, compare=False)
    # The admin's opt-in a source Secret must carry (controller.source_index.OptIn); None: no check.
    source_opt_in: source_index.OptIn | None = None


def sync_steps(resolved: ResolvedRegistryCredential) -> list[tuple[str, Step]]:
    """The steps, in dependency order: everything after the secret needs its ARN.

    Wiring steps always run (not only when their spec list is non-empty) because an
    emptied list must remove what an earlier generation put in place."""
    return [
        # An execution role given as an ARN is judged by its real ARN (one cached GetRole)
        # before anything is written: the operator writes to roles by name.
        ("rolePolicy", wiring.check_role_identity),
        # A prefix taken by someone else's rule stops everything before the first write.
        ("pullThroughCacheRule", pull_through_cache.precheck),
        ("secret", secret_step.sync),
        ("pullThroughCacheRule", pull_through_cache.sync),
        ("rolePolicy", wiring.sync_role_policies),
        ("taskDefinition", definitions.sync_task_definitions),
        ("jobDefinition", definitions.sync_job_definitions),
        # A service is rolled only once everything it needs is in place.
        ("ecsService", services.sync_services),
        # Last, informative, never an error: reads the execution roles' policies (cached).
        ("pullReady", pull_ready.sync),
    ]


def delete_steps(resolved: ResolvedRegistryCredential) -> list[tuple[str, Step]]:
    """Reverse dependency order: users of the secret go before the secret."""
    return [
        ("jobDefinition", definitions.delete_job_definitions),
        ("taskDefinition", definitions.delete_task_definitions),
        ("rolePolicy", wiring.delete_role_policies),
        ("pullThroughCacheRule", pull_through_cache.delete),
        ("secret", secret_step.delete),
    ]


def _source_resource_version(secret: dict[str, Any] | None) -> str | None:
    return ((secret or {}).get("metadata") or {}).get("resourceVersion")


def _load_credential(request: Request, resolved: ResolvedRegistryCredential
                     ) -> tuple[Credential | None, list[Problem], dict[str, Any] | None]:
    """The credential, the problems that stop the pass, and the Secret it was read from."""
    ref = resolved.spec.source.secretRef.name
    missing = [Problem(reasons.SOURCE_SECRET_NOT_FOUND, "spec.source.secretRef.name",
                       f"Secret {ref!r} not found in namespace {request.namespace!r}")]
    secret = request.source_secret
    if secret is None:
        return None, missing, None
    rule = request.source_opt_in
    not_opted_in = [Problem(reasons.SOURCE_NOT_OPTED_IN, "spec.source.secretRef.name",
                            f"Secret {ref!r} does not carry the {rule.what if rule else 'label'} "
                            f"{rule.key if rule else ''}={rule.value if rule else ''} that "
                            "lets regaccess copy it to AWS; its owner adds it (docs/security.md)")]
    # Judged on the index's metadata first: a Secret that did not opt in is never read.
    if not source_index.opted_in(rule, secret):
        return None, not_opted_in, secret
    if request.read_source is not None:
        secret = request.read_source()
        if secret is None:
            return None, missing, None
        if not source_index.opted_in(rule, secret):  # the label went since the index saw it
            return None, not_opted_in, secret
    try:
        credential = read_credential(
            secret,
            registry=resolved.spec.source.registry,
            username_key=resolved.spec.source.usernameKey,
            password_key=resolved.spec.source.passwordKey,
        )
    except SourceError as error:
        return None, [Problem(error.reason, "spec.source.secretRef", error.message)], secret
    # From here on the password is scrubbed from every log line and exception text; the
    # redactor holds this resource's current values only (a rotation drops the old ones).
    owner = owner_key(KIND, request.namespace, request.name)
    REDACTOR.remember(credential.password, owner=owner)
    value = sm.secret_string(credential, pull_through_cache=rule_takes_credential(resolved.spec))
    REDACTOR.replace(owner, (credential.password, value))
    return credential, secret_value_problems(value), secret


def _invalid(request: Request, problems: list[Problem], source: Any = False) -> ReconcileResult:
    result = invalid(request.status, request.generation, problems, now_rfc3339(), drift_check=request.drift_check)
    # Seen, even though unusable: the timer then waits for the next change of the Secret
    # instead of re-validating it every tick. (``source``: the Secret read, if it was.)
    result.status["sourceResourceVersion"] = _source_resource_version(
        request.source_secret if source is False else source)
    result.status["syncedGeneration"] = request.generation
    return result


def reconcile(request: Request, clients_for: ClientsFor, *, record_now: Callable[[dict[str, Any]], None] | None = None,
              actor: Any = None, tenancy_policy: tenancy.Policy = tenancy.SHIPPED,
              secret_monthly_price: float = cost.DEFAULT_SECRET_MONTHLY_PRICE) -> ReconcileResult:
    """One level-triggered pass; ``actor`` performs the writes (controller.reconcile.loop).

    ``secret_monthly_price``: list price of one secret, for ``status.monthlyCost``.

    ``tenancy_policy``: the admin's TenancyPolicy; a name outside the namespace's rules
    stops the pass before any AWS call (and before the source Secret is read)."""
    resolved, problems = validate_registry_credential(
        request.namespace, request.name, request.spec, cluster_id=request.cluster_id
    )
    if resolved is None:
        return _invalid(request, problems)
    problems = tenancy.violations(tenancy_policy, request.namespace, tenancy.registry_credential_values(resolved))
    if problems:
        return _invalid(request, problems)
    credential, problems, source = _load_credential(request, resolved)
    if problems:
        return _invalid(request, problems, source)

    previous = request.status or {}
    source_rv = _source_resource_version(source)
    spec_changed = synced_generation(previous) != request.generation
    source_changed = previous.get("sourceResourceVersion") != source_rv
    report_only = resolved.spec.driftPolicy == "Report" and not spec_changed and not source_changed
    now = now_rfc3339()
    ctx = StepContext(
        resolved=resolved,
        clients=clients_for(resolved.spec.region, resolved.spec.roleArn, resolved.spec.externalId),
        previous_status=previous,
        remediate=not report_only,
        credential=credential,
        record_now=record_now,
        source_resource_version=source_rv,
        now=now,
        actor=actor,
        tenancy_policy=tenancy_policy,
    )
    outcomes: list[StepOutcome] = []
    failed: tuple[str, StepOutcome] | None = None
    for label, step in sync_steps(resolved):
        outcome = step(ctx)
        outcomes.append(outcome)
        if label == "rolePolicy" and outcome.writes:
            # Our own inline policy changed on these roles: PullReady reads them again.
            pull_ready.forget_roles(ctx, list(resolved.spec.grants.executionRoles))
        if outcome.error is not None:
            failed = (label, outcome)
            break
    result = _result(request, ctx, outcomes, failed, spec_changed=spec_changed, source_changed=source_changed, now=now)
    result.status["monthlyCost"] = cost.monthly_cost(cost.secrets_kept(result.status), secret_monthly_price)
    return result


def _result(request: Request, ctx: StepContext, outcomes: list[StepOutcome], failed: tuple[str, StepOutcome] | None,
            *, spec_changed: bool, source_changed: bool, now: str) -> ReconcileResult:
    previous = request.status or {}
    status: dict[str, Any] = dict(previous)
    managed: list[dict[str, Any]] = []
    events: list = []
    drift: list[tuple[str, str]] = []
    remediated = False
    for step_outcome in outcomes:
        status.update(step_outcome.status)
        managed += step_outcome.managed
        events += step_outcome.events
        # A difference caused by a spec or source change is the change being applied, not drift.
        if not spec_changed and not source_changed:
            drift += step_outcome.drifted
        remediated = remediated or step_outcome.remediated
    # Keep rows of steps that did not run this time (a failure stopped the sequence).
    ran = {row["kind"] for row in managed}
    managed += [row for row in previous.get("managed") or [] if row.get("kind") not in ran and failed is not None]
    status["managed"] = managed
    for key in ("services", "nextRolloutCheckTime"):  # the service step's None means "none"
        if key in status and status[key] is None:
            del status[key]
    # Everything is written, but a consumer runs with a role that cannot read the
    # secret: its tasks cannot pull. That is not Ready for the user.
    not_granted = [row["message"] for row in managed
                   if str(row.get("message", "")).startswith(reasons.EXECUTION_ROLE_NOT_GRANTED)]
    error = failed[1].error if failed is not None else None
    result = assemble(previous, status, Pass(
        generation=request.generation,
        now=now,
        failures=[error] if error is not None else [],
        drift=drift,
        remediated=ctx.remediate and remediated,
        judged=failed is None,
        events=events,
        # Steps that fail per object already posted a Warning for each one.
        warned=failed is not None and any(e.type == "Warning" for e in failed[1].events),
        wrote=any(o.writes for o in outcomes),
        first_sync=spec_changed,
        drift_check=request.drift_check,
        not_ready=(reasons.EXECUTION_ROLE_NOT_GRANTED, "; ".join(not_granted)) if not_granted else None,
    ))
    services.set_rolled_out(result.status, request.generation, now)
    # What this pass applied (a report-only stop counts, as it always has for this kind);
    # observedGeneration is settle()'s, set for every outcome because kstatus reads it.
    applied = error is None or error.reason == reasons.DRIFT_REPORTED
    _pull_ready_condition(result.status, ctx.pull_ready, request.generation, now)
    result.status["syncedGeneration"] = request.generation if applied else (synced_generation(previous) or 0)
    return result


def _pull_ready_condition(status: dict[str, Any], outcome: pull_ready.Outcome | None, generation: int | None,
                          now: str) -> None:
    """PullReady beside Ready, never folded into it (informative; docs/conditions.md).

    None (the step did not run or could not read): the previous condition stays; an
    empty status: no consumers any more, the condition goes."""
    if outcome is None:
        return
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != reasons.PULL_READY_TYPE]
    if outcome.status:
        conditions = set_condition(status.get("conditions"), reasons.PULL_READY_TYPE, outcome.status, outcome.reason,
                                   bounded(outcome.message), generation=generation, now=now)
    status["conditions"] = conditions


def delete(request: Request, clients_for: ClientsFor, *, actor: Any = None,
           tenancy_policy: tenancy.Policy = tenancy.SHIPPED) -> ReconcileResult:
    """Remove (or retain) the AWS objects; result.retry_after set means try again."""
    resolved, problems = validate_registry_credential(
        request.namespace, request.name, request.spec, cluster_id=request.cluster_id
    )
    if resolved is None:
        # An invalid spec never created anything we could identify safely: nothing to undo.
        return ReconcileResult(status=dict(request.status or {}), ready=True)
    refused = tenancy.violations(tenancy_policy, request.namespace, tenancy.registry_credential_values(resolved))
    if refused:
        return not_permitted_delete(request.status, refused)
    ctx = StepContext(
        resolved=resolved,
        clients=clients_for(resolved.spec.region, resolved.spec.roleArn, resolved.spec.externalId),
        previous_status=request.status or {},
        now=now_rfc3339(),
        actor=actor,
    )
    result = ReconcileResult(status=dict(request.status or {}))
    for label, step in delete_steps(resolved):
        outcome = step(ctx)
        result.events += outcome.events
        if outcome.error is not None:
            result.retry_after = RETRY_TRANSIENT if outcome.error.retryable else RETRY_DEPENDENCY
            result.retry_reason = outcome.error.message
            result.outcome = "retry"
            result.events.append(warning(outcome.error.reason, outcome.error.message))
            return result
    result.ready = True
    return result
