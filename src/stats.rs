//! Exact dedup figures, computed from the location tables of the live snapshots.
//!
//! The unit of storage is an extent: a chunk's zstd frame at one offset of one pack. A
//! snapshot references the extents its location table names; an extent's stored bytes belong
//! to every live snapshot that references it. From that, per snapshot (in index order):
//!
//! - `stored_bytes`: the stored bytes of every extent it references;
//! - `new_bytes`: of those, extents no earlier live snapshot references;
//! - `shared_bytes`: extents another live snapshot also references;
//! - `freed_bytes`: extents no other live snapshot references, i.e. what forgetting this
//!   snapshot alone would make garbage now (`stored_bytes - shared_bytes`). Pack headers and
//!   trailers are not counted; gc frees those along with the pack.
//!
//! Forgotten snapshots are not live: [`Index::snapshots`] leaves them out.
//!
//! Cost: one GET per live snapshot's location table, plus (for [`stats`]) one LIST of the
//! store. Memory: one small record per distinct extent, and four bytes per reference.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Serialize;

use crate::error::Result;
use crate::format::id::{PackId, SnapshotId};
use crate::format::index::Entry;
use crate::format::recipe::Locations;
use crate::index::Index;
use crate::store::{keys, RequestStats, Store};

const FETCH_IN_FLIGHT: usize = 8;

/// The dedup figures of one live snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotFigures {
    /// The snapshot id.
    pub id: String,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The node.
    pub node_id: String,
    /// Database length (logical bytes).
    pub db_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Stored bytes of every extent it references.
    pub stored_bytes: u64,
    /// Stored bytes that first appeared with this snapshot.
    pub new_bytes: u64,
    /// Stored bytes another live snapshot also references.
    pub shared_bytes: u64,
    /// Stored bytes that forgetting this snapshot alone would free now.
    pub freed_bytes: u64,
}

/// Totals of one node's live snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeTotals {
    /// The node id.
    pub node_id: String,
    /// Live snapshots.
    pub snapshots: u64,
    /// Sum of their database lengths.
    pub logical_bytes: u64,
    /// Stored bytes of the extents they reference (each counted once).
    pub stored_bytes: u64,
    /// Of those, extents no other node's snapshot references.
    pub exclusive_bytes: u64,
}

/// Whole-store figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    /// Live snapshots.
    pub snapshots: u64,
    /// Forgotten snapshots still recorded in the index.
    pub forgotten: u64,
    /// Nodes with live snapshots.
    pub nodes: u64,
    /// Sum of the live snapshots' database lengths.
    pub logical_bytes: u64,
    /// Distinct extents referenced.
    pub chunks: u64,
    /// Uncompressed bytes of the distinct extents referenced.
    pub unique_raw_bytes: u64,
    /// Compressed bytes of the distinct extents referenced: what the live snapshots occupy.
    pub stored_bytes: u64,
    /// `logical_bytes / unique_raw_bytes`.
    pub dedup_ratio: f64,
    /// `unique_raw_bytes / stored_bytes`.
    pub compression_ratio: f64,
    /// `logical_bytes / stored_bytes`.
    pub total_ratio: f64,
    /// Pack objects in the store.
    pub packs: u64,
    /// Their total size.
    pub pack_bytes: u64,
    /// Pack bytes no live snapshot references: headers, trailers, and garbage for gc.
    pub unreferenced_pack_bytes: u64,
    /// Every object in the store.
    pub objects: u64,
    /// Their total size.
    pub object_bytes: u64,
    /// Per node, sorted by node id.
    pub per_node: Vec<NodeTotals>,
    /// Per live snapshot, in index order.
    pub per_snapshot: Vec<SnapshotFigures>,
    /// Requests made to the store.
    pub requests: RequestStats,
}

struct Extent {
    stored: u64,
    raw: u64,
    refs: u32,
    first: u32,
    /// The one node referencing it, or `None` once a second node does.
    node: Option<u32>,
}

/// Extents and who references them.
struct Tally {
    extents: Vec<Extent>,
    /// Per live snapshot, the indices of the extents it references.
    refs: Vec<Vec<u32>>,
    entries: Vec<Entry>,
    node_of: Vec<u32>,
    nodes: Vec<String>,
}

async fn tally(store: &Store, index: &Index) -> Result<Tally> {
    let entries: Vec<Entry> = index.snapshots().into_iter().cloned().collect();
    let mut nodes: Vec<String> = Vec::new();
    let mut node_ix: HashMap<String, u32> = HashMap::new();
    let node_of: Vec<u32> = entries
        .iter()
        .map(|e| {
            *node_ix.entry(e.body.node_id.clone()).or_insert_with(|| {
                nodes.push(e.body.node_id.clone());
                nodes.len() as u32 - 1
            })
        })
        .collect();
    let mut ix: HashMap<(PackId, u32), u32> = HashMap::new();
    let mut extents: Vec<Extent> = Vec::new();
    let mut refs: Vec<Vec<u32>> = Vec::with_capacity(entries.len());
    let mut tables = futures::stream::iter(entries.iter())
        .map(|e| async move {
            let id = SnapshotId::from_hex(&e.body.snapshot)?;
            let b = store.get(&keys::locations(&id)).await?;
            Locations::decode(&b, &format!("locations of {id}"))
        })
        .buffered(FETCH_IN_FLIGHT);
    let mut i = 0u32;
    while let Some(locs) = tables.next().await {
        let locs = locs?;
        let node = node_of[i as usize];
        let mut mine = Vec::with_capacity(locs.map.len());
        for l in locs.map.values() {
            let k = *ix.entry((l.pack, l.offset)).or_insert_with(|| {
                extents.push(Extent {
                    stored: l.stored_len as u64,
                    raw: l.raw_len as u64,
                    refs: 0,
                    first: i,
                    node: Some(node),
                });
                extents.len() as u32 - 1
            });
            let x = &mut extents[k as usize];
            x.refs += 1;
            if x.node != Some(node) {
                x.node = None;
            }
            mine.push(k);
        }
        refs.push(mine);
        i += 1;
    }
    drop(tables);
    Ok(Tally {
        extents,
        refs,
        entries,
        node_of,
        nodes,
    })
}

