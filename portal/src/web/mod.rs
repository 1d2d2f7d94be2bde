//! The customer web portal (manual chapters 2-8) and the vendor's admin pages.
//!
//! Shape (warp's `todos` example): [`routes`] assembles filters; handlers live in
//! [`auth`] (accounts) and [`admin`]; page models and templates in [`pages`]
//! (askama, compile-time checked, escaped by default); every fixed text in
//! [`i18n`]. Pages work without JavaScript.
//!
//! Security on every route: server-side sessions ([`session`]), a CSRF token on
//! every form and a check on every POST, login throttling ([`throttle`]),
//! argon2id passwords ([`password`]) and security headers on every response.

pub mod admin;
pub mod auth;
pub mod emails;
pub mod i18n;
pub mod license;
pub mod pages;
pub mod password;
pub mod session;
pub mod shop;
pub mod throttle;
pub mod tokens;

use crate::domain::{Account, AccountId};
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use i18n::Lang;
use keys::{Clock, SigningKeyPair};
use pricing::PriceList;
use serde::{Deserialize, Serialize};
use session::{Session, Sessions};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use throttle::Throttle;
use tokens::EmailTokens;
use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;
use warp::{Filter, Rejection, Reply};

/// The HTTP listener's settings (`[http]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the portal listens. Loopback by default: put a TLS reverse proxy in
    /// front of it (README, "Behind a reverse proxy").
    pub listen: SocketAddr,
    /// The address customers use, for links in emails. `https://...` also makes
    /// every cookie `Secure`.
    pub public_url: String,
    /// Take the client address for login throttling from the last
    /// `X-Forwarded-For` entry (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// Sender of every email.
    pub mail_from: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            trust_forwarded_for: false,
            mail_from: "ProMoS License Server <pls@localhost>".into(),
        }
    }
}

/// Everything the handlers share.
pub struct Web {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub mailer: Arc<Mailer>,
    pub cfg: HttpConfig,
    /// Signs the grants that activations, edits and dongle serials issue.
    pub key: Arc<SigningKeyPair>,
    /// The price list (`prices` in the config; the embedded list by default).
    pub prices: Arc<PriceList>,
    pub sessions: Sessions,
    pub tokens: EmailTokens,
    pub throttle: Throttle,
    /// Requests by route and status (the server's registry, see [`Web::with_metrics`]).
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Web {
    /// A portal on the embedded price list; see [`Web::with_prices`].
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        mailer: Arc<Mailer>,
        cfg: HttpConfig,
        key: Arc<SigningKeyPair>,
    ) -> Result<Self, StoreError> {
        Ok(Web {
            sessions: Sessions::open(&store)?,
            tokens: EmailTokens::open(&store)?,
            throttle: Throttle::default(),
            store,
            clock,
            mailer,
            cfg,
            key,
            prices: Arc::new(PriceList::embedded()),
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Counts requests into `metrics` (the server's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_prices(mut self, prices: PriceList) -> Self {
        self.prices = Arc::new(prices);
        self
    }

    /// The periodic work: expire quotes past their validity and send the
    /// engineering renewal reminders that are due. Idempotent; the server runs it
    /// every few minutes and tests call it with a simulated clock.
    pub fn housekeeping(&self) -> Result<(), String> {
        let now = self.clock.now();
        let expired = self.store.expire_quotes(now).map_err(|e| e.to_string())?;
        if expired > 0 {
            tracing::info!(expired, "quotes expired");
        }
        license::send_due_reminders(self, now)
    }

    pub fn secure_cookies(&self) -> bool {
        self.cfg.public_url.starts_with("https://")
    }

    /// An absolute link for emails.
    pub fn link(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.cfg.public_url.trim_end_matches('/'),
            path_and_query
        )
    }

    pub fn lang_pref(&self, account: AccountId) -> Option<Lang> {
        let v = match self.store.lang_pref(account) {
            Ok(v) => v?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a language preference");
                return None;
            }
        };
        Lang::from_code(&v)
    }

    pub fn reminder_sent(&self, key: &str) -> bool {
        match self.store.reminder_sent(key) {
            Ok(sent) => sent,
            Err(e) => {
                // Sending it again is better than never: the reminder is a courtesy.
                tracing::error!(error = %e, "cannot read which reminders were sent");
                false
            }
        }
    }

    pub fn mark_reminder_sent(&self, key: &str) -> Result<(), StoreError> {
        self.store.mark_reminder_sent(key)
    }

    /// The language emails to `account` are written in: its stored choice, else German.
    pub fn lang_of(&self, account: Option<AccountId>) -> Lang {
        account.and_then(|a| self.lang_pref(a)).unwrap_or(Lang::De)
    }

    pub fn set_lang_pref(&self, account: AccountId, lang: Lang) -> Result<(), StoreError> {
        self.store.set_lang_pref(account, lang.code())
    }
}

/// What every handler knows about the request.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub lang: Lang,
    pub session: Option<Session>,
    pub account: Option<Account>,
    /// The anonymous id bound to CSRF tokens when not logged in.
    pub anon: String,
    /// True if `anon` is new and its cookie must be set.
    pub anon_is_new: bool,
    pub client: String,
    pub path: String,
    /// Path with query string, for "log in and come back".
    pub path_and_query: String,
}

