//! Server mode: local stdio MCP servers shared by many HTTP clients.
//!
//! Each configured server (the default one at the root, each named one at
//! `/servers/NAME/`) gets its own router thread and child (router.rs). This
//! module owns the HTTP side: each connection has its own thread (at most
//! `--max-connections` at once; our tiny_http copy, PATCHED.md change 5)
//! that runs its requests one after the other: it checks Origin and Host,
//! answers CORS, checks the `--auth-token` (every path but
//! [`AUTH_EXEMPT_PATHS`], and `/status` and `/metrics` with
//! `--status-no-auth`), and dispatches to the HTTP+SSE endpoints
//! (legacy.rs), the Streamable HTTP endpoint (streamable.rs), `/status`,
//! `/metrics` (metrics.rs), `/healthz` or `/readyz`. A connection's thread
//! ends when the client closes it.
//!
//! Under systemd (systemd.rs) it may serve on an inherited socket, tells
//! systemd when it listens and when it stops, and feeds the watchdog from
//! a `watchdog` thread while every router answers.
//!
//! The proxy listens at once; every server starts in parallel on its own
//! router thread, and one that cannot start never holds up the others.
//! `/readyz` says when all of them are running.
//!
//! Shutdown: the `signals` thread turns the first SIGTERM/SIGINT/SIGHUP into
//! a `shutdown` thread that answers new requests 503, has every router end its
//! sessions (so their streams end) and stop its child gracefully (stdin
//! closed, `--shutdown-grace`, SIGTERM to the group, the grace again,
//! SIGKILL), all servers at once, then exits with 128 + the signal number.
//! A second signal exits at once; the supervisors still take every child
//! down with us.

mod http;
mod legacy;
pub mod metrics;
pub mod modern;
mod streamable;

use crate::cli::Args;
use crate::config;
use crate::router::{self, Event, ServerStatus};
use crate::{signals, systemd, util};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tiny_http::{Method, Request};

/// Paths that answer without the `--auth-token`: probes for supervisors,
/// which must work without a secret and reveal nothing about sessions.
pub const AUTH_EXEMPT_PATHS: &[&str] = &["/healthz", "/readyz"];
/// Stack of a connection thread: it parses JSON and copies bytes, no more.
const CONNECTION_STACK_BYTES: usize = 512 * 1024;
/// How long `/status` waits for a router's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for reaping children on top of the shutdown graces.
const STOP_SLACK: Duration = Duration::from_secs(3);
/// How long open HTTP exchanges get to finish after the servers stopped.
const STREAM_DRAIN: Duration = Duration::from_secs(1);

/// One server as the HTTP side sees it.
pub struct Mount {
    pub name: String,
    /// `""` for the default server, `/servers/NAME` for a named one.
    pub prefix: String,
    pub router: Sender<Event>,
}

/// What every exchange thread shares: read-only configuration, the
/// routers' senders, and a few counters.
pub struct Ctx {
    pub args: Args,
    /// Configured but disabled servers, shown in /status.
    pub disabled: Vec<String>,
    pub mounts: Vec<Mount>,
    pub loopback: bool,
    /// The names the Host header may give, lowercase and without a port;
    /// `None`: any (see [`allowed_hosts`]).
    pub allowed_hosts: Option<Vec<String>>,
    /// Microseconds since the epoch of the last SSE connect or /mcp request.
    pub last_activity_us: AtomicU64,
    pub exchanges: AtomicUsize,
    /// When the proxy started (`/metrics`).
    pub started: SystemTime,
}

