"""The organization rollout command, against moto server's Organizations, S3 and CloudFormation.
moto deploys a StackSet's template itself and cannot run a custom resource's Lambda, so these
runs use a stand-in template: the real StackSet template's Parameters section (read from
deploy/stackset.yaml, so the parameter list is the shipped one), its kept resources' deletion
policies (under a condition that never holds), and one trivial resource. The real template's
resources are checked by cfn-lint and test_templates.py.

moto honours UsePreviousValue in UpdateStackSet (it copies the stored value; a key the StackSet does
not have is an error there too), but it stores only the parameters a call names, never the
template's defaults: so the tests check both what the rollout sends and what moto then holds.

Where moto departs from CloudFormation the tests assert the exact requests the rollout sends (the
`sent` fixture records every call as boto3 receives it, before anything below touches it), and an
adapter then says the same thing in moto's dialect, so that moto's state follows over several runs:
moto ignores DeploymentTargets on DeleteStackInstances and UpdateStackInstances and AccountFilterType
everywhere (the adapter resolves the targets against moto's organization, as CloudFormation does,
and passes the accounts), ignores CallAs, omits OrganizationalUnitId from ListStackInstances (the
rollout then takes the account's parent), and reports every parameter as a ParameterOverride (the
adapter reports only the overrides UpdateStackInstances set, with CloudFormation's rules)."""

import copy
import hashlib
import io
import json
import os
import urllib.request
import uuid

import boto3
import pytest
import yaml

import limits
import rollout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(REPO, "deploy", "stackset.yaml")) as _f:
    REAL_TEMPLATE = yaml.safe_load(_f)
REAL_PARAMETERS = REAL_TEMPLATE["Parameters"]
NO_ECHO = sorted(k for k, v in REAL_PARAMETERS.items() if v.get("NoEcho"))
KEPT = {k: v for k, v in REAL_TEMPLATE["Resources"].items() if v.get("DeletionPolicy")}
TOKEN = "tok-" + uuid.uuid4().hex  # a NoEcho value that must never be printed
WRITES = {"PutObject", "CreateStackSet", "UpdateStackSet", "DeleteStackSet", "CreateStackInstances",
          "UpdateStackInstances", "DeleteStackInstances"}


def stand_in(parameters=None):
    resources = {k: {"Type": v["Type"], "DeletionPolicy": v["DeletionPolicy"], "Condition": "Never",
                     "Properties": {}} for k, v in KEPT.items()}
    return {"Parameters": dict(REAL_PARAMETERS if parameters is None else parameters),
            "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
            "Resources": dict(resources, Marker={"Type": "AWS::SNS::Topic"})}


def test_the_stand_in_has_the_shipped_parameters_and_their_no_echo_ones():
    assert {"ArtifactBucketPrefix", "ArtifactKey", "KeyVersion", "ConnectorName", "CloudAppSecurityUrl"} <= set(
        REAL_PARAMETERS)
    assert {"ApiToken", "EntraClientSecret"} <= set(NO_ECHO)
    assert "TrailBucket" in KEPT


@pytest.fixture(autouse=True)
def few_regions(monkeypatch):
    """The check for other StackSets of this template reads every region of the partition; three
    are enough here (one client and one call each against moto would be most of every deploy)."""
    monkeypatch.setattr(rollout, "partition_regions", lambda region: sorted({"eu-west-1", "us-east-1", "us-west-2",
                                                                            region}))


def test_the_check_for_other_stack_sets_reads_every_region_of_the_partition(monkeypatch):
    monkeypatch.undo()
    regions = rollout.partition_regions("eu-west-1")
    assert {"us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1"} <= set(regions) and len(regions) >= 17
    assert "cn-north-1" not in regions and "cn-north-1" in rollout.partition_regions("cn-north-1")


