//! Termination signals as events: the one place with signal-handling unsafe.
//!
//! `block()` runs first thing in `main`, before any thread exists, so every
//! thread inherits a mask with SIGTERM, SIGINT and SIGHUP blocked; then one
//! thread, `signals`, takes them with sigwait(2) and hands each to a
//! callback. No async-signal-safety puzzles, and the thread lives as long as
//! the process. Children unblock the mask again before exec (child.rs).

use std::thread;

const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in SIGNALS {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks the termination signals in the calling thread (and so in every
/// thread it starts afterwards).
pub fn block() {
    let s = set();
    // SAFETY: changes only this thread's mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
    }
}

/// Starts the `signals` thread: each SIGTERM/SIGINT/SIGHUP is passed to
/// `on_signal`. It never ends; the process exit ends it.
pub fn spawn_waiter<F: FnMut(i32) + Send + 'static>(mut on_signal: F) {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let s = set();
            loop {
                let mut sig = 0;
                // SAFETY: waits on a set we built; the signals are blocked.
                if unsafe { libc::sigwait(&s, &mut sig) } == 0 {
                    on_signal(sig);
                }
            }
        })
        .expect("cannot start the signal thread");
}

/// The conventional exit status for death by `sig` (128 + n).
pub fn exit_status(sig: i32) -> u8 {
    (128 + sig) as u8
}
