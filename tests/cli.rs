//! The command-line contract: output, exit codes, JSON, keygen, and a killed push.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

fn run(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = common::cli();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs stigvault")
}

#[test]
fn push_ls_pull_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.db");
    drop(common::make_db(&db, 500));
    let store = dir.path().join("store");
    let state = dir.path().join("state");
    let env = [
        ("STIGVAULT_STORE", store.as_path()),
        ("STIGVAULT_STATE_DIR", state.as_path()),
    ];

    let out = run(&["push", "--db", db.to_str().unwrap()], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let id = stdout.lines().last().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let out = run(&["ls", "--json"], &env);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows.as_array().unwrap()[0];
    for field in [
        "id",
        "created_at",
        "node_id",
        "signer_pubkey",
        "db_sha256",
        "db_bytes",
        "new_bytes",
    ] {
        assert!(row.get(field).is_some(), "ls --json lacks {field}: {row}");
    }
    assert_eq!(row["id"], id.as_str());
    assert!(row["new_bytes"].as_u64().unwrap() > 0);

    // An untrusted signer: non-zero exit, `error:` on stderr naming the key and the fix.
    let dest = dir.path().join("restored.db");
    let out = run(&["pull", &id[..10], "--db", dest.to_str().unwrap()], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let signer = row["signer_pubkey"].as_str().unwrap();
    assert!(
        err.contains("error:") && err.contains(signer) && err.contains("--trust"),
        "{err}"
    );
    assert!(!dest.exists());

    let out = run(
        &[
            "pull",
            &id[..10],
            "--db",
            dest.to_str().unwrap(),
            "--trust",
            signer,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        common::sha256_file(&dest),
        row["db_sha256"].as_str().unwrap()
    );

    // A trusted-keys file in stigmem's format works too.
    let keys = dir.path().join("trusted.json");
    std::fs::write(&keys, format!("[\"{signer}\"]")).unwrap();
    let out = run(
        &[
            "pull",
            &id,
            "--db",
            dest.to_str().unwrap(),
            "--trusted-keys",
            keys.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keygen_writes_a_private_key_file_and_signs_pushes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    let out = run(&["keygen", "--out", key.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = run(&["keygen", "--out", key.to_str().unwrap()], &[]);
    assert!(!again.status.success(), "keygen overwrote an existing key");

    let db = dir.path().join("n.db");
    drop(common::make_db(&db, 50));
    let store = dir.path().join("store");
    let state = dir.path().join("state");
    let env = [
        ("STIGVAULT_STORE", store.as_path()),
        ("STIGVAULT_STATE_DIR", state.as_path()),
    ];
    let out = run(
        &[
            "push",
            "--db",
            db.to_str().unwrap(),
            "--sign-with",
            key.to_str().unwrap(),
            "--json",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signer_pubkey"], public.as_str());
}

#[test]
fn bad_store_url_is_a_clear_error() {
    let out = run(&["--store", "ftp://example/x", "ls"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error:") && err.contains("s3://"), "{err}");
}

/// A push killed after it has started uploading packs leaves no visible snapshot, and the
/// store stays usable.
#[test]
fn killed_push_leaves_no_visible_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    drop(common::make_db(&db, 120_000));
    let store = dir.path().join("store");
    let state = dir.path().join("state");
    let env = [
        ("STIGVAULT_STORE", store.as_path()),
        ("STIGVAULT_STATE_DIR", state.as_path()),
    ];

    let mut child = common::cli()
        .args(["push", "--db", db.to_str().unwrap()])
        .env("STIGVAULT_STORE", &store)
        .env("STIGVAULT_STATE_DIR", &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first pack is in the store.
    let packs = store.join("packs");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let has_pack = std::fs::read_dir(&packs)
            .map(|d| {
                d.flatten().any(|sub| {
                    std::fs::read_dir(sub.path())
                        .map(|f| f.count() > 0)
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if has_pack {
            break;
        }
        assert!(Instant::now() < deadline, "no pack appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "push finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "push completed before the kill landed");
    assert!(
        !store.join("index").join("entries").exists()
            || std::fs::read_dir(store.join("index/entries"))
                .unwrap()
                .count()
                == 0
    );

    let out = run(&["ls", "--json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        0,
        "a killed push is visible: {rows}"
    );

    // The store still works: a new push succeeds and is the only snapshot.
    let out = run(&["push", "--db", db.to_str().unwrap()], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["ls", "--json"], &env);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
}

/// The `s3://bucket/prefix` URL form, configured by the standard AWS environment variables,
/// against each real server.
fn s3_url_round_trip(server: &str) {
    let v = |k: &str| {
        std::env::var(format!("STIGVAULT_TEST_{server}_{k}")).unwrap_or_else(|_| {
            panic!("STIGVAULT_TEST_{server}_{k} is not set: run the tests through scripts/check.sh")
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.db");
    drop(common::make_db(&db, 300));
    let url = format!("s3://{}/cli-{}", v("BUCKET"), uuid::Uuid::new_v4().simple());
    let sv = |args: &[&str]| {
        common::cli()
            .args(["--store", &url])
            .args(args)
            .env("STIGVAULT_STATE_DIR", dir.path().join("state"))
            .env("AWS_ACCESS_KEY_ID", v("ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", v("SECRET_ACCESS_KEY"))
            .env("AWS_REGION", v("REGION"))
            .env("AWS_ENDPOINT_URL", v("ENDPOINT"))
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    };
    let out = sv(&["push", "--db", db.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["id"].as_str().unwrap();
    let dest = dir.path().join("back.db");
    let signer = report["signer_pubkey"].as_str().unwrap();
    let out = sv(&[
        "pull",
        id,
        "--db",
        dest.to_str().unwrap(),
        "--trust",
        signer,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        common::sha256_file(&dest),
        report["db_sha256"].as_str().unwrap()
    );
}

#[test]
fn s3_url_round_trip_garage() {
    s3_url_round_trip("GARAGE");
}

#[test]
fn s3_url_round_trip_moto() {
    s3_url_round_trip("MOTO");
}
