//! Server mode routing: many sessions on one child, each receiving exactly
//! its own messages (DESIGN.md "Routing rules in server mode", RL-03, RL-05,
//! SH-31).

mod common;
mod server_support;

use common::WAIT;
use serde_json::{json, Value};
use server_support::*;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const SESSIONS: usize = 8;

fn kind_of(i: usize) -> Kind {
    match i % 4 {
        0 | 2 => Kind::Legacy,
        1 => Kind::Streamable {
            version: ["2025-03-26", "2025-06-18"][(i / 4) % 2],
            json_only: false,
            get: true,
        },
        _ => Kind::Streamable {
            version: "2025-11-25",
            json_only: i == 7,
            get: true,
        },
    }
}

/// Session 0 alone can sample, 1 alone elicit, 2 alone list roots.
fn caps_of(i: usize) -> Value {
    match i {
        0 => json!({"sampling": {}}),
        1 => json!({"elicitation": {}}),
        2 => json!({"roots": {"listChanged": true}}),
        _ => json!({}),
    }
}

fn is_response(v: &Value) -> bool {
    v.get("method").is_none() && v.get("id").is_some()
}

/// Answers a server-to-client request the way session `i` would, so the
/// tool's result shows whose answer the child got.
fn answer(i: usize, v: &Value) -> Value {
    let id = v["id"].clone();
    let result = match v["method"].as_str().unwrap() {
        "sampling/createMessage" => {
            json!({"role": "assistant", "content": {"type": "text", "text": format!("sample-from-{i}")}, "model": "m"})
        }
        "elicitation/create" => {
            json!({"action": "accept", "content": {"name": format!("elicit-from-{i}")}})
        }
        "roots/list" => json!({"roots": [{"uri": format!("file:///root-{i}"), "name": "r"}]}),
        m => panic!("session {i}: unexpected server request {m}"),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

#[test]
fn eight_concurrent_sessions_each_get_exactly_their_own_messages() {
    let proxy = Proxy::start(&[]);
    let url = proxy.url.clone();
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let url = url.clone();
        let barrier = barrier.clone();
        handles.push(thread::spawn(move || {
            let kind = kind_of(i);
            let mut s = Session::open(&url, kind, &format!("client-{i}"), caps_of(i));
            // Phase 1: per-session state: log level and subscriptions.
            if i == 1 {
                s.post(&req(json!("lvl"), "logging/setLevel", json!({"level": "error"})));
                s.recv_response(&json!("lvl"));
            }
            let uri = if i % 2 == 0 { "demo://even" } else { "demo://odd-3" };
            if i % 2 == 0 || i == 3 {
                s.post(&req(json!(30), "resources/subscribe", json!({"uri": uri})));
                s.recv_response(&json!(30));
            }
            barrier.wait();

            // Phase 2: interleaved requests with the same ids in every session.
            let steps = i as u64 + 2;
            s.post(&req(
                json!("x"),
                "tools/call",
                json!({"name": "progress", "arguments": {"steps": steps, "ms": 20}, "_meta": {"progressToken": "p"}}),
            ));
            // A long call, cancelled once its first progress shows that
            // the child is working on it.
            s.post(&req(
                json!(5),
                "tools/call",
                json!({"name": "progress", "arguments": {"steps": 1000, "ms": 20}, "_meta": {"progressToken": "c"}}),
            ));
            let (_, mut backlog) = s.recv_until("progress of the call to cancel", |v| {
                v["params"]["progressToken"] == "c"
            });
            s.post(&tool(json!(2), "echo", json!({"text": format!("echo-{i}")})));
            s.post(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "test"}}));
            let special = match i {
                0 => Some("sample"),
                1 => Some("elicit"),
                2 => Some("roots"),
                _ => None,
            };
            if let Some(t) = special {
                s.post(&tool(json!("s"), t, json!({"prompt": "p", "message": "m"})));
            }
            s.post(&req(json!(2.5), "ping", json!({})));
            let mut want: Vec<Value> = vec![json!("x"), json!(2), json!(2.5)];
            if special.is_some() {
                want.push(json!("s"));
            }
            let mut got = Vec::new();
            let mut progress = Vec::new();
            backlog.reverse();
            // Progress for a JSON-only exchange travels on the GET stream,
            // so it may land after the response body.
            let json_only = matches!(kind, Kind::Streamable { json_only: true, .. });
            while got.len() < want.len() {
                let v = backlog.pop().unwrap_or_else(|| s.recv());
                assert!(v.get("test_error").is_none(), "session {i}: {v}");
                if is_response(&v) {
                    got.push(v);
                } else if v["method"] == "notifications/progress" {
                    if v["params"]["progressToken"] == "p" {
                        progress.push(v);
                    }
                } else if v.get("id").is_some() {
                    let a = answer(i, &v);
                    s.post(&a);
                } else {
                    panic!("session {i}: unexpected message in phase 2: {v}");
                }
            }
            while json_only && progress.len() < steps as usize {
                let v = s.recv();
                if v["params"]["progressToken"] == "p" {
                    progress.push(v);
                }
            }
            barrier.wait();

            // Phase 3: server-wide notifications, sent by session 0's calls.
            let mut rest = Vec::new();
            if i == 0 {
                s.post(&tool(json!(10), "log", json!({"level": "info", "text": "hello-all"})));
                s.post(&tool(json!(11), "list_changed", json!({})));
                s.post(&tool(json!(12), "touch", json!({"uri": "demo://even"})));
                s.post(&tool(json!(13), "touch", json!({"uri": "demo://odd-3"})));
                let mut seen = 0;
                while seen < 4 {
                    let v = s.recv();
                    if is_response(&v) && v["id"].as_i64().is_some_and(|n| (10..14).contains(&n)) {
                        seen += 1;
                    } else {
                        rest.push(v);
                    }
                }
            }
            barrier.wait();
            // What session 0's calls owe this session: one list_changed, the
            // log message unless it asked for 'error' only, and the update of
            // the URI it subscribed to. Each is on its way to every session
            // by the time session 0 has its replies, but not necessarily
            // here yet on a loaded machine: wait for them, then for a quiet
            // spell in which a duplicate or a stray message would show.
            let owed = [
                ("notifications/tools/list_changed", 1),
                ("notifications/message", usize::from(i != 1)),
                (
                    "notifications/resources/updated",
                    usize::from(i % 2 == 0 || i == 3),
                ),
            ];
            let deadline = Instant::now() + WAIT;
            while owed
                .iter()
                .any(|(m, n)| rest.iter().filter(|v| v["method"] == *m).count() < *n)
            {
                let left = deadline.saturating_duration_since(Instant::now());
                match s.inbox.recv_timeout(left) {
                    Ok(v) => rest.push(v),
                    Err(_) => panic!("session {i}: phase 3 never brought {owed:?}; got {rest:?}"),
                }
            }
            rest.extend(s.drain_quiet(Duration::from_millis(700)));
            (i, got, progress, rest)
        }));
    }
    for h in handles {
        let (i, got, progress, rest) = h.join().expect("session thread");
        let by_id = |id: Value| {
            got.iter()
                .find(|v| v["id"] == id)
                .unwrap_or_else(|| panic!("session {i}: no response {id} in {got:?}"))
                .clone()
        };
        assert_eq!(
            text_of(&by_id(json!(2))),
            format!("echo-{i}"),
            "session {i}"
        );
        let steps = i + 2;
        assert_eq!(text_of(&by_id(json!("x"))), format!("{steps} steps done"));
        assert_eq!(by_id(json!(2.5))["result"], json!({}));
        match i {
            0 => assert_eq!(text_of(&by_id(json!("s"))), "sampled: sample-from-0"),
            1 => assert!(text_of(&by_id(json!("s"))).contains("elicit-from-1")),
            2 => assert!(text_of(&by_id(json!("s"))).contains("root-2")),
            _ => {}
        }
        // Progress: exactly this session's steps, with its own token.
        assert_eq!(progress.len(), steps, "session {i}: progress {progress:?}");
        for p in &progress {
            assert_eq!(p["params"]["progressToken"], "p");
            assert_eq!(p["params"]["total"], json!(steps));
        }
        // Phase 3 and anything left over: no response to the cancelled
        // request, one copy of each broadcast, updates only for subscribers.
        let mut logs = 0;
        let mut changed = 0;
        let mut updated = Vec::new();
        for v in &rest {
            match v["method"].as_str() {
                Some("notifications/message") => {
                    assert_eq!(v["params"]["data"], "hello-all");
                    logs += 1;
                }
                Some("notifications/tools/list_changed") => changed += 1,
                // Progress of the cancelled call sent before the cancel.
                Some("notifications/progress") if v["params"]["progressToken"] == "c" => {}
                Some("notifications/resources/updated") => {
                    updated.push(v["params"]["uri"].as_str().unwrap().to_owned())
                }
                _ if i == 0 && is_response(v) => {
                    assert!(
                        v["id"].as_i64().is_some_and(|n| (10..14).contains(&n)),
                        "{v}"
                    )
                }
                _ => panic!("session {i}: unexpected {v}"),
            }
        }
        assert_eq!(
            logs,
            if i == 1 { 0 } else { 1 },
            "session {i}: log messages in {rest:?}"
        );
        assert_eq!(changed, 1, "session {i}: list_changed in {rest:?}");
        let want_updates: Vec<String> = if i % 2 == 0 {
            vec!["demo://even".into()]
        } else if i == 3 {
            vec!["demo://odd-3".into()]
        } else {
            vec![]
        };
        assert_eq!(updated, want_updates, "session {i}");
    }
    // The child saw every cancellation, each under its own upstream id.
    let mut s = Session::open(&url, Kind::Legacy, "checker", json!({}));
    s.post(&tool(json!(1), "cancelled", json!({})));
    let seen: Vec<String> = serde_json::from_str(&text_of(&s.recv_response(&json!(1)))).unwrap();
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        SESSIONS,
        "cancellations the child saw: {seen:?}"
    );
    assert!(
        seen.iter().all(|id| id.parse::<u64>().is_ok()),
        "upstream ids: {seen:?}"
    );
}

