//! The HTTP+SSE link (2024-11-05; TRANSPORTS §3, RL-08).
//!
//! Threads: `sse-stream` GETs the stream, reports its first event (which
//! must be `endpoint`) and then every `message` event to the router, and
//! ends with the stream; `sse-post` POSTs local messages to the endpoint one
//! after another, so the remote sees them in the order the client wrote
//! them, and ends when the router drops its queue (a new session, or exit).
//! Replies come back on the stream, not on the POSTs.

use super::http::{read_sse, Remote, SseEnd};
use super::{Event, Outcome, Oversized, PostJob, StreamKind};
use crate::sse;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread;

const ERROR_BODY_BYTES: usize = 64 * 1024;

pub fn spawn_stream(remote: Arc<Remote>, url: String, gen: u64, tx: Sender<Event>) {
    let spawned = thread::Builder::new().name("sse-stream".into()).spawn(move || {
        let outcome = match remote.send("GET", &url, &[("Accept", "text/event-stream"), ("Cache-Control", "no-store")], None) {
            Err(cause) => Outcome::Unreachable(cause),
            Ok(res) if !(200..300).contains(&res.status().as_u16()) => {
                let status = res.status();
                let body = super::http::read_body(res, ERROR_BODY_BYTES).unwrap_or_default();
                Outcome::Status(
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("").to_owned(),
                    body,
                )
            }
            Ok(res) => {
                let max = remote.max_message_bytes;
                let mut first = true;
                let mut refused = None;
                let (end, _, _) = read_sse(res.into_body().into_reader(), max, |item| {
                    match item {
                        sse::Item::Event(e) if first => {
                            first = false;
                            if e.event != "endpoint" {
                                refused = Some(format!(
                                    "sent {:?} as the first event of its SSE stream, not \"endpoint\"; is this an HTTP+SSE server? (try --transport streamablehttp)",
                                    e.event
                                ));
                                return false;
                            }
                            let _ = tx.send(Event::Endpoint { gen, data: e.data });
                        }
                        sse::Item::Event(e) if e.event == "message" => match super::parse_remote(&e.data) {
                            Ok(msgs) => {
                                for m in msgs {
                                    let _ = tx.send(Event::Remote { gen, msg: m });
                                }
                            }
                            Err(err) => log::warn!(
                                "the remote sent an event that is not a JSON-RPC message ({err}); dropped"
                            ),
                        },
                        sse::Item::Event(e) => {
                            log::debug!("ignoring an SSE event of type {:?}", e.event)
                        }
                        // Dropped; its end tells what it was.
                        sse::Item::TooBig { .. } => {}
                        sse::Item::TooBigEnd { hint, names_method } => {
                            let big = Oversized::of(hint, names_method);
                            let _ = tx.send(Event::Oversized { gen, big, what: "SSE stream" });
                        }
                        sse::Item::Retry(_) => {}
                    }
                    true
                });
                match (refused, end) {
                    (Some(why), _) => Outcome::Bad(why),
                    (None, SseEnd::Ended { cause }) => Outcome::Broken {
                        last_id: None,
                        retry: None,
                        cause,
                    },
                    (None, SseEnd::Stopped) => Outcome::Done,
                }
            }
        };
        let _ = tx.send(Event::StreamEnded {
            gen,
            kind: StreamKind::Legacy,
            outcome,
        });
    });
    if let Err(e) = spawned {
        log::error!("cannot start the SSE stream thread: {e}");
    }
}

pub fn spawn_poster(
    remote: Arc<Remote>,
    endpoint: String,
    gen: u64,
    jobs: Receiver<PostJob>,
    tx: Sender<Event>,
) {
    let spawned = thread::Builder::new()
        .name("sse-post".into())
        .spawn(move || {
            for job in jobs {
                let h = [("Content-Type", "application/json")];
                let outcome = match remote.send("POST", &endpoint, &h, Some(job.msg.raw())) {
                    Err(cause) => Outcome::Unreachable(cause),
                    Ok(res) => {
                        let status = res.status();
                        let body =
                            super::http::read_body(res, ERROR_BODY_BYTES).unwrap_or_default();
                        if status.is_success() {
                            Outcome::Done
                        } else {
                            Outcome::Status(
                                status.as_u16(),
                                status.canonical_reason().unwrap_or("").to_owned(),
                                body,
                            )
                        }
                    }
                };
                if tx.send(Event::Posted { gen, job, outcome }).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the SSE POST thread: {e}");
    }
}
