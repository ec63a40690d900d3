"""A hand edit that strips the marks does not take an object away from its owner (issue 30 §1), end to end.

The shared operator process (drift interval 4 s) on the real API server and the AWS test
server. A RegistryCredential (secret, one role's inline policy) and a CrossAccountRepoAccess
on a prefix (an existing repository's statement and the prefix's repository creation
template statement) are made Ready; then, as a person does it:

- the inline policy is replaced with ``{"Effect": "Allow", "Action": "secretsmanager:*",
  "Resource": "*"}`` (no Sid, as consoles write it);
- the secret's ``regaccess.io/owner`` tag is removed;
- our statements in the repository policy and in the template lose their Sids.

Remediate: within one drift check each is back with our marks, the widened policy gone.
Report: Drifted=True and Ready=False with reason ``MarkRemoved``, AWS left as the person
left it check after check, and deleting the resource deletes the widened policy.
(The event path, within 5 s of the PutRolePolicy event: tests/e2e/test_drift_events.py.)
"""

from __future__ import annotations

import json

import pytest

from controller.aws import iam_policies
from controller.aws import repository_policies as policies
from controller.aws.protocol import OWNER_TAG
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.support import DRIFT_WAIT, SETTLE, custom_resource, delete_all, wait_ready, xrepo_path
from tests.e2e.test_registry_credential import basic_auth_secret
from tests.harness import world

pytestmark = pytest.mark.e2e

WIDENED = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}


class Scene:
    def __init__(self, kube, namespace: str, session, policy: str) -> None:
        self.kube, self.ns, self.client = kube, namespace, session.client
        self.role, self.policy = f"exec-{namespace}", f"regaccess-{namespace}-cred"
        self.secret = f"regaccess/{namespace}/cred"
        self.prefix = f"{namespace}-mark"
        self.repository = f"{self.prefix}/app"
        world.make_role(self.client, self.role)
        ecr = self.client("ecr")
        ecr.create_repository(repositoryName=self.repository)
        ecr.create_repository_creation_template(prefix=self.prefix, appliedFor=["PULL_THROUGH_CACHE"])
        kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
        kube.create(kube.rc_path(namespace), registry_credential(namespace, "cred", {
            "source": {"secretRef": {"name": "src"}},
            "secret": {"forceDeleteWithoutRecovery": True},
            "grants": {"executionRoles": [self.role]},
            "driftPolicy": policy,
        }))
        kube.create(xrepo_path(namespace), custom_resource("CrossAccountRepoAccess", namespace, "pullers", {
            "repositoryPrefixes": [self.prefix], "driftPolicy": policy,
            "grants": [{"principals": [{"accountId": "222222222222"}], "access": "Pull"}]}))
        wait_ready(kube, kube.rc_path(namespace, "cred"))
        wait_ready(kube, xrepo_path(namespace, "pullers"))
        self.owner = self.rc_owner()

    def rc(self) -> dict:
        return self.kube.get(self.kube.rc_path(self.ns, "cred"))

    def rc_owner(self) -> str:
        tags = self.client("secretsmanager").describe_secret(SecretId=self.secret).get("Tags") or []
        return {t["Key"]: t["Value"] for t in tags}[OWNER_TAG]

    # ---- what AWS holds
    def document(self) -> dict | None:
        if self.policy not in self.client("iam").list_role_policies(RoleName=self.role)["PolicyNames"]:
            return None
        return world.role_policy(self.client, self.role, self.policy)

    def owner_tag(self) -> str | None:
        tags = self.client("secretsmanager").describe_secret(SecretId=self.secret).get("Tags") or []
        return {t["Key"]: t["Value"] for t in tags}.get(OWNER_TAG)

    def repository_statements(self) -> list[dict]:
        return world.repository_policy(self.client, self.repository)["Statement"]

    def template_statements(self) -> list[dict]:
        [template] = self.client("ecr").describe_repository_creation_templates(
            prefixes=[self.prefix])["repositoryCreationTemplates"]
        return json.loads(template.get("repositoryPolicy") or '{"Statement": []}')["Statement"]

    def ours(self, statements: list[dict]) -> list[dict]:
        prefix = policies.sid_prefix(self.owner.split("/", 1)[0], self.ns, "pullers")
        return [s for s in statements if str(s.get("Sid", "")).startswith(prefix)]

    def policy_marked(self) -> bool:
        document = self.document()
        return (document is not None and iam_policies.sid_marks(document) == {iam_policies.sid_prefix(self.owner)}
                and all(s["Resource"] != "*" for s in document["Statement"]))

    # ---- the hand edits
    def strip_everything(self) -> None:
        self.client("iam").put_role_policy(RoleName=self.role, PolicyName=self.policy,
                                           PolicyDocument=json.dumps(WIDENED))
        self.client("secretsmanager").untag_resource(SecretId=self.secret, TagKeys=[OWNER_TAG])
        ecr = self.client("ecr")
        stripped = [{k: v for k, v in s.items() if k != "Sid"} for s in self.repository_statements()]
        ecr.set_repository_policy(repositoryName=self.repository,
                                  policyText=json.dumps({"Version": "2012-10-17", "Statement": stripped}))
        stripped = [{k: v for k, v in s.items() if k != "Sid"} for s in self.template_statements()]
        ecr.update_repository_creation_template(
            prefix=self.prefix, repositoryPolicy=json.dumps({"Version": "2012-10-17", "Statement": stripped}))
        assert not self.ours(self.repository_statements()) and not self.ours(self.template_statements())


