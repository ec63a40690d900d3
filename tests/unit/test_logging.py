"""Redaction: secrets never reach a log line, whatever path they take."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from controller import logging as rlogging

SECRET = "hunter2-Secret-Value"


@pytest.fixture
def stream():
    out = io.StringIO()
    rlogging.configure("DEBUG", "json", stream=out)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_known_values_are_scrubbed_everywhere(stream):
    rlogging.REDACTOR.remember(SECRET)
    log = rlogging.get_logger("t", resource="x")
    log.info(f"message with {SECRET}", nested={"a": [f"pre-{SECRET}-post"]})
    logging.getLogger("kopf.objects").warning("stdlib %s", SECRET)
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count(rlogging.MASK) >= 4
    assert [entry["event"] for entry in lines(stream)][:2] == ["message with ***", "stdlib ***"]


@pytest.mark.parametrize("key", ["password", "accessToken", "SecretString", "auth", "dockerconfigjson"])
def test_secret_keys_are_masked(stream, key):
    rlogging.get_logger("t").info("event", **{key: "not-remembered-value"})
    assert "not-remembered-value" not in stream.getvalue()


def test_short_values_are_not_remembered():
    redactor = rlogging.Redactor()
    redactor.remember("ab")
    assert redactor.scrub("ab cd") == "ab cd"
    redactor.remember("abcd")
    assert redactor.scrub("xabcdx") == "x***x"


def test_timer_success_lines_are_filtered(stream):
    logging.getLogger("kopf.objects").info("Timer 'watch' succeeded.")
    logging.getLogger("kopf.objects").info("Handler 'sync' succeeded.")
    events = [entry["event"] for entry in lines(stream)]
    assert events == ["Handler 'sync' succeeded."]
