//! Client mode speaking MCP 2026-07-28 ("modern", stateless) to a Streamable
//! HTTP remote (topology B, TRANSPORTS §5, RL-06 B, RL-10): the real proxy
//! on stdio, the demo server's strict modern side as the remote. Each test
//! checks what the remote saw (its request log) or what the local client
//! reads on stdout.

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MODERN: &str = "2026-07-28";

/// A modern request: `_meta` carries the version, capabilities and client.
fn modern(id: Value, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"}
    });
    request(id, method, params)
}

fn modern_call(id: Value, tool: &str, args: Value) -> Value {
    modern(id, "tools/call", json!({"name": tool, "arguments": args}))
}

fn cancel(id: Value) -> Value {
    notification("notifications/cancelled", json!({"requestId": id}))
}

/// The remote's log of POSTs to /mcp whose `Mcp-Method` is `method`.
fn posts_of(remote: &FakeRemote, method: &str) -> Vec<Value> {
    remote
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && req_header(r, "mcp-method") == Some(method))
        .collect()
}

/// Waits until `/admin/modern-closed` names `id`: the remote saw the
/// client close that request's connection before its response (SX-10).
fn wait_closed(remote: &FakeRemote, id: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = format!("{}/admin/modern-closed", remote.base);
        let closed = http("GET", &url, &[], None).json();
        if closed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str() == Some(id))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the remote never saw request {id} closed; closed: {closed}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start() -> (FakeRemote, Proc) {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let p = proxy(&[&remote.mcp()]);
    (remote, p)
}

/// SX-03, SX-20, SX-24, SX-25, RL-10: every modern request is a POST of
/// its own with no session and no Last-Event-ID, both Accept types, and the
/// request-metadata headers, values base64-wrapped where SX-25 says.
#[test]
fn sx20_sx24_sx25_each_request_carries_its_metadata_headers_and_no_session() {
    let (remote, mut p) = start();
    p.send_json(&modern(json!(1), "tools/list", json!({})));
    assert!(p.recv_response(&json!(1))["result"]["tools"].is_array());
    p.send_json(&modern_call(json!("c"), "echo", json!({"text": "hi"})));
    assert_eq!(result_text(&p.recv_response(&json!("c"))), "hi");
    p.send_json(&modern(
        json!(3),
        "resources/read",
        json!({"uri": "demo://ünï"}),
    ));
    let r = p.recv_response(&json!(3));
    assert_eq!(r["result"]["contents"][0]["uri"], "demo://ünï", "{r}");
    p.send_json(&modern(
        json!(4),
        "prompts/get",
        json!({"name": " greet", "arguments": {}}),
    ));
    p.recv_response(&json!(4));

    let posts: Vec<Value> = remote
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/mcp")
        .collect();
    assert_eq!(
        posts.len(),
        4,
        "one POST per request, nothing else: {posts:?}"
    );
    for r in &posts {
        assert_eq!(r["method"], "POST");
        assert_eq!(req_header(r, "mcp-session-id"), None, "{r}");
        assert_eq!(req_header(r, "last-event-id"), None, "{r}");
        assert_eq!(req_header(r, "mcp-protocol-version"), Some(MODERN), "{r}");
        let accept = req_header(r, "accept").unwrap_or("");
        assert!(
            accept.contains("application/json") && accept.contains("text/event-stream"),
            "{r}"
        );
    }
    let h = |i: usize, k: &str| req_header(&posts[i], k).map(str::to_owned);
    assert_eq!(h(0, "mcp-method").as_deref(), Some("tools/list"));
    assert_eq!(h(0, "mcp-name"), None, "tools/list has no Mcp-Name");
    assert_eq!(h(1, "mcp-method").as_deref(), Some("tools/call"));
    assert_eq!(h(1, "mcp-name").as_deref(), Some("echo"));
    // Non-ASCII and a leading space are sent base64-wrapped (SX-25).
    assert_eq!(
        h(2, "mcp-name").as_deref(),
        Some("=?base64?ZGVtbzovL8O8bsOv?=")
    );
    assert_eq!(h(3, "mcp-name").as_deref(), Some("=?base64?IGdyZWV0?="));
}

