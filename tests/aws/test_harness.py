"""The AWS test harness over the wire: the pull-through cache stand-in, faults, calls, control.

Every test talks to the session's harness server with plain boto3 clients, the
way the operator does; fault tests use clients with retries disabled so each
injected fault is seen as the client sees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import pydantic
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ParamValidationError

from tests.harness import ptc_standin as ptc
from tests.harness.awsserver import connect
from tests.harness.faults import MAX_LATENCY_SECONDS, FaultConfig

pytestmark = pytest.mark.aws

REGION = "us-east-1"
REPO_ROOT = Path(__file__).resolve().parents[2]
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
PROCESS_START_SECONDS = 60


def _client(service: str, config: Config = NO_RETRIES):
    return boto3.client(service, region_name=REGION, config=config)


def _ptc_secret(name: str = "ecr-pullthroughcache/ns/docker", **extra) -> str:
    sm = _client("secretsmanager")
    return sm.create_secret(Name=name, SecretString='{"username":"u","accessToken":"t"}', **extra)["ARN"]


def _error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


# --------------------------------------------------------------------------- the stand-in


def test_rule_lifecycle_create_describe_update_validate_delete(aws_server):
    # given
    ecr = _client("ecr")
    first, second = _ptc_secret(), _ptc_secret("ecr-pullthroughcache/ns/docker2")
    # when / then
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="docker", upstreamRegistryUrl="registry-1.docker.io",
        upstreamRegistry="docker-hub", credentialArn=first,
    )
    assert created["upstreamRegistry"] == "docker-hub" and created["registryId"] == "123456789012"
    rules = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["docker"])["pullThroughCacheRules"]
    assert [(r["ecrRepositoryPrefix"], r["credentialArn"]) for r in rules] == [("docker", first)]

    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="docker", credentialArn=second)
    assert updated["credentialArn"] == second
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="docker")["isValid"] is True

    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="docker")
    assert deleted["credentialArn"] == second
    with pytest.raises(ClientError) as caught:
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["docker"])
    assert _error_code(caught) == ptc.NOT_FOUND
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []


def test_a_prefix_is_unique_per_registry(aws_server):
    ecr = _client("ecr")
    arn = _ptc_secret()
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="docker", upstreamRegistryUrl="registry-1.docker.io",
                                       credentialArn=arn)
    with pytest.raises(ClientError) as caught:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="docker", upstreamRegistryUrl="ghcr.io",
                                           credentialArn=arn)
    assert _error_code(caught) == ptc.ALREADY_EXISTS


def test_at_most_50_rules_per_registry(aws_server):
    ecr = _client("ecr")
    for index in range(ptc.MAX_RULES_PER_REGISTRY):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=f"quay-{index:02d}", upstreamRegistryUrl="quay.io")
    with pytest.raises(ClientError) as caught:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay-50", upstreamRegistryUrl="quay.io")
    assert _error_code(caught) == ptc.LIMIT_EXCEEDED
    paginator = ecr.get_paginator("describe_pull_through_cache_rules")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 20}))
    assert sum(len(page["pullThroughCacheRules"]) for page in pages) == ptc.MAX_RULES_PER_REGISTRY
    assert len(pages) == 3


@pytest.mark.parametrize(
    ("prefix", "code"),
    [("Docker", ptc.VALIDATION), ("-docker", ptc.VALIDATION), ("a" * 31, ptc.VALIDATION), ("d", ptc.VALIDATION)],
    ids=["upper-case", "leading-hyphen", "31-characters", "1-character"],
)
def test_a_bad_prefix_is_refused(aws_server, prefix, code):
    # botocore checks minimum lengths itself; turn that off to see the server's answer.
    ecr = _client("ecr", NO_RETRIES.merge(Config(parameter_validation=False)))
    with pytest.raises(ClientError) as caught:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
    assert _error_code(caught) == code
    assert aws_server.standin.rules("123456789012", REGION) == []


def test_botocore_itself_refuses_a_one_character_prefix(aws_server):
    with pytest.raises(ParamValidationError):
        _client("ecr").create_pull_through_cache_rule(ecrRepositoryPrefix="d", upstreamRegistryUrl="quay.io")


@pytest.mark.parametrize(
    ("secret_name", "extra", "code"),
    [
        (None, {}, ptc.INVALID_PARAMETER),
        ("regaccess/ns/docker", {}, ptc.VALIDATION),
        ("ecr-pullthroughcache/ns/absent", {"create": False}, ptc.SECRET_NOT_FOUND),
        ("ecr-pullthroughcache/ns/kms", {"KmsKeyId": "customer-key"}, ptc.UNABLE_TO_DECRYPT),
    ],
    ids=["missing-credential", "secret-without-prefix", "secret-absent", "customer-managed-key"],
)
def test_the_credential_rules(aws_server, secret_name, extra, code):
    ecr = _client("ecr")
    arn = None
    if secret_name:
        if extra.pop("create", True):
            if "KmsKeyId" in extra:
                extra["KmsKeyId"] = _client("kms").create_key()["KeyMetadata"]["Arn"]
            arn = _ptc_secret(secret_name, **extra)
        else:
            arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{secret_name}-AbCdEf"
    request = {"ecrRepositoryPrefix": "docker", "upstreamRegistryUrl": "registry-1.docker.io"}
    if arn:
        request["credentialArn"] = arn
    with pytest.raises(ClientError) as caught:
        ecr.create_pull_through_cache_rule(**request)
    assert _error_code(caught) == code


def test_an_unknown_upstream_url_is_unsupported(aws_server):
    with pytest.raises(ClientError) as caught:
        _client("ecr").create_pull_through_cache_rule(ecrRepositoryPrefix="nexus",
                                                      upstreamRegistryUrl="nexus.example.com")
    assert _error_code(caught) == ptc.UNSUPPORTED_UPSTREAM


def test_every_other_ecr_call_still_goes_to_moto(aws_server):
    ecr = _client("ecr")
    ecr.create_repository(repositoryName="app")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["app"]


def test_reset_forgets_rules(aws_server):
    _client("ecr").create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    aws_server.reset()
    assert _client("ecr").describe_pull_through_cache_rules()["pullThroughCacheRules"] == []


# --------------------------------------------------------------------------- the call record


def test_calls_are_recorded_per_service_and_operation(aws_server):
    ecr, iam = _client("ecr"), _client("iam")
    mark = aws_server.calls.mark()
    ecr.create_repository(repositoryName="app")
    ecr.describe_repositories()
    ecr.describe_repositories()
    iam.list_roles()
    _client("batch").describe_job_queues()
    assert aws_server.calls.counts(since=mark) == {
        "ecr:CreateRepository": 1, "ecr:DescribeRepositories": 2, "iam:ListRoles": 1,
        "batch:DescribeJobQueues": 1,
    }
    assert [c.operation for c in aws_server.calls.writes(since=mark)] == ["CreateRepository"]
    assert aws_server.calls.count("ecr", since=mark) == 3


# --------------------------------------------------------------------------- faults


def test_throttling_has_each_protocols_shape(aws_server):
    aws_server.faults.configure(rates={"throttle": 1.0})
    with pytest.raises(ClientError) as json_error:
        _client("ecr").describe_repositories()
    with pytest.raises(ClientError) as query_error:
        _client("iam").list_roles()
    assert (_error_code(json_error), json_error.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ThrottlingException", 400)
    assert (_error_code(query_error), query_error.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "Throttling", 400)
    assert aws_server.faults.injected("throttle") == 2


def test_5xx_answers_are_500_internal_failure_or_503_service_unavailable(aws_server):
    aws_server.faults.configure(seed=7, rates={"error5xx": 1.0})
    seen = set()
    for _ in range(20):
        with pytest.raises(ClientError) as caught:
            _client("secretsmanager").list_secrets()
        seen.add((caught.value.response["ResponseMetadata"]["HTTPStatusCode"], _error_code(caught)))
    assert seen == {(500, "InternalFailure"), (503, "ServiceUnavailable")}
    assert aws_server.faults.injected("error5xx", "secretsmanager", "ListSecrets") == 20


def test_latency_is_injected_and_bounded(aws_server):
    aws_server.faults.configure(rates={"latency": 1.0}, latency_max_seconds=0.3)
    started = time.monotonic()
    for _ in range(5):
        _client("ecr").describe_repositories()
    elapsed = time.monotonic() - started
    assert 0.05 < elapsed < 5 * 0.3 + 3
    assert aws_server.faults.injected("latency") == 5


def test_a_dropped_connection_never_reaches_aws(aws_server):
    aws_server.faults.configure(scoped=[{"operation": "CreateRepository", "rates": {"drop": 1.0}}])
    ecr = _client("ecr")
    with pytest.raises(ConnectionClosedError):
        ecr.create_repository(repositoryName="app")
    assert ecr.describe_repositories()["repositories"] == []
    assert aws_server.calls.list()[0].fault == "drop"


def _sessions_opened(client, calls):
    """Run ``calls`` (callables taking the client) and count the TCP connections urllib3 opened."""
    import urllib3.connection

    opened = []
    original = urllib3.connection.HTTPConnection._new_conn  # noqa: SLF001

    def counting(self):
        opened.append(self)
        return original(self)

    urllib3.connection.HTTPConnection._new_conn = counting  # noqa: SLF001
    try:
        for call in calls:
            try:
                call(client)
            except (ClientError, ConnectionClosedError):
                pass
    finally:
        urllib3.connection.HTTPConnection._new_conn = original  # noqa: SLF001
    return len(opened)


def test_connections_are_kept_alive_between_calls_as_aws_keeps_them(aws_server):
    """AWS endpoints keep connections open; the harness must too, else every call in a test
    or in the benchmark pays a TCP connect the operator never pays against AWS."""
    ecr = _client("ecr")
    ecr.describe_repositories()  # the one connection this client opens
    assert _sessions_opened(ecr, [lambda c, i=i: c.create_repository(repositoryName=f"keep-{i}") for i in range(10)]
                            + [lambda c: c.describe_repositories()]) == 0
    assert len(ecr.describe_repositories()["repositories"]) == 10


def test_concurrent_writes_and_reads_of_secrets_never_fail_as_aws_never_does(aws_server):
    """moto's stores are unlocked dicts; before the harness served moto one request at a time,
    a DescribeSecret racing a CreateSecret failed with HTTP 500 ("dictionary changed size during
    iteration") in the 10,000-resource benchmark."""
    import concurrent.futures

    mark = aws_server.calls.mark()

    def writer_and_reader(worker: int) -> None:
        sm = _client("secretsmanager")
        for i in range(40):
            sm.create_secret(Name=f"race/{worker}/{i}", SecretString="x")
            try:  # another worker's secret: it may not exist yet, but the answer is never a 500
                sm.describe_secret(SecretId=f"race/{(worker + 1) % 4}/{i}")
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ResourceNotFoundException"

    # The server runs in this process: switching threads as often as the interpreter can makes
    # the race a certainty within 160 writes instead of a 10,000-secret benchmark's luck.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(writer_and_reader, w) for w in range(4)]:
                future.result(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    statuses = Counter(call.status for call in aws_server.calls.list(mark))
    assert statuses[200] >= 160 and not [s for s in statuses if s is None or s >= 500], statuses
    pages = _client("secretsmanager").get_paginator("list_secrets").paginate()
    assert sum(len(page["SecretList"]) for page in pages) == 160


def test_a_secret_is_found_by_name_full_arn_and_partial_arn_and_not_by_a_near_miss(aws_server):
    """The harness finds secrets by key instead of moto's scan of every secret; the answers
    must stay AWS's (Secrets Manager User Guide: a secret id is its name or its ARN)."""
    sm = _client("secretsmanager")
    arn = sm.create_secret(Name="team/app-1", SecretString="one")["ARN"]
    sm.create_secret(Name="team/app", SecretString="two")
    partial = arn.rsplit("-", 1)[0]
    assert arn.startswith(partial) and len(arn) == len(partial) + 7
    assert sm.describe_secret(SecretId="team/app-1")["ARN"] == arn
    assert sm.describe_secret(SecretId=arn)["Name"] == "team/app-1"
    assert sm.describe_secret(SecretId=partial)["Name"] == "team/app-1"
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "one"
    for near_miss in ("team/app-", "team/app-1x", arn[:-1] + ("A" if arn[-1] != "A" else "B")):
        with pytest.raises(ClientError) as missing:
            sm.describe_secret(SecretId=near_miss)
        assert _error_code(missing) == "ResourceNotFoundException", near_miss
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as gone:
        sm.describe_secret(SecretId="team/app-1")
    assert _error_code(gone) == "ResourceNotFoundException"
    assert sm.describe_secret(SecretId="team/app")["Name"] == "team/app"


def test_after_a_cut_connection_the_next_call_opens_a_new_one_and_is_answered(aws_server):
    aws_server.faults.configure(scoped=[{"operation": "CreateRepository", "rates": {"abort": 1.0}}])
    ecr = _client("ecr")
    ecr.describe_repositories()
    opened = _sessions_opened(ecr, [lambda c: c.create_repository(repositoryName="cut"),
                                    lambda c: c.describe_repositories(), lambda c: c.describe_repositories()])
    assert opened == 1  # the cut one is not reused; the new one is kept for the third call
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["cut"]


def test_an_aborted_answer_is_seen_as_a_closed_connection_but_the_write_happened(aws_server):
    aws_server.faults.configure(scoped=[{"operation": "CreateRepository", "rates": {"abort": 1.0}}])
    ecr = _client("ecr")
    with pytest.raises(ConnectionClosedError):
        ecr.create_repository(repositoryName="app")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["app"]


@pytest.mark.parametrize("answer, status, caught", [
    ("throttle", 400, "ThrottlingException"),
    ("500", 500, "InternalFailure"),
    ("503", 503, "ServiceUnavailable"),
    ("drop", None, None),
], ids=["throttle", "500", "503", "dropped"])
def test_a_lost_answer_hides_a_write_that_happened(aws_server, answer, status, caught):
    aws_server.faults.configure(seed=5, lost_answers=[answer],
                                scoped=[{"operation": "CreateRepository", "rates": {"lost": 1.0}}])
    ecr = _client("ecr")
    if caught is None:
        with pytest.raises(ConnectionClosedError):
            ecr.create_repository(repositoryName="app")
    else:
        with pytest.raises(ClientError) as error:
            ecr.create_repository(repositoryName="app")
        assert _error_code(error) == caught
    # AWS did the work; the record says so beside what the client got.
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["app"]
    create = aws_server.calls.list()[0]
    assert (create.fault, create.status, create.aws_status) == ("lost", status, 200)
    assert create.done and create.lost and not create.answered
    assert [c.operation for c in aws_server.calls.lost()] == ["CreateRepository"]
    assert aws_server.faults.injected("lost", "ecr", "CreateRepository") == 1


def test_lost_answers_are_bounded_per_operation_and_can_spare_reads(aws_server):
    aws_server.faults.configure(seed=1, max_lost_per_operation=2,
                                scoped=[{"calls": "writes", "rates": {"lost": 1.0}}])
    ecr = _client("ecr")
    outcomes = []
    for index in range(4):
        try:
            ecr.create_repository(repositoryName=f"r{index}")
            outcomes.append("answered")
        except (ClientError, ConnectionClosedError):
            outcomes.append("lost")
    assert outcomes == ["lost", "lost", "answered", "answered"]
    assert len(ecr.describe_repositories()["repositories"]) == 4  # reads are not in the scope
    assert len(aws_server.calls.done("ecr", "CreateRepository")) == 4
    assert len(aws_server.calls.lost("ecr", "CreateRepository")) == 2


def test_faults_before_aws_are_recorded_as_not_done(aws_server):
    aws_server.faults.configure(scoped=[{"operation": "CreateRepository", "rates": {"error5xx": 1.0}}])
    with pytest.raises(ClientError):
        _client("ecr").create_repository(repositoryName="app")
    aws_server.faults.clear()
    _client("ecr").create_repository(repositoryName="app")
    refused, created = aws_server.calls.list()
    assert (refused.aws_status, refused.done, created.aws_status, created.done) == (None, False, 200, True)


def test_fail_first_n_calls_of_one_operation(aws_server):
    # ECR's answer while IAM has not yet propagated a new role (eventual consistency).
    message = "Invalid repository policy provided"
    aws_server.faults.configure(fail_first=[{"service": "ecr", "operation": "SetRepositoryPolicy", "count": 2,
                                             "code": "InvalidParameterException", "message": message}])
    ecr = _client("ecr")
    ecr.create_repository(repositoryName="app")
    policy = ('{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow",'
              '"Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"ecr:BatchGetImage"}]}')
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            ecr.set_repository_policy(repositoryName="app", policyText=policy)
        assert (_error_code(caught), caught.value.response["Error"]["Message"]) == (
            "InvalidParameterException", message)
    ecr.set_repository_policy(repositoryName="app", policyText=policy)
    assert aws_server.faults.counts()["failFirst"] == 2


def test_the_same_seed_replays_the_same_faults(aws_server):
    def run() -> list[str | None]:
        aws_server.faults.configure(seed=42, rates={"throttle": 0.3, "error5xx": 0.2})
        mark = aws_server.calls.mark()
        for _ in range(30):
            try:
                _client("ecr").describe_repositories()
            except ClientError:
                pass
        return [call.fault for call in aws_server.calls.list(since=mark)]

    first, second = run(), run()
    assert first == second
    assert {"throttle", "error5xx", None} <= set(first)


def test_standard_retries_recover_from_30_percent_throttling(aws_server):
    aws_server.faults.configure(seed=3, rates={"throttle": 0.3})
    ecr = _client("ecr", Config(retries={"mode": "standard", "max_attempts": 10}))
    for _ in range(40):
        ecr.describe_repositories()
    throttled = aws_server.faults.injected("throttle")
    assert 3 < throttled < 40
    assert aws_server.calls.count("ecr", "DescribeRepositories") == 40 + throttled


@pytest.mark.parametrize(
    "config",
    [
        {"rates": {"throttle": 1.5}},
        {"rates": {"drop": -0.1}},
        {"rates": {"throttle": 0.6, "error5xx": 0.6}},
        {"latency_max_seconds": MAX_LATENCY_SECONDS + 1},
        {"fail_first": [{"operation": "X", "count": 0, "code": "C"}]},
        {"surprise": True},
        {"rates": {"lost": 0.5, "abort": 0.6}},
        {"lost_answers": []},
        {"lost_answers": ["teapot"]},
        {"max_lost_per_operation": -1},
        {"scoped": [{"calls": "some", "rates": {}}]},
    ],
    ids=["rate-above-1", "negative-rate", "failures-above-1", "latency-over-cap", "zero-count", "unknown-field",
         "lost-plus-abort-above-1", "no-lost-answer", "unknown-lost-answer", "negative-lost-bound",
         "unknown-call-kind"],
)
def test_fault_settings_are_bounded(aws_server, config):
    with pytest.raises(pydantic.ValidationError):
        FaultConfig.model_validate(config)
    answer = requests.post(f"{aws_server.url}/_harness/faults", json=config, timeout=10)
    assert answer.status_code == 400
    assert aws_server.faults.config == FaultConfig()


# --------------------------------------------------------------------------- control endpoints and process mode


def test_the_control_endpoints_configure_faults_and_read_calls(aws_server):
    remote = connect(aws_server.url)
    remote.faults.configure(rates={"throttle": 1.0})
    with pytest.raises(ClientError):
        _client("ecr").describe_repositories()
    assert remote.faults.injected("throttle", "ecr") == 1
    remote.faults.clear()
    _client("ecr").describe_repositories()
    assert [(c.operation, c.fault) for c in remote.calls.list()] == [
        ("DescribeRepositories", "throttle"), ("DescribeRepositories", None)]
    assert remote.calls.mark() == 2
    remote.reset()
    assert remote.calls.list() == [] and remote.faults.counts()["throttle"] == 0


def test_the_server_runs_as_its_own_process(aws, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.awsserver", "--port", "0", "--max-seconds", "120"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.poll() is not None else url
        remote = connect(url)
        remote.wait_ready(PROCESS_START_SECONDS)
        ecr = boto3.client("ecr", region_name=REGION, endpoint_url=url, config=NO_RETRIES)
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
        assert remote.calls.counts() == {"ecr:CreatePullThroughCacheRule": 1}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.close()
        process.stderr.close()