#[test]
fn a_thousand_sessions_opened_and_closed_leave_nothing_behind() {
    let proxy = Proxy::start(&["--keepalive", "1"]);
    for n in 0..1000 {
        if n % 2 == 0 {
            let c = post_mcp(
                &format!("{}/mcp", proxy.url),
                None,
                &json!({"jsonrpc": "2.0", "id": n, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}).to_string(),
            );
            assert_eq!(c.status, 200);
            let sid = c.header("Mcp-Session-Id").unwrap().to_owned();
            let _ = c.text();
            let d = send(
                "DELETE",
                &format!("{}/mcp", proxy.url),
                &[("Mcp-Session-Id", &sid)],
                None,
            );
            assert_eq!(d.status, 200);
        } else {
            let c = send("GET", &format!("{}/sse", proxy.url), &[], None);
            let sse = c.sse();
            let ev = sse.next().expect("endpoint");
            assert_eq!(ev.event, "endpoint");
            sse.close();
        }
    }
    let s = proxy.wait_status("no sessions left", |s| {
        s["servers"]["default"]["sessions"] == 0 && s["active_sse_connections"] == 0
    });
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0, "{s}");
    assert_eq!(s["http_exchanges"], 0, "{s}");
}

#[test]
fn request_ids_come_back_byte_exact() {
    let proxy = Proxy::start(&[]);
    let url = format!("{}/mcp", proxy.url);
    let c = post_mcp(
        &url,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
    );
    let sid = c.header("Mcp-Session-Id").unwrap().to_owned();
    let _ = c.text();
    for raw in [
        "123456789012345678901234567890",
        "\"007\"",
        "-0",
        "1.50",
        "\"\\u00e9t\\u00e9\"",
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{raw},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}}}}}}"#
        );
        let c = post_mcp(&url, Some(&sid), &body);
        assert_eq!(c.status, 200);
        let text = c.text();
        assert!(
            text.starts_with(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{raw},")),
            "id {raw} came back as {text}"
        );
    }
}

