"""Drift in seconds: AWS change events (CloudTrail via EventBridge to SQS) select what to reconcile.

Called by ``controller.handlers`` (the index of object keys, the trigger) and
``controller.__main__`` (the poller, with ``--drift-events-queue-url``).

An event only *selects* resources: it triggers the same level-triggered
reconcile as a drift check (``controller.scheduler``'s ``trigger``), so what
the event says beyond the object's name is never trusted, the operator's own
writes cause at most one no-op reconcile (the reconcile finds nothing to do and
writes nothing, so no loop), and a lost event costs nothing but time: the drift
check stays as the backstop (``--drift-backstop-interval``).

Pure parts, table-tested in tests/unit/test_drift_events.py:

- ``parse(body)``: an SQS message body (an EventBridge envelope of a CloudTrail
  event, ``"detail-type": "AWS API Call via CloudTrail"``) to an ``Event``, or
  ``Malformed`` (a reason, never the body: a body may carry request parameters).
- ``object_keys(event)``: the keys of the AWS objects the call named, e.g.
  ``("rolePolicy", role, policy)`` from PutRolePolicy's requestParameters
  ``{roleName, policyName}``.
- ``resource_keys(kind, namespace, name, spec, status)``: the keys of the
  objects one resource manages, from its spec (what it wants) and its status
  (what it managed before). ``handlers`` stores them in a kopf index, so an
  event is matched against memory, never the API server.

Keys name objects without Region or account: an event for a same-named object
in another Region or account of a watched resource costs one no-op reconcile.

The poller (``Poller``) is a thin asyncio task: it checks each queue first
(GetQueueAttributes: reachable, its ARN and backlog logged,
``regaccess_drift_event_queue_up`` 1), then long-polls it in a worker thread
(``controller.aws.event_queue``), hands each message to ``handle`` and deletes
it afterwards, whatever the outcome; a queue that cannot be checked or read is
counted (``regaccess_drift_event_queue_errors_total``), reported down
(``regaccess_drift_event_queue_up`` 0) and checked again after a pause
(``error_pause``: 5 s doubling up to 60 s): drift is then found by the backstop
check.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from controller.logging import get_logger
from controller.scheduler import parse_time

log = get_logger("regaccess.drift_events")

DETAIL_TYPE = "AWS API Call via CloudTrail"
SOURCES = frozenset({"aws.secretsmanager", "aws.iam", "aws.ecs", "aws.batch", "aws.ecr"})
# A key names one AWS object: (object type, name...). The kopf index stores them under
# INDEX_TAG so they never meet the index's other keys (uids, (namespace, secret name)).
INDEX_TAG = "aws"
Key = tuple[str, ...]

SECRET_EVENTS = frozenset({"PutSecretValue", "UpdateSecret", "DeleteSecret", "RestoreSecret",
                           "TagResource", "UntagResource"})
IAM_POLICY_EVENTS = frozenset({"PutRolePolicy", "DeleteRolePolicy"})
TASK_EVENTS = frozenset({"RegisterTaskDefinition", "DeregisterTaskDefinition", "TagResource", "UntagResource"})
JOB_EVENTS = frozenset({"RegisterJobDefinition", "DeregisterJobDefinition", "TagResource", "UntagResource"})
REPOSITORY_EVENTS = frozenset({"SetRepositoryPolicy", "DeleteRepositoryPolicy", "DeleteRepository",
                               "TagResource", "UntagResource"})
CACHE_EVENTS = frozenset({"CreatePullThroughCacheRule", "UpdatePullThroughCacheRule", "DeletePullThroughCacheRule"})
# Every event name this module maps (the EventBridge rule in docs/operations.md lists them).
EVENT_NAMES = frozenset(SECRET_EVENTS | IAM_POLICY_EVENTS | {"DeleteRole"} | TASK_EVENTS | JOB_EVENTS
                        | REPOSITORY_EVENTS | CACHE_EVENTS)


class Malformed(ValueError):
    """A message that is not an EventBridge envelope of a CloudTrail event (reason only)."""


@dataclass(frozen=True)
class Event:
    source: str
    name: str
    time: float | None  # detail.eventTime, epoch seconds
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)
    actor: str = ""  # detail.userIdentity.arn (logged; our own writes are not filtered: see module doc)
    failed: bool = False  # detail.errorCode: AWS refused the call, nothing changed


def parse(body: str) -> Event:
    """Pure: one SQS message body to an Event; ``Malformed`` with a reason otherwise."""
    try:
        envelope = json.loads(body)
    except (TypeError, ValueError):
        raise Malformed("not JSON") from None
    if not isinstance(envelope, dict):
        raise Malformed("not a JSON object")
    if envelope.get("detail-type") != DETAIL_TYPE:
        raise Malformed("detail-type is not " + DETAIL_TYPE)
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise Malformed("no detail object")
    source = envelope.get("source") or detail.get("eventSource", "")
    name = detail.get("eventName")
    if not isinstance(source, str) or not isinstance(name, str) or not name:
        raise Malformed("no source or detail.eventName")
    request, response = detail.get("requestParameters"), detail.get("responseElements")
    if not isinstance(request or {}, dict) or not isinstance(response or {}, dict):
        raise Malformed("requestParameters or responseElements is not an object")
    identity = detail.get("userIdentity") if isinstance(detail.get("userIdentity"), dict) else {}
    event_time = detail.get("eventTime")
    return Event(source=source, name=name, time=parse_time(event_time) if isinstance(event_time, str) else None,
                 request=dict(request or {}), response=dict(response or {}),
                 actor=str(identity.get("arn") or ""), failed=bool(detail.get("errorCode")))


# --------------------------------------------------------------------------- names from ARNs


def _resource(arn: str, service: str) -> str | None:
    """``arn:aws:<service>:<region>:<account>:<resource>`` -> resource, else None."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == service:
        return parts[5]
    return None


