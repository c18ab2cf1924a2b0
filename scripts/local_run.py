"""Local run: the bootstrap under the Lambda Runtime Interface Emulator, AWS from moto server,
CloudFormation's response URL a local recorder. Prints each response and the AWS state after it.

Usage: local_run.py BOOTSTRAP [EVENT ...]   (events default to create update delete)
"""

import glob
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(REPO, ".local-run")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start on port {port}")


class Recorder(BaseHTTPRequestHandler):
    """Stands in for CloudFormation's presigned S3 URL: records each PUT."""

    received = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.received.append({"content_type": self.headers.get("Content-Type"), "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class CloudAppSecurity(BaseHTTPRequestHandler):
    """Stands in for the Cloud App Security tenant: accepts the connector's upsert and removal."""

    received = []

    def _record(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length)) if length else None
        scheme = (self.headers.get("Authorization") or "").split(" ")[0]
        CloudAppSecurity.received.append({"method": self.command, "path": self.path, "auth": scheme, "body": body})

    def do_PUT(self):
        self._record()
        reply = json.dumps({"id": "local-connector-1", "status": "connected"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_DELETE(self):
        self._record()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def rie_binary():
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    found = glob.glob(os.path.join(REPO, ".venv/lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-" + arch))
    if not found:
        sys.exit("aws-lambda-rie not found: run scripts/venv.sh")
    return found[0]


def show_state(iam, sm, ct, user_name, secret_name):
    print("   AWS state:")
    try:
        user = iam.get_user(UserName=user_name)["User"]
        tags = {t["Key"]: t["Value"] for t in user.get("Tags", [])}
        print(f"     user        {user['Arn']}")
        print(f"     tags        {json.dumps(tags)}")
        print(f"     inline      {iam.list_user_policies(UserName=user_name)['PolicyNames']}")
        attached = iam.list_attached_user_policies(UserName=user_name)["AttachedPolicies"]
        print(f"     attached    {[p['PolicyName'] for p in attached]}")
        keys = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
        print(f"     access keys {[(k['AccessKeyId'], k['Status']) for k in keys]}")
    except iam.exceptions.NoSuchEntityException:
        print(f"     user        {user_name}: none")
    try:
        secret = sm.describe_secret(SecretId=secret_name)
        if secret.get("DeletedDate"):
            print(f"     secret      {secret_name}: scheduled for deletion on {secret['DeletedDate']:%Y-%m-%d}")
        else:
            value = json.loads(sm.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")["SecretString"])
            # The secret access key itself is never printed.
            print(f"     secret      {secret_name}: AccessKeyId={value['AccessKeyId']} UserName={value['UserName']}"
                  f" SecretAccessKey=<{len(value['SecretAccessKey'])} characters>")
    except sm.exceptions.ResourceNotFoundException:
        print(f"     secret      {secret_name}: none")
    trails = ct.describe_trails(includeShadowTrails=True)["trailList"]
    for t in trails:
        logging = ct.get_trail_status(Name=t["TrailARN"])["IsLogging"]
        print(f"     trail       {t['TrailARN']} multi-region={t['IsMultiRegionTrail']} logging={logging}"
              f" bucket={t.get('S3BucketName')}")
    if not trails:
        print("     trail       none")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bootstrap = os.path.abspath(sys.argv[1])
    names = sys.argv[2:] or ["create", "update", "check-keys", "delete"]
    os.makedirs(LOGS, exist_ok=True)
    procs = []
    try:
        moto_port = free_port()
        moto_log = open(os.path.join(LOGS, "moto.log"), "w")
        procs.append(subprocess.Popen(
            [os.path.join(REPO, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}, stdout=moto_log, stderr=subprocess.STDOUT))
        wait_for_port(moto_port, "moto server")
        endpoint = f"http://127.0.0.1:{moto_port}"
        print(f"==> moto server (AWS) on {endpoint}")

        recorder = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        threading.Thread(target=recorder.serve_forever, daemon=True).start()
        response_url = f"http://127.0.0.1:{recorder.server_address[1]}/cloudformation-response"
        print(f"==> CloudFormation response recorder on {response_url}")

        tenant = ThreadingHTTPServer(("127.0.0.1", 0), CloudAppSecurity)
        threading.Thread(target=tenant.serve_forever, daemon=True).start()
        tenant_url = f"http://127.0.0.1:{tenant.server_address[1]}"
        print(f"==> Cloud App Security stand-in on {tenant_url}")

        invoke_port, runtime_port = free_port(), free_port()
        # The emulator kills every process it can see when it resets a runtime: give it a PID
        # namespace of its own.
        unshare = ["unshare"] + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"]) + \
                  ["--pid", "--fork", "--kill-child"]
        function_log_path = os.path.join(LOGS, "function.log")
        function_log = open(function_log_path, "w")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
        }
        procs.append(subprocess.Popen(
            unshare + [rie_binary(), "--runtime-interface-emulator-address", f"127.0.0.1:{invoke_port}",
                       "--runtime-api-address", f"127.0.0.1:{runtime_port}", bootstrap],
            env=env, stdout=function_log, stderr=subprocess.STDOUT))
        wait_for_port(invoke_port, "the Lambda Runtime Interface Emulator")
        print(f"==> {os.path.relpath(bootstrap, REPO)} under the Lambda Runtime Interface Emulator"
              f" (function log: {os.path.relpath(function_log_path, REPO)})")

        aws = dict(endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
        iam, sm = boto3.client("iam", **aws), boto3.client("secretsmanager", **aws)

        s3 = boto3.client("s3", **aws)
        ct = boto3.client("cloudtrail", **aws)
        for name in names:
            with open(os.path.join(REPO, "events", f"{name}.json")) as f:
                event = json.load(f)
            if "CheckKeys" in event:
                # The daily key check the template's EventBridge rule sends: no CloudFormation answer,
                # the function's result is what it did.
                print(f"\n--> key check (events/{name}.json)")
                request = urllib.request.Request(
                    f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations",
                    data=json.dumps(event).encode(), method="POST")
                with urllib.request.urlopen(request, timeout=120) as reply:
                    print(f"   result      {reply.read().decode()}")
                continue
            event["ResponseURL"] = response_url
            props = event["ResourceProperties"]
            connector = props.get("ConnectorName") or "aws-123456789012"
            user_name = props.get("UserName") or f"CloudAppSecurity-{connector}"[:64]
            secret_name = props.get("SecretName") or f"cloud-app-security/{connector}"
            for p in (event["ResourceProperties"], event.get("OldResourceProperties") or {}):
                if p.get("CloudAppSecurityUrl"):
                    p["CloudAppSecurityUrl"] = tenant_url
            credentials = props.get("CloudAppSecurityCredentials")
            if credentials and name == names[0]:
                # Stands in for the API-token secret the template creates from a NoEcho parameter.
                sm.create_secret(Name=credentials, SecretString=json.dumps({"token": "local-api-token"}))
            if props.get("TrailBucket"):
                # Stands in for the trail bucket the template creates.
                s3.create_bucket(Bucket=props["TrailBucket"])
            print(f"\n--> {event['RequestType']} (events/{name}.json)")
            before = len(Recorder.received)
            tenant_before = len(CloudAppSecurity.received)
            request = urllib.request.Request(
                f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations",
                data=json.dumps(event).encode(), method="POST")
            started = time.time()
            with urllib.request.urlopen(request, timeout=120) as reply:
                result = reply.read().decode()
            elapsed = time.time() - started
            if len(Recorder.received) == before:
                sys.exit(f"   no response reached CloudFormation; the function returned {result}")
            answer = Recorder.received[-1]["body"]
            print(f"   response    {answer['Status']} in {elapsed:.2f}s: {answer.get('Reason')}")
            print(f"   physical id {answer['PhysicalResourceId']}")
            for key, value in sorted(answer.get("Data", {}).items()):
                print(f"   Data.{key:<15} {value}")
            for call in CloudAppSecurity.received[tenant_before:]:
                body = call["body"]
                shown = "" if body is None else " " + json.dumps(
                    {k: ("<redacted>" if k == "secretAccessKey" else v) for k, v in body.items()})
                print(f"   tenant got  {call['method']} {call['path']} ({call['auth']} auth){shown}")
            show_state(iam, sm, ct, user_name, secret_name)
        print("\n==> done")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
