//! Atomic installation of a database (`stigvault::install`): staging files, replacing a
//! live-format database, stale side files, and refusing a database that is in use.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rusqlite::Connection;
use stigvault::install::{self, Staging};
use stigvault::{sqlite, Error};

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

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A cleanly closed WAL-mode database with `rows` rows tagged `tag`, returned as bytes.
fn db_bytes(scratch: &Path, tag: &str, rows: usize) -> Vec<u8> {
    let path = scratch.join(format!("{tag}.db"));
    {
        let conn = Connection::open(&path).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT, payload BLOB)")
            .unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..rows {
            tx.execute(
                "INSERT INTO t (tag, payload) VALUES (?1, randomblob(100))",
                [tag],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    bytes
}

fn stage(dest: &Path, bytes: &[u8]) -> Staging {
    let mut staging = Staging::beside(dest).unwrap();
    staging.write_all(bytes).unwrap();
    staging
}

fn tags(path: &Path) -> Vec<(String, i64)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Like a stigmem node killed mid-run: rows committed into the WAL, the process gone
/// without checkpointing, `-wal` and `-shm` left beside the database.
fn crashed_writer(db: &Path, tag: &str, rows: usize) {
    let script = r#"
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, tag TEXT, payload BLOB)")
c.execute("BEGIN")
for _ in range(int(sys.argv[3])):
    c.execute("INSERT INTO t (tag, payload) VALUES (?, randomblob(100))", (sys.argv[2],))
c.execute("COMMIT")
os._exit(0)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .arg(tag)
        .arg(rows.to_string())
        .status()
        .expect("python3 is needed for this test");
    assert!(status.success());
    assert!(fs::metadata(sidecar(db, "-wal")).unwrap().len() > 0);
}

/// Rows of `tag` visible in the main file alone, without its WAL.
fn rows_in_main_file_alone(db: &Path, scratch: &Path, tag: &str) -> i64 {
    let alone = scratch.join("main-file-alone.db");
    fs::copy(db, &alone).unwrap();
    let n = Connection::open(&alone)
        .and_then(|c| c.query_row("SELECT count(*) FROM t WHERE tag = ?1", [tag], |r| r.get(0)))
        .unwrap_or(0);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(sidecar(&alone, suffix));
    }
    n
}

/// A python process holding the database open, as a running stigmem node does.
struct Holder(Child);

impl Holder {
    /// `hold_write`: also keep an uncommitted write transaction open.
    fn start(db: &Path, hold_write: bool) -> Holder {
        let script = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("SELECT count(*) FROM t").fetchone()
if sys.argv[2] == "1":
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO t (tag) VALUES ('uncommitted')")
print("ready", flush=True)
sys.stdin.read()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(db)
            .arg(if hold_write { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin lets it exit on its own; kill only if it does not.
        drop(self.0.stdin.take());
        if self.0.wait().is_err() {
            let _ = self.0.kill();
        }
    }
}

#[test]
fn staging_is_hidden_beside_dest_and_removed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    let mut staging = Staging::beside(&dest).unwrap();
    let path = staging.path().to_path_buf();
    assert_eq!(path.parent().unwrap(), tmp.path());
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(".stigmem.db.stigvault-"), "{name}");
    staging.write_all(b"partial").unwrap();
    staging.file_mut().flush().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"partial");
    drop(staging);
    assert!(!path.exists());
    assert!(names_in(tmp.path()).is_empty());
}

#[test]
fn staging_needs_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("no-such-dir").join("stigmem.db");
    assert!(matches!(Staging::beside(&dest), Err(Error::Io { .. })));
    assert!(matches!(
        Staging::beside(Path::new("/")),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn install_into_a_directory_without_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    let new = db_bytes(scratch.path(), "new", 40);

    let staging = stage(&dest, &new);
    // pull checks the staged file before installing it; that must leave nothing beside it.
    sqlite::integrity_check(staging.path()).unwrap();
    install::install(staging, &dest).unwrap();

    assert_eq!(fs::read(&dest).unwrap(), new, "installed byte for byte");
    assert_eq!(names_in(tmp.path()), ["stigmem.db"]);
    assert_eq!(tags(&dest), [("new".to_owned(), 40)]);
    let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a fresh database is private to its owner");
}

#[test]
fn install_with_a_non_normalised_destination() {
    // The staging file is made from `dir/./stigmem.db` and must still be recognised as
    // being in the destination's directory.
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let new = db_bytes(scratch.path(), "rel", 3);
    let dest = tmp.path().join(".").join("stigmem.db");
    install::install(stage(&dest, &new), &dest).unwrap();
    assert_eq!(
        tags(&tmp.path().join("stigmem.db")),
        [("rel".to_owned(), 3)]
    );
}

#[test]
fn install_replaces_a_crashed_wal_database_and_its_side_files() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    crashed_writer(&dest, "old", 500);
    assert!(sidecar(&dest, "-shm").exists());
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o640)).unwrap();

    let new = db_bytes(scratch.path(), "new", 25);
    install::install(stage(&dest, &new), &dest).unwrap();

    assert_no_sidecars(&dest);
    assert_eq!(names_in(tmp.path()), ["stigmem.db"]);
    assert_eq!(fs::read(&dest).unwrap(), new);
    assert_eq!(tags(&dest), [("new".to_owned(), 25)]);
    sqlite::integrity_check(&dest).unwrap();
    let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the replaced file's permissions are kept");
}

