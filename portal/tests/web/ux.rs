//! What customers and the vendor stumbled over (issue 18, "Customers" and
//! "Vendor admin"), over real HTTP, in German and English: the upgrade form's
//! totals, the live total with one invalid row, ordered quotes in the list, the
//! token's hide and copy, the empty license list, numbers, units, countries and
//! addresses, a verification link clicked twice, the hard-dongle activation
//! email, the admin's landing page, "mark paid" with its confirmation and
//! result, and the audit trail's names and events. The layout at 390 px is
//! checked in Chromium by the journey (`tests/tests/journey`).

use super::browser::{between, Browser};
use super::shop::{hidden_fields, location, post_owned, set, worked_order};
use super::{Portal, PW};
use keys::LicenseNumber;
use portal::domain::MutationState;
use serde_json::Value;

/// A customer's paid (activated) license from the manual's worked order.
async fn paid_license(p: &Portal, b: &mut Browser, admin: &mut Browser) -> LicenseNumber {
    let number = p.quote(b, "standard", |_| {}).await;
    p.order(b, &number, 1).await;
    p.mark_paid(admin, &number, 1).await;
    number
}

/// The live price of an upgrade of `number`: every field at the total the worked
/// order's license holds, except `changes`.
async fn upgrade_price(b: &mut Browser, number: &LicenseNumber, changes: &[(&str, &str)]) -> Value {
    let mut fields = vec![
        ("driver_bacnet_ip", "10"),
        ("driver_modbus", "10010"),
        ("driver_mbus", "1"),
        ("driver_saia_pcd", "6100"),
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
    ];
    for (k, v) in changes {
        for f in fields.iter_mut() {
            if f.0 == *k {
                f.1 = v;
            }
        }
    }
    let query: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = b
        .get(&format!("/api/price?license={number}&{}", query.join("&")))
        .await;
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// Switches the browser's language (the footer link).
async fn english(b: &mut Browser) {
    let r = b.get("/lang/en?back=/").await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn the_upgrade_form_means_new_totals_and_prices_only_what_is_added() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = paid_license(&p, &mut b, &mut admin).await;

    let form = b.get(&format!("/licenses/{number}/upgrade")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    // One meaning for the inputs: the total, the same number as "bisher".
    for (key, total, before) in [
        ("saia_pcd", "6100", "6.100"),
        ("bacnet_ip", "10", "10"),
        ("modbus", "10010", "10.010"),
    ] {
        assert!(
            form.body
                .contains(&format!("id=\"f-driver_{key}\" value=\"{total}\"")),
            "{key} shows its total"
        );
        assert!(
            form.body.contains(&format!("bisher: {before}</span>")),
            "{key} now: {before}"
        );
    }
    // A true header: no "pre-filled data points are free", but what the fields mean.
    assert!(form.body.contains("id=\"upgrade-intro\""));
    assert!(form.body.contains("neue Gesamtzahl ein"));
    assert!(form.body.contains("<th>Neue Gesamtzahl</th>"));
    assert!(!form
        .body
        .contains("vorausgefüllten Datenpunkte sind kostenlos"));
    // The 5 pWA users are paid for: included, no price; a 6th costs one user.
    let pwa = between(&form.body, "name=\"pwa_users\"", "</select>").expect("pWA select");
    assert!(pwa.contains(">5 gleichzeitige Benutzer (Bereits enthalten)</option>"));
    assert!(pwa.contains(">6 gleichzeitige Benutzer (100,00 €)</option>"));
    assert!(
        !pwa.contains(">5 gleichzeitige Benutzer (400,00 €)"),
        "no price on what is held: {pwa}"
    );
    assert!(
        !pwa.contains(">4 gleichzeitige Benutzer"),
        "no decrease offered"
    );

    // The price is what is added: nothing for the totals as they are, the 10,000
    // package for SAIA PCD 6,100 -> 16,100, a package of 100 for BACnet 10 -> 15.
    let v = upgrade_price(&mut b, &number, &[]).await;
    assert_eq!(v["net"], "0,00 €", "{v}");
    let v = upgrade_price(&mut b, &number, &[("driver_saia_pcd", "16100")]).await;
    assert_eq!(
        (v["ok"].clone(), v["net"].clone()),
        (true.into(), "800,00 €".into()),
        "{v}"
    );
    assert_eq!(v["drivers"]["saia_pcd"]["total"][0], "16.100");
    let v = upgrade_price(&mut b, &number, &[("driver_bacnet_ip", "15")]).await;
    assert_eq!(v["drivers"]["bacnet_ip"]["total"][0], "110", "{v}");
    assert_eq!(v["ok"], true);
    // Below what the license holds: the field says what it holds.
    let v = upgrade_price(&mut b, &number, &[("driver_saia_pcd", "6000")]).await;
    assert_eq!(v["ok"], false);
    assert!(
        v["errors"]["driver_saia_pcd"]
            .as_str()
            .is_some_and(|e| e.contains("bisher: 6.100 Datenpunkte")),
        "{v}"
    );

    // "Next" with SAIA PCD 16,100: the summary's before and after.
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "driver_modbus", "10010");
    set(&mut fields, "driver_saia_pcd", "16100");
    let summary = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &fields).await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert!(summary
        .body
        .contains("Vorher: 6.100 Nachher: 16.100 Datenpunkte"));
    assert!(
        summary
            .body
            .contains("<td id=\"sum-net\" class=\"num\">800,00 €</td>")
            || summary.body.contains("id=\"sum-net\">800,00 €<")
    );

    english(&mut b).await;
    let form = b.get(&format!("/licenses/{number}/upgrade")).await;
    assert!(form.body.contains("<th>New total</th>"));
    assert!(form.body.contains("now: 6,100</span>"));
    assert!(
        form.body.contains("Enter each driver&#x27;s new total")
            || form.body.contains("Enter each driver's new total")
    );
    let pwa = between(&form.body, "name=\"pwa_users\"", "</select>").expect("pWA select");
    assert!(pwa.contains(">5 simultaneous users (included)</option>"));
    assert!(pwa.contains(">6 simultaneous users (€100.00)</option>"));
    let v = upgrade_price(&mut b, &number, &[("driver_saia_pcd", "6000")]).await;
    assert!(
        v["errors"]["driver_saia_pcd"]
            .as_str()
            .is_some_and(|e| e.contains("now: 6,100 data points")),
        "{v}"
    );
}

