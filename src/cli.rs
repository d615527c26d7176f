//! Command-line parsing into a plain [`Args`] value.
//!
//! Flags and environment follow the Python mcp-proxy 0.13.0 (UPSTREAM.md
//! §2.2, §2.3) so existing scripts keep working, minus its bugs: `--sse-port`
//! and `--sse-host` really work, `--log-level` takes any case, and neither
//! `--allow-origin` nor `--verify-ssl` swallows the positional that follows.
//! Options and positionals may be intermixed as with argparse; everything
//! after `--` belongs to the server command.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const HELP: &str = "\
mcp-proxy: a transport bridge for the Model Context Protocol (MCP)

Usage:
  mcp-proxy [OPTIONS] URL                        client mode: local stdio <-> remote HTTP server
  mcp-proxy [OPTIONS] [--] COMMAND [ARGS...]     server mode: HTTP clients <-> local stdio server
  mcp-proxy [OPTIONS] --named-server NAME CMD    server mode with named servers

A URL (http:// or https://) selects client mode; anything else is the command
of the default stdio server. Put -- before server arguments that start with -.

Client mode options:
  -H, --headers KEY VALUE     add an HTTP header to every request (repeatable)
      --transport MODE        auto, sse or streamablehttp [default: auto: try
                              Streamable HTTP, fall back to HTTP+SSE]
      --verify-ssl [VALUE]    verify TLS certificates: true/false, or the path
                              of a CA bundle (PEM) to trust [default: true]
      --no-verify-ssl         do not verify TLS certificates (insecure)
      --username USER         HTTP Basic authentication user (with --password)
      --password PASSWORD     HTTP Basic authentication password
      --digest                use HTTP Digest (MD5) instead of Basic with
                              --username/--password
      --client-id ID          OAuth2 client credentials grant: the client id,
      --client-secret SECRET  its secret and the token endpoint (all three
      --token-url URL         together); the token is sent as a Bearer token
                              and renewed before it expires

Server mode options:
      --host HOST             address to listen on [default: 127.0.0.1]
      --port PORT             port to listen on, 0 for a random one [default: 0]
      --sse-host HOST         deprecated alias of --host
      --sse-port PORT         deprecated alias of --port
  -e, --env KEY VALUE         environment variable for the default server (repeatable)
      --cwd DIR               working directory of the default server
      --pass-environment      pass the proxy's whole environment to every server
      --no-pass-environment   pass only PATH, HOME and a few safe variables [default]
      --named-server NAME CMD add a server at /servers/NAME/; CMD is split into
                              words like a shell would, without running one (repeatable)
      --named-server-config FILE
                              read named servers from an mcpServers JSON file
                              (then --named-server is ignored)
      --stateless             Streamable HTTP without sessions
      --no-stateless          keep sessions [default]
      --modern-sibling        a server that, once initialized, refuses MCP
                              2026-07-28 requests (Python SDK 2.x) gets a second,
                              never-initialized process of the same command for
                              them, started on the first such request [default]
      --no-modern-sibling     never run a server twice: 2026-07-28 clients of
                              such a server fall back to initialize or are
                              refused (for a server that holds an exclusive
                              lock or a fixed port)
      --allow-origin ORIGIN   allow this browser origin and enable CORS; '*' allows
                              any (repeatable)
      --allow-host HOST       accept requests whose Host header names HOST, as for
                              a reverse proxy that passes its own Host on
                              (repeatable, or comma-separated; port ignored).
                              On loopback, Host must be localhost, 127.0.0.1 or
                              [::1] unless allowed here; elsewhere Host is not
                              checked unless this is given. '*' turns the check
                              off (no DNS rebinding protection)
      --expose-header HEADER  CORS Access-Control-Expose-Headers (repeatable)
                              [default: mcp-session-id]
      --keepalive SECONDS     SSE keepalive comment interval, 0 disables [default: 15]
      --session-timeout SECONDS
                              end a Streamable HTTP session idle this long (no
                              open stream, nothing in flight), 0 never [default: 1800]
      --max-body-size BYTES   largest accepted HTTP request body; larger gets 413
                              [default: 16777216]
      --auth-token TOKEN      require 'Authorization: Bearer TOKEN' on every MCP
                              endpoint (401 otherwise); also MCP_PROXY_AUTH_TOKEN
      --auth-token-file FILE  read the token from the first line of FILE
      --status-no-auth        serve /status and /metrics without the token (they
                              need it when a token is set, unless this is given)

Server lifecycle (server mode):
      --init-timeout SECONDS  a server must answer initialize within this long,
                              else it is restarted; 0 waits forever; a config
                              entry's \"timeout\" overrides it [default: 60]
      --max-restarts N        restarts allowed within --restart-window; one more
                              marks the server failed [default: 5]
      --restart-window SECONDS
                              the window --max-restarts counts in [default: 60]
      --restart-backoff SECONDS
                              delay before a restart, doubled for each restart
                              within the window, at most 30 s [default: 1]
      --failed-retry SECONDS  how often a failed server is tried again, until it
                              runs; 0 never retries it [default: 30]
      --shutdown-grace SECONDS
                              on SIGTERM/SIGINT a server gets this long after
                              its stdin closes, then SIGTERM, this long again,
                              then SIGKILL [default: 2]

Health (server mode): GET /healthz answers 200 while the proxy runs; GET
/readyz answers 200 when every enabled server is running, else 503 with the
reason; GET /status gives each server's state, pid, restarts and last exit.
Requests to a server that is starting or restarting wait for it; requests to
a failed server get an error at once.

Server limits:
      --max-sessions N        open sessions per server (HTTP+SSE and Streamable
                              HTTP); more get 503 [default: 1000]
      --max-connections N     HTTP connections being read, and requests and
                              streams being handled, at once (each for all servers
                              together); more get 503 at once [default: 2048]
      --max-header-size BYTES size of a request's head (request line and header
                              lines); larger gets 431 [default: 65536]
      --header-timeout SECONDS
                              a request head must arrive within this long of its
                              first byte, else 408 (slowloris); also the longest
                              pause while reading a body, after which a body must
                              keep up 500 bytes/s (else 408), and how long an idle
                              keep-alive connection stays open; 0 never [default: 30]
      --stream-queue N        messages queued for one client stream before the
                              client counts as too slow and its session is
                              dropped [default: 256]
      --replay-events N       events kept per stream for Last-Event-ID [default: 64]
      --replay-bytes BYTES    bytes kept per stream for Last-Event-ID [default: 4194304]
      --write-timeout SECONDS give up on a client that does not take what we
                              write for this long, 0 never [default: 60]

