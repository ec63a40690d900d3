"""controller.aws.retries.veto_retry: which failures botocore may retry (pure)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from controller.aws.errors import ErrorClass, classify
from controller.aws.retries import OperatorShuttingDown, veto_retry

CLOSED = ConnectionClosedError(endpoint_url="http://127.0.0.1:1/")
READ_TIMEOUT = ReadTimeoutError(endpoint_url="http://127.0.0.1:1/")
NO_CONNECT = EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")


@pytest.mark.parametrize("service, operation, exc, closing, failed, vetoed", [
    ("ecs", "RegisterTaskDefinition", CLOSED, False, True, CLOSED),
    ("ecs", "RegisterTaskDefinition", READ_TIMEOUT, False, True, READ_TIMEOUT),
    ("batch", "RegisterJobDefinition", CLOSED, False, True, CLOSED),
    # Never sent: retrying cannot duplicate anything.
    ("ecs", "RegisterTaskDefinition", NO_CONNECT, False, True, None),
    # Refused by AWS (throttle/5xx answers): retried by botocore.
    ("ecs", "RegisterTaskDefinition", None, False, True, None),
    # Idempotent writes and reads keep botocore's retries.
    ("iam", "PutRolePolicy", CLOSED, False, True, None),
    ("ecs", "DescribeTaskDefinition", READ_TIMEOUT, False, True, None),
    # Shutting down: no retry of any failed attempt, a success passes.
    ("iam", "PutRolePolicy", None, True, True, OperatorShuttingDown),
    ("iam", "PutRolePolicy", None, True, False, None),
], ids=["register-closed", "register-read-timeout", "batch-closed", "register-never-sent", "register-refused",
        "idempotent-closed", "read-timeout-describe", "closing-failed", "closing-success"])
def test_veto_retry(service, operation, exc, closing, failed, vetoed):
    got = veto_retry(service, operation, exc, closing=closing, failed=failed)
    if isinstance(vetoed, type):
        assert isinstance(got, vetoed)
    else:
        assert got is vetoed


def test_shutting_down_is_classified_transient():
    found = classify(OperatorShuttingDown())
    assert found.error_class is ErrorClass.TRANSIENT and found.retryable
    assert "shutting down" in found.message
