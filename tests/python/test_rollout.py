"""The organization rollout command, against moto server's Organizations, S3 and CloudFormation.
moto deploys a StackSet's template itself and cannot run a custom resource's Lambda, so these
runs use a stand-in template: the real StackSet template's Parameters section (read from
deploy/stackset.yaml, so the parameter list is the shipped one) and one trivial resource. The real
template's resources are checked by cfn-lint and test_templates.py.

moto honours UsePreviousValue in UpdateStackSet (it copies the stored value; a key the StackSet does
not have is an error there too), but it stores only the parameters a call names, never the
template's defaults: so the tests check both what the rollout sends and what moto then holds."""

import hashlib
import json
import os
import uuid

import boto3
import pytest
import yaml

import rollout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(REPO, "deploy", "stackset.yaml")) as _f:
    REAL_PARAMETERS = yaml.safe_load(_f)["Parameters"]
NO_ECHO = sorted(k for k, v in REAL_PARAMETERS.items() if v.get("NoEcho"))
TOKEN = "tok-" + uuid.uuid4().hex  # a NoEcho value that must never be printed


def stand_in(parameters=None):
    return {"Parameters": dict(REAL_PARAMETERS if parameters is None else parameters),
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}}


def test_the_stand_in_has_the_shipped_parameters_and_their_no_echo_ones():
    assert {"ArtifactBucketPrefix", "ArtifactKey", "KeyVersion", "ConnectorName", "CloudAppSecurityUrl"} <= set(
        REAL_PARAMETERS)
    assert {"ApiToken", "EntraClientSecret"} <= set(NO_ECHO)


@pytest.fixture
def organization(aws_env):
    """An organization with one OU of two accounts and an artifact bucket."""
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
    """A built zip (rewrite it for new code) and the stand-in template (rewrite it for a new version)."""
    zip_path = tmp_path / "bootstrap.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    template = tmp_path / "stand-in.json"
    template.write_text(json.dumps(stand_in()))
    return zip_path, template


@pytest.fixture
def sent(monkeypatch):
    """Every AWS call the rollout makes, as (operation, parameters), recorded as boto3 sends it."""
    calls = []
    real = boto3.client

    def client(service, *a, **kw):
        c = real(service, *a, **kw)
        c.meta.events.register(f"provide-client-params.{service}.*",
                               lambda params, model, **_: calls.append((model.name, dict(params))))
        return c

    monkeypatch.setattr(boto3, "client", client)
    return calls


def run(org, files, name, *extra):
    zip_path, template = files
    rollout.main(["--stack-set-name", name, "--region", "us-east-1", "--ou", org["ou"],
                  "--artifact-bucket-prefix", org["prefix"], "--zip", str(zip_path), "--template", str(template),
                  "--endpoint-url", org["endpoint"], "--poll-seconds", "0.05", *extra])


def stored(org, name):
    cf = boto3.client("cloudformation", **org["kw"])
    return {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stack_set(StackSetName=name)["StackSet"]["Parameters"]}


def dry_run_calls(out):
    return [line for line in out.splitlines() if line.startswith("[dry-run] ")]


