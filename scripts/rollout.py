"""Rolls the connector out to the accounts of an AWS Organization, changes that rollout and removes
it: one service-managed StackSet, one stack instance per account, in one region.

  rollout.py deploy  --region R --ou OU [--ou OU ...] --artifact-bucket-prefix P [--parameter K=V ...]
  rollout.py add     --region R (--ou OU [--except ACCOUNT ...] | --account ACCOUNT) ...
  rollout.py remove  --region R (--ou OU | --account ACCOUNT) ...
  rollout.py rekey   --region R (--account ACCOUNT ... | --accounts-file FILE) [--key-version V]
  rollout.py overrides        --region R       (read only: per-account overrides, accounts left out)
  rollout.py clear-overrides  --region R [--account ACCOUNT ...] [--key K ...]
  rollout.py destroy --region R

Every subcommand that changes or removes accounts first prints a dry run — the exact requests it
would send and the accounts and OUs they touch — and then asks for the organization id
(organizations:DescribeOrganization) to be typed. --yes-i-typed <id> answers for automation (it must
match); without it and without a terminal on standard input the run refuses instead of waiting.
--dry-run stops after the dry run. Every StackSet call carries --call-as.

deploy: builds the arm64 zip (or takes --zip), uploads it to <prefix>-<region> under a key naming its
digest, creates or updates the StackSet (service-managed, auto-deployment on, CAPABILITY_NAMED_IAM)
and adds instances for OUs it does not target yet. A re-run keeps every OU the StackSet already
targets (read from its stack instances) and updates them all: naming fewer OUs drifts nothing.
IAM is global, so one region only: a StackSet of this template in another region, or under another
name, is refused (--other-stack-set NAME@REGION acknowledges one that serves OUs of its own).
Service-managed StackSets never deploy to the management account: use template.yaml with SAM there.

Parameters. A run changes only the parameters it names: on an update, every parameter the deployed
StackSet already has and this run does not name is sent as UsePreviousValue. A parameter new in this
template version takes its default unless named. NoEcho parameters (ApiToken, EntraClientSecret) are
never taken from the command line and never printed: set them in the environment as
CAS_PARAMETER_<Name>, or in a --parameters-file (a JSON object, or KEY=VALUE lines). --parameter wins
over the file, the file over the environment. Parameters that name one account's resource (an ARN
with an account id in it, a bucket that must be in the account) are refused: a StackSet gives every
account the same value. A run that sets StatusReaderPrincipalArn without OrganizationId gets this
organization's id (the one typed to confirm); an OrganizationId of another organization is refused.

Exclusions and overrides. StackSets keep no list of excluded accounts: an account is left out only by
having no stack instance, and the rollout keeps no list either (`overrides` shows the accounts of
targeted OUs that have none; `add --ou` brings them all back). Per-account parameter overrides
(`rekey`) persist across StackSet updates until cleared (`overrides`, `clear-overrides`).
"""

import argparse
import concurrent.futures
import hashlib
import json
import math
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
# How the rollout recognises a StackSet of this template (in any region, under any name).
RESOURCE_TYPE = "Custom::CloudAppSecurityConnector"
DESCRIPTION = f"Microsoft Defender for Cloud Apps connector ({RESOURCE_TYPE}), rolled out by scripts/rollout.py"
# A portal-mode re-key means one paste per account in the portal; the assumption behind the warning.
DEFAULT_PASTES_PER_DAY = 20

# The template's figures, owned with the templates (scripts/limits.py): the longest set name whose
# instances' stack names (StackSet-<set name>-<uuid>) keep every derived name within its service's
# limit, and the parameters that name one account's resource, with the form that works in every
# account.
import limits  # noqa: E402 - scripts/ is on the path (this script's own directory)

DEFAULT_STACK_SET_NAME = "cloud-app-security-connector"

# With the call back on, every account's Create registers the connector at one Cloud App Security
# tenant, which admits about 30 requests a minute (docs/cloud-app-security-api.md). A connector
# waits out the rate limit only within its function's 300 s timeout, so the accounts deploying at
# the same time must fit into what the tenant admits in 300 s:
#   30 requests/minute x 5 minutes                                   = 150 requests
#   halved: a Create may be followed by its rollback's Delete (one more request), and
#   rejected (429) attempts count against the limit too               =  75 accounts
#   20 % kept for the tenant's other clients and for retries          =  60 accounts
# A re-key (the new key is sent to the tenant) and a Delete (the connector is deregistered) call
# the tenant too, so the same cap holds for them.
TENANT_REQUESTS_PER_MINUTE = 30
FUNCTION_TIMEOUT_MINUTES = 5
CALL_BACK_MAX_CONCURRENT_COUNT = int(TENANT_REQUESTS_PER_MINUTE * FUNCTION_TIMEOUT_MINUTES / 2 * 0.8)


