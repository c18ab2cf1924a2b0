"""Writes events for `sam local invoke` against a sandbox AWS account (README, "Deploying").

`sam local invoke` runs the function in a Docker container on Docker's bridge network, with the
caller's own credentials: 127.0.0.1 there is the container, and the function sends its answer only
to an https URL of the AWS partition or to loopback. So these events do what CloudFormation does:
the ResponseURL is a presigned S3 PUT URL (to a bucket of yours), and the answer is read back from
the bucket. They run in portal mode (no call back: its http stand-in would have to be on loopback),
with TrailMode Off (no trail, no CloudTrail bill), a throw-away permissions boundary for the user
the function creates, and SecretRecoveryWindowDays 0 (the Delete removes the secret at once).

  python3 scripts/local_invoke_events.py --bucket my-sandbox-bucket --region eu-west-1

writes .local-run/sam-invoke/{create,delete,env}.json and boundary.json and prints the commands to
run, in order, including the clean-up. Needs boto3 (./scripts/rollout.sh's virtualenv has it:
.venv/rollout/bin/python) and credentials for the sandbox account.
"""

import argparse
import copy
import json
import os
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
    p.add_argument("--region", required=True)
    p.add_argument("--connector-name", default="local-invoke")
    p.add_argument("--out", default=OUT, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def event(name):
    with open(os.path.join(REPO, "events", f"{name}.json")) as f:
        return json.load(f)


def main(argv=None):
    import boto3

    args = parse_args(argv)
    identity = boto3.client("sts", region_name=args.region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    run = uuid.uuid4().hex[:12]
    stack_id = f"arn:{partition}:cloudformation:{args.region}:{account}:stack/cas-local-invoke/{uuid.uuid4()}"
    user = f"CloudAppSecurity-{args.connector_name}"
    physical_id = f"arn:{partition}:iam::{account}:user/cloud-app-security/{user}"
    boundary_arn = f"arn:{partition}:iam::{account}:policy/{BOUNDARY_NAME}"
    s3 = boto3.client("s3", region_name=args.region)
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
        with open(path, "w") as f:
            json.dump(e, f, indent=2)
        written[name] = (path, key)

    # The function serves only the stack it names (CLOUD_APP_SECURITY_STACK_ID): these events' stack.
    env = os.path.join(args.out, "env.json")
    with open(env, "w") as f:
        json.dump({"ConnectorFunction": {"CLOUD_APP_SECURITY_ALLOWED_HOSTS": "", "CLOUD_APP_SECURITY_STACK_ID": stack_id,
                                         "CLOUD_APP_SECURITY_URL_SUFFIX": "amazonaws.com"}}, f, indent=2)

    boundary = os.path.join(args.out, "boundary.json")
    with open(boundary, "w") as f:
        json.dump({"Version": "2012-10-17",
                   "Statement": [{"Effect": "Allow", "Action": PROCEDURE_ACTIONS, "Resource": "*"}]}, f, indent=2)

    rel = os.path.relpath
    r, b = args.region, args.bucket
    print(f"""Written: {rel(written['create'][0])}, {rel(written['delete'][0])}, {rel(boundary)} (account {account}).
The presigned URLs expire in 2 hours. Run, in order:

  aws iam create-policy --policy-name {BOUNDARY_NAME} --policy-document file://{rel(boundary)}
  sam build && sam local invoke --region {r} --event {rel(written['create'][0])} --env-vars {rel(env)}
  aws s3 cp s3://{b}/{written['create'][1]} - --region {r}    # the answer CloudFormation would get
  sam local invoke --region {r} --event {rel(written['delete'][0])} --env-vars {rel(env)}
  aws s3 cp s3://{b}/{written['delete'][1]} - --region {r}
  aws iam delete-policy --policy-arn {boundary_arn}
  aws s3 rm s3://{b}/cas-local-invoke/{run}/ --recursive --region {r}

If the Delete did not answer SUCCESS, remove what the Create made by hand:

  for k in $(aws iam list-access-keys --user-name {user} --query 'AccessKeyMetadata[].AccessKeyId' --output text); do
    aws iam delete-access-key --user-name {user} --access-key-id "$k"; done
  aws iam delete-user-policy --user-name {user} --policy-name CloudAppSecurityAuditing
  aws iam delete-user --user-name {user}
  aws secretsmanager delete-secret --secret-id cloud-app-security/{args.connector_name} --force-delete-without-recovery --region {r}
""")
    return written


if __name__ == "__main__":
    main()
