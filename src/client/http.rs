//! The HTTP side of client mode: one ureq agent (rustls, the `--verify-ssl`
//! choice), the headers every request carries (`-H`, `API_ACCESS_TOKEN`,
//! Basic auth, an OAuth2 client-credentials token fetched through the same
//! agent, renewed before it expires and fetched afresh once when the remote
//! answers 401), and the pure pieces the links share: URL resolution and the
//! same-origin rule for the HTTP+SSE `endpoint`, capped exponential backoff,
//! and an SSE body reader bounded by the message size limit.
//!
//! No threads of its own. Header *values* are never logged, only names:
//! any of them may be a secret.

use super::digest::Challenge;
use crate::cli::{Args, VerifySsl};
use crate::sse;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectionDetails, Connector, DefaultConnector, Transport};

/// How long a TCP (and TLS) connect may take before the remote counts as
/// unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and largest wait between reconnection attempts.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An OAuth2 token is renewed this long before it expires (as upstream).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the token endpoint gives no `expires_in`.
const TOKEN_DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest token endpoint reply we read.
const TOKEN_REPLY_BYTES: usize = 64 * 1024;
/// Read size for SSE bodies.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why building the HTTP client failed (a runtime error, exit 1).
#[derive(Debug)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The remote as every link thread sees it: shared read-only.
pub struct Remote {
    agent: ureq::Agent,
    /// Shared by `agent` and every [`Remote::exchange_agent`], so that the
    /// TLS set-up is built once.
    connector: Arc<DefaultConnector>,
    /// Sent on every request, in order; auth last so it wins.
    headers: Vec<(String, String)>,
    oauth: Option<OAuthState>,
    digest: Option<DigestState>,
    pub max_message_bytes: usize,
}

struct DigestState {
    user: String,
    password: String,
    /// The last challenge and how many times its nonce has been used.
    challenge: Mutex<Option<(Challenge, u32)>>,
}

struct OAuthState {
    cfg: crate::cli::OAuth,
    /// The token and when to renew it. Held while fetching, so concurrent
    /// requests wait for one fetch instead of starting their own.
    token: Mutex<Option<(String, Instant)>>,
}

pub type Response = ureq::http::Response<ureq::Body>;

