//! Streamable HTTP exchanges (TRANSPORTS §4, RL-07), each on a thread of its own while it runs.
//!
//! `spawn_post` sends one local message as a POST and reads the reply (JSON,
//! an SSE stream carrying notifications and server requests before the
//! response, or 202); `spawn_get` opens the server-initiated GET stream, or
//! resumes a broken reply stream with `Last-Event-ID`. Each thread turns what
//! it reads into [`Event`]s for the router and ends with one final event
//! saying how the exchange went; it holds no routing state. A thread ends
//! when its exchange does (or with the process: a read blocked on a silent
//! remote cannot be cancelled, DESIGN.md).

use super::http::{header, read_body, read_sse, Remote, Response, SseEnd};
use super::{Event, Outcome, Oversized, PostJob, StreamKind};
use crate::jsonrpc::{Kind, Message};
use crate::sse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

/// How much of an error body we keep for the error message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The per-session headers of every request after the handshake.
#[derive(Clone, Default)]
pub struct SessionHeaders {
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
}

impl SessionHeaders {
    fn add<'a>(&'a self, h: &mut Vec<(&'static str, &'a str)>) {
        if let Some(s) = &self.session_id {
            h.push(("Mcp-Session-Id", s));
        }
        if let Some(v) = &self.protocol_version {
            h.push(("MCP-Protocol-Version", v));
        }
    }
}

pub fn spawn_post(
    remote: Arc<Remote>,
    url: String,
    sess: SessionHeaders,
    gen: u64,
    job: PostJob,
    tx: Sender<Event>,
) {
    POSTERS.run(move || {
        let mut h = vec![
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ];
        sess.add(&mut h);
        let req_id = (job.msg.kind() == Kind::Request)
            .then(|| job.msg.id().map(str::to_owned))
            .flatten();
        let outcome = match remote.send("POST", &url, &h, Some(job.msg.raw())) {
            Err(cause) => Outcome::Unreachable(cause),
            Ok(res) => reply(res, &remote, gen, req_id.as_deref(), &tx),
        };
        let _ = tx.send(Event::Posted { gen, job, outcome });
    });
}

/// One 2026-07-28 request (TRANSPORTS §5): a POST with no session and no
/// `Last-Event-ID`, carrying the request-metadata `headers`, on an agent of
/// its own (`agent`), whose shutdown from the router is the cancel (LC-42).
/// The reply, JSON or SSE (SX-06), comes back as [`Event::ModernMsg`]s and
/// one [`Event::ModernDone`].
#[allow(clippy::too_many_arguments)]
pub fn spawn_modern(
    remote: Arc<Remote>,
    agent: ureq::Agent,
    url: String,
    msg: &Message,
    seq: u64,
    headers: Vec<(String, String)>,
    tx: Sender<Event>,
) {
    let id = msg.id().expect("modern exchanges are requests").to_owned();
    let body = msg.raw().to_owned();
    POSTERS.run(move || {
        let mut h = vec![
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ];
        h.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let max = remote.max_message_bytes;
        let outcome = match remote.send_on(&agent, "POST", &url, &h, Some(&body)) {
            Err(cause) => Outcome::Unreachable(cause),
            Ok(res) if !(200..300).contains(&res.status().as_u16()) => status_outcome(res),
            Ok(res) => {
                let ctype = header(&res, "content-type").unwrap_or("");
                if ctype.to_ascii_lowercase().starts_with("text/event-stream") {
                    let what = "reply stream";
                    read_until(res, max, MODERN_GEN, Some(&id), None, &tx, what, Some(seq))
                } else {
                    match read_body(res, max).map(|t| super::parse_remote(&t)) {
                        Err(e) => Outcome::Bad(e),
                        Ok(Err(e)) => Outcome::Bad(format!(
                            "sent a reply that is not a JSON-RPC message ({e})"
                        )),
                        Ok(Ok(msgs)) => {
                            for m in msgs {
                                let id = id.clone();
                                let _ = tx.send(Event::ModernMsg { id, seq, msg: m });
                            }
                            // Had it not answered, ModernDone tells.
                            Outcome::Done
                        }
                    }
                }
            }
        };
        let _ = tx.send(Event::ModernDone { id, seq, outcome });
    });
}

