//! copy: resolve in the source index → verify the snapshot's metadata → find what the
//! destination already holds → fetch and verify the missing chunks → repack them into
//! destination packs → write recipe, location table and the unchanged root → verify at the
//! destination → record a signed entry in the destination's index.
//!
//! The root object is copied byte for byte, so the snapshot id, the stigmem manifest and its
//! signature are the same in both stores. Location tables are per store and are written anew.
//!
//! # What the destination already has
//!
//! For each snapshot, the have-set is the union of, cheapest first:
//! - the location table of a snapshot of the same node copied earlier in this run (in memory,
//!   no request);
//! - else the destination's newest snapshot of the same node, as push does: one GET of its
//!   location table and one HEAD per pack it names;
//! - the snapshot's own location table, if an earlier attempt got that far (one GET,
//!   normally a 404);
//! - the progress journal of an earlier, interrupted attempt (one LIST, and one GET and one
//!   HEAD per pack it had finished).
//!
//! Only chunks in none of these are transferred.
//!
//! # Resuming
//!
//! After each destination pack is uploaded, a journal object `copies/<snapshot id>/<pack id>`
//! (a location table of that pack's chunks) records it. Nothing in the journal is visible as
//! a snapshot: a snapshot exists only once its index entry is written, which is the last
//! write, after verification. A re-run reads the journal and transfers only what no finished
//! pack holds; the journal is deleted once the entry is written.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::{Error, Result};
use crate::format::id::{ChunkId, PackId, RecipeId, SnapshotId};
use crate::format::index::{Entry, EntryBody, EntryKind};
use crate::format::pack::{decode_chunk_with, new_decompressor, PackBuilder};
use crate::format::recipe::{Location, Locations};
use crate::index::{ClientState, Index};
use crate::pull::{open_snapshot_untrusted, VerifiedSnapshot};
use crate::push::known_chunks;
use crate::sign::SecretKey;
use crate::store::{self, keys, RequestStats, Store};

/// Prefix of the copy progress journal.
pub const JOURNAL_PREFIX: &str = "copies";
/// Environment prefix for the destination's S3 settings: `STIGVAULT_TO_AWS_ACCESS_KEY_ID`
/// and so on. When any such variable is set, the destination is configured from these alone.
pub const DEST_ENV_PREFIX: &str = "STIGVAULT_TO_";
/// Source bytes fetched per request batch.
const FETCH_BATCH: u64 = 4 << 20;
/// Batches fetched at once.
const FETCH_IN_FLIGHT: usize = 4;
/// Destination packs uploading at once.
const UPLOADS_IN_FLIGHT: usize = 2;
/// Ranges closer than this are fetched as one.
const MERGE_GAP: u64 = 64 << 10;

/// Which snapshots to copy.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every snapshot in the source's index.
    All,
    /// Ids or unique prefixes.
    Ids(Vec<String>),
}

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Signs the destination's index entries. The manifests keep their own signatures.
    pub sign_with: SecretKey,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Test hook: stop with [`Error::Interrupted`] once this many destination packs have been
    /// uploaded and journaled in this run, as a killed process would.
    #[doc(hidden)]
    pub fail_after_packs: Option<u64>,
}

impl CopyOptions {
    /// Options that sign with `key`, without a progress bar or test hook.
    pub fn new(key: SecretKey) -> Self {
        CopyOptions {
            sign_with: key,
            progress: false,
            fail_after_packs: None,
        }
    }
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyStatus {
    /// Copied, verified at the destination, and recorded there.
    Copied,
    /// Already in the destination's index; nothing was transferred.
    Present,
    /// Forgotten at the destination (a tombstone names it there); not copied, since a new
    /// entry would stay hidden behind the tombstone.
    ForgottenAtDestination,
}

/// One snapshot's copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopiedSnapshot {
    /// The snapshot id (the same in both stores).
    pub id: String,
    /// The node it belongs to.
    pub node_id: String,
    /// Copied or already present.
    pub status: CopyStatus,
    /// Distinct chunks in the snapshot.
    pub chunks: u64,
    /// Chunks transferred by this run.
    pub copied_chunks: u64,
    /// Chunks the destination already held (an earlier snapshot, or an interrupted attempt).
    pub reused_chunks: u64,
    /// Of those, chunks found in the journal of an interrupted attempt.
    pub resumed_chunks: u64,
    /// Destination packs written.
    pub packs: u64,
    /// Bytes written to the destination for this snapshot (packs, journal, recipe,
    /// locations, root, index).
    pub bytes_written: u64,
    /// Database bytes reassembled and checked at the destination.
    pub verified_bytes: u64,
}

