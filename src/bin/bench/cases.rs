//! The comparisons. Each case names a peer, the figures it measures and the target for each,
//! and knows how to run itself for either side. New comparisons (export/import against
//! `stigmem snapshot create/restore`, copy against `restic copy`, `verify --read-data` against
//! `restic check --read-data`) are added as further cases in [`all`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::proc;
use crate::tools::{Restic, Snapshotter, Stigvault};
use crate::workload::{self, Workload};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Secs,
    Bytes,
    /// A plain count (requests, objects).
    Count,
}

/// What a figure must reach. Every figure is "lower is better".
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// stigvault's value at most this multiple of the peer's.
    RatioAtMost { ratio: f64 },
    /// stigvault's value at most this, whatever the peer does.
    AtMost { value: f64 },
    /// Reported for context only.
    None,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub target: Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Stigvault,
    Peer,
}

/// One run of one side of a case: a value per figure key, and free-form details for the JSON.
#[derive(Debug, Default, Serialize)]
pub struct Sample {
    pub values: BTreeMap<&'static str, f64>,
    pub details: serde_json::Value,
}

/// What every run of a case can use.
pub struct Ctx<'a> {
    pub workload: &'a Workload,
    pub stigvault: Option<&'a Path>,
    pub restic: Option<&'a Path>,
    /// The stigmem CLI (in its venv), for the tarball cases.
    pub stigmem: Option<&'a Path>,
    /// A fresh directory for this run and side.
    pub dir: PathBuf,
}

pub trait Case {
    fn name(&self) -> &'static str;
    fn peer(&self) -> &'static str;
    fn figures(&self) -> &'static [Figure];
    /// Which tools the case needs; a case whose peer is skipped still runs stigvault's side.
    fn needs_restic(&self) -> bool;
    /// Whether the peer side needs the stigmem CLI.
    fn needs_stigmem(&self) -> bool {
        false
    }
    fn run(&self, side: Side, ctx: &Ctx) -> Result<Sample>;
}

pub fn all() -> Vec<Box<dyn Case>> {
    vec![
        Box::new(PushPull),
        Box::new(crate::tarball_cases::Export),
        Box::new(crate::tarball_cases::Import),
        Box::new(crate::store_ops_cases::CopyVerify),
    ]
}

const MIB: f64 = 1024.0 * 1024.0;

/// First push, a push after 1% more facts, and a pull of the second snapshot, against restic
/// backing up and restoring the same file.
pub struct PushPull;

const PUSH_PULL_FIGURES: &[Figure] = &[
    Figure {
        key: "plus1_added_bytes",
        label: "bytes added to the store by the +1% push",
        unit: Unit::Bytes,
        target: Target::RatioAtMost { ratio: 0.2 },
    },
    Figure {
        key: "first_push_secs",
        label: "first push, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 0.5 },
    },
    Figure {
        key: "pull_secs",
        label: "pull / restore of the +1% snapshot, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 0.5 },
    },
    Figure {
        key: "plus1_push_secs",
        label: "+1% push, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 0.35 },
    },
    Figure {
        key: "peak_rss_bytes",
        label: "peak RSS (largest of the three commands)",
        unit: Unit::Bytes,
        target: Target::AtMost { value: 64.0 * MIB },
    },
    Figure {
        key: "first_push_store_bytes",
        label: "store size after the first push",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

impl Case for PushPull {
    fn name(&self) -> &'static str {
        "push-pull"
    }

    fn peer(&self) -> &'static str {
        "restic"
    }

    fn figures(&self) -> &'static [Figure] {
        PUSH_PULL_FIGURES
    }

    fn needs_restic(&self) -> bool {
        true
    }

    fn run(&self, side: Side, ctx: &Ctx) -> Result<Sample> {
        let tool: Box<dyn Snapshotter> = match side {
            Side::Stigvault => Box::new(Stigvault {
                exe: ctx
                    .stigvault
                    .context("stigvault side run without a stigvault binary")?
                    .to_path_buf(),
                store: ctx.dir.join("store"),
                state: ctx.dir.join("stigvault-state"),
            }),
            Side::Peer => Box::new(Restic {
                exe: ctx
                    .restic
                    .context("restic side run without a restic binary")?
                    .to_path_buf(),
                repo: ctx.dir.join("repo"),
                cache: ctx.dir.join("restic-cache"),
            }),
        };
        push_pull(tool.as_ref(), ctx)
    }
}

