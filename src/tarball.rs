//! stigmem's snapshot tarball (`.tar.gz`), in both directions, streaming.
//!
//! The layout is stigmem's: `manifest.json`, the directory `artifacts/`,
//! `artifacts/schema_migration_cursor.json` and `artifacts/stigmem.db`, gzip-compressed.
//!
//! - **Export** ([`export_to_file`]) writes a stored snapshot as such a tarball: the manifest
//!   bytes verbatim, the cursor verbatim, and the database reassembled from its packs, every
//!   chunk verified and the SHA-256 checked as it streams. The tar header of the database
//!   needs its size, which the recipe knows, so nothing is buffered: memory is bounded by
//!   reassembly's windows whatever the database size. Compression runs on its own thread at
//!   gzip level 1; stigmem's level 9 costs ~10× the time for a few percent of size.
//! - **Import** ([`import`]) writes nothing to the store until a full read of the tarball
//!   ([`check_tarball`]) has verified everything, with no temp space: the member list, the
//!   manifest (shape, self-signature, trust when asked) and every artifact's SHA-256. During
//!   that read the database also goes through push's chunker and packer, the new packs held
//!   in memory up to [`ImportOptions::max_prepacked_bytes`]; when they fit (incremental or
//!   small tarballs) they are uploaded once the check passes. Otherwise a second read streams
//!   the database into packs as push does. Members are read by name into memory or into the
//!   chunker; nothing is ever extracted to a path derived from a member name.
//! - **Drop-in commands**: [`create`] makes a tarball from a live database (stigmem's
//!   `snapshot create`), and [`restore`] verifies one and installs its database atomically
//!   (stigmem's `snapshot restore`, with stigvault's trust model).
//!
//! # Gzip bombs
//!
//! A member that claims more bytes than it can hold is refused before its data is read:
//! deflate cannot expand input by more than 1032:1, so a declared size above 1032 times the
//! compressed file is a lie; the database's SQLite header states its page size and page
//! count, so a tar size that disagrees is refused after 100 bytes; the manifest and cursor
//! are bounded by [`MAX_MANIFEST_BYTES`] and [`MAX_CURSOR_BYTES`].

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use flate2::read::GzDecoder;
use flate2::Compression;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::chunk;
use crate::error::{Error, Result};
use crate::format::config::StoreConfig;
use crate::format::id::SnapshotId;
use crate::format::index::{EntryBody, EntryKind};
use crate::format::manifest::{self, Manifest, CURSOR_ARTIFACT, DB_ARTIFACT};
use crate::format::pack::FinishedPack;
use crate::format::recipe::Locations;
use crate::index::{ClientState, Index};
use crate::install;
use crate::pull::{self, VerifiedSnapshot};
use crate::push;
use crate::sign::{PublicKey, SecretKey, TrustSet};
use crate::sqlite;
use crate::store::{keys, RequestStats, Store};

/// Largest `manifest.json` accepted. stigmem's are under 1 KiB; the bound keeps a hostile
/// tarball from making us buffer a huge "manifest", and keeps the snapshot root small.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 10;
/// Largest cursor artifact accepted (a list of migration names, a few KiB in practice).
pub const MAX_CURSOR_BYTES: u64 = 256 << 10;
/// The member name of the manifest.
pub const MANIFEST_MEMBER: &str = "manifest.json";
/// The directory member stigmem writes.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// deflate's best case is 258-byte matches coded in about two bits: 1032:1. A member that
/// claims more than this many times the compressed file's size cannot be in it.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// gzip level for tarballs we write; level 1 is several times faster than stigmem's 9.
const GZIP_LEVEL: u32 = 1;
/// Bytes handed to the compression thread at a time, and file buffer sizes.
const IO_BUF: usize = 1 << 20;
/// Most bytes of new packs import holds in memory while it checks a tarball, to avoid
/// reading it a second time.
const MAX_PREPACKED_BYTES: u64 = 48 << 20;
/// Blocks queued for the compression thread.
const PIPE_DEPTH: usize = 4;
const TAR_BLOCK: u64 = 512;
const SQLITE_HEADER_LEN: usize = 100;

// ---------------------------------------------------------------------------------------
// Writing tarballs
// ---------------------------------------------------------------------------------------

/// A writer that hands blocks to a thread which gzips them into `W`, so that compression
/// overlaps with reading (reassembly, or reading a captured copy).
struct GzPipe<W: Write + Send + 'static> {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    handle: Option<JoinHandle<std::io::Result<(W, u64)>>>,
}

/// Counts the compressed bytes written.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write + Send + 'static> GzPipe<W> {
    fn new(out: W) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let handle = std::thread::spawn(move || {
            // mtime 0 in the gzip header, so that the same snapshot exports to the same bytes.
            let counting = Counting {
                inner: BufWriter::with_capacity(IO_BUF, out),
                n: 0,
            };
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(counting, Compression::new(GZIP_LEVEL));
            for block in rx {
                enc.write_all(&block)?;
            }
            let mut counting = enc.finish()?;
            counting.flush()?;
            let n = counting.n;
            let out = counting.inner.into_inner().map_err(|e| e.into_error())?;
            Ok((out, n))
        });
        GzPipe {
            tx: Some(tx),
            buf: Vec::with_capacity(IO_BUF),
            handle: Some(handle),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(IO_BUF));
        let sent = self.tx.as_ref().map(|tx| tx.send(block).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            // The thread stopped early; `finish` reports its error.
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the compression thread stopped",
            ))
        }
    }

    /// Flush, stop the thread and return the writer and the compressed length.
    fn finish(mut self, what: &str) -> Result<(W, u64)> {
        let sent = self.send();
        self.tx = None;
        let joined = match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::Task("the compression thread panicked".into()))?,
            None => return Err(Error::Task("compression finished twice".into())),
        };
        let out = joined.map_err(|e| Error::io(format!("writing {what}"), e))?;
        sent.map_err(|e| Error::io(format!("writing {what}"), e))?;
        Ok(out)
    }
}

