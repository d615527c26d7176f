//! The bounded queue behind each client stream (server mode): the router
//! puts messages in with `try_send`, never blocking, and the stream's HTTP
//! thread takes them out.
//!
//! `std::sync::mpsc::sync_channel(n)` allocates all `n` slots up front:
//! with the default `--stream-queue` of 256 that is 16 KiB for every POST,
//! which musl's allocator (the static build) hands back to the kernel and
//! maps again, call after call (bench findings: 10 % of the throughput
//! with 32 sessions). This queue grows as messages arrive and keeps the
//! same bound. The API and error types are std's, so the callers read the
//! same. No threads.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    sender: bool,
    receiver: bool,
    /// The receiver is (about to be) asleep on the condvar: only then does
    /// a send pay for a wake-up.
    waiting: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    cap: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned one still
        // holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half: one per queue (the router's).
pub struct BoundedSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half: one per queue (the stream's HTTP thread).
pub struct BoundedReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `cap` messages (at least one).
pub fn bounded<T>(cap: usize) -> (BoundedSender<T>, BoundedReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            sender: true,
            receiver: true,
            waiting: false,
        }),
        ready: Condvar::new(),
        cap: cap.max(1),
    });
    (
        BoundedSender {
            shared: shared.clone(),
        },
        BoundedReceiver { shared },
    )
}

impl<T> BoundedSender<T> {
    /// Queues `item`, or gives it back: `Full` at the bound, `Disconnected`
    /// when the receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut st = self.shared.lock();
        if !st.receiver {
            return Err(TrySendError::Disconnected(item));
        }
        if st.items.len() >= self.shared.cap {
            return Err(TrySendError::Full(item));
        }
        st.items.push_back(item);
        let wake = std::mem::take(&mut st.waiting);
        drop(st);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for BoundedSender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.sender = false;
        let wake = std::mem::take(&mut st.waiting);
        drop(st);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

impl<T> BoundedReceiver<T> {
    /// The next message; an error once the queue is empty and the sender
    /// gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.wait(None).map_err(|_| RecvError)
    }

    /// [`BoundedReceiver::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.wait(Some(Instant::now() + timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                return Ok(item);
            }
            if !st.sender {
                return Err(RecvTimeoutError::Disconnected);
            }
            st.waiting = true;
            st = match deadline {
                None => self
                    .shared
                    .ready
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        st.waiting = false;
                        return Err(RecvTimeoutError::Timeout);
                    }
                    match self.shared.ready.wait_timeout(st, left) {
                        Ok((st, _)) => st,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = self.shared.lock();
        match st.items.pop_front() {
            Some(item) => Ok(item),
            None if st.sender => Err(TryRecvError::Empty),
            None => Err(TryRecvError::Disconnected),
        }
    }

    /// Every message until the sender is gone.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }
}

impl<T> Drop for BoundedReceiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiver = false;
        st.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn bounded_and_in_order() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv(), Ok(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn the_receiver_drains_then_sees_the_sender_gone() {
        let (tx, rx) = bounded(8);
        tx.try_send("a").unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok("a"));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_sender_sees_the_receiver_gone() {
        let (tx, rx) = bounded(8);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
    }

    #[test]
    fn recv_timeout_times_out_when_nothing_comes() {
        let (_tx, rx) = bounded::<u8>(8);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn a_sleeping_receiver_is_woken_by_a_send_and_by_the_sender_leaving() {
        let (tx, rx) = bounded(4);
        let reader = thread::spawn(move || rx.iter().collect::<Vec<u32>>());
        for i in 0..1000 {
            // Bounded: retry while full, as the reader drains.
            let mut item = i;
            loop {
                match tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        item = back;
                        thread::yield_now();
                    }
                    Err(TrySendError::Disconnected(_)) => panic!("the reader left early"),
                }
            }
        }
        drop(tx);
        let got = reader.join().expect("the reader does not panic");
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
