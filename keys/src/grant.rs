//! The license grant: the signed document a daemon enforces.
//!
//! The server issues a new grant, with a higher [`LicenseGrant::serial`], whenever
//! what a host may do changes (activation, upgrade, reset, renewal); a daemon keeps
//! only the grant with the highest serial it has verified.

use crate::ids::{DongleSerial, HardwareId, LicenseNumber};
use crate::key::KeyId;
use crate::signed::SignedPayload;
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Grant format version. Raised only for changes an old daemon cannot read.
pub const GRANT_FORMAT: u16 = 1;

/// The field-bus drivers a license can enable (PRODUCT.md, "Prices").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    BacnetIp,
    Modbus,
    Mbus,
    SaiaPcd,
    BeckhoffAds,
    Iec60870,
    OpcDa,
    Mqtt,
    Snmp,
    Espa,
    Email,
    Knx,
}

impl Driver {
    pub const ALL: [Driver; 12] = [
        Driver::BacnetIp,
        Driver::Modbus,
        Driver::Mbus,
        Driver::SaiaPcd,
        Driver::BeckhoffAds,
        Driver::Iec60870,
        Driver::OpcDa,
        Driver::Mqtt,
        Driver::Snmp,
        Driver::Espa,
        Driver::Email,
        Driver::Knx,
    ];

    /// The name the manual prints.
    pub fn display_name(self) -> &'static str {
        match self {
            Driver::BacnetIp => "BACnet IP",
            Driver::Modbus => "Modbus",
            Driver::Mbus => "MBus",
            Driver::SaiaPcd => "SAIA PCD",
            Driver::BeckhoffAds => "Beckhoff ADS",
            Driver::Iec60870 => "IEC60870",
            Driver::OpcDa => "OPC DA",
            Driver::Mqtt => "MQTT",
            Driver::Snmp => "SNMP",
            Driver::Espa => "ESPA",
            Driver::Email => "E-Mail",
            Driver::Knx => "KNX",
        }
    }

    /// Stable machine name (the serde name), for URLs, forms and config files.
    pub fn key(self) -> &'static str {
        match self {
            Driver::BacnetIp => "bacnet_ip",
            Driver::Modbus => "modbus",
            Driver::Mbus => "mbus",
            Driver::SaiaPcd => "saia_pcd",
            Driver::BeckhoffAds => "beckhoff_ads",
            Driver::Iec60870 => "iec60870",
            Driver::OpcDa => "opc_da",
            Driver::Mqtt => "mqtt",
            Driver::Snmp => "snmp",
            Driver::Espa => "espa",
            Driver::Email => "email",
            Driver::Knx => "knx",
        }
    }

    pub fn from_key(key: &str) -> Option<Driver> {
        Driver::ALL.into_iter().find(|d| d.key() == key)
    }

    /// What the driver counts: (singular, plural) in German and English. German
    /// nouns are capitalised (the manual's "Devices"), English ones are not.
    pub fn unit(self, german: bool) -> (&'static str, &'static str) {
        match (self, german) {
            (Driver::BacnetIp, true) => ("BACnet-Objekt", "BACnet-Objekte"),
            (Driver::BacnetIp, false) => ("BACnet object", "BACnet objects"),
            (Driver::Mbus, true) => ("Device", "Devices"),
            (Driver::Mbus, false) => ("device", "devices"),
            (_, true) => ("Datenpunkt", "Datenpunkte"),
            (_, false) => ("data point", "data points"),
        }
    }

    /// Included free of charge in every standard license.
    pub fn free_base(self) -> u32 {
        match self {
            Driver::Mbus | Driver::Iec60870 | Driver::Snmp | Driver::Espa => 1,
            Driver::SaiaPcd | Driver::BeckhoffAds => 100,
            _ => 10,
        }
    }

    /// The most a standard license can buy of this driver.
    pub fn maximum(self) -> u32 {
        self.free_base() * 2_000
    }

    /// The fixed count of an engineering license.
    pub fn engineering_count(self) -> u32 {
        match self {
            Driver::Mbus => 100,
            Driver::SaiaPcd | Driver::BeckhoffAds => 100_000,
            Driver::Iec60870 | Driver::Snmp | Driver::Espa => 1_000,
            _ => 10_000,
        }
    }
}

