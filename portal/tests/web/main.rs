//! The portal over real HTTP. This file: the account pages: registration, verification, login, logout,
//! password reset, CSRF, throttling, languages, escaping, admin access, and
//! email delivery through the file outbox and through a real SMTP server.
//! `shop.rs`: quotes, orders, licenses and the admin pages (issue 6).
//! `input.rs`: redirect targets, CSRF on every POST route, strict form and
//! price input, overlong fields, reset links after a password change (issue 18).

mod browser;
mod input;
mod outage;
mod shop;
mod ux;

use browser::{between, outbox, Browser};
use keys::{SimClock, UnixTime};
use portal::domain::{Actor, NewAccount};
use portal::mail::{Mailer, SmtpConfig, SmtpTls};
use portal::store::Store;
use portal::web::{self, password, HttpConfig, Web};
use std::path::PathBuf;
use std::sync::Arc;

const START: UnixTime = UnixTime(1_800_000_000);
const PW: &str = "correct-horse-42";

/// Where a test portal keeps its store.
enum Db {
    /// A SQLite file in the portal's temporary directory.
    Sqlite,
    /// A database of this test binary's shared throwaway cluster.
    SharedPostgres,
    /// A database at this URL (a cluster of the test's own).
    Postgres(String),
}

struct Portal {
    addr: std::net::SocketAddr,
    web: Arc<Web>,
    clock: SimClock,
    outbox: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Portal {
    async fn start() -> Portal {
        Self::start_with(None, "http://portal.test").await
    }

    async fn start_with(smtp: Option<SmtpConfig>, public_url: &str) -> Portal {
        Self::start_engine(smtp, public_url, Db::Sqlite).await
    }

    /// The portal with its store on PostgreSQL (a database of this test binary's
    /// throwaway cluster).
    async fn start_postgres() -> Portal {
        Self::start_engine(None, "http://portal.test", Db::SharedPostgres).await
    }

    async fn start_engine(smtp: Option<SmtpConfig>, public_url: &str, db: Db) -> Portal {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(portal::store::DB_FILE);
        // Opening a store (and Web::new, which reads it) blocks: not on the
        // test's async thread.
        let store = Arc::new(
            portal::blocking(move || match db {
                Db::Sqlite => Store::open(&path),
                Db::SharedPostgres => Store::temporary_postgres(),
                Db::Postgres(url) => Store::open_url(&url),
            })
            .await
            .expect("store"),
        );
        let clock = SimClock::at(START);
        let outbox = dir.path().join("outbox");
        let mailer = Arc::new(
            Mailer::new(
                &store,
                "PLS <pls@portal.test>",
                smtp.as_ref(),
                outbox.clone(),
                Arc::new(clock.clone()),
            )
            .expect("mailer"),
        );
        let cfg = HttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            public_url: public_url.into(),
            ..HttpConfig::default()
        };
        let key = Arc::new(keys::SigningKeyPair::from_seed(&[7; 32]));
        let daemon = portal::daemon_config::DaemonSettings::from_parts(
            &["license.portal.test".to_owned()],
            4433,
            vec![key.public()],
            "ab".repeat(32),
        );
        let web_clock = Arc::new(clock.clone());
        let web = Arc::new(
            portal::blocking(move || Web::new(store, web_clock, mailer, cfg, key))
                .await
                .expect("web")
                .with_daemon_settings(daemon),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, _task) = web::serve(web.clone(), async move {
            let _ = stopped.await;
        })
        .expect("serve");
        Portal {
            addr,
            web,
            clock,
            outbox,
            _dir: dir,
            _stop: stop,
        }
    }

    async fn deliver(&self) -> Vec<browser::Mail> {
        self.web.mailer.deliver_due().await;
        outbox(&self.outbox)
    }

    async fn register(&self, b: &mut Browser, email: &str, first: &str) -> browser::Reply {
        let page = b.get("/register").await;
        b.post(
            "/register",
            &[
                ("csrf", &page.csrf()),
                ("email", email),
                ("password", PW),
                ("password2", PW),
                ("company", "MST System Solutions GmbH"),
                ("first_name", first),
                ("last_name", "Müller"),
            ],
        )
        .await
    }

