//! Page-aligned chunking.
//!
//! Chunk boundaries fall at multiples of the database's page size, and a chunk is a whole
//! number of pages (only the last may be short, for a file that is not a whole number of
//! pages). SQLite rewrites whole pages, so a changed row changes only the chunks of the pages
//! it touches; content-defined chunking would gain nothing here and cost hashing time.

use std::io::Read;

use crate::error::{Error, Result};
use crate::format::pack::MAX_CHUNK_LEN;

/// Bytes per chunk for a page size and a page count.
pub fn chunk_size(page_size: u32, chunk_pages: u32) -> Result<u32> {
    let size = page_size as u64 * chunk_pages as u64;
    if chunk_pages == 0 || size > MAX_CHUNK_LEN as u64 {
        return Err(Error::InvalidInput(format!(
            "{chunk_pages} pages of {page_size} bytes is not a valid chunk size"
        )));
    }
    Ok(size as u32)
}

/// Reads a file in blocks that hold a whole number of chunks.
pub struct BlockReader<R> {
    inner: R,
    block: usize,
}

impl<R: Read> BlockReader<R> {
    /// Read `inner` in blocks of about `target` bytes, rounded to whole chunks.
    pub fn new(inner: R, chunk_size: u32, target: usize) -> Self {
        let cs = chunk_size as usize;
        let block = (target / cs).max(1) * cs;
        BlockReader { inner, block }
    }

    /// The next block into `buf` (cleared first); `false` at end of file. Only the last
    /// block may be shorter than the block size.
    pub fn next_block(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        buf.clear();
        buf.resize(self.block, 0);
        let mut filled = 0;
        while filled < self.block {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(filled > 0)
    }
}

/// Split a block into chunks of `chunk_size` (the last may be short).
pub fn split(block: &[u8], chunk_size: u32) -> std::slice::Chunks<'_, u8> {
    block.chunks(chunk_size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_follow_pages() {
        // Boundary sizes on purpose: 0, 1, page-1, page, page+1, several pages.
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 5] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut r = BlockReader::new(&data[..], 4096, 8192);
            let mut buf = Vec::new();
            let mut chunks = Vec::new();
            while r.next_block(&mut buf).unwrap() {
                assert!(buf.len() == 8192 || chunks.len() * 4096 + buf.len() == len);
                chunks.extend(split(&buf, 4096).map(|c| c.to_vec()));
            }
            assert_eq!(chunks.len(), len.div_ceil(4096));
            assert!(chunks.iter().rev().skip(1).all(|c| c.len() == 4096));
            assert_eq!(chunks.concat(), data);
        }
    }

    #[test]
    fn chunk_size_limits() {
        assert_eq!(chunk_size(4096, 1).unwrap(), 4096);
        assert_eq!(chunk_size(4096, 4).unwrap(), 16384);
        assert!(chunk_size(4096, 0).is_err());
        assert!(chunk_size(65536, 1024).is_err());
    }
}
