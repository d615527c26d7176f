//! The server-mode router: one stdio child shared by many HTTP sessions.
//!
//! One router thread per child owns every piece of routing state: the
//! session table, the upstream-id map, the progress-token map, the pending
//! server-to-client requests, subscriptions and per-session log levels.
//! The HTTP threads and the child's pumps talk to it only through [`Event`]s
//! (with a reply channel where they need an answer), so no lock guards any
//! of it. The router never blocks on a client: each outgoing stream is a
//! bounded queue (queue.rs) fed with `try_send`, and a full one is a slow
//! consumer whose session is dropped.
//!
//! Threads: `router-NAME` (this loop) spawns the child, so the child's
//! PDEATHSIG is tied to a thread that lives as long as the child is wanted,
//! and the child's three pumps (`NAME-stdout`, `NAME-stdin`, `NAME-stderr`,
//! see child.rs). The loop ends on [`Event::Shutdown`] after shutting the
//! child down; the pumps end with the child's pipes.
//!
//! Lifecycle: the router starts its child as soon as its thread runs (so
//! all servers start in parallel), initializes it itself, and restarts it
//! whenever it exits, fails to start or does not answer `initialize` within
//! the init timeout: with exponential backoff from [`RestartPolicy::backoff`]
//! up to [`RESTART_BACKOFF_CAP`]. More than `max_restarts` restarts within
//! `window` mark the server `failed`; it is then retried every
//! [`RestartPolicy::failed_retry`] (never when that is `None`) and becomes
//! `running` again when a retry works.
//! Sessions outlive restarts: their ids stay valid, and after a restart each
//! gets `notifications/*/list_changed` for what the new child advertises,
//! and the new child is told the sessions' subscriptions and log level.
//! Requests arriving while the child (re)starts wait for it (at most
//! [`MAX_PENDING`] of them; they fail when that attempt fails); requests to
//! a failed server fail at once. Each child's lines carry a generation
//! number, so a late line of a replaced child is never taken for the new
//! one's.
//!
//! Routing rules (DESIGN.md "Routing rules in server mode"): the proxy
//! initializes the child once and answers each session's `initialize` from
//! the cached result; every request gets a fresh upstream id and its reply
//! goes back with the session's own id, byte for byte; progress tokens and
//! cancelled request ids are rewritten the same way; a request from the child
//! goes to the one session that can be working with it, or is refused.
//!
//! The router also counts what happens to its server for `/metrics`
//! (server/metrics.rs), in plain integers it alone writes; a copy goes out
//! with each status answer.
//!
//! 2026-07-28 requests (server/modern.rs) are one-POST sessions of their own
//! ([`Transport::Modern`]) on the same child: relayed with the same id and
//! token rewriting, they get only their own progress, the log messages they
//! asked for, and the notifications of their `subscriptions/listen` (routed
//! by subscriptionId); never a request from the child (SX-07). Whether the
//! initialized child still serves them is learnt with a `server/discover`
//! probe after `initialize` (`Era`). When it does not, the first of them
//! starts a modern sibling (see "the modern sibling" below,
//! [`Config::modern_sibling`]): a second router thread,
//! `router-NAME (modern sibling)`, with its own never-initialized child and
//! pumps, owned by this router, which hands it every 2026-07-28 POST once
//! it serves. It ends when this router shuts down (it stops its child
//! within the same grace), or on its own when its first child cannot serve
//! 2026-07-28; then, and with `--no-modern-sibling`, the proxy refuses
//! 2026-07-28 requests itself.

use crate::child::{self, ChildProcess, ChildSpec, Line};
use crate::jsonrpc::{self, Kind, Message};
use crate::queue::{self, BoundedReceiver, BoundedSender};
use crate::server::metrics::{self, Dropped, ProxyError};
use crate::server::modern::META_SUBSCRIPTION_ID;
use crate::{systemd, util};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

/// Protocol versions a session may negotiate, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What we answer when a session asks for a version we do not know.
pub const LATEST_VERSION: &str = "2025-11-25";
/// The version assumed for a Streamable HTTP request that names none (SH-61).
pub const DEFAULT_HTTP_VERSION: &str = "2025-03-26";
/// Default of `--stream-queue`: messages queued for one client stream
/// before it counts as a slow consumer and its session is dropped.
pub const STREAM_QUEUE_MESSAGES: usize = 256;
/// Default of `--replay-events`: events kept per stream for
/// `Last-Event-ID` replay (SH-41).
pub const REPLAY_EVENTS: usize = 64;
/// Default of `--replay-bytes`: bytes of events kept per stream for
/// replay; older ones go first.
pub const REPLAY_BYTES: usize = 4 << 20;
/// Finished POST streams whose events stay replayable, per session.
pub const REPLAY_STREAMS: usize = 8;
/// How long the child gets to exit after its stdin closes, and again after
/// SIGTERM, unless `--shutdown-grace` says otherwise (ST-07; the SDKs use 2 s).
pub const CHILD_GRACE: Duration = Duration::from_secs(2);
/// The longest wait between two restarts.
pub const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Default of `--failed-retry`: how often a failed server is tried again.
pub const FAILED_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Requests held while a child (re)starts; more are refused at once.
pub const MAX_PENDING: usize = 1024;
/// The longest the child gets to answer the proxy's `server/discover`
/// probe (2026-07-28 requests wait for it; a shorter `--init-timeout`
/// applies too); silence counts as a legacy server (ST-15).
pub const ERA_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a modern sibling gets to start and answer its
/// `server/discover` probe (a shorter `--init-timeout` applies too); the
/// 2026-07-28 requests that asked for it wait that long at most.
pub const SIBLING_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a modern sibling's router to reap its child on top of the
/// shutdown graces.
const SIBLING_STOP_SLACK: Duration = Duration::from_secs(3);

/// Whether the current child, initialized by the proxy, still serves
/// 2026-07-28 requests: the dual-era rule lets a server serve both eras in
/// one process (MAY), and some do not (the Python SDK 2.3 locks a process to
/// the era of its first request). Learnt with a `server/discover` probe
/// right after `initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// Not asked yet: relayed as is.
    Unknown,
    /// Its discover result lists a modern version.
    Both,
    /// It refused discover, listed no modern version or did not answer in
    /// time: modern requests are refused by the proxy (RL-11: reject cleanly).
    LegacyOnly,
}

/// MCP log levels, most verbose first (index = verbosity rank).
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// How a session reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP+SSE (2024-11-05): one GET stream carries everything.
    Sse,
    /// Streamable HTTP with an `Mcp-Session-Id`.
    Streamable,
    /// Streamable HTTP in `--stateless` mode: one POST, one ephemeral session.
    Stateless,
    /// A 2026-07-28 request (server/modern.rs): one POST, one ephemeral
    /// session that never receives requests from the child (SX-07), nor
    /// traffic unrelated to its request, and has no resumable stream (SX-09).
    Modern,
}

impl Transport {
    /// One POST, one session: no `Mcp-Session-Id`, gone with its response.
    fn ephemeral(self) -> bool {
        matches!(self, Transport::Stateless | Transport::Modern)
    }
}

/// One message for a client stream.
#[derive(Debug, Clone)]
pub struct Out {
    /// The SSE event id, on resumable (Streamable HTTP) streams.
    pub event_id: Option<String>,
    pub data: String,
    /// A response to a request of this stream (RL-04 decides on the first).
    pub response: bool,
}

/// A POST from an HTTP client.
pub struct Post {
    pub transport: Transport,
    /// The session named by the request (query or header).
    pub session: Option<String>,
    /// `MCP-Protocol-Version`, already checked to be one we support.
    pub protocol_version: Option<String>,
    pub msgs: Vec<Message>,
    pub batch: bool,
    /// The client accepts only `application/json`: nothing but responses
    /// may go on this exchange; other related traffic goes to the GET stream.
    pub json_only: bool,
    /// The queue for the reply stream, when the POST may carry requests.
    /// The HTTP thread makes it, so that it can wait for the first message
    /// on it alone and read the [`PostReply`] afterwards (sent before any
    /// message, or before the queue is dropped): one wake-up per call
    /// instead of two (bench findings).
    pub stream: Option<BoundedSender<Out>>,
    pub reply: Sender<PostReply>,
}

pub enum PostReply {
    /// Only notifications and responses: 202.
    Accepted,
    /// Requests are under way; their messages come on the POST's
    /// `stream` queue, which ends (disconnects) once every response is sent.
    Stream {
        /// The session's id (internal for stateless exchanges).
        session: String,
        /// This POST created the session: send its `Mcp-Session-Id`.
        created: bool,
        stream: u64,
        version: String,
    },
    /// An HTTP error with its body.
    Error { status: u16, body: String },
}

pub enum GetReply {
    Stream {
        stream: u64,
        /// Names this connection in [`Event::StreamGone`].
        conn: u64,
        /// The stream's last event number, for a 2025-11-25 priming event.
        seq: u64,
        /// The client resumed with `Last-Event-ID` (no priming then).
        resumed: bool,
        version: String,
        rx: BoundedReceiver<Out>,
    },
    Error {
        status: u16,
        body: String,
    },
}

/// What one server looks like from `/status`.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub sessions: usize,
    /// Open HTTP+SSE sessions (each is one open GET /sse).
    pub sse_sessions: usize,
    pub requests_in_flight: usize,
    /// Restarts since the proxy started.
    pub restarts: u32,
    /// How the last child ended: `status N` or `signal N`.
    pub last_exit: Option<String>,
    /// Why the server last stopped or failed to start, in words.
    pub last_error: Option<String>,
    /// Whether the server serves 2026-07-28 requests: its child's
    /// `server/discover` answer, or its modern sibling's once that serves;
    /// `None` until it is known.
    pub serves_modern: Option<bool>,
    /// The second, never-initialized process that serves 2026-07-28
    /// requests for a child that cannot (see [`Config::modern_sibling`]).
    pub modern_sibling: Option<SiblingStatus>,
    /// Counters and gauges for `/metrics`.
    pub metrics: metrics::Snapshot,
}

impl ServerStatus {
    /// The status of a server that is configured but never started.
    pub fn disabled(name: &str) -> ServerStatus {
        ServerStatus {
            name: name.to_owned(),
            state: "disabled".into(),
            pid: None,
            sessions: 0,
            sse_sessions: 0,
            requests_in_flight: 0,
            restarts: 0,
            last_exit: None,
            last_error: None,
            serves_modern: None,
            modern_sibling: None,
            metrics: metrics::Snapshot::default(),
        }
    }
}

/// What `/status` shows of a server's modern sibling.
#[derive(Debug, Clone)]
pub struct SiblingStatus {
    /// `starting` (probing), `running`, `restarting` or `failed`.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
}

pub enum Event {
    /// A line (or EOF) from the stdout of the child of generation `gen`.
    Child {
        gen: u64,
        line: Line,
    },
    /// The two ends of a line over the size limit from the child of
    /// generation `gen`.
    ChildOversized {
        gen: u64,
        big: child::Oversized,
    },
    /// GET /sse: a new HTTP+SSE session and its stream.
    OpenSse {
        /// The session id and its stream, or why there is none (503).
        reply: Sender<Result<(String, BoundedReceiver<Out>), String>>,
    },
    Post(Post),
    /// GET on the Streamable HTTP endpoint.
    OpenGet {
        session: String,
        last_event_id: Option<String>,
        reply: Sender<GetReply>,
    },
    /// DELETE on the Streamable HTTP endpoint; answers whether it existed.
    Delete {
        session: String,
        reply: Sender<bool>,
    },
    /// A stream's HTTP connection is gone (a write failed).
    StreamGone {
        session: String,
        stream: u64,
        /// Which connection of the stream (a resumed stream has several).
        conn: u64,
    },
    Status {
        reply: Sender<ServerStatus>,
    },
    /// To a modern sibling's router: add yourself to the main router's
    /// status `base` (sibling object, serves flag, metrics), then answer.
    SiblingStatus {
        base: Box<ServerStatus>,
        reply: Sender<ServerStatus>,
    },
    /// From a modern sibling's router to its main router: whether its
    /// first child answered `server/discover` listing 2026-07-28. After
    /// `false` the sibling has stopped its child and ended, and its
    /// `child_starts` (0 or 1) are the main router's to count.
    SiblingVerdict {
        serves: bool,
        child_starts: u64,
    },
    /// Close the child's stdin, wait, signal it; then answer and stop.
    Shutdown {
        done: Sender<()>,
    },
}

