"""Prometheus metrics (all named ``regaccess_*``) and the health endpoints.

AWS calls are counted from botocore's event hooks (``before-call`` /
``after-call`` / ``after-call-error``) registered on every client by the
client factory, so no call can be missed. Labels are bounded: kind, trigger,
result, service, operation, outcome, object type, condition, status, reason
(a constant of ``controller.api.reasons``), version — never ARNs, names,
namespaces or UIDs (one exception: ``regaccess_pull_secret_expiry_seconds``, see
``PullSecretExpiry``). Every metric is described in docs/metrics.md.

The HTTP server (``serve``) answers /metrics, /healthz (the event loop
heartbeat is fresh) and /readyz (kopf is watching).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from controller.aws.errors import THROTTLING_CODES

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Gauge("regaccess_build_info", "Build information (always 1).", ["version"], registry=REGISTRY)
RECONCILES = Counter(
    "regaccess_reconcile_total", "Reconciles by kind, trigger and result.",
    ["kind", "trigger", "result"], registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "regaccess_reconcile_duration_seconds", "Reconcile duration by kind and trigger.",
    ["kind", "trigger"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AWS_CALLS = Counter(
    "regaccess_aws_api_calls_total", "AWS API calls by service, operation and outcome.",
    ["service", "operation", "outcome"], registry=REGISTRY,
)
AWS_CALL_SECONDS = Histogram(
    "regaccess_aws_api_call_duration_seconds", "AWS API call latency (including retries).",
    ["service", "operation"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AWS_THROTTLES = Counter(
    "regaccess_aws_throttles_total", "AWS answers that were throttling errors (before retry).",
    ["service", "operation"], registry=REGISTRY,
)
AWS_RATE_LIMIT_WAIT = Histogram(
    "regaccess_aws_rate_limit_wait_seconds",
    "Time AWS calls waited in the client-side rate limiter (every limited call; 0 when a token was free).",
    ["service", "operation"], registry=REGISTRY,
    buckets=(0.0, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DRIFT_DETECTED = Counter(
    "regaccess_drift_detected_total", "Drift found on managed AWS objects.",
    ["kind", "object_type"], registry=REGISTRY,
)
DRIFT_REMEDIATED = Counter(
    "regaccess_drift_remediated_total", "Drift repaired on managed AWS objects.",
    ["kind", "object_type"], registry=REGISTRY,
)
RESOURCES = Gauge(
    "regaccess_resources",
    "Custom resources by kind and condition (Ready, Synced, Drifted) with its status and reason.",
    ["kind", "condition", "status", "reason"], registry=REGISTRY,
)
DRIFT_EVENTS_RECEIVED = Counter(
    "regaccess_drift_events_received_total", "Messages received from the drift-event queues.",
    registry=REGISTRY,
)
DRIFT_EVENTS = Counter(
    "regaccess_drift_events_total",
    "Drift-event messages by outcome: matched (triggered a reconcile), dropped (names nothing "
    "this operator manages), malformed (not a CloudTrail event; deleted unread).",
    ["outcome"], registry=REGISTRY,
)
DRIFT_EVENT_QUEUE_ERRORS = Counter(
    "regaccess_drift_event_queue_errors_total",
    "Failed receives or deletes on a drift-event queue (drift checks go on regardless).",
    registry=REGISTRY,
)
TENANCY_POLICY_MISSING = Gauge(
    "regaccess_tenancy_policy_missing",
    "1 while the TenancyPolicy named by --tenancy-policy does not exist (default: the shipped default "
    "applies; any other name: every resource is refused, TenancyPolicyMissing), else 0.",
    registry=REGISTRY,
)
DRIFT_EVENT_QUEUE_UP = Gauge(
    "regaccess_drift_event_queue_up",
    "1 from a successful check of a drift-event queue (GetQueueAttributes, at start and after each failure) "
    "until a check or receive fails, then 0; by queue name. No series: no queue configured.",
    ["queue"], registry=REGISTRY,
)
DRIFT_FIRST_SEEN = Counter(
    "regaccess_drift_first_seen_total",
    "Drift seen for the first time (a new status.drift record), by the trigger that found it: drift (the "
    "scheduled check), event, source, create, update, resume. With drift-event queues, trigger=\"drift\" is "
    "a change no event reported.",
    ["kind", "object_type", "trigger"], registry=REGISTRY,
)
DRIFT_EVENT_LAG = Histogram(
    "regaccess_drift_event_lag_seconds",
    "From an event's detail.eventTime to the start of the reconcile it triggered.",
    registry=REGISTRY, buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
for _outcome in ("matched", "dropped", "malformed"):
    DRIFT_EVENTS.labels(_outcome)  # every series from the start: rate() needs a zero before the first event
DRIFT_INTERVAL = Gauge(
    "regaccess_drift_interval_seconds",
    "Configured seconds between drift checks of one resource (before up to 10% jitter).",
    registry=REGISTRY,
)
LAST_DRIFT_CHECK = Gauge(
    "regaccess_last_drift_check_timestamp_seconds", "Unix time of the last successful drift check, by kind.",
    ["kind"], registry=REGISTRY,
)
DRIFT_CHECKS = Counter(
    "regaccess_drift_checks_total", "Drift checks by kind and result.", ["kind", "result"], registry=REGISTRY,
)


class ResourceStates:
    """The conditions of every resource the operator has seen; feeds RESOURCES.

    Kept per resource UID in memory, published as counts: the series depend on
    kinds, condition types, statuses and reasons (all bounded), never on how
    many resources there are or what they are called.

    A change moves the resource's own counts and touches only the series it
    left and entered: recounting every resource on every change made each
    reconcile O(N), 1.5 ms of CPU per create at 1,000 resources and ten times
    that at 10,000. A series whose count falls to zero is removed, as before.
    """

    # PullReady: RegistryCredentials with consumers only (controller.reconcile.pull_ready).
    CONDITIONS = ("Ready", "Synced", "Drifted", "PullReady")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], tuple[tuple[str, str, str], ...]] = {}
        self._counts: dict[tuple[str, str, str, str], int] = {}

    def set(self, kind: str, uid: str, conditions: list[dict[str, Any]]) -> None:
        by_type = {c.get("type"): c for c in conditions or [] if isinstance(c, dict)}
        state = tuple(
            (name, str(by_type[name].get("status", "Unknown")), str(by_type[name].get("reason", "")))
            for name in self.CONDITIONS if name in by_type
        )
        with self._lock:
            old = self._states.get((kind, uid))
            if old == state:
                return
            self._states[(kind, uid)] = state
            self._move(kind, old or (), state)

    def forget(self, kind: str, uid: str) -> None:
        with self._lock:
            old = self._states.pop((kind, uid), None)
            if old:
                self._move(kind, old, ())

    def _move(self, kind: str, old: tuple[tuple[str, str, str], ...], new: tuple[tuple[str, str, str], ...]) -> None:
        """One resource left the ``old`` series and entered the ``new`` ones (under the lock)."""
        for entry, delta in [(e, -1) for e in old if e not in new] + [(e, 1) for e in new if e not in old]:
            labels = (kind, *entry)
            count = self._counts.get(labels, 0) + delta
            if count > 0:
                self._counts[labels] = count
                RESOURCES.labels(*labels).set(count)
            else:
                self._counts.pop(labels, None)
                try:
                    RESOURCES.remove(*labels)
                except KeyError:
                    pass  # never published


STATES = ResourceStates()

MONTHLY_COST = Gauge(
    "regaccess_managed_monthly_cost_dollars",
    "What the AWS objects the operator manages cost per month at list price, in dollars, by kind "
    "(Secrets Manager secrets at --secret-monthly-price; controller/reconcile/cost.py).",
    ["kind"], registry=REGISTRY,
)


class MonthlyCosts:
    """Each resource's ``status.monthlyCost``, summed per kind into MONTHLY_COST (one series per kind)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._costs: dict[tuple[str, str], float] = {}

    def set(self, kind: str, uid: str, dollars: float) -> None:
        with self._lock:
            self._costs[(kind, uid)] = dollars
            self._publish(kind)

    def forget(self, kind: str, uid: str) -> None:
        with self._lock:
            if self._costs.pop((kind, uid), None) is not None:
                self._publish(kind)

    def total(self, kind: str) -> float:
        with self._lock:
            return sum(v for (k, _), v in self._costs.items() if k == kind)

    def _publish(self, kind: str) -> None:
        MONTHLY_COST.labels(kind).set(round(sum(v for (k, _), v in self._costs.items() if k == kind), 2))


