"""Writes events for `sam local invoke` against a sandbox AWS account (README, "Deploying").

`sam local invoke` runs the function in a Docker container on Docker's bridge network, with the
caller's own credentials: 127.0.0.1 there is the container, and the function sends its answer only
to an https URL of the AWS partition or to loopback. So these events do what CloudFormation does:
the ResponseURL is a presigned S3 PUT URL (to a bucket of yours), and the answer is read back from
the bucket. They run in portal mode (no call back: its http stand-in would have to be on loopback),
with TrailMode Off (no trail, no CloudTrail bill), a throw-away permissions boundary for the user
the function creates, and SecretRecoveryWindowDays 0 (the Delete removes the secret at once).

  python3 scripts/local_invoke_events.py --bucket my-sandbox-bucket --region eu-west-1

One region for everything: --region must be the bucket's region (S3 refuses a PUT presigned for
another region, so the answer would be lost while `sam` still exits 0; the script checks) and the
region you pass to `sam local invoke --region` (the events name a stack of that region, and the
function serves only that stack).

writes .local-run/sam-invoke/{create,delete,env}.json and boundary.json and prints the commands to
run, in order, including the clean-up. create.json and delete.json hold presigned URLs (valid 2
hours): they are readable only by you, and the last printed command removes them. Needs boto3 and
credentials for the sandbox account; run with a Python without boto3, it runs itself again with the
repository's virtualenv (.venv/bin/python, created by scripts/venv.sh if missing).

Not the same as scripts/local-invoke.sh, which runs `sam local invoke` through podman against moto
server (no AWS account) in the test command.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, ".local-run", "sam-invoke")
BOUNDARY_NAME = "cas-local-invoke-boundary"
# Microsoft's procedure: the most the test user may ever do.
PROCEDURE_ACTIONS = [
    "cloudtrail:DescribeTrails", "cloudtrail:LookupEvents", "cloudtrail:GetTrailStatus", "cloudwatch:Describe*",
    "cloudwatch:Get*", "cloudwatch:List*", "iam:List*", "iam:Get*", "s3:ListAllMyBuckets", "s3:PutBucketAcl",
    "s3:GetBucketAcl", "s3:GetBucketLocation",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bucket", required=True, help="an S3 bucket of yours in the sandbox account for the answers")
    p.add_argument("--region", required=True,
                   help="the bucket's region, and the one to pass to `sam local invoke --region`: the presigned"
                        " answer URL must be in the region of the invocation")
    p.add_argument("--connector-name", default="local-invoke")
    p.add_argument("--out", default=OUT, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def event(name):
    with open(os.path.join(REPO, "events", f"{name}.json")) as f:
        return json.load(f)


def boto3_or_venv():
    """boto3, or this script run again by the repository's virtualenv (which has it)."""
    try:
        import boto3
        return boto3
    except ImportError:
        venv = os.path.join(REPO, ".venv", "bin", "python")
        if os.path.realpath(sys.executable) == os.path.realpath(venv) or os.environ.get("CAS_EVENTS_REEXEC"):
            sys.exit("boto3 is missing from .venv/: run scripts/venv.sh")
        if not os.path.exists(venv):
            subprocess.run(["bash", os.path.join(REPO, "scripts", "venv.sh")], check=True)
        os.environ["CAS_EVENTS_REEXEC"] = "1"
        os.execv(venv, [venv, os.path.abspath(__file__)] + sys.argv[1:])


def url_suffix(partition):
    """The partition's DNS suffix (amazonaws.com, amazonaws.com.cn, ...), from botocore's endpoint data."""
    from botocore.loaders import create_loader

    for p in create_loader().load_data("endpoints")["partitions"]:
        if p["partition"] == partition:
            return p["dnsSuffix"]
    sys.exit(f"unknown partition {partition!r}: no URL suffix known for it")


