//! A catalogue of malformed input, table-driven, in both modes. Each case
//! names the status (server mode) or JSON-RPC error (client mode) it must
//! get, and after each one the proxy must still serve another session
//! (TRANSPORTS §1, §4, §8, §9.3).

mod common;
mod server_support;

use common::{demo_bin, proxy_bin, Proc, WAIT};
use serde_json::{json, Value};
use server_support::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

/// One HTTP request and what it must get. `{SID}` in a header value is a
/// live Streamable HTTP session, `{LSID}` in the path a live HTTP+SSE one.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    status: u16,
    /// The JSON-RPC error code of the body, when it must be one.
    code: Option<i64>,
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const ACCEPT: (&str, &str) = ("Accept", "application/json, text/event-stream");
const SID: (&str, &str) = ("Mcp-Session-Id", "{SID}");
const VERSION: (&str, &str) = ("MCP-Protocol-Version", "2025-06-18");
const SESSION: &[(&str, &str)] = &[JSON, ACCEPT, SID, VERSION];
const FRESH: &[(&str, &str)] = &[JSON, ACCEPT];
const LEGACY: &[(&str, &str)] = &[JSON];

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn nested(depth: usize) -> Vec<u8> {
    let mut v = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"#.to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    v.extend(std::iter::repeat_n(b']', depth));
    v.extend_from_slice(b"}}");
    v
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let c = |name, method, path, headers, body: Vec<u8>, status, code| Case {
        name,
        method,
        path,
        headers,
        body,
        status,
        code,
    };
    let ping = b(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    vec![
        // Wrong methods and paths.
        c("GET /", "GET", "/", FRESH, vec![], 404, None),
        c("unknown path", "GET", "/nope", FRESH, vec![], 404, None),
        c(
            "PUT /mcp",
            "PUT",
            "/mcp",
            SESSION,
            ping.clone(),
            405,
            Some(-32000),
        ),
        c(
            "PATCH /mcp",
            "PATCH",
            "/mcp",
            SESSION,
            ping.clone(),
            405,
            Some(-32000),
        ),
        c("POST /sse", "POST", "/sse", LEGACY, ping.clone(), 405, None),
        c(
            "GET /messages/",
            "GET",
            "/messages/?session_id={LSID}",
            LEGACY,
            vec![],
            405,
            None,
        ),
        c(
            "unknown named server",
            "POST",
            "/servers/nope/mcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        // Path tricks: nothing is decoded or normalised into another endpoint.
        c(
            "/servers/../mcp",
            "POST",
            "/servers/../mcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        c(
            "/mcp/../sse",
            "GET",
            "/mcp/../sse",
            FRESH,
            vec![],
            404,
            None,
        ),
        c(
            "/servers/n/../../mcp",
            "POST",
            "/servers/n/../../mcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        c(
            "encoded slash in a server name",
            "POST",
            "/servers/n%2Fmcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        c(
            "encoded slash after the name",
            "POST",
            "/servers/n%2F/mcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        c(
            "percent-encoded endpoint",
            "POST",
            "/%6Dcp",
            FRESH,
            b(INIT),
            404,
            None,
        ),
        c("double slash", "POST", "//mcp", FRESH, b(INIT), 404, None),
        // Content-Type and Accept.
        c(
            "no Content-Type",
            "POST",
            "/mcp",
            &[ACCEPT],
            b(INIT),
            415,
            Some(-32000),
        ),
        c(
            "text/plain",
            "POST",
            "/mcp",
            &[("Content-Type", "text/plain"), ACCEPT],
            b(INIT),
            415,
            Some(-32000),
        ),
        c(
            "no Accept",
            "POST",
            "/mcp",
            &[JSON],
            b(INIT),
            406,
            Some(-32000),
        ),
        c(
            "Accept text/html",
            "POST",
            "/mcp",
            &[JSON, ("Accept", "text/html")],
            b(INIT),
            406,
            Some(-32000),
        ),
        c(
            "GET stream accepting JSON only",
            "GET",
            "/mcp",
            &[("Accept", "application/json"), SID, VERSION],
            vec![],
            406,
            Some(-32000),
        ),
        c(
            "legacy POST without Content-Type",
            "POST",
            "/messages/?session_id={LSID}",
            &[],
            ping.clone(),
            400,
            None,
        ),
        // Not JSON.
        c(
            "truncated JSON",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":1,"meth"#),
            400,
            Some(-32700),
        ),
        c(
            "invalid JSON",
            "POST",
            "/mcp",
            SESSION,
            b("{]"),
            400,
            Some(-32700),
        ),
        c(
            "empty body",
            "POST",
            "/mcp",
            SESSION,
            vec![],
            400,
            Some(-32700),
        ),
        c(
            "invalid UTF-8",
            "POST",
            "/mcp",
            SESSION,
            vec![b'{', 0xff, 0xfe, b'}'],
            400,
            Some(-32700),
        ),
        c(
            "NUL byte in a string",
            "POST",
            "/mcp",
            SESSION,
            b("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\0ng\"}"),
            400,
            Some(-32700),
        ),
        c(
            "NUL bytes only",
            "POST",
            "/mcp",
            SESSION,
            vec![0; 64],
            400,
            Some(-32700),
        ),
        c(
            "60k nested arrays",
            "POST",
            "/mcp",
            SESSION,
            vec![b'['; 60_000],
            400,
            Some(-32700),
        ),
        c(
            "30k nested params",
            "POST",
            "/mcp",
            SESSION,
            nested(30_000),
            400,
            Some(-32700),
        ),
        c(
            "100k nested arrays, over the body limit",
            "POST",
            "/mcp",
            SESSION,
            vec![b'['; 100_000],
            413,
            None,
        ),
        c(
            "number out of range",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":1e999999,"method":"ping"}"#),
            400,
            None,
        ),
        // Valid JSON, not JSON-RPC.
        c(
            "id null",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "id an object",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "id an array",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "id a boolean",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "no jsonrpc",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"id":1,"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "jsonrpc 1.0",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "jsonrpc a number",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#),
            400,
            Some(-32600),
        ),
        c(
            "method a number",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
            400,
            Some(-32600),
        ),
        c(
            "result and error together",
            "POST",
            "/mcp",
            SESSION,
            b(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#),
            400,
            Some(-32600),
        ),
        c(
            "a JSON string",
            "POST",
            "/mcp",
            SESSION,
            b(r#""ping""#),
            400,
            Some(-32600),
        ),
        c(
            "a JSON number",
            "POST",
            "/mcp",
            SESSION,
            b("42"),
            400,
            Some(-32600),
        ),
        c(
            "empty batch",
            "POST",
            "/mcp",
            SESSION,
            b("[]"),
            400,
            Some(-32600),
        ),
        c(
            "batch on 2025-06-18",
            "POST",
            "/mcp",
            SESSION,
            b(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            400,
            Some(-32600),
        ),
        c(
            "initialize in a batch",
            "POST",
            "/mcp",
            FRESH,
            format!("[{INIT}]").into_bytes(),
            400,
            Some(-32600),
        ),
        c(
            "legacy body not JSON",
            "POST",
            "/messages/?session_id={LSID}",
            LEGACY,
            b("{"),
            400,
            None,
        ),
        c(
            "legacy id null",
            "POST",
            "/messages/?session_id={LSID}",
            LEGACY,
            b(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            400,
            None,
        ),
        c(
            "legacy batch",
            "POST",
            "/messages/?session_id={LSID}",
            LEGACY,
            b(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            400,
            None,
        ),
        // Sessions.
        c(
            "no session id",
            "POST",
            "/mcp",
            FRESH,
            ping.clone(),
            400,
            Some(-32600),
        ),
        c(
            "unknown session id",
            "POST",
            "/mcp",
            &[
                JSON,
                ACCEPT,
                ("Mcp-Session-Id", "0123456789abcdef0123456789abcdef"),
                VERSION,
            ],
            ping.clone(),
            404,
            Some(-32001),
        ),
        c(
            "session id with control characters",
            "POST",
            "/mcp",
            &[JSON, ACCEPT, ("Mcp-Session-Id", "abc\x01\x7fdef"), VERSION],
            ping.clone(),
            404,
            Some(-32001),
        ),
        c(
            "session id of 8 KiB",
            "POST",
            "/mcp",
            &[JSON, ACCEPT, ("Mcp-Session-Id", LONG_SID), VERSION],
            ping.clone(),
            404,
            Some(-32001),
        ),
        c(
            "DELETE an unknown session",
            "DELETE",
            "/mcp",
            &[("Mcp-Session-Id", "nope")],
            vec![],
            404,
            Some(-32001),
        ),
        c(
            "GET stream of an unknown session",
            "GET",
            "/mcp",
            &[("Accept", "text/event-stream"), ("Mcp-Session-Id", "nope")],
            vec![],
            404,
            None,
        ),
        c(
            "bad protocol version",
            "POST",
            "/mcp",
            &[JSON, ACCEPT, SID, ("MCP-Protocol-Version", "1999-01-01")],
            ping.clone(),
            400,
            Some(-32000),
        ),
        c(
            "legacy without session_id",
            "POST",
            "/messages/",
            LEGACY,
            ping.clone(),
            400,
            None,
        ),
        c(
            "legacy session_id not hex",
            "POST",
            "/messages/?session_id=zz",
            LEGACY,
            ping.clone(),
            400,
            None,
        ),
        c(
            "legacy session_id with CR",
            "POST",
            "/messages/?session_id=%0d%0aX:1",
            LEGACY,
            ping.clone(),
            400,
            None,
        ),
        c(
            "legacy unknown session",
            "POST",
            "/messages/?session_id=0123456789abcdef0123456789abcdef",
            LEGACY,
            ping.clone(),
            404,
            None,
        ),
        // Size.
        c(
            "body over --max-body-size",
            "POST",
            "/mcp",
            SESSION,
            {
                let mut v = b(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":""#);
                v.extend(std::iter::repeat_n(b'a', 70_000));
                v.extend_from_slice(b"\"}}");
                v
            },
            413,
            None,
        ),
    ]
}

const LONG_SID: &str = include_str!("bad_input_long_sid.txt");

/// Bytes that are not a well-formed HTTP request, and the status each gets.
fn raw_cases() -> Vec<(&'static str, &'static [u8], u16)> {
    vec![
        ("garbage request line", b"GARBAGE\r\n\r\n", 400),
        ("header without a colon", b"GET /mcp HTTP/1.1\r\nHost: localhost\r\nnocolon\r\n\r\n", 400),
        ("absolute-form URL", b"POST http://evil.example/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 404),
        ("header value over --max-header-size", b"", 431),
    ]
}

fn live_legacy(url: &str) -> (Sse, String) {
    let c = send("GET", &format!("{url}/sse"), &[], None);
    let sse = c.sse();
    let ev = sse.next().expect("endpoint");
    let sid = ev.data.rsplit('=').next().unwrap().to_owned();
    (sse, sid)
}

fn still_serves(url: &str, after: &str) {
    let c = post_mcp(&format!("{url}/mcp"), None, INIT);
    assert_eq!(c.status, 200, "after '{after}': a new session");
    let sid = c.header("Mcp-Session-Id").unwrap().to_owned();
    let call = tool(json!(2), "echo", json!({"text": "ok"})).to_string();
    let c = post_mcp(&format!("{url}/mcp"), Some(&sid), &call);
    assert_eq!(c.status, 200, "after '{after}': a call");
    assert_eq!(text_of(&c.json()), "ok", "after '{after}'");
}

#[test]
fn server_mode_answers_each_malformed_request_and_keeps_serving() {
    let demo = demo_bin().to_owned();
    let p = Proxy::start(&[
        "--max-body-size",
        "65536",
        "--max-header-size",
        "16384",
        "--named-server",
        "n",
        &demo,
    ]);
    let c = post_mcp(&format!("{}/mcp", p.url), None, INIT);
    let sid = c.header("Mcp-Session-Id").unwrap().to_owned();
    let (_legacy, lsid) = live_legacy(&p.url);
    let host = p.url.strip_prefix("http://").unwrap().to_owned();
    let mut failures = Vec::new();
    let all = cases();
    assert!(
        all.len() + raw_cases().len() >= 40,
        "the catalogue has {}",
        all.len()
    );
    for case in &all {
        let path = case.path.replace("{LSID}", &lsid);
        let headers: Vec<(&str, String)> = case
            .headers
            .iter()
            .map(|(k, v)| (*k, v.replace("{SID}", &sid)))
            .collect();
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = (!case.body.is_empty() || case.method == "POST").then_some(&case.body[..]);
        let r = send(case.method, &format!("{}{path}", p.url), &h, body);
        let status = r.status;
        let text = if status == 413 {
            String::new()
        } else {
            r.text()
        };
        if status != case.status {
            failures.push(format!(
                "{}: status {status}, want {}: {text}",
                case.name, case.status
            ));
        } else if let Some(code) = case.code {
            match serde_json::from_str::<Value>(&text) {
                Ok(v) if v["error"]["code"] == code => {
                    // A JSON-RPC error never names an id it could not read.
                    assert!(
                        v.get("id").is_none_or(|i| i.is_null() || i == 1),
                        "{}: {v}",
                        case.name
                    );
                }
                _ => failures.push(format!("{}: body {text:?}, want error {code}", case.name)),
            }
        }
        still_serves(&p.url, case.name);
    }
    for (name, bytes, want) in raw_cases() {
        let mut s = TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let big;
        let bytes = if bytes.is_empty() {
            big = format!(
                "POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "v".repeat(20_000)
            );
            big.as_bytes()
        } else {
            bytes
        };
        s.write_all(bytes).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status: u16 = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != want {
            failures.push(format!("{name}: status {status}, want {want}: {out:?}"));
        }
        still_serves(&p.url, name);
    }
    // A huge integer id comes back byte for byte (JR-11).
    let huge = r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#;
    let r = post_mcp(&format!("{}/mcp", p.url), Some(&sid), huge);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains(r#""id":123456789012345678901234567890"#),
        "{text}"
    );
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- client mode ----

/// The proxy in client mode in front of the demo server's HTTP mode.
fn client(extra_remote: &[&str], transport: &str) -> (Proc, Proc) {
    let mut args = vec!["--http", "0"];
    args.extend_from_slice(extra_remote);
    let mut remote = Proc::spawn(demo_bin(), &args);
    let base = remote.listening_url();
    let url = if transport == "sse" {
        format!("{base}/sse")
    } else {
        format!("{base}/mcp")
    };
    let proxy = Proc::spawn(proxy_bin(), &["--transport", transport, &url]);
    (remote, proxy)
}

fn init_line(id: u64) -> String {
    INIT.replace("\"id\":1", &format!("\"id\":{id}"))
}

#[test]
fn client_mode_answers_each_malformed_line_and_keeps_serving() {
    let (_remote, mut p) = client(&[], "streamablehttp");
    p.send(&init_line(1));
    let r = p.recv_response(&json!(1));
    assert!(r.get("result").is_some(), "{r}");
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    // (line, the error code it must get, the id it must carry)
    let cases: &[(&str, &str, i64, Value)] = &[
        ("not JSON", "hello", -32700, Value::Null),
        (
            "truncated",
            r#"{"jsonrpc":"2.0","id":5,"meth"#,
            -32700,
            Value::Null,
        ),
        (
            "NUL byte",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"p\0\"}",
            -32700,
            Value::Null,
        ),
        (
            "id null",
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            -32600,
            Value::Null,
        ),
        (
            "id an object",
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            -32600,
            Value::Null,
        ),
        (
            "no jsonrpc",
            r#"{"id":6,"method":"ping"}"#,
            -32600,
            json!(6),
        ),
        (
            "jsonrpc 1.0",
            r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
            -32600,
            json!(7),
        ),
        (
            "result and error",
            r#"{"jsonrpc":"2.0","id":8,"result":{},"error":{"code":1,"message":"m"}}"#,
            -32600,
            json!(8),
        ),
        ("empty batch", "[]", -32600, Value::Null),
        ("a number", "42", -32600, Value::Null),
    ];
    for (i, (name, line, code, id)) in cases.iter().enumerate() {
        p.send(line);
        let v = p.recv();
        assert_eq!(v["error"]["code"], *code, "{name}: {v}");
        if id.is_null() {
            assert!(v.get("id").is_none(), "{name}: no id on stdio (§9.3): {v}");
        } else {
            assert_eq!(v["id"], *id, "{name}: {v}");
        }
        let ok = 100 + i as u64;
        p.send(&format!(r#"{{"jsonrpc":"2.0","id":{ok},"method":"ping"}}"#));
        let r = p.recv_response(&json!(ok));
        assert!(r.get("result").is_some(), "after '{name}': {r}");
    }
    // 100k nested arrays and invalid UTF-8: a parse error, no crash.
    let mut deep = vec![b'['; 100_000];
    deep.push(b'\n');
    p.send(std::str::from_utf8(&deep).unwrap().trim_end());
    assert_eq!(p.recv()["error"]["code"], -32700);
    p.send(r#"{"jsonrpc":"2.0","id":200,"method":"ping"}"#);
    assert!(p.recv_response(&json!(200)).get("result").is_some());
}

#[test]
fn header_values_with_line_breaks_are_refused_at_parse_time() {
    for v in ["a\r\nInjected: 1", "a\nb", "a\rb"] {
        let mut p = Proc::spawn(proxy_bin(), &["-H", "X-Test", v, "http://127.0.0.1:9/mcp"]);
        assert_eq!(p.wait_exit(WAIT), Some(2), "{v:?}");
        p.wait_stderr("--headers", WAIT);
    }
}

#[test]
fn an_endpoint_event_pointing_at_another_origin_is_refused() {
    let (_remote, mut p) = client(&["--endpoint", "http://evil.example:1/messages"], "sse");
    p.send(&init_line(1));
    let r = p.recv_response(&json!(1));
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("an error: {r}"));
    assert!(msg.contains("origin") || msg.contains("endpoint"), "{msg}");
    assert!(!p.stderr().is_empty());
}

/// A remote whose SSE reply never sends a newline: the proxy must not buffer
/// it without bound, and the request gets an error.
#[test]
fn an_sse_reply_without_newlines_fails_the_request_with_bounded_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = s.read(&mut buf);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: s1\r\n\r\ndata: ";
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                // 64 MiB at most, far over the proxy's limit below.
                for _ in 0..1024 {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
                thread::sleep(Duration::from_secs(30));
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut p = Proc::spawn(
        proxy_bin(),
        &[
            "--transport",
            "streamablehttp",
            "--max-message-size",
            "1000000",
            &url,
        ],
    );
    p.send(&init_line(1));
    let r = p.recv_response(&json!(1));
    assert!(r.get("error").is_some(), "{r}");
    // Its memory stayed bounded (the stream was 64 MiB).
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kb < 48 * 1024, "peak RSS {rss_kb} kB");
}
