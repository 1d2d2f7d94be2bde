//! Quotes, orders, licenses and the admin pages over real HTTP (issue 6): the
//! manual's worked order end to end, the live price endpoint, the rules of
//! download, reset, upgrade and renewal, expired quotes, and access control.
//!
//! Daemons are not started here: their check-ins are written through the store
//! (`activate_host`/`check_host`), the same calls the QUIC service makes.

use super::browser::{between, Browser, Reply};
use super::{Portal, PW, START};
use keys::{Binding, HardwareId, LicenseNumber, Protection, TrustedKeys, UnixTime};
use portal::domain::{Actor, MutationState, NewAccount};
use portal::store::{HostActivation, HostCheck};
use portal::web::password;
use wire::RefusalReason;

/// The manual's worked order (4.1): SoftDongle, Modbus 10,000, SAIA PCD 6,000,
/// pWA 5 users, everything else at its free base; licensee in Germany.
pub(crate) fn worked_order(csrf: &str) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = [
        ("csrf", csrf),
        ("protection", "soft_dongle"),
        ("company", "MST System Solutions GmbH"),
        ("first_name", "Christoph"),
        ("last_name", "Müller"),
        ("street", "Josef-Bautz-Str."),
        ("postcode", "63457"),
        ("city", "Hanau"),
        ("state", "Hessen"),
        ("country", "DE"),
        ("email", "mueller@mst-solutions.example"),
        ("phone", "015127551103"),
        ("data_name", "Christoph Müller"),
        ("data_postcode", "63457"),
        ("data_city", "Hanau"),
        ("driver_bacnet_ip", "10"),
        ("driver_modbus", "10000"),
        ("driver_mbus", "1"),
        ("driver_saia_pcd", "6000"),
        ("driver_beckhoff_ads", "100"),
        ("driver_iec60870", "1"),
        ("driver_opc_da", "10"),
        ("driver_mqtt", "10"),
        ("driver_snmp", "1"),
        ("driver_espa", "1"),
        ("driver_email", "10"),
        ("driver_knx", "10"),
        ("ge_users", "1"),
        ("pwa_users", "5"),
        ("remarks", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    f.push(("step".into(), "next".into()));
    f
}

pub(crate) fn set(fields: &mut [(String, String)], key: &str, value: &str) {
    for f in fields.iter_mut() {
        if f.0 == key {
            f.1 = value.to_owned();
        }
    }
}

pub(crate) async fn post_owned(b: &mut Browser, path: &str, fields: &[(String, String)]) -> Reply {
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post(path, &f).await
}

/// Every hidden field of the summary page's form, in order. The menu's logout
/// form also has a hidden `csrf` (the same token): a browser sends only the
/// submitted form's fields, so each name is taken once.
pub(crate) fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    let mut rest = page;
    while let Some(i) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[i + 27..];
        let name = rest[..rest.find('"').unwrap_or(0)].to_owned();
        let value = between(rest, "value=\"", "\"").unwrap_or_default();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, unescape(&value)));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub(crate) fn location(r: &Reply) -> String {
    r.header("location").unwrap_or_default().to_owned()
}

/// Runs `f` on a thread of its own, outside the test's async runtime: a test's
/// direct store calls block (PostgreSQL's client refuses to run on an async
/// thread), as the portal's own calls run on blocking threads.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("store call"))
}

/// What the store holds, for "nothing changed" (`input.rs`, `outage.rs`).
pub(crate) fn fingerprint(p: &Portal) -> String {
    off_runtime(|| {
        let store = &p.web.store;
        let licenses = store.licenses().expect("licenses");
        let mutations: Vec<_> = licenses
            .iter()
            .map(|l| store.mutations(&l.number).expect("mutations"))
            .collect();
        format!(
            "{:?}{:?}{:?}{}",
            store.accounts().expect("accounts"),
            licenses,
            mutations,
            p.web.mailer.queue_len()
        )
    })
}

impl Portal {
    /// A verified, logged-in customer.
    pub(crate) async fn customer(&self, email: &str) -> Browser {
        let mut b = Browser::new(self.addr);
        self.register(&mut b, email, "Christoph").await;
        self.verify_latest(&mut b).await;
        let r = self.login(&mut b, email, PW, false).await;
        assert_eq!(r.status, 303, "login of {email}");
        b
    }

    /// A logged-in admin (created directly in the store, like `pls admin create-admin`).
    pub(crate) async fn admin(&self) -> Browser {
        off_runtime(|| self.create_admin());
        let mut b = Browser::new(self.addr);
        self.login(&mut b, "vendor@mst.example", PW, false).await;
        b
    }

    fn create_admin(&self) {
        let store = &self.web.store;
        let a = store
            .create_account(
                NewAccount {
                    email: "vendor@mst.example".into(),
                    password_hash: Some(password::hash(PW)),
                    company: "MST".into(),
                    first_name: "Vera".into(),
                    last_name: "Vendor".into(),
                },
                &Actor::System,
                START,
            )
            .expect("admin");
        store
            .set_admin(a.id, true, &Actor::System, START)
            .expect("admin flag");
        store
            .update_account(a.id, &Actor::System, START, "verified", |a| {
                a.email_verified = true
            })
            .expect("verify");
    }

