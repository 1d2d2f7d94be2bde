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
pub mod answers;
pub mod auth;
pub mod emails;
pub mod i18n;
pub mod input;
pub mod license;
pub mod pages;
pub mod password;
pub mod session;
pub mod shop;
pub mod throttle;
pub mod tokens;
pub mod views;

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
    /// What a daemon needs to reach this server, shown on the license page and
    /// offered as `promos-licd.toml` (none: a portal without a QUIC endpoint,
    /// as in some tests; the page then leaves the section out).
    pub daemon: Option<Arc<crate::daemon_config::DaemonSettings>>,
    /// `[licensing] hardware_tolerance`, for answers to request files
    /// uploaded here ([`Web::daemon_service`]).
    pub hardware_tolerance: u32,
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
            throttle: Throttle::new(Arc::clone(&store)),
            store,
            clock,
            mailer,
            cfg,
            key,
            prices: Arc::new(PriceList::embedded()),
            metrics: Arc::new(Metrics::new()),
            daemon: None,
            hardware_tolerance: crate::hardware::DEFAULT_TOLERANCE,
        })
    }

    /// `[licensing] hardware_tolerance` for the answers to uploaded request files.
    pub fn with_hardware_tolerance(mut self, tolerance: u32) -> Self {
        self.hardware_tolerance = tolerance;
        self
    }

    /// The daemon-facing service for a request file uploaded here: the same
    /// rules as the server's own (hardware tolerance, and the "Hardware
    /// geändert" email queued with a move), no activation rate limit (the
    /// upload is behind a login).
    pub fn daemon_service(self: &Arc<Self>) -> crate::service::Service {
        crate::service::Service::new(
            Arc::clone(&self.store),
            Arc::clone(&self.key),
            Arc::clone(&self.clock),
            u32::MAX,
        )
        .with_hardware_tolerance(self.hardware_tolerance)
        .with_hardware_change_hook(emails::hardware_change_hook(self))
    }

    /// The daemon settings the license page shows (the server's, see [`crate::Server`]).
    pub fn with_daemon_settings(mut self, settings: crate::daemon_config::DaemonSettings) -> Self {
        self.daemon = Some(Arc::new(settings));
        self
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
    /// every few minutes and tests call it with a simulated clock. Of several
    /// servers on one database one does it at a time; the others skip the round.
    pub fn housekeeping(&self) -> Result<(), String> {
        let ran = self
            .store
            .exclusively(crate::store::db::HOUSEKEEPING_LOCK, || {
                let now = self.clock.now();
                let expired = self.store.expire_quotes(now).map_err(|e| e.to_string())?;
                if expired > 0 {
                    tracing::info!(expired, "quotes expired");
                }
                license::send_due_reminders(self, now)
            })
            .map_err(|e| e.to_string())?;
        match ran {
            Some(result) => result,
            None => {
                tracing::debug!("housekeeping skipped: another server is doing it");
                Ok(())
            }
        }
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

/// A submitted form: field name to value, in the order sent. A field sent more
/// than once keeps its first value and is listed by [`Form::repeated`], so a
/// handler that validates the whole form can refuse it.
#[derive(Clone, Debug, Default)]
pub struct Form {
    fields: HashMap<String, String>,
    order: Vec<String>,
    repeated: Vec<String>,
}

impl Form {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = Form::default();
        for (k, v) in pairs {
            match form.fields.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    if !form.repeated.contains(e.key()) {
                        form.repeated.push(e.key().clone());
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    form.order.push(e.key().clone());
                    e.insert(v);
                }
            }
        }
        form
    }
    /// The field's value, trimmed; "" if missing.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(|s| s.trim()).unwrap_or("")
    }
    /// The field's raw value (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> &str {
        self.fields.get(name).map(|s| s.as_str()).unwrap_or("")
    }
    pub fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }
    /// Every field name, in the order first sent.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
    /// Every (name, raw value), in the order first sent.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order.iter().map(|k| {
            (
                k.as_str(),
                self.fields.get(k).map(String::as_str).unwrap_or(""),
            )
        })
    }
    /// The names sent more than once.
    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }
    /// True if no field was sent.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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
        .and_then(
            move |cookie: Option<String>,
                  accept: Option<String>,
                  xff: Option<String>,
                  remote: Option<SocketAddr>,
                  path: warp::path::FullPath,
                  query: String| {
                let web = Arc::clone(&web);
                async move {
                    // The session and account lookups read the store: on a
                    // blocking thread, like the handlers.
                    // A lookup that met an unavailable database and went on
                    // without its value (the account's language) fails the
                    // context too: the page would be built on a guess.
                    let built = in_turn(move || {
                        crate::store::take_thread_marks();
                        let ctx = build_ctx(&web, cookie, accept, xff, remote, path, query)?;
                        if crate::store::take_thread_marks().unavailable {
                            return Err(StoreError::Unavailable(
                                "a lookup for the request context".into(),
                            ));
                        }
                        Ok(ctx)
                    })
                    .await;
                    match built {
                        Ok(Ok(ctx)) => Ok(ctx),
                        // The session cannot be read: answer "try again", never
                        // "logged out".
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot read the session");
                            Err(warp::reject::custom(StoreUnavailable))
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "building the request context failed");
                            Err(warp::reject::reject())
                        }
                    }
                }
            },
        )
}

