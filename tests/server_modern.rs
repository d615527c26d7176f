//! Server mode, MCP 2026-07-28 ("modern", stateless) requests on `/mcp`
//! (TRANSPORTS.md §5 SX-*, §6.2 LC-20..23, §6.8 LC-80..83, §9 RL-02..RL-11),
//! next to legacy sessions on the same endpoint (the dual-era rule, §0).
//!
//! Each test speaks raw HTTP to the proxy in front of the demo server and
//! asserts what a client sees: status, headers, body, ids.

mod common;
mod server_support;

use common::demo_bin;
use serde_json::{json, Value};
use server_support::modern::*;
use server_support::*;
use std::thread;
use std::time::{Duration, Instant};

/// A JSON reply: its status and body, checked to carry no session id.
fn json_reply(c: Conn) -> (u16, Value) {
    assert!(
        c.header("Mcp-Session-Id").is_none(),
        "a modern reply never carries a session id (SX-40): {:?}",
        c.headers
    );
    assert!(!c.is_sse(), "expected a JSON reply: {:?}", c.headers);
    let status = c.status;
    (status, c.json())
}

/// The proxy's own answer to `server/discover` for a server that cannot
/// serve 2026-07-28: 404 with -32601 and the id, so dual-era clients fall
/// back to `initialize` (LC-22).
fn discover_refused(url: &str) {
    let (status, v) = json_reply(post(url, &modern(json!("d"), "server/discover", json!({}))));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (404, json!(-32601), json!("d")),
        "{v}"
    );
}

fn mcp(p: &Proxy) -> String {
    format!("{}/mcp", p.url)
}

/// Calls a tool with a modern request and returns its result text.
fn modern_text(url: &str, id: &str, tool: &str, args: Value) -> String {
    let (status, v) = json_reply(post(url, &modern_call(json!(id), tool, args)));
    assert_eq!(status, 200, "{v}");
    text_of(&v)
}

/// Polls the demo's `cancelled` tool until `pred` holds on its list.
fn wait_cancelled(url: &str, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let t = modern_text(url, "who-was-cancelled", "cancelled", json!({}));
        let list: Vec<String> = serde_json::from_str(&t).expect("a JSON list of ids");
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; last: {list:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rl02_rl03_a_modern_call_is_relayed_with_its_id_and_no_session() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    for id in [json!("abc"), json!(7), json!("7")] {
        let (status, v) = json_reply(post(
            &url,
            &modern_call(id.clone(), "echo", json!({"text": "hi"})),
        ));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["id"], id, "the client's id, with its JSON type (RL-03)");
        assert_eq!(text_of(&v), "hi");
        // The child answered it as a modern request (JR-08, LC-20).
        assert_eq!(v["result"]["resultType"], "complete", "{v}");
        assert_eq!(
            v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "mcp-demo-server"
        );
    }
    // A huge integer id comes back byte for byte (JR-11).
    let big = "123456789012345678901234567890";
    let body = modern_call(json!(1), "echo", json!({"text": "x"}))
        .to_string()
        .replacen("\"id\":1", &format!("\"id\":{big}"), 1);
    let c = post_raw(
        &url,
        &headers_for(&modern_call(json!(1), "echo", json!({}))),
        &body,
    );
    assert_eq!(c.status, 200);
    let text = c.text();
    assert!(text.contains(&format!("\"id\":{big}")), "{text}");
    // Modern exchanges are not sessions (/status counts sessions).
    let s = p.status();
    assert_eq!(s["servers"]["default"]["sessions"], 0, "{s}");
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0, "{s}");
}

#[test]
fn sx40_a_session_id_on_a_modern_request_is_ignored_and_never_echoed() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let mut legacy = Session::open(&p.url, STREAMABLE, "legacy", json!({}));
    let sid = legacy.session_id.clone().unwrap();
    // With the live session's id, and with one that names no session: the
    // `_meta` envelope decides, the request is served statelessly.
    for s in [sid.as_str(), "no-such-session"] {
        let body = modern_call(json!("m"), "echo", json!({"text": s}));
        let c = post_edit(&url, &body, |h| set(h, "Mcp-Session-Id", Some(s)));
        let (status, v) = json_reply(c);
        assert_eq!((status, text_of(&v)), (200, s.to_owned()), "{v}");
    }
    // The legacy session is untouched and still works.
    legacy.post(&tool(json!("after"), "echo", json!({"text": "still here"})));
    assert_eq!(
        text_of(&legacy.recv_response(&json!("after"))),
        "still here"
    );
    assert_eq!(p.status()["servers"]["default"]["sessions"], 1);
}

