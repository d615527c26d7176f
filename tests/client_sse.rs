//! Client mode over HTTP+SSE (TRANSPORTS §3, RL-08) and `--transport auto`
//! (SH-71): the real proxy binary against the demo server's HTTP mode, and
//! against a hand-written SSE server for the framing edge cases.

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// HS-03..05: endpoint event, POSTs there, every `message` event to
/// stdout; progress, server requests and the local answers, notifications.
#[test]
fn sse_round_trip_with_progress_server_requests_and_notifications() {
    let remote = FakeRemote::start(&["--transport", "sse"]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    let init = handshake(&mut p, "2024-11-05");
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(result_text(&echo(&mut p, json!(1), "hi")), "hi");

    p.send_json(&request(
        json!("p"),
        "tools/call",
        json!({"name": "progress", "arguments": {"steps": 2, "ms": 5}, "_meta": {"progressToken": 5}}),
    ));
    let (r, before) = p.recv_until("progress result", |v| v["id"] == "p");
    assert_eq!(result_text(&r), "2 steps done");
    assert_eq!(
        before
            .iter()
            .filter(|v| v["method"] == "notifications/progress")
            .count(),
        2
    );

    p.send_json(&call_tool(json!(2), "sample", json!({"prompt": "q"})));
    let (req, _) = p.recv_until("sampling request", |v| {
        v["method"] == "sampling/createMessage"
    });
    p.send_json(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "pong"}, "model": "m"}}));
    assert_eq!(result_text(&p.recv_response(&json!(2))), "sampled: pong");

    p.send_json(&call_tool(json!(3), "list_changed", json!({})));
    p.recv_until("list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });

    let log = remote.requests();
    let get = log.iter().find(|r| r["method"] == "GET").expect("a GET");
    assert!(req_header(get, "accept")
        .unwrap_or("")
        .contains("text/event-stream"));
    assert!(log
        .iter()
        .filter(|r| r["method"] == "POST")
        .all(|r| r["path"] == "/messages"));
}

/// SH-71: one URL, the local client's own initialize decides. HTTP+SSE
/// server: POST gets 405, then GET the same URL; Streamable server: no GET
/// of /sse at all.
#[test]
fn auto_detects_http_sse_and_streamable() {
    for transport in ["sse", "both"] {
        let remote = FakeRemote::start(&["--transport", transport]);
        let mut p = proxy(&[&remote.sse()]);
        handshake(&mut p, "2025-03-26");
        assert_eq!(result_text(&echo(&mut p, json!(1), "via sse")), "via sse");
        let log = remote.requests();
        let seq: Vec<(String, String)> = log
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_owned(),
                    r["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(seq[0], ("POST".into(), "/sse".into()), "{seq:?}");
        assert_eq!(seq[1], ("GET".into(), "/sse".into()), "{seq:?}");
        assert_eq!(seq[2], ("POST".into(), "/messages".into()), "{seq:?}");
        // The initialize went out once on the SSE session: the probe POST
        // created nothing.
        let whoami = {
            p.send_json(&call_tool(json!(2), "whoami", json!({})));
            let r = p.recv_response(&json!(2));
            serde_json::from_str::<Value>(&result_text(&r)).unwrap()
        };
        assert_eq!(whoami["initializeCount"], 1);
    }

    let remote = FakeRemote::start(&["--transport", "both"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "via mcp")), "via mcp");
    assert!(remote.requests().iter().all(|r| r["path"] == "/mcp"));
}

