//! gc: free what no live snapshot needs, safely while other processes push, without locks
//! and without conditional writes.
//!
//! One run: read the server's clock → load the index → read every live snapshot's location
//! table → delete what earlier runs marked, if it is still unreferenced and old enough →
//! rewrite packs that are mostly garbage → mark what is unreferenced now, in a new marker.
//!
//! Nothing is deleted in the run that finds it unreferenced. A candidate is deleted by a
//! later run, at least `grace` after it was marked, and only if no location table of a live
//! snapshot references it at that later time. Every process that relies on a pack (a push
//! reusing its parent's chunks, a gc rewriting a table) either wrote the pack itself or read
//! a reference to it, skips packs that are marked, and finishes within `grace`; so whatever
//! it relies on is still referenced when a deletion is decided. `store-layout.md`, "Garbage
//! collection", states the rule and its assumptions in full.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectMeta;

use crate::error::{Error, Result};
use crate::format::id::{ChunkId, PackId, SnapshotId};
use crate::format::marker::{marker_key, GcMarker, MARKERS_PREFIX};
use crate::format::pack::{decode_chunk_with, new_decompressor, PackBuilder, NONCE_LEN};
use crate::format::recipe::{Location, Locations};
use crate::index::{now_ms, ClientState, Index};
use crate::store::{keys, random_bytes, RequestStats, Store};

/// Default grace period: a push, copy, pull or gc rewrite must finish within it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Default threshold under which a pack is rewritten: less than half its bytes are live.
pub const DEFAULT_REWRITE_BELOW: f64 = 0.5;
/// Object timestamps may be truncated to whole seconds (S3 `Last-Modified`); every age
/// comparison allows this much on top of the grace period.
const TIMESTAMP_SLACK: Duration = Duration::from_secs(1);
const CONCURRENCY: usize = 16;

/// How to run gc.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// How long a mark must age, and a candidate object must have existed, before deletion.
    pub grace: Duration,
    /// Compute and report only: write and delete nothing.
    pub dry_run: bool,
    /// Rewrite a referenced pack when less than this fraction of its bytes is live
    /// (0 disables rewriting).
    pub rewrite_below: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            dry_run: false,
            rewrite_below: DEFAULT_REWRITE_BELOW,
        }
    }
}

/// What a gc run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    /// Nothing was written or deleted.
    pub dry_run: bool,
    /// The grace period, in seconds.
    pub grace_secs: u64,
    /// The server time the run measured ages against (RFC 3339).
    pub server_now: String,
    /// Live snapshots.
    pub live_snapshots: u64,
    /// Packs in the store when listed.
    pub packs_total: u64,
    /// Packs some live location table references.
    pub packs_referenced: u64,
    /// Packs deleted (marked by an earlier run at least `grace` ago, still unreferenced).
    pub packs_deleted: u64,
    /// Roots and location tables deleted (of forgotten snapshots, or of pushes that never
    /// committed), counted per snapshot.
    pub snapshots_deleted: u64,
    /// Bytes deleted: packs, roots and location tables.
    pub bytes_freed: u64,
    /// Candidates of old markers kept because a live snapshot references them again.
    pub kept_referenced: u64,
    /// Packs rewritten because they were mostly garbage.
    pub packs_rewritten: u64,
    /// Bytes of new packs the rewrite wrote.
    pub rewrite_bytes_written: u64,
    /// Location tables the rewrite replaced.
    pub tables_rewritten: u64,
    /// Packs marked by this run (deleted by a later run after `grace`).
    pub packs_marked: u64,
    /// Their bytes: what a run after `grace` will free, if nothing references them again.
    pub bytes_marked: u64,
    /// Snapshots whose root and table this run marked.
    pub snapshots_marked: u64,
    /// The marker this run wrote, if any.
    pub marker: Option<String>,
    /// Old markers fully processed and deleted.
    pub markers_deleted: u64,
    /// Markers still ageing.
    pub markers_waiting: u64,
    /// Requests made to the store.
    pub requests: RequestStats,
}

/// A listed marker.
struct Marked {
    key: String,
    modified: DateTime<Utc>,
    body: GcMarker,
}

/// A [`PackBuilder`] whose pack is unique to this write (a random nonce follows the header),
/// as every pack writer must use: gc's age rule protects a fresh pack only if writing it
/// creates a new object rather than finding an old, marked one with the same bytes.
pub fn unique_pack(capacity: usize) -> Result<PackBuilder> {
    Ok(PackBuilder::with_nonce(
        capacity,
        &random_bytes::<NONCE_LEN>()?,
    ))
}

