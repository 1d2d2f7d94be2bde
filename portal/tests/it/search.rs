//! The license search index (schema 2): over random licenses, accounts and
//! changes, the index search answers exactly what a look at every license
//! answers, and what the schema-1 search (text pre-filter over the stored
//! records) answered for every query that has no character JSON escapes.

use keys::{
    Entitlements, HardwareId, LicenseData, LicenseType, Protection, SigningKeyPair, UnixTime,
};
use portal::domain::{AccountId, Actor, License, Licensee, MutationKind, NewAccount, NewLicense};
use portal::store::{HostActivation, NewMutation, Store};
use proptest::prelude::*;
use std::collections::HashMap;

/// The schema-1 admin search, as `web::admin::licenses` did it: the text
/// pre-filter, the licenses of customers whose email matches, then the field check.
pub fn schema1_search(store: &Store, q: &str) -> Vec<String> {
    let q = portal::search::normalize(q);
    let emails: HashMap<AccountId, String> = store
        .accounts()
        .expect("accounts")
        .into_iter()
        .map(|a| (a.id, a.email))
        .collect();
    let email_of = |l: &License| {
        l.account
            .and_then(|a| emails.get(&a).cloned())
            .unwrap_or_default()
    };
    let mut found = store.licenses_containing(&q).expect("scan");
    for (id, email) in &emails {
        if email.to_lowercase().contains(&q) {
            found.extend(store.licenses_of_account(*id).expect("of account"));
        }
    }
    found.sort_by(|a, b| a.number.as_str().cmp(b.number.as_str()));
    found.dedup_by(|a, b| a.number == b.number);
    found.retain(|l| portal::search::matches(l, &email_of(l), &q));
    numbers(found)
}

pub fn numbers(ls: Vec<License>) -> Vec<String> {
    ls.into_iter().map(|l| l.number.to_string()).collect()
}

/// Index search and full scan agree on `q`, and (for queries without `"` or `\`)
/// the schema-1 search agrees too. Returns how many licenses matched.
pub fn assert_search_agrees(store: &Store, q: &str) -> usize {
    let indexed = numbers(store.search_licenses(q).expect("index search"));
    let scanned = numbers(store.search_licenses_by_scan(q).expect("scan search"));
    assert_eq!(indexed, scanned, "query {q:?}: index and scan differ");
    if !q.contains(['"', '\\']) {
        assert_eq!(
            indexed,
            schema1_search(store, q),
            "query {q:?}: index and the schema-1 search differ"
        );
    }
    indexed.len()
}

/// Text from a small alphabet with case, umlauts, JSON-escaped characters and
/// spaces, so random queries often hit.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('A'),
            Just('ä'),
            Just('Ä'),
            Just('ß'),
            Just('1'),
            Just(' '),
            Just('"'),
            Just('\\'),
            Just('-'),
        ],
        0..max,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

#[derive(Clone, Debug)]
struct Lic {
    account: Option<usize>,
    hard: bool,
    paid: bool,
    company: String,
    last_name: String,
    data_name: String,
    /// Soft dongle: bind to host 0..3; hard dongle: the serial.
    bind: Option<u8>,
    reset: bool,
    new_data_name: Option<String>,
}

fn lic() -> impl Strategy<Value = Lic> {
    (
        proptest::option::of(0usize..3),
        any::<bool>(),
        any::<bool>(),
        text(8),
        text(6),
        text(8),
        proptest::option::of(0u8..3),
        any::<bool>(),
        proptest::option::of(text(8)),
    )
        .prop_map(
            |(account, hard, paid, company, last_name, data_name, bind, reset, new_data_name)| {
                Lic {
                    account,
                    hard,
                    paid,
                    company,
                    last_name,
                    data_name,
                    bind,
                    reset,
                    new_data_name,
                }
            },
        )
}

fn nonempty(s: &str) -> String {
    if s.trim().is_empty() {
        "x".into()
    } else {
        s.to_owned()
    }
}

