"""Rolls the connector out to every account of some organizational units: one service-managed
StackSet, one stack instance per account, in one region.

  rollout.py --region eu-west-1 --ou ou-ab12-xxxxxxxx --artifact-bucket-prefix my-cas-artifacts \\
             [--call-as DELEGATED_ADMIN] [--zip bootstrap.zip] [--parameter TrailMode=Reuse ...] \\
             [--parameters-file secret-parameters.json] [--dry-run]

Steps: build the arm64 zip (or take --zip), upload it to <prefix>-<region> under a key naming its
digest, create or update the StackSet (service-managed, auto-deployment on,
CAPABILITY_NAMED_IAM), add instances for the OUs in that region, wait, and report every
account's outcome. IAM is global: a second region would make two stacks fight over one IAM user,
so exactly one region is accepted. Service-managed StackSets never deploy to the management
account: deploy template.yaml there with SAM if it needs a connector.

Parameters. A run changes only the parameters it names: on an update, every parameter the
deployed StackSet already has and this run does not name is sent as UsePreviousValue, so a run
that ships new code keeps KeyVersion, ConnectorName, Connections, the API credentials and
everything else as they were. A parameter new in this template version takes its default unless
named. The run prints which parameters it changes.

NoEcho parameters (ApiToken, EntraClientSecret — whatever the template marks NoEcho) are never
taken from the command line (shell history, the process list) and never printed: set them in the
environment as CAS_PARAMETER_<Name>, or in a --parameters-file (a JSON object, or KEY=VALUE
lines). Any other parameter may come from those too; --parameter wins over the file, the file
over the environment.
"""

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "deploy", "stackset.yaml")
DONE = {"SUCCEEDED", "FAILED", "STOPPED"}
ENV_PREFIX = "CAS_PARAMETER_"
MASK = "****"
# Set by the rollout itself on every run.
ARTIFACT_PARAMETERS = ("ArtifactBucketPrefix", "ArtifactKey")
DEFAULT_MAX_CONCURRENT_PERCENTAGE = 25

# With the call back on, every account's Create registers the connector at one Cloud App Security
# tenant, which admits about 30 requests a minute (docs/cloud-app-security-api.md). A connector
# waits out the rate limit only within its function's 300 s timeout, so the accounts deploying at
# the same time must fit into what the tenant admits in 300 s:
#   30 requests/minute x 5 minutes                                   = 150 requests
#   halved: a Create may be followed by its rollback's Delete (one more request), and
#   rejected (429) attempts count against the limit too               =  75 accounts
#   20 % kept for the tenant's other clients and for retries          =  60 accounts
TENANT_REQUESTS_PER_MINUTE = 30
FUNCTION_TIMEOUT_MINUTES = 5
CALL_BACK_MAX_CONCURRENT_COUNT = int(TENANT_REQUESTS_PER_MINUTE * FUNCTION_TIMEOUT_MINUTES / 2 * 0.8)