@pytest.fixture
def organization(aws_env):
    """A fresh moto (no other test's StackSets), an organization with two OUs of two accounts each,
    an empty OU, and an artifact bucket."""
    urllib.request.urlopen(urllib.request.Request(f"{aws_env}/moto-api/reset", method="POST")).read()
    kw = dict(endpoint_url=aws_env, region_name="us-east-1")
    org = boto3.client("organizations", **kw)
    org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = org.list_roots()["Roots"][0]["Id"]
    ous, accounts = [], {}
    for name in ("a", "b", "empty"):
        ou = org.create_organizational_unit(ParentId=root, Name=f"ou-{name}")["OrganizationalUnit"]["Id"]
        ous.append(ou)
        for i in range(2 if name != "empty" else 0):
            status = org.create_account(Email=f"{uuid.uuid4().hex[:8]}@example.com", AccountName=f"{name}{i}")
            account = status["CreateAccountStatus"]["AccountId"]
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
            accounts[f"{name}{i}"] = account
    prefix = f"cas-artifacts-{uuid.uuid4().hex[:8]}"
    for region in ("us-east-1", "eu-west-1"):
        s3 = boto3.client("s3", endpoint_url=aws_env, region_name=region)
        s3.create_bucket(Bucket=f"{prefix}-{region}", **({} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}))
    return {"endpoint": aws_env, "id": org_id, "ou": ous[0], "ou_b": ous[1], "empty_ou": ous[2],
            "accounts": [accounts["a0"], accounts["a1"]], "b": [accounts["b0"], accounts["b1"]], "prefix": prefix,
            "kw": kw}


@pytest.fixture
def files(tmp_path):
    """A built zip (rewrite it for new code) and the stand-in template (rewrite it for a new version)."""
    zip_path = tmp_path / "bootstrap.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    template = tmp_path / "stand-in.json"
    template.write_text(json.dumps(stand_in()))
    return zip_path, template


class Sent(list):
    """Every AWS call the rollout makes, as (service, operation, parameters), exactly as it made it."""

    def of(self, operation):
        return [params for _, op, params in self if op == operation]

    def writes(self):
        return [(op, params) for _, op, params in self if op in WRITES]


@pytest.fixture
def sent(monkeypatch, organization):
    calls = Sent()
    real = boto3.client
    org = real("organizations", endpoint_url=organization["endpoint"], region_name="us-east-1")
    overrides = {}  # (stack set, account) -> {key: value}, as CloudFormation keeps them

    def under(target):
        found = {a["Id"] for a in org.list_accounts_for_parent(ParentId=target)["Accounts"]}
        for ou in org.list_organizational_units_for_parent(ParentId=target)["OrganizationalUnits"]:
            found |= under(ou["Id"])
        return found

    def resolve(targets):
        ous = set().union(*[under(ou) for ou in targets.get("OrganizationalUnitIds", [])])
        accounts = set(targets.get("Accounts", []))
        kind = targets.get("AccountFilterType") or ("UNION" if accounts else "NONE")
        return sorted({"INTERSECTION": ous & accounts, "DIFFERENCE": ous - accounts, "UNION": ous | accounts,
                       "NONE": ous}[kind])

    def to_moto(service, operation, params):
        targets = params.get("DeploymentTargets")
        if service != "cloudformation" or not targets:
            return
        name = params.get("StackSetName")
        if operation == "CreateStackInstances" and targets.get("AccountFilterType"):
            params["Accounts"] = resolve(targets)
            params["DeploymentTargets"] = {"OrganizationalUnitIds": [organization["empty_ou"]]}
        elif operation == "DeleteStackInstances":
            params["Accounts"] = resolve(targets)
            for account in params["Accounts"]:
                overrides.pop((name, account), None)
        elif operation == "UpdateStackInstances":
            params["Accounts"] = resolve(targets)
            for account in params["Accounts"]:
                before = overrides.get((name, account), {})
                overrides[name, account] = {
                    p["ParameterKey"]: before[p["ParameterKey"]] if p.get("UsePreviousValue") else p["ParameterValue"]
                    for p in params.get("ParameterOverrides", [])
                    if not p.get("UsePreviousValue") or p["ParameterKey"] in before}

    def client(service, *a, **kw):
        c = real(service, *a, **kw)

        def record(params, model, **_):
            calls.append((service, model.name, copy.deepcopy(params)))
            to_moto(service, model.name, params)

        def describe_stack_instance(parsed, model, **_):
            instance = parsed.get("StackInstance")
            if instance:
                instance["ParameterOverrides"] = [
                    {"ParameterKey": k, "ParameterValue": v}
                    for k, v in overrides.get((instance.get("StackSetId", "").split(":")[0], instance["Account"]),
                                              {}).items()]

        c.meta.events.register(f"provide-client-params.{service}.*", record)
        c.meta.events.register("after-call.cloudformation.DescribeStackInstance", describe_stack_instance)
        return c

    monkeypatch.setattr(boto3, "client", client)
    return calls


