//! Byte-exactness against stigmem: Python's `json.dumps` and the signed `manifest.json`.
//!
//! Every expected value was produced by python3 3.11.7 on this machine; the command is
//! beside each one. The manifest files in `tests/vectors/` come from stigmem's own
//! `snapshot_create` (see `tests/vectors/README.md`).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stigvault::format::manifest::{
    cursor_json, python_isoformat_utc, sha256_hex_prefixed, Manifest, CURSOR_ARTIFACT, DB_ARTIFACT,
    MANIFEST_VERSION,
};
use stigvault::format::pyjson::{dumps_canonical, dumps_indent2};
use stigvault::sign::{b64url_encode, SecretKey, TrustSet};
use stigvault::Error;

// ---- pyjson ------------------------------------------------------------------------------

/// Scalars render the same in both modes, so each string vector checks both.
fn assert_both(v: &Value, want: &str) {
    assert_eq!(dumps_canonical(v), want, "canonical");
    assert_eq!(dumps_indent2(v), want, "indent=2");
}

#[test]
fn string_plain_ascii() {
    // python3 -c 'import json; print(json.dumps("hello, world"))'
    assert_both(&json!("hello, world"), r#""hello, world""#);
}

#[test]
fn string_quotes_backslashes_and_slash() {
    // python3 -c 'import json; print(json.dumps("say \"hi\" \\ back/slash"))'
    assert_both(
        &json!("say \"hi\" \\ back/slash"),
        r#""say \"hi\" \\ back/slash""#,
    );
}

#[test]
fn string_control_characters_and_del() {
    // python3 -c 'import json; print(json.dumps("\x00\x01\x08\t\n\x0b\x0c\r\x1b\x1f \x7f"))'
    assert_both(
        &json!("\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f} \u{7f}"),
        r#""\u0000\u0001\b\t\n\u000b\f\r\u001b\u001f \u007f""#,
    );
}

#[test]
fn string_non_ascii_bmp() {
    // python3 -c 'import json; print(json.dumps("é 日本 \u00a0\u2028\ufeff"))'
    assert_both(
        &json!("é 日本 \u{a0}\u{2028}\u{feff}"),
        r#""\u00e9 \u65e5\u672c \u00a0\u2028\ufeff""#,
    );
}

#[test]
fn string_astral_as_surrogate_pairs() {
    // python3 -c 'import json; print(json.dumps("😀𝄞\U0010ffff"))'
    assert_both(
        &json!("😀𝄞\u{10ffff}"),
        r#""\ud83d\ude00\ud834\udd1e\udbff\udfff""#,
    );
}

#[test]
fn empty_containers() {
    // python3 -c 'import json; print(json.dumps([], indent=2), json.dumps({}, indent=2))'
    assert_both(&json!([]), "[]");
    assert_both(&json!({}), "{}");
}

/// Python sorts keys by code point: U+1F600 after U+FFFF, though its UTF-16 surrogates
/// would sort before it.
fn nested() -> Value {
    json!({"z": 1, "a": {"y": [1, -2, 3.5, true, false, null], "b": {}, "é": []},
           "m": "x", "😀": 1, "\u{ffff}": 2})
}

#[test]
fn nested_indent2_keeps_insertion_order() {
    // python3 -c 'import json; print(repr(json.dumps({"z": 1, "a": {"y": [1, -2, 3.5, True,
    //   False, None], "b": {}, "é": []}, "m": "x", "😀": 1, "\uffff": 2}, indent=2)))'
    let want = "{\n  \"z\": 1,\n  \"a\": {\n    \"y\": [\n      1,\n      -2,\n      3.5,\n      \
                true,\n      false,\n      null\n    ],\n    \"b\": {},\n    \"\\u00e9\": []\n  \
                },\n  \"m\": \"x\",\n  \"\\ud83d\\ude00\": 1,\n  \"\\uffff\": 2\n}";
    assert_eq!(dumps_indent2(&nested()), want);
    // Reading Python's output back and dumping it again must give the same bytes.
    let reparsed: Value = serde_json::from_str(want).unwrap();
    assert_eq!(dumps_indent2(&reparsed), want);
}

#[test]
fn nested_canonical_sorts_every_level_by_code_point() {
    // python3 -c 'import json; print(json.dumps(<the dict above>, sort_keys=True,
    //   separators=(",", ":")))'
    assert_eq!(
        dumps_canonical(&nested()),
        r#"{"a":{"b":{},"y":[1,-2,3.5,true,false,null],"\u00e9":[]},"m":"x","z":1,"\uffff":2,"\ud83d\ude00":1}"#
    );
}

// 9007199254740993.0 is not representable on purpose: both languages round it to ...992.
#[allow(clippy::excessive_precision)]
#[test]
fn floats_as_python_repr() {
    // python3 -c 'import json; print(json.dumps([0.0, -0.0, 1.0, 0.5, 1e16, 1e15,
    //   123456789.125, 1.5e-07, 0.1, 0.0001, 1e-05, 2.5e+300, 5e-324,
    //   1.7976931348623157e+308, 9007199254740993.0, 1/3, 1658206780088562.25],
    //   separators=(",", ":")))'
    // The last one is an exact tie between two shortest forms; Python rounds it to even.
    let v = json!([
        0.0,
        -0.0,
        1.0,
        0.5,
        1e16,
        1e15,
        123456789.125,
        1.5e-07,
        0.1,
        0.0001,
        1e-05,
        2.5e+300,
        5e-324,
        1.7976931348623157e+308,
        9007199254740993.0,
        1.0 / 3.0,
        1658206780088562.25
    ]);
    let want = "[0.0,-0.0,1.0,0.5,1e+16,1000000000000000.0,123456789.125,1.5e-07,0.1,0.0001,\
                1e-05,2.5e+300,5e-324,1.7976931348623157e+308,9007199254740992.0,\
                0.3333333333333333,1658206780088562.2]";
    assert_eq!(dumps_canonical(&v), want);
}

#[test]
fn integers_at_the_edges_of_64_bits() {
    // python3 -c 'import json; print(json.dumps([18446744073709551615,
    //   -9223372036854775808, 0], separators=(",", ":")))'
    let v = json!([u64::MAX, i64::MIN, 0]);
    assert_eq!(
        dumps_canonical(&v),
        "[18446744073709551615,-9223372036854775808,0]"
    );
}

// ---- manifest: known answers -------------------------------------------------------------

const ASCII: &[u8] = include_bytes!("vectors/manifest_ascii.json");
const UNICODE: &[u8] = include_bytes!("vectors/manifest_unicode.json");
const EXTRA: &[u8] = include_bytes!("vectors/manifest_extra_fields.json");
const CURSOR: &[u8] = include_bytes!("vectors/cursor_0001_0002.json");

const ASCII_NODE: &str = "stigmem:node:6f1c0a52-3b7e-4d2a-9c1e-5a8f0b2d4e61";
const UNICODE_NODE: &str = "caf\u{e9} \u{65e5}\u{672c} \u{1f600} \u{1d11e} \"q\"\\/\t\u{7f}";

fn key() -> SecretKey {
    SecretKey::from_seed(&std::array::from_fn(|i| i as u8))
}

fn hex32(s: &str) -> [u8; 32] {
    let mut d = [0u8; 32];
    hex::decode_to_slice(s, &mut d).unwrap();
    d
}

/// The artifact hashes stigmem declared in both vectors.
fn db_sha() -> [u8; 32] {
    hex32("9aa75f638c17f58f6fad5e764ab967f2ffa04d755464527c4ad955923eeeb7ee")
}
fn cursor_sha() -> [u8; 32] {
    hex32("af6f9a947f656dcc2520279530af9d22830fd24958e63107505a1ac617140b04")
}

#[test]
fn build_matches_stigmem_ascii() {
    let m = Manifest::build(
        "2026-11-26T15:20:23.021365+00:00".to_string(),
        ASCII_NODE.to_string(),
        db_sha(),
        cursor_sha(),
        &key(),
    );
    assert_eq!(
        std::str::from_utf8(m.bytes()).unwrap(),
        std::str::from_utf8(ASCII).unwrap()
    );
    // PYTHONPATH=.../stigmem_node-0.9.0a12/src python3 -c 'import json,
    //   stigmem_node.snapshot as s; print(s._canonical_manifest_body(json.loads(
    //   open("tests/vectors/manifest_ascii.json").read())).decode())'
    assert_eq!(
        std::str::from_utf8(&m.canonical_body()).unwrap(),
        "{\"artifacts\":{\"artifacts/schema_migration_cursor.json\":\"sha256:\
         af6f9a947f656dcc2520279530af9d22830fd24958e63107505a1ac617140b04\",\
         \"artifacts/stigmem.db\":\"sha256:\
         9aa75f638c17f58f6fad5e764ab967f2ffa04d755464527c4ad955923eeeb7ee\"},\
         \"created_at\":\"2026-11-26T15:20:23.021365+00:00\",\
         \"node_id\":\"stigmem:node:6f1c0a52-3b7e-4d2a-9c1e-5a8f0b2d4e61\",\
         \"signer_pubkey\":\"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\",\"version\":1}"
    );
    // The signature stigmem (cryptography 48.0.0) made over that body, as in the file.
    assert_eq!(
        b64url_encode(m.signature()),
        "1PICFs0lerq4pqK32p6i1UhMUQb8ufzpgjosnjoqanJN4FLKo2SvWB6CpWaNlv04_tOlpLhvp2xwhFeNlFtIAQ"
    );
    m.verify_self_signature().unwrap();
}

#[test]
fn build_matches_stigmem_unicode_node_id() {
    let m = Manifest::build(
        "2026-01-02T03:04:05+00:00".to_string(),
        UNICODE_NODE.to_string(),
        db_sha(),
        cursor_sha(),
        &key(),
    );
    assert_eq!(
        std::str::from_utf8(m.bytes()).unwrap(),
        std::str::from_utf8(UNICODE).unwrap()
    );
    // Same python command as above, on manifest_unicode.json.
    let body = String::from_utf8(m.canonical_body()).unwrap();
    assert!(
        body.contains(
            r#""node_id":"caf\u00e9 \u65e5\u672c \ud83d\ude00 \ud834\udd1e \"q\"\\/\t\u007f","#
        ),
        "{body}"
    );
    assert_eq!(
        b64url_encode(m.signature()),
        "Xvqd5rs4SEIMcbpGtQxbpadNt0VoJReG0x7tlQMdMgoHr5PB7dgSY8zQTnBxoNv3nlvJ_ziEbhMCoKHoTZKHAg"
    );
}

#[test]
fn parse_stigmem_vectors() {
    for (bytes, node, created) in [
        (ASCII, ASCII_NODE, "2026-11-26T15:20:23.021365+00:00"),
        (UNICODE, UNICODE_NODE, "2026-01-02T03:04:05+00:00"),
    ] {
        let m = Manifest::parse(bytes).unwrap();
        assert_eq!(m.bytes(), bytes);
        assert_eq!(m.node_id(), node);
        assert_eq!(m.created_at(), created);
        assert_eq!(m.signer(), &key().public());
        assert_eq!(m.artifact_sha256(DB_ARTIFACT), Some(db_sha()));
        assert_eq!(m.artifact_sha256(CURSOR_ARTIFACT), Some(cursor_sha()));
        assert_eq!(m.artifact_sha256("artifacts/other"), None);
        assert_eq!(
            m.artifacts()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [DB_ARTIFACT, CURSOR_ARTIFACT]
        );
        m.verify_self_signature().unwrap();
        let rebuilt = Manifest::build(
            created.to_string(),
            node.to_string(),
            m.db_sha256(),
            m.cursor_sha256(),
            &key(),
        );
        assert_eq!(rebuilt, m);
    }
}

#[test]
fn unknown_fields_and_artifacts_are_kept_and_signed() {
    let m = Manifest::parse(EXTRA).unwrap();
    m.verify_self_signature().unwrap();
    let names: Vec<_> = m.fields().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "version",
            "created_at",
            "node_id",
            "signer_pubkey",
            "artifacts",
            "comment",
            "future",
            "signature"
        ]
    );
    assert_eq!(m.artifacts().len(), 3);
    assert_eq!(m.artifact_sha256("artifacts/extra.bin"), Some([0xab; 32]));
    // Re-rendering the parsed fields gives stigmem's bytes back, floats included.
    assert_eq!(
        dumps_indent2(&Value::Object(m.fields().clone())).as_bytes(),
        EXTRA
    );
}

