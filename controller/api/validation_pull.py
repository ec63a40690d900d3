"""Validate an ECRPullSecret before any AWS or Kubernetes call (pure).

``validate_pull_secret()`` is called by ``controller.reconcile.pull_secret``
(reconcile and delete) and by ``regaccess plan``. It returns a resolved view
(defaults applied) or every problem at once, each with a field path and a
specific reason:

- ``InvalidRegistryId``: ``registries[].registryId`` is not exactly 12 digits;
- ``UnknownRegion``: a Region (``registries[].region``) that is not among the
  ``known_regions`` given (the reconcile passes every ECR Region botocore knows,
  ``controller.aws.ecr_tokens.regions()``), or one that is malformed;
- ``InvalidSpec``: anything else (a duplicate registry, a bad secretName,
  ServiceAccount name or roleArn, an unknown field).

Whether the named ServiceAccounts exist, and whose a Secret of that name is,
needs the API server: the reconcile judges those (``ServiceAccountNotFound``,
``OwnershipConflict``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection

import pydantic

from controller.api import reasons
from controller.api.models import ACCOUNT_ID_PATTERN, ECRPullSecretSpec
from controller.api.validation import Problem, owner_value
from controller.api.validation_xrepo import field_path

MSG_REGISTRY_ID = "an ECR registry ID is the AWS account ID: exactly 12 digits"
MSG_REGION = "{region!r} is not an AWS Region with ECR (known to botocore: {examples}, ...)"
MSG_REGION_PATTERN = "not an AWS Region name (for example eu-west-1)"
MSG_DUPLICATE = "registry {registry} is listed twice (also at {other})"


@dataclass(frozen=True)
class Registry:
    registry_id: str | None  # None: the account of the identity (or of roleArn)
    region: str | None       # None: the operator's Region


@dataclass(frozen=True)
class ResolvedPullSecret:
    namespace: str
    name: str
    spec: ECRPullSecretSpec
    secret_name: str
    registries: tuple[Registry, ...]
    service_accounts: tuple[str, ...]
    owner: str  # <cluster-id>/<namespace>/<name>


def region_problem(region: str | None, field: str, known: Collection[str] | None) -> Problem | None:
    """``known``: the Regions with ECR (``controller.aws.ecr_tokens.regions()``, from botocore's
    endpoint data; this layer does not import botocore); None skips the check."""
    if region is None or known is None or region in known:
        return None
    examples = ", ".join(sorted(known)[:3])
    return Problem(reasons.UNKNOWN_REGION, field, MSG_REGION.format(region=region, examples=examples))


def _parse_problems(error: pydantic.ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = field_path(item["loc"])
        names = [part for part in item["loc"] if isinstance(part, str)]
        last = names[-1] if names else ""
        if last == "registryId":
            problems.append(Problem(reasons.INVALID_REGISTRY_ID, path, MSG_REGISTRY_ID))
        elif last == "region" and path.startswith("spec.registries"):
            problems.append(Problem(reasons.UNKNOWN_REGION, path, MSG_REGION_PATTERN))
        else:
            problems.append(Problem(reasons.INVALID_SPEC, path, item["msg"]))
    return problems


def validate_pull_secret(namespace: str, name: str, spec: dict[str, Any], *, cluster_id: str,
                         default_region: str | None = None, known_regions: Collection[str] | None = None,
                         ) -> tuple[ResolvedPullSecret | None, list[Problem]]:
    """Parse and check an ECRPullSecret spec; (resolved, []) or (None, problems).

    ``default_region`` (the operator's) is checked too when a registry leaves its
    Region out, so a mistyped AWS_REGION is named as such.
    """
    try:
        model = ECRPullSecretSpec.model_validate(spec or {})
    except pydantic.ValidationError as error:
        return None, _parse_problems(error)
    problems: list[Problem] = []
    registries = [Registry(r.registryId, r.region) for r in model.registries] or [Registry(None, None)]
    seen: dict[tuple[str | None, str | None], int] = {}
    for index, registry in enumerate(registries):
        field = f"spec.registries[{index}]"
        # The CRD schema leaves registryId a plain string (so the object is stored and its
        # status says what is wrong); the 12 digits are checked here.
        if registry.registry_id is not None and not re.fullmatch(ACCOUNT_ID_PATTERN, registry.registry_id):
            problems.append(Problem(reasons.INVALID_REGISTRY_ID, f"{field}.registryId", MSG_REGISTRY_ID))
        problem = region_problem(registry.region, f"{field}.region", known_regions)
        if problem is None and registry.region is None:
            problem = region_problem(default_region, f"{field}.region (the operator's AWS_REGION)", known_regions)
        if problem:
            problems.append(problem)
        key = (registry.registry_id, registry.region or default_region)
        if key in seen:
            what = f"{key[0] or '(default account)'} in {key[1] or '(default Region)'}"
            problems.append(Problem(reasons.INVALID_SPEC, field,
                                    MSG_DUPLICATE.format(registry=what, other=f"spec.registries[{seen[key]}]")))
        else:
            seen[key] = index
    for index, account in enumerate(model.serviceAccounts):
        if account in model.serviceAccounts[:index]:
            problems.append(Problem(reasons.INVALID_SPEC, f"spec.serviceAccounts[{index}]",
                                    f"ServiceAccount {account} is listed twice"))
    if problems:
        return None, problems
    return ResolvedPullSecret(
        namespace=namespace, name=name, spec=model, secret_name=model.secretName or name,
        registries=tuple(registries), service_accounts=tuple(model.serviceAccounts),
        owner=owner_value(cluster_id, namespace, name),
    ), []
