//! The per-child supervisor (src/supervisor.rs): nothing a server starts
//! outlives it, and the server's exit status reaches the proxy unchanged.

mod common;
use mcp_proxy::child::{self, ChildSpec};
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// Starts `sh -c SCRIPT` supervised; returns the child and the first line
/// it prints (the grandchild's pid).
fn start(script: &str) -> (child::ChildProcess, i32, child::Pipes) {
    child::enable_supervisor(common::proxy_bin().into());
    let spec = ChildSpec {
        name: "t".into(),
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: child::child_env(false, &[]),
        cwd: None,
    };
    let (c, mut pipes) = child::spawn(&spec).expect("spawn");
    let mut line = String::new();
    BufReader::new(&mut pipes.stdout)
        .read_line(&mut line)
        .expect("read grandchild pid");
    let pid: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a pid: {line:?}"));
    assert!(common::alive(pid));
    (c, pid, pipes)
}

#[test]
fn hard_kill_takes_grandchildren_that_ignore_sigterm() {
    let (mut c, grandchild, _pipes) = start("trap '' TERM; sleep 300 & echo $!; wait");
    c.signal_group(libc::SIGKILL);
    common::wait_gone(grandchild, "the grandchild");
    assert!(c.shutdown(Duration::from_millis(500)).is_some());
}

#[test]
fn a_server_exit_takes_its_leftovers_and_keeps_its_status() {
    let (mut c, grandchild, _pipes) = start("sleep 300 & echo $!; read x; exit 7");
    drop(_pipes); // EOF on the server's stdin: `read` returns, the server exits 7
    common::wait_gone(grandchild, "the grandchild");
    let status = c.shutdown(Duration::from_secs(5)).expect("reaped");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn a_signal_death_is_reported_as_such() {
    use std::os::unix::process::ExitStatusExt;
    let (mut c, grandchild, _pipes) = start("sleep 300 & echo $!; wait");
    c.signal_group(libc::SIGTERM);
    common::wait_gone(grandchild, "the grandchild");
    let status = c.shutdown(Duration::from_secs(5)).expect("reaped");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn a_missing_program_fails_at_spawn() {
    child::enable_supervisor(common::proxy_bin().into());
    let spec = ChildSpec {
        name: "m".into(),
        program: "no-such-mcp-server-xyz".into(),
        args: vec![],
        env: child::child_env(false, &[]),
        cwd: None,
    };
    let err = child::spawn(&spec).err().expect("must fail");
    assert!(err.to_string().contains("no-such-mcp-server-xyz"), "{err}");
}
