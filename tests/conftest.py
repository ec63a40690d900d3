"""Shared fixtures: the moto HTTP server and AWS environment for the AWS tier.

moto runs as a real HTTP server on 127.0.0.1 (boto3 talks to it over the wire,
exactly as the operator does against AWS); it is reset between tests.
"""

from __future__ import annotations

import os
import socket

import pytest
import requests

from controller.aws.clients import ClientFactory

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A moto HTTP server for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    yield url
    server.stop()


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
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)


@pytest.fixture
def factory(aws) -> ClientFactory:
    import boto3

    return ClientFactory(session=boto3.session.Session(region_name=REGION))
