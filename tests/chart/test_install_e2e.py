"""The chart installed on a real API server; the operator runs as the chart's ServiceAccount.

A kube-apiserver from KUBEBUILDER_ASSETS, restarted with an audit log of the operator's
ServiceAccount. The chart is installed by Helm's own install action (helm-python-sdk) in the
all-namespaces mode, and its rendered manifests are applied in the namespaced mode; the
operator then runs outside the cluster with the static token ``sa-token``
(system:serviceaccount:regaccess-system:regaccess-operator) and the env the chart's Deployment
sets, through create / rotate the source Secret / drift / delete of a RegistryCredential
(with an IAM grant and an ECS consumer), a CrossAccountRepoAccess and an ECRPullSecret
(its Secret written, deleted by hand and restored, a ServiceAccount patched).

- a missing RBAC rule: a real 403, in the audit log and the operator log -> the test fails;
- an unused rule: every (apiGroup, resource, verb) the chart grants must appear in the audit
  log, unless ALLOWED_UNUSED says why it cannot be exercised here.

The all-namespaces run uses two replicas (kopf peering): one works, the other stands by, and a
graceful stop of the active one hands over to the standby, which finishes the cycle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.chart import metricnames
from tests.chart.helmchart import CHART, NAMESPACE, env_of, find, helm, one, render
from tests.e2e import controlplane
from tests.e2e.kube import ApiError, Kube, condition, registry_credential, wait_for

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"
SA_USER = controlplane.SA_USER
# Values for the test run: short intervals so that drift is found within seconds.
RUN_VALUES = {"operator": {"driftInterval": 3, "logLevel": "DEBUG"}, "clusterId": "e2e"}

# How a refused request shows in the operator's log: kopf's APIForbiddenError and its
# "Not enough permissions" fallbacks, urllib's error (StatusWriter), the API's reason.
DENIED_IN_LOG = ("Forbidden", "Not enough permissions", "HTTP Error 403", '"code": 403', "'code': 403")

# Granted rules that this run cannot exercise, each with the reason it stays granted.
ALLOWED_UNUSED: dict[tuple[str, str, str], str] = {}

AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["{SA_USER}"]
- level: None
"""


# ------------------------------------------------------------------ control plane with an audit log

@dataclass
class AuditedPlane:
    cp: controlplane.ControlPlane
    audit_log: Path

    def requests_by_operator(self, since: int = 0) -> list[dict]:
        """The ServiceAccount's completed requests, from audit log line ``since`` on."""
        out = []
        if not self.audit_log.exists():
            return out
        for line in self.audit_log.read_text().splitlines()[since:]:
            event = json.loads(line)
            # Watches are long-running: they are logged when the response starts, and again when
            # it completes (at the operator's stop). Everything else completes at once.
            stage = event.get("stage")
            done = stage == "ResponseComplete" or (stage == "ResponseStarted" and event.get("verb") == "watch")
            if event.get("user", {}).get("username") == SA_USER and done:
                out.append(event)
        return out

    def mark(self) -> int:
        return len(self.audit_log.read_text().splitlines()) if self.audit_log.exists() else 0


