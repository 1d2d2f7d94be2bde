//! `pls demo`: the server on its defaults plus demo data, so a working system is
//! one command away (`scripts/demo` also starts a daemon next to it).
//!
//! On first start it creates, through the same store calls the portal uses:
//! - a vendor admin and a customer with known passwords (printed; demo only);
//! - for the customer, an activated SoftDongle license with the manual's worked
//!   order (Modbus 10,000, SAIA PCD 6,000, pWA 5 users), and an activated
//!   HardDongle license whose (simulated) dongle serial is `DEMO-DONGLE-1`;
//! - `demo-daemon.env` in the data directory: the `PROMOS_LICD_*` settings a
//!   daemon needs to activate the soft-dongle license against this server.
//!
//! Later starts find the data and only print it again.

use crate::domain::{Account, Actor, Licensee, MutationKind, NewAccount, NewLicense};
use crate::store::{NewMutation, Store};
use keys::{Driver, Entitlements, LicenseData, LicenseType, Protection, SigningKeyPair, UnixTime};
use std::fmt::Write as _;
use std::path::Path;

pub const ADMIN_EMAIL: &str = "admin@demo.promos";
pub const ADMIN_PASSWORD: &str = "demo-admin-pw";
pub const CUSTOMER_EMAIL: &str = "kunde@demo.promos";
pub const CUSTOMER_PASSWORD: &str = "demo-kunde-pw";
pub const DONGLE_SERIAL: &str = "DEMO-DONGLE-1";

/// What the demo set up, for printing and for the daemon's environment.
#[derive(Debug, Clone)]
pub struct Demo {
    pub soft_number: String,
    pub soft_token: String,
    pub hard_number: String,
}

fn account(
    store: &Store,
    email: &str,
    password: &str,
    first: &str,
    now: UnixTime,
) -> anyhow::Result<Account> {
    if let Some(a) = store.account_by_email(email)? {
        return Ok(a);
    }
    let a = store.create_account(
        NewAccount {
            email: email.into(),
            password_hash: Some(crate::web::password::hash(password)),
            company: "Demo GmbH".into(),
            first_name: first.into(),
            last_name: "Demo".into(),
        },
        &Actor::System,
        now,
    )?;
    Ok(
        store.update_account(a.id, &Actor::System, now, "account.verified", |a| {
            a.email_verified = true
        })?,
    )
}

/// Creates the demo data if it is not there yet.
pub fn seed(store: &Store, key: &SigningKeyPair, now: UnixTime) -> anyhow::Result<Demo> {
    let admin = account(store, ADMIN_EMAIL, ADMIN_PASSWORD, "Admin", now)?;
    if !admin.admin {
        store.set_admin(admin.id, true, &Actor::System, now)?;
    }
    let customer = account(store, CUSTOMER_EMAIL, CUSTOMER_PASSWORD, "Kunde", now)?;
    let mine = store.licenses_of_account(customer.id)?;
    let find = |p: Protection| mine.iter().find(|l| l.protection == p).cloned();
    let actor = Actor::Admin("demo".into());
    let make = |protection: Protection, adds: Entitlements| -> anyhow::Result<_> {
        let l = store.create_license(
            NewLicense {
                account: Some(customer.id),
                license_type: LicenseType::Standard,
                protection,
                licensee: Licensee {
                    company: "Demo GmbH".into(),
                    first_name: "Kunde".into(),
                    last_name: "Demo".into(),
                    street: "Josef-Bautz-Str. 1".into(),
                    postcode: "63457".into(),
                    city: "Hanau".into(),
                    state: "Hessen".into(),
                    country: "DE".into(),
                    email: CUSTOMER_EMAIL.into(),
                    phone: "+49 000 000".into(),
                },
                license_data: LicenseData {
                    name: format!("Demo {protection:?}"),
                    postcode: "63457".into(),
                    city: "Hanau".into(),
                },
            },
            &actor,
            now,
        )?;
        let m = store.add_mutation(
            &l.number,
            NewMutation {
                kind: MutationKind::New,
                adds,
                price_net: None,
                remarks: "demo".into(),
                priced: None,
            },
            true,
            key,
            &actor,
            now,
        )?;
        store.activate_mutation(&l.number, m.number, key, &actor, now)?;
        store
            .license(&l.number)?
            .ok_or_else(|| anyhow::anyhow!("demo license vanished"))
    };
    let mut worked = Entitlements::standard_base();
    worked.drivers.insert(Driver::Modbus, 10_010);
    worked.drivers.insert(Driver::SaiaPcd, 6_100);
    worked.pwa_users = 5;
    let soft = match find(Protection::SoftDongle) {
        Some(l) => l,
        None => make(Protection::SoftDongle, worked.clone())?,
    };
    let hard = match find(Protection::HardDongle) {
        Some(l) => l,
        None => {
            let l = make(Protection::HardDongle, worked)?;
            store.set_dongle_serial(&l.number, DONGLE_SERIAL.parse()?, key, &actor, now)?
        }
    };
    Ok(Demo {
        soft_number: soft.number.to_string(),
        soft_token: soft.token.expose().to_owned(),
        hard_number: hard.number.to_string(),
    })
}

