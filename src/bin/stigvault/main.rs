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

/// The key that signs index entries this client writes for others' snapshots (import, copy,
/// forget, prune): `--sign-with KEYFILE`, else the client key in the state directory.
fn entry_signer(cli: &Cli, sign_with: Option<&std::path::Path>) -> anyhow::Result<SecretKey> {
    Ok(match sign_with {
        Some(p) => SecretKey::load_file(p)?,
        None => stigvault::tarball::client_key(
            &cli.state_dir
                .clone()
                .unwrap_or_else(ClientState::default_dir),
        )?,
    })
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
        Command::Copy { .. } | Command::Stats { .. } | Command::Verify { .. } => {
            return store_ops_command(&cli, &state).await;
        }
        Command::Export { .. } | Command::Import { .. } | Command::Snapshot(_) => {
            return tarball_command(&cli, &state).await;
        }
        Command::Forget { .. } | Command::Prune { .. } | Command::Gc { .. } => {
            return retention_command(&cli, &state).await;
        }
        Command::Ls { json } => {
            let store = open_store(&cli, false).await?;
            let index = Index::load(&store, &state).await?;
            let figures = stigvault::stats::snapshot_figures(&store, &index).await?;
            let rows: Vec<serde_json::Value> = index
                .snapshots()
                .into_iter()
                .zip(&figures)
                .map(|(e, f)| {
                    serde_json::json!({
                        "id": e.body.snapshot,
                        "created_at": e.body.created_at,
                        "node_id": e.body.node_id,
                        "signer_pubkey": e.body.signer_pubkey,
                        "db_sha256": e.body.db_sha256,
                        "db_bytes": e.body.db_bytes,
                        "stored_bytes": f.stored_bytes,
                        "new_bytes": f.new_bytes,
                        "shared_bytes": f.shared_bytes,
                        "freed_bytes": f.freed_bytes,
                        "pushed_bytes": e.body.new_bytes,
                    })
                })
                .collect();
            if *json {
                print_json(&rows)?;
            } else {
                print_table(&index, &figures);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `forget`, `prune` and `gc`.
async fn retention_command(cli: &Cli, state: &ClientState) -> anyhow::Result<ExitCode> {
    use stigvault::{gc, retention};
    let signer = |s: &cli::TombstoneSigner| -> anyhow::Result<SecretKey> {
        entry_signer(cli, s.sign_with.as_deref())
    };
    let store = open_store(cli, false).await?;
    match &cli.command {
        Command::Forget {
            ids,
            signer: s,
            dry_run,
            json,
        } => {
            let r = retention::forget(&store, state, ids, &signer(s)?, *dry_run).await?;
            print_forget(&r, *json)?;
        }
        Command::Prune {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            node,
            signer: s,
            dry_run,
            json,
        } => {
            let policy = retention::KeepPolicy {
                last: *keep_last,
                hourly: *keep_hourly,
                daily: *keep_daily,
                weekly: *keep_weekly,
                monthly: *keep_monthly,
            };
            let r = retention::prune(
                &store,
                state,
                &policy,
                node.as_deref(),
                &signer(s)?,
                *dry_run,
            )
            .await?;
            if !*json {
                for d in &r.decisions {
                    eprintln!(
                        "{} {}  {}  {}",
                        if d.keep { "keep  " } else { "forget" },
                        d.id,
                        d.created_at,
                        d.reasons.join(",")
                    );
                }
            }
            print_forget(&r, *json)?;
        }
        Command::Gc {
            grace,
            rewrite_below,
            dry_run,
            json,
        } => {
            let opts = gc::GcOptions {
                grace: gc::parse_duration(grace)?,
                dry_run: *dry_run,
                rewrite_below: *rewrite_below,
            };
            let r = gc::gc(&store, state, &opts).await?;
            if *json {
                print_json(&r)?;
            } else {
                let verb = if r.dry_run { "would free" } else { "freed" };
                println!(
                    "{verb} {} ({} packs, {} snapshots' roots and tables); rewrote {} packs; \
                     marked {} packs ({}) for deletion after {}",
                    human_bytes(r.bytes_freed),
                    r.packs_deleted,
                    r.snapshots_deleted,
                    r.packs_rewritten,
                    r.packs_marked,
                    human_bytes(r.bytes_marked),
                    grace
                );
            }
        }
        _ => unreachable!("retention_command is called for forget, prune and gc only"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_forget(r: &stigvault::retention::ForgetReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(r);
    }
    let verb = if r.dry_run { "would forget" } else { "forgot" };
    for id in &r.forgotten {
        println!("{verb} {id}");
    }
    eprintln!(
        "{verb} {} snapshots (tombstones signed by {})",
        r.forgotten.len(),
        r.signer_pubkey
    );
    Ok(())
}

fn print_table(index: &Index, figures: &[stigvault::stats::SnapshotFigures]) {
    let snaps = index.snapshots();
    if snaps.is_empty() {
        eprintln!("no snapshots yet; `stigvault push --db PATH` makes one");
        return;
    }
    println!(
        "{:<64}  {:<32}  {:<24}  {:<12}  {:>10}  {:>10}  {:>10}  {:>10}",
        "ID", "CREATED", "NODE", "SIGNER", "DB", "NEW", "SHARED", "FREED"
    );
    for (e, f) in snaps.into_iter().zip(figures) {
        let b = &e.body;
        println!(
            "{:<64}  {:<32}  {:<24}  {:<12}  {:>10}  {:>10}  {:>10}  {:>10}",
            b.snapshot,
            b.created_at,
            truncate(&b.node_id, 24),
            truncate(&b.signer_pubkey, 12),
            human_bytes(b.db_bytes),
            human_bytes(f.new_bytes),
            human_bytes(f.shared_bytes),
            human_bytes(f.freed_bytes)
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

/// `export`, `import` and `snapshot create|restore`: stigmem tarballs.
async fn tarball_command(cli: &Cli, state: &ClientState) -> anyhow::Result<ExitCode> {
    use stigvault::tarball;
    let keys =
        |file: &Option<std::path::PathBuf>, list: &[String]| -> anyhow::Result<Option<TrustSet>> {
            if file.is_none() && list.is_empty() {
                return Ok(None);
            }
            Ok(Some(trust_set(&TrustArgs {
                trusted_keys: file.clone(),
                trust: list.to_vec(),
                force_unverified: false,
            })?))
        };
    match &cli.command {
        Command::Export {
            id,
            out,
            trusted_keys,
            trust,
            json,
        } => {
            let store = open_store(cli, false).await?;
            let index = Index::load(&store, state).await?;
            let trust = keys(trusted_keys, trust)?;
            let snap = tarball::open_for_export(&store, &index, id, trust.as_ref()).await?;
            let report = tarball::export_to_file(&store, &snap, out, true).await?;
            if *json {
                print_json(&report)?;
            } else {
                eprintln!(
                    "exported {} to {} ({} bytes)",
                    report.id,
                    report.out.display(),
                    report.tarball_bytes
                );
            }
        }
        Command::Import {
            file,
            trusted_keys,
            trust,
            sign_with,
            prepack_mib,
            json,
        } => {
            let store = open_store(cli, true).await?;
            let trust = keys(trusted_keys, trust)?;
            let key = entry_signer(cli, sign_with.as_deref())?;
            let opts = tarball::ImportOptions {
                trust,
                progress: true,
                max_prepacked_bytes: prepack_mib.saturating_mul(1 << 20),
            };
            let report = tarball::import(&store, state, file, &key, &opts).await?;
            if *json {
                print_json(&report)?;
            } else {
                eprintln!(
                    "imported {} ({} bytes, {} of {} chunks new, {} added to the store)",
                    &report.id[..12],
                    report.db_bytes,
                    report.new_chunks,
                    report.chunks,
                    human_bytes(report.new_bytes)
                );
                if report.trust == tarball::TarballTrust::NotChecked {
                    eprintln!(
                        "signer {} was not checked against a trust set (no --trust or \
                         --trusted-keys); pull checks it",
                        report.signer_pubkey
                    );
                }
                println!("{}", report.id);
            }
        }
        Command::Snapshot(cli::SnapshotCommand::Create {
            out,
            sign_with,
            db,
            json,
        }) => {
            let opts = tarball::CreateOptions {
                db: db.clone(),
                out: out.clone(),
                sign_with: sign_with.as_ref().map(SecretKey::load_file).transpose()?,
                tmp_dir: None,
            };
            let report = tokio::task::spawn_blocking(move || tarball::create(&opts)).await??;
            // stigmem prints this line to stderr.
            eprintln!("snapshot created: {}", report.out.display());
            if *json {
                print_json(&report)?;
            }
        }
        Command::Snapshot(cli::SnapshotCommand::Restore {
            from,
            trusted_keys,
            force_unverified,
            db,
            json,
        }) => {
            let opts = tarball::RestoreOptions {
                from: from.clone(),
                db: db.clone(),
                trusted_keys: trusted_keys
                    .as_ref()
                    .map(TrustSet::load_trusted_keys_file)
                    .transpose()?,
                force_unverified: *force_unverified,
            };
            let report = tokio::task::spawn_blocking(move || tarball::restore(&opts)).await??;
            eprintln!("snapshot restored to {}", report.db.display());
            if *json {
                print_json(&report)?;
            }
        }
        _ => unreachable!("tarball_command is only called for tarball commands"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `copy`, `stats` and `verify`.
async fn store_ops_command(cli: &Cli, state: &ClientState) -> anyhow::Result<ExitCode> {
    use stigvault::{copy, stats, verify};
    match &cli.command {
        Command::Copy {
            ids,
            all,
            to,
            sign_with,
            json,
        } => {
            let src = open_store(cli, false).await?;
            let (inner, label) = copy::destination_from_url(to)?;
            let dst = Store::open_or_init(inner, &label).await?;
            let key = entry_signer(cli, sign_with.as_deref())?;
            let selection = if *all {
                copy::Selection::All
            } else {
                copy::Selection::Ids(ids.clone())
            };
            let mut opts = copy::CopyOptions::new(key);
            opts.progress = true;
            let report = copy::copy(&src, state, &dst, state, &selection, &opts).await?;
            if *json {
                print_json(&report)?;
            } else {
                for s in &report.snapshots {
                    eprintln!(
                        "{} {}: {} of {} chunks transferred, {} written",
                        &s.id[..12],
                        match s.status {
                            copy::CopyStatus::Copied => "copied",
                            copy::CopyStatus::Present => "already there",
                            copy::CopyStatus::ForgottenAtDestination => {
                                "forgotten at the destination, skipped"
                            }
                        },
                        s.copied_chunks,
                        s.chunks,
                        human_bytes(s.bytes_written)
                    );
                }
                let d = &report.destination_requests;
                eprintln!(
                    "copied {} snapshot(s) to {} ({} already there): {} uploaded in {} PUTs; \
                     {} read back in {} GETs to verify; signed by {}",
                    report.copied,
                    report.to,
                    report.present,
                    human_bytes(d.put_bytes),
                    d.puts,
                    human_bytes(d.get_bytes),
                    d.gets,
                    report.signer_pubkey
                );
            }
        }
        Command::Stats { json } => {
            let store = open_store(cli, false).await?;
            let index = Index::load(&store, state).await?;
            let s = stats::stats(&store, &index).await?;
            if *json {
                print_json(&s)?;
            } else {
                println!(
                    "snapshots      {} live, {} forgotten, {} node(s)",
                    s.snapshots, s.forgotten, s.nodes
                );
                println!("logical        {}", human_bytes(s.logical_bytes));
                println!(
                    "unique raw     {} in {} chunks",
                    human_bytes(s.unique_raw_bytes),
                    s.chunks
                );
                println!("stored         {}", human_bytes(s.stored_bytes));
                println!(
                    "ratios         dedup {:.2}x, compression {:.2}x, total {:.2}x",
                    s.dedup_ratio, s.compression_ratio, s.total_ratio
                );
                println!(
                    "packs          {} ({}; {} not referenced)",
                    s.packs,
                    human_bytes(s.pack_bytes),
                    human_bytes(s.unreferenced_pack_bytes)
                );
                println!(
                    "objects        {} ({})",
                    s.objects,
                    human_bytes(s.object_bytes)
                );
                for n in &s.per_node {
                    println!(
                        "node {}: {} snapshot(s), {} logical, {} stored ({} exclusive)",
                        n.node_id,
                        n.snapshots,
                        human_bytes(n.logical_bytes),
                        human_bytes(n.stored_bytes),
                        human_bytes(n.exclusive_bytes)
                    );
                }
            }
        }
        Command::Verify {
            ids,
            read_data,
            json,
        } => {
            let store = open_store(cli, false).await?;
            let opts = verify::VerifyOptions {
                snapshots: ids.clone(),
                read_data: *read_data,
                progress: true,
            };
            let report = verify::verify(&store, state, &opts).await?;
            if *json {
                print_json(&report)?;
            } else {
                for p in &report.problems {
                    println!("problem: {p}");
                }
                eprintln!(
                    "checked {} index entries, {} checkpoints, {} snapshots ({} forgotten), \
                     {} packs{}: {} problem(s)",
                    report.entries,
                    report.checkpoints,
                    report.snapshots,
                    report.forgotten.len(),
                    report.packs,
                    if *read_data {
                        format!(
                            ", {} of packs and {} of artifacts read",
                            human_bytes(report.pack_bytes_read),
                            human_bytes(report.artifact_bytes_checked)
                        )
                    } else {
                        String::new()
                    },
                    report.problems.len()
                );
            }
            if !report.is_ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => unreachable!("store_ops_command is only called for copy, stats and verify"),
    }
    Ok(ExitCode::SUCCESS)
}
