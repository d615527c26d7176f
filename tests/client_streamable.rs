//! Client mode over Streamable HTTP (TRANSPORTS §4, RL-07): the real proxy
//! binary on stdio, the demo server's HTTP mode as the remote.

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};

fn posts(remote: &FakeRemote) -> Vec<Value> {
    remote
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/mcp")
        .collect()
}

/// SH-11, SH-14, SH-13, SH-50/51, SH-60: JSON reply, SSE reply with
/// notifications before the response, 202, session id and negotiated
/// protocol version on every later request.
#[test]
fn json_sse_and_202_replies_with_session_and_version_headers() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&["--transport", "streamablehttp", &remote.mcp()]);
    // Ask for a version the server does not know: the negotiated one (from
    // the result) is what later requests must carry.
    let init = handshake(&mut p, "2099-01-01");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let r = echo(&mut p, json!(1), "hello");
    assert_eq!(result_text(&r), "hello");

    p.send_json(&request(
        json!("p"),
        "tools/call",
        json!({"name": "progress", "arguments": {"steps": 3, "ms": 5}, "_meta": {"progressToken": "tok"}}),
    ));
    let (resp, before) = p.recv_until("progress result", |v| v["id"] == "p");
    assert_eq!(result_text(&resp), "3 steps done");
    let progress: Vec<_> = before
        .iter()
        .filter(|v| v["method"] == "notifications/progress")
        .map(|v| v["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(progress, vec![1, 2, 3], "progress before the response");

    let posts = posts(&remote);
    assert!(posts.len() >= 4, "{posts:?}");
    for r in &posts {
        let accept = req_header(r, "accept").unwrap_or("");
        assert!(
            accept.contains("application/json") && accept.contains("text/event-stream"),
            "{r}"
        );
        assert!(req_header(r, "content-type")
            .unwrap_or("")
            .starts_with("application/json"));
    }
    assert_eq!(req_header(&posts[0], "mcp-session-id"), None, "initialize");
    assert_eq!(req_header(&posts[0], "mcp-protocol-version"), None);
    let sid = req_header(&posts[1], "mcp-session-id").expect("session id after initialize");
    for r in &posts[1..] {
        assert_eq!(req_header(r, "mcp-session-id"), Some(sid), "{r}");
        assert_eq!(req_header(r, "mcp-protocol-version"), Some("2025-11-25"));
    }
}

/// Server-to-client requests on a reply stream, answered by the local
/// client, and the answers reach the server (sampling, elicitation, roots).
#[test]
fn server_requests_and_local_answers_pass_both_ways() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    for (tool, method, answer) in [
        (
            "sample",
            "sampling/createMessage",
            json!({"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "m"}),
        ),
        (
            "elicit",
            "elicitation/create",
            json!({"action": "accept", "content": {"name": "Ada"}}),
        ),
        (
            "roots",
            "roots/list",
            json!({"roots": [{"uri": "file:///w", "name": "w"}]}),
        ),
    ] {
        let id = json!(format!("call-{tool}"));
        p.send_json(&call_tool(
            id.clone(),
            tool,
            json!({"prompt": "q", "message": "who?"}),
        ));
        let (req, _) = p.recv_until(method, |v| v["method"] == method);
        let sid = req["id"].clone();
        assert!(sid.is_string() || sid.is_number(), "{req}");
        p.send_json(&json!({"jsonrpc": "2.0", "id": sid, "result": answer}));
        let r = p.recv_response(&id);
        let text = result_text(&r);
        assert!(
            text.contains("forty-two") || text.contains("Ada") || text.contains("file:///w"),
            "{tool}: {text}"
        );
    }
}

/// SH-20..23: the GET stream carries unrelated notifications; 405 means
/// there is none and 409 is not fatal: requests keep working either way.
#[test]
fn get_stream_carries_unrelated_notifications_and_405_409_are_not_fatal() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    p.send_json(&call_tool(json!(1), "list_changed", json!({})));
    let (n, _) = p.recv_until("list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    assert!(n.get("id").is_none());
    assert!(remote
        .requests()
        .iter()
        .any(|r| r["method"] == "GET" && r["path"] == "/mcp"));

    for flag in ["--no-get", "--get-409"] {
        let remote = FakeRemote::start(&["--transport", "streamable", flag]);
        let mut p = proxy(&[&remote.mcp()]);
        handshake(&mut p, "2025-06-18");
        // The GET has been answered by the time a later request is.
        let r = echo(&mut p, json!(1), "a");
        assert_eq!(result_text(&r), "a", "{flag}");
        let r = echo(&mut p, json!(2), "b");
        assert_eq!(result_text(&r), "b", "{flag}");
    }
}

/// JR-11: ids exactly as sent (string vs number, big integers), unicode
/// including U+2028/U+2029 untouched.
#[test]
fn ids_and_unicode_pass_through_unchanged() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    let text = "line\u{2028}sep\u{2029}para — ✓ 𝄞 \"quoted\" \\ \u{0}";
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{}}}}}}}"#,
        serde_json::to_string(text).unwrap()
    ));
    let line = p.recv_line(WAIT).expect("a reply");
    assert!(
        line.contains(r#""id":123456789012345678901234567890"#),
        "big id kept exactly: {line}"
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(result_text(&v), text);
    assert!(line.contains('\u{2028}') || line.contains("\\u2028"));

    for id in [json!("7"), json!(7), json!("ünï\u{2028}"), json!(-1)] {
        let r = echo(&mut p, id.clone(), "x");
        assert_eq!(r["id"], id);
    }
}

/// 16 MiB in both directions, as a JSON reply and as an SSE reply (whose
/// event arrives split across many reads).
#[test]
fn sixteen_mib_messages_pass_both_ways() {
    const SIZE: usize = 16 << 20;
    for reply in ["json", "sse"] {
        let remote = FakeRemote::start(&["--transport", "streamable", "--reply", reply]);
        let mut p = proxy(&[&remote.mcp()]);
        handshake(&mut p, "2025-06-18");
        let big = "é".repeat(SIZE / 2);
        p.send_json(&call_tool(json!(1), "echo", json!({ "text": big })));
        let r = response_within(&mut p, &json!(1), HEAVY_WAIT);
        assert_eq!(result_text(&r).len(), SIZE, "{reply}");
        p.send_json(&call_tool(json!(2), "big", json!({"bytes": SIZE})));
        let r = response_within(&mut p, &json!(2), HEAVY_WAIT);
        assert_eq!(result_text(&r).len(), SIZE, "{reply}");
    }
}

/// A slow tool call never delays another request: with 20 slow calls in
/// flight a quick request sent last is answered first, and the slow ones
/// come back as they finish, not in the order they were sent.
#[test]
fn twenty_parallel_slow_calls_finish_out_of_order() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    for i in 0..20u64 {
        // The first sent sleeps longest.
        p.send_json(&call_tool(
            json!(i),
            "slow",
            json!({"ms": 1000 + (20 - i) * 50}),
        ));
    }
    p.send_json(&call_tool(json!("quick"), "echo", json!({"text": "now"})));
    let mut order = Vec::new();
    while order.len() < 21 {
        let v = recv_within(&mut p, HEAVY_WAIT);
        assert!(v.get("result").is_some(), "{v}");
        order.push(v["id"].clone());
    }
    assert_eq!(order[0], json!("quick"), "{order:?}");
    let mut slow: Vec<u64> = order[1..].iter().map(|v| v.as_u64().unwrap()).collect();
    assert_ne!(slow, (0..20).collect::<Vec<_>>(), "replies were serialised");
    slow.sort();
    assert_eq!(slow, (0..20).collect::<Vec<_>>(), "each answered once");
}