/// The daemon's environment for the soft-dongle license (`demo-daemon.env`).
pub fn daemon_env(
    demo: &Demo,
    quic: std::net::SocketAddr,
    cert: &Path,
    public_key: &str,
) -> String {
    let mut s = String::from("# promos-licd settings for the pls demo (written by `pls demo`).\n");
    let _ = writeln!(s, "PROMOS_LICD_SERVER={quic}");
    let _ = writeln!(s, "PROMOS_LICD_SERVER_NAME=localhost");
    let _ = writeln!(s, "PROMOS_LICD_SERVER_CERT_DER={}", cert.display());
    let _ = writeln!(s, "PROMOS_LICD_TRUSTED_KEYS={public_key}");
    let _ = writeln!(s, "PROMOS_LICD_LICENSE_NUMBER={}", demo.soft_number);
    let _ = writeln!(s, "PROMOS_LICD_TOKEN={}", demo.soft_token);
    s
}

/// What `pls demo` prints.
pub fn banner(demo: &Demo, http: std::net::SocketAddr) -> String {
    format!(
        "\nProMoS license server demo\n\
         \n  Portal:   http://{http}/\
         \n  Admin:    {ADMIN_EMAIL} / {ADMIN_PASSWORD}\
         \n  Customer: {CUSTOMER_EMAIL} / {CUSTOMER_PASSWORD}\
         \n  SoftDongle license {} (worked order of the manual)\
         \n  HardDongle license {} (simulated dongle serial {DONGLE_SERIAL})\n\
         \nDemo passwords are printed here; do not use `pls demo` for real data.\n",
        demo.soft_number, demo.hard_number
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_twice_gives_the_same_demo() {
        let store = Store::temporary().expect("store");
        let key = SigningKeyPair::from_seed(&[3; 32]);
        let a = seed(&store, &key, UnixTime(1_800_000_000)).expect("seed");
        let b = seed(&store, &key, UnixTime(1_800_000_100)).expect("seed again");
        assert_eq!(
            (a.soft_number.clone(), a.soft_token.clone()),
            (b.soft_number, b.soft_token)
        );
        assert_eq!(store.license_count().expect("count"), 2);
        let soft = store
            .license(&a.soft_number.parse().expect("number"))
            .expect("store")
            .expect("license");
        assert_eq!(soft.entitlements.driver(Driver::SaiaPcd), 6_100);
        let hard = store
            .license(&a.hard_number.parse().expect("number"))
            .expect("store")
            .expect("license");
        assert!(
            hard.current_grant.is_some(),
            "the dongle license file exists"
        );
        let admin = store
            .account_by_email(ADMIN_EMAIL)
            .expect("s")
            .expect("admin");
        assert!(admin.admin && admin.email_verified);
        let env = daemon_env(
            &a,
            "127.0.0.1:4433".parse().expect("addr"),
            Path::new("/d/c.der"),
            "pk",
        );
        assert!(env.contains(&format!("PROMOS_LICD_TOKEN={}", a.soft_token)));
    }
}
