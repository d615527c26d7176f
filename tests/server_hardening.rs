//! Server-mode hardening: inbound bearer auth (AU-03, AU-04, SH-04,
//! RL-12), the loud warning for an exposed listener, and the limits a
//! client cannot push past (sessions, connections, header size, stream
//! queue, write timeout, a client that trickles its request).

mod common;
mod server_support;

use common::{demo_bin, proxy_bin, Proc, WAIT};
use serde_json::json;
use server_support::*;
use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-3f9a1c-SECRET";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn mcp_headers<'a>(auth: Option<&'a str>, session: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    if let Some(s) = session {
        h.push(("Mcp-Session-Id", s));
    }
    h
}

fn named_demo() -> String {
    demo_bin().to_owned()
}

#[test]
fn auth_token_guards_every_mcp_endpoint_but_not_the_probes() {
    let named = named_demo();
    let p = Proxy::start(&[
        "--auth-token",
        TOKEN,
        "--log-level",
        "debug",
        "--named-server",
        "n",
        &named,
    ]);
    let good = bearer();
    // Every MCP endpoint, with no token, a wrong one, another scheme.
    let endpoints: &[(&str, &str)] = &[
        ("GET", "/sse"),
        (
            "POST",
            "/messages/?session_id=00000000000000000000000000000000",
        ),
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("GET", "/servers/n/sse"),
        ("POST", "/servers/n/mcp"),
        ("GET", "/status"),
    ];
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let short = &TOKEN[..TOKEN.len() - 1];
    let short = format!("Bearer {short}");
    for (method, path) in endpoints {
        for auth in [
            None,
            Some(wrong.as_str()),
            Some(basic.as_str()),
            Some(short.as_str()),
            Some("Bearer"),
        ] {
            let h = mcp_headers(auth, None);
            let body = (*method == "POST").then_some(INIT.as_bytes());
            let c = send(method, &format!("{}{path}", p.url), &h, body);
            assert_eq!(c.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(
                c.header("WWW-Authenticate"),
                Some("Bearer"),
                "{method} {path}"
            );
            let mcp = path.ends_with("/mcp");
            let text = c.text();
            if mcp {
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON-RPC body");
                assert!(v.get("id").is_none(), "no id in {v}");
                assert_eq!(v["jsonrpc"], "2.0");
                assert!(v["error"]["code"].is_i64(), "{v}");
            }
            assert!(!text.contains(TOKEN), "the body never echoes the token");
        }
    }
    // With the token everything works as before, on both servers.
    for prefix in ["", "/servers/n"] {
        let c = send(
            "POST",
            &format!("{}{prefix}/mcp", p.url),
            &mcp_headers(Some(&good), None),
            Some(INIT.as_bytes()),
        );
        assert_eq!(c.status, 200, "{prefix}/mcp with the token");
        let sid = c.header("Mcp-Session-Id").unwrap().to_owned();
        let v = c.json();
        assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
        // The session id alone is not a credential.
        let call = tool(json!(2), "echo", json!({"text": "hi"})).to_string();
        let c = send(
            "POST",
            &format!("{}{prefix}/mcp", p.url),
            &mcp_headers(None, Some(&sid)),
            Some(call.as_bytes()),
        );
        assert_eq!(c.status, 401);
        let h = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", sid.as_str()),
            ("MCP-Protocol-Version", "2025-06-18"),
            ("Authorization", "bearer tok-3f9a1c-SECRET"),
        ];
        let c = send(
            "POST",
            &format!("{}{prefix}/mcp", p.url),
            &h,
            Some(call.as_bytes()),
        );
        assert_eq!(c.status, 200, "the scheme is case-insensitive");
        assert_eq!(text_of(&c.json()), "hi");
        let c = send(
            "GET",
            &format!("{}{prefix}/sse", p.url),
            &[("Authorization", &good)],
            None,
        );
        assert_eq!(c.status, 200);
        let sse = c.sse();
        assert_eq!(sse.next().unwrap().event, "endpoint");
        sse.close();
    }
    let c = send(
        "GET",
        &format!("{}/status", p.url),
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(c.status, 200);
    // Probes for supervisors stay open (answered by whatever serves them).
    for probe in ["/healthz", "/readyz"] {
        let c = send("GET", &format!("{}{probe}", p.url), &[], None);
        assert_ne!(c.status, 401, "{probe} needs no token");
    }
    let log = p.proc.stderr();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug logging is on: {log}"
    );
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
    assert!(!log.contains("3f9a1c"), "part of the token reached the log");
}

