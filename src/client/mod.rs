//! Client mode: one local stdio MCP client, one remote server over HTTP+SSE
//! or Streamable HTTP (TRANSPORTS §3, §4, RL-07, RL-08).
//!
//! A transport relay: it never answers for the server. The router (the
//! thread that calls [`run`]) owns every piece of state: the transport in
//! use, the session id, the negotiated protocol version, the HTTP+SSE
//! endpoint, the cached local `initialize` and `notifications/initialized`,
//! the requests in flight and the reconnect timers. Everything else is a
//! pump that turns bytes into [`Event`]s on one channel:
//!
//! - `stdin` reads lines (bounded by `--max-message-size`) until EOF;
//! - `stdout` writes lines until its channel closes or the pipe breaks;
//! - `signals` turns SIGTERM/SIGINT/SIGHUP into an event;
//! - per exchange: `post` threads (at most [`MAX_POSTS`] legacy and as
//!   many 2026-07-28 exchanges at once), the
//!   `get-stream`, and for HTTP+SSE `sse-stream` and `sse-post`
//!   (streamable.rs, sse_link.rs).
//!
//! When the remote goes away (unreachable, a broken stream, 404 for our
//! session) every request in flight gets a JSON-RPC error at once, and the
//! router reconnects with capped exponential backoff, replaying the local
//! client's handshake out of sight. A request whose POST got 404 was not
//! processed and is resent on the new session; one whose outcome is unknown
//! is not.
//!
//! A message from the remote over `--max-message-size` is dropped, and
//! what a scan of all of it finds (its top-level id and method, wherever
//! they are; the bytes are not kept) decides who hears of it
//! ([`Oversized`]): a server-to-client request is answered with a JSON-RPC
//! error (POSTed as the local client's replies are), a reply fails the
//! request it answers, a notification is only logged. A stdin message over
//! the limit is answered the same way: a request gets the error under its
//! own id, a reply to the remote goes on as an error reply.
//!
//! With `--transport auto` the local client's own `initialize` decides
//! (SH-71): a 2xx to the POST means Streamable HTTP; 400/404/405 (any 4xx
//! but 401/403 for revisions before 2025-11-25) means GET the same URL as
//! an HTTP+SSE stream and send the initialize there. No probe of our own,
//! so no stray session is left on the server.
//!
//! Exit: 0 when stdin closes (once the replies still owed have come, at
//! most `EOF_GRACE` (5 s) later, and after a DELETE of the Streamable HTTP
//! session) or stdout breaks; 128+n after signal n, also after the DELETE.
//!
//! JSON-RPC batches on stdin (JR-09, RL-15) are accepted only when the
//! session's protocol version is 2025-03-26: the one the remote chose for
//! the local `initialize`, or until it answers, the one the client asked
//! for. Without any `initialize` the client speaks a revision with no
//! handshake and no batches, so the batch is refused. A refused batch, and
//! an empty one, gets one -32600 error object naming the reason. An
//! accepted batch is split here and its members go on exactly as single
//! messages do (requests in flight, notifications and responses as fences),
//! rather than as one POST: that works the same over HTTP+SSE, keeps the
//! ordering rule of `post` (one POST of a mixed array would be a request
//! and a fence at once).
//! The replies to its requests, the remote's or our own errors alike, are
//! gathered (`Batch`) and written as one array line once the last one is
//! in; invalid members and a batched `initialize` (LC-07) get -32600
//! entries, notifications and responses none, and a batch with no entry
//! writes nothing. A cancelled member gets no entry. Ids: a batch member
//! whose id is already in flight, or repeated in the batch, gets an error
//! entry and is not sent, and a single request reusing the id of a batch
//! member in flight gets an error on its own line; so no reply can be
//! routed to the wrong place.
//!
//! 2026-07-28 ("modern", stateless; TRANSPORTS §5, RL-10): a stdin request
//! whose `params._meta` names a protocol version later than 2025-11-25 is
//! sent on its own, outside the session machinery above: a POST with no
//! `Mcp-Session-Id` and no `Last-Event-ID`, carrying `MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name` and the `Mcp-Param-*` mirrored from the tool
//! schemas learnt from relayed `tools/list` results (modern.rs), where tools
//! with invalid `x-mcp-header` annotations are also dropped (SX-26). The era
//! is per request: after a legacy `initialize`, modern requests still go
//! stateless beside the session (a dual-era remote may serve both; a
//! legacy-only one answers with an error, which is relayed). Each exchange
//! has its own connection (`Remote::exchange_agent`), so that a
//! `notifications/cancelled` from stdin closes exactly that one (LC-42,
//! RL-06 B) and is not POSTed; nothing more is written for the id. An
//! exchange that ended by itself hands its agent, and the kept-alive
//! connection in it, to the next one (up to `MAX_IDLE_AGENTS`); a cancelled
//! one's is shut down. Exchanges are numbered, so what an ended exchange's
//! worker reports late never touches a new request under the same id. Replies
//! are JSON or SSE (SX-06); a stream that breaks fails the request with an
//! error saying to re-issue it under a new id (SX-09), and is never resumed
//! or resent by the proxy. A 4xx with a JSON-RPC error body is relayed as
//! that error under the client's id; other failures get our own error.
//! After a 400 HeaderMismatch (-32020) on a `tools/call`, `tools/list` is
//! fetched again out of sight, every page of it (one hidden exchange per
//! page, following `nextCursor`, at most `MAX_REFETCH_PAGES`), and the
//! call is sent once more, under the same id: a 400 means the remote
//! rejected it unprocessed (SX-27). A full re-listing replaces the schemas;
//! one cut short (a page that fails, too many pages) updates the tools it
//! named and the call goes anyway. Cancelling the call closes the page in
//! flight and asks for no more.
//! `subscriptions/listen` is an exchange like any other whose stream stays
//! open; a `notifications/cancelled` from the remote naming it ends it
//! quietly (LC-42). Modern exchanges run side by side, at most
//! [`MAX_POSTS`] at once (beside as many legacy POSTs), more wait in order;
//! each runs on a `post` worker. No notification is POSTed in this era
//! (SX-05), and batches do not exist in it.
//!
//! Batches from the remote are split into single lines.

pub mod digest;
mod http;
pub(crate) mod modern;
mod sse_link;
mod streamable;

use crate::child::{self, Line};
use crate::cli::{Args, Transport};
use crate::jsonrpc::{self, Kind, Message, ParseError};
use crate::signals;
use http::{display_url, Backoff, Remote};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use streamable::SessionHeaders;

/// JSON-RPC error code HeaderMismatch (SX-20, SX-27).
const HEADER_MISMATCH: i64 = -32020;
/// Most `tools/list` pages one re-fetch after a HeaderMismatch reads; a
/// remote that keeps handing out cursors past it (a loop, a huge list)
/// gets the call sent again with what those pages taught.
const MAX_REFETCH_PAGES: u32 = 100;
/// Most POST exchanges running at once; more wait in a queue.
pub const MAX_POSTS: usize = 64;
/// Most agents of ended 2026-07-28 exchanges kept for reuse, each with at
/// most a few idle connections: a new exchange takes one, so that
/// requests one after another do not each pay a TCP (and TLS) handshake.
const MAX_IDLE_AGENTS: usize = 4;
/// How long requests still in flight may finish after stdin closes.
const EOF_GRACE: Duration = Duration::from_secs(5);
/// Bound on the closing DELETE and on flushing stdout at exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts to resume one broken reply stream before giving up on it.
const MAX_RESUMES: u32 = 5;
/// Longest wait for a session to come up (the endpoint event, the reply to
/// the handshake) before the remote counts as down; queued requests wait
/// at most this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Where `retry` is absent: wait before reopening a dropped GET stream.
const DEFAULT_RETRY: Duration = Duration::from_millis(100);

/// What the pumps tell the router.
pub enum Event {
    Stdin(Message),
    /// A JSON array on stdin: its members, each parsed on its own.
    StdinBatch(Vec<Result<Message, ParseError>>),
    /// A line on stdin that is not a message: the error reply to write.
    StdinBad(String),
    StdinEof,
    StdoutClosed,
    Signal(i32),
    /// A message from the remote, for stdout.
    Remote {
        gen: u64,
        msg: Message,
    },
    /// A POST got a 2xx answer (with the session id, if the remote set one).
    Accepted {
        gen: u64,
        session_id: Option<String>,
    },
    /// The HTTP+SSE `endpoint` event's data.
    Endpoint {
        gen: u64,
        data: String,
    },
    Posted {
        gen: u64,
        job: PostJob,
        outcome: Outcome,
    },
    StreamEnded {
        gen: u64,
        kind: StreamKind,
        outcome: Outcome,
    },
    /// A message on the reply to the 2026-07-28 request `id`, on the
    /// exchange numbered `seq` (an id may be used again once answered).
    ModernMsg {
        id: String,
        seq: u64,
        msg: Message,
    },
    /// The exchange `seq` of the 2026-07-28 request `id` is over.
    ModernDone {
        id: String,
        seq: u64,
        outcome: Outcome,
    },
    /// An SSE event over `--max-message-size` on the stream named `what`
    /// was dropped.
    Oversized {
        gen: u64,
        big: Oversized,
        what: &'static str,
    },
}

