"""GitOps tools reading live status: the operator against the real API server and moto.

For a resource that converges, one with bad input and one that waits for a role that does
not exist yet (then does), the live object from the API server goes to
- ``kubectl wait --for=condition=Ready`` / ``--for=condition=Stalled`` (a real kubectl with
  a kubeconfig for the test control plane; .ci/run installs Debian's kubernetes-client when
  the machine has none),
- the Argo CD health check (charts/regaccess/files/argocd-health.lua in a real Lua 5.1 and 5.4),
- kstatus' rules (tests/harness/gitops.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.e2e.kube import condition, wait_for
from tests.e2e.support import (
    SETTLE,
    basic_auth_secret,
    custom_resource,
    delete_all,
    rc_path,
    xrepo_path,
)
from tests.harness.gitops import argocd_health, kstatus
from tests.harness.world import make_repository, make_role

pytestmark = pytest.mark.e2e

ABNORMAL = ("Reconciling", "Stalled")


@pytest.fixture
def kubectl(control_plane):
    """Run kubectl against the test control plane; returns the finished process."""
    binary = shutil.which("kubectl")
    if binary is None:
        message = "kubectl not found: install Debian's kubernetes-client (.ci/run does)"
        if os.environ.get("REGACCESS_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "--kubeconfig", str(control_plane.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout + 30)
    return run


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)


def wait(kubectl, namespace: str, what: str, condition_type: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return kubectl("-n", namespace, "wait", f"--for=condition={condition_type}", what, f"--timeout={timeout}s",
                   timeout=timeout)


def abnormal(obj: dict) -> dict[str, tuple[str, str]]:
    return {t: (condition(obj, t)["status"], condition(obj, t)["reason"]) for t in ABNORMAL if condition(obj, t)}


def health(obj: dict) -> str:
    results = {lua: argocd_health(obj, lua) for lua in ("lua51", "lua54")}
    assert results["lua51"] == results["lua54"], results
    return results["lua51"]["status"]


def test_a_new_resource_reads_as_not_yet_observed(kube, namespace):
    # The create response is the stored object before any operator could write status: the
    # CRD's status default makes it "generation 1, observed 0" rather than no status at all.
    made = kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "new", {
        "source": {"secretRef": {"name": "src"}}}))
    assert made["status"] == {"observedGeneration": 0} and made["metadata"]["generation"] == 1
    assert health(made) == "Progressing"
    assert kstatus(made)[0] == "InProgress"
    delete_all(kube, namespace)


def test_ready_stalled_and_converging_as_kubectl_argocd_and_kstatus_read_them(
        kube, operator, namespace, aws_e2e, kubectl, cleanup):
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    role = f"{namespace}-later"
    source = {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}}
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "good", source))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "bad", {
        "source": {"secretRef": {"name": "src"}},
        "secret": {"recoveryWindowInDays": 7, "forceDeleteWithoutRecovery": True},
    }))
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "waits", {
        **source, "grants": {"executionRoles": [role]}}))
    make_repository(aws_e2e.client, f"{namespace}/app")
    kube.create(xrepo_path(namespace), custom_resource("CrossAccountRepoAccess", namespace, "pull", {
        "repositories": [f"{namespace}/app"],
        "grants": [{"principals": [{"accountId": "210987654321"}], "access": "Pull"}],
    }))

    # Converged: kubectl wait returns, Argo CD says Healthy, kstatus Current.
    done = wait(kubectl, namespace, "registrycredential/good", "Ready")
    assert done.returncode == 0, done.stderr
    assert "condition met" in done.stdout
    done = wait(kubectl, namespace, "xrepo/pull", "Ready")
    assert done.returncode == 0, done.stderr
    for path in (rc_path(namespace, "good"), xrepo_path(namespace, "pull")):
        obj = kube.get(path)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert abnormal(obj) == {}  # absent, not False
        assert health(obj) == "Healthy"
        assert kstatus(obj)[0] == "Current"

    # Bad input: Stalled with Ready's reason; Ready is never met.
    done = wait(kubectl, namespace, "regcred/bad", "Stalled")
    assert done.returncode == 0, done.stderr
    obj = kube.get(rc_path(namespace, "bad"))
    assert abnormal(obj) == {"Stalled": ("True", "InvalidDeletionSettings")}
    assert condition(obj, "Ready")["reason"] == "InvalidDeletionSettings"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert health(obj) == "Degraded"
    assert argocd_health(obj)["message"].startswith("InvalidDeletionSettings: ")
    assert kstatus(obj)[0] == "Failed"
    not_ready = wait(kubectl, namespace, "regcred/bad", "Ready", timeout=3)
    assert not_ready.returncode != 0 and "timed out" in not_ready.stderr
    # docs/gitops.md's "stuck, not slow" check: --timeout=0s looks once.
    assert wait(kubectl, namespace, "regcred/bad", "Stalled", timeout=0).returncode == 0
    assert wait(kubectl, namespace, "regcred/good", "Stalled", timeout=0).returncode != 0

    # Still converging: the role does not exist yet, so a retry is scheduled.
    obj = wait_for(lambda: (o := kube.get(rc_path(namespace, "waits")))
                   and condition(o, "Reconciling").get("status") == "True" and o, SETTLE, "Reconciling")
    assert abnormal(obj) == {"Reconciling": ("True", "DependencyMissing")}
    assert condition(obj, "Ready")["status"] == "False"
    assert health(obj) == "Progressing"
    assert kstatus(obj)[0] == "InProgress"

    # The role appears: the retry converges, Reconciling goes away.
    make_role(aws_e2e.client, role)
    done = wait(kubectl, namespace, "regcred/waits", "Ready")
    assert done.returncode == 0, done.stderr
    obj = kube.get(rc_path(namespace, "waits"))
    assert abnormal(obj) == {}
    assert health(obj) == "Healthy" and kstatus(obj)[0] == "Current"
    assert obj["status"]["syncedGeneration"] == obj["metadata"]["generation"]
