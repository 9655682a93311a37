//! stigmem's snapshot manifest (`manifest.json`, version 1), byte-exact.
//!
//! The file is Python's `json.dumps(manifest, indent=2)` of an object with the keys
//! `version`, `created_at`, `node_id`, `signer_pubkey`, `artifacts` and `signature`, in that
//! order, with no trailing newline. The signature is Ed25519 over the *canonical body*:
//! `json.dumps(manifest minus "signature", sort_keys=True, separators=(",", ":"))` as UTF-8
//! (see [`crate::format::pyjson`]).
//!
//! A [`Manifest`] keeps the exact bytes it came from and every top-level field, known or
//! not, because unknown fields are part of the signed body. A manifest that parses and
//! whose signature verifies for its own declared signer is still not *trusted*: anyone can
//! sign with a key of their own. Trust is decided by the caller against a
//! [`crate::sign::TrustSet`].

use serde_json::{Map, Value};

use crate::format::pyjson::{dumps_canonical, dumps_indent2, json_kind};
use crate::sign::{b64url_decode, b64url_encode, PublicKey, SecretKey};
use crate::{Error, Result};

/// Archive name of the database artifact.
pub const DB_ARTIFACT: &str = "artifacts/stigmem.db";
/// Archive name of the schema migration cursor artifact.
pub const CURSOR_ARTIFACT: &str = "artifacts/schema_migration_cursor.json";
/// The only manifest version stigmem writes and this module reads.
pub const MANIFEST_VERSION: u64 = 1;

/// Name used for the manifest in error messages.
const WHAT: &str = "manifest.json";

/// A parsed or freshly built stigmem manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    bytes: Vec<u8>,
    fields: Map<String, Value>,
    created_at: String,
    node_id: String,
    signer: PublicKey,
    signature: [u8; 64],
    artifacts: Vec<(String, [u8; 32])>,
}

