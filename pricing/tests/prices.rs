//! The manual's numbers, the package choice against brute force, upgrades and
//! field errors.

use keys::{Driver, Entitlements, MalmModule, Protection};
use pricing::cover::{self, Package};
use pricing::{money, PositionLabel, PriceList, Selection};
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn manual_order() -> Selection {
    let mut sel = Selection::standard_default(Protection::SoftDongle);
    sel.drivers.insert(Driver::Modbus, 10_000);
    sel.drivers.insert(Driver::SaiaPcd, 6_000);
    sel.pwa_users = 5;
    sel
}

#[test]
fn the_manuals_worked_order_exactly() {
    let list = PriceList::embedded();
    let p = list
        .quote(&manual_order(), Some("DE"))
        .expect("valid order");
    assert_eq!(p.net, dec!(7150));
    assert_eq!(p.vat_percent, Some(dec!(19)));
    assert_eq!(p.vat, dec!(1358.50));
    assert_eq!(p.gross, dec!(8508.50));
    assert_eq!(money::eur(p.net, true), "7.150,00 €");
    assert_eq!(money::eur(p.vat, true), "1.358,50 €");
    assert_eq!(money::eur(p.gross, true), "8.508,50 €");

    // The positions, in the manual's order and wording.
    let lines: Vec<String> = p
        .positions
        .iter()
        .map(|pos| {
            format!(
                "{} | {} | {} | {}",
                pos.label.text(true),
                pos.quantity,
                pos.unit_price,
                pos.amount
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "Software-Schutz: SoftDongle | 1 | 0 | 0",
            "BACnet IP: 10 BACnet-Objekte | 1 | 0 | 0",
            "Modbus: 10 Datenpunkte | 1 | 0 | 0",
            "Modbus: 10.000 Datenpunkte | 1 | 6000 | 6000",
            "MBus: 1 Device | 1 | 0 | 0",
            "SAIA PCD: 100 Datenpunkte | 1 | 0 | 0",
            "SAIA PCD: 1.000 Datenpunkte | 1 | 250 | 250",
            "SAIA PCD: 5.000 Datenpunkte | 1 | 500 | 500",
            "Beckhoff ADS: 100 Datenpunkte | 1 | 0 | 0",
            "IEC60870: 1 Datenpunkt | 1 | 0 | 0",
            "OPC DA: 10 Datenpunkte | 1 | 0 | 0",
            "MQTT: 10 Datenpunkte | 1 | 0 | 0",
            "SNMP: 1 Datenpunkt | 1 | 0 | 0",
            "ESPA: 1 Datenpunkt | 1 | 0 | 0",
            "E-Mail: 10 Datenpunkte | 1 | 0 | 0",
            "KNX: 10 Datenpunkte | 1 | 0 | 0",
            "GE (Remote): 1 gleichzeitiger Benutzer | 1 | 0 | 0",
            "pWA: 5 gleichzeitige Benutzer | 1 | 400 | 400",
        ]
    );
    assert_eq!(p.entitlements.driver(Driver::SaiaPcd), 6_100);
    assert_eq!(p.entitlements.driver(Driver::Modbus), 10_010);
    assert_eq!(p.entitlements.pwa_users, 5);
    assert_eq!(p.entitlements, p.added);
}

#[test]
fn saia_6000_cost_details_as_in_the_manual() {
    let list = PriceList::embedded();
    let p = list.quote(&manual_order(), None).expect("valid");
    let saia = p
        .drivers
        .iter()
        .find(|d| d.driver == Driver::SaiaPcd)
        .expect("saia");
    assert_eq!(
        saia.packages,
        vec![(1000, 1, dec!(250)), (5000, 1, dec!(500))]
    );
    assert_eq!(saia.free_base, 100);
    assert_eq!(saia.total_points, 6_100);
    assert_eq!(saia.price, dec!(750));
    assert_eq!(p.vat_percent, None);
    assert_eq!(p.gross, p.net);
}

#[test]
fn hard_dongle_costs_120_and_untouched_form_is_free() {
    let list = PriceList::embedded();
    let p = list
        .quote(
            &Selection::standard_default(Protection::HardDongle),
            Some("CH"),
        )
        .expect("valid");
    assert_eq!(p.net, dec!(120));
    assert_eq!(p.vat, dec!(9.72));
    assert_eq!(p.entitlements, Entitlements::standard_base());
}

#[test]
fn malm_smarthome_and_users() {
    let list = PriceList::embedded();
    let mut sel = Selection::standard_default(Protection::SoftDongle);
    sel.malm = MalmModule::ALL.into_iter().collect();
    sel.mystrom = true;
    sel.philips_hue = true;
    sel.ge_users = 6;
    let p = list.quote(&sel, Some("DE")).expect("valid");
    // 200 + 800 + 400 + 1200 + 200 = 2800 MALM, GE 6 users = 500.
    assert_eq!(p.net, dec!(3300));
    assert!(p
        .positions
        .iter()
        .any(|pos| pos.label == PositionLabel::MyStrom && pos.amount.is_zero()));
}

#[test]
fn engineering_is_free_with_fixed_counts() {
    let list = PriceList::embedded();
    let p = list
        .quote(&Selection::engineering(), Some("DE"))
        .expect("valid");
    assert_eq!(p.gross, dec!(0));
    assert_eq!(p.entitlements, Entitlements::engineering());
    let mut wrong = Selection::engineering();
    wrong.protection = Protection::SoftDongle;
    let errs = list
        .quote(&wrong, None)
        .expect_err("soft dongle not allowed");
    assert_eq!(errs[0].field, "protection");
}

#[test]
fn field_errors_name_the_field() {
    let list = PriceList::embedded();
    let mut sel = Selection::standard_default(Protection::SoftDongle);
    sel.drivers.insert(Driver::SaiaPcd, 200_001);
    sel.pwa_users = 0;
    let errs = list.quote(&sel, Some("XX")).expect_err("invalid");
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["driver_saia_pcd", "pwa_users", "country"]);
    assert!(errs[0].message(true).contains("200.000"));
    assert!(errs[0].message(false).contains("200,000"));
    // The maximum itself is allowed.
    sel.drivers.insert(Driver::SaiaPcd, 200_000);
    sel.pwa_users = 1;
    assert!(list.quote(&sel, Some("DE")).is_ok());
}

