//! forget and prune: tombstones, keep policies on a synthetic timeline, and what forgetting
//! hides, on every backend.

mod common;

use std::collections::HashSet;

use common::{Backend, TestStore};
use stigvault::format::index::{EntryBody, EntryKind};
use stigvault::index::{ClientState, Index};
use stigvault::pull::pull;
use stigvault::push::push;
use stigvault::retention::{forget, prune, KeepPolicy};
use stigvault::sign::SecretKey;
use stigvault::Error;

/// Index entries for a synthetic timeline: node `a` every 6 hours for 40 days, node `b`
/// daily for 10 days. Ids are made up: prune decides on the index alone.
async fn synthetic_timeline(store: &stigvault::store::Store, state: &ClientState) -> Vec<String> {
    let signer = SecretKey::from_seed(&[9u8; 32]);
    let mut index = Index::load(store, state).await.unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").unwrap();
    let mut ids = Vec::new();
    let mut add = |node: &str, i: i64, step_h: i64| {
        let t = start + chrono::Duration::hours(step_h * i);
        let id = blake3::hash(format!("{node}{i}").as_bytes())
            .to_hex()
            .to_string();
        ids.push(id.clone());
        EntryBody {
            created_at: t.to_rfc3339(),
            node_id: format!("stigmem:node:{node}"),
            ..common::entry_body(&signer, id)
        }
    };
    let mut bodies = Vec::new();
    for i in 0..160 {
        bodies.push(add("a", i, 6));
    }
    for i in 0..10 {
        bodies.push(add("b", i, 24));
    }
    for b in bodies {
        index.append(store, state, b, &signer).await.unwrap();
    }
    ids
}

/// prune applies keep rules per node; forgotten snapshots leave `snapshots()` and appear in
/// `forgotten()`, with tombstones signed by the given key; a dry run writes nothing.
async fn prune_synthetic_timeline(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let all = synthetic_timeline(&store, &state).await;
    assert_eq!(
        Index::load(&store, &state).await.unwrap().snapshots().len(),
        170
    );

    let key = SecretKey::generate().unwrap();
    let policy = KeepPolicy {
        last: 2,
        daily: 5,
        weekly: 3,
        ..Default::default()
    };
    let dry = prune(&store, &state, &policy, None, &key, true)
        .await
        .unwrap();
    assert!(dry.tombstones.is_empty());
    let after_dry = Index::load(&store, &state).await.unwrap();
    assert_eq!(after_dry.snapshots().len(), 170);
    assert!(after_dry.forgotten().is_empty());

    let r = prune(&store, &state, &policy, None, &key, false)
        .await
        .unwrap();
    assert_eq!(r.forgotten, dry.forgotten);
    assert_eq!(r.tombstones.len(), r.forgotten.len());
    // The exact verdicts are unit-tested against a brute-force count in retention.rs; here,
    // what they do to the index.
    let index = Index::load(&store, &state).await.unwrap();
    let live: HashSet<String> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.clone())
        .collect();
    let gone: HashSet<String> = r.forgotten.iter().cloned().collect();
    assert_eq!(live.len() + gone.len(), 170);
    assert!(live.is_disjoint(&gone));
    let all: HashSet<String> = all.into_iter().collect();
    assert_eq!(&live | &gone, all);
    // Node a keeps 2 + 5 + 3 at most, 5 at least (the daily rule alone); node b likewise.
    let per_node = |n: &str| {
        index
            .snapshots()
            .iter()
            .filter(|e| e.body.node_id == n)
            .count()
    };
    let a = per_node("stigmem:node:a");
    let b = per_node("stigmem:node:b");
    assert!((5..=10).contains(&a), "node a keeps {a}");
    assert!((5..=10).contains(&b), "node b keeps {b}");
    let kept_by_plan: HashSet<String> = r
        .decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(kept_by_plan, live);
    // Every tombstone is a signed entry by the given key, naming a forgotten snapshot.
    let forgotten = index.forgotten();
    assert_eq!(forgotten.len(), gone.len());
    for (snap, t) in forgotten {
        assert_eq!(t.body.kind, EntryKind::Forget);
        assert_eq!(t.body.signer_pubkey, key.public().to_b64url());
        assert!(gone.contains(&t.body.snapshot));
        assert_eq!(snap.unwrap().body.snapshot, t.body.snapshot);
    }
    // Pruning again with the same policy forgets nothing more.
    let again = prune(&store, &state, &policy, None, &key, false)
        .await
        .unwrap();
    assert!(again.forgotten.is_empty(), "{:?}", again.forgotten);
    // --node limits the scope.
    let only_b = prune(
        &store,
        &state,
        &KeepPolicy {
            last: 1,
            ..Default::default()
        },
        Some("stigmem:node:b"),
        &key,
        true,
    )
    .await
    .unwrap();
    assert_eq!(only_b.forgotten.len(), b - 1);
    assert!(only_b
        .decisions
        .iter()
        .all(|d| d.node_id == "stigmem:node:b"));
    // An empty policy is refused.
    assert!(matches!(
        prune(&store, &state, &KeepPolicy::default(), None, &key, false).await,
        Err(Error::EmptyRetentionPolicy)
    ));
}