impl Manifest {
    /// Parses and checks a `manifest.json`.
    ///
    /// Checks the shape only (version, field types, key and signature lengths, artifact
    /// hashes, both required artifacts); the signature is checked by
    /// [`Manifest::verify_self_signature`] and trust by the caller.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let text = std::str::from_utf8(bytes).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(malformed(format!(
                "top-level value is {}, expected an object",
                json_kind(&value)
            )));
        };

        // The version comes first so that a future format is reported as such rather than
        // as whatever field it happens to have changed.
        match fields.get("version") {
            None => return Err(malformed("field \"version\" is missing")),
            Some(Value::Number(n)) if n.as_u64() == Some(MANIFEST_VERSION) => {}
            Some(other) => {
                return Err(Error::UnsupportedFormat {
                    what: WHAT.to_string(),
                    found: format!("version {other}"),
                    expected: format!("version {MANIFEST_VERSION}"),
                })
            }
        }

        let created_at = string_field(&fields, "created_at")?.to_string();
        let node_id = string_field(&fields, "node_id")?.to_string();
        let signer = PublicKey::from_b64url(
            string_field(&fields, "signer_pubkey")?,
            "signer_pubkey in manifest.json",
        )?;
        let signature = parse_signature(string_field(&fields, "signature")?)?;
        let artifacts = parse_artifacts(&fields)?;

        Ok(Manifest {
            bytes: bytes.to_vec(),
            fields,
            created_at,
            node_id,
            signer,
            signature,
            artifacts,
        })
    }

    /// Builds and signs the manifest exactly as stigmem's `snapshot_create` writes it.
    ///
    /// `created_at` is normally [`python_isoformat_utc`] of the capture time; `node_id` may
    /// be any text (stigmem escapes non-ASCII in both the file and the signed body).
    pub fn build(
        created_at: String,
        node_id: String,
        db_sha256: [u8; 32],
        cursor_sha256: [u8; 32],
        key: &SecretKey,
    ) -> Manifest {
        let signer = key.public();
        let mut artifact_map = Map::new();
        artifact_map.insert(
            DB_ARTIFACT.to_string(),
            Value::String(sha256_hex_prefixed(&db_sha256)),
        );
        artifact_map.insert(
            CURSOR_ARTIFACT.to_string(),
            Value::String(sha256_hex_prefixed(&cursor_sha256)),
        );

        let mut fields = Map::new();
        fields.insert("version".to_string(), Value::from(MANIFEST_VERSION));
        fields.insert("created_at".to_string(), Value::String(created_at.clone()));
        fields.insert("node_id".to_string(), Value::String(node_id.clone()));
        fields.insert(
            "signer_pubkey".to_string(),
            Value::String(signer.to_b64url()),
        );
        fields.insert("artifacts".to_string(), Value::Object(artifact_map));

        // `signature` is not in the map yet, so the canonical body is the map itself.
        let signature = key.sign(dumps_canonical(&Value::Object(fields.clone())).as_bytes());
        fields.insert(
            "signature".to_string(),
            Value::String(b64url_encode(&signature)),
        );

        // Python's `Path.write_text(json.dumps(...))` adds no trailing newline.
        let bytes = dumps_indent2(&Value::Object(fields.clone())).into_bytes();
        Manifest {
            bytes,
            fields,
            created_at,
            node_id,
            signer,
            signature,
            artifacts: vec![
                (DB_ARTIFACT.to_string(), db_sha256),
                (CURSOR_ARTIFACT.to_string(), cursor_sha256),
            ],
        }
    }

    /// The bytes that are signed: every top-level field except `signature`, in Python's
    /// canonical `json.dumps` form.
    pub fn canonical_body(&self) -> Vec<u8> {
        let body: Map<String, Value> = self
            .fields
            .iter()
            .filter(|(k, _)| k.as_str() != "signature")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        dumps_canonical(&Value::Object(body)).into_bytes()
    }

    /// Checks that the signature verifies for the signer the manifest itself declares.
    ///
    /// This only shows the manifest is intact *as signed by that key*; whether the key is
    /// trusted is for the caller to decide with a [`crate::sign::TrustSet`].
    pub fn verify_self_signature(&self) -> Result<()> {
        self.signer
            .verify(&self.canonical_body(), &self.signature)
            .map_err(|_| Error::BadSignature {
                what: WHAT.to_string(),
                signer: self.signer.to_b64url(),
            })
    }

    /// The exact bytes parsed, or written by [`Manifest::build`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every top-level field in file order, including unknown ones.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The `created_at` text as written (stigmem writes Python's `isoformat()` in UTC).
    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The `node_id` text.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The declared signer (not necessarily trusted).
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// The raw signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The declared SHA-256 of artifact `name`, if declared.
    pub fn artifact_sha256(&self, name: &str) -> Option<[u8; 32]> {
        self.artifacts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
    }

    /// The declared SHA-256 of the database artifact (always declared).
    pub fn db_sha256(&self) -> [u8; 32] {
        self.artifact_sha256(DB_ARTIFACT)
            .expect("parse and build both guarantee the database artifact is declared")
    }

    /// The declared SHA-256 of the cursor artifact (always declared).
    pub fn cursor_sha256(&self) -> [u8; 32] {
        self.artifact_sha256(CURSOR_ARTIFACT)
            .expect("parse and build both guarantee the cursor artifact is declared")
    }

    /// Every declared artifact and its SHA-256, in file order.
    pub fn artifacts(&self) -> &[(String, [u8; 32])] {
        &self.artifacts
    }
}

/// Shows the fields in their text forms; the raw bytes only by length, since they repeat
/// the fields.
impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let artifacts: Vec<(&str, String)> = self
            .artifacts
            .iter()
            .map(|(n, d)| (n.as_str(), sha256_hex_prefixed(d)))
            .collect();
        f.debug_struct("Manifest")
            .field("created_at", &self.created_at)
            .field("node_id", &self.node_id)
            .field("signer", &self.signer)
            .field("signature", &b64url_encode(&self.signature))
            .field("artifacts", &artifacts)
            .field("fields", &self.fields.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The cursor artifact's content: `json.dumps({"applied_migrations": applied}, indent=2)`.
/// stigmem lists the versions ascending, and writes `[]` when there is no migrations table.
pub fn cursor_json(applied: &[String]) -> String {
    let list = applied.iter().cloned().map(Value::String).collect();
    let mut map = Map::new();
    map.insert("applied_migrations".to_string(), Value::Array(list));
    dumps_indent2(&Value::Object(map))
}

/// Python's `datetime.isoformat()` for an aware UTC time, as stigmem's `created_at`:
/// `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`, the fraction only when its microseconds are not
/// zero. Sub-microsecond digits are dropped; a leap second (which Python cannot represent)
/// is shown as `:59.999999`.
pub fn python_isoformat_utc(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = (t.nanosecond() / 1_000).min(999_999);
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out.push_str("+00:00");
    out
}

/// `sha256:<64 lowercase hex>`, as stigmem declares artifact hashes.
pub fn sha256_hex_prefixed(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Parses `sha256:<64 lowercase hex>`; `what` names the value for the error message.
///
/// Uppercase hex is refused because stigmem compares the declared text with its own
/// lowercase rendering, so it would reject such a manifest too.
pub fn parse_sha256_prefixed(s: &str, what: &str) -> Result<[u8; 32]> {
    let bad = |reason: String| Error::malformed(what, reason);
    let hex_part = s
        .strip_prefix("sha256:")
        .ok_or_else(|| bad(format!("{s:?} does not start with \"sha256:\"")))?;
    if hex_part.len() != 64 {
        return Err(bad(format!(
            "{s:?} has {} hex digits, expected 64",
            hex_part.len()
        )));
    }
    if let Some(c) = hex_part
        .chars()
        .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(bad(format!(
            "{s:?} contains {c:?}; expected lowercase hex digits"
        )));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest)
        .map_err(|e| bad(format!("{s:?} is not hex: {e}")))?;
    Ok(digest)
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::malformed(WHAT, reason)
}

fn string_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(malformed(format!(
            "field {name:?} is {}, expected a string",
            json_kind(other)
        ))),
        None => Err(malformed(format!("field {name:?} is missing"))),
    }
}