def secret_names(secret_id: str) -> set[Key]:
    """A secretId is a name or an ARN; a full ARN ends in ``-`` and six random characters."""
    if not secret_id.startswith("arn:"):
        return {("secret", secret_id)}
    keys: set[Key] = {("secret", secret_id)}
    resource = _resource(secret_id, "secretsmanager") or ""
    if resource.startswith("secret:"):
        name = resource[len("secret:"):]
        keys.add(("secret", name))  # a partial ARN (no suffix) names the secret as it is
        if len(name) > 7 and name[-7] == "-":
            keys.add(("secret", name[:-7]))
    return keys


def _revisioned(value: str, service: str, kind: str, prefix: str) -> set[Key]:
    """``name:revision``, ``name`` or an ARN ``...:<prefix>/name:revision`` -> the name."""
    resource = _resource(value, service) if value.startswith("arn:") else None
    if value.startswith("arn:"):
        if resource is None or not resource.startswith(prefix + "/"):
            return set()
        value = resource[len(prefix) + 1:]
    name = value.rsplit(":", 1)[0] if ":" in value else value
    return {(kind, name)} if name else set()


def _role_name(value: str) -> str:
    """A role name, or a role ARN (``role/path/name``): the name is the last segment."""
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def _arn_keys(arn: str) -> set[Key]:
    """TagResource / UntagResource name their object by ARN."""
    if _resource(arn, "secretsmanager") is not None:
        return secret_names(arn)
    if _resource(arn, "ecs") is not None:
        return _revisioned(arn, "ecs", "taskDefinition", "task-definition")
    if _resource(arn, "batch") is not None:
        return _revisioned(arn, "batch", "jobDefinition", "job-definition")
    resource = _resource(arn, "ecr")
    if resource is not None and resource.startswith("repository/"):
        return {("repository", resource[len("repository/"):])}
    return set()


def object_keys(event: Event) -> set[Key]:
    """Pure: the keys of the objects an event names (empty: nothing this operator manages)."""
    if event.failed or event.name not in EVENT_NAMES:
        return set()
    req, resp = event.request, event.response
    if event.name in ("TagResource", "UntagResource"):
        arn = _text(req, "resourceArn") or _text(req, "resourceARN") or _text(req, "secretId")
        return _arn_keys(arn) if arn.startswith("arn:") else (secret_names(arn) if arn else set())
    if event.source == "aws.secretsmanager":
        secret_id = _text(req, "secretId")
        return secret_names(secret_id) if secret_id else set()
    if event.source == "aws.iam":
        role = _text(req, "roleName")
        if not role:
            return set()
        if event.name == "DeleteRole":
            return {("role", role)}
        policy = _text(req, "policyName")
        return {("rolePolicy", role, policy)} if policy else set()
    if event.source == "aws.ecs":
        if event.name == "RegisterTaskDefinition":
            family = _text((resp.get("taskDefinition") or {}) if isinstance(resp.get("taskDefinition"), dict)
                           else {}, "family") or _text(req, "family")
            return {("taskDefinition", family)} if family else set()
        return _revisioned(_text(req, "taskDefinition"), "ecs", "taskDefinition", "task-definition")
    if event.source == "aws.batch":
        if event.name == "RegisterJobDefinition":
            name = _text(req, "jobDefinitionName") or _text(resp, "jobDefinitionName")
            return {("jobDefinition", name)} if name else set()
        return _revisioned(_text(req, "jobDefinition"), "batch", "jobDefinition", "job-definition")
    if event.source == "aws.ecr":
        if event.name in CACHE_EVENTS:
            prefix = _text(req, "ecrRepositoryPrefix")
            return {("pullThroughCache", prefix)} if prefix else set()
        repository = _text(req, "repositoryName")
        return {("repository", repository)} if repository else set()
    return set()


