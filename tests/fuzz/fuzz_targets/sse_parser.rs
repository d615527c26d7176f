//! The SSE parser must never panic, must give the same events however the
//! bytes are split across reads, and must never let an event grow past its
//! bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy::sse::{Item, Parser};

const MAX: usize = 256;

fn parse(chunks: &[&[u8]]) -> Vec<Item> {
    let mut p = Parser::new(MAX);
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks where to split the rest.
    let (split, body) = (data[0] as usize, &data[1..]);
    let whole = parse(&[body]);
    let at = if body.is_empty() { 0 } else { split % (body.len() + 1) };
    let halves = parse(&[&body[..at], &body[at..]]);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let bytewise = parse(&bytes);
    assert_eq!(whole, halves, "split at {at}");
    assert_eq!(whole, bytewise);
    for it in &whole {
        if let Item::Event(e) = it {
            assert!(e.data.len() <= MAX * 3, "event past its bound: {}", e.data.len());
            assert!(!e.data.is_empty(), "empty events are not dispatched");
        }
    }
});
