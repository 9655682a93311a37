//! push: capture → chunk → hash → compress → pack → upload → sign index.
//!
//! The snapshot becomes visible only when its index entry is written, which is the last
//! write. A push that fails or is killed before then leaves packs and other objects that no
//! entry names: garbage for a later gc, never a partial snapshot.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::chunk::{self, BlockReader};
use crate::error::{Error, Result};
use crate::format::id::{ChunkId, PackId, RecipeId, SnapshotId};
use crate::format::index::{EntryBody, EntryKind};
use crate::format::manifest::{self, Manifest};
use crate::format::pack::{FinishedPack, PackBuilder};
use crate::format::recipe::{Location, Locations, Recipe};
use crate::format::snapshot::{DbArtifact, SnapshotRoot};
use crate::index::{ClientState, Index};
use crate::sign::SecretKey;
use crate::sqlite;
use crate::store::{keys, RequestStats, Store};

/// Bytes read from the captured copy per step (a whole number of chunks).
const BLOCK_BYTES: usize = 1 << 20;
/// Packs uploading at once. With the pack being filled and one queued, this bounds the memory
/// held in packs to about four pack sizes.
const UPLOAD_CONCURRENCY: usize = 2;

/// What to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The live database.
    pub db: PathBuf,
    /// Sign with this key instead of the node's federation key.
    pub sign_with: Option<SecretKey>,
    /// Where the consistent copy is staged (default: the system temp dir).
    pub tmp_dir: Option<PathBuf>,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushReport {
    /// The new snapshot's id.
    pub id: String,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The node id.
    pub node_id: String,
    /// The signing key (base64url).
    pub signer_pubkey: String,
    /// Database length.
    pub db_bytes: u64,
    /// Database SHA-256 (hex).
    pub db_sha256: String,
    /// Chunks in the database.
    pub chunks: u64,
    /// Chunks this push stored (the rest were already in the store).
    pub new_chunks: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Bytes of objects this push added (packs, recipe, locations, root).
    pub new_bytes: u64,
    /// The earlier snapshot whose chunks were reused, if any.
    pub parent: Option<String>,
    /// Requests made to the store.
    pub requests: RequestStats,
}

/// The database after chunking: its recipe, where every chunk lives, and its SHA-256.
pub(crate) struct Chunked {
    pub recipe: Recipe,
    pub locations: Locations,
    pub sha256: [u8; 32],
    pub new_chunks: u64,
    pub packs: u64,
}

