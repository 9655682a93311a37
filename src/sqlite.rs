//! Everything stigvault does inside a stigmem SQLite database: node identity, consistent
//! online capture, page size and integrity checks.
//!
//! # Capture
//!
//! [`capture`] copies a live database through SQLite's online backup API, never by reading
//! the file: a plain read of a WAL-mode database misses every transaction still in the
//! `-wal` file and can catch a checkpoint half-way. All pages are copied in a single
//! `sqlite3_backup_step(-1)`, which runs inside one read transaction on the source, so the
//! copy is exactly one committed state. (Copying in several steps would restart from page 1
//! each time another connection writes, and never finish against a busy node.)
//!
//! The copy is written by a fresh destination connection in rollback-journal mode, so every
//! page lands in the main file and no `-wal` is produced. The backup copies page 1 verbatim,
//! though, so a WAL-mode source gives a copy whose header still says WAL (bytes 18 and 19
//! are 2), just like stigmem's own snapshot copy. That is kept on purpose: a restored
//! database comes back in WAL mode. Reading the migration cursor from the copy then opens it
//! in WAL mode; that connection makes no writes and, as the last one to close, removes the
//! empty `-wal` and `-shm` it created. [`capture`] checks afterwards that nothing is left
//! beside the copy, so its bytes alone are the database.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use tempfile::TempDir;

use crate::{Error, Result};

/// How long SQLite waits on a lock held by another connection (a stigmem node writing)
/// before giving up. Writers hold locks for milliseconds; this only has to outlast a burst.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The 16 bytes every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Length of the SQLite database header.
const HEADER_LEN: usize = 100;

/// File name of the copy inside the capture's temporary directory.
const COPY_NAME: &str = "stigmem.db";

/// A stigmem node's identity as stored in its `node_meta` table.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// `stigmem:node:<uuid4>` (or whatever the node was configured with).
    pub node_id: String,
    /// Ed25519 public key, base64url without padding, raw 32 bytes.
    pub federation_pubkey: String,
    /// Ed25519 private key (the 32-byte seed), base64url without padding.
    pub federation_privkey: String,
}

// The private key must not end up in logs through `{:?}`.
impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field("federation_pubkey", &self.federation_pubkey)
            .field("federation_privkey", &"<redacted>")
            .finish()
    }
}

