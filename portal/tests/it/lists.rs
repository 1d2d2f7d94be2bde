//! The customer's lists as paged store reads ("Meine Lizenzen", "Meine
//! Angebote"): on both engines, every page of every filter is exactly the slice
//! of what the earlier handlers computed by loading all of the customer's
//! licenses and their mutations, and another customer's rows never appear.

use keys::{Entitlements, LicenseData, LicenseType, Protection, SigningKeyPair, UnixTime};
use portal::domain::{
    AccountId, Actor, License, Licensee, Mutation, MutationKind, MutationState, NewAccount,
    NewLicense, QUOTE_VALIDITY_DAYS,
};
use portal::store::{NewMutation, QuoteFilter, Store};

const DAY: u64 = 86_400;

fn new_mutation(kind: MutationKind) -> NewMutation {
    NewMutation {
        kind,
        adds: Entitlements::standard_base(),
        price_net: None,
        remarks: String::new(),
        priced: None,
    }
}

/// Two customers. The first has nine licenses whose mutations cover every
/// state the lists know: open and expired quotes (by time and marked), orders
/// awaiting payment, activated orders, deleted quotes, upgrades, and licenses
/// with only quotes (not yet the customer's licenses). Returns both account ids
/// and the time to list at.
fn fill(store: &Store) -> (AccountId, AccountId, UnixTime) {
    let key = SigningKeyPair::from_seed(&[7; 32]);
    let t0 = UnixTime(1_800_000_000);
    let account = |i: u32| {
        store
            .create_account(
                NewAccount {
                    email: format!("kunde{i}@lists.example"),
                    password_hash: None,
                    company: "c".into(),
                    first_name: "f".into(),
                    last_name: "l".into(),
                },
                &Actor::System,
                t0,
            )
            .expect("account")
            .id
    };
    let (first, second) = (account(0), account(1));
    for i in 0..11u64 {
        let owner = if i < 9 { first } else { second };
        let at = UnixTime(t0.0 + i * 20 * DAY);
        let lic = store
            .create_license(
                NewLicense {
                    account: Some(owner),
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Licensee {
                        company: format!("Firma {i}"),
                        ..Licensee::default()
                    },
                    license_data: LicenseData {
                        name: format!("Anlage {i}"),
                        postcode: "1234".into(),
                        city: "Ab".into(),
                    },
                },
                &Actor::System,
                at,
            )
            .expect("license");
        let ordered = i % 3 == 0;
        let m = store
            .add_mutation(
                &lic.number,
                new_mutation(MutationKind::New),
                ordered,
                &key,
                &Actor::System,
                at,
            )
            .expect("new");
        if ordered && i % 2 == 0 {
            store
                .activate_mutation(&lic.number, m.number, &key, &Actor::System, at)
                .expect("paid");
            // Upgrade quotes on an active license: one kept, one deleted.
            for (n, delete) in [(1, false), (2, true)] {
                let q = store
                    .add_mutation(
                        &lic.number,
                        new_mutation(MutationKind::Upgrade),
                        false,
                        &key,
                        &Actor::System,
                        UnixTime(at.0 + n * DAY),
                    )
                    .expect("upgrade quote");
                if delete {
                    store
                        .delete_mutation(&lic.number, q.number, &Actor::System, at)
                        .expect("delete");
                }
            }
        }
    }
    // Quotes created more than the validity before this are past it; the
    // housekeeping marks those older than `marked` as expired, the rest stay
    // quotes past their validity (both are "expired" to the lists).
    let now = UnixTime(t0.0 + (QUOTE_VALIDITY_DAYS + 70) * DAY);
    let marked = UnixTime(t0.0 + (QUOTE_VALIDITY_DAYS + 30) * DAY);
    assert!(store.expire_quotes(marked).expect("expire") > 0);
    (first, second, now)
}