#[test]
fn duplicate_keys_resolve_as_in_python() {
    // Python's json.loads keeps the last value of a repeated key, at the first key's
    // position; stigmem then signs and checks that. Parsing must agree, or a manifest
    // would verify in one tool and not the other.
    let text = std::str::from_utf8(ASCII).unwrap().replacen(
        "  \"node_id\"",
        "  \"node_id\": \"stigmem:node:decoy\",\n  \"node_id\"",
        1,
    );
    let m = Manifest::parse(text.as_bytes()).unwrap();
    assert_eq!(m.node_id(), ASCII_NODE);
    assert_eq!(m.bytes(), text.as_bytes());
    m.verify_self_signature().unwrap();
}

#[test]
fn build_then_parse_round_trips() {
    let m = Manifest::build(
        python_isoformat_utc(chrono::Utc::now()),
        "stigmem:node:é😀".to_string(),
        [7; 32],
        [9; 32],
        &key(),
    );
    let p = Manifest::parse(m.bytes()).unwrap();
    assert_eq!(p.bytes(), m.bytes());
    assert_eq!(p, m);
    p.verify_self_signature().unwrap();
}

#[test]
fn cursor_matches_stigmem_and_its_declared_hash() {
    let text = cursor_json(&["0001".to_string(), "0002".to_string()]);
    assert_eq!(text.as_bytes(), CURSOR);
    let digest: [u8; 32] = Sha256::digest(CURSOR).into();
    assert_eq!(digest, cursor_sha());
    assert_eq!(
        sha256_hex_prefixed(&digest),
        "sha256:af6f9a947f656dcc2520279530af9d22830fd24958e63107505a1ac617140b04"
    );
}