impl Ctx {
    pub fn touch(&self) {
        self.last_activity_us.store(now_us(), Ordering::Relaxed);
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn run(args: &Args, activation: systemd::Activation) -> ExitCode {
    let started = SystemTime::now();
    let getenv = |k: &str| std::env::var(k).ok();
    let defs = match config::servers(args, &getenv) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let mut mounts = Vec::new();
    let mut disabled = Vec::new();
    for def in defs {
        if !def.enabled {
            log::info!("server '{}' is disabled; not started", def.name);
            disabled.push(def.name);
            continue;
        }
        let cfg = router::Config {
            spec: def.spec,
            max_message_bytes: args.max_message_bytes,
            init_timeout: def.timeout.or(args.init_timeout),
            session_timeout: args.session_timeout,
            limits: router::Limits {
                max_sessions: args.max_sessions,
                stream_queue: args.stream_queue,
                replay_events: args.replay_events,
                replay_bytes: args.replay_bytes,
            },
            restart: router::RestartPolicy {
                max_restarts: args.max_restarts,
                window: args.restart_window,
                backoff: args.restart_backoff,
                failed_retry: args.failed_retry,
            },
            shutdown_grace: args.shutdown_grace,
            modern_sibling: args.modern_sibling,
            modern_only: false,
        };
        match router::start(cfg) {
            Ok(tx) => mounts.push(Mount {
                name: def.name,
                prefix: def.prefix,
                router: tx,
            }),
            Err(e) => {
                eprintln!("mcp-proxy: {e}");
                stop_all(&mounts, args.shutdown_grace);
                return ExitCode::from(1);
            }
        }
    }
    // A socket from systemd replaces --host and --port: its address is
    // the one the Host and Origin checks and the warnings below go by.
    let mut args = args.clone();
    let listener = match activation.listener {
        Some(Ok(l)) => {
            log::info!(
                "serving on the socket systemd passed (fd 3); --host and --port are not used"
            );
            if let Ok(a) = l.local_addr() {
                args.host = a.ip().to_string();
                args.port = a.port();
            }
            Ok(l)
        }
        Some(Err(e)) => Err(e),
        None => bind(&args).map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}; pick another --port or --host",
                args.host, args.port
            )
        }),
    };
    let listener = match listener.and_then(|l| configure(&args, l)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            stop_all(&mounts, args.shutdown_grace);
            return ExitCode::from(1);
        }
    };
    let args = &args;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let base = format!("http://{host}:{port}");
    if args.auth_token.is_none() && !http::is_loopback_bind(&args.host) {
        say(&format!(
            "WARNING: mcp-proxy listens on {} without --auth-token: anyone who can reach this address can run the server's tools as you. Set --auth-token (or --auth-token-file, MCP_PROXY_AUTH_TOKEN), or listen on 127.0.0.1.",
            args.host
        ));
    }
    say(&format!("listening on {base}"));
    for m in &mounts {
        say(&format!(
            "  {}: {base}{}/sse (HTTP+SSE), {base}{}/mcp (Streamable HTTP)",
            m.name, m.prefix, m.prefix
        ));
    }
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        disabled,
        loopback: http::is_loopback_bind(&args.host),
        allowed_hosts: allowed_hosts(args),
        mounts,
        last_activity_us: AtomicU64::new(now_us()),
        exchanges: AtomicUsize::new(0),
        started,
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let handler = {
        let (ctx, stopping) = (ctx.clone(), stopping.clone());
        Arc::new(move |rq: Request| serve(&ctx, &stopping, rq))
    };
    // Kept until the process exits: dropping it closes the listener.
    let _server = match tiny_http::Server::from_listener_with_handler(
        listener,
        None,
        CONNECTION_STACK_BYTES,
        handler,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcp-proxy: cannot serve HTTP on {base}: {e}");
            stop_all(&ctx.mounts, args.shutdown_grace);
            return ExitCode::from(1);
        }
    };
    // The watchdog thread first: once systemd hears READY=1 it expects
    // the watchdog to be fed.
    if let Some(interval) = activation.watchdog {
        if systemd::enabled() {
            let ctx = ctx.clone();
            systemd::spawn_watchdog(interval, move |within| routers_answer(&ctx, within));
        }
    }
    systemd::ready(&base);
    {
        // Signals that came before this point are still pending (blocked),
        // so none is lost.
        let ctx = ctx.clone();
        let stopping = stopping.clone();
        signals::spawn_waiter(move |sig| {
            if stopping.swap(true, Ordering::SeqCst) {
                log::warn!("signal {sig} again: exiting now");
                std::process::exit(signals::exit_status(sig) as i32);
            }
            log::info!("signal {sig}: stopping the servers");
            systemd::notify("STOPPING=1");
            let ctx = ctx.clone();
            let spawned = thread::Builder::new()
                .name("shutdown".into())
                .spawn(move || {
                    // New requests get 503 from now on (`serve`).
                    let routers: Vec<Sender<Event>> =
                        ctx.mounts.iter().map(|m| m.router.clone()).collect();
                    stop_routers(&routers, ctx.args.shutdown_grace);
                    // The routers ended every session, so the streams end;
                    // let their threads write the last bytes.
                    let deadline = std::time::Instant::now() + STREAM_DRAIN;
                    while ctx.exchanges.load(Ordering::Relaxed) > 0
                        && std::time::Instant::now() < deadline
                    {
                        thread::sleep(Duration::from_millis(10));
                    }
                    std::process::exit(signals::exit_status(sig) as i32);
                });
            if spawned.is_err() {
                std::process::exit(signals::exit_status(sig) as i32);
            }
        });
    }
    // The shutdown thread exits the process once the servers are down.
    loop {
        thread::park();
    }
}

