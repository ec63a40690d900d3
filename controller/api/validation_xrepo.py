"""Validate a CrossAccountRepoAccess before any AWS call (pure).

``validate_cross_account()`` is called by ``controller.reconcile.cross_account``
(reconcile and delete), and by anything else that judges manifests (``regaccess
plan``, tests), so a manifest is judged the same way everywhere. It returns a
resolved view of the resource or every problem at once, each with a field path,
the rule broken and a specific condition reason:

- ``InvalidGrant``: a principal that is malformed, sets zero or several of
  accountId / roleArn / organizationId, or appears twice; an unknown access
  level; an empty grant list;
- ``InvalidRepositoryName``: a repository name or prefix that breaks ECR's pattern;
- ``InvalidSpec``: anything else (neither repositories nor repositoryPrefixes, a
  duplicate repository or prefix, bad region, unknown field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from controller.api import reasons
from controller.api.models import CrossAccountRepoAccessSpec, Principal
from controller.api.validation import Problem, owner_value, pydantic_problems

PRINCIPAL_KINDS = ("accountId", "roleArn", "organizationId")

MSG_EMPTY_GRANTS = "at least one grant is required (a grant lists principals and an access level)"
MSG_EMPTY_PRINCIPALS = "a grant needs at least one principal"
MSG_EMPTY_REPOSITORIES = "at least one repository is required"
MSG_NO_TARGET = "at least one of spec.repositories and spec.repositoryPrefixes is required"
MSG_PREFIX_DUPLICATE = "repository prefix {prefix!r} is listed twice (also at {other})"
MSG_PRINCIPAL_NONE = "a principal must set exactly one of accountId, roleArn, organizationId; it sets none"
MSG_PRINCIPAL_MANY = "a principal must set exactly one of accountId, roleArn, organizationId; it sets {kinds}"
MSG_PRINCIPAL_DUPLICATE = (
    "principal {kind} {value} is already granted by {other} (access {other_access}); "
    "a principal may appear in one grant only: merge the grants or choose PullPush"
)
# Pattern failures, said as the rule rather than as the regular expression.
MSG_PATTERN = {
    "accountId": "an AWS account ID is exactly 12 digits",
    "roleArn": "must be an IAM role ARN: arn:aws:iam::<12-digit account ID>:role/<path and name>",
    "organizationId": "an AWS Organization ID is o- followed by 10-32 lower-case letters or digits",
    "repositories": "ECR repository names are 2-256 characters: lower-case letters and digits, in "
    "components separated by '/', '.', '_' or '-'",
    "repositoryPrefixes": "a repository prefix is ROOT or 2-256 characters: lower-case letters and "
    "digits, in components separated by '/', '.', '_' or '-' (no trailing '/')",
}
MSG_REPOSITORY_DUPLICATE = "repository {repository!r} is listed twice (also at {other})"


@dataclass(frozen=True)
class ResolvedCrossAccountRepoAccess:
    """A CrossAccountRepoAccess with defaults applied; what reconcile works from."""

    namespace: str
    name: str
    spec: CrossAccountRepoAccessSpec
    owner: str  # <cluster-id>/<namespace>/<name>, as in the regaccess.io/owner tag


def principal_key(principal: Principal) -> tuple[str, str]:
    """(kind, value) of a principal that sets exactly one kind."""
    for kind in PRINCIPAL_KINDS:
        value = getattr(principal, kind)
        if value is not None:
            return kind, value
    raise ValueError("principal sets no kind")  # callers validate first


def _reason_for(path: str) -> str:
    # A malformed principal or access level is a grant problem, a name that breaks
    # ECR's pattern a repository problem: the reason tells the user where to look.
    if path.startswith("spec.grants"):
        return reasons.INVALID_GRANT
    if path.startswith("spec.repositories") or path.startswith("spec.repositoryPrefixes"):
        return reasons.INVALID_REPOSITORY_NAME
    return reasons.INVALID_SPEC


def field_path(loc: tuple[Any, ...], prefix: str = "spec") -> str:
    """``("grants", 0, "principals")`` -> ``spec.grants[0].principals``, as users write paths."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _parse_problems(error: pydantic.ValidationError) -> list[Problem]:
    problems = []
    for parsed, item in zip(pydantic_problems(error), error.errors()):
        problem = Problem(parsed.reason, field_path(item["loc"]), parsed.message)
        message = problem.message
        if item["type"] == "too_short":
            message = {
                "spec.grants": MSG_EMPTY_GRANTS,
                "spec.repositories": MSG_EMPTY_REPOSITORIES,
            }.get(problem.field, MSG_EMPTY_PRINCIPALS if problem.field.endswith(".principals") else message)
        elif item["type"] in ("string_pattern_mismatch", "string_too_short", "string_too_long"):
            names = [part for part in item["loc"] if isinstance(part, str)]
            message = MSG_PATTERN.get(names[-1] if names else "", message)
        reason = _reason_for(problem.field)
        if problem.field in ("spec.repositories", "spec.repositoryPrefixes") and item["type"] != "too_short":
            reason = reasons.INVALID_SPEC  # not a list at all: not a name problem
        problems.append(Problem(reason, problem.field, message))
    return problems


