//! Keys, signatures and the signed license documents of the ProMoS license system.
//!
//! This crate does no network I/O and knows nothing of async runtimes. It holds:
//!
//! - [`key`]: Ed25519 key pairs, public keys, key ids and key files on disk;
//! - [`signed`]: [`Signed<T>`] envelopes, the set of [`TrustedKeys`] and the only way
//!   to obtain a [`Verified<T>`];
//! - [`grant`]: the license grant, the document a daemon enforces;
//! - [`file`]: the signed license file `<license number>.json` (`lic/promos.json` on a site);
//! - [`ids`] and [`time`]: the small value types every other crate shares.

#![forbid(unsafe_code)]

pub mod file;
pub mod grant;
pub mod ids;
pub mod key;
pub mod signed;
pub mod time;

pub use file::{LicenseFileError, LicenseFileErrorKind};
pub use grant::{
    Binding, Driver, Entitlements, LicenseData, LicenseGrant, LicenseType, MalmModule, Protection,
};
pub use ids::{DongleSerial, HardwareId, IdError, LicenseNumber};
pub use key::{KeyFileError, KeyId, PublicKey, SigningKeyPair};
pub use signed::{Signed, SignedPayload, TrustedKeys, Verified, VerifyError};
pub use time::{Clock, SimClock, SystemClock, UnixTime};
