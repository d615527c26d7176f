//! Server mode when things go wrong: the child dies, prints noise, writes
//! stderr; a client hangs up mid-call or reads too slowly; the proxy gets
//! SIGTERM; a server cannot start.

mod common;
mod server_support;

use common::{demo_bin, proxy_bin, Proc, WAIT};
use serde_json::{json, Value};
use server_support::*;
use std::time::{Duration, Instant};

fn legacy(p: &Proxy, name: &str) -> Session {
    Session::open(&p.url, Kind::Legacy, name, json!({}))
}

fn streamable(p: &Proxy, name: &str) -> Session {
    let kind = Kind::Streamable {
        version: "2025-06-18",
        json_only: false,
        get: true,
    };
    Session::open(&p.url, kind, name, json!({}))
}

/// The ids the child saw cancelled, asked through a fresh session.
fn cancelled_at_child(p: &Proxy) -> Vec<String> {
    let mut s = legacy(p, "checker");
    s.post(&tool(json!(1), "cancelled", json!({})));
    serde_json::from_str(&text_of(&s.recv_response(&json!(1)))).unwrap()
}

#[test]
fn child_death_fails_every_request_in_flight_at_once() {
    let p = Proxy::start(&[]);
    let mut a = legacy(&p, "a");
    let mut b = streamable(&p, "b");
    a.post(&tool(json!("slow-a"), "slow", json!({"ms": 60000})));
    b.post(&tool(json!(7), "slow", json!({"ms": 60000})));
    p.wait_status("two requests in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 2
    });
    let started = Instant::now();
    let mut c = legacy(&p, "c");
    c.post(&tool(json!(1), "crash", json!({"code": 3})));
    for (s, id) in [(&a, json!("slow-a")), (&b, json!(7)), (&c, json!(1))] {
        let r = s.recv_response(&id);
        assert_eq!(r["error"]["code"], -32603, "{r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("'default'") && msg.contains("status 3"),
            "{msg}"
        );
    }
    assert!(
        started.elapsed() < WAIT,
        "answered at once, not after the calls' 60 s"
    );
    // The server comes back, and the sessions carry on.
    let s = p.wait_status("the server restarted", |s| {
        s["servers"]["default"]["state"] == "running" && s["servers"]["default"]["restarts"] == 1
    });
    assert_eq!(s["servers"]["default"]["last_exit"], "status 3", "{s}");
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0);
    a.post(&tool(json!(2), "echo", json!({"text": "x"})));
    assert_eq!(text_of(&a.recv_response(&json!(2))), "x");
    let mut d = legacy(&p, "d");
    d.post(&tool(json!(1), "echo", json!({"text": "y"})));
    assert_eq!(text_of(&d.recv_response(&json!(1))), "y");
}

#[test]
fn non_json_stdout_is_skipped_and_stderr_is_prefixed() {
    let alpha = format!("{} --name alpha", demo_bin());
    let mut p = Proxy::start(&["--named-server", "alpha", &alpha]);
    let mut s = legacy(&p, "a");
    s.post(&tool(json!(1), "noise", json!({})));
    assert_eq!(text_of(&s.recv_response(&json!(1))), "noisy");
    let line = p.proc.wait_stderr("not JSON-RPC", WAIT);
    assert!(
        line.contains("'default'") && line.contains("this is not json"),
        "{line}"
    );
    stderr_has(&p, "\n[default] demo: noise on stderr");
    let mut n = Session::open(
        &format!("{}/servers/alpha", p.url),
        Kind::Legacy,
        "n",
        json!({}),
    );
    n.post(&tool(
        json!(1),
        "stderr",
        json!({"text": "from alpha", "lines": 1}),
    ));
    n.recv_response(&json!(1));
    stderr_has(&p, "\n[alpha] demo: from alpha 0");
}

