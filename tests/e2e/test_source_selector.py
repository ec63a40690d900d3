"""--source-secret-selector on the real API server: only labelled Secrets reach the operator.

The selector is kopf's ``settings.watching.label_selectors`` for core/v1 secrets, which kopf
sends as the ``labelSelector`` parameter of its Secret list and watch requests: the API server
leaves unlabelled Secrets out of the stream (nothing is received and dropped in the process).
Observable here: an unlabelled source Secret is "not found" for the operator although it
exists; labelling it delivers it through the watch and the resource converges.
"""

from __future__ import annotations

import signal

import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import registry_credential, wait_for
from tests.e2e.test_registry_credential import basic_auth_secret, ready

pytestmark = pytest.mark.e2e

SELECTOR = "regaccess.io/source=true"


def test_only_labelled_source_secrets_are_seen(control_plane, kube, moto_server, namespace, aws_e2e, tmp_path):
    op = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                        extra_env={"REGACCESS_SOURCE_SECRET_SELECTOR": SELECTOR})
    try:
        labelled = basic_auth_secret(namespace, "labelled")
        labelled["metadata"]["labels"] = {"regaccess.io/source": "true"}
        kube.create(kube.secret_path(namespace), labelled)
        plain = basic_auth_secret(namespace, "plain")
        plain["metadata"]["labels"] = {"regaccess.io/source": "later"}   # outside the selector
        kube.create(kube.secret_path(namespace), plain)
        for name in ("labelled", "plain"):
            kube.create(kube.rc_path(namespace), registry_credential(namespace, name, {
                "source": {"secretRef": {"name": name}}, "secret": {"forceDeleteWithoutRecovery": True}}))
        wait_for(ready(kube, namespace, "labelled"), 30, "labelled source: Ready")
        wait_for(ready(kube, namespace, "plain", "SourceSecretNotFound"), 30, "unlabelled source: not found")
        sm = aws_e2e.client("secretsmanager")
        assert sm.list_secrets(Filters=[{"Key": "name", "Values": [f"regaccess/{namespace}/plain"]}])["SecretList"] == []
        # Labelled later: the API server now includes it in the watch, and it converges.
        kube.merge_patch(kube.secret_path(namespace, "plain"), {"metadata": {"labels": {"regaccess.io/source": "true"}}})
        wait_for(ready(kube, namespace, "plain"), 30, "source labelled later: Ready")
    finally:
        op.kill(signal.SIGTERM)
