"""The one small Kubernetes REST client of ``regaccess demo`` and the test tiers.

GET / POST / PUT / merge-PATCH / DELETE of objects by API path, over the
standard library only (so the operator package needs no client library for it),
authenticated with a bearer token, basic auth, or a client certificate, against
a CA from a file, inline PEM data, the system store, or none (the throwaway
control plane's self-signed certificate).

Users: ``controller.demo`` (its own Kubernetes steps and the kubeconfig of the
current context), ``controller.demo.controlplane`` (the readiness probe),
``regaccess plan --kube`` (GETs of live resources), the tests
(``tests/e2e/kube.py`` adds test-only helpers on top) and, with the credentials
kopf logged in with (``controller.kubeapi.client_for``), the operator's own
Kubernetes writes: ECRPullSecret's Secret and ServiceAccounts
(``controller.kubeobjects``) and that kind's status outside a kopf handler.
Everything else of the operator talks to Kubernetes through kopf;
``controller.kubeapi.StatusWriter`` writes status over a kept-open connection of
its own (its hot path), with the TLS context built by :func:`tls_context` here.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from controller.api.models import GROUP, VERSION

DEFAULT_TIMEOUT = 30.0
# An object's metadata only (PartialObjectMetadata): for a Secret, never its data.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class ApiError(Exception):
    """The API server answered 4xx/5xx; ``body`` is its answer (a Status document, usually)."""

    def __init__(self, status: int, body: str) -> None:
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"HTTP {status}: {str(message)[:500]}")
        self.status = status
        self.body = body


class KubeconfigError(Exception):
    """The kubeconfig is missing, has no current context, or needs what this client lacks."""


def _private_file(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
        handle.write(data)
    return path


def tls_context(*, insecure: bool = False, ca_file: str | None = None, ca_data: bytes | None = None,
                cert_file: str | None = None, key_file: str | None = None,
                cert_data: bytes | None = None, key_data: bytes | None = None) -> ssl.SSLContext:
    """A client TLS context: server CA (file, PEM bytes or the system store) and an optional client cert.

    ``insecure`` skips server verification (kubeconfig's ``insecure-skip-tls-verify``).
    """
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file:
        context.load_verify_locations(cafile=ca_file)
    elif ca_data:
        context.load_verify_locations(cadata=ca_data.decode())
    if cert_data and key_data:
        # ssl loads client certificates from files only; keep them private to this process.
        directory = tempfile.mkdtemp(prefix="regaccess-tls-")
        cert_file, key_file = _private_file(directory, "tls.crt", cert_data), _private_file(directory, "tls.key", key_data)
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def custom_resource_path(plural: str, namespace: str, name: str | None = None) -> str:
    """The path of our custom resources of one kind in a namespace (or of one of them)."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def core_path(resource: str, namespace: str, name: str | None = None) -> str:
    """The path of a core (``v1``) namespaced resource, e.g. ``core_path("secrets", ns, name)``."""
    base = f"/api/v1/namespaces/{namespace}/{resource}"
    return f"{base}/{name}" if name else base


class Client:
    """Requests to one API server; each a new connection (simple, and safe across API server restarts)."""

    def __init__(self, server: str, token: str | None = None, *, context: ssl.SSLContext | None = None,
                 basic_auth: tuple[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server.rstrip("/")
        self._context = context or ssl.create_default_context()
        self._timeout = timeout
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif basic_auth:
            self._headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()

    @classmethod
    def unverified(cls, server: str, token: str, *, timeout: float = DEFAULT_TIMEOUT) -> "Client":
        """For a control plane whose serving certificate was self-signed a moment ago, on 127.0.0.1."""
        return cls(server, token, context=tls_context(insecure=True), timeout=timeout)

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None) -> tuple["Client", str]:
        """(client, context name) for the current context of ``path``, else KUBECONFIG, else ~/.kube/config.

        Supports tokens, client certificates, basic auth and exec credential plugins
        (EKS, GKE, ...); not the legacy auth-provider plugins.
        """
        path = str(path or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                            or Path.home() / ".kube" / "config"))
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as error:
            raise KubeconfigError(f"no kubeconfig at {path} ({error.strerror})") from None
        name = config.get("current-context")
        context = next((c["context"] for c in config.get("contexts") or [] if c.get("name") == name), None)
        if context is None:
            raise KubeconfigError(f"kubeconfig {path} has no current context")
        cluster = next((c["cluster"] for c in config.get("clusters") or []
                        if c.get("name") == context.get("cluster")), None) or {}
        user = next((u["user"] for u in config.get("users") or [] if u.get("name") == context.get("user")), None) or {}

        def data(key: str) -> bytes | None:
            return base64.b64decode(user[key]) if user.get(key) else None

        tls = tls_context(
            insecure=bool(cluster.get("insecure-skip-tls-verify")), ca_file=cluster.get("certificate-authority"),
            ca_data=base64.b64decode(cluster["certificate-authority-data"]) if cluster.get("certificate-authority-data") else None,
            cert_file=user.get("client-certificate"), key_file=user.get("client-key"),
            cert_data=data("client-certificate-data"), key_data=data("client-key-data"))
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if not token and user.get("exec"):
            token = _exec_token(user["exec"])
        if not token and user.get("auth-provider"):
            raise KubeconfigError("the kubeconfig user uses an auth-provider plugin, which this client does not support")
        basic = (user["username"], user["password"]) if user.get("username") and user.get("password") else None
        return cls(cluster.get("server", ""), token, context=tls, basic_auth=basic), str(name)

    # ------------------------------------------------------------------ requests

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                accept: str | None = None) -> Any:
        """The answer's JSON (None when empty; text when not JSON, as /readyz);
        ApiError on 4xx/5xx, OSError when unreachable. ``accept``: another
        representation (``METADATA_ONLY``)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self._headers)
        if accept:
            headers["Accept"] = accept
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=self._timeout) as response:
                text = response.read().decode()
                is_json = "json" in (response.headers.get("Content-Type") or "")
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace")) from None
        if not text:
            return None
        return json.loads(text) if is_json else text

    def get(self, path: str, accept: str | None = None) -> Any:
        return self.request("GET", path, accept=accept)

    def get_or_none(self, path: str, accept: str | None = None) -> Any:
        """The object, or None when it does not exist (404)."""
        try:
            return self.get(path, accept=accept)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def replace(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PUT", path, body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path: str) -> Any:
        """Delete; an object already gone (404) is done."""
        try:
            return self.request("DELETE", path)
        except ApiError as error:
            if error.status != 404:
                raise
            return None

    # ------------------------------------------------------------------ objects the demo and the tests share

    def apply_crd(self, doc: dict[str, Any]) -> None:
        """Create the CustomResourceDefinition, or replace the one there (Established is checked apart)."""
        name = doc["metadata"]["name"]
        existing = self.get_or_none(f"{CRD_PATH}/{name}")
        if existing is None:
            self.create(CRD_PATH, doc)
        else:
            self.replace(f"{CRD_PATH}/{name}", {**doc, "metadata": {
                **doc["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}})

    def crd_established(self, name: str) -> bool:
        crd = self.get(f"{CRD_PATH}/{name}")
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> Any:
        metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
        return self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return self.get(core_path("events", namespace))["items"]


def _exec_token(spec: dict[str, Any]) -> str | None:
    """Run a kubeconfig exec credential plugin and take the token of its ExecCredential."""
    env = dict(os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []})
    try:
        out = subprocess.run([spec["command"], *(spec.get("args") or [])], env=env, capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise KubeconfigError(f"kubeconfig exec plugin {spec.get('command')!r} failed: {error}") from None
    return (json.loads(out).get("status") or {}).get("token")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition of that type in ``status.conditions``, else {}."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}
