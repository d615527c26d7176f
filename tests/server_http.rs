//! Server mode endpoints and status codes: HTTP+SSE (HS-*), Streamable
//! HTTP (SH-*), RL-04 JSON-vs-SSE, resumability, Origin/Host (SH-02), CORS
//! as upstream does it, stateless mode, /status.

mod common;
mod server_support;

use common::demo_bin;
use serde_json::{json, Value};
use server_support::*;
use std::time::Duration;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"VERSION","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

fn init_body(version: &str) -> String {
    INIT.replace("VERSION", version)
}

/// A Streamable HTTP session: its id.
fn open_streamable(p: &Proxy, version: &str) -> String {
    let c = post_mcp(&format!("{}/mcp", p.url), None, &init_body(version));
    assert_eq!(c.status, 200);
    let sid = c.header("Mcp-Session-Id").expect("session id").to_owned();
    assert_eq!(c.json()["result"]["protocolVersion"], version);
    sid
}

fn call(id: u64, name: &str, args: Value) -> String {
    tool(json!(id), name, args).to_string()
}

#[test]
fn legacy_sse_endpoint_event_and_message_status_codes() {
    let p = Proxy::start(&[]);
    let c = send("GET", &format!("{}/sse", p.url), &[], None);
    assert_eq!(c.status, 200);
    assert_eq!(c.header("Cache-Control"), Some("no-cache"));
    assert_eq!(c.header("X-Accel-Buffering"), Some("no"));
    assert!(c.is_sse());
    let sse = c.sse();
    let ev = sse.next().unwrap();
    assert_eq!(ev.event, "endpoint");
    let sid = ev
        .data
        .strip_prefix("/messages/?session_id=")
        .expect(&ev.data)
        .to_owned();
    assert_eq!(sid.len(), 32);
    assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));
    let msgs = |q: &str, ct: &str, body: &str| {
        let c = send(
            "POST",
            &format!("{}/messages/{q}", p.url),
            &[("Content-Type", ct)],
            Some(body.as_bytes()),
        );
        (c.status, c.text())
    };
    let ping = r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#;
    let json = "application/json";
    assert_eq!(msgs("", json, ping), (400, "session_id is required".into()));
    assert_eq!(
        msgs("?session_id=xyz", json, ping),
        (400, "Invalid session ID".into())
    );
    let unknown = format!("?session_id={}", "0".repeat(32));
    assert_eq!(
        msgs(&unknown, json, ping),
        (404, "Could not find session".into())
    );
    let q = format!("?session_id={sid}");
    assert_eq!(
        msgs(&q, "text/plain", ping),
        (400, "Invalid Content-Type header".into())
    );
    let (st, body) = msgs(&q, json, "{not json");
    assert_eq!(st, 400);
    assert!(body.starts_with("Could not parse message"), "{body}");
    // The session lives on.
    assert_eq!(msgs(&q, json, ping), (202, "Accepted".into()));
    assert_eq!(
        sse.next_json(),
        json!({"jsonrpc": "2.0", "id": "p", "result": {}})
    );
    let g = send("GET", &format!("{}/messages/{q}", p.url), &[], None);
    assert_eq!(g.status, 405);
    assert_eq!(g.header("Allow"), Some("POST"));
}

