//! The license lifecycle as pure code: no sled, no sockets, no clock of its own.
//!
//! Everything here takes `now` and the current records as inputs and returns the
//! new records or a decision, so every rule is tested without I/O. [`crate::store`]
//! runs these functions inside its transactions.
//!
//! Rules (PRODUCT.md, issue 3):
//!
//! - License numbers are 10 digits: a random nine-digit body (first digit 1-9, so a
//!   spreadsheet cannot drop a leading zero) plus a Damm check digit
//!   ([`keys::LicenseNumber`]), which catches every single wrong digit and every swap
//!   of two neighbouring digits. Random bodies do not reveal how many licenses exist.
//! - Tokens are 128 random bits as 32 lowercase hex digits ([`LicenseToken`]); shown
//!   to the owner on request, compared in constant time, never logged.
//! - A license's entitlements are the sum of its activated mutations; an ordered but
//!   unpaid license has none.
//! - Soft-dongle and engineering licenses bind to the first activating hardware ID;
//!   another host is refused until a reset. A reset clears the binding, reserves a
//!   new grant serial and remembers the released host, whose next check is refused
//!   as "license was reset". Hard-dongle licenses bind to the dongle serial the vendor
//!   enters and are never reset.
//! - Engineering licenses have fixed counts and are valid 3 years from activation;
//!   renewal is free, offered from [`RENEWAL_WINDOW_DAYS`] before the end, and adds
//!   3 years to the old end (or to the renewal day, if the license had expired).
//! - Upgrades only add, and only while the runtime is reported stopped.

use keys::{
    Binding, DongleSerial, Entitlements, HardwareId, KeyId, LicenseData, LicenseGrant,
    LicenseNumber, LicenseType, Protection, UnixTime,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use wire::RefusalReason;

/// How long engineering licenses run: 3 years, one of them a leap year.
pub const ENGINEERING_VALIDITY_DAYS: u64 = 3 * 365 + 1;
/// From how many days before its end an engineering license can be renewed, and
/// when the first reminder goes out (issue 6).
pub const RENEWAL_WINDOW_DAYS: u64 = 60;
/// When the second renewal reminder goes out.
pub const RENEWAL_LAST_REMINDER_DAYS: u64 = 14;
/// How long a quote can be ordered (manual: 14.09.2021 -> 14.12.2021, 3 months).
pub const QUOTE_VALIDITY_DAYS: u64 = 91;
/// How often a daemon checks in (manual 10.1: "once a day").
pub const CHECK_INTERVAL_SECS: u64 = UnixTime::DAY;

/// A customer account's id (sled `generate_id`, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub u64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A customer (or vendor staff) account of the portal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// Lowercased and trimmed; unique.
    pub email: String,
    /// An argon2id PHC string, set by the web portal; `None` until a password is set.
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub company: String,
    pub first_name: String,
    pub last_name: String,
    /// Orders of trusted customers are activated at once (manual 4.1).
    pub trusted: bool,
    /// Vendor staff: may use the admin pages.
    pub admin: bool,
    pub created_at: UnixTime,
}

/// What registration provides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub email: String,
    pub password_hash: Option<String>,
    pub company: String,
    pub first_name: String,
    pub last_name: String,
}

/// Normalises an email address for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The licensee block of a license (manual 4.1, "Lizenznehmer").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licensee {
    pub company: String,
    pub first_name: String,
    pub last_name: String,
    pub street: String,
    pub postcode: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub email: String,
    pub phone: String,
}

/// The license token: 128 random bits, 32 lowercase hex digits. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseToken(String);

impl LicenseToken {
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        LicenseToken(hex::encode(bytes))
    }

    /// The token in clear, for the owner's "show token" and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with what a daemon sent, so timing does not reveal
    /// how many leading characters were right.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.trim().as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for LicenseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseToken(<redacted>)")
    }
}

