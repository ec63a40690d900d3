"""The tenancy guard end to end: a hostile tenant's resources are refused with no AWS call.

Given a real API server, the operator as a process and the AWS test server, and a
TenancyPolicy (cluster-scoped) that holds each namespace to its own names and denies by
default, when a tenant in one namespace creates resources naming another namespace's
secret, policy, role, family, job definition, cache prefix, repository, Region, account or
role to assume (24 attempts across the three kinds), then each is Ready=False reason
NotPermitted naming the field, and the harness's call record shows not one AWS call from
the moment they were created. A policy change is applied without a restart: widening it
makes a refused resource Ready, narrowing it refuses it again, and deleting the policy
brings back the shipped default; deleting a refused resource makes no AWS call (the secret
it made while permitted is left in place).
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.e2e.conftest import OPEN_TENANCY_POLICY, TENANCY_POLICIES, start_operator
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import (
    SETTLE,
    basic_auth_secret,
    custom_resource,
    delete_all,
    rc_path,
    wait_condition,
    wait_ready,
    wait_warning,
    xrepo_path,
)

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "999988887777"
PULL = "ecrpullsecrets"
POLICY_PATH = f"{TENANCY_POLICIES}/default"
SHARED = {
    "secretNames": ["regaccess/{namespace}/*", "ecr-pullthroughcache/{namespace}/*"],
    "policyNames": ["regaccess-{namespace}-*"],
    "executionRoles": ["{namespace}-*"],
    "taskDefinitionFamilies": ["{namespace}-*"],
    "jobDefinitions": ["{namespace}-*"],
    "pullThroughCachePrefixes": ["{namespace}-*"],
    "repositories": ["{namespace}/*"],
    "regions": ["us-east-1"],
    "accounts": [ACCOUNT],
    "roleArns": [f"arn:aws:iam::{ACCOUNT}:role/regaccess/{{namespace}}-*"],
}


def set_policy(kube, spec: dict | None) -> None:
    """Replace the cluster's TenancyPolicy ``default`` (None: delete it, the shipped default)."""
    if kube.get_or_none(POLICY_PATH) is not None:
        kube.delete(POLICY_PATH)
        wait_for(lambda: kube.get_or_none(POLICY_PATH) is None, 15, "TenancyPolicy deleted")
    if spec is not None:
        kube.create(TENANCY_POLICIES, {**OPEN_TENANCY_POLICY, "spec": spec})


@pytest.fixture
def tenants(kube, control_plane, moto_server, tmp_path):
    """Two fresh namespaces and an operator watching only them (``-n``): resources other
    modules left elsewhere make no calls that the call record would count against these."""
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b = f"ta-{suffix}", f"tb-{suffix}"
    for name in (team_a, team_b):
        kube.create_namespace(name)
        kube.create(kube.secret_path(name), basic_auth_secret(name, "src", password=f"pw-{name}"))
    set_policy(kube, {"defaultAction": "Deny", "default": SHARED})
    operator = start_operator(control_plane, moto_server, tmp_path, namespaces=[team_a, team_b])
    try:
        yield team_a, team_b
        print("\n".join(line for line in operator.log_text().splitlines() if suffix in line)[-20000:])
        delete_all(kube, team_a)
        delete_all(kube, team_b)
    finally:
        operator.kill(signal.SIGTERM)
        set_policy(kube, OPEN_TENANCY_POLICY["spec"])


def rc_spec(**extra) -> dict:
    return {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}, **extra}


