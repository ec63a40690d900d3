"""controller.reconcile.wiring and controller.reconcile.definitions against the moto HTTP server.

Given roles with the ECS task-execution trust policy and managed policy, task
definitions with several containers and Batch job definitions, when the wiring
steps run, then IAM/ECS/Batch end up as declared, a no-op resync makes no
write call (counted with a botocore before-call hook on the operator's own
clients), and a revision is never registered twice.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from controller.api import reasons
from controller.api.validation import validate_registry_credential
from controller.aws import iam_policies, policydoc
from controller.aws.clients import ClientFactory, Clients
from controller.aws.protocol import Owner
from controller.reconcile import definitions, loop, wiring
from controller.reconcile.steps import StepContext, StepOutcome
from tests.conftest import ACCOUNT, REGION
from tests.harness import world

pytestmark = pytest.mark.aws

NAMESPACE, NAME, CLUSTER = "team", "cred", "cluster-1"
POLICY = f"regaccess-{NAMESPACE}-{NAME}"
WRITE_PREFIXES = ("Put", "Delete", "Register", "Deregister", "Create", "Update", "Attach", "Detach", "Tag", "Untag")


class CallRecorder:
    """Counts AWS operations made through the operator's ClientFactory (botocore before-call hook)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, event_name: str, **_: Any) -> None:
        # event_name is before-call.<service>.<Operation>
        _, service, operation = event_name.split(".", 2)
        self.calls.append(f"{service}.{operation}")

    def writes(self) -> list[str]:
        return [c for c in self.calls if c.split(".", 1)[1].startswith(WRITE_PREFIXES)]

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture
def recorder(factory) -> CallRecorder:
    recorder = CallRecorder()
    factory.add_hook("before-call", recorder)
    return recorder


@pytest.fixture
def raw(aws):
    """Plain boto3 clients for the test's own given/then steps (not counted)."""
    return lambda service: boto3.client(service, region_name=REGION)


@pytest.fixture
def secret_arn(raw) -> str:
    return raw("secretsmanager").create_secret(
        Name=f"regaccess/{NAMESPACE}/{NAME}", SecretString=json.dumps({"username": "u", "password": "p"})
    )["ARN"]


def make_role(raw, name: str, path: str = "/") -> str:
    return world.make_execution_role(raw, name, path)


def context(factory, secret_arn: str, spec: dict[str, Any], previous: StepOutcome | dict | None = None,
            **kwargs: Any) -> StepContext:
    full = {"source": {"secretRef": {"name": "src"}}, **spec}
    resolved, problems = validate_registry_credential(NAMESPACE, NAME, full, cluster_id=CLUSTER)
    assert not problems, problems
    if isinstance(previous, StepOutcome):
        previous = {"managed": previous.managed}
    return StepContext(
        resolved=resolved,
        clients=Clients(factory, region=REGION, role_arn=None, external_id=None),
        previous_status=previous or {},
        secret_arn=secret_arn,
        now="2024-01-01T00:00:00Z",
        **kwargs,
    )


def policy_on(raw, role: str) -> dict | None:
    iam = raw("iam")
    if POLICY not in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        return None
    return iam.get_role_policy(RoleName=role, PolicyName=POLICY)["PolicyDocument"]


def rows(outcome: StepOutcome) -> dict[str, dict]:
    return {row["name"]: row for row in outcome.managed}


# =========================================================================== role policies


def test_policies_created_with_kms_then_noop_resync_makes_no_iam_write(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    arn_b = make_role(raw, "exec-b", path="/service-role/team/")
    key_arn = raw("kms").create_key()["KeyMetadata"]["Arn"]
    raw("kms").create_alias(AliasName="alias/registry", TargetKeyId=key_arn)
    spec = {"secret": {"kmsKeyId": "alias/registry"}, "grants": {"executionRoles": ["exec-a", arn_b]}}

    first = wiring.sync_role_policies(context(factory, secret_arn, spec))

    assert first.error is None
    assert {n: r["state"] for n, r in rows(first).items()} == {"exec-a": "Synced", "exec-b": "Synced"}
    assert recorder.writes() == ["iam.PutRolePolicy", "iam.PutRolePolicy"] and first.writes == 2
    for role in ("exec-a", "exec-b"):
        statements = {s["Action"] if isinstance(s["Action"], str) else s["Action"][0]: s["Resource"]
                      for s in policy_on(raw, role)["Statement"]}
        assert statements == {"secretsmanager:GetSecretValue": secret_arn, "kms:Decrypt": key_arn}

    recorder.reset()
    second = wiring.sync_role_policies(context(factory, secret_arn, spec, previous=first))

    assert second.error is None and second.writes == 0 and second.drifted == []
    assert recorder.writes() == []
    # A no-op resync is one read per role (plus resolving the alias), never the budget reads.
    assert recorder.calls.count("iam.GetRolePolicy") == 2
    assert "iam.ListRolePolicies" not in recorder.calls
    assert [r["state"] for r in second.managed] == ["Synced", "Synced"]


def test_resolved_key_arn_from_secret_step_needs_no_kms_call(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    key_arn = raw("kms").create_key()["KeyMetadata"]["Arn"]
    ctx = context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}}, kms_key_arn=key_arn)

    outcome = wiring.sync_role_policies(ctx)

    assert outcome.error is None
    assert not [c for c in recorder.calls if c.startswith("kms.")]
    assert any(s["Resource"] == key_arn for s in policy_on(raw, "exec-a")["Statement"])


