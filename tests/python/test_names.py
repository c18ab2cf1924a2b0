"""Every explicit resource name fits its service's limit for every valid stack name (SPEC
"Deployment"): template.yaml for a 128-character SAM stack name, deploy/stackset.yaml for a
StackSet instance's StackSet-<set name>-<uuid> with the longest set name the rollout accepts
(scripts/limits.py). Each template is resolved as CloudFormation runs it (template.yaml after the
SAM transform) with the parameters that go into names at their longest; every property called
Name or *Name is measured. Run with -rA to see the longest name of each template and its limit."""

import pytest

import control_tower
import fleet
import limits
import lint_policies

# (resource type, property) -> the most characters the service accepts.
LIMITS = {
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::SecretsManager::Secret", "Name"): 512,
    ("AWS::IAM::Policy", "PolicyName"): 128,
    ("AWS::IAM::ManagedPolicy", "ManagedPolicyName"): 128,
    ("AWS::IAM::Role", "RoleName"): 64,
    ("AWS::IAM::Role", "PolicyName"): 128,  # an inline policy of the role
    ("AWS::S3::Bucket", "BucketName"): 63,
    ("AWS::S3::Bucket", "DestinationBucketName"): 63,  # LoggingConfiguration: a bucket's name
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::CloudWatch::Alarm", "MetricName"): 255,
    ("AWS::CloudWatch::Alarm", "Name"): 255,  # a dimension's name
    ("AWS::Events::Rule", "Name"): 64,
    ("AWS::SNS::Topic", "TopicName"): 256,
    ("AWS::SNS::Topic", "DisplayName"): 100,
    ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::Lambda::EventInvokeConfig", "FunctionName"): 140,  # a name or ARN of the function
    ("AWS::Lambda::Permission", "FunctionName"): 140,
    # The custom resources: the trail's name (CloudTrail: 128) and the connector's name in Cloud App
    # Security (the parameter's own bound; Microsoft documents none).
    ("Custom::CloudAppSecurityConnector", "TrailName"): 128,
    ("Custom::CloudAppSecurityConnector", "ConnectorName"): 64,
    ("Custom::CloudAppSecurityConnectorCheck", "TrailName"): 128,
    ("Custom::CloudAppSecurityConnectorCheck", "ConnectorName"): 64,
}
# A region name of 15 characters: longer than any region so far (ap-southeast-5 has 14).
LONGEST_REGION = "ap-southeast-15"
STACK_NAMES = {
    "template.yaml": "s" * limits.STACK_NAME_MAX,
    "deploy/stackset.yaml": limits.stack_set_instance_stack_name("s" * limits.STACK_SET_NAME_MAX),
}
# Every parameter that goes into a name, at its longest (a parameter not listed here takes its default).
LONGEST = {
    "ConnectorName": "c" * 64,
    "TrailName": "t" * 128,
    "TrailBucketAccessLogBucket": "b" * 63,
    "TrailBucketAccessLogBucketPrefix": "p" * 34,
    "ApiToken": "x",
    # Makes the fleet's reader role, whose name is fixed (fleet.py assumes it by name).
    "StatusReaderPrincipalArn": f"arn:aws:iam::{lint_policies.SECURITY_ACCOUNT}:role/fleet-operator",
    "OrganizationId": "o-exampleorg01",
}
SCENARIOS = {
    "longest names, a trail bucket logging to the deployer's bucket": {**LONGEST, "TrailMode": "Create"},
    "defaults, a trail bucket logging to itself": {"TrailMode": "ReuseOrCreate"},
}
REPORT = {}


