//! Client-mode secrets never reach a log line, even at `--log-level
//! debug`: `-H` values, `API_ACCESS_TOKEN`, `--password` (and its Basic
//! encoding), credentials and a token in the URL. (Server mode's
//! `--auth-token` is checked in server_hardening.rs.)

mod common;

use common::{demo_bin, proxy_bin, Proc};
use serde_json::json;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;

fn exercise(p: &mut Proc) {
    p.send(INIT);
    let r = p.recv_response(&json!(1));
    assert!(r.get("result").is_some(), "{r}");
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    p.recv_response(&json!(2));
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#);
    p.recv_response(&json!(3));
    p.close_stdin();
    p.wait_exit(common::WAIT);
}

fn assert_clean(log: &str, secrets: &[&str]) {
    assert!(log.contains("DEBUG"), "debug logging is on:\n{log}");
    for s in secrets {
        assert!(!log.contains(s), "{s:?} reached the log:\n{log}");
    }
}

#[test]
fn headers_token_and_url_secrets_stay_out_of_the_debug_log() {
    let mut remote = Proc::spawn(demo_bin(), &["--http", "0"]);
    let base = remote.listening_url();
    let url = format!("{base}/mcp?token=qsecret42");
    let mut p = Proc::spawn_with(
        proxy_bin(),
        &["--log-level", "debug", "-H", "X-Api-Key", "hsecret17", &url],
        &[("API_ACCESS_TOKEN", "apisecret99")],
    );
    exercise(&mut p);
    assert_clean(&p.stderr(), &["hsecret17", "apisecret99", "qsecret42"]);
}

#[test]
fn basic_auth_password_stays_out_of_the_debug_log() {
    let mut remote = Proc::spawn(demo_bin(), &["--http", "0"]);
    let base = remote.listening_url();
    let with_creds = base.replacen("http://", "http://urluser:urlpass55@", 1);
    let url = format!("{with_creds}/mcp");
    let mut p = Proc::spawn(
        proxy_bin(),
        &[
            "--log-level",
            "debug",
            "--username",
            "alice",
            "--password",
            "pwsecret73",
            &url,
        ],
    );
    exercise(&mut p);
    // base64("alice:pwsecret73") and the URL's own password.
    assert_clean(
        &p.stderr(),
        &["pwsecret73", "YWxpY2U6cHdzZWNyZXQ3Mw", "urlpass55"],
    );
}
