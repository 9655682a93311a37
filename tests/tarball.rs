//! stigmem tarballs: import and export on every backend, the drop-in create/restore, and
//! one refusal test per class of bad input.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{make_db, Backend, TestStore};
use stigvault::format::manifest::{Manifest, CURSOR_ARTIFACT, DB_ARTIFACT};
use stigvault::index::Index;
use stigvault::sign::{SecretKey, TrustSet};
use stigvault::store::Store;
use stigvault::tarball::{self, CreateOptions, ImportOptions, RestoreOptions, TarballTrust};
use stigvault::Error;

fn opts(trust: Option<&TrustSet>) -> ImportOptions {
    ImportOptions {
        trust: trust.cloned(),
        ..Default::default()
    }
}

/// Members of a tar.gz by name, in order, as (name, type byte, data).
fn members(path: &Path) -> Vec<(String, u8, Vec<u8>)> {
    let f = std::fs::File::open(path).expect("open tarball");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = String::from_utf8(e.path_bytes().to_vec()).expect("utf8 name");
            let kind = e.header().entry_type().as_byte();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read member");
            (name, kind, data)
        })
        .collect()
}

fn member<'a>(all: &'a [(String, u8, Vec<u8>)], name: &str) -> &'a [u8] {
    &all.iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no member {name}"))
        .2
}

/// A stigmem-like database and a tarball of it made by `stigvault snapshot create`'s
/// library call. Returns (db, tarball, node key).
fn fresh_tarball(dir: &Path, name: &str, rows: usize) -> (PathBuf, PathBuf) {
    let db = dir.join(format!("{name}.db"));
    drop(make_db(&db, rows));
    let out = dir.join(format!("{name}.tar.gz"));
    tarball::create(&CreateOptions {
        db: db.clone(),
        out: Some(out.clone()),
        sign_with: None,
        tmp_dir: Some(dir.to_path_buf()),
    })
    .expect("create");
    (db, out)
}

async fn import_export_round_trip(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let importer = SecretKey::generate().unwrap();
    let (db, tgz) = fresh_tarball(ts.dir.path(), "a", 3000);
    let node = common::node_key(&db);

    let report = tarball::import(
        &store,
        &state,
        &tgz,
        &importer,
        &opts(Some(&common::trust(&[&node]))),
    )
    .await
    .expect("import");
    assert_eq!(report.trust, TarballTrust::Trusted);
    assert_eq!(
        report.tarball_reads, 1,
        "a small tarball is packed while it is checked"
    );
    assert_eq!(report.entry_signer, importer.public().to_b64url());
    assert_eq!(report.signer_pubkey, node.to_b64url());

    // Export and compare member for member: manifest byte-identical, artifacts identical.
    let index = Index::load(&store, &state).await.unwrap();
    let snap = tarball::open_for_export(&store, &index, &report.id[..10], None)
        .await
        .expect("open for export");
    let out = ts.path("out.tar.gz");
    let exported = tarball::export_to_file(&store, &snap, &out, false)
        .await
        .expect("export");
    assert_eq!(exported.db_sha256, report.db_sha256);
    let (a, b) = (members(&tgz), members(&out));
    let names: Vec<&str> = b.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["manifest.json", "artifacts/", CURSOR_ARTIFACT, DB_ARTIFACT],
        "stigmem's member order"
    );
    for name in ["manifest.json", CURSOR_ARTIFACT, DB_ARTIFACT] {
        assert!(
            member(&a, name) == member(&b, name),
            "{name} differs after the round trip"
        );
    }
    // The export is reproducible, and importing it again names the same snapshot.
    let again = ts.path("again.tar.gz");
    tarball::export_to_file(&store, &snap, &again, false)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    let two_reads = ImportOptions {
        max_prepacked_bytes: 0,
        ..Default::default()
    };
    let re = tarball::import(&store, &state, &out, &importer, &two_reads)
        .await
        .expect("re-import");
    assert_eq!(re.tarball_reads, 2);
    assert_eq!(re.id, report.id);
    assert_eq!(re.trust, TarballTrust::NotChecked);
    assert_eq!(re.new_chunks, 0, "a re-import stores no chunk twice");

    // A later tarball of the same node dedups against the first.
    let conn = rusqlite::Connection::open(&db).unwrap();
    common::insert_facts(&conn, 30);
    drop(conn);
    let later = ts.path("later.tar.gz");
    tarball::create(&CreateOptions {
        db: db.clone(),
        out: Some(later.clone()),
        sign_with: None,
        tmp_dir: Some(ts.dir.path().to_path_buf()),
    })
    .unwrap();
    let r2 = tarball::import(&store, &state, &later, &importer, &opts(None))
        .await
        .expect("second import");
    assert_eq!(r2.tarball_reads, 1, "an incremental tarball is read once");
    // Random UUID keys scatter 1% more rows over many pages of a small database, so the
    // bound is loose; without dedup every chunk would be new.
    assert!(
        r2.new_chunks * 2 < r2.chunks,
        "{} of {} chunks new: no dedup",
        r2.new_chunks,
        r2.chunks
    );

    // New packs that outgrow the in-memory budget: the check gives up packing, and the
    // tarball is read a second time.
    let conn = rusqlite::Connection::open(&db).unwrap();
    common::insert_facts(&conn, 30);
    drop(conn);
    let later2 = ts.path("later2.tar.gz");
    tarball::create(&CreateOptions {
        db: db.clone(),
        out: Some(later2.clone()),
        sign_with: None,
        tmp_dir: Some(ts.dir.path().to_path_buf()),
    })
    .unwrap();
    let tiny = ImportOptions {
        max_prepacked_bytes: 1,
        ..Default::default()
    };
    let r3 = tarball::import(&store, &state, &later2, &importer, &tiny)
        .await
        .expect("third import");
    assert_eq!(r3.tarball_reads, 2);
    assert!(r3.new_chunks > 0 && r3.new_chunks * 2 < r3.chunks);

    // And pull restores it exactly.
    let dest = ts.path("pulled.db");
    stigvault::pull::pull(
        &store,
        &state,
        &r2.id,
        &stigvault::pull::PullOptions {
            db: dest.clone(),
            trust: common::trust(&[&node]),
            force_unverified: false,
            progress: false,
        },
    )
    .await
    .expect("pull of an imported snapshot");
    assert_eq!(common::sha256_file(&dest), r2.db_sha256);
}

