//! Test support for server mode: the proxy in front of the demo server, a
//! raw HTTP/1.1 client over 127.0.0.1 (so a test controls every header and
//! byte, and can hang up on a stream whenever it likes), and MCP client
//! sessions over both transports that gather everything the proxy sends
//! them into one queue.
#![allow(dead_code)]

pub mod modern;

use crate::common::{demo_bin, proxy_bin, sse, Proc, WAIT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// The proxy running the demo server as its default server.
pub struct Proxy {
    pub proc: Proc,
    pub url: String,
}

impl Proxy {
    /// `mcp-proxy --port 0 EXTRA... -- mcp-demo-server`, once every server
    /// is running.
    pub fn start(extra: &[&str]) -> Proxy {
        let mut args = vec!["--port", "0"];
        args.extend_from_slice(extra);
        args.push("--");
        args.push(demo_bin());
        let p = Proxy::start_raw(&args);
        p.wait_ready();
        p
    }

    /// The proxy with exactly these arguments, as soon as it listens (its
    /// servers may still be starting).
    pub fn start_raw(args: &[&str]) -> Proxy {
        let mut proc = Proc::spawn(proxy_bin(), args);
        let url = proc.listening_url();
        Proxy { proc, url }
    }

    /// `GET /readyz`: its status and body.
    pub fn readyz(&self) -> (u16, String) {
        let r = send("GET", &format!("{}/readyz", self.url), &[], None);
        let status = r.status;
        (status, r.text())
    }

    /// Polls /readyz until it answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.readyz();
            if status == 200 {
                return;
            }
            if Instant::now() > deadline {
                panic!("/readyz never answered 200; last: {status} {body}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn status(&self) -> Value {
        let r = send("GET", &format!("{}/status", self.url), &[], None);
        let status = r.status;
        let text = r.text();
        assert_eq!(status, 200, "/status: {text}");
        serde_json::from_str(&text).expect("/status is JSON")
    }

    /// Polls /status until `pred` holds; panics with the last status.
    pub fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("/status never showed {what}; last: {s}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A response whose head has been read; the body is still on the socket.
pub struct Conn {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    sock: TcpStream,
}

fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (host.to_owned(), path.to_owned())
}

/// Sends one request (with `Connection: close`) and reads the response
/// head. A `Host` header in `headers` replaces the default one.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Conn {
    let sock = write_request(method, url, headers, body);
    read_head(sock, &format!("{method} {url}"))
}

/// Writes a request and returns the socket without waiting for an answer.
pub fn write_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TcpStream {
    let (host, path) = split_url(url);
    let sock = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut w = sock.try_clone().unwrap();
    w.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // The server may answer (413) and close before reading it all.
        let _ = w.write_all(b);
    }
    sock
}

/// Reads the status line and headers of the response on `sock`.
pub fn read_head(sock: TcpStream, what: &str) -> Conn {
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: no status line: {e}"));
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Conn {
        status,
        headers,
        reader,
        sock,
    }
}

/// A JSON-RPC POST with the usual headers for Streamable HTTP.
pub fn post_mcp(url: &str, session: Option<&str>, body: &str) -> Conn {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        h.push(("Mcp-Session-Id", s));
    }
    send("POST", url, &h, Some(body.as_bytes()))
}

impl Conn {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_sse(&self) -> bool {
        self.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }

    /// The whole body (Content-Length, chunked, or up to EOF).
    pub fn text(mut self) -> String {
        let mut body = Vec::new();
        if let Some(n) = self
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            body.resize(n, 0);
            self.reader.read_exact(&mut body).unwrap();
        } else if self
            .header("Transfer-Encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut l = String::new();
                self.reader.read_line(&mut l).unwrap();
                let n = usize::from_str_radix(l.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            self.reader.read_to_end(&mut body).unwrap();
        }
        String::from_utf8(body).expect("UTF-8 body")
    }