def usage_error(message):
    print(f"rollout.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack-set-name", default=DEFAULT_STACK_SET_NAME,
                        help=f"(default {DEFAULT_STACK_SET_NAME}; at most {limits.STACK_SET_NAME_MAX} characters)")
    common.add_argument("--region", action="append", required=True,
                        help="the one region of the StackSet and its stack instances (and of the artifact bucket)")
    common.add_argument("--call-as", choices=["SELF", "DELEGATED_ADMIN"], default="SELF",
                        help="SELF from the management account; DELEGATED_ADMIN from a member account registered as a "
                             "delegated administrator for CloudFormation StackSets (passed to every StackSet call)")
    common.add_argument("--dry-run", action="store_true",
                        help="read what is deployed, print the requests this run would send, and stop")
    common.add_argument("--yes-i-typed", metavar="ORGANIZATION_ID",
                        help="the typed confirmation, for automation: must be this organization's id (o-...)")
    common.add_argument("--poll-seconds", type=float, default=15)
    common.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help=argparse.SUPPRESS)
    operation = argparse.ArgumentParser(add_help=False)
    operation.add_argument("--max-concurrent-percentage", type=int,
                           help=f"accounts changed at once, in percent (default {DEFAULT_MAX_CONCURRENT_PERCENTAGE}; "
                                "not used while the call back is on)")
    operation.add_argument("--max-concurrent-count", type=int,
                           help="accounts changed at once; overrides the cap the call back sets "
                                f"({CALL_BACK_MAX_CONCURRENT_COUNT}, see README)")
    operation.add_argument("--failure-tolerance-percentage", type=int, default=10)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kw = dict(parents=[common, operation], formatter_class=argparse.RawDescriptionHelpFormatter)

    d = sub.add_parser("deploy", help="create or update the StackSet and add OUs (keeps every OU it targets)", **kw)
    d.add_argument("--ou", action="append", default=[],
                   help="organizational unit (or root) id to add (repeatable); OUs already targeted are kept")
    d.add_argument("--artifact-bucket-prefix", required=True, help="bucket <prefix>-<region> holds the code")
    d.add_argument("--zip", help="an already built bootstrap zip (default: build it with cargo lambda)")
    d.add_argument("--template", default=TEMPLATE, help="the StackSet template (default: deploy/stackset.yaml)")
    d.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="a StackSet template parameter to set (repeatable; not for NoEcho parameters)")
    d.add_argument("--parameters-file", metavar="FILE",
                   help="parameters to set, NoEcho ones included: a JSON object or KEY=VALUE lines")
    d.add_argument("--other-stack-set", action="append", default=[], metavar="NAME@REGION",
                   help="acknowledge another StackSet of this template that serves OUs of its own (another tenant, "
                        "data residency); OUs and accounts it targets are still refused")

    a = sub.add_parser("add", help="add OUs (all their accounts, --except some) or single accounts", **kw)
    a.add_argument("--ou", action="append", default=[], help="OU id: every account in it (repeatable)")
    a.add_argument("--except", dest="except_accounts", action="append", default=[], metavar="ACCOUNT",
                   help="with --ou: leave this account out (AccountFilterType DIFFERENCE; not remembered)")
    a.add_argument("--account", action="append", default=[], help="one account, in its OU (repeatable)")

    r = sub.add_parser("remove", help="remove the stack instances of OUs or of single accounts", **kw)
    r.add_argument("--ou", action="append", default=[], help="OU id (repeatable): it is no longer a target")
    r.add_argument("--account", action="append", default=[], help="account id (repeatable)")

    k = sub.add_parser("rekey", help="new access key for some accounts (a KeyVersion override)", **kw)
    k.add_argument("--account", action="append", default=[], help="account id (repeatable)")
    k.add_argument("--accounts-file", metavar="FILE", help="account ids, one a line (# comments)")
    k.add_argument("--key-version", help="the new KeyVersion (default: one more than the highest in the batch)")
    k.add_argument("--pastes-per-day", type=int, default=DEFAULT_PASTES_PER_DAY,
                   help="portal mode: keys a person pastes in a day, for the grace-period warning "
                        f"(default {DEFAULT_PASTES_PER_DAY})")

    sub.add_parser("overrides", help="list per-account parameter overrides and accounts of targeted OUs left out",
                   parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)

    c = sub.add_parser("clear-overrides", help="put accounts back on the StackSet's own parameter values", **kw)
    c.add_argument("--account", action="append", default=[], help="account id (default: every overriding account)")
    c.add_argument("--key", action="append", default=[], help="parameter to clear (default: all)")

    sub.add_parser("destroy", help="remove every stack instance and the StackSet, then say what stays", **kw)

    args = p.parse_args(argv)
    if len(args.region) != 1:
        p.error("exactly one --region: IAM is global, and two stack instances in one account would fight over "
                "the same IAM user (the trail is multi-region anyway)")
    args.region = args.region[0]
    for item in getattr(args, "parameter", []):
        if "=" not in item:
            p.error(f"--parameter {item!r}: expected KEY=VALUE")
    if getattr(args, "max_concurrent_percentage", None) is not None and args.max_concurrent_count is not None:
        p.error("--max-concurrent-percentage and --max-concurrent-count exclude each other")
    if args.command in ("add", "remove") and not (args.ou or args.account):
        p.error(f"{args.command}: name at least one --ou or --account")
    if args.command == "add" and args.except_accounts and not args.ou:
        p.error("add: --except goes with --ou")
    if args.command == "rekey":
        if args.accounts_file:
            with open(args.accounts_file) as f:
                args.account += [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
        if not args.account:
            p.error("rekey: name the accounts (--account or --accounts-file); one account or a batch at a time")
        if args.pastes_per_day < 1:
            p.error("--pastes-per-day must be at least 1")
    for item in getattr(args, "other_stack_set", []):
        if "@" not in item:
            p.error(f"--other-stack-set {item!r}: expected NAME@REGION")
    for account in getattr(args, "account", []) + getattr(args, "except_accounts", []):
        if not (len(account) == 12 and account.isdigit()):
            p.error(f"{account!r} is not an account id (12 digits)")
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
    unknown = sorted(k for k in given if k not in declared and k not in limits.REFUSED_STACK_SET_PARAMETERS)
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




def parse_template(body):
    """A whole template (YAML with short-form tags, or JSON), for its Resources' deletion policies."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(body, Loader=Loader) or {}


def operation_preferences(args, call_back, what="accounts changed"):
    preferences = {
        "RegionConcurrencyType": "SEQUENTIAL",
        "FailureTolerancePercentage": args.failure_tolerance_percentage,
        # Keep going across the organization while failures stay within the tolerance.
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
    }
    if args.max_concurrent_count is not None:
        preferences["MaxConcurrentCount"] = args.max_concurrent_count
        print(f"==> concurrency: {args.max_concurrent_count} {what} at a time (--max-concurrent-count)")
    elif call_back:
        preferences["MaxConcurrentCount"] = CALL_BACK_MAX_CONCURRENT_COUNT
        print(f"==> concurrency: at most {CALL_BACK_MAX_CONCURRENT_COUNT} {what} at a time: the call back is on, "
              f"and the tenant admits about {TENANT_REQUESTS_PER_MINUTE} requests a minute "
              "(--max-concurrent-count overrides)")
        if args.max_concurrent_percentage is not None:
            print("    --max-concurrent-percentage is not used while the call back is on", file=sys.stderr)
    else:
        percentage = args.max_concurrent_percentage or DEFAULT_MAX_CONCURRENT_PERCENTAGE
        preferences["MaxConcurrentPercentage"] = percentage
        print(f"==> concurrency: {percentage} % of the {what} at a time (portal mode: nothing is sent to a tenant)")
    return preferences


# --- AWS -------------------------------------------------------------------------------------------

def paged(client, operation, key="Summaries", **params):
    token = None
    while True:
        page = getattr(client, operation)(**params, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def error_code(error):
    return getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__


class Session:
    """One run's AWS access. Reads are made at once (a dry run reads too). Changes are only planned:
    shown as the dry run, confirmed with the organization id, then sent in order."""

    def __init__(self, args):
        self.args = args
        self.clients = {}
        self.secret_keys = set()
        self.planned = []  # (service, operation, params, notes, check before sending)
        self.parents = {}
        self.online = True  # False once a dry run found it cannot read (no credentials)

    def client(self, service, region=None):
        region = region or self.args.region
        if (service, region) not in self.clients:
            import boto3
            from botocore.config import Config
            # A dry run must not hang on missing credentials or an unreachable endpoint.
            config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20) if self.args.dry_run \
                else Config(retries={"mode": "standard", "max_attempts": 10})
            self.clients[service, region] = boto3.client(service, region_name=region,
                                                         endpoint_url=self.args.endpoint_url, config=config)
        return self.clients[service, region]

    def cfn(self, operation, region=None, **params):
        """A CloudFormation StackSet read, acting as --call-as."""
        return getattr(self.client("cloudformation", region), operation)(CallAs=self.args.call_as, **params)

    def cfn_paged(self, operation, region=None, **params):
        return paged(self.client("cloudformation", region), operation, CallAs=self.args.call_as, **params)

    def plan(self, service, operation, notes=(), check=None, **params):
        if service == "cloudformation":
            params = dict(params, CallAs=self.args.call_as)
        self.planned.append((service, operation, params, list(notes), check))

    def shown(self, params):
        shown = {}
        for k, v in params.items():
            if k in ("TemplateBody", "Body"):
                v = f"<{len(v)} bytes>"
            elif k in ("Parameters", "ParameterOverrides"):
                v = [dict(p, ParameterValue=MASK) if p["ParameterKey"] in self.secret_keys and "ParameterValue" in p
                     else p for p in v]
            shown[k] = v
        return shown

    # --- what is deployed

    def stack_set(self, name=None, region=None):
        try:
            return self.cfn("describe_stack_set", region, StackSetName=name or self.args.stack_set_name)["StackSet"]
        except Exception as error:  # noqa: BLE001 - sorted out below
            if error_code(error) == "StackSetNotFoundException":
                return None
            raise

    def organization(self):
        return self.client("organizations").describe_organization()["Organization"]

    def parent_of(self, account):
        if account not in self.parents:
            parents = self.client("organizations").list_parents(ChildId=account)["Parents"]
            self.parents[account] = parents[0]["Id"]
        return self.parents[account]

    def accounts_under(self, target):
        """{account id: status} of every account in an OU or root, nested OUs included (as a StackSet
        targets them)."""
        org = self.client("organizations")
        found, todo = {}, [target]
        while todo:
            parent = todo.pop()
            for a in paged(org, "list_accounts_for_parent", key="Accounts", ParentId=parent):
                found[a["Id"]] = a.get("Status", "ACTIVE")
            todo += [ou["Id"] for ou in paged(org, "list_organizational_units_for_parent", key="OrganizationalUnits",
                                               ParentId=parent)]
        return found

    def instances(self, name=None, region=None):
        """Every stack instance of the StackSet, in every region, with the OU it was deployed through.
        ListStackInstances names that OU (OrganizationalUnitId); where it does not, the account's parent
        in the organization stands in (it selects the same account)."""
        result = []
        for s in self.cfn_paged("list_stack_instances", region, StackSetName=name or self.args.stack_set_name):
            result.append({"account": s["Account"], "region": s["Region"],
                           "ou": s.get("OrganizationalUnitId") or self.parent_of(s["Account"]),
                           "status": s.get("Status"),
                           "detail": (s.get("StackInstanceStatus") or {}).get("DetailedStatus", ""),
                           "reason": s.get("StatusReason") or "", "stack_id": s.get("StackId", "")})
        return result

    def overrides(self, instances):
        """{account: [ParameterOverrides]} for the accounts that have any (DescribeStackInstance, one
        call an account: ListStackInstances does not carry them)."""
        def read(i):
            answer = self.cfn("describe_stack_instance", StackSetName=self.args.stack_set_name,
                              StackInstanceAccount=i["account"], StackInstanceRegion=i["region"])
            return i["account"], answer["StackInstance"].get("ParameterOverrides") or []

        self.client("cloudformation")  # made here: making clients is not thread-safe, using them is
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return {account: o for account, o in pool.map(read, instances) if o}

    # --- the dry run, the confirmation, the requests

    def show(self, organization_id):
        where = f"StackSet {self.args.stack_set_name} in {self.args.region}, as {self.args.call_as}"
        print(f"==> dry run: the requests this run sends ({where}, organization {organization_id or 'not read'}), "
              "in order")
        for service, operation, params, notes, _ in self.planned:
            for note in notes:
                print(f"    {note}")
            print(f"[dry-run] {service}.{operation}({json.dumps(self.shown(params), default=str, sort_keys=True)})")

    def confirm(self, organization_id):
        """The typed confirmation: the organization id. Refuses rather than waits without a terminal."""
        if self.args.yes_i_typed is not None:
            if self.args.yes_i_typed != organization_id:
                usage_error(f"--yes-i-typed {self.args.yes_i_typed!r} is not the id of this organization "
                            "(organizations:DescribeOrganization): nothing was sent")
            print(f"==> confirmed: --yes-i-typed {organization_id}")
            return
        stdin = sys.stdin
        if stdin is None or stdin.closed or not stdin.isatty():
            usage_error("this run changes accounts and asks for the organization id to be typed, but standard input "
                        "is not a terminal: run it in one, or pass --yes-i-typed <organization id> (o-...) after "
                        "reading the dry run (--dry-run)")
        print(f"Type the organization id ({organization_id}) to send these requests, anything else stops: ",
              end="", flush=True)
        answer = stdin.readline().strip()
        if answer != organization_id:
            print("not confirmed: nothing was sent", file=sys.stderr)
            sys.exit(1)

    def send(self, organization_id, epilogue=None):
        """Shows the planned requests (then `epilogue`, what they leave behind); unless --dry-run,
        confirms and sends them, waiting for each StackSet operation with progress. Returns False
        for a dry run."""
        self.show(organization_id)
        if epilogue:
            epilogue()
        if self.args.dry_run:
            print("==> dry run: nothing was sent")
            return False
        if organization_id is None:
            sys.exit("cannot read the organization (organizations:DescribeOrganization), so cannot ask for it")
        self.confirm(organization_id)
        for service, operation, params, _, check in self.planned:
            if check:
                check()
            answer = getattr(self.client(service), operation)(**params)
            if answer.get("OperationId"):
                status = self.wait(answer["OperationId"], operation)
                if status != "SUCCEEDED":
                    sys.exit(f"{operation} ended {status}; the requests after it were not sent")
        return True

    def wait(self, operation_id, what):
        """Polls the StackSet operation, printing its status and how many accounts are in each state;
        lists the accounts that failed."""
        while True:
            op = self.cfn("describe_stack_set_operation", StackSetName=self.args.stack_set_name,
                          OperationId=operation_id)["StackSetOperation"]
            results = list(self.cfn_paged("list_stack_set_operation_results", StackSetName=self.args.stack_set_name,
                                          OperationId=operation_id))
            counts = {}
            for r in results:
                counts[r["Status"]] = counts.get(r["Status"], 0) + 1
            progress = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no account finished yet"
            print(f"    {what}: {op['Status']} ({progress})", flush=True)
            if op["Status"] in DONE:
                for r in results:
                    if r["Status"] not in ("SUCCEEDED", "PENDING", "RUNNING"):
                        print(f"    {r['Status']} {r['Account']} {r['Region']}: {r.get('StatusReason', '')}".rstrip(),
                              file=sys.stderr)
                return op["Status"]
            time.sleep(self.args.poll_seconds)


def accounts_(n):
    return f"{n} account{'' if n == 1 else 's'}"


def shortlist(accounts, limit=40):
    accounts = sorted(accounts)
    text = ", ".join(accounts[:limit])
    return text + (f" and {len(accounts) - limit} more" if len(accounts) > limit else "") if accounts else "none"


def require_stack_set(s):
    stack_set = s.stack_set()
    if stack_set is None:
        sys.exit(f"no StackSet {s.args.stack_set_name} in {s.args.region} (as {s.args.call_as}): `deploy` first")
    if stack_set.get("TemplateBody"):
        declared = parse_parameters(stack_set["TemplateBody"])
        s.secret_keys = {k for k, d in declared.items() if is_no_echo(d)}
    return stack_set


def set_values(stack_set):
    """The StackSet's parameter values, the template's defaults filling what it does not list."""
    values = {}
    if stack_set.get("TemplateBody"):
        for key, declaration in parse_parameters(stack_set["TemplateBody"]).items():
            if "Default" in declaration:
                values[key] = str(declaration["Default"])
    values.update({p["ParameterKey"]: p.get("ParameterValue", "") for p in stack_set.get("Parameters", [])})
    return values


def effective(stack_set, overrides, account, key):
    for o in overrides.get(account, []):
        if o["ParameterKey"] == key:
            return o.get("ParameterValue", "")
    return set_values(stack_set).get(key, "")


def in_region(s, instances):
    return [i for i in instances if i["region"] == s.args.region]


# --- deploy ----------------------------------------------------------------------------------------

def check_stack_set_name(name):
    problem = limits.stack_set_name_problem(name)
    if problem:
        usage_error(f"{problem}: every name the template derives from the stack name must fit its service's limit")


def refuse_account_specific(given, previous):
    """Parameters that name one account's resource: a StackSet gives every account the same value."""
    named = [k for k in limits.REFUSED_STACK_SET_PARAMETERS if given.get(k)]
    kept = [k for k in limits.REFUSED_STACK_SET_PARAMETERS if k not in given and (previous or {}).get(k)]
    for key in named + kept:
        instead = limits.ACCOUNT_SPECIFIC_PARAMETERS.get(key)
        usage_error(f"{key} names one account's resource (an ARN with its account id in it, or a bucket, whose name "
                    "is global), and a StackSet gives every account the same value"
                    + (f"; the deployed StackSet has one: clear it with --parameter {key}=" if key in kept else "")
                    + (f"; give {instead} instead, resolved in each account" if instead else "")
                    + " (or deploy template.yaml with SAM where one account needs its own)")


def partition_regions(region):
    """Every region of the region's partition where CloudFormation runs (botocore's endpoint data, no
    call); a region not enabled for the account answers an error and is reported as not checked."""
    import boto3
    session = boto3.session.Session()
    try:
        partition = session.get_partition_for_region(region)
    except Exception:  # noqa: BLE001 - older boto3, unknown region
        partition = "aws"
    return sorted(set(session.get_available_regions("cloudformation", partition_name=partition)) | {region})


def other_stack_sets(s):
    """StackSets of this template other than this one, in every region of the partition:
    ([(name, region)], [regions that could not be read])."""
    regions = partition_regions(s.args.region)

    def ours(region, summary):
        if DESCRIPTION in (summary.get("Description") or ""):
            return True
        if summary.get("PermissionModel") != "SERVICE_MANAGED":
            return False
        body = s.stack_set(summary["StackSetName"], region) or {}
        return RESOURCE_TYPE in (body.get("TemplateBody") or "")

    def scan(region):
        try:
            return region, [(x["StackSetName"], region)
                            for x in s.cfn_paged("list_stack_sets", region, Status="ACTIVE")
                            if x.get("Status", "ACTIVE") == "ACTIVE"
                            and (x["StackSetName"], region) != (s.args.stack_set_name, s.args.region)
                            and ours(region, x)], None
        except Exception as error:  # noqa: BLE001 - a region not enabled for the account, say
            return region, [], error_code(error)

    for region in regions:
        s.client("cloudformation", region)  # made here: making clients is not thread-safe, using them is
    found, unread = [], []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for region, sets, error in pool.map(scan, regions):
            found += sets
            if error:
                unread.append(f"{region} ({error})")
    return found, unread


def check_other_stack_sets(s, new_ous):
    found, unread = other_stack_sets(s)
    if unread:
        print(f"    not checked for other StackSets of this template: {', '.join(unread)}")
    acknowledged = {tuple(x.rsplit("@", 1)) for x in s.args.other_stack_set}
    unknown = [f"{n}@{r}" for n, r in found if (n, r) not in acknowledged]
    if unknown:
        usage_error(f"a StackSet of this template already exists: {', '.join(unknown)}. A second one (another region "
                    "or another name) would put two connectors in the same accounts, fighting over one IAM user: run "
                    f"this command with --region and --stack-set-name of that one. Only a StackSet that serves OUs of "
                    "its own (another tenant, data residency) may stay: acknowledge it with --other-stack-set NAME@REGION")
    for name, region in found:
        theirs = s.instances(name, region)
        their_ous = {i["ou"] for i in theirs}
        their_accounts = {i["account"] for i in theirs}
        clash = sorted(set(new_ous) & their_ous)
        mine = set()
        for ou in new_ous:
            mine |= set(s.accounts_under(ou))
        shared = sorted(mine & their_accounts)
        if clash or shared:
            usage_error(f"StackSet {name}@{region} already targets " + (f"OUs {', '.join(clash)} " if clash else "")
                        + (f"accounts {shortlist(shared)}" if shared else "") + ": one connector an account")
        print(f"    StackSet {name}@{region} (acknowledged) serves {len(their_accounts)} other accounts")


def build_zip():
    if shutil.which("cargo-lambda") is None:
        sys.exit("cargo-lambda is not installed: run ./scripts/rollout.sh (it installs it), or pass --zip")
    # Cargo.toml's [package.metadata.lambda.build] disable_optimizations keeps the release profile
    # exactly as the tests build it (panic unwinding: the panic catcher answers FAILED).
    print("==> building the arm64 zip: cargo lambda build --release --arm64 --output-format zip")
    subprocess.run(["cargo", "lambda", "build", "--release", "--arm64", "--output-format", "zip"], cwd=REPO,
                   check=True)
    return os.path.join(REPO, "target", "lambda", "bootstrap", "bootstrap.zip")


def report(s):
    """Every account's outcome in the region; returns the failed ones."""
    failed = []
    print("==> stack instances")
    for i in in_region(s, s.instances()):
        ok = i["status"] == "CURRENT" and i["detail"] in ("", "SUCCEEDED")
        print(f"    {i['account']} {i['region']} {i['ou']} {i['status']} {i['detail']} {i['reason']}".rstrip())
        if not ok:
            failed.append((i["account"], i["reason"] or i["detail"] or i["status"]))
    return failed


def fill_organization_id(given, organization):
    """The reader role (StatusReaderPrincipalArn) trusts its principal only inside OrganizationId, so
    the stack refuses one without the other. A run that sets StatusReaderPrincipalArn and names no
    OrganizationId gets this organization's (organizations:DescribeOrganization, the id typed to
    confirm); an OrganizationId that is not this organization's is refused."""
    org_id = (organization or {}).get("Id")
    named = given.get("OrganizationId")
    if named and org_id and named != org_id:
        usage_error(f"OrganizationId {named} is not this organization's id ({org_id}, organizations:"
                    "DescribeOrganization): each account's reader role would trust no principal of this organization; "
                    f"give OrganizationId={org_id}, or leave it out and the run fills it in")
    if not given.get("StatusReaderPrincipalArn") or named:
        return
    if org_id:
        given["OrganizationId"] = org_id
        print(f"==> OrganizationId: {org_id}, this organization's (organizations:DescribeOrganization): "
              "StatusReaderPrincipalArn needs it, and the run named none")
    else:
        print("==> OrganizationId: not filled in, the organization could not be read; the run reads it "
              "(organizations:DescribeOrganization) and fills it in, as StatusReaderPrincipalArn needs it")


def still_to_do(call_back, fleet_bus):
    if call_back:
        print("==> still to do: check each account: the call back registered its connector when its stack's outputs "
              "say ConnectorStatus Registered and KeyVerified true")
    else:
        print("==> still to do: no account is connected yet: paste each account's key in the Cloud App Security "
              "portal (its stack's output PortalUrl; the key is in the secret its output SecretArn names). The daily "
              "key check sees the first paste: once Cloud App Security is seen using the key, the account's status "
              "report says Connected (the stack output ConnectorStatus stays PendingPortal)")
    if fleet_bus:
        print("    follow every account with `scripts/fleet.sh status --region <the bus's region>`"
              + ("" if call_back else "; `scripts/fleet.sh paste` walks through the keys waiting for a paste")
              + " (docs/fleet.md)")
    else:
        print("    StatusBusArn is empty: no account reports its status; deploy deploy/fleet.yaml and give its "
              "EventBusArn to --parameter StatusBusArn=… to follow them with `scripts/fleet.sh status` (docs/fleet.md)")
    print("    each account's stack outputs (ConnectorStatus, KeyVerified, PortalUrl, SecretArn), in that account: "
          "aws cloudformation describe-stacks --stack-name $(aws cloudformation list-stacks "
          "--stack-status-filter CREATE_COMPLETE UPDATE_COMPLETE --query \"StackSummaries[?starts_with(StackName, "
          "'StackSet-<set name>-')].StackName | [0]\" --output text) --query 'Stacks[0].Outputs'")


def deploy(s):
    args = s.args
    check_stack_set_name(args.stack_set_name)
    body, declared = load_template(args.template)
    given = given_parameters(args, declared)
    refuse_account_specific(given, None)
    s.secret_keys = {k for k, d in declared.items() if is_no_echo(d)}
    if args.call_as == "DELEGATED_ADMIN":
        print("==> acting as a delegated administrator for CloudFormation StackSets (CallAs=DELEGATED_ADMIN)")

    try:
        stack_set = s.stack_set()
    except Exception as error:  # noqa: BLE001 - a dry run without credentials still shows the calls
        if not args.dry_run:
            raise
        print(f"==> dry run: cannot read StackSet {args.stack_set_name} ({type(error).__name__}): "
              "showing the calls for a new StackSet")
        stack_set, s.online = None, False
    previous = previous_declared = None
    if stack_set is not None:
        previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack_set.get("Parameters", [])}
        if stack_set.get("TemplateBody"):
            try:
                previous_declared = parse_parameters(stack_set["TemplateBody"])
            except Exception:  # noqa: BLE001 - only used to explain defaults
                previous_declared = None
    refuse_account_specific(given, previous)

    organization = s.organization() if s.online else None
    fill_organization_id(given, organization)
    instances = s.instances() if stack_set is not None else []
    elsewhere = sorted({i["region"] for i in instances} - {args.region})
    if elsewhere:
        usage_error(f"StackSet {args.stack_set_name} has stack instances in {', '.join(elsewhere)} too: two regions "
                    "mean two connectors an account; `remove` them (run it with that --region) first")
    existing_ous = sorted({i["ou"] for i in instances})
    named = list(dict.fromkeys(args.ou))
    new_ous = [ou for ou in named if ou not in existing_ous]
    if stack_set is None and not named:
        usage_error("deploy: a new StackSet needs at least one --ou")
    if s.online:
        check_other_stack_sets(s, new_ous)

    path = args.zip or (None if args.dry_run else build_zip())
    if path:
        with open(path, "rb") as f:
            code = f.read()
        key = f"cloud-app-security-connector/{hashlib.sha256(code).hexdigest()[:32]}.zip"
    else:
        code, key = b"", "cloud-app-security-connector/<digest>.zip"
        print("[dry-run] would build the arm64 zip with cargo lambda and upload it")
    bucket = f"{args.artifact_bucket_prefix}-{args.region}"

    values = dict(given, ArtifactBucketPrefix=args.artifact_bucket_prefix, ArtifactKey=key)
    plan = Plan(declared, values, previous, previous_declared)
    plan.print(creating=previous is None)
    if plan.missing:
        sys.exit(f"parameters without a default need a value: {', '.join(plan.missing)}")
    call_back = bool(plan.effective.get("CloudAppSecurityUrl"))
    preferences = operation_preferences(args, call_back)
    common = dict(StackSetName=args.stack_set_name, TemplateBody=body, Parameters=plan.parameters,
                  Capabilities=["CAPABILITY_NAMED_IAM"])

    if path:
        s.plan("s3", "put_object", [f"the code: s3://{bucket}/{key} ({len(code)} bytes)"],
               Bucket=bucket, Key=key, Body=code, ServerSideEncryption="AES256")
    if stack_set is not None:
        notes = [f"update StackSet {args.stack_set_name}: every OU it targets is kept and updated: "
                 f"{', '.join(existing_ous) or 'none yet'} ({len(instances)} accounts)"]
        again = [ou for ou in named if ou in existing_ous]
        if again:
            notes.append(f"already targeted, not added again: {', '.join(again)} (accounts removed from them one by one "
                         "stay removed; `add --ou` brings them back)")
        overrides = s.overrides(instances) if instances else {}
        shadowed = sorted({o["ParameterKey"] for os_ in overrides.values() for o in os_} & set(given))
        if overrides:
            notes.append(f"{len(overrides)} accounts have per-account parameter overrides, kept by CloudFormation over "
                         f"this update: {shortlist(overrides)} (`overrides`, `clear-overrides`)")
        if shadowed:
            notes.append(f"so this run's {', '.join(shadowed)} does not reach those accounts")
        targets = {"DeploymentTargets": {"OrganizationalUnitIds": existing_ous}, "Regions": [args.region]} \
            if existing_ous else {}
        s.plan("cloudformation", "update_stack_set", notes, **common, **targets, OperationPreferences=preferences)
    else:
        s.plan("cloudformation", "create_stack_set",
               [f"create StackSet {args.stack_set_name} in {args.region} (service-managed, auto-deployment on)"],
               **common, Description=DESCRIPTION, PermissionModel="SERVICE_MANAGED",
               AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
               ManagedExecution={"Active": True})
    if new_ous:
        notes = []
        management = organization and organization.get("MasterAccountId")
        for ou in new_ous:
            if s.online:
                accounts = {a for a in s.accounts_under(ou) if a != management}
                notes.append(f"add {ou}: {accounts_(len(accounts))}: {shortlist(accounts)}")
            else:
                notes.append(f"add {ou}")
        s.plan("cloudformation", "create_stack_instances", notes, StackSetName=args.stack_set_name,
               DeploymentTargets={"OrganizationalUnitIds": new_ous}, Regions=[args.region],
               OperationPreferences=preferences)

    if not s.send(organization and organization["Id"]):
        return
    failed = report(s)
    for account, reason in failed:
        print(f"FAILED {account}: {reason}", file=sys.stderr)
    if failed:
        sys.exit(f"{len(failed)} account(s) failed")
    still_to_do(call_back, plan.effective.get("StatusBusArn"))
    print("==> done")


