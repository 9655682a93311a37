//! gc markers: the candidates one gc run found unreferenced (phase 1 of the two-phase gc).
//!
//! A marker is `header | zstd(compact JSON)`, the JSON being [`GcMarker`]. It is written once
//! under a unique key, `gc/markers/<writer ms, 13 digits>-<16 random hex>`, and never
//! changed; its server-side modification time is the moment its candidates were marked.
//! See `store-layout.md`, "Garbage collection", for the rule that turns a mark into a
//! deletion.

use serde::{Deserialize, Serialize};

use super::id::{PackId, SnapshotId};
use super::magic::{self, Kind};
use crate::error::{Error, Result};

/// Prefix of marker keys.
pub const MARKERS_PREFIX: &str = "gc/markers";
/// Largest decompressed marker accepted (a million packs in hex is about 70 MB).
const MAX_MARKER_BYTES: usize = 256 << 20;

/// The body of a gc marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcMarker {
    /// The writer's clock when the candidates were computed (ms since the Unix epoch); for
    /// people reading the marker only: the rule uses the server's modification time.
    pub written_at_ms: u64,
    /// Packs no live snapshot's location table referenced (hex ids, sorted).
    pub packs: Vec<String>,
    /// Snapshots whose root and location table were candidates: forgotten snapshots, and
    /// snapshots with no index entry at all (hex ids, sorted).
    pub snapshots: Vec<String>,
}

impl GcMarker {
    /// Build a marker from typed ids (sorted and deduplicated here).
    pub fn new(written_at_ms: u64, packs: &[PackId], snapshots: &[SnapshotId]) -> GcMarker {
        let mut p: Vec<String> = packs.iter().map(|p| p.to_hex()).collect();
        p.sort();
        p.dedup();
        let mut s: Vec<String> = snapshots.iter().map(|s| s.to_hex()).collect();
        s.sort();
        s.dedup();
        GcMarker {
            written_at_ms,
            packs: p,
            snapshots: s,
        }
    }

    /// Encode to the stored object bytes.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("marker serialises");
        let mut out = Kind::GcMarker.header().to_vec();
        out.extend_from_slice(&magic::compress(&json, 3));
        out
    }

    /// Decode a stored marker, checking every id.
    pub fn decode(bytes: &[u8], what: &str) -> Result<GcMarker> {
        let json =
            magic::decompress_bounded(Kind::GcMarker.strip(bytes, what)?, MAX_MARKER_BYTES, what)?;
        let m: GcMarker =
            serde_json::from_slice(&json).map_err(|e| Error::malformed(what, e.to_string()))?;
        m.pack_ids(what)?;
        m.snapshot_ids(what)?;
        Ok(m)
    }

    /// The candidate packs.
    pub fn pack_ids(&self, what: &str) -> Result<Vec<PackId>> {
        self.packs
            .iter()
            .map(|h| PackId::from_hex(h).map_err(|e| Error::malformed(what, e.to_string())))
            .collect()
    }

    /// The candidate snapshots.
    pub fn snapshot_ids(&self, what: &str) -> Result<Vec<SnapshotId>> {
        self.snapshots
            .iter()
            .map(|h| SnapshotId::from_hex(h).map_err(|e| Error::malformed(what, e.to_string())))
            .collect()
    }
}

/// The key of a marker written at `ms` with the random suffix `nonce` (16 hex characters).
pub fn marker_key(ms: u64, nonce: &str) -> String {
    format!("{MARKERS_PREFIX}/{ms:013}-{nonce}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sorted_and_deduplicated() {
        let p = [PackId::of(b"b"), PackId::of(b"a"), PackId::of(b"b")];
        let s = [SnapshotId::of(b"s")];
        let m = GcMarker::new(7, &p, &s);
        assert_eq!(m.packs.len(), 2);
        assert!(m.packs[0] < m.packs[1]);
        let enc = m.encode();
        assert_eq!(&enc[..8], b"SVGCMK\0\x01");
        assert_eq!(GcMarker::decode(&enc, "m").unwrap(), m);
        assert_eq!(marker_key(7, "00ff"), "gc/markers/0000000000007-00ff");
    }

    #[test]
    fn bad_id_is_refused() {
        let m = GcMarker {
            written_at_ms: 1,
            packs: vec!["zz".into()],
            snapshots: vec![],
        };
        assert!(GcMarker::decode(&m.encode(), "m").is_err());
    }
}