def test_role_removed_from_list_loses_the_policy(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    make_role(raw, "exec-b")
    both = wiring.sync_role_policies(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a", "exec-b"]}}))
    assert both.error is None
    recorder.reset()

    one = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}}, previous=both)
    )

    assert one.error is None
    assert recorder.writes() == ["iam.DeleteRolePolicy"]
    assert policy_on(raw, "exec-b") is None and policy_on(raw, "exec-a") is not None
    assert list(rows(one)) == ["exec-a"]


def test_missing_role_is_retryable_dependency_and_others_still_granted(factory, raw, secret_arn):
    make_role(raw, "exec-a")

    outcome = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["ghost", "exec-a"]}})
    )

    assert outcome.error is not None
    assert outcome.error.reason == reasons.DEPENDENCY_MISSING
    assert outcome.error.retryable is True
    assert outcome.error.message == "role ghost does not exist"
    assert rows(outcome)["ghost"]["state"] == "Pending"
    assert rows(outcome)["exec-a"]["state"] == "Synced" and policy_on(raw, "exec-a") is not None
    assert any(e.type == "Warning" and e.reason == reasons.DEPENDENCY_MISSING for e in outcome.events)


def test_budget_overflow_is_terminal_and_writes_nothing(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-full")
    # An existing inline policy of 10,099 characters leaves no room for ours (about 220).
    big = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:GetObject",
        "Resource": [f"arn:aws:s3:::bucket-{i:04d}/*" for i in range(345)],
    }]}
    assert policydoc.size(big) == 10_099
    raw("iam").put_role_policy(RoleName="exec-full", PolicyName="existing", PolicyDocument=json.dumps(big))

    outcome = wiring.sync_role_policies(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-full"]}}))

    assert outcome.error is not None
    assert outcome.error.reason == reasons.POLICY_BUDGET_EXCEEDED
    assert outcome.error.retryable is False
    assert "exec-full" in outcome.error.message and "10240" in outcome.error.message
    assert recorder.writes() == [] and outcome.writes == 0
    assert policy_on(raw, "exec-full") is None


def test_role_in_other_account_is_rejected_without_touching_same_named_local_role(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")

    outcome = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["arn:aws:iam::999999999999:role/exec-a"]}})
    )

    assert outcome.error is not None and outcome.error.reason == reasons.INVALID_GRANT
    assert outcome.error.retryable is False
    assert recorder.calls == [] and policy_on(raw, "exec-a") is None

    # Dropping the foreign ARN, or deleting the resource, must not touch a local role of that name.
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY,
                               PolicyDocument=json.dumps(iam_policies.desired(secret_arn)))
    dropped = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": []}}, previous=outcome)
    )
    deleting = context(
        factory, secret_arn, {"grants": {"executionRoles": ["arn:aws:iam::999999999999:role/exec-a"]}},
        previous={"managed": outcome.managed, "secretArn": secret_arn},
    )
    deleting.secret_arn = None  # on delete the secret step runs last: the account comes from status
    deleted = wiring.delete_role_policies(deleting)
    assert dropped.error is None and deleted.error is None
    assert recorder.calls == [] and policy_on(raw, "exec-a") is not None


@pytest.mark.parametrize("remediate", [True, False], ids=["remediate-repairs", "report-only"])
def test_edited_policy_is_drift(factory, raw, recorder, secret_arn, remediate):
    make_role(raw, "exec-a")
    spec = {"grants": {"executionRoles": ["exec-a"]}}
    synced = wiring.sync_role_policies(context(factory, secret_arn, spec))
    # A hand edit of our document (its Sids, our mark, kept): widened to every secret.
    world.edit_role_policy(raw, "exec-a", POLICY)
    recorder.reset()

    outcome = wiring.sync_role_policies(context(factory, secret_arn, spec, previous=synced, remediate=remediate))

    assert outcome.drifted == [("rolePolicy/exec-a", "PolicyDocument")]
    assert outcome.error is None
    if remediate:
        assert outcome.remediated is True and outcome.writes == 1
        assert policy_on(raw, "exec-a")["Statement"][0]["Resource"] == secret_arn
        assert rows(outcome)["exec-a"]["state"] == "Synced"
    else:
        assert outcome.remediated is False and outcome.writes == 0 and recorder.writes() == []
        assert policy_on(raw, "exec-a")["Statement"][0]["Resource"] == "*"
        assert rows(outcome)["exec-a"]["state"] == "Pending"
        assert any(e.reason == reasons.DRIFT_REPORTED for e in outcome.events)