# --- add, remove -----------------------------------------------------------------------------------

def add(s):
    args = s.args
    stack_set = require_stack_set(s)
    organization = s.organization()
    management = organization.get("MasterAccountId")
    instances = in_region(s, s.instances())
    have = {i["account"] for i in instances}
    targeted = {i["ou"] for i in instances}
    call_back = bool(set_values(stack_set).get("CloudAppSecurityUrl"))
    preferences = operation_preferences(args, call_back)
    if args.ou:
        notes, except_ = [], set(args.except_accounts)
        under = set()
        for ou in dict.fromkeys(args.ou):
            accounts = s.accounts_under(ou)
            under |= set(accounts)
            new = sorted(a for a in accounts if a not in have and a not in except_ and a != management)
            notes.append(f"add {ou}: {accounts_(len(new))} to get a stack: {shortlist(new)}")
            if ou in targeted:
                notes.append(f"  {ou} is already a target: this brings back every account of it that has no stack")
            suspended = sorted(a for a in new if accounts[a] != "ACTIVE")
            if suspended:
                notes.append(f"  not active, will fail (--except them): {', '.join(suspended)}")
        if except_:
            notes.append(f"left out (DIFFERENCE; StackSets remember no exclusion, a later `add --ou` includes them): "
                         f"{', '.join(sorted(except_))}")
            stray = sorted(except_ - under)
            if stray:
                usage_error(f"--except {', '.join(stray)}: not in {', '.join(args.ou)}")
        targets = {"OrganizationalUnitIds": list(dict.fromkeys(args.ou))}
        if except_:
            targets.update(Accounts=sorted(except_), AccountFilterType="DIFFERENCE")
        s.plan("cloudformation", "create_stack_instances", notes, StackSetName=args.stack_set_name,
               DeploymentTargets=targets, Regions=[args.region], OperationPreferences=preferences)
    if args.account:
        accounts = list(dict.fromkeys(args.account))
        if management in accounts:
            usage_error(f"{management} is the management account: service-managed StackSets never deploy there "
                        "(deploy template.yaml with SAM)")
        present = [a for a in accounts if a in have]
        accounts = [a for a in accounts if a not in have]
        notes = [f"already deployed, left as they are: {', '.join(present)}"] if present else []
        if accounts:
            parents = {a: s.parent_of(a) for a in accounts}
            notes += [f"add {a} (in {parents[a]}): only this account of its OU" for a in accounts]
            s.plan("cloudformation", "create_stack_instances", notes, StackSetName=args.stack_set_name,
                   DeploymentTargets={"OrganizationalUnitIds": sorted(set(parents.values())), "Accounts": accounts,
                                      "AccountFilterType": "INTERSECTION"},
                   Regions=[args.region], OperationPreferences=preferences)
        else:
            print(f"==> {notes[0]}")
    if not s.planned:
        print("==> nothing to add")
        return
    if s.send(organization["Id"]):
        failed = [f for f in report(s)]
        if failed:
            sys.exit(f"{len(failed)} account(s) failed")
        still_to_do(call_back, set_values(stack_set).get("StatusBusArn"))


