"""The fleet's side of the status reports: deploy/fleet.yaml and scripts/fleet.py, against moto server.

The security account is moto's default one (the `testing` keys); each member account acts through
credentials from sts:AssumeRole of a role on the connector's path in that account, so moto's
EventBridge sets each report's envelope `account` from the sender's credentials, as EventBridge does.
moto deploys deploy/fleet.yaml itself in the security account (the bus, the rule, the log group, the
Logs resource policy, the dashboard; it skips the metric filters and the alarms).

Where moto departs from AWS, a stand-in does the hop, and says so:
- moto resolves a PutEvents bus, even one given by ARN, by name in the sender's own account, and
  evaluates no bus policy. So each member account gets a bus of the fleet bus's name with the
  fleet rule's event pattern (read from the template), and a relay copies what that rule delivered
  into the security account's log group, as the cross-account PutEvents does. Who may send is
  checked from the template's policy (its conditions, and that IAM knows each condition key for
  events:PutEvents), never evaluated: docs/fleet.md lists it among what a real organization must
  confirm once.
- moto's CloudWatch Logs target leaves the envelope's `account` out of what it writes (its default
  input template has no account). The stand-in rule's target writes EventBridge's whole event
  (the input transformer `<aws.events.event.json>`), so the envelope is still moto's own.
- The relay stamps each log event with the envelope's time (EventBridge's Logs target is taken to
  do the same; docs/fleet.md lists it as unproven).
- moto makes up a new StackId each time it lists a stack instance; an adapter keeps the first one
  it answered for each instance (CloudFormation's is the instance's stack, which does not change).
"""

import copy
import csv
import datetime
import io
import json
import os
import re
import urllib.request
import uuid

import boto3
import pytest
from cfnlint.decode import cfn_yaml

import fleet
from conftest import REPO

FLEET_TEMPLATE = os.path.join(REPO, "deploy", "fleet.yaml")
SECURITY = "123456789012"  # moto's account for the `testing` keys
ORGANIZATION = "o-exampleorg1"
NOW = datetime.datetime.now(datetime.timezone.utc)


def load_template():
    with open(FLEET_TEMPLATE) as f:
        return cfn_yaml.loads(f.read(), FLEET_TEMPLATE)


def plain(value):
    """A cfn-lint template node as plain dicts, lists and strings."""
    return json.loads(json.dumps(value, default=str))


TEMPLATE = plain(load_template())
RESOURCES = TEMPLATE["Resources"]


def at(hours_ago):
    return NOW - datetime.timedelta(hours=hours_ago)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(autouse=True)
def stable_stack_ids(monkeypatch):
    """Each stack instance keeps the StackId moto first answered for it (see the module's docstring)."""
    first = {}
    real = boto3.client

    def keep(parsed, **_):
        for instance in parsed.get("Summaries", []):
            key = instance.get("StackSetId"), instance["Account"], instance["Region"]
            instance["StackId"] = first.setdefault(key, instance.get("StackId"))

    def client(service, *a, **kw):
        c = real(service, *a, **kw)
        c.meta.events.register("after-call.cloudformation.ListStackInstances", keep)
        return c

    monkeypatch.setattr(boto3, "client", client)


# --- recording every AWS call ---------------------------------------------------------------------

class Sent(list):
    """Every AWS call, as (service, operation, parameters, the access key id it was signed with), and
    the key ids AssumeRole answered."""

    def __init__(self):
        super().__init__()
        self.assumed = []

    def clear(self):
        super().clear()
        self.assumed.clear()

    def of(self, operation):
        return [(params, key) for _, op, params, key in self if op == operation]


@pytest.fixture
def sent(monkeypatch):
    calls = Sent()
    real = boto3.client

    def client(service, *a, **kw):
        c = real(service, *a, **kw)
        key = c._request_signer._credentials.access_key

        def record(params, model, **_):
            calls.append((service, model.name, copy.deepcopy(params), key))

        def assumed(parsed, **_):
            calls.assumed.append(parsed.get("Credentials", {}).get("AccessKeyId"))

        c.meta.events.register(f"provide-client-params.{service}.*", record)
        c.meta.events.register("after-call.sts.AssumeRole", assumed)
        return c

    monkeypatch.setattr(boto3, "client", client)
    return calls


# --- an organization in moto ----------------------------------------------------------------------

class Member:
    """A member account: a connector's credentials in it, and the stand-in bus (see the module's
    docstring)."""

    def __init__(self, org, account, region="us-east-1"):
        self.org, self.account, self.region = org, account, region
        sts = boto3.client("sts", **org.kw)
        role = f"arn:aws:iam::{account}:role/cloud-app-security-connector/cas-connector-role"
        c = sts.assume_role(RoleArn=role, RoleSessionName="connector")["Credentials"]
        self.creds = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                      "aws_session_token": c["SessionToken"]}
        self.stand_in_log = f"/stand-in/{org.bus_name}"
        self.stand_in()

    def client(self, service):
        return boto3.client(service, endpoint_url=self.org.endpoint, region_name=self.region, **self.creds)

    def stand_in(self):
        events, logs = self.client("events"), self.client("logs")
        events.create_event_bus(Name=self.org.bus_name)
        rule = RESOURCES["StatusRule"]["Properties"]
        events.put_rule(Name="stand-in", EventBusName=self.org.bus_name, EventPattern=json.dumps(rule["EventPattern"]))
        logs.create_log_group(logGroupName=self.stand_in_log)
        events.put_targets(Rule="stand-in", EventBusName=self.org.bus_name, Targets=[{
            "Id": "whole-event", "Arn": f"arn:aws:logs:{self.region}:{self.account}:log-group:{self.stand_in_log}",
            "InputTransformer": {"InputPathsMap": {}, "InputTemplate": "<aws.events.event.json>"}}])

    def report(self, detail, hours_ago=0.0, source=fleet.SOURCE, detail_type=fleet.DETAIL_TYPE):
        """What the connector sends: one PutEvents entry to the fleet bus's ARN."""
        entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail),
                 "EventBusName": self.org.bus_arn}
        if hours_ago:
            entry["Time"] = at(hours_ago)
        answer = self.client("events").put_events(Entries=[entry])
        assert answer["FailedEntryCount"] == 0, answer
        self.org.relay(self)


