"""RegistryCredential steps that wire the secret to its consumers.

Called by the RegistryCredential reconciler, after the secret step has set
``ctx.secret_arn`` (and ``ctx.kms_key_arn`` for a customer managed key), in
this order:

    sync_role_policies(ctx)     / delete_role_policies(ctx)

followed by the task and job definition steps of ``controller.reconcile.definitions``,
which share this module's row helpers and ``execution_role_granted``.

Each follows ``controller.reconcile.steps``: observe every object, compare
(pure, in ``controller.aws.*``), write only what differs, and return a
``StepOutcome`` with one ``status.managed`` row per object::

    {"kind": "rolePolicy"|"taskDefinition"|"jobDefinition", "name": ..., "arn": ...,
     "state": "Synced"|"Pending"|"Error"|"Retained", "message": ...}

Role policies go through ``controller.reconcile.loop`` (adapter
``iam_policies.ROLE_POLICIES``, writes through ``ctx.actor``): the loop decides
create / update / adopt / conflict / drift from the owner the document's Sid
prefix says; this step adds only what is particular to IAM: the role's other
inline policies are read (size budget) just before a put, a missing role is a
dependency, and a rewrite of a pre-mark policy is never drift. Removing a
role's policy (role dropped from the list, or the resource deleted) observes
first and deletes only ours.

Per-object failures do not stop the other objects of the step (one missing
role must not keep the others from being granted); each gets an ``Error`` or
``Pending`` row and a Warning Event, and ``outcome.error`` summarises them
(a retryable one first, so the reconciler retries). Rows of the step's kind are
always returned, even on error, because they are how the next reconcile knows
which roles still carry our policy.

Drift is a difference on an object whose previous row was ``Synced`` while
the secret ARN (and, for policies, ``status.kmsKeyArn``) is unchanged since
that status. With ``ctx.remediate`` False it is only reported; objects never
synced before, or whose desired state changed, are unfinished work, not drift,
and are written either way.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.api import reasons
from controller.api.models import DeletionPolicy
from controller.aws import iam_policies, kms, policydoc
from controller.aws.errors import is_not_found
from controller.aws.protocol import MARK_FIELD
from controller.reconcile import loop
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome

ROLE_POLICY = "rolePolicy"

SYNCED = "Synced"
PENDING = "Pending"
ERROR = "Error"
RETAINED = "Retained"

# Event reasons for writes (Normal Events).
# A same-named policy that is not ours, left in place when ours would be removed.
EVENT_ROLE_POLICY_LEFT = "RolePolicyLeft"
EVENT_ROLE_POLICY_PUT = "RolePolicyPut"
EVENT_ROLE_POLICY_REMOVED = "RolePolicyRemoved"

NO_SECRET_ARN_MESSAGE = "the secret has no ARN yet; {what} waits for it"
KMS_KEY_MISSING_MESSAGE = "KMS key {key} does not exist"
DRIFT_REPORTED_MESSAGE = "{fields} changed outside the operator; not repaired because driftPolicy is Report"
ROLE_POLICY_PUT_MESSAGE = "inline policy {policy} put on role {role}"
ROLE_POLICY_REMOVED_MESSAGE = "inline policy {policy} removed from role {role}"
MORE_ERRORS_SUFFIX = " (and {count} more; see status.managed)"
RETAINED_MESSAGE = "kept: deletionPolicy is Retain"

# --------------------------------------------------------------------------- helpers


def _row(kind: str, name: str, arn: str | None, state: str, message: str = "", *,
         owned: bool = False) -> dict[str, Any]:
    row = {"kind": kind, "name": name, "arn": arn, "state": state, "message": message}
    if owned:  # only where the state alone would not say it (StepContext.recorded)
        row["owned"] = True
    return row


def _summary(errors: list[StepError]) -> StepError | None:
    if not errors:
        return None
    # A retryable error first: it makes the reconciler come back, and the terminal ones
    # stay in status.managed until then.
    first = next((e for e in errors if e.retryable), errors[0])
    if len(errors) == 1:
        return first
    return StepError(
        first.reason,
        first.message + MORE_ERRORS_SUFFIX.format(count=len(errors) - 1),
        first.retryable,
        first.retry_after,
    )


def _fail(out: StepOutcome, errors: list[StepError], kind: str, name: str, arn: str | None,
          error: StepError, state: str = ERROR, *, owned: bool = False) -> None:
    out.managed.append(_row(kind, name, arn, state, error.message, owned=owned))
    out.events.append(warning(error.reason, error.message))
    errors.append(error)


def _is_drift(ctx: StepContext, kind: str, name: str, *, uses_kms: bool = False) -> bool:
    """A difference is drift only on an object Synced before against the same desired inputs.

    When the secret ARN (or, for policies, the KMS key) changed since the previous
    status, the difference is our own pending change, not someone else's edit.
    """
    state = (ctx.previous_managed(kind).get(name) or {}).get("state")
    # A Pending row left by a reported drift is still that drift, not unfinished work.
    if state != SYNCED and not (state == PENDING and ctx.reported_before(f"{kind}/{name}")):
        return False
    previous = ctx.previous_status
    if previous.get("secretArn") and previous["secretArn"] != ctx.secret_arn:
        return False
    if uses_kms and "kmsKeyArn" in previous and previous.get("kmsKeyArn") != ctx.kms_key_arn:
        return False
    return True


def _carry_forward(ctx: StepContext, kind: str, out: StepOutcome) -> StepOutcome:
    """Keep the previous rows of ``kind`` when the step could not even start."""
    out.managed = [dict(row) for row in ctx.previous_managed(kind).values()]
    return out


def _retained(ctx: StepContext, kind: str, names: list[str]) -> StepOutcome:
    previous = ctx.previous_managed(kind)
    every = list(dict.fromkeys([*names, *previous]))
    return StepOutcome(
        managed=[_row(kind, n, (previous.get(n) or {}).get("arn"), RETAINED, RETAINED_MESSAGE) for n in every]
    )


def _foreign(ctx: StepContext, role_arn: str | None) -> bool:
    """A role ARN of another account never got our policy; a same-named role here is not ours.

    On delete the secret step has not run yet: the secret's account comes from status."""
    secret_arn = ctx.secret_arn or ctx.previous_status.get("secretArn")
    if not role_arn or not secret_arn:
        return False
    return iam_policies.account_problem(iam_policies.role_ref(role_arn), secret_arn) is not None


