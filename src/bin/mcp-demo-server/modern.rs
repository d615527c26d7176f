//! The demo's 2026-07-28 ("modern", stateless) side of `/mcp`: a strict
//! modern server for the client-mode tests (TRANSPORTS §5).
//!
//! A POST whose body names a modern version in `_meta` (or, without a
//! session, whose `MCP-Protocol-Version` does) is served with no session.
//! Its headers are checked as a strict server must (SX-20..SX-27): 400 with
//! -32020 and the request id for a missing or mismatched header (values
//! decoded from `=?base64?…?=` first), -32022 for a version other than
//! 2026-07-28, -32602 for a missing `_meta` version. It then runs on a
//! [`core::Session`] of its own; the reply is JSON when the first message is
//! the response (-32601 as 404, SX-22), else SSE (SX-06). `tools/list`
//! adds the `x-mcp-header` tools (`core::modern_tools`), and `mirror` is
//! answered here with its arguments. `subscriptions/listen` is acknowledged
//! (LC-81) and stays open.
//!
//! Admin knobs: `header-rename` (mirror's region header becomes `Zone`, so
//! a client's cached schema is stale), `break-modern` (the next modern SSE
//! stream breaks after its first event), `list-changed` (every open listen
//! stream gets `notifications/tools/list_changed`), `end-listen` (every
//! listen stream ends: with a `complete` result, or with body `cancel`,
//! with `notifications/cancelled` naming it, LC-42/LC-83), `modern-closed` (a JSON
//! list of the ids whose client closed the connection before the response:
//! the cancels of SX-10, after which the request is cancelled in the core),
//! `list-page-size` (body: how many tools each `tools/list` page holds,
//! with an opaque `nextCursor` to the next; 0, the default, lists all at
//! once; an unknown cursor gets -32602), `list-cursors` (a JSON list of the
//! `params.cursor` of every modern `tools/list`, in order, null where it had
//! none), `list-hold` (a `tools/list` with a cursor is never answered;
//! only the client's close ends it), `list-fail` (body: an HTTP status that
//! a `tools/list` with a cursor is answered with; 0 turns it off) and
//! `list-loop` (the last page's `nextCursor` leads back to the first, so
//! the listing never ends).
//!
//! Threads: none of its own. Each request runs on its connection's thread,
//! which polls the socket while it waits, so that a client's close is seen
//! even before anything is written.

use crate::core;
use crate::http::{header, reason, respond, Conn, Req};
use mcp_proxy::jsonrpc::{self, Kind, Message};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODERN: &str = "2026-07-28";
const META: &str = "io.modelcontextprotocol/protocolVersion";
const HEADER_MISMATCH: i64 = -32020;
/// How often a waiting request checks whether its client went away.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Comment keep-alives on an idle modern SSE stream (SX-08).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct State {
    renamed: AtomicBool,
    break_next: AtomicBool,
    listeners: Mutex<Vec<(String, Sender<String>)>>,
    closed: Mutex<Vec<String>>,
    page_size: AtomicUsize,
    cursors: Mutex<Vec<Value>>,
    hold_pages: AtomicBool,
    fail_pages: AtomicU16,
    loop_pages: AtomicBool,
}

/// The request, when the POST is a modern one.
pub fn is_modern(req: &Req) -> Option<Message> {
    let m = Message::parse(std::str::from_utf8(&req.body).ok()?).ok()?;
    let modern = |v: Option<&str>| v.is_some_and(|v| !core::VERSIONS.contains(&v));
    let by_header =
        modern(header(req, "mcp-protocol-version")) && header(req, "mcp-session-id").is_none();
    (modern(m.value()["params"]["_meta"][META].as_str()) || by_header).then_some(m)
}

/// An admin knob; `Some` is a JSON body to answer with.
pub fn admin(st: &State, knob: &str, body: &str) -> Option<String> {
    match knob {
        "header-rename" => st.renamed.store(true, Ordering::SeqCst),
        "break-modern" => st.break_next.store(true, Ordering::SeqCst),
        "list-page-size" => st
            .page_size
            .store(body.trim().parse().unwrap_or(0), Ordering::SeqCst),
        "list-hold" => st.hold_pages.store(true, Ordering::SeqCst),
        "list-fail" => st
            .fail_pages
            .store(body.trim().parse().unwrap_or(0), Ordering::SeqCst),
        "list-loop" => st.loop_pages.store(true, Ordering::SeqCst),
        "list-cursors" => return Some(json!(*st.cursors.lock().unwrap()).to_string()),
        "list-changed" => {
            for (id, tx) in st.listeners.lock().unwrap().iter() {
                let n = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                    "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id_value(id)}}});
                let _ = tx.send(n.to_string());
            }
        }
        "end-listen" => {
            for (id, tx) in st.listeners.lock().unwrap().drain(..) {
                let sub = json!({"io.modelcontextprotocol/subscriptionId": id_value(&id)});
                let end = if body.trim() == "cancel" {
                    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": id_value(&id)}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id_value(&id),
                        "result": {"resultType": "complete", "_meta": sub}})
                };
                let _ = tx.send(end.to_string());
                // Closes the stream after a cancel (no response follows).
                let _ = tx.send(String::new());
            }
        }
        _ => return Some(json!(*st.closed.lock().unwrap()).to_string()),
    }
    None
}