/// A license: who holds it, how it is protected, what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub number: LicenseNumber,
    pub token: LicenseToken,
    /// The portal account that owns it; `None` for licenses the vendor created directly.
    pub account: Option<AccountId>,
    pub license_type: LicenseType,
    pub protection: Protection,
    pub licensee: Licensee,
    pub license_data: LicenseData,
    pub created_at: UnixTime,
    /// The sum of the activated mutations (kept in step with them in every transaction).
    pub entitlements: Entitlements,
    /// Soft dongle / engineering: the bound host. Hard dongle: the dongle serial.
    pub binding: Option<Binding>,
    /// Hosts released by a reset; their checks are refused as "license was reset".
    pub released_hosts: Vec<HardwareId>,
    pub dongle_serial: Option<DongleSerial>,
    /// The highest grant serial reserved so far (0: none).
    pub serial: u64,
    /// The serial of the grant the bound host should hold, if one was issued for the
    /// current binding.
    pub current_grant: Option<u64>,
    /// Engineering licenses: end of validity.
    pub valid_until: Option<UnixTime>,
    /// Number the next mutation gets (the `#n` of `<license>#<n>`).
    pub next_mutation: u32,
}

/// What an admin or the portal's order form provides to create a license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLicense {
    pub account: Option<AccountId>,
    pub license_type: LicenseType,
    pub protection: Protection,
    pub licensee: Licensee,
    pub license_data: LicenseData,
}

/// A change to a license's entitlements, from quote to activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationKind {
    /// The first mutation: the license's initial content.
    New,
    /// Adds counts or options.
    Upgrade,
    /// Engineering: another 3 years, free.
    Renewal,
}

/// Where a mutation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationState {
    Quote,
    /// Ordered, awaiting payment.
    Ordered,
    Activated,
    Deleted,
    Expired,
}

impl MutationState {
    pub fn key(self) -> &'static str {
        match self {
            MutationState::Quote => "quote",
            MutationState::Ordered => "ordered",
            MutationState::Activated => "activated",
            MutationState::Deleted => "deleted",
            MutationState::Expired => "expired",
        }
    }

    /// The lifecycle's allowed steps.
    pub fn can_become(self, next: MutationState) -> bool {
        use MutationState::*;
        matches!(
            (self, next),
            (Quote, Ordered)
                | (Quote, Deleted)
                | (Quote, Expired)
                | (Ordered, Activated)
                | (Ordered, Deleted)
        )
    }
}

/// One quote/order/activation of a license: `<license number>#<number>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    pub license: LicenseNumber,
    pub number: u32,
    pub kind: MutationKind,
    /// What this mutation adds (for `New`: the whole initial content).
    pub adds: Entitlements,
    pub state: MutationState,
    pub created_at: UnixTime,
    /// Quotes: last day it can be ordered.
    pub quote_valid_until: UnixTime,
    pub ordered_at: Option<UnixTime>,
    pub activated_at: Option<UnixTime>,
    /// Net price as a decimal string in EUR (the portal computes it with rust_decimal).
    pub price_net: Option<String>,
    pub remarks: String,
    /// The priced summary as the customer saw it when quoting, so a quote keeps its
    /// positions and price even if the vendor later changes the price list.
    #[serde(default)]
    pub priced: Option<PricedSummary>,
}

/// A quote's positions, net, VAT and gross as decimal strings in EUR, with each
/// position's label in German and English.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedSummary {
    pub positions: Vec<PricedPosition>,
    pub net: String,
    /// Percent, e.g. "19".
    pub vat_percent: String,
    pub vat: String,
    pub gross: String,
    /// The licensee's country code the VAT was taken from.
    pub country: String,
}

/// One line of a [`PricedSummary`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedPosition {
    pub de: String,
    pub en: String,
    pub quantity: u32,
    pub unit_price: String,
    pub amount: String,
}

impl Mutation {
    /// `1921900011#1`, the manual's quote and order number.
    pub fn id(&self) -> String {
        format!("{}#{}", self.license, self.number)
    }
}

