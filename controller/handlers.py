"""kopf glue, and nothing else: events in, reconcile() in a worker thread, status out.

Called by ``controller.__main__`` (``regaccess run``), which builds a registry
with ``build_registry(runtime)`` and hands it to ``kopf.run``.

What happens where:
- create / update / resume: reconcile the resource (level-triggered; kopf's
  diff is never looked at).
- a Secret index: every Secret of a credential type in the watched namespaces,
  kept by kopf's watch as a digest and its opt-in mark, never the data
  (``controller.source_index``: a reconcile fetches the value it needs), and an index of RegistryCredentials (by uid, and by the
  Secret they read). A Secret event triggers the reconcile of exactly the resources that
  reference it (``controller.scheduler``'s ``trigger``). Nothing polls Secrets
  Manager or the API server for rotation.
- one scheduler (``controller.scheduler``) for drift checks: every event of a
  resource (re)schedules its next check from its status (``--drift-interval``
  with per-resource jitter); at most ``--max-concurrent-drift-checks`` run at
  once. Its checks read the resource from kopf's indexes (memory, no API call)
  and write status with ``StatusWriter`` (a merge patch of what changed), so the
  next kopf handler reads it from the watch like any other change. ECRPullSecret
  token refreshes are entries of the same scheduler (due at status.nextRefreshTime;
  a deleted or hand-edited Secret triggers one): no handler keeps a timer of its own.
- delete: remove or retain the AWS objects behind kopf's finalizer.
- the TenancyPolicy named by ``--tenancy-policy`` (cluster-scoped, the admin's): kept
  by an index, which kopf fills before any handler runs, so no resource is reconciled
  under a policy not yet read. A change re-evaluates, through the scheduler, exactly the
  resources whose verdict (``controller.tenancy``) it changes; no restart.
- with ``--shard NAME`` the API server sends only the resources labelled
  ``regaccess.io/shard=NAME`` (the default shard: those without the label).

One asyncio lock per resource serialises the handlers and the scheduler's
checks, so two reconciles of one object never interleave their AWS writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as dt
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import kopf

from controller import diffbase, drift_events, metrics, source_index, tenancy
from controller.api import reasons
from controller.api.models import (CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, GROUP, REGISTRY_CREDENTIAL,
                                   TENANCY_POLICY, VERSION)
from controller.api.validate import validate
from controller.aws.clients import ClientFactory, Clients
from controller.kubeapi import StatusWriter, client_for, event_body, get_json, patchable, post_event
from controller.kubeclient import custom_resource_path
from controller.logging import REDACTOR, get_logger, owner_key
from controller.reconcile import cross_account as xrepo
from controller.reconcile import pull_secret as ps
from controller.reconcile import registry_credential as rc
from controller.reconcile.result import ReconcileResult, settle, synced_generation
from controller.scheduler import DRIFT_JITTER, ERROR_RECHECK, Scheduler, due_time, drift_due, refresh_time
from controller.scheduler import parse_time as _parse_time
from controller.scheduler import jitter as _jitter
from controller.settings import SHARD_LABEL, Settings
from controller.sources import BASIC_AUTH, DOCKER_CONFIG_JSON

SECRET_TYPES = frozenset({BASIC_AUTH, DOCKER_CONFIG_JSON, "Opaque"})
PERSISTENCE_PREFIX = diffbase.PREFIX
__all__ = ["DRIFT_JITTER", "Runtime", "bounded_session", "build_registry", "connection_limit", "drift_due",
           "source_changed", "_jitter", "shard_selector"]


# Watch streams kopf keeps open per watched namespace (RegistryCredentials,
# CrossAccountRepoAccess, ECRPullSecrets, Secrets; with peering, KopfPeerings too, which
# kopf watches per namespace when namespaced), and at most this many besides (the
# TenancyPolicy, kopf's CRD and namespace observers, a cluster-wide peering).
NAMESPACED_WATCHES = 4
OTHER_WATCHES = 5
NAMESPACE_PATTERN = frozenset("*?!,")


def connection_limit(settings: Settings) -> int | None:
    """Pure: how many connections kopf may hold to the API server (None: no bound).

    kopf's own session opens a new TLS connection for every request in flight, with no
    bound: 1,000 resources applied at once meant about 1,000 connections at ~0.3 MiB each
    (bench/RESULTS.md). A watch stream holds its connection for as long as it runs, so the
    bound is one connection per stream plus ``--kube-connections`` for requests; a pattern
    among the namespaces (``team-*``) makes the number of streams unknown, so then there is
    no bound (a bound below the streams would leave no connection for a single PATCH).
    """
    if not settings.kube_connections:
        return None
    if any(NAMESPACE_PATTERN & set(ns) for ns in settings.namespaces):
        return None
    per_namespace = NAMESPACED_WATCHES + (1 if settings.peering else 0)
    return per_namespace * max(1, len(settings.namespaces)) + OTHER_WATCHES + settings.kube_connections


def bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """kopf's session for ``info`` (the same TLS context and headers kopf would build), bounded."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
                                    headers=info.as_http_headers())
    return kopf.AiohttpSession(server=info.server, default_namespace=info.default_namespace,
                               expiration=info.expiration, priority=info.priority, aiohttp_session=session)


