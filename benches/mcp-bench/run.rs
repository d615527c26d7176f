//! The whole run: the floors; then the Streamable HTTP servers of every
//! system side by side, taking turns in rounds for the latency (with the
//! floor) and throughput workloads; then each system one after the other for
//! the rest. The same echo child (this binary, `child`), the same remote
//! (this binary, `remote`) and the same load generator serve every system. A
//! workload that fails for one system becomes a note in the report, never
//! the end of the run. Every process started is held by a [`Proc`] guard and
//! killed by pid.
//!
//! Threads: the throughput workload runs one thread per session inside a
//! `thread::scope`; all end at the workload's deadline.

use crate::mcp::{measure, Caller, Legacy, Stdio, Streamable};
use crate::proc::Proc;
use crate::report::{fmt_num, pct_us, Better, Report, Sys};
use crate::streams;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Untimed calls before each latency series.
const WARMUP_CALLS: usize = 200;
/// Timed sequential calls per latency series.
const LATENCY_CALLS: usize = 2_000;
/// The latency series are taken in this many rounds, the systems (and the
/// floor) taking turns, LATENCY_CALLS / LATENCY_ROUNDS calls each per round:
/// a burst of noise on this shared machine then lands on every system
/// instead of on whichever ran during it, and the floor is measured under
/// the same conditions as the proxies it is subtracted from.
const LATENCY_ROUNDS: usize = 5;
/// The throughput workload runs this many times per system, the systems
/// taking turns; the report gives the median round and lists them all.
const THROUGHPUT_ROUNDS: usize = 3;
/// Concurrent sessions in the throughput workload.
const SESSIONS: usize = 32;
/// How long the throughput workload runs.
const THROUGHPUT_TIME: Duration = Duration::from_secs(10);
/// Calls before the "after many calls" RSS reading...
const MANY_CALLS: u64 = 100_000;
/// ...unless this much time runs out first (slow peers).
const MANY_CALLS_CAP: Duration = Duration::from_secs(25);
/// SSE streams held open for the memory workload.
const STREAMS: usize = 1_000;
/// Quiet time with all streams open, to see keepalives flow.
const STREAM_WINDOW: Duration = Duration::from_secs(3);
/// The memory workload opens streams one by one, each waiting at most this
/// long for its first event.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The burst check: this many clients opening an SSE stream at once...
const BURST: usize = 50;
/// ...each of which should see its `endpoint` event within this time.
const BURST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a system becoming ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Settling time before the idle RSS reading.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

pub struct Config {
    pub ours: PathBuf,
    pub ours_static: Option<PathBuf>,
    pub python: PathBuf,
    pub supergateway: PathBuf,
    pub node: String,
    pub out: PathBuf,
    pub startup_runs: usize,
    /// Systems to run besides the floors; `None` means all.
    pub only: Option<Vec<Sys>>,
}

const W1: &str = "1. server, Streamable HTTP, 1 session";
const W2: &str = "2. server, HTTP+SSE, 1 session";
const W3: &str = "3. server, Streamable HTTP, 32 sessions for 10 s";
const W4: &str = "4. client, stdio -> Streamable HTTP remote";
const W6: &str = "6. memory (RSS of the proxy process)";
const W7: &str = "7. start-up: exec to first successful call";
const W8: &str = "8. size";
const W9: &str = "9. burst: 50 clients open /sse at once";

