"""Unit tests for controller.aws.repository_policies: ownership, desired, merge, compare, size."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
from botocore.exceptions import ClientError

from controller.api.validation_xrepo import validate_cross_account
from controller.aws import policydoc
from controller.aws import repository_policies as rp
from controller.aws.protocol import Action, Difference, Owner, Written

CLUSTER = "c"  # the cluster id resolved() validates with
PREFIX = rp.sid_prefix(CLUSTER, "team-a", "pullers")
OTHER = rp.sid_prefix(CLUSTER, "team-b", "pushers")
ROLE = "arn:aws:iam::444455556666:role/ci"


def resolved(grants, namespace="team-a", name="pullers"):
    result, problems = validate_cross_account(
        namespace, name, {"repositories": ["app"], "grants": grants}, cluster_id="c"
    )
    assert not problems, problems
    return result


def ours(suffix="G0", principal="arn:aws:iam::111122223333:root", prefix=PREFIX):
    return {"Sid": f"{prefix}{suffix}", "Effect": "Allow", "Principal": {"AWS": principal},
            "Action": list(rp.PULL_ACTIONS)}


HUMAN = {"Sid": "AllowCi", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
         "Action": "ecr:BatchGetImage"}
NO_SID = {"Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository"}
# Someone else's Sid that merely *contains* our readable part must not count as ours.
LOOKALIKE = {"Sid": "Regaccessteamapullers", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}


# ----------------------------------------------------------------------------- Sid prefix


def test_sid_prefix_is_deterministic_and_valid():
    assert rp.sid_prefix(CLUSTER, "team-a", "pullers") == PREFIX
    assert re.fullmatch(r"[A-Za-z0-9]+", PREFIX)
    assert re.fullmatch(r"Regaccessteamapullers[0-9A-F]{32}Z", PREFIX)


@pytest.mark.parametrize(
    "a,b",
    [
        (("a", "bc"), ("ab", "c")),          # same readable text, different resources
        (("team-a", "app"), ("team-a", "app-1")),
        (("x", "y"), ("x", "y" * 80)),       # truncated readable part
        (("ns", "a.b"), ("ns", "a-b")),      # both sanitise to "ab"
    ],
    ids=["split-point", "name-extension", "truncation", "sanitised-equal"],
)
def test_sid_prefixes_of_different_resources_never_nest(a, b):
    pa, pb = rp.sid_prefix(CLUSTER, *a), rp.sid_prefix(CLUSTER, *b)
    assert pa != pb
    assert not pa.startswith(pb) and not pb.startswith(pa)
    # nor does one resource own the other's statements
    assert not rp.is_owned({"Sid": pb + "G0"}, pa) and not rp.is_owned({"Sid": pa + "G0Org"}, pb)


def test_sid_prefixes_are_prefix_free_over_many_names():
    names = ["a", "b", "ab", "a-b", "x1", "x10", "default", "kube-system", "team-a", "teama", "0", "00"]
    prefixes = {rp.sid_prefix(CLUSTER, ns, n) for ns, n in itertools.product(names, repeat=2)}
    assert len(prefixes) == len(names) ** 2
    for p, q in itertools.permutations(prefixes, 2):
        assert not (q + "G12Org").startswith(p)


# ----------------------------------------------------------------------------- desired


@pytest.mark.parametrize(
    "access,expected",
    [
        ("Pull", set(rp.PULL_ACTIONS)),
        ("Push", {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                  "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage"}),
        ("PullPush", set(rp.PULL_ACTIONS) | set(rp.PUSH_ONLY_ACTIONS)),
    ],
    ids=["pull", "push-includes-what-a-push-reads", "pullpush-union"],
)
def test_actions_per_access(access, expected):
    [statement] = rp.desired_statements(resolved([{"principals": [{"accountId": "111122223333"}], "access": access}]))
    assert set(statement["Action"]) == expected
    if access == "Push":  # Push alone cannot download layers
        assert "ecr:GetDownloadUrlForLayer" not in statement["Action"]


def test_desired_principal_forms_and_no_resource():
    statements = rp.desired_statements(
        resolved([
            {"principals": [{"accountId": "111122223333"}, {"roleArn": ROLE}, {"organizationId": "o-abcdefghij"}],
             "access": "Pull"},
            {"principals": [{"organizationId": "o-abcdefghij1"}, {"organizationId": "o-klmnopqrst"}], "access": "Push"},
        ])
    )
    by_sid = {s["Sid"][len(PREFIX):]: s for s in statements}
    assert list(by_sid) == ["G0", "G0Org", "G1Org"]
    assert by_sid["G0"]["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root", ROLE]}
    assert by_sid["G0Org"]["Principal"] == "*"
    assert by_sid["G0Org"]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    assert by_sid["G1Org"]["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == ["o-abcdefghij1", "o-klmnopqrst"]
    assert all("Resource" not in s and s["Effect"] == "Allow" for s in statements)
    assert all(re.fullmatch(r"[A-Za-z0-9]+", s["Sid"]) for s in statements)


@pytest.mark.parametrize(
    "region,partition", [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), (None, "aws")],
    ids=["commercial", "china", "govcloud", "default"],
)
def test_account_root_uses_the_region_partition(region, partition):
    [statement] = rp.desired_statements(
        resolved([{"principals": [{"accountId": "111122223333"}], "access": "Pull"}]),
        partition=rp.partition_of(region),
    )
    assert statement["Principal"] == {"AWS": f"arn:{partition}:iam::111122223333:root"}


def test_rejectable_principals_are_roles_only():
    statements = rp.desired_statements(
        resolved([{"principals": [{"accountId": "111122223333"}, {"roleArn": ROLE}, {"organizationId": "o-abcdefghij"}],
                   "access": "Pull"}])
    )
    assert rp.role_principals(statements) == [ROLE]
    assert rp.all_principals(statements) == ["arn:aws:iam::111122223333:root", ROLE, "o-abcdefghij"]


# ----------------------------------------------------------------------------- merge / removal

MERGE_CASES = {
    "no-policy-yet": dict(
        existing=None, desired=[ours()],
        statements=[ours()], version="2012-10-17"),
    "foreign-kept-in-order-ours-appended": dict(
        existing={"Version": "2008-10-17", "Statement": [HUMAN, NO_SID]}, desired=[ours()],
        statements=[HUMAN, NO_SID, ours()], version="2008-10-17"),
    "ours-replaced-foreign-untouched": dict(
        existing={"Version": "2012-10-17", "Statement": [ours("G0", "arn:aws:iam::000000000000:root"), HUMAN,
                                                         ours("G9")]},
        desired=[ours()], statements=[HUMAN, ours()], version="2012-10-17"),
    "single-statement-object": dict(
        existing={"Version": "2012-10-17", "Statement": HUMAN}, desired=[ours()],
        statements=[HUMAN, ours()], version="2012-10-17"),
    "two-owners-coexist": dict(
        existing={"Version": "2012-10-17", "Statement": [ours(prefix=OTHER), HUMAN, ours("G0", "arn:aws:iam::000000000000:root")]},
        desired=[ours(), ours("G1", ROLE)],
        statements=[ours(prefix=OTHER), HUMAN, ours(), ours("G1", ROLE)], version="2012-10-17"),
    "lookalike-sid-is-foreign": dict(
        existing={"Version": "2012-10-17", "Statement": [LOOKALIKE]}, desired=[ours()],
        statements=[LOOKALIKE, ours()], version="2012-10-17"),
    "json-text-input": dict(
        existing='{"Version": "2012-10-17", "Id": "keep-me", "Statement": [{"Sid": "AllowCi", "Effect": "Allow", '
                 '"Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": "ecr:BatchGetImage"}]}',
        desired=[ours()], statements=[HUMAN, ours()], version="2012-10-17"),
}


@pytest.mark.parametrize("case", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merge(case):
    existing = copy.deepcopy(case["existing"])
    pristine = copy.deepcopy(existing)
    merged = rp.merge(existing, PREFIX, case["desired"])
    assert merged["Statement"] == case["statements"]
    assert merged["Version"] == case["version"]
    assert existing == pristine  # the observed document is never mutated
    if isinstance(existing, dict):
        # foreign statements are the very same objects, not copies
        foreign = [s for s in policydoc.statements(existing) if not rp.is_owned(s, PREFIX)]
        assert all(any(m is f for m in merged["Statement"]) for f in foreign)
    if isinstance(case["existing"], str):
        assert merged["Id"] == "keep-me" and list(merged)[:2] == ["Version", "Id"]


REMOVAL_CASES = {
    "leaves-others": ({"Version": "2008-10-17", "Statement": [HUMAN, ours(), ours(prefix=OTHER)]},
                      {"Version": "2008-10-17", "Statement": [HUMAN, ours(prefix=OTHER)]}),
    "deletes-when-only-ours": ({"Version": "2012-10-17", "Statement": [ours(), ours("G1Org")]}, None),
    "nothing-of-ours": ({"Version": "2012-10-17", "Statement": [HUMAN]}, {"Version": "2012-10-17", "Statement": [HUMAN]}),
    "no-policy": (None, None),
}


@pytest.mark.parametrize("existing,expected", REMOVAL_CASES.values(), ids=REMOVAL_CASES.keys())
def test_removal(existing, expected):
    assert rp.removal(existing, PREFIX) == expected


# ----------------------------------------------------------------------------- compare

COMPARE_CASES = {
    "identical": ([ours()], [ours()], ()),
    "statement-order": ([ours("G1", ROLE), ours()], [ours(), ours("G1", ROLE)], ()),
    "action-order-and-case": (
        [{**ours(), "Action": ["ECR:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:batchgetimage"]}],
        [ours()], ()),
    "string-vs-list-principal": ([ours(principal=["arn:aws:iam::111122223333:root"])], [ours()], ()),
    "string-vs-list-action": ([{**ours(), "Action": "ecr:BatchGetImage"}],
                              [{**ours(), "Action": ["ecr:BatchGetImage"]}], ()),
    "account-id-vs-root-arn": ([ours(principal="111122223333")], [ours()], ()),
    "principal-list-order": ([ours(principal=[ROLE, "arn:aws:iam::111122223333:root"])],
                             [ours(principal=["arn:aws:iam::111122223333:root", ROLE])], ()),
    "condition-string-vs-list": (
        [{**ours("G0Org"), "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ["o-abcdefghij"]}}}],
        [{**ours("G0Org"), "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}}],
        ()),
    "foreign-changes-ignored": ([HUMAN, ours(), NO_SID], [ours()], ()),
    "action-removed": ([{**ours(), "Action": ["ecr:BatchGetImage"]}], [ours()], (f"Statement[{PREFIX}G0]",)),
    "principal-changed": ([ours(principal="arn:aws:iam::000000000000:root")], [ours()], (f"Statement[{PREFIX}G0]",)),
    "missing": ([], [ours()], (f"Statement[{PREFIX}G0]",)),
    "extra-owned": ([ours(), ours("G7")], [ours()], (f"Statement[{PREFIX}G7]",)),
    "duplicated-owned-sid": ([ours(), ours()], [ours()], (f"Statement[{PREFIX}G0]",)),
}


@pytest.mark.parametrize("existing,desired,differences", COMPARE_CASES.values(), ids=COMPARE_CASES.keys())
def test_compare_by_meaning(existing, desired, differences):
    document = {"Version": "2012-10-17", "Statement": existing}
    assert rp.compare(document, PREFIX, desired) == differences


def test_compare_after_merge_is_clean():
    desired = rp.desired_statements(
        resolved([{"principals": [{"accountId": "111122223333"}, {"organizationId": "o-abcdefghij"}], "access": "Pull"}])
    )
    merged = rp.merge({"Statement": [HUMAN]}, PREFIX, desired)
    assert rp.compare(policydoc.dumps(merged), PREFIX, desired) == ()


# ----------------------------------------------------------------------------- size


def _roles(count: int) -> list[dict]:
    return [{"roleArn": f"arn:aws:iam::444455556666:role/some-long-team-role-name-{i:04d}"} for i in range(count)]


def test_size_under_limit_is_fine():
    desired = rp.desired_statements(resolved([{"principals": _roles(10), "access": "Pull"}]))
    assert rp.oversize_message("app", rp.merge(None, PREFIX, desired), PREFIX, desired) is None


def test_size_over_limit_names_repository_and_largest_grant():
    big = {"Sid": "Human", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"] * 600}
    desired = rp.desired_statements(
        resolved([{"principals": [{"accountId": "111122223333"}], "access": "Pull"},
                  {"principals": _roles(40), "access": "PullPush"}])
    )
    merged = rp.merge({"Version": "2012-10-17", "Statement": [big]}, PREFIX, desired)
    assert rp.policy_size(merged) > rp.MAX_POLICY_CHARS
    message = rp.oversize_message("tools/base", merged, PREFIX, desired)
    assert message and "tools/base" in message and "spec.grants[1]" in message and "10240" in message


def test_size_counts_characters_without_whitespace():
    desired = [ours()]
    doc = rp.merge(None, PREFIX, desired)
    assert rp.policy_size(doc) == len(policydoc.dumps(doc))


# ----------------------------------------------------------------------------- errors


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SetRepositoryPolicy")


@pytest.mark.parametrize(
    "code,message,rejected",
    [
        ("InvalidParameterException", "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
                                      "'Invalid repository policy provided'", True),
        ("InvalidParameterException", "Principal not found: arn:aws:iam::1:role/x", True),
        ("InvalidParameterException", "Invalid parameter at 'RepositoryName'", False),
        ("RepositoryNotFoundException", "Invalid repository policy provided", False),
        ("ThrottlingException", "Rate exceeded", False),
    ],
    ids=["invalid-policy", "principal-not-found", "other-invalid-parameter", "other-code", "throttled"],
)
def test_is_principal_rejection(code, message, rejected):
    assert rp.is_principal_rejection(_client_error(code, message)) is rejected


@pytest.mark.parametrize("count,too_large", [(10, False), (200, True)], ids=["fits", "over-on-its-own"])
def test_grants_too_large_on_their_own(count, too_large):
    desired = rp.desired_statements(
        resolved([{"principals": [{"accountId": "111122223333"}], "access": "Pull"},
                  {"principals": _roles(count), "access": "PullPush"}])
    )
    message = rp.grants_too_large_message(PREFIX, desired)
    assert (message is not None) is too_large
    if message:
        assert "spec.grants[1]" in message and "10240" in message


# ----------------------------------------------------------------------------- the kind adapter (STATEMENTS)

ARN = "arn:aws:ecr:us-east-1:123456789012:repository/app"
CHANGED = {**ours(), "Action": ["ecr:BatchGetImage"]}
OBSERVE_CASES = {
    # given the repository's policy statements (None: no policy), desired -> exists, owner, differences
    "no-policy": (None, [ours()], False, Owner.ABSENT, (Difference(f"Statement[{PREFIX}G0]", None, ours()),)),
    "only-foreign": ([HUMAN, NO_SID, LOOKALIKE], [ours()], False, Owner.ABSENT,
                     (Difference(f"Statement[{PREFIX}G0]", None, ours()),)),
    "another-resource-only": ([ours(prefix=OTHER)], [ours()], False, Owner.ABSENT,
                              (Difference(f"Statement[{PREFIX}G0]", None, ours()),)),
    "ours-as-declared": ([HUMAN, ours()], [ours()], True, Owner.OURS, ()),
    "ours-changed": ([HUMAN, CHANGED], [ours()], True, Owner.OURS,
                     (Difference(f"Statement[{PREFIX}G0]", CHANGED, ours()),)),
    "ours-extra": ([ours(), ours("G7")], [ours()], True, Owner.OURS,
                   (Difference(f"Statement[{PREFIX}G7]", ours("G7"), None),)),
    "delete-view-ours-present": ([HUMAN, ours()], [], True, Owner.OURS,
                                 (Difference(f"Statement[{PREFIX}G0]", ours(), None),)),
    "delete-view-nothing-of-ours": ([HUMAN], [], False, Owner.ABSENT, ()),
}


@pytest.mark.parametrize("statements, desired, exists, owner, differences", OBSERVE_CASES.values(),
                         ids=OBSERVE_CASES.keys())
def test_observation_of_our_statements(statements, desired, exists, owner, differences):
    policy = None if statements is None else {"Version": "2012-10-17", "Statement": statements}
    found = {"arn": ARN, "registryId": "123456789012", "policy": policy}
    observation = rp.observation_of(found, rp.DesiredStatements("app", PREFIX, desired))
    assert (observation.exists, observation.owner, observation.differences) == (exists, owner, differences)
    assert observation.observed["arn"] == ARN
    # never anyone else's mark: foreign statements are not objects of this kind
    assert observation.mark is None


def test_adapter_merges_into_foreign_statements_as_the_same_dicts():
    human = copy.deepcopy(HUMAN)
    policy = {"Version": "2008-10-17", "Statement": [human, CHANGED]}
    desired = rp.DesiredStatements("app", PREFIX, [ours()])
    observation = rp.observation_of({"arn": ARN, "policy": policy}, desired)
    merged = rp.STATEMENTS.merged(desired, observation)
    assert merged["Statement"][0] is human and merged["Statement"][1:] == [ours()]
    assert merged["Version"] == "2008-10-17"


THEIRS = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
          "Action": "ecr:BatchGetImage"}


@pytest.mark.parametrize("action, others, facts", [
    (Action.CREATE, [], {"arn": ARN, "othersKept": 0}),
    (Action.UPDATE, [THEIRS], {"arn": ARN, "othersKept": 1}),
    (Action.DELETE, [], {"policyDeleted": True, "othersKept": 0}),       # DeleteRepositoryPolicy
    (Action.DELETE, [THEIRS], {"policyDeleted": False, "othersKept": 1}),  # SetRepositoryPolicy with the rest
], ids=["create", "update-keeps-theirs", "delete-the-policy", "delete-ours-only"])
def test_predict_is_one_write_with_the_known_arn(action, others, facts):
    desired = rp.DesiredStatements("app", PREFIX, [ours()])
    policy = {"Version": "2012-10-17", "Statement": [*others, ours()]}
    observation = rp.observation_of({"arn": ARN, "policy": policy}, desired)
    assert rp.STATEMENTS.predict(desired, observation, action) == Written(1, facts)
    assert rp.STATEMENTS.label(desired) == "repository app" and rp.STATEMENTS.kind == "repositoryPolicy"


# ----------------------------------------------------------------------------- one adapter, three documents


class FakeEcr:
    """Records the calls a document location makes (the adapter's writes are thin)."""

    def __init__(self):
        self.made = []

    def __getattr__(self, name):
        return lambda **kwargs: self.made.append((name, kwargs)) or {}


TEMPLATE_MINE = {"prefix": "team", "description": rp.TEMPLATE_MARK, "appliedFor": ["PULL_THROUGH_CACHE"]}
TEMPLATE_THEIRS = {"prefix": "team", "description": "made by hand", "appliedFor": ["REPLICATION"]}
TEMPLATE_MINE_WITH_LIFECYCLE = {**TEMPLATE_MINE, "lifecyclePolicy": "{}"}

DOCUMENT_CASES = {
    # adapter, found (observed) before the write, action -> calls made
    "repository-create": (rp.STATEMENTS, {"arn": ARN, "policy": None}, Action.CREATE, ["set_repository_policy"]),
    "template-absent-created": (rp.TEMPLATE_STATEMENTS, {"template": None, "policy": None}, Action.CREATE,
                                ["create_repository_creation_template"]),
    "template-present-updated": (rp.TEMPLATE_STATEMENTS, {"template": TEMPLATE_THEIRS, "policy": None},
                                 Action.CREATE, ["update_repository_creation_template"]),
    "template-ours-alone-deleted": (rp.TEMPLATE_STATEMENTS, {"template": TEMPLATE_MINE, "policy": {
        "Statement": [ours()]}}, Action.DELETE, ["delete_repository_creation_template"]),
    "template-ours-with-lifecycle-kept": (rp.TEMPLATE_STATEMENTS, {"template": TEMPLATE_MINE_WITH_LIFECYCLE,
                                                                   "policy": {"Statement": [ours()]}},
                                          Action.DELETE, ["update_repository_creation_template"]),
    "template-theirs-policy-cleared": (rp.TEMPLATE_STATEMENTS, {"template": TEMPLATE_THEIRS,
                                                                "policy": {"Statement": [ours()]}},
                                       Action.DELETE, ["update_repository_creation_template"]),
    "template-foreign-statement-kept": (rp.TEMPLATE_STATEMENTS, {"template": TEMPLATE_MINE,
                                                                 "policy": {"Statement": [HUMAN, ours()]}},
                                        Action.DELETE, ["update_repository_creation_template"]),
    "registry-put": (rp.REGISTRY_STATEMENTS, {"policy": {"Statement": [HUMAN]}}, Action.UPDATE,
                     ["put_registry_policy"]),
    "registry-ours-alone-deleted": (rp.REGISTRY_STATEMENTS, {"policy": {"Statement": [ours()]}}, Action.DELETE,
                                    ["delete_registry_policy"]),
    "registry-foreign-kept": (rp.REGISTRY_STATEMENTS, {"policy": {"Statement": [HUMAN, ours()]}}, Action.DELETE,
                              ["put_registry_policy"]),
}


@pytest.mark.parametrize("adapter, found, action, expected", DOCUMENT_CASES.values(), ids=DOCUMENT_CASES.keys())
def test_each_document_location_writes_through_its_own_call(adapter, found, action, expected):
    ecr = FakeEcr()
    desired = rp.DesiredStatements("team", PREFIX, [] if action is Action.DELETE else [ours()])
    observation = rp.observation_of(found, desired)
    written = getattr(adapter, action.value)(ecr, desired, observation)
    assert [name for name, _ in ecr.made] == expected and written.calls == 1
    name, kwargs = ecr.made[0]
    text = kwargs.get("repositoryPolicy", kwargs.get("policyText"))
    if text:  # every statement we do not own is written back as it was, ours after
        statements = policydoc.statements(policydoc.parse(text))
        assert [s for s in statements if not rp.is_owned(s, PREFIX)] == [
            s for s in policydoc.statements(found.get("policy")) if not rp.is_owned(s, PREFIX)]
    if name == "create_repository_creation_template":
        assert kwargs["appliedFor"] == list(rp.DEFAULT_APPLIED_FOR) and kwargs["description"] == rp.TEMPLATE_MARK
    if name == "update_repository_creation_template":
        # only the policy is sent: every other setting of the template stays as it is
        assert set(kwargs) == {"prefix", "repositoryPolicy"}


@pytest.mark.parametrize("adapter, kind, label", [
    (rp.STATEMENTS, "repositoryPolicy", "repository team"),
    (rp.TEMPLATE_STATEMENTS, "templatePolicy", "repository creation template team"),
    (rp.REGISTRY_STATEMENTS, "registryPolicy", "registry policy of team"),
], ids=["repository", "template", "registry"])
def test_the_three_adapters_are_one_class_with_their_own_kind_and_label(adapter, kind, label):
    desired = rp.DesiredStatements("team", PREFIX, [ours()])
    assert isinstance(adapter, rp.Statements) and adapter.kind == kind and adapter.label(desired) == label
    observation = rp.observation_of({"policy": {"Statement": [HUMAN, CHANGED]}}, desired)
    assert observation.owner is Owner.OURS and observation.fields == (f"Statement[{PREFIX}G0]",)


PULL_SIDS = {f"{PREFIX}G0"}
CACHE_CASES = {
    # statements of the grants, cached prefixes -> (Sids, Resource)
    "one-prefix": ([ours()], ["quay"], [f"{PREFIX}G0Cache"], "arn:aws:ecr:us-east-1:123456789012:repository/quay/*"),
    "two-prefixes": ([ours()], ["quay", "docker-hub"], [f"{PREFIX}G0Cache"],
                     ["arn:aws:ecr:us-east-1:123456789012:repository/quay/*",
                      "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*"]),
    "root": ([ours()], ["ROOT"], [f"{PREFIX}G0Cache"], "arn:aws:ecr:us-east-1:123456789012:repository/*"),
    "push-only-grant": ([ours("G1")], ["quay"], [], None),
    "no-cache-rule": ([ours()], [], [], None),
}


@pytest.mark.parametrize("grant_statements, cached, sids, resource", CACHE_CASES.values(), ids=CACHE_CASES.keys())
def test_cache_statements(grant_statements, cached, sids, resource):
    out = rp.cache_statements(grant_statements, cached, partition="aws", region="us-east-1",
                              account="123456789012", pull_grants=PULL_SIDS)
    assert [s["Sid"] for s in out] == sids
    for statement in out:
        assert statement["Resource"] == resource and rp.is_owned(statement, PREFIX)
        assert statement["Action"] == ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"]
        assert statement["Principal"] == grant_statements[0]["Principal"]


class PagedEcr:
    def __init__(self, names, page=2):
        self.names, self.page, self.calls = names, page, 0

    def describe_repositories(self, maxResults, nextToken=None):
        self.calls += 1
        start = int(nextToken or 0)
        answer = {"repositories": [{"repositoryName": n} for n in self.names[start:start + self.page]]}
        if start + self.page < len(self.names):
            answer["nextToken"] = str(start + self.page)
        return answer


@pytest.mark.parametrize("prefixes, expected", [
    (["team"], ["team/a", "team/b/c"]),
    (["team/b"], ["team/b/c"]),
    (["ROOT"], ["team/a", "teamx", "team/b/c", "other/x", "team"]),
    (["nobody"], []),
], ids=["prefix", "nested-prefix", "root", "none"])
def test_repositories_under_a_prefix_are_listed_over_every_page(prefixes, expected):
    ecr = PagedEcr(["team/a", "teamx", "team/b/c", "other/x", "team"])
    found, pages = rp.repositories_under(ecr, prefixes)
    assert found == expected and pages == ecr.calls == 3
