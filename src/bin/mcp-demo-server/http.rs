//! The demo server over HTTP: the fake remote that client-mode tests talk to.
//!
//! Serves Streamable HTTP on `/mcp` (POST, GET, DELETE; sessions; JSON or
//! SSE replies; event ids and `Last-Event-ID` replay) and HTTP+SSE on `/sse` and
//! `/messages?session_id=…` (the `endpoint` event, 202 for POSTs), each
//! session backed by its own [`core::Session`]. Fault knobs for tests live
//! under `/admin/`: `expire` (forget every session, so the next request gets
//! 404), `drop` (end every open SSE stream), `fail` (body: a status that every
//! MCP request is answered with; 0 turns it off), `garbage` (a non-JSON event
//! on every stream), `garbage-reply` (the next request's reply is not JSON),
//! `requests` (a JSON log of the method, path and headers of every MCP
//! request, so tests can see what the proxy sent), `init-delay` (body:
//! milliseconds every `initialize` waits before it is answered, so a test
//! can act while a session is still being set up), and `received` (the
//! JSON-RPC methods of the Streamable HTTP POSTs in the order handled).
//! A 2026-07-28 POST (stateless, no session) goes to modern.rs, which has
//! knobs of its own.
//!
//! Threads: the accept loop gives each connection its own thread, which
//! reads requests one after another (keep-alive) and answers each in turn;
//! an SSE response holds its connection's thread until the stream ends or
//! the client goes away (SSE bodies use chunked framing). Plain std
//! networking with a minimal HTTP/1.1 reader: tiny_http's task pool queues
//! a burst of keep-alive connections behind its few idle threads, each
//! blocked on a connection that stays open, so 20 parallel calls stalled
//! (their requests sat unread in the sockets' receive queues).

use crate::core;
use mcp_proxy::jsonrpc::{self, Kind, Message};
use mcp_proxy::sse;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How often an idle SSE stream gets a comment, which is also how soon a
/// writer notices that its client has gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// The `retry` (milliseconds) announced at the start of each SSE stream.
const RETRY_MS: u64 = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyMode {
    /// JSON when the first message for a request is its response, else SSE.
    Auto,
    Json,
    Sse,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub port: u16,
    pub sse: bool,
    pub streamable: bool,
    /// Answer GET /mcp with 405 (no server-initiated stream).
    pub no_get: bool,
    /// Answer GET /mcp with 409 (as if a stream were already open).
    pub get_409: bool,
    pub reply: ReplyMode,
    /// What the `endpoint` event names, in place of `/messages`.
    pub endpoint: Option<String>,
    /// Require HTTP Digest (MD5, qop=auth) with this `user:password`.
    pub digest_auth: Option<String>,
    /// Handle each notification POST only after this delay.
    pub notification_delay: Duration,
}

enum Item {
    Event {
        id: Option<String>,
        data: String,
    },
    Garbage,
    /// A `retry` field (the 2025-11-25 polling hint).
    Retry,
    /// The HTTP+SSE `endpoint` event.
    Endpoint(String),
    End,
}

struct Stream {
    history: Vec<String>,
    sink: Option<Sender<Item>>,
    /// The request whose reply this stream carries; `None` for the GET stream.
    request: Option<String>,
    done: bool,
}

#[derive(Default)]
struct Streams {
    next: u64,
    streams: HashMap<u64, Stream>,
    by_request: HashMap<String, u64>,
    get: Option<u64>,
    /// Unrelated messages waiting for a GET stream.
    unrelated: Vec<String>,
    /// HTTP+SSE: everything goes to the session's one stream.
    legacy: Option<Sender<Item>>,
    closed: bool,
}

impl Streams {
    fn open(&mut self, request: Option<String>, sink: Option<Sender<Item>>) -> u64 {
        self.next += 1;
        let n = self.next;
        if let Some(r) = &request {
            self.by_request.insert(r.clone(), n);
        }
        self.streams.insert(
            n,
            Stream {
                history: Vec::new(),
                sink,
                request,
                done: false,
            },
        );
        n
    }