fn id_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

/// `=?base64?…?=` decoded (None when malformed); other values as they are.
fn decode(v: &str) -> Option<String> {
    let Some(b64) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_owned());
    };
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in b64.trim_end_matches('=').bytes() {
        acc = acc << 6 | T.iter().position(|t| *t == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// Why the headers do not match the body (SX-27), if they do not.
fn mismatch(st: &State, req: &Req, m: &Message, version: &str) -> Option<String> {
    let is = |name: &str, want: &str| header(req, name).and_then(decode).as_deref() == Some(want);
    let method = m.method().unwrap_or("");
    let p = &m.value()["params"];
    if !is("mcp-protocol-version", version) {
        return Some("MCP-Protocol-Version is missing or differs from _meta".into());
    }
    if !is("mcp-method", method) {
        return Some("Mcp-Method is missing or differs from the method".into());
    }
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    if !is("mcp-name", p[key].as_str().unwrap_or("")) {
        return Some(format!("Mcp-Name is missing or differs from params.{key}"));
    }
    let tools = core::modern_tools(st.renamed.load(Ordering::SeqCst));
    let tool = tools.iter().find(|t| t["name"] == p["name"])?;
    for (prop, schema) in tool["inputSchema"]["properties"].as_object()? {
        let (Some(token), Some(v)) = (schema["x-mcp-header"].as_str(), p["arguments"].get(prop))
        else {
            continue;
        };
        let sent = header(req, &format!("mcp-param-{token}")).and_then(decode);
        let ok = match v {
            Value::Null => true,
            Value::String(s) => sent.as_deref() == Some(s),
            // Integers compare numerically (SX-27).
            Value::Number(n) => sent.and_then(|s| s.parse::<f64>().ok()) == n.as_f64(),
            other => sent == Some(other.to_string()),
        };
        if !ok {
            return Some(format!(
                "Mcp-Param-{token} is missing or differs from {prop}"
            ));
        }
    }
    None
}

pub fn post(st: &State, cfg: &core::Config, req: &Req, w: &mut Conn, msg: Message) {
    let (Kind::Request, Some(id)) = (msg.kind(), msg.id().map(str::to_owned)) else {
        return respond(w, 202, "", String::new(), &[]);
    };
    let refuse = |w: &mut Conn, code: i64, text: &str, data: Option<Value>| {
        let body = jsonrpc::error_reply(Some(&id), code, text, data.as_ref());
        respond(w, 400, "application/json", body, &[])
    };
    let Some(version) = msg.value()["params"]["_meta"][META].as_str() else {
        return refuse(
            w,
            jsonrpc::INVALID_PARAMS,
            "Invalid params: _meta has no protocolVersion",
            None,
        );
    };
    if let Some(why) = mismatch(st, req, &msg, version) {
        return refuse(w, HEADER_MISMATCH, &format!("HeaderMismatch: {why}"), None);
    }
    if version != MODERN {
        let data = json!({"supported": [MODERN], "requested": version});
        return refuse(w, -32022, "Unsupported protocol version", Some(data));
    }
    let (tx, rx) = channel::<String>();
    let p = &msg.value()["params"];
    let mut session = None;
    match msg.method().unwrap_or("") {
        "tools/list" => {
            let cursor = &p["cursor"];
            st.cursors.lock().unwrap().push(cursor.clone());
            let fail = st.fail_pages.load(Ordering::SeqCst);
            if fail != 0 && !cursor.is_null() {
                let text = "demo: failing tools/list pages as asked".to_owned();
                return respond(w, fail, "text/plain", text, &[]);
            }
            let tools = core::modern_tools(st.renamed.load(Ordering::SeqCst));
            let size = st.page_size.load(Ordering::SeqCst);
            let Some(mut page) = page(tools, cursor, size) else {
                let text = "Invalid params: unknown cursor";
                return refuse(w, jsonrpc::INVALID_PARAMS, text, None);
            };
            if size != 0 && page["nextCursor"].is_null() && st.loop_pages.load(Ordering::SeqCst) {
                page["nextCursor"] = json!(cursor_at(0));
            }
            // A held page is never answered: the loop below waits for the
            // client to close.
            if cursor.is_null() || !st.hold_pages.load(Ordering::SeqCst) {
                let _ = tx.send(jsonrpc::result_reply(&id, &page.to_string()));
            }
        }
        "tools/call" if p["name"] == "mirror" => {
            let text = p["arguments"].to_string();
            let r = json!({"content": [{"type": "text", "text": text}]});
            let _ = tx.send(jsonrpc::result_reply(&id, &r.to_string()));
        }
        "server/discover" => {
            let r = json!({"supportedVersions": [MODERN], "capabilities": {"tools": {"listChanged": true}}});
            let _ = tx.send(jsonrpc::result_reply(&id, &r.to_string()));
        }
        "subscriptions/listen" => {
            let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id_value(&id)}, "toolsListChanged": true}});
            let _ = tx.send(ack.to_string());
            st.listeners.lock().unwrap().push((id.clone(), tx.clone()));
        }
        _ => {
            let out_tx = Mutex::new(tx.clone());
            let out: core::Out = Arc::new(move |_, line| {
                let _ = out_tx.lock().unwrap().send(line);
            });
            let s = core::Session::new(cfg.clone(), out);
            s.handle(msg.clone());
            session = Some(s);
        }
    }
    let gone = || {
        st.closed.lock().unwrap().push(id.clone());
        st.listeners.lock().unwrap().retain(|(l, _)| *l != id);
        if let Some(s) = &session {
            let c = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id_value(&id)}});
            s.handle(Message::ours(c.to_string()));
        }
        eprintln!("demo: the client closed request {id} before its response");
    };
    let mut sse = false;
    let mut last_write = Instant::now();
    loop {
        let line = match rx.recv_timeout(POLL_INTERVAL) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                if peer_closed(w) {
                    return gone();
                }
                if sse && last_write.elapsed() >= KEEPALIVE_INTERVAL {
                    if chunk(w, b": keepalive\n\n").is_err() {
                        return gone();
                    }
                    last_write = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if line.is_empty() {
            let _ = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush());
            return;
        }
        let m = Message::parse(&line).ok();
        let is_final = m
            .as_ref()
            .is_some_and(|m| m.kind() == Kind::Response && m.id() == Some(id.as_str()));
        if is_final && !sse {
            let code = m.as_ref().and_then(|m| m.value()["error"]["code"].as_i64());
            let status = match code {
                Some(jsonrpc::METHOD_NOT_FOUND) => 404,
                Some(-32602 | -32020 | -32021 | -32022) => 400,
                _ => 200,
            };
            return respond(w, status, "application/json", line, &[]);
        }
        if !sse {
            sse = true;
            let head = format!("HTTP/1.1 200 {}\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n", reason(200));
            if w.write_all(head.as_bytes()).is_err() {
                return gone();
            }
        }
        let mut buf = Vec::new();
        mcp_proxy::sse::encode_event(&mut buf, Some("message"), None, &line);
        if chunk(w, &buf).is_err() {
            return gone();
        }
        last_write = Instant::now();
        if st.break_next.swap(false, Ordering::SeqCst) {
            eprintln!("demo: breaking the reply stream of request {id} as asked");
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
        if is_final {
            let _ = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush());
            return;
        }
    }
}

