//! The id of an oversized message, scanned in pieces: never a panic, the
//! same however the bytes are split, and, when the text is a JSON object,
//! exactly its top-level `id` and `method` as serde_json reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy::jsonrpc::{IdScan, MAX_ID_BYTES};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut whole = IdScan::new();
    whole.feed(data);
    let mut split = IdScan::new();
    split.feed(&data[..cut]);
    split.feed(&data[cut..]);
    let hint = whole.hint();
    assert_eq!(hint, split.hint(), "split at {cut}");
    assert_eq!(whole.names_method(), split.names_method());
    if let Some(h) = &hint {
        let v: Value = serde_json::from_str(&h.id).expect("an id is JSON");
        assert!(v.is_string() || v.is_number(), "{v}");
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match m.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => match &hint {
            Some(h) => assert_eq!(&serde_json::from_str::<Value>(&h.id).unwrap(), id),
            None => assert!(id.to_string().len() > MAX_ID_BYTES / 6, "missed {id}"),
        },
        _ => assert_eq!(hint, None),
    }
    assert_eq!(whole.names_method(), m.contains_key("method"));
    assert_eq!(
        whole.may_be_request(),
        !(m.contains_key("result") || m.contains_key("error"))
    );
});
