//! The pure side of 2026-07-28 ("modern", stateless) requests in client
//! mode (TRANSPORTS §5.1, RL-10): which stdin requests are modern, the
//! request-metadata headers each POST carries (SX-20, SX-24, SX-25), and the
//! `x-mcp-header` annotations of the remote's tools (SX-26), learnt from the
//! `tools/list` results relayed to the local client and from the proxy's
//! own re-fetch of every page after a HeaderMismatch ([`Listing`]).
//!
//! No threads; the router calls these and runs the exchanges
//! (streamable.rs `spawn_modern`).

use super::http::base64;
use crate::jsonrpc::{self, Message};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The `_meta` key naming a modern request's protocol version (LC-20).
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Revisions with an `initialize` handshake: a request naming one of these
/// is not modern, whatever its `_meta` says.
const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Standard header carrying `params.name` or `params.uri` (SX-24).
const NAME_OF: [(&str, &str); 3] = [
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
];

/// Per tool name: the `properties` path of each annotated argument and its
/// header token (`Mcp-Param-<token>`).
pub type Tools = HashMap<String, Vec<(Vec<String>, String)>>;

/// The modern protocol version a message names in its `_meta`, if any.
pub fn version_of(m: &Message) -> Option<&str> {
    let v = m.params()?.get("_meta")?.get(META_VERSION)?.as_str()?;
    (!LEGACY_VERSIONS.contains(&v)).then_some(v)
}

/// A header value as SX-25 has it: plain when it is visible ASCII (and
/// spaces) with no white space at either end and does not look like the
/// sentinel, else `=?base64?…?=` of its UTF-8.
pub fn encode(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !(v.starts_with("=?base64?") && v.ends_with("?="));
    if plain {
        v.to_owned()
    } else {
        format!("=?base64?{}?=", base64(v.as_bytes()))
    }
}

