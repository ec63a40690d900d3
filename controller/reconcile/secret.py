"""The secret step of a RegistryCredential: keep the Secrets Manager secret in line.

Called by ``controller.reconcile.registry_credential`` first, before every
other step, because they all need the secret ARN (and KMS key ARN).

Call budget: one DescribeSecret per sync. GetSecretValue only when the value
may differ (the source Secret changed, or AWS's AWSCURRENT version is not the
one we last wrote); PutSecretValue only when it really differs, so writing
the same value again makes no new version.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.api import reasons
from controller.aws import errors, kms
from controller.aws import secrets as sm
from controller.reconcile.result import normal, warning
from controller.reconcile.steps import StepContext, StepError, StepOutcome

OBJECT = "secret"
CONFLICT_MESSAGE = (
    "secret {name!r} exists and is not tagged regaccess.io/owner={owner}; set spec.adoptExisting: "
    "true to take it over, or choose another spec.secret.name"
)


def step_error(error: BaseException, what: str) -> StepError:
    """Turn an AWS exception into a StepError (the one place steps classify)."""
    found = errors.classify(error)
    return StepError(found.reason, f"{what}: {found.describe()}", found.retryable)


def _value(ctx: StepContext) -> str:
    return sm.secret_string(ctx.credential, pull_through_cache=ctx.resolved.spec.pullThroughCache is not None)


def _kms_key_arn(ctx: StepContext) -> str | None:
    key_id = ctx.resolved.spec.secret.kmsKeyId
    if not key_id:
        return None
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    previous = ctx.previous_status
    # Resolved before for the same spec value: no KMS call on a resync.
    if previous.get("kmsKeyArn") and previous.get("kmsKeyId") == key_id:
        return previous["kmsKeyArn"]
    return kms.describe(ctx.clients("kms"), key_id).arn


def sync(ctx: StepContext) -> StepOutcome:
    out = StepOutcome()
    client = ctx.clients("secretsmanager")
    want = sm.desired(ctx.resolved)
    previous = ctx.previous_status
    try:
        kms_key_arn = _kms_key_arn(ctx)
        obs = sm.observe(client, want.name, ctx.resolved.owner)
        if not obs.exists:
            if previous.get("secretArn"):
                out.drifted.append((OBJECT, "existence"))
                if not ctx.remediate:
                    out.error = StepError(reasons.DRIFT_REPORTED, f"secret {want.name!r} was deleted outside regaccess", False)
                    return out
            try:
                created = sm.create(client, want, _value(ctx))
            except ClientError as error:
                if not errors.is_already_exists(error):
                    raise
                # Someone (or our own earlier, lost attempt) created it: observe again.
                obs = sm.observe(client, want.name, ctx.resolved.owner)
            else:
                out.writes += 1
                out.remediated = bool(out.drifted)
                out.events.append(normal("SecretCreated", f"created Secrets Manager secret {want.name!r}"))
                out.status.update(
                    secretName=want.name, secretArn=created["ARN"], secretVersionId=created.get("VersionId"),
                    kmsKeyArn=kms_key_arn, kmsKeyId=ctx.resolved.spec.secret.kmsKeyId,
                    sourceResourceVersion=ctx.source_resource_version,
                )
                ctx.secret_arn, ctx.kms_key_arn = created["ARN"], kms_key_arn
                return out
        observed = obs.observed
        arn = observed["ARN"]
        if not obs.owned:
            if not ctx.resolved.spec.adoptExisting:
                out.error = StepError(
                    reasons.OWNERSHIP_CONFLICT, CONFLICT_MESSAGE.format(name=want.name, owner=ctx.resolved.owner), False
                )
                return out
            sm.adopt(client, arn, ctx.resolved.owner)
            out.writes += 1
            out.events.append(normal("SecretAdopted", f"adopted existing Secrets Manager secret {want.name!r}"))
        if observed.get("DeletedDate"):
            # Ours and scheduled for deletion (the resource was deleted and re-created):
            # restore it rather than fail every write with InvalidRequestException.
            sm.restore(client, arn)
            out.writes += 1
            out.events.append(normal("SecretRestored", f"restored secret {want.name!r} from pending deletion"))

        kms_equal = None
        if want.kms_key_id and observed.get("KmsKeyId") not in (None, want.kms_key_id):
            # Spelled differently (alias in the spec, key ARN in AWS): the key ARN resolved
            # before settles it without a KMS call at every drift check.
            if kms_key_arn and observed["KmsKeyId"] == kms_key_arn:
                kms_equal = True
            else:
                kms_equal = kms.describe(ctx.clients("kms"), observed["KmsKeyId"]).arn == kms_key_arn
        differences = sm.compare(want, observed, kms_key_equal=kms_equal)
        if differences:
            out.drifted += [(OBJECT, field) for field in differences]
            if ctx.remediate:
                out.writes += sm.update_metadata(client, arn, want, differences, observed)
                out.remediated = True
                out.events.append(normal("SecretUpdated", f"updated {', '.join(differences)} of secret {want.name!r}"))

        version = sm.current_version(observed)
        version_id = previous.get("secretVersionId")
        source_changed = previous.get("sourceResourceVersion") != ctx.source_resource_version
        if version is None or version != version_id or source_changed:
            current = sm.current_value(client, arn)
            desired_value = _value(ctx)
            if sm.same_value(current, desired_value):
                version_id = version
            else:
                if version_id and version != version_id and not source_changed:
                    out.drifted.append((OBJECT, "SecretString"))
                if ctx.remediate or source_changed:
                    version_id = sm.put_value(client, arn, desired_value)
                    out.writes += 1
                    out.remediated = out.remediated or bool(out.drifted)
                    out.events.append(normal("SecretValueUpdated", f"wrote a new version of secret {want.name!r}"))
        out.status.update(
            secretName=want.name, secretArn=arn, secretVersionId=version_id, kmsKeyArn=kms_key_arn,
            kmsKeyId=ctx.resolved.spec.secret.kmsKeyId, sourceResourceVersion=ctx.source_resource_version,
        )
        ctx.secret_arn, ctx.kms_key_arn = arn, kms_key_arn
    except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as error:
        out.error = step_error(error, f"secret {want.name!r}")
    return out


def delete(ctx: StepContext) -> StepOutcome:
    out = StepOutcome()
    spec = ctx.resolved.spec
    name = ctx.resolved.secret_name
    if spec.deletionPolicy == "Retain":
        out.events.append(normal("SecretRetained", f"left secret {name!r} in place (deletionPolicy Retain)"))
        return out
    client = ctx.clients("secretsmanager")
    try:
        obs = sm.observe(client, name, ctx.resolved.owner)
        if not obs.exists or obs.observed.get("DeletedDate"):
            return out
        if not obs.owned:
            # Never delete what is not ours (an adoption was refused, or ownership changed hands).
            out.events.append(warning(reasons.OWNERSHIP_CONFLICT, f"left secret {name!r}: it is not owned by this resource"))
            return out
        sm.delete(
            client, obs.observed["ARN"],
            recovery_window_days=spec.secret.recoveryWindowInDays,
            force=bool(spec.secret.forceDeleteWithoutRecovery),
        )
        out.writes += 1
        out.events.append(normal("SecretDeleted", f"deleted secret {name!r}"))
    except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as error:
        out.error = step_error(error, f"secret {name!r}")
    return out


def status_fields() -> tuple[str, ...]:
    return ("secretName", "secretArn", "secretVersionId", "kmsKeyArn", "kmsKeyId", "sourceResourceVersion")


__all__: list[Any] = ["sync", "delete", "step_error"]
