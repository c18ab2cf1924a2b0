"""Where every account's Cloud App Security connector stands, from the status reports the connectors
send to the fleet's event bus (deploy/fleet.yaml keeps them in CloudWatch Logs), and a walk through
the keys that wait to be pasted into the portal. docs/fleet.md is the full story.

  fleet.py status --region R [--log-group G] [--json | --csv] [--status S ...] [--account A ...]
                  [--stack-set-name N] [--stack-set-region R2] [--call-as SELF|DELEGATED_ADMIN]
                  [--stack-set-profile P | --no-stack-set]
  fleet.py paste  --region R [--log-group G] [--account A ...] [StackSet options as above]

status: every connector of every account — the union of the StackSet's stack instances
(cloudformation:ListStackInstances, in every region, with --call-as as in rollout.py) and the
connectors that reported in the last 48 hours (logs:FilterLogEvents on the fleet's log group, every
page; the StackSet is read in --stack-set-region when it lives in another region than the bus) — one
row per connector (account, region, stack id, physical id), worst status first. A report's account
and region are its envelope's, which EventBridge sets from the sender's credentials; a `detail`
never names the account. A stack's Deleted row is folded away while the stack has a live one
(CloudFormation deletes the old physical id after a replacement); a report naming no physical id,
and the stack instance, belong to the stack's live row. The summary counts
each account once, by the worst status of its connectors (Deleted only if all are). Silent is never
reported: a connector whose last report is older than 26 hours is Silent (the daily key check is
the heartbeat), and so is a stack instance with no report in the 48 hours read (its note says so:
never reported, or silent for longer). A Deleted connector stays Deleted, unless its stack instance
is still there: then the row shows the instance, Failing when the StackSet says it failed there (a
failed Create rolls back, and the rollback's Delete reports Deleted). A table by default;
--json and --csv give every field (a key's id, never its secret half). What reaches the terminal
is stripped of control characters and escape sequences (a report is written by its account's
administrators); --csv neutralises a cell a spreadsheet would take for a formula.

paste: for each connector PendingPortal or PasteOverdue (oldest first), one at a time: assumes the
opt-in reader role in that account (role/cloud-app-security-connector/cloud-app-security-connector-reader),
reads the secret the report names at AWSCURRENT (secretsmanager:GetSecretValue; older versions hold
older keys), shows the key's two fields and the portal link (its own, never a report's), waits for
Enter, clears the screen, then the next. The key is never written to a file, a log or any other
output: the command refuses to run unless standard output and standard input are a terminal. An
account whose role or secret cannot be read is skipped with the AWS error code (never the secret's
text).

Credentials: the ones in the environment, for the fleet's account (the log group) and the
reader roles; the StackSet is read with them too, or with --stack-set-profile (a profile of the
management or delegated-administrator account). Read only: nothing here changes anything.
"""

import argparse
import csv
import datetime
import json
import logging
import os
import re
import sys

import rollout  # scripts/ is on the path (this script's own directory): paged(), error_code()

# What the connectors send (docs/fleet.md, "The event").
SOURCE = "cloud-app-security-connector"
DETAIL_TYPE = "Connector Status"
# The statuses, defined once, worst first: the order of the table and of an account's summary.
STATUSES = {
    "Failing": "the last request, rotation step or daily check failed (lastError says why)",
    "PasteOverdue": "the key has waited longer than the stack allows to be pasted into the portal (an alarm)",
    "KeyNotVerified": "the stored key could not be proven to authenticate and make the connector's reads",
    "Silent": "no report for 26 hours (derived here, never sent), or a stack instance that never reported",
    "PendingPortal": "portal mode: the key waits to be pasted into the portal (Cloud App Security not yet seen "
                     "using it)",
    "Registered": "the call back was accepted: Cloud App Security holds the key",
    "Connected": "portal mode: Cloud App Security was seen using the stored key",
    "Deleted": "the connector's stack was deleted (its last report)",
}
PENDING = ("PasteOverdue", "PendingPortal")
# A stack instance whose last StackSet operation failed in its account (ListStackInstances' Status).
INSTANCE_FAILED = ("OUTDATED", "INOPERABLE")
INSTANCE_UNDER_WAY = ("PENDING", "RUNNING")
SILENT_AFTER = datetime.timedelta(hours=26)
WINDOW = datetime.timedelta(hours=48)
DEFAULT_LOG_GROUP = "/aws/events/cloud-app-security-connector-fleet"
# Where a key is pasted: the connector's own PORTAL_URL (src/cloud_app_security/mod.rs). `paste`
# shows this one, never a report's portalUrl: a member account's administrators can send any report.
PORTAL_URL = "https://security.microsoft.com/cloudapps/app-connectors"
# The opt-in role each account may have for `paste` (the connector template creates it).
READER_ROLE_PATH = "/cloud-app-security-connector/"
READER_ROLE_NAME = "cloud-app-security-connector-reader"
# What --json and --csv give for each connector, in this order.
FIELDS = ("account", "region", "status", "reportedStatus", "connectorName", "mode", "accessKeyId", "keyCreatedAt",
          "keyAgeDays", "awaitingPasteSince", "lastSeenUsed", "verified", "lastError", "lastReport", "trigger",
          "release", "stackId", "physicalId", "stackInstance", "secretArn", "portalUrl", "note")
