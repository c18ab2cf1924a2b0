"""The templates' security properties, read from the templates themselves: these fail if someone
adds a wildcard action, drops a condition, or lets the StackSet template drift from template.yaml."""

import fnmatch
import json
import os

from cfnlint.decode import cfn_yaml

import stackset_template
from conftest import REPO

SAM = os.path.join(REPO, "template.yaml")
STACKSET = os.path.join(REPO, "deploy", "stackset.yaml")
USER_PATH = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/cloud-app-security/*"}
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
    doc = template["Resources"]["ConnectorPolicy"]["Properties"]["PolicyDocument"]
    return [s for st in doc["Statement"] for s in branches(st)]


def actions(statement):
    a = statement.get("Action", [])
    return [a] if isinstance(a, str) else a


def by_sid(statements, sid):
    return next(s for s in statements if s.get("Sid") == sid)


SAM_T = load(SAM)
ROLE = role_statements(SAM_T)
BOUNDARY = SAM_T["Resources"]["ConnectorUserBoundary"]["Properties"]["PolicyDocument"]


def test_no_statement_grants_a_wildcard_action():
    for statement in ROLE + BOUNDARY["Statement"]:
        for action in actions(statement):
            assert action != "*" and not action.endswith(":*"), f"{statement.get('Sid')}: {action}"


def test_iam_writes_only_on_the_connector_path():
    for statement in ROLE:
        iam = [a for a in actions(statement) if a.startswith("iam:")]
        if iam and iam != ["iam:GetUser"]:
            assert statement["Resource"] == USER_PATH, statement["Sid"]
    assert by_sid(ROLE, "ReadUsers")["Action"] == "iam:GetUser"


def test_managed_policies_attach_only_with_the_policy_arn_condition():
    attach = [s for s in ROLE if {"iam:AttachUserPolicy", "iam:DetachUserPolicy"} & set(actions(s))]
    assert len(attach) == 1
    assert attach[0]["Condition"] == {"ArnEquals": {"iam:PolicyARN": MANAGED}}


def test_users_are_created_only_with_the_boundary_and_it_cannot_be_removed():
    guarded = {"iam:CreateUser", "iam:PutUserPermissionsBoundary"}
    holders = [s for s in ROLE if guarded & set(actions(s))]
    assert len(holders) == 1 and set(actions(holders[0])) == guarded
    boundary = holders[0]["Condition"]["StringEquals"]["iam:PermissionsBoundary"]
    assert boundary == {"Fn::If": ["OwnBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "ConnectorUserBoundary"}]}
    # The function applies the same boundary.
    assert SAM_T["Resources"]["Connector"]["Properties"]["PermissionsBoundary"] == boundary
    assert not any("iam:DeleteUserPermissionsBoundary" in actions(s) for s in ROLE)


def test_secrets_only_under_the_prefix_and_the_credentials_only_read():
    for statement in ROLE:
        if any(a.startswith("secretsmanager:") for a in actions(statement)):
            if statement["Sid"] == "ReadApiCredentials":
                assert actions(statement) == ["secretsmanager:GetSecretValue"]
                assert statement["Resource"] == {"Ref": "ApiCredentials"}
            else:
                assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                                                            "${AWS::AccountId}:secret:cloud-app-security/*"}
    # The credentials secret lies outside the prefix the function may write.
    name = SAM_T["Resources"]["ApiCredentials"]["Properties"]["Name"]
    assert not name["Fn::Sub"].startswith("cloud-app-security/")


def test_cloudtrail_writes_only_on_the_named_trail_and_kms_only_on_the_given_key():
    for statement in ROLE:
        trail = [a for a in actions(statement) if a.startswith("cloudtrail:")]
        if set(trail) - {"cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags"}:
            assert statement["Resource"] == {
                "Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${TrailName}"}
        if any(a.startswith("kms:") for a in actions(statement)):
            assert statement["Resource"] == {"Ref": "SecretKmsKeyArn"}
    kms = SAM_T["Resources"]["ConnectorPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any("Fn::If" in s and s["Fn::If"][0] == "HasKmsKey" for s in kms), "KMS only when a key is given"


def test_the_boundary_holds_the_procedure_and_nothing_that_writes_or_reads_data():
    statements = {s["Sid"]: s for s in BOUNDARY["Statement"]}
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
    assert set(connector["DependsOn"]) >= {"ConnectorPolicy", "ConnectorLogGroup"}
    function = r["ConnectorFunction"]
    assert function["Metadata"]["BuildMethod"] == "rust-cargolambda"
    props = function["Properties"]
    assert (props["Runtime"], props["Architectures"], props["Handler"]) == ("provided.al2023", ["arm64"], "bootstrap")
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["Timeout"] < connector["Properties"]["ServiceTimeout"] <= 900
    assert connector["Properties"]["CodeVersion"] == {"Ref": "ConnectorFunction.Version"}
    assert "RetentionInDays" in r["ConnectorLogGroup"]["Properties"]
    assert set(SAM_T["Outputs"]) >= {"UserArn", "SecretArn", "TrailArn", "ConnectorStatus", "PortalUrl"}
    for name, p in SAM_T["Parameters"].items():
        if name in ("ApiToken", "EntraClientSecret"):
            assert p.get("NoEcho") is True


def test_the_trail_bucket_is_private_encrypted_tls_only_and_kept():
    r = SAM_T["Resources"]
    bucket = r["TrailBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {"Ref": "TrailLogRetentionDays"}
    policy = {s["Sid"]: s for s in r["TrailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    assert policy["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for sid in ("CloudTrailAclCheck", "CloudTrailWrite"):
        assert "aws:SourceArn" in policy[sid]["Condition"]["StringEquals"]


def test_the_stackset_template_is_generated_from_template_yaml():
    with open(STACKSET) as f:
        assert f.read() == stackset_template.render(), "run .venv/bin/python scripts/stackset_template.py"


def test_the_stackset_template_has_not_drifted():
    stackset = load(STACKSET)
    assert role_statements(stackset) == ROLE
    assert stackset["Resources"]["ConnectorUserBoundary"] == SAM_T["Resources"]["ConnectorUserBoundary"]
    ours = dict(SAM_T["Resources"]["Connector"]["Properties"])
    theirs = dict(stackset["Resources"]["Connector"]["Properties"])
    assert theirs.pop("CodeVersion") == {"Ref": "ArtifactKey"}
    ours.pop("CodeVersion")
    assert theirs == ours
    for name, definition in SAM_T["Parameters"].items():
        assert stackset["Parameters"][name] == definition, name
    assert set(stackset["Parameters"]) - set(SAM_T["Parameters"]) == {"ArtifactBucketPrefix", "ArtifactKey"}
    assert "Transform" not in stackset
    code = stackset["Resources"]["ConnectorFunction"]["Properties"]["Code"]
    assert code["S3Bucket"] == {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}


def test_the_artifact_bucket_is_readable_by_the_organization_only_over_tls():
    t = load(os.path.join(REPO, "deploy", "artifact-bucket.yaml"))
    policy = {s["Sid"]: s for s in t["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    read = policy["OrganizationReadsCode"]
    assert read["Action"] == "s3:GetObject"
    assert read["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    assert policy["DenyInsecureTransport"]["Effect"] == "Deny"
    assert t["Resources"]["ArtifactBucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}