def test_kms_key_change_updates_policy_without_calling_it_drift(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    old_key = raw("kms").create_key()["KeyMetadata"]["Arn"]
    new_key = raw("kms").create_key()["KeyMetadata"]["Arn"]
    spec = {"grants": {"executionRoles": ["exec-a"]}}
    synced = wiring.sync_role_policies(context(factory, secret_arn, spec, kms_key_arn=old_key))
    previous = {"managed": synced.managed, "secretArn": secret_arn, "kmsKeyArn": old_key}
    recorder.reset()

    # Even under driftPolicy Report, our own change is made.
    outcome = wiring.sync_role_policies(
        context(factory, secret_arn, spec, previous=previous, kms_key_arn=new_key, remediate=False)
    )

    assert outcome.error is None and outcome.drifted == [] and outcome.remediated is False
    assert recorder.writes() == ["iam.PutRolePolicy"]
    resources = {s["Resource"] for s in policy_on(raw, "exec-a")["Statement"]}
    assert resources == {secret_arn, new_key}


@pytest.mark.parametrize(
    "deletion_policy, kept", [("Delete", False), ("Retain", True)], ids=["delete-removes", "retain-keeps"]
)
def test_delete_role_policies(factory, raw, secret_arn, deletion_policy, kept):
    make_role(raw, "exec-a")
    make_role(raw, "exec-b")
    synced = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a", "exec-b"]}})
    )
    # exec-b was removed from the spec just before the resource was deleted.
    ctx = context(
        factory, secret_arn,
        {"grants": {"executionRoles": ["exec-a"]}, "deletionPolicy": deletion_policy}, previous=synced,
    )

    outcome = wiring.delete_role_policies(ctx)

    assert outcome.error is None
    assert (policy_on(raw, "exec-a") is not None) is kept
    assert (policy_on(raw, "exec-b") is not None) is kept
    if kept:
        assert {r["state"] for r in outcome.managed} == {"Retained"} and outcome.writes == 0
    else:
        assert outcome.managed == [] and outcome.writes == 2


def test_delete_when_role_already_gone_is_done(factory, raw, secret_arn):
    outcome = wiring.delete_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["never-existed"]}})
    )
    assert outcome.error is None and outcome.managed == []


# --------------------------------------------------------------------------- ownership of role policies

