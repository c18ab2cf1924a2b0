"""Derives the StackSet template (deploy/stackset.yaml) from template.yaml.

Service-managed StackSets refuse the SAM transform, and Lambda reads its code only from a bucket
in its own region. The StackSet template is therefore template.yaml with the function written
out as AWS::Lambda::Function and its code read from <ArtifactBucketPrefix>-<region>/<ArtifactKey>.
Everything else — the role's statements, the boundary, the bucket, the resource's properties (the
release's CodeVersion included, so a release reaches every connector as an Update), the
parameters — is the same, which tests/python/test_templates.py checks. Resource Metadata is kept
(checkov skips and their reasons), except SAM's build settings; the Serverless Application
Repository's metadata is not (the StackSet template is not published there).

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
    return t


def render(source=SOURCE):
    with open(source) as f:
        template = plain(cfn_yaml.loads(f.read(), source))
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
