//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Each router counts what happens to its server in a plain [`Counters`]
//! it owns, and hands a copy out with its `/status` answer
//! ([`crate::router::ServerStatus::metrics`]); nothing is shared between
//! threads but the HTTP status-code tally here, which every connection
//! thread bumps as it answers ([`count_status`]). [`render`] turns one
//! round of router answers into the text. A server's 2026-07-28 sibling
//! (router.rs) has its own router and counters; its main router only
//! passes its requests on, uncounted, and the sibling's counts and gauges
//! are added to the server's in the status answer, so each request counts
//! once, under its server. The responses our tiny_http copy
//! makes itself (a malformed or slow head, too many connections) reach the
//! same tally through its refusal hook (vendor/tiny_http/PATCHED.md). No
//! threads.

use crate::router::ServerStatus;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The content type of the format we write.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the proxy, not the child, answered a request with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The child did not answer `initialize` within the init timeout.
    Timeout,
    /// The child exited, or could not be started, with the request open.
    ChildDied,
    /// The server had failed, or too many requests waited for it.
    Refused,
    /// The child's reply was over `--max-message-size`.
    Oversized,
    /// The proxy is shutting down.
    Shutdown,
}

impl ProxyError {
    const ALL: [ProxyError; 5] = [
        ProxyError::Timeout,
        ProxyError::ChildDied,
        ProxyError::Refused,
        ProxyError::Oversized,
        ProxyError::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            ProxyError::Timeout => "timeout",
            ProxyError::ChildDied => "child_died",
            ProxyError::Refused => "refused",
            ProxyError::Oversized => "oversized",
            ProxyError::Shutdown => "shutdown",
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// A client's stream queue was full: the message and its session went.
    SlowConsumer,
    /// A line from the child over `--max-message-size`.
    Oversized,
    /// A line from the child that is not JSON-RPC (or not UTF-8).
    Invalid,
}

impl Dropped {
    const ALL: [Dropped; 3] = [Dropped::SlowConsumer, Dropped::Oversized, Dropped::Invalid];

    fn label(self) -> &'static str {
        match self {
            Dropped::SlowConsumer => "slow_consumer",
            Dropped::Oversized => "oversized",
            Dropped::Invalid => "invalid",
        }
    }
}

/// A router's counters: only ever incremented, by the router thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub child_starts: u64,
    pub requests_forwarded: u64,
    /// Replies from the child: results, and errors.
    pub child_ok: u64,
    pub child_error: u64,
    proxy_errors: [u64; 5],
    dropped: [u64; 3],
}

impl Counters {
    /// Adds another router's counts (a server's modern sibling).
    pub fn add(&mut self, o: &Counters) {
        self.child_starts += o.child_starts;
        self.requests_forwarded += o.requests_forwarded;
        self.child_ok += o.child_ok;
        self.child_error += o.child_error;
        for (a, b) in self.proxy_errors.iter_mut().zip(o.proxy_errors) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            *a += b;
        }
    }

    pub fn proxy_error(&mut self, why: ProxyError) {
        self.proxy_errors[why as usize] += 1;
    }

    pub fn dropped(&mut self, why: Dropped) {
        self.dropped[why as usize] += 1;
    }

    pub fn dropped_count(&self, why: Dropped) -> u64 {
        self.dropped[why as usize]
    }
}

/// What a router reports beside its counters: gauges of this moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub counters: Counters,
    pub sse_sessions: usize,
    pub streamable_sessions: usize,
    pub stateless_sessions: usize,
    /// 2026-07-28 exchanges in progress (each is a one-POST session).
    pub modern_sessions: usize,
    /// Client streams with a connection: HTTP+SSE streams, Streamable
    /// HTTP GET streams and POST responses sent as SSE.
    pub open_streams: usize,
}

impl Snapshot {
    /// Adds another router's counters and gauges (a server's modern
    /// sibling: its requests are the server's requests).
    pub fn add(&mut self, o: &Snapshot) {
        self.counters.add(&o.counters);
        self.sse_sessions += o.sse_sessions;
        self.streamable_sessions += o.streamable_sessions;
        self.stateless_sessions += o.stateless_sessions;
        self.modern_sessions += o.modern_sessions;
        self.open_streams += o.open_streams;
    }
}

/// HTTP status codes 100 to 599 answered so far, by code.
static HTTP_STATUS: [AtomicU64; 500] = [const { AtomicU64::new(0) }; 500];

