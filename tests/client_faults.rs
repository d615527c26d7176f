//! Client mode when things go wrong: an unreachable or failing remote, a
//! remote restart mid-session, an expired session (404), dropped streams,
//! garbage and oversized messages, malformed stdin, usage errors, and
//! secrets kept out of the logs.

mod client_support;
mod common;
use client_support::*;
use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {v}"))
        .to_owned()
}

/// A remote that refuses connections: every request gets an error at
/// once naming the URL and the cause; the proxy stays up, retries, and
/// works as soon as the remote is back.
#[test]
fn unreachable_remote_errors_at_once_and_recovers() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let url = remote.mcp();
    let (port, args) = remote.stop();
    let mut p = proxy(&["--transport", "streamablehttp", &url]);
    p.send_json(&initialize(json!(0), "2025-06-18"));
    let r = p.recv_response(&json!(0));
    let msg = error_message(&r);
    assert!(msg.contains(&url), "names the URL: {msg}");
    assert!(msg.contains("refused"), "names the cause: {msg}");
    assert_eq!(r["error"]["code"], -32603);
    let r = echo(&mut p, json!(1), "x");
    assert!(error_message(&r).contains(&url));

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _remote = FakeRemote::start_on(port, &args);
    p.wait_stderr("reconnected to", WAIT);
    let r = echo_until_ok(&mut p, "back");
    assert_eq!(result_text(&r), "back");
}

fn restart_mid_session(transport: &str, url_of: fn(&FakeRemote) -> String, args: &[&str]) {
    let remote = FakeRemote::start(args);
    let mut p = proxy(&["--transport", transport, &url_of(&remote)]);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "before")), "before");

    let remote = remote.restart();
    p.wait_stderr("reconnected to", WAIT);
    let r = echo_until_ok(&mut p, "after");
    assert_eq!(result_text(&r), "after");

    // The new session was initialized with the local client's own
    // initialize, and its reply never reached stdout.
    p.send_json(&call_tool(json!("who"), "whoami", json!({})));
    let (r, skipped) = p.recv_until("whoami", |v| v["id"] == "who");
    let who: Value = serde_json::from_str(&result_text(&r)).unwrap();
    assert_eq!(who["clientName"], "test-client");
    assert_eq!(who["initializeCount"], 1);
    assert!(
        skipped
            .iter()
            .all(|v| v["result"].get("protocolVersion").is_none()),
        "the replayed initialize's reply leaked: {skipped:?}"
    );
    let _ = remote;
}

/// The remote restarts (same port) mid-session over Streamable HTTP: the
/// proxy notices, re-initializes out of sight and carries on.
#[test]
fn remote_restart_mid_session_streamable() {
    restart_mid_session(
        "streamablehttp",
        FakeRemote::mcp,
        &["--transport", "streamable"],
    );
}

/// The same over HTTP+SSE, where the stream's end is the session's end.
#[test]
fn remote_restart_mid_session_sse() {
    restart_mid_session("sse", FakeRemote::sse, &["--transport", "sse"]);
}

/// SH-54: 404 for our session: a new session is started with the cached
/// initialize + initialized, and the request that got 404 (not processed)
/// is sent again and answered normally.
#[test]
fn expired_session_404_reinitializes_and_resends() {
    let remote = FakeRemote::start(&["--transport", "streamable", "--no-get"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "one")), "one");
    let before = remote.requests().len();
    remote.admin("expire", "");
    let r = echo(&mut p, json!(2), "two");
    assert_eq!(result_text(&r), "two", "resent on the new session");
    let log = remote.requests();
    let inits = |reqs: &[Value]| {
        reqs.iter()
            .filter(|r| r["method"] == "POST" && req_header(r, "mcp-session-id").is_none())
            .count()
    };
    assert_eq!(inits(&log), 2, "initialize was replayed once: {log:#?}");
    // The old session's id, and the POSTs after it expired on a new one
    // (the expired id gets 404, so "two" came back on that). Requests of
    // the old session's own threads (its GET) may still arrive late.
    let old: Vec<&str> = log[..before]
        .iter()
        .filter_map(|r| req_header(r, "mcp-session-id"))
        .collect();
    assert!(
        log[before..].iter().any(|r| r["method"] == "POST"
            && req_header(r, "mcp-session-id").is_some_and(|s| !old.contains(&s))),
        "the new session id is used: {log:#?}"
    );
}

