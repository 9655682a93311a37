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
