//! `GET /metrics`: what a Prometheus scrape shows after calls, errors, a
//! child crash and restart, a failed server, an oversized reply and an
//! init timeout; the text format itself (HELP and TYPE for every sample,
//! escaped label values), and the same access rules as `/status`.

mod common;
mod server_support;

use serde_json::{json, Value};
use server_support::*;
use std::collections::HashMap;

/// One sample of the text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses a scrape and checks the format on the way: every sample's
/// family was given a HELP and a TYPE before it, counters end in
/// `_total`, label values are properly quoted and escaped, and values
/// are numbers.
fn parse(text: &str) -> Vec<Sample> {
    let mut help = HashMap::new();
    let mut kind = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').expect("HELP has a name and text");
            assert!(!h.is_empty(), "empty HELP: {line}");
            help.insert(name.to_owned(), h.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, k) = rest.split_once(' ').expect("TYPE has a name and kind");
            assert!(matches!(k, "counter" | "gauge"), "{line}");
            if k == "counter" {
                assert!(name.ends_with("_total"), "counter not named _total: {line}");
            }
            assert!(name.starts_with("mcp_proxy_"), "{line}");
            kind.insert(name.to_owned(), k.to_owned());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let name_end = line.find(['{', ' ']).expect("a sample has a value");
        let name = &line[..name_end];
        assert!(help.contains_key(name), "no HELP before {line}");
        assert!(kind.contains_key(name), "no TYPE before {line}");
        let mut labels = HashMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices();
            let mut key = String::new();
            let end;
            loop {
                let (i, c) = chars.next().expect("labels end with }");
                match c {
                    '}' if key.is_empty() => {
                        end = i + 1;
                        break;
                    }
                    ',' if key.is_empty() => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        let mut val = String::new();
                        loop {
                            match chars.next().expect("a closing quote").1 {
                                '\\' => match chars.next().expect("an escape").1 {
                                    'n' => val.push('\n'),
                                    c @ ('\\' | '"') => val.push(c),
                                    c => panic!("bad escape \\{c} in {line}"),
                                },
                                '"' => break,
                                '\n' => panic!("raw newline in {line}"),
                                c => val.push(c),
                            }
                        }
                        assert!(
                            labels.insert(std::mem::take(&mut key), val).is_none(),
                            "{line}"
                        );
                    }
                    c => key.push(c),
                }
            }
            rest = &r[end..];
        }
        let value = rest
            .trim_start()
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{line}"));
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// `GET /metrics` with its checks; returns the parsed samples.
fn scrape(base: &str) -> Vec<Sample> {
    let c = send("GET", &format!("{base}/metrics"), &[], None);
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&c.text())
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name} {labels:?}: {} samples match: {found:?}",
        found.len()
    );
    found[0].value
}

fn responses(m: &[Sample], source: &str, outcome: &str) -> f64 {
    value(
        m,
        "mcp_proxy_responses_total",
        &[
            ("server", "default"),
            ("source", source),
            ("outcome", outcome),
        ],
    )
}

fn per_server(m: &[Sample], name: &str) -> f64 {
    value(m, name, &[("server", "default")])
}

fn legacy(p: &Proxy) -> Session {
    Session::open(&p.url, Kind::Legacy, "metrics", json!({}))
}

