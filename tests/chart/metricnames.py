"""Metric names: what the operator exports, and what PromQL in alerts and the dashboard uses.

Used by tests/chart/test_alerts.py (against controller/metrics.py) and by the e2e RBAC test
(against a real /metrics scrape of the running operator).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "regaccess" / "dashboards" / "regaccess.json"
ALERTS = REPO / "deploy" / "prometheus" / "regaccess-alerts.yaml"
_NAME = re.compile(r"\bregaccess_[a-z0-9_]+")
# Series Prometheus itself makes for every target (the operator-down alert and the up panel).
PROMETHEUS_SERIES = {"up"}

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}


def names_in(expr: str) -> set[str]:
    names = set(_NAME.findall(expr))
    if re.search(r"\bup\{", expr):
        names.add("up")
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query.get("query", ""))
    return exprs


def alert_exprs() -> list[str]:
    import yaml

    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def from_exposition(text: str) -> set[str]:
    """Sample names a Prometheus text exposition offers, from its TYPE lines (families without
    samples yet, e.g. a labelled counter never incremented, still declare their TYPE)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            base = family[:-len("_total")] if kind == "counter" and family.endswith("_total") else family
            names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def from_registry() -> set[str]:
    """Sample names controller/metrics.py registers (its own registry, not the global one)."""
    from prometheus_client import generate_latest

    from controller import metrics

    return from_exposition(generate_latest(metrics.REGISTRY).decode())