/// Waits until the proxy's stderr (all of it so far) contains `needle`.
fn stderr_has(p: &Proxy, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !p.proc.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on stderr:\n{}",
            p.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn legacy_client_hanging_up_cancels_its_calls_and_frees_the_session() {
    let p = Proxy::start(&["--keepalive", "1"]);
    let mut a = legacy(&p, "a");
    a.post(&tool(json!(1), "slow", json!({"ms": 60000})));
    p.wait_status("a request in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    a.hang_up();
    p.wait_status("the session gone", |s| {
        s["servers"]["default"]["sessions"] == 0 && s["active_sse_connections"] == 0
    });
    let s = p.status();
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0, "{s}");
    assert_eq!(cancelled_at_child(&p).len(), 1);
}

#[test]
fn streamable_post_stream_hanging_up_cancels_its_call() {
    let p = Proxy::start(&["--keepalive", "1"]);
    let mut b = Session::open(&p.url, STREAMABLE, "b", json!({}));
    b.post(&tool(json!(1), "slow", json!({"ms": 60000})));
    p.wait_status("a request in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    b.hang_up();
    p.wait_status("the call cancelled", |s| {
        s["servers"]["default"]["requests_in_flight"] == 0
    });
    assert_eq!(cancelled_at_child(&p).len(), 1);
    // The session itself lives on (SH-15: a broken stream is not the end).
    assert_eq!(p.status()["servers"]["default"]["sessions"], 2);
}

#[test]
fn a_slow_reader_is_dropped_and_the_others_are_untouched() {
    let p = Proxy::start(&[]);
    // A session whose stream nobody reads past its endpoint event (and
    // which stays open: a closed one would be dropped for that instead).
    let mut c = send("GET", &format!("{}/sse", p.url), &[], None);
    let endpoint = {
        let raw = c.read_until("the endpoint event", |t| {
            t.find("/messages/").is_some_and(|i| t[i..].contains('\n'))
        });
        let start = raw.find("/messages/").expect("endpoint event");
        raw[start..].lines().next().unwrap().to_owned()
    };
    let mut other = legacy(&p, "other");
    let post_url = format!("{}{endpoint}", p.url);
    let mut dropped = false;
    for n in 0..2000 {
        let body = tool(json!(n), "big", json!({"bytes": 65536})).to_string();
        let r = send(
            "POST",
            &post_url,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        if r.status == 404 {
            dropped = true;
            break;
        }
        assert_eq!(r.status, 202);
    }
    assert!(dropped, "the slow session was never dropped");
    other.post(&tool(json!(1), "echo", json!({"text": "still here"})));
    assert_eq!(text_of(&other.recv_response(&json!(1))), "still here");
    drop(c);
}

#[test]
fn sigterm_stops_the_child_and_exits() {
    let mut p = Proxy::start(&[]);
    let pid = p.status()["servers"]["default"]["pid"].as_u64().unwrap() as i32;
    p.proc.signal(libc::SIGTERM);
    assert_eq!(p.proc.wait_exit(WAIT), Some(143));
    let gone = unsafe { libc::kill(pid, 0) } != 0;
    assert!(gone, "the child {pid} is gone");
}

/// Upstream #198: one server that cannot start took the whole proxy down.
#[test]
fn a_server_that_cannot_start_does_not_stop_the_others() {
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--max-restarts",
        "1",
        "--restart-backoff",
        "0.05",
        "--named-server",
        "bad",
        "/no/such/program --flag",
        "--",
        demo_bin(),
    ]);
    let mut s = legacy(&p, "a");
    s.post(&tool(json!(1), "echo", json!({"text": "fine"})));
    assert_eq!(text_of(&s.recv_response(&json!(1))), "fine");
    let st = p.wait_status("'bad' failed", |s| s["servers"]["bad"]["state"] == "failed");
    let why = st["servers"]["bad"]["last_error"].as_str().unwrap();
    assert!(why.contains("/no/such/program"), "{st}");
    assert_eq!(st["servers"]["default"]["state"], "running", "{st}");
    let (code, body) = p.readyz();
    assert_eq!(code, 503);
    assert!(
        body.contains("'bad' is failed") && body.contains("/no/such/program"),
        "{body}"
    );
}

#[test]
fn client_log_level_filters_and_reaches_the_child() {
    let p = Proxy::start(&[]);
    let mut quiet = legacy(&p, "quiet");
    let mut loud = legacy(&p, "loud");
    quiet.post(&req(
        json!(1),
        "logging/setLevel",
        json!({"level": "error"}),
    ));
    quiet.recv_response(&json!(1));
    loud.post(&req(
        json!(1),
        "logging/setLevel",
        json!({"level": "debug"}),
    ));
    loud.recv_response(&json!(1));
    loud.post(&tool(
        json!(2),
        "log",
        json!({"level": "warning", "text": "w"}),
    ));
    let (m, _) = loud.recv_until("the log message", |v: &Value| {
        v["method"] == "notifications/message"
    });
    assert_eq!(m["params"]["data"], "w");
    loud.recv_response(&json!(2));
    quiet.post(&tool(
        json!(3),
        "log",
        json!({"level": "critical", "text": "c"}),
    ));
    let (m, before) = quiet.recv_until("the critical message", |v: &Value| {
        v["method"] == "notifications/message"
    });
    assert_eq!(m["params"]["data"], "c");
    let mut rest = quiet.drain_quiet(Duration::from_millis(300));
    rest.extend(before);
    assert!(
        rest.iter().all(|v| v["params"]["data"] != "w"),
        "the warning is filtered for the quiet session: {rest:?}"
    );
}

fn write_config(tag: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("mcp-proxy-test-{tag}-{}.json", std::process::id()));
    std::fs::write(&path, text).expect("write the config file");
    path
}

