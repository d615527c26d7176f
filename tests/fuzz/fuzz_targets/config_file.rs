//! The mcpServers config file, variable expansion and word splitting: any
//! input gives servers or a one-line error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy::config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let getenv = |k: &str| (k == "SET").then(|| "value".to_owned());
    match config::parse_file(Path::new("f.json"), text, false, &getenv) {
        Ok((defs, _)) => {
            for d in defs {
                assert!(d.prefix.starts_with("/servers/"));
                assert!(!d.spec.program.is_empty());
            }
        }
        Err(e) => {
            let line = e.to_string();
            assert!(line.starts_with("f.json: "), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
    let _ = config::expand(text, &getenv);
    let _ = config::split_words(text);
});
