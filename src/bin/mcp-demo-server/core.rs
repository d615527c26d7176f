//! The demo server's MCP logic, independent of the transport.
//!
//! One [`Session`] per MCP session: stdio has exactly one, the HTTP modes
//! one per client session. Messages come in through [`Session::handle`];
//! everything the server says goes out through the session's [`Out`],
//! tagged with the request it relates to (so the Streamable HTTP mode can put
//! it on that request's stream). Slow tools run on their own threads so that
//! many requests are in flight at once, as with a real server.

use mcp_proxy::jsonrpc::{self, Kind, Message};
use mcp_proxy::router::LOG_LEVELS;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub const VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Where a session's outgoing messages go: `(related request id, line)`.
/// The related id is the raw id of the client request the message belongs
/// to, or `None` for unrelated traffic (list_changed, replies to pings).
pub type Out = Arc<dyn Fn(Option<&str>, String) + Send + Sync>;

/// Server-wide knobs, from the command line.
#[derive(Clone, Default)]
pub struct Config {
    pub name: String,
    /// Delay before answering `initialize`.
    pub init_delay: Duration,
    /// Never answer `initialize` (a hung server).
    pub no_init: bool,
    /// Behave like a real server where the proxy's bookkeeping matters:
    /// `touch` notifies only for URIs this process was asked to subscribe
    /// to, and `log` sends only at or above the level set with
    /// `logging/setLevel` (`info` until one is set).
    pub strict: bool,
    /// Speak only the legacy era: no `server/discover`, no 2026-07-28
    /// `_meta` handling (a server from before 2026-07-28).
    pub legacy_only: bool,
    /// Never answer `server/discover` (a legacy server that stays silent
    /// on methods it does not know).
    pub silent_discover: bool,
    /// Serve only the era of the first request, as the Python SDK 2.x
    /// does: after `initialize` (or any legacy request) 2026-07-28
    /// requests are refused, after a 2026-07-28 request `initialize` is.
    pub era_lock: bool,
}

#[derive(Default)]
struct State {
    cancelled: HashSet<String>,
    cancel_log: Vec<String>,
    waiting: HashMap<String, Sender<Message>>,
    subscriptions: HashSet<String>,
    /// The level set with `logging/setLevel`, if any.
    log_level: Option<String>,
    initialize_count: u64,
    client_name: Option<String>,
    methods_seen: Vec<String>,
    /// Raw ids of the 2026-07-28 requests in flight: their results get
    /// `resultType` and serverInfo in `_meta` (see modern.rs).
    modern: HashSet<String>,
    /// Open `subscriptions/listen` requests: raw id -> the agreed filter.
    listens: HashMap<String, Value>,
    /// With `era_lock`: the era of the first request (true: 2026-07-28).
    era: Option<bool>,
}

