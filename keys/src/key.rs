//! Ed25519 key pairs, public keys, key ids and their files on disk.
//!
//! File formats (one line of text each, so an operator can read and copy them):
//!
//! - secret key: `promos-ed25519-secret:<64 hex digits of the 32-byte seed>`, mode 0600;
//! - public key: `promos-ed25519-public:<64 hex digits>`.
//!
//! The [`KeyId`] is the first 8 bytes of SHA-256 over the 32 public key bytes, as
//! 16 lowercase hex digits: short enough to print, stable for the key's lifetime.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const SECRET_PREFIX: &str = "promos-ed25519-secret:";
const PUBLIC_PREFIX: &str = "promos-ed25519-public:";

/// Reading or writing a key file went wrong; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret key file {path} can be read by other users (mode {mode:o}); \
         run `chmod 600 {path}` and make sure its owner is the service user"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a {expected} key file: {reason}")]
    Malformed {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
}

/// A short, stable fingerprint of a public key (first 8 bytes of its SHA-256).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId([u8; 8]);

impl KeyId {
    pub fn of(public: &VerifyingKey) -> Self {
        let digest = Sha256::digest(public.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// The 8 bytes the 16 hex digits stand for.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        KeyId(bytes)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut id = [0u8; 8];
        if s.len() != 16 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("a key id is 16 lowercase hex digits, got {s:?}"));
        }
        hex::decode_to_slice(s, &mut id).map_err(|e| format!("bad key id {s:?}: {e}"))?;
        Ok(KeyId(id))
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.to_string()
    }
}

/// An Ed25519 public key that can check signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| "not a valid Ed25519 public key".to_owned())
    }

    /// Writes the public key file (readable by anyone; it holds no secret).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        write_atomically(path, format!("{self}\n").as_bytes(), 0o644)
    }

    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        text.trim()
            .parse()
            .map_err(|reason| KeyFileError::Malformed {
                path: path.to_owned(),
                expected: "public",
                reason,
            })
    }
}

impl fmt::Display for PublicKey {
    /// `promos-ed25519-public:<hex>`, the form config files and key files use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = String;
    /// Accepts `promos-ed25519-public:<hex>` or the bare 64 hex digits.
    fn from_str(s: &str) -> Result<Self, String> {
        let hex_part = s.trim().strip_prefix(PUBLIC_PREFIX).unwrap_or(s.trim());
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| format!("expected {PUBLIC_PREFIX} followed by 64 hex digits"))?;
        PublicKey::from_bytes(&bytes)
    }
}

/// An Ed25519 signing key with its public half and key id.
pub struct SigningKeyPair {
    signing: SigningKey,
    key_id: KeyId,
}

impl fmt::Debug for SigningKeyPair {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyPair({})", self.key_id)
    }
}

impl SigningKeyPair {
    pub fn generate() -> Self {
        Self::from_seed(&rand::random())
    }

    /// A key from a 32-byte seed. Deterministic, for tests and key files.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let key_id = KeyId::of(&signing.verifying_key());
        SigningKeyPair { signing, key_id }
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The key as PKCS#8 v1 DER (RFC 8410), for TLS libraries that take a
    /// certificate key in that form (the daemon's peer identity).
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&self.signing.to_bytes());
        der
    }

    /// Raw signature over `message`; [`crate::Signed::sign`] is the normal entry point.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Writes the secret key file with mode 0600, atomically (temporary file, then
    /// rename), so a crash never leaves a half-written key.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let text = format!("{SECRET_PREFIX}{}\n", hex::encode(self.signing.to_bytes()));
        write_atomically(path, text.as_bytes(), 0o600)
    }

    /// Reads a secret key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let meta = fs::metadata(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let malformed = |reason: &str| KeyFileError::Malformed {
            path: path.to_owned(),
            expected: "secret",
            reason: reason.to_owned(),
        };
        let hex_part = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| malformed("it does not start with promos-ed25519-secret:"))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut seed)
            .map_err(|_| malformed("expected 64 hex digits after the prefix"))?;
        Ok(Self::from_seed(&seed))
    }
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let err = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp-write");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        let pair = SigningKeyPair::generate();
        pair.save(&path).expect("save");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = SigningKeyPair::load(&path).expect("load");
        assert_eq!(loaded.public(), pair.public());
        assert_eq!(loaded.key_id(), pair.key_id());
    }

    #[test]
    fn readable_secret_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        SigningKeyPair::generate().save(&path).expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SigningKeyPair::load(&path).expect_err("must refuse");
        assert!(matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn public_key_file_and_text_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.pub");
        let public = SigningKeyPair::generate().public();
        public.save(&path).expect("save");
        assert_eq!(PublicKey::load(&path).expect("load"), public);
        let text = public.to_string();
        assert!(text.starts_with("promos-ed25519-public:"));
        assert_eq!(text.parse::<PublicKey>(), Ok(public));
        assert!("promos-ed25519-public:zz".parse::<PublicKey>().is_err());
    }

    #[test]
    fn key_id_is_sha256_prefix_of_public_key() {
        let pair = SigningKeyPair::from_seed(&[7u8; 32]);
        let digest = Sha256::digest(pair.public().to_bytes());
        assert_eq!(pair.key_id().to_string(), hex::encode(&digest[..8]));
        assert_eq!(
            pair.key_id().to_string().parse::<KeyId>(),
            Ok(pair.key_id())
        );
    }

    #[test]
    fn garbage_secret_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        write_atomically(&path, b"hello", 0o600).expect("write");
        let err = SigningKeyPair::load(&path).expect_err("garbage");
        assert!(
            err.to_string().contains("is not a secret key file"),
            "{err}"
        );
    }
}
