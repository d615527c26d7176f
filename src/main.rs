//! mcp-proxy: moves MCP messages between stdio and HTTP, in both directions.
//!
//! ```text
//! client mode   local MCP client ==stdio==> mcp-proxy ==HTTP+SSE or Streamable HTTP==> remote server
//! server mode   many HTTP clients ==SSE / Streamable HTTP==> mcp-proxy ==stdio==> local server (child)
//! ```
//!
//! `main` parses the command line, sets up logging and the signal thread,
//! and hands over to `client::run` or `server::run`, whose exit code it
//! returns. Usage errors exit 2, runtime failures 1.

use mcp_proxy::{child, cli, client, logging, server, signals, supervisor};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Re-executed as a child's supervisor (see supervisor.rs)?
    if let Some(code) = supervisor::entry() {
        return code;
    }
    // Before any thread exists, so all of them inherit the mask.
    signals::block();
    let getenv = |k: &str| std::env::var(k).ok();
    let args = match cli::parse(std::env::args_os().skip(1), &getenv) {
        Ok(cli::Command::Run(a)) => a,
        Ok(cli::Command::Help) => {
            let _ = std::io::stdout().write_all(cli::HELP.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(cli::Command::Version) => {
            let _ = writeln!(std::io::stdout(), "mcp-proxy {}", cli::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(args.log_level);
    if args.client_url().is_some() {
        client::run(&args)
    } else {
        child::enable_supervisor("/proc/self/exe".into());
        server::run(&args)
    }
}
