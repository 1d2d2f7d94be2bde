//! How the domain is shown, on pages and in emails alike: the language pick,
//! amounts, countries, a licensee's address lines, what a license holds, the
//! order summary and a mutation's state. Pure functions of the domain values:
//! no request, no store.

use crate::domain::{Licensee, Mutation, MutationRuleError, MutationState, PricedSummary};
use keys::{Driver, Entitlements, Protection};
use pricing::money;
use rust_decimal::Decimal;

/// German or English, side by side where the text is used.
pub fn tr(de: bool, german: &'static str, english: &'static str) -> &'static str {
    if de {
        german
    } else {
        english
    }
}

/// Country names for the VAT table's codes; a code without a name shows as itself.
pub fn country_name(code: &str, de: bool) -> String {
    let (g, e) = match code {
        "DE" => ("Deutschland", "Germany"),
        "AT" => ("Österreich", "Austria"),
        "CH" => ("Schweiz", "Switzerland"),
        "LI" => ("Liechtenstein", "Liechtenstein"),
        "FR" => ("Frankreich", "France"),
        "IT" => ("Italien", "Italy"),
        "NL" => ("Niederlande", "Netherlands"),
        "BE" => ("Belgien", "Belgium"),
        "LU" => ("Luxemburg", "Luxembourg"),
        "PL" => ("Polen", "Poland"),
        "CZ" => ("Tschechien", "Czechia"),
        "DK" => ("Dänemark", "Denmark"),
        "SE" => ("Schweden", "Sweden"),
        "ES" => ("Spanien", "Spain"),
        "GB" => ("Vereinigtes Königreich", "United Kingdom"),
        other => return other.to_owned(),
    };
    tr(de, g, e).to_owned()
}

pub fn eur_text(amount: &str, de: bool) -> String {
    amount
        .parse::<Decimal>()
        .map(|d| money::eur(d, de))
        .unwrap_or_else(|_| amount.to_owned())
}

/// The summary's lines: positions, totals and what the license will hold.
#[derive(Clone, Debug)]
pub struct SummaryView {
    /// (label, quantity, unit price, amount)
    pub positions: Vec<(String, u32, String, String)>,
    pub net: String,
    pub vat_label: String,
    pub vat: String,
    pub gross: String,
    /// (driver, what the license holds; for upgrades "before -> after")
    pub drivers: Vec<(String, String)>,
    pub programs: Vec<(String, String)>,
    pub options: Vec<String>,
}

impl SummaryView {
    pub fn build(
        s: &PricedSummary,
        after: &Entitlements,
        before: Option<&Entitlements>,
        de: bool,
    ) -> SummaryView {
        let vat_label = if s.vat_percent.is_empty() {
            tr(de, "Umsatzsteuer", "VAT").to_owned()
        } else {
            format!(
                "{} {}%",
                tr(de, "Umsatzsteuer", "VAT"),
                s.vat_percent.replace('.', if de { "," } else { "." })
            )
        };
        SummaryView {
            positions: s
                .positions
                .iter()
                .map(|p| {
                    (
                        if de { p.de.clone() } else { p.en.clone() },
                        p.quantity,
                        eur_text(&p.unit_price, de),
                        eur_text(&p.amount, de),
                    )
                })
                .collect(),
            net: eur_text(&s.net, de),
            vat_label,
            vat: eur_text(&s.vat, de),
            gross: eur_text(&s.gross, de),
            drivers: entitlement_lines(after, before, de),
            programs: program_lines(after, de),
            options: option_lines(after, de),
        }
    }
}

/// "SAIA PCD: 6.100 Datenpunkte", or "Vorher: 100 Nachher: 6.100 Datenpunkte".
pub fn entitlement_lines(
    after: &Entitlements,
    before: Option<&Entitlements>,
    de: bool,
) -> Vec<(String, String)> {
    Driver::ALL
        .into_iter()
        .map(|d| {
            let (one, many) = d.unit(de);
            let n = after.driver(d);
            let unit = if n == 1 { one } else { many };
            let text = match before.map(|b| b.driver(d)) {
                Some(b) if b != n => format!(
                    "{} {} {} {} {unit}",
                    tr(de, "Vorher:", "Before:"),
                    money::count(b.into(), de),
                    tr(de, "Nachher:", "After:"),
                    money::count(n.into(), de)
                ),
                _ => format!("{} {unit}", money::count(n.into(), de)),
            };
            (d.display_name().to_owned(), text)
        })
        .collect()
}