# --------------------------------------------------------------------------- what resources manage


def resource_keys(kind: str, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any]) -> set[Key]:
    """Pure: the keys of the AWS objects one resource manages (spec: wanted; status: managed before)."""
    keys: set[Key] = set()
    if kind == "CrossAccountRepoAccess":
        keys |= {("repository", r) for r in spec.get("repositories") or [] if isinstance(r, str)}
        keys |= {("repository", row["name"]) for row in status.get("repositories") or []
                 if isinstance(row, dict) and row.get("name")}
        return keys
    secret = (spec.get("secret") or {}).get("name") or f"regaccess/{namespace}/{name}"
    keys.add(("secret", secret))
    if status.get("secretArn"):
        keys |= secret_names(str(status["secretArn"]))
    grants = spec.get("grants") or {}
    policy = grants.get("policyName") or f"regaccess-{namespace}-{name}"
    roles = {_role_name(r) for r in grants.get("executionRoles") or [] if isinstance(r, str)}
    consumers = spec.get("consumers") or {}
    families = {c.get("family") for c in consumers.get("ecsTaskDefinitions") or [] if isinstance(c, dict)}
    jobs = {c.get("name") for c in consumers.get("batchJobDefinitions") or [] if isinstance(c, dict)}
    prefix = (spec.get("pullThroughCache") or {}).get("ecrRepositoryPrefix")
    prefixes = {prefix} if prefix else set()
    for row in status.get("managed") or []:
        if not isinstance(row, dict) or not row.get("name"):
            continue
        row_kind, row_name = row.get("kind"), row["name"]
        if row_kind == "rolePolicy":
            roles.add(row_name)
        elif row_kind == "taskDefinition":
            families.add(row_name)
        elif row_kind == "jobDefinition":
            jobs.add(row_name)
        elif row_kind == "pullThroughCacheRule":
            prefixes.add(row_name)
    for role in roles:
        keys |= {("role", role), ("rolePolicy", role, policy)}
    keys |= {("taskDefinition", f) for f in families if f}
    keys |= {("jobDefinition", j) for j in jobs if j}
    keys |= {("pullThroughCache", p) for p in prefixes}
    return keys


def index_entries(kind: str, namespace: str, name: str, uid: str, spec: dict[str, Any],
                  status: dict[str, Any]) -> dict[Key, str]:
    """Pure: the kopf index entries of one resource: (INDEX_TAG, *key) -> its uid."""
    return {(INDEX_TAG, *key): uid for key in resource_keys(kind, namespace, name, spec, status)}


def matching(keys: Iterable[Key], lookup: Callable[[Key], Iterable[str] | None]) -> set[str]:
    """Pure: the uids an index (``lookup`` of a tagged key) holds for any of the keys."""
    uids: set[str] = set()
    for key in keys:
        uids |= set(lookup((INDEX_TAG, *key)) or ())
    return uids


# --------------------------------------------------------------------------- the poller

Receive = Callable[[str], list[dict[str, Any]]]   # queue URL -> messages (blocking, long poll)
Delete = Callable[[str, str], None]               # queue URL, receipt handle (blocking)
Attributes = Callable[[str], dict[str, str]]      # queue URL -> its attributes (blocking; raises: unreachable)
Handle = Callable[[Event], int]                   # an event -> resources triggered
Blocking = Callable[..., Awaitable[Any]]

ERROR_PAUSE = 5.0       # the first pause after a queue failed
MAX_ERROR_PAUSE = 60.0  # doubling up to this: a queue that stays unreachable costs a request a minute


