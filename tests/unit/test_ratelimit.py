"""controller.aws.ratelimit: rule parsing, matching, and token buckets under an injected clock.

No real time passes: the clock is a counter the test advances, and ``sleep``
records the waits (and advances the clock, as a real sleep would).
"""

from __future__ import annotations

import math
import threading

import pytest

from controller.aws import ratelimit
from controller.aws.ratelimit import RateLimiter, Rule, RuleError, merge_rules, parse_rule, parse_rules


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


@pytest.mark.parametrize("text, expected", [
    ("ecs:RegisterTaskDefinition=1/20", Rule("ecs", ("RegisterTaskDefinition",), 1.0, 20)),
    ("batch:*=50", Rule("batch", ("*",), 50.0, 50)),
    ("secretsmanager:PutSecretValue+UpdateSecret=50", Rule("secretsmanager", ("PutSecretValue", "UpdateSecret"), 50.0, 50)),
    ("iam:Get*+List*=0.5", Rule("iam", ("Get*", "List*"), 0.5, 1)),
    (" ecr : * = 2.5 / 7 ", Rule("ecr", ("*",), 2.5, 7)),
    ("*:*=inf", Rule("*", ("*",), math.inf, 1)),
], ids=["rate-and-burst", "wildcard", "shared-bucket", "glob-fraction", "spaces", "off"])
def test_parse_rule(text, expected):
    assert parse_rule(text) == expected


@pytest.mark.parametrize("text", [
    "ecs", "ecs=1", ":Op=1", "ecs:=1", "ecs:Op=", "ecs:Op=0", "ecs:Op=-1", "ecs:Op=fast", "ecs:Op=nan",
    "ecs:Op=1/0", "ecs:Op=1/x", "ecs:A++B=1",
], ids=lambda t: t or "empty")
def test_parse_rule_refuses_with_the_syntax(text):
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    assert repr(text.strip().replace(" ", "")) in str(info.value) or repr(text) in str(info.value)


def test_parse_rules_splits_on_commas_and_ignores_blanks():
    rules = parse_rules("ecs:RegisterTaskDefinition=1/20, ,batch:*=50,")
    assert [r.key for r in rules] == ["ecs:RegisterTaskDefinition", "batch:*"]
    assert parse_rules("") == [] and parse_rules(None) == []


def test_defaults_follow_the_published_quotas():
    limiter = RateLimiter()
    rule = limiter.rule_for
    assert (rule("ecs", "RegisterTaskDefinition").rate, rule("ecs", "RegisterTaskDefinition").burst) == (1.0, 20)
    assert rule("ecs", "DescribeTaskDefinition").rate == 20
    assert rule("batch", "RegisterJobDefinition").rate == 50
    assert rule("batch", "DescribeJobDefinitions") is rule("batch", "RegisterJobDefinition")  # one bucket for all
    assert rule("secretsmanager", "CreateSecret") is rule("secretsmanager", "DeleteSecret")
    assert rule("secretsmanager", "PutSecretValue") is rule("secretsmanager", "UpdateSecret")
    assert rule("secretsmanager", "CreateSecret").rate == 50
    assert rule("secretsmanager", "DescribeSecret").rate == math.inf
    assert rule("iam", "PutRolePolicy").rate == 10 and rule("iam", "GetRolePolicy").rate == 20
    assert rule("ecr", "SetRepositoryPolicy").rate == 20
    assert rule("sts", "AssumeRole") is None


def test_user_rules_come_first_and_replace_same_key():
    merged = merge_rules(parse_rules("ecs:RegisterTaskDefinition=5/5,ecs:Describe*=100"))
    limiter = RateLimiter(merged)
    assert limiter.rule_for("ecs", "RegisterTaskDefinition").rate == 5
    assert limiter.rule_for("ecs", "DescribeTaskDefinition").rate == 100
    assert limiter.rule_for("ecs", "ListTaskDefinitions").rate == 20  # the default ecs:* still applies
    assert [r.key for r in merged].count("ecs:RegisterTaskDefinition") == 1


