"""Rolls the connector out to every account of some organizational units: one service-managed
StackSet, one stack instance per account, in one region.

  rollout.py --stack-set-name cloud-app-security --region eu-west-1 --ou ou-ab12-xxxxxxxx \\
             --artifact-bucket-prefix my-cas-artifacts [--zip bootstrap.zip] \\
             [--parameter TrailMode=Reuse ...] [--dry-run]

Steps: build the arm64 zip (or take --zip), upload it to <prefix>-<region> under a key naming its
digest, create or update the StackSet (service-managed, auto-deployment on,
CAPABILITY_NAMED_IAM), add instances for the OUs in that region, wait, and report every
account's outcome. IAM is global: a second region would make two stacks fight over one IAM user,
so exactly one region is accepted. Service-managed StackSets never deploy to the management
account: deploy template.yaml there with SAM if it needs a connector.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "deploy", "stackset.yaml")
DONE = {"SUCCEEDED", "FAILED", "STOPPED"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack-set-name", default="cloud-app-security-connector")
    p.add_argument("--region", action="append", required=True,
                   help="the one region of the stack instances (and of the artifact bucket)")
    p.add_argument("--ou", action="append", required=True, help="organizational unit id (repeatable)")
    p.add_argument("--artifact-bucket-prefix", required=True, help="bucket <prefix>-<region> holds the code")
    p.add_argument("--zip", help="an already built bootstrap zip (default: build it with cargo lambda)")
    p.add_argument("--template", default=TEMPLATE, help="the StackSet template (default: deploy/stackset.yaml)")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="a StackSet template parameter (repeatable)")
    p.add_argument("--max-concurrent-percentage", type=int, default=25)
    p.add_argument("--failure-tolerance-percentage", type=int, default=10)
    p.add_argument("--poll-seconds", type=float, default=15)
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help=argparse.SUPPRESS)
    p.add_argument("--dry-run", action="store_true", help="print every call instead of making it")
    args = p.parse_args(argv)
    if len(args.region) != 1:
        p.error("exactly one --region: IAM is global, and two stack instances in one account would fight over "
                "the same IAM user (the trail is multi-region anyway)")
    args.region = args.region[0]
    for item in args.parameter:
        if "=" not in item:
            p.error(f"--parameter {item!r}: expected KEY=VALUE")
    return args


class Calls:
    """Makes AWS calls, or in a dry run prints them."""

    def __init__(self, args):
        self.dry_run = args.dry_run
        self.clients = {}
        self.args = args

    def client(self, service):
        if service not in self.clients:
            import boto3
            self.clients[service] = boto3.client(service, region_name=self.args.region,
                                                 endpoint_url=self.args.endpoint_url)
        return self.clients[service]

    def __call__(self, service, operation, **params):
        if self.dry_run:
            shown = {k: (f"<{len(v)} bytes>" if k in ("TemplateBody", "Body") else v) for k, v in params.items()}
            print(f"[dry-run] {service}.{operation}({json.dumps(shown, default=str, sort_keys=True)})")
            return None
        return getattr(self.client(service), operation)(**params)


def build_zip():
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


def stack_set_exists(calls, args):
    if calls.dry_run:
        print(f"[dry-run] cloudformation.describe_stack_set({json.dumps({'StackSetName': args.stack_set_name})})")
        return False
    client = calls.client("cloudformation")
    try:
        client.describe_stack_set(StackSetName=args.stack_set_name)
        return True
    except client.exceptions.StackSetNotFoundException:
        return False


def wait(calls, args, operation_id, what):
    if calls.dry_run or operation_id is None:
        return "SUCCEEDED"
    client = calls.client("cloudformation")
    while True:
        op = client.describe_stack_set_operation(StackSetName=args.stack_set_name, OperationId=operation_id)
        status = op["StackSetOperation"]["Status"]
        counts = {}
        for summary in paged(client, "list_stack_set_operation_results", StackSetName=args.stack_set_name,
                             OperationId=operation_id):
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
    for s in paged(client, "list_stack_instances", StackSetName=args.stack_set_name, StackInstanceRegion=args.region):
        detail = (s.get("StackInstanceStatus") or {}).get("DetailedStatus", "")
        ok = s.get("Status") == "CURRENT" and detail in ("", "SUCCEEDED")
        reason = s.get("StatusReason") or ""
        print(f"    {s['Account']} {s['Region']} {s.get('Status')} {detail} {reason}".rstrip())
        if not ok:
            failed.append((s["Account"], reason or detail or s.get("Status")))
    return failed


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    calls = Calls(args)
    path = args.zip or (None if args.dry_run else build_zip())
    key = upload(calls, args, path) if path else "cloud-app-security-connector/<digest>.zip"
    if path is None:
        print("[dry-run] would build the arm64 zip with cargo lambda and upload it")

    with open(args.template) as f:
        body = f.read()
    parameters = [{"ParameterKey": "ArtifactBucketPrefix", "ParameterValue": args.artifact_bucket_prefix},
                  {"ParameterKey": "ArtifactKey", "ParameterValue": key}]
    parameters += [{"ParameterKey": k, "ParameterValue": v} for k, v in (p.split("=", 1) for p in args.parameter)]
    preferences = {
        "RegionConcurrencyType": "SEQUENTIAL",
        "MaxConcurrentPercentage": args.max_concurrent_percentage,
        "FailureTolerancePercentage": args.failure_tolerance_percentage,
        # Keep going across the organization while failures stay within the tolerance.
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
    }
    targets = {"OrganizationalUnitIds": args.ou}
    common = dict(StackSetName=args.stack_set_name, TemplateBody=body, Parameters=parameters,
                  Capabilities=["CAPABILITY_NAMED_IAM"])

    if stack_set_exists(calls, args):
        print(f"==> updating StackSet {args.stack_set_name}")
        op = calls("cloudformation", "update_stack_set", **common, DeploymentTargets=targets,
                   Regions=[args.region], OperationPreferences=preferences)
        status = wait(calls, args, op and op["OperationId"], "update")
        if status != "SUCCEEDED":
            report(calls, args)
            sys.exit(f"the StackSet update ended {status}")
    else:
        print(f"==> creating StackSet {args.stack_set_name} (service-managed, auto-deployment on)")
        calls("cloudformation", "create_stack_set", **common, PermissionModel="SERVICE_MANAGED",
              AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
              ManagedExecution={"Active": True})

    print(f"==> stack instances for {', '.join(args.ou)} in {args.region}")
    op = calls("cloudformation", "create_stack_instances", StackSetName=args.stack_set_name,
               DeploymentTargets=targets, Regions=[args.region], OperationPreferences=preferences)
    status = wait(calls, args, op and op["OperationId"], "instances")
    failed = report(calls, args)
    for account, reason in failed:
        print(f"FAILED {account}: {reason}", file=sys.stderr)
    if failed or status != "SUCCEEDED":
        sys.exit(f"{len(failed)} account(s) failed; the operation ended {status}")
    print("==> done")


if __name__ == "__main__":
    main()