/// Every pack that some gc marker names. A process about to rely on existing packs (push
/// dedup, copy resuming, gc rewrite) must first drop these from what it relies on.
pub async fn marked_packs(store: &Store) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    for m in list_markers(store).await? {
        out.extend(m.body.pack_ids(&m.key)?);
    }
    Ok(out)
}

async fn list_markers(store: &Store) -> Result<Vec<Marked>> {
    let metas = store.list(MARKERS_PREFIX, None).await?;
    futures::stream::iter(metas)
        .map(|m| async move {
            let key = m.location.to_string();
            let bytes = match store.get(&m.location).await {
                Ok(b) => b,
                // Deleted by a concurrent gc between LIST and GET: it was processed.
                Err(Error::MissingObject(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let body = GcMarker::decode(&bytes, &format!("gc marker {key}"))?;
            Ok(Some(Marked {
                key,
                modified: m.last_modified,
                body,
            }))
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await
}

/// The server's current time: the modification time of a scratch object written now.
async fn server_now(store: &Store) -> Result<DateTime<Utc>> {
    let key = keys::probe(&format!("gc-clock-{}", hex::encode(random_bytes::<8>()?)));
    store
        .put_overwrite(&key, Bytes::from_static(b"gc clock"))
        .await?;
    let meta = store.head(&key).await?;
    store.delete(&key).await?;
    Ok(meta.last_modified)
}

fn older_than(t: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    let age = now.signed_duration_since(t);
    age.to_std()
        .map(|a| a >= grace + TIMESTAMP_SLACK)
        .unwrap_or(false)
}

/// The id in the last segment of `key`, if it parses.
fn id_of<T: std::str::FromStr>(key: &Path) -> Option<T> {
    key.filename().and_then(|f| f.parse().ok())
}

/// Run gc once.
pub async fn gc(store: &Store, state: &ClientState, opts: &GcOptions) -> Result<GcReport> {
    if !(0.0..=1.0).contains(&opts.rewrite_below) {
        return Err(Error::InvalidInput(format!(
            "rewrite threshold {} is not a fraction between 0 and 1",
            opts.rewrite_below
        )));
    }
    let start = store.stats();
    let grace = opts.grace;
    let mut report = GcReport {
        dry_run: opts.dry_run,
        grace_secs: grace.as_secs(),
        ..Default::default()
    };

    // Ages are measured on the server's clock, read before the index is loaded, so that
    // every entry committed before `now` is in the index below.
    let now = if opts.dry_run {
        Utc::now()
    } else {
        server_now(store).await?
    };
    report.server_now = now.to_rfc3339();
    let markers = list_markers(store).await?;
    let index = Index::load(store, state).await?;

    // References: every live snapshot's location table. A live table that cannot be read
    // means references are unknown, so nothing may be deleted.
    let live: Vec<SnapshotId> = index
        .snapshots()
        .iter()
        .map(|e| SnapshotId::from_hex(&e.body.snapshot))
        .collect::<Result<_>>()?;
    report.live_snapshots = live.len() as u64;
    // Tables are folded into `refs` as they arrive and not kept: memory follows the distinct
    // chunks in the store, not the number of snapshots times their size.
    let (mut refs, table_packs) = futures::stream::iter(live.iter().copied())
        .map(|id| async move {
            let bytes = store
                .get(&keys::locations(&id))
                .await
                .map_err(|e| match e {
                    Error::MissingObject(k) => Error::GcRefused(format!(
                        "{k}, the location table of live snapshot {id}, is missing, so what it \
                         references is unknown; run `stigvault verify`, then forget the \
                         snapshot if it is lost"
                    )),
                    e => e,
                })?;
            Ok::<_, Error>((
                id,
                Locations::decode(&bytes, &format!("locations of {id}"))?,
            ))
        })
        .buffer_unordered(CONCURRENCY)
        .try_fold(
            (References::new(), Vec::new()),
            |(mut refs, mut tp), (id, t)| async move {
                add_references(&mut refs, &t);
                tp.push((id, t.packs()));
                Ok((refs, tp))
            },
        )
        .await?;
    let live_set: HashSet<SnapshotId> = live.iter().copied().collect();

    // What the store holds.
    let packs: HashMap<PackId, ObjectMeta> = store
        .list("packs", None)
        .await?
        .into_iter()
        .filter_map(|m| id_of::<PackId>(&m.location).map(|id| (id, m)))
        .collect();
    let mut snapshot_objects: HashMap<SnapshotId, Vec<ObjectMeta>> = HashMap::new();
    for prefix in ["snapshots", "locations"] {
        for m in store.list(prefix, None).await? {
            if let Some(id) = id_of::<SnapshotId>(&m.location) {
                snapshot_objects.entry(id).or_default().push(m);
            }
        }
    }
    report.packs_total = packs.len() as u64;

    // Phase 2: delete the candidates of markers at least `grace` old that are still
    // unreferenced, and whose own objects are at least `grace` old.
    let (ripe, waiting): (Vec<&Marked>, Vec<&Marked>) = markers
        .iter()
        .partition(|m| older_than(m.modified, now, grace));
    report.markers_waiting = waiting.len() as u64;
    let mut doomed_packs: BTreeSet<PackId> = BTreeSet::new();
    let mut doomed_snapshots: BTreeSet<SnapshotId> = BTreeSet::new();
    for m in &ripe {
        for p in m.body.pack_ids(&m.key)? {
            if refs.contains_key(&p) {
                report.kept_referenced += 1;
            } else if let Some(meta) = packs.get(&p) {
                if older_than(meta.last_modified, now, grace) {
                    doomed_packs.insert(p);
                }
            }
        }
        for s in m.body.snapshot_ids(&m.key)? {
            if live_set.contains(&s) {
                report.kept_referenced += 1;
            } else if let Some(objs) = snapshot_objects.get(&s) {
                if objs.iter().all(|o| older_than(o.last_modified, now, grace)) {
                    doomed_snapshots.insert(s);
                }
            }
        }
    }
    let mut deletions: Vec<(Path, u64)> = Vec::new();
    for p in &doomed_packs {
        if let Some(meta) = packs.get(p) {
            deletions.push((meta.location.clone(), meta.size));
        }
    }
    for s in &doomed_snapshots {
        for o in snapshot_objects.get(s).into_iter().flatten() {
            deletions.push((o.location.clone(), o.size));
        }
    }
    report.packs_deleted = doomed_packs.len() as u64;
    report.snapshots_deleted = doomed_snapshots.len() as u64;
    report.bytes_freed = deletions.iter().map(|(_, n)| n).sum();
    if !opts.dry_run {
        delete_all(store, deletions.into_iter().map(|(k, _)| k).collect()).await?;
        // Every candidate of a ripe marker is now deleted or referenced: the marker is done.
        let done: Vec<Path> = ripe.iter().map(|m| Path::from(m.key.as_str())).collect();
        report.markers_deleted = done.len() as u64;
        delete_all(store, done).await?;
    }

    // Rewrite packs that are mostly garbage.
    let marked: HashSet<PackId> = markers
        .iter()
        .map(|m| m.body.pack_ids(&m.key))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let targets = rewrite_targets(&table_packs, &refs, &packs, &marked, opts.rewrite_below);
    if !targets.is_empty() {
        let r = rewrite(store, &table_packs, &refs, &targets, &marked, opts.dry_run).await?;
        report.packs_rewritten = targets.len() as u64;
        report.rewrite_bytes_written = r.written;
        report.tables_rewritten = r.tables;
        if !opts.dry_run {
            for p in &targets {
                if !r.still_referenced.contains(p) {
                    refs.remove(p);
                }
            }
            for (c, l) in r.moved {
                refs.entry(l.pack).or_default().insert(c, l);
            }
        }
    }
    report.packs_referenced = refs.len() as u64;

    // Phase 1: mark what is unreferenced now.
    let new_packs: Vec<PackId> = packs
        .keys()
        .filter(|p| !refs.contains_key(p) && !doomed_packs.contains(p))
        .copied()
        .collect();
    let new_snapshots: Vec<SnapshotId> = snapshot_objects
        .keys()
        .filter(|s| !live_set.contains(s) && !doomed_snapshots.contains(s))
        .copied()
        .collect();
    report.packs_marked = new_packs.len() as u64;
    report.bytes_marked = new_packs
        .iter()
        .filter_map(|p| packs.get(p))
        .map(|m| m.size)
        .sum();
    report.snapshots_marked = new_snapshots.len() as u64;
    let anything = !new_packs.is_empty() || !new_snapshots.is_empty();
    if !opts.dry_run && anything {
        let marker = GcMarker::new(now_ms(), &new_packs, &new_snapshots);
        let key = marker_key(marker.written_at_ms, &hex::encode(random_bytes::<8>()?));
        store
            .put_immutable(&Path::from(key.as_str()), marker.encode().into())
            .await?;
        report.marker = Some(key);
    }
    report.requests = store.stats().since(&start);
    tracing::info!(
        freed = report.bytes_freed,
        deleted = report.packs_deleted,
        marked = report.packs_marked,
        rewritten = report.packs_rewritten,
        "gc"
    );
    Ok(report)
}

/// Pack → the distinct live chunks it holds (with their locations).
type References = HashMap<PackId, HashMap<ChunkId, Location>>;

fn add_references(refs: &mut References, table: &Locations) {
    for (c, l) in &table.map {
        refs.entry(l.pack).or_default().insert(*c, *l);
    }
}

/// Referenced packs whose live bytes are under `below` of their size. Packs of a table that
/// also references a marked pack are left alone: rewriting that table would carry a reference
/// to a marked pack forward, which only pushes that started before the mark may do.
fn rewrite_targets(
    table_packs: &[(SnapshotId, Vec<PackId>)],
    refs: &References,
    packs: &HashMap<PackId, ObjectMeta>,
    marked: &HashSet<PackId>,
    below: f64,
) -> BTreeSet<PackId> {
    if below <= 0.0 {
        return BTreeSet::new();
    }
    let mut targets: BTreeSet<PackId> = refs
        .iter()
        .filter_map(|(p, chunks)| {
            let size = packs.get(p)?.size;
            let live: u64 = chunks.values().map(|l| l.stored_len as u64).sum();
            ((live as f64) < below * size as f64).then_some(*p)
        })
        .collect();
    for (_, t) in table_packs {
        if t.iter().any(|p| marked.contains(p)) {
            for p in t {
                targets.remove(p);
            }
        }
    }
    targets
}

/// What a rewrite did.
struct Rewritten {
    /// Bytes of new packs.
    written: u64,
    /// Location tables replaced.
    tables: u64,
    /// Where each moved chunk lives now.
    moved: HashMap<ChunkId, Location>,
    /// Targets a re-read table still names for a chunk that was not moved (the table changed
    /// since it was first read); they stay referenced.
    still_referenced: HashSet<PackId>,
}

/// Copy the live chunks of `targets` into new packs, then replace the location table of
/// every live snapshot that used them (read again, one at a time).
async fn rewrite(
    store: &Store,
    table_packs: &[(SnapshotId, Vec<PackId>)],
    refs: &References,
    targets: &BTreeSet<PackId>,
    marked: &HashSet<PackId>,
    dry_run: bool,
) -> Result<Rewritten> {
    let target_bytes = store.config().pack_target_bytes as usize;
    let mut moved: HashMap<ChunkId, Location> = HashMap::new();
    let mut written = 0u64;
    let mut builder = unique_pack(target_bytes)?;
    let mut dec = new_decompressor()?;
    let mut added: HashSet<ChunkId> = HashSet::new();
    for p in targets {
        let Some(chunks) = refs.get(p) else { continue };
        if dry_run {
            written += chunks.values().map(|l| l.stored_len as u64).sum::<u64>();
            continue;
        }
        let key = keys::pack(p);
        let bytes = store.get(&key).await?;
        let actual = PackId::of(&bytes);
        if actual != *p {
            return Err(Error::HashMismatch {
                what: format!("pack {key} (read for a gc rewrite)"),
                expected: p.to_hex(),
                actual: actual.to_hex(),
            });
        }
        let mut rows: Vec<(&ChunkId, &Location)> = chunks.iter().collect();
        rows.sort_by_key(|(_, l)| l.offset);
        for (c, l) in rows {
            let end = l.offset as usize + l.stored_len as usize;
            let stored = bytes.get(l.offset as usize..end).ok_or_else(|| {
                Error::malformed(
                    format!("pack {key}"),
                    format!("chunk {c} at {}+{} lies outside it", l.offset, l.stored_len),
                )
            })?;
            // Never carry a damaged chunk into a new pack.
            decode_chunk_with(
                &mut dec,
                stored,
                c,
                l.raw_len,
                &format!("chunk {c} in {key}"),
            )?;
            if !added.insert(*c) {
                continue;
            }
            builder.add(*c, stored, l.raw_len);
            if builder.len() >= target_bytes {
                let full = std::mem::replace(&mut builder, unique_pack(target_bytes)?);
                written += flush(store, full, &mut moved).await?;
            }
        }
    }
    let mut out = Rewritten {
        written,
        tables: 0,
        moved: HashMap::new(),
        still_referenced: HashSet::new(),
    };
    if dry_run {
        out.tables = table_packs
            .iter()
            .filter(|(_, t)| t.iter().any(|p| targets.contains(p)))
            .count() as u64;
        return Ok(out);
    }
    if !builder.is_empty() {
        out.written += flush(store, builder, &mut moved).await?;
    }
    // New packs are in place; only now may tables point at them.
    for (id, t) in table_packs {
        if !t.iter().any(|p| targets.contains(p)) {
            continue;
        }
        let key = keys::locations(id);
        let mut n = Locations::decode(&store.get(&key).await?, &format!("locations of {id}"))?;
        // Changed since the first read to name a marked pack: carrying that reference forward
        // is not ours to do (see `rewrite_targets`), so this table stays as it is.
        if n.map.values().any(|l| marked.contains(&l.pack)) {
            out.still_referenced.extend(
                n.map
                    .values()
                    .map(|l| l.pack)
                    .filter(|p| targets.contains(p)),
            );
            continue;
        }
        for (c, l) in n.map.iter_mut() {
            if targets.contains(&l.pack) {
                match moved.get(c) {
                    Some(m) => *l = *m,
                    None => {
                        out.still_referenced.insert(l.pack);
                    }
                }
            }
        }
        store.put_overwrite(&key, n.encode().into()).await?;
        out.tables += 1;
    }
    out.moved = moved;
    Ok(out)
}

/// Upload a finished rewrite pack and point the chunks it took at it.
async fn flush(
    store: &Store,
    builder: PackBuilder,
    moved: &mut HashMap<ChunkId, Location>,
) -> Result<u64> {
    let fin = builder.finish();
    let n = fin.bytes.len() as u64;
    store
        .put_immutable(&keys::pack(&fin.id), Bytes::from(fin.bytes))
        .await?;
    for e in &fin.entries {
        moved.insert(
            e.chunk,
            Location {
                pack: fin.id,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            },
        );
    }
    Ok(n)
}

async fn delete_all(store: &Store, keys: Vec<Path>) -> Result<()> {
    futures::stream::iter(keys)
        .map(|k| async move { store.delete(&k).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Parse a duration such as `24h`, `90m`, `30s`, `2d` or `1500ms` (a bare number is
/// seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        Error::InvalidInput(format!(
            "{s:?} is not a duration; write e.g. 24h, 90m, 30s or 2d"
        ))
    })?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit {
        "" | "s" => secs(1),
        "ms" => Duration::from_millis(n),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{s:?}: unknown unit {unit:?}; use ms, s, m, h or d"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), DEFAULT_GRACE);
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }

    fn table(rows: &[(u8, PackId, u32)]) -> Locations {
        let mut t = Locations::default();
        for (c, p, len) in rows {
            t.map.insert(
                ChunkId::of(&[*c]),
                Location {
                    pack: *p,
                    offset: 8,
                    stored_len: *len,
                    raw_len: 4096,
                },
            );
        }
        t
    }

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from("packs/x"),
            last_modified: Utc::now(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn rewrite_targets_mostly_garbage_packs_but_not_tables_naming_marked_packs() {
        let (a, b, c, m) = (
            PackId::of(b"a"),
            PackId::of(b"b"),
            PackId::of(b"c"),
            PackId::of(b"m"),
        );
        let s1 = SnapshotId::of(b"1");
        let s2 = SnapshotId::of(b"2");
        // s1: 100 of a's 1000 bytes, 900 of b's 1000. s2: 100 of c's 1000, plus a marked pack.
        let tables = vec![
            (s1, table(&[(1, a, 100), (2, b, 900)])),
            (s2, table(&[(3, c, 100), (4, m, 1000)])),
        ];
        let mut refs = References::new();
        for (_, t) in &tables {
            add_references(&mut refs, t);
        }
        let tables: Vec<(SnapshotId, Vec<PackId>)> =
            tables.into_iter().map(|(id, t)| (id, t.packs())).collect();
        let packs: HashMap<PackId, ObjectMeta> = [
            (a, meta(1000)),
            (b, meta(1000)),
            (c, meta(1000)),
            (m, meta(1000)),
        ]
        .into();
        let none = HashSet::new();
        let t = rewrite_targets(&tables, &refs, &packs, &none, 0.5);
        assert_eq!(t, [a, c].into_iter().collect());
        // c shares a table with a marked pack: rewriting that table would carry the marked
        // reference forward, so it is left alone.
        let marked: HashSet<PackId> = [m].into();
        let t = rewrite_targets(&tables, &refs, &packs, &marked, 0.5);
        assert_eq!(t, [a].into_iter().collect());
        assert!(rewrite_targets(&tables, &refs, &packs, &none, 0.0).is_empty());
    }

    #[test]
    fn age_rule_includes_the_slack() {
        let now = Utc::now();
        let g = Duration::from_secs(10);
        assert!(!older_than(now - chrono::Duration::seconds(10), now, g));
        assert!(older_than(now - chrono::Duration::seconds(11), now, g));
        // An object stamped in the future (clock skew) is never old.
        assert!(!older_than(now + chrono::Duration::seconds(100), now, g));
    }
}