def error_pause(failures: int, first: float = ERROR_PAUSE, longest: float = MAX_ERROR_PAUSE) -> float:
    """Pure: the pause after ``failures`` failed attempts in a row (5, 10, 20, 40, 60, 60 ... s)."""
    return min(longest, first * 2 ** max(0, failures - 1))


async def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call (a 20 s long poll) in a daemon thread of its own.

    Not the AWS worker pool: shutdown drains that pool (``--shutdown-timeout``), and
    a long poll in it would hold every shutdown for its whole wait; a daemon thread
    is simply abandoned at exit (a message it received is redelivered later).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            value = fn(*args)
            outcome: Callable[[], None] = lambda: future.set_result(value)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            caught = error
            outcome = lambda: future.set_exception(caught)
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:
            pass  # the loop has closed (shutdown): nobody is waiting any more

    threading.Thread(target=work, name="drift-events", daemon=True).start()
    return await future


class Poller:
    """Long-polls queues in worker threads; every message is deleted after it is handled.

    Each queue's loop first reads the queue's attributes (``attributes``: GetQueueAttributes),
    so an unreachable queue (missing, access denied, no network) is known at once, counted
    (``queue_error``) and reported down (``queue_up(url, False)``) before any receive; the
    loop then receives until a receive fails, and starts over after ``error_pause``.
    """

    def __init__(self, urls: Iterable[str], receive: Receive, delete: Delete, handle: Handle, blocking: Blocking,
                 count: Callable[[str], None] = lambda outcome: None,
                 queue_error: Callable[[str], None] = lambda url: None,
                 attributes: Attributes = lambda url: {},
                 queue_up: Callable[[str, bool], None] = lambda url, up: None,
                 error_pause: float = ERROR_PAUSE) -> None:
        self.urls = list(urls)
        self._receive, self._delete, self._handle, self._blocking = receive, delete, handle, blocking
        self._count, self._queue_error, self._error_pause = count, queue_error, error_pause
        self._attributes, self._queue_up = attributes, queue_up

    def handle_message(self, message: dict[str, Any]) -> str:
        """Pure but for ``handle``: one message to its outcome (matched, dropped, malformed)."""
        self._count("received")
        try:
            event = parse(message.get("Body", ""))
        except Malformed as problem:
            log.warning("malformed drift event", reason=str(problem), message_id=message.get("MessageId"))
            outcome = "malformed"
        else:
            outcome = "matched" if self._handle(event) else "dropped"
            log.info("drift event", event_name=event.name, source=event.source, outcome=outcome)
        self._count(outcome)
        return outcome

    async def check(self, url: str) -> bool:
        """Is the queue reachable with our rights? Counted and reported down when not."""
        try:
            found = await self._blocking(self._attributes, url)
        except Exception as error:  # noqa: BLE001 - an unreachable queue degrades to drift checks
            self._failed(url, "drift event queue unreachable; drift checks continue", error)
            return False
        self._queue_up(url, True)
        log.info("drift event queue ready", queue=url, queue_arn=found.get("QueueArn"),
                 backlog=found.get("ApproximateNumberOfMessages"))
        return True

    def _failed(self, url: str, what: str, error: BaseException) -> None:
        self._queue_error(url)
        self._queue_up(url, False)
        log.warning(what, queue=url, error=type(error).__name__)

    async def poll_once(self, url: str) -> int | None:
        """One receive and its messages: how many there were (None: the receive failed)."""
        try:
            messages = await self._blocking(self._receive, url)
        except Exception as error:  # noqa: BLE001 - an unreachable queue degrades to drift checks
            self._failed(url, "drift event queue unreadable; drift checks continue", error)
            return None
        for message in messages:
            try:
                self.handle_message(message)
            except Exception as error:  # noqa: BLE001 - never a crash; the message is still deleted
                log.error("drift event not handled", error=type(error).__name__)
                self._count("malformed")
            try:
                await self._blocking(self._delete, url, message.get("ReceiptHandle", ""))
            except Exception as error:  # noqa: BLE001 - redelivered later: one more no-op reconcile
                self._queue_error(url)
                log.warning("drift event not deleted", queue=url, error=type(error).__name__)
        return len(messages)

    async def run_queue(self, url: str) -> None:
        failures = 0
        while True:
            if await self.check(url):
                while await self.poll_once(url) is not None:
                    failures = 0
            failures += 1
            await asyncio.sleep(error_pause(failures, self._error_pause, max(self._error_pause, MAX_ERROR_PAUSE)))

    async def run(self) -> None:
        await asyncio.gather(*(self.run_queue(url) for url in self.urls))
