//! verify: the index → every manifest → every referenced object's presence and size →
//! (with `read_data`) every pack's hash, every chunk's hash, and every artifact's SHA-256.
//!
//! It needs no private key and writes nothing but the client's remembered index heads. Every
//! problem found is collected rather than returned as an error, each naming the object and
//! the snapshots it affects; [`Result::Err`] is kept for failures of the environment (network,
//! local I/O) that stop the check itself.
//!
//! Forgotten snapshots: [`Index::snapshots`] lists only live snapshots. A snapshot recorded in
//! the index but not listed there has been forgotten (a tombstone names it), and its objects
//! are not checked, so a gc that removed them is not reported as damage. When the index does
//! not load, the tombstones among the entries that do verify are used instead.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::{ChunkId, PackId, RecipeId, SnapshotId};
use crate::format::index::{
    decode_checkpoint, Entry, EntryKind, CHECKPOINTS_PREFIX, ENTRIES_PREFIX,
};
use crate::format::pack::{decode_chunk_with, new_decompressor};
use crate::format::recipe::{Location, Locations, Recipe};
use crate::format::snapshot::SnapshotRoot;
use crate::index::{ClientState, Index};
use crate::pull::{open_snapshot_untrusted, VerifiedSnapshot};
use crate::reassemble::reassemble_windowed;
use crate::store::{keys, RequestStats, Store};

/// Packs read at once with `read_data`; memory is about this many pack sizes.
const PACKS_IN_FLIGHT: usize = 4;
/// Reassembly windows of `read_data`: (chunks per window, windows in flight), as pull uses.
const READ_WINDOWS: (usize, usize) = (1024, 4);
/// Reassembly windows of copy's read-back at the destination: four times fewer, larger
/// requests (16 MiB windows), since requests are what a remote destination charges for.
pub(crate) const COPY_WINDOWS: (usize, usize) = (4096, 2);
/// Snapshots reassembled at once with `read_data`.
const ARTIFACTS_IN_FLIGHT: usize = 2;
/// Requests for small objects in flight.
const SMALL_IN_FLIGHT: usize = 16;
/// Snapshots whose metadata (recipe and location table) is held at once.
const OPEN_IN_FLIGHT: usize = 4;
/// Bytes of a pack's footer.
const PACK_FOOTER: u64 = 16;
/// Bytes of a pack's header.
const PACK_HEADER: u64 = 8;

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Snapshot ids or unique prefixes; empty means every live snapshot.
    pub snapshots: Vec<String>,
    /// Also read every referenced pack and reassemble every artifact.
    pub read_data: bool,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// The kind of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The signed index: a bad signature, a broken link, a missing or altered entry, a bad
    /// checkpoint, or a rollback of what this client saw before.
    Index,
    /// A snapshot root, manifest, recipe or location table that is missing, altered or
    /// inconsistent.
    Snapshot,
    /// A pack that is missing.
    MissingPack,
    /// A pack too short for the chunks said to be in it.
    Size,
    /// A pack whose bytes are damaged, or an artifact that does not reassemble to its
    /// SHA-256.
    Data,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The object concerned (its key in the store, or "index").
    pub object: String,
    /// The snapshots it affects (ids); empty when that cannot be known.
    pub snapshots: Vec<String>,
    /// What is wrong, with expected and actual values.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.detail)?;
        match self.snapshots.as_slice() {
            [] => Ok(()),
            s => write!(f, " (affects snapshot {})", s.join(", ")),
        }
    }
}

/// What verify checked and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Index entries checked (signature and key).
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Live snapshots checked.
    pub snapshots: u64,
    /// Snapshots in the index that were forgotten; their objects are not checked.
    pub forgotten: Vec<String>,
    /// Packs referenced by the checked snapshots.
    pub packs: u64,
    /// With `read_data`: pack bytes read and hashed.
    pub pack_bytes_read: u64,
    /// With `read_data`: chunks decompressed and hashed in the pack pass.
    pub chunks_checked: u64,
    /// With `read_data`: database bytes reassembled and checked against their SHA-256.
    pub artifact_bytes_checked: u64,
    /// Everything that is wrong; empty when the store is sound.
    pub problems: Vec<Problem>,
    /// Requests made to the store.
    pub requests: RequestStats,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// An error that means the store is damaged, as opposed to one that stops the check.
