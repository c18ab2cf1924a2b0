"""A failed creation leaves nothing, a bucket only where a trail will be created in it, and no
StackSet parameter that names one account (SPEC "Deployment", issue 16)."""

import copy
import re

import pytest

import limits
import lint_policies
from test_templates import SAM_T, STACKSET_T, TEMPLATES

# What outlives a rollback: a DeletionPolicy that keeps the resource, or the connector itself
# (its Delete leaves the secret in its recovery window).
KEEPING = {"Retain", "RetainExceptOnCreate", "Snapshot"}


def references(node):
    """Logical ids a node refers to (Ref, GetAtt, ${…} in Sub)."""
    if isinstance(node, dict):
        if list(node) == ["Ref"]:
            return {node["Ref"]}
        if list(node) == ["Fn::GetAtt"]:
            target = node["Fn::GetAtt"]
            return {target[0] if isinstance(target, list) else target.split(".")[0]}
        found = set()
        if list(node) == ["Fn::Sub"]:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
        for value in node.values():
            found |= references(value)
        return found
    if isinstance(node, list):
        return set().union(*map(references, node)) if node else set()
    return set()


def dependencies(template):
    resources = template["Resources"]
    graph = {}
    for lid, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        graph[lid] = (set(depends) | references(resource.get("Properties", {}))) & set(resources)
    return graph


def ancestors(graph, lid):
    seen, todo = set(), [lid]
    while todo:
        for parent in graph[todo.pop()]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


@TEMPLATES
def test_the_check_has_exactly_the_connectors_properties(template):
    r = copy.deepcopy(template["Resources"])
    check, connector = r["PropertiesCheck"], r["Connector"]
    assert check["Type"] == "Custom::CloudAppSecurityConnectorCheck"
    assert check["Properties"]["ServiceToken"] == connector["Properties"]["ServiceToken"]
    assert check["Properties"].pop("ValidateOnly") == "true"
    # The bucket is made after the check: a stand-in under the same condition, empty when Connector's is.
    stand_in = check["Properties"].pop("TrailBucket")
    real = connector["Properties"]["TrailBucket"]
    assert stand_in["Fn::If"][0] == real["Fn::If"][0] == "MayCreateTrail" and stand_in["Fn::If"][2] == real["Fn::If"][2] == ""
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", stand_in["Fn::If"][1])
    assert check["Properties"] == {k: v for k, v in connector["Properties"].items() if k != "TrailBucket"}


@TEMPLATES
def test_nothing_that_outlives_a_rollback_is_made_before_the_check_succeeds(template):
    graph = dependencies(template)
    kept = [lid for lid, r in template["Resources"].items()
            if r.get("DeletionPolicy") in KEEPING or r["Type"] == "Custom::CloudAppSecurityConnector"]
    assert {"TrailBucket", "TrailBucketPolicy", "Connector"} <= set(kept)
    for lid in kept:
        assert "PropertiesCheck" in ancestors(graph, lid), f"{lid} can be made before PropertiesCheck succeeds"
    # The check itself depends on nothing that is kept.
    assert not ancestors(graph, "PropertiesCheck") & set(kept)
    for lid, r in template["Resources"].items():
        if r["Type"] == "AWS::S3::Bucket":  # a kept bucket never blocks a rollback
            assert (r["DeletionPolicy"], r["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain"), lid
        assert r.get("DeletionPolicy") != "Retain", f"{lid}: Retain would outlive a failed creation"


def trail(template, mode):
    """(is the trail bucket created, the function's TrailMode, is its TrailBucket given)."""
    params = {"TrailMode": mode}
    created = lint_policies.evaluate_condition(template["Resources"]["TrailBucket"]["Condition"], template, params)
    props = template["Resources"]["Connector"]["Properties"]
    function_mode = lint_policies.resolve(props["TrailMode"], template, params)
    bucket_given = lint_policies.evaluate_condition(props["TrailBucket"]["Fn::If"][0], template, params)
    return created, function_mode, bucket_given


@TEMPLATES
def test_a_trail_bucket_only_where_a_trail_may_be_created_in_it(template):
    parameter = template["Parameters"]["TrailMode"]
    assert parameter["AllowedValues"] == ["Reuse", "ReuseOrCreate", "Create", "Off"]
    # Control Tower enrolls every account with the organization trail: the rollout's first run
    # reuses it and creates nothing.
    assert parameter["Default"] == "Reuse" and "Control Tower" in parameter["Description"]
    assert trail(template, "Reuse") == (False, "Reuse", False)
    assert trail(template, "ReuseOrCreate") == (True, "Reuse", True)
    assert trail(template, "Create") == (True, "Create", True)
    assert trail(template, "Off") == (False, "Off", False)


def test_no_stackset_parameter_names_one_account():
    assert set(limits.ACCOUNT_SPECIFIC_PARAMETERS) <= set(SAM_T["Parameters"])
    assert set(limits.REFUSED_STACK_SET_PARAMETERS) == set(limits.ACCOUNT_SPECIFIC_PARAMETERS)
    assert set(limits.ORGANIZATION_WIDE_PARAMETERS) <= set(STACKSET_T["Parameters"])
    assert not set(limits.ORGANIZATION_WIDE_PARAMETERS) & set(limits.REFUSED_STACK_SET_PARAMETERS)
    for name, definition in STACKSET_T["Parameters"].items():
        assert name not in limits.REFUSED_STACK_SET_PARAMETERS, name
        if name in limits.ORGANIZATION_WIDE_PARAMETERS:
            # The security account's bus and operator: one ARN for every account, by design.
            assert definition["Default"] == "" and STACKSET_T["Parameters"][name] == SAM_T["Parameters"][name], name
            continue
        pattern = definition.get("AllowedPattern", "")
        assert "[0-9]{12}" not in pattern and not name.endswith("Arn"), f"{name}: names one account"
    for old, new in limits.ACCOUNT_SPECIFIC_PARAMETERS.items():
        definition = STACKSET_T["Parameters"][new]
        assert definition["Default"] == "" and f"template.yaml: {old}" in definition["Description"], new


@pytest.mark.parametrize("name,value", [
    ("PermissionsBoundaryName", "team/boundary"), ("SecretKmsKeyAlias", "alias/cas"),
    ("TrailKmsKeyAlias", "alias/org/cloudtrail"), ("AlarmTopicName", "security-alarms"),
    ("TrailBucketAccessLogBucketPrefix", "aws-accelerator-s3-access-logs"),
])
def test_the_stackset_forms_accept_what_every_account_has(name, value):
    pattern = re.compile(STACKSET_T["Parameters"][name]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(value)
    assert not pattern.fullmatch("arn:aws:iam::123456789012:policy/x")