impl Remote {
    pub fn new(args: &Args) -> Result<Arc<Remote>, SetupError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        match &args.verify_ssl {
            VerifySsl::Yes => {}
            VerifySsl::No => {
                log::warn!(
                    "TLS certificate verification is OFF (--no-verify-ssl): anyone on the path can read and change this traffic"
                );
                tls = tls.disable_verification(true);
            }
            VerifySsl::CaBundle(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    SetupError(format!(
                        "cannot read the CA bundle {}: {e}; check --verify-ssl",
                        path.display()
                    ))
                })?;
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(SetupError(format!(
                        "the CA bundle {} holds no PEM certificate; check --verify-ssl",
                        path.display()
                    )));
                }
                tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
            }
        }
        // No global or body timeout: SSE streams and slow tool calls live
        // as long as they need (DESIGN.md, ureq trap). Statuses are data.
        // A remote that takes a connection and never answers fails the
        // request after --response-timeout (until the response head only).
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(args.response_timeout)
            .tls_config(tls.build())
            .user_agent(format!("mcp-proxy/{}", crate::cli::VERSION))
            .build();
        let connector = Arc::new(DefaultConnector::new());
        let agent = ureq::Agent::with_parts(
            config,
            Shared(connector.clone()),
            DefaultResolver::default(),
        );
        Ok(Arc::new(Remote {
            agent,
            connector,
            headers: request_headers(args),
            oauth: args.oauth.clone().map(|cfg| OAuthState {
                cfg,
                token: Mutex::new(None),
            }),
            digest: args
                .digest
                .then(|| match (&args.username, &args.password) {
                    (Some(u), Some(p)) => Some(DigestState {
                        user: u.clone(),
                        password: p.clone(),
                        challenge: Mutex::new(None),
                    }),
                    _ => None,
                })
                .flatten(),
            max_message_bytes: args.max_message_bytes,
        }))
    }

    /// The Digest `Authorization` for a request, if a challenge is known.
    fn digest_header(&self, method: &str, url: &str) -> Option<String> {
        let d = self.digest.as_ref()?;
        let mut c = d.challenge.lock().unwrap_or_else(|e| e.into_inner());
        let (challenge, nc) = c.as_mut()?;
        *nc += 1;
        Some(challenge.authorization(
            &d.user,
            &d.password,
            method,
            &request_target(url),
            *nc,
            &crate::util::random_hex(8),
        ))
    }

    /// Takes a Digest challenge from a 401; true when it is one we can answer.
    fn take_challenge(&self, res: &Response) -> bool {
        let Some(d) = &self.digest else {
            return false;
        };
        let found = res
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse);
        match found {
            Some(ch) => {
                *d.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some((ch, 0));
                true
            }
            None => false,
        }
    }

    /// The current OAuth2 access token, fetched or renewed as needed.
    fn bearer(&self) -> Result<Option<String>, String> {
        let Some(o) = &self.oauth else {
            return Ok(None);
        };
        let mut cached = o.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, renew_at)) = &*cached {
            if Instant::now() < *renew_at {
                return Ok(Some(t.clone()));
            }
        }
        let (token, lifetime) = self.fetch_token(&o.cfg)?;
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN);
        *cached = Some((token.clone(), renew_at));
        Ok(Some(token))
    }

    /// RFC 6749 §4.4: client credentials grant, client authenticated with
    /// HTTP Basic. Same agent, so `--verify-ssl` applies here too.
    fn fetch_token(&self, cfg: &crate::cli::OAuth) -> Result<(String, Duration), String> {
        let url = display_url(&cfg.token_url);
        let fail = |why: String| format!("could not get an OAuth2 token from {url}: {why}");
        let basic = format!(
            "Basic {}",
            base64(format!("{}:{}", cfg.client_id, cfg.client_secret).as_bytes())
        );
        log::debug!("POST {url} (OAuth2 client credentials)");
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(&cfg.token_url)
            .header("Authorization", basic)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body("grant_type=client_credentials".to_owned())
            .map_err(|e| fail(e.to_string()))?;
        let res = self.agent.run(req).map_err(|e| fail(describe(&e)))?;
        let status = res.status().as_u16();
        let body = read_body(res, TOKEN_REPLY_BYTES).map_err(|e| fail(format!("it {e}")))?;
        if !(200..300).contains(&status) {
            return Err(fail(format!("HTTP {status}")));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| fail("the reply is not JSON".into()))?;
        let token = v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the reply has no access_token".into()))?;
        let lifetime = v["expires_in"]
            .as_u64()
            .map(Duration::from_secs)
            .unwrap_or(TOKEN_DEFAULT_LIFETIME);
        Ok((token.to_owned(), lifetime))
    }

    /// Drops the cached token if it is still `used`: when several requests
    /// meet the same 401 at once, the first one's fresh token serves all.
    fn forget_token(&self, used: &str) {
        if let Some(o) = &self.oauth {
            let mut cached = o.token.lock().unwrap_or_else(|e| e.into_inner());
            if cached.as_ref().is_some_and(|(t, _)| t == used) {
                *cached = None;
            }
        }
    }

    /// Why the remote's `status` failed a request, when that is about our
    /// OAuth2 credentials: a 401 that [`Remote::send`] already met again
    /// with a freshly fetched token.
    pub fn auth_refused(&self, status: u16) -> Option<String> {
        let o = self.oauth.as_ref().filter(|_| status == 401)?;
        Some(format!(
            "refused the OAuth2 token from {} (HTTP 401, also with a freshly fetched token): the client credentials were refused; check --client-id, --client-secret and --token-url",
            display_url(&o.cfg.token_url)
        ))
    }

    /// An agent of its own for one exchange, with its own connection, so
    /// that [`ureq::Agent::shutdown`] closes that exchange and nothing else
    /// (a 2026-07-28 cancel, LC-42). Same configuration as the main agent.
    pub fn exchange_agent(&self) -> ureq::Agent {
        ureq::Agent::with_parts(
            self.agent.config().clone(),
            Shared(self.connector.clone()),
            DefaultResolver::default(),
        )
    }

    pub fn send(
        &self,
        method: &str,
        url: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Response, String> {
        self.send_on(&self.agent, method, url, extra, body)
    }

    /// One request. `extra` headers come after the configured ones. A 401
    /// is met once: with OAuth2, by a freshly fetched token (the remote
    /// revoked or rotated the old one early); with `--digest`, by answering
    /// its Digest challenge. A second 401 is the caller's to report.
    pub fn send_on(
        &self,
        agent: &ureq::Agent,
        method: &str,
        url: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Response, String> {
        let (res, used) = self.attempt(
            agent,
            method,
            url,
            extra,
            body,
            self.digest_header(method, url),
        )?;
        if res.status().as_u16() != 401 {
            return Ok(res);
        }
        if let Some(used) = used {
            self.forget_token(&used);
            log::info!(
                "{method} {}: the remote refused the OAuth2 token (401); retrying once with a fresh one",
                display_url(url)
            );
            drop(res);
            let (res, _) = self.attempt(agent, method, url, extra, body, None)?;
            if res.status().as_u16() == 401 {
                log::error!(
                    "{method} {}: the remote refused a freshly fetched OAuth2 token too (401); check the client credentials",
                    display_url(url)
                );
            }
            return Ok(res);
        }
        if self.take_challenge(&res) {
            log::debug!(
                "{method} {}: answering a Digest challenge",
                display_url(url)
            );
            return self
                .attempt(
                    agent,
                    method,
                    url,
                    extra,
                    body,
                    self.digest_header(method, url),
                )
                .map(|(res, _)| res);
        }
        Ok(res)
    }

    /// One try; returns the response and the OAuth2 token it carried.
    fn attempt(
        &self,
        agent: &ureq::Agent,
        method: &str,
        url: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
        digest: Option<String>,
    ) -> Result<(Response, Option<String>), String> {
        let bearer = self.bearer()?;
        let auth = bearer.as_ref().map(|t| format!("Bearer {t}")).or(digest);
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in &self.headers {
            if auth.is_some() && k.eq_ignore_ascii_case("authorization") {
                continue;
            }
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some(a) = &auth {
            b = b.header("Authorization", a.as_str());
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let names: Vec<&str> = self
            .headers
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| auth.is_none() || !k.eq_ignore_ascii_case("authorization"))
            .chain(auth.as_ref().map(|_| "Authorization"))
            .chain(extra.iter().map(|(k, _)| *k))
            .collect();
        log::debug!(
            "{method} {} (headers: {})",
            display_url(url),
            names.join(", ")
        );
        let res = match body {
            Some(body) => b
                .body(body.to_owned())
                .map_err(|e| format!("bad request: {e}"))
                .and_then(|r| agent.run(r).map_err(|e| describe(&e))),
            None => b
                .body(())
                .map_err(|e| format!("bad request: {e}"))
                .and_then(|r| agent.run(r).map_err(|e| describe(&e))),
        };
        if let Ok(r) = &res {
            log::debug!("{method} {} -> {}", display_url(url), r.status().as_u16());
        }
        res.map(|r| (r, bearer))
    }
}

/// The one connector chain (TCP, TLS) behind every agent.
#[derive(Debug)]
struct Shared(Arc<DefaultConnector>);

impl Connector for Shared {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        self.0.connect(details, chained)
    }
}

/// The request target of an absolute URL: its path and query.
fn request_target(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let t = match rest.find(['/', '?']) {
        Some(i) => &rest[i..],
        None => "/",
    };
    let t = t.split('#').next().unwrap_or("/");
    if t.starts_with('?') {
        format!("/{t}")
    } else {
        t.to_owned()
    }
}

/// The headers of every request: `-H` pairs, then `Authorization` from
/// `API_ACCESS_TOKEN` (replacing a `-H Authorization`), then Basic auth from
/// `--username/--password` (replacing both, as upstream's httpx auth does).
pub fn request_headers(args: &Args) -> Vec<(String, String)> {
    let mut h = args.headers.clone();
    let set_auth = |h: &mut Vec<(String, String)>, v: String| {
        h.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        h.push(("Authorization".into(), v));
    };
    if let Some(t) = &args.access_token {
        set_auth(&mut h, format!("Bearer {t}"));
    }
    if let (Some(u), Some(p), false) = (&args.username, &args.password, args.digest) {
        set_auth(
            &mut h,
            format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
        );
    }
    h
}

/// A ureq error as one short phrase ("connection refused", …).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused the connection".into(),
            std::io::ErrorKind::ConnectionReset => "reset the connection".into(),
            std::io::ErrorKind::TimedOut => "did not answer in time".into(),
            _ => format!("could not be reached ({io})"),
        },
        ureq::Error::Timeout(t) => format!("did not answer in time ({t})"),
        ureq::Error::HostNotFound => "has a host name that does not resolve".into(),
        other => format!("could not be reached ({other})"),
    }
}

