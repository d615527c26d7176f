//! The command line as scripts see it: exit statuses, stdout vs stderr.

mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(proxy_bin())
        .args(args)
        .env_remove("SSE_URL")
        .output()
        .expect("run mcp-proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_goes_to_stdout_with_status_0() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Usage:") && out.contains("--named-server"),
        "{out}"
    );
    assert!(err.is_empty(), "nothing on stderr: {err}");
}

#[test]
fn version_names_the_program() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim(),
        format!("mcp-proxy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    for args in [
        &[][..],
        &["--port", "nope", "srv"],
        &["--transport", "carrier-pigeon", "http://127.0.0.1:1/"],
        &["--frobnicate"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout must stay clean: {out}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(err.starts_with("mcp-proxy: "), "{err}");
    }
}