def test_rollout_uploads_the_code_creates_the_stack_set_and_one_instance_per_account(organization, files, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    run(organization, files, name, "--parameter", "TrailMode=Off")
    out = capsys.readouterr().out
    cf = boto3.client("cloudformation", **organization["kw"])
    stack_set = cf.describe_stack_set(StackSetName=name)["StackSet"]
    assert stack_set["PermissionModel"] == "SERVICE_MANAGED"
    # moto echoes neither AutoDeployment nor Capabilities back: the dry-run test checks that
    # both are asked for.
    params = stored(organization, name)
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


def test_a_rollout_that_names_no_parameter_keeps_every_parameter_as_it_was(organization, files, sent, capsys,
                                                                          monkeypatch):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    first = {"ConnectorName": "finance-prod", "KeyVersion": "7", "Connections": "SecurityAuditing,SecurityConfiguration",
             "TrailMode": "Off", "CloudAppSecurityUrl": "https://contoso.us2.portal.cloudappsecurity.com",
             "LogRetentionDays": "365"}
    monkeypatch.setenv("CAS_PARAMETER_ApiToken", TOKEN)
    run(organization, files, name, *[a for k, v in first.items() for a in ("--parameter", f"{k}={v}")])
    before = stored(organization, name)
    assert before["ApiToken"] == TOKEN and before["KeyVersion"] == "7"

    # New code, nothing named, no credential in the environment any more.
    monkeypatch.delenv("CAS_PARAMETER_ApiToken")
    files[0].write_bytes(b"PK\x05\x06" + b"\1" * 18)
    capsys.readouterr()
    sent.clear()
    run(organization, files, name)
    out, err = capsys.readouterr()

    update = [params for op, params in sent if op == "UpdateStackSet"]
    assert len(update) == 1
    parameters = {p["ParameterKey"]: p for p in update[0]["Parameters"]}
    # What the rollout sends: the new code, the prefix, and UsePreviousValue for everything else
    # the StackSet has, the NoEcho credential included; nothing for parameters it does not have.
    kept = set(before) - {"ArtifactKey", "ArtifactBucketPrefix"}
    assert kept == set(first) | {"ApiToken"}
    for key in kept:
        assert parameters[key] == {"ParameterKey": key, "UsePreviousValue": True}, key
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()[:32]
    assert parameters["ArtifactKey"]["ParameterValue"] == f"cloud-app-security-connector/{digest}.zip"
    assert set(parameters) == kept | {"ArtifactKey", "ArtifactBucketPrefix"}
    # What moto then holds: everything as it was but the code.
    after = stored(organization, name)
    assert after == dict(before, ArtifactKey=parameters["ArtifactKey"]["ParameterValue"])
    # What the operator is told.
    changed = [line for line in out.splitlines() if "parameters changed:" in line]
    assert changed == [f"    parameters changed: ArtifactKey: {before['ArtifactKey']!r} -> {after['ArtifactKey']!r}"]
    assert "kept as deployed (UsePreviousValue):" in out and "KeyVersion" in out
    # The call back is still on (from the deployed value): the concurrency cap holds.
    for op in ("UpdateStackSet", "CreateStackInstances"):
        (params,) = [p for o, p in sent if o == op]
        assert params["OperationPreferences"]["MaxConcurrentCount"] == rollout.CALL_BACK_MAX_CONCURRENT_COUNT
        assert "MaxConcurrentPercentage" not in params["OperationPreferences"]
    assert TOKEN not in out + err


def test_a_parameter_new_in_this_template_version_takes_its_default(organization, files, sent, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    zip_path, template = files
    older = {k: v for k, v in REAL_PARAMETERS.items() if k != "LogRetentionDays"}
    template.write_text(json.dumps(stand_in(older)))
    run(organization, files, name, "--parameter", "KeyVersion=3")
    template.write_text(json.dumps(stand_in()))
    capsys.readouterr()
    sent.clear()
    run(organization, files, name)  # moto, like CloudFormation, refuses UsePreviousValue on a new key
    out = capsys.readouterr().out
    (update,) = [params for op, params in sent if op == "UpdateStackSet"]
    keys = [p["ParameterKey"] for p in update["Parameters"]]
    assert "LogRetentionDays" not in keys
    assert {"ParameterKey": "KeyVersion", "UsePreviousValue": True} in update["Parameters"]
    assert f"new in this template, defaults: LogRetentionDays = '{REAL_PARAMETERS['LogRetentionDays']['Default']}'\n" in out
    assert stored(organization, name)["KeyVersion"] == "3"


def test_a_given_parameter_changes_and_is_reported(organization, files, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    run(organization, files, name, "--parameter", "TrailMode=Off")
    capsys.readouterr()
    run(organization, files, name, "--parameter", "TrailMode=Create")
    out = capsys.readouterr().out
    assert "==> updating StackSet" in out
    assert "parameters changed: TrailMode: 'Off' -> 'Create'" in out
    assert stored(organization, name)["TrailMode"] == "Create"


def test_every_stack_set_call_acts_as_the_delegated_administrator(organization, files, sent):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    run(organization, files, name, "--call-as", "DELEGATED_ADMIN")
    run(organization, files, name, "--call-as", "DELEGATED_ADMIN")
    cloudformation = [(op, params) for op, params in sent if op not in ("PutObject",)]
    assert {op for op, _ in cloudformation} >= {"DescribeStackSet", "CreateStackSet", "UpdateStackSet",
                                                "CreateStackInstances", "DescribeStackSetOperation",
                                                "ListStackSetOperationResults", "ListStackInstances"}
    for op, params in cloudformation:
        assert params.get("CallAs") == "DELEGATED_ADMIN", op


def test_more_than_one_region_is_refused(capsys):
    with pytest.raises(SystemExit) as exit:
        rollout.main(["--region", "us-east-1", "--region", "eu-west-1", "--ou", "ou-x", "--artifact-bucket-prefix", "p",
                      "--dry-run"])
    assert exit.value.code == 2
    assert "exactly one --region" in capsys.readouterr().err


@pytest.fixture
def offline(monkeypatch):
    """No endpoint and no credentials: any real call fails (a dry run reads only, and copes)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for key in NO_ECHO:
        monkeypatch.delenv(f"CAS_PARAMETER_{key}", raising=False)


def dry_run(files, *extra):
    zip_path, _ = files
    rollout.main(["--region", "eu-west-1", "--ou", "ou-ab12-34567890", "--ou", "ou-ab12-09876543",
                  "--artifact-bucket-prefix", "cas-artifacts", "--zip", str(zip_path), "--dry-run", *extra])


def test_the_dry_run_prints_every_call_and_changes_nothing(files, capsys, offline):
    dry_run(files, "--max-concurrent-percentage", "20")
    out = capsys.readouterr().out
    assert "cannot read StackSet" in out
    calls = dry_run_calls(out)
    assert [c.split("(")[0] for c in calls] == [
        "[dry-run] s3.put_object",
        "[dry-run] cloudformation.create_stack_set",
        "[dry-run] cloudformation.create_stack_instances",
    ]
    assert '"Bucket": "cas-artifacts-eu-west-1"' in calls[0]
    create = calls[1]
    assert '"PermissionModel": "SERVICE_MANAGED"' in create and '"CAPABILITY_NAMED_IAM"' in create
    assert '"AutoDeployment": {"Enabled": true, "RetainStacksOnAccountRemoval": false}' in create
    assert '"CallAs": "SELF"' in create
    instances = calls[2]
    for expected in ['"ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"', '"MaxConcurrentPercentage": 20',
                     '"Regions": ["eu-west-1"]', "ou-ab12-34567890", "ou-ab12-09876543", '"CallAs": "SELF"']:
        assert expected in instances


def test_no_echo_values_come_from_the_environment_or_a_file_and_are_never_printed(files, capsys, offline,
                                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("CAS_PARAMETER_ApiToken", TOKEN)
    dry_run(files, "--parameter", "CloudAppSecurityUrl=https://contoso.us2.portal.cloudappsecurity.com")
    out, err = capsys.readouterr()
    (create,) = [c for c in dry_run_calls(out) if ".create_stack_set(" in c]
    assert '{"ParameterKey": "ApiToken", "ParameterValue": "****"}' in create
    assert "ApiToken = ****" in out
    assert TOKEN not in out + err

    secret = "entra-" + uuid.uuid4().hex
    for text in (json.dumps({"EntraClientSecret": secret, "EntraTenantId": "contoso.onmicrosoft.com"}),
                 f"# Entra application\nEntraClientSecret={secret}\nEntraTenantId=contoso.onmicrosoft.com\n"):
        path = tmp_path / "parameters"
        path.write_text(text)
        path.chmod(0o600)
        dry_run(files, "--parameters-file", str(path))
        out, err = capsys.readouterr()
        (create,) = [c for c in dry_run_calls(out) if ".create_stack_set(" in c]
        assert '{"ParameterKey": "EntraClientSecret", "ParameterValue": "****"}' in create
        assert '{"ParameterKey": "EntraTenantId", "ParameterValue": "contoso.onmicrosoft.com"}' in create
        assert secret not in out + err


def test_a_no_echo_parameter_on_the_command_line_is_refused(files, capsys, offline):
    for key in NO_ECHO:
        with pytest.raises(SystemExit) as exit:
            dry_run(files, "--parameter", f"{key}={TOKEN}")
        assert exit.value.code == 2
        out, err = capsys.readouterr()
        assert f"CAS_PARAMETER_{key}" in err and TOKEN not in out + err


def test_unknown_and_reserved_parameters_are_refused(files, capsys, offline):
    for item, says in (("TrailMod=Off", "not parameters of"), ("ArtifactKey=x.zip", "set by the rollout itself")):
        with pytest.raises(SystemExit) as exit:
            dry_run(files, "--parameter", item)
        assert exit.value.code == 2
        assert says in capsys.readouterr().err


@pytest.mark.parametrize("extra, expected", [
    ((), {"MaxConcurrentPercentage": 25}),
    (("--parameter", "CloudAppSecurityUrl=https://contoso.us2.portal.cloudappsecurity.com"),
     {"MaxConcurrentCount": rollout.CALL_BACK_MAX_CONCURRENT_COUNT}),
    (("--parameter", "CloudAppSecurityUrl=https://contoso.us2.portal.cloudappsecurity.com",
      "--max-concurrent-count", "100"), {"MaxConcurrentCount": 100}),
])
def test_with_the_call_back_on_concurrency_is_capped_unless_overridden(files, capsys, offline, monkeypatch, extra,
                                                                       expected):
    monkeypatch.setenv("CAS_PARAMETER_ApiToken", TOKEN)
    dry_run(files, *extra)
    (instances,) = [c for c in dry_run_calls(capsys.readouterr().out) if ".create_stack_instances(" in c]
    preferences = json.loads(instances.split("(", 1)[1][:-1])["OperationPreferences"]
    assert {k: v for k, v in preferences.items() if k.startswith("MaxConcurrent")} == expected


def test_the_cap_fits_the_tenant_rate_limit_within_the_function_timeout():
    # 30 requests a minute for 5 minutes, halved for rollbacks and rejected attempts, 20 % kept.
    assert rollout.CALL_BACK_MAX_CONCURRENT_COUNT == 60
    assert rollout.CALL_BACK_MAX_CONCURRENT_COUNT * 2 <= rollout.TENANT_REQUESTS_PER_MINUTE * 5


def test_a_changed_template_default_is_reported_as_a_change(organization, files, capsys):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    _, template = files
    older = json.loads(json.dumps(REAL_PARAMETERS))
    older["LogRetentionDays"]["Default"] = 30
    template.write_text(json.dumps(stand_in(older)))
    run(organization, files, name)
    template.write_text(json.dumps(stand_in()))
    capsys.readouterr()
    run(organization, files, name)
    out = capsys.readouterr().out
    new = REAL_PARAMETERS["LogRetentionDays"]["Default"]
    assert f"LogRetentionDays: '30' -> '{new}' (the template's default changed)" in out
