//! Command-line parsing: any argv gives a result or a one-line usage error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let argv: Vec<&str> = text.split('\0').collect();
    if let Err(e) = mcp_proxy::cli::parse(argv, &|_| None) {
        assert!(!e.0.contains('\n'), "usage errors are one line: {}", e.0);
    }
});
