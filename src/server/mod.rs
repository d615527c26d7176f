//! Server mode: local stdio MCP servers shared by many HTTP clients.
//!
//! Each configured server (the default one at the root, each named one at
//! `/servers/NAME/`) gets its own router thread and child (router.rs). This
//! module owns the HTTP side: the accept loop hands every request to its own
//! `http` thread (at most `--max-connections` at once), which checks Origin and
//! Host, answers CORS, and dispatches to the HTTP+SSE endpoints (legacy.rs),
//! the Streamable HTTP endpoint (streamable.rs) or `/status`. An exchange
//! thread ends when its response or stream ends. The `signals` thread turns
//! SIGTERM/SIGINT into an orderly stop of every child, then exits.

mod http;
mod legacy;
mod streamable;

use crate::cli::Args;
use crate::config;
use crate::router::{self, Event, ServerStatus};
use crate::{signals, util};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tiny_http::{Method, Request};

/// Paths that answer without the `--auth-token`: probes for supervisors,
/// which must work without a secret and reveal nothing about sessions.
pub const AUTH_EXEMPT_PATHS: &[&str] = &["/healthz", "/readyz"];
/// Stack of an exchange thread: they parse JSON and copy bytes, no more.
const EXCHANGE_STACK_BYTES: usize = 512 * 1024;
/// How long `/status` waits for a router's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Microseconds since the epoch of the last SSE connect or /mcp request.
    pub last_activity_us: AtomicU64,
    pub exchanges: AtomicUsize,
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

