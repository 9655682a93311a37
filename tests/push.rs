//! push: round trips, dedup and concurrency, on every backend.

mod common;

use std::collections::HashSet;

use common::{Backend, TestStore};
use stigvault::index::Index;
use stigvault::pull::pull;
use stigvault::push::{push, PushReport};

/// A WAL-mode database with frames not yet checkpointed, written to during the push, comes
/// back whole, consistent and verified.
async fn round_trip_wal_with_concurrent_writer(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 3000);
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
        .unwrap();
    common::insert_facts(&conn, 500); // stays in the WAL
    assert!(std::fs::metadata(ts.path("src.db-wal")).unwrap().len() > 0);
    let before = common::count_facts(&src);

    let writer = common::Writer::start(&src);
    let report = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    let batches = writer.stop();
    assert!(batches > 0, "the writer committed nothing during the push");

    let dest = ts.path("dest.db");
    let key = common::node_key(&src);
    let pulled = pull(
        &store,
        &ts.state(),
        &report.id,
        &common::pull_opts(&dest, common::trust(&[&key]), false),
    )
    .await
    .unwrap();
    assert_eq!(pulled.id, report.id);
    assert_eq!(common::sha256_file(&dest), report.db_sha256);
    let n = common::count_facts(&dest);
    assert!(
        n >= before,
        "restored {n} facts, the database had {before} before the push"
    );
    assert_eq!(
        (n - before) % 10,
        0,
        "a writer transaction was torn: {n} facts"
    );
    stigvault::sqlite::integrity_check(&dest).unwrap();
    drop(conn);
}

/// The distinct chunk contents of a database file.
fn page_set(path: &std::path::Path) -> HashSet<Vec<u8>> {
    std::fs::read(path)
        .unwrap()
        .chunks(4096)
        .map(|c| c.to_vec())
        .collect()
}

/// After a +1% change, a push stores exactly the chunks whose content the store lacks.
async fn plus_one_percent_uploads_only_changed_chunks(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 6000);
    let first = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    common::insert_facts(&conn, 60);
    let second = push(&store, &ts.state(), &common::push_opts(&src, None))
        .await
        .unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));

    // Brute-force recount from the two restored databases.
    let key = common::node_key(&src);
    let (a, b) = (ts.path("a.db"), ts.path("b.db"));
    pull(
        &store,
        &ts.state(),
        &first.id,
        &common::pull_opts(&a, common::trust(&[&key]), false),
    )
    .await
    .unwrap();
    pull(
        &store,
        &ts.state(),
        &second.id,
        &common::pull_opts(&b, common::trust(&[&key]), false),
    )
    .await
    .unwrap();
    let old = page_set(&a);
    let fresh: HashSet<Vec<u8>> = page_set(&b).difference(&old).cloned().collect();
    assert_eq!(second.new_chunks, fresh.len() as u64);
    assert!(
        second.new_chunks * 4 < second.chunks,
        "{} of {} chunks re-uploaded",
        second.new_chunks,
        second.chunks
    );
    assert!(
        second.requests.put_bytes * 3 < first.requests.put_bytes,
        "+1% push uploaded {} bytes, the first {}",
        second.requests.put_bytes,
        first.requests.put_bytes
    );
    check_requests(&second);
    drop(conn);
}

fn check_requests(r: &PushReport) {
    // Packs, recipe, locations, root, entry: a handful of PUTs, not one per chunk.
    assert!(r.requests.puts <= r.packs + 5, "{:?}", r.requests);
    assert!(r.requests.lists <= 3, "{:?}", r.requests);
}

/// Eight processes' worth of pushers, each with its own handle and no locks, give eight
/// entries, even on a server that ignores conditional writes.
async fn eight_concurrent_pushers(backend: Backend) {
    let ts = TestStore::new(backend);
    let mut dbs = Vec::new();
    for i in 0..8 {
        let p = ts.path(&format!("n{i}.db"));
        drop(common::make_db(&p, 200 + i * 10));
        dbs.push(p);
    }
    let tasks: Vec<_> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| {
            let inner = ts.inner.clone();
            let label = ts.label.clone();
            let db = db.clone();
            let state = stigvault::index::ClientState::at(ts.path(&format!("state{i}")));
            tokio::spawn(async move {
                // Every pusher initialises the empty store itself, racing the others.
                let store = stigvault::store::Store::open_or_init(inner, &label)
                    .await
                    .unwrap();
                push(&store, &state, &common::push_opts(&db, None))
                    .await
                    .unwrap()
                    .id
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 8);
    let store = ts.open().await;
    let index = Index::load(&store, &stigvault::index::ClientState::ephemeral())
        .await
        .unwrap();
    let listed: HashSet<String> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.clone())
        .collect();
    assert_eq!(listed, ids);
    // Each is complete: pull two of them.
    for (i, db) in dbs.iter().enumerate().take(2) {
        let key = common::node_key(db);
        let dest = ts.path(&format!("out{i}.db"));
        let q = index
            .latest_for_node(&node_id(db))
            .unwrap()
            .body
            .snapshot
            .clone();
        pull(
            &store,
            &ts.state(),
            &q,
            &common::pull_opts(&dest, common::trust(&[&key]), false),
        )
        .await
        .unwrap();
    }
}

fn node_id(db: &std::path::Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT value FROM node_meta WHERE key = 'node_id'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

on_every_backend!(
    round_trip_wal_with_concurrent_writer,
    plus_one_percent_uploads_only_changed_chunks,
    eight_concurrent_pushers,
);
