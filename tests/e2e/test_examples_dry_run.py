"""e2e tier: every example manifest (examples/*.yaml, ```yaml blocks in docs/*.md) is accepted
by a real kube-apiserver with the generated CRDs, as a server-side dry run (``?dryRun=All``:
validated and defaulted, nothing stored).

And the reason ``regaccess plan`` exists: a typo the API server silently prunes is an error
for plan.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from controller import plan
from controller.api.models import KINDS
from tests.e2e.kube import registry_credential
from tests.unit.test_docs import EXAMPLE_DOCS

pytestmark = pytest.mark.e2e

# Every custom resource kind the operator serves (a new kind's examples are checked too).
PLURALS = {info.kind: info.plural for info in KINDS}


CLUSTER_SCOPED = {info.kind for info in KINDS if info.scope == "Cluster"}


def _path(kube, doc: dict, namespace: str) -> str:
    if doc["kind"] in CLUSTER_SCOPED:
        return f"/apis/{doc['apiVersion']}/{PLURALS[doc['kind']]}"
    if doc["kind"] in PLURALS:
        return kube.rc_path(namespace, plural=PLURALS[doc["kind"]])
    assert doc["apiVersion"] == "v1", doc["kind"]
    return f"/api/v1/namespaces/{namespace}/{doc['kind'].lower()}s"


@pytest.mark.parametrize("origin, text", EXAMPLE_DOCS, ids=[o for o, _ in EXAMPLE_DOCS])
def test_example_passes_a_server_side_dry_run(kube, namespace, origin, text):
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED:
            # The session keeps a TenancyPolicy "default": dry-run the example under a name of its own.
            doc["metadata"]["name"] = f"{namespace}-{doc['metadata']['name']}"
    for doc in docs:
        body = copy.deepcopy(doc)
        if doc["kind"] not in CLUSTER_SCOPED:
            body["metadata"]["namespace"] = namespace
        answer = kube.request("POST", _path(kube, body, namespace) + "?dryRun=All", body)
        assert answer["metadata"]["name"] == doc["metadata"]["name"]
        if doc["kind"] in PLURALS:
            # Nothing the example says was pruned by the schema (a field the CRD lacks would be).
            assert _subset(doc["spec"], answer["spec"]), (doc["spec"], answer["spec"])
    for doc in docs:  # a dry run stores nothing
        assert kube.get_or_none(_path(kube, doc, namespace) + "/" + doc["metadata"]["name"]) is None


def _subset(small, big) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(_subset(a, b) for a, b in zip(small, big))
    return small == big


def test_a_typo_the_api_server_prunes_is_an_error_for_plan(kube, namespace):
    body = registry_credential(namespace, "typo", {"source": {"secretRef": {"name": "s"}}, "deletionPolicyy": "Retain"})

    answer = kube.request("POST", kube.rc_path(namespace) + "?dryRun=All", body)

    assert "deletionPolicyy" not in answer["spec"]           # silently dropped...
    assert answer["spec"]["deletionPolicy"] == "Delete"      # ...and the default applies instead
    [obj] = plan.plan_objects([plan.Manifest("typo", body)], factory=None)
    assert [(p.field, p.reason) for p in obj.problems] == [("spec.deletionPolicyy", "InvalidSpec")]