/// The store could not be read to build a request's context.
#[derive(Debug)]
struct StoreUnavailable;
impl warp::reject::Reject for StoreUnavailable {}

/// The request context of one request (see [`ctx`]).
fn build_ctx(
    web: &Web,
    cookie: Option<String>,
    accept: Option<String>,
    xff: Option<String>,
    remote: Option<SocketAddr>,
    path: warp::path::FullPath,
    query: String,
) -> Result<Ctx, StoreError> {
    let now = web.clock.now();
    let cookie = cookie.as_deref();
    // The session, its account and the account's language: one statement.
    let (session, account, lang_pref) = match session::read_cookie(cookie, session::SESSION_COOKIE)
    {
        Some(id) => match web.sessions.lookup_with_account(id, now)? {
            Some((s, a, l)) => (Some(s), a, l),
            None => (None, None, None),
        },
        None => (None, None, None),
    };
    let lang = session::read_cookie(cookie, session::LANG_COOKIE)
        .and_then(Lang::from_code)
        .or_else(|| lang_pref.as_deref().and_then(Lang::from_code))
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
    Ok(Ctx {
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
    })
}

/// The largest form body read. A form's own fields are far smaller (the longest,
/// the remarks, is 2,000 characters), but a body up to this size is read so that
/// an overlong field can be named in the answer ([`input::MAX_FIELD_CHARS`]);
/// beyond it the body is refused unread (413) and no field can be named.
const FORM_LIMIT: u64 = 1024 * 1024;

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

/// A 303 redirect (after a POST) with optional cookies. Every redirect of the
/// portal passes here, and only to a [`input::local_path`]: anything else goes to
/// `/` (and is logged, since our own targets are always local).
pub fn redirect(to: &str, cookies: &[String]) -> Response<Body> {
    let to = input::local_path(to).unwrap_or_else(|| {
        tracing::error!(
            target_len = to.len(),
            "redirect to a non-local target refused"
        );
        "/"
    });
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to);
    for c in cookies {
        b = b.header(header::SET_COOKIE, c);
    }
    b.body(Body::empty()).unwrap_or_default()
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

/// A GET page's handler with what the path and query gave it, waiting for the
/// request's context.
type Page = Box<dyn FnOnce(Arc<Web>, Ctx) -> Resp + Send>;

/// A GET route's [`Page`]: `page!(license::page; x, y)` names the handler and
/// the values the route's filter extracts (passed after the web and context).
macro_rules! page {
    ($f:path) => {
        || -> Page { Box::new(move |web, ctx| $f(web, ctx)) }
    };
    ($f:path; $($a:ident),+) => {
        |$($a),+| -> Page { Box::new(move |web, ctx| $f(web, ctx, $($a),+)) }
    };
}

/// Runs `f` on tokio's blocking pool when it is its turn: at most
/// [`store_turns`] portal requests do their store work at once, the others wait
/// in arrival order. Without the turns, 32 concurrent requests were 32 blocking
/// threads sharing two cores: each request took as long as all of them, and the
/// threads' switches and lock waits were a fifth of the CPU time
/// (BENCHMARKS.md, "Issue 14", "the portal's store work in turns").
async fn in_turn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let _turn = store_turns().acquire().await;
    tokio::task::spawn_blocking(f).await
}

/// How many portal requests do their store work at once: twice the cores the
/// process may use (a request waiting for a disk flush leaves its core to
/// another), and never fewer than 4.
fn store_turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::sync::Semaphore::new((2 * cores).max(4))
    })
}

