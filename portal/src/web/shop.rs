//! Quotes and orders (manual 4.1 and 4.2): the order form with its live total,
//! the summary, stored quotes (`<license number>#<mutation number>`, valid 3
//! months), the quote list, and ordering.
//!
//! The form works without JavaScript: "Next" prices the selection on the server
//! and shows errors next to their fields. `static/order.js` only calls
//! [`price_api`] while the customer types to show the same numbers earlier. The
//! upgrade form of [`super::license`] shares the selection part of the form
//! ([`SelectionView`], [`Entered`]) and the summary ([`SummaryView`]).

use super::answers::{internal_error, login_first};
use super::pages::{self, Chrome, PAGE_SIZE};
use super::views::{
    country_name, eur_text, licensee_lines, protection_name, quote_expired, state_name, tr,
    SummaryView,
};
use super::{input, redirect, Ctx, Form, Web};
use crate::domain::{
    AccountId, Actor, License, Licensee, Mutation, MutationKind, MutationState, NewLicense,
    PricedPosition, PricedSummary,
};
use crate::store::{NewMutation, QuoteFilter};
use askama::Template;
use keys::{Driver, Entitlements, LicenseData, LicenseType, MalmModule, Protection};
use pricing::{money, PriceList, Priced, Selection};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;

type Resp = Result<Response<Body>, Infallible>;

/// Field name to message, in the request's language.
pub type Errors = BTreeMap<String, String>;

/// Longest accepted text field; longer input is a field error, never truncated.
const MAX_FIELD: usize = 200;
const MAX_REMARKS: usize = 2000;

// ----- what the customer entered ------------------------------------------------

/// The order form as typed, kept verbatim so it can be shown again.
#[derive(Clone, Debug)]
pub struct Entered {
    pub protection: String,
    pub licensee: Licensee,
    pub data: LicenseData,
    pub drivers: BTreeMap<Driver, String>,
    pub malm: BTreeSet<MalmModule>,
    pub mystrom: bool,
    pub philips_hue: bool,
    pub ge_users: String,
    pub pwa_users: String,
    pub remarks: String,
}

impl Default for Entered {
    fn default() -> Self {
        Entered {
            protection: String::new(),
            licensee: Licensee::default(),
            data: LicenseData {
                name: String::new(),
                postcode: String::new(),
                city: String::new(),
            },
            drivers: BTreeMap::new(),
            malm: BTreeSet::new(),
            mystrom: false,
            philips_hue: false,
            ge_users: String::new(),
            pwa_users: String::new(),
            remarks: String::new(),
        }
    }
}

impl Entered {
    /// The form as it opens: licensee from the account, drivers at their free base.
    pub fn new_for(web: &Web, ctx: &Ctx) -> Entered {
        let mut e = Entered {
            protection: "soft_dongle".into(),
            ge_users: "1".into(),
            pwa_users: "1".into(),
            ..Entered::default()
        };
        if let Some(a) = &ctx.account {
            e.licensee.company = a.company.clone();
            e.licensee.first_name = a.first_name.clone();
            e.licensee.last_name = a.last_name.clone();
            e.licensee.email = a.email.clone();
        }
        for d in Driver::ALL {
            e.drivers
                .insert(d, web.prices.driver(d).free_base.to_string());
        }
        e
    }

    /// The selection of an existing license, as the upgrade form opens: the total
    /// per driver (the inputs of the upgrade form mean the new total), the options
    /// and users it has.
    pub fn from_entitlements(ent: &Entitlements) -> Entered {
        let mut e = Entered::default();
        for d in Driver::ALL {
            e.drivers.insert(d, ent.driver(d).to_string());
        }
        e.malm = ent.malm.clone();
        e.mystrom = ent.mystrom;
        e.philips_hue = ent.philips_hue;
        e.ge_users = ent.ge_users.max(1).to_string();
        e.pwa_users = ent.pwa_users.max(1).to_string();
        e
    }

    pub fn from_form(form: &Form) -> Entered {
        let f = |n: &str| form.get(n).to_owned();
        Entered {
            protection: f("protection"),
            licensee: Licensee {
                company: f("company"),
                first_name: f("first_name"),
                last_name: f("last_name"),
                street: f("street"),
                postcode: f("postcode"),
                city: f("city"),
                state: f("state"),
                country: f("country").to_ascii_uppercase(),
                email: f("email"),
                phone: f("phone"),
            },
            data: LicenseData {
                name: f("data_name"),
                postcode: f("data_postcode"),
                city: f("data_city"),
            },
            drivers: Driver::ALL
                .into_iter()
                .map(|d| (d, f(&format!("driver_{}", d.key()))))
                .collect(),
            malm: MalmModule::ALL
                .into_iter()
                .filter(|m| form.has(&format!("malm_{}", m.key())))
                .collect(),
            mystrom: form.has("mystrom"),
            philips_hue: form.has("philips_hue"),
            ge_users: f("ge_users"),
            pwa_users: f("pwa_users"),
            remarks: form.raw("remarks").trim().to_owned(),
        }
    }