/// Counts one HTTP response with `status`.
pub fn count_status(status: u16) {
    if let Some(c) = HTTP_STATUS.get(usize::from(status).wrapping_sub(100)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes HELP and TYPE, then one sample per (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The `/metrics` body for these servers (disabled and unresponsive ones
/// included: they show as down, and an unresponsive one shows nothing
/// else, so that no counter seems to go back to zero).
pub fn render(servers: &[ServerStatus], started: SystemTime, version: &str) -> String {
    let mut out = String::with_capacity(4096);
    let srv = |s: &ServerStatus| format!("server=\"{}\"", escape(&s.name));
    let known: Vec<&ServerStatus> = servers
        .iter()
        .filter(|s| s.state != "unresponsive")
        .collect();
    let per = |f: &dyn Fn(&ServerStatus) -> String| -> Vec<(String, String)> {
        known.iter().map(|s| (srv(s), f(s))).collect()
    };
    family(
        &mut out,
        "mcp_proxy_build_info",
        "gauge",
        "The proxy's version; always 1.",
        &[(format!("version=\"{}\"", escape(version)), "1".into())],
    );
    let start = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    family(
        &mut out,
        "mcp_proxy_process_start_time_seconds",
        "gauge",
        "When the proxy started, in seconds since the Unix epoch.",
        &[(String::new(), format!("{start:.3}"))],
    );
    family(
        &mut out,
        "mcp_proxy_server_up",
        "gauge",
        "1 when the server's child is initialized and running, else 0.",
        &servers
            .iter()
            .map(|s| (srv(s), u8::from(s.state == "running").to_string()))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "mcp_proxy_modern_sibling_up",
        "gauge",
        "1 when a second, never-initialized process of the server serves its 2026-07-28 requests, else 0.",
        &servers
            .iter()
            .map(|s| {
                let up = s.modern_sibling.as_ref().is_some_and(|m| m.state == "running");
                (srv(s), u8::from(up).to_string())
            })
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "mcp_proxy_child_starts_total",
        "counter",
        "Children started for the server (the first one and every restart that got a process; its 2026-07-28 sibling's too).",
        &per(&|s| s.metrics.counters.child_starts.to_string()),
    );
    family(
        &mut out,
        "mcp_proxy_child_restarts_total",
        "counter",
        "Restart attempts of the server's child (and of its 2026-07-28 sibling).",
        &per(&|s| {
            let sibling = s.modern_sibling.as_ref().map_or(0, |m| m.restarts);
            (s.restarts + sibling).to_string()
        }),
    );
    family(
        &mut out,
        "mcp_proxy_requests_forwarded_total",
        "counter",
        "Client requests sent to the server's child.",
        &per(&|s| s.metrics.counters.requests_forwarded.to_string()),
    );
    let mut responses = Vec::new();
    for s in &known {
        let c = &s.metrics.counters;
        let l = srv(s);
        responses.push((format!("{l},source=\"child\",outcome=\"ok\""), c.child_ok));
        responses.push((
            format!("{l},source=\"child\",outcome=\"error\""),
            c.child_error,
        ));
        for why in ProxyError::ALL {
            responses.push((
                format!("{l},source=\"proxy\",outcome=\"{}\"", why.label()),
                c.proxy_errors[why as usize],
            ));
        }
    }
    family(
        &mut out,
        "mcp_proxy_responses_total",
        "counter",
        "Responses to client requests meant for the child: from the child (ok or error), or errors the proxy made (timeout, child_died, refused, oversized, shutdown).",
        &responses
            .into_iter()
            .map(|(l, v)| (l, v.to_string()))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "mcp_proxy_requests_in_flight",
        "gauge",
        "Requests sent to the child and not answered yet.",
        &per(&|s| s.requests_in_flight.to_string()),
    );
    let mut sessions = Vec::new();
    for s in &known {
        let m = &s.metrics;
        for (t, n) in [
            ("sse", m.sse_sessions),
            ("streamable", m.streamable_sessions),
            ("stateless", m.stateless_sessions),
            ("modern", m.modern_sessions),
        ] {
            sessions.push((format!("{},transport=\"{t}\"", srv(s)), n.to_string()));
        }
    }
    family(
        &mut out,
        "mcp_proxy_sessions",
        "gauge",
        "Active client sessions by transport.",
        &sessions,
    );
    family(
        &mut out,
        "mcp_proxy_open_streams",
        "gauge",
        "Open client streams: HTTP+SSE streams, Streamable HTTP GET streams, and POST exchanges whose responses are still due.",
        &per(&|s| s.metrics.open_streams.to_string()),
    );
    let mut dropped = Vec::new();
    for s in &known {
        for why in Dropped::ALL {
            dropped.push((
                format!("{},reason=\"{}\"", srv(s), why.label()),
                s.metrics.counters.dropped[why as usize].to_string(),
            ));
        }
    }
    family(
        &mut out,
        "mcp_proxy_messages_dropped_total",
        "counter",
        "Messages not delivered: to a client too slow to read them (its session is dropped too), or from the child, over the size limit or not JSON-RPC.",
        &dropped,
    );
    let codes: Vec<(String, String)> = HTTP_STATUS
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            (n > 0).then(|| (format!("code=\"{}\"", i + 100), n.to_string()))
        })
        .collect();
    family(
        &mut out,
        "mcp_proxy_http_responses_total",
        "counter",
        "HTTP responses the proxy sent, by status code.",
        &codes,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let mut s = ServerStatus::disabled("x\"y");
        s.state = "running".into();
        s.metrics.counters.proxy_error(ProxyError::Refused);
        let text = render(&[s], UNIX_EPOCH, "1.2.3");
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| t == name), "{line}");
            }
        }
        assert!(text.contains(
            "mcp_proxy_responses_total{server=\"x\\\"y\",source=\"proxy\",outcome=\"refused\"} 1"
        ));
        assert!(text.contains("mcp_proxy_server_up{server=\"x\\\"y\"} 1"));
    }
}