/// Return the node identity stored in `db`, creating what is missing the way stigmem does.
///
/// This mirrors stigmem's `get_or_create_federation_keypair` and `get_or_create_node_id`:
/// when either federation key is missing a fresh Ed25519 keypair is generated and both rows
/// are written with `INSERT OR REPLACE`; a missing `node_id` becomes `stigmem:node:<uuid4>`
/// with a plain `INSERT`. Existing values are never changed. Unlike stigmem, everything
/// happens in one `BEGIN IMMEDIATE` transaction, so two processes racing here cannot end up
/// with a node id or keypair that one of them never saw.
///
/// The file must exist (it is never created) and must have stigmem's `node_meta` table;
/// otherwise [`Error::NotStigmemDatabase`] is returned and nothing is written.
pub fn ensure_identity(db: &Path) -> Result<NodeIdentity> {
    require_file(db)?;
    let ctx = |what: &str| format!("{what} in {}", db.display());
    let mut conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(ctx("opening the database"), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| Error::sqlite(ctx("setting the busy timeout"), e))?;

    // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    // writes fails with SQLITE_BUSY_SNAPSHOT (without waiting) if a WAL writer got in between.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite(ctx("starting a write transaction"), e))?;
    if !table_exists(&tx, "node_meta").map_err(|e| Error::sqlite(ctx("reading the schema"), e))? {
        return Err(Error::NotStigmemDatabase {
            path: db.to_path_buf(),
        });
    }

    let get = |key: &str| -> Result<Option<String>> {
        tx.query_row("SELECT value FROM node_meta WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map_err(|e| Error::sqlite(ctx(&format!("reading node_meta {key}")), e))
    };

    let (federation_pubkey, federation_privkey) =
        match (get("federation_pubkey")?, get("federation_privkey")?) {
            (Some(public), Some(private)) => (public, private),
            // stigmem regenerates both when either is missing, so a lone half is replaced.
            _ => {
                let (public, private) = generate_keypair()?;
                for (key, value) in [
                    ("federation_pubkey", &public),
                    ("federation_privkey", &private),
                ] {
                    tx.execute(
                        "INSERT OR REPLACE INTO node_meta (key, value) VALUES (?1, ?2)",
                        [key, value.as_str()],
                    )
                    .map_err(|e| Error::sqlite(ctx(&format!("writing node_meta {key}")), e))?;
                }
                tracing::info!(db = %db.display(), pubkey = %public, "created federation keypair");
                (public, private)
            }
        };

    let node_id = match get("node_id")? {
        Some(id) => id,
        None => {
            let id = format!("stigmem:node:{}", uuid::Uuid::new_v4());
            tx.execute(
                "INSERT INTO node_meta (key, value) VALUES ('node_id', ?1)",
                [&id],
            )
            .map_err(|e| Error::sqlite(ctx("writing node_meta node_id"), e))?;
            tracing::info!(db = %db.display(), node_id = %id, "created node id");
            id
        }
    };

    tx.commit()
        .map_err(|e| Error::sqlite(ctx("committing the node identity"), e))?;
    Ok(NodeIdentity {
        node_id,
        federation_pubkey,
        federation_privkey,
    })
}

/// Read `federation_pubkey` from `db` without writing anything.
///
/// Returns `None` when the file, the `node_meta` table or the row does not exist; this is
/// the key stigmem trusts implicitly when restoring into that database.
pub fn read_federation_pubkey(db: &Path) -> Result<Option<String>> {
    match std::fs::metadata(db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", db.display()), e)),
    }
    let ctx = |what: &str| format!("{what} in {}", db.display());
    let conn = open_read_only(db).map_err(|e| Error::sqlite(ctx("opening the database"), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| Error::sqlite(ctx("setting the busy timeout"), e))?;
    if !table_exists(&conn, "node_meta").map_err(|e| Error::sqlite(ctx("reading the schema"), e))? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT value FROM node_meta WHERE key = 'federation_pubkey'",
        [],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map_err(|e| Error::sqlite(ctx("reading node_meta federation_pubkey"), e))
}

/// A consistent copy of a database, held in a temporary directory that is removed on drop.
#[derive(Debug)]
pub struct Capture {
    // Owns the directory; the copy and anything SQLite put beside it go away with it.
    _dir: TempDir,
    path: PathBuf,
    page_size: u32,
    db_len: u64,
    cursor_versions: Vec<String>,
}

impl Capture {
    /// The copy: a complete, closed, self-contained database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The copy's page size in bytes, from its header.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The copy's length in bytes (a whole number of pages).
    pub fn db_len(&self) -> u64 {
        self.db_len
    }

    /// Applied migration versions in ascending order, read from the copy; empty when the
    /// database has no `schema_migrations` table.
    pub fn cursor_versions(&self) -> &[String] {
        &self.cursor_versions
    }
}

/// Copy the live database `src` into a new temporary directory inside `tmp_dir`.
///
/// The copy is one committed state of the database, including transactions that are still
/// only in its `-wal`, and is taken while other processes go on reading and writing. See
/// the module docs for how the copy is made.
///
/// The source is opened read-only and never written, not even checkpointed. (Like any
/// reader of a WAL database, SQLite may create an empty `-wal` and `-shm` beside a source
/// that was closed cleanly; the node's next connection uses them as usual.)
pub fn capture(src: &Path, tmp_dir: &Path) -> Result<Capture> {
    require_file(src)?;
    let dir = tempfile::Builder::new()
        .prefix(".stigvault-capture-")
        .tempdir_in(tmp_dir)
        .map_err(|e| {
            Error::io(
                format!("creating a capture directory in {}", tmp_dir.display()),
                e,
            )
        })?;
    let path = dir.path().join(COPY_NAME);

    backup_all(src, &path)?;

    let (page_size, db_len) = check_copy_shape(&path)?;
    let cursor_versions = read_cursor(&path)?;
    ensure_no_sidecars(&path)?;

    tracing::debug!(
        src = %src.display(),
        page_size,
        db_len,
        migrations = cursor_versions.len(),
        "captured database"
    );
    Ok(Capture {
        _dir: dir,
        path,
        page_size,
        db_len,
        cursor_versions,
    })
}

/// Read the page size from the first bytes of a database file.
///
/// The header must start with the SQLite magic; the size is bytes 16-17 big-endian, where
/// the value 1 means 65536, and must be a power of two from 512 to 65536.
pub fn page_size_from_header(header: &[u8]) -> Result<u32> {
    const WHAT: &str = "sqlite header";
    if header.len() < 18 {
        return Err(Error::malformed(
            WHAT,
            format!("{} bytes is too short to hold a page size", header.len()),
        ));
    }
    if &header[..16] != SQLITE_MAGIC {
        return Err(Error::malformed(
            WHAT,
            "missing the \"SQLite format 3\" magic: not an SQLite database",
        ));
    }
    let raw = u16::from_be_bytes([header[16], header[17]]);
    let size = if raw == 1 { 65536 } else { u32::from(raw) };
    if !(512..=65536).contains(&size) || !size.is_power_of_two() {
        return Err(Error::malformed(
            WHAT,
            format!("page size field {raw} is not a power of two from 512 to 65536"),
        ));
    }
    Ok(size)
}

/// Run `PRAGMA integrity_check` on the database at `path`.
///
/// Any answer but a single `ok`, and any corruption error SQLite raises while checking, is
/// [`Error::IntegrityCheck`] carrying the first lines of the report. The connection is
/// `query_only`, so the check writes nothing (opening may still roll back a hot journal, as
/// any opener of the file would).
pub fn integrity_check(path: &Path) -> Result<()> {
    run_check(path, "integrity_check")
}

/// [`integrity_check`] with `PRAGMA quick_check`: the same structural checks of every page
/// and b-tree, without cross-checking index entries against their tables. Linear in the
/// database size, about ten times faster on a 300 MB stigmem database; used where the
/// content is already known to be what its signer hashed (the drop-in `snapshot restore`).
pub fn quick_check(path: &Path) -> Result<()> {
    run_check(path, "quick_check")
}

fn run_check(path: &Path, pragma: &str) -> Result<()> {
    require_file(path)?;
    let failed = |detail: String| Error::IntegrityCheck {
        path: path.to_path_buf(),
        detail,
    };
    // Read-write (not read-only) so that, on a WAL-mode file, the connection can remove the
    // -wal and -shm it creates when it closes instead of leaving them beside the file.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "query_only", true))
        .map_err(|e| Error::sqlite(format!("configuring {}", path.display()), e))?;

    let lines = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| {
            if is_corruption(&e) {
                failed(e.to_string())
            } else {
                Error::sqlite(format!("checking the integrity of {}", path.display()), e)
            }
        })?;
    close(conn, path)?;

    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let mut detail = lines
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > SHOWN {
        detail.push_str(&format!("; … ({} problems in all)", lines.len()));
    }
    if lines.is_empty() {
        detail = format!("{pragma} returned nothing");
    }
    Err(failed(detail))
}

/// Copy every page of `src` into a new database at `dst` in one backup step.
fn backup_all(src: &Path, dst: &Path) -> Result<()> {
    let src_ctx = |what: &str| format!("{what} {}", src.display());
    // Read-only: a backup tool must never write to the node's database, not even the
    // checkpoint SQLite runs when the last read-write connection to a WAL database closes.
    let src_conn =
        open_read_only(src).map_err(|e| Error::sqlite(src_ctx("opening the source"), e))?;
    // The backup's read transaction on the source uses the source's busy handler.
    src_conn
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| Error::sqlite(src_ctx("setting the busy timeout on"), e))?;

    let mut dst_conn = Connection::open_with_flags(
        dst,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("creating the copy {}", dst.display()), e))?;

    // The copy is a throwaway temp file, read once and deleted: durability buys nothing, and
    // a rollback journal plus an fsync of the whole file cost a third of a 300 MB capture.
    dst_conn
        .execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF;")
        .map_err(|e| Error::sqlite(format!("configuring the copy {}", dst.display()), e))?;

    {
        let backup = Backup::new(&src_conn, &mut dst_conn)
            .map_err(|e| Error::sqlite(src_ctx("starting the backup of"), e))?;
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            // -1: all remaining pages in this one step, i.e. in one read transaction.
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                // BUSY/LOCKED: the source's busy handler gave up (a rollback-journal writer
                // holding its exclusive lock, or WAL recovery in progress). Nothing was
                // copied, so the step can simply be tried again.
                Ok(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Ok(last) => {
                    return Err(Error::sqlite(
                        src_ctx("backing up"),
                        rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some(format!(
                                "the source stayed locked for {}s (last step: {last:?})",
                                BUSY_TIMEOUT.as_secs()
                            )),
                        ),
                    ));
                }
                Err(e) => return Err(Error::sqlite(src_ctx("backing up"), e)),
            }
        }
    }

    // Close explicitly so that errors surface and the copy's file is complete on disk.
    close(dst_conn, dst)?;
    close(src_conn, src)?;
    Ok(())
}