#[test]
fn counters_after_calls_an_error_and_a_restart() {
    let p = Proxy::start(&[]);
    let m = scrape(&p.url);
    assert_eq!(value(&m, "mcp_proxy_build_info", &[]), 1.0);
    let build = m.iter().find(|s| s.name == "mcp_proxy_build_info").unwrap();
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = value(&m, "mcp_proxy_process_start_time_seconds", &[]);
    assert!(start > now - 3600.0 && start <= now, "{start} vs now {now}");
    assert_eq!(per_server(&m, "mcp_proxy_server_up"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_child_starts_total"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_requests_forwarded_total"), 0.0);

    let mut s = legacy(&p);
    for i in 1..=3 {
        s.post(&tool(json!(i), "echo", json!({"text": "hi"})));
        assert_eq!(text_of(&s.recv_response(&json!(i))), "hi");
    }
    s.post(&req(json!(4), "no/such/method", json!({})));
    let r = s.recv_response(&json!(4));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // A line on the child's stdout that is not JSON-RPC is dropped.
    s.post(&tool(json!(5), "noise", json!({})));
    assert_eq!(text_of(&s.recv_response(&json!(5))), "noisy");
    let m = scrape(&p.url);
    assert_eq!(per_server(&m, "mcp_proxy_requests_forwarded_total"), 5.0);
    assert_eq!(responses(&m, "child", "ok"), 4.0);
    assert_eq!(responses(&m, "child", "error"), 1.0);
    assert_eq!(responses(&m, "proxy", "child_died"), 0.0);
    assert_eq!(per_server(&m, "mcp_proxy_requests_in_flight"), 0.0);
    let sessions = |m: &[Sample], t: &str| {
        value(
            m,
            "mcp_proxy_sessions",
            &[("server", "default"), ("transport", t)],
        )
    };
    assert_eq!(sessions(&m, "sse"), 1.0);
    assert_eq!(sessions(&m, "streamable"), 0.0);
    assert_eq!(per_server(&m, "mcp_proxy_open_streams"), 1.0);
    // A Streamable HTTP session with its GET stream open.
    let kind = Kind::Streamable {
        version: "2025-06-18",
        json_only: false,
        get: true,
    };
    let st = Session::open(&p.url, kind, "streamable", json!({}));
    let m2 = scrape(&p.url);
    assert_eq!(sessions(&m2, "streamable"), 1.0);
    assert_eq!(per_server(&m2, "mcp_proxy_open_streams"), 2.0);
    assert_eq!(st.delete(), 200);
    let m2 = scrape(&p.url);
    assert_eq!(sessions(&m2, "streamable"), 0.0);
    let dropped = |m: &[Sample], why: &str| {
        value(
            m,
            "mcp_proxy_messages_dropped_total",
            &[("server", "default"), ("reason", why)],
        )
    };
    assert_eq!(dropped(&m, "invalid"), 1.0);
    assert_eq!(dropped(&m, "slow_consumer"), 0.0);
    // The HTTP layer: one GET /sse, and one 202 per POST (initialize and
    // five requests).
    let code = |m: &[Sample], c: &str| value(m, "mcp_proxy_http_responses_total", &[("code", c)]);
    assert_eq!(code(&m, "202"), 6.0);
    assert!(!m
        .iter()
        .any(|s| s.name == "mcp_proxy_http_responses_total" && s.labels["code"] == "404"));
    assert_eq!(
        send("GET", &format!("{}/nowhere", p.url), &[], None).status,
        404
    );

    // The child crashes with the call in flight; the proxy answers it and
    // restarts the child.
    s.post(&tool(json!(6), "crash", json!({"code": 3})));
    let r = s.recv_response(&json!(6));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    p.wait_status("the server restarted", |s| {
        s["servers"]["default"]["state"] == "running" && s["servers"]["default"]["restarts"] == 1
    });
    s.post(&tool(json!(7), "echo", json!({"text": "back"})));
    assert_eq!(text_of(&s.recv_response(&json!(7))), "back");
    let m = scrape(&p.url);
    assert_eq!(per_server(&m, "mcp_proxy_server_up"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_child_starts_total"), 2.0);
    assert_eq!(per_server(&m, "mcp_proxy_child_restarts_total"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_requests_forwarded_total"), 7.0);
    assert_eq!(responses(&m, "proxy", "child_died"), 1.0);
    assert_eq!(responses(&m, "child", "ok"), 5.0);
    assert_eq!(code(&m, "404"), 1.0);
    // The Streamable session's initialize (200), notifications/initialized
    // (202) and DELETE (200) are in there too.
    assert_eq!(code(&m, "202"), 9.0);
}

#[test]
fn a_failed_server_refuses_and_shows_down() {
    let p = Proxy::start(&["--max-restarts", "0", "--failed-retry", "0"]);
    let mut s = legacy(&p);
    s.post(&tool(json!(1), "crash", json!({"code": 4})));
    s.recv_response(&json!(1));
    p.wait_status("the server failed", |s| {
        s["servers"]["default"]["state"] == "failed"
    });
    s.post(&tool(json!(2), "echo", json!({"text": "x"})));
    let r = s.recv_response(&json!(2));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("failed"),
        "{r}"
    );
    let m = scrape(&p.url);
    assert_eq!(per_server(&m, "mcp_proxy_server_up"), 0.0);
    assert_eq!(per_server(&m, "mcp_proxy_child_starts_total"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_child_restarts_total"), 0.0);
    assert_eq!(per_server(&m, "mcp_proxy_requests_forwarded_total"), 1.0);
    assert_eq!(responses(&m, "proxy", "child_died"), 1.0);
    assert_eq!(responses(&m, "proxy", "refused"), 1.0);
}

#[test]
fn an_oversized_reply_is_a_proxy_error_and_a_dropped_message() {
    let p = Proxy::start(&["--max-message-size", "20000"]);
    let mut s = legacy(&p);
    s.post(&tool(json!(1), "big", json!({"bytes": 50000})));
    let r = s.recv_response(&json!(1));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{r}"
    );
    let m = scrape(&p.url);
    assert_eq!(responses(&m, "proxy", "oversized"), 1.0);
    assert_eq!(responses(&m, "child", "ok"), 0.0);
    assert_eq!(
        value(
            &m,
            "mcp_proxy_messages_dropped_total",
            &[("server", "default"), ("reason", "oversized")]
        ),
        1.0
    );
}

#[test]
fn a_child_that_never_initializes_times_requests_out() {
    // `sleep` never answers initialize.
    let p = Proxy::start_raw(&["--port", "0", "--init-timeout", "1", "--", "sleep", "60"]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let c = post_mcp(&format!("{}/mcp", p.url), None, &init.to_string());
    let v: Value = match c.is_sse() {
        true => c.sse().next_json(),
        false => c.json(),
    };
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer initialize"),
        "{v}"
    );
    let m = scrape(&p.url);
    assert_eq!(responses(&m, "proxy", "timeout"), 1.0);
    assert_eq!(per_server(&m, "mcp_proxy_server_up"), 0.0);
    assert_eq!(per_server(&m, "mcp_proxy_requests_forwarded_total"), 0.0);
}

#[test]
fn metrics_need_the_token_like_status() {
    let p = Proxy::start(&["--auth-token", "s3cret-token"]);
    let url = format!("{}/metrics", p.url);
    assert_eq!(send("GET", &url, &[], None).status, 401);
    let c = send(
        "GET",
        &url,
        &[("Authorization", "Bearer s3cret-token")],
        None,
    );
    assert_eq!(c.status, 200);
    let m = parse(&c.text());
    // The 401 above is counted; this scrape is not, yet.
    assert_eq!(
        value(&m, "mcp_proxy_http_responses_total", &[("code", "401")]),
        1.0
    );
    assert_eq!(
        send(
            "POST",
            &url,
            &[("Authorization", "Bearer s3cret-token")],
            None
        )
        .status,
        405
    );
    // A page in a browser cannot read them (Origin check, as /status).
    let c = send(
        "GET",
        &url,
        &[
            ("Authorization", "Bearer s3cret-token"),
            ("Origin", "http://evil.example"),
        ],
        None,
    );
    assert_eq!(c.status, 403);

    let open = Proxy::start(&["--auth-token", "s3cret-token", "--status-no-auth"]);
    assert_eq!(
        send("GET", &format!("{}/metrics", open.url), &[], None).status,
        200
    );
}

#[test]
fn named_servers_each_get_their_label() {
    let alpha = format!("{} --name alpha", common::demo_bin());
    let p = Proxy::start(&["--named-server", "alpha", &alpha]);
    let mut s = Session::open(
        &format!("{}/servers/alpha", p.url),
        Kind::Legacy,
        "a",
        json!({}),
    );
    s.post(&tool(json!(1), "echo", json!({"text": "a"})));
    s.recv_response(&json!(1));
    let m = scrape(&p.url);
    let fwd = |srv: &str| value(&m, "mcp_proxy_requests_forwarded_total", &[("server", srv)]);
    assert_eq!(fwd("alpha"), 1.0);
    assert_eq!(fwd("default"), 0.0);
}

#[test]
fn responses_the_http_parser_makes_are_counted_too() {
    use std::io::{Read, Write};
    let p = Proxy::start(&[]);
    let host = p.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"NOT AN HTTP REQUEST LINE AT ALL\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let m = scrape(&p.url);
    assert_eq!(
        value(&m, "mcp_proxy_http_responses_total", &[("code", "400")]),
        1.0
    );
}
