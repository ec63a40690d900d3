"""The metrics registry: names, bounded labels, AWS call outcomes, and the health endpoints.

``controller.metrics`` is exercised the way the operator uses it: the handlers'
``_record`` for many distinct resources (the number of series must not grow
with them, and no name, namespace, UID or ARN may become a label value), the
botocore hooks with botocore's real operation models, and ``serve()`` as a real
HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import time

import botocore.session
import pytest
import requests

from controller import handlers, metrics
from controller.api import reasons
from controller.reconcile.result import ReconcileResult

# Every label the operator may use, each with a bounded set of values.
ALLOWED_LABELS = {"kind", "trigger", "result", "service", "operation", "outcome", "object_type",
                  "condition", "status", "reason", "version",
                  "queue"}  # the names of the configured --drift-events-queue-url queues
KINDS = {"RegistryCredential", "CrossAccountRepoAccess"}


def samples() -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for m in metrics.REGISTRY.collect() for s in m.samples]


def series() -> set[tuple[str, tuple]]:
    return {(name, tuple(sorted(labels.items()))) for name, labels, _ in samples()}


def test_every_metric_is_regaccess_prefixed_documented_and_has_bounded_label_names():
    families = list(metrics.REGISTRY.collect())
    assert len(families) >= 12
    for family in families:
        assert family.name.startswith("regaccess_"), family.name
        assert family.documentation.strip(), family.name
    for collector in metrics.REGISTRY._collector_to_names:  # noqa: SLF001 - label names live on the collector
        labels = set(getattr(collector, "_labelnames", ()))
        assert labels <= ALLOWED_LABELS, (collector, labels - ALLOWED_LABELS)


def _result(i: int, drifted: bool) -> ReconcileResult:
    conditions = [
        {"type": "Ready", "status": "True", "reason": reasons.RECONCILED},
        {"type": "Synced", "status": "True", "reason": reasons.RECONCILED},
        {"type": "Drifted", "status": "True" if drifted else "False",
         "reason": reasons.DRIFT_REPORTED if drifted else reasons.NO_DRIFT},
    ]
    status = {"conditions": conditions,
              "secretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/ns-{i}/name-{i}-AbCdEf"}
    result = ReconcileResult(status=status, ready=True)
    if drifted:
        result.drift_found = {"rolePolicy": 1}
    return result


def _record_many(start: int, count: int) -> None:
    for i in range(start, start + count):
        kind = "RegistryCredential" if i % 2 else "CrossAccountRepoAccess"
        for trigger in ("create", "drift"):
            handlers._record(kind, trigger, f"uid-{i}", _result(i, drifted=i % 3 == 0), time.monotonic())


def test_series_do_not_grow_with_the_number_of_resources():
    _record_many(0, 12)
    few = series()
    _record_many(12, 600)
    many = series()
    # Same label sets; only values (counts) differ.
    assert many == few
    for name, labels, _ in samples():
        for value in labels.values():
            assert "arn:" not in value and "uid-" not in value and "ns-" not in value, (name, labels)
        if "kind" in labels:
            assert labels["kind"] in KINDS
    resources = {tuple(sorted(labels.items())): value for name, labels, value in samples()
                 if name == "regaccess_resources"}
    # all three condition types are published
    assert {dict(k)["condition"] for k in resources} == {"Ready", "Synced", "Drifted"}
    ready_total = sum(v for k, v in resources.items() if dict(k)["condition"] == "Ready")
    assert ready_total == 612
    for i in range(612):
        metrics.STATES.forget("RegistryCredential" if i % 2 else "CrossAccountRepoAccess", f"uid-{i}")
    assert not any(name == "regaccess_resources" for name, _, _ in samples())


def test_published_counts_equal_a_recount_after_any_sequence_of_changes():
    """The counts move per change (no recount of every resource); after any mix of sets,
    repeats and forgets they must equal a count from scratch, with no zero-valued series."""
    import random

    rng = random.Random(7)
    statuses = [("True", "Synced"), ("False", "Throttled"), ("Unknown", ""), ("False", "AccessDenied")]
    truth: dict[tuple[str, str], list[dict[str, str]]] = {}
    for _ in range(3000):
        kind, uid = rng.choice(sorted(KINDS)), f"uid-r{rng.randrange(40)}"
        if rng.random() < 0.2:
            metrics.STATES.forget(kind, uid)
            truth.pop((kind, uid), None)
            continue
        conditions = [{"type": name, "status": status, "reason": reason}
                      for name in rng.sample(metrics.ResourceStates.CONDITIONS, rng.randrange(4))
                      for status, reason in [rng.choice(statuses)]]
        metrics.STATES.set(kind, uid, conditions)
        truth[(kind, uid)] = conditions
    expected: dict[tuple[str, str, str, str], float] = {}
    for (kind, _uid), conditions in truth.items():
        for c in conditions:
            key = (kind, c["type"], c["status"], c["reason"])
            expected[key] = expected.get(key, 0) + 1
    published = {(lab["kind"], lab["condition"], lab["status"], lab["reason"]): value
                 for name, lab, value in samples() if name == "regaccess_resources"}
    assert published == expected and all(v > 0 for v in published.values())
    for kind, uid in list(truth):
        metrics.STATES.forget(kind, uid)
    assert not any(name == "regaccess_resources" for name, _, _ in samples())


def test_a_change_does_not_walk_every_resource():
    """A change costs the same at 10 resources and at 10,000: the published counts move per
    change. Recounting walked every resource on every change (O(N) per reconcile)."""

    class NoWalk(dict):
        def _walk(self, *_):
            raise AssertionError("a change walked every resource")
        items = values = keys = __iter__ = _walk

    states = metrics.ResourceStates()
    states._states = NoWalk()  # noqa: SLF001
    for i in range(50):
        states.set("RegistryCredential", f"uid-w{i}", [{"type": "Ready", "status": "True", "reason": "Synced"}])
    states.set("RegistryCredential", "uid-w0", [{"type": "Ready", "status": "False", "reason": "Throttled"}])
    states.forget("RegistryCredential", "uid-w1")
    assert _value("regaccess_resources", {"kind": "RegistryCredential", "reason": "Synced"}) == 48
    for i in range(50):
        states.forget("RegistryCredential", f"uid-w{i}")
    assert not any(name == "regaccess_resources" for name, _, _ in samples())


def test_successful_drift_check_sets_last_check_time_and_failed_one_does_not():
    before = time.time()
    handlers._record("RegistryCredential", "drift", "u-x", ReconcileResult(status={}, outcome="success"), time.monotonic())
    value = metrics.LAST_DRIFT_CHECK.labels("RegistryCredential")._value.get()  # noqa: SLF001
    assert value >= before
    handlers._record("RegistryCredential", "drift", "u-x", ReconcileResult(status={}, outcome="retry"), time.monotonic())
    assert metrics.LAST_DRIFT_CHECK.labels("RegistryCredential")._value.get() == value  # noqa: SLF001
    metrics.STATES.forget("RegistryCredential", "u-x")


class _Http:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _value(name: str, labels: dict[str, str]) -> float:
    return sum(v for n, lab, v in samples() if n == name and all(lab.get(k) == x for k, x in labels.items()))


OUTCOMES = {
    "success": ({}, 200, "success"),
    "throttled": ({"Error": {"Code": "ThrottlingException"}}, 400, "throttled"),
    "iam-throttling": ({"Error": {"Code": "Throttling"}}, 400, "throttled"),
    "not-found": ({"Error": {"Code": "RepositoryPolicyNotFoundException"}}, 400, "error"),
    "server-error": ({"Error": {"Code": "InternalFailure"}}, 500, "error"),
}


@pytest.mark.parametrize("parsed, code, outcome", OUTCOMES.values(), ids=OUTCOMES.keys())
def test_aws_call_outcome_from_botocore_hooks(parsed, code, outcome):
    model = botocore.session.get_session().get_service_model("ecr").operation_model("GetRepositoryPolicy")
    labels = {"service": "ecr", "operation": "GetRepositoryPolicy", "outcome": outcome}
    before = _value("regaccess_aws_api_calls_total", labels)
    context: dict = {}
    metrics._before_call(model=model, context=context)
    metrics._after_call(model=model, parsed=parsed, context=context, http_response=_Http(code))
    assert _value("regaccess_aws_api_calls_total", labels) == before + 1


def test_throttled_attempts_are_counted_before_retry():
    model = botocore.session.get_session().get_service_model("iam").operation_model("GetRolePolicy")
    labels = {"service": "iam", "operation": "GetRolePolicy"}
    before = _value("regaccess_aws_throttles_total", labels)
    metrics._needs_retry(response=(_Http(400), {"Error": {"Code": "Throttling"}}), operation=model)
    metrics._needs_retry(response=(_Http(429), {}), operation=model)
    metrics._needs_retry(response=(_Http(200), {}), operation=model)
    metrics._needs_retry(response=None, operation=model)
    assert _value("regaccess_aws_throttles_total", labels) == before + 2


# --------------------------------------------------------------------------- health endpoints over HTTP


@pytest.fixture
def served():
    health = metrics.Health(max_heartbeat_age=60)
    server = metrics.serve(health, "127.0.0.1", 0)
    yield health, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_liveness_follows_the_heartbeat(served):
    health, url = served
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    health.last_beat = time.monotonic() - 120  # the event loop stopped beating
    answer = requests.get(f"{url}/healthz", timeout=5)
    assert answer.status_code == 503 and "stalled" in answer.text
    health.beat()
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200


def test_readiness_waits_for_kopf_and_a_live_loop(served):
    health, url = served
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 503
    health.ready.set()
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    health.last_beat = time.monotonic() - 120
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 503


def test_metrics_endpoint_and_unknown_paths(served):
    _, url = served
    answer = requests.get(f"{url}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")  # Prometheus text format
    assert "# TYPE regaccess_reconcile_total counter" in answer.text
    assert requests.get(f"{url}/nope", timeout=5).status_code == 404
