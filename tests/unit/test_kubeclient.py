"""Unit tier: ``controller.kubeclient``, the demo's and the tests' one Kubernetes client.

A plain HTTP server on 127.0.0.1 (standard library) answers as the API server
does: JSON objects, a Status document with a message on errors, text on
``/readyz``. It records method, path, headers and body of every request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.kubeclient import ApiError, Client, KubeconfigError, custom_resource_path

OBJECTS = {"/api/v1/namespaces/ns/secrets/there": {"kind": "Secret", "metadata": {"name": "there"}}}


class FakeApiServer(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict, object]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        if self.path == "/readyz":
            status, text, kind = 200, "ok", "text/plain"
        elif self.path in OBJECTS and self.command in ("GET", "PATCH"):
            status, text, kind = 200, json.dumps(OBJECTS[self.path]), "application/json"
        elif self.command == "POST":
            status, text, kind = 201, json.dumps(body), "application/json"
        else:
            status, kind = 404, "application/json"
            text = json.dumps({"kind": "Status", "code": 404, "message": f"{self.path} not found"})
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    FakeApiServer.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def kubeconfig(tmp_path, server: str, user: dict) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "here",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def test_requests_carry_the_kubeconfig_token_and_answers_are_parsed(server, tmp_path):
    client, context = Client.from_kubeconfig(kubeconfig(tmp_path, server, {"token": "t0ken"}))

    assert context == "here"
    assert client.get("/api/v1/namespaces/ns/secrets/there")["metadata"]["name"] == "there"
    assert client.get("/readyz") == "ok"
    assert client.get_or_none("/api/v1/namespaces/ns/secrets/gone") is None
    assert client.delete("/api/v1/namespaces/ns/secrets/gone") is None
    client.merge_patch("/api/v1/namespaces/ns/secrets/there", {"metadata": {"labels": {"a": "b"}}})
    assert client.create_namespace("fresh", labels={"x": "y"})["metadata"] == {"name": "fresh", "labels": {"x": "y"}}

    methods = [(method, path) for method, path, _, _ in FakeApiServer.seen]
    assert methods == [("GET", "/api/v1/namespaces/ns/secrets/there"), ("GET", "/readyz"),
                       ("GET", "/api/v1/namespaces/ns/secrets/gone"), ("DELETE", "/api/v1/namespaces/ns/secrets/gone"),
                       ("PATCH", "/api/v1/namespaces/ns/secrets/there"), ("POST", "/api/v1/namespaces")]
    assert {headers["Authorization"] for _, _, headers, _ in FakeApiServer.seen} == {"Bearer t0ken"}
    assert FakeApiServer.seen[4][2]["Content-Type"] == "application/merge-patch+json"


def test_an_error_answer_is_an_api_error_with_the_status_message(server):
    client = Client(server, "t")

    with pytest.raises(ApiError) as info:
        client.get(custom_resource_path("registrycredentials", "ns", "missing"))

    assert info.value.status == 404
    assert str(info.value) == "HTTP 404: /apis/regaccess.io/v1alpha1/namespaces/ns/registrycredentials/missing not found"
    assert json.loads(info.value.body)["kind"] == "Status"


def test_basic_auth_from_the_kubeconfig(server, tmp_path):
    client, _ = Client.from_kubeconfig(kubeconfig(tmp_path, server, {"username": "admin", "password": "pw"}))
    client.get("/readyz")
    assert FakeApiServer.seen[0][2]["Authorization"] == "Basic YWRtaW46cHc="


@pytest.mark.parametrize("content, message", [
    (None, "no kubeconfig at"),
    ({"apiVersion": "v1", "kind": "Config", "current-context": "nowhere"}, "has no current context"),
], ids=["missing file", "no current context"])
def test_an_unusable_kubeconfig_says_why(tmp_path, content, message):
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(json.dumps(content))
    with pytest.raises(KubeconfigError, match=message):
        Client.from_kubeconfig(path)
