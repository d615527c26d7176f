//! Local stdio MCP servers: spawning, and the pumps that own their pipes.
//!
//! Each child runs in its own process group with `PR_SET_PDEATHSIG`, so a
//! signal to the group reaches everything it started and the child dies with
//! us even when we are SIGKILLed. Linux delivers the death signal when the
//! *thread* that forked the child exits, so children must be spawned from a
//! thread that lives as long as the child is wanted (the router's thread).
//!
//! Threads, one per fd: `<name>-stdout` reads lines until EOF, `<name>-stdin`
//! writes the lines that did not fit into the pipe at once ([`ChildInput`])
//! until its [`ChildInput`] is dropped or the pipe breaks,
//! `<name>-stderr` copies lines to our stderr with the server's name in front
//! until EOF. None of them is ever joined; they end with their fd.

use crate::jsonrpc::{IdHint, IdScan};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Variables every child gets even without `--pass-environment`: the SDK's
/// safe list plus what `npx` and `uvx` need to find their caches.
pub const SAFE_ENV: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR",
];

/// How to start one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// The server's name: `default` or the named server's name.
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment of the child (see [`child_env`]).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

/// The child's environment: the safe list (or everything with
/// `pass_environment`), then `extra` on top.
pub fn child_env(pass_environment: bool, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, v)| {
            pass_environment || (SAFE_ENV.contains(&k.as_str()) && !v.starts_with("()"))
        })
        .collect();
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    let mut env: Vec<_> = env.into_iter().collect();
    env.sort();
    env
}

/// A running child. Dropping it kills the whole process group.
pub struct ChildProcess {
    /// The pid of the child (of its supervisor when supervised), which is
    /// also its process group id.
    pub pid: u32,
    child: std::process::Child,
    reaped: Option<ExitStatus>,
    /// Write end of the supervisor's death pipe; held, never written.
    death_pipe: Option<OwnedFd>,
}

/// The child's three pipes, each to be handed to its own pump.
pub struct Pipes {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// Runs every child spawned from now on under a supervisor (supervisor.rs),
/// so that not even a grandchild outlives the proxy. `exe` is the mcp-proxy
/// binary: `main` passes `/proc/self/exe`, which stays valid even when the
/// file on disk is replaced by an upgrade.
pub fn enable_supervisor(exe: PathBuf) {
    let _ = SUPERVISOR.set(exe);
}

/// Finds `program` the way exec would, on the child's own PATH, so that a
/// missing command is reported at once rather than as an early exit.
fn resolve(program: &str, env: &[(String, String)]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let found = if program.contains('/') {
        executable(Path::new(program))
    } else {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/bin:/bin");
        path.split(':')
            .any(|dir| executable(&Path::new(if dir.is_empty() { "." } else { dir }).join(program)))
    };
    if found {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not found or not executable (is it on PATH?)",
        ))
    }
}

