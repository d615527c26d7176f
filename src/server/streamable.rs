//! The Streamable HTTP transport (2025-03-26 to 2025-11-25) at `/mcp`.
//!
//! POST carries client messages. A POST with requests is held until the
//! first message about them (RL-04): the response alone becomes a JSON
//! body, anything before it (progress, a sampling request) turns the reply
//! into an SSE stream that ends after the response. GET opens the session's
//! own stream for unrelated traffic; DELETE ends the session.
//!
//! A 2026-07-28 request (modern.rs) is served on the same endpoint: checked
//! against its mirrored headers first, then relayed as a one-POST exchange
//! with no session; its reply status follows the child's error (RL-09).
//!
//! Each exchange runs on its connection's thread, and holds it until the
//! response or stream ends. A stream whose client vanishes is reported to the
//! router, which cancels the requests still open on it.

use super::http;
use super::modern::{self, Verdict};
use super::{Ctx, Mount};
use crate::jsonrpc::{self, Message, ParseError};
use crate::queue::{self, BoundedReceiver};
use crate::router::{
    Event, GetReply, Out, Post, PostReply, Transport, LATEST_VERSION, SUPPORTED_VERSIONS,
};
use std::sync::mpsc::{channel, RecvTimeoutError};
use tiny_http::Request;

type Headers = [(String, String)];

fn error(rq: Request, status: u16, code: i64, msg: &str, h: &Headers) {
    http::respond_json(rq, status, &jsonrpc::error_body(None, code, msg), h)
}

/// An error refusing a POST before its body was needed, with the request's
/// id when the body shows one (SX-32 wants it wherever it is readable):
/// the body is read (within `--max-body-size` and the body deadline) and
/// scanned, never parsed further.
fn refuse_with_id(ctx: &Ctx, mut rq: Request, status: u16, msg: &str, h: &Headers) {
    let id = http::read_body(&mut rq, ctx.args.max_body_bytes, ctx.args.header_timeout)
        .ok()
        .and_then(|body| {
            let mut scan = jsonrpc::IdScan::new();
            scan.feed(&body);
            scan.hint()
        });
    let body = jsonrpc::error_body(id.as_ref().map(|h| h.id.as_str()), -32000, msg);
    http::respond_json(rq, status, &body, h)
}

/// Checks `MCP-Protocol-Version` (SH-62): absent is fine, unknown is 400.
fn version_ok(rq: &Request) -> Result<(), String> {
    match http::header(rq, "MCP-Protocol-Version") {
        Some(v) if !SUPPORTED_VERSIONS.contains(&v.trim()) => Err(format!(
            "Bad Request: Unsupported protocol version: {v} (supported versions: {})",
            SUPPORTED_VERSIONS.join(", ")
        )),
        _ => Ok(()),
    }
}

/// A header's first value and how many times it appears (SX-27: a
/// mirrored header given twice is a mismatch).
fn header_all<'a>(rq: &'a Request, name: &str) -> (Option<&'a str>, usize) {
    let mut all = rq
        .headers()
        .iter()
        .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name));
    let first = all.next().map(|h| h.value.as_str().trim());
    (first, first.map_or(0, |_| 1 + all.count()))
}

fn session_header(rq: &Request) -> Option<String> {
    http::header(rq, "Mcp-Session-Id").map(|s| s.trim().to_owned())
}

fn parse_body(body: &str) -> Result<(Vec<Message>, bool), ParseError> {
    match Message::parse_batch(body)? {
        Some(items) => {
            if items.is_empty() {
                return Err(ParseError::Invalid {
                    id: None,
                    reason: "empty batch".into(),
                });
            }
            let msgs = items.into_iter().collect::<Result<Vec<_>, _>>()?;
            Ok((msgs, true))
        }
        None => Ok((vec![Message::parse(body)?], false)),
    }
}