pub struct Session {
    cfg: Config,
    out: Out,
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl Session {
    pub fn new(cfg: Config, out: Out) -> Arc<Session> {
        Arc::new(Session {
            cfg,
            out,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        })
    }

    fn send(&self, related: Option<&str>, line: String) {
        (self.out)(related, line)
    }

    fn reply(&self, id: &str, mut result: Value) {
        if self.state.lock().unwrap().modern.remove(id) {
            self.modern_result(&mut result);
        }
        self.send(Some(id), jsonrpc::result_reply(id, &result.to_string()));
    }

    fn fail(&self, id: &str, code: i64, msg: &str) {
        self.fail_with(id, code, msg, None)
    }

    fn fail_with(&self, id: &str, code: i64, msg: &str, data: Option<&Value>) {
        self.state.lock().unwrap().modern.remove(id);
        self.send(Some(id), jsonrpc::error_reply(Some(id), code, msg, data));
    }

    fn text(&self, id: &str, text: impl Into<String>) {
        self.reply(
            id,
            json!({"content": [{"type": "text", "text": text.into()}]}),
        );
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.state.lock().unwrap().cancelled.contains(id)
    }

    /// Sends a request to the client and waits for its answer; `related`
    /// is the call it belongs to (`None`: unrelated, so in Streamable HTTP
    /// it goes on the GET stream).
    fn ask(&self, related: Option<&str>, method: &str, params: Value) -> Option<Message> {
        self.ask_with(related, method, params, false)
    }

    /// [`Self::ask`]; with `id_inside`, the id goes between the params and
    /// the method, so a large request has it at neither end.
    fn ask_with(
        &self,
        related: Option<&str>,
        method: &str,
        params: Value,
        id_inside: bool,
    ) -> Option<Message> {
        let id = format!("\"demo-{}\"", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = channel();
        self.state.lock().unwrap().waiting.insert(id.clone(), tx);
        let line = if id_inside {
            format!(
                r#"{{"params":{params},"id":{id},"method":{},"jsonrpc":"2.0"}}"#,
                json!(method)
            )
        } else {
            let line =
                json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).to_string();
            Message::ours(line).with_id(&id).into_raw()
        };
        self.send(related, line);
        rx.recv_timeout(Duration::from_secs(60)).ok()
    }

    /// Handles one line from the client.
    pub fn handle_line(self: &Arc<Self>, line: &str) {
        match Message::parse(line) {
            Ok(m) => self.handle(m),
            Err(e) => {
                eprintln!("demo: bad input: {e}");
                self.send(None, e.reply());
            }
        }
    }

    pub fn handle(self: &Arc<Self>, m: Message) {
        match m.kind() {
            Kind::Response => {
                let waiter = m
                    .id()
                    .and_then(|id| self.state.lock().unwrap().waiting.remove(id));
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(m);
                    }
                    None => eprintln!("demo: response to nothing: {}", m.raw()),
                }
            }
            Kind::Notification => self.notification(&m),
            Kind::Request => {
                let id = m.id().expect("requests have ids").to_owned();
                let mut st = self.state.lock().unwrap();
                st.methods_seen.push(m.method().unwrap_or("").to_owned());
                let modern = !self.cfg.legacy_only && is_modern(&m);
                if self.cfg.era_lock && *st.era.get_or_insert(modern) != modern {
                    drop(st);
                    let msg = if modern {
                        "Invalid Request: this server process was initialized; it serves only the initialize handshake"
                    } else {
                        "Invalid Request: this server process serves 2026-07-28 requests; it cannot be initialized"
                    };
                    return self.fail(&id, jsonrpc::INVALID_REQUEST, msg);
                }
                if modern {
                    st.modern.insert(id.clone());
                }
                drop(st);
                let me = self.clone();
                // Everything on its own thread: a slow call never holds up another.
                thread::spawn(move || me.request(&id, &m));
            }
        }
    }

    fn notification(&self, m: &Message) {
        let p = m.params().cloned().unwrap_or(Value::Null);
        match m.method() {
            Some("notifications/cancelled") => {
                if let Some(id) = m.get_raw(&["params", "requestId"]) {
                    let mut st = self.state.lock().unwrap();
                    st.cancelled.insert(id.to_owned());
                    st.cancel_log.push(id.to_owned());
                    st.listens.remove(id);
                    st.modern.remove(id);
                }
            }
            Some("notifications/initialized") | Some("notifications/roots/list_changed") => {}
            Some(other) => eprintln!("demo: notification {other} {p}"),
            None => {}
        }
    }

    fn request(&self, id: &str, m: &Message) {
        let method = m.method().unwrap_or("");
        let p = m.params().cloned().unwrap_or(json!({}));
        if method == "server/discover" && self.cfg.silent_discover {
            return;
        }
        if self.state.lock().unwrap().modern.contains(id) && self.modern_request(id, method, &p) {
            return;
        }
        match method {
            "initialize" => self.initialize(id, &p),
            "ping" => self.reply(id, json!({})),
            "logging/setLevel" => {
                self.state.lock().unwrap().log_level = p["level"].as_str().map(str::to_owned);
                self.reply(id, json!({}))
            }
            "tools/list" => self.reply(id, json!({"tools": tools()})),
            "tools/call" => self.call(id, m, &p),
            "resources/list" => self.reply(
                id,
                json!({"resources": [{"uri": "demo://greeting", "name": "greeting", "mimeType": "text/plain"}]}),
            ),
            "resources/templates/list" => self.reply(
                id,
                json!({"resourceTemplates": [{"uriTemplate": "demo://item/{n}", "name": "item"}]}),
            ),
            "resources/read" => {
                let uri = p["uri"].as_str().unwrap_or("");
                self.reply(id, json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("contents of {uri}")}]}))
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = p["uri"].as_str().unwrap_or("").to_owned();
                let mut st = self.state.lock().unwrap();
                if method == "resources/subscribe" {
                    st.subscriptions.insert(uri);
                } else {
                    st.subscriptions.remove(&uri);
                }
                drop(st);
                self.reply(id, json!({}))
            }
            "prompts/list" => self.reply(
                id,
                json!({"prompts": [{"name": "greet", "description": "Say hello", "arguments": [{"name": "name", "required": true}]}]}),
            ),
            "prompts/get" => {
                let name = p["arguments"]["name"].as_str().unwrap_or("world");
                self.reply(id, json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("Hello, {name}!")}}]}))
            }
            "completion/complete" => {
                let v = p["argument"]["value"].as_str().unwrap_or("");
                let values: Vec<String> = ["alpha", "beta", "gamma"].iter().filter(|s| s.starts_with(v)).map(|s| s.to_string()).collect();
                self.reply(id, json!({"completion": {"values": values, "hasMore": false}}))
            }
            _ => self.fail(id, jsonrpc::METHOD_NOT_FOUND, &format!("Method not found: {method}")),
        }
    }

    fn initialize(&self, id: &str, p: &Value) {
        {
            let mut st = self.state.lock().unwrap();
            st.initialize_count += 1;
            st.client_name = p["clientInfo"]["name"].as_str().map(str::to_owned);
        }
        if self.cfg.no_init {
            return;
        }
        thread::sleep(self.cfg.init_delay);
        let asked = p["protocolVersion"].as_str().unwrap_or("");
        let version = if VERSIONS.contains(&asked) {
            asked
        } else {
            VERSIONS[VERSIONS.len() - 1]
        };
        self.reply(
            id,
            json!({
                "protocolVersion": version,
                "capabilities": capabilities(),
                "serverInfo": {"name": self.cfg.name, "version": env!("CARGO_PKG_VERSION")},
                "instructions": INSTRUCTIONS
            }),
        );
    }

    fn call(&self, id: &str, m: &Message, p: &Value) {
        let args = &p["arguments"];
        let num = |k: &str, d: u64| args[k].as_u64().unwrap_or(d);
        let s = |k: &str| args[k].as_str().unwrap_or("").to_owned();
        match p["name"].as_str().unwrap_or("") {
            "echo" => self.text(id, s("text")),
            "add" => {
                let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
                self.reply(id, json!({"content": [{"type": "text", "text": sum.to_string()}], "structuredContent": {"sum": sum}}))
            }
            "slow" => {
                let ms = num("ms", 1000);
                for _ in 0..ms / 10 {
                    if self.is_cancelled(id) {
                        return; // a cancelled request gets no reply
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                if !self.is_cancelled(id) {
                    self.text(id, format!("slept {ms} ms"));
                }
            }
            "progress" => {
                let (steps, ms) = (num("steps", 3), num("ms", 10));
                if let Some(token) = m.get_raw(&["params", "_meta", "progressToken"]) {
                    for i in 1..=steps {
                        thread::sleep(Duration::from_millis(ms));
                        let line = format!(
                            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":{token},\"progress\":{i},\"total\":{steps},\"message\":\"step {i}\"}}}}"
                        );
                        self.send(Some(id), line);
                    }
                }
                self.text(id, format!("{steps} steps done"))
            }
            // `pad` bytes of padding make the request as large as a test
            // needs; `unrelated` sends it unrelated to this call;
            // `id_inside` puts its id at neither end.
            "sample" => match self.ask_with(
                (!args["unrelated"].as_bool().unwrap_or(false)).then_some(id),
                "sampling/createMessage",
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": s("prompt") + &"x".repeat(num("pad", 0) as usize)}}], "maxTokens": 100}),
                args["id_inside"].as_bool().unwrap_or(false),
            ) {
                Some(r) if !r.is_error() => {
                    let text = r.value()["result"]["content"]["text"].as_str().unwrap_or("").to_owned();
                    self.text(id, format!("sampled: {text}"))
                }
                Some(r) => self.text(id, format!("sampling failed: {}", r.value()["error"])),
                None => self.text(id, "sampling timed out"),
            },
            "elicit" => match self.ask(
                Some(id),
                "elicitation/create",
                json!({"message": s("message"), "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}),
            ) {
                Some(r) => self.text(id, format!("elicited: {}", r.value().get("result").unwrap_or(&r.value()["error"]))),
                None => self.text(id, "elicitation timed out"),
            },
            "roots" => match self.ask(Some(id), "roots/list", json!({})) {
                Some(r) => self.text(id, format!("roots: {}", r.value().get("result").unwrap_or(&r.value()["error"]))),
                None => self.text(id, "roots timed out"),
            },
            "log" => {
                let level = args["level"].as_str().unwrap_or("info");
                if self.cfg.strict {
                    let set = self.state.lock().unwrap().log_level.clone();
                    if level_rank(level) < level_rank(set.as_deref().unwrap_or("info")) {
                        return self.text(id, "below the log level");
                    }
                }
                let line = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "logger": "demo", "data": s("text") + &"x".repeat(num("pad", 0) as usize)}});
                self.send(Some(id), line.to_string());
                self.text(id, "logged")
            }
            "list_changed" => {
                self.send(None, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.into());
                self.text(id, "sent")
            }
            "touch" => {
                let uri = s("uri") + &"x".repeat(num("pad", 0) as usize);
                if self.cfg.strict && !self.state.lock().unwrap().subscriptions.contains(&uri) {
                    return self.text(id, "not subscribed");
                }
                let line = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
                self.send(None, line.to_string());
                self.text(id, "touched")
            }
            // `id_inside` puts the reply's id between its result and its
            // `jsonrpc`, at neither end.
            "big" if args["id_inside"].as_bool().unwrap_or(false) => {
                self.state.lock().unwrap().modern.remove(id);
                let text = json!("x".repeat(num("bytes", 1024) as usize));
                let line = format!(
                    r#"{{"result":{{"content":[{{"type":"text","text":{text}}}]}},"id":{id},"jsonrpc":"2.0"}}"#
                );
                self.send(Some(id), line);
            }
            "big" => self.text(id, "x".repeat(num("bytes", 1024) as usize)),
            "crash" => {
                eprintln!("demo: crashing as asked");
                std::process::exit(num("code", 3) as i32);
            }
            "noise" => {
                // Not JSON-RPC, on stdout: a well-behaved proxy logs and skips it.
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "this is not json");
                let _ = o.flush();
                drop(o);
                eprintln!("demo: noise on stderr");
                self.text(id, "noisy")
            }
            "stderr" => {
                for i in 0..num("lines", 1) {
                    eprintln!("demo: {} {i}", s("text"));
                }
                self.text(id, "written")
            }
            "whoami" => {
                let st = self.state.lock().unwrap();
                let mut subs: Vec<&String> = st.subscriptions.iter().collect();
                subs.sort();
                let v = json!({"clientName": st.client_name, "initializeCount": st.initialize_count, "name": self.cfg.name, "pid": std::process::id(), "logLevel": st.log_level, "subscriptions": subs, "methodsSeen": st.methods_seen});
                drop(st);
                self.text(id, v.to_string())
            }
            "cancelled" => {
                let log = self.state.lock().unwrap().cancel_log.clone();
                self.text(id, serde_json::to_string(&log).unwrap())
            }
            "image" => self.reply(
                id,
                json!({"content": [{"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="}]}),
            ),
            "fail" => self.reply(id, json!({"content": [{"type": "text", "text": s("text")}], "isError": true})),
            "error" => {
                let code = args["code"].as_i64().unwrap_or(jsonrpc::INTERNAL_ERROR);
                let data = args.get("data").filter(|d| !d.is_null());
                self.fail_with(id, code, &s("message"), data)
            }
            "notify_listeners" => {
                let n = self.notify_listeners(&s("kind"), &s("uri"));
                self.text(id, format!("notified {n}"))
            }
            "end_listens" => {
                let n = self.end_listens(args["abrupt"].as_bool().unwrap_or(false));
                self.text(id, format!("ended {n}"))
            }
            other => self.fail(id, jsonrpc::INVALID_PARAMS, &format!("Unknown tool: {other}")),
        }
    }
}

