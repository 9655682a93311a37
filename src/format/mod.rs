//! Pure encodings of every on-store object and of stigmem's manifest. No I/O here.
//!
//! `store-layout.md` at the repository root is the specification of these encodings.

pub mod config;
pub mod id;
pub mod index;
pub mod magic;
pub mod manifest;
pub mod marker;
pub mod pack;
pub mod pyjson;
pub mod recipe;
pub mod snapshot;
