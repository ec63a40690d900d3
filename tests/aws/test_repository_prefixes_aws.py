"""AWS tier: CrossAccountRepoAccess ``spec.repositoryPrefixes`` against the harness server.

Given repositories under a prefix (moto), a repository creation template (the
harness's stand-in, ``tests/harness/rct_standin.py``), a pull-through cache rule
(the pull-through cache stand-in) and the registry policy (moto's real calls),
when ``controller.reconcile.cross_account`` runs, then each document carries the
resource's statements and keeps everything else; deleting removes only ours.
ECR calls are counted per operation (botocore before-call hook).
"""

from __future__ import annotations

import json

import pytest

from controller.api import reasons
from controller.aws import repository_policies as policies
from controller.reconcile import cross_account, loop
from tests.aws.test_cross_account_aws import CLUSTER, FOREIGN, NS, ROLE, calls, clock, ecr, remove, run  # noqa: F401

pytestmark = pytest.mark.aws

PREFIX = policies.sid_prefix(CLUSTER, NS, "team")
ACCOUNT = "123456789012"
OTHER_REGISTRY_STATEMENT = {
    "Sid": "ReplicationFromProd",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*",
}
WRITES = {"SetRepositoryPolicy", "DeleteRepositoryPolicy", "CreateRepositoryCreationTemplate",
          "UpdateRepositoryCreationTemplate", "DeleteRepositoryCreationTemplate", "PutRegistryPolicy",
          "DeleteRegistryPolicy"}


def body(prefixes, access="Pull", **extra):
    return {"repositoryPrefixes": prefixes,
            "grants": [{"principals": [{"accountId": "111122223333"}, {"roleArn": ROLE}], "access": access}],
            **extra}


def template(ecr, prefix):
    found = ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"]
    return found[0] if found else None


def statements(text):
    return json.loads(text)["Statement"] if text else []


def ours(items):
    return [s for s in items if s.get("Sid", "").startswith(PREFIX)]


def registry_statements(ecr):
    try:
        return statements(ecr.get_registry_policy()["policyText"])
    except ecr.exceptions.RegistryPolicyNotFoundException:
        return []


def writes(calls):  # noqa: F811 - the fixture is passed in
    return sum(calls[op] for op in WRITES)