class Org:
    """The security account with deploy/fleet.yaml deployed by moto, a StackSet, and member accounts."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.kw = dict(endpoint_url=endpoint, region_name="us-east-1")
        cfn = boto3.client("cloudformation", **self.kw)
        with open(FLEET_TEMPLATE) as f:
            cfn.create_stack(StackName="fleet", TemplateBody=f.read(),
                             Parameters=[{"ParameterKey": "OrganizationId", "ParameterValue": ORGANIZATION}])
        stack = cfn.describe_stacks(StackName="fleet")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        self.bus_arn, self.log_group = outputs["EventBusArn"], outputs["LogGroupName"]
        self.bus_name = self.bus_arn.split("/")[-1]
        self.members = {}
        cfn.create_stack_set(StackSetName="cloud-app-security-connector", TemplateBody=json.dumps(
            {"Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}))
        self.relayed = 0

    def member(self, account, region="us-east-1"):
        if (account, region) not in self.members:
            self.members[account, region] = Member(self, account, region)
        return self.members[account, region]

    def instance(self, account, region="us-east-1"):
        """A stack instance of the StackSet in that account; its stack id."""
        cfn = boto3.client("cloudformation", **self.kw)
        cfn.create_stack_instances(StackSetName="cloud-app-security-connector", Accounts=[account], Regions=[region])
        (found,) = [i for i in cfn.list_stack_instances(StackSetName="cloud-app-security-connector")["Summaries"]
                    if i["Account"] == account and i["Region"] == region]
        return found["StackId"]

    def relay(self, member):
        """The cross-account hop: what the member's stand-in rule delivered, into the fleet's log group."""
        logs = member.client("logs")
        fleet_logs = boto3.client("logs", **self.kw)
        for stream in logs.describe_log_streams(logGroupName=member.stand_in_log)["logStreams"]:
            name = stream["logStreamName"]
            for event in logs.get_log_events(logGroupName=member.stand_in_log, logStreamName=name)["events"]:
                envelope = json.loads(event["message"])
                stamp = int(datetime.datetime.fromisoformat(envelope["time"].replace("Z", "+00:00")).timestamp() * 1000)
                fleet_logs.create_log_stream(logGroupName=self.log_group, logStreamName=name)
                fleet_logs.put_log_events(logGroupName=self.log_group, logStreamName=name,
                                          logEvents=[{"timestamp": stamp, "message": event["message"]}])
                self.relayed += 1
            logs.delete_log_stream(logGroupName=member.stand_in_log, logStreamName=name)


@pytest.fixture
def org(aws_env):
    urllib.request.urlopen(urllib.request.Request(f"{aws_env}/moto-api/reset", method="POST")).read()
    return Org(aws_env)


def stack_id(account, name, region="us-east-1"):
    return f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid.uuid4()}"


def detail(status, stack, account, **fields):
    """A report's detail, every field of the schema (docs/fleet.md)."""
    portal = fields.pop("mode", "portal") == "portal"
    name = fields.pop("name", f"aws-{account}")
    region = stack.split(":")[3]
    base = {
        "schemaVersion": 1, "status": status, "trigger": "Check", "connectorName": name, "stackId": stack,
        "logicalId": "Connector",
        "physicalId": f"arn:aws:iam::{account}:user/cloud-app-security/CloudAppSecurity-{name}",
        "secretArn": f"arn:aws:secretsmanager:{region}:{account}:secret:cloud-app-security/{name}-AbCdEf",
        "portalUrl": "https://security.microsoft.com/cloudapps/app-connectors" if portal else None,
        "mode": "portal" if portal else "callback", "accessKeyId": f"AKIA{account}KEY",
        "keyCreatedAt": iso(at(24 * 10)), "awaitingPasteSince": None, "lastSeenUsed": None, "verified": True,
        "lastError": None, "release": "0.4.0", "reportedAt": iso(NOW),
    }
    base.update(fields)
    return base


def run(org, *argv):
    fleet.main([argv[0], "--region", "us-east-1", "--endpoint-url", org.endpoint, *argv[1:]])


def status_json(org, capsys, *argv):
    capsys.readouterr()
    run(org, "status", "--json", *argv)
    return json.loads(capsys.readouterr().out)


# --- a dozen accounts, every status ---------------------------------------------------------------

ACCOUNTS = {name: f"2000000000{i:02d}" for i, name in enumerate(
    ["registered", "connected", "pending", "overdue", "unverified", "failing", "silent", "deleted", "never",
     "two-stacks", "forger", "other-region"], 1)}


QUARANTINED = ("the connector's IAM user is quarantined (AWSCompromisedKeyQuarantineV3): Cloud App Security cannot "
               "read this account until the incident is closed and the policy detached (README, \"If the key leaks\")")


def a_dozen(org):
    """Twelve accounts, each in another state, their reports as the connector sends them (a first
    key in portal mode waits for its paste from its creation; Connected once seen in use); every one
    a stack instance but `forger` (its stack was deployed with SAM) and `deleted` (removed from the
    StackSet: its Delete reported Deleted, and the instance is gone); `two-stacks` has a second stack
    of its own."""
    a = ACCOUNTS
    stacks = {n: org.instance(acct, "eu-west-1" if n == "other-region" else "us-east-1") for n, acct in a.items()
              if n not in ("forger", "deleted")}
    stacks["forger"] = stack_id(a["forger"], "cas-sam")
    stacks["deleted"] = stack_id(a["deleted"], "StackSet-cloud-app-security-connector-removed")
    m = {n: org.member(acct, "eu-west-1" if n == "other-region" else "us-east-1") for n, acct in a.items()
         if n != "never"}
    m["registered"].report(detail("Registered", stacks["registered"], a["registered"], mode="callback"), 3)
    # A first key: PendingPortal since its creation (the Create's report), then seen in use.
    m["connected"].report(detail("PendingPortal", stacks["connected"], a["connected"], trigger="Create",
                                 keyCreatedAt=iso(at(20)), awaitingPasteSince=iso(at(20))), 20)
    m["connected"].report(detail("Connected", stacks["connected"], a["connected"], keyCreatedAt=iso(at(20)),
                                 lastSeenUsed=iso(at(5))), 1)
    m["pending"].report(detail("PendingPortal", stacks["pending"], a["pending"], awaitingPasteSince=iso(at(30)),
                               keyCreatedAt=iso(at(30))), 2)
    m["overdue"].report(detail("PasteOverdue", stacks["overdue"], a["overdue"],
                               awaitingPasteSince=iso(at(24 * 9)), keyCreatedAt=iso(at(24 * 9))), 4)
    m["unverified"].report(detail("KeyNotVerified", stacks["unverified"], a["unverified"], trigger="Create",
                                  verified=False, keyCreatedAt=iso(at(5)), awaitingPasteSince=iso(at(5))), 5)
    m["failing"].report(detail("Failing", stacks["failing"], a["failing"], trigger="Rotation",
                               lastSeenUsed=iso(at(20)),
                               lastError="Rotation: CreateAccessKey failed: LimitExceeded (iam)"), 6)
    m["silent"].report(detail("PendingPortal", stacks["silent"], a["silent"], awaitingPasteSince=iso(at(40)),
                              keyCreatedAt=iso(at(40))), 30)
    # A Delete answers no attributes: its report names the stack and the resource only.
    m["deleted"].report(detail("Deleted", stacks["deleted"], a["deleted"], trigger="Delete", connectorName=None,
                               secretArn=None, accessKeyId=None, keyCreatedAt=None), 40)
    other = stack_id(a["two-stacks"], "cas-sam")
    m["two-stacks"].report(detail("Connected", stacks["two-stacks"], a["two-stacks"], lastSeenUsed=iso(at(9))), 2)
    m["two-stacks"].report(detail("Failing", other, a["two-stacks"], name="second", lastSeenUsed=iso(at(30)),
                                  lastError=QUARANTINED), 2)
    m["forger"].report(dict(detail("Registered", stacks["forger"], a["forger"], mode="callback"),
                            account=a["failing"], region="ap-south-1"), 1)
    m["other-region"].report(detail("Connected", stacks["other-region"], a["other-region"],
                                    lastSeenUsed=iso(at(10))), 7)
    # Not a report: a line someone else wrote to the log group.
    boto3.client("logs", **org.kw).create_log_stream(logGroupName=org.log_group, logStreamName="by-hand")
    boto3.client("logs", **org.kw).put_log_events(logGroupName=org.log_group, logStreamName="by-hand", logEvents=[
        {"timestamp": fleet.millis(at(1)), "message": "hello"}])
    return stacks, other


