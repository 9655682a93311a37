//! pull: resolve id → verify index entry → verify manifest signature against the trust set →
//! fetch packs and verify chunks → verify SHA-256 → integrity check → atomic install.
//!
//! Nothing touches the destination until every check has passed; on any failure the staging
//! file is removed and the destination is as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::index::Entry;
use crate::format::manifest::{Manifest, CURSOR_ARTIFACT, DB_ARTIFACT};
use crate::format::recipe::{Locations, Recipe};
use crate::format::snapshot::SnapshotRoot;
use crate::index::{ClientState, Index};
use crate::install;
use crate::reassemble::reassemble;
use crate::sign::{PublicKey, TrustSet};
use crate::sqlite;
use crate::store::{keys, RequestStats, Store};

/// How a snapshot's signer was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustOutcome {
    /// The signer is in the trust set.
    Trusted,
    /// The signer is not trusted, and the caller waived the check.
    Unverified,
}

/// A snapshot whose index entry, root, manifest signature and metadata have been verified.
/// Its data has not been read yet.
#[derive(Debug, Clone)]
pub struct VerifiedSnapshot {
    /// The snapshot id.
    pub id: SnapshotId,
    /// Its index entry.
    pub entry: Entry,
    /// Its root object.
    pub root: SnapshotRoot,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The database recipe.
    pub recipe: Arc<Recipe>,
    /// Where its chunks live in this store.
    pub locations: Arc<Locations>,
    /// How its signer was accepted.
    pub trust: TrustOutcome,
}

/// Resolve `query` in the verified index and verify everything but the data: the root's
/// hash, the manifest's signature and trust, the cursor artifact, and the consistency of
/// entry, root, manifest and recipe.
pub async fn open_snapshot(
    store: &Store,
    index: &Index,
    query: &str,
    trust: &TrustSet,
    force_unverified: bool,
) -> Result<VerifiedSnapshot> {
    let (id, entry) = index.resolve(query)?;
    open_entry(store, id, entry.clone(), Some((trust, force_unverified))).await
}

/// [`open_snapshot`] for an index entry already in hand, with every check but the trust
/// decision: the manifest's own signature must verify, but its signer need not be trusted.
/// For copy and verify, which move or check bytes and leave trust to whoever pulls; the
/// outcome is reported as [`TrustOutcome::Unverified`].
pub async fn open_snapshot_untrusted(store: &Store, entry: &Entry) -> Result<VerifiedSnapshot> {
    let id = SnapshotId::from_hex(&entry.body.snapshot)?;
    open_entry(store, id, entry.clone(), None).await
}

async fn open_entry(
    store: &Store,
    id: SnapshotId,
    entry: Entry,
    trust: Option<(&TrustSet, bool)>,
) -> Result<VerifiedSnapshot> {
    let root_bytes = store.get(&keys::snapshot(&id)).await?;
    let root = SnapshotRoot::decode_verified(&root_bytes, &id)?;
    let manifest = Manifest::parse(root.manifest.as_bytes())?;

    // The signature must verify for the declared signer, and that signer must be trusted.
    manifest.verify_self_signature()?;
    let trust_outcome = if let Some((trust, force_unverified)) = trust {
        check_trust(&id, &manifest, trust, force_unverified)?
    } else {
        TrustOutcome::Unverified
    };
    finish_open(store, id, entry, root, manifest, trust_outcome).await
}

fn check_trust(
    id: &SnapshotId,
    manifest: &Manifest,
    trust: &TrustSet,
    force_unverified: bool,
) -> Result<TrustOutcome> {
    Ok(if trust.contains(manifest.signer()) {
        TrustOutcome::Trusted
    } else if force_unverified {
        tracing::warn!(
            "SECURITY WARNING: snapshot {id} is signed by {}, which is not trusted; \
             --force-unverified waives that check (integrity checks still run)",
            manifest.signer()
        );
        TrustOutcome::Unverified
    } else {
        return Err(Error::UntrustedSigner {
            snapshot: id.to_hex(),
            signer: manifest.signer().to_b64url(),
        });
    })
}

