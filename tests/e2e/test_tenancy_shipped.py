"""The shipped tenancy default end to end: issue 30's five cross-tenant cases, with no TenancyPolicy.

Given a real API server, the operator as a process (following ``--tenancy-policy default``)
and the AWS test server, and **no** TenancyPolicy object (the shipped default), when a tenant
in namespace ``tx-*`` (team-x) creates: a CrossAccountRepoAccess granting PullPush on ``ROOT``;
an ECRPullSecret assuming team-y's puller role; a RegistryCredential wired into team-y's task
definition family; one wired into team-y's job definition; a cache rule on ``ROOT``; and one
granting the role ``arn:...:role/<team-x>/<team-y>-exec`` (team-x's path, team-y's role), then
each is Ready=False NotPermitted and the harness's call record shows no AWS call at all. When
the admin then writes an explicit permissive TenancyPolicy, the same resources go through
(AWS is called, none stays NotPermitted): the refusal was the shipped default's, not a
failure of the resources.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.e2e.conftest import OPEN_TENANCY_POLICY, start_operator
from tests.e2e.kube import condition, wait_for
from tests.e2e.support import SETTLE, basic_auth_secret, custom_resource, delete_all, wait_condition
from tests.e2e.test_tenancy_guard import path_of, rc_spec, set_policy
from tests.harness import world

pytestmark = pytest.mark.e2e


def cases(team_x: str, team_y: str, account: str) -> list[tuple[str, str, dict, str]]:
    """(kind, name, spec, the field refused first) of issue 30 section 3's cases."""
    grant = [{"principals": [{"accountId": "444455556666"}], "access": "PullPush"}]
    return [
        ("CrossAccountRepoAccess", "root-pullpush",
         {"repositories": [], "repositoryPrefixes": ["ROOT"], "grants": grant}, "spec.repositoryPrefixes[0]"),
        ("ECRPullSecret", "their-puller",
         {"registries": [{}], "roleArn": f"arn:aws:iam::{account}:role/{team_y}-puller"}, "spec.roleArn"),
        ("RegistryCredential", "their-family",
         rc_spec(consumers={"ecsTaskDefinitions": [{"family": f"{team_y}-api"}]}),
         "spec.consumers.ecsTaskDefinitions[0].family"),
        ("RegistryCredential", "their-job",
         rc_spec(consumers={"batchJobDefinitions": [{"name": f"{team_y}-nightly"}]}),
         "spec.consumers.batchJobDefinitions[0].name"),
        ("RegistryCredential", "root-cache",
         {**rc_spec(), "secret": {"name": f"ecr-pullthroughcache/{team_x}/hub", "forceDeleteWithoutRecovery": True},
          "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "ROOT"}},
         "spec.pullThroughCache.ecrRepositoryPrefix"),
        ("RegistryCredential", "path-of-mine",
         rc_spec(grants={"executionRoles": [f"arn:aws:iam::{account}:role/{team_x}/{team_y}-exec"]}),
         "spec.grants.executionRoles[0]"),
    ]


def test_the_issue_cases_are_refused_by_the_shipped_default_and_pass_an_explicit_policy(
        kube, control_plane, moto_server, tmp_path, aws_server_session, aws_e2e):
    suffix = uuid.uuid4().hex[:6]
    team_x, team_y = f"tx-{suffix}", f"ty-{suffix}"
    kube.create_namespace(team_x)
    kube.create(kube.secret_path(team_x), basic_auth_secret(team_x, "src", password=f"pw-{team_x}"))
    # What team-y owns in AWS: an execution role under team-x's path, a puller role, a family, a job definition.
    exec_arn = world.make_execution_role(aws_e2e.client, f"{team_y}-exec", path=f"/{team_x}/")
    world.make_role(aws_e2e.client, f"{team_y}-puller")
    world.register_family(aws_e2e.client, f"{team_y}-api", exec_arn)
    world.register_job(aws_e2e.client, f"{team_y}-nightly", exec_arn)
    tried = cases(team_x, team_y, world.ACCOUNT)
    calls = aws_server_session.calls

    set_policy(kube, None)  # no TenancyPolicy: the shipped default
    operator = start_operator(control_plane, moto_server, tmp_path, namespaces=[team_x])
    try:
        time.sleep(2)  # the operator's first list of TenancyPolicies (none) is in
        mark = calls.mark()
        for kind, name, spec, _ in tried:
            kube.create(path_of(kube, kind, team_x), custom_resource(kind, team_x, name, spec))
        for kind, name, _, field in tried:
            obj = wait_condition(kube, path_of(kube, kind, team_x, name), status="False", reason="NotPermitted",
                                 what=f"{kind} {name} NotPermitted under the shipped default")
            message = condition(obj, "Ready")["message"]
            assert message.startswith(field + ": ") and "(shipped default)" in message, (name, message)
        assert calls.counts(since=mark) == {}  # not one AWS call, reads included

        # The admin's explicit, reviewed permissive policy: the same resources go through.
        mark = calls.mark()
        set_policy(kube, OPEN_TENANCY_POLICY["spec"])

        def judged_anew() -> bool:
            return all(condition(kube.get(path_of(kube, k, team_x, n)), "Ready").get("reason") != "NotPermitted"
                       for k, n, _, _ in tried)

        wait_for(judged_anew, SETTLE, "every resource judged again under the permissive policy")
        assert calls.counts(since=mark) != {}  # now they reach AWS
        for kind, name, _, _ in tried:
            ready = condition(kube.get(path_of(kube, kind, team_x, name)), "Ready")
            assert ready.get("reason") != "NotPermitted", (name, ready)
        # The role given with team-x's path is written to by name: team-y's role got the policy.
        wait_for(lambda: aws_e2e.client("iam").list_role_policies(RoleName=f"{team_y}-exec")["PolicyNames"],
                 SETTLE, "the inline policy on the role named by the ARN")
    finally:
        delete_all(kube, team_x)
        operator.kill(signal.SIGTERM)
        set_policy(kube, OPEN_TENANCY_POLICY["spec"])


def test_a_missing_named_policy_refuses_every_resource_until_it_is_created(
        kube, control_plane, moto_server, tmp_path, aws_server_session, aws_e2e):
    """--tenancy-policy NAME (not "default") that does not exist is loud, not a fall-back."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.e2e.conftest import TENANCY_POLICIES
    from tests.e2e.support import rc_path, wait_ready, wait_warning

    suffix = uuid.uuid4().hex[:6]
    namespace, policy = f"tm-{suffix}", f"team-rules-{suffix}"
    kube.create_namespace(namespace)
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    calls = aws_server_session.calls
    operator = start_operator(control_plane, moto_server, tmp_path, namespaces=[namespace],
                              extra_args=["--tenancy-policy", policy])

    def missing_metric() -> float | None:
        return next((s.value for f in text_string_to_metric_families(operator.metrics())
                     for s in f.samples if s.name == "regaccess_tenancy_policy_missing"), None)

    try:
        path = rc_path(namespace, "app")
        mark = calls.mark()
        # A resource the shipped default would allow: the missing policy is what refuses it.
        kube.create(path, custom_resource("RegistryCredential", namespace, "app", rc_spec()))
        obj = wait_condition(kube, path, status="False", reason="TenancyPolicyMissing",
                             what="refused while the named policy is missing")
        assert f"TenancyPolicy {policy} (named by --tenancy-policy) does not exist" in condition(obj, "Ready")["message"]
        wait_warning(kube, namespace, "app", "TenancyPolicyMissing")
        assert calls.counts(since=mark) == {}
        assert missing_metric() == 1
        assert "tenancy policy missing" in operator.log_text()

        kube.create(TENANCY_POLICIES, {**OPEN_TENANCY_POLICY, "metadata": {"name": policy}})
        wait_ready(kube, path)  # judged again at once, no restart
        assert missing_metric() == 0
    finally:
        delete_all(kube, namespace)
        operator.kill(signal.SIGTERM)
        if kube.get_or_none(f"{TENANCY_POLICIES}/{policy}") is not None:
            kube.delete(f"{TENANCY_POLICIES}/{policy}")
