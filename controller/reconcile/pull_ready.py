"""PullReady: can the consumers' tasks actually pull? (issue 31 §2; kopf-free)

Runs as the last RegistryCredential step, after the definitions steps recorded what they
found in ``ctx.consumers`` (each definition's label, execution role and containers). For
every consumer container it asks ``controller.iam_eval``:

- a container wired to our secret: may its execution role call
  ``secretsmanager:GetSecretValue`` on the secret ARN (identity policies, and the secret's
  resource policy), and ``kms:Decrypt`` on the customer managed key when the secret has one
  (identity policies and the key policy, which must allow the role itself or delegate to
  IAM through the account principal)? An ECR image in such a container is a finding: ECR
  images take no repositoryCredentials.
- any container with an ECR image: may the role call ``ecr:GetAuthorizationToken`` (``*``),
  ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer`` on the repository (identity
  policies only; a repository policy in another account is not read)?
- a container of a managed definition whose image is not in ECR (nor ECR Public) and that has
  no repositoryCredentials at all: reported (it pulls anonymously, or not at all).

The verdict is ``True`` (every check allows), ``False`` (the first blocking finding names
the reason: ``ExplicitDeny`` with the statement that denies, ``PermissionMissing`` with the
action and resource, or an image finding), or ``Unknown`` (``EvaluationUnknown``: a
condition key or operator the evaluator does not know, a permissions boundary, a policy the
operator may not read). PullReady is informative: it never changes Ready, Synced or the
retry schedule (the writes are done; a role someone else owns is not ours to fix), and a
read that fails transiently keeps the previous verdict.

``verdict()`` is pure over facts; ``sync()`` is the step (reads through
``controller.aws.role_policies``'s cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from controller.api import reasons
from controller.aws import iam_policies, kms
from controller.aws import role_policies
from controller.aws.role_policies import ResourcePolicy, RoleFacts
from controller.iam_eval import Decision, Policy, Request, Verdict, account_principal, ecr_image, evaluate, statements
from controller.reconcile import wiring
from controller.reconcile.steps import StepContext, StepOutcome

GET_SECRET = "secretsmanager:GetSecretValue"
DECRYPT = "kms:Decrypt"
ECR_TOKEN = "ecr:GetAuthorizationToken"
ECR_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
MAX_FINDINGS = 5  # in the message; the condition stays short


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    image: str
    wired: bool                 # its repositoryCredentials reference our secret
    has_credentials: bool       # any repositoryCredentials at all


@dataclass(frozen=True)
class ConsumerFacts:
    """One consumer definition as the definitions step saw it."""

    label: str                  # "task definition web:3"
    execution_role: str
    containers: tuple[ContainerFacts, ...]


@dataclass(frozen=True)
class Finding:
    status: str                 # "False" | "Unknown"
    reason: str
    message: str


@dataclass
class Outcome:
    status: str
    reason: str
    message: str
    findings: list[Finding] = field(default_factory=list)


def _account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 else ""


def _context(role_arn: str, **extra: Any) -> dict[str, Any]:
    """The request context keys whose value (or absence) PullReady knows: the ECS agent
    calls with the execution role's session over TLS, directly (not via a service)."""
    return {
        "aws:PrincipalArn": role_arn,
        "aws:PrincipalAccount": _account(role_arn),
        "aws:PrincipalType": "AssumedRole",
        "aws:SecureTransport": "true",
        "aws:ViaAWSService": "false",
        "aws:CalledVia": None,
        **extra,
    }


def _blocked(what: str, action: str, resource: str, verdict: Verdict, via: str = "") -> Finding:
    where = f"{what} (execution role {via})" if via else what
    if verdict.decision is Decision.EXPLICIT_DENY:
        return Finding("False", reasons.EXPLICIT_DENY,
                       f"{where}: {action} on {resource} is denied by {verdict.statement}")
    if verdict.decision is Decision.UNKNOWN:
        detail = f" ({verdict.detail})" if verdict.detail else ""
        return Finding("Unknown", reasons.EVALUATION_UNKNOWN,
                       f"{where}: {action} on {resource} cannot be decided from {verdict.statement}{detail}")
    return Finding("False", reasons.PERMISSION_MISSING,
                   f"{where}: no statement allows {action} on {resource}" + (f" ({verdict.detail})" if verdict.detail else ""))