/// What an SSE event from the remote over `--max-message-size` was, as far
/// as a scan of it tells ([`crate::sse::Item::TooBigEnd`]).
#[derive(Debug, PartialEq)]
pub enum Oversized {
    /// A server-to-client request (its raw id): it gets an error reply, or
    /// the remote would wait for an answer forever.
    Request(String),
    /// A response (its raw id): the request it answers fails.
    Response(String),
    /// A `method` and no id to be seen: a notification, dropped.
    Notification,
    /// No id and no method: nothing to answer or fail.
    Unknown,
}

impl Oversized {
    pub fn of(hint: Option<jsonrpc::IdHint>, names_method: bool) -> Oversized {
        match hint {
            Some(h) if h.request => Oversized::Request(h.id),
            Some(h) => Oversized::Response(h.id),
            None if names_method => Oversized::Notification,
            None => Oversized::Unknown,
        }
    }
}

/// How an exchange with the remote went.
pub enum Outcome {
    Done,
    /// No HTTP answer at all: connect refused, reset, DNS, timeout.
    Unreachable(String),
    /// A non-2xx status: code, reason phrase, body.
    Status(u16, String, String),
    /// An SSE stream ended before it was done.
    Broken {
        last_id: Option<String>,
        retry: Option<u64>,
        cause: String,
    },
    /// The remote sent something we could not use.
    Bad(String),
}

pub enum StreamKind {
    /// The Streamable HTTP GET stream.
    Get,
    /// A reply stream being resumed with `Last-Event-ID`.
    Resume { request: String, attempt: u32 },
    /// The HTTP+SSE stream.
    Legacy,
}

/// One local message on its way to the remote.
pub struct PostJob {
    pub msg: Message,
    /// The proxy's own replay of the handshake: its reply is swallowed.
    pub hidden: bool,
    /// `--transport auto`: the first POST decides the transport (SH-71).
    pub probe: bool,
    /// Sent with a session id (so a 404 means the session is gone).
    pub with_session: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unknown,
    Streamable,
    Sse,
}

#[derive(Debug, PartialEq)]
enum Phase {
    /// Nothing sent yet.
    Idle,
    /// HTTP+SSE: waiting for the stream's `endpoint` event.
    Connecting,
    /// The handshake request is out; other messages wait.
    Handshake,
    Ready,
    /// The remote is unreachable; a reconnect timer is set.
    Down(String),
}

/// A JSON-RPC batch from stdin whose replies are being gathered.
#[derive(Default)]
struct Batch {
    /// Ids of its requests not answered yet.
    waiting: HashSet<String>,
    /// Reply lines so far (errors for invalid members first).
    replies: Vec<String>,
}

/// A 2026-07-28 request in flight: its own exchange, on its own agent.
struct ModernCall {
    msg: Message,
    /// The exchange's number: what its worker reports comes with it.
    seq: u64,
    /// Shutting it down closes the exchange's connection: the cancel.
    agent: ureq::Agent,
    /// Already sent again after a HeaderMismatch (SX-26: once).
    retried: bool,
    /// Set on a page of our own `tools/list` re-fetch: its reply updates
    /// the schemas and is not written to stdout.
    refetch: Option<Refetch>,
}

/// A `tools/list` re-fetch after a HeaderMismatch (SX-26), one page at a
/// time, each page a hidden exchange of its own.
struct Refetch {
    /// The id of the `tools/call` sent again once the listing ends.
    call: String,
    /// Pages asked for so far, the one in flight included.
    pages: u32,
    listing: modern::Listing,
}

/// The one protocol revision with JSON-RPC batches (JR-09).
const BATCH_VERSION: &str = "2025-03-26";

enum Timer {
    Reconnect {
        gen: u64,
    },
    OpenGet {
        gen: u64,
        last_id: Option<String>,
    },
    Resume {
        gen: u64,
        request: String,
        last_id: Option<String>,
        attempt: u32,
    },
    Handshake {
        gen: u64,
    },
    EofGrace,
}

struct Router {
    remote: Arc<Remote>,
    url: String,
    tx: Sender<Event>,
    out: Sender<String>,
    link: Link,
    phase: Phase,
    /// Bumped for every new session; events from older ones are stale.
    gen: u64,
    session: SessionHeaders,
    endpoint: Option<String>,
    poster: Option<Sender<PostJob>>,
    /// The raw id of the handshake request now out, and whether it is ours.
    handshake: Option<(String, bool)>,
    /// HTTP+SSE: the handshake waiting for the endpoint.
    pending_first: Option<PostJob>,
    init: Option<Message>,
    initialized: Option<Message>,
    /// The protocol version the remote chose in answer to the local
    /// client's `initialize` (kept across reconnects).
    negotiated: Option<String>,
    /// Batches from stdin waiting for replies, by number, and the batch
    /// each of their request ids belongs to.
    batches: HashMap<u64, Batch>,
    batch_of: HashMap<String, u64>,
    next_batch: u64,
    /// Local requests sent to the remote and not yet answered: id -> method.
    inflight: HashMap<String, String>,
    queue: VecDeque<Message>,
    posts: usize,
    /// Cancelled requests whose POST may never end (the server owes no
    /// reply after a cancel): no longer counted in `posts`.
    detached: std::collections::HashSet<String>,
    backlog: VecDeque<PostJob>,
    /// Notification and response POSTs not yet acknowledged: nothing sent
    /// after one may start before it is (see `post`).
    unacked: usize,
    /// 2026-07-28 requests in flight by raw id, and those waiting for one
    /// of the [`MAX_POSTS`] slots they have apart from the legacy POSTs.
    modern: HashMap<String, ModernCall>,
    modern_wait: VecDeque<Message>,
    /// `x-mcp-header` annotations of the remote's tools (SX-26).
    tools: modern::Tools,
    refetches: u64,
    /// The number of the last modern exchange started.
    modern_seq: u64,
    /// Agents of ended exchanges, each with the keep-alive connection it
    /// may hold, for the next exchanges (at most [`MAX_IDLE_AGENTS`]).
    idle_agents: Vec<ureq::Agent>,
    timers: Vec<(Instant, Timer)>,
    backoff: Backoff,
    get_open: bool,
    eof: bool,
    exit: Option<u8>,
}

pub fn run(args: &Args) -> ExitCode {
    let url = args
        .client_url()
        .expect("client mode runs only with a URL")
        .to_owned();
    let remote = match Remote::new(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let (tx, rx) = channel();
    let (out, out_rx) = channel::<String>();
    let writer_done = spawn_stdout(out_rx, tx.clone());
    spawn_stdin(args.max_message_bytes, tx.clone());
    let sig_tx = tx.clone();
    signals::spawn_waiter(move |sig| {
        let _ = sig_tx.send(Event::Signal(sig));
    });
    log::info!(
        "client mode: {} over {}",
        display_url(&url),
        match args.transport {
            Transport::Auto => "auto-detected transport",
            Transport::Sse => "HTTP+SSE",
            Transport::StreamableHttp => "Streamable HTTP",
        }
    );
    let mut r = Router {
        remote,
        url,
        tx,
        out,
        link: match args.transport {
            Transport::Auto => Link::Unknown,
            Transport::Sse => Link::Sse,
            Transport::StreamableHttp => Link::Streamable,
        },
        phase: Phase::Idle,
        gen: 0,
        session: SessionHeaders::default(),
        endpoint: None,
        poster: None,
        handshake: None,
        pending_first: None,
        init: None,
        initialized: None,
        negotiated: None,
        batches: HashMap::new(),
        batch_of: HashMap::new(),
        next_batch: 0,
        inflight: HashMap::new(),
        queue: VecDeque::new(),
        posts: 0,
        detached: std::collections::HashSet::new(),
        backlog: VecDeque::new(),
        unacked: 0,
        modern: HashMap::new(),
        modern_wait: VecDeque::new(),
        tools: modern::Tools::new(),
        refetches: 0,
        modern_seq: 0,
        idle_agents: Vec::new(),
        timers: Vec::new(),
        backoff: Backoff::default(),
        get_open: false,
        eof: false,
        exit: None,
    };
    let code = r.run(rx);
    drop(r);
    // Let the writer flush what is queued, but never hang on a stuck pipe.
    let _ = writer_done.recv_timeout(EXIT_TIMEOUT);
    ExitCode::from(code)
}

fn spawn_stdout(rx: Receiver<String>, tx: Sender<Event>) -> Receiver<()> {
    let (done_tx, done) = channel();
    thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            if let Err(e) = child::write_lines(std::io::stdout(), rx) {
                log::debug!("stdout closed: {e}");
                let _ = tx.send(Event::StdoutClosed);
            }
            let _ = done_tx.send(());
        })
        .expect("cannot start the stdout thread");
    done
}

