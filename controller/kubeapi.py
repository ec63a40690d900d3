"""Write a custom resource's status at once, outside kopf's end-of-handler patch.

Called from a reconcile (in a worker thread) through ``StepContext.record_now``
the moment an irreversible AWS create happens — a registered task or job
definition revision — so that a crash right after cannot lose the record
(crossplane's "external-create-pending" lesson). kopf applies its own patch
only when the handler returns, which would be too late. The drift scheduler
(``controller.handlers``), which runs outside any kopf handler, writes the
status of its checks with ``StatusWriter.merge``.

It uses the connection kopf logged in with (``kopf.ConnectionInfo``: server,
CA, token or client certificate), over the standard library only. The TLS
context (``controller.kubeclient.tls_context``, shared with the demo's and the
tests' client) is built once per ConnectionInfo and each worker thread keeps its
HTTP connection open: a new context (the system CA bundle read again) and a
new TLS handshake per registered revision cost more than the PATCH itself.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import ssl
import threading
import urllib.error
import urllib.parse
from typing import Any

import kopf

from controller.kubeclient import Client, core_path, custom_resource_path, tls_context


def patchable(value: Any) -> Any:
    """``value`` without empty-string entries in any mapping, at any depth (pure).

    kube-apiserver 1.20 reads ``""`` inside a merge-patched custom resource's status
    as null, and our structural schema rejects null strings with a 422 for the
    whole patch (seen for ``status.managed[].message`` and
    ``status.repositories[].message``). An absent key means the same as an empty
    one to every reader of status, so empty strings are left out of every patch.
    """
    if isinstance(value, dict):
        return {k: patchable(v) for k, v in value.items() if v != ""}
    if isinstance(value, list):
        # Inside list items a null is never a deletion (lists are replaced whole), only a
        # type error for the schema: leave None members out as well.
        return [
            {k: patchable(v) for k, v in item.items() if v not in ("", None)} if isinstance(item, dict)
            else patchable(item)
            for item in value
        ]
    return value


@functools.lru_cache(maxsize=8)  # ConnectionInfo is frozen; kopf hands out a new one on re-login
def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    def data(value: str | None) -> bytes | None:
        return base64.b64decode(value) if value else None

    return tls_context(insecure=bool(info.insecure), ca_file=info.ca_path, ca_data=data(info.ca_data),
                       cert_file=info.certificate_path, key_file=info.private_key_path,
                       cert_data=data(info.certificate_data), key_data=data(info.private_key_data))


_local = threading.local()
# Failures of a kept-open connection that the server may have closed meanwhile.
_STALE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, http.client.ResponseNotReady,
          ConnectionResetError, BrokenPipeError)


def _connection(info: kopf.ConnectionInfo, fresh: bool = False) -> http.client.HTTPConnection:
    """This thread's open connection to the API server (one per ConnectionInfo)."""
    connections: dict[Any, http.client.HTTPConnection] = _local.__dict__.setdefault("connections", {})
    connection = connections.get(info)
    if connection is not None and not fresh:
        return connection
    if connection is not None:
        connection.close()
    url = urllib.parse.urlsplit(info.server)
    if url.scheme == "https":
        connection = http.client.HTTPSConnection(url.hostname or "", url.port or 443, timeout=30,
                                                 context=_ssl_context(info))
    else:
        connection = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=30)
    connections[info] = connection
    return connection