// ---- manifest: refusals ------------------------------------------------------------------

/// The ASCII vector with `edit` applied to its fields, re-rendered as stigmem would.
fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let Value::Object(mut map) = serde_json::from_slice(ASCII).unwrap() else {
        unreachable!()
    };
    edit(&mut map);
    dumps_indent2(&Value::Object(map)).into_bytes()
}

fn message(r: stigvault::Result<Manifest>) -> (Error, String) {
    let e = r.unwrap_err();
    let s = e.to_string();
    (e, s)
}

#[test]
fn refuses_other_versions() {
    for bad in [json!(2), json!("1"), json!(1.0), json!(0)] {
        let (e, s) = message(Manifest::parse(&edited(|m| {
            m.insert("version".into(), bad.clone());
        })));
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{s}");
        assert!(s.contains(&format!("version {MANIFEST_VERSION}")), "{s}");
    }
    let (e, s) = message(Manifest::parse(&edited(|m| {
        m.shift_remove("version");
    })));
    assert!(
        matches!(e, Error::Malformed { .. }) && s.contains("version"),
        "{s}"
    );
}

#[test]
fn refuses_missing_required_artifact() {
    for name in [DB_ARTIFACT, CURSOR_ARTIFACT] {
        let (e, s) = message(Manifest::parse(&edited(|m| {
            m["artifacts"].as_object_mut().unwrap().shift_remove(name);
        })));
        assert!(matches!(e, Error::Malformed { .. }), "{s}");
        assert!(s.contains(name), "{s}");
    }
}

