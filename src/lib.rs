//! mcp-proxy: a transport bridge for the Model Context Protocol.
//!
//! ```text
//! client mode   local MCP client ==stdio==> mcp-proxy ==HTTP+SSE or Streamable HTTP==> remote server
//! server mode   many HTTP clients ==SSE / Streamable HTTP==> mcp-proxy ==stdio==> local server (child)
//! ```
//!
//! The binary is `src/main.rs`; the library exists so that the demo server,
//! the integration tests and the benchmarks share one message type and one
//! SSE parser with the proxy.

pub mod alloc;
pub mod child;
pub mod cli;
pub mod client;
pub mod config;
pub mod jsonrpc;
pub mod logging;
pub mod queue;
pub mod router;
pub mod server;
pub mod signals;
pub mod sse;
pub mod supervisor;
pub mod systemd;
pub mod util;
