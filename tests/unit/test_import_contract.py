"""The import contract: handlers | plan | demo -> reconcile -> aws -> api.

Read from the source with ``ast`` (every import statement, at module level or inside
a function), so a layering break fails here before it becomes a cycle or a leak:

- ``controller.api`` (and ``controller.sources``, the pure reading of Kubernetes
  Secrets) never imports boto3, botocore, kopf or any higher layer;
- ``controller.aws`` never imports ``controller.reconcile``, the kopf glue, plan,
  demo or ``controller.logging`` (whose REDACTOR holds every secret read): the AWS
  layer reports facts and never sees secrets it was not handed; nor the Kubernetes
  client (``controller.kubeclient``, ``controller.kubeerrors``): AWS adapters know AWS only;
- ``controller.reconcile`` never imports kopf, the handlers, plan or the demo;
- ``controller.tenancy`` (the tenancy guard) is pure: no AWS, Kubernetes, logging or metrics;
- nothing but the CLI and the demo imports the demo.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "controller"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # "from controller.aws import secrets" imports controller.aws.secrets.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}

# (layer prefix, forbidden import prefixes)
RULES = [
    ("controller.api", ("boto3", "botocore", "kopf", "controller.aws", "controller.reconcile", "controller.handlers",
                        "controller.plan", "controller.demo", "controller.logging", "controller.kubeapi")),
    ("controller.sources", ("boto3", "botocore", "kopf", "controller.aws", "controller.reconcile")),
    ("controller.aws", ("kopf", "controller.reconcile", "controller.handlers", "controller.plan", "controller.demo",
                        "controller.logging", "controller.kubeapi", "controller.metrics", "controller.kubeclient",
                        "controller.kubeerrors")),
    ("controller.reconcile", ("kopf", "controller.handlers", "controller.plan", "controller.demo",
                              "controller.kubeapi", "controller.__main__")),
    # The tenancy guard is a pure decision: no AWS, no Kubernetes, no I/O of any kind.
    ("controller.tenancy", ("boto3", "botocore", "kopf", "controller.aws", "controller.reconcile",
                            "controller.handlers", "controller.plan", "controller.demo", "controller.kubeapi",
                            "controller.kubeclient", "controller.logging", "controller.metrics")),
]


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for module, imported in MODULES.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for name in sorted(imported):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{module} imports {name}")
    return out


@pytest.mark.parametrize("layer,forbidden", RULES, ids=[r[0] for r in RULES])
def test_layer_imports(layer: str, forbidden: tuple[str, ...]) -> None:
    assert MODULES, "no controller modules found"
    assert any(m == layer or m.startswith(layer + ".") for m in MODULES), f"layer {layer} has no module"
    assert _violations(layer, forbidden) == []


def test_only_the_cli_and_the_demo_import_the_demo() -> None:
    users = sorted(m for m, imported in MODULES.items()
                   if not m.startswith("controller.demo") and m != "controller.__main__"
                   and any(n == "controller.demo" or n.startswith("controller.demo.") for n in imported))
    assert users == []


def test_the_contract_can_fail() -> None:
    """The checker itself: a forbidden import in a made-up aws module is found."""
    MODULES["controller.aws._probe"] = {"controller.reconcile.loop"}
    try:
        assert _violations("controller.aws", RULES[2][1]) == ["controller.aws._probe imports controller.reconcile.loop"]
    finally:
        del MODULES["controller.aws._probe"]