/// MCP log levels by verbosity, most verbose lowest; an unknown one counts
/// as the most severe.
fn level_rank(level: &str) -> usize {
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .unwrap_or(LOG_LEVELS.len())
}

fn tool(name: &str, description: &str, props: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": props}})
}

fn tools() -> Vec<Value> {
    let s = json!({"type": "string"});
    let n = json!({"type": "number"});
    vec![
        tool("echo", "Returns its text", json!({"text": s})),
        tool("add", "Adds a and b", json!({"a": n, "b": n})),
        tool(
            "slow",
            "Sleeps ms milliseconds (cancellable)",
            json!({"ms": n}),
        ),
        tool(
            "progress",
            "Sends steps progress notifications, ms apart",
            json!({"steps": n, "ms": n}),
        ),
        tool(
            "sample",
            "Asks the client to sample (sampling/createMessage): prompt, pad bytes of padding, unrelated to this call if unrelated, its id at neither end if id_inside",
            json!({"prompt": s, "pad": n, "unrelated": {"type": "boolean"}, "id_inside": {"type": "boolean"}}),
        ),
        tool(
            "elicit",
            "Asks the client for input (elicitation/create)",
            json!({"message": s}),
        ),
        tool(
            "roots",
            "Asks the client for its roots (roots/list)",
            json!({}),
        ),
        tool(
            "log",
            "Sends a log message notification (text and pad bytes of padding)",
            json!({"level": s, "text": s, "pad": n}),
        ),
        tool(
            "list_changed",
            "Sends notifications/tools/list_changed",
            json!({}),
        ),
        tool(
            "touch",
            "Sends notifications/resources/updated for uri (and pad bytes of padding)",
            json!({"uri": s, "pad": n}),
        ),
        tool(
            "big",
            "Returns a text of the given number of bytes, its id at neither end if id_inside",
            json!({"bytes": n, "id_inside": {"type": "boolean"}}),
        ),
        tool(
            "crash",
            "Exits at once with the given code",
            json!({"code": n}),
        ),
        tool(
            "noise",
            "Prints a non-JSON line on stdout and a line on stderr",
            json!({}),
        ),
        tool(
            "stderr",
            "Writes lines to stderr",
            json!({"text": s, "lines": n}),
        ),
        tool(
            "whoami",
            "Tells the client name from initialize, the initialize count and the pid",
            json!({}),
        ),
        tool(
            "cancelled",
            "Lists the request ids this server saw cancelled",
            json!({}),
        ),
        tool("image", "Returns a 1x1 PNG", json!({})),
        tool(
            "fail",
            "Returns an isError result with text",
            json!({"text": s}),
        ),
        tool(
            "error",
            "Answers with a JSON-RPC error: code, message, data",
            json!({"code": n, "message": s, "data": {}}),
        ),
        tool(
            "notify_listeners",
            "Sends a kind (tools, prompts, resources, updated with uri) notification to every subscriptions/listen that asked for it",
            json!({"kind": s, "uri": s}),
        ),
        tool(
            "end_listens",
            "Ends every subscriptions/listen with its final result, or if abrupt with notifications/cancelled",
            json!({"abrupt": {"type": "boolean"}}),
        ),
    ]
}

