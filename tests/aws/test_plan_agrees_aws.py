"""AWS tier: ``regaccess plan`` and the operator agree, scenario by scenario.

Given AWS state on the harness server (and, for most scenarios, a status the
operator converged to first), when plan runs on a manifest (the reconcile with
the recording actor and read-only clients, the live status passed as
``--kube`` would read it) and then the operator's reconcile runs on the same
manifest with the same status (the AWS actor), then the writes plan listed,
mapped to AWS operations by ``OPERATIONS``, are exactly the write calls the
harness recorded for the operator, and plan itself made none.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3
import pytest

from controller import plan
from controller.aws.clients import Clients
from controller.reconcile import cross_account
from controller.reconcile import registry_credential as rc
from tests.conftest import REGION
from tests.harness import world
from tests.aws.open_tenancy import OPEN

pytestmark = pytest.mark.aws

NS, NAME, CLUSTER = "team", "cred", "agree"
POLICY = f"regaccess-{NS}-{NAME}"
SECRET = f"regaccess/{NS}/{NAME}"
RC, XREPO = "RegistryCredential", "CrossAccountRepoAccess"

# (adapter kind, loop action) -> the AWS write operations it makes. A kind whose
# operations depend on the fields that differ maps them per field (FIELD_OPERATIONS).
OPERATIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("secret", "create"): ("secretsmanager:CreateSecret",),
    ("secret", "delete"): ("secretsmanager:DeleteSecret",),
    ("secret", "adopt"): ("secretsmanager:TagResource",),
    ("secret", "update"): (),
    ("rolePolicy", "create"): ("iam:PutRolePolicy",),
    ("rolePolicy", "update"): ("iam:PutRolePolicy",),
    ("rolePolicy", "adopt"): ("iam:PutRolePolicy",),
    ("rolePolicy", "delete"): ("iam:DeleteRolePolicy",),
    ("taskDefinition", "update"): ("ecs:RegisterTaskDefinition",),
    ("jobDefinition", "update"): ("batch:RegisterJobDefinition",),
    ("pullThroughCacheRule", "create"): ("ecr:CreatePullThroughCacheRule",),
    ("pullThroughCacheRule", "update"): ("ecr:UpdatePullThroughCacheRule",),
    ("pullThroughCacheRule", "delete"): ("ecr:DeletePullThroughCacheRule",),
    ("repositoryPolicy", "create"): ("ecr:SetRepositoryPolicy",),
    ("repositoryPolicy", "update"): ("ecr:SetRepositoryPolicy",),
    ("repositoryPolicy", "delete"): ("ecr:SetRepositoryPolicy",),  # others' statements kept
}
FIELD_OPERATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "secret": {"DeletedDate": ("secretsmanager:RestoreSecret",), "Description": ("secretsmanager:UpdateSecret",),
               "KmsKeyId": ("secretsmanager:UpdateSecret",), "Tags": ("secretsmanager:TagResource",),
               "SecretString": ("secretsmanager:PutSecretValue",)},
    "pullThroughCacheRule": {"upstreamRegistryUrl": ("ecr:DeletePullThroughCacheRule", "ecr:CreatePullThroughCacheRule")},
}


def operations(change: plan.Change) -> list[str]:
    kind = change.kind
    ops = list(OPERATIONS[(kind, change.action)])
    if (kind, change.action) == ("repositoryPolicy", "delete") and change.predicted["policyDeleted"]:
        ops = ["ecr:DeleteRepositoryPolicy"]  # ours were the only statements
    per_field = FIELD_OPERATIONS.get(kind, {})
    if change.action in ("update", "adopt") and per_field:
        for name in dict.fromkeys(ops + [op for f in change.fields for op in per_field.get(f.field, ())]):
            if name not in ops:
                ops.append(name)
        if kind == "pullThroughCacheRule" and "ecr:DeletePullThroughCacheRule" in ops:
            ops.remove("ecr:UpdatePullThroughCacheRule")  # a new upstream is delete + create, not update
    return ops


# --------------------------------------------------------------------------- AWS state


def raw(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def source(version: str = "7", password: str = "AGREE-LEAKCHECK-1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "src", "namespace": NS, "resourceVersion": version},
            "data": {"username": b64("robot"), "password": b64(password)}}


def wired() -> None:
    arn = world.make_role(raw, "exec-a")
    world.make_role(raw, "exec-b")
    world.register_family(raw, "web", arn)
    world.register_job(raw, "nightly", arn)


def repositories() -> None:
    world.make_repository(raw, "base/python")
    world.make_repository(raw, "base/node")


def unmarked_secret() -> None:
    raw("secretsmanager").create_secret(Name=SECRET, SecretString="{}")


def new_revision_by_hand() -> None:
    """A pipeline registers a new revision of the family without the credential."""
    world.register_family(raw, "web", raw("iam").get_role(RoleName="exec-a")["Role"]["Arn"])


def rule_credential_changed_by_hand() -> None:
    other = raw("secretsmanager").create_secret(Name="ecr-pullthroughcache/other", SecretString="{}")["ARN"]
    raw("ecr").update_pull_through_cache_rule(ecrRepositoryPrefix="hub", credentialArn=other)


def scheduled_for_deletion() -> None:
    """The resource was deleted (its secret scheduled for deletion) and applied again."""
    raw("secretsmanager").delete_secret(SecretId=SECRET, RecoveryWindowInDays=7)


def nothing() -> None:
    return None


def rc_spec(**extra: Any) -> dict[str, Any]:
    return {"source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}, **extra}


WIRED = dict(grants={"executionRoles": ["exec-a", "exec-b"]},
             consumers={"ecsTaskDefinitions": [{"family": "web"}], "batchJobDefinitions": [{"name": "nightly"}]})
PTC = dict(pullThroughCache={"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "hub"})


def xrepo_spec(*repos: str, accounts: tuple[str, ...] = ("444455556666",), **extra: Any) -> dict[str, Any]:
    return {"repositories": list(repos), "grants": [{"access": "Pull", "principals": [{"accountId": a} for a in accounts]}],
            **extra}


@dataclass(frozen=True)
class Scenario:
    id: str
    kind: str                                 # RC or XREPO
    spec: dict[str, Any]                      # the manifest planned, then applied
    before: dict[str, Any] | None = None      # the spec the operator converged first (None: new resource)
    given: Callable[[], None] = nothing       # AWS state before anything runs
    then: Callable[[], None] = nothing        # changes in AWS after converging (behind the operator's back)
    source: dict[str, Any] = field(default_factory=source)  # the source Secret when plan and operator run
    expect_writes: bool = True                # the scenario is about a write (guards against an empty agreement)
    # Writes plan lists "if different" that the operator skips here: plan never reads a
    # secret value, so where the operator compares it, plan lists the value write.
    maybe: tuple[str, ...] = ()


SCENARIOS = [
    Scenario("fresh-create", RC, rc_spec(**WIRED), given=wired),
    Scenario("no-op-resync", RC, rc_spec(**WIRED), before=rc_spec(**WIRED), given=wired, expect_writes=False),
    Scenario("spec-change-secret-metadata", RC, rc_spec(**WIRED, secret={"description": "new", "tags": {"team": "b"}}),
             before=rc_spec(**WIRED, secret={"description": "old", "tags": {"team": "a"}}), given=wired),
    Scenario("source-changed", RC, rc_spec(**WIRED), before=rc_spec(**WIRED), given=wired,
             source=source("8", "AGREE-LEAKCHECK-2")),
    Scenario("drift-remediate", RC, rc_spec(**WIRED), before=rc_spec(**WIRED), given=wired,
             then=lambda: world.edit_role_policy(raw, "exec-a", POLICY)),
    Scenario("drift-report", RC, rc_spec(**WIRED, driftPolicy="Report"), before=rc_spec(**WIRED, driftPolicy="Report"),
             given=wired, then=lambda: world.edit_role_policy(raw, "exec-a", POLICY), expect_writes=False),
    Scenario("role-removed-from-grants", RC, rc_spec(grants={"executionRoles": ["exec-a"]}),
             before=rc_spec(grants={"executionRoles": ["exec-a", "exec-b"]}), given=wired),
    Scenario("task-definition-needs-a-revision", RC, rc_spec(**WIRED), before=rc_spec(**WIRED), given=wired,
             then=new_revision_by_hand),
    Scenario("job-definition-added", RC, rc_spec(**WIRED),
             before=rc_spec(grants=WIRED["grants"], consumers={"ecsTaskDefinitions": [{"family": "web"}]}),
             given=wired),
    Scenario("pull-through-cache-create", RC, rc_spec(**PTC)),
    Scenario("pull-through-cache-credential-update", RC, rc_spec(**PTC), before=rc_spec(**PTC),
             then=rule_credential_changed_by_hand),
    Scenario("pull-through-cache-upstream-change", RC,
             rc_spec(pullThroughCache={"upstreamRegistry": "github-container-registry", "ecrRepositoryPrefix": "hub"}),
             before=rc_spec(**PTC)),
    Scenario("secret-scheduled-for-deletion-is-restored", RC, rc_spec(), before=rc_spec(),
             then=scheduled_for_deletion, maybe=("secretsmanager:PutSecretValue",)),
    Scenario("restored-with-a-new-source-value", RC, rc_spec(), before=rc_spec(), then=scheduled_for_deletion,
             source=source("8", "AGREE-LEAKCHECK-2")),
    Scenario("ownership-conflict", RC, rc_spec(), given=unmarked_secret, expect_writes=False),
    Scenario("adopt-existing", RC, rc_spec(adoptExisting=True), given=unmarked_secret),
    Scenario("invalid-spec", RC, rc_spec(secret={"recoveryWindowInDays": 7, "forceDeleteWithoutRecovery": True}),
             expect_writes=False),
    Scenario("cross-account-create", XREPO, xrepo_spec("base/python", "base/node"), given=repositories),
    Scenario("cross-account-update", XREPO, xrepo_spec("base/python", accounts=("444455556666", "777788889999")),
             before=xrepo_spec("base/python"), given=repositories),
    Scenario("cross-account-cleanup", XREPO, xrepo_spec("base/python"), before=xrepo_spec("base/python", "base/node"),
             given=repositories),
    Scenario("cross-account-no-op", XREPO, xrepo_spec("base/python"), before=xrepo_spec("base/python"),
             given=repositories, expect_writes=False),
]


# --------------------------------------------------------------------------- the two runs


def clients_for(factory):
    return lambda region, role, external: Clients(factory, region=region, role_arn=role, external_id=external)


def operator(factory, scenario: Scenario, spec: dict[str, Any], generation: int, status: dict[str, Any],
             source_secret: dict[str, Any]) -> Any:
    """One pass of the operator's reconcile (the AWS actor)."""
    if scenario.kind == RC:
        request = rc.Request(NS, NAME, generation, spec, status, source_secret, CLUSTER)
        return rc.reconcile(request, clients_for(factory), tenancy_policy=OPEN)
    return cross_account.reconcile(NS, NAME, generation, spec, status, clients_for=clients_for(factory),
                                   cluster_id=CLUSTER, now=lambda: dt.datetime.now(dt.timezone.utc), tenancy_policy=OPEN)


