"""Unit tier: ``regaccess plan`` without AWS (validation only): loading, problems, exit codes, output."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from controller import plan

RC = """apiVersion: regaccess.io/v1alpha1
kind: RegistryCredential
metadata: {name: hub, namespace: team}
spec:
  source: {secretRef: {name: robot}}
"""
SECRET = """apiVersion: v1
kind: Secret
metadata: {name: robot, namespace: team}
type: kubernetes.io/basic-auth
stringData: {username: u, password: UNIT-LEAKCHECK-9d1}
"""


def plan_text(text: str) -> list[plan.ObjectPlan]:
    manifests, broken = plan.load_text(text, "m.yaml")
    return broken + plan.plan_objects(manifests, default_namespace="default", factory=None)


def problems(objects: list[plan.ObjectPlan]) -> list[tuple[str, str]]:
    return [(p.field, p.reason) for o in objects for p in o.problems]


def test_documents_keep_their_line_and_other_kinds_are_skipped():
    objects = plan_text(SECRET + "---\n" + RC)
    assert [(o.source, o.label) for o in objects] == [("m.yaml:7", "RegistryCredential team/hub")]
    assert problems(objects) == []


@pytest.mark.parametrize("text, expected", [
    ("a: [unclosed\n", [("(document)", "InvalidSpec")]),
    ("- just\n- a list\n", [("(document)", "InvalidSpec")]),
    (RC.replace("v1alpha1", "v1beta9"), [("apiVersion", "InvalidSpec")]),
    (RC + "specs: {}\n", [("specs", "InvalidSpec")]),
    (RC.replace("RegistryCredential", "RegistryCredentials"), [("kind", "InvalidSpec")]),
    (RC.replace("secretRef:", "secretRefs:"), [("spec.source.secretRefs", "InvalidSpec"), ("spec.source.secretRef", "InvalidSpec")]),
    (RC.replace("{name: hub, namespace: team}", "{namespace: team}"), [("metadata.name", "InvalidSpec")]),
], ids=["yaml-error", "not-a-mapping", "api-version", "pruned-top-level", "unknown-kind", "typo-in-spec", "no-name"])
def test_problems_name_the_field(text, expected):
    assert sorted(problems(plan_text(text))) == sorted(expected)


def test_source_secret_in_the_manifests_is_checked_by_key_names():
    objects = plan_text(SECRET.replace("password:", "pasword:") + "---\n" + RC)
    assert problems(objects) == [("spec.source.secretRef", "SourceKeyMissing")]
    assert "has no key 'password'" in objects[0].problems[0].message


def test_missing_source_secret_is_a_note_not_a_problem():
    [obj] = plan_text(RC)
    assert obj.problems == [] and obj.notes == ["source Secret team/robot is not among these manifests: it must exist in the cluster"]


def test_run_offline_exit_codes_and_no_secret_value(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(SECRET + "---\n" + RC)
    bad = tmp_path / "bad.yaml"
    bad.write_text(RC.replace("{name: robot}", "{name: Robot_1}"))
    out = io.StringIO()
    assert plan.run([str(good)], aws="off", stdout=out, stderr=io.StringIO()) == plan.EXIT_OK
    assert "UNIT-LEAKCHECK" not in out.getvalue()
    assert "AWS not compared" in out.getvalue()

    out = io.StringIO()
    assert plan.run([str(tmp_path)], aws="off", output="json", stdout=out, stderr=io.StringIO()) == plan.EXIT_INVALID
    report = json.loads(out.getvalue())
    assert report["valid"] is False and report["exitCode"] == plan.EXIT_INVALID
    [bad_obj] = [o for o in report["objects"] if not o["valid"]]
    assert bad_obj["problems"][0]["field"] == "spec.source.secretRef.name"
    assert "pattern" in bad_obj["problems"][0]["rule"]
    assert "UNIT-LEAKCHECK" not in out.getvalue()

    assert plan.run([str(tmp_path / "nope")], aws="off", stdout=io.StringIO(), stderr=io.StringIO()) == plan.EXIT_USAGE
    only_secret = tmp_path / "s"
    only_secret.mkdir()
    (only_secret / "s.yaml").write_text(SECRET)
    assert plan.run([str(only_secret)], aws="off", stdout=io.StringIO(), stderr=io.StringIO()) == plan.EXIT_USAGE


def test_guard_allows_reads_only():
    class Op:
        def __init__(self, name):
            self.name = name

    for name in ("DescribeSecret", "GetRolePolicy", "ListRolePolicies"):
        assert plan.read_only_guard(model=Op(name)) is None  # sent to AWS
    for name in ("PutRolePolicy", "CreateSecret", "RegisterTaskDefinition", "TagResource", "SetRepositoryPolicy"):
        with pytest.raises(plan.ReadOnlyViolation):
            plan.read_only_guard(model=Op(name))
    # A secret's value is never fetched: answered locally with "no value" (the operator compares, plan cannot).
    http, parsed = plan.read_only_guard(model=Op("GetSecretValue"))
    assert http.status_code == 200 and parsed == {"SecretString": None}


def test_kube_live_reads_the_resource_and_only_the_source_secrets_metadata():
    asked = []
    bodies = {
        "/apis/regaccess.io/v1alpha1/namespaces/team/registrycredentials/hub":
            {"metadata": {"generation": 3}, "spec": {"x": 1}, "status": {"secretArn": "arn"}},
        "/api/v1/namespaces/team/secrets/robot": {"kind": "PartialObjectMetadata", "metadata": {"resourceVersion": "42"}},
    }

    def get(path, accept):
        asked.append((path, accept))
        return bodies.get(path)

    live = plan.KubeLive(get)

    assert live.resource("RegistryCredential", "team", "hub") == plan.Live(3, {"x": 1}, {"secretArn": "arn"})
    assert live.resource("CrossAccountRepoAccess", "team", "hub") is None
    assert live.source_version("team", "robot") == "42"
    assert live.source_version("team", "gone") is None
    assert [accept for path, accept in asked if "/secrets/" in path] == [plan.METADATA_ONLY] * 2
    assert asked[1][0] == "/apis/regaccess.io/v1alpha1/namespaces/team/crossaccountrepoaccesses/hub"


@pytest.mark.parametrize("spec, reason", [
    ({"registries": [{"registryId": "12345"}]}, "InvalidRegistryId"),
    ({"registries": [{"region": "us-nowhere-1"}]}, "UnknownRegion"),
    ({"secretName": "Not_A_Name"}, "InvalidSpec"),
], ids=["registry-id", "unknown-region", "secret-name"])
def test_plan_judges_an_ecr_pull_secret_like_the_operator(spec, reason):
    text = yaml.safe_dump({"apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret",
                           "metadata": {"name": "pull", "namespace": "apps"}, "spec": spec})
    manifests, _ = plan.load_text(text, "pull.yaml")
    (obj,) = plan.plan_objects(manifests, factory=None)
    assert [p.reason for p in obj.problems] == [reason]


def test_plan_notes_that_without_aws_an_ecr_pull_secret_is_only_validated():
    text = yaml.safe_dump({"apiVersion": "regaccess.io/v1alpha1", "kind": "ECRPullSecret",
                           "metadata": {"name": "pull", "namespace": "apps"}, "spec": {}})
    (obj,) = plan.plan_objects(plan.load_text(text, "pull.yaml")[0], factory=None)
    assert obj.problems == [] and obj.notes == [plan.MSG_PULL_SECRET_NOTE]


def test_plan_judges_under_the_clusters_tenancy_policy_not_one_the_manifests_add():
    from controller import tenancy

    widening = plan.Manifest("pr.yaml:1", {"apiVersion": "regaccess.io/v1alpha1", "kind": "TenancyPolicy",
                                           "metadata": {"name": "default"},
                                           "spec": {"defaultAction": "Allow", "default": {}}})
    cluster = tenancy.from_spec("default", {"defaultAction": "Deny"})
    asked = []

    def read(name):
        asked.append(name)
        return cluster

    policy, notes = plan.choose_tenancy([widening], "default", read)
    assert policy is cluster and asked == ["default"]
    assert any("is not used" in n for n in notes) and any("from the cluster" in n for n in notes)
    # No policy in the cluster: still not the pull request's, but the operator's fall-back.
    policy, notes = plan.choose_tenancy([widening], "default", lambda name: None)
    assert policy is tenancy.SHIPPED and any("is not used" in n for n in notes)
    assert plan.choose_tenancy([widening], "team-rules", lambda name: None)[0].missing
    # Without the cluster (no --kube): the manifests' policy is all plan has.
    policy, _ = plan.choose_tenancy([widening], "default", None)
    assert policy == tenancy.from_spec("default", widening.body["spec"])
    assert plan.choose_tenancy([], "default", None)[0] is tenancy.SHIPPED
    assert plan.choose_tenancy([widening], "", read)[0] is tenancy.SHIPPED and asked == ["default"]