/// Requests in flight when the session is lost get an error at once (their
/// outcome is unknown, so they are not replayed), then the session is
/// re-established.
#[test]
fn in_flight_requests_get_errors_when_the_stream_drops() {
    let remote = FakeRemote::start(&["--transport", "sse"]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    handshake(&mut p, "2024-11-05");
    p.send_json(&call_tool(json!("slow"), "slow", json!({"ms": 60000})));
    // The call has reached the remote once the remote has seen its POST
    // and answered a later request.
    assert_eq!(result_text(&echo(&mut p, json!(1), "x")), "x");
    remote.admin("drop", "");
    let r = p.recv_response(&json!("slow"));
    let msg = error_message(&r);
    assert!(msg.contains(&remote.sse()), "{msg}");
    p.wait_stderr("reconnected to", WAIT);
    assert_eq!(result_text(&echo_until_ok(&mut p, "y")), "y");
    // Not replayed: the remote saw the slow call once.
    let calls = remote
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .count();
    assert!(
        calls >= 6,
        "init, initialized, slow, echo, re-init, re-initialized, echo"
    );
}

/// 5xx answers: the request gets an error naming the URL and the status;
/// once the remote is healthy again, requests work.
#[test]
fn http_5xx_gives_errors_naming_the_url_and_status() {
    let remote = FakeRemote::start(&["--transport", "streamable", "--no-get"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    remote.admin("fail", "503");
    let r = echo(&mut p, json!(1), "x");
    let msg = error_message(&r);
    assert!(msg.contains("503") && msg.contains(&remote.mcp()), "{msg}");
    remote.admin("fail", "0");
    assert_eq!(result_text(&echo_until_ok(&mut p, "ok")), "ok");
}

/// A remote that sends garbage or a message over the size limit: logged,
/// dropped, the request it belonged to gets an error, the session goes on.
#[test]
fn garbage_and_oversized_messages_are_dropped_with_errors() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&["--max-message-size", "100000", &remote.mcp()]);
    handshake(&mut p, "2025-06-18");

    p.send_json(&call_tool(json!(1), "big", json!({"bytes": 200000})));
    let msg = error_message(&p.recv_response(&json!(1)));
    assert!(msg.contains("size limit"), "{msg}");

    remote.admin("garbage-reply", "");
    let msg = error_message(&echo(&mut p, json!(2), "x"));
    assert!(msg.contains("not a JSON-RPC message"), "{msg}");

    remote.admin("garbage", "");
    assert_eq!(result_text(&echo(&mut p, json!(3), "still")), "still");
    p.wait_stderr("not a JSON-RPC message", WAIT);
}

/// §9.3: malformed stdin gets -32700 (no id) or -32600 (id echoed when
/// readable), and the session goes on.
#[test]
fn malformed_stdin_gets_errors_and_the_session_goes_on() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    p.send("this is not json");
    let r = p.recv();
    assert_eq!(r["error"]["code"], -32700);
    assert!(r.get("id").is_none(), "{r}");
    p.send(r#"{"jsonrpc":"2.0","id":5}"#);
    let r = p.recv();
    assert_eq!(
        (r["error"]["code"].clone(), r["id"].clone()),
        (json!(-32600), json!(5))
    );
    p.send(r#"{"id":"x","method":"ping"}"#);
    let r = p.recv();
    assert_eq!(r["error"]["code"], -32600);
    assert_eq!(result_text(&echo(&mut p, json!(6), "fine")), "fine");
}

/// -H on every request; API_ACCESS_TOKEN overrides -H Authorization; no
/// header value (nor the session id) appears in the debug log.
#[test]
fn headers_on_every_request_and_secrets_never_logged() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = Proc::spawn_with(
        proxy_bin(),
        &[
            "--log-level",
            "debug",
            "-H",
            "X-Custom",
            "custom-secret-1",
            "-H",
            "Authorization",
            "Bearer from-h-secret-2",
            "-H",
            "Cookie",
            "session=cookie-secret-3",
            &remote.mcp(),
        ],
        &[("API_ACCESS_TOKEN", "token-secret-4")],
    );
    handshake(&mut p, "2025-06-18");
    echo(&mut p, json!(1), "x");
    p.close_stdin();
    assert_eq!(p.wait_exit(WAIT), Some(0));
    let log = remote.requests();
    assert!(log.len() >= 4, "{log:?}");
    for r in &log {
        assert_eq!(req_header(r, "x-custom"), Some("custom-secret-1"), "{r}");
        assert_eq!(
            req_header(r, "authorization"),
            Some("Bearer token-secret-4"),
            "{r}"
        );
        assert_eq!(
            req_header(r, "cookie"),
            Some("session=cookie-secret-3"),
            "{r}"
        );
    }
    let sid = req_header(&log[1], "mcp-session-id").unwrap().to_owned();
    let stderr = p.stderr();
    assert!(stderr.contains("DEBUG"), "debug logging is on: {stderr}");
    for secret in [
        "custom-secret-1",
        "from-h-secret-2",
        "cookie-secret-3",
        "token-secret-4",
        &sid,
    ] {
        assert!(
            !stderr.contains(secret),
            "{secret} leaked into the log:\n{stderr}"
        );
    }
}

/// --username/--password: Basic auth on every request, never logged.
#[test]
fn basic_auth_on_every_request_and_not_logged() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[
        "--debug",
        "--username",
        "ada",
        "--password",
        "pw-secret-5",
        &remote.mcp(),
    ]);
    handshake(&mut p, "2025-06-18");
    echo(&mut p, json!(1), "x");
    // base64("ada:pw-secret-5")
    let want = "Basic YWRhOnB3LXNlY3JldC01";
    for r in remote.requests() {
        assert_eq!(req_header(&r, "authorization"), Some(want), "{r}");
    }
    let stderr = p.stderr();
    assert!(!stderr.contains("pw-secret-5") && !stderr.contains("YWRhOnB3LXNlY3JldC01"));
}