fn spawn_stdin(max: usize, tx: Sender<Event>) {
    let big_tx = tx.clone();
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            child::read_lines_detailed(
                std::io::stdin(),
                max,
                |line| {
                    let ev = match line {
                        Line::Text(t) => match Message::parse_batch(&t) {
                            Ok(Some(items)) => Event::StdinBatch(items),
                            Ok(None) => match Message::parse(&t) {
                                Ok(m) => Event::Stdin(m),
                                Err(e) => {
                                    log::warn!("stdin: {e}");
                                    Event::StdinBad(e.reply())
                                }
                            },
                            Err(e) => {
                                log::warn!("stdin: {e}");
                                Event::StdinBad(e.reply())
                            }
                        },
                        // Answered when it ends, with the id a scan of all
                        // of it finds.
                        Line::TooLong(_) => return true,
                        Line::NotUtf8 => Event::StdinBad(jsonrpc::error_reply(
                            None,
                            jsonrpc::PARSE_ERROR,
                            "Parse error: the line is not UTF-8",
                            None,
                        )),
                        Line::Eof => Event::StdinEof,
                    };
                    tx.send(ev).is_ok()
                },
                |big| match stdin_oversized(&big, max) {
                    Some(ev) => big_tx.send(ev).is_ok(),
                    None => true,
                },
            )
        })
        .expect("cannot start the stdin thread");
}

/// A stdin message over `--max-message-size`, dropped: a request is
/// answered with an error under its own id, so the client stops waiting;
/// a reply to the remote's request goes on as an error, so the remote
/// stops waiting; a notification is only logged.
fn stdin_oversized(big: &child::Oversized, max: usize) -> Option<Event> {
    let over = format!("larger than the limit of {max} bytes (see --max-message-size)");
    match big.hint() {
        Some(h) if h.request => {
            log::warn!(
                "stdin: request {} of {} bytes is over --max-message-size; answered with an error",
                h.id,
                big.len
            );
            Some(Event::StdinBad(jsonrpc::error_reply(
                Some(&h.id),
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: message {over}"),
                None,
            )))
        }
        Some(h) => {
            log::warn!(
                "stdin: the reply to request {} is {} bytes, over --max-message-size; the remote gets an error instead",
                h.id,
                big.len
            );
            Some(Event::Stdin(Message::ours(jsonrpc::error_reply(
                Some(&h.id),
                jsonrpc::INTERNAL_ERROR,
                &format!("mcp-proxy: the client's reply was {over}"),
                None,
            ))))
        }
        None if big.names_method() => {
            log::warn!(
                "stdin: a notification of {} bytes is over --max-message-size; dropped",
                big.len
            );
            None
        }
        None => {
            log::warn!(
                "stdin: a message of {} bytes is over --max-message-size and carries no id; dropped",
                big.len
            );
            Some(Event::StdinBad(jsonrpc::error_reply(
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: message {over}"),
                None,
            )))
        }
    }
}

fn fallback_status(code: u16, client_version: Option<&str>) -> bool {
    // SH-71: 2025-11-25 names 400, 404 and 405; earlier revisions any 4xx.
    // 401 and 403 are about credentials, which a GET would not fix.
    match client_version {
        Some(v) if v >= "2025-11-25" => matches!(code, 400 | 404 | 405),
        _ => (400..500).contains(&code) && code != 401 && code != 403,
    }
}