pub fn spawn(spec: &ChildSpec) -> io::Result<(ChildProcess, Pipes)> {
    let supervisor = SUPERVISOR.get();
    let fail = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot start '{}' for server '{}': {e}",
                spec.program, spec.name
            ),
        )
    };
    // The death pipe: the supervisor holds the read end, we hold the write
    // end (close-on-exec, so no other child inherits it) until we die.
    let mut death: Option<(OwnedFd, OwnedFd)> = None;
    let mut cmd = if let Some(exe) = supervisor {
        resolve(&spec.program, &spec.env).map_err(fail)?;
        let mut fds = [0; 2];
        // SAFETY: creates two fds we take ownership of.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut c = Command::new(exe);
        c.arg(crate::supervisor::ENTRY)
            .arg(fds[0].to_string())
            .arg(&spec.program);
        death = Some((r, w));
        c
    } else {
        Command::new(&spec.program)
    };
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let parent = unsafe { libc::getpid() };
    let death_read = death.as_ref().map(|(r, _)| r.as_raw_fd());
    let nofile = CHILD_NOFILE.load(Ordering::Relaxed);
    // A supervisor SIGKILLed with us could not clean up its server's group
    // (grandchildren would survive): it gets its hard-kill request instead,
    // which it answers by SIGKILLing the group. Before it can handle that
    // signal it has started nothing, and the default action ends it.
    let death_signal = if death.is_some() {
        crate::supervisor::HARD_KILL
    } else {
        libc::SIGKILL
    };
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Our termination signals are blocked for the sigwait thread;
            // the mask is inherited, so undo it or SIGTERM never arrives.
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &all, std::ptr::null_mut());
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            // The supervisor keeps the read end across exec.
            if let Some(fd) = death_read {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            // The open-files limit the proxy was started with: a server
            // may use select(2), which breaks past 1024.
            if nofile != u64::MAX {
                set_nofile_soft(nofile);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(fail)?;
    let pipes = Pipes {
        stdin: child.stdin.take().expect("stdin is piped"),
        stdout: child.stdout.take().expect("stdout is piped"),
        stderr: child.stderr.take().expect("stderr is piped"),
    };
    let death_pipe = death.map(|(_read_end_closed_here, w)| w);
    Ok((
        ChildProcess {
            pid: child.id(),
            child,
            reaped: None,
            death_pipe,
        },
        pipes,
    ))
}

impl ChildProcess {
    /// Reaps the child if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }

    /// Sends `sig` to everything the child started. A supervisor forwards
    /// it to the server's group (SIGKILL goes as its hard-kill request, as a
    /// SIGKILLed supervisor could no longer clean up).
    pub fn signal_group(&self, sig: i32) {
        let pid = self.pid as libc::pid_t;
        // SAFETY: plain syscalls. A supervisor's pid is only signalled while
        // it is unreaped, so it cannot have been recycled; an unsupervised
        // group id stays taken while any member lives.
        unsafe {
            if self.death_pipe.is_some() {
                if self.reaped.is_none() {
                    libc::kill(
                        pid,
                        if sig == libc::SIGKILL {
                            crate::supervisor::HARD_KILL
                        } else {
                            sig
                        },
                    );
                }
            } else {
                libc::killpg(pid, sig);
            }
        }
    }

    /// The stdio shutdown sequence (TRANSPORTS ST-07): the caller has closed
    /// stdin; wait up to `grace`, then SIGTERM the group, wait `grace` again,
    /// then SIGKILL it. The group is signalled even after the leader exits so
    /// that grandchildren go too.
    pub fn shutdown(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.wait_for(grace).is_none() {
            self.signal_group(libc::SIGTERM);
            if self.wait_for(grace).is_none() {
                self.signal_group(libc::SIGKILL);
                self.reaped = self.child.wait().ok();
            }
        }
        self.signal_group(libc::SIGKILL);
        self.reaped
    }

    fn wait_for(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
        if self.reaped.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// The soft limit on open files the proxy was started with, when it raised
/// it ([`raise_open_files_limit`]); `u64::MAX` when it did not.
static CHILD_NOFILE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Highest soft limit on open files asked for: Linux's default `nr_open`
/// (a hard limit of "unlimited" cannot be the soft one).
const MAX_OPEN_FILES: u64 = 1 << 20;

/// `struct rlimit64`, for the raw `prlimit64` system call.
#[repr(C)]
struct Rlimit64 {
    cur: u64,
    max: u64,
}

/// The process's open-files limit (soft, hard).
fn nofile() -> Option<(u64, u64)> {
    let mut old = Rlimit64 { cur: 0, max: 0 };
    // SAFETY: prlimit64 on this process, reading into a valid struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE as libc::c_long,
            std::ptr::null::<Rlimit64>(),
            &mut old as *mut Rlimit64,
        )
    };
    (rc == 0).then_some((old.cur, old.max))
}

/// Sets the soft open-files limit, keeping the hard one. A raw system call
/// (async-signal-safe, so fine between fork and exec; musl's setrlimit
/// signals every thread), and rlimits are per process on Linux.
fn set_nofile_soft(soft: u64) -> bool {
    let Some((_, max)) = nofile() else {
        return false;
    };
    let new = Rlimit64 { cur: soft, max };
    // SAFETY: prlimit64 on this process, from a valid struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE as libc::c_long,
            &new as *const Rlimit64,
            std::ptr::null_mut::<Rlimit64>(),
        )
    };
    rc == 0
}