def names(node, path=()):
    """(property path, value) of every key called Name or ending in Name, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("Name") and not isinstance(value, (dict, list)):
                yield path + (key,), value
            else:
                yield from names(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from names(value, path + (i,))


def resolved_names(label, monkeypatch):
    """(resource, type, property path, value, scenario) of every name, resolved."""
    template = control_tower.load(label)
    stack = STACK_NAMES[label]
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::StackName", stack)
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::Region", LONGEST_REGION)
    monkeypatch.setitem(lint_policies.PSEUDO, "AWS::StackId", f"arn:aws:cloudformation:{LONGEST_REGION}:"
                                                          f"{lint_policies.ACCOUNT}:stack/{stack}/{limits.STACK_SET_INSTANCE_UUID}")
    for scenario, params in SCENARIOS.items():
        params = {k: v for k, v in params.items() if k in template["Parameters"]}
        for lid, doc in control_tower.hook_documents(label, template, params).items():
            (rtype, body), = doc.items()
            for path, value in names(body["resourceProperties"]):
                yield lid, rtype, path, str(value), scenario


@pytest.mark.parametrize("label", list(STACK_NAMES))
def test_every_explicit_name_fits_its_limit_for_the_longest_stack_name(label, monkeypatch):
    found = list(resolved_names(label, monkeypatch))
    assert found
    problems, longest, tightest = [], None, None
    for lid, rtype, path, value, scenario in found:
        limit = LIMITS.get((rtype, path[-1]))
        where = f"{lid}.{'.'.join(map(str, path))} ({rtype})"
        if limit is None:
            problems.append(f"{where}: no limit known for this name: add it to LIMITS in tests/python/test_names.py")
            continue
        if len(value) > limit:
            problems.append(f"{where}: {len(value)} characters, limit {limit} ({scenario}): {value}")
        if longest is None or len(value) > len(longest[1]):
            longest = (where, value, limit)
        if tightest is None or len(value) - limit > len(tightest[1]) - tightest[2]:
            tightest = (where, value, limit)
    where, value, limit = longest
    REPORT[label] = (f"{label}: stack name {len(STACK_NAMES[label])} characters; longest name {where}: "
                     f"{len(value)} characters, limit {limit}; closest to its limit {tightest[0]}: "
                     f"{len(tightest[1])} of {tightest[2]}")
    print(REPORT[label])
    assert not problems, "\n".join(problems) + f"\n{REPORT[label]}"


# Named on purpose: scripts/fleet.py assumes the reader role by its name in every account (opt-in;
# IAM names are account-wide, so one stack per account may make it).
FIXED_NAMES = {("StatusReaderRole", "RoleName"): fleet.READER_ROLE_NAME}


@pytest.mark.parametrize("label", list(STACK_NAMES))
def test_the_function_and_the_role_are_named_by_cloudformation(label, monkeypatch):
    template = control_tower.load(label)
    for rtype, prop in (("AWS::Lambda::Function", "FunctionName"), ("AWS::IAM::Role", "RoleName"),
                        ("AWS::IAM::ManagedPolicy", "ManagedPolicyName"), ("AWS::CloudWatch::Alarm", "AlarmName"),
                        ("AWS::Events::Rule", "Name"), ("AWS::SNS::Topic", "TopicName")):
        for lid, resource in template["Resources"].items():
            if resource["Type"] == rtype:
                if (lid, prop) in FIXED_NAMES:
                    assert resource["Properties"][prop] == FIXED_NAMES[(lid, prop)], lid
                    assert resource.get("Condition"), f"{lid}: a fixed name, so opt-in"
                    continue
                assert prop not in resource.get("Properties", {}), f"{lid}: {prop} (unbounded by the stack name)"


def test_the_stack_set_name_limit_is_what_the_rollout_checks():
    assert limits.STACK_SET_NAME_MAX == 45
    assert len(STACK_NAMES["deploy/stackset.yaml"]) == 9 + 45 + 1 + 36 <= limits.STACK_NAME_MAX
    assert limits.stack_set_name_problem("cloud-app-security-connector") is None
    assert limits.stack_set_name_problem("a" * 45) is None
    assert "at most 45" in limits.stack_set_name_problem("a" * 46)
    assert limits.stack_set_name_problem("1abc") and limits.stack_set_name_problem("a_b")
