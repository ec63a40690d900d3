"""Bounded, safe shutdown of the AWS worker threads.

Used by ``controller.__main__`` (``regaccess run``): the reconciles run in a
``TrackingExecutor``; when kopf has stopped (SIGTERM/SIGINT), the CLI closes
the client factory's gate (``controller.aws.retries``: no new AWS call, no
retry) and calls ``drain()``, which waits at most ``--shutdown-timeout``
seconds for the work still in flight.

Why abandoning is safe: every reconcile is level-triggered and observes before
it writes, AlreadyExists means "observe again" and NotFound on delete means
done, and a registered task/job definition revision is recorded in status the
moment it exists. Whatever a reconcile had not finished, the next start of the
operator (kopf's resume handler) observes and completes, without duplicates.

Why bounded: ``ThreadPoolExecutor`` threads are joined at interpreter exit, so
one AWS call stuck in retries would keep the Pod in Terminating until the
kubelet kills it. ``drain()`` says how many were left; the CLI then ends the
process with ``os._exit`` after flushing its logs.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable


class TrackingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ThreadPoolExecutor that knows which of its futures are not done yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def in_flight(self) -> int:
        with self._pending_lock:
            return len(self._pending)

    def drain(self, timeout: float) -> int:
        """Stop taking work, cancel what has not started, wait up to ``timeout`` s; returns how many are left."""
        self.shutdown(wait=False, cancel_futures=True)
        with self._pending_lock:
            pending = list(self._pending)
        if not pending:
            return 0
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return len(not_done)
