"""Regression: an AWS error that quotes a secret value back never carries it into status/Events/logs.

The AWS layer classifies without knowing any secret; the reconcile loop's classifier
boundary (``loop.failure`` / ``loop.describe``) masks every value the operator has read,
and it is the only way a classified message reaches a StepError (status, Events).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from controller.aws.protocol import ABSENT, Observation
from controller.logging import REDACTOR
from controller.reconcile import loop

VALUE = "LEAKCHECK-unit-echo-0f9e"


def _echo() -> ClientError:
    return ClientError({"Error": {"Code": "ValidationException",
                                  "Message": f'Invalid SecretString {{"password": "{VALUE}"}}'},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateSecret")


def test_boundary_masks_known_secrets():
    REDACTOR.remember(VALUE)
    error = loop.failure(_echo(), "secretsmanager", "secret 'x'")
    assert VALUE not in error.message and VALUE not in loop.describe(_echo(), "secretsmanager")
    assert "Invalid SecretString" in error.message and "***" in error.message


class EchoingKind:
    kind, service = "secret", "secretsmanager"

    def label(self, desired: Any) -> str:
        return "secret 'x'"

    def observe(self, client: Any, desired: Any) -> Observation:
        return ABSENT

    def create(self, client: Any, desired: Any, observation: Observation) -> Any:
        raise _echo()


def test_a_failed_write_through_the_loop_carries_no_secret():
    REDACTOR.remember(VALUE)
    result = loop.sync_object(EchoingKind(), None, "desired", ours="c/ns/n")
    assert result.error is not None
    assert VALUE not in result.error.message and "***" in result.error.message