def _semantic_problems(model: CrossAccountRepoAccessSpec) -> list[Problem]:
    problems: list[Problem] = []
    seen_principals: dict[tuple[str, str], tuple[str, str]] = {}
    for g, grant in enumerate(model.grants):
        for p, principal in enumerate(grant.principals):
            field = f"spec.grants[{g}].principals[{p}]"
            kinds = [k for k in PRINCIPAL_KINDS if getattr(principal, k) is not None]
            if not kinds:
                problems.append(Problem(reasons.INVALID_GRANT, field, MSG_PRINCIPAL_NONE))
                continue
            if len(kinds) > 1:
                problems.append(
                    Problem(reasons.INVALID_GRANT, field, MSG_PRINCIPAL_MANY.format(kinds=", ".join(kinds)))
                )
                continue
            key = principal_key(principal)
            if key in seen_principals:
                other, other_access = seen_principals[key]
                problems.append(
                    Problem(
                        reasons.INVALID_GRANT,
                        field,
                        MSG_PRINCIPAL_DUPLICATE.format(
                            kind=key[0], value=key[1], other=other, other_access=other_access
                        ),
                    )
                )
                continue
            seen_principals[key] = (field, grant.access)
    if not model.repositories and not model.repositoryPrefixes:
        # The reason an empty repository list always had: the user looks at the names.
        problems.append(Problem(reasons.INVALID_REPOSITORY_NAME, "spec.repositories", MSG_NO_TARGET))
    first_prefix: dict[str, int] = {}
    for index, prefix in enumerate(model.repositoryPrefixes):
        if prefix in first_prefix:
            problems.append(Problem(reasons.INVALID_SPEC, f"spec.repositoryPrefixes[{index}]",
                                    MSG_PREFIX_DUPLICATE.format(
                                        prefix=prefix, other=f"spec.repositoryPrefixes[{first_prefix[prefix]}]")))
        else:
            first_prefix[prefix] = index
    first_index: dict[str, int] = {}
    for index, repository in enumerate(model.repositories):
        if repository in first_index:
            problems.append(
                Problem(
                    reasons.INVALID_SPEC,
                    f"spec.repositories[{index}]",
                    MSG_REPOSITORY_DUPLICATE.format(
                        repository=repository, other=f"spec.repositories[{first_index[repository]}]"
                    ),
                )
            )
        else:
            first_index[repository] = index
    return problems


def validate_cross_account(
    namespace: str, name: str, spec: dict[str, Any], *, cluster_id: str
) -> tuple[ResolvedCrossAccountRepoAccess | None, list[Problem]]:
    """Parse and check a CrossAccountRepoAccess spec; returns (resolved, []) or (None, problems)."""
    try:
        model = CrossAccountRepoAccessSpec.model_validate(spec or {})
    except pydantic.ValidationError as error:
        return None, _parse_problems(error)
    problems = _semantic_problems(model)
    if problems:
        return None, problems
    return (
        ResolvedCrossAccountRepoAccess(
            namespace=namespace, name=name, spec=model, owner=owner_value(cluster_id, namespace, name)
        ),
        [],
    )
