"""The cost view against moto: a synced RegistryCredential reads status.monthlyCost at the set
price, and regaccess plan prints the cost line of the change (new: $0.00 -> $0.40)."""

from __future__ import annotations

import pytest

from controller import plan
from controller.reconcile import registry_credential as rc
from tests.aws import test_plan_aws as tp
from tests.aws import wired_world as ww
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws


def test_status_monthly_cost_at_the_price(factory):
    spec = {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}}
    request = rc.Request(namespace=ww.NS, name=ww.NAME, generation=1, spec=spec, status={},
                         source_secret=ww.SOURCE, cluster_id=ww.CLUSTER)
    assert rc.reconcile(request, ww.clients_for(factory), tenancy_policy=OPEN).status["monthlyCost"] == "0.40"
    result = rc.reconcile(request, ww.clients_for(factory), secret_monthly_price=0.5, tenancy_policy=OPEN)
    assert result.ready and result.status["monthlyCost"] == "0.50"


def test_plan_prints_the_cost_line_of_the_change(aws):
    [obj] = tp.run_plan(plan.read_only_factory(), tp.rc_manifest(), tp.source_secret())
    assert any(n.startswith("cost: $0.00/month -> $0.40/month") for n in obj.notes), obj.notes
    assert "cost: $0.00/month -> $0.40/month" in plan.render_text(plan.Plan([obj], aws=True))
