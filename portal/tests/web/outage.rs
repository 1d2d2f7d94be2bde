//! The portal while its database is away for a moment (issue 15: a restart, a
//! failover to a promoted standby): every request that cannot read or write
//! what it needs answers 503 with the page in German and English ("nothing was
//! changed, try again"), never 404 for a page that exists, never 500, never a
//! page built without what could not be read.
//!
//! The store's calls fail on purpose ([`portal::store::Store::fail_as_unavailable`]),
//! as a lost connection does: each route is requested once with the first of
//! its store calls failing, once with the second, and so on until it makes no
//! more calls than were let through.

use super::browser::{Browser, Reply};
use super::shop::{fingerprint, hidden_fields, location, off_runtime, post_owned, worked_order};
use super::Portal;
use keys::LicenseNumber;

const TITLE: &str = "Vorübergehend nicht verfügbar / Temporarily unavailable";

fn assert_try_again(r: &Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.body);
    assert!(r.body.contains(TITLE), "{what}: {}", r.body);
    assert!(
        r.body
            .contains("bitte versuchen Sie es in einer Minute noch einmal"),
        "{what}: the German text"
    );
    assert!(
        r.body.contains("please try again in a minute"),
        "{what}: the English text"
    );
}

/// `GET path` with the store's call number `skip` (from 0) failing, for every
/// `skip` until the request needs fewer calls; each answer is 503, and the last
/// (nothing failed) the one without failures.
async fn sweep_get(p: &Portal, b: &mut Browser, path: &str) -> usize {
    let normal = b.get(path).await;
    assert_ne!(normal.status, 503, "{path} without failures");
    let mut skip = 0;
    loop {
        p.web.store.fail_as_unavailable(skip, 1);
        let r = b.get(path).await;
        let failed = !p.web.store.failures_pending();
        p.web.store.fail_as_unavailable(0, 0);
        if !failed {
            assert_eq!(r.status, normal.status, "{path}: {}", r.body);
            return skip as usize;
        }
        assert_try_again(&r, &format!("GET {path} with store call {skip} failing"));
        skip += 1;
    }
}

#[tokio::test]
async fn every_page_answers_503_whichever_store_call_fails() {
    let p = Portal::start().await;
    let mut owner = p.customer("owner@example.com").await;
    let mut admin = p.admin().await;
    let number: LicenseNumber = p.quote(&mut owner, "standard", |_| {}).await;
    assert_eq!(p.order(&mut owner, &number, 1).await.status, 303);
    p.mark_paid(&mut admin, &number, 1).await;
    let owner_pages = [
        "/".to_owned(),
        "/login".into(),
        "/register".into(),
        "/password/forgot".into(),
        "/imprint".into(),
        "/privacy".into(),
        "/licenses".into(),
        "/quote".into(),
        "/quote/standard".into(),
        "/api/price?kind=standard&driver_modbus=1000&country=DE".into(),
        format!("/api/price?license={number}&driver_modbus=20000"),
        "/quotes".into(),
        format!("/quotes/{number}/1"),
        format!("/licenses/{number}"),
        format!("/licenses/{number}?ordered=1"),
        format!("/licenses/{number}/edit"),
        format!("/licenses/{number}/download"),
        format!("/licenses/{number}/promos-licd.toml"),
        format!("/licenses/{number}/offline"),
        format!("/licenses/{number}/reset"),
        format!("/licenses/{number}/upgrade"),
        "/lang/de?back=/licenses".into(),
        "/no/such/page".into(),
    ];
    let admin_pages = [
        "/admin".to_owned(),
        "/admin/licenses".into(),
        format!("/admin/licenses/{number}"),
        "/admin/customers".into(),
        format!("/admin/orders/{number}/1/paid"),
    ];
    let mut swept = 0;
    for path in &owner_pages {
        swept += sweep_get(&p, &mut owner, path).await;
    }
    for path in &admin_pages {
        swept += sweep_get(&p, &mut admin, path).await;
    }
    // Every page read the store (its session at least): the failures were met.
    assert!(swept >= owner_pages.len() + admin_pages.len(), "{swept}");
    // A visitor without a session: the pages that read nothing but the
    // visitor's own cookies work; the others wait for the database too.
    let mut visitor = Browser::new(p.addr);
    p.web.store.fail_as_unavailable(0, u64::MAX);
    assert_eq!(visitor.get("/login").await.status, 200);
    assert_eq!(visitor.get("/static/style.css").await.status, 200);
    for path in owner_pages.iter().chain(&admin_pages) {
        let r = owner.get(path).await;
        assert_try_again(&r, &format!("GET {path} with the database away"));
    }
    p.web.store.fail_as_unavailable(0, 0);
    // Back: the same session goes on.
    assert_eq!(owner.get("/licenses").await.status, 200);
}

