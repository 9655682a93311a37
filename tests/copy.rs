//! copy: round trips between two stores on every backend, idempotent re-copies, resuming an
//! interrupted copy, and local→S3→S3→local across both servers with separate credentials.

mod common;

use std::sync::Arc;

use common::{Backend, TestStore};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use stigvault::copy::{copy, destination_with_env, CopyOptions, CopyStatus, Selection};
use stigvault::format::config::StoreConfig;
use stigvault::index::{ClientState, Index};
use stigvault::pull::{pull, PullOptions};
use stigvault::push::{push, PushOptions, PushReport};
use stigvault::sign::SecretKey;
use stigvault::store::{self, Store};
use stigvault::Error;

fn push_opts(db: &std::path::Path) -> PushOptions {
    PushOptions {
        db: db.to_path_buf(),
        sign_with: None,
        tmp_dir: None,
        progress: false,
    }
}

fn copier() -> SecretKey {
    SecretKey::from_seed(&[42u8; 32])
}

/// A second, empty store for `backend`: the second bucket of the same S3 server, or a fresh
/// store of the same kind.
fn second_store(ts: &TestStore) -> (Arc<dyn ObjectStore>, String) {
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    match ts.backend {
        Backend::Memory => (
            Arc::new(object_store::memory::InMemory::new()),
            format!("memory://{prefix}"),
        ),
        Backend::Local => {
            let p = ts.path("dst-store");
            (
                store::local_store(&p).unwrap(),
                format!("file://{}", p.display()),
            )
        }
        Backend::Garage => (
            common::s3_store("GARAGE", "BUCKET2", &prefix),
            format!("garage2/{prefix}"),
        ),
        Backend::Moto => (
            common::s3_store("MOTO", "BUCKET2", &prefix),
            format!("moto2/{prefix}"),
        ),
    }
}

async fn root_bytes(store: &Store, id: &str) -> bytes::Bytes {
    let id = stigvault::format::id::SnapshotId::from_hex(id).unwrap();
    store
        .get(&stigvault::store::keys::snapshot(&id))
        .await
        .unwrap()
}

/// Pull `id` from `store` and check it is byte-identical to what was pushed.
async fn pull_and_check(store: &Store, state: &ClientState, pushed: &PushReport, dir: &TestStore) {
    let dest = dir.path(&format!("pulled-{}.db", &pushed.id[..8]));
    let _ = std::fs::remove_file(&dest);
    let report = pull(
        store,
        state,
        &pushed.id,
        &PullOptions {
            db: dest.clone(),
            trust: [pushed.signer_pubkey.as_str()]
                .iter()
                .map(|k| stigvault::sign::PublicKey::from_b64url(k, "test").unwrap())
                .collect(),
            force_unverified: false,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.id, pushed.id);
    assert_eq!(common::sha256_file(&dest), pushed.db_sha256);
}

/// Two snapshots copied to a second store keep their ids, manifests and signatures, come
/// back byte for byte, and the second reuses the first's chunks. A second copy transfers
/// nothing; a later snapshot transfers only its new chunks.
async fn round_trip_and_idempotent_recopy(backend: Backend) {
    let ts = TestStore::new(backend);
    let src = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 3000);
    let a = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();
    common::insert_facts(&conn, 30);
    let b = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();

    let (inner, label) = second_store(&ts);
    let dst = Store::open_or_init(inner.clone(), &label).await.unwrap();
    let dst_state = ClientState::at(ts.path("dst-state"));
    let opts = CopyOptions::new(copier());
    let first = copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!(first.copied, 2);
    assert_eq!(first.snapshots[0].id, a.id);
    let (sa, sb) = (&first.snapshots[0], &first.snapshots[1]);
    assert_eq!(sa.copied_chunks, sa.chunks);
    // Exactly the chunks the push of `b` found new are transferred.
    assert_eq!(sb.copied_chunks, b.new_chunks, "{sb:?}");
    assert!(sb.reused_chunks > 0);
    assert_eq!(sb.copied_chunks + sb.reused_chunks, sb.chunks);
    assert_eq!(sa.verified_bytes, a.db_bytes);

    // Same ids and byte-identical roots (manifest and signature unchanged); the entries are
    // signed by the copier.
    let index = Index::load(&dst, &dst_state).await.unwrap();
    let ids: Vec<&str> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.as_str())
        .collect();
    assert_eq!(ids, vec![a.id.as_str(), b.id.as_str()]);
    assert!(index
        .snapshots()
        .iter()
        .all(|e| e.body.signer_pubkey == copier().public().to_b64url()));
    for id in [&a.id, &b.id] {
        assert_eq!(root_bytes(&src, id).await, root_bytes(&dst, id).await);
    }
    pull_and_check(&dst, &dst_state, &a, &ts).await;
    pull_and_check(&dst, &dst_state, &b, &ts).await;

    // A second copy of the same snapshots moves no data and writes nothing.
    let dst = Store::open(inner.clone(), &label).await.unwrap();
    let again = copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!((again.copied, again.present), (0, 2));
    assert!(again
        .snapshots
        .iter()
        .all(|s| s.status == CopyStatus::Present));
    assert_eq!(again.chunk_bytes, 0);
    assert_eq!(again.destination_requests.puts, 0);
    assert_eq!(again.destination_requests.put_bytes, 0);
    // The source is read only for its index and the snapshots' metadata, never for packs.
    assert!(
        again.source_requests.get_bytes < 1 << 20,
        "{:?}",
        again.source_requests
    );

    // A new snapshot, copied by id in a new run, reuses the destination's latest snapshot of
    // its node.
    common::insert_facts(&conn, 30);
    let c = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();
    let third = copy(
        &src,
        &ts.state(),
        &dst,
        &dst_state,
        &Selection::Ids(vec![c.id[..10].to_string()]),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(third.copied, 1);
    let sc = &third.snapshots[0];
    assert_eq!(sc.copied_chunks, c.new_chunks, "{sc:?}");
    pull_and_check(&dst, &dst_state, &c, &ts).await;
    drop(conn);
}