/// SX-26: tools with an invalid `x-mcp-header` are dropped from the
/// `tools/list` the client reads, with a warning naming tool and rule; the
/// annotated arguments of a call are mirrored as typed `Mcp-Param-*`
/// headers, and a null one is left out.
#[test]
fn sx26_annotated_params_are_mirrored_and_invalid_tools_dropped() {
    let (remote, mut p) = start();
    p.send_json(&modern(json!(1), "tools/list", json!({})));
    let r = p.recv_response(&json!(1));
    let names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mirror") && names.contains(&"echo"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"bad_header"),
        "invalid tool kept: {names:?}"
    );
    let warning = p.wait_stderr("bad_header", WAIT);
    assert!(
        warning.contains("not of type string, integer or boolean"),
        "{warning}"
    );

    let args = json!({"region": " eu-west", "count": 7, "flag": true, "note": "n"});
    p.send_json(&modern_call(json!(2), "mirror", args.clone()));
    let r = p.recv_response(&json!(2));
    assert!(
        r.get("result").is_some(),
        "the remote refused the headers: {r}"
    );
    p.send_json(&modern_call(
        json!(3),
        "mirror",
        json!({"region": null, "count": 0, "flag": false}),
    ));
    let r = p.recv_response(&json!(3));
    assert!(r.get("result").is_some(), "{r}");

    let calls = posts_of(&remote, "tools/call");
    assert_eq!(calls.len(), 2, "no retry was needed: {calls:?}");
    assert_eq!(
        req_header(&calls[0], "mcp-param-region"),
        Some("=?base64?IGV1LXdlc3Q=?=")
    );
    assert_eq!(req_header(&calls[0], "mcp-param-count"), Some("7"));
    assert_eq!(req_header(&calls[0], "mcp-param-flag"), Some("true"));
    assert_eq!(
        req_header(&calls[1], "mcp-param-region"),
        None,
        "null: no header"
    );
    assert_eq!(req_header(&calls[1], "mcp-param-count"), Some("0"));
    assert_eq!(req_header(&calls[1], "mcp-param-flag"), Some("false"));
}

/// SX-26: a stale schema (the remote renamed a header) gets 400 -32020;
/// the proxy fetches tools/list again, out of sight, and sends the call
/// once more with the new header. The client reads one reply, its own.
#[test]
fn sx26_header_mismatch_refetches_the_tools_and_retries_once() {
    let (remote, mut p) = start();
    p.send_json(&modern(json!(1), "tools/list", json!({})));
    p.recv_response(&json!(1));
    remote.admin("header-rename", "");
    p.send_json(&modern_call(json!("m"), "mirror", json!({"region": "eu"})));
    let r = p.recv();
    assert_eq!(r["id"], "m", "the first line is the call's reply: {r}");
    assert!(r.get("result").is_some(), "{r}");

    let calls = posts_of(&remote, "tools/call");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(req_header(&calls[0], "mcp-param-region"), Some("eu"));
    assert_eq!(req_header(&calls[1], "mcp-param-zone"), Some("eu"));
    assert_eq!(req_header(&calls[1], "mcp-param-region"), None);
    assert_eq!(posts_of(&remote, "tools/list").len(), 2, "one re-fetch");

    // Nothing else reached stdout (no stray tools/list result).
    p.send_json(&modern(json!("after"), "tools/list", json!({})));
    assert_eq!(p.recv()["id"], "after");
}

/// SX-26 retries once only: a mismatch the re-fetch cannot fix (an object
/// where the schema says string, which has no header form) is relayed to
/// the client as the remote's -32020 error, with the client's id.
#[test]
fn sx20_a_second_header_mismatch_is_relayed_with_the_client_id() {
    let (remote, mut p) = start();
    p.send_json(&modern_call(
        json!(9),
        "mirror",
        json!({"region": {"x": 1}}),
    ));
    let r = p.recv();
    assert_eq!(r["id"], 9, "{r}");
    assert_eq!(r["error"]["code"], -32020, "{r}");
    assert_eq!(posts_of(&remote, "tools/call").len(), 2);
    assert_eq!(posts_of(&remote, "tools/list").len(), 1);
}