#[test]
fn sx20_sx24_sx25_sx27_sx29_mirrored_headers_must_match_the_body() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let call = modern_call(json!("h1"), "echo", json!({"text": "t"}));
    type Edit = Box<dyn Fn(&mut Vec<(String, String)>)>;
    let refused: Vec<(&str, Edit)> = vec![
        (
            "no MCP-Protocol-Version",
            Box::new(|h| set(h, "MCP-Protocol-Version", None)),
        ),
        (
            "MCP-Protocol-Version differs from _meta",
            Box::new(|h| set(h, "MCP-Protocol-Version", Some("2025-11-25"))),
        ),
        ("no Mcp-Method", Box::new(|h| set(h, "Mcp-Method", None))),
        (
            "Mcp-Method differs",
            Box::new(|h| set(h, "Mcp-Method", Some("tools/list"))),
        ),
        (
            "header values are case-sensitive (SX-29)",
            Box::new(|h| set(h, "Mcp-Method", Some("Tools/Call"))),
        ),
        (
            "no Mcp-Name on tools/call",
            Box::new(|h| set(h, "Mcp-Name", None)),
        ),
        (
            "Mcp-Name differs",
            Box::new(|h| set(h, "Mcp-Name", Some("add"))),
        ),
        (
            "Mcp-Name given twice",
            Box::new(|h| h.push(("Mcp-Name".into(), "echo".into()))),
        ),
        (
            "a base64 Mcp-Name that decodes to another name",
            Box::new(|h| set(h, "Mcp-Name", Some("=?base64?YWRk?="))),
        ),
    ];
    for (what, edit) in refused {
        let (status, v) = json_reply(post_edit(&url, &call, edit));
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], -32020, "{what}: {v}");
        assert_eq!(v["id"], "h1", "{what}: the error carries the id (SX-32)");
    }
    // Accepted: names compared case-insensitively (SX-29), the base64
    // sentinel decoded (SX-25), unknown Mcp-Param-* ignored (SX-28).
    let (status, v) = json_reply(post_edit(&url, &call, |h| {
        let (k, v) = h.pop().expect("Mcp-Name is last");
        h.push((k.to_lowercase(), v));
        set(h, "mcp-method", Some("tools/call"));
        h.retain(|(k, _)| k != "Mcp-Method");
        h.push(("Mcp-Param-Whatever".into(), "1".into()));
    }));
    assert_eq!((status, text_of(&v)), (200, "t".into()), "{v}");
    let (status, v) = json_reply(post_edit(&url, &call, |h| {
        set(h, "Mcp-Name", Some("=?base64?ZWNobw==?="))
    }));
    assert_eq!((status, text_of(&v)), (200, "t".into()), "{v}");
    // A non-ASCII tool name travels base64-encoded and reaches the child,
    // which does not know it: its own error (-32602), status 200 (RL-09).
    let odd = modern_call(json!("h2"), "échο", json!({}));
    let (status, v) = json_reply(post_edit(&url, &odd, |h| {
        set(h, "Mcp-Name", Some("=?base64?w6ljaM6/?="))
    }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("échο"),
        "{v}"
    );
    // Mcp-Name mirrors params.uri on resources/read, params.name on prompts/get.
    let read = modern(
        json!("r"),
        "resources/read",
        json!({"uri": "demo://greeting"}),
    );
    let (status, v) = json_reply(post(&url, &read));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["contents"][0]["text"],
        "contents of demo://greeting"
    );
    let (status, v) = json_reply(post_edit(&url, &read, |h| {
        set(h, "Mcp-Name", Some("demo://other"))
    }));
    assert_eq!((status, v["error"]["code"].clone()), (400, json!(-32020)));
    let prompt = modern(
        json!("g"),
        "prompts/get",
        json!({"name": "greet", "arguments": {"name": "Ada"}}),
    );
    let (status, v) = json_reply(post(&url, &prompt));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["messages"][0]["content"]["text"], "Hello, Ada!");
}