/// The remote-alarming (MALM) modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalmModule {
    Email,
    SmsPager,
    HttpRequest,
    Espa444,
    SpoolerProgram,
}

impl MalmModule {
    pub const ALL: [MalmModule; 5] = [
        MalmModule::Email,
        MalmModule::SmsPager,
        MalmModule::HttpRequest,
        MalmModule::Espa444,
        MalmModule::SpoolerProgram,
    ];

    pub fn key(self) -> &'static str {
        match self {
            MalmModule::Email => "email",
            MalmModule::SmsPager => "sms_pager",
            MalmModule::HttpRequest => "http_request",
            MalmModule::Espa444 => "espa444",
            MalmModule::SpoolerProgram => "spooler_program",
        }
    }

    pub fn from_key(key: &str) -> Option<MalmModule> {
        MalmModule::ALL.into_iter().find(|m| m.key() == key)
    }

    /// The manual's wording ("über E-Mail", ...).
    pub fn display_name(self, german: bool) -> &'static str {
        match (self, german) {
            (MalmModule::Email, true) => "über E-Mail",
            (MalmModule::Email, false) => "via email",
            (MalmModule::SmsPager, true) => "über SMS, Pager",
            (MalmModule::SmsPager, false) => "via SMS, pager",
            (MalmModule::HttpRequest, true) => "über HTTP-Request (auch TLS/SSL)",
            (MalmModule::HttpRequest, false) => "via HTTP request (also TLS/SSL)",
            (MalmModule::Espa444, true) => "über ESPA 4.4.4",
            (MalmModule::Espa444, false) => "via ESPA 4.4.4",
            (MalmModule::SpoolerProgram, true) => "über Spooler oder Programmaufruf",
            (MalmModule::SpoolerProgram, false) => "via spooler or program call",
        }
    }
}

/// What a license allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    /// Data points (objects, devices) per driver. A driver that is absent has 0.
    pub drivers: BTreeMap<Driver, u32>,
    pub malm: BTreeSet<MalmModule>,
    pub mystrom: bool,
    pub philips_hue: bool,
    /// Simultaneous users of the operator program GE (Remote).
    pub ge_users: u32,
    /// Simultaneous users of the operator program pWA.
    pub pwa_users: u32,
}

impl Entitlements {
    /// Nothing at all: an ordered but unpaid license.
    pub fn none() -> Self {
        Entitlements {
            drivers: BTreeMap::new(),
            malm: BTreeSet::new(),
            mystrom: false,
            philips_hue: false,
            ge_users: 0,
            pwa_users: 0,
        }
    }

    /// What every standard license includes: each driver's free base and one user
    /// of each operator program.
    pub fn standard_base() -> Self {
        Entitlements {
            drivers: Driver::ALL
                .into_iter()
                .map(|d| (d, d.free_base()))
                .collect(),
            ge_users: 1,
            pwa_users: 1,
            ..Self::none()
        }
    }

    /// The fixed content of an engineering license (PRODUCT.md).
    pub fn engineering() -> Self {
        Entitlements {
            drivers: Driver::ALL
                .into_iter()
                .map(|d| (d, d.engineering_count()))
                .collect(),
            malm: MalmModule::ALL.into_iter().collect(),
            mystrom: true,
            philips_hue: true,
            ge_users: 1,
            pwa_users: 1,
        }
    }

    pub fn driver(&self, d: Driver) -> u32 {
        self.drivers.get(&d).copied().unwrap_or(0)
    }

    /// True if `self` allows at least everything `other` allows (upgrades may only
    /// increase).
    pub fn covers(&self, other: &Entitlements) -> bool {
        Driver::ALL
            .into_iter()
            .all(|d| self.driver(d) >= other.driver(d))
            && self.malm.is_superset(&other.malm)
            && (self.mystrom || !other.mystrom)
            && (self.philips_hue || !other.philips_hue)
            && self.ge_users >= other.ge_users
            && self.pwa_users >= other.pwa_users
    }

    /// The sum of two sets of entitlements: counts and users add, options unite.
    pub fn plus(&self, other: &Entitlements) -> Entitlements {
        let mut sum = self.clone();
        for (d, n) in &other.drivers {
            let e = sum.drivers.entry(*d).or_insert(0);
            *e = e.saturating_add(*n);
        }
        sum.malm.extend(other.malm.iter().copied());
        sum.mystrom |= other.mystrom;
        sum.philips_hue |= other.philips_hue;
        sum.ge_users = sum.ge_users.saturating_add(other.ge_users);
        sum.pwa_users = sum.pwa_users.saturating_add(other.pwa_users);
        sum
    }
}

