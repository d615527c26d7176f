//! 2026-07-28 ("modern") requests as a client of that version sends them:
//! the `_meta` envelope in the body and the headers that mirror it.

use super::{send, write_request, Conn};
use serde_json::{json, Value};
use std::net::TcpStream;

pub const V: &str = "2026-07-28";

/// A modern request: `params` with the `_meta` envelope added (LC-20).
pub fn modern(id: Value, method: &str, mut params: Value) -> Value {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"}
    });
    match params.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(m) => {
            for (k, v) in meta.as_object().unwrap() {
                m.entry(k.clone()).or_insert(v.clone());
            }
        }
        None => params["_meta"] = meta,
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn modern_call(id: Value, tool: &str, args: Value) -> Value {
    modern(id, "tools/call", json!({"name": tool, "arguments": args}))
}

/// The headers a 2026-07-28 client sends for `body` (SX-03, SX-20, SX-24).
pub fn headers_for(body: &Value) -> Vec<(String, String)> {
    let method = body["method"].as_str().unwrap_or("").to_owned();
    let mut h = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (
            "Accept".to_owned(),
            "application/json, text/event-stream".to_owned(),
        ),
        ("MCP-Protocol-Version".to_owned(), V.to_owned()),
        ("Mcp-Method".to_owned(), method.clone()),
    ];
    let name = match method.as_str() {
        "tools/call" | "prompts/get" => body["params"]["name"].as_str(),
        "resources/read" => body["params"]["uri"].as_str(),
        _ => None,
    };
    if let Some(n) = name {
        h.push(("Mcp-Name".to_owned(), n.to_owned()));
    }
    h
}

pub fn post_raw(url: &str, h: &[(String, String)], body: &str) -> Conn {
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    send("POST", url, &h, Some(body.as_bytes()))
}

/// POSTs `body` with its standard headers, `edit` applied to them first.
pub fn post_edit(url: &str, body: &Value, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Conn {
    let mut h = headers_for(body);
    edit(&mut h);
    post_raw(url, &h, &body.to_string())
}

pub fn post(url: &str, body: &Value) -> Conn {
    post_edit(url, body, |_| {})
}

/// [`post`] without waiting for the answer: the socket to read it from
/// (with [`read_head`]), for a request whose reply comes late.
pub fn post_only(url: &str, body: &Value) -> TcpStream {
    let h = headers_for(body);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    write_request("POST", url, &h, Some(body.to_string().as_bytes()))
}

pub fn set(h: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        h.push((name.to_owned(), v.to_owned()));
    }
}
