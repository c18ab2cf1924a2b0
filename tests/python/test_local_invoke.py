"""The events scripts/local_invoke_events.py writes for `sam local invoke`, against moto server."""

import json
import os
import stat
import urllib.request
import uuid

import boto3
import pytest

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
    assert env["CLOUD_APP_SECURITY_URL_SUFFIX"] == "amazonaws.com"  # the partition's (aws)
    # The files with presigned URLs are their owner's only, and the printed steps remove them.
    for name in ("create", "delete"):
        assert stat.S_IMODE(os.stat(tmp_path / f"{name}.json").st_mode) == 0o600
        assert f"{name}.json" in out.split("rm -f ")[-1]
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
    # The user that has the boundary goes first: IAM refuses to delete a boundary in use.
    assert out.index("aws iam delete-user ") < out.index("aws iam delete-policy")


def test_the_events_refuse_a_bucket_of_another_region(aws_env, tmp_path, monkeypatch):
    bucket = f"sandbox-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=aws_env, region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    with pytest.raises(SystemExit) as exit:
        local_invoke_events.main(["--bucket", bucket, "--region", "us-east-1", "--out", str(tmp_path)])
    assert "is in eu-west-1, not --region us-east-1" in str(exit.value)
    assert not list(tmp_path.iterdir())


def test_the_url_suffix_is_the_partitions():
    assert local_invoke_events.url_suffix("aws-cn") == "amazonaws.com.cn"
    assert local_invoke_events.url_suffix("aws-us-gov") == "amazonaws.com"
