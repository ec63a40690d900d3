"""What botocore may retry, and the shutdown gate for AWS calls.

Registered by ``controller.aws.clients.ClientFactory`` on every client it makes
(botocore ``before-call`` and ``needs-retry`` hooks); the CLI closes the gate
when the operator is told to stop (SIGTERM).

1. Non-idempotent writes are not retried after an ambiguous failure.
   botocore's standard and adaptive modes retry a call whose connection closed
   before the answer (``ConnectionClosedError``) or whose answer timed out
   (``ReadTimeoutError``). For ``ecs:RegisterTaskDefinition`` and
   ``batch:RegisterJobDefinition`` the first attempt may well have registered a
   revision, and each retry registers another (measured against the test server:
   one aborted call became five revisions). The reconciler is the right place to
   retry those: it observes the latest ACTIVE revision first and registers only
   when that revision does not reference the secret yet, so nothing is
   registered twice. Throttling and 5xx answers (the request was refused) are
   still retried by botocore.

2. The shutdown gate. Once closed, no new AWS call starts (``before-call``
   raises ``OperatorShuttingDown``), a failed attempt is not retried, and a
   thread waiting for a rate-limit token wakes up and gives up. A call already
   on the wire is allowed to finish: interrupting it would not undo it, and
   every write the operator makes is safe to observe and converge from after a
   restart. ``OperatorShuttingDown`` is a ``BotoCoreError``, so steps classify
   it as transient and stop before their next write.

``veto_retry`` is the pure decision; the hooks are thin.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ConnectionClosedError, ReadTimeoutError

# (boto3 client name, operation) of writes that create something new on every call.
NON_IDEMPOTENT: frozenset[tuple[str, str]] = frozenset({
    ("ecs", "RegisterTaskDefinition"),
    ("batch", "RegisterJobDefinition"),
})
# Failures after which the request may have been processed.
AMBIGUOUS_FAILURES = (ConnectionClosedError, ReadTimeoutError)


class OperatorShuttingDown(BotoCoreError):
    """The operator is stopping: the AWS call was not started (or not retried)."""

    fmt = "the operator is shutting down; AWS call not made"


def veto_retry(service: str, operation: str, caught_exception: BaseException | None, *, closing: bool,
               failed: bool) -> BaseException | None:
    """Pure: the exception to raise instead of letting botocore retry, or None to let it decide."""
    if closing and failed:
        return OperatorShuttingDown()
    if (service, operation) in NON_IDEMPOTENT and isinstance(caught_exception, AMBIGUOUS_FAILURES):
        return caught_exception
    return None


def _failed(response: Any, caught_exception: BaseException | None) -> bool:
    if caught_exception is not None:
        return True
    if not response:
        return False
    http, parsed = response
    if isinstance(parsed, dict) and parsed.get("Error", {}).get("Code"):
        return True
    return getattr(http, "status_code", 200) >= 400


class Gate:
    """Open until ``close()``; thread-safe. One per ClientFactory."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    def sleep(self, seconds: float) -> None:
        """A sleep that ends early, with OperatorShuttingDown, when the gate closes."""
        if self._closed.wait(seconds):
            raise OperatorShuttingDown()

    # ---- botocore hooks

    def before_call(self, **_: Any) -> None:
        if self._closed.is_set():
            raise OperatorShuttingDown()
        return None  # a value would replace the call's answer

    def needs_retry(self, operation: Any = None, caught_exception: BaseException | None = None,
                    response: Any = None, **_: Any) -> None:
        if operation is None:
            return None
        veto = veto_retry(operation.service_model.service_name, operation.name, caught_exception,
                          closing=self._closed.is_set(), failed=_failed(response, caught_exception))
        if veto is not None:
            # botocore takes the first non-None answer as a retry delay and cannot be told
            # "do not retry"; raising ends the call with this exception instead.
            raise veto
        return None
