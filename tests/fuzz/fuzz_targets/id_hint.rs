//! The id of an oversized message from its two ends: never a panic, and
//! what it finds is a JSON string or number.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy::jsonrpc;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    let (head, tail) = data.split_at(cut);
    if let Some(h) = jsonrpc::id_hint(head, tail) {
        let v: serde_json::Value = serde_json::from_str(&h.id).expect("an id is JSON");
        assert!(v.is_string() || v.is_number(), "{v}");
    }
});