#[test]
fn upgrade_costs_only_what_is_added() {
    let list = PriceList::embedded();
    let current = list
        .quote(&manual_order(), None)
        .expect("valid")
        .entitlements;
    // Manual chapter 8: SAIA PCD 100,100 before, 200,000 in total after (the
    // selection of an upgrade holds the new totals).
    let mut before = manual_order();
    before.drivers.insert(Driver::SaiaPcd, 100_000);
    let current_big = list.quote(&before, None).expect("valid").entitlements;
    assert_eq!(current_big.driver(Driver::SaiaPcd), 100_100);
    let mut after = Selection::upgrade_of(&current_big, Protection::SoftDongle);
    after.drivers.insert(Driver::SaiaPcd, 200_000);
    let up = list
        .quote_upgrade(&current_big, &after, Some("DE"))
        .expect("valid upgrade");
    assert_eq!(up.net, dec!(5000));
    assert_eq!(up.entitlements.driver(Driver::SaiaPcd), 200_100);
    assert_eq!(up.added.driver(Driver::SaiaPcd), 100_000);
    assert_eq!(up.added.driver(Driver::Modbus), 0);
    assert_eq!(up.positions.len(), 1, "{:?}", up.positions);

    // What the license holds: nothing added, nothing to pay.
    let same = list
        .quote_upgrade(
            &current,
            &Selection::upgrade_of(&current, Protection::SoftDongle),
            None,
        )
        .expect("valid");
    assert_eq!(same.net, dec!(0));
    assert!(same.positions.is_empty());
    assert_eq!(same.entitlements, current);

    // A driver at its free base: the new total buys what it adds (BACnet IP 10 ->
    // 15 buys a package of 100), not the free base again.
    let mut bacnet = Selection::upgrade_of(&current, Protection::SoftDongle);
    bacnet.drivers.insert(Driver::BacnetIp, 15);
    let up = list.quote_upgrade(&current, &bacnet, None).expect("valid");
    assert_eq!(up.entitlements.driver(Driver::BacnetIp), 110);
    assert_eq!(up.added.driver(Driver::BacnetIp), 100);
    assert!(up.net > dec!(0));

    // Decreases are refused, field by field, naming what the license holds.
    let mut smaller = Selection::upgrade_of(&current, Protection::SoftDongle);
    smaller.drivers.insert(Driver::SaiaPcd, 6_000);
    smaller.pwa_users = 2;
    let errs = list
        .quote_upgrade(&current, &smaller, None)
        .expect_err("decrease");
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["driver_saia_pcd", "pwa_users"]);
    assert!(
        errs[0].message(true).contains("bisher: 6.100 Datenpunkte"),
        "{errs:?}"
    );
    // Above the maximum in total.
    let mut huge = Selection::upgrade_of(&current, Protection::SoftDongle);
    huge.drivers.insert(Driver::SaiaPcd, 200_001);
    let errs = list.quote_upgrade(&current, &huge, None).expect_err("max");
    assert!(errs[0].message(false).contains("200,000"), "{errs:?}");

    // Adding a MALM module and two pWA users.
    let mut more = Selection::upgrade_of(&current, Protection::SoftDongle);
    more.malm.insert(MalmModule::SmsPager);
    more.pwa_users = 7;
    let up = list.quote_upgrade(&current, &more, None).expect("valid");
    assert_eq!(up.net, dec!(1000));
    assert_eq!(up.added.pwa_users, 2);
    assert!(up.entitlements.covers(&current));
}