/// SX-21, SX-22, §9.3: 4xx answers with a JSON-RPC body reach the client
/// as that error under its id; without one, an error naming the status.
#[test]
fn sx21_sx22_http_errors_become_errors_with_the_client_id() {
    let (remote, mut p) = start();
    let mut req = modern(json!("v"), "tools/list", json!({}));
    req["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    p.send_json(&req);
    let r = p.recv_response(&json!("v"));
    assert_eq!(r["error"]["code"], -32022, "{r}");
    assert_eq!(r["error"]["data"]["requested"], "2099-01-01", "{r}");
    let lists = posts_of(&remote, "tools/list");
    assert_eq!(
        req_header(&lists[0], "mcp-protocol-version"),
        Some("2099-01-01")
    );

    p.send_json(&modern(json!(2), "no/such/method", json!({})));
    let r = p.recv_response(&json!(2));
    assert_eq!(r["error"]["code"], -32601, "{r}");

    remote.admin("fail", "503");
    p.send_json(&modern(json!(3), "tools/list", json!({})));
    let r = p.recv_response(&json!(3));
    let msg = r["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("503"), "{r}");
}

/// SX-06, SX-07: an SSE reply's request-scoped notifications reach stdout
/// before the response, which ends the exchange.
#[test]
fn sx06_sse_reply_notifications_come_before_the_response() {
    let (_remote, mut p) = start();
    let mut req = modern_call(json!("p"), "progress", json!({"steps": 3, "ms": 5}));
    req["params"]["_meta"]["progressToken"] = json!("tok");
    p.send_json(&req);
    let (resp, before) = p.recv_until("progress result", |v| v["id"] == "p");
    assert_eq!(result_text(&resp), "3 steps done");
    let steps: Vec<u64> = before
        .iter()
        .filter(|v| v["method"] == "notifications/progress")
        .map(|v| v["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
}

/// SX-09: a broken reply stream loses the request. The client gets an
/// error naming the cause under its id, and the request is not sent again
/// under the same id.
#[test]
fn sx09_a_broken_stream_fails_the_request_and_is_not_resent() {
    let (remote, mut p) = start();
    remote.admin("break-modern", "");
    let mut req = modern_call(json!("b"), "progress", json!({"steps": 3, "ms": 50}));
    req["params"]["_meta"]["progressToken"] = json!(1);
    p.send_json(&req);
    let (r, _) = p.recv_until("the error", |v| v["id"] == "b");
    let msg = r["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("re-issue it with a new id"), "{r}");
    assert_eq!(posts_of(&remote, "tools/call").len(), 1);
}

/// LC-42, RL-06 (B), SX-10: a cancel on stdin closes the request's HTTP
/// exchange (the remote sees the close), is not POSTed, and nothing more
/// is written for that id. With and without `_meta` on the cancel.
#[test]
fn lc42_cancel_closes_the_exchange_and_is_not_posted() {
    let (remote, mut p) = start();
    p.send_json(&modern_call(json!("s1"), "slow", json!({"ms": 30000})));
    p.send_json(&modern_call(json!(5), "slow", json!({"ms": 30000})));
    // Both POSTs are out (the remote logs a request when it reads it).
    let deadline = Instant::now() + WAIT;
    while posts_of(&remote, "tools/call").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the remote"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send_json(&cancel(json!("s1")));
    let mut with_meta = modern(json!(0), "x", json!({}));
    with_meta["params"]["requestId"] = json!(5);
    p.send_json(&notification(
        "notifications/cancelled",
        with_meta["params"].clone(),
    ));
    wait_closed(&remote, "\"s1\"");
    wait_closed(&remote, "5");
    p.send_json(&modern(json!("next"), "tools/list", json!({})));
    let r = p.recv();
    assert_eq!(
        r["id"], "next",
        "nothing was written for the cancelled ids: {r}"
    );
    let all = remote.requests();
    assert!(
        !all.iter()
            .any(|r| req_header(r, "mcp-method").is_none() && r["path"] == "/mcp"),
        "a message without Mcp-Method (the cancel?) was POSTed: {all:?}"
    );
    assert_eq!(all.iter().filter(|r| r["path"] == "/mcp").count(), 3);
}

/// LC-80..LC-83: `subscriptions/listen` stays open; its notifications reach
/// stdout as they come, other requests run beside it, and a cancel on stdin
/// closes it.
#[test]
fn lc80_listen_relays_notifications_until_cancelled() {
    let (remote, mut p) = start();
    p.send_json(&modern(
        json!("sub"),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    ));
    let ack = p.recv();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub"
    );
    p.send_json(&modern_call(json!(1), "echo", json!({"text": "beside"})));
    assert_eq!(result_text(&p.recv_response(&json!(1))), "beside");
    for _ in 0..2 {
        remote.admin("list-changed", "");
        let n = p.recv();
        assert_eq!(n["method"], "notifications/tools/list_changed", "{n}");
        assert_eq!(
            n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "sub"
        );
    }
    p.send_json(&cancel(json!("sub")));
    wait_closed(&remote, "\"sub\"");
    p.send_json(&modern(json!("next"), "tools/list", json!({})));
    assert_eq!(p.recv()["id"], "next", "no reply for the cancelled listen");
}

/// Modern requests are independent POSTs: a quick one is answered while a
/// slow one is still running (no ordering behind it), and an id already in
/// flight is refused rather than sent.
#[test]
fn modern_requests_run_side_by_side_and_ids_in_flight_are_refused() {
    let (_remote, mut p) = start();
    p.send_json(&modern_call(json!("slow"), "slow", json!({"ms": 2000})));
    p.send_json(&modern_call(json!("slow"), "echo", json!({"text": "dup"})));
    let r = p.recv();
    assert_eq!(r["id"], "slow");
    assert_eq!(r["error"]["code"], -32600, "duplicate id refused: {r}");
    for i in 0..5 {
        p.send_json(&modern_call(json!(i), "echo", json!({"text": "quick"})));
    }
    for i in 0..5 {
        let r = p.recv();
        assert!(
            r["id"].is_number(),
            "a quick reply came after the slow one: {r}"
        );
        let _ = i;
    }
    assert_eq!(
        result_text(&p.recv_response(&json!("slow"))),
        "slept 2000 ms"
    );
}

/// Mixing eras (TRANSPORTS §0 dual-era rule): after a legacy initialize, a
/// modern request still goes stateless (no session id, its own version),
/// and the legacy session keeps working beside it.
#[test]
fn mixed_eras_modern_requests_stay_stateless_beside_a_legacy_session() {
    let (remote, mut p) = start();
    handshake(&mut p, "2025-11-25");
    p.send_json(&modern(json!("m"), "tools/list", json!({})));
    let r = p.recv_response(&json!("m"));
    assert!(r["result"]["tools"].is_array(), "{r}");
    assert_eq!(result_text(&echo(&mut p, json!("l"), "legacy")), "legacy");
    let all: Vec<Value> = remote
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/mcp")
        .collect();
    let m = all
        .iter()
        .find(|r| req_header(r, "mcp-method") == Some("tools/list"))
        .expect("the modern POST");
    assert_eq!(req_header(m, "mcp-session-id"), None, "{m}");
    assert_eq!(req_header(m, "mcp-protocol-version"), Some(MODERN));
    let legacy = all.last().unwrap();
    assert!(req_header(legacy, "mcp-session-id").is_some(), "{legacy}");
    assert_eq!(
        req_header(legacy, "mcp-protocol-version"),
        Some("2025-11-25")
    );
}

/// JR-09: batches are 2025-03-26 only. A modern request inside a batch on a
/// 2025-03-26 session gets its own error entry, and the batch's array is
/// still written (it does not wait forever for that member).
#[test]
fn jr09_a_modern_request_in_a_batch_gets_an_error_entry() {
    let (_remote, mut p) = start();
    handshake(&mut p, "2025-03-26");
    let batch = json!([
        call_tool(json!("a"), "echo", json!({"text": "one"})),
        modern(json!("b"), "tools/list", json!({})),
    ]);
    p.send_json(&batch);
    let line = p.recv();
    let arr = line
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {line}"));
    assert_eq!(arr.len(), 2, "{line}");
    let b = arr.iter().find(|r| r["id"] == "b").expect("an entry for b");
    assert_eq!(b["error"]["code"], -32600, "{b}");
    let a = arr.iter().find(|r| r["id"] == "a").expect("an entry for a");
    assert_eq!(result_text(a), "one");
}

/// LC-83, LC-42: the remote ends a listen stream. With a `complete` result
/// the client reads that response; with `notifications/cancelled` naming
/// the listen it reads the cancel and no error follows for the id.
#[test]
fn lc83_the_remote_ending_a_listen_is_relayed_and_nothing_follows() {
    let (remote, mut p) = start();
    for (id, how) in [("l1", "complete"), ("l2", "cancel")] {
        p.send_json(&modern(
            json!(id),
            "subscriptions/listen",
            json!({"notifications": {}}),
        ));
        assert_eq!(
            p.recv()["method"],
            "notifications/subscriptions/acknowledged"
        );
        remote.admin("end-listen", how);
        let end = p.recv();
        if how == "complete" {
            assert_eq!(end["id"], id, "{end}");
            assert_eq!(end["result"]["resultType"], "complete", "{end}");
        } else {
            assert_eq!(end["method"], "notifications/cancelled", "{end}");
            assert_eq!(end["params"]["requestId"], id, "{end}");
        }
    }
    p.send_json(&modern(json!("next"), "tools/list", json!({})));
    let r = p.recv();
    assert_eq!(r["id"], "next", "nothing more for the ended listens: {r}");
}

/// The other order of mixing eras: a modern request first (no transport
/// is probed for it), then a legacy `initialize`, which still finds the
/// transport and gets its session.
#[test]
fn mixed_eras_initialize_after_modern_requests_gets_a_session() {
    let (remote, mut p) = start();
    p.send_json(&modern(json!("m"), "tools/list", json!({})));
    p.recv_response(&json!("m"));
    let init = handshake(&mut p, "2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "legacy")), "legacy");
    let last = remote
        .requests()
        .into_iter()
        .rfind(|r| r["method"] == "POST" && r["path"] == "/mcp")
        .unwrap();
    assert!(req_header(&last, "mcp-session-id").is_some(), "{last}");
    assert_eq!(req_header(&last, "mcp-method"), None, "{last}");
}

/// The cursor of every 2026-07-28 `tools/list` the remote got, in order
/// (null where it had none).
fn list_cursors(remote: &FakeRemote) -> Vec<Value> {
    let url = format!("{}/admin/list-cursors", remote.base);
    match http("GET", &url, &[], None).json() {
        Value::Array(a) => a,
        other => panic!("list-cursors is not an array: {other}"),
    }
}

/// SX-26 with a paged `tools/list`: the tool whose header was renamed is
/// on a later page, so the re-fetch after -32020 follows `nextCursor` to
/// the last page, sending each cursor back as it came, before the call
/// goes again with the new header. The client reads only its own reply.
#[test]
fn sx26_the_refetch_reads_every_page_of_tools_list() {
    let (remote, mut p) = start();
    remote.admin("list-page-size", "2");
    // The client pages through the list itself: the proxy learns the
    // schemas, and the test the cursors the remote hands out.
    let mut cursors = vec![Value::Null];
    let mut names = Vec::new();
    loop {
        let id = json!(format!("page-{}", cursors.len()));
        let mut params = json!({});
        let last = cursors.last().expect("starts with one").clone();
        if !last.is_null() {
            params["cursor"] = last;
        }
        p.send_json(&modern(id.clone(), "tools/list", params));
        let r = p.recv_response(&id);
        let tools = r["result"]["tools"].as_array().expect("a tools page");
        names.extend(tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match &r["result"]["nextCursor"] {
            Value::Null => break,
            c => cursors.push(c.clone()),
        }
    }
    let at = names.iter().position(|n| n == "mirror").expect("mirror");
    assert!(at >= 2, "mirror is on the first page: {names:?}");

    remote.admin("header-rename", "");
    p.send_json(&modern_call(json!("m"), "mirror", json!({"region": "eu"})));
    let r = p.recv();
    assert_eq!(r["id"], "m", "the first line is the call's reply: {r}");
    assert!(
        r.get("result").is_some(),
        "the retry was refused: {r}\n{}",
        p.stderr()
    );
    let calls = posts_of(&remote, "tools/call");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(req_header(&calls[0], "mcp-param-region"), Some("eu"));
    assert_eq!(req_header(&calls[1], "mcp-param-zone"), Some("eu"));
    assert_eq!(req_header(&calls[1], "mcp-param-region"), None);
    // The client's listing, then the re-fetch: every page, in order.
    assert!(cursors.len() >= 2, "one page only: {cursors:?}");
    let want = [cursors.clone(), cursors].concat();
    assert_eq!(list_cursors(&remote), want);

    // Nothing else reached stdout (no stray page of the re-fetch).
    p.send_json(&modern(json!("after"), "tools/list", json!({})));
    assert_eq!(p.recv()["id"], "after");
}

/// LC-42 during a paged re-fetch: the client cancels the call while a
/// later page of the hidden `tools/list` is out. That page's exchange is
/// closed, no further page is asked for, the call is not sent again, and
/// nothing is written for its id.
#[test]
fn lc42_a_cancel_stops_the_pages_of_the_refetch() {
    let (remote, mut p) = start();
    remote.admin("list-page-size", "2");
    // Pages after the first are never answered.
    remote.admin("list-hold", "");
    // No schema is known yet, so the call lacks Mcp-Param-Region: -32020.
    p.send_json(&modern_call(json!("m"), "mirror", json!({"region": "eu"})));
    let deadline = Instant::now() + WAIT;
    while list_cursors(&remote).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the re-fetch never asked for page 2; cursors {:?}\n{}",
            list_cursors(&remote),
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send_json(&cancel(json!("m")));
    let deadline = Instant::now() + WAIT;
    loop {
        let url = format!("{}/admin/modern-closed", remote.base);
        let closed = http("GET", &url, &[], None).json();
        if closed.as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page in flight was never closed after the cancel\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send_json(&modern(json!("after"), "tools/list", json!({})));
    let r = p.recv();
    assert_eq!(
        r["id"], "after",
        "nothing was written for the cancelled call: {r}"
    );
    assert_eq!(
        posts_of(&remote, "tools/call").len(),
        1,
        "the call went again"
    );
    let cursors = list_cursors(&remote);
    assert_eq!(
        cursors.len(),
        3,
        "pages 1 and 2, then the client's: {cursors:?}"
    );
    assert!(
        cursors[1].is_string() && cursors[2].is_null(),
        "{cursors:?}"
    );
}

/// A page of the re-fetch that fails (HTTP 500) ends it: the call goes
/// again anyway, with what the earlier pages taught, and a warning names
/// the page. Here that is too little (mirror is on a later page), so the
/// client reads the remote's second -32020, under its own id.
#[test]
fn sx26_a_failed_page_ends_the_refetch_and_the_call_goes_again() {
    let (remote, mut p) = start();
    remote.admin("list-page-size", "2");
    remote.admin("list-fail", "500");
    p.send_json(&modern_call(json!("m"), "mirror", json!({"region": "eu"})));
    let r = p.recv();
    assert_eq!(r["id"], "m", "{r}");
    assert_eq!(r["error"]["code"], -32020, "{r}");
    assert_eq!(posts_of(&remote, "tools/call").len(), 2, "one retry");
    let cursors = list_cursors(&remote);
    assert_eq!(
        cursors.len(),
        2,
        "no page after the failed one: {cursors:?}"
    );
    let warning = p.wait_stderr("page 2 failed", WAIT);
    assert!(warning.contains("500"), "{warning}");
}

/// A remote whose `nextCursor` never ends (its last page leads back to the
/// first) gets at most 100 pages asked for; then a warning, and the call
/// goes again with what those pages taught, which here is enough.
#[test]
fn sx26_the_refetch_stops_after_100_pages() {
    let (remote, mut p) = start();
    remote.admin("list-page-size", "2");
    remote.admin("list-loop", "");
    p.send_json(&modern_call(json!("m"), "mirror", json!({"region": "eu"})));
    let r = p.recv();
    assert_eq!(r["id"], "m", "{r}");
    assert!(
        r.get("result").is_some(),
        "the retry was refused: {r}\n{}",
        p.stderr()
    );
    assert_eq!(list_cursors(&remote).len(), 100);
    let calls = posts_of(&remote, "tools/call");
    assert_eq!(req_header(&calls[1], "mcp-param-region"), Some("eu"));
    p.wait_stderr("still has pages after 100", WAIT);
}

/// Modern requests one after another reuse a kept-alive connection instead
/// of each paying a TCP (and TLS) handshake; a cancelled request's
/// connection is closed (the cancel, SX-10) and never used again.
#[test]
fn sequential_requests_reuse_a_connection_and_a_cancelled_one_is_not_reused() {
    let (remote, mut p) = start();
    for i in 0..3 {
        p.send_json(&modern_call(json!(i), "echo", json!({"text": "hi"})));
        assert_eq!(result_text(&p.recv_response(&json!(i))), "hi");
    }
    let ports = |remote: &FakeRemote| -> Vec<u64> {
        posts_of(remote, "tools/call")
            .iter()
            .map(|r| r["peer"].as_u64().expect("the demo logs the peer port"))
            .collect()
    };
    let first = ports(&remote);
    assert_eq!(first.len(), 3);
    assert!(
        first.iter().all(|&p| p == first[0]),
        "one connection for the three calls: {first:?}"
    );
    p.send_json(&modern_call(json!("s"), "slow", json!({"ms": 30000})));
    let deadline = Instant::now() + WAIT;
    while ports(&remote).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the slow call never reached the remote"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send_json(&cancel(json!("s")));
    wait_closed(&remote, "\"s\"");
    let cancelled = ports(&remote)[3];
    for i in 10..13 {
        p.send_json(&modern_call(json!(i), "echo", json!({"text": "again"})));
        assert_eq!(result_text(&p.recv_response(&json!(i))), "again");
    }
    let after = &ports(&remote)[4..];
    assert!(
        !after.contains(&cancelled),
        "the cancelled call's connection ({cancelled}) was used again: {after:?}"
    );
}
