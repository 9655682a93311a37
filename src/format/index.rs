//! Signed index entries and checkpoints.
//!
//! An entry is `header | body_len: u32 LE | body (compact JSON) | signature (64)`. The
//! signature is Ed25519 by `body.signer_pubkey` over [`ENTRY_DOMAIN`] followed by the body
//! bytes; the domain prefix keeps an entry signature from ever being valid as a stigmem
//! manifest signature made with the same key. The entry id is BLAKE3 of the whole object, and
//! its key is `index/entries/<written_at_ms, 13 digits>-<entry id>`.
//!
//! Entries name the entries their writer saw as heads (`parents`), so they form a hash-linked
//! DAG: removing or altering any entry that a later one names breaks a link.
//!
//! A checkpoint is `header | zstd(count: u64, then per entry: key_len u32, key, len u32,
//! entry object)`. It is a cache: every entry inside is verified exactly as if it had been
//! fetched on its own, so a checkpoint needs no signature of its own.

use serde::{Deserialize, Serialize};

use super::id::EntryId;
use super::magic::{self, Kind, Reader};
use crate::error::{Error, Result};
use crate::sign::{PublicKey, SecretKey};

/// Domain separation prefix of entry signatures.
pub const ENTRY_DOMAIN: &[u8] = b"stigvault/index-entry/v1\0";
/// Prefix of entry keys.
pub const ENTRIES_PREFIX: &str = "index/entries";
/// Prefix of checkpoint keys.
pub const CHECKPOINTS_PREFIX: &str = "index/checkpoints";
const MAX_ENTRY_BYTES: usize = 64 << 10;
const MAX_CHECKPOINT_BYTES: usize = 1 << 30;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A snapshot was added.
    Snapshot,
    /// A tombstone: the snapshot named by `snapshot` was forgotten. Its other fields repeat
    /// the forgotten snapshot's entry (with `new_bytes` 0); `signer_pubkey` is whoever forgot
    /// it. Readers that predate this kind refuse the entry rather than ignore it.
    Forget,
}

/// The signed body of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    /// What this entry records.
    pub kind: EntryKind,
    /// The snapshot id (hex).
    pub snapshot: String,
    /// The manifest's `created_at`.
    pub created_at: String,
    /// The manifest's `node_id`.
    pub node_id: String,
    /// base64url Ed25519 key that signed this entry.
    pub signer_pubkey: String,
    /// SHA-256 of the database artifact (hex).
    pub db_sha256: String,
    /// Database length.
    pub db_bytes: u64,
    /// Bytes of objects this snapshot's push added to the store.
    pub new_bytes: u64,
    /// Keys of the entries the writer saw as heads, sorted.
    pub parents: Vec<String>,
    /// Writer's clock when the entry was made (ms since the Unix epoch); also in the key.
    pub written_at_ms: u64,
}

/// A verified index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The object key it is stored under.
    pub key: String,
    /// BLAKE3 of the object.
    pub id: EntryId,
    /// The signed body.
    pub body: EntryBody,
    /// The exact object bytes.
    pub raw: Vec<u8>,
}

/// The key an entry object is stored under.
pub fn entry_key(written_at_ms: u64, id: &EntryId) -> String {
    format!("{ENTRIES_PREFIX}/{written_at_ms:013}-{id}")
}

impl Entry {
    /// Sign `body` with `key` and encode it.
    pub fn sign(body: EntryBody, key: &SecretKey) -> Result<Entry> {
        if body.signer_pubkey != key.public().to_b64url() {
            return Err(Error::InvalidInput(
                "index entry signer_pubkey does not match the signing key".into(),
            ));
        }
        let json = serde_json::to_vec(&body).expect("entry body serialises");
        let mut msg = ENTRY_DOMAIN.to_vec();
        msg.extend_from_slice(&json);
        let sig = key.sign(&msg);
        let mut raw = Kind::Entry.header().to_vec();
        raw.extend_from_slice(&(json.len() as u32).to_le_bytes());
        raw.extend_from_slice(&json);
        raw.extend_from_slice(&sig);
        let id = EntryId::of(&raw);
        Ok(Entry {
            key: entry_key(body.written_at_ms, &id),
            id,
            body,
            raw,
        })
    }

    /// Parse and verify an entry fetched from `key`: the key must name the object's hash and
    /// time, and the signature must verify for the declared signer.
    pub fn verify(key: &str, raw: &[u8]) -> Result<Entry> {
        let what = format!("index entry {key}");
        let tampered = |reason: String| Error::IndexTampered(format!("{what}: {reason}"));
        if raw.len() > MAX_ENTRY_BYTES {
            return Err(tampered(format!("{} bytes is too large", raw.len())));
        }
        let (ms, hash) = parse_entry_key(key).ok_or_else(|| tampered("malformed key".into()))?;
        let id = EntryId::of(raw);
        if id != hash {
            return Err(tampered(format!(
                "content hashes to {id}, the key says {hash}"
            )));
        }
        let rest = Kind::Entry.strip(raw, &what)?;
        let mut r = Reader::new(rest, &what);
        let len = r.u32()? as usize;
        let json = r.take(len)?;
        let sig = r.take(64)?;
        r.finish()?;
        let body: EntryBody =
            serde_json::from_slice(json).map_err(|e| Error::malformed(&what, e.to_string()))?;
        if body.written_at_ms != ms {
            return Err(tampered(format!(
                "body time {} differs from key time {ms}",
                body.written_at_ms
            )));
        }
        let signer = PublicKey::from_b64url(&body.signer_pubkey, "index entry signer")?;
        let mut msg = ENTRY_DOMAIN.to_vec();
        msg.extend_from_slice(json);
        signer.verify(&msg, sig).map_err(|_| Error::BadSignature {
            what: what.clone(),
            signer: body.signer_pubkey.clone(),
        })?;
        Ok(Entry {
            key: key.to_string(),
            id,
            body,
            raw: raw.to_vec(),
        })
    }
}

