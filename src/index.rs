//! The signed, append-only index: loading and verifying it, remembering what this client has
//! seen, and appending entries.
//!
//! Writers never coordinate. Each entry is a new, uniquely named, immutable object, so on a
//! server that ignores conditional writes no entry can be lost or overwritten. Entries name
//! the heads their writer saw, which makes the index a hash-linked DAG; a client remembers the
//! heads it last verified (as TUF clients remember versions) and refuses a store in which any
//! of them has disappeared.
//!
//! Loading costs one LIST of checkpoints, one GET of the newest checkpoint, and a LIST of the
//! entries written since (minus a clock-skew margin) with one GET per such entry. Pushers
//! write a new checkpoint whenever `checkpoint_every` entries are not yet covered by one, so
//! the number of requests stays bounded however many snapshots the store holds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path as FsPath, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::index::{
    checkpoint_count, decode_checkpoint, encode_checkpoint, parse_entry_key, Entry, EntryBody,
    EntryKind, CHECKPOINTS_PREFIX, ENTRIES_PREFIX,
};
use crate::sign::SecretKey;
use crate::store::Store;

/// Shortest prefix accepted when resolving a snapshot id.
pub const MIN_PREFIX_LEN: usize = 6;
const FETCH_CONCURRENCY: usize = 16;

/// Where a client remembers the index heads it has verified, per store.
#[derive(Debug, Clone)]
pub struct ClientState {
    dir: Option<PathBuf>,
}

/// What is remembered about one store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RememberedState {
    /// The store's label (its URL), for people reading the file.
    #[serde(default)]
    pub store: String,
    /// Keys of the heads at the last successful verification.
    pub heads: Vec<String>,
    /// How many entries the index had then.
    pub entries: u64,
}

impl ClientState {
    /// Remember state in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        ClientState {
            dir: Some(dir.into()),
        }
    }

    /// Remember nothing (every load starts from trust-on-first-use).
    pub fn ephemeral() -> Self {
        ClientState { dir: None }
    }

    /// `$STIGVAULT_STATE_DIR`, else `$XDG_STATE_HOME/stigvault`, else
    /// `~/.local/state/stigvault`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("STIGVAULT_STATE_DIR") {
            return PathBuf::from(d);
        }
        dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("stigvault")
    }

    fn file(&self, label: &str) -> Option<PathBuf> {
        let name = blake3::hash(label.as_bytes()).to_hex();
        self.dir
            .as_ref()
            .map(|d| d.join("stores").join(format!("{}.json", &name[..32])))
    }

    /// Load what was remembered about the store labelled `label` (empty if nothing).
    pub fn load(&self, label: &str) -> Result<RememberedState> {
        let Some(path) = self.file(label) else {
            return Ok(RememberedState::default());
        };
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::malformed(
                    format!("client state {}", path.display()),
                    format!("{e}; delete it to start trusting this store afresh"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RememberedState::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Remember `state` for the store labelled `label` (atomically replaced).
    pub fn save(&self, label: &str, state: &RememberedState) -> Result<()> {
        let Some(path) = self.file(label) else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(FsPath::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))?;
        serde_json::to_writer_pretty(tmp.as_file(), state)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into()))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("replacing {}", path.display()), e.error))?;
        Ok(())
    }
}

/// A loaded, fully verified index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: BTreeMap<String, Entry>,
    heads: Vec<String>,
    newest_checkpoint: u64,
}

impl Index {
    /// Load and verify the index of `store`, checking it against what `state` remembers and
    /// then remembering the new heads.
    pub async fn load(store: &Store, state: &ClientState) -> Result<Index> {
        let cfg = store.config();
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();

        // 1. The newest checkpoint, if any.
        let checkpoints = store.list(CHECKPOINTS_PREFIX, None).await?;
        let newest = checkpoints
            .iter()
            .filter_map(|m| {
                let k = m.location.to_string();
                checkpoint_count(&k).map(|n| (n, k))
            })
            .max();
        let mut newest_checkpoint = 0;
        if let Some((n, key)) = newest {
            let bytes = store.get(&Path::from(key.as_str())).await?;
            for e in decode_checkpoint(&key, &bytes)? {
                entries.insert(e.key.clone(), e);
            }
            newest_checkpoint = n;
        }

        // 2. Entries written since the checkpoint, reaching back by the skew margin.
        let offset = entries
            .keys()
            .filter_map(|k| parse_entry_key(k))
            .map(|(ms, _)| ms)
            .max()
            .map(|ms| {
                format!(
                    "{ENTRIES_PREFIX}/{:013}",
                    ms.saturating_sub(cfg.skew_margin_ms)
                )
            });
        let listed = store.list(ENTRIES_PREFIX, offset.as_deref()).await?;
        let missing: Vec<String> = listed
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| !entries.contains_key(k))
            .collect();
        for e in fetch_entries(store, missing).await? {
            entries.insert(e.key.clone(), e);
        }