/// Standard (paid, runtime) or engineering (free, 24-hour runs, 3 years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseType {
    Standard,
    Engineering,
}

/// How the license is protected on the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Bound to the host's hardware ID, checked online once a day.
    SoftDongle,
    /// Bound to a USB dongle's serial; the license file is enough, no network.
    HardDongle,
    /// Online activation only; 24 hours per start.
    Engineering,
}

/// The license data shown in ProMoS (manual: "Diese Angaben werden in ProMoS angezeigt").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseData {
    pub name: String,
    pub postcode: String,
    pub city: String,
}

/// What a grant is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// Soft dongle and engineering: the hardware ID of the activating host.
    HardwareId(HardwareId),
    /// Hard dongle: the serial of the USB dongle the vendor shipped.
    DongleSerial(DongleSerial),
}

/// The document a daemon enforces, signed by the license server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseGrant {
    /// [`GRANT_FORMAT`] of the signer.
    pub format: u16,
    pub license_number: LicenseNumber,
    pub license_type: LicenseType,
    pub protection: Protection,
    pub license_data: LicenseData,
    pub binding: Binding,
    pub entitlements: Entitlements,
    pub issued_at: UnixTime,
    /// End of validity; engineering licenses only (3 years from activation).
    pub valid_until: Option<UnixTime>,
    /// Grows with every new grant for the license; the highest serial wins.
    pub serial: u64,
    /// The key that signed this grant.
    pub key_id: KeyId,
}

impl SignedPayload for LicenseGrant {
    const CONTEXT: &'static str = "license-grant";
    fn embedded_key_id(&self) -> Option<KeyId> {
        Some(self.key_id)
    }
}

impl LicenseGrant {
    /// True if this grant replaces `other` (same license, higher serial).
    pub fn supersedes(&self, other: &LicenseGrant) -> bool {
        self.license_number == other.license_number && self.serial > other.serial
    }

    pub fn is_expired_at(&self, now: UnixTime) -> bool {
        self.valid_until.is_some_and(|end| now >= end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engineering_counts_match_the_manual() {
        let e = Entitlements::engineering();
        assert_eq!(e.driver(Driver::BacnetIp), 10_000);
        assert_eq!(e.driver(Driver::Mbus), 100);
        assert_eq!(e.driver(Driver::SaiaPcd), 100_000);
        assert_eq!(e.driver(Driver::Iec60870), 1_000);
        assert_eq!(e.malm.len(), 5);
        assert!(e.mystrom && e.philips_hue);
    }

    #[test]
    fn free_bases_and_maxima_match_the_price_table() {
        let table = [
            (Driver::BacnetIp, 10, 20_000),
            (Driver::Modbus, 10, 20_000),
            (Driver::Mbus, 1, 2_000),
            (Driver::SaiaPcd, 100, 200_000),
            (Driver::BeckhoffAds, 100, 200_000),
            (Driver::Iec60870, 1, 2_000),
            (Driver::OpcDa, 10, 20_000),
            (Driver::Mqtt, 10, 20_000),
            (Driver::Snmp, 1, 2_000),
            (Driver::Espa, 1, 2_000),
            (Driver::Email, 10, 20_000),
            (Driver::Knx, 10, 20_000),
        ];
        for (d, base, max) in table {
            assert_eq!((d.free_base(), d.maximum()), (base, max), "{d:?}");
            assert_eq!(Driver::from_key(d.key()), Some(d));
        }
    }

    #[test]
    fn covers_and_plus() {
        let base = Entitlements::standard_base();
        let mut more = base.clone();
        more.drivers.insert(Driver::SaiaPcd, 6_100);
        more.malm.insert(MalmModule::Email);
        assert!(more.covers(&base));
        assert!(!base.covers(&more));
        let sum = base.plus(&more);
        assert_eq!(sum.driver(Driver::SaiaPcd), 6_200);
        assert_eq!(sum.ge_users, 2);
        assert!(sum.malm.contains(&MalmModule::Email));
    }
}
