"""The one AWS error classifier."""

from __future__ import annotations

import json as _json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from controller.aws.errors import ErrorClass, classify, clean_message, outcome_unknown
from controller.kubeclient import ApiError
from controller.reconcile import loop


def client_error(code: str, status: int = 400, message: str = "boom", op: str = "Op") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


CASES = {
    "throttling": (client_error("ThrottlingException"), ErrorClass.THROTTLED, True),
    "iam-throttling": (client_error("Throttling"), ErrorClass.THROTTLED, True),
    "too-many-requests": (client_error("TooManyRequestsException", 429), ErrorClass.THROTTLED, True),
    "bare-429": (client_error("Whatever", 429), ErrorClass.THROTTLED, True),
    "5xx": (client_error("InternalServiceError", 500), ErrorClass.TRANSIENT, True),
    "unknown-503": (client_error("Weird", 503), ErrorClass.TRANSIENT, True),
    "not-found": (client_error("ResourceNotFoundException"), ErrorClass.NOT_FOUND, False),
    "iam-no-such-entity": (client_error("NoSuchEntity", 404), ErrorClass.NOT_FOUND, False),
    "exists": (client_error("ResourceExistsException"), ErrorClass.ALREADY_EXISTS, False),
    "denied": (client_error("AccessDeniedException"), ErrorClass.ACCESS_DENIED, False),
    "bare-403": (client_error("Nope", 403), ErrorClass.ACCESS_DENIED, False),
    "validation": (client_error("ValidationException"), ErrorClass.INVALID, False),
    "malformed-policy": (client_error("MalformedPolicyDocument"), ErrorClass.INVALID, False),
    "limit": (client_error("LimitExceededException"), ErrorClass.LIMIT, False),
    "unknown-4xx": (client_error("SomethingNew", 400), ErrorClass.INVALID, False),
    "connection": (EndpointConnectionError(endpoint_url="http://x"), ErrorClass.TRANSIENT, True),
    "timeout": (ReadTimeoutError(endpoint_url="http://x"), ErrorClass.TRANSIENT, True),
    "no-credentials": (NoCredentialsError(), ErrorClass.ACCESS_DENIED, False),
}


@pytest.mark.parametrize("error, expected, retryable", CASES.values(), ids=CASES.keys())
def test_classify(error, expected, retryable):
    found = classify(error)
    assert found.error_class is expected
    assert found.retryable is retryable
    assert found.reason  # every class maps to a condition reason


def test_service_override():
    assert classify(client_error("SecretNotFoundException"), "ecr").error_class is ErrorClass.DEPENDENCY


def test_messages_lose_request_ids_and_stay_stable():
    a = classify(client_error("ThrottlingException", message="Rate exceeded (Request ID: 3f2a1c9e-0d4b-4c5e-9f8a-1b2c3d4e5f60)"))
    b = classify(client_error("ThrottlingException", message="Rate exceeded (Request ID: 00000000-1111-2222-3333-444444444444)"))
    assert a.message == b.message
    assert "3f2a1c9e" not in a.describe()
    assert len(clean_message("x" * 5000)) <= 300


def test_unknown_exceptions_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        classify(ZeroDivisionError())


# --------------------------------------------------------------------------- Kubernetes API answers (ECRPullSecret)



@pytest.mark.parametrize("status, reason, expected_class, expected_reason, unknown", [
    (404, "NotFound", "NotFound", "KubernetesError", False),
    (409, "AlreadyExists", "AlreadyExists", "KubernetesError", False),
    (409, "Conflict", "Transient", "KubernetesError", False),
    (403, "Forbidden", "AccessDenied", "KubernetesForbidden", False),
    (422, "Invalid", "Invalid", "KubernetesError", False),
    (429, "TooManyRequests", "Throttled", "KubernetesError", True),
    (503, "ServiceUnavailable", "Transient", "KubernetesError", True),
], ids=["not-found", "already-exists", "stale-resource-version", "forbidden", "invalid", "throttled", "5xx"])
def test_kubernetes_api_errors_are_classified(status, reason, expected_class, expected_reason, unknown):
    error = ApiError(status, _json.dumps({"kind": "Status", "reason": reason, "message": f"secrets \"x\" {reason}"}))
    # Classified where the reconcile loop classifies every adapter's error.
    found = loop.classify(error, "kubernetes")
    assert (found.error_class.value, found.reason, found.code) == (expected_class, expected_reason, reason)
    assert loop.outcome_unknown(error) is unknown