CLEAR_SCREEN = "\033[H\033[2J\033[3J"  # home, clear, and clear the scrollback
# What a terminal would act on instead of showing, in a report's text: whole escape sequences
# (CSI: colours, cursor moves, erasing; OSC, DCS, SOS, PM, APC up to their terminator: a link, a
# window title; any other ESC sequence), in their 7-bit and 8-bit (C1) forms; then every other C0
# and C1 control and DEL, and the Unicode controls that reorder a line (bidi embeddings, overrides,
# isolates, marks). Line breaks and tabs become a space.
ESCAPE_SEQUENCE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                             r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
                             r"|\x1b[ -/]*[0-~]")
BREAK = re.compile("[\t\n\v\f\r\x85\u2028\u2029]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A CSV cell a spreadsheet would take for a formula (OWASP, CSV injection): these first characters.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(value):
    """A value as text safe for a terminal: nothing in it is acted on (ESCAPE_SEQUENCE, CONTROL)."""
    text = "" if value is None else str(value)
    return CONTROL.sub("", BREAK.sub(" ", ESCAPE_SEQUENCE.sub("", text)))


def say(text="", out=None, end="\n", flush=False):
    """Prints one line to the terminal (or `out`), stripped by printable()."""
    print(printable(text), file=sys.stdout if out is None else out, end=end, flush=flush)


def csv_cell(value):
    """A value as a CSV cell: text that starts like a formula gets a leading single quote (numbers,
    booleans and empty cells are data as they are; a list or an object is written as JSON)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def usage_error(message):
    print(f"fleet.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", required=True,
                        help="the region of the fleet's log group (and of the StackSet, unless --stack-set-region)")
    common.add_argument("--log-group", default=DEFAULT_LOG_GROUP,
                        help=f"the fleet's log group (deploy/fleet.yaml's output LogGroupName; default "
                             f"{DEFAULT_LOG_GROUP})")
    common.add_argument("--account", action="append", default=[], help="only this account (repeatable)")
    common.add_argument("--stack-set-name", default=rollout.DEFAULT_STACK_SET_NAME)
    common.add_argument("--stack-set-region",
                        help="the region the StackSet lives in, when the fleet's bus is in another one (default: "
                             "--region)")
    common.add_argument("--call-as", choices=["SELF", "DELEGATED_ADMIN"], default="SELF",
                        help="SELF from the management account, DELEGATED_ADMIN from a delegated administrator")
    common.add_argument("--stack-set-profile", help="an AWS profile to read the StackSet with (default: the same "
                                                    "credentials as the log group)")
    common.add_argument("--no-stack-set", action="store_true",
                        help="read no StackSet: then a connector that never reported is not listed")
    common.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help=argparse.SUPPRESS)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", parents=[common], help="every account's connectors and their status")
    output = s.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON document: the summary and every field")
    output.add_argument("--csv", action="store_true", help="CSV: one line per connector, every field")
    s.add_argument("--status", action="append", default=[], choices=list(STATUSES),
                   help="only this status (repeatable)")
    sub.add_parser("paste", parents=[common], help="show each pending key, one account at a time (a terminal only)")
    return p.parse_args(argv)


# --- time ------------------------------------------------------------------------------------------

def parse_time(text):
    """An ISO-8601 time (`Z` or an offset) as an aware datetime; None for None or nonsense."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def short(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M") if moment else ""