impl Router {
    fn run(&mut self, rx: Receiver<Event>) -> u8 {
        loop {
            if let Some(code) = self.exit {
                return code;
            }
            let next = self.timers.iter().map(|(t, _)| *t).min();
            let ev = match next {
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return 1,
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return 1,
                },
            };
            match ev {
                Some(ev) => self.handle(ev),
                None => self.fire_timers(),
            }
            self.check_eof();
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Stdin(m) => match (m.kind(), m.id()) {
                (Kind::Request, Some(id)) if self.batch_of.contains_key(id) => {
                    // Its reply could not be told from the batch member's.
                    log::warn!(
                        "stdin: request id {id} is already used by a batch in flight; refused"
                    );
                    self.write(jsonrpc::error_reply(
                        Some(id),
                        jsonrpc::INVALID_REQUEST,
                        &format!("Invalid Request: id {id} is already used by a request of a batch still in flight; use an id not in flight"),
                        None,
                    ));
                }
                _ => self.local(m),
            },
            Event::StdinBatch(items) => self.local_batch(items),
            Event::StdinBad(line) => self.write(line),
            Event::StdinEof => {
                log::debug!("stdin closed");
                self.eof = true;
                self.timers
                    .push((Instant::now() + EOF_GRACE, Timer::EofGrace));
            }
            Event::StdoutClosed => self.finish(0),
            Event::Signal(sig) => {
                log::info!("signal {sig}: ending the session");
                self.finish(signals::exit_status(sig));
            }
            Event::Remote { gen, msg } => self.remote_message(gen, msg),
            Event::Accepted { gen, session_id } => {
                if gen != self.gen {
                    return;
                }
                if self.link == Link::Unknown {
                    log::info!("the remote speaks Streamable HTTP");
                    self.link = Link::Streamable;
                }
                if self.session.session_id.is_none() && self.phase == Phase::Handshake {
                    if let Some(s) = session_id
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)))
                    {
                        self.session.session_id = Some(s);
                    }
                }
            }
            Event::Endpoint { gen, data } => self.endpoint(gen, &data),
            Event::Posted { gen, job, outcome } => self.posted(gen, job, outcome),
            Event::ModernMsg { id, seq, msg } => self.modern_message(id, seq, msg),
            Event::ModernDone { id, seq, outcome } => self.modern_done(id, seq, outcome),
            Event::StreamEnded { gen, kind, outcome } => self.stream_ended(gen, kind, outcome),
            Event::Oversized { gen, big, what } => self.oversized(gen, big, what),
        }
    }

    fn write(&self, line: String) {
        let _ = self.out.send(line);
    }

    /// The error reply for a local request the remote could not take.
    fn fail(&mut self, id: &str, cause: &str) {
        if self.inflight.remove(id).is_some() {
            let line = self.error_line(id, cause);
            self.reply(id, line);
        }
    }

    /// Writes the reply to the local request `id`, alone or, when the
    /// request came in a batch, into that batch's array.
    fn reply(&mut self, id: &str, line: String) {
        let Some(n) = self.batch_of.remove(id) else {
            return self.write(line);
        };
        let b = self
            .batches
            .get_mut(&n)
            .expect("a batch lives while any of its ids is mapped");
        b.waiting.remove(id);
        b.replies.push(line);
        self.batch_done(n);
    }

    /// A cancelled member of a batch gets no entry in its array (no reply
    /// is owed for it), and the batch no longer waits for it.
    fn unbatch(&mut self, id: &str) {
        if let Some(n) = self.batch_of.remove(id) {
            if let Some(b) = self.batches.get_mut(&n) {
                b.waiting.remove(id);
            }
            self.batch_done(n);
        }
    }

    /// Writes batch `n` as one array once every request in it is answered
    /// (nothing when it held no request and no invalid member).
    fn batch_done(&mut self, n: u64) {
        if self.batches.get(&n).is_none_or(|b| !b.waiting.is_empty()) {
            return;
        }
        let b = self.batches.remove(&n).expect("checked above");
        if !b.replies.is_empty() {
            self.write(format!("[{}]", b.replies.join(",")));
        }
    }

    fn error_line(&self, id: &str, cause: &str) -> String {
        let url = display_url(&self.url);
        jsonrpc::error_reply(
            Some(id),
            jsonrpc::INTERNAL_ERROR,
            &format!("mcp-proxy: the remote server {url} {cause}"),
            Some(&json!({"url": url, "cause": cause})),
        )
    }

    // ---- from the local client ----

    fn local(&mut self, m: Message) {
        if self.exit.is_some() {
            return;
        }
        let cancel =
            m.kind() == Kind::Notification && m.method() == Some("notifications/cancelled");
        if cancel && self.modern_cancel(&m) {
            return;
        }
        if modern::version_of(&m).is_some() {
            return self.modern_local(m);
        }
        match (m.kind(), m.method()) {
            (Kind::Request, Some("initialize")) => {
                self.init = Some(m.clone());
                self.initialized = None;
                self.negotiated = None;
                self.inflight.insert(
                    m.id().expect("requests have ids").to_owned(),
                    "initialize".into(),
                );
                self.start_session(Some(m), false);
                return;
            }
            (Kind::Notification, Some("notifications/initialized")) => {
                self.initialized = Some(m.clone());
            }
            (Kind::Notification, Some("notifications/cancelled")) => {
                // The client expects no reply any more, and the server owes
                // none (a late one is dropped): stop waiting for it, and do
                // not let a POST that may never end hold a slot.
                if let Some(id) = m.get_raw(&["params", "requestId"]) {
                    if self.inflight.remove(id).is_some() {
                        if self.link != Link::Sse {
                            self.posts = self.posts.saturating_sub(1);
                            self.detached.insert(id.to_owned());
                        }
                        self.unbatch(id);
                    } else if let Some(i) = self
                        .queue
                        .iter()
                        .position(|q| q.kind() == Kind::Request && q.id() == Some(id))
                    {
                        // Still waiting for the session: it is never sent,
                        // so the remote hears of neither it nor its cancel.
                        let id = id.to_owned();
                        self.queue.remove(i);
                        log::debug!("request {id} cancelled before it was sent; dropped");
                        return self.unbatch(&id);
                    }
                }
            }
            _ => {}
        }
        match &self.phase {
            Phase::Ready => self.send(m),
            Phase::Down(cause) => {
                let cause = format!("{cause}; mcp-proxy is reconnecting");
                match (m.kind(), m.id()) {
                    (Kind::Request, Some(id)) => {
                        let line = self.error_line(id, &cause);
                        self.reply(id, line);
                    }
                    _ => log::debug!("dropping a {:?} while the remote is down", m.kind()),
                }
            }
            Phase::Idle => {
                self.queue.push_back(m);
                if self.link == Link::Unknown {
                    // No initialize to detect the transport with: the first
                    // request serves as the probe (SH-71 in 2026-07-28).
                    if let Some(i) = self.queue.iter().position(|q| q.kind() == Kind::Request) {
                        let probe = self.queue.remove(i).expect("position is in range");
                        let id = probe.id().expect("requests have ids").to_owned();
                        self.inflight
                            .insert(id, probe.method().unwrap_or("").to_owned());
                        self.start_session(Some(probe), false);
                    }
                } else {
                    self.start_session(None, false);
                }
            }
            Phase::Connecting | Phase::Handshake => self.queue.push_back(m),
        }
    }

    /// A JSON array on stdin. On a 2025-03-26 session its members go on one
    /// by one as single messages would; the replies to its requests are
    /// gathered and written as one array line ([`Router::reply`]).
    fn local_batch(&mut self, items: Vec<Result<Message, ParseError>>) {
        if self.exit.is_some() {
            return;
        }
        let refuse = |why: &str| {
            log::warn!("stdin: {why}");
            jsonrpc::error_reply(
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: {why}"),
                None,
            )
        };
        if items.is_empty() {
            return self.write(refuse("an empty batch"));
        }
        // Before the remote answers initialize, the version the client
        // asked for. Without any initialize the client speaks 2026-07-28
        // or later (no handshake), where batches do not exist.
        let version = self.negotiated.clone().or_else(|| {
            self.init
                .as_ref()
                .and_then(|m| m.value()["params"]["protocolVersion"].as_str())
                .map(str::to_owned)
        });
        match version.as_deref() {
            Some(BATCH_VERSION) => {}
            Some(v) => {
                return self.write(refuse(&format!(
                    "JSON-RPC batches exist only in protocol version {BATCH_VERSION}, and this session uses {v}; send each message on its own line"
                )))
            }
            None => {
                return self.write(refuse(&format!(
                    "JSON-RPC batches exist only in protocol version {BATCH_VERSION}, and no version has been negotiated (initialize first, on its own line)"
                )))
            }
        }
        let n = self.next_batch;
        self.next_batch += 1;
        let mut batch = Batch::default();
        let mut forward = Vec::new();
        for item in items {
            let m = match item {
                Ok(m) => m,
                Err(e) => {
                    batch.replies.push(e.reply());
                    continue;
                }
            };
            let id = match (m.kind(), m.id()) {
                (Kind::Request, Some(id)) => id.to_owned(),
                _ => {
                    forward.push(m);
                    continue;
                }
            };
            let refused = if m.method() == Some("initialize") {
                Some(format!("initialize must not be part of a batch (protocol {BATCH_VERSION}); send it on its own line"))
            } else if batch.waiting.contains(&id) || self.id_in_flight(&id) {
                // Its reply could not be told from the other request's.
                Some(format!(
                    "id {id} is already used by a request in flight; use an id not in flight"
                ))
            } else {
                None
            };
            match refused {
                Some(why) => batch.replies.push(jsonrpc::error_reply(
                    Some(&id),
                    jsonrpc::INVALID_REQUEST,
                    &format!("Invalid Request: {why}"),
                    None,
                )),
                None => {
                    batch.waiting.insert(id);
                    forward.push(m);
                }
            }
        }
        for id in &batch.waiting {
            self.batch_of.insert(id.clone(), n);
        }
        self.batches.insert(n, batch);
        // Every id is mapped before any member goes on, so replies that
        // come at once (the remote is down) cannot end the batch early.
        for m in forward {
            self.local(m);
        }
        self.batch_done(n);
    }

    /// Whether a local request with `id` is waiting for its reply: sent,
    /// queued, or in a batch.
    fn id_in_flight(&self, id: &str) -> bool {
        let is = |m: &Message| m.kind() == Kind::Request && m.id() == Some(id);
        self.inflight.contains_key(id)
            || self.batch_of.contains_key(id)
            || self.queue.iter().any(is)
            || self.pending_first.as_ref().is_some_and(|j| is(&j.msg))
    }

    /// Sends one message on the current session.
    fn send(&mut self, m: Message) {
        if let (Kind::Request, Some(id)) = (m.kind(), m.id()) {
            self.inflight
                .insert(id.to_owned(), m.method().unwrap_or("").to_owned());
        }
        let open_get = m.method() == Some("notifications/initialized");
        self.post(PostJob {
            msg: m,
            hidden: false,
            probe: false,
            with_session: self.has_session(),
        });
        if open_get {
            self.open_get(None);
        }
    }

    /// Whether requests now carry a session, so that 404 means it is gone:
    /// an `Mcp-Session-Id`, or the HTTP+SSE endpoint (which names one).
    fn has_session(&self) -> bool {
        self.session.session_id.is_some() || (self.link == Link::Sse && self.endpoint.is_some())
    }

    fn post(&mut self, job: PostJob) {
        match self.link {
            Link::Sse => match &self.poster {
                Some(p) => {
                    // Counted until its Posted event, so that an exit after
                    // stdin EOF waits for it; the poster drains its queue
                    // even after the router drops it.
                    self.posts += 1;
                    let _ = p.send(job);
                }
                None => log::warn!("no HTTP+SSE endpoint yet; dropped a message"),
            },
            Link::Streamable | Link::Unknown => {
                // Each POST runs on its own thread, so two POSTs started
                // together may reach the remote in either order. Requests
                // may overtake each other (a slow call must not hold up the
                // next), but a notification or a response is a fence: what
                // the client sent after it waits for its 202, so that, say,
                // `tools/list` never reaches the server before
                // `notifications/initialized`. Queued jobs keep their order.
                if !self.backlog.is_empty() || self.posts >= MAX_POSTS || self.unacked > 0 {
                    self.backlog.push_back(job);
                    return;
                }
                self.start_post(job);
            }
        }
    }

    /// Starts a Streamable HTTP POST now (`post` decided it may).
    fn start_post(&mut self, job: PostJob) {
        self.posts += 1;
        if job.msg.kind() != Kind::Request {
            self.unacked += 1;
        }
        streamable::spawn_post(
            self.remote.clone(),
            self.url.clone(),
            self.session.clone(),
            self.gen,
            job,
            self.tx.clone(),
        );
    }

    // ---- 2026-07-28 requests (modern.rs) ----

    /// A stdin message naming a modern version. Requests each go as a POST
    /// of their own, whatever the legacy session does: the era is per
    /// request (a dual-era server MAY serve both, TRANSPORTS §0), and none
    /// of them needs the session. 2026-07-28 defines no client notification
    /// over HTTP (SX-05; the cancel is handled here), so notifications stay.
    fn modern_local(&mut self, m: Message) {
        let id = match (m.kind(), m.id()) {
            (Kind::Request, Some(id)) => id.to_owned(),
            (kind, _) => {
                return log::warn!(
                    "stdin: a 2026-07-28 {kind:?} ({}) has nothing to go to over HTTP; dropped",
                    m.method().unwrap_or("response")
                )
            }
        };
        if self.batch_of.contains_key(&id) {
            // Batches belong to 2025-03-26; the entry ends the batch's wait.
            let line = jsonrpc::error_reply(
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: a 2026-07-28 request cannot be part of a batch; send it on its own line",
                None,
            );
            return self.reply(&id, line);
        }
        if self.modern.contains_key(&id)
            || self.id_in_flight(&id)
            || self.modern_wait.iter().any(|q| q.id() == Some(&id))
        {
            log::warn!("stdin: request id {id} is already in flight; refused");
            return self.write(jsonrpc::error_reply(
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: id {id} is already used by a request in flight; use an id not in flight"),
                None,
            ));
        }
        if self.modern.len() >= MAX_POSTS {
            return self.modern_wait.push_back(m);
        }
        self.start_modern(m, false, None);
    }

    fn start_modern(&mut self, msg: Message, retried: bool, refetch: Option<Refetch>) {
        let version = modern::version_of(&msg).expect("only modern requests come here");
        let headers = modern::headers(&msg, version, &self.tools);
        let agent = self
            .idle_agents
            .pop()
            .unwrap_or_else(|| self.remote.exchange_agent());
        self.modern_seq += 1;
        let seq = self.modern_seq;
        streamable::spawn_modern(
            self.remote.clone(),
            agent.clone(),
            self.url.clone(),
            &msg,
            seq,
            headers,
            self.tx.clone(),
        );
        let id = msg.id().expect("modern exchanges are requests").to_owned();
        let call = ModernCall {
            msg,
            seq,
            agent,
            retried,
            refetch,
        };
        self.modern.insert(id, call);
    }

    /// LC-42, RL-06 (B): the cancel of a modern request is closing its
    /// HTTP exchange; `notifications/cancelled` is not POSTed, and nothing
    /// more is written for the id.
    /// True when the cancel was for a modern request (or for nothing, with
    /// no legacy session to forward it on): then it is handled here.
    fn modern_cancel(&mut self, m: &Message) -> bool {
        let Some(id) = m.get_raw(&["params", "requestId"]) else {
            return false;
        };
        if let Some(call) = self.modern.remove(id) {
            log::debug!("request {id} cancelled: closing its exchange");
            call.agent.shutdown();
            // A `tools/list` re-fetch for it stops: no more pages go out.
            let pages: Vec<String> = self
                .modern
                .iter()
                .filter(|(_, c)| c.refetch.as_ref().is_some_and(|r| r.call == id))
                .map(|(k, _)| k.clone())
                .collect();
            for page in pages {
                let c = self.modern.remove(&page).expect("listed just above");
                c.agent.shutdown();
            }
            self.modern_next();
        } else if let Some(i) = self.modern_wait.iter().position(|q| q.id() == Some(id)) {
            self.modern_wait.remove(i);
        } else if self.init.is_none()
            && self.phase == Phase::Idle
            && !self.inflight.contains_key(id)
        {
            log::debug!("stdin: a cancel for request {id}, which is not in flight; dropped");
        } else {
            return false;
        }
        true
    }

    /// Starts what waits for a slot.
    fn modern_next(&mut self) {
        while self.modern.len() < MAX_POSTS {
            let Some(m) = self.modern_wait.pop_front() else {
                break;
            };
            self.start_modern(m, false, None);
        }
    }

    /// Keeps the agent of an answered or ended exchange for the next one.
    /// A JSON reply was read whole before it was handed on, so its
    /// connection is back in the agent's pool already; the rest of an SSE
    /// reply is dropped by its worker, which closes that connection, and
    /// the next exchange opens one of its own in the same agent.
    fn reuse_agent(&mut self, agent: ureq::Agent) {
        if self.idle_agents.len() < MAX_IDLE_AGENTS {
            self.idle_agents.push(agent);
        }
    }

    fn modern_message(&mut self, id: String, seq: u64, msg: Message) {
        let Some(call) = self.modern.get(&id).filter(|c| c.seq == seq) else {
            return log::debug!("dropping a message for request {id}, no longer waiting");
        };
        let hidden = call.refetch.is_some();
        if msg.kind() == Kind::Notification {
            // The server ends a `subscriptions/listen` stream with a cancel
            // naming it (LC-42): no reply follows, so none is owed.
            let ends = msg.method() == Some("notifications/cancelled")
                && msg.get_raw(&["params", "requestId"]) == Some(id.as_str());
            if ends {
                let call = self.modern.remove(&id).expect("checked above");
                self.reuse_agent(call.agent);
                if let Some(r) = call.refetch {
                    log::warn!("re-fetching tools/list for request {}: the remote cancelled page {}; sending the call again with what was learnt", r.call, r.pages);
                    self.refetch_end(r, false);
                }
                self.modern_next();
            }
            if !hidden {
                self.write(msg.into_raw());
            }
            return;
        }
        if msg.kind() != Kind::Response || msg.id() != Some(id.as_str()) {
            return log::warn!(
                "the remote sent a {:?} on the reply to request {id}, which 2026-07-28 forbids (SX-07); dropped",
                msg.kind()
            );
        }
        let call = self.modern.remove(&id).expect("checked above");
        self.reuse_agent(call.agent);
        if let Some(r) = call.refetch {
            self.refetch_page(r, msg);
            return self.modern_next();
        }
        let is_list = call.msg.method() == Some("tools/list") && !msg.is_error();
        let first_page = call.msg.value()["params"]["cursor"].is_null();
        let line = if is_list {
            modern::learn_tools(&mut self.tools, msg, first_page)
        } else {
            msg.into_raw()
        };
        self.write(line);
        self.modern_next();
    }

    /// Sends a `tools/call` again after the schemas were fetched anew,
    /// unless the client has cancelled it meanwhile.
    fn retry_call(&mut self, id: &str) {
        if let Some(call) = self.modern.remove(id) {
            log::info!("request {id}: sending tools/call again with the fetched tool schemas");
            // Its exchange (the 400) has ended.
            self.reuse_agent(call.agent);
            self.start_modern(call.msg, true, None);
        }
    }

    fn modern_done(&mut self, id: String, seq: u64, outcome: Outcome) {
        let Some(call) = self.modern.get(&id).filter(|c| c.seq == seq) else {
            return; // answered, or cancelled
        };
        if call.refetch.is_some() {
            let c = self.modern.remove(&id).expect("checked above");
            self.reuse_agent(c.agent);
            let r = c.refetch.expect("checked above");
            // What earlier pages taught is used; the retry shows the rest.
            log::warn!(
                "re-fetching tools/list for request {}: page {} failed ({}); sending the call again with what was learnt",
                r.call,
                r.pages,
                describe(&outcome)
            );
            self.refetch_end(r, false);
            return self.modern_next();
        }
        let cause = match outcome {
            Outcome::Status(code, reason, body) => {
                let err = Message::parse(&body).ok().filter(Message::is_error);
                let code32 = err.as_ref().and_then(|e| e.value()["error"]["code"].as_i64());
                if code == 400
                    && code32 == Some(HEADER_MISMATCH)
                    && call.msg.method() == Some("tools/call")
                    && !call.retried
                {
                    return self.refetch_tools(id);
                }
                let call = self.modern.remove(&id).expect("checked above");
                self.reuse_agent(call.agent);
                self.modern_next();
                if let Some(e) = err {
                    // The remote's own error, with the client's id (SX-32
                    // has servers send it; an id-less one is fixed up).
                    let line = match e.id() {
                        Some(i) if i == id => e.into_raw(),
                        _ => {
                            let v = &e.value()["error"];
                            jsonrpc::error_reply(
                                Some(&id),
                                v["code"].as_i64().unwrap_or(jsonrpc::INTERNAL_ERROR),
                                v["message"].as_str().unwrap_or(""),
                                v.get("data"),
                            )
                        }
                    };
                    return self.write(line);
                }
                self.remote
                    .auth_refused(code)
                    .unwrap_or_else(|| format!("answered HTTP {code} {reason}{}", excerpt(&body)))
            }
            // SX-09: a 2026-07-28 reply cannot be resumed, and sending the
            // request again under the same id is not allowed: the client
            // decides whether to re-issue it with a new one.
            Outcome::Broken { cause, .. } => format!(
                "dropped the reply stream before answering ({cause}); the request is lost (2026-07-28 streams cannot be resumed): re-issue it with a new id"
            ),
            Outcome::Done => "ended its reply without answering the request".into(),
            Outcome::Unreachable(cause) | Outcome::Bad(cause) => cause,
        };
        if let Some(call) = self.modern.remove(&id) {
            self.reuse_agent(call.agent);
        }
        self.modern_next();
        let line = self.error_line(&id, &cause);
        self.write(line);
    }

    /// SX-26: after a HeaderMismatch on a `tools/call`, fetch every page
    /// of `tools/list` again (with the call's `_meta`), then send the call
    /// once more. Safe to resend under the same id: a 400 means the remote
    /// rejected it before processing it (SX-27).
    fn refetch_tools(&mut self, call_id: String) {
        log::info!("request {call_id}: the remote found a header mismatch (-32020); fetching tools/list again");
        let r = Refetch {
            call: call_id,
            pages: 0,
            listing: modern::Listing::default(),
        };
        self.fetch_page(r, None);
    }

    /// Sends the request for the next page of a re-fetch (the first when
    /// `cursor`, raw JSON, is None). Each page has an id of its own, as
    /// the end of the previous exchange may still be on its way, and never
    /// one a local request in flight uses.
    fn fetch_page(&mut self, mut r: Refetch, cursor: Option<&str>) {
        let id = loop {
            self.refetches += 1;
            let id = jsonrpc::quote(&format!("mcp-proxy-tools-{}", self.refetches));
            if !self.modern.contains_key(&id) {
                break id;
            }
        };
        r.pages += 1;
        let meta = self.modern[&r.call]
            .msg
            .get_raw(&["params", "_meta"])
            .expect("modern requests carry _meta")
            .to_owned();
        let cursor = cursor
            .map(|c| format!(r#","cursor":{c}"#))
            .unwrap_or_default();
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"_meta":{meta}{cursor}}}}}"#
        );
        self.start_modern(Message::ours(line), false, Some(r));
    }

    /// One page of a re-fetch has come: ask for the next, or end it.
    fn refetch_page(&mut self, mut r: Refetch, msg: Message) {
        if !self.modern.contains_key(&r.call) {
            return; // cancelled
        }
        let (call, page) = (r.call.clone(), r.pages);
        if msg.is_error() {
            let why = msg.value()["error"]["message"].as_str().unwrap_or("");
            log::warn!("re-fetching tools/list for request {call}: page {page} was answered with an error ({why}); sending the call again with what was learnt");
            return self.refetch_end(r, false);
        }
        let cursor = modern::next_cursor(&msg).map(str::to_owned);
        if !r.listing.add_page(msg) {
            log::warn!("re-fetching tools/list for request {call}: page {page} has no tools array; sending the call again with what was learnt");
            return self.refetch_end(r, false);
        }
        match cursor {
            None => self.refetch_end(r, true),
            Some(_) if page >= MAX_REFETCH_PAGES => {
                log::warn!("re-fetching tools/list for request {call}: the remote still has pages after {MAX_REFETCH_PAGES}; sending the call again with what those taught");
                self.refetch_end(r, false);
            }
            Some(c) => self.fetch_page(r, Some(&c)),
        }
    }

    /// Puts what a re-fetch learnt in use (all of it replaces the schemas
    /// when `complete`) and sends its call again.
    fn refetch_end(&mut self, r: Refetch, complete: bool) {
        r.listing.apply(&mut self.tools, complete);
        self.retry_call(&r.call);
    }

    // ---- sessions ----

    /// Starts a new session. `first` is the handshake request (the local
    /// `initialize`, our hidden replay of it, or an auto-detection probe).
    fn start_session(&mut self, first: Option<Message>, hidden: bool) {
        self.gen += 1;
        self.session = SessionHeaders::default();
        self.endpoint = None;
        self.poster = None;
        self.get_open = false;
        self.pending_first = None;
        self.handshake = first
            .as_ref()
            .and_then(|m| m.id())
            .map(|id| (id.to_owned(), hidden));
        let job = first.map(|msg| PostJob {
            msg,
            hidden,
            probe: self.link == Link::Unknown,
            with_session: false,
        });
        if self.link == Link::Sse || job.is_some() {
            self.timers.push((
                Instant::now() + HANDSHAKE_TIMEOUT,
                Timer::Handshake { gen: self.gen },
            ));
        }
        match self.link {
            Link::Sse => {
                self.phase = Phase::Connecting;
                self.pending_first = job;
                sse_link::spawn_stream(
                    self.remote.clone(),
                    self.url.clone(),
                    self.gen,
                    self.tx.clone(),
                );
            }
            Link::Streamable | Link::Unknown => match job {
                Some(job) => {
                    self.phase = Phase::Handshake;
                    self.post(job);
                }
                None => self.ready(),
            },
        }
    }

    /// The session works: send what waited for it.
    fn ready(&mut self) {
        self.phase = Phase::Ready;
        self.handshake = None;
        while let Some(m) = self.queue.pop_front() {
            if self.phase != Phase::Ready {
                self.queue.push_front(m);
                break;
            }
            self.send(m);
        }
    }

    /// The remote can't be reached: fail everything waiting, retry later.
    fn go_down(&mut self, cause: String) {
        self.gen += 1;
        self.fail_all(&cause);
        let delay = self.backoff.next_delay();
        log::warn!(
            "the remote server {} {cause}; retrying in {} ms",
            display_url(&self.url),
            delay.as_millis()
        );
        self.phase = Phase::Down(cause);
        self.poster = None;
        self.timers
            .push((Instant::now() + delay, Timer::Reconnect { gen: self.gen }));
    }

    /// Errors for every request in flight, queued or waiting for a POST
    /// slot: exactly one error per request.
    fn fail_all(&mut self, cause: &str) {
        let waiting: Vec<Message> = self
            .queue
            .drain(..)
            .chain(self.backlog.drain(..).map(|j| j.msg))
            .chain(self.pending_first.take().map(|j| j.msg))
            .collect();
        for m in waiting {
            if let (Kind::Request, Some(id)) = (m.kind(), m.id()) {
                if self
                    .handshake
                    .as_ref()
                    .is_some_and(|(h, hidden)| *hidden && h == id)
                {
                    continue;
                }
                self.inflight.remove(id);
                let line = self.error_line(id, cause);
                self.reply(id, line);
            }
        }
        let mut ids: Vec<String> = self.inflight.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.fail(&id, cause);
        }
    }

    /// The session is gone (404, or the HTTP+SSE stream ended): error what
    /// was in flight and start a new session, replaying the handshake.
    fn lose_session(&mut self, cause: &str) {
        log::warn!(
            "the session with {} ended ({cause}); starting a new one",
            display_url(&self.url)
        );
        let mut ids: Vec<String> = self.inflight.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.fail(&id, &format!("{cause}; the request's outcome is unknown"));
        }
        self.reconnect();
    }

    fn reconnect(&mut self) {
        let replay = self.init.as_ref().map(|m| {
            m.with_id(&jsonrpc::quote(&format!(
                "mcp-proxy-reinit-{}",
                self.gen + 1
            )))
        });
        self.start_session(replay.clone(), replay.is_some());
    }

    fn endpoint(&mut self, gen: u64, data: &str) {
        if gen != self.gen || self.phase != Phase::Connecting {
            return;
        }
        let Some(url) = http::resolve(&self.url, data) else {
            return self.go_down(format!("sent an endpoint that is not a URL: {data:?}"));
        };
        if http::origin(&url) != http::origin(&self.url) {
            log::error!(
                "the remote's endpoint {} is on another origin than {}; refusing to send messages there",
                display_url(&url),
                display_url(&self.url)
            );
            return self.go_down(format!(
                "named an endpoint on another origin ({}), which mcp-proxy refuses",
                display_url(&url)
            ));
        }
        log::debug!("HTTP+SSE endpoint: {}", display_url(&url));
        let (ptx, prx) = channel();
        sse_link::spawn_poster(self.remote.clone(), url.clone(), gen, prx, self.tx.clone());
        self.endpoint = Some(url);
        self.poster = Some(ptx);
        match self.pending_first.take() {
            Some(job) => {
                self.phase = Phase::Handshake;
                self.post(job);
            }
            None => {
                self.backoff.reset();
                self.ready();
            }
        }
    }

    // ---- from the remote ----

    fn remote_message(&mut self, gen: u64, msg: Message) {
        if msg.kind() != Kind::Response {
            return self.write(msg.into_raw());
        }
        let id = msg.id().map(str::to_owned);
        let handshake = gen == self.gen
            && self.phase == Phase::Handshake
            && id.is_some()
            && self.handshake.as_ref().map(|(h, _)| h) == id.as_ref();
        if handshake {
            let hidden = self.handshake.as_ref().is_some_and(|(_, h)| *h);
            if let Some(v) = msg.value()["result"]["protocolVersion"].as_str() {
                self.session.protocol_version = Some(v.to_owned());
                self.negotiated = Some(v.to_owned());
            }
            if hidden {
                if msg.is_error() {
                    let why = msg.value()["error"]["message"]
                        .as_str()
                        .unwrap_or("an error")
                        .to_owned();
                    return self.go_down(format!("refused the replayed initialize ({why})"));
                }
                log::info!("reconnected to {}", display_url(&self.url));
                self.backoff.reset();
                if let Some(n) = self.initialized.clone() {
                    self.post(PostJob {
                        msg: n,
                        hidden: true,
                        probe: false,
                        with_session: self.has_session(),
                    });
                    self.open_get(None);
                }
                self.ready();
                return;
            }
            if !msg.is_error() {
                log::info!("connected to {}", display_url(&self.url));
                self.backoff.reset();
            }
            self.ready();
        }
        match id {
            Some(id) if self.inflight.remove(&id).is_some() => self.reply(&id, msg.into_raw()),
            _ => log::debug!("dropping a reply to a request that is no longer waiting"),
        }
    }

    /// An event over `--max-message-size` was dropped: whoever waits for
    /// it gets an error instead, so that no request waits forever.
    fn oversized(&mut self, gen: u64, big: Oversized, what: &str) {
        let max = self.remote.max_message_bytes;
        let over = format!("over the message size limit of {max} bytes (--max-message-size)");
        match big {
            Oversized::Request(id) => {
                if gen != self.gen {
                    return log::warn!("the remote sent a request {over} on its {what}, on a session now gone; dropped");
                }
                log::warn!("the remote sent a request {over} on its {what}; answering it with an error");
                let msg = Message::ours(jsonrpc::error_reply(
                    Some(&id),
                    jsonrpc::INVALID_REQUEST,
                    &format!("mcp-proxy: the request is {over}"),
                    None,
                ));
                match self.phase {
                    // Hidden: on a new session (after a 404) it answers
                    // nothing, so it is not sent again.
                    Phase::Ready => self.post(PostJob {
                        msg,
                        hidden: true,
                        probe: false,
                        with_session: self.has_session(),
                    }),
                    Phase::Connecting | Phase::Handshake => self.queue.push_back(msg),
                    Phase::Idle | Phase::Down(_) => {
                        log::debug!("the session is down; no error sent")
                    }
                }
            }
            Oversized::Response(id) => {
                let cause = format!(
                    "sent a reply larger than the message size limit ({max} bytes, see --max-message-size)"
                );
                if self.inflight.contains_key(&id) {
                    log::warn!("request {id}: the remote {cause}");
                } else {
                    log::warn!("the remote sent a reply {over} on its {what}, to no request in flight; dropped");
                }
                // As the remote's own error, so that a handshake it answers
                // ends as if the remote had refused it.
                let msg = Message::ours(self.error_line(&id, &cause));
                self.remote_message(gen, msg);
            }
            Oversized::Notification => {
                log::warn!("the remote sent a notification {over} on its {what}; dropped")
            }
            Oversized::Unknown => log::warn!(
                "the remote sent a message {over} on its {what}, with neither an id nor a method; dropped"
            ),
        }
    }

    fn posted(&mut self, gen: u64, job: PostJob, outcome: Outcome) {
        let detached = job.msg.kind() == Kind::Request
            && job.msg.id().is_some_and(|id| self.detached.remove(id));
        if !detached {
            self.posts = self.posts.saturating_sub(1);
        }
        if self.link != Link::Sse {
            if job.msg.kind() != Kind::Request {
                self.unacked = self.unacked.saturating_sub(1);
            }
            // Start what the queue allows, in order (see `post`).
            while self.posts < MAX_POSTS && self.unacked == 0 {
                let Some(next) = self.backlog.pop_front() else {
                    break;
                };
                self.start_post(next);
            }
        }
        let id = (job.msg.kind() == Kind::Request)
            .then(|| job.msg.id().map(str::to_owned))
            .flatten();
        let current = gen == self.gen;
        let is_handshake =
            current && id.is_some() && self.handshake.as_ref().map(|(h, _)| h) == id.as_ref();
        match outcome {
            Outcome::Done => {}
            Outcome::Unreachable(cause) => {
                if current {
                    self.go_down(cause);
                } else if let Some(id) = id {
                    self.fail(&id, &cause);
                }
            }
            Outcome::Status(code, reason, body) => {
                let client_version = job.msg.value()["params"]["protocolVersion"].as_str();
                if job.probe && current && fallback_status(code, client_version) {
                    log::info!(
                        "the remote answered {code} to a Streamable HTTP POST; trying HTTP+SSE"
                    );
                    self.link = Link::Sse;
                    self.phase = Phase::Connecting;
                    self.pending_first = Some(PostJob {
                        probe: false,
                        ..job
                    });
                    sse_link::spawn_stream(
                        self.remote.clone(),
                        self.url.clone(),
                        self.gen,
                        self.tx.clone(),
                    );
                    return;
                }
                if code == 404 && job.with_session && current && !is_handshake {
                    // SH-54: the session is gone; this message was not
                    // processed, so it may go again on the new session.
                    if let Some(id) = &id {
                        self.inflight.remove(id);
                    }
                    if !job.hidden {
                        self.queue.push_front(job.msg);
                    }
                    return self.lose_session("the remote no longer knows the session (404)");
                }
                let cause = self
                    .remote
                    .auth_refused(code)
                    .unwrap_or_else(|| format!("answered HTTP {code} {reason}{}", excerpt(&body)));
                if is_handshake && (code >= 500 || job.hidden) {
                    if let Some(id) = &id {
                        if !job.hidden {
                            // Prefer the remote's own JSON-RPC error, if any.
                            self.reply_or_fail(id, &body, &cause);
                        }
                    }
                    return self.go_down(cause);
                }
                if is_handshake {
                    self.phase = Phase::Idle;
                    self.handshake = None;
                }
                if let Some(id) = id {
                    self.reply_or_fail(&id, &body, &cause);
                } else {
                    log::warn!(
                        "the remote {} a {}",
                        cause,
                        job.msg.method().unwrap_or("response")
                    );
                }
            }
            Outcome::Broken {
                last_id: Some(last_id),
                retry,
                cause,
            } if current && id.is_some() && self.link == Link::Streamable => {
                let id = id.expect("checked above");
                log::info!("the reply stream for request {id} broke ({cause}); resuming");
                let delay = retry.map(Duration::from_millis).unwrap_or_default();
                self.timers.push((
                    Instant::now() + delay,
                    Timer::Resume {
                        gen,
                        request: id,
                        last_id: Some(last_id),
                        attempt: 1,
                    },
                ));
            }
            Outcome::Broken { cause, .. } | Outcome::Bad(cause) => {
                if let Some(id) = id {
                    // Unless it was already answered (say, failed for the
                    // oversized event that ended its reply stream).
                    if self.inflight.contains_key(&id) {
                        log::warn!("request {id}: the remote {cause}");
                    }
                    if is_handshake && job.hidden {
                        return self.go_down(cause);
                    }
                    self.fail(&id, &cause);
                    if is_handshake {
                        self.phase = Phase::Idle;
                        self.handshake = None;
                    }
                }
            }
        }
    }

    /// Forwards the remote's JSON-RPC error for `id` when the body is one,
    /// else writes our own error.
    fn reply_or_fail(&mut self, id: &str, body: &str, cause: &str) {
        if let Ok(m) = Message::parse(body) {
            if m.kind() == Kind::Response && m.id() == Some(id) {
                self.inflight.remove(id);
                return self.reply(id, m.into_raw());
            }
        }
        self.fail(id, cause);
    }

    fn open_get(&mut self, last_id: Option<String>) {
        if self.link != Link::Streamable || self.get_open {
            return;
        }
        self.get_open = true;
        streamable::spawn_get(
            self.remote.clone(),
            self.url.clone(),
            self.session.clone(),
            self.gen,
            StreamKind::Get,
            last_id,
            self.tx.clone(),
        );
    }

    fn stream_ended(&mut self, gen: u64, kind: StreamKind, outcome: Outcome) {
        let current = gen == self.gen;
        match kind {
            StreamKind::Legacy => {
                if !current {
                    return;
                }
                match outcome {
                    Outcome::Unreachable(cause) | Outcome::Bad(cause) => self.go_down(cause),
                    Outcome::Status(code, reason, body) => {
                        let cause = self.remote.auth_refused(code).unwrap_or_else(|| {
                            format!("answered HTTP {code} {reason}{}", excerpt(&body))
                        });
                        self.go_down(cause)
                    }
                    Outcome::Broken { cause, .. } if self.phase == Phase::Connecting => {
                        self.go_down(format!("{cause} before naming its endpoint"))
                    }
                    Outcome::Broken { cause, .. } => {
                        self.lose_session(&format!("closed the SSE stream ({cause})"))
                    }
                    Outcome::Done => self.lose_session("closed the SSE stream"),
                }
            }
            StreamKind::Get => {
                if !current {
                    return;
                }
                self.get_open = false;
                match outcome {
                    Outcome::Done => {}
                    Outcome::Unreachable(cause) => self.go_down(cause),
                    Outcome::Status(405, ..) => {
                        log::debug!("the remote offers no GET stream (405)")
                    }
                    Outcome::Status(409, ..) => {
                        log::info!(
                            "the remote refused a second GET stream (409); carrying on without it"
                        )
                    }
                    Outcome::Status(404, ..) if self.session.session_id.is_some() => {
                        self.lose_session("the remote no longer knows the session (404)")
                    }
                    Outcome::Status(code, reason, _) if code < 500 => {
                        // SH-22 names 405; other refusals mean the same to
                        // us, and asking again would not change the answer.
                        log::info!(
                            "the remote refused the GET stream (HTTP {code} {reason}); carrying on without it"
                        )
                    }
                    Outcome::Status(code, reason, _) => {
                        let delay = self.backoff.next_delay();
                        log::warn!(
                            "the GET stream got HTTP {code} {reason}; retrying in {} ms",
                            delay.as_millis()
                        );
                        self.timers.push((
                            Instant::now() + delay,
                            Timer::OpenGet { gen, last_id: None },
                        ));
                    }
                    Outcome::Broken {
                        last_id,
                        retry,
                        cause,
                    } => {
                        log::info!("the GET stream ended ({cause}); reopening it");
                        let delay = retry.map(Duration::from_millis).unwrap_or(DEFAULT_RETRY);
                        self.get_open = true; // until the timer reopens it
                        self.timers
                            .push((Instant::now() + delay, Timer::OpenGet { gen, last_id }));
                    }
                    Outcome::Bad(cause) => log::warn!("the GET stream: the remote {cause}"),
                }
            }
            StreamKind::Resume { request, attempt } => {
                let waiting = self.inflight.contains_key(&request);
                match outcome {
                    Outcome::Done => {}
                    _ if !current || !waiting => {
                        if waiting {
                            self.fail(
                                &request,
                                "dropped the reply stream; the request's outcome is unknown",
                            );
                        }
                    }
                    Outcome::Unreachable(cause) => self.go_down(cause),
                    Outcome::Status(404, ..) if self.session.session_id.is_some() => {
                        self.lose_session("the remote no longer knows the session (404)")
                    }
                    Outcome::Broken {
                        last_id,
                        retry,
                        cause,
                    } if attempt < MAX_RESUMES => {
                        log::info!("the resumed reply stream for request {request} broke ({cause}); resuming again");
                        let delay = retry.map(Duration::from_millis).unwrap_or(DEFAULT_RETRY);
                        self.timers.push((
                            Instant::now() + delay,
                            Timer::Resume {
                                gen,
                                request,
                                last_id,
                                attempt: attempt + 1,
                            },
                        ));
                    }
                    Outcome::Status(code, reason, body) => self.fail(
                        &request,
                        &format!(
                            "answered HTTP {code} {reason}{} when resuming the reply stream",
                            excerpt(&body)
                        ),
                    ),
                    Outcome::Broken { cause, .. } | Outcome::Bad(cause) => self.fail(
                        &request,
                        &format!("{cause}; the request's outcome is unknown"),
                    ),
                }
            }
        }
    }

    // ---- timers and exit ----

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.timers = later;
        for (_, timer) in due {
            match timer {
                Timer::Reconnect { gen } => {
                    if gen == self.gen && matches!(self.phase, Phase::Down(_)) {
                        log::info!("reconnecting to {}", display_url(&self.url));
                        self.reconnect();
                    }
                }
                Timer::OpenGet { gen, last_id } => {
                    if gen == self.gen {
                        self.get_open = false;
                        self.open_get(last_id);
                    }
                }
                Timer::Resume {
                    gen,
                    request,
                    last_id,
                    attempt,
                } => {
                    if gen == self.gen && self.inflight.contains_key(&request) {
                        streamable::spawn_get(
                            self.remote.clone(),
                            self.url.clone(),
                            self.session.clone(),
                            gen,
                            StreamKind::Resume { request, attempt },
                            last_id,
                            self.tx.clone(),
                        );
                    } else if self.inflight.contains_key(&request) {
                        self.fail(
                            &request,
                            "lost the session; the request's outcome is unknown",
                        );
                    }
                }
                Timer::Handshake { gen } => {
                    if gen == self.gen && matches!(self.phase, Phase::Connecting | Phase::Handshake)
                    {
                        self.go_down(format!(
                            "did not complete the session handshake within {} s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ));
                    }
                }
                Timer::EofGrace => {
                    if !self.inflight.is_empty() {
                        log::warn!(
                            "stdin closed; {} request(s) still in flight are abandoned",
                            self.inflight.len()
                        );
                    }
                    self.finish(0);
                }
            }
        }
    }

    /// After stdin closes, leave as soon as nothing is owed to the client.
    fn check_eof(&mut self) {
        if self.eof
            && self.exit.is_none()
            && self.inflight.is_empty()
            && self.queue.is_empty()
            && self.backlog.is_empty()
            && self.posts == 0
            && self.modern.is_empty()
            && self.modern_wait.is_empty()
        {
            self.finish(0);
        }
    }

    fn finish(&mut self, code: u8) {
        if self.exit.is_some() {
            return;
        }
        self.exit = Some(code);
        if self.link != Link::Streamable {
            return;
        }
        let Some(sid) = self.session.session_id.clone() else {
            return;
        };
        // SH-55: tell the remote we are done, but never wait long for it.
        let (done_tx, done) = channel();
        let remote = self.remote.clone();
        let url = self.url.clone();
        let sess = self.session.clone();
        let _ = thread::Builder::new().name("delete".into()).spawn(move || {
            let mut h = vec![("Mcp-Session-Id", sid.as_str())];
            if let Some(v) = &sess.protocol_version {
                h.push(("MCP-Protocol-Version", v));
            }
            let r = remote.send("DELETE", &url, &h, None);
            let _ = done_tx.send(r.map(|res| res.status().as_u16()));
        });
        match done.recv_timeout(EXIT_TIMEOUT) {
            Ok(Ok(s)) => log::debug!("DELETE of the session: HTTP {s}"),
            Ok(Err(e)) => log::debug!("DELETE of the session failed: the remote {e}"),
            Err(_) => log::debug!("DELETE of the session timed out"),
        }
    }
}