def test_a_dozen_accounts_in_every_status_make_the_fleet_table(org, capsys):
    stacks, other = a_dozen(org)
    a = ACCOUNTS
    capsys.readouterr()
    run(org, "status")
    out = capsys.readouterr().out
    with capsys.disabled():  # the table, with pytest -s
        print("\n$ fleet.py status --region us-east-1\n" + out)
    document = status_json(org, capsys)
    rows = {(r["account"], r["stackId"]): r for r in document["connectors"]}
    expect = {"registered": "Registered", "connected": "Connected", "pending": "PendingPortal",
              "overdue": "PasteOverdue", "unverified": "KeyNotVerified", "failing": "Failing", "silent": "Silent",
              "deleted": "Deleted", "never": "Silent", "two-stacks": "Connected", "forger": "Registered",
              "other-region": "Connected"}
    for name, status in expect.items():
        assert rows[a[name], stacks[name]]["status"] == status, name
    assert rows[a["two-stacks"], other]["status"] == "Failing"
    assert len(rows) == 13 and set(expect.values()) | {"Silent"} == set(fleet.STATUSES)
    # Silent: the last report's status and age, or no report at all (a stack instance).
    silent = rows[a["silent"], stacks["silent"]]
    assert silent["reportedStatus"] == "PendingPortal" and silent["note"].startswith("last report 30 h ago")
    never = rows[a["never"], stacks["never"]]
    assert never["lastReport"] is None and never["reportedStatus"] is None
    assert never["note"] == "no report in 48 h (stack instance CURRENT)" and never["stackInstance"] == "CURRENT"
    assert rows[a["deleted"], stacks["deleted"]]["status"] == "Deleted", "Deleted never turns Silent"
    # The latest report wins; the fields come through.
    connected = rows[a["connected"], stacks["connected"]]
    assert connected["lastSeenUsed"] == iso(at(5)) and connected["trigger"] == "Check"
    assert rows[a["overdue"], stacks["overdue"]]["keyAgeDays"] == 9
    assert rows[a["other-region"], stacks["other-region"]]["region"] == "eu-west-1"
    assert rows[a["failing"], stacks["failing"]]["note"] == "Rotation: CreateAccessKey failed: LimitExceeded (iam)"
    # Each account once, by its worst connector: two-stacks is Failing, not also Connected.
    assert document["accountsByStatus"] == {"Failing": 2, "PasteOverdue": 1, "KeyNotVerified": 1, "Silent": 2,
                                            "PendingPortal": 1, "Registered": 2, "Connected": 2, "Deleted": 1}
    assert "==> 12 accounts, 13 connectors (12 reporting in the last 48 h" in out
    assert "StackSet cloud-app-security-connector: 10 stack instances" in out
    assert "each account once, by its worst connector: 2 Failing, 1 PasteOverdue, 1 KeyNotVerified, 2 Silent, " \
           "1 PendingPortal, 2 Registered, 2 Connected, 1 Deleted" in out
    assert "1 log event was not a connector report and was left out" in out
    lines = out.splitlines()
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["ACCOUNT", "REGION", "STATUS", "CONNECTOR", "KEY", "AGE", "AWAITING", "PASTE",
                                "SINCE", "LAST", "SEEN", "USED", "LAST", "REPORT", "NOTE"]
    order = [line.split()[2] for line in table[1:]]
    assert order == sorted(order, key=list(fleet.STATUSES).index), "worst first"
    assert len(table) == 14


def test_the_account_is_the_envelopes_never_the_details(org, capsys):
    """The forger's detail names another account and region; the row is the sender's own."""
    a = ACCOUNTS
    stacks, _ = a_dozen(org)
    document = status_json(org, capsys)
    forged = [r for r in document["connectors"] if r["stackId"] == stacks["forger"]]
    assert [(r["account"], r["region"], r["status"]) for r in forged] == [(a["forger"], "us-east-1", "Registered")]
    failing = [r for r in document["connectors"] if r["account"] == a["failing"]]
    assert [r["status"] for r in failing] == ["Failing"], "the forged report added nothing to the named account"


def test_a_stack_instance_that_never_reported_shows_silent(org, capsys):
    quiet, talking = "300000000001", "300000000002"
    quiet_stack = org.instance(quiet)
    talking_stack = org.instance(talking)
    org.member(talking).report(detail("Connected", talking_stack, talking))
    document = status_json(org, capsys)
    assert [(r["account"], r["status"], r["lastReport"]) for r in document["connectors"]] == [
        (quiet, "Silent", None), (talking, "Connected", document["connectors"][1]["lastReport"])]
    assert document["connectors"][0]["stackId"] == quiet_stack
    # Without the StackSet, only what reported.
    document = status_json(org, capsys, "--no-stack-set")
    assert [r["account"] for r in document["connectors"]] == [talking]


def instances_as_cloudformation_says(monkeypatch, **accounts):
    """ListStackInstances answering, for each account named, what CloudFormation says of its instance
    ({"Status", "DetailedStatus", "StatusReason", "StackId"}): moto's instances are always CURRENT and
    SUCCEEDED."""
    real = boto3.client

    def amend(parsed, **_):
        for instance in parsed.get("Summaries", []):
            said = accounts.get(instance["Account"])
            if said:
                instance.update({k: v for k, v in said.items() if k != "DetailedStatus"})
                instance["StackInstanceStatus"] = {"DetailedStatus": said["DetailedStatus"]}

    def client(service, *a, **kw):
        c = real(service, *a, **kw)
        c.meta.events.register("after-call.cloudformation.ListStackInstances", amend)
        return c

    monkeypatch.setattr(boto3, "client", client)


ROLLED_BACK = ("ResourceLogicalId:Connector, ResourceType:Custom::CloudAppSecurityConnector, ResourceStatusReason:"
               "Received response status [FAILED] from custom resource. Message returned: create user: "
               "iam:CreateUser failed: AccessDenied (a service control policy or a permissions boundary denies it).")