/// Usage errors: one line naming the flag, exit 2; a header value with a
/// line break (header injection) is one of them.
#[test]
fn usage_errors_name_the_flag_and_exit_2() {
    for (args, flag) in [
        (
            &["-H", "X-A", "v\r\nInjected: 1", "http://127.0.0.1:9/mcp"][..],
            "--headers",
        ),
        (
            &["-H", "Bad Name", "v", "http://127.0.0.1:9/mcp"],
            "--headers",
        ),
        (
            &["--digest", "--username", "u", "http://127.0.0.1:9/mcp"],
            "--digest",
        ),
        (
            &["--client-id", "c", "http://127.0.0.1:9/mcp"],
            "--client-id",
        ),
        (&["--username", "u", "http://127.0.0.1:9/mcp"], "--password"),
        (
            &["--transport", "smoke", "http://127.0.0.1:9/mcp"],
            "--transport",
        ),
    ] {
        let out = Command::new(proxy_bin())
            .args(args)
            .env_remove("SSE_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

/// `--no-verify-ssl` warns loudly on stderr (the remote here is plain
/// http, so the session itself still works).
#[test]
fn no_verify_ssl_warns() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&["--no-verify-ssl", &remote.mcp()]);
    p.wait_stderr("verification is OFF", WAIT);
    handshake(&mut p, "2025-06-18");
}

/// --client-id/--client-secret/--token-url: a client-credentials token is
/// fetched once and sent as a Bearer token on every request (overriding
/// API_ACCESS_TOKEN); neither the secret nor the token is logged.
#[test]
fn oauth2_client_credentials_token_on_every_request_and_not_logged() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let token_url = format!("{}/oauth/token", remote.base);
    let mut p = Proc::spawn_with(
        proxy_bin(),
        &[
            "--debug",
            "--client-id",
            "cid",
            "--client-secret",
            "client-secret-6",
            "--token-url",
            &token_url,
            &remote.mcp(),
        ],
        &[("API_ACCESS_TOKEN", "token-secret-7")],
    );
    handshake(&mut p, "2025-06-18");
    echo(&mut p, json!(1), "x");
    let log = remote.requests();
    assert!(log.len() >= 3);
    for r in &log {
        assert_eq!(
            req_header(r, "authorization"),
            Some("Bearer demo-token-1"),
            "one token, reused: {r}"
        );
    }
    let stderr = p.stderr();
    for secret in ["client-secret-6", "token-secret-7", "demo-token-1"] {
        assert!(!stderr.contains(secret), "{secret} leaked:\n{stderr}");
    }
}

