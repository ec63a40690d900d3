"""The pull-through cache stand-in speaks ECR's API exactly as botocore's model declares it.

Given a scripted scenario that drives the stand-in through every operation and
every error it can emit, then: each answer fits the operation's output shape
(member names and types, recursively), each error code is declared for the
operation, the input constraints it enforces are the model's, and required
input members are enforced. Runs the stand-in's core directly (no server).
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import botocore.parsers
import botocore.session
import pytest

from tests.harness import ptc_standin as ptc

# botocore's model against ours: the tripwire scripts/check-upstream runs on the newest botocore.
pytestmark = pytest.mark.upstream

ACCOUNT = "123456789012"
REGION = "us-east-1"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ns/docker-AbCdEf"
OTHER_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ns/other-AbCdEf"
MISSING_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ns/missing-AbCdEf"
DELETED_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ns/deleted-AbCdEf"
KMS_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ns/kms-AbCdEfG"
SECRETS = {
    SECRET_ARN: ptc.SecretInfo(SECRET_ARN),
    OTHER_ARN: ptc.SecretInfo(OTHER_ARN),
    DELETED_ARN: ptc.SecretInfo(DELETED_ARN, deleted=True),
    KMS_ARN: ptc.SecretInfo(KMS_ARN, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abc"),
}

MODEL = botocore.session.get_session().get_service_model("ecr")


def _standin() -> ptc.PullThroughCacheStandIn:
    return ptc.PullThroughCacheStandIn(
        secret_lookup=lambda account, region, arn: SECRETS.get(arn), clock=lambda: 1_700_000_000.0
    )


CUSTOM_ROLE = "arn:aws:iam::123456789012:role/ptc"
UPSTREAM_ROLE = "arn:aws:iam::210987654321:role/premium"


def _premium(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "ecr-premium.aws.com",
            "upstreamRegistry": "ecr-public-premium", "customRoleArn": CUSTOM_ROLE,
            "upstreamRoleArn": UPSTREAM_ROLE, **extra}


def _docker(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "registry-1.docker.io",
            "upstreamRegistry": "docker-hub", "credentialArn": SECRET_ARN, **extra}


# (operation, body, expected error code or None)
SCENARIO: list[tuple[str, dict[str, Any], str | None]] = [
    ("CreatePullThroughCacheRule", _docker("docker"), None),
    ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}, None),
    ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "myreg12.azurecr.io",
                                    "credentialArn": SECRET_ARN}, None),
    ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "ecr", "upstreamRegistryUrl":
                                    "210987654321.dkr.ecr.us-east-1.amazonaws.com", "customRoleArn":
                                    "arn:aws:iam::123456789012:role/ptc", "upstreamRepositoryPrefix": "team"}, None),
    ("CreatePullThroughCacheRule", _premium("premium"), None),
    ("CreatePullThroughCacheRule", _premium("p2", credentialArn=SECRET_ARN), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _premium("p2", customRoleArn=None), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _premium("p2", upstreamRoleArn=None), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _premium("p2", upstreamRoleArn="a" * 2049), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", _docker("dh", upstreamRoleArn=UPSTREAM_ROLE), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _docker("docker"), ptc.ALREADY_EXISTS),
    ("CreatePullThroughCacheRule", _docker("Bad_Prefix"), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", _docker("x"), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", _docker("a" * 31), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", _docker("dh", upstreamRegistry="nexus"), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", _docker("dh", credentialArn="arn:aws:secretsmanager:us-east-1:123456789012:"
                                           "secret:regaccess/ns/name-AbCdEf"), ptc.VALIDATION),
    ("CreatePullThroughCacheRule", {**_docker("dh"), "credentialArn": None}, ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "q2", "upstreamRegistryUrl": "quay.io",
                                    "credentialArn": SECRET_ARN}, ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _docker("dh", upstreamRegistry="github-container-registry"), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _docker("dh", upstreamRepositoryPrefix="lib"), ptc.INVALID_PARAMETER),
    ("CreatePullThroughCacheRule", _docker("dh", upstreamRegistryUrl="registry.example.com",
                                           upstreamRegistry=None), ptc.UNSUPPORTED_UPSTREAM),
    ("CreatePullThroughCacheRule", _docker("dh", credentialArn=MISSING_ARN), ptc.SECRET_NOT_FOUND),
    ("CreatePullThroughCacheRule", _docker("dh", credentialArn=DELETED_ARN), ptc.UNABLE_TO_ACCESS_SECRET),
    ("CreatePullThroughCacheRule", _docker("dh", credentialArn=KMS_ARN), ptc.UNABLE_TO_DECRYPT),
    ("CreatePullThroughCacheRule", {**_docker("dh"), "surprise": 1}, ptc.VALIDATION),
    # Five rules exist; 45 more reach the limit of 50, the 51st is refused.
    *[("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": f"bulk-{i:02d}", "upstreamRegistryUrl": "quay.io"},
       None) for i in range(ptc.MAX_RULES_PER_REGISTRY - 5)],
    ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "one-too-many", "upstreamRegistryUrl": "quay.io"},
     ptc.LIMIT_EXCEEDED),
    ("DescribePullThroughCacheRules", {}, None),
    ("DescribePullThroughCacheRules", {"ecrRepositoryPrefixes": ["docker"]}, None),
    ("DescribePullThroughCacheRules", {"maxResults": 1}, None),
    ("DescribePullThroughCacheRules", {"ecrRepositoryPrefixes": ["nothere"]}, ptc.NOT_FOUND),
    ("DescribePullThroughCacheRules", {"maxResults": 0}, ptc.VALIDATION),
    ("DescribePullThroughCacheRules", {"nextToken": "garbage"}, ptc.INVALID_PARAMETER),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "credentialArn": OTHER_ARN}, None),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "nothere", "credentialArn": OTHER_ARN}, ptc.NOT_FOUND),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker"}, ptc.INVALID_PARAMETER),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "upstreamRegistryUrl": "ghcr.io"}, ptc.VALIDATION),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "credentialArn": MISSING_ARN},
     ptc.SECRET_NOT_FOUND),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "credentialArn": DELETED_ARN},
     ptc.UNABLE_TO_ACCESS_SECRET),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "credentialArn": KMS_ARN}, ptc.UNABLE_TO_DECRYPT),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "premium", "customRoleArn": CUSTOM_ROLE,
                                    "upstreamRoleArn": "arn:aws:iam::210987654321:role/premium-2"}, None),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "premium", "upstreamRoleArn": UPSTREAM_ROLE},
     ptc.INVALID_PARAMETER),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "premium", "credentialArn": SECRET_ARN},
     ptc.INVALID_PARAMETER),
    ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker", "customRoleArn": CUSTOM_ROLE,
                                    "upstreamRoleArn": UPSTREAM_ROLE}, ptc.INVALID_PARAMETER),
    ("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "premium"}, None),
    ("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "docker"}, None),
    ("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "nothere"}, ptc.NOT_FOUND),
    ("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "-bad-"}, ptc.VALIDATION),
    ("DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "docker"}, None),
    ("DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "docker"}, ptc.NOT_FOUND),
    ("DeletePullThroughCacheRule", {}, ptc.VALIDATION),
]


def _run_scenario() -> list[tuple[str, dict[str, Any], str | None, dict[str, Any] | None]]:
    standin = _standin()
    results = []
    for operation, body, _ in SCENARIO:
        body = {k: v for k, v in body.items() if v is not None}
        try:
            answer = standin.handle(operation, body, account=ACCOUNT, region=REGION)
            results.append((operation, body, None, answer))
        except ptc.StandInError as error:
            results.append((operation, body, error.code, None))
    return results


RESULTS = _run_scenario()
_IDS = [f"{i:02d}-{op}-{expected or 'ok'}" for i, (op, _, expected) in enumerate(SCENARIO)]

_PY_TYPES = {
    "string": str, "boolean": bool, "timestamp": (int, float), "integer": int, "long": int,
    "float": float, "double": float,
}


def _shape_problems(value: Any, shape: Any, path: str) -> list[str]:
    """Everything in ``value`` that the botocore shape does not allow, recursively."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        problems = []
        for name, item in value.items():
            if name not in shape.members:
                problems.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                problems += _shape_problems(item, shape.members[name], f"{path}.{name}")
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in _shape_problems(item, shape.member, f"{path}[{i}]")]
    expected = _PY_TYPES[kind]
    if isinstance(value, bool) and kind != "boolean":
        return [f"{path}: a boolean where {kind} is declared"]
    if not isinstance(value, expected):
        return [f"{path}: {type(value).__name__} where {kind} is declared"]
    problems = []
    if kind == "string":
        meta = shape.metadata
        if "min" in meta and len(value) < meta["min"] or "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: length {len(value)} outside {meta.get('min')}-{meta.get('max')}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if meta.get("enum") and value not in meta["enum"]:
            problems.append(f"{path}: {value!r} not in the enum")
    return problems