#[test]
fn sx30_sx21_missing_meta_is_400_32602_and_an_unknown_version_400_32022() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    // The header says 2026-07-28, the body has no envelope at all.
    let bare = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (status, v) = json_reply(post(&url, &bare));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32602), json!(5)),
        "{v}"
    );
    // No clientCapabilities.
    let mut no_caps = modern(json!(6), "tools/list", json!({}));
    no_caps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let (status, v) = json_reply(post(&url, &no_caps));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32602), json!(6)),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clientCapabilities"),
        "{v}"
    );
    // A version nobody serves, consistent in header and body.
    let future = json!({"jsonrpc": "2.0", "id": "f", "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let (status, v) = json_reply(post_edit(&url, &future, |h| {
        set(h, "MCP-Protocol-Version", Some("2099-01-01"))
    }));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["id"], "f");
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(
        v["error"]["data"],
        json!({"supported": [V], "requested": "2099-01-01"})
    );
    // Legacy traffic with an unknown header and no envelope keeps its answer.
    let c = post_raw(
        &url,
        &[
            ("Content-Type".into(), "application/json".into()),
            (
                "Accept".into(),
                "application/json, text/event-stream".into(),
            ),
            ("MCP-Protocol-Version".into(), "1999-01-01".into()),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(c.status, 400);
    assert!(c.text().contains("Unsupported protocol version"));
}

#[test]
fn sx04_sx05_batches_and_responses_are_refused_notifications_accepted() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let h = headers_for(&modern(json!(1), "tools/list", json!({})));
    let batch = json!([
        modern(json!(1), "tools/list", json!({})),
        modern(json!(2), "tools/list", json!({}))
    ]);
    let c = post_raw(&url, &h, &batch.to_string());
    let (status, v) = json_reply(c);
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!(-32600)),
        "{v}"
    );
    let response = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
    let (status, v) = json_reply(post_raw(&url, &h, &response.to_string()));
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!(-32600)),
        "{v}"
    );
    // A notification: 202, no body, no session.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1,
        "_meta": {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut hh = h.clone();
    set(&mut hh, "Mcp-Method", Some("notifications/cancelled"));
    let c = post_raw(&url, &hh, &note.to_string());
    assert_eq!(c.status, 202);
    assert!(c.header("Mcp-Session-Id").is_none());
    assert_eq!(c.text(), "");
    // The same notification naming a version nobody serves: 400 -32022.
    set(&mut hh, "MCP-Protocol-Version", Some("2099-01-01"));
    let c = post_raw(&url, &hh, &note.to_string());
    assert_eq!(c.status, 400);
    assert_eq!(c.json()["error"]["code"], -32022);
}

#[test]
fn rl09_child_errors_set_the_http_status() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    // The child does not know the method: 404 with its -32601 (SX-22).
    let (status, v) = json_reply(post(&url, &modern(json!("u"), "nope/nothing", json!({}))));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (404, json!(-32601), json!("u")),
        "{v}"
    );
    for (code, want) in [
        (-32601, 404),
        (-32020, 400),
        (-32021, 400),
        (-32022, 400),
        (-32603, 200),
        (-32002, 200),
    ] {
        let body = modern_call(
            json!(code),
            "error",
            json!({"code": code, "message": "as asked"}),
        );
        let (status, v) = json_reply(post(&url, &body));
        assert_eq!(status, want, "child error {code}: {v}");
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["id"], code, "the id is restored (RL-03)");
    }
    // A legacy session gets the same child errors with 200, as always.
    let mut s = Session::open(
        &p.url,
        Kind::Streamable {
            version: "2025-11-25",
            json_only: true,
            get: false,
        },
        "legacy",
        json!({}),
    );
    s.post(&tool(
        json!(9),
        "error",
        json!({"code": -32601, "message": "x"}),
    ));
    let r = s.recv_response(&json!(9));
    assert_eq!(r["error"]["code"], -32601, "status 200 for legacy: {r}");
}