    /// Quotes `fields` on `/quote/<kind>`: Next, then Get quote. Returns the license
    /// number of the new quote.
    pub(crate) async fn quote(
        &self,
        b: &mut Browser,
        kind: &str,
        edit: impl FnOnce(&mut Vec<(String, String)>),
    ) -> LicenseNumber {
        let form = b.get(&format!("/quote/{kind}")).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let mut fields = worked_order(&form.csrf());
        edit(&mut fields);
        let summary = post_owned(b, &format!("/quote/{kind}"), &fields).await;
        assert_eq!(summary.status, 200, "summary: {}", summary.body);
        let mut hidden = hidden_fields(&summary.body);
        hidden.push(("step".into(), "quote".into()));
        let done = post_owned(b, &format!("/quote/{kind}"), &hidden).await;
        assert_eq!(done.status, 303, "get quote: {}", done.body);
        let loc = location(&done);
        let created = loc.split("created=").nth(1).expect("created").to_owned();
        created
            .split('/')
            .next()
            .expect("number")
            .parse()
            .expect("license number")
    }

    pub(crate) async fn order(&self, b: &mut Browser, number: &LicenseNumber, n: u32) -> Reply {
        let page = b.get(&format!("/quotes/{number}/{n}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        b.post(
            &format!("/quotes/{number}/{n}/order"),
            &[("csrf", &page.csrf())],
        )
        .await
    }

    pub(crate) async fn mark_paid(&self, admin: &mut Browser, number: &LicenseNumber, n: u32) {
        let page = admin.get("/admin").await;
        let r = admin
            .post(
                &format!("/admin/orders/{number}/{n}/paid"),
                &[("csrf", &page.csrf())],
            )
            .await;
        assert_eq!(r.status, 303, "mark paid: {}", r.body);
    }

    /// What a daemon on `host` does: activate, then report running or stopped.
    pub(crate) fn daemon_reports(
        &self,
        number: &LicenseNumber,
        host: &HardwareId,
        running: bool,
    ) -> Result<(), RefusalReason> {
        self.daemon(number, host, running, true)
    }

    /// A daemon's check without activating first (a host that held the license).
    pub(crate) fn daemon(
        &self,
        number: &LicenseNumber,
        host: &HardwareId,
        running: bool,
        activate: bool,
    ) -> Result<(), RefusalReason> {
        let store = &self.web.store;
        let license = store.license(number).expect("store").expect("license");
        let now = self.web.clock.now();
        if activate && license.binding.is_none() {
            store
                .activate_host(
                    &HostActivation {
                        license: number,
                        token: license.token.expose(),
                        hardware_id: host,
                        daemon_version: "test",
                        from: "127.0.0.1".into(),
                    },
                    &self.web.key,
                    now,
                )
                .expect("store")?;
        }
        store
            .check_host(
                &HostCheck {
                    license: number,
                    hardware_id: host,
                    held_serial: None,
                    running,
                    ge_seats: 0,
                    pwa_seats: 0,
                    daemon_version: "test",
                    from: "127.0.0.1".into(),
                },
                now,
            )
            .expect("store")
            .map(|_| ())
    }

    pub(crate) async fn mail_with_subject(&self, part: &str) -> super::browser::Mail {
        self.deliver()
            .await
            .into_iter()
            .rev()
            .find(|m| m.subject.contains(part))
            .unwrap_or_else(|| panic!("no email with subject containing {part:?}"))
    }
}

#[tokio::test]
async fn the_manuals_worked_order_from_quote_to_activation() {
    order_to_activation(Portal::start().await).await;
}

/// The same order with the portal's store on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manuals_worked_order_on_postgres() {
    order_to_activation(Portal::start_postgres().await).await;
}

