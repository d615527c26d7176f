//! Client mode, Streamable HTTP: messages reach the remote in the order the
//! local client sent them where order matters. Each POST has its own thread,
//! so without care `tools/list` could overtake `notifications/initialized`
//! (the interop suite saw exactly that against server-everything).

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn nothing_overtakes_a_notification_but_requests_run_in_parallel() {
    // The remote handles every notification 300 ms late: what it handles
    // next shows whether the proxy waited for the 202.
    let remote = FakeRemote::start(&[
        "--transport",
        "streamable",
        "--notification-delay-ms",
        "300",
    ]);
    let mut p = proxy(&["--transport", "streamablehttp", &remote.mcp()]);
    p.send_json(&initialize(json!(0), "2025-06-18"));
    p.recv_response(&json!(0));
    // Sent back to back, as clients do right after the handshake.
    p.send_json(&notification("notifications/initialized", json!({})));
    p.send_json(&request(json!(1), "tools/list", json!({})));
    p.send_json(&call_tool(json!(2), "slow", json!({"ms": 2000})));
    p.send_json(&call_tool(json!(3), "echo", json!({"text": "fast"})));
    // Replies in arrival order: the slow call does not hold up the echo
    // sent after it.
    let mut arrived = Vec::new();
    while arrived.len() < 3 {
        let (v, _) = p.recv_until("a reply", |v| {
            v.get("id").is_some() && v.get("method").is_none()
        });
        arrived.push(v["id"].as_i64().expect("numeric id"));
    }
    let at = |id: i64| arrived.iter().position(|x| *x == id).unwrap();
    assert!(
        at(3) < at(2),
        "the echo waited for the slow call: {arrived:?}"
    );

    let r = http("GET", &format!("{}/admin/received", remote.base), &[], None);
    let Value::Array(order) = r.json() else {
        panic!("{}", r.body)
    };
    let order: Vec<&str> = order.iter().filter_map(Value::as_str).collect();
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| *x == m)
            .unwrap_or_else(|| panic!("{m} missing in {order:?}"))
    };
    assert!(
        pos("notifications/initialized") < pos("tools/list"),
        "tools/list reached the remote before notifications/initialized: {order:?}"
    );
}
