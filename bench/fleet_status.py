"""How long `scripts/fleet.py status` takes for an organization of N accounts, against moto server:
the StackSet's stack instances and every report of the last 48 hours, read and made into the
fleet's table. Prints the figure; not a timed test (issue 20 asks for 1,000 accounts within 10 s).

  .venv/bin/python bench/fleet_status.py                      1,000 accounts, 3 runs
  .venv/bin/python bench/fleet_status.py --accounts 12 --show  a dozen, and the table itself

The organization, made once before the runs (not measured): deploy/fleet.yaml deployed by moto's
CloudFormation (the log group), one StackSet with a stack instance per account (but the Deleted
ones: removed from the StackSet), and each account's reports written into the log group as
EventBridge's CloudWatch Logs target writes them (the whole event, compact JSON, one log stream
each), their details as the connector sends them — 3 reports an account by default, over the 48
hours (a request and two daily checks; a Deleted account's one). The accounts spread over every
status: most Connected or Registered, some PendingPortal, PasteOverdue, KeyNotVerified, Failing,
Deleted, some whose last report is 30 hours old (Silent), and some stack instances that never
reported (Silent too).

A run is `fleet.py status` in this process (stdout to a buffer), from its first AWS call to its
last line: ListStackInstances (moto answers every instance in one page; CloudFormation in pages of
100) and FilterLogEvents, every page. moto makes up a new StackId each time it lists an instance:
as in tests/python/test_fleet.py, each instance keeps the first one.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, HERE)
import fleet  # noqa: E402
from bench import machine  # noqa: E402

REGION = "us-east-1"
STACK_SET = "cloud-app-security-connector"
# Of every 100 accounts, how many are in each state (the rest Connected).
MIX = {"Registered": 30, "PendingPortal": 5, "PasteOverdue": 2, "KeyNotVerified": 1, "Failing": 2, "Deleted": 2,
       "Silent": 3, "never": 3}


def start_moto():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit("moto server did not start")


def pin_stack_ids():
    """Every boto3 client made from here on answers each stack instance's first StackId."""
    import boto3
    first, real = {}, boto3.client

    def keep(parsed, **_):
        for i in parsed.get("Summaries", []):
            i["StackId"] = first.setdefault((i.get("StackSetId"), i["Account"], i["Region"]), i.get("StackId"))

    def client(service, *a, **kw):
        c = real(service, *a, **kw)
        c.meta.events.register("after-call.cloudformation.ListStackInstances", keep)
        return c

    boto3.client = client


def state_of(n):
    """The state of the n-th account: the first ones one of each state, then by MIX."""
    states = [*MIX, "Connected"]
    if n < len(states):
        return states[n]
    slot = n % 100
    for state, count in MIX.items():
        if slot < count:
            return state
        slot -= count
    return "Connected"


def whole_event(account, stack_id, status, hours_ago, now):
    """A report as the Logs target writes it: EventBridge's whole event, the envelope included. The
    detail as the connector sends it: a key waiting for its paste (portal mode, never seen in use)
    carries awaitingPasteSince, its creation for a first key; Connected carries when the key was seen
    in use; a Delete answers no attributes, so its report names the stack and the resource only."""
    sent = now - datetime.timedelta(hours=hours_ago)
    portal = status != "Registered"
    name = f"aws-{account}"
    age = {"PendingPortal": 2, "PasteOverdue": 9, "KeyNotVerified": 2}.get(status, 40)
    created = now - datetime.timedelta(days=age)
    seen = status in ("Connected", "Failing")
    waiting = portal and not seen and status != "Deleted"
    detail = {
        "schemaVersion": 1, "status": status, "trigger": "Delete" if status == "Deleted" else "Check",
        "connectorName": name, "stackId": stack_id, "logicalId": "Connector",
        "physicalId": f"arn:aws:iam::{account}:user/cloud-app-security/CloudAppSecurity-{name}",
        "secretArn": f"arn:aws:secretsmanager:{REGION}:{account}:secret:cloud-app-security/{name}-AbCdEf",
        "portalUrl": "https://security.microsoft.com/cloudapps/app-connectors",
        "mode": "portal" if portal else "callback",
        "accessKeyId": f"AKIA{account}ABCD", "keyCreatedAt": fleet.iso(created),
        "awaitingPasteSince": fleet.iso(created) if waiting else None,
        "lastSeenUsed": fleet.iso(sent - datetime.timedelta(hours=3)) if seen else None,
        "verified": status != "KeyNotVerified", "lastError": "Check: GetAccessKeyLastUsed failed: Throttling (iam)"
        if status == "Failing" else None, "release": "0.4.0", "reportedAt": fleet.iso(sent)}
    if status == "Deleted":
        detail.update(connectorName=None, secretArn=None, accessKeyId=None, keyCreatedAt=None)
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": fleet.DETAIL_TYPE, "source": fleet.SOURCE,
             "account": account, "time": fleet.iso(sent), "region": REGION, "resources": [], "detail": detail}
    return fleet.millis(sent), json.dumps(event, separators=(",", ":"))