    async fn verify_latest(&self, b: &mut Browser) -> browser::Reply {
        let mails = self.deliver().await;
        // The newest verification email (other emails may be delivered in the same
        // batch, with the same modification time).
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.text.contains("/verify?token="))
            .expect("a verification email");
        let token = between(&mail.text, "/verify?token=", "\n")
            .expect("link")
            .trim()
            .to_owned();
        b.get(&format!("/verify?token={}", &token[..64])).await
    }

    async fn login(
        &self,
        b: &mut Browser,
        email: &str,
        pw: &str,
        remember: bool,
    ) -> browser::Reply {
        let page = b.get("/login").await;
        let mut fields = vec![
            ("csrf", page.csrf()),
            ("email", email.to_owned()),
            ("password", pw.to_owned()),
        ];
        if remember {
            fields.push(("remember", "1".into()));
        }
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.post("/login", &f).await
    }
}

#[tokio::test]
async fn register_verify_login_logout() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);

    let r = p
        .register(&mut b, "Christoph.Mueller@Example.com", "Christoph")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Bitte bestätigen Sie Ihre Email-Adresse"));

    // The email, as the manual shows it: greeting, link, expiry time.
    let mails = p.deliver().await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.to, "christoph.mueller@example.com");
    assert_eq!(m.subject, "Bitte bestätigen Sie Ihre Email-Adresse");
    assert!(m.text.contains("Hallo Christoph Müller"), "{}", m.text);
    assert!(
        m.text.contains("http://portal.test/verify?token="),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("Der Link ist bis zum 16.01.2027 um 08:00:00 Uhr (UTC) gültig"),
        "{}",
        m.text
    );

    // Not verified yet: login refused with the reason.
    let r = p
        .login(&mut b, "christoph.mueller@example.com", PW, false)
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("noch nicht bestätigt"), "{}", r.body);

    let r = p.verify_latest(&mut b).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Email-Adresse bestätigt"));

    // Login without "remember me": a browser-session cookie, HttpOnly, SameSite=Lax.
    let r = p
        .login(&mut b, "christoph.mueller@example.com", PW, false)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/licenses"));
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("pls_session="))
        .expect("session cookie");
    assert!(
        c.contains("HttpOnly")
            && c.contains("SameSite=Lax")
            && !c.contains("Max-Age")
            && !c.contains("Secure"),
        "{c}"
    );

    let r = b.get("/licenses").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Meine Lizenzen") && r.body.contains("Sie haben noch keine Lizenzen."));

    // Logout ends the session on the server: replaying the old cookie gets nowhere.
    let old_cookie = b.cookies.get("pls_session").cloned().expect("cookie");
    let r = b.post("/logout", &[("csrf", &r.csrf())]).await;
    assert_eq!(r.status, 303);
    let mut replay = Browser::new(p.addr);
    replay.cookies.insert("pls_session".into(), old_cookie);
    let r = replay.get("/licenses").await;
    assert_eq!(r.status, 303);
    assert!(r
        .header("location")
        .is_some_and(|l| l.starts_with("/login")));
}

#[tokio::test]
async fn remember_me_sets_a_30_day_cookie_and_https_makes_it_secure() {
    let p = Portal::start_with(None, "https://license.example.com").await;
    let mut b = Browser::new(p.addr);
    p.register(&mut b, "a@example.com", "Anna").await;
    p.verify_latest(&mut b).await;
    let r = p.login(&mut b, "a@example.com", PW, true).await;
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("pls_session="))
        .expect("cookie");
    assert!(
        c.contains("Max-Age=2592000") && c.contains("Secure") && c.contains("HttpOnly"),
        "{c}"
    );
    // The email links use the public URL.
    assert!(p.deliver().await[0]
        .text
        .contains("https://license.example.com/verify?token="));
}

