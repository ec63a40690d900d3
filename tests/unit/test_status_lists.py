"""kubeapi.patchable: status list rows without empty members (the API server's 422 on them).

Regression: with kube-apiserver 1.20 a status merge patch whose list rows carry
``"message": ""`` fails with 422 "must be of type string: null", losing the whole status
patch; seen in tests/chart/test_install_e2e.py (a Synced ECS consumer row, a synced
repository row).
"""

from __future__ import annotations

from controller.kubeapi import patchable


def test_rows_lose_empty_members_only():
    status = {"managed": [{"kind": "EcsTaskDefinition", "name": "web", "arn": None, "state": "Synced", "message": ""}],
              "repositories": [{"name": "base/app", "arn": "arn:x", "synced": True, "message": ""}],
              "secretArn": None, "count": 0}
    assert patchable(status) == {
        "managed": [{"kind": "EcsTaskDefinition", "name": "web", "state": "Synced"}],
        "repositories": [{"name": "base/app", "arn": "arn:x", "synced": True}],
        "secretArn": None, "count": 0,  # top level kept: None deletes a field in a merge patch
    }


def test_false_and_zero_are_kept_in_rows():
    assert patchable([{"synced": False, "n": 0, "message": "x"}]) == [{"synced": False, "n": 0, "message": "x"}]
