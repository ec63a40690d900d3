"""The migration from 40-bit Sid marks to keyed 128-bit marks (issue 30 §2), against moto.

Given objects as the previous version left them (our statements carrying this owner's
legacy mark: a repository policy, a creation template, an IAM inline policy) and the
status that version wrote, when the operator reconciles, then:

- the statements are recognised as ours at once (no "not ours" window: no conflict,
  no second copy beside them), rewritten with the new mark by exactly one write per
  document, everyone else's statements kept;
- that rewrite is our own change: not reported as drift even under driftPolicy Report
  (no Drifted, no status.drift, ``drift_found`` empty);
- the next drift checks make no write at all.

And the forgeable old mark is evidence only with the status record: an object status
does not name keeps its old-marked statements as someone else's.

Writes are counted by the AWS test server's call record.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from controller.api import reasons
from controller.aws import iam_policies
from controller.aws import repository_policies as policies
from controller.reconcile import cross_account
from tests.aws.open_tenancy import OPEN
from tests.aws.wired_world import (
    CLUSTER, NAME as CREDENTIAL, NS, POLICY, clients_for, converge, full_spec, given_wired_world, on_the_wire, raw, run,
)
from tests.harness import world

pytestmark = pytest.mark.aws

NAME = "pullers"
FOREIGN = {"Sid": "TerraformManagedPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
           "Action": ["ecr:BatchGetImage"]}
OWNER_MARK = f"{CLUSTER}/{NS}/{CREDENTIAL}"  # the RegistryCredential's owner mark
NEW = policies.sid_prefix(CLUSTER, NS, NAME)
OLD = policies.legacy_sid_prefix(NS, NAME)


class Clock:
    def __init__(self) -> None:
        self.moment = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        self.moment += dt.timedelta(seconds=1)
        return self.moment


def xrepo(factory, spec: dict[str, Any], status: dict[str, Any], clock: Clock, *, drift_check: bool = True):
    return cross_account.reconcile(NS, NAME, 1, spec, status, clients_for=clients_for(factory), cluster_id=CLUSTER,
                                   now=clock, drift_check=drift_check, tenancy_policy=OPEN)


def old_marked(document: dict[str, Any], new: str, old: str) -> dict[str, Any]:
    """The document as the previous version wrote it: our Sids under the old mark."""
    return {**document, "Statement": [{**s, "Sid": s["Sid"].replace(new, old, 1)} if s.get("Sid", "").startswith(new)
                                      else s for s in document["Statement"]]}


def sids(document: dict[str, Any]) -> list[str]:
    return [s.get("Sid", "") for s in document["Statement"]]


def drifted(result) -> bool:
    return any(c["type"] == reasons.DRIFTED and c["status"] == "True" for c in result.status["conditions"])


def test_old_marked_repository_and_template_statements_are_rewritten_once_and_are_not_drift(aws_server, factory):
    ecr = raw("ecr")
    world.make_repository(raw, "app")
    world.make_repository(raw, "team/base")
    spec = {"repositories": ["app"], "repositoryPrefixes": ["team"], "driftPolicy": "Report",
            "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}
    clock = Clock()
    first = xrepo(factory, spec, {}, clock, drift_check=False)
    assert first.ready, first.status["conditions"]
    # The previous version's state: the same statements under the old mark, beside someone's.
    for repo in ("app", "team/base"):
        document = world.repository_policy(raw, repo)
        document = old_marked(document, NEW, OLD)
        document["Statement"].insert(0, FOREIGN)
        ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(document))
    template = json.loads(ecr.describe_repository_creation_templates(prefixes=["team"])
                          ["repositoryCreationTemplates"][0]["repositoryPolicy"])
    ecr.update_repository_creation_template(prefix="team", repositoryPolicy=json.dumps(old_marked(template, NEW, OLD)))
    assert all(s.startswith(OLD) for s in sids(world.repository_policy(raw, "app"))[1:])

    mark = aws_server.calls.mark()
    migrated = xrepo(factory, spec, first.status, clock)
    _, writes = on_the_wire(aws_server, mark)
    # One write per document, none of it drift (Report would otherwise refuse to write).
    assert sorted(writes) == ["ecr:SetRepositoryPolicy", "ecr:SetRepositoryPolicy",
                              "ecr:UpdateRepositoryCreationTemplate"], writes
    assert migrated.ready and not drifted(migrated), migrated.status["conditions"]
    assert migrated.drift_found == {} and migrated.status.get("drift") == []
    for repo in ("app", "team/base"):
        document = world.repository_policy(raw, repo)
        assert document["Statement"][0] == FOREIGN
        assert [s.startswith(NEW) for s in sids(document)[1:]] == [True]
        assert not any(s.startswith(OLD) for s in sids(document))
    template = json.loads(ecr.describe_repository_creation_templates(prefixes=["team"])
                          ["repositoryCreationTemplates"][0]["repositoryPolicy"])
    assert [s.startswith(NEW) for s in sids(template)] == [True]

    status = migrated.status
    for _ in range(2):  # and from then on: nothing to write, check after check
        mark = aws_server.calls.mark()
        again = xrepo(factory, spec, status, clock)
        assert on_the_wire(aws_server, mark)[1] == []
        assert again.ready and again.drift_found == {}
        status = again.status


def test_old_marked_statements_are_not_ours_without_the_status_record(aws_server, factory):
    """A new object (empty status) never takes statements for its own on the old, forgeable mark."""
    ecr = raw("ecr")
    world.make_repository(raw, "app")
    spec = {"repositories": ["app"], "grants": [{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]}
    clock = Clock()
    planted = {"Sid": OLD + "G0", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
               "Action": ["ecr:BatchGetImage"]}
    ecr.set_repository_policy(repositoryName="app",
                              policyText=json.dumps({"Version": "2012-10-17", "Statement": [planted]}))
    result = xrepo(factory, spec, {}, clock, drift_check=False)
    assert result.ready
    document = world.repository_policy(raw, "app")
    assert document["Statement"][0] == planted                    # kept as it was: someone else's
    assert [s.startswith(NEW) for s in sids(document)] == [False, True]
    gone = cross_account.delete(NS, NAME, 1, spec, {"repositories": [{"name": "other"}]},
                                clients_for=clients_for(factory), cluster_id=CLUSTER, now=clock, tenancy_policy=OPEN)
    assert gone.retry_after is None
    # status named no row for "app" on this delete: still not ours, still there
    assert world.repository_policy(raw, "app")["Statement"][0] == planted


def test_old_marked_inline_policy_is_rewritten_once_and_is_not_drift(aws_server, factory):
    given_wired_world()
    spec = full_spec(driftPolicy="Report")
    status = converge(factory, spec)
    new, old = iam_policies.sid_prefix(OWNER_MARK), iam_policies.legacy_sid_prefix(OWNER_MARK)
    for role in ("exec-a", "exec-b"):
        document = old_marked(world.role_policy(raw, role, POLICY), new, old)
        raw("iam").put_role_policy(RoleName=role, PolicyName=POLICY, PolicyDocument=json.dumps(document))
        assert iam_policies.sid_marks(world.role_policy(raw, role, POLICY)) == {old}

    mark = aws_server.calls.mark()
    migrated = run(factory, spec, status, drift_check=True)
    _, writes = on_the_wire(aws_server, mark)
    assert sorted(writes) == ["iam:PutRolePolicy", "iam:PutRolePolicy"], writes
    assert migrated.ready and not drifted(migrated), migrated.status["conditions"]
    assert not migrated.drift_found
    for role in ("exec-a", "exec-b"):
        assert iam_policies.sid_marks(world.role_policy(raw, role, POLICY)) == {new}

    status = migrated.status
    for _ in range(2):
        mark = aws_server.calls.mark()
        again = run(factory, spec, status, drift_check=True)
        assert on_the_wire(aws_server, mark)[1] == []
        assert again.ready and not again.drift_found
        status = again.status


def test_old_marked_inline_policy_without_the_status_record_is_a_conflict_not_ours(aws_server, factory):
    """No status row for the role: the old mark alone proves nothing (UNMARKED, adoptExisting decides)."""
    given_wired_world()
    spec = full_spec()
    status = converge(factory, spec)
    new, old = iam_policies.sid_prefix(OWNER_MARK), iam_policies.legacy_sid_prefix(OWNER_MARK)
    document = old_marked(world.role_policy(raw, "exec-a", POLICY), new, old)
    raw("iam").put_role_policy(RoleName="exec-a", PolicyName=POLICY, PolicyDocument=json.dumps(document))
    forgotten = {**status, "managed": [r for r in status["managed"]
                                       if not (r["kind"] == "rolePolicy" and r["name"] == "exec-a")]}
    result = run(factory, spec, forgotten, drift_check=False)
    assert not result.ready
    assert reasons.OWNERSHIP_CONFLICT in json.dumps(result.status["conditions"])
    assert iam_policies.sid_marks(world.role_policy(raw, "exec-a", POLICY)) == {old}  # untouched
