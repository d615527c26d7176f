//! Patched for mcp-proxy (see PATCHED.md): one thread per connection.
//!
//! tiny_http 0.12.0 reused idle worker threads, but `spawn` counted a worker
//! that had already been notified for an earlier task as still idle, so in a
//! burst of connections several tasks were queued for one worker. Each task
//! serves a keep-alive connection for as long as the client keeps it open, so
//! the surplus connections were never read until some other connection
//! closed: requests stalled indefinitely. A thread per connection has no
//! such accounting to get wrong; creating one costs microseconds, once per
//! connection.

use std::thread;

/// Stack of a connection thread that parses request heads and hands
/// requests over to `recv()`, running no request handler itself.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

pub struct TaskPool {
    stack_bytes: usize,
}

impl TaskPool {
    pub fn new() -> TaskPool {
        TaskPool::with_stack(CONNECTION_STACK_BYTES)
    }

    /// Threads with `stack_bytes` of stack, for connections whose requests
    /// are handled on the connection's own thread.
    pub fn with_stack(stack_bytes: usize) -> TaskPool {
        TaskPool { stack_bytes }
    }

    /// Runs `code` on a new thread.
    pub fn spawn(&self, mut code: Box<dyn FnMut() + Send>) {
        let spawned = thread::Builder::new()
            .name("http-connection".into())
            .stack_size(self.stack_bytes)
            .spawn(move || code());
        if let Err(e) = spawned {
            log::error!("cannot start a thread for a new connection: {}", e);
        }
    }
}
