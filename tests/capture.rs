//! Capturing a live stigmem database: WAL content, concurrent writers, node identity, the
//! migration cursor, page sizes and integrity checks (`stigvault::sqlite`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::Connection;
use stigvault::sqlite::{self, NodeIdentity};
use stigvault::Error;

const NODE_META: &str = "CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// A WAL-mode database with autocheckpoint off, so that everything written through the
/// returned connection stays in the -wal until it is closed.
fn wal_db(path: &Path, page_size: u32) -> Connection {
    let conn = Connection::open(path).unwrap();
    // page_size must be set before the first table exists and before WAL mode is entered.
    conn.pragma_update(None, "page_size", page_size).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        .unwrap();
    conn
}

fn insert_rows(conn: &Connection, n: usize) {
    let tx = conn.unchecked_transaction().unwrap();
    for _ in 0..n {
        tx.execute("INSERT INTO t (payload) VALUES (randomblob(200))", [])
            .unwrap();
    }
    tx.commit().unwrap();
}

fn count(path: &Path, table: &str) -> rusqlite::Result<i64> {
    let conn = Connection::open(path)?;
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn assert_no_sidecars(path: &Path) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = sidecar(path, suffix);
        assert!(!side.exists(), "{} should not exist", side.display());
    }
}

#[test]
fn capture_includes_wal_frames_not_yet_checkpointed() {
    for page_size in [1024u32, 4096, 65536] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("stigmem.db");
        let writer = wal_db(&src, page_size);
        for _ in 0..5 {
            insert_rows(&writer, 100);
        }

        // The rows really are only in the WAL: the main file alone does not hold them.
        let wal_len = file_len(&sidecar(&src, "-wal"));
        assert!(wal_len > 0);
        let main_only = tmp.path().join("main-only.db");
        fs::copy(&src, &main_only).unwrap();
        assert_ne!(count(&main_only, "t").ok(), Some(500));

        // A transaction in flight on another connection must not show up in the copy.
        let pending = Connection::open(&src).unwrap();
        pending.execute_batch("BEGIN IMMEDIATE").unwrap();
        pending
            .execute("INSERT INTO t (payload) VALUES (x'00')", [])
            .unwrap();

        let wal_before = file_len(&sidecar(&src, "-wal"));
        let cap = sqlite::capture(&src, tmp.path()).unwrap();
        // The source was only read: the capture did not checkpoint or touch its WAL.
        assert_eq!(file_len(&sidecar(&src, "-wal")), wal_before);
        pending.execute_batch("COMMIT").unwrap();

        assert_eq!(cap.page_size(), page_size, "page size {page_size}");
        let bytes = fs::read(cap.path()).unwrap();
        assert_eq!(cap.db_len(), bytes.len() as u64);
        assert_eq!(sqlite::page_size_from_header(&bytes).unwrap(), page_size);
        let pages = u32::from_be_bytes(bytes[28..32].try_into().unwrap());
        assert_eq!(u64::from(pages) * u64::from(page_size), cap.db_len());
        // The header keeps the source's WAL mode (bytes 18/19 = 2), yet the content is all in
        // the main file: nothing is left beside it.
        assert_eq!((bytes[18], bytes[19]), (2, 2));
        assert_no_sidecars(cap.path());
        assert!(cap.cursor_versions().is_empty());

        // Reading the copy alone, from a place where no -wal could follow it.
        let alone = tmp.path().join("alone.db");
        fs::write(&alone, &bytes).unwrap();
        assert_eq!(count(&alone, "t").unwrap(), 500);
        sqlite::integrity_check(&alone).unwrap();

        let dir = cap.path().parent().unwrap().to_path_buf();
        assert!(dir.starts_with(tmp.path()));
        drop(cap);
        assert!(!dir.exists(), "the capture directory is removed on drop");
        drop(writer);
    }
}

#[test]
fn capture_copy_opens_in_wal_mode_and_stays_self_contained() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("stigmem.db");
    let writer = wal_db(&src, 4096);
    insert_rows(&writer, 50);
    let cap = sqlite::capture(&src, tmp.path()).unwrap();
    let before = fs::read(cap.path()).unwrap();
    {
        let conn = Connection::open(cap.path()).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    // Opening it as a reader changes nothing and leaves nothing behind.
    assert_eq!(fs::read(cap.path()).unwrap(), before);
    assert_no_sidecars(cap.path());
}

#[test]
fn capture_of_rollback_journal_database() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("plain.db");
    let conn = Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        .unwrap();
    insert_rows(&conn, 30);
    let cap = sqlite::capture(&src, tmp.path()).unwrap();
    let bytes = fs::read(cap.path()).unwrap();
    assert_eq!((bytes[18], bytes[19]), (1, 1));
    assert_eq!(count(cap.path(), "t").unwrap(), 30);
    assert_no_sidecars(cap.path());
}