#[test]
fn status_can_be_opened_and_cors_preflight_needs_no_token() {
    let p = Proxy::start(&[
        "--auth-token",
        TOKEN,
        "--status-no-auth",
        "--allow-origin",
        "http://app.example",
    ]);
    let c = send("GET", &format!("{}/status", p.url), &[], None);
    assert_eq!(c.status, 200, "--status-no-auth");
    let c = send(
        "OPTIONS",
        &format!("{}/mcp", p.url),
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    );
    assert_eq!(c.status, 200, "a preflight cannot carry credentials");
    let c = send(
        "POST",
        &format!("{}/mcp", p.url),
        &mcp_headers(None, None),
        Some(INIT.as_bytes()),
    );
    assert_eq!(c.status, 401, "/mcp still needs it");
}

#[test]
fn token_from_the_environment_and_from_a_file() {
    let mut proc = Proc::spawn_with(
        proxy_bin(),
        &["--port", "0", "--", demo_bin()],
        &[("MCP_PROXY_AUTH_TOKEN", TOKEN)],
    );
    let url = proc.listening_url();
    let c = send(
        "POST",
        &format!("{url}/mcp"),
        &mcp_headers(None, None),
        Some(INIT.as_bytes()),
    );
    assert_eq!(c.status, 401);
    let good = bearer();
    let c = send(
        "POST",
        &format!("{url}/mcp"),
        &mcp_headers(Some(&good), None),
        Some(INIT.as_bytes()),
    );
    assert_eq!(c.status, 200);
    drop(proc);

    let dir = std::env::temp_dir().join(format!("mcp-proxy-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let mut proc = Proc::spawn(
        proxy_bin(),
        &[
            "--port",
            "0",
            "--auth-token-file",
            file.to_str().unwrap(),
            "--",
            demo_bin(),
        ],
    );
    let url = proc.listening_url();
    let c = send(
        "POST",
        &format!("{url}/mcp"),
        &mcp_headers(Some(&good), None),
        Some(INIT.as_bytes()),
    );
    assert_eq!(c.status, 200);
    drop(proc);

    std::fs::write(&file, "\n").unwrap();
    let mut proc = Proc::spawn(
        proxy_bin(),
        &[
            "--port",
            "0",
            "--auth-token-file",
            file.to_str().unwrap(),
            "--",
            demo_bin(),
        ],
    );
    assert_eq!(
        proc.wait_exit(WAIT),
        Some(2),
        "an empty token file is a usage error"
    );
    proc.wait_stderr("--auth-token-file", WAIT);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_exposed_listener_without_a_token_gets_a_loud_warning() {
    let mut proc = Proc::spawn(
        proxy_bin(),
        &["--host", "0.0.0.0", "--port", "0", "--", demo_bin()],
    );
    proc.wait_stderr("listening on", WAIT);
    let log = proc.stderr();
    assert!(
        log.contains("WARNING") && log.contains("--auth-token") && log.contains("0.0.0.0"),
        "{log}"
    );
    drop(proc);
    let mut proc = Proc::spawn(
        proxy_bin(),
        &[
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--auth-token",
            TOKEN,
            "--",
            demo_bin(),
        ],
    );
    proc.wait_stderr("listening on", WAIT);
    assert!(!proc.stderr().contains("WARNING"), "{}", proc.stderr());
    drop(proc);
    let mut proc = Proc::spawn(proxy_bin(), &["--port", "0", "--", demo_bin()]);
    proc.wait_stderr("listening on", WAIT);
    assert!(
        !proc.stderr().contains("WARNING"),
        "loopback needs no warning"
    );
}

// ---- limits ----

fn open_streamable(url: &str) -> (u16, Option<String>) {
    let c = post_mcp(&format!("{url}/mcp"), None, INIT);
    let sid = c.header("Mcp-Session-Id").map(str::to_owned);
    (c.status, sid)
}

#[test]
fn max_sessions_refuses_more_with_503_and_frees_a_slot_when_one_ends() {
    let p = Proxy::start(&["--max-sessions", "2", "--keepalive", "1"]);
    let (s1, a) = open_streamable(&p.url);
    assert_eq!(s1, 200);
    let c = send("GET", &format!("{}/sse", p.url), &[], None);
    assert_eq!(c.status, 200, "a legacy session counts too");
    let legacy = c.sse();
    assert_eq!(legacy.next().unwrap().event, "endpoint");
    let c = post_mcp(&format!("{}/mcp", p.url), None, INIT);
    assert_eq!(c.status, 503, "a third session");
    let v = c.json();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("sessions"),
        "{v}"
    );
    let c = send("GET", &format!("{}/sse", p.url), &[], None);
    assert_eq!(c.status, 503, "a third legacy session");
    // The existing sessions still work.
    let call = tool(json!(2), "echo", json!({"text": "still here"})).to_string();
    let c = post_mcp(&format!("{}/mcp", p.url), a.as_deref(), &call);
    assert_eq!(text_of(&c.json()), "still here");
    // Ending one makes room.
    legacy.close();
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, _) = open_streamable(&p.url);
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot of the closed session never freed"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn max_connections_refuses_at_once_beyond_the_limit() {
    let p = Proxy::start(&["--max-connections", "2", "--keepalive", "1"]);
    // Two open streams take both slots. The connection of the last /readyz
    // poll may hold its slot a moment after its answer (its thread sees the
    // close later on a loaded machine): retry until both streams are open.
    let open = || {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = send("GET", &format!("{}/sse", p.url), &[], None);
            if c.status == 200 {
                return c.sse();
            }
            assert!(
                Instant::now() < deadline,
                "no slot for a stream: {}",
                c.status
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    let a = open();
    assert_eq!(a.next().unwrap().event, "endpoint");
    let b = open();
    assert_eq!(b.next().unwrap().event, "endpoint");
    let c = post_mcp(&format!("{}/mcp", p.url), None, INIT);
    assert_eq!(c.status, 503, "refused, not queued");
    a.close();
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, _) = open_streamable(&p.url);
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never freed");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn oversized_headers_get_431() {
    let p = Proxy::start(&["--max-header-size", "2048"]);
    let big = "x".repeat(4096);
    let mut h = mcp_headers(None, None);
    h.push(("X-Filler", &big));
    let c = send("POST", &format!("{}/mcp", p.url), &h, Some(INIT.as_bytes()));
    assert_eq!(c.status, 431);
    let (s, _) = open_streamable(&p.url);
    assert_eq!(s, 200, "normal requests still pass");
}

fn host_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().to_owned()
}

