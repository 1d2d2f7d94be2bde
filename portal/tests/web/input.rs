//! Security and input over real HTTP (issue 18): every redirect target through
//! one table of hostile inputs, the CSRF gate of every POST route (no token, a
//! foreign one, a stale one), the strict live price and order form (unknown
//! fields, misread numbers), overlong fields, and reset links that end when the
//! password changes.

use super::browser::{between, Browser, Reply};
use super::shop::{fingerprint, hidden_fields, location, post_owned, set, worked_order};
use super::{Portal, PW};

/// Hostile redirect targets, URL-encoded as they arrive in a query or a form.
/// Each must end on the start page, never off the site, and never as an empty
/// answer.
const HOSTILE: &[&str] = &[
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D/evil.example",
    "/%0B/evil.example",
    "/%00/evil.example",
    "/%0D%0ASet-Cookie:%20x=1",
    "//evil.example",
    "/%5Cevil.example",
    "/%5C/evil.example",
    "%5C%5Cevil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "%20/licenses",
    "/%7F/evil.example",
    "/%C2%85/evil.example",
    "evil.example",
];

/// A redirect must go exactly to `expected`; a control character must never
/// reach a header (which broke the answer into an empty 200).
fn assert_redirects(r: &Reply, expected: &str, what: &str) {
    assert_eq!(r.status, 303, "{what}: {}", r.body);
    assert_eq!(r.header("location"), Some(expected), "{what}");
}

#[tokio::test]
async fn every_redirect_target_passes_one_rule() {
    let p = Portal::start().await;
    let mut customer = p.customer("c@example.com").await;
    let mut visitor = Browser::new(p.addr);
    for raw in HOSTILE {
        // The language switch.
        let r = visitor.get(&format!("/lang/en?back={raw}")).await;
        assert_redirects(&r, "/", &format!("lang back={raw}"));
        // The login page: its form carries only a safe target.
        let page = visitor.get(&format!("/login?next={raw}")).await;
        assert_eq!(page.status, 200, "login page next={raw}");
        assert!(!page.body.contains("evil.example"), "login page next={raw}");
        // Already logged in: straight on, but only to a local page.
        let r = customer.get(&format!("/login?next={raw}")).await;
        assert_redirects(&r, "/", &format!("logged-in login next={raw}"));
    }
    // The login form itself, with each target as its `next` (decoded as the
    // browser sends it).
    for raw in HOSTILE {
        let decoded: String =
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("n={raw}"))
                .expect("decodes")
                .remove(0)
                .1;
        let mut b = Browser::new(p.addr);
        let page = b.get("/login").await;
        let r = b
            .post(
                "/login",
                &[
                    ("csrf", &page.csrf()),
                    ("email", "c@example.com"),
                    ("password", PW),
                    ("next", &decoded),
                ],
            )
            .await;
        assert_redirects(&r, "/", &format!("login post next={raw}"));
        assert!(
            r.set_cookies()
                .iter()
                .any(|c| c.starts_with("pls_session=")),
            "a login with a hostile next still logs in"
        );
    }
    // A harmless target is kept.
    let r = customer.get("/lang/de?back=/quotes%3Fshow%3Dall").await;
    assert_redirects(&r, "/quotes?show=all", "a local target");

    // The admin forms' `back`.
    let number = p.quote(&mut customer, "standard", |_| {}).await;
    assert_eq!(p.order(&mut customer, &number, 1).await.status, 303);
    let mut admin = p.admin().await;
    let page = admin.get("/admin").await;
    let r = admin
        .post(
            &format!("/admin/orders/{number}/1/paid"),
            &[("csrf", &page.csrf()), ("back", "/\t/evil.example")],
        )
        .await;
    // Marked paid: the result page, whose way back is the safe target only.
    assert_redirects(
        &r,
        &format!("/admin/orders/{number}/1/paid?done=1&back=/"),
        "mark paid back",
    );
    let result = admin.get(&location(&r)).await;
    assert_eq!(result.status, 200);
    assert!(!result.body.contains("evil.example"), "{}", result.body);
    let page = admin
        .get(
            "/admin/orders/{number}/1/paid?back=/%09/evil.example"
                .replace("{number}", number.as_str())
                .as_str(),
        )
        .await;
    assert!(
        !page.body.contains("evil.example"),
        "the confirm page's back is safe too"
    );
    let id = p
        .web
        .store
        .account_by_email("c@example.com")
        .expect("store")
        .expect("account")
        .id;
    for back in ["/\t/evil.example", "//evil.example", "/\\evil.example"] {
        let r = admin
            .post(
                &format!("/admin/customers/{}/trusted", id.0),
                &[("csrf", &page.csrf()), ("trusted", "1"), ("back", back)],
            )
            .await;
        assert_redirects(&r, "/", &format!("trusted back={back:?}"));
    }
}

