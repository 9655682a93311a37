//! Typed access to a store over any [`ObjectStore`]: keys, immutable writes, ranged reads,
//! request counters, and the `config` object with its conditional-write probe.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::format::config::StoreConfig;
use crate::format::id::{PackId, RecipeId, SnapshotId};

/// Default SQLite pages per chunk. Notes on a stigmem workload: 11% of 4 KiB pages change
/// on a +1% step, but 34% of 16 KiB chunks and 75% of 64 KiB chunks; one page per chunk keeps
/// nearly all the dedup, and packs keep the object count low.
pub const DEFAULT_CHUNK_PAGES: u32 = 1;
/// Default pack size: large enough that a 1 GiB database is a few dozen PUTs, small enough
/// that a push holds only a few packs in memory.
pub const DEFAULT_PACK_TARGET: u64 = 8 << 20;

/// Request and byte counters, shared by every clone of a [`Store`].
#[derive(Debug, Default)]
pub struct Counters {
    /// PUT requests.
    pub puts: AtomicU64,
    /// Bytes sent in PUTs.
    pub put_bytes: AtomicU64,
    /// GET requests (whole or ranged).
    pub gets: AtomicU64,
    /// Bytes received.
    pub get_bytes: AtomicU64,
    /// LIST requests (streams started).
    pub lists: AtomicU64,
    /// HEAD requests.
    pub heads: AtomicU64,
    /// DELETE requests.
    pub deletes: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// PUT requests.
    pub puts: u64,
    /// Bytes sent in PUTs.
    pub put_bytes: u64,
    /// GET requests.
    pub gets: u64,
    /// Bytes received.
    pub get_bytes: u64,
    /// LIST requests.
    pub lists: u64,
    /// HEAD requests.
    pub heads: u64,
    /// DELETE requests.
    pub deletes: u64,
}

impl Counters {
    /// Read the counters.
    pub fn snapshot(&self) -> RequestStats {
        RequestStats {
            puts: self.puts.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            get_bytes: self.get_bytes.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            heads: self.heads.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
        }
    }
}

impl RequestStats {
    /// Counters accumulated since `earlier`.
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            puts: self.puts - earlier.puts,
            put_bytes: self.put_bytes - earlier.put_bytes,
            gets: self.gets - earlier.gets,
            get_bytes: self.get_bytes - earlier.get_bytes,
            lists: self.lists - earlier.lists,
            heads: self.heads - earlier.heads,
            deletes: self.deletes - earlier.deletes,
        }
    }
}

/// The object keys of the store layout (see `store-layout.md`).
pub mod keys {
    use super::*;

    /// `config`
    pub fn config() -> Path {
        Path::from("config")
    }
    /// `packs/<first 2 hex>/<pack id>`
    pub fn pack(id: &PackId) -> Path {
        let h = id.to_hex();
        Path::from(format!("packs/{}/{h}", &h[..2]))
    }
    /// `recipes/<recipe id>`
    pub fn recipe(id: &RecipeId) -> Path {
        Path::from(format!("recipes/{id}"))
    }
    /// `locations/<snapshot id>`
    pub fn locations(id: &SnapshotId) -> Path {
        Path::from(format!("locations/{id}"))
    }
    /// `snapshots/<snapshot id>`
    pub fn snapshot(id: &SnapshotId) -> Path {
        Path::from(format!("snapshots/{id}"))
    }
    /// `probe/<random>`: scratch objects of the conditional-write probe.
    pub fn probe(nonce: &str) -> Path {
        Path::from(format!("probe/{nonce}"))
    }
}

/// Build an object store from a store URL: a plain path, `file:///abs/path`, or
/// `s3://bucket/prefix` (configured from the standard AWS environment variables).
pub fn object_store_from_url(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let bad = |reason: &str| Error::InvalidStoreUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name; use s3://bucket/prefix"));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| bad(&format!("{e}; check AWS_* environment variables")))?;
        return Ok(with_prefix(Arc::new(s3), prefix));
    }
    if url.starts_with("memory://") {
        return Ok(Arc::new(object_store::memory::InMemory::new()));
    }
    let path: PathBuf = if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad(
                "file:// URLs need an absolute path, as in file:///var/backups/sv",
            ));
        }
        PathBuf::from(rest)
    } else if url.contains("://") {
        return Err(bad(
            "unknown scheme; use a path, file:///abs/path or s3://bucket/prefix",
        ));
    } else {
        PathBuf::from(url)
    };
    local_store(&path)
}