async fn export_refuses_untrusted_when_keys_given(backend: Backend) {
    let ts = TestStore::new(backend);
    let store = ts.open().await;
    let state = ts.state();
    let (_, tgz) = fresh_tarball(ts.dir.path(), "a", 200);
    let key = SecretKey::generate().unwrap();
    let r = tarball::import(&store, &state, &tgz, &key, &opts(None))
        .await
        .unwrap();
    let index = Index::load(&store, &state).await.unwrap();
    let other = TrustSet::from_iter([SecretKey::generate().unwrap().public()]);
    let err = tarball::open_for_export(&store, &index, &r.id, Some(&other))
        .await
        .expect_err("untrusted signer");
    assert!(matches!(err, Error::UntrustedSigner { .. }), "{err}");
}

on_every_backend!(
    import_export_round_trip,
    export_refuses_untrusted_when_keys_given
);

// ---- drop-in create / restore -----------------------------------------------------------

#[test]
fn restore_trusts_only_the_destination_or_the_given_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (db, tgz) = fresh_tarball(dir.path(), "a", 500);
    let node = common::node_key(&db);
    let fresh = dir.path().join("fresh.db");
    let opts = |dest: &Path, keys: Option<TrustSet>, force: bool| RestoreOptions {
        from: tgz.clone(),
        db: dest.to_path_buf(),
        trusted_keys: keys,
        force_unverified: force,
    };

    // A fresh destination has no key, and the tarball's own key is never enough.
    let err = tarball::restore(&opts(&fresh, None, false)).expect_err("self-attestation");
    assert!(matches!(err, Error::TarUntrustedSigner { .. }), "{err}");
    assert!(err.to_string().contains("no self-attestation"), "{err}");
    assert!(!fresh.exists(), "a refused restore creates nothing");

    // The destination's own key is trusted (same-node restore).
    let same = dir.path().join("same.db");
    std::fs::copy(&db, &same).unwrap();
    let r = tarball::restore(&opts(&same, None, false)).expect("same-node restore");
    assert_eq!(r.trust, TarballTrust::Trusted);
    assert_eq!(common::sha256_file(&same), r.db_sha256);

    // --trusted-keys replaces the implicit set; --force-unverified waives only trust.
    let r = tarball::restore(&opts(&fresh, Some(common::trust(&[&node])), false)).unwrap();
    assert_eq!(r.trust, TarballTrust::Trusted);
    let other = dir.path().join("other.db");
    let r = tarball::restore(&opts(&other, Some(TrustSet::new()), true)).unwrap();
    assert_eq!(r.trust, TarballTrust::Unverified);
    assert_eq!(common::count_facts(&other), 500);
}

