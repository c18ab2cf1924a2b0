"""Control Tower proactive controls, as a CloudFormation hook would apply them.

A hook sees one resource at a time, its conditions evaluated and its intrinsics resolved to typed
values: run cfn-guard's Control Tower rules on the raw template and a `Ref` where a value is
compared fails falsely. So each template is resolved here, for its default parameters and the main
parameter scenarios (scripts/lint_policies.py's resolver, with placeholders for the stack's own
resources), template.yaml after the SAM transform (a hook sees AWS::Lambda::Function); every
resource the scenario creates is written as a hook document {Type: {resourceProperties: …}}, and
cfn-guard validates them all in one run.

The failures are compared with tests/control_tower_exceptions.yaml (rule, resource, the templates
and scenarios it applies to, reason, and the parameter that satisfies it where one exists): any
failure not listed fails the run, and so does a listed exception that no longer fails.

Usage: control_tower.py --cfn-guard BIN --rules DIR [--print]   (scripts/control-tower.sh installs both)
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import cfn_yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lint_policies  # noqa: E402
import stackset_template  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCEPTIONS = os.path.join(REPO, "tests", "control_tower_exceptions.yaml")
TEMPLATES = {
    "template.yaml": os.path.join(REPO, "template.yaml"),
    "deploy/stackset.yaml": os.path.join(REPO, "deploy", "stackset.yaml"),
    "deploy/artifact-bucket.yaml": os.path.join(REPO, "deploy", "artifact-bucket.yaml"),
    "deploy/fleet.yaml": os.path.join(REPO, "deploy", "fleet.yaml"),
}
# Values for parameters without a default.
REQUIRED = {
    "ArtifactBucketPrefix": "cas-artifacts",
    "ArtifactKey": "cloud-app-security-connector/0.3.0/0000.zip",
    "OrganizationId": "o-exampleorg01",
}
# The parameter values that change which resources exist or what they hold. Names a template does
# not have are ignored (the StackSet template names account-specific parameters differently).
CONNECTOR_SCENARIOS = {
    "defaults": {},
    "TrailMode=ReuseOrCreate": {"TrailMode": "ReuseOrCreate"},
    "TrailMode=Create": {"TrailMode": "Create"},
    "TrailMode=Off": {"TrailMode": "Off"},
    "all options": {
        **lint_policies.SCENARIOS["all options"],
        "TrailKmsKeyAlias": "alias/cloudtrail",
        "SecretKmsKeyAlias": "alias/secrets",
        "AlarmTopicArn": f"arn:aws:sns:{lint_policies.REGION}:{lint_policies.ACCOUNT}:alarms",
        "AlarmTopicName": "alarms",
        "TrailBucketAccessLogBucketPrefix": "access-logs",
        "EntraClientSecret": "secret",
    },
}
SCENARIOS = {
    "template.yaml": CONNECTOR_SCENARIOS,
    "deploy/stackset.yaml": CONNECTOR_SCENARIOS,
    "deploy/artifact-bucket.yaml": {"defaults": {}, "AccessLogBucket": {"AccessLogBucket": "access-logs-example"}},
    "deploy/fleet.yaml": {"defaults": {}, "AlarmTopicArn": {
        "AlarmTopicArn": f"arn:aws:sns:{lint_policies.REGION}:{lint_policies.SECURITY_ACCOUNT}:alarms"}},
}
CONTROL = re.compile(r"\[(CT\.[A-Z0-9]+\.PR\.\d+)\]")


def load(label):
    path = TEMPLATES[label]
    with open(path) as f:
        template = stackset_template.plain(cfn_yaml.loads(f.read(), path))
    if "Transform" in template:
        template = sam_transformed(template)
    return template


def sam_transformed(template):
    """template.yaml as CloudFormation runs it: after the SAM transform, intrinsics kept."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    for resource in template["Resources"].values():  # the transform wants an S3 URI, not a directory
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            resource["Properties"]["CodeUri"] = "s3://example-bucket/bootstrap.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    return translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {})


class Placeholders(dict):
    """What !Ref and !GetAtt of the stack's own resources resolve to: lint_policies' placeholders,
    and a made-up physical id or ARN for every other resource of the template."""

    def __init__(self, known, template, getatt):
        super().__init__(known)
        self.resources = {lid: r["Type"] for lid, r in template["Resources"].items()}
        self.getatt = getatt

    def _ours(self, key):
        return (key.split(".")[0] if self.getatt else key) in self.resources

    def __contains__(self, key):
        return dict.__contains__(self, key) or self._ours(key)

    def __missing__(self, key):
        if not self._ours(key):
            raise KeyError(key)
        if self.getatt:
            lid, _, attr = key.partition(".")
            if self.resources[lid] == "AWS::S3::Bucket" and attr == "Arn":
                return f"arn:aws:s3:::{lint_policies.STACK}-{lid.lower()}-example"
            return f"arn:aws:example:{lint_policies.REGION}:{lint_policies.ACCOUNT}:{lid.lower()}-{attr.lower()}"
        return f"{lint_policies.STACK}-{key.lower()}-example"