async fn finish_open(
    store: &Store,
    id: SnapshotId,
    entry: Entry,
    root: SnapshotRoot,
    manifest: Manifest,
    trust_outcome: TrustOutcome,
) -> Result<VerifiedSnapshot> {
    let what = format!("snapshot {id}");
    let declared_db = manifest
        .artifact_sha256(DB_ARTIFACT)
        .ok_or_else(|| Error::malformed(&what, "manifest lacks the database artifact"))?;
    let declared_cursor = manifest
        .artifact_sha256(CURSOR_ARTIFACT)
        .ok_or_else(|| Error::malformed(&what, "manifest lacks the cursor artifact"))?;
    if root.db_sha256()? != declared_db || entry.body.db_sha256 != root.db.sha256 {
        return Err(Error::HashMismatch {
            what: format!("{what}: database SHA-256 in root, manifest and index entry"),
            expected: hex::encode(declared_db),
            actual: root.db.sha256.clone(),
        });
    }
    let cursor_sha: [u8; 32] = Sha256::digest(root.cursor.as_bytes()).into();
    if cursor_sha != declared_cursor {
        return Err(Error::HashMismatch {
            what: format!("{what}: {CURSOR_ARTIFACT}"),
            expected: hex::encode(declared_cursor),
            actual: hex::encode(cursor_sha),
        });
    }

    let recipe_id = root.recipe_id()?;
    let recipe_bytes = store.get(&keys::recipe(&recipe_id)).await?;
    let actual = crate::format::id::RecipeId::of(&recipe_bytes);
    if actual != recipe_id {
        return Err(Error::HashMismatch {
            what: format!("recipe of {what}"),
            expected: recipe_id.to_hex(),
            actual: actual.to_hex(),
        });
    }
    let recipe = Recipe::decode(&recipe_bytes, &format!("recipe {recipe_id}"))?;
    if recipe.db_bytes != root.db.bytes || recipe.chunk_size != root.db.chunk_size {
        return Err(Error::malformed(
            &what,
            "recipe disagrees with the root on size or chunking",
        ));
    }
    let loc_bytes = store.get(&keys::locations(&id)).await?;
    let locations = Locations::decode(&loc_bytes, &format!("locations of {id}"))?;
    Ok(VerifiedSnapshot {
        id,
        entry,
        root,
        manifest,
        recipe: Arc::new(recipe),
        locations: Arc::new(locations),
        trust: trust_outcome,
    })
}

/// What to pull, and whom to trust.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Destination database path.
    pub db: PathBuf,
    /// Keys trusted to sign snapshots (the destination's own federation key is added).
    pub trust: TrustSet,
    /// Waive only the trust check, never the integrity checks.
    pub force_unverified: bool,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// What a pull did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    /// The snapshot id.
    pub id: String,
    /// Where it was installed.
    pub db: PathBuf,
    /// Bytes installed.
    pub db_bytes: u64,
    /// The signer.
    pub signer_pubkey: String,
    /// How the signer was accepted.
    pub trust: TrustOutcome,
    /// Requests made to the store.
    pub requests: RequestStats,
}

/// Fetch, verify and atomically install a snapshot.
pub async fn pull(
    store: &Store,
    state: &ClientState,
    query: &str,
    opts: &PullOptions,
) -> Result<PullReport> {
    let start = store.stats();
    let started = std::time::Instant::now();
    let mut trust = opts.trust.clone();
    if let Some(own) = destination_key(&opts.db)? {
        trust.insert(own);
    }
    let index = Index::load(store, state).await?;
    let snap = open_snapshot(store, &index, query, &trust, opts.force_unverified).await?;

    let staging = install::Staging::beside(&opts.db)?;
    let staged_path = staging.path().to_path_buf();
    let mut file = staging
        .file()
        .try_clone()
        .map_err(|e| Error::io(format!("opening {}", staged_path.display()), e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    write_verified_db(store, &snap, &mut writer, opts.progress, "pull").await?;
    std::io::Write::flush(&mut writer)
        .map_err(|e| Error::io(format!("writing {}", staged_path.display()), e))?;
    drop(writer);
    tracing::debug!(elapsed = ?started.elapsed(), peak_rss_kib = peak_rss_kib(), "reassembled and verified chunks");
    let dest = opts.db.clone();
    tokio::task::spawn_blocking(move || {
        sqlite::integrity_check(staging.path())?;
        tracing::debug!(elapsed = ?started.elapsed(), peak_rss_kib = peak_rss_kib(), "integrity check passed");
        install::install(staging, &dest)
    })
    .await??;

    Ok(PullReport {
        id: snap.id.to_hex(),
        db: opts.db.clone(),
        db_bytes: snap.recipe.db_bytes,
        signer_pubkey: snap.manifest.signer().to_b64url(),
        trust: snap.trust,
        requests: store.stats().since(&start),
    })
}

/// Stream the database artifact of `snap` into `out`, verifying every chunk as it arrives
/// and the SHA-256 of the whole against the manifest; the one path by which pull and export
/// read a database out of the store.
pub async fn write_verified_db(
    store: &Store,
    snap: &VerifiedSnapshot,
    out: &mut (impl std::io::Write + Send),
    progress: bool,
    label: &str,
) -> Result<()> {
    let bar = crate::progress::bytes_bar(progress, snap.recipe.db_bytes, label);
    let sha = reassemble(
        store,
        snap.recipe.clone(),
        snap.locations.clone(),
        out,
        &|n| bar.inc(n),
    )
    .await?;
    bar.finish_and_clear();
    let declared = snap.root.db_sha256()?;
    if sha != declared {
        return Err(Error::HashMismatch {
            what: format!("{DB_ARTIFACT} of snapshot {}", snap.id),
            expected: hex::encode(declared),
            actual: hex::encode(sha),
        });
    }
    Ok(())
}

/// The destination database's own federation key, when it exists and has one.
pub fn destination_key(db: &Path) -> Result<Option<PublicKey>> {
    if !db.exists() {
        return Ok(None);
    }
    match sqlite::read_federation_pubkey(db)? {
        Some(k) => Ok(Some(PublicKey::from_b64url(
            &k,
            &format!("federation_pubkey of {}", db.display()),
        )?)),
        None => Ok(None),
    }
}

/// Peak resident set size of this process in KiB (Linux), for debug logs.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
