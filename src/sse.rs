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
//! [`Item::TooBig`] and skips to the end of that event.

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
    /// An event grew past the limit; its bytes are dropped. `head` holds
    /// its first bytes so far (up to [`OVERSIZED_HINT_BYTES`]), which may
    /// already tell what it is before its end comes, if ever.
    TooBig {
        head: Vec<u8>,
    },
    /// The end of an event reported as [`Item::TooBig`]: the first and
    /// last [`OVERSIZED_HINT_BYTES`] of its data, where its JSON-RPC id may
    /// still be found ([`crate::jsonrpc::id_hint`]).
    TooBigEnd {
        head: Vec<u8>,
        tail: Vec<u8>,
    },
}

/// Bytes kept from each end of an event that is too large.
pub const OVERSIZED_HINT_BYTES: usize = 512;

pub struct Parser {
    max_event_bytes: usize,
    line: Vec<u8>,
    data: String,
    event: String,
    last_id: Option<String>,
    pending_cr: bool,
    started: bool,
    discarding: bool,
    big_head: Vec<u8>,
    /// Where the raw (not yet field-parsed) bytes start in `big_head`.
    big_raw_from: usize,
    big_tail: Vec<u8>,
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
            big_head: Vec::new(),
            big_raw_from: 0,
            big_tail: Vec::new(),
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
            self.keep_ends(bytes);
            return;
        }
        if self.line.len() + self.data.len() + bytes.len() > self.max_event_bytes {
            // Keep the ends of the event for its id: the data so far, then
            // the raw bytes from here on (its `data:` field name comes off
            // when the event ends), however the bytes were split into reads.
            let data = self.data.as_bytes();
            self.big_head = data[..data.len().min(OVERSIZED_HINT_BYTES)].to_vec();
            self.big_raw_from = self.big_head.len();
            self.big_tail.clear();
            let line = std::mem::take(&mut self.line);
            self.keep_ends(&line);
            // The head reported now ends at the byte that crossed the
            // limit, so it is the same however the bytes were split.
            // (The data may already be one past the limit: a joining
            // newline is added when a line ends, not checked here.)
            let crossing = (self.max_event_bytes + 1)
                .saturating_sub(line.len() + self.data.len())
                .min(bytes.len());
            let (first, rest) = bytes.split_at(crossing);
            self.keep_ends(first);
            self.data.clear();
            self.event.clear();
            self.discarding = true;
            out.push(Item::TooBig {
                head: self.discarded_head(),
            });
            self.keep_ends(rest);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Adds raw bytes of a discarded event to its head (until full) and tail.
    fn keep_ends(&mut self, bytes: &[u8]) {
        let room = OVERSIZED_HINT_BYTES - self.big_head.len();
        self.big_head
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        keep_tail(&mut self.big_tail, bytes);
    }

    /// The head of the discarded event so far, its first raw line's
    /// `data:` field name taken off.
    fn discarded_head(&self) -> Vec<u8> {
        let mut head = self.big_head.clone();
        let raw = &head[self.big_raw_from..];
        let skip = raw
            .strip_prefix(b"data:")
            .map(|r| raw.len() - r.strip_prefix(b" ").unwrap_or(r).len())
            .unwrap_or(0);
        head.drain(self.big_raw_from..self.big_raw_from + skip);
        head
    }

    /// The ends of the discarded event.
    fn take_ends(&mut self) -> Item {
        let head = self.discarded_head();
        self.big_head.clear();
        Item::TooBigEnd {
            head,
            tail: std::mem::take(&mut self.big_tail),
        }
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if line.is_empty() {
            if self.discarding {
                self.discarding = false;
                let ends = self.take_ends();
                out.push(ends);
                return;
            }
            self.dispatch(out);
            return;
        }
        if self.discarding || line[0] == b':' {
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

/// Appends `bytes` to `tail`, keeping only its last [`OVERSIZED_HINT_BYTES`].
fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(&bytes[bytes.len().saturating_sub(OVERSIZED_HINT_BYTES)..]);
    let extra = tail.len().saturating_sub(OVERSIZED_HINT_BYTES);
    tail.drain(..extra);
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
            head: vec![b'x'; 17],
        };
        assert_eq!(out, vec![big.clone()]);
        p.feed(b"\n\ndata: ok\n\n", &mut out);
        let ends = Item::TooBigEnd {
            head: vec![b'x'; OVERSIZED_HINT_BYTES],
            tail: vec![b'x'; OVERSIZED_HINT_BYTES],
        };
        assert_eq!(out, vec![big, ends, ev("message", "ok", None)]);
        let out = parse_chunks(&[b"data: 0123456789\ndata: 0123456789\n\ndata: a\n\n"], 16);
        // The limit passed on the second line's `data: ` field name.
        let big = Item::TooBig {
            head: b"0123456789\n".to_vec(),
        };
        let ends = Item::TooBigEnd {
            head: b"0123456789\n0123456789".to_vec(),
            tail: b"data: 0123456789".to_vec(),
        };
        assert_eq!(out, vec![big, ends, ev("message", "a", None)]);
        // A reply whose id is at either end can still be named.
        let mut big = b"data: {\"jsonrpc\":\"2.0\",\"id\":41,\"result\":\"".to_vec();
        big.extend_from_slice(&[b'y'; 5000]);
        big.extend_from_slice(b"\"}\n\n");
        let out = parse_chunks(&[&big], 1000);
        let Item::TooBigEnd { head, tail } = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(crate::jsonrpc::id_hint(head, tail).unwrap().id, "41");
        // Whether it names a method shows before its end.
        let mut big =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":\""
                .to_vec();
        big.extend_from_slice(&[b'y'; 5000]);
        let out = parse_chunks(&[&big], 1000);
        let Item::TooBig { head } = &out[0] else {
            panic!("{out:?}")
        };
        assert!(crate::jsonrpc::head_names_method(head), "{out:?}");
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
