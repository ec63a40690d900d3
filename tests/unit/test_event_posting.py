"""The Events the operator posts itself (``controller.kubeapi.event_body``), before the status.

That they are listed the moment Ready is visible is tests/e2e/test_writes_per_reconcile.py.
"""

from __future__ import annotations

from controller.kubeapi import MAX_EVENT_MESSAGE, event_body


def test_an_event_names_its_object_and_a_long_message_is_cut_to_what_the_server_takes():
    involved = {"apiVersion": "regaccess.io/v1alpha1", "kind": "RegistryCredential", "name": "x",
                "namespace": "team-a", "uid": "u-1"}
    event = event_body(involved, "Warning", "SyncFailed", "a" * 600 + "b" * 600, "pod-1", "2026-12-04T00:00:00Z")
    assert event["metadata"] == {"namespace": "team-a", "generateName": "regaccess-"}
    assert event["involvedObject"] == involved
    assert (event["type"], event["reason"], event["source"], event["reportingInstance"]) == \
        ("Warning", "SyncFailed", {"component": "regaccess"}, "pod-1")
    assert len(event["message"]) <= MAX_EVENT_MESSAGE
    assert event["message"].startswith("a") and event["message"].endswith("b")
    short = event_body(involved, "Normal", "SecretCreated", "created", "pod-1", "2026-12-04T00:00:00Z")
    assert short["message"] == "created"
