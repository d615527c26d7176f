//! systemd integration for server mode: readiness and status notification
//! (sd_notify), socket activation and the watchdog, without libsystemd.
//!
//! [`take_env`] runs in `main` before any thread exists: it reads and
//! unsets `NOTIFY_SOCKET`, `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`,
//! `WATCHDOG_USEC` and `WATCHDOG_PID`, as sd_notify(3) and
//! sd_listen_fds(3) ask, so that no child (they get a snapshot of our
//! environment) notifies systemd in our name or takes our socket for its
//! own. Unsetting must happen while we are single-threaded: setenv and
//! unsetenv race with every other reader of the environment.
//!
//! Notifications are datagrams on one unbound Unix socket, sent by
//! whichever thread has news ([`notify`]); a path that starts with `@` is
//! an abstract socket name. Without `NOTIFY_SOCKET` they cost nothing.
//!
//! Threads: `watchdog` ([`spawn_watchdog`]), when `WATCHDOG_USEC` is set
//! for us; it lives as long as the process.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// The first inherited fd of socket activation (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: RawFd = 3;

/// What systemd handed us, read once by [`take_env`].
#[derive(Debug, Default)]
pub struct Activation {
    /// The inherited listening socket (socket activation), or why fd 3
    /// cannot be one; `None` when we were not socket-activated.
    pub listener: Option<Result<TcpListener, String>>,
    /// `WATCHDOG_USEC`, when the watchdog is meant for us.
    pub watchdog: Option<Duration>,
}

struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();
/// `listening on URL`, the first part of every `STATUS=` we send.
static LISTENING: OnceLock<String> = OnceLock::new();

/// Reads and unsets systemd's variables. Call it before any thread starts.
pub fn take_env() -> Activation {
    let take = |k: &str| {
        let v = std::env::var(k).ok();
        if v.is_some() {
            std::env::remove_var(k);
        }
        v
    };
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() }.to_string();
    if let Some(path) = take("NOTIFY_SOCKET") {
        match notifier(&path) {
            Ok(n) => {
                let _ = NOTIFIER.set(n);
            }
            Err(e) => log::warn!("NOTIFY_SOCKET={path}: {e}; systemd will not hear from us"),
        }
    }
    let (pid, fds) = (take("LISTEN_PID"), take("LISTEN_FDS"));
    let _ = take("LISTEN_FDNAMES");
    let mut listener = None;
    if pid.as_deref() == Some(me.as_str()) {
        let n: usize = fds.as_deref().and_then(|f| f.parse().ok()).unwrap_or(0);
        if n > 1 {
            log::warn!("socket activation passed {n} sockets; serving on the first (fd 3) only");
        }
        if n >= 1 {
            listener = Some(inherited_listener(LISTEN_FDS_START));
        }
    }
    let (usec, wpid) = (take("WATCHDOG_USEC"), take("WATCHDOG_PID"));
    let mine = wpid.is_none() || wpid.as_deref() == Some(me.as_str());
    if usec.is_some() && !mine {
        log::info!(
            "WATCHDOG_PID is {}, not this process: the systemd watchdog is not ours to feed",
            wpid.as_deref().unwrap_or("")
        );
    }
    let watchdog = usec
        .filter(|_| mine)
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|&u| u > 0)
        .map(Duration::from_micros);
    Activation { listener, watchdog }
}

fn notifier(path: &str) -> Result<Notifier, String> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)
    } else {
        return Err("not an absolute path or an abstract name (@name)".into());
    };
    let addr = addr.map_err(|e| e.to_string())?;
    let sock = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    Ok(Notifier { sock, addr })
}

/// Takes `fd` as the listening socket if it is one: a listening TCP
/// socket (IPv4 or IPv6), made close-on-exec so no child inherits it.
fn inherited_listener(fd: RawFd) -> Result<TcpListener, String> {
    let what = "socket activation (LISTEN_FDS): fd 3";
    let int_opt = |opt: libc::c_int| -> std::io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a pointer to an int and its size, both living across the call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(v)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let hint = "give the service a ListenStream= TCP socket in its .socket unit";
    let listening = int_opt(libc::SO_ACCEPTCONN)
        .map_err(|e| format!("{what} is not a socket ({e}); {hint}"))?;
    let domain = int_opt(libc::SO_DOMAIN).unwrap_or(-1);
    let kind = int_opt(libc::SO_TYPE).unwrap_or(-1);
    if domain != libc::AF_INET && domain != libc::AF_INET6 || kind != libc::SOCK_STREAM {
        return Err(format!("{what} is not a TCP socket; {hint}"));
    }
    if listening == 0 {
        return Err(format!(
            "{what} is a TCP socket that is not listening; {hint}"
        ));
    }
    // SAFETY: fd is an open socket (getsockopt worked); F_SETFD only sets
    // its close-on-exec flag.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: systemd handed this fd to us alone (LISTEN_PID is our pid),
    // and nothing else in the process owns it.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Whether systemd listens for our notifications.
pub fn enabled() -> bool {
    NOTIFIER.get().is_some()
}

/// Sends one notification (`READY=1`, `STATUS=...`, newline-separated
/// assignments). Errors are logged at debug level: systemd going away
/// must not stop the proxy.
pub fn notify(state: &str) {
    let Some(n) = NOTIFIER.get() else { return };
    if let Err(e) = n.sock.send_to_addr(state.as_bytes(), &n.addr) {
        log::debug!("cannot notify systemd: {e}");
    }
}

/// The proxy listens at `url`: `READY=1` and a status naming it.
pub fn ready(url: &str) {
    let line = format!("listening on {url}");
    let _ = LISTENING.set(line.clone());
    notify(&format!("READY=1\nSTATUS={line}"));
}

/// A status line for `systemctl status`, after the listening URL.
pub fn status(what: &str) {
    if !enabled() {
        return;
    }
    let line = match LISTENING.get() {
        Some(l) => format!("{l}; {what}"),
        None => what.to_owned(),
    };
    notify(&format!("STATUS={line}"));
}

/// Starts the `watchdog` thread: every half `interval` it asks `alive`
/// (which must answer within that half) and sends `WATCHDOG=1` when it
/// says yes; when it does not, systemd's timer runs out and it acts as
/// the unit's `WatchdogSignal=`/`Restart=` say.
pub fn spawn_watchdog<F: Fn(Duration) -> bool + Send + 'static>(interval: Duration, alive: F) {
    let every = (interval / 2).max(Duration::from_millis(10));
    log::info!(
        "feeding the systemd watchdog every {} ms",
        every.as_millis()
    );
    let started = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            let at = std::time::Instant::now();
            if alive(every) {
                notify("WATCHDOG=1");
            } else {
                log::warn!("a server's router did not answer within {every:?}; not feeding the systemd watchdog");
            }
            std::thread::sleep(every.saturating_sub(at.elapsed()));
        });
    if let Err(e) = started {
        log::warn!("cannot start the watchdog thread: {e}; systemd's watchdog will fire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_names() {
        assert!(notifier("/run/systemd/notify").is_ok());
        assert!(notifier("@abstract/name").is_ok());
        assert!(notifier("relative").is_err());
    }
}
