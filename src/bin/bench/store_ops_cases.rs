//! Store operations on a series of ten snapshots, each 1% more facts than the last:
//! `stigvault copy` from a local store to S3 against `restic copy` to S3, and
//! `stigvault verify --read-data` against `restic check --read-data` on the local store.
//!
//! S3 is the Garage server that `scripts/services.sh start` runs (its env file sourced). The
//! requests each tool makes are read from Garage's own Prometheus counters
//! (`api_s3_request_counter`, by S3 operation) before and after the copy, so both tools are
//! counted the same way, by the server; bytes stored are summed from a listing of the
//! destination prefix. Nothing else may use that Garage during the case.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cases::{place, Case, Ctx, Figure, Sample, Side, Target, Unit};
use crate::proc;
use crate::workload;

/// Snapshots in the series.
const SNAPSHOTS: u64 = 10;
const RESTIC_PASSWORD: &str = "stigvault-bench";

pub struct CopyVerify;

const FIGURES: &[Figure] = &[
    Figure {
        key: "copy_stored_bytes",
        label: "copy of 10 +1% snapshots local→S3: bytes stored at the destination",
        unit: Unit::Bytes,
        target: Target::RatioAtMost { ratio: 0.5 },
    },
    Figure {
        key: "copy_requests",
        label: "copy of 10 +1% snapshots local→S3: S3 requests (server-counted)",
        unit: Unit::Count,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "copy_write_requests",
        label: "  of which writes (PutObject, UploadPart)",
        unit: Unit::Count,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "copy_secs",
        label: "copy of 10 +1% snapshots local→S3, wall time",
        unit: Unit::Secs,
        target: Target::None,
    },
    Figure {
        key: "verify_read_data_secs",
        label: "verify --read-data / check --read-data of the 10-snapshot local store",
        unit: Unit::Secs,
        target: Target::RatioAtMost { ratio: 1.0 },
    },
    Figure {
        key: "verify_peak_rss_bytes",
        label: "verify --read-data / check --read-data, peak RSS",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

impl Case for CopyVerify {
    fn name(&self) -> &'static str {
        "copy-verify"
    }

    fn peer(&self) -> &'static str {
        "restic"
    }

    fn figures(&self) -> &'static [Figure] {
        FIGURES
    }

    fn needs_restic(&self) -> bool {
        true
    }

    fn run(&self, side: Side, ctx: &Ctx) -> Result<Sample> {
        let garage = Garage::from_env()?;
        let logs = ctx.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let series = series(ctx)?;
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let tool: Box<dyn Tool> = match side {
            Side::Stigvault => Box::new(Sv {
                exe: ctx
                    .stigvault
                    .context("stigvault side run without a stigvault binary")?
                    .to_path_buf(),
                store: ctx.dir.join("store"),
                state: ctx.dir.join("state"),
            }),
            Side::Peer => Box::new(Rs {
                exe: ctx
                    .restic
                    .context("restic side run without a restic binary")?
                    .to_path_buf(),
                repo: ctx.dir.join("repo"),
                cache: ctx.dir.join("restic-cache"),
            }),
        };
        let name = tool.name();

        // Untimed: ten snapshots into the local store.
        tool.init(&logs)?;
        let db = ctx.dir.join("db").join("stigmem.db");
        std::fs::create_dir_all(db.parent().context("db has a parent")?)?;
        for (i, version) in series.iter().enumerate() {
            place(version, &db)?;
            eprintln!("  {name}: snapshot {}/{}", i + 1, series.len());
            tool.snapshot(&db, &logs, &format!("{name}-snapshot-{i}"))?;
        }
        let local = proc::dir_size(tool.local())?;

        // Timed: copy everything to S3.
        let before = garage.counters()?;
        eprintln!("  {name}: copy to s3://{}/{prefix}", garage.bucket);
        let (copy_run, copy_details) = tool.copy(&garage, &prefix, &logs)?;
        let after = garage.counters()?;
        let requests: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        let (objects, stored) = garage.prefix_size(&prefix)?;

        // Timed: read-data verification of the local store.
        eprintln!("  {name}: read-data verification of the local store");
        let verify = tool.verify(&logs)?;

        let mut s = Sample::default();
        s.values.insert("copy_stored_bytes", stored as f64);
        s.values
            .insert("copy_requests", requests.values().sum::<u64>() as f64);
        let writes: u64 = ["PutObject", "UploadPart"]
            .iter()
            .filter_map(|op| requests.get(*op))
            .sum();
        s.values.insert("copy_write_requests", writes as f64);
        s.values.insert("copy_secs", copy_run.secs);
        s.values.insert("verify_read_data_secs", verify.secs);
        s.values
            .insert("verify_peak_rss_bytes", verify.max_rss as f64);
        let logical: u64 = series
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        s.details = json!({
            "tool": name,
            "snapshots": series.len(),
            "logical_bytes": logical,
            "local_store_bytes": local,
            "copy": {
                "secs": copy_run.secs,
                "max_rss_bytes": copy_run.max_rss,
                "destination_objects": objects,
                "destination_bytes": stored,
                "s3_requests_by_operation": requests,
                "tool_report": copy_details,
            },
            "verify_read_data": {
                "secs": verify.secs,
                "max_rss_bytes": verify.max_rss,
                "store_mb_per_sec": local.apparent as f64 / 1e6 / verify.secs,
                "logical_mb_per_sec": logical as f64 / 1e6 / verify.secs,
            },
        });
        Ok(s)
    }
}