Limits:
      --max-message-size BYTES
                              largest message accepted from a server or remote;
                              a larger reply fails its request [default: 33554432]
      --response-timeout SECONDS
                              client mode: how long the remote may take to start
                              answering an HTTP request, 0 never [default: 300]

General options:
      --log-level LEVEL       debug, info, warning, error or critical, any case
                              [default: info]
      --debug                 same as --log-level debug
      --no-debug              undo --debug
  -h, --help                  print this help and exit
      --version               print the version and exit

Environment:
  SSE_URL            URL to use when none is given (client mode)
  API_ACCESS_TOKEN   client mode: send Authorization: Bearer <token>
  MCP_PROXY_AUTH_TOKEN
                     server mode: the token clients must send (as --auth-token)
  RUST_LOG           detailed log filter (overrides --log-level)

Exit status: 0 on success, 1 on a runtime failure (cannot listen, remote
unreachable), 2 on a usage or configuration error, 128+N when stopped by
signal N (143 for SIGTERM, 130 for SIGINT, 129 for SIGHUP).
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Auto,
    Sse,
    StreamableHttp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub client_id: String,
    pub client_secret: String,
    pub token_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifySsl {
    Yes,
    No,
    CaBundle(PathBuf),
}

/// Everything the command line and environment say.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// `command_or_url`: a URL (client mode) or the default server's command.
    pub target: Option<String>,
    /// Arguments of the default server's command.
    pub child_args: Vec<String>,

    pub headers: Vec<(String, String)>,
    pub access_token: Option<String>,
    pub transport: Transport,
    pub verify_ssl: VerifySsl,
    /// HTTP Basic credentials (`--username`/`--password`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// `--digest`: answer Digest challenges with the credentials instead of
    /// sending Basic.
    pub digest: bool,
    /// OAuth2 client credentials (`--client-id`, `--client-secret`,
    /// `--token-url`): all three or none.
    pub oauth: Option<OAuth>,

    pub log_level: log::LevelFilter,

    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub pass_environment: bool,
    pub named_servers: Vec<(String, String)>,
    pub named_server_config: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub stateless: bool,
    /// `--modern-sibling`: see [`crate::router::Config::modern_sibling`].
    pub modern_sibling: bool,
    pub allow_origins: Vec<String>,
    /// `--allow-host`: host names (lowercase, no port, IPv6 in brackets)
    /// accepted in the Host header besides the loopback names; `*` = any.
    pub allow_hosts: Vec<String>,
    pub expose_headers: Vec<String>,
    pub keepalive: Option<Duration>,
    /// Idle Streamable HTTP sessions end after this long (`None`: never).
    pub session_timeout: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_message_bytes: usize,
    /// How long a server may take to answer `initialize` (`None`: forever).
    pub init_timeout: Option<Duration>,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub restart_backoff: Duration,
    /// How often a failed server is tried again (`None`: never).
    pub failed_retry: Option<Duration>,
    pub shutdown_grace: Duration,
    /// Server mode: the bearer token every MCP endpoint requires.
    pub auth_token: Option<Secret>,
    /// `/status` answers without the token.
    pub status_no_auth: bool,
    /// Sessions per server (HTTP+SSE and Streamable HTTP).
    pub max_sessions: usize,
    /// HTTP connections read at once, and exchanges (requests and open
    /// streams) handled at once.
    pub max_connections: usize,
    /// Bytes of a request head (request line and header lines).
    pub max_header_bytes: usize,
    /// A request head must arrive within this long (`None`: no limit).
    pub header_timeout: Option<Duration>,
    /// Messages queued per client stream before its session is dropped.
    pub stream_queue: usize,
    pub replay_events: usize,
    pub replay_bytes: usize,
    /// A write to an HTTP client that blocks this long fails (`None`: never).
    pub write_timeout: Option<Duration>,
    /// Client mode: time the remote may take to send response headers.
    pub response_timeout: Option<Duration>,
}

