//! Message classification and span rewriting: never a panic, and a rewrite
//! changes exactly the id and nothing else.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy::jsonrpc::{self, Kind, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = jsonrpc::object_keys(text, &[]);
    let _ = Message::parse_batch(text);
    let m = match Message::parse(text) {
        Ok(m) => m,
        Err(e) => {
            // The error reply is itself valid JSON-RPC.
            let reply = e.reply();
            let v: serde_json::Value = serde_json::from_str(&reply).expect("error replies are JSON");
            assert_eq!(v["jsonrpc"], "2.0");
            return;
        }
    };
    assert!(!m.raw().contains('\n'), "raw is one line");
    let again = Message::parse(m.raw()).expect("raw re-parses");
    assert_eq!(again.kind(), m.kind());
    assert_eq!(again.value(), m.value());
    if let (Some(_), Kind::Request | Kind::Response) = (m.id(), m.kind()) {
        let r = m.with_id("\"rewritten\"");
        assert_eq!(m.with_id_raw("\"rewritten\""), r.raw(), "the text-only rewrite is the same text");
        assert_eq!(r.id(), Some("\"rewritten\""));
        assert_eq!(r.kind(), m.kind());
        let back = r.with_id(m.id().unwrap());
        assert_eq!(back.value(), m.value(), "rewriting there and back is the identity");
    }
    for path in [&["params", "_meta", "progressToken"][..], &["params", "progressToken"], &["params", "requestId"]] {
        if let Some(raw) = m.get_raw(path) {
            let r = m.replace(path, "42").expect("an existing path can be replaced");
            assert_eq!(r.get_raw(path), Some("42"));
            assert_eq!(m.replace_raw(path, "42").as_deref(), Some(r.raw()));
            let back = r.replace(path, raw).expect("and replaced back");
            assert_eq!(back.value(), m.value());
        }
    }
});