/// How to run one server.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: ChildSpec,
    pub max_message_bytes: usize,
    /// How long the child may take to answer the proxy's `initialize`;
    /// `None` waits as long as it takes (npx may be downloading).
    pub init_timeout: Option<Duration>,
    /// Streamable HTTP sessions idle this long are ended (`None`: never).
    pub session_timeout: Option<Duration>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// Grace after closing the child's stdin, and again after SIGTERM.
    pub shutdown_grace: Duration,
    /// When the initialized child does not serve 2026-07-28 requests (the
    /// Python SDK 2.x locks a process to the era of its first request),
    /// start a second process of the same server on the first such
    /// request, never initialize it, and send every 2026-07-28 request to
    /// it if its `server/discover` lists 2026-07-28 (`--modern-sibling`).
    pub modern_sibling: bool,
    /// This router runs such a sibling: it probes its child with
    /// `server/discover` instead of `initialize`, and gets only 2026-07-28
    /// requests.
    pub modern_only: bool,
}

/// When a child that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window` before the server counts as failed.
    pub max_restarts: u32,
    pub window: Duration,
    /// The first delay before a restart; each further restart within the
    /// window doubles it, up to [`RESTART_BACKOFF_CAP`].
    pub backoff: Duration,
    /// How often a failed server is tried again; `None`: never.
    pub failed_retry: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
            failed_retry: Some(FAILED_RETRY_INTERVAL),
        }
    }
}

impl RestartPolicy {
    /// The delay before the next restart when `recent` restarts happened
    /// within the window; `None` when the budget is spent.
    pub fn delay(&self, recent: u32) -> Option<Duration> {
        if recent >= self.max_restarts {
            return None;
        }
        let cap = RESTART_BACKOFF_CAP.max(self.backoff);
        let factor = 1u32 << recent.min(20);
        Some(self.backoff.saturating_mul(factor).min(cap))
    }
}

/// Bounds on what clients can make the router hold (`--max-sessions`,
/// `--stream-queue`, `--replay-events`, `--replay-bytes`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open sessions (HTTP+SSE and Streamable HTTP; a stateless exchange
    /// is bounded by the connection limit instead).
    pub max_sessions: usize,
    pub stream_queue: usize,
    pub replay_events: usize,
    pub replay_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 1000,
            stream_queue: STREAM_QUEUE_MESSAGES,
            replay_events: REPLAY_EVENTS,
            replay_bytes: REPLAY_BYTES,
        }
    }
}

/// The most time between two sweeps for idle sessions.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Starts the router thread, which starts the child at once. Returns the
/// router's event sender without waiting for the child.
pub fn start(cfg: Config) -> Result<Sender<Event>, String> {
    start_with(cfg, None)
}

/// [`start`], for a modern sibling when `parent` is its main router.
fn start_with(cfg: Config, parent: Option<Sender<Event>>) -> Result<Sender<Event>, String> {
    let (tx, rx) = channel();
    let name = cfg.spec.name.clone();
    let router_tx = tx.clone();
    thread::Builder::new()
        .name(format!("router-{name}"))
        .spawn(move || {
            let mut r = Router::new(cfg, router_tx);
            r.parent = parent;
            r.run(rx)
        })
        .map_err(|e| format!("cannot start the router thread for server '{name}': {e}"))?;
    Ok(tx)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first child is starting.
    Starting,
    Running,
    /// A child ended; the next one is due or initializing.
    Restarting,
    /// The restart budget is spent; retried every
    /// [`RestartPolicy::failed_retry`], if at all.
    Failed,
    /// The proxy is shutting down.
    Stopping,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Stopping => "stopping",
        }
    }
}

/// Where a message for a session goes: its main stream (the HTTP+SSE
/// stream, or the Streamable GET stream) or one POST's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Main,
    Post(u64),
}

const MAIN: u64 = 0;

struct Stream {
    tx: Option<BoundedSender<Out>>,
    /// Counts the connections that have carried this stream, so a report
    /// about an old one cannot close its successor.
    conn: u64,
    seq: u64,
    history: VecDeque<(u64, String, bool)>,
    history_bytes: usize,
    json_only: bool,
    /// Requests whose response is still due on this stream.
    open: usize,
}