#[test]
fn config_file_servers_disabled_ones_and_the_initialize_timeout() {
    let demo = demo_bin();
    let cfg = write_config(
        "ok",
        &format!(
            r#"{{"mcpServers": {{"beta": {{"command": "{demo}", "args": ["--name", "beta"]}}, "off": {{"command": "{demo}", "enabled": false}}}}}}"#
        ),
    );
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--named-server-config",
        cfg.to_str().unwrap(),
    ]);
    p.wait_ready();
    let s = p.status();
    assert_eq!(
        s["server_instances"],
        json!({"beta": "running", "off": "disabled"}),
        "{s}"
    );
    let mut b = Session::open(
        &format!("{}/servers/beta", p.url),
        Kind::Legacy,
        "b",
        json!({}),
    );
    b.post(&tool(json!(1), "whoami", json!({})));
    let who: Value = serde_json::from_str(&text_of(&b.recv_response(&json!(1)))).unwrap();
    assert_eq!(who["name"], "beta");
    assert_eq!(
        who["initializeCount"], 1,
        "the proxy initialized the child once"
    );
    assert_eq!(
        send("GET", &format!("{}/servers/off/sse", p.url), &[], None).status,
        404
    );
    assert_eq!(
        send("GET", &format!("{}/sse", p.url), &[], None).status,
        404
    );
    drop(p);
    let _ = std::fs::remove_file(&cfg);

    let cfg = write_config(
        "hung",
        &format!(
            r#"{{"mcpServers": {{"hung": {{"command": "{demo}", "args": ["--no-init"], "timeout": 1}}}}}}"#
        ),
    );
    // The file's timeout overrides --init-timeout.
    let mut p = Proxy::start_raw(&[
        "--port",
        "0",
        "--init-timeout",
        "600",
        "--named-server-config",
        cfg.to_str().unwrap(),
    ]);
    p.proc
        .wait_stderr("'hung' did not answer initialize within 1 s", WAIT);
    let s = p.status();
    assert_ne!(s["servers"]["hung"]["state"], "running", "{s}");
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn sigterm_works_while_a_server_is_still_starting() {
    let mut proc = Proc::spawn(proxy_bin(), &["--port", "0", "--", demo_bin(), "--no-init"]);
    proc.wait_stderr("server 'default' started", WAIT);
    proc.signal(libc::SIGTERM);
    assert_eq!(proc.wait_exit(WAIT), Some(143));
}
