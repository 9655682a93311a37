//! The `stigvault` binary: argument parsing, logging and exit codes over the library.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use stigvault::index::{ClientState, Index};
use stigvault::sign::{SecretKey, TrustSet};
use stigvault::store::{self, Store};
use stigvault::{pull, push};

use cli::{Cli, Command, TrustArgs};

fn main() -> ExitCode {
    limit_heap_retention();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold each time a large block is freed, after which the 4-8 MiB
/// pack and window buffers come from arenas that never shrink: a 300 MB pull peaked at 110 MiB
/// RSS instead of 58 MiB. A fixed threshold keeps large buffers in mmap, returned on free.
fn limit_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "stigvault=info,warn",
        _ => "stigvault=debug,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(cli))
}

async fn open_store(cli: &Cli, create: bool) -> anyhow::Result<Store> {
    let (inner, label) = store::resolve_url(cli.store.as_deref())?;
    Ok(if create {
        Store::open_or_init(inner, &label).await?
    } else {
        Store::open(inner, &label).await?
    })
}

fn trust_set(args: &TrustArgs) -> anyhow::Result<TrustSet> {
    let mut set = match &args.trusted_keys {
        Some(path) => TrustSet::load_trusted_keys_file(path)?,
        None => TrustSet::new(),
    };
    for k in &args.trust {
        set.add_b64url(k, "--trust")?;
    }
    Ok(set)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn run_async(cli: Cli) -> anyhow::Result<ExitCode> {
    let state = ClientState::at(
        cli.state_dir
            .clone()
            .unwrap_or_else(ClientState::default_dir),
    );
    match &cli.command {
        Command::Keygen { out } => {
            let key = SecretKey::generate()?;
            key.write_file(out)?;
            println!("{}", key.public());
        }
        Command::Push {
            db,
            sign_with,
            json,
        } => {
            let store = open_store(&cli, true).await?;
            let sign_with = sign_with.as_ref().map(SecretKey::load_file).transpose()?;
            let opts = push::PushOptions {
                db: db.clone(),
                sign_with,
                tmp_dir: None,
                progress: true,
            };
            let report = push::push(&store, &state, &opts).await?;
            if *json {
                print_json(&report)?;
            } else {
                eprintln!(
                    "pushed {} ({} bytes, {} of {} chunks new, {} added to the store)",
                    &report.id[..12],
                    report.db_bytes,
                    report.new_chunks,
                    report.chunks,
                    human_bytes(report.new_bytes)
                );
                println!("{}", report.id);
            }
        }
        Command::Pull {
            id,
            db,
            trust,
            json,
        } => {
            let store = open_store(&cli, false).await?;
            let opts = pull::PullOptions {
                db: db.clone(),
                trust: trust_set(trust)?,
                force_unverified: trust.force_unverified,
                progress: true,
            };
            let report = pull::pull(&store, &state, id, &opts).await?;
            if *json {
                print_json(&report)?;
            } else {
                eprintln!(
                    "restored snapshot {} to {} ({} bytes, signed by {})",
                    report.id,
                    report.db.display(),
                    report.db_bytes,
                    report.signer_pubkey
                );
            }
        }
        Command::Ls { json } => {
            let store = open_store(&cli, false).await?;
            let index = Index::load(&store, &state).await?;
            let rows: Vec<serde_json::Value> = index
                .snapshots()
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.body.snapshot,
                        "created_at": e.body.created_at,
                        "node_id": e.body.node_id,
                        "signer_pubkey": e.body.signer_pubkey,
                        "db_sha256": e.body.db_sha256,
                        "db_bytes": e.body.db_bytes,
                        "new_bytes": e.body.new_bytes,
                    })
                })
                .collect();
            if *json {
                print_json(&rows)?;
            } else {
                print_table(&index);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(index: &Index) {
    let snaps = index.snapshots();
    if snaps.is_empty() {
        eprintln!("no snapshots yet; `stigvault push --db PATH` makes one");
        return;
    }
    println!(
        "{:<64}  {:<32}  {:<24}  {:<12}  {:>10}  {:>10}",
        "ID", "CREATED", "NODE", "SIGNER", "DB", "NEW"
    );
    for e in snaps {
        let b = &e.body;
        println!(
            "{:<64}  {:<32}  {:<24}  {:<12}  {:>10}  {:>10}",
            b.snapshot,
            b.created_at,
            truncate(&b.node_id, 24),
            truncate(&b.signer_pubkey, 12),
            human_bytes(b.db_bytes),
            human_bytes(b.new_bytes)
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