pub fn post(ctx: &Ctx, mount: &Mount, mut rq: Request, cors: &Headers) {
    let (json, sse_ok) = http::accepts(http::header(&rq, "Accept"));
    if !json && !sse_ok {
        return refuse_with_id(
            ctx,
            rq,
            406,
            "Not Acceptable: Client must accept application/json and/or text/event-stream",
            cors,
        );
    }
    if !http::is_json_type(http::header(&rq, "Content-Type")) {
        return refuse_with_id(
            ctx,
            rq,
            415,
            "Unsupported Media Type: Content-Type must be application/json",
            cors,
        );
    }
    let body = match http::read_body(&mut rq, ctx.args.max_body_bytes, ctx.args.header_timeout) {
        Ok(b) => b,
        Err(http::BodyError::TooLarge) => {
            let msg = format!(
                "Payload Too Large: the body is over {} bytes (--max-body-size)",
                ctx.args.max_body_bytes
            );
            return error(rq, 413, jsonrpc::INVALID_REQUEST, &msg, cors);
        }
        Err(http::BodyError::TimedOut) => {
            let msg = http::body_timeout_message(ctx.args.header_timeout);
            return error(rq, 408, -32000, &msg, cors);
        }
        Err(http::BodyError::Io) => {
            return error(rq, 400, -32000, "Bad Request: cannot read the body", cors)
        }
    };
    let Ok(body) = String::from_utf8(body) else {
        return error(
            rq,
            400,
            jsonrpc::PARSE_ERROR,
            "Parse error: the body is not valid UTF-8",
            cors,
        );
    };
    let (msgs, batch) = match parse_body(&body) {
        Ok(x) => x,
        Err(e) => {
            let b = jsonrpc::error_body(e.id(), e.code(), &e.to_string());
            return http::respond_json(rq, 400, &b, cors);
        }
    };
    let header_version = http::header(&rq, "MCP-Protocol-Version").map(str::trim);
    let modern = modern::is_modern(header_version, &msgs, batch);
    let mut protocol_version = header_version
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .map(str::to_owned);
    if modern {
        let headers = modern::Headers {
            protocol_version: header_all(&rq, "MCP-Protocol-Version"),
            method: header_all(&rq, "Mcp-Method"),
            name: header_all(&rq, "Mcp-Name"),
        };
        match modern::check(&headers, &msgs, batch) {
            Err(r) => return http::respond_json(rq, r.status, &r.body, cors),
            Ok(Verdict::Notification) => return http::respond(rq, 202, "", "", cors),
            Ok(Verdict::Request { version }) => protocol_version = Some(version),
        }
        if msgs[0].method() == Some("subscriptions/listen") && !sse_ok {
            // A listen's reply is a notification stream (SX-11).
            let b = jsonrpc::error_body(
                msgs[0].id(),
                -32000,
                "Not Acceptable: subscriptions/listen needs Accept: text/event-stream",
            );
            return http::respond_json(rq, 406, &b, cors);
        }
    } else if batch || msgs[0].method() != Some("initialize") {
        if let Err(e) = version_ok(&rq) {
            return error(rq, 400, -32000, &e, cors);
        }
    }
    let stateless = ctx.args.stateless;
    let (tx, rx) = channel();
    let (out_tx, out_rx) = queue::bounded(ctx.args.stream_queue);
    let json_only = json && !sse_ok;
    let p = Post {
        transport: if modern {
            Transport::Modern
        } else if stateless {
            Transport::Stateless
        } else {
            Transport::Streamable
        },
        // A modern request is served without its session, if it names one
        // (SX-40, the dual-era rule in modern.rs).
        session: if stateless || modern {
            None
        } else {
            session_header(&rq)
        },
        protocol_version,
        msgs,
        batch,
        json_only,
        stream: Some(out_tx),
        reply: tx,
    };
    if mount.router.send(Event::Post(p)).is_err() {
        return error(rq, 503, -32000, "Server is shutting down", cors);
    }
    // The stream's first message (or its end) first, the router's reply
    // after it: the router sends the reply before the queue can end, and
    // usually long before the child answers, so one wake-up serves both.
    // Waiting for the first message up to a keepalive period is what an
    // SSE-capable client's reply needs anyway (RL-04, `Exchange::sse`).
    // A 2026-07-28 client that hangs up cancels its request (SX-10): its
    // socket is watched while the exchange waits.
    let watch = if modern { rq.socket_fd() } else { None };
    let limit = ctx.args.keepalive.filter(|_| !json_only);
    let (first, hung_up) = match http::recv_watching(&out_rx, limit, watch) {
        Ok(o) => (Ok(o), false),
        Err(Some(e)) => (Err(e), false),
        Err(None) => (Err(RecvTimeoutError::Timeout), true),
    };
    match rx.recv() {
        Ok(PostReply::Accepted) => http::respond(rq, 202, "", "", cors),
        Ok(PostReply::Error { status, body }) => http::respond_json(rq, status, &body, cors),
        Ok(PostReply::Stream {
            session,
            created,
            stream,
            version,
        }) => {
            let mut h = cors.to_vec();
            if created {
                h.push(("Mcp-Session-Id".into(), session.clone()));
            }
            let x = Exchange {
                ctx,
                mount,
                session,
                stream,
                conn: 1,
                version,
                modern,
                watch,
            };
            if hung_up {
                // Nothing to answer: the router cancels at the child.
                return x.gone();
            }
            if json_only {
                x.json(rq, first.ok(), out_rx, batch, &h)
            } else {
                x.sse(rq, first, out_rx, json && !batch, &h)
            }
        }
        Err(_) => error(rq, 503, -32000, "Server is shutting down", cors),
    }
}