/// Runs one request on the connection thread that read it (our
/// tiny_http copy, PATCHED.md change 5): no hand-off to another thread,
/// which cost a context switch and a scheduler wake-up per request (bench
/// findings), and an SSE stream holds one thread instead of two.
fn serve(ctx: &Ctx, stopping: &AtomicBool, rq: Request) {
    if stopping.load(Ordering::SeqCst) {
        http::respond(rq, 503, "text/plain", "Shutting down", &[]);
        return;
    }
    // An exchange runs on its connection's thread, so `--max-connections`
    // (enforced as tiny_http accepts) bounds the exchanges too.
    ctx.exchanges.fetch_add(1, Ordering::Relaxed);
    let _count = ExchangeCount(ctx);
    handle(ctx, rq);
}

/// One line to stderr. A full or broken stderr (a disk-full log file)
/// must not stop the proxy, so errors are ignored where `eprintln!`
/// would panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn bind(args: &Args) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((args.host.as_str(), args.port))
}

/// Readies the listener, bound or inherited. With `--write-timeout`, the listening socket gets
/// `SO_SNDTIMEO`, which Linux copies to every accepted socket: a client
/// that stops reading (its TCP window full) then fails our write after
/// the timeout instead of holding its exchange thread forever. tiny_http
/// offers no per-connection hook, and its accept loop would end on an
/// accept timeout, so `SO_RCVTIMEO` cannot be used the same way.
fn configure(args: &Args, l: std::net::TcpListener) -> Result<std::net::TcpListener, String> {
    // The head limits live in our tiny_http copy (vendor/tiny_http/PATCHED.md):
    // it reads the head before we see the request.
    tiny_http::set_head_limits(args.max_header_bytes, args.header_timeout);
    tiny_http::set_max_connections(args.max_connections);
    tiny_http::set_refusal_hook(metrics::count_status);
    if let Some(t) = args.write_timeout {
        use std::os::fd::AsRawFd;
        let tv = libc::timeval {
            tv_sec: t.as_secs() as _,
            tv_usec: t.subsec_micros() as _,
        };
        // SAFETY: a valid socket fd and a pointer to a timeval that lives
        // across the call, with its exact size.
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            log::warn!(
                "cannot set a write timeout on the listener: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(l)
}

fn stop_all(mounts: &[Mount], grace: Duration) {
    let routers: Vec<Sender<Event>> = mounts.iter().map(|m| m.router.clone()).collect();
    stop_routers(&routers, grace);
}

/// Stops every server at once and waits for all of them (bounded: each
/// router needs at most two graces and a reap).
fn stop_routers(routers: &[Sender<Event>], grace: Duration) {
    let dones: Vec<_> = routers
        .iter()
        .map(|r| {
            let (tx, rx) = channel();
            let _ = r.send(Event::Shutdown { done: tx });
            rx
        })
        .collect();
    let deadline = std::time::Instant::now() + grace * 2 + STOP_SLACK;
    for d in dones {
        let _ = d.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }
}

struct ExchangeCount<'a>(&'a Ctx);

impl Drop for ExchangeCount<'_> {
    fn drop(&mut self) {
        self.0.exchanges.fetch_sub(1, Ordering::Relaxed);
    }
}

