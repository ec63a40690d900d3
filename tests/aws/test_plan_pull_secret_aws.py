"""AWS tier: ``regaccess plan`` lists an ECRPullSecret's writes, the ones the operator makes.

Given moto's GetAuthorizationToken and a cluster held in memory, when plan runs on an
ECRPullSecret manifest (the operator's own ``pull_secret.reconcile`` with the recording
actor, read-only AWS clients and a read-only cluster), then it lists the Secret create
and the ServiceAccount's imagePullSecrets patch; when the operator's reconcile then runs
on the same cluster, those are exactly the writes it makes; a second plan after that
lists none. The token never appears in plan's output.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from controller import plan
from controller.aws import ecr_tokens
from controller.aws.clients import Clients
from controller.reconcile import pull_secret
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS, NAME, CLUSTER, UID = "team", "pull", "agree", "uid-pull"
SA_PATH = f"/api/v1/namespaces/{NS}/serviceaccounts/runner"
SECRET_PATH = f"/api/v1/namespaces/{NS}/secrets/{NAME}"


class MemoryKube:
    """The cluster the operator writes to: GET, create, merge patch, DELETE, each write recorded."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = copy.deepcopy(objects)
        self.writes: list[tuple[str, str]] = []

    def get_or_none(self, path: str, **_: Any) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(path))

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create", f"{collection}/{body['metadata']['name']}"))
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = "1"
        self.objects[f"{collection}/{body['metadata']['name']}"] = stored
        return stored

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch", path))
        stored = self.objects[path]
        stored.update({k: v for k, v in body.items() if k != "metadata"})
        stored.setdefault("metadata", {}).update({k: v for k, v in (body.get("metadata") or {}).items()
                                                  if k != "resourceVersion"})
        return stored

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.writes.append((method.lower(), path))
        self.objects.pop(path, None)


class Cluster:
    """``plan --kube`` as it reads this cluster (GETs only)."""

    def __init__(self, kube: MemoryKube, live: plan.Live | None) -> None:
        self.kube, self.live = kube, live

    def resource(self, kind: str, namespace: str, name: str) -> plan.Live | None:
        return self.live

    def source_version(self, namespace: str, name: str) -> str | None:
        return None

    def object(self, path: str) -> dict[str, Any] | None:
        return self.kube.get_or_none(path)


# What each planned (adapter kind, action) is on the cluster.
WRITES = {("secret", "create"): ("create", SECRET_PATH), ("secret", "update"): ("patch", SECRET_PATH),
          ("serviceAccount", "create"): ("patch", SA_PATH), ("serviceAccount", "delete"): ("patch", SA_PATH)}


def manifest() -> plan.Manifest:
    return plan.Manifest("pull.yaml:1", {"apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret",
                                         "metadata": {"name": NAME, "namespace": NS},
                                         "spec": {"serviceAccounts": ["runner"]}})


@pytest.fixture
def tokens(monkeypatch) -> list[str]:
    """Every secret string of every token GetAuthorizationToken answers, to look for in the output."""
    seen: list[str] = []
    real = ecr_tokens.fetch

    def fetch(ecr: Any, registry_ids: Any = ()) -> list[ecr_tokens.Token]:
        answered = real(ecr, registry_ids)
        seen.extend(s for t in answered for s in ecr_tokens.secrets_of(t))
        return answered

    monkeypatch.setattr(ecr_tokens, "fetch", fetch)
    return seen


def test_plan_lists_the_secret_and_service_account_writes_the_operator_makes(factory, aws_server, tokens):
    kube = MemoryKube({SA_PATH: {"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": {"name": "runner", "resourceVersion": "3"},
                                 "imagePullSecrets": [{"name": "other"}]}})
    since = aws_server.calls.mark()
    [obj] = plan.plan_objects([manifest()], default_namespace=NS, cluster_id=CLUSTER,
                              factory=plan.read_only_factory(), live=Cluster(kube, None), tenancy_policy=OPEN)
    assert aws_server.calls.writes(since=since) == [] and kube.writes == []
    rendered = plan.render_text(plan.Plan([obj], aws=True)) + plan.render_json(plan.Plan([obj], aws=True))
    planned = sorted(WRITES[(c.kind, c.action)] for c in obj.changes if c.writes)
    assert planned == sorted([("create", SECRET_PATH), ("patch", SA_PATH)]), rendered
    assert f"Secret {NS}/{NAME}" in rendered and f"ServiceAccount {NS}/runner" in rendered
    assert tokens and not [t for t in tokens if t in rendered], "plan printed the token"

    clients_for = lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external)
    result = pull_secret.reconcile(pull_secret.Request(NS, NAME, UID, 1, manifest().body["spec"], {}),
                                   clients_for=clients_for, kube=kube, cluster_id=CLUSTER,
                                   now=dt.datetime.now(dt.timezone.utc), tenancy_policy=OPEN)
    assert result.ready, result.status.get("conditions")
    assert sorted(kube.writes) == planned

    # Converged: the same plan, against the live status, writes nothing and says so.
    kube.writes.clear()
    [again] = plan.plan_objects([manifest()], default_namespace=NS, cluster_id=CLUSTER,
                                factory=plan.read_only_factory(),
                                live=Cluster(kube, plan.Live(1, manifest().body["spec"], result.status, UID)), tenancy_policy=OPEN)
    text = plan.render_text(plan.Plan([again], aws=True))
    assert [c for c in again.changes if c.writes] == [], text
    assert [c.action for c in again.changes] == [plan.UNCHANGED, plan.UNCHANGED], text


def test_plan_without_the_cluster_assumes_the_service_account_and_says_so(aws, tokens):
    [obj] = plan.plan_objects([manifest()], default_namespace=NS, cluster_id=CLUSTER,
                              factory=plan.read_only_factory(), live=None, tenancy_policy=OPEN)
    assert [(c.kind, c.action) for c in obj.changes] == [("secret", "create"), ("serviceAccount", "create")]
    assert obj.notes == [plan.MSG_SERVICE_ACCOUNT_ASSUMED.format(namespace=NS, name="runner")]
    assert not [t for t in tokens if t in plan.render_json(plan.Plan([obj], aws=True))]