def _assets() -> str | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    return assets if assets and (Path(assets) / "kube-apiserver").exists() else None


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    assets = _assets()
    if assets is None:
        message = "chart e2e skipped: set KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd"
        if os.environ.get("REGACCESS_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cp = controlplane.start(assets)
    try:
        # Same API server flags as the e2e tier, plus an audit log of the operator's requests:
        # restart it on the same port and etcd (Popen keeps the command line it was started with).
        directory = tmp_path_factory.mktemp("audit")
        policy, log = directory / "policy.yaml", directory / "audit.log"
        policy.write_text(AUDIT_POLICY)
        args = list(cp.apiserver.args) + ["--audit-policy-file", str(policy), "--audit-log-path", str(log),
                                          "--audit-log-format", "json", "--audit-log-mode", "blocking"]
        cp.stop_apiserver()
        cp.apiserver = subprocess.Popen(args, stdout=open(cp.directory / "apiserver.log", "ab"),
                                        stderr=subprocess.STDOUT)
        admin = Kube(cp.server, controlplane.ADMIN_TOKEN)
        wait_for(lambda: admin.request("GET", "/api/v1/namespaces/default"), 60, "audited kube-apiserver ready")
        yield AuditedPlane(cp, log)
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def admin(plane) -> Kube:
    return Kube(plane.cp.server, controlplane.ADMIN_TOKEN)


@pytest.fixture
def aws_session(moto_server, monkeypatch):
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    import boto3

    yield boto3.session.Session(region_name=REGION)
    requests.post(f"{moto_server}/_harness/reset", timeout=30)


# ------------------------------------------------------------------ the operator as the chart runs it

@dataclass
class Replica:
    proc: subprocess.Popen
    log_path: Path
    url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_replica(plane: AuditedPlane, deployment: dict, aws_url: str, tmp_path: Path, name: str) -> Replica:
    """`regaccess run` with the Deployment's args and env, as the chart's ServiceAccount."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = controlplane.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_", "KUBERNETES_"))}
    env.update(env_of(deployment))
    env.update({
        "KUBECONFIG": str(plane.cp.kubeconfig_sa),
        "REGACCESS_METRICS_PORT": str(port), "REGACCESS_METRICS_BIND": "127.0.0.1",
        "AWS_ENDPOINT_URL": aws_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION, "PYTHONUNBUFFERED": "1",
    })
    log_path = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "controller", *container["args"]], env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, cwd=CHART.parents[1])
    replica = Replica(proc, log_path, f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited:\n" + replica.log()[-4000:])
        try:
            return requests.get(f"{replica.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, 60, f"{name} /readyz")
    return replica


# ------------------------------------------------------------------ applying manifests

def apply(kube: Kube, doc: dict) -> None:
    """Create (or replace) one object through its REST path, as `kubectl apply` would."""
    api = doc["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles", "ClusterRoleBinding":
              "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings", "Deployment": "deployments",
              "Service": "services", "Namespace": "namespaces", "ClusterKopfPeering": "clusterkopfpeerings",
              "KopfPeering": "kopfpeerings", "ConfigMap": "configmaps"}[doc["kind"]]
    ns = doc["metadata"].get("namespace")
    path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
    existing = kube.get_or_none(f"{path}/{doc['metadata']['name']}")
    if existing is None:
        kube.create(path, doc)
    else:
        doc = dict(doc, metadata=dict(doc["metadata"], resourceVersion=existing["metadata"]["resourceVersion"]))
        kube.request("PUT", f"{path}/{doc['metadata']['name']}", doc)


def ensure_namespace(kube: Kube, name: str) -> None:
    if kube.get_or_none(f"/api/v1/namespaces/{name}") is None:
        kube.create_namespace(name)


# ------------------------------------------------------------------ RBAC accounting

def granted(docs: list[dict]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every rule of the chart's ClusterRole and Roles."""
    out = set()
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb))
    return out


