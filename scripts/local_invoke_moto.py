"""`sam local invoke` of a bootstrap, in a container, against moto server: the driver of
scripts/local-invoke.sh (which installs podman, starts its Docker API, builds the stand-in image and
starts moto; run that, not this).

Walks events/create.json → update.json → check-keys.json → delete.json in portal mode (no Cloud App
Security tenant: the events' CloudAppSecurityUrl and CloudAppSecurityCredentials are dropped), each
through one `sam local invoke` of template.yaml's ConnectorFunction (its runtime, handler, memory,
log format and environment variables; CodeUri the given bootstrap; the architecture the
bootstrap's). CloudFormation's presigned ResponseURL is a local recorder: the container reaches
it as `localhost` (`--add-host localhost:<gateway>`; the function answers plain http only on
loopback names), and AWS as `AWS_ENDPOINT_URL=http://host.containers.internal:<moto port>`.

`sam` exits 0 even when the function never answered: what counts is what the recorder received —
exactly one SUCCESS per CloudFormation event, with the expected PhysicalResourceId and Data — and,
for the key check, the function's result. Exits 1 otherwise. Prints each answer, the AWS state after
it and the time each invoke took. The event files (they hold the response URL) live in a temporary
folder under --work, removed at the end (and by scripts/local-invoke.sh before a run, after a kill -9).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer

import boto3

import local_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTION = "ConnectorFunction"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
EVENTS = ["create", "update", "check-keys", "delete"]
# Portal mode: no call back to a tenant.
TENANT_PROPERTIES = ("CloudAppSecurityUrl", "CloudAppSecurityCredentials")
# A hung function would hold each invoke for the template's 300 s; 60 s is plenty here (~3 s).
TIMEOUT = 60
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bootstrap")
    p.add_argument("--gateway", required=True, help="podman's bridge gateway, where moto and the recorder listen")
    p.add_argument("--moto-port", required=True, type=int)
    p.add_argument("--logs", required=True, help="folder for each invoke's SAM and function log")
    p.add_argument("--work", required=True, help="folder for the run's temporary files (removed at the end)")
    return p.parse_args(argv)


def architecture(path):
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        sys.exit(f"{path} is not an ELF binary")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    if machine not in ELF_MACHINES:
        sys.exit(f"{path}: ELF machine {machine:#x} is neither x86_64 nor arm64")
    return ELF_MACHINES[machine]


def invoke_template(code_dir, arch):
    """template.yaml's function, runnable alone: its settings, the given code and architecture, and
    AWS_ENDPOINT_URL declared (SAM passes a function only the variables its template declares)."""
    from samcli.yamlhelper import yaml_parse

    with open(os.path.join(REPO, "template.yaml")) as f:
        resources = yaml_parse(f.read())["Resources"]
    props = resources[FUNCTION]["Properties"]
    variables = {name: "" for name in props["Environment"]["Variables"]}
    variables["AWS_ENDPOINT_URL"] = ""
    function = {
        "CodeUri": code_dir, "Handler": props["Handler"], "Runtime": props["Runtime"], "Architectures": [arch],
        "MemorySize": props["MemorySize"], "Timeout": TIMEOUT, "Environment": {"Variables": variables},
    }
    if "LogFormat" in props.get("LoggingConfig", {}):
        function["LoggingConfig"] = {"LogFormat": props["LoggingConfig"]["LogFormat"]}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Transform": "AWS::Serverless-2016-10-31",
            "Resources": {FUNCTION: {"Type": "AWS::Serverless::Function", "Properties": function}}}


def load_event(name):
    with open(os.path.join(REPO, "events", f"{name}.json")) as f:
        return json.load(f)


def expected_answers(create):
    """What each CloudFormation event must be answered: status, physical id, Data checks."""
    connector = create["ResourceProperties"]["ConnectorName"]
    user = f"CloudAppSecurity-{connector}"
    physical_id = f"arn:aws:iam::{ACCOUNT}:user/cloud-app-security/{user}"
    secret_prefix = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cloud-app-security/{connector}-"
    # Exact values, but the secret's ARN ends in a random suffix: its prefix.
    data = {"UserArn": physical_id, "UserName": user, "ConnectorStatus": "PendingPortal", "SecretArn": secret_prefix}
    return physical_id, user, f"cloud-app-security/{connector}", data


def show_log_if_failed(failures, before, log_path):
    """The end of an invoke's SAM and function log, when the invoke failed a check."""
    if len(failures) == before or not os.path.exists(log_path):
        return
    with open(log_path) as f:
        lines = [line.rstrip() for line in f if line.strip()]
    print(f"   last lines of {os.path.relpath(log_path, REPO)}:")
    for line in lines[-8:]:
        print(f"     | {line[:300]}")


