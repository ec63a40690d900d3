"""The IAM evaluator (controller.iam_eval) against AWS's documented evaluation logic.

Each case cites the rule of the IAM User Guide it checks: "Policy evaluation logic"
(EVAL), "IAM JSON policy elements: Action / NotAction / Resource / NotResource /
Condition operators" (ACTION, NOTACTION, RESOURCE, NOTRESOURCE, COND), "Conditions with
multiple context keys or values" (MULTI), "Single-valued vs multivalued context keys"
(SET), and "Principal" (PRINCIPAL). moto has no iam:SimulatePrincipalPolicy (checked: its
IAM backend does not implement it), so the SimulatePrincipalPolicy cases below are the
answers its documentation gives for the same documents ("EvalDecision": allowed /
explicitDeny / implicitDeny).
"""

from __future__ import annotations

import json

import pytest

from controller.iam_eval import Decision, Policy, Request, ecr_image, evaluate

SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:regaccess/payments/dockerhub-AbCdEf"
OTHER_SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:other-XyZ123"
KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "arn:aws:iam::111122223333:role/payments-task-execution"
GET = "secretsmanager:GetSecretValue"
DECRYPT = "kms:Decrypt"
VIA = {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com", "kms:EncryptionContext:SecretARN": SECRET}

A, D, I, U = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY, Decision.UNKNOWN


def allow(**kw):
    return {"Effect": "Allow", **kw}


def deny(**kw):
    return {"Effect": "Deny", **kw}


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


# (id, rule, [statements], action, resource, context, expected)
CASES = [
    ("allow-exact", "EVAL: an Allow that matches allows", [allow(Action=GET, Resource=SECRET)], GET, SECRET, {}, A),
    ("no-statement", "EVAL: default is implicit deny", [], GET, SECRET, {}, I),
    ("other-resource", "RESOURCE: Allow on another ARN does not apply", [allow(Action=GET, Resource=OTHER_SECRET)], GET, SECRET, {}, I),
    ("other-action", "ACTION: Allow on another action does not apply", [allow(Action="secretsmanager:DescribeSecret", Resource=SECRET)], GET, SECRET, {}, I),
    ("deny-wins", "EVAL: an explicit Deny overrides any Allow", [allow(Action=GET, Resource=SECRET), deny(Action=GET, Resource=SECRET)], GET, SECRET, {}, D),
    ("deny-before-allow", "EVAL: statement order does not matter", [deny(Action=GET, Resource=SECRET), allow(Action=GET, Resource=SECRET)], GET, SECRET, {}, D),
    ("deny-star", "EVAL+ACTION: Deny * on * denies everything", [allow(Action=GET, Resource=SECRET), deny(Action="*", Resource="*")], GET, SECRET, {}, D),
    ("deny-other-resource", "EVAL: a Deny that does not match does not deny", [allow(Action=GET, Resource=SECRET), deny(Action=GET, Resource=OTHER_SECRET)], GET, SECRET, {}, A),
    ("action-star", "ACTION: * matches all actions", [allow(Action="*", Resource="*")], GET, SECRET, {}, A),
    ("service-star", "ACTION: secretsmanager:* matches its actions", [allow(Action="secretsmanager:*", Resource=SECRET)], GET, SECRET, {}, A),
    ("prefix-star", "ACTION: wildcard within the name (Get*)", [allow(Action="secretsmanager:Get*", Resource=SECRET)], GET, SECRET, {}, A),
    ("qmark", "ACTION: ? matches one character", [allow(Action="secretsmanager:GetSecretValu?", Resource=SECRET)], GET, SECRET, {}, A),
    ("action-case", "ACTION: action names are case-insensitive", [allow(Action="SecretsManager:getsecretvalue", Resource=SECRET)], GET, SECRET, {}, A),
    ("action-list", "ACTION: a list matches when any entry does", [allow(Action=["kms:Decrypt", GET], Resource=SECRET)], GET, SECRET, {}, A),
    ("wrong-service-star", "ACTION: kms:* does not match secretsmanager", [allow(Action="kms:*", Resource="*")], GET, SECRET, {}, I),
    ("notaction-allow", "NOTACTION: Allow NotAction X allows everything else", [allow(NotAction="iam:*", Resource="*")], GET, SECRET, {}, A),
    ("notaction-excludes", "NOTACTION: the listed action is not allowed", [allow(NotAction="secretsmanager:*", Resource="*")], GET, SECRET, {}, I),
    ("notaction-deny", "NOTACTION: Deny NotAction X denies everything but X", [allow(Action="*", Resource="*"), deny(NotAction="kms:*", Resource="*")], GET, SECRET, {}, D),
    ("notaction-deny-spares", "NOTACTION: Deny NotAction spares the listed ones", [allow(Action="*", Resource="*"), deny(NotAction="secretsmanager:Get*", Resource="*")], GET, SECRET, {}, A),
    ("resource-star", "RESOURCE: * matches every ARN", [allow(Action=GET, Resource="*")], GET, SECRET, {}, A),
    ("resource-prefix", "RESOURCE: wildcard in the ARN (secret name prefix)", [allow(Action=GET, Resource="arn:aws:secretsmanager:us-east-1:111122223333:secret:regaccess/payments/*")], GET, SECRET, {}, A),
    ("resource-suffix-qmarks", "RESOURCE: ?????? for the ARN's random suffix", [allow(Action=GET, Resource="arn:aws:secretsmanager:us-east-1:111122223333:secret:regaccess/payments/dockerhub-??????")], GET, SECRET, {}, A),
    ("resource-other-account", "RESOURCE: the account is part of the ARN", [allow(Action=GET, Resource="arn:aws:secretsmanager:us-east-1:444455556666:secret:*")], GET, SECRET, {}, I),
    ("resource-case", "RESOURCE: ARNs are case-sensitive", [allow(Action=GET, Resource=SECRET.upper())], GET, SECRET, {}, I),
    ("resource-brackets-literal", "RESOURCE: only * and ? are wildcards", [allow(Action=GET, Resource="arn:aws:secretsmanager:us-east-1:111122223333:secret:[r]*")], GET, SECRET, {}, I),
    ("notresource-allow", "NOTRESOURCE: Allow NotResource other allows this", [allow(Action=GET, NotResource=OTHER_SECRET)], GET, SECRET, {}, A),
    ("notresource-excludes", "NOTRESOURCE: the listed resource is excluded", [allow(Action=GET, NotResource=SECRET)], GET, SECRET, {}, I),
    ("notresource-deny", "NOTRESOURCE: Deny NotResource other denies this one", [allow(Action=GET, Resource="*"), deny(Action=GET, NotResource=OTHER_SECRET)], GET, SECRET, {}, D),
    ("policy-variable", "RESOURCE: a policy variable is not resolved here: unknown", [allow(Action=GET, Resource="arn:aws:secretsmanager:*:*:secret:${aws:PrincipalTag/team}/*")], GET, SECRET, {}, U),
    ("kms-our-condition", "COND StringEquals: our own KMS statement with known context", [allow(Action=DECRYPT, Resource=KEY, Condition={"StringEquals": dict(VIA)})], DECRYPT, KEY, VIA, A),
    ("kms-via-other", "COND StringEquals: a different value does not match", [allow(Action=DECRYPT, Resource=KEY, Condition={"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}})], DECRYPT, KEY, VIA, I),
    ("cond-key-unknown", "COND: a key whose value is unknown gives Unknown, never Allow", [allow(Action=GET, Resource=SECRET, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})], GET, SECRET, {}, U),
    ("cond-unknown-key-known-op", "COND: StringEquals on a key not in the context: Unknown", [allow(Action=GET, Resource=SECRET, Condition={"StringEquals": {"aws:PrincipalTag/team": "payments"}})], GET, SECRET, {}, U),
    ("deny-cond-unknown", "EVAL+COND: a Deny that may apply makes the verdict Unknown", [allow(Action=GET, Resource=SECRET), deny(Action=GET, Resource=SECRET, Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})], GET, SECRET, {}, U),
    ("deny-cond-false", "EVAL+COND: a Deny whose condition is false does not deny", [allow(Action=GET, Resource=SECRET), deny(Action=GET, Resource=SECRET, Condition={"StringNotEquals": {"aws:PrincipalAccount": "111122223333"}})], GET, SECRET, {"aws:PrincipalAccount": "111122223333"}, A),
    ("deny-cond-true", "EVAL+COND: a Deny whose condition is true denies", [allow(Action=GET, Resource=SECRET), deny(Action=GET, Resource=SECRET, Condition={"StringNotEquals": {"aws:PrincipalAccount": "444455556666"}})], GET, SECRET, {"aws:PrincipalAccount": "111122223333"}, D),
    ("stringlike", "COND StringLike: wildcard in the value", [allow(Action=GET, Resource=SECRET, Condition={"StringLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/payments-*"}})], GET, SECRET, {"aws:PrincipalArn": ROLE}, A),
    ("stringnotlike", "COND StringNotLike: negated wildcard", [allow(Action=GET, Resource=SECRET, Condition={"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/payments-*"}})], GET, SECRET, {"aws:PrincipalArn": ROLE}, I),
    ("ignorecase", "COND StringEqualsIgnoreCase", [allow(Action=GET, Resource=SECRET, Condition={"StringEqualsIgnoreCase": {"aws:PrincipalType": "assumedrole"}})], GET, SECRET, {"aws:PrincipalType": "AssumedRole"}, A),
    ("arnlike", "COND ArnLike", [allow(Action=GET, Resource=SECRET, Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}})], GET, SECRET, {"aws:PrincipalArn": ROLE}, A),
    ("arnnotequals", "COND ArnNotEquals on the same ARN is false", [allow(Action=GET, Resource=SECRET, Condition={"ArnNotEquals": {"aws:PrincipalArn": ROLE}})], GET, SECRET, {"aws:PrincipalArn": ROLE}, I),
    ("values-ored", "MULTI: values of one key are ORed", [allow(Action=GET, Resource=SECRET, Condition={"StringEquals": {"aws:PrincipalAccount": ["444455556666", "111122223333"]}})], GET, SECRET, {"aws:PrincipalAccount": "111122223333"}, A),
    ("keys-anded", "MULTI: keys are ANDed", [allow(Action=DECRYPT, Resource=KEY, Condition={"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com", "kms:EncryptionContext:SecretARN": OTHER_SECRET}})], DECRYPT, KEY, VIA, I),
    ("absent-positive", "COND: absent key makes StringEquals false", [allow(Action=GET, Resource=SECRET, Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}})], GET, SECRET, {"aws:SourceVpc": None}, I),
    ("absent-negated", "COND: absent key makes StringNotEquals true", [allow(Action=GET, Resource=SECRET, Condition={"StringNotEquals": {"aws:SourceVpc": "vpc-1"}})], GET, SECRET, {"aws:SourceVpc": None}, A),
    ("ifexists-absent", "COND ...IfExists: absent key is true", [allow(Action=GET, Resource=SECRET, Condition={"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}})], GET, SECRET, {"aws:SourceVpc": None}, A),
    ("ifexists-present", "COND ...IfExists: present key is compared", [allow(Action=GET, Resource=SECRET, Condition={"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}})], GET, SECRET, {"aws:SourceVpc": "vpc-2"}, I),
    ("null-true", "COND Null true: key absent", [allow(Action=GET, Resource=SECRET, Condition={"Null": {"aws:SourceVpc": "true"}})], GET, SECRET, {"aws:SourceVpc": None}, A),
    ("null-false", "COND Null false: key must be present", [allow(Action=GET, Resource=SECRET, Condition={"Null": {"aws:SourceVpc": "false"}})], GET, SECRET, {"aws:SourceVpc": None}, I),
    ("bool", "COND Bool: aws:SecureTransport", [deny(Action="*", Resource="*", Condition={"Bool": {"aws:SecureTransport": "false"}}), allow(Action=GET, Resource=SECRET)], GET, SECRET, {"aws:SecureTransport": "true"}, A),
    ("bool-literal", "COND Bool: JSON true matches 'true'", [deny(Action="*", Resource="*", Condition={"Bool": {"aws:SecureTransport": True}}), allow(Action=GET, Resource=SECRET)], GET, SECRET, {"aws:SecureTransport": "true"}, D),
    ("forany", "SET ForAnyValue: one match is enough", [allow(Action=DECRYPT, Resource=KEY, Condition={"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "SecretARN"}})], DECRYPT, KEY, {"kms:EncryptionContextKeys": ["SecretARN", "SecretVersionId"]}, A),
    ("forall", "SET ForAllValues: every value must match", [allow(Action=DECRYPT, Resource=KEY, Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "SecretARN"}})], DECRYPT, KEY, {"kms:EncryptionContextKeys": ["SecretARN", "SecretVersionId"]}, I),
    ("forall-absent", "SET ForAllValues: an absent key is true", [allow(Action=DECRYPT, Resource=KEY, Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "SecretARN"}})], DECRYPT, KEY, {"kms:EncryptionContextKeys": None}, A),
    ("unknown-operator", "COND: an operator we do not evaluate gives Unknown", [allow(Action=GET, Resource=SECRET, Condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})], GET, SECRET, {"aws:CurrentTime": "2026-01-01T00:00:00Z"}, U),
    ("unknown-but-other-allows", "EVAL: an Allow that surely applies beats an Allow that may", [allow(Action=GET, Resource=SECRET, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), allow(Action=GET, Resource=SECRET)], GET, SECRET, {}, A),
    ("deny-beats-unknown", "EVAL: a Deny that applies wins over Unknown", [deny(Action=GET, Resource=SECRET), allow(Action=GET, Resource=SECRET, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})], GET, SECRET, {}, D),
    ("single-statement-object", "Statement may be one object, not a list", {"Statement": allow(Action=GET, Resource=SECRET)}, GET, SECRET, {}, A),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_documented_rule(case):
    _id, _rule, statements, action, resource, context, expected = case
    document = statements if isinstance(statements, dict) else doc(*statements)
    verdict = evaluate([Policy("inline policy p", document)], Request(action, resource, context))
    assert verdict.decision is expected, (_rule, verdict)


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_deny_is_named():
    """The verdict names the statement that blocks it (PullReady's reason message uses it)."""
    verdict = evaluate([Policy("inline policy a", doc(allow(Action=GET, Resource=SECRET))),
                        Policy("arn:aws:iam::111122223333:policy/guard", doc(deny(Sid="NoSecrets", Action="secretsmanager:*", Resource="*")))],
                       Request(GET, SECRET))
    assert verdict.decision is D and verdict.statement == "arn:aws:iam::111122223333:policy/guard statement 'NoSecrets'"


def test_deny_across_policies_and_json_text():
    """EVAL: all identity policies are evaluated together; documents may be JSON text."""
    verdict = evaluate([Policy("a", json.dumps(doc(allow(Action=GET, Resource="*")))),
                        Policy("b", json.dumps(doc(deny(Action=GET, Resource=SECRET))))], Request(GET, SECRET))
    assert verdict.decision is D


def test_unknown_says_why():
    verdict = evaluate([Policy("p", doc(allow(Action=GET, Resource=SECRET, Condition={"IpAddress": {"aws:SourceIp": "1.2.3.4/32"}})))],
                       Request(GET, SECRET))
    assert verdict.decision is U and "aws:SourceIp" in verdict.detail


def test_invalid_json_is_unknown_not_allow():
    verdict = evaluate([Policy("p", "{not json"), Policy("q", doc(allow(Action=GET, Resource=SECRET)))], Request(GET, SECRET))
    assert verdict.decision is U


# SimulatePrincipalPolicy's documented answers (AWS CLI reference example and the
# IAM policy simulator guide): same documents, same decisions.
SIMULATOR = [
    (doc(allow(Action="s3:ListBucket", Resource="arn:aws:s3:::example")), "s3:ListBucket", "arn:aws:s3:::example", "allowed"),
    (doc(allow(Action="s3:ListBucket", Resource="arn:aws:s3:::example")), "iam:CreateUser", "*", "implicitDeny"),
    (doc(allow(Action="*", Resource="*"), deny(Action="iam:*", Resource="*")), "iam:CreateUser", "*", "explicitDeny"),
]


@pytest.mark.parametrize("document,action,resource,decision", SIMULATOR)
def test_simulator_documented_answers(document, action, resource, decision):
    mapping = {A: "allowed", I: "implicitDeny", D: "explicitDeny"}
    assert mapping[evaluate([Policy("p", document)], Request(action, resource)).decision] == decision


# Resource-based policies: the Principal element decides whether a statement applies.
@pytest.mark.parametrize("principal,expected", [
    ("*", A),
    ({"AWS": "*"}, A),
    ({"AWS": ROLE}, A),
    ({"AWS": "arn:aws:iam::444455556666:role/other"}, I),
    ({"AWS": "arn:aws:iam::111122223333:root"}, A),
    ({"Service": "ecs-tasks.amazonaws.com"}, I),
])
def test_resource_policy_principal(principal, expected):
    verdict = evaluate([Policy("secret resource policy", doc(allow(Principal=principal, Action=GET)))],
                       Request(GET, SECRET), principal=ROLE)
    assert verdict.decision is expected


def test_not_principal_is_unknown():
    verdict = evaluate([Policy("r", doc(deny(NotPrincipal={"AWS": ROLE}, Action=GET)))], Request(GET, SECRET), principal=ROLE)
    assert verdict.decision is U


@pytest.mark.parametrize("image,expected", [
    ("111122223333.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.2", ("111122223333", "us-east-1", "payments/api")),
    ("111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app@sha256:ab", ("111122223333", "us-gov-west-1", "app")),
    ("111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn/app", ("111122223333", "cn-north-1", "app")),
    ("docker.io/library/nginx:1", None),
    ("ghcr.io/acme/app:1", None),
    ("public.ecr.aws/nginx/nginx:1", None),
    ("evil.com/111122223333.dkr.ecr.us-east-1.amazonaws.com/app", None),
])
def test_ecr_image(image, expected):
    assert ecr_image(image) == expected
