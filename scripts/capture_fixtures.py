#!/usr/bin/env python3
"""Captures, once per release, the AWS state each earlier release leaves behind, as JSON fixtures.

For each release (a commit of this repository) it checks the release out into a git worktree
(/work/rel/<version> by default), builds that release's `bootstrap` (debug, `--locked`, in a
target directory shared by the old releases), then for each scenario:

  * starts a fresh moto server (AWS), a recorder standing in for CloudFormation's presigned
    ResponseURL, a stand-in for the Cloud App Security tenant, and the Lambda Runtime Interface
    Emulator running the old bootstrap (through a small proxy of the Runtime API that makes the
    invoked function ARN the one the stack's ServiceToken names);
  * drives CloudFormation-shaped events (and, where the release has rotation, Secrets Manager's
    rotation steps) through the emulator, checking each answer against what the scenario
    expects;
  * dumps the resulting state into tests/fixtures/<version>/<scenario>.json, with every access
    key id and secret access key replaced by @@KEY<n>@@ / @@SECRET<n>@@ placeholders.

The format and the placeholder rules are in tests/fixtures/README.md. Exits non-zero on any
unexpected answer, or when a key id or secret half survives the substitution.

This runs once per release, not in CI: scripts/capture-fixtures.sh is the entry point.
"""

import argparse
import base64
import glob
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The releases so far. `rotation`: the release serves Secrets Manager rotation steps
# (RotationDays > 0); without it a key change is an Update that changes KeyVersion.
RELEASES = {
    "0.1.0": {"commit": "3d50f19", "rotation": False},
    "0.2.0": {"commit": "a096f42", "rotation": True},
}

ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_NAME = "cas-connector"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION_NAME}"
SERVICE_TOKEN = FUNCTION_ARN
LOGICAL_ID = "Connector"
RESOURCE_TYPE = "Custom::CloudAppSecurityConnector"
# Fixed uuids make re-captures comparable: stack ids, request ids and rotation tokens are
# derived from this namespace, the scenario and the request's position.
NAMESPACE = uuid.UUID("6f0b7c2e-3d4a-4e55-9a1b-0c5d8e7f9a21")
MOTO_SEED = 20260101
API_SECRET_NAME = "cloud-app-security-api/fixture"
API_TOKEN = "fixture-token"
TENANT_CONNECTOR_ID = "fixture-connector-1"
FOREIGN_SECRET_NAME = "cloud-app-security/foreign-secret"

KEY_ID_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")
# What a secret access key looks like (moto's and AWS's: 40 characters of base64's alphabet);
# used only as a safety net after substitution, together with the known secret halves.
SECRET_LIKE_RE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")
STAGE_RANK = {"AWSCURRENT": 0, "AWSPENDING": 1, "AWSPREVIOUS": 2}


class CaptureError(Exception):
    """An unexpected answer or state: the capture fails."""