struct Exchange<'a> {
    ctx: &'a Ctx,
    mount: &'a Mount,
    session: String,
    stream: u64,
    conn: u64,
    version: String,
    /// A 2026-07-28 exchange: the status follows the response (RL-09), and
    /// the stream is not resumable (no priming event, SX-09).
    modern: bool,
    /// The client's socket, watched for a hang-up (modern exchanges).
    watch: Option<i32>,
}

impl Exchange<'_> {
    /// The status of a reply that is one response: 200, or on a modern
    /// exchange what the child's error means in HTTP (RL-09).
    fn status(&self, response: &str) -> u16 {
        if self.modern {
            modern::status_for_response(response)
        } else {
            200
        }
    }

    fn gone(&self) {
        let _ = self.mount.router.send(Event::StreamGone {
            session: self.session.clone(),
            stream: self.stream,
            conn: self.conn,
        });
    }

    /// A client that takes only JSON: the response (or the batch's
    /// responses) as one body.
    fn json(
        &self,
        rq: Request,
        first: Option<Out>,
        rx: BoundedReceiver<Out>,
        batch: bool,
        h: &Headers,
    ) {
        let outs: Vec<String> = first
            .into_iter()
            .chain(rx.iter())
            .filter(|o| o.response)
            .map(|o| o.data)
            .collect();
        if outs.is_empty() {
            // Cancelled: the request gets no response (and needs none).
            return http::respond(rq, 202, "", "", h);
        }
        let body = if batch {
            format!("[{}]", outs.join(","))
        } else {
            outs.into_iter().next().expect("not empty")
        };
        let status = self.status(&body);
        http::respond_json(rq, status, &body, h)
    }

    /// A client that takes SSE; `first` is the stream's first message, or
    /// why there was none within a keepalive period. With `hold`, a
    /// response that comes first and alone is sent as plain JSON (RL-04).
    fn sse(
        &self,
        rq: Request,
        first: Result<Out, RecvTimeoutError>,
        rx: BoundedReceiver<Out>,
        hold: bool,
        h: &Headers,
    ) {
        let first = match first {
            Ok(o) if hold && o.response => {
                return http::respond_json(rq, self.status(&o.data), &o.data, h)
            }
            Ok(o) => Some(o),
            // Idle for a keepalive period: commit to a stream so the
            // keepalives can flow and a vanished client is noticed. Or the
            // stream ended with nothing to send: an empty stream.
            Err(_) => None,
        };
        let Ok(mut w) = http::start_sse(rq, h) else {
            return self.gone();
        };
        if !self.modern
            && self.version.as_str() >= LATEST_VERSION
            && http::write_priming(&mut w, self.stream, 0).is_err()
        {
            return self.gone();
        }
        let watch = if self.modern { self.watch } else { None };
        if let http::Ended::ClientGone =
            http::pump_sse(&mut w, first, &rx, self.ctx.args.keepalive, watch)
        {
            self.gone();
        }
    }
}