#[test]
fn refuses_bad_artifact_hashes_and_names() {
    for (name, hash) in [
        (DB_ARTIFACT, json!("sha256:9AA75F")),
        (
            DB_ARTIFACT,
            json!(sha256_hex_prefixed(&[1; 32]).to_uppercase()),
        ),
        (DB_ARTIFACT, json!(format!("md5:{}", "0".repeat(64)))),
        (DB_ARTIFACT, json!(17)),
        ("../escape", json!(sha256_hex_prefixed(&[1; 32]))),
        ("/abs", json!(sha256_hex_prefixed(&[1; 32]))),
    ] {
        let (e, s) = message(Manifest::parse(&edited(|m| {
            m["artifacts"]
                .as_object_mut()
                .unwrap()
                .insert(name.to_string(), hash.clone());
        })));
        assert!(matches!(e, Error::Malformed { .. }), "{s}");
        assert!(s.contains(name), "{s}");
    }
    let (_, s) = message(Manifest::parse(&edited(|m| {
        m.insert("artifacts".into(), json!([]));
    })));
    assert!(s.contains("\"artifacts\" is an array"), "{s}");
}

#[test]
fn refuses_bad_base64() {
    let (e, s) = message(Manifest::parse(&edited(|m| {
        m.insert(
            "signer_pubkey".into(),
            json!("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"),
        );
    })));
    assert!(matches!(e, Error::InvalidKey { .. }), "{s}");
    assert!(s.contains("signer_pubkey") && s.contains("'/'"), "{s}");

    let (e, s) = message(Manifest::parse(&edited(|m| {
        let sig = format!("+{}", &m["signature"].as_str().unwrap()[1..]);
        m.insert("signature".into(), json!(sig));
    })));
    assert!(matches!(e, Error::Malformed { .. }), "{s}");
    assert!(s.contains("signature") && s.contains("'+'"), "{s}");
}

