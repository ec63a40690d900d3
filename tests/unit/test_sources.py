"""Reading a credential out of the three Secret shapes (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from controller.api import reasons
from controller.sources import SourceError, needed_data, parse_dockerconfigjson, read_credential

PW = "s3cr3t-Value-XYZ"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(type_: str, data: dict[str, str]) -> dict:
    return {"type": type_, "metadata": {"name": "src"}, "data": {k: b64(v) for k, v in data.items()}}


def dockercfg(auths: dict) -> dict:
    return secret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": json.dumps({"auths": auths})})


OK_CASES = {
    "basic-auth": (secret("kubernetes.io/basic-auth", {"username": "u", "password": PW}), {}, ("u", PW)),
    "basic-auth-ignores-custom-keys": (
        secret("kubernetes.io/basic-auth", {"username": "u", "password": PW}),
        {"username_key": "x", "password_key": "y"}, ("u", PW)),
    "opaque-custom-keys": (secret("Opaque", {"user": "u", "token": PW}),
                           {"username_key": "user", "password_key": "token"}, ("u", PW)),
    "opaque-default-keys": (secret("Opaque", {"username": "u", "password": PW}), {}, ("u", PW)),
    "no-type-is-opaque": ({"metadata": {"name": "s"}, "data": {"username": b64("u"), "password": b64(PW)}}, {}, ("u", PW)),
    "dockercfg-single-entry": (dockercfg({"ghcr.io": {"username": "u", "password": PW}}), {}, ("u", PW)),
    "dockercfg-auth-field": (dockercfg({"ghcr.io": {"auth": b64("u:" + PW)}}), {}, ("u", PW)),
    "dockercfg-auth-with-colon-in-password": (dockercfg({"ghcr.io": {"auth": b64("u:a:b")}}), {}, ("u", "a:b")),
    "dockercfg-chosen-entry": (dockercfg({"ghcr.io": {"auth": b64("g:1111")}, "quay.io": {"auth": b64("q:" + PW)}}),
                               {"registry": "quay.io"}, ("q", PW)),
    "dockercfg-docker-hub-aliases": (dockercfg({"https://index.docker.io/v1/": {"auth": b64("d:" + PW)}}),
                                     {"registry": "docker.io"}, ("d", PW)),
    "dockercfg-scheme-and-path-ignored": (dockercfg({"https://ghcr.io/": {"auth": b64("g:" + PW)}}),
                                          {"registry": "ghcr.io"}, ("g", PW)),
}


@pytest.mark.parametrize("body, kwargs, expected", OK_CASES.values(), ids=OK_CASES.keys())
def test_reads_credential(body, kwargs, expected):
    args = {"registry": None, "username_key": "username", "password_key": "password", **kwargs}
    credential = read_credential(body, **args)
    assert (credential.username, credential.password) == expected
    assert PW not in repr(credential) and PW not in str(credential)


BAD_CASES = {
    "missing-password-key": (secret("Opaque", {"username": "u"}), {}, reasons.SOURCE_KEY_MISSING),
    "empty-password": (secret("Opaque", {"username": "u", "password": ""}), {}, reasons.SOURCE_KEY_MISSING),
    "not-base64": ({"type": "Opaque", "metadata": {"name": "s"}, "data": {"username": "!!", "password": "!!"}}, {},
                   reasons.SOURCE_SECRET_INVALID),
    "dockercfg-not-json": (secret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{" + PW}), {},
                           reasons.SOURCE_SECRET_INVALID),
    "dockercfg-no-auths": (secret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{}"}), {},
                           reasons.SOURCE_SECRET_INVALID),
    "dockercfg-ambiguous": (dockercfg({"a.io": {"auth": b64("a:" + PW)}, "b.io": {"auth": b64("b:" + PW)}}), {},
                            reasons.SOURCE_REGISTRY_NOT_FOUND),
    "dockercfg-registry-absent": (dockercfg({"a.io": {"auth": b64("a:" + PW)}}), {"registry": "b.io"},
                                  reasons.SOURCE_REGISTRY_NOT_FOUND),
    "dockercfg-auth-without-colon": (dockercfg({"a.io": {"auth": b64(PW)}}), {}, reasons.SOURCE_KEY_MISSING),
    "dockercfg-entry-not-object": (dockercfg({"a.io": PW}), {}, reasons.SOURCE_SECRET_INVALID),
    "dockercfg-key-missing": (secret("kubernetes.io/dockerconfigjson", {}), {}, reasons.SOURCE_KEY_MISSING),
}


@pytest.mark.parametrize("body, kwargs, reason", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_bad_sources_name_a_reason_and_never_the_value(body, kwargs, reason):
    args = {"registry": None, "username_key": "username", "password_key": "password", **kwargs}
    with pytest.raises(SourceError) as info:
        read_credential(body, **args)
    assert info.value.reason == reason
    assert PW not in info.value.message and PW not in str(info.value)
    assert "src" in info.value.message or "s" in info.value.message


def test_parse_dockerconfigjson_rejects_deep_nesting_without_crashing():
    with pytest.raises(SourceError):
        parse_dockerconfigjson("[" * 100_000, None, "x")


@pytest.mark.parametrize("body, kwargs, expected", OK_CASES.values(), ids=OK_CASES.keys())
def test_the_index_keeps_what_the_credential_is_read_from(body, kwargs, expected):
    # What handlers.source_secrets stores: the same credential comes out of the trimmed data.
    kept = {**body, "data": needed_data(body.get("type"), body["data"])}
    assert (read_credential(kept, registry=kwargs.get("registry"), username_key=kwargs.get("username_key", "username"),
                            password_key=kwargs.get("password_key", "password"))) == read_credential(
        body, registry=kwargs.get("registry"), username_key=kwargs.get("username_key", "username"),
        password_key=kwargs.get("password_key", "password"))


@pytest.mark.parametrize(
    "type_, data, kept",
    [
        ("kubernetes.io/basic-auth", {"username": "u", "password": "p", "ca.crt": "c", "notes": "n"},
         {"username", "password"}),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{}", "extra": "x"}, {".dockerconfigjson"}),
        # Opaque: the keys are named by the referencing resources, which the index cannot know.
        ("Opaque", {"user": "u", "token": "t", "other": "o"}, {"user", "token", "other"}),
        (None, {"a": "1"}, {"a"}),
    ],
    ids=["basic-auth-drops-other-keys", "dockercfg-drops-other-keys", "opaque-keeps-all", "no-type-is-opaque"],
)
def test_needed_data(type_, data, kept):
    assert set(needed_data(type_, data)) == kept
