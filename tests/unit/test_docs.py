"""Unit tier: the docs keep up with the code.

- docs/reference.md is exactly what ``regaccess docs`` generates from the models;
- docs/conditions.md documents every reason of controller/api/reasons.py with a cause and a fix
  (the reasons module promises it);
- every RegistryCredential / CrossAccountRepoAccess in docs/*.md (```yaml blocks) and
  examples/*.yaml passes the operator's validators (``regaccess plan``'s offline stage).
  The e2e tier also sends them to a real API server as a server-side dry run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller import docgen, plan, tenancy
from controller.api import reasons

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)


def test_reference_is_generated_from_the_models():
    assert (DOCS / "reference.md").read_text() == docgen.reference(), (
        "docs/reference.md is stale: run `regaccess docs --write docs/reference.md`")


def test_reference_names_every_spec_field():
    text = (DOCS / "reference.md").read_text()
    for field in ("spec.source.secretRef.name", "spec.grants.executionRoles", "spec.consumers.ecsTaskDefinitions[].family",
                  "spec.pullThroughCache.ecrRepositoryPrefix", "spec.grants[].principals[].organizationId",
                  "status.managed[].state", "status.repositories[].rejectedSince"):
        assert f"`{field}`" in text


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### `([A-Za-z]+)`\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.mark.parametrize("reason", reasons.ALL_REASONS)
def test_every_reason_has_a_cause_and_a_fix(reason):
    sections = _sections((DOCS / "conditions.md").read_text())
    assert reason in sections, f"docs/conditions.md has no section for {reason}"
    assert "**Cause**" in sections[reason] and "**Fix**" in sections[reason]


def _example_documents() -> list[tuple[str, str]]:
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]
    for path in sorted(DOCS.glob("*.md")):
        for index, block in enumerate(YAML_BLOCK.findall(path.read_text())):
            if "regaccess.io/" in block:
                found.append((f"{path.relative_to(ROOT)}#yaml{index}", block))
    return found


EXAMPLE_DOCS = _example_documents()
EXAMPLES_POLICY = plan.tenancy_from_manifests(
    plan.load_text((EXAMPLES / "tenancypolicy.yaml").read_text(), "examples/tenancypolicy.yaml")[0], "default")


def test_the_examples_need_their_reviewed_policy_and_it_stays_narrow():
    """Under the shipped default the examples are refused (they name un-namespaced AWS objects);
    examples/tenancypolicy.yaml opens those for its namespaces only, not for any other one."""
    assert EXAMPLES_POLICY is not None and EXAMPLES_POLICY.error is None
    for origin in ("examples/registrycredential.yaml", "examples/crossaccountrepoaccess.yaml"):
        manifests, _ = plan.load_text((ROOT / origin).read_text(), origin)
        shipped = plan.plan_objects(manifests, factory=None, tenancy_policy=tenancy.SHIPPED)
        assert {p.reason for o in shipped for p in o.problems} == {"NotPermitted"}, origin
        moved = [plan.Manifest(m.source, {**m.body, "metadata": {**m.body["metadata"], "namespace": "team-x"}})
                 for m in manifests]
        elsewhere = plan.plan_objects(moved, factory=None, tenancy_policy=EXAMPLES_POLICY)
        assert {p.reason for o in elsewhere for p in o.problems} == {"NotPermitted"}, origin


def test_there_are_examples_of_both_kinds():
    text = "\n".join(t for _, t in EXAMPLE_DOCS)
    assert "kind: RegistryCredential" in text and "kind: CrossAccountRepoAccess" in text


@pytest.mark.parametrize("origin, text", EXAMPLE_DOCS, ids=[o for o, _ in EXAMPLE_DOCS])
def test_examples_pass_the_operators_validators(origin, text):
    manifests, broken = plan.load_text(text, origin)
    # A TenancyPolicy in the block holds the block's resources to its rules, as in plan; else
    # the examples' own (examples/tenancypolicy.yaml, what the docs tell the admin to apply).
    policy = plan.tenancy_from_manifests(manifests, "default")
    assert policy is None or policy.error is None, f"{origin}: {policy.error}"
    objects = broken + plan.plan_objects(manifests, factory=None, tenancy_policy=policy or EXAMPLES_POLICY)
    assert objects or policy is not None, f"{origin}: no custom resource found"
    assert [str(p) for o in objects for p in o.problems] == []
