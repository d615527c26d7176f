//! Server mode, the modern sibling: a stdio server that serves only the
//! era of its first request (the Python SDK 2.x; the demo's `--era-lock`)
//! is initialized by the proxy and so refuses 2026-07-28 requests. The
//! proxy then runs a second, never-initialized process of it for them
//! (TRANSPORTS.md §0 dual-era rule, LC-22, ST-15, RL-11).
//!
//! Each test drives the real proxy over raw HTTP and asserts what a client
//! or an operator sees: the era of the answers, /status, the processes.

mod common;
mod server_support;

use common::{alive, demo_bin, wait_gone, WAIT};
use serde_json::{json, Value};
use server_support::modern::*;
use server_support::*;
use std::net::TcpStream;
use std::time::Instant;

/// The reply to a modern POST: status and the one JSON-RPC response.
fn reply(c: Conn) -> (u16, Value) {
    let status = c.status;
    let v = if c.is_sse() {
        c.sse().next_json()
    } else {
        c.json()
    };
    (status, v)
}

/// The proxy with `mcp-demo-server DEMO_ARGS...` as its default server
/// and `extra` proxy options, once it runs.
fn proxy(extra: &[&str], demo_args: &[&str]) -> Proxy {
    let mut args = vec!["--port", "0", "--restart-backoff", "0.1"];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(demo_bin());
    args.extend_from_slice(demo_args);
    let p = Proxy::start_raw(&args);
    p.wait_ready();
    p
}

fn mcp(p: &Proxy) -> String {
    format!("{}/mcp", p.url)
}

/// The demo's `whoami` answered to a modern request: which process
/// served it, and whether it was ever initialized.
fn modern_whoami(url: &str, id: &str) -> Value {
    let (status, v) = reply(post(url, &modern_call(json!(id), "whoami", json!({}))));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["resultType"], "complete",
        "a modern answer: {v}"
    );
    serde_json::from_str(&text_of(&v)).expect("whoami is JSON")
}

fn legacy_whoami(s: &mut Session, id: u64) -> Value {
    s.post(&tool(json!(id), "whoami", json!({})));
    serde_json::from_str(&text_of(&s.recv_response(&json!(id)))).expect("whoami is JSON")
}

