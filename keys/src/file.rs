//! The signed license file: `<license number>.json` from the portal, installed on
//! a site as `lic/promos.json`.
//!
//! The file is readable, pretty-printed JSON:
//!
//! ```json
//! {
//!   "format": "promos-license-file/1",
//!   "license": { ...the grant... },
//!   "key_id": "…16 hex digits…",
//!   "signature": "…128 hex digits…"
//! }
//! ```
//!
//! What the signature covers: the *canonical encoding* of the grant (compact JSON,
//! fields in declaration order), exactly the payload of a [`Signed<LicenseGrant>`]
//! on the wire. The file itself must also be byte for byte the canonical rendering
//! of its content ([`render`]): a file that parses but was re-indented, re-ordered
//! or had a letter's case changed is refused as edited. Together these make every
//! edit, however small, invalidate the file, as the manual promises.

use crate::grant::LicenseGrant;
use crate::key::KeyId;
use crate::signed::{Signed, TrustedKeys, Verified, VerifyError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format line of version 1 files.
pub const FORMAT_V1: &str = "promos-license-file/1";
const FORMAT_PREFIX: &str = "promos-license-file/";

/// The largest license file we read; real ones are about 2 KiB.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    format: String,
    license: LicenseGrant,
    key_id: KeyId,
    signature: String,
}

/// What is wrong with a license file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseFileErrorKind {
    #[error("it is not a ProMoS license file ({0})")]
    NotALicenseFile(String),
    #[error("it has license file format {found:?}, which this version cannot read; update the ProMoS license daemon")]
    WrongVersion { found: String },
    #[error("it was changed after download; download it again from the license server and do not edit it")]
    Edited,
    #[error("its signature does not match: the file was altered or damaged; download it again")]
    BadSignature,
    #[error(
        "it was signed by key {0}, which this installation does not know; update the trusted keys"
    )]
    UnknownKey(KeyId),
    #[error("it was signed by key {0}, which has been retired; download a new license file")]
    RetiredKey(KeyId),
    #[error("it is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
}

/// A license file could not be used. Names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("license file {}: {kind}", path.display())]
pub struct LicenseFileError {
    pub path: PathBuf,
    pub kind: LicenseFileErrorKind,
}

/// Renders a verified grant as the license file a customer downloads.
pub fn render(grant: &Verified<LicenseGrant>) -> String {
    render_parts(grant, grant.signed())
}

fn render_parts(grant: &LicenseGrant, signed: &Signed<LicenseGrant>) -> String {
    let doc = FileDoc {
        format: FORMAT_V1.to_owned(),
        license: grant.clone(),
        key_id: signed.key_id(),
        signature: hex::encode(signed.signature()),
    };
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses and verifies license file bytes.
pub fn parse(
    bytes: &[u8],
    trusted: &TrustedKeys,
) -> Result<Verified<LicenseGrant>, LicenseFileErrorKind> {
    use LicenseFileErrorKind as K;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(K::TooLarge);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| K::NotALicenseFile(format!("not valid JSON: {e}")))?;
    let format = value
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or_else(|| K::NotALicenseFile("it has no \"format\" field".into()))?;
    if !format.starts_with(FORMAT_PREFIX) {
        return Err(K::NotALicenseFile(format!("unexpected format {format:?}")));
    }
    if format != FORMAT_V1 {
        return Err(K::WrongVersion {
            found: format.to_owned(),
        });
    }
    let doc: FileDoc =
        serde_json::from_value(value).map_err(|e| K::NotALicenseFile(e.to_string()))?;
    let signature = hex::decode(&doc.signature).map_err(|_| K::BadSignature)?;
    let payload =
        serde_json::to_vec(&doc.license).map_err(|e| K::NotALicenseFile(e.to_string()))?;
    let signed = Signed::<LicenseGrant>::from_parts(payload, doc.key_id, signature);
    if render_parts(&doc.license, &signed).as_bytes() != bytes {
        return Err(K::Edited);
    }
    trusted.verify(&signed).map_err(|e| match e {
        VerifyError::UnknownKey(id) => K::UnknownKey(id),
        VerifyError::RetiredKey(id) => K::RetiredKey(id),
        VerifyError::BadSignature | VerifyError::KeyIdMismatch { .. } => K::BadSignature,
        VerifyError::Malformed(m) => K::NotALicenseFile(m),
    })
}

/// Reads and verifies the license file at `path`.
pub fn read(
    path: &Path,
    trusted: &TrustedKeys,
) -> Result<Verified<LicenseGrant>, LicenseFileError> {
    let err = |kind| LicenseFileError {
        path: path.to_owned(),
        kind,
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| err(LicenseFileErrorKind::NotALicenseFile(e.to_string())))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(err(LicenseFileErrorKind::TooLarge));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| err(LicenseFileErrorKind::NotALicenseFile(e.to_string())))?;
    parse(&bytes, trusted).map_err(err)
}