pub fn get(ctx: &Ctx, mount: &Mount, rq: Request, cors: &Headers) {
    if ctx.args.stateless {
        let mut h = cors.to_vec();
        h.push(("Allow".into(), "POST".into()));
        return error(
            rq,
            405,
            -32000,
            "Method Not Allowed: no GET stream in stateless mode",
            &h,
        );
    }
    let (_, sse_ok) = http::accepts(http::header(&rq, "Accept"));
    if !sse_ok {
        return error(
            rq,
            406,
            -32000,
            "Not Acceptable: Client must accept text/event-stream",
            cors,
        );
    }
    if let Err(e) = version_ok(&rq) {
        return error(rq, 400, -32000, &e, cors);
    }
    let Some(session) = session_header(&rq) else {
        return error(rq, 400, -32000, "Bad Request: Missing session ID", cors);
    };
    let (tx, rx) = channel();
    let ev = Event::OpenGet {
        session: session.clone(),
        last_event_id: http::header(&rq, "Last-Event-ID").map(|s| s.trim().to_owned()),
        reply: tx,
    };
    if mount.router.send(ev).is_err() {
        return error(rq, 503, -32000, "Server is shutting down", cors);
    }
    let (stream, conn, seq, resumed, version, rx) = match rx.recv() {
        Ok(GetReply::Stream {
            stream,
            conn,
            seq,
            resumed,
            version,
            rx,
        }) => (stream, conn, seq, resumed, version, rx),
        Ok(GetReply::Error { status, body }) => return http::respond_json(rq, status, &body, cors),
        Err(_) => return error(rq, 503, -32000, "Server is shutting down", cors),
    };
    let x = Exchange {
        ctx,
        mount,
        session,
        stream,
        conn,
        version,
        modern: false,
        watch: None,
    };
    let Ok(mut w) = http::start_sse(rq, cors) else {
        return x.gone();
    };
    if !resumed
        && x.version.as_str() >= LATEST_VERSION
        && http::write_priming(&mut w, stream, seq).is_err()
    {
        return x.gone();
    }
    if let http::Ended::ClientGone = http::pump_sse(&mut w, None, &rx, ctx.args.keepalive, None) {
        x.gone();
    }
}

pub fn delete(ctx: &Ctx, mount: &Mount, rq: Request, cors: &Headers) {
    if ctx.args.stateless {
        let mut h = cors.to_vec();
        h.push(("Allow".into(), "POST".into()));
        return error(
            rq,
            405,
            -32000,
            "Method Not Allowed: no sessions in stateless mode",
            &h,
        );
    }
    let Some(session) = session_header(&rq) else {
        return error(rq, 400, -32000, "Bad Request: Missing session ID", cors);
    };
    let (tx, rx) = channel();
    if mount
        .router
        .send(Event::Delete { session, reply: tx })
        .is_err()
    {
        return error(rq, 503, -32000, "Server is shutting down", cors);
    }
    match rx.recv() {
        Ok(true) => http::respond(rq, 200, "", "", cors),
        Ok(false) => error(rq, 404, -32001, "Session not found", cors),
        Err(_) => error(rq, 503, -32000, "Server is shutting down", cors),
    }
}
