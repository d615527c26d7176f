//! JSON-RPC 2.0 messages as MCP uses them, honest about what a relay needs.
//!
//! A [`Message`] keeps the exact text it arrived as (`raw`) next to a parsed
//! [`Value`] used only to classify it. We forward `raw`, never a re-serialised
//! `Value`: serde_json would reorder keys and may round large numbers. When an
//! id or a progress token must change, [`Message::replace`] rewrites just that
//! span of text, so everything else stays byte-for-byte as the peer sent it.
//!
//! Ids are kept as their raw JSON text (`"7"` and `7` stay different ids, a
//! 30-digit integer stays exact), as TRANSPORTS.md JR-03/JR-11 require.

use serde_json::Value;
use std::fmt;
use std::ops::Range;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// What a well-formed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// A result or an error answering a request.
    Response,
}

/// One JSON-RPC message: its text and its classification.
#[derive(Clone)]
pub struct Message {
    raw: String,
    value: Value,
    kind: Kind,
}

/// Why a text is not a message we can forward.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Not JSON at all (JSON-RPC -32700).
    NotJson(String),
    /// JSON, but not a JSON-RPC message (-32600). `id` is the raw id when it
    /// could be read and is a valid request id, so the error can echo it.
    Invalid { id: Option<String>, reason: String },
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::NotJson(_) => PARSE_ERROR,
            ParseError::Invalid { .. } => INVALID_REQUEST,
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            ParseError::NotJson(_) => None,
            ParseError::Invalid { id, .. } => id.as_deref(),
        }
    }

    /// The error reply for this input: a line without an id on stdio when
    /// the id is unknown (MCP's schema models it as omitted, TRANSPORTS §9.3).
    pub fn reply(&self) -> String {
        error_reply(self.id(), self.code(), &self.to_string(), None)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(e) => write!(f, "Parse error: {e}"),
            ParseError::Invalid { reason, .. } => write!(f, "Invalid Request: {reason}"),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({:?}, {})", self.kind, self.raw)
    }
}

impl Message {
    /// Parses one message. Surrounding white space is dropped and a
    /// pretty-printed body is compacted (outside strings only), so `raw` is
    /// always a single line fit for stdio framing.
    pub fn parse(text: &str) -> Result<Message, ParseError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}');
        let value: Value =
            serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let kind = classify(&value)?;
        let raw = if text.bytes().any(|b| b == b'\n' || b == b'\r') {
            compact(text)
        } else {
            text.to_owned()
        };
        Ok(Message { raw, value, kind })
    }

    /// Splits a JSON array (a 2025-03-26 batch) into its messages, each
    /// parsed on its own. `Ok(None)` when the text is not an array.
    #[allow(clippy::type_complexity)]
    pub fn parse_batch(text: &str) -> Result<Option<Vec<Result<Message, ParseError>>>, ParseError> {
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}');
        if !t.starts_with('[') {
            return Ok(None);
        }
        let _: Value = serde_json::from_str(t).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let spans = array_elements(t).ok_or_else(|| ParseError::NotJson("bad array".into()))?;
        Ok(Some(
            spans.into_iter().map(|r| Message::parse(&t[r])).collect(),
        ))
    }

    /// Builds a message from text we produced ourselves (always valid).
    pub fn ours(text: String) -> Message {
        Message::parse(&text).expect("the proxy only builds valid JSON-RPC messages")
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn into_raw(self) -> String {
        self.raw
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Value::as_str)
    }

    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// The raw text of the top-level `id`, if the message has a usable one
    /// (a string or a number; `null` counts as none).
    pub fn id(&self) -> Option<&str> {
        match self.value.get("id") {
            Some(Value::String(_)) | Some(Value::Number(_)) => self.get_raw(&["id"]),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.kind == Kind::Response && self.value.get("error").is_some()
    }

    /// The raw text of the value at `path` (object keys only), e.g.
    /// `["params", "_meta", "progressToken"]`.
    pub fn get_raw(&self, path: &[&str]) -> Option<&str> {
        locate(&self.raw, path).map(|r| &self.raw[r])
    }

    /// A copy with the value at `path` replaced by `new_raw` (JSON text).
    /// Returns `None` when the path does not exist.
    pub fn replace(&self, path: &[&str], new_raw: &str) -> Option<Message> {
        let raw = self.replace_raw(path, new_raw)?;
        let value = serde_json::from_str(&raw).ok()?;
        let kind = classify(&value).ok()?;
        Some(Message { raw, value, kind })
    }

    /// A copy with the top-level id replaced (for requests and responses).
    pub fn with_id(&self, new_raw_id: &str) -> Message {
        self.replace(&["id"], new_raw_id)
            .expect("with_id is only called on messages that have an id")
    }

    /// [`Message::replace`] when only the text is wanted: the text is
    /// spliced and not parsed again, which on the routing path cost more
    /// allocations than everything else together (bench findings).
    /// `new_raw` must be one JSON value.
    pub fn replace_raw(&self, path: &[&str], new_raw: &str) -> Option<String> {
        splice(&self.raw, path, new_raw)
    }

    /// [`Message::with_id`] when only the text is wanted.
    pub fn with_id_raw(&self, new_raw_id: &str) -> String {
        self.replace_raw(&["id"], new_raw_id)
            .expect("with_id_raw is only called on messages that have an id")
    }
}

