//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

/// Patched for mcp-proxy (PATCHED.md, change 3): limits on a request head,
/// which tiny_http 0.12.0 reads with no bound on size or time.
static MAX_HEAD_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);
static HEAD_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets, for every server in the process, the most bytes a request head
/// (request line and header lines) may take, answered 431 beyond, and how
/// long a head may take to arrive once it has started, answered 408
/// beyond. The timeout is also set as the read timeout of each accepted
/// socket, so a connection idle that long between requests is closed
/// (silently) and a request body that stalls that long fails to read.
/// Call it before creating the server.
pub fn set_head_limits(max_bytes: usize, timeout: Option<Duration>) {
    MAX_HEAD_BYTES.store(max_bytes, Relaxed);
    HEAD_TIMEOUT_MS.store(
        timeout.map_or(0, |t| (t.as_millis() as u64).max(1)),
        Relaxed,
    );
}

/// Patched for mcp-proxy (PATCHED.md, change 9): told the status code of
/// every response tiny_http makes itself (a malformed or slow head, too
/// many connections), so the application can count them with its own.
static REFUSAL_HOOK: std::sync::OnceLock<fn(u16)> = std::sync::OnceLock::new();

/// Sets, once for the process, the function told of each response tiny_http
/// sends on its own. Call it before creating the server.
pub fn set_refusal_hook(hook: fn(u16)) {
    let _ = REFUSAL_HOOK.set(hook);
}

pub(crate) fn refused(status: u16) {
    if let Some(hook) = REFUSAL_HOOK.get() {
        hook(status);
    }
}

/// Patched for mcp-proxy (PATCHED.md, change 4): connections served at once.
static MAX_CONNECTIONS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);
/// Patched for mcp-proxy: the first and the longest wait before accepting
/// again after accept failed, or before trying again to duplicate a new
/// connection's descriptor.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Patched for mcp-proxy: the read and write halves of a plain connection
/// just accepted. Out of descriptors (EMFILE) for the second one, it waits
/// for one (connections closing free them), as the accept loop does, rather
/// than drop a connection already accepted; `None` once the server closes.
fn connection_halves(
    sock: Connection,
    closing: &AtomicBool,
) -> Option<(util::RefinedTcpStream, util::RefinedTcpStream)> {
    let mut wait = Duration::ZERO;
    loop {
        match sock.try_clone() {
            Ok(read) => {
                if !wait.is_zero() {
                    log::info!("accepting connections again");
                }
                return Some(util::RefinedTcpStream::from_halves(read, sock));
            }
            Err(e) => {
                if closing.load(Relaxed) {
                    return None;
                }
                if wait.is_zero() {
                    log::error!("Error accepting new client: {}; retrying", e);
                    wait = ACCEPT_BACKOFF_MIN;
                } else {
                    log::debug!("Error accepting new client: {}", e);
                    wait = (wait * 2).min(ACCEPT_BACKOFF_MAX);
                }
                thread::sleep(wait);
            }
        }
    }
}

static LIVE_CONNECTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets, for every server in the process, how many connections are read at
/// once (each has its own thread); one more is answered 503 and closed at
/// once instead of being queued.
pub fn set_max_connections(n: usize) {
    MAX_CONNECTIONS.store(n, Relaxed);
}

/// Counts a live connection thread until dropped.
struct LiveConnection;

impl Drop for LiveConnection {
    fn drop(&mut self) {
        LIVE_CONNECTIONS.fetch_sub(1, Relaxed);
    }
}