impl Stream {
    fn new(tx: Option<BoundedSender<Out>>, json_only: bool, open: usize) -> Stream {
        Stream {
            conn: u64::from(tx.is_some()),
            tx,
            seq: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            json_only,
            open,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Caps {
    sampling: bool,
    elicitation: bool,
    roots: bool,
}

struct Session {
    transport: Transport,
    version: String,
    caps: Caps,
    initialized: bool,
    main: Stream,
    posts: HashMap<u64, Stream>,
    finished: VecDeque<u64>,
    next_stream: u64,
    log_level: Option<usize>,
    subs: HashSet<String>,
    /// A modern request's `_meta` logLevel (LC-23: no log messages without
    /// one); never sent to the child as `logging/setLevel`.
    modern_log: Option<usize>,
    /// The last time the client sent or opened something.
    last_active: Instant,
}

impl Session {
    fn new(transport: Transport, version: &str, main_tx: Option<BoundedSender<Out>>) -> Session {
        Session {
            transport,
            version: version.to_owned(),
            caps: Caps::default(),
            initialized: false,
            main: Stream::new(main_tx, false, 0),
            posts: HashMap::new(),
            finished: VecDeque::new(),
            next_stream: 1,
            log_level: None,
            subs: HashSet::new(),
            modern_log: None,
            last_active: Instant::now(),
        }
    }

    fn resumable(&self) -> bool {
        !matches!(self.transport, Transport::Sse | Transport::Modern)
    }

    fn stream_mut(&mut self, route: Route) -> Option<&mut Stream> {
        match route {
            Route::Main => Some(&mut self.main),
            Route::Post(n) => self.posts.get_mut(&n),
        }
    }
}

/// A request of a session, forwarded to the child under `upstream` id.
struct Inflight {
    session: String,
    orig_id: String,
    route: Route,
    /// The session's own progress token (raw), when it asked for progress.
    progress: Option<String>,
}

/// A request from the child, forwarded to a session under our own id.
struct ServerRequest {
    session: String,
    child_id: String,
}

enum Delivery {
    Sent,
    /// The stream has no live connection (message kept for replay only).
    NoConnection,
    Full,
    Gone,
}

struct Router {
    cfg: Config,
    name: String,
    tx: Sender<Event>,
    state: State,
    /// Why the server last stopped or failed to start.
    last_error: Option<String>,
    /// `status N` or `signal N` of the last child that ended.
    last_exit: Option<String>,
    child: Option<ChildProcess>,
    /// Generation of the current child; lines of older ones are ignored.
    gen: u64,
    /// The current child has not answered `initialize` yet.
    awaiting_init: bool,
    init_deadline: Option<Instant>,
    era: Era,
    /// The upstream id of the `server/discover` probe in flight, and when
    /// it is given up on.
    era_probe: Option<(u64, Instant)>,
    /// 2026-07-28 requests waiting for the probe's answer.
    held_modern: Vec<(String, Message, Route)>,
    restart_at: Option<Instant>,
    restarts: u32,
    /// When the restarts within the window happened.
    recent_restarts: VecDeque<Instant>,
    stdin: Option<child::ChildInput>,
    /// The child's `initialize` result, as the raw text it sent.
    init_result: Option<String>,
    sessions: HashMap<String, Session>,
    inflight: HashMap<u64, Inflight>,
    /// Upstream progress token -> upstream request id.
    progress: HashMap<String, u64>,
    server_requests: HashMap<u64, ServerRequest>,
    /// Ids of requests the proxy itself sent (setLevel, unsubscribe).
    internal: HashSet<u64>,
    /// Requests that arrived while the child was (re)initializing.
    pending: Vec<(String, Message, Route)>,
    next_id: u64,
    child_log_level: Option<usize>,
    counters: metrics::Counters,
    /// The modern sibling's router (main routers only), once started.
    sibling: Option<Sibling>,
    /// 2026-07-28 POSTs waiting for the child's era or for the sibling's
    /// verdict (at most [`MAX_PENDING`]).
    held_posts: Vec<Post>,
    /// `counters.child_starts` when a sibling was last found not to serve:
    /// it is not tried again until the main child starts anew.
    sibling_refused: Option<u64>,
    /// A modern sibling's main router, told of its verdict.
    parent: Option<Sender<Event>>,
    /// A modern sibling whose first child served: later failures are
    /// restarts, not a verdict.
    served: bool,
    /// A modern sibling that gave up: the loop ends.
    quit: bool,
    /// Children started by siblings that gave up (for `/metrics`, which
    /// counts a sibling's starts under its server).
    sibling_starts: u64,
}

/// A main router's modern sibling.
struct Sibling {
    tx: Sender<Event>,
    /// Its verdict was yes: 2026-07-28 POSTs go to it.
    serving: bool,
}

const INIT_ID: u64 = 0;

impl Router {
    fn new(cfg: Config, tx: Sender<Event>) -> Router {
        let name = cfg.spec.name.clone();
        Router {
            cfg,
            name,
            tx,
            state: State::Starting,
            last_error: None,
            last_exit: None,
            child: None,
            gen: 0,
            awaiting_init: false,
            init_deadline: None,
            era: Era::Unknown,
            era_probe: None,
            held_modern: Vec::new(),
            restart_at: None,
            restarts: 0,
            recent_restarts: VecDeque::new(),
            stdin: None,
            init_result: None,
            sessions: HashMap::new(),
            inflight: HashMap::new(),
            progress: HashMap::new(),
            server_requests: HashMap::new(),
            internal: HashSet::new(),
            pending: Vec::new(),
            next_id: INIT_ID + 1,
            child_log_level: None,
            counters: metrics::Counters::default(),
            sibling: None,
            held_posts: Vec::new(),
            sibling_refused: None,
            parent: None,
            served: false,
            quit: false,
            sibling_starts: 0,
        }
    }

    fn run(mut self, rx: Receiver<Event>) {
        self.start_child();
        let sweep_every = self
            .cfg
            .session_timeout
            .map(|t| (t / 2).clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL));
        let mut next_sweep = sweep_every.map(|e| Instant::now() + e);
        loop {
            if self.quit {
                return;
            }
            let wake = [
                next_sweep,
                self.restart_at,
                self.init_deadline,
                self.era_probe.map(|(_, at)| at),
            ]
            .into_iter()
            .flatten()
            .min();
            let ev = match wake {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return,
                },
            };
            let now = Instant::now();
            if let (Some(at), Some(every)) = (next_sweep, sweep_every) {
                if now >= at {
                    next_sweep = Some(now + every);
                    self.end_idle_sessions();
                }
            }
            if self.init_deadline.is_some_and(|at| now >= at) && self.cfg.modern_only {
                self.child_gone(
                    "did not answer server/discover in time".to_owned(),
                    None,
                    ProxyError::Timeout,
                );
            } else if self.init_deadline.is_some_and(|at| now >= at) {
                let secs = self.cfg.init_timeout.map_or(0.0, |t| t.as_secs_f64());
                log::warn!(
                    "server '{}' is slow to start; if it needs longer (npx and uvx download first), raise --init-timeout or its \"timeout\" in the config file",
                    self.name
                );
                self.child_gone(
                    format!("did not answer initialize within {secs} s"),
                    None,
                    ProxyError::Timeout,
                );
            }
            if self.era_probe.is_some_and(|(_, at)| now >= at) {
                log::info!(
                    "server '{}' did not answer server/discover in time; as a legacy server it gets no 2026-07-28 requests: {}",
                    self.name,
                    self.legacy_note()
                );
                self.era_known(Era::LegacyOnly);
            }
            if self.restart_at.is_some_and(|at| now >= at) {
                self.restarts += 1;
                self.recent_restarts.push_back(now);
                let what = if self.state == State::Failed {
                    "retrying failed"
                } else {
                    "restarting"
                };
                log::info!("{what} server '{}' (restart {})", self.name, self.restarts);
                self.start_child();
            }
            let Some(ev) = ev else { continue };
            match ev {
                Event::Child { gen, line } => {
                    if gen == self.gen {
                        self.on_child_line(line);
                    }
                }
                Event::ChildOversized { gen, big } => {
                    if gen == self.gen {
                        self.on_child_oversized(big);
                    }
                }
                Event::OpenSse { reply } => {
                    if let Err(e) = self.room_for_session() {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    let id = util::random_hex(16);
                    let (tx, rx) = queue::bounded(self.cfg.limits.stream_queue);
                    let s = Session::new(Transport::Sse, "2024-11-05", Some(tx));
                    self.sessions.insert(id.clone(), s);
                    if reply.send(Ok((id.clone(), rx))).is_err() {
                        self.close_session(&id, "the client went away");
                    }
                }
                Event::Post(p) => self.on_post(p),
                Event::OpenGet {
                    session,
                    last_event_id,
                    reply,
                } => {
                    let r = self.open_get(&session, last_event_id.as_deref());
                    let _ = reply.send(r);
                }
                Event::Delete { session, reply } => {
                    let known = self
                        .sessions
                        .get(&session)
                        .is_some_and(|s| s.transport == Transport::Streamable);
                    if known {
                        self.close_session(&session, "the client ended the session");
                    }
                    let _ = reply.send(known);
                }
                Event::StreamGone {
                    session,
                    stream,
                    conn,
                } => match &self.sibling {
                    // The exchanges the sibling serves are its sessions.
                    Some(s) if !self.sessions.contains_key(&session) => {
                        let _ = s.tx.send(Event::StreamGone {
                            session,
                            stream,
                            conn,
                        });
                    }
                    _ => self.stream_gone(&session, stream, conn),
                },
                Event::Status { reply } => {
                    let mut st = self.status();
                    match &self.sibling {
                        // Only a serving sibling is asked: before its
                        // verdict it may be ending on its own, and a
                        // question it drops would make the server look
                        // unresponsive.
                        Some(s) if s.serving => {
                            let ev = Event::SiblingStatus {
                                base: Box::new(st),
                                reply,
                            };
                            if let Err(e) = s.tx.send(ev) {
                                if let Event::SiblingStatus { base, reply } = e.0 {
                                    let _ = reply.send(*base);
                                }
                            }
                        }
                        Some(_) => {
                            st.modern_sibling = Some(SiblingStatus {
                                state: State::Starting.name().to_owned(),
                                pid: None,
                                restarts: 0,
                                last_exit: None,
                                last_error: None,
                            });
                            let _ = reply.send(st);
                        }
                        None => {
                            let _ = reply.send(st);
                        }
                    }
                }
                Event::SiblingStatus { base, reply } => {
                    let _ = reply.send(self.sibling_status(*base));
                }
                Event::SiblingVerdict {
                    serves,
                    child_starts,
                } => {
                    if !serves {
                        self.sibling_starts += child_starts;
                    }
                    self.on_sibling_verdict(serves)
                }
                Event::Shutdown { done } => {
                    self.shutdown();
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    // ---- the child ----

    /// Starts a child and sends it our `initialize`; a failure to start
    /// counts as an attempt that failed.
    fn start_child(&mut self) {
        self.restart_at = None;
        if let Err(e) = self.spawn_child() {
            self.child_gone(e, None, ProxyError::ChildDied);
        }
    }

    fn spawn_child(&mut self) -> Result<(), String> {
        let (proc_, pipes) = child::spawn(&self.cfg.spec).map_err(|e| e.to_string())?;
        let name = self.name.clone();
        let tx = self.tx.clone();
        self.gen += 1;
        let gen = self.gen;
        let big_tx = self.tx.clone();
        let mut stdin = None;
        let started = child::ChildInput::new(&name, pipes.stdin)
            .map(|i| stdin = Some(i))
            .and_then(|_| child::spawn_stderr_drain(&name, pipes.stderr))
            .and_then(|_| {
                child::spawn_stdout_reader(
                    &name,
                    pipes.stdout,
                    self.cfg.max_message_bytes,
                    move |line| tx.send(Event::Child { gen, line }).is_ok(),
                    move |big| big_tx.send(Event::ChildOversized { gen, big }).is_ok(),
                )
            });
        if let Err(e) = started {
            proc_.signal_group(libc::SIGKILL);
            return Err(format!(
                "cannot start the pipe threads of server '{name}': {e}"
            ));
        }
        log::info!("server '{name}' started, pid {}", proc_.pid);
        self.counters.child_starts += 1;
        self.child = Some(proc_);
        self.stdin = stdin;
        self.awaiting_init = true;
        if self.cfg.modern_only {
            // Never initialized: asked straight away which eras it serves.
            let wait = self
                .cfg
                .init_timeout
                .map_or(SIBLING_PROBE_TIMEOUT, |t| t.min(SIBLING_PROBE_TIMEOUT));
            self.init_deadline = Some(Instant::now() + wait);
            self.send_child(discover_probe(INIT_ID));
            return Ok(());
        }
        self.init_deadline = self.cfg.init_timeout.map(|t| Instant::now() + t);
        let init = json!({
            "jsonrpc": "2.0",
            "id": INIT_ID,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_VERSION,
                "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                "clientInfo": {"name": "mcp-proxy", "version": crate::cli::VERSION}
            }
        });
        self.send_child(init.to_string());
        Ok(())
    }

    fn send_child(&mut self, line: String) {
        if let Some(input) = &self.stdin {
            // A child that stopped reading is reported by its stdout pump.
            let _ = input.send(line);
        }
    }

    /// The proxy is stopping: every request in flight or waiting gets an
    /// error, every session ends (so its streams end), and the child is
    /// shut down gracefully.
    fn shutdown(&mut self) {
        self.state = State::Stopping;
        self.restart_at = None;
        self.init_deadline = None;
        // The sibling stops its child at the same time as this one.
        let sibling_done = self.sibling.take().map(|s| {
            let (done, rx) = channel();
            let _ = s.tx.send(Event::Shutdown { done });
            rx
        });
        self.release_held_posts();
        self.fail_requests("mcp-proxy is shutting down", ProxyError::Shutdown);
        self.sessions.clear();
        // The pump writes what is queued, then the pipe closes.
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            match c.shutdown(self.cfg.shutdown_grace) {
                // ExitStatus shows as "exit status: 0" or "signal: 15 (SIGTERM)".
                Some(status) => log::info!("server '{}' stopped ({status})", self.name),
                None => log::warn!("server '{}' did not stop", self.name),
            }
        }
        if let Some(rx) = sibling_done {
            // Bounded like the main router's own stop (server/mod.rs).
            let _ = rx.recv_timeout(self.cfg.shutdown_grace * 2 + SIBLING_STOP_SLACK);
        }
    }

    fn on_child_line(&mut self, line: Line) {
        match line {
            Line::Text(t) => match Message::parse(&t) {
                Ok(m) => self.on_child_message(m),
                Err(e) => {
                    self.counters.dropped(Dropped::Invalid);
                    log::warn!(
                        "server '{}' printed a line on stdout that is not JSON-RPC, skipped ({e}): {}",
                        self.name,
                        truncate(&t, 200)
                    )
                }
            },
            Line::TooLong(n) => {
                self.counters.dropped(Dropped::Oversized);
                log::warn!(
                    "server '{}' sent a message over {} bytes ({n} so far), skipped; raise --max-message-size",
                    self.name,
                    self.cfg.max_message_bytes
                )
            }
            Line::NotUtf8 => {
                self.counters.dropped(Dropped::Invalid);
                log::warn!(
                    "server '{}' sent a line that is not UTF-8, skipped",
                    self.name
                )
            }
            Line::Eof => self.on_child_exit(),
        }
    }

    /// A message from the child was over `--max-message-size`. Its id,
    /// when it has one (wherever in the message), names the request it answered:
    /// that request gets an error now instead of waiting forever, and
    /// everything else goes on. A request from the child gets the error
    /// itself. Without an id nothing can be failed; the log says so.
    fn on_child_oversized(&mut self, big: child::Oversized) {
        let limit = self.cfg.max_message_bytes;
        let msg = format!(
            "mcp-proxy: the reply of server '{}' was {} bytes, over the limit of {limit} bytes (--max-message-size)",
            self.name, big.len
        );
        match big.hint() {
            Some(h) if h.request => {
                log::warn!(
                    "server '{}' sent a request of {} bytes, over --max-message-size ({limit}); refused it",
                    self.name,
                    big.len
                );
                let line = jsonrpc::error_reply(
                    Some(&h.id),
                    jsonrpc::INVALID_REQUEST,
                    &format!("mcp-proxy: the request is over the message size limit of {limit} bytes (--max-message-size)"),
                    None,
                );
                self.send_child(line);
            }
            Some(h) => match h.id.parse::<u64>() {
                Ok(up) if self.inflight.contains_key(&up) => {
                    log::warn!("{msg}; its request fails");
                    self.counters.proxy_error(ProxyError::Oversized);
                    self.answer_error(up, jsonrpc::INTERNAL_ERROR, &msg);
                }
                _ => log::warn!("{msg}; it answers no request in flight, so nothing fails"),
            },
            None => log::warn!("{msg}; it carries no id, so no request can be failed"),
        }
    }

    /// The child closed its stdout: it is gone.
    fn on_child_exit(&mut self) {
        let status = self.child.as_mut().and_then(|c| {
            // The pipe closes a moment before the process is reapable.
            for _ in 0..50 {
                if let Some(s) = c.try_wait() {
                    return Some(s);
                }
                thread::sleep(Duration::from_millis(10));
            }
            None
        });
        let (note, exit) = match status {
            Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => (format!("exited with status {c}"), format!("status {c}")),
                (None, Some(sig)) => (
                    format!("was killed by signal {sig}"),
                    format!("signal {sig}"),
                ),
                _ => (format!("ended ({s})"), s.to_string()),
            },
            None => ("closed its stdout".to_owned(), "unknown".to_owned()),
        };
        let note = if self.awaiting_init {
            let first = if self.cfg.modern_only {
                "server/discover"
            } else {
                "initialize"
            };
            format!("{note} before answering {first}")
        } else {
            note
        };
        self.child_gone(note, Some(exit), ProxyError::ChildDied);
    }

    /// The current child is gone or given up on (`why`, for logs, errors
    /// and /status): anything left of it is killed, every request in flight
    /// or waiting gets an error at once (counted as `cause`), and a restart
    /// is scheduled.
    fn child_gone(&mut self, why: String, exit: Option<String>, cause: ProxyError) {
        if self.cfg.modern_only && !self.served && self.state != State::Stopping {
            return self.sibling_gives_up(&why);
        }
        log::error!("server '{}' {why}", self.name);
        systemd::status(&format!("server '{}' {why}", self.name));
        self.last_error = Some(why.clone());
        if exit.is_some() {
            self.last_exit = exit;
        }
        if self.sibling.is_none() {
            // They waited for this child's era: they fail with it, below.
            self.release_held_posts();
        }
        self.awaiting_init = false;
        self.init_deadline = None;
        self.era = Era::Unknown;
        self.era_probe = None;
        self.stdin = None;
        // Later lines of this child are stale.
        self.gen += 1;
        if let Some(c) = self.child.take() {
            // Dropping it kills what is left of its group and reaps it.
            drop(c);
        }
        self.fail_requests(&format!("server '{}' {why}", self.name), cause);
        if self.state != State::Stopping {
            self.schedule_restart();
        }
    }

    /// Answers every request in flight and every waiting one with `msg`.
    fn fail_requests(&mut self, msg: &str, cause: ProxyError) {
        let ids: Vec<u64> = self.inflight.keys().copied().collect();
        for up in ids {
            self.counters.proxy_error(cause);
            self.answer_error(up, jsonrpc::INTERNAL_ERROR, msg);
        }
        self.progress.clear();
        self.server_requests.clear();
        self.internal.clear();
        let mut pending = std::mem::take(&mut self.pending);
        pending.append(&mut self.held_modern);
        for (sid, m, route) in pending {
            if let Some(id) = m.id() {
                self.counters.proxy_error(cause);
                let line = jsonrpc::error_reply(Some(id), jsonrpc::INTERNAL_ERROR, msg, None);
                self.deliver_response(&sid, route, line);
            }
        }
    }

    fn schedule_restart(&mut self) {
        let now = Instant::now();
        let policy = self.cfg.restart;
        while self
            .recent_restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            self.recent_restarts.pop_front();
        }
        let recent = self.recent_restarts.len() as u32;
        // A failed server stays failed, retried at its own pace, until a
        // retry works: the budget that comes back as the window slides on
        // must not turn its retries into bursts of restarts.
        let delay = match self.state {
            State::Failed => None,
            _ => policy.delay(recent),
        };
        if let Some(d) = delay {
            self.state = State::Restarting;
            self.restart_at = Some(now + d);
            return;
        }
        if self.state != State::Failed {
            log::error!(
                "server '{}' failed: {recent} restarts within {} s; {}",
                self.name,
                policy.window.as_secs_f64(),
                retry_note(policy.failed_retry)
            );
        }
        self.state = State::Failed;
        self.restart_at = policy.failed_retry.map(|every| now + every);
    }

    fn on_child_message(&mut self, m: Message) {
        match m.kind() {
            Kind::Response => self.on_child_response(m),
            Kind::Request => self.on_child_request(m),
            Kind::Notification => self.on_child_notification(m),
        }
    }

    fn on_child_response(&mut self, m: Message) {
        let Some(up) = m.id().and_then(|id| id.parse::<u64>().ok()) else {
            log::warn!(
                "server '{}' answered an unknown id: {}",
                self.name,
                truncate(m.raw(), 200)
            );
            return;
        };
        if up == INIT_ID && self.awaiting_init {
            if self.cfg.modern_only {
                return self.on_sibling_probe(&m);
            }
            return self.on_init_result(m);
        }
        if self.era_probe.is_some_and(|(p, _)| p == up) {
            return self.on_era_probe(&m);
        }
        if self.internal.remove(&up) {
            if m.is_error() {
                log::debug!(
                    "server '{}' refused a proxy request: {}",
                    self.name,
                    m.raw()
                );
            }
            return;
        }
        let Some(inf) = self.inflight.remove(&up) else {
            // Cancelled or answered already: a late reply has nowhere to go.
            log::debug!(
                "server '{}' answered request {up}, which is no longer pending",
                self.name
            );
            return;
        };
        self.progress.remove(&up.to_string());
        if m.is_error() {
            self.counters.child_error += 1;
        } else {
            self.counters.child_ok += 1;
        }
        let mut line = m.with_id_raw(&inf.orig_id);
        let modern = self
            .sessions
            .get(&inf.session)
            .is_some_and(|s| s.transport == Transport::Modern);
        if modern && line.contains(META_SUBSCRIPTION_ID) {
            // A listen ended by the server names its subscription (LC-83),
            // whose id is the listen request's: the client's own (RL-03).
            let path = ["result", "_meta", META_SUBSCRIPTION_ID];
            if let Some(l) = jsonrpc::splice(&line, &path, &inf.orig_id) {
                line = l;
            }
        }
        self.deliver_response(&inf.session, inf.route, line);
    }

    /// Asks the just-initialized child whether it serves 2026-07-28 requests
    /// too (see [`Era`]).
    fn probe_era(&mut self) {
        let up = self.fresh_id();
        self.era = Era::Unknown;
        let wait = self
            .cfg
            .init_timeout
            .map_or(ERA_PROBE_TIMEOUT, |t| t.min(ERA_PROBE_TIMEOUT));
        self.era_probe = Some((up, Instant::now() + wait));
        self.send_child(discover_probe(up));
    }

    fn on_era_probe(&mut self, m: &Message) {
        if lists_modern(m) {
            log::info!(
                "server '{}' serves 2026-07-28 requests next to its initialized session",
                self.name
            );
            self.era_known(Era::Both);
        } else {
            let why = match m.value().get("error") {
                Some(e) => format!("it answered server/discover with {e}"),
                None => "its server/discover result lists no 2026-07-28 version".to_owned(),
            };
            log::info!(
                "server '{}' does not serve 2026-07-28 requests once initialized ({why}): {}",
                self.name,
                self.legacy_note()
            );
            self.era_known(Era::LegacyOnly);
        }
    }

    /// What becomes of 2026-07-28 requests for a child that cannot serve
    /// them, for the log.
    fn legacy_note(&self) -> &'static str {
        if self.cfg.modern_sibling {
            "the first of them starts a second, never-initialized process for them (--no-modern-sibling turns this off)"
        } else {
            "mcp-proxy refuses them"
        }
    }

    /// The probe is over: the requests that waited for it go on.
    fn era_known(&mut self, era: Era) {
        self.era = era;
        self.era_probe = None;
        for (sid, m, route) in std::mem::take(&mut self.held_modern) {
            self.modern_request(&sid, m, route);
        }
        if self.sibling.is_none() {
            // To this child, or to a sibling started for them now.
            for p in std::mem::take(&mut self.held_posts) {
                self.on_post(p);
            }
        }
    }

    // ---- the modern sibling ----
    //
    // A child that, once initialized, refuses 2026-07-28 requests (the
    // Python SDK 2.x serves only the era of its first request) gets a
    // second process of the same server: started by the main router on
    // the first 2026-07-28 POST, never initialized, asked `server/discover`
    // straight away. If it lists 2026-07-28, every 2026-07-28 POST goes to
    // it from then on (its own router, a thread like this one, relays it);
    // if not, or if it cannot start (a server that cannot run twice), it
    // is stopped and 2026-07-28 requests get the main router's refusals,
    // without another try until the main child starts anew. POSTs that
    // arrive meanwhile wait (at most MAX_PENDING).

    /// A 2026-07-28 POST on a main router with `--modern-sibling`: sent on
    /// to the sibling, held, or given back to be served here.
    fn modern_post(&mut self, p: Post) -> Option<Post> {
        if let Some(s) = &self.sibling {
            if !s.serving {
                return self.hold_post(p);
            }
            return match s.tx.send(Event::Post(p)) {
                Ok(()) => None,
                Err(e) => {
                    log::warn!(
                        "server '{}': its modern sibling's router is gone; 2026-07-28 requests are served as before",
                        self.name
                    );
                    self.sibling = None;
                    match e.0 {
                        Event::Post(p) => Some(p),
                        _ => None,
                    }
                }
            };
        }
        match (self.state, self.era) {
            (State::Failed | State::Stopping, _) | (_, Era::Both) => Some(p),
            (_, Era::Unknown) => self.hold_post(p),
            (_, Era::LegacyOnly) => {
                if self.sibling_refused == Some(self.counters.child_starts) {
                    return Some(p);
                }
                self.start_sibling();
                if self.sibling.is_some() {
                    self.hold_post(p)
                } else {
                    Some(p)
                }
            }
        }
    }

    fn hold_post(&mut self, p: Post) -> Option<Post> {
        if self.held_posts.len() >= MAX_PENDING {
            return Some(p);
        }
        self.held_posts.push(p);
        None
    }

    /// Held POSTs are served as if no sibling existed.
    fn release_held_posts(&mut self) {
        for mut p in std::mem::take(&mut self.held_posts) {
            self.serve_post(&mut p);
        }
    }

    fn start_sibling(&mut self) {
        let mut cfg = self.cfg.clone();
        cfg.modern_only = true;
        cfg.modern_sibling = false;
        cfg.spec.name = format!("{} (modern sibling)", self.name);
        log::info!(
            "server '{}': starting a second, never-initialized process for 2026-07-28 requests",
            self.name
        );
        match start_with(cfg, Some(self.tx.clone())) {
            Ok(tx) => self.sibling = Some(Sibling { tx, serving: false }),
            Err(e) => {
                log::warn!("{e}");
                self.sibling_refused = Some(self.counters.child_starts);
            }
        }
    }

    fn on_sibling_verdict(&mut self, serves: bool) {
        match &mut self.sibling {
            Some(s) if serves => s.serving = true,
            Some(_) => {
                self.sibling = None;
                self.sibling_refused = Some(self.counters.child_starts);
            }
            None => return,
        }
        for p in std::mem::take(&mut self.held_posts) {
            self.on_post(p);
        }
    }

    /// A sibling's answer to its `server/discover` probe.
    fn on_sibling_probe(&mut self, m: &Message) {
        if !lists_modern(m) {
            let why = match m.value().get("error") {
                Some(e) => format!("answered server/discover with {e}"),
                None => "listed no 2026-07-28 version in its server/discover result".to_owned(),
            };
            return self.child_gone(why, None, ProxyError::ChildDied);
        }
        self.awaiting_init = false;
        self.init_deadline = None;
        self.era = Era::Both;
        self.state = State::Running;
        let pid = self.child.as_ref().map_or(0, |c| c.pid);
        log::info!(
            "server '{}' serves 2026-07-28 requests (pid {pid})",
            self.name
        );
        if !self.served {
            self.served = true;
            if let Some(p) = &self.parent {
                let _ = p.send(Event::SiblingVerdict {
                    serves: true,
                    child_starts: 0,
                });
            }
        }
        for (sid, m, route) in std::mem::take(&mut self.pending) {
            self.modern_request(&sid, m, route);
        }
    }

    /// A sibling whose first child could not serve: stopped for good, and
    /// its main router told so.
    fn sibling_gives_up(&mut self, why: &str) {
        log::info!(
            "server '{}' {why}; stopped, 2026-07-28 requests get the initialized child's answers",
            self.name
        );
        if let Some(p) = &self.parent {
            let _ = p.send(Event::SiblingVerdict {
                serves: false,
                child_starts: self.counters.child_starts,
            });
        }
        self.shutdown();
        self.quit = true;
    }

    /// The main router's status with this sibling added: its process, its
    /// answer for `serves_2026_07_28`, and its requests in the metrics
    /// (never counted by the main router, which only passes them on).
    fn sibling_status(&self, mut base: ServerStatus) -> ServerStatus {
        let me = self.status();
        if self.state == State::Running && self.era == Era::Both {
            base.serves_modern = Some(true);
        } else if self.state == State::Failed {
            base.serves_modern = Some(false);
        }
        base.requests_in_flight += me.requests_in_flight;
        base.metrics.add(&me.metrics);
        base.modern_sibling = Some(SiblingStatus {
            state: me.state,
            pid: me.pid,
            restarts: me.restarts,
            last_exit: me.last_exit,
            last_error: me.last_error,
        });
        base
    }

    /// A 2026-07-28 request: stateless, so nothing is answered for the
    /// child (no initialize, ping, setLevel or subscribe, LC-23); relayed
    /// unless the child is known not to serve it.
    fn modern_request(&mut self, sid: &str, m: Message, route: Route) {
        if self.era_probe.is_some() && self.state == State::Running {
            return self.held_modern.push((sid.to_owned(), m, route));
        }
        if self.era != Era::LegacyOnly {
            return self.forward_request(sid, m, route);
        }
        let id = m.id().expect("a request has an id");
        let requested = m
            .params()
            .and_then(|p| p.get("_meta"))
            .and_then(|p| p.get(crate::server::modern::META_PROTOCOL_VERSION))
            .cloned()
            .unwrap_or(Value::Null);
        // Era bridging is not relaying (RL-11): refused, naming what the
        // server does speak (SX-42). `server/discover` gets what a legacy
        // server answers, the signal for a dual-era client to fall back to
        // initialize (ST-15, SX-41).
        let line = if m.method() == Some("server/discover") {
            jsonrpc::error_reply(
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!(
                    "Method not found: server '{}' does not serve 2026-07-28 requests; use initialize",
                    self.name
                ),
                None,
            )
        } else {
            let data = json!({"supported": SUPPORTED_VERSIONS, "requested": requested});
            jsonrpc::error_reply(
                Some(id),
                crate::server::modern::UNSUPPORTED_VERSION,
                &format!(
                    "Unsupported protocol version: server '{}' serves only the initialize handshake ({})",
                    self.name,
                    SUPPORTED_VERSIONS.join(", ")
                ),
                Some(&data),
            )
        };
        self.deliver_response(sid, route, line);
    }

    /// A notification of a `subscriptions/listen` stream (LC-82): it goes
    /// to that listen request's stream alone, its subscriptionId (our
    /// upstream id of the listen request) rewritten to the client's id
    /// (RL-03). A tag naming nothing in flight is dropped, never broadcast.
    fn on_subscription_notification(&mut self, m: &Message, tag: String) {
        let inf = tag
            .parse::<u64>()
            .ok()
            .and_then(|up| self.inflight.get(&up));
        let Some(inf) = inf else {
            log::debug!(
                "server '{}': a notification for subscription {tag}, which is not open: {}",
                self.name,
                truncate(m.raw(), 200)
            );
            return;
        };
        let (sid, route, orig) = (inf.session.clone(), inf.route, inf.orig_id.clone());
        let Some(out) = m.replace_raw(&["params", "_meta", META_SUBSCRIPTION_ID], &orig) else {
            return;
        };
        if let Some(route) = self.related_route(&sid, route) {
            self.deliver(&sid, route, out, false);
        }
    }

    /// The child tears down a `subscriptions/listen` of a 2026-07-28
    /// request (LC-42, LC-83): the client gets the cancellation with its own
    /// id, and the stream ends without a response. False when `rid` names
    /// no such request.
    fn listen_torn_down(&mut self, m: &Message, rid: &str) -> bool {
        let Some(up) = rid.parse::<u64>().ok() else {
            return false;
        };
        let Some(inf) = self.inflight.get(&up) else {
            return false;
        };
        let modern = self
            .sessions
            .get(&inf.session)
            .is_some_and(|s| s.transport == Transport::Modern);
        if !modern {
            return false;
        }
        let (sid, route, orig) = (inf.session.clone(), inf.route, inf.orig_id.clone());
        if let Some(out) = m.replace_raw(&["params", "requestId"], &orig) {
            if let Some(r) = self.related_route(&sid, route) {
                self.deliver(&sid, r, out, false);
            }
        }
        self.drop_inflight(up);
        true
    }

    /// A log message from the child goes to a 2026-07-28 request only when
    /// it can only be about that request (the only one in flight) and the
    /// request asked for this level in `_meta` (LC-23, SX-07).
    fn log_to_modern_request(&mut self, level: usize, raw: &str) {
        if self.inflight.len() != 1 {
            return;
        }
        let inf = self.inflight.values().next().expect("one in flight");
        let Some(s) = self.sessions.get(&inf.session) else {
            return;
        };
        if s.transport != Transport::Modern || s.modern_log.is_none_or(|min| level < min) {
            return;
        }
        let (sid, route) = (inf.session.clone(), inf.route);
        if let Some(route) = self.related_route(&sid, route) {
            self.deliver(&sid, route, raw.to_owned(), false);
        }
    }

    fn on_init_result(&mut self, m: Message) {
        if m.is_error() {
            let why = format!("refused initialize ({})", m.value()["error"]);
            return self.child_gone(why, None, ProxyError::ChildDied);
        }
        self.awaiting_init = false;
        self.init_deadline = None;
        let restarted = self.init_result.is_some();
        self.init_result = m.get_raw(&["result"]).map(str::to_owned);
        self.send_child(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into());
        if self.last_error.is_some() {
            systemd::status(&format!("server '{}' is running again", self.name));
        }
        self.probe_era();
        self.state = State::Running;
        log::info!("server '{}' initialized", self.name);
        // Re-establish what sessions asked for (after a restart).
        self.child_log_level = None;
        self.sync_log_level();
        // A subscribe that waited for this child is forwarded below, so
        // that its session gets the child's own answer; sent here too, the
        // child would be asked twice.
        let waiting: HashSet<&str> = self
            .pending
            .iter()
            .filter(|(_, m, _)| m.method() == Some("resources/subscribe"))
            .filter_map(|(_, m, _)| m.params()?.get("uri")?.as_str())
            .collect();
        let mut uris: Vec<String> = self
            .sessions
            .values()
            .flat_map(|s| s.subs.iter())
            .filter(|u| !waiting.contains(u.as_str()))
            .cloned()
            .collect();
        uris.sort();
        uris.dedup();
        // What the new child is subscribed to, as the waiting requests
        // below are forwarded in order.
        let mut child_subs: HashSet<String> = uris.iter().cloned().collect();
        for uri in uris {
            let up = self.fresh_id();
            self.internal.insert(up);
            let line = json!({"jsonrpc": "2.0", "id": up, "method": "resources/subscribe", "params": {"uri": uri}});
            self.send_child(line.to_string());
        }
        if restarted {
            // What the new child offers may differ from the old one's.
            let caps = self
                .init_result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .map(|v| v["capabilities"].clone())
                .unwrap_or(Value::Null);
            for kind in ["tools", "prompts", "resources"] {
                if caps.get(kind).is_some() {
                    let line = format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/{kind}/list_changed"}}"#
                    );
                    self.broadcast(&line);
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (sid, m, route) in pending {
            let modern = self
                .sessions
                .get(&sid)
                .is_some_and(|s| s.transport == Transport::Modern);
            let uri = m
                .params()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match (m.method(), uri) {
                (Some("initialize"), _) => self.session_request(&sid, m, route),
                // Waits for the era probe just sent.
                _ if modern => self.modern_request(&sid, m, route),
                (Some("resources/subscribe"), Some(uri)) => {
                    child_subs.insert(uri);
                    self.forward_request(&sid, m, route);
                }
                (Some("resources/unsubscribe"), Some(uri)) if !child_subs.remove(&uri) => {
                    // This child was never subscribed to it (the session's
                    // subscription ended with the old child): done already.
                    let id = m.id().expect("a request has an id").to_owned();
                    self.deliver_response(&sid, route, jsonrpc::result_reply(&id, "{}"));
                }
                _ => self.forward_request(&sid, m, route),
            }
        }
    }

    /// Sends a server-wide notification to every session.
    fn broadcast(&mut self, line: &str) {
        let targets: Vec<String> = self.sessions.keys().cloned().collect();
        for sid in targets {
            if let Some(route) = self.unrelated_route(&sid, false) {
                self.deliver(&sid, route, line.to_owned(), false);
            }
        }
    }

    fn on_child_request(&mut self, m: Message) {
        let child_id = m.id().expect("a request has an id").to_owned();
        let method = m.method().unwrap_or("").to_owned();
        if method == "ping" {
            return self.send_child(jsonrpc::result_reply(&child_id, "{}"));
        }
        let target = match self.pick_session_for(&method) {
            Ok(t) => t,
            Err(why) => {
                log::warn!("server '{}': {why}", self.name);
                let line =
                    jsonrpc::error_reply(Some(&child_id), jsonrpc::INTERNAL_ERROR, &why, None);
                return self.send_child(line);
            }
        };
        let (sid, route) = target;
        let ours = self.fresh_id();
        let line = m.with_id_raw(&ours.to_string());
        self.server_requests.insert(
            ours,
            ServerRequest {
                session: sid.clone(),
                child_id: child_id.clone(),
            },
        );
        // A session dropped while delivering has refused the request already.
        if !self.deliver(&sid, route, line, false) && self.server_requests.remove(&ours).is_some() {
            let why = format!("mcp-proxy: the client session for {method} is gone");
            let line = jsonrpc::error_reply(Some(&child_id), jsonrpc::INTERNAL_ERROR, &why, None);
            self.send_child(line);
        }
    }

    /// Which session a request from the child goes to: the only session
    /// with requests in flight, or among several the only one that declared
    /// the capability the request needs. Never a guess.
    fn pick_session_for(&self, method: &str) -> Result<(String, Route), String> {
        let mut busy: Vec<&String> = self.inflight.values().map(|i| &i.session).collect();
        busy.sort();
        busy.dedup();
        let needs = |c: &Caps| match method {
            "sampling/createMessage" => c.sampling,
            "elicitation/create" => c.elicitation,
            "roots/list" => c.roots,
            _ => false,
        };
        let sid = match busy.len() {
            0 => {
                return Err(format!(
                    "mcp-proxy: no client session has a request in flight, so nobody can answer {method}"
                ))
            }
            1 if self
                .sessions
                .get(busy[0])
                .is_some_and(|s| s.transport == Transport::Modern) =>
            {
                return Err(format!(
                    "mcp-proxy: the only request in flight is a 2026-07-28 request, which cannot receive {method} (SX-07: servers use input_required results instead)"
                ))
            }
            1 => busy[0].clone(),
            n => {
                let capable: Vec<&&String> = busy
                    .iter()
                    .filter(|s| self.sessions.get(**s).is_some_and(|s| needs(&s.caps)))
                    .collect();
                if capable.len() != 1 {
                    return Err(format!(
                        "mcp-proxy: cannot tell which client {method} is for: {n} sessions have requests in flight and {} of them declared the capability",
                        capable.len()
                    ));
                }
                (**capable[0]).clone()
            }
        };
        match self.unrelated_route(&sid, true) {
            Some(r) => Ok((sid, r)),
            None => Err(format!(
                "mcp-proxy: the client session for {method} has no open stream to receive it (open a GET stream or accept text/event-stream)"
            )),
        }
    }

    fn on_child_notification(&mut self, m: Message) {
        if m.raw().contains(META_SUBSCRIPTION_ID) {
            if let Some(tag) = m.get_raw(&["params", "_meta", META_SUBSCRIPTION_ID]) {
                return self.on_subscription_notification(&m, tag.to_owned());
            }
        }
        let method = m.method().unwrap_or("").to_owned();
        match method.as_str() {
            "notifications/progress" => {
                let Some(tok) = m.get_raw(&["params", "progressToken"]) else {
                    return;
                };
                let Some(inf) = self.progress.get(tok).and_then(|up| self.inflight.get(up)) else {
                    log::debug!(
                        "server '{}': progress for an unknown token {tok}",
                        self.name
                    );
                    return;
                };
                let (sid, route) = (inf.session.clone(), inf.route);
                let orig = inf
                    .progress
                    .clone()
                    .expect("mapped tokens have an original");
                let Some(out) = m.replace_raw(&["params", "progressToken"], &orig) else {
                    return;
                };
                if let Some(route) = self.related_route(&sid, route) {
                    self.deliver(&sid, route, out, false);
                }
            }
            "notifications/cancelled" => {
                // The child gives up on one of its own requests to a client.
                let Some(rid) = m.get_raw(&["params", "requestId"]) else {
                    return;
                };
                if self.listen_torn_down(&m, rid) {
                    return;
                }
                let found = self
                    .server_requests
                    .iter()
                    .find(|(_, r)| r.child_id == rid)
                    .map(|(k, _)| *k);
                if let Some(ours) = found {
                    let r = self.server_requests.remove(&ours).expect("just found");
                    if let Some(out) = m.replace_raw(&["params", "requestId"], &ours.to_string()) {
                        if let Some(route) = self.unrelated_route(&r.session, true) {
                            self.deliver(&r.session, route, out, false);
                        }
                    }
                }
            }
            "notifications/resources/updated" => {
                let uri = m
                    .params()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str);
                let Some(uri) = uri else { return };
                let targets: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.subs.contains(uri))
                    .map(|(k, _)| k.clone())
                    .collect();
                for sid in targets {
                    if let Some(route) = self.unrelated_route(&sid, false) {
                        self.deliver(&sid, route, m.raw().to_owned(), false);
                    }
                }
            }
            "notifications/message" => {
                let level = m
                    .params()
                    .and_then(|p| p.get("level"))
                    .and_then(Value::as_str)
                    .and_then(level_rank)
                    .unwrap_or(0);
                let targets: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.log_level.is_none_or(|min| level >= min))
                    .map(|(k, _)| k.clone())
                    .collect();
                for sid in targets {
                    if let Some(route) = self.unrelated_route(&sid, true) {
                        self.deliver(&sid, route, m.raw().to_owned(), false);
                    }
                }
                self.log_to_modern_request(level, m.raw());
            }
            // list_changed and anything else server-wide: every session.
            _ => self.broadcast(m.raw()),
        }
    }