#[test]
fn create_uses_stigmem_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stigmem.db");
    drop(make_db(&db, 100));
    // Default name in the working directory; STIGMEM_DB_PATH default; message on stderr.
    let out = common::cli()
        .current_dir(dir.path())
        .env("STIGMEM_DB_PATH", &db)
        .args(["snapshot", "create"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = stderr
        .trim()
        .strip_prefix("snapshot created: ")
        .unwrap_or_else(|| panic!("unexpected stderr {stderr}"));
    let sha = common::sha256_file(&{
        let m = members(&dir.path().join(name));
        let p = dir.path().join("inner.db");
        std::fs::write(&p, member(&m, DB_ARTIFACT)).unwrap();
        p
    });
    assert!(
        name.starts_with("stigmem-snapshot-") && name.ends_with(&format!("-{}.tar.gz", &sha[..12])),
        "{name}"
    );

    // Exit codes: bad arguments 2 (as argparse), failed verification 1.
    let bad = common::cli()
        .args(["snapshot", "restore"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let refused = common::cli()
        .current_dir(dir.path())
        .args(["snapshot", "restore", "--from", name, "--db", "new.db"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no self-attestation"));
    assert!(!dir.path().join("new.db").exists());
}

// ---- bad input ---------------------------------------------------------------------------

/// One member of a hand-built tarball.
#[derive(Clone)]
struct M {
    name: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Vec<u8>,
    /// Size written in the header, when it is to differ from the data's.
    size: Option<u64>,
}

fn file(name: &str, data: &[u8]) -> M {
    M {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: Vec::new(),
        size: None,
    }
}

fn special(name: &str, kind: tar::EntryType, link: &str) -> M {
    M {
        name: name.as_bytes().to_vec(),
        kind,
        data: Vec::new(),
        link: link.as_bytes().to_vec(),
        size: None,
    }
}

/// The raw tar stream (not gzipped). Headers are filled by hand so that names the tar crate
/// would refuse to write (absolute, `..`) can be made.
fn tar_bytes(members: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..m.name.len()].copy_from_slice(&m.name);
            old.linkname[..m.link.len()].copy_from_slice(&m.link);
        }
        h.set_entry_type(m.kind);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(m.size.unwrap_or(m.data.len() as u64));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

/// A store holding one snapshot, a good tarball's members, and the signer's key.
struct Bad {
    ts: TestStore,
    store: Store,
    good: Vec<M>,
    manifest: Manifest,
    node: stigvault::sign::PublicKey,
    tarballs: PathBuf,
}

async fn setup() -> Bad {
    let ts = TestStore::new(Backend::Local);
    let store = ts.open().await;
    let (db, tgz) = fresh_tarball(ts.dir.path(), "good", 300);
    let key = SecretKey::generate().unwrap();
    tarball::import(&store, &ts.state(), &tgz, &key, &opts(None))
        .await
        .unwrap();
    let all = members(&tgz);
    let good = vec![
        file("manifest.json", member(&all, "manifest.json")),
        M {
            name: b"artifacts/".to_vec(),
            kind: tar::EntryType::Directory,
            data: Vec::new(),
            link: Vec::new(),
            size: None,
        },
        file(CURSOR_ARTIFACT, member(&all, CURSOR_ARTIFACT)),
        file(DB_ARTIFACT, member(&all, DB_ARTIFACT)),
    ];
    let manifest = Manifest::parse(member(&all, "manifest.json")).unwrap();
    let tarballs = ts.dir.path().join("in");
    std::fs::create_dir(&tarballs).unwrap();
    Bad {
        node: common::node_key(&db),
        ts,
        store,
        good,
        manifest,
        tarballs,
    }
}

/// Every file under `dir`, with its length.
fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), meta.len());
            }
        }
    }
    out
}

async fn all_objects(store: &Store) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = store
        .list("", None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    v.sort();
    v
}