#[test]
fn capture_of_a_missing_source_fails_without_creating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.db");
    assert!(matches!(
        sqlite::capture(&missing, tmp.path()),
        Err(Error::Io { .. })
    ));
    assert!(!missing.exists());
}

#[test]
fn capture_of_an_empty_file_is_an_empty_database() {
    // SQLite treats a zero-length file as an empty database; its copy is one valid page.
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.db");
    fs::write(&empty, b"").unwrap();
    let cap = sqlite::capture(&empty, tmp.path()).unwrap();
    assert_eq!(cap.db_len(), u64::from(cap.page_size()));
    sqlite::integrity_check(cap.path()).unwrap();
    assert_eq!(fs::read(&empty).unwrap(), b"", "the source is not written");
}

/// The writer process: transactions of exactly 10 rows, numbered by `batch`, until the stop
/// file appears (or a minute passes, so that a failed test cannot leave it running), with
/// `pause` seconds between transactions.
const WRITER: &str = r#"
import os, sqlite3, sys, time
db, mode, stop, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA journal_mode=" + mode)
n = 0
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    c.execute("BEGIN IMMEDIATE")
    for _ in range(10):
        c.execute("INSERT INTO t (batch, payload) VALUES (?, randomblob(300))", (n,))
    c.execute("COMMIT")
    n += 1
    time.sleep(pause)
    if n == 20:
        print("ready", flush=True)
print(n, flush=True)
"#;