#[tokio::test]
async fn one_row_over_its_maximum_keeps_every_other_price_and_the_valid_total() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let query = "/api/price?kind=standard&driver_saia_pcd=6000&driver_modbus=10000&driver_mbus=2001&ge_users=1&pwa_users=5";
    let v: Value = serde_json::from_str(&b.get(query).await.body).expect("json");
    assert_eq!(v["ok"], false);
    assert!(v["net"].is_null(), "no total while a field is invalid");
    assert_eq!(v["errors"]["driver_mbus"], "Höchstens 2.000 Devices.");
    assert_eq!(v["rows"]["driver_saia_pcd"], "750,00 €");
    assert_eq!(v["rows"]["driver_modbus"], "6.000,00 €");
    assert!(v["rows"].get("driver_mbus").is_none(), "{v}");
    assert_eq!(v["drivers"]["saia_pcd"]["price"], "750,00 €");
    assert_eq!(v["drivers"]["mbus"]["price"], "–");
    // 750 + 6,000 + 400 (pWA): the manual's total without the invalid row.
    assert_eq!(v["partial_total"], "7.150,00 €");

    b.accept_language = Some("en".into());
    let v: Value = serde_json::from_str(&b.get(query).await.body).expect("json");
    assert_eq!(v["errors"]["driver_mbus"], "At most 2,000 devices.");
    assert_eq!(v["rows"]["driver_saia_pcd"], "€750.00");
    assert_eq!(v["partial_total"], "€7,150.00");

    // Without JavaScript, "Next" shows the same: the row's error, the other
    // prices, the total of the valid rows marked as such.
    let mut c = p.customer("c@example.com").await;
    let form = c.get("/quote/standard").await;
    assert!(form.body.contains("id=\"total-partial\" hidden"));
    assert!(form.body.contains("id=\"row-err-driver_mbus\" hidden"));
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "driver_mbus", "2001");
    let r = post_owned(&mut c, "/quote/standard", &fields).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"price-saia_pcd\">750,00 €</td>"));
    assert!(r.body.contains("id=\"price-mbus\">–</td>"));
    assert!(r.body.contains("<strong id=\"total\">7.150,00 €</strong>"));
    assert!(r
        .body
        .contains("id=\"total-partial\">(ohne die Zeilen mit Fehlern)"));
    assert!(r.body.contains("MBus: Höchstens 2.000 Devices."));
    assert!(!r.body.contains("id=\"row-err-driver_mbus\" hidden"));
    // A missing company is no priced row: the total is whole, no note.
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "company", "");
    let r = post_owned(&mut c, "/quote/standard", &fields).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"total-partial\" hidden"));
    english(&mut c).await;
    let form = c.get("/quote/standard").await;
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "driver_mbus", "2001");
    let r = post_owned(&mut c, "/quote/standard", &fields).await;
    assert!(r.body.contains("(without the rows with errors)"));
    assert!(r.body.contains("<strong id=\"total\">€7,150.00</strong>"));
}

