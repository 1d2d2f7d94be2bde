//! Identifiers that appear in grants, on the wire and in the portal.
//!
//! Each is parsed once at the boundary ("parse, don't validate"): holding a
//! [`LicenseNumber`] means its check digit was right.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a license number has exactly 10 digits (got {0:?})")]
    LicenseNumberShape(String),
    #[error("license number {0} has a wrong check digit: please check it for a typing mistake")]
    LicenseNumberCheckDigit(String),
    #[error("a hardware ID is 32 hexadecimal digits (got {0:?})")]
    HardwareIdShape(String),
    #[error("a dongle serial is 1 to 64 letters, digits, '-' or '_' (got {0:?})")]
    DongleSerialShape(String),
    #[error("{0:?} is not written in its canonical form (no spaces, lowercase hex)")]
    NotCanonical(String),
}

/// The Damm algorithm's quasigroup of order 10. A Damm check digit catches every
/// single-digit error and every transposition of adjacent digits.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

fn damm(digits: impl Iterator<Item = u8>) -> u8 {
    digits.fold(0, |interim, d| DAMM[usize::from(interim)][usize::from(d)])
}

/// A license number: 10 decimal digits, the first nine chosen by the server and
/// the tenth a Damm check digit over them (see README, "License numbers").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenseNumber(String);

impl LicenseNumber {
    /// Smallest and largest nine-digit body; the body never starts with 0 so the
    /// number survives spreadsheets that drop leading zeros.
    pub const BODY_MIN: u32 = 100_000_000;
    pub const BODY_MAX: u32 = 999_999_999;

    /// Appends the check digit to a nine-digit body. `None` if the body does not
    /// have nine digits.
    pub fn from_body(body: u32) -> Option<Self> {
        if !(Self::BODY_MIN..=Self::BODY_MAX).contains(&body) {
            return None;
        }
        let body = body.to_string();
        let check = damm(body.bytes().map(|b| b - b'0'));
        Some(LicenseNumber(format!("{body}{check}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nine digits the server chose.
    pub fn body(&self) -> u32 {
        self.0[..9].parse().unwrap_or(0)
    }
}

impl FromStr for LicenseNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let t = s.trim();
        if t.len() != 10 || !t.bytes().all(|b| b.is_ascii_digit()) || t.starts_with('0') {
            return Err(IdError::LicenseNumberShape(s.to_owned()));
        }
        if damm(t.bytes().map(|b| b - b'0')) != 0 {
            return Err(IdError::LicenseNumberCheckDigit(t.to_owned()));
        }
        Ok(LicenseNumber(t.to_owned()))
    }
}

/// The hardware ID the daemon computes for its host: 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HardwareId(String);

impl HardwareId {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        HardwareId(hex::encode(bytes))
    }
    /// The 16 bytes the 32 hex digits stand for.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        // Always 32 hex digits: checked when the ID was made.
        let _ = hex::decode_to_slice(&self.0, &mut bytes);
        bytes
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HardwareId {
    type Err = IdError;
    /// Accepts upper or lower case and stores lower case.
    fn from_str(s: &str) -> Result<Self, IdError> {
        let t = s.trim();
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError::HardwareIdShape(s.to_owned()));
        }
        Ok(HardwareId(t.to_ascii_lowercase()))
    }
}

/// The serial number of a USB hardware dongle, as the vendor enters it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DongleSerial(String);

impl DongleSerial {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DongleSerial {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let t = s.trim();
        let ok = (1..=64).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(IdError::DongleSerialShape(s.to_owned()));
        }
        Ok(DongleSerial(t.to_owned()))
    }
}

macro_rules! string_id_impls {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                let parsed: $t = s.parse()?;
                // Serialized forms must already be canonical, so a signed document
                // cannot carry two spellings of one id.
                if parsed.0 != s {
                    return Err(IdError::NotCanonical(s));
                }
                Ok(parsed)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    )*};
}
string_id_impls!(LicenseNumber, HardwareId, DongleSerial);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_number_check_digit_round_trips() {
        let n = LicenseNumber::from_body(192_190_001).expect("nine digits");
        assert_eq!(n.as_str().len(), 10);
        assert_eq!(n.body(), 192_190_001);
        assert_eq!(n.as_str().parse::<LicenseNumber>(), Ok(n.clone()));
        assert!(LicenseNumber::from_body(99_999_999).is_none());
        assert!(LicenseNumber::from_body(1_000_000_000).is_none());
    }

    #[test]
    fn every_single_digit_error_and_adjacent_swap_is_caught() {
        for body in [100_000_000u32, 192_190_001, 555_555_555, 987_654_321] {
            let good = LicenseNumber::from_body(body).expect("body").0;
            let digits: Vec<u8> = good.bytes().collect();
            for i in 0..10 {
                for d in b'0'..=b'9' {
                    if d == digits[i] {
                        continue;
                    }
                    let mut bad = digits.clone();
                    bad[i] = d;
                    let bad = String::from_utf8(bad).expect("ascii");
                    assert!(bad.parse::<LicenseNumber>().is_err(), "{bad} accepted");
                }
                if i < 9 && digits[i] != digits[i + 1] {
                    let mut bad = digits.clone();
                    bad.swap(i, i + 1);
                    let bad = String::from_utf8(bad).expect("ascii");
                    assert!(bad.parse::<LicenseNumber>().is_err(), "{bad} accepted");
                }
            }
        }
    }

    #[test]
    fn ids_reject_wrong_shapes_with_clear_errors() {
        assert!(matches!(
            "12345".parse::<LicenseNumber>(),
            Err(IdError::LicenseNumberShape(_))
        ));
        let e = "abc".parse::<HardwareId>().expect_err("short");
        assert!(e.to_string().contains("32 hexadecimal digits"));
        let h: HardwareId = "502C649D1171AD2E8705074CE97791DB".parse().expect("hex");
        assert_eq!(h.as_str(), "502c649d1171ad2e8705074ce97791db");
        assert!("".parse::<DongleSerial>().is_err());
        assert!("DG 1".parse::<DongleSerial>().is_err());
        assert!("DG-0001".parse::<DongleSerial>().is_ok());
    }

    #[test]
    fn deserialization_requires_canonical_spelling() {
        let upper = serde_json::to_string("502C649D1171AD2E8705074CE97791DB").expect("json");
        assert!(serde_json::from_str::<HardwareId>(&upper).is_err());
        let lower = serde_json::to_string("502c649d1171ad2e8705074ce97791db").expect("json");
        assert!(serde_json::from_str::<HardwareId>(&lower).is_ok());
    }
}
