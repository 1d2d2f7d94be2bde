//! The price list: data the vendor can change, in `prices.toml`.

use crate::cover::Package;
use keys::{Driver, MalmModule, Protection};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The price list shipped with this release (the manual's numbers and marked
/// placeholders).
pub const EMBEDDED: &str = include_str!("../prices.toml");

/// Why a price list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceListError {
    #[error("cannot read price list {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("price list is not valid TOML: {0}")]
    Toml(String),
    #[error("price list: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    currency: String,
    protection: RawProtection,
    drivers: BTreeMap<String, RawDriver>,
    malm: BTreeMap<String, Decimal>,
    smarthome: RawSmartHome,
    operator_programs: RawOperatorPrograms,
    vat: BTreeMap<String, Decimal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtection {
    soft_dongle: Decimal,
    hard_dongle: Decimal,
    engineering: Decimal,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    free_base: u32,
    maximum: u32,
    #[serde(default)]
    placeholder: bool,
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    size: u32,
    price: Decimal,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmartHome {
    mystrom: Decimal,
    philips_hue: Decimal,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperatorPrograms {
    per_extra_user: Decimal,
    max_users: u32,
}

/// One driver's prices.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverPrices {
    pub free_base: u32,
    pub maximum: u32,
    /// True while these are not the vendor's real prices.
    pub placeholder: bool,
    /// Ascending by size.
    pub packages: Vec<(u32, Decimal)>,
}

impl DriverPrices {
    pub(crate) fn packages_in_cents(&self) -> Vec<Package> {
        self.packages
            .iter()
            .map(|(size, price)| Package {
                size: *size,
                cents: to_cents(*price),
            })
            .collect()
    }
}

pub(crate) fn to_cents(d: Decimal) -> i64 {
    (d * Decimal::ONE_HUNDRED)
        .trunc()
        .try_into()
        .unwrap_or(i64::MAX)
}

pub(crate) fn from_cents(c: i64) -> Decimal {
    Decimal::new(c, 2).normalize()
}

/// A checked price list.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceList {
    pub currency: String,
    pub protection: BTreeMap<ProtectionKey, Decimal>,
    pub drivers: BTreeMap<Driver, DriverPrices>,
    pub malm: BTreeMap<MalmModule, Decimal>,
    pub mystrom: Decimal,
    pub philips_hue: Decimal,
    pub per_extra_user: Decimal,
    pub max_users: u32,
    /// Percent by ISO 3166-1 alpha-2 country code.
    pub vat: BTreeMap<String, Decimal>,
}

/// [`Protection`] as an ordered map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtectionKey {
    SoftDongle,
    HardDongle,
    Engineering,
}

impl From<Protection> for ProtectionKey {
    fn from(p: Protection) -> Self {
        match p {
            Protection::SoftDongle => ProtectionKey::SoftDongle,
            Protection::HardDongle => ProtectionKey::HardDongle,
            Protection::Engineering => ProtectionKey::Engineering,
        }
    }
}

impl PriceList {
    /// The list compiled into this release.
    pub fn embedded() -> Self {
        // The embedded list is checked by a test; failing here is a build defect.
        Self::from_toml(EMBEDDED).unwrap_or_else(|e| panic!("embedded prices.toml is invalid: {e}"))
    }

    pub fn load(path: &Path) -> Result<Self, PriceListError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceListError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Self, PriceListError> {
        let raw: RawList = toml::from_str(text).map_err(|e| PriceListError::Toml(e.to_string()))?;
        let invalid = |m: String| PriceListError::Invalid(m);
        let non_negative = |what: &str, d: Decimal| {
            if d.is_sign_negative() || d.scale() > 2 && d.round_dp(2) != d {
                Err(invalid(format!(
                    "{what}: price {d} must be >= 0 with at most 2 decimals"
                )))
            } else {
                Ok(d)
            }
        };

        let mut drivers = BTreeMap::new();
        for (key, d) in raw.drivers {
            let driver =
                Driver::from_key(&key).ok_or_else(|| invalid(format!("unknown driver {key:?}")))?;
            if d.maximum < d.free_base {
                return Err(invalid(format!(
                    "{key}: maximum {} is below the free base {}",
                    d.maximum, d.free_base
                )));
            }
            if d.packages.is_empty() || d.packages.iter().any(|p| p.size == 0) {
                return Err(invalid(format!(
                    "{key}: needs at least one package, each of size > 0"
                )));
            }
            let mut packages = Vec::new();
            for p in d.packages {
                packages.push((p.size, non_negative(&key, p.price)?));
            }
            packages.sort_by_key(|(size, _)| *size);
            drivers.insert(
                driver,
                DriverPrices {
                    free_base: d.free_base,
                    maximum: d.maximum,
                    placeholder: d.placeholder,
                    packages,
                },
            );
        }
        if let Some(missing) = Driver::ALL.into_iter().find(|d| !drivers.contains_key(d)) {
            return Err(invalid(format!("driver {:?} is missing", missing.key())));
        }

        let mut malm = BTreeMap::new();
        for (key, price) in raw.malm {
            let m = MalmModule::from_key(&key)
                .ok_or_else(|| invalid(format!("unknown MALM module {key:?}")))?;
            malm.insert(m, non_negative(&key, price)?);
        }
        if let Some(missing) = MalmModule::ALL.into_iter().find(|m| !malm.contains_key(m)) {
            return Err(invalid(format!(
                "MALM module {:?} is missing",
                missing.key()
            )));
        }

        let mut vat = BTreeMap::new();
        for (country, rate) in raw.vat {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(format!(
                    "VAT country {country:?} must be a two-letter ISO code like DE"
                )));
            }
            if rate.is_sign_negative() || rate > Decimal::ONE_HUNDRED {
                return Err(invalid(format!(
                    "VAT rate {rate} for {country} must be between 0 and 100"
                )));
            }
            vat.insert(country, rate);
        }
        if raw.operator_programs.max_users < 1 {
            return Err(invalid(
                "operator_programs.max_users must be at least 1".into(),
            ));
        }

        let protection = [
            (
                ProtectionKey::SoftDongle,
                non_negative("soft_dongle", raw.protection.soft_dongle)?,
            ),
            (
                ProtectionKey::HardDongle,
                non_negative("hard_dongle", raw.protection.hard_dongle)?,
            ),
            (
                ProtectionKey::Engineering,
                non_negative("engineering", raw.protection.engineering)?,
            ),
        ]
        .into_iter()
        .collect();

        Ok(PriceList {
            currency: raw.currency,
            protection,
            drivers,
            malm,
            mystrom: non_negative("mystrom", raw.smarthome.mystrom)?,
            philips_hue: non_negative("philips_hue", raw.smarthome.philips_hue)?,
            per_extra_user: non_negative("per_extra_user", raw.operator_programs.per_extra_user)?,
            max_users: raw.operator_programs.max_users,
            vat,
        })
    }

    pub fn driver(&self, d: Driver) -> &DriverPrices {
        // from_toml guarantees every driver is present.
        &self.drivers[&d]
    }

    pub fn protection_price(&self, p: Protection) -> Decimal {
        self.protection[&ProtectionKey::from(p)]
    }

    /// VAT percent for a country code, if the country can be ordered from.
    pub fn vat_percent(&self, country: &str) -> Option<Decimal> {
        self.vat.get(&country.trim().to_ascii_uppercase()).copied()
    }

    /// True if any price is still a placeholder (the admin pages warn about it).
    pub fn has_placeholders(&self) -> bool {
        self.drivers.values().any(|d| d.placeholder)
    }
}
