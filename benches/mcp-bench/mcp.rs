//! The load generator's MCP clients: one per transport, each a plain struct
//! driven by the calling thread (no pumps, no hand-offs), so that what is
//! timed is the system under test and not us.
//!
//! - [`Stdio`]: a spawned process spoken to over its stdin/stdout (the echo
//!   child directly, or a proxy in client mode).
//! - [`Streamable`]: a Streamable HTTP session (POST per call, JSON or SSE reply).
//! - [`Legacy`]: an HTTP+SSE session (GET stream + POST per call).
//!
//! [`Stdio`] starts one thread that drains the process's stderr; it ends when
//! the process closes stderr.

use crate::http::{self, invalid, Conn, SseStream};
use crate::proc::Proc;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{ChildStdin, ChildStdout};
use std::time::Instant;

/// The argument the echo tool sends back: small, like most tool calls.
pub const PAYLOAD: &str = "the quick brown fox jumps over the lazy dog 0123456789";
/// How long a stdio peer gets to exit after EOF on its stdin.
const STDIN_EOF_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// The protocol version the load generator asks for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

pub fn initialize_msg(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp-bench","version":"1"}}}}}}"#
    )
}

pub const INITIALIZED_MSG: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

pub fn call_msg(out: &mut Vec<u8>, id: u64) {
    out.clear();
    write!(
        out,
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{PAYLOAD}"}}}}}}"#
    )
    .expect("writing to a Vec cannot fail");
}

/// Whether `text` is the reply to request `id`: `Ok(Some(result))` when it
/// is a successful one, `Ok(None)` when it is some other message, an error
/// when it is an error reply or not JSON.
pub fn reply_for(text: &[u8], id: u64) -> io::Result<Option<Value>> {
    let v: Value = serde_json::from_slice(text)
        .map_err(|e| invalid(format!("reply is not JSON ({e}): {}", show(text))))?;
    if v.get("id").and_then(Value::as_u64) != Some(id) {
        return Ok(None);
    }
    if let Some(e) = v.get("error") {
        return Err(invalid(format!("request {id} failed: {e}")));
    }
    match v.get("result") {
        Some(r) if r.get("isError") == Some(&Value::Bool(true)) => {
            Err(invalid(format!("tool call {id} failed: {r}")))
        }
        Some(r) => Ok(Some(r.clone())),
        None => Err(invalid(format!("reply to {id} has no result: {v}"))),
    }
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(300).collect()
}

/// Anything that can make one echo round trip.
pub trait Caller {
    fn call(&mut self) -> io::Result<()>;
}

