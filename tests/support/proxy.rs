//! A counting proxy: a plain HTTP/1.1 forwarder on loopback between the SDK (its endpoint URL)
//! and the test binary's moto server, recording each request's AWS operation as
//! `service:Operation` — from `X-Amz-Target` (JSON protocols, such as Secrets Manager) or the
//! `Action=` form field (query protocol, such as IAM); the service from the SigV4 credential
//! scope. The Rust twin of `bench/awscount.py`'s `operation()`.
//!
//! Client connections are kept alive, as the SDK expects; each forwarded request uses a fresh
//! upstream connection (`Connection: close`) and its answer goes back in one write with Nagle
//! off, so the proxy adds no delayed-ACK stalls. An optional latency holds every request before
//! forwarding it, as a distant endpoint would: calls made concurrently then overlap at the proxy
//! however loaded the machine is, which makes round trips countable ([`rounds`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One forwarded request.
#[derive(Clone, Debug)]
pub struct Call {
    /// `service:Operation`.
    pub op: String,
    /// When its request had arrived.
    pub start: Instant,
    /// When its answer was sent back.
    pub end: Instant,
}

/// A running proxy. It lives as long as the test binary (its threads are detached).
pub struct Proxy {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Proxy {
    /// Forwards to `upstream` (`http://host:port`) at once.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::with_latency(upstream, Duration::ZERO)
    }

    /// Forwards to `upstream`, holding each request for `latency` first.
    pub fn with_latency(upstream: &str, latency: Duration) -> Proxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the upstream is plain HTTP")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = calls.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (sink, upstream) = (sink.clone(), upstream.clone());
                std::thread::spawn(move || serve(client, &upstream, latency, &sink));
            }
        });
        Proxy { addr, calls }
    }

    /// The endpoint URL to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The calls answered so far, forgetting them.
    pub fn take(&self) -> Vec<Call> {
        let mut calls = std::mem::take(&mut *self.calls.lock().expect("proxy lock"));
        calls.sort_by_key(|c| c.start);
        calls
    }
}

/// The critical path: the longest chain of calls in which each starts after the previous one
/// ended.
pub fn rounds(calls: &[Call]) -> usize {
    let mut ordered: Vec<&Call> = calls.iter().collect();
    ordered.sort_by_key(|c| c.start);
    let mut depth: Vec<usize> = Vec::with_capacity(ordered.len());
    for (i, call) in ordered.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| ordered[j].end <= call.start)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

/// One parsed HTTP/1.1 message: its head's lines and its body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head with `Connection` and framing headers replaced, then the body.
    fn encode(&self, connection: &str) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let framing = ["connection", "content-length", "transfer-encoding", "keep-alive"];
            if !framing.iter().any(|f| k.eq_ignore_ascii_case(f)) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            self.body.len()
        ));
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn serve(client: TcpStream, upstream: &str, latency: Duration, calls: &Mutex<Vec<Call>>) {
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = client.try_clone() else { return };
    let mut reader = BufReader::new(client);
    // One request after another on the kept-alive connection, until the client closes it.
    while let Some(request) = read_message(&mut reader, false) {
        let start = Instant::now();
        std::thread::sleep(latency);
        let answer = match forward(upstream, &request) {
            Some(answer) => answer.encode("keep-alive"),
            None => b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        };
        // Recorded before the answer leaves: a call the client saw answered is always counted.
        let call = Call {
            op: operation(&request),
            start,
            end: Instant::now(),
        };
        calls.lock().expect("proxy lock").push(call);
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

fn forward(upstream: &str, request: &Message) -> Option<Message> {
    let mut stream = TcpStream::connect(upstream).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    stream.write_all(&request.encode("close")).ok()?;
    read_message(&mut BufReader::new(stream), true)
}

/// Reads one message: the head, then a `Content-Length` or chunked body, or (an answer with
/// neither) everything until the peer closes. `None` at a clean end of the connection.
fn read_message(reader: &mut impl BufRead, answer: bool) -> Option<Message> {
    let mut start = String::new();
    while start.trim().is_empty() {
        start.clear();
        if reader.read_line(&mut start).ok()? == 0 {
            return None;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut message = Message {
        start: start.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        message.body = read_chunks(reader)?;
    } else if let Some(length) = message.header("content-length") {
        let mut body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        message.body = body;
    } else if answer {
        reader.read_to_end(&mut message.body).ok()?;
    }
    Some(message)
}

fn read_chunks(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, if any, up to the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

/// `service:Operation`, or `service:METHOD /path` for a request that names no operation.
fn operation(request: &Message) -> String {
    // `Credential=AKID/20260101/us-east-1/iam/aws4_request`
    let service = request
        .header("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split(['/', ',']).nth(3))
        .unwrap_or("?")
        .to_owned();
    if let Some(target) = request.header("x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target);
        return format!("{service}:{op}");
    }
    let form = request
        .header("content-type")
        .is_some_and(|t| t.contains("x-www-form-urlencoded"));
    let (method, target) = request.start.split_once(' ').unwrap_or((&request.start, ""));
    let path = target.split(' ').next().unwrap_or_default();
    let query = path.split_once('?').map(|(_, q)| q.as_bytes()).unwrap_or_default();
    let action = |bytes: &[u8]| {
        form_urlencoded::parse(bytes)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    let found = if form { action(&request.body) } else { None };
    match found.or_else(|| action(query)) {
        Some(op) => format!("{service}:{op}"),
        None => format!("{service}:{method} {}", path.split('?').next().unwrap_or_default()),
    }
}
