//! Server-Sent Events: an incremental, bounded parser and the writer.
//!
//! The parser follows the WHATWG event-stream rules: lines end in CRLF, LF
//! or CR (a CR at the end of one read may pair with an LF at the start of the
//! next), a leading BOM is skipped, `:` starts a comment, a field without a
//! colon has an empty value, one space after the colon is dropped, `data`
//! lines are joined with LF, an event with no data is not dispatched but its
//! `id` is still recorded (the 2025-11-25 priming event), and `retry` takes
//! digits only. No event may grow past `max_event_bytes`: a stream that never
//! sends a newline costs at most that much memory, then yields
//! [`Item::TooBig`] and skips to the end of that event, scanning its data
//! for the JSON-RPC id without keeping it ([`Item::TooBigEnd`]).

use crate::jsonrpc::{IdHint, IdScan};
use std::io::{self, Write};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, `"message"` when absent.
    pub event: String,
    pub data: String,
    /// The last event id in force when this event was dispatched.
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A `retry` field: reconnection delay in milliseconds.
    Retry(u64),
    /// An event grew past the limit; its bytes are dropped.
    /// `may_be_request`: its data up to the byte that passed the limit may
    /// still be a request or a notification ([`IdScan::may_be_request`]),
    /// and the line that passed it is a `data` line; otherwise it is a
    /// reply, or no JSON-RPC message at all.
    TooBig {
        may_be_request: bool,
    },
    /// The end of an event reported as [`Item::TooBig`], with what a scan
    /// of all its data found: the JSON-RPC id, wherever it was, and whether
    /// it names a method.
    TooBigEnd {
        hint: Option<IdHint>,
        names_method: bool,
    },
}

/// Where a raw line of a discarded event is: matching the `data:` field
/// name (bytes matched so far), just past it (one space is dropped), in
/// its value, or in another field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawLine {
    Name(usize),
    Space,
    Value,
    Other,
}

pub struct Parser {
    max_event_bytes: usize,
    line: Vec<u8>,
    data: String,
    event: String,
    last_id: Option<String>,
    pending_cr: bool,
    started: bool,
    discarding: bool,
    /// The data of the discarded event, scanned as it comes.
    big_scan: IdScan,
    big_line: RawLine,
    /// The current raw line of the discarded event has bytes: its end is
    /// not the blank line that ends the event.
    big_line_has_bytes: bool,
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Parser {
        Parser {
            max_event_bytes,
            line: Vec::new(),
            data: String::new(),
            event: String::new(),
            last_id: None,
            pending_cr: false,
            started: false,
            discarding: false,
            big_scan: IdScan::new(),
            big_line: RawLine::Name(0),
            big_line_has_bytes: false,
        }
    }

