"""The secret step of a RegistryCredential: the Secrets Manager secret, through the loop.

Called by ``controller.reconcile.registry_credential`` first, before every
other step, because they all need the secret ARN (and KMS key ARN). What to do
with the secret (create, adopt, update, only report, refuse, delete) is
decided by ``controller.reconcile.loop``; the adapter is
``controller.aws.secrets.SECRET``. This module only prepares the desired state,
turns the loop's result into status, drift and Events, and hands the ARN on.

Ownership: the tag ``regaccess.io/owner``, and our record, status.secretArn. Ours ->
managed; unmarked but the very secret status records -> ours with the tag removed by hand
(drift ``mark``: tagged again under Remediate, reported as ``MarkRemoved`` under Report,
deleted with the resource); any other unmarked one -> a conflict unless
``spec.adoptExisting``; another owner's -> a conflict always: never tagged, written or
deleted (not even when our resource is deleted).

Call budget: one DescribeSecret per sync. GetSecretValue only when the value
may differ (the source Secret changed, or AWS's AWSCURRENT version is not the
one status recorded, nor the one whose drift was already reported under
driftPolicy Report); PutSecretValue only when it really differs, so writing
the same value again makes no new version. A KMS alias is resolved once and
carried in status (``kmsKeyArn``).
"""

from __future__ import annotations

from typing import Any, Callable

from controller.api import reasons
from controller.api.validation import rule_takes_credential
from controller.aws import kms
from controller.aws import secrets as sm
from controller.aws.protocol import Observation
from controller.reconcile import loop
from controller.reconcile.loop import AWS_ERRORS, Decision
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome

OBJECT = "secret"
MSG_DELETED_OUTSIDE = "secret {name!r} was deleted outside regaccess"


def _value(ctx: StepContext) -> str:
    return sm.secret_string(ctx.credential, pull_through_cache=rule_takes_credential(ctx.resolved.spec))


def _kms_key_arn(ctx: StepContext) -> str | None:
    key_id = ctx.resolved.spec.secret.kmsKeyId
    if not key_id:
        return None
    if kms.is_key_arn(key_id):
        return key_id
    previous = ctx.previous_status
    # Resolved before for the same spec value: no KMS call on a resync.
    if previous.get("kmsKeyArn") and previous.get("kmsKeyId") == key_id:
        return previous["kmsKeyArn"]
    return kms.describe(ctx.clients("kms"), key_id).arn


def _events(name: str, decision: Decision, written: dict[str, Any]) -> list:
    if decision is Decision.CREATE:
        return [normal("SecretCreated", f"created Secrets Manager secret {name!r}")]
    done = list(written.get("fields") or ())
    events = []
    if decision is Decision.ADOPT:
        events.append(normal("SecretAdopted", f"adopted existing Secrets Manager secret {name!r}"))
    if sm.FIELD_DELETED in done:
        events.append(normal("SecretRestored", f"restored secret {name!r} from pending deletion"))
    metadata = [f for f in done if f in (*sm.METADATA_FIELDS, sm.FIELD_TAGS)]
    if metadata and decision is Decision.UPDATE:
        events.append(normal("SecretUpdated", f"updated {', '.join(metadata)} of secret {name!r}"))
    if sm.FIELD_VALUE in done:
        events.append(normal("SecretValueUpdated", f"wrote a new version of secret {name!r}"))
    return events


def _recorded(previous: dict[str, Any]) -> Callable[[Observation], bool]:
    """Our record of the secret: status.secretArn, which names this very secret (AWS adds a
    random suffix to every ARN, so a secret deleted and created again by someone else under
    the same name is not the one recorded)."""
    arn = previous.get("secretArn")

    def held(observation: Observation) -> bool:
        facts: sm.SecretFacts | None = observation.observed if observation.exists else None
        return bool(arn) and facts is not None and facts.arn == arn

    return held


