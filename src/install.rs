//! Atomic installation of a database file: the one way pull and restore put a database in
//! place.
//!
//! The new database is written to a [`Staging`] file in the destination's own directory
//! (hidden, named `.<dbname>.stigvault-XXXXXX`), then [`install`] moves it over the
//! destination with a single `rename`. stigmem's own restore copies over the live file and
//! leaves the old `-wal` and `-shm` beside it; SQLite would then apply the old WAL's frames
//! to the new file (WAL frames are checked against the WAL's own salts, not against the
//! database they belong to), silently corrupting it.
//!
//! # Steps
//!
//! 1. fsync the staged file, so the rename can never publish a file whose data is not on
//!    disk.
//! 2. If the destination is an SQLite database, take it over ([`fold_wal`]): open it (which
//!    rolls back a hot journal or recovers the WAL left by a crashed writer), run
//!    `PRAGMA wal_checkpoint(TRUNCATE)` to copy every committed WAL frame into the main
//!    file, then switch it to `journal_mode=DELETE`. SQLite refuses that switch while any
//!    other connection has the database open, which is exactly when replacing it is
//!    unsafe: that process would keep writing to side files that now belong to the new
//!    database. Such a refusal is [`Error::DatabaseInUse`] and nothing is changed beyond
//!    the checkpoint. Finally `BEGIN EXCLUSIVE` keeps new connections out until the
//!    rename is done.
//! 3. Remove `-wal`, `-shm` and `-journal` beside the destination and fsync the directory.
//! 4. Rename the staged file over the destination and fsync the directory again.
//!
//! # Crash points
//!
//! At every point a later opener finds either the old database with all its committed
//! transactions, or the new one with no side file from the old one:
//!
//! - before step 4, the destination path still names the old file. The checkpoint writes
//!   and fsyncs the main file before it truncates the WAL, and the journal-mode switch is
//!   itself a journalled transaction, so the old database is complete whether the crash
//!   hits before, during or after them (it may come back in rollback-journal mode;
//!   stigmem switches every connection back to WAL). Removing the side files in step 3
//!   loses nothing because their content is already in the main file, and the directory
//!   fsync makes the removal durable before the rename can be, so a stale `-wal` cannot
//!   reappear beside the new file after a crash;
//! - `rename(2)` replaces the directory entry atomically: an opener sees the old inode or
//!   the new one, never a mix. Until the second directory fsync the rename itself may be
//!   lost in a crash, which again leaves the complete old database;
//! - a crash at any point can leave the hidden staging file behind. It is never paired
//!   with the destination (SQLite names side files after the database path), so it is
//!   only litter and may be deleted.
//!
//! When the destination does not exist, is not an SQLite database, or is too damaged to
//! open, there is nothing to preserve: step 2 is skipped, but stale side files are still
//! removed before the rename.
//!
//! Installing is only safe while nothing has the database open. The checks above catch a
//! running stigmem node (it holds its connections open); a process that starts opening the
//! database during the install cannot be fenced off by any file-level protocol, so stop
//! the node first.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tempfile::NamedTempFile;

use crate::sqlite::{is_corruption, sidecar};
use crate::{Error, Result};

/// How long to wait for another connection to finish a transaction on the destination, or
/// to close, before reporting it as in use. A stopped node releases everything at once; a
/// running one never does, so waiting longer would only delay the error.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Side files SQLite keeps next to a database, named by appending these to its path.
const SIDECAR_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// A temporary file beside the destination that will become the installed database.
///
/// Write the new database into it (it implements [`Write`]; [`Staging::file`] gives
/// positioned writes), then hand it to [`install`]. Dropping it without installing
/// removes the file.
#[derive(Debug)]
pub struct Staging {
    file: NamedTempFile,
}

impl Staging {
    /// Create an empty staging file in `dest`'s directory, which must exist.
    ///
    /// Being in the same directory keeps the final rename on one file system, where it is
    /// atomic.
    pub fn beside(dest: &Path) -> Result<Staging> {
        let (dir, name) = split_dest(dest)?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".stigvault-");
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("creating a staging file in {}", dir.display()), e))?;
        Ok(Staging { file })
    }

    /// The staging file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The open staging file, e.g. for positioned writes through
    /// [`std::os::unix::fs::FileExt`].
    pub fn file(&self) -> &File {
        self.file.as_file()
    }

    /// The open staging file, mutably.
    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_file_mut()
    }
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Atomically replace `dest` with the staged file. See the module docs for the steps and
/// why every crash point leaves a complete database.
///
/// `staging` must have been created by [`Staging::beside`] for this `dest`. On error the
/// staging file is removed and `dest` is left as it was (though possibly checkpointed and
/// in rollback-journal mode).
pub fn install(staging: Staging, dest: &Path) -> Result<()> {
    let (dir, _) = split_dest(dest)?;
    check_same_dir(staging.path(), &dir)?;

    let existing = match std::fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            return Err(Error::InvalidInput(format!(
                "cannot install over {}: it is a directory",
                dest.display()
            )))
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("inspecting {}", dest.display()), e)),
    };

    // The installed file replaces the old one, so it keeps its permissions (stigmem's
    // database holds the node's private key). A new file keeps tempfile's 0600.
    if let Some(meta) = &existing {
        staging
            .file()
            .set_permissions(meta.permissions())
            .map_err(|e| {
                Error::io(
                    format!("setting permissions on {}", staging.path().display()),
                    e,
                )
            })?;
    }
    staging
        .file()
        .sync_all()
        .map_err(|e| Error::io(format!("syncing {}", staging.path().display()), e))?;

    let guard = match existing {
        Some(_) if has_sqlite_magic(dest)? => take_over(dest)?,
        _ => None,
    };

    for suffix in SIDECAR_SUFFIXES {
        remove_if_exists(&sidecar(dest, suffix))?;
    }
    sync_dir(&dir)?;

    let staged = staging.path().to_path_buf();
    staging.file.persist(dest).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", staged.display(), dest.display()),
            e.error,
        )
    })?;
    sync_dir(&dir)?;

    if let Some(conn) = guard {
        // The rename is durable; this only releases locks on the old, now unlinked, file.
        if let Err((_, e)) = conn.close() {
            tracing::warn!(error = %e, "closing the replaced database failed");
        }
    }
    tracing::info!(dest = %dest.display(), "installed database");
    Ok(())
}

