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
    #[arg(long = "trust", value_name = "KEY")]
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
}
