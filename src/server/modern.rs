//! MCP 2026-07-28 ("modern", stateless) requests on the Streamable HTTP
//! endpoint: how a POST is recognised as modern, and what is checked before
//! it reaches the child (TRANSPORTS.md §5, RL-09).
//!
//! Pure functions over the headers and the parsed body; no threads. The
//! exchange itself runs in streamable.rs and the router (one ephemeral
//! session per POST, `Transport::Modern`).
//!
//! Dual-era rule (§0): a request whose `params._meta` carries
//! `io.modelcontextprotocol/protocolVersion`, or a POST whose
//! `MCP-Protocol-Version` names a modern version, is served statelessly.
//! `initialize` always selects the legacy era. An `Mcp-Session-Id` on a
//! modern request is ignored (SX-40): the request is served without
//! touching that session, and no session id is ever minted or echoed.

use crate::jsonrpc::{self, Kind, Message};
use serde_json::{json, Value};

/// Modern protocol versions the proxy relays (newest last).
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The 2026-07-28 error codes (JR-10).
pub const HEADER_MISMATCH: i64 = -32020;
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// Methods whose `Mcp-Name` header mirrors a body parameter (SX-24).
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Whether a message carries the modern per-request `_meta` version key.
pub fn has_envelope(m: &Message) -> bool {
    m.params()
        .and_then(|p| p.get("_meta"))
        .and_then(|meta| meta.get(META_PROTOCOL_VERSION))
        .is_some()
}

/// Whether a POST belongs to the modern era: its header names a modern
/// version, or one of its messages carries the modern envelope. A legacy
/// `initialize` never does, even with the envelope stamped on it (the
/// handshake does not exist at modern versions).
pub fn is_modern(header_version: Option<&str>, msgs: &[Message], batch: bool) -> bool {
    if !batch && msgs.len() == 1 && msgs[0].method() == Some("initialize") {
        return false;
    }
    header_version.is_some_and(|v| MODERN_VERSIONS.contains(&v)) || msgs.iter().any(has_envelope)
}

/// A refusal: HTTP status and JSON-RPC error body.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

fn refuse(id: Option<&str>, code: i64, msg: &str, data: Option<&Value>) -> Refusal {
    // Every check the proxy makes itself is a malformed request: 400
    // (SX-20, SX-21, SX-27, SX-30).
    let id = Some(id.unwrap_or("null"));
    Refusal {
        status: 400,
        body: jsonrpc::error_reply(id, code, msg, data),
    }
}

/// What the checks found: a request to relay, or a notification to accept.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Request {
        version: String,
    },
    /// Accepted with 202 and not relayed: no client notification is defined
    /// for modern HTTP (SX-05; a cancel is closing the stream, SX-10).
    Notification,
}

