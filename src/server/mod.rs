//! Server mode: local stdio MCP servers shared by many HTTP clients.
//!
//! Each configured server (the default one at the root, each named one at
//! `/servers/NAME/`) gets its own router thread and child (router.rs). This
//! module owns the HTTP side: the accept loop hands every request to its own
//! `http` thread (at most [`MAX_EXCHANGES`] at once), which checks Origin and
//! Host, answers CORS, and dispatches to the HTTP+SSE endpoints (legacy.rs),
//! the Streamable HTTP endpoint (streamable.rs) or `/status`. An exchange
//! thread ends when its response or stream ends. The `signals` thread turns
//! SIGTERM/SIGINT into an orderly stop of every child, then exits.

mod http;
mod legacy;
mod streamable;

use crate::child::{self, ChildSpec};
use crate::cli::Args;
use crate::router::{self, Event, ServerStatus};
use crate::{signals, util};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tiny_http::{Method, Request};

/// HTTP exchanges (requests and open streams) handled at once; more get 503.
pub const MAX_EXCHANGES: usize = 2048;
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

/// Splits a command string into words like a POSIX shell would (quotes and
/// backslashes), without running one.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated single quote in '{s}'")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(format!("unterminated double quote in '{s}'")),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated double quote in '{s}'")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The servers the command line asks for, default first.
pub fn server_specs(args: &Args) -> Result<Vec<ChildSpec>, String> {
    let mut specs = Vec::new();
    if let Some(cmd) = &args.target {
        specs.push(ChildSpec {
            name: "default".into(),
            program: cmd.clone(),
            args: args.child_args.clone(),
            env: child::child_env(args.pass_environment, &args.env),
            cwd: args.cwd.clone(),
        });
    }
    for (name, cmd) in &args.named_servers {
        let mut words = split_command(cmd).map_err(|e| format!("--named-server {name}: {e}"))?;
        if words.is_empty() {
            log::error!("--named-server {name}: the command is empty; skipped");
            continue;
        }
        let program = words.remove(0);
        specs.push(ChildSpec {
            name: name.clone(),
            program,
            args: words,
            env: child::child_env(args.pass_environment, &[]),
            cwd: None,
        });
    }
    Ok(specs)
}

pub fn run(args: &Args) -> ExitCode {
    if args.named_server_config.is_some() {
        eprintln!("mcp-proxy: --named-server-config is not supported yet; use --named-server NAME 'COMMAND'");
        return ExitCode::from(1);
    }
    let specs = match server_specs(args) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!("mcp-proxy: no server to run; give a command or --named-server (see --help)");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let mut mounts = Vec::new();
    for spec in specs {
        let name = spec.name.clone();
        let cfg = router::Config {
            spec,
            max_message_bytes: args.max_message_bytes,
        };
        match router::start(cfg) {
            Ok(tx) => mounts.push(Mount {
                prefix: if name == "default" && mounts.is_empty() && args.target.is_some() {
                    String::new()
                } else {
                    format!("/servers/{name}")
                },
                name,
                router: tx,
            }),
            Err(e) => {
                eprintln!("mcp-proxy: {e}");
                stop_all(&mounts);
                return ExitCode::from(1);
            }
        }
    }
    let server = match tiny_http::Server::http((args.host.as_str(), args.port)) {
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
    eprintln!("listening on {base}");
    for m in &mounts {
        eprintln!(
            "  {}: {base}{}/sse (HTTP+SSE), {base}{}/mcp (Streamable HTTP)",
            m.name, m.prefix, m.prefix
        );
    }
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        loopback: http::is_loopback_bind(&args.host),
        mounts,
        last_activity_us: AtomicU64::new(now_us()),
        exchanges: AtomicUsize::new(0),
    });
    let routers: Vec<Sender<Event>> = ctx.mounts.iter().map(|m| m.router.clone()).collect();
    signals::spawn_waiter(move |sig| {
        log::info!("signal {sig}: stopping the servers");
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
        std::process::exit(signals::exit_status(sig) as i32);
    });
    for rq in server.incoming_requests() {
        if ctx.exchanges.load(Ordering::Relaxed) >= MAX_EXCHANGES {
            log::warn!("{MAX_EXCHANGES} HTTP exchanges open; refusing a request");
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
    let st = statuses(ctx);
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
    fn splits_commands_like_a_shell() {
        let t = |s: &str| split_command(s).unwrap();
        assert_eq!(t("a b  c"), vec!["a", "b", "c"]);
        assert_eq!(
            t("uvx 'mcp server' \"x y\""),
            vec!["uvx", "mcp server", "x y"]
        );
        assert_eq!(t(r#"a\ b "q\"x" ''"#), vec!["a b", "q\"x", ""]);
        assert_eq!(t("  "), Vec::<String>::new());
        assert!(split_command("'open").is_err());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:9"), "[::1]");
        assert_eq!(host_name("Evil.Example.com"), "evil.example.com");
    }
}