    /// Every field name the order and upgrade forms have (without `csrf` and
    /// `step`, which the POST adds, and `kind`/`license`, which the live price adds).
    pub fn field_names() -> &'static BTreeSet<String> {
        static NAMES: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            let mut names: BTreeSet<String> = Entered::default()
                .master_fields()
                .iter()
                .map(|(k, _)| (*k).to_owned())
                .collect();
            for k in [
                "protection",
                "remarks",
                "ge_users",
                "pwa_users",
                "mystrom",
                "philips_hue",
            ] {
                names.insert(k.to_owned());
            }
            names.extend(Driver::ALL.iter().map(|d| format!("driver_{}", d.key())));
            names.extend(MalmModule::ALL.iter().map(|m| format!("malm_{}", m.key())));
            names
        })
    }

    /// The form as a whole: a field name the form does not have, or one sent
    /// twice, is a field error under that name (never ignored, never guessed at).
    /// `extra` are the names the request adds to the form's own.
    pub fn check_names(form: &Form, extra: &[&str], de: bool, errors: &mut Errors) {
        let own = Entered::field_names();
        for name in form.names() {
            if !own.contains(name) && !extra.contains(&name) {
                errors.insert(name.to_owned(), input::unknown_field_error(de).into());
            }
        }
        for name in form.repeated() {
            errors
                .entry(name.clone())
                .or_insert_with(|| input::repeated_field_error(de).into());
        }
    }

    /// The licensee and license data fields, all required: (form field, value).
    fn master_fields(&self) -> [(&'static str, &String); 13] {
        let l = &self.licensee;
        [
            ("company", &l.company),
            ("first_name", &l.first_name),
            ("last_name", &l.last_name),
            ("street", &l.street),
            ("postcode", &l.postcode),
            ("city", &l.city),
            ("state", &l.state),
            ("country", &l.country),
            ("email", &l.email),
            ("phone", &l.phone),
            ("data_name", &self.data.name),
            ("data_postcode", &self.data.postcode),
            ("data_city", &self.data.city),
        ]
    }

    /// Every value as hidden form fields, for the summary's "Back" and "Get quote".
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![];
        let mut put = |k: &str, v: &str| out.push((k.to_owned(), v.to_owned()));
        put("protection", &self.protection);
        for (k, v) in self.master_fields() {
            put(k, v);
        }
        for (k, v) in [
            ("ge_users", &self.ge_users),
            ("pwa_users", &self.pwa_users),
            ("remarks", &self.remarks),
        ] {
            put(k, v);
        }
        for (d, v) in &self.drivers {
            put(&format!("driver_{}", d.key()), v);
        }
        for m in &self.malm {
            put(&format!("malm_{}", m.key()), "1");
        }
        if self.mystrom {
            put("mystrom", "1");
        }
        if self.philips_hue {
            put("philips_hue", "1");
        }
        out
    }

    /// Parses the priced part into a [`Selection`]; what does not parse is a field
    /// error.
    pub fn selection(&self, license_type: LicenseType, de: bool) -> (Selection, Errors) {
        let mut errors = Errors::new();
        if license_type == LicenseType::Engineering {
            return (Selection::engineering(), errors);
        }
        let protection = match self.protection.as_str() {
            "hard_dongle" => Protection::HardDongle,
            "soft_dongle" | "" => Protection::SoftDongle,
            _ => {
                errors.insert(
                    "protection".into(),
                    tr(
                        de,
                        "Bitte wählen Sie SoftDongle oder HardDongle.",
                        "Please choose SoftDongle or HardDongle.",
                    )
                    .into(),
                );
                Protection::SoftDongle
            }
        };
        let mut sel = Selection::standard_default(protection);
        for d in Driver::ALL {
            let raw = self.drivers.get(&d).map(String::as_str).unwrap_or("");
            match input::parse_count(raw, de) {
                Some(n) => {
                    sel.drivers.insert(d, n);
                }
                None => {
                    errors.insert(format!("driver_{}", d.key()), input::count_error(de).into());
                }
            }
        }
        sel.malm = self.malm.clone();
        sel.mystrom = self.mystrom;
        sel.philips_hue = self.philips_hue;
        for (field, raw, slot) in [
            ("ge_users", &self.ge_users, &mut sel.ge_users),
            ("pwa_users", &self.pwa_users, &mut sel.pwa_users),
        ] {
            match input::parse_count(raw, de) {
                // Not sent (the live price before the selects exist): the included user.
                Some(0) if raw.is_empty() => *slot = 1,
                Some(n) => *slot = n,
                None => {
                    errors.insert(
                        field.into(),
                        tr(de, "Bitte eine Anzahl wählen.", "Please choose a number.").into(),
                    );
                }
            }
        }
        (sel, errors)
    }

    /// The licensee, license data and remarks: everything required is present,
    /// nothing is too long, the email is an address and the country is one we sell to.
    pub fn check_master_data(&self, prices: &PriceList, de: bool, errors: &mut Errors) {
        let required = tr(de, "Bitte ausfüllen.", "Please fill in.");
        let too_long = tr(de, "Höchstens 200 Zeichen.", "At most 200 characters.");
        let l = &self.licensee;
        for (k, v) in self.master_fields() {
            if v.is_empty() {
                errors.insert(k.into(), required.into());
            } else if v.chars().count() > MAX_FIELD {
                errors.insert(k.into(), too_long.into());
            }
        }
        if !l.email.is_empty() && l.email.parse::<lettre::Address>().is_err() {
            errors.insert(
                "email".into(),
                tr(
                    de,
                    "Bitte eine gültige Email-Adresse eingeben.",
                    "Please enter a valid email address.",
                )
                .into(),
            );
        }
        if !l.country.is_empty() && prices.vat_percent(&l.country).is_none() {
            errors.insert(
                "country".into(),
                tr(
                    de,
                    "Bitte wählen Sie ein Land aus der Liste.",
                    "Please choose a country from the list.",
                )
                .into(),
            );
        }
        if self.remarks.chars().count() > MAX_REMARKS {
            errors.insert(
                "remarks".into(),
                tr(de, "Höchstens 2000 Zeichen.", "At most 2000 characters.").into(),
            );
        }
    }
}

/// Prices `sel` (as a new license, or as an upgrade of `current`), adding the
/// engine's field errors to `errors`.
pub fn price(
    prices: &PriceList,
    current: Option<&Entitlements>,
    sel: &Selection,
    country: Option<&str>,
    de: bool,
    errors: &mut Errors,
) -> Option<Priced> {
    let result = match current {
        None => prices.quote(sel, country),
        Some(c) => prices.quote_upgrade(c, sel, country),
    };
    match result {
        Ok(p) => Some(p),
        Err(field_errors) => {
            for e in field_errors {
                errors
                    .entry(e.field.clone())
                    .or_insert_with(|| e.message(de).to_owned());
            }
            None
        }
    }
}

/// Prices the valid rows of `sel` when some are not: every row named in `errors`
/// goes back to where the form starts it (a new license: nothing bought; an
/// upgrade: what the license holds), so every other row keeps its price and the
/// total is that of the valid rows. The live total and the form shown again
/// after "Next" use it; nothing is ever stored from it.
pub fn price_valid_rows(
    prices: &PriceList,
    current: Option<&Entitlements>,
    sel: &Selection,
    country: Option<&str>,
    errors: &Errors,
) -> Option<Priced> {
    let mut valid = sel.clone();
    for field in errors.keys() {
        if let Some(d) = field.strip_prefix("driver_").and_then(Driver::from_key) {
            valid.drivers.insert(d, current.map_or(0, |c| c.driver(d)));
        } else if let Some(m) = field.strip_prefix("malm_").and_then(MalmModule::from_key) {
            if current.is_some_and(|c| c.malm.contains(&m)) {
                valid.malm.insert(m);
            } else {
                valid.malm.remove(&m);
            }
        } else {
            match field.as_str() {
                "ge_users" => valid.ge_users = current.map_or(1, |c| c.ge_users.max(1)),
                "pwa_users" => valid.pwa_users = current.map_or(1, |c| c.pwa_users.max(1)),
                "mystrom" => valid.mystrom = current.is_some_and(|c| c.mystrom),
                "philips_hue" => valid.philips_hue = current.is_some_and(|c| c.philips_hue),
                _ => {}
            }
        }
    }
    let country = country.filter(|_| !errors.contains_key("country"));
    let result = match current {
        None => prices.quote(&valid, country),
        Some(c) => prices.quote_upgrade(c, &valid, country),
    };
    result.ok()
}

