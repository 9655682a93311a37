//! Reassembly: fetch packs by range → verify every chunk → write the artifact in order.
//!
//! The recipe is cut into windows of consecutive chunks. Each window's chunks are grouped by
//! pack, nearby ranges are merged, and the ranges are fetched together; windows are fetched
//! several at a time but written strictly in order. Memory is bounded by the window size
//! times the number of windows in flight, whatever the database size.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::id::{ChunkId, PackId};
use crate::format::pack::{decode_chunk_with, new_decompressor};
use crate::format::recipe::{Locations, Recipe};
use crate::store::{keys, Store};

/// Chunks per window (4 MiB of 4 KiB pages).
const WINDOW_CHUNKS: usize = 1024;
/// Windows fetched at once.
const WINDOWS_IN_FLIGHT: usize = 4;
/// Ranges closer than this are fetched as one, reading the gap.
const MERGE_GAP: u64 = 64 << 10;

/// Stream the artifact described by `recipe` into `out`, verifying each chunk's length and
/// BLAKE3 hash as it arrives; return the SHA-256 of everything written.
pub async fn reassemble(
    store: &Store,
    recipe: Arc<Recipe>,
    locations: Arc<Locations>,
    out: &mut (impl Write + Send),
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<[u8; 32]> {
    reassemble_windowed(
        store,
        recipe,
        locations,
        out,
        on_bytes,
        WINDOW_CHUNKS,
        WINDOWS_IN_FLIGHT,
    )
    .await
}

/// [`reassemble`] with `window_chunks` chunks per window and `in_flight` windows fetched at
/// once. Larger windows merge more ranges into fewer requests, for more memory; copy's
/// read-back verification uses them, where requests to a remote store are the cost.
pub async fn reassemble_windowed(
    store: &Store,
    recipe: Arc<Recipe>,
    locations: Arc<Locations>,
    out: &mut (impl Write + Send),
    on_bytes: &(dyn Fn(u64) + Sync),
    window_chunks: usize,
    in_flight: usize,
) -> Result<[u8; 32]> {
    let window_chunks = window_chunks.max(1);
    for id in &recipe.chunks {
        if !locations.map.contains_key(id) {
            return Err(Error::MissingObject(format!(
                "location of chunk {id} (the snapshot's location table is incomplete)"
            )));
        }
    }
    let windows: Vec<Range<usize>> = (0..recipe.chunks.len())
        .step_by(window_chunks)
        .map(|s| s..(s + window_chunks).min(recipe.chunks.len()))
        .collect();
    let mut stream = futures::stream::iter(windows)
        .map(|w| fetch_window(store, recipe.clone(), locations.clone(), w))
        .buffered(in_flight.max(1));
    let mut sha = Sha256::new();
    let mut written = 0u64;
    while let Some(block) = stream.next().await {
        let block = block?;
        sha.update(&block);
        out.write_all(&block)
            .map_err(|e| Error::io("writing the restored database", e))?;
        written += block.len() as u64;
        on_bytes(block.len() as u64);
    }
    if written != recipe.db_bytes {
        return Err(Error::LengthMismatch {
            what: "reassembled database".into(),
            expected: recipe.db_bytes,
            actual: written,
        });
    }
    Ok(sha.finalize().into())
}

/// Fetch and verify the chunks of one window; return its bytes in order.
async fn fetch_window(
    store: &Store,
    recipe: Arc<Recipe>,
    locations: Arc<Locations>,
    window: Range<usize>,
) -> Result<Vec<u8>> {
    // Group the distinct chunks by pack and merge nearby ranges.
    let mut by_pack: HashMap<PackId, Vec<(u64, u64)>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for id in &recipe.chunks[window.clone()] {
        if seen.insert(*id) {
            let l = locations.map[id];
            by_pack
                .entry(l.pack)
                .or_default()
                .push((l.offset as u64, l.offset as u64 + l.stored_len as u64));
        }
    }
    let fetches = by_pack.into_iter().map(|(pack, mut spans)| {
        spans.sort_unstable();
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for (s, e) in spans {
            match ranges.last_mut() {
                Some(r) if s <= r.end + MERGE_GAP => r.end = r.end.max(e),
                _ => ranges.push(s..e),
            }
        }
        async move {
            let data = store.get_ranges(&keys::pack(&pack), &ranges).await?;
            Ok::<_, Error>((pack, ranges, data))
        }
    });
    let fetched: Vec<_> = futures::future::try_join_all(fetches).await?;

    // Decompress and verify off the async threads.
    tokio::task::spawn_blocking(move || {
        let mut buffers: HashMap<PackId, (Vec<Range<u64>>, Vec<bytes::Bytes>)> = HashMap::new();
        for (pack, ranges, data) in fetched {
            buffers.insert(pack, (ranges, data));
        }
        let mut dec = new_decompressor()?;
        let mut decoded: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(window.len() * recipe.chunk_size as usize);
        for (i, id) in recipe.chunks[window.clone()].iter().enumerate() {
            if !decoded.contains_key(id) {
                let l = locations.map[id];
                let (ranges, data) = &buffers[&l.pack];
                let start = l.offset as u64;
                let ri = ranges
                    .iter()
                    .position(|r| r.start <= start && start < r.end)
                    .ok_or_else(|| Error::Task("range bookkeeping".into()))?;
                let off = (start - ranges[ri].start) as usize;
                let stored = data[ri]
                    .get(off..off + l.stored_len as usize)
                    .ok_or_else(|| Error::Task("range bookkeeping".into()))?;
                let what = format!("chunk {id} in pack {}", l.pack);
                let raw = decode_chunk_with(&mut dec, stored, id, l.raw_len, &what)?;
                let expected = recipe.chunk_len(window.start + i);
                if raw.len() != expected as usize {
                    return Err(Error::LengthMismatch {
                        what,
                        expected: expected as u64,
                        actual: raw.len() as u64,
                    });
                }
                decoded.insert(*id, raw);
            }
            out.extend_from_slice(&decoded[id]);
        }
        Ok(out)
    })
    .await?
}