/// Runs `f` on tokio's blocking pool: the one boundary between warp's async
/// workers and the store. Every handler is a plain function (store calls,
/// argon2), and none of that ever runs on an async worker. A handler that panicked answers 500 (the
/// panic is logged), as an async handler's panic would have ended the request.
pub(crate) async fn on_blocking_thread(f: impl FnOnce() -> Resp + Send + 'static) -> Resp {
    match in_turn(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "a portal handler failed");
            Ok(
                warp::reply::with_status("internal error", StatusCode::INTERNAL_SERVER_ERROR)
                    .into_response(),
            )
        }
    }
}

/// Runs a page's or form's handler (on the blocking thread it runs on). A
/// handler that found the database unavailable and changed nothing answers 503
/// ([`pages::try_again`]: "nothing was changed, try again"), also where it went
/// on without what it could not read: a license it could not load would
/// otherwise be "not found", a status it could not read "stopped". During a
/// restart or failover of the database the answer is "try again", never a
/// wrong page. A handler that did write keeps its own answer (it tells what
/// was done).
fn unless_unavailable(
    web: Arc<Web>,
    ctx: Ctx,
    handler: impl FnOnce(Arc<Web>, Ctx) -> Resp,
) -> Resp {
    crate::store::take_thread_marks();
    let answer = handler(Arc::clone(&web), ctx.clone());
    let marks = crate::store::take_thread_marks();
    match answer {
        Ok(r)
            if marks.unavailable
                && !marks.wrote
                && r.status() != StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::warn!(status = %r.status(), path = %ctx.path, "the handler met an unavailable database: answering 503 instead");
            Ok(pages::try_again(&web, &ctx))
        }
        answer => answer,
    }
}

/// Every route of the portal.
pub fn routes(
    web: Arc<Web>,
) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone {
    let w = warp::any().map({
        let web = web.clone();
        move || web.clone()
    });
    let c = ctx(web.clone());
    // Every POST: the route, then the form, then one dispatch that checks the
    // field sizes and the CSRF token before any handler runs.
    let posts = warp::post()
        .and(post_route())
        .and(w.clone())
        .and(c.clone())
        .and(form())
        .and_then(|route: PostRoute, web, ctx, form| async move {
            on_blocking_thread(move || {
                unless_unavailable(web, ctx, move |web, ctx| {
                    dispatch_post(route, web, ctx, form)
                })
            })
            .await
        })
        .boxed();

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
        .or(warp::get()
            .and(warp::path!("static" / "license.js"))
            .map(|| {
                warp::reply::with_header(
                    pages::LICENSE_JS,
                    "content-type",
                    "text/javascript; charset=utf-8",
                )
                .into_response()
            }))
        .unify()
        .boxed();

    let account_pages = warp::path::end()
        .map(page!(auth::home))
        .or(warp::path!("login")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(auth::login_page; x)))
        .unify()
        .or(warp::path!("register").map(page!(auth::register_page)))
        .unify()
        .or(warp::path!("verify")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(auth::verify; x)))
        .unify()
        .or(warp::path!("password" / "forgot").map(page!(auth::forgot_page)))
        .unify()
        .or(warp::path!("password" / "reset")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(auth::reset_page; x)))
        .unify()
        .or(warp::path!("lang" / String)
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(auth::switch_lang; x, y)))
        .unify()
        .or(warp::path!("imprint").map(page!(auth::imprint)))
        .unify()
        .or(warp::path!("privacy").map(page!(auth::privacy)))
        .unify()
        .or(warp::path!("licenses")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(auth::licenses; x)))
        .unify()
        .boxed();

    let shop_pages = warp::path!("quote")
        .map(page!(shop::choose))
        .or(warp::path!("quote" / String).map(page!(shop::form_get; x)))
        .unify()
        .or(warp::path!("api" / "price")
            .and(warp::query::<Vec<(String, String)>>())
            .map(page!(shop::price_api; x)))
        .unify()
        .or(warp::path!("quotes")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(shop::quotes; x)))
        .unify()
        .or(warp::path!("quotes" / String / u32).map(page!(shop::quote_show; x, y)))
        .unify()
        .boxed();

    let license_pages = warp::path!("licenses" / String)
        .and(warp::query::<HashMap<String, String>>())
        .map(page!(license::page; x, y))
        .or(warp::path!("licenses" / String / "edit").map(page!(license::edit_get; x)))
        .unify()
        .or(warp::path!("licenses" / String / "download").map(page!(license::download; x)))
        .unify()
        .or(warp::path!("licenses" / String / "promos-licd.toml")
            .map(page!(license::daemon_config; x)))
        .unify()
        .or(warp::path!("licenses" / String / "offline").map(page!(license::offline_get; x)))
        .unify()
        .or(warp::path!("licenses" / String / "reset").map(page!(license::reset_get; x)))
        .unify()
        .or(warp::path!("licenses" / String / "upgrade").map(page!(license::upgrade_get; x)))
        .unify()
        .boxed();

    let admin_pages = warp::path!("admin")
        .map(page!(admin::index))
        .or(warp::path!("admin" / "orders" / String / u32 / "paid")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(admin::paid_page; x, y, z)))
        .unify()
        .or(warp::path!("admin" / "licenses")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(admin::licenses; x)))
        .unify()
        .or(warp::path!("admin" / "licenses" / String).map(page!(admin::license; x)))
        .unify()
        .or(warp::path!("admin" / "customers")
            .and(warp::query::<HashMap<String, String>>())
            .map(page!(admin::customers; x)))
        .unify()
        .boxed();

    // Every GET page: the path and query pick the handler (or the 404 page)
    // first, and only then is the request's context built, once. A context that
    // cannot be read (the database away) is the request's answer, 503; no other
    // route is tried (one that read it a moment later would answer 404 for a
    // page that exists).
    let pages = warp::get()
        .and(
            account_pages
                .or(shop_pages)
                .unify()
                .or(license_pages)
                .unify()
                .or(admin_pages)
                .unify()
                .or(warp::any().map(page!(not_found)))
                .unify(),
        )
        .and(w.clone())
        .and(c.clone())
        .and_then(|page: Page, web, ctx| async move {
            on_blocking_thread(move || unless_unavailable(web, ctx, page)).await
        })
        .boxed();

    static_files
        .or(posts)
        .unify()
        .or(pages)
        .unify()
        .recover(move |rej: Rejection| {
            let web = web.clone();
            async move { Ok::<_, Infallible>(rejection_page(&web, rej)) }
        })
        .unify()
        .map(with_security_headers)
}