/// Who made a change, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// Vendor staff, by name (CLI: the OS user; web: the admin account's email).
    Admin(String),
    /// A customer through the portal.
    Account(AccountId),
    /// A license daemon over QUIC.
    Daemon {
        hardware_id: HardwareId,
        from: String,
    },
    /// The server itself (expiry, migrations).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Admin(name) => write!(f, "admin:{name}"),
            Actor::Account(id) => write!(f, "account:{id}"),
            Actor::Daemon { hardware_id, from } => write!(f, "daemon:{hardware_id}@{from}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// One line of the audit trail: who changed what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Grows with every entry (sled `generate_id`).
    pub seq: u64,
    pub at: UnixTime,
    pub actor: Actor,
    pub license: Option<LicenseNumber>,
    pub account: Option<AccountId>,
    /// Machine name, e.g. `license.created`, `mutation.activated`, `binding.reset`.
    pub action: String,
    /// Human details. Never contains a token or a password hash.
    pub detail: String,
}

/// What the daemon on a host last reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    pub license: LicenseNumber,
    pub hardware_id: HardwareId,
    pub at: UnixTime,
    pub running: bool,
    pub ge_seats: u32,
    pub pwa_seats: u32,
    pub daemon_version: String,
    /// Source address, and the relaying peer's hardware ID if it came through one.
    pub from: String,
}

/// Sum of the activated mutations: the license's entitlements.
pub fn entitlements_of<'a>(mutations: impl IntoIterator<Item = &'a Mutation>) -> Entitlements {
    mutations
        .into_iter()
        .filter(|m| m.state == MutationState::Activated)
        .fold(Entitlements::none(), |sum, m| sum.plus(&m.adds))
}

/// Why a mutation cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutationRuleError {
    #[error("an upgrade must add at least one data point, user or option")]
    UpgradeAddsNothing,
    #[error("an upgrade is only possible while ProMoS is stopped on the bound host; stop ProMoS and try again")]
    RuntimeRunning,
    #[error("engineering licenses have fixed counts and cannot be upgraded; renew instead")]
    EngineeringUpgrade,
    #[error("only engineering licenses are renewed")]
    RenewalNotEngineering,
    #[error("a license has exactly one initial mutation")]
    SecondNew,
    #[error("the first mutation of a license must be its initial content")]
    FirstMustBeNew,
    #[error("{driver}: {count} exceeds the maximum of {max}")]
    AboveMaximum {
        driver: &'static str,
        count: u32,
        max: u32,
    },
    #[error("engineering licenses have the fixed engineering content")]
    EngineeringContent,
}

/// Checks a mutation against the license's rules before it is stored.
///
/// `existing` are the license's mutations so far; `runtime_running` is what the
/// bound host last reported.
pub fn check_new_mutation(
    license: &License,
    existing: &[Mutation],
    kind: MutationKind,
    adds: &Entitlements,
    runtime_running: bool,
) -> Result<(), MutationRuleError> {
    let live = |m: &&Mutation| !matches!(m.state, MutationState::Deleted | MutationState::Expired);
    let has_new = existing
        .iter()
        .filter(live)
        .any(|m| m.kind == MutationKind::New);
    match kind {
        MutationKind::New => {
            if has_new {
                return Err(MutationRuleError::SecondNew);
            }
            if license.license_type == LicenseType::Engineering
                && *adds != Entitlements::engineering()
            {
                return Err(MutationRuleError::EngineeringContent);
            }
        }
        MutationKind::Upgrade => {
            if !has_new {
                return Err(MutationRuleError::FirstMustBeNew);
            }
            if license.license_type == LicenseType::Engineering {
                return Err(MutationRuleError::EngineeringUpgrade);
            }
            if runtime_running {
                return Err(MutationRuleError::RuntimeRunning);
            }
            if Entitlements::none().covers(adds) {
                return Err(MutationRuleError::UpgradeAddsNothing);
            }
        }
        MutationKind::Renewal => {
            if !has_new {
                return Err(MutationRuleError::FirstMustBeNew);
            }
            if license.license_type != LicenseType::Engineering {
                return Err(MutationRuleError::RenewalNotEngineering);
            }
        }
    }
    if license.license_type == LicenseType::Standard {
        // What the license would hold if everything live were activated.
        let total = existing
            .iter()
            .filter(live)
            .fold(adds.clone(), |sum, m| sum.plus(&m.adds));
        for d in keys::Driver::ALL {
            if total.driver(d) > d.maximum() {
                return Err(MutationRuleError::AboveMaximum {
                    driver: d.display_name(),
                    count: total.driver(d),
                    max: d.maximum(),
                });
            }
        }
    }
    Ok(())
}

