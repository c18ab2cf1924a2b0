"""Side-by-side benchmark: the product's `bootstrap` and the Python peer (crhelper + boto3), each
under the Lambda Runtime Interface Emulator, against one moto server behind a counting proxy,
answering one local stand-in for CloudFormation's presigned ResponseURL.

Workload: the portal-mode core with the trail off and key verification off (issue 12's
workload: `TrailMode: Off`, `VerifyKey: "false"`, no `RotationDays`) — Create (user, inline policy,
key, secret), Update (a KeyVersion change: rotate the key), Delete. A binary older than the
`VerifyKey` property (it never verified keys, and refuses unknown properties) is named with
--legacy-props NAME and gets the same properties without it.

Per run and per function, a fresh emulator and process:
  cold Create (the first invocation of the process), then WARM_ROUNDS × (Create, Update, Delete)
  on fresh connector names, then the cold connector's Delete (not measured), then VmHWM.

Figures (medians over the runs; warm figures over runs × rounds):
  init                 the emulator's `INIT REPORT(durationMs)`: process exec → first /next
  invoke → answer      POST to the emulator → the PUT at the ResponseURL stand-in (harness clock)
  handler only         the emulator's `INVOKE RTDONE(duration)`: /next answered → /response posted
  own time             invoke → answer (less init) minus the time at least one AWS call was in flight
                       at the proxy: what the function spends on itself (CPU, connecting, answering)
  AWS calls            requests at the proxy during the invocation, by operation
  AWS round trips      longest chain of calls each starting after the previous one ended
  new connections      connections the proxy accepted during the invocation
  peak RSS             VmHWM of the bootstrap process (/proc/PID/status) after the last invocation

Plain HTTP to moto by default (the machine's own root certificates are still loaded); --tls serves
the proxy and the ResponseURL stand-in over HTTPS, with a bench CA as the only root.

Usage: bench.py [--runs N] [--warm-rounds N] [--target NAME=BOOTSTRAP ...] [--legacy-props NAME ...]
                [--no-peer | --peer-only] [--tls | --roots-file PEM] [--aws-latency MS] [--out DIR]
"""

import argparse
import datetime
import glob
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from awscount import rounds, waves  # noqa: E402

ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/cas-bench/5b1c1f30-6f7e-4a51-9d2b-3f1c8a0e7d11"
SERVICE_TOKEN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:cloud-app-security-connector"
PEER = os.path.join(HERE, "peer", "bootstrap")


# ---------------------------------------------------------------------------------------------
# Local services


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
            time.sleep(0.02)
    sys.exit(f"{what} did not start on port {port}")