fn parse_signature(s: &str) -> Result<[u8; 64]> {
    let raw = b64url_decode(s).map_err(|e| match e {
        Error::Malformed { reason, .. } => malformed(format!("field \"signature\": {reason}")),
        other => other,
    })?;
    <[u8; 64]>::try_from(raw.as_slice()).map_err(|_| {
        malformed(format!(
            "field \"signature\" decodes to {} bytes, expected 64 (an Ed25519 signature)",
            raw.len()
        ))
    })
}

fn parse_artifacts(fields: &Map<String, Value>) -> Result<Vec<(String, [u8; 32])>> {
    let map = match fields.get("artifacts") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(malformed(format!(
                "field \"artifacts\" is {}, expected an object",
                json_kind(other)
            )))
        }
        None => return Err(malformed("field \"artifacts\" is missing")),
    };
    let mut artifacts = Vec::with_capacity(map.len());
    for (name, value) in map {
        check_artifact_name(name)?;
        let what = format!("artifact {name:?} in manifest.json");
        let Value::String(s) = value else {
            return Err(Error::malformed(
                what,
                format!(
                    "hash is {}, expected a \"sha256:<hex>\" string",
                    json_kind(value)
                ),
            ));
        };
        artifacts.push((name.clone(), parse_sha256_prefixed(s, &what)?));
    }
    for required in [DB_ARTIFACT, CURSOR_ARTIFACT] {
        if !map.contains_key(required) {
            return Err(malformed(format!(
                "field \"artifacts\" does not declare {required:?}"
            )));
        }
    }
    Ok(artifacts)
}

/// Artifact names become paths when a snapshot is unpacked or checked, so only plain
/// relative paths are accepted; stigmem never writes anything else.
fn check_artifact_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if plain {
        Ok(())
    } else {
        Err(malformed(format!(
            "artifact name {name:?} is not a plain relative path"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn isoformat_shows_microseconds_only_when_nonzero() {
        // python3 -c 'from datetime import *; print(datetime(2026,11,26,15,20,23,21365,
        //   tzinfo=UTC).isoformat(), datetime(2026,1,2,3,4,5,tzinfo=UTC).isoformat())'
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 15, 20, 23)
            .unwrap()
            .with_nanosecond(21_365_999)
            .unwrap();
        assert_eq!(python_isoformat_utc(t), "2026-11-26T15:20:23.021365+00:00");
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(python_isoformat_utc(t), "2026-01-02T03:04:05+00:00");
    }

    #[test]
    fn sha256_prefixed_round_trip_and_refusals() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 9) as u8);
        let s = sha256_hex_prefixed(&d);
        assert_eq!(parse_sha256_prefixed(&s, "x").unwrap(), d);
        assert!(parse_sha256_prefixed(&s.to_uppercase(), "x").is_err());
        assert!(parse_sha256_prefixed(&s[7..], "x").is_err());
        assert!(parse_sha256_prefixed(&s[..70], "x").is_err());
    }

    #[test]
    fn cursor_json_empty_and_filled() {
        // python3 -c 'import json; print(json.dumps({"applied_migrations": []}, indent=2))'
        assert_eq!(cursor_json(&[]), "{\n  \"applied_migrations\": []\n}");
        // python3 -c 'import json; print(json.dumps({"applied_migrations": ["001", "002"]},
        //   indent=2))'
        assert_eq!(
            cursor_json(&["001".to_string(), "002".to_string()]),
            "{\n  \"applied_migrations\": [\n    \"001\",\n    \"002\"\n  ]\n}"
        );
    }
}