def hook_documents(label, template, params):
    """{logical id: hook document} of every resource the scenario creates."""
    params = {**REQUIRED, **params}
    saved = lint_policies.REFS, lint_policies.GETATT
    lint_policies.REFS = Placeholders(saved[0], template, getatt=False)
    lint_policies.GETATT = Placeholders(saved[1], template, getatt=True)
    try:
        docs = {}
        for lid, resource in template["Resources"].items():
            condition = resource.get("Condition")
            if condition and not lint_policies.evaluate_condition(condition, template, params):
                continue
            properties = lint_policies.resolve(resource.get("Properties", {}), template, params)
            docs[lid] = {resource["Type"]: {"resourceProperties": properties}}
        return docs
    finally:
        lint_policies.REFS, lint_policies.GETATT = saved


def failures(cfn_guard, rules, show=False):
    """{(template, scenario, resource, control)} that fail, and the resources checked."""
    checked = set()
    with tempfile.TemporaryDirectory() as data:
        names = {}
        for label in TEMPLATES:
            template = load(label)
            for scenario, params in SCENARIOS[label].items():
                params = {k: v for k, v in params.items() if k in template.get("Parameters", {})}
                for lid, doc in hook_documents(label, template, params).items():
                    name = f"{len(names):04d}.json"
                    names[name] = (label, scenario, lid)
                    checked.add((label, lid))
                    with open(os.path.join(data, name), "w") as f:
                        json.dump(doc, f, indent=1)
                    if show:
                        print(f"--- {label}, {scenario}: {lid}\n{json.dumps(doc, indent=1)}")
        run = subprocess.run([cfn_guard, "validate", "--data", data, "--rules", rules, "--structured",
                              "--output-format", "json", "--show-summary", "none"],
                             capture_output=True, text=True)
        if run.returncode not in (0, 19):  # 19: a rule failed
            sys.exit(f"cfn-guard failed ({run.returncode}): {run.stderr or run.stdout}")
        found = set()
        for report in json.loads(run.stdout):
            label, scenario, lid = names[os.path.basename(report["name"])]
            for entry in report.get("not_compliant", []):
                for control in set(CONTROL.findall(json.dumps(entry))):
                    found.add((label, scenario, lid, control))
    return found, checked


def load_exceptions(path=EXCEPTIONS):
    with open(path) as f:
        listed = yaml.safe_load(f)["exceptions"]
    for e in listed:
        unknown = set(e) - {"rule", "resource", "templates", "scenarios", "reason", "satisfied_by"}
        if unknown or not {"rule", "resource", "reason"} <= set(e) or len(e["reason"]) < 40:
            sys.exit(f"{path}: {e.get('rule')} {e.get('resource')}: needs rule, resource and a reason "
                     f"(unknown keys {sorted(unknown)})")
    return listed


def covers(exception, failure):
    label, scenario, lid, control = failure
    return (exception["rule"] == control and exception["resource"] == lid
            and label in exception.get("templates", list(TEMPLATES))
            and scenario in exception.get("scenarios", [scenario]))


def compare(found, listed):
    """(failures no exception covers, exceptions that cover no failure)."""
    unlisted = sorted(f for f in found if not any(covers(e, f) for e in listed))
    stale = [e for e in listed if not any(covers(e, f) for f in found)]
    return unlisted, stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfn-guard", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--print", action="store_true", help="show every resolved hook document")
    args = parser.parse_args(argv)
    found, checked = failures(args.cfn_guard, args.rules, show=args.print)
    listed = load_exceptions()
    unlisted, stale = compare(found, listed)
    for e in listed:
        hits = sorted({(f[0], f[1]) for f in found if covers(e, f)})
        if hits:
            where = "; ".join(f"{label} ({scenario})" for label, scenario in hits)
            fix = f" Satisfied by: {e['satisfied_by']}." if e.get("satisfied_by") else ""
            print(f"exception {e['rule']} {e['resource']}: {where} — {e['reason'].strip()}{fix}")
    for label, scenario, lid, control in unlisted:
        print(f"FAILS {control} {lid}: {label} ({scenario}) — fix it, or list it in "
              f"tests/control_tower_exceptions.yaml with its reason")
    for e in stale:
        print(f"STALE exception {e['rule']} {e['resource']}: no longer fails — remove it from "
              f"tests/control_tower_exceptions.yaml")
    scenarios = sum(len(s) for s in SCENARIOS.values())
    print(f"control tower: {len(checked)} resources of {len(TEMPLATES)} templates in {scenarios} scenarios; "
          f"{len(unlisted)} failure(s) not listed, {len(stale)} stale exception(s), "
          f"{len({(e['rule'], e['resource']) for e in listed})} accepted")
    return 1 if unlisted or stale else 0


if __name__ == "__main__":
    sys.exit(main())