pub fn run(args: &Args) -> ExitCode {
    let getenv = |k: &str| std::env::var(k).ok();
    let defs = match config::servers(args, &getenv) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    // Stop on a signal even while a server is still starting: before the
    // routers exist there is nothing to drain, and the supervisors take
    // the children down with us.
    let routers: Arc<OnceLock<Vec<Sender<Event>>>> = Arc::new(OnceLock::new());
    let known = routers.clone();
    signals::spawn_waiter(move |sig| {
        log::info!("signal {sig}: stopping the servers");
        if let Some(routers) = known.get() {
            let dones: Vec<_> = routers
                .iter()
                .map(|r| {
                    let (tx, rx) = channel();
                    let _ = r.send(Event::Shutdown { done: tx });
                    rx
                })
                .collect();
            for d in dones {
                let _ = d.recv_timeout(router::CHILD_GRACE * 3);
            }
        }
        std::process::exit(signals::exit_status(sig) as i32);
    });
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
            init_timeout: def.timeout,
            session_timeout: args.session_timeout,
            limits: router::Limits {
                max_sessions: args.max_sessions,
                stream_queue: args.stream_queue,
                replay_events: args.replay_events,
                replay_bytes: args.replay_bytes,
            },
        };
        match router::start(cfg) {
            Ok(tx) => mounts.push(Mount {
                name: def.name,
                prefix: def.prefix,
                router: tx,
            }),
            Err(e) => {
                eprintln!("mcp-proxy: {e}");
                stop_all(&mounts);
                return ExitCode::from(1);
            }
        }
    }
    let server = match listen(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mcp-proxy: cannot listen on {}:{}: {e}; pick another --port or --host",
                args.host, args.port
            );
            stop_all(&mounts);
            return ExitCode::from(1);
        }
    };
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .unwrap_or(args.port);
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
        mounts,
        last_activity_us: AtomicU64::new(now_us()),
        exchanges: AtomicUsize::new(0),
    });
    let _ = routers.set(ctx.mounts.iter().map(|m| m.router.clone()).collect());
    let max = args.max_connections;
    for rq in server.incoming_requests() {
        if ctx.exchanges.load(Ordering::Relaxed) >= max {
            log::warn!("{max} HTTP exchanges open (--max-connections); refusing a request");
            http::respond(rq, 503, "text/plain", "Too many connections", &[]);
            continue;
        }
        ctx.exchanges.fetch_add(1, Ordering::Relaxed);
        let c = ctx.clone();
        let spawned = thread::Builder::new()
            .name("http".into())
            .stack_size(EXCHANGE_STACK_BYTES)
            .spawn(move || {
                let _count = ExchangeCount(&c);
                handle(&c, rq);
            });
        if let Err(e) = spawned {
            ctx.exchanges.fetch_sub(1, Ordering::Relaxed);
            log::error!("cannot start a thread for an HTTP request: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// One line to stderr. A full or broken stderr (a disk-full log file)
/// must not stop the proxy, so errors are ignored where `eprintln!`
/// would panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Binds the listener. With `--write-timeout`, the listening socket gets
/// `SO_SNDTIMEO`, which Linux copies to every accepted socket: a client
/// that stops reading (its TCP window full) then fails our write after
/// the timeout instead of holding its exchange thread forever. tiny_http
/// offers no per-connection hook, and its accept loop would end on an
/// accept timeout, so `SO_RCVTIMEO` cannot be used the same way.
fn listen(args: &Args) -> Result<tiny_http::Server, String> {
    let l =
        std::net::TcpListener::bind((args.host.as_str(), args.port)).map_err(|e| e.to_string())?;
    if let Some(t) = args.write_timeout {
        use std::os::fd::AsRawFd;
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
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
    tiny_http::Server::from_listener(l, None).map_err(|e| e.to_string())
}

fn stop_all(mounts: &[Mount]) {
    for m in mounts {
        let (tx, rx) = channel();
        let _ = m.router.send(Event::Shutdown { done: tx });
        let _ = rx.recv_timeout(router::CHILD_GRACE * 3);
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
    // tiny_http reads the whole head before we see it (it has no limit of
    // its own); what we can do is refuse to act on an oversized one.
    let head: usize = rq
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    if head > ctx.args.max_header_bytes {
        log::warn!(
            "refused a request with {head} bytes of headers (--max-header-size {})",
            ctx.args.max_header_bytes
        );
        return http::respond(
            rq,
            431,
            "text/plain; charset=utf-8",
            "Request Header Fields Too Large",
            &[],
        );
    }
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
    if ctx.loopback {
        if let Some(h) = &host {
            let name = host_name(h);
            if !matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
                let body = crate::jsonrpc::error_body(None, -32000, "Forbidden: Host not allowed");
                return http::respond_json(rq, 403, &body, &[]);
            }
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
        let open =
            AUTH_EXEMPT_PATHS.contains(&path) || (path == "/status" && ctx.args.status_no_auth);
        if !open && !http::bearer_ok(&rq, token) {
            return http::unauthorized(rq, path, &cors);
        }
    }
    if path == "/status" {
        return match rq.method() {
            Method::Get | Method::Head => status(ctx, rq, &cors),
            _ => method_not_allowed(rq, "GET, HEAD", &cors),
        };
    }
    let (mount, rest) = match resolve(ctx, path) {
        Some(x) => x,
        None => return http::respond(rq, 404, "text/plain; charset=utf-8", "Not Found", &cors),
    };
    match rest {
        "/sse" => match rq.method() {
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

fn host_name(h: &str) -> String {
    let h = h.trim();
    let name = if h.starts_with('[') {
        h.find(']').map(|i| &h[..=i]).unwrap_or(h)
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    name.to_ascii_lowercase()
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

/// Asks every router for its state.
fn statuses(ctx: &Ctx) -> Vec<ServerStatus> {
    let rxs: Vec<_> = ctx
        .mounts
        .iter()
        .map(|m| {
            let (tx, rx) = channel();
            let _ = m.router.send(Event::Status { reply: tx });
            (m.name.clone(), rx)
        })
        .collect();
    rxs.into_iter()
        .map(|(name, rx)| {
            rx.recv_timeout(STATUS_TIMEOUT).unwrap_or(ServerStatus {
                name,
                state: "unresponsive".into(),
                pid: None,
                sessions: 0,
                sse_sessions: 0,
                requests_in_flight: 0,
            })
        })
        .collect()
}

/// `/status`: upstream's keys in upstream's order, then ours.
fn status(ctx: &Ctx, rq: Request, cors: &[(String, String)]) {
    let mut st = statuses(ctx);
    st.extend(ctx.disabled.iter().map(|name| ServerStatus {
        name: name.clone(),
        state: "disabled".into(),
        pid: None,
        sessions: 0,
        sse_sessions: 0,
        requests_in_flight: 0,
    }));
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
            format!(
                "{}:{{\"state\":{},\"pid\":{},\"sessions\":{},\"sse_connections\":{},\"requests_in_flight\":{}}}",
                q(&s.name),
                q(&s.state),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
                s.sessions,
                s.sse_sessions,
                s.requests_in_flight
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:9"), "[::1]");
        assert_eq!(host_name("Evil.Example.com"), "evil.example.com");
    }
}