/// The license after `mutation` was activated at `now`: new entitlements and, for
/// engineering, the new end of validity. Does not issue a grant.
pub fn apply_activation(license: &mut License, mutation: &Mutation, now: UnixTime) {
    license.entitlements = license.entitlements.plus(&mutation.adds);
    if license.license_type == LicenseType::Engineering {
        match mutation.kind {
            MutationKind::New => {
                license.valid_until = Some(now.plus_days(ENGINEERING_VALIDITY_DAYS));
            }
            // Renewing early (from 60 days before the end) loses no days: the new
            // period starts where the old one ends.
            MutationKind::Renewal => {
                let from = license.valid_until.map_or(now, |end| end.max(now));
                license.valid_until = Some(from.plus_days(ENGINEERING_VALIDITY_DAYS));
            }
            MutationKind::Upgrade => {}
        }
    }
}

/// Whether an engineering license may be renewed at `now`: from
/// [`RENEWAL_WINDOW_DAYS`] before its end on, and after it.
pub fn renewal_offered(license: &License, now: UnixTime) -> bool {
    license.license_type == LicenseType::Engineering
        && license
            .valid_until
            .is_some_and(|end| now.plus_days(RENEWAL_WINDOW_DAYS) >= end)
}

/// True once anything was activated (an ordered, unpaid license has nothing).
pub fn is_active(license: &License) -> bool {
    license.entitlements != Entitlements::none()
}

/// The grant for the license's current binding under a new serial, or `None` if
/// the license has no binding or nothing activated. Bumps `serial` and sets
/// `current_grant` when it returns a grant.
pub fn next_grant(license: &mut License, now: UnixTime, key_id: KeyId) -> Option<LicenseGrant> {
    let binding = license.binding.clone()?;
    if !is_active(license) {
        return None;
    }
    license.serial += 1;
    license.current_grant = Some(license.serial);
    Some(LicenseGrant {
        format: keys::grant::GRANT_FORMAT,
        license_number: license.number.clone(),
        license_type: license.license_type,
        protection: license.protection,
        license_data: license.license_data.clone(),
        binding,
        entitlements: license.entitlements.clone(),
        issued_at: now,
        valid_until: license.valid_until,
        serial: license.serial,
        key_id,
    })
}

/// What to do with an activation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationDecision {
    /// Bind the host now and issue the first grant for it.
    Bind,
    /// Already bound to this host: hand out the current grant (or issue one if none).
    AlreadyBound,
    /// Hard dongle with its serial entered: hand out the dongle grant.
    DongleGrant,
    Refuse(RefusalReason),
}

/// The activation rules. The token check comes first so that a wrong token learns
/// nothing about the license's state.
pub fn decide_activation(
    license: &License,
    token: &str,
    host: &HardwareId,
    now: UnixTime,
) -> ActivationDecision {
    use ActivationDecision::*;
    if !license.token.matches(token) {
        return Refuse(RefusalReason::WrongToken);
    }
    decide_authorised_activation(license, host, now)
}

/// The activation rules once the activation is authorised: by the token (a
/// network activation, [`decide_activation`]), or, for an activation by file,
/// by the license's owner logged in to the portal or by the vendor.
pub fn decide_authorised_activation(
    license: &License,
    host: &HardwareId,
    now: UnixTime,
) -> ActivationDecision {
    use ActivationDecision::*;
    if !is_active(license) {
        return Refuse(RefusalReason::NotYetActivated);
    }
    if license.valid_until.is_some_and(|end| now >= end) {
        return Refuse(RefusalReason::Expired);
    }
    if license.protection == Protection::HardDongle {
        return if license.dongle_serial.is_some() {
            DongleGrant
        } else {
            Refuse(RefusalReason::NotYetActivated)
        };
    }
    match &license.binding {
        None => Bind,
        Some(Binding::HardwareId(h)) if h == host => AlreadyBound,
        Some(_) => Refuse(RefusalReason::BoundToAnotherHost),
    }
}

/// What to do with a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckDecision {
    /// The host is licensed; `send_grant` is the serial of a newer grant it should get.
    Licensed {
        send_grant: Option<u64>,
    },
    Refuse(RefusalReason),
}