/// What a copy did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    /// The destination's label.
    pub to: String,
    /// The key that signed the destination's new index entries.
    pub signer_pubkey: String,
    /// Per snapshot, in time order.
    pub snapshots: Vec<CopiedSnapshot>,
    /// Snapshots copied.
    pub copied: u64,
    /// Snapshots not copied: already present, or forgotten at the destination.
    pub present: u64,
    /// Chunk bytes (compressed, as stored) transferred.
    pub chunk_bytes: u64,
    /// Requests to the source.
    pub source_requests: RequestStats,
    /// Requests to the destination.
    pub destination_requests: RequestStats,
}

/// Copy the selected snapshots of `src` to `dst`, transferring only the chunks `dst` lacks
/// and verifying each snapshot at `dst` before recording it in `dst`'s signed index.
pub async fn copy(
    src: &Store,
    src_state: &ClientState,
    dst: &Store,
    dst_state: &ClientState,
    selection: &Selection,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let (src_start, dst_start) = (src.stats(), dst.stats());
    let src_index = Index::load(src, src_state).await?;
    let mut entries: Vec<Entry> = match selection {
        Selection::All => src_index.snapshots().into_iter().cloned().collect(),
        Selection::Ids(ids) => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for q in ids {
                let (_, e) = src_index.resolve(q)?;
                if seen.insert(e.key.clone()) {
                    out.push(e.clone());
                }
            }
            out
        }
    };
    // Oldest first, so each snapshot can reuse what the previous one of its node copied.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let total: u64 = entries.iter().map(|e| e.body.db_bytes).sum();

    let mut dst_index = Index::load(dst, dst_state).await?;
    let mut run = Run {
        src,
        dst,
        opts,
        packs_done: 0,
        by_node: HashMap::new(),
        bar: crate::progress::bytes_bar(opts.progress, total, "copy"),
        chunk_bytes: 0,
    };
    let mut out = Vec::new();
    for entry in &entries {
        let present: HashSet<&str> = dst_index
            .snapshots()
            .into_iter()
            .map(|e| e.body.snapshot.as_str())
            .collect();
        let status = if present.contains(entry.body.snapshot.as_str()) {
            Some(CopyStatus::Present)
        } else if dst_index.tombstone(&entry.body.snapshot).is_some() {
            tracing::warn!(
                "snapshot {} was forgotten at {}; not copying it",
                entry.body.snapshot,
                dst.label()
            );
            Some(CopyStatus::ForgottenAtDestination)
        } else {
            None
        };
        if let Some(status) = status {
            run.bar.inc(entry.body.db_bytes);
            out.push(CopiedSnapshot {
                id: entry.body.snapshot.clone(),
                node_id: entry.body.node_id.clone(),
                status,
                chunks: 0,
                copied_chunks: 0,
                reused_chunks: 0,
                resumed_chunks: 0,
                packs: 0,
                bytes_written: 0,
                verified_bytes: 0,
            });
            continue;
        }
        out.push(run.copy_one(entry, &mut dst_index, dst_state).await?);
    }
    run.bar.finish_and_clear();
    let copied = out
        .iter()
        .filter(|s| s.status == CopyStatus::Copied)
        .count() as u64;
    Ok(CopyReport {
        to: dst.label().to_string(),
        signer_pubkey: opts.sign_with.public().to_b64url(),
        present: out.len() as u64 - copied,
        copied,
        snapshots: out,
        chunk_bytes: run.chunk_bytes,
        source_requests: src.stats().since(&src_start),
        destination_requests: dst.stats().since(&dst_start),
    })
}

