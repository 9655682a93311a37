//! Pack objects: many zstd-compressed chunks in one object, with a self-describing trailer.
//!
//! ```text
//! 0        8                                   trailer_offset        end-16      end
//! | header | chunk 0 | chunk 1 | … | chunk n-1 | zstd(trailer table) | footer (16) |
//! ```
//!
//! Each chunk is one zstd frame of the chunk's bytes. The trailer lists, for every chunk,
//! its id, offset, stored length and raw length, so that a pack can be checked or re-indexed
//! without any other object. The footer is `trailer_offset: u64 LE`, `trailer_len: u32 LE`
//! and the 4 bytes `SVPF`. A pack's id is the BLAKE3 hash of all its bytes.

use super::id::{ChunkId, PackId};
use super::magic::{self, Kind, Reader, HEADER_LEN};
use crate::error::{Error, Result};

/// The footer's closing magic.
const FOOTER_MAGIC: &[u8; 4] = b"SVPF";
const FOOTER_LEN: usize = 16;
/// Bytes of one trailer row: id, offset, stored length, raw length.
const ROW_LEN: usize = 32 + 4 + 4 + 4;
/// A chunk larger than this is refused on read (a chunk is a few SQLite pages at most).
pub const MAX_CHUNK_LEN: u32 = 16 << 20;
/// Length of the optional nonce after a pack's header (see [`PackBuilder::with_nonce`]).
pub const NONCE_LEN: usize = 16;
/// Packs are addressed with 32-bit offsets.
pub const MAX_PACK_LEN: usize = u32::MAX as usize;

/// Where one chunk sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The chunk's id.
    pub chunk: ChunkId,
    /// Offset of its zstd frame from the start of the pack.
    pub offset: u32,
    /// Length of the zstd frame.
    pub stored_len: u32,
    /// Length of the chunk once decompressed.
    pub raw_len: u32,
}

/// Accumulates compressed chunks into one pack.
#[derive(Debug)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub struct FinishedPack {
    /// BLAKE3 of `bytes`.
    pub id: PackId,
    /// The whole object.
    pub bytes: Vec<u8>,
    /// The chunks it holds, in order.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// Start a pack, reserving `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&Kind::Pack.header());
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Start a pack whose first [`NONCE_LEN`] bytes after the header are `nonce`. No trailer
    /// row covers them, so readers skip them; they make the pack's id unique to this write.
    /// gc relies on that: a pack a push writes is always a new object, never one that
    /// already exists as garbage (see `store-layout.md`, "Garbage collection").
    pub fn with_nonce(capacity: usize, nonce: &[u8; NONCE_LEN]) -> Self {
        let mut b = PackBuilder::new(capacity);
        b.buf.extend_from_slice(nonce);
        b
    }

    /// Append one compressed chunk and return its entry.
    pub fn add(&mut self, chunk: ChunkId, compressed: &[u8], raw_len: u32) -> PackEntry {
        let entry = PackEntry {
            chunk,
            offset: self.buf.len() as u32,
            stored_len: compressed.len() as u32,
            raw_len,
        };
        self.buf.extend_from_slice(compressed);
        self.entries.push(entry);
        entry
    }

    /// Bytes so far (header and chunks).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no chunk has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the trailer and footer and hash the pack.
    pub fn finish(self) -> FinishedPack {
        let PackBuilder { mut buf, entries } = self;
        let mut table = Vec::with_capacity(8 + entries.len() * ROW_LEN);
        table.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for e in &entries {
            table.extend_from_slice(e.chunk.as_bytes());
            table.extend_from_slice(&e.offset.to_le_bytes());
            table.extend_from_slice(&e.stored_len.to_le_bytes());
            table.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let trailer = magic::compress(&table, 3);
        let trailer_offset = buf.len() as u64;
        buf.extend_from_slice(&trailer);
        buf.extend_from_slice(&trailer_offset.to_le_bytes());
        buf.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        buf.extend_from_slice(FOOTER_MAGIC);
        FinishedPack {
            id: PackId::of(&buf),
            bytes: buf,
            entries,
        }
    }
}

/// Parse a whole pack's trailer, checking that every entry lies inside the chunk area.
pub fn parse_trailer(pack: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    Kind::Pack.strip(pack, what)?;
    if pack.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::malformed(what, "too short for a pack footer"));
    }
    let footer = &pack[pack.len() - FOOTER_LEN..];
    let mut r = Reader::new(footer, what);
    let trailer_offset = r.u64()?;
    let trailer_len = r.u32()? as u64;
    if r.take(4)? != FOOTER_MAGIC {
        return Err(Error::malformed(what, "bad footer magic"));
    }
    let body_end = (pack.len() - FOOTER_LEN) as u64;
    if trailer_offset < HEADER_LEN as u64 || trailer_offset + trailer_len != body_end {
        return Err(Error::malformed(
            what,
            format!("trailer at {trailer_offset}+{trailer_len} does not end at {body_end}"),
        ));
    }
    let trailer = &pack[trailer_offset as usize..body_end as usize];
    let table = magic::decompress_bounded(trailer, 64 << 20, what)?;
    let mut r = Reader::new(&table, what);
    let n = r.count(ROW_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = PackEntry {
            chunk: ChunkId::from_bytes(r.bytes32()?),
            offset: r.u32()?,
            stored_len: r.u32()?,
            raw_len: r.u32()?,
        };
        let end = e.offset as u64 + e.stored_len as u64;
        if (e.offset as usize) < HEADER_LEN || end > trailer_offset {
            return Err(Error::malformed(
                what,
                format!(
                    "chunk {} at {}+{} lies outside the chunk area",
                    e.chunk, e.offset, e.stored_len
                ),
            ));
        }
        entries.push(e);
    }
    r.finish()?;
    Ok(entries)
}