/// Opens an HTTP+SSE session on a raw socket, reads up to its endpoint
/// event, and returns the socket (which the caller then never reads) and
/// the session id.
fn stalled_legacy(url: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(host_of(url)).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    // Until the 32 hex digits of the id are in (the body is chunked, so
    // the bytes need not end where the event does).
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        text.find("session_id=")
            .is_some_and(|i| text.len() >= i + "session_id=".len() + 32)
    };
    while !complete(&got) {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let i = text.find("session_id=").unwrap() + "session_id=".len();
    (s, text[i..i + 32].to_owned())
}

/// Floods a stalled session with big results until the proxy drops it.
fn flood(url: &str, sid: &str) {
    for id in 0..64 {
        let body = tool(json!(id), "big", json!({"bytes": 1_000_000})).to_string();
        let c = send(
            "POST",
            &format!("{url}/messages/?session_id={sid}"),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        if c.status == 404 {
            return; // dropped
        }
        assert_eq!(c.status, 202);
    }
}

#[test]
fn a_small_stream_queue_drops_a_client_that_does_not_read() {
    let p = Proxy::start(&["--stream-queue", "4"]);
    let (stalled, sid) = stalled_legacy(&p.url);
    let mut fast = Session::open(&p.url, Kind::Legacy, "fast", json!({}));
    flood(&p.url, &sid);
    p.wait_status("the stalled session dropped", |s| {
        s["active_sse_connections"] == 1
    });
    fast.post(&tool(json!(2), "echo", json!({"text": "ok"})));
    assert_eq!(text_of(&fast.recv_response(&json!(2))), "ok");
    let mut p = p;
    p.proc.wait_stderr("--stream-queue", WAIT); // the log names the flag
    drop(stalled);
}

/// Slowloris: clients that trickle their heads (and some their bodies)
/// hold a connection thread each but never stall anyone else; a head that
/// does not finish within --header-timeout, or a body that pauses longer,
/// gets 408 (vendor/tiny_http/PATCHED.md, change 3), whatever the body's
/// size and on both POST endpoints.
#[test]
fn a_client_that_trickles_its_request_does_not_block_others() {
    let p = Proxy::start(&["--header-timeout", "2"]);
    let host = host_of(&p.url);
    // Ten clients send half a head and then one byte now and then.
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&host).unwrap();
        s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        slow.push(s);
    }
    // And some send their head but stall in the body: a small one (which
    // tiny_http reads before handing the request over) and larger ones
    // (which the endpoints read), on /mcp and on /messages/.
    let stalled_body = |head: &str| {
        let mut s = TcpStream::connect(&host).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(b"{").unwrap();
        s
    };
    let mut body_slow = stalled_body("POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 1000\r\n\r\n");
    let big_mcp = stalled_body("POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 50000\r\n\r\n");
    let big_legacy = stalled_body(&format!("POST /messages/?session_id={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n", "a".repeat(32)));
    for round in 0..3 {
        for s in &mut slow {
            s.write_all(b"a").unwrap();
        }
        let (status, _) = open_streamable(&p.url);
        assert_eq!(status, 200, "round {round}: others are served");
    }
    // Past the timeout the trickling heads are cut off with 408.
    let mut s = slow.pop().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    let r = std::io::Read::read_to_end(&mut s, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?} {r:?}");
    // The stalled body gets 408 too instead of holding its thread.
    body_slow.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut body_slow, &mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    // So do the larger stalled bodies, with a body naming the flag.
    for (what, mut s) in [("/mcp", big_mcp), ("/messages/", big_legacy)] {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408"), "{what}: {out:?}");
        assert!(out.contains("--header-timeout"), "{what}: {out:?}");
    }
    drop(slow);
}