#[test]
fn rl04_sx08_sx09_progress_first_makes_an_sse_reply_without_event_ids() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let body = modern(
        json!("p"),
        "tools/call",
        json!({"name": "progress", "arguments": {"steps": 2, "ms": 5}, "_meta": {"progressToken": "tok"}}),
    );
    let c = post(&url, &body);
    assert_eq!(c.status, 200);
    assert!(c.is_sse(), "{:?}", c.headers);
    assert_eq!(c.header("X-Accel-Buffering"), Some("no"), "SX-08");
    assert!(c.header("Mcp-Session-Id").is_none(), "SX-40");
    let sse = c.sse();
    let mut seen = Vec::new();
    while let Some(e) = sse.next() {
        assert!(
            e.id.is_none(),
            "no resumable event ids on a modern stream (SX-09): {e:?}"
        );
        if e.event == "message" {
            seen.push(serde_json::from_str::<Value>(&e.data).unwrap());
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "two progress notifications, then the response: {seen:?}"
    );
    for (i, n) in seen[..2].iter().enumerate() {
        assert_eq!(n["method"], "notifications/progress");
        assert_eq!(
            n["params"]["progressToken"], "tok",
            "token restored (RL-03)"
        );
        assert_eq!(n["params"]["progress"], i as u64 + 1);
    }
    assert_eq!(seen[2]["id"], "p");
    assert_eq!(text_of(&seen[2]), "2 steps done");
}

#[test]
fn rl03_two_clients_with_the_same_id_and_token_get_their_own_replies() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let body = |steps: u64| {
        modern(
            json!(1),
            "tools/call",
            json!({"name": "progress", "arguments": {"steps": steps, "ms": 20}, "_meta": {"progressToken": 1}}),
        )
    };
    let a = post(&url, &body(2)).sse();
    let b = post(&url, &body(3)).sse();
    let gather = |s: &Sse| {
        let mut v = Vec::new();
        while let Some(e) = s.next() {
            if e.event == "message" {
                v.push(serde_json::from_str::<Value>(&e.data).unwrap());
            }
        }
        v
    };
    let (ga, gb) = (gather(&a), gather(&b));
    assert_eq!(ga.len(), 3, "{ga:?}");
    assert_eq!(gb.len(), 4, "{gb:?}");
    assert_eq!(text_of(ga.last().unwrap()), "2 steps done");
    assert_eq!(text_of(gb.last().unwrap()), "3 steps done");
    for n in ga.iter().chain(&gb).filter(|n| n.get("method").is_some()) {
        assert_eq!(n["params"]["progressToken"], 1);
    }
    assert!(
        ga.iter().all(|n| n["params"]["total"] != 3),
        "b's progress on a's stream: {ga:?}"
    );
}

#[test]
fn sx07_a_server_request_during_a_modern_call_is_refused_to_the_child() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let c = post(
        &url,
        &modern_call(json!("s"), "sample", json!({"prompt": "hi"})),
    );
    assert_eq!(c.status, 200);
    // Whatever the reply's form, it carries no request from the server.
    let msgs: Vec<Value> = if c.is_sse() {
        let sse = c.sse();
        std::iter::from_fn(|| sse.next())
            .filter(|e| e.event == "message")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    } else {
        vec![c.json()]
    };
    assert_eq!(msgs.len(), 1, "only the response: {msgs:?}");
    assert_eq!(msgs[0]["id"], "s");
    let t = text_of(&msgs[0]);
    assert!(
        t.starts_with("sampling failed"),
        "the child got an error: {t}"
    );
    assert!(t.contains("2026-07-28"), "{t}");
}

#[test]
fn sx10_rl06_closing_the_stream_cancels_the_request_at_the_child() {
    let p = Proxy::start(&["--keepalive", "1"]);
    let url = mcp(&p);
    let c = post(
        &url,
        &modern_call(json!("c1"), "slow", json!({"ms": 60000})),
    );
    // Nothing comes for a keepalive period: the proxy commits to a stream.
    assert_eq!(c.status, 200);
    assert!(c.is_sse());
    let sse = c.sse();
    p.wait_status("the slow call in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    sse.close();
    // The child is told, with the id it knows (never the client's "c1").
    let list = wait_cancelled(&url, "a cancelled request", |l| !l.is_empty());
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].parse::<u64>().is_ok(), "the rewritten id: {list:?}");
    p.wait_status("nothing in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 0
    });
}

