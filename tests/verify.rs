//! verify: a sound store passes; each kind of damage is caught and names the object and the
//! snapshots it affects; forgotten snapshots are not reported as missing. Plus the CLI verbs
//! copy, stats and verify end to end.

mod common;

use std::collections::HashSet;

use common::{Backend, TestStore};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use stigvault::format::id::{PackId, SnapshotId};
use stigvault::format::index::{EntryBody, EntryKind};
use stigvault::format::recipe::Locations;
use stigvault::index::{ClientState, Index};
use stigvault::push::{push, PushOptions, PushReport};
use stigvault::sign::SecretKey;
use stigvault::store::{keys, Store};
use stigvault::verify::{verify, ProblemKind, VerifyOptions, VerifyReport};

fn push_opts(db: &std::path::Path) -> PushOptions {
    PushOptions {
        db: db.to_path_buf(),
        sign_with: None,
        tmp_dir: None,
        progress: false,
    }
}

/// A store with two snapshots of one node, the second sharing most chunks with the first.
struct Fixture {
    ts: TestStore,
    store: Store,
    a: PushReport,
    b: PushReport,
}

async fn fixture(backend: Backend) -> Fixture {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 2000);
    let a = push(&store, &ts.state(), &push_opts(&db)).await.unwrap();
    common::insert_facts(&conn, 30);
    let b = push(&store, &ts.state(), &push_opts(&db)).await.unwrap();
    drop(conn);
    Fixture { ts, store, a, b }
}

impl Fixture {
    async fn run(&self, read_data: bool) -> VerifyReport {
        // A fresh client: rollback detection through remembered heads is Index's own test.
        verify(
            &self.store,
            &ClientState::ephemeral(),
            &VerifyOptions {
                snapshots: Vec::new(),
                read_data,
                progress: false,
            },
        )
        .await
        .unwrap()
    }

    async fn packs_of(&self, id: &str) -> HashSet<PackId> {
        let id = SnapshotId::from_hex(id).unwrap();
        let b = self.store.get(&keys::locations(&id)).await.unwrap();
        Locations::decode(&b, "l")
            .unwrap()
            .packs()
            .into_iter()
            .collect()
    }

    /// A pack only `b` uses (it holds the +1% chunks).
    async fn pack_only_b(&self) -> PackId {
        let (pa, pb) = (
            self.packs_of(&self.a.id).await,
            self.packs_of(&self.b.id).await,
        );
        *pb.difference(&pa).next().expect("b has a pack of its own")
    }

    /// A pack both snapshots use.
    async fn shared_pack(&self) -> PackId {
        let (pa, pb) = (
            self.packs_of(&self.a.id).await,
            self.packs_of(&self.b.id).await,
        );
        *pa.intersection(&pb).next().expect("a shared pack")
    }
}

fn only_problem(r: &VerifyReport, kind: ProblemKind) -> &stigvault::verify::Problem {
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    assert_eq!(r.problems[0].kind, kind, "{:#?}", r.problems);
    &r.problems[0]
}

async fn sound_store_passes(backend: Backend) {
    let f = fixture(backend).await;
    let r = f.run(false).await;
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!((r.entries, r.snapshots), (2, 2));
    let r = f.run(true).await;
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!(r.artifact_bytes_checked, f.a.db_bytes + f.b.db_bytes);
    assert!(r.pack_bytes_read > 0 && r.chunks_checked > 0);
}

async fn flipped_byte_in_pack(backend: Backend) {
    let f = fixture(backend).await;
    let pack = f.shared_pack().await;
    let key = keys::pack(&pack);
    let mut bytes = f.store.get(&key).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    f.ts.inner.put(&key, bytes.into()).await.unwrap();

    // Sizes are unchanged: only reading the data finds it.
    assert!(f.run(false).await.is_ok());
    let r = f.run(true).await;
    let p = &r.problems[0];
    assert!(
        r.problems.iter().all(|p| p.kind == ProblemKind::Data),
        "{:#?}",
        r.problems
    );
    assert_eq!(p.object, key.to_string());
    assert!(!p.snapshots.is_empty(), "{p:?}");
    assert!(p.snapshots.iter().all(|s| *s == f.a.id || *s == f.b.id));
}

async fn missing_pack(backend: Backend) {
    let f = fixture(backend).await;
    let pack = f.pack_only_b().await;
    f.ts.inner.delete(&keys::pack(&pack)).await.unwrap();
    let r = f.run(false).await;
    let p = only_problem(&r, ProblemKind::MissingPack);
    assert_eq!(p.object, keys::pack(&pack).to_string());
    assert_eq!(p.snapshots, vec![f.b.id.clone()]);
    assert!(p.to_string().contains(&f.b.id));
}

async fn swapped_manifest(backend: Backend) {
    let f = fixture(backend).await;
    // b's root replaced by a's: a valid, signed root, but not the one b's id names.
    let (ia, ib) = (
        SnapshotId::from_hex(&f.a.id).unwrap(),
        SnapshotId::from_hex(&f.b.id).unwrap(),
    );
    let root_a = f.store.get(&keys::snapshot(&ia)).await.unwrap();
    f.ts.inner
        .put(&keys::snapshot(&ib), root_a.into())
        .await
        .unwrap();
    let r = f.run(false).await;
    let p = only_problem(&r, ProblemKind::Snapshot);
    assert_eq!(p.object, keys::snapshot(&ib).to_string());
    assert_eq!(p.snapshots, vec![f.b.id.clone()]);
    assert!(p.detail.contains("hashes to"), "{p}");
}

