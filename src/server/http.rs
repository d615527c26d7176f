//! HTTP plumbing shared by the endpoints: header access, the Origin/Host
//! checks and CORS, bounded body reading, plain responses, and SSE streams
//! written straight to the socket.
//!
//! SSE cannot go through `Request::respond`: tiny_http buffers a body of
//! unknown length and flushes it at the end (DESIGN.md). A stream takes the
//! raw writer with `into_writer()`, writes the status line and headers
//! itself, ends the body by closing the connection, and flushes after every
//! event. No threads here; the caller's exchange thread does the writing.

use crate::queue::BoundedReceiver;
use crate::sse;
use std::io::{self, Read, Write};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response};

use super::Ctx;
use crate::router::Out;

/// A header's value (first occurrence), by case-insensitive name.
pub fn header<'a>(rq: &'a Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// One query parameter, percent-decoding not needed for our hex ids.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The host part of `host[:port]` or `[v6]:port`, lowercased.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let h = if a.starts_with('[') {
        match a.find(']') {
            Some(i) => &a[..=i],
            None => a,
        }
    } else {
        a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a)
    };
    h.to_ascii_lowercase()
}

/// `scheme://authority` of an Origin header, without a trailing slash.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.trim_end_matches('/'))
}

fn is_local_name(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1") || host.starts_with("127.")
}

/// True when we listen on a loopback address only.
pub fn is_loopback_bind(host: &str) -> bool {
    let h = host
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

/// Whether a browser `Origin` may talk to us: an `--allow-origin` entry
/// (`*` = any), the same origin as the request's Host, the listener's own
/// host, or a loopback origin when we listen on loopback.
pub fn origin_allowed(ctx: &Ctx, origin: &str, host_header: Option<&str>) -> bool {
    let listed = ctx.args.allow_origins.iter().any(|a| {
        a == "*"
            || a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    });
    if listed {
        return true;
    }
    let Some(auth) = origin_authority(origin) else {
        return false;
    };
    let oh = host_of(auth);
    if ctx.loopback && is_local_name(&oh) {
        return true;
    }
    if host_header.is_some_and(|h| h.trim().eq_ignore_ascii_case(auth)) {
        return true;
    }
    oh == host_of(&ctx.args.host)
}

/// Whether the origin is one CORS was enabled for (`--allow-origin`).
fn cors_listed(ctx: &Ctx, origin: &str) -> Option<String> {
    let any = ctx.args.allow_origins.iter().any(|a| a == "*");
    if any {
        return Some("*".into());
    }
    ctx.args
        .allow_origins
        .iter()
        .any(|a| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
        })
        .then(|| origin.to_owned())
}

/// The CORS headers every response to `rq` carries (empty without
/// `--allow-origin` or for an origin not listed).
pub fn cors_headers(ctx: &Ctx, rq: &Request) -> Vec<(String, String)> {
    let (false, Some(origin)) = (ctx.args.allow_origins.is_empty(), header(rq, "Origin")) else {
        return Vec::new();
    };
    let Some(allow) = cors_listed(ctx, origin) else {
        return Vec::new();
    };
    let mut h = vec![("Access-Control-Allow-Origin".to_owned(), allow.clone())];
    if !ctx.args.expose_headers.is_empty() {
        h.push((
            "Access-Control-Expose-Headers".into(),
            ctx.args.expose_headers.join(", "),
        ));
    }
    if allow != "*" {
        h.push(("Vary".into(), "Origin".into()));
    }
    h
}

