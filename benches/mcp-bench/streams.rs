//! Holds many HTTP+SSE streams open from one thread with poll(2), so that
//! the memory workload measures the server's cost per stream and not ours.
//! Streams open in waves of `wave` connections; each counts as open once
//! its first bytes (the `endpoint` event) arrive. A wave that does not see
//! all its first bytes in time ends the opening (the rest are counted as
//! not served). Then a quiet window shows which streams are still being
//! fed (keepalives).
//!
//! A wave of 1 is what a patient client does; a wave of many is a burst of
//! clients connecting at once, which some servers cannot take.

use crate::http::connect;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub struct Held {
    /// Streams that got their first bytes.
    pub opened: usize,
    /// Streams connected that never got their first bytes.
    pub unserved: usize,
    /// Streams still open that received bytes during the window.
    pub fed: usize,
    /// Streams the server closed.
    pub closed: usize,
    pub open_secs: f64,
}

struct S {
    sock: TcpStream,
    got: bool,
    fed: bool,
    closed: bool,
}

/// Opens `n` streams on `path`, `wave` at a time, each wave given
/// `wave_timeout` to see its first bytes; waits `window`, calls `measure`
/// while they are all still open, then closes them.
pub fn hold(
    addr: SocketAddr,
    path: &str,
    n: usize,
    (wave, wave_timeout): (usize, Duration),
    window: Duration,
    measure: impl FnOnce(),
) -> io::Result<Held> {
    let t0 = Instant::now();
    let mut all: Vec<S> = Vec::with_capacity(n);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    let mut buf = vec![0u8; 64 << 10];
    'open: while all.len() < n {
        let start = all.len();
        for _ in 0..wave.max(1).min(n - start) {
            let mut s = connect(addr)?;
            s.write_all(req.as_bytes())?;
            s.set_nonblocking(true)?;
            all.push(S {
                sock: s,
                got: false,
                fed: false,
                closed: false,
            });
        }
        let deadline = Instant::now() + wave_timeout;
        while all[start..].iter().any(|s| !s.got && !s.closed) {
            if Instant::now() > deadline {
                break 'open;
            }
            pump(&mut all, &mut buf, Duration::from_millis(50))?;
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    // Everything before the window (including the endpoint event) is not
    // evidence of keepalives.
    pump(&mut all, &mut buf, Duration::from_millis(1))?;
    for s in all.iter_mut() {
        s.fed = false;
    }
    let end = Instant::now() + window;
    while Instant::now() < end {
        pump(
            &mut all,
            &mut buf,
            end.saturating_duration_since(Instant::now()),
        )?;
    }
    measure();
    Ok(Held {
        opened: all.iter().filter(|s| s.got).count(),
        unserved: all.iter().filter(|s| !s.got).count(),
        fed: all.iter().filter(|s| s.fed && !s.closed).count(),
        closed: all.iter().filter(|s| s.closed).count(),
        open_secs,
    })
}

/// One poll(2) over every open stream, reading whatever is ready.
fn pump(all: &mut [S], buf: &mut [u8], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = all
        .iter()
        .map(|s| libc::pollfd {
            fd: if s.closed { -1 } else { s.sock.as_raw_fd() },
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the
    // length given; the sockets outlive the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(())
        } else {
            Err(e)
        };
    }
    for (s, p) in all.iter_mut().zip(&fds) {
        if p.revents == 0 || s.closed {
            continue;
        }
        loop {
            match s.sock.read(buf) {
                Ok(0) => {
                    s.closed = true;
                    break;
                }
                Ok(_) => {
                    s.got = true;
                    s.fed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    s.closed = true;
                    break;
                }
            }
        }
    }
    Ok(())
}