async fn removed_index_entry(backend: Backend) {
    let f = fixture(backend).await;
    let index = Index::load(&f.store, &ClientState::ephemeral())
        .await
        .unwrap();
    let first = index.snapshots()[0].key.clone();
    f.ts.inner
        .delete(&Path::from(first.as_str()))
        .await
        .unwrap();
    let r = f.run(false).await;
    assert!(!r.is_ok());
    let p = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Index)
        .unwrap_or_else(|| panic!("{:#?}", r.problems));
    assert_eq!(p.object, first);
    assert!(p.detail.contains("names it as a parent"), "{p}");
}

/// A forgotten snapshot whose pack gc removed is not damage.
async fn forgotten_is_not_missing(backend: Backend) {
    let f = fixture(backend).await;
    let state = ClientState::ephemeral();
    let mut index = Index::load(&f.store, &state).await.unwrap();
    let entry = index.resolve(&f.b.id).unwrap().1.body.clone();
    let key = SecretKey::from_seed(&[3u8; 32]);
    index
        .append(
            &f.store,
            &state,
            EntryBody {
                kind: EntryKind::Forget,
                new_bytes: 0,
                signer_pubkey: key.public().to_b64url(),
                ..entry
            },
            &key,
        )
        .await
        .unwrap();
    let pack = f.pack_only_b().await;
    f.ts.inner.delete(&keys::pack(&pack)).await.unwrap();
    let r = f.run(true).await;
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!(r.forgotten, vec![f.b.id.clone()]);
    assert_eq!(r.snapshots, 1);
}

on_every_backend!(
    sound_store_passes,
    flipped_byte_in_pack,
    missing_pack,
    swapped_manifest,
    removed_index_entry,
    forgotten_is_not_missing,
);

/// `copy --to s3://…` with the destination's credentials in `STIGVAULT_TO_AWS_*`, then
/// `stats --json`, `ls --json` and `verify` (exit 0), then `verify` on damage (exit 1).
#[test]
fn cli_copy_stats_verify() {
    let ts = TestStore::new(Backend::Local);
    let db = ts.path("src.db");
    let conn = common::make_db(&db, 1500);
    let src = ts.path("src-store");
    let state = ts.path("state");
    let run = |args: &[&str], env: &[(String, String)]| {
        let mut c = common::cli();
        c.env("STIGVAULT_STATE_DIR", &state)
            .arg("--store")
            .arg(&src)
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout.clone()).unwrap()
    };
    ok(&run(&["push", "--db", db.to_str().unwrap()], &[]));
    common::insert_facts(&conn, 20);
    ok(&run(&["push", "--db", db.to_str().unwrap()], &[]));

    let v = |k: &str| std::env::var(format!("STIGVAULT_TEST_MOTO_{k}")).unwrap();
    let url = format!("s3://{}/t-{}", v("BUCKET2"), uuid::Uuid::new_v4().simple());
    let to_env: Vec<(String, String)> = [
        ("ACCESS_KEY_ID", v("ACCESS_KEY_ID")),
        ("SECRET_ACCESS_KEY", v("SECRET_ACCESS_KEY")),
        ("REGION", v("REGION")),
        ("ENDPOINT", v("ENDPOINT")),
        ("ALLOW_HTTP", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, val)| (format!("STIGVAULT_TO_AWS_{k}"), val))
    .collect();
    let out = ok(&run(&["copy", "--all", "--to", &url, "--json"], &to_env));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["copied"], 2);
    assert!(
        report["destination_requests"]["put_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let again: serde_json::Value = serde_json::from_str(&ok(&run(
        &["copy", "--all", "--to", &url, "--json"],
        &to_env,
    )))
    .unwrap();
    assert_eq!(again["copied"], 0);
    assert_eq!(again["destination_requests"]["put_bytes"], 0);

    // The destination, read with its credentials as the standard AWS_* variables.
    let as_src: Vec<(String, String)> = to_env
        .iter()
        .map(|(k, val)| {
            (
                k.trim_start_matches("STIGVAULT_TO_").to_string(),
                val.clone(),
            )
        })
        .collect();
    let mut c = common::cli();
    c.env("STIGVAULT_STATE_DIR", ts.path("state2")).args([
        "--store",
        &url,
        "verify",
        "--read-data",
    ]);
    for (k, val) in &as_src {
        c.env(k, val);
    }
    ok(&c.output().unwrap());

    let stats: serde_json::Value =
        serde_json::from_str(&ok(&run(&["stats", "--json"], &[]))).unwrap();
    assert_eq!(stats["snapshots"], 2);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 1.0);
    let ls: serde_json::Value = serde_json::from_str(&ok(&run(&["ls", "--json"], &[]))).unwrap();
    let rows = ls.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[1]["shared_bytes"].as_u64().unwrap() > 0);
    assert!(rows[1]["freed_bytes"].as_u64().is_some());

    ok(&run(&["verify"], &[]));
    // Remove every pack: verify names them and exits 1.
    std::fs::remove_dir_all(src.join("packs")).unwrap();
    let o = run(&["verify"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("problem: packs/"), "{text}");
    drop(conn);
}
