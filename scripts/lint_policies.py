"""Runs parliament (an IAM policy linter) over the connector's role policy, the connector user's
permissions boundary and the fleet's reader role (when the scenario has one), as they resolve in a
deployed stack, from both templates.

CloudFormation templates are not policies: the documents hold !Sub, !Ref, !If and !GetAtt. This
script resolves them for each scenario below (the parameter values that change a document), with
placeholder account, region, stack and ARNs, then asks parliament — with its community auditors,
which flag privilege escalation — about each resolved document.

Some findings are the point of the role (it must create access keys, on its own users only). Those
are listed in JUSTIFIED with the reason the finding is acceptable; parliament ignores conditions,
so the reason names the condition that makes the action safe. Any finding not listed fails the
run, and so does a listed one that no longer occurs (the list must stay true).

Usage: lint_policies.py [--print]   (--print: show the resolved documents too)
"""

import json
import os
import re
import sys

from cfnlint.decode import cfn_yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stackset_template  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = {
    "template.yaml": os.path.join(REPO, "template.yaml"),
    "deploy/stackset.yaml": os.path.join(REPO, "deploy", "stackset.yaml"),
}
ACCOUNT = "123456789012"
REGION = "eu-west-1"
# The organization's security account: the fleet's bus and its operator (docs/fleet.md).
SECURITY_ACCOUNT = "210987654321"
STACK = "cas"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/00000000-0000-0000-0000-000000000000",
}
# What !Ref and !GetAtt of the stack's own resources resolve to.
REFS = {
    "ConnectorUserBoundary": f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-ConnectorUserBoundary-EXAMPLE",
    "ApiCredentials": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cloud-app-security-api/{STACK}-AbCdEf",
    "ConnectorRole": f"{STACK}-ConnectorRole-EXAMPLE",
    "ConnectorLogGroup": f"/aws/lambda/{STACK}-connector",
    "TrailBucket": f"{STACK}-trailbucket-example",
}
GETATT = {
    "Connector.SecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cloud-app-security/aws-{ACCOUNT}-AbCdEf",
    "ConnectorFunction.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-ConnectorFunction-EXAMPLE",
    "ConnectorLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{STACK}-connector:*",
}
# Every parameter value that changes a document: the defaults, and everything optional set.
SCENARIOS = {
    "defaults": {},
    "all options": {
        "SecretKmsKeyArn": f"arn:aws:kms:{REGION}:210987654321:key/11111111-2222-3333-4444-555555555555",
        "TrailKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef",
        "ApiToken": "token",
        "CloudAppSecurityUrl": "https://contoso.eu2.portal.cloudappsecurity.com",
        "TrailMode": "Create",
        "TrailBucketAccessLogBucket": "access-logs-example",
        # deploy/stackset.yaml's forms of the account-specific parameters (scripts/limits.py): a
        # KMS alias cannot name another account's key.
        "TrailKmsKeyAlias": "alias/cloudtrail",
        "SecretKmsKeyAlias": "alias/secrets",
        "TrailBucketAccessLogBucketPrefix": "access-logs",
        # Fleet status: the same values in every account (the security account's bus and operator).
        "StatusBusArn": f"arn:aws:events:{REGION}:{SECURITY_ACCOUNT}:event-bus/cloud-app-security-connector-fleet",
        "PasteOverdueDays": "5",
        "StatusReaderPrincipalArn": f"arn:aws:iam::{SECURITY_ACCOUNT}:role/security/fleet-operator",
        "OrganizationId": "o-exampleorg01",
    },
    "own boundary": {
        "PermissionsBoundaryArn": f"arn:aws:iam::{ACCOUNT}:policy/my-boundary",
        "PermissionsBoundaryName": "my-boundary",
        "EntraClientSecret": "secret",
        "TrailMode": "Off",
    },
    "bucket ACL changes left out": {"AllowBucketAclChanges": "false"},
}
# The role's two documents (inline, and managed for the secrets and keys), the user's boundary and
# the fleet's reader role's own policy: (resource, the path to the document in its Properties).
POLICIES = {
    "role": ("ConnectorPolicy", "PolicyDocument"),
    "role secrets": ("ConnectorSecretsPolicy", "PolicyDocument"),
    "boundary": ("ConnectorUserBoundary", "PolicyDocument"),
    "reader": ("StatusReaderRole", "Policies", 0, "PolicyDocument"),
}

# The IAM writes of the role that parliament counts as permissions management.
ROLE_IAM_WRITES = ",".join(sorted(f"iam:{a.lower()}" for a in [
    "AttachUserPolicy", "CreateAccessKey", "CreateUser", "DeactivateMFADevice", "DeleteAccessKey",
    "DeleteLoginProfile", "DeleteServiceSpecificCredential", "DeleteSigningCertificate", "DeleteSSHPublicKey",
    "DeleteUser", "DeleteUserPolicy", "DetachUserPolicy", "PutUserPermissionsBoundary", "PutUserPolicy",
    "UpdateAccessKey", "UpdateUser",
]))
BUCKET_ACL = (
    "s3:PutBucketAcl on every bucket is in Microsoft's procedure: Cloud App Security's \"make bucket "
    "private\" governance action. A boundary grants nothing itself (the user's inline policy does), "
    "and AllowBucketAclChanges=false leaves the action out of the boundary."
)
PERMISSIONS_BOUNDARY_IS_A_STRING = (
    "The Service Authorization Reference types iam:PermissionsBoundary as String, so StringEquals "
    "is the documented operator; its value is the boundary policy's ARN."
)