async fn order_to_activation(p: Portal) {
    let mut b = p.customer("christoph@example.com").await;

    // Next: the summary with the manual's positions and totals.
    let form = b.get("/quote/standard").await;
    assert!(form.body.contains("Kostendetails"));
    assert!(form.body.contains("/static/order.js"));
    let summary = post_owned(&mut b, "/quote/standard", &worked_order(&form.csrf())).await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    for expected in [
        "Software-Schutz: SoftDongle",
        "Modbus: 10.000 Datenpunkte",
        "SAIA PCD: 100 Datenpunkte",
        "SAIA PCD: 1.000 Datenpunkte",
        "SAIA PCD: 5.000 Datenpunkte",
        "pWA: 5 gleichzeitige Benutzer",
        "6.100 Datenpunkte",
        "7.150,00 €",
        "Umsatzsteuer 19%",
        "1.358,50 €",
        "8.508,50 €",
    ] {
        assert!(
            summary.body.contains(expected),
            "summary lacks {expected:?}"
        );
    }
    // Get quote: stored as <number>#1, listed, emailed.
    let mut hidden = hidden_fields(&summary.body);
    hidden.push(("step".into(), "quote".into()));
    let done = post_owned(&mut b, "/quote/standard", &hidden).await;
    assert_eq!(done.status, 303);
    let list = b.get(&location(&done)).await;
    let number: LicenseNumber = between(&list.body, "Ihr Angebot Nr. ", "#1")
        .expect("created notice")
        .parse()
        .expect("number");
    assert!(list.body.contains(&format!("{number}#1")));
    assert!(list.body.contains("7.150,00 €"));
    assert!(list.body.contains(&portal::web::pages::date(
        START.plus_days(91),
        portal::web::i18n::Lang::De
    )));
    let quote = off_runtime(|| p.web.store.mutation(&number, 1))
        .expect("store")
        .expect("quote");
    assert_eq!(quote.state, MutationState::Quote);
    assert_eq!(quote.price_net.as_deref(), Some("7150"));

    let mail = p
        .mail_with_subject(&format!("Ihr ProMoS Angebot Nr. {number}#1"))
        .await;
    assert_eq!(mail.to, "christoph@example.com");
    for expected in [
        "Modbus: 10.000 Datenpunkte",
        "7.150,00 €",
        "1.358,50 €",
        "8.508,50 €",
        "Hanau",
    ] {
        assert!(
            mail.text.contains(expected),
            "email lacks {expected:?}:\n{}",
            mail.text
        );
    }
    let link = between(&mail.text, "bestellen: ", "\n").expect("order link");
    let path = link
        .trim()
        .trim_start_matches("http://portal.test")
        .to_owned();
    assert_eq!(path, format!("/quotes/{number}/1"));

    // The emailed link after logging out: log in, land on the quote, order it.
    let page = b.get("/licenses").await;
    b.post("/logout", &[("csrf", &page.csrf())]).await;
    let r = b.get(&path).await;
    assert_eq!(r.status, 303);
    let to_login = location(&r);
    assert!(to_login.starts_with("/login?next="), "{to_login}");
    let login_page = b.get(&to_login).await;
    let next = between(&login_page.body, "name=\"next\" value=\"", "\"").expect("next");
    assert_eq!(next, path);
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &login_page.csrf()),
                ("email", "christoph@example.com"),
                ("password", PW),
                ("next", &next),
            ],
        )
        .await;
    assert_eq!(location(&r), path);
    assert!(
        !b.get("/licenses").await.body.contains(number.as_str()),
        "a quote is not a license yet"
    );
    let ordered = p.order(&mut b, &number, 1).await;
    assert_eq!(ordered.status, 303);
    assert!(
        b.get("/licenses").await.body.contains(number.as_str()),
        "ordered: listed"
    );
    let license_page = b.get(&location(&ordered)).await;
    assert!(license_page
        .body
        .contains("Vielen Dank für Ihre Bestellung!"));
    assert!(license_page.body.contains("<td id=\"status\">stopped</td>"));
    assert!(license_page
        .body
        .contains("Diese Lizenz enthält keine aktiven Services"));
    p.mail_with_subject(&format!("Ihre ProMoS Bestellung Nr. {number}#1"))
        .await;

    // The vendor marks it paid: services and the activation email.
    let mut admin = p.admin().await;
    let dash = admin.get("/admin").await;
    assert!(
        dash.body.contains(&format!("{number}#1")),
        "order awaiting payment listed"
    );
    p.mark_paid(&mut admin, &number, 1).await;
    assert!(!admin
        .get("/admin")
        .await
        .body
        .contains(&format!("{number}#1")));
    p.mail_with_subject("ist freigeschaltet").await;
    let license_page = b.get(&format!("/licenses/{number}")).await;
    assert!(license_page.body.contains("6.100 Datenpunkte"));
    assert!(license_page.body.contains("10.010 Datenpunkte"));
    assert!(!license_page.body.contains("id=\"token\""));
    let shown = b.get(&format!("/licenses/{number}?token=show")).await;
    let token = between(
        &shown.body,
        "<code id=\"token\" class=\"token\">",
        "</code>",
    )
    .expect("token");
    let license = off_runtime(|| p.web.store.license(&number))
        .expect("store")
        .expect("license");
    assert_eq!(token, license.token.expose());
    let e = &license.entitlements;
    assert_eq!(e.driver(keys::Driver::SaiaPcd), 6_100);
    assert_eq!(e.driver(keys::Driver::Modbus), 10_010);
    assert_eq!((e.ge_users, e.pwa_users), (1, 5));
}

#[tokio::test]
async fn the_live_price_endpoint_computes_what_next_computes() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let r = b
        .get("/api/price?kind=standard&driver_saia_pcd=6000&pwa_users=1&ge_users=1")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["net"], "750,00 €");
    let saia = &v["drivers"]["saia_pcd"];
    assert_eq!(saia["price"], "750,00 €");
    assert_eq!(
        saia["composition"],
        serde_json::json!([
            ["1 x 5.000", "1 x 500,00 €"],
            ["1 x 1.000", "1 x 250,00 €"],
            ["1 x 100", "1 x 0,00 €"]
        ])
    );
    assert_eq!(saia["total"], serde_json::json!(["6.100", "750,00 €"]));

    // Above the maximum, and not a number: field errors, no total.
    b.accept_language = Some("en".into());
    let r = b
        .get("/api/price?kind=standard&driver_saia_pcd=200001&driver_knx=ten")
        .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["errors"]["driver_saia_pcd"],
        "At most 200,000 data points."
    );
    assert!(v["errors"]["driver_knx"]
        .as_str()
        .expect("knx error")
        .contains("whole number"));

    // With a country: VAT and gross.
    let r = b
        .get("/api/price?kind=standard&driver_modbus=10000&country=DE")
        .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        (v["net"].as_str(), v["vat"].as_str(), v["gross"].as_str()),
        (Some("€6,000.00"), Some("€1,140.00"), Some("€7,140.00"))
    );
}

#[tokio::test]
async fn errors_stand_next_to_their_fields_and_values_are_kept() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let form = b.get("/quote/standard").await;
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "company", "");
    set(&mut fields, "email", "not-an-address");
    set(&mut fields, "driver_mbus", "2001");
    set(&mut fields, "country", "XX");
    let r = post_owned(&mut b, "/quote/standard", &fields).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"err-company\""));
    assert!(r.body.contains("id=\"err-email\""));
    assert!(r.body.contains("id=\"err-country\""));
    assert!(r.body.contains("id=\"err-driver_mbus\""));
    assert!(r.body.contains("Höchstens 2.000 Devices."), "{}", r.body);
    assert!(
        r.body.contains("value=\"Josef-Bautz-Str.\""),
        "entered values are kept"
    );
    assert!(r.body.contains("value=\"6000\""));
    assert_eq!(
        off_runtime(|| p.web.store.license_count()).expect("count"),
        0,
        "nothing stored"
    );
}