def observed(events: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for event in events:
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery (/apis, /version): allowed to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return out


def forbidden(events: list[dict]) -> list[str]:
    return [f"{e['verb']} {e.get('requestURI')}" for e in events
            if (e.get("responseStatus") or {}).get("code") == 403]


def check_rbac(plane: AuditedPlane, docs: list[dict], replicas: list[Replica], since: int = 0) -> None:
    """Call after the replicas stopped: kube-apiserver writes a watch's audit events when the
    watch ends (here, at the operator's stop)."""
    assert all(r.proc.poll() is not None for r in replicas)
    events = plane.requests_by_operator(since)
    assert events, "the audit log recorded no request of the operator"
    denied = forbidden(events)
    assert not denied, f"the chart's RBAC refused the operator: {denied[:10]}"
    for replica in replicas:
        text = replica.log()
        hits = [m for m in DENIED_IN_LOG if m in text]
        assert not hits, f"{hits} in the operator log:\n{text[-3000:]}"
    unused = granted(docs) - observed(events) - set(ALLOWED_UNUSED)
    assert not unused, f"granted but never used by the operator: {sorted(unused)}"


# ------------------------------------------------------------------ the cycle

def b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def rc_ready(kube: Kube, namespace: str, name: str):
    def check():
        obj = kube.get(kube.rc_path(namespace, name))
        return obj if condition(obj, "Ready").get("status") == "True" else None
    return check


def xrepo_path(namespace: str, name: str | None = None) -> str:
    return Kube.rc_path(namespace, name, plural="crossaccountrepoaccesses")


def pull_path(namespace: str, name: str | None = None) -> str:
    return Kube.rc_path(namespace, name, plural="ecrpullsecrets")


def full_cycle(kube: Kube, session, namespace: str, before_delete=None) -> None:
    """create / rotate / drift / delete of both kinds in one namespace, driven through the API."""
    iam, sm, ecs, ecr = (session.client(s) for s in ("iam", "secretsmanager", "ecs", "ecr"))
    # Names that carry the namespace: the chart installs no TenancyPolicy, so the shipped
    # default (every field scoped to the namespace) is what a fresh install enforces.
    role = f"{namespace}-exec"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    family = f"{namespace}-web"
    ecs.register_task_definition(family=family, executionRoleArn=role_arn, containerDefinitions=[
        {"name": "app", "image": "registry.example.com/team/app:1", "memory": 256, "essential": True}])
    repo = f"{namespace}/base"
    ecr.create_repository(repositoryName=repo)

    kube.create(kube.secret_path(namespace), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth", "metadata": {"name": "hub"},
        "data": {"username": b64("robot"), "password": b64("pw-one-1234")}})
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "hub", {
        "source": {"secretRef": {"name": "hub"}},
        "secret": {"forceDeleteWithoutRecovery": True},
        "grants": {"executionRoles": [role]},
        "consumers": {"ecsTaskDefinitions": [{"family": family}]},
    }))
    kube.create(xrepo_path(namespace), {
        "apiVersion": "regaccess.io/v1alpha1", "kind": "CrossAccountRepoAccess", "metadata": {"name": "share"},
        "spec": {"repositories": [repo], "grants": [{"access": "Pull", "principals": [{"accountId": "444455556666"}]}]}})
    # ECRPullSecret: its Secret written and its ServiceAccount patched with the chart's RBAC.
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}})
    kube.create(pull_path(namespace), {
        "apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret", "metadata": {"name": "pull"},
        "spec": {"serviceAccounts": ["builder"]}})
    obj = wait_for(rc_ready(kube, namespace, "hub"), 60, "RegistryCredential Ready")
    secret_name = obj["status"]["secretName"]
    wait_for(lambda: condition(kube.get(pull_path(namespace, "pull")), "Ready").get("status") == "True", 60,
             "ECRPullSecret Ready")
    assert kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/builder")["imagePullSecrets"] == [{"name": "pull"}]
    old = kube.get(kube.secret_path(namespace, "pull"))["metadata"]["uid"]
    kube.delete(kube.secret_path(namespace, "pull"))
    wait_for(lambda: ((kube.get_or_none(kube.secret_path(namespace, "pull")) or {}).get("metadata") or {}).get("uid")
             not in (None, old), 30, "pull Secret restored")
    written = kube.get(kube.secret_path(namespace, "pull"))["data"]
    kube.merge_patch(kube.secret_path(namespace, "pull"), {"data": {".dockerconfigjson": b64('{"auths":{}}')}})
    wait_for(lambda: kube.get(kube.secret_path(namespace, "pull"))["data"] == written, 30, "hand edit undone")
    policy_name = f"regaccess-{namespace}-hub"
    wait_for(lambda: condition(kube.get(xrepo_path(namespace, "share")), "Ready").get("status") == "True", 60,
             "CrossAccountRepoAccess Ready")
    assert policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert len(ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]) == 2

    # Rotation of the source Secret reaches Secrets Manager.
    kube.merge_patch(kube.secret_path(namespace, "hub"), {"data": {"password": b64("pw-two-5678")}})
    wait_for(lambda: json.loads(sm.get_secret_value(SecretId=secret_name)["SecretString"])["password"] == "pw-two-5678",
             30, "rotated value in Secrets Manager")

    # Drift: the inline policy and the repository policy removed by hand come back.
    iam.delete_role_policy(RoleName=role, PolicyName=policy_name)
    ecr.delete_repository_policy(repositoryName=repo)
    wait_for(lambda: policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"], 60, "IAM drift remediated")
    wait_for(lambda: "444455556666" in ecr.get_repository_policy(repositoryName=repo)["policyText"], 60,
             "repository policy drift remediated")

    if before_delete is not None:
        before_delete()

    kube.delete(kube.rc_path(namespace, "hub"))
    kube.delete(xrepo_path(namespace, "share"))
    kube.delete(pull_path(namespace, "pull"))
    wait_for(lambda: kube.get_or_none(kube.secret_path(namespace, "pull")) is None, 60, "pull Secret deleted")
    wait_for(lambda: not kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/builder").get("imagePullSecrets"),
             60, "imagePullSecrets entry removed")
    wait_for(lambda: kube.get_or_none(kube.rc_path(namespace, "hub")) is None, 60, "RegistryCredential deleted")
    wait_for(lambda: kube.get_or_none(xrepo_path(namespace, "share")) is None, 60, "CrossAccountRepoAccess deleted")
    assert policy_name not in iam.list_role_policies(RoleName=role)["PolicyNames"]
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=secret_name)