def combine_secret(identity: Verdict, resource_policy: ResourcePolicy, role_arn: str, secret_arn: str,
                   request: Request) -> Verdict:
    """Pure: identity + the secret's resource policy (AWS: a Deny in either wins; in the same
    account an Allow in either suffices; across accounts both must allow)."""
    if resource_policy.unreadable:
        if identity.decision is Decision.EXPLICIT_DENY:
            return identity
        return Verdict(Decision.UNKNOWN, "the secret's resource policy", f"{resource_policy.unreadable} refused")
    resource = (evaluate([Policy("the secret's resource policy", resource_policy.document)], request, principal=role_arn)
                if resource_policy.document else Verdict(Decision.IMPLICIT_DENY))
    for verdict in (identity, resource):
        if verdict.decision is Decision.EXPLICIT_DENY:
            return verdict
    for verdict in (identity, resource):
        if verdict.decision is Decision.UNKNOWN:
            return verdict
    # A secret not created yet (regaccess plan: secrets.PENDING_ARN) has no account in its
    # name; the operator creates it where it grants roles (iam_policies.account_problem
    # refuses a role in another account), so it is judged as in the role's account.
    if _account(role_arn) == _account(secret_arn) or not _account(secret_arn):
        return identity if identity.decision is Decision.ALLOW else resource if resource.decision is Decision.ALLOW \
            else identity
    if identity.decision is Decision.ALLOW and resource.decision is Decision.ALLOW:
        return identity
    return identity if identity.decision is not Decision.ALLOW else Verdict(
        Decision.IMPLICIT_DENY, "", "across accounts the secret's resource policy must allow it too")


def combine_key(identity: Verdict, key_policy: ResourcePolicy, role_arn: str, key_arn: str,
                request: Request) -> Verdict:
    """Pure: KMS's rule: the key policy must allow, either naming the role (or ``*``) or
    naming the account, which delegates to the identity policies; a Deny in either wins."""
    if identity.decision is Decision.EXPLICIT_DENY:
        return identity
    if key_policy.unreadable or not key_policy.document:
        return Verdict(Decision.UNKNOWN, "the key policy",
                       f"{key_policy.unreadable or 'kms:GetKeyPolicy'} refused")
    name = f"the key policy of {key_arn}"
    whole = evaluate([Policy(name, key_policy.document)], request, principal=role_arn)
    if whole.decision in (Decision.EXPLICIT_DENY, Decision.UNKNOWN):
        return whole
    account = _account(key_arn)
    direct = [s for s in statements(key_policy.document) if not account_principal(s, account)]
    direct_verdict = evaluate([Policy(name, {"Statement": direct})], request, principal=role_arn)
    if direct_verdict.decision is Decision.ALLOW:
        return identity if identity.decision is Decision.UNKNOWN else direct_verdict
    if whole.decision is Decision.ALLOW and _account(role_arn) == account:
        return identity  # the key policy lets IAM policies decide
    return Verdict(Decision.IMPLICIT_DENY, "", f"{name} neither allows the role nor delegates to its account")


def verdict(consumers: list[ConsumerFacts], roles: dict[str, RoleFacts], secret_arn: str, key_arn: str | None,
            secret_policy: ResourcePolicy | None, key_policy: ResourcePolicy | None) -> Outcome | None:
    """Pure: the PullReady condition for these facts; None when there are no consumers."""
    if not consumers:
        return None
    findings: list[Finding] = []
    for consumer in consumers:
        facts = roles[consumer.execution_role]
        who = consumer.label
        if facts.missing:
            findings.append(Finding("False", reasons.PERMISSION_MISSING,
                                    f"{who}: execution role {facts.arn} does not exist"))
            continue
        if facts.unreadable or facts.boundary:
            why = (f"{facts.unreadable} refused for execution role {facts.arn}" if facts.unreadable else
                   f"execution role {facts.arn} has a permissions boundary ({facts.boundary}), which is not evaluated")
            findings.append(Finding("Unknown", reasons.EVALUATION_UNKNOWN, f"{who}: {why}"))
            continue
        role = facts.arn

        def check(action: str, resource: str, combine: Callable[[Verdict, Request], Verdict] | None = None,
                  **context: Any) -> None:
            request = Request(action, resource, _context(role, **context))
            result = evaluate(facts.policies, request)
            if combine is not None:
                result = combine(result, request)
            if result.decision is not Decision.ALLOW:
                findings.append(_blocked(who, action, resource, result, role))

        wired = [c for c in consumer.containers if c.wired]
        for container in consumer.containers:
            if ecr_image(container.image) and container.wired:
                findings.append(Finding("False", reasons.ECR_IMAGE_WITH_REPOSITORY_CREDENTIALS,
                                        f"{who}: container {container.name} pulls {container.image} from ECR, "
                                        "which takes no repositoryCredentials"))
            elif not ecr_image(container.image) and not container.has_credentials \
                    and not container.image.startswith("public.ecr.aws/"):
                findings.append(Finding("False", reasons.IMAGE_NEEDS_REPOSITORY_CREDENTIALS,
                                        f"{who}: container {container.name} pulls {container.image} from a "
                                        "registry outside ECR without repositoryCredentials"))
        if wired:
            check(GET_SECRET, secret_arn,
                  lambda v, r: combine_secret(v, secret_policy or ResourcePolicy(), role, secret_arn, r),
                  **{"secretsmanager:SecretId": secret_arn})
            if key_arn:
                check(DECRYPT, key_arn, lambda v, r: combine_key(v, key_policy or ResourcePolicy(), role, key_arn, r),
                      **{"kms:ViaService": f"secretsmanager.{_region(secret_arn)}.amazonaws.com",
                         "kms:CallerAccount": _account(role),
                         "kms:EncryptionContext:SecretARN": secret_arn,
                         "kms:EncryptionContextKeys": ["SecretARN", "SecretVersionId"],
                         "aws:ViaAWSService": "true"})
        repositories = sorted({ecr_image(c.image) for c in consumer.containers if ecr_image(c.image)})
        if repositories:
            check(ECR_TOKEN, "*")
        for account, region, repository in repositories:
            for action in ECR_PULL:
                check(action, f"arn:aws:ecr:{region}:{account}:repository/{repository}")
    return summarize(findings)


