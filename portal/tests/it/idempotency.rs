//! Creating admin commands carry an idempotency key (the CLI makes one per
//! invocation and sends it again with every retry): a retry after a lost answer
//! gets the first attempt's answer and creates nothing more. On both engines.

use keys::{
    Driver, Entitlements, LicenseData, LicenseType, Protection, SigningKeyPair, SimClock, UnixTime,
};
use portal::admin::{execute, AdminContext, AdminEnvelope, AdminRequest};
use portal::store::Store;
use std::sync::Arc;

fn context(store: Store) -> AdminContext {
    let key = Arc::new(SigningKeyPair::from_seed(&[5; 32]));
    AdminContext {
        store: Arc::new(store),
        daemon: portal::daemon_config::DaemonSettings::from_parts(
            &["pls.test".to_owned()],
            4433,
            vec![key.public()],
            "ab".repeat(32),
        ),
        key,
        clock: Arc::new(SimClock::at(UnixTime(1_800_000_000))),
        identity: String::new(),
        daemon_service: None,
    }
}

fn run(ctx: &AdminContext, key: &str, request: AdminRequest) -> serde_json::Value {
    execute(
        ctx,
        AdminEnvelope {
            idempotency_key: Some(key.to_owned()),
            operator: "retry-test".into(),
            request,
        },
    )
    .unwrap_or_else(|e| panic!("admin command with key {key}: {e}"))
    .data
}

fn create_license() -> AdminRequest {
    AdminRequest::CreateLicense {
        license_type: LicenseType::Standard,
        protection: Protection::SoftDongle,
        entitlements: Entitlements::standard_base(),
        licensee: portal::domain::Licensee {
            company: "Retry AG".into(),
            ..Default::default()
        },
        license_data: LicenseData {
            name: "Site".into(),
            postcode: "3000".into(),
            city: "Bern".into(),
        },
        account_email: None,
        paid: true,
    }
}

fn retries_create_nothing_twice(store: Store) {
    let ctx = context(store);
    // create-license: the same key twice is one license.
    let first = run(&ctx, "key-license-0000000001", create_license());
    let again = run(&ctx, "key-license-0000000001", create_license());
    assert_eq!(first["license"]["number"], again["license"]["number"]);
    assert_eq!(ctx.store.license_count().expect("count"), 1);
    // Another key is another license.
    run(&ctx, "key-license-0000000002", create_license());
    assert_eq!(ctx.store.license_count().expect("count"), 2);

    // create-account: the retry answers with the account, not "email taken".
    let account = || AdminRequest::CreateAccount {
        email: "retry@example.com".into(),
        company: "Retry AG".into(),
        first_name: "Rita".into(),
        last_name: "Retry".into(),
    };
    let a = run(&ctx, "key-account-0000000001", account());
    let b = run(&ctx, "key-account-0000000001", account());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(ctx.store.account_count().expect("count"), 1);
    let other_key = execute(
        &ctx,
        AdminEnvelope {
            idempotency_key: Some("key-account-0000000002".into()),
            operator: "retry-test".into(),
            request: account(),
        },
    );
    assert!(
        other_key.is_err(),
        "a new key for the same email is a new request: refused as taken"
    );

    // upgrade: the retry adds no second order.
    let number: keys::LicenseNumber =
        serde_json::from_value(first["license"]["number"].clone()).expect("number");
    let mut adds = Entitlements::none();
    adds.drivers.insert(Driver::Modbus, 100);
    let upgrade = || AdminRequest::Upgrade {
        number: number.clone(),
        adds: adds.clone(),
        paid: true,
    };
    run(&ctx, "key-upgrade-0000000001", upgrade());
    run(&ctx, "key-upgrade-0000000001", upgrade());
    let mutations = ctx.store.mutations(&number).expect("mutations");
    assert_eq!(mutations.len(), 2, "the first order and one upgrade");
    let license = ctx.store.license(&number).expect("read").expect("license");
    assert_eq!(
        license.entitlements.driver(Driver::Modbus),
        Entitlements::standard_base().driver(Driver::Modbus) + 100,
        "the upgrade counted once"
    );
    run(&ctx, "key-upgrade-0000000002", upgrade());
    assert_eq!(ctx.store.mutations(&number).expect("mutations").len(), 3);
    assert_eq!(ctx.store.verify().expect("verify"), Vec::<String>::new());
}

#[test]
fn a_retried_creating_command_creates_nothing_twice() {
    retries_create_nothing_twice(Store::temporary().expect("store"));
}

#[test]
fn a_retried_creating_command_creates_nothing_twice_on_postgres() {
    retries_create_nothing_twice(Store::temporary_postgres().expect("store"));
}
