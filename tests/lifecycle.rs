//! Server lifecycle as an operator sees it (issue 4): named servers at
//! their own paths, parallel start, restarts after a crash with the
//! sessions carrying on, servers that hang or exit at once marked failed
//! while the others serve, truthful /status, /healthz and /readyz, config
//! errors before anything starts, the children's environment, and no
//! process left behind after SIGTERM, SIGINT or SIGKILL.

mod common;
mod server_support;

use common::{alive, demo_bin, proxy_bin, wait_gone, Proc, WAIT};
use serde_json::{json, Value};
use server_support::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn legacy_at(base: &str, name: &str) -> Session {
    Session::open(base, Kind::Legacy, name, json!({}))
}

fn streamable_at(base: &str, name: &str) -> Session {
    let kind = Kind::Streamable {
        version: "2025-06-18",
        json_only: false,
        get: true,
    };
    Session::open(base, kind, name, json!({}))
}

/// The demo server's `whoami` through session `s`.
fn whoami(s: &mut Session, id: u64) -> Value {
    s.post(&tool(json!(id), "whoami", json!({})));
    serde_json::from_str(&text_of(&s.recv_response(&json!(id)))).expect("whoami is JSON")
}

/// The first line of everything `proc` wrote to stderr that contains
/// `needle` (whether or not an earlier wait went past it).
fn stderr_line(proc: &Proc, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(l) = proc.stderr().lines().find(|l| l.contains(needle)) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no stderr line with {needle:?}:\n{}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn temp_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mcp-proxy-lifecycle-{}-{tag}", std::process::id()))
}

