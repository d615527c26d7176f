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

/// What a message too large to parse says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdHint {
    /// The raw JSON text of its top-level `id`.
    pub id: String,
    /// It has a top-level `method`: a request, not a response.
    pub request: bool,
}

/// The longest raw `id` an [`IdScan`] keeps; a longer one is no id to
/// answer with.
pub const MAX_ID_BYTES: usize = 4096;

/// The longest raw key an [`IdScan`] keeps: room for `"method"` with every
/// character escaped; longer keys are neither `id` nor `method`.
const MAX_KEY_BYTES: usize = 64;

/// Where an [`IdScan`] is in the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    Start,
    Key,
    KeyStr,
    Colon,
    Value,
    ValueStr,
    ValueScalar,
    ValueNested,
    AfterValue,
    /// The object ended (only white space may follow).
    End,
    /// The text stopped being JSON: nothing more is learnt.
    Stop,
}

/// Finds the top-level `id` and `method` of a JSON-RPC message fed in
/// pieces of any size, keeping only those: the message itself may be far
/// over the size limit, and its id anywhere in it (the Python SDK writes it
/// first, the TypeScript SDK last, others in between). Nested objects and
/// strings are skipped, so an `id` inside `params` or a result is never
/// taken for the message's. Text that stops being JSON stops the scan with
/// what was found so far.
#[derive(Debug, Clone)]
pub struct IdScan {
    at: Top,
    /// Inside a string, the next byte is escaped.
    escaped: bool,
    /// A `,` came, so a key must follow (`{"a":1,}` is no JSON).
    after_comma: bool,
    /// Inside a nested value: its depth, and whether in a string there.
    depth: u32,
    in_str: bool,
    key: Vec<u8>,
    key_long: bool,
    /// The raw text of the current top-level value, while it may be the id.
    value: Vec<u8>,
    keep_value: bool,
    id: Option<Vec<u8>>,
    method: bool,
    reply: bool,
}

impl Default for IdScan {
    fn default() -> IdScan {
        IdScan::new()
    }
}