/// Times `n` calls after `warm` untimed ones; nanoseconds per call.
pub fn measure(c: &mut dyn Caller, warm: usize, n: usize) -> io::Result<Vec<u64>> {
    for _ in 0..warm {
        c.call()?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.call()?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(lat)
}

/// A process spoken to over stdio, one JSON-RPC message per line.
pub struct Stdio {
    pub proc: Proc,
    /// `None` only while dropping: closing it is how a stdio peer is told to exit.
    w: Option<ChildStdin>,
    r: BufReader<ChildStdout>,
    line: Vec<u8>,
    out: Vec<u8>,
    next_id: u64,
}

impl Stdio {
    /// Takes the process's stdin/stdout (both must be piped) and initializes.
    pub fn start(mut proc: Proc) -> io::Result<Stdio> {
        let w = proc.child.stdin.take().expect("stdin is piped by Proc");
        let r = proc.child.stdout.take().expect("stdout is piped by Proc");
        let mut s = Stdio {
            proc,
            w: Some(w),
            r: BufReader::with_capacity(64 << 10, r),
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            next_id: 1,
        };
        s.out = initialize_msg(0).into_bytes();
        s.out.push(b'\n');
        s.w.as_mut().expect("set above").write_all(&s.out)?;
        s.wait_reply(0)?;
        s.stdin()
            .write_all(format!("{INITIALIZED_MSG}\n").as_bytes())?;
        Ok(s)
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.w.as_mut().expect("stdin is only taken when dropping")
    }

    fn wait_reply(&mut self, id: u64) -> io::Result<Value> {
        loop {
            self.line.clear();
            let n = self.r.read_until(b'\n', &mut self.line)?;
            if n == 0 {
                return Err(invalid(format!(
                    "{} closed its stdout; stderr: {}",
                    self.proc.name,
                    self.proc.stderr_tail()
                )));
            }
            if let Some(v) = reply_for(&self.line, id)? {
                return Ok(v);
            }
        }
    }

    /// Keeps `in_flight` calls outstanding on the pipe for `dur`; returns
    /// the calls completed and their latencies. The echo child answers in
    /// order, so a FIFO of send times is enough.
    pub fn pipelined(
        &mut self,
        in_flight: usize,
        dur: std::time::Duration,
    ) -> io::Result<(u64, Vec<u64>)> {
        let mut sent = std::collections::VecDeque::with_capacity(in_flight);
        let mut lat = Vec::with_capacity(1 << 20);
        let start = Instant::now();
        let mut out = Vec::with_capacity(256);
        for _ in 0..in_flight {
            let id = self.next_id;
            self.next_id += 1;
            call_msg(&mut out, id);
            out.push(b'\n');
            self.stdin().write_all(&out)?;
            sent.push_back((id, Instant::now()));
        }
        while let Some((id, t)) = sent.pop_front() {
            self.wait_reply(id)?;
            lat.push(t.elapsed().as_nanos() as u64);
            if start.elapsed() < dur {
                let id = self.next_id;
                self.next_id += 1;
                call_msg(&mut out, id);
                out.push(b'\n');
                self.stdin().write_all(&out)?;
                sent.push_back((id, Instant::now()));
            }
        }
        Ok((lat.len() as u64, lat))
    }
}

impl Drop for Stdio {
    /// EOF first, the way a real client says goodbye; the guard kills
    /// whatever has not exited by then.
    fn drop(&mut self) {
        drop(self.w.take());
        let deadline = Instant::now() + STDIN_EOF_GRACE;
        while Instant::now() < deadline {
            if self.proc.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Caller for Stdio {
    fn call(&mut self) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        call_msg(&mut self.out, id);
        self.out.push(b'\n');
        let w = self.w.as_mut().expect("stdin is only taken when dropping");
        w.write_all(&self.out)?;
        self.wait_reply(id).map(drop)
    }
}

/// A Streamable HTTP session.
pub struct Streamable {
    conn: Conn,
    path: String,
    session: Option<String>,
    proto: String,
    out: Vec<u8>,
    next_id: u64,
}

impl Streamable {
    pub fn open(addr: SocketAddr, path: &str) -> io::Result<Streamable> {
        let mut s = Streamable {
            conn: Conn::new(addr),
            path: path.to_owned(),
            session: None,
            proto: PROTOCOL_VERSION.to_owned(),
            out: Vec::with_capacity(256),
            next_id: 1,
        };
        let init = initialize_msg(0);
        let (resp, result) = s.post(init.as_bytes(), Some(0))?;
        s.session = resp.head.header("mcp-session-id").map(str::to_owned);
        if let Some(p) = result
            .as_ref()
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str)
        {
            s.proto = p.to_owned();
        }
        let (resp, _) = s.post(INITIALIZED_MSG.as_bytes(), None)?;
        if !(200..300).contains(&resp.head.status()) {
            return Err(invalid(format!(
                "notifications/initialized answered {}",
                resp.head.status()
            )));
        }
        Ok(s)
    }

    fn post(
        &mut self,
        body: &[u8],
        id: Option<u64>,
    ) -> io::Result<(http::Response, Option<Value>)> {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = &self.session {
            h.push(("Mcp-Session-Id", s));
        }
        if id != Some(0) {
            h.push(("Mcp-Protocol-Version", &self.proto));
        }
        let resp = self.conn.request("POST", &self.path, &h, body)?;
        let Some(id) = id else {
            return Ok((resp, None));
        };
        if resp.head.status() != 200 {
            return Err(invalid(format!(
                "POST {} answered {}: {}",
                self.path,
                resp.head.status(),
                show(&resp.body)
            )));
        }
        let mut found = None;
        if resp.is_sse() {
            for e in &resp.events {
                if let Some(v) = reply_for(e.data.as_bytes(), id)? {
                    found = Some(v);
                }
            }
        } else {
            found = reply_for(&resp.body, id)?;
        }
        match found {
            Some(v) => Ok((resp, Some(v))),
            None => Err(invalid(format!(
                "POST {} carried no reply to {id}",
                self.path
            ))),
        }
    }
}

impl Caller for Streamable {
    fn call(&mut self) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = std::mem::take(&mut self.out);
        call_msg(&mut out, id);
        let r = self.post(&out, Some(id)).map(drop);
        self.out = out;
        r
    }
}

/// An HTTP+SSE (2024-11-05) session: replies come on the GET stream.
pub struct Legacy {
    stream: SseStream,
    post: Conn,
    endpoint: String,
    out: Vec<u8>,
    next_id: u64,
}

impl Legacy {
    pub fn open(addr: SocketAddr, path: &str) -> io::Result<Legacy> {
        let mut stream = SseStream::open(addr, path, &[])?;
        let e = stream.next_event()?;
        if e.event != "endpoint" {
            return Err(invalid(format!(
                "first event on {path} is {:?}, not endpoint",
                e.event
            )));
        }
        // The endpoint may be absolute; keep its path and query.
        let endpoint = match e.data.split_once("://") {
            Some((_, rest)) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
            None => e.data.clone(),
        };
        let mut s = Legacy {
            stream,
            post: Conn::new(addr),
            endpoint,
            out: Vec::with_capacity(256),
            next_id: 1,
        };
        s.send(initialize_msg(0).as_bytes())?;
        s.wait_reply(0)?;
        s.send(INITIALIZED_MSG.as_bytes())?;
        Ok(s)
    }

    fn send(&mut self, body: &[u8]) -> io::Result<()> {
        let resp = self.post.request(
            "POST",
            &self.endpoint,
            &[("Content-Type", "application/json")],
            body,
        )?;
        if !(200..300).contains(&resp.head.status()) {
            return Err(invalid(format!(
                "POST {} answered {}: {}",
                self.endpoint,
                resp.head.status(),
                show(&resp.body)
            )));
        }
        Ok(())
    }

    fn wait_reply(&mut self, id: u64) -> io::Result<Value> {
        loop {
            let e = self.stream.next_event()?;
            if e.event != "message" {
                continue;
            }
            if let Some(v) = reply_for(e.data.as_bytes(), id)? {
                return Ok(v);
            }
        }
    }
}

impl Caller for Legacy {
    fn call(&mut self) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = std::mem::take(&mut self.out);
        call_msg(&mut out, id);
        let r = self.send(&out);
        self.out = out;
        r?;
        self.wait_reply(id).map(drop)
    }
}
