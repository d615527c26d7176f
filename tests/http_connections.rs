//! The HTTP layer under load: a burst of keep-alive connections that all
//! stay open must all be served (vendor/tiny_http/PATCHED.md: tiny_http's
//! pool left some of them unread until another connection closed, and here
//! none ever closes, so a starved one would never be answered).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::channel;
use std::thread;

const CONNECTIONS: usize = 40;

#[test]
fn a_burst_of_keep_alive_connections_is_served_while_all_stay_open() {
    let mut proxy = Proc::spawn(proxy_bin(), &["--port", "0", "--", demo_bin()]);
    let url = proxy.listening_url();
    let addr = url.trim_start_matches("http://").to_owned();
    let body = initialize(serde_json::json!(1), "2025-06-18").to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Connect all first, then send on all at once: the burst the pool raced on.
    let socks: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let (tx, rx) = channel();
    let mut keep = Vec::new();
    for (i, mut s) in socks.into_iter().enumerate() {
        s.write_all(request.as_bytes()).expect("send");
        keep.push(s.try_clone().expect("clone"));
        let tx = tx.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(s);
            let mut status = String::new();
            let _ = r.read_line(&mut status);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut b = vec![0; len];
            let _ = r.read_exact(&mut b);
            let _ = tx.send((i, status.trim().to_owned()));
            // Keep the connection open: the reader thread holds the socket.
            thread::park();
        });
    }
    drop(tx);
    let mut answered = [false; CONNECTIONS];
    for _ in 0..CONNECTIONS {
        let (i, status) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let missing: Vec<usize> = (0..CONNECTIONS).filter(|&i| !answered[i]).collect();
            panic!("connections {missing:?} got no response while all {CONNECTIONS} stayed open")
        });
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "connection {i}: {status}"
        );
        answered[i] = true;
    }
    drop(keep);
}

/// SH-15: after the response, the server SHOULD end a POST's SSE stream.
/// It used to stay open until the client gave up (curl waited forever).
#[test]
fn a_post_sse_stream_ends_after_its_response() {
    let mut proxy = Proc::spawn(proxy_bin(), &["--port", "0", "--", demo_bin()]);
    let url = format!("{}/mcp", proxy.listening_url());
    let init = initialize(serde_json::json!(1), "2025-06-18").to_string();
    let accept = ("Accept", "application/json, text/event-stream");
    let ctype = ("Content-Type", "application/json");
    let r = http("POST", &url, &[accept, ctype], Some(&init));
    let sid = r.header("mcp-session-id").expect("a session id").to_owned();
    let call = request(
        serde_json::json!(2),
        "tools/call",
        serde_json::json!({"name": "progress", "arguments": {"steps": 2, "ms": 5}, "_meta": {"progressToken": "t"}}),
    )
    .to_string();
    let h = [
        accept,
        ctype,
        ("Mcp-Session-Id", sid.as_str()),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    let s = SseStream::open("POST", &url, &h, Some(&call));
    assert!(s
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let mut got = Vec::new();
    loop {
        let v = s.next_json();
        let done = v.get("id").is_some();
        got.push(v);
        if done {
            break;
        }
    }
    assert_eq!(
        got.len(),
        3,
        "two progress notifications, then the response: {got:?}"
    );
    assert!(
        s.next(WAIT).is_none(),
        "the stream must end after the response"
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body off `r`.
fn read_response(r: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).expect("header line") == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("a number");
        }
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b).expect("body");
    (
        status.trim().to_owned(),
        String::from_utf8(b).expect("UTF-8"),
    )
}

/// The request head is read line by line out of the connection's buffer
/// (vendor/tiny_http/PATCHED.md): lines split anywhere, even between their
/// CR and LF, and a second request already buffered behind the first one's
/// body must all parse as if they had come in one piece.
#[test]
fn request_heads_split_anywhere_or_pipelined_parse_the_same() {
    let mut proxy = Proc::spawn(proxy_bin(), &["--port", "0", "--", demo_bin()]);
    let url = proxy.listening_url();
    let addr = url.trim_start_matches("http://").to_owned();
    let body = initialize(serde_json::json!(7), "2025-06-18").to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let pieces = [
        "POST /mcp HTTP/1.1\r".to_owned(),
        format!("\nHost: {addr}\r\nContent-Type: application/json\r"),
        "\n".to_owned(),
        "Accept: application/json, text/event-stream\r\nContent-Len".to_owned(),
        format!(
            "gth: {}\r\n\r\n{body}GET /status HTTP/1.1\r\nHost: {addr}\r\n\r\n",
            body.len()
        ),
    ];
    for p in pieces {
        s.write_all(p.as_bytes()).expect("send");
        // Give the proxy a chance to read each piece on its own.
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut r = BufReader::new(s);
    let (status, body) = read_response(&mut r);
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "initialize: {status} {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["id"], 7, "initialize answered: {body}");
    assert!(
        v["result"]["serverInfo"].is_object(),
        "initialize answered: {body}"
    );
    let (status, body) = read_response(&mut r);
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "/status: {status} {body}"
    );
    assert!(body.contains("\"api_last_activity\""), "/status: {body}");
}