def ago(moment, now):
    hours = (now - moment).total_seconds() / 3600
    return f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} d ago"


def millis(moment):
    return int(moment.timestamp() * 1000)


# --- AWS -------------------------------------------------------------------------------------------

class Session:
    """One run's AWS clients: the fleet's account, the StackSet's (maybe another profile), and
    clients under a reader role's credentials."""

    def __init__(self, args):
        self.args = args
        self.clients = {}

    def client(self, service, region=None, credentials=None, profile=None):
        import boto3
        from botocore.config import Config
        region = region or self.args.region
        config = Config(retries={"mode": "standard", "max_attempts": 10})
        if credentials:  # a reader role's: one client per account, not cached
            return boto3.client(service, region_name=region, endpoint_url=self.args.endpoint_url, config=config,
                                aws_access_key_id=credentials["AccessKeyId"],
                                aws_secret_access_key=credentials["SecretAccessKey"],
                                aws_session_token=credentials["SessionToken"])
        if (service, region, profile) not in self.clients:
            maker = boto3.Session(profile_name=profile) if profile else boto3
            self.clients[service, region, profile] = maker.client(service, region_name=region,
                                                                  endpoint_url=self.args.endpoint_url, config=config)
        return self.clients[service, region, profile]


def log_events(logs, log_group, start, end):
    """Every log event of the group between two times, every page (a page may be empty and still
    have a next one)."""
    params = {"logGroupName": log_group, "startTime": millis(start), "endTime": millis(end)}
    while True:
        page = logs.filter_log_events(**params)
        yield from page.get("events", [])
        if not page.get("nextToken"):
            return
        params["nextToken"] = page["nextToken"]


def stack_instances(session):
    """Every stack instance of the StackSet, in every region: [{account, region, stackId, status,
    reason}]."""
    args = session.args
    cfn = session.client("cloudformation", args.stack_set_region, profile=args.stack_set_profile)
    try:
        found = list(rollout.paged(cfn, "list_stack_instances", StackSetName=args.stack_set_name, CallAs=args.call_as))
    except Exception as error:  # noqa: BLE001 - sorted out below
        if rollout.error_code(error) == "StackSetNotFoundException":
            sys.exit(f"no StackSet {args.stack_set_name} in {args.stack_set_region} (as {args.call_as}): name the "
                     "region it lives in with --stack-set-region (the fleet's bus may be in another region than the "
                     "StackSet), its name with --stack-set-name, or pass --no-stack-set")
        raise
    return [{"account": i["Account"], "region": i["Region"], "stackId": i.get("StackId") or "",
             "status": i.get("Status", ""), "detail": (i.get("StackInstanceStatus") or {}).get("DetailedStatus", ""),
             "reason": i.get("StatusReason") or ""} for i in found]


# --- reports ---------------------------------------------------------------------------------------

def parse_report(log_event):
    """A log event as a connector's report, or None if it is not one. The account and region are
    the envelope's (EventBridge sets them); the report counts as made at the earlier of the
    envelope's time and the log event's ingestion, so a sender's future date cannot keep a
    connector from going Silent."""
    try:
        event = json.loads(log_event.get("message", ""))
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        return None
    account, detail, time = event.get("account"), event.get("detail"), parse_time(event.get("time"))
    if not (isinstance(account, str) and len(account) == 12 and account.isdigit()) or not isinstance(detail, dict) \
            or not isinstance(detail.get("status"), str) or time is None:
        return None
    ingested = log_event.get("ingestionTime") or log_event.get("timestamp")
    if ingested:
        time = min(time, datetime.datetime.fromtimestamp(ingested / 1000, datetime.timezone.utc))
    return {"account": account, "region": str(event.get("region") or ""), "time": time, "detail": detail}


def report_key(report):
    """A connector: its account (the envelope's), the stack's region (from the stack's ARN: the
    envelope's region is the bus's when a connector reports across regions; the envelope's when the
    report names no stack), its stack, and its resource's physical id (None when the report names
    none). A stack holds one connector at a time, but a replacement (a new UserName or UserPath)
    makes a new physical id, and CloudFormation then deletes the old one: that Delete reports
    Deleted for the same stack while the connector lives on under the new id."""
    stack_id = str(report["detail"].get("stackId") or "")
    parts = stack_id.split(":")
    region = parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else report["region"]
    physical_id = report["detail"].get("physicalId")
    return report["account"], region, stack_id, str(physical_id) if physical_id else None