/// Check the copy's header and length; returns (page size, length).
fn check_copy_shape(path: &Path) -> Result<(u32, u64)> {
    let what = || format!("database copy {}", path.display());
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let db_len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    let mut header = [0u8; HEADER_LEN];
    if db_len < HEADER_LEN as u64 {
        return Err(Error::malformed(
            what(),
            format!("{db_len} bytes is shorter than an SQLite header; is the source empty?"),
        ));
    }
    file.read_exact(&mut header)
        .map_err(|e| Error::io(format!("reading the header of {}", path.display()), e))?;
    let page_size = page_size_from_header(&header)?;
    if db_len % u64::from(page_size) != 0 {
        return Err(Error::malformed(
            what(),
            format!("{db_len} bytes is not a whole number of {page_size}-byte pages"),
        ));
    }
    // Bytes 28-31 hold the page count, valid when the change counter (24-27) equals the
    // "version-valid-for" number (92-95); every SQLite since 3.7.0 keeps them so.
    let pages = u32::from_be_bytes([header[28], header[29], header[30], header[31]]);
    if pages != 0 && header[24..28] == header[92..96] {
        let expected = u64::from(pages) * u64::from(page_size);
        if db_len != expected {
            return Err(Error::LengthMismatch {
                what: what(),
                expected,
                actual: db_len,
            });
        }
    }
    Ok((page_size, db_len))
}