#[tokio::test]
async fn wrong_password_and_throttling() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    p.register(&mut b, "t@example.com", "Tom").await;
    p.verify_latest(&mut b).await;

    let r = p
        .login(&mut b, "t@example.com", "wrong-password-1", false)
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Email oder Passwort ist falsch."));
    // Unknown accounts get the very same answer.
    let r = p
        .login(&mut b, "nobody@example.com", "wrong-password-1", false)
        .await;
    assert_eq!(r.status, 401);

    for _ in 0..4 {
        p.login(&mut b, "t@example.com", "wrong-password-1", false)
            .await;
    }
    // Five failures: even the right password is refused for 15 minutes, with a clear message.
    let r = p.login(&mut b, "t@example.com", PW, false).await;
    assert_eq!(r.status, 429);
    assert!(
        r.body.contains("Zu viele fehlgeschlagene Anmeldeversuche")
            && r.body.contains("15 Minuten"),
        "{}",
        r.body
    );
    p.clock.advance_secs(15 * 60);
    let r = p.login(&mut b, "t@example.com", PW, false).await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn expired_and_reused_verification_links_offer_a_new_one() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    p.register(&mut b, "e@example.com", "Eva").await;
    let first = p.deliver().await[0].clone();
    let token = &between(&first.text, "/verify?token=", "\n").expect("link")[..64];

    p.clock.advance_secs(24 * 3600 + 1);
    let r = b.get(&format!("/verify?token={token}")).await;
    assert_eq!(r.status, 410);
    assert!(r.body.contains("Link ungültig") && r.body.contains("Neuen Link anfordern"));

    // Ask for a new one from that page.
    let r = b
        .post(
            "/verify/resend",
            &[("csrf", &r.csrf()), ("email", "e@example.com")],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = p.verify_latest(&mut b).await;
    assert_eq!(r.status, 200);
    // The same link a second time: used.
    let mails = outbox(&p.outbox);
    let token2 =
        &between(&mails.last().expect("mail").text, "/verify?token=", "\n").expect("link")[..64];
    // The same link a second time: the address is confirmed, nothing is wrong
    // (issue 18): no "link not valid", a way to log in instead.
    let r = b.get(&format!("/verify?token={token2}")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("Email-Adresse bereits bestätigt"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("Link ungültig"));
    assert!(r.body.contains("href=\"/login\""));
    // The expired first link of the now confirmed address says the same.
    let r = b.get(&format!("/verify?token={token}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("bereits bestätigt"));
    let r = b.get("/verify?token=nonsense").await;
    assert_eq!(r.status, 410);
    assert!(r.body.contains("Link ungültig"));
}

#[tokio::test]
async fn password_reset_ends_all_sessions_and_works_once() {
    let p = Portal::start().await;
    let mut laptop = Browser::new(p.addr);
    p.register(&mut laptop, "r@example.com", "Rita").await;
    p.verify_latest(&mut laptop).await;
    assert_eq!(
        p.login(&mut laptop, "r@example.com", PW, true).await.status,
        303
    );
    assert_eq!(laptop.get("/licenses").await.status, 200);

    // Same answer for an unknown address, and no email for it.
    let mut b = Browser::new(p.addr);
    let page = b.get("/password/forgot").await;
    let unknown = b
        .post(
            "/password/forgot",
            &[("csrf", &page.csrf()), ("email", "ghost@example.com")],
        )
        .await;
    let before = p.deliver().await.len();
    let known = b
        .post(
            "/password/forgot",
            &[("csrf", &page.csrf()), ("email", "r@example.com")],
        )
        .await;
    assert_eq!(unknown.status, known.status);
    assert!(unknown
        .body
        .contains("Falls ein Konto mit dieser Adresse existiert"));
    let mails = p.deliver().await;
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().expect("reset mail");
    assert_eq!(mail.subject, "Passwort zurücksetzen");
    let token = between(&mail.text, "/password/reset?token=", "\n").expect("link")[..64].to_owned();

    let form = b.get(&format!("/password/reset?token={token}")).await;
    assert_eq!(form.status, 200);
    // The rule is enforced.
    let r = b
        .post(
            "/password/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &token),
                ("password", "short"),
                ("password2", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    let new_pw = "a-new-password-7";
    let r = b
        .post(
            "/password/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &token),
                ("password", new_pw),
                ("password2", new_pw),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The laptop's remembered session is dead; the old password is dead; the link is used up.
    assert_eq!(laptop.get("/licenses").await.status, 303);
    assert_eq!(
        p.login(&mut b, "r@example.com", PW, false).await.status,
        401
    );
    assert_eq!(
        p.login(&mut b, "r@example.com", new_pw, false).await.status,
        303
    );
    let mut c = Browser::new(p.addr);
    assert_eq!(
        c.get(&format!("/password/reset?token={token}"))
            .await
            .status,
        410
    );
    // Reset links expire after an hour.
    let page = c.get("/password/forgot").await;
    c.post(
        "/password/forgot",
        &[("csrf", &page.csrf()), ("email", "r@example.com")],
    )
    .await;
    let mails = p.deliver().await;
    let late = between(
        &mails.last().expect("mail").text,
        "/password/reset?token=",
        "\n",
    )
    .expect("link")[..64]
        .to_owned();
    p.clock.advance_secs(3601);
    assert_eq!(
        c.get(&format!("/password/reset?token={late}")).await.status,
        410
    );
}

#[tokio::test]
async fn posts_without_a_valid_csrf_token_are_refused() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    p.register(&mut b, "c@example.com", "Carl").await;
    p.verify_latest(&mut b).await;

    // No token, a wrong token, and a token from another visitor.
    let mut fresh = Browser::new(p.addr);
    let r = fresh
        .post("/login", &[("email", "c@example.com"), ("password", PW)])
        .await;
    assert_eq!(r.status, 403);
    let page = b.get("/login").await;
    let r = b
        .post(
            "/login",
            &[
                ("csrf", "0000"),
                ("email", "c@example.com"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let mut other = Browser::new(p.addr);
    let other_page = other.get("/login").await;
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &other_page.csrf()),
                ("email", "c@example.com"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Das Formular ist abgelaufen"));
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("email", "c@example.com"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 303);

    // Logged in, the anonymous token no longer works: logout needs the session's token.
    let r = b.post("/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(r.status, 403);
    assert_eq!(b.get("/licenses").await.status, 200);
}

#[tokio::test]
async fn registration_errors_stand_next_to_their_fields_and_keep_values() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let page = b.get("/register").await;
    assert!(
        page.body.contains("Mindestens 10 Zeichen"),
        "the password rule is stated"
    );
    let r = b
        .post(
            "/register",
            &[
                ("csrf", &page.csrf()),
                ("email", "not-an-email"),
                ("password", "abc"),
                ("password2", "abd"),
                ("company", "ACME"),
                ("first_name", ""),
                ("last_name", "Doe"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r
        .body
        .contains("Bitte geben Sie eine gültige Email-Adresse ein."));
    assert!(r.body.contains("Das Passwort erfüllt die Regel nicht."));
    assert!(r.body.contains("Die Passwörter stimmen nicht überein."));
    assert!(r
        .body
        .contains("Vorname: Bitte füllen Sie dieses Feld aus."));
    assert!(
        r.body.contains("value=\"ACME\"") && r.body.contains("value=\"not-an-email\""),
        "values kept"
    );
    assert!(p.deliver().await.is_empty());

    // A taken address.
    p.register(&mut b, "taken@example.com", "Tina").await;
    let r = p.register(&mut b, "TAKEN@example.com", "Tina").await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("existiert bereits ein Konto"));
}

#[tokio::test]
async fn html_in_names_is_rendered_inert() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let evil = "<script>alert(1)</script>";
    p.register(&mut b, "x@example.com", evil).await;
    let mails = p.deliver().await;
    // The HTML part escapes it; the plain-text part is not HTML and shows it as typed.
    assert!(!mails[0].html.contains("<script>"), "{}", mails[0].html);
    assert!(
        mails[0].html.contains("&lt;script&gt;"),
        "{}",
        mails[0].html
    );
    assert!(mails[0]
        .text
        .contains("Hallo <script>alert(1)</script> Müller"));
    p.verify_latest(&mut b).await;
    p.login(&mut b, "x@example.com", PW, false).await;
    let r = b.get("/licenses").await;
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert"));
}

#[tokio::test]
async fn security_headers_languages_and_footer() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    let r = b.get("/login").await;
    assert!(r
        .header("content-security-policy")
        .is_some_and(|v| v.contains("frame-ancestors 'none'")));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    // German by default, with the manual's wording and the footer links.
    assert!(
        r.body.contains("Keine Login-Daten?") && r.body.contains("Jetzt kostenlos registrieren!")
    );
    assert!(
        r.body.contains("href=\"/imprint\"")
            && r.body.contains("Datenschutz")
            && r.body.contains("English")
    );

    // Accept-Language picks English.
    let mut en = Browser::new(p.addr);
    en.accept_language = Some("en-GB,en;q=0.9".into());
    let r = en.get("/login").await;
    assert!(r.body.contains("Register now for free!") && r.body.contains("Remember me"));

    // The switch link sets a cookie and goes back.
    let r = b.get("/lang/en?back=/register").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/register"));
    assert!(b.get("/register").await.body.contains("Repeat password"));
    // No open redirects.
    let r = b.get("/lang/de?back=//evil.example").await;
    assert_eq!(r.header("location"), Some("/"));

    // Unknown pages get a page, not a bare error.
    let r = b.get("/no/such/page").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("<html"));
}

#[tokio::test]
async fn language_is_remembered_for_the_account() {
    let p = Portal::start().await;
    let mut b = Browser::new(p.addr);
    b.accept_language = Some("en".into());
    p.register(&mut b, "l@example.com", "Lea").await;
    let mails = p.deliver().await;
    assert_eq!(mails[0].subject, "Please confirm your email address");
    assert!(mails[0].text.contains("Hello Lea"));
    p.verify_latest(&mut b).await;
    p.login(&mut b, "l@example.com", PW, false).await;
    // A new browser without language hints, logging in: English, from the account.
    let mut other = Browser::new(p.addr);
    p.login(&mut other, "l@example.com", PW, false).await;
    assert!(other.get("/licenses").await.body.contains("My licenses"));
}

#[tokio::test]
async fn admin_area_is_for_admins_only() {
    let p = Portal::start().await;
    let mut customer = Browser::new(p.addr);
    p.register(&mut customer, "cust@example.com", "Cust").await;
    p.verify_latest(&mut customer).await;
    p.login(&mut customer, "cust@example.com", PW, false).await;
    let r = customer.get("/admin").await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("Administration"));

    let admin = p
        .web
        .store
        .create_account(
            NewAccount {
                email: "admin@mst.example".into(),
                password_hash: Some(password::hash(PW)),
                company: "MST".into(),
                first_name: "Ada".into(),
                last_name: "Admin".into(),
            },
            &Actor::System,
            START,
        )
        .expect("admin");
    p.web
        .store
        .set_admin(admin.id, true, &Actor::System, START)
        .expect("set admin");
    p.web
        .store
        .update_account(admin.id, &Actor::System, START, "verified", |a| {
            a.email_verified = true
        })
        .expect("verify");
    let mut b = Browser::new(p.addr);
    p.login(&mut b, "admin@mst.example", PW, false).await;
    let r = b.get("/admin").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Nicht zugestellte Emails"));
}

/// The store's PostgreSQL goes away under a logged-in admin (killed, as a
/// crash or a failover would): every page, form and unknown path answers the
/// bilingual 503 "try again" page, never 404, 500 or the login page; when the
/// database is back on the same address, the same session carries on.
#[tokio::test]
async fn a_lost_database_answers_try_again_everywhere_and_the_session_survives() {
    use portal::store::throwaway::Cluster;
    let mut cluster = shop::off_runtime(|| Cluster::start().expect("cluster"));
    let url = shop::off_runtime(|| cluster.create_database().expect("database"));
    let p = Portal::start_engine(None, "http://portal.test", Db::Postgres(url)).await;
    let mut b = p.admin().await;
    let before = b.get("/admin/licenses").await;
    assert_eq!(before.status, 200, "{}", before.body);
    let csrf = before.csrf();

    shop::off_runtime(|| cluster.kill().expect("kill"));
    let gets = [
        "/",
        "/licenses",
        "/licenses/1",
        "/licenses/1/offline",
        "/quote",
        "/quote/standard",
        "/quotes",
        "/api/price?kind=standard&driver_saia_pcd=6000",
        "/admin",
        "/admin/licenses",
        "/admin/licenses?q=hanau",
        "/admin/licenses/1",
        "/admin/customers",
        "/login",
        "/no/such/page",
    ];
    for path in gets {
        let r = b.get(path).await;
        assert_eq!(r.status, 503, "GET {path}: {}", r.body);
        assert!(r.body.contains("Temporarily unavailable"), "GET {path}");
        assert!(
            r.body.contains("Vorübergehend nicht verfügbar"),
            "GET {path}"
        );
    }
    for (path, fields) in [
        ("/logout", vec![("csrf", csrf.as_str())]),
        ("/licenses/1/reset", vec![("csrf", csrf.as_str())]),
        (
            "/admin/licenses/1/dongle",
            vec![("csrf", csrf.as_str()), ("serial", "1234")],
        ),
    ] {
        let r = b.post(path, &fields).await;
        assert_eq!(r.status, 503, "POST {path}: {}", r.body);
        assert!(r.body.contains("Temporarily unavailable"), "POST {path}");
    }

    shop::off_runtime(|| cluster.restart().expect("restart"));
    let after = b.get("/admin/licenses").await;
    assert_eq!(
        after.status, 200,
        "the session after the database is back: {}",
        after.body
    );
    assert!(
        !after.body.contains("name=\"password\""),
        "logged out: {}",
        after.body
    );
}

/// A failing SMTP server: the message stays queued, is retried with backoff,
/// shows on the admin page, and nothing is lost.
#[tokio::test]
async fn failed_sends_are_retried_and_never_lost() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead); // nothing listens there now
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
    };
    let p = Portal::start_with(Some(smtp), "http://portal.test").await;
    let mut b = Browser::new(p.addr);
    let r = p.register(&mut b, "q@example.com", "Quinn").await;
    assert_eq!(
        r.status, 200,
        "the account is created even though mail is down"
    );
    assert_eq!(p.web.mailer.deliver_due().await, 0);
    let failing = p.web.mailer.failing();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].attempts, 1);
    assert_eq!(failing[0].next_attempt, START.plus_secs(30));
    assert!(failing[0].last_error.is_some());
    // Not due yet: no second attempt.
    p.web.mailer.deliver_due().await;
    assert_eq!(p.web.mailer.failing()[0].attempts, 1);
    p.clock.advance_secs(30);
    p.web.mailer.deliver_due().await;
    let j = &p.web.mailer.failing()[0];
    assert_eq!((j.attempts, j.next_attempt), (2, START.plus_secs(30 + 60)));
    assert!(p
        .web
        .store
        .account_by_email("q@example.com")
        .expect("db")
        .is_some());
}