#[tokio::test]
async fn every_post_route_is_refused_without_a_valid_csrf_token() {
    let p = Portal::start().await;
    let mut owner = p.customer("owner@example.com").await;
    let number = p.quote(&mut owner, "standard", |_| {}).await;
    let mut admin = p.admin().await;
    let owner_id = p
        .web
        .store
        .account_by_email("owner@example.com")
        .expect("store")
        .expect("account")
        .id;
    // Every POST route of the portal, with a target that exists.
    let routes: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/login".into(),
            vec![("email", "owner@example.com"), ("password", PW)],
        ),
        (
            "/register".into(),
            vec![
                ("email", "new@example.com"),
                ("password", PW),
                ("password2", PW),
                ("company", "X"),
                ("first_name", "X"),
                ("last_name", "X"),
            ],
        ),
        (
            "/verify/resend".into(),
            vec![("email", "owner@example.com")],
        ),
        (
            "/password/forgot".into(),
            vec![("email", "owner@example.com")],
        ),
        (
            "/password/reset".into(),
            vec![("token", "00"), ("password", PW), ("password2", PW)],
        ),
        ("/logout".into(), vec![]),
        ("/quote/standard".into(), vec![("step", "quote")]),
        (format!("/quotes/{number}/1/order"), vec![]),
        (format!("/quotes/{number}/1/delete"), vec![]),
        (
            format!("/licenses/{number}/edit"),
            vec![
                ("data_name", "X"),
                ("data_postcode", "1"),
                ("data_city", "X"),
            ],
        ),
        (format!("/licenses/{number}/reset"), vec![]),
        (
            format!("/licenses/{number}/upgrade"),
            vec![("step", "order")],
        ),
        (format!("/licenses/{number}/renew"), vec![]),
        (
            format!("/licenses/{number}/offline"),
            vec![("request", "-----BEGIN PROMOS OFFLINE REQUEST v1-----")],
        ),
        ("/admin/mail/1/retry".into(), vec![]),
        (format!("/admin/orders/{number}/1/paid"), vec![]),
        (
            format!("/admin/licenses/{number}/dongle"),
            vec![("serial", "12345678")],
        ),
        (
            format!("/admin/customers/{}/trusted", owner_id.0),
            vec![("trusted", "1")],
        ),
    ];
    // A foreign token: another visitor's valid one. A stale token: the owner's
    // own token from before the login (bound to the anonymous visit).
    let mut stranger = Browser::new(p.addr);
    let foreign = stranger.get("/login").await.csrf();
    let mut late = Browser::new(p.addr);
    let stale = late.get("/login").await.csrf();
    assert_eq!(
        p.login(&mut late, "owner@example.com", PW, false)
            .await
            .status,
        303
    );
    let before = fingerprint(&p);
    for (path, fields) in &routes {
        let browser = if path.starts_with("/admin") {
            &mut admin
        } else {
            &mut owner
        };
        for (what, token) in [("no token", None), ("foreign", Some(foreign.as_str()))] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = browser.post(path, &f).await;
            assert_eq!(r.status, 403, "{what} on {path}: {}", r.body);
            assert!(r.body.contains("Das Formular ist abgelaufen"), "{path}");
        }
        if !path.starts_with("/admin") {
            let mut f = fields.clone();
            f.push(("csrf", &stale));
            let r = late.post(path, &f).await;
            assert_eq!(r.status, 403, "stale token on {path}: {}", r.body);
        }
    }
    assert_eq!(fingerprint(&p), before, "a refused POST changed nothing");
    // The same session is still logged in (logout was refused too).
    assert_eq!(owner.get("/licenses").await.status, 200);
}

