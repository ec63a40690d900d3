"""What a RegistryCredential's managed objects cost per month at list price (issue 31 §3), pure.

Only Secrets Manager secrets have a per-object price (US East list price: $0.40 per secret
per month, the ``--secret-monthly-price`` default); IAM inline policies, task and job
definition revisions and ECR rules cost nothing of their own, and API calls are billed per
10,000 (negligible at the operator's rates), so they are left out. The figure goes to
``status.monthlyCost`` (printer column ``Cost/Month``), the gauge
``regaccess_managed_monthly_cost_dollars`` and a ``regaccess plan`` note.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SECRET_MONTHLY_PRICE = 0.40
MSG_PLAN = "cost: ${before}/month -> ${after}/month at list price ({secrets} Secrets Manager secret(s) at ${price:.2f})"


def secrets_kept(status: dict[str, Any]) -> int:
    """Secrets this resource keeps in Secrets Manager (one once it has an ARN)."""
    return 1 if status.get("secretArn") else 0


def monthly_cost(secrets: int, price: float) -> str:
    """``"0.40"``: dollars per month, two decimals (a string: CRD printer columns show it as is)."""
    return f"{secrets * price:.2f}"


def plan_note(before: dict[str, Any] | None, secrets_after: int, price: float) -> str:
    """The plan's cost line for one RegistryCredential: what it costs now -> after the change."""
    now = (before or {}).get("monthlyCost") or monthly_cost(secrets_kept(before or {}), price)
    return MSG_PLAN.format(before=now, after=monthly_cost(secrets_after, price), secrets=secrets_after, price=price)
