"""Derives the StackSet template (deploy/stackset.yaml) from template.yaml.

Service-managed StackSets refuse the SAM transform, and Lambda reads its code only from a bucket
in its own region. The StackSet template is therefore template.yaml with the function written
out as AWS::Lambda::Function and its code read from <ArtifactBucketPrefix>-<region>/<ArtifactKey>.
Everything else — the role's statements, the boundary, the bucket, the resource's properties (the
release's CodeVersion included, so a release reaches every connector as an Update), the
parameters — is the same, which tests/python/test_templates.py checks, except the parameters that
name one account (scripts/limits.py ACCOUNT_SPECIFIC_PARAMETERS): one StackSet value goes to every
account, so each takes a form resolved in each account instead (NEUTRAL below): a policy name, a
KMS alias, an SNS topic name, a bucket-name prefix completed with the account and region. Resource Metadata is kept
(checkov skips and their reasons), except SAM's build settings; the Serverless Application
Repository's metadata is not (the StackSet template is not published there).

Usage: stackset_template.py [--check]   (--check: exit 1 if deploy/stackset.yaml is stale)
"""

import copy
import json
import os
import sys

import yaml
from cfnlint.decode import cfn_yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import limits  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "template.yaml")
TARGET = os.path.join(REPO, "deploy", "stackset.yaml")

HEADER = """\
# GENERATED from template.yaml by scripts/stackset_template.py: edit template.yaml, then run
#   .venv/bin/python scripts/stackset_template.py
# The service-managed StackSet template (no SAM transform; code from a regional bucket).
"""