/// A body that never pauses long enough for a read to time out, but comes
/// in a byte at a time, is cut off too: the small one tiny_http reads
/// itself gets one more --header-timeout after the head's, the larger ones
/// must keep up 500 bytes/s once --header-timeout has passed (BODY_MIN_RATE).
/// Without that, each would hold its connection thread for hours.
#[test]
fn a_body_trickled_a_byte_at_a_time_gets_408() {
    let p = Proxy::start(&["--header-timeout", "1"]);
    let host = host_of(&p.url);
    let heads = [
        ("small /mcp body", "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 1000\r\n\r\n".to_owned()),
        ("large /mcp body", "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 50000\r\n\r\n".to_owned()),
        ("large /messages/ body", format!("POST /messages/?session_id={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n", "a".repeat(32))),
    ];
    let mut conns: Vec<(&str, TcpStream, Vec<u8>)> = heads
        .iter()
        .map(|(what, head)| {
            let mut s = TcpStream::connect(&host).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            (*what, s, Vec::new())
        })
        .collect();
    // A byte every 100-200 ms: well inside the 1 s read timeout, far below
    // 500 bytes/s. Bounded: at WAIT the test fails naming who was not cut off.
    let t0 = Instant::now();
    while conns
        .iter()
        .any(|(_, _, out)| !out.windows(4).any(|w| w == b"\r\n\r\n"))
    {
        assert!(
            t0.elapsed() < WAIT,
            "still trickling after {WAIT:?}: {:?}",
            conns
                .iter()
                .filter(|(_, _, out)| out.is_empty())
                .map(|(w, _, _)| *w)
                .collect::<Vec<_>>()
        );
        for (_, s, out) in &mut conns {
            let _ = s.write_all(b" ");
            let mut buf = [0u8; 4096];
            if let Ok(n) = std::io::Read::read(s, &mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
    for (what, _, out) in &conns {
        let out = String::from_utf8_lossy(out);
        assert!(out.starts_with("HTTP/1.1 408"), "{what}: {out:?}");
    }
    // The proxy still serves everyone else.
    let (status, _) = open_streamable(&p.url);
    assert_eq!(status, 200);
}

/// A header line that never ends costs at most --max-header-size: the
/// proxy answers 431 and closes instead of buffering it.
#[test]
fn an_endless_header_line_gets_431_without_being_buffered() {
    let p = Proxy::start(&["--max-header-size", "8192"]);
    let mut s = TcpStream::connect(host_of(&p.url)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    // Up to 64 MiB; the proxy stops reading long before.
    for _ in 0..1024 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{:?}",
        &out[..out.len().min(200)]
    );
    let (status, _) = open_streamable(&p.url);
    assert_eq!(status, 200);
}

/// A client that stops reading its SSE stream with the TCP window full
/// fails our write after --write-timeout, so its session ends and its
/// exchange thread is not held forever (the queue alone would not notice:
/// here it is far larger than what the flood sends).
#[test]
fn a_stalled_reader_is_dropped_after_the_write_timeout() {
    let p = Proxy::start(&["--write-timeout", "1", "--stream-queue", "100000"]);
    let (stalled, sid) = stalled_legacy(&p.url);
    flood(&p.url, &sid);
    p.wait_status("the stalled session ended", |s| {
        s["active_sse_connections"] == 0
    });
    drop(stalled);
}

/// --header-timeout bounds heads, not exchanges: an SSE stream and a slow
/// call held open longer than it still deliver.
#[test]
fn streams_and_slow_calls_outlive_the_header_timeout() {
    let p = Proxy::start(&["--header-timeout", "1"]);
    let mut legacy = Session::open(&p.url, Kind::Legacy, "legacy", json!({}));
    let mut get = Session::open(
        &p.url,
        Kind::Streamable {
            version: "2025-06-18",
            json_only: true,
            get: true,
        },
        "get",
        json!({}),
    );
    legacy.post(&tool(json!(2), "slow", json!({"ms": 2500})));
    get.post(&tool(json!(3), "slow", json!({"ms": 2500})));
    assert_eq!(text_of(&legacy.recv_response(&json!(2))), "slept 2500 ms");
    assert_eq!(text_of(&get.recv_response(&json!(3))), "slept 2500 ms");
    // Both sessions' streams are still there after the quiet time.
    get.post(&tool(
        json!(4),
        "log",
        json!({"level": "info", "text": "later"}),
    ));
    get.recv_response(&json!(4));
    legacy.post(&tool(json!(5), "echo", json!({"text": "later"})));
    assert_eq!(text_of(&legacy.recv_response(&json!(5))), "later");
}

/// --replay-events and --replay-bytes bound what a resuming client gets:
/// only the newest events the limits keep.
#[test]
fn replay_history_is_bounded_by_events_and_bytes() {
    for (flags, kept) in [
        (["--replay-events", "2"], 2usize),
        // Each list_changed event is about 60 bytes: 150 bytes keep two.
        (["--replay-bytes", "150"], 2usize),
    ] {
        let p = Proxy::start(&flags);
        let url = format!("{}/mcp", p.url);
        let (_, sid) = open_streamable(&p.url);
        let sid = sid.unwrap();
        let h = [
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", sid.as_str()),
            ("MCP-Protocol-Version", "2025-06-18"),
        ];
        let g = send("GET", &url, &h, None).sse();
        let mut ids = Vec::new();
        for i in 0..5 {
            let call = tool(json!(10 + i), "list_changed", json!({})).to_string();
            assert_eq!(text_of(&post_mcp(&url, Some(&sid), &call).json()), "sent");
            ids.push(g.next().unwrap().id.unwrap());
        }
        g.close();
        let mut h2 = h.to_vec();
        h2.push(("Last-Event-ID", ids[0].as_str()));
        // Resuming from the first event: only the newest `kept` are left.
        // They come oldest first, so the first `kept` events replayed are
        // those exactly, or the limit did not hold (too many: older ones
        // first; too few: the wait for the rest fails).
        let g = send("GET", &url, &h2, None).sse();
        let got: Vec<String> = (0..kept)
            .map(|_| {
                let e = g
                    .next()
                    .unwrap_or_else(|| panic!("{flags:?}: the replay ended"));
                e.id.clone()
                    .unwrap_or_else(|| panic!("{flags:?}: an event without id: {e:?}"))
            })
            .collect();
        g.close();
        let want = &ids[ids.len() - kept..];
        assert_eq!(got, want, "{flags:?}");
    }
}

/// Idle connections count against --max-connections too (each holds a
/// thread): beyond it a new connection gets 503 at once, and closing the
/// idle ones makes room.
#[test]
fn idle_connections_beyond_the_limit_are_refused_at_once() {
    let p = Proxy::start(&["--max-connections", "4"]);
    let host = host_of(&p.url);
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&host).unwrap()).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ =
            s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        if out.starts_with("HTTP/1.1 503") {
            assert!(out.contains("Too many connections"), "{out}");
            break;
        }
        // The idle ones may still be on their way through accept.
        assert!(Instant::now() < deadline, "never refused: {out}");
        thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = open_streamable(&p.url);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "room never came back");
        thread::sleep(Duration::from_millis(50));
    }
}