/// The object store for `url` (or the default local store) and the label it is known by:
/// the URL itself, with local paths made absolute as `file://` URLs.
pub fn resolve_url(url: Option<&str>) -> Result<(Arc<dyn ObjectStore>, String)> {
    let local_label = |p: &FsPath| -> Result<String> {
        std::fs::create_dir_all(p)
            .map_err(|e| Error::io(format!("creating store directory {}", p.display()), e))?;
        let abs = p
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", p.display()), e))?;
        Ok(format!("file://{}", abs.display()))
    };
    match url {
        None => {
            let p = default_store_path();
            let label = local_label(&p)?;
            Ok((local_store(&p)?, label))
        }
        Some(u) if u.contains("://") && !u.starts_with("file://") => {
            // The same bucket name on two servers is two stores: the endpoint is part of the
            // label that keys the remembered index state.
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .unwrap_or_default();
            let label = if endpoint.is_empty() || !u.starts_with("s3://") {
                u.to_string()
            } else {
                format!("{u} at {endpoint}")
            };
            Ok((object_store_from_url(u)?, label))
        }
        Some(u) => {
            let store = object_store_from_url(u)?;
            let p = u.strip_prefix("file://").unwrap_or(u);
            Ok((store, local_label(FsPath::new(p))?))
        }
    }
}

/// A local-directory store, creating the directory if needed.
pub fn local_store(path: &FsPath) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("creating store directory {}", path.display()), e))?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(path).map_err(|e| {
        Error::InvalidStoreUrl {
            url: path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok(Arc::new(fs))
}

/// Wrap `inner` so that every key lives under `prefix` (no-op for an empty prefix).
pub fn with_prefix(inner: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        inner
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(inner, prefix))
    }
}

/// The default local store: `$XDG_DATA_HOME/stigvault/store`, else
/// `~/.local/share/stigvault/store`.
pub fn default_store_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("stigvault")
        .join("store")
}

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    label: String,
    config: StoreConfig,
    counters: Arc<Counters>,
}

fn store_err(key: &Path, source: object_store::Error) -> Error {
    match source {
        object_store::Error::NotFound { .. } => Error::MissingObject(key.to_string()),
        source => Error::Store {
            key: key.to_string(),
            source,
        },
    }
}

impl Store {
    /// Open a store that has been initialised. `label` names it (normally its URL); the
    /// client's remembered index state is kept per label.
    pub async fn open(inner: Arc<dyn ObjectStore>, label: &str) -> Result<Store> {
        let counters = Arc::new(Counters::default());
        let key = keys::config();
        counters.gets.fetch_add(1, Ordering::Relaxed);
        let bytes = match inner.get(&key).await {
            Ok(r) => r.bytes().await.map_err(|e| store_err(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::InvalidInput(format!(
                    "no stigvault store at {inner} (no `config` object); \
                     push a snapshot to create one"
                )))
            }
            Err(e) => return Err(store_err(&key, e)),
        };
        let config = StoreConfig::decode(&bytes)?;
        Ok(Store {
            inner,
            label: label.to_string(),
            config,
            counters,
        })
    }

