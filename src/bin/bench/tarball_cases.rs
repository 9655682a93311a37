//! stigmem tarballs: `stigvault export` and `stigvault snapshot create` against
//! `stigmem snapshot create`, and `stigvault import` and `stigvault snapshot restore` against
//! `stigmem snapshot restore`, on the same database and the same stigmem-made tarball.
//!
//! stigmem's `snapshot create` CLI first applies its migrations, which fail on the bench
//! database (its schema is stigmem-like, not stigmem's full one: "no such table:
//! api_keys"). The peer side therefore calls stigmem's own `snapshot_create` function through
//! the venv's Python, which is the CLI minus that step; on an up-to-date node the step does
//! nothing anyway.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cases::{place, same_bytes, Case, Ctx, Figure, Sample, Side, Target, Unit};
use crate::proc;
use crate::workload;

/// Python that runs stigmem's `snapshot_create(db, out)` exactly as its CLI does, minus the
/// migrations (see the module docs).
const PY_CREATE: &str = "import sys; from pathlib import Path; \
from stigmem_node.snapshot import snapshot_create; \
snapshot_create(db_path=sys.argv[1], out_path=Path(sys.argv[2]))";

fn stigmem_exe<'a>(ctx: &'a Ctx) -> Result<&'a Path> {
    ctx.stigmem.context(
        "stigmem not found: pass --stigmem PATH (scripts/services.sh installs it and prints \
         its path as STIGVAULT_TEST_STIGMEM)",
    )
}

/// The venv's python, beside the stigmem entry point.
fn stigmem_python(stigmem: &Path) -> Result<PathBuf> {
    let py = stigmem
        .parent()
        .context("stigmem path has no directory")?
        .join("python");
    if !py.is_file() {
        bail!("{} not found beside {}", py.display(), stigmem.display());
    }
    Ok(py)
}

fn stigvault_cmd(ctx: &Ctx, store: &Path) -> Result<Command> {
    let exe = ctx
        .stigvault
        .context("stigvault side run without a stigvault binary")?;
    let mut c = Command::new(exe);
    c.env("STIGVAULT_STATE_DIR", ctx.dir.join("stigvault-state"))
        .arg("--store")
        .arg(store);
    Ok(c)
}

fn stigmem_create(stigmem: &Path, db: &Path, out: &Path) -> Result<Command> {
    let mut c = Command::new(stigmem_python(stigmem)?);
    c.arg("-c").arg(PY_CREATE).arg(db).arg(out);
    Ok(c)
}

fn dirs(ctx: &Ctx) -> Result<(PathBuf, PathBuf)> {
    let logs = ctx.dir.join("logs");
    let work = ctx.dir.join("work");
    for d in [&logs, &work] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    Ok((logs, work))
}

fn trusted_keys_file(ctx: &Ctx, dir: &Path) -> Result<PathBuf> {
    let p = dir.join("trusted-keys.json");
    fs::write(&p, serde_json::to_vec(&[&ctx.workload.federation_pubkey])?)?;
    Ok(p)
}

pub struct Export;