/// A forgotten snapshot is gone from ls, pull and push dedup, and the index still says it
/// was forgotten (rather than missing); the other snapshots are untouched.
async fn forget_hides_but_remembers(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 800);
    let first = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    common::insert_facts(&conn, 50);
    let second = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    let key = SecretKey::generate().unwrap();

    // A typo among the ids forgets nothing.
    let typo = forget(
        &store,
        &state,
        &[second.id.clone(), "ffffff00".into()],
        &key,
        false,
    )
    .await;
    assert!(matches!(typo, Err(Error::SnapshotNotFound(_))));
    assert_eq!(
        Index::load(&store, &state).await.unwrap().snapshots().len(),
        2
    );

    let r = forget(&store, &state, &[second.id[..10].to_string()], &key, false)
        .await
        .unwrap();
    assert_eq!(r.forgotten, vec![second.id.clone()]);

    // A fresh client sees the same.
    let index = Index::load(&store, &ClientState::ephemeral())
        .await
        .unwrap();
    let live: Vec<&str> = index
        .snapshots()
        .iter()
        .map(|e| e.body.snapshot.as_str())
        .collect();
    assert_eq!(live, [first.id.as_str()]);
    assert!(index.tombstone(&second.id).is_some());
    assert!(index.tombstone(&first.id).is_none());
    assert_eq!(
        index
            .snapshot_entry(&second.id)
            .map(|e| e.body.db_sha256.as_str()),
        Some(second.db_sha256.as_str())
    );
    let (snap, t) = index.forgotten()[0];
    assert_eq!(snap.unwrap().body.snapshot, second.id);
    assert_eq!(t.body.signer_pubkey, key.public().to_b64url());
    // The newest live snapshot of the node is the first again.
    let node = snap.unwrap().body.node_id.clone();
    assert_eq!(
        index.latest_for_node(&node).unwrap().body.snapshot,
        first.id
    );

    let dest = ts.path("dest.db");
    let trust = common::trust(&[&common::node_key(&src)]);
    let err = pull(
        &store,
        &state,
        &second.id,
        &common::pull_opts(&dest, trust.clone(), false),
    )
    .await
    .unwrap_err();
    match err {
        Error::SnapshotForgotten {
            snapshot, signer, ..
        } => {
            assert_eq!(snapshot, second.id);
            assert_eq!(signer, key.public().to_b64url());
        }
        other => panic!("expected a forgotten snapshot, got {other}"),
    }
    // Forgetting it again is refused the same way; the first still pulls.
    assert!(matches!(
        forget(
            &store,
            &state,
            std::slice::from_ref(&second.id),
            &key,
            false
        )
        .await,
        Err(Error::SnapshotForgotten { .. })
    ));
    pull(
        &store,
        &state,
        &first.id,
        &common::pull_opts(&dest, trust, false),
    )
    .await
    .unwrap();
    assert_eq!(common::sha256_file(&dest), first.db_sha256);

    // The next push dedups against the first, not the forgotten second.
    common::insert_facts(&conn, 10);
    let third = push(&store, &state, &common::push_opts(&src, None))
        .await
        .unwrap();
    assert_eq!(third.parent.as_deref(), Some(first.id.as_str()));
    drop(conn);
}

on_every_backend!(prune_synthetic_timeline, forget_hides_but_remembers);

/// The CLI verbs: forget and prune write tombstones signed by --sign-with, ls hides them,
/// and gc --dry-run reports without changing anything.
#[test]
fn cli_forget_prune_gc() {
    let ts = TestStore::new(Backend::Local);
    let store_dir = ts.path("store");
    let src = ts.path("src.db");
    let conn = common::make_db(&src, 300);
    let run = |args: &[&str]| {
        let out = common::cli()
            .arg("--store")
            .arg(&store_dir)
            .arg("--state-dir")
            .arg(ts.path("state"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            run(&["push", "--db", src.to_str().unwrap()])
                .trim()
                .to_string(),
        );
        common::insert_facts(&conn, 20);
    }
    let keyfile = ts.path("tomb.key");
    let pubkey = run(&["keygen", "--out", keyfile.to_str().unwrap()]);
    let out = run(&[
        "forget",
        &ids[0][..8],
        "--sign-with",
        keyfile.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["forgotten"][0], ids[0].as_str());
    assert_eq!(v["signer_pubkey"], pubkey.trim());
    let out = run(&["prune", "--keep-last", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["forgotten"][0], ids[1].as_str());
    let ls: serde_json::Value = serde_json::from_str(&run(&["ls", "--json"])).unwrap();
    let listed: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str()]);
    let gc: serde_json::Value = serde_json::from_str(&run(&["gc", "--dry-run", "--json"])).unwrap();
    assert_eq!(gc["dry_run"], true);
    assert_eq!(gc["packs_deleted"], 0);
    assert_eq!(gc["snapshots_marked"], 2);
    drop(conn);
}
