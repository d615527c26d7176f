//! A guard for every process the bench starts: its own process group, a
//! stderr drain, readiness from its own stderr lines, RSS from /proc, and a
//! kill by pid (SIGTERM, a grace period, then SIGKILL to its group) on drop.
//!
//! Threads: one stderr drain per process; it ends when the process (and
//! anything that inherited its stderr) closes it.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How much of a process's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 << 10;
/// Stderr lines queued for readiness checks; later ones are dropped.
const STDERR_QUEUE_LINES: usize = 4096;

pub struct Proc {
    pub name: String,
    pub child: Child,
    lines: Receiver<String>,
    tail: Arc<Mutex<VecDeque<u8>>>,
}

impl Proc {
    /// Starts `argv` in its own process group; stdin/stdout piped when
    /// `stdio` (a stdio MCP peer), else null. stderr is always drained.
    pub fn spawn(name: &str, argv: &[String], stdio: bool) -> io::Result<Proc> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(if stdio { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdio { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", argv[0])))?;
        let (tx, lines) = sync_channel(STDERR_QUEUE_LINES);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let t = tail.clone();
        let err = child.stderr.take().expect("stderr is piped above");
        thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut t = t.lock().expect("no panics while holding the tail");
                        t.extend(line.as_bytes());
                        t.push_back(b'\n');
                        let over = t.len().saturating_sub(STDERR_TAIL_BYTES);
                        t.drain(..over);
                    }
                    let _ = tx.try_send(line);
                }
            })?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            lines,
            tail,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stderr line that `pick` accepts.
    pub fn wait_stderr<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(v) = pick(&l) {
                        return Ok(v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} not ready after {timeout:?}; stderr: {}",
                            self.name,
                            self.stderr_tail()
                        ),
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    return Err(io::Error::other(format!(
                        "{} exited ({st:?}) before it was ready; stderr: {}",
                        self.name,
                        self.stderr_tail()
                    )));
                }
            }
        }
    }

    pub fn stderr_tail(&self) -> String {
        let t = self.tail.lock().expect("no panics while holding the tail");
        let (a, b) = t.as_slices();
        let s = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        s.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    pub fn kill(&mut self) {
        let pid = self.pid();
        if self.child.try_wait().ok().flatten().is_some() {
            // The leader is gone; its group may still hold stragglers.
            // SAFETY: kill(2) with our own child's process group id.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            return;
        }
        // SAFETY: kill(2) on a pid we started and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; the group is the one we created at spawn.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// RSS in KiB of `pid` and all its descendants, leaving out processes
/// running `skip_exe` (the echo child, which is the same behind every
/// system) and their descendants.
pub fn tree_rss_kib(pid: i32, skip_exe: &std::path::Path) -> Option<u64> {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The command name may hold spaces; the fields after it do not.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(pp) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<i32>().ok())
        {
            parent.push((p, pp));
        }
    }
    let mut total = rss_kib(pid)?;
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(c, _) in parent.iter().filter(|(_, pp)| *pp == q) {
            let exe = std::fs::read_link(format!("/proc/{c}/exe")).ok();
            if exe.as_deref() == Some(skip_exe) {
                continue;
            }
            total += rss_kib(c).unwrap_or(0);
            frontier.push(c);
        }
    }
    Some(total)
}