/// Stops and reaps the writer even when an assertion fails.
struct Writer {
    child: Child,
    stop: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Writer {
    fn start(db: &Path, mode: &str, pause: &str, stop: PathBuf) -> Writer {
        let mut child = Command::new("python3")
            .args(["-c", WRITER])
            .arg(db)
            .arg(mode)
            .arg(&stop)
            .arg(pause)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Writer { child, stop, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("writer output")
    }

    fn finish(mut self) -> u64 {
        fs::write(&self.stop, b"").unwrap();
        let batches = self.next_line().parse().unwrap();
        assert!(self.child.wait().unwrap().success());
        batches
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = fs::write(&self.stop, b"");
        if let Ok(None) = self.child.try_wait() {
            thread::sleep(Duration::from_millis(200));
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

fn capture_during_writes(mode: &str, pause: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("busy.db");
    {
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, payload BLOB);
             CREATE INDEX t_batch ON t (batch);",
        )
        .unwrap();
    }
    let writer = Writer::start(&src, mode, pause, tmp.path().join("stop"));
    assert_eq!(writer.next_line(), "ready");

    let mut last = 0;
    for _ in 0..8 {
        let cap = sqlite::capture(&src, tmp.path()).unwrap();
        sqlite::integrity_check(cap.path()).unwrap();
        let conn = Connection::open(cap.path()).unwrap();
        let (rows, batches, max_batch): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT batch), max(batch) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        // Exactly the first `batches` transactions, each complete.
        assert_eq!(rows % 10, 0, "{mode}: torn transaction, {rows} rows");
        assert_eq!(rows, batches * 10, "{mode}");
        assert_eq!(max_batch + 1, batches, "{mode}: a transaction is missing");
        assert!(rows >= last, "{mode}: {rows} rows after {last}");
        last = rows;
        thread::sleep(Duration::from_millis(30));
    }
    let total = writer.finish();
    assert!(
        total * 10 > u64::try_from(last).unwrap(),
        "{mode}: the writer kept writing during the captures"
    );
}

#[test]
fn capture_while_another_process_writes_wal() {
    // No pause at all: WAL readers never wait for the writer.
    capture_during_writes("wal", "0");
}

#[test]
fn capture_while_another_process_writes_rollback_journal() {
    // In rollback-journal mode a writer's commit locks readers out, and a writer that
    // commits back to back starves them for seconds (the capture still succeeds, slowly).
    // A real node leaves gaps; so does this writer.
    capture_during_writes("delete", "0.005");
}

// ---- node identity ---------------------------------------------------------------------

fn stigmem_db(dir: &Path) -> PathBuf {
    let path = dir.join("stigmem.db");
    let conn = Connection::open(&path).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(NODE_META).unwrap();
    path
}

fn node_meta(path: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, value FROM node_meta ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn decode_key(s: &str) -> [u8; 32] {
    assert!(!s.contains('='), "unpadded");
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
        .try_into()
        .expect("32 bytes")
}

#[test]
fn ensure_identity_creates_missing_entries_in_stigmem_format() {
    let tmp = tempfile::tempdir().unwrap();
    let db = stigmem_db(tmp.path());
    let id = sqlite::ensure_identity(&db).unwrap();

    let uuid = id.node_id.strip_prefix("stigmem:node:").expect("prefix");
    let uuid = uuid::Uuid::parse_str(uuid).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    // Hyphenated lowercase, as Python's str(uuid.uuid4()).
    assert_eq!(id.node_id, format!("stigmem:node:{}", uuid.hyphenated()));

    let seed = decode_key(&id.federation_privkey);
    let public = decode_key(&id.federation_pubkey);
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(derived.to_bytes(), public, "the pair belongs together");

    assert_eq!(
        node_meta(&db),
        vec![
            ("federation_privkey".into(), id.federation_privkey.clone()),
            ("federation_pubkey".into(), id.federation_pubkey.clone()),
            ("node_id".into(), id.node_id.clone()),
        ]
    );
    assert!(!format!("{id:?}").contains(&id.federation_privkey));
    assert_eq!(
        sqlite::read_federation_pubkey(&db).unwrap(),
        Some(id.federation_pubkey)
    );
}

#[test]
fn ensure_identity_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let db = stigmem_db(tmp.path());
    let first = sqlite::ensure_identity(&db).unwrap();
    let rows = node_meta(&db);
    let second = sqlite::ensure_identity(&db).unwrap();
    assert_eq!(first, second);
    assert_eq!(node_meta(&db), rows);
}

#[test]
fn ensure_identity_preserves_existing_values() {
    let tmp = tempfile::tempdir().unwrap();
    let db = stigmem_db(tmp.path());
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO node_meta VALUES ('node_id', 'stigmem:node:configured-by-settings');
         INSERT INTO node_meta VALUES ('federation_pubkey', 'existing-pub');
         INSERT INTO node_meta VALUES ('federation_privkey', 'existing-priv');
         INSERT INTO node_meta VALUES ('other', 'untouched');",
    )
    .unwrap();
    drop(conn);
    let before = node_meta(&db);
    let id = sqlite::ensure_identity(&db).unwrap();
    assert_eq!(
        id,
        NodeIdentity {
            node_id: "stigmem:node:configured-by-settings".into(),
            federation_pubkey: "existing-pub".into(),
            federation_privkey: "existing-priv".into(),
        }
    );
    assert_eq!(node_meta(&db), before);
}

#[test]
fn ensure_identity_regenerates_both_keys_when_one_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = stigmem_db(tmp.path());
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO node_meta VALUES ('node_id', 'stigmem:node:kept');
         INSERT INTO node_meta VALUES ('federation_pubkey', 'orphan-pub');",
    )
    .unwrap();
    drop(conn);
    let id = sqlite::ensure_identity(&db).unwrap();
    assert_eq!(id.node_id, "stigmem:node:kept");
    assert_ne!(id.federation_pubkey, "orphan-pub");
    let seed = decode_key(&id.federation_privkey);
    assert_eq!(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
        decode_key(&id.federation_pubkey)
    );
    assert_eq!(node_meta(&db).len(), 3);
}

#[test]
fn ensure_identity_rejects_a_database_without_node_meta() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("other.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE something_else (x)")
        .unwrap();
    let err = sqlite::ensure_identity(&db).unwrap_err();
    assert!(matches!(&err, Error::NotStigmemDatabase { path } if path == &db));
    let msg = err.to_string();
    assert!(msg.contains("not a stigmem database"), "{msg}");
    assert!(msg.contains("node_meta"), "{msg}");
    // Nothing was created.
    let conn = Connection::open(&db).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn ensure_identity_never_creates_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("typo.db");
    assert!(matches!(
        sqlite::ensure_identity(&db),
        Err(Error::Io { .. })
    ));
    assert!(!db.exists());
}

#[test]
fn ensure_identity_waits_for_a_concurrent_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let db = stigmem_db(tmp.path());
    let (locked_tx, locked) = mpsc::channel();
    let holder = {
        let db = db.clone();
        thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO node_meta VALUES ('x', 'y');")
                .unwrap();
            locked_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(700));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked.recv().unwrap();
    let id = sqlite::ensure_identity(&db).unwrap();
    holder.join().unwrap();
    assert!(id.node_id.starts_with("stigmem:node:"));
    assert_eq!(node_meta(&db).len(), 4);
}