fn write_config(tag: &str, text: &str) -> PathBuf {
    let path = temp_file(&format!("{tag}.json"));
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Opening a session on a server that cannot answer: the initialize gets
/// a JSON-RPC error naming the server.
fn initialize_error(p: &Proxy, prefix: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let c = post_mcp(&format!("{}{prefix}/mcp", p.url), None, &body.to_string());
    assert_eq!(c.status, 200);
    let v: Value = if c.is_sse() {
        c.sse().next_json()
    } else {
        c.json()
    };
    assert_eq!(v["error"]["code"], -32603, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn two_named_servers_and_the_default_each_at_their_own_paths() {
    let alpha = format!("{} --name alpha", demo_bin());
    let beta = format!("{} --name beta", demo_bin());
    let p = Proxy::start(&[
        "--named-server",
        "alpha",
        &alpha,
        "--named-server",
        "beta",
        &beta,
    ]);
    for (prefix, name) in [
        ("", "mcp-demo-server"),
        ("/servers/alpha", "alpha"),
        ("/servers/beta", "beta"),
    ] {
        let base = format!("{}{prefix}", p.url);
        let mut l = legacy_at(&base, "l");
        assert_eq!(whoami(&mut l, 2)["name"], name, "HTTP+SSE at {base}");
        let mut s = streamable_at(&base, "s");
        assert_eq!(whoami(&mut s, 2)["name"], name, "Streamable HTTP at {base}");
    }
    let s = p.status();
    assert_eq!(
        s["server_instances"],
        json!({"default": "running", "alpha": "running", "beta": "running"}),
        "{s}"
    );
    for name in ["default", "alpha", "beta"] {
        let srv = &s["servers"][name];
        assert_eq!(srv["sessions"], 2, "{s}");
        assert_eq!(srv["restarts"], 0, "{s}");
        assert!(srv["pid"].as_u64().is_some(), "{s}");
        assert!(srv["last_exit"].is_null(), "{s}");
    }
    let h = send("GET", &format!("{}/healthz", p.url), &[], None);
    assert_eq!(h.status, 200);
    assert_eq!(p.readyz().0, 200);
    // Health lives at the root only.
    assert_eq!(
        send("GET", &format!("{}/servers/alpha/readyz", p.url), &[], None).status,
        404
    );
}

#[test]
fn servers_start_in_parallel_and_a_hung_one_holds_up_nobody() {
    let hung = format!("{} --no-init", demo_bin());
    let ok = format!("{} --name ok", demo_bin());
    // The hung server comes first: started one after another, the second
    // would wait for the first's initialize (here 600 s).
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--init-timeout",
        "600",
        "--named-server",
        "hung",
        &hung,
        "--named-server",
        "ok",
        &ok,
    ]);
    let s = p.wait_status("'ok' running", |s| s["servers"]["ok"]["state"] == "running");
    assert_eq!(s["servers"]["hung"]["state"], "starting", "{s}");
    let mut o = legacy_at(&format!("{}/servers/ok", p.url), "o");
    assert_eq!(whoami(&mut o, 2)["name"], "ok");
    let (code, body) = p.readyz();
    assert_eq!(code, 503);
    assert!(body.contains("server 'hung' is starting"), "{body}");
    assert!(!body.contains("'ok'"), "{body}");
}

#[test]
fn a_child_killed_mid_call_is_restarted_and_the_session_carries_on() {
    // A 3 s backoff keeps the "restarting" state visible to /status polls.
    let p = Proxy::start(&["--restart-backoff", "3"]);
    let mut a = legacy_at(&p.url, "a");
    let mut b = streamable_at(&p.url, "b");
    let before = whoami(&mut a, 2);
    let pid = before["pid"].as_i64().unwrap() as i32;
    a.post(&tool(json!("mid"), "slow", json!({"ms": 60000})));
    p.wait_status("the call in flight", |s| {
        s["servers"]["default"]["requests_in_flight"] == 1
    });
    let sent = Instant::now();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    // The call in flight fails at once, naming the server and the cause.
    let r = a.recv_response(&json!("mid"));
    assert!(sent.elapsed() < WAIT, "answered, not left to time out");
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("'default'") && msg.contains("signal 9"),
        "{msg}"
    );
    let s = p.wait_status("restarting", |s| {
        s["servers"]["default"]["state"] == "restarting"
    });
    assert_eq!(s["servers"]["default"]["last_exit"], "signal 9", "{s}");
    assert_eq!(s["servers"]["default"]["requests_in_flight"], 0, "{s}");
    let (code, body) = p.readyz();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("server 'default' is restarting") && body.contains("signal 9"),
        "{body}"
    );
    assert_eq!(
        send("GET", &format!("{}/healthz", p.url), &[], None).status,
        200
    );
    // A request that arrives while the server restarts waits for it.
    b.post(&tool(json!(8), "echo", json!({"text": "waited"})));
    let s = p.wait_status("running again", |s| {
        s["servers"]["default"]["state"] == "running"
    });
    assert_eq!(s["servers"]["default"]["restarts"], 1, "{s}");
    assert_eq!(s["servers"]["default"]["sessions"], 2, "sessions kept: {s}");
    assert_eq!(p.readyz().0, 200);
    // Both sessions got list_changed for what the new child offers.
    let mut early = Vec::new();
    for (sess, what) in [(&a, "legacy"), (&b, "streamable")] {
        let what = format!("tools/list_changed on the {what} session");
        let (_, others) =
            sess.recv_until(&what, |v| v["method"] == "notifications/tools/list_changed");
        early.extend(others);
    }
    // The demo server also advertises prompts and resources.
    for kind in ["prompts", "resources"] {
        let method = format!("notifications/{kind}/list_changed");
        let (_, others) = a.recv_until(&method, |v| v["method"] == method.as_str());
        early.extend(others);
    }
    let waited = match early.into_iter().find(|v| v["id"] == 8) {
        Some(v) => v,
        None => b.recv_response(&json!(8)),
    };
    assert_eq!(text_of(&waited), "waited");
    // The same sessions go on, without initializing again.
    let after = whoami(&mut a, 3);
    assert_ne!(after["pid"], before["pid"], "a new child");
    assert_eq!(after["initializeCount"], 1, "initialized by the proxy once");
    b.post(&tool(json!(9), "echo", json!({"text": "still here"})));
    assert_eq!(text_of(&b.recv_response(&json!(9))), "still here");
    wait_gone(pid, "the killed child");
}

#[test]
fn a_server_that_never_answers_initialize_is_marked_failed() {
    let hung = format!("{} --no-init", demo_bin());
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--init-timeout",
        "0.3",
        "--max-restarts",
        "1",
        "--restart-backoff",
        "0.05",
        "--named-server",
        "hung",
        &hung,
        "--",
        demo_bin(),
    ]);
    let mut d = legacy_at(&p.url, "d");
    assert_eq!(whoami(&mut d, 2)["name"], "mcp-demo-server");
    let s = p.wait_status("'hung' failed", |s| {
        s["servers"]["hung"]["state"] == "failed"
    });
    let srv = &s["servers"]["hung"];
    assert_eq!(srv["restarts"], 1, "{s}");
    assert!(
        srv["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer initialize within 0.3 s"),
        "{s}"
    );
    assert_eq!(s["servers"]["default"]["state"], "running", "{s}");
    let (code, body) = p.readyz();
    assert_eq!(code, 503);
    assert!(
        body.contains("server 'hung' is failed") && body.contains("initialize"),
        "{body}"
    );
    let msg = initialize_error(&p, "/servers/hung");
    assert!(msg.contains("'hung' has failed"), "{msg}");
    assert_eq!(whoami(&mut d, 3)["name"], "mcp-demo-server");
}

