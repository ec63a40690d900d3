"""deploy/ (plain manifests, kustomize layout) is what the chart renders, and it builds.

scripts/render-deploy.py renders it with the Helm engine; this test re-renders and compares,
so an edit of the chart without re-running the script (or a hand edit of deploy/) fails.
``kubectl kustomize`` builds the base and the IRSA overlay when kubectl is installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest
import yaml

from tests.chart.helmchart import REPO, helm


def _script():
    helm()
    spec = importlib.util.spec_from_file_location("render_deploy", REPO / "scripts" / "render-deploy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_matches_the_chart():
    script = _script()
    problems = script.stale(script.render())
    assert problems == [], "deploy/ is out of step with the chart; run scripts/render-deploy.py: " + ", ".join(problems)


def test_kustomization_lists_every_manifest():
    base = REPO / "deploy" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {str(p.relative_to(base)) for p in base.rglob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_alert_file_is_the_chart_rules():
    script = _script()
    rule = script.render_chart({"prometheusRule": {"enabled": True}})["regaccess/templates/prometheusrule.yaml"][0]
    on_disk = yaml.safe_load((REPO / "deploy" / "prometheus" / "regaccess-alerts.yaml").read_text())
    assert on_disk == {"groups": rule["spec"]["groups"]}


@pytest.mark.parametrize("overlay", ["base", "overlays/irsa"])
def test_kustomize_builds(overlay):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: `kubectl kustomize` check skipped (the in-step test above still runs)")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "deploy" / overlay)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "Deployment", "Service"} <= kinds
    if overlay == "overlays/irsa":
        sa = next(d for d in docs if d["kind"] == "ServiceAccount")
        assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