def usage_error(message):
    print(f"rollout.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack-set-name", default="cloud-app-security-connector")
    p.add_argument("--region", action="append", required=True,
                   help="the one region of the stack instances (and of the artifact bucket)")
    p.add_argument("--ou", action="append", required=True, help="organizational unit id (repeatable)")
    p.add_argument("--artifact-bucket-prefix", required=True, help="bucket <prefix>-<region> holds the code")
    p.add_argument("--call-as", choices=["SELF", "DELEGATED_ADMIN"], default="SELF",
                   help="SELF from the management account; DELEGATED_ADMIN from a member account registered as a "
                        "delegated administrator for CloudFormation StackSets (passed to every StackSet call)")
    p.add_argument("--zip", help="an already built bootstrap zip (default: build it with cargo lambda)")
    p.add_argument("--template", default=TEMPLATE, help="the StackSet template (default: deploy/stackset.yaml)")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="a StackSet template parameter to set (repeatable; not for NoEcho parameters)")
    p.add_argument("--parameters-file", metavar="FILE",
                   help="parameters to set, NoEcho ones included: a JSON object or KEY=VALUE lines")
    p.add_argument("--max-concurrent-percentage", type=int,
                   help=f"accounts deployed at once, in percent (default {DEFAULT_MAX_CONCURRENT_PERCENTAGE}; "
                        "not used while the call back is on)")
    p.add_argument("--max-concurrent-count", type=int,
                   help="accounts deployed at once; overrides the cap the call back sets "
                        f"({CALL_BACK_MAX_CONCURRENT_COUNT}, see README)")
    p.add_argument("--failure-tolerance-percentage", type=int, default=10)
    p.add_argument("--poll-seconds", type=float, default=15)
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help=argparse.SUPPRESS)
    p.add_argument("--dry-run", action="store_true",
                   help="read the deployed StackSet if credentials allow, print every other call instead of making it")
    args = p.parse_args(argv)
    if len(args.region) != 1:
        p.error("exactly one --region: IAM is global, and two stack instances in one account would fight over "
                "the same IAM user (the trail is multi-region anyway)")
    args.region = args.region[0]
    for item in args.parameter:
        if "=" not in item:
            p.error(f"--parameter {item!r}: expected KEY=VALUE")
    if args.max_concurrent_percentage is not None and args.max_concurrent_count is not None:
        p.error("--max-concurrent-percentage and --max-concurrent-count exclude each other")
    return args


# --- the template's parameters -------------------------------------------------------------------

def load_template(path):
    """The template's text and its Parameters section (order kept)."""
    with open(path) as f:
        body = f.read()
    return body, parse_parameters(body)