#[test]
fn a_server_that_exits_at_once_exhausts_its_budget_and_is_marked_failed() {
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--max-restarts",
        "2",
        "--restart-backoff",
        "0.05",
        "--named-server",
        "quit",
        "sh -c 'exit 3'",
        "--",
        demo_bin(),
    ]);
    let s = p.wait_status("'quit' failed", |s| {
        s["servers"]["quit"]["state"] == "failed"
    });
    let srv = &s["servers"]["quit"];
    assert_eq!(srv["restarts"], 2, "the whole budget, no more: {s}");
    assert_eq!(srv["last_exit"], "status 3", "{s}");
    assert!(
        srv["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{s}"
    );
    assert_eq!(s["server_instances"]["quit"], "failed", "{s}");
    let (code, body) = p.readyz();
    assert_eq!(code, 503);
    assert!(
        body.contains("server 'quit' is failed") && body.contains("status 3"),
        "{body}"
    );
    let msg = initialize_error(&p, "/servers/quit");
    assert!(msg.contains("'quit' has failed"), "{msg}");
    // The others are fine.
    p.wait_status("the default running", |s| {
        s["servers"]["default"]["state"] == "running"
    });
    let mut d = legacy_at(&p.url, "d");
    d.post(&tool(json!(2), "echo", json!({"text": "fine"})));
    assert_eq!(text_of(&d.recv_response(&json!(2))), "fine");
    assert_eq!(
        send("GET", &format!("{}/healthz", p.url), &[], None).status,
        200
    );
}