/// The URL as it may appear in logs and error messages: no user info, no
/// query (either may carry a credential or a session id).
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.split(['?', '#']).next().unwrap_or("").to_owned();
    };
    let (auth, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = auth.rsplit('@').next().unwrap_or(auth);
    let path = path.split(['?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}{path}")
}

/// Standard base64 (RFC 4648, with padding) for Basic auth.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// `(scheme, host, port)` of an absolute http(s) URL, lowercased, with the
/// default port filled in.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let auth = rest.split(['/', '?', '#']).next()?;
    let hostport = auth.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        (format!("[{h}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                if p.is_empty() {
                    default
                } else {
                    p.parse().ok()?
                },
            ),
            None => (hostport.to_owned(), default),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// Resolves `reference` (the `endpoint` event's data) against `base` (the
/// stream URL), as RFC 3986 §5.2 does for the forms servers send: absolute,
/// scheme-relative, absolute path, relative path, query only.
pub fn resolve(base: &str, reference: &str) -> Option<String> {
    let r = reference.trim();
    if r.contains("://") && origin(r).is_some() {
        return Some(r.to_owned());
    }
    let (scheme, rest) = base.split_once("://")?;
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, path_q) = rest.split_at(auth_end);
    if let Some(r) = r.strip_prefix("//") {
        return Some(format!("{scheme}://{r}"));
    }
    let prefix = format!("{scheme}://{auth}");
    if r.starts_with('/') {
        return Some(format!("{prefix}{}", remove_dots(r)));
    }
    let base_path = path_q.split(['?', '#']).next().unwrap_or("");
    if r.is_empty() {
        return Some(format!("{prefix}{path_q}"));
    }
    if r.starts_with('?') {
        let p = if base_path.is_empty() { "/" } else { base_path };
        return Some(format!("{prefix}{p}{r}"));
    }
    let dir = match base_path.rfind('/') {
        Some(i) => &base_path[..=i],
        None => "/",
    };
    Some(format!("{prefix}{}", remove_dots(&format!("{dir}{r}"))))
}

/// RFC 3986 §5.2.4 on the path part (the query is left alone).
fn remove_dots(path_q: &str) -> String {
    let (path, query) = match path_q.find(['?', '#']) {
        Some(i) => path_q.split_at(i),
        None => (path_q, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i == segs.len() - 1;
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut p = out.join("/");
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    p + query
}

/// Capped exponential backoff: 100 ms, 200 ms, … up to [`BACKOFF_MAX`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// How an SSE body ended.
pub enum SseEnd {
    /// The callback asked to stop.
    Stopped,
    /// The body ended (cleanly or not) before the callback stopped it.
    Ended { cause: String },
}

/// Reads an SSE body, handing each item to `on` until it returns false.
/// Returns how it ended, the last event id and the last `retry` seen.
pub fn read_sse(
    mut body: impl Read,
    max_event_bytes: usize,
    mut on: impl FnMut(sse::Item) -> bool,
) -> (SseEnd, Option<String>, Option<u64>) {
    let mut parser = sse::Parser::new(max_event_bytes);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut items = Vec::new();
    let mut retry = None;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => {
                return (
                    SseEnd::Ended {
                        cause: "the stream ended".into(),
                    },
                    parser.last_event_id().map(str::to_owned),
                    retry,
                )
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return (
                    SseEnd::Ended {
                        cause: format!("the stream broke ({e})"),
                    },
                    parser.last_event_id().map(str::to_owned),
                    retry,
                )
            }
        };
        parser.feed(&buf[..n], &mut items);
        for it in items.drain(..) {
            if let sse::Item::Retry(ms) = it {
                retry = Some(ms);
            }
            if !on(it) {
                return (
                    SseEnd::Stopped,
                    parser.last_event_id().map(str::to_owned),
                    retry,
                );
            }
        }
    }
}

/// The value of a response header, if it is text.
pub fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a whole (non-SSE) body, failing when it exceeds `max` bytes. The
/// error says what the server did ("the remote server URL {error}").
pub fn read_body(res: Response, max: usize) -> Result<String, String> {
    let mut out = Vec::new();
    res.into_body()
        .into_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("broke off its reply ({e})"))?;
    if out.len() > max {
        return Err(format!(
            "sent a reply larger than the message size limit ({max} bytes, see --max-message-size)"
        ));
    }
    String::from_utf8(out).map_err(|_| "sent a reply that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_endpoints_like_rfc3986() {
        let base = "http://h:8080/a/sse?x=1";
        let cases = [
            (
                "/messages?session_id=1",
                "http://h:8080/messages?session_id=1",
            ),
            (
                "/messages/?session_id=ab",
                "http://h:8080/messages/?session_id=ab",
            ),
            ("messages?s=1", "http://h:8080/a/messages?s=1"),
            ("../m?s=1", "http://h:8080/m?s=1"),
            ("./m", "http://h:8080/a/m"),
            ("?s=2", "http://h:8080/a/sse?s=2"),
            ("http://other:1/m", "http://other:1/m"),
            ("//h:8080/m", "http://h:8080/m"),
            ("https://h:8080/x", "https://h:8080/x"),
        ];
        for (r, want) in cases {
            assert_eq!(resolve(base, r).as_deref(), Some(want), "{r}");
        }
        assert_eq!(
            resolve("http://h", "m").as_deref(),
            Some("http://h/m"),
            "base without a path"
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(origin("http://H:80/x"), origin("http://h/y"));
        assert_eq!(
            origin("https://h/x"),
            Some(("https".into(), "h".into(), 443))
        );
        assert_ne!(origin("http://h:8080/x"), origin("http://h:8081/x"));
        assert_ne!(origin("http://h/x"), origin("https://h/x"));
        assert_ne!(origin("http://h/x"), origin("http://evil/x"));
        assert_eq!(
            origin("http://u:p@[::1]:9/x"),
            Some(("http".into(), "[::1]".into(), 9))
        );
        assert_eq!(origin("ftp://h/x"), None);
    }

    #[test]
    fn request_targets_are_path_and_query() {
        assert_eq!(request_target("http://h:1/mcp?a=1#f"), "/mcp?a=1");
        assert_eq!(request_target("https://h"), "/");
        assert_eq!(request_target("http://h?x"), "/?x");
    }

    #[test]
    fn display_url_hides_credentials_and_query() {
        assert_eq!(
            display_url("https://user:secret@h:1/mcp?token=abc"),
            "https://h:1/mcp"
        );
        assert_eq!(display_url("http://h/sse"), "http://h/sse");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let seen: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(seen[0], BACKOFF_START);
        assert_eq!(seen[1], BACKOFF_START * 2);
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*seen.last().unwrap(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_START);
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn auth_headers_override_in_upstream_order() {
        let mut a = Args {
            headers: vec![
                ("X-A".into(), "1".into()),
                ("authorization".into(), "Bearer from-h".into()),
            ],
            access_token: Some("tok".into()),
            ..Args::default()
        };
        let h = request_headers(&a);
        assert_eq!(
            h,
            vec![
                ("X-A".into(), "1".into()),
                ("Authorization".into(), "Bearer tok".into())
            ]
        );
        a.username = Some("u".into());
        a.password = Some("p".into());
        let h = request_headers(&a);
        assert_eq!(h[1], ("Authorization".into(), "Basic dTpw".into()));
        assert_eq!(h.len(), 2);
    }
}