        // 3. Close over parents and remembered heads: every one must exist.
        let remembered = state.load(store.label())?;
        loop {
            let mut wanted: BTreeSet<String> = BTreeSet::new();
            for e in entries.values() {
                for p in &e.body.parents {
                    if !entries.contains_key(p) {
                        wanted.insert(p.clone());
                    }
                }
            }
            for h in &remembered.heads {
                if !entries.contains_key(h) {
                    wanted.insert(h.clone());
                }
            }
            if wanted.is_empty() {
                break;
            }
            for e in fetch_entries(store, wanted.into_iter().collect())
                .await
                .map_err(|e| match e {
                    Error::MissingObject(key) if remembered.heads.contains(&key) => {
                        Error::IndexTampered(format!(
                            "entry {key}, which this client verified before, is missing: the \
                             index was rolled back or entries were deleted. If you deliberately \
                             deleted and recreated this store, remove {} to trust it afresh",
                            state.file(store.label()).map_or_else(
                                || "the client state".into(),
                                |p| p.display().to_string()
                            )
                        ))
                    }
                    Error::MissingObject(key) => Error::IndexTampered(format!(
                        "entry {key} is missing although a later entry names it: the store \
                         has been tampered with or damaged"
                    )),
                    other => other,
                })?
            {
                entries.insert(e.key.clone(), e);
            }
        }

        for e in entries.values() {
            if parse_entry_key(&e.key).is_none() {
                return Err(Error::IndexTampered(format!(
                    "malformed entry key {}",
                    e.key
                )));
            }
        }

