//! The signed index: tampering, rollback, and the bounded cost of listing, on every backend.

mod common;

use common::{Backend, TestStore};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use stigvault::index::{ClientState, Index};
use stigvault::push::push;
use stigvault::sign::SecretKey;
use stigvault::Error;

fn body(signer: &SecretKey, n: usize) -> stigvault::format::index::EntryBody {
    common::entry_body(signer, format!("{n:064x}"))
}

async fn entry_keys(ts: &TestStore) -> Vec<String> {
    let store = ts.open().await;
    let mut keys: Vec<String> = store
        .list("index/entries", None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    keys.sort();
    keys
}

/// Deleting the newest entry is a rollback: a client that saw it refuses the store; deleting
/// an entry a later one names is caught by anyone.
async fn removed_entries_are_detected(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let signer = SecretKey::generate().unwrap();
    let mut index = Index::load(&store, &ts.state()).await.unwrap();
    for n in 0..3 {
        index
            .append(&store, &ts.state(), body(&signer, n), &signer)
            .await
            .unwrap();
    }
    let keys = entry_keys(&ts).await;
    assert_eq!(keys.len(), 3);

    // Roll back the newest entry.
    ts.inner
        .delete(&Path::from(keys[2].as_str()))
        .await
        .unwrap();
    let err = Index::load(&store, &ts.state()).await.unwrap_err();
    assert!(matches!(err, Error::IndexTampered(_)), "{err}");
    assert!(err.to_string().contains(&keys[2]));
    // A client that never saw it cannot know (trust on first use), and sees two entries.
    let fresh = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    assert_eq!(fresh.len(), 2);

    // Remove an entry that a later one names: caught even without remembered state.
    ts.inner
        .delete(&Path::from(keys[0].as_str()))
        .await
        .unwrap();
    let err = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IndexTampered(_)), "{err}");
}

/// An altered or re-signed entry is refused.
async fn altered_entry_is_detected(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let signer = SecretKey::generate().unwrap();
    let mut index = Index::load(&store, &ts.state()).await.unwrap();
    index
        .append(&store, &ts.state(), body(&signer, 1), &signer)
        .await
        .unwrap();
    let key = Path::from(entry_keys(&ts).await[0].as_str());
    let mut raw = ts
        .inner
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = raw.len() - 70; // inside the JSON body
    raw[at] ^= 0x01;
    ts.inner.put(&key, raw.into()).await.unwrap();
    let err = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IndexTampered(_)), "{err}");
}

/// With checkpoints, loading an index of many entries costs a bounded number of requests.
async fn listing_cost_is_bounded(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let signer = SecretKey::generate().unwrap();
    let mut index = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    let n = 100;
    for i in 0..n {
        index
            .append(&store, &ClientState::ephemeral(), body(&signer, i), &signer)
            .await
            .unwrap();
    }
    let every = store.config().checkpoint_every as u64;
    let fresh = ts.open().await;
    let before = fresh.stats();
    let loaded = Index::load(&fresh, &ClientState::ephemeral())
        .await
        .unwrap();
    let cost = fresh.stats().since(&before);
    assert_eq!(loaded.len(), n);
    assert_eq!(cost.lists, 2, "{cost:?}");
    // One checkpoint, plus at most the entries not yet covered by one.
    assert!(cost.gets <= 1 + every, "{cost:?}");
}

/// A real push's entry is found and its snapshot listed.
async fn push_records_one_entry(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    drop(common::make_db(&src, 100));
    let opts = common::push_opts(&src, None);
    let r = push(&store, &ts.state(), &opts).await.unwrap();
    let index = Index::load(&store, &ts.state()).await.unwrap();
    let snaps = index.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].body.snapshot, r.id);
    assert_eq!(snaps[0].body.signer_pubkey, r.signer_pubkey);
    assert_eq!(snaps[0].body.new_bytes, r.new_bytes);
}

on_every_backend!(
    removed_entries_are_detected,
    altered_entry_is_detected,
    listing_cost_is_bounded,
    push_records_one_entry,
);