@pytest.fixture
def cleanup(kube, operator, namespace):
    yield
    delete_all(kube, namespace)


def test_remediate_puts_every_stripped_mark_back_within_one_drift_check(kube, operator, namespace, aws_e2e,
                                                                         cleanup):
    scene = Scene(kube, namespace, aws_e2e, "Remediate")
    scene.strip_everything()

    wait_for(scene.policy_marked, DRIFT_WAIT, "inline policy restored with its marks, the widening gone")
    wait_for(lambda: scene.owner_tag() == scene.owner, DRIFT_WAIT, "the secret's owner tag restored")
    wait_for(lambda: scene.ours(scene.repository_statements()), DRIFT_WAIT, "our repository statement back")
    wait_for(lambda: scene.ours(scene.template_statements()), DRIFT_WAIT, "our template statement back")
    rc = wait_for(lambda: (lambda o: o if condition(o, "Ready").get("status") == "True" else None)(scene.rc()),
                  SETTLE, "RegistryCredential Ready again")
    fields = {(r["object"], r["field"]) for r in rc["status"].get("drift") or []}
    assert {(f"rolePolicy/{scene.role}", "mark"), ("secret", "mark")} <= fields
    assert condition(rc, "Drifted")["reason"] == "DriftRemediated"


def test_report_says_mark_removed_leaves_aws_alone_and_delete_removes_the_widening(kube, operator, namespace,
                                                                                    aws_e2e, cleanup):
    scene = Scene(kube, namespace, aws_e2e, "Report")
    scene.client("iam").put_role_policy(RoleName=scene.role, PolicyName=scene.policy,
                                        PolicyDocument=json.dumps(WIDENED))

    rc = wait_for(lambda: (lambda o: o if condition(o, "Drifted").get("reason") == "MarkRemoved" else None)(
        scene.rc()), DRIFT_WAIT, "Drifted MarkRemoved")
    assert condition(rc, "Drifted")["status"] == "True"
    assert condition(rc, "Ready")["status"] == "False" and condition(rc, "Ready")["reason"] == "MarkRemoved"
    checked = rc["status"]["lastDriftCheckTime"]
    wait_for(lambda: scene.rc()["status"]["lastDriftCheckTime"] != checked, DRIFT_WAIT, "another drift check")
    assert scene.document() == WIDENED  # reported, never written
    assert condition(scene.rc(), "Drifted")["reason"] == "MarkRemoved"

    kube.delete(kube.rc_path(namespace, "cred"))
    wait_for(lambda: kube.get_or_none(kube.rc_path(namespace, "cred")) is None, SETTLE, "deleted")
    assert scene.document() is None  # the widening does not outlive its resource