COSTS = MonthlyCosts()

PULL_SECRET_REFRESHES = Counter(
    "regaccess_pull_secret_refreshes_total",
    "ECRPullSecret token refreshes by result (success: new tokens written; failure: a refresh failed).",
    ["result"], registry=REGISTRY,
)


class PullSecretExpiry:
    """``regaccess_pull_secret_expiry_seconds``: seconds until the earliest token of each
    ECRPullSecret expires, computed at scrape time (a gauge set at refresh time would stand
    still between refreshes).

    The one metric labelled by namespace and name: the alert must say which pull secret
    is about to fail. Its series are bounded by the number of ECRPullSecrets (usually a
    handful per namespace) and removed with the resource.
    """

    NAME = "regaccess_pull_secret_expiry_seconds"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], float] = {}
        self._clock = clock

    def set(self, namespace: str, name: str, expires_at: float | None) -> None:
        with self._lock:
            if expires_at is None:
                self._expiry.pop((namespace, name), None)
            else:
                self._expiry[(namespace, name)] = expires_at

    def forget(self, namespace: str, name: str) -> None:
        self.set(namespace, name, None)

    def describe(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(self.NAME, "Seconds until the earliest ECR token of an ECRPullSecret expires "
                                  "(negative: expired).", labels=["namespace", "name"])]

    def collect(self) -> list[Any]:
        family = self.describe()[0]
        now = self._clock()
        with self._lock:
            for (namespace, name), expires in sorted(self._expiry.items()):
                family.add_metric([namespace, name], expires - now)
        return [family]


