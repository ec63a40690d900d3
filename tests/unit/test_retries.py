"""controller.aws.retries and errors.outcome_unknown: which failures botocore may retry (pure).

Given an operation and the failure of one attempt, when the retry rule is asked,
then a non-idempotent write whose outcome is unknown is never retried by
botocore, and everything else keeps botocore's own retry rules.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from controller.aws.errors import ErrorClass, classify, outcome_unknown
from controller.aws.retries import (
    NON_IDEMPOTENT,
    RETRY_SAFE_WRITES,
    OperatorShuttingDown,
    retried_by_botocore,
    veto_retry,
)

URL = "http://127.0.0.1:1/"
CLOSED = ConnectionClosedError(endpoint_url=URL)
READ_TIMEOUT = ReadTimeoutError(endpoint_url=URL)
NO_CONNECT = EndpointConnectionError(endpoint_url=URL)
CONNECT_TIMEOUT = ConnectTimeoutError(endpoint_url=URL)


def answer(status: int, code: str, operation: str = "RegisterTaskDefinition") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


THROTTLED = answer(400, "ThrottlingException")
TOO_MANY = answer(429, "TooManyRequestsException")
INTERNAL = answer(500, "InternalFailure")
UNAVAILABLE = answer(503, "ServiceUnavailable")
ECS_SERVER = answer(500, "ServerException")
INVALID = answer(400, "ClientException")
DENIED = answer(403, "AccessDeniedException")
LIMIT = answer(400, "LimitExceededException")

OUTCOME_CASES = {
    "throttle-answer": (THROTTLED, True),
    "429-answer": (TOO_MANY, True),
    "500-answer": (INTERNAL, True),
    "503-answer": (UNAVAILABLE, True),
    "ecs-server-exception": (ECS_SERVER, True),
    "connection-closed": (CLOSED, True),
    "read-timeout": (READ_TIMEOUT, True),
    "response-stream-broken": (ResponseStreamingError(error="reset"), True),
    "python-timeout": (TimeoutError("timed out"), True),
    "python-reset": (ConnectionResetError("reset"), True),
    "validation-answer": (INVALID, False),
    "access-denied-answer": (DENIED, False),
    "limit-answer": (LIMIT, False),
    "could-not-connect": (NO_CONNECT, False),
    "connect-timeout": (CONNECT_TIMEOUT, False),
    "tls-handshake": (SSLError(endpoint_url=URL, error="handshake"), False),
    "python-refused": (ConnectionRefusedError("refused"), False),
    "no-credentials": (NoCredentialsError(), False),
    "bad-parameters": (ParamValidationError(report="x"), False),
    "shutting-down": (OperatorShuttingDown(), False),
    "not-an-aws-error": (ValueError("a bug"), False),
}


@pytest.mark.parametrize("error, unknown", OUTCOME_CASES.values(), ids=OUTCOME_CASES.keys())
def test_outcome_unknown(error, unknown):
    assert outcome_unknown(error) is unknown


WRITES_AND_READS = [
    *[(service, operation, False) for service, operation in sorted(NON_IDEMPOTENT)],
    *[(service, operation, True) for service, operation in sorted(RETRY_SAFE_WRITES)],
    ("ecs", "DescribeTaskDefinition", True),
    ("batch", "DescribeJobDefinitions", True),
    ("secretsmanager", "DescribeSecret", True),
]


@pytest.mark.parametrize("failure", [THROTTLED, INTERNAL, UNAVAILABLE, CLOSED, READ_TIMEOUT],
                         ids=["throttle", "500", "503", "closed", "read-timeout"])
@pytest.mark.parametrize("service, operation, retried", WRITES_AND_READS,
                         ids=[f"{s}:{o}" for s, o, _ in WRITES_AND_READS])
def test_only_non_idempotent_writes_lose_botocore_retries_after_an_unknown_outcome(service, operation, retried,
                                                                                  failure):
    assert retried_by_botocore(service, operation, failure) is retried


@pytest.mark.parametrize("service, operation", sorted(NON_IDEMPOTENT), ids=[o for _, o in sorted(NON_IDEMPOTENT)])
@pytest.mark.parametrize("failure", [NO_CONNECT, CONNECT_TIMEOUT], ids=["could-not-connect", "connect-timeout"])
def test_a_register_that_never_left_is_still_retried(service, operation, failure):
    assert retried_by_botocore(service, operation, failure)


def test_the_two_tables_do_not_overlap_and_every_safe_write_says_why():
    assert not NON_IDEMPOTENT & set(RETRY_SAFE_WRITES)
    assert all(len(reason) > 20 for reason in RETRY_SAFE_WRITES.values())


@pytest.mark.parametrize("service, operation, failure, closing, failed, vetoed", [
    ("ecs", "RegisterTaskDefinition", CLOSED, False, True, CLOSED),
    ("ecs", "RegisterTaskDefinition", READ_TIMEOUT, False, True, READ_TIMEOUT),
    ("batch", "RegisterJobDefinition", CLOSED, False, True, CLOSED),
    ("ecs", "RegisterTaskDefinition", THROTTLED, False, True, THROTTLED),
    ("ecs", "RegisterTaskDefinition", UNAVAILABLE, False, True, UNAVAILABLE),
    ("batch", "RegisterJobDefinition", INTERNAL, False, True, INTERNAL),
    # Never sent: retrying cannot duplicate anything.
    ("ecs", "RegisterTaskDefinition", NO_CONNECT, False, True, None),
    # A definite refusal: botocore's own rules (which do not retry it) decide.
    ("ecs", "RegisterTaskDefinition", INVALID, False, True, None),
    # Idempotent writes and reads keep botocore's retries.
    ("iam", "PutRolePolicy", CLOSED, False, True, None),
    ("secretsmanager", "PutSecretValue", UNAVAILABLE, False, True, None),
    ("ecs", "DescribeTaskDefinition", READ_TIMEOUT, False, True, None),
    # A success is never vetoed.
    ("ecs", "RegisterTaskDefinition", None, False, False, None),
    # Shutting down: no retry of any failed attempt, a success passes.
    ("iam", "PutRolePolicy", None, True, True, OperatorShuttingDown),
    ("iam", "PutRolePolicy", None, True, False, None),
], ids=["register-closed", "register-read-timeout", "batch-closed", "register-throttled", "register-503",
        "batch-500", "register-never-sent", "register-invalid", "idempotent-closed", "put-value-503",
        "read-timeout-describe", "register-success", "closing-failed", "closing-success"])
def test_veto_retry(service, operation, failure, closing, failed, vetoed):
    got = veto_retry(service, operation, failure, closing=closing, failed=failed)
    if isinstance(vetoed, type):
        assert isinstance(got, vetoed)
    else:
        assert got is vetoed


def test_shutting_down_is_classified_transient():
    found = classify(OperatorShuttingDown())
    assert found.error_class is ErrorClass.TRANSIENT and found.retryable
    assert "shutting down" in found.message


@pytest.mark.parametrize("service, operation", [("ecs", "RegisterTaskDefinition"), ("batch", "RegisterJobDefinition"),
                                                ("secretsmanager", "PutSecretValue")],
                         ids=["ecs", "batch", "secretsmanager"])
def test_the_veto_runs_before_botocores_retry_handler(monkeypatch, service, operation):
    """Else botocore's handler would spend retry quota on an attempt the veto then refuses.

    Reads botocore's handler order (a private structure): a botocore upgrade that changes
    how handlers are ordered fails here, not silently in production."""
    import boto3

    from controller.aws.clients import ClientFactory

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    factory = ClientFactory(session=boto3.session.Session(region_name="us-east-1"))
    client = factory.client(service)
    event = f"needs-retry.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    handlers = list(client.meta.events._emitter._handlers.prefix_search(event))  # noqa: SLF001
    names = [getattr(h, "__qualname__", "") for h in handlers]
    assert names[0] == "Gate.needs_retry" and "RetryHandler.needs_retry" in names[1:], names


def test_a_client_is_handed_out_with_its_paginator_model_loaded(monkeypatch):
    """botocore loads the paginator model on the first get_paginator, without a lock: in a
    burst of creates every worker thread loaded it again. The factory loads it once.

    Counts botocore's loader calls (a private attribute): a botocore upgrade that moves the
    load fails here, not as a silent CPU regression in the benchmark."""
    import concurrent.futures

    import boto3

    from controller.aws.clients import ClientFactory

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = ClientFactory(session=boto3.session.Session(region_name="us-east-1")).client("iam")
    loads = []
    original = client._loader.load_service_model  # noqa: SLF001

    def counting(service_name, type_name, api_version=None):
        loads.append(type_name)
        return original(service_name, type_name, api_version)

    monkeypatch.setattr(client._loader, "load_service_model", counting)  # noqa: SLF001
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pagers = list(pool.map(lambda _: client.get_paginator("list_role_policies"), range(16)))
    assert len(pagers) == 16 and loads == []