def reconciled_by(replica: Replica, namespace: str) -> bool:
    return any('"reconciled"' in line and namespace in line for line in replica.log().splitlines())


# ------------------------------------------------------------------ tests

def test_helm_install_all_namespaces_two_replicas(plane, admin, aws_session, moto_server, tmp_path):
    """Helm installs the chart (CRDs, RBAC, peering); two replicas share the work by peering."""
    h = helm()
    values = {**RUN_VALUES, "replicaCount": 2}
    config = h.Config(kubeconfig_path=plane.cp.kubeconfig, namespace=NAMESPACE)
    release = config.install(str(CHART), "regaccess", values, namespace=NAMESPACE, create_namespace=True,
                             timeout=120)
    print("helm release:", {k: v for k, v in release.items() if k != "manifest"})
    assert release.get("status", (release.get("info") or {}).get("status")) == "deployed", release.keys()
    docs = render(values)
    assert admin.get("/apis/kopf.dev/v1/clusterkopfpeerings/regaccess")  # created by the chart
    deployment = one(docs, "Deployment")
    assert admin.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/regaccess")["spec"]["replicas"] == 2

    start = plane.mark()
    replicas = [start_replica(plane, deployment, moto_server, tmp_path, f"replica-{i}") for i in range(2)]
    try:
        namespace = f"t-{uuid.uuid4().hex[:6]}"
        admin.create_namespace(namespace)

        def fail_over():
            # The active replica stops gracefully: the standby resumes within seconds.
            active = [r for r in replicas if reconciled_by(r, namespace)]
            assert len(active) == 1, "exactly one replica works while both are up"
            standby = next(r for r in replicas if r is not active[0])
            active[0].stop(signal.SIGTERM)
            kube_sa = Kube(plane.cp.server, controlplane.SA_TOKEN)
            peers = kube_sa.get("/apis/kopf.dev/v1/clusterkopfpeerings")["items"]
            assert peers and len(peers[0].get("status") or {}) == 1  # the stopped replica left
            standby_state["replica"] = standby

        standby_state: dict = {}
        full_cycle(admin, aws_session, namespace, before_delete=fail_over)
        assert reconciled_by(standby_state["replica"], namespace), "the standby took over the delete"
        scrape = requests.get(f"{standby_state['replica'].url}/metrics", timeout=5).text
        check_metric_names(scrape)
    finally:
        for replica in replicas:
            replica.stop()
    check_rbac(plane, docs, replicas, since=start)
    config.uninstall("regaccess", timeout=120)
    assert admin.get_or_none("/apis/rbac.authorization.k8s.io/v1/clusterroles/regaccess") is None
    config.close()


