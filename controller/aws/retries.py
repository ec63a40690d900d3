"""What botocore may retry, and the shutdown gate for AWS calls.

Registered by ``controller.aws.clients.ClientFactory`` on every client it makes
(botocore ``before-call`` and ``needs-retry`` hooks); the CLI closes the gate
when the operator is told to stop (SIGTERM).

1. A non-idempotent write whose outcome is unknown is not retried by botocore.
   ``ecs:RegisterTaskDefinition`` and ``batch:RegisterJobDefinition`` create a
   new revision on every call (``ecs:UpdateService`` is listed too: a rollout is sent
   once per revision). When an attempt fails in a way that leaves the
   outcome unknown (``controller.aws.errors.outcome_unknown``: a throttling or
   5xx answer, a read timeout, a connection closed before the answer), the
   first attempt may well have registered a revision, and each blind retry
   registers another (measured against the test server: one call whose answers
   were all lost 503s made five revisions; with 30 % faults on every call, 3 of
   12 families got a duplicate). botocore's standard and adaptive modes retry
   all of those; the hook below ends the call with that failure instead. The
   reconciler retries in its place: it observes the latest ACTIVE revision
   first and registers only when that revision does not reference the secret
   yet, so a revision registered behind a lost answer is found, not repeated.
   A request that never left (could not connect) is still retried by botocore,
   and so is every other call: reads, and the writes in ``RETRY_SAFE_WRITES``,
   each with the reason a repeat cannot duplicate anything.

2. The shutdown gate. Once closed, no new AWS call starts (``before-call``
   raises ``OperatorShuttingDown``), a failed attempt is not retried, and a
   thread waiting for a rate-limit token wakes up and gives up. A call already
   on the wire is allowed to finish: interrupting it would not undo it, and
   every write the operator makes is safe to observe and converge from after a
   restart. ``OperatorShuttingDown`` is a ``BotoCoreError``, so steps classify
   it as transient and stop before their next write.

``veto_retry`` is the pure decision; the hooks are thin. The needs-retry hook
is registered first on each client's own ``needs-retry.<service>`` event, so it
runs before botocore's retry handler (which would otherwise spend retry quota
on an attempt that is then refused). botocore takes the first non-None answer
of any needs-retry handler as a delay and cannot be told "do not retry" by a
return value: a veto raises the attempt's failure, which ends the call with it.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.aws.errors import outcome_unknown

# (boto3 client name, operation) of writes that create something new on every call.
NON_IDEMPOTENT: frozenset[tuple[str, str]] = frozenset({
    ("ecs", "RegisterTaskDefinition"),
    ("batch", "RegisterJobDefinition"),
    # Service rollouts: once per revision. A repeat of the same taskDefinition is harmless in
    # ECS, but a blind retry is not the operator's to make: the next pass observes the service
    # (already on the revision behind a lost answer) and follows it (controller/reconcile/services.py).
    ("ecs", "UpdateService"),
})
# Every other write the operator makes, and why botocore may repeat it after a lost
# answer (tests/aws/test_lost_answers_aws.py loses their answers and checks that every
# write it sees is in one of the two tables).
RETRY_SAFE_WRITES: dict[tuple[str, str], str] = {
    ("secretsmanager", "CreateSecret"):
        "botocore fills ClientRequestToken once per call and resends it on its retries: a repeat with "
        "the same token and value is ignored (a different owner's secret still answers ResourceExists)",
    ("secretsmanager", "PutSecretValue"):
        "the same ClientRequestToken on every retry: a repeat makes no second version",
    ("secretsmanager", "UpdateSecret"): "sets the description and KMS key to given values",
    ("secretsmanager", "TagResource"): "sets tags to given values",
    ("secretsmanager", "RestoreSecret"): "restoring a secret that is not scheduled for deletion changes nothing",
    ("secretsmanager", "DeleteSecret"):
        "a repeat finds the secret gone (NotFound: done) or already scheduled for deletion "
        "(controller.aws.secrets.delete takes that as done)",
    ("iam", "PutRolePolicy"): "replaces the named inline policy with the given document",
    ("iam", "DeleteRolePolicy"): "a repeat answers NoSuchEntity: done",
    ("ecr", "SetRepositoryPolicy"): "replaces the whole policy text with the given one",
    ("ecr", "DeleteRepositoryPolicy"): "a repeat answers RepositoryPolicyNotFoundException: done",
    ("ecr", "CreatePullThroughCacheRule"):
        "a repeat answers PullThroughCacheRuleAlreadyExistsException: the step observes again",
    ("ecr", "UpdatePullThroughCacheRule"): "sets the credential ARN to the given one",
    ("ecr", "DeletePullThroughCacheRule"): "a repeat answers PullThroughCacheRuleNotFoundException: done",
}


class OperatorShuttingDown(BotoCoreError):
    """The operator is stopping: the AWS call was not started (or not retried)."""

    fmt = "the operator is shutting down; AWS call not made"


def retried_by_botocore(service: str, operation: str, failure: BaseException) -> bool:
    """Pure: may botocore retry this failed attempt (if its own rules say so)?"""
    return (service, operation) not in NON_IDEMPOTENT or not outcome_unknown(failure, service)


def veto_retry(service: str, operation: str, failure: BaseException | None, *, closing: bool,
               failed: bool) -> BaseException | None:
    """Pure: the exception to raise instead of letting botocore retry, or None to let it decide.

    ``failure`` is the attempt's exception, or its error answer as a ClientError.
    """
    if closing and failed:
        return OperatorShuttingDown()
    if failed and failure is not None and not retried_by_botocore(service, operation, failure):
        return failure
    return None


def _failed(response: Any, caught_exception: BaseException | None) -> bool:
    if caught_exception is not None:
        return True
    if not response:
        return False
    http, parsed = response
    if isinstance(parsed, dict) and parsed.get("Error", {}).get("Code"):
        return True
    return getattr(http, "status_code", 200) >= 400


class Gate:
    """Open until ``close()``; thread-safe. One per ClientFactory."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    def sleep(self, seconds: float) -> None:
        """A sleep that ends early, with OperatorShuttingDown, when the gate closes."""
        if self._closed.wait(seconds):
            raise OperatorShuttingDown()

    # ---- botocore hooks

    def before_call(self, **_: Any) -> None:
        if self._closed.is_set():
            raise OperatorShuttingDown()
        return None  # a value would replace the call's answer

    def needs_retry(self, operation: Any = None, caught_exception: BaseException | None = None,
                    response: Any = None, **_: Any) -> None:
        if operation is None:
            return None
        service = operation.service_model.service_name
        failed = _failed(response, caught_exception)
        failure = caught_exception
        if failure is None and failed and (service, operation.name) in NON_IDEMPOTENT:
            # An error answer: the same ClientError the client would raise (a plain one,
            # not the client's modeled subclass; the operator catches ClientError only).
            failure = ClientError(response[1], operation.name)
        veto = veto_retry(service, operation.name, failure, closing=self._closed.is_set(), failed=failed)
        if veto is not None:
            # botocore takes the first non-None answer as a retry delay and cannot be told
            # "do not retry"; raising ends the call with this exception instead.
            raise veto
        return None