def reports_of(account, stack_id, state, per_account, now):
    """(timestamp, message) of each report the account made in the last 48 hours, oldest first."""
    if state == "never":
        return []
    if state == "Silent":
        return [whole_event(account, stack_id, "Connected", 30, now)]
    hours = [1 + i * 46 / max(per_account - 1, 1) for i in range(per_account)]
    reports = [whole_event(account, stack_id, state, h, now) for h in sorted(hours, reverse=True)]
    return reports[-1:] if state == "Deleted" else reports


def make_organization(endpoint, accounts, per_account):
    """The fleet stack, the StackSet and its instances, the reports; how many reports."""
    import boto3
    kw = dict(endpoint_url=endpoint, region_name=REGION)
    cfn = boto3.client("cloudformation", **kw)
    with open(os.path.join(REPO, "deploy", "fleet.yaml")) as f:
        cfn.create_stack(StackName="fleet", TemplateBody=f.read(),
                         Parameters=[{"ParameterKey": "OrganizationId", "ParameterValue": "o-exampleorg1"}])
    cfn.create_stack_set(StackSetName=STACK_SET, TemplateBody=json.dumps(
        {"Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}))
    ids = [f"{300000000000 + n}" for n in range(accounts)]
    # A Deleted account was removed from the StackSet: its instance is gone, its last report stays.
    removed = {a: f"arn:aws:cloudformation:{REGION}:{a}:stack/StackSet-{STACK_SET}-{uuid.uuid4()}/{uuid.uuid4()}"
               for n, a in enumerate(ids) if state_of(n) == "Deleted"}
    cfn.create_stack_instances(StackSetName=STACK_SET, Accounts=[a for a in ids if a not in removed],
                               Regions=[REGION])
    stacks = {i["Account"]: i["StackId"] for i in cfn.list_stack_instances(StackSetName=STACK_SET)["Summaries"]}
    stacks.update(removed)
    now = datetime.datetime.now(datetime.timezone.utc)
    events = [e for n, a in enumerate(ids) for e in reports_of(a, stacks[a], state_of(n), per_account, now)]
    local = threading.local()

    def write(event):
        if not hasattr(local, "logs"):
            local.logs = boto3.client("logs", **kw)
        stream = str(uuid.uuid4())
        local.logs.create_log_stream(logGroupName=fleet.DEFAULT_LOG_GROUP, logStreamName=stream)
        local.logs.put_log_events(logGroupName=fleet.DEFAULT_LOG_GROUP, logStreamName=stream,
                                  logEvents=[{"timestamp": event[0], "message": event[1]}])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(write, events))
    return len(events), accounts - len(removed)


def one_run(endpoint):
    """Seconds for one `fleet.py status`, and what it printed."""
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        fleet.main(["status", "--region", REGION, "--endpoint-url", endpoint])
    return time.perf_counter() - started, out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--reports-per-account", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--show", action="store_true", help="print the table of the last run")
    args = parser.parse_args()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    server, endpoint = start_moto()
    try:
        pin_stack_ids()
        started = time.perf_counter()
        reports, instances = make_organization(endpoint, args.accounts, args.reports_per_account)
        setup = time.perf_counter() - started
        times, out = [], ""
        for _ in range(args.runs):
            seconds, out = one_run(endpoint)
            times.append(seconds)
    finally:
        server.kill()
        server.wait()
    import boto3
    import moto
    print(f"Machine: {machine()}")
    print(f"Versions: Python {sys.version.split()[0]}, boto3 {boto3.__version__}, moto {moto.__version__} (server)")
    print(f"Organization: {args.accounts} accounts, {instances} stack instances, {reports} reports in the log "
          f"group (one log stream each); made in {setup:.1f} s (not measured)")
    print(f"fleet.py status, {args.runs} run{'' if args.runs == 1 else 's'}: median {statistics.median(times):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)}); target at 1,000 accounts: within 10 s")
    if args.show:
        print(f"\n$ fleet.py status --region {REGION}\n{out}")
    else:
        print("What it printed first:\n" + "\n".join(out.splitlines()[:2]))


if __name__ == "__main__":
    main()