        let named: HashSet<&String> = entries.values().flat_map(|e| &e.body.parents).collect();
        let heads: Vec<String> = entries
            .keys()
            .filter(|k| !named.contains(k))
            .cloned()
            .collect();
        let index = Index {
            entries,
            heads,
            newest_checkpoint,
        };
        index.remember(store, state)?;
        Ok(index)
    }

    fn remember(&self, store: &Store, state: &ClientState) -> Result<()> {
        state.save(
            store.label(),
            &RememberedState {
                store: store.label().to_string(),
                heads: self.heads.clone(),
                entries: self.entries.len() as u64,
            },
        )
    }

    /// Every verified entry, in key (time) order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys of the current heads.
    pub fn heads(&self) -> &[String] {
        &self.heads
    }

    /// One entry per live snapshot (the earliest that records it), in time order. Snapshots
    /// named by a tombstone ([`EntryKind::Forget`]) are not live and are left out.
    pub fn snapshots(&self) -> Vec<&Entry> {
        let forgotten = self.forgotten_ids();
        let mut seen = HashSet::new();
        self.entries
            .values()
            .filter(|e| e.body.kind == EntryKind::Snapshot)
            .filter(|e| !forgotten.contains(e.body.snapshot.as_str()))
            .filter(|e| seen.insert(e.body.snapshot.clone()))
            .collect()
    }

    fn forgotten_ids(&self) -> HashSet<&str> {
        self.entries
            .values()
            .filter(|e| e.body.kind == EntryKind::Forget)
            .map(|e| e.body.snapshot.as_str())
            .collect()
    }

    /// Every forgotten snapshot, as `(its snapshot entry, the earliest tombstone naming it)`,
    /// in tombstone time order. A tombstone for a snapshot the index never recorded is
    /// returned with no snapshot entry. `verify` uses this to tell forgotten from missing.
    pub fn forgotten(&self) -> Vec<(Option<&Entry>, &Entry)> {
        let mut seen = HashSet::new();
        self.entries
            .values()
            .filter(|e| e.body.kind == EntryKind::Forget)
            .filter(|t| seen.insert(t.body.snapshot.clone()))
            .map(|t| (self.snapshot_entry(&t.body.snapshot), t))
            .collect()
    }

    /// The earliest tombstone naming snapshot `id` (full hex), if it was forgotten.
    pub fn tombstone(&self, id: &str) -> Option<&Entry> {
        self.entries
            .values()
            .find(|e| e.body.kind == EntryKind::Forget && e.body.snapshot == id)
    }

    /// The earliest entry recording snapshot `id` (full hex), forgotten or not.
    pub fn snapshot_entry(&self, id: &str) -> Option<&Entry> {
        self.entries
            .values()
            .find(|e| e.body.kind == EntryKind::Snapshot && e.body.snapshot == id)
    }

    /// Resolve a full id or a unique prefix of at least [`MIN_PREFIX_LEN`] hex characters
    /// among the live snapshots. A query that matches only forgotten snapshots is refused
    /// with [`Error::SnapshotForgotten`].
    pub fn resolve(&self, query: &str) -> Result<(SnapshotId, &Entry)> {
        let q = query.trim().to_ascii_lowercase();
        if q.len() < MIN_PREFIX_LEN || q.len() > 64 || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{query:?} is not a snapshot id or prefix: give at least {MIN_PREFIX_LEN} hex characters"
            )));
        }
        let hits: Vec<&Entry> = self
            .snapshots()
            .into_iter()
            .filter(|e| e.body.snapshot.starts_with(&q))
            .collect();
        match hits.as_slice() {
            [] => match self
                .forgotten()
                .into_iter()
                .find(|(_, t)| t.body.snapshot.starts_with(&q))
            {
                Some((_, t)) => Err(Error::SnapshotForgotten {
                    snapshot: t.body.snapshot.clone(),
                    signer: t.body.signer_pubkey.clone(),
                    entry: t.key.clone(),
                }),
                None => Err(Error::SnapshotNotFound(query.to_string())),
            },
            [one] => Ok((SnapshotId::from_hex(&one.body.snapshot)?, one)),
            many => Err(Error::AmbiguousPrefix {
                prefix: query.to_string(),
                candidates: many.iter().map(|e| e.body.snapshot.clone()).collect(),
            }),
        }
    }

    /// The newest live snapshot entry of `node_id`, if any.
    pub fn latest_for_node(&self, node_id: &str) -> Option<&Entry> {
        let forgotten = self.forgotten_ids();
        self.entries.values().rev().find(|e| {
            e.body.kind == EntryKind::Snapshot
                && e.body.node_id == node_id
                && !forgotten.contains(e.body.snapshot.as_str())
        })
    }

    /// The newest live snapshot entry of any node.
    pub fn latest(&self) -> Option<&Entry> {
        let forgotten = self.forgotten_ids();
        self.entries.values().rev().find(|e| {
            e.body.kind == EntryKind::Snapshot && !forgotten.contains(e.body.snapshot.as_str())
        })
    }

    /// Sign and write a new entry whose parents are this index's heads; then write a new
    /// checkpoint if enough entries are uncovered, and remember the new head.
    ///
    /// `body.parents` and `body.written_at_ms` are filled in here.
    pub async fn append(
        &mut self,
        store: &Store,
        state: &ClientState,
        mut body: EntryBody,
        key: &SecretKey,
    ) -> Result<Entry> {
        body.parents = self.heads.clone();
        // Never sort before an entry we have seen: a lagging clock must not hide the new
        // entry behind the checkpoint watermark.
        let newest_seen = self
            .entries
            .keys()
            .filter_map(|k| parse_entry_key(k))
            .map(|(ms, _)| ms)
            .max()
            .unwrap_or(0);
        body.written_at_ms = now_ms().max(newest_seen + 1);
        let entry = Entry::sign(body, key)?;
        store
            .put_immutable(&Path::from(entry.key.as_str()), entry.raw.clone().into())
            .await?;
        self.heads = vec![entry.key.clone()];
        self.entries.insert(entry.key.clone(), entry.clone());
        self.remember(store, state)?;

        let uncovered =
            self.entries.len() as u64 - self.newest_checkpoint.min(self.entries.len() as u64);
        if uncovered >= store.config().checkpoint_every as u64 {
            let all: Vec<&Entry> = self.entries.values().collect();
            let (ck_key, bytes) = encode_checkpoint(&all);
            store
                .put_immutable(&Path::from(ck_key.as_str()), bytes.into())
                .await?;
            self.newest_checkpoint = all.len() as u64;
            tracing::debug!(key = %ck_key, "wrote index checkpoint");
        }
        Ok(entry)
    }
}

async fn fetch_entries(store: &Store, keys: Vec<String>) -> Result<Vec<Entry>> {
    futures::stream::iter(keys)
        .map(|k| async move {
            let raw = store.get(&Path::from(k.as_str())).await?;
            Entry::verify(&k, &raw)
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect()
        .await
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