/// The list as the handler computed it before it was paged: every license of
/// the customer with everything ordered, and every quote kept by the filter.
fn reference_licenses(store: &Store, id: AccountId) -> Vec<String> {
    store
        .licenses_of_account(id)
        .expect("licenses")
        .into_iter()
        .filter(|l| {
            store
                .mutations(&l.number)
                .expect("mutations")
                .iter()
                .any(|m| matches!(m.state, MutationState::Ordered | MutationState::Activated))
        })
        .map(|l| l.number.to_string())
        .collect()
}

fn reference_quotes(store: &Store, id: AccountId, filter: &str, now: UnixTime) -> Vec<String> {
    let mut rows: Vec<(UnixTime, String)> = vec![];
    for l in store.licenses_of_account(id).expect("licenses") {
        for m in store.mutations(&l.number).expect("mutations") {
            let ordered = matches!(m.state, MutationState::Ordered | MutationState::Activated);
            if m.kind == MutationKind::Renewal || m.state == MutationState::Deleted {
                continue;
            }
            let expired = m.state == MutationState::Expired
                || (m.state == MutationState::Quote && now > m.quote_valid_until);
            let upgrade = m.kind != MutationKind::New;
            let keep = match filter {
                "open" => !expired && !ordered,
                "expired" => expired,
                "ordered" => ordered,
                "new" => !upgrade,
                "upgrade" => upgrade,
                _ => true,
            };
            if keep {
                rows.push((m.created_at, m.id()));
            }
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.into_iter().map(|(_, id)| id).collect()
}

fn ids(rows: &[(License, Mutation)]) -> Vec<String> {
    rows.iter().map(|(_, m)| m.id()).collect()
}

#[test]
fn the_customer_lists_are_pages_of_what_the_full_lists_held_on_both_engines() {
    for store in [
        Store::temporary().expect("store"),
        Store::temporary_postgres().expect("store"),
    ] {
        let (first, second, now) = fill(&store);
        for id in [first, second] {
            let want = reference_licenses(&store, id);
            assert!(!want.is_empty());
            for size in [2, 3, 50] {
                let pages = want.len().div_ceil(size);
                for asked in 0..=pages + 1 {
                    let p = store.customer_license_page(id, asked, size).expect("page");
                    let shown = asked.clamp(1, pages);
                    assert_eq!((p.total, p.page), (want.len(), shown), "size {size}");
                    let got: Vec<String> =
                        p.rows.iter().map(|(l, _)| l.number.to_string()).collect();
                    let from = (shown - 1) * size;
                    assert_eq!(
                        got,
                        want[from..(from + size).min(want.len())],
                        "size {size}"
                    );
                    assert!(p
                        .rows
                        .iter()
                        .all(|(l, running)| l.account == Some(id) && !running));
                }
            }
        }
        let mut seen_expired = false;
        for (show, filter) in [
            ("", QuoteFilter::All),
            ("open", QuoteFilter::Open),
            ("expired", QuoteFilter::Expired),
            ("ordered", QuoteFilter::Ordered),
            ("new", QuoteFilter::New),
            ("upgrade", QuoteFilter::Upgrade),
        ] {
            assert_eq!(QuoteFilter::parse(show), Some(filter));
            for id in [first, second] {
                let want = reference_quotes(&store, id, show, now);
                seen_expired |= show == "expired" && !want.is_empty();
                let all = store
                    .customer_quote_page(id, filter, now, None)
                    .expect("all quotes");
                assert_eq!(ids(&all.rows), want, "filter {show:?}");
                assert!(all
                    .rows
                    .iter()
                    .all(|(l, m)| l.account == Some(id) && m.license == l.number));
                let pages = want.len().div_ceil(3).max(1);
                for asked in 1..=pages + 1 {
                    let p = store
                        .customer_quote_page(id, filter, now, Some((asked, 3)))
                        .expect("page");
                    let shown = asked.min(pages);
                    assert_eq!((p.total, p.page), (want.len(), shown), "filter {show:?}");
                    let from = ((shown - 1) * 3).min(want.len());
                    assert_eq!(ids(&p.rows), want[from..(from + 3).min(want.len())]);
                }
            }
        }
        assert!(seen_expired, "the scenario has expired quotes");
        assert_eq!(QuoteFilter::parse("alle"), None);
    }
}