/// Fold `db`'s WAL into its main file and switch it to rollback-journal mode, so that the
/// main file alone holds every committed transaction.
///
/// This is step 2 of [`install`], usable on its own: afterwards copying or replacing the
/// main file loses nothing. Fails with [`Error::DatabaseInUse`] when another connection
/// has the database open.
pub fn fold_wal(db: &Path) -> Result<()> {
    match take_over(db)? {
        Some(conn) => conn
            .close()
            .map_err(|(_, e)| Error::sqlite(format!("closing {}", db.display()), e)),
        None => Err(Error::malformed(
            format!("database {}", db.display()),
            "SQLite reports it as corrupt or not a database",
        )),
    }
}

/// Take `db` over for replacement (step 2 of the module docs). Returns the connection
/// holding the exclusive lock, or `None` when SQLite finds the file corrupt (there is then
/// nothing to preserve).
fn take_over(db: &Path) -> Result<Option<Connection>> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(format!("opening the existing database {}", db.display()), e))?;
    if let Err(e) = conn.busy_timeout(TAKEOVER_TIMEOUT) {
        return give_up(db, e, "setting the busy timeout on");
    }
    // The first read recovers whatever a crashed writer left (hot journal, WAL index).
    if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        return give_up(db, e, "reading");
    }
    // FULL: the checkpoint must fsync the main file before it truncates the WAL.
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        return give_up(db, e, "setting synchronous=FULL on");
    }

    let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match checkpoint {
        Ok((0, _, _)) => {}
        Ok((_, frames, done)) => {
            return Err(Error::DatabaseInUse {
                path: db.to_path_buf(),
                detail: format!("the WAL checkpoint was blocked after {done} of {frames} frames"),
            })
        }
        Err(e) => return give_up(db, e, "checkpointing"),
    }

    // Leaving WAL mode needs every other connection gone. SQLite does not wait for that
    // (no busy handler here), so poll briefly to let a short-lived reader finish.
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("delete") => break,
            Ok(mode) => {
                return Err(Error::DatabaseInUse {
                    path: db.to_path_buf(),
                    detail: format!("it stayed in journal mode {mode:?} instead of delete"),
                })
            }
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return give_up(db, e, "leaving WAL mode on"),
        }
    }

    if let Err(e) = conn.execute_batch("BEGIN EXCLUSIVE") {
        return give_up(db, e, "locking");
    }
    Ok(Some(conn))
}

/// What a failed take-over step means: lock errors are [`Error::DatabaseInUse`];
/// corruption means there is nothing left to preserve (`Ok(None)`: replace it anyway);
/// anything else is reported as it is.
fn give_up(db: &Path, e: rusqlite::Error, doing: &str) -> Result<Option<Connection>> {
    if is_corruption(&e) {
        tracing::warn!(
            db = %db.display(),
            error = %e,
            "existing database is unreadable; replacing it without folding its WAL"
        );
        return Ok(None);
    }
    if is_busy(&e) {
        return Err(Error::DatabaseInUse {
            path: db.to_path_buf(),
            detail: e.to_string(),
        });
    }
    Err(Error::sqlite(format!("{doing} {}", db.display()), e))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether `path` starts with the SQLite magic. Short or unreadable-as-SQLite files are
/// simply replaced.
fn has_sqlite_magic(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 16];
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"SQLite format 3\0"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The destination's directory (`.` for a bare file name) and file name.
fn split_dest(dest: &Path) -> Result<(PathBuf, OsString)> {
    let name = dest.file_name().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{} does not name a file to install a database to",
            dest.display()
        ))
    })?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

/// Refuse a staging file from another directory: the rename could cross file systems and
/// the directory fsync would cover the wrong directory.
fn check_same_dir(staged: &Path, dir: &Path) -> Result<()> {
    let staged_dir = staged.parent().unwrap_or(Path::new("."));
    let canon = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))
    };
    if staged_dir == dir || canon(staged_dir)? == canon(dir)? {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "staging file {} is not in the destination's directory {}; \
         create it with Staging::beside(dest)",
        staged.display(),
        dir.display()
    )))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "removed stale side file");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// fsync a directory so that renames and removals in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}