impl Ctx {
    /// The CSRF token for forms on this page.
    pub fn csrf(&self, web: &Web) -> String {
        web.sessions.csrf_token(self.binding())
    }

    fn binding(&self) -> &str {
        self.session
            .as_ref()
            .map(|s| s.id.as_str())
            .unwrap_or(&self.anon)
    }

    pub fn csrf_ok(&self, web: &Web, form: &Form) -> bool {
        // A visitor without a session whose anonymous cookie is new was never shown
        // a form by us: nothing to compare with.
        if self.session.is_none() && self.anon_is_new {
            return false;
        }
        web.sessions.csrf_ok(self.binding(), form.get("csrf"))
    }

    pub fn is_admin(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.admin)
    }
}

/// A submitted form: field name to (trimmed) value.
#[derive(Clone, Debug, Default)]
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut map = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Form(map)
    }
    /// The field's value, trimmed; "" if missing.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(|s| s.trim()).unwrap_or("")
    }
    /// The field's raw value (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> &str {
        self.0.get(name).map(|s| s.as_str()).unwrap_or("")
    }
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Builds the request context.
fn ctx(web: Arc<Web>) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    warp::header::optional::<String>("cookie")
        .and(warp::header::optional::<String>("accept-language"))
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and(warp::addr::remote())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            move |cookie: Option<String>,
                  accept: Option<String>,
                  xff: Option<String>,
                  remote: Option<SocketAddr>,
                  path: warp::path::FullPath,
                  query: String| {
                let now = web.clock.now();
                let cookie = cookie.as_deref();
                let session = session::read_cookie(cookie, session::SESSION_COOKIE)
                    .and_then(|id| web.sessions.lookup(id, now).ok().flatten());
                let account = session
                    .as_ref()
                    .and_then(|s| web.store.account(s.account).ok().flatten());
                let lang = session::read_cookie(cookie, session::LANG_COOKIE)
                    .and_then(Lang::from_code)
                    .or_else(|| account.as_ref().and_then(|a| web.lang_pref(a.id)))
                    .or_else(|| accept.as_deref().and_then(Lang::from_accept_language))
                    .unwrap_or(Lang::De);
                let (anon, anon_is_new) = match session::read_cookie(cookie, session::ANON_COOKIE) {
                    Some(a) if a.len() == 64 && a.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        (a.to_owned(), false)
                    }
                    _ => (session::random_id(), true),
                };
                let client = match (web.cfg.trust_forwarded_for, xff) {
                    (true, Some(x)) => x.rsplit(',').next().unwrap_or("").trim().to_owned(),
                    _ => remote
                        .map(|r| r.ip().to_string())
                        .unwrap_or_else(|| "unknown".into()),
                };
                Ctx {
                    lang,
                    session,
                    account,
                    anon,
                    anon_is_new,
                    client,
                    path_and_query: if query.is_empty() {
                        path.as_str().to_owned()
                    } else {
                        format!("{}?{query}", path.as_str())
                    },
                    path: path.as_str().to_owned(),
                }
            },
        )
}

/// Form bodies are small; 64 KiB bounds what a client can make us buffer.
const FORM_LIMIT: u64 = 64 * 1024;

fn form() -> impl Filter<Extract = (Form,), Error = Rejection> + Clone {
    warp::body::content_length_limit(FORM_LIMIT)
        .and(warp::body::form::<Vec<(String, String)>>())
        .map(Form::from_pairs)
}

/// An HTML response, setting the anonymous cookie if it is new.
pub fn html(web: &Web, ctx: &Ctx, status: StatusCode, body: String) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store");
    if ctx.anon_is_new && ctx.session.is_none() {
        b = b.header(
            header::SET_COOKIE,
            session::cookie(session::ANON_COOKIE, &ctx.anon, None, web.secure_cookies()),
        );
    }
    b.body(Body::from(body)).unwrap_or_default()
}

/// A 303 redirect (after a POST) with optional cookies.
pub fn redirect(to: &str, cookies: &[String]) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to);
    for c in cookies {
        b = b.header(header::SET_COOKIE, c);
    }
    b.body(Body::empty()).unwrap_or_default()
}