/// Decompress one stored chunk and check its length and BLAKE3 hash.
pub fn decode_chunk(
    stored: &[u8],
    expected: &ChunkId,
    raw_len: u32,
    what: &str,
) -> Result<Vec<u8>> {
    let mut dec = new_decompressor()?;
    decode_chunk_with(&mut dec, stored, expected, raw_len, what)
}

/// A zstd decompression context for [`decode_chunk_with`]; reusing one across chunks avoids
/// allocating a fresh context per 4 KiB page.
pub fn new_decompressor() -> Result<zstd::bulk::Decompressor<'static>> {
    zstd::bulk::Decompressor::new().map_err(|e| Error::Task(format!("zstd context: {e}")))
}

/// [`decode_chunk`] with a caller-owned decompression context.
pub fn decode_chunk_with(
    dec: &mut zstd::bulk::Decompressor<'static>,
    stored: &[u8],
    expected: &ChunkId,
    raw_len: u32,
    what: &str,
) -> Result<Vec<u8>> {
    if raw_len > MAX_CHUNK_LEN {
        return Err(Error::malformed(
            what,
            format!("raw length {raw_len} exceeds the chunk limit"),
        ));
    }
    // The capacity bounds the output: a frame that would decompress to more is an error.
    let raw = dec
        .decompress(stored, raw_len as usize)
        .map_err(|e| Error::malformed(what, format!("zstd: {e}")))?;
    if raw.len() != raw_len as usize {
        return Err(Error::LengthMismatch {
            what: what.to_string(),
            expected: raw_len as u64,
            actual: raw.len() as u64,
        });
    }
    let actual = ChunkId::of(&raw);
    if actual != *expected {
        return Err(Error::HashMismatch {
            what: what.to_string(),
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(chunks: &[&[u8]]) -> FinishedPack {
        let mut b = PackBuilder::new(0);
        for c in chunks {
            b.add(ChunkId::of(c), &magic::compress(c, 3), c.len() as u32);
        }
        b.finish()
    }

    #[test]
    fn round_trip() {
        let chunks: [&[u8]; 3] = [b"", b"a", &[7u8; 4096]];
        let p = build(&chunks);
        assert_eq!(p.id, PackId::of(&p.bytes));
        let parsed = parse_trailer(&p.bytes, "pack").unwrap();
        assert_eq!(parsed, p.entries);
        for (e, c) in parsed.iter().zip(chunks) {
            let stored = &p.bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
            assert_eq!(decode_chunk(stored, &e.chunk, e.raw_len, "c").unwrap(), c);
        }
    }

    #[test]
    fn nonce_makes_identical_content_a_distinct_pack() {
        let c = [3u8; 4096];
        let mut a = PackBuilder::with_nonce(0, &[1; NONCE_LEN]);
        let mut b = PackBuilder::with_nonce(0, &[2; NONCE_LEN]);
        for p in [&mut a, &mut b] {
            p.add(ChunkId::of(&c), &magic::compress(&c, 3), c.len() as u32);
        }
        let (a, b) = (a.finish(), b.finish());
        assert_ne!(a.id, b.id);
        let e = parse_trailer(&b.bytes, "p").unwrap();
        assert_eq!(e[0].offset as usize, HEADER_LEN + NONCE_LEN);
        let stored = &b.bytes[e[0].offset as usize..(e[0].offset + e[0].stored_len) as usize];
        assert_eq!(decode_chunk(stored, &e[0].chunk, 4096, "c").unwrap(), c);
    }

    #[test]
    fn known_answer_empty_pack() {
        // An empty pack: header, zstd(level 3) of a zero count, footer. Pinned so that a
        // change to the encoding is a conscious format change.
        let p = PackBuilder::new(0).finish();
        assert_eq!(&p.bytes[..8], b"SVPACK\0\x01");
        assert_eq!(&p.bytes[p.bytes.len() - 4..], b"SVPF");
        assert_eq!(parse_trailer(&p.bytes, "p").unwrap(), vec![]);
    }

    #[test]
    fn flipped_byte_in_chunk_is_caught() {
        let c = [9u8; 4096];
        let mut p = build(&[&c]);
        let e = p.entries[0];
        let mut stored = p.bytes[e.offset as usize..(e.offset + e.stored_len) as usize].to_vec();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert!(decode_chunk(&stored, &e.chunk, e.raw_len, "c").is_err());
        // A truncated pack no longer parses.
        p.bytes.truncate(p.bytes.len() - 1);
        assert!(parse_trailer(&p.bytes, "p").is_err());
    }
}