    // ---- sessions ----

    /// Ends Streamable HTTP sessions that have had no stream open, nothing
    /// in flight and no message for the session timeout: clients that
    /// vanish without DELETE would otherwise hold their state forever.
    fn end_idle_sessions(&mut self) {
        let Some(timeout) = self.cfg.session_timeout else {
            return;
        };
        let busy: HashSet<&String> = self.inflight.values().map(|i| &i.session).collect();
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(k, s)| {
                s.transport == Transport::Streamable
                    && !busy.contains(k)
                    && s.main.tx.is_none()
                    && s.posts.values().all(|p| p.tx.is_none())
                    && s.last_active.elapsed() >= timeout
            })
            .map(|(k, _)| k.clone())
            .collect();
        for sid in idle {
            log::info!(
                "server '{}': ending a session idle for {} s",
                self.name,
                timeout.as_secs()
            );
            self.close_session(&sid, "idle for too long");
        }
    }

    /// Refuses a new session when `--max-sessions` are open.
    fn room_for_session(&self) -> Result<(), String> {
        let open = self
            .sessions
            .values()
            .filter(|s| !s.transport.ephemeral())
            .count();
        if open >= self.cfg.limits.max_sessions {
            log::warn!(
                "server '{}': {open} sessions open (--max-sessions); refusing another",
                self.name
            );
            return Err(format!(
                "Service Unavailable: server '{}' has the most sessions it takes ({open}); try again later",
                self.name
            ));
        }
        Ok(())
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn on_post(&mut self, p: Post) {
        let p = if p.transport == Transport::Modern && self.cfg.modern_sibling {
            match self.modern_post(p) {
                Some(p) => p,
                None => return,
            }
        } else {
            p
        };
        let mut p = p;
        self.serve_post(&mut p);
    }

    /// Serves a POST with this router's child.
    fn serve_post(&mut self, p: &mut Post) {
        let reply = self.post(p);
        let created = match &reply {
            PostReply::Stream {
                session,
                created: true,
                ..
            } => Some(session.clone()),
            _ => None,
        };
        if p.reply.send(reply).is_err() {
            // The HTTP thread is gone: nobody will read this exchange.
            if let Some(sid) = created {
                self.close_session(&sid, "the client went away");
            }
        }
    }

    fn post(&mut self, p: &mut Post) -> PostReply {
        if let Some(s) = p.session.as_ref().and_then(|s| self.sessions.get_mut(s)) {
            s.last_active = Instant::now();
        }
        let not_found = |msg: &str| PostReply::Error {
            status: 404,
            body: jsonrpc::error_body(None, -32001, msg),
        };
        let bad = |code: i64, msg: &str| PostReply::Error {
            status: 400,
            body: jsonrpc::error_body(None, code, msg),
        };
        let requests = p.msgs.iter().filter(|m| m.kind() == Kind::Request).count();
        let is_init = |m: &Message| m.method() == Some("initialize");
        if p.batch && p.msgs.iter().any(is_init) {
            return bad(
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: initialize must not be part of a batch",
            );
        }
        let (sid, new_session) = match (p.transport, &p.session) {
            (Transport::Sse, Some(s)) => {
                if !self
                    .sessions
                    .get(s)
                    .is_some_and(|x| x.transport == Transport::Sse)
                {
                    return PostReply::Error {
                        status: 404,
                        body: "Could not find session".into(),
                    };
                }
                (s.clone(), None)
            }
            (Transport::Streamable, Some(s)) => {
                if !self
                    .sessions
                    .get(s)
                    .is_some_and(|x| x.transport == Transport::Streamable)
                {
                    return not_found("Session not found");
                }
                (s.clone(), None)
            }
            (Transport::Modern, _) => {
                let sid = format!("modern-{}", util::random_hex(8));
                let v = p
                    .protocol_version
                    .as_deref()
                    .unwrap_or(crate::server::modern::MODERN_VERSIONS[0]);
                let mut s = Session::new(Transport::Modern, v, None);
                s.initialized = true;
                s.modern_log = p
                    .msgs
                    .first()
                    .and_then(|m| {
                        m.params()?
                            .get("_meta")?
                            .get(crate::server::modern::META_LOG_LEVEL)?
                            .as_str()
                    })
                    .and_then(level_rank);
                self.sessions.insert(sid.clone(), s);
                (sid, None)
            }
            (Transport::Stateless, _) => {
                let sid = format!("stateless-{}", util::random_hex(8));
                let v = p
                    .protocol_version
                    .as_deref()
                    .unwrap_or(DEFAULT_HTTP_VERSION);
                let mut s = Session::new(Transport::Stateless, v, None);
                s.initialized = true;
                self.sessions.insert(sid.clone(), s);
                (sid, None)
            }
            (Transport::Streamable, None) => {
                if p.batch || p.msgs.len() != 1 || !is_init(&p.msgs[0]) {
                    return bad(jsonrpc::INVALID_REQUEST, "Bad Request: Missing session ID");
                }
                if let Err(e) = self.room_for_session() {
                    return PostReply::Error {
                        status: 503,
                        body: jsonrpc::error_body(None, -32000, &e),
                    };
                }
                let sid = util::random_hex(16);
                let s = Session::new(Transport::Streamable, DEFAULT_HTTP_VERSION, None);
                self.sessions.insert(sid.clone(), s);
                (sid.clone(), Some(sid))
            }
            (Transport::Sse, None) => {
                return bad(jsonrpc::INVALID_REQUEST, "session_id is required");
            }
        };
        if p.batch {
            let v = self.sessions[&sid].version.clone();
            if v != "2025-03-26" {
                if p.transport.ephemeral() {
                    self.sessions.remove(&sid);
                }
                return bad(
                    jsonrpc::INVALID_REQUEST,
                    &format!("Invalid Request: batches are not part of protocol version {v}"),
                );
            }
        }
        if requests == 0 || p.transport == Transport::Sse {
            for m in std::mem::take(&mut p.msgs) {
                self.on_session_message(&sid, m, Route::Main);
            }
            if p.transport.ephemeral() {
                self.sessions.remove(&sid);
            }
            return PostReply::Accepted;
        }
        let Some(tx) = p.stream.take() else {
            return PostReply::Error {
                status: 500,
                body: jsonrpc::error_body(None, -32603, "Internal error: no reply stream"),
            };
        };
        let stream = {
            let s = self.sessions.get_mut(&sid).expect("session exists");
            let n = s.next_stream;
            s.next_stream += 1;
            s.posts
                .insert(n, Stream::new(Some(tx), p.json_only, requests));
            n
        };
        for m in std::mem::take(&mut p.msgs) {
            self.on_session_message(&sid, m, Route::Post(stream));
        }
        let version = self
            .sessions
            .get(&sid)
            .map(|s| s.version.clone())
            .unwrap_or_else(|| LATEST_VERSION.to_owned());
        PostReply::Stream {
            session: sid,
            created: new_session.is_some(),
            stream,
            version,
        }
    }

    /// One message from a session. `route` is where responses to its
    /// requests go.
    fn on_session_message(&mut self, sid: &str, m: Message, route: Route) {
        match m.kind() {
            Kind::Request => self.session_request(sid, m, route),
            Kind::Notification => self.session_notification(sid, m),
            Kind::Response => {
                let ours = m.id().and_then(|i| i.parse::<u64>().ok());
                // Without sessions (--stateless) the answer to a server
                // request necessarily comes in another POST, so any
                // stateless exchange may carry it.
                let stateless = self
                    .sessions
                    .get(sid)
                    .is_some_and(|s| s.transport == Transport::Stateless);
                let r = ours.and_then(|o| {
                    let target = &self.server_requests.get(&o)?.session;
                    let same = target == sid
                        || (stateless
                            && self
                                .sessions
                                .get(target)
                                .is_some_and(|s| s.transport == Transport::Stateless));
                    if same {
                        self.server_requests.remove(&o)
                    } else {
                        None
                    }
                });
                match r {
                    Some(r) => {
                        let line = m.with_id_raw(&r.child_id);
                        self.send_child(line);
                    }
                    None => log::debug!(
                        "server '{}': a client answered an unknown request: {}",
                        self.name,
                        truncate(m.raw(), 200)
                    ),
                }
            }
        }
    }

    fn session_request(&mut self, sid: &str, m: Message, route: Route) {
        let id = m.id().expect("a request has an id").to_owned();
        let modern = self
            .sessions
            .get(sid)
            .is_some_and(|s| s.transport == Transport::Modern);
        if modern {
            return self.modern_request(sid, m, route);
        }
        match m.method().unwrap_or("") {
            "initialize" => {
                // Answered from the child's own result, so before the first
                // child has answered, the session waits for it.
                if self.init_result.is_none() {
                    if let Some(msg) = self.hold_or_refuse(sid, &m, route) {
                        self.counters.proxy_error(ProxyError::Refused);
                        let line =
                            jsonrpc::error_reply(Some(&id), jsonrpc::INTERNAL_ERROR, &msg, None);
                        return self.deliver_response(sid, route, line);
                    }
                    if self.init_result.is_none() {
                        return;
                    }
                }
                let reply = self.initialize_reply(sid, &m, &id);
                self.deliver_response(sid, route, reply);
            }
            "ping" => self.deliver_response(sid, route, jsonrpc::result_reply(&id, "{}")),
            "logging/setLevel" => {
                let level = m
                    .params()
                    .and_then(|p| p.get("level"))
                    .and_then(Value::as_str);
                let Some(rank) = level.and_then(level_rank) else {
                    let line = jsonrpc::error_reply(
                        Some(&id),
                        jsonrpc::INVALID_PARAMS,
                        "Invalid params: level must be one of debug, info, notice, warning, error, critical, alert, emergency",
                        None,
                    );
                    return self.deliver_response(sid, route, line);
                };
                if let Some(s) = self.sessions.get_mut(sid) {
                    s.log_level = Some(rank);
                }
                self.sync_log_level();
                self.deliver_response(sid, route, jsonrpc::result_reply(&id, "{}"));
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let subscribe = m.method() == Some("resources/subscribe");
                let uri = m
                    .params()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(uri) = uri else {
                    return self.forward_request(sid, m, route);
                };
                if self.refuses_requests() {
                    // Refused: nothing to remember, or a later child would
                    // be asked to send updates the session was told it
                    // will not get.
                    return self.forward_request(sid, m, route);
                }
                let others = self
                    .sessions
                    .iter()
                    .any(|(k, s)| k != sid && s.subs.contains(&uri));
                if let Some(s) = self.sessions.get_mut(sid) {
                    if subscribe {
                        s.subs.insert(uri);
                    } else {
                        s.subs.remove(&uri);
                    }
                }
                if others {
                    // The child already sends updates for this URI (and must
                    // keep sending them to the other subscribers).
                    self.deliver_response(sid, route, jsonrpc::result_reply(&id, "{}"));
                } else {
                    self.forward_request(sid, m, route);
                }
            }
            _ => self.forward_request(sid, m, route),
        }
    }

    fn forward_request(&mut self, sid: &str, m: Message, route: Route) {
        let id = m.id().expect("a request has an id").to_owned();
        if let Some(msg) = self.hold_or_refuse(sid, &m, route) {
            self.counters.proxy_error(ProxyError::Refused);
            let line = jsonrpc::error_reply(Some(&id), jsonrpc::INTERNAL_ERROR, &msg, None);
            return self.deliver_response(sid, route, line);
        }
        if self.state != State::Running {
            return;
        }
        self.counters.requests_forwarded += 1;
        let up = self.fresh_id();
        let mut out = m.with_id_raw(&up.to_string());
        let mut progress = None;
        if let Some(tok) = m.get_raw(&["params", "_meta", "progressToken"]) {
            let ours = up.to_string();
            if let Some(rewritten) =
                jsonrpc::splice(&out, &["params", "_meta", "progressToken"], &ours)
            {
                progress = Some(tok.to_owned());
                self.progress.insert(ours, up);
                out = rewritten;
            }
        }
        self.inflight.insert(
            up,
            Inflight {
                session: sid.to_owned(),
                orig_id: id,
                route,
                progress,
            },
        );
        self.send_child(out);
    }

    /// A request now would be refused (see [`Router::hold_or_refuse`]).
    fn refuses_requests(&self) -> bool {
        match self.state {
            State::Running => false,
            State::Starting | State::Restarting => self.pending.len() >= MAX_PENDING,
            State::Failed | State::Stopping => true,
        }
    }

    /// While the child (re)starts, a request waits for it (`None` returned,
    /// the request kept in `pending`); a failed or stopping server, or too
    /// many waiting requests, refuse it (the error message returned).
    /// `None` with the state `Running`: go ahead.
    fn hold_or_refuse(&mut self, sid: &str, m: &Message, route: Route) -> Option<String> {
        let why = || {
            self.last_error
                .as_deref()
                .map(|e| format!(": it {e}"))
                .unwrap_or_default()
        };
        match self.state {
            State::Running => None,
            State::Starting | State::Restarting if self.pending.len() < MAX_PENDING => {
                self.pending.push((sid.to_owned(), m.clone(), route));
                None
            }
            State::Starting | State::Restarting => Some(format!(
                "server '{}' is {} and {MAX_PENDING} requests are already waiting for it; try again later",
                self.name,
                self.state.name()
            )),
            State::Failed => Some(format!(
                "server '{}' has failed{}; {}",
                self.name,
                why(),
                retry_note(self.cfg.restart.failed_retry)
            )),
            State::Stopping => Some("mcp-proxy is shutting down".into()),
        }
    }

    fn initialize_reply(&mut self, sid: &str, m: &Message, id: &str) -> String {
        let Some(s) = self.sessions.get_mut(sid) else {
            return String::new();
        };
        if s.initialized && s.transport == Transport::Streamable {
            return jsonrpc::error_reply(
                Some(id),
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: this session is already initialized",
                None,
            );
        }
        let p = m.params().cloned().unwrap_or(Value::Null);
        let asked = p["protocolVersion"].as_str().unwrap_or("");
        let version = if SUPPORTED_VERSIONS.contains(&asked) {
            asked
        } else {
            LATEST_VERSION
        };
        let caps = &p["capabilities"];
        s.caps = Caps {
            sampling: caps.get("sampling").is_some(),
            elicitation: caps.get("elicitation").is_some(),
            roots: caps.get("roots").is_some(),
        };
        s.version = version.to_owned();
        s.initialized = true;
        // The child's own bytes, with only the version changed.
        let result = self.init_result.as_deref().unwrap_or("{}");
        let reply = Message::ours(jsonrpc::result_reply(id, result));
        let v = jsonrpc::quote(version);
        match reply.replace(&["result", "protocolVersion"], &v) {
            Some(r) => r.into_raw(),
            None => {
                let mut value = reply.value()["result"].clone();
                if !value.is_object() {
                    value = json!({});
                }
                value["protocolVersion"] = Value::String(version.to_owned());
                jsonrpc::result_reply(id, &value.to_string())
            }
        }
    }

    fn session_notification(&mut self, sid: &str, m: Message) {
        match m.method().unwrap_or("") {
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let Some(rid) = m.get_raw(&["params", "requestId"]) else {
                    return;
                };
                let up = self
                    .inflight
                    .iter()
                    .find(|(_, i)| i.session == sid && i.orig_id == rid)
                    .map(|(k, _)| *k);
                let Some(up) = up else {
                    log::debug!("server '{}': cancel of an unknown request {rid}", self.name);
                    return;
                };
                if let Some(out) = m.replace_raw(&["params", "requestId"], &up.to_string()) {
                    self.send_child(out);
                }
                self.drop_inflight(up);
            }
            _ => {
                if self.state == State::Running {
                    self.send_child(m.into_raw());
                }
            }
        }
    }

    /// Forgets a request that will get no response (cancelled): its POST
    /// stream ends without one.
    fn drop_inflight(&mut self, up: u64) {
        let Some(inf) = self.inflight.remove(&up) else {
            return;
        };
        self.progress.remove(&up.to_string());
        self.request_done(&inf.session, inf.route);
    }

    fn answer_error(&mut self, up: u64, code: i64, msg: &str) {
        if let Some(inf) = self.inflight.remove(&up) {
            self.progress.remove(&up.to_string());
            let line = jsonrpc::error_reply(Some(&inf.orig_id), code, msg, None);
            self.deliver_response(&inf.session, inf.route, line);
        }
    }

    /// The route for traffic related to a request of `route`: its POST
    /// stream, unless that exchange takes only JSON (then the GET stream).
    fn related_route(&self, sid: &str, route: Route) -> Option<Route> {
        let s = self.sessions.get(sid)?;
        match route {
            Route::Main => Some(Route::Main),
            Route::Post(n) => match s.posts.get(&n) {
                Some(st) if !st.json_only && st.tx.is_some() => Some(route),
                _ => s.main.tx.is_some().then_some(Route::Main),
            },
        }
    }

    /// The route for traffic not tied to a known request (RL-05): for
    /// server requests and log messages, the stream of the session's only
    /// request in flight, else its GET stream; for other notifications the
    /// GET stream first. Never several streams (SH-31).
    fn unrelated_route(&self, sid: &str, prefer_request: bool) -> Option<Route> {
        let s = self.sessions.get(sid)?;
        match s.transport {
            Transport::Sse => return Some(Route::Main),
            // Only traffic of its own request (SX-07, SX-11, LC-80).
            Transport::Modern => return None,
            _ => {}
        }
        let mut live: Vec<u64> = s
            .posts
            .iter()
            .filter(|(_, st)| st.tx.is_some() && st.open > 0 && !st.json_only)
            .map(|(n, _)| *n)
            .collect();
        live.sort();
        let single = (live.len() == 1).then(|| Route::Post(live[0]));
        let main = s.main.tx.is_some().then_some(Route::Main);
        if prefer_request {
            single.or(main)
        } else {
            main.or(single)
        }
    }

    /// Delivers a response; the request it answers is done.
    fn deliver_response(&mut self, sid: &str, route: Route, line: String) {
        self.deliver(sid, route, line, true);
        self.request_done(sid, route);
    }

    /// One request of `route` needs nothing more; a POST stream whose
    /// requests are all done ends (its sender is dropped).
    fn request_done(&mut self, sid: &str, route: Route) {
        let Route::Post(n) = route else { return };
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        let Some(st) = s.posts.get_mut(&n) else {
            return;
        };
        st.open = st.open.saturating_sub(1);
        if st.open > 0 {
            return;
        }
        st.tx = None;
        if s.transport.ephemeral() {
            self.sessions.remove(sid);
            return;
        }
        s.finished.push_back(n);
        while s.finished.len() > REPLAY_STREAMS {
            if let Some(old) = s.finished.pop_front() {
                s.posts.remove(&old);
            }
        }
    }

    /// Sends one message to a session's stream. Returns false when it could
    /// not be delivered now. A full queue drops the session (slow consumer);
    /// a vanished connection is handled like [`Event::StreamGone`].
    fn deliver(&mut self, sid: &str, route: Route, data: String, response: bool) -> bool {
        let Some(s) = self.sessions.get_mut(sid) else {
            return false;
        };
        let resumable = s.resumable();
        let n = match route {
            Route::Main => MAIN,
            Route::Post(n) => n,
        };
        let Some(st) = s.stream_mut(route) else {
            return false;
        };
        st.seq += 1;
        let event_id = resumable.then(|| format!("{n}-{}", st.seq));
        if resumable {
            st.history.push_back((st.seq, data.clone(), response));
            st.history_bytes += data.len();
            let (max_events, max_bytes) =
                (self.cfg.limits.replay_events, self.cfg.limits.replay_bytes);
            while st.history.len() > max_events || st.history_bytes > max_bytes {
                match st.history.pop_front() {
                    Some((_, old, _)) => st.history_bytes -= old.len(),
                    None => break,
                }
            }
        }
        let result = match &st.tx {
            None => Delivery::NoConnection,
            Some(tx) => match tx.try_send(Out {
                event_id,
                data,
                response,
            }) {
                Ok(()) => Delivery::Sent,
                Err(TrySendError::Full(_)) => Delivery::Full,
                Err(TrySendError::Disconnected(_)) => Delivery::Gone,
            },
        };
        match result {
            Delivery::Sent => true,
            Delivery::NoConnection => false,
            Delivery::Full => {
                self.counters.dropped(Dropped::SlowConsumer);
                log::warn!(
                    "server '{}': a client reads too slowly ({} messages queued, --stream-queue); dropping its session",
                    self.name,
                    self.cfg.limits.stream_queue
                );
                self.close_session(sid, "the client read too slowly");
                false
            }
            Delivery::Gone => {
                let conn = self
                    .sessions
                    .get_mut(sid)
                    .and_then(|s| s.stream_mut(route))
                    .map_or(0, |st| st.conn);
                self.stream_gone(sid, n, conn);
                false
            }
        }
    }

    /// A client connection went away. The HTTP+SSE stream is the session,
    /// so the session ends; a POST stream's requests are cancelled at the
    /// child; a GET stream is simply closed.
    fn stream_gone(&mut self, sid: &str, stream: u64, conn: u64) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        let current = match stream {
            MAIN => s.main.conn,
            n => s.posts.get(&n).map_or(0, |st| st.conn),
        };
        if current != conn {
            return;
        }
        s.last_active = Instant::now();
        if s.transport == Transport::Sse {
            return self.close_session(sid, "the client disconnected");
        }
        if stream == MAIN {
            s.main.tx = None;
            return;
        }
        let open = match s.posts.get_mut(&stream) {
            Some(st) if st.tx.is_some() => {
                st.tx = None;
                st.open
            }
            _ => return,
        };
        if open == 0 {
            return;
        }
        let ups: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, i)| i.session == sid && i.route == Route::Post(stream))
            .map(|(k, _)| *k)
            .collect();
        for up in ups {
            self.cancel_at_child(up, "the client disconnected");
            self.drop_inflight(up);
        }
    }

    fn cancel_at_child(&mut self, up: u64, reason: &str) {
        if self.state == State::Running {
            let line = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": up, "reason": reason}});
            self.send_child(line.to_string());
        }
    }

    /// Ends a session: its requests are cancelled at the child, requests
    /// the child sent it are refused, its subscriptions and log level go.
    fn close_session(&mut self, sid: &str, reason: &str) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        log::debug!("server '{}': session ended: {reason}", self.name);
        let ups: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, i)| i.session == sid)
            .map(|(k, _)| *k)
            .collect();
        for up in ups {
            self.cancel_at_child(up, reason);
            self.inflight.remove(&up);
            self.progress.remove(&up.to_string());
        }
        let asked: Vec<u64> = self
            .server_requests
            .iter()
            .filter(|(_, r)| r.session == sid)
            .map(|(k, _)| *k)
            .collect();
        for ours in asked {
            let r = self.server_requests.remove(&ours).expect("just listed");
            let msg = format!("mcp-proxy: the client session ended ({reason})");
            let line = jsonrpc::error_reply(Some(&r.child_id), jsonrpc::INTERNAL_ERROR, &msg, None);
            self.send_child(line);
        }
        for uri in s.subs {
            let others = self.sessions.values().any(|o| o.subs.contains(&uri));
            if !others && self.state == State::Running {
                let up = self.fresh_id();
                self.internal.insert(up);
                let line = json!({"jsonrpc": "2.0", "id": up, "method": "resources/unsubscribe", "params": {"uri": uri}});
                self.send_child(line.to_string());
            }
        }
        if s.log_level.is_some() {
            self.sync_log_level();
        }
    }

    /// Tells the child the most verbose level any session asked for.
    fn sync_log_level(&mut self) {
        let want = self.sessions.values().filter_map(|s| s.log_level).min();
        if want.is_none() || want == self.child_log_level || self.state != State::Running {
            return;
        }
        self.child_log_level = want;
        let up = self.fresh_id();
        self.internal.insert(up);
        let level = LOG_LEVELS[want.expect("checked above")];
        let line = json!({"jsonrpc": "2.0", "id": up, "method": "logging/setLevel", "params": {"level": level}});
        self.send_child(line.to_string());
    }

    fn open_get(&mut self, sid: &str, last_event_id: Option<&str>) -> GetReply {
        if let Some(s) = self.sessions.get_mut(sid) {
            s.last_active = Instant::now();
        }
        let Some(s) = self.sessions.get_mut(sid) else {
            return GetReply::Error {
                status: 404,
                body: jsonrpc::error_body(None, -32001, "Session not found"),
            };
        };
        if s.transport != Transport::Streamable {
            return GetReply::Error {
                status: 404,
                body: jsonrpc::error_body(None, -32001, "Session not found"),
            };
        }
        let version = s.version.clone();
        let resume = last_event_id.and_then(|l| {
            let (n, seq) = l.split_once('-')?;
            Some((n.parse::<u64>().ok()?, seq.parse::<u64>().ok()?))
        });
        let (n, after) = match resume {
            Some((n, seq)) if n == MAIN || s.posts.contains_key(&n) => (n, Some(seq)),
            _ => (MAIN, None),
        };
        let st = if n == MAIN {
            &mut s.main
        } else {
            s.posts.get_mut(&n).expect("checked above")
        };
        // A resumption supersedes the connection it resumes (the client
        // saw it break before we did); a second fresh stream is a conflict.
        if n == MAIN && st.tx.is_some() && after.is_none() {
            return GetReply::Error {
                status: 409,
                body: jsonrpc::error_body(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Conflict: Only one SSE stream is allowed per session",
                ),
            };
        }
        let (tx, rx) = queue::bounded(self.cfg.limits.stream_queue);
        if let Some(after) = after {
            for (seq, data, response) in st.history.iter().filter(|(q, _, _)| *q > after) {
                let _ = tx.try_send(Out {
                    event_id: Some(format!("{n}-{seq}")),
                    data: data.clone(),
                    response: *response,
                });
            }
        }
        // A finished POST stream is replayed and then ends; the GET stream
        // (and a POST stream still waiting for its response) goes on.
        if n == MAIN || st.open > 0 {
            st.tx = Some(tx);
            st.conn += 1;
        }
        GetReply::Stream {
            stream: n,
            conn: st.conn,
            seq: st.seq,
            resumed: after.is_some(),
            version,
            rx,
        }
    }

    fn status(&self) -> ServerStatus {
        let count = |t: Transport| self.sessions.values().filter(|s| s.transport == t).count();
        let open_streams = self
            .sessions
            .values()
            .map(|s| {
                usize::from(s.main.tx.is_some())
                    + s.posts
                        .values()
                        .filter(|st| st.tx.is_some() && !st.json_only)
                        .count()
            })
            .sum();
        ServerStatus {
            name: self.name.clone(),
            state: self.state.name().to_owned(),
            pid: self.child.as_ref().map(|c| c.pid),
            sessions: self
                .sessions
                .values()
                .filter(|s| !s.transport.ephemeral())
                .count(),
            sse_sessions: self
                .sessions
                .values()
                .filter(|s| s.transport == Transport::Sse)
                .count(),
            requests_in_flight: self.inflight.len(),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            last_error: self.last_error.clone(),
            serves_modern: match self.era {
                Era::Unknown => None,
                Era::Both => Some(true),
                Era::LegacyOnly => Some(false),
            },
            modern_sibling: None,
            metrics: metrics::Snapshot {
                counters: {
                    let mut c = self.counters;
                    c.child_starts += self.sibling_starts;
                    c
                },
                sse_sessions: count(Transport::Sse),
                streamable_sessions: count(Transport::Streamable),
                stateless_sessions: count(Transport::Stateless),
                modern_sessions: count(Transport::Modern),
                open_streams,
            },
        }
    }
}