/// A secret that must never reach a log line: `Debug` shows only that
/// it is set. Compare it with [`Secret::matches`], which takes constant
/// time in the secret's content.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (the time depends only on the lengths).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = u8::from(want.len() != candidate.len());
        for (i, &w) in want.iter().enumerate() {
            let c = candidate.get(i).copied().unwrap_or(0);
            diff |= w ^ c;
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Args {
    /// Client mode when the target is an http(s) URL.
    pub fn client_url(&self) -> Option<&str> {
        self.target.as_deref().filter(|t| is_url(t))
    }
}

pub fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

impl Default for Args {
    fn default() -> Args {
        Args {
            target: None,
            child_args: Vec::new(),
            headers: Vec::new(),
            access_token: None,
            transport: Transport::Auto,
            verify_ssl: VerifySsl::Yes,
            username: None,
            password: None,
            digest: false,
            oauth: None,
            log_level: log::LevelFilter::Info,
            env: Vec::new(),
            cwd: None,
            pass_environment: false,
            named_servers: Vec::new(),
            named_server_config: None,
            host: "127.0.0.1".into(),
            port: 0,
            stateless: false,
            modern_sibling: true,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            expose_headers: vec!["mcp-session-id".into()],
            keepalive: Some(Duration::from_secs(15)),
            session_timeout: Some(Duration::from_secs(1800)),
            max_body_bytes: 16 << 20,
            max_message_bytes: 32 << 20,
            auth_token: None,
            status_no_auth: false,
            max_sessions: 1000,
            max_connections: 2048,
            max_header_bytes: 64 << 10,
            header_timeout: Some(Duration::from_secs(30)),
            stream_queue: 256,
            replay_events: 64,
            replay_bytes: 4 << 20,
            write_timeout: Some(Duration::from_secs(60)),
            response_timeout: Some(Duration::from_secs(300)),
            init_timeout: Some(Duration::from_secs(60)),
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            restart_backoff: Duration::from_secs(1),
            failed_retry: Some(Duration::from_secs(30)),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Args>),
    Help,
    Version,
}

/// A usage error: one line naming the flag and the fix; exit status 2.
#[derive(Debug, PartialEq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.0))
    }
}

/// Errors quote what the user typed; a control character in it (a newline
/// in an argument, say) is shown escaped so the error stays one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        match e {
            lexopt::Error::UnexpectedOption(o) => UsageError(format!(
                "unknown option '{o}' (see --help; to pass it to the server command, put the command after '--')"
            )),
            lexopt::Error::MissingValue { option: Some(o) } => {
                UsageError(format!("option '{o}' needs a value (see --help)"))
            }
            other => UsageError(other.to_string()),
        }
    }
}

fn string(v: OsString, what: &str) -> Result<String, UsageError> {
    v.into_string()
        .map_err(|v| UsageError(format!("{what}: {v:?} is not valid UTF-8")))
}

/// The host names of one `--allow-host` value: comma-separated, each a
/// name or address with an optional port, or `*`.
fn allowed_hosts(v: &str) -> Result<Vec<String>, UsageError> {
    v.split(',')
        .map(|h| {
            let h = h.trim();
            if h.is_empty() {
                return Err(UsageError(format!(
                    "--allow-host: '{v}' has an empty host name"
                )));
            }
            if h.contains(|c: char| c.is_whitespace() || "/@?#".contains(c)) {
                return Err(UsageError(format!(
                    "--allow-host: '{h}' is not a host name; give the name alone, as in mcp.example.com"
                )));
            }
            Ok(host_name(h))
        })
        .collect()
}

/// The name in a Host header value or `--allow-host` entry, as compared:
/// lowercase, without the port, an IPv6 address in brackets.
pub fn host_name(h: &str) -> String {
    let h = h.trim();
    let name = if h.starts_with('[') {
        h.find(']').map(|i| &h[..=i]).unwrap_or(h).to_owned()
    } else if h.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        format!("[{h}]")
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h).to_owned()
    };
    name.to_ascii_lowercase()
}

fn number<T: std::str::FromStr>(v: OsString, flag: &str) -> Result<T, UsageError> {
    let s = string(v, flag)?;
    s.parse()
        .map_err(|_| UsageError(format!("{flag}: '{s}' is not a valid number")))
}

/// A duration in seconds, fractions allowed (`0.5`).
fn seconds(v: OsString, flag: &str) -> Result<Duration, UsageError> {
    let s = string(v, flag)?;
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..=1e9).contains(&n) => Ok(Duration::from_secs_f64(n)),
        _ => Err(UsageError(format!(
            "{flag}: '{s}' is not a number of seconds (0 or more)"
        ))),
    }
}

fn parse_level(s: &str) -> Result<log::LevelFilter, UsageError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warning" | "warn" => log::LevelFilter::Warn,
        "error" | "critical" => log::LevelFilter::Error,
        "off" => log::LevelFilter::Off,
        _ => {
            return Err(UsageError(format!(
                "--log-level: '{s}' is not a level; use debug, info, warning, error or critical"
            )))
        }
    })
}

fn bool_word(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn verify_value(s: &str) -> Result<VerifySsl, UsageError> {
    match bool_word(s) {
        Some(true) => Ok(VerifySsl::Yes),
        Some(false) => Ok(VerifySsl::No),
        None => {
            let p = PathBuf::from(s);
            if !p.is_file() {
                return Err(UsageError(format!(
                    "--verify-ssl: '{s}' is neither true/false nor a CA bundle file that exists"
                )));
            }
            Ok(VerifySsl::CaBundle(p))
        }
    }
}

/// Parses the arguments (without the program name). `getenv` supplies
/// `SSE_URL` and `API_ACCESS_TOKEN`, so tests need not touch the process env.
pub fn parse<I>(argv: I, getenv: &dyn Fn(&str) -> Option<String>) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    parse_inner(argv, getenv).map_err(|e| UsageError(one_line(&e.0)))
}