/// SH-55: stdin EOF sends DELETE with the session id, then exit 0.
#[test]
fn stdin_eof_deletes_the_session_and_exits_0() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    echo(&mut p, json!(1), "x");
    p.close_stdin();
    assert_eq!(p.wait_exit(WAIT), Some(0));
    let log = remote.requests();
    let sid = req_header(&log[1], "mcp-session-id").unwrap().to_owned();
    assert!(
        log.iter()
            .any(|r| r["method"] == "DELETE" && req_header(r, "mcp-session-id") == Some(&sid)),
        "{log:?}"
    );
}

/// SIGTERM ends the session the same way and exits 128+15.
#[test]
fn sigterm_deletes_the_session_and_exits_143() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    echo(&mut p, json!(1), "x");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(WAIT), Some(143));
    assert!(remote.requests().iter().any(|r| r["method"] == "DELETE"));
}

/// SH-41/42: a reply stream that breaks is resumed with GET +
/// Last-Event-ID, and the rest of the reply arrives.
#[test]
fn broken_reply_stream_resumes_with_last_event_id() {
    let remote = FakeRemote::start(&["--transport", "streamable", "--no-get"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-11-25");
    p.send_json(&request(
        json!(9),
        "tools/call",
        json!({"name": "progress", "arguments": {"steps": 4, "ms": 300}, "_meta": {"progressToken": 1}}),
    ));
    let (first, _) = p.recv_until("first progress", |v| {
        v["method"] == "notifications/progress"
    });
    assert_eq!(first["params"]["progress"], 1);
    remote.admin("drop", "");
    let (resp, before) = p.recv_until("the response", |v| v["id"] == 9);
    assert_eq!(result_text(&resp), "4 steps done");
    let steps: Vec<_> = before
        .iter()
        .map(|v| v["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![2, 3, 4], "nothing lost, nothing twice");
    assert!(
        remote
            .requests()
            .iter()
            .any(|r| r["method"] == "GET" && req_header(r, "last-event-id").is_some()),
        "resumed with Last-Event-ID"
    );
}

/// A dropped GET stream is reopened (with Last-Event-ID) and keeps
/// delivering server-initiated messages.
#[test]
fn dropped_get_stream_is_reopened() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    p.send_json(&call_tool(json!(1), "list_changed", json!({})));
    p.recv_until("list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    remote.admin("drop", "");
    p.send_json(&call_tool(json!(2), "touch", json!({"uri": "demo://x"})));
    let (n, _) = p.recv_until("resources/updated", |v| {
        v["method"] == "notifications/resources/updated"
    });
    assert_eq!(n["params"]["uri"], "demo://x");
    let gets = remote
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "GET")
        .count();
    assert!(gets >= 2, "the GET stream was reopened");
}