class Failures(list):
    def check(self, ok, what):
        if not ok:
            self.append(what)
            print(f"   FAIL        {what}")


def main(argv=None):
    args = parse_args(argv)
    bootstrap = os.path.abspath(args.bootstrap)
    arch = architecture(bootstrap)
    os.makedirs(args.logs, exist_ok=True)
    endpoint = f"http://{args.gateway}:{args.moto_port}"
    aws = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
               aws_secret_access_key="testing")
    iam, sm = boto3.client("iam", **aws), boto3.client("secretsmanager", **aws)
    s3, ct = boto3.client("s3", **aws), boto3.client("cloudtrail", **aws)

    recorder = ThreadingHTTPServer((args.gateway, 0), local_run.Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    port = recorder.server_address[1]
    print(f"==> CloudFormation response recorder on {args.gateway}:{port} (the container's http://localhost:{port})")

    create = load_event("create")
    stack_id = create["StackId"]
    physical_id, user_name, secret_name, data = expected_answers(create)
    # Ended by scripts/local-invoke.sh's clean-up: still remove the event files (response URLs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=args.work)
    failures = Failures()
    timings = []
    try:
        # The code folder SAM mounts at /var/task: the bootstrap alone.
        code = os.path.join(work, "code")
        os.makedirs(code)
        shutil.copy2(bootstrap, os.path.join(code, "bootstrap"))
        template = os.path.join(work, "template.json")
        with open(template, "w") as f:
            json.dump(invoke_template(code, arch), f, indent=2)
        env_vars = os.path.join(work, "env.json")
        with open(env_vars, "w") as f:
            # The function serves only the stack these events name, as in a deployed stack.
            json.dump({FUNCTION: {"AWS_ENDPOINT_URL": f"http://host.containers.internal:{args.moto_port}",
                                  "CLOUD_APP_SECURITY_STACK_ID": stack_id,
                                  "CLOUD_APP_SECURITY_URL_SUFFIX": "amazonaws.com",
                                  "CLOUD_APP_SECURITY_ALLOWED_HOSTS": ""}}, f)
        print(f"==> sam local invoke {FUNCTION} ({arch}, {os.path.relpath(bootstrap, REPO)}), portal mode,"
              f" serving {stack_id}")
        sam_env = {k: v for k, v in os.environ.items()
                   if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)}
        sam_env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                       # SAM asks STS who the caller is before each invoke; offline it would wait ~10 s.
                       AWS_ENDPOINT_URL_STS=endpoint, SAM_CLI_TELEMETRY="0")
        key_ids = {}
        previous = None
        for name in EVENTS + [None]:
            if previous:
                show_log_if_failed(failures, *previous)
            if name is None:
                break
            previous = (len(failures), os.path.join(args.logs, f"{name}.log"))
            event = load_event(name)
            cloudformation = "RequestType" in event
            if cloudformation:
                event["ResponseURL"] = f"http://localhost:{port}/cloudformation-response/{name}"
                for props in (event["ResourceProperties"], event.get("OldResourceProperties") or {}):
                    for gone in TENANT_PROPERTIES:
                        props.pop(gone, None)
                if event["ResourceProperties"].get("TrailBucket"):
                    # Stands in for the trail bucket the template creates.
                    s3.create_bucket(Bucket=event["ResourceProperties"]["TrailBucket"])
                print(f"\n--> {event['RequestType']} (events/{name}.json)")
            else:
                print(f"\n--> key check (events/{name}.json)")
            path = os.path.join(work, f"{name}.json")
            with open(path, "w") as f:
                json.dump(event, f)
            before = len(local_run.Recorder.received)
            log_path = os.path.join(args.logs, f"{name}.log")
            started = time.time()
            with open(log_path, "w") as log:
                try:
                    run = subprocess.run(
                        [os.path.join(REPO, ".venv/bin/sam"), "local", "invoke", FUNCTION, "--template", template,
                         "--event", path, "--env-vars", env_vars, "--region", REGION, "--skip-pull-image",
                         "--add-host", f"localhost:{args.gateway}"],
                        env=sam_env, stdout=subprocess.PIPE, stderr=log, text=True, timeout=TIMEOUT + 60)
                except subprocess.TimeoutExpired:
                    run = None
            elapsed = time.time() - started
            timings.append((name, elapsed))
            if run is None:
                failures.check(False, f"{name}: sam local invoke did not finish in {TIMEOUT + 60} s")
                continue
            result = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
            answers = [r["body"] for r in local_run.Recorder.received[before:]]
            if not cloudformation:
                print(f"   result      {result or '(none)'} in {elapsed:.1f}s")
                failures.check(run.returncode == 0, f"{name}: sam exited {run.returncode} (log: {log_path})")
                failures.check(not answers, f"{name}: the key check sent {len(answers)} CloudFormation answer(s)")
                try:
                    checked = json.loads(result)
                except ValueError:
                    checked = {}
                failures.check(checked.get("SecretId") == secret_name and checked.get("DeletedKeys") == [],
                               f"{name}: the key check's result is not a clean check of {secret_name}"
                               f" (log: {log_path})")
                continue
            failures.check(len(answers) == 1, f"{name}: {len(answers)} answers reached CloudFormation's URL, not 1"
                                              f" (sam exited {run.returncode}; log: {log_path})")
            if not answers:
                continue
            answer = answers[-1]
            print(f"   response    {answer['Status']} in {elapsed:.1f}s: {answer.get('Reason')}")
            print(f"   physical id {answer.get('PhysicalResourceId')}")
            for key, value in sorted(answer.get("Data", {}).items()):
                print(f"   Data.{key:<15} {value}")
            failures.check(answer.get("Status") == "SUCCESS", f"{name}: answered {answer.get('Status')}"
                                                              f" ({answer.get('Reason')}; log: {log_path})")
            failures.check(answer.get("PhysicalResourceId") == physical_id,
                           f"{name}: PhysicalResourceId {answer.get('PhysicalResourceId')}, expected {physical_id}")
            failures.check(answer.get("StackId") == stack_id and answer.get("RequestId") == event["RequestId"]
                           and answer.get("LogicalResourceId") == event["LogicalResourceId"],
                           f"{name}: the answer does not echo the request's StackId/RequestId/LogicalResourceId")
            got = answer.get("Data") or {}
            if event["RequestType"] == "Delete":
                failures.check(not got.get("AccessKeyId"), f"{name}: a Delete answered with an access key")
            else:
                for key, want in data.items():
                    value = str(got.get(key, ""))
                    ok = value.startswith(want) if key == "SecretArn" else value == want
                    failures.check(ok, f"{name}: Data.{key} {got.get(key)!r}, expected {want}")
                key_ids[name] = got.get("AccessKeyId")
                # (The stage named: moto's default version does not follow a stage moved by PutSecretValue.)
                stored = json.loads(sm.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")["SecretString"])
                failures.check(got.get("AccessKeyId") == stored.get("AccessKeyId"),
                               f"{name}: Data.AccessKeyId {got.get('AccessKeyId')} is not the stored key"
                               f" {stored.get('AccessKeyId')}")
            local_run.show_state(iam, sm, ct, user_name, secret_name)
        # KeyVersion 1 → 2: the Update issues a new key.
        failures.check(key_ids.get("create") and key_ids.get("update") and key_ids["create"] != key_ids["update"],
                       "the Update (KeyVersion 1 → 2) did not issue a new access key")
        users = [u["UserName"] for u in iam.list_users()["Users"]]
        failures.check(user_name not in users, f"the Delete left the user {user_name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        recorder.shutdown()
    total = sum(t for _, t in timings)
    print("\n==> invokes: " + ", ".join(f"{n} {t:.1f}s" for n, t in timings) + f"; total {total:.1f}s")
    if failures:
        print(f"==> FAILED: {len(failures)} check(s); SAM and function logs in {os.path.relpath(args.logs, REPO)}/")
        for f in failures:
            print(f"   - {f}")
        return 1
    print("==> every CloudFormation event answered SUCCESS once, as expected; the key check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