/// `POST path` with the store's call number `skip` failing, for every `skip`
/// until the request went through (its answer `want`): before, every answer
/// is 503 and changed nothing.
async fn sweep_post(
    p: &Portal,
    b: &mut Browser,
    path: &str,
    fields: &[(String, String)],
    want: u16,
) -> Reply {
    let mut skip = 0;
    loop {
        let before = fingerprint(p);
        p.web.store.fail_as_unavailable(skip, 1);
        let r = post_owned(b, path, fields).await;
        let failed = !p.web.store.failures_pending();
        p.web.store.fail_as_unavailable(0, 0);
        if r.status == want {
            // Done; with a failure met on the way only if the handler could do
            // without what failed (a courtesy such as resetting the login
            // throttle), and then it did its work.
            return r;
        }
        let what = format!("POST {path} with store call {skip} failing");
        assert!(failed, "{what}: the failure was not met, yet {}", r.status);
        assert_try_again(&r, &what);
        assert_eq!(
            fingerprint(p),
            before,
            "{what}: 503, yet it changed the store"
        );
        skip += 1;
    }
}

#[tokio::test]
async fn a_form_sent_while_the_database_is_away_answers_503_and_changes_nothing() {
    let p = Portal::start().await;
    let mut owner = p.customer("owner@example.com").await;
    let mut admin = p.admin().await;
    // A quote: its summary, then "get quote".
    let form = owner.get("/quote/standard").await;
    let summary = sweep_post(
        &p,
        &mut owner,
        "/quote/standard",
        &worked_order(&form.csrf()),
        200,
    )
    .await;
    let mut hidden = hidden_fields(&summary.body);
    hidden.push(("step".into(), "quote".into()));
    let done = sweep_post(&p, &mut owner, "/quote/standard", &hidden, 303).await;
    let created = location(&done);
    let number: LicenseNumber = created
        .split("created=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .expect("created")
        .parse()
        .expect("number");
    // The order, the license data, the admin's "trusted".
    let page = owner.get(&format!("/quotes/{number}/1")).await;
    let csrf = page.csrf();
    let ordered = sweep_post(
        &p,
        &mut owner,
        &format!("/quotes/{number}/1/order"),
        &[("csrf".into(), csrf.clone())],
        303,
    )
    .await;
    assert_eq!(location(&ordered), format!("/licenses/{number}?ordered=1"));
    let edit: Vec<(String, String)> = [
        ("csrf", csrf.as_str()),
        ("data_name", "Plant 2"),
        ("data_postcode", "3123"),
        ("data_city", "Belp"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    sweep_post(
        &p,
        &mut owner,
        &format!("/licenses/{number}/edit"),
        &edit,
        303,
    )
    .await;
    let id = off_runtime(|| {
        p.web
            .store
            .account_by_email("owner@example.com")
            .expect("store")
            .expect("account")
            .id
    });
    let admin_csrf = admin.get("/admin").await.csrf();
    let trusted = sweep_post(
        &p,
        &mut admin,
        &format!("/admin/customers/{}/trusted", id.0),
        &[("csrf".into(), admin_csrf), ("trusted".into(), "1".into())],
        303,
    )
    .await;
    assert_eq!(location(&trusted), "/admin/customers");
    // A login, and a logout: sessions are rows in the database too.
    let mut again = Browser::new(p.addr);
    let csrf = again.get("/login").await.csrf();
    let login: Vec<(String, String)> = [
        ("csrf", csrf.as_str()),
        ("email", "owner@example.com"),
        ("password", super::PW),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = sweep_post(&p, &mut again, "/login", &login, 303).await;
    assert_eq!(location(&r), "/licenses");
    let csrf = again.get("/licenses").await.csrf();
    p.web.store.fail_as_unavailable(0, 1);
    let r = post_owned(&mut again, "/logout", &[("csrf".into(), csrf.clone())]).await;
    assert_try_again(&r, "logout with the database away");
    assert_eq!(
        again.get("/licenses").await.status,
        200,
        "a logout that failed left the session"
    );
    // Everything failing: every form answers 503.
    p.web.store.fail_as_unavailable(0, u64::MAX);
    let before_all = "every call failing";
    for (path, fields) in [
        ("/quote/standard", hidden.clone()),
        ("/logout", vec![("csrf".to_owned(), csrf.clone())]),
    ] {
        let r = post_owned(&mut again, path, &fields).await;
        assert_try_again(&r, &format!("POST {path}, {before_all}"));
    }
    p.web.store.fail_as_unavailable(0, 0);
}
