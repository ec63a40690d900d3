"""CrossAccountRepoAccess ``spec.repositoryPrefixes`` end to end (issue 16).

Given, under one prefix, an existing repository, a repository creation template
someone created first (with their own statement and settings), a registry policy
holding someone else's statement, and a pull-through cache rule for the prefix,
when a CrossAccountRepoAccess with a Pull grant on the prefix is applied through
the real API server and the operator process, then each of the four carries the
grant and keeps what was there; a repository created later under the prefix is
covered by a drift check; and deleting the resource removes only its own
statements everywhere.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import wait_for
from tests.e2e.support import ACCOUNT, DRIFT_WAIT, SETTLE, custom_resource, delete_all, wait_ready, xrepo_path

pytestmark = pytest.mark.e2e

PULL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
CACHE = {"ecr:CreateRepository", "ecr:BatchImportUpstreamImage"}
GRANTEE = "arn:aws:iam::222222222222:root"
THEIR_REPOSITORY_STATEMENT = {
    "Sid": "TerraformReadOnly",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
    "Action": ["ecr:BatchGetImage"],
}
THEIR_REGISTRY_STATEMENT = {
    "Sid": "ReplicationFromProd",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*",
}


def statements(text: str | None) -> list[dict]:
    return json.loads(text)["Statement"] if text else []


def as_set(value) -> set:
    return set(value) if isinstance(value, list) else {value}


def granted(statement: dict) -> tuple[frozenset, frozenset]:
    return frozenset(as_set(statement["Principal"]["AWS"])), frozenset(as_set(statement["Action"]))


@pytest.fixture
def cleanup(kube, operator, namespace, aws_e2e):
    yield
    print("\n".join(line for line in operator.log_text().splitlines() if namespace in line)[-20000:])
    delete_all(kube, namespace)
    try:  # the registry policy is the account's: leave it as other tests expect (absent)
        aws_e2e.client("ecr").delete_registry_policy()
    except aws_e2e.client("ecr").exceptions.RegistryPolicyNotFoundException:
        pass


def test_prefix_grant_reaches_repositories_template_and_registry_policy_and_leaves_only_theirs(
        kube, operator, namespace, aws_e2e, aws_server_session, cleanup):
    ecr = aws_e2e.client("ecr")
    prefix = f"{namespace}-quay"  # also a valid cache rule prefix (2-30 characters)
    existing = f"{prefix}/library/nginx"
    ecr.create_repository(repositoryName=existing)
    ecr.create_repository(repositoryName=f"{namespace}-other/app")  # not under the prefix
    their_policy = json.dumps({"Version": "2012-10-17", "Statement": [THEIR_REPOSITORY_STATEMENT]})
    ecr.create_repository_creation_template(prefix=prefix, appliedFor=["PULL_THROUGH_CACHE"],
                                            description="made by the platform team", lifecyclePolicy='{"rules":[]}',
                                            imageTagMutability="IMMUTABLE", repositoryPolicy=their_policy)
    ecr.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17",
                                                   "Statement": [THEIR_REGISTRY_STATEMENT]}))
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")

    kube.create(xrepo_path(namespace), custom_resource("CrossAccountRepoAccess", namespace, "cache", {
        "repositoryPrefixes": [prefix], "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"}]}))
    obj = wait_ready(kube, xrepo_path(namespace, "cache"))

    # the existing repository under the prefix carries the grant (and only it is a row)
    assert [r["name"] for r in obj["status"]["repositories"]] == [existing]
    [grant] = statements(ecr.get_repository_policy(repositoryName=existing)["policyText"])
    assert granted(grant) == (frozenset({GRANTEE}), frozenset(PULL))
    # the template keeps its settings and their statement, and carries ours
    template = ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"][0]
    assert (template["description"], template["lifecyclePolicy"], template["imageTagMutability"],
            template["appliedFor"]) == ("made by the platform team", '{"rules":[]}', "IMMUTABLE", ["PULL_THROUGH_CACHE"])
    in_template = statements(template["repositoryPolicy"])
    assert in_template[0] == THEIR_REPOSITORY_STATEMENT
    assert [granted(s) for s in in_template[1:]] == [(frozenset({GRANTEE}), frozenset(PULL))]
    # the registry policy keeps their statement and lets the grantee fill the cache
    registry = statements(ecr.get_registry_policy()["policyText"])
    assert registry[0] == THEIR_REGISTRY_STATEMENT
    [cache] = registry[1:]
    assert granted(cache) == (frozenset({GRANTEE}), frozenset(CACHE))
    assert cache["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{prefix}/*"
    assert [r["name"] for r in obj["status"]["templates"]] == [prefix]
    assert obj["status"]["registryPolicy"]["synced"] is True

    # a repository created later under the prefix is covered at the next drift check
    later = f"{prefix}/library/redis"
    ecr.create_repository(repositoryName=later)
    wait_for(lambda: later in [r["name"] for r in kube.get(xrepo_path(namespace, "cache"))["status"]["repositories"]],
             DRIFT_WAIT + SETTLE, "the later repository covered")
    [grant] = statements(ecr.get_repository_policy(repositoryName=later)["policyText"])
    assert granted(grant) == (frozenset({GRANTEE}), frozenset(PULL))

    # deleting the resource removes only its own statements
    kube.delete(xrepo_path(namespace, "cache"))
    wait_for(lambda: kube.get_or_none(xrepo_path(namespace, "cache")) is None, SETTLE, "deleted")
    for repository in (existing, later):
        with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
            ecr.get_repository_policy(repositoryName=repository)
    template = ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"][0]
    assert statements(template["repositoryPolicy"]) == [THEIR_REPOSITORY_STATEMENT]
    assert template["lifecyclePolicy"] == '{"rules":[]}'
    assert statements(ecr.get_registry_policy()["policyText"]) == [THEIR_REGISTRY_STATEMENT]