/// The ten databases of the series: the base, then each with 1% more facts than the last.
/// Built once per workload and cached beside it.
fn series(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let w = ctx.workload;
    let dir = w
        .base
        .parent()
        .context("workload base has a parent")?
        .join("series10");
    let paths: Vec<PathBuf> = (0..SNAPSHOTS)
        .map(|i| dir.join(format!("v{i:02}.db")))
        .collect();
    if paths.iter().all(|p| p.is_file()) {
        return Ok(paths);
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    let step = w.base_facts.div_ceil(100);
    let mut prev = w.base.clone();
    for i in 0..SNAPSHOTS {
        let p = partial.join(format!("v{i:02}.db"));
        std::fs::copy(&prev, &p)?;
        if i > 0 {
            eprintln!("  series: +1% step {i}");
            workload::grow(&p, w.seed ^ (0x5e71e5 + i), step)?;
        }
        prev = p;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&partial, &dir)?;
    Ok(paths)
}

/// The Garage server of the test services, from the env file `scripts/services.sh` writes.
struct Garage {
    endpoint: String,
    bucket: String,
    key_id: String,
    secret: String,
    region: String,
    admin: String,
    admin_token: String,
}

impl Garage {
    fn from_env() -> Result<Garage> {
        let v = |k: &str| {
            std::env::var(k).with_context(|| {
                format!(
                    "{k} is not set: start the services (scripts/services.sh start) and source \
                     their env file before running the copy-verify case"
                )
            })
        };
        let services = PathBuf::from(v("STIGVAULT_SERVICES_DIR")?);
        let toml_path = services.join("garage").join("garage.toml");
        let toml = std::fs::read_to_string(&toml_path)
            .with_context(|| format!("reading {}", toml_path.display()))?;
        // The [admin] section follows [s3_api]; take the last api_bind_addr.
        let value = |key: &str| {
            toml.lines()
                .rev()
                .filter_map(|l| l.trim().strip_prefix(key))
                .filter_map(|r| r.trim().strip_prefix('='))
                .map(|r| r.trim().trim_matches('"').to_string())
                .next()
                .with_context(|| format!("{key} not found in {}", toml_path.display()))
        };
        Ok(Garage {
            endpoint: v("STIGVAULT_TEST_GARAGE_ENDPOINT")?,
            bucket: v("STIGVAULT_TEST_GARAGE_BUCKET2")?,
            key_id: v("STIGVAULT_TEST_GARAGE_ACCESS_KEY_ID")?,
            secret: v("STIGVAULT_TEST_GARAGE_SECRET_ACCESS_KEY")?,
            region: v("STIGVAULT_TEST_GARAGE_REGION")?,
            admin: value("api_bind_addr")?,
            admin_token: value("admin_token")?,
        })
    }

    /// Garage's request counters, by S3 operation.
    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let mut s = std::net::TcpStream::connect(&self.admin)
            .with_context(|| format!("connecting to Garage's admin API at {}", self.admin))?;
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.admin, self.admin_token
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        let mut out = BTreeMap::new();
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("api_s3_request_counter{api_endpoint=\"") else {
                continue;
            };
            let Some((op, tail)) = rest.split_once("\"}") else {
                continue;
            };
            let n: f64 = tail.trim().parse().unwrap_or(0.0);
            out.insert(op.to_string(), n as u64);
        }
        if out.is_empty() {
            bail!(
                "Garage's /metrics at {} has no api_s3_request_counter",
                self.admin
            );
        }
        Ok(out)
    }

    /// Objects and bytes under `prefix` in the bucket.
    fn prefix_size(&self, prefix: &str) -> Result<(u64, u64)> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_region(&self.region)
            .with_allow_http(true)
            .build()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let p = object_store::path::Path::from(prefix);
        let metas: Vec<object_store::ObjectMeta> =
            rt.block_on(async { s3.list(Some(&p)).try_collect().await })?;
        Ok((metas.len() as u64, metas.iter().map(|m| m.size).sum()))
    }

    fn aws_env(&self, c: &mut Command, prefix: &str) {
        c.env(format!("{prefix}AWS_ACCESS_KEY_ID"), &self.key_id)
            .env(format!("{prefix}AWS_SECRET_ACCESS_KEY"), &self.secret)
            .env(format!("{prefix}AWS_REGION"), &self.region)
            .env(format!("{prefix}AWS_DEFAULT_REGION"), &self.region)
            .env(format!("{prefix}AWS_ENDPOINT"), &self.endpoint)
            .env(format!("{prefix}AWS_ALLOW_HTTP"), "true");
    }
}

