//! `stigvault-bench`: stigvault against its peers on a stigmem-like workload.
//!
//! Run by hand, never as a test: see BENCH.md. Both sides are driven as subprocesses, the way
//! a user runs them; figures are wall time, peak RSS from `wait4`, and repository growth on
//! disk.

mod cases;
mod proc;
mod report;
mod store_ops_cases;
mod tarball_cases;
mod tools;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cases::{Ctx, Side};

/// Measure stigvault against restic on a stigmem-like SQLite database.
#[derive(Debug, Parser)]
#[command(name = "stigvault-bench", version)]
struct Args {
    /// Approximate size of the generated database, in MB (10^6 bytes).
    #[arg(long, default_value_t = 300)]
    size_mb: u64,

    /// Where generated databases are cached and results are written.
    #[arg(long, default_value = ".bench")]
    work_dir: PathBuf,

    /// The stigvault binary [default: `stigvault` next to this executable].
    #[arg(long)]
    stigvault: Option<PathBuf>,

    /// The restic binary, as a path or a name looked up on PATH.
    #[arg(long, default_value = "restic")]
    restic: PathBuf,

    /// The stigmem CLI for the export/import cases [default: $STIGVAULT_TEST_STIGMEM, else
    /// `stigmem` on PATH]; when not found those cases measure stigvault alone.
    #[arg(long, env = "STIGVAULT_TEST_STIGMEM")]
    stigmem: Option<PathBuf>,

    /// Run only these cases (repeatable; by name, e.g. `copy-verify`) [default: all].
    #[arg(long, value_name = "CASE")]
    only: Vec<String>,

    /// Runs per side; each figure reports the best (lowest) run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,

    /// Measure stigvault alone; peer columns stay empty and only absolute targets are judged.
    #[arg(long)]
    skip_restic: bool,

    /// Measure the peers alone (to try the harness before stigvault is built).
    #[arg(long, conflicts_with = "skip_restic")]
    skip_stigvault: bool,

    /// Keep the stores, restored files and logs of every run under the work directory.
    #[arg(long)]
    keep: bool,

    /// Build (or reuse) the workload and report how it changes, then stop.
    #[arg(long)]
    workload_only: bool,

    /// Seed of the workload generator; the default makes runs comparable across machines.
    #[arg(long, default_value_t = 0x5716_7a17)]
    seed: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stigvault-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    // Check for the tools before spending minutes on a database.
    let run_sides = !args.workload_only;
    let stigvault = if run_sides && !args.skip_stigvault {
        Some(cases::resolve_stigvault(args.stigvault.as_deref())?)
    } else {
        None
    };
    let restic = if run_sides && !args.skip_restic {
        Some(cases::resolve_restic(&args.restic)?)
    } else {
        None
    };
    let restic_version = restic.as_deref().map(tools::Restic::version).transpose()?;
    let stigmem = if run_sides {
        proc::find_program(
            args.stigmem
                .as_deref()
                .unwrap_or(std::path::Path::new("stigmem")),
        )
    } else {
        None
    };
    if run_sides && stigmem.is_none() {
        eprintln!(
            "stigmem not found (--stigmem PATH): the export/import cases measure stigvault alone"
        );
    }

    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let work_dir = std::path::absolute(&args.work_dir)?;
    let w = workload::prepare(&work_dir, args.size_mb, args.seed)?;
    report::print_workload(&w);
    if args.workload_only {
        return Ok(ExitCode::SUCCESS);
    }

    let root = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&work_dir)
        .context("creating a run directory")?;
    let cases: Vec<_> = cases::all()
        .into_iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|o| o == c.name()))
        .collect();
    let mut results = Vec::new();
    for case in &cases {
        let mut sides = Vec::new();
        if stigvault.is_some() {
            sides.push(Side::Stigvault);
        }
        if (restic.is_some() || !case.needs_restic())
            && (stigmem.is_some() || !case.needs_stigmem())
        {
            sides.push(Side::Peer);
        }
        let mut samples = Vec::new();
        for run in 0..args.runs {
            // Alternate which side goes first, so neither always inherits the other's
            // page-cache and write-back state.
            let mut order = sides.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let tag = match side {
                    Side::Stigvault => "stigvault",
                    Side::Peer => case.peer(),
                };
                eprintln!("{} run {}/{}: {tag}", case.name(), run + 1, args.runs);
                let ctx = Ctx {
                    workload: &w,
                    stigvault: stigvault.as_deref(),
                    restic: restic.as_deref(),
                    stigmem: stigmem.as_deref(),
                    dir: root.path().join(format!("{}-{tag}-{run}", case.name())),
                };
                let sample = case.run(side, &ctx)?;
                samples.push((side, run, sample));
                if !args.keep {
                    std::fs::remove_dir_all(&ctx.dir)
                        .with_context(|| format!("removing {}", ctx.dir.display()))?;
                }
            }
        }
        results.push(report::summarise(case.as_ref(), samples));
    }

    let table = report::markdown(&results);
    println!("{table}");
    let json_path = work_dir.join("results.json");
    let tools_info = serde_json::json!({
        "stigvault": stigvault,
        "restic": restic,
        "restic_version": restic_version,
        "stigmem": stigmem,
    });
    report::write_json(&json_path, &args_json(&args), &tools_info, &w, &results)?;
    eprintln!("results written to {}", json_path.display());
    if args.keep {
        let kept = root.keep();
        eprintln!("run directories kept in {}", kept.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn args_json(a: &Args) -> serde_json::Value {
    serde_json::json!({
        "size_mb": a.size_mb,
        "work_dir": a.work_dir,
        "runs": a.runs,
        "skip_restic": a.skip_restic,
        "skip_stigvault": a.skip_stigvault,
        "seed": a.seed,
    })
}
