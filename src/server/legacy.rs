//! The HTTP+SSE transport (2024-11-05), with the Python SDK's paths:
//! `GET /sse` opens a session and its stream, whose first event names the
//! `/messages/?session_id=…` endpoint; every client message is a POST there,
//! answered 202, with the answers coming on the stream.
//!
//! The GET's connection thread pumps the session's stream until the router
//! ends it or the client goes away, which ends the session (its requests are
//! cancelled at the child). A POST is done with its 202.

use super::http;
use super::{Ctx, Mount};
use crate::jsonrpc::Message;
use crate::router::{Event, Post, PostReply, Transport};
use crate::sse;
use std::sync::mpsc::channel;
use tiny_http::Request;

pub fn open(ctx: &Ctx, mount: &Mount, rq: Request, cors: &[(String, String)]) {
    if http::is_head(&rq) {
        let mut h = cors.to_vec();
        h.push(("Cache-Control".into(), "no-cache".into()));
        h.push(("X-Accel-Buffering".into(), "no".into()));
        return http::respond(rq, 200, "text/event-stream", "", &h);
    }
    let (tx, rx) = channel();
    if mount.router.send(Event::OpenSse { reply: tx }).is_err() {
        return http::respond(rq, 503, "text/plain", "Server is shutting down", cors);
    }
    let (sid, stream) = match rx.recv() {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return http::respond(rq, 503, "text/plain; charset=utf-8", &e, cors),
        Err(_) => return http::respond(rq, 503, "text/plain", "Server is shutting down", cors),
    };
    let gone = || {
        let _ = mount.router.send(Event::StreamGone {
            session: sid.clone(),
            stream: 0,
            conn: 1,
        });
    };
    let mut w = match http::start_sse(rq, cors) {
        Ok(w) => w,
        Err(_) => return gone(),
    };
    let endpoint = format!("{}/messages/?session_id={sid}", mount.prefix);
    if sse::write_event(&mut w, Some("endpoint"), None, &endpoint).is_err() {
        return gone();
    }
    ctx.touch();
    if let http::Ended::ClientGone = http::pump_sse(&mut w, None, &stream, ctx.args.keepalive, None)
    {
        gone();
    }
}

fn valid_session_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn post(ctx: &Ctx, mount: &Mount, mut rq: Request, query: &str, cors: &[(String, String)]) {
    let text = |rq: Request, status: u16, body: &str| {
        http::respond(rq, status, "text/plain; charset=utf-8", body, cors)
    };
    let sid = match http::query_param(query, "session_id") {
        None | Some("") => return text(rq, 400, "session_id is required"),
        Some(s) if !valid_session_id(s) => return text(rq, 400, "Invalid session ID"),
        Some(s) => s.to_ascii_lowercase(),
    };
    if !http::is_json_type(http::header(&rq, "Content-Type")) {
        return text(rq, 400, "Invalid Content-Type header");
    }
    let body = match http::read_body(&mut rq, ctx.args.max_body_bytes, ctx.args.header_timeout) {
        Ok(b) => b,
        Err(http::BodyError::TooLarge) => {
            return text(
                rq,
                413,
                &format!("Request body over {} bytes", ctx.args.max_body_bytes),
            )
        }
        Err(http::BodyError::TimedOut) => {
            return text(
                rq,
                408,
                &http::body_timeout_message(ctx.args.header_timeout),
            )
        }
        Err(http::BodyError::Io) => return text(rq, 400, "Could not read the request body"),
    };
    let Ok(body) = String::from_utf8(body) else {
        return text(rq, 400, "Could not parse message: body is not valid UTF-8");
    };
    let msg = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => return text(rq, 400, &format!("Could not parse message: {e}")),
    };
    let (tx, rx) = channel();
    let p = Post {
        transport: Transport::Sse,
        session: Some(sid),
        protocol_version: None,
        msgs: vec![msg],
        batch: false,
        json_only: false,
        stream: None,
        reply: tx,
    };
    if mount.router.send(Event::Post(p)).is_err() {
        return text(rq, 503, "Server is shutting down");
    }
    match rx.recv() {
        Ok(PostReply::Accepted) | Ok(PostReply::Stream { .. }) => text(rq, 202, "Accepted"),
        Ok(PostReply::Error { status, body }) => text(rq, status, &body),
        Err(_) => text(rq, 503, "Server is shutting down"),
    }
}
