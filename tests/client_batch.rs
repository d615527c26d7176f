//! Client mode: JSON-RPC batches on stdin (JR-09, JR-11, LC-07, ST-03,
//! RL-15). On a 2025-03-26 session a batch is split, its members forwarded
//! as single messages, and the replies to its requests written as one
//! array line; on any other version it gets one -32600 error.

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The next stdout line, which must be a JSON array: its members by id.
fn recv_batch(p: &mut Proc) -> BTreeMap<String, Value> {
    let v = p.recv();
    let Value::Array(items) = v else {
        panic!("expected one array line, got {v}; stderr:\n{}", p.stderr());
    };
    let mut by_id = BTreeMap::new();
    for item in items {
        let id = item["id"].to_string();
        assert!(
            by_id.insert(id.clone(), item).is_none(),
            "id {id} twice in one batch reply"
        );
    }
    by_id
}

fn error_of(v: &Value) -> (i64, String) {
    (
        v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected an error: {v}")),
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// A 2025-03-26 session over each transport: requests, a notification,
/// an invalid member and an `initialize` in one batch give one array with
/// exactly one entry per request or invalid member (LC-07 refused inside
/// it); the next single request is answered as a single object, so no
/// member of the batch was also written on its own.
fn batch_is_answered_as_one_array(transport: &str, sse: bool) {
    let remote = FakeRemote::start(&["--transport", transport]);
    let url = if sse { remote.sse() } else { remote.mcp() };
    let mut p = proxy(&[&url]);
    let init = handshake(&mut p, "2025-03-26");
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    let batch = json!([
        call_tool(json!("a"), "echo", json!({"text": "first"})),
        notification("notifications/roots/list_changed", json!({})),
        call_tool(json!(2), "add", json!({"a": 2, "b": 3})),
        {"jsonrpc": "2.0", "id": 9},
        initialize(json!("i"), "2025-03-26"),
        request(json!("p"), "ping", json!({})),
    ]);
    p.send_json(&batch);
    let got = recv_batch(&mut p);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["\"a\"", "\"i\"", "\"p\"", "2", "9"],
        "{got:?}"
    );
    assert_eq!(result_text(&got["\"a\""]), "first");
    assert_eq!(got["2"]["result"]["structuredContent"]["sum"], 5.0);
    assert!(got["\"p\""].get("result").is_some(), "{:?}", got["\"p\""]);
    assert_eq!(error_of(&got["9"]).0, -32600);
    let (code, msg) = error_of(&got["\"i\""]);
    assert_eq!(code, -32600);
    assert!(msg.contains("initialize") && msg.contains("batch"), "{msg}");
    // The refused initialize never reached the remote: the session goes on.
    p.send_json(&call_tool(json!("after"), "echo", json!({"text": "x"})));
    let next = p.recv();
    assert_eq!(next["id"], "after", "a stray line after the batch: {next}");
    assert_eq!(result_text(&next), "x");
}

#[test]
fn batch_over_streamable_http_is_answered_as_one_array() {
    batch_is_answered_as_one_array("streamable", false);
}

#[test]
fn batch_over_http_sse_is_answered_as_one_array() {
    batch_is_answered_as_one_array("sse", true);
}

/// A batch of notifications (and responses) produces no output at all, an
/// empty array gets a single error object (JR-11), and a batch of nothing
/// but invalid members gets an array of their errors.
#[test]
fn batches_without_requests() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-03-26");
    p.send_json(&json!([
        notification("notifications/roots/list_changed", json!({})),
        {"jsonrpc": "2.0", "id": "unasked", "result": {}},
    ]));
    p.send("[]");
    let empty = p.recv();
    assert!(empty.is_object(), "not an array for []: {empty}");
    assert!(empty.get("id").is_none(), "{empty}");
    assert_eq!(error_of(&empty).0, -32600);
    p.send(r#"[1, {"jsonrpc":"1.0","id":3,"method":"ping"}]"#);
    let bad = p.recv();
    let items = bad.as_array().unwrap_or_else(|| panic!("{bad}"));
    assert_eq!(items.len(), 2, "{bad}");
    assert!(items.iter().all(|i| error_of(i).0 == -32600), "{bad}");
    assert_eq!(items[1]["id"], 3, "{bad}");
    let r = echo(&mut p, json!("last"), "y");
    assert_eq!(result_text(&r), "y");
}

/// Versions without batches: a single -32600 object that names the
/// session's version and the one that has batches; before any initialize
/// it says that none was negotiated.
#[test]
fn batches_are_refused_on_versions_without_them() {
    let remote = FakeRemote::start(&["--transport", "both"]);
    let member = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
    for (url, version) in [
        (remote.mcp(), "2025-06-18"),
        (remote.mcp(), "2025-11-25"),
        (remote.sse(), "2024-11-05"),
    ] {
        let mut p = proxy(&[&url]);
        handshake(&mut p, version);
        p.send(member);
        let v = p.recv();
        assert!(v.is_object(), "{version}: {v}");
        assert!(v.get("id").is_none(), "{version}: {v}");
        let (code, msg) = error_of(&v);
        assert_eq!(code, -32600, "{version}: {v}");
        assert!(
            msg.contains(version) && msg.contains("2025-03-26"),
            "{version}: {msg}"
        );
    }
    let mut p = proxy(&[&remote.mcp()]);
    p.send(member);
    let (code, msg) = error_of(&p.recv());
    assert_eq!(code, -32600);
    assert!(msg.contains("no version has been negotiated"), "{msg}");
}

/// A batch and single requests in flight together: the single reply is
/// written on its own, never inside the array, and the batch waits for its
/// slow member.
#[test]
fn single_replies_are_never_swallowed_into_a_batch() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-03-26");
    p.send_json(&call_tool(json!("solo"), "slow", json!({"ms": 300})));
    p.send_json(&json!([
        call_tool(json!("b1"), "echo", json!({"text": "b"})),
        call_tool(json!("b2"), "slow", json!({"ms": 200})),
    ]));
    p.send_json(&call_tool(json!("solo2"), "echo", json!({"text": "s"})));
    let mut singles = Vec::new();
    let mut arrays = Vec::new();
    for _ in 0..3 {
        let v = p.recv();
        if v.is_array() {
            arrays.push(v);
        } else {
            singles.push(v["id"].clone());
        }
    }
    singles.sort_by_key(|v| v.to_string());
    assert_eq!(singles, vec![json!("solo"), json!("solo2")]);
    assert_eq!(arrays.len(), 1, "{arrays:?}");
    let ids: Vec<_> = arrays[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{arrays:?}");
    assert!(ids.contains(&json!("b1")) && ids.contains(&json!("b2")));
}

/// Ids that collide with a request in flight: a batch member whose id is
/// already in flight gets an error inside the array (the other request
/// still gets its own reply); a single request whose id is a batch member
/// in flight gets an error on its own line. A cancelled batch member gets
/// no entry and does not hold the batch up.
#[test]
fn colliding_ids_are_refused_and_cancelled_members_leave_the_batch() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-03-26");
    // Long enough that the batch below surely comes while 7 is in flight.
    p.send_json(&call_tool(json!(7), "slow", json!({"ms": 1500})));
    p.send_json(&json!([
        call_tool(json!(7), "echo", json!({"text": "dup"})),
        call_tool(json!(8), "echo", json!({"text": "ok"})),
        call_tool(json!(8), "echo", json!({"text": "dup in batch"})),
    ]));
    let mut seen_single = false;
    let mut batch = None;
    while batch.is_none() || !seen_single {
        let v = p.recv();
        if v.is_array() {
            batch = Some(v);
        } else {
            assert_eq!(v["id"], 7, "{v}");
            assert_eq!(
                result_text(&v),
                "slept 1500 ms",
                "the single 7 kept its reply"
            );
            seen_single = true;
        }
    }
    let items = batch.unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    let ok: Vec<_> = items.iter().filter(|i| i.get("result").is_some()).collect();
    assert_eq!(ok.len(), 1, "{items:?}");
    assert_eq!(ok[0]["id"], 8);
    assert_eq!(result_text(ok[0]), "ok");
    for e in items.iter().filter(|i| i.get("error").is_some()) {
        let (code, msg) = error_of(e);
        assert_eq!(code, -32600, "{e}");
        assert!(msg.contains("already used"), "{msg}");
    }

    // A batch member in flight; a single request reuses its id.
    p.send_json(&json!([
        call_tool(json!("b"), "slow", json!({"ms": 600000})),
        call_tool(json!("c"), "echo", json!({"text": "c"})),
    ]));
    p.send_json(&call_tool(json!("b"), "echo", json!({"text": "single"})));
    let v = p.recv();
    assert!(v.is_object(), "{v}");
    assert_eq!(v["id"], "b");
    let (code, msg) = error_of(&v);
    assert_eq!(code, -32600);
    assert!(msg.contains("batch"), "{msg}");
    p.send_json(&notification(
        "notifications/cancelled",
        json!({"requestId": "b", "reason": "test"}),
    ));
    let got = recv_batch(&mut p);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["\"c\""], "{got:?}");
    let r = echo(&mut p, json!("b"), "reused after the batch");
    assert_eq!(result_text(&r), "reused after the batch");
}