#[tokio::test]
async fn expired_quotes_cannot_be_ordered() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    let page = b.get(&format!("/quotes/{number}/1")).await;
    assert!(page.body.contains("id=\"order\""));
    p.clock.advance_secs(92 * UnixTime::DAY);
    p.login(&mut b, "c@example.com", PW, false).await;
    let page = b.get(&format!("/quotes/{number}/1")).await;
    assert!(
        !page.body.contains("id=\"order\""),
        "no order button on an expired quote"
    );
    let r = b
        .post(
            &format!("/quotes/{number}/1/order"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("nicht mehr gültig"));
    p.web.housekeeping().expect("housekeeping");
    assert_eq!(
        off_runtime(|| p.web.store.mutation(&number, 1))
            .expect("store")
            .expect("m")
            .state,
        MutationState::Expired
    );
    let list = b.get("/quotes?show=expired").await;
    assert!(list.body.contains(&format!("{number}#1")));
    assert!(!b
        .get("/quotes?show=open")
        .await
        .body
        .contains(&format!("{number}#1")));
    // Search and delete of an open quote.
    let other = p
        .quote(&mut b, "standard", |f| set(f, "data_name", "Zweite Anlage"))
        .await;
    let found = b.get("/quotes?q=zweite").await;
    assert!(found.body.contains(&format!("{other}#1")));
    assert!(!found.body.contains(&format!("{number}#1")));
    let r = b
        .post(
            &format!("/quotes/{other}/1/delete"),
            &[("csrf", &found.csrf())],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(!b.get("/quotes").await.body.contains(&format!("{other}#1")));
}

/// Every route of a license, tried by another customer and by nobody: 404 (or the
/// login page), and nothing of the license in the answer.
#[tokio::test]
async fn another_customer_sees_and_changes_nothing() {
    another_customer(Portal::start().await).await;
}

/// The same with the portal's store on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customer_sees_and_changes_nothing_on_postgres() {
    another_customer(Portal::start_postgres().await).await;
}

async fn another_customer(p: Portal) {
    let mut owner = p.customer("owner@example.com").await;
    let number = p
        .quote(&mut owner, "standard", |f| {
            set(f, "data_name", "Geheime Anlage")
        })
        .await;
    let license = off_runtime(|| p.web.store.license(&number))
        .expect("store")
        .expect("license");
    let token = license.token.expose().to_owned();
    let mut other = p.customer("other@example.com").await;
    let csrf = other.get("/licenses").await.csrf();
    let gets = [
        format!("/licenses/{number}"),
        format!("/licenses/{number}?token=show"),
        format!("/licenses/{number}/edit"),
        format!("/licenses/{number}/download"),
        format!("/licenses/{number}/promos-licd.toml"),
        format!("/licenses/{number}/reset"),
        format!("/licenses/{number}/upgrade"),
        format!("/quotes/{number}/1"),
        format!("/api/price?license={number}&driver_saia_pcd=500"),
        "/admin".to_owned(),
        "/admin/licenses".to_owned(),
        format!("/admin/licenses/{number}"),
        "/admin/customers".to_owned(),
    ];
    for path in &gets {
        let r = other.get(path).await;
        assert_eq!(r.status, 404, "GET {path}");
        assert!(
            !r.body.contains("Geheime") && !r.body.contains(&token),
            "GET {path} leaks"
        );
    }
    let posts = [
        format!("/licenses/{number}/edit"),
        format!("/licenses/{number}/reset"),
        format!("/licenses/{number}/upgrade"),
        format!("/licenses/{number}/renew"),
        format!("/quotes/{number}/1/order"),
        format!("/quotes/{number}/1/delete"),
        format!("/admin/orders/{number}/1/paid"),
        format!("/admin/licenses/{number}/dongle"),
        "/admin/customers/1/trusted".to_owned(),
    ];
    for path in &posts {
        // Each form with the fields it has (a field it does not have is refused
        // before anything else: tests/web/input.rs).
        let fields: &[(&str, &str)] = match path.rsplit('/').next().unwrap_or("") {
            "edit" => &[
                ("data_name", "x"),
                ("data_postcode", "1"),
                ("data_city", "y"),
            ],
            "dongle" => &[("serial", "D1")],
            "trusted" => &[("trusted", "1")],
            "upgrade" => &[("step", "order")],
            _ => &[],
        };
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let r = other.post(path, &form).await;
        assert_eq!(r.status, 404, "POST {path}");
        assert!(!r.body.contains("Geheime"), "POST {path} leaks");
    }
    // Nothing changed.
    let after = off_runtime(|| p.web.store.license(&number))
        .expect("store")
        .expect("license");
    assert_eq!(after, license);
    assert_eq!(
        off_runtime(|| p.web.store.mutation(&number, 1))
            .expect("store")
            .expect("m")
            .state,
        MutationState::Quote
    );
    assert!(
        !off_runtime(|| p.web.store.account_by_email("owner@example.com"))
            .expect("store")
            .expect("a")
            .trusted
    );
    // The other customer's lists do not show it either.
    assert!(!other.get("/quotes").await.body.contains(number.as_str()));
    assert!(!other.get("/licenses").await.body.contains(number.as_str()));
    // Logged out: the login page, not the license.
    let mut nobody = Browser::new(p.addr);
    for path in &gets[..8] {
        let r = nobody.get(path).await;
        assert_eq!(r.status, 303, "GET {path} logged out");
        assert!(location(&r).starts_with("/login?next="));
    }
    // And the owner does see it.
    assert!(owner
        .get(&format!("/licenses/{number}"))
        .await
        .body
        .contains("Geheime Anlage"));
}