    /// The id to send as `Last-Event-ID` when resuming.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes as they come off the wire; complete items go to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Item>) {
        if !self.started && !bytes.is_empty() {
            // The BOM may arrive split across reads; wait for 3 bytes.
            let have = self.line.len() + bytes.len();
            if have < 3 && b"\xEF\xBB\xBF".starts_with(&[&self.line[..], bytes].concat()) {
                self.line.extend_from_slice(bytes);
                return;
            }
            self.started = true;
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(bytes);
            let head = head
                .strip_prefix(b"\xEF\xBB\xBF")
                .map(<[u8]>::to_vec)
                .unwrap_or(head);
            return self.feed(&head, out);
        }
        if self.pending_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.pending_cr = false;
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(pos) => {
                    self.push_line_bytes(&bytes[..pos], out);
                    let is_cr = bytes[pos] == b'\r';
                    bytes = &bytes[pos + 1..];
                    if is_cr {
                        if bytes.is_empty() {
                            self.pending_cr = true;
                        } else if bytes[0] == b'\n' {
                            bytes = &bytes[1..];
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out);
                    self.line = line;
                    self.line.clear();
                }
                None => {
                    self.push_line_bytes(bytes, out);
                    break;
                }
            }
        }
    }

    fn push_line_bytes(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        if self.discarding {
            self.scan_raw(bytes);
            return;
        }
        if self.line.len() + self.data.len() + bytes.len() > self.max_event_bytes {
            // Scan the event for its id: the data so far, then the data
            // values of the raw lines from here on.
            let data = self.data.as_bytes();
            self.big_scan = IdScan::new();
            self.big_scan.feed(data);
            self.big_line = RawLine::Name(0);
            let line = std::mem::take(&mut self.line);
            self.big_line_has_bytes = !line.is_empty() || !bytes.is_empty();
            self.scan_raw(&line);
            // What is reported now was scanned up to the byte that crossed
            // the limit, so it is the same however the bytes were split.
            // (The data may already be one past the limit: a joining
            // newline is added when a line ends, not checked here.)
            let crossing = (self.max_event_bytes + 1)
                .saturating_sub(line.len() + self.data.len())
                .min(bytes.len());
            let (first, rest) = bytes.split_at(crossing);
            self.scan_raw(first);
            self.data.clear();
            self.event.clear();
            self.discarding = true;
            out.push(Item::TooBig {
                may_be_request: self.big_line != RawLine::Other && self.big_scan.may_be_request(),
            });
            self.scan_raw(rest);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Adds the `data` values among raw bytes of a line of a discarded
    /// event to its scan.
    fn scan_raw(&mut self, mut bytes: &[u8]) {
        self.big_line_has_bytes |= !bytes.is_empty();
        while let Some((&b, rest)) = bytes.split_first() {
            match self.big_line {
                RawLine::Name(n) if b == b"data:"[n] => {
                    self.big_line = if n == 4 {
                        RawLine::Space
                    } else {
                        RawLine::Name(n + 1)
                    };
                }
                RawLine::Name(_) => self.big_line = RawLine::Other,
                RawLine::Space => {
                    self.big_line = RawLine::Value;
                    if b != b' ' {
                        continue;
                    }
                }
                RawLine::Value => {
                    self.big_scan.feed(bytes);
                    return;
                }
                RawLine::Other => return,
            }
            bytes = rest;
        }
    }

    /// A raw line of a discarded event ended: data lines join with LF.
    fn end_discarded_line(&mut self) {
        if matches!(self.big_line, RawLine::Space | RawLine::Value) {
            self.big_scan.feed(b"\n");
        }
        self.big_line = RawLine::Name(0);
        self.big_line_has_bytes = false;
    }

    /// What the scan of the discarded event found.
    fn end_discarded(&mut self) -> Item {
        let scan = std::mem::take(&mut self.big_scan);
        Item::TooBigEnd {
            hint: scan.hint(),
            names_method: scan.names_method(),
        }
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if self.discarding {
            // Its lines are not kept, so `line` is empty: whether the raw
            // line had bytes tells a blank line, which ends the event.
            if self.big_line_has_bytes {
                return self.end_discarded_line();
            }
            self.discarding = false;
            let ends = self.end_discarded();
            out.push(ends);
            return;
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF after the last data line
                    // An event with empty data (a keepalive, a 2025-11-25 priming event)
                    // carries nothing to deliver; its id was recorded above.
        if data.is_empty() {
            return;
        }
        out.push(Item::Event(Event {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        }));
    }
}

/// Appends one event in wire form. Data containing line breaks becomes
/// several `data:` lines, so the receiver gets it back exactly.
pub fn encode_event(out: &mut Vec<u8>, event: Option<&str>, id: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    let mut rest = data;
    loop {
        out.extend_from_slice(b"data: ");
        match rest.find(['\r', '\n']) {
            Some(i) => {
                out.extend_from_slice(&rest.as_bytes()[..i]);
                out.push(b'\n');
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.extend_from_slice(rest.as_bytes());
                out.extend_from_slice(b"\n\n");
                return;
            }
        }
    }
}

/// Writes one event and flushes it, so it leaves now rather than when a
/// buffer fills (the tiny_http trap in DESIGN.md).
pub fn write_event<W: Write + ?Sized>(
    w: &mut W,
    event: Option<&str>,
    id: Option<&str>,
    data: &str,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(data.len() + 32);
    encode_event(&mut buf, event, id, data);
    w.write_all(&buf)?;
    w.flush()
}

/// A comment line, used as a keepalive; clients ignore it.
pub fn write_comment<W: Write + ?Sized>(w: &mut W, text: &str) -> io::Result<()> {
    w.write_all(format!(": {text}\n\n").as_bytes())?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> Item {
        Item::Event(Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        })
    }

    fn parse_chunks(chunks: &[&[u8]], max: usize) -> Vec<Item> {
        let mut p = Parser::new(max);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    type Case<'a> = (&'a str, &'a [&'a [u8]], Vec<Item>);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (
                "simple",
                &[b"data: hi\n\n"],
                vec![ev("message", "hi", None)],
            ),
            (
                "named",
                &[b"event: endpoint\ndata: /m?s=1\n\n"],
                vec![ev("endpoint", "/m?s=1", None)],
            ),
            (
                "crlf",
                &[b"event: x\r\ndata: a\r\n\r\n"],
                vec![ev("x", "a", None)],
            ),
            (
                "cr only",
                &[b"data: a\rdata: b\r\r"],
                vec![ev("message", "a\nb", None)],
            ),
            (
                "crlf split",
                &[b"data: a\r", b"\n\r", b"\n"],
                vec![ev("message", "a", None)],
            ),
            (
                "multiline",
                &[b"data: a\ndata: b\ndata\n\n"],
                vec![ev("message", "a\nb\n", None)],
            ),
            ("no space", &[b"data:x\n\n"], vec![ev("message", "x", None)]),
            (
                "two spaces",
                &[b"data:  x\n\n"],
                vec![ev("message", " x", None)],
            ),
            (
                "comment",
                &[b": ping\n\ndata: y\n\n"],
                vec![ev("message", "y", None)],
            ),
            (
                "split mid",
                &[b"da", b"ta: h", b"ello\n", b"\n"],
                vec![ev("message", "hello", None)],
            ),
            (
                "bom",
                &[b"\xEF\xBB\xBFdata: a\n\n"],
                vec![ev("message", "a", None)],
            ),
            (
                "bom split",
                &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"],
                vec![ev("message", "a", None)],
            ),
            (
                "id kept",
                &[b"id: 7\ndata: a\n\ndata: b\n\n"],
                vec![ev("message", "a", Some("7")), ev("message", "b", Some("7"))],
            ),
            (
                "priming",
                &[b"id: p1\ndata:\n\n", b"data: z\n\n"],
                vec![ev("message", "z", Some("p1"))],
            ),
            ("retry", &[b"retry: 1500\n\n"], vec![Item::Retry(1500)]),
            ("bad retry", &[b"retry: 1.5\n\n"], vec![]),
            (
                "unknown field",
                &[b"foo: bar\ndata: a\n\n"],
                vec![ev("message", "a", None)],
            ),
            (
                "unicode",
                &["data: \u{2028}é😀\n\n".as_bytes()],
                vec![ev("message", "\u{2028}é😀", None)],
            ),
            ("no dispatch at eof", &[b"data: a\n"], vec![]),
        ];
        for (name, chunks, want) in cases {
            assert_eq!(&parse_chunks(chunks, 1 << 20), want, "case {name}");
        }
    }

    #[test]
    fn bytewise_equals_whole() {
        let input = b"event: a\r\ndata: 1\r\n\r\nid: 9\ndata: 2\rdata: 3\r\r: c\n\ndata: 4\n\n";
        let whole = parse_chunks(&[input], 1 << 20);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes, 1 << 20), whole);
        assert_eq!(whole.len(), 3);
        // Also for an event over the limit, whose report carries its first
        // bytes (found by fuzzing: they used to depend on the reads).
        let input = b"data: me\xff\xff\xff\xff\xff\xff data: 0123456789abcdef\ndata: x\n\n";
        let whole = parse_chunks(&[input], 16);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes, 16), whole);
        assert_eq!(parse_chunks(&[&input[..20], &input[20..]], 16), whole);
        assert!(matches!(whole[0], Item::TooBig { .. }), "{whole:?}");
        // Invalid UTF-8 grows threefold as the data is decoded, past the
        // limit before the next line is checked (found by fuzzing too).
        let input = b"data: \xff\xff\xff\xff\xff\xff\ndata: y\n\n";
        let whole = parse_chunks(&[input], 16);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes, 16), whole);
        assert!(matches!(whole[0], Item::TooBig { .. }), "{whole:?}");
    }

    #[test]
    fn bounded() {
        let mut p = Parser::new(16);
        let mut out = Vec::new();
        for _ in 0..100 {
            p.feed(b"xxxxxxxxxx", &mut out); // never a newline
        }
        // What had come up to the byte that passed the limit, however the
        // bytes were split into reads.
        let big = Item::TooBig {
            may_be_request: false,
        };
        assert_eq!(out, vec![big.clone()]);
        p.feed(b"\n\ndata: ok\n\n", &mut out);
        let ends = Item::TooBigEnd {
            hint: None,
            names_method: false,
        };
        assert_eq!(out, vec![big, ends.clone(), ev("message", "ok", None)]);
        let out = parse_chunks(&[b"data: 0123456789\ndata: 0123456789\n\ndata: a\n\n"], 16);
        // The limit passed on the second line's `data: ` field name.
        let big = Item::TooBig {
            may_be_request: false,
        };
        assert_eq!(out, vec![big, ends, ev("message", "a", None)]);
        // A reply's id is found wherever it is: first, last, or between
        // two runs each over the limit, and across data lines.
        let y = "y".repeat(5000);
        for data in [
            format!(r#"{{"jsonrpc":"2.0","id":41,"result":"{y}"}}"#),
            format!(r#"{{"jsonrpc":"2.0","result":"{y}","id":41}}"#),
            format!(r#"{{"result":"{y}","id":41,"more":"{y}"}}"#),
            format!("{{\"result\":\"{y}\",\n\"id\"\n:\n41,\n\"more\":\"{y}\"}}"),
        ] {
            let mut wire = Vec::new();
            encode_event(&mut wire, None, Some("e"), &data);
            // An event after it is parsed as usual.
            wire.extend_from_slice(b"data: after\n\n");
            let whole = parse_chunks(&[&wire], 1000);
            let bytes: Vec<&[u8]> = wire.chunks(7).collect();
            assert_eq!(parse_chunks(&bytes, 1000), whole, "{data:.40}");
            let [Item::TooBig { may_be_request }, Item::TooBigEnd { hint, names_method }, Item::Event(after)] =
                &whole[..]
            else {
                panic!("{whole:?}")
            };
            assert!(!may_be_request, "a reply before its end: {data:.40}");
            assert_eq!(hint.as_ref().expect("an id").id, "41", "{data:.40}");
            assert!(!names_method);
            assert_eq!(after.data, "after");
        }
        // A server request, its method after its big params.
        let mut wire = Vec::new();
        let data = format!(
            r#"{{"params":{{"a":"{y}"}},"method":"sampling/createMessage","id":"s","jsonrpc":"2.0"}}"#
        );
        encode_event(&mut wire, Some("message"), None, &data);
        let out = parse_chunks(&[&wire], 1000);
        let [Item::TooBig { may_be_request }, Item::TooBigEnd { hint, names_method }] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert!(
            may_be_request,
            "not known to be a reply when the limit passed"
        );
        assert!(
            hint.as_ref().is_some_and(|h| h.request && h.id == r#""s""#),
            "{out:?}"
        );
        assert!(names_method);
    }

    #[test]
    fn encode_roundtrip() {
        for data in ["plain", "two\nlines", "cr\rlf\r\nend", "", "\u{2028}"] {
            let mut buf = Vec::new();
            encode_event(&mut buf, Some("message"), Some("e1"), data);
            let out = parse_chunks(&[&buf], 1 << 20);
            let want = if data.is_empty() {
                vec![]
            } else {
                vec![ev(
                    "message",
                    &data.replace("\r\n", "\n").replace('\r', "\n"),
                    Some("e1"),
                )]
            };
            assert_eq!(out, want, "data {data:?}");
        }
    }
}