def test_existing_repositories_template_and_registry_policy_carry_the_grant(factory, ecr, calls, clock):
    # given a repository under the prefix, one outside it, someone's template, someone's
    # registry statement and a cache rule for the prefix
    for repo in ("quay/library/nginx", "quayside", "other/app"):
        ecr.create_repository(repositoryName=repo)
    ecr.create_repository_creation_template(
        prefix="quay", appliedFor=["PULL_THROUGH_CACHE"], lifecyclePolicy='{"rules":[]}',
        imageTagMutability="IMMUTABLE", repositoryPolicy=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    ecr.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [OTHER_REGISTRY_STATEMENT]}))
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    # when
    result = run(factory, clock, "team", body(["quay"]))
    # then
    assert result.ready, result.status["conditions"]
    assert [r["name"] for r in result.status["repositories"]] == ["quay/library/nginx"]
    repo_policy = statements(ecr.get_repository_policy(repositoryName="quay/library/nginx")["policyText"])
    assert len(ours(repo_policy)) == 1
    kept = template(ecr, "quay")
    assert kept["lifecyclePolicy"] == '{"rules":[]}' and kept["imageTagMutability"] == "IMMUTABLE"
    assert kept["appliedFor"] == ["PULL_THROUGH_CACHE"]
    in_template = statements(kept["repositoryPolicy"])
    assert in_template[0] == FOREIGN and len(ours(in_template)) == 1
    registry = registry_statements(ecr)
    assert registry[0] == OTHER_REGISTRY_STATEMENT
    [cache] = ours(registry)
    assert sorted(cache["Action"]) == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert cache["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/quay/*"
    assert set(cache["Principal"]["AWS"]) == {"arn:aws:iam::111122223333:root", ROLE}
    assert [r["name"] for r in result.status["templates"]] == ["quay"]
    assert result.status["registryPolicy"]["name"] == ACCOUNT and result.status["registryPolicy"]["synced"]

    # a no-op resync: the same reads, no write
    calls.clear()
    again = run(factory, clock, "team", body(["quay"]), status=result.status)
    assert writes(calls) == 0 and again.status == result.status
    # the cost written down in docs/cross-account-pull.md: one page of repositories, one
    # policy read per repository, one template read, one rule listing, one registry read
    assert calls == {"DescribeRepositories": 1, "GetRepositoryPolicy": 1, "DescribeRepositoryCreationTemplates": 1,
                     "DescribePullThroughCacheRules": 1, "GetRegistryPolicy": 1}


def test_absent_template_is_created_with_the_default_applied_for_and_deleted_with_the_resource(
        factory, ecr, calls, clock):
    result = run(factory, clock, "team", body(["ghcr"]))
    assert result.ready, result.status["conditions"]
    made = template(ecr, "ghcr")
    assert made["appliedFor"] == ["PULL_THROUGH_CACHE", "REPLICATION"]
    assert made["description"] == policies.TEMPLATE_MARK
    # no cache rule for the prefix: nothing in the registry policy
    assert registry_statements(ecr) == [] and "registryPolicy" not in result.status
    gone = remove(factory, clock, "team", body(["ghcr"]), result.status)
    assert gone.retry_after is None
    assert template(ecr, "ghcr") is None


def test_the_admin_sets_applied_for(factory, ecr, calls, clock):
    run(factory, clock, "team", body(["ghcr"]), template_applied_for=("CREATE_ON_PUSH",))
    assert template(ecr, "ghcr")["appliedFor"] == ["CREATE_ON_PUSH"]


def test_a_repository_created_later_is_covered_at_the_next_sync(factory, ecr, calls, clock):
    first = run(factory, clock, "team", body(["team"]))
    assert first.status["repositories"] == []
    ecr.create_repository(repositoryName="team/new")
    second = run(factory, clock, "team", body(["team"]), status=first.status)
    assert [r["name"] for r in second.status["repositories"]] == ["team/new"]
    assert len(ours(statements(ecr.get_repository_policy(repositoryName="team/new")["policyText"])))


def test_push_only_grants_get_no_registry_statements(factory, ecr, calls, clock):
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    result = run(factory, clock, "team", body(["quay"], access="Push"))
    assert result.ready and registry_statements(ecr) == []
    assert calls["DescribePullThroughCacheRules"] == 0


def test_template_drift_is_remediated_or_reported(factory, ecr, calls, clock):
    result = run(factory, clock, "team", body(["team"]))
    ecr.update_repository_creation_template(prefix="team", repositoryPolicy=json.dumps(
        {"Version": "2012-10-17", "Statement": [FOREIGN]}))
    reported = run(factory, clock, "team", body(["team"], driftPolicy="Report"), status=result.status,
                   drift_check=True)
    assert not reported.ready and reported.outcome == "drift"
    assert ours(statements(template(ecr, "team")["repositoryPolicy"])) == []
    assert any(d["object"] == "templatePolicy/team" for d in reported.status["drift"])
    repaired = run(factory, clock, "team", body(["team"]), status=result.status, drift_check=True)
    assert repaired.ready
    in_template = statements(template(ecr, "team")["repositoryPolicy"])
    assert in_template[0] == FOREIGN and len(ours(in_template)) == 1
    assert any(d["object"] == "templatePolicy/team" and d["remediated"] for d in repaired.status["drift"])


def test_registry_drift_is_remediated(factory, ecr, calls, clock):
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    result = run(factory, clock, "team", body(["quay"]))
    ecr.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [OTHER_REGISTRY_STATEMENT]}))
    repaired = run(factory, clock, "team", body(["quay"]), status=result.status, drift_check=True)
    assert repaired.ready and len(ours(registry_statements(ecr))) == 1
    assert any(d["object"] == f"registryPolicy/{ACCOUNT}" for d in repaired.status["drift"])


