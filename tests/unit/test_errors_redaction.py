"""Regression: an AWS error that quotes a secret value back never carries it into status/Events/logs."""

from __future__ import annotations

from botocore.exceptions import ClientError

from controller.aws.errors import classify
from controller.logging import REDACTOR

VALUE = "LEAKCHECK-unit-echo-0f9e"


def test_classified_message_masks_known_secrets():
    REDACTOR.remember(VALUE)
    error = ClientError({"Error": {"Code": "ValidationException",
                                   "Message": f'Invalid SecretString {{"password": "{VALUE}"}}'},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateSecret")
    found = classify(error, "secretsmanager")
    assert VALUE not in found.message and VALUE not in found.describe()
    assert "Invalid SecretString" in found.message and "***" in found.message