/// Split `index/entries/<ms>-<hex>` into its parts.
pub fn parse_entry_key(key: &str) -> Option<(u64, EntryId)> {
    let name = key.strip_prefix(ENTRIES_PREFIX)?.strip_prefix('/')?;
    let (ms, hex) = name.split_once('-')?;
    if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ms.parse().ok()?, EntryId::from_hex(hex).ok()?))
}

/// Encode a checkpoint holding `entries`, and return `(key, bytes)`.
pub fn encode_checkpoint(entries: &[&Entry]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        body.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        body.extend_from_slice(e.key.as_bytes());
        body.extend_from_slice(&(e.raw.len() as u32).to_le_bytes());
        body.extend_from_slice(&e.raw);
    }
    let mut out = Kind::Checkpoint.header().to_vec();
    out.extend_from_slice(&magic::compress(&body, 3));
    let key = format!(
        "{CHECKPOINTS_PREFIX}/{:010}-{}",
        entries.len(),
        blake3::hash(&out).to_hex()
    );
    (key, out)
}

/// The entry count a checkpoint key declares.
pub fn checkpoint_count(key: &str) -> Option<u64> {
    let name = key.strip_prefix(CHECKPOINTS_PREFIX)?.strip_prefix('/')?;
    let (n, _) = name.split_once('-')?;
    n.parse().ok()
}

/// Decode a checkpoint and verify every entry in it.
pub fn decode_checkpoint(key: &str, bytes: &[u8]) -> Result<Vec<Entry>> {
    let what = format!("checkpoint {key}");
    let body = magic::decompress_bounded(
        Kind::Checkpoint.strip(bytes, &what)?,
        MAX_CHECKPOINT_BYTES,
        &what,
    )?;
    let mut r = Reader::new(&body, &what);
    let n = r.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kl = r.u32()? as usize;
        let k = std::str::from_utf8(r.take(kl)?)
            .map_err(|_| Error::malformed(&what, "entry key is not UTF-8"))?;
        let l = r.u32()? as usize;
        out.push(Entry::verify(k, r.take(l)?)?);
    }
    r.finish()?;
    if checkpoint_count(key) != Some(n as u64) {
        return Err(Error::IndexTampered(format!(
            "{what}: holds {n} entries, its key says otherwise"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(key: &SecretKey, ms: u64) -> EntryBody {
        EntryBody {
            kind: EntryKind::Snapshot,
            snapshot: "00".repeat(32),
            created_at: "2026-11-26T00:00:00+00:00".into(),
            node_id: "stigmem:node:x".into(),
            signer_pubkey: key.public().to_b64url(),
            db_sha256: "11".repeat(32),
            db_bytes: 4096,
            new_bytes: 100,
            parents: vec![],
            written_at_ms: ms,
        }
    }

    fn key() -> SecretKey {
        SecretKey::from_seed(&[7u8; 32])
    }

    #[test]
    fn sign_verify_round_trip() {
        let k = key();
        let e = Entry::sign(body(&k, 1_700_000_000_000), &k).unwrap();
        let v = Entry::verify(&e.key, &e.raw).unwrap();
        assert_eq!(v, e);
        assert!(e.key.starts_with("index/entries/1700000000000-"));
    }

    #[test]
    fn known_answer_signature() {
        // Ed25519 is deterministic: pinning the id pins body encoding, domain and signature.
        let k = key();
        let e = Entry::sign(body(&k, 1), &k).unwrap();
        let again = Entry::sign(body(&k, 1), &k).unwrap();
        assert_eq!(e.raw, again.raw);
        assert_eq!(&e.raw[..8], b"SVENTR\0\x01");
    }

    #[test]
    fn tampering_is_detected() {
        let k = key();
        let e = Entry::sign(body(&k, 5), &k).unwrap();
        // Altered byte: the hash no longer matches the key.
        let mut raw = e.raw.clone();
        raw[30] ^= 1;
        assert!(matches!(
            Entry::verify(&e.key, &raw),
            Err(Error::IndexTampered(_))
        ));
        // Re-keyed to the altered hash: the signature no longer verifies.
        let forged_key = entry_key(5, &EntryId::of(&raw));
        assert!(Entry::verify(&forged_key, &raw).is_err());
        // Moved to another time: refused.
        let moved = entry_key(6, &e.id);
        assert!(Entry::verify(&moved, &e.raw).is_err());
    }

    #[test]
    fn known_answer_forget_entry() {
        // A tombstone is an ordinary entry body with kind "forget": pinning its JSON keeps the
        // body layout unchanged for readers of snapshot entries.
        let k = key();
        let mut b = body(&k, 1);
        b.kind = EntryKind::Forget;
        b.new_bytes = 0;
        let e = Entry::sign(b.clone(), &k).unwrap();
        let json = std::str::from_utf8(&e.raw[12..e.raw.len() - 64]).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"forget","snapshot":"0000"#),
            "{json}"
        );
        let v = Entry::verify(&e.key, &e.raw).unwrap();
        assert_eq!(v.body, b);
        assert_eq!(e.raw, Entry::sign(b, &k).unwrap().raw);
    }

    #[test]
    fn checkpoint_round_trip() {
        let k = key();
        let a = Entry::sign(body(&k, 1), &k).unwrap();
        let b = Entry::sign(body(&k, 2), &k).unwrap();
        let (ck, bytes) = encode_checkpoint(&[&a, &b]);
        assert_eq!(checkpoint_count(&ck), Some(2));
        assert_eq!(decode_checkpoint(&ck, &bytes).unwrap(), vec![a, b]);
    }
}