fn ms_between(a: Instant) -> f64 {
    a.elapsed().as_secs_f64() * 1000.0
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn self_exe() -> String {
    std::env::current_exe()
        .expect("the running bench knows its own path")
        .to_string_lossy()
        .into_owned()
}

fn s(x: &str) -> String {
    x.to_owned()
}

/// Where a server-mode system listens.
enum Ready {
    /// The system prints its address on stderr ("listening on http://...").
    Line,
    /// The system was given this port; poll it.
    Port(u16),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Streamable,
    Sse,
}

impl Config {
    fn server_argv(&self, sys: Sys, t: Transport) -> io::Result<(Vec<String>, Ready)> {
        let child = self_exe();
        Ok(match sys {
            Sys::Ours => (
                vec![
                    self.ours.to_string_lossy().into_owned(),
                    s("--host"),
                    s("127.0.0.1"),
                    s("--port"),
                    s("0"),
                    s("--keepalive"),
                    s("1"),
                    s("--"),
                    child,
                    s("child"),
                ],
                Ready::Line,
            ),
            Sys::Python => {
                let p = free_port()?;
                (
                    vec![
                        self.python.to_string_lossy().into_owned(),
                        s("--host"),
                        s("127.0.0.1"),
                        s("--port"),
                        p.to_string(),
                        s("--log-level"),
                        s("WARNING"),
                        s("--"),
                        child,
                        s("child"),
                    ],
                    Ready::Port(p),
                )
            }
            Sys::Supergateway => {
                let p = free_port()?;
                let mut v = vec![
                    self.node.clone(),
                    self.supergateway.to_string_lossy().into_owned(),
                    s("--stdio"),
                    format!("{child} child"),
                    s("--port"),
                    p.to_string(),
                    s("--logLevel"),
                    s("none"),
                ];
                if t == Transport::Streamable {
                    v.extend([s("--outputTransport"), s("streamableHttp"), s("--stateful")]);
                }
                (v, Ready::Port(p))
            }
            Sys::Floor => unreachable!("the floor is not a proxy"),
        })
    }

    /// Starts a server-mode system and returns it once a session works,
    /// with the time from exec to the first successful call.
    fn start_server(&self, sys: Sys, t: Transport) -> io::Result<(Proc, SocketAddr, f64)> {
        let (argv, ready) = self.server_argv(sys, t)?;
        let t0 = Instant::now();
        let mut p = Proc::spawn(sys.key(), &argv, false)?;
        let addr: SocketAddr = match ready {
            Ready::Line => p.wait_stderr(READY_TIMEOUT, |l| {
                let rest = &l[l.find("listening on http://")? + "listening on http://".len()..];
                let end = rest.find(['/', ' ']).unwrap_or(rest.len());
                rest[..end].parse().ok()
            })?,
            Ready::Port(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        };
        // First successful call over the transport under test.
        loop {
            let r = match t {
                Transport::Streamable => Streamable::open(addr, "/mcp").and_then(|mut c| c.call()),
                Transport::Sse => Legacy::open(addr, "/sse").and_then(|mut c| c.call()),
            };
            match r {
                Ok(()) => break,
                Err(e) => {
                    if let Ok(Some(st)) = p.child.try_wait() {
                        return Err(io::Error::other(format!(
                            "{} exited ({st}) before its first call; stderr: {}",
                            sys.label(),
                            p.stderr_tail()
                        )));
                    }
                    if t0.elapsed() > READY_TIMEOUT {
                        return Err(io::Error::other(format!(
                            "{} gave no successful call in {READY_TIMEOUT:?}: {e}; stderr: {}",
                            sys.label(),
                            p.stderr_tail()
                        )));
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let ms = ms_between(t0);
        Ok((p, addr, ms))
    }
}

pub struct Tput {
    pub calls: u64,
    pub secs: f64,
    pub lat: Vec<u64>,
    pub errors: Vec<String>,
}

/// `sessions` threads, each with its own session from `open`, calling as
/// fast as they can until `dur` passes or `max_calls` calls are done.
pub fn throughput(
    open: &(dyn Fn() -> io::Result<Box<dyn Caller>> + Sync),
    sessions: usize,
    dur: Duration,
    max_calls: Option<u64>,
) -> Tput {
    let barrier = Barrier::new(sessions + 1);
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let all = Mutex::new((Vec::new(), Vec::new()));
    // Sessions open one at a time: opening is not what is measured, and a
    // burst of connects is a separate check (W9).
    let opening = Mutex::new(());
    let mut secs = 0.0;
    thread::scope(|sc| {
        for _ in 0..sessions {
            sc.spawn(|| {
                let c = {
                    let _one = opening.lock().expect("no panics holding it");
                    open()
                };
                barrier.wait();
                let mut c = match c {
                    Ok(c) => c,
                    Err(e) => {
                        all.lock()
                            .expect("no panics holding it")
                            .1
                            .push(e.to_string());
                        return;
                    }
                };
                let mut lat = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if let Err(e) = c.call() {
                        all.lock()
                            .expect("no panics holding it")
                            .1
                            .push(e.to_string());
                        break;
                    }
                    lat.push(t.elapsed().as_nanos() as u64);
                    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                    if max_calls.is_some_and(|m| n >= m) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                all.lock().expect("no panics holding it").0.extend(lat);
            });
        }
        barrier.wait();
        let t0 = Instant::now();
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < dur {
            thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        secs = t0.elapsed().as_secs_f64();
    });
    let (mut lat, errors) = all.into_inner().expect("threads are joined");
    lat.sort_unstable();
    Tput {
        calls: count.load(Ordering::Relaxed),
        secs,
        lat,
        errors,
    }
}

fn latency_rows(rep: &mut Report, w: &str, sys: Sys, mut lat: Vec<u64>) {
    lat.sort_unstable();
    for (m, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        rep.set(w, m, "µs", Better::Lower, sys, pct_us(&lat, q));
    }
}

fn tput_rows(rep: &mut Report, w: &str, sys: Sys, t: &Tput) {
    if t.calls > 0 {
        rep.set(
            w,
            "calls/s",
            "calls/s",
            Better::Higher,
            sys,
            t.calls as f64 / t.secs,
        );
        rep.set(w, "p99", "µs", Better::Lower, sys, pct_us(&t.lat, 0.99));
    }
    if !t.errors.is_empty() {
        rep.note(format!(
            "{}: {w}: {} session(s) failed, first: {}",
            sys.label(),
            t.errors.len(),
            t.errors[0]
        ));
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn rss_row(rep: &mut Report, metric: &str, sys: Sys, p: &Proc) {
    match p.rss_kib() {
        Some(k) => rep.set(W6, metric, "MiB", Better::Lower, sys, mib(k)),
        None => rep.note(format!("{}: no RSS for {metric}", sys.label())),
    }
}

fn open_streamable(addr: SocketAddr) -> impl Fn() -> io::Result<Box<dyn Caller>> + Sync {
    move || Ok(Box::new(Streamable::open(addr, "/mcp")?) as Box<dyn Caller>)
}

pub fn run(cfg: &Config) -> Report {
    let mut rep = Report::default();
    machine(&mut rep);
    raise_nofile(&mut rep);
    let t_all = Instant::now();
    rep.machine
        .push(("ours measured".into(), cfg.ours.display().to_string()));

    // Floors: the load generator straight to the child, then to the remote.
    let mut floor = match floors(&mut rep) {
        Ok(f) => Some(f),
        Err(e) => {
            rep.note(format!("floor: {e}"));
            None
        }
    };
    let remote = match start_remote() {
        Ok(r) => Some(r),
        Err(e) => {
            rep.note(format!("the bench remote did not start: {e}"));
            None
        }
    };
    if let Some((_, addr)) = &remote {
        if let Err(e) = remote_floor(*addr, &mut rep) {
            rep.note(format!("floor over HTTP: {e}"));
        }
    }

    let mut systems = Vec::new();
    for sys in [Sys::Ours, Sys::Python, Sys::Supergateway] {
        if cfg.only.as_ref().is_some_and(|o| !o.contains(&sys)) {
            continue;
        }
        let present = match sys {
            Sys::Ours => cfg.ours.exists(),
            Sys::Python => cfg.python.exists(),
            Sys::Supergateway => cfg.supergateway.exists(),
            Sys::Floor => true,
        };
        if present {
            systems.push(sys);
        } else {
            rep.note(format!("{} not installed; skipped", sys.label()));
        }
    }
    eprintln!("== server mode, Streamable HTTP: every system side by side");
    server_phase(cfg, &systems, floor.as_mut(), &mut rep);
    for &sys in &systems {
        eprintln!(
            "== {} ({:.0} s into the run)",
            sys.label(),
            t_all.elapsed().as_secs_f64()
        );
        let floor = if sys == Sys::Ours {
            floor.as_mut()
        } else {
            None
        };
        if let Err(e) = sse_mode(cfg, sys, floor, &mut rep) {
            rep.note(format!("{}: HTTP+SSE: {e}", sys.label()));
        }
        if let Some((_, addr)) = &remote {
            if let Err(e) = client_mode(cfg, sys, *addr, &mut rep) {
                rep.note(format!("{}: client mode: {e}", sys.label()));
            }
        }
        if let Err(e) = startup(cfg, sys, &mut rep) {
            rep.note(format!("{}: start-up: {e}", sys.label()));
        }
    }
    drop(remote);
    drop(floor);
    sizes(cfg, &mut rep);
    // Rows in workload order, whatever order the systems filled them in.
    rep.rows.sort_by_key(|r| {
        r.workload
            .split('.')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    goals(&mut rep);
    rep.machine.push((
        "load average at end".into(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    ));
    rep.machine.push((
        "run time".into(),
        format!("{:.0} s", t_all.elapsed().as_secs_f64()),
    ));
    rep
}

/// The echo child straight over stdio. It stays up for the run: the
/// latency workloads take turns with it ([`interleaved`]), which is where
/// the floor rows of workloads 1 and 2 come from.
fn floors(rep: &mut Report) -> io::Result<Stdio> {
    let p = Proc::spawn("echo-child", &[self_exe(), s("child")], true)?;
    let mut c = Stdio::start(p)?;
    let (n, mut lat) = c.pipelined(SESSIONS, Duration::from_secs(3))?;
    lat.sort_unstable();
    let t = Tput {
        calls: n,
        secs: 3.0,
        lat,
        errors: vec![],
    };
    tput_rows(rep, W3, Sys::Floor, &t);
    rep.note(format!(
        "floor for 1–3: the load generator straight to the echo child over stdio (1 and 2: in turns with the proxies, {LATENCY_ROUNDS} rounds of {} calls each; 3: {SESSIONS} calls in flight on one pipe for 3 s); the child's RSS is {} MiB",
        LATENCY_CALLS / LATENCY_ROUNDS,
        c.proc.rss_kib().map(mib).map(fmt_num).unwrap_or_default()
    ));
    Ok(c)
}

/// Latency series for several callers taking turns: `rounds` rounds of
/// `total / rounds` timed calls each, after `warm` untimed calls each.
/// A caller that fails drops out with its error; the others go on.
fn interleaved(
    callers: &mut [(Sys, &mut dyn Caller)],
    warm: usize,
    rounds: usize,
    total: usize,
) -> Vec<io::Result<Vec<u64>>> {
    let mut out: Vec<io::Result<Vec<u64>>> = callers
        .iter()
        .map(|_| Ok(Vec::with_capacity(total)))
        .collect();
    for (i, (_, c)) in callers.iter_mut().enumerate() {
        if let Err(e) = measure(*c, warm, 0) {
            out[i] = Err(e);
        }
    }
    for _ in 0..rounds {
        for (i, (_, c)) in callers.iter_mut().enumerate() {
            let Ok(lat) = &mut out[i] else { continue };
            match measure(*c, 0, total / rounds) {
                Ok(l) => lat.extend(l),
                Err(e) => out[i] = Err(e),
            }
        }
    }
    out
}

/// Per-round medians of an interleaved series (`rounds` equal parts).
fn round_medians(lat: &[u64], rounds: usize) -> Vec<f64> {
    let per = (lat.len() / rounds.max(1)).max(1);
    lat.chunks(per)
        .map(|c| {
            let mut c = c.to_vec();
            c.sort_unstable();
            pct_us(&c, 0.5)
        })
        .collect()
}

fn start_remote() -> io::Result<(Proc, SocketAddr)> {
    let mut p = Proc::spawn("remote", &[self_exe(), s("remote")], true)?;
    let addr = p.wait_stderr(READY_TIMEOUT, |l| {
        l.strip_prefix("listening on http://")?.trim().parse().ok()
    })?;
    Ok((p, addr))
}

fn remote_floor(addr: SocketAddr, rep: &mut Report) -> io::Result<()> {
    let mut c = Streamable::open(addr, "/mcp")?;
    let lat = measure(&mut c, WARMUP_CALLS, LATENCY_CALLS)?;
    latency_rows(rep, W4, Sys::Floor, lat);
    let t = throughput(
        &open_streamable(addr),
        SESSIONS,
        Duration::from_secs(3),
        None,
    );
    rep.note(format!(
        "floor for 4: the load generator straight to the bench remote over HTTP. The same load generator reaches {} calls/s (p99 {} µs) with {SESSIONS} sessions against that remote for 3 s, so it is not what limits workload 3",
        fmt_num(t.calls as f64 / t.secs),
        fmt_num(pct_us(&t.lat, 0.99))
    ));
    Ok(())
}

/// Workloads 1 and 3 and the memory readings of 6, with the Streamable HTTP
/// servers of every system up at once, so that they can take turns.
fn server_phase(cfg: &Config, systems: &[Sys], floor: Option<&mut Stdio>, rep: &mut Report) {
    let exe = std::env::current_exe().expect("the running bench knows its own path");
    let mut up = Vec::new();
    for &sys in systems {
        match cfg.start_server(sys, Transport::Streamable) {
            Ok((p, addr, _)) => up.push((sys, p, addr)),
            Err(e) => rep.note(format!("{}: server mode: {e}", sys.label())),
        }
    }
    thread::sleep(IDLE_SETTLE);
    for (sys, p, _) in &up {
        rss_row(rep, "idle after start-up", *sys, p);
        match crate::proc::tree_rss_kib(p.pid(), &exe) {
            Some(k) => rep.set(
                W6,
                "idle, with its helper processes (not the echo child)",
                "MiB",
                Better::Lower,
                *sys,
                mib(k),
            ),
            None => rep.note(format!("{}: no RSS for its process tree", sys.label())),
        }
    }

    // Workload 1: the floor and every system in turns.
    let mut sessions = Vec::new();
    for (sys, _, addr) in &up {
        match Streamable::open(*addr, "/mcp") {
            Ok(c) => sessions.push((*sys, c)),
            Err(e) => rep.note(format!("{}: {W1}: {e}", sys.label())),
        }
    }
    let mut callers: Vec<(Sys, &mut dyn Caller)> = Vec::new();
    if let Some(f) = floor {
        callers.push((Sys::Floor, f));
    }
    for (sys, c) in sessions.iter_mut() {
        callers.push((*sys, c));
    }
    let series = interleaved(&mut callers, WARMUP_CALLS, LATENCY_ROUNDS, LATENCY_CALLS);
    let mut medians = Vec::new();
    for ((sys, _), r) in callers.iter().zip(series) {
        match r {
            Ok(lat) => {
                medians.push((*sys, round_medians(&lat, LATENCY_ROUNDS)));
                latency_rows(rep, W1, *sys, lat);
            }
            Err(e) => rep.note(format!("{}: {W1}: {e}", sys.label())),
        }
    }
    drop(callers);
    drop(sessions);
    let floor_m = medians
        .iter()
        .find(|(s, _)| *s == Sys::Floor)
        .map(|(_, m)| m.clone());
    if let (Some(f), Some((_, o))) = (floor_m, medians.iter().find(|(s, _)| *s == Sys::Ours)) {
        let per: Vec<String> = o
            .iter()
            .zip(&f)
            .map(|(o, f)| format!("+{}", fmt_num(o - f)))
            .collect();
        rep.note(format!(
            "1: ours over the floor, p50 of each of the {LATENCY_ROUNDS} rounds (µs): {}",
            per.join(", ")
        ));
    }

    // Workload 3: every system in turns, THROUGHPUT_ROUNDS times.
    let mut runs: Vec<(Sys, Vec<Tput>)> = up.iter().map(|(s, _, _)| (*s, Vec::new())).collect();
    for _ in 0..THROUGHPUT_ROUNDS {
        for ((_, _, addr), (_, r)) in up.iter().zip(runs.iter_mut()) {
            r.push(throughput(
                &open_streamable(*addr),
                SESSIONS,
                THROUGHPUT_TIME,
                None,
            ));
        }
    }
    let mut rounds_note = Vec::new();
    for (sys, mut r) in runs {
        r.sort_by(|a, b| (a.calls as f64 / a.secs).total_cmp(&(b.calls as f64 / b.secs)));
        rounds_note.push(format!(
            "{} {}",
            sys.label(),
            r.iter()
                .map(|t| fmt_num(t.calls as f64 / t.secs))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
        let mid = r.len() / 2;
        let mut median = r.swap_remove(mid);
        // The p99 is over every call of every round.
        for t in r {
            median.lat.extend(t.lat);
            median.errors.extend(t.errors);
        }
        median.lat.sort_unstable();
        tput_rows(rep, W3, sys, &median);
    }
    rep.note(format!(
        "3: calls/s is the median of {THROUGHPUT_ROUNDS} rounds of {THROUGHPUT_TIME:?} per system, the systems taking turns; p99 is over all rounds. Rounds, slowest first: {}",
        rounds_note.join("; ")
    ));

    for (sys, p, addr) in up {
        let t = throughput(
            &open_streamable(addr),
            SESSIONS,
            MANY_CALLS_CAP,
            Some(MANY_CALLS),
        );
        rss_row(rep, "after 100,000 calls (32 sessions)", sys, &p);
        if t.calls < MANY_CALLS {
            rep.note(format!(
                "{}: only {} calls fit in the {MANY_CALLS_CAP:?} cap of the 100,000-call memory run; its RSS is after those (and the calls of workloads 1 and 3 before them)",
                sys.label(),
                t.calls,
            ));
        }
        if !t.errors.is_empty() {
            rep.note(format!(
                "{}: 100,000-call run: {} session errors, first: {}",
                sys.label(),
                t.errors.len(),
                t.errors[0]
            ));
        }
    }
}

/// Workload 2 (in turns with the floor, for ours), then the stream and
/// burst readings, each on a fresh process.
fn sse_mode(cfg: &Config, sys: Sys, floor: Option<&mut Stdio>, rep: &mut Report) -> io::Result<()> {
    let (p, addr, _) = cfg.start_server(sys, Transport::Sse)?;
    let mut c = Legacy::open(addr, "/sse")?;
    let mut callers: Vec<(Sys, &mut dyn Caller)> = Vec::new();
    if let Some(f) = floor {
        callers.push((Sys::Floor, f));
    }
    callers.push((sys, &mut c));
    let series = interleaved(&mut callers, WARMUP_CALLS, LATENCY_ROUNDS, LATENCY_CALLS);
    for ((s, _), r) in callers.iter().zip(series) {
        match r {
            Ok(lat) => latency_rows(rep, W2, *s, lat),
            Err(e) => rep.note(format!("{}: {W2}: {e}", s.label())),
        }
    }
    drop(callers);
    drop(c);
    drop(p);

    // A fresh process for the streams, so the figure is theirs alone.
    let (p, addr, _) = cfg.start_server(sys, Transport::Sse)?;
    let mut rss = None;
    let held = streams::hold(
        addr,
        "/sse",
        STREAMS,
        (1, STREAM_OPEN_TIMEOUT),
        STREAM_WINDOW,
        || rss = p.rss_kib(),
    )?;
    match rss {
        Some(k) => rep.set(
            W6,
            "1,000 open SSE streams",
            "MiB",
            Better::Lower,
            sys,
            mib(k),
        ),
        None => rep.note(format!("{}: no RSS with streams open", sys.label())),
    }
    rep.set(
        W6,
        "of those 1,000, streams fed in a 3 s window",
        "streams",
        Better::Higher,
        sys,
        held.fed as f64,
    );
    rep.note(format!(
        "{}: {} of {STREAMS} SSE streams opened one by one in {:.1} s; {} received bytes in the {STREAM_WINDOW:?} window before the reading{}; {} closed by the server",
        sys.label(),
        held.opened,
        held.open_secs,
        held.fed,
        match sys {
            Sys::Ours => " (run with --keepalive 1)",
            Sys::Python => " (its own keepalive is every 15 s)",
            _ => " (it sends no keepalives)",
        },
        held.closed
    ));
    drop(p);

    // A burst of clients on a fresh process: every one should be served.
    let (p, addr, _) = cfg.start_server(sys, Transport::Sse)?;
    let burst = streams::hold(
        addr,
        "/sse",
        BURST,
        (BURST, BURST_TIMEOUT),
        Duration::ZERO,
        || (),
    )?;
    drop(p);
    rep.set(
        W9,
        "streams served within 5 s",
        "of 50",
        Better::Higher,
        sys,
        burst.opened as f64,
    );
    if burst.unserved > 0 {
        rep.note(format!(
            "{}: {} of {BURST} SSE clients connecting at once got no endpoint event within {BURST_TIMEOUT:?}",
            sys.label(),
            burst.unserved
        ));
    }
    Ok(())
}

fn client_argv(cfg: &Config, sys: Sys, url: &str) -> Vec<String> {
    match sys {
        Sys::Ours => vec![
            cfg.ours.to_string_lossy().into_owned(),
            s("--transport"),
            s("streamablehttp"),
            url.to_owned(),
        ],
        Sys::Python => vec![
            cfg.python.to_string_lossy().into_owned(),
            s("--transport"),
            s("streamablehttp"),
            s("--log-level"),
            s("WARNING"),
            url.to_owned(),
        ],
        _ => vec![
            cfg.node.clone(),
            cfg.supergateway.to_string_lossy().into_owned(),
            s("--streamableHttp"),
            url.to_owned(),
            s("--logLevel"),
            s("none"),
        ],
    }
}

fn client_mode(cfg: &Config, sys: Sys, remote: SocketAddr, rep: &mut Report) -> io::Result<()> {
    let url = format!("http://{remote}/mcp");
    let p = Proc::spawn(sys.key(), &client_argv(cfg, sys, &url), true)?;
    let mut c = Stdio::start(p)?;
    let lat = measure(&mut c, WARMUP_CALLS, LATENCY_CALLS)?;
    latency_rows(rep, W4, sys, lat);
    rss_row(rep, "client mode, after 2,200 calls", sys, &c.proc);
    Ok(())
}

fn startup(cfg: &Config, sys: Sys, rep: &mut Report) -> io::Result<()> {
    let runs = if sys == Sys::Ours {
        cfg.startup_runs.max(1)
    } else {
        cfg.startup_runs.clamp(1, 3)
    };
    let mut t = Vec::new();
    for _ in 0..runs {
        let (p, _, ms) = cfg.start_server(sys, Transport::Streamable)?;
        drop(p);
        t.push(ms);
    }
    t.sort_by(f64::total_cmp);
    rep.set(
        W7,
        "median, server mode, Streamable HTTP",
        "ms",
        Better::Lower,
        sys,
        t[t.len() / 2],
    );
    Ok(())
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_bytes(&e.path())).sum())
        .unwrap_or(0)
}

fn sizes(cfg: &Config, rep: &mut Report) {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (bin, which) = match &cfg.ours_static {
        Some(p) if p.exists() => (p.clone(), "the static musl binary"),
        _ => (
            cfg.ours.clone(),
            "target/release/mcp-proxy (dynamically linked; no static build was found)",
        ),
    };
    if let Ok(m) = std::fs::metadata(&bin) {
        rep.set(
            W8,
            "install size",
            "MiB",
            Better::Lower,
            Sys::Ours,
            mb(m.len()),
        );
        rep.note(format!("size of ours is {which}: {}", bin.display()));
    }
    if let Some(venv) = cfg.python.parent().and_then(Path::parent) {
        if venv.exists() {
            rep.set(
                W8,
                "install size",
                "MiB",
                Better::Lower,
                Sys::Python,
                mb(dir_bytes(venv)),
            );
        }
    }
    if let Some(nm) = cfg
        .supergateway
        .ancestors()
        .find(|a| a.ends_with("node_modules"))
    {
        rep.set(
            W8,
            "install size",
            "MiB",
            Better::Lower,
            Sys::Supergateway,
            mb(dir_bytes(nm)),
        );
    }
    rep.note("install size of the peers is their venv / node_modules, without the python3 or node interpreter they also need");
}

fn goals(rep: &mut Report) {
    let o = |w, m| rep.get(w, m, Sys::Ours);
    let overhead = o(W1, "p50")
        .zip(rep.get(W1, "p50", Sys::Floor))
        .map(|(a, b)| a - b);
    let g1 = (
        "median overhead over the direct-stdio floor under 100 µs with one client".to_owned(),
        overhead.map(|x| x < 100.0),
        overhead
            .map(|x| format!("{} µs", fmt_num(x)))
            .unwrap_or_default(),
    );
    let tp = o(W3, "calls/s")
        .zip(rep.get(W3, "calls/s", Sys::Python))
        .map(|(a, b)| a / b);
    let g2 = (
        "32 sessions: at least 20× the Python proxy's calls/s".to_owned(),
        tp.map(|x| x >= 20.0),
        tp.map(|x| format!("{x:.1}×")).unwrap_or_default(),
    );
    let idle = o(W6, "idle after start-up");
    let g3 = (
        "idle RSS under 4 MiB".to_owned(),
        idle.map(|x| x < 4.0),
        idle.map(|x| format!("{} MiB", fmt_num(x)))
            .unwrap_or_default(),
    );
    let st = o(W6, "1,000 open SSE streams");
    let g4 = (
        "1,000 open streams under 64 MiB".to_owned(),
        st.map(|x| x < 64.0),
        st.map(|x| format!("{} MiB", fmt_num(x)))
            .unwrap_or_default(),
    );
    rep.goals = vec![g1, g2, g3, g4];
}

fn machine(rep: &mut Report) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    rep.machine = vec![
        ("date".into(), date),
        ("nproc".into(), nproc.to_string()),
        ("CPU".into(), cpu),
        ("kernel".into(), kernel.trim().to_owned()),
        ("load average at start".into(), load.trim().to_owned()),
    ];
}

/// 1,000 streams need more descriptors than the usual soft limit of 1024.
fn raise_nofile(rep: &mut Report) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    if (r.rlim_cur as usize) < 2 * STREAMS + 256 {
        rep.note(format!(
            "open-file limit is {}; the 1,000-stream workload needs about {}: raise `ulimit -n`",
            r.rlim_cur,
            2 * STREAMS + 256
        ));
    }
}
