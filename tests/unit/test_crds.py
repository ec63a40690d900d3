"""crds/ is generated from the models: fail when they disagree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.api import crdgen
from controller.api.models import KINDS

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("info", KINDS, ids=[k.kind for k in KINDS])
def test_crds_dir_matches_models(info):
    path = CRDS / crdgen.file_name(info)
    assert path.exists(), f"{path} missing: run `regaccess crds --write crds/`"
    assert path.read_text() == crdgen.render(info), f"{path} is stale: run `regaccess crds --write crds/`"


@pytest.mark.parametrize("info", KINDS, ids=[k.kind for k in KINDS])
def test_crd_shape(info):
    crd = yaml.safe_load(crdgen.render(info))
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == info.short_names
    if info.has_status:
        assert version["subresources"] == {"status": {}}
    else:  # TenancyPolicy: read by the operator, never written
        assert "subresources" not in version and "status" not in version["schema"]["openAPIV3Schema"]["properties"]
    assert crd["spec"]["scope"] == ("Cluster" if info.kind == "TenancyPolicy" else "Namespaced")
    expected = {"ECRPullSecret": ["Ready", "Synced", "Expires", "Age"],
                "TenancyPolicy": ["Default", "Age"],
                "RegistryCredential": ["Ready", "Synced", "Drifted", "Cost/Month", "Age"],
                }.get(info.kind, ["Ready", "Synced", "Drifted", "Age"])
    assert [c["name"] for c in version["additionalPrinterColumns"]] == expected
    text = crdgen.render(info)
    # Structural schema: no refs, no anyOf left over from Optional fields.
    assert "$ref" not in text and "anyOf" not in text and "title:" not in text


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_every_spec_field_has_a_description_and_a_type():
    for info in KINDS:
        schema = crdgen.crd_for(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path, node in _walk(schema):
            for name, prop in (node.get("properties") or {}).items():
                assert "type" in prop, f"{info.kind}{path}.{name} has no type"
                assert prop.get("description"), f"{info.kind}{path}.{name} has no description"


def test_regex_repeat_counts_fit_re2():
    """The API server compiles patterns with Go's RE2, which caps {n,m} at 1000."""
    import re

    for info in KINDS:
        for _, node in _walk(crdgen.crd_for(info)):
            pattern = node.get("pattern") if isinstance(node, dict) else None
            if isinstance(pattern, str):
                for low, high in re.findall(r"\{(\d+),(\d+)\}", pattern):
                    assert int(high) <= 1000, pattern


def test_cli_prints_the_same(capsys):
    from controller.__main__ import main

    assert main(["crds"]) == 0
    printed = capsys.readouterr().out
    for text in crdgen.render_all().values():
        assert text in printed


def test_ecr_pull_secret_registry_id_is_judged_by_the_operator_not_the_schema():
    """No pattern: a wrong ID is stored and gets Ready=False InvalidRegistryId (docs/conditions.md)."""
    from controller.api.models import ECR_PULL_SECRET

    crd = yaml.safe_load(crdgen.render(ECR_PULL_SECRET))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    registry_id = spec["properties"]["registries"]["items"]["properties"]["registryId"]
    assert registry_id["type"] == "string" and "pattern" not in registry_id and registry_id["maxLength"] == 64


def test_every_spec_array_of_a_reconciled_kind_is_bounded_and_says_so():
    """One tenant's resource cannot list thousands of AWS objects and take the whole rate
    limiter: every array a tenant writes has maxItems, and its description states the bound."""
    from controller.api.models import RECONCILED_KINDS

    arrays = 0
    for info in RECONCILED_KINDS:
        schema = crdgen.crd_for(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path, node in _walk(schema):
            for name, prop in (node.get("properties") or {}).items():
                if prop.get("type") == "array":
                    arrays += 1
                    bound = prop.get("maxItems")
                    assert isinstance(bound, int) and bound > 0, f"{info.kind}{path}.{name} has no maxItems"
                    assert f"At most {bound}." in prop["description"], f"{info.kind}{path}.{name}"
    assert arrays >= 10


def test_a_list_over_its_bound_is_invalid_before_any_aws_call():
    from controller.api import reasons
    from controller.api.validation import validate_registry_credential

    spec = {"source": {"secretRef": {"name": "s"}},
            "grants": {"executionRoles": [f"team-x-{i}" for i in range(21)]}}
    resolved, problems = validate_registry_credential("team-x", "n", spec, cluster_id="c")
    assert resolved is None
    assert [(p.field, p.reason) for p in problems] == [("spec.grants.executionRoles", reasons.INVALID_SPEC)]
    assert "at most 20" in problems[0].message
    spec["grants"]["executionRoles"] = spec["grants"]["executionRoles"][:20]
    assert validate_registry_credential("team-x", "n", spec, cluster_id="c")[0] is not None
