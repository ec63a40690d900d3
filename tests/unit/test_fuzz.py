"""Hostile input for the pure validators and the Secret parsers (hypothesis).

Properties:
- ``validate_registry_credential`` / ``validate_cross_account`` never raise; they
  return (resolved, []) or (None, problems), every problem with a known
  condition reason, a field path under ``spec`` and a message.
- ``parse_dockerconfigjson`` / ``read_credential`` return a Credential or raise
  ``SourceError`` (with a known reason) and nothing else; no error message
  contains the password, in clear or base64.

Bounded: a fixed number of examples per property, no deadline (the machine is
shared), derandomized so CI runs are reproducible.
"""

from __future__ import annotations

import base64
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api import reasons
from controller.api.validation import validate_registry_credential
from controller.api.validation_xrepo import validate_cross_account
from controller.sources import Credential, SourceError, parse_dockerconfigjson, read_credential

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KNOWN_REASONS = set(reasons.ALL_REASONS)

# ---------------------------------------------------------------- JSON-ish values

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)


def near(valid: dict) -> st.SearchStrategy[dict]:
    """A valid spec with some fields replaced by anything, or removed, or extra ones added."""
    def mutate(draw_value, path_choice, drop, extra_key):
        spec = json.loads(json.dumps(valid))
        target = spec
        keys = path_choice
        for key in keys[:-1]:
            if isinstance(target, dict) and isinstance(target.get(key), dict):
                target = target[key]
        last = keys[-1]
        if isinstance(target, dict):
            if drop:
                target.pop(last, None)
            else:
                target[last] = draw_value
        if extra_key:
            spec[extra_key] = draw_value
        return spec
    return st.builds(mutate, json_values, st.sampled_from(_paths(valid)), st.booleans(),
                     st.one_of(st.none(), st.text(min_size=1, max_size=8)))


def _paths(obj, prefix=()):
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    return out or [("x",)]


VALID_RC = {
    "source": {"secretRef": {"name": "hub"}, "registry": "ghcr.io", "usernameKey": "u", "passwordKey": "p"},
    "secret": {"name": "team/hub", "kmsKeyId": "alias/x", "description": "d", "tags": {"a": "b"},
               "recoveryWindowInDays": 7},
    "region": "us-east-1", "roleArn": "arn:aws:iam::123456789012:role/x", "externalId": "ext-1",
    "grants": {"executionRoles": ["exec", "arn:aws:iam::123456789012:role/other"], "policyName": "p"},
    "consumers": {"ecsTaskDefinitions": [{"family": "web", "containers": ["app"]}],
                  "batchJobDefinitions": [{"name": "job"}]},
    "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"},
    "deletionPolicy": "Delete", "driftPolicy": "Report", "adoptExisting": False,
}
VALID_XREPO = {
    "region": "us-east-1", "repositories": ["team/app", "base"],
    "grants": [{"principals": [{"accountId": "210987654321"}, {"roleArn": "arn:aws:iam::210987654321:role/ci"},
                               {"organizationId": "o-abcdefghij"}], "access": "PullPush"}],
    "deletionPolicy": "Retain", "driftPolicy": "Remediate",
}
k8s_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?\Z")


def _check(result) -> None:
    resolved, problems = result
    if resolved is None:
        assert problems, "rejected without a problem"
        for problem in problems:
            assert problem.reason in KNOWN_REASONS, problem
            assert problem.field.startswith("spec"), problem
            assert problem.message, problem
    else:
        assert problems == []


@FUZZ
@given(spec=st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(VALID_RC)), json_values, max_size=6),
                      near(VALID_RC)), namespace=k8s_names, name=k8s_names)
def test_validate_registry_credential_never_raises(spec, namespace, name):
    _check(validate_registry_credential(namespace, name, spec if isinstance(spec, dict) else {"x": spec},
                                        cluster_id="c"))


@FUZZ
@given(spec=st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(VALID_XREPO)), json_values, max_size=6),
                      near(VALID_XREPO)), namespace=k8s_names, name=k8s_names)
def test_validate_cross_account_never_raises(spec, namespace, name):
    _check(validate_cross_account(namespace, name, spec if isinstance(spec, dict) else {"x": spec}, cluster_id="c"))


def test_the_valid_seeds_are_valid():
    # The mutations start from valid specs: if these broke, the fuzzing above would test little.
    assert validate_registry_credential("ns", "hub", {k: v for k, v in VALID_RC.items() if k != "pullThroughCache"},
                                        cluster_id="c")[1] == []
    assert validate_cross_account("ns", "x", VALID_XREPO, cluster_id="c")[1] == []


# ---------------------------------------------------------------- Secret parsers

# Recognisable passwords: a marker no message template contains, then anything.
passwords = st.builds(lambda tail: "PW§" + tail, st.text(min_size=4, max_size=30))
usernames = st.text(alphabet=string.ascii_letters + string.digits + "._-@", min_size=1, max_size=20)
registries = st.sampled_from(["ghcr.io", "https://index.docker.io/v1/", "docker.io", "quay.io",
                              "registry.gitlab.com", "x.azurecr.io", "HTTP://GHCR.IO/v2", ""])


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