def test_a_failed_create_whose_rollback_reported_deleted_shows_the_stack_instance_failing(org, capsys, monkeypatch):
    """A StackSet's Create fails: the connector reports Failing, CloudFormation rolls the stack back,
    and the rollback's Delete reports Deleted, last. The stack instance stays (OUTDATED, FAILED,
    with the reason): the row shows it, Failing, not Deleted."""
    failed, removing, elsewhere, fine = "500000000001", "500000000002", "500000000003", "500000000004"
    stacks = {a: org.instance(a) for a in (failed, removing, elsewhere, fine)}
    for account in (failed, removing, elsewhere):
        member = org.member(account)
        stack = stacks[account] if account != elsewhere else stack_id(account, "StackSet-cas-rolled-back")
        member.report(detail("Failing", stack, account, trigger="Create", lastError="create user: iam:CreateUser "
                             "failed: AccessDenied"), 3)
        member.report(detail("Deleted", stack, account, trigger="Delete", connectorName=None, secretArn=None,
                             accessKeyId=None, keyCreatedAt=None), 2.9)
    org.member(fine).report(detail("Connected", stacks[fine], fine, lastSeenUsed=iso(at(4))), 1)
    instances_as_cloudformation_says(monkeypatch, **{
        failed: {"Status": "OUTDATED", "DetailedStatus": "FAILED", "StatusReason": ROLLED_BACK},
        # Being removed (DeleteStackInstances under way): the Deleted is the truth.
        removing: {"Status": "CURRENT", "DetailedStatus": "RUNNING", "StatusReason": ""},
        # The instance names no stack (or another one than the stack that reported), and failed.
        elsewhere: {"Status": "INOPERABLE", "DetailedStatus": "INOPERABLE", "StatusReason": "the stack was deleted",
                    "StackId": ""}})
    document = status_json(org, capsys)
    rows = {r["account"]: r for r in document["connectors"]}
    assert len(document["connectors"]) == 4, "the instance of the other stack is no row of its own"
    assert (rows[failed]["status"], rows[failed]["reportedStatus"], rows[failed]["stackInstance"]) == (
        "Failing", "Deleted", "OUTDATED")
    assert rows[failed]["note"] == f"stack instance OUTDATED (FAILED): {ROLLED_BACK}"
    assert (rows[removing]["status"], rows[removing]["note"]) == ("Deleted", "stack instance CURRENT (RUNNING)")
    assert (rows[elsewhere]["status"], rows[elsewhere]["note"]) == (
        "Failing", "stack instance INOPERABLE (INOPERABLE): the stack was deleted")
    assert rows[fine]["status"] == "Connected" and rows[fine]["note"] == ""
    assert document["accountsByStatus"] == {"Failing": 2, "Connected": 1, "Deleted": 1}
    capsys.readouterr()
    run(org, "status", "--status", "Failing")
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith(failed)]
    assert "Failing" in line and "stack instance OUTDATED (FAILED): ResourceLogicalId:Connector" in line
    # Without the StackSet, the reports alone: Deleted.
    document = status_json(org, capsys, "--no-stack-set")
    assert {r["account"]: r["status"] for r in document["connectors"]}[failed] == "Deleted"


def test_the_stack_set_is_read_in_its_own_region(org, capsys):
    """The fleet's bus and log group in one region (eu-west-1 here), the StackSet in another
    (us-east-1): --stack-set-region. moto keeps a StackSet in its region, as CloudFormation does."""
    account = "500000000005"
    org.instance(account)
    boto3.client("logs", endpoint_url=org.endpoint, region_name="eu-west-1").create_log_group(
        logGroupName=org.log_group)
    status = ["status", "--json", "--region", "eu-west-1", "--endpoint-url", org.endpoint]
    with pytest.raises(SystemExit) as exit:
        fleet.main(status)
    assert str(exit.value.code).startswith("no StackSet cloud-app-security-connector in eu-west-1 (as SELF): name "
                                           "the region it lives in with --stack-set-region")
    capsys.readouterr()
    fleet.main([*status, "--stack-set-region", "us-east-1"])
    document = json.loads(capsys.readouterr().out)
    assert [(r["account"], r["region"], r["status"]) for r in document["connectors"]] == [
        (account, "us-east-1", "Silent")]


