"""e2e tier: ``regaccess plan --kube`` reads the live status from a real API server.

Given a RegistryCredential the operator (a real kopf process) converged with two
execution roles, when a user plans the manifest with one role removed, with
``--kube`` pointed at the cluster, then plan lists the inline policy on the
removed role as a planned delete (what the operator would stop managing), the
rest as unchanged, makes no AWS write, and reads the source Secret as metadata
only; and when the manifest is then applied, the operator's writes are exactly
the planned ones.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml

from controller import kubeclient, plan
from tests.e2e.kube import wait_for
from tests.e2e.support import basic_auth_secret, custom_resource, managed, rc_path, wait_ready
from tests.harness import world

pytestmark = pytest.mark.e2e

PASSWORD = "pw-PLAN-KUBE-LEAKCHECK"


def test_plan_kube_lists_the_policy_the_operator_would_remove(control_plane, kube, operator, aws_server_session,
                                                               aws_e2e, namespace, tmp_path, monkeypatch):
    server = aws_server_session
    for role in ("plan-exec-a", "plan-exec-b"):
        world.make_role(aws_e2e.client, role)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src", password=PASSWORD))
    spec = {"source": {"secretRef": {"name": "src"}}, "grants": {"executionRoles": ["plan-exec-a", "plan-exec-b"]},
            "secret": {"forceDeleteWithoutRecovery": True}}
    kube.create(rc_path(namespace), custom_resource("RegistryCredential", namespace, "cred", spec))
    wait_ready(kube, rc_path(namespace, "cred"))

    narrowed = custom_resource("RegistryCredential", namespace, "cred",
                               {**spec, "grants": {"executionRoles": ["plan-exec-a"]}})
    manifest = tmp_path / "cred.yaml"
    manifest.write_text(yaml.safe_dump(narrowed))
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("REGACCESS_CLUSTER_ID", "e2e")
    seen: list[dict] = []
    real_get = kubeclient.Client.get_or_none

    def recording_get(self, path, accept=None):
        body = real_get(self, path, accept=accept)
        seen.append({"path": path, "body": body})
        return body

    monkeypatch.setattr(kubeclient.Client, "get_or_none", recording_get)
    since = server.calls.mark()
    out = io.StringIO()

    code = plan.run([str(manifest)], output="json", cluster_id="e2e", kube=True, stdout=out, stderr=io.StringIO())

    assert server.calls.writes(since=since) == [], "plan wrote to AWS"
    report = json.loads(out.getvalue())
    assert code == plan.EXIT_OK, out.getvalue()
    changes = [(c["action"], c["object"]) for c in report["objects"][0]["changes"]]
    writes = [(c["action"], c["object"]) for c in report["objects"][0]["changes"] if c["writes"]]
    assert len(writes) == 1 and writes[0][0] == "delete" and "plan-exec-b" in writes[0][1], changes
    assert ("unchanged", "rolePolicy plan-exec-a") in changes, changes
    # The source Secret came as metadata only: its data never reached plan.
    [secret_read] = [s for s in seen if "/secrets/" in s["path"]]
    assert "data" not in secret_read["body"] and secret_read["body"]["metadata"]["resourceVersion"]
    assert PASSWORD not in out.getvalue()

    since = server.calls.mark()
    kube.merge_patch(rc_path(namespace, "cred"), {"spec": {"grants": {"executionRoles": ["plan-exec-a"]}}})
    wait_for(lambda: ("rolePolicy", "plan-exec-b") not in managed(kube.get(rc_path(namespace, "cred"))), 45,
             "the operator to stop managing the policy on plan-exec-b")
    assert [c.operation for c in server.calls.writes(since=since)] == ["DeleteRolePolicy"]
