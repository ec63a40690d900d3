"""controller.kubeapi.api_safe: the status shapes kube-apiserver accepts (pure)."""

from __future__ import annotations

from controller.kubeapi import api_safe


def test_empty_strings_in_rows_are_dropped():
    """Regression: kube-apiserver 1.20 refused status.managed[].message == "" as null (HTTP 422)."""
    status = {"managed": [{"kind": "taskDefinition", "name": "web", "arn": "arn:x", "state": "Synced", "message": ""}],
              "repositories": [{"name": "r", "arn": None, "synced": True, "message": ""}]}
    assert api_safe(status) == {
        "managed": [{"kind": "taskDefinition", "name": "web", "arn": "arn:x", "state": "Synced"}],
        "repositories": [{"name": "r", "synced": True}],
    }


def test_top_level_none_is_kept_for_merge_patch_deletion_and_values_untouched():
    status = {"pullThroughCacheRule": None, "secretArn": "arn:s", "conditions": [{"type": "Ready", "message": "m"}],
              "drift": [], "observedGeneration": 0, "flag": False}
    assert api_safe(status) == status