def plain(node):
    """cfn-lint's decoded nodes as plain dicts, lists and strings."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


# AWS::Serverless::Function properties that AWS::Lambda::Function has under the same name and shape.
SAME_PROPERTIES = {
    "Architectures", "CodeSigningConfigArn", "Description", "Environment", "EphemeralStorage", "FileSystemConfigs",
    "FunctionName", "Handler", "KmsKeyArn", "Layers", "LoggingConfig", "MemorySize", "RecursiveLoop",
    "ReservedConcurrentExecutions", "Role", "Runtime", "RuntimeManagementConfig", "Timeout", "VpcConfig",
}
# SAM-only Metadata: how `sam build` builds the code. The rest (checkov skips and their reasons,
# anything a linter or a reader uses) is kept.
SAM_BUILD_METADATA = {"BuildMethod", "BuildProperties"}


def lambda_function(sam_resource):
    """The SAM function as AWS::Lambda::Function with its code from the regional artifact bucket.
    Every resource attribute (Metadata, DependsOn, Condition, ...) and property is carried over;
    a SAM-only property this does not know how to convert is an error, not silently dropped."""
    props = sam_resource["Properties"]
    unknown = sorted(set(props) - SAME_PROPERTIES - {"CodeUri", "AutoPublishAlias", "Tags"})
    if unknown:
        sys.exit(f"template.yaml: ConnectorFunction has properties scripts/stackset_template.py does not convert: "
                 f"{', '.join(unknown)}")
    function = {"Type": "AWS::Lambda::Function"}
    metadata = {k: v for k, v in sam_resource.get("Metadata", {}).items() if k not in SAM_BUILD_METADATA}
    if metadata:
        function["Metadata"] = metadata
    function.update({k: v for k, v in sam_resource.items() if k not in ("Type", "Metadata", "Properties")})
    properties = {}
    for key, value in props.items():
        if key == "CodeUri":
            properties["Code"] = {
                "S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
                "S3Key": {"Ref": "ArtifactKey"},
            }
        elif key == "Tags":  # SAM: a map; Lambda: a list
            properties["Tags"] = [{"Key": k, "Value": v} for k, v in value.items()]
        elif key in SAME_PROPERTIES:
            properties[key] = value
        # AutoPublishAlias: no version here; the resource's CodeVersion is the release (template.yaml).
    function["Properties"] = properties
    return function


# template.yaml's parameter -> (the StackSet's parameter, the condition that says it is given, the
# value built from it in each account). In Conditions and Rules a reference is replaced by the new
# parameter (empty exactly when the old one is); elsewhere by the value, under the condition.
NEUTRAL = {
    "PermissionsBoundaryArn": ("OwnBoundary", {
        "Type": "String",
        "Default": "",
        # arn:aws-us-gov:iam::123456789012:policy/ and this stay within the ARN's 300 characters.
        "MaxLength": 260,
        "AllowedPattern": "^$|^([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}$",
        "Description": "Your own permissions boundary for the connector's IAM user, by name (with its path, if any: "
                       "team/boundary), a managed policy of that name in every account; empty = the boundary this "
                       "stack creates. (template.yaml: PermissionsBoundaryArn.)",
    }, {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${PermissionsBoundaryName}"}),
    "SecretKmsKeyArn": ("HasKmsKey", {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^$|^alias/[A-Za-z0-9/_-]{1,250}$",
        "Description": "Optional customer managed KMS key for the secrets, by alias (alias/...), a key of that alias "
                       "in every account and region; empty = the AWS managed key. (template.yaml: SecretKmsKeyArn, "
                       "which may name another account's key.)",
    }, {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:${SecretKmsKeyAlias}"}),
    "TrailKmsKeyArn": ("HasTrailKmsKey", {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^$|^alias/[A-Za-z0-9/_-]{1,250}$",
        "Description": "Optional KMS key, by alias (alias/...) of a key in every account and region, that a trail "
                       "this stack creates encrypts its log files with (CIS: CloudTrail logs encrypted with KMS); "
                       "its key policy must let cloudtrail.amazonaws.com use it. Empty = SSE-S3. (template.yaml: "
                       "TrailKmsKeyArn.)",
    }, {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:${TrailKmsKeyAlias}"}),
    "AlarmTopicArn": ("HasAlarmTopic", {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^$|^[A-Za-z0-9_-]{1,256}$",
        "Description": "Optional SNS topic, by name (a topic of that name in every account and region), that the "
                       "alarms notify; empty = the stack creates a topic (output AlarmTopicArn) so every alarm has an "
                       "action. (template.yaml: AlarmTopicArn.)",
    }, {"Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${AlarmTopicName}"}),
    "TrailBucketAccessLogBucket": ("LogTrailBucketAccess", {
        "Type": "String",
        "Default": "",
        # <prefix>-<12-digit account>-<region of up to 15 characters> stays within 63.
        "AllowedPattern": "^$|^[a-z0-9][a-z0-9-]{0,32}[a-z0-9]$",
        "Description": "Optional server access log bucket of the trail bucket, named <prefix>-<AccountId>-<Region> in "
                       "every account (the Landing Zone Accelerator's is aws-accelerator-s3-access-logs); it must let "
                       "logging.s3.amazonaws.com write. Empty = the trail bucket logs its own access under "
                       "access-logs/. (template.yaml: TrailBucketAccessLogBucket.)",
    }, {"Fn::Sub": "${TrailBucketAccessLogBucketPrefix}-${AWS::AccountId}-${AWS::Region}"}),
}
assert set(NEUTRAL) == set(limits.ACCOUNT_SPECIFIC_PARAMETERS)


def renamed(node, old, new):
    """Conditions and Rules: a reference to `old` becomes one to `new`."""
    if isinstance(node, dict):
        if node == {"Ref": old}:
            return {"Ref": new}
        return {k: renamed(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [renamed(v, old, new) for v in node]
    return node


def valued(node, old, condition, value, guarded=False):
    """Resources and Outputs: a reference to `old` becomes the value built in the account, under the
    condition that the parameter is given (directly inside the true branch of an Fn::If of it)."""
    if isinstance(node, dict):
        if node == {"Ref": old}:
            return value if guarded else {"Fn::If": [condition, value, ""]}
        if list(node) == ["Fn::If"] and node["Fn::If"][0] == condition:
            name, yes, no = node["Fn::If"]
            return {"Fn::If": [name, valued(yes, old, condition, value, True),
                               valued(no, old, condition, value, guarded)]}
        if list(node) == ["Fn::Sub"] and old in json.dumps(node):
            raise SystemExit(f"scripts/stackset_template.py: a !Sub names {old}; give it a form here")
        return {k: valued(v, old, condition, value, guarded) for k, v in node.items()}
    if isinstance(node, list):
        return [valued(v, old, condition, value, guarded) for v in node]
    return node


def neutral(node, section="Resources"):
    """A node of template.yaml as the StackSet template has it (no parameter naming one account)."""
    for old, (condition, _, value) in NEUTRAL.items():
        new = limits.ACCOUNT_SPECIFIC_PARAMETERS[old]
        if section in ("Conditions", "Rules"):
            node = renamed(node, old, new)
        else:
            node = valued(node, old, condition, value)
    return node


def account_neutral(t):
    """Replaces template.yaml's account-specific parameters (NEUTRAL), in place."""
    params = {}
    for name, definition in t["Parameters"].items():
        if name in NEUTRAL:
            params[limits.ACCOUNT_SPECIFIC_PARAMETERS[name]] = NEUTRAL[name][1]
        else:
            params[name] = definition
    t["Parameters"] = params
    for section in ("Conditions", "Rules", "Resources", "Outputs"):
        if section in t:
            t[section] = neutral(t[section], section)
    for group in t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]:
        group["Parameters"] = [limits.ACCOUNT_SPECIFIC_PARAMETERS.get(p, p) for p in group["Parameters"]]
    labels = t["Metadata"]["AWS::CloudFormation::Interface"].get("ParameterLabels", {})
    for old in list(labels):
        if old in NEUTRAL:
            labels[limits.ACCOUNT_SPECIFIC_PARAMETERS[old]] = labels.pop(old)


