"""Derives the StackSet template (deploy/stackset.yaml) from template.yaml.

Service-managed StackSets refuse the SAM transform, and Lambda reads its code only from a bucket
in its own region. The StackSet template is therefore template.yaml with the function written
out as AWS::Lambda::Function, its code read from <ArtifactBucketPrefix>-<region>/<ArtifactKey>,
and CodeVersion set to the artifact key (which names the code's digest). Everything else — the
role's statements, the boundary, the bucket, the resource's properties, the parameters — is the
same, which tests/templates/test_templates.py checks.

Usage: stackset_template.py [--check]   (--check: exit 1 if deploy/stackset.yaml is stale)
"""

import copy
import os
import sys

import yaml
from cfnlint.decode import cfn_yaml

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
    groups = t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    groups.append({"Label": {"default": "Code artifact"}, "Parameters": ["ArtifactBucketPrefix", "ArtifactKey"]})

    sam = t["Resources"]["ConnectorFunction"]["Properties"]
    t["Resources"]["ConnectorFunction"] = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": sam["FunctionName"],
            "Description": sam["Description"],
            "Code": {
                "S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
                "S3Key": {"Ref": "ArtifactKey"},
            },
            "Handler": sam["Handler"],
            "Runtime": sam["Runtime"],
            "Architectures": sam["Architectures"],
            "MemorySize": sam["MemorySize"],
            "Timeout": sam["Timeout"],
            "Role": sam["Role"],
            "LoggingConfig": sam["LoggingConfig"],
            "Environment": sam["Environment"],
        },
    }
    t["Resources"]["Connector"]["Properties"]["CodeVersion"] = {"Ref": "ArtifactKey"}
    return t


def render():
    with open(SOURCE) as f:
        template = plain(cfn_yaml.loads(f.read(), SOURCE))
    return HEADER + yaml.safe_dump(derive(template), sort_keys=False, width=120, allow_unicode=True)


def main():
    text = render()
    if "--check" in sys.argv[1:]:
        with open(TARGET) as f:
            if f.read() != text:
                sys.exit("deploy/stackset.yaml is stale: run .venv/bin/python scripts/stackset_template.py")
        return
    with open(TARGET, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