    pub fn json(self) -> Value {
        let t = self.text();
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("body is not JSON ({e}): {t}"))
    }

    /// Reads the body as an SSE stream on a thread.
    pub fn sse(self) -> Sse {
        assert!(self.is_sse(), "not an SSE response: {:?}", self.headers);
        let sock = self.sock.try_clone().unwrap();
        sock.set_read_timeout(None).unwrap();
        let (tx, rx) = channel();
        let mut reader = self.reader;
        thread::spawn(move || {
            let mut p = sse::Parser::new(64 << 20);
            let mut items = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        p.feed(&buf[..n], &mut items);
                        for it in items.drain(..) {
                            if let sse::Item::Event(e) = it {
                                if tx.send(e).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        });
        Sse { rx, sock }
    }

    /// The raw bytes of the body up to the point where `done` holds on
    /// them; fails after [`WAIT`] naming `what`. The connection stays open
    /// and nothing more is read from it (for streams a test leaves unread).
    pub fn read_until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            if done(&text) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} within {WAIT:?}; got {text:?}");
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.reader.read(&mut buf) {
                Ok(0) => panic!("the stream ended before {what}; got {text:?}"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("no {what} within {WAIT:?} ({e}); got {text:?}"),
            }
        }
    }

    /// The raw bytes of the body received within `d` (for streams).
    pub fn read_for(mut self, d: Duration) -> String {
        self.sock.set_read_timeout(Some(d)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An SSE response being read; `close` hangs up.
pub struct Sse {
    pub rx: Receiver<sse::Event>,
    sock: TcpStream,
}

impl Sse {
    /// The next event, `None` at the end of the stream; panics on timeout.
    pub fn next(&self) -> Option<sse::Event> {
        match self.rx.recv_timeout(WAIT) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no SSE event within {WAIT:?}"),
        }
    }

    /// The next `message` event as JSON.
    pub fn next_json(&self) -> Value {
        loop {
            let e = self.next().expect("the SSE stream ended");
            if e.event == "message" {
                return serde_json::from_str(&e.data).expect("event data is JSON");
            }
        }
    }

    pub fn close(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// Which transport a test session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP+SSE (2024-11-05).
    Legacy,
    /// Streamable HTTP with this protocol version; `json_only` sends
    /// `Accept: application/json` only; `get` opens the GET stream.
    Streamable {
        version: &'static str,
        json_only: bool,
        get: bool,
    },
}

/// One MCP client session. Everything the proxy sends it, on any of its
/// streams or as JSON bodies, lands in `inbox`.
pub struct Session {
    pub kind: Kind,
    base: String,
    post_url: String,
    pub session_id: Option<String>,
    inbox_tx: Sender<Value>,
    pub inbox: Receiver<Value>,
    socks: Vec<TcpStream>,
}

impl Session {
    /// Opens a session and initializes it with `capabilities`.
    pub fn open(base: &str, kind: Kind, name: &str, capabilities: Value) -> Session {
        let (inbox_tx, inbox) = channel();
        let mut s = Session {
            kind,
            base: base.to_owned(),
            post_url: String::new(),
            session_id: None,
            inbox_tx,
            inbox,
            socks: Vec::new(),
        };
        let version = match kind {
            Kind::Legacy => "2024-11-05",
            Kind::Streamable { version, .. } => version,
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": capabilities,
            "clientInfo": {"name": name, "version": "1"}}});
        match kind {
            Kind::Legacy => {
                let c = send(
                    "GET",
                    &format!("{base}/sse"),
                    &[("Accept", "text/event-stream")],
                    None,
                );
                assert_eq!(c.status, 200);
                let sse = c.sse();
                let ev = sse.next().expect("endpoint event");
                assert_eq!(ev.event, "endpoint");
                // The endpoint is a path on the same origin.
                let (host, _) = split_url(base);
                s.post_url = format!("http://{host}{}", ev.data);
                s.pump(sse);
                s.post(&init);
                let r = s.recv_response(&json!(1));
                assert_eq!(r["result"]["protocolVersion"], version, "{r}");
            }
            Kind::Streamable { get, .. } => {
                s.post_url = format!("{base}/mcp");
                let c = post_mcp(&s.post_url, None, &init.to_string());
                assert_eq!(c.status, 200);
                let sid = c.header("Mcp-Session-Id").expect("a session id").to_owned();
                let r = c.json();
                assert_eq!(r["result"]["protocolVersion"], version, "{r}");
                // Answered before open() returns: a POST whose answer is
                // read on a thread may still be on its way when the test's
                // next request (a DELETE) is served on another connection.
                let c = send(
                    "POST",
                    &s.post_url,
                    &[
                        ("Content-Type", "application/json"),
                        ("Accept", "application/json, text/event-stream"),
                        ("MCP-Protocol-Version", version),
                        ("Mcp-Session-Id", &sid),
                    ],
                    Some(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
                );
                let status = c.status;
                assert_eq!(status, 202, "notifications/initialized: {}", c.text());
                s.session_id = Some(sid);
                if get {
                    let c = send(
                        "GET",
                        &s.post_url,
                        &[
                            ("Accept", "text/event-stream"),
                            ("Mcp-Session-Id", s.session_id.as_deref().unwrap()),
                            ("MCP-Protocol-Version", version),
                        ],
                        None,
                    );
                    assert_eq!(c.status, 200, "GET stream");
                    let sse = c.sse();
                    s.pump(sse);
                }
            }
        }
        s
    }

    fn pump(&mut self, sse: Sse) {
        let tx = self.inbox_tx.clone();
        self.socks.push(sse.sock.try_clone().expect("clone socket"));
        thread::spawn(move || {
            for e in sse.rx.iter() {
                if e.event == "message" {
                    let v: Value = serde_json::from_str(&e.data).expect("event data is JSON");
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Sends one message; whatever answer comes back lands in the inbox.
    pub fn post(&mut self, msg: &Value) {
        let body = msg.to_string();
        match self.kind {
            Kind::Legacy => {
                let c = send(
                    "POST",
                    &self.post_url,
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                );
                assert_eq!(c.status, 202, "POST {body}");
            }
            Kind::Streamable {
                version, json_only, ..
            } => {
                let mut h = vec![
                    ("Content-Type", "application/json"),
                    (
                        "Accept",
                        if json_only {
                            "application/json"
                        } else {
                            "application/json, text/event-stream"
                        },
                    ),
                    ("MCP-Protocol-Version", version),
                ];
                let sid = self.session_id.clone().unwrap();
                h.push(("Mcp-Session-Id", &sid));
                // Written now, so messages reach the proxy in order; the
                // answer is read on a thread, as it may take a while.
                let sock = write_request("POST", &self.post_url, &h, Some(body.as_bytes()));
                self.socks.push(sock.try_clone().expect("clone socket"));
                let tx = self.inbox_tx.clone();
                thread::spawn(move || {
                    let c = read_head(sock, "POST");
                    match c.status {
                        202 => {}
                        200 if c.is_sse() => {
                            for e in c.sse().rx.iter() {
                                if e.event == "message" {
                                    let v: Value = serde_json::from_str(&e.data).unwrap();
                                    let _ = tx.send(v);
                                }
                            }
                        }
                        200 => match c.json() {
                            Value::Array(items) => items.into_iter().for_each(|i| {
                                let _ = tx.send(i);
                            }),
                            v => {
                                let _ = tx.send(v);
                            }
                        },
                        s => {
                            let _ = tx.send(json!({"test_error": format!("POST {body}: status {s}: {}", c.text())}));
                        }
                    }
                });
            }
        }
    }

    /// The next message in the inbox; panics after the usual wait.
    pub fn recv(&self) -> Value {
        self.inbox
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{:?}: nothing arrived within {WAIT:?}", self.kind))
    }

    /// Messages until one matches; returns it and the others.
    pub fn recv_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        let mut other = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(v) if pred(&v) => return (v, other),
                Ok(v) => other.push(v),
                Err(_) => panic!("{:?}: no {what} within {WAIT:?}; got {other:?}", self.kind),
            }
        }
    }

    pub fn recv_response(&self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_until(&format!("response {id}"), move |v| {
            v.get("id") == Some(&id) && v.get("method").is_none()
        })
        .0
    }

    /// Everything that arrives until `d` passes without a message.
    pub fn drain_quiet(&self, d: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(v) = self.inbox.recv_timeout(d) {
            out.push(v);
        }
        out
    }

    /// Hangs up every stream of this session.
    pub fn hang_up(&self) {
        for s in &self.socks {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn delete(&self) -> u16 {
        let sid = self.session_id.clone().expect("a Streamable session");
        send("DELETE", &self.post_url, &[("Mcp-Session-Id", &sid)], None).status
    }
}

/// A Streamable HTTP session of revision 2025-06-18, replies as the proxy
/// picks, no GET stream: the plain session most tests need.
pub const STREAMABLE: Kind = Kind::Streamable {
    version: "2025-06-18",
    json_only: false,
    get: false,
};

pub fn req(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn tool(id: Value, name: &str, args: Value) -> Value {
    req(id, "tools/call", json!({"name": name, "arguments": args}))
}

pub fn text_of(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result text in {v}"))
        .to_owned()
}