/// A field of the priced part of the form (its error leaves a row unpriced).
pub fn is_priced_field(field: &str) -> bool {
    field.starts_with("driver_")
        || field.starts_with("malm_")
        || matches!(
            field,
            "protection" | "ge_users" | "pwa_users" | "mystrom" | "philips_hue"
        )
}

/// The priced order as it is stored with the quote.
pub fn summarize(priced: &Priced, country: &str) -> PricedSummary {
    PricedSummary {
        positions: priced
            .positions
            .iter()
            .map(|p| PricedPosition {
                de: p.label.text(true),
                en: p.label.text(false),
                quantity: p.quantity,
                unit_price: p.unit_price.normalize().to_string(),
                amount: p.amount.normalize().to_string(),
            })
            .collect(),
        net: priced.net.normalize().to_string(),
        vat_percent: priced
            .vat_percent
            .map(|v| v.normalize().to_string())
            .unwrap_or_default(),
        vat: priced.vat.normalize().to_string(),
        gross: priced.gross.normalize().to_string(),
        country: country.to_owned(),
    }
}

// ----- view models ----------------------------------------------------------------

/// One driver row of the form.
#[derive(Clone, Debug)]
pub struct DriverRow {
    pub key: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub maximum: String,
    pub value: String,
    pub price: String,
    pub error: Option<String>,
    /// "Kostendetails": (packages, price) per line, then the total line.
    pub composition: Vec<(String, String)>,
    pub total: (String, String),
    /// The driver's package list: (size, price).
    pub packages: Vec<(String, String)>,
    /// Upgrade: what the license has now.
    pub before: Option<String>,
}

/// A checkbox option (MALM module, SmartHome).
#[derive(Clone, Debug)]
pub struct OptionRow {
    pub field: String,
    pub name: String,
    pub price: String,
    pub checked: bool,
    /// Already licensed: shown checked and cannot be removed.
    pub locked: bool,
    pub error: Option<String>,
}

/// An operator program's user count.
#[derive(Clone, Debug)]
pub struct UsersRow {
    pub field: &'static str,
    pub name: &'static str,
    /// (value, label, selected)
    pub options: Vec<(u32, String, bool)>,
    pub error: Option<String>,
}

/// The priced part of the order form.
#[derive(Clone, Debug)]
pub struct SelectionView {
    pub engineering: bool,
    pub drivers: Vec<DriverRow>,
    pub malm: Vec<OptionRow>,
    pub smarthome: Vec<OptionRow>,
    pub users: Vec<UsersRow>,
    pub total: String,
    /// Some rows have errors: `total` is that of the valid rows.
    pub total_partial: bool,
}