/// SX-10 with no keepalive to give the hang-up away: a client that
/// closes its connection before any reply (JSON-only or SSE-capable) and
/// a listen stream closed with nothing on it are cancelled at the child
/// all the same; the proxy watches the sockets of 2026-07-28 exchanges.
#[test]
fn sx10_a_hang_up_is_noticed_without_any_keepalive() {
    let p = Proxy::start(&["--keepalive", "0"]);
    let url = mcp(&p);
    let addr = p.url.trim_start_matches("http://").to_owned();
    let raw = |body: &Value, accept: &str| {
        let mut h = headers_for(body);
        set(&mut h, "Accept", Some(accept));
        let body = body.to_string();
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &h {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        std::io::Write::write_all(&mut s, format!("{head}\r\n{body}").as_bytes()).expect("send");
        s
    };
    let a = raw(
        &modern_call(json!("a"), "slow", json!({"ms": 60000})),
        "application/json",
    );
    let b = raw(
        &modern_call(json!("b"), "slow", json!({"ms": 60000})),
        "application/json, text/event-stream",
    );
    let l = raw(
        &modern(
            json!("L"),
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        ),
        "application/json, text/event-stream",
    );
    p.wait_status("the two calls in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 3
    });
    drop((a, b, l));
    let list = wait_cancelled(&url, "three cancelled requests", |l| l.len() == 3);
    assert_eq!(list.len(), 3, "{list:?}");
    p.wait_status("nothing in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 0
    });
}

fn listen(url: &str, id: Value, notifications: Value) -> Sse {
    let body = modern(
        id,
        "subscriptions/listen",
        json!({"notifications": notifications}),
    );
    let c = post(url, &body);
    assert_eq!(c.status, 200);
    assert!(c.is_sse(), "a listen is a stream: {:?}", c.headers);
    assert_eq!(c.header("X-Accel-Buffering"), Some("no"));
    assert!(c.header("Mcp-Session-Id").is_none());
    c.sse()
}