def rollout_main(org, command, name, *extra, confirm=True):
    rollout.main([command, "--stack-set-name", name, "--region", "us-east-1", "--endpoint-url", org["endpoint"],
                  "--poll-seconds", "0.05", *(["--yes-i-typed", org["id"]] if confirm else []), *extra])


def run(org, files, name, *extra, ous=None, confirm=True):
    zip_path, template = files
    ou_args = [a for ou in (ous if ous is not None else [org["ou"]]) for a in ("--ou", ou)]
    rollout_main(org, "deploy", name, *ou_args, "--artifact-bucket-prefix", org["prefix"], "--zip", str(zip_path),
                 "--template", str(template), *extra, confirm=confirm)


def stored(org, name):
    cf = boto3.client("cloudformation", **org["kw"])
    return {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stack_set(StackSetName=name)["StackSet"]["Parameters"]}


def deployed(org, name):
    cf = boto3.client("cloudformation", **org["kw"])
    return sorted(i["Account"] for i in cf.list_stack_instances(StackSetName=name)["Summaries"])


def dry_run_calls(out):
    return [line for line in out.splitlines() if line.startswith("[dry-run] ")]


def new_name():
    return f"cas-{uuid.uuid4().hex[:8]}"


# --- deploy ----------------------------------------------------------------------------------------

def test_rollout_uploads_the_code_creates_the_stack_set_and_one_instance_per_account(organization, files, capsys):
    name = new_name()
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
    assert "==> still to do: no account is connected yet" in out and "KeyVerified" in out
    assert "==> done" in out


def test_a_rollout_that_names_no_parameter_keeps_every_parameter_as_it_was(organization, files, sent, capsys,
                                                                          monkeypatch):
    name = new_name()
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

    (update,) = sent.of("UpdateStackSet")
    parameters = {p["ParameterKey"]: p for p in update["Parameters"]}
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
    # The call back is still on (from the deployed value): the concurrency cap holds. The OU is
    # already targeted: no CreateStackInstances.
    assert update["OperationPreferences"]["MaxConcurrentCount"] == rollout.CALL_BACK_MAX_CONCURRENT_COUNT
    assert "MaxConcurrentPercentage" not in update["OperationPreferences"]
    assert sent.of("CreateStackInstances") == []
    assert TOKEN not in out + err


def test_a_rerun_keeps_and_updates_every_ou_already_targeted(organization, files, sent, capsys):
    name = new_name()
    a, b = organization["ou"], organization["ou_b"]
    run(organization, files, name, ous=[a])
    sent.clear()
    run(organization, files, name, ous=[b])  # names fewer OUs than the StackSet will target
    (update,) = sent.of("UpdateStackSet")
    assert update["DeploymentTargets"] == {"OrganizationalUnitIds": [a]} and update["Regions"] == ["us-east-1"]
    (create,) = sent.of("CreateStackInstances")
    assert create["DeploymentTargets"] == {"OrganizationalUnitIds": [b]}
    sent.clear()
    capsys.readouterr()
    run(organization, files, name, ous=[])  # ships code only
    (update,) = sent.of("UpdateStackSet")
    assert update["DeploymentTargets"] == {"OrganizationalUnitIds": sorted([a, b])}
    assert sent.of("CreateStackInstances") == []
    assert deployed(organization, name) == sorted(organization["accounts"] + organization["b"])
    assert f"every OU it targets is kept and updated: {', '.join(sorted([a, b]))} (4 accounts)" in capsys.readouterr().out