/// Answers a CORS preflight like Starlette's CORSMiddleware (UPSTREAM §2.5).
pub fn preflight(ctx: &Ctx, rq: Request) {
    let origin = header(&rq, "Origin").unwrap_or("").to_owned();
    let Some(allow) = cors_listed(ctx, &origin) else {
        return respond(
            rq,
            400,
            "text/plain; charset=utf-8",
            "Disallowed CORS origin",
            &[],
        );
    };
    let mut h = vec![
        ("Access-Control-Allow-Origin".to_owned(), allow.clone()),
        (
            "Access-Control-Allow-Methods".into(),
            "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, QUERY".into(),
        ),
        ("Access-Control-Max-Age".into(), "600".into()),
    ];
    if let Some(req_headers) = header(&rq, "Access-Control-Request-Headers") {
        h.push((
            "Access-Control-Allow-Headers".into(),
            req_headers.to_owned(),
        ));
    }
    if allow != "*" {
        h.push(("Vary".into(), "Origin".into()));
    }
    respond(rq, 200, "text/plain; charset=utf-8", "OK", &h);
}

/// Whether the request carries `Authorization: Bearer TOKEN` (AU-03);
/// the scheme is case-insensitive, the token compared in constant time.
pub fn bearer_ok(rq: &Request, token: &crate::cli::Secret) -> bool {
    let Some(v) = header(rq, "Authorization") else {
        return false;
    };
    let v = v.trim();
    match v.split_once(' ') {
        Some((scheme, cred)) if scheme.eq_ignore_ascii_case("bearer") => {
            token.matches(cred.trim().as_bytes())
        }
        _ => false,
    }
}

/// 401 with a `WWW-Authenticate: Bearer` challenge (AU-04). The
/// Streamable HTTP endpoint gets a JSON-RPC error without an id.
pub fn unauthorized(rq: Request, path: &str, cors: &[(String, String)]) {
    let mut h = cors.to_vec();
    h.push(("WWW-Authenticate".into(), "Bearer".into()));
    if path.ends_with("/mcp") || path.ends_with("/mcp/") {
        let body = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Unauthorized: send Authorization: Bearer <token>"}}"#;
        respond_json(rq, 401, body, &h)
    } else {
        respond(
            rq,
            401,
            "text/plain; charset=utf-8",
            "Unauthorized: send Authorization: Bearer <token>",
            &h,
        )
    }
}

/// Sends a complete response. Errors writing it mean the client left.
pub fn respond(
    rq: Request,
    status: u16,
    content_type: &str,
    body: &str,
    extra: &[(String, String)],
) {
    super::metrics::count_status(status);
    let mut r = Response::from_string(body).with_status_code(status);
    if !content_type.is_empty() {
        r.add_header(hdr("Content-Type", content_type));
    }
    for (k, v) in extra {
        r.add_header(hdr(k, v));
    }
    let _ = rq.respond(r);
}

/// A JSON body (a JSON-RPC error, mostly).
pub fn respond_json(rq: Request, status: u16, body: &str, extra: &[(String, String)]) {
    respond(rq, status, "application/json", body, extra)
}

fn hdr(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes())
        .expect("header names and values we build are valid")
}

/// What a client whose body stalled is told (with 408 Request Timeout).
pub fn body_timeout_message(timeout: Option<Duration>) -> String {
    let secs = timeout.map_or(0, |t| t.as_secs());
    format!(
        "Request Timeout: the body stalled for more than {secs} s, or came in slower than {BODY_MIN_RATE} bytes/s after its first {secs} s (--header-timeout)"
    )
}

/// The slowest a request body may come in once `--header-timeout` has
/// passed since the handler started reading it: each byte received buys
/// 1/BODY_MIN_RATE s more (Apache's mod_reqtimeout `MinRate`, and its
/// default). Without it, a client sending a byte just before each read
/// timeout would hold its connection thread for hours.
pub const BODY_MIN_RATE: u64 = 500;

/// Why a body could not be read.
pub enum BodyError {
    TooLarge,
    /// A read waited longer than `--header-timeout` (the socket's read
    /// timeout) for the next bytes, or the body trickled in below
    /// [`BODY_MIN_RATE`].
    TimedOut,
    Io,
}