def remove(s):
    args = s.args
    stack_set = require_stack_set(s)
    organization = s.organization()
    instances = in_region(s, s.instances())
    by_account = {i["account"]: i for i in instances}
    overrides = {}
    call_back = bool(set_values(stack_set).get("CloudAppSecurityUrl"))
    preferences = operation_preferences(args, call_back)
    removed = set()
    if args.ou:
        ous = list(dict.fromkeys(args.ou))
        untargeted = [ou for ou in ous if ou not in {i["ou"] for i in instances}]
        if untargeted:
            usage_error(f"not targeted by {args.stack_set_name} in {args.region}: {', '.join(untargeted)}")
        accounts = {i["account"] for i in instances if i["ou"] in ous}
        removed |= accounts
        s.plan("cloudformation", "delete_stack_instances",
               [f"remove {ou}: {accounts_(len([i for i in instances if i['ou'] == ou]))} lose their connector: "
                f"{shortlist(i['account'] for i in instances if i['ou'] == ou)}; auto-deployment no longer adds its "
                "new accounts" for ou in ous],
               StackSetName=args.stack_set_name, DeploymentTargets={"OrganizationalUnitIds": ous},
               Regions=[args.region], RetainStacks=False, OperationPreferences=preferences)
    if args.account:
        accounts = [a for a in dict.fromkeys(args.account) if a not in removed]
        missing = [a for a in accounts if a not in by_account]
        if missing:
            usage_error(f"no stack instance of {args.stack_set_name} in {args.region} for {', '.join(missing)}")
        ous = sorted({by_account[a]["ou"] for a in accounts})
        if accounts:
            removed |= set(accounts)
            s.plan("cloudformation", "delete_stack_instances",
                   [f"remove {a} (in {by_account[a]['ou']})" for a in accounts]
                   + [f"StackSets keep no exclusion list, nor does this rollout: {', '.join(ous)} remain targeted, so "
                      "`add --ou` of them, or auto-deployment when an account leaves and rejoins, brings these "
                      "accounts back. To keep one out for good, move it out of the targeted OUs"],
                   StackSetName=args.stack_set_name,
                   DeploymentTargets={"OrganizationalUnitIds": ous, "Accounts": accounts,
                                      "AccountFilterType": "INTERSECTION"},
                   Regions=[args.region], RetainStacks=False, OperationPreferences=preferences)
    if removed:
        overrides = s.overrides([by_account[a] for a in removed])
    if s.send(organization["Id"], lambda: what_stays(stack_set, removed, overrides, preview=True)):
        left = sorted(removed & {i["account"] for i in in_region(s, s.instances())})
        if left:
            sys.exit(f"still deployed: {', '.join(left)}")
        print(f"==> removed {accounts_(len(removed))}")
        what_stays(stack_set, removed, overrides)


