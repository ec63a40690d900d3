"""How GitOps tools read a regaccess resource's status, for the tests.

- ``argocd_health(obj)``: Argo CD's side of a resource health check. Argo CD runs
  ``charts/regaccess/files/argocd-health.lua`` in gopher-lua (Lua 5.1) with the global
  ``obj`` set to the live object and reads ``hs.status`` / ``hs.message`` from the
  table the chunk returns. Here the same script runs in a real Lua interpreter (lupa's
  embedded Lua 5.1 by default, 5.4 on request), with the libraries Argo CD does not open
  (os, io, debug, package loading) removed, and ``obj`` converted from the object's
  JSON as Argo CD converts it (objects to tables, arrays to 1-based sequences).
- ``kstatus(obj)``: Flux's reading. A line-for-line transcription of
  sigs.k8s.io/cli-utils ``pkg/kstatus/status`` ``Compute`` for a custom resource
  (generic.go ``checkGenericProperties`` and ``checkGeneration``; a kind without
  built-in rules ends "Current"); there is no Go toolchain in CI to run the original.

``kubectl wait`` is not imitated: tests/e2e/test_gitops_status.py runs the real kubectl.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "charts" / "regaccess" / "files" / "argocd-health.lua"
# Argo CD opens base, table, string and math; nothing that reaches the file system or loads code.
CLOSED = ("os", "io", "debug", "package", "require", "dofile", "loadfile", "load", "loadstring", "python")
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def argocd_health(obj: dict[str, Any], lua: str = "lua51") -> dict[str, str]:
    runtime = importlib.import_module(f"lupa.{lua}").LuaRuntime(register_eval=False, register_builtins=False)
    env = runtime.globals()
    for name in CLOSED:
        env[name] = None
    # Through JSON, as Argo CD gets the object: plain types only.
    env.obj = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    hs = runtime.execute(HEALTH_LUA.read_text())
    result = {"status": hs["status"], "message": hs["message"]}
    assert result["status"] in ARGO_STATUSES, result
    return result


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as kstatus' Compute gives them for a custom resource."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = meta.get("generation")
    if generation is not None and "observedGeneration" in status and status["observedGeneration"] != generation:
        return "InProgress", (f"{obj.get('kind')} generation is {generation}, "
                              f"but latest observed generation is {status['observedGeneration']}")
    for c in status.get("conditions") or []:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return "InProgress", c.get("message", "")
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return "Failed", c.get("message", "")
    return "Current", "Resource is current"