// ---- 2026-07-28 (modern) requests over stdio ----
//
// A request whose `params._meta` carries the modern protocol version is
// served statelessly next to the legacy session (the dual-era MAY of
// versioning.mdx): its result gets `resultType` and serverInfo in `_meta`
// (JR-08, LC-20); `server/discover` and `subscriptions/listen` exist only
// for it. `--legacy-only` turns all of this off.

/// The modern versions the demo serves.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// Whether a request carries the modern per-request envelope. `initialize`
/// never counts: the handshake does not exist at modern versions.
fn is_modern(m: &Message) -> bool {
    m.method() != Some("initialize")
        && m.params()
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get(META_VERSION))
            .is_some()
}

impl Session {
    fn server_info(&self) -> Value {
        json!({"name": self.cfg.name, "version": env!("CARGO_PKG_VERSION")})
    }

    /// Stamps a modern result: `resultType` unless the result has one, and
    /// serverInfo in `_meta`.
    fn modern_result(&self, result: &mut Value) {
        let Some(obj) = result.as_object_mut() else {
            return;
        };
        obj.entry("resultType").or_insert(json!("complete"));
        // List and read results are cacheable in 2026-07-28: they must say
        // for whom and how long.
        let cacheable = [
            "tools",
            "prompts",
            "resources",
            "resourceTemplates",
            "contents",
        ];
        if cacheable.iter().any(|k| obj.contains_key(*k)) {
            obj.entry("cacheScope").or_insert(json!("public"));
            obj.entry("ttlMs").or_insert(json!(0));
        }
        let meta = obj.entry("_meta").or_insert(json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(META_SERVER_INFO.into(), self.server_info());
        }
    }