impl SelectionView {
    /// Builds the rows from what was entered and, if the selection priced (or its
    /// valid rows did, see [`price_valid_rows`]), its compositions. `current`
    /// marks what an upgrade cannot go below and already has.
    pub fn build(
        prices: &PriceList,
        entered: &Entered,
        priced: Option<&Priced>,
        current: Option<&Entitlements>,
        engineering: bool,
        errors: &Errors,
        de: bool,
    ) -> SelectionView {
        let drivers = Driver::ALL
            .into_iter()
            .map(|d| {
                let p = prices.driver(d);
                let (_, many) = d.unit(de);
                let error = errors.get(&format!("driver_{}", d.key())).cloned();
                // A row with an error has no price of its own (the valid rows keep theirs).
                let comp = priced
                    .filter(|_| error.is_none())
                    .and_then(|pr| pr.drivers.iter().find(|c| c.driver == d));
                let mut composition: Vec<(String, String)> = comp
                    .map(|c| {
                        c.packages
                            .iter()
                            .rev()
                            .map(|(size, n, unit)| {
                                (
                                    format!("{n} x {}", money::count((*size).into(), de)),
                                    format!("{n} x {}", money::eur(*unit, de)),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(c) = comp.filter(|c| c.free_base > 0) {
                    composition.push((
                        format!("1 x {}", money::count(c.free_base.into(), de)),
                        format!("1 x {}", money::eur(Decimal::ZERO, de)),
                    ));
                }
                let total = comp
                    .map(|c| {
                        (
                            money::count(c.total_points.into(), de),
                            money::eur(c.price, de),
                        )
                    })
                    .unwrap_or_default();
                let value = if engineering {
                    money::count(d.engineering_count().into(), de)
                } else {
                    entered.drivers.get(&d).cloned().unwrap_or_default()
                };
                DriverRow {
                    key: d.key(),
                    name: d.display_name(),
                    unit: many,
                    maximum: money::count(p.maximum.into(), de),
                    value,
                    price: comp
                        .map(|c| money::eur(c.price, de))
                        .unwrap_or_else(|| "–".into()),
                    error,
                    composition,
                    total,
                    packages: std::iter::once((
                        format!("{} {many}", money::count(p.free_base.into(), de)),
                        money::eur(Decimal::ZERO, de),
                    ))
                    .chain(p.packages.iter().map(|(size, price)| {
                        (
                            format!("{} {many}", money::count((*size).into(), de)),
                            money::eur(*price, de),
                        )
                    }))
                    .collect(),
                    before: current.map(|c| money::count(c.driver(d).into(), de)),
                }
            })
            .collect();
        let malm = MalmModule::ALL
            .into_iter()
            .map(|m| {
                let field = format!("malm_{}", m.key());
                let locked = current.is_some_and(|c| c.malm.contains(&m));
                OptionRow {
                    error: errors.get(&field).cloned(),
                    field,
                    name: m.display_name(de).to_owned(),
                    // What the license already has costs nothing more.
                    price: if locked {
                        String::new()
                    } else {
                        money::eur(prices.malm[&m], de)
                    },
                    checked: engineering || locked || entered.malm.contains(&m),
                    locked,
                }
            })
            .collect();
        let smarthome = [
            (
                "mystrom",
                "myStrom",
                prices.mystrom,
                entered.mystrom,
                current.is_some_and(|c| c.mystrom),
            ),
            (
                "philips_hue",
                "Philips Hue",
                prices.philips_hue,
                entered.philips_hue,
                current.is_some_and(|c| c.philips_hue),
            ),
        ]
        .into_iter()
        .map(|(field, name, price, checked, locked)| OptionRow {
            field: field.into(),
            name: name.into(),
            price: if locked {
                String::new()
            } else {
                money::eur(price, de)
            },
            checked: engineering || checked || locked,
            locked,
            error: errors.get(field).cloned(),
        })
        .collect();
        let users = [
            (
                "ge_users",
                "GE (Remote)",
                &entered.ge_users,
                current.map(|c| c.ge_users),
            ),
            (
                "pwa_users",
                "pWA",
                &entered.pwa_users,
                current.map(|c| c.pwa_users),
            ),
        ]
        .into_iter()
        .map(|(field, name, raw, had)| {
            let chosen = input::parse_count(raw, de).unwrap_or(1).max(1);
            let min = had.unwrap_or(1).max(1);
            UsersRow {
                field,
                name,
                options: (min..=prices.max_users)
                    .map(|n| (n, users_label(n, min, prices, de), n == chosen))
                    .collect(),
                error: errors.get(field).cloned(),
            }
        })
        .collect();
        SelectionView {
            engineering,
            drivers,
            malm,
            smarthome,
            users,
            total: priced
                .map(|p| money::eur(p.net, de))
                .unwrap_or_else(|| "–".into()),
            total_partial: priced.is_some() && errors.keys().any(|k| is_priced_field(k)),
        }
    }
}

/// "2 gleichzeitige Benutzer (100 €)" / "1 gleichzeitiger Benutzer (Bereits
/// enthalten)": `included` users are included (1 in a new license, what the
/// license has in an upgrade); each further one costs what it adds.
fn users_label(n: u32, included: u32, prices: &PriceList, de: bool) -> String {
    let unit = match (de, n == 1) {
        (true, true) => "gleichzeitiger Benutzer",
        (true, false) => "gleichzeitige Benutzer",
        (false, true) => "simultaneous user",
        (false, false) => "simultaneous users",
    };
    if n <= included {
        format!("{n} {unit} ({})", tr(de, "Bereits enthalten", "included"))
    } else {
        let price = prices.per_extra_user * Decimal::from(n - included);
        format!("{n} {unit} ({})", money::eur(price, de))
    }
}

/// A text input of the master data.
#[derive(Clone, Debug)]
pub struct FieldView {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub kind: &'static str,
    pub error: Option<String>,
}

fn master_fields(e: &Entered, errors: &Errors, de: bool) -> (Vec<FieldView>, Vec<FieldView>) {
    let f = |name: &'static str, label: &'static str, value: &str, kind: &'static str| FieldView {
        name,
        label,
        value: value.to_owned(),
        kind,
        error: errors.get(name).cloned(),
    };
    let l = &e.licensee;
    let licensee = vec![
        f("company", tr(de, "Firma", "Company"), &l.company, "text"),
        f(
            "first_name",
            tr(de, "Vorname", "First name"),
            &l.first_name,
            "text",
        ),
        f(
            "last_name",
            tr(de, "Nachname", "Last name"),
            &l.last_name,
            "text",
        ),
        f(
            "street",
            tr(de, "Straße und Hausnummer", "Street and number"),
            &l.street,
            "text",
        ),
        f("postcode", tr(de, "PLZ", "Postcode"), &l.postcode, "text"),
        f("city", tr(de, "Ort", "City"), &l.city, "text"),
        f(
            "state",
            tr(de, "Kanton/Bundesland", "Canton/state"),
            &l.state,
            "text",
        ),
        f("email", "Email", &l.email, "email"),
        f("phone", tr(de, "Telefon", "Phone"), &l.phone, "tel"),
    ];
    let data = vec![
        f("data_name", "Name", &e.data.name, "text"),
        f(
            "data_postcode",
            tr(de, "PLZ", "Postcode"),
            &e.data.postcode,
            "text",
        ),
        f("data_city", tr(de, "Ort", "City"), &e.data.city, "text"),
    ];
    (licensee, data)
}

// ----- pages ----------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "quote_choose.html")]
pub struct ChoosePage {
    pub c: Chrome,
}

/// The order form (new license) and the upgrade form (`upgrade` set).
#[derive(Template, Debug)]
#[template(path = "order_form.html")]
pub struct OrderFormPage {
    pub c: Chrome,
    pub action: String,
    /// "standard" or "engineering" (new), or the license number (upgrade).
    pub kind: String,
    pub upgrade: Option<String>,
    pub protection: String,
    pub protection_error: Option<String>,
    pub prices_protection: (String, String),
    pub licensee: Vec<FieldView>,
    pub data: Vec<FieldView>,
    pub countries: Vec<(String, String, bool)>,
    pub country_error: Option<String>,
    pub sel: SelectionView,
    pub remarks: String,
    pub remarks_error: Option<String>,
    pub has_errors: bool,
    /// Errors of fields the form does not show (unknown or repeated names).
    pub form_errors: Vec<(String, String)>,
}

impl OrderFormPage {
    pub fn de(&self) -> bool {
        self.c.lang == "de"
    }
}

/// The summary before "Get quote" (or, for upgrades, "Order now").
#[derive(Template, Debug)]
#[template(path = "order_summary.html")]
pub struct SummaryPage {
    pub c: Chrome,
    pub action: String,
    pub upgrade: Option<String>,
    pub protection: String,
    pub data: LicenseData,
    pub licensee: Vec<String>,
    pub s: SummaryView,
    pub hidden: Vec<(String, String)>,
    pub remarks: String,
}

/// Everything the form page needs from a request.
#[derive(Debug)]
pub struct FormState<'a> {
    pub entered: &'a Entered,
    pub errors: &'a Errors,
    pub priced: Option<&'a Priced>,
    pub license_type: LicenseType,
    /// Upgrade: the license and what it holds now.
    pub upgrade: Option<(&'a License, &'a Entitlements)>,
}

pub fn form_page(web: &Web, ctx: &Ctx, status: StatusCode, st: FormState<'_>) -> Response<Body> {
    let de = ctx.lang.is_de();
    let engineering = st.license_type == LicenseType::Engineering;
    let (licensee, data) = master_fields(st.entered, st.errors, de);
    let mut countries: Vec<(String, String, bool)> = web
        .prices
        .vat
        .keys()
        .map(|code| {
            (
                code.clone(),
                country_name(code, de),
                *code == st.entered.licensee.country,
            )
        })
        .collect();
    countries.sort_by_key(|c| super::i18n::sort_key(&c.1));
    let (action, kind, upgrade, title) = match st.upgrade {
        Some((l, _)) => (
            format!("/licenses/{}/upgrade", l.number),
            l.number.to_string(),
            Some(l.number.to_string()),
            format!("Upgrade {}", l.number),
        ),
        None => {
            let kind = if engineering {
                "engineering"
            } else {
                "standard"
            };
            (
                format!("/quote/{kind}"),
                kind.to_owned(),
                None,
                tr(de, "Lizenz bestellen", "Order a license").to_owned(),
            )
        }
    };
    let page = OrderFormPage {
        c: Chrome::new(web, ctx, &title),
        action,
        kind,
        upgrade,
        protection: if engineering {
            "engineering".into()
        } else if st.entered.protection == "hard_dongle" {
            "hard_dongle".into()
        } else {
            "soft_dongle".into()
        },
        protection_error: st.errors.get("protection").cloned(),
        prices_protection: (
            money::eur(web.prices.protection_price(Protection::SoftDongle), de),
            money::eur(web.prices.protection_price(Protection::HardDongle), de),
        ),
        licensee,
        data,
        countries,
        country_error: st.errors.get("country").cloned(),
        sel: SelectionView::build(
            &web.prices,
            st.entered,
            st.priced,
            st.upgrade.map(|(_, e)| e),
            engineering,
            st.errors,
            de,
        ),
        remarks: st.entered.remarks.clone(),
        remarks_error: st.errors.get("remarks").cloned(),
        has_errors: !st.errors.is_empty(),
        form_errors: st
            .errors
            .iter()
            .filter(|(k, _)| {
                !Entered::field_names().contains(k.as_str()) && k.as_str() != "upgrade"
            })
            .map(|(k, v)| (k.chars().take(40).collect(), v.clone()))
            .collect(),
    };
    pages::render(web, ctx, status, &page)
}

// ----- handlers: new license --------------------------------------------------------

fn require_login(ctx: &Ctx) -> Option<AccountId> {
    ctx.account.as_ref().map(|a| a.id)
}

/// "Angebot einholen": Standard or Engineering.
pub fn choose(web: Arc<Web>, ctx: Ctx) -> Resp {
    if require_login(&ctx).is_none() {
        return Ok(login_first(&ctx));
    }
    let page = ChoosePage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().order_license),
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

fn license_type_of(kind: &str) -> Option<LicenseType> {
    match kind {
        "standard" => Some(LicenseType::Standard),
        "engineering" => Some(LicenseType::Engineering),
        _ => None,
    }
}

pub fn form_get(web: Arc<Web>, ctx: Ctx, kind: String) -> Resp {
    if require_login(&ctx).is_none() {
        return Ok(login_first(&ctx));
    }
    let Some(license_type) = license_type_of(&kind) else {
        return Ok(super::answers::not_for_you(&web, &ctx));
    };
    let entered = Entered::new_for(&web, &ctx);
    let de = ctx.lang.is_de();
    let (sel, _) = entered.selection(license_type, de);
    let priced = web.prices.quote(&sel, None).ok();
    Ok(form_page(
        &web,
        &ctx,
        StatusCode::OK,
        FormState {
            entered: &entered,
            errors: &Errors::new(),
            priced: priced.as_ref(),
            license_type,
            upgrade: None,
        },
    ))
}

/// Validates and prices a submitted order form. `Err` carries the errors and
/// whatever could be priced, for showing the form again.
pub fn evaluate(
    prices: &PriceList,
    entered: &Entered,
    license_type: LicenseType,
    current: Option<&Entitlements>,
    de: bool,
) -> Result<Priced, Box<(Errors, Option<Priced>)>> {
    let (sel, mut errors) = entered.selection(license_type, de);
    if current.is_none() {
        entered.check_master_data(prices, de, &mut errors);
    } else if entered.remarks.chars().count() > MAX_REMARKS {
        errors.insert(
            "remarks".into(),
            tr(de, "Höchstens 2000 Zeichen.", "At most 2000 characters.").into(),
        );
    }
    let country = (!entered.licensee.country.is_empty() && !errors.contains_key("country"))
        .then_some(entered.licensee.country.as_str());
    let priced = price(prices, current, &sel, country, de, &mut errors);
    if errors.is_empty() {
        priced.ok_or_else(|| Box::new((errors, None)))
    } else {
        let valid_rows =
            priced.or_else(|| price_valid_rows(prices, current, &sel, country, &errors));
        Err(Box::new((errors, valid_rows)))
    }
}

/// [`evaluate`] for a submitted form (`form` as sent, `entered` as read from it):
/// a field name the form does not have, or a field sent twice, is refused too.
pub fn evaluate_submitted(
    prices: &PriceList,
    form: &Form,
    entered: &Entered,
    license_type: LicenseType,
    current: Option<&Entitlements>,
    de: bool,
) -> Result<Priced, Box<(Errors, Option<Priced>)>> {
    let mut refused = Errors::new();
    Entered::check_names(form, &["csrf", "step"], de, &mut refused);
    match evaluate(prices, entered, license_type, current, de) {
        Ok(p) if refused.is_empty() => Ok(p),
        Ok(p) => Err(Box::new((refused, Some(p)))),
        Err(e) => {
            let (mut errors, partial) = *e;
            errors.append(&mut refused);
            Err(Box::new((errors, partial)))
        }
    }
}

/// "Next", "Back" and "Get quote" of the new-license form.
pub fn form_post(web: Arc<Web>, ctx: Ctx, kind: String, form: Form) -> Resp {
    let Some(account) = require_login(&ctx) else {
        return Ok(login_first(&ctx));
    };
    let Some(license_type) = license_type_of(&kind) else {
        return Ok(super::answers::not_for_you(&web, &ctx));
    };
    let de = ctx.lang.is_de();
    let mut entered = Entered::from_form(&form);
    if license_type == LicenseType::Engineering {
        entered.protection = "engineering".into();
    }
    let step = form.get("step");
    let priced = match evaluate_submitted(&web.prices, &form, &entered, license_type, None, de) {
        Ok(p) => p,
        Err(e) => {
            let (errors, partial) = *e;
            return Ok(form_page(
                &web,
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormState {
                    entered: &entered,
                    errors: &errors,
                    priced: partial.as_ref(),
                    license_type,
                    upgrade: None,
                },
            ));
        }
    };
    if step == "back" {
        return Ok(form_page(
            &web,
            &ctx,
            StatusCode::OK,
            FormState {
                entered: &entered,
                errors: &Errors::new(),
                priced: Some(&priced),
                license_type,
                upgrade: None,
            },
        ));
    }
    let protection = match license_type {
        LicenseType::Engineering => Protection::Engineering,
        LicenseType::Standard if entered.protection == "hard_dongle" => Protection::HardDongle,
        LicenseType::Standard => Protection::SoftDongle,
    };
    let summary = summarize(&priced, &entered.licensee.country);
    if step != "quote" {
        let page = SummaryPage {
            c: Chrome::new(&web, &ctx, tr(de, "Zusammenfassung", "Summary")),
            action: format!("/quote/{kind}"),
            upgrade: None,
            protection: protection_name(protection).into(),
            data: entered.data.clone(),
            licensee: licensee_lines(&entered.licensee, de),
            s: SummaryView::build(&summary, &priced.entitlements, None, de),
            hidden: entered.hidden_fields(),
            remarks: entered.remarks.clone(),
        };
        return Ok(pages::render(&web, &ctx, StatusCode::OK, &page));
    }
    // "Get quote": the license (with its number) and the quote as its mutation #1.
    let now = web.clock.now();
    let actor = Actor::Account(account);
    let adds = if license_type == LicenseType::Engineering {
        Entitlements::engineering()
    } else {
        priced.entitlements.clone()
    };
    let created = web.store.create_license_with(
        NewLicense {
            account: Some(account),
            license_type,
            protection,
            licensee: entered.licensee.clone(),
            license_data: entered.data.clone(),
        },
        NewMutation {
            kind: MutationKind::New,
            adds,
            price_net: Some(summary.net.clone()),
            remarks: entered.remarks.clone(),
            priced: Some(summary.clone()),
        },
        false,
        false,
        &web.key,
        &actor,
        now,
    );
    let m = match created {
        Ok((_, m)) => m,
        Err(e) => return Ok(internal_error(&web, &ctx, "creating a quote", e)),
    };
    if let Err(e) = super::emails::quote(&web, &ctx, &m) {
        tracing::error!(error = %e, quote = %m.id(), "quote email not queued");
    }
    Ok(redirect(
        &format!("/quotes?created={}/{}", m.license, m.number),
        &[],
    ))
}

pub fn csrf_refused(web: &Web, ctx: &Ctx) -> Response<Body> {
    let t = ctx.lang.t();
    pages::message(
        web,
        ctx,
        StatusCode::FORBIDDEN,
        t.forbidden_title,
        t.err_csrf,
    )
}

// ----- the live price endpoint ------------------------------------------------------

/// `GET /api/price?<the order form's fields>`: the same computation as "Next",
/// as JSON for `static/order.js`. With `license=<number>` it prices an upgrade of
/// that license (its owner only). Never stores anything. Any invalid or unknown
/// field answers 422 with `ok: false` and the field errors, and no total.
pub fn price_api(web: Arc<Web>, ctx: Ctx, q: Vec<(String, String)>) -> Resp {
    let form = Form::from_pairs(q);
    let current = if form.has("license") {
        match super::answers::owned(&web, &ctx, form.get("license")) {
            Some(l) => Some(l.entitlements),
            None => {
                return Ok(json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not found"}),
                ))
            }
        }
    } else {
        None
    };
    let (status, body) = price_answer(&web.prices, &form, current.as_ref(), ctx.lang.is_de());
    Ok(json(status, &body))
}

/// The answer of [`price_api`] for its query `form`; `current` is the
/// entitlements of the license to upgrade. 200 with `ok: true` and the totals
/// only when every field is known and valid; otherwise 422 with `ok: false`,
/// `errors` (field name to message) and no `net`, `vat` or `gross`.
///
/// Shape:
///
/// ```text
/// { "ok": bool,                 // every field known and valid (status 200, else 422)
///   "net", "net_value", "vat", "gross": string,   // only when ok
///   "drivers": { "<key>": { "price", "composition", "total" } },  // "–" on a row with an error
///   "errors": { "<field>": "message" },
///   "rows": { "driver_<key>": "price" },   // the valid driver rows' prices
///   "partial_total": string | null }       // net of the valid rows
/// ```
///
/// `rows` and `partial_total` are there only while every error is a row of the
/// form (a count over its maximum, a misread count): one such row leaves every
/// other row's price and the total of the valid rows on the page
/// (`static/order.js`). An unknown or repeated field, kind or country gives
/// neither.
pub fn price_answer(
    prices: &PriceList,
    form: &Form,
    current: Option<&Entitlements>,
    de: bool,
) -> (StatusCode, serde_json::Value) {
    let mut refused = Errors::new();
    let extra: &[&str] = if current.is_some() {
        &["license"]
    } else {
        &["kind"]
    };
    Entered::check_names(form, extra, de, &mut refused);
    let license_type = match (current, form.get("kind")) {
        (Some(_), _) | (None, "standard") => LicenseType::Standard,
        (None, "engineering") => LicenseType::Engineering,
        (None, _) => {
            refused.insert(
                "kind".into(),
                tr(
                    de,
                    "Bitte Standard oder Engineering wählen (kind=standard oder kind=engineering).",
                    "Please choose Standard or Engineering (kind=standard or kind=engineering).",
                )
                .into(),
            );
            LicenseType::Standard
        }
    };
    let entered = Entered::from_form(form);
    let (sel, mut errors) = entered.selection(license_type, de);
    errors.append(&mut refused);
    let country_known = prices.vat_percent(&entered.licensee.country).is_some();
    if !entered.licensee.country.is_empty() && !country_known {
        errors.insert(
            "country".into(),
            tr(
                de,
                "Bitte wählen Sie ein Land aus der Liste.",
                "Please choose a country from the list.",
            )
            .into(),
        );
    }
    let country = country_known.then_some(entered.licensee.country.as_str());
    let priced = price(prices, current, &sel, country, de, &mut errors);
    let valid_rows = match &priced {
        Some(p) if errors.is_empty() => Some(p.clone()),
        _ => price_valid_rows(prices, current, &sel, country, &errors),
    };
    let view = SelectionView::build(
        prices,
        &entered,
        valid_rows.as_ref(),
        current,
        license_type == LicenseType::Engineering,
        &errors,
        de,
    );
    let drivers: serde_json::Map<String, serde_json::Value> = view
        .drivers
        .iter()
        .map(|d| {
            (
                d.key.to_owned(),
                serde_json::json!({
                    "price": d.price,
                    "composition": d.composition,
                    "total": [d.total.0, d.total.1],
                }),
            )
        })
        .collect();
    let priced = priced.filter(|_| errors.is_empty());
    let status = if priced.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let rows_only = errors
        .keys()
        .all(|k| is_priced_field(k) && Entered::field_names().contains(k.as_str()));
    let valid_rows = valid_rows.filter(|_| rows_only);
    let rows: serde_json::Map<String, serde_json::Value> = view
        .drivers
        .iter()
        .filter(|d| d.error.is_none() && valid_rows.is_some())
        .map(|d| (format!("driver_{}", d.key), d.price.clone().into()))
        .collect();
    let mut body = serde_json::json!({
        "ok": priced.is_some(),
        "drivers": drivers,
        "errors": errors,
        "rows": rows,
        "partial_total": valid_rows.as_ref().map(|p| money::eur(p.net, de)),
    });
    if let Some(p) = &priced {
        body["net"] = money::eur(p.net, de).into();
        body["net_value"] = p.net.normalize().to_string().into();
        if p.vat_percent.is_some() {
            body["vat"] = money::eur(p.vat, de).into();
            body["gross"] = money::eur(p.gross, de).into();
        }
    }
    (status, body)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

// ----- quotes -----------------------------------------------------------------------

/// One row of the quote list.
#[derive(Clone, Debug)]
pub struct QuoteRow {
    pub id: String,
    pub path: String,
    pub kind: String,
    pub license: String,
    pub licensee: String,
    pub created: String,
    pub valid_until: String,
    pub price: String,
    pub expired: bool,
    /// Ordered (and perhaps activated since): no longer open, linked to its license.
    pub ordered: bool,
    pub license_path: String,
}

#[derive(Template, Debug)]
#[template(path = "quotes.html")]
pub struct QuotesPage {
    pub c: Chrome,
    pub created: Option<(String, String)>,
    pub q: String,
    pub filter: String,
    pub filters: Vec<(&'static str, &'static str)>,
    pub rows: Vec<QuoteRow>,
    /// The page shown (1-based), the number of pages and of quotes listed.
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

impl QuotesPage {
    pub fn is_filter(&self, v: &str) -> bool {
        self.filter == v
    }
}

/// The mutation `<number>/<n>` of a license the request may see (owner or admin).
pub fn owned_mutation(web: &Web, ctx: &Ctx, number: &str, n: u32) -> Option<(License, Mutation)> {
    let license = super::answers::owned(web, ctx, number)?;
    let m = web.store.mutation(&license.number, n).ok()??;
    Some((license, m))
}

/// "Meine Angebote": number, type, license, licensee, created, valid until, price;
/// search (`q`) and filter (`show` = open, expired, ordered, new, upgrade), newest
/// first, a page at a time (`page`). An ordered quote stays in the list, marked
/// as ordered, with a link to its license. Without a search the page is one
/// indexed store read that decodes only its rows; the search matches on the
/// rendered row (number, license, licensee, price as shown), so it reads the
/// customer's quotes that the filter keeps.
pub fn quotes(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    let Some(account) = require_login(&ctx) else {
        return Ok(login_first(&ctx));
    };
    let de = ctx.lang.is_de();
    let lang = ctx.lang;
    let now = web.clock.now();
    if let Some(field) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "q" | "show" | "page" | "created"))
    {
        return Ok(pages::bad_list_parameter(&web, &ctx, field));
    }
    let search = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let filter = q.get("show").cloned().unwrap_or_default();
    let Some(kept) = QuoteFilter::parse(&filter) else {
        return Ok(pages::bad_list_parameter(&web, &ctx, "show"));
    };
    let Some(page) = input::list_page(q.get("page").map(String::as_str)) else {
        return Ok(pages::bad_list_parameter(&web, &ctx, "page"));
    };
    let row = |l: &License, m: &Mutation| {
        let ordered = matches!(m.state, MutationState::Ordered | MutationState::Activated);
        QuoteRow {
            id: m.id(),
            path: format!("/quotes/{}/{}", m.license, m.number),
            kind: match (m.kind, de) {
                (MutationKind::New, true) => "Neu".into(),
                (MutationKind::New, false) => "New".into(),
                (MutationKind::Upgrade, _) => "Upgrade".into(),
                (MutationKind::Renewal, true) => "Verlängerung".into(),
                (MutationKind::Renewal, false) => "Renewal".into(),
            },
            license: format!(
                "{}, {} {}",
                l.license_data.name, l.license_data.postcode, l.license_data.city
            ),
            licensee: format!(
                "{} ({} {})",
                l.licensee.company, l.licensee.first_name, l.licensee.last_name
            ),
            created: pages::date(m.created_at, lang),
            valid_until: pages::date(m.quote_valid_until, lang),
            price: m
                .price_net
                .as_deref()
                .map(|p| eur_text(p, de))
                .unwrap_or_default(),
            expired: !ordered && quote_expired(m, now),
            ordered,
            license_path: format!("/licenses/{}", m.license),
        }
    };
    let (total, page, rows) = if search.is_empty() {
        match web
            .store
            .customer_quote_page(account, kept, now, Some((page, PAGE_SIZE)))
        {
            Ok(p) => (
                p.total,
                p.page,
                p.rows.iter().map(|(l, m)| row(l, m)).collect::<Vec<_>>(),
            ),
            Err(e) => return Ok(internal_error(&web, &ctx, "quote list", e)),
        }
    } else {
        let all = match web.store.customer_quote_page(account, kept, now, None) {
            Ok(p) => p.rows,
            Err(e) => return Ok(internal_error(&web, &ctx, "quote search", e)),
        };
        let matching: Vec<QuoteRow> = all
            .iter()
            .map(|(l, m)| row(l, m))
            .filter(|r| {
                format!("{} {} {} {}", r.id, r.license, r.licensee, r.price)
                    .to_lowercase()
                    .contains(&search)
            })
            .collect();
        let total = matching.len();
        let page = page.min(total.div_ceil(PAGE_SIZE).max(1));
        let rows = matching
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        (total, page, rows)
    };
    let created = q.get("created").and_then(|c| {
        let (n, m) = c.split_once('/')?;
        let (_, m) = owned_mutation(&web, &ctx, n, m.parse().ok()?)?;
        Some((m.id(), ctx.account.as_ref()?.email.clone()))
    });
    let page = QuotesPage {
        c: Chrome::new(&web, &ctx, tr(de, "Meine Angebote", "My quotes")),
        created,
        q: q.get("q").cloned().unwrap_or_default(),
        filter,
        filters: vec![
            ("", tr(de, "Alle", "All")),
            ("open", tr(de, "Offen", "Open")),
            ("expired", tr(de, "Abgelaufen", "Expired")),
            ("ordered", ctx.lang.t().quote_ordered),
            ("new", tr(de, "Neu", "New")),
            ("upgrade", "Upgrade"),
        ],
        rows,
        page,
        pages: total.div_ceil(PAGE_SIZE).max(1),
        total,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

#[derive(Template, Debug)]
#[template(path = "quote.html")]
pub struct QuotePage {
    pub c: Chrome,
    pub id: String,
    pub path: String,
    pub license: String,
    pub kind: String,
    pub state: String,
    pub created: String,
    pub valid_until: String,
    pub can_order: bool,
    pub can_delete: bool,
    pub expired: bool,
    pub protection: String,
    pub data: LicenseData,
    pub licensee: Vec<String>,
    pub s: Option<SummaryView>,
    pub remarks: String,
}

/// One quote, with "Order" while it can be ordered (the emailed link lands here).
pub fn quote_show(web: Arc<Web>, ctx: Ctx, number: String, n: u32) -> Resp {
    if require_login(&ctx).is_none() {
        return Ok(login_first(&ctx));
    }
    let Some((license, m)) = owned_mutation(&web, &ctx, &number, n) else {
        return Ok(super::answers::not_for_you(&web, &ctx));
    };
    let de = ctx.lang.is_de();
    let now = web.clock.now();
    let expired = quote_expired(&m, now);
    let before = (m.kind != MutationKind::New).then(|| {
        let mut b = license.entitlements.clone();
        if m.state == MutationState::Activated {
            b = minus(&b, &m.adds);
        }
        b
    });
    let after = match &before {
        Some(b) => b.plus(&m.adds),
        None => m.adds.clone(),
    };
    let page = QuotePage {
        c: Chrome::new(&web, &ctx, &m.id()),
        id: m.id(),
        path: format!("/quotes/{}/{}", m.license, m.number),
        license: license.number.to_string(),
        kind: match m.kind {
            MutationKind::New => tr(de, "Neue Lizenz", "New license").into(),
            MutationKind::Upgrade => "Upgrade".into(),
            MutationKind::Renewal => tr(de, "Verlängerung", "Renewal").into(),
        },
        state: if expired {
            state_name(MutationState::Expired, de).into()
        } else {
            state_name(m.state, de).into()
        },
        created: pages::date(m.created_at, ctx.lang),
        valid_until: pages::date(m.quote_valid_until, ctx.lang),
        can_order: m.state == MutationState::Quote && !expired,
        can_delete: m.state == MutationState::Quote,
        expired,
        protection: protection_name(license.protection).into(),
        data: license.license_data.clone(),
        licensee: licensee_lines(&license.licensee, de),
        s: m.priced
            .as_ref()
            .map(|s| SummaryView::build(s, &after, before.as_ref(), de)),
        remarks: m.remarks.clone(),
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

/// Entitlements `a` without `b` (what a license had before an activated mutation).
fn minus(a: &Entitlements, b: &Entitlements) -> Entitlements {
    let mut out = a.clone();
    for (d, n) in &b.drivers {
        let e = out.drivers.entry(*d).or_insert(0);
        *e = e.saturating_sub(*n);
    }
    for m in &b.malm {
        out.malm.remove(m);
    }
    out.mystrom &= !b.mystrom;
    out.philips_hue &= !b.philips_hue;
    out.ge_users = out.ge_users.saturating_sub(b.ge_users);
    out.pwa_users = out.pwa_users.saturating_sub(b.pwa_users);
    out
}

/// Orders a quote: the license page thanks and explains what happens next.
pub fn quote_order(web: Arc<Web>, ctx: Ctx, number: String, n: u32) -> Resp {
    let Some(account) = require_login(&ctx) else {
        return Ok(login_first(&ctx));
    };
    let Some((license, m)) = owned_mutation(&web, &ctx, &number, n) else {
        return Ok(super::answers::not_for_you(&web, &ctx));
    };
    let now = web.clock.now();
    if quote_expired(&m, now) {
        return Ok(quote_expired_page(&web, &ctx));
    }
    let ordered = web.store.order_mutation(
        &license.number,
        m.number,
        &web.key,
        &Actor::Account(account),
        now,
    );
    finish_order(&web, &ctx, ordered)
}

/// After an order: emails (order; activation if it was activated at once) and the
/// license page with its thank-you note. Refusals get a page saying why.
pub fn finish_order(
    web: &Web,
    ctx: &Ctx,
    ordered: Result<Mutation, crate::store::LicenseError>,
) -> Resp {
    let de = ctx.lang.is_de();
    match ordered {
        Ok(m) => {
            if let Err(e) = super::emails::ordered(web, &m) {
                tracing::error!(error = %e, order = %m.id(), "order email not queued");
            }
            if m.state == MutationState::Activated {
                if let Err(e) = super::emails::activated(web, &m) {
                    tracing::error!(error = %e, order = %m.id(), "activation email not queued");
                }
            }
            Ok(redirect(
                &format!("/licenses/{}?ordered={}", m.license, m.number),
                &[],
            ))
        }
        Err(crate::store::LicenseError::QuoteExpired(_)) => Ok(quote_expired_page(web, ctx)),
        Err(crate::store::LicenseError::Transition { .. }) => Ok(pages::message(
            web,
            ctx,
            StatusCode::CONFLICT,
            tr(de, "Nicht möglich", "Not possible"),
            tr(
                de,
                "Dieses Angebot wurde bereits bestellt oder gelöscht.",
                "This quote was already ordered or deleted.",
            ),
        )),
        Err(crate::store::LicenseError::Rule(rule)) => Ok(pages::message(
            web,
            ctx,
            StatusCode::CONFLICT,
            tr(de, "Nicht möglich", "Not possible"),
            &super::views::rule_text(&rule, de),
        )),
        Err(e) => Ok(internal_error(web, ctx, "ordering", e)),
    }
}

fn quote_expired_page(web: &Web, ctx: &Ctx) -> Response<Body> {
    let de = ctx.lang.is_de();
    pages::message(
        web,
        ctx,
        StatusCode::CONFLICT,
        tr(de, "Angebot abgelaufen", "Quote expired"),
        tr(
            de,
            "Dieses Angebot ist nicht mehr gültig und kann nicht bestellt werden. Bitte holen Sie ein neues Angebot ein.",
            "This quote is no longer valid and cannot be ordered. Please ask for a new quote.",
        ),
    )
}

/// Deletes a quote (not an order).
pub fn quote_delete(web: Arc<Web>, ctx: Ctx, number: String, n: u32) -> Resp {
    let Some(account) = require_login(&ctx) else {
        return Ok(login_first(&ctx));
    };
    let Some((license, m)) = owned_mutation(&web, &ctx, &number, n) else {
        return Ok(super::answers::not_for_you(&web, &ctx));
    };
    if m.state != MutationState::Quote {
        let de = ctx.lang.is_de();
        return Ok(pages::message(
            &web,
            &ctx,
            StatusCode::CONFLICT,
            tr(de, "Nicht möglich", "Not possible"),
            tr(
                de,
                "Nur offene Angebote können gelöscht werden.",
                "Only open quotes can be deleted.",
            ),
        ));
    }
    match web.store.delete_mutation(
        &license.number,
        m.number,
        &Actor::Account(account),
        web.clock.now(),
    ) {
        Ok(_) => Ok(redirect("/quotes", &[])),
        Err(e) => Ok(internal_error(&web, &ctx, "deleting a quote", e)),
    }
}

/// The JavaScript of the order form (live total and cost details).
pub const ORDER_JS: &str = include_str!("../../static/order.js");

/// Serves `order.js`.
pub fn order_js() -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/javascript; charset=utf-8")
        .body(Body::from(ORDER_JS))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_undoes_plus() {
        let a = Entitlements::standard_base();
        let mut b = Entitlements::none();
        b.drivers.insert(Driver::SaiaPcd, 6000);
        b.ge_users = 2;
        b.mystrom = true;
        assert_eq!(minus(&a.plus(&b), &b), a);
    }
}
