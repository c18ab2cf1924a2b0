"""The events scripts/local_invoke_events.py writes for `sam local invoke`, against moto server."""

import json
import urllib.request
import uuid

import boto3

import local_invoke_events


def test_the_events_answer_to_a_presigned_s3_url_in_portal_mode_with_a_boundary(aws_env, tmp_path, capsys,
                                                                                 monkeypatch):
    bucket = f"sandbox-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    written = local_invoke_events.main(["--bucket", bucket, "--region", "us-east-1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    account = boto3.client("sts", endpoint_url=aws_env, region_name="us-east-1").get_caller_identity()["Account"]
    create = json.loads((tmp_path / "create.json").read_text())
    delete = json.loads((tmp_path / "delete.json").read_text())
    assert create["StackId"] == delete["StackId"] and f":{account}:stack/" in create["StackId"]
    assert delete["PhysicalResourceId"] == f"arn:aws:iam::{account}:user/cloud-app-security/CloudAppSecurity-local-invoke"
    for e in (create, delete):
        props = e["ResourceProperties"]
        assert "CloudAppSecurityUrl" not in props and "CloudAppSecurityCredentials" not in props
        assert props["TrailMode"] == "Off" and props["SecretRecoveryWindowDays"] == "0"
        assert props["PermissionsBoundary"] == f"arn:aws:iam::{account}:policy/cas-local-invoke-boundary"
    assert create["ResourceProperties"] == delete["ResourceProperties"]
    env = json.loads((tmp_path / "env.json").read_text())["ConnectorFunction"]
    assert env["CLOUD_APP_SECURITY_STACK_ID"] == create["StackId"]
    boundary = json.loads((tmp_path / "boundary.json").read_text())
    assert len(boundary["Statement"][0]["Action"]) == 12

    # The function PUTs its answer with an empty Content-Type, as to CloudFormation's URL.
    request = urllib.request.Request(create["ResponseURL"], data=b'{"Status": "SUCCESS"}', method="PUT",
                                     headers={"Content-Type": ""})
    urllib.request.urlopen(request).read()
    key = written["create"][1]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"Status": "SUCCESS"}'
    assert f"aws s3 cp s3://{bucket}/{key} -" in out
    assert "aws iam delete-policy" in out and "--force-delete-without-recovery" in out