impl<W: Write + Send + 'static> Write for GzPipe<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= IO_BUF {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for GzPipe<W> {
    fn drop(&mut self) {
        // Closing the channel ends the thread; an abandoned export leaves nothing running.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A ustar header. Names are stigmem's short ASCII names, so ustar (which Python's tarfile
/// and every tar reader accept) needs no PAX extensions.
fn tar_header(name: &str, size: u64, dir: bool, mtime: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .map_err(|e| Error::io(format!("tar header for {name}"), e))?;
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    Ok(h)
}

fn padding(size: u64) -> usize {
    ((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK) as usize
}

/// Write everything before the database's data: the manifest, `artifacts/`, the cursor, and
/// the database's header. Member order is stigmem's.
fn write_prelude(
    out: &mut impl Write,
    manifest: &[u8],
    cursor: &[u8],
    db_bytes: u64,
    mtime: u64,
) -> Result<()> {
    write_small(out, MANIFEST_MEMBER, manifest, mtime)?;
    let dir = tar_header(&format!("{ARTIFACTS_DIR}/"), 0, true, mtime)?;
    out.write_all(dir.as_bytes()).map_err(tar_write_err)?;
    write_small(out, CURSOR_ARTIFACT, cursor, mtime)?;
    let h = tar_header(DB_ARTIFACT, db_bytes, false, mtime)?;
    out.write_all(h.as_bytes()).map_err(tar_write_err)
}

/// One member whose data is in memory: header, data, padding.
fn write_small(out: &mut impl Write, name: &str, data: &[u8], mtime: u64) -> Result<()> {
    let h = tar_header(name, data.len() as u64, false, mtime)?;
    out.write_all(h.as_bytes()).map_err(tar_write_err)?;
    out.write_all(data).map_err(tar_write_err)?;
    out.write_all(&[0u8; TAR_BLOCK as usize][..padding(data.len() as u64)])
        .map_err(tar_write_err)
}

fn tar_write_err(e: std::io::Error) -> Error {
    Error::io("writing the tarball", e)
}

/// Pad the database's data and write the end-of-archive marker (two zero blocks).
fn write_trailer(out: &mut impl Write, db_bytes: u64) -> Result<()> {
    let zeros = [0u8; TAR_BLOCK as usize];
    out.write_all(&zeros[..padding(db_bytes)])
        .map_err(tar_write_err)?;
    out.write_all(&zeros).map_err(tar_write_err)?;
    out.write_all(&zeros).map_err(tar_write_err)
}

/// The member mtime: the snapshot's `created_at`, so an export is reproducible.
fn mtime_of(created_at: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

/// A file written under a temporary name beside `dest` and renamed over it when complete, so
/// a failed export never leaves a partial tarball under the final name.
fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".stigvault-tarball-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))
}

fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(format!("syncing the tarball for {}", dest.display()), e))?;
    tmp.persist(dest).map_err(|e| {
        Error::io(
            format!("renaming the tarball to {}", dest.display()),
            e.error,
        )
    })?;
    Ok(())
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The snapshot id.
    pub id: String,
    /// The tarball written.
    pub out: PathBuf,
    /// The manifest's node id.
    pub node_id: String,
    /// The manifest's signer (base64url).
    pub signer_pubkey: String,
    /// Database length.
    pub db_bytes: u64,
    /// Database SHA-256 (hex), verified while exporting.
    pub db_sha256: String,
    /// Length of the tarball.
    pub tarball_bytes: u64,
    /// Requests made to the store.
    pub requests: RequestStats,
}

/// Resolve `query` and verify the snapshot for export.
///
/// With `trust`, the manifest's signer must be in it. Without, export does not judge trust
/// (whoever restores the tarball does, against their own keys), but the manifest's signature
/// must still verify for its declared signer, and every other check of
/// [`pull::open_snapshot`] applies.
pub async fn open_for_export(
    store: &Store,
    index: &Index,
    query: &str,
    trust: Option<&TrustSet>,
) -> Result<VerifiedSnapshot> {
    let trust = match trust {
        Some(t) => t.clone(),
        None => {
            let (id, _) = index.resolve(query)?;
            let root_bytes = store.get(&keys::snapshot(&id)).await?;
            let root = crate::format::snapshot::SnapshotRoot::decode_verified(&root_bytes, &id)?;
            let m = Manifest::parse(root.manifest.as_bytes())?;
            let mut t = TrustSet::new();
            t.insert(m.signer().clone());
            t
        }
    };
    pull::open_snapshot(store, index, query, &trust, false).await
}

/// Stream `snap` as a stigmem tarball into `out`; return `out` and the tarball's length.
///
/// Every chunk is verified as it is reassembled and the database's SHA-256 is checked at the
/// end; on a mismatch the error is returned and what was written must be discarded.
pub async fn export<W: Write + Send + 'static>(
    store: &Store,
    snap: &VerifiedSnapshot,
    out: W,
    progress: bool,
) -> Result<(W, u64)> {
    let db_bytes = snap.recipe.db_bytes;
    let mtime = mtime_of(snap.manifest.created_at());
    let mut pipe = GzPipe::new(out);
    write_prelude(
        &mut pipe,
        snap.root.manifest.as_bytes(),
        snap.root.cursor.as_bytes(),
        db_bytes,
        mtime,
    )?;
    crate::pull::write_verified_db(store, snap, &mut pipe, progress, "export").await?;
    write_trailer(&mut pipe, db_bytes)?;
    tokio::task::spawn_blocking(move || pipe.finish("the tarball")).await?
}