const EXPORT_FIGURES: &[Figure] = &[
    Figure {
        key: "export_secs",
        label: "export of a stored snapshot vs stigmem snapshot create, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 0.2 },
    },
    Figure {
        key: "create_secs",
        label: "stigvault snapshot create vs stigmem snapshot create, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 0.2 },
    },
    Figure {
        key: "tarball_bytes",
        label: "tarball size",
        unit: Unit::Bytes,
        target: Target::None,
    },
    Figure {
        key: "export_peak_rss_bytes",
        label: "peak RSS of export / stigmem create",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

impl Case for Export {
    fn name(&self) -> &'static str {
        "export"
    }
    fn peer(&self) -> &'static str {
        "stigmem"
    }
    fn figures(&self) -> &'static [Figure] {
        EXPORT_FIGURES
    }
    fn needs_restic(&self) -> bool {
        false
    }
    fn needs_stigmem(&self) -> bool {
        true
    }

    fn run(&self, side: Side, ctx: &Ctx) -> Result<Sample> {
        let (logs, work) = dirs(ctx)?;
        let db = work.join("stigmem.db");
        place(&ctx.workload.base, &db)?;
        let mut s = Sample::default();
        match side {
            Side::Stigvault => {
                let store = ctx.dir.join("store");
                let mut push = stigvault_cmd(ctx, &store)?;
                push.arg("push").arg("--db").arg(&db);
                let pushed = proc::run(push, &logs, "stigvault-push")?;
                let id = pushed
                    .stdout
                    .lines()
                    .next_back()
                    .context("push printed no id")?
                    .trim()
                    .to_owned();
                eprintln!("  stigvault: export {id}");
                let out = work.join("export.tar.gz");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.arg("export").arg(&id).arg("--out").arg(&out);
                let exported = proc::run(c, &logs, "stigvault-export")?;
                eprintln!("  stigvault: snapshot create");
                let created_out = work.join("create.tar.gz");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.args(["snapshot", "create", "--db"])
                    .arg(&db)
                    .arg("--out")
                    .arg(&created_out);
                let created = proc::run(c, &logs, "stigvault-snapshot-create")?;

                // A fast export of the wrong bytes would be no result: stigmem restores it
                // (untimed) and the result must be the pushed database.
                if let Some(stigmem) = ctx.stigmem {
                    let keys = trusted_keys_file(ctx, &work)?;
                    let restored = work.join("restored.db");
                    let mut c = Command::new(stigmem);
                    c.current_dir(&work)
                        .args(["snapshot", "restore", "--from"])
                        .arg(&out)
                        .arg("--db")
                        .arg(&restored)
                        .arg("--trusted-keys")
                        .arg(&keys);
                    proc::run(c, &logs, "stigmem-restore-of-export")?;
                    let facts = workload::count_facts(&restored)?;
                    if facts != ctx.workload.base_facts {
                        bail!(
                            "stigmem restored {facts} facts from our export, expected {}",
                            ctx.workload.base_facts
                        );
                    }
                }
                let size = fs::metadata(&out)?.len();
                s.values.insert("export_secs", exported.secs);
                s.values.insert("create_secs", created.secs);
                s.values.insert("tarball_bytes", size as f64);
                s.values
                    .insert("export_peak_rss_bytes", exported.max_rss as f64);
                s.details = json!({
                    "tool": "stigvault",
                    "snapshot_id": id,
                    "push_secs": pushed.secs,
                    "export_max_rss": exported.max_rss,
                    "create_max_rss": created.max_rss,
                    "create_tarball_bytes": fs::metadata(&created_out)?.len(),
                    "restored_by_stigmem": ctx.stigmem.is_some(),
                });
            }
            Side::Peer => {
                let stigmem = stigmem_exe(ctx)?;
                eprintln!("  stigmem: snapshot create");
                let out = work.join("create.tar.gz");
                let mut c = stigmem_create(stigmem, &db, &out)?;
                c.current_dir(&work);
                let created = proc::run(c, &logs, "stigmem-snapshot-create")?;
                let size = fs::metadata(&out)?.len();
                s.values.insert("export_secs", created.secs);
                s.values.insert("create_secs", created.secs);
                s.values.insert("tarball_bytes", size as f64);
                s.values
                    .insert("export_peak_rss_bytes", created.max_rss as f64);
                s.details =
                    json!({ "tool": "stigmem", "call": "snapshot_create() without migrations" });
            }
        }
        Ok(s)
    }
}

pub struct Import;