    fn route(&mut self, related: Option<&str>, line: String) {
        if self.closed {
            return;
        }
        if let Some(tx) = &self.legacy {
            let _ = tx.send(Item::Event {
                id: None,
                data: line,
            });
            return;
        }
        let n = related
            .and_then(|r| self.by_request.get(r).copied())
            .or(self.get);
        let Some(n) = n else {
            self.unrelated.push(line);
            return;
        };
        let s = self.streams.get_mut(&n).expect("routed streams exist");
        let is_final = match (&s.request, Message::parse(&line)) {
            (Some(r), Ok(m)) => m.kind() == Kind::Response && m.id() == Some(r.as_str()),
            _ => false,
        };
        s.history.push(line.clone());
        let id = format!("{n}-{}", s.history.len());
        if is_final {
            s.done = true;
            if let Some(r) = &s.request {
                self.by_request.remove(r);
            }
        }
        if let Some(tx) = &s.sink {
            let ok = tx
                .send(Item::Event {
                    id: Some(id),
                    data: line,
                })
                .is_ok();
            if !ok {
                s.sink = None;
            } else if is_final {
                let _ = tx.send(Item::End);
                s.sink = None;
            }
        }
    }

    fn end_all(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(tx) = s.sink.take() {
                let _ = tx.send(Item::End);
            }
        }
        if let Some(tx) = self.legacy.take() {
            let _ = tx.send(Item::End);
        }
    }

    fn garbage(&mut self) {
        for tx in self
            .streams
            .values()
            .filter_map(|s| s.sink.as_ref())
            .chain(self.legacy.as_ref())
        {
            let _ = tx.send(Item::Garbage);
        }
    }
}

struct HttpSession {
    core: Arc<core::Session>,
    streams: Arc<Mutex<Streams>>,
    legacy: bool,
}

impl HttpSession {
    fn new(cfg: &core::Config, legacy: bool) -> Arc<HttpSession> {
        let streams = Arc::new(Mutex::new(Streams::default()));
        let s2 = streams.clone();
        let out: core::Out = Arc::new(move |related, line| {
            s2.lock().unwrap().route(related, line);
        });
        Arc::new(HttpSession {
            core: core::Session::new(cfg.clone(), out),
            streams,
            legacy,
        })
    }
}

struct Server {
    cfg: core::Config,
    opts: Opts,
    base: String,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    fail: AtomicU16,
    garbage_reply: AtomicBool,
    /// `/admin/init-delay`: milliseconds each `initialize` waits.
    init_delay_ms: std::sync::atomic::AtomicU64,
    tokens: std::sync::atomic::AtomicU64,
    /// `/admin/bearer`: which `Authorization: Bearer` MCP requests need.
    bearer: Mutex<Bearer>,
    /// The one token `Bearer::Latest` accepts: the last one issued, until
    /// `/admin/rotate-token` revokes it.
    accepted_token: Mutex<Option<String>>,
    /// The Digest nonce this server hands out.
    nonce: String,
    log: Mutex<Vec<Value>>,
    /// JSON-RPC methods of the Streamable HTTP POSTs, in the order handled.
    received: Mutex<Vec<String>>,
    /// 2026-07-28 (modern.rs of this binary): `/admin/header-rename`,
    /// `/admin/break-modern`, `tools/list` paging, the open
    /// `subscriptions/listen` streams and the ids whose client went away
    /// before their response.
    modern: crate::modern::State,
}

/// What the MCP endpoints ask of a Bearer token (OAuth tests).
#[derive(Clone, Copy, PartialEq)]
enum Bearer {
    /// Anything goes.
    Off,
    /// Only the token `/oauth/token` issued last, unless revoked.
    Latest,
    /// Every request is refused with 401.
    Never,
}