/// The request headers the checks read, by lowercase name, each with the
/// number of times it appeared.
pub struct Headers<'a> {
    pub protocol_version: (Option<&'a str>, usize),
    pub method: (Option<&'a str>, usize),
    pub name: (Option<&'a str>, usize),
}

/// Checks a modern POST body and its mirrored headers, in the order the
/// Python SDK 2.3 uses (first failure wins): the body shape (SX-04), the
/// `_meta` envelope (SX-30, -32602), the headers against the body (SX-20,
/// SX-24, SX-25, SX-27, -32020), then the version (SX-21, -32022). Every
/// error carries the request id when it could be read (SX-32).
pub fn check(h: &Headers, msgs: &[Message], batch: bool) -> Result<Verdict, Refusal> {
    if batch || msgs.len() != 1 {
        return Err(refuse(
            None,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: a 2026-07-28 body is a single JSON-RPC request or notification, never a batch",
            None,
        ));
    }
    let m = &msgs[0];
    let id = m.id();
    match m.kind() {
        Kind::Response => {
            return Err(refuse(
                None,
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: a 2026-07-28 client does not send responses (SX-04)",
                None,
            ))
        }
        Kind::Notification => {
            // Header rules for notification POSTs are undefined; only the
            // version that routed it here is checked (as the Python SDK does).
            return match h.protocol_version.0 {
                Some(v) if !MODERN_VERSIONS.contains(&v) => Err(unsupported(None, v)),
                _ => Ok(Verdict::Notification),
            };
        }
        Kind::Request => {}
    }
    let meta = m.params().and_then(|p| p.get("_meta"));
    let Some(meta) = meta.filter(|v| v.is_object()) else {
        return Err(refuse(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!("Invalid params: params._meta must be an object carrying {META_PROTOCOL_VERSION:?} and {META_CLIENT_CAPABILITIES:?}"),
            None,
        ));
    };
    let missing: Vec<&str> = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| meta.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(refuse(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!(
                "Invalid params: params._meta is missing {}",
                missing.join(" and ")
            ),
            None,
        ));
    }
    for (name, (_, count)) in [
        ("MCP-Protocol-Version", h.protocol_version),
        ("Mcp-Method", h.method),
        ("Mcp-Name", h.name),
    ] {
        if count > 1 {
            return Err(refuse(
                id,
                HEADER_MISMATCH,
                &format!("Header mismatch: the {name} header appears more than once"),
                None,
            ));
        }
    }
    let version = &meta[META_PROTOCOL_VERSION];
    let mismatch = |what: &str| {
        Err(refuse(
            id,
            HEADER_MISMATCH,
            &format!("Header mismatch: {what}"),
            None,
        ))
    };
    match h.protocol_version.0 {
        None => return mismatch("the MCP-Protocol-Version header is missing (SX-20)"),
        Some(v) if version.as_str() != Some(v) => {
            return mismatch(
                "the MCP-Protocol-Version header does not equal params._meta's protocolVersion",
            )
        }
        _ => {}
    }
    let method = m.method().unwrap_or("");
    match h.method.0 {
        None => return mismatch("the Mcp-Method header is missing (SX-24)"),
        Some(v) if decode_value(v).as_deref() != Some(method) => {
            return mismatch("the Mcp-Method header does not equal the body's method")
        }
        _ => {}
    }
    if let Some(key) = name_param(method) {
        let body = m.params().and_then(|p| p.get(key)).and_then(Value::as_str);
        if let Some(body) = body {
            match h.name.0 {
                None => {
                    return mismatch(&format!(
                        "the Mcp-Name header is missing; {method} needs it (SX-24)"
                    ))
                }
                Some(v) if decode_value(v).as_deref() != Some(body) => {
                    return mismatch(&format!("the Mcp-Name header does not equal params.{key}"))
                }
                _ => {}
            }
        }
    }
    let Some(version) = version.as_str() else {
        return Err(refuse(
            id,
            jsonrpc::INVALID_PARAMS,
            "Invalid params: the protocolVersion in params._meta must be a string",
            None,
        ));
    };
    if !MODERN_VERSIONS.contains(&version) {
        return Err(unsupported(id, version));
    }
    Ok(Verdict::Request {
        version: version.to_owned(),
    })
}

fn unsupported(id: Option<&str>, requested: &str) -> Refusal {
    let data = json!({"supported": MODERN_VERSIONS, "requested": requested});
    refuse(
        id,
        UNSUPPORTED_VERSION,
        &format!(
            "Unsupported protocol version: {requested} (supported: {})",
            MODERN_VERSIONS.join(", ")
        ),
        Some(&data),
    )
}

/// The HTTP status for a JSON-RPC error code on a modern exchange (RL-09,
/// §8): an unknown method is 404, the modern request errors and a missing
/// `_meta` (which the proxy checks itself) 400, anything else 200.
pub fn status_for_code(code: i64) -> u16 {
    match code {
        jsonrpc::METHOD_NOT_FOUND => 404,
        HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY | UNSUPPORTED_VERSION => 400,
        jsonrpc::INVALID_REQUEST | jsonrpc::PARSE_ERROR => 400,
        _ => 200,
    }
}

/// The HTTP status for a response line sent as the whole reply.
pub fn status_for_response(line: &str) -> u16 {
    if !line.contains("\"error\"") {
        return 200;
    }
    jsonrpc::locate(line, &["error", "code"])
        .and_then(|r| line[r].parse::<i64>().ok())
        .map_or(200, status_for_code)
}

/// A header value with the SX-25 sentinel `=?base64?...?=` decoded; `None`
/// when the sentinel holds invalid base64 or UTF-8 (which then matches
/// nothing). Plain values are returned as they are.
pub fn decode_value(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => String::from_utf8(base64_decode(b64)?).ok(),
        None => Some(v.to_owned()),
    }
}