/// Raises the soft limit on open files to the hard one (at most
/// [`MAX_OPEN_FILES`]), as Go programs and nginx's `worker_rlimit_nofile`
/// do: every connection, stream and child pipe is a descriptor, and the
/// usual soft limit of 1024 (systemd's default too) runs out at about 500
/// clients, well below `--max-sessions`. Children get the old limit back.
/// Call it once, before the proxy opens its listener.
pub fn raise_open_files_limit() {
    let Some((cur, max)) = nofile() else {
        return;
    };
    let want = max.min(MAX_OPEN_FILES);
    if cur >= want {
        return;
    }
    if set_nofile_soft(want) {
        CHILD_NOFILE.store(cur, Ordering::Relaxed);
        log::debug!("open files: soft limit raised from {cur} to {want}");
    } else {
        log::debug!("open files: cannot raise the soft limit of {cur} to {want}; kept");
    }
}

impl Oversized {
    fn new() -> Oversized {
        Oversized {
            len: 0,
            scan: IdScan::new(),
            ends_cr: false,
        }
    }

    /// Counts `bytes` and scans them for the message's id.
    fn add(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.len += bytes.len();
            self.scan.feed(bytes);
            self.ends_cr = last == b'\r';
        }
    }

    /// The message's top-level id, wherever it was in the line.
    pub fn hint(&self) -> Option<IdHint> {
        self.scan.hint()
    }

    /// The message has a top-level `method`.
    pub fn names_method(&self) -> bool {
        self.scan.names_method()
    }
}

/// What the stdout pump reports.
#[derive(Debug)]
pub enum Line {
    /// One line, without its `\n` (and without a trailing `\r`).
    Text(String),
    /// A line longer than the limit was skipped; its length so far.
    TooLong(usize),
    /// A line that is not UTF-8 was skipped.
    NotUtf8,
    /// EOF or a read error: the child closed its stdout.
    Eof,
}

/// A line that was too long, reported once it has ended: its length (a
/// trailing `\r` not counted) and what a scan of all of it found.
#[derive(Debug, Clone)]
pub struct Oversized {
    pub len: usize,
    scan: IdScan,
    ends_cr: bool,
}

/// Starts the stdout pump: every line goes to `sink` until EOF, after which
/// `sink` gets [`Line::Eof`] once. `sink` returning false stops the pump.
/// A line over the limit also goes to `oversized` once it has ended.
pub fn spawn_stdout_reader<F, G>(
    name: &str,
    stdout: ChildStdout,
    max_line: usize,
    sink: F,
    oversized: G,
) -> io::Result<()>
where
    F: FnMut(Line) -> bool + Send + 'static,
    G: FnMut(Oversized) -> bool + Send + 'static,
{
    thread::Builder::new()
        .name(format!("{name}-stdout"))
        .spawn(move || read_lines_detailed(stdout, max_line, sink, oversized))?;
    Ok(())
}

/// Splits a byte stream into bounded lines. Public for our own stdin, which
/// follows the same framing.
pub fn read_lines<R: Read, F: FnMut(Line) -> bool>(r: R, max_line: usize, sink: F) {
    read_lines_detailed(r, max_line, sink, |_| true)
}

/// [`read_lines`], and each line over the limit also goes to `oversized`
/// (its length and its id, found by scanning all of it without keeping it)
/// when it ends, after the [`Line::TooLong`] sent when it crossed the limit.
pub fn read_lines_detailed<R, F, G>(r: R, max_line: usize, mut sink: F, mut oversized: G)
where
    R: Read,
    F: FnMut(Line) -> bool,
    G: FnMut(Oversized) -> bool,
{
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut big = Oversized::new();
    loop {
        let (consumed, done) = match r.fill_buf() {
            Ok([]) | Err(_) => {
                // A last line without its newline still counts.
                if !skipping && !line.iter().all(u8::is_ascii_whitespace) {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    match String::from_utf8(std::mem::take(&mut line)) {
                        Ok(s) => sink(Line::Text(s)),
                        Err(_) => sink(Line::NotUtf8),
                    };
                }
                sink(Line::Eof);
                return;
            }
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if skipping {
                        big.add(&buf[..i]);
                    } else {
                        line.extend_from_slice(&buf[..i]);
                    }
                    (i + 1, true)
                }
                None => {
                    if skipping {
                        big.add(buf);
                    } else {
                        line.extend_from_slice(buf);
                    }
                    (buf.len(), false)
                }
            },
        };
        r.consume(consumed);
        if !skipping && line.len() > max_line {
            if !sink(Line::TooLong(line.len())) {
                return;
            }
            big = Oversized::new();
            big.add(&line);
            line = Vec::new();
            skipping = true;
        }
        if done {
            if skipping {
                skipping = false;
                if big.ends_cr {
                    big.len -= 1;
                }
                let report = std::mem::replace(&mut big, Oversized::new());
                if !oversized(report) {
                    return;
                }
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = std::mem::take(&mut line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let keep_going = match String::from_utf8(text) {
                Ok(s) => sink(Line::Text(s)),
                Err(_) => sink(Line::NotUtf8),
            };
            if !keep_going {
                return;
            }
        }
    }
}

