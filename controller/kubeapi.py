"""Write a custom resource's status at once, outside kopf's end-of-handler patch.

Called from a reconcile (in a worker thread) through ``StepContext.record_now``
the moment an irreversible AWS create happens — a registered task or job
definition revision — so that a crash right after cannot lose the record
(crossplane's "external-create-pending" lesson). kopf applies its own patch
only when the handler returns, which would be too late.

It uses the connection kopf logged in with (``kopf.ConnectionInfo``: server,
CA, token or client certificate), over the standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import threading
import urllib.request
from typing import Any

import kopf

from controller.api.models import GROUP, VERSION


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif info.ca_path:
        context.load_verify_locations(cafile=info.ca_path)
    elif info.ca_data:
        context.load_verify_locations(cadata=base64.b64decode(info.ca_data).decode())
    cert_path, key_path = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl needs files; keep them private to this process.
        directory = tempfile.mkdtemp(prefix="regaccess-tls-")
        cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, data in ((cert_path, info.certificate_data), (key_path, info.private_key_data)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(base64.b64decode(data))
    if cert_path and key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


def patchable(value: Any) -> Any:
    """``value`` with the empty strings and nulls inside list items left out.

    Status rows (``managed``, ``repositories``, ``conditions``) are list items, and a
    JSON merge patch replaces a list wholesale: the API server (seen on v1.20) turns an
    empty string inside such an item into null, which the structural schema then
    rejects with 422, so the whole status patch is lost. An absent key reads back the
    same as ``""`` for every consumer (``row.get("message", "")``, the models' defaults).
    Called for every status patch: kopf's (``handlers._apply_status``) and ours.
    """
    if isinstance(value, list):
        return [
            {k: patchable(v) for k, v in item.items() if v is not None and v != ""}
            if isinstance(item, dict) else patchable(item)
            for item in value
        ]
    if isinstance(value, dict):
        return {k: patchable(v) for k, v in value.items()}
    return value


class StatusWriter:
    """Merge-patches ``status.managed`` rows (upserted by kind and name) of one object."""

    def __init__(self, info: kopf.ConnectionInfo, plural: str, namespace: str, name: str,
                 managed: list[dict[str, Any]]) -> None:
        self._info = info
        self._url = f"{info.server.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status"
        self._managed = [dict(row) for row in managed]
        self._lock = threading.Lock()

    def __call__(self, partial: dict[str, Any]) -> None:
        with self._lock:
            for row in partial.get("managed") or []:
                key = (row.get("kind"), row.get("name"))
                self._managed = [r for r in self._managed if (r.get("kind"), r.get("name")) != key] + [dict(row)]
            body = json.dumps({"status": {"managed": patchable(self._managed)}}).encode()
        headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
        if self._info.token:
            headers["Authorization"] = f"Bearer {self._info.token}"
        elif self._info.username and self._info.password:
            raw = f"{self._info.username}:{self._info.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        request = urllib.request.Request(self._url, data=body, method="PATCH", headers=headers)
        with urllib.request.urlopen(request, context=_ssl_context(self._info), timeout=30) as response:
            response.read()
