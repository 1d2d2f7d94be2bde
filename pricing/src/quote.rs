//! A customer's selection priced into the manual's positions, net, VAT and gross.

use crate::cover::{self, Cover};
use crate::list::{from_cents, PriceList};
use crate::money;
use keys::{Driver, Entitlements, LicenseType, MalmModule, Protection};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};

/// What the customer chose on the order form (already parsed into numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub license_type: LicenseType,
    pub protection: Protection,
    /// Per driver, as entered. A new license ([`PriceList::quote`]): the data
    /// points to buy; at or below the free base nothing is bought, above it
    /// packages covering the amount are bought and the free base comes on top
    /// (SAIA PCD 6,000 gives 6,100). An upgrade ([`PriceList::quote_upgrade`]):
    /// the new total the license is to hold (SAIA PCD 6,100 -> 16,100 buys
    /// 10,000), never less than it holds now.
    pub drivers: BTreeMap<Driver, u32>,
    pub malm: BTreeSet<MalmModule>,
    pub mystrom: bool,
    pub philips_hue: bool,
    /// Simultaneous users in total (1 is included).
    pub ge_users: u32,
    pub pwa_users: u32,
}

impl Selection {
    /// The form as it opens: every driver at its free base, one user each.
    pub fn standard_default(protection: Protection) -> Self {
        Selection {
            license_type: LicenseType::Standard,
            protection,
            drivers: Driver::ALL
                .into_iter()
                .map(|d| (d, d.free_base()))
                .collect(),
            malm: BTreeSet::new(),
            mystrom: false,
            philips_hue: false,
            ge_users: 1,
            pwa_users: 1,
        }
    }

    /// An upgrade's starting point: what `current` holds, as new totals (priced
    /// by [`PriceList::quote_upgrade`] this adds nothing and costs nothing).
    pub fn upgrade_of(current: &Entitlements, protection: Protection) -> Self {
        Selection {
            license_type: LicenseType::Standard,
            protection,
            drivers: Driver::ALL
                .into_iter()
                .map(|d| (d, current.driver(d)))
                .collect(),
            malm: current.malm.clone(),
            mystrom: current.mystrom,
            philips_hue: current.philips_hue,
            ge_users: current.ge_users.max(1),
            pwa_users: current.pwa_users.max(1),
        }
    }

    /// An engineering license: fixed content, free.
    pub fn engineering() -> Self {
        let e = Entitlements::engineering();
        Selection {
            license_type: LicenseType::Engineering,
            protection: Protection::Engineering,
            drivers: e.drivers,
            malm: e.malm,
            mystrom: true,
            philips_hue: true,
            ge_users: 1,
            pwa_users: 1,
        }
    }
}

/// ProMoS operator programs with simultaneous users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorProgram {
    Ge,
    Pwa,
}

impl OperatorProgram {
    pub fn name(self) -> &'static str {
        match self {
            OperatorProgram::Ge => "GE (Remote)",
            OperatorProgram::Pwa => "pWA",
        }
    }
}

/// What a position is, rendered in German or English by [`PositionLabel::text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PositionLabel {
    Protection(Protection),
    /// A driver's free base or a package: "SAIA PCD: 1.000 Datenpunkte".
    DriverPoints {
        driver: Driver,
        points: u32,
    },
    Malm(MalmModule),
    MyStrom,
    PhilipsHue,
    OperatorProgram {
        program: OperatorProgram,
        users: u32,
    },
}

impl PositionLabel {
    pub fn text(&self, german: bool) -> String {
        match self {
            PositionLabel::Protection(p) => {
                let name = match p {
                    Protection::SoftDongle => "SoftDongle",
                    Protection::HardDongle => "HardDongle",
                    Protection::Engineering => "Engineering",
                };
                format!(
                    "{}: {name}",
                    if german {
                        "Software-Schutz"
                    } else {
                        "Software protection"
                    }
                )
            }
            PositionLabel::DriverPoints { driver, points } => {
                let (one, many) = driver.unit(german);
                format!(
                    "{}: {} {}",
                    driver.display_name(),
                    money::count((*points).into(), german),
                    if *points == 1 { one } else { many }
                )
            }
            PositionLabel::Malm(m) => format!("MALM: {}", m.display_name(german)),
            PositionLabel::MyStrom => "SmartHome: myStrom".to_owned(),
            PositionLabel::PhilipsHue => "SmartHome: Philips Hue".to_owned(),
            PositionLabel::OperatorProgram { program, users } => {
                let unit = match (german, *users == 1) {
                    (true, true) => "gleichzeitiger Benutzer",
                    (true, false) => "gleichzeitige Benutzer",
                    (false, true) => "simultaneous user",
                    (false, false) => "simultaneous users",
                };
                format!("{}: {users} {unit}", program.name())
            }
        }
    }
}