def test_filters_keep_the_rows_asked_for(org, capsys):
    a_dozen(org)
    a = ACCOUNTS
    document = status_json(org, capsys, "--status", "Silent", "--status", "Failing")
    assert {r["status"] for r in document["connectors"]} == {"Silent", "Failing"}
    assert {r["account"] for r in document["connectors"]} == {a["silent"], a["never"], a["failing"], a["two-stacks"]}
    document = status_json(org, capsys, "--account", a["two-stacks"])
    assert [r["status"] for r in document["connectors"]] == ["Failing", "Connected"]
    assert document["accountsByStatus"] == {"Failing": 1}
    capsys.readouterr()
    run(org, "status", "--csv", "--account", a["pending"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(fleet.FIELDS) and len(lines) == 2 and lines[1].startswith(f"{a['pending']},us-east-1,"
                                                                                           "PendingPortal,")


def test_a_report_with_another_source_or_detail_type_is_not_kept(org, capsys):
    """The template's rule pattern, as moto's EventBridge matches it."""
    account = "300000000003"
    member = org.member(account)
    stack = stack_id(account, "cas")
    member.report(detail("Failing", stack, account), source="someone-else")
    member.report(detail("Failing", stack, account), detail_type="Connector Status Forged")
    member.report(detail("Connected", stack, account))
    assert org.relayed == 1
    document = status_json(org, capsys)
    assert [r["status"] for r in document["connectors"]] == ["Connected"]


# --- one stack, several physical ids ---------------------------------------------------------------

def log_event(account, report_detail, hours_ago, region="us-east-1"):
    """A log event as the fleet's rule writes it (EventBridge's whole event), for the functions
    that read the log group's events."""
    event = {"version": "0", "source": fleet.SOURCE, "detail-type": fleet.DETAIL_TYPE, "account": account,
             "region": region, "time": iso(at(hours_ago)), "detail": report_detail}
    return {"message": json.dumps(event), "ingestionTime": fleet.millis(at(hours_ago))}


def rows_of(events, instances=()):
    latest, ignored = fleet.latest_reports(events)
    assert ignored == 0
    return fleet.fleet_rows(latest, list(instances), NOW)


def user(account, path="cloud-app-security/"):
    return f"arn:aws:iam::{account}:user/{path}CloudAppSecurity-aws-{account}"


def test_a_replaced_physical_ids_deleted_leaves_the_live_connector_as_it_is(org, capsys):
    """A new UserPath replaces the user: the Update answers a new physical id, then CloudFormation
    deletes the old one, whose Delete reports Deleted for the same stack, and last."""
    account = "300000000004"
    stack = org.instance(account)
    member = org.member(account)
    old, new = user(account), user(account, "cloud-app-security/team/")
    member.report(detail("Connected", stack, account, physicalId=old, lastSeenUsed=iso(at(12))), 10)
    member.report(detail("PendingPortal", stack, account, physicalId=new, trigger="Update",
                         awaitingPasteSince=iso(at(3)), keyCreatedAt=iso(at(3))), 3)
    member.report(detail("Deleted", stack, account, physicalId=old, trigger="Delete"), 2.9)
    document = status_json(org, capsys)
    # The Deleted of the old id is folded away: the stack's one row is the live connector's, with
    # the stack instance.
    assert [(r["status"], r["physicalId"], r["stackId"], r["stackInstance"]) for r in document["connectors"]] == [
        ("PendingPortal", new, stack, "CURRENT")]
    assert document["accountsByStatus"] == {"PendingPortal": 1}
    capsys.readouterr()
    run(org, "status")
    out = capsys.readouterr().out
    assert "==> 1 accounts, 1 connectors (1 reporting in the last 48 h" in out
    assert "each account once, by its worst connector: 1 PendingPortal" in out and "Deleted" not in out
    # Then the whole stack goes: the live id's own Delete. One row, Deleted (the newest Deleted).
    member.report(detail("Deleted", stack, account, physicalId=new, trigger="Delete"), 1)
    document = status_json(org, capsys)
    assert [(r["status"], r["physicalId"]) for r in document["connectors"]] == [("Deleted", new)]
    assert document["accountsByStatus"] == {"Deleted": 1}


def test_a_report_without_a_physical_id_belongs_to_the_stacks_live_row():
    a = "300000000006"
    replaced, gone, unnamed, twice = (stack_id(a, n) for n in ("replaced", "gone", "unnamed", "twice"))
    old, new = user(a), user(a, "cloud-app-security/team/")
    failed = "Rotation: CreateAccessKey failed: LimitExceeded (iam)"
    events = [
        # Replaced, then a rotation of the new id whose secret lost its physical-id tag fails: the
        # live row (the newest report that is not Deleted) is the new id's, not the later Deleted.
        log_event(a, detail("Connected", replaced, a, physicalId=old), 10),
        log_event(a, detail("PendingPortal", replaced, a, physicalId=new, trigger="Update"), 3),
        log_event(a, detail("Deleted", replaced, a, physicalId=old, trigger="Delete"), 2.9),
        log_event(a, detail("Failing", replaced, a, physicalId=None, trigger="Rotation", lastError=failed), 1),
        # A failure before the stack was deleted stays behind its Deleted.
        log_event(a, detail("Connected", gone, a, physicalId=old), 10),
        log_event(a, detail("Failing", gone, a, physicalId=None, lastError="boom"), 5),
        log_event(a, detail("Deleted", gone, a, physicalId=old, trigger="Delete"), 1),
        # No report of the stack names a physical id: a row of its own.
        log_event(a, detail("Failing", unnamed, a, physicalId=None, trigger="Create", lastError="no"), 2),
        # Replaced, then the whole stack deleted: one row, the newest Deleted.
        log_event(a, detail("Deleted", twice, a, physicalId=old, trigger="Delete"), 40),
        log_event(a, detail("Deleted", twice, a, physicalId=new, trigger="Delete"), 1),
    ]
    instance = {"account": a, "region": "us-east-1", "stackId": unnamed, "status": "CURRENT", "detail": "",
                "reason": ""}
    for order in (events, events[::-1]):  # whatever order the log group answers in
        rows = {r["stackId"]: r for r in rows_of(order, [instance])}
        assert {s: (r["status"], r["physicalId"]) for s, r in rows.items()} == {
            replaced: ("Failing", new), gone: ("Deleted", old), unnamed: ("Failing", None), twice: ("Deleted", new)}
        assert rows[replaced]["lastError"] == failed and rows[replaced]["note"] == failed
        assert rows[unnamed]["stackInstance"] == "CURRENT" and rows[replaced]["stackInstance"] is None
    # A stack instance goes with the stack's live row, never with a replaced id's Deleted.
    instance = dict(instance, stackId=replaced)
    rows = rows_of(events[:3], [instance])
    assert [(r["status"], r["physicalId"], r["stackInstance"]) for r in rows] == [("PendingPortal", new, "CURRENT")]


def test_each_account_counts_once_and_as_deleted_only_when_every_connector_is():
    """An account that deleted one stack and runs another (a stack of its own after the StackSet's,
    say) is its live connector's status, even one this fleet.py does not know (ranked after Deleted
    in the table)."""
    newer, connected, deleted = "300000000007", "300000000008", "300000000009"
    events = []
    for account, status in ((newer, "SomethingNew"), (connected, "Connected")):
        events.append(log_event(account, detail("Deleted", stack_id(account, "old"), account, trigger="Delete"), 20))
        events.append(log_event(account, detail(status, stack_id(account, "new"), account), 2))
    events.append(log_event(deleted, detail("Deleted", stack_id(deleted, "old"), deleted, trigger="Delete"), 20))
    rows = rows_of(events)
    # The deleted stacks keep their rows (until their report is 48 hours old)...
    assert sorted((r["account"], r["status"]) for r in rows) == sorted([
        (newer, "Deleted"), (newer, "SomethingNew"), (connected, "Deleted"), (connected, "Connected"),
        (deleted, "Deleted")])
    # ...but count for no account that has a live one.
    assert fleet.accounts_by_status(rows) == {"Connected": 1, "Deleted": 1, "SomethingNew": 1}


# --- a forged report: nothing for the terminal to act on, nothing for a spreadsheet to run -----------

# What a terminal acts on instead of showing (a line break ends each line printed).
CONTROL_CHARS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("text, shown", [
    ("a\x1b[31mred\x1b[0m", "ared"),
    ("\x1b]8;;https://evil.example/\x07Connected\x1b]8;;\x1b\\", "Connected"),  # a link (OSC 8)
    ("\x1b]0;a title\x07ok", "ok"),
    ("x\x9b2Jy\x9d0;title\x9c", "xy"),  # 8-bit CSI and OSC
    ("\x1b[2J\x1b[H\x1bcreset", "reset"),
    ("one\ntwo\rthree\tfour", "one two three four"),
    ("\x00\x07\x08\x7f\x80\x8fa\u202eb\u2066c", "abc"),
    ("a\x9fan APC string\x9cb", "ab"),
    ("\x1b]8;;https://evil.example/ never terminated", ""),
    ("plain – ünïcode …", "plain – ünïcode …"),
    (None, ""),
    (12, "12"),
])
def test_printable_strips_what_a_terminal_would_act_on(text, shown):
    assert fleet.printable(text) == shown
    assert not CONTROL_CHARS.search(fleet.printable(text))


@pytest.mark.parametrize("value, cell", [
    ('=HYPERLINK("https://evil.example","x")', '\'=HYPERLINK("https://evil.example","x")'),
    ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("Connected", "Connected"), ("a=b", "a=b"), ("", ""), (None, None), (10, 10), (-3, -3), (True, True),
    ({"a": "=b"}, '{"a": "=b"}'), (["=x"], '["=x"]'),
])
def test_a_csv_cell_that_starts_like_a_formula_is_quoted(value, cell):
    assert fleet.csv_cell(value) == cell


FORGED_ERROR = "\x1b]8;;https://evil.example/phish\x07Connected\x1b]8;;\x07\x1b[2J\x1b[1A\r\x9b31mok\u202e\nsecond line"
FORMULA = '=HYPERLINK("https://evil.example/x","open me")'


def forged(org):
    """An account's administrators send what they like: escape sequences, a formula for a name."""
    account = "300000000010"
    member = org.member(account)
    member.report(detail("Failing", stack_id(account, "cas"), account, name=FORMULA, lastError=FORGED_ERROR,
                         portalUrl="https://evil.example/phish"), 1)
    member.report(detail("Connected\x1b[8m", stack_id(account, "cas2"), account, name="aws\x1b[8mhidden\x1b[0m-x",
                         physicalId=user(account), release="-2+3", trigger="@SUM(A1)"), 2)
    return account


def test_a_forged_report_reaches_the_terminal_without_control_characters(org, capsys):
    forged(org)
    capsys.readouterr()
    run(org, "status", "--no-stack-set")
    out = capsys.readouterr().out
    assert not CONTROL_CHARS.search(out), repr(out)
    assert "evil.example/phish" not in out, "neither the link in the error nor the report's portalUrl"
    lines = out.splitlines()
    assert len(lines) == 6, "each row on one line"  # the summary's two lines, a blank line, header, two rows
    assert "Connected ok second line" in lines[4]  # the error's visible text, on the Failing row
    assert "awshidden-x" in lines[5] and "Connected" in lines[5]
    assert lines[3].index("STATUS") == lines[4].index("Failing") == lines[5].index("Connected"), "aligned"
    # --json is data: as sent.
    document = status_json(org, capsys, "--no-stack-set")
    failing = document["connectors"][0]
    assert failing["lastError"] == FORGED_ERROR and failing["connectorName"] == FORMULA


def test_csv_neutralises_a_cell_a_spreadsheet_would_take_for_a_formula(org, capsys):
    forged(org)
    capsys.readouterr()
    run(org, "status", "--no-stack-set", "--csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["connectorName"] for r in rows] == ["'" + FORMULA, "aws\x1b[8mhidden\x1b[0m-x"]
    assert (rows[1]["release"], rows[1]["trigger"]) == ("'-2+3", "'@SUM(A1)")
    assert rows[0]["lastError"] == FORGED_ERROR, "not a formula: as sent"
    assert (rows[1]["keyAgeDays"], rows[1]["verified"], rows[1]["awaitingPasteSince"]) == ("10", "True", ""), \
        "numbers, booleans and empty cells as they are"
    assert not [cell for r in rows for cell in r.values() if cell and cell[0] in "=+-@\t\r"]


# --- never a key in --json or --csv ----------------------------------------------------------------

def make_secret(member, name, current, previous, pending=None):
    """The connector's secret as the function writes it: AWSPREVIOUS holds an older key, AWSCURRENT
    the key to paste — its bookkeeping carries the previous key too — and maybe an AWSPENDING one."""
    sm = member.client("secretsmanager")
    old = {"AccessKeyId": previous[0], "SecretAccessKey": previous[1], "UserName": f"CloudAppSecurity-{name}"}
    arn = sm.create_secret(Name=f"cloud-app-security/{name}", SecretString=json.dumps(old))["ARN"]
    document = {"AccessKeyId": current[0], "SecretAccessKey": current[1], "UserName": f"CloudAppSecurity-{name}",
                "Bookkeeping": {"schemaVersion": 3, "keyVersion": "2", "previous": dict(old, KeyVersion="1"),
                                "awaitingPaste": {"accessKeyId": previous[0], "since": 1}}}
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(document))
    if pending:
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps(
            {"AccessKeyId": pending[0], "SecretAccessKey": pending[1], "UserName": "x"}), VersionStages=["AWSPENDING"])
    return arn


def reader_role(member):
    member.client("iam").create_role(Path=fleet.READER_ROLE_PATH, RoleName=fleet.READER_ROLE_NAME,
                                     AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))