#[tokio::test]
async fn an_ordered_quote_stays_in_my_quotes_marked_and_linked_to_its_license() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    let open = b.get("/quotes?show=open").await;
    assert!(open.body.contains(&format!("{number}#1")));
    p.order(&mut b, &number, 1).await;

    let all = b.get("/quotes").await;
    assert!(all.body.contains(&format!("{number}#1")), "{}", all.body);
    assert!(all.body.contains("<span class=\"badge\">Bestellt</span>"));
    assert!(all.body.contains(&format!(
        "<a href=\"/licenses/{number}\" class=\"to-license\">Zur Lizenz</a>"
    )));
    assert!(
        !all.body.contains(&format!("/quotes/{number}/1/delete")),
        "an order cannot be deleted"
    );
    assert!(b
        .get("/quotes?show=ordered")
        .await
        .body
        .contains(&format!("{number}#1")));
    assert!(!b
        .get("/quotes?show=open")
        .await
        .body
        .contains(&format!("{number}#1")));
    // Paid and activated: still there.
    p.mark_paid(&mut admin, &number, 1).await;
    assert!(b.get("/quotes").await.body.contains(&format!("{number}#1")));

    english(&mut b).await;
    let all = b.get("/quotes").await;
    assert!(all.body.contains("<span class=\"badge\">Ordered</span>"));
    assert!(all.body.contains("class=\"to-license\">Show license</a>"));
}

#[tokio::test]
async fn the_token_can_be_hidden_again_and_copied() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = paid_license(&p, &mut b, &mut admin).await;
    let token = p
        .web
        .store
        .license(&number)
        .expect("store")
        .expect("license")
        .token
        .expose()
        .to_owned();

    let hidden = b.get(&format!("/licenses/{number}")).await;
    assert!(!hidden.body.contains(&token));
    assert!(hidden.body.contains(">Token anzeigen</a>"));
    let shown = b.get(&format!("/licenses/{number}?token=show")).await;
    assert!(shown.body.contains(&format!(
        "<code id=\"token\" class=\"token\">{token}</code>"
    )));
    // "Token verbergen" (manual chapter 9) leads back to the page without it.
    assert!(shown.body.contains(&format!(
        "<a href=\"/licenses/{number}\" id=\"hide-token\">Token verbergen</a>"
    )));
    // The copy button needs the script: hidden in the HTML, shown by license.js.
    assert!(shown
        .body
        .contains("id=\"copy-token\" data-copied=\"Kopiert\" hidden>Kopieren</button>"));
    assert!(shown
        .body
        .contains("<script src=\"/static/license.js\" defer></script>"));
    let js = b.get("/static/license.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.contains("copy-token") && js.body.contains("clipboard"));

    english(&mut b).await;
    let shown = b.get(&format!("/licenses/{number}?token=show")).await;
    assert!(shown.body.contains("id=\"hide-token\">Hide token</a>"));
    assert!(shown
        .body
        .contains("data-copied=\"Copied\" hidden>Copy</button>"));
}

#[tokio::test]
async fn an_empty_license_list_and_the_menu_lead_to_ordering() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let list = b.get("/licenses").await;
    assert!(list.body.contains("Sie haben noch keine Lizenzen."));
    assert!(list.body.contains(
        "<a class=\"button primary\" href=\"/quote\" id=\"order-first\">Lizenz bestellen</a>"
    ));
    assert!(list
        .body
        .contains("<a href=\"/quote\" id=\"nav-order\">Lizenz bestellen</a>"));
    let choose = b.get("/quote").await;
    assert!(choose.body.contains("<h1>Lizenz bestellen</h1>"));

    english(&mut b).await;
    let list = b.get("/licenses").await;
    assert!(list.body.contains("id=\"order-first\">Order license</a>"));
    assert!(list.body.contains("id=\"nav-order\">Order license</a>"));
}