fn push_pull(tool: &dyn Snapshotter, ctx: &Ctx) -> Result<Sample> {
    let name = tool.name();
    let w = ctx.workload;
    let logs = ctx.dir.join("logs");
    let db_dir = ctx.dir.join("db");
    let out_dir = ctx.dir.join("restored");
    for d in [&logs, &db_dir, &out_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // One path for both versions: the same database file, changed between two snapshots.
    let db = db_dir.join("stigmem.db");

    tool.init(&logs)?;
    let empty = proc::dir_size(tool.repo())?;

    place(&w.base, &db)?;
    eprintln!("  {name}: first push");
    let first = tool.push(&db, &logs, &format!("{name}-push-first"))?;
    let after_first = proc::dir_size(tool.repo())?;

    place(&w.plus1, &db)?;
    eprintln!("  {name}: +1% push");
    let second = tool.push(&db, &logs, &format!("{name}-push-plus1"))?;
    let after_second = proc::dir_size(tool.repo())?;

    eprintln!("  {name}: pull of {}", second.id);
    let pulled = tool.pull(&second.id, &db, &out_dir, &logs, &format!("{name}-pull"))?;

    // A fast pull of the wrong bytes would be no result at all.
    let identical = same_bytes(&pulled.restored, &w.plus1)?;
    let restored_facts = workload::count_facts(&pulled.restored)?;
    if restored_facts != w.plus1_facts {
        bail!(
            "{name}: restored database {} has {restored_facts} facts, expected {}",
            pulled.restored.display(),
            w.plus1_facts
        );
    }

    let mut s = Sample::default();
    let added = after_second.apparent.saturating_sub(after_first.apparent);
    s.values.insert("plus1_added_bytes", added as f64);
    s.values.insert("first_push_secs", first.run.secs);
    s.values.insert("plus1_push_secs", second.run.secs);
    s.values.insert("pull_secs", pulled.run.secs);
    s.values.insert(
        "peak_rss_bytes",
        first
            .run
            .max_rss
            .max(second.run.max_rss)
            .max(pulled.run.max_rss) as f64,
    );
    s.values.insert(
        "first_push_store_bytes",
        after_first.apparent.saturating_sub(empty.apparent) as f64,
    );
    s.details = json!({
        "tool": name,
        "snapshot_ids": [first.id, second.id],
        "store_size": {
            "empty": empty,
            "after_first_push": after_first,
            "after_plus1_push": after_second,
        },
        "plus1_added_on_disk_bytes": after_second.on_disk.saturating_sub(after_first.on_disk),
        "reported_data_added": {
            "first_push": first.reported_added,
            "plus1_push": second.reported_added,
        },
        "max_rss_bytes": {
            "first_push": first.run.max_rss,
            "plus1_push": second.run.max_rss,
            "pull": pulled.run.max_rss,
        },
        "pull_trust": pulled.trust,
        "restored_byte_identical": identical,
        "restored_facts": restored_facts,
    });
    Ok(s)
}

/// Puts a workload file at `dst` as the database the tool will snapshot. Stale `-wal`/`-shm`
/// files are removed first (SQLite would replay an old WAL onto the new file), and the copy
/// is synced so no write-back of it overlaps the measured command; it stays in the page cache,
/// so every tool reads it warm.
pub fn place(src: &Path, dst: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = dst.as_os_str().to_owned();
        p.push(suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {p:?}")),
        }
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    fs::File::open(dst)?.sync_all()?;
    Ok(())
}

pub fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let mut fa = std::io::BufReader::with_capacity(1 << 20, fs::File::open(a)?);
    let mut fb = std::io::BufReader::with_capacity(1 << 20, fs::File::open(b)?);
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = fa.read(&mut ba)?;
        if na == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..na])?;
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
}

/// Tools needed by the cases that will run, checked before any work starts.
pub fn resolve_restic(exe: &Path) -> Result<PathBuf> {
    proc::find_program(exe).with_context(|| {
        format!(
            "restic not found (looked for {}): install it (apt-get install restic), pass \
             --restic PATH, or pass --skip-restic to measure stigvault alone",
            exe.display()
        )
    })
}

pub fn resolve_stigvault(exe: Option<&Path>) -> Result<PathBuf> {
    let path = match exe {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating the bench executable")?
            .parent()
            .context("bench executable has no parent directory")?
            .join("stigvault"),
    };
    proc::find_program(&path).with_context(|| {
        format!(
            "stigvault binary not found at {}: build it with `cargo build --release --bin \
             stigvault`, or pass --stigvault PATH",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_keys_are_unique() {
        for case in all() {
            let mut keys: Vec<_> = case.figures().iter().map(|f| f.key).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), case.figures().len(), "case {}", case.name());
        }
    }
}