/// Export `snap` to the file `dest`, which appears only once complete and verified.
pub async fn export_to_file(
    store: &Store,
    snap: &VerifiedSnapshot,
    dest: &Path,
    progress: bool,
) -> Result<ExportReport> {
    let start = store.stats();
    let tmp = temp_beside(dest)?;
    let (tmp, n) = export(store, snap, tmp, progress).await?;
    persist(tmp, dest)?;
    Ok(ExportReport {
        id: snap.id.to_hex(),
        out: dest.to_path_buf(),
        node_id: snap.manifest.node_id().to_string(),
        signer_pubkey: snap.manifest.signer().to_b64url(),
        db_bytes: snap.recipe.db_bytes,
        db_sha256: snap.root.db.sha256.clone(),
        tarball_bytes: n,
        requests: store.stats().since(&start),
    })
}

// ---------------------------------------------------------------------------------------
// Reading tarballs
// ---------------------------------------------------------------------------------------

/// A reader that decompresses on its own thread, a few blocks ahead, so that inflating
/// overlaps with hashing (first pass) or chunking (second pass).
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ReadAhead {
    fn new(mut inner: impl Read + Send + 'static) -> ReadAhead {
        let (tx, rx) = sync_channel(PIPE_DEPTH);
        // Detached: when the reader is dropped early, the next send fails and the thread ends.
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; IO_BUF];
            let mut filled = 0;
            while filled < buf.len() {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.send(Ok(buf)).is_err() {
                return;
            }
        });
        ReadAhead {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.cur = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread finished: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The decompressed stream of the tarball at `path`.
fn open_stream(path: &Path) -> Result<(ReadAhead, u64)> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let compressed = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    let gz = GzDecoder::new(BufReader::with_capacity(IO_BUF, file));
    Ok((ReadAhead::new(gz), compressed))
}

/// How a tarball's signer was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TarballTrust {
    /// The signer is in the trust set.
    Trusted,
    /// No trust set was given: the signature verifies for the declared signer, whom nobody
    /// has vouched for (import records it; pull decides trust later).
    NotChecked,
    /// The signer is not trusted and the caller waived that check.
    Unverified,
}

/// Whom to trust when checking a tarball.
#[derive(Debug, Clone, Copy)]
pub enum TrustPolicy<'a> {
    /// Accept any signer whose signature verifies (import without a trust set).
    Any,
    /// The signer must be in the set; `origin` says where the set came from, for the error.
    Require {
        /// The trusted keys.
        keys: &'a TrustSet,
        /// Where they came from, e.g. "the keys in keys.json".
        origin: &'a str,
        /// Waive only this check, with a warning.
        force_unverified: bool,
    },
}

/// Where the database's data sits in the decompressed stream, found by the first pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbMember {
    /// Offset of the data in the decompressed (tar) stream.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Page size from its SQLite header.
    pub page_size: u32,
}

/// A tarball whose structure, manifest, signature and artifact hashes have been verified.
#[derive(Debug)]
pub struct CheckedTarball {
    /// The tarball.
    pub path: PathBuf,
    /// The verified manifest (its exact bytes are kept).
    pub manifest: Manifest,
    /// The cursor artifact, verified against the manifest.
    pub cursor: String,
    /// Where the database is.
    pub db: DbMember,
    /// How the signer was judged.
    pub trust: TarballTrust,
    /// The database already chunked and packed during the check, when import asked for that
    /// and the new packs fit in memory; import then needs no second read.
    prepacked: Option<Prepacked>,
}

/// What the first pass should do with the database's data besides hashing it.
enum DbSink<'a> {
    /// Nothing.
    Hash,
    /// Copy it (restore stages it this way).
    Copy(&'a mut dyn Write),
    /// Chunk and pack it as push would, holding at most `max_held` bytes of new packs.
    Pack {
        known: Locations,
        cfg: StoreConfig,
        max_held: u64,
    },
}

/// Packs made during the first pass, not yet uploaded.
struct Prepacked {
    chunked: push::Chunked,
    packs: Vec<FinishedPack>,
}

impl std::fmt::Debug for Prepacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepacked")
            .field("chunks", &self.chunked.recipe.chunks.len())
            .field("packs", &self.packs.len())
            .finish()
    }
}

/// Hashes and counts what is read through it, and repeats the first read error on every
/// later read (so that a reader abandoned mid-stream, then resumed, reports the same fault).
struct HashingReader<'a, R> {
    inner: R,
    sha: &'a mut Sha256,
    n: u64,
    failed: Option<(std::io::ErrorKind, String)>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(std::io::Error::new(*kind, msg.clone()));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.sha.update(&buf[..n]);
                self.n += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

fn read_err(tarball: &Path, member: Option<&str>, e: std::io::Error) -> Error {
    let at = member
        .map(|m| format!(" in member {m:?}"))
        .unwrap_or_default();
    let tarball = tarball.display().to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::TarTruncated {
            tarball,
            detail: format!("the stream ends early{at}: {e}"),
        }
    } else if e.kind() == std::io::ErrorKind::NotFound && member.is_none() {
        Error::io(format!("opening {tarball}"), e)
    } else {
        Error::TarCorrupt {
            tarball,
            detail: format!("{e}{at}"),
        }
    }
}

/// Check a member's name: refuse absolute paths and `..`, and normalise `./` and trailing
/// slashes away. The name is only ever compared, never used as a path.
fn member_name(raw: &[u8]) -> Result<String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(Error::TarUnsafePath {
            member: shown,
            reason: "it is an absolute path".into(),
        });
    }
    if raw.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(Error::TarUnsafePath {
            member: shown,
            reason: "it contains a `..` component".into(),
        });
    }
    let text = std::str::from_utf8(raw).map_err(|_| Error::TarUndeclaredMember(shown.clone()))?;
    let parts: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    Ok(parts.join("/"))
}

