"""Unit tier: what Argo CD's health check (charts/regaccess/files/argocd-health.lua, run in a
real Lua) and kstatus make of the statuses the operator writes.

The status documents come from the operator's own status code (``set_condition`` as the
reconcilers call it, then ``settle`` as the handlers do); the e2e tier feeds the same script
live objects from the API server (tests/e2e/test_gitops_status.py).
"""

from __future__ import annotations

import re

import pytest
import yaml

from controller.api import reasons
from controller.reconcile.conditions import set_condition
from controller.reconcile.result import ReconcileResult, settle
from tests.harness.gitops import HEALTH_LUA, ROOT, argocd_health, kstatus

LUAS = ["lua51", "lua54"]  # Argo CD's gopher-lua is 5.1; 5.4 guards against 5.1-only idioms


def resource(generation: int, status: dict | None, kind: str = "RegistryCredential") -> dict:
    obj = {"apiVersion": "regaccess.io/v1alpha1", "kind": kind,
           "metadata": {"name": "hub", "namespace": "team-a", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def reconciled(ready: bool, reason: str, message: str, *, outcome: str, retry_after: float | None = None,
               generation: int = 2, previous_generation: int | None = 1) -> dict:
    conditions = set_condition(None, reasons.READY, ready, reason, message, generation=generation)
    conditions = set_condition(conditions, reasons.SYNCED, ready, reason, message, generation=generation)
    status = {"conditions": conditions}
    if previous_generation is not None:
        status["observedGeneration"] = previous_generation  # what the reconciler left
    result = ReconcileResult(status=status, retry_after=retry_after, outcome=outcome)
    return settle(result, generation).status


# (id, object, Argo CD status, message contains, kstatus)
CASES = [
    ("no-status-yet", resource(1, None), "Progressing", "Waiting for the regaccess operator", "Current"),
    # The CRD's status default, until the operator writes status.
    ("defaulted-status", resource(1, {"observedGeneration": 0}), "Progressing", "observe generation 1", "InProgress"),
    ("generation-not-observed", resource(3, reconciled(True, reasons.RECONCILED, "all in order", outcome="success")),
     "Progressing", "observe generation 3", "InProgress"),
    ("ready", resource(2, reconciled(True, reasons.RECONCILED, "all AWS objects in the declared state",
                                     outcome="success")),
     "Healthy", "Reconciled: all AWS objects", "Current"),
    ("ready-first-reconcile", resource(1, reconciled(True, reasons.RECONCILED, "ok", outcome="success",
                                                     generation=1, previous_generation=None)),
     "Healthy", "Reconciled", "Current"),
    ("invalid-spec", resource(2, reconciled(False, reasons.INVALID_SPEC, "spec.grants: bad", outcome="invalid")),
     "Degraded", "InvalidSpec: spec.grants: bad", "Failed"),
    ("ownership-conflict", resource(2, reconciled(False, reasons.OWNERSHIP_CONFLICT, "owned by e2e/b/x",
                                                  outcome="conflict"), kind="CrossAccountRepoAccess"),
     "Degraded", "OwnershipConflict", "Failed"),
    ("retrying-dependency", resource(2, reconciled(False, reasons.DEPENDENCY_MISSING, "role r not found",
                                                   outcome="retry", retry_after=30)),
     "Progressing", "DependencyMissing: role r not found", "InProgress"),
    ("retrying-throttled", resource(2, reconciled(False, reasons.AWS_THROTTLED, "slow down", outcome="retry",
                                                  retry_after=5)),
     "Progressing", "AwsThrottled", "InProgress"),
    ("waiting-for-source-secret", resource(2, reconciled(False, reasons.SOURCE_SECRET_NOT_FOUND, "Secret 'hub'",
                                                         outcome="invalid")),
     "Progressing", "SourceSecretNotFound", "InProgress"),
    ("ready-false-without-progress-conditions", resource(2, {"observedGeneration": 2, "conditions": set_condition(
        None, reasons.READY, False, reasons.AWS_ERROR, "older operator", generation=2)}),
     "Degraded", "AwsError: older operator", "Current"),
]


@pytest.mark.parametrize("lua", LUAS)
@pytest.mark.parametrize("obj, health, message, _kstatus", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_argocd_health(obj, health, message, _kstatus, lua):
    result = argocd_health(obj, lua)
    assert result["status"] == health, result
    assert message in result["message"], result


@pytest.mark.parametrize("obj, _health, _message, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kstatus(obj, _health, _message, expected):
    # "ready-false-without-progress-conditions" is why the operator sets Reconciling / Stalled:
    # without them kstatus calls a failing custom resource Current.
    assert kstatus(obj)[0] == expected



# ------------------------------------------------------------------ one source for the Lua

KEYS = ["resource.customizations.health.regaccess.io_RegistryCredential",
        "resource.customizations.health.regaccess.io_CrossAccountRepoAccess"]
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # the API server's rule for ConfigMap keys


def test_the_docs_argocd_cm_carries_the_charts_script_for_both_kinds():
    text = (ROOT / "docs" / "gitops.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "argocd-cm" in b]
    assert len(blocks) == 1
    config_map = blocks[0]
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "argocd-cm"
    assert sorted(config_map["data"]) == sorted(KEYS) and all(CONFIG_KEY.match(k) for k in KEYS)
    assert all(config_map["data"][k] == HEALTH_LUA.read_text() for k in KEYS)


def test_the_chart_values_carry_the_charts_script_as_argo_cd_chart_values():
    lines = (ROOT / "charts" / "regaccess" / "values.yaml").read_text().splitlines()
    start = lines.index("# configs:")
    end = next(i for i, line in enumerate(lines) if "*regaccess-health" in line)
    snippet = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in lines[start:end + 1])
    values = yaml.safe_load(snippet)
    assert sorted(values["configs"]["cm"]) == sorted(KEYS)
    assert all(values["configs"]["cm"][k] == HEALTH_LUA.read_text() for k in KEYS)