/// Every POST route of the portal. They all pass [`dispatch_post`], which checks
/// the form once for every one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostRoute {
    Login,
    Register,
    VerifyResend,
    PasswordForgot,
    PasswordReset,
    Logout,
    Quote(String),
    QuoteOrder(String, u32),
    QuoteDelete(String, u32),
    LicenseEdit(String),
    LicenseReset(String),
    LicenseUpgrade(String),
    LicenseRenew(String),
    LicenseOffline(String),
    AdminMailRetry(u64),
    AdminMarkPaid(String, u32),
    AdminDongle(String),
    AdminTrusted(u64),
}

impl PostRoute {
    /// The field names the route's form has besides `csrf`; `None` where the
    /// handler checks the names itself and shows the errors in its form (the
    /// order and upgrade forms).
    fn fields(&self) -> Option<&'static [&'static str]> {
        use PostRoute as P;
        Some(match self {
            P::Quote(_) | P::LicenseUpgrade(_) => return None,
            P::Login => &["email", "password", "remember", "next"],
            P::Register => &[
                "email",
                "password",
                "password2",
                "company",
                "first_name",
                "last_name",
            ],
            P::VerifyResend | P::PasswordForgot => &["email"],
            P::PasswordReset => &["token", "password", "password2"],
            P::LicenseEdit(_) => &["data_name", "data_postcode", "data_city"],
            P::LicenseOffline(_) => &["request"],
            P::AdminMarkPaid(..) => &["back"],
            P::AdminDongle(_) => &["serial"],
            P::AdminTrusted(_) => &["trusted", "back"],
            P::Logout
            | P::QuoteOrder(..)
            | P::QuoteDelete(..)
            | P::LicenseReset(_)
            | P::LicenseRenew(_)
            | P::AdminMailRetry(_) => &[],
        })
    }
}

