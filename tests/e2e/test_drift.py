"""Drift end to end: hand edits in AWS are found within one interval, repaired or reported, and counted.

Its own operator process (``--drift-interval 3``) on the real API server and
the AWS test server. For each driftPolicy, a RegistryCredential (secret, role
policy, task definition, job definition, pull-through cache rule) and a
CrossAccountRepoAccess (one repository) are made Ready; then every kind of AWS
object is changed behind the operator's back at once:

- a new secret value (PutSecretValue),
- the inline role policy widened to every secret,
- an action added to a statement whose Sid the operator owns,
- a task definition revision (and a job definition revision) without the credential,
- the pull-through cache rule deleted.

Remediate: every change is found and repaired. Report: found, Drifted=True, a
DriftDetected Event naming object and field (never a value), and AWS stays as
the person left it, check after check. Both: counted in /metrics. Also: the
/metrics output passes ``promtool check metrics``; /readyz answers 200 only
once kopf is watching.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS
from controller.aws import repository_policies as policies
from tests.e2e import controlplane
from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.test_registry_credential import b64, basic_auth_secret
from tests.harness import world

pytestmark = pytest.mark.e2e

INTERVAL = 3.0
# One interval with its jitter, one timer tick, and the reconcile itself on a shared 2-core machine.
DETECTION_DEADLINE = INTERVAL * 1.1 + 1 + 20
HAND_VALUE = {"username": "intruder", "accessToken": "HANDSET-value-5e1f"}
XREPO_PLURAL = CROSS_ACCOUNT_REPO_ACCESS.plural


@pytest.fixture(scope="module")
def drift_operator(control_plane, kube, moto_server, tmp_path_factory):
    op = start_operator(control_plane, moto_server, tmp_path_factory.mktemp("drift-operator"),
                        extra_env={"REGACCESS_DRIFT_INTERVAL": str(INTERVAL)})
    yield op
    op.kill(signal.SIGTERM)


def metric_values(text: str) -> dict[tuple[str, tuple], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def counter(values: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in values.items() if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))


class Scene:
    """The AWS objects and custom resources of one test, named after its namespace."""

    def __init__(self, kube, namespace: str, session, policy: str) -> None:
        self.kube, self.ns, self.policy_name = kube, namespace, f"regaccess-{namespace}-cred"
        self.client = session.client
        self.role, self.family, self.job = f"exec-{namespace}", f"web-{namespace}", f"job-{namespace}"
        self.prefix, self.repository = namespace, f"{namespace}/app"
        self.secret_name = f"ecr-pullthroughcache/{namespace}/cred"
        role_arn = world.make_role(self.client, self.role)
        self.role_arn = role_arn
        world.register_family(self.client, self.family, role_arn)
        world.register_job(self.client, self.job, role_arn)
        world.make_repository(self.client, self.repository)
        kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
        kube.create(kube.rc_path(namespace), registry_credential(namespace, "cred", {
            "source": {"secretRef": {"name": "src"}},
            "secret": {"forceDeleteWithoutRecovery": True},
            "grants": {"executionRoles": [self.role]},
            "consumers": {"ecsTaskDefinitions": [{"family": self.family}], "batchJobDefinitions": [{"name": self.job}]},
            "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": self.prefix},
            "driftPolicy": policy,
        }))
        kube.create(kube.rc_path(namespace, plural=XREPO_PLURAL), {
            "apiVersion": "regaccess.io/v1alpha1", "kind": "CrossAccountRepoAccess",
            "metadata": {"name": "pullers", "namespace": namespace},
            "spec": {"repositories": [self.repository], "driftPolicy": policy,
                     "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]},
        })

    def rc(self) -> dict:
        return self.kube.get(self.kube.rc_path(self.ns, "cred"))

    def xrepo(self) -> dict:
        return self.kube.get(self.kube.rc_path(self.ns, "pullers", plural=XREPO_PLURAL))

    def wait_ready(self) -> None:
        wait_for(lambda: condition(self.rc(), "Ready").get("status") == "True", 60, "RegistryCredential Ready")
        wait_for(lambda: condition(self.xrepo(), "Ready").get("status") == "True", 60, "CrossAccountRepoAccess Ready")

    def edit_everything(self) -> str:
        """Change every kind of AWS object by hand; returns the owned Sid that was edited."""
        world.put_secret_value(self.client, self.secret_name, HAND_VALUE)
        world.edit_role_policy(self.client, self.role, self.policy_name)
        sid = world.add_action_to_owned_statement(self.client, self.repository, policies.sid_prefix("e2e", self.ns, "pullers"))
        other_role = f"arn:aws:iam::{world.ACCOUNT}:role/exec-{self.ns}"
        world.register_family(self.client, self.family, other_role)
        world.register_job(self.client, self.job, other_role)
        world.delete_rule(self.client, self.prefix)
        return sid

    def expected_rc_drift(self) -> set[tuple[str, str]]:
        return {
            ("secret", "SecretString"),
            (f"rolePolicy/{self.role}", "PolicyDocument"),
            (f"taskDefinition/{self.family}", "containerDefinitions[app].repositoryCredentials"),
            (f"jobDefinition/{self.job}", "containerProperties.repositoryCredentials"),
            (f"pullThroughCacheRule/{self.prefix}", "exists"),
        }

    def drift_pairs(self, obj: dict) -> set[tuple[str, str]]:
        return {(r["object"], r["field"]) for r in (obj.get("status") or {}).get("drift") or []}

    def secret_value(self) -> dict:
        return json.loads(self.client("secretsmanager").get_secret_value(SecretId=self.secret_name)["SecretString"])

    def owned_actions(self) -> set[str]:
        prefix = policies.sid_prefix("e2e", self.ns, "pullers")
        document = world.repository_policy(self.client, self.repository)
        actions: set[str] = set()
        for statement in document["Statement"]:
            if statement["Sid"].startswith(prefix):
                action = statement["Action"]
                actions |= set(action if isinstance(action, list) else [action])
        return actions

    def task_credentials(self) -> dict | None:
        containers = world.latest_task_definition(self.client, self.family)["containerDefinitions"]
        return containers[0].get("repositoryCredentials")

    def job_credentials(self) -> dict | None:
        return world.latest_job_definition(self.client, self.job)["containerProperties"].get("repositoryCredentials")


@pytest.fixture
def scenes(kube, drift_operator):
    """Scenes made by a test, deleted at its end while this module's operator still runs.

    Left behind, they would keep the next module's operator busy with drift checks
    (envtest has no namespace controller, so namespaces never empty themselves).
    """
    made: list[Scene] = []
    yield made
    for scene in made:
        kube.delete(kube.rc_path(scene.ns, "cred"))
        kube.delete(kube.rc_path(scene.ns, "pullers", plural=XREPO_PLURAL))
    for scene in made:
        wait_for(lambda: kube.get_or_none(kube.rc_path(scene.ns, "cred")) is None
                 and kube.get_or_none(kube.rc_path(scene.ns, "pullers", plural=XREPO_PLURAL)) is None,
                 60, f"resources of {scene.ns} deleted")


def wait_detected(scene: Scene, edited_at: float) -> tuple[dict, dict]:
    expected = scene.expected_rc_drift()
    xrepo_object = f"repositoryPolicy/{scene.repository}"
    rc = wait_for(lambda: (lambda o: o if expected <= scene.drift_pairs(o) else None)(scene.rc()),
                  DETECTION_DEADLINE, "RegistryCredential drift recorded")
    xrepo = wait_for(lambda: (lambda o: o if any(p[0] == xrepo_object for p in scene.drift_pairs(o)) else None)(
        scene.xrepo()), DETECTION_DEADLINE, "CrossAccountRepoAccess drift recorded")
    elapsed = time.monotonic() - edited_at
    # The bound the waits enforce, said once more for the reader of a failure.
    assert elapsed <= DETECTION_DEADLINE
    return rc, xrepo


def drift_events(kube, namespace: str) -> list[dict]:
    return [e for e in kube.get(f"/api/v1/namespaces/{namespace}/events")["items"] if e["reason"] == "DriftDetected"]


def test_remediate_repairs_every_kind_and_counts_it(kube, drift_operator, namespace, aws_e2e, scenes):
    scene = Scene(kube, namespace, aws_e2e, "Remediate")
    scenes.append(scene)
    scene.wait_ready()
    secret_arn = scene.rc()["status"]["secretArn"]
    ours = scene.secret_value()
    pull = scene.owned_actions()
    before = metric_values(drift_operator.metrics())

    sid = scene.edit_everything()
    edited = time.monotonic()
    rc, xrepo = wait_detected(scene, edited)

    # repaired in AWS
    wait_for(lambda: scene.secret_value() == ours, 20, "secret value restored")
    wait_for(lambda: world.role_policy(scene.client, scene.role, scene.policy_name)["Statement"][0]["Resource"]
             == secret_arn, 20, "role policy restored")
    wait_for(lambda: scene.owned_actions() == pull, 20, f"statement {sid} restored")
    wait_for(lambda: scene.task_credentials() == {"credentialsParameter": secret_arn}, 20, "task definition repaired")
    wait_for(lambda: scene.job_credentials() == {"credentialsParameter": secret_arn}, 20, "job definition repaired")
    wait_for(lambda: world.rules(scene.client, scene.prefix), 20, "pull-through cache rule recreated")
    assert world.rules(scene.client, scene.prefix)[0]["credentialArn"] == secret_arn

    rc = scene.rc()
    assert all(r["remediated"] for r in rc["status"]["drift"] if (r["object"], r["field"]) in scene.expected_rc_drift())
    assert condition(rc, "Drifted")["status"] == "False" and condition(rc, "Ready")["status"] == "True"
    assert condition(scene.xrepo(), "Drifted")["reason"] == "DriftRemediated"
    events = drift_events(kube, namespace)
    messages = " ".join(e["message"] for e in events if e["involvedObject"]["name"] == "cred")
    for obj, field in scene.expected_rc_drift():
        assert f"{obj}.{field}" in messages
    xrepo_messages = " ".join(e["message"] for e in events if e["involvedObject"]["name"] == "pullers")
    assert f"repositoryPolicy/{scene.repository}." in xrepo_messages and sid in xrepo_messages

    def counted() -> bool:
        after = metric_values(drift_operator.metrics())
        for kind, object_type in [("RegistryCredential", t) for t in
                                  ("secret", "rolePolicy", "taskDefinition", "jobDefinition", "pullThroughCacheRule")] + [
                ("CrossAccountRepoAccess", "repositoryPolicy")]:
            for name in ("regaccess_drift_detected_total", "regaccess_drift_remediated_total"):
                if counter(after, name, kind=kind, object_type=object_type) <= counter(before, name, kind=kind,
                                                                                      object_type=object_type):
                    return False
        return True

    wait_for(counted, 10, "drift detected and remediated counted per kind and object type")


def test_report_leaves_aws_alone_and_says_so(kube, drift_operator, namespace, aws_e2e, scenes):
    scene = Scene(kube, namespace, aws_e2e, "Report")
    scenes.append(scene)
    scene.wait_ready()
    revisions = len(aws_e2e.client("ecs").list_task_definitions(familyPrefix=scene.family)["taskDefinitionArns"])
    before = metric_values(drift_operator.metrics())

    sid = scene.edit_everything()
    edited = time.monotonic()
    rc, xrepo = wait_detected(scene, edited)
    assert condition(rc, "Drifted")["status"] == "True" and condition(rc, "Drifted")["reason"] == "DriftReported"
    assert condition(xrepo, "Drifted")["status"] == "True"

    # Two more checks of each resource go by; nothing is written back.
    for obj_of in (scene.rc, scene.xrepo):
        first = obj_of()["status"]["lastDriftCheckTime"]
        wait_for(lambda: obj_of()["status"]["lastDriftCheckTime"] != first, DETECTION_DEADLINE, "another check")
        second = obj_of()["status"]["lastDriftCheckTime"]
        wait_for(lambda: obj_of()["status"]["lastDriftCheckTime"] != second, DETECTION_DEADLINE, "a third check")
    assert scene.secret_value() == HAND_VALUE
    assert world.role_policy(scene.client, scene.role, scene.policy_name)["Statement"][0]["Resource"] == "*"
    assert "ecr:PutImage" in scene.owned_actions()
    assert scene.task_credentials() is None and scene.job_credentials() is None
    assert len(aws_e2e.client("ecs").list_task_definitions(familyPrefix=scene.family)["taskDefinitionArns"]) == revisions + 1
    assert world.rules(scene.client, scene.prefix) == []
    assert condition(scene.rc(), "Drifted")["status"] == "True"

    # One DriftDetected Event per resource, naming object and field, never a value.
    events = drift_events(kube, namespace)
    by_object = {e["involvedObject"]["name"]: e for e in events}
    assert set(by_object) == {"cred", "pullers"}, [(e["involvedObject"]["name"], e["message"]) for e in events]
    for obj, field in scene.expected_rc_drift():
        assert f"{obj}.{field}" in by_object["cred"]["message"]
    assert by_object["cred"]["type"] == "Warning"
    assert f"repositoryPolicy/{scene.repository}" in json.dumps([e["message"] for e in kube.events_for(namespace, "pullers")])
    assert sid in json.dumps([e["message"] for e in kube.events_for(namespace, "pullers")])
    everything = json.dumps(kube.get(f"/api/v1/namespaces/{namespace}/events")) + json.dumps(scene.rc())
    assert HAND_VALUE["accessToken"] not in everything and b64(HAND_VALUE["accessToken"]) not in everything

    after = metric_values(drift_operator.metrics())
    for object_type in ("secret", "rolePolicy", "taskDefinition", "jobDefinition", "pullThroughCacheRule"):
        labels = {"kind": "RegistryCredential", "object_type": object_type}
        # counted at every check that finds it (three checks at least)
        assert counter(after, "regaccess_drift_detected_total", **labels) >= counter(
            before, "regaccess_drift_detected_total", **labels) + 3
    assert counter(after, "regaccess_drift_detected_total", kind="CrossAccountRepoAccess") > counter(
        before, "regaccess_drift_detected_total", kind="CrossAccountRepoAccess")
    assert counter(after, "regaccess_resources", kind="RegistryCredential", condition="Drifted", status="True") >= 1
    assert HAND_VALUE["accessToken"] not in drift_operator.metrics()


def test_metrics_pass_promtool_and_carry_the_documented_families(drift_operator):
    text = drift_operator.metrics()
    families = {f.name for f in text_string_to_metric_families(text)}
    for name in ("regaccess_build_info", "regaccess_reconcile", "regaccess_reconcile_duration_seconds",
                 "regaccess_aws_api_calls", "regaccess_aws_api_call_duration_seconds", "regaccess_drift_detected",
                 "regaccess_drift_remediated", "regaccess_resources", "regaccess_drift_checks",
                 "regaccess_last_drift_check_timestamp_seconds", "regaccess_drift_interval_seconds"):
        assert name in families, name
    values = metric_values(text)
    assert counter(values, "regaccess_drift_interval_seconds") == INTERVAL
    assert counter(values, "regaccess_aws_api_calls_total", service="secretsmanager", operation="DescribeSecret") > 0
    assert counter(values, "regaccess_last_drift_check_timestamp_seconds", kind="RegistryCredential") > time.time() - 600
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install the Debian package 'prometheus' to lint /metrics")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr


def test_readyz_only_once_kopf_watches(control_plane, kube, moto_server, tmp_path):
    # An API server that is not there: the process lives (healthz) but kopf cannot watch (readyz).
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(controlplane.kubeconfig_text(f"https://127.0.0.1:{controlplane.free_port()}",
                                                 controlplane.ADMIN_TOKEN, "admin"))
    port = controlplane.free_port()
    env = {**drift_env(moto_server), "KUBECONFIG": str(dead)}
    log = tmp_path / "unready.log"
    proc = subprocess.Popen([*operator_args(), "--metrics-port", str(port)], env=env, cwd=Path(__file__).parents[2],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).status_code == 200, 60, "healthz on a live process")
        unready = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert requests.get(f"{url}/readyz", timeout=2).status_code == 503, log.read_text()[-2000:]
            unready += 1
            time.sleep(0.5)
        assert unready >= 5
        assert requests.get(f"{url}/healthz", timeout=2).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    # The same operator against the real API server becomes ready.
    op = start_operator(control_plane, moto_server, tmp_path)
    try:
        assert requests.get(f"{op.metrics_url}/readyz", timeout=5).status_code == 200
        assert requests.get(f"{op.metrics_url}/healthz", timeout=5).status_code == 200
    finally:
        op.kill(signal.SIGTERM)


def drift_env(moto_server: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_"))}
    env.update({"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "REGACCESS_METRICS_BIND": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    return env


def operator_args() -> list[str]:
    return [sys.executable, "-m", "controller", "run", "-A"]
