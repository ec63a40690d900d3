"""Helpers of the chart tests: render charts/regaccess with the real Helm engine.

helm-python-sdk binds Helm's Go SDK (libhelm_c) with ctypes: the same template engine,
values coalescing and values.schema.json validation as ``helm install``. Used by the
tests in tests/chart/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "regaccess"
RELEASE = "regaccess"
NAMESPACE = "regaccess-system"


def helm():
    return pytest.importorskip("helm_python", reason="helm-python-sdk is in the test extra: pip install -e '.[test]'")


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (schema-validated first, as install does)."""
    h = helm()
    with h.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for _path, text in sorted(rendered.items()):
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def crds() -> list[dict[str, Any]]:
    """The chart's crds/ objects, as Helm loads them."""
    h = helm()
    with h.Chart.load(CHART) as chart:
        return [d for c in chart.crds for d in yaml.safe_load_all(c["data"]) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}