def _request(info: kopf.ConnectionInfo, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    for attempt in (1, 2):
        connection = _connection(info, fresh=attempt == 2)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except _STALE:
            connection.close()
            if attempt == 2:
                raise
            # The server closed the idle connection before reading the request: once more on
            # a new one (a merge patch is idempotent; an Event, at worst, shows twice).
            continue
        except OSError:
            connection.close()
            raise
        if response.status >= 400:
            raise urllib.error.HTTPError(url, response.status, data[:500].decode(errors="replace"),
                                         response.headers, None)
        return data
    raise AssertionError("unreachable: the second attempt returns or raises")


class StatusWriter:
    """Merge-patches the status of one object: ``status.managed`` rows (upserted by kind
    and name) when called, or any status fields with ``merge``."""

    def __init__(self, info: kopf.ConnectionInfo, plural: str, namespace: str, name: str,
                 managed: list[dict[str, Any]]) -> None:
        self._info = info
        self._url = info.server.rstrip("/") + custom_resource_path(plural, namespace, name) + "/status"
        self._managed = [dict(row) for row in managed]
        self._lock = threading.Lock()

    def __call__(self, partial: dict[str, Any]) -> None:
        with self._lock:
            for row in partial.get("managed") or []:
                key = (row.get("kind"), row.get("name"))
                self._managed = [r for r in self._managed if (r.get("kind"), r.get("name")) != key] + [dict(row)]
            body = json.dumps({"status": {"managed": patchable(self._managed)}}).encode()
        self._send(body)

    def merge(self, status: dict[str, Any]) -> None:
        """Merge-patch these status fields (a None value removes the field)."""
        with self._lock:
            if "managed" in status:
                self._managed = [dict(row) for row in status.get("managed") or []]
            self._send(json.dumps({"status": status}).encode())

    def _send(self, body: bytes) -> None:
        _request(self._info, "PATCH", self._url, body, _headers(self._info, "application/merge-patch+json"))


def _headers(info: kopf.ConnectionInfo, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if info.token:
        headers["Authorization"] = f"Bearer {info.token}"
    elif info.username and info.password:
        raw = f"{info.username}:{info.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    return headers


# What kubectl describe shows under "From" (kopf's poster said "kopf").
REPORTING_COMPONENT = "regaccess"
# The API server rejects longer Event messages (kopf cuts them the same way).
MAX_EVENT_MESSAGE = 1024
CUT = " [...] "


def event_body(involved: dict[str, Any], type_: str, reason: str, message: str, instance: str,
               now: str) -> dict[str, Any]:
    """Pure: a core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, uid)."""
    if len(message) > MAX_EVENT_MESSAGE:
        keep = (MAX_EVENT_MESSAGE - len(CUT)) // 2
        message = message[:keep] + CUT + message[-keep:]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": involved["namespace"], "generateName": f"{REPORTING_COMPONENT}-"},
        "involvedObject": involved,
        "type": type_, "reason": reason, "message": message, "action": reason,
        "reportingComponent": REPORTING_COMPONENT, "reportingInstance": instance,
        "source": {"component": REPORTING_COMPONENT},
        "firstTimestamp": now, "lastTimestamp": now, "eventTime": now, "count": 1,
    }


def post_event(info: kopf.ConnectionInfo, event: dict[str, Any]) -> None:
    """POST one Event (from ``event_body``) on this thread's connection; raises on failure."""
    url = info.server.rstrip("/") + core_path("events", event["metadata"]["namespace"])
    _request(info, "POST", url, json.dumps(event).encode(), _headers(info, "application/json"))


def get_json(info: kopf.ConnectionInfo, path: str) -> Any:
    """GET ``path`` (with its query) on this thread's kept-open connection, decoded.

    The reconcile's on-demand read of a source Secret goes here rather than through
    ``client_for`` (a new connection per request): a worker thread then holds one connection
    to the API server, whatever it reads or writes, and ``--kube-connections`` plus
    ``--workers`` stays the bound (tests/e2e/test_kube_connections.py)."""
    data = _request(info, "GET", info.server.rstrip("/") + path, None, _headers(info, "application/json"))
    return json.loads(data) if data else None


@functools.lru_cache(maxsize=8)
def client_for(info: kopf.ConnectionInfo) -> Client:
    """A ``controller.kubeclient.Client`` with the credentials kopf logged in with.

    Used for the operator's own writes of Kubernetes objects (ECRPullSecret's Secret and
    ServiceAccounts, ``controller.kubeobjects``) and for status written outside a kopf
    handler (the pull-secret refresh scheduler).
    """
    basic = (info.username, info.password) if info.username and info.password else None
    return Client(info.server, info.token, context=_ssl_context(info), basic_auth=basic)
