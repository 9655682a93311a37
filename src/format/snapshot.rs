//! Snapshot root objects. The snapshot id is the BLAKE3 hash of the root's bytes.
//!
//! The root carries the stigmem manifest verbatim (its exact bytes, so export reproduces
//! them), the migration cursor artifact verbatim, and the database artifact as a reference to
//! a recipe plus its length and SHA-256. Nothing in it is store-specific, so a snapshot keeps
//! its id when it is copied to another store.

use serde::{Deserialize, Serialize};

use super::id::{RecipeId, SnapshotId};
use super::magic::Kind;
use crate::error::{Error, Result};

/// Largest root accepted: manifests and cursors are small.
const MAX_ROOT_BYTES: usize = 4 << 20;

/// The database artifact of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbArtifact {
    /// Recipe object id (hex).
    pub recipe: String,
    /// Database length in bytes.
    pub bytes: u64,
    /// SHA-256 of the database bytes (hex).
    pub sha256: String,
    /// SQLite page size.
    pub page_size: u32,
    /// Chunk size in bytes.
    pub chunk_size: u32,
}

/// A snapshot's root object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRoot {
    /// The stigmem `manifest.json`, byte for byte.
    pub manifest: String,
    /// `artifacts/schema_migration_cursor.json`, byte for byte.
    pub cursor: String,
    /// `artifacts/stigmem.db`, by reference.
    pub db: DbArtifact,
}

impl SnapshotRoot {
    /// Encode: header, then compact JSON in field order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Kind::Snapshot.header().to_vec();
        // Serialising plain strings and integers into a Vec cannot fail.
        serde_json::to_writer(&mut out, self).expect("root serialises");
        out
    }

    /// The snapshot id of an encoded root.
    pub fn id_of(encoded: &[u8]) -> SnapshotId {
        SnapshotId::of(encoded)
    }

    /// Decode a root fetched under `id`, checking that its hash is `id`.
    pub fn decode_verified(bytes: &[u8], id: &SnapshotId) -> Result<SnapshotRoot> {
        let what = format!("snapshot root {id}");
        let actual = SnapshotId::of(bytes);
        if actual != *id {
            return Err(Error::HashMismatch {
                what,
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        if bytes.len() > MAX_ROOT_BYTES {
            return Err(Error::malformed(&what, "too large"));
        }
        let body = Kind::Snapshot.strip(bytes, &what)?;
        let root: SnapshotRoot =
            serde_json::from_slice(body).map_err(|e| Error::malformed(&what, e.to_string()))?;
        root.recipe_id()
            .map_err(|e| Error::malformed(&what, e.to_string()))?;
        parse_sha256_hex(&root.db.sha256).map_err(|e| Error::malformed(&what, e.to_string()))?;
        Ok(root)
    }

    /// The recipe id.
    pub fn recipe_id(&self) -> Result<RecipeId> {
        RecipeId::from_hex(&self.db.recipe)
    }

    /// The database SHA-256 as bytes.
    pub fn db_sha256(&self) -> Result<[u8; 32]> {
        parse_sha256_hex(&self.db.sha256)
    }
}

/// Parse 64 lowercase hex characters into 32 bytes.
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Error::InvalidInput(format!(
            "{s:?} is not 64 lowercase hex characters"
        )));
    }
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| Error::InvalidInput(format!("{s:?} is not hex: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotRoot {
        SnapshotRoot {
            manifest: "{\n  \"version\": 1\n}".into(),
            cursor: "{\n  \"applied_migrations\": []\n}".into(),
            db: DbArtifact {
                recipe: RecipeId::of(b"r").to_hex(),
                bytes: 4096,
                sha256: "00".repeat(32),
                page_size: 4096,
                chunk_size: 4096,
            },
        }
    }

    #[test]
    fn root_round_trip_and_id_check() {
        let r = sample();
        let enc = r.encode();
        let id = SnapshotRoot::id_of(&enc);
        assert_eq!(SnapshotRoot::decode_verified(&enc, &id).unwrap(), r);
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(matches!(
            SnapshotRoot::decode_verified(&bad, &id),
            Err(Error::HashMismatch { .. })
        ));
    }

    #[test]
    fn known_answer_encoding() {
        // Pinned: the JSON field order is part of the format, since the id hashes these bytes.
        let enc = sample().encode();
        let text = String::from_utf8(enc[8..].to_vec()).unwrap();
        assert!(text.starts_with(r#"{"manifest":"{\n  \"version\": 1\n}","cursor":"#));
        assert!(text.contains(r#""db":{"recipe":""#));
    }
}
