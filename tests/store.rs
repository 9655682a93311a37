//! Opening and initialising stores: the conditional-write probe and concurrent initialisers.

mod common;

use common::{Backend, TestStore};
use stigvault::store::Store;

/// The probe records what the server really does: Garage 2.5 ignores `If-None-Match: *`,
/// moto, local directories and memory honour it.
async fn probe_records_conditional_writes(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let expected = backend != Backend::Garage;
    assert_eq!(store.config().conditional_put, expected, "{backend:?}");
    // The config is persisted: a second handle reads the same answer without probing.
    let again = Store::open(ts.inner.clone(), &ts.label).await.unwrap();
    assert_eq!(again.config(), store.config());
    // No probe objects are left behind.
    assert!(again.list("probe", None).await.unwrap().is_empty());
}

/// Initialisers racing on an empty store agree on one config (it is deterministic).
async fn concurrent_initialisers_agree(backend: Backend) {
    let ts = TestStore::new(backend);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (inner, label) = (ts.inner.clone(), ts.label.clone());
            tokio::spawn(async move { Store::open_or_init(inner, &label).await.unwrap() })
        })
        .collect();
    let mut configs = Vec::new();
    for t in tasks {
        configs.push(t.await.unwrap().config().clone());
    }
    assert!(configs.windows(2).all(|w| w[0] == w[1]), "{configs:?}");
}

/// Opening an empty location without initialising says what to do.
async fn opening_an_empty_store_explains(backend: Backend) {
    let ts = TestStore::new(backend);
    let err = Store::open(ts.inner.clone(), &ts.label).await.unwrap_err();
    assert!(err.to_string().contains("push"), "{err}");
}

on_every_backend!(
    probe_records_conditional_writes,
    concurrent_initialisers_agree,
    opening_an_empty_store_explains,
);