def test_the_standin_implements_exactly_the_models_pull_through_cache_operations():
    in_model = {name for name in MODEL.operation_names if "PullThroughCache" in name}
    assert ptc.OPERATIONS == in_model


def test_the_scenario_reaches_every_error_the_standin_can_emit():
    emitted: dict[str, set[str]] = {}
    for operation, _, code, _ in RESULTS:
        if code:
            emitted.setdefault(operation, set()).add(code)
    for operation, codes in ptc.EMITTABLE_ERRORS.items():
        assert emitted.get(operation, set()) == set(codes), operation


@pytest.mark.parametrize("index", range(len(SCENARIO)), ids=_IDS)
def test_each_answer_is_the_expected_one(index):
    operation, _, expected = SCENARIO[index]
    assert RESULTS[index][2] == expected


@pytest.mark.parametrize("index", range(len(SCENARIO)), ids=_IDS)
def test_answers_fit_the_output_shape_and_errors_are_declared(index):
    operation, _, code, answer = RESULTS[index]
    op_model = MODEL.operation_model(operation)
    if code is None:
        assert _shape_problems(answer, op_model.output_shape, operation) == []
    else:
        assert code in {shape.name for shape in op_model.error_shapes}


@pytest.mark.parametrize("operation", sorted(ptc.OPERATIONS))
def test_every_emittable_error_is_declared_for_its_operation(operation):
    declared = {shape.name for shape in MODEL.operation_model(operation).error_shapes}
    assert ptc.EMITTABLE_ERRORS[operation] <= declared


