//! pull: resolution by prefix, trust, and refusal of damaged data, on every backend.

mod common;

use common::{Backend, TestStore};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use stigvault::format::index::Entry;
use stigvault::index::Index;
use stigvault::pull::{pull, TrustOutcome};
use stigvault::push::push;
use stigvault::sign::{SecretKey, TrustSet};
use stigvault::Error;

/// A unique prefix resolves; an ambiguous one lists every candidate; a short one is refused.
async fn prefix_resolution(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    drop(common::make_db(&src, 300));
    let r = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let key = common::node_key(&src);
    let dest = ts.path("dest.db");
    pull(
        &store,
        &ts.state(),
        &r.id[..8],
        &common::pull_opts(&dest, common::trust(&[&key]), false),
    )
    .await
    .unwrap();
    assert_eq!(common::sha256_file(&dest), r.db_sha256);

    // Two index entries whose snapshot ids share a 10-character prefix. Ids are hashes, so
    // they are written directly: resolution happens before any snapshot data is read.
    let signer = SecretKey::generate().unwrap();
    let mut index = Index::load(&store, &ts.state()).await.unwrap();
    for tail in ["0", "1"] {
        let body = common::entry_body(&signer, format!("abcdef0123{}", tail.repeat(54)));
        index
            .append(&store, &ts.state(), body, &signer)
            .await
            .unwrap();
    }
    let err = pull(
        &store,
        &ts.state(),
        "abcdef",
        &common::pull_opts(&dest, TrustSet::new(), false),
    )
    .await
    .unwrap_err();
    match err {
        Error::AmbiguousPrefix { candidates, .. } => {
            assert_eq!(candidates.len(), 2);
            assert!(candidates.iter().all(|c| c.starts_with("abcdef0123")));
        }
        other => panic!("expected an ambiguous prefix, got {other}"),
    }
    let short = pull(
        &store,
        &ts.state(),
        "abcde",
        &common::pull_opts(&dest, TrustSet::new(), false),
    )
    .await;
    assert!(matches!(short, Err(Error::InvalidInput(_))));
    let none = pull(
        &store,
        &ts.state(),
        "fedcba98",
        &common::pull_opts(&dest, TrustSet::new(), false),
    )
    .await;
    assert!(matches!(none, Err(Error::SnapshotNotFound(_))));
}

/// A signer outside the trust set is refused with its key in the message; `--trust`, the
/// destination's own key, or `--force-unverified` each let it through.
async fn untrusted_signer_refused(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    drop(common::make_db(&src, 300));
    let secondary = SecretKey::generate().unwrap();
    let r = push(
        &store,
        &ts.state(),
        &common::push_opts(&src, Some(secondary.clone())),
    )
    .await
    .unwrap();
    assert_eq!(r.signer_pubkey, secondary.public().to_b64url());

    let dest = ts.path("dest.db");
    // The node's own key is not the signer here, so trusting it does not help.
    let node = common::node_key(&src);
    let err = pull(
        &store,
        &ts.state(),
        &r.id,
        &common::pull_opts(&dest, common::trust(&[&node]), false),
    )
    .await
    .unwrap_err();
    match &err {
        Error::UntrustedSigner { signer, .. } => assert_eq!(signer, &r.signer_pubkey),
        other => panic!("expected an untrusted signer, got {other}"),
    }
    assert!(err.to_string().contains("--trust"));
    assert!(!dest.exists(), "a refused pull wrote the destination");

    let ok = pull(
        &store,
        &ts.state(),
        &r.id,
        &common::pull_opts(&dest, common::trust(&[&secondary.public()]), false),
    )
    .await
    .unwrap();
    assert_eq!(ok.trust, TrustOutcome::Trusted);

    // A plain push is signed by the node key; the destination (a copy of the source, holding
    // that key in node_meta) trusts it without flags.
    let r2 = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let own = ts.path("own.db");
    std::fs::copy(&dest, &own).unwrap();
    let ok = pull(
        &store,
        &ts.state(),
        &r2.id,
        &common::pull_opts(&own, TrustSet::new(), false),
    )
    .await
    .unwrap();
    assert_eq!(ok.trust, TrustOutcome::Trusted);

    let forced = pull(
        &store,
        &ts.state(),
        &r.id,
        &common::pull_opts(&ts.path("f.db"), TrustSet::new(), true),
    )
    .await
    .unwrap();
    assert_eq!(forced.trust, TrustOutcome::Unverified);
}

/// One flipped byte in a pack fails the pull, and the existing destination is untouched.
async fn tampered_pack_byte_leaves_destination_untouched(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    drop(common::make_db(&src, 2000));
    let r = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let key = common::node_key(&src);

    // Flip one byte in the middle of the (only) pack.
    let packs = store.list("packs", None).await.unwrap();
    assert_eq!(packs.len(), 1);
    let loc = Path::from(packs[0].location.to_string());
    let mut bytes = ts
        .inner
        .get(&loc)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    ts.inner.put(&loc, bytes.into()).await.unwrap();

    let dest = ts.path("dest.db");
    drop(common::make_db(&dest, 10));
    let before = std::fs::read(&dest).unwrap();
    let err = pull(
        &store,
        &ts.state(),
        &r.id,
        &common::pull_opts(&dest, common::trust(&[&key]), false),
    )
    .await
    .unwrap_err();
    assert!(err.is_verification_failure(), "unexpected error: {err}");
    assert_eq!(std::fs::read(&dest).unwrap(), before, "destination changed");
    let leftovers: Vec<_> = std::fs::read_dir(ts.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("stigvault"))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
}

/// A snapshot root swapped for another's bytes is refused: the id is the root's hash.
async fn swapped_root_is_refused(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 200);
    let a = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    common::insert_facts(&conn, 10);
    let b = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let pa = Path::from(format!("snapshots/{}", a.id));
    let pb = Path::from(format!("snapshots/{}", b.id));
    let rb = ts.inner.get(&pb).await.unwrap().bytes().await.unwrap();
    ts.inner.put(&pa, rb.into()).await.unwrap();
    let key = common::node_key(&src);
    let err = pull(
        &store,
        &ts.state(),
        &a.id,
        &common::pull_opts(&ts.path("d.db"), common::trust(&[&key]), false),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    // Entries are still verifiable objects of their own.
    let _ = Entry::verify;
}

on_every_backend!(
    prefix_resolution,
    untrusted_signer_refused,
    tampered_pack_byte_leaves_destination_untouched,
    swapped_root_is_refused,
);
