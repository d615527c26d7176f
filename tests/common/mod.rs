//! Shared integration-test harness.
//!
//! - [`Proc`] runs a binary (the proxy, the demo server) with piped stdio.
//!   Its stderr is collected on a thread; readiness comes from the process's
//!   own lines ([`Proc::wait_stderr`], [`Proc::listening_url`]), never from
//!   sleeping. Dropping it SIGKILLs the process (by pid) and, when the test is
//!   failing, prints what the process wrote to stderr.
//! - Every wait has a timeout and fails with context.
//! - [`http`] and [`SseStream`] speak HTTP to 127.0.0.1 only.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use mcp_proxy::sse;

/// The default bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-proxy")
}

pub fn demo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-demo-server")
}

pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Receiver<String>>,
    stderr_rx: Receiver<String>,
    stderr_all: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `bin args...` with stdin, stdout and stderr piped.
    pub fn spawn(bin: &str, args: &[&str]) -> Proc {
        Proc::spawn_with(bin, args, &[])
    }

    pub fn spawn_with(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let name = format!(
            "{} {}",
            bin.rsplit('/').next().unwrap_or(bin),
            args.join(" ")
        );
        Proc::spawn_command(cmd, name)
    }

    /// Starts a prepared command (environment, `pre_exec`...) with its
    /// stdio piped; `name` names it in failure messages.
    pub fn spawn_command(mut cmd: Command, name: String) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, stderr_rx) = channel();
        let stderr_all = Arc::new(Mutex::new(Vec::new()));
        let all = stderr_all.clone();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (otx, orx) = channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if otx.send(line.trim_end_matches('\n').to_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            name,
            child,
            stdin,
            stdout: Some(orx),
            stderr_rx,
            stderr_all,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_all.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`; returns the line.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no stderr line containing {needle:?} within {timeout:?}; stderr so far:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// The `http://HOST:PORT` from the proxy's "listening on" line.
    pub fn listening_url(&mut self) -> String {
        let line = self.wait_stderr("listening on http://", WAIT);
        let start = line.find("http://").unwrap();
        line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Writes one line to the process's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing stdin: {e}", self.name));
    }

    pub fn send_json(&mut self, v: &Value) {
        self.send(&v.to_string());
    }

    /// Closes stdin (EOF for the process).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, or `None` at EOF; panics after `timeout`.
    pub fn recv_line(&mut self, timeout: Duration) -> Option<String> {
        match self.stdout.as_ref().unwrap().recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no stdout line within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    /// The next stdout line as JSON.
    pub fn recv(&mut self) -> Value {
        let line = self
            .recv_line(WAIT)
            .unwrap_or_else(|| panic!("{}: stdout closed; stderr:\n{}", self.name, self.stderr()));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: stdout line is not JSON ({e}): {line}", self.name))
    }

    /// Reads stdout until a message matches `pred`; returns it and the ones
    /// skipped on the way.
    pub fn recv_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: no message matching {what} within {WAIT:?}; got {skipped:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            let line = match self.stdout.as_ref().unwrap().recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!(
                    "{}: no message matching {what}; got {skipped:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
            if pred(&v) {
                return (v, skipped);
            }
            skipped.push(v);
        }
    }

    /// The response with this id (skipping other messages).
    pub fn recv_response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_until(&format!("response id {id}"), move |v| {
            v.get("id") == Some(&id) && v.get("method").is_none()
        })
        .0
    }

    /// Waits for the process to exit; returns its exit code (None if killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: did not exit within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- stderr of {} ----\n{}\n----", self.name, self.stderr());
        }
    }
}

/// A request line.
pub fn request(id: Value, method: &str, params: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str, params: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params})
}

pub fn initialize(id: Value, version: &str) -> Value {
    request(
        id,
        "initialize",
        serde_json::json!({"protocolVersion": version, "capabilities": {"sampling": {}, "roots": {"listChanged": true}, "elicitation": {}}, "clientInfo": {"name": "test-client", "version": "1.0"}}),
    )
}

pub fn call_tool(id: Value, name: &str, args: Value) -> Value {
    request(
        id,
        "tools/call",
        serde_json::json!({"name": name, "arguments": args}),
    )
}

/// The text of the first content item of a tools/call result.
pub fn result_text(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result text in {v}"))
        .to_owned()
}

/// A minimal HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// One HTTP request; the whole body is read.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let a = agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = match body {
        Some(b) => a.run(req.body(b.to_owned()).unwrap()),
        None => a.run(req.body(()).unwrap()),
    };
    let res = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = res
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// An open SSE stream read on a background thread.
pub struct SseStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    rx: Receiver<sse::Event>,
}

impl SseStream {
    pub fn open(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> SseStream {
        let a: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(WAIT))
            .timeout_recv_response(Some(WAIT))
            .build()
            .into();
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = match body {
            Some(b) => a.run(req.body(b.to_owned()).unwrap()),
            None => a.run(req.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let (tx, rx) = channel();
        let mut reader = res.into_body().into_reader();
        thread::spawn(move || {
            let mut p = sse::Parser::new(64 << 20);
            let mut buf = vec![0u8; 64 * 1024];
            let mut items = Vec::new();
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        p.feed(&buf[..n], &mut items);
                        for it in items.drain(..) {
                            if let sse::Item::Event(e) = it {
                                if tx.send(e).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        });
        SseStream {
            status,
            headers,
            rx,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next event; panics after `timeout`. `None` when the stream ended.
    pub fn next(&self, timeout: Duration) -> Option<sse::Event> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no SSE event within {timeout:?}"),
        }
    }

    /// The next `message` event's data as JSON.
    pub fn next_json(&self) -> Value {
        loop {
            let e = self.next(WAIT).expect("SSE stream ended");
            if e.event == "message" {
                return serde_json::from_str(&e.data)
                    .unwrap_or_else(|err| panic!("event data not JSON ({err}): {}", e.data));
            }
        }
    }

    /// True when nothing arrives within `d` (for "nothing else was sent").
    pub fn quiet_for(&self, d: Duration) -> bool {
        matches!(self.rx.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }
}

/// Whether process `pid` is alive. A zombie still answers kill(0), so its
/// state in /proc decides.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits (bounded) until process `pid` is gone; `what` names it on failure.
pub fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still alive"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