def shard_selector(shard: str) -> str:
    """Pure: the label selector of one shard; the default shard (``""``) takes the unlabelled."""
    return f"{SHARD_LABEL}={shard}" if shard else f"!{SHARD_LABEL}"


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
    # The drift-check scheduler (controller.scheduler); its loop is started by the CLI.
    scheduler: Scheduler | None = None
    # kopf's indexes, taken from the first watch event: the scheduler's checks run outside
    # any handler.
    indexes: dict[str, kopf.Index] = field(default_factory=dict)
    # reportingInstance of the Events this process posts (the pod's name in a cluster).
    instance: str = field(default_factory=socket.gethostname)
    # Resources an AWS change event selected, with the event's time (controller.drift_events):
    # their next scheduled check reconciles even though no drift check is due.
    event_pending: dict[Any, float | None] = field(default_factory=dict)
    # Set by build_registry: one parsed event -> how many resources it triggered.
    handle_event: Callable[[drift_events.Event], int] | None = None
    # The TenancyPolicy in force (controller.tenancy), and the one the resources were last
    # judged under: a change between the two re-evaluates the resources it affects.
    tenancy_policy: tenancy.Policy = tenancy.SHIPPED
    tenancy_judged: tenancy.Policy = tenancy.SHIPPED
    # False until the first handler of a resource runs: kopf fills every index (the
    # TenancyPolicy's too) before that, so a policy read until then is the one every
    # resource will first be judged under, not a change to re-evaluate.
    handlers_started: bool = False
    # Resources a TenancyPolicy change affects: their next scheduled check reconciles.
    tenancy_pending: set[Any] = field(default_factory=set)
    # ECRPullSecrets the watch reported (uid -> slim body), kept by register_pull_secrets.
    pull_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def status_writer(self, body: kopf.Body, plural: str = REGISTRY_CREDENTIAL.plural) -> StatusWriter | None:
        if self.connection is None:
            return None
        meta = body["metadata"]
        return StatusWriter(self.connection, plural, meta["namespace"], meta["name"],
                            list((body.get("status") or {}).get("managed") or []))

    def post_events(self, body: kopf.Body, result: ReconcileResult) -> None:
        """Post a reconcile's Events, in order, in the calling worker thread.

        Called before the status that reports the reconcile is written, so whoever waits
        for Ready finds its Events. (kopf's own poster sends them from a queue, racing the
        status patch.) An Event that cannot be posted is logged, never fatal: the status
        carries the same facts."""
        if not result.events:
            return
        involved, now = _involved(body), _utcnow().isoformat().replace("+00:00", "Z")
        for event in result.events:
            # Messages are built from names and reasons only; scrub anyway (defence in depth).
            posted = event_body(involved, event.type, event.reason, REDACTOR.scrub(event.message),
                                self.instance, now)
            try:
                if self.connection is None:
                    raise RuntimeError("not logged in to Kubernetes yet")
                post_event(self.connection, posted)
            except Exception as error:  # noqa: BLE001 - Events are auxiliary to status
                get_logger("regaccess.events").warning(
                    "event not posted", namespace=involved["namespace"], name=involved["name"],
                    reason=event.reason, error=REDACTOR.scrub(str(error)))

    def clients_for(self, region: str | None, role_arn: str | None, external_id: str | None) -> Clients:
        return Clients(self.factory, region=region, role_arn=role_arn, external_id=external_id)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run boto3 work in the worker pool, keeping structlog's bound context."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: context.run(fn, *args, **kwargs))


# Triggers that read every managed object and stamp lastDriftCheckTime.
DRIFT_TRIGGERS = frozenset({"drift", "event"})


def _event_entries(kind: str, uid: str, body: kopf.Body) -> dict[Any, Any]:
    meta = body.get("metadata") or {}
    return drift_events.index_entries(kind, meta.get("namespace") or "", meta.get("name") or "", uid,
                                      dict(body.get("spec") or {}), dict(body.get("status") or {}))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def source_changed(status: dict[str, Any], secret: dict[str, Any] | None) -> bool:
    """Pure: did the source Secret change (or appear, or vanish) since the last sync?"""
    if not synced_generation(status):
        return False  # never synced: the create/resume handler and its retries own it
    current = ((secret or {}).get("metadata") or {}).get("resourceVersion")
    return current != status.get("sourceResourceVersion")


def _reconciled_part(status: dict[str, Any]) -> dict[str, Any]:
    """Status without kopf's diff base: kopf writes that (after the handler, into the same
    patch); a reconcile result carries whatever value it read and must never send it back."""
    return {k: v for k, v in status.items() if k != diffbase.FIELD}


