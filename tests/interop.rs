//! Interoperability with the real stigmem CLI (stigmem-node 0.9.0a12), both directions:
//! stigmem's tarballs import into stigvault, and stigvault's exports restore with
//! `stigmem snapshot restore`. Covers secondary signing keys and non-ASCII node ids.
//!
//! These tests need `STIGVAULT_TEST_STIGMEM` (set by `scripts/services.sh`); without it
//! they fail, never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{make_db, sha256_file};
use rusqlite::Connection;

fn stigmem_bin() -> PathBuf {
    let p = std::env::var_os("STIGVAULT_TEST_STIGMEM").unwrap_or_else(|| {
        panic!(
            "STIGVAULT_TEST_STIGMEM is not set: the interop tests need the real stigmem CLI; \
             run them through scripts/check.sh (or `scripts/services.sh start` and source \
             the env file it writes)"
        )
    });
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "{} does not exist; run scripts/check.sh, which installs stigmem",
        p.display()
    );
    p
}

/// Run stigmem in `cwd` (it reads a `.env` from its working directory) with no inherited
/// STIGMEM_* settings.
fn stigmem(cwd: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(stigmem_bin());
    c.current_dir(cwd).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STIGMEM_") {
            c.env_remove(k);
        }
    }
    c.output().expect("stigmem runs")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sv(dir: &Path, args: &[&str]) -> Output {
    common::cli()
        .current_dir(dir)
        .env("STIGVAULT_STATE_DIR", dir.join("state"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .output()
        .expect("stigvault runs")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next_back()
        .expect("a line on stdout")
        .to_string()
}

fn meta(db: &Path, key: &str) -> String {
    Connection::open(db)
        .unwrap()
        .query_row("SELECT value FROM node_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap()
}

fn set_node_id(db: &Path, id: &str) {
    Connection::open(db)
        .unwrap()
        .execute(
            "INSERT OR REPLACE INTO node_meta (key, value) VALUES ('node_id', ?1)",
            [id],
        )
        .unwrap();
}

fn keys_file(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(keys).unwrap()).unwrap();
    p
}

/// A database made by stigmem itself (full schema via its migrations), with some bulk.
fn stigmem_db(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    let tmp = dir.join(format!("{name}.init.tar.gz"));
    ok(
        stigmem(
            dir,
            &["snapshot", "create", "--db", s(&db), "--out", s(&tmp)],
        ),
        "stigmem snapshot create (schema)",
    );
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS bulk (id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO bulk (v) SELECT randomblob(300) FROM n;",
    )
    .unwrap();
    db
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// (name, data) of every member of a tar.gz, in order.
fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, d)
        })
        .collect()
}

fn assert_same_snapshot(a: &Path, b: &Path) {
    let (a, b) = (members(a), members(b));
    for name in [
        "manifest.json",
        "artifacts/schema_migration_cursor.json",
        "artifacts/stigmem.db",
    ] {
        let find = |m: &[(String, Vec<u8>)]| {
            m.iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .1
                .clone()
        };
        assert!(find(&a) == find(&b), "{name} differs");
    }
}

/// stigmem's tarball → import → export: byte-identical manifest and artifacts, and stigmem
/// restores the export.
fn stigmem_to_stigvault_and_back(node_id: Option<&str>, secondary: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = stigmem_db(d, "node.db");
    if let Some(id) = node_id {
        set_node_id(&db, id);
    }
    let mut create = vec!["snapshot", "create", "--db", s(&db)];
    let key_path = d.join("secondary.key");
    let signer = if secondary {
        let out = ok(
            sv(d, &["keygen", "--out", s(&key_path)]),
            "stigvault keygen",
        );
        create.extend(["--sign-with", s(&key_path)]);
        last_line(&out)
    } else {
        meta(&db, "federation_pubkey")
    };
    let theirs = d.join("theirs.tar.gz");
    create.extend(["--out", s(&theirs)]);
    ok(stigmem(d, &create), "stigmem snapshot create");

    let id = last_line(&ok(
        sv(d, &["import", s(&theirs), "--trust", &signer]),
        "stigvault import",
    ));
    assert_eq!(id.len(), 64, "import prints the id last: {id:?}");
    let ours = d.join("ours.tar.gz");
    ok(
        sv(d, &["export", &id[..12], "--out", s(&ours)]),
        "stigvault export",
    );
    assert_same_snapshot(&theirs, &ours);
    if let Some(want) = node_id {
        let m: serde_json::Value = serde_json::from_slice(&members(&ours)[0].1).unwrap();
        assert_eq!(m["node_id"], want);
    }

    let keys = keys_file(d, "keys.json", &[&signer]);
    let restored = d.join("restored.db");
    ok(
        stigmem(
            d,
            &[
                "snapshot",
                "restore",
                "--from",
                s(&ours),
                "--db",
                s(&restored),
                "--trusted-keys",
                s(&keys),
            ],
        ),
        "stigmem snapshot restore of our export",
    );
    let db_member = members(&theirs)
        .into_iter()
        .find(|(n, _)| n == "artifacts/stigmem.db")
        .unwrap()
        .1;
    assert_eq!(std::fs::read(&restored).unwrap(), db_member);
}

#[test]
fn stigmem_tarball_round_trips() {
    stigmem_to_stigvault_and_back(None, false);
}

#[test]
fn stigmem_tarball_with_secondary_key_round_trips() {
    stigmem_to_stigvault_and_back(None, true);
}