PULL_SECRET_EXPIRY = PullSecretExpiry()
REGISTRY.register(PULL_SECRET_EXPIRY)


def _service(service_model: Any) -> str:
    # The SigV4 signing name ("ecr", not ECR's endpoint prefix "api.ecr"): what IAM
    # actions and CloudTrail call the service.
    return service_model.signing_name or service_model.endpoint_prefix


def _service_operation(model: Any) -> tuple[str, str]:
    return _service(model.service_model), model.name


def _before_call(model: Any = None, context: Any = None, **_: Any) -> None:
    if context is not None:
        context["regaccess_started"] = time.monotonic()
        if model is not None:
            # after-call-error gets no model: it reads the labels from here.
            context["regaccess_call"] = _service_operation(model)


def _after_call(model: Any = None, parsed: Any = None, context: Any = None, http_response: Any = None, **_: Any) -> None:
    service, operation = _service_operation(model)
    error = (parsed or {}).get("Error", {}) if isinstance(parsed, dict) else {}
    code = error.get("Code") if error else None
    status = getattr(http_response, "status_code", 200)
    outcome = "success" if not code and status < 400 else ("throttled" if code in THROTTLING_CODES else "error")
    AWS_CALLS.labels(service, operation, outcome).inc()
    started = (context or {}).get("regaccess_started")
    if started is not None:
        AWS_CALL_SECONDS.labels(service, operation).observe(time.monotonic() - started)


def _after_call_error(context: Any = None, event_name: str = "", exception: Any = None, **_: Any) -> None:
    # botocore emits after-call-error with the exception and the request context only; a
    # hook that raised here would replace the AWS error with an AttributeError.
    call = (context or {}).get("regaccess_call")
    service, operation = call if call else (event_name.split(".") + ["unknown", "unknown"])[1:3]
    outcome = "connection_error"
    response = getattr(exception, "response", None)
    if isinstance(response, dict):
        # An error answer ends here, not in after-call, when controller.aws.retries refused
        # botocore's retry of a write whose outcome is unknown: count it as the answer it was.
        code = (response.get("Error") or {}).get("Code")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        throttled = code in THROTTLING_CODES or status == 429
        outcome = "throttled" if throttled else "error"
        if throttled:
            # The needs-retry hook below never saw this attempt: the veto came first.
            AWS_THROTTLES.labels(service, operation).inc()
    AWS_CALLS.labels(service, operation, outcome).inc()
    started = (context or {}).get("regaccess_started")
    if started is not None:
        AWS_CALL_SECONDS.labels(service, operation).observe(time.monotonic() - started)


# botocore emits after-call once per call (after its retries) and needs-retry once
# per attempt: final outcomes are counted above, every throttled attempt here.
def _needs_retry(response: Any = None, operation: Any = None, **_: Any) -> None:
    if not response:
        return
    http, parsed = response
    code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
    if operation is not None and (code in THROTTLING_CODES or getattr(http, "status_code", 0) == 429):
        AWS_THROTTLES.labels(_service(operation.service_model), operation.name).inc()


def observe_rate_limit_wait(service: str, operation: str, seconds: float) -> None:
    """``on_wait`` callback of controller.aws.ratelimit.RateLimiter."""
    AWS_RATE_LIMIT_WAIT.labels(service, operation).observe(seconds)


CLIENT_HOOKS: list[tuple[str, Callable[..., Any]]] = [
    ("before-call", _before_call),
    ("after-call", _after_call),
    ("after-call-error", _after_call_error),
    ("needs-retry", _needs_retry),
]


def render() -> bytes:
    return generate_latest(REGISTRY)


class Health:
    """Liveness: the drift scheduler's loop (controller.scheduler) beat recently, so the asyncio
    loop runs and so does the scheduler. Readiness: kopf is up and watching."""

    def __init__(self, max_heartbeat_age: float = 60.0) -> None:
        self.max_heartbeat_age = max_heartbeat_age
        self.last_beat = time.monotonic()
        self.ready = threading.Event()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.max_heartbeat_age


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path.startswith("/metrics"):
                body, code, ctype = render(), 200, CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                ok = health.alive
                body, code, ctype = (b"ok\n" if ok else b"event loop stalled\n"), (200 if ok else 503), "text/plain"
            elif self.path.startswith("/readyz"):
                ok = health.ready.is_set() and health.alive
                body, code, ctype = (b"ok\n" if ok else b"not ready\n"), (200 if ok else 503), "text/plain"
            else:
                body, code, ctype = b"not found\n", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet: probes every few seconds
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
