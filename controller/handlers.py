"""kopf glue, and nothing else: events in, reconcile() in a worker thread, status out.

Called by ``controller.__main__`` (``regaccess run``), which builds a registry
with ``build_registry(runtime)`` and hands it to ``kopf.run``.

What happens where:
- create / update / resume: reconcile the resource (level-triggered; kopf's
  diff is never looked at).
- a Secret index: every Secret of a credential type in the watched namespaces,
  kept by kopf's watch. Nothing polls Secrets Manager or the API server for
  rotation.
- a timer per resource, every ``--source-check-interval`` seconds, compares
  the index's resourceVersion of the source Secret with the one last synced
  (an in-memory comparison, no API call) and runs the drift check when it is
  due (``--drift-interval`` with per-resource jitter).
- delete: remove or retain the AWS objects behind kopf's finalizer.

One asyncio lock per resource serialises the handler and the timer, so two
reconciles of one object never interleave their AWS writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import kopf

from controller import metrics
from controller.api.models import GROUP, REGISTRY_CREDENTIAL, VERSION
from controller.aws.clients import ClientFactory, Clients
from controller.logging import REDACTOR, get_logger
from controller.reconcile import registry_credential as rc
from controller.reconcile.result import ReconcileResult
from controller.settings import Settings
from controller.sources import BASIC_AUTH, DOCKER_CONFIG_JSON

SECRET_TYPES = frozenset({BASIC_AUTH, DOCKER_CONFIG_JSON, "Opaque"})
PERSISTENCE_PREFIX = "kopf.regaccess.io"
DRIFT_JITTER = 0.1  # up to 10% later than the interval, fixed per resource


@dataclass
class Runtime:
    """Everything the handlers share; built once per process by the CLI."""

    settings: Settings
    factory: ClientFactory
    health: metrics.Health = field(default_factory=metrics.Health)
    executor: concurrent.futures.ThreadPoolExecutor | None = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.settings.workers, thread_name_prefix="aws"
            )

    def clients_for(self, region: str | None, role_arn: str | None, external_id: str | None) -> Clients:
        return Clients(self.factory, region=region, role_arn=role_arn, external_id=external_id)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run boto3 work in the worker pool, keeping structlog's bound context."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: context.run(fn, *args, **kwargs))


def _jitter(uid: str) -> float:
    digest = hashlib.sha256(uid.encode()).digest()
    return DRIFT_JITTER * digest[0] / 255


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def drift_due(status: dict[str, Any], uid: str, interval: float, now: float) -> bool:
    """Pure: has the resource's drift interval (with its jitter) elapsed?"""
    last = _parse_time(status.get("lastDriftCheckTime")) or _parse_time(status.get("lastSyncTime"))
    if last is None:
        return False  # never synced: the create/resume handler owns the first run
    return now - last >= interval * (1 + _jitter(uid))


def source_changed(status: dict[str, Any], secret: dict[str, Any] | None) -> bool:
    """Pure: did the source Secret change (or appear, or vanish) since the last sync?"""
    if status.get("observedGeneration") is None:
        return False
    current = ((secret or {}).get("metadata") or {}).get("resourceVersion")
    return current != status.get("sourceResourceVersion")


