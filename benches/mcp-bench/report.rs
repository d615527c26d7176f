//! The report: one row per workload figure with the floor (the load
//! generator straight to the child or the remote), our proxy and each peer,
//! and our ratio against each; rendered as a markdown table and as JSON.

use serde_json::{json, Value};
use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sys {
    Floor,
    Ours,
    Python,
    Supergateway,
}

impl Sys {
    pub fn label(self) -> &'static str {
        match self {
            Sys::Floor => "floor",
            Sys::Ours => "mcp-proxy (ours)",
            Sys::Python => "Python mcp-proxy 0.13.0",
            Sys::Supergateway => "supergateway 4.0.0",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Sys::Floor => "floor",
            Sys::Ours => "ours",
            Sys::Python => "python",
            Sys::Supergateway => "supergateway",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

pub struct Row {
    pub workload: String,
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    pub values: [Option<f64>; 4],
}

impl Row {
    pub fn get(&self, s: Sys) -> Option<f64> {
        self.values[s as usize]
    }

    /// How many times better ours is than `s` (> 1 means ours wins).
    pub fn ratio(&self, s: Sys) -> Option<f64> {
        let (o, p) = (self.get(Sys::Ours)?, self.get(s)?);
        if o <= 0.0 || p <= 0.0 {
            return None;
        }
        Some(match self.better {
            Better::Lower => p / o,
            Better::Higher => o / p,
        })
    }
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub goals: Vec<(String, Option<bool>, String)>,
    pub machine: Vec<(String, String)>,
}

impl Report {
    pub fn set(
        &mut self,
        workload: &str,
        metric: &str,
        unit: &'static str,
        better: Better,
        sys: Sys,
        v: f64,
    ) {
        let i = match self
            .rows
            .iter()
            .position(|r| r.workload == workload && r.metric == metric)
        {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    workload: workload.to_owned(),
                    metric: metric.to_owned(),
                    unit,
                    better,
                    values: [None; 4],
                });
                self.rows.len() - 1
            }
        };
        self.rows[i].values[sys as usize] = Some(v);
    }

    pub fn get(&self, workload: &str, metric: &str, sys: Sys) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.metric == metric)
            .and_then(|r| r.get(sys))
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("note: {s}");
        self.notes.push(s);
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# mcp-proxy benchmark\n");
        for (k, v) in &self.machine {
            let _ = writeln!(m, "- {k}: {v}");
        }
        let _ = writeln!(
            m,
            "\n| Workload | Metric | floor | ours | Python mcp-proxy | supergateway | ours vs Python | ours vs supergateway | ours vs floor |"
        );
        let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let cell = |s: Sys| match r.get(s) {
                Some(v) => fmt_num(v),
                None => "–".into(),
            };
            let ratio = |s: Sys| match r.ratio(s) {
                Some(x) => format!("{x:.1}×"),
                None => "–".into(),
            };
            let floor = match (r.get(Sys::Ours), r.get(Sys::Floor)) {
                (Some(o), Some(f)) if r.better == Better::Lower && r.unit == "µs" => {
                    format!("+{} µs", fmt_num(o - f))
                }
                (Some(o), Some(f)) if f > 0.0 => format!("{:.2}×", o / f),
                _ => "–".into(),
            };
            let _ = writeln!(
                m,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                r.workload,
                r.metric,
                r.unit,
                cell(Sys::Floor),
                cell(Sys::Ours),
                cell(Sys::Python),
                cell(Sys::Supergateway),
                ratio(Sys::Python),
                ratio(Sys::Supergateway),
                floor
            );
        }
        let _ = writeln!(
            m,
            "\n\"ours vs X\" is how many times better ours is (peer ÷ ours for times and memory, ours ÷ peer for rates). \"ours vs floor\" is the added latency or ours ÷ floor.\n"
        );
        if !self.goals.is_empty() {
            let _ = writeln!(m, "## Goals\n");
            for (g, ok, detail) in &self.goals {
                let mark = match ok {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "not measured",
                };
                let _ = writeln!(m, "- {g}: **{mark}** ({detail})");
            }
            let _ = writeln!(m);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(m, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        m
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut o = json!({
                    "workload": r.workload,
                    "metric": r.metric,
                    "unit": r.unit,
                    "better": if r.better == Better::Lower { "lower" } else { "higher" },
                });
                for s in [Sys::Floor, Sys::Ours, Sys::Python, Sys::Supergateway] {
                    o[s.key()] = json!(r.get(s));
                }
                o["ratio_vs_python"] = json!(r.ratio(Sys::Python));
                o["ratio_vs_supergateway"] = json!(r.ratio(Sys::Supergateway));
                o["ratio_vs_floor"] = json!(match (r.get(Sys::Ours), r.get(Sys::Floor)) {
                    (Some(o), Some(f)) if f > 0.0 => Some(o / f),
                    _ => None,
                });
                o["overhead_vs_floor"] = json!(match (r.get(Sys::Ours), r.get(Sys::Floor)) {
                    (Some(o), Some(f)) => Some(o - f),
                    _ => None,
                });
                o
            })
            .collect();
        let machine: serde_json::Map<String, Value> = self
            .machine
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let goals: Vec<Value> = self
            .goals
            .iter()
            .map(|(g, ok, d)| json!({"goal": g, "met": ok, "detail": d}))
            .collect();
        json!({"machine": machine, "rows": rows, "goals": goals, "notes": self.notes})
    }
}

pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The `q` quantile (0..=1) of `sorted` nanoseconds, in microseconds.
pub fn pct_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}
