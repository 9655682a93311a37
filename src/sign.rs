//! Ed25519 keys, signing and trust sets, in stigmem's encodings.
//!
//! stigmem stores every key as base64url (URL-safe alphabet, padding stripped) of the raw
//! key bytes: 32 bytes for a public key, the 32-byte seed for a secret key. Its secondary
//! signing key file (`--sign-with`) holds that text; its trusted-keys file
//! (`--trusted-keys`) is a JSON array of such public keys. This module reads and writes
//! those encodings.
//!
//! A [`TrustSet`] is the only thing that decides whether a signer is trusted. A manifest's
//! own `signer_pubkey` proves nothing by itself: anyone can re-sign a tampered snapshot with
//! a fresh key and declare that key.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::format::pyjson::json_kind;
use crate::{Error, Result};

/// Length of a raw Ed25519 public key, and of a secret key seed.
pub const KEY_LENGTH: usize = 32;
/// Length of a raw Ed25519 signature.
pub const SIGNATURE_LENGTH: usize = 64;

/// URL-safe alphabet; writes no padding and reads text with or without it, as stigmem's
/// `_b64url_decode` re-pads before decoding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes bytes as base64url without padding, as stigmem writes keys and signatures.
pub fn b64url_encode(data: &[u8]) -> String {
    B64URL.encode(data)
}

/// Decodes base64url text, with or without `=` padding.
///
/// Stricter than Python's `base64.urlsafe_b64decode`, which silently skips characters
/// outside the alphabet: here any such character (including whitespace and the standard
/// alphabet's `+` and `/`) is refused, so a damaged or mistyped key is reported rather than
/// decoded into different bytes. A final character with stray low bits (which Python
/// ignores) is refused too; stigmem never writes one.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>> {
    b64url_decode_reason(s).map_err(|reason| Error::malformed("base64url text", reason))
}

/// [`b64url_decode`] with the failure as a bare reason, for callers that name the input.
fn b64url_decode_reason(s: &str) -> std::result::Result<Vec<u8>, String> {
    // Checked here rather than left to the base64 crate so that the message can say which
    // character is wrong and hint at the usual mix-up with the standard alphabet.
    let body = s.trim_end_matches('=');
    if let Some((pos, c)) = body
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        let hint = match c {
            '+' | '/' => " (that is the standard base64 alphabet; base64url uses '-' and '_')",
            '=' => " (padding may only appear at the end)",
            c if c.is_whitespace() => " (whitespace is not allowed)",
            _ => "",
        };
        return Err(format!(
            "character {c:?} at offset {pos} is not in the base64url alphabet{hint}"
        ));
    }
    B64URL.decode(s).map_err(|e| match e {
        base64::DecodeError::InvalidLength(_) => format!(
            "{} base64url characters cannot encode whole bytes",
            body.len()
        ),
        base64::DecodeError::InvalidPadding => {
            "wrong amount of '=' padding for the text's length".to_string()
        }
        base64::DecodeError::InvalidLastSymbol(_, _) => {
            "last character has bits set beyond the encoded data (not canonical base64url)"
                .to_string()
        }
        other => other.to_string(),
    })
}

/// Decodes base64url text that must hold exactly `N` bytes; the reason names the length.
fn decode_fixed<const N: usize>(s: &str, noun: &str) -> std::result::Result<[u8; N], String> {
    if s.is_empty() {
        return Err("empty string".to_string());
    }
    let raw = b64url_decode_reason(s)?;
    <[u8; N]>::try_from(raw.as_slice())
        .map_err(|_| format!("decodes to {} bytes, expected {N} ({noun})", raw.len()))
}