def order(report):
    """Reports by when they were made; in the same second, by the connector's own reportedAt."""
    return report["time"], str(report["detail"].get("reportedAt") or "")


def deleted(report):
    return report["detail"].get("status") == "Deleted"


def keep_latest(latest, key, report):
    if key not in latest or order(report) >= order(latest[key]):
        latest[key] = report


def latest_reports(log_events_):
    """{(account, region, stack id, physical id): the latest report}, and how many log events were
    not reports. A report naming no physical id belongs to its stack's live resource: the one with
    the newest report that is not Deleted, else the one with the newest report, else a row of its
    own (physical id None)."""
    latest, live, unnamed, ignored = {}, {}, [], 0
    for log_event in log_events_:
        report = parse_report(log_event)
        if report is None:
            ignored += 1
            continue
        key = report_key(report)
        if key[3] is None:
            unnamed.append((key, report))
            continue
        keep_latest(latest, key, report)
        if not deleted(report):
            keep_latest(live, key[:3], report)
    newest = {}
    for key, report in latest.items() if unnamed else ():
        keep_latest(newest, key[:3], report)
    for key, report in unnamed:
        home = live.get(key[:3]) or newest.get(key[:3])
        keep_latest(latest, report_key(home) if home else key, report)
    return latest, ignored


# --- the fleet -------------------------------------------------------------------------------------

def status_of(report, now):
    """The status a connector has now: its report's, Deleted for good, Silent after 26 hours."""
    reported = report["detail"].get("status")
    if reported == "Deleted":
        return "Deleted"
    if now - report["time"] > SILENT_AFTER:
        return "Silent"
    return str(reported)


def instance_text(instance):
    """A stack instance as a person reads it: its status, its detailed status unless SUCCEEDED, its
    StatusReason."""
    detail = instance.get("detail") or ""
    return f"stack instance {instance['status']}" + (f" ({detail})" if detail not in ("", "SUCCEEDED") else "") + \
        (f": {instance['reason']}" if instance["reason"] else "")


def instance_failed(instance):
    """The StackSet's verdict on an instance: its last operation failed there (status OUTDATED or
    INOPERABLE, or detailed status FAILED), and no operation is still under way there (detailed
    status PENDING or RUNNING: a Create's rollback or a removal not finished yet)."""
    detail = (instance or {}).get("detail") or ""
    return bool(instance) and (detail == "FAILED" or instance["status"] in INSTANCE_FAILED
                               and detail not in INSTANCE_UNDER_WAY)


def note_for(row, report, instance, now):
    """What a person should know besides the status."""
    if report is None:
        return f"no report in {WINDOW.total_seconds() / 3600:.0f} h ({instance_text(instance)})"
    if deleted(report) and instance:
        # The stack instance outlived its connector's Delete: a failed Create that rolled back (its
        # rollback's Delete reported Deleted), or an instance being removed. The instance says which.
        return "; ".join(str(n) for n in (instance_text(instance), row["lastError"]) if n)
    notes = []
    if row["status"] == "Silent":
        notes.append(f"last report {ago(report['time'], now)}: {row['reportedStatus']}")
    elif row["status"] not in STATUSES:
        notes.append("not a status this fleet.py knows (a newer connector release?)")
    if row["lastError"]:
        notes.append(str(row["lastError"]))
    return "; ".join(notes)


def connector_row(key, report, instance, now):
    """One connector's row: every field of FIELDS."""
    detail = report["detail"] if report else {}
    created = parse_time(detail.get("keyCreatedAt"))
    row = {
        "account": key[0], "region": key[1], "stackId": key[2], "physicalId": key[3],
        "status": ("Failing" if instance_failed(instance) else "Deleted") if report and deleted(report) and instance
        else status_of(report, now) if report else "Silent",
        "reportedStatus": detail.get("status"), "connectorName": detail.get("connectorName"),
        "mode": detail.get("mode"), "accessKeyId": detail.get("accessKeyId"), "keyCreatedAt": iso(created),
        "keyAgeDays": (now - created).days if created else None,
        "awaitingPasteSince": iso(parse_time(detail.get("awaitingPasteSince"))),
        "lastSeenUsed": iso(parse_time(detail.get("lastSeenUsed"))), "verified": detail.get("verified"),
        "lastError": detail.get("lastError"), "lastReport": iso(report["time"]) if report else None,
        "trigger": detail.get("trigger"), "release": detail.get("release"),
        "stackInstance": instance["status"] if instance else None,
        "secretArn": detail.get("secretArn"), "portalUrl": detail.get("portalUrl"),
    }
    row["note"] = note_for(row, report, instance, now)
    return row


