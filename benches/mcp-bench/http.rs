//! A minimal HTTP/1.1 client and body framing, written for the load
//! generator: one blocking `TcpStream` per connection with TCP_NODELAY, each
//! request written with a single `write` call, keep-alive reuse, and no
//! threads. Bodies come as `Content-Length`, chunked or read-to-close; an
//! `text/event-stream` body is fed through the proxy's own SSE parser.
//!
//! Every read carries a socket timeout ([`IO_TIMEOUT`]) so that a stuck
//! system under test fails the workload instead of hanging the run.

use mcp_proxy::sse;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bound on any single socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Cap on one SSE event, as a proxy would set it.
pub const MAX_EVENT_BYTES: usize = 16 << 20;
/// Cap on one response head, so that garbage cannot grow without bound.
const MAX_HEAD_BYTES: usize = 64 << 10;

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the peer closes the connection.
    Close,
}

/// Reads one body off a buffered stream, honouring its framing.
pub struct Body<'a, R: BufRead> {
    r: &'a mut R,
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or the body (length).
    left: u64,
    done: bool,
}

impl<'a, R: BufRead> Body<'a, R> {
    pub fn new(r: &'a mut R, framing: Framing) -> Body<'a, R> {
        let (left, done) = match framing {
            Framing::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        Body {
            r,
            framing,
            left,
            done,
        }
    }

    /// Reads the rest of the body.
    pub fn read_all(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

impl<R: BufRead> Read for Body<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Close => {
                let n = self.r.read(buf)?;
                if n == 0 {
                    self.done = true;
                }
                Ok(n)
            }
            Framing::Length(_) => {
                let want = buf.len().min(self.left as usize);
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.left -= n as u64;
                self.done = self.left == 0;
                Ok(n)
            }
            Framing::Chunked => {
                if self.left == 0 {
                    let mut line = String::new();
                    read_line(self.r, &mut line)?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    self.left = u64::from_str_radix(hex, 16)
                        .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
                    if self.left == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            line.clear();
                            read_line(self.r, &mut line)?;
                            if line.trim().is_empty() {
                                break;
                            }
                        }
                        self.done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(self.left as usize);
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.left -= n as u64;
                if self.left == 0 {
                    let mut crlf = String::new();
                    read_line(self.r, &mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

fn read_line<R: BufRead>(r: &mut R, line: &mut String) -> io::Result<()> {
    let n = r.by_ref().take(MAX_HEAD_BYTES as u64).read_line(line)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A parsed request or response head.
#[derive(Debug, Default)]
pub struct Head {
    /// The first line split on spaces: method/target/version or
    /// version/status/reason.
    pub start: Vec<String>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn read<R: BufRead>(r: &mut R) -> io::Result<Head> {
        let mut line = String::new();
        read_line(r, &mut line)?;
        let start = line.split_whitespace().map(str::to_owned).collect();
        let mut headers = Vec::new();
        let mut total = line.len();
        loop {
            line.clear();
            read_line(r, &mut line)?;
            total += line.len();
            if total > MAX_HEAD_BYTES {
                return Err(invalid("head too large"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        Ok(Head { start, headers })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn status(&self) -> u16 {
        self.start.get(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn keeps_alive(&self) -> bool {
        let v11 = self.start.first().is_some_and(|v| v == "HTTP/1.1");
        let close = self
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        v11 && !close
    }

    /// The framing of the body that follows this head. `no_body` is true for
    /// responses that never carry one (HEAD, 1xx, 204, 304) and for requests.
    pub fn framing(&self, is_response: bool) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        if let Some(n) = self.header("content-length").and_then(|n| n.parse().ok()) {
            return Framing::Length(n);
        }
        if !is_response {
            return Framing::Length(0);
        }
        let s = self.status();
        if (100..200).contains(&s) || s == 204 || s == 304 {
            Framing::Length(0)
        } else {
            Framing::Close
        }
    }
}

pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Writes a request in one `write` call.
fn send_request(
    w: &mut TcpStream,
    buf: &mut Vec<u8>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    buf.clear();
    write!(buf, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n")?;
    for (k, v) in headers {
        write!(buf, "{k}: {v}\r\n")?;
    }
    if !body.is_empty() || method == "POST" {
        write!(buf, "Content-Length: {}\r\n", body.len())?;
    }
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(body);
    w.write_all(buf)
}

/// One response, body read in full. A `text/event-stream` body is parsed
/// into its events.
#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
    pub events: Vec<sse::Event>,
}

impl Response {
    pub fn is_sse(&self) -> bool {
        self.head
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }
}

/// A keep-alive connection that reconnects when the server closed it.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<(TcpStream, BufReader<TcpStream>)>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let r = self.request_once(method, path, headers, body);
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn request_once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = connect(self.addr)?;
            let r = BufReader::with_capacity(64 << 10, s.try_clone()?);
            self.stream = Some((s, r));
        }
        let (w, r) = self.stream.as_mut().expect("connected just above");
        send_request(w, &mut self.buf, self.addr, method, path, headers, body)?;
        let head = Head::read(r)?;
        let framing = if method == "HEAD" {
            Framing::Length(0)
        } else {
            head.framing(true)
        };
        let keep = head.keeps_alive() && framing != Framing::Close;
        let mut resp = Response {
            head,
            body: Vec::new(),
            events: Vec::new(),
        };
        let mut body = Body::new(r, framing);
        if resp.is_sse() {
            let mut parser = sse::Parser::new(MAX_EVENT_BYTES);
            let mut items = Vec::new();
            let mut buf = [0u8; 16 << 10];
            loop {
                let n = body.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                parser.feed(&buf[..n], &mut items);
                for it in items.drain(..) {
                    if let sse::Item::Event(e) = it {
                        resp.events.push(e);
                    }
                }
            }
        } else {
            body.read_all(&mut resp.body)?;
        }
        if !keep {
            self.stream = None;
        }
        Ok(resp)
    }
}

/// A long-lived `text/event-stream` GET, read one event at a time.
pub struct SseStream {
    r: BufReader<TcpStream>,
    framing: Framing,
    chunk_left: u64,
    parser: sse::Parser,
    items: std::collections::VecDeque<sse::Event>,
    scratch: Vec<sse::Item>,
    buf: Box<[u8]>,
}

impl SseStream {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<SseStream> {
        let mut s = connect(addr)?;
        let mut buf = Vec::new();
        let mut h = vec![("Accept", "text/event-stream")];
        h.extend_from_slice(headers);
        send_request(&mut s, &mut buf, addr, "GET", path, &h, b"")?;
        let mut r = BufReader::with_capacity(64 << 10, s);
        let head = Head::read(&mut r)?;
        if head.status() != 200 {
            return Err(invalid(format!(
                "GET {path} answered {} instead of an event stream",
                head.status()
            )));
        }
        let framing = head.framing(true);
        let chunk_left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Ok(SseStream {
            r,
            framing,
            chunk_left,
            parser: sse::Parser::new(MAX_EVENT_BYTES),
            items: Default::default(),
            scratch: Vec::new(),
            buf: vec![0u8; 16 << 10].into_boxed_slice(),
        })
    }

    /// The next event (keepalive comments are skipped by the parser).
    pub fn next_event(&mut self) -> io::Result<sse::Event> {
        loop {
            if let Some(e) = self.items.pop_front() {
                return Ok(e);
            }
            let n = {
                let mut body = Body {
                    r: &mut self.r,
                    framing: self.framing,
                    left: self.chunk_left,
                    done: false,
                };
                let n = body.read(&mut self.buf)?;
                self.chunk_left = body.left;
                n
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.parser.feed(&self.buf[..n], &mut self.scratch);
            for it in self.scratch.drain(..) {
                if let sse::Item::Event(e) = it {
                    self.items.push_back(e);
                }
            }
        }
    }
}