fn is_damage(e: &Error) -> bool {
    e.is_verification_failure() || matches!(e, Error::MissingObject(_))
}

/// Verify `store`. See the module documentation for what is checked.
pub async fn verify(
    store: &Store,
    state: &ClientState,
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let start = store.stats();
    let mut report = VerifyReport::default();

    // 1. The index, entry by entry, independently of the checkpoint shortcut of loading.
    let known = check_index(store, &mut report).await?;
    let live: Vec<Entry> = match Index::load(store, state).await {
        Ok(index) => {
            let live: Vec<Entry> = index.snapshots().into_iter().cloned().collect();
            let live_ids: HashSet<&str> = live.iter().map(|e| e.body.snapshot.as_str()).collect();
            let mut forgotten: BTreeSet<String> = BTreeSet::new();
            for e in known.values() {
                if e.body.kind == EntryKind::Snapshot
                    && !live_ids.contains(e.body.snapshot.as_str())
                {
                    forgotten.insert(e.body.snapshot.clone());
                }
            }
            report.forgotten = forgotten.into_iter().collect();
            live
        }
        Err(e) if is_damage(&e) => {
            if !report.problems.iter().any(|p| p.kind == ProblemKind::Index) {
                report.problems.push(Problem {
                    kind: ProblemKind::Index,
                    object: "index".into(),
                    snapshots: Vec::new(),
                    detail: e.to_string(),
                });
            }
            // Go on with every snapshot a verified entry records and no tombstone names.
            let forgotten: BTreeSet<String> = known
                .values()
                .filter(|e| e.body.kind == EntryKind::Forget)
                .map(|e| e.body.snapshot.clone())
                .collect();
            let mut seen = HashSet::new();
            let live = known
                .values()
                .filter(|e| e.body.kind == EntryKind::Snapshot)
                .filter(|e| !forgotten.contains(&e.body.snapshot))
                .filter(|e| seen.insert(e.body.snapshot.clone()))
                .cloned()
                .collect();
            report.forgotten = forgotten.into_iter().collect();
            live
        }
        Err(e) => return Err(e),
    };
    let selected = select(&live, &opts.snapshots, &mut report)?;

    // 2. Every manifest, root, recipe and location table, one snapshot at a time; only
    //    per-pack summaries are kept, so memory follows the distinct extents, not the
    //    number of snapshots.
    let sizes: HashMap<PackId, u64> = store
        .list("packs", None)
        .await?
        .into_iter()
        .filter_map(|m| {
            let name = m.location.filename()?.to_string();
            PackId::from_hex(&name).ok().map(|id| (id, m.size))
        })
        .collect();
    let mut refs = PackRefs::default();
    let mut sound: Vec<(SnapshotId, u64)> = Vec::new();
    let mut opened = futures::stream::iter(selected)
        .map(|e| async move {
            let r = open_snapshot_untrusted(store, &e).await;
            (e, r)
        })
        .buffered(OPEN_IN_FLIGHT);
    while let Some((e, r)) = opened.next().await {
        let s = match r {
            Ok(s) => s,
            Err(err) if is_damage(&err) => {
                report.problems.push(Problem {
                    kind: ProblemKind::Snapshot,
                    object: match &err {
                        Error::MissingObject(k) => k.clone(),
                        _ => format!("snapshots/{}", e.body.snapshot),
                    },
                    snapshots: vec![e.body.snapshot.clone()],
                    detail: err.to_string(),
                });
                continue;
            }
            Err(err) => return Err(err),
        };
        report.snapshots += 1;
        let mut ok = true;
        if s.root.db.bytes != e.body.db_bytes {
            report.problems.push(Problem {
                kind: ProblemKind::Snapshot,
                object: keys::snapshot(&s.id).to_string(),
                snapshots: vec![s.id.to_hex()],
                detail: format!(
                    "the root says {} database bytes, the index entry {}",
                    s.root.db.bytes, e.body.db_bytes
                ),
            });
            ok = false;
        }
        if let Some(c) = s
            .recipe
            .chunks
            .iter()
            .find(|c| !s.locations.map.contains_key(c))
        {
            report.problems.push(Problem {
                kind: ProblemKind::Snapshot,
                object: keys::locations(&s.id).to_string(),
                snapshots: vec![s.id.to_hex()],
                detail: format!("chunk {c} of the recipe has no location"),
            });
            ok = false;
        }
        refs.add(&s, opts.read_data);
        if ok {
            sound.push((s.id, s.recipe.db_bytes));
        }
    }
    drop(opened);

    // 3. Every referenced pack exists and is long enough for its chunks.
    report.packs = refs.users.len() as u64;
    let mut bad_packs: BTreeSet<PackId> = BTreeSet::new();
    for (pack, who) in &refs.users {
        let key = keys::pack(pack).to_string();
        let who: Vec<String> = who.iter().cloned().collect();
        let Some(&size) = sizes.get(pack) else {
            report.problems.push(Problem {
                kind: ProblemKind::MissingPack,
                object: key,
                snapshots: who,
                detail: "the pack is missing from the store".into(),
            });
            bad_packs.insert(*pack);
            continue;
        };
        // `add` records a furthest extent for every pack it records a user of.
        let Some(&(end, c, l)) = refs.furthest.get(pack) else {
            continue;
        };
        let low = refs.lowest.get(pack);
        if end + PACK_FOOTER > size || low.is_some() {
            let (c, l) = low.copied().unwrap_or((c, l));
            report.problems.push(Problem {
                kind: ProblemKind::Size,
                object: key,
                snapshots: who,
                detail: format!(
                    "the pack is {size} bytes, but chunk {c} lies at {}+{}",
                    l.offset, l.stored_len
                ),
            });
            bad_packs.insert(*pack);
        }
    }

    // 4. The data itself: each pack once, then each sound artifact.
    if opts.read_data {
        let users = refs.users.clone();
        read_data(store, refs, &sizes, &mut bad_packs, &mut report, opts).await?;
        // Reassemble only the snapshots whose packs are all sound.
        let tainted: HashSet<&String> = bad_packs
            .iter()
            .filter_map(|p| users.get(p))
            .flatten()
            .collect();
        let clean: Vec<(SnapshotId, u64)> = sound
            .into_iter()
            .filter(|(id, _)| !tainted.contains(&id.to_hex()))
            .collect();
        check_artifacts(store, &clean, &mut report, opts).await?;
    }

    report
        .problems
        .sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    report.requests = store.stats().since(&start);
    Ok(report)
}