OWNER = f"{CLUSTER}/{NAMESPACE}/{NAME}"
OTHER_OWNER = f"{CLUSTER}/other-team/{NAME}"
# A person's inline policy that happens to have the name this resource asks for.
PERSONS = {"Version": "2012-10-17", "Statement": [
    {"Sid": "TeamReadsEverything", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}


def iam_client(factory):
    return Clients(factory, region=REGION, role_arn=None, external_id=None)("iam")


@pytest.mark.parametrize(
    "given, exists, owner, mark, differs",
    [
        (None, False, Owner.ABSENT, None, False),
        ("ours", True, Owner.OURS, "ours", False),
        ("foreign", True, Owner.FOREIGN, "foreign", True),
        ("unmarked", True, Owner.UNMARKED, None, True),
        ("legacy", True, Owner.OURS, None, True),
    ],
    ids=["absent", "ours", "foreign", "unmarked", "legacy"],
)
def test_observe_tells_whose_a_same_named_policy_is(factory, raw, secret_arn, given, exists, owner, mark, differs):
    make_role(raw, "exec-a")
    documents = {"ours": iam_policies.desired(secret_arn, None, OWNER),
                 "foreign": iam_policies.desired(secret_arn, None, OTHER_OWNER),
                 "unmarked": PERSONS, "legacy": iam_policies.desired(secret_arn)}
    if given:
        raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY, PolicyDocument=json.dumps(documents[given]))
    marks = {"ours": iam_policies.sid_prefix(OWNER), "foreign": iam_policies.sid_prefix(OTHER_OWNER), None: None}

    observation = iam_policies.ROLE_POLICIES.observe(
        iam_client(factory), iam_policies.role_policy("exec-a", POLICY, OWNER, secret_arn))

    assert (observation.exists, observation.owner, observation.mark) == (exists, owner, marks[mark])
    assert observation.fields == (("PolicyDocument",) if differs else ())
    assert (exists and observation.observed.legacy) is (given == "legacy")


def test_a_persons_policy_of_that_name_is_a_conflict_until_adopted(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY, PolicyDocument=json.dumps(PERSONS))
    spec = {"grants": {"executionRoles": ["exec-a"]}}

    refused = wiring.sync_role_policies(context(factory, secret_arn, spec))

    assert refused.error is not None and refused.error.reason == reasons.OWNERSHIP_CONFLICT
    assert refused.error.retryable is False
    assert f"inline policy {POLICY} on role exec-a" in refused.error.message and "adoptExisting" in refused.error.message
    assert any(e.type == "Warning" and e.reason == reasons.OWNERSHIP_CONFLICT for e in refused.events)
    assert recorder.writes() == [] and refused.writes == 0
    assert recorder.calls == ["iam.GetRolePolicy"]  # no budget reads for a write that will not happen
    assert policydoc.equivalent(policy_on(raw, "exec-a"), PERSONS)

    # Dropping the role from the list, or deleting the resource, leaves the person's policy.
    dropped = wiring.sync_role_policies(context(factory, secret_arn, {"grants": {"executionRoles": []}}, previous=refused))
    deleted = wiring.delete_role_policies(context(factory, secret_arn, spec, previous=refused))
    assert dropped.error is None and deleted.error is None
    assert {e.reason for e in dropped.events + deleted.events} == {wiring.EVENT_ROLE_POLICY_LEFT}
    assert recorder.writes() == [] and policydoc.equivalent(policy_on(raw, "exec-a"), PERSONS)

    # adoptExisting: the marked document replaces it, and from then on it is ours.
    adopted = wiring.sync_role_policies(context(factory, secret_arn, {**spec, "adoptExisting": True}, previous=refused))
    assert adopted.error is None and rows(adopted)["exec-a"]["state"] == "Synced"
    assert recorder.writes() == ["iam.PutRolePolicy"]
    assert policydoc.equivalent(policy_on(raw, "exec-a"), iam_policies.desired(secret_arn, None, OWNER))


def test_another_owners_policy_is_never_adopted_written_or_deleted(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    theirs = iam_policies.desired(secret_arn, None, OTHER_OWNER)
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY, PolicyDocument=json.dumps(theirs))
    spec = {"grants": {"executionRoles": ["exec-a"]}, "adoptExisting": True}

    refused = wiring.sync_role_policies(context(factory, secret_arn, spec))
    deleted = wiring.delete_role_policies(context(factory, secret_arn, spec, previous=refused))

    assert refused.error is not None and refused.error.reason == reasons.OWNERSHIP_CONFLICT
    assert iam_policies.sid_prefix(OTHER_OWNER) in refused.error.message
    assert f"inline policy {POLICY} on role exec-a" in refused.error.message
    assert deleted.error is None
    assert recorder.writes() == [] and policydoc.equivalent(policy_on(raw, "exec-a"), theirs)


def test_pre_mark_policy_is_ours_and_rewritten_once_with_marked_sids(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    # What the operator wrote before ownership marks, with a Synced row in status.
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY,
                               PolicyDocument=json.dumps(iam_policies.desired(secret_arn)))
    spec = {"grants": {"executionRoles": ["exec-a"]}}
    previous = {"managed": [{"kind": "rolePolicy", "name": "exec-a", "arn": None, "state": "Synced", "message": ""}],
                "secretArn": secret_arn}

    # Even under driftPolicy Report: the new Sids are our own change, not drift.
    migrated = wiring.sync_role_policies(context(factory, secret_arn, spec, previous=previous, remediate=False))

    assert migrated.error is None and migrated.drifted == [] and migrated.remediated is False
    assert recorder.writes() == ["iam.PutRolePolicy"]
    assert iam_policies.sid_marks(policy_on(raw, "exec-a")) == {iam_policies.sid_prefix(OWNER)}
    assert iam_policies.same_grants(policy_on(raw, "exec-a"), iam_policies.desired(secret_arn))

    recorder.reset()
    again = wiring.sync_role_policies(context(factory, secret_arn, spec, previous=migrated, remediate=False))
    assert again.error is None and again.writes == 0 and recorder.calls == ["iam.GetRolePolicy"]


def test_a_pre_mark_policy_is_deleted_with_the_resource(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY,
                               PolicyDocument=json.dumps(iam_policies.desired(secret_arn)))
    previous = {"managed": [{"kind": "rolePolicy", "name": "exec-a", "arn": None, "state": "Synced", "message": ""}],
                "secretArn": secret_arn}
    # On delete the secret step has not run: the secret ARN comes from status.
    ctx = context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}}, previous=previous)
    ctx.secret_arn = None

    outcome = wiring.delete_role_policies(ctx)

    assert outcome.error is None and policy_on(raw, "exec-a") is None
    assert recorder.calls == ["iam.GetRolePolicy", "iam.DeleteRolePolicy"]  # a delete observes first


def test_the_recording_actor_plans_the_put_and_writes_nothing(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    actor = loop.RecordingActor()

    outcome = wiring.sync_role_policies(
        context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}}, actor=actor))

    assert outcome.error is None and recorder.writes() == [] and policy_on(raw, "exec-a") is None
    assert actor.planned == [loop.PlannedWrite("rolePolicy", f"inline policy {POLICY} on role exec-a", "create")]
    # The budget reads still happen: plan sees a full role as the operator would.
    assert recorder.calls == ["iam.GetRolePolicy", "iam.ListRolePolicies"]


# =========================================================================== task definitions

EXEC_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/exec-a"


def register_family(raw, family: str = "web", execution_role: str | None = EXEC_ROLE_ARN, **extra: Any) -> str:
    params = world.three_container_task_definition(family, execution_role, **extra)
    return raw("ecs").register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"]


