//! The fast remote: a Streamable HTTP MCP server on 127.0.0.1 for the
//! client-mode workload. Hand-written HTTP/1.1 with one thread per
//! connection (at most [`MAX_CONNECTIONS`]), TCP_NODELAY, keep-alive, and
//! each response written in one `write` call, so that the proxy in front of
//! it is what gets measured. Replies come from the echo child's logic.
//!
//! `POST /mcp`: a request gets a JSON reply (an `initialize` also gets an
//! `Mcp-Session-Id`), a notification or response gets 202. `GET /mcp` is
//! 405 (no standalone stream, allowed by the spec), `DELETE /mcp` 200.
//! A connection thread ends when its peer closes; the process ends with its
//! parent (stdin EOF) or by signal.

use crate::child;
use crate::http::{Body, Head};
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// Open connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;
/// Largest request body accepted.
const MAX_BODY_BYTES: u64 = 4 << 20;

pub fn run(port: u16) -> io::Result<()> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("listening on http://{}", l.local_addr()?);
    // End with the parent: it holds our stdin open for as long as it wants us.
    thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let _ = io::copy(&mut io::stdin(), &mut io::sink());
            std::process::exit(0);
        })?;
    let open = Arc::new(AtomicUsize::new(0));
    let sessions = Arc::new(AtomicUsize::new(0));
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (open, sessions) = (open.clone(), sessions.clone());
        let spawned = thread::Builder::new()
            .name("remote-conn".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let _ = serve(s, &sessions);
                open.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            eprintln!("mcp-bench remote: cannot start a connection thread");
        }
    }
    Ok(())
}

fn serve(s: TcpStream, sessions: &AtomicUsize) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::with_capacity(64 << 10, s);
    let mut body = Vec::with_capacity(4096);
    let mut reply = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        let head = match Head::read(&mut r) {
            Ok(h) => h,
            Err(_) => return Ok(()),
        };
        let framing = head.framing(false);
        body.clear();
        Body::new(&mut r, framing)
            .take(MAX_BODY_BYTES)
            .read_to_end(&mut body)?;
        let method = head.start.first().map(String::as_str).unwrap_or("");
        let path = head.start.get(1).map(String::as_str).unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        reply.clear();
        let mut extra = String::new();
        let status = if path != "/mcp" && path != "/mcp/" {
            "404 Not Found"
        } else {
            match method {
                "POST" => {
                    let text = String::from_utf8_lossy(&body);
                    if text.trim_start().starts_with('[') {
                        reply.extend_from_slice(b"batches are not supported");
                        "400 Bad Request"
                    } else {
                        child::answer(&text, &mut reply)?;
                        if reply.last() == Some(&b'\n') {
                            reply.pop();
                        }
                        if text.contains("\"initialize\"") {
                            let n = sessions.fetch_add(1, Ordering::Relaxed);
                            extra = format!("Mcp-Session-Id: bench{n:08x}\r\n");
                        }
                        if reply.is_empty() {
                            "202 Accepted"
                        } else {
                            extra.push_str("Content-Type: application/json\r\n");
                            "200 OK"
                        }
                    }
                }
                "DELETE" => "200 OK",
                _ => {
                    extra.push_str("Allow: POST, DELETE\r\n");
                    "405 Method Not Allowed"
                }
            }
        };
        out.clear();
        write!(
            out,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n",
            reply.len()
        )?;
        out.extend_from_slice(&reply);
        w.write_all(&out)?;
        if head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
}