def _is_granted(execution_role_arn: str, granted: list[iam_policies.RoleRef]) -> bool:
    """Role names are unique per account, so a name match is a match unless both name accounts."""
    role = iam_policies.role_ref(execution_role_arn)
    return any(
        g.name == role.name and (g.account is None or role.account is None or g.account == role.account)
        for g in granted
    )


def execution_role_granted(execution_role_arn: str, execution_roles: list[str]) -> bool:
    """Pure: is a definition's execution role among ``grants.executionRoles``?

    Public for ``regaccess plan``, which must warn exactly when the operator would."""
    return _is_granted(execution_role_arn, [iam_policies.role_ref(r) for r in execution_roles])


# --------------------------------------------------------------------------- role policies


def _kms_key_arn(ctx: StepContext) -> tuple[str | None, StepError | None]:
    """The customer managed key ARN to grant kms:Decrypt on, or None for the default key.

    The secret step normally hands over a key ARN (no call then); an alias or key ID
    (from the spec, or DescribeSecret's alias ARN) is resolved, because IAM matches
    Resource against the key ARN only.
    """
    if kms.is_key_arn(ctx.kms_key_arn):
        return ctx.kms_key_arn, None
    candidate = ctx.kms_key_arn or ctx.resolved.spec.secret.kmsKeyId
    if not candidate:
        return None, None
    try:
        info = kms.describe(ctx.clients("kms"), candidate)
    except (ClientError, BotoCoreError) as error:
        if is_not_found(error, "kms"):
            # The key may be created (or the alias pointed) soon: retry.
            return None, StepError(reasons.DEPENDENCY_MISSING, KMS_KEY_MISSING_MESSAGE.format(key=candidate), True)
        return None, loop.failure(error, "kms", f"KMS key {candidate}")
    return (info.arn if info.customer_managed else None), None


def _policy(ctx: StepContext, role: str, secret_arn: str | None, key_arn: str | None) -> iam_policies.RolePolicy:
    # Status rows are the operator's own record: only on a role it holds is our legacy
    # (forgeable) Sid mark taken as ours (iam_policies.owner_of).
    recorded = ctx.recorded(ROLE_POLICY, role)
    return iam_policies.role_policy(role, ctx.resolved.policy_name, ctx.resolved.owner, secret_arn, key_arn,
                                    recorded=recorded)