#[tokio::test]
async fn numbers_units_countries_and_addresses_read_as_the_language_writes_them() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;

    // German: Österreich among the O, not after Vereinigtes Königreich.
    let form = b.get("/quote/standard").await;
    let at = |name: &str| {
        form.body
            .find(&format!(">{name}</option>"))
            .unwrap_or_else(|| panic!("{name} in the list"))
    };
    assert!(at("Niederlande") < at("Österreich") && at("Österreich") < at("Polen"));
    assert!(at("Dänemark") < at("Deutschland"));

    // Positions group thousands like the rest of the page.
    let summary = post_owned(&mut b, "/quote/standard", &worked_order(&form.csrf())).await;
    assert!(summary.body.contains("Modbus: 10.000 Datenpunkte"));
    assert!(summary.body.contains("10.010 Datenpunkte"));
    assert!(
        !summary.body.contains("10000 Datenpunkte"),
        "no ungrouped count"
    );
    // The licensee's address, one line each.
    assert!(
        summary.body.contains(
            "<td class=\"address\" id=\"licensee\"><span>MST System Solutions GmbH (Christoph Müller)</span>\
             <span>Josef-Bautz-Str.</span><span>63457 Hanau</span><span>Hessen, Deutschland</span>\
             <span>Email: mueller@mst-solutions.example</span><span>Telefon: 015127551103</span></td>"
        ),
        "{}",
        summary.body
    );
    // Engineering: the fixed counts grouped too.
    let eng = b.get("/quote/engineering").await;
    assert!(eng.body.contains("10.000 BACnet-Objekte"));
    assert!(eng.body.contains("100.000 Datenpunkte"));

    english(&mut b).await;
    let form = b.get("/quote/standard").await;
    let at = |name: &str| form.body.find(&format!(">{name}</option>")).expect(name);
    assert!(at("Austria") < at("Belgium") && at("Switzerland") < at("United Kingdom"));
    let summary = post_owned(&mut b, "/quote/standard", &worked_order(&form.csrf())).await;
    assert!(summary.body.contains("Modbus: 10,000 data points"));
    assert!(summary.body.contains("MBus: 1 device"));
    assert!(
        !summary.body.contains("Devices"),
        "English units in lower case"
    );
    assert!(summary.body.contains("<span>Hessen, Germany</span>"));
    assert!(summary.body.contains("<span>Phone: 015127551103</span>"));
}

#[tokio::test]
async fn a_verification_link_clicked_again_in_english_offers_the_login() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    b.accept_language = Some("en".into());
    p.register(&mut b, "e@example.com", "Eva").await;
    let mail = p.deliver().await.pop().expect("verification email");
    let token = &between(&mail.text, "/verify?token=", "\n").expect("link")[..64];
    let first = b.get(&format!("/verify?token={token}")).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("Email address confirmed"));
    let again = b.get(&format!("/verify?token={token}")).await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains("Email address already confirmed"));
    assert!(again
        .body
        .contains("<a class=\"button\" href=\"/login\">Login</a>"));
    assert!(!again.body.contains("Link not valid"));
}