def _apply_status(patch: kopf.Patch, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Write only the status fields that changed; True when anything did."""
    changed = False
    for key, value in new.items():
        if old.get(key) != value:
            patch.status[key] = value
            changed = True
    for key in old:
        if key not in new:
            patch.status[key] = None
            changed = True
    return changed


def _post_events(body: kopf.Body, result: ReconcileResult) -> None:
    for event in result.events:
        # Messages are built from names and reasons only; scrub anyway (defence in depth).
        kopf.event(body, type=event.type, reason=event.reason, message=REDACTOR.scrub(event.message))


def _record(kind: str, trigger: str, uid: str, result: ReconcileResult, started: float) -> None:
    metrics.RECONCILES.labels(kind, trigger, result.outcome).inc()
    metrics.RECONCILE_SECONDS.labels(kind, trigger).observe(time.monotonic() - started)
    for object_type, count in result.drift_found.items():
        metrics.DRIFT_DETECTED.labels(kind, object_type).inc(count)
    for object_type, count in result.drift_remediated.items():
        metrics.DRIFT_REMEDIATED.labels(kind, object_type).inc(count)
    ready = next((c for c in result.status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None:
        metrics.STATES.set(kind, uid, ready.get("status", "Unknown"), ready.get("reason", ""))
    if trigger == "drift":
        metrics.DRIFT_CHECKS.labels(kind, "error" if result.outcome in ("error", "retry") else "success").inc()
        if result.outcome not in ("error", "retry"):
            metrics.LAST_DRIFT_CHECK.labels(kind).set(time.time())


def _source_secret(index: kopf.Index, namespace: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    name = ((spec.get("source") or {}).get("secretRef") or {}).get("name")
    if not name:
        return None
    store = index.get((namespace, name))
    return next(iter(store), None) if store is not None else None


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings = runtime.settings
    rc_resource = (GROUP, VERSION, REGISTRY_CREDENTIAL.plural)
    log = get_logger("regaccess.handlers")

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base go to annotations: our status schema is structural,
        # so kopf's default status.kopf field would be pruned by the API server.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PERSISTENCE_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PERSISTENCE_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = 100  # only explicit kopf.event() calls post Events
        settings.execution.max_workers = runtime.settings.workers
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has none of kopf's default handlers: in-cluster first, then KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index("", "v1", "secrets", registry=registry, id="source_secrets",
                when=lambda body, **_: (body.get("type") or "Opaque") in SECRET_TYPES)
    def source_secrets(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        meta = body.get("metadata") or {}
        return {(namespace, name): {
            "type": body.get("type"),
            "data": dict(body.get("data") or {}),
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": meta.get("resourceVersion")},
        }}

    async def _reconcile(trigger: str, body: kopf.Body, patch: kopf.Patch, index: kopf.Index) -> None:
        meta, spec = body["metadata"], dict(body.get("spec") or {})
        uid = meta["uid"]
        async with runtime.lock(uid):
            started = time.monotonic()
            status = dict(body.get("status") or {})
            request = rc.Request(
                namespace=meta["namespace"], name=meta["name"], generation=meta.get("generation"),
                spec=spec, status=status, source_secret=_source_secret(index, meta["namespace"], spec),
                cluster_id=settings.cluster_id, drift_check=(trigger == "drift"),
            )
            result: ReconcileResult = await runtime.blocking(rc.reconcile, request, runtime.clients_for)
            _apply_status(patch, status, result.status)
            _post_events(body, result)
            _record(REGISTRY_CREDENTIAL.kind, trigger, uid, result, started)
            log.info("reconciled", kind=REGISTRY_CREDENTIAL.kind, namespace=meta["namespace"], name=meta["name"],
                     trigger=trigger, outcome=result.outcome, retry_after=result.retry_after)
        if result.retry_after is not None:
            raise kopf.TemporaryError(result.retry_reason, delay=result.retry_after)

    @kopf.on.resume(*rc_resource, registry=registry, id="sync")
    @kopf.on.create(*rc_resource, registry=registry, id="sync")
    @kopf.on.update(*rc_resource, registry=registry, id="sync", field="spec")
    async def rc_sync(body: kopf.Body, patch: kopf.Patch, reason: str, source_secrets: kopf.Index, **_: Any) -> None:
        await _reconcile(str(reason), body, patch, source_secrets)

    @kopf.timer(*rc_resource, registry=registry, id="watch", interval=settings.source_check_interval)
    async def rc_tick(body: kopf.Body, patch: kopf.Patch, source_secrets: kopf.Index, **_: Any) -> None:
        runtime.health.beat()
        if body["metadata"].get("deletionTimestamp"):
            return
        status = dict(body.get("status") or {})
        spec = dict(body.get("spec") or {})
        secret = _source_secret(source_secrets, body["metadata"]["namespace"], spec)
        if source_changed(status, secret):
            await _reconcile("source", body, patch, source_secrets)
        elif drift_due(status, body["metadata"]["uid"], settings.drift_interval, time.time()):
            await _reconcile("drift", body, patch, source_secrets)

    @kopf.on.delete(*rc_resource, registry=registry, id="cleanup")
    async def rc_delete(body: kopf.Body, **_: Any) -> None:
        meta = body["metadata"]
        async with runtime.lock(meta["uid"]):
            started = time.monotonic()
            request = rc.Request(
                namespace=meta["namespace"], name=meta["name"], generation=meta.get("generation"),
                spec=dict(body.get("spec") or {}), status=dict(body.get("status") or {}), source_secret=None,
                cluster_id=settings.cluster_id,
            )
            result = await runtime.blocking(rc.delete, request, runtime.clients_for)
            _post_events(body, result)
            metrics.RECONCILES.labels(REGISTRY_CREDENTIAL.kind, "delete", result.outcome).inc()
            metrics.RECONCILE_SECONDS.labels(REGISTRY_CREDENTIAL.kind, "delete").observe(time.monotonic() - started)
        if result.retry_after is not None:
            raise kopf.TemporaryError(result.retry_reason, delay=result.retry_after)
        metrics.STATES.forget(REGISTRY_CREDENTIAL.kind, meta["uid"])
        runtime.locks.pop(meta["uid"], None)

    return registry