#[test]
fn lc80_lc83_listen_streams_get_their_tagged_notifications_only() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let l1 = listen(
        &url,
        json!("L1"),
        json!({"toolsListChanged": true, "resourceSubscriptions": ["demo://a"]}),
    );
    let ack = l1.next_json();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "first (LC-81): {ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1",
        "RL-03: {ack}"
    );
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    let l2 = listen(&url, json!(2), json!({"promptsListChanged": true}));
    let ack2 = l2.next_json();
    assert_eq!(
        ack2["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        2
    );
    // A legacy session with a GET stream, for the untagged broadcast.
    let legacy = Session::open(
        &p.url,
        Kind::Streamable {
            version: "2025-11-25",
            json_only: false,
            get: true,
        },
        "legacy",
        json!({}),
    );
    assert_eq!(
        modern_text(&url, "n1", "notify_listeners", json!({"kind": "tools"})),
        "notified 1"
    );
    let n = l1.next_json();
    assert_eq!(n["method"], "notifications/tools/list_changed");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    assert_eq!(
        modern_text(
            &url,
            "n2",
            "notify_listeners",
            json!({"kind": "updated", "uri": "demo://a"})
        ),
        "notified 1"
    );
    let n = l1.next_json();
    assert_eq!(n["method"], "notifications/resources/updated");
    assert_eq!(n["params"]["uri"], "demo://a");
    assert_eq!(
        modern_text(&url, "n3", "notify_listeners", json!({"kind": "prompts"})),
        "notified 1"
    );
    let n = l2.next_json();
    assert_eq!(n["method"], "notifications/prompts/list_changed");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        2
    );
    // An untagged list_changed is legacy traffic: the legacy session gets
    // it, the listen streams do not (LC-80, SX-11).
    assert_eq!(modern_text(&url, "lc", "list_changed", json!({})), "sent");
    let (got, _) = legacy.recv_until("list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    assert!(got["params"].is_null(), "{got}");
    // The server ends the listens: the final result names the subscription
    // with the client's id (LC-83, RL-03), and each stream ends.
    assert_eq!(modern_text(&url, "e", "end_listens", json!({})), "ended 2");
    let fin = l1.next_json();
    assert_eq!(
        fin["id"], "L1",
        "no untagged traffic came before the end: {fin}"
    );
    assert_eq!(
        fin["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    assert_eq!(fin["result"]["resultType"], "complete");
    assert!(l1.next().is_none(), "the stream ends after its response");
    let fin2 = l2.next_json();
    assert_eq!(fin2["id"], 2);
    assert_eq!(
        fin2["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        2
    );
}

#[test]
fn lc42_a_listen_torn_down_by_the_server_gets_the_cancel_with_its_own_id() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let l = listen(&url, json!("L9"), json!({"toolsListChanged": true}));
    let _ack = l.next_json();
    assert_eq!(
        modern_text(&url, "e", "end_listens", json!({"abrupt": true})),
        "ended 1"
    );
    let c = l.next_json();
    assert_eq!(c["method"], "notifications/cancelled", "{c}");
    assert_eq!(
        c["params"]["requestId"], "L9",
        "the client's id (RL-03): {c}"
    );
    assert!(l.next().is_none(), "the stream ends with the subscription");
    p.wait_status("nothing in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 0
    });
}

#[test]
fn lc83_sx08_closing_a_listen_cancels_it_and_keepalives_flow() {
    let p = Proxy::start(&["--keepalive", "1"]);
    let url = mcp(&p);
    let body = modern(
        json!("L"),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    );
    let c = post(&url, &body);
    let raw = c.read_for(Duration::from_millis(2500));
    assert!(raw.contains("subscriptions/acknowledged"), "{raw}");
    assert!(
        raw.contains("\n: "),
        "a keepalive comment within 2.5 s at --keepalive 1: {raw}"
    );
    // read_for returned: the socket is dropped, the listen closed.
    let list = wait_cancelled(&url, "the listen cancelled", |l| !l.is_empty());
    assert!(
        list[0].parse::<u64>().is_ok(),
        "the child's id for it: {list:?}"
    );
    assert_eq!(
        modern_text(&url, "n", "notify_listeners", json!({"kind": "tools"})),
        "notified 0"
    );
    // A listen needs an SSE-capable client.
    let c = post_edit(
        &url,
        &modern(
            json!("j"),
            "subscriptions/listen",
            json!({"notifications": {}}),
        ),
        |h| set(h, "Accept", Some("application/json")),
    );
    assert_eq!(c.status, 406);
    assert_eq!(c.json()["id"], "j");
}

#[test]
fn st10_a_child_restart_ends_modern_exchanges_with_errors() {
    // `post` returns with the reply's head, which for a call that sends
    // nothing comes after a keepalive period: 1 s, well inside the test's
    // read timeout, where the default 15 s left it 5 s on a busy machine.
    let p = Proxy::start(&["--restart-backoff", "0.1", "--keepalive", "1"]);
    let url = mcp(&p);
    let l = listen(&url, json!("L"), json!({"toolsListChanged": true}));
    let _ack = l.next_json();
    let slow = post(
        &url,
        &modern_call(json!("slow"), "slow", json!({"ms": 60000})),
    );
    p.wait_status("the listen and the slow call in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 2
    });
    let c = post(&url, &modern_call(json!("boom"), "crash", json!({})));
    let (status, v) = json_reply(c);
    assert_eq!((status, v["id"].clone()), (200, json!("boom")), "{v}");
    assert_eq!(v["error"]["code"], -32603);
    let e = l.next_json();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!("L"), json!(-32603)),
        "{e}"
    );
    assert!(l.next().is_none(), "the listen stream ends");
    let (status, v) = if slow.is_sse() {
        let s = slow.sse();
        (200, s.next_json())
    } else {
        let st = slow.status;
        (st, slow.json())
    };
    assert_eq!(
        (status, v["id"].clone(), v["error"]["code"].clone()),
        (200, json!("slow"), json!(-32603)),
        "{v}"
    );
    // The new child serves modern requests again.
    p.wait_ready();
    assert_eq!(
        modern_text(&url, "again", "echo", json!({"text": "back"})),
        "back"
    );
}

