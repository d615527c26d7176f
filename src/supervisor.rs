//! The per-child supervisor: why no server process outlives the proxy.
//!
//! `PR_SET_PDEATHSIG` kills a child when the proxy dies, even by SIGKILL,
//! but not the child's own children: a server started as `sh -c 'a | b'`,
//! or one that forks helpers, would leave orphans behind. So in server mode
//! each server runs under a supervisor, our own binary re-executed through
//! `/proc/self/exe` (so it works even after the binary on disk is replaced):
//!
//! ```text
//! mcp-proxy ──pipe (death fd)──> supervisor ──fork/exec──> server (group H) ──> grandchildren (group H)
//! ```
//!
//! The supervisor is single-threaded and waits in poll(2) on three fds:
//! - the read end of a pipe whose write end only the proxy holds: EOF means
//!   the proxy is gone, however it died, so the supervisor SIGKILLs group H;
//! - a pidfd of the server: when it exits, the supervisor SIGKILLs what is
//!   left of group H and exits with the server's status (re-raising its
//!   signal), which the proxy then reaps as the child's status;
//! - a signalfd: SIGTERM/SIGINT/SIGHUP are forwarded to group H, and
//!   SIGUSR2 means "SIGKILL group H now" (the proxy's hard kill).
//!
//! The supervisor's own death signal (`PR_SET_PDEATHSIG`, set by child.rs)
//! is that same SIGUSR2, not SIGKILL: a supervisor killed together with the
//! proxy could not clean up group H, and the server's grandchildren would
//! survive.
//!
//! The supervisor uses no allocation-heavy machinery and never exits before
//! its server has been reaped, so the proxy's view of the child stays exact.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// The `argv[1]` that turns the binary into a supervisor.
pub const ENTRY: &str = "__mcp-proxy-supervise";

/// The signal the proxy sends the supervisor for a hard kill of the group.
pub const HARD_KILL: i32 = libc::SIGUSR2;

/// Runs the supervisor when argv asks for it; `None` otherwise.
/// argv: `mcp-proxy __mcp-proxy-supervise DEATH_FD PROGRAM [ARGS...]`.
pub fn entry() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(ENTRY)) {
        return None;
    }
    let fd: i32 = args
        .next()
        .and_then(|s| s.into_string().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let program = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    Some(run(fd, program, rest))
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: initialises a set we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for &sig in sigs {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

fn run(death_fd: i32, program: OsString, args: Vec<OsString>) -> ExitCode {
    const FORWARDED: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, HARD_KILL];
    let set = sigset(&FORWARDED);
    // SAFETY: plain syscalls on values we own.
    let sigfd = unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    let mut cmd = Command::new(&program);
    cmd.args(&args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_UNBLOCK, &all, std::ptr::null_mut());
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "mcp-proxy: cannot start '{}': {e}",
                program.to_string_lossy()
            );
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain syscall; -1 on kernels without pidfd_open (< 5.3).
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let kill_group = |sig: i32| unsafe {
        libc::killpg(pid, sig);
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: death_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without a pidfd, look at the child every 100 ms instead.
        let timeout = if pidfd >= 0 { -1 } else { 100 };
        // SAFETY: polls fds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            // The proxy is gone: nothing may outlive it.
            kill_group(libc::SIGKILL);
            // SAFETY: terminates this process.
            unsafe { libc::_exit(1) };
        }
        if fds[1].revents != 0 {
            // SAFETY: reads one record from our signalfd.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let r = unsafe {
                libc::read(
                    sigfd,
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if r == size as isize {
                let sig = info.ssi_signo as i32;
                kill_group(if sig == HARD_KILL { libc::SIGKILL } else { sig });
            }
        }
        let mut status = 0;
        // SAFETY: reaps our own child without blocking.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            kill_group(libc::SIGKILL); // leftovers: the server's own children
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                // SAFETY: die the way the server died, so the proxy sees it.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    let s = sigset(&[sig]);
                    libc::sigprocmask(libc::SIG_UNBLOCK, &s, std::ptr::null_mut());
                    libc::raise(sig);
                }
            }
            return ExitCode::from(libc::WEXITSTATUS(status) as u8);
        }
    }
}