fn oauth_proxy(remote: &FakeRemote) -> Proc {
    let token_url = format!("{}/oauth/token", remote.base);
    proxy(&[
        "--client-id",
        "cid",
        "--client-secret",
        "client-secret-6",
        "--token-url",
        &token_url,
        &remote.mcp(),
    ])
}

/// How many tokens the demo's token endpoint has issued.
fn tokens_issued(remote: &FakeRemote) -> u64 {
    let r = http("GET", &format!("{}/admin/tokens", remote.base), &[], None);
    r.body.trim().parse().expect("a count")
}

/// The remote rotates its token mid-session (the old one is refused with
/// 401 long before it expires): the next call still succeeds, carried by
/// exactly one freshly fetched token, which later calls reuse.
#[test]
fn oauth2_token_rotated_by_the_remote_is_fetched_again_once() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    remote.admin("bearer", "latest");
    let mut p = oauth_proxy(&remote);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "one")), "one");
    assert_eq!(tokens_issued(&remote), 1);
    remote.admin("rotate-token", "");
    let r = echo(&mut p, json!(2), "two");
    assert_eq!(result_text(&r), "two", "the call after the rotation: {r}");
    assert_eq!(tokens_issued(&remote), 2, "exactly one extra token fetch");
    assert_eq!(result_text(&echo(&mut p, json!(3), "three")), "three");
    assert_eq!(tokens_issued(&remote), 2, "the fresh token is reused");
    let last = remote.requests().pop().expect("requests were logged");
    assert_eq!(
        req_header(&last, "authorization"),
        Some("Bearer demo-token-2")
    );
    let stderr = p.stderr();
    for secret in ["client-secret-6", "demo-token-1", "demo-token-2"] {
        assert!(!stderr.contains(secret), "{secret} leaked:\n{stderr}");
    }
}

