//! gc: the grace period, exact freeing, rewriting mostly-garbage packs, and gc racing pushes,
//! on every backend.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result as OsResult,
};

use common::{Backend, TestStore};
use stigvault::format::id::{PackId, SnapshotId};
use stigvault::format::recipe::Locations;
use stigvault::gc::{gc, GcOptions, GcReport};
use stigvault::index::{ClientState, Index};
use stigvault::pull::pull;
use stigvault::push::{push, PushReport};
use stigvault::retention::forget;
use stigvault::sign::{SecretKey, TrustSet};
use stigvault::store::{keys, Store};

/// Long enough for a test push on a loaded 2-core machine to finish inside it (the rule's
/// one assumption), short enough to wait out.
const GRACE: Duration = Duration::from_secs(4);
/// Past the grace period and the one-second timestamp slack, with a margin for clocks that
/// count in whole seconds.
const AFTER_GRACE: Duration = Duration::from_millis(6500);

fn gc_opts(rewrite_below: f64) -> GcOptions {
    GcOptions {
        grace: GRACE,
        dry_run: false,
        rewrite_below,
    }
}

async fn run_gc(store: &Store, opts: &GcOptions) -> GcReport {
    gc(store, &ClientState::ephemeral(), opts).await.unwrap()
}

/// Pack id → size of every pack in the store.
async fn packs(store: &Store) -> HashMap<PackId, u64> {
    store
        .list("packs", None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.location.filename().unwrap().parse().unwrap(), m.size))
        .collect()
}

async fn table(store: &Store, id: &str) -> Locations {
    let id = SnapshotId::from_hex(id).unwrap();
    Locations::decode(&store.get(&keys::locations(&id)).await.unwrap(), "t").unwrap()
}

async fn object_size(store: &Store, key: &Path) -> u64 {
    store.head(key).await.unwrap().size
}

async fn pull_ok(ts: &TestStore, store: &Store, id: &str, db_sha: &str, trust: &TrustSet) {
    let dest = ts.path(&format!("pulled-{}.db", &id[..12]));
    pull(
        store,
        &ClientState::ephemeral(),
        id,
        &common::pull_opts(&dest, trust.clone(), false),
    )
    .await
    .unwrap_or_else(|e| panic!("snapshot {id} does not pull: {e}"));
    assert_eq!(common::sha256_file(&dest), db_sha);
    std::fs::remove_file(&dest).unwrap();
}