#[test]
fn lc22_server_discover_is_relayed_and_a_legacy_child_makes_clients_fall_back() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let (status, v) = json_reply(post(
        &url,
        &modern(json!("d"), "server/discover", json!({})),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], "d");
    let versions = v["result"]["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(V)), "{v}");
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
    // A child from before 2026-07-28: discover is unknown to it, 404 with
    // -32601, which sends a dual-era client (the Python SDK's
    // mode="auto") to initialize on the same endpoint, which works.
    let legacy = format!("{} --legacy-only", demo_bin());
    let p = Proxy::start(&["--named-server", "old", &legacy]);
    let url = format!("{}/servers/old/mcp", p.url);
    discover_refused(&url);
    // Any other modern request is refused, naming the versions it does
    // speak (RL-11, SX-42), instead of a legacy-shaped answer.
    let (status, v) = json_reply(post(
        &url,
        &modern_call(json!("e"), "echo", json!({"text": "x"})),
    ));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32022), json!("e")),
        "{v}"
    );
    assert_eq!(v["error"]["data"]["requested"], V);
    assert!(
        v["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25")),
        "{v}"
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}});
    let c = post_mcp(&url, None, &init.to_string());
    assert_eq!(c.status, 200);
    assert!(
        c.header("Mcp-Session-Id").is_some(),
        "the legacy handshake mints a session"
    );
    assert_eq!(c.json()["result"]["protocolVersion"], "2025-11-25");
}

/// `/status` says, per server, whether its child serves 2026-07-28 too:
/// what the proxy learnt from its `server/discover` probe.
#[test]
fn status_says_which_servers_serve_2026_07_28() {
    let legacy = format!("{} --legacy-only", demo_bin());
    let p = Proxy::start(&[
        "--named-server",
        "old",
        &legacy,
        "--named-server",
        "new",
        demo_bin(),
    ]);
    let st = p.wait_status("both probes answered", |s| {
        !s["servers"]["old"]["serves_2026_07_28"].is_null()
            && !s["servers"]["new"]["serves_2026_07_28"].is_null()
    });
    assert_eq!(st["servers"]["old"]["serves_2026_07_28"], false, "{st}");
    assert_eq!(st["servers"]["new"]["serves_2026_07_28"], true, "{st}");
}

#[test]
fn st15_a_child_silent_on_discover_counts_as_legacy() {
    // The probe waits at most --init-timeout (and 5 s): then the child is
    // taken for a legacy server, as ST-15 says a client should.
    let silent = format!("{} --legacy-only --silent-discover", demo_bin());
    let mut p = Proxy::start(&["--init-timeout", "1", "--named-server", "quiet", &silent]);
    let url = format!("{}/servers/quiet/mcp", p.url);
    discover_refused(&url);
    p.proc
        .wait_stderr("did not answer server/discover in time", common::WAIT);
    let (status, v) = json_reply(post(
        &url,
        &modern_call(json!(1), "echo", json!({"text": "x"})),
    ));
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!(-32022)),
        "{v}"
    );
}

#[test]
fn lc23_log_messages_reach_a_modern_call_only_when_it_asked_for_them() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    // No logLevel in _meta: the child's log message is not delivered.
    let (status, v) = json_reply(post(
        &url,
        &modern_call(json!(1), "log", json!({"level": "info", "text": "hidden"})),
    ));
    assert_eq!((status, text_of(&v)), (200, "logged".into()), "{v}");
    // With one: the message, then the response, on one stream.
    let body = modern(
        json!(2),
        "tools/call",
        json!({"name": "log", "arguments": {"level": "warning", "text": "shown"},
               "_meta": {"io.modelcontextprotocol/logLevel": "info"}}),
    );
    let c = post(&url, &body);
    assert!(c.is_sse(), "{:?}", c.headers);
    let s = c.sse();
    let m = s.next_json();
    assert_eq!(
        (m["method"].clone(), m["params"]["data"].clone()),
        (json!("notifications/message"), json!("shown")),
        "{m}"
    );
    assert_eq!(text_of(&s.next_json()), "logged");
    // Below the asked level: not delivered.
    let body = modern(
        json!(3),
        "tools/call",
        json!({"name": "log", "arguments": {"level": "debug", "text": "quiet"},
               "_meta": {"io.modelcontextprotocol/logLevel": "error"}}),
    );
    let (status, v) = json_reply(post(&url, &body));
    assert_eq!((status, text_of(&v)), (200, "logged".into()), "{v}");
}

