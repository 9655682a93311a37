//! Drivers for the programs under test. Each is run as a subprocess, as a user would run it,
//! so the figures include process start-up and everything else a user waits for.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::proc::{self, Measured};
use crate::workload;

/// A push that made a snapshot.
pub struct Pushed {
    pub run: Measured,
    pub id: String,
    /// The tool's own account of new bytes it stored, where it gives one.
    pub reported_added: Option<u64>,
}

/// A pull or restore, and where the database ended up.
pub struct Pulled {
    pub run: Measured,
    pub restored: PathBuf,
    /// Command-line flags used for trust, for the record.
    pub trust: String,
}

/// Something that snapshots a database file into a local repository and restores it.
pub trait Snapshotter {
    fn name(&self) -> &'static str;
    /// Where the repository lives; its growth is what a push added.
    fn repo(&self) -> &Path;
    /// Creates the repository, if the tool needs that as a separate step (not timed).
    fn init(&self, logs: &Path) -> Result<()>;
    fn push(&self, db: &Path, logs: &Path, label: &str) -> Result<Pushed>;
    /// Restores snapshot `id` of `db` into `out_dir`; `db` is the pushed file, still in place.
    fn pull(&self, id: &str, db: &Path, out_dir: &Path, logs: &Path, label: &str)
        -> Result<Pulled>;
}

pub struct Stigvault {
    pub exe: PathBuf,
    pub store: PathBuf,
    /// The client's record of the index state it has verified; per run, so no run starts
    /// with another's state (and nothing is written to the user's home directory).
    pub state: PathBuf,
}

impl Stigvault {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("STIGVAULT_STATE_DIR", &self.state)
            .arg("--store")
            .arg(&self.store);
        c
    }
}

impl Snapshotter for Stigvault {
    fn name(&self) -> &'static str {
        "stigvault"
    }

    fn repo(&self) -> &Path {
        &self.store
    }

    fn init(&self, _logs: &Path) -> Result<()> {
        // A push creates the store; an empty directory stands for "nothing stored yet".
        std::fs::create_dir_all(&self.store)
            .with_context(|| format!("creating {}", self.store.display()))
    }

    fn push(&self, db: &Path, logs: &Path, label: &str) -> Result<Pushed> {
        let mut c = self.cmd();
        c.arg("push").arg("--db").arg(db);
        let run = proc::run(c, logs, label)?;
        let id = run
            .stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("{label}: stigvault push printed no snapshot id on stdout"))?;
        Ok(Pushed {
            run,
            id,
            reported_added: None,
        })
    }

    fn pull(
        &self,
        id: &str,
        db: &Path,
        out_dir: &Path,
        logs: &Path,
        label: &str,
    ) -> Result<Pulled> {
        // Trust the node's own key, read from the database after the push (push may have
        // created it). Without one, the pull has to be told to skip the signature check.
        let out = out_dir.join("stigmem.db");
        let mut c = self.cmd();
        c.arg("pull").arg(id).arg("--db").arg(&out);
        let trust = match workload::federation_pubkey(db)? {
            Some(key) => {
                c.arg("--trust").arg(&key);
                format!("--trust {key}")
            }
            None => {
                c.arg("--force-unverified");
                "--force-unverified".to_owned()
            }
        };
        let run = proc::run(c, logs, label)?;
        Ok(Pulled {
            run,
            restored: out,
            trust,
        })
    }
}

pub struct Restic {
    pub exe: PathBuf,
    pub repo: PathBuf,
    pub cache: PathBuf,
}

impl Restic {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", "stigvault-bench")
            .arg("--cache-dir")
            .arg(&self.cache);
        c
    }

    pub fn version(exe: &Path) -> Result<String> {
        let out = Command::new(exe)
            .arg("version")
            .output()
            .with_context(|| format!("running {} version", exe.display()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Snapshotter for Restic {
    fn name(&self) -> &'static str {
        "restic"
    }

    fn repo(&self) -> &Path {
        &self.repo
    }

    fn init(&self, logs: &Path) -> Result<()> {
        let mut c = self.cmd();
        c.arg("init");
        proc::run(c, logs, "restic-init")?;
        Ok(())
    }

    fn push(&self, db: &Path, logs: &Path, label: &str) -> Result<Pushed> {
        let mut c = self.cmd();
        // A fixed host keeps restic's parent-snapshot lookup stable between the two pushes.
        c.args(["backup", "--json", "--host", "bench"]).arg(db);
        let run = proc::run(c, logs, label)?;
        let summary = run
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .with_context(|| format!("{label}: restic backup --json printed no summary"))?;
        let id = summary["snapshot_id"]
            .as_str()
            .with_context(|| format!("{label}: restic summary has no snapshot_id"))?
            .to_owned();
        let reported_added = summary["data_added"].as_u64();
        Ok(Pushed {
            run,
            id,
            reported_added,
        })
    }

    fn pull(
        &self,
        id: &str,
        db: &Path,
        out_dir: &Path,
        logs: &Path,
        label: &str,
    ) -> Result<Pulled> {
        let mut c = self.cmd();
        c.args(["restore", id, "--target"]).arg(out_dir);
        let run = proc::run(c, logs, label)?;
        // restic recreates the absolute path below the target.
        let abs = std::path::absolute(db)?;
        let restored = out_dir.join(abs.strip_prefix("/").unwrap_or(&abs));
        if !restored.is_file() {
            bail!(
                "{label}: restic restore did not produce {}",
                restored.display()
            );
        }
        Ok(Pulled {
            run,
            restored,
            trust: "(MAC only)".to_owned(),
        })
    }
}