# --- rekey, overrides ------------------------------------------------------------------------------

def rekey(s):
    args = s.args
    stack_set = require_stack_set(s)
    organization = s.organization()
    by_account = {i["account"]: i for i in in_region(s, s.instances())}
    accounts = list(dict.fromkeys(args.account))
    missing = [a for a in accounts if a not in by_account]
    if missing:
        usage_error(f"no stack instance of {args.stack_set_name} in {args.region} for {', '.join(missing)}")
    overrides = s.overrides([by_account[a] for a in accounts])
    current = {a: effective(stack_set, overrides, a, "KeyVersion") for a in accounts}
    if args.key_version is not None:
        version = args.key_version
    elif all(v.isdigit() for v in current.values()):
        version = str(max(int(v) for v in current.values()) + 1)
    else:
        usage_error(f"KeyVersion is not a number in every account ({', '.join(sorted(set(current.values())))}): "
                    "name the new one with --key-version")
    same = [a for a in accounts if current[a] == version]
    if same:
        usage_error(f"KeyVersion is already {version!r} in {', '.join(same)}: that would not change the key")
    call_back = {a: bool(effective(stack_set, overrides, a, "CloudAppSecurityUrl")) for a in accounts}
    preferences = operation_preferences(args, any(call_back.values()), what="accounts re-keyed")
    portal = [a for a in accounts if not call_back[a]]
    if portal:
        grace = min(int(effective(stack_set, overrides, a, "RotationGraceDays") or 7) for a in portal)
        days = math.ceil(len(portal) / args.pastes_per_day)
        print(f"==> portal mode: {len(portal)} new key{'' if len(portal) == 1 else 's'} to paste in the portal; at {args.pastes_per_day} a day "
              f"(--pastes-per-day, an assumption) that takes {days} day(s); RotationGraceDays is {grace}")
        if days > grace:
            print(f"WARNING: the pastes cannot be done within RotationGraceDays ({grace}): each previous key stops "
                  f"working {grace} days after its rotation (unless Cloud App Security was seen using the new one), "
                  f"so the accounts pasted later lose their connection in between. Re-key at most "
                  f"{args.pastes_per_day * grace} accounts a batch", file=sys.stderr)
            print(f"    WARNING: {len(portal)} pastes take {days} days, more than RotationGraceDays ({grace})")
    # UpdateStackInstances resets every override its list leaves out: keep each account's other
    # overrides (UsePreviousValue), one request per set of kept keys.
    groups = {}
    for a in accounts:
        kept = tuple(sorted(o["ParameterKey"] for o in overrides.get(a, []) if o["ParameterKey"] != "KeyVersion"))
        groups.setdefault(kept, []).append(a)
    for kept, group in groups.items():
        notes = [f"KeyVersion {current[a]!r} -> {version!r} in {a} (in {by_account[a]['ou']}): a new access key"
                 + ("" if call_back[a] else ", to paste in the portal") for a in group]
        notes.append("a per-account override: it stays on these accounts, so a StackSet-wide KeyVersion change no "
                     "longer reaches them until `clear-overrides`")
        if kept:
            notes.append(f"their other overrides are kept (UsePreviousValue): {', '.join(kept)}")
        s.plan("cloudformation", "update_stack_instances", notes, StackSetName=args.stack_set_name,
               DeploymentTargets={"OrganizationalUnitIds": sorted({by_account[a]["ou"] for a in group}),
                                  "Accounts": group, "AccountFilterType": "INTERSECTION"},
               Regions=[args.region],
               ParameterOverrides=[{"ParameterKey": "KeyVersion", "ParameterValue": version}]
               + [{"ParameterKey": k, "UsePreviousValue": True} for k in kept],
               OperationPreferences=preferences)
    if s.send(organization["Id"]):
        print(f"==> re-keyed {len(accounts)} accounts; KeyVersion {version!r} is now an override on each "
              "(`overrides` lists them, `clear-overrides` puts them back on the StackSet's value)")
        if portal:
            print("    paste each new key in the portal (the account's stack outputs PortalUrl and SecretArn)")