/// The check rules: a host is licensed if the license is bound to it, active and not
/// expired. A host released by a reset learns that; a host that never held the
/// license is told it is bound elsewhere (or not activated, if nothing is bound).
pub fn decide_check(
    license: &License,
    host: &HardwareId,
    held_serial: Option<u64>,
    now: UnixTime,
) -> CheckDecision {
    use CheckDecision::*;
    let bound_here = match &license.binding {
        Some(Binding::HardwareId(h)) => h == host,
        // A hard-dongle daemon may report in; its license is the dongle's.
        Some(Binding::DongleSerial(_)) => true,
        None => false,
    };
    if !bound_here {
        if license.released_hosts.contains(host) {
            return Refuse(RefusalReason::LicenseWasReset);
        }
        return match license.binding {
            Some(_) => Refuse(RefusalReason::BoundToAnotherHost),
            None => Refuse(RefusalReason::NotYetActivated),
        };
    }
    if !is_active(license) {
        return Refuse(RefusalReason::NotYetActivated);
    }
    if license.valid_until.is_some_and(|end| now >= end) {
        return Refuse(RefusalReason::Expired);
    }
    let send_grant = license
        .current_grant
        .filter(|current| held_serial.is_none_or(|held| held < *current));
    Licensed { send_grant }
}

/// Why a binding cannot be reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    #[error("hardware-dongle licenses are bound to their dongle and cannot be reset")]
    HardDongle,
    #[error("the license is not bound to any computer; there is nothing to reset")]
    NotBound,
}

/// Releases the hardware binding: the old host goes on the released list, a new
/// serial is reserved so any grant the old host holds is outdated.
pub fn reset_binding(license: &mut License) -> Result<HardwareId, ResetError> {
    if license.protection == Protection::HardDongle {
        return Err(ResetError::HardDongle);
    }
    match license.binding.take() {
        Some(Binding::HardwareId(old)) => {
            if !license.released_hosts.contains(&old) {
                license.released_hosts.push(old.clone());
            }
            license.serial += 1;
            license.current_grant = None;
            Ok(old)
        }
        Some(other) => {
            license.binding = Some(other);
            Err(ResetError::HardDongle)
        }
        None => Err(ResetError::NotBound),
    }
}

