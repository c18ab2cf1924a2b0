"""The Python peer: the custom resource a vendor would ship with crhelper and boto3, doing the
product's portal-mode core with the trail off, and nothing more (no reads for idempotency, no
ownership checks, no drift repair).

Create: CreateUser (path /cloud-app-security/, tagged) → PutUserPolicy (the procedure's 12
actions) → CreateAccessKey → CreateSecret cloud-app-security/<name> holding
{"AccessKeyId", "SecretAccessKey", "UserName"}.
Update: a KeyVersion change rotates the key (GetSecretValue → CreateAccessKey → PutSecretValue →
DeleteAccessKey of the old one); anything else changes nothing.
Delete: ListAccessKeys → DeleteAccessKey each → DeleteUserPolicy → DeleteUser → DeleteSecret
(7-day recovery window).
"""

import json
import os

import boto3
from crhelper import CfnResource

# crhelper's defaults, except sleep_on_delete: by default a Delete sleeps 120 s "for CloudWatch
# Logs" whenever more than 135 s of the function's time are left. ssl_verify: crhelper always
# answers over HTTPS; the bench's stand-in for the presigned URL has a self-signed certificate.
helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0,
                     ssl_verify=os.environ.get("CFN_RESPONSE_CA_FILE"))
iam = boto3.client("iam")
secrets = boto3.client("secretsmanager")

PATH = "/cloud-app-security/"
POLICY_NAME = "CloudAppSecurityAuditing"
POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Action": [
            "cloudtrail:DescribeTrails", "cloudtrail:LookupEvents", "cloudtrail:GetTrailStatus",
            "cloudwatch:Describe*", "cloudwatch:Get*", "cloudwatch:List*",
            "iam:List*", "iam:Get*",
            "s3:ListAllMyBuckets", "s3:PutBucketAcl", "s3:GetBucketAcl", "s3:GetBucketLocation",
        ],
        "Effect": "Allow",
        "Resource": "*",
    }],
})


def names(event):
    props = event["ResourceProperties"]
    arn_parts = event["StackId"].split(":")
    partition, account = arn_parts[1], arn_parts[4]
    connector = props.get("ConnectorName") or f"aws-{account}"
    user = f"CloudAppSecurity-{connector}"[:64]
    arn = f"arn:{partition}:iam::{account}:user{PATH}{user}"
    return user, f"cloud-app-security/{connector}", arn


def tags(event, arn):
    owned = {
        "cloud-app-security:stack-id": event["StackId"],
        "cloud-app-security:logical-id": event["LogicalResourceId"],
        "cloud-app-security:physical-id": arn,
    }
    extra = event["ResourceProperties"].get("Tags") or []
    if isinstance(extra, dict):
        extra = [{"Key": k, "Value": v} for k, v in extra.items()]
    return [{"Key": k, "Value": v} for k, v in owned.items()] + list(extra)


def secret_value(key):
    return json.dumps({"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"],
                       "UserName": key["UserName"]})


@helper.create
def create(event, _context):
    user, secret_name, arn = names(event)
    all_tags = tags(event, arn)
    created = iam.create_user(UserName=user, Path=PATH, Tags=all_tags)["User"]
    iam.put_user_policy(UserName=user, PolicyName=POLICY_NAME, PolicyDocument=POLICY)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    secret = secrets.create_secret(Name=secret_name, SecretString=secret_value(key), Tags=all_tags)
    helper.Data.update(UserName=user, UserArn=created["Arn"], AccessKeyId=key["AccessKeyId"],
                       SecretArn=secret["ARN"])
    return created["Arn"]


@helper.update
def update(event, _context):
    user, secret_name, arn = names(event)
    new, old = event["ResourceProperties"], event.get("OldResourceProperties") or {}
    if new.get("KeyVersion", "1") == old.get("KeyVersion", "1"):
        return event["PhysicalResourceId"]
    stored = json.loads(secrets.get_secret_value(SecretId=secret_name)["SecretString"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    secrets.put_secret_value(SecretId=secret_name, SecretString=secret_value(key))
    iam.delete_access_key(UserName=user, AccessKeyId=stored["AccessKeyId"])
    helper.Data.update(UserName=user, AccessKeyId=key["AccessKeyId"])
    return event["PhysicalResourceId"]


@helper.delete
def delete(event, _context):
    user, secret_name, _arn = names(event)
    try:
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        iam.delete_user_policy(UserName=user, PolicyName=POLICY_NAME)
        iam.delete_user(UserName=user)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        secrets.delete_secret(SecretId=secret_name, RecoveryWindowInDays=7)
    except secrets.exceptions.ResourceNotFoundException:
        pass


def handler(event, context):
    helper(event, context)