def test_a_parameter_new_in_this_template_version_takes_its_default(organization, files, sent, capsys):
    name = new_name()
    zip_path, template = files
    older = {k: v for k, v in REAL_PARAMETERS.items() if k != "LogRetentionDays"}
    template.write_text(json.dumps(stand_in(older)))
    run(organization, files, name, "--parameter", "KeyVersion=3")
    template.write_text(json.dumps(stand_in()))
    capsys.readouterr()
    sent.clear()
    run(organization, files, name)  # moto, like CloudFormation, refuses UsePreviousValue on a new key
    out = capsys.readouterr().out
    (update,) = sent.of("UpdateStackSet")
    keys = [p["ParameterKey"] for p in update["Parameters"]]
    assert "LogRetentionDays" not in keys
    assert {"ParameterKey": "KeyVersion", "UsePreviousValue": True} in update["Parameters"]
    assert f"new in this template, defaults: LogRetentionDays = '{REAL_PARAMETERS['LogRetentionDays']['Default']}'\n" in out
    assert stored(organization, name)["KeyVersion"] == "3"


def test_a_given_parameter_changes_and_is_reported(organization, files, capsys):
    name = new_name()
    run(organization, files, name, "--parameter", "TrailMode=Off")
    capsys.readouterr()
    run(organization, files, name, "--parameter", "TrailMode=Create")
    out = capsys.readouterr().out
    assert "update StackSet" in out
    assert "parameters changed: TrailMode: 'Off' -> 'Create'" in out
    assert stored(organization, name)["TrailMode"] == "Create"


def test_a_changed_template_default_is_reported_as_a_change(organization, files, capsys):
    name = new_name()
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


# --- add, remove, rekey, overrides, destroy over several runs -----------------------------------------

def test_accounts_and_ous_are_added_and_removed_with_the_exact_targets(organization, files, sent, capsys):
    name = new_name()
    a, b = organization["ou"], organization["ou_b"]
    a0, a1 = organization["accounts"]
    b0, b1 = organization["b"]
    region = ["us-east-1"]
    run(organization, files, name, ous=[a, b])

    sent.clear()
    rollout_main(organization, "remove", name, "--account", a1)
    (delete,) = sent.of("DeleteStackInstances")
    assert delete == {"StackSetName": name, "CallAs": "SELF", "Regions": region, "RetainStacks": False,
                      "DeploymentTargets": {"OrganizationalUnitIds": [a], "Accounts": [a1],
                                            "AccountFilterType": "INTERSECTION"},
                      "OperationPreferences": delete["OperationPreferences"]}
    assert deployed(organization, name) == sorted([a0, b0, b1])
    out = capsys.readouterr().out
    assert "StackSets keep no exclusion list, nor does this rollout" in out
    assert "what stays in the 1 account removed" in out and f"aws-{a1}" in out

    # A re-run does not bring the removed account back (its OU is already a target).
    sent.clear()
    run(organization, files, name, ous=[a, b])
    assert sent.of("CreateStackInstances") == []
    assert sent.of("UpdateStackSet")[0]["DeploymentTargets"] == {"OrganizationalUnitIds": sorted([a, b])}
    assert deployed(organization, name) == sorted([a0, b0, b1])
    rollout_main(organization, "overrides", name)
    assert f"    {a}: {a1}" in capsys.readouterr().out  # where the exclusion lives: no stack instance

    sent.clear()
    rollout_main(organization, "add", name, "--account", a1)
    (create,) = sent.of("CreateStackInstances")
    assert create["DeploymentTargets"] == {"OrganizationalUnitIds": [a], "Accounts": [a1],
                                           "AccountFilterType": "INTERSECTION"}
    assert create["Regions"] == region and create["CallAs"] == "SELF"
    assert deployed(organization, name) == sorted([a0, a1, b0, b1])

    sent.clear()
    rollout_main(organization, "remove", name, "--ou", b)
    (delete,) = sent.of("DeleteStackInstances")
    assert delete["DeploymentTargets"] == {"OrganizationalUnitIds": [b]} and delete["RetainStacks"] is False
    assert deployed(organization, name) == sorted([a0, a1])

    sent.clear()
    rollout_main(organization, "add", name, "--ou", b, "--except", b1)
    (create,) = sent.of("CreateStackInstances")
    assert create["DeploymentTargets"] == {"OrganizationalUnitIds": [b], "Accounts": [b1],
                                           "AccountFilterType": "DIFFERENCE"}
    assert deployed(organization, name) == sorted([a0, a1, b0])
    assert [op for op, _ in sent.writes()] == ["CreateStackInstances"]


