//! Dedup figures (`ls` and `stats`) against a brute-force recount from the location tables,
//! with two nodes, shared chunks, a copy, and a forgotten snapshot.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Backend, TestStore};
use stigvault::format::id::{PackId, SnapshotId};
use stigvault::format::index::{EntryBody, EntryKind};
use stigvault::format::recipe::Locations;
use stigvault::index::Index;
use stigvault::push::{push, PushOptions};
use stigvault::sign::SecretKey;
use stigvault::stats::{snapshot_figures, stats};
use stigvault::store::{keys, Store};

fn push_opts(db: &std::path::Path) -> PushOptions {
    PushOptions {
        db: db.to_path_buf(),
        sign_with: None,
        tmp_dir: None,
        progress: false,
    }
}

type Extent = (PackId, u32, u32, u32);

async fn extents(store: &Store, id: &str) -> HashSet<Extent> {
    let id = SnapshotId::from_hex(id).unwrap();
    let b = store.get(&keys::locations(&id)).await.unwrap();
    Locations::decode(&b, "l")
        .unwrap()
        .map
        .values()
        .map(|l| (l.pack, l.offset, l.stored_len, l.raw_len))
        .collect()
}

fn sum(set: &HashSet<Extent>) -> u64 {
    set.iter().map(|e| e.2 as u64).sum()
}

/// The figures of `ls` and `stats` equal a recount done the slow, obvious way.
async fn figures_match_brute_force(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let (db1, db2) = (ts.path("one.db"), ts.path("two.db"));
    let c1 = common::make_db(&db1, 2500);
    let c2 = common::make_db(&db2, 1500);
    let mut ids = Vec::new();
    ids.push(push(&store, &state, &push_opts(&db1)).await.unwrap().id);
    common::insert_facts(&c1, 40);
    ids.push(push(&store, &state, &push_opts(&db1)).await.unwrap().id);
    ids.push(push(&store, &state, &push_opts(&db2)).await.unwrap().id);
    common::insert_facts(&c1, 40);
    ids.push(push(&store, &state, &push_opts(&db1)).await.unwrap().id);
    common::insert_facts(&c2, 40);
    ids.push(push(&store, &state, &push_opts(&db2)).await.unwrap().id);

    // Forget the second snapshot of node one: it must stop counting as live.
    let mut index = Index::load(&store, &state).await.unwrap();
    let forgotten = index.resolve(&ids[1]).unwrap().1.body.clone();
    let key = SecretKey::from_seed(&[9u8; 32]);
    index
        .append(
            &store,
            &state,
            EntryBody {
                kind: EntryKind::Forget,
                new_bytes: 0,
                signer_pubkey: key.public().to_b64url(),
                ..forgotten
            },
            &key,
        )
        .await
        .unwrap();
    let index = Index::load(&store, &state).await.unwrap();
    let live: Vec<String> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.clone())
        .collect();
    assert_eq!(live.len(), 4);
    assert!(!live.contains(&ids[1]));

    // Brute force.
    let mut sets = Vec::new();
    for id in &live {
        sets.push(extents(&store, id).await);
    }
    let figures = snapshot_figures(&store, &index).await.unwrap();
    assert_eq!(figures.len(), live.len());
    for (i, f) in figures.iter().enumerate() {
        assert_eq!(f.id, live[i]);
        let earlier: HashSet<Extent> = sets[..i].iter().flatten().copied().collect();
        let others: HashSet<Extent> = sets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let mine = &sets[i];
        let new: HashSet<Extent> = mine.difference(&earlier).copied().collect();
        let shared: HashSet<Extent> = mine.intersection(&others).copied().collect();
        let only: HashSet<Extent> = mine.difference(&others).copied().collect();
        assert_eq!(f.stored_bytes, sum(mine), "snapshot {i}");
        assert_eq!(f.new_bytes, sum(&new), "snapshot {i}");
        assert_eq!(f.shared_bytes, sum(&shared), "snapshot {i}");
        assert_eq!(f.freed_bytes, sum(&only), "snapshot {i}");
        assert_eq!(f.chunks, mine.len() as u64);
    }
    // Later snapshots of a node share most of their bytes with the earlier one.
    assert!(
        figures[2].shared_bytes > figures[2].new_bytes,
        "{:?}",
        figures[2]
    );

    let s = stats(&store, &index).await.unwrap();
    let all: HashSet<Extent> = sets.iter().flatten().copied().collect();
    assert_eq!(s.snapshots, 4);
    assert_eq!(s.forgotten, 1);
    assert_eq!(s.nodes, 2);
    assert_eq!(s.stored_bytes, sum(&all));
    assert_eq!(s.chunks, all.len() as u64);
    assert_eq!(
        s.unique_raw_bytes,
        all.iter().map(|e| e.3 as u64).sum::<u64>()
    );
    let logical: u64 = index.snapshots().iter().map(|e| e.body.db_bytes).sum();
    assert_eq!(s.logical_bytes, logical);
    assert!(s.dedup_ratio > 1.2 && s.compression_ratio > 1.0, "{s:?}");

    // Packs and objects, counted from a listing.
    let listed = store.list("", None).await.unwrap();
    let packs: Vec<_> = listed
        .iter()
        .filter(|m| m.location.as_ref().starts_with("packs/"))
        .collect();
    assert_eq!(s.packs, packs.len() as u64);
    assert_eq!(s.pack_bytes, packs.iter().map(|m| m.size).sum::<u64>());
    assert_eq!(s.objects, listed.len() as u64);
    assert!(s.pack_bytes > s.stored_bytes);

    // Per node: the union of its snapshots' extents, and what no other node shares.
    let mut by_node: HashMap<String, HashSet<Extent>> = HashMap::new();
    for (e, set) in index.snapshots().iter().zip(&sets) {
        by_node
            .entry(e.body.node_id.clone())
            .or_default()
            .extend(set.iter().copied());
    }
    for n in &s.per_node {
        let mine = &by_node[&n.node_id];
        let others: HashSet<Extent> = by_node
            .iter()
            .filter(|(k, _)| **k != n.node_id)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        assert_eq!(n.stored_bytes, sum(mine));
        assert_eq!(
            n.exclusive_bytes,
            sum(&mine.difference(&others).copied().collect())
        );
        assert_eq!(n.snapshots, 2);
    }
    drop((c1, c2));
}

on_every_backend!(figures_match_brute_force);