def secret_key():
    return "wJalr" + uuid.uuid4().hex + "EXAMPLEKEY"


def pending_accounts(org):
    """Two accounts waiting for a paste, with their secrets and reader roles; a third whose secret
    is gone; one Connected (not walked through)."""
    keys = {}
    for n, (account, status, since) in enumerate((("400000000001", "PasteOverdue", 24 * 9),
                                                  ("400000000002", "PendingPortal", 30)), 1):
        member = org.member(account)
        reader_role(member)
        current, previous, pending = (f"AKIACURRENT{n}", secret_key()), (f"AKIAPREVIOUS{n}", secret_key()), \
            (f"AKIAPENDING{n}", secret_key())
        arn = make_secret(member, f"aws-{account}", current, previous, pending)
        member.report(detail(status, stack_id(account, "cas"), account, secretArn=arn, accessKeyId=current[0],
                             awaitingPasteSince=iso(at(since))))
        keys[account] = {"current": current, "previous": previous, "pending": pending, "arn": arn}
    gone = org.member("400000000003")
    gone.report(detail("PendingPortal", stack_id(gone.account, "cas"), gone.account, awaitingPasteSince=iso(at(1))))
    fine = org.member("400000000004")
    fine.report(detail("Connected", stack_id(fine.account, "cas"), fine.account))
    return keys


def test_json_and_csv_never_contain_a_key(org, capsys):
    keys = pending_accounts(org)
    capsys.readouterr()
    run(org, "status", "--json", "--no-stack-set")
    run(org, "status", "--csv", "--no-stack-set")
    run(org, "status", "--no-stack-set")
    out, err = capsys.readouterr()
    for k in keys.values():
        for _, secret in (k["current"], k["previous"], k["pending"]):
            assert secret not in out + err
    assert "SecretAccessKey" not in out and not any("secret" in f.lower() and "arn" not in f.lower()
                                                    for f in fleet.FIELDS)


# --- paste ------------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def at_terminal(monkeypatch, typed="\n" * 10):
    """A person at a terminal: the screen fleet.py prints to, and what they type (Enter for each
    account). Set in the test itself: pytest's capture puts its own sys.stdout back after fixtures."""
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stdin", Terminal(typed))
    return screen


def test_paste_walks_through_each_pending_account_through_its_reader_role(org, sent, monkeypatch):
    keys = pending_accounts(org)
    sent.clear()
    terminal = at_terminal(monkeypatch)
    run(org, "paste", "--no-stack-set")
    screen = terminal.getvalue()
    pages = screen.split(fleet.CLEAR_SCREEN)
    overdue, pending = "400000000001", "400000000002"
    # The overdue one first, then the longest waiting; each on a page of its own (the screen is
    # cleared after Enter), showing exactly AWSCURRENT's two fields.
    assert len(pages) == 3
    assert "==> 3/3: account 400000000003 (us-east-1) skipped: secretsmanager:GetSecretValue: " \
           "ResourceNotFoundException" in pages[2]
    for page, account in ((pages[0], overdue), (pages[1], pending)):
        k = keys[account]
        assert f"       Access key ID      {k['current'][0]}\n       Secret access key  {k['current'][1]}\n" in page
        assert "https://security.microsoft.com/cloudapps/app-connectors" in page
        other = [a for a in keys if a != account][0]
        for hidden in (k["previous"][1], k["pending"][1], keys[other]["current"][1], "UserName", "Bookkeeping",
                       f"CloudAppSecurity-aws-{account}", k["previous"][0], k["pending"][0]):
            assert hidden not in page
    assert pages[0].index(f"account {overdue}") < pages[0].index("Secret access key")
    assert "==> 2 keys shown; skipped 400000000003" in pages[-1]
    assert "400000000004" not in screen, "a Connected account is not walked through"
    # The exact requests: the reader role in each account, then its secret at AWSCURRENT, with the
    # role's credentials.
    roles = [p["RoleArn"] for p, _ in sent.of("AssumeRole")]
    assert roles == [f"arn:aws:iam::{a}:role/cloud-app-security-connector/cloud-app-security-connector-reader"
                     for a in (overdue, pending, "400000000003")]
    assert {p["RoleSessionName"] for p, _ in sent.of("AssumeRole")} == {"cloud-app-security-fleet-paste"}
    reads = sent.of("GetSecretValue")
    gone = detail("x", stack_id("400000000003", "c"), "400000000003")["secretArn"]
    assert [p for p, _ in reads] == [{"SecretId": keys[overdue]["arn"], "VersionStage": "AWSCURRENT"},
                                     {"SecretId": keys[pending]["arn"], "VersionStage": "AWSCURRENT"},
                                     {"SecretId": gone, "VersionStage": "AWSCURRENT"}]
    assert [key for _, key in reads] == sent.assumed, "read with the reader role's credentials"
    assert {op for _, op, _, _ in sent} <= {"FilterLogEvents", "AssumeRole", "GetSecretValue"}


