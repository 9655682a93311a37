//! Typed 32-byte BLAKE3 ids.
//!
//! Each kind of object gets its own type so that a pack id can never be passed where a chunk
//! id is expected. Equality goes through [`blake3::Hash`], which compares in constant time.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

macro_rules! blake3_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(blake3::Hash);

        impl $name {
            /// The id of `data`: its BLAKE3 hash.
            pub fn of(data: &[u8]) -> Self {
                Self(blake3::hash(data))
            }

            /// Wrap raw bytes that are already a BLAKE3 digest.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(blake3::Hash::from_bytes(bytes))
            }

            /// Wrap a finished BLAKE3 hash.
            pub fn from_hash(hash: blake3::Hash) -> Self {
                Self(hash)
            }

            /// The raw digest.
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }

            /// The id as 64 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                self.0.to_hex().to_string()
            }

            /// Parse 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self> {
                blake3::Hash::from_hex(s).map(Self).map_err(|e| {
                    Error::InvalidInput(format!(
                        "invalid {} id {s:?}: {e} (expected 64 hex characters)",
                        $what
                    ))
                })
            }

            /// The first 12 hex characters, for messages.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(12);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_bytes().cmp(other.as_bytes())
            }
        }
    };
}

blake3_id!(
    /// The id of a chunk: BLAKE3 of its uncompressed bytes.
    ChunkId,
    "chunk"
);
blake3_id!(
    /// The id of a pack: BLAKE3 of the whole pack object.
    PackId,
    "pack"
);
blake3_id!(
    /// The id of a snapshot: BLAKE3 of its root object.
    SnapshotId,
    "snapshot"
);
blake3_id!(
    /// The id of a recipe object: BLAKE3 of the whole object.
    RecipeId,
    "recipe"
);
blake3_id!(
    /// The id of an index entry: BLAKE3 of the whole entry object.
    EntryId,
    "index entry"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_empty_input() {
        // BLAKE3 of the empty string, from the BLAKE3 reference test vectors.
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trip_and_refusal() {
        let id = SnapshotId::of(b"abc");
        assert_eq!(SnapshotId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(SnapshotId::from_hex("abc").is_err());
        assert_eq!(id.short().len(), 12);
    }
}