#[test]
fn a_stale_wal_without_its_database_is_not_applied_to_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    // Valid WAL frames of some other database, left where the new one's WAL would go.
    let other = scratch.path().join("other.db");
    crashed_writer(&other, "stale", 300);
    fs::copy(sidecar(&other, "-wal"), sidecar(&dest, "-wal")).unwrap();
    fs::copy(sidecar(&other, "-shm"), sidecar(&dest, "-shm")).unwrap();

    let new = db_bytes(scratch.path(), "new", 10);
    install::install(stage(&dest, &new), &dest).unwrap();
    assert_no_sidecars(&dest);
    assert_eq!(tags(&dest), [("new".to_owned(), 10)]);
    sqlite::integrity_check(&dest).unwrap();
}

#[test]
fn fold_wal_puts_every_committed_row_in_the_main_file() {
    // What a crash just before the rename leaves: the old database after step 2. Its data
    // must be complete in the main file, since the side files are removed next.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("stigmem.db");
    crashed_writer(&db, "old", 400);
    assert_eq!(
        rows_in_main_file_alone(&db, tmp.path(), "old"),
        0,
        "before folding, the rows exist only in the WAL"
    );

    install::fold_wal(&db).unwrap();

    assert_no_sidecars(&db);
    assert_eq!(rows_in_main_file_alone(&db, tmp.path(), "old"), 400);
    sqlite::integrity_check(&db).unwrap();
    // stigmem switches every connection back to WAL; that still works.
    let conn = Connection::open(&db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn install_refuses_a_database_another_process_has_open() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    crashed_writer(&dest, "old", 50);
    let holder = Holder::start(&dest, false);

    let new = db_bytes(scratch.path(), "new", 5);
    let err = install::install(stage(&dest, &new), &dest).unwrap_err();
    assert!(
        matches!(&err, Error::DatabaseInUse { path, .. } if path == &dest),
        "{err}"
    );
    assert!(err.to_string().contains("stop the stigmem node"), "{err}");
    drop(holder);

    // The old database is intact and the staging file is gone.
    assert_eq!(tags(&dest), [("old".to_owned(), 50)]);
    assert_eq!(names_in(tmp.path()), ["stigmem.db"]);
}

#[test]
fn install_refuses_a_database_with_a_writer_in_a_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    crashed_writer(&dest, "old", 50);
    let holder = Holder::start(&dest, true);

    let new = db_bytes(scratch.path(), "new", 5);
    let err = install::install(stage(&dest, &new), &dest).unwrap_err();
    assert!(matches!(err, Error::DatabaseInUse { .. }), "{err}");
    drop(holder);
    assert_eq!(tags(&dest), [("old".to_owned(), 50)]);
}

#[test]
fn install_refuses_when_this_process_has_it_open() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stigmem.db");
    crashed_writer(&dest, "old", 5);
    let conn = Connection::open(&dest).unwrap();
    let _: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();

    let new = db_bytes(scratch.path(), "new", 5);
    let err = install::install(stage(&dest, &new), &dest).unwrap_err();
    assert!(matches!(err, Error::DatabaseInUse { .. }), "{err}");
    drop(conn);
    assert_eq!(tags(&dest), [("old".to_owned(), 5)]);
}

#[test]
fn install_over_a_damaged_or_foreign_file() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let new = db_bytes(scratch.path(), "new", 7);

    // The SQLite magic followed by garbage: nothing to preserve, so it is simply replaced.
    let damaged = tmp.path().join("damaged.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.resize(4096, 0xee);
    fs::write(&damaged, &bytes).unwrap();
    install::install(stage(&damaged, &new), &damaged).unwrap();
    assert_eq!(tags(&damaged), [("new".to_owned(), 7)]);

    let text = tmp.path().join("notes.txt");
    fs::write(&text, b"not a database").unwrap();
    install::install(stage(&text, &new), &text).unwrap();
    assert_eq!(fs::read(&text).unwrap(), new);
    assert_no_sidecars(&text);

    let empty = tmp.path().join("empty.db");
    fs::write(&empty, b"").unwrap();
    install::install(stage(&empty, &new), &empty).unwrap();
    assert_eq!(fs::read(&empty).unwrap(), new);
}

#[test]
fn install_refuses_a_staging_file_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let staging = Staging::beside(&other.path().join("x.db")).unwrap();
    let staged = staging.path().to_path_buf();
    let err = install::install(staging, &tmp.path().join("stigmem.db")).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(!staged.exists());
    assert!(!tmp.path().join("stigmem.db").exists());
}

#[test]
fn install_refuses_a_directory_as_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sub");
    fs::create_dir(&dest).unwrap();
    let staging = Staging::beside(&dest).unwrap();
    assert!(matches!(
        install::install(staging, &dest),
        Err(Error::InvalidInput(_))
    ));
    assert!(dest.is_dir());
}