def sync(ctx: StepContext) -> StepOutcome:
    out = StepOutcome()
    previous = ctx.previous_status
    name = ctx.resolved.secret_name
    try:
        kms_key_arn = _kms_key_arn(ctx)
    except AWS_ERRORS as error:
        out.error = loop.failure(error, "kms", f"secret {name!r}")
        return out
    want = sm.desired(
        ctx.resolved, value=_value(ctx), known_version=previous.get("secretVersionId"),
        source_changed=previous.get("sourceResourceVersion") != ctx.source_resource_version,
        kms_key_arn=kms_key_arn, reported_version=previous.get("reportedSecretVersionId"),
    )
    result = loop.sync_object(
        sm.SECRET, ctx.clients, want, actor=ctx.actor or loop.AWS_ACTOR,
        adopt_existing=ctx.resolved.spec.adoptExisting, report_only=not ctx.remediate,
        # status.secretArn is set only by a sync that had the secret in the declared state.
        managed_before=bool(previous.get("secretArn")), ours=ctx.resolved.owner,
        recorded=_recorded(previous),
    )
    out.drifted += [(OBJECT, path) for path in result.drifted]
    out.writes += result.calls
    if result.error is not None:
        out.error = result.error
        return out
    if result.decision is Decision.REPORT and not result.observation.exists:
        # driftPolicy Report: the steps after this one cannot run without the secret.
        out.error = StepError(reasons.DRIFT_REPORTED, MSG_DELETED_OUTSIDE.format(name=name), False)
        return out
    facts = result.written.facts if result.written is not None else {}
    observed: sm.SecretFacts | None = result.observation.observed if result.observation.exists else None
    arn = facts.get("arn") or (observed.arn if observed else None)
    reported = None
    if result.decision is Decision.REPORT and sm.FIELD_VALUE in result.observation.fields:
        # The hand-written value is reported, not taken as ours: keep the version we know,
        # so the next check still finds the drift, and remember the reported version, so
        # that finding it costs no GetSecretValue until AWSCURRENT moves again.
        version = want.known_version
        reported = observed.version if observed else None
    else:
        version = facts.get("versionId") or (observed.version if observed else None)
    out.remediated = result.remediated
    if result.written is not None:
        out.events += _events(name, result.decision, facts)
    out.status.update(
        secretName=name, secretArn=arn, secretVersionId=version, reportedSecretVersionId=reported,
        kmsKeyArn=kms_key_arn,
        kmsKeyId=ctx.resolved.spec.secret.kmsKeyId, sourceResourceVersion=ctx.source_resource_version,
    )
    ctx.secret_arn, ctx.kms_key_arn = arn, kms_key_arn
    return out


def delete(ctx: StepContext) -> StepOutcome:
    out = StepOutcome()
    name = ctx.resolved.secret_name
    retain = ctx.resolved.spec.deletionPolicy == "Retain"
    if retain:
        out.events.append(normal("SecretRetained", f"left secret {name!r} in place (deletionPolicy Retain)"))
        return out
    want = sm.desired(ctx.resolved)  # no value: deleting never reads it
    result = loop.delete_object(sm.SECRET, ctx.clients, want, actor=ctx.actor or loop.AWS_ACTOR,
                                recorded=_recorded(ctx.previous_status))
    out.writes += result.calls
    if result.error is not None:
        out.error = result.error
    elif result.decision is Decision.LEAVE and result.observation.exists:
        # Never delete what is not ours (an adoption was refused, or it is another owner's).
        out.events.append(warning(reasons.OWNERSHIP_CONFLICT, loop.left_message(sm.SECRET, want)))
    elif result.decision is Decision.DELETE and result.calls:
        out.events.append(normal("SecretDeleted", f"deleted secret {name!r}"))
    return out


def status_fields() -> tuple[str, ...]:
    return ("secretName", "secretArn", "secretVersionId", "reportedSecretVersionId", "kmsKeyArn", "kmsKeyId",
            "sourceResourceVersion")


__all__: list[Any] = ["sync", "delete"]