def _sync_role(ctx: StepContext, iam: Any, ref: iam_policies.RoleRef, key_arn: str | None,
               out: StepOutcome, errors: list[StepError]) -> None:
    kind = iam_policies.ROLE_POLICIES
    arn = ref.given if ref.account else None
    obj = f"{ROLE_POLICY}/{ref.name}"
    # Our record of this role's policy: with it, a policy whose marks were stripped is ours.
    recorded = ctx.recorded(ROLE_POLICY, ref.name)

    def fail(error: StepError, state: str = ERROR) -> None:
        _fail(out, errors, ROLE_POLICY, ref.name, arn, error, state, owned=recorded)

    def role_missing(missing: iam_policies.RoleMissing) -> None:
        # Roles are often created by another pipeline, and IAM is eventually consistent
        # right after a create: a missing role is a dependency to wait for.
        fail(StepError(reasons.DEPENDENCY_MISSING, str(missing), True), state=PENDING)

    problem = iam_policies.account_problem(ref, ctx.secret_arn or "")
    if problem:
        fail(StepError(reasons.INVALID_GRANT, problem, False))
        return
    desired = _policy(ctx, ref.name, ctx.secret_arn, key_arn)
    try:
        observation = kind.observe(iam, desired)
    except loop.AWS_ERRORS as error:
        fail(loop.failure(error, kind.service, kind.label(desired)))
        return
    # Rewriting a policy of ours in an earlier version's format (pre-mark, legacy mark,
    # no KMS conditions) is our own change, never drift: the loop sees observation.outdated.
    options: dict[str, Any] = dict(
        adopt_existing=ctx.resolved.spec.adoptExisting, report_only=not ctx.remediate,
        managed_before=_is_drift(ctx, ROLE_POLICY, ref.name, uses_kms=True),
        recorded=recorded,
    )
    # The loop decides; this step only needs to know whether a put is coming, for the
    # reads that must precede one.
    decision = loop.decide(observation, **options)
    try:
        if decision is loop.Decision.REPORT and not observation.exists:
            # Nothing will be written, so nothing later would notice a deleted role: ask now.
            if not iam_policies.role_exists(iam, ref.name):
                role_missing(iam_policies.RoleMissing(ref.name))
                return
        if decision in (loop.Decision.CREATE, loop.Decision.UPDATE, loop.Decision.ADOPT):
            # Only now, when a put is due, read the role's other inline policies.
            sizes = iam_policies.other_policy_sizes(iam, ref.name, desired.policy)
            problem = iam_policies.budget_problem(ref.name, sizes, policydoc.size(desired.document))
            if problem:
                # Terminal: nothing changes until someone frees budget or the spec changes.
                fail(StepError(reasons.POLICY_BUDGET_EXCEEDED, problem, False))
                return
    except iam_policies.RoleMissing as missing:
        role_missing(missing)
        return
    except loop.AWS_ERRORS as error:
        fail(loop.failure(error, kind.service, f"role {ref.name}"))
        return
    try:
        result = loop.sync_object(kind, iam, desired, actor=ctx.actor or loop.AWS_ACTOR, ours=ctx.resolved.owner,
                                  observation=observation, **options)
    except iam_policies.RoleMissing as missing:
        role_missing(missing)
        return
    out.writes += result.calls
    if result.drifted:
        # One document: its drift is "document" (changed or deleted), and "mark" when the
        # marks were stripped from it.
        if MARK_FIELD in result.drifted:
            out.drifted.append((obj, MARK_FIELD))
        if set(result.drifted) - {MARK_FIELD}:
            out.drifted.append((obj, iam_policies.DOCUMENT_FIELD))
    if result.error is not None:
        fail(result.error)
        return
    if result.decision is loop.Decision.REPORT:
        message = DRIFT_REPORTED_MESSAGE.format(fields=iam_policies.DOCUMENT_FIELD)
        out.managed.append(_row(ROLE_POLICY, ref.name, arn, PENDING, message))
        if not ctx.reported_before(obj):  # once per drift, not at every check
            out.events.append(warning(reasons.DRIFT_REPORTED, f"{obj}: {message}"))
        return
    if result.decision in loop.WRITES:
        out.remediated = out.remediated or result.remediated
        out.events.append(normal(EVENT_ROLE_POLICY_PUT,
                                 ROLE_POLICY_PUT_MESSAGE.format(policy=desired.policy, role=ref.name)))
    out.managed.append(_row(ROLE_POLICY, ref.name, arn, SYNCED))


def _remove_role_policy(ctx: StepContext, iam: Any, name: str, arn: str | None, secret_arn: str | None,
                        key_arn: str | None, out: StepOutcome, errors: list[StepError]) -> None:
    """Delete our policy from one role, only if the observed document is ours (by its marks,
    or by our record when someone stripped them)."""
    kind = iam_policies.ROLE_POLICIES
    desired = _policy(ctx, name, secret_arn, key_arn)
    recorded = ctx.recorded(ROLE_POLICY, name)
    result = loop.delete_object(kind, iam, desired, actor=ctx.actor or loop.AWS_ACTOR, recorded=recorded)
    out.writes += result.calls
    if result.error is not None:
        # Keep the row so the next reconcile tries the removal again.
        _fail(out, errors, ROLE_POLICY, name, arn, result.error, owned=recorded)
        return
    if result.decision is loop.Decision.LEAVE:
        # A person's or another resource's policy of that name: not ours to delete.
        out.events.append(normal(EVENT_ROLE_POLICY_LEFT, loop.left_message(kind, desired)))
    elif result.decision is loop.Decision.DELETE and (
            result.recovered or (result.written is not None and result.written.facts.get("removed"))):
        out.events.append(normal(EVENT_ROLE_POLICY_REMOVED,
                                 ROLE_POLICY_REMOVED_MESSAGE.format(policy=desired.policy, role=name)))