def test_rekey_overrides_the_key_version_of_named_accounts_and_clear_overrides_takes_it_back(organization, files,
                                                                                            sent, capsys):
    name = new_name()
    a0, a1 = organization["accounts"]
    ou = organization["ou"]
    run(organization, files, name, "--parameter", "KeyVersion=1")

    sent.clear()
    rollout_main(organization, "rekey", name, "--account", a0)
    (update,) = sent.of("UpdateStackInstances")
    assert update == {"StackSetName": name, "CallAs": "SELF", "Regions": ["us-east-1"],
                      "DeploymentTargets": {"OrganizationalUnitIds": [ou], "Accounts": [a0],
                                            "AccountFilterType": "INTERSECTION"},
                      "ParameterOverrides": [{"ParameterKey": "KeyVersion", "ParameterValue": "2"}],
                      "OperationPreferences": update["OperationPreferences"]}
    assert sent.of("UpdateStackSet") == [], "a re-key never touches the StackSet's own KeyVersion"

    # Another override on a0 (set outside the rollout): a batch re-key keeps it.
    boto3.client("cloudformation", **organization["kw"]).update_stack_instances(
        StackSetName=name, Regions=["us-east-1"],
        DeploymentTargets={"OrganizationalUnitIds": [ou], "Accounts": [a0], "AccountFilterType": "INTERSECTION"},
        ParameterOverrides=[{"ParameterKey": "KeyVersion", "UsePreviousValue": True},
                            {"ParameterKey": "Connections", "ParameterValue": "SecurityConfiguration"}])
    sent.clear()
    capsys.readouterr()
    rollout_main(organization, "rekey", name, "--account", a0, "--account", a1)
    updates = sent.of("UpdateStackInstances")
    by_accounts = {tuple(u["DeploymentTargets"]["Accounts"]): u["ParameterOverrides"] for u in updates}
    assert by_accounts == {
        (a0,): [{"ParameterKey": "KeyVersion", "ParameterValue": "3"},
                {"ParameterKey": "Connections", "UsePreviousValue": True}],
        (a1,): [{"ParameterKey": "KeyVersion", "ParameterValue": "3"}]}
    out = capsys.readouterr().out
    assert "KeyVersion '2' -> '3' in " + a0 in out and "KeyVersion '1' -> '3' in " + a1 in out

    rollout_main(organization, "overrides", name)
    out = capsys.readouterr().out
    assert f"{a0}: KeyVersion = '3' (StackSet: '1'); Connections = 'SecurityConfiguration'" in out
    assert f"{a1}: KeyVersion = '3' (StackSet: '1')" in out

    sent.clear()
    rollout_main(organization, "clear-overrides", name, "--key", "KeyVersion")
    by_accounts = {tuple(u["DeploymentTargets"]["Accounts"]): u["ParameterOverrides"]
                   for u in sent.of("UpdateStackInstances")}
    # An empty list puts every override back on the StackSet's value; a kept one is UsePreviousValue.
    assert by_accounts == {(a0,): [{"ParameterKey": "Connections", "UsePreviousValue": True}], (a1,): []}
    out = capsys.readouterr().out
    assert f"{a1}: KeyVersion '3' -> the StackSet's '1': a new access key, to paste in the portal" in out
    rollout_main(organization, "overrides", name)
    out = capsys.readouterr().out
    assert "KeyVersion" not in out.split("==> accounts of targeted OUs")[0].split("\n", 1)[1]


def test_a_portal_mode_rekey_that_cannot_be_pasted_within_the_grace_period_warns(organization, files, capsys):
    name = new_name()
    run(organization, files, name, "--parameter", "RotationGraceDays=1")
    capsys.readouterr()
    rollout_main(organization, "rekey", name, *[a for x in organization["accounts"] for a in ("--account", x)],
                 "--pastes-per-day", "1", "--dry-run")
    out, err = capsys.readouterr()
    assert "2 new keys to paste in the portal; at 1 a day (--pastes-per-day, an assumption) that takes 2 day(s); " \
           "RotationGraceDays is 1" in out
    assert "WARNING: the pastes cannot be done within RotationGraceDays (1)" in err
    assert "Re-key at most 1 accounts a batch" in err
    rollout_main(organization, "rekey", name, "--account", organization["accounts"][0], "--pastes-per-day", "1",
                 "--dry-run")
    assert "WARNING" not in capsys.readouterr().err


