"""Shared fixtures: the AWS test server and AWS environment for the AWS tier.

moto runs as a real HTTP server on 127.0.0.1 behind the test harness
(``tests.harness.awsserver``: the ECR pull-through cache stand-in, fault
injection and a call record); boto3 talks to it over the wire, exactly as the
operator does against AWS. It is reset between tests.
"""

from __future__ import annotations

import pytest
import requests

from controller.aws.clients import ClientFactory

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@pytest.fixture(scope="session")
def aws_server_session():
    """The harness server for the whole session (moto + stand-in + faults + call record)."""
    from tests.harness.awsserver import start

    server = start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(aws_server_session):
    """The AWS test server for the whole session; yields its URL."""
    yield aws_server_session.url


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Point the standard AWS variables at the moto server and reset it after the test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield moto_server
    # moto, the pull-through cache stand-in, faults and the call record.
    requests.post(f"{moto_server}/_harness/reset", timeout=30)


@pytest.fixture
def factory(aws) -> ClientFactory:
    import boto3

    return ClientFactory(session=boto3.session.Session(region_name=REGION))


@pytest.fixture
def aws_server(aws, aws_server_session):
    """The harness server object (``.faults``, ``.calls``, ``.standin``) for tests that need it."""
    return aws_server_session