/// `GET /api/price` with `query`, as JSON.
async fn price(b: &mut Browser, query: &str) -> (u16, serde_json::Value) {
    let r = b.get(&format!("/api/price?{query}")).await;
    let v = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("json: {}", r.body));
    (r.status, v)
}

#[tokio::test]
async fn the_live_price_refuses_every_field_it_cannot_read() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    for (query, field) in [
        ("kind=standard&driver_modbus=-5", "driver_modbus"),
        ("kind=standard&driver_modbus=1e30", "driver_modbus"),
        ("kind=standard&driver_modbus=abc", "driver_modbus"),
        ("kind=standard&driver_saia_pcd=6.5", "driver_saia_pcd"),
        ("kind=standard&driver_saia_pcd=1,5", "driver_saia_pcd"),
        ("kind=standard&driver_saia_pcd=6,500", "driver_saia_pcd"),
        ("kind=standard&driver_foo=5", "driver_foo"),
        ("kind=standard&malm_foo=1", "malm_foo"),
        ("kind=standard&country=XX", "country"),
        ("kind=bogus", "kind"),
        ("", "kind"),
        (
            "kind=standard&driver_modbus=10&driver_modbus=20",
            "driver_modbus",
        ),
        ("kind=standard&driver_mbus=2001", "driver_mbus"),
    ] {
        let (status, v) = price(&mut b, query).await;
        assert_eq!(status, 422, "{query:?}: {v}");
        assert_eq!(v["ok"], false, "{query:?}");
        assert!(
            v["errors"][field].is_string(),
            "{query:?} names {field}: {v}"
        );
        for total in ["net", "net_value", "vat", "gross"] {
            assert!(v.get(total).is_none(), "{query:?} has no {total}: {v}");
        }
    }
    // Thousands separators of the page's language.
    let (status, v) = price(&mut b, "kind=standard&driver_saia_pcd=6.000").await;
    assert_eq!((status, &v["net"]), (200, &"750,00 €".into()), "{v}");
    b.accept_language = Some("en".into());
    let (status, v) = price(&mut b, "kind=standard&driver_saia_pcd=6,000").await;
    assert_eq!((status, &v["net"]), (200, &"€750.00".into()), "{v}");
    let (status, v) = price(&mut b, "kind=standard&driver_saia_pcd=6.000").await;
    assert_eq!(status, 422, "German grouping on an English page: {v}");
}