/// An Ed25519 public key. Compared, ordered and hashed by its 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a base64url raw 32-byte public key; `what` names where it came from (a file, a
    /// flag, a manifest field) for the error message.
    pub fn from_b64url(s: &str, what: &str) -> Result<PublicKey> {
        let bytes = decode_fixed::<KEY_LENGTH>(s, "a raw Ed25519 public key")
            .map_err(|reason| invalid_key(what, reason))?;
        PublicKey::from_bytes(&bytes).map_err(|e| match e {
            Error::InvalidKey { reason, .. } => invalid_key(what, reason),
            other => other,
        })
    }

    /// Builds a key from its raw 32 bytes. Fails for byte strings that are not a point on
    /// the curve; weak (small-order) keys load but never verify anything.
    pub fn from_bytes(bytes: &[u8; KEY_LENGTH]) -> Result<PublicKey> {
        VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|_| {
            invalid_key(
                &format!("public key {}", b64url_encode(bytes)),
                "the 32 bytes are not a valid Ed25519 point",
            )
        })
    }

    /// The key as stigmem writes it: base64url of the raw bytes, unpadded.
    pub fn to_b64url(&self) -> String {
        b64url_encode(self.0.as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LENGTH] {
        self.0.as_bytes()
    }

    /// Checks `sig` over `msg`, failing with [`Error::BadSignature`].
    ///
    /// Uses strict verification (no small-order keys or malleable signatures), which every
    /// signature made by a real Ed25519 signer, including stigmem's, passes.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        let bad = || Error::BadSignature {
            what: "signed message".to_string(),
            signer: self.to_b64url(),
        };
        let sig = <[u8; SIGNATURE_LENGTH]>::try_from(sig).map_err(|_| bad())?;
        self.0
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .map_err(|_| bad())
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64url())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_b64url())
    }
}

/// An Ed25519 signing key (the 32-byte seed). Its `Debug` output shows only the public
/// half, so that logging a value holding one never leaks it; the key material is wiped
/// from memory on drop.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Makes a fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; KEY_LENGTH];
        getrandom::fill(&mut seed).map_err(|e| {
            Error::io(
                "reading the system random source for a new signing key",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let key = SecretKey::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// Builds a key from its raw 32-byte seed (the form stigmem stores).
    pub fn from_seed(seed: &[u8; KEY_LENGTH]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// Parses a base64url raw 32-byte seed, as in stigmem's `node_meta.federation_privkey`;
    /// `what` names the source for the error message (which never echoes the text).
    pub fn from_b64url(s: &str, what: &str) -> Result<SecretKey> {
        let seed = decode_fixed::<KEY_LENGTH>(s, "a raw Ed25519 secret key seed")
            .map_err(|reason| invalid_key(what, reason))?;
        Ok(SecretKey::from_seed(&seed))
    }

    /// The seed as stigmem writes it: base64url, unpadded.
    pub fn to_b64url(&self) -> String {
        b64url_encode(self.0.as_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `msg` (pure Ed25519, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LENGTH] {
        self.0.sign(msg).to_bytes()
    }

    /// Reads a stigmem secondary key file: text holding the base64url seed, with any
    /// surrounding whitespace ignored (stigmem strips it too).
    pub fn load_file(path: impl AsRef<Path>) -> Result<SecretKey> {
        let path = path.as_ref();
        let what = format!("in secret key file {}", path.display());
        let raw = std::fs::read(path)
            .map_err(|e| Error::io(format!("reading secret key file {}", path.display()), e))?;
        let text = String::from_utf8(raw)
            .map_err(|_| invalid_key(&what, "the file is not text (not valid UTF-8)"))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid_key(&what, "the file is empty"));
        }
        SecretKey::from_b64url(text, &what)
    }

    /// Writes the key in stigmem's key file format (base64url seed and a newline) to a new
    /// file readable by its owner only.
    ///
    /// Refuses to replace an existing file, since that would destroy a key. The file is
    /// written and synced under a temporary name in the same directory, then moved into
    /// place with a no-overwrite rename, so `path` never holds a partial key.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let ctx = |step: &str| format!("{step} secret key file {}", path.display());
        if path.symlink_metadata().is_ok() {
            return Err(Error::io(
                ctx("writing"),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file already exists there; refusing to overwrite a key",
                ),
            ));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".stigvault-key-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut tmp = builder
            .tempfile_in(dir)
            .map_err(|e| Error::io(ctx("creating a temporary file for"), e))?;
        let mut text = self.to_b64url();
        text.push('\n');
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io(ctx("writing"), e))?;
        tmp.persist_noclobber(path).map_err(|e| {
            let msg = if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                "a file already exists there; refusing to overwrite a key".to_string()
            } else {
                e.error.to_string()
            };
            Error::io(ctx("writing"), std::io::Error::new(e.error.kind(), msg))
        })?;
        // The rename is only durable once the directory entry is on disk.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(ctx("syncing the directory of"), e))?;
        Ok(())
    }
}