/// `text` (one JSON object) with the value at `path` replaced by `new_raw`,
/// byte for byte everywhere else. None when there is no value at `path`.
pub fn splice(text: &str, path: &[&str], new_raw: &str) -> Option<String> {
    let r = locate(text, path)?;
    let mut out = String::with_capacity(text.len() + new_raw.len());
    out.push_str(&text[..r.start]);
    out.push_str(new_raw);
    out.push_str(&text[r.end..]);
    Some(out)
}

fn classify(v: &Value) -> Result<Kind, ParseError> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(ParseError::Invalid {
                id: None,
                reason: "batch not allowed here".into(),
            })
        }
        _ => {
            return Err(ParseError::Invalid {
                id: None,
                reason: "not a JSON-RPC object".into(),
            })
        }
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) => Some(Value::String(s.clone()).to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let invalid = |reason: &str| ParseError::Invalid {
        id: id.clone(),
        reason: reason.into(),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    match obj.get("method") {
        Some(Value::String(_)) => match obj.get("id") {
            None => Ok(Kind::Notification),
            Some(Value::String(_)) | Some(Value::Number(_)) => Ok(Kind::Request),
            Some(_) => Err(invalid("request id must be a string or a number")),
        },
        Some(_) => Err(invalid("\"method\" must be a string")),
        None => {
            let (has_result, has_error) = (obj.contains_key("result"), obj.contains_key("error"));
            if has_result && has_error {
                return Err(invalid(
                    "a response has either \"result\" or \"error\", not both",
                ));
            }
            if !has_result && !has_error {
                return Err(invalid("no \"method\", \"result\" or \"error\""));
            }
            match obj.get("id") {
                Some(Value::String(_)) | Some(Value::Number(_)) => Ok(Kind::Response),
                // An error about an unreadable request may carry no id.
                None | Some(Value::Null) if has_error => Ok(Kind::Response),
                _ => Err(invalid("response id must be a string or a number")),
            }
        }
    }
}

/// A JSON-RPC error response line. `id` is raw JSON text; `None` omits the
/// member, which is what MCP's schema allows when the id is unknown.
pub fn error_reply(id: Option<&str>, code: i64, message: &str, data: Option<&Value>) -> String {
    let msg = Value::String(message.to_owned());
    let data = data.map(|d| format!(",\"data\":{d}")).unwrap_or_default();
    match id {
        Some(id) => format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{msg}{data}}}}}"
        ),
        None => format!(
            "{{\"jsonrpc\":\"2.0\",\"error\":{{\"code\":{code},\"message\":{msg}{data}}}}}"
        ),
    }
}

/// The same error as an HTTP body: plain JSON-RPC 2.0 uses `"id": null` when
/// the id is unknown, and that is what HTTP clients and SDKs expect.
pub fn error_body(id: Option<&str>, code: i64, message: &str) -> String {
    error_reply(Some(id.unwrap_or("null")), code, message, None)
}

/// A successful response line with `result` given as raw JSON text.
pub fn result_reply(id: &str, result_raw: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result_raw}}}")
}

/// A JSON string literal for `s`, for building raw ids and messages.
pub fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

// ---- a minimal scanner over JSON text, for byte-exact rewriting ----

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which holds `"`).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the JSON value starting at `i`. Iterative, so deep
/// nesting cannot overflow the stack.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Byte range of the value at `path` inside the object `text`. With
/// duplicate keys the last one wins, as it does for serde_json.
pub fn locate(text: &str, path: &[&str]) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let mut range = 0..b.len();
    for key in path {
        range = member(b, range.start, key)?;
    }
    Some(range)
}