/// Matches the path of a POST to its [`PostRoute`].
fn post_route() -> impl Filter<Extract = (PostRoute,), Error = Rejection> + Clone {
    use PostRoute as P;
    let fixed = |route: P| move || route.clone();
    warp::path!("login")
        .map(fixed(P::Login))
        .or(warp::path!("register").map(fixed(P::Register)))
        .unify()
        .or(warp::path!("verify" / "resend").map(fixed(P::VerifyResend)))
        .unify()
        .or(warp::path!("password" / "forgot").map(fixed(P::PasswordForgot)))
        .unify()
        .or(warp::path!("password" / "reset").map(fixed(P::PasswordReset)))
        .unify()
        .or(warp::path!("logout").map(fixed(P::Logout)))
        .unify()
        .or(warp::path!("quote" / String).map(P::Quote))
        .unify()
        .or(warp::path!("quotes" / String / u32 / "order").map(P::QuoteOrder))
        .unify()
        .or(warp::path!("quotes" / String / u32 / "delete").map(P::QuoteDelete))
        .unify()
        .or(warp::path!("licenses" / String / "edit").map(P::LicenseEdit))
        .unify()
        .or(warp::path!("licenses" / String / "reset").map(P::LicenseReset))
        .unify()
        .or(warp::path!("licenses" / String / "upgrade").map(P::LicenseUpgrade))
        .unify()
        .or(warp::path!("licenses" / String / "renew").map(P::LicenseRenew))
        .unify()
        .or(warp::path!("licenses" / String / "offline").map(P::LicenseOffline))
        .unify()
        .or(warp::path!("admin" / "mail" / u64 / "retry").map(P::AdminMailRetry))
        .unify()
        .or(warp::path!("admin" / "orders" / String / u32 / "paid").map(P::AdminMarkPaid))
        .unify()
        .or(warp::path!("admin" / "licenses" / String / "dongle").map(P::AdminDongle))
        .unify()
        .or(warp::path!("admin" / "customers" / u64 / "trusted").map(P::AdminTrusted))
        .unify()
}

/// The one gate of every POST: a field longer than any form has is refused with
/// 413 naming it, a missing, foreign or stale CSRF token with 403; only then
/// does the route's handler see the form.
fn dispatch_post(route: PostRoute, web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    use PostRoute as P;
    if let Some(field) = input::overlong_field(form.fields()) {
        return Ok(pages::too_long(&web, &ctx, Some(field)));
    }
    if !ctx.csrf_ok(&web, &form) {
        return Ok(shop::csrf_refused(&web, &ctx));
    }
    if let Some(allowed) = route.fields() {
        let unknown = form
            .repeated()
            .first()
            .map(String::as_str)
            .or_else(|| form.names().find(|n| *n != "csrf" && !allowed.contains(n)));
        if let Some(name) = unknown {
            return Ok(pages::unknown_field(&web, &ctx, name));
        }
    }
    match route {
        P::Login => auth::login_post(web, ctx, form),
        P::Register => auth::register_post(web, ctx, form),
        P::VerifyResend => auth::resend_post(web, ctx, form),
        P::PasswordForgot => auth::forgot_post(web, ctx, form),
        P::PasswordReset => auth::reset_post(web, ctx, form),
        P::Logout => auth::logout(web, ctx),
        P::Quote(kind) => shop::form_post(web, ctx, kind, form),
        P::QuoteOrder(number, n) => shop::quote_order(web, ctx, number, n),
        P::QuoteDelete(number, n) => shop::quote_delete(web, ctx, number, n),
        P::LicenseEdit(number) => license::edit_post(web, ctx, number, form),
        P::LicenseReset(number) => license::reset_post(web, ctx, number),
        P::LicenseUpgrade(number) => license::upgrade_post(web, ctx, number, form),
        P::LicenseRenew(number) => license::renew(web, ctx, number),
        P::LicenseOffline(number) => license::offline_post(web, ctx, number, form),
        P::AdminMailRetry(id) => admin::retry_mail(web, ctx, id),
        P::AdminMarkPaid(number, n) => admin::mark_paid(web, ctx, number, n, form),
        P::AdminDongle(number) => admin::set_dongle(web, ctx, number, form),
        P::AdminTrusted(id) => admin::set_trusted(web, ctx, id, form),
    }
}

fn not_found(web: Arc<Web>, ctx: Ctx) -> Resp {
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
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return pages::too_long(web, &ctx, None);
    }
    if rej.find::<StoreUnavailable>().is_some() {
        return pages::try_again(web, &ctx);
    }
    let t = ctx.lang.t();
    let (title, text) = match status {
        StatusCode::NOT_FOUND => (t.not_found_title, t.not_found_text),
        _ => (t.error_title, t.err_unreadable_form),
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