/// Standard base64 (RFC 4648 §4), padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone sixth of a byte left over is not base64.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(s).expect("valid message")
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"échο","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

    fn hdrs<'a>(v: Option<&'a str>, m: Option<&'a str>, n: Option<&'a str>) -> Headers<'a> {
        Headers {
            protocol_version: (v, usize::from(v.is_some())),
            method: (m, usize::from(m.is_some())),
            name: (n, usize::from(n.is_some())),
        }
    }

    #[test]
    fn base64_sentinels_decode_and_bad_ones_match_nothing() {
        assert_eq!(decode_value("=?base64?w6ljaM6/?=").as_deref(), Some("échο"));
        assert_eq!(decode_value("plain").as_deref(), Some("plain"));
        assert_eq!(decode_value("=?base64?aGk=?=").as_deref(), Some("hi"));
        assert_eq!(decode_value("=?base64?a?="), None);
        assert_eq!(decode_value("=?base64?*?="), None);
        // Markers are case-sensitive: this is a plain value.
        assert_eq!(
            decode_value("=?BASE64?aGk=?=").as_deref(),
            Some("=?BASE64?aGk=?=")
        );
    }

    #[test]
    fn sx20_sx24_sx30_checks_in_order_with_the_request_id() {
        let m = [msg(CALL)];
        let name = Some("=?base64?w6ljaM6/?=");
        let ok = check(
            &hdrs(Some("2026-07-28"), Some("tools/call"), name),
            &m,
            false,
        );
        assert!(matches!(ok, Ok(Verdict::Request { .. })), "{ok:?}");
        let code = |h: Headers| {
            let r = check(&h, &m, false).expect_err("refused");
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["id"], "a", "SX-32: {}", r.body);
            (r.status, v["error"]["code"].as_i64().unwrap())
        };
        assert_eq!(
            code(hdrs(None, Some("tools/call"), name)),
            (400, HEADER_MISMATCH)
        );
        assert_eq!(
            code(hdrs(Some("2026-07-28"), Some("tools/list"), name)),
            (400, HEADER_MISMATCH)
        );
        assert_eq!(
            code(hdrs(Some("2026-07-28"), Some("tools/call"), Some("echo"))),
            (400, HEADER_MISMATCH)
        );
        assert_eq!(
            code(hdrs(Some("2026-07-28"), Some("tools/call"), None)),
            (400, HEADER_MISMATCH)
        );
        let mut twice = hdrs(Some("2026-07-28"), Some("tools/call"), name);
        twice.method.1 = 2;
        assert_eq!(code(twice), (400, HEADER_MISMATCH));
        let m = [msg(&CALL.replace("2026-07-28", "2099-01-01"))];
        let r = check(
            &hdrs(Some("2099-01-01"), Some("tools/call"), name),
            &m,
            false,
        )
        .unwrap_err();
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(v["error"]["code"], UNSUPPORTED_VERSION);
        assert_eq!(
            v["error"]["data"],
            json!({"supported": ["2026-07-28"], "requested": "2099-01-01"})
        );
        let m = [msg(&CALL.replace(
            ",\"io.modelcontextprotocol/clientCapabilities\":{}",
            "",
        ))];
        let r = check(
            &hdrs(Some("2026-07-28"), Some("tools/call"), name),
            &m,
            false,
        )
        .unwrap_err();
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains("-32602") && r.body.contains("clientCapabilities"),
            "{}",
            r.body
        );
    }

    #[test]
    fn eras_are_told_apart_by_envelope_or_header() {
        let legacy = [msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)];
        assert!(!is_modern(Some("2025-06-18"), &legacy, false));
        assert!(!is_modern(None, &legacy, false));
        assert!(is_modern(Some("2026-07-28"), &legacy, false));
        assert!(is_modern(None, &[msg(CALL)], false));
        let init = [msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )];
        assert!(!is_modern(Some("2026-07-28"), &init, false));
    }

    #[test]
    fn rl09_status_for_child_errors() {
        let e = |c: i64| jsonrpc::error_reply(Some("1"), c, "x", None);
        assert_eq!(status_for_response(&e(-32601)), 404);
        assert_eq!(status_for_response(&e(-32020)), 400);
        assert_eq!(status_for_response(&e(-32021)), 400);
        assert_eq!(status_for_response(&e(-32022)), 400);
        assert_eq!(status_for_response(&e(-32603)), 200);
        assert_eq!(
            status_for_response(r#"{"jsonrpc":"2.0","id":1,"result":{"error":1}}"#),
            200
        );
    }
}

/// What client mode sends (client/modern.rs `encode`) is what server mode
/// reads back (`decode_value`), for any string: both halves of SX-25 in
/// this one binary must agree, or a proxy chain would refuse its own
/// requests as HeaderMismatch.
#[cfg(test)]
mod roundtrip {
    use super::decode_value;
    use crate::client::modern::encode;

    #[test]
    fn every_encoded_value_decodes_to_itself() {
        let mut cases: Vec<String> = [
            "",
            " ",
            "plain",
            "with inner spaces",
            " leading",
            "trailing ",
            "tab\there",
            "line\nbreak",
            "\u{7f}",
            "é",
            "日本語",
            "emoji 🦀",
            "=?base64?",
            "=?base64?aGk=?=",
            "?=",
            "=?base64??=",
            "\0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Deterministic pseudo-random strings over a mix of ASCII, control
        // characters, the sentinel's own characters and multi-byte ones.
        let alphabet: Vec<char> = "ab =?+/\t\r\n\u{1}\u{7f}é日🦀base64".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 48)) as usize + i * 7) % alphabet.len()])
                .collect();
            cases.push(s);
        }
        for v in cases {
            let e = encode(&v);
            assert!(
                e.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{v:?} encodes to a value that is not plain ASCII: {e:?}"
            );
            assert_eq!(
                decode_value(&e).as_deref(),
                Some(v.as_str()),
                "{v:?} via {e:?}"
            );
        }
    }
}