/// The migration cursor as stigmem computes it: versions ascending, or empty on any error.
fn read_cursor(path: &Path) -> Result<Vec<String>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening the copy {}", path.display()), e))?;
    let versions = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version ASC")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        });
    let versions = match versions {
        Ok(v) => v,
        Err(e) => {
            // stigmem swallows every error here (usually "no such table"); so do we, for an
            // identical cursor artifact.
            tracing::debug!(error = %e, "no migration cursor in the copy");
            Vec::new()
        }
    };
    close(conn, path)?;
    Ok(versions)
}

/// Fail if SQLite left a non-empty `-wal` beside `path`; remove empty leftovers.
fn ensure_no_sidecars(path: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = sidecar(path, suffix);
        match std::fs::metadata(&side) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("checking {}", side.display()), e)),
            Ok(meta) if suffix == "-shm" || meta.len() == 0 => {
                std::fs::remove_file(&side)
                    .map_err(|e| Error::io(format!("removing {}", side.display()), e))?;
            }
            Ok(meta) => {
                // Content outside the main file would make the copy's bytes incomplete.
                return Err(Error::malformed(
                    format!("database copy {}", path.display()),
                    format!(
                        "{} bytes were left in {}; the copy is not self-contained",
                        meta.len(),
                        side.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name, as SQLite names its side files.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An error naming `path` when it is not an existing regular file, so that SQLite never
/// creates an empty database where the user mistyped a path.
fn require_file(path: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(())
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// Close `conn`, reporting the error instead of dropping it silently.
fn close(conn: Connection, path: &Path) -> Result<()> {
    conn.close()
        .map_err(|(_, e)| Error::sqlite(format!("closing {}", path.display()), e))
}

/// Errors that mean the file's content is damaged rather than unreachable.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// A fresh Ed25519 keypair as (public, private) base64url strings, as stigmem stores them.
fn generate_keypair() -> Result<(String, String)> {
    let key = crate::sign::SecretKey::generate()?;
    Ok((key.public().to_b64url(), key.to_b64url()))
}
