"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

Called by ``regaccess crds`` (prints them) and by ``regaccess crds --write DIR``;
a unit test regenerates them and fails when ``crds/`` differs, so the YAML
users apply and the models the operator parses with never drift apart.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3
subset. The conversion inlines ``$ref``s, turns ``X | None`` into ``X`` (an
absent field is the Kubernetes way to say null), drops titles and
``additionalProperties: false`` (not allowed beside ``properties``; unknown
fields are pruned by the API server and rejected by ``regaccess plan``), and
keeps scalar defaults only, so the API server fills the same defaults that the
models would.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from controller.api.models import API_VERSION, GROUP, KINDS, VERSION, KindInfo

_DROP_KEYS = {"title", "$defs", "discriminator"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Return ``node`` converted to a structural schema, with refs inlined."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        # Sibling keys (description, default) on the referring field win over the target's.
        target.update({k: v for k, v in node.items() if k != "$ref"})
        node = target
    # `X | None` -> X: pydantic writes anyOf [X, {"type": "null"}].
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            merged = dict(options[0])
            merged.update({k: v for k, v in node.items() if k != "anyOf"})
            return _inline(merged, defs)  # the option may itself be a $ref
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default":
            # Only scalar defaults: object/list defaults would be written into every stored
            # object and make `kubectl diff` noisy for GitOps users.
            if value is None or isinstance(value, (dict, list)):
                continue
        if key in ("properties",):
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    # Enum-typed fields from `use_enum_values` carry the enum on the inlined def.
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out




def _strip_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}


def openapi_schema(model: type, *, defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs = raw.get("$defs", {})
    schema = _inline(raw, defs)
    schema.pop("description", None)
    # Status is written only by the operator: defaults there would just be noise.
    return schema if defaults else _strip_defaults(schema)


def _printer_columns(info: KindInfo) -> list[dict[str, Any]]:
    def condition(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "string",
            "jsonPath": f'.status.conditions[?(@.type=="{name}")].status',
        }

    return [
        *(condition(name) for name in info.conditions),
        *({"name": name, "type": type_, "jsonPath": path} for name, type_, path in info.printer_columns),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd_for(info: KindInfo) -> dict[str, Any]:
    spec_schema = openapi_schema(info.spec_model)
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    version_extra: dict[str, Any] = {}
    if info.has_status:
        status_schema = openapi_schema(info.status_model, defaults=False)
        # The API server fills this in on every read until the operator writes status: a new
        # resource then reads "generation 1, observed 0" (kstatus: InProgress, Argo CD:
        # Progressing) instead of kstatus' "no status, so Current".
        status_schema["default"] = {"observedGeneration": 0}
        properties["status"] = status_schema
        version_extra["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "regaccess"},
        },
        "spec": {
            "group": GROUP,
            "scope": info.scope,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["regaccess"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    **version_extra,
                    "additionalPrinterColumns": _printer_columns(info),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": info.description,
                            "required": ["spec"],
                            "properties": properties,
                        }
                    },
                }
            ],
        },
    }


def file_name(info: KindInfo) -> str:
    return f"{GROUP}_{info.plural}.yaml"


def render(info: KindInfo) -> str:
    header = (
        "# Generated by `regaccess crds --write crds/` from controller/api/models.py.\n"
        "# Do not edit by hand: tests/unit/test_crds.py fails when this file and the models differ.\n"
    )
    return header + yaml.safe_dump(crd_for(info), sort_keys=False, width=100)


def render_all() -> dict[str, str]:
    """File name -> YAML text, for every kind."""
    return {file_name(info): render(info) for info in KINDS}


__all__ = ["API_VERSION", "crd_for", "render", "render_all", "file_name", "openapi_schema"]