def check_role_identity(ctx: StepContext) -> StepOutcome:
    """First of all steps, before any write: execution roles given as ARNs are who they say.

    The tenancy guard is pure and judges the ARN's text; the operator writes to a role by
    name, wherever its path (or account) is. So the real ARN must be judged, and that needs
    one AWS read: this is the one tenancy decision that is not made before any AWS call,
    and it is made before any *write* (the pure guard has already passed every other field).
    Roles given by name need nothing (the name is what is written to and what was judged).
    """
    from controller import tenancy
    from controller.aws import role_policies

    out = StepOutcome()
    roles = list(ctx.resolved.spec.grants.executionRoles)
    given = [role for role in roles if role.startswith("arn:")]
    if not given:
        return out
    cache = role_policies.cache_for(getattr(ctx.clients, "_factory", ctx.clients))
    iam = ctx.clients("iam")
    real: dict[str, str | None] = {}
    for role in given:
        try:
            real[role] = cache.role_arn(iam, role)
        except role_policies.READ_ERRORS as error:
            out.error = loop.failure(error, "iam", f"execution role {role}")
            return _carry_forward(ctx, ROLE_POLICY, out)
    problems = tenancy.real_role_problems(ctx.tenancy_policy or tenancy.SHIPPED, ctx.resolved.namespace, roles, real)
    if problems:
        message = "; ".join(str(p) for p in problems)
        out.error = StepError(problems[0].reason, message, False)
        return _carry_forward(ctx, ROLE_POLICY, out)
    return out


def sync_role_policies(ctx: StepContext) -> StepOutcome:
    """Put the read-the-secret policy on every granted role; remove it from roles no longer listed.

    Removing a role from ``grants.executionRoles`` revokes its access whatever the
    deletionPolicy: that policy governs deleting the resource, not editing the list.
    Either way only a policy whose document is ours is removed.
    """
    out = StepOutcome()
    if not ctx.secret_arn:
        out.error = StepError(reasons.DEPENDENCY_MISSING, NO_SECRET_ARN_MESSAGE.format(what="role policies"), True)
        return _carry_forward(ctx, ROLE_POLICY, out)
    key_arn, error = _kms_key_arn(ctx)
    if error:
        out.error = error
        return _carry_forward(ctx, ROLE_POLICY, out)
    iam = ctx.clients("iam")
    errors: list[StepError] = []
    refs = [iam_policies.role_ref(r) for r in ctx.resolved.spec.grants.executionRoles]
    for ref in refs:
        _sync_role(ctx, iam, ref, key_arn, out, errors)
    listed = {ref.name for ref in refs}
    for name, row in ctx.previous_managed(ROLE_POLICY).items():
        if name not in listed and not _foreign(ctx, row.get("arn")):
            _remove_role_policy(ctx, iam, name, row.get("arn"), ctx.secret_arn, key_arn, out, errors)
    out.error = _summary(errors)
    return out


def delete_role_policies(ctx: StepContext) -> StepOutcome:
    """Remove our policy from every role we may have put it on, unless deletionPolicy is Retain.

    The secret step runs after this one on delete, so the secret and key ARNs that the
    migration rule needs come from the last status."""
    if ctx.resolved.spec.deletionPolicy == DeletionPolicy.Retain.value:
        names = [iam_policies.role_ref(r).name for r in ctx.resolved.spec.grants.executionRoles]
        return _retained(ctx, ROLE_POLICY, names)
    out = StepOutcome()
    errors: list[StepError] = []
    iam = ctx.clients("iam")
    previous = ctx.previous_status
    secret_arn = ctx.secret_arn or previous.get("secretArn")
    key_arn = ctx.kms_key_arn or previous.get("kmsKeyArn")
    candidates: dict[str, str | None] = {
        name: row.get("arn") for name, row in ctx.previous_managed(ROLE_POLICY).items()
    }
    for role in ctx.resolved.spec.grants.executionRoles:
        ref = iam_policies.role_ref(role)
        candidates.setdefault(ref.name, role if ref.account else None)
    for name, arn in candidates.items():
        if not _foreign(ctx, arn):
            _remove_role_policy(ctx, iam, name, arn, secret_arn, key_arn, out, errors)
    out.error = _summary(errors)
    return out
