//! Helpers for the client-mode tests: the demo server's HTTP mode as the
//! fake remote (start, restart on the same port, fault knobs, request log)
//! and the proxy in client mode in front of it.
#![allow(dead_code)]

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

pub struct FakeRemote {
    pub proc: Proc,
    pub base: String,
    pub port: u16,
    args: Vec<String>,
}

impl FakeRemote {
    /// Starts `mcp-demo-server --http 0 ARGS`.
    pub fn start(args: &[&str]) -> FakeRemote {
        FakeRemote::start_on(0, args)
    }

    pub fn start_on(port: u16, args: &[&str]) -> FakeRemote {
        let port_s = port.to_string();
        let mut all = vec!["--http", port_s.as_str()];
        all.extend_from_slice(args);
        let mut proc = Proc::spawn(demo_bin(), &all);
        let base = proc.listening_url();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        FakeRemote {
            proc,
            base,
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Kills the remote (every connection drops).
    pub fn stop(self) -> (u16, Vec<String>) {
        (self.port, self.args)
    }

    /// Kills the remote and starts a fresh one on the same port.
    pub fn restart(self) -> FakeRemote {
        let (port, args) = self.stop();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        FakeRemote::start_on(port, &args)
    }

    pub fn mcp(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn sse(&self) -> String {
        format!("{}/sse", self.base)
    }

    pub fn admin(&self, knob: &str, body: &str) {
        let r = http(
            "POST",
            &format!("{}/admin/{knob}", self.base),
            &[],
            Some(body),
        );
        assert_eq!(r.status, 200, "admin {knob}: {}", r.body);
    }

    /// Every MCP request the remote got: `{method, path, headers}`.
    pub fn requests(&self) -> Vec<Value> {
        let r = http("GET", &format!("{}/admin/requests", self.base), &[], None);
        match r.json() {
            Value::Array(a) => a,
            other => panic!("requests log is not an array: {other}"),
        }
    }
}

/// The proxy in client mode: `mcp-proxy ARGS` (ARGS include the URL).
pub fn proxy(args: &[&str]) -> Proc {
    Proc::spawn(proxy_bin(), args)
}

/// initialize (id 0) + notifications/initialized; returns the result.
pub fn handshake(p: &mut Proc, version: &str) -> Value {
    p.send_json(&initialize(json!(0), version));
    let r = p.recv_response(&json!(0));
    assert!(r.get("result").is_some(), "initialize failed: {r}");
    p.send_json(&notification("notifications/initialized", json!({})));
    r
}

/// tools/call echo round trip; returns the reply.
pub fn echo(p: &mut Proc, id: Value, text: &str) -> Value {
    p.send_json(&call_tool(id.clone(), "echo", json!({ "text": text })));
    p.recv_response(&id)
}

/// Sends echo calls until one succeeds (the proxy answers errors at once
/// while it reconnects); fails after [`WAIT`].
pub fn echo_until_ok(p: &mut Proc, text: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let id = json!(format!("retry-{n}"));
        let r = echo(p, id, text);
        if r.get("result").is_some() {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never recovered; last reply {r}; stderr:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The header `name` of a logged request.
pub fn req_header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"][name].as_str()
}

/// How long the heavy tests (16 MiB, many slow calls) wait for one line:
/// the test machines are shared and slow under load.
pub const HEAVY_WAIT: Duration = Duration::from_secs(90);

/// The next stdout message as JSON, waiting up to `timeout`.
pub fn recv_within(p: &mut Proc, timeout: Duration) -> Value {
    let line = p
        .recv_line(timeout)
        .unwrap_or_else(|| panic!("stdout closed; stderr:\n{}", p.stderr()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The response with `id`, skipping other messages, waiting up to `timeout`.
pub fn response_within(p: &mut Proc, id: &Value, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let v = recv_within(p, left);
        if &v["id"] == id && v.get("method").is_none() {
            return v;
        }
    }
}