pub(crate) fn head_limits() -> (usize, Option<Duration>) {
    let ms = HEAD_TIMEOUT_MS.load(Relaxed);
    (
        MAX_HEAD_BYTES.load(Relaxed),
        (ms > 0).then(|| Duration::from_millis(ms)),
    )
}

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener.into(), ssl_config, None)
    }

    /// Patched for mcp-proxy (PATCHED.md, change 5): like `from_listener`,
    /// but each request is handed to `handler` on the thread that read it
    /// (one per connection, with a stack of `stack_bytes`) instead of being
    /// queued for `recv()`. The next request on that connection is read
    /// once `handler` returns. A request then costs no hand-off between
    /// threads, and a long response (an SSE stream) holds one thread, not
    /// two. `recv()` on such a server only ever returns accept errors.
    pub fn from_listener_with_handler<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        stack_bytes: usize,
        handler: Arc<dyn Fn(Request) + Send + Sync + 'static>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener.into(), ssl_config, Some((stack_bytes, handler)))
    }

    fn start(
        listener: Listener,
        ssl_config: Option<SslConfig>,
        inline: Option<(usize, Arc<dyn Fn(Request) + Send + Sync + 'static>)>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = match inline {
                Some((stack, _)) => util::TaskPool::with_stack(stack),
                None => util::TaskPool::new(),
            };
            let handler = inline.map(|(_, h)| h);

            log::debug!("Running accept thread");
            // Patched for mcp-proxy: how long to wait before accepting again
            // after accept failed (see below); zero while it succeeds.
            let mut backoff = Duration::ZERO;
            while !inside_close_trigger.load(Relaxed) {
                let new_client = match server.accept() {
                    Ok((sock, _)) => {
                        // Patched for mcp-proxy: refuse a connection beyond
                        // the limit at once, with a 503 it can read.
                        if LIVE_CONNECTIONS.load(Relaxed) >= MAX_CONNECTIONS.load(Relaxed) {
                            refused(503);
                            if let crate::connection::Connection::Tcp(mut s) = sock {
                                use std::io::Write;
                                let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                                let _ = s.write_all(
                                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n\r\nToo many connections",
                                );
                            }
                            continue;
                        }
                        LIVE_CONNECTIONS.fetch_add(1, Relaxed);
                        // Patched for mcp-proxy: responses and SSE events
                        // leave in several writes; Nagle's algorithm would hold
                        // each small one back for the peer's delayed ACK.
                        if let crate::connection::Connection::Tcp(ref s) = sock {
                            let _ = s.set_nodelay(true);
                            if let (_, Some(t)) = head_limits() {
                                let _ = s.set_read_timeout(Some(t));
                            }
                        }
                        use util::RefinedTcpStream;
                        let (read_closable, write_closable) = match ssl {
                            None => match connection_halves(sock, &inside_close_trigger) {
                                Some(halves) => halves,
                                None => {
                                    LIVE_CONNECTIONS.fetch_sub(1, Relaxed);
                                    continue;
                                }
                            },
                            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                            Some(ref ssl) => {
                                // trying to apply SSL over the connection
                                // if an error occurs, we just close the socket and resume listening
                                let sock = match ssl.accept(sock) {
                                    Ok(s) => s,
                                    Err(_) => continue,
                                };

                                RefinedTcpStream::new(sock)
                            }
                            #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                            Some(ref _ssl) => unreachable!(),
                        };

                        Ok(ClientConnection::new(write_closable, read_closable))
                    }
                    Err(e) => Err(e),
                };

                match new_client {
                    Ok(client) => {
                        if !backoff.is_zero() {
                            log::info!("accepting connections again");
                            backoff = Duration::ZERO;
                        }
                        let messages = inside_messages.clone();
                        let handler = handler.clone();
                        let mut client = Some(client);
                        // Dropped with the closure, run or not.
                        let live = LiveConnection;
                        tasks_pool.spawn(Box::new(move || {
                            let _live = &live;
                            if let Some(client) = client.take() {
                                if let Some(handler) = &handler {
                                    for rq in client {
                                        handler(rq);
                                    }
                                // Synchronization is needed for HTTPS requests to avoid a deadlock
                                } else if client.secure() {
                                    let (sender, receiver) = mpsc::channel();
                                    for rq in client {
                                        messages.push(rq.with_notify_sender(sender.clone()).into());
                                        receiver.recv().unwrap();
                                    }
                                } else {
                                    for rq in client {
                                        messages.push(rq.into());
                                    }
                                }
                            }
                        }));
                    }

                    // Patched for mcp-proxy: a failed accept is not the end
                    // of the listener (upstream ended the accept thread here,
                    // and the server never took a connection again). Out of
                    // descriptors (EMFILE, ENFILE) or memory, the connections
                    // already open must close before there is room: wait,
                    // 5 ms at first and twice as long each time up to 1 s (as
                    // Go's net/http does), then try again. Any other error
                    // (a connection reset before it was accepted) is one
                    // connection's and gets the same short wait.
                    Err(e) => {
                        if inside_close_trigger.load(Relaxed) {
                            break;
                        }
                        if backoff.is_zero() {
                            log::error!("Error accepting new client: {}; retrying", e);
                            backoff = ACCEPT_BACKOFF_MIN;
                        } else {
                            log::debug!("Error accepting new client: {}", e);
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                        thread::sleep(backoff);
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