def parse_parameters(body):
    """A template's Parameters section: YAML (short-form tags too) or JSON."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def short_form(loader, suffix, node):  # !Ref, !Sub, ... in a hand-written template
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)

    Loader.add_multi_constructor("!", short_form)
    return (yaml.load(body, Loader=Loader) or {}).get("Parameters") or {}


def is_no_echo(declaration):
    return str(declaration.get("NoEcho", "false")).lower() == "true"


def read_parameters_file(path):
    """A JSON object {"Key": "value"} (or CloudFormation's [{"ParameterKey", "ParameterValue"}]), or
    KEY=VALUE lines (blank lines and # comments ignored)."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} is readable by others than its owner (chmod 600 it)", file=sys.stderr)
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith(("{", "[")):
        data = json.loads(text)
        if isinstance(data, list):
            data = {item["ParameterKey"]: item["ParameterValue"] for item in data}
        return {str(k): str(v) for k, v in data.items()}
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            usage_error(f"{path}:{number}: expected KEY=VALUE")  # the line itself may be a secret
        key, value = line.split("=", 1)
        values[key.strip()] = value
    return values


def given_parameters(args, declared):
    """The values this run sets: {key: value}. Sources, later ones winning: the environment
    (CAS_PARAMETER_<Key>), --parameters-file, --parameter (never a NoEcho one)."""
    given = {}
    for key in declared:
        if ENV_PREFIX + key in os.environ:
            given[key] = os.environ[ENV_PREFIX + key]
    if args.parameters_file:
        given.update(read_parameters_file(args.parameters_file))
    for item in args.parameter:
        key, value = item.split("=", 1)
        if key in declared and is_no_echo(declared[key]):
            usage_error(f"--parameter {key}=…: {key} is NoEcho and must not be on a command line (shell history, "
                        f"the process list); set {ENV_PREFIX}{key} in the environment or put it in --parameters-file")
        given[key] = value
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        usage_error(f"not parameters of {os.path.relpath(args.template)}: {', '.join(unknown)}")
    reserved = sorted(k for k in given if k in ARTIFACT_PARAMETERS)
    if reserved:
        usage_error(f"{', '.join(reserved)} are set by the rollout itself (--artifact-bucket-prefix, the zip's digest)")
    return given


class Plan:
    """What to send for each parameter, and what that changes against the deployed StackSet.

    `previous`: the deployed StackSet's parameters (DescribeStackSet), None for a new StackSet;
    `previous_declared`: the deployed template's Parameters section, when known, to tell a
    parameter new in this template from one that took its default before (and say when that
    default changes)."""

    def __init__(self, declared, values, previous, previous_declared=None):
        self.parameters = []  # for CreateStackSet / UpdateStackSet
        self.changed, self.unchanged, self.kept, self.new, self.defaults, self.missing = [], [], [], [], [], []
        self.effective = {}  # every parameter's value after this run (None: NoEcho, not known here)
        self.dropped = sorted(k for k in (previous or {}) if k not in declared)
        previous_declared = previous_declared or {}
        for key, declaration in declared.items():
            secret = is_no_echo(declaration)
            if key in values:
                value = values[key]
                self.parameters.append({"ParameterKey": key, "ParameterValue": value})
                self.effective[key] = value
                shown = MASK if secret else repr(value)
                if previous is None or key not in previous:
                    self.changed.append(f"{key} = {shown}")
                elif secret:
                    self.changed.append(f"{key} = {MASK} (NoEcho: replaced by the given value)")
                elif previous[key] != value:
                    self.changed.append(f"{key}: {previous[key]!r} -> {value!r}")
                else:
                    self.unchanged.append(key)
            elif previous is not None and key in previous:
                # Keep what the deployed StackSet has: without this, CloudFormation would put the
                # template's default back (and blank a NoEcho credential).
                self.parameters.append({"ParameterKey": key, "UsePreviousValue": True})
                self.kept.append(key)
                self.effective[key] = None if secret else previous[key]
            elif "Default" in declaration:
                # Not on the deployed StackSet (new in this template version, or never set): the
                # template's default. UsePreviousValue on a parameter the StackSet does not have
                # is an error.
                default = str(declaration["Default"])
                self.effective[key] = None if secret else default
                shown = MASK if secret else repr(default)
                before = previous_declared.get(key)
                if previous is None:
                    self.defaults.append(key)
                elif before is None:
                    self.new.append(f"{key} = {shown}")
                elif "Default" in before and str(before["Default"]) != default:
                    self.changed.append(f"{key}: {MASK if secret else repr(str(before['Default']))} -> {shown} "
                                        "(the template's default changed)")
                else:
                    self.defaults.append(key)
            else:
                self.missing.append(key)

    def print(self, creating):
        print("==> parameters" + (" of the new StackSet" if creating else ""))
        label = "parameters set" if creating else "parameters changed"
        print(f"    {label}: {'; '.join(self.changed) if self.changed else 'none'}")
        if self.new:
            print(f"    new in this template, defaults: {'; '.join(self.new)}")
        if self.kept:
            print(f"    kept as deployed (UsePreviousValue): {', '.join(self.kept)}")
        if self.unchanged:
            print(f"    given, same as deployed: {', '.join(self.unchanged)}")
        if self.defaults:
            print(f"    the template's default{'' if creating else ', as before'}: {', '.join(self.defaults)}")
        if self.dropped:
            print(f"    no longer in the template, dropped: {', '.join(self.dropped)}")


def operation_preferences(args, plan):
    preferences = {
        "RegionConcurrencyType": "SEQUENTIAL",
        "FailureTolerancePercentage": args.failure_tolerance_percentage,
        # Keep going across the organization while failures stay within the tolerance.
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
    }
    call_back = bool(plan.effective.get("CloudAppSecurityUrl"))
    if args.max_concurrent_count is not None:
        preferences["MaxConcurrentCount"] = args.max_concurrent_count
        print(f"==> concurrency: {args.max_concurrent_count} accounts at a time (--max-concurrent-count)")
    elif call_back:
        preferences["MaxConcurrentCount"] = CALL_BACK_MAX_CONCURRENT_COUNT
        print(f"==> concurrency: at most {CALL_BACK_MAX_CONCURRENT_COUNT} accounts at a time: the call back is on, "
              f"and the tenant admits about {TENANT_REQUESTS_PER_MINUTE} requests a minute "
              "(--max-concurrent-count overrides)")
        if args.max_concurrent_percentage is not None:
            print("    --max-concurrent-percentage is not used while the call back is on", file=sys.stderr)
    else:
        percentage = args.max_concurrent_percentage or DEFAULT_MAX_CONCURRENT_PERCENTAGE
        preferences["MaxConcurrentPercentage"] = percentage
        print(f"==> concurrency: {percentage} % of the accounts at a time (portal mode: nothing is sent to a tenant)")
    return preferences


# --- AWS -------------------------------------------------------------------------------------------

class Calls:
    """Makes AWS calls, or in a dry run prints them (NoEcho values masked)."""

    def __init__(self, args, secret_keys=()):
        self.dry_run = args.dry_run
        self.clients = {}
        self.args = args
        self.secret_keys = set(secret_keys)

    def client(self, service):
        if service not in self.clients:
            import boto3
            from botocore.config import Config
            # A dry run only reads, and must not hang on missing credentials or an unreachable endpoint.
            config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20) if self.dry_run else None
            self.clients[service] = boto3.client(service, region_name=self.args.region,
                                                 endpoint_url=self.args.endpoint_url, config=config)
        return self.clients[service]

    def cfn(self, operation, **params):
        """A CloudFormation StackSet call, acting as --call-as."""
        return self("cloudformation", operation, CallAs=self.args.call_as, **params)

    def shown(self, params):
        shown = {}
        for k, v in params.items():
            if k in ("TemplateBody", "Body"):
                v = f"<{len(v)} bytes>"
            elif k == "Parameters":
                v = [dict(p, ParameterValue=MASK) if p["ParameterKey"] in self.secret_keys and "ParameterValue" in p
                     else p for p in v]
            shown[k] = v
        return shown

    def __call__(self, service, operation, **params):
        if self.dry_run:
            print(f"[dry-run] {service}.{operation}({json.dumps(self.shown(params), default=str, sort_keys=True)})")
            return None
        return getattr(self.client(service), operation)(**params)


def read_stack_set(calls, args):
    """The deployed StackSet, or None. Read even in a dry run (read-only), so that it shows what the
    update would change; without credentials a dry run shows the calls for a new StackSet."""
    try:
        client = calls.client("cloudformation")
        return client.describe_stack_set(StackSetName=args.stack_set_name, CallAs=args.call_as)["StackSet"]
    except Exception as error:  # noqa: BLE001 - sorted out below
        if type(error).__name__ == "StackSetNotFoundException":
            return None
        if not calls.dry_run:
            raise
        print(f"==> dry run: cannot read StackSet {args.stack_set_name} ({type(error).__name__}): "
              "showing the calls for a new StackSet")
        return None


def build_zip():
    if shutil.which("cargo-lambda") is None:
        sys.exit("cargo-lambda is not installed: run ./scripts/rollout.sh (it installs it), or pass --zip")
    # Cargo.toml's [package.metadata.lambda.build] disable_optimizations keeps the release profile
    # exactly as the tests build it (panic unwinding: the panic catcher answers FAILED).
    print("==> building the arm64 zip: cargo lambda build --release --arm64 --output-format zip")
    subprocess.run(["cargo", "lambda", "build", "--release", "--arm64", "--output-format", "zip"], cwd=REPO,
                   check=True)
    return os.path.join(REPO, "target", "lambda", "bootstrap", "bootstrap.zip")


def upload(calls, args, path):
    with open(path, "rb") as f:
        body = f.read()
    key = f"cloud-app-security-connector/{hashlib.sha256(body).hexdigest()[:32]}.zip"
    bucket = f"{args.artifact_bucket_prefix}-{args.region}"
    print(f"==> code s3://{bucket}/{key} ({len(body)} bytes)")
    calls("s3", "put_object", Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    return key


def wait(calls, args, operation_id, what):
    if calls.dry_run or operation_id is None:
        return "SUCCEEDED"
    client = calls.client("cloudformation")
    while True:
        op = client.describe_stack_set_operation(StackSetName=args.stack_set_name, OperationId=operation_id,
                                                 CallAs=args.call_as)
        status = op["StackSetOperation"]["Status"]
        counts = {}
        for summary in paged(client, "list_stack_set_operation_results", StackSetName=args.stack_set_name,
                             OperationId=operation_id, CallAs=args.call_as):
            counts[summary["Status"]] = counts.get(summary["Status"], 0) + 1
        progress = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no account finished yet"
        print(f"    {what}: {status} ({progress})", flush=True)
        if status in DONE:
            return status
        time.sleep(args.poll_seconds)


def paged(client, operation, key="Summaries", **params):
    token = None
    while True:
        page = getattr(client, operation)(**params, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def report(calls, args):
    """Every account's outcome in the region; returns the failed ones."""
    if calls.dry_run:
        return []
    client = calls.client("cloudformation")
    failed = []
    print("==> stack instances")
    for s in paged(client, "list_stack_instances", StackSetName=args.stack_set_name, StackInstanceRegion=args.region,
                   CallAs=args.call_as):
        detail = (s.get("StackInstanceStatus") or {}).get("DetailedStatus", "")
        ok = s.get("Status") == "CURRENT" and detail in ("", "SUCCEEDED")
        reason = s.get("StatusReason") or ""
        print(f"    {s['Account']} {s['Region']} {s.get('Status')} {detail} {reason}".rstrip())
        if not ok:
            failed.append((s["Account"], reason or detail or s.get("Status")))
    return failed


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    body, declared = load_template(args.template)
    given = given_parameters(args, declared)
    calls = Calls(args, secret_keys=[k for k, d in declared.items() if is_no_echo(d)])
    if args.call_as == "DELEGATED_ADMIN":
        print("==> acting as a delegated administrator for CloudFormation StackSets (CallAs=DELEGATED_ADMIN)")

    stack_set = read_stack_set(calls, args)
    previous = previous_declared = None
    if stack_set is not None:
        previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack_set.get("Parameters", [])}
        if stack_set.get("TemplateBody"):
            try:
                previous_declared = parse_parameters(stack_set["TemplateBody"])
            except Exception:  # noqa: BLE001 - only used to explain defaults
                previous_declared = None

    path = args.zip or (None if args.dry_run else build_zip())
    key = upload(calls, args, path) if path else "cloud-app-security-connector/<digest>.zip"
    if path is None:
        print("[dry-run] would build the arm64 zip with cargo lambda and upload it")

    values = dict(given, ArtifactBucketPrefix=args.artifact_bucket_prefix, ArtifactKey=key)
    plan = Plan(declared, values, previous, previous_declared)
    plan.print(creating=previous is None)
    if plan.missing:
        sys.exit(f"parameters without a default need a value: {', '.join(plan.missing)}")
    preferences = operation_preferences(args, plan)
    targets = {"OrganizationalUnitIds": args.ou}
    common = dict(StackSetName=args.stack_set_name, TemplateBody=body, Parameters=plan.parameters,
                  Capabilities=["CAPABILITY_NAMED_IAM"])

    if previous is not None:
        print(f"==> updating StackSet {args.stack_set_name}")
        op = calls.cfn("update_stack_set", **common, DeploymentTargets=targets, Regions=[args.region],
                       OperationPreferences=preferences)
        status = wait(calls, args, op and op["OperationId"], "update")
        if status != "SUCCEEDED":
            report(calls, args)
            sys.exit(f"the StackSet update ended {status}")
    else:
        print(f"==> creating StackSet {args.stack_set_name} (service-managed, auto-deployment on)")
        calls.cfn("create_stack_set", **common, PermissionModel="SERVICE_MANAGED",
                  AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
                  ManagedExecution={"Active": True})

    print(f"==> stack instances for {', '.join(args.ou)} in {args.region}")
    op = calls.cfn("create_stack_instances", StackSetName=args.stack_set_name, DeploymentTargets=targets,
                   Regions=[args.region], OperationPreferences=preferences)
    status = wait(calls, args, op and op["OperationId"], "instances")
    failed = report(calls, args)
    for account, reason in failed:
        print(f"FAILED {account}: {reason}", file=sys.stderr)
    if failed or status != "SUCCEEDED":
        sys.exit(f"{len(failed)} account(s) failed; the operation ended {status}")
    print("==> done")


if __name__ == "__main__":
    main()