/// gc deletes nothing before the grace period, then exactly the packs, root and location
/// table that only the forgotten snapshot used, and reports their bytes.
async fn frees_exactly_the_unreferenced_after_grace(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let (a_db, b_db) = (ts.path("a.db"), ts.path("b.db"));
    drop(common::make_db(&a_db, 1500));
    drop(common::make_db(&b_db, 1200));
    let a = push(&store, &state, &common::push_opts(&a_db, None))
        .await
        .unwrap();
    let b = push(&store, &state, &common::push_opts(&b_db, None))
        .await
        .unwrap();
    let a_packs: BTreeSet<PackId> = table(&store, &a.id).await.packs().into_iter().collect();
    let b_packs: BTreeSet<PackId> = table(&store, &b.id).await.packs().into_iter().collect();
    assert!(a_packs.is_disjoint(&b_packs), "two nodes share no packs");
    let before = packs(&store).await;
    let a_id = SnapshotId::from_hex(&a.id).unwrap();
    let a_meta = object_size(&store, &keys::snapshot(&a_id)).await
        + object_size(&store, &keys::locations(&a_id)).await;
    let expected_freed: u64 = a_packs.iter().map(|p| before[p]).sum::<u64>() + a_meta;

    // Nothing is garbage yet.
    let r0 = run_gc(&store, &gc_opts(0.0)).await;
    assert_eq!(
        (r0.packs_deleted, r0.packs_marked, r0.bytes_freed),
        (0, 0, 0)
    );
    assert!(r0.marker.is_none());

    let key = SecretKey::generate().unwrap();
    forget(&store, &state, std::slice::from_ref(&a.id), &key, false)
        .await
        .unwrap();

    // First run: marks, deletes nothing.
    let r1 = run_gc(&store, &gc_opts(0.0)).await;
    assert_eq!(r1.packs_deleted, 0);
    assert_eq!(r1.bytes_freed, 0);
    assert_eq!(r1.packs_marked, a_packs.len() as u64);
    assert_eq!(r1.snapshots_marked, 1);
    assert_eq!(packs(&store).await, before);
    // A dry run and a second run inside the grace period delete nothing either.
    let dry = gc(
        &store,
        &ClientState::ephemeral(),
        &GcOptions {
            dry_run: true,
            ..gc_opts(0.0)
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.packs_deleted, 0);
    let r2 = run_gc(&store, &gc_opts(0.0)).await;
    assert_eq!(r2.packs_deleted, 0);
    assert_eq!(r2.markers_waiting, 1);
    assert_eq!(packs(&store).await, before);

    tokio::time::sleep(AFTER_GRACE).await;
    // A dry run now reports what the real run then does.
    let dry = gc(
        &store,
        &ClientState::ephemeral(),
        &GcOptions {
            dry_run: true,
            ..gc_opts(0.0)
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.bytes_freed, expected_freed);
    assert_eq!(packs(&store).await, before);

    let r3 = run_gc(&store, &gc_opts(0.0)).await;
    assert_eq!(r3.packs_deleted, a_packs.len() as u64);
    assert_eq!(r3.snapshots_deleted, 1);
    assert_eq!(r3.bytes_freed, expected_freed);
    assert!(r3.markers_deleted >= 1);
    let after: BTreeSet<PackId> = packs(&store).await.into_keys().collect();
    assert_eq!(after, b_packs);
    assert!(!store.exists(&keys::snapshot(&a_id)).await.unwrap());
    assert!(!store.exists(&keys::locations(&a_id)).await.unwrap());
    // The forgotten snapshot is still known as forgotten; the live one pulls.
    let index = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    assert!(index.tombstone(&a.id).is_some());
    let trust = common::trust(&[&common::node_key(&b_db)]);
    pull_ok(&ts, &store, &b.id, &b.db_sha256, &trust).await;

    // Once everything is clean, gc finds nothing more to do.
    let r4 = run_gc(&store, &gc_opts(0.0)).await;
    assert_eq!((r4.packs_deleted, r4.packs_marked), (0, 0));
}

/// A pack that is mostly garbage is rewritten: the live snapshot's table moves to a new
/// pack, the old one is freed a grace period later, and the snapshot pulls throughout.
async fn rewrite_mostly_garbage_pack(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 2500);
    let old = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    // Rewrite every table page: indexes and FTS pages stay shared with the old snapshot.
    conn.execute_batch("UPDATE facts SET confidence = confidence + 1.0;")
        .unwrap();
    let new = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    drop(conn);
    let trust = common::trust(&[&common::node_key(&src)]);
    let old_packs: BTreeSet<PackId> = table(&store, &old.id).await.packs().into_iter().collect();
    let new_before = table(&store, &new.id).await;
    assert!(
        new_before.packs().iter().any(|p| old_packs.contains(p)),
        "the new snapshot shares chunks with the old"
    );

    forget(
        &store,
        &state,
        std::slice::from_ref(&old.id),
        &SecretKey::generate().unwrap(),
        false,
    )
    .await
    .unwrap();
    let total_before: u64 = packs(&store).await.values().sum();
    // Rewrite any pack that is not at least 95% live.
    let r1 = run_gc(&store, &gc_opts(0.95)).await;
    assert!(r1.packs_rewritten >= 1, "{r1:?}");
    assert_eq!(r1.tables_rewritten, 1);
    let new_after = table(&store, &new.id).await;
    assert_eq!(
        new_after.map.keys().collect::<BTreeSet<_>>(),
        new_before.map.keys().collect::<BTreeSet<_>>()
    );
    assert!(new_after.packs().iter().all(|p| !old_packs.contains(p)));
    pull_ok(&ts, &store, &new.id, &new.db_sha256, &trust).await;

    tokio::time::sleep(AFTER_GRACE).await;
    let r2 = run_gc(&store, &gc_opts(0.95)).await;
    assert!(r2.packs_deleted >= old_packs.len() as u64, "{r2:?}");
    let left = packs(&store).await;
    assert!(old_packs.iter().all(|p| !left.contains_key(p)));
    let total_after: u64 = left.values().sum();
    assert!(
        total_after < total_before,
        "{total_after} bytes of packs after, {total_before} before"
    );
    pull_ok(&ts, &store, &new.id, &new.db_sha256, &trust).await;
}

/// An object store whose index-entry writes take `delay`: a push through it has uploaded
/// its packs and tables but stays uncommitted for that long, which is the window in which
/// gc could take what the push relies on.
#[derive(Debug)]
struct SlowCommit {
    inner: Arc<dyn ObjectStore>,
    delay: Duration,
}

impl std::fmt::Display for SlowCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlowCommit({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for SlowCommit {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        if location.as_ref().starts_with("index/entries/") {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> OsResult<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> OsResult<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Pushes and gc run at the same time, round after round. Each push stays uncommitted for
/// a while after uploading, and its parent is forgotten while it runs, so gc marks both the
/// parent's packs and the push's own, and keeps collecting until the push lands. Every
/// snapshot that lands is fully pullable afterwards, even once every mark has aged past the
/// grace period and gc has deleted all it may.
async fn gc_racing_push(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let slow = Store::open(
        Arc::new(SlowCommit {
            inner: ts.inner.clone(),
            delay: Duration::from_millis(2500),
        }),
        &ts.label,
    )
    .await
    .unwrap();
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 1500);
    let key = SecretKey::generate().unwrap();
    let first = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let mut landed: Vec<PushReport> = vec![first];
    let (mut freed, mut deleted, mut runs) = (0u64, 0u64, 0u64);
    for round in 0..4 {
        common::insert_facts(&conn, 40);
        let parent = landed.last().unwrap().id.clone();
        let done = Arc::new(AtomicBool::new(false));
        let pusher = {
            let (slow, db, done) = (slow.clone(), src.clone(), done.clone());
            let state = ClientState::at(ts.path(&format!("push-state-{round}")));
            tokio::spawn(async move {
                let r = push(&slow, &state, &common::push_opts(&db, None)).await;
                done.store(true, Ordering::SeqCst);
                r
            })
        };
        // Forget the parent the push is reusing, then collect until the push has landed.
        let collector = {
            let (store, key, done) = (store.clone(), key.clone(), done.clone());
            let state = ClientState::at(ts.path(&format!("gc-state-{round}")));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                forget(&store, &state, &[parent], &key, false)
                    .await
                    .unwrap();
                let mut reports = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    reports.push(gc(&store, &state, &gc_opts(0.5)).await.unwrap());
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                reports.push(gc(&store, &state, &gc_opts(0.5)).await.unwrap());
                reports
            })
        };
        landed.push(pusher.await.unwrap().unwrap());
        for r in collector.await.unwrap() {
            freed += r.bytes_freed;
            deleted += r.packs_deleted;
            runs += 1;
        }
    }
    drop(conn);
    // Drain: everything marked is now past the grace period.
    for _ in 0..2 {
        tokio::time::sleep(AFTER_GRACE).await;
        let r = run_gc(&store, &gc_opts(0.5)).await;
        freed += r.bytes_freed;
        deleted += r.packs_deleted;
    }
    assert!(runs >= 8, "only {runs} gc runs raced the pushes");
    assert!(
        deleted > 0,
        "gc never deleted a pack: the race was not exercised"
    );
    assert!(freed > 0);

    let index = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    let live: Vec<String> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.clone())
        .collect();
    // Each round forgot the push's parent; the last push is live.
    assert_eq!(live, [landed.last().unwrap().id.clone()]);
    let trust = common::trust(&[&common::node_key(&src)]);
    pull_ok(
        &ts,
        &store,
        &live[0],
        &landed.last().unwrap().db_sha256,
        &trust,
    )
    .await;
    // Every pack a live table names exists.
    let present = packs(&store).await;
    for p in table(&store, &live[0]).await.packs() {
        assert!(present.contains_key(&p), "pack {p} was deleted");
    }
}

/// A push that starts after gc has marked a pack does not rely on it, even when a live
/// parent references it (a push that began before the mark may have re-referenced it).
async fn push_skips_marked_packs(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 1000);
    let first = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    let parent_packs = table(&store, &first.id).await.packs();
    // A marker naming the parent's packs, as a gc run that raced the parent's push leaves.
    let marker = stigvault::format::marker::GcMarker::new(0, &parent_packs, &[]);
    store
        .put_immutable(
            &Path::from(stigvault::format::marker::marker_key(0, "00000000000000aa")),
            marker.encode().into(),
        )
        .await
        .unwrap();
    common::insert_facts(&conn, 10);
    let second = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(
        second.new_chunks, second.chunks,
        "no chunk of a marked pack is reused"
    );
    let t = table(&store, &second.id).await;
    assert!(t.packs().iter().all(|p| !parent_packs.contains(p)));
    drop(conn);
}