/// Read all of `r`, refusing more than `limit` bytes.
fn read_bounded(
    r: &mut impl Read,
    size: u64,
    limit: u64,
    member: &str,
    tarball: &Path,
) -> Result<Vec<u8>> {
    if size > limit {
        return Err(Error::TarMemberTooLarge {
            member: member.to_string(),
            size,
            limit,
            reason: "stigmem never writes one this large".into(),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| read_err(tarball, Some(member), e))?;
    Ok(buf)
}

fn check_trust(path: &Path, manifest: &Manifest, policy: TrustPolicy<'_>) -> Result<TarballTrust> {
    match policy {
        TrustPolicy::Any => Ok(TarballTrust::NotChecked),
        TrustPolicy::Require { keys, .. } if keys.contains(manifest.signer()) => {
            Ok(TarballTrust::Trusted)
        }
        TrustPolicy::Require {
            force_unverified: true,
            ..
        } => {
            tracing::warn!(
                "SECURITY WARNING: {} is signed by {}, which is not trusted; \
                 --force-unverified waives that check (hashes and signature still verified)",
                path.display(),
                manifest.signer()
            );
            Ok(TarballTrust::Unverified)
        }
        TrustPolicy::Require { keys, origin, .. } => Err(Error::TarUntrustedSigner {
            tarball: path.display().to_string(),
            signer: manifest.signer().to_b64url(),
            trusted: if keys.is_empty() {
                format!("no keys ({origin})")
            } else {
                format!(
                    "{} ({origin})",
                    keys.iter()
                        .map(|k| k.to_b64url())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        }),
    }
}

/// First pass: verify a tarball without writing anything anywhere.
///
/// Checks the member list (only stigmem's members, each once, regular files and the one
/// directory, no unsafe names), the manifest (shape, version, keys, self-signature, then
/// trust per `policy`), the cursor's and the database's SHA-256, the database's size against
/// its SQLite header, and the gzip stream's own checksum. Memory is bounded; no temp space.
pub fn check_tarball(path: &Path, policy: TrustPolicy<'_>) -> Result<CheckedTarball> {
    check_tarball_into(path, policy, DbSink::Hash)
}

/// [`check_tarball`], also handing the database's data to `db_sink` as it is hashed.
/// Whatever reached the sink is unverified unless this returns `Ok`.
fn check_tarball_into(
    path: &Path,
    policy: TrustPolicy<'_>,
    db_sink: DbSink<'_>,
) -> Result<CheckedTarball> {
    let mut db_sink = Some(db_sink);
    let mut prepacked = None;
    let (stream, compressed) = open_stream(path)?;
    let mut archive = tar::Archive::new(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let mut manifest: Option<Manifest> = None;
    let mut trust = TarballTrust::NotChecked;
    let mut cursor: Option<(Vec<u8>, [u8; 32])> = None;
    let mut db: Option<(DbMember, [u8; 32])> = None;

    let entries = archive.entries().map_err(|e| read_err(path, None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(path, None, e))?;
        let name = member_name(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        let link = || {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let special = |what: &str| Error::TarSpecialMember {
            member: name.clone(),
            kind: what.to_string(),
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                return Err(Error::TarSymlink {
                    target: link(),
                    member: name,
                })
            }
            tar::EntryType::Link => {
                return Err(Error::TarHardlink {
                    target: link(),
                    member: name,
                })
            }
            tar::EntryType::Char => return Err(special("character device")),
            tar::EntryType::Block => return Err(special("block device")),
            tar::EntryType::Fifo => return Err(special("fifo")),
            other => {
                return Err(special(&format!(
                    "member of tar type {:?}",
                    other.as_byte() as char
                )))
            }
        }
        // The root directory ("./") is harmless and some tar tools write it.
        if name.is_empty() && kind == tar::EntryType::Directory {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(Error::TarDuplicateMember(name));
        }
        let is_dir = kind == tar::EntryType::Directory;
        let size = entry.size();
        match (name.as_str(), is_dir) {
            (ARTIFACTS_DIR, true) => {}
            (MANIFEST_MEMBER, false) => {
                let bytes = read_bounded(&mut entry, size, MAX_MANIFEST_BYTES, &name, path)?;
                check_read_len(&name, size, bytes.len() as u64)?;
                let m = Manifest::parse(&bytes)?;
                for (artifact, _) in m.artifacts() {
                    if artifact != DB_ARTIFACT && artifact != CURSOR_ARTIFACT {
                        return Err(Error::TarUnsupportedArtifact(artifact.clone()));
                    }
                }
                // Signature and trust before the (large) database is read, so a forged or
                // untrusted tarball is refused early.
                m.verify_self_signature()?;
                trust = check_trust(path, &m, policy)?;
                manifest = Some(m);
            }
            (CURSOR_ARTIFACT, false) => {
                let bytes = read_bounded(&mut entry, size, MAX_CURSOR_BYTES, &name, path)?;
                check_read_len(&name, size, bytes.len() as u64)?;
                let sha: [u8; 32] = Sha256::digest(&bytes).into();
                cursor = Some((bytes, sha));
            }
            (DB_ARTIFACT, false) => {
                let offset = entry.raw_file_position();
                let sink = db_sink.take().unwrap_or(DbSink::Hash);
                let (page_size, sha, packed) =
                    hash_db_member(&mut entry, size, compressed, path, sink)?;
                prepacked = packed;
                db = Some((
                    DbMember {
                        offset,
                        size,
                        page_size,
                    },
                    sha,
                ));
            }
            _ => return Err(Error::TarUndeclaredMember(name)),
        }
    }

    // The tar end marker is not the end of the gzip stream: read on to its checksum, and
    // refuse anything but zero padding after the marker (a member that was longer than its
    // header would leave its surplus there).
    let mut stream = archive.into_inner();
    let mut rest = vec![0u8; 64 << 10];
    loop {
        let n = stream
            .read(&mut rest)
            .map_err(|e| read_err(path, None, e))?;
        if n == 0 {
            break;
        }
        if rest[..n].iter().any(|&b| b != 0) {
            return Err(Error::TarCorrupt {
                tarball: path.display().to_string(),
                detail: "data after the tar end-of-archive marker".into(),
            });
        }
    }

    let manifest = manifest.ok_or_else(|| Error::TarMissingMember(MANIFEST_MEMBER.into()))?;
    let (cursor, cursor_sha) =
        cursor.ok_or_else(|| Error::TarMissingMember(CURSOR_ARTIFACT.into()))?;
    let (db, db_sha) = db.ok_or_else(|| Error::TarMissingMember(DB_ARTIFACT.into()))?;
    for (name, actual, declared) in [
        (CURSOR_ARTIFACT, cursor_sha, manifest.cursor_sha256()),
        (DB_ARTIFACT, db_sha, manifest.db_sha256()),
    ] {
        if actual != declared {
            return Err(Error::HashMismatch {
                what: format!("{name} in {}", path.display()),
                expected: manifest::sha256_hex_prefixed(&declared),
                actual: manifest::sha256_hex_prefixed(&actual),
            });
        }
    }
    let cursor = String::from_utf8(cursor)
        .map_err(|_| Error::malformed(CURSOR_ARTIFACT, "not UTF-8 text"))?;
    Ok(CheckedTarball {
        path: path.to_path_buf(),
        manifest,
        cursor,
        db,
        trust,
        prepacked,
    })
}

fn check_read_len(member: &str, header: u64, actual: u64) -> Result<()> {
    if header != actual {
        return Err(Error::TarMemberSize {
            member: member.to_string(),
            header,
            actual,
            reason: "its data holds".into(),
        });
    }
    Ok(())
}

/// Check the database member's size against the compressed file and its SQLite header
/// before reading on, then hash it; return its page size and SHA-256.
fn hash_db_member(
    r: &mut impl Read,
    size: u64,
    compressed: u64,
    tarball: &Path,
    mut sink: DbSink<'_>,
) -> Result<(u32, [u8; 32], Option<Prepacked>)> {
    let member = DB_ARTIFACT;
    let limit = compressed.saturating_mul(MAX_DEFLATE_RATIO);
    if size > limit {
        return Err(Error::TarMemberTooLarge {
            member: member.into(),
            size,
            limit,
            reason: format!(
                "deflate expands at most {MAX_DEFLATE_RATIO}:1 and the tarball is {compressed} bytes"
            ),
        });
    }
    if size < SQLITE_HEADER_LEN as u64 {
        return Err(Error::TarMemberSize {
            member: member.into(),
            header: size,
            actual: SQLITE_HEADER_LEN as u64,
            reason: "an SQLite header alone takes".into(),
        });
    }
    let mut header = [0u8; SQLITE_HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|e| read_err(tarball, Some(member), e))?;
    let page_size = sqlite::page_size_from_header(&header).map_err(|e| match e {
        Error::Malformed { reason, .. } => Error::malformed(member, reason),
        other => other,
    })?;
    // Page count (bytes 28-31) is valid when the change counter (24-27) equals the
    // "version-valid-for" number (92-95), as every SQLite since 3.7.0 keeps it.
    let pages = u32::from_be_bytes([header[28], header[29], header[30], header[31]]);
    let implied = if pages != 0 && header[24..28] == header[92..96] {
        Some(u64::from(pages) * u64::from(page_size))
    } else {
        None
    };
    match implied {
        Some(n) if n != size => {
            return Err(Error::TarMemberSize {
                member: member.into(),
                header: size,
                actual: n,
                reason: "its SQLite header implies".into(),
            })
        }
        None if size % u64::from(page_size) != 0 => {
            return Err(Error::TarMemberSize {
                member: member.into(),
                header: size,
                actual: size - size % u64::from(page_size),
                reason: format!("whole {page_size}-byte pages would make"),
            })
        }
        _ => {}
    }
    let mut sha = Sha256::new();
    sha.update(header);
    if let DbSink::Copy(w) = &mut sink {
        w.write_all(&header)
            .map_err(|e| Error::io("writing the staged database", e))?;
    }
    let mut rest = HashingReader {
        inner: r,
        sha: &mut sha,
        n: 0,
        failed: None,
    };
    let mut prepacked = None;
    if let DbSink::Pack {
        known,
        cfg,
        max_held,
    } = sink
    {
        prepacked = pack_while_hashing(&header, &mut rest, page_size, known, &cfg, max_held)?;
        sink = DbSink::Hash;
    }
    // Whatever the packer did not read (all of it, or the rest after it gave up).
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| read_err(tarball, Some(member), e))?;
        if n == 0 {
            break;
        }
        if let DbSink::Copy(w) = &mut sink {
            w.write_all(&buf[..n])
                .map_err(|e| Error::io("writing the staged database", e))?;
        }
    }
    let got = SQLITE_HEADER_LEN as u64 + rest.n;
    if got != size {
        return Err(Error::TarTruncated {
            tarball: tarball.display().to_string(),
            detail: format!("member {member:?} has {got} of its {size} bytes"),
        });
    }
    let sha: [u8; 32] = sha.finalize().into();
    // The packer saw the same bytes only if it read them all.
    let prepacked =
        prepacked.filter(|p| p.chunked.sha256 == sha && p.chunked.recipe.db_bytes == size);
    Ok((page_size, sha, prepacked))
}

/// Chunk and pack the database as push would while the first pass hashes it, keeping the new
/// packs in memory. Gives up (returning `None`, having read part of `rest`) as soon as they
/// would exceed `max_held` bytes; the caller then reads the rest and import reads the
/// tarball a second time. Nothing is uploaded here: the tarball is not verified yet.
fn pack_while_hashing<R: Read>(
    header: &[u8],
    rest: &mut HashingReader<'_, R>,
    page_size: u32,
    known: Locations,
    cfg: &StoreConfig,
    max_held: u64,
) -> Result<Option<Prepacked>> {
    let cs = chunk::chunk_size(page_size, cfg.chunk_pages)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<FinishedPack>(1);
    let collector = std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut bytes = 0u64;
        while let Some(p) = rx.blocking_recv() {
            bytes += p.bytes.len() as u64;
            if bytes > max_held {
                // Dropping the receiver makes the packer stop at its next pack.
                return None;
            }
            held.push(p);
        }
        Some(held)
    });
    let chunked = push::chunk_and_pack(
        std::io::Cursor::new(header).chain(&mut *rest),
        page_size,
        cs,
        known,
        cfg,
        false,
        tx,
    );
    let held = collector
        .join()
        .map_err(|_| Error::Task("the pack collector panicked".into()))?;
    Ok(match (chunked, held) {
        (Ok(chunked), Some(packs)) => Some(Prepacked { chunked, packs }),
        // Too many new packs, or a read error that the caller will meet and report itself.
        _ => None,
    })
}

/// Open the tarball again and position a reader on the database's data.
fn db_reader(checked: &CheckedTarball) -> Result<std::io::Take<ReadAhead>> {
    let path = &checked.path;
    let (mut gz, _) = open_stream(path)?;
    let skipped = std::io::copy(&mut (&mut gz).take(checked.db.offset), &mut std::io::sink())
        .map_err(|e| read_err(path, None, e))?;
    if skipped != checked.db.offset {
        return Err(Error::TarTruncated {
            tarball: path.display().to_string(),
            detail: "the file changed since it was checked".into(),
        });
    }
    Ok(gz.take(checked.db.size))
}

/// The second pass found different bytes from the first: the file changed in between.
fn changed(checked: &CheckedTarball, bytes: u64, sha: [u8; 32]) -> Result<()> {
    if bytes != checked.db.size || sha != checked.manifest.db_sha256() {
        return Err(Error::HashMismatch {
            what: format!(
                "{DB_ARTIFACT} in {} on the second read (did the file change?)",
                checked.path.display()
            ),
            expected: manifest::sha256_hex_prefixed(&checked.manifest.db_sha256()),
            actual: manifest::sha256_hex_prefixed(&sha),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// When given, the manifest's signer must be in it.
    pub trust: Option<TrustSet>,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Most bytes of new packs held in memory while the tarball is checked, so that it need
    /// not be read twice; 0 always reads it twice.
    pub max_prepacked_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            trust: None,
            progress: false,
            max_prepacked_bytes: MAX_PREPACKED_BYTES,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// The new snapshot's id.
    pub id: String,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The manifest's node id.
    pub node_id: String,
    /// The manifest's signer (base64url).
    pub signer_pubkey: String,
    /// How the manifest's signer was judged.
    pub trust: TarballTrust,
    /// The key that signed the index entry (the importer's).
    pub entry_signer: String,
    /// Database length.
    pub db_bytes: u64,
    /// Database SHA-256 (hex).
    pub db_sha256: String,
    /// Chunks in the database.
    pub chunks: u64,
    /// Chunks this import stored (the rest were already in the store).
    pub new_chunks: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Bytes of objects this import added.
    pub new_bytes: u64,
    /// How many times the tarball was read: 1 when the new packs fitted in memory during
    /// the check, else 2.
    pub tarball_reads: u32,
    /// Requests made to the store.
    pub requests: RequestStats,
}

/// Verify the tarball at `path` (see [`check_tarball`]), then store it as a snapshot and
/// record it in the index with an entry signed by `entry_key`, the importer's key.
///
/// Nothing is written to the store until the whole tarball has verified. The database is
/// chunked as push chunks it and deduplicated against the newest snapshot of every node in
/// the index. The root holds the manifest and cursor bytes verbatim, so an export of the
/// imported snapshot reproduces them.
pub async fn import(
    store: &Store,
    state: &ClientState,
    path: &Path,
    entry_key: &SecretKey,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let start = store.stats();
    let (trust, progress, max_held) =
        (opts.trust.as_ref(), opts.progress, opts.max_prepacked_bytes);
    // Reading the index and the dedup set writes nothing to the store.
    let mut index = Index::load(store, state).await?;
    let known = known_everywhere(store, &index).await?;
    let compressed = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
        .len();
    // Packing during the check pays off when the new packs will fit in memory: an
    // incremental tarball (most chunks already stored) or a small one. For a large first
    // import it would only be thrown away, so the check just hashes.
    let prepack = (max_held > 0 && (!known.map.is_empty() || compressed <= max_held))
        .then(|| (known.clone(), store.config().clone()));
    let (owned_path, owned_trust) = (path.to_path_buf(), trust.cloned());
    let mut checked = tokio::task::spawn_blocking(move || {
        let policy = match &owned_trust {
            Some(keys) => TrustPolicy::Require {
                keys,
                origin: "the keys given to import",
                force_unverified: false,
            },
            None => TrustPolicy::Any,
        };
        let sink = match prepack {
            Some((known, cfg)) => DbSink::Pack {
                known,
                cfg,
                max_held,
            },
            None => DbSink::Hash,
        };
        check_tarball_into(&owned_path, policy, sink)
    })
    .await??;
    tracing::info!(tarball = %path.display(), prepacked = checked.prepacked.is_some(), "tarball verified; importing");

    let (chunked, reads) = match checked.prepacked.take() {
        Some(Prepacked { chunked, packs }) => {
            futures::stream::iter(packs)
                .map(|p| async move {
                    store
                        .put_immutable(&keys::pack(&p.id), bytes::Bytes::from(p.bytes))
                        .await
                })
                .buffer_unordered(2)
                .try_collect::<Vec<()>>()
                .await?;
            (chunked, 1)
        }
        None => {
            let cs = chunk::chunk_size(checked.db.page_size, store.config().chunk_pages)?;
            let reader = db_reader(&checked)?;
            let chunked =
                push::store_chunks(store, reader, checked.db.page_size, cs, known, progress)
                    .await?;
            changed(&checked, chunked.recipe.db_bytes, chunked.sha256)?;
            (chunked, 2)
        }
    };

    let (id, _) =
        push::write_snapshot(store, checked.manifest.bytes(), &checked.cursor, &chunked).await?;
    let new_bytes = store.stats().since(&start).put_bytes;
    let m = &checked.manifest;
    let body = EntryBody {
        kind: EntryKind::Snapshot,
        snapshot: id.to_hex(),
        created_at: m.created_at().to_string(),
        node_id: m.node_id().to_string(),
        signer_pubkey: entry_key.public().to_b64url(),
        db_sha256: hex::encode(chunked.sha256),
        db_bytes: chunked.recipe.db_bytes,
        new_bytes,
        parents: Vec::new(),
        written_at_ms: 0,
    };
    index.append(store, state, body, entry_key).await?;
    tracing::info!(id = %id, new_bytes, "imported");
    Ok(ImportReport {
        id: id.to_hex(),
        created_at: m.created_at().to_string(),
        node_id: m.node_id().to_string(),
        signer_pubkey: m.signer().to_b64url(),
        trust: checked.trust,
        entry_signer: entry_key.public().to_b64url(),
        db_bytes: chunked.recipe.db_bytes,
        db_sha256: hex::encode(chunked.sha256),
        chunks: chunked.recipe.chunks.len() as u64,
        new_chunks: chunked.new_chunks,
        packs: chunked.packs,
        new_bytes,
        tarball_reads: reads,
        requests: store.stats().since(&start),
    })
}

/// The chunks of the newest snapshot of every node: what an import can reuse. Bounded by the
/// number of nodes, not of snapshots.
async fn known_everywhere(store: &Store, index: &Index) -> Result<Locations> {
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for e in index.snapshots() {
        newest.insert(&e.body.node_id, &e.body.snapshot);
    }
    let mut all = Locations::default();
    for snap in newest.values() {
        let locs = push::known_chunks(store, &SnapshotId::from_hex(snap)?).await?;
        for (id, loc) in locs.map {
            all.map.entry(id).or_insert(loc);
        }
    }
    Ok(all)
}

/// The key that signs index entries for imports when none is given: `client.key` in the
/// client state directory, created (mode 0600) on first use.
pub fn client_key(state_dir: &Path) -> Result<SecretKey> {
    let path = state_dir.join("client.key");
    if path.exists() {
        return SecretKey::load_file(&path);
    }
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
    let key = SecretKey::generate()?;
    match key.write_file(&path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), pubkey = %key.public(), "created the client key");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(_) if path.exists() => SecretKey::load_file(&path),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Drop-in `snapshot create` and `snapshot restore`
// ---------------------------------------------------------------------------------------

/// What `snapshot create` should do.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The live database.
    pub db: PathBuf,
    /// The tarball to write; default: stigmem's name in the working directory.
    pub out: Option<PathBuf>,
    /// Sign with this key instead of the node's federation key.
    pub sign_with: Option<SecretKey>,
    /// Where the consistent copy is staged (default: the system temp dir).
    pub tmp_dir: Option<PathBuf>,
}

/// What `snapshot create` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreateReport {
    /// The tarball written.
    pub out: PathBuf,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The node id.
    pub node_id: String,
    /// The signer (base64url).
    pub signer_pubkey: String,
    /// Database length.
    pub db_bytes: u64,
    /// Database SHA-256 (hex).
    pub db_sha256: String,
    /// Tarball length.
    pub tarball_bytes: u64,
}

/// stigmem's default tarball name: `stigmem-snapshot-<UTC %Y%m%dT%H%M%SZ>-<12 hex>.tar.gz`.
pub fn default_tarball_name(now: chrono::DateTime<chrono::Utc>, db_sha256: &[u8; 32]) -> String {
    format!(
        "stigmem-snapshot-{}-{}.tar.gz",
        now.format("%Y%m%dT%H%M%SZ"),
        &hex::encode(db_sha256)[..12]
    )
}

/// Take a consistent copy of a live database and write it as a signed stigmem tarball.
///
/// Like stigmem's `snapshot create`, the node identity is created in `node_meta` when
/// missing; unlike it, no migrations are run (stigvault does not carry stigmem's schema).
pub fn create(opts: &CreateOptions) -> Result<CreateReport> {
    let created_at = manifest::python_isoformat_utc(chrono::Utc::now());
    let tmp_dir = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let identity = sqlite::ensure_identity(&opts.db)?;
    let capture = sqlite::capture(&opts.db, &tmp_dir)?;
    let key = match &opts.sign_with {
        Some(k) => k.clone(),
        None => {
            SecretKey::from_b64url(&identity.federation_privkey, "node_meta.federation_privkey")?
        }
    };
    let open = || {
        File::open(capture.path())
            .map_err(|e| Error::io(format!("opening {}", capture.path().display()), e))
    };
    // The manifest, which comes first in the tarball, needs the database's hash.
    let mut sha = Sha256::new();
    let mut reader = BufReader::with_capacity(IO_BUF, open()?);
    std::io::copy(&mut reader, &mut HashWriter(&mut sha))
        .map_err(|e| Error::io(format!("reading {}", capture.path().display()), e))?;
    let db_sha: [u8; 32] = sha.finalize().into();
    let cursor = manifest::cursor_json(capture.cursor_versions());
    let cursor_sha: [u8; 32] = Sha256::digest(cursor.as_bytes()).into();
    let m = Manifest::build(
        created_at,
        identity.node_id.clone(),
        db_sha,
        cursor_sha,
        &key,
    );

    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(default_tarball_name(chrono::Utc::now(), &db_sha)));
    let tmp = temp_beside(&out)?;
    let mut pipe = GzPipe::new(tmp);
    let db_bytes = capture.db_len();
    write_prelude(
        &mut pipe,
        m.bytes(),
        cursor.as_bytes(),
        db_bytes,
        mtime_of(m.created_at()),
    )?;
    let mut sha = Sha256::new();
    let copied = std::io::copy(
        &mut BufReader::with_capacity(IO_BUF, open()?),
        &mut TeeHash {
            sha: &mut sha,
            out: &mut pipe,
        },
    )
    .map_err(|e| Error::io(format!("reading {}", capture.path().display()), e))?;
    let again: [u8; 32] = sha.finalize().into();
    if copied != db_bytes || again != db_sha {
        return Err(Error::HashMismatch {
            what: format!("captured copy {} read twice", capture.path().display()),
            expected: hex::encode(db_sha),
            actual: hex::encode(again),
        });
    }
    write_trailer(&mut pipe, db_bytes)?;
    let (tmp, tarball_bytes) = pipe.finish(&out.display().to_string())?;
    persist(tmp, &out)?;
    Ok(CreateReport {
        out,
        created_at: m.created_at().to_string(),
        node_id: m.node_id().to_string(),
        signer_pubkey: key.public().to_b64url(),
        db_bytes,
        db_sha256: hex::encode(db_sha),
        tarball_bytes,
    })
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct TeeHash<'a, W> {
    sha: &'a mut Sha256,
    out: &'a mut W,
}

impl<W: Write> Write for TeeHash<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// What `snapshot restore` should do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The tarball.
    pub from: PathBuf,
    /// The destination database.
    pub db: PathBuf,
    /// Trust only these keys (stigmem's `--trusted-keys`). Without, trust only the
    /// destination database's own federation key: never the key the tarball declares.
    pub trusted_keys: Option<TrustSet>,
    /// Waive only the trust check, never hashes, signature or integrity.
    pub force_unverified: bool,
}

/// What `snapshot restore` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// The destination database.
    pub db: PathBuf,
    /// The manifest's node id.
    pub node_id: String,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The signer (base64url).
    pub signer_pubkey: String,
    /// How the signer was judged.
    pub trust: TarballTrust,
    /// Database length.
    pub db_bytes: u64,
    /// Database SHA-256 (hex).
    pub db_sha256: String,
}