/// A remote that answers 401 whatever the token: the call fails after one
/// retry with a fresh token, with an error that names the token URL and
/// says the credentials were refused; the next call does the same (one
/// fetch each, no loop), and the session works again once the remote
/// accepts tokens. Also when the refused request is the initialize.
#[test]
fn oauth2_refused_twice_fails_the_call_naming_the_token_url() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let token_url = format!("{}/oauth/token", remote.base);
    let refused = |v: &Value, what: &str| {
        let msg = error_message(v);
        assert!(
            msg.contains(&token_url) && msg.contains("credentials were refused"),
            "{what}: {msg}"
        );
    };
    let mut p = oauth_proxy(&remote);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "ok")), "ok");
    let before = tokens_issued(&remote);
    remote.admin("bearer", "never");
    refused(&echo(&mut p, json!(2), "x"), "first refused call");
    assert_eq!(tokens_issued(&remote), before + 1, "one retry, no loop");
    refused(&echo(&mut p, json!(3), "x"), "second refused call");
    assert_eq!(tokens_issued(&remote), before + 2);
    remote.admin("bearer", "off");
    assert_eq!(result_text(&echo(&mut p, json!(4), "back")), "back");
    drop(p);

    remote.admin("bearer", "never");
    let issued = tokens_issued(&remote);
    let mut p = oauth_proxy(&remote);
    p.send_json(&initialize(json!(0), "2025-06-18"));
    refused(&p.recv_response(&json!(0)), "initialize");
    assert_eq!(tokens_issued(&remote), issued + 2, "a token and one retry");
    p.send_json(&initialize(json!(1), "2025-06-18"));
    refused(&p.recv_response(&json!(1)), "initialize again");
    assert_eq!(tokens_issued(&remote), issued + 3);
}

