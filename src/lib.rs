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
//!   orchestrates).
//!
//! [`format`] holds the pure encodings of every on-store object (no I/O); `store-layout.md`
//! in the repository is their specification. [`sign`] holds Ed25519 keys and trust sets.

pub mod chunk;
pub mod error;
pub mod format;
pub mod index;
pub mod install;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reassemble;
pub mod sign;
pub mod sqlite;
pub mod store;

pub use error::{Error, Result};