#[tokio::test]
async fn the_hard_dongle_activation_email_says_to_download_the_license_file() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let hard = p
        .quote(&mut b, "standard", |f| set(f, "protection", "hard_dongle"))
        .await;
    p.order(&mut b, &hard, 1).await;
    p.mark_paid(&mut admin, &hard, 1).await;
    let mail = p
        .mail_with_subject(&format!("Ihre ProMoS Lizenz {hard} ist freigeschaltet"))
        .await;
    let link = format!("http://portal.test/licenses/{hard}/download");
    assert!(
        mail.text.contains(&format!("Lizenz herunterladen: {link}")),
        "{}",
        mail.text
    );
    assert!(mail
        .html
        .contains(&format!("<a href=\"{link}\">Lizenz herunterladen</a>")));
    assert!(mail.text.contains("promos.json") && mail.text.contains("..\\lic"));
    // The dongle serial is not entered yet: say when the file is there.
    assert!(mail.text.contains("sobald der Dongle ausgeliefert"));
    assert!(
        !mail.text.contains("nächsten Prüfung"),
        "a hard dongle is never checked online: {}",
        mail.text
    );

    // A soft dongle's email keeps "ProMoS receives it at its next check".
    let soft = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &soft, 1).await;
    p.mark_paid(&mut admin, &soft, 1).await;
    let mail = p
        .mail_with_subject(&format!("Ihre ProMoS Lizenz {soft} ist freigeschaltet"))
        .await;
    assert!(mail
        .text
        .contains("ProMoS erhält sie bei der nächsten Prüfung"));
    assert!(!mail.text.contains("/download"));

    // In English, with the serial entered: the link, no waiting note.
    let mut e = Browser::new(p.addr);
    e.accept_language = Some("en".into());
    p.register(&mut e, "e@example.com", "Eva").await;
    p.verify_latest(&mut e).await;
    p.login(&mut e, "e@example.com", PW, false).await;
    let hard = p
        .quote(&mut e, "standard", |f| set(f, "protection", "hard_dongle"))
        .await;
    p.order(&mut e, &hard, 1).await;
    let detail = admin.get(&format!("/admin/licenses/{hard}")).await;
    let r = admin
        .post(
            &format!("/admin/licenses/{hard}/dongle"),
            &[("csrf", &detail.csrf()), ("serial", "MST-4711")],
        )
        .await;
    assert_eq!(r.status, 303);
    p.mark_paid(&mut admin, &hard, 1).await;
    let mail = p
        .mail_with_subject(&format!("Your ProMoS license {hard} is activated"))
        .await;
    assert!(mail.text.contains(&format!(
        "Download license: http://portal.test/licenses/{hard}/download"
    )));
    assert!(mail.text.contains("hardware-dongle license"));
    assert!(!mail.text.contains("once the dongle has been delivered"));
}

#[tokio::test]
async fn an_admins_login_lands_on_the_administration() {
    let p = Portal::start().await;
    let _ = p.admin().await;
    let mut a = Browser::new(p.addr);
    let r = p.login(&mut a, "vendor@mst.example", PW, false).await;
    assert_eq!(location(&r), "/admin");
    assert_eq!(location(&a.get("/").await), "/admin");
    assert_eq!(location(&a.get("/login").await), "/admin");
    // A `next` still wins.
    assert_eq!(location(&a.get("/login?next=/licenses").await), "/licenses");
    // Customers land on their licenses.
    let mut c = Browser::new(p.addr);
    p.register(&mut c, "c@example.com", "Christoph").await;
    p.verify_latest(&mut c).await;
    let r = p.login(&mut c, "c@example.com", PW, false).await;
    assert_eq!(location(&r), "/licenses");
    assert_eq!(location(&c.get("/").await), "/licenses");
}

