//! Turning samples into the markdown table and `results.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cases::{Case, Figure, Sample, Side, Target, Unit};
use crate::workload::Workload;

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub name: &'static str,
    pub peer: &'static str,
    pub figures: Vec<FigureResult>,
    pub runs: Vec<RunRecord>,
}

#[derive(Debug, Serialize)]
pub struct FigureResult {
    #[serde(flatten)]
    pub figure: Figure,
    /// Best (lowest) over the runs.
    pub stigvault: Option<f64>,
    pub peer: Option<f64>,
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct RunRecord {
    pub side: Side,
    pub run: u32,
    #[serde(flatten)]
    pub sample: Sample,
}

pub fn summarise(case: &dyn Case, samples: Vec<(Side, u32, Sample)>) -> CaseResult {
    let best = |side: Side, key: &str| {
        samples
            .iter()
            .filter(|(s, _, _)| *s == side)
            .filter_map(|(_, _, sample)| sample.values.get(key).copied())
            .reduce(f64::min)
    };
    let figures = case
        .figures()
        .iter()
        .map(|f| {
            let ours = best(Side::Stigvault, f.key);
            let peer = best(Side::Peer, f.key);
            let ratio = match (ours, peer) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let met = match f.target {
                Target::RatioAtMost { ratio: r } => ratio.map(|x| x <= r),
                Target::AtMost { value } => ours.map(|x| x <= value),
                Target::None => None,
            };
            FigureResult {
                figure: *f,
                stigvault: ours,
                peer,
                ratio,
                met,
            }
        })
        .collect();
    CaseResult {
        name: case.name(),
        peer: case.peer(),
        figures,
        runs: samples
            .into_iter()
            .map(|(side, run, sample)| RunRecord { side, run, sample })
            .collect(),
    }
}

fn fmt_value(unit: Unit, v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) => match unit {
            Unit::Secs => format!("{v:.2} s"),
            Unit::Bytes => fmt_bytes(v),
            Unit::Count => format!("{v:.0}"),
        },
    }
}

fn fmt_bytes(v: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if v >= 10.0 * MIB {
        format!("{:.1} MiB", v / MIB)
    } else if v >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", v / MIB)
    } else {
        format!("{:.1} KiB", v / 1024.0)
    }
}

fn fmt_target(f: &Figure, peer: &str) -> String {
    match f.target {
        Target::RatioAtMost { ratio } => format!("≤ {ratio}× {peer}"),
        Target::AtMost { value } => format!("≤ {}", fmt_value(f.unit, Some(value))),
        Target::None => "—".to_owned(),
    }
}

pub fn markdown(results: &[CaseResult]) -> String {
    let mut s = String::new();
    for r in results {
        let _ = writeln!(s, "\n### {} (stigvault vs {})\n", r.name, r.peer);
        let _ = writeln!(
            s,
            "| figure | stigvault | {} | ratio | target | met |",
            r.peer
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---|---|");
        for f in &r.figures {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                f.figure.label,
                fmt_value(f.figure.unit, f.stigvault),
                fmt_value(f.figure.unit, f.peer),
                f.ratio.map_or("—".to_owned(), |x| format!("{x:.2}×")),
                fmt_target(&f.figure, r.peer),
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "—",
                },
            );
        }
    }
    s
}

pub fn print_workload(w: &Workload) {
    let d = &w.diff;
    eprintln!(
        "workload{}: base {} facts, {:.1} MB ({} pages); +1%: {} facts, {:.1} MB ({} pages)",
        if w.cached { " (cached)" } else { "" },
        w.base_facts,
        w.base_bytes as f64 / 1e6,
        d.base_pages,
        w.plus1_facts,
        w.plus1_bytes as f64 / 1e6,
        d.plus1_pages,
    );
    eprintln!(
        "  built in {:.1} s (+1% step {:.1} s)",
        w.base_build_secs, w.plus1_build_secs
    );
    eprintln!(
        "  4 KiB pages changed by +1%: {} of {} ({:.1}%): {} rewritten, {} appended",
        d.changed_or_new(),
        d.plus1_pages,
        100.0 * d.share(),
        d.changed_pages,
        d.appended_pages,
    );
    let shares: Vec<String> = d
        .fixed_chunks
        .iter()
        .map(|c| {
            format!(
                "{} KiB: {:.0}%",
                c.chunk_bytes / 1024,
                100.0 * c.changed as f64 / c.total.max(1) as f64
            )
        })
        .collect();
    eprintln!("  fixed chunks changed: {}", shares.join(", "));
}

pub fn write_json(
    path: &Path,
    args: &serde_json::Value,
    tools: &serde_json::Value,
    w: &Workload,
    results: &[CaseResult],
) -> Result<()> {
    let doc = serde_json::json!({
        "created_at": chrono::Utc::now().to_rfc3339(),
        "args": args,
        "machine": machine(),
        "tools": tools,
        "workload": w,
        "cases": results,
    });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    serde_json::json!({ "cpus": cpus, "cpu_model": cpu_model, "kernel": kernel })
}
