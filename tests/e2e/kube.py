"""The tests' Kubernetes client: ``controller.kubeclient.Client`` plus test-only helpers.

One client for the demo and the tests (``controller.kubeclient``); this module
adds what only tests use: typed paths, CRDs applied and waited for, Events by
object, and the bounded ``wait_for`` poll. Tests drive the operator only through
the Kubernetes API, as users do.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Callable, Iterator

import yaml

from controller.api.models import API_VERSION
from controller.kubeclient import (  # noqa: F401 - re-exported for the tests
    ApiError,
    Client,
    condition,
    core_path,
    custom_resource_path,
    tls_context,
)


OPT_IN_LABEL = "regaccess.io/source"


def opted_in(body: dict[str, Any]) -> dict[str, Any]:
    """A Secret as the tier's users write them: labelled to opt in as a source, as the docs
    say, so every test's source converges under the operator's default. A test that needs a
    Secret without the opt-in sets the label itself (to anything but "true")."""
    if body.get("kind") != "Secret":
        return body
    meta = dict(body.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    if OPT_IN_LABEL in labels:
        return body
    labels[OPT_IN_LABEL] = "true"
    return {**body, "metadata": {**meta, "labels": labels}}


class Kube(Client):
    """A client of the test control plane (self-signed serving certificate on 127.0.0.1)."""

    def __init__(self, server: str, token: str) -> None:
        super().__init__(server, token, context=tls_context(insecure=True))

    # ---- typed paths

    @staticmethod
    def rc_path(namespace: str, name: str | None = None, plural: str = "registrycredentials") -> str:
        return custom_resource_path(plural, namespace, name)

    @staticmethod
    def secret_path(namespace: str, name: str | None = None) -> str:
        return core_path("secrets", namespace, name)

    # ---- source Secrets opt in (--source-secret-opt-in, default regaccess.io/source=true)

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return super().create(path, opted_in(body))

    def replace(self, path: str, body: dict[str, Any]) -> Any:
        return super().replace(path, opted_in(body))

    def apply_crds(self, texts: list[str]) -> None:
        for text in texts:
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                self.apply_crd(doc)
                name = doc["metadata"]["name"]
                wait_for(lambda: self.crd_established(name), 30, f"CRD {name} established")

    def events_for(self, namespace: str, name: str) -> list[dict]:
        return [e for e in self.events(namespace) if e.get("involvedObject", {}).get("name") == name]

    def all_events(self) -> list[dict]:
        return self.get("/api/v1/events")["items"]

    def watch(self, path: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The events of one watch request (``path`` with ``?watch=1...``), for at most ``seconds``."""
        separator = "&" if "?" in path else "?"
        request = urllib.request.Request(f"{self.server}{path}{separator}timeoutSeconds={seconds}",
                                         headers=self._headers)
        with urllib.request.urlopen(request, context=self._context, timeout=seconds + 10) as answer:
            for line in answer:
                if line.strip():
                    yield json.loads(line)


class GiveUp(AssertionError):
    """Raised by a wait_for predicate when waiting longer cannot help (e.g. the process died)."""


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until predicate returns a truthy value; bounded by timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as error:  # noqa: BLE001 - keep polling, report the last one
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def registry_credential(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": "RegistryCredential",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