def check_metric_names(scrape: str) -> None:
    """Every metric the alerts and the dashboard query is in a real scrape of the operator."""
    exported = metricnames.from_exposition(scrape) | metricnames.PROMETHEUS_SERIES
    assert "regaccess_reconcile_total" in exported and "regaccess_build_info" in exported
    assert metricnames.from_exposition(scrape) <= metricnames.from_registry() | {"regaccess_build_info"}
    for source, exprs in (("alerts", metricnames.alert_exprs()), ("dashboard", metricnames.dashboard_exprs())):
        used = set().union(*(metricnames.names_in(e) for e in exprs))
        assert not used - exported, f"{source} query metrics the running operator does not export: {used - exported}"


def test_namespaced_manifests(plane, admin, aws_session, moto_server, tmp_path):
    """The rendered manifests for two watched namespaces, applied as plain objects."""
    watched = [f"w-{uuid.uuid4().hex[:6]}", f"w-{uuid.uuid4().hex[:6]}"]
    other = f"o-{uuid.uuid4().hex[:6]}"
    for ns in [NAMESPACE, *watched, other]:
        ensure_namespace(admin, ns)
    values = {**RUN_VALUES, "watchNamespaces": watched}
    docs = render(values)
    # Plain manifests: the CRDs first (the chart's crds/, as deploy/base lists them), then the rest.
    admin.apply_crds([p.read_text() for p in sorted((CHART / "crds").glob("*.yaml"))])
    for doc in docs:
        apply(admin, doc)
    start = plane.mark()
    replica = start_replica(plane, one(docs, "Deployment"), moto_server, tmp_path, "namespaced")
    try:
        full_cycle(admin, aws_session, watched[0])
        # ... and the operator does not serve resources outside the watched namespaces.
        admin.create(admin.rc_path(other), registry_credential(other, "ignored", {"source": {"secretRef": {"name": "x"}}}))
        time.sleep(3)
        # Only the CRD's status default (observedGeneration 0): the operator wrote nothing.
        assert admin.get(admin.rc_path(other, "ignored")).get("status") == {"observedGeneration": 0}
        replica.stop()
        check_rbac(plane, docs, [replica], since=start)
        # Outside the watched namespaces the ServiceAccount has no access at all: a real 403
        # (checked after the RBAC accounting, which counts every 403 as a missing rule).
        sa = Kube(plane.cp.server, controlplane.SA_TOKEN)
        with pytest.raises(ApiError) as denied:
            sa.get(f"/api/v1/namespaces/{other}/secrets")
        assert denied.value.status == 403
    finally:
        replica.stop()


def test_default_manifests_are_accepted_by_the_api_server(admin, plane):
    """deploy/base (the default rendering) passes the API server's validation (server dry run)."""
    base = CHART.parents[1] / "deploy" / "base"
    for path in sorted(base.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            api = doc["apiVersion"]
            prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
            plural = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
                      "ClusterRoleBinding": "clusterrolebindings", "Deployment": "deployments",
                      "Service": "services"}[doc["kind"]]
            ns = doc["metadata"].get("namespace")
            url = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
            try:
                admin.create(url + "?dryRun=All", doc)
            except ApiError as error:
                assert error.status == 409, f"{path.name} {doc['kind']}: {error}"  # already exists is fine
