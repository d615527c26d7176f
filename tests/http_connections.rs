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