def test_everything_off():
    clock = FakeClock()
    limiter = RateLimiter(merge_rules(parse_rules("*:*=inf")), clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        assert limiter.acquire("ecs", "RegisterTaskDefinition") == 0.0
    assert clock.sleeps == []


def test_burst_then_steady_rate():
    """Given 1/s burst 20, when 1,000 registrations arrive at once, the n-th beyond the burst waits n seconds."""
    clock = FakeClock()
    waits: list[tuple[str, str, float]] = []
    limiter = RateLimiter(clock=clock, sleep=clock.sleep, on_wait=lambda s, o, w: waits.append((s, o, w)))
    got = [limiter.acquire("ecs", "RegisterTaskDefinition", "us-east-1") for _ in range(1000)]
    assert got[:20] == [0.0] * 20
    assert got[20:23] == pytest.approx([1.0, 2.0, 3.0])
    assert got[-1] == pytest.approx(980.0)
    assert len(clock.sleeps) == 980
    # The calls go out no faster than the quota: 20 + 1/s.
    assert len(waits) == 1000 and waits[0][:2] == ("ecs", "RegisterTaskDefinition")


def test_tokens_refill_with_time_up_to_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(parse_rules("ecs:*=2/4"), clock=clock, sleep=clock.sleep)
    assert [limiter.acquire("ecs", "X") for _ in range(4)] == [0.0] * 4
    assert limiter.acquire("ecs", "X") == pytest.approx(0.5)
    clock.now += 100  # long idle: refills to the burst, never beyond
    assert [limiter.acquire("ecs", "X") for _ in range(4)] == [0.0] * 4
    assert limiter.acquire("ecs", "X") > 0


def test_buckets_are_per_rule_and_region():
    clock = FakeClock()
    limiter = RateLimiter(parse_rules("ecs:RegisterTaskDefinition=1/1,ecs:*=1/1"), clock=clock, sleep=clock.sleep)
    assert limiter.acquire("ecs", "RegisterTaskDefinition", "us-east-1") == 0.0
    assert limiter.acquire("ecs", "RegisterTaskDefinition", "eu-west-1") == 0.0   # another Region
    assert limiter.acquire("ecs", "DescribeTaskDefinition", "us-east-1") == 0.0   # another rule
    assert limiter.acquire("ecs", "RegisterTaskDefinition", "us-east-1") == pytest.approx(1.0)
    assert limiter.acquire("batch", "Anything", "us-east-1") == 0.0               # no rule: no limit


def test_unmatched_service_is_not_limited():
    clock = FakeClock()
    limiter = RateLimiter(parse_rules("ecs:*=1/1"), clock=clock, sleep=clock.sleep)
    assert all(limiter.acquire("kms", "DescribeKey") == 0.0 for _ in range(50))


def test_thread_safe_reservations_add_up():
    """16 threads x 50 calls against 10/s burst 10: the waits are exactly 1..790 tenths, each once."""
    clock = FakeClock()
    limiter = RateLimiter(parse_rules("batch:*=10/10"), clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [limiter.acquire("batch", "X") for _ in range(50)]) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(round(s * 10) for s in clock.sleeps) == list(range(1, 791))


class _Model:
    class service_model:
        service_name = "ecs"

    name = "RegisterTaskDefinition"


class _Signer:
    region_name = "us-east-1"


def test_before_call_hook_returns_none_and_acquires():
    clock = FakeClock()
    limiter = RateLimiter(parse_rules("ecs:RegisterTaskDefinition=1/1"), clock=clock, sleep=clock.sleep)
    assert limiter.before_call(model=_Model(), request_signer=_Signer()) is None
    assert limiter.before_call(model=_Model(), request_signer=_Signer()) is None
    assert clock.sleeps == [pytest.approx(1.0)]
    assert limiter.before_call() is None  # unknown shapes are ignored


def test_describe_lists_effective_rules():
    assert "ecs:RegisterTaskDefinition=1/20" in ratelimit.describe(ratelimit.DEFAULT_RULES)
    assert "secretsmanager:DescribeSecret=inf/1" in ratelimit.describe(ratelimit.DEFAULT_RULES)