#[test]
fn refuses_wrong_key_and_signature_lengths() {
    let (e, s) = message(Manifest::parse(&edited(|m| {
        m.insert("signer_pubkey".into(), json!(b64url_encode(&[3; 31])));
    })));
    assert!(matches!(e, Error::InvalidKey { .. }), "{s}");
    assert!(s.contains("signer_pubkey") && s.contains("31 bytes"), "{s}");

    let (e, s) = message(Manifest::parse(&edited(|m| {
        m.insert("signature".into(), json!(b64url_encode(&[3; 65])));
    })));
    assert!(matches!(e, Error::Malformed { .. }), "{s}");
    assert!(s.contains("signature") && s.contains("65 bytes"), "{s}");
}

#[test]
fn refuses_wrong_shapes() {
    for (bytes, needle) in [
        (b"\xff{}".to_vec(), "not UTF-8"),
        (b"{\"version\": 1,".to_vec(), "not valid JSON"),
        (b"[1]".to_vec(), "an array"),
        (
            edited(|m| {
                m.insert("node_id".into(), json!(5));
            }),
            "\"node_id\" is a number",
        ),
        (
            edited(|m| {
                m.shift_remove("created_at");
            }),
            "\"created_at\" is missing",
        ),
    ] {
        let (e, s) = message(Manifest::parse(&bytes));
        assert!(matches!(e, Error::Malformed { .. }), "{s}");
        assert!(s.contains(needle) && s.contains("manifest.json"), "{s}");
    }
}