def shown_value(s, override):
    if "ParameterValue" not in override:
        return "(previous value)"
    return MASK if override["ParameterKey"] in s.secret_keys else repr(override["ParameterValue"])


def list_overrides(s):
    stack_set = require_stack_set(s)
    instances = in_region(s, s.instances())
    overrides = s.overrides(instances)
    values = set_values(stack_set)
    print(f"==> per-account parameter overrides of {s.args.stack_set_name} in {s.args.region} "
          f"({len(overrides)} of {len(instances)} accounts); they outlive StackSet updates until cleared")
    for account in sorted(overrides):
        shown = "; ".join(f"{o['ParameterKey']} = {shown_value(s, o)} (StackSet: "
                          f"{MASK if o['ParameterKey'] in s.secret_keys else repr(values.get(o['ParameterKey'], ''))})"
                          for o in overrides[account])
        print(f"    {account}: {shown}")
    if not overrides:
        print("    none")
    have = {i["account"] for i in instances}
    management = s.organization().get("MasterAccountId")
    print("==> accounts of targeted OUs without a stack instance (StackSets keep no exclusion list: this is all "
          "there is; removed one by one, left out with --except, or failed)")
    left_out = 0
    for ou in sorted({i["ou"] for i in instances}):
        out = sorted(a for a in s.accounts_under(ou) if a not in have and a != management)
        left_out += len(out)
        if out:
            print(f"    {ou}: {', '.join(out)}")
    if not left_out:
        print("    none")