class Recorder(BaseHTTPRequestHandler):
    """Stands in for CloudFormation's presigned URL: records each PUT with its arrival time."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    received = []
    arrived = threading.Condition()

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        at = time.monotonic()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with Recorder.arrived:
            Recorder.received.append((at, json.loads(body)))
            Recorder.arrived.notify_all()

    def log_message(self, *args):
        pass


def make_ca(directory):
    """A CA and a certificate for 127.0.0.1 it signed (crhelper answers over HTTPS only; --tls
    serves the AWS endpoint over HTTPS too). Returns (ca file, leaf chain file, leaf key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5), not_valid_after=now + datetime.timedelta(days=1))

    def builder(subject, issuer, public_key):
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
        return b.serial_number(x509.random_serial_number()).not_valid_before(valid["not_valid_before"]) \
            .not_valid_after(valid["not_valid_after"])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cas-bench CA")])
    ca = (builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server-key.pem")]
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(leaf.public_bytes(pem) + ca.public_bytes(pem))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def serve(handler, tls=None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    return f"{scheme}://127.0.0.1:{server.server_address[1]}/cloudformation-response"


def aws_request(conn, service, target, body):
    """One unsigned-but-scoped request on `conn` (moto reads the service from the credential scope)."""
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, "
                         "SignedHeaders=host, Signature=0",
        "Content-Type": "application/x-amz-json-1.1" if target else "application/x-www-form-urlencoded",
    }
    if target:
        headers["X-Amz-Target"] = target
    conn.request("POST", "/", body=body, headers=headers)
    conn.getresponse().read()


class Proxy:
    """bench/awscount.py as its own process, so its threads never share the harness's GIL."""

    def __init__(self, upstream, log, tls=None, ca=None, latency_ms=0.0):
        extra = ["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []
        extra += ["--latency-ms", str(latency_ms)] if latency_ms else []
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "awscount.py"), "--upstream", upstream] + extra,
                                     stdout=subprocess.PIPE, stderr=log, text=True)
        self.ssl_context = ssl.create_default_context(cafile=ca) if tls else None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            sys.exit(f"the counting proxy did not start: {line!r}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def connection(self):
        if self.ssl_context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60, context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _call(self, method, path):
        conn = self.connection()
        conn.request(method, path)
        body = conn.getresponse().read()
        conn.close()
        return json.loads(body)

    def reset(self):
        self._call("POST", "/__awscount/reset")

    def calls(self):
        """(calls, connections) since the last reset."""
        answer = self._call("GET", "/__awscount/calls")
        return answer["calls"], answer["connections"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def rie_binary():
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    found = glob.glob(os.path.join(REPO, ".venv/lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-" + arch))
    if not found:
        sys.exit("aws-lambda-rie not found: run scripts/venv.sh")
    return found[0]


def children(pid):
    """PIDs whose parent is `pid` (from /proc/*/stat; /proc/PID/task/*/children may not exist)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def memory_kib(pid):
    """VmHWM (peak RSS) and the current RSS split: {"VmHWM", "RssAnon", "RssFile", "Threads"}."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
                found[key] = int(value.split()[0])
    return found


class Emulator:
    """One emulator and one function process; the emulator in its own PID namespace, because it
    kills every process it can see when it resets a runtime."""

    def __init__(self, bootstrap, env, log_path):
        self.port = free_port()
        unshare = ["unshare"] + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"]) + \
                  ["--pid", "--fork", "--kill-child"]
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            unshare + [rie_binary(), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
                       "--runtime-api-address", f"127.0.0.1:{free_port()}", bootstrap],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, "the Lambda Runtime Interface Emulator")

    def invoke(self, event):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", "/2015-03-31/functions/function/invocations", body=json.dumps(event).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body.decode(errors="replace")

    def function_pid(self):
        """The bootstrap process: the emulator's child (the emulator is unshare's child)."""
        for rie in children(self.proc.pid):
            for pid in children(rie):
                return pid
        return None

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
INVOKE_DONE = re.compile(r"INVOKE RTDONE\(status: (\w+), produced bytes: \d+, duration: ([0-9.]+)ms\)")


# ---------------------------------------------------------------------------------------------
# Events


def properties(name, key_version, legacy=False):
    props = {
        "ServiceToken": SERVICE_TOKEN,
        "ConnectorName": name,
        "Connections": ["SecurityAuditing"],
        "TrailMode": "Off",
        "KeyVersion": key_version,
        "Tags": [{"Key": "team", "Value": "security"}],
    }
    if not legacy:
        props["VerifyKey"] = "false"
    return props


def event(request_type, name, response_url, seq, legacy=False):
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/cloud-app-security/CloudAppSecurity-{name}"
    e = {
        "RequestType": request_type,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": f"bench-{seq}",
        "LogicalResourceId": "Connector",
        "ResourceType": "Custom::CloudAppSecurityConnector",
        "ResourceProperties": properties(name, "1" if request_type == "Create" else "2", legacy),
    }
    if request_type != "Create":
        e["PhysicalResourceId"] = user_arn
    if request_type == "Update":
        e["OldResourceProperties"] = properties(name, "1", legacy)
    return e


# ---------------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.seq = 0
        self.procs = []

    def start_services(self):
        moto_port = free_port()
        self.moto = subprocess.Popen(
            [os.path.join(REPO, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=open(os.path.join(self.out, "moto.log"), "w"), stderr=subprocess.STDOUT)
        wait_for_port(moto_port, "moto server")
        self.moto_url = f"http://127.0.0.1:{moto_port}"
        self.ca, cert, key = make_ca(self.out)
        tls = (cert, key) if self.args.tls else None
        self.proxy = Proxy(self.moto_url, open(os.path.join(self.out, "proxy.log"), "w"), tls, self.ca,
                           getattr(self.args, "aws_latency", 0.0))
        self.http_url = serve(Recorder)
        self.https_url = serve(Recorder, (cert, key))
        # moto builds each service's backend on its first request (0.1-1 s): before measuring.
        direct = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=60)
        for service, target, body in (
            ("iam", None, "Action=ListUsers&Version=2010-05-08"),
            ("secretsmanager", "secretsmanager.ListSecrets", "{}"),
        ):
            aws_request(direct, service, target, body)
        # What the proxy adds to one call: GetUser of a missing user, direct and through it
        # (each on a kept-alive connection).
        proxied = self.proxy.connection()
        times = {"direct": [], "proxied": []}
        for _ in range(15):
            for name, conn in (("direct", direct), ("proxied", proxied)):
                t = time.monotonic()
                aws_request(conn, "iam", None, "Action=GetUser&UserName=nobody&Version=2010-05-08")
                times[name].append((time.monotonic() - t) * 1000)
        direct.close()
        proxied.close()
        self.proxy_overhead_ms = statistics.median(times["proxied"]) - statistics.median(times["direct"])
        self.moto_call_ms = statistics.median(times["direct"])
        self.proxy.reset()

    def stop_services(self):
        self.proxy.stop()
        self.moto.kill()
        self.moto.wait()

    def env(self, peer):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ENDPOINT_URL": self.proxy.url,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        }
        if peer:
            env["PEER_PYTHON"] = self.args.peer_python
            env["CFN_RESPONSE_CA_FILE"] = self.ca
            env["_HANDLER"] = "connector.handler"
            if self.args.tls:
                env["AWS_CA_BUNDLE"] = self.ca
        elif self.args.tls:
            # The bench CA as the only root: what the handshakes cost, not what loading roots costs.
            env["SSL_CERT_FILE"] = self.ca
        elif self.args.roots_file:
            # The system's roots from one bundle file, without the directory scan.
            env["SSL_CERT_FILE"] = self.args.roots_file
        return env

    def invoke(self, emulator, request_type, name, response_url, legacy=False):
        """One invocation; returns its measurements."""
        self.seq += 1
        ev = event(request_type, name, response_url, self.seq, legacy)
        self.proxy.reset()
        before_log = len(emulator.output())
        with Recorder.arrived:
            answered = len(Recorder.received)
        started = time.monotonic()
        status, result = emulator.invoke(ev)
        with Recorder.arrived:
            Recorder.arrived.wait_for(lambda: len(Recorder.received) > answered, timeout=5)
            arrivals = Recorder.received[answered:]
        calls, connections = self.proxy.calls()
        log = emulator.output()[before_log:]
        if not arrivals:
            raise RuntimeError(f"{request_type} {name}: no answer reached the ResponseURL stand-in "
                               f"(emulator said {status} {result[:300]}); see {emulator.log_path}")
        at, answer = arrivals[0]
        if answer.get("Status") != "SUCCESS":
            raise RuntimeError(f"{request_type} {name}: answered {answer.get('Status')}: {answer.get('Reason')}")
        init = INIT_REPORT.search(log)
        done = INVOKE_DONE.search(log)
        init_ms = float(init.group(1)) if init else None
        # The function's own time: the handler's window less the time some AWS call was in flight.
        window_start = started + (init_ms or 0) / 1000
        return {
            "request": request_type,
            "name": name,
            "answer_ms": (at - started) * 1000,
            "init_ms": init_ms,
            "handler_ms": float(done.group(2)) if done else None,
            "own_ms": ((at - window_start) - covered(calls, window_start, at)) * 1000,
            "call_ms": [(c["end"] - c["start"]) * 1000 for c in calls],
            "timeline": [(c["op"], round((c["start"] - started) * 1000, 2), round((c["end"] - started) * 1000, 2))
                         for c in calls],
            "calls": [c["op"] for c in calls],
            "connections": len(connections),
            "handshakes": [(round((c["start"] - started) * 1000, 2), round((c["end"] - started) * 1000, 2))
                           for c in connections],
            "rounds": rounds(calls),
            "waves": waves(calls),
        }

    def run_process(self, label, bootstrap, run):
        peer = label == "python-peer"
        url = self.https_url if peer or self.args.tls else self.http_url
        log_path = os.path.join(self.out, f"{label}-run{run}.log")
        emulator = Emulator(bootstrap, self.env(peer), log_path)
        try:
            samples = []
            cold_name = f"{label}-r{run}-cold"
            legacy = label in self.args.legacy_props
            cold = self.invoke(emulator, "Create", cold_name, url, legacy)
            cold["phase"] = "cold"
            samples.append(cold)
            for r in range(self.args.warm_rounds):
                name = f"{label}-r{run}-w{r}"
                for request_type in ("Create", "Update", "Delete"):
                    s = self.invoke(emulator, request_type, name, url, legacy)
                    s["phase"] = "warm"
                    samples.append(s)
            self.invoke(emulator, "Delete", cold_name, url, legacy)
            pid = emulator.function_pid()
            memory = memory_kib(pid) if pid else {}
            return {"samples": samples, "peak_rss_kib": memory.get("VmHWM"), "memory": memory}
        finally:
            emulator.stop()


def covered(calls, start, end):
    """Seconds of [start, end] during which at least one call was in flight."""
    spans = sorted((max(c["start"], start), min(c["end"], end)) for c in calls)
    total, cursor = 0.0, start
    for a, b in spans:
        a = max(a, cursor)
        if b > a:
            total += b - a
            cursor = b
    return total


# ---------------------------------------------------------------------------------------------
# Reporting


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(processes):
    samples = [s for p in processes for s in p["samples"]]
    cold = [s for s in samples if s["phase"] == "cold"]
    warm = {t: [s for s in samples if s["phase"] == "warm" and s["request"] == t] for t in ("Create", "Update", "Delete")}

    def ops(group):
        # The operations of the first sample; the table shows min–max when the counts differ.
        counts = [len(s["calls"]) for s in group]
        return {"count": median(counts), "min": min(counts), "max": max(counts),
                "rounds": median([s["rounds"] for s in group]), "waves": group[0]["waves"]}

    return {
        "n_processes": len(processes),
        "init_ms": median([s["init_ms"] for s in cold]),
        "cold_answer_ms": median([s["answer_ms"] for s in cold]),
        "cold_handler_ms": median([s["handler_ms"] for s in cold]),
        "cold_own_ms": median([s["own_ms"] for s in cold]),
        "warm_create_own_ms": median([s["own_ms"] for s in warm["Create"]]),
        "cold_connections": median([s["connections"] for s in cold]),
        "warm_connections": median([s["connections"] for t in warm for s in warm[t]]),
        "aws_call_ms": median([ms for s in samples for ms in s["call_ms"]]),
        "warm_create_ms": median([s["answer_ms"] for s in warm["Create"]]),
        "warm_create_handler_ms": median([s["handler_ms"] for s in warm["Create"]]),
        "warm_update_ms": median([s["answer_ms"] for s in warm["Update"]]),
        "warm_delete_ms": median([s["answer_ms"] for s in warm["Delete"]]),
        "cold_create_calls": ops(cold),
        "calls": {t: ops(g) for t, g in warm.items()},
        "peak_rss_kib": median([p["peak_rss_kib"] for p in processes]),
        "rss_anon_kib": median([p["memory"].get("RssAnon") for p in processes]),
        "rss_file_kib": median([p["memory"].get("RssFile") for p in processes]),
        "threads": median([p["memory"].get("Threads") for p in processes]),
    }


def zipped_size(path):
    with tempfile.TemporaryDirectory() as d:
        target = os.path.join(d, "function.zip")
        if shutil.which("zip"):
            subprocess.run(["zip", "-q", "-9", "-j", target, path], check=True)
        else:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
                z.write(path, "bootstrap")
        return os.path.getsize(target)


def fmt_ms(v):
    return "—" if v is None else (f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms")


def mib(n):
    return f"{n / 1048576:.2f} MiB"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    load = os.getloadavg()
    return (f"{model}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
            f"{mem_kib / 1048576:.0f} GiB RAM, Linux {platform.release()}, load average {load[0]:.2f} at start")


def versions():
    def pkg(name):
        try:
            from importlib.metadata import version
            return version(name)
        except Exception:  # noqa: BLE001
            return "?"
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip() if shutil.which("rustc") else "?"
    return (f"{rustc}; Python {platform.python_version()} (peer: {PEER_VERSION}); boto3 {pkg('boto3')}, "
            f"botocore {pkg('botocore')}, crhelper {pkg('crhelper')}; moto {pkg('moto')}; "
            f"aws-sam-cli {pkg('aws-sam-cli')} (emulator)")


PEER_VERSION = "?"

TARGETS = {
    # figure: (target from issue 12, how to check it against the product's figures)
    "init": "≤ 5 ms",
    "cold_answer": "≤ 50 ms",
    "cold_handler": "≤ warm + 15 ms",
    "warm_create": "≤ peer ÷ 1.5",
    "warm_delete": "≤ peer ÷ 1.5",
    "calls": "≤ 6 / — / 8",
    "rounds": "Create ≤ 4",
    "rss": "≤ 8 MiB",
    "zip": "≤ 3 MB (shipped arm64 artifact)",
}


def table(labels, summaries, sizes):
    cols = labels
    head = "| figure | " + " | ".join(cols) + " | target (issue 12) |"
    rows = [head, "|" + "---|" * (len(cols) + 2)]

    def row(name, values, target=""):
        rows.append(f"| {name} | " + " | ".join(values) + f" | {target} |")

    s = [summaries[c] for c in cols]
    row("cold init", [fmt_ms(x["init_ms"]) for x in s], TARGETS["init"])
    row("cold Create, invoke → answer", [fmt_ms(x["cold_answer_ms"]) for x in s], TARGETS["cold_answer"])
    row("cold Create, handler only", [fmt_ms(x["cold_handler_ms"]) for x in s], TARGETS["cold_handler"])
    row("warm Create, handler only", [fmt_ms(x["warm_create_handler_ms"]) for x in s])
    row("cold Create, function's own time (handler − AWS waits)", [fmt_ms(x["cold_own_ms"]) for x in s])
    row("warm Create, function's own time (handler − AWS waits)", [fmt_ms(x["warm_create_own_ms"]) for x in s])
    row("warm Create, invoke → answer", [fmt_ms(x["warm_create_ms"]) for x in s], TARGETS["warm_create"])
    row("warm Update (rotate), invoke → answer", [fmt_ms(x["warm_update_ms"]) for x in s])
    row("warm Delete, invoke → answer", [fmt_ms(x["warm_delete_ms"]) for x in s], TARGETS["warm_delete"])

    def calls(x):
        parts = []
        for t in ("Create", "Update", "Delete"):
            c = x["calls"][t]
            parts.append(f"{c['count']:g}" if c["min"] == c["max"] else f"{c['min']}–{c['max']}")
        return " / ".join(parts)

    row("AWS calls, Create / Update / Delete", [calls(x) for x in s], TARGETS["calls"])
    row("AWS round trips (critical path), Create / Update / Delete",
        [" / ".join(f"{x['calls'][t]['rounds']:g}" for t in ("Create", "Update", "Delete")) for x in s],
        TARGETS["rounds"])
    row("new connections to AWS, cold Create / warm request",
        [f"{x['cold_connections']:g} / {x['warm_connections']:g}" for x in s])
    row("one AWS call at moto (median, through the proxy)", [fmt_ms(x["aws_call_ms"]) for x in s])
    row("peak RSS (VmHWM)", [mib(x["peak_rss_kib"] * 1024) if x["peak_rss_kib"] else "—" for x in s], TARGETS["rss"])
    row("RSS at the end: anonymous + file-backed; threads",
        [f"{x['rss_anon_kib'] / 1024:.1f} + {x['rss_file_kib'] / 1024:.1f} MiB; {x['threads']:g}"
         if x["rss_anon_kib"] is not None else "—" for x in s])
    row("zip (zip -9 of the bootstrap)",
        [f"{mib(sizes[c][1])} ({sizes[c][1] / 1e6:.2f} MB)" if c in sizes else "—" for c in cols], TARGETS["zip"])
    row("binary", [mib(sizes[c][0]) if c in sizes else "—" for c in cols])
    return "\n".join(rows)


def operations(labels, summaries):
    lines = []
    for label in labels:
        x = summaries[label]
        lines.append(f"{label}:")
        for t in ("Create", "Update", "Delete"):
            c = x["calls"][t]
            chain = " → ".join(" ‖ ".join(w) for w in c["waves"])
            lines.append(f"  {t} ({c['count']:g} calls, {c['rounds']:g} round trips): {chain}")
        c = x["cold_create_calls"]
        chain = " → ".join(" ‖ ".join(w) for w in c["waves"])
        lines.append(f"  cold Create ({c['count']:g} calls, {c['rounds']:g} round trips): {chain}")
    return "\n".join(lines)


def main():
    global PEER_VERSION
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", default=[], metavar="NAME=BOOTSTRAP",
                        help="a product binary to measure (repeatable); default product=target/release/bootstrap")
    parser.add_argument("--legacy-props", action="append", default=[], metavar="NAME",
                        help="a target older than the VerifyKey property: send it none (repeatable)")
    parser.add_argument("--no-peer", action="store_true", help="skip the Python peer")
    parser.add_argument("--peer-only", action="store_true", help="measure only the Python peer")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the interpreter (with crhelper and boto3) that runs the peer")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per function (cold samples)")
    parser.add_argument("--warm-rounds", type=int, default=2, help="Create/Update/Delete rounds per process")
    parser.add_argument("--tls", action="store_true",
                        help="HTTPS everywhere (AWS endpoint and ResponseURL), with a bench CA as the only root")
    parser.add_argument("--roots-file", metavar="PEM",
                        help="without --tls: SSL_CERT_FILE for the product (e.g. the system bundle alone)")
    parser.add_argument("--aws-latency", type=float, default=0.0, metavar="MS",
                        help="delay the proxy adds to every AWS request and new connection (a distant endpoint)")
    parser.add_argument("--out", default=os.path.join(REPO, ".bench"), help="logs and results.json")
    args = parser.parse_args()

    targets = []
    default = [] if args.peer_only else [f"product={os.path.join(REPO, 'target/release/bootstrap')}"]
    for t in args.target or default:
        name, _, path = t.partition("=")
        if not path:
            name, path = "product", name
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            sys.exit(f"{path}: no such executable (build it with cargo build --release)")
        targets.append((name, path))
    if not args.no_peer:
        targets.append(("python-peer", PEER))
    PEER_VERSION = subprocess.run([args.peer_python, "-c", "import platform; print(platform.python_version())"],
                                  capture_output=True, text=True).stdout.strip()
    os.makedirs(args.out, exist_ok=True)
    mach = machine()

    # A SIGTERM still runs the clean-up below (emulators, moto, proxy).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args, args.out)
    bench.start_services()
    results = {label: [] for label, _ in targets}
    try:
        for run in range(args.runs):
            # Interleaved, so that a noisy moment on a shared machine hits every function alike.
            for label, path in targets:
                results[label].append(bench.run_process(label, path, run))
                print(f"  run {run + 1}/{args.runs} {label}: cold Create {results[label][-1]['samples'][0]['answer_ms']:.0f} ms",
                      file=sys.stderr, flush=True)
    finally:
        bench.stop_services()

    labels = [label for label, _ in targets]
    summaries = {label: summarize(results[label]) for label in labels}
    sizes = {label: (os.path.getsize(path), zipped_size(path)) for label, path in targets if label != "python-peer"}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": mach, "versions": versions(), "moto_call_ms": bench.moto_call_ms,
                   "proxy_overhead_ms": bench.proxy_overhead_ms, "targets": dict(targets), "runs": args.runs,
                   "warm_rounds": args.warm_rounds, "summaries": summaries, "raw": results,
                   "sizes": sizes}, f, indent=1)

    print(f"Machine: {mach}")
    print(f"Versions: {versions()}")
    for label, path in targets:
        print(f"{label}: {os.path.relpath(path, REPO) if path.startswith(REPO) else path}")
    print(f"moto: {bench.moto_call_ms:.1f} ms per call (iam:GetUser, direct); the counting proxy adds "
          f"{bench.proxy_overhead_ms:.1f} ms per call"
          + (f" (with --aws-latency {args.aws_latency:g}: a modelled distant endpoint)." if args.aws_latency else "."))
    if args.tls:
        print("TLS: the AWS endpoint (the proxy) and the ResponseURL stand-in speak HTTPS; the bench CA is the "
              "only root (SSL_CERT_FILE, AWS_CA_BUNDLE), so root loading is not in these figures.")
    else:
        print("Plain HTTP to moto; the ResponseURL stand-in is HTTPS for the Python peer (crhelper knows no "
              "other) and HTTP for the product. Roots: "
              + (f"SSL_CERT_FILE={args.roots_file} for the product." if args.roots_file
                 else "the machine's own (no SSL_CERT_FILE)."))
    print(f"Medians of {args.runs} cold starts; warm figures over {args.runs} × {args.warm_rounds} rounds "
          "(portal mode, TrailMode Off, VerifyKey false, Update = KeyVersion change"
          + (f"; no VerifyKey property for {', '.join(args.legacy_props)}" if args.legacy_props else "")
          + ").\n")
    print(table(labels, summaries, sizes))
    print("\nAWS operations per request (‖ = concurrent, → = after):")
    print(operations(labels, summaries))
    print(f"\nLogs and raw samples: {os.path.relpath(args.out, REPO) if args.out.startswith(REPO) else args.out}/")


if __name__ == "__main__":
    main()
