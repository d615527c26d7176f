//! The echo child: the leanest stdio MCP server that every proxy can stand
//! in front of. It answers `initialize` (with the version it was asked for),
//! `ping`, `tools/list` and `tools/call echo` inline on the main thread, one
//! line in, one line out, and flushes only when no further input is already
//! buffered, so a pipelined client gets batched writes and a sequential one
//! gets its reply at once. No threads; it ends at EOF on stdin.

use serde_json::Value;
use std::io::{self, BufRead, BufReader, BufWriter, Write};

pub fn run() -> io::Result<()> {
    let stdin = io::stdin();
    let mut r = BufReader::with_capacity(64 << 10, stdin.lock());
    let stdout = io::stdout();
    let mut w = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut line = String::with_capacity(4096);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            w.flush()?;
            return Ok(());
        }
        answer(&line, &mut w)?;
        if r.buffer().is_empty() {
            w.flush()?;
        }
    }
}

/// Writes the reply line (with its newline) for one request line, or nothing.
pub fn answer(line: &str, w: &mut impl Write) -> io::Result<()> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return writeln!(
            w,
            r#"{{"jsonrpc":"2.0","error":{{"code":-32700,"message":"Parse error"}}}}"#
        );
    };
    let (Some(id), Some(method)) = (v.get("id"), v.get("method").and_then(Value::as_str)) else {
        // A notification or a response to us: nothing to say.
        return Ok(());
    };
    let id = id.to_string();
    match method {
        "tools/call" => {
            let p = &v["params"];
            if p["name"] != "echo" {
                return writeln!(
                    w,
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"unknown tool"}}],"isError":true}}}}"#
                );
            }
            let text = p["arguments"]["text"].to_string();
            writeln!(
                w,
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":{text}}}]}}}}"#
            )
        }
        "initialize" => {
            let version = v["params"]["protocolVersion"]
                .as_str()
                .unwrap_or("2025-06-18");
            writeln!(
                w,
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"{version}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"mcp-bench-echo","version":"1.0.0"}}}}}}"#
            )
        }
        "ping" => writeln!(w, r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
        "tools/list" => writeln!(
            w,
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"echo","description":"Returns its text","inputSchema":{{"type":"object","properties":{{"text":{{"type":"string"}}}},"required":["text"]}}}}]}}}}"#
        ),
        _ => writeln!(
            w,
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found"}}}}"#
        ),
    }
}
