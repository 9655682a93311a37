//! The 8-byte header every stigvault object starts with, and small binary helpers.
//!
//! A header is a 6-byte ASCII tag, a zero byte and a version byte, e.g. `SVPACK\0\x01`.
//! Readers refuse an unknown tag or version instead of guessing.

use crate::error::{Error, Result};

/// Length of every object header.
pub const HEADER_LEN: usize = 8;

/// The kinds of stigvault objects and their frozen tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `config`: the store's configuration.
    Config,
    /// `packs/…`: chunk containers.
    Pack,
    /// `recipes/…`: the chunk sequence of a database artifact.
    Recipe,
    /// `locations/…`: where a snapshot's chunks live in this store.
    Locations,
    /// `snapshots/…`: a snapshot's root object.
    Snapshot,
    /// `index/entries/…`: a signed index entry.
    Entry,
    /// `index/checkpoints/…`: a bundle of index entries.
    Checkpoint,
    /// `gc/markers/…`: the candidates one gc run found unreferenced.
    GcMarker,
}

impl Kind {
    /// The 6-byte tag.
    pub fn tag(self) -> &'static [u8; 6] {
        match self {
            Kind::Config => b"SVCONF",
            Kind::Pack => b"SVPACK",
            Kind::Recipe => b"SVRCPE",
            Kind::Locations => b"SVLOCS",
            Kind::Snapshot => b"SVSNAP",
            Kind::Entry => b"SVENTR",
            Kind::Checkpoint => b"SVCKPT",
            Kind::GcMarker => b"SVGCMK",
        }
    }

    /// The one version of this kind this build reads and writes.
    pub fn version(self) -> u8 {
        1
    }

    /// The full 8-byte header.
    pub fn header(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..6].copy_from_slice(self.tag());
        h[7] = self.version();
        h
    }

    /// Check the header of `bytes` and return what follows it.
    pub fn strip<'a>(self, bytes: &'a [u8], what: &str) -> Result<&'a [u8]> {
        let expected = self.header();
        let found = bytes.get(..HEADER_LEN).ok_or_else(|| {
            Error::malformed(
                what,
                format!("{} bytes is too short for a header", bytes.len()),
            )
        })?;
        if found != expected {
            return Err(Error::UnsupportedFormat {
                what: what.to_string(),
                found: String::from_utf8_lossy(found).escape_debug().to_string(),
                expected: String::from_utf8_lossy(&expected)
                    .escape_debug()
                    .to_string(),
            });
        }
        Ok(&bytes[HEADER_LEN..])
    }
}

/// A bounds-checked little-endian reader over a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    /// Read `buf`, naming it `what` in errors.
    pub fn new(buf: &'a [u8], what: &'a str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::malformed(
                    self.what,
                    format!("truncated: wanted {n} bytes at offset {}", self.pos),
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Read a `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Read 32 raw bytes.
    pub fn bytes32(&mut self) -> Result<[u8; 32]> {
        let b = self.take(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A count that is about to drive an allocation: refuse one that cannot fit in what is
    /// left, given `each` bytes per item, so a hostile object cannot ask for gigabytes.
    pub fn count(&mut self, each: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(each as u64) > left {
            return Err(Error::malformed(
                self.what,
                format!("declares {n} items of {each} bytes but only {left} bytes remain"),
            ));
        }
        Ok(n as usize)
    }

    /// Fail unless everything was consumed.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::malformed(
                self.what,
                format!("{} trailing bytes", self.buf.len() - self.pos),
            ));
        }
        Ok(())
    }
}

/// zstd-decompress `data`, refusing output larger than `limit` bytes.
pub fn decompress_bounded(data: &[u8], limit: usize, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut dec = zstd::stream::read::Decoder::new(data)
        .map_err(|e| Error::malformed(what, format!("zstd: {e}")))?;
    let mut out = Vec::new();
    let n = (&mut dec)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::malformed(what, format!("zstd: {e}")))?;
    if n > limit {
        return Err(Error::malformed(
            what,
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// zstd-compress `data` at `level`.
pub fn compress(data: &[u8], level: i32) -> Vec<u8> {
    // Compressing into a Vec cannot fail short of allocation failure.
    zstd::bulk::compress(data, level).expect("zstd compression into memory does not fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let mut obj = Kind::Pack.header().to_vec();
        obj.extend_from_slice(b"rest");
        assert_eq!(Kind::Pack.strip(&obj, "p").unwrap(), b"rest");
        assert!(matches!(
            Kind::Recipe.strip(&obj, "p"),
            Err(Error::UnsupportedFormat { .. })
        ));
        obj[7] = 2;
        assert!(Kind::Pack.strip(&obj, "p").is_err());
        assert!(Kind::Pack.strip(b"SVP", "p").is_err());
    }

    #[test]
    fn hostile_count_is_refused() {
        let mut b = Vec::new();
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut r = Reader::new(&b, "x");
        assert!(r.count(32).is_err());
    }

    #[test]
    fn bounded_decompression() {
        let c = compress(&[0u8; 10_000], 3);
        assert_eq!(decompress_bounded(&c, 10_000, "x").unwrap().len(), 10_000);
        assert!(decompress_bounded(&c, 9_999, "x").is_err());
    }
}