def clear_overrides(s):
    args = s.args
    stack_set = require_stack_set(s)
    organization = s.organization()
    by_account = {i["account"]: i for i in in_region(s, s.instances())}
    if args.account:
        missing = [a for a in args.account if a not in by_account]
        if missing:
            usage_error(f"no stack instance of {args.stack_set_name} in {args.region} for {', '.join(missing)}")
    chosen = [by_account[a] for a in (dict.fromkeys(args.account) if args.account else by_account)]
    overrides = s.overrides(chosen)
    values = set_values(stack_set)
    call_back = bool(values.get("CloudAppSecurityUrl"))
    groups = {}
    for account, os_ in sorted(overrides.items()):
        clear = [o for o in os_ if not args.key or o["ParameterKey"] in args.key]
        if not clear:
            continue
        kept = tuple(sorted(o["ParameterKey"] for o in os_ if o not in clear))
        groups.setdefault(kept, []).append((account, clear))
    if not groups:
        print("==> no override to clear")
        return
    preferences = operation_preferences(args, call_back)
    for kept, items in groups.items():
        notes = []
        for account, clear in items:
            for o in clear:
                key, back = o["ParameterKey"], values.get(o["ParameterKey"], "")
                secret = key in s.secret_keys
                change = "" if not secret and o.get("ParameterValue") == back else \
                    {"KeyVersion": ": a new access key" + ("" if call_back else ", to paste in the portal"),
                     "ConnectorName": ": a new connector (user, key and secret replaced)"}.get(key, "")
                notes.append(f"{account}: {key} {shown_value(s, o)} -> the StackSet's "
                             f"{MASK if secret else repr(back)}{change}")
        if kept:
            notes.append(f"kept (UsePreviousValue): {', '.join(kept)}")
        accounts = [a for a, _ in items]
        s.plan("cloudformation", "update_stack_instances", notes, StackSetName=args.stack_set_name,
               DeploymentTargets={"OrganizationalUnitIds": sorted({by_account[a]["ou"] for a in accounts}),
                                  "Accounts": accounts, "AccountFilterType": "INTERSECTION"},
               Regions=[args.region], ParameterOverrides=[{"ParameterKey": k, "UsePreviousValue": True} for k in kept],
               OperationPreferences=preferences)
    if s.send(organization["Id"]):
        print("==> overrides cleared")