fn handle(ctx: &Ctx, rq: Request) {
    let url = rq.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let origin = http::header(&rq, "Origin").map(str::to_owned);
    let host = http::header(&rq, "Host").map(str::to_owned);
    if !ctx.args.allow_origins.is_empty()
        && *rq.method() == Method::Options
        && origin.is_some()
        && http::header(&rq, "Access-Control-Request-Method").is_some()
    {
        return http::preflight(ctx, rq);
    }
    // DNS rebinding (SH-02): a name that resolves to us but is not ours.
    if let (Some(allowed), Some(h)) = (&ctx.allowed_hosts, &host) {
        let name = crate::cli::host_name(h);
        if !allowed.contains(&name) {
            log::warn!("refused a request for Host {name:?}; if it names this proxy, allow it with --allow-host");
            let body = crate::jsonrpc::error_body(None, -32000, "Forbidden: Host not allowed");
            return http::respond_json(rq, 403, &body, &[]);
        }
    }
    if let Some(o) = &origin {
        if !http::origin_allowed(ctx, o, host.as_deref()) {
            log::warn!("refused a request from origin {o}");
            let body = crate::jsonrpc::error_body(None, -32000, "Forbidden: Origin not allowed");
            return http::respond_json(rq, 403, &body, &[]);
        }
    }
    let cors = http::cors_headers(ctx, &rq);
    if let Some(token) = &ctx.args.auth_token {
        let open = AUTH_EXEMPT_PATHS.contains(&path)
            || (matches!(path, "/status" | "/metrics") && ctx.args.status_no_auth);
        if !open && !http::bearer_ok(&rq, token) {
            return http::unauthorized(rq, path, &cors);
        }
    }
    // /healthz and /readyz stay open to probes (AUTH_EXEMPT_PATHS above);
    // /status and /metrics needed the token unless --status-no-auth.
    if matches!(path, "/status" | "/metrics" | "/healthz" | "/readyz") {
        if !matches!(rq.method(), Method::Get | Method::Head) {
            return method_not_allowed(rq, "GET, HEAD", &cors);
        }
        return match path {
            "/status" => status(ctx, rq, &cors),
            "/metrics" => metrics(ctx, rq, &cors),
            "/healthz" => http::respond(rq, 200, "text/plain; charset=utf-8", "ok\n", &cors),
            _ => readyz(ctx, rq, &cors),
        };
    }
    let (mount, rest) = match resolve(ctx, path) {
        Some(x) => x,
        None => return http::respond(rq, 404, "text/plain; charset=utf-8", "Not Found", &cors),
    };
    match rest {
        // `/sse/` too, as `/mcp/`: upstream redirects a named server's
        // `/sse/` to its `/sse`, so clients saved the slash form.
        "/sse" | "/sse/" => match rq.method() {
            Method::Get | Method::Head => legacy::open(ctx, mount, rq, &cors),
            _ => method_not_allowed(rq, "GET, HEAD", &cors),
        },
        "/messages/" => match rq.method() {
            Method::Post => legacy::post(ctx, mount, rq, query, &cors),
            _ => method_not_allowed(rq, "POST", &cors),
        },
        "/mcp" | "/mcp/" => {
            ctx.touch();
            match rq.method() {
                Method::Post => streamable::post(ctx, mount, rq, &cors),
                Method::Get => streamable::get(ctx, mount, rq, &cors),
                Method::Delete => streamable::delete(ctx, mount, rq, &cors),
                _ => {
                    let body = crate::jsonrpc::error_body(None, -32000, "Method not allowed");
                    let mut h = cors.clone();
                    h.push(("Allow".into(), "GET, POST, DELETE".into()));
                    http::respond_json(rq, 405, &body, &h)
                }
            }
        }
        _ => http::respond(rq, 404, "text/plain; charset=utf-8", "Not Found", &cors),
    }
}