#[test]
fn named_servers_are_mounted_under_servers_name() {
    let alpha = format!("{} --name alpha", demo_bin());
    let p = Proxy::start(&["--named-server", "alpha", &alpha]);
    let c = send("GET", &format!("{}/servers/alpha/sse", p.url), &[], None);
    let sse = c.sse();
    let ev = sse.next().unwrap();
    assert!(
        ev.data.starts_with("/servers/alpha/messages/?session_id="),
        "{}",
        ev.data
    );
    let c = post_mcp(
        &format!("{}/servers/alpha/mcp", p.url),
        None,
        &init_body("2025-06-18"),
    );
    assert_eq!(c.json()["result"]["serverInfo"]["name"], "alpha");
    let c = post_mcp(&format!("{}/mcp", p.url), None, &init_body("2025-06-18"));
    assert_eq!(c.json()["result"]["serverInfo"]["name"], "mcp-demo-server");
    assert_eq!(
        send("GET", &format!("{}/servers/nope/sse", p.url), &[], None).status,
        404
    );
    let s = p.status();
    assert_eq!(
        s["server_instances"],
        json!({"default": "running", "alpha": "running"})
    );
    assert_eq!(s["servers"]["alpha"]["sse_connections"], 1);
    assert!(s["servers"]["alpha"]["pid"].as_u64().is_some());
    assert!(
        p.proc.stderr().contains("/servers/alpha/mcp"),
        "URLs printed"
    );
}

/// Upstream redirects `/servers/NAME/sse/` to `/servers/NAME/sse`, so
/// clients that saved the slash form must get the same stream from us, with
/// an endpoint event naming the same mount's `/messages/`.
#[test]
fn sse_with_a_trailing_slash_is_the_sse_endpoint() {
    let alpha = format!("{} --name alpha", demo_bin());
    let p = Proxy::start(&["--named-server", "alpha", &alpha]);
    for (prefix, server) in [("", "mcp-demo-server"), ("/servers/alpha", "alpha")] {
        let c = send("GET", &format!("{}{prefix}/sse/", p.url), &[], None);
        assert_eq!(c.status, 200, "GET {prefix}/sse/");
        let sse = c.sse();
        let ev = sse.next().unwrap();
        assert_eq!(ev.event, "endpoint");
        let endpoint = ev.data.clone();
        assert!(
            endpoint.starts_with(&format!("{prefix}/messages/?session_id=")),
            "{prefix}/sse/ endpoint event: {endpoint}"
        );
        let c = send(
            "POST",
            &format!("{}{endpoint}", p.url),
            &[("Content-Type", "application/json")],
            Some(init_body("2024-11-05").as_bytes()),
        );
        assert_eq!(c.status, 202, "POST {endpoint}");
        assert_eq!(sse.next_json()["result"]["serverInfo"]["name"], server);
        let h = send("HEAD", &format!("{}{prefix}/sse/", p.url), &[], None);
        assert_eq!(h.status, 200, "HEAD {prefix}/sse/");
        let post = send("POST", &format!("{}{prefix}/sse/", p.url), &[], None);
        assert_eq!(post.status, 405, "POST {prefix}/sse/");
    }
    assert_eq!(
        send("GET", &format!("{}/servers/alpha/sse//", p.url), &[], None).status,
        404
    );
}

