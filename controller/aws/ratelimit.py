"""Client-side rate limits per AWS service and operation (token buckets).

Called by ``controller.aws.clients.ClientFactory``, which registers
``RateLimiter.before_call`` as a botocore ``before-call`` hook on every client:
each API call (not each retry attempt) takes one token from the bucket of the
first rule that matches its service and operation, and waits when the bucket
is empty. The CLI builds the limiter from ``--aws-rate-limits`` /
``REGACCESS_AWS_RATE_LIMITS`` on top of ``DEFAULT_RULES``.

Why client-side: AWS quotas are per account and Region, and a resync of 1,000
resources would otherwise send 1,000 RegisterTaskDefinition calls at once
against a quota of 1/s (burst 20). Spreading them out costs the same total
time as backing off after throttling, without the throttling storm (and
without other clients in the account getting throttled by us). Throttling
that still happens (other tools share the quota) is retried by botocore's
standard/adaptive retry mode with backoff and jitter.

Rule syntax (comma-separated; spaces ignored)::

    SERVICE:OPERATIONS=RATE[/BURST]

- SERVICE: the boto3 client name (``ecs``, ``batch``, ``secretsmanager``,
  ``iam``, ``ecr``, ``sts``, ``kms``) or ``*``;
- OPERATIONS: one or more operation names joined by ``+``, each may be a glob
  (``*``, ``Get*``): all operations a rule matches share ONE bucket, as AWS
  quotas do (``secretsmanager:PutSecretValue+UpdateSecret=50``);
- RATE: calls per second (a float > 0), or ``inf`` for no limit;
- BURST: bucket size, calls that may go at once after an idle period
  (default: max(1, RATE)).

User rules are checked before the defaults, and the first matching rule
decides; a user rule with the same SERVICE:OPERATIONS text replaces the
default one. ``*:*=inf`` switches client-side limiting off. Buckets are kept
per rule and Region (quotas are per Region; different accounts reached by
``roleArn`` share a bucket, which is conservative).

The module is pure apart from the injected clock and sleep, and thread-safe:
reconciles run in worker threads.
"""

from __future__ import annotations

import fnmatch
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

INFINITE = math.inf

# From the published quotas (../shared/DESIGN.md). Order matters: first match wins.
DEFAULT_RULES_TEXT = ",".join([
    # Secrets Manager: Create/Delete 50/s, PutSecretValue+UpdateSecret 50/s,
    # DescribeSecret 40,000/s and GetSecretValue 10,000/s (effectively unlimited here).
    "secretsmanager:CreateSecret+DeleteSecret=50",
    "secretsmanager:PutSecretValue+UpdateSecret=50",
    "secretsmanager:DescribeSecret=inf",
    "secretsmanager:GetSecretValue=10000",
    "secretsmanager:*=50",
    # ECS: RegisterTaskDefinition 1/s sustained with a burst of 20; Describe 20/s.
    "ecs:RegisterTaskDefinition=1/20",
    "ecs:*=20",
    # Batch: 50/s for all calls together.
    "batch:*=50",
    # IAM publishes no rate quota and throttles early: stay well below.
    "iam:Get*+List*=20",
    "iam:*=10",
    # ECR: the policy and pull-through cache APIs are low-volume control-plane calls.
    "ecr:Describe*+Get*+List*+BatchGet*=50/100",
    "ecr:*=20",
])

ERR_RULE = "{rule!r}: expected SERVICE:OPERATIONS=RATE[/BURST], for example ecs:RegisterTaskDefinition=1/20"
ERR_RATE = "{rule!r}: RATE must be a number > 0 or inf"
ERR_BURST = "{rule!r}: BURST must be an integer >= 1"


class RuleError(ValueError):
    """A rate-limit rule that cannot be parsed; the message names the rule and the syntax."""


