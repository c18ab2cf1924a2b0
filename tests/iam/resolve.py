"""Turns the templates and tests/iam/cases.yaml into plain JSON for the IAM simulator's runner.

The simulator (tests/iam/simulate.mjs) reads plain policy JSON and concrete requests. This script
resolves the role's two documents, the connector user's boundary and the fleet's reader role's
policy for every parameter scenario of both templates — with scripts/lint_policies.py's resolver,
scenarios and placeholders, so the simulator and parliament see the same documents — and expands
each case of the table into one request per template and scenario it applies to, its ${…}
placeholders resolved as !Sub would.

Writes OUT/policies.json ({template: {scenario: {role, role secrets, boundary, reader, reader trust,
function}}}: function is the function's resource policy, from the stack's AWS::Lambda::Permission
resources; reader and reader trust, the reader role's policy and trust policy, only where the
scenario makes the role) and OUT/cases.json (one entry per case, each with its kind of principal
and its runs).

Usage: resolve.py OUT_DIR
"""

import json
import os
import sys

import yaml
from cfnlint.decode import cfn_yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import lint_policies  # noqa: E402
import stackset_template  # noqa: E402

CASES = os.path.join(HERE, "cases.yaml")
ROLE_NAME = "cloud-app-security-connector/cas-ConnectorRole-EXAMPLE"
USER_NAME = "cloud-app-security/CloudAppSecurity"
# The fleet's reader role: its name and path are the template's (a resource of its own, named).
READER_PATH = "cloud-app-security-connector/cloud-app-security-connector-reader"
# What case placeholders may name besides parameters, pseudo parameters and the stack's resources.
# Values are intrinsics, resolved per template and scenario.
LOCALS = {
    "Boundary": {"Fn::If": ["OwnBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "ConnectorUserBoundary"}]},
    "RoleArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{ROLE_NAME}"},
    "UserArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:user/{USER_NAME}"},
    "SecretArn": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                             ":secret:cloud-app-security/aws-${AWS::AccountId}-AbCdEf"},
    "TrailArn": {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${TrailName}"},
    "OtherStackId": {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}"
                                ":stack/other/11111111-1111-1111-1111-111111111111"},
    "SecretsManagerHost": {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"},
    "ReaderRoleArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{READER_PATH}"},
    # The account of StatusReaderPrincipalArn (the organization's security account).
    "OperatorAccount": {"Fn::Select": [4, {"Fn::Split": [":", {"Ref": "StatusReaderPrincipalArn"}]}]},
}
# What the function's resource policy names besides what scripts/lint_policies.py resolves.
lint_policies.GETATT.setdefault("KeyCheckSchedule.Arn", f"arn:aws:events:{lint_policies.REGION}:"
                                                        f"{lint_policies.ACCOUNT}:rule/cas-KeyCheckSchedule-EXAMPLE")
OURS = "ours"  # the `tags: ours` shorthand: the three ownership tags this stack sets


def load(path):
    with open(path) as f:
        return stackset_template.plain(cfn_yaml.loads(f.read(), path))


def policies(template):
    """{scenario: {policy: resolved document}}, only where the policy exists in that scenario: the
    identity policies and boundary parliament sees, the reader role's trust policy ("reader
    trust", the resource policy of sts:AssumeRole on it), and the function's resource policy
    ("function")."""
    out = {}
    trust = {"reader trust": ("StatusReaderRole", "AssumeRolePolicyDocument")}
    for scenario, policy, document in [*lint_policies.documents(template), *lint_policies.documents(template, trust)]:
        out.setdefault(scenario, {})[policy] = document
    for scenario, params in lint_policies.SCENARIOS.items():
        out.setdefault(scenario, {})["function"] = function_policy(template, params)
    return out


def function_policy(template, params):
    """The function's resource policy as Lambda writes it from the stack's AWS::Lambda::Permission
    resources: a service principal, SourceAccount as StringEquals and SourceArn as ArnLike on
    AWS:SourceAccount / AWS:SourceArn (Lambda's API reference: a StringLike comparison; the same
    for these ARNs)."""
    statements = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Permission":
            continue
        props = {k: lint_policies.resolve(v, template, params) for k, v in resource["Properties"].items()}
        condition = {}
        if "SourceAccount" in props:
            condition["StringEquals"] = {"AWS:SourceAccount": props["SourceAccount"]}
        if "SourceArn" in props:
            condition["ArnLike"] = {"AWS:SourceArn": props["SourceArn"]}
        statements.append({"Sid": logical_id, "Effect": "Allow", "Principal": {"Service": props["Principal"]},
                           "Action": props["Action"], "Resource": props["FunctionName"],
                           **({"Condition": condition} if condition else {})})
    return {"Version": "2012-10-17", "Statement": statements}


def substitute(node, template, params):
    """Every string in a case node, its ${…} resolved as !Sub would in this scenario."""
    if isinstance(node, dict):
        return {substitute(k, template, params): substitute(v, template, params) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, template, params) for v in node]
    if isinstance(node, str) and "${" in node:
        return lint_policies.resolve({"Fn::Sub": [node, LOCALS]}, template, params)
    return node


def ownership_tags():
    """The tags this stack puts on everything it makes (SPEC "Identity and ownership")."""
    return {
        "cloud-app-security:stack-id": "${AWS::StackId}",
        "cloud-app-security:logical-id": "Connector",
        "cloud-app-security:physical-id": "${UserArn}",
    }