/// The daemon settings on the license page (German and English), the token
/// only on request, and the `promos-licd.toml` download: the same settings,
/// never the token.
#[tokio::test]
async fn the_license_page_shows_the_daemon_settings_and_offers_them_as_a_file() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &number, 1).await;
    p.mark_paid(&mut admin, &number, 1).await;
    let token = p
        .web
        .store
        .license(&number)
        .expect("store")
        .expect("license")
        .token
        .expose()
        .to_owned();
    let key = p.web.key.public().to_string();
    let pin = "ab".repeat(32);

    let page = b.get(&format!("/licenses/{number}")).await;
    assert_eq!(page.status, 200);
    for part in [
        "<h2 id=\"daemon-settings\">Daemon-Einstellungen</h2>",
        "<code id=\"daemon-server\">license.portal.test:4433</code>",
        &format!("<code>{key}</code>"),
        &format!("<code id=\"daemon-pin\">{pin}</code>"),
        &format!("<code id=\"daemon-number\">{number}</code>"),
        &format!("href=\"/licenses/{number}/promos-licd.toml\""),
        "promos-licd.toml herunterladen",
        "nur noch das Token ein",
        &format!("href=\"/licenses/{number}?token=show#daemon-settings\""),
    ] {
        assert!(page.body.contains(part), "no {part:?} on the page");
    }
    assert!(!page.body.contains(&token), "the token is hidden");
    // Shown on request, in both places the page shows it.
    let shown = b.get(&format!("/licenses/{number}?token=show")).await;
    assert!(shown.body.contains(&format!(
        "<code id=\"daemon-token\" class=\"token\">{token}</code>"
    )));
    assert!(shown.body.contains(&format!(
        "<code id=\"token\" class=\"token\">{token}</code>"
    )));

    // The download: the file the page shows, with the number, never the token.
    let file = b.get(&format!("/licenses/{number}/promos-licd.toml")).await;
    assert_eq!(file.status, 200);
    assert_eq!(
        file.header("content-disposition"),
        Some("attachment; filename=\"promos-licd.toml\"")
    );
    assert_eq!(file.header("cache-control"), Some("no-store"));
    let expected = p
        .web
        .daemon
        .as_deref()
        .expect("daemon settings")
        .render(Some(&number));
    assert_eq!(file.body, expected);
    assert!(file
        .body
        .lines()
        .any(|l| l == format!("license_number = \"{number}\"")));
    assert!(file.body.contains("server = \"license.portal.test:4433\""));
    assert!(!file.body.contains(&token), "never the token");
    // The page shows the same file.
    assert!(page
        .body
        .contains("<pre class=\"config\" id=\"daemon-file\"># promos-licd.toml"));
    // Vendor staff see it too.
    let r = admin
        .get(&format!("/licenses/{number}/promos-licd.toml"))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, expected.as_str()));

    // In English.
    b.get("/lang/en?back=/").await;
    let page = b.get(&format!("/licenses/{number}")).await;
    for part in [
        "<h2 id=\"daemon-settings\">Daemon settings</h2>",
        "Download promos-licd.toml",
        "the site enters only the token",
        "The token is not in the file",
    ] {
        assert!(page.body.contains(part), "no {part:?} on the English page");
    }
}

#[tokio::test]
async fn hard_dongle_download_needs_the_serial_and_is_never_reset() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    // A soft dongle has no license file.
    let soft = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &soft, 1).await;
    p.mark_paid(&mut admin, &soft, 1).await;
    let r = b.get(&format!("/licenses/{soft}/download")).await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("nur für HardDongle"));

    let hard = p
        .quote(&mut b, "standard", |f| set(f, "protection", "hard_dongle"))
        .await;
    p.order(&mut b, &hard, 1).await;
    p.mark_paid(&mut admin, &hard, 1).await;
    let r = b.get(&format!("/licenses/{hard}/download")).await;
    assert_eq!(r.status, 409, "no serial yet");
    assert!(r.body.contains("Dongle ausgeliefert"));
    let page = b.get(&format!("/licenses/{hard}")).await;
    assert!(page.body.contains("id=\"download-why\""));
    assert!(
        !page.body.contains("id=\"reset\""),
        "no reset for hard dongles"
    );
    let r = b.get(&format!("/licenses/{hard}/reset")).await;
    assert_eq!(r.status, 409);
    assert!(r
        .body
        .contains("HardDongle-Lizenzen werden nicht zurückgesetzt"));
    let r = b
        .post(
            &format!("/licenses/{hard}/reset"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.status, 409);

    // The vendor enters the serial (a bad one first).
    let detail = admin.get(&format!("/admin/licenses/{hard}")).await;
    let r = admin
        .post(
            &format!("/admin/licenses/{hard}/dongle"),
            &[("csrf", &detail.csrf()), ("serial", "no spaces!")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"dongle-error\""));
    let r = admin
        .post(
            &format!("/admin/licenses/{hard}/dongle"),
            &[("csrf", &detail.csrf()), ("serial", "MST-4711")],
        )
        .await;
    assert_eq!(r.status, 303);
    let file = b.get(&format!("/licenses/{hard}/download")).await;
    assert_eq!(file.status, 200);
    assert_eq!(
        file.header("content-disposition"),
        Some(format!("attachment; filename=\"{hard}.json\"").as_str())
    );
    let trusted = TrustedKeys::with([p.web.key.public()]);
    let grant = keys::file::parse(file.body.as_bytes(), &trusted).expect("a valid license file");
    assert_eq!(grant.license_number, hard);
    assert_eq!(
        grant.binding,
        Binding::DongleSerial("MST-4711".parse().expect("serial"))
    );
    assert_eq!(grant.protection, Protection::HardDongle);
    // Any edit makes it invalid.
    let edited = file.body.replacen("6100", "9100", 1);
    assert!(keys::file::parse(edited.as_bytes(), &trusted).is_err());
    let page = b.get(&format!("/licenses/{hard}")).await;
    assert!(page.body.contains("promos.json"));
    // The audit trail shows who did what.
    let audit = admin.get(&format!("/admin/licenses/{hard}")).await;
    assert!(audit.body.contains("Dongle-Nummer eingetragen"));
    assert!(audit.body.contains("Admin vendor@mst.example"));
}