/// The Host names requests may carry (SH-02), `None` for any. On a
/// loopback bind, or on any bind once `--allow-host` is given: the loopback
/// names, the listening address unless it is a wildcard, and the
/// `--allow-host` names; `*` among those allows any.
fn allowed_hosts(args: &Args) -> Option<Vec<String>> {
    if args.allow_hosts.iter().any(|h| h == "*")
        || (args.allow_hosts.is_empty() && !http::is_loopback_bind(&args.host))
    {
        return None;
    }
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|&n| n.to_owned())
        .collect();
    let bound = crate::cli::host_name(&args.host);
    let wildcard = matches!(bound.as_str(), "" | "0.0.0.0" | "[::]");
    for name in (!wildcard)
        .then_some(bound)
        .into_iter()
        .chain(args.allow_hosts.iter().map(|h| crate::cli::host_name(h)))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Some(names)
}

/// The server a path belongs to, and the path inside its mount.
fn resolve<'a, 'p>(ctx: &'a Ctx, path: &'p str) -> Option<(&'a Mount, &'p str)> {
    if let Some(rest) = path.strip_prefix("/servers/") {
        let (name, sub) = rest.split_at(rest.find('/')?);
        let m = ctx
            .mounts
            .iter()
            .find(|m| m.prefix == format!("/servers/{name}"))?;
        return Some((m, sub));
    }
    let m = ctx.mounts.iter().find(|m| m.prefix.is_empty())?;
    Some((m, path))
}

fn method_not_allowed(rq: Request, allow: &str, cors: &[(String, String)]) {
    let mut h = cors.to_vec();
    h.push(("Allow".into(), allow.into()));
    http::respond(
        rq,
        405,
        "text/plain; charset=utf-8",
        "Method Not Allowed",
        &h,
    )
}

/// Whether every router answers a status request within `within` (the
/// systemd watchdog's test that the proxy is alive).
fn routers_answer(ctx: &Ctx, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    ask_routers(ctx).into_iter().all(|(_, rx)| {
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    })
}

/// Sends every router a status request, all at once; the answers come on
/// the receivers, by server name.
fn ask_routers(ctx: &Ctx) -> Vec<(String, std::sync::mpsc::Receiver<ServerStatus>)> {
    ctx.mounts
        .iter()
        .map(|m| {
            let (tx, rx) = channel();
            let _ = m.router.send(Event::Status { reply: tx });
            (m.name.clone(), rx)
        })
        .collect()
}

/// Asks every router for its state.
fn statuses(ctx: &Ctx) -> Vec<ServerStatus> {
    ask_routers(ctx)
        .into_iter()
        .map(|(name, rx)| {
            rx.recv_timeout(STATUS_TIMEOUT)
                .unwrap_or_else(|_| ServerStatus {
                    state: "unresponsive".into(),
                    ..ServerStatus::disabled(&name)
                })
        })
        .collect()
}

/// `/metrics`: the same router answers as `/status`, as Prometheus text.
fn metrics(ctx: &Ctx, rq: Request, cors: &[(String, String)]) {
    let mut st = statuses(ctx);
    st.extend(ctx.disabled.iter().map(|name| ServerStatus::disabled(name)));
    let body = metrics::render(&st, ctx.started, crate::cli::VERSION);
    http::respond(rq, 200, metrics::CONTENT_TYPE, &body, cors)
}

