//! mcp-demo-server: a small MCP server for trying the proxy and testing it.
//!
//! `make run` puts it behind the proxy; the integration tests program it as
//! their fake server: echo, add, slow (cancellable), progress, sampling,
//! elicitation, roots, log messages, list_changed, resources/updated, huge
//! results, a crash, noise on stdout. Over stdio by default; with `--http`
//! it serves Streamable HTTP and HTTP+SSE (http.rs), the fake remote of the
//! client-mode tests.
//!
//! Threads: the main thread reads stdin (or accepts HTTP requests); each
//! request runs on its own thread (core.rs); writes to stdout are serialised
//! by a lock.

mod core;
mod http;
mod modern;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

const HELP: &str = "\
mcp-demo-server: a demo MCP server (stdio, or HTTP with --http)

Usage: mcp-demo-server [--name NAME] [--init-delay-ms MS] [--no-init] [--strict]
                      [--legacy-only] [--silent-discover] [--era-lock]
       mcp-demo-server --http PORT [--transport sse|streamable|both] [...]

  --name NAME          serverInfo.name [default: mcp-demo-server]
  --init-delay-ms MS   wait before answering initialize
  --no-init            never answer initialize (a hung server)
  --strict             touch notifies only for subscribed URIs, log sends only
                       at or above the level from logging/setLevel (info)
  --legacy-only        no 2026-07-28 support: server/discover is unknown and
                       requests are served as in a legacy session
  --silent-discover    never answer server/discover
  --era-lock           serve only the era of the first request, as the Python
                       SDK 2.x does: once initialized, 2026-07-28 requests get
                       -32600; after a 2026-07-28 request, initialize does

HTTP mode (127.0.0.1 only; prints 'listening on http://127.0.0.1:PORT'):
  --http PORT          serve HTTP on PORT, 0 for a random one
  --transport T        sse (GET /sse, POST /messages), streamable (/mcp) or
                       both [default: both]
  --reply MODE         Streamable replies: auto (JSON unless the request
                       emits messages first), json or sse [default: auto]
  --no-get             answer GET /mcp with 405 (no server-initiated stream)
  --notification-delay-ms MS
                       handle each notification POST only after MS (ordering tests)
  --get-409            answer GET /mcp with 409
  --endpoint URL       what the endpoint event names instead of /messages
  --digest-auth U:P    require HTTP Digest authentication (MD5, qop=auth)
  Fault knobs: POST /admin/expire, /admin/drop, /admin/fail (body: status,
  0 = off), /admin/garbage, /admin/garbage-reply; GET /admin/requests.
  2026-07-28 POSTs (no session, strict header checks): /admin/header-rename,
  /admin/break-modern, /admin/list-changed, /admin/end-listen (body:
  complete or cancel); GET /admin/modern-closed.
  POST /oauth/token: OAuth2 client credentials (any Basic client).
  OAuth knobs: POST /admin/bearer (body: off, latest = only the token issued
  last, never = always 401), /admin/rotate-token (revokes the current token);
  GET /admin/tokens (how many were issued).
";

fn main() {
    let mut cfg = core::Config {
        name: "mcp-demo-server".into(),
        ..Default::default()
    };
    let mut http: Option<http::Opts> = None;
    let mut opts = http::Opts {
        port: 0,
        sse: true,
        streamable: true,
        no_get: false,
        get_409: false,
        reply: http::ReplyMode::Auto,
        endpoint: None,
        digest_auth: None,
        notification_delay: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    let usage = |what: &str| -> ! {
        eprintln!("mcp-demo-server: {what} (see --help)");
        std::process::exit(2);
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => cfg.name = args.next().expect("--name NAME"),
            "--init-delay-ms" => {
                cfg.init_delay = Duration::from_millis(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--init-delay-ms MS"),
                )
            }
            "--no-init" => cfg.no_init = true,
            "--strict" => cfg.strict = true,
            "--legacy-only" => cfg.legacy_only = true,
            "--silent-discover" => cfg.silent_discover = true,
            "--era-lock" => cfg.era_lock = true,
            "--http" => {
                opts.port = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--http PORT"));
                http = Some(opts.clone());
            }
            "--transport" => match args.next().as_deref() {
                Some("sse") => (opts.sse, opts.streamable) = (true, false),
                Some("streamable") => (opts.sse, opts.streamable) = (false, true),
                Some("both") => (opts.sse, opts.streamable) = (true, true),
                _ => usage("--transport sse|streamable|both"),
            },
            "--reply" => {
                opts.reply = match args.next().as_deref() {
                    Some("auto") => http::ReplyMode::Auto,
                    Some("json") => http::ReplyMode::Json,
                    Some("sse") => http::ReplyMode::Sse,
                    _ => usage("--reply auto|json|sse"),
                }
            }
            "--no-get" => opts.no_get = true,
            "--notification-delay-ms" => {
                opts.notification_delay = Duration::from_millis(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage("--notification-delay-ms MS")),
                )
            }
            "--get-409" => opts.get_409 = true,
            "--endpoint" => {
                opts.endpoint = Some(args.next().unwrap_or_else(|| usage("--endpoint URL")))
            }
            "--digest-auth" => {
                opts.digest_auth = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--digest-auth USER:PASSWORD")),
                )
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return;
            }
            other => {
                eprintln!("mcp-demo-server: unknown argument '{other}' (see --help)");
                std::process::exit(2);
            }
        }
    }
    match http {
        Some(h) => http::run(
            cfg,
            http::Opts {
                port: h.port,
                ..opts
            },
        ),
        None => run_stdio(cfg),
    }
}

fn run_stdio(cfg: core::Config) {
    let out: core::Out = Arc::new(|_related, line| {
        let mut o = std::io::stdout().lock();
        // A closed stdout means the client is gone; stdin EOF ends us next.
        let _ = o
            .write_all(line.as_bytes())
            .and_then(|_| o.write_all(b"\n"))
            .and_then(|_| o.flush());
    });
    let session = core::Session::new(cfg, out);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        session.handle_line(&line);
    }
}