/// One line of the summary: position, quantity, unit price, amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub label: PositionLabel,
    pub quantity: u32,
    pub unit_price: Decimal,
    pub amount: Decimal,
}

/// How one driver's price is composed ("Kostendetails").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverComposition {
    pub driver: Driver,
    /// Amount the customer asked to buy (beyond what the license had).
    pub requested: u32,
    /// `(package size, count, unit price)`, ascending by size.
    pub packages: Vec<(u32, u32, Decimal)>,
    /// Free base included (0 in an upgrade: it was included before).
    pub free_base: u32,
    /// Data points after this order (or upgrade).
    pub total_points: u32,
    pub price: Decimal,
}

/// A field the customer must correct, with the message in both languages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The form field's name (`driver_saia_pcd`, `ge_users`, `country`, ...).
    pub field: String,
    pub de: String,
    pub en: String,
}

impl FieldError {
    fn new(field: impl Into<String>, de: String, en: String) -> Self {
        FieldError {
            field: field.into(),
            de,
            en,
        }
    }
    pub fn message(&self, german: bool) -> &str {
        if german {
            &self.de
        } else {
            &self.en
        }
    }
}

/// A priced selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priced {
    pub positions: Vec<Position>,
    pub drivers: Vec<DriverComposition>,
    pub net: Decimal,
    /// VAT percent; `None` while no country is known (the live total before the
    /// licensee's country is entered).
    pub vat_percent: Option<Decimal>,
    pub vat: Decimal,
    pub gross: Decimal,
    /// What the license allows after this order.
    pub entitlements: Entitlements,
    /// What this order adds (equal to `entitlements` for a new license).
    pub added: Entitlements,
}

fn position(label: PositionLabel, quantity: u32, unit_price: Decimal) -> Position {
    Position {
        label,
        quantity,
        unit_price,
        amount: unit_price * Decimal::from(quantity),
    }
}

impl PriceList {
    /// Prices a new license. `country` selects the VAT rate; `None` prices net only.
    pub fn quote(&self, sel: &Selection, country: Option<&str>) -> Result<Priced, Vec<FieldError>> {
        self.price(None, sel, country)
    }

    /// Prices an upgrade of a license that currently allows `current` to the totals
    /// in `sel` (see [`Selection::drivers`]): only what is added costs, composed by
    /// the same package logic (the free base was included before). Decreases and
    /// totals above a driver's maximum are field errors.
    pub fn quote_upgrade(
        &self,
        current: &Entitlements,
        sel: &Selection,
        country: Option<&str>,
    ) -> Result<Priced, Vec<FieldError>> {
        self.price(Some(current), sel, country)
    }

    fn price(
        &self,
        current: Option<&Entitlements>,
        sel: &Selection,
        country: Option<&str>,
    ) -> Result<Priced, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut positions = Vec::new();
        let mut compositions = Vec::new();
        let engineering = sel.license_type == LicenseType::Engineering;

        match (engineering, sel.protection) {
            (true, Protection::Engineering) | (false, Protection::SoftDongle | Protection::HardDongle) => {}
            (true, _) => errors.push(FieldError::new(
                "protection",
                "Engineering-Lizenzen werden nur online aktiviert: SoftDongle und HardDongle sind nicht wählbar.".into(),
                "Engineering licenses are activated online only: SoftDongle and HardDongle cannot be chosen.".into(),
            )),
            (false, _) => errors.push(FieldError::new(
                "protection",
                "Bitte wählen Sie SoftDongle oder HardDongle.".into(),
                "Please choose SoftDongle or HardDongle.".into(),
            )),
        }
        if current.is_none() {
            positions.push(position(
                PositionLabel::Protection(sel.protection),
                1,
                self.protection_price(sel.protection),
            ));
        }