impl Bad {
    /// Import `bytes` (already gzipped) and return the error, asserting that the store and
    /// the file system outside the store are exactly as before.
    async fn refuse_gz(&self, bytes: &[u8], trust: Option<&TrustSet>) -> Error {
        let path = self.tarballs.join("bad.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        let before = all_objects(&self.store).await;
        let files = tree(self.ts.dir.path());
        let started = Instant::now();
        let key = SecretKey::generate().unwrap();
        let err = tarball::import(&self.store, &self.ts.state(), &path, &key, &opts(trust))
            .await
            .expect_err("bad tarball imported");
        assert!(started.elapsed() < Duration::from_secs(10), "slow refusal");
        // The same refusal when the check only hashes (the two-read path).
        let two_reads = ImportOptions {
            max_prepacked_bytes: 0,
            ..opts(trust)
        };
        let again = tarball::import(&self.store, &self.ts.state(), &path, &key, &two_reads)
            .await
            .expect_err("bad tarball imported on the two-read path");
        assert_eq!(
            std::mem::discriminant(&again),
            std::mem::discriminant(&err),
            "{again} vs {err}"
        );
        assert_eq!(all_objects(&self.store).await, before, "the store changed");
        assert_eq!(tree(self.ts.dir.path()), files, "files were written");
        assert!(!Path::new("/tmp/stigvault-evil").exists());
        err
    }

    async fn refuse(&self, members: &[M]) -> Error {
        self.refuse_gz(&gzip(&tar_bytes(members)), None).await
    }

    fn with(&self, extra: M) -> Vec<M> {
        let mut v = self.good.clone();
        v.insert(3, extra);
        v
    }

    fn replace(&self, name: &str, data: Vec<u8>) -> Vec<M> {
        self.good
            .iter()
            .cloned()
            .map(|mut m| {
                if m.name == name.as_bytes() {
                    m.data = data.clone();
                }
                m
            })
            .collect()
    }

    fn without(&self, name: &str) -> Vec<M> {
        self.good
            .iter()
            .filter(|m| m.name != name.as_bytes())
            .cloned()
            .collect()
    }

    fn manifest_text(&self) -> String {
        String::from_utf8(self.manifest.bytes().to_vec()).unwrap()
    }
}

macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {{
        let e = $e;
        assert!(matches!(e, $p $(if $g)?), "unexpected error: {e:?} ({e})");
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_good_tarball_is_accepted_by_the_harness() {
    // Guards the tests below: the hand-built tarball itself imports.
    let b = setup().await;
    let path = b.tarballs.join("good.tar.gz");
    std::fs::write(&path, gzip(&tar_bytes(&b.good))).unwrap();
    let key = SecretKey::generate().unwrap();
    tarball::import(
        &b.store,
        &b.ts.state(),
        &path,
        &key,
        &opts(Some(&common::trust(&[&b.node]))),
    )
    .await
    .expect("hand-built good tarball");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_absolute_paths() {
    let b = setup().await;
    let e = b.refuse(&b.with(file("/tmp/stigvault-evil", b"x"))).await;
    assert_err!(e, Error::TarUnsafePath { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_parent_components() {
    let b = setup().await;
    let e = b
        .refuse(&b.with(file("artifacts/../../stigvault-evil", b"x")))
        .await;
    assert_err!(e, Error::TarUnsafePath { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_symlinks() {
    let b = setup().await;
    let e = b
        .refuse(&b.with(special(
            "artifacts/link",
            tar::EntryType::Symlink,
            "/etc/passwd",
        )))
        .await;
    assert_err!(e, Error::TarSymlink { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_hardlinks() {
    let b = setup().await;
    let e = b
        .refuse(&b.with(special(
            "artifacts/hard",
            tar::EntryType::Link,
            "manifest.json",
        )))
        .await;
    assert_err!(e, Error::TarHardlink { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_devices() {
    let b = setup().await;
    let e = b
        .refuse(&b.with(special("artifacts/dev", tar::EntryType::Char, "")))
        .await;
    assert_err!(e, Error::TarSpecialMember { .. });
    let e = b
        .refuse(&b.with(special("artifacts/blk", tar::EntryType::Block, "")))
        .await;
    assert_err!(e, Error::TarSpecialMember { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_fifos() {
    let b = setup().await;
    let e = b
        .refuse(&b.with(special("artifacts/fifo", tar::EntryType::Fifo, "")))
        .await;
    assert_err!(e, Error::TarSpecialMember { ref kind, .. } if kind == "fifo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_duplicate_members() {
    let b = setup().await;
    let mut v = b.good.clone();
    v.push(b.good[3].clone());
    let e = b.refuse(&v).await;
    assert_err!(e, Error::TarDuplicateMember(ref n) if n == DB_ARTIFACT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_undeclared_artifacts() {
    let b = setup().await;
    let e = b.refuse(&b.with(file("artifacts/extra.bin", b"x"))).await;
    assert_err!(e, Error::TarUndeclaredMember(ref n) if n == "artifacts/extra.bin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_missing_manifest_and_artifacts() {
    let b = setup().await;
    for name in ["manifest.json", CURSOR_ARTIFACT, DB_ARTIFACT] {
        let e = b.refuse(&b.without(name)).await;
        assert_err!(e, Error::TarMissingMember(ref n) if n == name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_malformed_json() {
    let b = setup().await;
    let mut text = b.manifest_text();
    text.pop(); // the closing brace
    let e = b
        .refuse(&b.replace("manifest.json", text.into_bytes()))
        .await;
    assert_err!(e, Error::Malformed { ref what, ref reason } if what == "manifest.json" && reason.contains("JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_unknown_versions() {
    let b = setup().await;
    let text = b
        .manifest_text()
        .replacen("\"version\": 1", "\"version\": 2", 1);
    let e = b
        .refuse(&b.replace("manifest.json", text.into_bytes()))
        .await;
    assert_err!(e, Error::UnsupportedFormat { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_base64() {
    let b = setup().await;
    let pk = b.manifest.signer().to_b64url();
    let bad = format!("{}+{}", &pk[..10], &pk[11..]);
    let text = b.manifest_text().replace(&pk, &bad);
    let e = b
        .refuse(&b.replace("manifest.json", text.into_bytes()))
        .await;
    assert_err!(e, Error::InvalidKey { ref reason, .. } if reason.contains("base64url alphabet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_wrong_key_lengths() {
    let b = setup().await;
    let pk = b.manifest.signer().to_b64url();
    let text = b.manifest_text().replace(&pk, &pk[..40]);
    let e = b
        .refuse(&b.replace("manifest.json", text.into_bytes()))
        .await;
    assert_err!(e, Error::InvalidKey { ref reason, .. } if reason.contains("expected 32"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_signatures() {
    let b = setup().await;
    let created = b.manifest.created_at().to_string();
    let text = b
        .manifest_text()
        .replace(&created, "2020-01-01T00:00:00+00:00");
    let e = b
        .refuse(&b.replace("manifest.json", text.into_bytes()))
        .await;
    assert_err!(e, Error::BadSignature { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_forged_signatures() {
    let b = setup().await;
    // Re-signed by someone else with their own key: self-consistent, but not trusted.
    let forger = SecretKey::generate().unwrap();
    let forged = Manifest::build(
        b.manifest.created_at().to_string(),
        b.manifest.node_id().to_string(),
        b.manifest.db_sha256(),
        b.manifest.cursor_sha256(),
        &forger,
    );
    let raw = gzip(&tar_bytes(
        &b.replace("manifest.json", forged.bytes().to_vec()),
    ));
    let e = b.refuse_gz(&raw, Some(&common::trust(&[&b.node]))).await;
    assert_err!(e, Error::TarUntrustedSigner { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_hash_mismatches() {
    let b = setup().await;
    let mut db = b.good[3].data.clone();
    let n = db.len();
    db[n - 10] ^= 0x55;
    let e = b.refuse(&b.replace(DB_ARTIFACT, db)).await;
    assert_err!(e, Error::HashMismatch { ref what, .. } if what.starts_with(DB_ARTIFACT));
    let e = b
        .refuse(&b.replace(CURSOR_ARTIFACT, b"{\"applied_migrations\": []}".to_vec()))
        .await;
    assert_err!(e, Error::HashMismatch { ref what, .. } if what.starts_with(CURSOR_ARTIFACT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_truncated_gzip() {
    let b = setup().await;
    let gz = gzip(&tar_bytes(&b.good));
    let e = b.refuse_gz(&gz[..gz.len() / 2], None).await;
    assert_err!(e, Error::TarTruncated { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_corrupt_gzip() {
    let b = setup().await;
    let mut gz = gzip(&tar_bytes(&b.good));
    let n = gz.len();
    // The CRC-32 in the trailer: only the checksum can catch this.
    gz[n - 6] ^= 0xff;
    let e = b.refuse_gz(&gz, None).await;
    assert_err!(e, Error::TarCorrupt { .. });
    let e = b.refuse_gz(b"this is not gzip at all", None).await;
    assert_err!(e, Error::TarCorrupt { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_corrupt_tar() {
    let b = setup().await;
    let mut raw = tar_bytes(&b.good);
    raw[0] ^= 0x20; // manifest.json's name, under an unchanged header checksum
    let e = b.refuse_gz(&gzip(&raw), None).await;
    assert_err!(e, Error::TarCorrupt { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_members_whose_size_differs_from_their_header() {
    let b = setup().await;
    // The database member's header claims one page more than its SQLite header says.
    let mut v = b.good.clone();
    let real = v[3].data.len() as u64;
    v[3].size = Some(real + 4096);
    v[3].data.resize(real as usize + 4096, 0);
    let e = b.refuse(&v).await;
    assert_err!(e, Error::TarMemberSize { header, actual, .. } if header == real + 4096 && actual == real);

    // A header that claims more than the stream holds (the gzip stream itself is intact).
    let mut raw = tar_bytes(&b.good);
    raw.truncate(raw.len() - 1024 - 8192);
    let e = b.refuse_gz(&gzip(&raw), None).await;
    assert_err!(e, Error::TarTruncated { .. });

    // A member longer than its header: the surplus lands where the next header should be.
    let mut v = b.good.clone();
    v[2].size = Some(v[2].data.len() as u64 - 1);
    v[2].data.extend_from_slice(&[b' '; 600]);
    let e = b.refuse(&v).await;
    assert_err!(e, Error::TarCorrupt { .. } | Error::TarMemberSize { .. });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_gzip_bombs_quickly() {
    let b = setup().await;
    // A 20 GiB database member in a file of a few KiB: refused from the sizes alone.
    let mut v = b.good.clone();
    v[3].size = Some(20 << 30);
    let started = Instant::now();
    let e = b.refuse(&v).await;
    assert_err!(e, Error::TarMemberTooLarge { size, .. } if size == 20 << 30);
    assert!(started.elapsed() < Duration::from_secs(2));

    // 64 MiB of zeros compress well enough to pass the deflate-ratio bound, but the SQLite
    // header says two pages: refused after its first 100 bytes, before hashing the rest.
    let mut v = b.good.clone();
    let mut db = v[3].data.clone();
    db.truncate(4096);
    db[28..32].copy_from_slice(&2u32.to_be_bytes());
    db.resize(64 << 20, 0);
    v[3].data = db;
    v[3].size = None;
    let started = Instant::now();
    let e = b.refuse(&v).await;
    assert_err!(e, Error::TarMemberSize { actual, .. } if actual == 8192);
    assert!(started.elapsed() < Duration::from_secs(5));

    // The manifest and the cursor are bounded too.
    let big = vec![b' '; 1 << 20];
    let e = b.refuse(&b.replace("manifest.json", big.clone())).await;
    assert_err!(e, Error::TarMemberTooLarge { ref member, .. } if member == "manifest.json");
    let e = b.refuse(&b.replace(CURSOR_ARTIFACT, big)).await;
    assert_err!(e, Error::TarMemberTooLarge { ref member, .. } if member == CURSOR_ARTIFACT);
}

#[test]
fn cli_accepts_keys_that_start_with_a_hyphen() {
    // One base64url key in 64 starts with '-', which a command-line parser takes for a flag
    // unless told otherwise.
    let key = std::iter::repeat_with(|| SecretKey::generate().unwrap())
        .find(|k| k.public().to_b64url().starts_with('-'))
        .expect("a key");
    let signer = key.public().to_b64url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    drop(make_db(&db, 50));
    let tgz = dir.path().join("a.tar.gz");
    tarball::create(&CreateOptions {
        db,
        out: Some(tgz.clone()),
        sign_with: Some(key),
        tmp_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let run = |args: &[&str]| {
        common::cli()
            .env("STIGVAULT_STATE_DIR", dir.path().join("state"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["import", tgz.to_str().unwrap(), "--trust", &signer]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let exported = dir.path().join("b.tar.gz");
    let out = run(&[
        "export",
        &id,
        "--out",
        exported.to_str().unwrap(),
        "--trust",
        &signer,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = dir.path().join("pulled.db");
    let out = run(&[
        "pull",
        &id,
        "--db",
        pulled.to_str().unwrap(),
        "--trust",
        &signer,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