fn member(b: &[u8], start: usize, key: &str) -> Option<Range<usize>> {
    let mut i = skip_ws(b, start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let kend = skip_string(b, i)?;
        let kraw = std::str::from_utf8(&b[i..kend]).ok()?;
        let matches = if kraw.contains('\\') {
            serde_json::from_str::<String>(kraw).ok()? == key
        } else {
            &kraw[1..kraw.len() - 1] == key
        };
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vstart = skip_ws(b, i + 1);
        let vend = skip_value(b, vstart)?;
        if matches {
            found = Some(vstart..vend);
        }
        i = skip_ws(b, vend);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return found,
            _ => return None,
        }
    }
}

/// The keys of the object at `path`, in text order, duplicates included
/// (serde_json's map keeps neither).
pub fn object_keys(text: &str, path: &[&str]) -> Option<Vec<String>> {
    let b = text.as_bytes();
    let start = if path.is_empty() {
        0
    } else {
        locate(text, path)?.start
    };
    let mut i = skip_ws(b, start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut keys = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(keys);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let kend = skip_string(b, i)?;
        keys.push(serde_json::from_str(std::str::from_utf8(&b[i..kend]).ok()?).ok()?);
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, skip_value(b, skip_ws(b, i + 1))?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(keys),
            _ => return None,
        }
    }
}

/// The byte ranges of the elements of the JSON array `text`.
pub fn array_elements(text: &str) -> Option<Vec<Range<usize>>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let end = skip_value(b, i)?;
        out.push(i..end);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

/// Drops white space outside strings (inside strings JSON forbids raw
/// control characters, so a CR or LF can only be formatting).
fn compact(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = skip_string(b, i).unwrap_or(b.len());
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("removing ASCII white space keeps UTF-8 valid")
}

/// What the two ends of a message too large to parse say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdHint {
    /// The raw JSON text of its top-level `id`.
    pub id: String,
    /// A top-level `method` key came before the scan stopped: a request.
    pub request: bool,
}

/// Finds the top-level `id` of a JSON-RPC message from its first and last
/// bytes only (the rest was too large to keep). The head is scanned as
/// JSON until it runs out, which finds `{"jsonrpc":"2.0","id":5,...` (the
/// Python SDK's order); the tail is matched against `,"id":ID}` at the
/// very end, which finds `...,"jsonrpc":"2.0","id":5}` (the TypeScript
/// SDK's order) and cannot be fooled by a nested object, whose closing
/// brace would come before the last one. `None` when neither end tells.
pub fn id_hint(head: &[u8], tail: &[u8]) -> Option<IdHint> {
    let (id, request) = scan_head(head);
    // Only a real JSON string or number is an id to answer with.
    let valid = |id: &String| {
        serde_json::from_str::<Value>(id).is_ok_and(|v| v.is_string() || v.is_number())
    };
    let id = id.filter(valid).or_else(|| tail_id(tail).filter(valid))?;
    Some(IdHint { id, request })
}

/// Whether the head of a message too large to parse shows a top-level
/// `method`: then it is a request or a notification, never a response.
pub fn head_names_method(head: &[u8]) -> bool {
    scan_head(head).1
}

/// Scans the top level of an object prefix: (the `id` value if complete,
/// whether a `method` key was seen).
fn scan_head(b: &[u8]) -> (Option<String>, bool) {
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return (None, false);
    }
    i += 1;
    let (mut id, mut method) = (None, false);
    loop {
        ws(&mut i);
        let Some(key_end) = string_end(b, i) else {
            return (id, method);
        };
        let key = &b[i + 1..key_end - 1];
        i = key_end;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return (id, method);
        }
        i += 1;
        ws(&mut i);
        let Some(end) = value_end(b, i) else {
            return (id, method);
        };
        match key {
            b"id" => {
                let v = &b[i..end];
                if matches!(v.first(), Some(b'"' | b'-' | b'0'..=b'9')) {
                    id = std::str::from_utf8(v).ok().map(str::to_owned);
                }
            }
            b"method" => method = true,
            _ => {}
        }
        i = end;
        ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return (id, method),
        }
    }
}

/// The index after the string starting at `i`, if it ends within `b`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i) == Some(&b'"'))
        .then(|| skip_string(b, i))
        .flatten()
}