/// Binds a soft-dongle or engineering license to `host` (the caller decided [`ActivationDecision::Bind`]).
pub fn bind(license: &mut License, host: &HardwareId) {
    license.released_hosts.retain(|h| h != host);
    license.binding = Some(Binding::HardwareId(host.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::Driver;

    fn host(n: u8) -> HardwareId {
        HardwareId::from_bytes([n; 16])
    }

    fn license(protection: Protection) -> License {
        License {
            number: LicenseNumber::from_body(192_190_001).expect("body"),
            token: LicenseToken::generate(),
            account: None,
            license_type: if protection == Protection::Engineering {
                LicenseType::Engineering
            } else {
                LicenseType::Standard
            },
            protection,
            licensee: Licensee::default(),
            license_data: LicenseData {
                name: "n".into(),
                postcode: "1".into(),
                city: "c".into(),
            },
            created_at: UnixTime(0),
            entitlements: Entitlements::none(),
            binding: None,
            released_hosts: vec![],
            dongle_serial: None,
            serial: 0,
            current_grant: None,
            valid_until: None,
            next_mutation: 1,
        }
    }

    fn mutation(kind: MutationKind, adds: Entitlements, state: MutationState) -> Mutation {
        Mutation {
            license: LicenseNumber::from_body(192_190_001).expect("body"),
            number: 1,
            kind,
            adds,
            state,
            created_at: UnixTime(0),
            quote_valid_until: UnixTime(0),
            ordered_at: None,
            activated_at: None,
            price_net: None,
            remarks: String::new(),
            priced: None,
        }
    }

    #[test]
    fn tokens_are_128_bits_hex_redacted_and_compared_exactly() {
        let t = LicenseToken::generate();
        assert_eq!(t.expose().len(), 32);
        assert!(t.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, LicenseToken::generate());
        assert!(t.matches(t.expose()));
        assert!(!t.matches(&t.expose()[..31]));
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn entitlements_are_the_sum_of_activated_mutations_only() {
        let mut up = Entitlements::none();
        up.drivers.insert(Driver::SaiaPcd, 6_000);
        let ms = vec![
            mutation(
                MutationKind::New,
                Entitlements::standard_base(),
                MutationState::Activated,
            ),
            mutation(MutationKind::Upgrade, up.clone(), MutationState::Activated),
            mutation(MutationKind::Upgrade, up.clone(), MutationState::Ordered),
            mutation(MutationKind::Upgrade, up, MutationState::Quote),
        ];
        assert_eq!(entitlements_of(&ms).driver(Driver::SaiaPcd), 6_100);
        assert_eq!(entitlements_of(&ms[2..]), Entitlements::none());
    }

    #[test]
    fn mutation_lifecycle_steps() {
        use MutationState::*;
        assert!(Quote.can_become(Ordered));
        assert!(Ordered.can_become(Activated));
        assert!(!Quote.can_become(Activated));
        assert!(!Activated.can_become(Deleted));
        assert!(!Deleted.can_become(Ordered));
        assert!(!Expired.can_become(Ordered));
    }

    #[test]
    fn unpaid_license_is_refused_and_first_host_binds() {
        let mut l = license(Protection::SoftDongle);
        let tok = l.token.expose().to_owned();
        assert_eq!(
            decide_activation(&l, &tok, &host(1), UnixTime(0)),
            ActivationDecision::Refuse(RefusalReason::NotYetActivated)
        );
        l.entitlements = Entitlements::standard_base();
        assert_eq!(
            decide_activation(&l, "nope", &host(1), UnixTime(0)),
            ActivationDecision::Refuse(RefusalReason::WrongToken)
        );
        assert_eq!(
            decide_activation(&l, &tok, &host(1), UnixTime(0)),
            ActivationDecision::Bind
        );
        bind(&mut l, &host(1));
        let g = next_grant(&mut l, UnixTime(5), test_key_id()).expect("grant");
        assert_eq!((g.serial, l.current_grant), (1, Some(1)));
        assert_eq!(
            decide_activation(&l, &tok, &host(1), UnixTime(0)),
            ActivationDecision::AlreadyBound
        );
        assert_eq!(
            decide_activation(&l, &tok, &host(2), UnixTime(0)),
            ActivationDecision::Refuse(RefusalReason::BoundToAnotherHost)
        );
    }

    fn test_key_id() -> KeyId {
        keys::SigningKeyPair::from_seed(&[1; 32]).key_id()
    }

    #[test]
    fn reset_releases_the_old_host_and_outdates_its_grant() {
        let mut l = license(Protection::SoftDongle);
        l.entitlements = Entitlements::standard_base();
        bind(&mut l, &host(1));
        let key_id = test_key_id();
        next_grant(&mut l, UnixTime(0), key_id).expect("grant");
        assert_eq!(
            decide_check(&l, &host(1), Some(1), UnixTime(1)),
            CheckDecision::Licensed { send_grant: None }
        );
        assert_eq!(reset_binding(&mut l), Ok(host(1)));
        assert_eq!(l.serial, 2);
        assert_eq!(
            decide_check(&l, &host(1), Some(1), UnixTime(1)),
            CheckDecision::Refuse(RefusalReason::LicenseWasReset)
        );
        assert_eq!(reset_binding(&mut l), Err(ResetError::NotBound));
        bind(&mut l, &host(2));
        let g = next_grant(&mut l, UnixTime(0), key_id).expect("grant");
        assert_eq!(g.serial, 3);
        assert_eq!(
            decide_check(&l, &host(1), Some(1), UnixTime(1)),
            CheckDecision::Refuse(RefusalReason::LicenseWasReset)
        );
        assert_eq!(
            decide_check(&l, &host(3), None, UnixTime(1)),
            CheckDecision::Refuse(RefusalReason::BoundToAnotherHost)
        );
        assert_eq!(
            decide_check(&l, &host(2), Some(1), UnixTime(1)),
            CheckDecision::Licensed {
                send_grant: Some(3)
            }
        );
        // The first host can come back after another reset.
        reset_binding(&mut l).expect("reset");
        bind(&mut l, &host(1));
        assert!(!l.released_hosts.contains(&host(1)));
    }

    #[test]
    fn hard_dongles_are_never_reset() {
        let mut l = license(Protection::HardDongle);
        assert_eq!(reset_binding(&mut l), Err(ResetError::HardDongle));
        l.binding = Some(Binding::DongleSerial("DG-1".parse().expect("serial")));
        assert_eq!(reset_binding(&mut l), Err(ResetError::HardDongle));
        assert!(l.binding.is_some());
    }

    #[test]
    fn engineering_runs_three_years_and_renewal_restarts_them() {
        let mut l = license(Protection::Engineering);
        let m = mutation(
            MutationKind::New,
            Entitlements::engineering(),
            MutationState::Activated,
        );
        apply_activation(&mut l, &m, UnixTime(1_000));
        let end = UnixTime(1_000).plus_days(ENGINEERING_VALIDITY_DAYS);
        assert_eq!(l.valid_until, Some(end));
        bind(&mut l, &host(1));
        let tok = l.token.expose().to_owned();
        assert_eq!(
            decide_activation(&l, &tok, &host(1), end),
            ActivationDecision::Refuse(RefusalReason::Expired)
        );
        assert_eq!(
            decide_check(&l, &host(1), None, end),
            CheckDecision::Refuse(RefusalReason::Expired)
        );
        let renewal = mutation(
            MutationKind::Renewal,
            Entitlements::none(),
            MutationState::Activated,
        );
        assert!(renewal_offered(&l, end));
        apply_activation(&mut l, &renewal, end);
        let second_end = end.plus_days(ENGINEERING_VALIDITY_DAYS);
        assert_eq!(l.valid_until, Some(second_end));
        // Early renewal: offered from 60 days before the end, and it loses no days.
        let early = UnixTime(second_end.0 - 60 * UnixTime::DAY);
        assert!(!renewal_offered(&l, UnixTime(early.0 - 1)));
        assert!(renewal_offered(&l, early));
        apply_activation(&mut l, &renewal, early);
        assert_eq!(
            l.valid_until,
            Some(second_end.plus_days(ENGINEERING_VALIDITY_DAYS))
        );
        assert_eq!(l.entitlements, Entitlements::engineering());
    }

    #[test]
    fn upgrade_rules() {
        let mut l = license(Protection::SoftDongle);
        let new = mutation(
            MutationKind::New,
            Entitlements::standard_base(),
            MutationState::Activated,
        );
        l.entitlements = Entitlements::standard_base();
        let mut up = Entitlements::none();
        up.ge_users = 1;
        assert_eq!(
            check_new_mutation(&l, &[], MutationKind::Upgrade, &up, false),
            Err(MutationRuleError::FirstMustBeNew)
        );
        let existing = [new];
        assert_eq!(
            check_new_mutation(&l, &existing, MutationKind::Upgrade, &up, false),
            Ok(())
        );
        assert_eq!(
            check_new_mutation(&l, &existing, MutationKind::Upgrade, &up, true),
            Err(MutationRuleError::RuntimeRunning)
        );
        assert_eq!(
            check_new_mutation(
                &l,
                &existing,
                MutationKind::Upgrade,
                &Entitlements::none(),
                false
            ),
            Err(MutationRuleError::UpgradeAddsNothing)
        );
        let mut huge = Entitlements::none();
        huge.drivers.insert(Driver::Mbus, 2_000);
        assert!(matches!(
            check_new_mutation(&l, &existing, MutationKind::Upgrade, &huge, false),
            Err(MutationRuleError::AboveMaximum {
                count: 2_001,
                max: 2_000,
                ..
            })
        ));
        assert_eq!(
            check_new_mutation(
                &l,
                &existing,
                MutationKind::New,
                &Entitlements::standard_base(),
                false
            ),
            Err(MutationRuleError::SecondNew)
        );
        assert_eq!(
            check_new_mutation(
                &l,
                &existing,
                MutationKind::Renewal,
                &Entitlements::none(),
                false
            ),
            Err(MutationRuleError::RenewalNotEngineering)
        );
    }
}