def derive(template):
    t = copy.deepcopy(template)
    del t["Transform"]
    t["Description"] = t["Description"] + " Organization rollout (service-managed StackSet)."
    t["Parameters"]["ArtifactBucketPrefix"] = {
        "Type": "String",
        "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,40}[a-z0-9]$",
        "Description": "Code artifacts are read from the bucket <ArtifactBucketPrefix>-<region> of the deployment region.",
    }
    t["Parameters"]["ArtifactKey"] = {
        "Type": "String",
        "AllowedPattern": "^[A-Za-z0-9/._-]+\\.zip$",
        "Description": "Key of the function's zip in that bucket; it names the code's digest.",
    }
    t["Metadata"].pop("AWS::ServerlessRepo::Application", None)
    groups = t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    groups.append({"Label": {"default": "Code artifact"}, "Parameters": ["ArtifactBucketPrefix", "ArtifactKey"]})

    t["Resources"]["ConnectorFunction"] = lambda_function(t["Resources"]["ConnectorFunction"])
    account_neutral(t)
    return t


class Dumper(yaml.SafeDumper):
    """Block style, but a list of plain values (actions, ARNs, allowed values, an Fn::GetAtt) on one
    line, as a person writes it: CloudFormation takes a TemplateBody of at most
    limits.TEMPLATE_BODY_MAX bytes, and a block list spends a line and its indentation on each item."""


def _sequence(dumper, data):
    flow = bool(data) and all(isinstance(v, (str, int, float, bool)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


Dumper.add_representer(list, _sequence)


def render(source=SOURCE):
    with open(source) as f:
        template = plain(cfn_yaml.loads(f.read(), source))
    return HEADER + yaml.dump(derive(template), Dumper=Dumper, sort_keys=False, width=120, allow_unicode=True)


def main():
    text = render()
    size = len(text.encode())
    if size > limits.TEMPLATE_BODY_MAX:
        sys.exit(f"deploy/stackset.yaml would be {size} bytes: CloudFormation takes a TemplateBody of at most "
                 f"{limits.TEMPLATE_BODY_MAX} (scripts/limits.py)")
    if "--check" in sys.argv[1:]:
        with open(TARGET) as f:
            if f.read() != text:
                sys.exit("deploy/stackset.yaml is stale: run .venv/bin/python scripts/stackset_template.py")
        return
    with open(TARGET, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
