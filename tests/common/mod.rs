//! Shared test helpers: one fresh store per backend, stigmem-like workload databases, keys,
//! and the CLI binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use object_store::ObjectStore;
use rusqlite::Connection;
use stigvault::index::ClientState;
use stigvault::sign::{PublicKey, TrustSet};
use stigvault::store::{self, Store};

/// The backends every round trip runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Local,
    Garage,
    Moto,
}

/// Generate one test per backend for each named `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Memory).await } )* }
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Local).await } )* }
        mod garage { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Garage).await } )* }
        mod moto { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Moto).await } )* }
    };
}

/// A fresh, empty store on one backend, with a temp dir for databases and client state.
pub struct TestStore {
    pub backend: Backend,
    pub inner: Arc<dyn ObjectStore>,
    pub label: String,
    pub dir: tempfile::TempDir,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need the real servers that `scripts/check.sh` \
             starts (or run `scripts/services.sh start` and source the env file it writes)"
        )
    })
}

/// An S3 store on the server described by `STIGVAULT_TEST_<server>_*`, under a fresh prefix.
pub fn s3_store(server: &str, bucket_var: &str, prefix: &str) -> Arc<dyn ObjectStore> {
    let v = |k: &str| env(&format!("STIGVAULT_TEST_{server}_{k}"));
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(v("ENDPOINT"))
        .with_bucket_name(v(bucket_var))
        .with_access_key_id(v("ACCESS_KEY_ID"))
        .with_secret_access_key(v("SECRET_ACCESS_KEY"))
        .with_region(v("REGION"))
        .with_allow_http(true)
        .build()
        .expect("S3 store builds");
    store::with_prefix(Arc::new(s3), prefix)
}