# (policy, issue, what parliament says) -> why that is acceptable here. parliament ignores
# conditions: each reason names the condition that makes the action safe.
JUSTIFIED = {
    ("role", "PRIVILEGE_ESCALATION", "CreateAccessKey"):
        "The connector issues its user's access key. IssueKeysOnlyToOurUsers allows it only on "
        "users under /cloud-app-security/ whose aws:ResourceTag/cloud-app-security:stack-id is this "
        "stack; that tag is set at CreateUser, which requires the boundary.",
    ("role", "PRIVILEGE_ESCALATION", "PutUserPolicy"):
        "The connector puts the procedure's inline policy on its user. WritePoliciesOnlyUnderTheBoundary "
        "requires iam:PermissionsBoundary = the connector boundary and this stack's tag: no inline "
        "policy can give a user more than the boundary.",
    ("role", "PRIVILEGE_ESCALATION", "AttachUserPolicy"):
        "SecurityConfiguration attaches SecurityAudit and AWSSecurityHubReadOnlyAccess. "
        "AttachOnlyTheTwoManagedPolicies requires iam:PolicyARN to be one of them, "
        "iam:PermissionsBoundary = the connector boundary and this stack's tag.",
    ("role", "CREDENTIALS_EXPOSURE", "iam:createaccesskey,iam:updateaccesskey"):
        "CreateAccessKey returns the key the connector stores in its secret (and UpdateAccessKey "
        "reactivates or retires one): only for users this stack's tag names (IssueKeysOnlyToOurUsers).",
    ("role", "PERMISSIONS_MANAGEMENT_ACTIONS", ROLE_IAM_WRITES):
        "The role manages its connector user: every one of these acts only on users under "
        "/cloud-app-security/, and each that grants permissions or credentials is conditioned on "
        "the boundary and/or this stack's tag (tests/python/test_templates.py checks each condition); "
        "removing policies (DeleteUserPolicy, DetachUserPolicy) is allowed only on this stack's users, "
        "and never of an AWS quarantine policy (removing a Deny would widen a user).",
    ("role", "MISMATCHED_TYPE_BUT_USABLE", "CreateUsersWithTheBoundaryAndOurTag iam:PermissionsBoundary"):
        PERMISSIONS_BOUNDARY_IS_A_STRING,
    ("role", "MISMATCHED_TYPE_BUT_USABLE", "WritePoliciesOnlyUnderTheBoundary iam:PermissionsBoundary"):
        PERMISSIONS_BOUNDARY_IS_A_STRING,
    ("role", "MISMATCHED_TYPE_BUT_USABLE", "AttachOnlyTheTwoManagedPolicies iam:PermissionsBoundary"):
        PERMISSIONS_BOUNDARY_IS_A_STRING,
    ("role", "RESOURCE_STAR", "FindTrails"):
        "Trail discovery reads any trail (GetTrailStatus, GetEventSelectors): shadow trails of other "
        "regions and organization trails have ARNs the stack cannot know. Reads only.",
    ("boundary", "PERMISSIONS_MANAGEMENT_ACTIONS", "s3:putbucketacl"): BUCKET_ACL,
    **{("boundary", "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
        f"Possible resource policy privilege escalation on * due to s3:{a} not being allowed, but does "
        f"allow s3:PutBucketAcl"): BUCKET_ACL + " An ACL could open a bucket to others; S3 ignores ACLs "
        "on buckets with Object Ownership 'bucket owner enforced' (the default for new buckets), and "
        "account-level Block Public Access refuses public ones (docs/security.md)."
       for a in ("GetObject", "PutObject", "DeleteObject")},
    ("boundary", "RESOURCE_STAR", "ProcedureActions"):
        "Microsoft's procedure grants these on Resource \"*\", and a boundary only caps what the "
        "user's policies grant.",
    ("boundary", "RESOURCE_STAR", "SecurityConfigurationReads"):
        "SecurityAudit and AWSSecurityHubReadOnlyAccess grant these metadata reads on every resource "
        "(a security audit reads the whole account); the boundary only caps them.",
}


class Unresolved(Exception):
    pass


def evaluate_condition(name, template, params):
    return resolve(template["Conditions"][name], template, params)


