//! stigvault: a content-addressed, signed, deduplicating snapshot store for SQLite databases.
//!
//! # Layout
//!
//! The data flow shows in the module names:
//!
//! - push: [`sqlite`] capture → [`chunk`] (page-aligned) → BLAKE3 + zstd → packs →
//!   [`store`] upload → [`index`] signed entry ([`push`] orchestrates);
//! - pull: [`index`] resolve + verify → pack range reads → chunk verification →
//!   reassembly → SHA-256 + manifest signature → [`install`] atomic install ([`pull`]
//!   orchestrates);
//! - retention: [`retention`] forget/prune → signed tombstones in the [`index`] → [`gc`] marks
//!   what no live snapshot references, and deletes it a grace period later if still
//!   unreferenced (rewriting mostly-garbage packs on the way);
//! - copy: source [`index`] → chunks the destination lacks → verified → destination packs →
//!   root byte for byte → read back and reassembled at the destination → signed destination
//!   entry ([`copy`] orchestrates);
//! - [`verify`]: index entries and checkpoints → manifests → object sizes → (read-data) pack
//!   hashes and artifact SHA-256s; [`stats`]: exact dedup figures from location tables.
//!
//! - stigmem tarballs: [`tarball`] imports a `.tar.gz` (verify everything → chunk → packs →
//!   signed entry) and exports a snapshot as one (reassemble + verify → tar → gzip), and
//!   provides the drop-in `snapshot create|restore`.
//!
//! [`format`](mod@format) holds the pure encodings of every on-store object (no I/O); `store-layout.md`
//! in the repository is their specification. [`sign`] holds Ed25519 keys and trust sets.

pub mod chunk;
pub mod copy;
pub mod error;
pub mod format;
pub mod gc;
pub mod index;
pub mod install;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reassemble;
pub mod retention;
pub mod sign;
pub mod sqlite;
pub mod stats;
pub mod store;
pub mod tarball;
pub mod verify;

pub use error::{Error, Result};