def revisions(raw, family: str) -> list[str]:
    return raw("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


def describe(raw, arn: str) -> tuple[dict, list]:
    response = raw("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return response["taskDefinition"], response.get("tags", [])


def test_task_definition_revision_registered_recorded_once_and_not_twice(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    first_arn = register_family(raw)
    recorded: list[dict] = []
    spec = {
        "grants": {"executionRoles": ["exec-a"]},
        "consumers": {"ecsTaskDefinitions": [{"family": "web", "containers": ["app", "envoy"]}]},
    }
    recorder.reset()

    outcome = definitions.sync_task_definitions(context(factory, secret_arn, spec, record_now=recorded.append))

    assert outcome.error is None and outcome.writes == 1
    assert recorder.writes() == ["ecs.RegisterTaskDefinition"]
    new_arn = rows(outcome)["web"]["arn"]
    assert new_arn.endswith("task-definition/web:2")
    assert recorded == [{"managed": [{"kind": "taskDefinition", "name": "web", "arn": new_arn,
                                      "state": "Synced", "message": ""}]}]
    # Faithful copy: only the chosen containers' repositoryCredentials differ.
    old, old_tags = describe(raw, first_arn)
    new, new_tags = describe(raw, new_arn)
    for name in ("app", "envoy", "log-router"):
        before = next(c for c in old["containerDefinitions"] if c["name"] == name)
        after = next(c for c in new["containerDefinitions"] if c["name"] == name)
        expected = {"credentialsParameter": secret_arn} if name != "log-router" else None
        assert after.pop("repositoryCredentials", None) == expected
        assert after == before
    for key in ("taskRoleArn", "executionRoleArn", "networkMode", "requiresCompatibilities", "cpu", "memory"):
        assert new[key] == old[key]
    assert {t["key"]: t["value"] for t in new_tags} == {
        **{t["key"]: t["value"] for t in old_tags}, "regaccess.io/owner": f"{CLUSTER}/{NAMESPACE}/{NAME}"}

    recorder.reset()
    again = definitions.sync_task_definitions(context(factory, secret_arn, spec, previous=outcome, record_now=recorded.append))

    assert again.error is None and again.writes == 0 and recorder.writes() == []
    assert len(revisions(raw, "web")) == 2 and len(recorded) == 1
    assert rows(again)["web"] == {"kind": "taskDefinition", "name": "web", "arn": new_arn, "state": "Synced", "message": ""}


def test_crash_after_register_does_not_register_twice(factory, raw, secret_arn):
    make_role(raw, "exec-a")
    register_family(raw)
    spec = {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"ecsTaskDefinitions": [{"family": "web"}]}}

    def crash(_: dict) -> None:
        raise RuntimeError("operator killed")

    with pytest.raises(RuntimeError):
        definitions.sync_task_definitions(context(factory, secret_arn, spec, record_now=crash))
    # The status write never happened: the retry starts from an empty previous status.
    retry = definitions.sync_task_definitions(context(factory, secret_arn, spec))

    assert retry.error is None and retry.writes == 0
    assert len(revisions(raw, "web")) == 2
    assert rows(retry)["web"]["arn"].endswith(":2")


def test_revision_registered_by_ci_is_recognised(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    register_family(raw)
    ci = raw("ecs").describe_task_definition(taskDefinition="web")["taskDefinition"]
    containers = [{**c, "repositoryCredentials": {"credentialsParameter": secret_arn}} for c in ci["containerDefinitions"]]
    register_family(raw, containerDefinitions=containers)
    recorder.reset()

    outcome = definitions.sync_task_definitions(context(
        factory, secret_arn,
        {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"ecsTaskDefinitions": [{"family": "web"}]}},
    ))

    assert outcome.error is None and recorder.writes() == []
    assert rows(outcome)["web"]["arn"].endswith(":2") and len(revisions(raw, "web")) == 2


@pytest.mark.parametrize("remediate", [True, False], ids=["remediate-repairs", "report-only"])
def test_ci_revision_without_credentials_is_drift(factory, raw, secret_arn, remediate):
    make_role(raw, "exec-a")
    register_family(raw)
    spec = {"grants": {"executionRoles": ["exec-a"]},
            "consumers": {"ecsTaskDefinitions": [{"family": "web", "containers": ["app"]}]}}
    synced = definitions.sync_task_definitions(context(factory, secret_arn, spec))
    register_family(raw)  # a pipeline deploys revision 3 from its own template, without credentials

    outcome = definitions.sync_task_definitions(context(factory, secret_arn, spec, previous=synced, remediate=remediate))

    assert outcome.drifted == [("taskDefinition/web", "containerDefinitions[app].repositoryCredentials")]
    assert outcome.error is None
    if remediate:
        assert outcome.remediated and outcome.writes == 1
        assert rows(outcome)["web"]["arn"].endswith(":4")
        latest, _ = describe(raw, "web")
        app = next(c for c in latest["containerDefinitions"] if c["name"] == "app")
        assert app["repositoryCredentials"] == {"credentialsParameter": secret_arn}
    else:
        assert not outcome.remediated and outcome.writes == 0
        assert len(revisions(raw, "web")) == 3
        assert rows(outcome)["web"]["state"] == "Pending"


def test_execution_role_not_granted_warns_but_succeeds(factory, raw, secret_arn):
    make_role(raw, "exec-a")
    make_role(raw, "other-exec")
    register_family(raw, execution_role=f"arn:aws:iam::{ACCOUNT}:role/other-exec")

    outcome = definitions.sync_task_definitions(context(
        factory, secret_arn,
        {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"ecsTaskDefinitions": [{"family": "web"}]}},
    ))

    assert outcome.error is None and outcome.writes == 1
    row = rows(outcome)["web"]
    assert row["state"] == "Synced" and row["message"].startswith(reasons.EXECUTION_ROLE_NOT_GRANTED)
    assert "other-exec" in row["message"]
    assert any(e.type == "Warning" and e.reason == reasons.EXECUTION_ROLE_NOT_GRANTED for e in outcome.events)


def test_bad_task_definition_inputs_each_get_their_reason_and_others_proceed(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    register_family(raw, family="web")
    register_family(raw, family="no-role", execution_role=None)
    register_family(raw, family="good")
    spec = {
        "grants": {"executionRoles": ["exec-a"]},
        "consumers": {"ecsTaskDefinitions": [
            {"family": "web", "containers": ["app", "sidecar"]},
            {"family": "missing"},
            {"family": "no-role"},
            {"family": "good"},
        ]},
    }
    recorder.reset()

    outcome = definitions.sync_task_definitions(context(factory, secret_arn, spec))

    by_name = rows(outcome)
    assert by_name["web"]["state"] == "Error" and "sidecar" in by_name["web"]["message"]
    assert by_name["missing"]["state"] == "Error" and "missing" in by_name["missing"]["message"]
    assert by_name["no-role"]["state"] == "Error" and "executionRoleArn" in by_name["no-role"]["message"]
    assert by_name["good"]["state"] == "Synced"
    # Nothing half-written: only the good family got a revision.
    assert recorder.writes() == ["ecs.RegisterTaskDefinition"]
    assert len(revisions(raw, "web")) == 1 and len(revisions(raw, "no-role")) == 1
    warnings = {e.reason for e in outcome.events if e.type == "Warning"}
    assert warnings == {reasons.CONTAINER_NOT_FOUND, reasons.TASK_DEFINITION_NOT_FOUND, reasons.EXECUTION_ROLE_MISSING}
    # The retryable cause leads, so the reconciler comes back for the missing family.
    assert outcome.error.reason == reasons.TASK_DEFINITION_NOT_FOUND and outcome.error.retryable
    assert "2 more" in outcome.error.message


def test_delete_task_definitions_never_deregisters(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    register_family(raw)
    spec = {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"ecsTaskDefinitions": [{"family": "web"}]}}
    synced = definitions.sync_task_definitions(context(factory, secret_arn, spec))
    recorder.reset()

    deleted = definitions.delete_task_definitions(context(factory, secret_arn, spec, previous=synced))
    retained = definitions.delete_task_definitions(
        context(factory, secret_arn, {**spec, "deletionPolicy": "Retain"}, previous=synced)
    )

    assert recorder.calls == [] and deleted.managed == [] and deleted.writes == 0
    assert [r["state"] for r in retained.managed] == ["Retained"]
    assert len(raw("ecs").list_task_definitions(familyPrefix="web", status="ACTIVE")["taskDefinitionArns"]) == 2


# =========================================================================== job definitions


def register_job(raw, name: str = "nightly", execution_role: str | None = EXEC_ROLE_ARN,
                 credentials: str | None = None, tags: dict[str, str] | None = None) -> str:
    container: dict[str, Any] = {
        "image": "registry.example.com/team/nightly:1",
        "command": ["run"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
        "environment": [{"name": "MODE", "value": "batch"}],
    }
    if execution_role:
        container["executionRoleArn"] = execution_role
    if credentials:
        container["repositoryCredentials"] = {"credentialsParameter": credentials}
    return raw("batch").register_job_definition(
        jobDefinitionName=name, type="container", containerProperties=container,
        platformCapabilities=["FARGATE"], retryStrategy={"attempts": 2}, tags=tags or {"team": "data"},
        propagateTags=True,
    )["jobDefinitionArn"]


def job_revisions(raw, name: str) -> list[dict]:
    return raw("batch").describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]


def test_job_definition_revision_registered_recorded_and_noop(factory, raw, recorder, secret_arn):
    make_role(raw, "exec-a")
    register_job(raw)
    recorded: list[dict] = []
    spec = {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"batchJobDefinitions": [{"name": "nightly"}]}}
    recorder.reset()

    outcome = definitions.sync_job_definitions(context(factory, secret_arn, spec, record_now=recorded.append))

    assert outcome.error is None and recorder.writes() == ["batch.RegisterJobDefinition"]
    new_arn = rows(outcome)["nightly"]["arn"]
    assert new_arn.endswith("job-definition/nightly:2")
    assert [r["managed"][0]["arn"] for r in recorded] == [new_arn]
    by_revision = {jd["revision"]: jd for jd in job_revisions(raw, "nightly")}
    old, new = by_revision[1], by_revision[2]
    assert new["containerProperties"].pop("repositoryCredentials") == {"credentialsParameter": secret_arn}
    assert new["containerProperties"] == old["containerProperties"]
    for key in ("type", "platformCapabilities", "retryStrategy", "propagateTags"):
        assert new[key] == old[key]
    assert new["tags"] == {"team": "data", "regaccess.io/owner": f"{CLUSTER}/{NAMESPACE}/{NAME}"}

    recorder.reset()
    again = definitions.sync_job_definitions(context(factory, secret_arn, spec, previous=outcome, record_now=recorded.append))

    assert again.error is None and again.writes == 0 and recorder.writes() == []
    assert len(job_revisions(raw, "nightly")) == 2 and len(recorded) == 1


@pytest.mark.parametrize("remediate", [True, False], ids=["remediate-repairs", "report-only"])
def test_job_definition_drift(factory, raw, secret_arn, remediate):
    make_role(raw, "exec-a")
    register_job(raw)
    spec = {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"batchJobDefinitions": [{"name": "nightly"}]}}
    synced = definitions.sync_job_definitions(context(factory, secret_arn, spec))
    register_job(raw)  # revision 3 without credentials

    outcome = definitions.sync_job_definitions(context(factory, secret_arn, spec, previous=synced, remediate=remediate))

    assert outcome.drifted == [("jobDefinition/nightly", "containerProperties.repositoryCredentials")]
    assert outcome.remediated is remediate
    assert len(job_revisions(raw, "nightly")) == (4 if remediate else 3)