def attempts(own: str, other: str) -> list[tuple[str, str, dict, str]]:
    """(kind, name, spec, refused field) for each cross-tenant or out-of-bounds attempt."""
    grant = [{"principals": [{"accountId": "444455556666"}], "access": "Pull"}]
    role = f"arn:aws:iam::{ACCOUNT}:role/regaccess/{own}-deployer"
    hub = {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": f"{own}-hub"}
    rc = [
        ("s-other-ns", {"secret": {"name": f"regaccess/{other}/hub", "forceDeleteWithoutRecovery": True},
                        "adoptExisting": True}, "spec.secret.name"),
        ("s-outside", {"secret": {"name": "prod/database", "forceDeleteWithoutRecovery": True}}, "spec.secret.name"),
        ("s-root", {"secret": {"name": "regaccess/x", "forceDeleteWithoutRecovery": True}}, "spec.secret.name"),
        ("s-ptc-other", {"secret": {"name": f"ecr-pullthroughcache/{other}/hub", "forceDeleteWithoutRecovery": True},
                         "pullThroughCache": hub}, "spec.secret.name"),
        ("p-other", {"grants": {"executionRoles": [f"{own}-exec"], "policyName": f"regaccess-{other}-hub"}},
         "spec.grants.policyName"),
        ("p-admin", {"grants": {"executionRoles": [f"{own}-exec"], "policyName": "AdministratorAccess"}},
         "spec.grants.policyName"),
        ("r-other", {"grants": {"executionRoles": [f"{other}-exec"]}}, "spec.grants.executionRoles[0]"),
        ("r-arn", {"grants": {"executionRoles": [f"arn:aws:iam::{ACCOUNT}:role/{other}-exec"]}},
         "spec.grants.executionRoles[0]"),
        ("r-acct", {"grants": {"executionRoles": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/{own}-exec"]}},
         "spec.grants.executionRoles[0]"),
        ("f-other", {"consumers": {"ecsTaskDefinitions": [{"family": f"{other}-api"}]}},
         "spec.consumers.ecsTaskDefinitions[0].family"),
        ("j-other", {"consumers": {"batchJobDefinitions": [{"name": f"{other}-job"}]}},
         "spec.consumers.batchJobDefinitions[0].name"),
        ("c-other", {"secret": {"name": f"ecr-pullthroughcache/{own}/hub", "forceDeleteWithoutRecovery": True},
                     "pullThroughCache": {**hub, "ecrRepositoryPrefix": f"{other}-hub"}},
         "spec.pullThroughCache.ecrRepositoryPrefix"),
        ("g-region", {"region": "eu-west-1"}, "spec.region"),
        ("a-role-other-ns", {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/regaccess/{other}-deployer"}, "spec.roleArn"),
        ("a-role-acct", {"roleArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/regaccess/{own}-deployer"}, "spec.roleArn"),
    ]
    xrepo = [
        ("x-repo", {"repositories": [f"{other}/api"], "grants": grant}, "spec.repositories[0]"),
        ("x-prefix", {"repositories": [], "repositoryPrefixes": [other], "grants": grant},
         "spec.repositoryPrefixes[0]"),
        ("x-root", {"repositories": [], "repositoryPrefixes": ["ROOT"], "grants": grant},
         "spec.repositoryPrefixes[0]"),
        ("x-region", {"repositories": [f"{own}/api"], "region": "eu-west-1", "grants": grant}, "spec.region"),
        ("x-role", {"repositories": [f"{own}/api"], "roleArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/x",
                    "grants": grant}, "spec.roleArn"),
    ]
    pull = [
        ("e-acct", {"registries": [{"registryId": OTHER_ACCOUNT}]}, "spec.registries[0].registryId"),
        ("e-region", {"registries": [{"region": "eu-west-1"}]}, "spec.registries[0].region"),
        ("e-role", {"registries": [{}], "roleArn": f"arn:aws:iam::{ACCOUNT}:role/regaccess/{other}-puller"},
         "spec.roleArn"),
        ("e-role-acct", {"registries": [{}], "roleArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/regaccess/{own}-p"},
         "spec.roleArn"),
    ]
    return ([("RegistryCredential", n, rc_spec(**s) if "secret" not in s else {**rc_spec(), **s}, f)
             for n, s, f in rc]
            + [("CrossAccountRepoAccess", n, s, f) for n, s, f in xrepo]
            + [("ECRPullSecret", n, s, f) for n, s, f in pull])


def path_of(kube, kind: str, namespace: str, name: str | None = None) -> str:
    if kind == "RegistryCredential":
        return rc_path(namespace, name)
    if kind == "CrossAccountRepoAccess":
        return xrepo_path(namespace, name)
    return kube.rc_path(namespace, name, plural=PULL)


def test_cross_tenant_attempts_are_refused_with_no_aws_call(kube, tenants, aws_server_session):
    team_a, team_b = tenants
    calls = aws_server_session.calls
    tried = attempts(team_a, team_b)
    assert len(tried) >= 20
    time.sleep(2)  # the policy's watch event reaches the operator before the first resource
    mark = calls.mark()
    for kind, name, spec, _ in tried:
        kube.create(path_of(kube, kind, team_a), custom_resource(kind, team_a, name, spec))
    for kind, name, _, field in tried:
        obj = wait_condition(kube, path_of(kube, kind, team_a, name), status="False", reason="NotPermitted",
                             what=f"{kind} {name} NotPermitted")
        message = condition(obj, "Ready")["message"]
        assert message.startswith(field + ": ") and "TenancyPolicy default" in message, (name, message)
    for kind, name, _, _ in tried[:3]:
        wait_warning(kube, team_a, name, "NotPermitted")
    # Not one AWS call of any kind, reads included, for all of them.
    assert calls.counts(since=mark) == {}
    for kind, name, _, _ in tried:
        kube.delete(path_of(kube, kind, team_a, name))
    wait_for(lambda: all(kube.get_or_none(path_of(kube, k, team_a, n)) is None for k, n, _, _ in tried),
             SETTLE, "refused resources deleted")
    assert calls.counts(since=mark) == {}  # deleting them made none either


def test_the_same_attempts_are_refused_by_the_shipped_default(kube, tenants, aws_server_session):
    """No TenancyPolicy at all: the shipped default refuses every one of them as well."""
    team_a, team_b = tenants
    calls = aws_server_session.calls
    tried = attempts(team_a, team_b)
    set_policy(kube, None)
    time.sleep(2)  # the deletion's watch event reaches the operator before the first resource
    mark = calls.mark()
    for kind, name, spec, _ in tried:
        kube.create(path_of(kube, kind, team_a), custom_resource(kind, team_a, name, spec))
    for kind, name, _, field in tried:
        obj = wait_condition(kube, path_of(kube, kind, team_a, name), status="False", reason="NotPermitted",
                             what=f"{kind} {name} NotPermitted under the shipped default")
        message = condition(obj, "Ready")["message"]
        assert message.startswith(field + ": ") and "(shipped default)" in message, (name, message)
    assert calls.counts(since=mark) == {}


def test_a_policy_change_is_applied_without_a_restart(kube, tenants, aws_server_session, aws_e2e):
    team_a, _ = tenants
    calls, sm = aws_server_session.calls, aws_e2e.client("secretsmanager")
    name, secret = "shared", f"shared/{team_a}/hub"
    path = rc_path(team_a, name)
    kube.create(path, custom_resource("RegistryCredential", team_a, name, rc_spec(
        secret={"name": secret, "forceDeleteWithoutRecovery": True})))
    wait_condition(kube, path, status="False", reason="NotPermitted", what="refused under the policy")

    widened = {**SHARED, "secretNames": [*SHARED["secretNames"], "shared/{namespace}/*"]}
    before = calls.mark()
    set_policy(kube, {"defaultAction": "Deny", "default": widened})
    assert wait_ready(kube, path)["status"]["secretName"] == secret  # no restart, no spec change
    # The call record sees the operator's calls (so its silence in the other test means something).
    assert calls.count("secretsmanager", "CreateSecret", since=before) == 1

    set_policy(kube, {"defaultAction": "Deny", "default": SHARED})
    wait_condition(kube, path, status="False", reason="NotPermitted", what="refused again after narrowing")

    set_policy(kube, None)  # deleted: the shipped default, which refuses shared/ as well
    time.sleep(2)
    obj = wait_condition(kube, path, status="False", reason="NotPermitted", what="refused by the shipped default")
    mark = calls.mark()
    kube.delete(path)
    wait_for(lambda: kube.get_or_none(path) is None, SETTLE, "refused resource deleted")
    assert [c for c in calls.list(since=mark) if c.service == "secretsmanager"] == []
    assert sm.describe_secret(SecretId=secret).get("DeletedDate") is None  # left for the admin
    assert "(shipped default)" in condition(obj, "Ready")["message"]
    sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)


def test_a_restart_judges_each_resource_once_under_the_policy_in_force(kube, control_plane, moto_server,
                                                                        tmp_path, aws_e2e):
    """A TenancyPolicy that exists at start-up is no change: no extra 'tenancy' reconcile.

    The session's open policy allows a secret name the shipped default refuses, so comparing
    the shipped default with it would re-evaluate the resource right after its resume.
    """
    from prometheus_client.parser import text_string_to_metric_families

    assert kube.get(POLICY_PATH)["spec"]["default"] == {}  # the session's open policy
    namespace = f"tr-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    # No drift check during the test: every reconcile it counts is the resume or an extra one.
    operator = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                              extra_env={"REGACCESS_DRIFT_INTERVAL": "3600"})
    try:
        path = rc_path(namespace, "outside")
        kube.create(path, custom_resource("RegistryCredential", namespace, "outside", rc_spec(
            secret={"name": f"shared/{namespace}/outside", "forceDeleteWithoutRecovery": True})))
        wait_ready(kube, path)
        operator.restart()

        def reconciles() -> dict[str, float]:
            return {sample.labels["trigger"]: sample.value
                    for family in text_string_to_metric_families(operator.metrics())
                    for sample in family.samples if sample.name == "regaccess_reconcile_total"}

        wait_for(lambda: reconciles().get("resume", 0) >= 1, SETTLE, "the resume reconcile after the restart")
        time.sleep(3)  # time for the TenancyPolicy's first watch event to act, if it wrongly did
        assert reconciles() == {"resume": 1.0}
    finally:
        delete_all(kube, namespace)
        operator.kill(signal.SIGTERM)