#[test]
fn position_labels_group_thousands_in_the_pages_language() {
    let label = PositionLabel::DriverPoints {
        driver: Driver::Modbus,
        points: 10_000,
    };
    assert_eq!(label.text(true), "Modbus: 10.000 Datenpunkte");
    assert_eq!(label.text(false), "Modbus: 10,000 data points");
    let mbus = PositionLabel::DriverPoints {
        driver: Driver::Mbus,
        points: 151,
    };
    assert_eq!(mbus.text(true), "MBus: 151 Devices");
    assert_eq!(mbus.text(false), "MBus: 151 devices");
}

#[test]
fn the_embedded_list_loads_and_marks_placeholders() {
    let list = PriceList::embedded();
    assert!(list.has_placeholders());
    assert!(!list.driver(Driver::SaiaPcd).placeholder);
    assert_eq!(list.vat_percent("de"), Some(dec!(19)));
}

#[test]
fn a_broken_price_list_says_what_is_wrong() {
    let text = pricing::list::EMBEDDED.replace("[drivers.knx]", "[drivers.knx_typo]");
    let err = PriceList::from_toml(&text).expect_err("unknown driver");
    assert!(err.to_string().contains("knx_typo"), "{err}");
    let text = pricing::list::EMBEDDED.replace("soft_dongle = \"0\"", "soft_dongle = \"-5\"");
    assert!(PriceList::from_toml(&text).is_err());
    assert!(PriceList::from_toml("currency = 1").is_err());
}

fn brute_force(packages: &[Package], amount: u64) -> i64 {
    fn go(packages: &[Package], amount: u64) -> i64 {
        let Some((first, rest)) = packages.split_first() else {
            return if amount == 0 { 0 } else { i64::MAX };
        };
        let size = u64::from(first.size);
        let max_n = amount.div_ceil(size);
        (0..=max_n)
            .map(|n| {
                let left = amount.saturating_sub(n * size);
                let r = go(rest, left);
                if r == i64::MAX {
                    i64::MAX
                } else {
                    r + n as i64 * first.cents
                }
            })
            .min()
            .unwrap_or(i64::MAX)
    }
    go(packages, amount)
}

proptest! {
    #[test]
    fn package_choice_is_never_beaten_by_brute_force(
        sizes in proptest::collection::vec((1u32..40, 1i64..500), 1..4),
        amount in 0u64..120,
    ) {
        let packages: Vec<Package> = sizes.iter().map(|&(size, cents)| Package { size, cents }).collect();
        let best = cover::cheapest(&packages, amount).expect("cover");
        prop_assert!(best.covered >= amount);
        let sum: i64 = best.counts.iter().map(|&(i, n)| packages[i].cents * i64::from(n)).sum();
        prop_assert_eq!(sum, best.cents);
        let covered: u64 = best.counts.iter().map(|&(i, n)| u64::from(packages[i].size) * u64::from(n)).sum();
        prop_assert_eq!(covered, best.covered);
        prop_assert_eq!(best.cents, brute_force(&packages, amount));
    }
}
