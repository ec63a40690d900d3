"""Regression: an empty string in a status row made the API server reject the whole status patch.

kube-apiserver 1.20 reads ``""`` inside a merge-patched custom resource status as
null; the structural schema refuses null strings, so a Synced row with
``message: ""`` (every successful task-definition registration, every synced
repository) failed with 422 and the resource never became Ready. Found by
``regaccess demo``.
"""

from __future__ import annotations

import kopf
import pytest

from controller.kubeapi import StatusWriter, patchable
from tests.e2e import controlplane
from tests.e2e.kube import registry_credential

pytestmark = pytest.mark.e2e


def test_status_writer_row_with_empty_message_is_accepted(kube, control_plane, namespace):
    kube.create(kube.rc_path(namespace), registry_credential(namespace, "rows", {"source": {"secretRef": {"name": "s"}}}))
    info = kopf.ConnectionInfo(server=control_plane.server, token=controlplane.ADMIN_TOKEN, insecure=True)
    writer = StatusWriter(info, "registrycredentials", namespace, "rows", [])
    row = {"kind": "taskDefinition", "name": "web", "arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
           "state": "Synced", "message": ""}

    writer({"managed": [row]})  # raised HTTP 422 before the fix

    managed = kube.get(kube.rc_path(namespace, "rows"))["status"]["managed"]
    assert managed == [{k: v for k, v in row.items() if k != "message"}]


def test_patchable_drops_empty_strings_at_any_depth():
    status = {"reason": "", "managed": [{"name": "a", "message": ""}, {"name": "b", "message": "why"}],
              "nested": {"deeper": {"x": "", "y": 0, "z": False, "n": None}}}
    assert patchable(status) == {"managed": [{"name": "a"}, {"name": "b", "message": "why"}],
                                 "nested": {"deeper": {"y": 0, "z": False, "n": None}}}