/// notifications/cancelled reaches the server (the proxy then stops
/// waiting for that call), and stdin EOF still ends the session with 0.
#[test]
fn cancellation_reaches_the_server() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&[&remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    p.send_json(&call_tool(json!("c1"), "slow", json!({"ms": 600000})));
    // Once a later request is answered, the slow call has reached the server.
    echo(&mut p, json!(1), "x");
    p.send_json(&notification(
        "notifications/cancelled",
        json!({"requestId": "c1", "reason": "test"}),
    ));
    let seen = loop {
        p.send_json(&call_tool(json!("list"), "cancelled", json!({})));
        let text = result_text(&p.recv_response(&json!("list")));
        if text.contains("c1") {
            break text;
        }
    };
    assert!(seen.contains(r#"\"c1\""#), "{seen}");
    p.close_stdin();
    assert_eq!(p.wait_exit(WAIT), Some(0));
}

/// Messages from the remote over --max-message-size, each kind on the
/// streams it comes on (the demo pads them as asked): a server-to-client
/// request is answered with a JSON-RPC error naming the limit and the flag
/// (the demo's tool result shows what its request got back, where before it
/// waited forever), a notification is dropped, a reply fails its own
/// request. The local client sees nothing else of them, and the session
/// goes on.
fn oversized_messages_from_the_remote(remote_args: &[&str], transport: &str, sse: bool) {
    let remote = FakeRemote::start(remote_args);
    let url = if sse { remote.sse() } else { remote.mcp() };
    let mut p = proxy(&[
        "--transport",
        transport,
        "--max-message-size",
        "100000",
        &url,
    ]);
    handshake(&mut p, if sse { "2024-11-05" } else { "2025-06-18" });
    let big = 200_000;
    let no_extra = |what: &str, skipped: &[Value]| {
        assert!(skipped.is_empty(), "{what}: stdout also got {skipped:?}");
    };
    // A sampling request on the call's own stream (the POST's SSE reply in
    // Streamable HTTP) and one unrelated to it (the GET stream); each also
    // with its id at neither end, between stretches over the limit.
    for (id, unrelated, id_inside) in [
        (1, false, false),
        (2, true, false),
        (7, false, true),
        (8, true, true),
    ] {
        let args =
            json!({"prompt": "q", "pad": big, "unrelated": unrelated, "id_inside": id_inside});
        p.send_json(&call_tool(json!(id), "sample", args));
        let (r, skipped) = p.recv_until("the sampling call's result", |v| v["id"] == json!(id));
        let text = result_text(&r);
        assert!(
            text.starts_with("sampling failed")
                && text.contains("100000")
                && text.contains("--max-message-size"),
            "unrelated {unrelated}, id inside {id_inside}: the remote got {text}"
        );
        no_extra("the sampling call", &skipped);
    }
    // A notification on the call's stream, then one unrelated to any call.
    p.send_json(&call_tool(
        json!(3),
        "log",
        json!({"text": "t", "pad": big}),
    ));
    let (r, skipped) = p.recv_until("the log call's result", |v| v["id"] == json!(3));
    assert_eq!(result_text(&r), "logged", "{r}");
    no_extra("the log call", &skipped);
    p.send_json(&call_tool(
        json!(4),
        "touch",
        json!({"uri": "u", "pad": big}),
    ));
    let (r, skipped) = p.recv_until("the touch call's result", |v| v["id"] == json!(4));
    assert_eq!(result_text(&r), "touched", "{r}");
    no_extra("the touch call", &skipped);
    // A reply over the limit fails its own request.
    p.send_json(&call_tool(json!(5), "big", json!({"bytes": big})));
    let (r, skipped) = p.recv_until("the big call's reply", |v| v["id"] == json!(5));
    assert!(error_message(&r).contains("--max-message-size"), "{r}");
    no_extra("the big call", &skipped);
    // The session goes on, and nothing more arrives for what was dropped.
    p.send_json(&call_tool(json!(6), "echo", json!({"text": "after"})));
    let (r, skipped) = p.recv_until("the echo", |v| v["id"] == json!(6));
    assert_eq!(result_text(&r), "after");
    no_extra("the echo", &skipped);
    p.wait_stderr("--max-message-size", WAIT);
}

#[test]
fn oversized_messages_from_a_streamable_remote() {
    oversized_messages_from_the_remote(&["--transport", "streamable"], "streamablehttp", false);
}

/// The same with every reply on an SSE stream, so that the oversized reply
/// comes on a stream too.
#[test]
fn oversized_messages_from_a_streamable_remote_replying_on_sse() {
    oversized_messages_from_the_remote(
        &["--transport", "streamable", "--reply", "sse"],
        "streamablehttp",
        false,
    );
}

#[test]
fn oversized_messages_from_an_http_sse_remote() {
    oversized_messages_from_the_remote(&["--transport", "sse"], "sse", true);
}

/// A stdin line over --max-message-size is dropped and answered under its
/// own id, wherever in the line the id is (first, last, or between
/// stretches over the limit); a notification is only dropped; an oversized
/// reply to the remote's request reaches the remote as an error. The
/// session goes on.
#[test]
fn oversized_stdin_lines_are_answered_under_their_ids_and_the_session_goes_on() {
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut p = proxy(&["--max-message-size", "2000", &remote.mcp()]);
    handshake(&mut p, "2025-06-18");
    let y = "y".repeat(5000);
    let lines = [
        (
            json!(1),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{y}"}}}}}}"#
            ),
        ),
        (
            json!("last"),
            format!(
                r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{y}"}}}},"id":"last"}}"#
            ),
        ),
        (
            json!(3),
            format!(
                r#"{{"params":{{"name":"echo","arguments":{{"text":"{y}"}}}},"id":3,"method":"tools/call","_pad":"{y}","jsonrpc":"2.0"}}"#
            ),
        ),
    ];
    for (id, line) in lines {
        p.send(&line);
        let r = p.recv();
        assert_eq!(r["id"], id, "{r}");
        assert_eq!(r["error"]["code"], -32600, "{r}");
        assert!(error_message(&r).contains("--max-message-size"), "{r}");
    }
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{y}"}}}}"#
    ));
    // A reply too large for the remote: the demo's tool shows what its
    // sampling request got back.
    p.send_json(&call_tool(json!(4), "sample", json!({"prompt": "q"})));
    let (req, skipped) = p.recv_until("the sampling request", |v| {
        v["method"] == "sampling/createMessage"
    });
    assert!(skipped.is_empty(), "the notification got {skipped:?}");
    p.send(&format!(
        r#"{{"jsonrpc":"2.0","result":{{"role":"assistant","content":{{"type":"text","text":"{y}"}},"model":"m"}},"id":{}}}"#,
        req["id"]
    ));
    let text = result_text(&p.recv_response(&json!(4)));
    assert!(
        text.starts_with("sampling failed") && text.contains("--max-message-size"),
        "{text}"
    );
    p.send_json(&call_tool(json!(5), "echo", json!({"text": "small"})));
    let (r, skipped) = p.recv_until("the echo", |v| v["id"] == json!(5));
    assert_eq!(result_text(&r), "small");
    assert!(skipped.is_empty(), "nothing else came: {skipped:?}");
}