/// A store config with small packs, so a small database fills several of them.
async fn small_pack_store(inner: &Arc<dyn ObjectStore>, label: &str) -> Store {
    let cfg = StoreConfig {
        chunk_pages: 1,
        pack_target_bytes: 32 << 10,
        zstd_level: 3,
        conditional_put: false,
        skew_margin_ms: 3_600_000,
        checkpoint_every: 32,
    };
    inner
        .put(&Path::from("config"), cfg.encode().into())
        .await
        .unwrap();
    Store::open(inner.clone(), label).await.unwrap()
}

/// A copy stopped after some packs leaves no visible snapshot; re-running it transfers only
/// the chunks no finished pack holds, and cleans up its journal.
async fn interrupted_copy_resumes(backend: Backend) {
    let ts = TestStore::new(backend);
    let src = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 3000);
    let a = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();

    let (inner, label) = second_store(&ts);
    let dst = small_pack_store(&inner, &label).await;
    let dst_state = ClientState::at(ts.path("dst-state"));
    let mut opts = CopyOptions::new(copier());
    opts.fail_after_packs = Some(3);
    let err = copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    // Nothing is visible: the entry is the last write.
    let index = Index::load(&dst, &dst_state).await.unwrap();
    assert!(index.snapshots().is_empty());
    assert_eq!(dst.list("copies", None).await.unwrap().len(), 3);
    let partial_puts = dst.stats().puts;

    opts.fail_after_packs = None;
    let dst = Store::open(inner.clone(), &label).await.unwrap();
    let resumed = copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap();
    let s = &resumed.snapshots[0];
    assert_eq!(s.status, CopyStatus::Copied);
    assert!(s.resumed_chunks > 0, "{s:?}");
    assert_eq!(s.resumed_chunks, s.reused_chunks);
    assert_eq!(s.copied_chunks + s.resumed_chunks, s.chunks);
    assert!(s.packs >= 1);
    assert!(
        partial_puts >= 6,
        "3 packs and 3 journal objects: {partial_puts}"
    );
    assert!(dst.list("copies", None).await.unwrap().is_empty());
    pull_and_check(&dst, &dst_state, &a, &ts).await;
    drop(conn);
}

on_every_backend!(round_trip_and_idempotent_recopy, interrupted_copy_resumes);

fn aws_vars(server: &str, bucket: &str) -> (String, Vec<(String, String)>) {
    let v = |k: &str| std::env::var(format!("STIGVAULT_TEST_{server}_{k}")).unwrap();
    let vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), v("ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY".into(), v("SECRET_ACCESS_KEY")),
        ("AWS_REGION".into(), v("REGION")),
        ("AWS_ENDPOINT".into(), v("ENDPOINT")),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
    ];
    let url = format!("s3://{}/t-{}", v(bucket), uuid::Uuid::new_v4().simple());
    (url, vars)
}