#[cfg(test)]
impl SecretKey {
    fn as_seed_for_test(&self) -> [u8; KEY_LENGTH] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

/// The set of public keys whose signatures a reader accepts.
///
/// An empty set trusts nothing, so every signature check against it fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustSet {
    keys: BTreeSet<PublicKey>,
}

impl TrustSet {
    /// An empty set.
    pub fn new() -> TrustSet {
        TrustSet::default()
    }

    /// Adds a key; returns false when it was already present.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        self.keys.insert(key)
    }

    /// Whether `key` is trusted.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    /// Whether the set trusts no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.keys.iter()
    }

    /// Parses a base64url public key and adds it; `what` names its source (e.g. a flag).
    pub fn add_b64url(&mut self, s: &str, what: &str) -> Result<()> {
        self.insert(PublicKey::from_b64url(s, what)?);
        Ok(())
    }

    /// Reads a stigmem trusted-keys file: a JSON array of base64url public key strings.
    /// Errors name the file and, for a bad key, its position and text.
    pub fn load_trusted_keys_file(path: impl AsRef<Path>) -> Result<TrustSet> {
        let path = path.as_ref();
        let what = || format!("trusted-keys file {}", path.display());
        let raw = std::fs::read(path)
            .map_err(|e| Error::io(format!("reading trusted-keys file {}", path.display()), e))?;
        let value: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::malformed(what(), format!("not valid JSON: {e}")))?;
        let serde_json::Value::Array(entries) = value else {
            return Err(Error::malformed(
                what(),
                format!(
                    "top-level value is {}, expected a JSON array of base64url public keys",
                    json_kind(&value)
                ),
            ));
        };
        let mut set = TrustSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let serde_json::Value::String(s) = entry else {
                return Err(Error::malformed(
                    what(),
                    format!(
                        "entry {i} is {}, expected a base64url public key string",
                        json_kind(entry)
                    ),
                ));
            };
            set.add_b64url(s, &format!("{s:?} (entry {i} of {})", what()))?;
        }
        Ok(set)
    }
}

impl Extend<PublicKey> for TrustSet {
    fn extend<I: IntoIterator<Item = PublicKey>>(&mut self, iter: I) {
        self.keys.extend(iter);
    }
}