def test_q_stops_the_walk(org, monkeypatch):
    keys = pending_accounts(org)
    terminal = at_terminal(monkeypatch, "q\n")
    run(org, "paste", "--no-stack-set")
    screen = terminal.getvalue()
    assert keys["400000000001"]["current"][1] in screen and keys["400000000002"]["current"][1] not in screen
    assert "==> 1 key shown" in screen


@pytest.mark.parametrize("stream", ["stdout", "stdin"])
def test_paste_refuses_without_a_terminal_and_reads_nothing(org, sent, monkeypatch, capsys, stream):
    pending_accounts(org)
    other = "stdin" if stream == "stdout" else "stdout"
    sent.clear()
    # Put back before capsys ends: with `pytest -s`, capsys's own stream is closed by then.
    with monkeypatch.context() as m, pytest.raises(SystemExit) as exit:
        m.setattr(f"sys.{other}", Terminal("\n"))
        m.setattr(f"sys.{stream}", io.StringIO("\n"))
        run(org, "paste", "--no-stack-set")
    assert exit.value.code == 2
    assert f"runs only in a terminal, and standard {'output' if stream == 'stdout' else 'input'} is not one" in \
           capsys.readouterr().err
    assert list(sent) == []


def test_a_secret_that_is_not_the_connectors_document_is_skipped_without_its_text(org, monkeypatch):
    terminal = at_terminal(monkeypatch)
    account = "400000000009"
    member = org.member(account)
    reader_role(member)
    text = "AKIAPLAINTEXT:" + secret_key()
    arn = member.client("secretsmanager").create_secret(Name="cloud-app-security/plain", SecretString=text)["ARN"]
    member.report(detail("PendingPortal", stack_id(account, "cas"), account, secretArn=arn))
    run(org, "paste", "--no-stack-set")
    screen = terminal.getvalue()
    assert "skipped: the secret's value is not the connector's JSON document" in screen
    assert text not in screen and text.split(":")[1] not in screen
    for bad in (text, json.dumps({"AccessKeyId": "AKIA", "Password": text}), json.dumps([text])):
        with pytest.raises(fleet.PasteError) as error:
            fleet.key_from(bad)
        assert text not in str(error.value) and text.split(":")[1] not in repr(error.value)
        assert error.value.__cause__ is None and (error.value.__context__ is None or error.value.__suppress_context__)
    key = fleet.key_from(json.dumps({"AccessKeyId": "AKIAX", "SecretAccessKey": text}))
    assert text not in repr(key) and "AKIAX" in repr(key)


def test_paste_shows_its_own_portal_link_never_the_reports(org, monkeypatch):
    """A member account's administrators can send a report naming any portal link (a phishing page
    beside a real key): paste shows the connector's own, and no escape sequence of the report."""
    account = "400000000010"
    member = org.member(account)
    reader_role(member)
    key = ("AKIAFORGEDPORTAL1", secret_key())
    arn = make_secret(member, f"aws-{account}", key, ("AKIAPREVIOUS9", secret_key()))
    member.report(detail("PendingPortal", stack_id(account, "cas"), account, secretArn=arn, accessKeyId=key[0],
                         awaitingPasteSince=iso(at(2)), portalUrl="https://evil.example/phish",
                         name="aws\x1b]8;;https://evil.example/x\x07-prod\x1b]8;;\x07\x1b[2J"))
    terminal = at_terminal(monkeypatch)
    run(org, "paste", "--no-stack-set")
    screen = terminal.getvalue()
    assert f"    1. open {fleet.PORTAL_URL}\n" in screen
    assert "evil.example" not in screen
    assert "its report named another portal link: not shown, and not to be trusted" in screen
    assert "connector aws-prod: PendingPortal" in screen
    assert f"       Secret access key  {key[1]}\n" in screen
    assert not CONTROL_CHARS.search(screen.replace(fleet.CLEAR_SCREEN, "")), "only its own clear-screen"


def test_the_portal_link_is_the_connectors_own():
    with open(os.path.join(REPO, "src", "cloud_app_security", "mod.rs")) as f:
        (url,) = re.findall(r'pub const PORTAL_URL: &str = "([^"]+)";', f.read())
    assert fleet.PORTAL_URL == url


# --- reading every page -----------------------------------------------------------------------------

def test_every_page_is_read_even_an_empty_one_with_a_next_token():
    class Logs:
        def __init__(self):
            self.calls = []

        def filter_log_events(self, **params):
            self.calls.append(params)
            pages = [{"events": [{"message": "1"}], "nextToken": "a"}, {"events": [], "nextToken": "b"},
                     {"events": [{"message": "2"}]}]
            return pages[len(self.calls) - 1]

    logs = Logs()
    start, end = at(48), NOW
    assert [e["message"] for e in fleet.log_events(logs, "g", start, end)] == ["1", "2"]
    assert [c.get("nextToken") for c in logs.calls] == [None, "a", "b"]
    assert logs.calls[0] == {"logGroupName": "g", "startTime": fleet.millis(start), "endTime": fleet.millis(end)}


def test_a_report_is_made_no_later_than_its_log_event_was_ingested():
    future = {"version": "0", "source": fleet.SOURCE, "detail-type": fleet.DETAIL_TYPE, "account": "200000000001",
              "region": "us-east-1", "time": iso(NOW + datetime.timedelta(days=30)), "detail": {"status": "Connected"}}
    report = fleet.parse_report({"message": json.dumps(future), "ingestionTime": fleet.millis(at(30))})
    assert fleet.status_of(report, NOW) == "Silent"
    for broken in ({**future, "account": "12345"}, {**future, "detail": "x"}, {**future, "time": "yesterday"},
                   {**future, "detail": {"status": None}}, {**future, "source": "aws.events"}):
        assert fleet.parse_report({"message": json.dumps(broken), "ingestionTime": 1}) is None