def rank(status):
    order = list(STATUSES)
    return order.index(status) if status in order else len(order)


def stack_rows(stack, keys, latest, instance, now):
    """A stack's rows: each live resource (its latest report not Deleted); without one, only its
    newest Deleted resource (a replaced resource's Deleted is folded away: the connector lives on
    under its new physical id); without reports, the stack instance's row (physical id None). The
    stack instance goes with the live resource reported last. A Deleted row with a stack instance
    shows the instance: Failing when the StackSet says it failed there (a failed Create rolls back,
    and the rollback's Delete reports Deleted), else Deleted, the instance's status as its note."""
    live = sorted((k for k in keys if not deleted(latest[k])), key=lambda k: order(latest[k]), reverse=True)
    shown = live or sorted(keys, key=lambda k: order(latest[k]), reverse=True)[:1] or [(*stack, None)]
    return [connector_row(k, latest.get(k), instance if k == shown[0] else None, now) for k in shown]


def fleet_rows(latest, instances, now):
    """The union of the reports and the stack instances, one row per connector, worst first."""
    instance_of = {(i["account"], i["region"], i["stackId"]): i for i in instances}
    stacks = {stack: [] for stack in instance_of}
    for key in latest:
        stacks.setdefault(key[:3], []).append(key)
    # A failed stack instance with no report of its own (it names another stack than the one that
    # reported, or none), in an account and region with a stack whose connectors all reported
    # Deleted and that has no instance of its own (a failed Create, rolled back): it goes with the
    # newest such stack, whose row then shows it, instead of a Silent row of its own.
    gone = sorted((s_ for s_, keys in stacks.items() if keys and s_ not in instance_of
                   and all(deleted(latest[k]) for k in keys)),
                  key=lambda s_: max(order(latest[k]) for k in stacks[s_]), reverse=True)
    for stack, instance in list(instance_of.items()):
        if stacks[stack] or not instance_failed(instance):
            continue
        home = next((s_ for s_ in gone if s_[:2] == stack[:2] and s_ not in instance_of), None)
        if home:
            instance_of[home] = instance
            del instance_of[stack], stacks[stack]
    rows = [row for stack, keys in stacks.items()
            for row in stack_rows(stack, keys, latest, instance_of.get(stack), now)]
    return sorted(rows, key=lambda r: (rank(r["status"]), r["account"], r["region"], str(r["connectorName"] or ""),
                                       r["stackId"], r["physicalId"] or ""))


def accounts_by_status(rows):
    """{status: accounts}, each account counted once by its worst connector; Deleted only when every
    connector of the account is (a Deleted row never stands for an account that has a live one,
    whatever that one's status, a status this fleet.py does not know included)."""
    def standing(status):  # the lower, the more it says about the account
        return status == "Deleted", rank(status)

    worst = {}
    for row in rows:
        if row["account"] not in worst or standing(row["status"]) < standing(worst[row["account"]]):
            worst[row["account"]] = row["status"]
    counts = {}
    for status in worst.values():
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: rank(item[0])))


def read_fleet(session, now):
    """Every connector's row, and what was read: (rows, facts for the summary)."""
    args = session.args
    logs = session.client("logs")
    try:
        latest, ignored = latest_reports(log_events(logs, args.log_group, now - WINDOW, now))
    except Exception as error:  # noqa: BLE001 - sorted out below
        if rollout.error_code(error) == "ResourceNotFoundException":
            sys.exit(f"no log group {args.log_group} in {args.region}: deploy deploy/fleet.yaml there, or name "
                     "its output LogGroupName with --log-group")
        raise
    instances = [] if args.no_stack_set else stack_instances(session)
    rows = fleet_rows(latest, instances, now)
    if args.account:
        rows = [r for r in rows if r["account"] in args.account]
    return rows, {"ignored": ignored, "instances": len(instances)}