/// A child process that is killed when dropped.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SMTP path against a real SMTP server process (Python's aiosmtpd, installed
/// by scripts/setup) on loopback.
#[tokio::test]
async fn smtp_delivery_to_a_real_server() {
    let python =
        std::env::var("PLS_TEST_PYTHON").unwrap_or_else(|_| "/opt/pls-test-venv/bin/python".into());
    let maildir = tempfile::tempdir().expect("tempdir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.path().join(sub)).expect("maildir");
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let server = std::process::Command::new(&python)
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir.path())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start aiosmtpd with {python} (run scripts/setup): {e}"));
    // Killed when the test ends, also when an assertion fails.
    let mut server = KillOnDrop(server);
    // Wait until it accepts connections.
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "aiosmtpd did not start");

    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
    };
    let p = Portal::start_with(Some(smtp), "http://portal.test").await;
    let mut b = Browser::new(p.addr);
    b.accept_language = Some("en".into());
    p.register(&mut b, "smtp@example.com", "Sam").await;
    assert_eq!(p.web.mailer.deliver_due().await, 1);
    assert!(p.web.mailer.failing().is_empty());

    let new_dir = maildir.path().join("new");
    let mut files = Vec::new();
    for _ in 0..50 {
        files = std::fs::read_dir(&new_dir)
            .map(|d| d.filter_map(|e| e.ok()).collect())
            .unwrap_or_default();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop();
    assert_eq!(files.len(), 1, "one message in the maildir");
    let raw = std::fs::read_to_string(files[0].path()).expect("read");
    let mail = browser::parse_eml(&raw);
    assert_eq!(mail.to, "smtp@example.com");
    assert_eq!(mail.subject, "Please confirm your email address");
    assert!(mail.text.contains("Hello Sam"));
    let token = &between(&mail.text, "/verify?token=", "\n").expect("link")[..64];
    // The link works.
    let r = b.get(&format!("/verify?token={token}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Email address confirmed"));
}