/// `/status`: upstream's keys in upstream's order, then ours.
fn status(ctx: &Ctx, rq: Request, cors: &[(String, String)]) {
    let mut st = statuses(ctx);
    st.extend(ctx.disabled.iter().map(|name| ServerStatus::disabled(name)));
    let last = UNIX_EPOCH + Duration::from_micros(ctx.last_activity_us.load(Ordering::Relaxed));
    let q = crate::jsonrpc::quote;
    let sse: usize = st.iter().map(|s| s.sse_sessions).sum();
    let instances: Vec<String> = st
        .iter()
        .map(|s| {
            let short = s.state.split(':').next().unwrap_or("");
            format!("{}:{}", q(&s.name), q(short))
        })
        .collect();
    let servers: Vec<String> = st
        .iter()
        .map(|s| {
            let opt = |v: &Option<String>| v.as_deref().map(q).unwrap_or_else(|| "null".into());
            format!(
                "{}:{{\"state\":{},\"pid\":{},\"restarts\":{},\"last_exit\":{},\"last_error\":{},\"sessions\":{},\"sse_connections\":{},\"requests_in_flight\":{},\"serves_2026_07_28\":{},\"modern_sibling\":{}}}",
                q(&s.name),
                q(&s.state),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
                s.restarts,
                opt(&s.last_exit),
                opt(&s.last_error),
                s.sessions,
                s.sse_sessions,
                s.requests_in_flight,
                s.serves_modern
                    .map_or_else(|| "null".to_owned(), |b| b.to_string()),
                s.modern_sibling.as_ref().map_or_else(
                    || "null".to_owned(),
                    |m| format!(
                        "{{\"state\":{},\"pid\":{},\"restarts\":{},\"last_exit\":{},\"last_error\":{}}}",
                        q(&m.state),
                        m.pid.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
                        m.restarts,
                        opt(&m.last_exit),
                        opt(&m.last_error)
                    )
                )
            )
        })
        .collect();
    let body = format!(
        "{{\"api_last_activity\":{},\"active_sse_connections\":{sse},\"server_instances\":{{{}}},\"servers\":{{{}}},\"http_exchanges\":{}}}",
        q(&util::iso8601(last)),
        instances.join(","),
        servers.join(","),
        // This request is one of them.
        ctx.exchanges.load(Ordering::Relaxed).saturating_sub(1)
    );
    http::respond_json(rq, 200, &body, cors)
}

/// `/readyz`: 200 when every enabled server is running; otherwise 503 and
/// one line per server that is not, with its state and last error.
fn readyz(ctx: &Ctx, rq: Request, cors: &[(String, String)]) {
    let st = statuses(ctx);
    let waiting: Vec<String> = st
        .iter()
        .filter(|s| s.state != "running")
        .map(|s| {
            let mut line = format!("server '{}' is {}", s.name, s.state);
            if let Some(e) = &s.last_error {
                line.push_str(&format!(": it {e}"));
            }
            if s.restarts > 0 {
                line.push_str(&format!(" ({} restarts)", s.restarts));
            }
            line
        })
        .collect();
    if waiting.is_empty() {
        let body = format!("ready: {} servers running\n", st.len());
        http::respond(rq, 200, "text/plain; charset=utf-8", &body, cors)
    } else {
        let body = format!("not ready: {}\n", waiting.join("; "));
        http::respond(rq, 503, "text/plain; charset=utf-8", &body, cors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(host: &str, allow: &[&str]) -> Option<Vec<String>> {
        let args = Args {
            host: host.into(),
            allow_hosts: allow.iter().map(|&h| h.into()).collect(),
            ..Args::default()
        };
        allowed_hosts(&args)
    }

    #[test]
    fn the_host_check_rule() {
        let local = ["localhost", "127.0.0.1", "[::1]"];
        assert_eq!(hosts("127.0.0.1", &[]).unwrap(), local);
        // Another loopback address is its own name.
        assert_eq!(hosts("127.0.0.2", &[]).unwrap()[3..], ["127.0.0.2"]);
        assert_eq!(hosts("::1", &[]).unwrap(), local);
        assert_eq!(hosts("127.0.0.1", &["LOCALHOST"]).unwrap(), local);
        assert_eq!(hosts("0.0.0.0", &[]), None);
        assert_eq!(hosts("192.0.2.7", &[]), None);
        assert_eq!(hosts("127.0.0.1", &["*"]), None);
        assert_eq!(hosts("0.0.0.0", &["a.example", "*"]), None);
        assert_eq!(
            hosts("0.0.0.0", &["a.example"]).unwrap()[3..],
            ["a.example"]
        );
        assert_eq!(hosts("::", &["a.example"]).unwrap()[3..], ["a.example"]);
        assert_eq!(
            hosts("192.0.2.7", &["a.example"]).unwrap()[3..],
            ["192.0.2.7", "a.example"]
        );
    }
}