@pytest.mark.parametrize(
    "setup, reason, retryable",
    [
        (lambda raw: None, reasons.JOB_DEFINITION_NOT_FOUND, True),
        (lambda raw: register_job(raw, execution_role=None), reasons.EXECUTION_ROLE_MISSING, False),
    ],
    ids=["job-definition-missing", "no-execution-role"],
)
def test_bad_job_definitions(factory, raw, recorder, secret_arn, setup, reason, retryable):
    setup(raw)
    recorder.reset()

    outcome = definitions.sync_job_definitions(context(
        factory, secret_arn,
        {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"batchJobDefinitions": [{"name": "nightly"}]}},
    ))

    assert outcome.error is not None
    assert (outcome.error.reason, outcome.error.retryable) == (reason, retryable)
    assert rows(outcome)["nightly"]["state"] == "Error" and recorder.writes() == []


def test_job_definition_registered_by_ci_is_recognised(factory, raw, recorder, secret_arn):
    register_job(raw, credentials=secret_arn)
    recorder.reset()

    outcome = definitions.sync_job_definitions(context(
        factory, secret_arn,
        {"grants": {"executionRoles": ["exec-a"]}, "consumers": {"batchJobDefinitions": [{"name": "nightly"}]}},
    ))

    assert outcome.error is None and recorder.writes() == []
    assert rows(outcome)["nightly"]["state"] == "Synced"