impl FromIterator<PublicKey> for TrustSet {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        TrustSet {
            keys: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a TrustSet {
    type Item = &'a PublicKey;
    type IntoIter = std::collections::btree_set::Iter<'a, PublicKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter()
    }
}

fn invalid_key(what: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKey {
        what: what.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn b64url_round_trips_every_length_mod_3() {
        for len in 0..8 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let text = b64url_encode(&data);
            assert!(!text.contains('='));
            assert_eq!(b64url_decode(&text).unwrap(), data);
        }
    }

    #[test]
    fn b64url_accepts_padding_and_refuses_foreign_characters() {
        // python3 -c 'import base64; print(base64.urlsafe_b64encode(bytes([251,255])))'
        assert_eq!(b64url_decode("-_8=").unwrap(), vec![251, 255]);
        assert_eq!(b64url_decode("-_8").unwrap(), vec![251, 255]);
        let err = b64url_decode("+/8").unwrap_err().to_string();
        assert!(
            err.contains("'+'") && err.contains("standard base64"),
            "{err}"
        );
        let err = b64url_decode("AA AA").unwrap_err().to_string();
        assert!(err.contains("whitespace"), "{err}");
        assert!(b64url_decode("A").is_err());
        assert!(b64url_decode("AA=A").is_err());
    }

    #[test]
    fn known_public_key_for_seed_0_to_31() {
        // python3 -c 'from cryptography.hazmat.primitives.asymmetric.ed25519 import *;
        //   import base64; k=Ed25519PrivateKey.from_private_bytes(bytes(range(32)));
        //   print(base64.urlsafe_b64encode(k.public_key().public_bytes_raw()).rstrip(b"="))'
        let sk = SecretKey::from_seed(&seed());
        assert_eq!(
            sk.public().to_b64url(),
            "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
        );
        assert_eq!(
            sk.to_b64url(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        );
    }

    #[test]
    fn sign_verify_and_refuse_tampering() {
        let sk = SecretKey::from_seed(&seed());
        let pk = sk.public();
        let sig = sk.sign(b"hello");
        // python3 -c 'from cryptography.hazmat.primitives.asymmetric.ed25519 import *;
        //   import base64; k=Ed25519PrivateKey.from_private_bytes(bytes(range(32)));
        //   print(base64.urlsafe_b64encode(k.sign(b"hello")).rstrip(b"="))'
        assert_eq!(
            b64url_encode(&sig),
            "4af8qUqDUSeIW5ni66cz1u5b9dxGPtg4Xrbx3KoRF8DxUXUKEPRvWzeWqRIDV49wLIXGfDNLVomlFihNSZ9xDw"
        );
        pk.verify(b"hello", &sig).unwrap();
        assert!(matches!(
            pk.verify(b"hellO", &sig),
            Err(Error::BadSignature { .. })
        ));
        assert!(matches!(
            pk.verify(b"hello", &sig[..63]),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn secret_debug_hides_the_seed() {
        let sk = SecretKey::from_seed(&seed());
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&sk.to_b64url()), "{dbg}");
        assert!(dbg.contains(&sk.public().to_b64url()), "{dbg}");
    }

    #[test]
    fn key_file_round_trip_mode_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let sk = SecretKey::from_seed(&seed());
        sk.write_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", sk.to_b64url()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SecretKey::load_file(&path).unwrap().public(), sk.public());

        let other = SecretKey::from_seed(&[9; 32]);
        let err = other.write_file(&path).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_tolerates_whitespace_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("  {}=\r\n\n", b64url_encode(&seed()))).unwrap();
        assert_eq!(
            SecretKey::load_file(&path).unwrap().as_seed_for_test(),
            seed()
        );

        std::fs::write(&path, b64url_encode(&[1; 31])).unwrap();
        let err = SecretKey::load_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidKey { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("31 bytes, expected 32"), "{msg}");

        std::fs::write(&path, " \n").unwrap();
        let msg = SecretKey::load_file(&path).unwrap_err().to_string();
        assert!(msg.contains("empty"), "{msg}");

        let missing = dir.path().join("nope");
        let msg = SecretKey::load_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn trusted_keys_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.json");
        let a = SecretKey::from_seed(&seed()).public();
        let b = SecretKey::from_seed(&[7; 32]).public();
        // stigmem's format, as `json.dumps([...])` writes it; duplicates collapse.
        std::fs::write(&path, format!("[\"{a}\", \"{b}\", \"{a}\"]")).unwrap();
        let set = TrustSet::load_trusted_keys_file(&path).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&b));

        std::fs::write(&path, "[]").unwrap();
        assert!(TrustSet::load_trusted_keys_file(&path).unwrap().is_empty());

        for (content, needle) in [
            ("{}".to_string(), "an object, expected a JSON array"),
            ("[".to_string(), "not valid JSON"),
            (format!("[\"{a}\", 3]"), "entry 1 is a number"),
            (
                format!("[\"{a}\", \"AAAA\"]"),
                "\"AAAA\" (entry 1 of trusted-keys file",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let msg = TrustSet::load_trusted_keys_file(&path)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("trusted.json"), "{msg}");
        }
    }

    #[test]
    fn public_key_length_is_checked() {
        let err = PublicKey::from_b64url("AAEC", "--trust").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--trust") && msg.contains("3 bytes"), "{msg}");
    }
}