#[test]
fn streamable_session_rules() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    // No session, unknown session.
    let c = post_mcp(&url, None, ping);
    assert_eq!(c.status, 400);
    assert!(c.text().contains("Missing session ID"));
    assert_eq!(post_mcp(&url, Some(&"f".repeat(32)), ping).status, 404);
    let sid = open_streamable(&p, "2025-06-18");
    // /mcp/ is the same endpoint; /mcp/x is not.
    let c = post_mcp(&format!("{url}/"), Some(&sid), ping);
    assert_eq!(c.json(), json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    assert_eq!(post_mcp(&format!("{url}/x"), Some(&sid), ping).status, 404);
    // Notifications and responses: 202.
    let n = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post_mcp(&url, Some(&sid), n).status, 202);
    // Accept, Content-Type, protocol version.
    let post = |h: &[(&str, &str)], body: &str| {
        let mut hh = vec![("Mcp-Session-Id", sid.as_str())];
        hh.extend_from_slice(h);
        send("POST", &url, &hh, Some(body.as_bytes()))
    };
    let ct = ("Content-Type", "application/json");
    let acc = ("Accept", "application/json, text/event-stream");
    // Refused before the body is needed, but with the request's id when
    // the body shows one (SX-32).
    let refused = |c: Conn, status: u16| {
        assert_eq!(c.status, status);
        let v = c.json();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(2), json!(-32000)),
            "{v}"
        );
    };
    refused(post(&[ct], ping), 406);
    refused(post(&[ct, ("Accept", "text/html")], ping), 406);
    refused(post(&[acc, ("Content-Type", "text/plain")], ping), 415);
    let c = post(&[acc, ("Content-Type", "text/plain")], "not json");
    assert_eq!((c.status, c.json()["id"].clone()), (415, Value::Null));
    let c = post(&[ct, acc, ("MCP-Protocol-Version", "1999-01-01")], ping);
    assert_eq!(c.status, 400);
    assert!(c.text().contains("Unsupported protocol version"));
    assert_eq!(
        post(&[ct, acc, ("MCP-Protocol-Version", "2025-06-18")], ping).status,
        200
    );
    // Malformed input: clear errors, and the session lives on.
    let c = post(&[ct, acc], "{oops");
    assert_eq!(c.status, 400);
    assert_eq!(c.json()["error"]["code"], -32700);
    let c = send(
        "POST",
        &url,
        &[ct, acc, ("Mcp-Session-Id", &sid)],
        Some(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}"),
    );
    assert_eq!(c.status, 400);
    assert!(c.text().contains("UTF-8"));
    let c = post(&[ct, acc], r#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#);
    assert_eq!(c.status, 400);
    assert_eq!(c.json()["error"]["code"], -32600);
    // Batches belong to 2025-03-26 only.
    let batch = format!("[{ping},{}]", r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    let c = post(&[ct, acc], &batch);
    assert_eq!(c.status, 400);
    assert_eq!(c.json()["error"]["code"], -32600);
    assert_eq!(post(&[ct, acc], ping).status, 200);
    // GET stream: one per session.
    let get = || {
        send(
            "GET",
            &url,
            &[("Accept", "text/event-stream"), ("Mcp-Session-Id", &sid)],
            None,
        )
    };
    let g1 = get();
    assert_eq!(g1.status, 200);
    assert!(g1.is_sse());
    assert_eq!(g1.header("Cache-Control"), Some("no-cache"));
    assert_eq!(g1.header("X-Accel-Buffering"), Some("no"));
    assert_eq!(get().status, 409);
    let no_accept = send("GET", &url, &[("Mcp-Session-Id", &sid)], None);
    assert_eq!(no_accept.status, 406);
    // DELETE ends it: then 404 everywhere.
    let del = || send("DELETE", &url, &[("Mcp-Session-Id", &sid)], None).status;
    assert_eq!(del(), 200);
    assert_eq!(
        g1.read_for(Duration::from_secs(5)),
        "0\r\n\r\n",
        "the GET stream ends with its last chunk"
    );
    assert_eq!(del(), 404);
    assert_eq!(post(&[ct, acc], ping).status, 404);
    assert_eq!(get().status, 404);
    let put = send("PUT", &url, &[], Some(b"x"));
    assert_eq!(put.status, 405);
    assert_eq!(put.header("Allow"), Some("GET, POST, DELETE"));
}

#[test]
fn batches_work_for_2025_03_26_sessions() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let sid = open_streamable(&p, "2025-03-26");
    let batch = format!(
        "[{},{},{}]",
        call(1, "echo", json!({"text": "one"})),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        call(2, "echo", json!({"text": "two"}))
    );
    let c = send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Mcp-Session-Id", &sid),
        ],
        Some(batch.as_bytes()),
    );
    assert_eq!(c.status, 200);
    let v = c.json();
    let mut texts: Vec<String> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(text_of)
        .collect();
    texts.sort();
    assert_eq!(texts, ["one", "two"]);
    let c = post_mcp(&url, Some(&sid), "[]");
    assert_eq!(c.status, 400);
}