    /// Open a store, initialising it first if it has no `config` yet. Initialisation probes
    /// whether the server honours conditional creates and records the answer.
    pub async fn open_or_init(inner: Arc<dyn ObjectStore>, label: &str) -> Result<Store> {
        match Store::open(inner.clone(), label).await {
            Ok(s) => return Ok(s),
            Err(Error::InvalidInput(_)) => {}
            Err(e) => return Err(e),
        }
        let conditional_put = probe_conditional_put(inner.as_ref()).await?;
        let config = StoreConfig {
            chunk_pages: DEFAULT_CHUNK_PAGES,
            pack_target_bytes: DEFAULT_PACK_TARGET,
            zstd_level: 3,
            conditional_put,
            skew_margin_ms: 3_600_000,
            checkpoint_every: 32,
        };
        let key = keys::config();
        let mode = if conditional_put {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        match inner
            .put_opts(&key, config.encode().into(), PutOptions::from(mode))
            .await
        {
            // Another process initialised the store first: use its config.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(store_err(&key, e)),
        }
        Store::open(inner, label).await
    }

    /// The store's label (normally its URL).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The store configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The request counters.
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Write an immutable, uniquely named object. Content-addressed objects are identical
    /// whoever writes them, so an existing object is success.
    pub async fn put_immutable(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let len = bytes.len() as u64;
        let mode = if self.config.conditional_put {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters.put_bytes.fetch_add(len, Ordering::Relaxed);
        match self
            .inner
            .put_opts(key, PutPayload::from(bytes), PutOptions::from(mode))
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(store_err(key, e)),
        }
    }

    /// Fetch a whole object.
    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get(key).await.map_err(|e| store_err(key, e))?;
        let b = r.bytes().await.map_err(|e| store_err(key, e))?;
        self.counters
            .get_bytes
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Fetch byte ranges of one object (coalesced by the backend where it can).
    pub async fn get_ranges(&self, key: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.counters
            .gets
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let out = self
            .inner
            .get_ranges(key, ranges)
            .await
            .map_err(|e| store_err(key, e))?;
        let n: u64 = out.iter().map(|b| b.len() as u64).sum();
        self.counters.get_bytes.fetch_add(n, Ordering::Relaxed);
        for (r, b) in ranges.iter().zip(&out) {
            if b.len() as u64 != r.end - r.start {
                return Err(Error::LengthMismatch {
                    what: format!("range {}..{} of {key}", r.start, r.end),
                    expected: r.end - r.start,
                    actual: b.len() as u64,
                });
            }
        }
        Ok(out)
    }

    /// Metadata of one object.
    pub async fn head(&self, key: &Path) -> Result<ObjectMeta> {
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head(key).await.map_err(|e| store_err(key, e))
    }

    /// True if `key` exists.
    pub async fn exists(&self, key: &Path) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::MissingObject(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// List every object under `prefix` whose key is greater than `offset`.
    pub async fn list(&self, prefix: &str, offset: Option<&str>) -> Result<Vec<ObjectMeta>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let p = Path::from(prefix);
        let stream = match offset {
            Some(o) => self.inner.list_with_offset(Some(&p), &Path::from(o)),
            None => self.inner.list(Some(&p)),
        };
        stream.try_collect().await.map_err(|e| store_err(&p, e))
    }

    /// Write `bytes` under `key` unconditionally, replacing any object there. Only for the
    /// one mutable kind of object, a location table that gc rewrites; every version it may
    /// replace points at packs that exist, so the last writer winning is harmless.
    pub async fn put_overwrite(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .put_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.inner
            .put_opts(
                key,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Overwrite),
            )
            .await
            .map(|_| ())
            .map_err(|e| store_err(key, e))
    }

    /// Delete one object (a missing object is success).
    pub async fn delete(&self, key: &Path) -> Result<()> {
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        match self.inner.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(key, e)),
        }
    }
}

/// Create a scratch object twice with `If-None-Match: *`. A server that honours conditional
/// creates refuses the second; one that ignores them (Garage 2.5) accepts both.
async fn probe_conditional_put(inner: &dyn ObjectStore) -> Result<bool> {
    let key = keys::probe(&hex::encode(random_bytes::<8>()?));
    let create = || PutOptions::from(PutMode::Create);
    let first = inner
        .put_opts(&key, Bytes::from_static(b"1").into(), create())
        .await;
    let honoured = match first {
        Ok(_) => match inner
            .put_opts(&key, Bytes::from_static(b"2").into(), create())
            .await
        {
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => true,
            Ok(_) => false,
            Err(object_store::Error::NotImplemented { .. }) => false,
            Err(e) => return Err(store_err(&key, e)),
        },
        Err(object_store::Error::NotImplemented { .. }) => false,
        Err(e) => return Err(store_err(&key, e)),
    };
    // Best effort: a leftover probe object is harmless.
    let _ = inner.delete(&key).await;
    tracing::debug!(honoured, "conditional-put probe");
    Ok(honoured)
}

/// `N` random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| {
        Error::io(
            "reading the system random source",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(b)
}