#[test]
fn sx40_get_and_delete_without_a_session_keep_their_answers() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    for (method, headers) in [
        (
            "GET",
            vec![("Accept", "text/event-stream"), ("MCP-Protocol-Version", V)],
        ),
        ("GET", vec![("Accept", "text/event-stream")]),
        ("DELETE", vec![("MCP-Protocol-Version", V)]),
    ] {
        let c = send(method, &url, &headers, None);
        assert_eq!(c.status, 400, "{method} {headers:?}");
        assert!(c.header("Mcp-Session-Id").is_none());
    }
    let p = Proxy::start(&["--stateless"]);
    let c = send("GET", &mcp(&p), &[("Accept", "text/event-stream")], None);
    assert_eq!(c.status, 405);
    // --stateless serves modern requests the same way.
    assert_eq!(
        modern_text(&mcp(&p), "s", "echo", json!({"text": "ok"})),
        "ok"
    );
}

#[test]
fn both_ends_ours_client_mode_to_server_mode_in_2026_07_28() {
    // stdio client => mcp-proxy client mode => /mcp => mcp-proxy server
    // mode => the demo server: the headers one half writes (base64 for a
    // non-ASCII name, SX-25) are the ones the other half checks.
    let p = Proxy::start(&[]);
    let mut c = common::Proc::spawn(common::proxy_bin(), &[&mcp(&p)]);
    c.send_json(&modern(json!(1), "server/discover", json!({})));
    let d = c.recv_response(&json!(1));
    assert!(
        d["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(V)),
        "{d}"
    );
    c.send_json(&modern_call(json!("n"), "échο", json!({})));
    let r = c.recv_response(&json!("n"));
    assert_eq!(
        r["error"]["code"], -32602,
        "checked and relayed, the child's own error: {r}"
    );
    c.send_json(&modern(
        json!("L"),
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    ));
    let (ack, _) = c.recv_until("the acknowledgement", |v| {
        v["method"] == "notifications/subscriptions/acknowledged"
    });
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    c.send_json(&modern_call(
        json!(2),
        "notify_listeners",
        json!({"kind": "tools"}),
    ));
    // The notification comes on the listen stream, the reply on the call's
    // own connection: either may reach stdout first.
    let (n, skipped) = c.recv_until("the tagged list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    let r = match skipped.into_iter().find(|v| v["id"] == 2) {
        Some(r) => r,
        None => c.recv_response(&json!(2)),
    };
    assert_eq!(text_of(&r), "notified 1");
}

/// `/metrics` counts a 2026-07-28 exchange as a session of its own
/// transport while it runs, and not after.
#[test]
fn a_modern_exchange_in_progress_shows_in_metrics() {
    let p = Proxy::start(&[]);
    let url = mcp(&p);
    let sample = r#"mcp_proxy_sessions{server="default",transport="modern"}"#;
    let gauge = |base: &str| -> String {
        let m = send("GET", &format!("{base}/metrics"), &[], None).text();
        m.lines()
            .find_map(|l| l.strip_prefix(sample))
            .unwrap_or_else(|| panic!("no {sample} in:\n{m}"))
            .trim()
            .to_owned()
    };
    assert_eq!(gauge(&p.url), "0");
    let slow = {
        let url = url.clone();
        thread::spawn(move || modern_text(&url, "slow", "slow", json!({"ms": 60000})))
    };
    let deadline = Instant::now() + common::WAIT;
    while gauge(&p.url) != "1" {
        assert!(Instant::now() < deadline, "the slow call never showed");
        thread::sleep(Duration::from_millis(20));
    }
    drop(slow);
    assert_eq!(
        modern_text(&url, "quick", "echo", json!({"text": "hi"})),
        "hi"
    );
    assert_eq!(gauge(&p.url), "1", "only the slow call is still running");
}
