//! The server's identity: the Ed25519 signing key and the self-signed QUIC
//! certificate, created on first start and reused afterwards.
//!
//! Files in the data directory: `signing.key` (0600), `signing.pub`,
//! `quic-cert.der` and `quic-key.der` (0600). Daemons are given the public key
//! (`promos-ed25519-public:...`) to verify grants and receipts, and the SHA-256
//! fingerprint of the certificate's DER bytes to pin the QUIC connection.

use crate::config::Config;
use keys::{KeyFileError, PublicKey, SigningKeyPair};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server's keys and certificate.
pub struct Identity {
    pub key: Arc<SigningKeyPair>,
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
    pub cert_path: PathBuf,
    /// True if this start created the key or the certificate.
    pub created: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key", &self.key)
            .field("cert_fingerprint", &self.cert_fingerprint())
            .finish_non_exhaustive()
    }
}

/// The identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the QUIC certificate: {0}")]
    Certificate(String),
}

impl Identity {
    /// Loads the key and certificate from the data directory, creating what is
    /// missing (and the directory itself, mode 0700).
    pub fn load_or_create(config: &Config) -> Result<Identity, IdentityError> {
        let dir = &config.data_dir;
        fs::create_dir_all(dir).map_err(|source| IdentityError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let mut created = false;
        let key_path = config.signing_key_path();
        let key = if key_path.exists() {
            SigningKeyPair::load(&key_path)?
        } else {
            let key = SigningKeyPair::generate();
            key.save(&key_path)?;
            key.public().save(&config.public_key_path())?;
            created = true;
            key
        };
        let cert_path = config.cert_path();
        let cert_key_path = dir.join("quic-key.der");
        let (cert_der, key_der) = if cert_path.exists() && cert_key_path.exists() {
            (read(&cert_path)?, read(&cert_key_path)?)
        } else {
            let mut names = config.quic.server_names.clone();
            if names.is_empty() {
                names.push("localhost".into());
            }
            let (cert_der, key_der) =
                small_self_signed(names).map_err(|e| IdentityError::Certificate(e.to_string()))?;
            write_private(&cert_key_path, &key_der)?;
            write_private(&cert_path, &cert_der)?;
            created = true;
            (cert_der, key_der)
        };
        Ok(Identity {
            key: Arc::new(key),
            cert_der,
            key_der,
            cert_path,
            created,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// SHA-256 of the certificate's DER bytes, 64 lowercase hex digits: what a
    /// daemon pins.
    pub fn cert_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    pub(crate) fn tls_key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// What an operator hands to every daemon, printed on first start and by
    /// `pls admin identity`.
    pub fn operator_notice(&self) -> String {
        format!(
            "Give these to every license daemon:\n  server public key:   {}\n  key id:              {}\n  QUIC certificate:    {}\n  certificate SHA-256: {}\n",
            self.public_key(),
            self.key.key_id(),
            self.cert_path.display(),
            self.cert_fingerprint()
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    fs::read(path).map_err(|source| IdentityError::File {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let err = |source| IdentityError::File {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp-write");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// A self-signed certificate as small as TLS lets it be: an Ed25519 key
/// (a 44-byte key and a 64-byte signature, against about 91 and 72 with
/// P-256) and no subject name besides the DNS names. It travels in the
/// server's first flight of every daemon's daily check: small, that flight
/// fits in the one datagram QUIC pads to 1,200 bytes anyway (issue 16).
/// Daemons pin the certificate by its SHA-256, not by its form.
fn small_self_signed(names: Vec<String>) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The certificate fits the server's first flight: an Ed25519 key, no
    /// subject name (the DNS names only), well under 300 bytes.
    #[test]
    fn the_certificate_is_small_and_ed25519() {
        let (cert, key) = small_self_signed(vec!["licenses.example.com".into()]).expect("cert");
        assert!(cert.len() < 300, "{} bytes", cert.len());
        // The Ed25519 algorithm identifier (OID 1.3.101.112), for key and signature.
        let ed25519 = [0x06, 0x03, 0x2b, 0x65, 0x70];
        let oids = cert
            .windows(ed25519.len())
            .filter(|w| *w == ed25519)
            .count();
        assert_eq!(oids, 3, "Ed25519: key, and the signature named twice");
        assert!(
            !cert.windows(5).any(|w| w == b"rcgen"),
            "no default subject name"
        );
        // rustls takes the key for a server certificate.
        let key = rustls::pki_types::PrivateKeyDer::try_from(key).expect("key der");
        rustls::crypto::ring::sign::any_supported_type(&key).expect("usable key");
    }

    #[test]
    fn first_start_creates_later_starts_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let first = Identity::load_or_create(&config).expect("create");
        assert!(first.created);
        let second = Identity::load_or_create(&config).expect("load");
        assert!(!second.created);
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.cert_fingerprint(), second.cert_fingerprint());
        assert_eq!(first.cert_fingerprint().len(), 64);
        let notice = first.operator_notice();
        assert!(notice.contains("promos-ed25519-public:"), "{notice}");
        assert!(notice.contains(&first.cert_fingerprint()));
        assert_eq!(
            PublicKey::load(&config.public_key_path()).expect("pub"),
            first.public_key()
        );
    }
}