/// The index after the JSON value starting at `i`, if it ends within `b`
/// (a scalar running into the end of `b` does not count: it may go on).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' | b'{' | b'[' => skip_value(b, i),
        _ => {
            let n = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())?;
            Some(i + n)
        }
    }
}

/// `..."id" : ID }` at the very end of `b`, ID a number or a plain string.
fn tail_id(b: &[u8]) -> Option<String> {
    let t = std::str::from_utf8(b.trim_ascii_end()).ok()?;
    let t = t.strip_suffix('}')?.trim_end();
    let (value, before) = if let Some(rest) = t.strip_suffix('"') {
        let start = rest.rfind('"')?;
        let inner = &rest[start + 1..];
        if inner.contains('\\') || rest[..start].ends_with('\\') {
            return None;
        }
        (&t[start..], &rest[..start])
    } else {
        let start = t
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let v = &t[start..];
        if v.is_empty() || !v.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return None;
        }
        (v, &t[..start])
    };
    let before = before.trim_end().strip_suffix(':')?.trim_end();
    let before = before.strip_suffix("\"id\"")?.trim_end();
    if before.ends_with(',') || before.ends_with('{') {
        Some(value.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let cases: &[(&str, Result<Kind, i64>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
                Ok(Kind::Request),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
                Ok(Kind::Request),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(Kind::Notification),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                Ok(Kind::Response),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
                Ok(Kind::Response),
            ),
            (
                r#"{"jsonrpc":"2.0","error":{"code":1,"message":"x"}}"#,
                Ok(Kind::Response),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                Err(INVALID_REQUEST),
            ),
            (r#"{"id":1,"method":"ping"}"#, Err(INVALID_REQUEST)),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                Err(INVALID_REQUEST),
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, Err(INVALID_REQUEST)),
            (r#"[1,2]"#, Err(INVALID_REQUEST)),
            (r#"42"#, Err(INVALID_REQUEST)),
            (r#"{"jsonrpc":"2.0","id":1,"meth"#, Err(PARSE_ERROR)),
            ("", Err(PARSE_ERROR)),
        ];
        for (text, want) in cases {
            let got = Message::parse(text).map(|m| m.kind()).map_err(|e| e.code());
            assert_eq!(&got, want, "input {text}");
        }
    }

    #[test]
    fn ids_stay_exact() {
        let m =
            Message::parse(r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"x"}"#)
                .unwrap();
        assert_eq!(m.id(), Some("123456789012345678901234567890"));
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":"7","method":"x"}"#).unwrap();
        assert_eq!(m.id(), Some("\"7\""));
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":"a\"b","method":"x"}"#).unwrap();
        assert_eq!(m.id(), Some(r#""a\"b""#));
    }

    #[test]
    fn rewrites_only_the_span() {
        let text = r#"{"method":"tools/call","params":{"name":"e","_meta":{"progressToken":"p1"},"arguments":{"id":5}},"id":"x","jsonrpc":"2.0"}"#;
        let m = Message::parse(text).unwrap();
        let m2 = m.with_id("17");
        assert_eq!(
            m2.raw(),
            r#"{"method":"tools/call","params":{"name":"e","_meta":{"progressToken":"p1"},"arguments":{"id":5}},"id":17,"jsonrpc":"2.0"}"#
        );
        let m3 = m2
            .replace(&["params", "_meta", "progressToken"], "99")
            .unwrap();
        assert!(m3.raw().contains(r#""_meta":{"progressToken":99}"#));
        assert_eq!(m3.get_raw(&["params", "arguments", "id"]), Some("5"));
        assert!(m.replace(&["params", "nope"], "1").is_none());
        assert_eq!(m.with_id_raw("17"), m2.raw());
        assert_eq!(
            m2.replace_raw(&["params", "_meta", "progressToken"], "99")
                .as_deref(),
            Some(m3.raw())
        );
        assert!(m.replace_raw(&["params", "nope"], "1").is_none());
    }

    #[test]
    fn last_duplicate_key_wins_like_serde() {
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#).unwrap();
        assert_eq!(m.id(), Some("2"));
    }

    #[test]
    fn compacts_pretty_input_but_keeps_strings() {
        let m = Message::parse(
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"method\": \"a b\\n\"\n}\r\n",
        )
        .unwrap();
        assert_eq!(m.raw(), r#"{"jsonrpc":"2.0","id":1,"method":"a b\n"}"#);
    }

    #[test]
    fn unicode_passes_untouched() {
        let text = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"t\":\"\u{2028}\u{2029}😀\"}}";
        assert_eq!(Message::parse(text).unwrap().raw(), text);
    }

    #[test]
    fn keys_in_text_order() {
        let t = r#"{"a":{"z":1,"b":[{"x":"}"}],"z":2},"c":3}"#;
        assert_eq!(object_keys(t, &["a"]).unwrap(), ["z", "b", "z"]);
        assert_eq!(object_keys(t, &[]).unwrap(), ["a", "c"]);
        assert!(object_keys(t, &["c"]).is_none());
    }

    #[test]
    fn batches() {
        let b = Message::parse_batch(
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"}, {"jsonrpc":"2.0","method":"b"}, 3]"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].as_ref().unwrap().kind(), Kind::Request);
        assert_eq!(b[1].as_ref().unwrap().kind(), Kind::Notification);
        assert!(b[2].is_err());
        assert_eq!(Message::parse_batch("[]").unwrap().unwrap().len(), 0);
        assert!(Message::parse_batch("{}").unwrap().is_none());
    }

    #[test]
    fn error_replies() {
        assert_eq!(
            error_reply(Some("\"a\""), -32601, "Method not found", None),
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"Method not found"}}"#
        );
        assert_eq!(
            error_body(None, -32700, "Parse error"),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#
        );
        let e = Message::parse("{").unwrap_err();
        let reply: Value = serde_json::from_str(&e.reply()).unwrap();
        assert!(reply.get("id").is_none());
        assert_eq!(reply["error"]["code"], -32700);
    }

    #[test]
    fn id_hints_from_either_end() {
        let h = |head: &str, tail: &str| id_hint(head.as_bytes(), tail.as_bytes());
        let hint = |id: &str, request: bool| {
            Some(IdHint {
                id: id.into(),
                request,
            })
        };
        // Python order: the id comes first.
        assert_eq!(
            h(
                r#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"te"#,
                r#"xx"}]}}"#
            ),
            hint("5", false)
        );
        assert_eq!(
            h(r#"{ "jsonrpc" : "2.0", "id" : "a\"b", "result": "#, ""),
            hint(r#""a\"b""#, false)
        );
        // TypeScript order: at the very end.
        assert_eq!(
            h(
                r#"{"result":{"content":[{"text":"aaaa"#,
                r#"aaa"}]},"jsonrpc":"2.0","id":12}"#
            ),
            hint("12", false)
        );
        assert_eq!(
            h(r#"{"result":{"#, r#"x"},"jsonrpc":"2.0","id":"s-1"} "#),
            hint(r#""s-1""#, false)
        );
        // A request from the server.
        assert_eq!(
            h(
                r#"{"method":"sampling/createMessage","params":{"messages":[{"#,
                r#"}]},"jsonrpc":"2.0","id":3}"#
            ),
            hint("3", true)
        );
        // A nested id is not the message's.
        assert_eq!(h(r#"{"result":{"id":9,"items":["#, r#"{"id":4}]}}"#), None);
        assert_eq!(
            h(r#"{"method":"notifications/progress","params":{"#, r#"}}"#),
            None
        );
        // An id cut off by the end of the head may be longer.
        assert_eq!(h(r#"{"jsonrpc":"2.0","id":12345"#, "x}"), None);
        assert_eq!(h("not json at all", "neither"), None);
        // Found by thinking about fuzzing: a multi-byte character before the id.
        assert_eq!(h("", "é5}"), None);
        // Found by fuzzing (tests/fuzz id_hint): control bytes in a string id.
        assert_eq!(h("", ",\"id\":\"x\u{1}\0\"}"), None);
        assert_eq!(h("{\"id\":\"x\u{1}\",", ""), None);
        assert_eq!(h("", r#""é":1,"id":5}"#), hint("5", false));
        assert_eq!(h("{\"é\":\"", "\u{1F600}\"}"), None);
        assert_eq!(h("", ""), None);
    }

    #[test]
    fn a_head_shows_a_method_only_at_the_top_level() {
        let m = |head: &str| head_names_method(head.as_bytes());
        assert!(m(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"da"#
        ));
        assert!(m(r#" { "method" : "x", "#));
        assert!(!m(r#"{"jsonrpc":"2.0","result":{"method":"x"},"id":1"#));
        assert!(!m(r#"{"jsonrpc":"2.0","id":1,"result":{"te"#));
        // Cut off before its value ends: not known to be one.
        assert!(!m(r#"{"method":"notifications/mess"#));
        assert!(!m(""));
    }
}