/// Take a consistent copy of `opts.db`, store what the store lacks, and record a signed
/// snapshot in the index.
pub async fn push(store: &Store, state: &ClientState, opts: &PushOptions) -> Result<PushReport> {
    let start = store.stats();
    let started = std::time::Instant::now();
    let created_at = manifest::python_isoformat_utc(chrono::Utc::now());

    let db = opts.db.clone();
    if !db.is_file() {
        return Err(Error::InvalidInput(format!(
            "database {} does not exist or is not a file",
            db.display()
        )));
    }
    let tmp_dir = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (identity, capture) = tokio::task::spawn_blocking(move || {
        let identity = sqlite::ensure_identity(&db)?;
        let capture = sqlite::capture(&db, &tmp_dir)?;
        Ok::<_, Error>((identity, capture))
    })
    .await??;
    let key = match &opts.sign_with {
        Some(k) => k.clone(),
        None => {
            SecretKey::from_b64url(&identity.federation_privkey, "node_meta.federation_privkey")
                .map_err(|e| {
                    Error::InvalidInput(format!(
                        "node_meta.federation_privkey in {} is not usable: {e}",
                        opts.db.display()
                    ))
                })?
        }
    };

    tracing::debug!(elapsed = ?started.elapsed(), "captured a consistent copy");
    let mut index = Index::load(store, state).await?;
    let parent = index.latest_for_node(&identity.node_id).cloned();
    let known = match &parent {
        Some(p) => known_chunks(store, &SnapshotId::from_hex(&p.body.snapshot)?).await?,
        None => Locations::default(),
    };

    let cs = chunk::chunk_size(capture.page_size(), store.config().chunk_pages)?;
    let file = File::open(capture.path()).map_err(|e| {
        Error::io(
            format!("opening the captured copy {}", capture.path().display()),
            e,
        )
    })?;
    tracing::debug!(elapsed = ?started.elapsed(), known = known.map.len(), "loaded index and dedup set");
    let chunked = store_chunks(store, file, capture.page_size(), cs, known, opts.progress).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "chunked, compressed and uploaded");

    let cursor = manifest::cursor_json(capture.cursor_versions());
    let cursor_sha: [u8; 32] = Sha256::digest(cursor.as_bytes()).into();
    let manifest = Manifest::build(
        created_at,
        identity.node_id.clone(),
        chunked.sha256,
        cursor_sha,
        &key,
    );
    drop(capture);

    let (id, written) = write_snapshot(store, manifest.bytes(), &cursor, &chunked).await?;
    let new_bytes = store.stats().since(&start).put_bytes;
    let body = EntryBody {
        kind: EntryKind::Snapshot,
        snapshot: id.to_hex(),
        created_at: manifest.created_at().to_string(),
        node_id: manifest.node_id().to_string(),
        signer_pubkey: key.public().to_b64url(),
        db_sha256: hex::encode(chunked.sha256),
        db_bytes: chunked.recipe.db_bytes,
        new_bytes,
        parents: Vec::new(),
        written_at_ms: 0,
    };
    index.append(store, state, body, &key).await?;
    tracing::info!(id = %id, new_bytes, written, "pushed");

    Ok(PushReport {
        id: id.to_hex(),
        created_at: manifest.created_at().to_string(),
        node_id: manifest.node_id().to_string(),
        signer_pubkey: key.public().to_b64url(),
        db_bytes: chunked.recipe.db_bytes,
        db_sha256: hex::encode(chunked.sha256),
        chunks: chunked.recipe.chunks.len() as u64,
        new_chunks: chunked.new_chunks,
        packs: chunked.packs,
        new_bytes,
        parent: parent.map(|p| p.body.snapshot),
        requests: store.stats().since(&start),
    })
}

/// The chunks of an earlier snapshot that can be reused: its location table, minus chunks in
/// packs that gc has marked and in packs that are no longer in the store. Costs one GET, one
/// LIST of gc markers (and a GET per marker), and one HEAD per pack it names.
///
/// Call it after loading the index: the markers must be read after the table, and the packs
/// checked after the markers, for gc's rule to hold (see `store-layout.md`).
pub(crate) async fn known_chunks(store: &Store, id: &SnapshotId) -> Result<Locations> {
    let bytes = match store.get(&keys::locations(id)).await {
        Ok(b) => b,
        Err(Error::MissingObject(k)) => {
            tracing::warn!("{k} is missing; pushing without reusing chunks of {id}");
            return Ok(Locations::default());
        }
        Err(e) => return Err(e),
    };
    let locs = Locations::decode(&bytes, &format!("locations of {id}"))?;
    present_only(store, locs).await
}

/// `locs` minus chunks in packs that gc has marked or that the store no longer has: one
/// LIST of gc markers, then one HEAD per pack. The table must have been read before this
/// call, so that gc's rule holds (see `store-layout.md`, "Garbage collection"). Every writer
/// that reuses chunks it did not write (push, import, copy) goes through here.
pub(crate) async fn present_only(store: &Store, mut locs: Locations) -> Result<Locations> {
    if locs.map.is_empty() {
        return Ok(locs);
    }
    let marked = crate::gc::marked_packs(store).await?;
    let checks: Vec<Result<(PackId, bool)>> = futures::stream::iter(locs.packs())
        .filter(|p| futures::future::ready(!marked.contains(p)))
        .map(|p| async move { store.exists(&keys::pack(&p)).await.map(|e| (p, e)) })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut usable = HashSet::new();
    for c in checks {
        let (p, exists) = c?;
        if exists {
            usable.insert(p);
        }
    }
    let before = locs.map.len();
    locs.map.retain(|_, l| usable.contains(&l.pack));
    if locs.map.len() < before {
        tracing::info!(
            dropped = before - locs.map.len(),
            "not reusing chunks in packs that gc has marked or that are gone"
        );
    }
    Ok(locs)
}