def summarize(findings: list[Finding]) -> Outcome:
    """Pure: False beats Unknown beats True; the first finding of that status names the reason."""
    if not findings:
        return Outcome("True", reasons.PULL_READY, "every consumer's execution role can read the registry "
                       "credential and pull its images")
    for status in ("False", "Unknown"):
        chosen = [f for f in findings if f.status == status]
        if chosen:
            shown = "; ".join(dict.fromkeys(f.message for f in chosen[:MAX_FINDINGS]))
            more = len(chosen) - MAX_FINDINGS
            return Outcome(status, chosen[0].reason, shown + (f"; and {more} more" if more > 0 else ""), findings)
    raise AssertionError("unreachable")


def _key_arn(ctx: StepContext) -> str | None:
    key = ctx.kms_key_arn or ctx.previous_status.get("kmsKeyArn")
    return key if kms.is_key_arn(key) else None


def forget_roles(ctx: StepContext, roles: list[str]) -> None:
    """The operator wrote its inline policy on these roles: the next read is fresh."""
    cache = role_policies.cache_for(getattr(ctx.clients, "_factory", ctx.clients))
    for role in roles:
        cache.forget(role)


def sync(ctx: StepContext) -> StepOutcome:
    """The step: read the facts (cached) and leave the verdict in ``ctx.pull_ready``.

    Never an error: a transient failure leaves ``ctx.pull_ready`` unset, so the previous
    condition stays."""
    consumers: list[ConsumerFacts] = list(ctx.consumers)
    ctx.pull_ready = None
    if not ctx.secret_arn:
        return StepOutcome()
    if not consumers:
        ctx.pull_ready = Outcome("", "", "")  # remove the condition: nothing consumes the secret
        return StepOutcome()
    cache = role_policies.cache_for(getattr(ctx.clients, "_factory", ctx.clients))
    try:
        iam = ctx.clients("iam")
        roles = {c.execution_role: cache.role(iam, c.execution_role) for c in consumers}
        wired = any(c.wired for consumer in consumers for c in consumer.containers)
        secret_policy = cache.secret_policy(ctx.clients("secretsmanager"), ctx.secret_arn) if wired else None
        key_arn = _key_arn(ctx) if wired else None
        key_policy = cache.key_policy(ctx.clients("kms"), key_arn) if key_arn else None
    except role_policies.READ_ERRORS:
        return StepOutcome()
    if ctx.remediate:
        roles = {role: with_our_grant(ctx, role, facts, key_arn) for role, facts in roles.items()}
    ctx.pull_ready = verdict(consumers, roles, ctx.secret_arn, key_arn, secret_policy, key_policy)
    return StepOutcome()


def with_our_grant(ctx: StepContext, role: str, facts: RoleFacts, key_arn: str | None) -> RoleFacts:
    """A pass that got here under Remediate has put our inline policy on every granted role
    as ``iam_policies.desired`` says (or, in ``regaccess plan``, would have): count that
    document, not what a cache entry from before the write (or the plan's untouched AWS)
    holds. Under Report the observed document is the truth."""
    if facts.missing or facts.unreadable or not wiring.execution_role_granted(
            role, list(ctx.resolved.spec.grants.executionRoles)):
        return facts
    name = f"inline policy {ctx.resolved.policy_name}"
    ours = Policy(name, iam_policies.desired(ctx.secret_arn or "", key_arn, ctx.resolved.owner))
    return replace(facts, policies=tuple(p for p in facts.policies if p.name != name) + (ours,))