/// local → Garage → moto → local, each S3 store with its own credentials given as the
/// destination's `AWS_*` settings: the snapshot arrives intact at every hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_to_garage_to_moto_to_local() {
    let ts = TestStore::new(Backend::Local);
    let local = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 2000);
    let a = push(&local, &ts.state(), &push_opts(&db)).await.unwrap();
    let state = ClientState::at(ts.path("copy-state"));
    let opts = CopyOptions::new(copier());

    let (garage_url, garage_env) = aws_vars("GARAGE", "BUCKET2");
    let (inner, label) = destination_with_env(&garage_url, &garage_env).unwrap();
    assert!(label.contains("127.0.0.1"), "{label}");
    let garage = Store::open_or_init(inner, &label).await.unwrap();
    let r = copy(&local, &ts.state(), &garage, &state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!(r.copied, 1);

    let (moto_url, moto_env) = aws_vars("MOTO", "BUCKET2");
    let (inner, label) = destination_with_env(&moto_url, &moto_env).unwrap();
    let moto = Store::open_or_init(inner, &label).await.unwrap();
    let r = copy(&garage, &state, &moto, &state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!(r.copied, 1);
    assert!(r.source_requests.get_bytes > 0 && r.destination_requests.put_bytes > 0);

    let back_dir = ts.path("back");
    let (inner, label) = destination_with_env(back_dir.to_str().unwrap(), &[]).unwrap();
    let back = Store::open_or_init(inner, &label).await.unwrap();
    let r = copy(&moto, &state, &back, &state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!(r.copied, 1);
    assert_eq!(
        root_bytes(&local, &a.id).await,
        root_bytes(&back, &a.id).await
    );
    pull_and_check(&back, &state, &a, &ts).await;
    drop(conn);
}

/// A snapshot forgotten at the destination is not copied back there: a new entry would stay
/// hidden behind the tombstone anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_at_destination_is_not_copied() {
    let ts = TestStore::new(Backend::Memory);
    let src = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 500);
    let a = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();
    let (inner, label) = second_store(&ts);
    let dst = Store::open_or_init(inner.clone(), &label).await.unwrap();
    let dst_state = ClientState::at(ts.path("dst-state"));
    let opts = CopyOptions::new(copier());
    copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap();
    stigvault::retention::forget(
        &dst,
        &dst_state,
        std::slice::from_ref(&a.id),
        &copier(),
        false,
    )
    .await
    .unwrap();
    let dst = Store::open(inner, &label).await.unwrap();
    let r = copy(&src, &ts.state(), &dst, &dst_state, &Selection::All, &opts)
        .await
        .unwrap();
    assert_eq!(r.snapshots[0].status, CopyStatus::ForgottenAtDestination);
    assert_eq!((r.copied, r.destination_requests.puts), (0, 0));
    drop(conn);
}

/// A copy that wrote the snapshot's objects but died before its index entry leaves the
/// destination's location table behind; a re-run reuses it, transfers no chunk, verifies and
/// records the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_objects_before_entry() {
    let ts = TestStore::new(Backend::Local);
    let src = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 800);
    let a = push(&src, &ts.state(), &push_opts(&db)).await.unwrap();
    let (inner, label) = second_store(&ts);
    let dst = Store::open_or_init(inner.clone(), &label).await.unwrap();
    let opts = CopyOptions::new(copier());
    copy(
        &src,
        &ts.state(),
        &dst,
        &ClientState::ephemeral(),
        &Selection::All,
        &opts,
    )
    .await
    .unwrap();
    // Undo only the commit point: the entry (a fresh client has never seen it).
    let entries = dst.list("index/entries", None).await.unwrap();
    assert_eq!(entries.len(), 1);
    inner.delete(&entries[0].location).await.unwrap();

    let dst = Store::open(inner, &label).await.unwrap();
    let state = ClientState::at(ts.path("dst-state"));
    let r = copy(&src, &ts.state(), &dst, &state, &Selection::All, &opts)
        .await
        .unwrap();
    let s = &r.snapshots[0];
    assert_eq!(
        (s.status, s.copied_chunks, s.packs),
        (CopyStatus::Copied, 0, 0)
    );
    assert_eq!(s.reused_chunks, s.chunks);
    assert_eq!(r.chunk_bytes, 0);
    pull_and_check(&dst, &state, &a, &ts).await;
    drop(conn);
}
