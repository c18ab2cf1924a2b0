"""The templates' security properties, read from the templates themselves: these fail if someone
adds a wildcard action, drops a condition, or lets the StackSet template drift from template.yaml.

moto checks a call's action, never its resource ARN or condition: the conditions the role relies on
are checked here, statement by statement, in both templates (docs/security.md shows how to confirm
them against real IAM with its policy simulator)."""

import fnmatch
import json
import os
import re

import pytest
from cfnlint.decode import cfn_yaml

import fleet
import limits
import lint_policies
import stackset_template
from conftest import REPO

SAM = os.path.join(REPO, "template.yaml")
STACKSET = os.path.join(REPO, "deploy", "stackset.yaml")
USER_PATH = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/cloud-app-security/*"}
ANY_USER = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*"}
SECRETS = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:cloud-app-security/*"}
OUR_TRAIL = {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${TrailName}"}
ANY_TRAIL = {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/*"}
ACCOUNT_KEYS = {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}
SECRET_KEY = {"Fn::If": ["HasKmsKey", {"Ref": "SecretKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
TRAIL_KEY = {"Fn::If": ["HasTrailKmsKey", {"Ref": "TrailKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
FUNCTION = [
    {"Fn::GetAtt": ["ConnectorFunction", "Arn"]},
    {"Fn::Sub": "${ConnectorFunction.Arn}:*"},
]
MANAGED = [
    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/SecurityAudit"},
    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSSecurityHubReadOnlyAccess"},
]
PROCEDURE = [
    "cloudtrail:DescribeTrails", "cloudtrail:LookupEvents", "cloudtrail:GetTrailStatus", "cloudwatch:Describe*",
    "cloudwatch:Get*", "cloudwatch:List*", "iam:List*", "iam:Get*", "s3:ListAllMyBuckets", "s3:PutBucketAcl",
    "s3:GetBucketAcl", "s3:GetBucketLocation",
]
WRITE_VERBS = ("Put", "Create", "Delete", "Update", "Attach", "Detach", "Modify", "Set", "Start", "Stop", "Add",
               "Remove", "Tag", "Untag", "Enable", "Disable", "Invoke", "Run", "Send", "Restore", "Reset", "Associate",
               "Disassociate", "Authorize", "Revoke", "Upload", "Import", "Export", "Replace", "Register")

# The role's conditions, by name.
STACK_ID = {"Ref": "AWS::StackId"}
BOUNDARY_ARN = {"Fn::If": ["OwnBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "ConnectorUserBoundary"}]}
BOUNDARY = {"iam:PermissionsBoundary": BOUNDARY_ARN}
RESOURCE_TAG = {"aws:ResourceTag/cloud-app-security:stack-id": STACK_ID}
REQUEST_TAG = {"aws:RequestTag/cloud-app-security:stack-id": STACK_ID}
NEVER_OWNERSHIP_KEYS = {
    "ForAllValues:StringNotLike": {"aws:TagKeys": "cloud-app-security:*"},
    "ForAllValues:StringNotEqualsIgnoreCase": {"aws:TagKeys": [
        "cloud-app-security:stack-id", "cloud-app-security:logical-id", "cloud-app-security:physical-id"]},
}
# The upgrade from 0.1.0 removes the tags that release kept on the secret: exactly those keys, at
# least one (ForAllValues holds over an empty or missing list, hence the Null "false").
ONLY_LEGACY_KEYS = {
    "ForAllValues:StringEquals": {"aws:TagKeys": [
        "cloud-app-security:key-version", "cloud-app-security:connector-id", "cloud-app-security:registration"]},
    "Null": {"aws:TagKeys": "false"},
}
THROUGH_SECRETS_MANAGER = {
    "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"}},
    "StringLike": {"kms:EncryptionContext:SecretARN": [
        SECRETS, {"Fn::If": ["HasCredentials", {"Ref": "ApiCredentials"}, {"Ref": "AWS::NoValue"}]}]},
}
UNCONDITIONED = None
# Where no stack's tag is: a resource being created (IAM authorizes its tags before it exists).
UNTAGGED = {"Null": {"aws:ResourceTag/cloud-app-security:stack-id": "true"}}
# A secret is created without replicas: CreateSecret's secretsmanager:AddReplicaRegions is present
# only when the request names replica regions (TagResource, in the same statement, never has it).
UNTAGGED_NO_REPLICAS = {"Null": {**UNTAGGED["Null"], "secretsmanager:AddReplicaRegions": "true"}}
# AWS's key quarantine policies (AWSCompromisedKeyQuarantine, …V2, …V3): never detached. Null: ArnNotLike
# holds for a request without the key.
NEVER_A_QUARANTINE = {
    "ArnNotLike": {"iam:PolicyARN": {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSCompromisedKeyQuarantine*"}},
    "Null": {"iam:PolicyARN": "false"},
}

# The status report (StatusBusArn): the connector's own source and detail type, each key present
# and every value of it matching (the reference types both ArrayOfString).
OUR_REPORT = {
    "ForAllValues:StringEquals": {"events:source": fleet.SOURCE, "events:detail-type": fleet.DETAIL_TYPE},
    "Null": {"events:source": "false", "events:detail-type": "false"},
}

# Every action the role allows, and each (resource, condition) it may be allowed under: the whole
# role, statement by statement. An action or a grant not listed here fails the test.
USER_OURS = (USER_PATH, {"StringEquals": RESOURCE_TAG})
EXPECTED = {
    "logs:CreateLogStream": [({"Fn::Sub": "${ConnectorLogGroup.Arn}"}, UNCONDITIONED)],
    "logs:PutLogEvents": [({"Fn::Sub": "${ConnectorLogGroup.Arn}"}, UNCONDITIONED)],
    "iam:GetUser": [(ANY_USER, UNCONDITIONED)],
    **{f"iam:{a}": [(USER_PATH, UNCONDITIONED)] for a in [
        "GetUserPolicy", "ListUserPolicies", "ListAttachedUserPolicies", "ListAccessKeys", "GetAccessKeyLastUsed",
        "ListGroupsForUser", "ListMFADevices", "ListSSHPublicKeys", "ListSigningCertificates",
        "ListServiceSpecificCredentials"]},
    # Whether a policy attached to our user denies (never detached): reads of any policy.
    "iam:GetPolicy": [({"Fn::Sub": "arn:${AWS::Partition}:iam::*:policy/*"}, UNCONDITIONED)],
    "iam:GetPolicyVersion": [({"Fn::Sub": "arn:${AWS::Partition}:iam::*:policy/*"}, UNCONDITIONED)],
    # A user is created only with the boundary and this stack's tag.
    "iam:CreateUser": [(USER_PATH, {"StringEquals": {**BOUNDARY, **REQUEST_TAG}})],
    # Tags: at CreateUser (no stack's tag yet), or on a user of ours, always with our tag.
    "iam:TagUser": [(USER_PATH, {"StringEquals": REQUEST_TAG, **UNTAGGED}),
                    (USER_PATH, {"StringEquals": {**RESOURCE_TAG, **REQUEST_TAG}})],
    "iam:UntagUser": [(USER_PATH, {"StringEquals": RESOURCE_TAG, **NEVER_OWNERSHIP_KEYS})],
    # Credentials only for our users.
    "iam:CreateAccessKey": [USER_OURS],
    "iam:UpdateAccessKey": [USER_OURS],
    **{f"iam:{a}": [USER_OURS] for a in [
        "UpdateUser", "DeleteAccessKey", "DeleteUser", "DeleteLoginProfile", "DeactivateMFADevice",
        "DeleteSSHPublicKey", "DeleteSigningCertificate", "DeleteServiceSpecificCredential"]},
    # Permissions only under the boundary, on our users.
    "iam:PutUserPolicy": [(USER_PATH, {"StringEquals": {**BOUNDARY, **RESOURCE_TAG}})],
    "iam:PutUserPermissionsBoundary": [(USER_PATH, {"StringEquals": {**BOUNDARY, **RESOURCE_TAG}})],
    "iam:AttachUserPolicy": [(USER_PATH, {"ArnEquals": {"iam:PolicyARN": MANAGED},
                                          "StringEquals": {**BOUNDARY, **RESOURCE_TAG}})],
    # Removing a policy can widen a user (a Deny goes with it): only from our users, and never one
    # of AWS's quarantine policies.
    "iam:DeleteUserPolicy": [USER_OURS],
    "iam:DetachUserPolicy": [(USER_PATH, {"StringEquals": RESOURCE_TAG, **NEVER_A_QUARANTINE})],
    **{f"secretsmanager:{a}": [(SECRETS, UNCONDITIONED)] for a in [
        "DescribeSecret", "GetResourcePolicy"]},
    # Created (never with replicas), or tagged, with our tag only where no stack's tag is (a secret
    # being created); re-tagged only where ours is. Never restored.
    "secretsmanager:CreateSecret": [(SECRETS, {"StringEquals": REQUEST_TAG, **UNTAGGED_NO_REPLICAS})],
    "secretsmanager:TagResource": [(SECRETS, {"StringEquals": REQUEST_TAG, **UNTAGGED_NO_REPLICAS}),
                                   (SECRETS, {"StringEquals": {**RESOURCE_TAG, **REQUEST_TAG}})],
    "secretsmanager:GetSecretValue": [(SECRETS, {"StringEquals": RESOURCE_TAG}),
                                      ({"Ref": "ApiCredentials"}, UNCONDITIONED)],
    **{f"secretsmanager:{a}": [(SECRETS, {"StringEquals": RESOURCE_TAG})] for a in [
        "PutSecretValue", "UpdateSecretVersionStage", "UpdateSecret", "RotateSecret",
        "CancelRotateSecret"]},
    # Ours; or, forced, a leftover its own Delete released (of any stack).
    "secretsmanager:DeleteSecret": [(SECRETS, {"StringEquals": RESOURCE_TAG}),
                                    (SECRETS, {"StringEquals": {"aws:ResourceTag/cloud-app-security:released": "true"},
                                               "Bool": {"secretsmanager:ForceDeleteWithoutRecovery": "true"}})],
    "secretsmanager:UntagResource": [(SECRETS, {"StringEquals": RESOURCE_TAG, **NEVER_OWNERSHIP_KEYS}),
                                     (SECRETS, {"StringEquals": RESOURCE_TAG, **ONLY_LEGACY_KEYS})],
    "kms:Decrypt": [([ACCOUNT_KEYS, SECRET_KEY], THROUGH_SECRETS_MANAGER)],
    "kms:GenerateDataKey": [([ACCOUNT_KEYS, SECRET_KEY], THROUGH_SECRETS_MANAGER)],
    "kms:DescribeKey": [([ACCOUNT_KEYS, SECRET_KEY, TRAIL_KEY], UNCONDITIONED)],
    **{f"cloudtrail:{a}": [("*", UNCONDITIONED)] for a in [
        "DescribeTrails", "GetTrailStatus", "GetEventSelectors", "ListTags"]},
    "cloudtrail:CreateTrail": [(OUR_TRAIL, {"StringEquals": REQUEST_TAG, **UNTAGGED})],
    "cloudtrail:AddTags": [(OUR_TRAIL, {"StringEquals": REQUEST_TAG, **UNTAGGED}),
                           (ANY_TRAIL, {"StringEquals": {**RESOURCE_TAG, **REQUEST_TAG}})],
    **{f"cloudtrail:{a}": [(ANY_TRAIL, {"StringEquals": RESOURCE_TAG})] for a in [
        "UpdateTrail", "StartLogging", "DeleteTrail"]},
    "lambda:InvokeFunction": [(FUNCTION, UNCONDITIONED)],
    # Only with a StatusBusArn (HasStatusBus): only there, only the connector's report.
    "events:PutEvents": [({"Ref": "StatusBusArn"}, OUR_REPORT)],
}
# What grants permissions or credentials, or could re-home a user: never unconditioned.
GRANTS = {"iam:CreateUser", "iam:TagUser", "iam:UntagUser", "iam:PutUserPolicy", "iam:PutUserPermissionsBoundary",
          "iam:AttachUserPolicy", "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:UpdateUser"}
ROLE_POLICIES = ("ConnectorPolicy", "ConnectorSecretsPolicy")


def load(path):
    with open(path) as f:
        return stackset_template.plain(cfn_yaml.loads(f.read(), path))


def branches(statement):
    """A statement, or both branches of an Fn::If around one (AWS::NoValue dropped)."""
    if "Fn::If" in statement:
        for branch in statement["Fn::If"][1:]:
            if branch != {"Ref": "AWS::NoValue"}:
                yield from branches(branch)
    else:
        yield statement


def role_statements(template):
    """Every statement of the role's documents (the inline policy and the managed one)."""
    docs = [template["Resources"][name]["Properties"]["PolicyDocument"] for name in ROLE_POLICIES]
    return [s for doc in docs for st in doc["Statement"] for s in branches(st)]


def actions(statement):
    a = statement.get("Action", [])
    return [a] if isinstance(a, str) else a


def by_sid(statements, sid):
    return next(s for s in statements if s.get("Sid") == sid)


def strings(node):
    """Every string in a node, with the !Sub templates among them."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


SAM_T = load(SAM)
STACKSET_T = load(STACKSET)
TEMPLATES = pytest.mark.parametrize("template", [SAM_T, STACKSET_T], ids=["template.yaml", "deploy/stackset.yaml"])
ROLE = role_statements(SAM_T)
BOUNDARY_DOC = SAM_T["Resources"]["ConnectorUserBoundary"]["Properties"]["PolicyDocument"]


def test_no_statement_grants_a_wildcard_action():
    for statement in ROLE + BOUNDARY["Statement"]:
        for action in actions(statement):
            assert action != "*" and not action.endswith(":*"), f"{statement.get('Sid')}: {action}"


def expected_in(template):
    """EXPECTED as the template has it: the StackSet template's account-specific parameters take
    their account-neutral form (scripts/stackset_template.py NEUTRAL)."""
    if template is SAM_T:
        return EXPECTED
    return {a: [tuple(stackset_template.neutral(list(g))) for g in grants] for a, grants in EXPECTED.items()}


@TEMPLATES
def test_every_action_of_the_role_is_allowed_only_on_its_resources_under_its_conditions(template):
    seen = set()
    expected = expected_in(template)
    for statement in role_statements(template):
        assert statement["Effect"] == "Allow" and re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
        for action in actions(statement):
            allowed = expected.get(action)
            assert allowed, f"{statement['Sid']}: {action} is not in the role's contract (EXPECTED)"
            grant = (statement["Resource"], statement.get("Condition"))
            assert grant in allowed, f"{statement['Sid']}: {action} on {grant}"
            seen.add((action, json.dumps(grant, sort_keys=True)))
    missing = {(a, json.dumps(g, sort_keys=True)) for a, grants in expected.items() for g in grants} - seen
    assert not missing, f"the role lacks {sorted(missing)}"


@TEMPLATES
def test_every_iam_write_that_grants_permissions_or_credentials_is_conditioned(template):
    for statement in role_statements(template):
        granted = GRANTS & set(actions(statement))
        if granted:
            condition = statement.get("Condition")
            assert condition, f"{statement['Sid']}: {sorted(granted)} unconditioned"
            keys = {k for block in condition.values() for k in block}
            # the boundary, or this stack's tag on the user (the access-key actions have no
            # boundary key: IAM service authorization reference)
            assert keys & {"iam:PermissionsBoundary", "aws:ResourceTag/cloud-app-security:stack-id"}, statement["Sid"]
            if keys.isdisjoint({"aws:ResourceTag/cloud-app-security:stack-id"}):
                assert set(actions(statement)) <= {"iam:CreateUser", "iam:TagUser"}, statement["Sid"]


@TEMPLATES
def test_no_if_exists_operator_and_no_condition_on_a_missing_key(template):
    for statement in role_statements(template):
        for operator, block in statement.get("Condition", {}).items():
            assert "IfExists" not in operator, f"{statement['Sid']}: {operator}"
            # Null requires a key to be present ("false"); its absence ("true") is allowed only for
            # the stack tag of a resource being created, beside the request tag it must carry, and
            # for CreateSecret's replica regions (a secret is never created with replicas), only in
            # a statement that creates secrets: there the absence narrows the grant, never widens it.
            if operator == "Null":
                absent = {k for k, v in block.items() if v == "true"}
                stack_tag, replicas = "aws:ResourceTag/cloud-app-security:stack-id", "secretsmanager:AddReplicaRegions"
                assert absent <= {stack_tag, replicas}, f"{statement['Sid']}: {block}"
                assert stack_tag not in absent or statement["Condition"]["StringEquals"][
                    "aws:RequestTag/cloud-app-security:stack-id"] == STACK_ID, statement["Sid"]
                assert replicas not in absent or (
                    "secretsmanager:CreateSecret" in actions(statement)
                    and set(actions(statement)) <= {"secretsmanager:CreateSecret", "secretsmanager:TagResource"}), \
                    f"{statement['Sid']}: {block}"
        # Every grant of CreateSecret refuses replica regions.
        if "secretsmanager:CreateSecret" in actions(statement):
            assert statement["Condition"]["Null"]["secretsmanager:AddReplicaRegions"] == "true", statement["Sid"]
    # Nothing can remove a boundary, change group membership or touch roles, groups or policies.
    everything = {a for s in role_statements(template) for a in actions(s)}
    assert not everything & {"iam:DeleteUserPermissionsBoundary", "iam:RemoveUserFromGroup", "iam:AddUserToGroup",
                             "iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:PassRole"}
    assert not [a for a in everything if re.match(r"iam:.*(Role|Group|Policy(Version)?)$", a)
                and a not in ("iam:PutUserPolicy", "iam:DeleteUserPolicy", "iam:GetUserPolicy", "iam:GetPolicy",
                              "iam:GetPolicyVersion",
                              "iam:AttachUserPolicy", "iam:DetachUserPolicy")]


def test_the_tag_on_create_statement_cannot_serve_a_tag_call_of_its_own():
    # iam:PermissionsBoundary is in the request context of CreateUser, never of TagUser (IAM
    # service authorization reference): a TagUser grant rests on documented keys only — our resource
    # tag, or (the user being created) no stack's tag at all — and always carries our tag.
    for statement in ROLE:
        if "iam:TagUser" in actions(statement):
            condition = statement["Condition"]
            assert condition["StringEquals"]["aws:RequestTag/cloud-app-security:stack-id"] == STACK_ID
            assert "iam:PermissionsBoundary" not in condition["StringEquals"]
            ours = condition["StringEquals"].get("aws:ResourceTag/cloud-app-security:stack-id") == STACK_ID
            untagged = condition.get("Null", {}).get("aws:ResourceTag/cloud-app-security:stack-id") == "true"
            assert ours or untagged, statement["Sid"]


@TEMPLATES
def test_every_arn_and_service_host_names_the_partition(template):
    for text in strings([template["Resources"], template["Outputs"], template["Conditions"]]):
        assert "arn:aws:" not in text and "arn:aws-" not in text, text
        for arn in re.findall(r"arn:(?:\$\{[^}]*\}|[^:$]*):", text):
            assert arn == "arn:${AWS::Partition}:", text
        # Service principals (cloudtrail.amazonaws.com, logging.s3.amazonaws.com) only.
        assert "amazonaws.com" not in text or re.fullmatch(r"[a-z0-9-]+(\.s3)?\.amazonaws\.com", text), text
    # Service hosts follow the partition's URL suffix (amazonaws.com.cn in China).
    doc = template["Resources"]["ConnectorSecretsPolicy"]["Properties"]["PolicyDocument"]
    kms = [s for st in doc["Statement"] for s in branches(st) if "kms:Decrypt" in actions(s)]
    assert kms[0]["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"}


@pytest.mark.parametrize("parameter", ["SecretKmsKeyArn", "TrailKmsKeyArn", "PermissionsBoundaryArn"])
def test_arn_parameters_accept_every_partition(parameter):
    pattern = re.compile(SAM_T["Parameters"][parameter]["AllowedPattern"])
    assert pattern.fullmatch("")
    for partition, region in (("aws", "eu-west-1"), ("aws-cn", "cn-north-1"), ("aws-us-gov", "us-gov-west-1")):
        if parameter == "PermissionsBoundaryArn":
            arn = f"arn:{partition}:iam::123456789012:policy/team/boundary"
        else:
            arn = f"arn:{partition}:kms:{region}:123456789012:key/mrk-0123456789abcdef0123456789abcdef"
            assert pattern.fullmatch(f"arn:{partition}:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
        assert pattern.fullmatch(arn), arn
    assert not pattern.fullmatch("arn:aws:kms:eu-west-1:123456789012:alias/x")


@TEMPLATES
def test_the_role_documents_fit_iam_size_limits_at_their_longest(template, monkeypatch):
    # IAM counts a policy without whitespace: a role's inline policies share 10,240 characters, a
    # managed policy has 6,144. The stack id and the boundary's ARN recur; take them at their longest.
    name = "s" * 128
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::StackName", name)
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::Partition", "aws-us-gov")
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::Region", "us-gov-west-1")
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::StackId", f"arn:aws-us-gov:cloudformation:us-gov-west-1:"
                                                          f"123456789012:stack/{name}/{'0' * 8}-{'0' * 4}-{'0' * 4}-{'0' * 4}-{'0' * 12}")
    monkeypatch.setitem(lint_policies.REFS, "ConnectorUserBoundary", "arn:aws-us-gov:iam::123456789012:policy/" + name)
    monkeypatch.setitem(lint_policies.REFS, "ApiCredentials", f"arn:aws-us-gov:secretsmanager:us-gov-west-1:"
                                                              f"123456789012:secret:cloud-app-security-api/{name}-AbCdEf")
    monkeypatch.setitem(lint_policies.GETATT, "ConnectorLogGroup.Arn", f"arn:aws-us-gov:logs:us-gov-west-1:123456789012:"
                                                                       f"log-group:/aws/lambda/{name}-connector:*")
    boundary_arn = SAM_T["Parameters"]["PermissionsBoundaryArn"]["MaxLength"]
    longest = {
        # The fleet's bus: a name of up to 256 characters (the parameter's pattern).
        "StatusBusArn": "arn:aws-us-gov:events:us-gov-west-1:123456789012:event-bus/" + "b" * 256,
        "PermissionsBoundaryArn": "arn:aws-us-gov:iam::123456789012:policy/" + "p" * (boundary_arn - 40),
        "SecretKmsKeyArn": "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-" + "0" * 32,
        "TrailKmsKeyArn": "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-" + "0" * 32,
        "TrailName": "t" * 128, "ApiToken": "x", "TrailMode": "Create",
    }
    monkeypatch.setattr(lint_policies, "SCENARIOS", {"longest": longest, "longest, own boundary off": {
        **longest, "PermissionsBoundaryArn": ""}})
    sizes = {}
    for scenario, policy, document in lint_policies.documents(template):
        sizes[(scenario, policy)] = len(json.dumps(document, separators=(",", ":")))
    for scenario in lint_policies.SCENARIOS:
        assert sizes[(scenario, "role")] <= 10240, sizes
        assert sizes[(scenario, "role secrets")] <= 6144, sizes
    assert sizes[("longest, own boundary off", "boundary")] <= 6144, sizes


def test_the_function_serves_only_its_own_stack_and_partition():
    for template in (SAM_T, STACKSET_T):
        env = template["Resources"]["ConnectorFunction"]["Properties"]["Environment"]["Variables"]
        assert env["CLOUD_APP_SECURITY_STACK_ID"] == {"Ref": "AWS::StackId"}
        assert env["CLOUD_APP_SECURITY_URL_SUFFIX"] == {"Ref": "AWS::URLSuffix"}
        assert env["CLOUD_APP_SECURITY_ALLOWED_HOSTS"] == {"Ref": "AllowedHosts"}
        # The fleet: where the status goes (empty: nowhere), and when a waiting paste is overdue.
        assert env["CLOUD_APP_SECURITY_STATUS_BUS"] == {"Ref": "StatusBusArn"}
        assert env["CLOUD_APP_SECURITY_PASTE_OVERDUE_DAYS"] == {"Ref": "PasteOverdueDays"}


@TEMPLATES
def test_every_checkov_skip_gives_its_reason(template):
    skips = [(name, skip) for name, resource in template["Resources"].items()
             for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]) and len(skip.get("comment", "")) > 40, (name, skip)


def boundary(allow_bucket_acl_changes):
    """The boundary's document as it resolves with AllowBucketAclChanges "true" or "false"."""
    def pick(node):
        if isinstance(node, list):
            return [v for v in map(pick, node) if v != {"Ref": "AWS::NoValue"}]
        if isinstance(node, dict):
            if list(node) == ["Fn::If"] and node["Fn::If"][0] == "AllowBucketAcl":
                return pick(node["Fn::If"][1 if allow_bucket_acl_changes else 2])
            return {k: pick(v) for k, v in node.items()}
        return node
    return pick(BOUNDARY_DOC)


BOUNDARY = boundary(allow_bucket_acl_changes=True)


@TEMPLATES
def test_the_deployer_may_leave_bucket_acl_changes_out_of_the_boundary(template):
    assert template["Parameters"]["AllowBucketAclChanges"]["Default"] == "true"  # Microsoft's procedure
    assert template["Conditions"]["AllowBucketAcl"] == {"Fn::Equals": [{"Ref": "AllowBucketAclChanges"}, "true"]}
    assert template["Resources"]["ConnectorUserBoundary"]["Properties"]["PolicyDocument"] == BOUNDARY_DOC
    without = {s["Sid"]: s for s in boundary(allow_bucket_acl_changes=False)["Statement"]}
    assert without["ProcedureActions"]["Action"] == [a for a in PROCEDURE if a != "s3:PutBucketAcl"]
    assert not any(fnmatch.fnmatchcase("s3:putbucketacl", p.lower())
                   for s in without.values() if s["Effect"] == "Allow" for p in actions(s))
    # With the deployer's own boundary the parameter would do nothing: a rule keeps it "true" there.
    rule = template["Rules"]["OwnBoundaryDecidesBucketAcl"]
    own = "PermissionsBoundaryArn" if template is SAM_T else "PermissionsBoundaryName"
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": own}, ""]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AllowBucketAclChanges"}, "true"]}


def test_the_boundary_holds_the_procedure_and_nothing_that_writes_or_reads_data():
    statements = {s["Sid"]: s for s in BOUNDARY["Statement"]}
    # The connector user's inline policy keeps exactly the procedure's 12 actions (SPEC); the
    # boundary holds them too unless AllowBucketAclChanges is "false".
    assert statements["ProcedureActions"]["Action"] == PROCEDURE
    for sid in ("ProcedureActions", "SecurityConfigurationReads"):
        for action in statements[sid]["Action"]:
            name = action.split(":")[1]
            if action != "s3:PutBucketAcl":
                assert not name.startswith(WRITE_VERBS), action
    denied = statements["NeverData"]
    assert denied["Effect"] == "Deny" and {"s3:GetObject", "lambda:GetFunction"} <= set(denied["Action"])
    # IAM's limit for a managed policy document, whitespace excluded.
    assert len(json.dumps(BOUNDARY, separators=(",", ":"))) <= 6144


def managed_policy_actions(name):
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    document = json.loads(aws_managed_policies_data)[name]["Document"]
    return {a for s in document["Statement"] if s["Effect"] == "Allow" for a in actions(s)}


def allowed_by_boundary(action):
    allows = [s for s in BOUNDARY["Statement"] if s["Effect"] == "Allow"]
    denies = [s for s in BOUNDARY["Statement"] if s["Effect"] == "Deny"]
    match = lambda s: any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in actions(s))  # noqa: E731
    return any(map(match, allows)) and not any(map(match, denies))


def test_the_boundary_allows_only_what_the_managed_policies_grant_and_the_cis_checks_need():
    granted = managed_policy_actions("SecurityAudit") | managed_policy_actions("AWSSecurityHubReadOnlyAccess")
    reads = next(s for s in BOUNDARY["Statement"] if s["Sid"] == "SecurityConfigurationReads")["Action"]
    for pattern in reads:
        # Every pattern is (or expands to) something the managed policies grant: never wider.
        assert any(fnmatch.fnmatchcase(g.lower(), pattern.lower()) or
                   fnmatch.fnmatchcase(pattern.lower(), g.lower()) for g in granted), pattern
    for action in [
        "iam:GetAccountPasswordPolicy", "iam:GenerateCredentialReport", "iam:GetCredentialReport",
        "cloudtrail:GetEventSelectors", "config:DescribeConfigurationRecorderStatus", "kms:GetKeyRotationStatus",
        "s3:GetBucketPolicy", "s3:GetBucketLogging", "s3:GetAccountPublicAccessBlock", "ec2:DescribeSecurityGroups",
        "ec2:DescribeFlowLogs", "ec2:GetEbsEncryptionByDefault", "logs:DescribeMetricFilters",
        "cloudwatch:DescribeAlarms", "sns:ListSubscriptionsByTopic", "securityhub:GetEnabledStandards",
        "access-analyzer:ListAnalyzers", "rds:DescribeDBInstances", "guardduty:ListDetectors",
        "organizations:DescribeOrganization",
    ]:
        assert allowed_by_boundary(action), action
    for action in ["s3:GetObject", "iam:CreateUser", "iam:PutUserPolicy", "sts:AssumeRole", "ec2:RunInstances"]:
        assert not allowed_by_boundary(action), action


def test_the_resource_and_function_are_wired_for_a_safe_deployment():
    r = SAM_T["Resources"]
    connector = r["Connector"]
    # The stack's deletion runs the resource's Delete while both of the role's documents still work.
    assert set(connector["DependsOn"]) >= {"ConnectorPolicy", "ConnectorSecretsPolicy", "ConnectorLogGroup"}
    assert r["ConnectorSecretsPolicy"]["Properties"]["Roles"] == [{"Ref": "ConnectorRole"}]
    assert r["ConnectorPolicy"]["Properties"]["Roles"] == [{"Ref": "ConnectorRole"}]
    function = r["ConnectorFunction"]
    assert function["Metadata"]["BuildMethod"] == "rust-cargolambda"
    props = function["Properties"]
    assert (props["Runtime"], props["Architectures"], props["Handler"]) == ("provided.al2023", ["arm64"], "bootstrap")
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["Timeout"] < connector["Properties"]["ServiceTimeout"] <= 900
    # The release (a literal: an upgrade is an Update of every connector); test_release.py pins its value.
    assert isinstance(connector["Properties"]["CodeVersion"], str)
    assert "RetentionInDays" in r["ConnectorLogGroup"]["Properties"]
    assert set(SAM_T["Outputs"]) >= {"UserArn", "SecretArn", "TrailArn", "ConnectorStatus", "PortalUrl"}
    for name, p in SAM_T["Parameters"].items():
        if name in ("ApiToken", "EntraClientSecret"):
            assert p.get("NoEcho") is True


def test_the_trail_bucket_is_private_encrypted_tls_only_and_kept():
    r = SAM_T["Resources"]
    bucket = r["TrailBucket"]
    # Kept on the stack's deletion, never after a failed creation (SPEC "Deployment").
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    assert (r["TrailBucketPolicy"]["DeletionPolicy"], r["TrailBucketPolicy"]["UpdateReplacePolicy"]) == (
        "RetainExceptOnCreate", "Retain")
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {"Ref": "TrailLogRetentionDays"}
    policy = {s["Sid"]: s for st in r["TrailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
              for s in branches(st)}
    assert policy["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for sid in ("CloudTrailAclCheck", "CloudTrailWrite"):
        assert "aws:SourceArn" in policy[sid]["Condition"]["StringEquals"]


@TEMPLATES
def test_every_service_that_may_invoke_the_function_is_limited_to_its_source(template):
    # Without SourceArn a service principal may invoke the function for any resource that can name
    # it: any secret of the account could be pointed at it for rotation (tests/iam/cases.yaml).
    permissions = {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Permission"}
    assert set(permissions) == {"RotationPermission", "KeyCheckPermission"}
    for name, props in permissions.items():
        assert props["Principal"].endswith(".amazonaws.com") and props.get("SourceArn"), name
    rotation = permissions["RotationPermission"]
    assert (rotation["Principal"], rotation["SourceAccount"], rotation["SourceArn"]) == (
        "secretsmanager.amazonaws.com", {"Ref": "AWS::AccountId"}, SECRETS)


@TEMPLATES
def test_the_trail_and_its_bucket_can_meet_the_cis_checks(template):
    r = template["Resources"]
    # CloudTrail logs encrypted with a KMS key of the deployer's (the function creates the trail).
    key = {"Ref": "TrailKmsKeyArn"}
    assert r["Connector"]["Properties"]["TrailKmsKeyId"] == (key if template is SAM_T else stackset_template.neutral(key))
    assert template["Parameters"]["TrailKmsKeyArn" if template is SAM_T else "TrailKmsKeyAlias"]["Default"] == ""
    # Server access logging on the CloudTrail bucket, always: to a bucket the deployer names, or to
    # itself under access-logs/, which its policy lets S3's logging service write (only there).
    log_bucket = stackset_template.neutral({"Ref": "TrailBucketAccessLogBucket"}) if template is STACKSET_T else {
        "Ref": "TrailBucketAccessLogBucket"}
    if template is STACKSET_T:
        log_bucket = log_bucket["Fn::If"][1]
    assert r["TrailBucket"]["Properties"]["LoggingConfiguration"] == {"Fn::If": [
        "LogTrailBucketAccess",
        {"DestinationBucketName": log_bucket, "LogFilePrefix": {"Fn::Sub": "${AWS::StackName}/trail-bucket/"}},
        {"LogFilePrefix": "access-logs/"}]}
    name = "TrailBucketAccessLogBucket" if template is SAM_T else "TrailBucketAccessLogBucketPrefix"
    assert template["Conditions"]["LogTrailBucketAccess"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]}
    own = [s for st in r["TrailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
           if "Fn::If" in st for s in branches(st)]
    assert own == [{"Sid": "S3ServerAccessLogs", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
                    "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${TrailBucket.Arn}/access-logs/*"},
                    "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["TrailBucket", "Arn"]}},
                                  "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]


def test_the_stackset_template_is_generated_from_template_yaml():
    with open(STACKSET) as f:
        assert f.read() == stackset_template.render(), "run .venv/bin/python scripts/stackset_template.py"


def test_the_stackset_template_fits_cloudformations_template_body_limit():
    # The rollout sends the file as it is as TemplateBody: at most 51,200 bytes (pytest -s prints the size).
    with open(STACKSET, "rb") as f:
        size = len(f.read())
    print(f"deploy/stackset.yaml: {size} bytes of {limits.TEMPLATE_BODY_MAX}")
    assert size <= limits.TEMPLATE_BODY_MAX


def test_the_stackset_template_has_not_drifted():
    stackset = load(STACKSET)
    neutral = stackset_template.neutral
    assert role_statements(stackset) == [neutral(s) for s in ROLE]
    for name in ("ConnectorUserBoundary", "ConnectorPolicy", "ConnectorSecretsPolicy", "ConnectorRole", "TrailBucket",
                 "TrailBucketPolicy", "PropertiesCheck", "AlarmTopic", "StatusReaderRole"):
        assert stackset["Resources"][name] == neutral(SAM_T["Resources"][name]), name
    assert stackset["Rules"] == neutral(SAM_T["Rules"], "Rules")
    assert stackset["Conditions"] == neutral(SAM_T["Conditions"], "Conditions")
    # The resource's properties, CodeVersion (the release) included.
    assert stackset["Resources"]["Connector"]["Properties"] == neutral(SAM_T["Resources"]["Connector"]["Properties"])
    for name, definition in SAM_T["Parameters"].items():
        if name not in limits.ACCOUNT_SPECIFIC_PARAMETERS:
            assert stackset["Parameters"][name] == definition, name
    assert set(stackset["Parameters"]) - set(SAM_T["Parameters"]) == {
        "ArtifactBucketPrefix", "ArtifactKey", *limits.ACCOUNT_SPECIFIC_PARAMETERS.values()}
    assert "Transform" not in stackset
    code = stackset["Resources"]["ConnectorFunction"]["Properties"]["Code"]
    assert code["S3Bucket"] == {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}


def test_the_artifact_bucket_is_readable_by_the_organization_only_over_tls():
    t = load(os.path.join(REPO, "deploy", "artifact-bucket.yaml"))
    policy = {s["Sid"]: s for st in t["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
              for s in branches(st)}
    read = policy["OrganizationReadsCode"]
    assert read["Action"] == "s3:GetObject"
    # The code only (scripts/rollout.py's keys), never the bucket's own access logs.
    assert read["Resource"] == {"Fn::Sub": "${ArtifactBucket.Arn}/cloud-app-security-connector/*"}
    assert read["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    assert policy["DenyInsecureTransport"]["Effect"] == "Deny"
    assert t["Resources"]["ArtifactBucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}


# --- the fleet (docs/fleet.md) ---------------------------------------------------------------------

@TEMPLATES
def test_the_status_report_is_off_without_a_bus_and_names_only_the_fleets_bus(template):
    parameter = template["Parameters"]["StatusBusArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    for partition, region in (("aws", "eu-west-1"), ("aws-cn", "cn-north-1"), ("aws-us-gov", "us-gov-west-1")):
        assert pattern.fullmatch(f"arn:{partition}:events:{region}:210987654321:event-bus/cloud-app-security-connector-fleet")
    for wrong in ("cloud-app-security-connector-fleet", "arn:aws:events:eu-west-1:210987654321:rule/x",
                  "arn:aws:sns:eu-west-1:210987654321:event-bus/x", "arn:aws:events:eu-west-1:210987654321:event-bus/"):
        assert not pattern.fullmatch(wrong), wrong
    assert template["Conditions"]["HasStatusBus"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StatusBusArn"}, ""]}]}
    doc = template["Resources"]["ConnectorSecretsPolicy"]["Properties"]["PolicyDocument"]
    (report,) = [st for st in doc["Statement"] if "Fn::If" in st and st["Fn::If"][0] == "HasStatusBus"]
    assert report["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert report["Fn::If"][1]["Sid"] == "ReportStatusToTheFleetBus"
    days = template["Parameters"]["PasteOverdueDays"]
    assert (days["Type"], days["Default"], days["MinValue"], days["MaxValue"]) == ("Number", 3, 1, 365)


@TEMPLATES
def test_the_reader_role_is_opt_in_and_lets_one_operator_read_one_key_at_awscurrent(template):
    params = template["Parameters"]
    assert params["StatusReaderPrincipalArn"]["Default"] == "" and params["OrganizationId"]["Default"] == ""
    principal = re.compile(params["StatusReaderPrincipalArn"]["AllowedPattern"])
    for arn in ("", "arn:aws:iam::210987654321:role/fleet-operator", "arn:aws:iam::210987654321:user/alice",
                "arn:aws-us-gov:iam::210987654321:role/aws-reserved/sso.amazonaws.com/us-gov-west-1/AWSReservedSSO_Fleet_0123456789abcdef"):
        assert principal.fullmatch(arn), arn
    for wrong in ("arn:aws:iam::210987654321:root", "arn:aws:sts::210987654321:assumed-role/fleet-operator/me",
                  "arn:aws:iam::210987654321:group/admins", "arn:aws:iam::210987654321:role/"):
        assert not principal.fullmatch(wrong), wrong
    assert re.fullmatch(params["OrganizationId"]["AllowedPattern"], "o-exampleorg01")
    # The organization is required with a reader: the trust policy names it.
    rule = template["Rules"]["StatusReaderNeedsTheOrganization"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StatusReaderPrincipalArn"}, ""]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationId"}, ""]}]}
    assert template["Conditions"]["HasStatusReader"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "StatusReaderPrincipalArn"}, ""]}]}

    role = template["Resources"]["StatusReaderRole"]
    assert role["Condition"] == "HasStatusReader"
    props = role["Properties"]
    # What fleet.py assumes in each account.
    assert (props["Path"], props["RoleName"]) == (fleet.READER_ROLE_PATH, fleet.READER_ROLE_NAME)
    assert props["MaxSessionDuration"] == 3600
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole" and trust["Effect"] == "Allow"
    assert trust["Principal"] == {"AWS": {"Fn::Sub": ["arn:${AWS::Partition}:iam::${Account}:root", {
        "Account": {"Fn::Select": [4, {"Fn::Split": [":", {"Ref": "StatusReaderPrincipalArn"}]}]}}]}}
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": {"Ref": "StatusReaderPrincipalArn"}},
                                  "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    (policy,) = props["Policies"]
    read, decrypt = policy["PolicyDocument"]["Statement"]
    secret = {"Fn::GetAtt": ["Connector", "SecretArn"]}
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", secret)
    assert read["Condition"] == {"StringEquals": {"secretsmanager:VersionStage": "AWSCURRENT"}}
    assert decrypt["Action"] == "kms:Decrypt"
    expected_keys = [ACCOUNT_KEYS, SECRET_KEY] if template is SAM_T else stackset_template.neutral([ACCOUNT_KEYS, SECRET_KEY])
    assert decrypt["Resource"] == expected_keys
    assert decrypt["Condition"] == {"StringEquals": {
        "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"},
        "kms:EncryptionContext:SecretARN": secret}}
    output = template["Outputs"]["StatusReaderRoleArn"]
    assert output["Condition"] == "HasStatusReader" and output["Value"] == {"Fn::GetAtt": ["StatusReaderRole", "Arn"]}


def test_the_reader_role_resolves_to_the_operators_account_root():
    params = lint_policies.SCENARIOS["all options"]
    trust = lint_policies.resolve(SAM_T["Resources"]["StatusReaderRole"]["Properties"]["AssumeRolePolicyDocument"],
                                  SAM_T, params)
    operator_account = params["StatusReaderPrincipalArn"].split(":")[4]
    assert trust["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{operator_account}:root"}
    assert not lint_policies.exists(SAM_T["Resources"]["StatusReaderRole"], SAM_T, {})