#[test]
fn server_request_goes_to_the_only_busy_session_on_its_post_stream() {
    let proxy = Proxy::start(&[]);
    // No GET stream: the sampling request must come on the POST's stream.
    let mut a = Session::open(&proxy.url, STREAMABLE, "a", json!({"sampling": {}}));
    let _idle = Session::open(&proxy.url, Kind::Legacy, "idle", json!({"sampling": {}}));
    a.post(&tool(json!(1), "sample", json!({"prompt": "hi"})));
    let r = a.recv();
    assert_eq!(r["method"], "sampling/createMessage", "{r}");
    a.post(&answer(0, &r));
    let done = a.recv_response(&json!(1));
    assert_eq!(text_of(&done), "sampled: sample-from-0");
}

#[test]
fn ambiguous_server_request_is_refused_not_misrouted() {
    let proxy = Proxy::start(&[]);
    let mut a = Session::open(&proxy.url, Kind::Legacy, "a", json!({"sampling": {}}));
    let mut b = Session::open(&proxy.url, Kind::Legacy, "b", json!({"sampling": {}}));
    b.post(&tool(json!(1), "slow", json!({"ms": 3000})));
    // Let b's call reach the child before a's sampling request appears.
    b.post(&req(json!(2), "ping", json!({})));
    b.recv_response(&json!(2));
    a.post(&tool(json!(1), "sample", json!({"prompt": "hi"})));
    let r = a.recv_response(&json!(1));
    let t = text_of(&r);
    assert!(
        t.starts_with("sampling failed") && t.contains("cannot tell"),
        "{t}"
    );
    let r = b.recv_response(&json!(1));
    assert_eq!(text_of(&r), "slept 3000 ms");
    assert!(a.drain_quiet(Duration::from_millis(300)).is_empty());
}

#[test]
fn resources_updated_reaches_only_current_subscribers() {
    let proxy = Proxy::start(&[]);
    let mut a = Session::open(&proxy.url, Kind::Legacy, "a", json!({}));
    let mut b = Session::open(&proxy.url, Kind::Legacy, "b", json!({}));
    for s in [&mut a, &mut b] {
        s.post(&req(
            json!(1),
            "resources/subscribe",
            json!({"uri": "demo://x"}),
        ));
        s.recv_response(&json!(1));
    }
    a.post(&req(
        json!(2),
        "resources/unsubscribe",
        json!({"uri": "demo://x"}),
    ));
    a.recv_response(&json!(2));
    a.post(&tool(json!(3), "touch", json!({"uri": "demo://x"})));
    a.recv_response(&json!(3));
    let (u, _) = b.recv_until("resources/updated", |v| {
        v["method"] == "notifications/resources/updated"
    });
    assert_eq!(u["params"]["uri"], "demo://x");
    assert!(
        a.drain_quiet(Duration::from_millis(300)).is_empty(),
        "the unsubscribed session gets no update"
    );
}