    /// The modern-only parts of a request: the envelope checks (SX-21,
    /// SX-30), `server/discover` (LC-22) and `subscriptions/listen` (LC-80,
    /// LC-81). True when the request was answered (or is being served) here.
    fn modern_request(&self, id: &str, method: &str, p: &Value) -> bool {
        let meta = &p["_meta"];
        let version = meta[META_VERSION].as_str().unwrap_or("");
        if !MODERN_VERSIONS.contains(&version) {
            let data = json!({"supported": MODERN_VERSIONS, "requested": meta[META_VERSION]});
            self.fail_with(id, -32022, "Unsupported protocol version", Some(&data));
            return true;
        }
        if meta.get(META_CAPS).is_none() {
            self.fail(
                id,
                jsonrpc::INVALID_PARAMS,
                "params._meta is missing io.modelcontextprotocol/clientCapabilities",
            );
            return true;
        }
        match method {
            "server/discover" => {
                let mut versions: Vec<&str> = VERSIONS.to_vec();
                versions.extend_from_slice(MODERN_VERSIONS);
                self.reply(
                    id,
                    json!({
                        "supportedVersions": versions,
                        "capabilities": capabilities(),
                        "instructions": INSTRUCTIONS,
                        "cacheScope": "public",
                        "ttlMs": 0
                    }),
                );
                true
            }
            "subscriptions/listen" => {
                let asked = &p["notifications"];
                let mut agreed = serde_json::Map::new();
                for k in [
                    "toolsListChanged",
                    "promptsListChanged",
                    "resourcesListChanged",
                ] {
                    if asked[k].as_bool() == Some(true) {
                        agreed.insert(k.into(), json!(true));
                    }
                }
                if let Some(uris) = asked["resourceSubscriptions"].as_array() {
                    agreed.insert("resourceSubscriptions".into(), json!(uris));
                }
                let agreed = Value::Object(agreed);
                let mut st = self.state.lock().unwrap();
                st.listens.insert(id.to_owned(), agreed.clone());
                // The acknowledgement goes out before any notification of
                // the subscription can (LC-81): both under the lock.
                let ack = format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{{\"_meta\":{{\"{META_SUBSCRIPTION}\":{id}}},\"notifications\":{agreed}}}}}"
                );
                self.send(Some(id), ack);
                true
            }
            _ => false,
        }
    }

    /// Sends a `kind` notification (tools, prompts, resources: list_changed;
    /// updated: resources/updated for `uri`) to every listen that agreed to
    /// it, tagged with its subscription id (LC-82). Returns how many.
    fn notify_listeners(&self, kind: &str, uri: &str) -> usize {
        let st = self.state.lock().unwrap();
        let mut n = 0;
        for (id, agreed) in &st.listens {
            let (wanted, method, params) = match kind {
                "updated" => (
                    agreed["resourceSubscriptions"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|u| u == uri)),
                    "notifications/resources/updated".to_owned(),
                    format!(",\"uri\":{}", jsonrpc::quote(uri)),
                ),
                k => (
                    agreed[format!("{k}ListChanged")].as_bool() == Some(true),
                    format!("notifications/{k}/list_changed"),
                    String::new(),
                ),
            };
            if wanted {
                n += 1;
                self.send(
                    Some(id),
                    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{method}\",\"params\":{{\"_meta\":{{\"{META_SUBSCRIPTION}\":{id}}}{params}}}}}"),
                );
            }
        }
        n
    }

    /// Ends every listen: gracefully, with a final result naming the
    /// subscription (LC-83), or with `abrupt` by tearing it down with
    /// `notifications/cancelled` (LC-42). Returns how many.
    fn end_listens(&self, abrupt: bool) -> usize {
        let ids: Vec<String> = {
            let mut st = self.state.lock().unwrap();
            let ids: Vec<String> = st.listens.drain().map(|(id, _)| id).collect();
            for id in &ids {
                st.modern.remove(id);
            }
            ids
        };
        for id in &ids {
            let sub: Value = serde_json::from_str(id).expect("a raw id is JSON");
            if abrupt {
                let line = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": sub, "reason": "the server ends the subscription"}});
                self.send(Some(id), line.to_string());
            } else {
                let mut result = json!({"_meta": {META_SUBSCRIPTION: sub}});
                self.modern_result(&mut result);
                self.send(Some(id), jsonrpc::result_reply(id, &result.to_string()));
            }
        }
        ids.len()
    }
}

/// The tool list a 2026-07-28 request sees over HTTP: every tool, plus two
/// with `x-mcp-header` annotations (SX-26). `mirror` echoes its arguments
/// and mirrors `region` (as `Region`, or `Zone` once `renamed`, to make a
/// cached schema stale), `count` and `flag`; `bad_header` puts one on a
/// `number`, which clients must drop.
pub fn modern_tools(renamed: bool) -> Vec<Value> {
    let region = if renamed { "Zone" } else { "Region" };
    let mut t = tools();
    t.push(tool(
        "mirror",
        "Returns its arguments; region, count and flag are mirrored in headers",
        json!({
            "region": {"type": "string", "x-mcp-header": region},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "flag": {"type": "boolean", "x-mcp-header": "Flag"},
            "note": {"type": "string"}
        }),
    ));
    t.push(tool(
        "bad_header",
        "An x-mcp-header on a number, which SX-26 forbids",
        json!({"x": {"type": "number", "x-mcp-header": "X"}}),
    ));
    t
}

/// What the demo offers, the same in `initialize` and `server/discover`.
fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {}
    })
}

const INSTRUCTIONS: &str = "A demo server: echo, add, slow, progress and more.";