/// Errors the proxy makes itself (the remote fails every POST) land inside
/// the array, one per request, naming the remote.
#[test]
fn proxy_errors_for_batch_members_are_in_the_array() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-03-26");
    remote.admin("fail", "502");
    p.send_json(&json!([
        call_tool(json!(1), "echo", json!({"text": "x"})),
        call_tool(json!(2), "echo", json!({"text": "y"})),
    ]));
    let got = recv_batch(&mut p);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["1", "2"], "{got:?}");
    for v in got.values() {
        let (code, msg) = error_of(v);
        assert_eq!(code, -32603, "{v}");
        assert!(msg.contains("502") && msg.contains(&remote.base), "{msg}");
    }
    remote.admin("fail", "0");
    let r = echo(&mut p, json!(3), "back");
    assert_eq!(result_text(&r), "back");
}

/// The remote goes away: the members of a batch in flight, and of one sent
/// while the proxy reconnects (answered at once), all get their errors
/// inside one array per batch.
#[test]
fn batches_get_their_errors_when_the_remote_is_gone() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-03-26");
    let _ = remote.stop();
    for round in 0..2 {
        p.send_json(&json!([
            call_tool(json!(1), "echo", json!({"text": "x"})),
            notification("notifications/roots/list_changed", json!({})),
            call_tool(json!(2), "echo", json!({"text": "y"})),
        ]));
        let got = recv_batch(&mut p);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            vec!["1", "2"],
            "round {round}: {got:?}"
        );
        for v in got.values() {
            assert_eq!(error_of(v).0, -32603, "round {round}: {v}");
        }
    }
}

