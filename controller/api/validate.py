"""One dispatch from a kind's name to its validator, for callers that hold any of the three kinds.

The reconcile modules call their own kind's validator directly; the operator's tenancy index
(``controller.handlers``) and ``regaccess plan`` see all kinds and go through ``validate`` here,
so the mapping from kind to validator is written once. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, REGISTRY_CREDENTIAL
from controller.api.validation import Problem, validate_registry_credential
from controller.api.validation_pull import validate_pull_secret
from controller.api.validation_xrepo import validate_cross_account

VALIDATORS = {
    REGISTRY_CREDENTIAL.kind: validate_registry_credential,
    CROSS_ACCOUNT_REPO_ACCESS.kind: validate_cross_account,
    ECR_PULL_SECRET.kind: validate_pull_secret,
}


def validate(kind: str, namespace: str, name: str, spec: dict[str, Any], *,
             cluster_id: str) -> tuple[Any | None, list[Problem]]:
    """Validate ``spec`` as ``kind`` (one of VALIDATORS; KeyError for any other kind)."""
    return VALIDATORS[kind](namespace, name, spec, cluster_id=cluster_id)
