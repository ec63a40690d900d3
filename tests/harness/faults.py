"""Fault injection as a WSGI layer in front of moto and the stand-ins.

``awsserver`` puts ``FaultLayer`` between its call recorder and the AWS apps.
Each request is identified (service, operation) before it gets here; the layer
then decides, deterministically from the seed, the service, the operation and
how many times that operation was seen before, whether to:

- ``fail_first``: fail the first N calls of an operation with a given code and
  message (e.g. ECR's "Invalid repository policy provided" while IAM is
  eventually consistent); checked first, and counted as kind ``failFirst``;
- ``drop``: close the connection without an answer, before the request reaches
  AWS (no side effect);
- ``throttle``: answer the protocol's throttling error (JSON protocols: HTTP 400
  ``ThrottlingException``; query protocol, e.g. IAM/STS: HTTP 400
  ``<ErrorResponse><Error><Code>Throttling</Code>``; EC2: ``RequestLimitExceeded``;
  REST-XML: 503 ``SlowDown``);
- ``error5xx``: answer 500 ``InternalFailure`` or 503 ``ServiceUnavailable``;
- ``abort``: let AWS process the request, then send the status line, headers and
  half of the body and close the connection (the write happened; the client
  does not know);
- ``lost``: let AWS process the request, then throw its answer away and send
  instead a throttle, a 500, a 503 or nothing (a dropped connection), picked by
  the call's seeded draw among ``FaultConfig.lost_answers``: the write happened
  and the client was told it failed, or told nothing. At most
  ``FaultConfig.max_lost_per_operation`` per (service, operation);
- ``latency``: sleep a bounded, seeded time before going on (independent of the
  failure kinds above).

The failure kinds share one draw: ``drop + throttle + error5xx + abort + lost``
must be at most 1 and each gets exactly its share. Rates are in [0, 1]; latency
is capped at ``MAX_LATENCY_SECONDS``. Rates can be scoped to a service, an
operation and/or reads or writes (the first matching scope wins, else the
default rates apply). Every injected fault is counted by (kind, service,
operation), and the layer tells the call recorder what AWS itself answered
(``ENV_AWS_STATUS``), so the record says what was done beside what was answered.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_LATENCY_SECONDS = 5.0
MAX_FAIL_FIRST = 10_000
MAX_LOST = 10_000
FAILURE_KINDS = ("drop", "throttle", "error5xx", "abort", "lost")  # the order the shared draw is cut in
KIND_LATENCY = "latency"
KIND_FAIL_FIRST = "failFirst"
KIND_LOST = "lost"
ALL_KINDS = (*FAILURE_KINDS, KIND_LATENCY, KIND_FAIL_FIRST)
# What a lost answer is replaced by.
LostAnswer = Literal["throttle", "500", "503", "drop"]
LOST_ANSWERS: tuple[LostAnswer, ...] = ("throttle", "500", "503", "drop")
# Operations that change nothing in AWS; everything else counts as a write.
READ_PREFIXES = (
    "Describe", "Get", "List", "BatchGet", "BatchCheck", "Validate", "Head", "Lookup", "Search",
    "AssumeRole",
)

ERR_RATE_SUM = "drop + throttle + error5xx + abort + lost must be at most 1 (got {total})"
MSG_THROTTLED = "Rate exceeded"
MSG_INTERNAL = "An internal error occurred (injected by the test harness)"
MSG_UNAVAILABLE = "Service unavailable (injected by the test harness)"

# Environ keys the layers share.
ENV_SERVICE = "harness.service"
ENV_OPERATION = "harness.operation"
ENV_PROTOCOL = "harness.protocol"
ENV_FAULT = "harness.fault"
ENV_AWS_STATUS = "harness.aws_status"   # the status AWS (moto / a stand-in) answered; unset: never reached
ENV_CUT = "harness.cut"                 # the client got no complete answer (dropped or aborted)


def is_read(operation: str) -> bool:
    return operation.startswith(READ_PREFIXES)

_THROTTLE_BY_PROTOCOL = {
    "json": (400, "ThrottlingException"),
    "rest-json": (400, "ThrottlingException"),
    "query": (400, "Throttling"),
    "ec2": (503, "RequestLimitExceeded"),
    "rest-xml": (503, "SlowDown"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rates(_Strict):
    """Probability per request of each fault kind."""

    drop: float = Field(default=0.0, ge=0.0, le=1.0)
    throttle: float = Field(default=0.0, ge=0.0, le=1.0)
    error5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    abort: float = Field(default=0.0, ge=0.0, le=1.0)
    lost: float = Field(default=0.0, ge=0.0, le=1.0)
    latency: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _failures_share_one_draw(self) -> "Rates":
        total = sum(getattr(self, kind) for kind in FAILURE_KINDS)
        if total > 1.0 + 1e-9:
            raise ValueError(ERR_RATE_SUM.format(total=round(total, 6)))
        return self


class Scope(_Strict):
    """Rates for one service and/or operation (None matches any), optionally reads or writes only."""

    service: str | None = None
    operation: str | None = None
    calls: Literal["any", "reads", "writes"] = "any"
    rates: Rates

    def matches(self, service: str, operation: str) -> bool:
        if self.calls != "any" and (self.calls == "reads") != is_read(operation):
            return False
        return self.service in (None, service) and self.operation in (None, operation)


class FailFirst(_Strict):
    """Fail the first ``count`` matching calls with ``code`` / ``message``."""

    service: str | None = None
    operation: str
    count: int = Field(ge=1, le=MAX_FAIL_FIRST)
    code: str = Field(min_length=1, max_length=128)
    message: str = Field(default="", max_length=1024)
    status: int = Field(default=400, ge=400, le=599)


class FaultConfig(_Strict):
    """Everything the fault layer does; JSON-able for the control endpoint."""

    seed: int = 0
    rates: Rates = Field(default_factory=Rates)
    scoped: list[Scope] = Field(default_factory=list, max_length=100)
    fail_first: list[FailFirst] = Field(default_factory=list, max_length=100)
    latency_max_seconds: float = Field(default=0.2, ge=0.0, le=MAX_LATENCY_SECONDS)
    # What replaces a lost answer (the call's seeded draw picks one, evenly).
    lost_answers: list[LostAnswer] = Field(default_factory=lambda: list(LOST_ANSWERS), min_length=1, max_length=4)
    # The bound: after this many lost answers of one (service, operation), its answers get through.
    max_lost_per_operation: int = Field(default=MAX_LOST, ge=0, le=MAX_LOST)

    def rates_for(self, service: str, operation: str) -> Rates:
        for scope in self.scoped:
            if scope.matches(service, operation):
                return scope.rates
        return self.rates


def error_response(protocol: str, status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS error answer in the wire shape botocore's parser for ``protocol`` expects."""
    request_id = str(uuid.uuid4())
    if protocol == "query":
        body = (
            '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
            f"<Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{_xml(code)}</Code>"
            f"<Message>{_xml(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    elif protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    elif protocol == "rest-xml":
        body = (
            f"<Error><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    else:  # json, rest-json and anything unidentified
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/json" if protocol == "rest-json" else "application/x-amz-json-1.1"
        headers = [("Content-Type", content_type), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)]
    headers.append(("Content-Length", str(len(body))))
    return f"{status} {'Service Unavailable' if status == 503 else 'Error'}", headers, body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Decision:
    kind: str | None            # a FAILURE_KINDS member, KIND_FAIL_FIRST or None
    latency: float              # seconds to sleep first
    rule: FailFirst | None = None
    variant: float = 0.0        # a seeded draw that picks between shapes of one kind
    lost_answer: LostAnswer | None = None  # for kind "lost": what the client gets instead


class FaultLayer:
    """WSGI middleware that injects the configured faults; thread-safe."""

    def __init__(self, app: Callable[..., Iterable[bytes]], sleep: Callable[[float], None] = time.sleep) -> None:
        self._app = app
        self._sleep = sleep
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._seen: Counter[tuple[str, str]] = Counter()      # calls per (service, operation)
        self._fail_first_used: Counter[int] = Counter()       # index in config.fail_first -> used
        self._injected: Counter[tuple[str, str, str]] = Counter()
        self._lost: Counter[tuple[str, str]] = Counter()      # lost answers per (service, operation)

    # ------------------------------------------------------------------ configuration

    def configure(self, config: FaultConfig | dict[str, Any] | None = None, **fields: Any) -> FaultConfig:
        """Replace the configuration (a FaultConfig, its dict form, or keyword fields).

        Resets the per-operation call counts (so a seed replays the same faults)
        and the fail-first budgets; keeps the injected counts (see ``reset``).
        """
        if config is None:
            config = FaultConfig.model_validate(fields)
        elif isinstance(config, dict):
            config = FaultConfig.model_validate({**config, **fields})
        elif fields:
            config = config.model_copy(update=fields)
        with self._lock:
            self._config = config
            self._seen.clear()
            self._fail_first_used.clear()
            self._lost.clear()
        return config

    def clear(self) -> None:
        """No faults from now on (the counts are kept)."""
        self.configure(FaultConfig())

    def reset(self) -> None:
        """No faults and all counts at zero."""
        with self._lock:
            self._config = FaultConfig()
            self._seen.clear()
            self._fail_first_used.clear()
            self._lost.clear()
            self._injected.clear()

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def injected(self, kind: str | None = None, service: str | None = None,
                 operation: str | None = None) -> int:
        """How many faults were injected, optionally of one kind / service / operation."""
        with self._lock:
            return sum(
                n for (k, s, o), n in self._injected.items()
                if kind in (None, k) and service in (None, s) and operation in (None, o)
            )

    def counts(self) -> dict[str, int]:
        """Injected faults by kind (every kind present, zero when none)."""
        with self._lock:
            totals = dict.fromkeys(ALL_KINDS, 0)
            for (kind, _, _), n in self._injected.items():
                totals[kind] = totals.get(kind, 0) + n
            return totals

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            config = self._config
            detail = [
                {"kind": k, "service": s, "operation": o, "count": n}
                for (k, s, o), n in sorted(self._injected.items())
            ]
        return {"config": config.model_dump(), "counts": self.counts(), "injected": detail}

    # ------------------------------------------------------------------ decision

    def decide(self, service: str, operation: str) -> Decision:
        """What happens to the next call of (service, operation)."""
        with self._lock:
            config = self._config
            nth = self._seen[(service, operation)]
            self._seen[(service, operation)] += 1
            for index, rule in enumerate(config.fail_first):
                if rule.operation == operation and rule.service in (None, service):
                    if self._fail_first_used[index] < rule.count:
                        self._fail_first_used[index] += 1
                        self._injected[(KIND_FAIL_FIRST, service, operation)] += 1
                        return Decision(KIND_FAIL_FIRST, 0.0, rule)
        rates = config.rates_for(service, operation)
        # One generator per (seed, service, operation, n): the same seed replays the same
        # faults for the same sequence of calls, whatever other threads do meanwhile.
        rng = random.Random(f"{config.seed}|{service}|{operation}|{nth}")
        failure_draw, latency_draw, latency_fraction, variant = (rng.random() for _ in range(4))
        kind = None
        edge = 0.0
        for candidate in FAILURE_KINDS:
            edge += getattr(rates, candidate)
            if failure_draw < edge:
                kind = candidate
                break
        latency = 0.0
        if latency_draw < rates.latency:
            latency = min(config.latency_max_seconds, MAX_LATENCY_SECONDS) * latency_fraction
        lost_answer: LostAnswer | None = None
        with self._lock:
            if kind == KIND_LOST:
                if self._lost[(service, operation)] >= config.max_lost_per_operation:
                    kind = None  # the bound is reached: this answer gets through
                else:
                    self._lost[(service, operation)] += 1
                    answers = config.lost_answers
                    lost_answer = answers[min(int(variant * len(answers)), len(answers) - 1)]
            if kind:
                self._injected[(kind, service, operation)] += 1
            if latency:
                self._injected[(KIND_LATENCY, service, operation)] += 1
        return Decision(kind, latency, None, variant, lost_answer)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service = environ.get(ENV_SERVICE, "unknown")
        operation = environ.get(ENV_OPERATION, "unknown")
        protocol = environ.get(ENV_PROTOCOL, "json")
        decision = self.decide(service, operation)
        kind, rule = decision.kind, decision.rule
        if decision.latency:
            self._sleep(decision.latency)
        if kind is None:
            return _forward(self._app, environ, start_response)
        environ[ENV_FAULT] = kind
        if kind == KIND_FAIL_FIRST:
            assert rule is not None
            return _answer(start_response, *error_response(protocol, rule.status, rule.code, rule.message))
        if kind == "throttle":
            status, code = _THROTTLE_BY_PROTOCOL.get(protocol, _THROTTLE_BY_PROTOCOL["json"])
            return _answer(start_response, *error_response(protocol, status, code, MSG_THROTTLED))
        if kind == "error5xx":
            # Half 500, half 503 (by the call's own seeded draw) so both shapes are exercised.
            status, code, message = (
                (500, "InternalFailure", MSG_INTERNAL) if decision.variant < 0.5
                else (503, "ServiceUnavailable", MSG_UNAVAILABLE)
            )
            return _answer(start_response, *error_response(protocol, status, code, message))
        if kind == "drop":
            return _drop(environ, start_response)
        if kind == KIND_LOST:
            assert decision.lost_answer is not None
            return _lose_answer(self._app, environ, start_response, protocol, decision.lost_answer)
        return _abort_mid_response(self._app, environ, start_response)


def _status_code(status: str) -> int:
    return int(status.split(None, 1)[0])


def _forward(app: Callable[..., Iterable[bytes]], environ: dict[str, Any],
             start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Pass the request to AWS, noting AWS's own status for the call record."""

    def noting_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        environ[ENV_AWS_STATUS] = _status_code(status)
        return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

    return app(environ, noting_start_response)


def _performed(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Let AWS process the request completely; its (status, headers, body), none of it sent yet."""
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    iterable = app(environ, capture)
    try:
        body = b"".join(iterable)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    status = captured.get("status", "200 OK")
    environ[ENV_AWS_STATUS] = _status_code(status)
    return status, captured.get("headers", []), body


def _lose_answer(app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Callable[..., Any],
                 protocol: str, answer: LostAnswer) -> list[bytes]:
    """AWS does the work; the client gets a throttle, a 500, a 503 or a dropped connection instead."""
    _performed(app, environ)
    if answer == "drop":
        return _drop(environ, start_response)
    if answer == "throttle":
        status, code = _THROTTLE_BY_PROTOCOL.get(protocol, _THROTTLE_BY_PROTOCOL["json"])
        return _answer(start_response, *error_response(protocol, status, code, MSG_THROTTLED))
    if answer == "500":
        return _answer(start_response, *error_response(protocol, 500, "InternalFailure", MSG_INTERNAL))
    return _answer(start_response, *error_response(protocol, 503, "ServiceUnavailable", MSG_UNAVAILABLE))


def _answer(start_response: Callable[..., Any], status: str, headers: list[tuple[str, str]],
            body: bytes) -> list[bytes]:
    start_response(status, headers)
    return [body]


def _close(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client went away first: the connection is closed either way


def _drop(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Close the connection with no answer; werkzeug's write then fails as a dropped connection."""
    environ[ENV_CUT] = True
    _close(environ)
    start_response("500 Dropped", [("Content-Length", "0")])
    return [b""]


def _abort_mid_response(app: Callable[..., Iterable[bytes]], environ: dict[str, Any],
                        start_response: Callable[..., Any]) -> Iterator[bytes]:
    """Process the request, then send headers and half the body and close the connection."""
    # AWS's part happens now, not when the body is iterated: the call record is written
    # when this returns and must see what AWS answered.
    status, headers, body = _performed(app, environ)
    environ[ENV_CUT] = True
    # Without Content-Length werkzeug sends the body chunked; cutting it before the last chunk
    # is a framing error every HTTP client detects. (A body shorter than its Content-Length
    # is not: botocore reads with urllib3's enforce_content_length=False and would parse the
    # truncated JSON as an empty answer.)
    headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]
    start_response(status, headers)
    return _half_then_close(environ, body)


def _half_then_close(environ: dict[str, Any], body: bytes) -> Iterator[bytes]:
    yield body[: max(len(body) // 2, 1)] if body else b" "
    _close(environ)