def _apply_status(patch: kopf.Patch, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Write only the status fields that changed; True when anything did."""
    changed = False
    old, new = _reconciled_part(old), _reconciled_part(new)
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


# The kinds kopf handles (and keeps a diff base for); the TenancyPolicy is only indexed.
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
HANDLED_CRDS = tuple(f"{kind.plural}.{GROUP}" for kind in (REGISTRY_CREDENTIAL, CROSS_ACCOUNT_REPO_ACCESS,
                                                           ECR_PULL_SECRET))


def _installed_crds(**login: Any) -> dict[str, dict[str, Any] | None]:
    """The installed CRDs of the handled kinds (None for one that could not be read).

    Read once at start, before kopf logs in (``login``: a kopf handler's keyword
    arguments), with the credentials kopf will use."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(HANDLED_CRDS)
    try:
        info = kopf.login_with_service_account(**login) or kopf.login_with_kubeconfig(**login)
        client = client_for(info)
        for name in HANDLED_CRDS:
            # A list by name: what the operator's RBAC allows (list, watch; no get).
            items = client.get(f"{CRDS_PATH}?fieldSelector=metadata.name%3D{name}").get("items") or []
            found[name] = items[0] if items else None
    except Exception as error:  # noqa: BLE001 - any failure means: keep the annotation
        get_logger("regaccess.handlers").warning("crds_unreadable", error=REDACTOR.scrub(str(error)))
    return found


def _involved(body: kopf.Body) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "name": meta.get("name"),
            "namespace": meta.get("namespace"), "uid": meta.get("uid")}


def _record(kind: str, trigger: str, uid: str, result: ReconcileResult, started: float) -> None:
    metrics.RECONCILES.labels(kind, trigger, result.outcome).inc()
    metrics.RECONCILE_SECONDS.labels(kind, trigger).observe(time.monotonic() - started)
    for object_type, count in result.drift_found.items():
        metrics.DRIFT_DETECTED.labels(kind, object_type).inc(count)
    for object_type, count in result.drift_remediated.items():
        metrics.DRIFT_REMEDIATED.labels(kind, object_type).inc(count)
    for object_type, count in result.drift_first_seen.items():
        metrics.DRIFT_FIRST_SEEN.labels(kind, object_type, trigger).inc(count)
    metrics.STATES.set(kind, uid, list(result.status.get("conditions") or []))
    if result.status.get("monthlyCost") is not None:
        metrics.COSTS.set(kind, uid, float(result.status["monthlyCost"]))
    if trigger == "drift":
        metrics.DRIFT_CHECKS.labels(kind, "error" if result.outcome in ("error", "retry") else "success").inc()
        if result.outcome not in ("error", "retry"):
            metrics.LAST_DRIFT_CHECK.labels(kind).set(time.time())


def _source_name(spec: dict[str, Any]) -> str:
    return ((spec.get("source") or {}).get("secretRef") or {}).get("name") or ""


def _source_secret(index: kopf.Index, namespace: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The index's entry of the resource's source Secret: metadata and digest, no data."""
    name = _source_name(spec)
    return _indexed(index, (namespace, name)) if name else None


def _slim(body: kopf.Body) -> dict[str, Any]:
    """What the scheduler needs of a resource: enough to reconcile it and to post Events."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")},
        "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {}),
    }


