//! The signed license file `<number>.json` of a hardware-dongle license (manual
//! 6): what the license page's download and `pls admin export-license` give.
//! One function, [`render`], so both always hand out the same bytes under the
//! same rules: hardware-dongle licenses only, once the vendor entered the
//! dongle serial and a mutation is activated; the stored grant is verified
//! against the server's key before it leaves.

use crate::domain::License;
use crate::store::{Store, StoreError};
use keys::{Protection, SigningKeyPair, TrustedKeys};

/// Why there is no license file; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LicenseFileError {
    #[error("license {0} is not a hardware-dongle license: soft-dongle and engineering licenses are checked over the internet and have no license file")]
    NotHardDongle(keys::LicenseNumber),
    #[error(
        "license {0} has no dongle serial yet: enter it first (pls admin set-dongle {0} SERIAL)"
    )]
    NoDongleSerial(keys::LicenseNumber),
    #[error("license {0} has no active services yet: activate its order first (pls admin mark-paid {0})")]
    NotActivated(keys::LicenseNumber),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored grant of license {number} does not verify with this server's key ({reason}); run pls admin verify")]
    Unverified {
        number: keys::LicenseNumber,
        reason: String,
    },
}

/// The license file of `license`, byte for byte as the daemon reads it.
pub fn render(
    store: &Store,
    key: &SigningKeyPair,
    license: &License,
) -> Result<String, LicenseFileError> {
    let number = || license.number.clone();
    if license.protection != Protection::HardDongle {
        return Err(LicenseFileError::NotHardDongle(number()));
    }
    if license.dongle_serial.is_none() {
        return Err(LicenseFileError::NoDongleSerial(number()));
    }
    let grant = store
        .current_grant(license)?
        .ok_or_else(|| LicenseFileError::NotActivated(number()))?;
    let verified = TrustedKeys::with([key.public()])
        .verify(&grant)
        .map_err(|e| LicenseFileError::Unverified {
            number: number(),
            reason: e.to_string(),
        })?;
    Ok(keys::file::render(&verified))
}