@dataclass(frozen=True)
class Rule:
    service: str                 # boto3 client name, or "*"
    operations: tuple[str, ...]  # globs; one bucket for all of them
    rate: float                  # tokens per second; INFINITE: no limit
    burst: int

    @property
    def key(self) -> str:
        return f"{self.service}:{'+'.join(self.operations)}"

    def matches(self, service: str, operation: str) -> bool:
        if self.service not in ("*", service):
            return False
        return any(fnmatch.fnmatchcase(operation, pattern) for pattern in self.operations)

    def __str__(self) -> str:
        rate = "inf" if self.rate == INFINITE else f"{self.rate:g}"
        return f"{self.key}={rate}/{self.burst}"


def parse_rule(text: str) -> Rule:
    rule = text.strip().replace(" ", "")
    target, sep, limit = rule.partition("=")
    service, colon, operations = target.partition(":")
    if not sep or not colon or not service or not operations or not limit:
        raise RuleError(ERR_RULE.format(rule=text))
    patterns = tuple(p for p in operations.split("+"))
    if any(not p for p in patterns):
        raise RuleError(ERR_RULE.format(rule=text))
    rate_text, slash, burst_text = limit.partition("/")
    try:
        rate = float(rate_text)
    except ValueError:
        raise RuleError(ERR_RATE.format(rule=text)) from None
    if math.isnan(rate) or rate <= 0:
        raise RuleError(ERR_RATE.format(rule=text))
    if slash:
        try:
            burst = int(burst_text)
        except ValueError:
            raise RuleError(ERR_BURST.format(rule=text)) from None
        if burst < 1:
            raise RuleError(ERR_BURST.format(rule=text))
    else:
        burst = 1 if rate == INFINITE else max(1, int(math.ceil(rate)))
    return Rule(service, patterns, rate, burst)


def parse_rules(text: str | None) -> list[Rule]:
    """Parse a comma-separated list of rules; empty text gives no rules."""
    return [parse_rule(part) for part in (text or "").split(",") if part.strip()]


DEFAULT_RULES: tuple[Rule, ...] = tuple(parse_rules(DEFAULT_RULES_TEXT))


def merge_rules(user: list[Rule], defaults: tuple[Rule, ...] | list[Rule] = DEFAULT_RULES) -> list[Rule]:
    """User rules first (first match wins); a default with the same key is replaced."""
    keys = {rule.key for rule in user}
    return [*user, *(rule for rule in defaults if rule.key not in keys)]


class TokenBucket:
    """A token bucket with reservations: a caller takes its token now and sleeps off the debt.

    Taking the token under the lock and sleeping outside it keeps callers in
    arrival order without holding the lock while sleeping, and makes the wait
    of every caller exact: the n-th caller beyond the burst waits n/rate.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token; returns how long the caller must wait before using it (>= 0)."""
        if self.rate == INFINITE:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimiter:
    """Buckets per (rule, Region); ``acquire`` blocks the calling thread for its turn."""

    def __init__(
        self,
        rules: list[Rule] | tuple[Rule, ...] = DEFAULT_RULES,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.rules = list(rules)
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str | None], TokenBucket] = {}

    def rule_for(self, service: str, operation: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(service, operation)), None)

    def _bucket(self, rule: Rule, region: str | None) -> TokenBucket:
        key = (rule.key, region)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rule.rate, rule.burst, self._clock)
            return bucket

    def acquire(self, service: str, operation: str, region: str | None = None) -> float:
        """Wait for a token for one call; returns the seconds waited (0 when none)."""
        rule = self.rule_for(service, operation)
        if rule is None or rule.rate == INFINITE:
            return 0.0
        wait = self._bucket(rule, region).reserve()
        if wait > 0:
            self._sleep(wait)
        if self._on_wait is not None:
            self._on_wait(service, operation, wait)
        return wait

    def before_call(self, model: Any = None, request_signer: Any = None, **_: Any) -> None:
        """botocore ``before-call`` hook. Must return None: a value would replace the call."""
        if model is None:
            return None
        service = model.service_model.service_name
        region = getattr(request_signer, "region_name", None)
        self.acquire(service, model.name, region)
        return None


def describe(rules: list[Rule] | tuple[Rule, ...]) -> list[str]:
    """The effective rules, for the startup log line."""
    return [str(rule) for rule in rules]