#[test]
fn forged_field_fails_the_signature() {
    let forged = edited(|m| {
        m.insert("node_id".into(), json!("stigmem:node:evil"));
    });
    let m = Manifest::parse(&forged).unwrap();
    let e = m.verify_self_signature().unwrap_err();
    assert!(matches!(e, Error::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("manifest.json"), "{e}");

    // Even whitespace in an unknown field counts: the body is signed, not the file.
    let m = Manifest::parse(&edited(|m| {
        m.insert("extra".into(), json!(" "));
    }))
    .unwrap();
    assert!(m.verify_self_signature().is_err());
}

#[test]
fn self_signature_is_not_trust() {
    // An attacker re-signs a tampered manifest with a key of their own: it is internally
    // consistent, so only the trust set tells it apart.
    let attacker = SecretKey::from_seed(&[42; 32]);
    let m = Manifest::build(
        "2026-11-26T15:20:23.021365+00:00".to_string(),
        ASCII_NODE.to_string(),
        [0; 32],
        cursor_sha(),
        &attacker,
    );
    m.verify_self_signature().unwrap();
    let mut trust = TrustSet::new();
    trust.insert(key().public());
    assert!(!trust.contains(m.signer()));
    assert!(trust.contains(Manifest::parse(ASCII).unwrap().signer()));
}

#[test]
fn canonical_body_control_and_astral_characters() {
    // Every escape class at once in the signed body: NUL and other C0 controls as \u00XX,
    // the short escapes \b \f \n \r, U+2028 and U+FFFD as \uXXXX, astral characters (U+1F600,
    // U+10FFFF) as lowercase surrogate pairs, and '/' unescaped. Made with:
    // python3 -c 'import json,base64; from cryptography.hazmat.primitives.asymmetric.ed25519
    //   import Ed25519PrivateKey as K; k=K.from_private_bytes(bytes(range(32)));
    //   pk=base64.urlsafe_b64encode(k.public_key().public_bytes_raw()).rstrip(b"=").decode();
    //   b=json.dumps({"version":1,"created_at":"2026-01-02T03:04:05+00:00",
    //   "node_id":"n\x00\x08\x0c\n\r\x1f \u00ff\u2028\ufffd\U0001f600\U0010ffff/",
    //   "signer_pubkey":pk,"artifacts":{"artifacts/stigmem.db":"sha256:"+"0"*64,
    //   "artifacts/schema_migration_cursor.json":"sha256:"+"1"*64}},sort_keys=True,
    //   separators=(",",":")); print(b);
    //   print(base64.urlsafe_b64encode(k.sign(b.encode())).rstrip(b"=").decode())'
    let m = Manifest::build(
        "2026-01-02T03:04:05+00:00".to_string(),
        "n\u{0}\u{8}\u{c}\n\r\u{1f} \u{ff}\u{2028}\u{fffd}\u{1f600}\u{10ffff}/".to_string(),
        [0u8; 32],
        [0x11u8; 32],
        &key(),
    );
    assert_eq!(
        String::from_utf8(m.canonical_body()).unwrap(),
        concat!(
            r#"{"artifacts":{"artifacts/schema_migration_cursor.json":"sha256:"#,
            "1111111111111111111111111111111111111111111111111111111111111111",
            r#"","artifacts/stigmem.db":"sha256:"#,
            "0000000000000000000000000000000000000000000000000000000000000000",
            r#""},"created_at":"2026-01-02T03:04:05+00:00","#,
            r#""node_id":"n\u0000\b\f\n\r\u001f \u00ff\u2028\ufffd\ud83d\ude00\udbff\udfff/","#,
            r#""signer_pubkey":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg","version":1}"#
        )
    );
    assert_eq!(
        b64url_encode(m.signature()),
        "akEYUbN7SsJGu3Y04ZRQ1yRdEWRDKZbBcS-3xd3Pk7BkaAVS4RuHvLEPES-w--Pp5nn83OS4yCEDSmEEj1kHDQ"
    );
    // And it parses back to the same body from its own indent=2 rendering.
    let back = Manifest::parse(m.bytes()).unwrap();
    assert_eq!(back.canonical_body(), m.canonical_body());
    back.verify_self_signature().unwrap();
}