def test_deletion_removes_only_our_statements_everywhere(factory, ecr, calls, clock):
    ecr.create_repository(repositoryName="quay/library/nginx")
    ecr.create_repository_creation_template(
        prefix="quay", appliedFor=["PULL_THROUGH_CACHE"],
        repositoryPolicy=json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}))
    ecr.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [OTHER_REGISTRY_STATEMENT]}))
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    result = run(factory, clock, "team", body(["quay"]))
    # a repository the cache made after the last pass, from the template (ours inside)
    ecr.create_repository(repositoryName="quay/library/redis")
    ecr.set_repository_policy(repositoryName="quay/library/redis", policyText=template(ecr, "quay")["repositoryPolicy"])
    gone = remove(factory, clock, "team", body(["quay"]), result.status)
    assert gone.retry_after is None, gone.status
    assert statements(template(ecr, "quay")["repositoryPolicy"]) == [FOREIGN]
    assert registry_statements(ecr) == [OTHER_REGISTRY_STATEMENT]
    assert statements(ecr.get_repository_policy(repositoryName="quay/library/redis")["policyText"]) == [FOREIGN]
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName="quay/library/nginx")


def test_template_policy_over_the_limit_is_refused_before_writing(factory, ecr, calls, clock):
    # someone's statements fill the template's policy almost to ECR's limit
    big, index = [], 0
    while len(json.dumps({"Version": "2012-10-17", "Statement": big}, separators=(",", ":"))) < 10_100:
        big.append({**FOREIGN, "Sid": f"Big{index}", "Principal": {"AWS": f"arn:aws:iam::{index:012d}:root"}})
        index += 1
    ecr.create_repository_creation_template(
        prefix="team", appliedFor=["REPLICATION"],
        repositoryPolicy=json.dumps({"Version": "2012-10-17", "Statement": big}, separators=(",", ":")))
    calls.clear()
    result = run(factory, clock, "team", body(["team"]))
    assert not result.ready
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reasons.REPOSITORY_POLICY_TOO_LARGE and "template team" in ready["message"]
    assert calls["UpdateRepositoryCreationTemplate"] == 0


def test_recording_actor_plans_the_template_and_registry_writes(factory, ecr, calls, clock):
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    ecr.create_repository(repositoryName="quay/x")
    actor = loop.RecordingActor()
    run(factory, clock, "team", body(["quay"]), actor=actor)
    assert writes(calls) == 0
    assert sorted((p.kind, p.name, p.action) for p in actor.planned) == [
        ("registryPolicy", f"registry policy of {ACCOUNT}", "create"),
        ("repositoryPolicy", "repository quay/x", "create"),
        ("templatePolicy", "repository creation template quay", "create"),
    ]


def test_status_validates_against_the_model(factory, ecr, clock):
    from controller.api.models import CrossAccountRepoAccessStatus

    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    result = run(factory, clock, "team", body(["quay"]))
    CrossAccountRepoAccessStatus.model_validate(result.status)
    assert cross_account.lenient_prefixes({}, result.status) == ["quay"]


@pytest.mark.parametrize("answer", ["503", "throttle", "drop"])
def test_a_template_create_whose_answer_is_lost_is_observed_again_not_repeated_into_an_error(
        factory, ecr, clock, aws_server, answer):
    aws_server.faults.configure(seed=3, lost_answers=[answer], max_lost_per_operation=1, scoped=[
        {"service": "ecr", "operation": "CreateRepositoryCreationTemplate", "rates": {"lost": 1.0}}])
    mark = aws_server.calls.mark()
    result = run(factory, clock, "team", body(["team"]))
    aws_server.faults.clear()
    assert result.ready, result.status["conditions"]
    creates = [c for c in aws_server.calls.list(since=mark) if c.operation == "CreateRepositoryCreationTemplate"]
    assert creates[0].lost and sum(1 for c in creates if c.done) <= 2
    assert len(ours(statements(template(ecr, "team")["repositoryPolicy"]))) == 1
    again = run(factory, clock, "team", body(["team"]), status=result.status)
    assert again.ready and again.status == result.status