fn unique() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = unique();
        let (inner, label): (Arc<dyn ObjectStore>, String) = match backend {
            Backend::Memory => (
                Arc::new(object_store::memory::InMemory::new()),
                format!("memory://{prefix}"),
            ),
            Backend::Local => {
                let p = dir.path().join("store");
                (
                    store::local_store(&p).expect("local store"),
                    format!("file://{}", p.display()),
                )
            }
            Backend::Garage => (
                s3_store("GARAGE", "BUCKET", &prefix),
                format!("garage/{prefix}"),
            ),
            Backend::Moto => (
                s3_store("MOTO", "BUCKET", &prefix),
                format!("moto/{prefix}"),
            ),
        };
        TestStore {
            backend,
            inner,
            label,
            dir,
        }
    }

    /// Open (initialising if needed) a new handle on the store.
    pub async fn open(&self) -> Store {
        Store::open_or_init(self.inner.clone(), &self.label)
            .await
            .expect("store opens")
    }

    /// A client state directory of this test.
    pub fn state(&self) -> ClientState {
        ClientState::at(self.dir.path().join("state"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Create a stigmem-like database: node_meta, schema_migrations, and `rows` facts with random
/// UUID keys, secondary indexes and an FTS5 table, in WAL mode with 4 KiB pages.
pub fn make_db(path: &Path, rows: usize) -> Connection {
    let conn = Connection::open(path).expect("open db");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn.execute_batch(
        "PRAGMA page_size = 4096;
         PRAGMA journal_mode = WAL;
         CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE schema_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT,
             version TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL);
         INSERT INTO schema_migrations (version, applied_at) VALUES
             ('001_initial', '2026-01-01'), ('002_federation', '2026-02-01');
         CREATE TABLE facts (id TEXT PRIMARY KEY, subject TEXT, predicate TEXT, object TEXT,
             confidence REAL, created_at TEXT);
         CREATE INDEX facts_subject ON facts(subject);
         CREATE INDEX facts_predicate ON facts(predicate, created_at);
         CREATE INDEX facts_object ON facts(object);
         CREATE VIRTUAL TABLE facts_fts USING fts5(object);
         CREATE TRIGGER facts_ai AFTER INSERT ON facts BEGIN
             INSERT INTO facts_fts(rowid, object) VALUES (new.rowid, new.object);
         END;",
    )
    .expect("schema");
    insert_facts(&conn, rows);
    conn
}

/// Insert `rows` facts in one transaction.
pub fn insert_facts(conn: &Connection, rows: usize) {
    // IMMEDIATE, as real writers do: a deferred transaction that must upgrade to a write lock
    // fails at once with SQLITE_BUSY when another connection writes, busy timeout or not.
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut st = conn
            .prepare_cached("INSERT INTO facts VALUES (?1, ?2, ?3, ?4, ?5, datetime('now'))")
            .expect("prepare");
        for i in 0..rows {
            let id = uuid::Uuid::new_v4().to_string();
            let n = id.as_bytes()[0] as usize;
            st.execute(rusqlite::params![
                id,
                format!("entity:{}", n % 97),
                format!("rel:{}", i % 13),
                format!("value {} {}", id, "lorem ipsum ".repeat(n % 7)),
                (n % 100) as f64 / 100.0,
            ])
            .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
}

pub fn count_facts(path: &Path) -> i64 {
    let c = Connection::open(path).expect("open");
    c.query_row("SELECT count(*) FROM facts", [], |r| r.get(0))
        .expect("count")
}

/// The database's federation public key (after a push created it).
pub fn node_key(path: &Path) -> PublicKey {
    let c = Connection::open(path).expect("open");
    let k: String = c
        .query_row(
            "SELECT value FROM node_meta WHERE key = 'federation_pubkey'",
            [],
            |r| r.get(0),
        )
        .expect("federation_pubkey");
    PublicKey::from_b64url(&k, "test").expect("key")
}

pub fn trust(keys: &[&PublicKey]) -> TrustSet {
    keys.iter().map(|k| (*k).clone()).collect()
}

/// A writer that commits 10-row transactions until stopped; returns how many it committed.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<usize>,
}

impl Writer {
    pub fn start(path: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || {
            let c = Connection::open(&path).expect("writer opens");
            c.busy_timeout(std::time::Duration::from_secs(10))
                .expect("busy");
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                insert_facts(&c, 10);
                n += 1;
            }
            n
        });
        Writer { stop, handle }
    }

    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread")
    }
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// The CLI binary built for these tests.
pub fn cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stigvault"));
    c.env_remove("STIGVAULT_STORE").env_remove("RUST_LOG");
    c
}

/// Push options for `db`, signed by its node key unless `sign_with` is given.
pub fn push_opts(
    db: &Path,
    sign_with: Option<stigvault::sign::SecretKey>,
) -> stigvault::push::PushOptions {
    stigvault::push::PushOptions {
        db: db.to_path_buf(),
        sign_with,
        tmp_dir: None,
        progress: false,
    }
}

/// Pull options into `db` with `trust`.
pub fn pull_opts(
    db: &Path,
    trust: TrustSet,
    force_unverified: bool,
) -> stigvault::pull::PullOptions {
    stigvault::pull::PullOptions {
        db: db.to_path_buf(),
        trust,
        force_unverified,
        progress: false,
    }
}

/// A snapshot index entry body for `snapshot` signed by `signer`, for tests that write
/// index entries directly.
pub fn entry_body(
    signer: &stigvault::sign::SecretKey,
    snapshot: String,
) -> stigvault::format::index::EntryBody {
    stigvault::format::index::EntryBody {
        kind: stigvault::format::index::EntryKind::Snapshot,
        snapshot,
        created_at: "2026-11-26T00:00:00+00:00".into(),
        node_id: "stigmem:node:test".into(),
        signer_pubkey: signer.public().to_b64url(),
        db_sha256: "00".repeat(32),
        db_bytes: 0,
        new_bytes: 0,
        parents: vec![],
        written_at_ms: 0,
    }
}