/// Per pack: which snapshots use it, its furthest extent, an extent before the chunk area if
/// any, and (for `read_data`) its distinct referenced extents.
#[derive(Default)]
struct PackRefs {
    users: BTreeMap<PackId, BTreeSet<String>>,
    furthest: HashMap<PackId, (u64, ChunkId, Location)>,
    lowest: HashMap<PackId, (ChunkId, Location)>,
    extents: HashMap<PackId, HashMap<ChunkId, Location>>,
}

impl PackRefs {
    fn add(&mut self, s: &VerifiedSnapshot, with_extents: bool) {
        let id = s.id.to_hex();
        for (c, l) in &s.locations.map {
            let end = l.offset as u64 + l.stored_len as u64;
            if !self.users.get(&l.pack).is_some_and(|u| u.contains(&id)) {
                self.users.entry(l.pack).or_default().insert(id.clone());
            }
            let f = self.furthest.entry(l.pack).or_insert((end, *c, *l));
            if end > f.0 {
                *f = (end, *c, *l);
            }
            if (l.offset as u64) < PACK_HEADER {
                self.lowest.insert(l.pack, (*c, *l));
            }
            if with_extents {
                self.extents.entry(l.pack).or_default().insert(*c, *l);
            }
        }
    }
}

/// The live snapshots asked for: all, or those `queries` resolve to among them. A query
/// that names a forgotten snapshot is not an error; the snapshot is listed as forgotten.
fn select(live: &[Entry], queries: &[String], report: &mut VerifyReport) -> Result<Vec<Entry>> {
    if queries.is_empty() {
        return Ok(live.to_vec());
    }
    let mut out: Vec<Entry> = Vec::new();
    for q in queries {
        let q = q.trim().to_ascii_lowercase();
        if q.len() < crate::index::MIN_PREFIX_LEN || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{q:?} is not a snapshot id or prefix: give at least {} hex characters",
                crate::index::MIN_PREFIX_LEN
            )));
        }
        let hits: Vec<&Entry> = live
            .iter()
            .filter(|e| e.body.snapshot.starts_with(&q))
            .collect();
        match hits.as_slice() {
            [one] => {
                if !out.iter().any(|e| e.body.snapshot == one.body.snapshot) {
                    out.push((*one).clone());
                }
            }
            [] if report.forgotten.iter().any(|f| f.starts_with(&q)) => {}
            [] => return Err(Error::SnapshotNotFound(q)),
            many => {
                return Err(Error::AmbiguousPrefix {
                    prefix: q,
                    candidates: many.iter().map(|e| e.body.snapshot.clone()).collect(),
                })
            }
        }
    }
    Ok(out)
}