/// Chunk `file`, store every chunk not in `known`, and return the recipe and locations.
pub(crate) async fn store_chunks(
    store: &Store,
    file: impl std::io::Read + Send + 'static,
    page_size: u32,
    chunk_size: u32,
    known: Locations,
    progress: bool,
) -> Result<Chunked> {
    let (tx, rx) = mpsc::channel::<FinishedPack>(1);
    let cfg = store.config().clone();
    let worker = tokio::task::spawn_blocking(move || {
        chunk_and_pack(file, page_size, chunk_size, known, &cfg, progress, tx)
    });
    let upload = tokio_stream_of(rx)
        .map(|pack| async move {
            let key = keys::pack(&pack.id);
            store.put_immutable(&key, Bytes::from(pack.bytes)).await
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .fold(Ok(()), |acc: Result<()>, r| async move { acc.and(r) });
    let uploaded = upload.await;
    // If uploading failed, the worker sees a closed channel and stops; report the root cause.
    let worked = worker.await?;
    uploaded?;
    worked
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The chunker and packer behind [`store_chunks`], sending each finished pack to `tx`
/// (import's single-pass path collects them instead of uploading).
pub(crate) fn chunk_and_pack(
    file: impl std::io::Read,
    page_size: u32,
    chunk_size: u32,
    known: Locations,
    cfg: &crate::format::config::StoreConfig,
    progress: bool,
    tx: mpsc::Sender<FinishedPack>,
) -> Result<Chunked> {
    let mut reader = BlockReader::new(file, chunk_size, BLOCK_BYTES);
    let known = known.map;
    let mut used: HashMap<ChunkId, Location> = HashMap::new();
    let mut pending: HashSet<ChunkId> = HashSet::new();
    let mut chunks = Vec::new();
    let mut sha = Sha256::new();
    let mut db_bytes = 0u64;
    let (mut new_chunks, mut packs) = (0u64, 0u64);
    let target = cfg.pack_target_bytes as usize;
    let mut pack = crate::gc::unique_pack(target + BLOCK_BYTES)?;
    let bar = crate::progress::bytes_bar(progress, 0, "push");
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut block = Vec::new();

    let send = |p: PackBuilder,
                used: &mut HashMap<ChunkId, Location>,
                pending: &mut HashSet<ChunkId>|
     -> Result<()> {
        let fin = p.finish();
        for e in &fin.entries {
            used.insert(
                e.chunk,
                Location {
                    pack: fin.id,
                    offset: e.offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                },
            );
        }
        pending.clear();
        tx.blocking_send(fin)
            .map_err(|_| Error::Task("pack upload stopped".into()))
    };

    while reader
        .next_block(&mut block)
        .map_err(|e| Error::io("reading the captured database copy", e))?
    {
        db_bytes += block.len() as u64;
        bar.inc(block.len() as u64);
        // Hash every chunk, and compress those the store lacks, on all cores; the whole-file
        // SHA-256 runs beside them rather than before them.
        let pieces: Vec<&[u8]> = chunk::split(&block, chunk_size).collect();
        let per = pieces.len().div_ceil(threads).max(1);
        let known_ref = &known;
        let (sha_ref, block_ref) = (&mut sha, &block);
        let hashed: Vec<(ChunkId, Option<Vec<u8>>)> = std::thread::scope(|s| {
            s.spawn(move || sha_ref.update(block_ref));
            let handles: Vec<_> = pieces
                .chunks(per)
                .map(|group| {
                    s.spawn(move || -> Result<Vec<(ChunkId, Option<Vec<u8>>)>> {
                        // One context per thread and block, not one per 4 KiB chunk.
                        let mut z = zstd::bulk::Compressor::new(cfg.zstd_level)
                            .map_err(|e| Error::Task(format!("zstd context: {e}")))?;
                        group
                            .iter()
                            .map(|c| {
                                let id = ChunkId::of(c);
                                if known_ref.contains_key(&id) {
                                    return Ok((id, None));
                                }
                                let packed = z
                                    .compress(c)
                                    .map_err(|e| Error::Task(format!("zstd: {e}")))?;
                                Ok((id, Some(packed)))
                            })
                            .collect()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(pieces.len());
            for h in handles {
                all.extend(
                    h.join()
                        .map_err(|_| Error::Task("a chunking thread panicked".into()))??,
                );
            }
            Ok::<_, Error>(all)
        })?;
        for ((id, z), raw) in hashed.into_iter().zip(&pieces) {
            chunks.push(id);
            if let Some(loc) = known.get(&id) {
                used.entry(id).or_insert(*loc);
                continue;
            }
            if used.contains_key(&id) || pending.contains(&id) {
                continue;
            }
            let Some(z) = z else { continue };
            pack.add(id, &z, raw.len() as u32);
            pending.insert(id);
            new_chunks += 1;
            if pack.len() >= target {
                let full =
                    std::mem::replace(&mut pack, crate::gc::unique_pack(target + BLOCK_BYTES)?);
                send(full, &mut used, &mut pending)?;
                packs += 1;
            }
        }
    }
    if !pack.is_empty() {
        send(pack, &mut used, &mut pending)?;
        packs += 1;
    }
    bar.finish_and_clear();
    // Only the chunks this database uses go into its location table.
    let mut locations = Locations::default();
    for id in &chunks {
        if let Some(l) = used.get(id).or_else(|| known.get(id)) {
            locations.map.insert(*id, *l);
        }
    }
    if locations.map.len() != chunks.iter().collect::<HashSet<_>>().len() {
        return Err(Error::Task("a chunk has no location after packing".into()));
    }
    Ok(Chunked {
        recipe: Recipe {
            db_bytes,
            page_size,
            chunk_size,
            chunks,
        },
        locations,
        sha256: sha.finalize().into(),
        new_chunks,
        packs,
    })
}

/// Write recipe, location table and root; return the snapshot id and the bytes written.
pub(crate) async fn write_snapshot(
    store: &Store,
    manifest_bytes: &[u8],
    cursor: &str,
    chunked: &Chunked,
) -> Result<(SnapshotId, u64)> {
    let recipe_bytes = chunked.recipe.encode();
    let recipe_id = RecipeId::of(&recipe_bytes);
    let manifest = String::from_utf8(manifest_bytes.to_vec())
        .map_err(|_| Error::malformed("manifest.json", "not UTF-8"))?;
    let root = SnapshotRoot {
        manifest,
        cursor: cursor.to_string(),
        db: DbArtifact {
            recipe: recipe_id.to_hex(),
            bytes: chunked.recipe.db_bytes,
            sha256: hex::encode(chunked.sha256),
            page_size: chunked.recipe.page_size,
            chunk_size: chunked.recipe.chunk_size,
        },
    }
    .encode();
    let id = SnapshotRoot::id_of(&root);
    let locs = chunked.locations.encode();
    let written = (recipe_bytes.len() + locs.len() + root.len()) as u64;
    store
        .put_immutable(&keys::recipe(&recipe_id), recipe_bytes.into())
        .await?;
    store
        .put_immutable(&keys::locations(&id), locs.into())
        .await?;
    store
        .put_immutable(&keys::snapshot(&id), root.into())
        .await?;
    Ok((id, written))
}