@pytest.mark.parametrize("operation", sorted(ptc.OPERATIONS))
def test_the_input_constraints_are_the_models(operation):
    shape = MODEL.operation_model(operation).input_shape
    fields = ptc.input_fields(operation)
    assert set(fields) == set(shape.members)
    for name, member in shape.members.items():
        rule = fields[name]
        assert bool(rule.get("required")) == (name in shape.required_members), name
        if member.type_name == "list":
            assert rule["type"] == "list"
            assert (rule["min"], rule["max"]) == (member.metadata["min"], member.metadata["max"]), name
            member_rule, member = rule["member"], member.member
        else:
            member_rule = rule
        assert member_rule["type"] == member.type_name, name
        for key in ("min", "max", "pattern"):
            assert member_rule.get(key) == member.metadata.get(key), (name, key)
        assert tuple(member_rule.get("enum") or ()) == tuple(member.metadata.get("enum") or ()), name


def _valid_body(operation: str) -> dict[str, Any]:
    return {
        "CreatePullThroughCacheRule": _docker("fresh"),
        "DescribePullThroughCacheRules": {"ecrRepositoryPrefixes": ["docker"]},
        "UpdatePullThroughCacheRule": {"ecrRepositoryPrefix": "docker", "credentialArn": OTHER_ARN},
        "DeletePullThroughCacheRule": {"ecrRepositoryPrefix": "docker"},
        "ValidatePullThroughCacheRule": {"ecrRepositoryPrefix": "docker"},
    }[operation]


REQUIRED = [
    (operation, member)
    for operation in sorted(ptc.OPERATIONS)
    for member in MODEL.operation_model(operation).input_shape.required_members
]


@pytest.mark.parametrize(("operation", "member"), REQUIRED, ids=[f"{o}-{m}" for o, m in REQUIRED])
def test_required_input_members_are_enforced(operation, member):
    standin = _standin()
    standin.handle("CreatePullThroughCacheRule", _docker("docker"), account=ACCOUNT, region=REGION)
    body = _valid_body(operation)
    standin.handle(operation, dict(body), account=ACCOUNT, region=REGION)  # given: valid as is
    if operation == "DeletePullThroughCacheRule":
        standin.handle("CreatePullThroughCacheRule", _docker("docker"), account=ACCOUNT, region=REGION)
    body.pop(member)
    with pytest.raises(ptc.StandInError) as caught:
        standin.handle(operation, body, account=ACCOUNT, region=REGION)
    assert caught.value.code == ptc.VALIDATION


def _wire(standin: ptc.PullThroughCacheStandIn, operation: str, body: dict[str, Any]):
    payload = json.dumps(body).encode()
    environ = {
        "HTTP_X_AMZ_TARGET": f"{ptc.TARGET_PREFIX}.{operation}",
        "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/{REGION}/ecr/aws4_request, "
        "SignedHeaders=host, Signature=abc",
        "CONTENT_LENGTH": str(len(payload)),
        "wsgi.input": io.BytesIO(payload),
    }
    seen: dict[str, Any] = {}
    chunks = standin.wsgi_app(environ, lambda status, headers: seen.update(status=status, headers=headers))
    return int(seen["status"].split()[0]), dict(seen["headers"]), b"".join(chunks)


def test_botocore_parses_the_wire_answers_and_error_codes(monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)  # no moto import needed to pick the account
    standin = _standin()
    parser = botocore.parsers.create_parser("json")
    operation = MODEL.operation_model("CreatePullThroughCacheRule")
    for expected in (None, ptc.ALREADY_EXISTS):
        status, headers, body = _wire(standin, "CreatePullThroughCacheRule", _docker("docker"))
        parsed = parser.parse({"status_code": status, "headers": headers, "body": body}, operation.output_shape)
        if expected is None:
            assert status == 200 and parsed["ecrRepositoryPrefix"] == "docker"
            assert parsed["createdAt"].year >= 2023
        else:
            assert status == 400 and parsed["Error"]["Code"] == expected


@pytest.mark.parametrize(
    "answer",
    [
        {"bogus": "x"},
        {"ecrRepositoryPrefix": 7},
        {"createdAt": "yesterday"},
        {"upstreamRegistry": "nexus"},
        {"credentialArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns/n-AbCdEf"},
    ],
    ids=["unknown-member", "wrong-type", "timestamp-as-text", "outside-enum", "pattern"],
)
def test_the_shape_checker_itself_catches_bad_answers(answer):
    shape = MODEL.operation_model("CreatePullThroughCacheRule").output_shape
    assert _shape_problems(answer, shape, "answer")