/// Starts the stdin pump: writes each queued line plus `\n`, flushing when
/// the queue is momentarily empty. Ends (closing the pipe) when every sender
/// is gone or the child stops reading.
/// The child's stdin as its one writer (the router) sees it. A line goes
/// straight into the pipe from the caller's thread when nothing is queued
/// before it and the pipe has room; whatever does not fit goes to the
/// `NAME-stdin` pump, which waits for the child to read. So the caller
/// never blocks on a child that stops reading, lines keep their order, and
/// the common case costs no hand-off to another thread (bench findings:
/// a wake-up and a context switch per message).
///
/// Dropping it lets the pump write what is queued and then closes the pipe.
pub struct ChildInput {
    pipe: Arc<ChildStdin>,
    /// Lines handed to the pump and not yet completely written by it.
    queued: Arc<AtomicUsize>,
    pump: Sender<Vec<u8>>,
}

impl ChildInput {
    /// Makes our end of the pipe non-blocking (the child's end is its own
    /// file description and stays as it was) and starts the pump.
    pub fn new(name: &str, stdin: ChildStdin) -> io::Result<ChildInput> {
        let fd = stdin.as_raw_fd();
        // SAFETY: fcntl on an fd we own, with flags read from it.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        let pipe = Arc::new(stdin);
        let queued = Arc::new(AtomicUsize::new(0));
        let (pump, rx) = channel::<Vec<u8>>();
        let (p, q) = (pipe.clone(), queued.clone());
        thread::Builder::new()
            .name(format!("{name}-stdin"))
            .spawn(move || {
                while let Ok(buf) = rx.recv() {
                    // A write error means the child stopped reading (it
                    // exited); the stdout pump reports that.
                    if write_all_waiting(&p, &buf).is_err() {
                        return;
                    }
                    q.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(ChildInput { pipe, queued, pump })
    }

    /// Sends one line (a newline is added). False when the child no longer
    /// reads its stdin.
    pub fn send(&self, line: String) -> bool {
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        // The pump finished every line before this one: writing here
        // cannot overtake it.
        if self.queued.load(Ordering::Acquire) == 0 {
            match (&*self.pipe).write(&buf) {
                Ok(n) if n == buf.len() => return true,
                Ok(n) => {
                    buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.queued.fetch_add(1, Ordering::Release);
        self.pump.send(buf).is_ok()
    }
}

/// Writes all of `buf` to a non-blocking pipe, waiting in `poll` whenever
/// it is full.
fn write_all_waiting(pipe: &ChildStdin, mut buf: &[u8]) -> io::Result<()> {
    let mut w = pipe;
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: pipe.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                // POLLERR/POLLHUP wake it too; the next write reports them.
                unsafe { libc::poll(&mut pfd, 1, -1) };
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The writing half shared by the child's stdin and our stdout.
pub fn write_lines<W: Write>(w: W, rx: Receiver<String>) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    while let Ok(mut line) = rx.recv() {
        loop {
            line.push('\n');
            w.write_all(line.as_bytes())?;
            match rx.try_recv() {
                Ok(next) => line = next,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return w.flush(),
            }
        }
        w.flush()?;
    }
    w.flush()
}

/// Starts the stderr drain: each line goes to our stderr as `[name] line`.
/// It runs on its own thread so a child flooding stderr never blocks on a
/// full pipe while we wait for its stdout.
pub fn spawn_stderr_drain(name: &str, stderr: ChildStderr) -> io::Result<()> {
    let prefix = format!("[{name}] ");
    thread::Builder::new()
        .name(format!("{name}-stderr"))
        .spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.by_ref().take(64 * 1024).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let text = text.trim_end_matches(['\n', '\r']);
                        // Ignore write errors: a full disk must not stop the drain,
                        // or the child would block on its stderr pipe.
                        let _ = writeln!(io::stderr().lock(), "{prefix}{text}");
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_input_keeps_order_when_the_pipe_fills() {
        // `cat` echoes stdin; lines far larger than a pipe (64 KiB) make the
        // direct write partial, so the rest and the lines after it go
        // through the pump until it has caught up: every line must come
        // back whole and in order.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat runs");
        let out = child.stdout.take().expect("piped");
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            read_lines(out, 4 << 20, |l| match l {
                Line::Text(t) => {
                    got.push(t);
                    true
                }
                _ => false,
            });
            got
        });
        let input = ChildInput::new("cat", child.stdin.take().expect("piped")).expect("pump");
        let mut sent = Vec::new();
        for i in 0..20 {
            let line = if i % 4 == 0 {
                format!("{i}:{}", "x".repeat(300_000 + i))
            } else {
                format!("{i}")
            };
            assert!(input.send(line.clone()), "cat reads its stdin");
            sent.push(line);
        }
        drop(input);
        let got = reader.join().expect("the reader does not panic");
        let _ = child.wait();
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert!(g == s, "line {} came back as {} bytes", &s[..2], g.len());
        }
    }

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, max, |l| {
            out.push(match l {
                Line::Text(s) => s,
                Line::TooLong(n) => format!("<too long {n}>"),
                Line::NotUtf8 => "<not utf8>".into(),
                Line::Eof => "<eof>".into(),
            });
            true
        });
        out
    }

    #[test]
    fn oversized_lines_report_their_length_and_id() {
        // The id sits between two runs longer than the limit: only a scan
        // of the whole line finds it.
        let mut long = b"{\"result\":\"".to_vec();
        long.extend([b'x'; 5000]);
        long.extend_from_slice(b"\",\"id\":7,\"more\":\"");
        long.extend([b'y'; 5000]);
        long.extend_from_slice(b"\"}\r\nok\n");
        let total = long.len() - "\r\nok\n".len();
        let mut got = Vec::new();
        let mut texts = Vec::new();
        read_lines_detailed(
            &long[..],
            100,
            |l| {
                if let Line::Text(t) = l {
                    texts.push(t);
                }
                true
            },
            |o| {
                got.push(o);
                true
            },
        );
        assert_eq!(texts, vec!["ok"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len, total, "without the \\r");
        assert_eq!(got[0].hint().expect("the id is found").id, "7");
    }

    #[test]
    fn splits_bounded_lines() {
        assert_eq!(lines(b"a\r\nb\n\n  \nc", 100), vec!["a", "b", "c", "<eof>"]);
        assert_eq!(
            lines(b"0123456789abc\nok\n", 10),
            vec!["<too long 13>", "ok", "<eof>"]
        );
        assert_eq!(
            lines(b"\xff\xfe\nok\n", 10),
            vec!["<not utf8>", "ok", "<eof>"]
        );
    }

    #[test]
    fn env_keeps_only_safe_vars_unless_asked() {
        let env = child_env(false, &[("EXTRA".into(), "1".into())]);
        assert!(env
            .iter()
            .all(|(k, _)| SAFE_ENV.contains(&k.as_str()) || k == "EXTRA"));
        assert!(env.iter().any(|(k, v)| k == "EXTRA" && v == "1"));
    }

    #[test]
    fn spawn_and_shutdown_kill_the_group() {
        let spec = ChildSpec {
            name: "t".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "trap '' TERM; sleep 30 & wait".into()],
            env: child_env(false, &[]),
            cwd: None,
        };
        let (mut child, pipes) = spawn(&spec).unwrap();
        drop(pipes);
        let status = child.shutdown(Duration::from_millis(100));
        assert!(status.is_some(), "the child was reaped");
    }

    #[test]
    fn spawn_error_names_the_program() {
        let spec = ChildSpec {
            name: "x".into(),
            program: "/no/such/program".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        };
        let err = spawn(&spec).err().expect("spawn fails");
        assert!(err.to_string().contains("/no/such/program"), "{err}");
    }
}
