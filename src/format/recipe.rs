//! Recipes (the ordered chunk ids of a database artifact) and location tables (where those
//! chunks live in one particular store).
//!
//! The two are split on purpose: a recipe depends only on the database's bytes, so the
//! snapshot root that names it, and therefore the snapshot id, is the same in every store.
//! Location tables are per store and are rewritten by copy and gc.

use std::collections::HashMap;

use super::id::{ChunkId, PackId};
use super::magic::{self, Kind, Reader};
use crate::error::{Error, Result};

/// Largest decompressed recipe or location table accepted (a 1 TiB database in 4 KiB chunks
/// needs about 8 GiB of recipe; we stop far earlier and say so).
const MAX_TABLE_BYTES: usize = 1 << 30;

/// The ordered list of chunks a database artifact is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Length of the database in bytes.
    pub db_bytes: u64,
    /// SQLite page size the chunk boundaries follow.
    pub page_size: u32,
    /// Bytes per chunk: a whole number of pages. Only the last chunk may be shorter.
    pub chunk_size: u32,
    /// Chunk ids in file order.
    pub chunks: Vec<ChunkId>,
}

impl Recipe {
    /// Encode to the stored object bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(24 + self.chunks.len() * 32);
        body.extend_from_slice(&self.db_bytes.to_le_bytes());
        body.extend_from_slice(&self.page_size.to_le_bytes());
        body.extend_from_slice(&self.chunk_size.to_le_bytes());
        body.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for c in &self.chunks {
            body.extend_from_slice(c.as_bytes());
        }
        let mut out = Kind::Recipe.header().to_vec();
        out.extend_from_slice(&magic::compress(&body, 3));
        out
    }

    /// Decode and validate a stored recipe.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Recipe> {
        let body =
            magic::decompress_bounded(Kind::Recipe.strip(bytes, what)?, MAX_TABLE_BYTES, what)?;
        let mut r = Reader::new(&body, what);
        let db_bytes = r.u64()?;
        let page_size = r.u32()?;
        let chunk_size = r.u32()?;
        let n = r.count(32)?;
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkId::from_bytes(r.bytes32()?));
        }
        r.finish()?;
        let recipe = Recipe {
            db_bytes,
            page_size,
            chunk_size,
            chunks,
        };
        recipe.validate(what)?;
        Ok(recipe)
    }

    /// The length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> u32 {
        let start = i as u64 * self.chunk_size as u64;
        (self.db_bytes - start).min(self.chunk_size as u64) as u32
    }

    fn validate(&self, what: &str) -> Result<()> {
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return Err(Error::malformed(
                what,
                format!("page size {} is not valid", self.page_size),
            ));
        }
        if self.chunk_size == 0
            || self.chunk_size % self.page_size != 0
            || self.chunk_size > super::pack::MAX_CHUNK_LEN
        {
            return Err(Error::malformed(
                what,
                format!(
                    "chunk size {} is not a whole number of {}-byte pages",
                    self.chunk_size, self.page_size
                ),
            ));
        }
        let expected = self.db_bytes.div_ceil(self.chunk_size as u64);
        if self.chunks.len() as u64 != expected {
            return Err(Error::malformed(
                what,
                format!(
                    "{} chunks for {} bytes, expected {expected}",
                    self.chunks.len(),
                    self.db_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Where a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Offset of its zstd frame in the pack.
    pub offset: u32,
    /// Length of the zstd frame.
    pub stored_len: u32,
    /// Decompressed length.
    pub raw_len: u32,
}

/// The location of every distinct chunk of one snapshot, in one store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations {
    /// Chunk id to location.
    pub map: HashMap<ChunkId, Location>,
}

const LOC_ROW: usize = 32 + 4 + 4 + 4 + 4;

impl Locations {
    /// Encode to the stored object bytes (rows sorted by chunk id, packs deduplicated).
    pub fn encode(&self) -> Vec<u8> {
        let mut packs: Vec<PackId> = self.map.values().map(|l| l.pack).collect();
        packs.sort();
        packs.dedup();
        let pack_index: HashMap<PackId, u32> = packs
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect();
        let mut rows: Vec<(&ChunkId, &Location)> = self.map.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let mut body = Vec::with_capacity(16 + packs.len() * 32 + rows.len() * LOC_ROW);
        body.extend_from_slice(&(packs.len() as u64).to_le_bytes());
        for p in &packs {
            body.extend_from_slice(p.as_bytes());
        }
        body.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for (c, l) in rows {
            body.extend_from_slice(c.as_bytes());
            body.extend_from_slice(&pack_index[&l.pack].to_le_bytes());
            body.extend_from_slice(&l.offset.to_le_bytes());
            body.extend_from_slice(&l.stored_len.to_le_bytes());
            body.extend_from_slice(&l.raw_len.to_le_bytes());
        }
        let mut out = Kind::Locations.header().to_vec();
        out.extend_from_slice(&magic::compress(&body, 3));
        out
    }

    /// Decode a stored location table.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Locations> {
        let body =
            magic::decompress_bounded(Kind::Locations.strip(bytes, what)?, MAX_TABLE_BYTES, what)?;
        let mut r = Reader::new(&body, what);
        let np = r.count(32)?;
        let mut packs = Vec::with_capacity(np);
        for _ in 0..np {
            packs.push(PackId::from_bytes(r.bytes32()?));
        }
        let n = r.count(LOC_ROW)?;
        let mut map = HashMap::with_capacity(n);
        for _ in 0..n {
            let chunk = ChunkId::from_bytes(r.bytes32()?);
            let pi = r.u32()? as usize;
            let pack = *packs
                .get(pi)
                .ok_or_else(|| Error::malformed(what, format!("pack index {pi} out of range")))?;
            let loc = Location {
                pack,
                offset: r.u32()?,
                stored_len: r.u32()?,
                raw_len: r.u32()?,
            };
            map.insert(chunk, loc);
        }
        r.finish()?;
        Ok(Locations { map })
    }

    /// The distinct packs referenced.
    pub fn packs(&self) -> Vec<PackId> {
        let mut p: Vec<PackId> = self.map.values().map(|l| l.pack).collect();
        p.sort();
        p.dedup();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_round_trip_and_boundaries() {
        // Boundary sizes on purpose: 0, 1, page-1, page, page+1.
        for db_bytes in [0u64, 1, 4095, 4096, 4097] {
            let n = db_bytes.div_ceil(4096) as usize;
            let r = Recipe {
                db_bytes,
                page_size: 4096,
                chunk_size: 4096,
                chunks: (0..n).map(|i| ChunkId::of(&[i as u8])).collect(),
            };
            let back = Recipe::decode(&r.encode(), "r").unwrap();
            assert_eq!(back, r);
            if n > 0 {
                assert_eq!(
                    back.chunk_len(n - 1) as u64,
                    db_bytes - (n as u64 - 1) * 4096
                );
            }
        }
    }

    #[test]
    fn recipe_with_wrong_count_is_refused() {
        let r = Recipe {
            db_bytes: 8192,
            page_size: 4096,
            chunk_size: 4096,
            chunks: vec![ChunkId::of(b"x")],
        };
        assert!(Recipe::decode(&r.encode(), "r").is_err());
    }

    #[test]
    fn locations_round_trip() {
        let mut l = Locations::default();
        for i in 0..100u32 {
            l.map.insert(
                ChunkId::of(&i.to_le_bytes()),
                Location {
                    pack: PackId::of(&[(i % 3) as u8]),
                    offset: 8 + i * 10,
                    stored_len: 10,
                    raw_len: 4096,
                },
            );
        }
        let back = Locations::decode(&l.encode(), "l").unwrap();
        assert_eq!(back, l);
        assert_eq!(back.packs().len(), 3);
        // Encoding is deterministic.
        assert_eq!(l.encode(), back.encode());
    }
}