/// Only local paths may be redirect targets (no open redirects).
pub fn safe_local_path(p: &str) -> Option<&str> {
    (p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 512).then_some(p)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn with_security_headers(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        header::HeaderValue::from_static(CSP),
    );
    h.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        header::HeaderValue::from_static("same-origin"),
    );
    resp
}

type Resp = Result<Response<Body>, Infallible>;

/// Every route of the portal.
pub fn routes(
    web: Arc<Web>,
) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone {
    let w = warp::any().map({
        let web = web.clone();
        move || web.clone()
    });
    let c = ctx(web.clone());
    let get = warp::get().and(w.clone()).and(c.clone());
    let post = warp::post().and(w.clone()).and(c.clone());

    let static_files = warp::get()
        .and(warp::path!("static" / "style.css"))
        .map(|| {
            warp::reply::with_header(pages::STYLE_CSS, "content-type", "text/css; charset=utf-8")
                .into_response()
        })
        .or(warp::get()
            .and(warp::path!("static" / "order.js"))
            .map(shop::order_js))
        .unify()
        .boxed();

    let shop_routes = get
        .clone()
        .and(warp::path!("quote"))
        .and_then(shop::choose)
        .or(get
            .clone()
            .and(warp::path!("quote" / String))
            .and_then(shop::form_get))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("quote" / String))
            .and(form())
            .and_then(shop::form_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("api" / "price"))
            .and(warp::query::<Vec<(String, String)>>())
            .and_then(shop::price_api))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("quotes"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(shop::quotes))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("quotes" / String / u32))
            .and_then(shop::quote_show))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("quotes" / String / u32 / "order"))
            .and(form())
            .and_then(shop::quote_order))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("quotes" / String / u32 / "delete"))
            .and(form())
            .and_then(shop::quote_delete))
        .unify()
        .boxed();

    let license_routes = get
        .clone()
        .and(warp::path!("licenses" / String))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(license::page)
        .or(get
            .clone()
            .and(warp::path!("licenses" / String / "edit"))
            .and_then(license::edit_get))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("licenses" / String / "edit"))
            .and(form())
            .and_then(license::edit_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("licenses" / String / "download"))
            .and_then(license::download))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("licenses" / String / "reset"))
            .and_then(license::reset_get))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("licenses" / String / "reset"))
            .and(form())
            .and_then(license::reset_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("licenses" / String / "upgrade"))
            .and_then(license::upgrade_get))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("licenses" / String / "upgrade"))
            .and(form())
            .and_then(license::upgrade_post))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("licenses" / String / "renew"))
            .and(form())
            .and_then(license::renew))
        .unify()
        .boxed();

    let account_routes = get
        .clone()
        .and(warp::path::end())
        .and_then(auth::home)
        .or(get
            .clone()
            .and(warp::path!("login"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(auth::login_page))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("login"))
            .and(form())
            .and_then(auth::login_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("register"))
            .and_then(auth::register_page))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("register"))
            .and(form())
            .and_then(auth::register_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("verify"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(auth::verify))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("verify" / "resend"))
            .and(form())
            .and_then(auth::resend_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("password" / "forgot"))
            .and_then(auth::forgot_page))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("password" / "forgot"))
            .and(form())
            .and_then(auth::forgot_post))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("password" / "reset"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(auth::reset_page))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("password" / "reset"))
            .and(form())
            .and_then(auth::reset_post))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("logout"))
            .and(form())
            .and_then(auth::logout))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("lang" / String))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(auth::switch_lang))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("imprint"))
            .and_then(auth::imprint))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("privacy"))
            .and_then(auth::privacy))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("licenses"))
            .and_then(auth::licenses))
        .unify()
        .boxed();

    let admin_routes = get
        .clone()
        .and(warp::path!("admin"))
        .and_then(admin::index)
        .or(post
            .clone()
            .and(warp::path!("admin" / "mail" / u64 / "retry"))
            .and(form())
            .and_then(admin::retry_mail))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("admin" / "orders" / String / u32 / "paid"))
            .and(form())
            .and_then(admin::mark_paid))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("admin" / "licenses"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(admin::licenses))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("admin" / "licenses" / String))
            .and_then(admin::license))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("admin" / "licenses" / String / "dongle"))
            .and(form())
            .and_then(admin::set_dongle))
        .unify()
        .or(get
            .clone()
            .and(warp::path!("admin" / "customers"))
            .and(warp::query::<HashMap<String, String>>())
            .and_then(admin::customers))
        .unify()
        .or(post
            .clone()
            .and(warp::path!("admin" / "customers" / u64 / "trusted"))
            .and(form())
            .and_then(admin::set_trusted))
        .unify()
        .boxed();

    // GET only: a POST that failed (bad form, body too large) must reach the
    // rejection handler with its real reason, not become a 404.
    let fallback = warp::get()
        .and(w.clone())
        .and(c.clone())
        .and_then(not_found)
        .boxed();

    static_files
        .or(account_routes)
        .unify()
        .or(shop_routes)
        .unify()
        .or(license_routes)
        .unify()
        .or(admin_routes)
        .unify()
        .or(fallback)
        .unify()
        .recover(move |rej: Rejection| {
            let web = web.clone();
            async move { Ok::<_, Infallible>(rejection_page(&web, rej)) }
        })
        .unify()
        .map(with_security_headers)
}

