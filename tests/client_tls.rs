//! Client mode over real TLS (rustls): the remote's certificate is checked
//! against the built-in roots, against a CA bundle given with
//! `--verify-ssl FILE`, or not at all with `--no-verify-ssl`. The remote is
//! the demo server behind a TLS terminator, with a test CA and a leaf
//! certificate for 127.0.0.1 made here with Debian's openssl.

mod client_support;
mod common;
use client_support::FakeRemote;
use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a leaf for 127.0.0.1 signed by it, in a fresh directory.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-proxy-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mcp-proxy test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    dir
}

/// A TLS terminator in front of a plain HTTP server: Python's `ssl`
/// module, on every machine of ours. It prints its port, then relays each
/// connection both ways.
const TERMINATOR: &str = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
target = ("127.0.0.1", int(sys.argv[3]))
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def serve(c):
    try: t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError): c.close(); return
    u = socket.create_connection(target)
    threading.Thread(target=pump, args=(t, u), daemon=True).start()
    pump(u, t)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

struct Terminator {
    child: Child,
    port: u16,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate_tls(dir: &Path, target_port: u16) -> Terminator {
    let mut child = Command::new("python3")
        .args([
            "-c",
            TERMINATOR,
            "leaf.pem",
            "leaf.key",
            &target_port.to_string(),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the terminator's port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a port: {line:?}"));
    Terminator { child, port }
}

/// The proxy's answer to a local initialize.
fn initialize_through(args: &[&str]) -> serde_json::Value {
    let mut p = Proc::spawn(proxy_bin(), args);
    p.send_json(&initialize(json!(1), "2025-06-18"));
    p.recv_response(&json!(1))
}

#[test]
fn certificates_are_verified_against_the_roots_a_ca_bundle_or_not_at_all() {
    let dir = certificates();
    let remote = FakeRemote::start(&["--transport", "streamable"]);
    let tls = terminate_tls(&dir, remote.port);
    let url = format!("https://127.0.0.1:{}/mcp", tls.port);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();

    let r = initialize_through(&["--transport", "streamablehttp", &url]);
    let e = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        e.contains("certificate"),
        "a CA not among the roots must fail the handshake: {r}"
    );

    let r = initialize_through(&["--verify-ssl", ca, "--transport", "streamablehttp", &url]);
    assert_eq!(
        r["result"]["serverInfo"]["name"], "mcp-demo-server",
        "the CA bundle makes it work: {r}"
    );

    let r = initialize_through(&["--no-verify-ssl", &url]);
    assert_eq!(
        r["result"]["serverInfo"]["name"], "mcp-demo-server",
        "--no-verify-ssl skips the check: {r}"
    );

    // RL-10: 2026-07-28 requests run each on an agent of their own (so that
    // a cancel closes only theirs), under the same certificate checks.
    let modern = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let through = |args: &[&str]| {
        let mut p = Proc::spawn(proxy_bin(), args);
        p.send_json(&modern);
        p.recv_response(&json!(1))
    };
    let r = through(&[&url]);
    let e = r["error"]["message"].as_str().unwrap_or_default();
    assert!(e.contains("certificate"), "modern, no CA: {r}");
    let r = through(&["--verify-ssl", ca, &url]);
    assert!(r["result"]["tools"].is_array(), "modern, with the CA: {r}");
    let _ = std::fs::remove_dir_all(&dir);
}
