//! mcp-demo-server: a small MCP server for trying the proxy and testing it.
//!
//! `make run` puts it behind the proxy; the integration tests program it as
//! their fake server: echo, add, slow (cancellable), progress, sampling,
//! elicitation, roots, log messages, list_changed, resources/updated, huge
//! results, a crash, noise on stdout. Over stdio by default.
//!
//! Threads: the main thread reads stdin; each request runs on its own thread
//! (core.rs); writes to stdout are serialised by a lock.

mod core;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

const HELP: &str = "\
mcp-demo-server: a demo MCP server (stdio)

Usage: mcp-demo-server [--name NAME] [--init-delay-ms MS] [--no-init]

  --name NAME          serverInfo.name [default: mcp-demo-server]
  --init-delay-ms MS   wait before answering initialize
  --no-init            never answer initialize (a hung server)
";

fn main() {
    let mut cfg = core::Config {
        name: "mcp-demo-server".into(),
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
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
    run_stdio(cfg);
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