@st.composite
def docker_entries(draw, password: str):
    user = draw(usernames)
    shape = draw(st.sampled_from(["userpass", "auth", "auth-no-colon", "auth-not-b64", "both-empty", "junk",
                                  "auth-and-empty-user"]))
    if shape == "userpass":
        return {"username": user, "password": password}
    if shape == "auth":
        return {"auth": b64(f"{user}:{password}")}
    if shape == "auth-no-colon":
        return {"auth": b64(user + password.replace(":", ""))}
    if shape == "auth-not-b64":
        return {"auth": password}
    if shape == "both-empty":
        return {"username": "", "password": password, "auth": ""}
    if shape == "auth-and-empty-user":
        return {"username": "", "password": "", "auth": b64(":" + password)}
    return draw(json_values)


@st.composite
def docker_documents(draw):
    password = draw(passwords)
    auths = draw(st.dictionaries(registries, docker_entries(password), max_size=3))
    wrapper = draw(st.sampled_from(["auths", "no-auths", "list", "not-json", "auths-list"]))
    if wrapper == "auths":
        doc = json.dumps({"auths": auths})
    elif wrapper == "no-auths":
        doc = json.dumps({"credsStore": password, "other": auths})
    elif wrapper == "list":
        doc = json.dumps([auths])
    elif wrapper == "auths-list":
        doc = json.dumps({"auths": list(auths.values())})
    else:
        doc = "{" + json.dumps(auths)[:-1] + password
    return doc, password


def _assert_no_password(text: str, password: str) -> None:
    assert password not in text
    assert b64(password) not in text
    assert password.encode("utf-8", "surrogatepass").hex() not in text


@FUZZ
@given(document=docker_documents(), registry=st.one_of(st.none(), registries), secret_name=k8s_names)
def test_parse_dockerconfigjson_only_source_errors_and_no_password(document, registry, secret_name):
    doc, password = document
    try:
        credential = parse_dockerconfigjson(doc, registry, secret_name)
    except SourceError as error:
        assert error.reason in KNOWN_REASONS
        _assert_no_password(str(error), password)
        _assert_no_password(repr(error), password)
    else:
        assert isinstance(credential, Credential)
        assert credential.username and credential.password
        _assert_no_password(repr(credential), password)
        _assert_no_password(str(credential), password)


@FUZZ
@given(doc=st.text(max_size=200), registry=st.one_of(st.none(), st.text(max_size=30)))
def test_parse_dockerconfigjson_arbitrary_text(doc, registry):
    try:
        parse_dockerconfigjson(doc, registry, "s")
    except SourceError as error:
        assert error.reason in KNOWN_REASONS


def test_parse_dockerconfigjson_deep_nesting_is_a_source_error():
    doc = "[" * 100_000 + "]" * 100_000
    try:
        parse_dockerconfigjson(doc, None, "s")
    except SourceError as error:
        assert error.reason == reasons.SOURCE_SECRET_INVALID


@st.composite
def secrets(draw):
    password = draw(passwords)
    secret_type = draw(st.sampled_from(["kubernetes.io/basic-auth", "kubernetes.io/dockerconfigjson", "Opaque",
                                        None, "", "example.com/custom"]))
    data: dict = {}
    if draw(st.booleans()):
        data["username"] = draw(st.one_of(st.builds(b64, usernames), st.text(max_size=10), st.just("")))
    if draw(st.booleans()):
        data["password"] = draw(st.one_of(st.just(b64(password)), st.just(password), st.just(""),
                                          st.just(base64.b64encode(b"\xff\xfe" + password.encode()).decode())))
    if draw(st.booleans()):
        doc, _ = draw(docker_documents())
        data[".dockerconfigjson"] = draw(st.sampled_from([b64(doc), doc]))
    data.update(draw(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=2)))
    meta = {"name": draw(k8s_names)} if draw(st.booleans()) else {}
    body = {"type": secret_type, "metadata": meta, "data": data}
    if draw(st.integers(0, 9)) == 0:
        body["data"] = draw(json_values)  # not a dict at all
    return body, password


@FUZZ
@given(secret=secrets(), registry=st.one_of(st.none(), registries),
       username_key=st.sampled_from(["username", "user", ".dockerconfigjson"]),
       password_key=st.sampled_from(["password", "token", "username"]))
def test_read_credential_only_source_errors_and_no_password(secret, registry, username_key, password_key):
    body, password = secret
    try:
        credential = read_credential(body, registry=registry, username_key=username_key, password_key=password_key)
    except SourceError as error:
        assert error.reason in KNOWN_REASONS
        _assert_no_password(str(error), password)
    else:
        assert isinstance(credential, Credential)
        _assert_no_password(repr(credential), password)