/// Reads a request body of at most `limit` bytes. With a `timeout`, the
/// body must come in within it plus 1/[`BODY_MIN_RATE`] s per byte.
pub fn read_body(
    rq: &mut Request,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, BodyError> {
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let start = std::time::Instant::now();
    let mut buf = Vec::with_capacity(rq.body_length().unwrap_or(0).min(limit));
    let mut r = rq.as_reader().take(limit as u64 + 1);
    let mut chunk = [0u8; 8192];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A socket read timeout is EAGAIN (WouldBlock) on Linux.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(BodyError::TimedOut)
            }
            Err(_) => return Err(BodyError::Io),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(t) = timeout {
            let earned = Duration::from_millis(buf.len() as u64 * 1000 / BODY_MIN_RATE);
            if start.elapsed() > t + earned {
                return Err(BodyError::TimedOut);
            }
        }
    }
    if buf.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(buf)
}

/// Whether a Content-Type names JSON (parameters such as charset allowed).
pub fn is_json_type(ct: Option<&str>) -> bool {
    ct.and_then(|c| c.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// What an Accept header allows: (JSON, SSE).
pub fn accepts(accept: Option<&str>) -> (bool, bool) {
    let Some(a) = accept else {
        return (false, false);
    };
    let mut json = false;
    let mut sse = false;
    for part in a.split(',') {
        let t = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match t.as_str() {
            "*/*" => {
                json = true;
                sse = true;
            }
            "application/json" | "application/*" => json = true,
            "text/event-stream" | "text/*" => sse = true,
            _ => {}
        }
    }
    (json, sse)
}

/// Starts an SSE response on the raw socket: status line, headers, and
/// nothing that would make a proxy buffer it. The body is chunked, framed
/// by hand (tiny_http would buffer it, DESIGN.md): each flushed write is one
/// chunk, and dropping the writer sends the last chunk, so the response has
/// a clear end (SH-15: a POST stream ends after its response) while the
/// connection stays usable for the client's next request.
pub fn start_sse(rq: Request, extra: &[(String, String)]) -> io::Result<Box<dyn Write + Send>> {
    super::metrics::count_status(200);
    let mut w = rq.into_writer();
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n",
    );
    for (k, v) in extra {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()?;
    Ok(Box::new(Chunked {
        inner: w,
        failed: false,
    }))
}

/// HTTP/1.1 chunked framing over a raw response writer.
struct Chunked {
    inner: Box<dyn Write + Send>,
    failed: bool,
}

impl Write for Chunked {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One write per chunk: with TCP_NODELAY each write is a packet.
        let mut chunk = Vec::with_capacity(buf.len() + 20);
        chunk.extend_from_slice(format!("{:x}\r\n", buf.len()).as_bytes());
        chunk.extend_from_slice(buf);
        chunk.extend_from_slice(b"\r\n");
        let r = self.inner.write_all(&chunk);
        if r.is_err() {
            self.failed = true;
        }
        r.map(|_| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for Chunked {
    fn drop(&mut self) {
        if !self.failed {
            let _ = self
                .inner
                .write_all(b"0\r\n\r\n")
                .and_then(|_| self.inner.flush());
        }
    }
}

/// The 2025-11-25 priming event (SH-42): an id the client can resume
/// from, an empty data field, and the reconnection delay.
pub fn write_priming(w: &mut dyn Write, stream: u64, seq: u64) -> io::Result<()> {
    w.write_all(format!("id: {stream}-{seq}\nretry: {PRIMING_RETRY_MS}\ndata: \n\n").as_bytes())?;
    w.flush()
}

/// Reconnection delay announced to 2025-11-25 clients, milliseconds.
pub const PRIMING_RETRY_MS: u64 = 3000;

/// How a stream pump ended.
pub enum Ended {
    /// The router closed the stream (all responses sent, or session over).
    Done,
    /// Writing failed: the client is gone.
    ClientGone,
}

/// How often an exchange that must notice its client hanging up (a
/// 2026-07-28 one: closing the response is the cancel, SX-10) looks at its
/// socket while it waits. Without it a hang-up shows only when a write
/// fails: at the next keepalive, or never with `--keepalive 0`.
pub const HANGUP_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Whether the peer of socket `fd` has closed the connection (or it failed).
pub fn peer_hung_up(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll reads one valid, owned pollfd and writes its revents; a
    // timeout of 0 never blocks. The fd stays owned by the connection.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// The next message on `rx`, waiting at most `limit` (`None`: as long as
/// it takes). With `watch`, the socket of the client is checked every
/// [`HANGUP_CHECK_INTERVAL`] meanwhile; `Err(None)` says the client hung up.
pub fn recv_watching(
    rx: &BoundedReceiver<Out>,
    limit: Option<Duration>,
    watch: Option<i32>,
) -> Result<Out, Option<RecvTimeoutError>> {
    let Some(fd) = watch else {
        return match limit {
            Some(l) => rx.recv_timeout(l).map_err(Some),
            None => rx.recv().map_err(|_| Some(RecvTimeoutError::Disconnected)),
        };
    };
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    loop {
        let slice = match deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .min(HANGUP_CHECK_INTERVAL),
            None => HANGUP_CHECK_INTERVAL,
        };
        match rx.recv_timeout(slice) {
            Ok(o) => return Ok(o),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Some(RecvTimeoutError::Disconnected))
            }
            Err(RecvTimeoutError::Timeout) => {
                if peer_hung_up(fd) {
                    return Err(None);
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(Some(RecvTimeoutError::Timeout));
                }
            }
        }
    }
}

/// Writes `first` (if any) and then everything from `rx` as `message`
/// events, with a keepalive comment whenever the stream is idle for
/// `keepalive`. Returns when the router drops the stream or a write fails,
/// or with `watch` (see [`recv_watching`]) when the client hangs up.
pub fn pump_sse(
    w: &mut dyn Write,
    first: Option<Out>,
    rx: &BoundedReceiver<Out>,
    keepalive: Option<Duration>,
    watch: Option<i32>,
) -> Ended {
    if let Some(o) = first {
        if write_out(w, &o).is_err() {
            return Ended::ClientGone;
        }
    }
    loop {
        match recv_watching(rx, keepalive, watch) {
            Ok(o) => {
                if write_out(w, &o).is_err() {
                    return Ended::ClientGone;
                }
            }
            Err(None) => return Ended::ClientGone,
            Err(Some(RecvTimeoutError::Timeout)) => {
                if sse::write_comment(w, "ping").is_err() {
                    return Ended::ClientGone;
                }
            }
            Err(Some(RecvTimeoutError::Disconnected)) => return Ended::Done,
        }
    }
}

fn write_out(w: &mut dyn Write, o: &Out) -> io::Result<()> {
    sse::write_event(w, Some("message"), o.event_id.as_deref(), &o.data)
}

/// Whether the request is a HEAD (answered like GET, without a body).
pub fn is_head(rq: &Request) -> bool {
    *rq.method() == Method::Head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert_eq!(accepts(None), (false, false));
        assert_eq!(
            accepts(Some("application/json, text/event-stream")),
            (true, true)
        );
        assert_eq!(accepts(Some("application/json;q=0.9")), (true, false));
        assert_eq!(accepts(Some("text/event-stream")), (false, true));
        assert_eq!(accepts(Some("*/*")), (true, true));
        assert_eq!(accepts(Some("text/html")), (false, false));
    }

    #[test]
    fn hosts_and_origins() {
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("Example.COM"), "example.com");
        assert_eq!(origin_authority("http://a.b:1/"), Some("a.b:1"));
        assert_eq!(origin_authority("null"), None);
        assert!(is_loopback_bind("127.0.0.1"));
        assert!(is_loopback_bind("[::1]"));
        assert!(!is_loopback_bind("0.0.0.0"));
    }

    #[test]
    fn content_types_and_queries() {
        assert!(is_json_type(Some("application/json; charset=utf-8")));
        assert!(!is_json_type(Some("text/plain")));
        assert!(!is_json_type(None));
        assert_eq!(query_param("a=1&session_id=ab", "session_id"), Some("ab"));
        assert_eq!(query_param("session_id", "session_id"), Some(""));
        assert_eq!(query_param("x=1", "session_id"), None);
    }
}
