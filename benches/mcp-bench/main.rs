//! `make bench`: mcp-proxy side by side with the Python mcp-proxy and
//! supergateway, with the same echo child, the same remote and the same load
//! generator, all in this one binary:
//!
//! ```text
//! mcp-bench run [--ours BIN] [--ours-static BIN] [--python BIN] [--supergateway JS]
//!               [--node BIN] [--out DIR] [--startup-runs N] [--only ours,python,supergateway]
//! mcp-bench child            the echo child (stdio MCP server)
//! mcp-bench remote [--port N] the fast Streamable HTTP remote
//! mcp-bench load ADDR [--sse] [--calls N] [--sessions N]
//!                             load on a running server (for perf/strace)
//! ```
//!
//! `--ours` defaults to the static musl binary when it is at least as new as
//! `target/release/mcp-proxy`, else to the latter. `run` prints a table and
//! writes `report.md` and `report.json` to `--out` (default
//! `target/bench`). Paths default to what `make bench` installs, relative
//! to the repository root.

mod child;
mod http;
mod mcp;
mod proc;
mod remote;
mod report;
mod run;
mod streams;

use report::Sys;
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
usage: mcp-bench run [--ours BIN] [--ours-static BIN] [--python BIN] [--supergateway JS]
                     [--node BIN] [--out DIR] [--startup-runs N] [--only SYSTEMS]
       mcp-bench child
       mcp-bench remote [--port N]
       mcp-bench load HOST:PORT [--sse] [--calls N] [--sessions N]
";

fn main() -> ExitCode {
    // `cargo bench` appends --bench; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let r = match args.first().map(String::as_str) {
        Some("child") => child::run().map_err(|e| format!("echo child: {e}")),
        Some("remote") => {
            let port = flag(&args, "--port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            remote::run(port).map_err(|e| format!("remote: {e}"))
        }
        Some("run") => bench(&args),
        Some("load") => load(&args),
        _ => {
            print!("{HELP}");
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// Sequential calls (one session) or a throughput run (several) against a
/// server that is already running, printing the latency figures: the
/// workload to hold steady under `perf stat -p` or `strace -c -p`.
fn load(args: &[String]) -> Result<(), String> {
    let addr: std::net::SocketAddr = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .ok_or("load needs HOST:PORT")?;
    let sse = args.iter().any(|a| a == "--sse");
    let calls: usize = flag(args, "--calls")
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let sessions: usize = flag(args, "--sessions")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let t0 = std::time::Instant::now();
    let mut lat = if sessions <= 1 {
        let mut c: Box<dyn mcp::Caller> = if sse {
            Box::new(mcp::Legacy::open(addr, "/sse").map_err(|e| e.to_string())?)
        } else {
            Box::new(mcp::Streamable::open(addr, "/mcp").map_err(|e| e.to_string())?)
        };
        mcp::measure(c.as_mut(), 0, calls).map_err(|e| e.to_string())?
    } else {
        let open = move || -> std::io::Result<Box<dyn mcp::Caller>> {
            Ok(if sse {
                Box::new(mcp::Legacy::open(addr, "/sse")?)
            } else {
                Box::new(mcp::Streamable::open(addr, "/mcp")?)
            })
        };
        let t = run::throughput(
            &open,
            sessions,
            std::time::Duration::from_secs(600),
            Some(calls as u64),
        );
        if let Some(e) = t.errors.first() {
            eprintln!("{} session errors, first: {e}", t.errors.len());
        }
        t.lat
    };
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{} calls in {secs:.2} s ({:.0}/s): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        lat.len(),
        lat.len() as f64 / secs,
        report::pct_us(&lat, 0.5),
        report::pct_us(&lat, 0.9),
        report::pct_us(&lat, 0.99)
    );
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let path =
        |name: &str, default: &str| PathBuf::from(flag(args, name).unwrap_or(default.into()));
    let only = flag(args, "--only").map(|o| {
        o.split(',')
            .filter_map(|s| match s.trim() {
                "ours" => Some(Sys::Ours),
                "python" => Some(Sys::Python),
                "supergateway" => Some(Sys::Supergateway),
                _ => None,
            })
            .collect()
    });
    let ours_static = path(
        "--ours-static",
        "target/x86_64-unknown-linux-musl/release/mcp-proxy",
    );
    // The static binary is what ships; measure it whenever it is at least
    // as new as the release build (an older one would be stale code).
    let dynamic = PathBuf::from("target/release/mcp-proxy");
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let ours_default = match (mtime(&ours_static), mtime(&dynamic)) {
        (Some(s), Some(d)) if s >= d => ours_static.clone(),
        (Some(_), None) => ours_static.clone(),
        _ => dynamic,
    };
    let cfg = run::Config {
        ours: flag(args, "--ours").map_or(ours_default, PathBuf::from),
        ours_static: Some(ours_static),
        python: path("--python", ".cache/bench/py/bin/mcp-proxy"),
        supergateway: path(
            "--supergateway",
            ".cache/bench/node/node_modules/supergateway/dist/index.js",
        ),
        node: flag(args, "--node").unwrap_or_else(|| "node".into()),
        out: path("--out", "target/bench"),
        startup_runs: flag(args, "--startup-runs")
            .and_then(|n| n.parse().ok())
            .unwrap_or(5),
        only,
    };
    let rep = run::run(&cfg);
    let md = rep.markdown();
    println!("{md}");
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| format!("cannot create {}: {e}", cfg.out.display()))?;
    let md_path = cfg.out.join("report.md");
    std::fs::write(&md_path, &md)
        .map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    let js_path = cfg.out.join("report.json");
    let js = serde_json::to_string_pretty(&rep.json()).expect("a Value always serialises");
    std::fs::write(&js_path, js + "\n")
        .map_err(|e| format!("cannot write {}: {e}", js_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), js_path.display());
    Ok(())
}