/// The pid in the first stderr line of the proxy that contains `needle`
/// (`... pid N`), waiting for it.
fn logged_pid(p: &mut Proxy, needle: &str) -> i32 {
    let text = p.proc.wait_stderr(needle, WAIT);
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .expect("the line waited for");
    line.rsplit("pid ")
        .next()
        .and_then(|n| n.trim_end_matches(')').trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

const SIBLING_STARTED: &str = "(modern sibling)' started, pid ";

#[test]
fn a_locked_server_serves_2026_07_28_from_a_sibling_while_legacy_sessions_go_on() {
    // `both` serves both eras in one process: it never gets a sibling.
    let p = proxy(&["--named-server", "both", demo_bin()], &["--era-lock"]);
    let url = mcp(&p);
    let st = p.wait_status("the era probe answered", |s| {
        !s["servers"]["default"]["serves_2026_07_28"].is_null()
    });
    // Initialized, the child refused the probe; no modern client yet, so
    // no second process either (lazy).
    assert_eq!(st["servers"]["default"]["serves_2026_07_28"], false, "{st}");
    assert!(st["servers"]["default"]["modern_sibling"].is_null(), "{st}");
    let mut legacy = Session::open(&p.url, STREAMABLE, "legacy", json!({}));
    let main = legacy_whoami(&mut legacy, 2);
    // server/discover is answered by a process that serves 2026-07-28
    // (without the sibling: 404 with -32601, LC-22).
    let (status, v) = reply(post(
        &url,
        &modern(json!("d"), "server/discover", json!({})),
    ));
    assert_eq!((status, v["id"].clone()), (200, json!("d")), "{v}");
    let versions = v["result"]["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(V)), "{v}");
    // A call is served in 2026-07-28 (without the sibling: 400, -32022),
    // by another process, which was never initialized.
    let (status, v) = reply(post(
        &url,
        &modern_call(json!("e"), "echo", json!({"text": "hi"})),
    ));
    assert_eq!((status, text_of(&v)), (200, "hi".to_owned()), "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    let sib = modern_whoami(&url, "w");
    assert_ne!(sib["pid"], main["pid"], "a second process: {sib} {main}");
    assert_eq!(sib["initializeCount"], 0, "never initialized: {sib}");
    // The legacy session is served by the initialized child all along.
    let again = legacy_whoami(&mut legacy, 3);
    assert_eq!(again["pid"], main["pid"]);
    assert_eq!(again["initializeCount"], 1, "{again}");
    let st = p.status();
    let s = &st["servers"]["default"];
    assert_eq!(s["serves_2026_07_28"], true, "{st}");
    assert_eq!(s["modern_sibling"]["state"], "running", "{st}");
    assert!(s["modern_sibling"]["pid"].as_i64().unwrap() > 0, "{st}");
    assert_ne!(s["modern_sibling"]["pid"], s["pid"], "{st}");
    assert_eq!(
        s["sessions"], 1,
        "the modern exchanges are no sessions: {st}"
    );
    // /metrics counts the sibling's requests under the server, once.
    let m = send("GET", &format!("{}/metrics", p.url), &[], None).text();
    assert!(
        m.contains("mcp_proxy_modern_sibling_up{server=\"default\"} 1"),
        "{m}"
    );
    // 2 legacy whoamis, discover, echo and a modern whoami.
    assert!(
        m.contains("mcp_proxy_requests_forwarded_total{server=\"default\"} 5\n"),
        "{m}"
    );
    let both = format!("{}/servers/both/mcp", p.url);
    let (status, v) = reply(post(
        &both,
        &modern_call(json!("b"), "echo", json!({"text": "x"})),
    ));
    assert_eq!((status, text_of(&v)), (200, "x".to_owned()), "{v}");
    let st = p.status();
    assert_eq!(st["servers"]["both"]["serves_2026_07_28"], true, "{st}");
    assert!(st["servers"]["both"]["modern_sibling"].is_null(), "{st}");
    assert!(
        m.contains("mcp_proxy_modern_sibling_up{server=\"both\"} 0"),
        "{m}"
    );
    assert_eq!(p.proc.stderr().matches(SIBLING_STARTED).count(), 1);
}

#[test]
fn a_sibling_killed_mid_call_fails_that_call_and_is_restarted() {
    let p = proxy(&[], &["--era-lock"]);
    let url = mcp(&p);
    let first = modern_whoami(&url, "w1");
    let pid = first["pid"].as_i64().unwrap() as i32;
    let slow = post_only(
        &url,
        &modern_call(json!("slow"), "slow", json!({"ms": 60000})),
    );
    p.wait_status("the call in flight at the sibling", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let sent = Instant::now();
    let (_, v) = reply(read_head(slow, "the slow call"));
    assert!(sent.elapsed() < WAIT, "answered, not left to hang");
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("slow"), json!(-32603)),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("signal 9"),
        "{v}"
    );
    // The next modern call waits for the restarted sibling and is served.
    let next = modern_whoami(&url, "w2");
    assert_ne!(next["pid"], first["pid"], "a new sibling process");
    assert_eq!(next["initializeCount"], 0, "{next}");
    let st = p.wait_status("the sibling running again", |s| {
        s["servers"]["default"]["modern_sibling"]["state"] == "running"
    });
    let s = &st["servers"]["default"];
    assert_eq!(s["modern_sibling"]["restarts"], 1, "{st}");
    assert_eq!(s["modern_sibling"]["last_exit"], "signal 9", "{st}");
    assert_eq!(s["restarts"], 0, "the main child was not touched: {st}");
    wait_gone(pid, "the killed sibling");
}

/// The main child crashing leaves the sibling serving: 2026-07-28 calls go
/// on at the same process throughout, the legacy session's call in flight
/// gets its error, and the restarted main child serves legacy sessions
/// again without a second sibling being started.
#[test]
fn the_main_child_crashing_leaves_the_sibling_serving() {
    let p = proxy(&[], &["--era-lock"]);
    let url = mcp(&p);
    let sib = modern_whoami(&url, "w1");
    let mut legacy = Session::open(&p.url, STREAMABLE, "legacy", json!({}));
    let main = legacy_whoami(&mut legacy, 2);
    assert_ne!(sib["pid"], main["pid"], "{sib} {main}");
    legacy.post(&tool(json!(3), "crash", json!({"code": 3})));
    let r = legacy.recv_response(&json!(3));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    // Served by the same sibling while the main child restarts, and after.
    assert_eq!(modern_whoami(&url, "w2")["pid"], sib["pid"]);
    let st = p.wait_status("the main child running again", |s| {
        s["servers"]["default"]["state"] == "running" && s["servers"]["default"]["restarts"] == 1
    });
    let s = &st["servers"]["default"];
    assert_eq!(s["modern_sibling"]["state"], "running", "{st}");
    assert_eq!(s["modern_sibling"]["restarts"], 0, "{st}");
    assert_eq!(s["serves_2026_07_28"], true, "{st}");
    assert_eq!(modern_whoami(&url, "w3")["pid"], sib["pid"]);
    let mut again = Session::open(&p.url, STREAMABLE, "again", json!({}));
    let new_main = legacy_whoami(&mut again, 4);
    assert_ne!(new_main["pid"], main["pid"], "a new main child");
    assert_ne!(new_main["pid"], sib["pid"]);
    assert_eq!(p.proc.stderr().matches(SIBLING_STARTED).count(), 1);
}

#[test]
fn a_server_that_cannot_serve_2026_07_28_leaves_no_sibling_and_keeps_todays_answers() {
    let mut p = proxy(&[], &["--legacy-only"]);
    let url = mcp(&p);
    discover_refused(&url);
    // A sibling was tried, found not to serve, and stopped.
    let sibling = logged_pid(&mut p, SIBLING_STARTED);
    wait_gone(sibling, "the sibling that cannot serve 2026-07-28");
    for id in ["a", "b", "c"] {
        echo_refused(&url, id);
    }
    let starts = p.proc.stderr().matches(SIBLING_STARTED).count();
    assert_eq!(starts, 1, "tried once, not on every request");
    // Its start still counts under the server.
    let m = send("GET", &format!("{}/metrics", p.url), &[], None).text();
    assert!(
        m.contains("mcp_proxy_child_starts_total{server=\"default\"} 2\n"),
        "{m}"
    );
    let st = p.status();
    assert!(st["servers"]["default"]["modern_sibling"].is_null(), "{st}");
    assert_eq!(st["servers"]["default"]["serves_2026_07_28"], false, "{st}");
}

#[test]
fn no_modern_sibling_keeps_the_refusals() {
    let p = proxy(&["--no-modern-sibling"], &["--era-lock"]);
    let url = mcp(&p);
    discover_refused(&url);
    echo_refused(&url, "e");
    assert!(!p.proc.stderr().contains("modern sibling"), "never started");
    let st = p.status();
    assert!(st["servers"]["default"]["modern_sibling"].is_null(), "{st}");
    // The explicit default turns it on.
    let p = proxy(
        &["--no-modern-sibling", "--modern-sibling"],
        &["--era-lock"],
    );
    let (status, v) = reply(post(
        &mcp(&p),
        &modern_call(json!("e"), "echo", json!({"text": "y"})),
    ));
    assert_eq!((status, text_of(&v)), (200, "y".to_owned()), "{v}");
}

#[test]
fn sigterm_stops_the_sibling_with_the_server() {
    let mut p = proxy(&["--shutdown-grace", "0.5"], &["--era-lock"]);
    let url = mcp(&p);
    let sib = modern_whoami(&url, "w");
    let slow = post_only(
        &url,
        &modern_call(json!("slow"), "slow", json!({"ms": 60000})),
    );
    let st = p.wait_status("the call in flight at the sibling", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    let s = &st["servers"]["default"];
    let pids = [
        (sib["pid"].as_i64().unwrap() as i32, "the sibling"),
        (
            s["modern_sibling"]["pid"].as_i64().unwrap() as i32,
            "the sibling's supervisor",
        ),
        (s["pid"].as_i64().unwrap() as i32, "the main supervisor"),
    ];
    for (pid, what) in pids {
        assert!(alive(pid), "{what} runs before the signal");
    }
    p.proc.signal(libc::SIGTERM);
    // The call in flight at the sibling is answered, not cut off.
    let (_, v) = reply(read_head(slow, "the slow call"));
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("shutting down"), "{v}");
    assert_eq!(p.proc.wait_exit(WAIT), Some(143));
    for (pid, what) in pids {
        wait_gone(pid, what);
    }
}

#[test]
fn requests_that_arrive_together_start_one_sibling_and_are_all_served() {
    let p = proxy(&[], &["--era-lock"]);
    let url = mcp(&p);
    // All sent before any answer: the ones after the first wait for the
    // sibling's verdict instead of starting siblings of their own.
    let socks: Vec<(String, TcpStream)> = (0..8)
        .map(|i| {
            let id = format!("c{i}");
            let body = modern_call(json!(id), "echo", json!({"text": id}));
            (id, post_only(&url, &body))
        })
        .collect();
    for (id, sock) in socks {
        let (status, v) = reply(read_head(sock, &id));
        assert_eq!((status, v["id"].clone()), (200, json!(id)), "{v}");
        assert_eq!(text_of(&v), id);
    }
    let mut p = p;
    let _ = logged_pid(&mut p, SIBLING_STARTED);
    assert_eq!(p.proc.stderr().matches(SIBLING_STARTED).count(), 1);
}

#[test]
fn a_server_that_cannot_run_twice_keeps_todays_answers() {
    // The second process cannot take the lock and exits at once, as a
    // server holding an exclusive lock or a fixed port would.
    let lock = std::env::temp_dir().join(format!("mcp-proxy-sibling-{}.lock", std::process::id()));
    let cmd = format!("flock -n {} {} --era-lock", lock.display(), demo_bin());
    let mut p = proxy(&["--named-server", "once", &cmd], &[]);
    let url = format!("{}/servers/once/mcp", p.url);
    echo_refused(&url, "e");
    let sibling = logged_pid(&mut p, SIBLING_STARTED);
    wait_gone(sibling, "the sibling that could not take the lock");
    p.proc.wait_stderr("before answering server/discover", WAIT);
    // The first process still serves its sessions.
    let mut s = Session::open(
        &format!("{}/servers/once", p.url),
        STREAMABLE,
        "legacy",
        json!({}),
    );
    assert_eq!(legacy_whoami(&mut s, 2)["initializeCount"], 1);
    let st = p.status();
    assert!(st["servers"]["once"]["modern_sibling"].is_null(), "{st}");
    assert_eq!(st["servers"]["once"]["restarts"], 0, "{st}");
    let _ = std::fs::remove_file(lock);
}

/// The proxy's own answer to `server/discover` for a server no process of
/// which serves 2026-07-28: 404 with -32601, so dual-era clients fall back
/// (LC-22).
fn discover_refused(url: &str) {
    let (status, v) = reply(post(url, &modern(json!("d"), "server/discover", json!({}))));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (404, json!(-32601), json!("d")),
        "{v}"
    );
}

/// Its answer to any other 2026-07-28 request there: 400 with -32022 and
/// the request's id.
fn echo_refused(url: &str, id: &str) {
    let (status, v) = reply(post(
        url,
        &modern_call(json!(id), "echo", json!({"text": "x"})),
    ));
    assert_eq!(
        (status, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32022), json!(id)),
        "{v}"
    );
}