/// Messages from the remote: one, or a 2025-03-26 batch (JSON-RPC
/// arrays), whose elements are forwarded one by one. Invalid elements of a
/// batch are logged and skipped.
pub(crate) fn parse_remote(text: &str) -> Result<Vec<Message>, String> {
    match Message::parse_batch(text) {
        Ok(Some(items)) => Ok(items
            .into_iter()
            .filter_map(|m| {
                m.map_err(|e| log::warn!("the remote sent a batch element that is not a JSON-RPC message ({e}); dropped"))
                    .ok()
            })
            .collect()),
        Ok(None) => Message::parse(text).map(|m| vec![m]).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// How an exchange ended without an answer, for a log line.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Status(code, reason, body) => format!("HTTP {code} {reason}{}", excerpt(body)),
        Outcome::Broken { cause, .. } => format!("the reply stream broke: {cause}"),
        Outcome::Done => "the reply ended without an answer".into(),
        Outcome::Unreachable(cause) | Outcome::Bad(cause) => cause.clone(),
    }
}

/// ": <first line of the body>" for error messages, bounded.
fn excerpt(body: &str) -> String {
    const MAX_CHARS: usize = 200;
    let line = body.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return String::new();
    }
    let mut s: String = line.chars().take(MAX_CHARS).collect();
    if line.chars().count() > MAX_CHARS {
        s.push('…');
    }
    format!(": {s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_follows_sh71_per_revision() {
        for code in [400, 404, 405] {
            assert!(fallback_status(code, Some("2025-11-25")));
            assert!(fallback_status(code, Some("2025-03-26")));
        }
        assert!(!fallback_status(406, Some("2025-11-25")));
        assert!(fallback_status(406, Some("2025-06-18")));
        assert!(fallback_status(410, None));
        assert!(!fallback_status(401, Some("2024-11-05")));
        assert!(!fallback_status(500, Some("2024-11-05")));
        assert!(!fallback_status(200, None));
    }

    #[test]
    fn remote_batches_are_split() {
        let v = parse_remote(
            r#"[{"jsonrpc":"2.0","method":"a"}, 7, {"jsonrpc":"2.0","id":1,"result":{}}]"#,
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].raw(), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            parse_remote(r#" {"jsonrpc":"2.0","method":"b"} "#)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_remote("not json").is_err());
    }

    #[test]
    fn oversized_events_are_told_apart_by_a_scan() {
        let of = |text: &str| {
            let mut scan = jsonrpc::IdScan::new();
            scan.feed(text.as_bytes());
            Oversized::of(scan.hint(), scan.names_method())
        };
        assert_eq!(
            of(r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#),
            Oversized::Request(r#""s1""#.into())
        );
        assert_eq!(
            of(r#"{"method":"roots/list","params":{"x":""},"jsonrpc":"2.0","id":7}"#),
            Oversized::Request("7".into())
        );
        assert_eq!(
            of(r#"{"jsonrpc":"2.0","result":{"id":9},"id":3}"#),
            Oversized::Response("3".into())
        );
        assert_eq!(
            of(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"id":1}}"#),
            Oversized::Notification
        );
        assert_eq!(of(r#"{"result":{"content":[]}}"#), Oversized::Unknown);
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt("oops\nmore"), ": oops");
        assert_eq!(excerpt(&"x".repeat(500)).chars().count(), 2 + 200 + 1);
    }
}
