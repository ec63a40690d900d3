"""The tenancy guard (controller.tenancy): rules, precedence, globs and the values each kind names."""

from __future__ import annotations

import pytest

from controller import tenancy
from controller.api import reasons
from controller.api.validation import validate_registry_credential
from controller.api.validation_pull import validate_pull_secret
from controller.api.validation_xrepo import validate_cross_account

ROLE_ARN = "arn:aws:iam::111122223333:role/team-a-deployer"


def rc(namespace="team-a", name="app", **spec):
    base = {"source": {"secretRef": {"name": "src"}}}
    base.update(spec)
    resolved, problems = validate_registry_credential(namespace, name, base, cluster_id="c1")
    assert resolved is not None, problems
    return resolved


def xrepo(namespace="team-a", **spec):
    base = {"repositories": ["team-a/api"], "grants": [{"principals": [{"accountId": "444455556666"}], "access": "Pull"}]}
    base.update(spec)
    resolved, problems = validate_cross_account(namespace, "x", base, cluster_id="c1")
    assert resolved is not None, problems
    return resolved


def refused(policy, namespace, values):
    return [(p.field, p.reason) for p in tenancy.violations(policy, namespace, values)]


# --------------------------------------------------------------------------- shipped default

SHIPPED_CASES = [
    ("default-names-fit", {}, []),
    ("own-prefix", {"secret": {"name": "regaccess/team-a/other"}}, []),
    ("other-namespace-secret", {"secret": {"name": "regaccess/team-b/app"}},
     [("spec.secret.name", reasons.NOT_PERMITTED)]),
    ("similar-namespace", {"secret": {"name": "regaccess/teamab/x"}},
     [("spec.secret.name", reasons.NOT_PERMITTED)]),
    ("outside-regaccess", {"secret": {"name": "prod/db-password"}}, [("spec.secret.name", reasons.NOT_PERMITTED)]),
    ("ptc-namespace-prefix", {"pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "team-a"}},
     []),
    ("ptc-prefix-under-namespace", {"pullThroughCache": {"upstreamRegistry": "docker-hub",
                                                         "ecrRepositoryPrefix": "team-a/hub"}}, []),
    ("ptc-other-namespace", {"secret": {"name": "ecr-pullthroughcache/team-b/hub"},
                             "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "team-b"}},
     [("spec.secret.name", reasons.NOT_PERMITTED), ("spec.pullThroughCache.ecrRepositoryPrefix", reasons.NOT_PERMITTED)]),
    ("policy-default-with-role", {"grants": {"executionRoles": ["team-a-exec"]}}, []),
    ("policy-foreign-name", {"grants": {"executionRoles": ["team-a-exec"], "policyName": "admin-inline"}},
     [("spec.grants.policyName", reasons.NOT_PERMITTED)]),
    ("policy-name-unchecked-without-role", {"grants": {"policyName": "anything"}}, []),
    ("namespace-scoped-names-fit", {"grants": {"executionRoles": ["team-a-exec"]},
                                    "consumers": {"ecsTaskDefinitions": [{"family": "team-a-api"}],
                                                  "batchJobDefinitions": [{"name": "team-a-nightly"}],
                                                  "ecsServices": [{"cluster": "prod", "service": "team-a-web"}]}},
     []),
]


@pytest.mark.parametrize("case, spec, expected", SHIPPED_CASES, ids=[c[0] for c in SHIPPED_CASES])
def test_shipped_default(case, spec, expected):
    values = tenancy.registry_credential_values(rc(**spec))
    assert refused(tenancy.SHIPPED, "team-a", values) == expected


def test_the_shipped_default_scopes_every_rule_field():
    """No field is left to defaultAction: each is either {namespace}-scoped or denied (empty)."""
    assert set(tenancy.SHIPPED_DEFAULT) == set(tenancy.RULE_FIELDS)
    for field_name, patterns in tenancy.SHIPPED_DEFAULT.items():
        assert patterns == () or all("{namespace}" in p for p in patterns), field_name
    assert tenancy.SHIPPED.default_action == tenancy.DENY


TEAM_Y_ROLE = "arn:aws:iam::111122223333:role/team-y-puller"
OTHER_ACCOUNT = "444455556666"
# Cross-tenant attempts from namespace team-x under the shipped default (no TenancyPolicy):
# (id, kind, spec, the fields refused). The five of issue 30 section 3 come first.
CROSS_TENANT = [
    ("xrepo-root-prefix-pullpush", "CrossAccountRepoAccess",
     {"repositories": [], "repositoryPrefixes": ["ROOT"],
      "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "PullPush"}]},
     ["spec.repositoryPrefixes[0]"]),
    ("pull-secret-other-teams-role", "ECRPullSecret",
     {"registries": [{}], "roleArn": TEAM_Y_ROLE}, ["spec.roleArn", "spec.roleArn"]),
    ("consumer-other-teams-family", "RegistryCredential",
     {"consumers": {"ecsTaskDefinitions": [{"family": "team-y-api"}]}},
     ["spec.consumers.ecsTaskDefinitions[0].family"]),
    ("consumer-other-teams-job-definition", "RegistryCredential",
     {"consumers": {"batchJobDefinitions": [{"name": "team-y-nightly"}]}},
     ["spec.consumers.batchJobDefinitions[0].name"]),
    ("cache-rule-root", "RegistryCredential",
     {"secret": {"name": "ecr-pullthroughcache/team-x/hub"},
      "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "ROOT"}},
     ["spec.pullThroughCache.ecrRepositoryPrefix"]),
    ("cache-rule-other-teams-prefix", "RegistryCredential",
     {"secret": {"name": "ecr-pullthroughcache/team-x/hub"},
      "pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "team-y"}},
     ["spec.pullThroughCache.ecrRepositoryPrefix"]),
    ("role-arn-path-of-mine-name-of-theirs", "RegistryCredential",
     {"grants": {"executionRoles": ["arn:aws:iam::111122223333:role/team-x/team-y-exec"]}},
     ["spec.grants.executionRoles[0]", "spec.grants.executionRoles[0]"]),  # the role, and its account
    # And more of the same kind:
    ("other-teams-role-by-name", "RegistryCredential",
     {"grants": {"executionRoles": ["team-y-exec"]}}, ["spec.grants.executionRoles[0]"]),
    ("role-name-prefix-without-separator", "RegistryCredential",
     {"grants": {"executionRoles": ["team-xy-exec"]}}, ["spec.grants.executionRoles[0]"]),
    ("other-teams-secret", "RegistryCredential",
     {"secret": {"name": "regaccess/team-y/app"}}, ["spec.secret.name"]),
    ("other-teams-policy-name", "RegistryCredential",
     {"grants": {"executionRoles": ["team-x-exec"], "policyName": "regaccess-team-y-app"}},
     ["spec.grants.policyName"]),
    ("other-teams-service", "RegistryCredential",
     {"consumers": {"ecsServices": [{"cluster": "prod", "service": "team-y-web"}]}},
     ["spec.consumers.ecsServices[0]"]),
    ("service-in-another-account", "RegistryCredential",
     {"consumers": {"ecsServices": [{"cluster": f"arn:aws:ecs:eu-west-1:{OTHER_ACCOUNT}:cluster/prod",
                                     "service": "team-x-web"}]}},
     ["spec.consumers.ecsServices[0].cluster"]),
    ("another-region", "RegistryCredential", {"region": "us-east-1"}, ["spec.region"]),
    ("assume-a-role", "RegistryCredential", {"roleArn": TEAM_Y_ROLE}, ["spec.roleArn", "spec.roleArn"]),
    ("cache-rule-custom-role", "RegistryCredential",
     {"pullThroughCache": {"upstreamRegistry": "ecr", "ecrRepositoryPrefix": "team-x",
                           "customRoleArn": TEAM_Y_ROLE,
                           "upstreamRegistryUrl": "111122223333.dkr.ecr.eu-west-1.amazonaws.com"}},
     ["spec.pullThroughCache.customRoleArn"]),
    ("cache-rule-prefix-named-like-mine", "RegistryCredential",
     {"pullThroughCache": {"upstreamRegistry": "docker-hub", "ecrRepositoryPrefix": "team-x-hub"}},
     ["spec.pullThroughCache.ecrRepositoryPrefix"]),
    ("xrepo-other-teams-repository", "CrossAccountRepoAccess",
     {"repositories": ["team-y/api"], "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "Pull"}]},
     ["spec.repositories[0]"]),
    ("xrepo-other-teams-prefix", "CrossAccountRepoAccess",
     {"repositories": [], "repositoryPrefixes": ["team-y"],
      "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "Pull"}]},
     ["spec.repositoryPrefixes[0]"]),
    ("xrepo-prefix-wider-than-namespace", "CrossAccountRepoAccess",
     {"repositories": [], "repositoryPrefixes": ["team"],
      "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "Pull"}]},
     ["spec.repositoryPrefixes[0]"]),
    ("xrepo-top-level-repository", "CrossAccountRepoAccess",
     {"repositories": ["team-x"], "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "Pull"}]},
     ["spec.repositories[0]"]),
    ("xrepo-assume-a-role", "CrossAccountRepoAccess",
     {"repositories": ["team-x/api"], "roleArn": TEAM_Y_ROLE,
      "grants": [{"principals": [{"accountId": OTHER_ACCOUNT}], "access": "Pull"}]},
     ["spec.roleArn", "spec.roleArn"]),
    ("pull-secret-other-account-registry", "ECRPullSecret",
     {"registries": [{"registryId": OTHER_ACCOUNT}]}, ["spec.registries[0].registryId"]),
    ("pull-secret-other-region", "ECRPullSecret",
     {"registries": [{"region": "ap-south-1"}]}, ["spec.registries[0].region"]),
]


@pytest.mark.parametrize("case, kind, spec, expected", CROSS_TENANT, ids=[c[0] for c in CROSS_TENANT])
def test_cross_tenant_attempts_are_refused_by_the_shipped_default(case, kind, spec, expected):
    from controller.api.validate import validate

    full = {"source": {"secretRef": {"name": "src"}}, **spec} if kind == "RegistryCredential" else spec
    resolved, problems = validate(kind, "team-x", "x", full, cluster_id="c1")
    assert resolved is not None, problems
    found = refused(tenancy.SHIPPED, "team-x", tenancy.values_of(kind, resolved))
    assert [f for f, _ in found] == expected
    assert {r for _, r in found} == {reasons.NOT_PERMITTED}
    # The same resource from the owning namespace's view is not what refuses it: an explicit
    # permissive policy (the admin's reviewed choice) lets it through.
    open_policy = tenancy.from_spec("open", {"defaultAction": "Allow", "default": {}})
    assert refused(open_policy, "team-x", tenancy.values_of(kind, resolved)) == []


def test_the_cross_tenant_table_is_large_enough():
    assert len(CROSS_TENANT) >= 20


def test_message_names_the_field_the_value_and_the_rule():
    [problem] = tenancy.violations(tenancy.SHIPPED, "team-a",
                                   tenancy.registry_credential_values(rc(secret={"name": "regaccess/team-b/app"})))
    text = str(problem)
    assert text.startswith("spec.secret.name: 'regaccess/team-b/app' is not permitted in namespace team-a")
    assert "secretNames regaccess/team-a/*, ecr-pullthroughcache/team-a/*" in text
    assert "(shipped default)" in text and "(default)" in text


# --------------------------------------------------------------------------- a written policy

POLICY = tenancy.from_spec("shared", {
    "defaultAction": "Deny",
    "default": {"secretNames": ["regaccess/{namespace}/*"], "policyNames": ["regaccess-{namespace}-*"],
                "regions": ["eu-west-1"]},
    "namespaces": {
        "team-*": {"executionRoles": ["{namespace}-*"], "taskDefinitionFamilies": ["{namespace}-*"]},
        "team-a": {"executionRoles": ["arn:aws:iam::111122223333:role/team-a-*"], "roleArns": [ROLE_ARN],
                   "accounts": ["111122223333"], "repositories": ["team-a/*"]},
        "payments": {"secretNames": ["*"]},
    },
})

POLICY_CASES = [
    # (id, namespace, spec, refused fields)
    ("deny-by-default-family", "other", {"consumers": {"ecsTaskDefinitions": [{"family": "f"}]}},
     ["spec.consumers.ecsTaskDefinitions[0].family"]),
    ("glob-entry-family", "team-b", {"consumers": {"ecsTaskDefinitions": [{"family": "team-b-api"}]}}, []),
    ("glob-entry-other-family", "team-b", {"consumers": {"ecsTaskDefinitions": [{"family": "team-c-api"}]}},
     ["spec.consumers.ecsTaskDefinitions[0].family"]),
    ("exact-entry-wins-over-glob", "team-a", {"grants": {"executionRoles": ["team-a-exec"]}},
     ["spec.grants.executionRoles[0]"]),  # team-a lists ARN patterns only: a bare name cannot match them
    ("arn-pattern-matches-arn", "team-a", {"grants": {"executionRoles": ["arn:aws:iam::111122223333:role/team-a-x"]}},
     []),
    ("arn-pattern-other-account", "team-a",
     {"grants": {"executionRoles": ["arn:aws:iam::999988887777:role/team-a-x"]}},
     ["spec.grants.executionRoles[0]", "spec.grants.executionRoles[0]"]),  # role and account rules
    ("name-pattern-matches-arn-role-name", "team-b", {"grants": {"executionRoles": [
        "arn:aws:iam::111122223333:role/path/team-b-exec"]}}, ["spec.grants.executionRoles[0]"]),  # accounts: Deny
    ("entry-falls-back-to-default-field", "team-b", {"secret": {"name": "regaccess/team-a/x"}}, ["spec.secret.name"]),
    ("entry-overrides-default-field", "payments", {"secret": {"name": "shared/anything"}}, []),
    ("region-allowed", "team-b", {"region": "eu-west-1"}, []),
    ("region-refused", "team-b", {"region": "us-east-1"}, ["spec.region"]),
    ("role-arn-allowed", "team-a", {"roleArn": ROLE_ARN}, []),
    ("role-arn-refused-elsewhere", "team-b", {"roleArn": ROLE_ARN}, ["spec.roleArn", "spec.roleArn"]),
    ("case-sensitive", "team-b", {"secret": {"name": "REGACCESS/team-b/x"}}, ["spec.secret.name"]),
    # ECR assumes a cache rule's roles for the resource: judged by the roleArns rule as spec.roleArn is
    ("cache-rule-roles-judged-as-role-arns", "team-a", {"pullThroughCache": {
        "upstreamRegistry": "ecr-public-premium", "ecrRepositoryPrefix": "team-a-prem", "customRoleArn": ROLE_ARN,
        "upstreamRoleArn": "arn:aws:iam::210987654321:role/premium"}},
     ["spec.pullThroughCache.ecrRepositoryPrefix", "spec.pullThroughCache.upstreamRoleArn"]),
    ("cache-rule-custom-role-refused-elsewhere", "team-b", {"pullThroughCache": {
        "upstreamRegistry": "ecr", "ecrRepositoryPrefix": "team-b-mirror", "customRoleArn": ROLE_ARN,
        "upstreamRegistryUrl": "111122223333.dkr.ecr.eu-west-1.amazonaws.com"}},
     ["spec.pullThroughCache.ecrRepositoryPrefix", "spec.pullThroughCache.customRoleArn"]),
]


@pytest.mark.parametrize("case, namespace, spec, expected", POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_written_policy(case, namespace, spec, expected):
    values = tenancy.registry_credential_values(rc(namespace=namespace, **spec))
    assert [f for f, _ in refused(POLICY, namespace, values)] == expected


REPO_CASES = [
    ("repository-in", {"repositories": ["team-a/api"]}, []),
    ("repository-out", {"repositories": ["team-b/api"]}, ["spec.repositories[0]"]),
    ("prefix-covered", {"repositories": [], "repositoryPrefixes": ["team-a/svc"]}, []),
    ("prefix-exact-top", {"repositories": [], "repositoryPrefixes": ["team-a"]}, []),
    ("prefix-wider-than-rule", {"repositories": [], "repositoryPrefixes": ["team"]}, ["spec.repositoryPrefixes[0]"]),
    ("prefix-root", {"repositories": [], "repositoryPrefixes": ["ROOT"]}, ["spec.repositoryPrefixes[0]"]),
]


@pytest.mark.parametrize("case, spec, expected", REPO_CASES, ids=[c[0] for c in REPO_CASES])
def test_repositories_and_prefixes(case, spec, expected):
    values = tenancy.cross_account_values(xrepo(**spec))
    assert [f for f, _ in refused(POLICY, "team-a", values)] == expected


def test_root_prefix_needs_a_bare_star():
    policy = tenancy.from_spec("p", {"default": {"repositories": ["*"]}})
    assert refused(policy, "ns", tenancy.cross_account_values(xrepo(namespace="ns", repositories=[],
                                                                    repositoryPrefixes=["ROOT"]))) == []


def test_pull_secret_registries_and_role():
    resolved, problems = validate_pull_secret("team-b", "pull", {
        "registries": [{"registryId": "111122223333", "region": "eu-west-1"}, {"region": "us-east-1"}],
    }, cluster_id="c1", default_region="eu-west-1")
    assert resolved is not None, problems
    fields = [f for f, _ in refused(POLICY, "team-b", tenancy.pull_secret_values(resolved))]
    # accounts are Deny for team-b (only team-a lists some); us-east-1 is outside default regions.
    assert fields == ["spec.registries[0].registryId", "spec.registries[1].region"]


def test_each_kind_is_validated_and_judged_through_one_dispatch():
    """controller.api.validate and tenancy.values_of map each kind to its own validator and values."""
    from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, ECR_PULL_SECRET, REGISTRY_CREDENTIAL
    from controller.api.validate import validate

    specs = {REGISTRY_CREDENTIAL.kind: {"source": {"secretRef": {"name": "src"}}, "secret": {"name": "other/x"}},
             CROSS_ACCOUNT_REPO_ACCESS.kind: {"repositories": ["team-a/api"], "grants": [
                 {"principals": [{"accountId": "444455556666"}], "access": "Pull"}]},
             ECR_PULL_SECRET.kind: {"registries": [{"registryId": "111122223333", "region": "eu-west-1"}]}}
    fields = {}
    for kind, spec in specs.items():
        resolved, problems = validate(kind, "team-b", "x", spec, cluster_id="c1")
        assert resolved is not None, (kind, problems)
        fields[kind] = [f for f, _ in refused(POLICY, "team-b", tenancy.values_of(kind, resolved))]
    assert fields == {REGISTRY_CREDENTIAL.kind: ["spec.secret.name"],
                      CROSS_ACCOUNT_REPO_ACCESS.kind: ["spec.repositories[0]"],
                      ECR_PULL_SECRET.kind: ["spec.registries[0].registryId"]}
    # A spec of the wrong kind is refused by that kind's validator, not judged as another kind.
    assert validate(CROSS_ACCOUNT_REPO_ACCESS.kind, "team-b", "x", specs[REGISTRY_CREDENTIAL.kind],
                    cluster_id="c1")[0] is None
    with pytest.raises(KeyError):
        validate("TenancyPolicy", "team-b", "x", {}, cluster_id="c1")


# --------------------------------------------------------------------------- parsing and precedence


def test_left_out_default_is_the_shipped_one_and_empty_default_is_none():
    assert tenancy.from_spec("p", {}).default == tenancy.SHIPPED_DEFAULT
    assert tenancy.from_spec("p", {"default": {}}).default == {}
    deny_all = tenancy.from_spec("p", {"default": {}, "defaultAction": "Deny"})
    assert refused(deny_all, "team-a", tenancy.registry_credential_values(rc())) == [
        ("spec.secret.name", reasons.NOT_PERMITTED)]


def test_an_unreadable_policy_refuses_everything():
    policy = tenancy.from_spec("broken", {"defaultAction": "Maybe"})
    assert policy.error and "defaultAction" in policy.error
    [problem] = tenancy.violations(policy, "team-a", tenancy.registry_credential_values(rc()))
    assert problem.reason == reasons.NOT_PERMITTED and "TenancyPolicy broken cannot be read" in problem.message
    assert tenancy.violations(policy, "team-a", []) != []  # even a resource naming nothing


@pytest.mark.parametrize("namespace, expected", [
    ("team-a", "team-a"), ("team-b", "team-*"), ("teamx", None), ("payments", "payments"),
], ids=["exact", "glob", "none", "exact-other"])
def test_most_specific_entry(namespace, expected):
    assert tenancy.entry_for(POLICY, namespace) == expected


def test_more_literal_characters_win_between_globs():
    policy = tenancy.from_spec("p", {"namespaces": {"*": {}, "team-*": {}, "team-a*": {}, "t*": {}}})
    assert tenancy.entry_for(policy, "team-ab") == "team-a*"
    assert tenancy.entry_for(policy, "zzz") == "*"


@pytest.mark.parametrize("pattern, value, expected", [
    ("regaccess/team-a/*", "regaccess/team-a/x/y", True),
    ("regaccess/team-a/*", "regaccess/team-a", False),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a.c", "abc", False),           # regex characters are literal
    ("[ab]", "a", False),            # no character classes
    ("x*", "X1", False),             # case-sensitive
], ids=["star-crosses-slash", "star-needs-the-slash", "question", "question-one", "dot-literal", "no-classes",
        "case"])
def test_glob(pattern, value, expected):
    assert tenancy.glob_match(pattern, value) is expected


def test_verdict_changes_with_the_policy():
    values = tenancy.registry_credential_values(rc(secret={"name": "shared/x"}))
    assert tenancy.verdict(tenancy.SHIPPED, "team-a", values) != ()
    widened = tenancy.from_spec("p", {"default": {"secretNames": ["shared/*"]}})
    assert tenancy.verdict(widened, "team-a", values) == ()


def test_every_rule_field_is_in_the_model_and_the_model_has_no_other():
    from controller.api.models import TenancyRules

    assert set(TenancyRules.model_fields) == set(tenancy.RULE_FIELDS)


def test_a_missing_policy_is_the_shipped_default_only_for_the_name_default():
    assert tenancy.absent("default") is tenancy.SHIPPED
    assert tenancy.absent("") is tenancy.SHIPPED  # none read at all
    missing = tenancy.absent("team-rules")
    assert missing.missing and missing.name == "team-rules"
    values = tenancy.registry_credential_values(rc())  # fits the shipped default
    assert tenancy.violations(tenancy.SHIPPED, "team-a", values) == []
    [problem] = tenancy.violations(missing, "team-a", values)
    assert problem.reason == reasons.TENANCY_POLICY_MISSING
    assert "TenancyPolicy team-rules (named by --tenancy-policy) does not exist" in problem.message
    assert tenancy.violations(missing, "team-a", []) != []  # even a resource naming nothing
    # Created: the policy parsed from it replaces the absence, and the verdict changes.
    assert tenancy.verdict(tenancy.from_spec("team-rules", {}), "team-a", values) == ()


def test_the_absence_is_logged_and_in_the_metric():
    from controller import handlers, metrics

    lines = []

    class Log:
        def error(self, event, **fields):
            lines.append(("error", event, fields))

        def warning(self, event, **fields):
            lines.append(("warning", event, fields))

    handlers._report_tenancy_absence(Log(), "team-rules", tenancy.absent("team-rules"))
    assert metrics.TENANCY_POLICY_MISSING._value.get() == 1
    assert lines[-1][0] == "error" and lines[-1][2]["reason"] == reasons.TENANCY_POLICY_MISSING
    handlers._report_tenancy_absence(Log(), "default", tenancy.absent("default"))
    assert lines[-1][:2] == ("warning", "tenancy policy not found: the shipped default applies")
    handlers._report_tenancy_absence(Log(), "team-rules", tenancy.from_spec("team-rules", {}))
    assert metrics.TENANCY_POLICY_MISSING._value.get() == 0 and len(lines) == 2


def test_an_execution_role_arn_is_judged_by_the_arn_iam_answers_for_its_name():
    policy = tenancy.from_spec("paths", {"namespaces": {"team-x": {
        "executionRoles": ["arn:aws:iam::*:role/{namespace}/*"], "accounts": ["111122223333"]}}})
    claimed = "arn:aws:iam::111122223333:role/team-x/team-y-exec"
    theirs = "arn:aws:iam::111122223333:role/team-y/team-y-exec"
    mine = "arn:aws:iam::111122223333:role/team-x/team-x-exec"
    # The text fits the rule; the real role is elsewhere: refused, naming both ARNs.
    [problem] = tenancy.real_role_problems(policy, "team-x", [claimed], {claimed: theirs})
    assert (problem.field, problem.reason) == ("spec.grants.executionRoles[0]", reasons.NOT_PERMITTED)
    assert claimed in problem.message and theirs in problem.message
    assert tenancy.real_role_problems(policy, "team-x", ["team-x-a", mine], {mine: mine}) == []
    # The real ARN is judged by the rule too (as given it already was, by the pure guard).
    elsewhere = "arn:aws:iam::111122223333:role/platform/shared"
    assert [p.field for p in tenancy.real_role_problems(policy, "team-x", [elsewhere], {elsewhere: elsewhere})] == [
        "spec.grants.executionRoles[0]"]
    # No such role: left to the grant step (it reports the missing role); names are not resolved.
    assert tenancy.real_role_problems(policy, "team-x", [claimed, "team-y-exec"], {claimed: None}) == []
    # A missing or unreadable policy still refuses everything.
    assert tenancy.real_role_problems(tenancy.absent("rules"), "team-x", [mine], {mine: mine}) != []