#[tokio::test]
async fn the_order_form_refuses_unknown_fields_and_misread_numbers() {
    let p = Portal::start().await;
    let mut b = p.customer("c@example.com").await;
    let form = b.get("/quote/standard").await;

    // An unknown field straight to "Get quote": refused, nothing stored or sent.
    let mut fields = worked_order(&form.csrf());
    fields.push(("driver_foo".into(), "5".into()));
    set(&mut fields, "step", "quote");
    let r = post_owned(&mut b, "/quote/standard", &fields).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("driver_foo"), "the unknown field is named");
    assert!(r.body.contains("Dieses Feld gibt es im Formular nicht."));
    assert!(p.web.store.licenses().expect("store").is_empty());
    assert!(p
        .deliver()
        .await
        .iter()
        .all(|m| !m.subject.contains("Angebot")));

    // "6.5" is no count (it was read as 65): a field error at the field.
    for bad in ["6.5", "1,5", "6,500", "6.50"] {
        let mut fields = worked_order(&form.csrf());
        set(&mut fields, "driver_saia_pcd", bad);
        let r = post_owned(&mut b, "/quote/standard", &fields).await;
        assert_eq!(r.status, 422, "{bad}");
        let row = between(&r.body, "id=\"err-driver_saia_pcd\"", "</p>").expect("field error");
        let error = row
            .split_once('>')
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default();
        assert!(error.contains("ganze Zahl"), "{bad}: {error}");
    }
    // German grouping on a German page: 6.000 is six thousand.
    let mut fields = worked_order(&form.csrf());
    set(&mut fields, "driver_saia_pcd", "6.000");
    let r = post_owned(&mut b, "/quote/standard", &fields).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("6.100 Datenpunkte"),
        "6.000 bought + 100 free"
    );
    // The summary's hidden fields come back whole: "Get quote" stores it.
    let mut hidden = hidden_fields(&r.body);
    hidden.push(("step".into(), "quote".into()));
    let done = post_owned(&mut b, "/quote/standard", &hidden).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(location(&done).contains("created="));
}

#[tokio::test]
async fn an_overlong_field_is_refused_by_name() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let page = b.get("/register").await;
    let long = "x".repeat(100 * 1024);
    let r = b
        .post(
            "/register",
            &[
                ("csrf", &page.csrf()),
                ("email", "a@example.com"),
                ("company", &long),
            ],
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("zu lang") && r.body.contains("company"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("abgelaufen"), "not called an expired form");
    // Beyond what is read at all: still "too long", without a field.
    let huge = "x".repeat(1100 * 1024);
    let r = b
        .post("/register", &[("csrf", &page.csrf()), ("company", &huge)])
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("zu lang") && !r.body.contains("abgelaufen"),
        "{}",
        r.body
    );
    // Nothing was registered.
    assert!(p.web.store.accounts().expect("store").is_empty());
}

/// Asks for a reset link for `email` and returns its token.
async fn reset_link(p: &Portal, email: &str) -> String {
    let mut b = Browser::new(p.addr);
    let page = b.get("/password/forgot").await;
    b.post(
        "/password/forgot",
        &[("csrf", &page.csrf()), ("email", email)],
    )
    .await;
    let mails = p.deliver().await;
    let mail = mails.last().expect("reset mail");
    between(&mail.text, "/password/reset?token=", "\n").expect("link")[..64].to_owned()
}

#[tokio::test]
async fn a_changed_password_ends_every_reset_link() {
    let p = Portal::start().await;
    p.customer("r@example.com").await;
    let first = reset_link(&p, "r@example.com").await;
    let second = reset_link(&p, "r@example.com").await;
    assert_ne!(first, second);
    let mut b = Browser::new(p.addr);
    let form = b.get(&format!("/password/reset?token={second}")).await;
    assert_eq!(form.status, 200);
    let new_pw = "a-new-password-7";
    let r = b
        .post(
            "/password/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &second),
                ("password", new_pw),
                ("password2", new_pw),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The link requested first no longer opens the form, nor changes anything.
    assert_eq!(
        b.get(&format!("/password/reset?token={first}"))
            .await
            .status,
        410
    );
    let form = b.get("/password/forgot").await;
    let r = b
        .post(
            "/password/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &first),
                ("password", "attacker-pass-99"),
                ("password2", "attacker-pass-99"),
            ],
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(
        p.login(&mut b, "r@example.com", new_pw, false).await.status,
        303
    );
}

#[tokio::test]
async fn unknown_fields_of_the_small_forms_are_refused() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    p.register(&mut b, "u@example.com", "Uta").await;
    p.verify_latest(&mut b).await;
    let page = b.get("/login").await;
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("email", "u@example.com"),
                ("password", PW),
                ("admin", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("admin") && r.body.contains("nichts geändert"),
        "{}",
        r.body
    );
    assert!(!r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("pls_session=")));
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("email", "u@example.com"),
                ("email", "other@example.com"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "a field sent twice: {}", r.body);
}