/// A --verify-ssl CA bundle that holds no certificate is a runtime error:
/// one line naming the file, exit 1.
#[test]
fn bad_ca_bundle_is_one_line_exit_1() {
    let path = std::env::temp_dir().join(format!("mcp-proxy-bad-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate\n").unwrap();
    let out = Command::new(proxy_bin())
        .args([
            "--verify-ssl",
            path.to_str().unwrap(),
            "https://127.0.0.1:9/mcp",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("CA bundle") && err.contains("--verify-ssl"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// --digest: the proxy answers the remote's Digest challenge on every
/// request (GET stream and DELETE included), never sends the password in
/// clear or logs it; a wrong password is an error naming HTTP 401.
#[test]
fn digest_auth_answers_challenges_and_wrong_password_is_401() {
    let remote = FakeRemote::start(&[
        "--transport",
        "streamable",
        "--digest-auth",
        "ada:pw-secret-8",
    ]);
    let mut p = proxy(&[
        "--debug",
        "--digest",
        "--username",
        "ada",
        "--password",
        "pw-secret-8",
        &remote.mcp(),
    ]);
    handshake(&mut p, "2025-06-18");
    assert_eq!(result_text(&echo(&mut p, json!(1), "in")), "in");
    p.close_stdin();
    assert_eq!(p.wait_exit(WAIT), Some(0));
    let log = remote.requests();
    assert!(log.iter().any(|r| r["method"] == "DELETE"));
    for r in &log {
        let auth = req_header(r, "authorization").unwrap_or("");
        assert!(!auth.starts_with("Basic"), "{r}");
    }
    assert!(!p.stderr().contains("pw-secret-8"));

    let mut p = proxy(&[
        "--digest",
        "--username",
        "ada",
        "--password",
        "wrong",
        &remote.mcp(),
    ]);
    p.send_json(&initialize(json!(0), "2025-06-18"));
    let msg = error_message(&p.recv_response(&json!(0)));
    assert!(msg.contains("401"), "{msg}");
}

/// HTTP+SSE: the remote forgets the session (its stream ends, its endpoint
/// answers 404): the proxy opens a new stream, replays the handshake, and
/// requests work again.
#[test]
fn sse_session_expiry_recovers() {
    let remote = FakeRemote::start(&["--transport", "sse"]);
    let mut p = proxy(&["--transport", "sse", &remote.sse()]);
    handshake(&mut p, "2024-11-05");
    assert_eq!(result_text(&echo(&mut p, json!(1), "a")), "a");
    remote.admin("expire", "");
    assert_eq!(result_text(&echo_until_ok(&mut p, "b")), "b");
    p.send_json(&call_tool(json!("who"), "whoami", json!({})));
    let who: Value = serde_json::from_str(&result_text(&p.recv_response(&json!("who")))).unwrap();
    assert_eq!(
        who["initializeCount"], 1,
        "a fresh session, initialized once"
    );
    assert_eq!(who["clientName"], "test-client");
}

/// A local client that goes away without closing our stdin (its end of our
/// stdout is closed): the next write fails with a broken pipe, which is a
/// clean exit 0, not a crash or a hang.
#[test]
fn broken_stdout_is_a_clean_exit() {
    use std::io::Write;
    use std::process::Stdio;
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let mut child = Command::new(proxy_bin())
        .arg(remote.mcp())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", initialize(json!(0), "2025-06-18")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The session it opened was ended.
    assert!(remote.requests().iter().any(|r| r["method"] == "DELETE"));
}