/// Verify a stigmem tarball and atomically install its database at `opts.db`.
///
/// The destination is untouched unless every check passes: structure, signature, trust,
/// both artifacts' SHA-256, and `PRAGMA quick_check` of the staged copy (the bytes are the
/// ones the signer hashed, so the structural check suffices; stigmem runs none). The tarball is
/// read once: the database is staged (beside the destination) while it is verified.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreReport> {
    let (keys, origin) = match &opts.trusted_keys {
        Some(k) => (k.clone(), "from --trusted-keys".to_string()),
        None => {
            let mut k = TrustSet::new();
            let own: Option<PublicKey> = pull::destination_key(&opts.db)?;
            let origin = match own {
                Some(key) => {
                    k.insert(key);
                    format!("the federation key of {}", opts.db.display())
                }
                None => format!(
                    "{} has no federation key and no --trusted-keys was given",
                    opts.db.display()
                ),
            };
            (k, origin)
        }
    };
    // One pass: the database is staged beside the destination while it is hashed, and only
    // installed once the whole tarball has verified. A refusal drops (deletes) the staging.
    let mut staging = install::Staging::beside(&opts.db)?;
    let staged = staging.path().to_path_buf();
    let checked = {
        let mut out = BufWriter::with_capacity(IO_BUF, staging.file_mut());
        let checked = check_tarball_into(
            &opts.from,
            TrustPolicy::Require {
                keys: &keys,
                origin: &origin,
                force_unverified: opts.force_unverified,
            },
            DbSink::Copy(&mut out),
        )?;
        out.flush()
            .map_err(|e| Error::io(format!("writing {}", staged.display()), e))?;
        checked
    };
    let copied = checked.db.size;
    sqlite::quick_check(&staged)?;
    install::install(staging, &opts.db)?;
    let m = &checked.manifest;
    Ok(RestoreReport {
        db: opts.db.clone(),
        node_id: m.node_id().to_string(),
        created_at: m.created_at().to_string(),
        signer_pubkey: m.signer().to_b64url(),
        trust: checked.trust,
        db_bytes: copied,
        db_sha256: hex::encode(m.db_sha256()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised_or_refused() {
        assert_eq!(member_name(b"manifest.json").unwrap(), "manifest.json");
        assert_eq!(member_name(b"./artifacts/").unwrap(), "artifacts");
        assert_eq!(member_name(b"artifacts//stigmem.db").unwrap(), DB_ARTIFACT);
        assert_eq!(member_name(b"./").unwrap(), "");
        for bad in [&b"/etc/passwd"[..], b"../x", b"artifacts/../../x", b"a/.."] {
            assert!(
                matches!(member_name(bad), Err(Error::TarUnsafePath { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            member_name(b"artifacts/\xff"),
            Err(Error::TarUndeclaredMember(_))
        ));
    }

    #[test]
    fn default_name_is_stigmems() {
        // stigmem: f"stigmem-snapshot-{ts:%Y%m%dT%H%M%SZ}-{sha256_hex[:12]}.tar.gz"
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T15:20:23.021365+00:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut sha = [0u8; 32];
        sha[..6].copy_from_slice(&[0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f]);
        assert_eq!(
            default_tarball_name(t, &sha),
            "stigmem-snapshot-20261126T152023Z-1a2b3c4d5e6f.tar.gz"
        );
    }

    #[test]
    fn member_mtime_is_created_at() {
        assert_eq!(mtime_of("1970-01-01T00:01:40.5+00:00"), 100);
        assert_eq!(mtime_of("not a time"), 0);
    }

    #[test]
    fn tar_padding_boundaries() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(511), 1);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}