def main(argv=None):
    args = parse_args(argv)
    boto3 = boto3_or_venv()
    identity = boto3.client("sts", region_name=args.region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    run = uuid.uuid4().hex[:12]
    stack_id = f"arn:{partition}:cloudformation:{args.region}:{account}:stack/cas-local-invoke/{uuid.uuid4()}"
    user = f"CloudAppSecurity-{args.connector_name}"
    physical_id = f"arn:{partition}:iam::{account}:user/cloud-app-security/{user}"
    boundary_arn = f"arn:{partition}:iam::{account}:policy/{BOUNDARY_NAME}"
    s3 = boto3.client("s3", region_name=args.region)
    # us-east-1 buckets answer None.
    bucket_region = s3.get_bucket_location(Bucket=args.bucket).get("LocationConstraint") or "us-east-1"
    if bucket_region != args.region:
        sys.exit(f"the bucket {args.bucket} is in {bucket_region}, not --region {args.region}: the answer URL"
                 f" must be presigned in the region of the invocation (pass --region {bucket_region} here and"
                 " to sam local invoke, or use a bucket of that region)")
    os.makedirs(args.out, exist_ok=True)

    written = {}
    for name in ("create", "delete"):
        e = copy.deepcopy(event(name))
        key = f"cas-local-invoke/{run}/{name}.json"
        e["ResponseURL"] = s3.generate_presigned_url("put_object", Params={"Bucket": args.bucket, "Key": key},
                                                     ExpiresIn=7200)
        e["StackId"] = stack_id
        e["RequestId"] = str(uuid.uuid4())
        e["ServiceToken"] = f"arn:{partition}:lambda:{args.region}:{account}:function:cas-local-invoke"
        # A Delete carries the resource's current properties: the Create's.
        props = e["ResourceProperties"] = copy.deepcopy(event("create")["ResourceProperties"])
        props["ServiceToken"] = e["ServiceToken"]
        for gone in ("CloudAppSecurityUrl", "CloudAppSecurityCredentials", "TrailBucket"):
            props.pop(gone, None)
        props.update(ConnectorName=args.connector_name, TrailMode="Off", PermissionsBoundary=boundary_arn,
                     SecretRecoveryWindowDays="0")
        if "PhysicalResourceId" in e:
            e["PhysicalResourceId"] = physical_id
        path = os.path.join(args.out, f"{name}.json")
        # It holds a presigned URL: readable by its owner only, removed after use (printed below).
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(e, f, indent=2)
        written[name] = (path, key)

    # The function serves only the stack it names (CLOUD_APP_SECURITY_STACK_ID): these events' stack.
    env = os.path.join(args.out, "env.json")
    with open(env, "w") as f:
        json.dump({"ConnectorFunction": {"CLOUD_APP_SECURITY_ALLOWED_HOSTS": "", "CLOUD_APP_SECURITY_STACK_ID": stack_id,
                                         "CLOUD_APP_SECURITY_URL_SUFFIX": url_suffix(partition)}}, f, indent=2)

    boundary = os.path.join(args.out, "boundary.json")
    with open(boundary, "w") as f:
        json.dump({"Version": "2012-10-17",
                   "Statement": [{"Effect": "Allow", "Action": PROCEDURE_ACTIONS, "Resource": "*"}]}, f, indent=2)

    rel = os.path.relpath
    r, b = args.region, args.bucket
    print(f"""Written: {rel(written['create'][0])}, {rel(written['delete'][0])}, {rel(boundary)} (account {account}).
The presigned URLs (in create.json and delete.json) expire in 2 hours. Run, in order, with this same
region ({r}) for the invokes:

  aws iam create-policy --policy-name {BOUNDARY_NAME} --policy-document file://{rel(boundary)}
  sam build && sam local invoke --region {r} --event {rel(written['create'][0])} --env-vars {rel(env)}
  aws s3 cp s3://{b}/{written['create'][1]} - --region {r}    # the answer CloudFormation would get
  sam local invoke --region {r} --event {rel(written['delete'][0])} --env-vars {rel(env)}
  aws s3 cp s3://{b}/{written['delete'][1]} - --region {r}

If the Delete did not answer SUCCESS, remove what the Create made by hand, before the boundary (IAM
refuses to delete a policy a user still has as its boundary):

  for k in $(aws iam list-access-keys --user-name {user} --query 'AccessKeyMetadata[].AccessKeyId' --output text); do
    aws iam delete-access-key --user-name {user} --access-key-id "$k"; done
  aws iam delete-user-policy --user-name {user} --policy-name CloudAppSecurityAuditing
  for p in $(aws iam list-attached-user-policies --user-name {user} --query 'AttachedPolicies[].PolicyArn' --output text); do
    aws iam detach-user-policy --user-name {user} --policy-arn "$p"; done
  aws iam delete-user --user-name {user}
  aws secretsmanager delete-secret --secret-id cloud-app-security/{args.connector_name} --force-delete-without-recovery --region {r}

Then the boundary, the answers and the files holding the presigned URLs:

  aws iam delete-policy --policy-arn {boundary_arn}
  aws s3 rm s3://{b}/cas-local-invoke/{run}/ --recursive --region {r}
  rm -f {rel(written['create'][0])} {rel(written['delete'][0])}
""")
    return written


if __name__ == "__main__":
    main()