/// The proxy's own `server/discover` request with upstream id `up`.
fn discover_probe(up: u64) -> String {
    let modern = crate::server::modern::MODERN_VERSIONS;
    json!({"jsonrpc": "2.0", "id": up, "method": "server/discover", "params": {"_meta": {
        crate::server::modern::META_PROTOCOL_VERSION: modern[modern.len() - 1],
        crate::server::modern::META_CLIENT_CAPABILITIES: {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-proxy", "version": crate::cli::VERSION}
    }}})
    .to_string()
}

/// Whether a `server/discover` answer lists a 2026-07-28 version.
fn lists_modern(m: &Message) -> bool {
    let modern = crate::server::modern::MODERN_VERSIONS;
    m.value()["result"]["supportedVersions"]
        .as_array()
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.as_str().is_some_and(|v| modern.contains(&v)))
        })
}

/// What happens next to a failed server, for its log line and errors.
fn retry_note(failed_retry: Option<Duration>) -> String {
    match failed_retry {
        Some(every) => format!("mcp-proxy retries it every {} s", every.as_secs_f64()),
        None => "it will not be retried (--failed-retry 0); restart mcp-proxy to try again".into(),
    }
}

fn level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_rank_by_verbosity() {
        assert!(level_rank("debug") < level_rank("warning"));
        assert_eq!(level_rank("emergency"), Some(7));
        assert_eq!(level_rank("loud"), None);
    }

    #[test]
    fn restart_backoff_doubles_up_to_the_cap_then_the_budget_ends() {
        let p = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(10),
            failed_retry: None,
        };
        let d: Vec<_> = (0..4).map(|n| p.delay(n)).collect();
        assert_eq!(
            d,
            [
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(20)),
                Some(RESTART_BACKOFF_CAP),
                None
            ]
        );
        let never = RestartPolicy {
            max_restarts: 0,
            ..p
        };
        assert_eq!(never.delay(0), None);
    }

    #[test]
    fn requests_wait_during_a_restart_and_fail_at_once_when_failed() {
        let call = |id: usize| {
            Message::parse(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#
            ))
            .expect("valid request")
        };
        let mut r = router();
        let rx = add(&mut r, "a", NONE, 0);
        r.state = State::Restarting;
        for id in 0..MAX_PENDING {
            r.forward_request("a", call(id), Route::Main);
        }
        assert_eq!(r.pending.len(), MAX_PENDING);
        assert!(rx.try_recv().is_err(), "nothing answered while waiting");
        r.forward_request("a", call(MAX_PENDING), Route::Main);
        let refused = rx.try_recv().expect("one too many is refused");
        assert!(refused.data.contains("already waiting"), "{}", refused.data);
        // The attempt fails: every waiting request gets the reason.
        r.fail_requests("server 't' exited with status 3", ProxyError::ChildDied);
        assert!(r.pending.is_empty());
        let first = rx
            .try_recv()
            .expect("the waiting requests are answered")
            .data;
        assert!(first.contains("exited with status 3"), "{first}");
        let mut r = router();
        let rx = add(&mut r, "a", NONE, 0);
        r.state = State::Failed;
        r.last_error = Some("exited with status 3".into());
        r.forward_request("a", call(1), Route::Main);
        let e = rx.try_recv().expect("refused at once").data;
        assert!(e.contains("'t' has failed: it exited with status 3"), "{e}");
        assert!(r.pending.is_empty() && r.inflight.is_empty());
    }

    #[test]
    fn a_failed_server_is_retried_at_its_own_pace_or_never() {
        let mut r = router();
        r.cfg.restart.max_restarts = 1;
        r.cfg.restart.failed_retry = Some(Duration::from_secs(7));
        r.state = State::Restarting;
        r.recent_restarts.push_back(Instant::now());
        let before = Instant::now();
        r.schedule_restart();
        assert_eq!(r.state, State::Failed);
        let at = r.restart_at.expect("a retry is due");
        assert!(at >= before + Duration::from_secs(7), "after failed_retry");
        // The window has slid on and the budget is back: still one retry
        // per interval, and still failed until a retry works.
        r.recent_restarts.clear();
        r.schedule_restart();
        assert_eq!(r.state, State::Failed);
        assert!(r.restart_at.expect("a retry is due") >= before + Duration::from_secs(7));
        r.cfg.restart.failed_retry = None;
        r.schedule_restart();
        assert_eq!(r.state, State::Failed);
        assert_eq!(r.restart_at, None, "never retried");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    /// A router with no child: its routing state, driven directly.
    fn router() -> Router {
        let (tx, _rx) = channel();
        let spec = ChildSpec {
            name: "t".into(),
            program: "none".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        };
        let mut r = Router::new(
            Config {
                spec,
                max_message_bytes: 1 << 20,
                init_timeout: None,
                session_timeout: None,
                limits: Limits::default(),
                restart: RestartPolicy::default(),
                shutdown_grace: CHILD_GRACE,
                modern_sibling: false,
                modern_only: false,
            },
            tx,
        );
        r.state = State::Running;
        r
    }

    /// Adds an HTTP+SSE session with `caps` and `busy` requests in flight;
    /// returns its id and the receiving end of its stream.
    fn add(r: &mut Router, name: &str, caps: Caps, busy: usize) -> BoundedReceiver<Out> {
        let (tx, rx) = queue::bounded(STREAM_QUEUE_MESSAGES);
        let mut s = Session::new(Transport::Sse, "2024-11-05", Some(tx));
        s.caps = caps;
        r.sessions.insert(name.into(), s);
        for _ in 0..busy {
            let up = r.fresh_id();
            r.inflight.insert(
                up,
                Inflight {
                    session: name.into(),
                    orig_id: "1".into(),
                    route: Route::Main,
                    progress: None,
                },
            );
        }
        rx
    }

    const SAMPLING: Caps = Caps {
        sampling: true,
        elicitation: false,
        roots: false,
    };
    const NONE: Caps = Caps {
        sampling: false,
        elicitation: false,
        roots: false,
    };

    #[test]
    fn server_requests_go_only_where_they_can_be_answered() {
        let pick = |r: &Router| r.pick_session_for("sampling/createMessage").map(|(s, _)| s);
        let mut r = router();
        let _a = add(&mut r, "a", SAMPLING, 0);
        assert!(pick(&r).unwrap_err().contains("no client session"));
        let _b = add(&mut r, "b", NONE, 2);
        assert_eq!(pick(&r).unwrap(), "b", "the only busy session");
        let _c = add(&mut r, "c", SAMPLING, 1);
        assert_eq!(pick(&r).unwrap(), "c", "the only busy one that can sample");
        let _d = add(&mut r, "d", SAMPLING, 1);
        assert!(pick(&r).unwrap_err().contains("cannot tell"));
    }

    #[test]
    fn a_notification_for_an_unknown_subscription_goes_nowhere() {
        let mut r = router();
        let legacy = add(&mut r, "a", NONE, 0);
        let tagged = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":42}}}"#;
        r.on_child_notification(Message::parse(tagged).unwrap());
        assert!(legacy.try_recv().is_err(), "LC-82: never broadcast");
        let plain = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        r.on_child_notification(Message::parse(plain).unwrap());
        assert_eq!(
            legacy.try_recv().unwrap().data,
            plain,
            "legacy traffic still flows"
        );
    }

    #[test]
    fn a_full_queue_drops_only_that_session() {
        let mut r = router();
        let _slow = add(&mut r, "slow", NONE, 1);
        let fast = add(&mut r, "fast", NONE, 0);
        for i in 0..=STREAM_QUEUE_MESSAGES {
            r.deliver("slow", Route::Main, format!("{i}"), false);
        }
        assert!(!r.sessions.contains_key("slow"));
        assert!(r.inflight.is_empty(), "its requests are forgotten");
        let m = r.status().metrics;
        assert_eq!(m.counters.dropped_count(Dropped::SlowConsumer), 1);
        assert_eq!(m.sse_sessions, 1);
        assert!(r.deliver("fast", Route::Main, "x".into(), false));
        assert_eq!(fast.try_recv().unwrap().data, "x");
    }

    #[test]
    fn replay_resumes_after_the_given_event() {
        let mut r = router();
        let s = Session::new(Transport::Streamable, "2025-06-18", None);
        r.sessions.insert("s".into(), s);
        for i in 1..=3 {
            r.deliver("s", Route::Main, format!("m{i}"), false);
        }
        let GetReply::Stream { rx, resumed, .. } = r.open_get("s", Some("0-1")) else {
            panic!("a stream")
        };
        assert!(resumed);
        let got: Vec<(Option<String>, String)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|o| (o.event_id, o.data))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("0-2".into()), "m2".into()),
                (Some("0-3".into()), "m3".into())
            ]
        );
        assert!(matches!(
            r.open_get("s", None),
            GetReply::Error { status: 409, .. }
        ));
    }
}