impl IdScan {
    pub fn new() -> IdScan {
        IdScan {
            at: Top::Start,
            escaped: false,
            after_comma: false,
            depth: 0,
            in_str: false,
            key: Vec::new(),
            key_long: false,
            value: Vec::new(),
            keep_value: false,
            id: None,
            method: false,
            reply: false,
        }
    }

    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.at == Top::Stop {
                return;
            }
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.at {
            Top::Start if ws => {}
            Top::Start if b == b'{' => self.at = Top::Key,
            Top::Key if ws => {}
            Top::Key if b == b'}' && !self.after_comma => self.at = Top::End,
            Top::Key if b == b'"' => {
                self.after_comma = false;
                self.key.clear();
                self.key_long = false;
                self.escaped = false;
                self.at = Top::KeyStr;
            }
            Top::KeyStr => {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.at = Top::Colon;
                    return;
                }
                if self.key.len() < MAX_KEY_BYTES {
                    self.key.push(b);
                } else {
                    self.key_long = true;
                }
            }
            Top::Colon if ws => {}
            Top::Colon if b == b':' => self.at = Top::Value,
            Top::Value if ws => {}
            Top::Value => {
                self.keep_value = self.key_is("id");
                self.reply |= self.key_is("result") || self.key_is("error");
                self.value.clear();
                self.push_value(b);
                self.escaped = false;
                self.at = match b {
                    b'"' => Top::ValueStr,
                    b'{' | b'[' => {
                        self.depth = 1;
                        self.in_str = false;
                        Top::ValueNested
                    }
                    b',' | b'}' | b']' | b':' => Top::Stop,
                    _ => Top::ValueScalar,
                };
            }
            Top::ValueStr => {
                self.push_value(b);
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.value_ended();
                }
            }
            Top::ValueScalar => {
                if ws || b == b',' || b == b'}' {
                    self.value_ended();
                    self.byte(b);
                } else {
                    self.push_value(b);
                }
            }
            Top::ValueNested => {
                if self.in_str {
                    if self.escaped {
                        self.escaped = false;
                    } else if b == b'\\' {
                        self.escaped = true;
                    } else if b == b'"' {
                        self.in_str = false;
                    }
                } else {
                    match b {
                        b'"' => self.in_str = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                self.value_ended();
                            }
                        }
                        _ => {}
                    }
                }
            }
            Top::AfterValue if ws => {}
            Top::AfterValue if b == b',' => {
                self.after_comma = true;
                self.at = Top::Key;
            }
            Top::AfterValue if b == b'}' => self.at = Top::End,
            Top::End if ws => {}
            _ => self.at = Top::Stop,
        }
    }

    fn push_value(&mut self, b: u8) {
        if self.keep_value {
            if self.value.len() < MAX_ID_BYTES {
                self.value.push(b);
            } else {
                self.keep_value = false;
                self.id = None;
            }
        }
    }

    fn value_ended(&mut self) {
        self.at = Top::AfterValue;
        if self.key_is("method") {
            self.method = true;
        }
        if self.keep_value {
            // A later `id` replaces an earlier one, as in serde_json.
            self.id = Some(std::mem::take(&mut self.value));
        } else if self.key_is("id") {
            self.id = None;
        }
    }

    /// Whether the current key is `name`, escapes decoded.
    fn key_is(&self, name: &str) -> bool {
        if self.key_long {
            return false;
        }
        if !self.key.contains(&b'\\') {
            return self.key == name.as_bytes();
        }
        let quoted = [&b"\""[..], &self.key, b"\""].concat();
        serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == name)
    }

    /// A top-level `method` has been seen (with its whole value).
    pub fn names_method(&self) -> bool {
        self.method
    }

    /// What was scanned may still be a request or a notification: JSON so
    /// far, an object, and no top-level `result` or `error` has begun.
    pub fn may_be_request(&self) -> bool {
        !self.reply && self.at != Top::Stop
    }

    /// What was found: the id, if it is a JSON string or number (the only
    /// ids a reply can carry), and whether a `method` came with it.
    pub fn hint(&self) -> Option<IdHint> {
        let raw = self.id.as_deref()?;
        let v = serde_json::from_slice::<Value>(raw).ok()?;
        (v.is_string() || v.is_number()).then(|| IdHint {
            id: String::from_utf8(raw.to_vec()).expect("serde_json accepted it, so it is UTF-8"),
            request: self.method,
        })
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

    /// The scan of `text` fed whole, byte by byte, and in every two pieces:
    /// all must agree.
    fn scan(text: &str) -> Option<IdHint> {
        let b = text.as_bytes();
        let whole = {
            let mut s = IdScan::new();
            s.feed(b);
            s.hint()
        };
        let mut s = IdScan::new();
        for c in b.chunks(1) {
            s.feed(c);
        }
        assert_eq!(s.hint(), whole, "byte by byte: {text}");
        for cut in 0..=b.len() {
            let mut s = IdScan::new();
            s.feed(&b[..cut]);
            s.feed(&b[cut..]);
            assert_eq!(s.hint(), whole, "cut at {cut}: {text}");
        }
        whole
    }

    #[test]
    fn the_id_is_found_anywhere_at_the_top_level() {
        let hint = |id: &str, request: bool| {
            Some(IdHint {
                id: id.into(),
                request,
            })
        };
        let big = "x".repeat(10_000);
        // Python order: the id comes first.
        let m =
            format!(r#"{{"jsonrpc":"2.0","id":5,"result":{{"content":[{{"text":"{big}"}}]}}}}"#);
        assert_eq!(scan(&m), hint("5", false));
        assert_eq!(
            scan(r#"{ "jsonrpc" : "2.0", "id" : "a\"b", "result": 1}"#),
            hint(r#""a\"b""#, false)
        );
        // TypeScript order: at the very end.
        let m =
            format!(r#"{{"result":{{"content":[{{"text":"{big}"}}]}},"jsonrpc":"2.0","id":12}}"#);
        assert_eq!(scan(&m), hint("12", false));
        // In the middle, which neither end shows.
        let m = format!(
            r#"{{"result":{{"a":"{big}"}},"id":"s-1","more":["{big}",{{"id":4}}],"jsonrpc":"2.0"}}"#
        );
        assert_eq!(scan(&m), hint(r#""s-1""#, false));
        // A request from the server, its method after its params.
        let m = format!(
            r#"{{"params":{{"messages":[{{"text":"{big}"}}]}},"id":3,"method":"sampling/createMessage","jsonrpc":"2.0"}}"#
        );
        assert_eq!(scan(&m), hint("3", true));
        // Nested ids, and ids inside strings, are not the message's.
        assert_eq!(scan(r#"{"result":{"id":9,"items":[{"id":4}]}}"#), None);
        assert_eq!(scan(r#"{"result":"\",\"id\":7,\"x\":\"","y":1}"#), None);
        assert_eq!(scan(r#"{"a":["}",{"b":"]"}],"id":8}"#), hint("8", false));
        assert_eq!(
            scan(r#"{"method":"notifications/progress","params":{"id":1}}"#),
            None
        );
        // An escaped key is still the key (as serde_json reads it).
        assert_eq!(
            scan(r#"{"\u0069d":6,"me\u0074hod":"ping"}"#),
            hint("6", true)
        );
        // The last id wins, as in serde_json; an id that is no string or
        // number is none.
        assert_eq!(scan(r#"{"id":1,"id":2}"#), hint("2", false));
        assert_eq!(scan(r#"{"id":1,"id":{"a":1}}"#), None);
        assert_eq!(scan(r#"{"id":null,"method":"x"}"#), None);
        // An id cut off by the end of the text may be longer.
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":12345"#), None);
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":"abc"#), None);
        // What was found before the text stops being JSON still counts.
        assert_eq!(
            scan(r#"{"id":7,"result":{"a":1}} trailing"#),
            hint("7", false)
        );
        assert_eq!(scan(r#"{"id":7 "x":1}"#), hint("7", false));
        assert_eq!(scan("not json at all"), None);
        assert_eq!(scan("[1,2]"), None);
        assert_eq!(scan(""), None);
        // Control bytes in a string id make it no JSON string.
        assert_eq!(scan("{\"id\":\"x\u{1}\"}"), None);
        assert_eq!(scan(r#"{"é":1,"id":5}"#), hint("5", false));
        // An id over MAX_ID_BYTES is not kept.
        let long = format!(r#"{{"id":"{}"}}"#, "i".repeat(MAX_ID_BYTES));
        assert_eq!(scan(&long), None);
    }

    #[test]
    fn a_scan_tells_a_method_or_a_reply_only_at_the_top_level() {
        let m = |text: &str| {
            let mut s = IdScan::new();
            s.feed(text.as_bytes());
            (s.names_method(), s.may_be_request())
        };
        assert_eq!(
            m(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"da"#),
            (true, true)
        );
        assert_eq!(m(r#" { "method" : "x", "#), (true, true));
        assert_eq!(
            m(r#"{"jsonrpc":"2.0","result":{"method":"x"},"id":1"#),
            (false, false)
        );
        assert_eq!(
            m(r#"{"jsonrpc":"2.0","id":1,"result":{"te"#),
            (false, false)
        );
        assert_eq!(m(r#"{"error":"#), (false, true), "no value begun yet");
        assert_eq!(m(r#"{"error":{"#), (false, false));
        assert_eq!(
            m(r#"{"params":{"result":1,"error":2,"method":3}"#),
            (false, true)
        );
        // A method cut off before its value ends: not known to be one.
        assert_eq!(m(r#"{"method":"notifications/mess"#), (false, true));
        // Not JSON, or not an object: no message at all.
        assert_eq!(m("xxxx"), (false, false));
        assert_eq!(m(r#"[{"method":"x"}"#), (false, false));
        assert_eq!(m(""), (false, true));
        // Found by fuzzing: a whole object, ended, is still what it was.
        assert_eq!(m(r#"{"id":7777777770000000012072.0}"#), (false, true));
        assert_eq!(m("{} "), (false, true));
        assert_eq!(m(r#"{"a":1,}"#), (false, false));
        assert_eq!(m(r#"{"a":1} x"#), (false, false));
    }
}
