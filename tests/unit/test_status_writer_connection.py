"""``controller.kubeapi.StatusWriter`` keeps its connection open and survives the server closing it.

A plain HTTP server on 127.0.0.1 (standard library) stands in for the API
server's status endpoint: it records each PATCH and the client port it came
from, and closes the connection after every answer when asked to, without a
``Connection: close`` header, as a proxy or an API server restart does to an
idle keep-alive connection.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kopf
import pytest

from controller import source_index
from controller.kubeapi import StatusWriter, get_json


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told to close
    patches: list[tuple[int, str, dict]] = []
    close_after_answer = False

    def do_PATCH(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).patches.append((self.client_address[1], self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        if type(self).close_after_answer:
            self.close_connection = True  # without saying so: the client finds out on its next request

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).patches.append((self.client_address[1], self.path, {}))
        body = json.dumps({"items": [{"metadata": {"name": "src"}, "data": {"k": "dg=="}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    Recorder.patches = []
    Recorder.close_after_answer = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def writer(httpd, name: str) -> StatusWriter:
    info = kopf.ConnectionInfo(server=f"http://127.0.0.1:{httpd.server_address[1]}", token="t")
    return StatusWriter(info, "registrycredentials", "ns", name, [])


def test_writes_reuse_one_connection(server):
    first = writer(server, "a")
    first({"managed": [{"kind": "taskDefinition", "name": "web", "arn": "arn:1", "state": "Synced"}]})
    writer(server, "b")({"managed": [{"kind": "jobDefinition", "name": "job", "arn": "arn:2", "state": "Synced"}]})

    ports = {port for port, _, _ in Recorder.patches}
    assert len(Recorder.patches) == 2 and len(ports) == 1
    assert Recorder.patches[0][1] == "/apis/regaccess.io/v1alpha1/namespaces/ns/registrycredentials/a/status"
    assert Recorder.patches[1][2] == {"status": {"managed": [
        {"kind": "jobDefinition", "name": "job", "arn": "arn:2", "state": "Synced"}]}}


def test_a_connection_closed_by_the_server_is_replaced(server):
    Recorder.close_after_answer = True
    write = writer(server, "a")
    for revision in (1, 2, 3):
        write({"managed": [{"kind": "taskDefinition", "name": "web", "arn": f"arn:{revision}", "state": "Synced"}]})

    assert [body["status"]["managed"][0]["arn"] for _, _, body in Recorder.patches] == ["arn:1", "arn:2", "arn:3"]
    assert len({port for port, _, _ in Recorder.patches}) == 3


def test_a_source_read_shares_the_status_writers_connection(server):
    """The reconcile's on-demand Secret read keeps the query string and takes no connection of
    its own: a worker thread holds one connection to the API server (the --workers bound)."""
    write = writer(server, "a")
    write({"managed": [{"kind": "taskDefinition", "name": "web", "arn": "arn:1", "state": "Synced"}]})
    info = kopf.ConnectionInfo(server=f"http://127.0.0.1:{server.server_address[1]}", token="t")
    secret = source_index.read(lambda path: get_json(info, path), "ns", "src")

    assert secret == {"metadata": {"name": "src"}, "data": {"k": "dg=="}}
    assert Recorder.patches[1][1] == "/api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3Dsrc"
    assert len({port for port, _, _ in Recorder.patches}) == 1