def _indexed(index: kopf.Index | None, key: Any) -> dict[str, Any] | None:
    store = index.get(key) if index is not None else None
    return next(iter(store), None) if store is not None else None


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings = runtime.settings
    rc_resource = (GROUP, VERSION, REGISTRY_CREDENTIAL.plural)
    xrepo_resource = (GROUP, VERSION, CROSS_ACCOUNT_REPO_ACCESS.plural)
    log = get_logger("regaccess.handlers")
    opt_in = settings.opt_in

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, logger: Any, **kwargs: Any) -> None:
        # Progress goes to annotations: our status schema is structural, so kopf's default
        # status.kopf field would be pruned by the API server. kopf writes progress only
        # while a handler is retried. The diff base, which kopf writes after every handler,
        # goes into the status field the schema declares for it, with the handler's status
        # in one request (controller.diffbase).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PERSISTENCE_PREFIX)
        storage, outdated = diffbase.storage_for(_installed_crds(settings=settings, logger=logger, **kwargs))
        if outdated:
            log.warning("diff base kept in the annotation", crds=outdated,
                        why="these CRDs are older than the operator (or could not be read)",
                        fix="kubectl apply -f charts/regaccess/crds/, then restart: until then every "
                            "reconcile writes the object and its status, one request more")
        settings.persistence.diffbase_storage = storage
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        # kopf posts no Events (its handler logs would be ones); ours go out through
        # Runtime.post_events, before the status they go with.
        settings.posting.enabled = False
        settings.execution.max_workers = runtime.settings.workers
        settings.watching.server_timeout = 300
        if runtime.settings.source_secret_selector:
            # Server-side: the API server filters the Secret list and watch (labelSelector);
            # a `labels=` filter on the index would only drop them after they were received.
            settings.watching.label_selectors["", "v1", "secrets"] = runtime.settings.source_secret_selector
        settings.networking.request_timeout = 60
        # kopf's last resort after SIGTERM (default 10 minutes): our own drain is bounded by
        # --shutdown-timeout, so anything beyond that plus a margin is a hang.
        settings.process.ultimate_exiting_timeout = runtime.settings.shutdown_timeout + 15
        # Sharding: the API server filters the watch (a labelSelector on list and watch),
        # so a shard never receives, indexes or holds another shard's resources. kopf's
        # handler ``labels=`` filters would be client-side: every shard would get everything.
        for plural in (REGISTRY_CREDENTIAL.plural, CROSS_ACCOUNT_REPO_ACCESS.plural):
            settings.watching.label_selectors[GROUP, plural] = shard_selector(runtime.settings.shard)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | kopf.AiohttpSession | None:
        # A private registry has none of kopf's default handlers: in-cluster first, then KUBECONFIG.
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        runtime.connection = info
        limit = connection_limit(settings)
        if info is None or limit is None:
            return info
        return bounded_session(info, limit)

    # Index functions are async: kopf runs a sync handler in a worker thread, a hop per
    # event that costs more than the function itself.
    @kopf.index("", "v1", "secrets", registry=registry, id="source_secrets",
                when=lambda body, **_: (body.get("type") or "Opaque") in SECRET_TYPES)
    async def source_secrets(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        # A digest and the opt-in mark, never the data (controller.source_index): the value
        # is fetched by the reconcile that needs it and dropped with it.
        return {(namespace, name): source_index.entry(namespace, name, dict(body), opt_in)}

    @kopf.index(*rc_resource, registry=registry, id="rc_bodies")
    async def rc_bodies(namespace: str, uid: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        # One index, two kinds of keys (one handler call per event, not two): the uid holds
        # what the scheduler reconciles, (namespace, secret name) the uids that read it.
        name = (((body.get("spec") or {}).get("source") or {}).get("secretRef") or {}).get("name")
        slim = _slim(body)
        # And (drift_events.INDEX_TAG, *object key) -> uid for each AWS object it manages.
        entries: dict[Any, Any] = _event_entries(REGISTRY_CREDENTIAL.kind, uid, body)
        entries[uid] = slim
        if name:
            entries[(namespace, name)] = uid
        return entries

    @kopf.index(*xrepo_resource, registry=registry, id="xrepo_bodies")
    async def xrepo_bodies(uid: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        entries: dict[Any, Any] = _event_entries(CROSS_ACCOUNT_REPO_ACCESS.kind, uid, body)
        entries[uid] = _slim(body)
        return entries

    async def _run(kind: str, trigger: str, body: kopf.Body, patch: kopf.Patch | None,
                   call: Callable[[], ReconcileResult],
                   write_status: Callable[[dict[str, Any]], None] | None = None) -> ReconcileResult:
        """Run one reconcile of one object under its lock and apply what it returned.

        kopf handlers pass kopf's patch (applied when the handler returns); the
        scheduler passes its own and ``write_status``, which sends it at once.
        """
        meta = body["metadata"]
        uid = meta["uid"]
        async with runtime.lock(uid):
            started = time.monotonic()

            def reconcile_and_post() -> ReconcileResult:
                # The Events first: the status written after them (by kopf's patch when
                # the handler returns, or write_status below) is what Ready waiters see.
                done = call()
                runtime.post_events(body, done)
                return done

            result: ReconcileResult = await runtime.blocking(reconcile_and_post)
            if patch is not None:
                # Observed generation, Reconciling / Stalled: one decision for both kinds.
                result = settle(result, meta.get("generation"))
                # Compared after leaving out empty strings: the stored status never has them.
                changed = _apply_status(patch, dict(body.get("status") or {}), result.status)
                if changed and write_status is not None:
                    await runtime.blocking(write_status, dict(patch["status"]))
            _record(kind, trigger, uid, result, started)
            log.info("reconciled", kind=kind, namespace=meta["namespace"], name=meta["name"],
                     trigger=trigger, outcome=result.outcome, retry_after=result.retry_after,
                     shard=settings.shard or "default")
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
            read_source=lambda: read_source(meta["namespace"], _source_name(spec)),
            source_opt_in=opt_in,
        )

    def read_source(namespace: str, name: str) -> dict[str, Any] | None:
        """The source Secret's value, for the reconcile that needs it (in its worker thread)."""
        try:
            if runtime.connection is None:
                raise RuntimeError("not logged in to Kubernetes yet")
            info = runtime.connection
            return source_index.read(lambda path: get_json(info, path), namespace, name)
        except Exception as error:  # noqa: BLE001 - the API server unreachable: retry, as kopf would
            raise kopf.TemporaryError(f"source Secret {name!r} not readable: {REDACTOR.scrub(str(error))}",
                                      delay=ERROR_RECHECK) from None

    async def rc_reconcile(trigger: str, body: kopf.Body, patch: kopf.Patch, index: kopf.Index,
                           write_status: Callable[[dict[str, Any]], None] | None = None) -> ReconcileResult:
        request = rc_request(body, index, drift_check=(trigger in DRIFT_TRIGGERS))
        return await _run(REGISTRY_CREDENTIAL.kind, trigger, body, patch,
                          lambda: rc.reconcile(request, runtime.clients_for, record_now=runtime.status_writer(body),
                                               tenancy_policy=runtime.tenancy_policy,
                                               secret_monthly_price=settings.secret_monthly_price),
                          write_status)

    @kopf.on.resume(*rc_resource, registry=registry, id="sync")
    @kopf.on.create(*rc_resource, registry=registry, id="sync")
    @kopf.on.update(*rc_resource, registry=registry, id="sync", field="spec")
    async def rc_sync(body: kopf.Body, patch: kopf.Patch, reason: str, source_secrets: kopf.Index, **_: Any) -> None:
        await rc_reconcile(str(reason), body, patch, source_secrets)

    @kopf.on.delete(*rc_resource, registry=registry, id="cleanup")
    async def rc_delete(body: kopf.Body, source_secrets: kopf.Index, **_: Any) -> None:
        request = rc_request(body, source_secrets)
        policy = runtime.tenancy_policy
        await _run(REGISTRY_CREDENTIAL.kind, "delete", body, None,
                   lambda: rc.delete(request, runtime.clients_for, tenancy_policy=policy))
        metrics.STATES.forget(REGISTRY_CREDENTIAL.kind, body["metadata"]["uid"])
        metrics.COSTS.forget(REGISTRY_CREDENTIAL.kind, body["metadata"]["uid"])
        REDACTOR.forget(owner_key(REGISTRY_CREDENTIAL.kind, body["metadata"]["namespace"], body["metadata"]["name"]))
        runtime.locks.pop(body["metadata"]["uid"], None)

    # ------------------------------------------------------------------ CrossAccountRepoAccess

    def xrepo_args(body: kopf.Body) -> tuple[Any, ...]:
        meta = body["metadata"]
        return (meta["namespace"], meta["name"], meta.get("generation"),
                dict(body.get("spec") or {}), dict(body.get("status") or {}))

    async def xrepo_reconcile(trigger: str, body: kopf.Body, patch: kopf.Patch,
                              write_status: Callable[[dict[str, Any]], None] | None = None) -> ReconcileResult:
        args = xrepo_args(body)
        return await _run(CROSS_ACCOUNT_REPO_ACCESS.kind, trigger, body, patch, lambda: xrepo.reconcile(
            *args, clients_for=runtime.clients_for, cluster_id=settings.cluster_id, now=_utcnow,
            drift_check=(trigger in DRIFT_TRIGGERS), tenancy_policy=runtime.tenancy_policy,
            template_applied_for=tuple(settings.template_applied_for.split(","))), write_status)

    @kopf.on.resume(*xrepo_resource, registry=registry, id="sync")
    @kopf.on.create(*xrepo_resource, registry=registry, id="sync")
    @kopf.on.update(*xrepo_resource, registry=registry, id="sync", field="spec")
    async def xrepo_sync(body: kopf.Body, patch: kopf.Patch, reason: str, **_: Any) -> None:
        await xrepo_reconcile(str(reason), body, patch)

    @kopf.on.delete(*xrepo_resource, registry=registry, id="cleanup")
    async def xrepo_delete(body: kopf.Body, **_: Any) -> None:
        args = xrepo_args(body)
        policy = runtime.tenancy_policy
        await _run(CROSS_ACCOUNT_REPO_ACCESS.kind, "delete", body, None, lambda: xrepo.delete(
            *args, clients_for=runtime.clients_for, cluster_id=settings.cluster_id, now=_utcnow,
            tenancy_policy=policy))
        metrics.STATES.forget(CROSS_ACCOUNT_REPO_ACCESS.kind, body["metadata"]["uid"])
        runtime.locks.pop(body["metadata"]["uid"], None)

    # ------------------------------------------------------------------ the scheduler's feed

    def seen(indexes: dict[str, Any]) -> None:
        if not runtime.handlers_started and settings.tenancy_policy:
            # kopf listed the TenancyPolicies before this first handler: say once, loudly,
            # when the one followed is not there (the rules in force are then not the admin's).
            _report_tenancy_absence(log, settings.tenancy_policy, runtime.tenancy_policy)
        runtime.handlers_started = True
        if not runtime.indexes:
            runtime.indexes.update(indexes)

    def follow(kind: str, event_type: str | None, body: kopf.Body, source_secret: Any = False) -> None:
        """Keep the scheduler in step with one watch event of one resource (no API call)."""
        scheduler = runtime.scheduler
        if scheduler is None:
            return
        uid = body["metadata"]["uid"]
        key = (kind, uid)
        if event_type == "DELETED" or body["metadata"].get("deletionTimestamp"):
            # Deleted, or relabelled to another shard: the API server's filtered watch says
            # DELETED and the other shard's watch says ADDED (it resumes the resource there).
            scheduler.forget(key)
            if event_type == "DELETED":
                # No longer ours: its conditions leave this shard's regaccess_resources, so a
                # sum over shards counts every resource once.
                metrics.STATES.forget(kind, uid)
                metrics.COSTS.forget(kind, uid)
                # Nor are its credentials: the redactor holds managed resources' values only.
                REDACTOR.forget(owner_key(kind, body["metadata"].get("namespace") or "",
                                          body["metadata"].get("name") or ""))
                lock = runtime.locks.get(uid)
                if lock is not None and not lock.locked():
                    runtime.locks.pop(uid, None)
                log.info("left the watch", kind=kind, namespace=body["metadata"].get("namespace"),
                         name=body["metadata"].get("name"), shard=settings.shard or "default")
            return
        status = dict(body.get("status") or {})
        scheduler.schedule(key, due_time(status, uid, settings.check_interval))
        if source_secret is not False and source_changed(status, source_secret):
            # The Secret changed while a reconcile that read the older one was running.
            scheduler.trigger(key)

    @kopf.on.event(*rc_resource, registry=registry, id="schedule")
    async def rc_event(type: str | None, body: kopf.Body, source_secrets: kopf.Index, rc_bodies: kopf.Index,
                       xrepo_bodies: kopf.Index, **_: Any) -> None:
        seen({"source_secrets": source_secrets, REGISTRY_CREDENTIAL.kind: rc_bodies,
              CROSS_ACCOUNT_REPO_ACCESS.kind: xrepo_bodies})
        spec = dict(body.get("spec") or {})
        follow(REGISTRY_CREDENTIAL.kind, type, body, _source_secret(source_secrets, body["metadata"]["namespace"], spec))

    @kopf.on.event(*xrepo_resource, registry=registry, id="schedule")
    async def xrepo_event(type: str | None, body: kopf.Body, source_secrets: kopf.Index, rc_bodies: kopf.Index,
                          xrepo_bodies: kopf.Index, **_: Any) -> None:
        seen({"source_secrets": source_secrets, REGISTRY_CREDENTIAL.kind: rc_bodies,
              CROSS_ACCOUNT_REPO_ACCESS.kind: xrepo_bodies})
        follow(CROSS_ACCOUNT_REPO_ACCESS.kind, type, body)

    @kopf.on.event("", "v1", "secrets", registry=registry, id="rotate",
                   when=lambda body, **_: (body.get("type") or "Opaque") in SECRET_TYPES)
    async def secret_event(namespace: str, name: str, source_secrets: kopf.Index,
                           rc_bodies: kopf.Index, xrepo_bodies: kopf.Index, **_: Any) -> None:
        # kopf indexes an event before it calls handlers: the index already holds this version.
        seen({"source_secrets": source_secrets, REGISTRY_CREDENTIAL.kind: rc_bodies,
              CROSS_ACCOUNT_REPO_ACCESS.kind: xrepo_bodies})
        scheduler = runtime.scheduler
        store = rc_bodies.get((namespace, name))
        if scheduler is None or store is None:
            return
        for uid in store:
            scheduler.trigger((REGISTRY_CREDENTIAL.kind, uid))

    async def check(key: tuple[str, str]) -> float | None:
        """One scheduled check: reconcile when the source changed or the drift check is due."""
        kind, uid = key
        if kind == ECR_PULL_SECRET.kind:
            return await pull_check(uid)
        body = _indexed(runtime.indexes.get(kind), uid)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # gone from the watch: its DELETED event forgets it as well
        status = dict(body.get("status") or {})
        now = time.time()
        trigger = None
        if kind == REGISTRY_CREDENTIAL.kind:
            index = runtime.indexes["source_secrets"]
            if source_changed(status, _source_secret(index, body["metadata"]["namespace"], body["spec"])):
                trigger = "source"
        if trigger is None and key in runtime.tenancy_pending:
            trigger = "tenancy"
        runtime.tenancy_pending.discard(key)  # any reconcile now judges under the current policy
        if trigger is None and key in runtime.event_pending:
            trigger = "event"
            event_time = runtime.event_pending.pop(key)
            if event_time is not None:
                metrics.DRIFT_EVENT_LAG.observe(max(0.0, now - event_time))
        runtime.event_pending.pop(key, None)  # whatever triggered this check also covers the event
        if trigger is None and drift_due(status, uid, settings.check_interval, now):
            trigger = "drift"
        if trigger is None:
            return due_time(status, uid, settings.check_interval)
        plural = REGISTRY_CREDENTIAL.plural if kind == REGISTRY_CREDENTIAL.kind else CROSS_ACCOUNT_REPO_ACCESS.plural
        writer = runtime.status_writer(body, plural)
        patch = kopf.Patch()
        try:
            if kind == REGISTRY_CREDENTIAL.kind:
                result = await rc_reconcile(trigger, body, patch, runtime.indexes["source_secrets"],
                                            writer.merge if writer else None)
            else:
                result = await xrepo_reconcile(trigger, body, patch, writer.merge if writer else None)
        except kopf.TemporaryError as error:
            # Retryable (throttled, a dependency not there yet): the same backoff kopf would use.
            return time.time() + (error.delay if error.delay is not None else ERROR_RECHECK)
        # What was just written, until the watch brings the object back: a trigger arriving
        # before that must not start from the status this check replaced.
        body["status"] = patchable(dict(result.status))
        return due_time(result.status, uid, settings.check_interval)

    def spawn(coroutine: Any) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(coroutine)

    def failed(key: Any, error: BaseException) -> None:
        log.error("drift check failed", kind=key[0], uid=key[1], error=REDACTOR.scrub(str(error)))

    def on_event(event: drift_events.Event) -> int:
        """Trigger every resource that manages an object the event names (memory only)."""
        scheduler = runtime.scheduler
        keys = drift_events.object_keys(event)
        if scheduler is None or not keys:
            return 0
        triggered = 0
        for kind in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind):
            index = runtime.indexes.get(kind)
            if index is None:
                continue
            for uid in drift_events.matching(keys, lambda key: index.get(key)):
                key = (kind, uid)
                runtime.event_pending[key] = event.time
                scheduler.trigger(key)
                triggered += 1
        return triggered

    runtime.handle_event = on_event

    # ------------------------------------------------------------------ TenancyPolicy

    def judged(kind: str, body: dict[str, Any], policy: tenancy.Policy) -> tuple[str, ...] | None:
        """Pure read of one indexed resource's tenancy verdict (None: its spec is invalid)."""
        meta, spec = body["metadata"], dict(body.get("spec") or {})
        resolved, _ = validate(kind, meta["namespace"], meta["name"], spec, cluster_id=settings.cluster_id)
        return None if resolved is None else tenancy.verdict(policy, meta["namespace"],
                                                             tenancy.values_of(kind, resolved))

    def reevaluate() -> int:
        """Trigger the resources whose verdict the policy change changed (memory only)."""
        old, new = runtime.tenancy_judged, runtime.tenancy_policy
        runtime.tenancy_judged = new
        scheduler = runtime.scheduler
        if scheduler is None or old == new:
            return 0
        triggered = 0
        bodies: list[tuple[str, str, dict[str, Any] | None]] = [
            (kind, uid, _indexed(runtime.indexes.get(kind), uid))
            for kind in (REGISTRY_CREDENTIAL.kind, CROSS_ACCOUNT_REPO_ACCESS.kind)
            for uid in [k for k in (runtime.indexes.get(kind) or {}) if isinstance(k, str)]]
        bodies += [(ECR_PULL_SECRET.kind, uid, body) for uid, body in list(runtime.pull_bodies.items())]
        for kind, uid, body in bodies:
            if body is None or judged(kind, body, old) == judged(kind, body, new):
                continue
            key = (kind, uid)
            runtime.tenancy_pending.add(key)
            scheduler.trigger(key)
            triggered += 1
        log.info("tenancy policy applied", policy=settings.tenancy_policy, triggered=triggered,
                 error=new.error)
        return triggered

    if settings.tenancy_policy:
        tenancy_resource = (GROUP, VERSION, TENANCY_POLICY.plural)
        # Until the index lists it: the shipped default for "default", else refuse everything.
        runtime.tenancy_policy = runtime.tenancy_judged = tenancy.absent(settings.tenancy_policy)

        def ours(name: str, **_: Any) -> bool:
            return name == settings.tenancy_policy

        # An index, not only an event handler: kopf lists every indexed resource before it
        # calls any handler, so the first reconcile already sees the admin's policy.
        @kopf.index(*tenancy_resource, registry=registry, id="tenancy_policies", when=ours)
        async def tenancy_policies(name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
            runtime.tenancy_policy = tenancy.from_spec(name, dict(body.get("spec") or {}))
            metrics.TENANCY_POLICY_MISSING.set(0)
            if not runtime.handlers_started:
                # kopf's initial listing: no resource was judged under anything yet, so
                # tenancy_follow's first event must not re-evaluate (and reconcile again)
                # the resources their resume handlers judge under this very policy.
                runtime.tenancy_judged = runtime.tenancy_policy
            if runtime.tenancy_policy.error:
                log.error("tenancy policy unreadable: every resource is refused", policy=name,
                          error=runtime.tenancy_policy.error)
            return {name: (body.get("metadata") or {}).get("resourceVersion")}

        @kopf.on.event(*tenancy_resource, registry=registry, id="tenancy_follow", when=ours)
        async def tenancy_follow(type: str | None, **_: Any) -> None:
            if type == "DELETED":
                runtime.tenancy_policy = tenancy.absent(settings.tenancy_policy)
                _report_tenancy_absence(log, settings.tenancy_policy, runtime.tenancy_policy)
            reevaluate()

    pull_check = register_pull_secrets(registry, runtime, _run)
    runtime.scheduler = Scheduler(check, max_concurrent=settings.max_concurrent_drift_checks,
                                  beat=runtime.health.beat, spawn=spawn, on_error=failed)
    return registry


def _report_tenancy_absence(log: Any, name: str, policy: tenancy.Policy) -> None:
    """A log line and the metric when the followed TenancyPolicy does not exist (no-op if it does)."""
    if policy.missing:
        metrics.TENANCY_POLICY_MISSING.set(1)
        log.error("tenancy policy missing: every resource is refused until it is created", policy=name,
                  reason=reasons.TENANCY_POLICY_MISSING)
    elif policy is tenancy.SHIPPED:
        metrics.TENANCY_POLICY_MISSING.set(1)
        log.warning("tenancy policy not found: the shipped default applies", policy=name)
    else:
        metrics.TENANCY_POLICY_MISSING.set(0)


# ---------------------------------------------------------------------- ECRPullSecret
# Refreshes are entries of the one scheduler above, keyed (ECRPullSecret, uid), due at
# status.nextRefreshTime (controller.scheduler.refresh_time); the Secret watch triggers them.

STATUS_RETRY = 10.0  # a status write that failed: the pass is repeated after this long


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
    old, new = _reconciled_part(old), _reconciled_part(new)
    patch: dict[str, Any] = dict(patchable(new))
    patch.update({key: None for key in old if key not in new})
    return patch


def _refresh_metrics(namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new.get("lastRefreshTime") and new.get("lastRefreshTime") != old.get("lastRefreshTime"):
        metrics.PULL_SECRET_REFRESHES.labels("success").inc()
    if int(new.get("refreshFailures") or 0) > int(old.get("refreshFailures") or 0):
        metrics.PULL_SECRET_REFRESHES.labels("failure").inc()
    metrics.PULL_SECRET_EXPIRY.set(namespace, name, _parse_time(new.get("expiresAt")))


def register_pull_secrets(registry: kopf.OperatorRegistry, runtime: Runtime,
                          run: Callable[..., Any]) -> Callable[[str], Awaitable[float | None]]:
    """Register the ECRPullSecret handlers; returns the scheduler's check of one (by uid)."""
    settings = runtime.settings
    resource = (GROUP, VERSION, ECR_PULL_SECRET.plural)
    kind = ECR_PULL_SECRET.kind
    timing = ps.Timing(fraction=settings.pull_secret_refresh_fraction,
                       max_lifetime=settings.pull_secret_max_lifetime)
    log = get_logger("regaccess.pullsecrets")
    bodies: dict[str, dict[str, Any]] = {}          # uid -> the latest body the watch reported
    runtime.pull_bodies = bodies                    # read by the TenancyPolicy re-evaluation
    by_secret: dict[tuple[str, str], str] = {}      # (namespace, Secret name) -> uid
    secret_changed: set[str] = set()                # uids whose Secret was deleted or edited by hand

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
                                    now=_utcnow(), timing=timing, tenancy_policy=runtime.tenancy_policy)

    def forget(uid: str) -> None:
        if runtime.scheduler is not None:
            runtime.scheduler.forget((kind, uid))
        secret_changed.discard(uid)
        body = bodies.pop(uid, None)
        for key in [k for k, v in by_secret.items() if v == uid]:
            by_secret.pop(key, None)
        if body is not None:
            metrics.PULL_SECRET_EXPIRY.forget(body["metadata"]["namespace"], body["metadata"]["name"])
            REDACTOR.forget(owner_key(kind, body["metadata"]["namespace"], body["metadata"]["name"]))

    async def check(uid: str) -> float | None:
        """The scheduler's check: one pass when the Secret changed or the refresh is due."""
        body = bodies.get(uid)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # gone from the watch: its DELETED event forgets it as well
        meta, old = body["metadata"], dict(body.get("status") or {})
        if uid in secret_changed:
            secret_changed.discard(uid)
            trigger = "secret"
        elif (kind, uid) in runtime.tenancy_pending:
            trigger = "tenancy"
        elif ps.refresh_due(old, _utcnow()):
            trigger = "refresh"
        else:
            return refresh_time(old)
        runtime.tenancy_pending.discard((kind, uid))  # this pass judges under the current policy
        try:
            result = await run(kind, trigger, body, None, reconcile_call(body))
            path = custom_resource_path(ECR_PULL_SECRET.plural, meta["namespace"], meta["name"]) + "/status"
            await runtime.blocking(kube().merge_patch, path, {"status": _status_patch(old, result.status)})
        except Exception as error:  # noqa: BLE001 - an API server outage must not end the refreshes
            log.warning("pull secret pass failed", namespace=meta["namespace"], name=meta["name"],
                        trigger=trigger, error=REDACTOR.scrub(str(error)))
            if trigger == "secret":
                secret_changed.add(uid)  # still to restore
            return time.time() + STATUS_RETRY
        _refresh_metrics(meta["namespace"], meta["name"], old, result.status)
        # What was just written, until the watch brings the object back.
        body["status"] = result.status
        return refresh_time(result.status)

    @kopf.on.resume(*resource, registry=registry, id="sync")
    @kopf.on.create(*resource, registry=registry, id="sync")
    @kopf.on.update(*resource, registry=registry, id="sync", field="spec")
    async def pull_sync(body: kopf.Body, patch: kopf.Patch, reason: str, **_: Any) -> None:
        old = dict(body.get("status") or {})
        result = await run(kind, str(reason), body, patch, reconcile_call(body))
        _refresh_metrics(body["metadata"]["namespace"], body["metadata"]["name"], old, result.status)
        if runtime.scheduler is not None:
            # Newer than the last scheduled pass's answer (a retry may come sooner): replace it.
            runtime.scheduler.replace((kind, body["metadata"]["uid"]), refresh_time(result.status))

    @kopf.on.event(*resource, registry=registry, id="follow")
    async def pull_follow(type: str | None, body: kopf.Body, **_: Any) -> None:
        uid = body["metadata"]["uid"]
        runtime.handlers_started = True
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
        if runtime.scheduler is not None:
            if slim["metadata"].get("deletionTimestamp"):
                runtime.scheduler.forget((kind, uid))
            else:
                runtime.scheduler.schedule((kind, uid), refresh_time(slim["status"]))

    @kopf.on.event("", "v1", "secrets", registry=registry, id="pull_secret_watch")
    async def pull_secret_watch(type: str | None, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        uid = by_secret.get((namespace, name))
        resource_body = bodies.get(uid) if uid else None
        if resource_body is None or not resource_body["status"].get("observedGeneration"):
            return  # not a pull Secret, or its resource's first pass is the create handler's
        if (type == "DELETED" or pull_secret_needs_pass(dict(body), resource_body, settings.cluster_id)) \
                and runtime.scheduler is not None:
            secret_changed.add(uid)
            runtime.scheduler.trigger((kind, uid))

    @kopf.on.delete(*resource, registry=registry, id="cleanup")
    async def pull_delete(body: kopf.Body, **_: Any) -> None:
        req = request(body)
        uid = body["metadata"]["uid"]
        if runtime.scheduler is not None:
            runtime.scheduler.forget((kind, uid))
        await run(kind, "delete", body, None, lambda: ps.delete(req, kube=kube(), cluster_id=settings.cluster_id,
                                                                 now=_utcnow()))
        metrics.STATES.forget(kind, uid)
        forget(uid)
        runtime.locks.pop(uid, None)

    return check