/// What a `tools/list` cursor holds around the offset it leads to.
const CURSOR: (&str, &str) = ("after \"", "\" «demo»");

fn cursor_at(offset: usize) -> String {
    format!("{}{offset}{}", CURSOR.0, CURSOR.1)
}

/// One page of a `tools/list` result: `size` tools from where `cursor`
/// points (None when it points nowhere), with a `nextCursor` when more
/// follow. The cursor holds a quote and non-ASCII, so that a client that
/// does not send it back byte for byte is caught.
fn page(tools: Vec<Value>, cursor: &Value, size: usize) -> Option<Value> {
    let start = match cursor {
        Value::Null => 0,
        Value::String(c) => c
            .strip_prefix(CURSOR.0)?
            .strip_suffix(CURSOR.1)?
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= tools.len())?,
        _ => return None,
    };
    if size == 0 {
        return (start == 0).then(|| json!({ "tools": tools }));
    }
    let end = tools.len().min(start + size);
    let mut r = json!({"tools": tools[start..end]});
    if end < tools.len() {
        r["nextCursor"] = json!(cursor_at(end));
    }
    Some(r)
}

fn chunk(w: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
    w.write_all(bytes)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

/// Whether the client has closed its end (a read would see EOF). Bytes
/// waiting (a pipelined request) mean it is still there.
fn peer_closed(w: &Conn) -> bool {
    let _ = w.set_nonblocking(true);
    let r = w.peek(&mut [0u8; 1]);
    let _ = w.set_nonblocking(false);
    match r {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
