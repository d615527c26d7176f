//! Server mode under systemd: readiness, stop and child-status
//! notifications on `$NOTIFY_SOCKET` (a path or an abstract name), the
//! watchdog, socket activation on fd 3 with its errors, and children that
//! never see the variables meant for the proxy.

mod common;
mod server_support;

use common::{demo_bin, proxy_bin, Proc, WAIT};
use serde_json::json;
use server_support::*;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The notification socket a test plays systemd on.
struct Notify {
    sock: UnixDatagram,
    /// What NOTIFY_SOCKET says.
    name: String,
    dir: Option<PathBuf>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Notify {
    /// A socket file in a fresh temporary directory.
    fn path() -> Notify {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-proxy-sd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        Notify {
            sock,
            name: path.to_str().unwrap().to_owned(),
            dir: Some(dir),
        }
    }

    /// An abstract socket (`@name`, a leading NUL byte on the wire).
    fn abstract_name() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("mcp-proxy-test-{}-{n}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        Notify {
            sock,
            name: format!("@{name}"),
            dir: None,
        }
    }

    /// The next datagram, within `WAIT`.
    fn recv(&self) -> String {
        self.sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within {WAIT:?}: {e}"));
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Datagrams until one contains `needle`; returns it and those before.
    fn recv_until(&self, needle: &str) -> (String, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no notification with {needle:?}; got {before:?}"
            );
            let m = self.recv();
            if m.contains(needle) {
                return (m, before);
            }
            before.push(m);
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The URL in `STATUS=listening on URL`.
fn status_url(msg: &str) -> String {
    let line = msg
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=listening on "))
        .unwrap_or_else(|| panic!("no listening status in {msg:?}"));
    line.split(';').next().unwrap().to_owned()
}

#[test]
fn ready_once_listening_and_stopping_on_sigterm() {
    let n = Notify::path();
    let mut p = Proc::spawn_with(
        proxy_bin(),
        &["--port", "0", "--", demo_bin()],
        &[("NOTIFY_SOCKET", &n.name)],
    );
    let ready = n.recv();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Whoever hears READY=1 can connect at once.
    let url = status_url(&ready);
    let c = send("GET", &format!("{url}/status"), &[], None);
    assert_eq!(c.status, 200);
    assert_eq!(url, p.listening_url());
    p.signal(libc::SIGTERM);
    n.recv_until("STOPPING=1");
    assert_eq!(p.wait_exit(WAIT), Some(128 + libc::SIGTERM));
}

#[test]
fn an_abstract_socket_gets_ready_and_the_watchdog() {
    let n = Notify::abstract_name();
    let _p = Proc::spawn_with(
        proxy_bin(),
        &["--port", "0", "--", demo_bin()],
        &[("NOTIFY_SOCKET", &n.name), ("WATCHDOG_USEC", "200000")],
    );
    n.recv_until("READY=1");
    // Fed at half the interval while the router answers.
    n.recv_until("WATCHDOG=1");
    n.recv_until("WATCHDOG=1");
}

#[test]
fn a_watchdog_meant_for_another_process_is_left_alone() {
    for (pid, want) in [
        (None, "feeding the systemd watchdog every 30000 ms"),
        (Some("1"), "WATCHDOG_PID is 1, not this process"),
    ] {
        let n = Notify::path();
        let mut env = vec![
            ("NOTIFY_SOCKET", n.name.as_str()),
            ("WATCHDOG_USEC", "60000000"),
        ];
        if let Some(p) = pid {
            env.push(("WATCHDOG_PID", p));
        }
        let mut p = Proc::spawn_with(proxy_bin(), &["--port", "0", "--", demo_bin()], &env);
        n.recv_until("READY=1");
        // One of the two lines is logged before READY=1, never both.
        p.wait_stderr(want, WAIT);
        p.signal(libc::SIGTERM);
        n.recv_until("STOPPING=1");
        p.wait_exit(WAIT);
        let other = if pid.is_none() {
            "not ours to feed"
        } else {
            "feeding the systemd watchdog"
        };
        assert!(!p.stderr().contains(other), "{}", p.stderr());
    }
}

#[test]
fn the_status_says_when_a_child_fails_and_recovers() {
    let n = Notify::path();
    let proc = Proc::spawn_with(
        proxy_bin(),
        &["--port", "0", "--", demo_bin()],
        &[("NOTIFY_SOCKET", &n.name)],
    );
    let url = status_url(&n.recv_until("READY=1").0);
    let p = Proxy { proc, url };
    p.wait_ready();
    let mut s = Session::open(&p.url, Kind::Legacy, "t", json!({}));
    s.post(&tool(json!(1), "crash", json!({"code": 3})));
    let (m, _) = n.recv_until("exited with status 3");
    assert_eq!(
        m,
        format!(
            "STATUS=listening on {}; server 'default' exited with status 3",
            p.url
        )
    );
    let (m, _) = n.recv_until("running again");
    assert!(m.starts_with("STATUS="), "{m}");
}

/// `sh -c 'export LISTEN_PID=$$; exec "$0" "$@"' PROXY ARGS...` with
/// `fd` at fd 3 and `LISTEN_FDS=1`: the shell's pid is the one the proxy
/// will have, as systemd sets it.
fn activated(fd: RawFd, args: &[&str], env: &[(&str, &str)], pid: Option<&str>) -> Proc {
    let mut cmd = Command::new("/bin/sh");
    let script = match pid {
        None => "export LISTEN_PID=$$; exec \"$0\" \"$@\"".to_owned(),
        Some(p) => format!("export LISTEN_PID={p}; exec \"$0\" \"$@\""),
    };
    cmd.arg("-c").arg(script).arg(proxy_bin()).args(args);
    cmd.env("LISTEN_FDS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: dup2 and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // Already in place: only its close-on-exec flag must go.
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Proc::spawn_command(
        cmd,
        format!("socket-activated mcp-proxy {}", args.join(" ")),
    )
}

#[test]
fn serves_on_the_socket_systemd_passed_and_children_see_none_of_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let n = Notify::path();
    // The child prints its environment and its open fds to stderr (which
    // the proxy logs with its name in front) before it becomes the demo
    // server.
    let child = format!(
        "env >&2; ls -l /proc/$$/fd >&2; echo ENV-END >&2; exec {}",
        demo_bin()
    );
    // The same port again: binding it would fail, so the proxy must serve
    // on the socket it was given.
    let mut p = activated(
        listener.as_raw_fd(),
        &[
            "--port",
            &port,
            "--pass-environment",
            "--",
            "/bin/sh",
            "-c",
            &child,
        ],
        &[("NOTIFY_SOCKET", &n.name), ("MARKER_SD", "yes")],
        None,
    );
    let url = p.listening_url();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    assert_eq!(status_url(&n.recv_until("READY=1").0), url);
    let proxy = Proxy { proc: p, url };
    proxy.wait_ready();
    let mut s = Session::open(&proxy.url, Kind::Legacy, "t", json!({}));
    s.post(&tool(json!(1), "echo", json!({"text": "via fd 3"})));
    assert_eq!(text_of(&s.recv_response(&json!(1))), "via fd 3");
    let mut p = proxy.proc;
    p.wait_stderr("[default] ENV-END", WAIT);
    let err = p.stderr();
    assert!(err.contains("[default] MARKER_SD=yes"), "{err}");
    // Nor the listening socket (close-on-exec).
    assert!(err.contains("[default] total"), "{err}");
    assert!(
        !err.lines()
            .any(|l| l.starts_with("[default]") && l.contains("socket:")),
        "the child inherited a socket:\n{err}"
    );
    for var in ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS"] {
        assert!(
            !err.contains(&format!("[default] {var}=")),
            "the child saw {var}:\n{err}"
        );
    }
    // The test's own copy of the socket stays open; the proxy's is its own.
    drop(listener);
}

#[test]
fn fd_3_that_is_not_a_listening_tcp_socket_is_a_clear_error() {
    let null = std::fs::File::open("/dev/null").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // SAFETY: a new socket we own and close below.
    // Close-on-exec, or the tests running beside this one would pass it on.
    let unlistened =
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(unlistened >= 0);
    let cases = [
        (null.as_raw_fd(), "fd 3 is not a socket"),
        (udp.as_raw_fd(), "fd 3 is not a TCP socket"),
        (unlistened, "fd 3 is a TCP socket that is not listening"),
    ];
    for (fd, want) in cases {
        let mut p = activated(fd, &["--port", "0", "--", demo_bin()], &[], None);
        assert_eq!(p.wait_exit(WAIT), Some(1), "{want}");
        // The process is gone, but the test's reader of its stderr may not
        // have the last line yet: wait for it (bounded) rather than look.
        let line = p.wait_stderr("mcp-proxy: socket activation", WAIT);
        assert!(line.starts_with("mcp-proxy: socket activation"), "{line}");
        assert!(line.contains(want), "{line}");
        assert!(line.contains(".socket unit"), "{line}");
    }
    // SAFETY: closes the socket made above.
    unsafe { libc::close(unlistened) };
    // LISTEN_PID for another process: not ours, so the proxy binds as usual.
    let mut p = activated(
        null.as_raw_fd(),
        &["--port", "0", "--", demo_bin()],
        &[],
        Some("1"),
    );
    let url = p.listening_url();
    let c = send("GET", &format!("{url}/healthz"), &[], None);
    assert_eq!(c.status, 200);
}