# --- status ----------------------------------------------------------------------------------------

def table_cells(row, now):
    """A row's cells, each printable() (widths are counted on what the terminal shows)."""
    last = parse_time(row["lastReport"])
    note = printable(row["note"])
    note = note if len(note) <= 70 else note[:69] + "…"
    cells = [row["account"], row["region"], row["status"], row["connectorName"],
             "" if row["keyAgeDays"] is None else f"{row['keyAgeDays']} d",
             short(parse_time(row["awaitingPasteSince"])), short(parse_time(row["lastSeenUsed"])),
             ago(last, now) if last else "none", note]
    return [printable(c) for c in cells]


def print_table(rows, now, out):
    header = ["ACCOUNT", "REGION", "STATUS", "CONNECTOR", "KEY AGE", "AWAITING PASTE SINCE", "LAST SEEN USED",
              "LAST REPORT", "NOTE"]
    cells = [header] + [table_cells(r, now) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for line in cells:
        say("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), out)


def print_summary(session, rows, facts, out):
    args = session.args
    accounts = len({r["account"] for r in rows})
    reporting = sum(1 for r in rows if r["lastReport"])
    source = "no StackSet read" if args.no_stack_set else \
        f"StackSet {args.stack_set_name}: {facts['instances']} stack instances"
    say(f"==> {accounts} accounts, {len(rows)} connectors ({reporting} reporting in the last "
        f"{WINDOW.total_seconds() / 3600:.0f} h to {args.log_group} in {args.region}; {source})", out)
    counts = accounts_by_status(rows)
    say("    each account once, by its worst connector: "
        + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none"), out)
    if facts["ignored"]:
        one = facts["ignored"] == 1
        say(f"    {facts['ignored']} log event{'' if one else 's'} {'was' if one else 'were'} not "
            f"{'a connector report' if one else 'connector reports'} and {'was' if one else 'were'} left out", out)


def status(session):
    now = datetime.datetime.now(datetime.timezone.utc)
    rows, facts = read_fleet(session, now)
    if session.args.status:
        rows = [r for r in rows if r["status"] in session.args.status]
    out = sys.stdout
    if session.args.json:
        json.dump({"generatedAt": iso(now), "logGroup": session.args.log_group, "region": session.args.region,
                   "accountsByStatus": accounts_by_status(rows),
                   "connectors": [{f: r[f] for f in FIELDS} for r in rows]}, out, indent=2)
        print(file=out)
    elif session.args.csv:
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({f: csv_cell(r[f]) for f in FIELDS} for r in rows)
    else:
        print_summary(session, rows, facts, out)
        say(out=out)
        print_table(rows, now, out)


# --- paste -----------------------------------------------------------------------------------------

class PasteError(Exception):
    """Why one account's key cannot be shown: an AWS error code or a shape, never the secret."""


class Key:
    """A key read from a secret: shown once, never logged. Its repr hides the secret half."""

    def __init__(self, access_key_id, secret_access_key):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def __repr__(self):
        return f"Key({self.access_key_id}, ****)"


def reader_role_arn(row):
    partition = (row["secretArn"] or "arn:aws").split(":")[1]
    return f"arn:{partition}:iam::{row['account']}:role{READER_ROLE_PATH}{READER_ROLE_NAME}"


def aws_step(what, call):
    """Runs one AWS call; an error becomes a PasteError naming the step and the AWS error code only."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the code is all that is kept
        raise PasteError(f"{what}: {rollout.error_code(error)}") from None


def key_from(secret_string):
    """The key's two fields from the secret's JSON document (its other fields — the user, the
    function's bookkeeping, which may hold the previous key — are never looked at)."""
    try:
        document = json.loads(secret_string)
    except (TypeError, ValueError):
        raise PasteError("the secret's value is not the connector's JSON document") from None
    if not isinstance(document, dict):
        raise PasteError("the secret's value is not the connector's JSON document")
    key_id, secret = document.get("AccessKeyId"), document.get("SecretAccessKey")
    if not (isinstance(key_id, str) and key_id and isinstance(secret, str) and secret):
        raise PasteError("the secret's value has no AccessKeyId and SecretAccessKey")
    return Key(key_id, secret)


def read_key(session, row):
    """The key at AWSCURRENT of the secret the connector reported, read through the account's
    reader role."""
    arn = row["secretArn"] if isinstance(row["secretArn"], str) else ""
    if len(arn.split(":")) < 7 or arn.split(":")[2] != "secretsmanager":
        raise PasteError("its report names no secret")
    role = reader_role_arn(row)
    sts = session.client("sts")
    credentials = aws_step(f"sts:AssumeRole {role}", lambda: sts.assume_role(
        RoleArn=role, RoleSessionName="cloud-app-security-fleet-paste", DurationSeconds=900)["Credentials"])
    secrets = session.client("secretsmanager", region=arn.split(":")[3], credentials=credentials)
    answer = aws_step("secretsmanager:GetSecretValue", lambda: secrets.get_secret_value(
        SecretId=arn, VersionStage="AWSCURRENT"))
    return key_from(answer.get("SecretString"))


def require_terminal():
    """paste shows keys: only to a person at a terminal, never into a pipe, a file or a log."""
    for name, stream in (("standard output", sys.stdout), ("standard input", sys.stdin)):
        if stream is None or not stream.isatty():
            usage_error(f"paste shows access keys, so it runs only in a terminal, and {name} is not one "
                        "(nothing was read)")


def show_key(row, key, number, total):
    """One account's page. The link is PORTAL_URL, never the report's portalUrl (a report is its
    account's administrators' to write); every line is printable()."""
    since = short(parse_time(row["awaitingPasteSince"])) or "unknown"
    say(f"==> {number}/{total}: account {row['account']} ({row['region']}), connector "
        f"{row['connectorName'] or '?'}: {row['status']}, waiting since {since}")
    say(f"    1. open {PORTAL_URL}")
    say("       (Settings, Cloud Apps, App Connectors, Connect an app, Amazon Web Services)")
    if row["portalUrl"] not in (None, PORTAL_URL):
        say("       (its report named another portal link: not shown, and not to be trusted)")
    say("    2. paste:")
    say(f"       Access key ID      {key.access_key_id}")
    say(f"       Secret access key  {key.secret_access_key}")
    if row["accessKeyId"] and row["accessKeyId"] != key.access_key_id:
        say(f"    the last report named key {row['accessKeyId']}: the key changed since; this is the current one")


def wait_for_enter(number, total):
    """True to go on; False at end of input or `q`."""
    last = number == total
    say(f"    press Enter when pasted{'' if last else ' for the next account'} (q and Enter stops): ", end="",
        flush=True)
    answer = sys.stdin.readline()
    sys.stdout.write(CLEAR_SCREEN)
    sys.stdout.flush()
    return bool(answer) and answer.strip().lower() != "q"


def paste(session):
    require_terminal()
    # boto3 logs response bodies at DEBUG: whatever the environment asked for, not while keys pass.
    for name in ("boto3", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    now = datetime.datetime.now(datetime.timezone.utc)
    rows, _ = read_fleet(session, now)
    pending = sorted((r for r in rows if r["status"] in PENDING),
                     key=lambda r: (rank(r["status"]), r["awaitingPasteSince"] or "", r["account"]))
    if not pending:
        say("==> no connector waits for a paste")
        return
    say(f"==> {len(pending)} connector{'' if len(pending) == 1 else 's'} wait for a paste, one at a time; each "
        "key shows until you press Enter, then the screen is cleared")
    shown, skipped = 0, []
    for number, row in enumerate(pending, 1):
        try:
            key = read_key(session, row)
        except PasteError as error:
            say(f"==> {number}/{len(pending)}: account {row['account']} ({row['region']}) skipped: {error}")
            skipped.append(row["account"])
            continue
        show_key(row, key, number, len(pending))
        del key
        shown += 1
        if not wait_for_enter(number, len(pending)):
            break
    say(f"==> {shown} key{'' if shown == 1 else 's'} shown" + (f"; skipped {', '.join(skipped)} (is the reader "
        "role deployed there, and does it trust you?)" if skipped else ""))


COMMANDS = {"status": status, "paste": paste}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.stack_set_region = args.stack_set_region or args.region
    COMMANDS[args.command](Session(args))


if __name__ == "__main__":
    main()
