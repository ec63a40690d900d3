"""A small Kubernetes REST client for the tests (requests over the real API server).

Tests drive the operator only through the Kubernetes API, as users do.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import requests
import yaml

from controller.api.models import API_VERSION, GROUP, VERSION


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Kube:
    def __init__(self, server: str, token: str) -> None:
        self.server = server.rstrip("/")
        self.session = requests.Session()
        self.session.verify = False
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        # verify per request: requests lets REQUESTS_CA_BUNDLE override a session-level verify=False.
        r = self.session.request(method, self.server + path, json=body, timeout=30, verify=False,
                                 headers={"Content-Type": content_type})
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.text)
        return r.json() if r.text else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path: str, body: dict) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: dict) -> Any:
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path: str) -> Any:
        try:
            return self.request("DELETE", path)
        except ApiError as e:
            if e.status != 404:
                raise

    # ---- typed paths

    @staticmethod
    def rc_path(namespace: str, name: str | None = None, plural: str = "registrycredentials") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{base}/{name}" if name else base

    @staticmethod
    def secret_path(namespace: str, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{namespace}/secrets"
        return f"{base}/{name}" if name else base

    def apply_crds(self, texts: list[str]) -> None:
        for text in texts:
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                name = doc["metadata"]["name"]
                path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
                existing = self.get_or_none(f"{path}/{name}")
                if existing is None:
                    self.create(path, doc)
                else:
                    doc["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                    self.request("PUT", f"{path}/{name}", doc)
                wait_for(lambda: _established(self.get(f"{path}/{name}")), 30, f"CRD {name} established")

    def create_namespace(self, name: str) -> None:
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def events_for(self, namespace: str, name: str) -> list[dict]:
        items = self.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        return [e for e in items if e.get("involvedObject", {}).get("name") == name]

    def all_events(self) -> list[dict]:
        return self.get("/api/v1/events")["items"]


def _established(crd: dict) -> bool:
    return any(c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", []))


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


def condition(obj: dict | None, type_: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def registry_credential(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": "RegistryCredential",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
