//! Client mode: one local stdio MCP client, one remote server over HTTP+SSE
//! or Streamable HTTP. (Being built: issue 2.)

use crate::cli::Args;
use std::process::ExitCode;

pub fn run(_args: &Args) -> ExitCode {
    eprintln!("mcp-proxy: client mode is not built yet");
    ExitCode::from(1)
}