def tag_set(tags):
    """A case's tag map, `ours` standing for the ownership tags (and `ours` + extra keys)."""
    if tags == OURS:
        return ownership_tags()
    tags = dict(tags or {})
    if tags.pop(OURS, False):
        return {**ownership_tags(), **tags}
    return tags


def context(case):
    """The request context IAM would send: for a principal of another account, its ARN
    (aws:PrincipalArn); the resource's tags (aws:ResourceTag/…), the request's tags
    (aws:RequestTag/… and aws:TagKeys), the keys an untag names (aws:TagKeys), then the case's own
    keys."""
    out = {}
    if kind(case) == "outside":
        out["aws:PrincipalArn"] = case["principal"]
    for key, value in tag_set(case.get("resource_tags")).items():
        out[f"aws:ResourceTag/{key}"] = value
    request_tags = tag_set(case.get("request_tags"))
    for key, value in request_tags.items():
        out[f"aws:RequestTag/{key}"] = value
    if request_tags:
        out["aws:TagKeys"] = list(request_tags)
    if "tag_keys" in case:
        out["aws:TagKeys"] = list(case["tag_keys"])
    out.update(case.get("context") or {})
    return out


# What each kind of principal needs in a scenario: the user its boundary, the reader role and a
# principal of another account (which can only assume the reader role) the reader role.
NEEDS = {"user": "boundary", "reader": "reader", "outside": "reader trust"}


def applies(case, label, scenario, docs):
    wanted = case.get("templates", "both")
    if wanted != "both" and label not in wanted:
        return False
    if case.get("scenarios", "all") != "all" and scenario not in case["scenarios"]:
        return False
    return NEEDS.get(kind(case), "function") in docs


def kind(case):
    """role (the connector's, the default), user (the connector user), reader (the fleet's reader
    role), service (a service principal invoking the function) or outside (a principal of another
    account, named by its ARN: the fleet's operator, or another)."""
    named = case.get("principal", "role")
    if named.endswith(".amazonaws.com"):
        return "service"
    if named.startswith(("arn:", "${")):
        return "outside"
    return named


def principal(case):
    """The principal's ARN, or a service principal as the case names it."""
    named = case.get("principal", "role")
    return {"role": "${RoleArn}", "user": "${UserArn}", "reader": "${ReaderRoleArn}"}.get(named, named)


def runs(case, templates, resolved):
    """One concrete request per template and scenario the case applies to."""
    for label, template in templates.items():
        for scenario, docs in resolved[label].items():
            if not applies(case, label, scenario, docs):
                continue
            params = lint_policies.SCENARIOS[scenario]
            request = substitute({
                "principal": principal(case),
                "action": case["action"],
                "resource": case["resource"],
                "context": context(case),
            }, template, params)
            if not request["resource"] or "" in request["context"].values():
                raise SystemExit(f"case {case['name']!r}: a placeholder is empty in {label}, {scenario}")
            yield {"template": label, "scenario": scenario, "accountId": lint_policies.ACCOUNT, **request}


REQUIRED = {"name", "action", "resource", "expect", "why"}
OPTIONAL = {"templates", "scenarios", "principal", "resource_tags", "request_tags", "tag_keys", "context",
            "unsafe_keeps", "known_failure"}


def check(case):
    """A case names what it needs and nothing unknown (a stray comma in a flow map makes a key)."""
    missing, unknown = REQUIRED - set(case), set(case) - REQUIRED - OPTIONAL
    if missing or unknown or case["expect"] not in ("Allowed", "Denied"):
        raise SystemExit(f"case {case.get('name')!r}: missing {sorted(missing)}, unknown {sorted(unknown)}; "
                         f"expect is Allowed or Denied")
    if kind(case) not in ("role", "user", "reader", "service", "outside"):
        raise SystemExit(f"case {case['name']!r}: principal is role, user, reader, a service principal "
                         f"(….amazonaws.com) or the ARN of a principal of another account")
    if kind(case) == "outside" and case["action"] != "sts:AssumeRole":
        raise SystemExit(f"case {case['name']!r}: a principal of another account is simulated only assuming the "
                         f"reader role (its trust policy decides)")
    scenarios = case.get("scenarios", "all")
    if scenarios != "all" and not set(scenarios) <= set(lint_policies.SCENARIOS):
        raise SystemExit(f"case {case['name']!r}: no scenario {sorted(set(scenarios) - set(lint_policies.SCENARIOS))}")


def main(out_dir):
    templates = {label: load(path) for label, path in lint_policies.TEMPLATES.items()}
    resolved = {label: policies(t) for label, t in templates.items()}
    with open(CASES) as f:
        table = yaml.safe_load(f)["cases"]
    expanded = []
    for case in table:
        check(case)
        case_runs = list(runs(case, templates, resolved))
        if not case_runs:
            raise SystemExit(f"case {case['name']!r} applies to no template and scenario")
        expanded.append({k: case.get(k) for k in ("name", "expect", "why", "known_failure", "unsafe_keeps")}
                        | {"kind": kind(case), "runs": case_runs})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "policies.json"), "w") as f:
        json.dump(resolved, f, indent=1)
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(expanded, f, indent=1)
    print(f"resolved {sum(len(s) for s in resolved.values())} template scenarios, "
          f"{len(expanded)} cases, {sum(len(c['runs']) for c in expanded)} requests")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