def test_destroy_removes_every_instance_and_the_stack_set_and_says_what_stays(organization, files, sent, capsys):
    name = new_name()
    a, b = organization["ou"], organization["ou_b"]
    # ReuseOrCreate: the trail bucket exists where no trail qualified (the default, Reuse, makes none).
    run(organization, files, name, "--parameter", "TrailMode=ReuseOrCreate", ous=[a, b])
    rollout_main(organization, "rekey", name, "--account", organization["b"][0])
    sent.clear()
    capsys.readouterr()
    rollout_main(organization, "destroy", name)
    writes = sent.writes()
    assert [op for op, _ in writes] == ["DeleteStackInstances", "DeleteStackSet"]
    delete = writes[0][1]
    assert delete["DeploymentTargets"] == {"OrganizationalUnitIds": sorted([a, b])}
    assert delete["Regions"] == ["us-east-1"] and delete["RetainStacks"] is False and delete["CallAs"] == "SELF"
    assert writes[1][1] == {"StackSetName": name, "CallAs": "SELF"}
    cf = boto3.client("cloudformation", **organization["kw"])
    with pytest.raises(cf.exceptions.StackSetNotFoundException):
        cf.describe_stack_set(StackSetName=name)
    out = capsys.readouterr().out
    stays = out.split(f"==> StackSet {name} deleted")[1]
    assert "TrailBucket (AWS::S3::Bucket, DeletionPolicy " in stays
    assert "Key=aws:cloudformation:logical-id,Values=TrailBucket" in stays
    assert "stays restorable for 7 days (SecretRecoveryWindowDays)" in stays
    assert "4 connectors in the Cloud App Security portal keep a key that no longer works" in stays
    for account in organization["accounts"] + organization["b"]:
        assert f"aws-{account}" in stays


def test_every_stack_set_call_acts_as_the_delegated_administrator(organization, files, sent):
    name = new_name()
    run(organization, files, name, "--call-as", "DELEGATED_ADMIN")
    run(organization, files, name, "--call-as", "DELEGATED_ADMIN", ous=[organization["ou_b"]])
    for command, *extra in (("remove", "--account", organization["b"][1]), ("add", "--account", organization["b"][1]),
                            ("rekey", "--account", organization["b"][1]), ("overrides",), ("clear-overrides",),
                            ("destroy",)):
        rollout_main(organization, command, name, "--call-as", "DELEGATED_ADMIN", *extra)
    cloudformation = [(op, params) for service, op, params in sent if service == "cloudformation"]
    assert {op for op, _ in cloudformation} >= {
        "DescribeStackSet", "ListStackSets", "CreateStackSet", "UpdateStackSet", "CreateStackInstances",
        "UpdateStackInstances", "DeleteStackInstances", "DeleteStackSet", "DescribeStackInstance",
        "DescribeStackSetOperation", "ListStackSetOperationResults", "ListStackInstances"}
    for op, params in cloudformation:
        assert params.get("CallAs") == "DELEGATED_ADMIN", op


# --- refusals: each sends nothing that changes anything -------------------------------------------

def refused(sent, capsys, call, says, code=2):
    sent.clear()
    with pytest.raises(SystemExit) as exit:
        call()
    assert exit.value.code == code
    out, err = capsys.readouterr()
    assert says in out + err
    assert sent.writes() == []
    return out + err


def test_a_second_region_or_another_set_name_is_refused(organization, files, sent, capsys):
    name = new_name()
    run(organization, files, name)
    zip_path, template = files
    say = f"a StackSet of this template already exists: {name}@us-east-1"
    refused(sent, capsys, lambda: rollout.main(
        ["deploy", "--stack-set-name", name, "--region", "eu-west-1", "--ou", organization["ou_b"],
         "--artifact-bucket-prefix", organization["prefix"], "--zip", str(zip_path), "--template", str(template),
         "--endpoint-url", organization["endpoint"], "--yes-i-typed", organization["id"]]), say)
    refused(sent, capsys, lambda: run(organization, files, new_name(), ous=[organization["ou_b"]]), say)
    # Acknowledged, another set may serve OUs of its own, never one the first one targets.
    refused(sent, capsys, lambda: run(organization, files, new_name(), "--other-stack-set", f"{name}@us-east-1"),
            f"StackSet {name}@us-east-1 already targets OUs {organization['ou']}")
    other = new_name()
    run(organization, files, other, "--other-stack-set", f"{name}@us-east-1", ous=[organization["ou_b"]])
    assert deployed(organization, other) == sorted(organization["b"])