/// State shared by the snapshots of one copy run.
struct Run<'a> {
    src: &'a Store,
    dst: &'a Store,
    opts: &'a CopyOptions,
    packs_done: u64,
    /// Per node, the destination location table of the snapshot copied last in this run.
    by_node: HashMap<String, Arc<Locations>>,
    bar: indicatif::ProgressBar,
    chunk_bytes: u64,
}

/// The upload of one destination pack and its journal object.
type Upload = tokio::task::JoinHandle<Result<()>>;

impl Run<'_> {
    async fn copy_one(
        &mut self,
        entry: &Entry,
        dst_index: &mut Index,
        dst_state: &ClientState,
    ) -> Result<CopiedSnapshot> {
        let (src, dst) = (self.src, self.dst);
        let dst_before = dst.stats();
        let snap = open_snapshot_untrusted(src, entry).await?;
        let id = snap.id;
        let wanted: BTreeSet<ChunkId> = snap.recipe.chunks.iter().copied().collect();

        // The have-set, restricted to this snapshot's chunks.
        let mut have: HashMap<ChunkId, Location> = HashMap::new();
        let take = |from: &Locations, have: &mut HashMap<ChunkId, Location>| -> u64 {
            let mut n = 0;
            for c in &wanted {
                if let (false, Some(l)) = (have.contains_key(c), from.map.get(c)) {
                    have.insert(*c, *l);
                    n += 1;
                }
            }
            n
        };
        if let Some(prev) = self.by_node.get(&entry.body.node_id) {
            take(prev, &mut have);
        } else if let Some(prev) = dst_index.latest_for_node(&entry.body.node_id) {
            let prev_id = SnapshotId::from_hex(&prev.body.snapshot)?;
            take(&known_chunks(dst, &prev_id).await?, &mut have);
        }
        // Whether an earlier attempt, or this one, may have left journal objects.
        let mut journal_keys: Vec<Path> = Vec::new();
        let mut stale_journal = false;
        if have.len() < wanted.len() {
            match dst.get(&keys::locations(&id)).await {
                Ok(b) => {
                    stale_journal = true;
                    let own =
                        Locations::decode(&b, &format!("locations of {id} at the destination"))?;
                    take(&crate::push::present_only(dst, own).await?, &mut have);
                }
                Err(Error::MissingObject(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut resumed = 0;
        if have.len() < wanted.len() {
            let (journal, listed) = read_journal(dst, &id).await?;
            journal_keys.extend(listed);
            resumed = take(&journal, &mut have);
        }
        let reused = have.len() as u64;

        // Fetch, verify and repack what is missing.
        let mut missing: Vec<(ChunkId, Location)> = wanted
            .iter()
            .filter(|c| !have.contains_key(c))
            .map(|c| {
                snap.locations.map.get(c).map(|l| (*c, *l)).ok_or_else(|| {
                    Error::MissingObject(format!(
                        "location of chunk {c} in snapshot {id} (its location table is incomplete)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        missing.sort_by_key(|(_, l)| (l.pack, l.offset));
        let copied_chunks = missing.len() as u64;
        let (new_locs, packs) = self.transfer(&id, &missing, &mut journal_keys).await?;
        have.extend(new_locs);
        let locations = Locations { map: have };

        // Recipe, location table and the root, byte for byte.
        write_objects(src, dst, &snap, &locations).await?;
        let verified_bytes =
            crate::verify::reread_snapshot(dst, &id, crate::verify::COPY_WINDOWS, &|n| {
                self.bar.inc(n)
            })
            .await
            .map_err(|e| Error::CopyNotVerified {
                snapshot: id.to_hex(),
                store: dst.label().to_string(),
                source: Box::new(e),
            })?;

        let written_so_far = dst.stats().since(&dst_before).put_bytes;
        let key = &self.opts.sign_with;
        let body = EntryBody {
            kind: EntryKind::Snapshot,
            snapshot: id.to_hex(),
            created_at: entry.body.created_at.clone(),
            node_id: entry.body.node_id.clone(),
            signer_pubkey: key.public().to_b64url(),
            db_sha256: entry.body.db_sha256.clone(),
            db_bytes: entry.body.db_bytes,
            new_bytes: written_so_far,
            parents: Vec::new(),
            written_at_ms: 0,
        };
        dst_index.append(dst, dst_state, body, key).await?;
        clear_journal(dst, &id, &journal_keys, stale_journal).await;
        tracing::info!(id = %id, copied_chunks, reused, packs, "copied");

        let distinct = wanted.len() as u64;
        self.by_node
            .insert(entry.body.node_id.clone(), Arc::new(locations));
        Ok(CopiedSnapshot {
            id: id.to_hex(),
            node_id: entry.body.node_id.clone(),
            status: CopyStatus::Copied,
            chunks: distinct,
            copied_chunks,
            reused_chunks: reused,
            resumed_chunks: resumed,
            packs,
            bytes_written: dst.stats().since(&dst_before).put_bytes,
            verified_bytes,
        })
    }

    /// Fetch `missing` (sorted by source pack and offset) from the source, verify every
    /// chunk, and write it into new destination packs; return where each chunk now lives.
    async fn transfer(
        &mut self,
        id: &SnapshotId,
        missing: &[(ChunkId, Location)],
        journal_keys: &mut Vec<Path>,
    ) -> Result<(HashMap<ChunkId, Location>, u64)> {
        // Every full pack is journaled; the last one is not, since the location table is
        // written right after it (an interruption in between re-transfers only that pack).
        let src = self.src;
        let target = self.dst.config().pack_target_bytes as usize;
        let mut placed = HashMap::with_capacity(missing.len());
        let mut pack = crate::gc::unique_pack(target + FETCH_BATCH as usize)?;
        let mut uploads: Vec<Upload> = Vec::new();
        let mut packs = 0u64;

        let mut batches = futures::stream::iter(batches(missing))
            .map(|b| fetch_batch(src, b))
            .buffered(FETCH_IN_FLIGHT);
        while let Some(fetched) = batches.next().await {
            for (chunk, frame, raw_len) in fetched? {
                self.chunk_bytes += frame.len() as u64;
                pack.add(chunk, &frame, raw_len);
                if pack.len() >= target {
                    let next = crate::gc::unique_pack(target + FETCH_BATCH as usize)?;
                    let full = std::mem::replace(&mut pack, next);
                    self.hook(&mut uploads).await?;
                    uploads.push(self.upload(id, full, &mut placed, Some(journal_keys)));
                    packs += 1;
                    while uploads.len() >= UPLOADS_IN_FLIGHT {
                        uploads.remove(0).await??;
                    }
                }
            }
        }
        if !pack.is_empty() {
            self.hook(&mut uploads).await?;
            uploads.push(self.upload(id, pack, &mut placed, None));
            packs += 1;
        }
        for u in uploads {
            u.await??;
        }
        Ok((placed, packs))
    }

    /// Stop as the test hook asks, once every pack started so far is safely up.
    async fn hook(&mut self, uploads: &mut Vec<Upload>) -> Result<()> {
        if let Some(n) = self.opts.fail_after_packs {
            if self.packs_done >= n {
                for u in uploads.drain(..) {
                    u.await??;
                }
                return Err(Error::Interrupted(format!(
                    "copy stopped by its test hook after {n} packs"
                )));
            }
        }
        self.packs_done += 1;
        Ok(())
    }

    /// Upload one finished pack, then (given where to note its key) its journal object, in
    /// the background.
    fn upload(
        &self,
        id: &SnapshotId,
        pack: PackBuilder,
        placed: &mut HashMap<ChunkId, Location>,
        journal: Option<&mut Vec<Path>>,
    ) -> Upload {
        let fin = pack.finish();
        let mut journal_table = Locations::default();
        for e in &fin.entries {
            let loc = Location {
                pack: fin.id,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            };
            placed.insert(e.chunk, loc);
            journal_table.map.insert(e.chunk, loc);
        }
        let dst = self.dst.clone();
        let journal_key = journal.map(|keys| {
            let k = journal_key(id, &fin.id);
            keys.push(k.clone());
            k
        });
        let table = journal_table;
        tokio::spawn(async move {
            dst.put_immutable(&keys::pack(&fin.id), Bytes::from(fin.bytes))
                .await?;
            match journal_key {
                Some(k) => dst.put_immutable(&k, table.encode().into()).await,
                None => Ok(()),
            }
        })
    }
}

/// The chunks to fetch together: runs of one source pack, about [`FETCH_BATCH`] bytes each.
fn batches(missing: &[(ChunkId, Location)]) -> Vec<Vec<(ChunkId, Location)>> {
    let mut out: Vec<Vec<(ChunkId, Location)>> = Vec::new();
    let mut bytes = 0u64;
    for &(c, l) in missing {
        let same_pack = out
            .last()
            .and_then(|b| b.last())
            .is_some_and(|(_, prev)| prev.pack == l.pack);
        if !same_pack || bytes >= FETCH_BATCH {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += l.stored_len as u64;
        if let Some(b) = out.last_mut() {
            b.push((c, l));
        }
    }
    out
}

/// Fetch one batch (all in one source pack) by merged ranges and verify every chunk.
/// Returns each chunk's zstd frame as stored, which is reused verbatim.
async fn fetch_batch(
    src: &Store,
    batch: Vec<(ChunkId, Location)>,
) -> Result<Vec<(ChunkId, Bytes, u32)>> {
    let Some(pack) = batch.first().map(|(_, l)| l.pack) else {
        return Ok(Vec::new());
    };
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for (_, l) in &batch {
        let (s, e) = (l.offset as u64, l.offset as u64 + l.stored_len as u64);
        match ranges.last_mut() {
            Some(r) if s <= r.end + MERGE_GAP => r.end = r.end.max(e),
            _ => ranges.push(s..e),
        }
    }
    let data = src.get_ranges(&keys::pack(&pack), &ranges).await?;
    tokio::task::spawn_blocking(move || {
        let mut dec = new_decompressor()?;
        let mut out = Vec::with_capacity(batch.len());
        for (c, l) in batch {
            let start = l.offset as u64;
            let ri = ranges
                .iter()
                .position(|r| r.start <= start && start < r.end)
                .ok_or_else(|| Error::Task("copy range bookkeeping".into()))?;
            let off = (start - ranges[ri].start) as usize;
            let frame = data[ri].slice(off..off + l.stored_len as usize);
            let what = format!("chunk {c} in source pack {pack}");
            decode_chunk_with(&mut dec, &frame, &c, l.raw_len, &what)?;
            out.push((c, frame, l.raw_len));
        }
        Ok(out)
    })
    .await?
}

/// Write the recipe, the destination location table and the root (copied byte for byte).
async fn write_objects(
    src: &Store,
    dst: &Store,
    snap: &VerifiedSnapshot,
    locations: &Locations,
) -> Result<()> {
    let recipe_id = snap.root.recipe_id()?;
    // Re-encoding is deterministic for one zstd version; fetch the original otherwise.
    let mut recipe = Bytes::from(snap.recipe.encode());
    if RecipeId::of(&recipe) != recipe_id {
        recipe = src.get(&keys::recipe(&recipe_id)).await?;
    }
    let root = src.get(&keys::snapshot(&snap.id)).await?;
    dst.put_immutable(&keys::recipe(&recipe_id), recipe).await?;
    dst.put_immutable(&keys::locations(&snap.id), locations.encode().into())
        .await?;
    dst.put_immutable(&keys::snapshot(&snap.id), root).await
}

fn journal_key(id: &SnapshotId, pack: &PackId) -> Path {
    Path::from(format!("{JOURNAL_PREFIX}/{id}/{pack}"))
}

/// The chunks an interrupted copy of `id` finished, minus those in packs now gone.
async fn read_journal(dst: &Store, id: &SnapshotId) -> Result<(Locations, Vec<Path>)> {
    let listed = dst.list(&format!("{JOURNAL_PREFIX}/{id}"), None).await?;
    let keys: Vec<Path> = listed.iter().map(|m| m.location.clone()).collect();
    let parts: Vec<Result<Locations>> = futures::stream::iter(listed)
        .map(|m| async move {
            let b = dst.get(&m.location).await?;
            Locations::decode(&b, &format!("copy journal {}", m.location))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut all = Locations::default();
    for p in parts {
        all.map.extend(p?.map);
    }
    if !all.map.is_empty() {
        tracing::info!(
            chunks = all.map.len(),
            "resuming an interrupted copy of {id}"
        );
    }
    Ok((crate::push::present_only(dst, all).await?, keys))
}

/// Delete the journal of a finished copy: the objects this run read or wrote, or (when an
/// earlier attempt got as far as the location table, and may have journaled packs this run
/// did not read) whatever a listing finds. Best effort: a leftover journal only costs a LIST
/// on a later copy of the same snapshot, which finds it recorded and skips it.
async fn clear_journal(dst: &Store, id: &SnapshotId, known: &[Path], list: bool) {
    let mut keys = known.to_vec();
    if list {
        let prefix = format!("{JOURNAL_PREFIX}/{id}");
        match dst.list(&prefix, None).await {
            Ok(listed) => keys.extend(listed.into_iter().map(|m| m.location)),
            Err(e) => tracing::warn!("could not list copy journal {prefix}: {e}"),
        }
    }
    keys.sort();
    keys.dedup();
    for k in keys {
        if let Err(e) = dst.delete(&k).await {
            tracing::warn!("could not delete copy journal object {k}: {e}");
        }
    }
}

/// The destination store for `url` and its label. Local paths need no credentials. An
/// `s3://` destination is configured from the `STIGVAULT_TO_AWS_*` variables (the standard
/// `AWS_*` names behind the [`DEST_ENV_PREFIX`]) when any is set, else from the standard
/// `AWS_*` variables, as the source is. A custom endpoint becomes part of the label, so the
/// client remembers index state per endpoint.
pub fn destination_from_url(url: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix(DEST_ENV_PREFIX)
                .filter(|rest| rest.starts_with("AWS_"))
                .map(|rest| (rest.to_string(), v))
        })
        .collect();
    destination_with_env(url, &vars)
}

/// [`destination_from_url`] with the destination's `AWS_*` settings given explicitly; an
/// empty list means "the standard environment".
pub fn destination_with_env(
    url: &str,
    aws_vars: &[(String, String)],
) -> Result<(Arc<dyn ObjectStore>, String)> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return store::resolve_url(Some(url));
    };
    if aws_vars.is_empty() {
        return store::resolve_url(Some(url));
    }
    let bad = |reason: String| Error::InvalidStoreUrl {
        url: url.to_string(),
        reason,
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket name; use s3://bucket/prefix".into()));
    }
    let mut b = object_store::aws::AmazonS3Builder::new();
    let mut endpoint = None;
    for (k, v) in aws_vars {
        let key: object_store::aws::AmazonS3ConfigKey = k
            .to_ascii_lowercase()
            .parse()
            .map_err(|e| bad(format!("{DEST_ENV_PREFIX}{k}: {e}")))?;
        if matches!(key, object_store::aws::AmazonS3ConfigKey::Endpoint) {
            endpoint = Some(v.clone());
        }
        b = b.with_config(key, v);
    }
    let s3 = b
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| bad(format!("{e}; check the {DEST_ENV_PREFIX}AWS_* variables")))?;
    let label = match endpoint {
        Some(ep) => format!("{url} at {ep}"),
        None => url.to_string(),
    };
    Ok((store::with_prefix(Arc::new(s3), prefix), label))
}
