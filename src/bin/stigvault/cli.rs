//! Command-line definitions (clap derive). No logic lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// stigvault: signed, deduplicating snapshots of SQLite databases, in a local directory or
/// any S3-compatible bucket.
#[derive(Debug, Parser)]
#[command(name = "stigvault", version, about, long_about = None)]
pub struct Cli {
    /// Store URL: a path, file:///abs/path or s3://bucket/prefix. Default:
    /// ~/.local/share/stigvault/store.
    #[arg(long, global = true, env = "STIGVAULT_STORE")]
    pub store: Option<String>,

    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Where the client remembers the index state it has verified, per store.
    #[arg(long, global = true, env = "STIGVAULT_STATE_DIR", hide = true)]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Keys trusted to sign snapshots.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// JSON file with an array of base64url Ed25519 public keys (stigmem's format).
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,
    /// Trust this base64url Ed25519 public key (repeatable).
    // A base64url key may start with '-', which clap would otherwise take for a flag.
    #[arg(long = "trust", value_name = "KEY", allow_hyphen_values = true)]
    pub trust: Vec<String>,
    /// Accept a snapshot whose signer is not trusted. Only the trust check is waived;
    /// hashes, signatures and integrity are always checked.
    #[arg(long)]
    pub force_unverified: bool,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a consistent copy of a live database, store what the store lacks, and record a
    /// signed snapshot. Prints the snapshot id as the last line.
    Push {
        /// The SQLite database (WAL mode and concurrent writers are fine).
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// Sign with this secondary key file (stigmem format) instead of the node key.
        #[arg(long, value_name = "KEYFILE")]
        sign_with: Option<PathBuf>,
        /// Print a JSON report instead of the id alone.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a snapshot by id or unique prefix, verify everything, and atomically install it.
    Pull {
        /// Snapshot id, or a unique prefix of at least 6 hex characters.
        id: String,
        /// Destination database path.
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List the snapshots in the verified index.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Write a new secondary signing key (stigmem format, mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
    },
    /// Copy snapshots to another store (offsite archival), transferring only the chunks it
    /// lacks. Each snapshot is verified at the destination before it is recorded there. An
    /// s3:// destination takes its settings from STIGVAULT_TO_AWS_* (e.g.
    /// STIGVAULT_TO_AWS_ACCESS_KEY_ID, STIGVAULT_TO_AWS_ENDPOINT) when any is set, else from
    /// the AWS_* variables the source uses.
    Copy {
        /// Snapshot ids or unique prefixes (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Copy every snapshot of the source.
        #[arg(long)]
        all: bool,
        /// Destination store URL: a path, file:///abs/path or s3://bucket/prefix.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Sign the destination's index entries with this key file; default: the client key
        /// in the state directory (created on first use).
        #[arg(long, value_name = "KEYFILE")]
        sign_with: Option<PathBuf>,
        /// Print a JSON report (bytes and requests on both sides).
        #[arg(long)]
        json: bool,
    },
    /// Store-wide figures: logical and stored bytes, dedup and compression ratios, object
    /// and pack counts, per-node totals.
    Stats {
        /// Print JSON (with per-snapshot figures).
        #[arg(long)]
        json: bool,
    },
    /// Check the index, every manifest and every referenced object; with --read-data, every
    /// chunk and artifact too. Needs no key. Exits 1 if anything is wrong.
    Verify {
        /// Snapshot ids or unique prefixes; default: every live snapshot.
        ids: Vec<String>,
        /// Read all referenced data: every pack's and chunk's hash, every artifact's SHA-256.
        #[arg(long)]
        read_data: bool,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot as a stigmem tarball (.tar.gz) that `stigmem snapshot restore`
    /// accepts; every chunk and the SHA-256 are verified as it streams.
    Export {
        /// Snapshot id, or a unique prefix of at least 6 hex characters.
        id: String,
        /// The tarball to write (replaced only once complete).
        #[arg(long, value_name = "FILE.tar.gz")]
        out: PathBuf,
        /// JSON file of trusted keys; when given (or --trust), the signer must be in it.
        #[arg(long, value_name = "FILE")]
        trusted_keys: Option<PathBuf>,
        /// Trust this base64url Ed25519 public key (repeatable).
        #[arg(long = "trust", value_name = "KEY", allow_hyphen_values = true)]
        trust: Vec<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Verify a stigmem tarball and store it as a snapshot. Prints the snapshot id as the
    /// last line.
    Import {
        /// The tarball (as written by `stigmem snapshot create` or `stigvault export`).
        file: PathBuf,
        /// JSON file of trusted keys; when given (or --trust), the signer must be in it.
        #[arg(long, value_name = "FILE")]
        trusted_keys: Option<PathBuf>,
        /// Trust this base64url Ed25519 public key (repeatable).
        #[arg(long = "trust", value_name = "KEY", allow_hyphen_values = true)]
        trust: Vec<String>,
        /// Sign the index entry with this key file; default: the client key in the state
        /// directory (created on first use).
        #[arg(long, value_name = "KEYFILE")]
        sign_with: Option<PathBuf>,
        /// Memory for new packs made while the tarball is checked, in MiB. When they fit,
        /// the tarball is read once; otherwise twice. 0 always reads it twice.
        #[arg(long, value_name = "MIB", default_value_t = 48)]
        prepack_mib: u64,
        /// Print a JSON report instead of the id alone.
        #[arg(long)]
        json: bool,
    },
    /// Forget snapshots: append a signed tombstone for each, so that ls, pull and later
    /// pushes no longer see them. Nothing is deleted; `stigvault gc` frees the data later.
    Forget {
        /// Snapshot ids, or unique prefixes of at least 6 hex characters.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        signer: TombstoneSigner,
        /// Show what would be forgotten; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Forget the snapshots that no keep rule keeps, per node, by created_at (UTC). A
    /// snapshot is kept if any rule keeps it.
    Prune {
        /// Keep the N newest snapshots.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest snapshot of each of the N most recent hours that have one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_hourly: u32,
        /// The same per day.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: u32,
        /// The same per ISO week.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: u32,
        /// The same per month.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: u32,
        /// Only this node's snapshots.
        #[arg(long, value_name = "NODE_ID")]
        node: Option<String>,
        #[command(flatten)]
        signer: TombstoneSigner,
        /// Show the verdicts; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Free what no live snapshot needs. Two-phase: a run marks what is unreferenced and
    /// deletes what an earlier run marked at least --grace ago, if still unreferenced. Safe
    /// while others push, if every push finishes within the grace period.
    Gc {
        /// How long a mark must age before deletion; e.g. 24h, 90m, 2d.
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        grace: String,
        /// Rewrite packs with less than this fraction of live bytes (0 disables).
        #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
        rewrite_below: f64,
        /// Report what would be deleted, marked and rewritten; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Drop-in replacements for `stigmem snapshot create|restore` (same flags, defaults and
    /// exit codes; stigvault's trust model and atomic install).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `stigvault snapshot ...`: stigmem's snapshot commands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Create a signed snapshot tarball of a live database.
    Create {
        /// Output path (default: stigmem-snapshot-<ts>-<hash>.tar.gz here).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Sign with this secondary key file instead of the node key.
        #[arg(long, value_name = "KEY_FILE")]
        sign_with: Option<PathBuf>,
        /// The database (default: $STIGMEM_DB_PATH, else stigmem.db here).
        #[arg(
            long,
            value_name = "PATH",
            env = "STIGMEM_DB_PATH",
            default_value = "stigmem.db"
        )]
        db: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Verify a snapshot tarball and atomically install its database.
    Restore {
        /// The tarball.
        #[arg(long = "from", value_name = "PATH")]
        from: PathBuf,
        /// JSON array of trusted base64url keys; only these are trusted. Without it only the
        /// destination's own federation key is (never the key the tarball declares).
        #[arg(long, value_name = "PATH")]
        trusted_keys: Option<PathBuf>,
        /// Restore even if the signer is not trusted. Hashes, signature and integrity are
        /// still checked.
        #[arg(long)]
        force_unverified: bool,
        /// The destination database (default: $STIGMEM_DB_PATH, else stigmem.db here).
        #[arg(
            long,
            value_name = "PATH",
            env = "STIGMEM_DB_PATH",
            default_value = "stigmem.db"
        )]
        db: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Who signs tombstones.
#[derive(Debug, clap::Args)]
pub struct TombstoneSigner {
    /// Sign the tombstones with this key file; default: the client key in the state
    /// directory (created on first use).
    #[arg(long, value_name = "KEYFILE")]
    pub sign_with: Option<PathBuf>,
}
