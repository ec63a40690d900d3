"""Structured logging with a redaction step.

structlog renders JSON lines (or console text) for the operator's own log
calls, and the same processor chain formats records from the standard
``logging`` module (kopf, botocore), so every line goes through ``redact``.

Redaction works two ways, belt and braces:
- by key: values under keys that name secret material (password, accessToken,
  SecretString, auth, token, ...) are replaced;
- by value: every credential the operator reads is registered with
  ``REDACTOR.remember()`` / ``replace()`` under the resource that uses it, and any
  string that contains it anywhere in an event (message, exception text, nested
  dicts) has it replaced by ``***``. Only the values of resources managed now are
  held: a rotation replaces them, a delete forgets them.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import threading
from typing import Any

import structlog

SECRET_KEYS = re.compile(
    r"(password|passwd|secret_?string|secretstring|access_?token|auth|token|credential_value|"
    r"dockerconfigjson|secretbinary)",
    re.IGNORECASE,
)
MASK = "***"


class Redactor:
    """Thread-safe set of known secret strings, scrubbed from everything logged.

    Values are indexed by their first ``MIN_LENGTH`` characters, and ``scrub``
    walks the text once, looking each position up in that index: the cost of
    a scrub depends on the text, not on how many secrets are known, and
    ``remember`` is a dict insert. (One regular expression of all values had to
    be compiled again for every new value: at 1,000 resources that was most of
    the operator's CPU time and hundreds of MB of cached patterns.) Same result
    as that expression: leftmost match first, the longest value at a position.

    Bounded: values belong to an owner (a managed resource, e.g.
    ``("RegistryCredential", namespace, name)``). ``replace(owner, values)`` swaps
    an owner's values for its current ones (a rotation drops the old password),
    ``forget(owner)`` drops them when the resource is deleted or leaves the watch,
    so the redactor holds the values of the resources managed now, not every value
    ever seen. A value two owners share is kept until both let it go. Values
    remembered without an owner (defence in depth at a call site that has none)
    go into a ring of the last ``UNOWNED_MAX``.
    """

    # Shorter strings would mask ordinary words; credentials are longer in practice.
    MIN_LENGTH = 4
    UNOWNED_MAX = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # value -> how many holders (owners, plus one for the unowned ring) keep it
        self._counts: dict[str, int] = {}
        self._owned: dict[Any, frozenset[str]] = {}
        self._unowned: collections.OrderedDict[str, None] = collections.OrderedDict()
        # first MIN_LENGTH characters -> values starting with them, longest first
        self._index: dict[str, tuple[str, ...]] = {}

    def _kept(self, values: Any) -> frozenset[str]:
        return frozenset(v for v in values if isinstance(v, str) and len(v) >= self.MIN_LENGTH)

    def _hold(self, value: str) -> None:
        # Under the lock. Replace, never mutate, the index's tuples: scrub reads without the lock.
        count = self._counts.get(value, 0)
        self._counts[value] = count + 1
        if count == 0:
            key = value[: self.MIN_LENGTH]
            self._index[key] = tuple(sorted((*self._index.get(key, ()), value), key=len, reverse=True))

    def _release(self, value: str) -> None:
        count = self._counts.get(value, 0) - 1
        if count > 0:
            self._counts[value] = count
            return
        self._counts.pop(value, None)
        key = value[: self.MIN_LENGTH]
        rest = tuple(v for v in self._index.get(key, ()) if v != value)
        if rest:
            self._index[key] = rest
        else:
            self._index.pop(key, None)

    def remember(self, *values: str, owner: Any = None) -> None:
        """Add values: to ``owner``'s (kept until replaced or forgotten), else to the bounded ring."""
        with self._lock:
            kept = self._kept(values)
            if owner is None:
                for value in kept:
                    if value in self._unowned:
                        self._unowned.move_to_end(value)
                        continue
                    self._unowned[value] = None
                    self._hold(value)
                    while len(self._unowned) > self.UNOWNED_MAX:
                        self._release(self._unowned.popitem(last=False)[0])
                return
            current = self._owned.get(owner, frozenset())
            for value in kept - current:
                self._hold(value)
            self._owned[owner] = current | kept

    def replace(self, owner: Any, values: Any) -> None:
        """``owner``'s values are now exactly ``values`` (new ones held before old ones go)."""
        with self._lock:
            current, new = self._owned.get(owner, frozenset()), self._kept(values)
            for value in new - current:
                self._hold(value)
            for value in current - new:
                self._release(value)
            if new:
                self._owned[owner] = new
            else:
                self._owned.pop(owner, None)

    def forget(self, owner: Any) -> None:
        """Drop ``owner``'s values (its resource is gone, or no longer this process's)."""
        with self._lock:
            for value in self._owned.pop(owner, frozenset()):
                self._release(value)

    def __len__(self) -> int:
        """How many distinct values are held (the bound the rotation benchmark checks)."""
        return len(self._counts)

    def scrub(self, text: str) -> str:
        index = self._index
        if not index or len(text) < self.MIN_LENGTH:
            return text
        width = self.MIN_LENGTH
        out: list[str] = []
        start = i = 0
        last = len(text) - width
        while i <= last:
            candidates = index.get(text[i:i + width])
            if candidates is not None:
                found = next((v for v in candidates if text.startswith(v, i)), None)
                if found is not None:
                    out.append(text[start:i])
                    out.append(MASK)
                    i += len(found)
                    start = i
                    continue
            i += 1
        if not out:
            return text
        out.append(text[start:])
        return "".join(out)

    def scrub_any(self, value: Any, key: str | None = None) -> Any:
        if key is not None and SECRET_KEYS.search(key) and isinstance(value, (str, bytes)):
            return MASK
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_any(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub_any(v) for v in value]
        return value


REDACTOR = Redactor()


def owner_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    """The redactor's owner of one resource's values (one spelling for every call site)."""
    return (kind, namespace, name)


# kopf attaches its whole settings object and internal flags to every record: noise.
_DROP_KEYS = ("settings", "k8s_skip")


def _drop_noise(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in _DROP_KEYS:
        event_dict.pop(key, None)
    return event_dict


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: scrub every value (by key and by known secret)."""
    return {k: REDACTOR.scrub_any(v, k if k not in ("event",) else None) for k, v in event_dict.items()}


def _scrub_rendered(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # Exception text is rendered late (format_exc_info); scrub it after rendering too.
    if "exception" in event_dict and isinstance(event_dict["exception"], str):
        event_dict["exception"] = REDACTOR.scrub(event_dict["exception"])
    return event_dict


class _QuietTimers(logging.Filter):
    """kopf logs every successful timer run at INFO; ours runs every few seconds per resource."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.name == "kopf.objects"
                    and str(record.msg).startswith("Timer ") and "succeeded" in str(record.msg))


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Configure structlog and stdlib logging once, for the whole process."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _drop_noise,
        _scrub_rendered,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_QuietTimers())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore at DEBUG logs request bodies (secret values!): never below INFO.
    for noisy in ("botocore", "boto3", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))


def get_logger(name: str = "regaccess", **bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name).bind(**bound)