/// One HTTP request, read whole.
pub struct Req {
    pub method: String,
    pub url: String,
    /// The client's port: requests on one kept-alive connection share it.
    pub peer: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answering side of a connection.
pub type Conn = TcpStream;

/// Largest request body the demo reads (the proxy sends up to 32 MiB).
const MAX_BODY_BYTES: usize = 64 << 20;

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let url = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if len > MAX_BODY_BYTES {
        return None;
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let peer = r.get_ref().peer_addr().map_or(0, |a| a.port());
    Some(Req {
        method,
        url,
        peer,
        headers,
        body,
    })
}

pub fn run(cfg: core::Config, opts: Opts) {
    let listener = TcpListener::bind(("127.0.0.1", opts.port)).unwrap_or_else(|e| {
        eprintln!("demo: cannot listen on 127.0.0.1:{}: {e}", opts.port);
        std::process::exit(1);
    });
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let base = format!("http://{addr}");
    eprintln!("demo: listening on {base}");
    let srv = Arc::new(Server {
        cfg,
        opts,
        base,
        sessions: Mutex::new(HashMap::new()),
        fail: AtomicU16::new(0),
        garbage_reply: AtomicBool::new(false),
        init_delay_ms: std::sync::atomic::AtomicU64::new(0),
        tokens: std::sync::atomic::AtomicU64::new(0),
        bearer: Mutex::new(Bearer::Off),
        accepted_token: Mutex::new(None),
        nonce: mcp_proxy::util::random_hex(16),
        log: Mutex::new(Vec::new()),
        received: Mutex::new(Vec::new()),
        modern: Default::default(),
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        // Small writes (a response head, one SSE event) must leave at once,
        // not wait for the peer's delayed ACK.
        let _ = conn.set_nodelay(true);
        let srv = srv.clone();
        thread::spawn(move || {
            let Ok(mut w) = conn.try_clone() else { return };
            let mut r = BufReader::new(conn);
            while let Some(req) = read_request(&mut r) {
                srv.handle(req, &mut w);
            }
        });
    }
}

pub fn header<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub fn respond(w: &mut Conn, status: u16, ctype: &str, body: String, extra: &[(&str, &str)]) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    if !ctype.is_empty() {
        head.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = w
        .write_all(head.as_bytes())
        .and_then(|_| w.write_all(body.as_bytes()))
        .and_then(|_| w.flush());
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let q = url.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Writes an SSE response on the raw connection: headers, `preamble`
/// (events already due), then whatever arrives on `rx` until `End`, the
/// sender going away, or a failed write (the client left).
fn serve_sse(w: &mut Conn, extra: &[(&str, &str)], preamble: Vec<Item>, rx: Receiver<Item>) {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n",
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if w.write_all(head.as_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return;
    }
    let chunk = |w: &mut Conn, bytes: &[u8]| -> std::io::Result<()> {
        w.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
        w.write_all(bytes)?;
        w.write_all(b"\r\n")?;
        w.flush()
    };
    let mut pending: std::collections::VecDeque<Item> = preamble.into();
    loop {
        let item = match pending.pop_front() {
            Some(i) => i,
            None => match rx.recv_timeout(KEEPALIVE_INTERVAL) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => {
                    if chunk(w, b": keepalive\n\n").is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => Item::End,
            },
        };
        let mut buf = Vec::new();
        match item {
            Item::Event { id, data } => {
                sse::encode_event(&mut buf, Some("message"), id.as_deref(), &data)
            }
            Item::Garbage => buf.extend_from_slice(b"event: message\ndata: this is not json\n\n"),
            Item::Retry => buf.extend_from_slice(format!("retry: {RETRY_MS}\n\n").as_bytes()),
            Item::Endpoint(e) => sse::encode_event(&mut buf, Some("endpoint"), None, &e),
            Item::End => {
                let _ = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush());
                return;
            }
        }
        if chunk(w, &buf).is_err() {
            return;
        }
    }
}

fn err_body(code: i64, msg: &str) -> String {
    jsonrpc::error_body(None, code, msg)
}

impl Server {
    fn handle(self: &Arc<Self>, req: Req, w: &mut Conn) {
        let url = req.url.clone();
        let path = url.split('?').next().unwrap_or("").to_owned();
        let method = req.method.clone();
        if let Some(knob) = path.strip_prefix("/admin/") {
            return self.admin(&req, w, knob);
        }
        if path == "/oauth/token" {
            return self.token(&req, w);
        }
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        self.log
            .lock()
            .unwrap()
            .push(json!({"method": method, "path": path, "headers": headers, "peer": req.peer}));
        if let Some(creds) = &self.opts.digest_auth {
            if !self.digest_ok(&req, creds) {
                let challenge = format!(
                    "Digest realm=\"demo\", qop=\"auth\", nonce=\"{}\", opaque=\"demo-opaque\", algorithm=MD5",
                    self.nonce
                );
                return respond(
                    w,
                    401,
                    "text/plain",
                    "digest authentication required".into(),
                    &[("WWW-Authenticate", &challenge)],
                );
            }
        }
        if !self.bearer_ok(&req) {
            return respond(
                w,
                401,
                "text/plain",
                "demo: bearer token refused".into(),
                &[("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
            );
        }
        let fail = self.fail.load(Ordering::SeqCst);
        if fail != 0 {
            return respond(w, fail, "text/plain", "demo: failing as asked".into(), &[]);
        }
        match (method.as_str(), path.as_str()) {
            (_, "/mcp") if self.opts.streamable => match method.as_str() {
                "POST" => self.mcp_post(&req, w),
                "GET" => self.mcp_get(&req, w),
                "DELETE" => self.mcp_delete(&req, w),
                _ => respond(
                    w,
                    405,
                    "text/plain",
                    "method not allowed".into(),
                    &[("Allow", "GET, POST, DELETE")],
                ),
            },
            ("GET", "/sse") if self.opts.sse => self.sse_get(w),
            (_, "/sse") if self.opts.sse => respond(
                w,
                405,
                "text/plain",
                "method not allowed".into(),
                &[("Allow", "GET")],
            ),
            ("POST", "/messages") if self.opts.sse => self.sse_post(&req, w, &url),
            _ => respond(w, 404, "text/plain", "not found".into(), &[]),
        }
    }

    fn admin(&self, req: &Req, w: &mut Conn, knob: &str) {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        match knob {
            "expire" => {
                let old: Vec<_> = self.sessions.lock().unwrap().drain().collect();
                for (_, s) in old {
                    let mut st = s.streams.lock().unwrap();
                    st.end_all();
                    st.closed = true;
                }
            }
            "drop" => {
                let all: Vec<_> = self.sessions.lock().unwrap().values().cloned().collect();
                for s in all {
                    s.streams.lock().unwrap().end_all();
                }
            }
            "fail" => self
                .fail
                .store(body.trim().parse().unwrap_or(0), Ordering::SeqCst),
            "garbage" => {
                let all: Vec<_> = self.sessions.lock().unwrap().values().cloned().collect();
                for s in all {
                    s.streams.lock().unwrap().garbage();
                }
            }
            "garbage-reply" => self.garbage_reply.store(true, Ordering::SeqCst),
            "init-delay" => self
                .init_delay_ms
                .store(body.trim().parse().unwrap_or(0), Ordering::SeqCst),
            "header-rename" | "break-modern" | "list-changed" | "end-listen" | "modern-closed"
            | "list-page-size" | "list-hold" | "list-fail" | "list-loop" | "list-cursors" => {
                if let Some(reply) = crate::modern::admin(&self.modern, knob, &body) {
                    return respond(w, 200, "application/json", reply, &[]);
                }
            }
            "received" => {
                let log = json!(self.received.lock().unwrap().clone());
                return respond(w, 200, "application/json", log.to_string(), &[]);
            }
            "bearer" => {
                *self.bearer.lock().unwrap() = match body.trim() {
                    "latest" => Bearer::Latest,
                    "never" => Bearer::Never,
                    _ => Bearer::Off,
                }
            }
            "rotate-token" => *self.accepted_token.lock().unwrap() = None,
            "tokens" => {
                let n = self.tokens.load(Ordering::SeqCst);
                return respond(w, 200, "text/plain", n.to_string(), &[]);
            }
            "requests" => {
                let log = Value::Array(self.log.lock().unwrap().clone());
                return respond(w, 200, "application/json", log.to_string(), &[]);
            }
            _ => return respond(w, 404, "text/plain", "no such knob".into(), &[]),
        }
        respond(w, 200, "text/plain", "ok".into(), &[])
    }

    /// Whether the request's Bearer token passes `/admin/bearer`.
    fn bearer_ok(&self, req: &Req) -> bool {
        match *self.bearer.lock().unwrap() {
            Bearer::Off => true,
            Bearer::Never => false,
            Bearer::Latest => {
                let sent = header(req, "authorization").and_then(|a| a.strip_prefix("Bearer "));
                sent.is_some() && sent == self.accepted_token.lock().unwrap().as_deref()
            }
        }
    }

    /// An OAuth2 token endpoint (client credentials): any Basic-authenticated
    /// client gets `demo-token-N`; the grant is echoed in the request log.
    fn token(&self, req: &Req, w: &mut Conn) {
        let basic = header(req, "authorization").is_some_and(|a| a.starts_with("Basic "));
        let body = String::from_utf8_lossy(&req.body);
        if !basic || body.trim() != "grant_type=client_credentials" {
            return respond(
                w,
                401,
                "application/json",
                r#"{"error":"invalid_client"}"#.into(),
                &[],
            );
        }
        let n = self.tokens.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("demo-token-{n}");
        *self.accepted_token.lock().unwrap() = Some(token.clone());
        let reply = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        respond(w, 200, "application/json", reply.to_string(), &[])
    }

    /// Checks a Digest `Authorization` against `user:password`.
    fn digest_ok(&self, req: &Req, creds: &str) -> bool {
        use mcp_proxy::client::digest::{md5_hex, params_of};
        let Some(auth) = header(req, "authorization").and_then(|a| a.strip_prefix("Digest "))
        else {
            return false;
        };
        let p: HashMap<String, String> = params_of(auth).into_iter().collect();
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
        let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
        if get("username") != user || get("nonce") != self.nonce || get("uri") != req.url {
            return false;
        }
        let ha1 = md5_hex(format!("{user}:{}:{pass}", get("realm")).as_bytes());
        let ha2 = md5_hex(format!("{}:{}", req.method, get("uri")).as_bytes());
        let want = md5_hex(
            format!(
                "{ha1}:{}:{}:{}:auth:{ha2}",
                get("nonce"),
                get("nc"),
                get("cnonce")
            )
            .as_bytes(),
        );
        get("qop") == "auth" && get("response") == want
    }

    fn session(&self, id: Option<&str>) -> Option<Arc<HttpSession>> {
        self.sessions.lock().unwrap().get(id?).cloned()
    }

    // ---- Streamable HTTP ----

    fn mcp_post(self: &Arc<Self>, req: &Req, w: &mut Conn) {
        let accept = header(req, "accept").unwrap_or("").to_ascii_lowercase();
        if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
            return respond(
                w,
                406,
                "application/json",
                err_body(
                    -32000,
                    "Not Acceptable: Accept must list application/json and text/event-stream",
                ),
                &[],
            );
        }
        let ctype = header(req, "content-type").unwrap_or("");
        if !ctype.to_ascii_lowercase().starts_with("application/json") {
            return respond(
                w,
                415,
                "application/json",
                err_body(-32000, "Unsupported Media Type: use application/json"),
                &[],
            );
        }
        if let Some(msg) = crate::modern::is_modern(req) {
            return crate::modern::post(&self.modern, &self.cfg, req, w, msg);
        }
        if let Some(v) = header(req, "mcp-protocol-version").map(str::to_owned) {
            if !core::VERSIONS.contains(&v.as_str()) {
                return respond(
                    w,
                    400,
                    "application/json",
                    err_body(-32000, &format!("Unsupported protocol version: {v}")),
                    &[],
                );
            }
        }
        let Ok(body) = String::from_utf8(req.body.clone()) else {
            return respond(
                w,
                400,
                "application/json",
                err_body(jsonrpc::PARSE_ERROR, "Parse error: body is not UTF-8"),
                &[],
            );
        };
        let msg = match Message::parse(&body) {
            Ok(m) => m,
            Err(e) => {
                return respond(
                    w,
                    400,
                    "application/json",
                    jsonrpc::error_body(e.id(), e.code(), &e.to_string()),
                    &[],
                )
            }
        };
        if msg.kind() == Kind::Notification {
            // A server that is slow with notifications: what it handles next
            // shows whether the client waited for this one.
            thread::sleep(self.opts.notification_delay);
        }
        self.received
            .lock()
            .unwrap()
            .push(msg.method().unwrap_or("(response)").to_owned());
        let sid_header = header(req, "mcp-session-id").map(str::to_owned);
        let (session, sid) = if msg.method() == Some("initialize") {
            let ms = self.init_delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                thread::sleep(Duration::from_millis(ms));
            }
            let sid = mcp_proxy::util::random_hex(16);
            let s = HttpSession::new(&self.cfg, false);
            self.sessions.lock().unwrap().insert(sid.clone(), s.clone());
            (s, sid)
        } else {
            let Some(sid) = sid_header else {
                return respond(
                    w,
                    400,
                    "application/json",
                    err_body(-32000, "Bad Request: Mcp-Session-Id header is required"),
                    &[],
                );
            };
            match self.session(Some(&sid)) {
                Some(s) if !s.legacy => (s, sid),
                _ => {
                    return respond(
                        w,
                        404,
                        "application/json",
                        err_body(-32001, "Session not found"),
                        &[],
                    )
                }
            }
        };
        if msg.kind() != Kind::Request {
            session.core.handle(msg);
            return respond(w, 202, "", String::new(), &[]);
        }
        let id = msg.id().expect("requests have ids").to_owned();
        let (tx, rx) = channel();
        let n = session
            .streams
            .lock()
            .unwrap()
            .open(Some(id.clone()), Some(tx));
        session.core.handle(msg);
        let first = match rx.recv() {
            Ok(i) => i,
            Err(_) => {
                return respond(
                    w,
                    404,
                    "application/json",
                    err_body(-32001, "Session not found"),
                    &[],
                )
            }
        };
        let sid_hdr = [("Mcp-Session-Id", sid.as_str())];
        if self.garbage_reply.swap(false, Ordering::SeqCst) {
            return respond(
                w,
                200,
                "application/json",
                "this is not json {".into(),
                &sid_hdr,
            );
        }
        let final_first = match &first {
            Item::Event { data, .. } => Message::parse(data)
                .map(|m| m.kind() == Kind::Response && m.id() == Some(id.as_str()))
                .unwrap_or(false),
            _ => false,
        };
        let json = match self.opts.reply {
            ReplyMode::Json => true,
            ReplyMode::Sse => false,
            ReplyMode::Auto => final_first,
        };
        if json {
            // Everything else for this request (in Json mode) waits for the
            // response; the reply body is the response alone.
            let mut item = first;
            loop {
                match item {
                    Item::Event { data, .. } => {
                        let m = Message::parse(&data);
                        if matches!(&m, Ok(m) if m.kind() == Kind::Response && m.id() == Some(id.as_str()))
                        {
                            return respond(w, 200, "application/json", data, &sid_hdr);
                        }
                        eprintln!("demo: json reply mode drops {data}");
                    }
                    Item::End => {
                        return respond(
                            w,
                            404,
                            "application/json",
                            err_body(-32001, "Session not found"),
                            &[],
                        )
                    }
                    Item::Garbage | Item::Retry | Item::Endpoint(_) => {}
                }
                item = match rx.recv() {
                    Ok(i) => i,
                    Err(_) => {
                        return respond(
                            w,
                            404,
                            "application/json",
                            err_body(-32001, "Session not found"),
                            &[],
                        )
                    }
                };
            }
        }
        let priming = Item::Event {
            id: Some(format!("{n}-0")),
            data: String::new(),
        };
        serve_sse(
            w,
            &[("Mcp-Session-Id", &sid)],
            vec![Item::Retry, priming, first],
            rx,
        );
    }

    fn mcp_get(&self, req: &Req, w: &mut Conn) {
        let accept = header(req, "accept").unwrap_or("").to_ascii_lowercase();
        if !accept.contains("text/event-stream") {
            return respond(
                w,
                406,
                "application/json",
                err_body(-32000, "Not Acceptable: use text/event-stream"),
                &[],
            );
        }
        let Some(s) = self
            .session(header(req, "mcp-session-id"))
            .filter(|s| !s.legacy)
        else {
            let code = if header(req, "mcp-session-id").is_some() {
                404
            } else {
                400
            };
            return respond(
                w,
                code,
                "application/json",
                err_body(-32001, "Session not found"),
                &[],
            );
        };
        let last = header(req, "last-event-id").map(str::to_owned);
        if self.opts.no_get && last.is_none() {
            return respond(
                w,
                405,
                "text/plain",
                "no server-initiated stream".into(),
                &[("Allow", "POST, DELETE")],
            );
        }
        if self.opts.get_409 && last.is_none() {
            return respond(
                w,
                409,
                "application/json",
                err_body(-32000, "Conflict: a stream is already open"),
                &[],
            );
        }
        let (tx, rx) = channel();
        let mut st = s.streams.lock().unwrap();
        let mut preamble = vec![Item::Retry];
        match last {
            Some(last) => {
                let parsed = last
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)));
                let Some((n, seq)) = parsed.filter(|(n, _)| st.streams.contains_key(n)) else {
                    drop(st);
                    return respond(
                        w,
                        400,
                        "application/json",
                        err_body(-32000, "unknown Last-Event-ID"),
                        &[],
                    );
                };
                let stream = st.streams.get_mut(&n).expect("checked above");
                for (i, line) in stream.history.iter().enumerate().skip(seq) {
                    preamble.push(Item::Event {
                        id: Some(format!("{n}-{}", i + 1)),
                        data: line.clone(),
                    });
                }
                if stream.done {
                    preamble.push(Item::End);
                } else {
                    if let Some(old) = stream.sink.replace(tx) {
                        let _ = old.send(Item::End);
                    }
                }
            }
            None => {
                let n = match st.get {
                    Some(n) => n,
                    None => {
                        let n = st.open(None, None);
                        st.get = Some(n);
                        n
                    }
                };
                preamble.push(Item::Event {
                    id: Some(format!("{n}-0")),
                    data: String::new(),
                });
                let waiting = std::mem::take(&mut st.unrelated);
                let stream = st.streams.get_mut(&n).expect("the GET stream exists");
                if let Some(old) = stream.sink.replace(tx) {
                    let _ = old.send(Item::End);
                }
                drop(st);
                for line in waiting {
                    s.streams.lock().unwrap().route(None, line);
                }
                return serve_sse(w, &[], preamble, rx);
            }
        }
        drop(st);
        serve_sse(w, &[], preamble, rx);
    }

    fn mcp_delete(&self, req: &Req, w: &mut Conn) {
        let sid = header(req, "mcp-session-id").map(str::to_owned);
        let s = sid.and_then(|sid| self.sessions.lock().unwrap().remove(&sid));
        match s {
            Some(s) => {
                let mut st = s.streams.lock().unwrap();
                st.end_all();
                st.closed = true;
                eprintln!("demo: session deleted");
                respond(w, 200, "", String::new(), &[])
            }
            None => respond(
                w,
                404,
                "application/json",
                err_body(-32001, "Session not found"),
                &[],
            ),
        }
    }

    // ---- HTTP+SSE (2024-11-05) ----

    fn sse_get(&self, w: &mut Conn) {
        let sid = mcp_proxy::util::random_hex(16);
        let s = HttpSession::new(&self.cfg, true);
        let (tx, rx) = channel();
        s.streams.lock().unwrap().legacy = Some(tx);
        self.sessions.lock().unwrap().insert(sid.clone(), s.clone());
        let endpoint = match &self.opts.endpoint {
            Some(e) => format!("{e}?session_id={sid}"),
            None => format!("/messages?session_id={sid}"),
        };
        let _ = &self.base;
        let pre = vec![Item::Endpoint(endpoint)];
        serve_sse(w, &[], pre, rx);
        // The stream is gone: so is the session (as the SDK servers do).
        let mut map = self.sessions.lock().unwrap();
        if map.get(&sid).is_some_and(|x| Arc::ptr_eq(x, &s)) {
            map.remove(&sid);
        }
        drop(map);
        s.streams.lock().unwrap().closed = true;
    }

    fn sse_post(&self, req: &Req, w: &mut Conn, url: &str) {
        let Some(s) = self
            .session(query_param(url, "session_id"))
            .filter(|s| s.legacy)
        else {
            return respond(w, 404, "text/plain", "Could not find session".into(), &[]);
        };
        let Ok(body) = String::from_utf8(req.body.clone()) else {
            return respond(w, 400, "text/plain", "body is not UTF-8".into(), &[]);
        };
        match Message::parse(&body) {
            Ok(m) => {
                s.core.handle(m);
                respond(w, 202, "text/plain", "Accepted".into(), &[])
            }
            Err(e) => respond(
                w,
                400,
                "text/plain",
                format!("Could not parse message: {e}"),
                &[],
            ),
        }
    }
}
