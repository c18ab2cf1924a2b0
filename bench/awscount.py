"""A counting HTTP proxy for AWS calls: point a function's AWS_ENDPOINT_URL at it, and it forwards
every request to the real endpoint (moto server) and records which operation it was and when.

Operations are named `service:Operation`: from the `X-Amz-Target` header (JSON protocols, e.g.
Secrets Manager), else the `Action=` field of a form body (query protocol, e.g. IAM), the
service taken from the SigV4 credential scope in `Authorization`.

Control endpoints (unsigned, under /__awscount/):
  GET  /__awscount/calls   → {"calls": [{"op", "start", "end", "status"}, ...],
                               "connections": [{"start", "end"}, ...]} since the last reset
                              (seconds on the machine's monotonic clock; a connection's end is
                              after its TLS handshake, if any)
  POST /__awscount/reset   → forgets the recorded calls

Standalone:  python awscount.py --upstream http://127.0.0.1:5000 [--port 0] [--tls-cert C --tls-key K]
                               [--latency-ms L]
             (prints "listening on http://127.0.0.1:PORT" once ready)
In Python:   proxy = CountingProxy("http://127.0.0.1:5000"); proxy.start(); proxy.url;
             proxy.reset(); ...; proxy.calls()

`rounds(calls)` is the length of the longest chain of calls each of which started after the
previous one ended: the AWS round trips on the critical path.
"""

import argparse
import http.client
import json
import queue
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CONTROL = "/__awscount/"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def operation(method, path, headers, body):
    """`service:Operation` for one AWS request, or `METHOD /path` if it names none."""
    auth = headers.get("Authorization") or ""
    scope = SCOPE.search(auth)
    service = scope.group(1) if scope else "?"
    target = headers.get("X-Amz-Target")
    if target:
        prefix, _, op = target.rpartition(".")
        return f"{service if scope else prefix}:{op}"
    if body and "x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return f"{service}:{action[0]}"
    query = parse_qs(urlsplit(path).query).get("Action")
    if query:
        return f"{service}:{query[0]}"
    return f"{service}:{method} {urlsplit(path).path}"


def rounds(calls):
    """Longest chain of calls, each starting after the previous one ended."""
    depth = []
    ordered = sorted(calls, key=lambda c: c["start"])
    for i, c in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j]["end"] <= c["start"]]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


def waves(calls):
    """The calls grouped by their depth in the chain (`rounds`): [[op, ...], ...]."""
    ordered = sorted(calls, key=lambda c: c["start"])
    depth = []
    for i, c in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j]["end"] <= c["start"]]
        depth.append(1 + max(before, default=0))
    grouped = {}
    for c, d in zip(ordered, depth):
        grouped.setdefault(d, []).append(c["op"])
    return [grouped[d] for d in sorted(grouped)]


class CountingProxy:
    def __init__(self, upstream, host="127.0.0.1", port=0, tls=None, latency_ms=0.0):
        """`tls`: (certificate chain file, key file) to serve HTTPS instead of HTTP.
        `latency_ms`: added to every request and to every new connection, a crude model of a
        real AWS endpoint's round trip (moto on loopback answers in a few milliseconds)."""
        self.latency = latency_ms / 1000
        split = urlsplit(upstream)
        self.scheme = "https" if tls else "http"
        self.upstream = (split.hostname, split.port or 80)
        self._calls = []
        self._connections = []
        self._lock = threading.Lock()
        self._idle = queue.LifoQueue()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one write, without Nagle: otherwise each answer can wait
            # for the client's delayed ACK (40 ms on Linux), which would dwarf what is measured.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def setup(self):
                start = time.monotonic()
                if proxy.latency:
                    time.sleep(proxy.latency)
                if tls:
                    # The TLS handshake runs here, in the connection's own thread, not in accept().
                    self.request.do_handshake()
                self.connection_record = {"start": start, "end": time.monotonic()}
                proxy._connected(self.connection_record)
                super().setup()

            def _body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status, body, headers=()):
                self.send_response_only(status)  # moto's own Server and Date headers are forwarded
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self._headers_buffer.append(b"\r\n")
                self._headers_buffer.append(body)
                self.flush_headers()

            def _control(self):
                proxy._forget(self.connection_record)  # the harness's own connection is not counted
                if self.command == "GET" and self.path.startswith(CONTROL + "calls"):
                    body = json.dumps({"calls": proxy.calls(), "connections": proxy.connections()}).encode()
                    return self._reply(200, body, [("Content-Type", "application/json")])
                if self.command == "POST" and self.path.startswith(CONTROL + "reset"):
                    proxy.reset()
                    return self._reply(200, b"{}", [("Content-Type", "application/json")])
                return self._reply(404, b"")

            def _forward(self):
                body = self._body()
                if self.path.startswith(CONTROL):
                    return self._control()
                start = time.monotonic()
                if proxy.latency:
                    time.sleep(proxy.latency)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                status, reply_headers, reply = proxy._upstream(self.command, self.path, body, headers)
                end = time.monotonic()
                proxy._record(operation(self.command, self.path, self.headers, body), start, end, status)
                self._reply(status, reply, [(k, v) for k, v in reply_headers
                                            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"])

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            plain_get_request = self.server.get_request

            def get_request():
                sock, addr = plain_get_request()
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            self.server.get_request = get_request

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()

    def reset(self):
        with self._lock:
            self._calls = []
            self._connections = []

    def calls(self):
        with self._lock:
            return list(self._calls)

    def connections(self):
        """Client connections accepted since the last reset: [{"start", "end"}] (end: after the
        TLS handshake, if any)."""
        with self._lock:
            return list(self._connections)

    def _connected(self, record):
        with self._lock:
            self._connections.append(record)

    def _forget(self, record):
        with self._lock:
            self._connections = [c for c in self._connections if c is not record]

    def _record(self, op, start, end, status):
        with self._lock:
            self._calls.append({"op": op, "start": start, "end": end, "status": status})

    def _upstream(self, method, path, body, headers):
        # Keep-alive connections to the upstream, shared by all client connections: a client's new
        # connection then costs what it costs at the upstream itself, not a second connect.
        for attempt in (1, 2):
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                reply = resp.status, resp.getheaders(), resp.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                if attempt == 2:
                    raise
                continue
            self._idle.put(conn)
            return reply
        raise AssertionError("unreachable")

    def prewarm(self, n=8):
        """Opens `n` upstream connections ahead of time."""
        conns = []
        for _ in range(n):
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            conn.connect()
            conns.append(conn)
        for conn in conns:
            self._idle.put(conn)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the real endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="added to every request and every new connection (models a distant endpoint)")
    args = parser.parse_args()
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    proxy = CountingProxy(args.upstream, args.host, args.port, tls, args.latency_ms)
    proxy.prewarm()
    print(f"listening on {proxy.url}", flush=True)
    try:
        proxy.server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