def resolve(node, template, params):
    """The value an intrinsic-laden node takes for the given parameter values."""
    if isinstance(node, list):
        out = [resolve(v, template, params) for v in node]
        return [v for v in out if v is not NOVALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return ref(arg, template, params)
        if fn == "Fn::GetAtt":
            name = arg if isinstance(arg, str) else ".".join(arg)
            return GETATT[name]
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

            def sub(m):
                key = m.group(1)
                if key in local:
                    return str(resolve(local[key], template, params))
                if key in GETATT:
                    return GETATT[key]
                return str(ref(key, template, params))

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if fn == "Fn::Select":
            index, items = arg
            return resolve(items, template, params)[int(resolve(index, template, params))]
        if fn == "Fn::Split":
            separator, text = arg
            return str(resolve(text, template, params)).split(separator)
        if fn == "Fn::If":
            cond, yes, no = arg
            return resolve(yes if evaluate_condition(cond, template, params) else no, template, params)
        if fn == "Fn::Equals":
            a, b = (resolve(v, template, params) for v in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not resolve(arg[0], template, params)
        if fn == "Fn::Or":
            return any(resolve(v, template, params) for v in arg)
        if fn == "Fn::And":
            return all(resolve(v, template, params) for v in arg)
        if fn == "Condition":
            return evaluate_condition(arg, template, params)
        if fn.startswith("Fn::"):
            raise Unresolved(fn)
    out = {k: resolve(v, template, params) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not NOVALUE}


NOVALUE = object()


def ref(name, template, params):
    if name == "AWS::NoValue":
        return NOVALUE
    if name in PSEUDO:
        return PSEUDO[name]
    if name in params:
        return params[name]
    if name in template["Parameters"]:
        return template["Parameters"][name].get("Default", "")
    if name in REFS:
        return REFS[name]
    raise Unresolved(name)


def exists(definition, template, params):
    """Whether a resource is made in the scenario (its Condition)."""
    return "Condition" not in definition or evaluate_condition(definition["Condition"], template, params)


def documents(template, policies=None):
    """(scenario, policy, resolved document) for every scenario in which the policy exists."""
    for scenario, params in SCENARIOS.items():
        for policy, (resource, *path) in (policies or POLICIES).items():
            definition = template["Resources"][resource]
            if not exists(definition, template, params):
                continue
            node = definition["Properties"]
            for key in path:
                node = node[key]
            yield scenario, policy, resolve(node, template, params)


def findings(document):
    """parliament's findings on a resolved document, each named by a stable key part: the
    escalation type or the actions for findings about the whole policy, and the statement's Sid
    (with the condition key) for findings about one statement, which parliament locates only by a
    column, so each statement is also analyzed on its own."""
    import parliament
    from parliament import analyze_policy_string

    def analyze(doc):
        return analyze_policy_string(json.dumps(doc), include_community_auditors=True,
                                     config=parliament.config).findings

    for finding in analyze(document):
        location = finding.location if isinstance(finding.location, dict) else {}
        if "type" in location:
            yield finding, location["type"]
        elif "actions" in location:
            yield finding, ",".join(sorted(location["actions"]))
        elif "column" not in location:
            yield finding, str(finding.detail)
    for statement in document["Statement"]:
        for finding in analyze({"Version": document["Version"], "Statement": [statement]}):
            location = finding.location if isinstance(finding.location, dict) else {}
            if "column" not in location:
                continue
            what = statement.get("Sid", "?")
            detail = str(finding.detail or "")
            named = re.search(r"condition (\S+) for action (\S+)", detail)
            if named:
                what += f" {named.group(1)} for {named.group(2)}"
            elif finding.issue.startswith("MISMATCHED_TYPE"):
                text = json.dumps({"Version": document["Version"], "Statement": [statement]})
                what += " " + re.search(r'"([A-Za-z0-9-]+:[^"]+)":', text[location["column"] - 2:]).group(1)
            yield finding, what


def lint():
    import parliament
    from parliament import override_config
    from pathlib import Path

    # As the CLI does with --include-community-auditors.
    override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")

    seen, unjustified = set(), []
    for label, path in TEMPLATES.items():
        with open(path) as f:
            template = stackset_template.plain(cfn_yaml.loads(f.read(), path))
        for scenario, policy, document in documents(template):
            if "--print" in sys.argv[1:]:
                print(f"--- {label}, {scenario}: {policy}\n{json.dumps(document, indent=2)}")
            for finding, what in findings(document):
                key = (policy, finding.issue, what)
                seen.add(key)
                if key not in JUSTIFIED:
                    unjustified.append((label, scenario, key, finding))
    for label, scenario, key, finding in unjustified:
        print(f"UNJUSTIFIED {label} ({scenario}): {key}\n    {finding.issue}: {finding.detail} {finding.location}")
    stale = sorted(set(JUSTIFIED) - seen)
    for key in stale:
        print(f"STALE justification (no such finding any more): {key}")
    for key in sorted(seen & set(JUSTIFIED)):
        print(f"justified {key[0]}: {key[1]} {key[2]} — {JUSTIFIED[key]}")
    if unjustified or stale:
        print(f"parliament: {len(unjustified)} unjustified finding(s), {len(stale)} stale justification(s)")
        return 1
    print(f"parliament: no unjustified finding ({len(seen)} justified, {len(SCENARIOS)} scenarios, "
          f"{len(TEMPLATES)} templates)")
    return 0


if __name__ == "__main__":
    sys.exit(lint())