/// Several snapshots stay live through the same race: the pushes of three nodes, gc running
/// throughout with forgetting of older snapshots, and every live snapshot pulls at the end.
async fn gc_racing_pushes_of_several_nodes(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let dbs: Vec<_> = (0..3)
        .map(|i| {
            let p = ts.path(&format!("n{i}.db"));
            (p.clone(), common::make_db(&p, 600 + 100 * i))
        })
        .collect();
    let key = SecretKey::generate().unwrap();
    let mut landed: Vec<PushReport> = Vec::new();
    for round in 0..4 {
        let pushers: Vec<_> = dbs
            .iter()
            .enumerate()
            .map(|(i, (db, conn))| {
                common::insert_facts(conn, 30);
                let (store, db) = (store.clone(), db.clone());
                let state = ClientState::at(ts.path(&format!("p{i}-{round}")));
                tokio::spawn(
                    async move { push(&store, &state, &common::push_opts(&db, None)).await },
                )
            })
            .collect();
        let collector = {
            let store = store.clone();
            let key = key.clone();
            let state = ClientState::at(ts.path(&format!("g-{round}")));
            tokio::spawn(async move {
                // Keep the newest snapshot per node (as prune --keep-last 1 does).
                let _ = stigvault::retention::prune(
                    &store,
                    &state,
                    &stigvault::retention::KeepPolicy {
                        last: 1,
                        ..Default::default()
                    },
                    None,
                    &key,
                    false,
                )
                .await
                .unwrap();
                for _ in 0..2 {
                    gc(&store, &state, &gc_opts(0.5)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
            })
        };
        for p in pushers {
            landed.push(p.await.unwrap().unwrap());
        }
        collector.await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::time::sleep(AFTER_GRACE).await;
    run_gc(&store, &gc_opts(0.5)).await;
    tokio::time::sleep(AFTER_GRACE).await;
    run_gc(&store, &gc_opts(0.5)).await;

    let index = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    let live: Vec<String> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.clone())
        .collect();
    assert!(live.len() >= 3, "{live:?}");
    let keys: Vec<_> = dbs.iter().map(|(p, _)| common::node_key(p)).collect();
    let trust = common::trust(&keys.iter().collect::<Vec<_>>());
    for r in &landed {
        if live.contains(&r.id) {
            pull_ok(&ts, &store, &r.id, &r.db_sha256, &trust).await;
        }
    }
}

on_every_backend!(
    frees_exactly_the_unreferenced_after_grace,
    rewrite_mostly_garbage_pack,
    gc_racing_push,
    push_skips_marked_packs,
    gc_racing_pushes_of_several_nodes,
);