# --- destroy ---------------------------------------------------------------------------------------

def what_stays(stack_set, accounts, overrides, preview=False):
    """What a removed stack leaves in its account, and how to clear it."""
    template = parse_template(stack_set.get("TemplateBody") or "{}")
    values = set_values(stack_set)
    accounts = sorted(accounts)
    print(f"==> {'after this, ' if preview else ''}what stays in the {accounts_(len(accounts))} removed, "
          "and how to clear it")
    kept = [(logical, r) for logical, r in (template.get("Resources") or {}).items()
            if isinstance(r, dict) and r.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate", "Snapshot")]
    for logical, resource in kept:
        if resource.get("Type") == "AWS::S3::BucketPolicy":
            continue  # goes with its bucket
        where = f" where condition {resource['Condition']} held" if resource.get("Condition") else ""
        if resource.get("Type") == "AWS::S3::Bucket" and values.get("TrailMode") in ("Off", "Reuse") \
                and logical.startswith("Trail"):
            continue  # TrailMode Off and Reuse make no trail bucket
        print(f"    - {logical} ({resource.get('Type')}, DeletionPolicy {resource['DeletionPolicy']}){where}: "
              f"find it in each account with `aws resourcegroupstaggingapi get-resources --tag-filters "
              f"Key=aws:cloudformation:logical-id,Values={logical}`")
        if resource.get("Type") == "AWS::S3::Bucket":
            print("      a versioned bucket: keep its logs as long as your retention rules require, then delete every "
                  "object version (or let a lifecycle rule expire them) and `aws s3 rb s3://<bucket>`")
    if not any(r.get("Type") == "AWS::Logs::LogGroup" for _, r in kept):
        print("    - log groups: none (the template deletes the function's log group with the stack)")
    window = {a: effective(stack_set, overrides, a, "SecretRecoveryWindowDays") or "7" for a in accounts}
    waiting = [a for a in accounts if window[a] != "0"]
    if waiting:
        days = ", ".join(sorted(set(window[a] for a in waiting)))
        print(f"    - the key's secret (cloud-app-security/<ConnectorName>) in {accounts_(len(waiting))} stays restorable "
              f"for {days} days (SecretRecoveryWindowDays), then Secrets Manager deletes it; to end it now, in that "
              "account: `aws secretsmanager delete-secret --secret-id <name> --force-delete-without-recovery`")
    else:
        print("    - secrets: none (SecretRecoveryWindowDays 0 deleted them at once)")
    portal = [a for a in accounts if not effective(stack_set, overrides, a, "CloudAppSecurityUrl")]
    if portal:
        names = [effective(stack_set, overrides, a, "ConnectorName") or f"aws-{a}" for a in portal]
        print(f"    - portal mode: {len(portal)} connector{'' if len(portal) == 1 else 's'} in the Cloud App Security portal keep a key that no "
              f"longer works; delete them there (Settings, Cloud Apps, App connectors): {shortlist(names)}")
    if len(portal) < len(accounts):
        print("    - call back: each Delete deregistered its connector (best effort): check the portal for any left")
    bucket = f"{values.get('ArtifactBucketPrefix', '<prefix>')}-<region>"
    print(f"    - the code in s3://{bucket}/cloud-app-security-connector/ and that bucket's stack stay for the "
          "remaining accounts or a later rollout")


def destroy(s):
    args = s.args
    stack_set = require_stack_set(s)
    organization = s.organization()
    instances = s.instances()
    accounts = {i["account"] for i in instances}
    overrides = s.overrides(instances) if instances else {}
    call_back = bool(set_values(stack_set).get("CloudAppSecurityUrl"))
    preferences = operation_preferences(args, call_back, what="accounts removed")
    if instances:
        ous = sorted({i["ou"] for i in instances})
        regions = sorted({i["region"] for i in instances})
        s.plan("cloudformation", "delete_stack_instances",
               [f"remove every stack instance: {accounts_(len(accounts))} in {', '.join(ous)} ({', '.join(regions)}): "
                f"{shortlist(accounts)}"],
               StackSetName=args.stack_set_name, DeploymentTargets={"OrganizationalUnitIds": ous}, Regions=regions,
               RetainStacks=False, OperationPreferences=preferences)

    def empty():
        left = s.instances()
        if left:
            sys.exit(f"StackSet {args.stack_set_name} still has {len(left)} stack instances "
                     f"({shortlist(i['account'] for i in left)}): not deleted")

    s.plan("cloudformation", "delete_stack_set", [f"delete StackSet {args.stack_set_name} ({args.region})"],
           check=empty, StackSetName=args.stack_set_name)
    if s.send(organization["Id"], lambda: what_stays(stack_set, accounts, overrides, preview=True)):
        print(f"==> StackSet {args.stack_set_name} deleted")
        what_stays(stack_set, accounts, overrides)


COMMANDS = {"deploy": deploy, "add": add, "remove": remove, "rekey": rekey, "overrides": list_overrides,
            "clear-overrides": clear_overrides, "destroy": destroy}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("--") and argv[0] != "--help":
        argv = ["deploy", *argv]  # the command line of the first releases, without a command
    args = parse_args(argv)
    COMMANDS[args.command](Session(args))


if __name__ == "__main__":
    main()