/// A reply over --max-message-size fails only its own member, inside the
/// array, beside the other member's result.
#[test]
fn an_oversized_reply_fails_its_member_inside_the_array() {
    for mode in ["json", "sse"] {
        let remote = FakeRemote::start(&["--transport", "streamable", "--reply", mode]);
        let mut p = proxy(&["--max-message-size", "100000", &remote.mcp()]);
        handshake(&mut p, "2025-03-26");
        p.send_json(&json!([
            call_tool(json!("big"), "big", json!({"bytes": 200000})),
            call_tool(json!("small"), "echo", json!({"text": "fits"})),
        ]));
        let got = recv_batch(&mut p);
        assert_eq!(result_text(&got["\"small\""]), "fits", "{mode}");
        let (_, msg) = error_of(&got["\"big\""]);
        assert!(msg.contains("--max-message-size"), "{mode}: {msg}");
    }
}

/// A batch member cancelled while the session is still being set up is
/// never sent: the batch is answered without it, and the remote sees
/// neither the request nor its cancel (it would have got both, and the
/// array an entry nobody waits for).
#[test]
fn a_batch_member_cancelled_before_the_session_is_up_is_never_sent() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    // The handshake takes long enough for the lines below to be queued.
    remote.admin("init-delay", "700");
    let mut p = proxy(&[&remote.mcp()]);
    p.send_json(&initialize(json!(0), "2025-03-26"));
    p.send_json(&json!([
        call_tool(json!("a"), "echo", json!({"text": "a"})),
        call_tool(json!("b"), "echo", json!({"text": "b"})),
    ]));
    p.send_json(&notification(
        "notifications/cancelled",
        json!({"requestId": "a", "reason": "test"}),
    ));
    let init = p.recv_response(&json!(0));
    assert!(init.get("result").is_some(), "initialize failed: {init}");
    p.send_json(&notification("notifications/initialized", json!({})));
    let got = recv_batch(&mut p);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["\"b\""], "{got:?}");
    assert_eq!(result_text(&got["\"b\""]), "b");
    let r = http("GET", &format!("{}/admin/received", remote.base), &[], None);
    let received: Vec<String> = serde_json::from_str(&r.body).expect("a JSON list");
    assert_eq!(
        received.iter().filter(|m| *m == "tools/call").count(),
        1,
        "only b was sent: {received:?}"
    );
    assert!(
        !received.iter().any(|m| m == "notifications/cancelled"),
        "the cancel of a request never sent was sent: {received:?}"
    );
}