#[test]
fn post_answers_json_when_the_response_comes_first_and_sse_otherwise() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let sid = open_streamable(&p, "2025-06-18");
    let c = post_mcp(&url, Some(&sid), &call(1, "echo", json!({"text": "hi"})));
    assert_eq!(c.header("Content-Type"), Some("application/json"));
    assert_eq!(text_of(&c.json()), "hi");
    let body = tool(json!(2), "progress", json!({"steps": 2})).to_string();
    let body = body.replace(
        "\"params\":{",
        "\"params\":{\"_meta\":{\"progressToken\":7},",
    );
    let c = post_mcp(&url, Some(&sid), &body);
    assert!(c.is_sse());
    let raw = c.text();
    assert!(!raw.contains("retry:"), "no priming for 2025-06-18: {raw}");
    let sse = sse_messages(&raw);
    assert_eq!(sse.len(), 3, "{raw}");
    assert_eq!(sse[0]["params"]["progressToken"], 7);
    assert_eq!(sse[1]["params"]["progress"], 2);
    assert_eq!(text_of(&sse[2]), "2 steps done");
    // A JSON-only client gets JSON; its progress has nowhere to go.
    let c = send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Mcp-Session-Id", &sid),
        ],
        Some(body.replace("\"id\":2", "\"id\":3").as_bytes()),
    );
    assert_eq!(c.header("Content-Type"), Some("application/json"));
    assert_eq!(text_of(&c.json()), "2 steps done");
}

