"""``controller.source_index``: what the operator keeps of source Secrets (a digest, never data),
the opt-in rule, and the RegistryCredential reconcile's use of both (no AWS: a refused pass
stops before the first client is asked for)."""

from __future__ import annotations

import base64

import pytest

from controller import source_index
from controller.api import reasons
from controller.reconcile import registry_credential as rc
from controller.settings import Settings

PASSWORD = "s3cr3t-password-value"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(labels=None, annotations=None, password=PASSWORD, rv="7", secret_type="kubernetes.io/basic-auth"):
    meta = {"name": "hub", "namespace": "team-a", "resourceVersion": rv}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "type": secret_type, "metadata": meta,
            "data": {"username": b64("robot"), "password": b64(password), "unrelated": b64("x" * 40)}}


RULE = source_index.parse_opt_in(source_index.DEFAULT_OPT_IN)


def test_entry_keeps_digest_and_opt_in_mark_never_data():
    body = secret(labels={"regaccess.io/source": "true", "team": "a"})
    entry = source_index.entry("team-a", "hub", body, RULE)
    text = repr(entry)
    assert "data" not in entry
    assert b64(PASSWORD) not in text and PASSWORD not in text
    assert entry["metadata"] == {"name": "hub", "namespace": "team-a", "resourceVersion": "7",
                                 "labels": {"regaccess.io/source": "true"}}
    assert len(entry["digest"]) == 64 and source_index.opted_in(RULE, entry)


def test_digest_follows_the_data_a_credential_is_read_from():
    a = source_index.digest("kubernetes.io/basic-auth", secret()["data"])
    rotated = source_index.digest("kubernetes.io/basic-auth", secret(password="another-password")["data"])
    other_key = dict(secret()["data"], unrelated=b64("changed"))
    assert a != rotated
    assert a == source_index.digest("kubernetes.io/basic-auth", other_key)   # not read, not in the digest
    assert a != source_index.digest("Opaque", secret()["data"])             # the type is part of it


@pytest.mark.parametrize(("text", "expected"), [
    ("regaccess.io/source=true", source_index.OptIn("regaccess.io/source", "true")),
    ("annotation:example.com/copy-to-aws=yes", source_index.OptIn("example.com/copy-to-aws", "yes", True)),
    ("none", None), ("NONE", None),
])
def test_parse_opt_in(text, expected):
    assert source_index.parse_opt_in(text) == expected


@pytest.mark.parametrize("text", ["", "regaccess.io/source", "=true", "a=", "a=b,c=d", "!a", "annotation:"])
def test_parse_opt_in_refuses_what_is_not_one_key_and_value(text):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        source_index.parse_opt_in(text)


def test_opted_in_label_annotation_and_no_rule():
    annotated = source_index.OptIn("copy", "yes", annotation=True)
    assert source_index.opted_in(RULE, secret(labels={"regaccess.io/source": "true"}))
    assert not source_index.opted_in(RULE, secret(labels={"regaccess.io/source": "false"}))
    assert not source_index.opted_in(RULE, secret(annotations={"regaccess.io/source": "true"}))
    assert source_index.opted_in(annotated, secret(annotations={"copy": "yes"}))
    assert not source_index.opted_in(annotated, secret(labels={"copy": "yes"}))
    assert source_index.opted_in(None, secret())


def test_settings_default_is_the_label_and_a_bad_value_is_refused():
    import argparse

    from controller.settings import add_run_arguments, settings_from_args

    assert Settings().opt_in == RULE
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, environ={})
    assert settings_from_args(parser.parse_args([]), environ={}).opt_in == RULE
    assert settings_from_args(parser.parse_args(["--source-secret-opt-in", "none"]), environ={}).opt_in is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--source-secret-opt-in", "regaccess.io/source"])


def test_read_lists_by_name_and_answers_none_when_absent():
    asked = []

    def get(path):
        asked.append(path)
        return {"items": [secret()]} if "team-a" in path else {"items": []}

    assert source_index.read(get, "team-a", "hub")["data"]["password"] == b64(PASSWORD)
    assert source_index.read(get, "team-b", "hub") is None
    assert asked[0] == "/api/v1/namespaces/team-a/secrets?fieldSelector=metadata.name%3Dhub"


SPEC = {"source": {"secretRef": {"name": "hub"}}}


def no_aws(*_args):
    raise AssertionError("a refused pass must not ask for an AWS client")


def request(entry, read):
    return rc.Request("team-a", "hub", 1, SPEC, {}, entry, "default", read_source=read, source_opt_in=RULE)


def test_a_secret_without_the_opt_in_is_never_read_and_nothing_is_written():
    reads = []
    entry = source_index.entry("team-a", "hub", secret(), RULE)
    result = rc.reconcile(request(entry, lambda: reads.append(1) or secret()), no_aws)
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reasons.SOURCE_NOT_OPTED_IN)
    assert "regaccess.io/source=true" in ready["message"] and reads == []
    assert PASSWORD not in repr(result.status)


def test_the_opt_in_is_judged_again_on_the_secret_read():
    labelled = secret(labels={"regaccess.io/source": "true"})
    entry = source_index.entry("team-a", "hub", labelled, RULE)
    result = rc.reconcile(request(entry, lambda: secret(rv="8")), no_aws)   # the label went meanwhile
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.SOURCE_NOT_OPTED_IN
    assert result.status["sourceResourceVersion"] == "8"


def test_a_secret_gone_when_read_is_not_found():
    entry = source_index.entry("team-a", "hub", secret(labels={"regaccess.io/source": "true"}), RULE)
    result = rc.reconcile(request(entry, lambda: None), no_aws)
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.SOURCE_SECRET_NOT_FOUND