#[tokio::test]
async fn upgrade_only_while_stopped_only_upwards_and_reset_moves_the_license() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &number, 1).await;
    p.mark_paid(&mut admin, &number, 1).await;
    let host_a = HardwareId::from_bytes([0xa; 16]);
    p.daemon_reports(&number, &host_a, true).expect("licensed");

    // Running: no upgrade.
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(page.body.contains("<td id=\"status\">running</td>"));
    assert!(page.body.contains(&host_a.to_string()));
    assert!(page.body.contains("id=\"upgrade-hint\""));
    assert!(!page.body.contains("id=\"upgrade\""));
    assert_eq!(
        b.get(&format!("/licenses/{number}/upgrade")).await.status,
        409
    );

    // Stopped: the upgrade form, starting from what the license has.
    p.daemon_reports(&number, &host_a, false).expect("licensed");
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(page.body.contains("id=\"upgrade\""));
    let form = b.get(&format!("/licenses/{number}/upgrade")).await;
    assert_eq!(form.status, 200);
    // The inputs are the totals the license holds (issue 18).
    assert!(form
        .body
        .contains("name=\"driver_saia_pcd\" id=\"f-driver_saia_pcd\" value=\"6100\""));
    let csrf = form.csrf();
    let mut fields = worked_order(&csrf);
    set(&mut fields, "driver_modbus", "10010");
    // A decrease is a field error.
    set(&mut fields, "driver_saia_pcd", "5000");
    let r = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &fields).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("nicht verkleinert"), "{}", r.body);
    // Nothing added: refused.
    set(&mut fields, "driver_saia_pcd", "6100");
    let r = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &fields).await;
    assert_eq!(r.status, 422);
    // SAIA PCD 6,100 -> 16,100: 10,000 more for 800 EUR; ordered directly.
    set(&mut fields, "driver_saia_pcd", "16100");
    let summary = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &fields).await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert!(
        summary
            .body
            .contains("Vorher: 6.100 Nachher: 16.100 Datenpunkte"),
        "{}",
        summary.body
    );
    assert!(summary.body.contains("SAIA PCD: 10.000 Datenpunkte"));
    assert!(summary
        .body
        .contains("<strong id=\"sum-gross\">952,00 €</strong>"));
    let mut hidden = hidden_fields(&summary.body);
    hidden.push(("step".into(), "order".into()));
    let r = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &hidden).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let m = off_runtime(|| p.web.store.mutation(&number, 2))
        .expect("store")
        .expect("upgrade");
    assert_eq!(m.state, MutationState::Ordered);
    assert_eq!(m.price_net.as_deref(), Some("800"));
    let serial_before = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l")
        .current_grant;
    p.mark_paid(&mut admin, &number, 2).await;
    let after = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l");
    assert_eq!(after.entitlements.driver(keys::Driver::SaiaPcd), 16_100);
    assert!(
        after.current_grant > serial_before,
        "a new grant for the bound host"
    );

    // Reset: confirmation, then the old host is refused and another can activate.
    let confirm = b.get(&format!("/licenses/{number}/reset")).await;
    assert!(confirm.body.contains(&format!(
        "Wollen Sie die Lizenz {number} wirklich zurücksetzen?"
    )));
    let r = b
        .post(
            &format!("/licenses/{number}/reset"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        p.daemon(&number, &host_a, false, false),
        Err(RefusalReason::LicenseWasReset)
    );
    let host_b = HardwareId::from_bytes([0xb; 16]);
    p.daemon_reports(&number, &host_b, true)
        .expect("B licensed");
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(page.body.contains(&host_b.to_string()));
    assert!(
        !page.body.contains("id=\"via\""),
        "a direct check shows no peer"
    );

    // B's next check comes through a peer (issue 8): the service records the path
    // as "<address> via relay <peer hardware ID>" and the status shows it.
    let peer = HardwareId::from_bytes([0xc; 16]);
    p.web
        .store
        .check_host(
            &HostCheck {
                license: &number,
                hardware_id: &host_b,
                held_serial: None,
                running: true,
                ge_seats: 0,
                pwa_seats: 0,
                daemon_version: "test",
                from: format!("10.0.0.1:4433 via relay {peer}"),
            },
            p.web.clock.now(),
        )
        .expect("store")
        .expect("licensed");
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(
        page.body
            .contains(&format!("<td id=\"via\">über Peer {peer}</td>")),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn engineering_is_free_active_at_once_and_renewed_with_reminders() {
    let p = Portal::start().await;
    let mut b = p.customer("eng@example.com").await;
    let form = b.get("/quote/engineering").await;
    assert!(form
        .body
        .contains("SoftDongle und HardDongle sind nicht wählbar"));
    let number = p.quote(&mut b, "engineering", |_| {}).await;
    let q = off_runtime(|| p.web.store.mutation(&number, 1))
        .expect("s")
        .expect("m");
    assert_eq!(q.price_net.as_deref(), Some("0"));
    let r = p.order(&mut b, &number, 1).await;
    assert_eq!(r.status, 303);
    let l = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l");
    assert_eq!(
        l.entitlements,
        keys::Entitlements::engineering(),
        "active without payment"
    );
    let end = l.valid_until.expect("valid until");
    assert_eq!(end, START.plus_days(3 * 365 + 1));
    p.daemon_reports(&number, &HardwareId::from_bytes([1; 16]), true)
        .expect("licensed");
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(
        !page.body.contains("id=\"renew\""),
        "no renewal years before the end"
    );
    assert!(
        !page.body.contains("id=\"upgrade\""),
        "engineering licenses are not upgraded"
    );

    // 61 days before the end: nothing; 60: the first reminder, once; 14: the second.
    let count = |mails: &[super::browser::Mail]| {
        mails
            .iter()
            .filter(|m| m.subject.contains("läuft bald ab"))
            .count()
    };
    p.clock.set(UnixTime(end.0 - 61 * UnixTime::DAY));
    p.web.housekeeping().expect("housekeeping");
    assert_eq!(count(&p.deliver().await), 0);
    p.clock.set(UnixTime(end.0 - 60 * UnixTime::DAY));
    p.web.housekeeping().expect("housekeeping");
    p.web.housekeeping().expect("housekeeping");
    let mails = p.deliver().await;
    assert_eq!(count(&mails), 1);
    assert!(mails.iter().any(|m| m.text.contains("in 60 Tagen")));
    p.clock.set(UnixTime(end.0 - 14 * UnixTime::DAY));
    p.web.housekeeping().expect("housekeeping");
    assert_eq!(count(&p.deliver().await), 2);

    // Renewal: free, at once, 3 more years from the old end, a new grant.
    let grant_before = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l")
        .current_grant;
    p.login(&mut b, "eng@example.com", PW, false).await;
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(page.body.contains("id=\"renew\""));
    let r = b
        .post(
            &format!("/licenses/{number}/renew"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let l = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l");
    assert_eq!(l.valid_until, Some(end.plus_days(3 * 365 + 1)));
    assert!(l.current_grant > grant_before);
    let grant = off_runtime(|| p.web.store.current_grant(&l))
        .expect("s")
        .expect("grant");
    let v = TrustedKeys::with([p.web.key.public()])
        .verify(&grant)
        .expect("signed");
    assert_eq!(v.valid_until, l.valid_until);
}

#[tokio::test]
async fn edit_license_data_and_the_trusted_customer() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    // The vendor marks the customer trusted: orders activate at once.
    let list = admin.get("/admin/customers?q=c%40example").await;
    assert!(list.body.contains("c@example.com"));
    let id = off_runtime(|| p.web.store.account_by_email("c@example.com"))
        .expect("s")
        .expect("a")
        .id;
    let r = admin
        .post(
            &format!("/admin/customers/{id}/trusted"),
            &[("csrf", &list.csrf()), ("trusted", "1")],
        )
        .await;
    assert_eq!(r.status, 303);
    let number = p.quote(&mut b, "standard", |_| {}).await;
    let r = p.order(&mut b, &number, 1).await;
    let page = b.get(&location(&r)).await;
    assert!(
        page.body.contains("Ihre Lizenz ist freigeschaltet"),
        "{}",
        page.body
    );

    // Edit: name, postcode, city only; empty is an error next to the field.
    let form = b.get(&format!("/licenses/{number}/edit")).await;
    let r = b
        .post(
            &format!("/licenses/{number}/edit"),
            &[
                ("csrf", &form.csrf()),
                ("data_name", ""),
                ("data_postcode", "63467"),
                ("data_city", "Hanau"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Bitte ausfüllen."));
    let r = b
        .post(
            &format!("/licenses/{number}/edit"),
            &[
                ("csrf", &form.csrf()),
                ("data_name", "ProMoS License Server"),
                ("data_postcode", "63467"),
                ("data_city", "Hanau"),
                ("company", "Changed AG"),
            ],
        )
        .await;
    // A field the edit form does not have is refused, and nothing changes.
    assert_eq!(r.status, 422);
    assert!(r.body.contains("company"), "{}", r.body);
    let l = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l");
    assert_eq!(l.licensee.company, "MST System Solutions GmbH");
    assert_ne!(l.license_data.name, "ProMoS License Server");
    let r = b
        .post(
            &format!("/licenses/{number}/edit"),
            &[
                ("csrf", &form.csrf()),
                ("data_name", "ProMoS License Server"),
                ("data_postcode", "63467"),
                ("data_city", "Hanau"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let l = off_runtime(|| p.web.store.license(&number))
        .expect("s")
        .expect("l");
    assert_eq!(l.license_data.name, "ProMoS License Server");
    assert_eq!(
        l.licensee.company, "MST System Solutions GmbH",
        "only license data changes"
    );

    // The admin license list finds it by the new name; the audit trail shows the edit.
    let found = admin.get("/admin/licenses?q=license+server").await;
    assert!(found.body.contains(number.as_str()));
    assert!(!admin
        .get("/admin/licenses?q=nothing-like-this")
        .await
        .body
        .contains(number.as_str()));
    let detail = admin.get(&format!("/admin/licenses/{number}")).await;
    assert!(detail.body.contains("Lizenzdaten bearbeitet"));
    assert!(detail.body.contains("Freigeschaltet"));
}

#[tokio::test]
async fn the_offline_check_answers_an_uploaded_request_file_for_the_owner_only() {
    use wire::offline::{read_answer, write_request, OfflineActivate, OfflineRequest};
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &number, 1).await;
    p.mark_paid(&mut admin, &number, 1).await;
    let host: HardwareId = "cccccccccccccccccccccccccccccccc".parse().expect("hwid");
    let request = write_request(&OfflineRequest::Activate(OfflineActivate {
        license_number: number.clone(),
        hardware_id: host.clone(),
        daemon_version: "promos-licd/test".into(),
        nonce: wire::Nonce([7; 16]),
    }))
    .expect("request file");

    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(page
        .body
        .contains(&format!("href=\"/licenses/{number}/offline\"")));
    let form = b.get(&format!("/licenses/{number}/offline")).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Offline-Prüfung"));
    let csrf = form.csrf();

    // A file that is no request file: the form again, saying so.
    let r = b
        .post(
            &format!("/licenses/{number}/offline"),
            &[("csrf", &csrf), ("request", "hello")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("keine gültige Anfragedatei"), "{}", r.body);

    // Another customer: the same 404 as for a number that does not exist,
    // and nothing is bound.
    let mut other = p.customer("other@example.com").await;
    let other_csrf = other.get("/licenses").await.csrf();
    let r = other
        .post(
            &format!("/licenses/{number}/offline"),
            &[("csrf", &other_csrf), ("request", &request)],
        )
        .await;
    assert_eq!(r.status, 404);
    let license = off_runtime(|| p.web.store.license(&number))
        .expect("store")
        .expect("license");
    assert_eq!(license.binding, None);

    // The owner: activated without a token; the answer offered as a file.
    let r = b
        .post(
            &format!("/licenses/{number}/offline"),
            &[("csrf", &csrf), ("request", &request)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"offline-download\""), "{}", r.body);
    assert!(r
        .body
        .contains(&format!("download=\"promos-offline-answer-{number}.txt\"")));
    // The download link's file (a `data:` URL, base64).
    let link = between(&r.body, "charset=utf-8;base64,", "\"").expect("download link");
    let link = link
        .replace("&#x2f;", "/")
        .replace("&#43;", "+")
        .replace("&#61;", "=");
    use base64::Engine as _;
    let file = base64::engine::general_purpose::STANDARD
        .decode(link.as_bytes())
        .expect("base64");
    let answer = read_answer(&String::from_utf8(file).expect("text")).expect("a valid answer file");
    assert_eq!(answer.hardware_id, host);
    match answer.response {
        wire::Response::Activated { grant, receipt } => {
            let trusted = TrustedKeys::with([p.web.key.public()]);
            let grant = trusted.verify(&grant).expect("grant");
            let receipt = trusted.verify(&receipt).expect("receipt");
            assert_eq!(grant.binding, Binding::HardwareId(host.clone()));
            assert_eq!(receipt.nonce, wire::Nonce([7; 16]));
        }
        other => panic!("not an activation: {other:?}"),
    }
    let license = off_runtime(|| p.web.store.license(&number))
        .expect("store")
        .expect("license");
    assert_eq!(license.binding, Some(Binding::HardwareId(host)));
    let audit = off_runtime(|| p.web.store.audit(Some(&number), 20)).expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "binding.activated" && e.actor.to_string().contains("by file")),
        "{audit:?}"
    );
}

/// Issue 19, hosts whose hardware changes: after the binding followed a
/// changed computer, the license page shows it (when, the ID before) and the
/// customer's "Hardware geändert" email names both IDs.
#[tokio::test]
async fn a_license_that_followed_a_changed_host_shows_it_and_emails_the_customer() {
    let p = Portal::start().await;
    let mut b = p.customer("hw@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &number, 1).await;
    p.mark_paid(&mut admin, &number, 1).await;
    let (old, new) = (
        HardwareId::from_bytes([0xa; 16]),
        HardwareId::from_bytes([0xb; 16]),
    );
    p.daemon_reports(&number, &old, true).expect("licensed");
    let facts = |mac: &str| {
        wire::HardwareFacts::from_lines([
            "machine-id=11111111111111111111111111111111".to_owned(),
            "cpu=Intel(R) Core(TM) i5".to_owned(),
            format!("mac={mac}"),
        ])
    };
    let store = &p.web.store;
    let now = p.web.clock.now();
    store
        .record_host_facts(&number, &old, &facts("00:11:22:33:44:01"), now)
        .expect("facts");
    let page = b.get(&format!("/licenses/{number}")).await;
    assert!(!page.body.contains("id=\"hardware-changed\""));
    let check = HostCheck {
        license: &number,
        hardware_id: &new,
        held_serial: None,
        running: true,
        ge_seats: 0,
        pwa_seats: 0,
        daemon_version: "test",
        from: "127.0.0.1".into(),
    };
    // The portal's own composer, as the server wires it: the email is queued
    // in the move's transaction.
    let rebound = store
        .rebind_changed_host(
            &check,
            &facts("00:11:22:33:44:99"),
            1,
            &p.web.key,
            &|r, at| portal::web::emails::hardware_changed_job(&p.web, r, at),
            now,
        )
        .expect("store")
        .expect("the binding follows one replaced card");
    assert_eq!(rebound.from, old);
    p.web.mailer.wake();

    let page = b.get(&format!("/licenses/{number}")).await;
    let shown = between(&page.body, "id=\"hardware-changed\">", "</td>").expect("shown");
    assert!(shown.contains(&old.to_string()), "{shown}");
    assert!(
        between(&page.body, "id=\"bound\">", "</td>").is_some_and(|b| b.contains(&new.to_string())),
        "{}",
        page.body
    );
    let mail = p.mail_with_subject("Hardware").await;
    assert!(mail.subject.contains(number.as_str()), "{}", mail.subject);
    for text in [&mail.text, &mail.html] {
        assert!(
            text.contains(&old.to_string()) && text.contains(&new.to_string()),
            "{text}"
        );
    }
}