fn build(store: &Store, emails: &[String], lics: &[Lic]) {
    let key = SigningKeyPair::from_seed(&[4; 32]);
    let t = UnixTime(1_800_000_000);
    let mut accounts = vec![];
    for (i, e) in emails.iter().enumerate() {
        let a = store
            .create_account(
                NewAccount {
                    email: format!("{e}{i}@k{i}.example"),
                    password_hash: None,
                    company: "c".into(),
                    first_name: "f".into(),
                    last_name: "l".into(),
                },
                &Actor::System,
                t,
            )
            .expect("account");
        accounts.push(a.id);
    }
    for l in lics {
        let lic = store
            .create_license(
                NewLicense {
                    account: l.account.and_then(|i| accounts.get(i).copied()),
                    license_type: LicenseType::Standard,
                    protection: if l.hard {
                        Protection::HardDongle
                    } else {
                        Protection::SoftDongle
                    },
                    licensee: Licensee {
                        company: l.company.clone(),
                        last_name: l.last_name.clone(),
                        ..Licensee::default()
                    },
                    license_data: LicenseData {
                        name: nonempty(&l.data_name),
                        postcode: "1234".into(),
                        city: "Ab".into(),
                    },
                },
                &Actor::System,
                t,
            )
            .expect("license");
        if l.paid {
            let m = store
                .add_mutation(
                    &lic.number,
                    NewMutation {
                        kind: MutationKind::New,
                        adds: Entitlements::standard_base(),
                        price_net: None,
                        remarks: String::new(),
                        priced: None,
                    },
                    true,
                    &key,
                    &Actor::System,
                    t,
                )
                .expect("order");
            store
                .activate_mutation(&lic.number, m.number, &key, &Actor::System, t)
                .expect("paid");
        }
        match (l.bind, l.hard) {
            (Some(h), true) => {
                let serial = format!("AB-{h}-a1").parse().expect("serial");
                store
                    .set_dongle_serial(&lic.number, serial, &key, &Actor::System, t)
                    .expect("dongle");
            }
            (Some(h), false) if l.paid => {
                let host = HardwareId::from_bytes([0xa0 + h; 16]);
                let _ = store
                    .activate_host(
                        &HostActivation {
                            license: &lic.number,
                            token: lic.token.expose(),
                            hardware_id: &host,
                            daemon_version: "t",
                            from: "t".into(),
                        },
                        &key,
                        t,
                    )
                    .expect("store");
                if l.reset {
                    let _ = store.reset_binding(&lic.number, &Actor::System, t);
                }
            }
            _ => {}
        }
        if let Some(name) = &l.new_data_name {
            store
                .update_license_data(
                    &lic.number,
                    LicenseData {
                        name: nonempty(name),
                        postcode: "9876".into(),
                        city: "Ba".into(),
                    },
                    &key,
                    &Actor::System,
                    t,
                )
                .expect("edit");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn index_search_is_the_scan(
        emails in proptest::collection::vec(text(4).prop_map(|s| s.replace([' ', '"', '\\'], "")), 0..3),
        lics in proptest::collection::vec(lic(), 1..10),
        queries in proptest::collection::vec(text(6), 1..12),
        picks in proptest::collection::vec((any::<usize>(), 0usize..11, any::<usize>(), 1usize..8), 1..12),
    ) {
        index_agrees_with_scan(Store::temporary().expect("store"), &emails, &lics, &queries, picks)?;
    }
}

// The same on PostgreSQL's trigram index (pg_trgm).
proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn postgres_index_search_is_the_scan(
        emails in proptest::collection::vec(text(4).prop_map(|s| s.replace([' ', '"', '\\'], "")), 0..3),
        lics in proptest::collection::vec(lic(), 1..10),
        queries in proptest::collection::vec(text(6), 1..12),
        picks in proptest::collection::vec((any::<usize>(), 0usize..11, any::<usize>(), 1usize..8), 1..12),
    ) {
        index_agrees_with_scan(Store::temporary_postgres().expect("store"), &emails, &lics, &queries, picks)?;
    }
}

fn index_agrees_with_scan(
    store: Store,
    emails: &[String],
    lics: &[Lic],
    queries: &[String],
    picks: Vec<(usize, usize, usize, usize)>,
) -> Result<(), TestCaseError> {
    store.set_flush_each_write(false);
    build(&store, emails, lics);
    prop_assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    for q in queries {
        assert_search_agrees(&store, q);
    }
    // Pieces of what is stored, so most of these queries hit.
    let all = store.licenses().expect("licenses");
    let emails: HashMap<AccountId, String> = store
        .accounts()
        .expect("accounts")
        .into_iter()
        .map(|a| (a.id, a.email))
        .collect();
    for (li, fi, start, len) in picks {
        let l = &all[li % all.len()];
        let email = l
            .account
            .and_then(|a| emails.get(&a))
            .cloned()
            .unwrap_or_default();
        let field: Vec<char> = portal::search::fields(l, &email)[fi].chars().collect();
        if field.is_empty() {
            continue;
        }
        let s = start % field.len();
        let q: String = field[s..(s + len).min(field.len())].iter().collect();
        let hits = assert_search_agrees(&store, &q);
        if !q.trim().is_empty() {
            prop_assert!(hits >= 1, "{q:?} is part of license {}", l.number);
        }
    }
    Ok(())
}

/// The schema-1 search missed text that JSON escapes; the index finds it.
#[test]
fn a_quote_in_a_company_is_found() {
    let store = Store::temporary().expect("store");
    let l = store
        .create_license(
            NewLicense {
                account: None,
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                licensee: Licensee {
                    company: "Müller & Söhne \"Beta\" AG".into(),
                    ..Licensee::default()
                },
                license_data: LicenseData {
                    name: "n".into(),
                    postcode: "1".into(),
                    city: "c".into(),
                },
            },
            &Actor::System,
            UnixTime(1),
        )
        .expect("license");
    let q = "söhne \"beta\"";
    assert_eq!(
        numbers(store.search_licenses(q).expect("search")),
        vec![l.number.to_string()]
    );
    assert_eq!(assert_search_agrees(&store, q), 1);
    assert!(schema1_search(&store, q).is_empty(), "schema 1 missed it");
    // Short queries (no trigram) go through the scan.
    assert_eq!(assert_search_agrees(&store, "Ü"), 1);
    assert_eq!(assert_search_agrees(&store, "zz"), 0);
    assert_eq!(assert_search_agrees(&store, "   "), 1, "empty matches all");
}

/// The admin list's page: the number-ordered slice, with the total and the
/// page clamped to the last one, on both engines.
#[test]
fn the_admin_list_page_is_the_number_order_slice_on_both_engines() {
    for store in [
        Store::temporary().expect("store"),
        Store::temporary_postgres().expect("store"),
    ] {
        let empty = store.license_list_page(3, 2).expect("empty page");
        assert_eq!((empty.total, empty.page, empty.rows.len()), (0, 1, 0));
        let emails = vec!["kunde".to_owned()];
        let lics: Vec<Lic> = (0..5)
            .map(|i| Lic {
                company: format!("Firma {i}"),
                last_name: "L".into(),
                data_name: "Anlage".into(),
                account: (i % 2 == 0).then_some(0),
                hard: false,
                paid: false,
                bind: None,
                reset: false,
                new_data_name: None,
            })
            .collect();
        build(&store, &emails, &lics);
        let all: Vec<String> = store
            .licenses_page(0, 100)
            .expect("all")
            .iter()
            .map(|l| l.number.to_string())
            .collect();
        for (asked, shown, want) in [
            (1, 1, 0..2),
            (2, 2, 2..4),
            (3, 3, 4..5),
            (9, 3, 4..5),
            (0, 1, 0..2),
        ] {
            let p = store.license_list_page(asked, 2).expect("page");
            assert_eq!((p.total, p.page), (5, shown), "page {asked}");
            let got: Vec<String> = p.rows.iter().map(|(l, _)| l.number.to_string()).collect();
            assert_eq!(got, all[want].to_vec(), "page {asked}");
            for (l, email) in &p.rows {
                assert_eq!(email.is_empty(), l.account.is_none(), "{}", l.number);
            }
        }
    }
}