#[test]
fn stigmem_tarball_with_non_ascii_node_id_round_trips() {
    stigmem_to_stigvault_and_back(Some("stigmem:node:Zürich-節点-😀-\"tab\there\""), false);
}

/// stigvault's own snapshots (push, and `snapshot create`) restore with stigmem.
fn stigvault_to_stigmem(node_id: &str, secondary: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("node.db");
    drop(make_db(&db, 2000));
    set_node_id(&db, node_id);
    let key_path = d.join("secondary.key");
    let mut push = vec!["push", "--db", s(&db)];
    let mut create = vec!["snapshot", "create", "--db", s(&db)];
    let signer = if secondary {
        let out = ok(
            sv(d, &["keygen", "--out", s(&key_path)]),
            "stigvault keygen",
        );
        push.extend(["--sign-with", s(&key_path)]);
        create.extend(["--sign-with", s(&key_path)]);
        last_line(&out)
    } else {
        // push creates the node's key when missing, as stigmem does.
        String::new()
    };
    let id = last_line(&ok(sv(d, &push), "stigvault push"));
    let signer = if secondary {
        signer
    } else {
        meta(&db, "federation_pubkey")
    };
    let keys = keys_file(d, "keys.json", &[&signer]);
    let exported = d.join("exported.tar.gz");
    ok(
        sv(
            d,
            &["export", &id, "--out", s(&exported), "--trust", &signer],
        ),
        "stigvault export",
    );
    let created = d.join("created.tar.gz");
    create.extend(["--out", s(&created)]);
    ok(sv(d, &create), "stigvault snapshot create");

    for (n, tarball) in [exported, created].iter().enumerate() {
        let restored = d.join(format!("restored{n}.db"));
        ok(
            stigmem(
                d,
                &[
                    "snapshot",
                    "restore",
                    "--from",
                    s(tarball),
                    "--db",
                    s(&restored),
                    "--trusted-keys",
                    s(&keys),
                ],
            ),
            "stigmem snapshot restore",
        );
        assert_eq!(common::count_facts(&restored), 2000);
        assert_eq!(meta(&restored, "node_id"), node_id);
        let m: serde_json::Value = serde_json::from_slice(&members(tarball)[0].1).unwrap();
        assert_eq!(m["node_id"], node_id);
        assert_eq!(
            m["artifacts"]["artifacts/stigmem.db"],
            format!("sha256:{}", sha256_file(&restored))
        );
    }
}

#[test]
fn stigvault_export_restores_in_stigmem() {
    stigvault_to_stigmem("stigmem:node:0b6a2e8c-0d7e-4a57-9d4f-3f0f7c1d2e11", false);
}

#[test]
fn stigvault_export_with_secondary_key_restores_in_stigmem() {
    stigvault_to_stigmem("stigmem:node:0b6a2e8c-0d7e-4a57-9d4f-3f0f7c1d2e11", true);
}

#[test]
fn stigvault_export_with_non_ascii_node_id_restores_in_stigmem() {
    stigvault_to_stigmem("stigmem:node:Zürich-節点-😀-\"tab\there\"", false);
}

#[test]
fn stigvault_restore_reads_stigmem_tarballs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = stigmem_db(d, "node.db");
    let theirs = d.join("theirs.tar.gz");
    ok(
        stigmem(
            d,
            &["snapshot", "create", "--db", s(&db), "--out", s(&theirs)],
        ),
        "stigmem snapshot create",
    );
    // Same node: the destination's own key is trusted, as in stigmem.
    let copy = d.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    ok(
        common::cli()
            .args([
                "snapshot",
                "restore",
                "--from",
                s(&theirs),
                "--db",
                s(&copy),
            ])
            .output()
            .unwrap(),
        "stigvault snapshot restore onto the same node",
    );
    // A new destination: stigmem would trust the tarball's own key; stigvault refuses.
    let fresh = d.join("fresh.db");
    let out = common::cli()
        .args([
            "snapshot",
            "restore",
            "--from",
            s(&theirs),
            "--db",
            s(&fresh),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no self-attestation"));
    assert!(!fresh.exists());
    let keys = keys_file(d, "keys.json", &[&meta(&db, "federation_pubkey")]);
    ok(
        common::cli()
            .args([
                "snapshot",
                "restore",
                "--from",
                s(&theirs),
                "--db",
                s(&fresh),
            ])
            .args(["--trusted-keys", s(&keys)])
            .output()
            .unwrap(),
        "stigvault snapshot restore with --trusted-keys",
    );
    let member = members(&theirs)
        .into_iter()
        .find(|(n, _)| n == "artifacts/stigmem.db")
        .unwrap()
        .1;
    assert_eq!(std::fs::read(&fresh).unwrap(), member);
}

/// The committed fixtures (made by stigmem 0.9.0a12, see fixtures/README.md) import, and
/// export back byte-identical.
#[test]
fn fixtures_import_and_export_identically() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut found = 0;
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".tar.gz") {
            continue;
        }
        found += 1;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keys = fixtures.join("trusted-keys.json");
        let id = last_line(&ok(
            sv(d, &["import", s(&p), "--trusted-keys", s(&keys)]),
            "import of a fixture",
        ));
        let out = d.join("out.tar.gz");
        ok(
            sv(d, &["export", &id, "--out", s(&out)]),
            "export of a fixture",
        );
        assert_same_snapshot(&p, &out);
    }
    assert!(
        found >= 3,
        "expected stigmem-made tarballs in {}",
        fixtures.display()
    );
}