/// The proxy with the demo as default server and a named server `tree`
/// started through `sh -c` with a grandchild; returns every pid that must
/// die with the proxy, and a legacy session on the default server.
fn proxy_with_a_process_tree() -> (Proxy, Vec<(i32, &'static str)>, Session) {
    let tree = format!(
        "sh -c 'sleep 300 & echo grandchild $! >&2; exec {} --name tree'",
        demo_bin()
    );
    let p = Proxy::start(&["--shutdown-grace", "0.5", "--named-server", "tree", &tree]);
    let line = stderr_line(&p.proc, "[tree] grandchild ");
    let grandchild: i32 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let mut t = legacy_at(&format!("{}/servers/tree", p.url), "t");
    let tree_pid = whoami(&mut t, 2)["pid"].as_i64().unwrap() as i32;
    let mut d = legacy_at(&p.url, "d");
    let default_pid = whoami(&mut d, 2)["pid"].as_i64().unwrap() as i32;
    let s = p.status();
    let sup = |n: &str| s["servers"][n]["pid"].as_i64().unwrap() as i32;
    let pids = vec![
        (grandchild, "the grandchild started through sh -c"),
        (tree_pid, "the tree server"),
        (default_pid, "the default server"),
        (sup("tree"), "the tree server's supervisor"),
        (sup("default"), "the default server's supervisor"),
    ];
    for (pid, what) in &pids {
        assert!(alive(*pid), "{what} ({pid}) runs before the signal");
    }
    (p, pids, d)
}

#[test]
fn sigterm_sigint_and_sigkill_leave_no_process_behind() {
    for (sig, status) in [
        (libc::SIGTERM, Some(143)),
        (libc::SIGINT, Some(130)),
        (libc::SIGKILL, None),
    ] {
        let (mut p, pids, mut d) = proxy_with_a_process_tree();
        let mut s = streamable_at(&p.url, "s");
        d.post(&tool(json!("busy"), "slow", json!({"ms": 60000})));
        s.post(&tool(json!("busy"), "slow", json!({"ms": 60000})));
        p.wait_status("two calls in flight", |s| {
            s["servers"]["default"]["requests_in_flight"] == 2
        });
        p.proc.signal(sig);
        if sig != libc::SIGKILL {
            // A graceful stop answers the calls in flight before it exits.
            for sess in [&d, &s] {
                let r = sess.recv_response(&json!("busy"));
                let msg = r["error"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains("shutting down"), "{r}");
            }
        }
        assert_eq!(
            p.proc.wait_exit(WAIT),
            status,
            "exit status after signal {sig}"
        );
        for (pid, what) in pids {
            wait_gone(pid, &format!("{what} after signal {sig}"));
        }
    }
}

#[test]
fn children_see_the_safe_variables_and_only_their_own_extras() {
    let cfg = write_config(
        "env",
        &format!(
            r#"{{"mcpServers": {{"conf": {{"command": "sh", "args": ["-c", "env >&2; echo ENV-END >&2; exec {} --name conf"], "env": {{"ONLY_CONF": "c"}}}}}}}}"#,
            demo_bin()
        ),
    );
    let default_cmd = format!("env >&2; echo ENV-END >&2; exec {}", demo_bin());
    let tmp = std::env::temp_dir();
    let run = |pass: bool| {
        let mut args = vec![
            "--port",
            "0",
            "--named-server-config",
            cfg.to_str().unwrap(),
            "-e",
            "ONLY_DEFAULT",
            "d",
        ];
        if pass {
            args.push("--pass-environment");
        }
        args.extend(["--", "sh", "-c", &default_cmd]);
        let proc = Proc::spawn_with(
            proxy_bin(),
            &args,
            &[
                ("MCP_TEST_SECRET", "hush"),
                ("LANG", "C.UTF-8"),
                ("TMPDIR", tmp.to_str().unwrap()),
                ("HOME", "/home/lifecycle-test"),
            ],
        );
        stderr_line(&proc, "[default] ENV-END");
        stderr_line(&proc, "[conf] ENV-END");
        proc.stderr()
    };
    let err = run(false);
    let has = |name: &str, var: &str| err.contains(&format!("\n[{name}] {var}"));
    for name in ["default", "conf"] {
        for var in [
            "PATH=",
            "HOME=/home/lifecycle-test",
            "LANG=C.UTF-8",
            "TMPDIR=",
        ] {
            assert!(has(name, var), "{name} sees {var}:\n{err}");
        }
        assert!(!has(name, "MCP_TEST_SECRET="), "{name}: no secret:\n{err}");
    }
    assert!(
        has("default", "ONLY_DEFAULT=d"),
        "-e reaches the default:\n{err}"
    );
    assert!(
        !has("conf", "ONLY_DEFAULT="),
        "-e is the default's only:\n{err}"
    );
    assert!(
        has("conf", "ONLY_CONF=c"),
        "config env reaches its server:\n{err}"
    );
    assert!(
        !has("default", "ONLY_CONF="),
        "config env is its server's only:\n{err}"
    );
    let err = run(true);
    for name in ["default", "conf"] {
        assert!(
            err.contains(&format!("\n[{name}] MCP_TEST_SECRET=hush")),
            "--pass-environment passes everything to {name}:\n{err}"
        );
    }
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn config_errors_exit_2_before_anything_starts() {
    let marker = temp_file("started");
    let _ = std::fs::remove_file(&marker);
    // A valid first server that leaves a trace if it is ever started.
    let first = format!(
        r#""first": {{"command": "sh", "args": ["-c", "touch {}"]}}"#,
        marker.display()
    );
    let cases: &[(&str, String, &[&str])] = &[
        (
            "json",
            format!("{{\"mcpServers\": {{{first},"),
            &["not valid JSON"],
        ),
        (
            "dup",
            format!(
                r#"{{"mcpServers": {{{first}, "a": {{"command": "x"}}, "a": {{"command": "y"}}}}}}"#
            ),
            &["'a'", "twice"],
        ),
        (
            "name",
            format!(r#"{{"mcpServers": {{{first}, "a/b": {{"command": "x"}}}}}}"#),
            &["'a/b'", "URL"],
        ),
        (
            "empty",
            format!(r#"{{"mcpServers": {{{first}, "e": {{"command": " "}}}}}}"#),
            &["'e'", "\"command\"", "empty"],
        ),
        (
            "type",
            format!(r#"{{"mcpServers": {{{first}, "t": {{"command": "x", "args": "y"}}}}}}"#),
            &["'t'", "\"args\""],
        ),
    ];
    for (tag, text, needles) in cases {
        let path = write_config(tag, text);
        let mut proc = Proc::spawn(
            proxy_bin(),
            &[
                "--port",
                "0",
                "--named-server-config",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(proc.wait_exit(WAIT), Some(2), "{tag}: {}", proc.stderr());
        stderr_line(&proc, "mcp-proxy: ");
        let err = proc.stderr();
        assert_eq!(err.trim_end().lines().count(), 1, "{tag}: one line: {err}");
        assert!(err.starts_with("mcp-proxy: "), "{tag}: {err}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "{tag}: names the file: {err}"
        );
        for n in *needles {
            assert!(err.contains(n), "{tag}: {err} should mention {n}");
        }
        let _ = std::fs::remove_file(&path);
    }
    let missing = temp_file("missing.json");
    let mut proc = Proc::spawn(
        proxy_bin(),
        &[
            "--port",
            "0",
            "--named-server-config",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(proc.wait_exit(WAIT), Some(2));
    stderr_line(&proc, missing.to_str().unwrap());
    assert!(!marker.exists(), "no server was started");
    // Unknown fields are warned about, not fatal.
    let path = write_config(
        "unknown",
        &format!(
            r#"{{"mcpServers": {{"u": {{"command": "{}", "autoApprove": []}}}}}}"#,
            demo_bin()
        ),
    );
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--named-server-config",
        path.to_str().unwrap(),
    ]);
    p.wait_ready();
    let line = stderr_line(&p.proc, "autoApprove");
    assert!(
        line.contains("'u'") && line.contains("unknown field"),
        "{line}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_child_flooding_stderr_still_answers() {
    let p = Proxy::start(&[]);
    let mut s = legacy_at(&p.url, "s");
    // About 600 KB, ten times a pipe buffer: a child whose stderr nobody
    // reads would block on it before replying.
    s.post(&tool(
        json!(2),
        "stderr",
        json!({"text": "flood", "lines": 30000}),
    ));
    assert_eq!(text_of(&s.recv_response(&json!(2))), "written");
    stderr_line(&p.proc, "[default] demo: flood 29999");
    s.post(&tool(json!(3), "echo", json!({"text": "after"})));
    assert_eq!(text_of(&s.recv_response(&json!(3))), "after");
}

#[test]
fn a_server_that_fails_its_first_start_is_retried_and_then_serves() {
    let marker = temp_file("second-try");
    let _ = std::fs::remove_file(&marker);
    // Exits 3 the first time, serves the second.
    let flaky = format!(
        "sh -c 'test -e {m} || {{ touch {m}; exit 3; }}; exec {demo} --name flaky'",
        m = marker.display(),
        demo = demo_bin()
    );
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--restart-backoff",
        "0.05",
        "--named-server",
        "flaky",
        &flaky,
        "--",
        demo_bin(),
    ]);
    let s = p.wait_status("'flaky' running", |s| {
        s["servers"]["flaky"]["state"] == "running"
    });
    assert_eq!(s["servers"]["flaky"]["restarts"], 1, "{s}");
    assert_eq!(s["servers"]["flaky"]["last_exit"], "status 3", "{s}");
    let mut f = legacy_at(&format!("{}/servers/flaky", p.url), "f");
    assert_eq!(whoami(&mut f, 2)["name"], "flaky");
    p.wait_ready();
    let _ = std::fs::remove_file(&marker);
}

/// How many times the script at `counter` ran (it appends a line per run).
fn runs(counter: &PathBuf) -> usize {
    std::fs::read_to_string(counter)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_failed_server_is_retried_every_failed_retry_until_it_serves() {
    let counter = temp_file("retry-runs");
    let go = temp_file("retry-go");
    let _ = std::fs::remove_file(&counter);
    let _ = std::fs::remove_file(&go);
    // Counts its runs, and exits 3 until the test creates `go`.
    let flaky = format!(
        "sh -c 'echo run >> {c}; test -e {g} || exit 3; exec {demo} --name flaky'",
        c = counter.display(),
        g = go.display(),
        demo = demo_bin()
    );
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--max-restarts",
        "1",
        "--restart-backoff",
        "0.05",
        "--failed-retry",
        "1",
        "--named-server",
        "flaky",
        &flaky,
        "--",
        demo_bin(),
    ]);
    let line = stderr_line(&p.proc, "server 'flaky' failed: ");
    assert!(line.contains("retries it every 1 s"), "{line}");
    let s = p.wait_status("'flaky' failed", |s| {
        s["servers"]["flaky"]["state"] == "failed"
    });
    assert_eq!(s["servers"]["flaky"]["last_exit"], "status 3", "{s}");
    let msg = initialize_error(&p, "/servers/flaky");
    assert!(
        msg.contains("'flaky' has failed") && msg.contains("retries it every 1 s"),
        "{msg}"
    );
    // Retried again and again while it keeps failing, and still failed.
    stderr_line(&p.proc, "retrying failed server 'flaky' (restart 2)");
    stderr_line(&p.proc, "retrying failed server 'flaky' (restart 3)");
    let s = p.wait_status("'flaky' failed after its retries", |s| {
        s["servers"]["flaky"]["restarts"].as_u64() >= Some(3)
    });
    assert_eq!(s["servers"]["flaky"]["state"], "failed", "{s}");
    // The fourth start is under way; its shell may not have counted
    // itself yet.
    let deadline = Instant::now() + WAIT;
    while runs(&counter) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(runs(&counter) >= 4, "started {} times", runs(&counter));
    assert_eq!(p.readyz().0, 503);
    // The next retry finds it working: running again, and it serves.
    std::fs::write(&go, "").expect("create the go file");
    let s = p.wait_status("'flaky' running", |s| {
        s["servers"]["flaky"]["state"] == "running"
    });
    assert!(s["servers"]["flaky"]["pid"].as_u64().is_some(), "{s}");
    let mut f = streamable_at(&format!("{}/servers/flaky", p.url), "f");
    f.post(&tool(json!(2), "echo", json!({"text": "back"})));
    assert_eq!(text_of(&f.recv_response(&json!(2))), "back");
    assert_eq!(whoami(&mut f, 3)["name"], "flaky");
    p.wait_ready();
    let _ = std::fs::remove_file(&counter);
    let _ = std::fs::remove_file(&go);
}

#[test]
fn with_failed_retry_0_a_failed_server_is_never_retried() {
    let counter = temp_file("never-runs");
    let _ = std::fs::remove_file(&counter);
    let quit = format!("sh -c 'echo run >> {}; exit 3'", counter.display());
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--max-restarts",
        "1",
        "--restart-backoff",
        "0.05",
        "--failed-retry",
        "0",
        "--named-server",
        "quit",
        &quit,
        "--",
        demo_bin(),
    ]);
    let line = stderr_line(&p.proc, "server 'quit' failed: ");
    assert!(line.contains("will not be retried"), "{line}");
    let s = p.wait_status("'quit' failed", |s| {
        s["servers"]["quit"]["state"] == "failed"
    });
    assert_eq!(s["servers"]["quit"]["restarts"], 1, "{s}");
    let msg = initialize_error(&p, "/servers/quit");
    assert!(msg.contains("will not be retried"), "{msg}");
    // Sixty times the backoff and three times the retry interval of the
    // test above: a retry, had one been scheduled, would have run by now.
    std::thread::sleep(Duration::from_secs(3));
    let s = p.status();
    assert_eq!(s["servers"]["quit"]["state"], "failed", "{s}");
    assert_eq!(s["servers"]["quit"]["restarts"], 1, "no retry: {s}");
    assert_eq!(runs(&counter), 2, "started once and restarted once");
    assert!(
        !p.proc.stderr().contains("retrying failed server"),
        "{}",
        p.proc.stderr()
    );
    // The others serve.
    let mut d = legacy_at(&p.url, "d");
    assert_eq!(whoami(&mut d, 2)["name"], "mcp-demo-server");
    let _ = std::fs::remove_file(&counter);
}

/// The proxy in front of `mcp-demo-server --strict` (which notifies only
/// for URIs it was asked to subscribe to, and logs only at or above the
/// level it was set to), one HTTP+SSE and one Streamable HTTP session.
fn strict_proxy() -> (Proxy, Session, Session) {
    strict_proxy_with_backoff("0.05")
}

/// [`strict_proxy`] with a 3 s restart backoff, which leaves a test time
/// to act while the server restarts.
fn slow_restart_proxy() -> (Proxy, Session, Session) {
    strict_proxy_with_backoff("3")
}

fn strict_proxy_with_backoff(secs: &str) -> (Proxy, Session, Session) {
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--restart-backoff",
        secs,
        "--",
        demo_bin(),
        "--strict",
    ]);
    p.wait_ready();
    let a = legacy_at(&p.url, "a");
    let b = streamable_at(&p.url, "b");
    (p, a, b)
}

/// Crashes the child through session `s` and waits for its successor.
fn crash_and_wait_for_restart(p: &Proxy, s: &mut Session) {
    s.post(&tool(json!("crash"), "crash", json!({})));
    let r = s.recv_response(&json!("crash"));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    p.wait_status("running after the restart", |s| {
        s["servers"]["default"]["state"] == "running" && s["servers"]["default"]["restarts"] == 1
    });
}

/// The demo's `whoami` through `s`, asked again until `pred` holds: the
/// demo handles each request on its own thread, so what the proxy told the
/// new child just before may still be on its way.
fn whoami_until(s: &mut Session, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    for id in 100.. {
        let v = whoami(s, id);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the child never showed {what}: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!("the loop returns or fails")
}

fn is_update(v: &Value, uri: &str) -> bool {
    v["method"] == "notifications/resources/updated" && v["params"]["uri"] == uri
}

#[test]
fn subscriptions_are_sent_again_to_a_restarted_child() {
    let (p, mut a, mut b) = strict_proxy();
    a.post(&req(
        json!(2),
        "resources/subscribe",
        json!({"uri": "demo://x"}),
    ));
    assert_eq!(a.recv_response(&json!(2))["result"], json!({}));
    b.post(&tool(json!(2), "touch", json!({"uri": "demo://x"})));
    assert_eq!(text_of(&b.recv_response(&json!(2))), "touched");
    a.recv_until("the update before the restart", |v| {
        is_update(v, "demo://x")
    });
    let before = whoami(&mut b, 3)["pid"].clone();

    crash_and_wait_for_restart(&p, &mut b);
    let after = whoami_until(&mut b, "the subscription", |v| {
        v["subscriptions"] == json!(["demo://x"])
    });
    assert_ne!(after["pid"], before, "a new child");
    b.post(&tool(json!(5), "touch", json!({"uri": "demo://x"})));
    assert_eq!(text_of(&b.recv_response(&json!(5))), "touched");
    a.recv_until("the update after the restart", |v| is_update(v, "demo://x"));
    // The router handles the child's lines in order: had the update gone
    // to b too, it would already be on its way.
    let extra = b.drain_quiet(Duration::from_millis(300));
    assert!(
        !extra.iter().any(|v| is_update(v, "demo://x")),
        "the unsubscribed session gets no update: {extra:?}"
    );
    // Unsubscribing still reaches the new child.
    a.post(&req(
        json!(6),
        "resources/unsubscribe",
        json!({"uri": "demo://x"}),
    ));
    assert_eq!(a.recv_response(&json!(6))["result"], json!({}));
    whoami_until(&mut b, "no subscription", |v| {
        v["subscriptions"] == json!([])
    });
}

/// Crashes the child through session `s` and waits until the proxy is
/// restarting it (not yet running again).
fn crash_into_restart(p: &Proxy, s: &mut Session) {
    s.post(&tool(json!("crash"), "crash", json!({})));
    s.recv_response(&json!("crash"));
    p.wait_status("restarting", |s| {
        s["servers"]["default"]["state"] == "restarting"
    });
}

#[test]
fn a_subscribe_that_waits_for_a_restart_reaches_the_new_child_once() {
    let (p, mut a, mut b) = slow_restart_proxy();
    crash_into_restart(&p, &mut b);
    a.post(&req(
        json!(2),
        "resources/subscribe",
        json!({"uri": "demo://y"}),
    ));
    p.wait_status("running again", |s| {
        s["servers"]["default"]["state"] == "running"
    });
    assert_eq!(a.recv_response(&json!(2))["result"], json!({}));
    let v = whoami_until(&mut b, "the subscription", |v| {
        v["subscriptions"] == json!(["demo://y"])
    });
    let asked = v["methodsSeen"]
        .as_array()
        .expect("methodsSeen is a list")
        .iter()
        .filter(|m| *m == "resources/subscribe")
        .count();
    assert_eq!(asked, 1, "subscribed once: {v}");
    b.post(&tool(json!(3), "touch", json!({"uri": "demo://y"})));
    assert_eq!(text_of(&b.recv_response(&json!(3))), "touched");
    a.recv_until("the update", |v| is_update(v, "demo://y"));
}

/// An unsubscribe that waits for a restart is answered without troubling
/// the new child, which was never subscribed (the subscription ended with
/// the old child and is not sent again); a subscribe and unsubscribe that
/// both wait reach it, in order.
#[test]
fn an_unsubscribe_that_waits_for_a_restart_does_not_reach_the_new_child() {
    let (p, mut a, mut b) = slow_restart_proxy();
    a.post(&req(
        json!(1),
        "resources/subscribe",
        json!({"uri": "demo://z"}),
    ));
    assert_eq!(a.recv_response(&json!(1))["result"], json!({}));
    crash_into_restart(&p, &mut b);
    a.post(&req(
        json!(2),
        "resources/unsubscribe",
        json!({"uri": "demo://z"}),
    ));
    a.post(&req(
        json!(3),
        "resources/subscribe",
        json!({"uri": "demo://w"}),
    ));
    a.post(&req(
        json!(4),
        "resources/unsubscribe",
        json!({"uri": "demo://w"}),
    ));
    p.wait_status("running again", |s| {
        s["servers"]["default"]["state"] == "running"
    });
    // The child answers the pair on threads of its own: in either order.
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 3 {
        let v = a.recv();
        if v.get("method").is_none() {
            answered.insert(v["id"].to_string(), v["result"].clone());
        }
    }
    for id in ["2", "3", "4"] {
        assert_eq!(answered[id], json!({}), "{id}: {answered:?}");
    }
    // The demo records requests as it reads them (it then runs each on a
    // thread of its own, so its final subscriptions could be either).
    let v = whoami_until(&mut b, "demo://w's unsubscribe", |v| {
        v["methodsSeen"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "resources/unsubscribe"))
    });
    let seen: Vec<&str> = v["methodsSeen"]
        .as_array()
        .expect("methodsSeen is a list")
        .iter()
        .filter_map(Value::as_str)
        .filter(|m| m.starts_with("resources/"))
        .collect();
    assert_eq!(
        seen,
        ["resources/subscribe", "resources/unsubscribe"],
        "only demo://w's pair reached the new child: {v}"
    );
}

#[test]
fn a_subscribe_refused_by_a_failed_server_is_not_sent_when_it_recovers() {
    let go = temp_file("refused-go");
    std::fs::write(&go, "").expect("create the go file");
    // Serves while `go` exists, exits 3 otherwise.
    let script = format!(
        "test -e {g} || exit 3; exec {demo} --strict",
        g = go.display(),
        demo = demo_bin()
    );
    let p = Proxy::start_raw(&[
        "--port",
        "0",
        "--max-restarts",
        "0",
        "--failed-retry",
        "1",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    p.wait_ready();
    let mut a = legacy_at(&p.url, "a");
    let mut b = streamable_at(&p.url, "b");
    std::fs::remove_file(&go).expect("remove the go file");
    b.post(&tool(json!("crash"), "crash", json!({})));
    b.recv_response(&json!("crash"));
    p.wait_status("failed", |s| s["servers"]["default"]["state"] == "failed");
    a.post(&req(
        json!(2),
        "resources/subscribe",
        json!({"uri": "demo://x"}),
    ));
    let r = a.recv_response(&json!(2));
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("has failed"), "refused: {r}");
    std::fs::write(&go, "").expect("create the go file again");
    p.wait_status("running again", |s| {
        s["servers"]["default"]["state"] == "running"
    });
    // A subscription b makes now is behind anything the proxy sent the
    // new child when it started.
    b.post(&req(
        json!(3),
        "resources/subscribe",
        json!({"uri": "demo://z"}),
    ));
    assert_eq!(b.recv_response(&json!(3))["result"], json!({}));
    let v = whoami_until(&mut b, "b's subscription", |v| {
        v["subscriptions"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("demo://z")))
    });
    assert_eq!(v["subscriptions"], json!(["demo://z"]), "{v}");
    b.post(&tool(json!(4), "touch", json!({"uri": "demo://x"})));
    assert_eq!(text_of(&b.recv_response(&json!(4))), "not subscribed");
    let got = a.drain_quiet(Duration::from_millis(300));
    assert!(
        !got.iter().any(|v| is_update(v, "demo://x")),
        "the refused subscription gets no update: {got:?}"
    );
    let _ = std::fs::remove_file(&go);
}

#[test]
fn log_levels_are_set_again_on_a_restarted_child() {
    let (p, mut a, mut b) = strict_proxy();
    a.post(&req(
        json!(2),
        "logging/setLevel",
        json!({"level": "debug"}),
    ));
    assert_eq!(a.recv_response(&json!(2))["result"], json!({}));
    b.post(&req(
        json!(2),
        "logging/setLevel",
        json!({"level": "error"}),
    ));
    assert_eq!(b.recv_response(&json!(2))["result"], json!({}));
    let is_log = |v: &Value| v["method"] == "notifications/message" && v["params"]["data"] == "dbg";

    crash_and_wait_for_restart(&p, &mut b);
    // The most verbose level any session asked for.
    whoami_until(&mut b, "log level debug", |v| v["logLevel"] == "debug");
    b.post(&tool(
        json!(4),
        "log",
        json!({"level": "debug", "text": "dbg"}),
    ));
    assert_eq!(text_of(&b.recv_response(&json!(4))), "logged");
    a.recv_until("the debug message after the restart", is_log);
    let extra = b.drain_quiet(Duration::from_millis(300));
    assert!(
        !extra.iter().any(is_log),
        "the session at 'error' gets no debug message: {extra:?}"
    );
}