def log(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise CaptureError(f"{what} did not start on port {port}")


def run(cmd, **kwargs):
    log("    $ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kwargs)


def stable_uuid(*parts):
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


# ---------------------------------------------------------------------------------------------
# Stand-ins: CloudFormation's ResponseURL, the Cloud App Security tenant, the Runtime API proxy
# ---------------------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """CloudFormation's presigned ResponseURL: records each PUT's JSON body."""

    received = []
    lock = threading.Lock()

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"unparsable": body.decode(errors="replace")}
        with Recorder.lock:
            Recorder.received.append({"path": self.path, "body": parsed})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Tenant(BaseHTTPRequestHandler):
    """The Cloud App Security tenant: accepts the connector's upsert (200 with an id) and removal."""

    received = []
    lock = threading.Lock()

    def _record(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with Tenant.lock:
            Tenant.received.append({"method": self.command, "path": self.path,
                                    "auth": (self.headers.get("Authorization") or ""), "body": body})

    def do_PUT(self):
        self._record()
        reply = json.dumps({"id": TENANT_CONNECTOR_ID, "status": "connected"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_DELETE(self):
        self._record()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class RuntimeApiProxy(BaseHTTPRequestHandler):
    """Sits between the bootstrap and the emulator's Runtime API. The emulator names the invoked
    function `arn:aws:lambda:us-east-1:012345678912:function:<name>` whatever the environment
    says (its account is hard-coded); the proxy rewrites that header to FUNCTION_ARN, the
    function moto knows and the ServiceToken names, so a release that learns its own ARN from the
    invocation (0.2.0 turns rotation on with it) records the right one."""

    protocol_version = "HTTP/1.1"

    def _body(self):
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self):
        body = self._body()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=None)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            # The emulator went away (the scenario is over): so does the bootstrap.
            self.close_connection = True
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length", "date", "server"):
                continue
            if k.lower() == "lambda-runtime-invoked-function-arn":
                v = FUNCTION_ARN
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, *args):
        pass


def serve(handler, port=0):
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------
# Releases: worktree and build
# ---------------------------------------------------------------------------------------------


def prepare_release(version, args):
    commit = RELEASES[version]["commit"]
    worktree = os.path.join(args.rel_dir, version)
    full = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", commit + "^{commit}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    if not os.path.isdir(worktree):
        os.makedirs(args.rel_dir, exist_ok=True)
        run(["git", "-C", REPO, "worktree", "add", "--detach", worktree, full])
    head = subprocess.run(["git", "-C", worktree, "rev-parse", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    if head != full:
        raise CaptureError(f"{worktree} is at {head[:7]}, not release {version} ({commit}); remove it "
                           f"(git worktree remove {worktree}) and run again")
    binary = os.path.join(args.target_dir, "release-bootstraps", version, "bootstrap")
    if args.no_build:
        if not os.path.exists(binary):
            raise CaptureError(f"--no-build: {binary} does not exist")
        return worktree, binary
    log(f"==> building release {version} ({commit}) in {worktree} (CARGO_TARGET_DIR={args.target_dir})")
    run(["cargo", "build", "--locked", "--bin", "bootstrap"], cwd=worktree,
        env={**os.environ, "CARGO_TARGET_DIR": args.target_dir})
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    # The target directory is shared by the releases: keep a copy of each release's binary.
    shutil.copy2(os.path.join(args.target_dir, "debug", "bootstrap"), binary)
    return worktree, binary


def rie_binary():
    found = glob.glob(os.path.join(REPO, ".venv/lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    if not found:
        raise CaptureError("aws-lambda-rie not found: run scripts/venv.sh")
    return found[0]


# ---------------------------------------------------------------------------------------------
# One scenario's world: moto, the emulator, the requests
# ---------------------------------------------------------------------------------------------


class World:
    def __init__(self, version, scenario, binary, args):
        self.version = version
        self.scenario = scenario
        self.binary = binary
        self.args = args
        self.procs = []
        self.servers = []
        self.stack_id = (f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/fixture-{scenario}/"
                         f"{stable_uuid('stack', scenario)}")
        self.requests = []          # the fixture's "requests"
        self.properties = None      # of the last SUCCESS
        self.physical_id = None     # of the last SUCCESS
        self.buckets = []
        self.api_secret = None      # {"name", "value", "arn"}
        self.n = 0
        self.logs = os.path.join(args.target_dir, "capture-logs", version, scenario)

    # -- start and stop ------------------------------------------------------------------------

    def __enter__(self):
        os.makedirs(self.logs, exist_ok=True)
        Recorder.received.clear()
        Tenant.received.clear()
        port = free_port()
        moto_log = open(os.path.join(self.logs, "moto.log"), "w")
        self.procs.append(subprocess.Popen(
            [os.path.join(REPO, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
            stdout=moto_log, stderr=subprocess.STDOUT))
        wait_for_port(port, "moto server")
        self.endpoint = f"http://127.0.0.1:{port}"
        # moto's ids (secret ARN suffixes, version ids, key ids) come from one seeded generator:
        # a re-capture then mostly repeats them.
        self._moto_api("POST", f"/moto-api/seed?a={MOTO_SEED}")

        import boto3  # from the venv; imported late so that --help works anywhere
        aws = dict(endpoint_url=self.endpoint, region_name=REGION,
                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.iam = boto3.client("iam", **aws)
        self.sm = boto3.client("secretsmanager", **aws)
        self.ct = boto3.client("cloudtrail", **aws)
        self.s3 = boto3.client("s3", **aws)

        self.recorder_port = self.args.recorder.server_address[1]
        self.tenant_url = f"http://127.0.0.1:{self.args.tenant.server_address[1]}"

        invoke_port, runtime_port = free_port(), free_port()
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApiProxy)
        proxy.daemon_threads = True
        proxy.upstream_port = runtime_port
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        self.servers.append(proxy)
        wrapper = os.path.join(self.logs, "bootstrap")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\n"
                    f"AWS_LAMBDA_RUNTIME_API=127.0.0.1:{proxy.server_address[1]} exec {self.binary}\n")
        os.chmod(wrapper, 0o755)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
            "RUST_LOG": "info",
            # What the templates set (0.1.0 reads only the first).
            "CLOUD_APP_SECURITY_ALLOWED_HOSTS": "",
            "CLOUD_APP_SECURITY_STACK_ID": self.stack_id,
            "CLOUD_APP_SECURITY_URL_SUFFIX": "amazonaws.com",
        }
        # The emulator kills every process it can see when it resets a runtime: give it a PID
        # namespace of its own (as scripts/local_run.py does).
        unshare = ["unshare"] + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"]) + \
                  ["--pid", "--fork", "--kill-child"]
        function_log = open(os.path.join(self.logs, "function.log"), "w")
        self.procs.append(subprocess.Popen(
            unshare + [rie_binary(), "--runtime-interface-emulator-address", f"127.0.0.1:{invoke_port}",
                       "--runtime-api-address", f"127.0.0.1:{runtime_port}", wrapper],
            env=env, stdout=function_log, stderr=subprocess.STDOUT))
        wait_for_port(invoke_port, "the Lambda Runtime Interface Emulator")
        self.invoke_url = f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"
        return self

    def __exit__(self, *exc):
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for p in reversed(self.procs):
            p.kill()
            p.wait()
        return False

    def _moto_api(self, method, path, body=b"", content_type="application/json"):
        request = urllib.request.Request(self.endpoint + path, data=body, method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.read()

    # -- environment the scenarios need ------------------------------------------------------

    def make_bucket(self, name):
        # Unsigned path-style PUT, as a person would create the bucket the template makes.
        self._moto_api("PUT", f"/{name}", content_type="text/plain")
        self.buckets.append(name)
        return name

    def make_api_secret(self):
        value = {"token": API_TOKEN}
        out = self.sm.create_secret(Name=API_SECRET_NAME, SecretString=json.dumps(value))
        self.api_secret = {"name": API_SECRET_NAME, "value": value, "arn": out["ARN"]}
        return out["ARN"]

    def make_rotation_function(self):
        """moto's RotateSecret looks the rotation function up in moto's Lambda: a stand-in named
        like the function (its code never runs: moto's Lambda without Docker does nothing)."""
        self._moto_api("POST", "/moto-api/config", json.dumps({"lambda": {"use_docker": False}}).encode())
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                 "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        role = self.iam.create_role(RoleName="cas-connector-function",
                                    AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("bootstrap", "#!/bin/sh\n")
        body = {"FunctionName": FUNCTION_NAME, "Runtime": "provided.al2023", "Handler": "bootstrap",
                "Role": role, "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}
        request = urllib.request.Request(
            self.endpoint + "/2015-03-31/functions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     # moto routes by the signature's service and does not check it.
                     "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/lambda/"
                                      "aws4_request, SignedHeaders=host, Signature=0"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            arn = json.loads(reply.read())["FunctionArn"]
        if arn != FUNCTION_ARN:
            raise CaptureError(f"moto's stand-in function is {arn}, expected {FUNCTION_ARN}")

    # -- driving the function ----------------------------------------------------------------

    def _invoke(self, event):
        request = urllib.request.Request(self.invoke_url, data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=300) as reply:
            text = reply.read().decode()
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    def cfn(self, request_type, props, expect="SUCCESS", reason_contains=()):
        """Sends one CloudFormation request; checks the answer at the recorder."""
        self.n += 1
        request_id = stable_uuid("request", self.scenario, str(self.n))
        event = {
            "RequestType": request_type,
            "ServiceToken": SERVICE_TOKEN,
            "ResponseURL": f"http://127.0.0.1:{self.recorder_port}/cloudformation-response/{request_id}",
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": LOGICAL_ID,
            "ResourceType": RESOURCE_TYPE,
            "ResourceProperties": props,
        }
        if request_type != "Create":
            event["PhysicalResourceId"] = self.physical_id
        if request_type == "Update":
            event["OldResourceProperties"] = self.properties
        before = len(Recorder.received)
        started = time.time()
        result = self._invoke(event)
        answers = [r for r in Recorder.received[before:] if r["path"].endswith(request_id)]
        if len(answers) != 1:
            raise CaptureError(f"{request_type}: {len(answers)} answers reached the recorder "
                               f"(expected one); the function returned {result!r}")
        answer = answers[0]["body"]
        status, reason = answer.get("Status"), answer.get("Reason")
        log(f"    {request_type:<8} -> {status} in {time.time() - started:.1f}s"
            + (f": {reason}" if reason else ""))
        if status != expect:
            raise CaptureError(f"{request_type}: answered {status} ({reason!r}), expected {expect}")
        for text in reason_contains:
            if text not in (reason or ""):
                raise CaptureError(f"{request_type}: the Reason {reason!r} does not mention {text!r}")
        self.requests.append({"type": request_type, "status": status, "reason": reason,
                              "data": canon(answer.get("Data"))})
        if status == "SUCCESS":
            self.properties = props
            self.physical_id = answer.get("PhysicalResourceId")
        return answer

    def rotation_step(self, step, secret_id, token, expect="SUCCESS"):
        event = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
        started = time.time()
        result = self._invoke(event)
        failed = isinstance(result, dict) and "errorMessage" in result and "errorType" in result
        status = "FAILED" if failed else "SUCCESS"
        reason = result.get("errorMessage") if failed else None
        log(f"    {step:<12} -> {status} in {time.time() - started:.1f}s" + (f": {reason}" if reason else ""))
        if status != expect:
            raise CaptureError(f"rotation step {step}: {status} ({result!r}), expected {expect}")
        self.requests.append({"type": f"rotation:{step}", "status": status, "reason": reason,
                              "data": None if failed else canon(result)})
        return result

    def start_rotation(self, secret_id):
        """What Secrets Manager's schedule does: RotateSecret with a chosen token (the new
        version's id), without rotating at once; the steps are then sent to the function."""
        token = stable_uuid("rotation", self.scenario)
        self.sm.rotate_secret(SecretId=secret_id, ClientRequestToken=token,
                              RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False)
        return token

    # -- the state ---------------------------------------------------------------------------

    def dump(self):
        return {
            "users": self._users(),
            "secrets": self._secrets(),
            "trails": self._trails(),
            "tenant": [{"method": t["method"], "path": t["path"], "body": canon(t["body"])}
                       for t in Tenant.received],
        }

    def _users(self):
        users = []
        for page in self.iam.get_paginator("list_users").paginate():
            for u in page["Users"]:
                name = u["UserName"]
                user = self.iam.get_user(UserName=name)["User"]
                tags = {t["Key"]: t["Value"] for t in self.iam.list_user_tags(UserName=name)["Tags"]}
                inline = {}
                for policy in self.iam.list_user_policies(UserName=name)["PolicyNames"]:
                    doc = self.iam.get_user_policy(UserName=name, PolicyName=policy)["PolicyDocument"]
                    inline[policy] = canon(json.loads(doc) if isinstance(doc, str) else doc)
                attached = [p["PolicyArn"] for p in
                            self.iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]]
                keys = sorted(self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"],
                              key=lambda k: (k["CreateDate"], k["AccessKeyId"]))
                users.append({
                    "name": name,
                    "path": user["Path"],
                    "arn": user["Arn"],
                    "tags": canon(tags),
                    "permissions_boundary": (user.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"),
                    "inline_policies": canon(inline),
                    "attached_policies": sorted(attached),
                    "access_keys": [{"id": k["AccessKeyId"], "status": k["Status"]} for k in keys],
                })
        return sorted(users, key=lambda u: u["name"])

    def _secrets(self):
        secrets = []
        listed = []
        for page in self.sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            listed.extend(page["SecretList"])
        for s in listed:
            if self.api_secret and s["Name"] == self.api_secret["name"]:
                continue  # environment: api_credentials_secret
            d = self.sm.describe_secret(SecretId=s["ARN"])
            pending = bool(d.get("DeletedDate"))
            stages = d.get("VersionIdsToStages") or {}
            created = {}
            token = None
            while True:
                page = self.sm.list_secret_version_ids(SecretId=s["ARN"], IncludeDeprecated=True,
                                                       **({"NextToken": token} if token else {}))
                for v in page["Versions"]:
                    created[v["VersionId"]] = v.get("CreatedDate")
                    stages.setdefault(v["VersionId"], v.get("VersionStages") or [])
                token = page.get("NextToken")
                if not token:
                    break
            versions = []
            for vid, vstages in stages.items():
                value = None
                if not pending:
                    try:
                        got = self.sm.get_secret_value(SecretId=s["ARN"], VersionId=vid)
                        value = got.get("SecretString")
                    except self.sm.exceptions.ResourceNotFoundException:
                        value = None
                if isinstance(value, str):
                    try:
                        value = canon(json.loads(value))
                    except ValueError:
                        pass
                versions.append({"id": vid, "stages": sorted(vstages, key=lambda x: (STAGE_RANK.get(x, 9), x)),
                                 "value": value, "_created": created.get(vid)})
            versions.sort(key=lambda v: (min([STAGE_RANK.get(x, 9) for x in v["stages"]] or [10]),
                                         str(v["_created"]), json.dumps(v["value"], sort_keys=True)))
            for v in versions:
                del v["_created"]
            rules = d.get("RotationRules") or {}
            rotation = None
            if d.get("RotationEnabled") or rules.get("AutomaticallyAfterDays"):
                rotation = {"enabled": bool(d.get("RotationEnabled")), "days": rules.get("AutomaticallyAfterDays")}
            arn = d["ARN"]
            secrets.append({
                "name": d["Name"],
                # The ARN without the six random characters Secrets Manager appends.
                "arn_suffix_free_name": re.sub(r"-[A-Za-z0-9]{6}$", "", arn),
                "tags": canon({t["Key"]: t["Value"] for t in d.get("Tags") or []}),
                "description": d.get("Description"),
                "kms_key_id": d.get("KmsKeyId"),
                "pending_deletion": pending,
                "rotation": rotation,
                "versions": versions,
            })
        return sorted(secrets, key=lambda s: s["name"])

    def _trails(self):
        trails = []
        for t in self.ct.describe_trails(includeShadowTrails=False)["trailList"]:
            arn = t["TrailARN"]
            status = self.ct.get_trail_status(Name=arn)
            tags = {}
            for entry in self.ct.list_tags(ResourceIdList=[arn])["ResourceTagList"]:
                tags.update({x["Key"]: x["Value"] for x in entry.get("TagsList") or []})
            trails.append({
                "name": t["Name"],
                "bucket": t.get("S3BucketName"),
                "multi_region": bool(t.get("IsMultiRegionTrail")),
                "logging": bool(status.get("IsLogging")),
                "tags": canon(tags),
                "include_global_events": bool(t.get("IncludeGlobalServiceEvents")),
            })
        return sorted(trails, key=lambda t: t["name"])


def canon(value):
    """Dictionaries with sorted keys, recursively (lists keep their order: it means something)."""
    if isinstance(value, dict):
        return {k: canon(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canon(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Scenarios. Each drives its requests and returns the fixture's description.
# ---------------------------------------------------------------------------------------------


def base_props(**extra):
    return {"ServiceToken": SERVICE_TOKEN, **extra}


def create_portal(w):
    bucket = w.make_bucket(f"cas-fixture-trail-{ACCOUNT}")
    w.cfn("Create", base_props(TrailMode="Create", TrailBucket=bucket))
    return (f"Create in portal mode (no CloudAppSecurityUrl) with TrailMode Create and TrailBucket {bucket} "
            f"(a bucket made in moto first); every other property at its default.")


def create_callback(w):
    credentials = w.make_api_secret()
    w.cfn("Create", base_props(TrailMode="Off", CloudAppSecurityUrl=w.tenant_url,
                               CloudAppSecurityCredentials=credentials))
    puts = [t for t in Tenant.received if t["method"] == "PUT"]
    if not puts:
        raise CaptureError("the Create with the call back on registered nothing at the tenant")
    if any(t["auth"] != f"Token {API_TOKEN}" for t in Tenant.received):
        raise CaptureError("the tenant stand-in got a request without the legacy token's Authorization")
    return (f"Create with the call back on (CloudAppSecurityUrl {w.tenant_url}, a local tenant stand-in that "
            f"answers the upsert 200 {{\"id\": \"{TENANT_CONNECTOR_ID}\"}}; CloudAppSecurityCredentials the ARN of "
            f"{API_SECRET_NAME} holding a legacy token), TrailMode Off.")


def key_change(w):
    w.cfn("Create", base_props(TrailMode="Off", KeyVersion="1"))
    w.cfn("Update", base_props(TrailMode="Off", KeyVersion="2"))
    return ("Portal mode, TrailMode Off: Create with KeyVersion 1, then an Update changing KeyVersion to 2 "
            "(a key change on Update).")


def rotation_awaiting_paste(w):
    w.make_rotation_function()
    answer = w.cfn("Create", base_props(TrailMode="Off", RotationDays="30"))
    secret_arn = answer["Data"]["SecretArn"]
    configured = w.sm.describe_secret(SecretId=secret_arn).get("RotationLambdaARN")
    if configured != FUNCTION_ARN:
        raise CaptureError(f"the Create turned rotation on with {configured!r}, expected {FUNCTION_ARN}")
    token = w.start_rotation(secret_arn)
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        w.rotation_step(step, secret_arn, token)
    user = answer["Data"]["UserName"]
    keys = w.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    if sorted(k["Status"] for k in keys) != ["Active", "Active"]:
        raise CaptureError(f"after the rotation {user} has keys {keys}, expected two active (one awaiting a paste)")
    return (f"Portal mode, TrailMode Off, RotationDays 30: Create, then moto RotateSecret (RotateImmediately "
            f"false, ClientRequestToken {token}, rotation function {FUNCTION_ARN}) and the four rotation steps "
            f"through the emulator; the previous key stays active, awaiting a paste.")


def failed_update(w):
    w.cfn("Create", base_props(TrailMode="Off"))
    w.sm.create_secret(Name=FOREIGN_SECRET_NAME, SecretString=json.dumps({"owner": "someone else"}))
    w.cfn("Update", base_props(TrailMode="Off", SecretName=FOREIGN_SECRET_NAME),
          expect="FAILED", reason_contains=(FOREIGN_SECRET_NAME,))
    return (f"Portal mode, TrailMode Off: Create, then an Update moving SecretName to {FOREIGN_SECRET_NAME}, "
            f"a secret that already exists untagged (someone else's, made in moto first): answered FAILED. "
            f"No rollback Update was sent; properties/physical_id are the Create's.")


SCENARIOS = {
    "create-portal": create_portal,
    "create-callback": create_callback,
    "key-change": key_change,
    "rotation-awaiting-paste": rotation_awaiting_paste,
    "failed-update": failed_update,
}


def scenarios_for(version):
    names = ["create-portal", "create-callback"]
    if RELEASES[version]["rotation"]:
        names.append("rotation-awaiting-paste")
    names += ["key-change", "failed-update"]
    return names


# ---------------------------------------------------------------------------------------------
# Placeholders
# ---------------------------------------------------------------------------------------------


def _walk(value, user, visit):
    """Calls visit(dict, context user) on every dict, in serialisation order; the context user is
    the nearest enclosing UserName."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k.lower() == "username" and isinstance(v, str):
                user = v
        visit(value, user)
        for v in value.values():
            _walk(v, user, visit)
    elif isinstance(value, list):
        for v in value:
            _walk(v, user, visit)


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _replace(value, table):
    if isinstance(value, dict):
        return {_replace(k, table): _replace(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, table) for v in value]
    if isinstance(value, str):
        for raw, placeholder in table:
            value = value.replace(raw, placeholder)
        return value
    return value


def substitute_keys(fixture):
    """Replaces key ids and secret halves by @@KEY<n>@@ / @@SECRET<n>@@; fills retired_keys."""
    pairs = {}        # key id -> secret access key
    mentioned_by = {}  # key id -> the user its context names (first seen)

    def visit(d, user):
        ids = [v for k, v in d.items() if k.lower() == "accesskeyid" and isinstance(v, str)]
        secrets = [v for k, v in d.items() if k.lower() == "secretaccesskey" and isinstance(v, str)]
        if ids and secrets:
            pairs.setdefault(ids[0], secrets[0])
        for s in _strings({k: v for k, v in d.items() if not isinstance(v, (dict, list))}):
            for m in KEY_ID_RE.finditer(s):
                if user:
                    mentioned_by.setdefault(m.group(0), user)

    for section in ("requests", "users", "secrets", "tenant"):
        for item in fixture[section]:
            _walk(item, item.get("name") if section == "users" else None, visit)
    # Numbering: order of first appearance in the file as written.
    order = []
    for s in _strings(fixture):
        for m in KEY_ID_RE.finditer(s):
            if m.group(0) not in order:
                order.append(m.group(0))
    number = {key: i + 1 for i, key in enumerate(order)}
    table = []
    for key in order:
        table.append((key, f"@@KEY{number[key]}@@"))
    for key, secret in pairs.items():
        if key not in number:
            raise CaptureError(f"a secret access key is paired with an id the numbering missed")
        table.append((secret, f"@@SECRET{number[key]}@@"))
    # Longest first, so that no placeholder is written into the middle of a longer match.
    table.sort(key=lambda e: -len(e[0]))

    live = {k["id"] for u in fixture["users"] for k in u["access_keys"]}
    users = [u["name"] for u in fixture["users"]]
    retired = []
    for key in order:
        if key in live:
            continue
        user = mentioned_by.get(key) or (users[0] if len(users) == 1 else None)
        retired.append({"id": key, "user": user})
    fixture["retired_keys"] = retired
    out = _replace(fixture, table)

    text = json.dumps(out)
    survivors = KEY_ID_RE.findall(text)
    if survivors:
        raise CaptureError(f"{len(survivors)} key id(s) survived the substitution")
    for secret in pairs.values():
        if secret in text:
            raise CaptureError("a secret access key survived the substitution")
    for m in SECRET_LIKE_RE.finditer(text):
        s = m.group(0)
        if re.search(r"[a-z]", s) and re.search(r"[A-Z]", s) and re.search(r"[0-9]", s):
            raise CaptureError(f"a string that looks like a secret access key ({s[:4]}…) has no known key id")
    return out, len(order)


# ---------------------------------------------------------------------------------------------
# One scenario, one release, main
# ---------------------------------------------------------------------------------------------


def capture(version, scenario, binary, args):
    log(f"--> {version} {scenario}")
    with World(version, scenario, binary, args) as w:
        description = SCENARIOS[scenario](w)
        state = w.dump()
    api = None
    if w.api_secret:
        api = {"name": w.api_secret["name"], "value": w.api_secret["value"]}
    fixture = {
        "release": version,
        "commit": RELEASES[version]["commit"],
        "scenario": scenario,
        "description": description,
        "account": ACCOUNT,
        "region": REGION,
        "stack_id": w.stack_id,
        "logical_id": LOGICAL_ID,
        "physical_id": w.physical_id,
        "properties": w.properties,
        "requests": w.requests,
        "users": state["users"],
        "retired_keys": [],
        "secrets": state["secrets"],
        "trails": state["trails"],
        "buckets": sorted(w.buckets),
        "tenant": state["tenant"],
        "api_credentials_secret": api,
    }
    fixture, keys = substitute_keys(fixture)
    path = os.path.join(args.out, version, f"{scenario}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    log(f"    wrote {os.path.relpath(path, REPO)} ({len(fixture['users'])} user(s), "
        f"{len(fixture['secrets'])} secret(s), {keys} key(s), {len(fixture['retired_keys'])} retired)")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Releases: " + ", ".join(f"{v} = {r['commit']}" for v, r in RELEASES.items())
               + ". Scenarios: " + ", ".join(SCENARIOS) + " (rotation-awaiting-paste only where the "
               "release has rotation). Format: tests/fixtures/README.md.")
    parser.add_argument("--release", action="append", choices=sorted(RELEASES),
                        help="capture this release (repeatable; default: all)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="capture only this scenario (repeatable; default: all the release supports)")
    parser.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"),
                        help="where <version>/<scenario>.json go (default: %(default)s)")
    parser.add_argument("--rel-dir", default="/work/rel",
                        help="where the releases' worktrees live (default: %(default)s)")
    parser.add_argument("--target-dir", default="/work/rel-target",
                        help="CARGO_TARGET_DIR shared by the old releases' builds; also holds each "
                             "release's binary and the capture logs (default: %(default)s)")
    parser.add_argument("--no-build", action="store_true",
                        help="use the binary a previous run kept in TARGET_DIR/release-bootstraps/<version>/")
    parser.add_argument("--tenant-port", type=int, default=47998,
                        help="fixed port of the tenant stand-in, so that CloudAppSecurityUrl (and what "
                             "the releases record of it) is the same on every capture (default: %(default)s)")
    args = parser.parse_args()

    try:
        args.recorder = serve(Recorder)
        try:
            args.tenant = serve(Tenant, args.tenant_port)
        except OSError as e:
            raise CaptureError(f"the tenant stand-in cannot listen on 127.0.0.1:{args.tenant_port} ({e}); "
                               f"pick another with --tenant-port")
        failures = []
        for version in args.release or list(RELEASES):
            _, binary = prepare_release(version, args)
            for scenario in scenarios_for(version):
                if args.scenario and scenario not in args.scenario:
                    continue
                try:
                    capture(version, scenario, binary, args)
                except CaptureError as e:
                    log(f"    FAILED: {e} (logs: {os.path.join(args.target_dir, 'capture-logs', version, scenario)})")
                    failures.append(f"{version} {scenario}: {e}")
                except Exception as e:  # an AWS call, a stand-in: still one line per scenario
                    traceback.print_exc()
                    failures.append(f"{version} {scenario}: {type(e).__name__}: {e}")
        if failures:
            log("\n==> capture failed:\n  " + "\n  ".join(failures))
            return 1
        log("\n==> done")
        return 0
    except (CaptureError, subprocess.CalledProcessError) as e:
        log(f"==> capture failed: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