@dataclass
class OneLive:
    """The cluster as ``plan --kube`` would read it, for one resource (no values: versions only)."""

    live: plan.Live | None
    version: str | None

    def resource(self, kind: str, namespace: str, name: str) -> plan.Live | None:
        return self.live if (namespace, name) == (NS, NAME) else None

    def source_version(self, namespace: str, name: str) -> str | None:
        return self.version


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_planned_writes_are_the_writes_the_operator_makes(scenario, factory, aws_server):
    scenario.given()
    status: dict[str, Any] = {}
    generation = 0
    if scenario.before is not None:
        generation = 1
        result = operator(factory, scenario, scenario.before, generation, {}, source())
        assert result.ready, result.status.get("conditions")
        status = result.status
    scenario.then()
    # The generation the manifest gets when applied: the API server bumps it on a spec change.
    applied = generation if scenario.before == scenario.spec else generation + 1
    live = OneLive(plan.Live(generation, scenario.before, status) if scenario.before is not None else None,
                   scenario.source["metadata"]["resourceVersion"])
    manifest = {"apiVersion": "regaccess.io/v1alpha1", "kind": scenario.kind,
                "metadata": {"name": NAME, "namespace": NS}, "spec": scenario.spec}

    since = aws_server.calls.mark()
    [obj] = plan.plan_objects([plan.Manifest("m.yaml:1", manifest)], default_namespace=NS, cluster_id=CLUSTER,
                              factory=plan.read_only_factory(), live=live, tenancy_policy=OPEN)
    assert aws_server.calls.writes(since=since) == [], "plan wrote to AWS"
    assert aws_server.calls.count(operation="GetSecretValue", since=since) == 0, "plan read a secret value"
    assert not [c for c in obj.changes if c.action == plan.UNKNOWN], plan.render_text(plan.Plan([obj], aws=True))
    planned = sorted(op for c in obj.changes if c.writes for op in operations(c))

    since = aws_server.calls.mark()
    operator(factory, scenario, scenario.spec, applied, status, scenario.source)
    made = sorted(f"{c.service}:{c.operation}" for c in aws_server.calls.writes(since=since))

    assert Counter(made) <= Counter(planned), plan.render_text(plan.Plan([obj], aws=True))
    assert Counter(planned) - Counter(made) == Counter(scenario.maybe), plan.render_text(plan.Plan([obj], aws=True))
    assert bool(made) is scenario.expect_writes, made
    if scenario.id == "invalid-spec":
        assert obj.problems and obj.changes == []
    rendered = plan.render_json(plan.Plan([obj], aws=True))
    assert "AGREE-LEAKCHECK" not in rendered and b64("AGREE-LEAKCHECK-1") not in rendered