#[tokio::test]
async fn mark_paid_asks_first_and_then_says_what_happened() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &number, 1).await;
    let state = |p: &Portal| {
        p.web
            .store
            .mutation(&number, 1)
            .expect("store")
            .expect("order")
            .state
    };

    // The list's button leads to a question, not straight to the activation.
    let list = admin.get("/admin").await;
    let path = format!("/admin/orders/{number}/1/paid");
    assert!(list.body.contains(&format!(
        "<a class=\"button primary\" href=\"{path}\">Als bezahlt markieren</a>"
    )));
    assert!(!list.body.contains(&format!("action=\"{path}\"")));
    let confirm = admin.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("<h1>Als bezahlt markieren?</h1>"));
    assert!(confirm.body.contains(&format!(
        "Die Bestellung {number}#1 wird als bezahlt markiert: die Lizenz {number} wird freigeschaltet"
    )));
    assert!(confirm.body.contains("c@example.com"));
    assert!(confirm.body.contains("7.150,00 €"));
    assert!(confirm
        .body
        .contains(&format!("<form method=\"post\" action=\"{path}\"")));
    assert!(confirm
        .body
        .contains("id=\"confirm-paid\">Ja, als bezahlt markieren</button>"));
    assert!(confirm
        .body
        .contains("<a class=\"button\" href=\"/admin\" id=\"cancel-paid\">Abbrechen</a>"));
    assert_eq!(state(&p), MutationState::Ordered, "asking changes nothing");

    // Confirmed: activated, and the page says what happened.
    let r = admin
        .post(&path, &[("csrf", &confirm.csrf()), ("back", "/admin")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(location(&r), format!("{path}?done=1&back=/admin"));
    assert_eq!(state(&p), MutationState::Activated);
    let done = admin.get(&location(&r)).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("<h1>Als bezahlt markiert</h1>"));
    assert!(done.body.contains(&format!(
        "Die Bestellung {number}#1 ist bezahlt und freigeschaltet; die Lizenz {number} enthält jetzt die bestellten Services. Die Email an c@example.com ist unterwegs."
    )));
    assert!(done.body.contains("<td id=\"paid-state\">Aktiviert</td>"));
    assert!(done
        .body
        .contains("href=\"/admin\" id=\"paid-back\">Zur Administration</a>"));
    assert!(!done.body.contains("id=\"confirm-paid\""));
    // Later, the same address says it is paid.
    let later = admin.get(&path).await;
    assert!(later
        .body
        .contains("Diese Bestellung ist bereits bezahlt und freigeschaltet."));
    // A customer gets the 404 of pages that do not exist.
    assert_eq!(b.get(&path).await.status, 404);

    // English, from the license's admin page (back there afterwards).
    let second = p.quote(&mut b, "standard", |_| {}).await;
    p.order(&mut b, &second, 1).await;
    english(&mut admin).await;
    let detail = admin.get(&format!("/admin/licenses/{second}")).await;
    let path = format!("/admin/orders/{second}/1/paid");
    let link = format!("{path}?back=/admin/licenses/{second}");
    assert!(detail
        .body
        .contains(&format!("href=\"{link}\">Mark paid</a>")));
    let confirm = admin.get(&link).await;
    assert!(confirm.body.contains("<h1>Mark as paid?</h1>"));
    assert!(confirm.body.contains("Yes, mark as paid</button>"));
    let r = admin
        .post(
            &path,
            &[
                ("csrf", &confirm.csrf()),
                ("back", &format!("/admin/licenses/{second}")),
            ],
        )
        .await;
    let done = admin.get(&location(&r)).await;
    assert!(done.body.contains("<h1>Marked as paid</h1>"));
    assert!(done
        .body
        .contains("The email to c@example.com is on its way."));
    assert!(done.body.contains(&format!(
        "href=\"/admin/licenses/{second}\" id=\"paid-back\""
    )));
}

#[tokio::test]
async fn the_audit_trail_shows_names_and_events_in_the_page_language() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = paid_license(&p, &mut b, &mut admin).await;
    let page = admin.get(&format!("/admin/licenses/{number}")).await;
    let audit = between(&page.body, "id=\"audit\"", "</table>").expect("audit table");
    for expected in [
        "Christoph Müller (c@example.com)",
        "Admin vendor@mst.example",
        "Lizenz angelegt",
        "Angebot erstellt",
        "Bestellt",
        "Freigeschaltet",
    ] {
        assert!(
            audit.contains(expected),
            "audit lacks {expected:?}: {audit}"
        );
    }
    for code in ["account:", "license.created", "mutation."] {
        assert!(!audit.contains(code), "audit shows {code:?}: {audit}");
    }
    english(&mut admin).await;
    let page = admin.get(&format!("/admin/licenses/{number}")).await;
    let audit = between(&page.body, "id=\"audit\"", "</table>").expect("audit table");
    for expected in ["License created", "Quote created", "Ordered", "Activated"] {
        assert!(
            audit.contains(expected),
            "audit lacks {expected:?}: {audit}"
        );
    }
}

/// The summary's hidden fields carry the upgrade's totals, so "Back" shows the
/// same totals again (not bought amounts).
#[tokio::test]
async fn back_from_the_upgrade_summary_keeps_the_totals() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let mut admin = p.admin().await;
    let number = paid_license(&p, &mut b, &mut admin).await;
    let form = b.get(&format!("/licenses/{number}/upgrade")).await;
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "driver_modbus", "10010");
    set(&mut fields, "driver_saia_pcd", "16100");
    let summary = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &fields).await;
    let mut hidden = hidden_fields(&summary.body);
    hidden.push(("step".into(), "back".into()));
    let back = post_owned(&mut b, &format!("/licenses/{number}/upgrade"), &hidden).await;
    assert_eq!(back.status, 200);
    assert!(back
        .body
        .contains("id=\"f-driver_saia_pcd\" value=\"16100\""));
    assert!(back.body.contains("<strong id=\"total\">800,00 €</strong>"));
}