fn sse_messages(raw: &str) -> Vec<Value> {
    let mut p = common::sse::Parser::new(1 << 20);
    let mut items = Vec::new();
    p.feed(raw.as_bytes(), &mut items);
    items
        .into_iter()
        .filter_map(|i| match i {
            common::sse::Item::Event(e) if e.event == "message" => {
                Some(serde_json::from_str(&e.data).unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn priming_event_and_retry_only_for_2025_11_25() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let sid = open_streamable(&p, "2025-11-25");
    let body = tool(json!(2), "progress", json!({"steps": 1})).to_string();
    let body = body.replace(
        "\"params\":{",
        "\"params\":{\"_meta\":{\"progressToken\":\"t\"},",
    );
    let c = post_mcp(&url, Some(&sid), &body);
    let raw = c.text();
    let first = raw.split("\n\n").next().unwrap();
    assert!(
        first.contains("id: ") && first.contains("retry: ") && first.contains("data: "),
        "{raw}"
    );
    assert_eq!(sse_messages(&raw).len(), 2, "{raw}");
}

#[test]
fn get_stream_resumes_after_last_event_id() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let sid = open_streamable(&p, "2025-06-18");
    let open = |last: Option<&str>| {
        let mut h = vec![
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", sid.as_str()),
        ];
        if let Some(l) = last {
            h.push(("Last-Event-ID", l));
        }
        send("GET", &url, &h, None).sse()
    };
    let changed = |id: u64| {
        let c = post_mcp(&url, Some(&sid), &call(id, "list_changed", json!({})));
        assert_eq!(text_of(&c.json()), "sent");
    };
    let g = open(None);
    changed(1);
    let e1 = g.next().unwrap();
    assert_eq!(e1.event, "message");
    changed(2);
    let e2 = g.next().unwrap();
    g.close();
    changed(3);
    let g = open(e1.id.as_deref());
    let replayed = g.next().unwrap();
    assert_eq!(replayed.id, e2.id, "replay starts after the given id");
    assert_eq!(replayed.data, e2.data);
    let third = g.next().unwrap();
    assert!(third.data.contains("list_changed"), "{third:?}");
    assert_ne!(third.id, e2.id);
}

#[test]
fn every_stream_sends_keepalives() {
    let p = Proxy::start(&["--keepalive", "1"]);
    let c = send("GET", &format!("{}/sse", p.url), &[], None);
    let raw = c.read_for(Duration::from_millis(2500));
    assert!(raw.contains("\n: ping") || raw.contains(": ping"), "{raw}");
}

#[test]
fn body_limit_gives_413_and_the_session_lives_on() {
    let p = Proxy::start(&["--max-body-size", "2000"]);
    let url = format!("{}/mcp", p.url);
    let sid = open_streamable(&p, "2025-06-18");
    let big = call(1, "echo", json!({"text": "x".repeat(5000)}));
    assert_eq!(post_mcp(&url, Some(&sid), &big).status, 413);
    let c = post_mcp(&url, Some(&sid), &call(2, "echo", json!({"text": "small"})));
    assert_eq!(text_of(&c.json()), "small");
}

#[test]
fn origin_and_host_checks() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let with = |h: &[(&str, &str)]| {
        let mut hh = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        hh.extend_from_slice(h);
        send("POST", &url, &hh, Some(init_body("2025-06-18").as_bytes())).status
    };
    assert_eq!(with(&[("Origin", "http://evil.example")]), 403);
    assert_eq!(with(&[("Origin", "null")]), 403);
    assert_eq!(with(&[("Origin", "http://localhost:3000")]), 200);
    assert_eq!(with(&[("Origin", "http://127.0.0.1:9")]), 200);
    assert_eq!(with(&[("Host", "evil.example.com")]), 403);
    assert_eq!(with(&[("Host", "localhost:1234")]), 200);
    assert_eq!(with(&[("Host", "[::1]")]), 200);
    let sse = send(
        "GET",
        &format!("{}/sse", p.url),
        &[("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(sse.status, 403);
}

/// Status of an `initialize` POST to `url` with these extra headers.
fn init_status(url: &str, h: &[(&str, &str)]) -> u16 {
    let mut hh = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    hh.extend_from_slice(h);
    send("POST", url, &hh, Some(init_body("2025-06-18").as_bytes())).status
}

/// nginx with `proxy_set_header Host $host` sends the public name: a
/// loopback proxy refuses it (SH-02) unless `--allow-host` names it.
#[test]
fn allow_host_admits_a_reverse_proxys_host_on_loopback() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    assert_eq!(init_status(&url, &[("Host", "mcp.example.com")]), 403);

    let p = Proxy::start(&[
        "--allow-host",
        "mcp.example.com,b.example",
        "--allow-host",
        "c.example:8443",
    ]);
    let url = format!("{}/mcp", p.url);
    for host in [
        "mcp.example.com",
        "MCP.Example.COM:443",
        "b.example",
        "c.example",
        "localhost:1",
        "127.0.0.1",
        "[::1]:80",
    ] {
        assert_eq!(init_status(&url, &[("Host", host)]), 200, "Host: {host}");
    }
    for host in [
        "evil.example.com",
        "mcp.example.com.evil.example",
        "example.com",
    ] {
        assert_eq!(init_status(&url, &[("Host", host)]), 403, "Host: {host}");
    }
    // A browser on the public origin, through the reverse proxy.
    let h = [
        ("Host", "mcp.example.com"),
        ("Origin", "https://mcp.example.com"),
    ];
    assert_eq!(init_status(&url, &h), 200);
    let sse = send("GET", &format!("{}/sse", p.url), &h, None);
    assert_eq!(sse.status, 200);
    let ev = sse.sse().next().unwrap();
    assert!(ev.data.starts_with("/messages/?session_id="), "{}", ev.data);
    assert!(
        p.proc
            .stderr()
            .contains("refused a request for Host \"evil.example.com\""),
        "a refused Host is logged"
    );

    // '*' turns the check off.
    let p = Proxy::start(&["--allow-host", "*"]);
    let url = format!("{}/mcp", p.url);
    assert_eq!(init_status(&url, &[("Host", "evil.example.com")]), 200);
}

/// On a wildcard bind there is no Host check unless `--allow-host` is
/// given; then the same check as on loopback applies.
#[test]
fn allow_host_opts_a_wildcard_bind_into_the_host_check() {
    const TOKEN: &str = "allow-host-test-token";
    let bearer = format!("Bearer {TOKEN}");
    // Listening on every address, talking to it over 127.0.0.1 only.
    let wildcard = |extra: &[&str]| {
        let mut args = vec!["--host", "0.0.0.0", "--port", "0", "--auth-token", TOKEN];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", demo_bin()]);
        let mut p = Proxy::start_raw(&args);
        p.url = p.url.replace("0.0.0.0", "127.0.0.1");
        p.wait_ready();
        let url = format!("{}/mcp", p.url);
        (p, url)
    };
    let (_p, url) = wildcard(&[]);
    let auth = ("Authorization", bearer.as_str());
    assert_eq!(
        init_status(&url, &[auth, ("Host", "anything.example")]),
        200
    );

    let (_p, url) = wildcard(&["--allow-host", "mcp.example.com"]);
    assert_eq!(init_status(&url, &[auth, ("Host", "mcp.example.com")]), 200);
    assert_eq!(init_status(&url, &[auth, ("Host", "127.0.0.1:9")]), 200);
    assert_eq!(
        init_status(&url, &[auth, ("Host", "anything.example")]),
        403
    );
    assert_eq!(init_status(&url, &[auth, ("Host", "0.0.0.0")]), 403);
}

#[test]
fn cors_like_upstream() {
    let p = Proxy::start(&[
        "--allow-origin",
        "http://app.example",
        "--expose-header",
        "mcp-session-id",
    ]);
    let url = format!("{}/mcp", p.url);
    let pre = send(
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, mcp-session-id",
            ),
        ],
        None,
    );
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("Access-Control-Allow-Origin"),
        Some("http://app.example")
    );
    assert_eq!(pre.header("Access-Control-Max-Age"), Some("600"));
    assert!(pre
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(
        pre.header("Access-Control-Allow-Headers"),
        Some("content-type, mcp-session-id")
    );
    let bad = send(
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), "Disallowed CORS origin");
    let c = send(
        "POST",
        &url,
        &[
            ("Origin", "http://app.example"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        Some(init_body("2025-06-18").as_bytes()),
    );
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("Access-Control-Allow-Origin"),
        Some("http://app.example")
    );
    assert_eq!(
        c.header("Access-Control-Expose-Headers"),
        Some("mcp-session-id")
    );
    let s = send(
        "GET",
        &format!("{}/status", p.url),
        &[("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(s.status, 403);
    // '*' allows any origin.
    let p = Proxy::start(&["--allow-origin", "*"]);
    let s = send(
        "GET",
        &format!("{}/status", p.url),
        &[("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.header("Access-Control-Allow-Origin"), Some("*"));
}

#[test]
fn stateless_mode_needs_no_session() {
    let p = Proxy::start(&["--stateless"]);
    let url = format!("{}/mcp", p.url);
    let c = post_mcp(&url, None, &call(1, "echo", json!({"text": "no init"})));
    assert_eq!(c.status, 200);
    assert!(c.header("Mcp-Session-Id").is_none());
    assert_eq!(text_of(&c.json()), "no init");
    let c = post_mcp(&url, None, &init_body("2025-06-18"));
    assert!(c.header("Mcp-Session-Id").is_none());
    assert_eq!(c.json()["result"]["protocolVersion"], "2025-06-18");
    let n = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post_mcp(&url, None, n).status, 202);
    let g = send("GET", &url, &[("Accept", "text/event-stream")], None);
    assert_eq!(g.status, 405);
    let s = p.status();
    assert_eq!(s["servers"]["default"]["sessions"], 0, "{s}");
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0, "{s}");
}

#[test]
fn status_has_upstream_keys_in_order_and_tells_the_truth() {
    let p = Proxy::start(&[]);
    let raw = send("GET", &format!("{}/status", p.url), &[], None).text();
    let pos = |k: &str| {
        raw.find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k} in {raw}"))
    };
    assert_eq!(pos("api_last_activity"), 1, "{raw}");
    assert!(
        pos("active_sse_connections") < pos("server_instances"),
        "{raw}"
    );
    let before = p.status()["api_last_activity"].clone();
    assert_eq!(
        p.status()["api_last_activity"],
        before,
        "/status does not count as activity"
    );
    let sid = open_streamable(&p, "2025-06-18");
    let s = p.status();
    assert_ne!(s["api_last_activity"], before);
    assert_eq!(s["servers"]["default"]["sessions"], 1);
    assert_eq!(s["server_instances"]["default"], "running");
    let _c = write_request(
        "POST",
        &format!("{}/mcp", p.url),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Mcp-Session-Id", &sid),
        ],
        Some(call(1, "slow", json!({"ms": 5000})).as_bytes()),
    );
    p.wait_status("a request in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    assert_eq!(
        send("POST", &format!("{}/status", p.url), &[], Some(b"")).status,
        405
    );
    assert_eq!(
        send("GET", &format!("{}/nothing", p.url), &[], None).status,
        404
    );
}

#[test]
fn smaller_rules_head_get_version_second_initialize_stateless_progress() {
    let p = Proxy::start(&[]);
    let url = format!("{}/mcp", p.url);
    let h = send("HEAD", &format!("{}/sse", p.url), &[], None);
    assert_eq!(h.status, 200);
    assert!(h.is_sse());
    assert_eq!(
        p.status()["active_sse_connections"],
        0,
        "HEAD opens no session"
    );
    let sid = open_streamable(&p, "2025-06-18");
    let g = send(
        "GET",
        &url,
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &sid),
            ("MCP-Protocol-Version", "2030-01-01"),
        ],
        None,
    );
    assert_eq!(g.status, 400);
    let g = send("GET", &url, &[("Accept", "text/event-stream")], None);
    assert_eq!(g.status, 400, "GET without a session");
    let again = post_mcp(&url, Some(&sid), &init_body("2025-06-18")).json();
    assert_eq!(again["error"]["code"], -32600, "{again}");
    assert_eq!(send("DELETE", &url, &[], None).status, 400);

    let p = Proxy::start(&["--stateless"]);
    let body = tool(json!("st"), "progress", json!({"steps": 2})).to_string();
    let body = body.replace(
        "\"params\":{",
        "\"params\":{\"_meta\":{\"progressToken\":\"tk\"},",
    );
    let c = post_mcp(&format!("{}/mcp", p.url), None, &body);
    assert!(c.is_sse());
    let msgs = sse_messages(&c.text());
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_eq!(msgs[0]["params"]["progressToken"], "tk");
    assert_eq!(msgs[2]["id"], "st");
}

#[test]
fn idle_streamable_sessions_end_after_the_session_timeout() {
    let p = Proxy::start(&["--session-timeout", "1"]);
    let url = format!("{}/mcp", p.url);
    let idle = open_streamable(&p, "2025-06-18");
    let watched = open_streamable(&p, "2025-06-18");
    let g = send(
        "GET",
        &url,
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &watched),
        ],
        None,
    );
    assert_eq!(g.status, 200);
    let _legacy = send("GET", &format!("{}/sse", p.url), &[], None).sse();
    p.wait_status("the idle session gone", |s| {
        s["servers"]["default"]["sessions"] == 2
    });
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    assert_eq!(post_mcp(&url, Some(&idle), ping).status, 404);
    assert_eq!(
        post_mcp(&url, Some(&watched), ping).status,
        200,
        "a session with an open stream stays"
    );
}

#[test]
fn stateless_sampling_answer_comes_in_another_post() {
    let p = Proxy::start(&["--stateless"]);
    let url = format!("{}/mcp", p.url);
    let c = post_mcp(&url, None, &call(1, "sample", json!({"prompt": "hi"})));
    assert!(c.is_sse());
    let sse = c.sse();
    let ask = sse.next_json();
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "stateless"}, "model": "m"}});
    assert_eq!(post_mcp(&url, None, &answer.to_string()).status, 202);
    assert_eq!(text_of(&sse.next_json()), "sampled: stateless");
}
