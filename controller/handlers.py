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
- ECRPullSecret (``register_pull_secrets``, a section of its own): create /
  update / resume reconcile; a watch-event handler keeps each resource's latest
  body and arms one asyncio timer handle at its ``status.nextRefreshTime``
  (a heap entry in the event loop, no task and no wake-up per resource between
  refreshes); the Secret watch reconciles at once when a pull Secret is deleted
  or changed by hand. Status of these out-of-handler passes is merge-patched with
  the operator's own credentials.

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
from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, GROUP, REGISTRY_CREDENTIAL, VERSION
from controller.aws.clients import ClientFactory, Clients
from controller.kubeapi import StatusWriter, client_for, patchable
from controller.kubeclient import custom_resource_path
from controller.logging import REDACTOR, get_logger
from controller.reconcile import cross_account as xrepo
from controller.reconcile import pull_secret as ps
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

    # The connection kopf logged in with, for StatusWriter's immediate status patches.
    connection: kopf.ConnectionInfo | None = None

    def status_writer(self, body: kopf.Body) -> Callable[[dict[str, Any]], None] | None:
        if self.connection is None:
            return None
        meta = body["metadata"]
        return StatusWriter(self.connection, REGISTRY_CREDENTIAL.plural, meta["namespace"], meta["name"],
                            list((body.get("status") or {}).get("managed") or []))

    def clients_for(self, region: str | None, role_arn: str | None, external_id: str | None) -> Clients:
        return Clients(self.factory, region=region, role_arn=role_arn, external_id=external_id)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run boto3 work in the worker pool, keeping structlog's bound context."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: context.run(fn, *args, **kwargs))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
    """Pure: has the resource's drift interval (with its jitter) elapsed?

    A resource that never synced because AWS refused (access denied, an ownership
    conflict) counts from its Ready condition's last transition: the check then doubles
    as a slow retry, so a fix made on the AWS side is picked up without a spec change.
    """
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    last = (_parse_time(status.get("lastDriftCheckTime")) or _parse_time(status.get("lastSyncTime"))
            or _parse_time(ready.get("lastTransitionTime")))
    if last is None:
        return False  # never reconciled: the create/resume handler owns the first run
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
    # Compare cleaned values: the API server never returns the empty members we leave out.
    for key, value in patchable(new).items():
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
    metrics.STATES.set(kind, uid, list(result.status.get("conditions") or []))
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
    xrepo_resource = (GROUP, VERSION, CROSS_ACCOUNT_REPO_ACCESS.plural)
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
        # kopf's last resort after SIGTERM (default 10 minutes): our own drain is bounded by
        # --shutdown-timeout, so anything beyond that plus a margin is a hang.
        settings.process.ultimate_exiting_timeout = runtime.settings.shutdown_timeout + 15

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has none of kopf's default handlers: in-cluster first, then KUBECONFIG.
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        runtime.connection = info
        return info

    @kopf.index("", "v1", "secrets", registry=registry, id="source_secrets",
                when=lambda body, **_: (body.get("type") or "Opaque") in SECRET_TYPES)
    def source_secrets(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        meta = body.get("metadata") or {}
        return {(namespace, name): {
            "type": body.get("type"),
            "data": dict(body.get("data") or {}),
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": meta.get("resourceVersion")},
        }}

    async def _run(kind: str, trigger: str, body: kopf.Body, patch: kopf.Patch | None,
                   call: Callable[[], ReconcileResult]) -> ReconcileResult:
        """Run one reconcile of one object under its lock and apply what it returned."""
        meta = body["metadata"]
        uid = meta["uid"]
        async with runtime.lock(uid):
            started = time.monotonic()
            result: ReconcileResult = await runtime.blocking(call)
            if patch is not None:
                # Compared after leaving out empty strings: the stored status never has them.
                _apply_status(patch, dict(body.get("status") or {}), result.status)
            _post_events(body, result)
            _record(kind, trigger, uid, result, started)
            log.info("reconciled", kind=kind, namespace=meta["namespace"], name=meta["name"],
                     trigger=trigger, outcome=result.outcome, retry_after=result.retry_after)
        if result.retry_after is not None:
            raise kopf.TemporaryError(result.retry_reason, delay=result.retry_after)
        return result

    # ------------------------------------------------------------------ RegistryCredential

    def rc_request(body: kopf.Body, index: kopf.Index, drift_check: bool = False) -> rc.Request:
        meta, spec = body["metadata"], dict(body.get("spec") or {})
        return rc.Request(
            namespace=meta["namespace"], name=meta["name"], generation=meta.get("generation"),
            spec=spec, status=dict(body.get("status") or {}),
            source_secret=_source_secret(index, meta["namespace"], spec),
            cluster_id=settings.cluster_id, drift_check=drift_check,
        )

    async def rc_reconcile(trigger: str, body: kopf.Body, patch: kopf.Patch, index: kopf.Index) -> None:
        request = rc_request(body, index, drift_check=(trigger == "drift"))
        await _run(REGISTRY_CREDENTIAL.kind, trigger, body, patch,
                   lambda: rc.reconcile(request, runtime.clients_for, record_now=runtime.status_writer(body)))

    @kopf.on.resume(*rc_resource, registry=registry, id="sync")
    @kopf.on.create(*rc_resource, registry=registry, id="sync")
    @kopf.on.update(*rc_resource, registry=registry, id="sync", field="spec")
    async def rc_sync(body: kopf.Body, patch: kopf.Patch, reason: str, source_secrets: kopf.Index, **_: Any) -> None:
        await rc_reconcile(str(reason), body, patch, source_secrets)

    @kopf.timer(*rc_resource, registry=registry, id="watch", interval=settings.source_check_interval)
    async def rc_tick(body: kopf.Body, patch: kopf.Patch, source_secrets: kopf.Index, **_: Any) -> None:
        runtime.health.beat()
        if body["metadata"].get("deletionTimestamp"):
            return
        status = dict(body.get("status") or {})
        spec = dict(body.get("spec") or {})
        secret = _source_secret(source_secrets, body["metadata"]["namespace"], spec)
        if source_changed(status, secret):
            await rc_reconcile("source", body, patch, source_secrets)
        elif drift_due(status, body["metadata"]["uid"], settings.drift_interval, time.time()):
            await rc_reconcile("drift", body, patch, source_secrets)

    @kopf.on.delete(*rc_resource, registry=registry, id="cleanup")
    async def rc_delete(body: kopf.Body, source_secrets: kopf.Index, **_: Any) -> None:
        request = rc_request(body, source_secrets)
        await _run(REGISTRY_CREDENTIAL.kind, "delete", body, None, lambda: rc.delete(request, runtime.clients_for))
        metrics.STATES.forget(REGISTRY_CREDENTIAL.kind, body["metadata"]["uid"])
        runtime.locks.pop(body["metadata"]["uid"], None)

    # ------------------------------------------------------------------ CrossAccountRepoAccess

    def xrepo_args(body: kopf.Body) -> tuple[Any, ...]:
        meta = body["metadata"]
        return (meta["namespace"], meta["name"], meta.get("generation"),
                dict(body.get("spec") or {}), dict(body.get("status") or {}))

    async def xrepo_reconcile(trigger: str, body: kopf.Body, patch: kopf.Patch) -> None:
        args = xrepo_args(body)
        await _run(CROSS_ACCOUNT_REPO_ACCESS.kind, trigger, body, patch, lambda: xrepo.reconcile(
            *args, clients_for=runtime.clients_for, cluster_id=settings.cluster_id, now=_utcnow,
            drift_check=(trigger == "drift")))

    @kopf.on.resume(*xrepo_resource, registry=registry, id="sync")
    @kopf.on.create(*xrepo_resource, registry=registry, id="sync")
    @kopf.on.update(*xrepo_resource, registry=registry, id="sync", field="spec")
    async def xrepo_sync(body: kopf.Body, patch: kopf.Patch, reason: str, **_: Any) -> None:
        await xrepo_reconcile(str(reason), body, patch)

    @kopf.timer(*xrepo_resource, registry=registry, id="watch", interval=settings.source_check_interval)
    async def xrepo_tick(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        runtime.health.beat()
        if body["metadata"].get("deletionTimestamp"):
            return
        if drift_due(dict(body.get("status") or {}), body["metadata"]["uid"], settings.drift_interval, time.time()):
            await xrepo_reconcile("drift", body, patch)

    @kopf.on.delete(*xrepo_resource, registry=registry, id="cleanup")
    async def xrepo_delete(body: kopf.Body, **_: Any) -> None:
        args = xrepo_args(body)
        await _run(CROSS_ACCOUNT_REPO_ACCESS.kind, "delete", body, None, lambda: xrepo.delete(
            *args, clients_for=runtime.clients_for, cluster_id=settings.cluster_id, now=_utcnow))
        metrics.STATES.forget(CROSS_ACCOUNT_REPO_ACCESS.kind, body["metadata"]["uid"])
        runtime.locks.pop(body["metadata"]["uid"], None)

    register_pull_secrets(registry, runtime, _run)
    return registry


# ---------------------------------------------------------------------- ECRPullSecret
# Kept apart from the drift timers above: when the one drift scheduler lands, the
# refresh handles below become its entries (check(key) -> status.nextRefreshTime).

STATUS_RETRY = 10.0  # a status write that failed: the pass is repeated after this long


def _slim(body: Any) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {key: meta.get(key) for key in ("name", "namespace", "uid", "generation", "deletionTimestamp")},
        "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {}),
    }


def pull_secret_needs_pass(secret: dict[str, Any], resource: dict[str, Any], cluster_id: str) -> bool:
    """Pure: does this watch event of a pull Secret call for a pass now (hand edit, not ours)?"""
    from controller.api.validation import owner_value
    from controller.kubeobjects import PULL_SECRETS, DesiredPullSecret

    meta = resource["metadata"]
    desired = DesiredPullSecret(meta["namespace"], (secret.get("metadata") or {}).get("name", ""),
                                owner_value(cluster_id, meta["namespace"], meta["name"]), meta["name"], meta["uid"])
    observation = PULL_SECRETS.judge(PULL_SECRETS.facts(secret), desired)
    return bool(observation.differences)


def _status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = dict(patchable(new))
    patch.update({key: None for key in old if key not in new})
    return patch


def _refresh_metrics(namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new.get("lastRefreshTime") and new.get("lastRefreshTime") != old.get("lastRefreshTime"):
        metrics.PULL_SECRET_REFRESHES.labels("success").inc()
    if int(new.get("refreshFailures") or 0) > int(old.get("refreshFailures") or 0):
        metrics.PULL_SECRET_REFRESHES.labels("failure").inc()
    metrics.PULL_SECRET_EXPIRY.set(namespace, name, _parse_time(new.get("expiresAt")))


def register_pull_secrets(registry: kopf.OperatorRegistry, runtime: Runtime, run: Callable[..., Any]) -> None:
    settings = runtime.settings
    resource = (GROUP, VERSION, ECR_PULL_SECRET.plural)
    kind = ECR_PULL_SECRET.kind
    timing = ps.Timing(fraction=settings.pull_secret_refresh_fraction,
                       max_lifetime=settings.pull_secret_max_lifetime)
    log = get_logger("regaccess.pullsecrets")
    bodies: dict[str, dict[str, Any]] = {}          # uid -> the latest body the watch reported
    by_secret: dict[tuple[str, str], str] = {}      # (namespace, Secret name) -> uid
    handles: dict[str, asyncio.TimerHandle] = {}    # uid -> the armed refresh
    tasks: set[asyncio.Task[Any]] = set()

    def request(body: Any) -> ps.Request:
        meta = body["metadata"]
        return ps.Request(meta["namespace"], meta["name"], meta["uid"], meta.get("generation"),
                          dict(body.get("spec") or {}), dict(body.get("status") or {}))

    def kube() -> Any:
        if runtime.connection is None:
            raise RuntimeError("not logged in to Kubernetes yet")
        return client_for(runtime.connection)

    def reconcile_call(body: Any) -> Callable[[], ReconcileResult]:
        req = request(body)
        return lambda: ps.reconcile(req, clients_for=runtime.clients_for, kube=kube(), cluster_id=settings.cluster_id,
                                    now=_utcnow(), timing=timing)

    def arm(uid: str, when: float | None) -> None:
        old = handles.pop(uid, None)
        if old is not None:
            old.cancel()
        if when is None:
            return
        loop = asyncio.get_running_loop()
        handles[uid] = loop.call_later(max(when - time.time(), 0.0), lambda: start(uid, "refresh"))

    def start(uid: str, trigger: str) -> None:
        task = asyncio.get_running_loop().create_task(check(uid, trigger))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def forget(uid: str) -> None:
        arm(uid, None)
        body = bodies.pop(uid, None)
        for key in [k for k, v in by_secret.items() if v == uid]:
            by_secret.pop(key, None)
        if body is not None:
            metrics.PULL_SECRET_EXPIRY.forget(body["metadata"]["namespace"], body["metadata"]["name"])

    async def check(uid: str, trigger: str) -> None:
        """One pass outside a kopf handler (refresh time, or the Secret changed)."""
        body = bodies.get(uid)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        meta, old = body["metadata"], dict(body.get("status") or {})
        try:
            result = await run(kind, trigger, body, None, reconcile_call(body))
            path = custom_resource_path(ECR_PULL_SECRET.plural, meta["namespace"], meta["name"]) + "/status"
            await runtime.blocking(kube().merge_patch, path, {"status": _status_patch(old, result.status)})
        except Exception as error:  # noqa: BLE001 - an API server outage must not end the refreshes
            log.warning("pull secret pass failed", namespace=meta["namespace"], name=meta["name"],
                        trigger=trigger, error=REDACTOR.scrub(str(error)))
            arm(uid, time.time() + STATUS_RETRY)
            return
        _refresh_metrics(meta["namespace"], meta["name"], old, result.status)
        # The watch reports the new status and arms the next refresh from it; until then, this.
        body["status"] = result.status
        arm(uid, _parse_time(result.status.get("nextRefreshTime")))

    @kopf.on.resume(*resource, registry=registry, id="sync")
    @kopf.on.create(*resource, registry=registry, id="sync")
    @kopf.on.update(*resource, registry=registry, id="sync", field="spec")
    async def pull_sync(body: kopf.Body, patch: kopf.Patch, reason: str, **_: Any) -> None:
        old = dict(body.get("status") or {})
        result = await run(kind, str(reason), body, patch, reconcile_call(body))
        _refresh_metrics(body["metadata"]["namespace"], body["metadata"]["name"], old, result.status)

    @kopf.on.event(*resource, registry=registry, id="follow")
    async def pull_follow(type: str | None, body: kopf.Body, **_: Any) -> None:
        uid = body["metadata"]["uid"]
        if type == "DELETED":
            forget(uid)
            return
        slim = _slim(body)
        bodies[uid] = slim
        for key in [k for k, v in by_secret.items() if v == uid]:
            by_secret.pop(key, None)
        secret = slim["spec"].get("secretName") or slim["metadata"]["name"]
        by_secret[(slim["metadata"]["namespace"], secret)] = uid
        if slim["status"].get("secretName"):
            by_secret[(slim["metadata"]["namespace"], slim["status"]["secretName"])] = uid
        if not slim["metadata"].get("deletionTimestamp"):
            arm(uid, _parse_time(slim["status"].get("nextRefreshTime")))

    @kopf.on.event("", "v1", "secrets", registry=registry, id="pull_secret_watch")
    async def pull_secret_watch(type: str | None, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        uid = by_secret.get((namespace, name))
        resource_body = bodies.get(uid) if uid else None
        if resource_body is None or not resource_body["status"].get("observedGeneration"):
            return  # not a pull Secret, or its resource's first pass is the create handler's
        if type == "DELETED" or pull_secret_needs_pass(dict(body), resource_body, settings.cluster_id):
            start(uid, "secret")

    @kopf.on.delete(*resource, registry=registry, id="cleanup")
    async def pull_delete(body: kopf.Body, **_: Any) -> None:
        req = request(body)
        uid = body["metadata"]["uid"]
        arm(uid, None)
        await run(kind, "delete", body, None, lambda: ps.delete(req, kube=kube(), cluster_id=settings.cluster_id,
                                                                 now=_utcnow()))
        metrics.STATES.forget(kind, uid)
        forget(uid)
        runtime.locks.pop(uid, None)
