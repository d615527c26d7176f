//! Server mode: local stdio MCP servers shared by many HTTP clients.
//! (Being built: issue 3.)

use crate::cli::Args;
use std::process::ExitCode;

pub fn run(_args: &Args) -> ExitCode {
    eprintln!("mcp-proxy: server mode is not built yet");
    ExitCode::from(1)
}