def test_a_set_name_too_long_for_the_names_derived_from_it_is_refused(organization, files, sent, capsys):
    name = "c" * (limits.STACK_SET_NAME_MAX + 1)
    refused(sent, capsys, lambda: run(organization, files, name), f"at most {limits.STACK_SET_NAME_MAX}")
    assert len(rollout.DEFAULT_STACK_SET_NAME) <= limits.STACK_SET_NAME_MAX


@pytest.mark.parametrize("key", limits.REFUSED_STACK_SET_PARAMETERS)
def test_a_parameter_that_names_one_account_is_refused(organization, files, sent, capsys, key):
    out = refused(sent, capsys, lambda: run(organization, files, new_name(), "--parameter",
                                            f"{key}=arn:aws:iam::111122223333:policy/x"), f"{key} names one account's")
    assert limits.ACCOUNT_SPECIFIC_PARAMETERS[key] in out


def test_a_wrong_typed_organization_id_is_refused(organization, files, sent, capsys, monkeypatch):
    name = new_name()
    run(organization, files, name)
    refused(sent, capsys, lambda: rollout_main(organization, "remove", name, "--ou", organization["ou"],
                                               "--yes-i-typed", "o-notthisone1"), "is not the id of this organization")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("o-notthisone1\n"))
    refused(sent, capsys, lambda: rollout_main(organization, "destroy", name, confirm=False),
            "not confirmed: nothing was sent", code=1)
    monkeypatch.setattr("sys.stdin", Terminal(organization["id"] + "\n"))
    rollout_main(organization, "remove", name, "--account", organization["accounts"][0], confirm=False)
    assert f"Type the organization id ({organization['id']})" in capsys.readouterr().out
    assert deployed(organization, name) == [organization["accounts"][1]]