/// The request-metadata headers of one modern request (RL-10):
/// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` where the method has
/// one, and `Mcp-Param-*` mirrored from a `tools/call`'s arguments.
pub fn headers(m: &Message, version: &str, tools: &Tools) -> Vec<(String, String)> {
    let method = m.method().unwrap_or("");
    let p = &m.value()["params"];
    let mut h = vec![
        ("MCP-Protocol-Version".to_owned(), encode(version)),
        ("Mcp-Method".to_owned(), encode(method)),
    ];
    if let Some((_, key)) = NAME_OF.iter().find(|(m, _)| *m == method) {
        if let Some(name) = p[key].as_str() {
            h.push(("Mcp-Name".to_owned(), encode(name)));
        }
    }
    if method != "tools/call" {
        return h;
    }
    let Some(annotated) = p["name"].as_str().and_then(|n| tools.get(n)) else {
        return h;
    };
    for (path, token) in annotated {
        let v = path.iter().try_fold(&p["arguments"], |v, k| v.get(k));
        // Strings as they are, integers in decimal, booleans as words;
        // absent, null and anything else: no header (SX-26).
        let text = match v {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        h.push((format!("Mcp-Param-{token}"), encode(&text)));
    }
    h
}

/// Schema keywords whose values are subschemas (JSON Schema 2020-12
/// applicators): one, a list, or a map of them. Anything under these is off
/// the `properties` chain, where SX-26 forbids annotations; data keywords
/// (`default`, `const`, …) are not entered.
const ONE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
const MANY: [&str; 8] = [
    "allOf",
    "anyOf",
    "oneOf",
    "prefixItems",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// The `x-mcp-header` annotations of one `inputSchema`, or why they break
/// a rule of SX-26 (the tool is then dropped).
pub fn annotations(schema: &Value) -> Result<Vec<(Vec<String>, String)>, String> {
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    let mut stack: Vec<(Option<Vec<String>>, &Value)> = vec![(Some(Vec::new()), schema)];
    while let Some((path, node)) = stack.pop() {
        let Some(obj) = node.as_object() else {
            continue;
        };
        if let Some(token) = obj.get("x-mcp-header") {
            let path = match &path {
                Some(p) if !p.is_empty() => p.clone(),
                _ => {
                    return Err(
                        "an x-mcp-header not reached from the root through properties alone".into(),
                    )
                }
            };
            let at = path.join(".");
            let token = token
                .as_str()
                .filter(|t| !t.is_empty() && t.bytes().all(is_tchar))
                .ok_or_else(|| format!("the x-mcp-header of {at} is not an RFC 9110 token"))?;
            match obj.get("type").and_then(Value::as_str) {
                Some("string" | "integer" | "boolean") => {}
                _ => return Err(format!("the x-mcp-header of {at} is on a property that is not of type string, integer or boolean")),
            }
            if out.iter().any(|(_, t)| t.eq_ignore_ascii_case(token)) {
                return Err(format!(
                    "the x-mcp-header {token:?} of {at} is used twice (names are case-insensitive)"
                ));
            }
            out.push((path.clone(), token.to_owned()));
        }
        for (k, v) in obj {
            if k == "properties" {
                for (name, sub) in v.as_object().into_iter().flatten() {
                    let p = path.clone().map(|mut p| {
                        p.push(name.clone());
                        p
                    });
                    stack.push((p, sub));
                }
            } else if ONE.contains(&k.as_str()) {
                stack.push((None, v));
            } else if MANY.contains(&k.as_str()) {
                match v {
                    Value::Array(a) => stack.extend(a.iter().map(|s| (None, s))),
                    Value::Object(o) => stack.extend(o.values().map(|s| (None, s))),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Learns the annotations of the tools in a `tools/list` response (a first
/// page replaces what was known) and returns its text without the tools
/// whose annotations are invalid (SX-26), each dropped with a warning. The
/// text is the original, byte for byte, when nothing is dropped.
pub fn learn_tools(tools: &mut Tools, reply: Message, first_page: bool) -> String {
    let Some(list) = reply.value()["result"]["tools"].as_array() else {
        return reply.into_raw();
    };
    if first_page {
        tools.clear();
    }
    let mut keep = Vec::with_capacity(list.len());
    for t in list {
        let name = t["name"].as_str().unwrap_or("");
        match annotations(&t["inputSchema"]) {
            Ok(a) => {
                keep.push(true);
                if a.is_empty() {
                    tools.remove(name);
                } else {
                    tools.insert(name.to_owned(), a);
                }
            }
            Err(why) => {
                log::warn!("dropping tool {name:?} from tools/list: {why} (SX-26)");
                keep.push(false);
                tools.remove(name);
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return reply.into_raw();
    }
    let rewritten = reply.get_raw(&["result", "tools"]).and_then(|arr| {
        let items = jsonrpc::array_elements(arr)?;
        let kept: Vec<&str> = items
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| &arr[r])
            .collect();
        reply.replace_raw(&["result", "tools"], &format!("[{}]", kept.join(",")))
    });
    rewritten.expect("a parsed tools array can be located and split")
}

/// The `nextCursor` of a `tools/list` result, as raw JSON, when it names a
/// next page (a string; anything else ends the listing).
pub fn next_cursor(reply: &Message) -> Option<&str> {
    reply.value()["result"]["nextCursor"]
        .is_string()
        .then(|| reply.get_raw(&["result", "nextCursor"]))
        .flatten()
}

/// What the pages of one `tools/list` re-fetch have taught so far, kept
/// apart from the schemas in use until the listing ends, so that a listing
/// the local client reads at the same time cannot mix into it.
#[derive(Default)]
pub struct Listing {
    tools: Tools,
    /// Every tool a page named, dropped or without annotations included.
    listed: HashSet<String>,
}

impl Listing {
    /// Learns one page; false when it is not a `tools/list` result.
    pub fn add_page(&mut self, reply: Message) -> bool {
        let Some(list) = reply.value()["result"]["tools"].as_array() else {
            return false;
        };
        let names = list.iter().filter_map(|t| t["name"].as_str());
        self.listed.extend(names.map(str::to_owned));
        learn_tools(&mut self.tools, reply, false);
        true
    }

    /// Puts what was learnt in use. A `complete` listing (every page read)
    /// replaces the schemas, so tools the remote no longer lists go; a
    /// partial one updates only the tools it named, the rest stay as known.
    pub fn apply(mut self, tools: &mut Tools, complete: bool) {
        if complete {
            *tools = self.tools;
            return;
        }
        for name in self.listed {
            match self.tools.remove(&name) {
                Some(a) => tools.insert(name, a),
                None => tools.remove(&name),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sx25_values_are_plain_or_base64() {
        assert_eq!(encode("tools/call"), "tools/call");
        assert_eq!(encode("a b"), "a b");
        for (v, want) in [
            (" lead", "=?base64?IGxlYWQ=?="),
            ("trail ", "=?base64?dHJhaWwg?="),
            ("é", "=?base64?w6k=?="),
            ("a\nb", "=?base64?YQpi?="),
            ("=?base64?abc?=", "=?base64?PT9iYXNlNjQ/YWJjPz0=?="),
        ] {
            assert_eq!(encode(v), want, "{v:?}");
        }
    }

    #[test]
    fn only_modern_versions_make_a_request_modern() {
        let m = |v: &str| {
            Message::ours(
                json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{META_VERSION: v}}})
                    .to_string(),
            )
        };
        assert_eq!(version_of(&m("2026-07-28")), Some("2026-07-28"));
        assert_eq!(version_of(&m("2025-11-25")), None);
        let plain = Message::ours(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into());
        assert_eq!(version_of(&plain), None);
    }

    #[test]
    fn sx26_annotation_rules() {
        let ok = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "list":{"type":"array","items":{"type":"object","properties":{"x":{"type":"string"}}}}}});
        let mut a = annotations(&ok).unwrap();
        a.sort();
        assert_eq!(
            a,
            vec![
                (vec!["opts".into(), "n".into()], "N".into()),
                (vec!["region".into()], "Region".into())
            ]
        );
        let bad = [
            json!({"properties":{"x":{"type":"number","x-mcp-header":"X"}}}),
            json!({"properties":{"x":{"type":"string","x-mcp-header":"a b"}}}),
            json!({"properties":{"x":{"type":"string","x-mcp-header":""}}}),
            json!({"properties":{"x":{"type":"string","x-mcp-header":"X"},"y":{"type":"string","x-mcp-header":"x"}}}),
            json!({"properties":{"x":{"type":"array","items":{"type":"string","x-mcp-header":"X"}}}}),
            json!({"anyOf":[{"properties":{"x":{"type":"string","x-mcp-header":"X"}}}]}),
            json!({"type":"string","x-mcp-header":"Root"}),
        ];
        for b in bad {
            assert!(annotations(&b).is_err(), "{b}");
        }
        // Data keywords are not schemas.
        let data = json!({"properties":{"x":{"type":"object","default":{"x-mcp-header":"no"}}}});
        assert_eq!(annotations(&data).unwrap(), vec![]);
    }

    fn page(tools: Value, next: Value) -> Message {
        let mut r = json!({"jsonrpc":"2.0","id":"p","result":{"tools":tools}});
        if !next.is_null() {
            r["result"]["nextCursor"] = next;
        }
        Message::ours(r.to_string())
    }

    fn annotated(name: &str, token: &str) -> Value {
        json!({"name":name,"inputSchema":{"type":"object","properties":{
            "v":{"type":"string","x-mcp-header":token}}}})
    }

    #[test]
    fn next_cursor_is_a_string_sent_back_as_it_came() {
        let m = page(json!([]), json!("a \"b\" «c»"));
        assert_eq!(next_cursor(&m), Some(r#""a \"b\" «c»""#));
        assert_eq!(next_cursor(&page(json!([]), Value::Null)), None);
        assert_eq!(next_cursor(&page(json!([]), json!(3))), None);
    }

    #[test]
    fn a_complete_relisting_replaces_the_schemas_a_partial_one_updates() {
        let known = || {
            let mut t = Tools::new();
            t.insert("gone".into(), vec![(vec!["v".into()], "G".into())]);
            t.insert("mirror".into(), vec![(vec!["v".into()], "Region".into())]);
            t.insert("plain".into(), vec![(vec!["v".into()], "P".into())]);
            t
        };
        let pages = || {
            let mut l = Listing::default();
            assert!(l.add_page(page(
                json!([{"name":"plain","inputSchema":{"type":"object"}}]),
                json!("c")
            )));
            assert!(l.add_page(page(json!([annotated("mirror", "Zone")]), Value::Null)));
            assert!(!l.add_page(Message::ours(
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into()
            )));
            l
        };
        let zone = vec![(vec!["v".to_owned()], "Zone".to_owned())];
        let mut tools = known();
        pages().apply(&mut tools, true);
        assert_eq!(tools, Tools::from([("mirror".to_owned(), zone.clone())]));
        // Cut short: tools the pages named are updated, the rest stay.
        let mut tools = known();
        pages().apply(&mut tools, false);
        assert_eq!(tools.get("mirror"), Some(&zone));
        assert!(!tools.contains_key("plain"), "{tools:?}");
        assert!(tools.contains_key("gone"), "{tools:?}");
    }

    #[test]
    fn params_are_mirrored_as_typed_values() {
        let mut tools = Tools::new();
        let list = Message::ours(json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"t","inputSchema":{"type":"object","properties":{
                "s":{"type":"string","x-mcp-header":"S"},
                "i":{"type":"integer","x-mcp-header":"I"},
                "b":{"type":"boolean","x-mcp-header":"B"},
                "z":{"type":"string","x-mcp-header":"Z"}}}},
            {"name":"bad","inputSchema":{"properties":{"f":{"type":"number","x-mcp-header":"F"}}}}]}}).to_string());
        let out = learn_tools(&mut tools, list, true);
        assert!(
            out.contains(r#""name":"t""#) && !out.contains("bad"),
            "{out}"
        );
        let call = Message::ours(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"s":" x","i":42,"b":false,"z":null},"_meta":{META_VERSION:"2026-07-28"}}}).to_string());
        let h = headers(&call, "2026-07-28", &tools);
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MCP-Protocol-Version"), Some("2026-07-28"));
        assert_eq!(get("Mcp-Method"), Some("tools/call"));
        assert_eq!(get("Mcp-Name"), Some("t"));
        assert_eq!(get("Mcp-Param-S"), Some("=?base64?IHg=?="));
        assert_eq!(get("Mcp-Param-I"), Some("42"));
        assert_eq!(get("Mcp-Param-B"), Some("false"));
        assert_eq!(get("Mcp-Param-Z"), None);
    }
}