        let mut total = current.cloned().unwrap_or_else(Entitlements::none);
        let mut added = Entitlements::none();

        for driver in Driver::ALL {
            let prices = self.driver(driver);
            let field = format!("driver_{}", driver.key());
            if engineering {
                let points = driver.engineering_count();
                positions.push(position(
                    PositionLabel::DriverPoints { driver, points },
                    1,
                    Decimal::ZERO,
                ));
                total.drivers.insert(driver, points);
                added.drivers.insert(driver, points);
                continue;
            }
            let requested = sel.drivers.get(&driver).copied().unwrap_or(0);
            let unit = |german: bool| driver.unit(german).1;
            // (data points to buy, free base included now)
            let (to_buy, base_now) = match current {
                // A new license: the amount to buy; up to the free base is free.
                None => {
                    if requested > prices.maximum {
                        errors.push(FieldError::new(
                            field,
                            format!(
                                "Höchstens {} {}.",
                                money::count(prices.maximum.into(), true),
                                unit(true)
                            ),
                            format!(
                                "At most {} {}.",
                                money::count(prices.maximum.into(), false),
                                unit(false)
                            ),
                        ));
                        continue;
                    }
                    let to_buy = if requested <= prices.free_base {
                        0
                    } else {
                        requested
                    };
                    (to_buy, prices.free_base)
                }
                // An upgrade: the new total; what the license holds is paid for.
                Some(cur) => {
                    let now = cur.driver(driver);
                    if requested < now {
                        errors.push(FieldError::new(
                            field,
                            format!(
                                "Eine Lizenz kann nicht verkleinert werden (bisher: {} {}).",
                                money::count(now.into(), true),
                                unit(true)
                            ),
                            format!(
                                "A license cannot be reduced (now: {} {}).",
                                money::count(now.into(), false),
                                unit(false)
                            ),
                        ));
                        continue;
                    }
                    // The domain's rule: a license holds at most the maximum.
                    if requested > now && requested > prices.maximum {
                        errors.push(FieldError::new(
                            field,
                            format!(
                                "Höchstens {} {} insgesamt.",
                                money::count(prices.maximum.into(), true),
                                unit(true)
                            ),
                            format!(
                                "At most {} {} in total.",
                                money::count(prices.maximum.into(), false),
                                unit(false)
                            ),
                        ));
                        continue;
                    }
                    (requested - now, 0)
                }
            };
            let Some(cover) = cover::cheapest(&prices.packages_in_cents(), u64::from(to_buy))
            else {
                errors.push(FieldError::new(
                    field,
                    "Kein Paket verfügbar.".into(),
                    "No package available.".into(),
                ));
                continue;
            };
            let Cover {
                counts,
                covered,
                cents,
            } = cover;
            let covered = u32::try_from(covered).unwrap_or(u32::MAX);
            let mut packages = Vec::new();
            if base_now > 0 {
                positions.push(position(
                    PositionLabel::DriverPoints {
                        driver,
                        points: base_now,
                    },
                    1,
                    Decimal::ZERO,
                ));
            }
            for (i, n) in counts {
                let (size, price) = prices.packages[i];
                positions.push(position(
                    PositionLabel::DriverPoints {
                        driver,
                        points: size,
                    },
                    n,
                    price,
                ));
                packages.push((size, n, price));
            }
            let before = current.map(|c| c.driver(driver)).unwrap_or(0);
            let after = before + base_now + covered;
            total.drivers.insert(driver, after);
            if after > before {
                added.drivers.insert(driver, after - before);
            }
            compositions.push(DriverComposition {
                driver,
                requested: to_buy,
                packages,
                free_base: base_now,
                total_points: after,
                price: from_cents(cents),
            });
        }