@pytest.mark.parametrize("operation", ["PutRolePolicy", "DeleteRolePolicy"], ids=["put", "delete"])
def test_a_lost_answer_is_observed_again_not_repeated(aws_server, raw, secret_arn, operation):
    # One attempt per call, so the loop (not botocore) meets the lost answer.
    single = ClientFactory(session=boto3.session.Session(region_name=REGION), max_attempts=1)
    make_role(raw, "exec-a")
    spec = {"grants": {"executionRoles": ["exec-a"]}}
    synced = wiring.sync_role_policies(context(single, secret_arn, spec)) if operation == "DeleteRolePolicy" else None
    aws_server.faults.configure(seed=5, scoped=[{"service": "iam", "operation": operation, "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()

    if operation == "PutRolePolicy":
        outcome = wiring.sync_role_policies(context(single, secret_arn, spec))
    else:
        outcome = wiring.delete_role_policies(context(single, secret_arn, spec, previous=synced))
    aws_server.faults.clear()

    # AWS did the work; the loop looked again (GetRolePolicy) and took it as done.
    assert outcome.error is None, outcome.error
    assert aws_server.calls.count("iam", operation, since=mark) == 1
    assert aws_server.faults.injected("abort") >= 1
    if operation == "PutRolePolicy":
        assert rows(outcome)["exec-a"]["state"] == "Synced"
        assert iam_policies.sid_marks(policy_on(raw, "exec-a")) == {iam_policies.sid_prefix(OWNER)}
    else:
        assert policy_on(raw, "exec-a") is None


# =========================================================================== both kinds: ownership, lost answers

OTHER_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:regaccess/other-team/cred-QwErTy"


def _task_wired_by(raw, owner: str | None, credentials: str | None) -> None:
    params = world.three_container_task_definition("web", EXEC_ROLE_ARN)
    if credentials:
        params["containerDefinitions"] = [{**c, "repositoryCredentials": {"credentialsParameter": credentials}}
                                          for c in params["containerDefinitions"]]
    params["tags"] = [{"key": "regaccess.io/owner", "value": owner}] if owner else []
    raw("ecs").register_task_definition(**{k: v for k, v in params.items() if v})


def _job_wired_by(raw, owner: str | None, credentials: str | None) -> None:
    register_job(raw, credentials=credentials, tags={"regaccess.io/owner": owner} if owner else None)


# (sync step, kind, consumers spec, register in AWS, the register operation, count revisions)
DEFINITION_KINDS = [
    (definitions.sync_task_definitions, "taskDefinition", {"ecsTaskDefinitions": [{"family": "web"}]},
     _task_wired_by, "ecs.RegisterTaskDefinition", lambda raw: len(revisions(raw, "web"))),
    (definitions.sync_job_definitions, "jobDefinition", {"batchJobDefinitions": [{"name": "nightly"}]},
     _job_wired_by, "batch.RegisterJobDefinition", lambda raw: len(job_revisions(raw, "nightly"))),
]
KIND_IDS = ["task-definition", "job-definition"]


@pytest.mark.parametrize("sync, kind, consumers, wired_by, register_call, count", DEFINITION_KINDS, ids=KIND_IDS)
def test_another_owners_wiring_is_a_conflict_and_never_overwritten(
        factory, raw, recorder, secret_arn, sync, kind, consumers, wired_by, register_call, count):
    make_role(raw, "exec-a")
    wired_by(raw, OTHER_OWNER, OTHER_SECRET)
    recorder.reset()

    outcome = sync(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}, "consumers": consumers}))

    assert recorder.writes() == [] and outcome.writes == 0 and count(raw) == 1
    assert outcome.error is not None and outcome.error.reason == reasons.OWNERSHIP_CONFLICT
    assert not outcome.error.retryable
    (row,) = outcome.managed
    assert row["kind"] == kind and row["state"] == "Error"
    assert OTHER_OWNER in row["message"] and ("task definition web" in row["message"]
                                              or "job definition nightly" in row["message"])
    assert [e.reason for e in outcome.events if e.type == "Warning"] == [reasons.OWNERSHIP_CONFLICT]