/// "Meine Lizenzen" and "Meine Angebote" show 50 rows a page with a pager;
/// a page number or filter the list does not have, or a parameter it does not
/// know, is refused with a 400 that names it, never read as the first page.
#[tokio::test]
async fn the_customer_lists_page_and_refuse_what_they_do_not_have() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let store = &p.web.store;
    let account = store
        .account_by_email("c@example.com")
        .expect("store")
        .expect("account");
    let now = p.web.clock.now();
    let mut numbers = vec![];
    for i in 0..52 {
        let lic = store
            .create_license(
                portal::domain::NewLicense {
                    account: Some(account.id),
                    license_type: keys::LicenseType::Standard,
                    protection: keys::Protection::SoftDongle,
                    licensee: portal::domain::Licensee {
                        company: format!("Firma {i}"),
                        ..Default::default()
                    },
                    license_data: keys::LicenseData {
                        name: format!("Anlage {i}"),
                        postcode: "1234".into(),
                        city: "Ab".into(),
                    },
                },
                &portal::domain::Actor::System,
                now,
            )
            .expect("license");
        store
            .add_mutation(
                &lic.number,
                portal::store::NewMutation {
                    kind: portal::domain::MutationKind::New,
                    adds: keys::Entitlements::standard_base(),
                    price_net: None,
                    remarks: String::new(),
                    priced: None,
                },
                true,
                &p.web.key,
                &portal::domain::Actor::System,
                now,
            )
            .expect("order");
        numbers.push(lic.number.to_string());
    }
    numbers.sort();
    let rows = |body: &str| body.matches("<tr><td><a href=\"/licenses/").count();
    let first = b.get("/licenses").await;
    assert_eq!(first.status, 200);
    assert_eq!(rows(&first.body), 50);
    assert!(
        first.body.contains("Seite 1 / 2 (52 Lizenzen)"),
        "{}",
        first.body
    );
    assert!(first
        .body
        .contains("<a href=\"/licenses?page=2\" rel=\"next\">"));
    let second = b.get("/licenses?page=2").await;
    assert_eq!(rows(&second.body), 2);
    for n in &numbers[50..] {
        assert!(second.body.contains(&format!("href=\"/licenses/{n}\"")));
    }
    assert!(!second
        .body
        .contains(&format!("href=\"/licenses/{}\"", numbers[0])));
    // Past the last page: the last page.
    assert_eq!(rows(&b.get("/licenses?page=9").await.body), 2);

    let quotes = b.get("/quotes?show=ordered").await;
    assert_eq!(quotes.body.matches("<span class=\"badge\">").count(), 50);
    assert!(quotes.body.contains("Seite 1 / 2 (52 Angebote)"));
    let page2 = b.get("/quotes?q=&show=ordered&page=2").await;
    assert_eq!(page2.body.matches("<span class=\"badge\">").count(), 2);
    // The search narrows across pages: "firma 7" is in "Firma 7" only (no 70s).
    let found = b.get("/quotes?q=firma+7+(&show=ordered").await;
    assert_eq!(found.body.matches("<span class=\"badge\">").count(), 1);

    for (path, field) in [
        ("/licenses?page=0", "page"),
        ("/licenses?page=abc", "page"),
        ("/licenses?page=2.5", "page"),
        ("/licenses?page=", "page"),
        ("/licenses?sort=number", "sort"),
        ("/quotes?show=alle", "show"),
        ("/quotes?page=-1", "page"),
        ("/quotes?q=x&order=desc", "order"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.body.contains(&format!("\u{201e}{field}\u{201c}")),
            "{path}: {}",
            r.body
        );
    }
    // The admin's lists refuse the same way (for a customer they do not exist).
    assert_eq!(b.get("/admin/licenses?page=x").await.status, 404);
    let mut admin = p.admin().await;
    for path in [
        "/admin/licenses?page=x",
        "/admin/customers?page=0&q=a",
        "/admin/licenses?pg=2",
    ] {
        assert_eq!(admin.get(path).await.status, 400, "{path}");
    }
    assert_eq!(
        admin.get("/admin/licenses?q=firma&page=1").await.status,
        200
    );
    english(&mut b).await;
    let r = b.get("/licenses?page=zwei").await;
    assert_eq!(r.status, 400);
    assert!(r
        .body
        .contains("The value of \u{201c}page\u{201d} in this address is not valid"));
}