        // Remote alarming (MALM).
        let malm: BTreeSet<MalmModule> = if engineering {
            MalmModule::ALL.into_iter().collect()
        } else {
            sel.malm.clone()
        };
        if let Some(cur) = current {
            if let Some(dropped) = cur.malm.iter().find(|m| !malm.contains(m)) {
                errors.push(FieldError::new(
                    format!("malm_{}", dropped.key()),
                    "Bereits lizenzierte Module können nicht entfernt werden.".into(),
                    "Modules already licensed cannot be removed.".into(),
                ));
            }
        }
        for m in &malm {
            if current.is_some_and(|c| c.malm.contains(m)) {
                continue;
            }
            let price = if engineering {
                Decimal::ZERO
            } else {
                self.malm[m]
            };
            positions.push(position(PositionLabel::Malm(*m), 1, price));
            total.malm.insert(*m);
            added.malm.insert(*m);
        }

        // SmartHome.
        for (wanted, had, label, price) in [
            (
                sel.mystrom || engineering,
                current.is_some_and(|c| c.mystrom),
                PositionLabel::MyStrom,
                self.mystrom,
            ),
            (
                sel.philips_hue || engineering,
                current.is_some_and(|c| c.philips_hue),
                PositionLabel::PhilipsHue,
                self.philips_hue,
            ),
        ] {
            if had && !wanted {
                errors.push(FieldError::new(
                    if label == PositionLabel::MyStrom {
                        "mystrom"
                    } else {
                        "philips_hue"
                    },
                    "Bereits lizenzierte Optionen können nicht entfernt werden.".into(),
                    "Options already licensed cannot be removed.".into(),
                ));
            }
            if wanted && !had {
                let price = if engineering { Decimal::ZERO } else { price };
                positions.push(position(label.clone(), 1, price));
                match label {
                    PositionLabel::MyStrom => (total.mystrom, added.mystrom) = (true, true),
                    _ => (total.philips_hue, added.philips_hue) = (true, true),
                }
            }
        }

        // Operator programs: one user included, each further user costs.
        for (program, wanted, field) in [
            (
                OperatorProgram::Ge,
                if engineering { 1 } else { sel.ge_users },
                "ge_users",
            ),
            (
                OperatorProgram::Pwa,
                if engineering { 1 } else { sel.pwa_users },
                "pwa_users",
            ),
        ] {
            let had = current.map(|c| match program {
                OperatorProgram::Ge => c.ge_users,
                OperatorProgram::Pwa => c.pwa_users,
            });
            if wanted < 1 || wanted > self.max_users {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "Bitte 1 bis {} gleichzeitige Benutzer wählen.",
                        self.max_users
                    ),
                    format!("Please choose 1 to {} simultaneous users.", self.max_users),
                ));
                continue;
            }
            if had.is_some_and(|h| wanted < h) {
                errors.push(FieldError::new(
                    field,
                    "Die Anzahl Benutzer kann nicht verringert werden.".into(),
                    "The number of users cannot be reduced.".into(),
                ));
                continue;
            }
            let extra = wanted - had.unwrap_or(1);
            if current.is_none() || extra > 0 {
                let unit = if engineering {
                    Decimal::ZERO
                } else {
                    self.per_extra_user * Decimal::from(extra)
                };
                positions.push(position(
                    PositionLabel::OperatorProgram {
                        program,
                        users: wanted,
                    },
                    1,
                    unit,
                ));
            }
            match program {
                OperatorProgram::Ge => {
                    total.ge_users = wanted;
                    added.ge_users = wanted - had.unwrap_or(0);
                }
                OperatorProgram::Pwa => {
                    total.pwa_users = wanted;
                    added.pwa_users = wanted - had.unwrap_or(0);
                }
            }
        }

        let vat_percent = match country {
            None => None,
            Some(c) => match self.vat_percent(c) {
                Some(rate) => Some(rate),
                None => {
                    errors.push(FieldError::new(
                        "country",
                        format!("Für das Land {c:?} ist keine Bestellung möglich; bitte wählen Sie ein Land aus der Liste."),
                        format!("Orders from {c:?} are not possible; please choose a country from the list."),
                    ));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let net: Decimal = positions.iter().map(|p| p.amount).sum();
        let vat = vat_percent
            .map(|r| {
                (net * r / Decimal::ONE_HUNDRED)
                    .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            })
            .unwrap_or(Decimal::ZERO);
        Ok(Priced {
            positions,
            drivers: compositions,
            net,
            vat_percent,
            vat,
            gross: net + vat,
            entitlements: total,
            added,
        })
    }
}
