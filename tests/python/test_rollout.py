"""The organization rollout command, against moto server's Organizations, S3 and CloudFormation.
moto deploys a StackSet's template itself and cannot run a custom resource's Lambda, so these
runs use a small stand-in template; the real one is checked by cfn-lint and test_templates.py."""

import hashlib
import json
import uuid

import boto3
import pytest

import rollout

STAND_IN = {
    "Parameters": {
        "ArtifactBucketPrefix": {"Type": "String"},
        "ArtifactKey": {"Type": "String"},
        "TrailMode": {"Type": "String", "Default": "Reuse"},
    },
    "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
}


@pytest.fixture
def organization(aws_env):
    """An organization with one OU of two accounts, an artifact bucket, a built zip and a template."""
    kw = dict(endpoint_url=aws_env, region_name="us-east-1")
    org = boto3.client("organizations", **kw)
    try:
        org.create_organization(FeatureSet="ALL")
    except org.exceptions.AlreadyInOrganizationException:
        pass
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name=f"ou-{uuid.uuid4().hex[:8]}")["OrganizationalUnit"]["Id"]
    accounts = []
    for i in range(2):
        status = org.create_account(Email=f"{uuid.uuid4().hex[:8]}@example.com", AccountName=f"a{i}")
        account = status["CreateAccountStatus"]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
        accounts.append(account)
    prefix = f"cas-artifacts-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", **kw).create_bucket(Bucket=f"{prefix}-us-east-1")
    return {"endpoint": aws_env, "ou": ou, "accounts": accounts, "prefix": prefix, "kw": kw}


@pytest.fixture
def files(tmp_path):
    zip_path = tmp_path / "bootstrap.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    template = tmp_path / "stand-in.json"
    template.write_text(json.dumps(STAND_IN))
    return zip_path, template


def run(org, files, name, *extra):
    zip_path, template = files
    rollout.main(["--stack-set-name", name, "--region", "us-east-1", "--ou", org["ou"],
                  "--artifact-bucket-prefix", org["prefix"], "--zip", str(zip_path), "--template", str(template),
                  "--endpoint-url", org["endpoint"], "--poll-seconds", "0.05", *extra])


def test_rollout_uploads_the_code_creates_the_stack_set_and_one_instance_per_account(organization, files, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    run(organization, files, name, "--parameter", "TrailMode=Off")
    out = capsys.readouterr().out
    cf = boto3.client("cloudformation", **organization["kw"])
    stack_set = cf.describe_stack_set(StackSetName=name)["StackSet"]
    assert stack_set["PermissionModel"] == "SERVICE_MANAGED"
    # moto echoes neither AutoDeployment nor Capabilities back: the dry-run test checks that
    # both are asked for.
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack_set["Parameters"]}
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()[:32]
    assert params["ArtifactKey"] == f"cloud-app-security-connector/{digest}.zip"
    assert params["TrailMode"] == "Off"
    s3 = boto3.client("s3", **organization["kw"])
    s3.head_object(Bucket=f"{organization['prefix']}-us-east-1", Key=params["ArtifactKey"])
    instances = cf.list_stack_instances(StackSetName=name)["Summaries"]
    assert sorted(i["Account"] for i in instances) == sorted(organization["accounts"])
    assert {i["Region"] for i in instances} == {"us-east-1"}
    for account in organization["accounts"]:
        assert account in out, "every account's outcome is reported"
    assert "==> done" in out


def test_a_second_rollout_updates_the_stack_set(organization, files, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    run(organization, files, name)
    run(organization, files, name, "--parameter", "TrailMode=Create")
    assert "==> updating StackSet" in capsys.readouterr().out
    cf = boto3.client("cloudformation", **organization["kw"])
    params = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stack_set(StackSetName=name)["StackSet"]["Parameters"]}
    assert params["TrailMode"] == "Create"


def test_more_than_one_region_is_refused(capsys):
    with pytest.raises(SystemExit) as exit:
        rollout.main(["--region", "us-east-1", "--region", "eu-west-1", "--ou", "ou-x", "--artifact-bucket-prefix", "p",
                      "--dry-run"])
    assert exit.value.code == 2
    assert "exactly one --region" in capsys.readouterr().err


def test_the_dry_run_prints_every_call_and_makes_none(files, capsys, monkeypatch):
    # No endpoint and no credentials: any real call would fail.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    zip_path, _ = files
    rollout.main(["--region", "eu-west-1", "--ou", "ou-ab12-34567890", "--ou", "ou-ab12-09876543",
                  "--artifact-bucket-prefix", "cas-artifacts", "--zip", str(zip_path), "--dry-run",
                  "--max-concurrent-percentage", "20"])
    out = capsys.readouterr().out
    calls = [line for line in out.splitlines() if line.startswith("[dry-run] ")]
    assert [c.split("(")[0] for c in calls] == [
        "[dry-run] s3.put_object",
        "[dry-run] cloudformation.describe_stack_set",
        "[dry-run] cloudformation.create_stack_set",
        "[dry-run] cloudformation.create_stack_instances",
    ]
    assert '"Bucket": "cas-artifacts-eu-west-1"' in calls[0]
    create = calls[2]
    assert '"PermissionModel": "SERVICE_MANAGED"' in create and '"CAPABILITY_NAMED_IAM"' in create
    assert '"AutoDeployment": {"Enabled": true, "RetainStacksOnAccountRemoval": false}' in create
    instances = calls[3]
    for expected in ['"ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"', '"MaxConcurrentPercentage": 20',
                     '"Regions": ["eu-west-1"]', "ou-ab12-34567890", "ou-ab12-09876543"]:
        assert expected in instances
