"""The one boto3 client factory.

Every AWS module receives its client from here, so region, assumed role,
endpoint URL, retry mode and the per-call hooks (metrics, rate limits, the
per-operation retry rule, the shutdown gate) are set in one place. botocore's
retry mode applies to every call except a non-idempotent write whose outcome is
unknown (``controller.aws.retries``). Clients are cached per (service, region, role, external ID):
creating a boto3 client costs milliseconds and memory, and a resync of 1,000
resources must not create 1,000 clients.

AWS configuration is the standard chain and nothing bespoke: AWS_REGION /
AWS_DEFAULT_REGION, credentials from the environment, profile, web identity
(IRSA) or instance metadata, and AWS_ENDPOINT_URL (honoured by botocore itself)
to point at moto or LocalStack. ``roleArn`` is assumed with botocore's own
refreshable credentials, so assumed-role credentials are cached and renewed
before they expire.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from controller.aws.ratelimit import RateLimiter, Rule
from controller.aws.retries import Gate

# Hooks get (event_name, **kwargs) from botocore's event system; registered on every client.
ClientHook = tuple[str, Callable[..., Any]]


class ClientFactory:
    """Creates and caches boto3 clients; thread-safe (reconciles run in worker threads)."""

    def __init__(
        self,
        *,
        retry_mode: str = "standard",
        max_attempts: int = 5,
        max_pool_connections: int = 50,
        hooks: list[ClientHook] | None = None,
        session: boto3.session.Session | None = None,
        rate_limits: list[Rule] | tuple[Rule, ...] | None = None,
        on_rate_limit_wait: Callable[[str, str, float], None] | None = None,
    ) -> None:
        # boto3 reads AWS_DEFAULT_REGION; AWS_REGION is the name the SDKs agree on today.
        self._session = session or boto3.session.Session(
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        )
        self._config = Config(
            # total_max_attempts counts the first try; botocore's max_attempts would not.
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            connect_timeout=10,
            read_timeout=30,
            user_agent_extra="regaccess",
        )
        # Always on: the shutdown gate, registered first so a closed gate is checked before
        # anything else a before-call hook might do (a rate-limit wait), and the retry rule
        # (no blind retry of a non-idempotent write whose outcome is unknown; see client()).
        self.gate = Gate()
        self._hooks = [("before-call", self.gate.before_call), *(hooks or [])]
        # Client-side rate limits (controller.aws.ratelimit); None: none (tests, one-off tools).
        # Its waits end early when the gate closes.
        self.rate_limiter: RateLimiter | None = None
        if rate_limits is not None:
            self.rate_limiter = RateLimiter(rate_limits, sleep=self.gate.sleep, on_wait=on_rate_limit_wait)
            self._hooks.insert(1, ("before-call", self.rate_limiter.before_call))
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str | None, str | None, str | None], Any] = {}
        self._role_sessions: dict[tuple[str, str | None], boto3.session.Session] = {}

    @property
    def default_region(self) -> str | None:
        return self._session.region_name

    def close(self) -> None:
        """Refuse new AWS calls and retries from now on (the operator is stopping)."""
        self.gate.close()

    def add_hook(self, event: str, handler: Callable[..., Any]) -> None:
        """Register a botocore event hook on every client made from now on and made before."""
        with self._lock:
            self._hooks.append((event, handler))
            for client in self._clients.values():
                client.meta.events.register(event, handler)

    def _assumed_session(self, role_arn: str, external_id: str | None) -> boto3.session.Session:
        key = (role_arn, external_id)
        cached = self._role_sessions.get(key)
        if cached is not None:
            return cached
        extra: dict[str, Any] = {"RoleSessionName": "regaccess"}
        if external_id:
            extra["ExternalId"] = external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=self._session._session.create_client,  # noqa: SLF001 - botocore API
            source_credentials=self._session._session.get_credentials(),  # noqa: SLF001
            role_arn=role_arn,
            extra_args=extra,
        )
        credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        core = botocore.session.Session()
        core._credentials = credentials  # noqa: SLF001 - the documented way to inject refreshable creds
        session = boto3.session.Session(botocore_session=core, region_name=self._session.region_name)
        self._role_sessions[key] = session
        return session

    def client(
        self,
        service: str,
        *,
        region: str | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
    ) -> Any:
        region = region or self._session.region_name
        key = (service, region, role_arn, external_id)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            session = self._assumed_session(role_arn, external_id) if role_arn else self._session
            client = session.client(service, region_name=region, config=self._config)
            for event, handler in self._hooks:
                client.meta.events.register(event, handler)
            # First on the client's own needs-retry event, where botocore's retry handler
            # sits: a veto must come before that handler spends retry quota on the attempt.
            service_event = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register_first(f"needs-retry.{service_event}", self.gate.needs_retry)
            # botocore loads a client's paginator model on its first get_paginator, unlocked:
            # in a burst every worker thread that gets there before the first one is done loads
            # it again (measured: 32 loads for 100 creates, 29 % of a profiled burst's CPU, each
            # one listing botocore's data directories). Loaded here, once, under our lock.
            client.can_paginate(next(iter(client.meta.method_to_api_mapping)))
            self._clients[key] = client
            return client


class Clients:
    """The narrow view one reconcile gets: clients for one (region, role)."""

    def __init__(self, factory: ClientFactory, *, region: str | None, role_arn: str | None,
                 external_id: str | None) -> None:
        self._factory = factory
        self.region = region or factory.default_region
        self._role_arn = role_arn
        self._external_id = external_id

    def __call__(self, service: str) -> Any:
        return self._factory.client(
            service, region=self.region, role_arn=self._role_arn, external_id=self._external_id
        )