fn parse_inner<I>(argv: I, getenv: &dyn Fn(&str) -> Option<String>) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(argv);
    let mut positionals: Vec<String> = Vec::new();
    let (mut port, mut sse_port, mut host, mut sse_host) = (None, None, None, None);
    let mut debug = false;
    let mut level = None;
    let mut expose: Vec<String> = Vec::new();
    let (mut auth, mut auth_file): (Option<String>, Option<PathBuf>) = (None, None);
    let (mut client_id, mut client_secret, mut token_url) = (None, None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("version") => return Ok(Command::Version),
            Short('H') | Long("headers") | Long("header") => {
                let k = string(p.value()?, "--headers")?;
                let v = string(
                    p.value()
                        .map_err(|_| UsageError("--headers needs KEY VALUE".into()))?,
                    "--headers",
                )?;
                if k.is_empty() || k.bytes().any(|b| !(b.is_ascii_graphic() && b != b':')) {
                    return Err(UsageError(format!(
                        "--headers: '{k}' is not a valid header name"
                    )));
                }
                if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(UsageError(format!(
                        "--headers: the value of '{k}' contains a line break or NUL, which would split the request"
                    )));
                }
                a.headers.push((k, v));
            }
            Long("transport") => {
                let v = string(p.value()?, "--transport")?;
                a.transport = match v.to_ascii_lowercase().as_str() {
                    "auto" => Transport::Auto,
                    "sse" => Transport::Sse,
                    "streamablehttp" | "streamable-http" | "streamable_http" | "http" => {
                        Transport::StreamableHttp
                    }
                    _ => {
                        return Err(UsageError(format!(
                            "--transport: '{v}' is not a transport; use auto, sse or streamablehttp"
                        )))
                    }
                };
            }
            Long("verify-ssl") => {
                if let Some(v) = p.optional_value() {
                    a.verify_ssl = verify_value(&string(v, "--verify-ssl")?)?;
                } else {
                    // `--verify-ssl VALUE`: take the next word only if it is a
                    // boolean or a CA path, never a URL or an option.
                    let mut raw = p.raw_args()?;
                    let next = raw.peek().and_then(|s| s.to_str()).map(str::to_owned);
                    a.verify_ssl = VerifySsl::Yes;
                    if let Some(n) = next {
                        if bool_word(&n).is_some()
                            || (!n.starts_with('-') && !is_url(&n) && PathBuf::from(&n).is_file())
                        {
                            raw.next();
                            a.verify_ssl = verify_value(&n)?;
                        }
                    }
                }
            }
            Long("no-verify-ssl") => a.verify_ssl = VerifySsl::No,
            Long("username") => a.username = Some(string(p.value()?, "--username")?),
            Long("password") => a.password = Some(string(p.value()?, "--password")?),
            Long("digest") => a.digest = true,
            Long("client-id") => client_id = Some(string(p.value()?, "--client-id")?),
            Long("client-secret") => client_secret = Some(string(p.value()?, "--client-secret")?),
            Long("token-url") => token_url = Some(string(p.value()?, "--token-url")?),
            Long("log-level") => level = Some(parse_level(&string(p.value()?, "--log-level")?)?),
            Long("debug") => debug = true,
            Long("no-debug") => debug = false,
            Short('e') | Long("env") => {
                let k = string(p.value()?, "--env")?;
                let v = string(
                    p.value()
                        .map_err(|_| UsageError("--env needs KEY VALUE".into()))?,
                    "--env",
                )?;
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(UsageError(format!(
                        "--env: '{k}' is not a valid variable name"
                    )));
                }
                a.env.push((k, v));
            }
            Long("cwd") => a.cwd = Some(PathBuf::from(p.value()?)),
            Long("pass-environment") => a.pass_environment = true,
            Long("no-pass-environment") => a.pass_environment = false,
            Long("named-server") => {
                let name = string(p.value()?, "--named-server")?;
                let cmd = string(
                    p.value().map_err(|_| {
                        UsageError("--named-server needs NAME 'COMMAND STRING'".into())
                    })?,
                    "--named-server",
                )?;
                a.named_servers.push((name, cmd));
            }
            Long("named-server-config") => a.named_server_config = Some(PathBuf::from(p.value()?)),
            Long("port") => port = Some(number::<u16>(p.value()?, "--port")?),
            Long("sse-port") => sse_port = Some(number::<u16>(p.value()?, "--sse-port")?),
            Long("host") => host = Some(string(p.value()?, "--host")?),
            Long("sse-host") => sse_host = Some(string(p.value()?, "--sse-host")?),
            Long("stateless") => a.stateless = true,
            Long("no-stateless") => a.stateless = false,
            Long("modern-sibling") => a.modern_sibling = true,
            Long("no-modern-sibling") => a.modern_sibling = false,
            Long("allow-origin") => a.allow_origins.push(string(p.value()?, "--allow-origin")?),
            Long("allow-host") => {
                let v = string(p.value()?, "--allow-host")?;
                a.allow_hosts.extend(allowed_hosts(&v)?);
            }
            Long("expose-header") => expose.push(string(p.value()?, "--expose-header")?),
            Long("session-timeout") => {
                let secs: u64 = number(p.value()?, "--session-timeout")?;
                a.session_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Long("keepalive") => {
                let secs: u64 = number(p.value()?, "--keepalive")?;
                a.keepalive = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Long("max-body-size") => a.max_body_bytes = number(p.value()?, "--max-body-size")?,
            Long("max-message-size") => {
                a.max_message_bytes = number(p.value()?, "--max-message-size")?
            }
            Long("auth-token") => auth = Some(string(p.value()?, "--auth-token")?),
            Long("auth-token-file") => auth_file = Some(PathBuf::from(p.value()?)),
            Long("status-no-auth") => a.status_no_auth = true,
            Long("max-sessions") => a.max_sessions = number(p.value()?, "--max-sessions")?,
            Long("max-connections") => a.max_connections = number(p.value()?, "--max-connections")?,
            Long("max-header-size") => {
                a.max_header_bytes = number(p.value()?, "--max-header-size")?
            }
            Long("header-timeout") => {
                let secs: u64 = number(p.value()?, "--header-timeout")?;
                a.header_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Long("stream-queue") => a.stream_queue = number(p.value()?, "--stream-queue")?,
            Long("replay-events") => a.replay_events = number(p.value()?, "--replay-events")?,
            Long("replay-bytes") => a.replay_bytes = number(p.value()?, "--replay-bytes")?,
            Long("write-timeout") => {
                let secs: u64 = number(p.value()?, "--write-timeout")?;
                a.write_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Long("response-timeout") => {
                let secs: u64 = number(p.value()?, "--response-timeout")?;
                a.response_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Long("init-timeout") => {
                let t = seconds(p.value()?, "--init-timeout")?;
                a.init_timeout = (!t.is_zero()).then_some(t);
            }
            Long("max-restarts") => a.max_restarts = number(p.value()?, "--max-restarts")?,
            Long("restart-window") => a.restart_window = seconds(p.value()?, "--restart-window")?,
            Long("restart-backoff") => {
                a.restart_backoff = seconds(p.value()?, "--restart-backoff")?
            }
            Long("failed-retry") => {
                let t = seconds(p.value()?, "--failed-retry")?;
                a.failed_retry = (!t.is_zero()).then_some(t);
            }
            Long("shutdown-grace") => a.shutdown_grace = seconds(p.value()?, "--shutdown-grace")?,
            Value(v) => positionals.push(string(v, "argument")?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    a.log_level = if debug {
        log::LevelFilter::Debug
    } else {
        level.unwrap_or(log::LevelFilter::Info)
    };
    a.port = port.or(sse_port).unwrap_or(0);
    a.host = host.or(sse_host).unwrap_or_else(|| "127.0.0.1".into());
    if !expose.is_empty() {
        a.expose_headers = expose;
    }
    let mut pos = positionals.into_iter();
    a.target = pos
        .next()
        .or_else(|| getenv("SSE_URL").filter(|s| !s.is_empty()));
    a.child_args = pos.collect();
    a.access_token = getenv("API_ACCESS_TOKEN").filter(|s| !s.is_empty());
    match (client_id, client_secret, token_url) {
        (None, None, None) => {}
        (Some(client_id), Some(client_secret), Some(token_url)) => {
            if !is_url(&token_url) {
                return Err(UsageError(format!(
                    "--token-url: '{token_url}' is not an http(s) URL"
                )));
            }
            a.oauth = Some(OAuth {
                client_id,
                client_secret,
                token_url,
            });
        }
        _ => {
            return Err(UsageError(
                "--client-id, --client-secret and --token-url: OAuth2 needs all three".into(),
            ))
        }
    }
    if a.digest && (a.username.is_none() || a.password.is_none()) {
        return Err(UsageError(
            "--digest: Digest authentication needs --username and --password".into(),
        ));
    }
    if a.username.is_some() != a.password.is_some() {
        return Err(UsageError(
            "--username and --password: both are required for Basic authentication".into(),
        ));
    }
    a.auth_token = auth_token(auth, auth_file, getenv)?;
    for (n, flag) in [
        (a.max_sessions, "--max-sessions"),
        (a.max_connections, "--max-connections"),
        (a.max_header_bytes, "--max-header-size"),
        (a.stream_queue, "--stream-queue"),
    ] {
        if n == 0 {
            return Err(UsageError(format!("{flag} must be positive")));
        }
    }
    if a.max_body_bytes == 0 || a.max_message_bytes == 0 {
        return Err(UsageError(
            "--max-body-size and --max-message-size must be positive".into(),
        ));
    }
    if a.target.is_none() && a.named_servers.is_empty() && a.named_server_config.is_none() {
        return Err(UsageError(
            "nothing to do: give a URL (client mode), a server command, or --named-server / --named-server-config (see --help)".into(),
        ));
    }
    if a.client_url().is_some() && !a.child_args.is_empty() {
        return Err(UsageError(format!(
            "unexpected argument '{}' after the URL (client mode takes a single URL)",
            a.child_args[0]
        )));
    }
    Ok(Command::Run(Box::new(a)))
}

/// The inbound token: `--auth-token`, else the first line of
/// `--auth-token-file`, else `MCP_PROXY_AUTH_TOKEN`. Errors never quote it.
fn auth_token(
    flag: Option<String>,
    file: Option<PathBuf>,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, UsageError> {
    if flag.is_some() && file.is_some() {
        return Err(UsageError(
            "--auth-token and --auth-token-file: give only one".into(),
        ));
    }
    let token = if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UsageError(format!(
                "--auth-token-file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let first = text.lines().next().unwrap_or("").trim().to_owned();
        if first.is_empty() {
            return Err(UsageError(format!(
                "--auth-token-file: the first line of {} is empty; put the token there",
                path.display()
            )));
        }
        Some(first)
    } else if let Some(t) = flag {
        if t.trim().is_empty() {
            return Err(UsageError("--auth-token: the token is empty".into()));
        }
        Some(t.trim().to_owned())
    } else {
        getenv("MCP_PROXY_AUTH_TOKEN")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    if let Some(t) = &token {
        // The token goes into a header comparison only; a byte that cannot
        // appear in a header value would make it unusable.
        if t.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(UsageError(
                "the auth token must be visible ASCII without spaces".into(),
            ));
        }
    }
    Ok(token.map(Secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        run_env(args, &[])
    }

    fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Args, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let getenv = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(args.iter().copied(), &getenv) {
            Ok(Command::Run(a)) => Ok(*a),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn client_mode_basics() {
        let a = run(&[
            "-H",
            "Authorization",
            "Bearer T",
            "--transport",
            "sse",
            "http://h/sse",
        ])
        .unwrap();
        assert_eq!(a.client_url(), Some("http://h/sse"));
        assert_eq!(a.headers, vec![("Authorization".into(), "Bearer T".into())]);
        assert_eq!(a.transport, Transport::Sse);
        let a = run(&[
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--token-url",
            "https://t/token",
            "http://h",
        ])
        .unwrap();
        assert_eq!(
            a.oauth,
            Some(OAuth {
                client_id: "c".into(),
                client_secret: "s".into(),
                token_url: "https://t/token".into()
            })
        );
        let a = run(&["--username", "u", "--password", "p", "http://h"]).unwrap();
        assert_eq!(
            (a.username.as_deref(), a.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(run(&["https://h/mcp"]).unwrap().transport, Transport::Auto);
        let a = run_env(
            &[],
            &[("SSE_URL", "http://h/sse"), ("API_ACCESS_TOKEN", "tok")],
        )
        .unwrap();
        assert_eq!(a.client_url(), Some("http://h/sse"));
        assert_eq!(a.access_token.as_deref(), Some("tok"));
    }

    #[test]
    fn verify_ssl_does_not_swallow_the_url() {
        let a = run(&["--verify-ssl", "https://h/mcp"]).unwrap();
        assert_eq!(a.verify_ssl, VerifySsl::Yes);
        assert_eq!(a.client_url(), Some("https://h/mcp"));
        assert_eq!(
            run(&["--verify-ssl", "false", "https://h/mcp"])
                .unwrap()
                .verify_ssl,
            VerifySsl::No
        );
        assert_eq!(
            run(&["--verify-ssl=OFF", "https://h/mcp"])
                .unwrap()
                .verify_ssl,
            VerifySsl::No
        );
        assert_eq!(
            run(&["--no-verify-ssl", "https://h/mcp"])
                .unwrap()
                .verify_ssl,
            VerifySsl::No
        );
        let ca = std::env::temp_dir().join("mcp-proxy-cli-test-ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let a = run(&["--verify-ssl", ca.to_str().unwrap(), "https://h/mcp"]).unwrap();
        assert_eq!(a.verify_ssl, VerifySsl::CaBundle(ca));
        assert!(run(&["--verify-ssl=/no/such/ca.pem", "https://h"])
            .unwrap_err()
            .contains("--verify-ssl"));
    }

    #[test]
    fn server_mode_basics() {
        let a = run(&[
            "--port", "8080", "-e", "K", "V", "--", "uvx", "srv", "--flag",
        ])
        .unwrap();
        assert_eq!(a.port, 8080);
        assert_eq!(a.target.as_deref(), Some("uvx"));
        assert_eq!(a.child_args, vec!["srv", "--flag"]);
        assert_eq!(a.env, vec![("K".into(), "V".into())]);
        assert_eq!(a.host, "127.0.0.1");
        // intermixed, as argparse allows
        let a = run(&["my-server", "--port", "1", "arg1", "--stateless"]).unwrap();
        assert_eq!(a.target.as_deref(), Some("my-server"));
        assert_eq!(a.child_args, vec!["arg1"]);
        assert!(a.stateless);
    }

    #[test]
    fn modern_sibling_is_on_unless_turned_off_and_the_last_flag_wins() {
        assert!(run(&["srv"]).unwrap().modern_sibling);
        assert!(!run(&["--no-modern-sibling", "srv"]).unwrap().modern_sibling);
        let a = run(&["--no-modern-sibling", "--modern-sibling", "srv"]).unwrap();
        assert!(a.modern_sibling);
    }

    #[test]
    fn deprecated_aliases_work_and_port_wins() {
        let a = run(&["--sse-port", "9000", "--sse-host", "0.0.0.0", "srv"]).unwrap();
        assert_eq!((a.port, a.host.as_str()), (9000, "0.0.0.0"));
        let a = run(&["--sse-port", "9000", "--port", "9001", "srv"]).unwrap();
        assert_eq!(a.port, 9001);
    }

    #[test]
    fn allow_origin_is_not_greedy() {
        let a = run(&["--allow-origin", "*", "uvx", "srv"]).unwrap();
        assert_eq!(a.allow_origins, vec!["*"]);
        assert_eq!(a.target.as_deref(), Some("uvx"));
        assert_eq!(a.expose_headers, vec!["mcp-session-id"]);
        let a = run(&["--expose-header", "x-a", "--expose-header", "x-b", "srv"]).unwrap();
        assert_eq!(a.expose_headers, vec!["x-a", "x-b"]);
    }

    #[test]
    fn allow_host_is_repeatable_and_takes_lists() {
        let a = run(&[
            "--allow-host",
            "MCP.Example.com:443, b.example",
            "--allow-host=[::1]:8080",
            "--allow-host",
            "fe80::1",
            "--allow-host",
            "*",
            "srv",
        ])
        .unwrap();
        assert_eq!(
            a.allow_hosts,
            vec!["mcp.example.com", "b.example", "[::1]", "[fe80::1]", "*"]
        );
        assert_eq!(a.target.as_deref(), Some("srv"));
        assert!(run(&["srv"]).unwrap().allow_hosts.is_empty());
        for bad in ["a,,b", "", "a,", "http://a.example", "a b"] {
            let e = run(&["--allow-host", bad, "srv"]).unwrap_err();
            assert!(e.starts_with("--allow-host: "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:9"), "[::1]");
        assert_eq!(host_name("::1"), "[::1]");
        assert_eq!(host_name("Evil.Example.com"), "evil.example.com");
    }

    #[test]
    fn log_levels_any_case() {
        assert_eq!(
            run(&["--log-level", "debug", "srv"]).unwrap().log_level,
            log::LevelFilter::Debug
        );
        assert_eq!(
            run(&["--log-level", "WARNING", "srv"]).unwrap().log_level,
            log::LevelFilter::Warn
        );
        assert_eq!(
            run(&["--log-level", "Critical", "srv"]).unwrap().log_level,
            log::LevelFilter::Error
        );
        assert_eq!(
            run(&["--log-level", "error", "--debug", "srv"])
                .unwrap()
                .log_level,
            log::LevelFilter::Debug
        );
        assert!(run(&["--log-level", "loud", "srv"])
            .unwrap_err()
            .contains("--log-level"));
    }

    #[test]
    fn usage_errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "nothing to do"),
            (&["--port", "x", "srv"], "--port"),
            (&["--port", "70000", "srv"], "--port"),
            (&["--transport", "ws", "http://h"], "--transport"),
            (&["--bogus", "srv"], "--bogus"),
            (&["-H", "Bad Name", "v", "http://h"], "--headers"),
            (&["-H", "X", "a\r\nInjected: 1", "http://h"], "line break"),
            (&["-H", "X"], "--headers"),
            (&["http://h", "extra"], "extra"),
            (&["--env", "A=B", "v", "srv"], "--env"),
            // found by fuzzing (tests/fuzz cli_args): a newline in a value
            (&["--port", "\n", "srv"], "--port: '\\n'"),
            (&["--username", "u", "http://h"], "--password"),
            (&["--password", "p", "http://h"], "--username"),
            (&["--digest", "http://h"], "--digest"),
            (&["--client-id", "c", "http://h"], "--client-id"),
            (&["--token-url", "http://t", "http://h"], "--token-url"),
            (
                &[
                    "--client-id",
                    "c",
                    "--client-secret",
                    "s",
                    "--token-url",
                    "t",
                    "http://h",
                ],
                "--token-url",
            ),
        ];
        for (args, want) in cases {
            let err = run(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn session_timeout_flag() {
        assert_eq!(
            run(&["srv"]).unwrap().session_timeout,
            Some(Duration::from_secs(1800))
        );
        let a = run(&["--session-timeout", "5", "srv"]).unwrap();
        assert_eq!(a.session_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            run(&["--session-timeout", "0", "srv"])
                .unwrap()
                .session_timeout,
            None
        );
        assert!(run(&["--session-timeout", "soon", "srv"])
            .unwrap_err()
            .contains("--session-timeout"));
        assert!(HELP.contains("--session-timeout"));
    }

    #[test]
    fn auth_token_sources() {
        assert_eq!(run(&["srv"]).unwrap().auth_token, None);
        let a = run(&["--auth-token", "s3cret", "srv"]).unwrap();
        assert_eq!(a.auth_token.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{a:?}").contains("s3cret"), "Debug redacts it");
        let a = run_env(&["srv"], &[("MCP_PROXY_AUTH_TOKEN", "envtok")]).unwrap();
        assert_eq!(a.auth_token.as_ref().map(Secret::expose), Some("envtok"));
        let a = run_env(
            &["--auth-token", "flag", "srv"],
            &[("MCP_PROXY_AUTH_TOKEN", "envtok")],
        )
        .unwrap();
        assert_eq!(a.auth_token.as_ref().map(Secret::expose), Some("flag"));
        let f = std::env::temp_dir().join(format!("mcp-proxy-cli-token-{}", std::process::id()));
        std::fs::write(&f, "  filetok  \nsecond line\n").unwrap();
        let a = run(&["--auth-token-file", f.to_str().unwrap(), "srv"]).unwrap();
        assert_eq!(a.auth_token.as_ref().map(Secret::expose), Some("filetok"));
        std::fs::write(&f, "\n").unwrap();
        let e = run(&["--auth-token-file", f.to_str().unwrap(), "srv"]).unwrap_err();
        assert!(
            e.contains("--auth-token-file") && e.contains("empty"),
            "{e}"
        );
        std::fs::remove_file(&f).unwrap();
        let e = run(&["--auth-token-file", "/no/such/token", "srv"]).unwrap_err();
        assert!(e.contains("--auth-token-file"), "{e}");
        let e = run(&["--auth-token", "a b", "srv"]).unwrap_err();
        assert!(e.contains("auth token") && !e.contains("a b"), "{e}");
        assert!(run(&["--status-no-auth", "srv"]).unwrap().status_no_auth);
        assert!(HELP.contains("--auth-token-file") && HELP.contains("MCP_PROXY_AUTH_TOKEN"));
    }

    #[test]
    fn secrets_compare_whole() {
        let s = Secret::new("abc".into());
        assert!(s.matches(b"abc"));
        for bad in [&b"abd"[..], b"ab", b"abcd", b"", b"ABC"] {
            assert!(!s.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn limit_flags() {
        let d = run(&["srv"]).unwrap();
        assert_eq!(
            (d.max_sessions, d.max_connections, d.max_header_bytes),
            (1000, 2048, 65536)
        );
        assert_eq!(
            (d.stream_queue, d.replay_events, d.replay_bytes),
            (256, 64, 4 << 20)
        );
        assert_eq!(d.write_timeout, Some(Duration::from_secs(60)));
        assert_eq!(d.header_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            run(&["--header-timeout", "0", "srv"])
                .unwrap()
                .header_timeout,
            None
        );
        assert_eq!(d.response_timeout, Some(Duration::from_secs(300)));
        let a = run(&[
            "--max-sessions",
            "3",
            "--max-connections",
            "9",
            "--max-header-size",
            "100",
            "--stream-queue",
            "4",
            "--replay-events",
            "0",
            "--replay-bytes",
            "10",
            "--write-timeout",
            "0",
            "--response-timeout",
            "7",
            "srv",
        ])
        .unwrap();
        assert_eq!(
            (a.max_sessions, a.max_connections, a.max_header_bytes),
            (3, 9, 100)
        );
        assert_eq!(
            (a.stream_queue, a.replay_events, a.replay_bytes),
            (4, 0, 10)
        );
        assert_eq!(a.write_timeout, None);
        assert_eq!(a.response_timeout, Some(Duration::from_secs(7)));
        for flag in [
            "--max-sessions",
            "--max-connections",
            "--max-header-size",
            "--stream-queue",
        ] {
            let e = run(&[flag, "0", "srv"]).unwrap_err();
            assert!(e.contains(flag), "{e}");
            let e = run(&[flag, "many", "srv"]).unwrap_err();
            assert!(e.contains(flag), "{e}");
            assert!(HELP.contains(flag), "{flag} documented");
        }
        for flag in [
            "--replay-events",
            "--replay-bytes",
            "--write-timeout",
            "--response-timeout",
            "--header-timeout",
        ] {
            assert!(HELP.contains(flag), "{flag} documented");
        }
    }

    #[test]
    fn lifecycle_flags() {
        let a = run(&["srv"]).unwrap();
        assert_eq!(a.init_timeout, Some(Duration::from_secs(60)));
        assert_eq!(a.max_restarts, 5);
        assert_eq!(a.restart_window, Duration::from_secs(60));
        assert_eq!(a.restart_backoff, Duration::from_secs(1));
        assert_eq!(a.failed_retry, Some(Duration::from_secs(30)));
        assert_eq!(a.shutdown_grace, Duration::from_secs(2));
        let a = run(&[
            "--init-timeout",
            "0.5",
            "--max-restarts",
            "0",
            "--restart-window",
            "10",
            "--restart-backoff",
            "0.05",
            "--failed-retry",
            "1.5",
            "--shutdown-grace",
            "0",
            "srv",
        ])
        .unwrap();
        assert_eq!(a.init_timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.max_restarts, 0);
        assert_eq!(a.restart_window, Duration::from_secs(10));
        assert_eq!(a.restart_backoff, Duration::from_millis(50));
        assert_eq!(a.failed_retry, Some(Duration::from_millis(1500)));
        assert_eq!(a.shutdown_grace, Duration::ZERO);
        assert_eq!(
            run(&["--failed-retry", "0", "srv"]).unwrap().failed_retry,
            None
        );
        assert_eq!(
            run(&["--init-timeout", "0", "srv"]).unwrap().init_timeout,
            None
        );
        for (flag, bad) in [
            ("--init-timeout", "-1"),
            ("--restart-window", "soon"),
            ("--restart-backoff", "inf"),
            ("--shutdown-grace", "NaN"),
            ("--failed-retry", "-2"),
            ("--max-restarts", "-1"),
        ] {
            let e = run(&[flag, bad, "srv"]).unwrap_err();
            assert!(e.contains(flag), "{flag} {bad}: {e}");
            assert!(HELP.contains(flag), "{flag} is in --help");
        }
        assert!(HELP.contains("/readyz") && HELP.contains("128+N"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(["--help"], &|_| None), Ok(Command::Help));
        assert_eq!(parse(["-h", "--bogus"], &|_| None), Ok(Command::Help));
        assert_eq!(parse(["--version"], &|_| None), Ok(Command::Version));
    }

    #[test]
    fn named_servers() {
        let a = run(&[
            "--named-server",
            "fetch",
            "uvx mcp-server-fetch",
            "--named-server-config",
            "c.json",
        ])
        .unwrap();
        assert_eq!(
            a.named_servers,
            vec![("fetch".into(), "uvx mcp-server-fetch".into())]
        );
        assert_eq!(a.named_server_config, Some(PathBuf::from("c.json")));
        assert_eq!(a.target, None);
    }
}