async fn not_found(web: Arc<Web>, ctx: Ctx) -> Resp {
    Ok(pages::message(
        &web,
        &ctx,
        StatusCode::NOT_FOUND,
        ctx.lang.t().not_found_title,
        ctx.lang.t().not_found_text,
    ))
}

/// Pages for requests that matched no route cleanly (bad form bodies, oversize
/// bodies, wrong methods): a clear page, never a bare warp message.
fn rejection_page(web: &Web, rej: Rejection) -> Response<Body> {
    let status = if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() || rej.is_not_found() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    let ctx = Ctx {
        lang: Lang::De,
        session: None,
        account: None,
        anon: session::random_id(),
        anon_is_new: false,
        client: String::new(),
        path: String::new(),
        path_and_query: String::new(),
    };
    let t = ctx.lang.t();
    let (title, text) = match status {
        StatusCode::NOT_FOUND => (t.not_found_title, t.not_found_text),
        _ => (t.forbidden_title, t.err_csrf),
    };
    pages::message(web, &ctx, status, title, text)
}

/// Starts the HTTP listener; returns its address and a task that ends after
/// `shutdown` resolves and open requests finish.
pub fn serve(
    web: Arc<Web>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), warp::Error> {
    let addr = web.cfg.listen;
    let (bound, server) =
        warp::serve(routes(web)).try_bind_with_graceful_shutdown(addr, shutdown)?;
    Ok((bound, tokio::spawn(server)))
}

/// The portal's HTTP listener, bound but not yet serving (so the server can report
/// the real port before it starts).
pub struct HttpListener {
    pub addr: SocketAddr,
    server: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpListener {
    /// Binds `web.cfg.listen`.
    pub fn bind(web: Arc<Web>) -> Result<Self, warp::Error> {
        let metrics = Arc::clone(&web.metrics);
        let counted = routes(web.clone()).with(warp::log::custom(move |info| {
            metrics.http_request(
                info.method().as_str(),
                info.path(),
                info.status().as_u16(),
                info.elapsed(),
            )
        }));
        Self::serve_on(web.cfg.listen, counted)
    }

    /// Binds the metrics listener: `GET /metrics` in the OpenMetrics text format,
    /// with the stored-state gauges read at each scrape. Nothing else is served.
    pub fn bind_metrics(listen: SocketAddr, web: Arc<Web>) -> Result<Self, warp::Error> {
        let scrape = warp::get().and(warp::path!("metrics")).then(move || {
            let web = Arc::clone(&web);
            async move {
                let text = tokio::task::spawn_blocking(move || {
                    web.metrics.render(crate::metrics::Snapshot {
                        store_bytes: web.store.size_on_disk(),
                        licenses: gauge(web.store.license_count()),
                        accounts: gauge(web.store.account_count()),
                        email_queue: web.mailer.queue_len() as u64,
                        email_failing: web.mailer.failing().len() as u64,
                    })
                })
                .await
                .unwrap_or_default();
                warp::reply::with_header(text, header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
            }
        });
        let not_found = warp::any().map(|| StatusCode::NOT_FOUND);
        Self::serve_on(listen, scrape.or(not_found))
    }

    /// Binds `listen` for `filter`, to be served by [`HttpListener::spawn`].
    fn serve_on<F>(listen: SocketAddr, filter: F) -> Result<Self, warp::Error>
    where
        F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
        F::Extract: Reply,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) =
            warp::serve(filter).try_bind_with_graceful_shutdown(listen, async move {
                let _ = stopped.await;
            })?;
        Ok(HttpListener {
            addr,
            server: Box::pin(server),
            stop,
        })
    }

    /// Serves until the returned sender is used or dropped; the task ends once open
    /// requests are answered.
    pub fn spawn(
        self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        (self.stop, tokio::spawn(self.server))
    }
}

/// A count for a metrics gauge; a store error is logged (the scrape still
/// answers, with 0 and the error in the log).
fn gauge(count: Result<usize, StoreError>) -> u64 {
    count.map_or_else(
        |e| {
            tracing::error!(error = %e, "cannot count for the metrics");
            0
        },
        |n| n as u64,
    )
}