trait Tool {
    fn name(&self) -> &'static str;
    fn local(&self) -> &Path;
    fn init(&self, logs: &Path) -> Result<()>;
    fn snapshot(&self, db: &Path, logs: &Path, label: &str) -> Result<()>;
    fn copy(
        &self,
        garage: &Garage,
        prefix: &str,
        logs: &Path,
    ) -> Result<(proc::Measured, serde_json::Value)>;
    fn verify(&self, logs: &Path) -> Result<proc::Measured>;
}

struct Sv {
    exe: PathBuf,
    store: PathBuf,
    state: PathBuf,
}

impl Sv {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("STIGVAULT_STATE_DIR", &self.state)
            .arg("--store")
            .arg(&self.store);
        c
    }
}

impl Tool for Sv {
    fn name(&self) -> &'static str {
        "stigvault"
    }

    fn local(&self) -> &Path {
        &self.store
    }

    fn init(&self, _logs: &Path) -> Result<()> {
        Ok(std::fs::create_dir_all(&self.store)?)
    }

    fn snapshot(&self, db: &Path, logs: &Path, label: &str) -> Result<()> {
        let mut c = self.cmd();
        c.arg("push").arg("--db").arg(db);
        proc::run(c, logs, label)?;
        Ok(())
    }

    fn copy(
        &self,
        garage: &Garage,
        prefix: &str,
        logs: &Path,
    ) -> Result<(proc::Measured, serde_json::Value)> {
        let mut c = self.cmd();
        c.args(["copy", "--all", "--json", "--to"])
            .arg(format!("s3://{}/{prefix}", garage.bucket));
        garage.aws_env(&mut c, "STIGVAULT_TO_");
        let run = proc::run(c, logs, "stigvault-copy")?;
        let report: serde_json::Value =
            serde_json::from_str(&run.stdout).context("parsing stigvault copy --json")?;
        let details = json!({
            "copied": report["copied"],
            "chunk_bytes": report["chunk_bytes"],
            "destination_requests": report["destination_requests"],
            "source_requests": report["source_requests"],
        });
        Ok((run, details))
    }

    fn verify(&self, logs: &Path) -> Result<proc::Measured> {
        let mut c = self.cmd();
        c.args(["verify", "--read-data"]);
        proc::run(c, logs, "stigvault-verify-read-data")
    }
}

struct Rs {
    exe: PathBuf,
    repo: PathBuf,
    cache: PathBuf,
}

impl Rs {
    fn cmd(&self, repo: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("RESTIC_REPOSITORY", repo)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_FROM_PASSWORD", RESTIC_PASSWORD)
            .arg("--cache-dir")
            .arg(&self.cache);
        c
    }

    fn local_cmd(&self) -> Command {
        self.cmd(&self.repo.to_string_lossy())
    }
}

impl Tool for Rs {
    fn name(&self) -> &'static str {
        "restic"
    }

    fn local(&self) -> &Path {
        &self.repo
    }

    fn init(&self, logs: &Path) -> Result<()> {
        let mut c = self.local_cmd();
        c.arg("init");
        proc::run(c, logs, "restic-init")?;
        Ok(())
    }

    fn snapshot(&self, db: &Path, logs: &Path, label: &str) -> Result<()> {
        let mut c = self.local_cmd();
        c.args(["backup", "--host", "bench"]).arg(db);
        proc::run(c, logs, label)?;
        Ok(())
    }

    fn copy(
        &self,
        garage: &Garage,
        prefix: &str,
        logs: &Path,
    ) -> Result<(proc::Measured, serde_json::Value)> {
        let dest = format!(
            "s3:{}/{}/{prefix}",
            garage.endpoint.trim_end_matches('/'),
            garage.bucket
        );
        let region = format!("s3.region={}", garage.region);
        // Untimed, but counted (as stigvault's store initialisation is): the destination
        // repository with the source's chunker parameters, so blobs can be copied as they are.
        let mut c = self.cmd(&dest);
        garage.aws_env(&mut c, "");
        c.args([
            "-o",
            &region,
            "init",
            "--copy-chunker-params",
            "--from-repo",
        ])
        .arg(&self.repo);
        proc::run(c, logs, "restic-init-s3")?;
        let mut c = self.cmd(&dest);
        garage.aws_env(&mut c, "");
        c.args(["-o", &region, "copy", "--from-repo"])
            .arg(&self.repo);
        let run = proc::run(c, logs, "restic-copy")?;
        Ok((run, json!({ "repository": dest })))
    }

    fn verify(&self, logs: &Path) -> Result<proc::Measured> {
        let mut c = self.local_cmd();
        c.args(["check", "--read-data"]);
        proc::run(c, logs, "restic-check-read-data")
    }
}