pub fn program_lines(e: &Entitlements, de: bool) -> Vec<(String, String)> {
    [("GE (Remote)", e.ge_users), ("pWA", e.pwa_users)]
        .into_iter()
        .map(|(name, n)| {
            let unit = match (de, n == 1) {
                (true, true) => "gleichzeitiger Benutzer",
                (true, false) => "gleichzeitige Benutzer",
                (false, true) => "simultaneous user",
                (false, false) => "simultaneous users",
            };
            (name.to_owned(), format!("{n} {unit}"))
        })
        .collect()
}

pub fn option_lines(e: &Entitlements, de: bool) -> Vec<String> {
    let mut out: Vec<String> = e
        .malm
        .iter()
        .map(|m| format!("MALM: {}", m.display_name(de)))
        .collect();
    if e.mystrom {
        out.push("SmartHome: myStrom".into());
    }
    if e.philips_hue {
        out.push("SmartHome: Philips Hue".into());
    }
    out
}

pub fn protection_name(p: Protection) -> &'static str {
    match p {
        Protection::SoftDongle => "SoftDongle",
        Protection::HardDongle => "HardDongle",
        Protection::Engineering => "Engineering",
    }
}

/// The licensee as an address, one line each: company and name, street,
/// postcode and city, state and country, email, phone (empty parts left out).
pub fn licensee_lines(l: &Licensee, de: bool) -> Vec<String> {
    let join = |parts: &[&str], sep: &str| {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(sep)
    };
    let name = join(&[&l.first_name, &l.last_name], " ");
    let country = country_name(&l.country, de);
    [
        if name.is_empty() {
            l.company.clone()
        } else {
            format!("{} ({name})", l.company)
        },
        l.street.clone(),
        join(&[&l.postcode, &l.city], " "),
        join(&[&l.state, &country], ", "),
        if l.email.is_empty() {
            String::new()
        } else {
            format!("Email: {}", l.email)
        },
        if l.phone.is_empty() {
            String::new()
        } else {
            format!("{}: {}", tr(de, "Telefon", "Phone"), l.phone)
        },
    ]
    .into_iter()
    .filter(|line| !line.trim().is_empty())
    .collect()
}

/// A quote is open while it is a quote and before the end of its last day.
pub fn quote_expired(m: &Mutation, now: keys::UnixTime) -> bool {
    m.state == MutationState::Expired
        || (m.state == MutationState::Quote && now > m.quote_valid_until)
}

/// A mutation's state as lists show it: an open quote past its validity is expired.
pub fn shown_state(m: &Mutation, now: keys::UnixTime, de: bool) -> &'static str {
    if quote_expired(m, now) {
        state_name(MutationState::Expired, de)
    } else {
        state_name(m.state, de)
    }
}

/// A mutation's net price as lists show it ("" if it has none).
pub fn shown_price(m: &Mutation, de: bool) -> String {
    m.price_net
        .as_deref()
        .map(|p| eur_text(p, de))
        .unwrap_or_default()
}

pub fn state_name(state: MutationState, de: bool) -> &'static str {
    match state {
        MutationState::Quote => tr(de, "Angebot", "Quote"),
        MutationState::Ordered => tr(
            de,
            "Bestellt, Zahlung ausstehend",
            "Ordered, awaiting payment",
        ),
        MutationState::Activated => tr(de, "Aktiviert", "Activated"),
        MutationState::Deleted => tr(de, "Gelöscht", "Deleted"),
        MutationState::Expired => tr(de, "Abgelaufen", "Expired"),
    }
}

/// A mutation rule as the customer reads it.
pub fn rule_text(rule: &MutationRuleError, de: bool) -> String {
    use MutationRuleError as R;
    let (g, e) = match rule {
        R::UpgradeAddsNothing => (
            "Ein Upgrade muss mindestens einen Datenpunkt, Benutzer oder eine Option hinzufügen.",
            "An upgrade must add at least one data point, user or option.",
        ),
        R::RuntimeRunning => (
            "Ein Upgrade ist nur möglich, während ProMoS gestoppt ist. Bitte beenden Sie ProMoS und versuchen Sie es erneut.",
            "An upgrade is only possible while ProMoS is stopped. Please exit ProMoS and try again.",
        ),
        R::EngineeringUpgrade => (
            "Engineering-Lizenzen haben feste Anzahlen und können nicht erweitert werden.",
            "Engineering licenses have fixed counts and cannot be upgraded.",
        ),
        R::AboveMaximum { .. } => {
            return if de {
                format!("Das Maximum ist überschritten: {rule}")
            } else {
                format!("The maximum is exceeded: {rule}")
            }
        }
        other => return other.to_string(),
    };
    tr(de, g, e).to_owned()
}