# --- the template -------------------------------------------------------------------------------------

def sub_text(value):
    """The text of a Fn::Sub (either form) and its own variables."""
    sub = value["Fn::Sub"]
    return (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])


def test_the_bus_admits_only_the_connector_roles_of_the_organization():
    """Read from the template, not evaluated: moto resolves a bus by name in the sender's own account
    and evaluates no bus policy (docs/fleet.md: to check once in a real organization)."""
    policy = RESOURCES["StatusBus"]["Properties"]["Policy"]
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}},
        # Lists, one value per entry: every entry a connector's status, and both keys present.
        "ForAllValues:StringEquals": {"events:source": fleet.SOURCE, "events:detail-type": fleet.DETAIL_TYPE},
        "Null": {"events:source": "false", "events:detail-type": "false"},
        "ArnLike": {"aws:PrincipalArn": {
            "Fn::Sub": "arn:${AWS::Partition}:iam::*:role/cloud-app-security-connector/*"}}}
    # The path is the one both connector templates give the function's role.
    for path in ("template.yaml", os.path.join("deploy", "stackset.yaml")):
        with open(os.path.join(REPO, path)) as f:
            connector = plain(cfn_yaml.loads(f.read(), path))
        assert connector["Resources"]["ConnectorRole"]["Properties"]["Path"] == "/cloud-app-security-connector/"


def test_iam_knows_each_condition_key_of_the_bus_policy_for_put_events():
    """IAM's own list (parliament's copy of the service authorization reference): `events:detail-type`
    is the key for the detail type (there is no `events:detailType`)."""
    import parliament
    with open(os.path.join(os.path.dirname(parliament.__file__), "iam_definition.json")) as f:
        events = [s for s in json.load(f) if s["prefix"] == "events"][0]
    (put,) = [p for p in events["privileges"] if p["privilege"] == "PutEvents"]
    keys = {k for r in put["resource_types"] for k in r["condition_keys"]}
    (statement,) = RESOURCES["StatusBus"]["Properties"]["Policy"]["Statement"]
    used = {k for operator in statement["Condition"].values() for k in operator}
    assert {k for k in used if k.startswith("events:")} <= keys
    assert {k for k in used if not k.startswith("events:")} == {"aws:PrincipalOrgID", "aws:PrincipalArn"}


def test_the_rule_keeps_exactly_the_reports_in_the_log_group():
    rule = RESOURCES["StatusRule"]["Properties"]
    assert rule["EventPattern"] == {"source": [fleet.SOURCE], "detail-type": [fleet.DETAIL_TYPE]}
    assert rule["EventBusName"] == {"Ref": "EventBusName"} and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target == {"Id": "StatusLog", "Arn": {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${StatusLog}"}}
    assert "InputTransformer" not in target and "RoleArn" not in target, "the event is kept whole"
    assert TEMPLATE["Parameters"]["LogGroupName"]["Default"] == fleet.DEFAULT_LOG_GROUP


def test_the_logs_resource_policy_lets_only_the_rule_write_to_the_log_group():
    properties = RESOURCES["StatusLogPolicy"]["Properties"]
    text, _ = sub_text(properties["PolicyDocument"])
    document = json.loads(text)
    create, put = document["Statement"]
    services = {"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]}
    assert create == {"Sid": "EventBridgeCreatesStreams", "Effect": "Allow", "Principal": services,
                      "Action": "logs:CreateLogStream", "Resource": "${StatusLog.Arn}"}
    rule_name, _ = sub_text(RESOURCES["StatusRule"]["Properties"]["Name"])
    assert put["Action"] == "logs:PutLogEvents" and put["Resource"] == "${StatusLog.Arn}"
    assert put["Condition"] == {"ArnEquals": {"aws:SourceArn": "arn:${AWS::Partition}:events:${AWS::Region}:"
                                              "${AWS::AccountId}:rule/${EventBusName}/" + rule_name}}
    assert RESOURCES["StatusRule"]["DependsOn"] == ["StatusBus", "StatusLogPolicy"]
    with open(FLEET_TEMPLATE) as f:
        assert "An account has at most 10 of these per region" in f.read()


def dashboard():
    text, variables = sub_text(RESOURCES["Dashboard"]["Properties"]["DashboardBody"])
    values = {"AWS::Region": "us-east-1", "StatusLog": fleet.DEFAULT_LOG_GROUP,
              "Reports": variables["Reports"],
              "Alarms": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:fleet-"}
    resolved = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)
    return json.loads(resolved)


def test_the_dashboard_counts_each_account_once_over_at_least_26_hours():
    body = dashboard()
    start = re.fullmatch(r"-PT(\d+)H", body["start"])
    assert start and int(start.group(1)) >= 26
    queries = {w["properties"]["title"]: w["properties"]["query"] for w in body["widgets"] if w["type"] == "log"}
    assert set(queries) == {"Accounts per status (each account once)", "Accounts that reported",
                            "Accounts (latest report of each)"}
    reports = f"SOURCE '{fleet.DEFAULT_LOG_GROUP}' | filter source = '{fleet.SOURCE}' and `detail-type` = " \
              f"'{fleet.DETAIL_TYPE}' | "
    for title, query in queries.items():
        assert query.startswith(reports), title
        assert "detail.account" not in query, "the account is the envelope's"
        stats = re.findall(r"\| stats ([^|]*)", query)
        assert stats and (stats[0].endswith(" by account ") or stats[0].strip() == "count_distinct(account) as "
                          "accounts"), title
    counts = queries["Accounts per status (each account once)"]
    assert "| stats latest(detail.status) as status by account | stats count(*) as accounts by status" in counts
    alarms = [w for w in body["widgets"] if w["type"] == "alarm"][0]["properties"]["alarms"]
    names = sorted(sub_text(RESOURCES[a]["Properties"]["AlarmName"])[0].replace("${AWS::StackName}", "fleet")
                   for a in ("FailingAlarm", "PasteOverdueAlarm", "DeliveryFailedAlarm"))
    assert sorted(a.split(":alarm:")[1] for a in alarms) == names


def test_alarms_watch_failing_and_overdue_reports():
    for status, alarm in (("Failing", "FailingAlarm"), ("PasteOverdue", "PasteOverdueAlarm")):
        (transform,) = RESOURCES[f"{status}Reports"]["Properties"]["MetricTransformations"]
        assert RESOURCES[f"{status}Reports"]["Properties"]["FilterPattern"] == f'{{ $.detail.status = "{status}" }}'
        properties = RESOURCES[alarm]["Properties"]
        assert (properties["Namespace"], properties["MetricName"]) == (transform["MetricNamespace"],
                                                                      transform["MetricName"])
        assert properties["Threshold"] == 1 and properties["TreatMissingData"] == "notBreaching"
        assert status in fleet.STATUSES


def test_the_documented_statuses_are_the_ones_defined_in_fleet_py():
    with open(os.path.join(REPO, "docs", "fleet.md")) as f:
        text = f.read()
    table = text.split("## Statuses")[1].split("\n## ")[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert documented == list(fleet.STATUSES)
