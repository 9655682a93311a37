//! The crate's one public error type.
//!
//! Verification failures have variants of their own so that callers (and tests) can tell a
//! tampered store from a network fault. Messages are lowercase and name the object and the
//! values involved, so that a user reading one knows what broke and what to do.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in stigvault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- input and configuration -------------------------------------------------------
    /// A store URL that stigvault cannot use.
    #[error("invalid store url {url:?}: {reason}")]
    InvalidStoreUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// An argument or input value that is malformed.
    #[error("{0}")]
    InvalidInput(String),

    /// A key (public or private) that is not a base64url raw 32-byte Ed25519 key.
    #[error("invalid key {what}: {reason}")]
    InvalidKey {
        /// Where the key came from (a file name, a flag, a manifest field).
        what: String,
        /// Why it was refused.
        reason: String,
    },

    /// A snapshot id or prefix that matched nothing in the verified index.
    #[error("no snapshot matches {0:?}; run `stigvault ls` to see the snapshots in this store")]
    SnapshotNotFound(String),

    /// A prefix that matched more than one snapshot.
    #[error("snapshot prefix {prefix:?} is ambiguous; it matches:\n  {}\nuse a longer prefix", .candidates.join("\n  "))]
    AmbiguousPrefix {
        /// The prefix as given.
        prefix: String,
        /// Every id that starts with it.
        candidates: Vec<String>,
    },

    // ---- format ------------------------------------------------------------------------
    /// An on-store object or a stigmem artifact that does not parse.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (e.g. "pack 77c1…", "manifest.json").
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An object whose magic or version this build does not understand.
    #[error("{what} has unsupported format {found:?}; expected {expected:?} (upgrade stigvault?)")]
    UnsupportedFormat {
        /// What was being read.
        what: String,
        /// The magic/version found.
        found: String,
        /// The magic/version this build writes.
        expected: String,
    },

    // ---- verification ------------------------------------------------------------------
    /// Content whose hash is not the one it is addressed or declared by.
    #[error("{what}: content hashes to {actual}, expected {expected}")]
    HashMismatch {
        /// The object (chunk, pack, artifact, root) being checked.
        what: String,
        /// The hash that was expected.
        expected: String,
        /// The hash actually computed.
        actual: String,
    },

    /// Content whose length is not the declared one.
    #[error("{what}: length is {actual} bytes, expected {expected}")]
    LengthMismatch {
        /// The object being checked.
        what: String,
        /// The declared length.
        expected: u64,
        /// The real length.
        actual: u64,
    },

    /// A signature that does not verify.
    #[error("bad signature on {what} (signer {signer}): the object was altered or forged")]
    BadSignature {
        /// The signed object.
        what: String,
        /// The key it claims to be signed by.
        signer: String,
    },

    /// A valid signature by a key that is not in the trust set.
    #[error(
        "snapshot {snapshot} is signed by {signer}, which is not a trusted key; \
         if you trust it, pass `--trust {signer}` (or list it in a --trusted-keys file), \
         or use --force-unverified to waive only this check"
    )]
    UntrustedSigner {
        /// The snapshot id (or tarball) being verified.
        snapshot: String,
        /// The signer's base64url public key.
        signer: String,
    },

    /// The signed index is inconsistent: an entry is missing, altered or rolled back.
    #[error("index verification failed: {0}")]
    IndexTampered(String),

    /// `PRAGMA integrity_check` did not answer `ok`.
    #[error("database integrity check failed on {path}: {detail}")]
    IntegrityCheck {
        /// The staged database.
        path: PathBuf,
        /// The first lines integrity_check returned.
        detail: String,
    },

    /// An object the index or a recipe refers to is not in the store.
    #[error("object {0} is missing from the store")]
    MissingObject(String),

    // ---- backends ----------------------------------------------------------------------
    /// An error from the object store backend.
    #[error("store error on {key}: {source}")]
    Store {
        /// The object key involved (or the prefix for listings).
        key: String,
        /// The backend's error.
        #[source]
        source: object_store::Error,
    },

    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An SQLite error.
    #[error("sqlite error on {context}: {source}")]
    Sqlite {
        /// What was being done, naming the database.
        context: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),

    // ---- sqlite/install ----
    /// An SQLite database that lacks stigmem's `node_meta` table, so it holds no node identity.
    #[error(
        "{path} is not a stigmem database: it has no node_meta table \
         (stigmem itself fails on it with \"no such table: node_meta\"); \
         check that the path names a stigmem node's database"
    )]
    NotStigmemDatabase {
        /// The database that was opened.
        path: PathBuf,
    },

    /// A database that another connection has open, so it cannot be replaced safely.
    #[error(
        "{path} is in use by another process ({detail}); stop the stigmem node, and anything \
         else that has the database open, then retry"
    )]
    DatabaseInUse {
        /// The database that is in use.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },

    // ---- copy/verify/stats ----
    /// A snapshot copied to another store did not verify there; it was not recorded in the
    /// destination's index. Re-running the copy retries it.
    #[error("copy of snapshot {snapshot} to {store} did not verify there, so it was not recorded: {source}")]
    CopyNotVerified {
        /// The snapshot id.
        snapshot: String,
        /// The destination store's label.
        store: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },

    /// An operation stopped on purpose before it finished (the test hook of copy); what it
    /// wrote so far is kept, and re-running it resumes.
    #[error("{0}")]
    Interrupted(String),

    // ---- tarball ----
    /// A tarball member whose path is absolute or climbs out with `..`.
    #[error("tarball member {member:?} is refused: {reason}")]
    TarUnsafePath {
        /// The member name as stored.
        member: String,
        /// "absolute path" or "contains a `..` component".
        reason: String,
    },

    /// A symbolic link member; stigmem snapshots hold regular files only.
    #[error("tarball member {member:?} is a symbolic link to {target:?}; snapshots hold regular files only")]
    TarSymlink {
        /// The member name.
        member: String,
        /// Where it points.
        target: String,
    },

    /// A hard link member; stigmem snapshots hold regular files only.
    #[error(
        "tarball member {member:?} is a hard link to {target:?}; snapshots hold regular files only"
    )]
    TarHardlink {
        /// The member name.
        member: String,
        /// What it links to.
        target: String,
    },

    /// A device, fifo or other special member.
    #[error("tarball member {member:?} is a {kind}; snapshots hold regular files only")]
    TarSpecialMember {
        /// The member name.
        member: String,
        /// "character device", "block device", "fifo", ...
        kind: String,
    },

    /// The same member name appears twice (a later copy could shadow a verified one).
    #[error("tarball member {0:?} appears more than once")]
    TarDuplicateMember(String),

    /// A member that the manifest does not declare and stigmem does not write.
    #[error("tarball member {0:?} is not declared in manifest.json")]
    TarUndeclaredMember(String),

    /// A required member is not in the tarball.
    #[error("tarball has no member {0:?}")]
    TarMissingMember(String),

    /// The manifest declares an artifact that a stigvault snapshot cannot hold.
    #[error("manifest.json declares artifact {0:?}; stigvault stores only artifacts/stigmem.db and artifacts/schema_migration_cursor.json")]
    TarUnsupportedArtifact(String),

    /// The gzip or tar stream ends early.
    #[error("tarball {tarball} is truncated: {detail}")]
    TarTruncated {
        /// The tarball.
        tarball: String,
        /// Where it ended.
        detail: String,
    },

    /// The gzip or tar stream is damaged.
    #[error("tarball {tarball} is corrupt: {detail}")]
    TarCorrupt {
        /// The tarball.
        tarball: String,
        /// What is wrong.
        detail: String,
    },

    /// A member whose real content length is not the length its tar header declares.
    #[error(
        "tarball member {member:?}: its tar header says {header} bytes, but {reason} {actual}"
    )]
    TarMemberSize {
        /// The member name.
        member: String,
        /// Size in the tar header.
        header: u64,
        /// The real or implied size.
        actual: u64,
        /// Where `actual` comes from (e.g. "its SQLite header implies").
        reason: String,
    },

    /// A member larger than stigvault accepts, refused before it is read (gzip bombs).
    #[error(
        "tarball member {member:?} claims {size} bytes, more than the {limit} allowed: {reason}"
    )]
    TarMemberTooLarge {
        /// The member name.
        member: String,
        /// The size it claims.
        size: u64,
        /// The largest accepted.
        limit: u64,
        /// Why the limit holds.
        reason: String,
    },

    /// A tarball signed by a key outside the trust set. stigvault never trusts a key just
    /// because the snapshot declares it, unlike stigmem's implicit mode.
    #[error(
        "{tarball} is signed by {signer}, which is not trusted; stigvault does not trust a \
         key only because the snapshot itself declares it (no self-attestation). Trusted \
         here: {trusted}. If you trust the signer, list it in a --trusted-keys file, or pass \
         --force-unverified to waive only this check"
    )]
    TarUntrustedSigner {
        /// The tarball.
        tarball: String,
        /// The manifest's declared signer.
        signer: String,
        /// Which keys were trusted, and where they came from.
        trusted: String,
    },

    // ---- retention/gc ----
    /// A query that matches only snapshots a tombstone has forgotten.
    #[error(
        "snapshot {snapshot} was forgotten (tombstone {entry}, signed by {signer}); \
         its data may already have been garbage-collected"
    )]
    SnapshotForgotten {
        /// The forgotten snapshot's id.
        snapshot: String,
        /// Who signed the tombstone.
        signer: String,
        /// The tombstone's index key.
        entry: String,
    },

    /// A prune policy that keeps nothing, which would forget every snapshot.
    #[error(
        "the prune policy keeps nothing: give at least one --keep-last, --keep-hourly, \
         --keep-daily, --keep-weekly or --keep-monthly greater than 0"
    )]
    EmptyRetentionPolicy,

    /// gc found the store in a state it will not delete from.
    #[error("gc refused to run: {0}")]
    GcRefused(String),
}

impl Error {
    /// Build an [`Error::Io`] naming what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Build an [`Error::Sqlite`] naming what was being done.
    pub fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            context: context.into(),
            source,
        }
    }

    /// Build an [`Error::Malformed`].
    pub fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True for failures that mean the data itself is bad (tampered, forged, corrupt), as
    /// opposed to an environment or network problem.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::HashMismatch { .. }
                | Error::LengthMismatch { .. }
                | Error::BadSignature { .. }
                | Error::UntrustedSigner { .. }
                | Error::IndexTampered(_)
                | Error::IntegrityCheck { .. }
                | Error::Malformed { .. }
        )
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}