#[test]
fn read_federation_pubkey_is_none_when_anything_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.db");
    assert_eq!(sqlite::read_federation_pubkey(&missing).unwrap(), None);
    assert!(!missing.exists(), "not created");

    let no_table = tmp.path().join("no-table.db");
    Connection::open(&no_table)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert_eq!(sqlite::read_federation_pubkey(&no_table).unwrap(), None);

    let db = stigmem_db(tmp.path());
    assert_eq!(sqlite::read_federation_pubkey(&db).unwrap(), None);
    Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO node_meta VALUES ('federation_pubkey', 'abc')")
        .unwrap();
    assert_eq!(
        sqlite::read_federation_pubkey(&db).unwrap().as_deref(),
        Some("abc")
    );
}

// ---- migration cursor ------------------------------------------------------------------

#[test]
fn cursor_lists_applied_migrations_in_ascending_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("stigmem.db");
    let conn = wal_db(&src, 4096);
    conn.execute_batch(
        "CREATE TABLE schema_migrations (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             version TEXT NOT NULL UNIQUE,
             applied_at TEXT NOT NULL);
         INSERT INTO schema_migrations (version, applied_at) VALUES ('0003_fts', 'x');
         INSERT INTO schema_migrations (version, applied_at) VALUES ('0001_init', 'x');
         INSERT INTO schema_migrations (version, applied_at) VALUES ('0002_facts', 'x');",
    )
    .unwrap();
    let cap = sqlite::capture(&src, tmp.path()).unwrap();
    assert_eq!(
        cap.cursor_versions(),
        ["0001_init", "0002_facts", "0003_fts"]
    );
}

#[test]
fn cursor_is_empty_without_schema_migrations() {
    let tmp = tempfile::tempdir().unwrap();
    let src = stigmem_db(tmp.path());
    let cap = sqlite::capture(&src, tmp.path()).unwrap();
    assert!(cap.cursor_versions().is_empty());
}

// ---- header and integrity --------------------------------------------------------------

fn header(raw_page_size: u16) -> Vec<u8> {
    let mut h = b"SQLite format 3\0".to_vec();
    h.extend_from_slice(&raw_page_size.to_be_bytes());
    h.resize(100, 0);
    h
}

#[test]
fn page_size_from_header_accepts_every_valid_size() {
    for size in [512u32, 1024, 2048, 4096, 8192, 16384, 32768] {
        let raw = u16::try_from(size).unwrap();
        assert_eq!(sqlite::page_size_from_header(&header(raw)).unwrap(), size);
    }
    // 65536 does not fit in 16 bits; SQLite stores it as 1.
    assert_eq!(sqlite::page_size_from_header(&header(1)).unwrap(), 65536);
    // Only the first 18 bytes matter.
    assert_eq!(
        sqlite::page_size_from_header(&header(4096)[..18]).unwrap(),
        4096
    );
}

#[test]
fn page_size_from_header_rejects_bad_headers() {
    for raw in [0u16, 2, 256, 511, 3000, 4095, 4097, 0xffff] {
        let err = sqlite::page_size_from_header(&header(raw)).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{raw}: {err}");
    }
    let mut bad_magic = header(4096);
    bad_magic[0] = b's';
    assert!(sqlite::page_size_from_header(&bad_magic).is_err());
    assert!(sqlite::page_size_from_header(&header(4096)[..17]).is_err());
    assert!(sqlite::page_size_from_header(b"").is_err());
}

#[test]
fn integrity_check_passes_on_a_good_database() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("good.db");
    let conn = wal_db(&src, 4096);
    insert_rows(&conn, 100);
    drop(conn);
    let before = fs::read(&src).unwrap();
    sqlite::integrity_check(&src).unwrap();
    assert_eq!(fs::read(&src).unwrap(), before, "the check does not write");
    assert_no_sidecars(&src);
}

#[test]
fn integrity_check_reports_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("corrupt.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
             CREATE INDEX t_payload ON t (payload);",
        )
        .unwrap();
        insert_rows(&conn, 2000);
    }
    // Overwrite a page in the middle of the file with garbage.
    let mut bytes = fs::read(&db).unwrap();
    let page = 4096;
    let mid = bytes.len() / page / 2 * page;
    bytes[mid..mid + page].fill(0x5a);
    fs::write(&db, &bytes).unwrap();

    let err = sqlite::integrity_check(&db).unwrap_err();
    assert!(err.is_verification_failure());
    match err {
        Error::IntegrityCheck { path, detail } => {
            assert_eq!(path, db);
            assert!(!detail.is_empty());
        }
        other => panic!("expected an integrity failure, got {other}"),
    }

    let garbage = tmp.path().join("garbage.db");
    fs::write(&garbage, vec![0x42; 8192]).unwrap();
    assert!(matches!(
        sqlite::integrity_check(&garbage),
        Err(Error::IntegrityCheck { .. })
    ));
}
