"""Structured logging with a redaction step.

structlog renders JSON lines (or console text) for the operator's own log
calls, and the same processor chain formats records from the standard
``logging`` module (kopf, botocore), so every line goes through ``redact``.

Redaction works two ways, belt and braces:
- by key: values under keys that name secret material (password, accessToken,
  SecretString, auth, token, ...) are replaced;
- by value: every credential the operator reads is registered with
  ``REDACTOR.remember()``, and any string that contains it anywhere in an event
  (message, exception text, nested dicts) has it replaced by ``***``.
"""

from __future__ import annotations

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
    """

    # Shorter strings would mask ordinary words; credentials are longer in practice.
    MIN_LENGTH = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        # first MIN_LENGTH characters -> values starting with them, longest first
        self._index: dict[str, tuple[str, ...]] = {}

    def remember(self, *values: str) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= self.MIN_LENGTH and value not in self._values:
                    self._values.add(value)
                    key = value[: self.MIN_LENGTH]
                    # Replace, never mutate: scrub reads the index without the lock.
                    self._index[key] = tuple(sorted((*self._index.get(key, ()), value), key=len, reverse=True))

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