/// The endpoint may be relative or absolute; both resolve against the
/// stream URL.
#[test]
fn relative_and_absolute_endpoints_are_followed() {
    let remote = FakeRemote::start(&["--transport", "sse", "--endpoint", "messages"]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    handshake(&mut p, "2024-11-05");
    assert_eq!(result_text(&echo(&mut p, json!(1), "rel")), "rel");
    drop(p);

    let port = remote.port;
    let (_, _) = remote.stop();
    let abs = format!("http://127.0.0.1:{port}/messages");
    let remote = FakeRemote::start_on(port, &["--transport", "sse", "--endpoint", &abs]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    handshake(&mut p, "2024-11-05");
    assert_eq!(result_text(&echo(&mut p, json!(1), "abs")), "abs");
}

/// An endpoint on another origin is refused with a clear error (the SDK
/// clients do the same): the request gets an error naming the reason.
#[test]
fn cross_origin_endpoint_is_refused() {
    let remote = FakeRemote::start(&[
        "--transport",
        "sse",
        "--endpoint",
        "http://127.0.0.2:9/messages",
    ]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    p.send_json(&initialize(json!(0), "2024-11-05"));
    let r = p.recv_response(&json!(0));
    let msg = r["error"]["message"].as_str().expect("an error");
    assert!(msg.contains("another origin"), "{msg}");
    assert!(msg.contains(&remote.sse()), "names the URL: {msg}");
    p.wait_stderr("another origin", WAIT);
    assert!(
        !remote.requests().iter().any(|r| r["method"] == "POST"),
        "nothing was sent anywhere"
    );
}

/// A hand-written HTTP+SSE server: CRLF line ends, comments, multi-line
/// `data:`, events dribbled out a few bytes per write (splitting UTF-8
/// sequences across reads).
struct RawSse {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn read_head(s: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn dribble(w: &mut TcpStream, bytes: &[u8]) {
    for chunk in bytes.chunks(7) {
        if w.write_all(chunk).and_then(|_| w.flush()).is_err() {
            return;
        }
        // Separate TCP segments, so the proxy sees separate reads.
        thread::sleep(Duration::from_millis(1));
    }
}

impl RawSse {
    fn start() -> RawSse {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stream: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let h2 = heads.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (heads, stream) = (h2.clone(), stream.clone());
                thread::spawn(move || {
                    let mut w = conn.try_clone().unwrap();
                    let mut r = BufReader::new(conn);
                    while let Some((head, body)) = read_head(&mut r) {
                        heads.lock().unwrap().push(head.clone());
                        if head.starts_with("GET /sse") {
                            let mut s = stream.lock().unwrap();
                            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").unwrap();
                            dribble(
                                &mut w,
                                b": hello\r\n\r\nevent: endpoint\r\ndata: /messages?sid=1\r\n\r\n",
                            );
                            *s = w.try_clone().ok();
                            continue;
                        }
                        w.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        let msg: Value = serde_json::from_slice(&body).unwrap();
                        let Some(id) = msg.get("id").filter(|_| msg.get("method").is_some()) else {
                            continue;
                        };
                        let result = if msg["method"] == "initialize" {
                            r#""result":{"protocolVersion":"2024-11-05","capabilities":{},"serverInfo":{"name":"raw","version":"1"}}"#.to_owned()
                        } else {
                            "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a\u{2028}b ✓ 𝄞\"}]}".to_owned()
                        };
                        let event = format!(
                            ": keepalive\r\nevent: message\r\ndata: {{\"jsonrpc\":\"2.0\",\r\ndata: \"id\":{id},\r\ndata: {result}}}\r\n\r\n"
                        );
                        let mut s = stream.lock().unwrap();
                        dribble(s.as_mut().expect("stream open"), event.as_bytes());
                    }
                });
            }
        });
        RawSse { url, heads }
    }
}

#[test]
fn sse_framing_crlf_multiline_comments_and_split_reads() {
    let raw = RawSse::start();
    let mut p = proxy(&["--transport", "sse", &format!("{}/sse", raw.url)]);
    p.send_json(&initialize(json!("init"), "2024-11-05"));
    let r = p.recv_response(&json!("init"));
    assert_eq!(r["result"]["serverInfo"]["name"], "raw");
    p.send_json(&notification("notifications/initialized", json!({})));
    p.send_json(&call_tool(json!(1), "anything", json!({})));
    let r = p.recv_response(&json!(1));
    assert_eq!(result_text(&r), "a\u{2028}b ✓ 𝄞");
    let heads = raw.heads.lock().unwrap().clone();
    let get = heads.iter().find(|h| h.starts_with("GET")).unwrap();
    assert!(
        get.to_ascii_lowercase()
            .contains("accept: text/event-stream"),
        "{get}"
    );
    assert!(heads
        .iter()
        .filter(|h| h.starts_with("POST"))
        .all(|h| h.starts_with("POST /messages?sid=1 ")));
}
