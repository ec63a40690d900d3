"""The AWS test server: moto's HTTP server app behind our own WSGI layers.

Every test tier talks to AWS through this server, over HTTP on 127.0.0.1, with
the ordinary boto3 chain (``AWS_ENDPOINT_URL``). Requests pass, outermost first:

1. the control endpoints under ``/_harness/`` (not recorded, never faulted);
2. identification: (service, operation, protocol) from the SigV4 credential
   scope and the X-Amz-Target header, the query ``Action`` or botocore's REST
   routes;
3. the call recorder (``AwsServer.calls``): a bounded, thread-safe record of
   every AWS request served, so tests count calls per operation and prove
   read-only behaviour;
4. the fault layer (``tests.harness.faults``);
5. the ECR pull-through cache stand-in (``tests.harness.ptc_standin``) for its
   five operations, the repository creation template stand-in
   (``tests.harness.rct_standin``) for its four, and moto's own ``DomainDispatcherApplication`` for the rest.

Connections are kept alive between requests, as AWS endpoints keep them (werkzeug's own
server closes each one; see ``KeepAliveHandler``), so a test or the benchmark does not
charge the operator a TCP connect per call that AWS would not.

In a test process::

    server = start()            # free port; server.url, server.calls, server.faults
    server.reset()              # moto + stand-in + faults + calls
    server.stop()

As a process (for tests that run the operator separately)::

    python -m tests.harness.awsserver --port 0     # prints the URL; runs until SIGTERM

and from another process ``connect(url)`` gives the same ``.calls``, ``.faults``
and ``.reset()`` over the control endpoints:

    GET    /_harness/health               {"ok": true}
    GET    /_harness/calls?since=SEQ      {"calls": [...], "last": SEQ, "total": N}
    DELETE /_harness/calls                clear the record
    GET    /_harness/faults               {"config": ..., "counts": {...}, "injected": [...]}
    POST   /_harness/faults               body: a FaultConfig as JSON; replaces the config
    DELETE /_harness/faults               no faults from now on (counts kept)
    POST   /_harness/reset                moto + stand-in + faults + calls
    POST   /_harness/ecs/settle           body {region, cluster, service, outcome[, account]}: end the
                                          service's ECS deployment (tests.harness.ecs_standin)

moto's backends are process globals: run one server per process.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from tests.harness.faults import (
    ENV_AWS_STATUS,
    ENV_CUT,
    ENV_FAULT,
    ENV_OPERATION,
    ENV_PROTOCOL,
    ENV_SERVICE,
    FaultConfig,
    FaultLayer,
    is_read,
)
from tests.harness import ecs_standin
from tests.harness.ptc_standin import PullThroughCacheStandIn
from tests.harness.rct_standin import RepositoryCreationTemplateStandIn

HOST = "127.0.0.1"  # never another interface: the server has no authentication
CONTROL_PREFIX = "/_harness/"
DEFAULT_MAX_CALLS = 20_000
STOP_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_SECONDS = 6 * 3600.0  # a forgotten server process still ends
UNKNOWN = "unknown"
UNLOCKED_SERVICES = frozenset({"sqs"})  # moto answers these without the lock (see _Router)

ERR_NOT_FOUND = "no such harness endpoint"
ERR_BAD_JSON = "the body must be a JSON object"
ERR_BAD_SINCE = "since must be an integer"
ERR_NOT_STARTED = "the server did not start within {seconds} seconds"


# --------------------------------------------------------------------------- identification

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/[0-9]{8}/[a-z0-9-]+/(?P<service>[a-z0-9-]+)/aws4_request")


@functools.lru_cache(maxsize=64)
def _service_model(signing_name: str) -> Any:
    import botocore.exceptions
    import botocore.session

    try:
        return _botocore_session().get_service_model(signing_name)
    except botocore.exceptions.UnknownServiceError:
        return None


@functools.lru_cache(maxsize=1)
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


@functools.lru_cache(maxsize=64)
def _rest_routes(signing_name: str) -> list[tuple[str, re.Pattern[str], tuple[str, ...], str]]:
    """(method, path regex, required query keys, operation), most specific first."""
    model = _service_model(signing_name)
    routes = []
    for name in model.operation_names if model is not None else ():
        http = model.operation_model(name).http
        uri = http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(path))
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        keys = tuple(part.split("=", 1)[0] for part in query.split("&") if part)
        literal = len(re.sub(r"\{[^}]+\}", "", path))
        routes.append((literal + len(keys), http.get("method", "POST"), re.compile(f"^{pattern}/?$"), keys, name))
    routes.sort(key=lambda route: -route[0])
    return [(method, regex, keys, name) for _, method, regex, keys, name in routes]


def _read_and_keep_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # the next layer reads it again
    return body


def identify(environ: dict[str, Any]) -> tuple[str, str, str]:
    """(service, operation, protocol) of one AWS request; ``unknown`` where it cannot be told."""
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = match["service"] if match else UNKNOWN
    model = _service_model(service) if match else None
    protocol = model.metadata.get("protocol", "json") if model is not None else "json"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rpartition(".")[2], protocol
    if protocol in ("query", "ec2") or environ.get("CONTENT_TYPE", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form = parse_qs(_read_and_keep_body(environ).decode("utf-8", "replace"))
        if form.get("Action"):
            return service, form["Action"][0], protocol
    if model is not None and protocol in ("rest-json", "rest-xml"):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        for route_method, regex, keys, name in _rest_routes(service):
            if route_method == method and regex.match(path) and all(k in query for k in keys):
                return service, name, protocol
    return service, UNKNOWN, protocol


# --------------------------------------------------------------------------- call record


@dataclass(frozen=True)
class Call:
    seq: int                 # 1, 2, ... since the last clear
    service: str             # SigV4 signing name: ecr, iam, secretsmanager, ecs, batch, sts
    operation: str           # AWS operation name, e.g. CreatePullThroughCacheRule
    fault: str | None        # the fault kind injected, or None
    status: int | None       # HTTP status the client got (None: dropped or aborted, no full answer)
    time: float = 0.0        # wall clock (time.time()) when the answer was recorded
    # What AWS (moto or a stand-in) answered before any fault replaced it; None: the
    # request never reached AWS (dropped, throttled, failed by the fault layer).
    aws_status: int | None = None

    @property
    def is_read(self) -> bool:
        return is_read(self.operation)

    @property
    def done(self) -> bool:
        """AWS performed the call (it answered success), whatever the client was told."""
        return self.aws_status is not None and self.aws_status < 400

    @property
    def answered(self) -> bool:
        """The client was told it succeeded."""
        return self.status is not None and self.status < 400

    @property
    def lost(self) -> bool:
        """Done by AWS, but the client was told it failed, or told nothing."""
        return self.done and not self.answered


class _CallQueries:
    """Counting helpers over a list of calls (shared by the local and remote views)."""

    def list(self, since: int = 0) -> list[Call]:  # pragma: no cover - overridden
        raise NotImplementedError

    def count(self, service: str | None = None, operation: str | None = None, *, since: int = 0,
              faulted: bool | None = None) -> int:
        """Calls matching service/operation after ``since`` (faulted: None any, True/False only those)."""
        return sum(
            1 for call in self.list(since)
            if service in (None, call.service) and operation in (None, call.operation)
            and (faulted is None or (call.fault is not None) == faulted)
        )

    def counts(self, since: int = 0) -> dict[str, int]:
        """``service:operation`` -> number of calls after ``since``."""
        return dict(Counter(f"{call.service}:{call.operation}" for call in self.list(since)))

    def writes(self, since: int = 0, service: str | None = None) -> list[Call]:
        """Calls after ``since`` that are not reads (see tests.harness.faults.READ_PREFIXES)."""
        return [call for call in self.list(since) if not call.is_read and service in (None, call.service)]

    def done(self, service: str | None = None, operation: str | None = None, *, since: int = 0) -> list[Call]:
        """Calls AWS performed (its own answer was a success), whatever the client got."""
        return [call for call in self.list(since) if call.done
                and service in (None, call.service) and operation in (None, call.operation)]

    def lost(self, service: str | None = None, operation: str | None = None, *, since: int = 0) -> list[Call]:
        """Calls AWS performed whose success answer the client never got."""
        return [call for call in self.done(service, operation, since=since) if call.lost]


class CallLog(_CallQueries):
    """A bounded, thread-safe record of the calls served (oldest dropped first)."""

    def __init__(self, max_calls: int = DEFAULT_MAX_CALLS) -> None:
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque(maxlen=max_calls)
        self._seq = 0

    def record(self, service: str, operation: str, fault: str | None, status: int | None,
               aws_status: int | None = None) -> Call:
        with self._lock:
            self._seq += 1
            call = Call(self._seq, service, operation, fault, status, time.time(), aws_status)
            self._calls.append(call)
            return call

    def mark(self) -> int:
        """The sequence number of the last call: pass it as ``since`` to see only later calls."""
        with self._lock:
            return self._seq

    def list(self, since: int = 0) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.seq > since]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._seq = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)


# --------------------------------------------------------------------------- WSGI layers


class _Recorder:
    """Identifies each request, records it after the inner layers answered."""

    def __init__(self, app: Callable[..., Iterable[bytes]], calls: CallLog) -> None:
        self._app = app
        self._calls = calls

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            return self._app(environ, start_response)  # moto's own API is not an AWS call
        service, operation, protocol = identify(environ)
        environ[ENV_SERVICE], environ[ENV_OPERATION], environ[ENV_PROTOCOL] = service, operation, protocol
        seen: dict[str, int] = {}

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            seen["status"] = int(status.split(None, 1)[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return self._app(environ, recording_start_response)
        finally:
            fault = environ.get(ENV_FAULT)
            status = None if environ.get(ENV_CUT) else seen.get("status")
            self._calls.record(service, operation, fault, status, environ.get(ENV_AWS_STATUS))


class _Router:
    """The stand-ins for their operations, moto for everything else, one request at a time.

    moto's backends are plain dicts and lists that its handlers read and write without a lock,
    and the server answers each connection on its own thread: a DescribeSecret iterating the
    secrets while a CreateSecret added one failed with "dictionary changed size during
    iteration" (HTTP 500, 81 times in a 10,000-secret benchmark), an error AWS never gives.
    Serving moto one request at a time costs little under the GIL (moto is pure Python) and
    makes each call atomic, as it is in AWS. Injected latency and faults sit outside, in the
    fault layer, so a slow answer does not hold the lock. SQS is left out: its ReceiveMessage
    long poll waits inside moto for a SendMessage, which the lock would hold off until the poll
    timed out (the drift-event tests failed that way), and no race was seen there.
    """

    def __init__(self, moto_app: Callable[..., Iterable[bytes]], *standins: Any) -> None:
        self._moto = moto_app
        self._standins = standins
        self._moto_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for standin in self._standins:
            if standin.wants(environ):
                return standin.wsgi_app(environ, start_response)
        if environ.get(ENV_SERVICE) in UNLOCKED_SERVICES:
            return self._moto(environ, start_response)
        with self._moto_lock:
            # moto builds the whole answer inside the call: reading its body here costs nothing.
            answer = self._moto(environ, start_response)
            try:
                return list(answer)
            finally:
                if hasattr(answer, "close"):
                    answer.close()


def _json(start_response: Callable[..., Any], status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(f"{status} {'OK' if status < 400 else 'Error'}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _Control:
    """The ``/_harness/`` endpoints, then the layered AWS app."""

    def __init__(self, server: "AwsServer", app: Callable[..., Iterable[bytes]]) -> None:
        self._server = server
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CONTROL_PREFIX):
            return self._app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        what = path[len(CONTROL_PREFIX):].strip("/")
        server = self._server
        if (method, what) == ("GET", "health"):
            return _json(start_response, 200, {"ok": True})
        if (method, what) == ("GET", "calls"):
            raw_since = parse_qs(environ.get("QUERY_STRING", "")).get("since", ["0"])[0]
            try:
                since = int(raw_since)
            except ValueError:
                return _json(start_response, 400, {"error": ERR_BAD_SINCE})
            calls = server.calls.list(since)
            return _json(start_response, 200, {
                "calls": [asdict(call) for call in calls], "last": server.calls.mark(), "total": len(calls),
            })
        if (method, what) == ("DELETE", "calls"):
            server.calls.clear()
            return _json(start_response, 200, {"ok": True})
        if (method, what) == ("GET", "faults"):
            return _json(start_response, 200, server.faults.snapshot())
        if (method, what) == ("POST", "faults"):
            import pydantic

            try:
                payload = json.loads(_read_and_keep_body(environ) or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError(ERR_BAD_JSON)
                server.faults.configure(FaultConfig.model_validate(payload))
            except (ValueError, pydantic.ValidationError) as error:
                return _json(start_response, 400, {"error": str(error)})
            return _json(start_response, 200, server.faults.snapshot())
        if (method, what) == ("DELETE", "faults"):
            server.faults.clear()
            return _json(start_response, 200, server.faults.snapshot())
        if (method, what) == ("POST", "reset"):
            server.reset()
            return _json(start_response, 200, {"ok": True})
        if (method, what) == ("POST", "ecs/settle"):
            try:
                body = json.loads(_read_and_keep_body(environ) or b"{}")
                ecs_standin.settle(body["region"], body["cluster"], body["service"], body["outcome"],
                                   body.get("account") or ecs_standin.DEFAULT_ACCOUNT)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                return _json(start_response, 400, {"error": str(error)})
            return _json(start_response, 200, {"ok": True})
        return _json(start_response, 404, {"error": ERR_NOT_FOUND})


# --------------------------------------------------------------------------- the server


def _request_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import DechunkedInput

    class KeepAliveHandler(MotoRequestHandler):
        """moto's handler (keeps underscored headers), with HTTP/1.1 keep-alive, as AWS serves.

        werkzeug's own ``run_wsgi`` closes every connection (it cannot drain an unread request
        body safely), so each boto3 call paid a TCP connect that no AWS endpoint makes it pay,
        and the operator's CPU per call in the benchmark counted it. Here the request body is
        read in full before the app runs (nothing can be left unread), the answer streams as
        werkzeug's does (Content-Length when the app gives one, else chunked) and the connection
        stays open, except after a fault that cut it (``ENV_CUT``) or an error. No log line per
        request.
        """

        protocol_version = "HTTP/1.1"
        # The status line and headers go in one write and the body in another: without
        # TCP_NODELAY a kept-alive connection waits on the client's delayed ACK between them.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            self.server.open_connections.add(self.connection)

        def finish(self) -> None:
            self.server.open_connections.discard(self.connection)
            super().finish()

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

        def run_wsgi(self) -> None:
            if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.environ = environ = self.make_environ()
            stream = environ["wsgi.input"]
            if isinstance(stream, DechunkedInput):
                body = stream.read()
            else:
                body = self.rfile.read(int(environ.get("CONTENT_LENGTH") or 0))
            environ.pop("wsgi.input_terminated", None)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            sent: dict[str, Any] = {}

            def write(data: bytes) -> None:
                if "status" not in sent:
                    status, headers = sent["pending"]
                    code_text, _, message = status.partition(" ")
                    code = int(code_text)
                    self.send_response(code, message)
                    names = set()
                    for key, value in headers:
                        if key.lower() != "connection":
                            self.send_header(key, value)
                            names.add(key.lower())
                    sent["chunked"] = not ("content-length" in names or self.command == "HEAD"
                                           or 100 <= code < 200 or code in (204, 304))
                    if sent["chunked"]:
                        self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    sent["status"] = status
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if sent["chunked"] else data)
                self.wfile.flush()

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if exc_info and "status" in sent:
                    raise exc_info[1].with_traceback(exc_info[2])
                sent["pending"] = (status, headers)
                return write

            try:
                answer = self.server.app(environ, start_response)
                try:
                    for data in answer:
                        write(data)
                    if "status" not in sent:
                        write(b"")
                    if sent["chunked"]:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                finally:
                    if hasattr(answer, "close"):
                        answer.close()
            except (ConnectionError, OSError):
                self.close_connection = True  # the client, or a fault, went away
                return
            except Exception:  # noqa: BLE001 - an app error answers 500, as werkzeug's server does
                import traceback

                self.close_connection = True
                sys.stderr.write(f"awsserver: error on request:\n{traceback.format_exc()}")
                if "status" not in sent:
                    self.send_response(500, "Internal Server Error")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return
            if environ.get(ENV_CUT) or self.server.stopping:
                self.close_connection = True

    return KeepAliveHandler


# The actions ECR accepts in a registry policy (ECR User Guide, "Private registry
# permissions"): replication's and pull-through cache's. moto 5 still knows only the
# first two and refuses ecr:BatchImportUpstreamImage; this widens moto's own check to
# the documented set and keeps everything else it validates.
REGISTRY_POLICY_ACTIONS = frozenset({"ecr:CreateRepository", "ecr:ReplicateImage", "ecr:BatchImportUpstreamImage"})


def _registry_policy_actions_as_documented() -> None:
    from moto.ecr.models import ECRBackend
    from moto.iam.exceptions import MalformedPolicyDocument

    def validate(self: Any, policy_text: str) -> None:
        for statement in json.loads(policy_text)["Statement"]:
            actions = statement["Action"]
            if set([actions] if isinstance(actions, str) else actions) - REGISTRY_POLICY_ACTIONS:
                raise MalformedPolicyDocument()

    ECRBackend._validate_registry_policy_action = validate  # type: ignore[method-assign]


def _secret_lookups_by_key() -> None:
    """moto's secrets store finds a secret by scanning every secret it holds (name or full ARN),
    on every call: with 10,000 secrets each DescribeSecret is a 10,000-step loop on the cores the
    operator is measured on, and a benchmark's cost grows with N squared. AWS finds a secret by id
    in constant time. (Measured in the 10,000-secret benchmark: the server's CPU went from 60.7 s
    to 50.1 s with this and the lock; most of it is moto's per-request work.) Keys are
    names (replicas, which the operator never makes, are keyed by ARN), so a name or a full ARN
    is a dict lookup; anything else, or a store holding ARN keys, falls back to moto's scan.
    """
    from moto.secretsmanager.models import SecretsStore
    from moto.secretsmanager.utils import get_secret_name_from_partial_arn

    if getattr(SecretsStore, "_regaccess_indexed", False):
        return
    scan_get = SecretsStore.get
    moto_setitem = SecretsStore.__setitem__

    def setitem(self: Any, key: str, value: Any) -> None:
        if key.startswith("arn:"):
            self.__dict__["arn_keys"] = True  # a replica: lookups by name need moto's scan here
        moto_setitem(self, key, value)

    def find(self: Any, key: str) -> Any:
        secret = dict.get(self, key)
        if secret is not None and key in (secret.name, secret.arn):
            return secret
        if ":secret:" in key:  # a full ARN ends in the name and "-" plus 6 random characters
            tail = key.split(":secret:", 1)[1]
            secret = dict.get(self, tail[:-7])
            if secret is not None and secret.arn == key:
                return secret
        if self.__dict__.get("arn_keys"):
            return scan_get(self, key)
        return dict.get(self, get_secret_name_from_partial_arn(key))

    def getitem(self: Any, key: str) -> Any:
        secret = find(self, key)
        if secret is None:
            raise KeyError(key)
        return secret

    def pop(self: Any, key: str) -> Any:
        secret = find(self, key)
        return None if secret is None else dict.pop(self, secret.name if dict.get(self, secret.name) is secret
                                                    else secret.arn, None)

    SecretsStore.__setitem__ = setitem  # type: ignore[method-assign]
    SecretsStore.get = find  # type: ignore[method-assign]
    SecretsStore.__getitem__ = getitem  # type: ignore[method-assign]
    SecretsStore.__contains__ = lambda self, key: find(self, key) is not None  # type: ignore[method-assign]
    SecretsStore.pop = pop  # type: ignore[method-assign]
    SecretsStore._regaccess_indexed = True  # type: ignore[attr-defined]


class AwsServer:
    """moto + the stand-in + faults + the call record, served on 127.0.0.1 in a thread."""

    def __init__(self, port: int = 0, *, max_calls: int = DEFAULT_MAX_CALLS) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.calls = CallLog(max_calls)
        _registry_policy_actions_as_documented()
        _secret_lookups_by_key()
        ecs_standin.install()
        self.standin = PullThroughCacheStandIn()
        self.templates = RepositoryCreationTemplateStandIn()
        moto_app = DomainDispatcherApplication(create_backend_app)
        self.faults = FaultLayer(_Router(moto_app, self.standin, self.templates))
        self._app = _Control(self, _Recorder(self.faults, self.calls))
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "AwsServer":
        from werkzeug.serving import make_server

        self._server = make_server(HOST, self._requested_port, self._app, threaded=True,
                                   request_handler=_request_handler())
        # Kept-alive connections outlive a request: stop() shuts them down (see KeepAliveHandler).
        self._server.open_connections = set()
        self._server.stopping = False
        # Request threads must not keep a finished test process alive.
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-harness", daemon=True)
        self._thread.start()
        return self

    def reset(self) -> None:
        """moto's backends, the stand-in's rules, the fault config and counts, the call record."""
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        self.standin.reset()
        self.templates.reset()
        self.faults.reset()
        self.calls.clear()

    def settle_deployment(self, region: str, cluster: str, service: str, outcome: str) -> None:
        """End an ECS service's deployment: COMPLETED, or FAILED by the circuit breaker (ecs_standin)."""
        ecs_standin.settle(region, cluster, service, outcome)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self._server.open_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._server = None

    def __enter__(self) -> "AwsServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(port: int = 0) -> AwsServer:
    """Start a server on 127.0.0.1 (``port=0``: a free port) in a daemon thread."""
    return AwsServer(port).start()


# --------------------------------------------------------------------------- remote view


class _RemoteCalls(_CallQueries):
    def __init__(self, url: str, session: Any) -> None:
        self._url = url
        self._http = session

    def list(self, since: int = 0) -> list[Call]:
        answer = self._http.get(f"{self._url}/_harness/calls", params={"since": since}, timeout=10)
        answer.raise_for_status()
        return [Call(**call) for call in answer.json()["calls"]]

    def mark(self) -> int:
        answer = self._http.get(f"{self._url}/_harness/calls", params={"since": 2**62}, timeout=10)
        answer.raise_for_status()
        return int(answer.json()["last"])

    def clear(self) -> None:
        self._http.delete(f"{self._url}/_harness/calls", timeout=10).raise_for_status()


class _RemoteFaults:
    def __init__(self, url: str, session: Any) -> None:
        self._url = url
        self._http = session

    def configure(self, config: FaultConfig | dict[str, Any] | None = None, **fields: Any) -> FaultConfig:
        if config is None:
            config = FaultConfig.model_validate(fields)
        elif isinstance(config, dict):
            config = FaultConfig.model_validate({**config, **fields})
        answer = self._http.post(f"{self._url}/_harness/faults", json=config.model_dump(), timeout=10)
        answer.raise_for_status()
        return config

    def clear(self) -> None:
        self._http.delete(f"{self._url}/_harness/faults", timeout=10).raise_for_status()

    def snapshot(self) -> dict[str, Any]:
        answer = self._http.get(f"{self._url}/_harness/faults", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def counts(self) -> dict[str, int]:
        return self.snapshot()["counts"]

    def injected(self, kind: str | None = None, service: str | None = None, operation: str | None = None) -> int:
        return sum(
            row["count"] for row in self.snapshot()["injected"]
            if kind in (None, row["kind"]) and service in (None, row["service"])
            and operation in (None, row["operation"])
        )


class RemoteAwsServer:
    """The same ``.url``, ``.calls``, ``.faults`` and ``.reset()`` for a server in another process."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url.rstrip("/")
        self._http = requests.Session()
        self.calls = _RemoteCalls(self.url, self._http)
        self.faults = _RemoteFaults(self.url, self._http)

    def reset(self) -> None:
        self._http.post(f"{self.url}/_harness/reset", timeout=30).raise_for_status()

    def settle_deployment(self, region: str, cluster: str, service: str, outcome: str) -> None:
        """End an ECS service's deployment (tests.harness.ecs_standin.settle) in the server's process."""
        self._http.post(f"{self.url}/_harness/ecs/settle", timeout=10, json={
            "region": region, "cluster": cluster, "service": service, "outcome": outcome}).raise_for_status()

    def healthy(self) -> bool:
        try:
            return self._http.get(f"{self.url}/_harness/health", timeout=2).ok
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded by the deadline
            if self.healthy():
                return
            time.sleep(0.1)
        raise TimeoutError(ERR_NOT_STARTED.format(seconds=timeout))


def connect(url: str) -> RemoteAwsServer:
    return RemoteAwsServer(url)


# --------------------------------------------------------------------------- process mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.awsserver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="stop after this long even without SIGTERM")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server = start(args.port)
    print(server.url, flush=True)
    try:
        stopping.wait(args.max_seconds)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
