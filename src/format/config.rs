//! The store's `config` object, written once when the store is initialised.

use serde::{Deserialize, Serialize};

use super::magic::Kind;
use crate::error::{Error, Result};

/// The store configuration.
///
/// Every field is a deterministic function of the stigvault version and the server's
/// behaviour, so two processes initialising the same store at once write identical bytes;
/// on a server that ignores conditional writes, whichever write lands last changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite pages per chunk.
    pub chunk_pages: u32,
    /// A pack is closed once it reaches this many bytes.
    pub pack_target_bytes: u64,
    /// zstd level for chunks.
    pub zstd_level: i32,
    /// Whether the probe at initialisation saw the server honour `If-None-Match: *`.
    pub conditional_put: bool,
    /// How far back in time a listing of index entries reaches behind the newest checkpoint,
    /// to tolerate writers whose clocks lag.
    pub skew_margin_ms: u64,
    /// Uncovered index entries that make a pusher write a new checkpoint.
    pub checkpoint_every: u32,
}

impl StoreConfig {
    /// Encode: header, then pretty JSON (humans read this one).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Kind::Config.header().to_vec();
        serde_json::to_writer_pretty(&mut out, self).expect("config serialises");
        out.push(b'\n');
        out
    }

    /// Decode and sanity-check.
    pub fn decode(bytes: &[u8]) -> Result<StoreConfig> {
        let body = Kind::Config.strip(bytes, "store config")?;
        let c: StoreConfig = serde_json::from_slice(body)
            .map_err(|e| Error::malformed("store config", e.to_string()))?;
        if c.chunk_pages == 0 || c.chunk_pages > 256 || c.pack_target_bytes < 1024 {
            return Err(Error::malformed(
                "store config",
                format!(
                    "chunk_pages {} / pack_target_bytes {} out of range",
                    c.chunk_pages, c.pack_target_bytes
                ),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = StoreConfig {
            chunk_pages: 1,
            pack_target_bytes: 8 << 20,
            zstd_level: 3,
            conditional_put: false,
            skew_margin_ms: 3_600_000,
            checkpoint_every: 32,
        };
        assert_eq!(StoreConfig::decode(&c.encode()).unwrap(), c);
        assert!(c.encode().starts_with(b"SVCONF\0\x01{\n"));
    }
}