@pytest.mark.parametrize("sync, kind, consumers, wired_by, register_call, count", DEFINITION_KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("owner, credentials", [(None, None), (None, OTHER_SECRET), (OTHER_OWNER, None)],
                         ids=["unmarked", "unmarked-other-secret", "other-owner-unwired"])
def test_listed_consumer_without_another_owners_wiring_is_ours(
        factory, raw, recorder, secret_arn, sync, kind, consumers, wired_by, register_call, count, owner, credentials):
    # Without adoptExisting: listing the definition is the consent (controller.reconcile.definitions).
    make_role(raw, "exec-a")
    wired_by(raw, owner, credentials)
    recorder.reset()

    outcome = sync(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}, "consumers": consumers}))

    assert outcome.error is None and recorder.writes() == [register_call] and count(raw) == 2
    assert [r["state"] for r in outcome.managed] == ["Synced"]


@pytest.mark.parametrize("sync, kind, consumers, wired_by, register_call, count", DEFINITION_KINDS, ids=KIND_IDS)
def test_register_whose_answer_is_lost_is_observed_not_repeated(
        factory, raw, recorder, aws_server, secret_arn, sync, kind, consumers, wired_by, register_call, count):
    make_role(raw, "exec-a")
    wired_by(raw, None, None)
    service, operation = register_call.split(".")
    # AWS registers the revision, then the connection closes before the answer arrives.
    aws_server.faults.configure(seed=7, scoped=[{"service": service, "operation": operation, "rates": {"abort": 1.0}}])
    mark = aws_server.calls.mark()
    recorded: list[dict] = []
    spec = {"grants": {"executionRoles": ["exec-a"]}, "consumers": consumers}

    outcome = sync(context(factory, secret_arn, spec, record_now=recorded.append))
    aws_server.faults.clear()

    assert aws_server.calls.count(service, operation, since=mark) == 1 and count(raw) == 2
    assert outcome.error is None
    (row,) = outcome.managed
    assert row["state"] == "Synced" and row["arn"].endswith(":2")
    assert recorded == [{"managed": [row]}]  # recorded at once, like an answered register
    recorder.reset()
    again = sync(context(factory, secret_arn, spec, previous=outcome))
    assert recorder.writes() == [] and again.error is None and count(raw) == 2


@pytest.mark.parametrize("sync, kind, consumers, wired_by, register_call, count", DEFINITION_KINDS, ids=KIND_IDS)
def test_recording_actor_plans_the_register_and_writes_nothing(
        factory, raw, recorder, secret_arn, sync, kind, consumers, wired_by, register_call, count):
    # regaccess plan runs the same step with a recording actor (controller.reconcile.loop).
    make_role(raw, "exec-a")
    wired_by(raw, None, None)
    actor = loop.RecordingActor()
    recorder.reset()

    outcome = sync(context(factory, secret_arn, {"grants": {"executionRoles": ["exec-a"]}, "consumers": consumers},
                           actor=actor))

    assert recorder.writes() == [] and count(raw) == 1 and outcome.error is None
    ((planned_kind, label, action, fields),) = [(p.kind, p.name, p.action, p.fields) for p in actor.planned]
    assert (planned_kind, action) == (kind, "update") and label.endswith(("web", "nightly"))
    assert fields and all(f.endswith(".repositoryCredentials") for f in fields)
    (row,) = outcome.managed
    assert row["state"] == "Synced" and row["arn"].startswith("<ARN of ") and ":2, assigned" in row["arn"]
