"""Alert rules and the dashboard: promtool checks and unit-tests every alert; every metric they
query is one the operator exports (controller/metrics.py; the e2e RBAC test checks the same
names against a real /metrics scrape).

promtool comes from the Debian package ``prometheus`` (.ci/run installs it); without it the
promtool tests skip with a visible reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart import metricnames
from tests.chart.helmchart import one, render

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "promtool" / "regaccess-alerts.test.yaml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus): alert rule checks skipped")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_standalone_file():
    out = _run("check", "rules", str(metricnames.ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


def test_promtool_check_rules_chart_with_other_values(tmp_path):
    # Values change the rendered expressions (job name, staleness threshold, labels): check those too.
    rule = one(render({"prometheusRule": {"enabled": True, "additionalAlertLabels": {"team": "platform"}},
                       "operator": {"driftInterval": 60}, "fullnameOverride": "ra"}), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = _run("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    text = path.read_text()
    assert 'job="ra-metrics"' in text and "> 480" in text and "team: platform" in text


def test_promtool_unit_tests_pass():
    out = _run("test", "rules", str(UNIT_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    alerts = {r["alert"] for g in yaml.safe_load(metricnames.ALERTS.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts == firing, f"alerts without a firing unit test: {alerts - firing}"
    assert alerts == quiet, f"alerts without a quiet unit test: {alerts - quiet}"


def test_promtool_unit_tests_can_fail(tmp_path):
    # The unit tests bind to the rules: a rule with a different threshold makes them fail.
    rules = yaml.safe_load(metricnames.ALERTS.read_text())
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == "RegaccessAwsThrottlingSustained":
            rule["expr"] = rule["expr"].replace("> 0.2", "> 0.9")
    (tmp_path / "deploy" / "prometheus").mkdir(parents=True)
    (tmp_path / "deploy" / "prometheus" / "regaccess-alerts.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests" / "chart" / "promtool").mkdir(parents=True)
    copy = tmp_path / "tests" / "chart" / "promtool" / UNIT_TESTS.name
    copy.write_text(UNIT_TESTS.read_text())
    out = _run("test", "rules", str(copy))
    assert out.returncode != 0 and "RegaccessAwsThrottlingSustained" in out.stdout + out.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_queries_use_only_exported_metrics(source):
    exprs = metricnames.alert_exprs() if source == "alerts" else metricnames.dashboard_exprs()
    used = set().union(*(metricnames.names_in(e) for e in exprs))
    exported = metricnames.from_registry() | metricnames.PROMETHEUS_SERIES
    assert len(used) >= 5
    assert not used - exported, f"{source} query metrics the operator does not export: {sorted(used - exported)}"


def test_the_name_check_catches_a_typo():
    exported = metricnames.from_registry()
    assert "regaccess_reconcile_total" in exported
    assert not metricnames.names_in('rate(regaccess_reconciles_total[5m])') <= exported
