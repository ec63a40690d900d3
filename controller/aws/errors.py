"""The one AWS error classifier (pure).

Every AWS module raises botocore's own exceptions; reconcilers call
``classify()`` once and act on the class. Handlers turn the class into kopf's
TemporaryError (retry after a delay) or PermanentError only at the edge.

``outcome_unknown()`` answers the other question a failed *write* raises: may
AWS have performed it anyway? ``controller.aws.retries`` uses it to keep
botocore from retrying non-idempotent writes blindly, and the reconcile loop
uses it to observe again before deciding to write.

Messages are cleaned of request IDs and long hex tokens: a message that changes
on every attempt defeats kopf's backoff and makes status patch loops (crossplane
provider-aws issues 69 and 461). Secret values an AWS error may quote back are
masked by the reconcile loop (``controller.reconcile.loop.describe``), which is the
only way a classified message reaches status, Events or logs; this layer never
sees the registry of known secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from controller.api import reasons


class ErrorClass(str, Enum):
    NOT_FOUND = "NotFound"            # observe: absent; delete: done
    ALREADY_EXISTS = "AlreadyExists"  # create: observe again
    THROTTLED = "Throttled"           # retry with backoff
    TRANSIENT = "Transient"           # 5xx, timeouts, resets: retry with backoff
    DEPENDENCY = "Dependency"         # a role/repository/family missing: retry, it may appear
    ACCESS_DENIED = "AccessDenied"    # terminal until IAM changes (retried slowly)
    INVALID = "Invalid"               # terminal until the spec changes
    CONFLICT = "Conflict"             # state conflict (e.g. secret scheduled for deletion)
    LIMIT = "Limit"                   # a service quota reached: terminal until freed


THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "SlowDown", "RequestThrottled",
    "RequestThrottledException", "ThrottledException",
})
NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException", "NoSuchEntity", "RepositoryNotFoundException",
    "RepositoryPolicyNotFoundException", "PullThroughCacheRuleNotFoundException",
    "NotFoundException", "ClientException.NotFound",
})
ALREADY_EXISTS_CODES = frozenset({
    "ResourceExistsException", "EntityAlreadyExists", "PullThroughCacheRuleAlreadyExistsException",
    "TemplateAlreadyExistsException",
})
ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "KMSAccessDeniedException",
})
INVALID_CODES = frozenset({
    "ValidationException", "InvalidParameterException", "InvalidParameterValue",
    "InvalidRequestException", "MalformedPolicyDocument", "MalformedPolicyDocumentException",
    "EncryptionFailure", "InvalidInput", "InvalidParameterCombination",
    "UnsupportedUpstreamRegistryException", "SecretNotFoundException",
})
LIMIT_CODES = frozenset({"LimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"})
TRANSIENT_CODES = frozenset({
    "InternalServiceError", "InternalFailure", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "ServerException", "ServiceException", "InternalError",
    "RequestTimeout", "RequestTimeoutException", "ServiceFailure",
})

# Per-kind overrides, like ACK's terminal_codes: (service, code) -> class.
OVERRIDES: dict[tuple[str, str], ErrorClass] = {
    # IAM answers NoSuchEntity for a role that does not exist (yet): a dependency.
    ("iam", "NoSuchEntity"): ErrorClass.NOT_FOUND,
    # ECR cannot yet see the secret the secret step has just written: retry, it appears.
    ("ecr", "SecretNotFoundException"): ErrorClass.DEPENDENCY,
    # Secrets Manager: "You can't perform this operation on the secret because it was marked
    # for deletion" comes as InvalidRequestException.
}

_REQUEST_ID = re.compile(
    r"(request[ -]?id[:= ]*)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.IGNORECASE,
)
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{24,}\b")
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Classified:
    error_class: ErrorClass
    code: str
    message: str       # cleaned: no request IDs, bounded length
    operation: str = ""
    # "kubernetes" for the API server's answers to the operator's own writes (ECRPullSecret),
    # classified by controller.kubeerrors.
    api: str = "aws"

    @property
    def retryable(self) -> bool:
        return self.error_class in (ErrorClass.THROTTLED, ErrorClass.TRANSIENT, ErrorClass.DEPENDENCY)

    @property
    def reason(self) -> str:
        if self.api == "kubernetes":
            return reasons.KUBERNETES_FORBIDDEN if self.error_class is ErrorClass.ACCESS_DENIED else reasons.KUBERNETES_ERROR
        return {
            ErrorClass.THROTTLED: reasons.AWS_THROTTLED,
            ErrorClass.TRANSIENT: reasons.AWS_UNAVAILABLE,
            ErrorClass.DEPENDENCY: reasons.DEPENDENCY_MISSING,
            ErrorClass.NOT_FOUND: reasons.DEPENDENCY_MISSING,
            ErrorClass.ACCESS_DENIED: reasons.AWS_ACCESS_DENIED,
            ErrorClass.INVALID: reasons.AWS_REJECTED,
            ErrorClass.LIMIT: reasons.AWS_REJECTED,
            ErrorClass.CONFLICT: reasons.AWS_REJECTED,
            ErrorClass.ALREADY_EXISTS: reasons.AWS_ERROR,
        }[self.error_class]

    def describe(self) -> str:
        op = f"{self.operation}: " if self.operation else ""
        return f"{op}{self.code}: {self.message}" if self.message else f"{op}{self.code}"


def clean_message(message: str) -> str:
    # Known secret values an AWS error may quote back are masked one layer up, at the
    # reconcile loop's classifier boundary (controller.reconcile.loop.describe): the AWS
    # layer never holds the registry of secrets.
    message = _REQUEST_ID.sub("<id>", message or "")
    message = _LONG_HEX.sub("<hex>", message)
    message = " ".join(message.split())
    return message[:_MAX_MESSAGE]


def classify(error: BaseException, service: str = "") -> Classified:
    """Map any exception from boto3 to its class (the API server's: ``controller.kubeerrors``)."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {}) or {}
        code = str(info.get("Code") or "Unknown")
        message = clean_message(str(info.get("Message") or ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        operation = getattr(error, "operation_name", "") or ""
        if (service, code) in OVERRIDES:
            cls = OVERRIDES[(service, code)]
        elif code in THROTTLING_CODES or status == 429:
            cls = ErrorClass.THROTTLED
        elif code in NOT_FOUND_CODES:
            cls = ErrorClass.NOT_FOUND
        elif code in ALREADY_EXISTS_CODES:
            cls = ErrorClass.ALREADY_EXISTS
        elif code in ACCESS_DENIED_CODES or status == 403:
            cls = ErrorClass.ACCESS_DENIED
        elif code in LIMIT_CODES:
            cls = ErrorClass.LIMIT
        elif code in TRANSIENT_CODES or status >= 500:
            cls = ErrorClass.TRANSIENT
        elif code in INVALID_CODES or 400 <= status < 500:
            cls = ErrorClass.INVALID
        else:
            cls = ErrorClass.TRANSIENT
        return Classified(cls, code, message, operation)
    if isinstance(error, NoCredentialsError):
        return Classified(ErrorClass.ACCESS_DENIED, "NoCredentials", "no AWS credentials found")
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return Classified(ErrorClass.TRANSIENT, type(error).__name__, clean_message(str(error)))
    if isinstance(error, BotoCoreError):
        return Classified(ErrorClass.TRANSIENT, type(error).__name__, clean_message(str(error)))
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return Classified(ErrorClass.TRANSIENT, type(error).__name__, clean_message(str(error)))
    raise error


def outcome_unknown(error: BaseException, service: str = "") -> bool:
    """Pure: after ``error`` from a write, may AWS have performed the write anyway?

    True (unknown outcome) for:
    - a throttling or 5xx answer: AWS may have done the work before the answer
      was lost or replaced on its way back (measured: a third of injected 5xx
      answers to RegisterTaskDefinition came after the revision was registered);
    - a read timeout, a connection closed before or during the answer, a broken
      answer stream (botocore's ``HTTPClientError`` family): the request was sent;
    - Python's own timeouts and connection resets, for the same reason.
    False (known outcome: not performed) for a definite refusal (any other 4xx:
    validation, access, not found, conflict, limit) and for a request that never
    left: could not connect, connect timeout, TLS or proxy failure, no
    credentials, the shutdown gate (``OperatorShuttingDown``), invalid parameters.
    Callers (``controller.reconcile.loop`` and ``controller.aws.retries``) observe again
    before deciding to write once more. Anything else (not an AWS or network error) is
    not ours to judge: False.
    """
    if isinstance(error, ClientError):
        return classify(error, service).error_class in (ErrorClass.THROTTLED, ErrorClass.TRANSIENT)
    if isinstance(error, HTTPClientError):
        return True
    if isinstance(error, (BotoConnectionError, BotoCoreError)):
        return False  # EndpointConnectionError, ConnectTimeoutError, SSLError, ...: never sent
    if isinstance(error, ConnectionRefusedError):
        return False
    return isinstance(error, (ConnectionError, TimeoutError))


def is_not_found(error: BaseException, service: str = "") -> bool:
    return isinstance(error, ClientError) and classify(error, service).error_class is ErrorClass.NOT_FOUND


def is_already_exists(error: BaseException) -> bool:
    return isinstance(error, ClientError) and classify(error).error_class is ErrorClass.ALREADY_EXISTS