/// The portal inside `pls serve`: the server's HTTP listener serves the pages,
/// and `pls admin create-admin` gives a link that sets the admin's password.
#[tokio::test]
async fn the_server_serves_the_portal_and_create_admin_bootstraps_an_admin() {
    use portal::admin::{self, AdminEnvelope, AdminRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = portal::config::Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    config.quic.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    config.metrics.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.public_url = "http://pls.test".into();
    let clock = SimClock::at(START);
    let server = portal::Server::bind(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("bind");
    let addr = server.http_addr();
    let ctx = server.admin_context();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let reply = admin::execute(
        &ctx,
        AdminEnvelope {
            idempotency_key: None,
            operator: "test".into(),
            request: AdminRequest::CreateAdmin {
                email: "boss@mst.example".into(),
                public_url: config.http.public_url.clone(),
            },
        },
    )
    .expect("create-admin");
    let link = reply.data["password_link"]
        .as_str()
        .expect("link")
        .to_owned();
    assert!(
        link.starts_with("http://pls.test/password/reset?token="),
        "{link}"
    );
    assert!(reply.text.contains("is an admin now"));

    let mut b = Browser::new(addr);
    let path = link.trim_start_matches("http://pls.test");
    let form = b.get(path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let token = between(path, "token=", "&")
        .unwrap_or_else(|| path.split("token=").nth(1).unwrap_or("").to_owned());
    let r = b
        .post(
            "/password/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &token),
                ("password", PW),
                ("password2", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let page = b.get("/login").await;
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("email", "boss@mst.example"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = b.get("/admin").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Administration"));

    // Registration through the server's portal puts the email into <data dir>/outbox.
    let mut c = Browser::new(addr);
    let page = c.get("/register").await;
    let r = c
        .post(
            "/register",
            &[
                ("csrf", &page.csrf()),
                ("email", "new@example.com"),
                ("password", PW),
                ("password2", PW),
                ("company", "ACME"),
                ("first_name", "Neo"),
                ("last_name", "N"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let outbox_dir = dir.path().join("data").join("outbox");
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = outbox(&outbox_dir);
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        mails.len(),
        1,
        "the server's mail worker delivered into the outbox"
    );
    assert_eq!(mails[0].to, "new@example.com");

    let _ = stop.send(());
    task.await.expect("join").expect("clean shutdown");
}

/// The same filters driven in-process through `warp::test`, without a socket.
#[tokio::test]
async fn routes_through_warp_test() {
    let p = Portal::start().await;
    let routes = web::routes(p.web.clone());

    let r = warp::test::request()
        .method("GET")
        .path("/login")
        .header("accept-language", "en")
        .reply(&routes)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let body = String::from_utf8_lossy(r.body()).to_string();
    assert!(body.contains("Remember me"));
    let anon = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let csrf = between(&body, "name=\"csrf\" value=\"", "\"").expect("csrf");

    // A POST with the wrong token is refused; with the right one it is processed.
    let wrong = warp::test::request()
        .method("POST")
        .path("/login")
        .header("cookie", &anon)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=00&email=a%40b.c&password=x")
        .reply(&routes)
        .await;
    assert_eq!(wrong.status(), 403);
    let right = warp::test::request()
        .method("POST")
        .path("/login")
        .header("cookie", &anon)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&email=a%40b.c&password=x"))
        .reply(&routes)
        .await;
    assert_eq!(right.status(), 401);

    // An oversized form body (beyond what is read at all) gets a page, not a crash.
    let big = warp::test::request()
        .method("POST")
        .path("/register")
        .header("cookie", &anon)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 1100 * 1024])
        .reply(&routes)
        .await;
    assert_eq!(big.status(), 413);
}