def test_without_a_terminal_and_without_yes_the_run_refuses_instead_of_waiting(organization, files, sent, capsys,
                                                                              monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    refused(sent, capsys, lambda: run(organization, files, new_name(), confirm=False),
            "standard input is not a terminal")
    name = new_name()
    run(organization, files, name)
    refused(sent, capsys, lambda: rollout_main(organization, "rekey", name, "--account", organization["accounts"][0],
                                               confirm=False), "--yes-i-typed <organization id>")


# --- dry runs --------------------------------------------------------------------------------------

def test_dry_runs_of_add_remove_rekey_and_destroy_print_their_requests_and_send_nothing(organization, files, sent,
                                                                                       capsys):
    name = new_name()
    run(organization, files, name)
    capsys.readouterr()
    sent.clear()
    for command, *extra in (("add", "--ou", organization["ou_b"], "--except", organization["b"][1]),
                            ("remove", "--account", organization["accounts"][1]),
                            ("rekey", "--account", organization["accounts"][0]), ("destroy",)):
        rollout_main(organization, command, name, *extra, "--dry-run", confirm=False)
        out = capsys.readouterr().out
        with capsys.disabled():  # the transcripts, with pytest -s
            print(f"\n$ rollout.py {command} --stack-set-name {name} --region us-east-1 {' '.join(extra)} --dry-run")
            print(out)
        assert "==> dry run: nothing was sent" in out
        assert dry_run_calls(out)
    assert sent.writes() == []
    assert deployed(organization, name) == sorted(organization["accounts"])


def test_more_than_one_region_is_refused(capsys):
    with pytest.raises(SystemExit) as exit:
        rollout.main(["deploy", "--region", "us-east-1", "--region", "eu-west-1", "--ou", "ou-x",
                      "--artifact-bucket-prefix", "p", "--dry-run"])
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
    rollout.main(["deploy", "--region", "eu-west-1", "--ou", "ou-ab12-34567890", "--ou", "ou-ab12-09876543",
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


def test_the_fleet_parameters_name_the_security_account_and_go_to_every_account(files, capsys, offline):
    # The status bus and the reader's operator are the organization's (one ARN for every account):
    # the StackSet takes them as they are, unlike the parameters that name one account's resource.
    given = {
        "StatusBusArn": "arn:aws:events:eu-west-1:210987654321:event-bus/cloud-app-security-connector-fleet",
        "StatusReaderPrincipalArn": "arn:aws:iam::210987654321:role/security/fleet-operator",
        "OrganizationId": "o-exampleorg01",
        "PasteOverdueDays": "5",
    }
    assert set(limits.ORGANIZATION_WIDE_PARAMETERS) <= set(given) and set(given) <= set(REAL_PARAMETERS)
    dry_run(files, *[a for k, v in given.items() for a in ("--parameter", f"{k}={v}")])
    out, err = capsys.readouterr()
    (create,) = [c for c in dry_run_calls(out) if ".create_stack_set(" in c]
    for key, value in given.items():
        assert json.dumps({"ParameterKey": key, "ParameterValue": value}) in create, key
    assert "names one account" not in out + err


READER = "arn:aws:iam::210987654321:role/security/fleet-operator"
BUS = "arn:aws:events:eu-west-1:210987654321:event-bus/cloud-app-security-connector-fleet"


def test_the_reader_gets_the_organization_id_the_run_reads_and_another_one_is_refused(organization, files, sent,
                                                                                      capsys):
    """StatusReaderPrincipalArn needs OrganizationId (the stack refuses one without the other): the
    run fills it from organizations:DescribeOrganization, the id typed to confirm, and says so in
    the dry run; an OrganizationId of another organization is refused before anything is sent."""
    name = new_name()
    reader = ("--parameter", f"StatusReaderPrincipalArn={READER}", "--parameter", f"StatusBusArn={BUS}")
    run(organization, files, name, *reader, "--dry-run", confirm=False)
    out = capsys.readouterr().out
    assert f"==> OrganizationId: {organization['id']}, this organization's (organizations:DescribeOrganization)" in out
    assert f"OrganizationId = {organization['id']!r}" in out, "among the parameters set"
    (create,) = [c for c in dry_run_calls(out) if ".create_stack_set(" in c]
    assert json.dumps({"ParameterKey": "OrganizationId", "ParameterValue": organization["id"]}) in create
    assert json.dumps({"ParameterKey": "StatusReaderPrincipalArn", "ParameterValue": READER}) in create
    assert sent.writes() == []

    run(organization, files, name, *reader)
    assert stored(organization, name)["OrganizationId"] == organization["id"]
    (create,) = sent.of("CreateStackSet")
    assert {"ParameterKey": "OrganizationId", "ParameterValue": organization["id"]} in create["Parameters"]
    out = capsys.readouterr().out
    assert "scripts/fleet.sh status" in out and "scripts/fleet.sh paste" in out

    # Named and the same: kept as given, nothing filled in.
    run(organization, files, name, *reader, "--parameter", f"OrganizationId={organization['id']}")
    out = capsys.readouterr().out
    assert "==> OrganizationId:" not in out and "given, same as deployed: " in out
    # Another organization's id: refused, whether the reader is set in this run or not.
    for extra in (reader, ()):
        out = refused(sent, capsys, lambda: run(organization, files, name, *extra, "--parameter",
                                                "OrganizationId=o-another0org"),
                      f"OrganizationId o-another0org is not this organization's id ({organization['id']}")
        assert f"give OrganizationId={organization['id']}" in out
    assert stored(organization, name)["OrganizationId"] == organization["id"]


def test_a_dry_run_that_cannot_read_the_organization_says_the_organization_id_is_filled_in_later(files, capsys,
                                                                                                offline):
    dry_run(files, "--parameter", f"StatusReaderPrincipalArn={READER}")
    out = capsys.readouterr().out
    assert "==> OrganizationId: not filled in, the organization could not be read" in out
    (create,) = [c for c in dry_run_calls(out) if ".create_stack_set(" in c]
    assert '"ParameterKey": "OrganizationId"' not in create


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
