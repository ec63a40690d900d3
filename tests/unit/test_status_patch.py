"""The status patch the handlers send: list items never carry "" or null members.

``controller.kubeapi.patchable`` (pure) and ``controller.handlers._apply_status``:
the API server rejects ``"message": ""`` inside list items of a merge patch
(422, seen with v1.20), which lost whole status patches of CrossAccountRepoAccess
(repositories[]) and RegistryCredential (managed[]) — found by tests/e2e/test_drift.py.
"""

from __future__ import annotations

from controller.handlers import _apply_status
from controller.kubeapi import patchable


def test_patchable_drops_blank_members_of_list_items_only():
    status = {
        "lastSyncTime": None,  # top level: a merge-patch deletion, kept
        "repositories": [{"name": "app", "arn": None, "synced": True, "message": ""}],
        "managed": [{"kind": "rolePolicy", "name": "exec", "arn": None, "state": "Synced", "message": ""},
                    {"kind": "rolePolicy", "name": "b", "state": "Error", "message": "role b does not exist"}],
        "pullThroughCacheRule": {"ecrRepositoryPrefix": "hub", "credentialArn": None},
        "tags": ["", "x"],
    }
    assert patchable(status) == {
        "lastSyncTime": None,
        "repositories": [{"name": "app", "synced": True}],
        "managed": [{"kind": "rolePolicy", "name": "exec", "state": "Synced"},
                    {"kind": "rolePolicy", "name": "b", "state": "Error", "message": "role b does not exist"}],
        "pullThroughCacheRule": {"ecrRepositoryPrefix": "hub", "credentialArn": None},
        "tags": ["", "x"],
    }


class _Patch:
    def __init__(self) -> None:
        self.status: dict = {}


def test_a_status_read_back_without_blank_members_is_not_patched_again():
    new = {"repositories": [{"name": "app", "synced": True, "message": ""}], "observedGeneration": 1}
    first = _Patch()
    assert _apply_status(first, {}, new)
    assert first.status["repositories"] == [{"name": "app", "synced": True}]
    # what the API server then returns: the same, so a quiet resync patches nothing
    again = _Patch()
    assert not _apply_status(again, dict(first.status), new)
    assert again.status == {}
