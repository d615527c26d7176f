//! Logging to stderr: `LEVEL target: message`, no colour unless stderr is a
//! terminal. stdout is never touched: in client mode it belongs to the
//! protocol. `RUST_LOG`, when set, overrides `--log-level`.

use std::io::Write;

pub fn init(level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level)
        .target(env_logger::Target::Stderr)
        .write_style(env_logger::WriteStyle::Auto)
        .format(|buf, r| {
            let style = buf.default_level_style(r.level());
            writeln!(
                buf,
                "{style}{:<5}{style:#} {}: {}",
                r.level(),
                r.target(),
                r.args()
            )
        });
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    let _ = b.try_init();
}