impl Tally {
    fn per_snapshot(&self) -> Vec<SnapshotFigures> {
        self.entries
            .iter()
            .zip(&self.refs)
            .enumerate()
            .map(|(i, (e, mine))| {
                let mut f = SnapshotFigures {
                    id: e.body.snapshot.clone(),
                    created_at: e.body.created_at.clone(),
                    node_id: e.body.node_id.clone(),
                    db_bytes: e.body.db_bytes,
                    chunks: mine.len() as u64,
                    stored_bytes: 0,
                    new_bytes: 0,
                    shared_bytes: 0,
                    freed_bytes: 0,
                };
                for &k in mine {
                    let x = &self.extents[k as usize];
                    f.stored_bytes += x.stored;
                    if x.first == i as u32 {
                        f.new_bytes += x.stored;
                    }
                    if x.refs > 1 {
                        f.shared_bytes += x.stored;
                    } else {
                        f.freed_bytes += x.stored;
                    }
                }
                f
            })
            .collect()
    }

    fn per_node(&self) -> Vec<NodeTotals> {
        let mut seen: Vec<u32> = vec![u32::MAX; self.extents.len()];
        let mut out: Vec<NodeTotals> = Vec::new();
        for (n, node_id) in self.nodes.iter().enumerate() {
            let mut t = NodeTotals {
                node_id: node_id.clone(),
                snapshots: 0,
                logical_bytes: 0,
                stored_bytes: 0,
                exclusive_bytes: 0,
            };
            for (i, mine) in self.refs.iter().enumerate() {
                if self.node_of[i] as usize != n {
                    continue;
                }
                t.snapshots += 1;
                t.logical_bytes += self.entries[i].body.db_bytes;
                for &k in mine {
                    if seen[k as usize] != n as u32 {
                        seen[k as usize] = n as u32;
                        let x = &self.extents[k as usize];
                        t.stored_bytes += x.stored;
                        if x.node.is_some() {
                            t.exclusive_bytes += x.stored;
                        }
                    }
                }
            }
            out.push(t);
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }
}

/// The dedup figures of every live snapshot, in index order (what `ls` shows).
pub async fn snapshot_figures(store: &Store, index: &Index) -> Result<Vec<SnapshotFigures>> {
    Ok(tally(store, index).await?.per_snapshot())
}

/// Whole-store figures, per node and per snapshot.
pub async fn stats(store: &Store, index: &Index) -> Result<StoreStats> {
    let start = store.stats();
    let t = tally(store, index).await?;
    let per_snapshot = t.per_snapshot();
    let per_node = t.per_node();
    let logical_bytes: u64 = t.entries.iter().map(|e| e.body.db_bytes).sum();
    let stored_bytes: u64 = t.extents.iter().map(|x| x.stored).sum();
    let unique_raw_bytes: u64 = t.extents.iter().map(|x| x.raw).sum();

    let mut by_prefix: BTreeMap<bool, (u64, u64)> = BTreeMap::new();
    for m in store.list("", None).await? {
        let is_pack = m.location.as_ref().starts_with("packs/");
        let e = by_prefix.entry(is_pack).or_default();
        e.0 += 1;
        e.1 += m.size;
    }
    let (packs, pack_bytes) = by_prefix.get(&true).copied().unwrap_or_default();
    let (other, other_bytes) = by_prefix.get(&false).copied().unwrap_or_default();

    let live: std::collections::HashSet<&str> =
        t.entries.iter().map(|e| e.body.snapshot.as_str()).collect();
    let forgotten: std::collections::HashSet<&str> = index
        .entries()
        .filter(|e| e.body.kind == crate::format::index::EntryKind::Snapshot)
        .map(|e| e.body.snapshot.as_str())
        .filter(|s| !live.contains(s))
        .collect();

    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(StoreStats {
        snapshots: t.entries.len() as u64,
        forgotten: forgotten.len() as u64,
        nodes: t.nodes.len() as u64,
        logical_bytes,
        chunks: t.extents.len() as u64,
        unique_raw_bytes,
        stored_bytes,
        dedup_ratio: ratio(logical_bytes, unique_raw_bytes),
        compression_ratio: ratio(unique_raw_bytes, stored_bytes),
        total_ratio: ratio(logical_bytes, stored_bytes),
        packs,
        pack_bytes,
        unreferenced_pack_bytes: pack_bytes.saturating_sub(stored_bytes),
        objects: packs + other,
        object_bytes: pack_bytes + other_bytes,
        per_node,
        per_snapshot,
        requests: store.stats().since(&start),
    })
}
