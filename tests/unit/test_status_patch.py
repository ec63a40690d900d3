"""Status patches leave empty strings and nulls out of list items (controller.kubeapi.patchable).

Regression: the API server (v1.20, the e2e tier's) turns ``"message": ""`` inside a
``status.managed`` / ``status.repositories`` row of a merge patch into null and rejects
the whole patch with 422, so no resource with a wiring row, a pull-through cache row or a
repository row ever got its status written. The e2e tests (tests/e2e/test_wiring.py,
test_cross_account.py) show it against the real API server; these pin the pure part.
"""

from __future__ import annotations

import pytest

from controller.handlers import _apply_status
from controller.kubeapi import patchable


class FakePatch:
    def __init__(self) -> None:
        self.status: dict = {}


@pytest.mark.parametrize("given, expected", [
    ([{"kind": "rolePolicy", "name": "r", "arn": None, "state": "Synced", "message": ""}],
     [{"kind": "rolePolicy", "name": "r", "state": "Synced"}]),
    ([{"name": "repo", "arn": "arn:x", "synced": False, "message": "", "rejectedSince": None}],
     [{"name": "repo", "arn": "arn:x", "synced": False}]),
    ([{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok", "observedGeneration": 0}],
     [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok", "observedGeneration": 0}]),
    ({"ecrRepositoryPrefix": "p", "credentialArn": None}, {"ecrRepositoryPrefix": "p", "credentialArn": None}),
    ("", ""),
    ([], []),
], ids=["managed-row", "repository-row-keeps-false", "zero-kept", "object-untouched", "scalar", "empty-list"])
def test_patchable_drops_only_empty_values_inside_list_items(given, expected):
    assert patchable(given) == expected


def test_apply_status_sends_rows_without_empty_messages_and_then_sees_no_change():
    row = {"kind": "taskDefinition", "name": "web", "arn": "arn:aws:ecs:task-definition/web:2",
           "state": "Synced", "message": ""}
    patch = FakePatch()
    assert _apply_status(patch, {}, {"managed": [row]})
    assert patch.status == {"managed": [{k: v for k, v in row.items() if k != "message"}]}
    # What the API server then holds is what the next reconcile compares against: no change.
    again = FakePatch()
    assert not _apply_status(again, {"managed": patch.status["managed"]}, {"managed": [row]})
    assert again.status == {}