/// The generation modern exchanges report oversized events under: no
/// session has it, so the router only logs them (the exchange's own end
/// fails the request).
pub const MODERN_GEN: u64 = u64::MAX;

/// POST threads that outlive their exchange. A thread per POST cost a
/// clone3 and its set-up syscalls per call (bench findings: p50 141-174 us
/// against 92 us with kept workers). One more starts whenever none is
/// idle, so a slow call never waits for a worker; the router already caps
/// POSTs in flight at MAX_POSTS.
static POSTERS: Posters = Posters::new();

type Task = Box<dyn FnOnce() + Send>;

struct Posters {
    queue: Mutex<Option<Sender<Task>>>,
    rx: Mutex<Option<Arc<Mutex<Receiver<Task>>>>>,
    idle: AtomicUsize,
}

/// Idle POST workers kept; more end after their exchange.
const MAX_IDLE_POSTERS: usize = 8;

impl Posters {
    const fn new() -> Posters {
        Posters {
            queue: Mutex::new(None),
            rx: Mutex::new(None),
            idle: AtomicUsize::new(0),
        }
    }

    fn run(&'static self, task: impl FnOnce() + Send + 'static) {
        let mut q = self
            .queue
            .lock()
            .expect("the POST queue lock is never poisoned");
        if q.is_none() {
            let (tx, rx) = channel();
            *q = Some(tx);
            *self.rx.lock().expect("never poisoned") = Some(Arc::new(Mutex::new(rx)));
        }
        // Claim an idle worker, or start one: never queue behind a busy one.
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            let rx = self
                .rx
                .lock()
                .expect("never poisoned")
                .clone()
                .expect("set above");
            let spawned = thread::Builder::new()
                .name("post".into())
                .spawn(move || loop {
                    let next = rx.lock().expect("never poisoned").recv();
                    let Ok(task) = next else { return };
                    task();
                    if self.idle.load(Ordering::SeqCst) >= MAX_IDLE_POSTERS {
                        return;
                    }
                    self.idle.fetch_add(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                log::error!("cannot start a thread for a POST: {e}");
                return;
            }
        }
        let _ = q.as_ref().expect("set above").send(Box::new(task));
    }
}

fn status_outcome(res: Response) -> Outcome {
    let status = res.status();
    let reason = status.canonical_reason().unwrap_or("");
    let body = read_body(res, ERROR_BODY_BYTES).unwrap_or_default();
    Outcome::Status(status.as_u16(), reason.to_owned(), body)
}

/// Reads the reply to one POST.
fn reply(
    res: Response,
    remote: &Remote,
    gen: u64,
    req_id: Option<&str>,
    tx: &Sender<Event>,
) -> Outcome {
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        return status_outcome(res);
    }
    let _ = tx.send(Event::Accepted {
        gen,
        session_id: header(&res, "mcp-session-id").map(str::to_owned),
    });
    let ctype = header(&res, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let Some(req_id) = req_id.filter(|_| status != 202) else {
        // A notification or a response (SH-13), or a request the server
        // will answer on another stream: nothing to wait for here.
        let _ = read_body(res, ERROR_BODY_BYTES);
        return Outcome::Done;
    };
    if ctype.starts_with("text/event-stream") {
        return reply_stream(res, remote, gen, req_id, tx);
    }
    let text = match read_body(res, remote.max_message_bytes) {
        Ok(t) => t,
        Err(e) => return Outcome::Bad(e),
    };
    let mut answered = false;
    let mut forward = |m: Message| {
        answered |= m.kind() == Kind::Response && m.id() == Some(req_id);
        let _ = tx.send(Event::Remote { gen, msg: m });
    };
    match super::parse_remote(&text) {
        Ok(msgs) => msgs.into_iter().for_each(&mut forward),
        Err(e) => {
            return Outcome::Bad(format!("sent a reply that is not a JSON-RPC message ({e})"))
        }
    }
    if answered {
        Outcome::Done
    } else {
        Outcome::Bad("sent a reply that does not answer the request".into())
    }
}

/// An SSE reply: forward everything until the response to `req_id`.
fn reply_stream(
    res: Response,
    remote: &Remote,
    gen: u64,
    req_id: &str,
    tx: &Sender<Event>,
) -> Outcome {
    read_until(
        res,
        remote.max_message_bytes,
        gen,
        Some(req_id),
        None,
        tx,
        "reply stream",
        None,
    )
}

/// Reads SSE `message` events, forwarding each as [`Event::Remote`] (or,
/// for the `modern` exchange with this sequence number,
/// [`Event::ModernMsg`] tagged with `until`), until the response to
/// `until` (if any) has gone by.
#[allow(clippy::too_many_arguments)]
fn read_until(
    res: Response,
    max: usize,
    gen: u64,
    until: Option<&str>,
    last_id: Option<String>,
    tx: &Sender<Event>,
    what: &'static str,
    modern: Option<u64>,
) -> Outcome {
    let mut answered = false;
    let (end, seen_id, retry) = read_sse(res.into_body().into_reader(), max, |item| {
        match item {
            sse::Item::Event(e) if e.event == "message" => match super::parse_remote(&e.data) {
                Ok(msgs) => {
                    for m in msgs {
                        answered |=
                            until.is_some() && m.kind() == Kind::Response && m.id() == until;
                        let _ = tx.send(match (modern, until) {
                            (Some(seq), Some(id)) => Event::ModernMsg {
                                id: id.to_owned(),
                                seq,
                                msg: m,
                            },
                            _ => Event::Remote { gen, msg: m },
                        });
                    }
                    !answered
                }
                Err(err) => {
                    log::warn!(
                        "the remote sent an event on its {what} that is not a JSON-RPC message ({err}); dropped"
                    );
                    true
                }
            },
            sse::Item::Event(e) => {
                log::debug!("ignoring an SSE event of type {:?} on the {what}", e.event);
                true
            }
            // On a reply stream, an oversized event that already shows a
            // `result` or `error` is the reply, and one that is no JSON
            // object is no message: the wait ends at once (its end may be
            // far off, or never come). Anything else may be a server
            // request or a notification on the way to the reply: it is
            // read to its end (its bytes are scanned, not kept), which
            // tells what it was and which id to answer.
            sse::Item::TooBig { may_be_request } => until.is_none() || may_be_request,
            sse::Item::TooBigEnd { hint, names_method } => {
                let big = Oversized::of(hint, names_method);
                let _ = tx.send(Event::Oversized { gen, big, what });
                true
            }
            sse::Item::Retry(_) => true,
        }
    });
    match end {
        SseEnd::Stopped if answered => Outcome::Done,
        SseEnd::Stopped => Outcome::Bad(format!(
            "sent a reply larger than the message size limit ({max} bytes, see --max-message-size)"
        )),
        SseEnd::Ended { cause } => Outcome::Broken {
            last_id: seen_id.or(last_id),
            retry,
            cause,
        },
    }
}

/// Opens the GET stream (`kind` Get) or resumes a reply stream (`kind`
/// Resume) with `Last-Event-ID`.
pub fn spawn_get(
    remote: Arc<Remote>,
    url: String,
    sess: SessionHeaders,
    gen: u64,
    kind: StreamKind,
    last_id: Option<String>,
    tx: Sender<Event>,
) {
    let spawned = thread::Builder::new().name("get-stream".into()).spawn({
        let tx = tx.clone();
        move || {
            let mut h = vec![("Accept", "text/event-stream")];
            sess.add(&mut h);
            if let Some(l) = &last_id {
                h.push(("Last-Event-ID", l));
            }
            let until = match &kind {
                StreamKind::Resume { request, .. } => Some(request.clone()),
                _ => None,
            };
            let outcome = match remote.send("GET", &url, &h, None) {
                Err(cause) => Outcome::Unreachable(cause),
                Ok(res) if !(200..300).contains(&res.status().as_u16()) => status_outcome(res),
                Ok(res) => {
                    let what = if until.is_some() {
                        "resumed reply stream"
                    } else {
                        "GET stream"
                    };
                    read_until(
                        res,
                        remote.max_message_bytes,
                        gen,
                        until.as_deref(),
                        last_id.clone(),
                        &tx,
                        what,
                        None,
                    )
                }
            };
            let _ = tx.send(Event::StreamEnded { gen, kind, outcome });
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start a thread for the GET stream: {e}");
    }
}