const IMPORT_FIGURES: &[Figure] = &[
    Figure {
        key: "import_secs",
        label: "import of a stigmem tarball vs stigmem snapshot restore, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "import_plus1_secs",
        label: "import of the +1% tarball after the base one vs stigmem snapshot restore of it",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "restore_secs",
        label: "stigvault snapshot restore vs stigmem snapshot restore, wall time",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "import_peak_rss_bytes",
        label: "peak RSS of import / stigmem restore",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

/// The stigmem-made tarball of a workload database (`base` or `plus1`) that both sides read;
/// made once per workload (untimed) and cached beside it.
fn shared_tarball(ctx: &Ctx, which: &str) -> Result<PathBuf> {
    let src = if which == "base" {
        &ctx.workload.base
    } else {
        &ctx.workload.plus1
    };
    let dir = src.parent().context("workload has no directory")?;
    let path = dir.join(format!("stigmem-{which}.tar.gz"));
    if path.is_file() {
        return Ok(path);
    }
    let stigmem = stigmem_exe(ctx)?;
    let (logs, work) = dirs(ctx)?;
    let db = work.join("stigmem.db");
    place(src, &db)?;
    let partial = dir.join(format!("stigmem-{which}.tar.gz.partial"));
    eprintln!("  making the shared stigmem tarball (once per workload)");
    let mut c = stigmem_create(stigmem, &db, &partial)?;
    c.current_dir(&work);
    proc::run(c, &logs, "stigmem-create-shared")?;
    fs::rename(&partial, &path)?;
    Ok(path)
}

impl Case for Import {
    fn name(&self) -> &'static str {
        "import"
    }
    fn peer(&self) -> &'static str {
        "stigmem"
    }
    fn figures(&self) -> &'static [Figure] {
        IMPORT_FIGURES
    }
    fn needs_restic(&self) -> bool {
        false
    }
    fn needs_stigmem(&self) -> bool {
        true
    }

    fn run(&self, side: Side, ctx: &Ctx) -> Result<Sample> {
        let tarball = shared_tarball(ctx, "base")?;
        let plus1 = shared_tarball(ctx, "plus1")?;
        let (logs, work) = dirs(ctx)?;
        let keys = trusted_keys_file(ctx, &work)?;
        let restored = work.join("restored.db");
        let mut s = Sample::default();
        match side {
            Side::Stigvault => {
                let store = ctx.dir.join("store");
                eprintln!("  stigvault: import");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.arg("import")
                    .arg(&tarball)
                    .arg("--trust")
                    .arg(&ctx.workload.federation_pubkey);
                let imported = proc::run(c, &logs, "stigvault-import")?;
                eprintln!("  stigvault: import of +1%");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.arg("import")
                    .arg(&plus1)
                    .arg("--trust")
                    .arg(&ctx.workload.federation_pubkey);
                let imported_plus1 = proc::run(c, &logs, "stigvault-import-plus1")?;
                eprintln!("  stigvault: snapshot restore");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.args(["snapshot", "restore", "--from"])
                    .arg(&tarball)
                    .arg("--db")
                    .arg(&restored)
                    .arg("--trusted-keys")
                    .arg(&keys);
                let restore = proc::run(c, &logs, "stigvault-snapshot-restore")?;
                // And the import must pull back to the same database.
                let id = imported
                    .stdout
                    .lines()
                    .next_back()
                    .context("import printed no id")?
                    .trim()
                    .to_owned();
                let pulled = work.join("pulled.db");
                let mut c = stigvault_cmd(ctx, &store)?;
                c.arg("pull")
                    .arg(&id)
                    .arg("--db")
                    .arg(&pulled)
                    .arg("--trust")
                    .arg(&ctx.workload.federation_pubkey);
                proc::run(c, &logs, "stigvault-pull-of-import")?;
                if !same_bytes(&pulled, &restored)? {
                    bail!("the imported snapshot pulls to different bytes than restore installs");
                }
                s.values.insert("import_secs", imported.secs);
                s.values.insert("import_plus1_secs", imported_plus1.secs);
                s.values.insert("restore_secs", restore.secs);
                s.values
                    .insert("import_peak_rss_bytes", imported.max_rss as f64);
                s.details = json!({
                    "tool": "stigvault",
                    "snapshot_id": id,
                    "restore_max_rss": restore.max_rss,
                });
            }
            Side::Peer => {
                let stigmem = stigmem_exe(ctx)?;
                eprintln!("  stigmem: snapshot restore");
                let mut c = Command::new(stigmem);
                c.current_dir(&work)
                    .args(["snapshot", "restore", "--from"])
                    .arg(&tarball)
                    .arg("--db")
                    .arg(&restored)
                    .arg("--trusted-keys")
                    .arg(&keys);
                let restore = proc::run(c, &logs, "stigmem-snapshot-restore")?;
                eprintln!("  stigmem: snapshot restore of +1%");
                let plus1_out = work.join("restored-plus1.db");
                let mut c = Command::new(stigmem);
                c.current_dir(&work)
                    .args(["snapshot", "restore", "--from"])
                    .arg(&plus1)
                    .arg("--db")
                    .arg(&plus1_out)
                    .arg("--trusted-keys")
                    .arg(&keys);
                let restore_plus1 = proc::run(c, &logs, "stigmem-snapshot-restore-plus1")?;
                s.values.insert("import_secs", restore.secs);
                s.values.insert("import_plus1_secs", restore_plus1.secs);
                s.values.insert("restore_secs", restore.secs);
                s.values
                    .insert("import_peak_rss_bytes", restore.max_rss as f64);
                s.details = json!({ "tool": "stigmem" });
            }
        }
        let facts = workload::count_facts(&restored)?;
        if facts != ctx.workload.base_facts {
            bail!(
                "restored database has {facts} facts, expected {}",
                ctx.workload.base_facts
            );
        }
        Ok(s)
    }
}