/// Verify every entry object and every checkpoint; return every entry that verifies, from
/// either, by key.
async fn check_index(store: &Store, report: &mut VerifyReport) -> Result<BTreeMap<String, Entry>> {
    let listed: Vec<String> = store
        .list(ENTRIES_PREFIX, None)
        .await?
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    let fetched: Vec<(String, Result<Entry>)> = futures::stream::iter(listed)
        .map(|k| async move {
            let r = match store.get(&Path::from(k.as_str())).await {
                Ok(raw) => Entry::verify(&k, &raw),
                Err(e) => Err(e),
            };
            (k, r)
        })
        .buffer_unordered(SMALL_IN_FLIGHT)
        .collect()
        .await;
    let mut stored: BTreeMap<String, Entry> = BTreeMap::new();
    for (k, r) in fetched {
        report.entries += 1;
        match r {
            Ok(e) => {
                stored.insert(k, e);
            }
            Err(e) if is_damage(&e) => report.problems.push(Problem {
                kind: ProblemKind::Index,
                object: k,
                snapshots: Vec::new(),
                detail: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }

    // Checkpoints: each must decode, and each entry in it must still be stored.
    let mut known = stored.clone();
    let checkpoints = store.list(CHECKPOINTS_PREFIX, None).await?;
    for m in checkpoints {
        report.checkpoints += 1;
        let key = m.location.to_string();
        let decoded = match store.get(&m.location).await {
            Ok(b) => decode_checkpoint(&key, &b),
            Err(e) => Err(e),
        };
        match decoded {
            Ok(entries) => {
                for e in entries {
                    if !stored.contains_key(&e.key) {
                        report.problems.push(Problem {
                            kind: ProblemKind::Index,
                            object: e.key.clone(),
                            snapshots: vec![e.body.snapshot.clone()],
                            detail: format!(
                                "the entry is in checkpoint {key} but missing from the store"
                            ),
                        });
                    }
                    known.insert(e.key.clone(), e);
                }
            }
            Err(e) if is_damage(&e) => report.problems.push(Problem {
                kind: ProblemKind::Index,
                object: key,
                snapshots: Vec::new(),
                detail: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }

    // Links: every parent an entry names must be stored.
    let mut reported: HashSet<String> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Index)
        .map(|p| p.object.clone())
        .collect();
    for e in stored.values() {
        for p in &e.body.parents {
            if !stored.contains_key(p) && reported.insert(p.clone()) {
                report.problems.push(Problem {
                    kind: ProblemKind::Index,
                    object: p.clone(),
                    snapshots: known
                        .get(p)
                        .map(|m| vec![m.body.snapshot.clone()])
                        .unwrap_or_default(),
                    detail: format!(
                        "the entry is missing, but entry {} names it as a parent: \
                         the index was damaged or an entry was deleted",
                        e.key
                    ),
                });
            }
        }
    }
    Ok(known)
}

/// Read every referenced pack once: its BLAKE3 must be its id. Chunks are decoded only in a
/// pack that fails, to find which are damaged and whom that affects; the artifact pass
/// checks every chunk of the sound snapshots anyway.
async fn read_data(
    store: &Store,
    refs: PackRefs,
    sizes: &HashMap<PackId, u64>,
    bad_packs: &mut BTreeSet<PackId>,
    report: &mut VerifyReport,
    opts: &VerifyOptions,
) -> Result<()> {
    let PackRefs { users, extents, .. } = refs;
    let todo: Vec<(PackId, Vec<(ChunkId, Location)>)> = extents
        .into_iter()
        .filter(|(p, _)| !bad_packs.contains(p))
        .map(|(p, m)| (p, m.into_iter().collect()))
        .collect();
    let pack_total: u64 = todo.iter().filter_map(|(p, _)| sizes.get(p)).sum();
    let bar = crate::progress::bytes_bar(opts.progress, pack_total, "packs");
    let bar_ref = &bar;

    let results: Vec<Result<PackCheck>> = futures::stream::iter(todo)
        .map(|(pack, chunks)| async move {
            let bytes = store.get(&keys::pack(&pack)).await?;
            bar_ref.inc(bytes.len() as u64);
            tokio::task::spawn_blocking(move || check_pack(pack, &bytes, &chunks)).await?
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    for r in results {
        let c = match r {
            Ok(c) => c,
            Err(Error::MissingObject(k)) => {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingPack,
                    object: k.clone(),
                    snapshots: Vec::new(),
                    detail: "the pack disappeared while verify ran".into(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        report.pack_bytes_read += c.len;
        report.chunks_checked += c.chunks;
        if c.actual == c.pack {
            continue;
        }
        bad_packs.insert(c.pack);
        let who: Vec<String> = users
            .get(&c.pack)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        let (affected, detail) = if c.bad.is_empty() {
            (
                who,
                format!(
                    "content hashes to {}, expected {} (no referenced chunk is damaged)",
                    c.actual, c.pack
                ),
            )
        } else {
            let bad: HashSet<ChunkId> = c.bad.iter().map(|(id, _)| *id).collect();
            (
                users_of_chunks(store, &who, &c.pack, &bad).await?,
                format!(
                    "{} of its {} referenced chunks are damaged; first: {}",
                    c.bad.len(),
                    c.chunks,
                    c.bad[0].1
                ),
            )
        };
        report.problems.push(Problem {
            kind: ProblemKind::Data,
            object: keys::pack(&c.pack).to_string(),
            snapshots: affected,
            detail,
        });
    }
    Ok(())
}

/// Of the snapshots in `who`, those whose location table puts one of `bad` in `pack`.
async fn users_of_chunks(
    store: &Store,
    who: &[String],
    pack: &PackId,
    bad: &HashSet<ChunkId>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for id in who {
        let sid = SnapshotId::from_hex(id)?;
        let b = store.get(&keys::locations(&sid)).await?;
        let l = Locations::decode(&b, &format!("locations of {id}"))?;
        if l.map
            .iter()
            .any(|(c, x)| x.pack == *pack && bad.contains(c))
        {
            out.push(id.clone());
        }
    }
    Ok(out)
}

struct PackCheck {
    pack: PackId,
    len: u64,
    actual: PackId,
    chunks: u64,
    bad: Vec<(ChunkId, String)>,
}

fn check_pack(pack: PackId, bytes: &[u8], chunks: &[(ChunkId, Location)]) -> Result<PackCheck> {
    let actual = PackId::of(bytes);
    let mut bad = Vec::new();
    if actual != pack {
        let mut dec = new_decompressor()?;
        for (c, l) in chunks {
            let what = format!("chunk {c} in pack {pack}");
            let range = l.offset as usize..l.offset as usize + l.stored_len as usize;
            let r = match bytes.get(range) {
                Some(frame) => decode_chunk_with(&mut dec, frame, c, l.raw_len, &what).map(|_| ()),
                None => Err(Error::LengthMismatch {
                    what: what.clone(),
                    expected: l.offset as u64 + l.stored_len as u64,
                    actual: bytes.len() as u64,
                }),
            };
            if let Err(e) = r {
                bad.push((*c, e.to_string()));
            }
        }
    }
    Ok(PackCheck {
        pack,
        len: bytes.len() as u64,
        actual,
        chunks: chunks.len() as u64,
        bad,
    })
}

/// Reassemble every listed snapshot (every chunk's hash checked) and compare its SHA-256.
async fn check_artifacts(
    store: &Store,
    snaps: &[(SnapshotId, u64)],
    report: &mut VerifyReport,
    opts: &VerifyOptions,
) -> Result<()> {
    let total = snaps.iter().map(|(_, n)| n).sum();
    let bar = crate::progress::bytes_bar(opts.progress, total, "artifacts");
    let bar_ref = &bar;
    let results: Vec<(SnapshotId, Result<u64>)> = futures::stream::iter(snaps)
        .map(|(id, _)| async move {
            let r = reread_snapshot(store, id, READ_WINDOWS, &|n| bar_ref.inc(n)).await;
            (*id, r)
        })
        .buffer_unordered(ARTIFACTS_IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    for (id, r) in results {
        match r {
            Ok(n) => report.artifact_bytes_checked += n,
            Err(e) if is_damage(&e) => report.problems.push(Problem {
                kind: ProblemKind::Data,
                object: format!("{} of snapshot {id}", crate::format::manifest::DB_ARTIFACT),
                snapshots: vec![id.to_hex()],
                detail: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Stream one artifact through reassembly (every chunk's hash checked) and compare its
/// SHA-256 with the root's; return the bytes checked.
async fn check_artifact(
    store: &Store,
    id: SnapshotId,
    root: &SnapshotRoot,
    recipe: Arc<Recipe>,
    locations: Arc<Locations>,
    window: (usize, usize),
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let n = recipe.db_bytes;
    let sha = reassemble_windowed(
        store,
        recipe,
        locations,
        &mut std::io::sink(),
        on_bytes,
        window.0,
        window.1,
    )
    .await?;
    let declared = root.db_sha256()?;
    if sha != declared {
        return Err(Error::HashMismatch {
            what: format!("{} of snapshot {id}", crate::format::manifest::DB_ARTIFACT),
            expected: hex::encode(declared),
            actual: hex::encode(sha),
        });
    }
    Ok(n)
}

/// Read a snapshot back from `store` as a reader would, without the index: its root (hash),
/// recipe (hash), location table, and the artifact reassembled to its SHA-256. Copy runs
/// this at the destination before recording a snapshot there.
pub(crate) async fn reread_snapshot(
    store: &Store,
    id: &SnapshotId,
    window: (usize, usize),
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let root = SnapshotRoot::decode_verified(&store.get(&keys::snapshot(id)).await?, id)?;
    let recipe_id = root.recipe_id()?;
    let recipe_bytes = store.get(&keys::recipe(&recipe_id)).await?;
    let actual = RecipeId::of(&recipe_bytes);
    if actual != recipe_id {
        return Err(Error::HashMismatch {
            what: format!("recipe of snapshot {id}"),
            expected: recipe_id.to_hex(),
            actual: actual.to_hex(),
        });
    }
    let recipe = Recipe::decode(&recipe_bytes, &format!("recipe {recipe_id}"))?;
    let locations = Locations::decode(
        &store.get(&keys::locations(id)).await?,
        &format!("locations of {id}"),
    )?;
    check_artifact(
        store,
        *id,
        &root,
        Arc::new(recipe),
        Arc::new(locations),
        window,
        on_bytes,
    )
    .await
}
