//! Account pages: login, registration, email verification, password reset,
//! logout, language switch, the license list landing page, imprint and privacy.

use super::answers::{internal_error, login_first};
use super::pages::{
    self, Chrome, ForgotPage, LicenseRow, LicensesPage, LoginPage, RegisterErrors, RegisterPage,
    RegisterValues, ResetPage,
};
use super::session::{self, cookie, expired_cookie};
use super::tokens::{Purpose, TokenCheck};
use super::{i18n::Lang, input, password, redirect, Ctx, Form, Web};
use crate::domain::{normalize_email, Account, Actor, NewAccount};
use crate::mail::Email;
use askama::Template;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

type Resp = Result<Response<Body>, Infallible>;

/// Longest accepted name-like field; longer input is a field error, not truncated.
const MAX_FIELD: usize = 200;

pub fn valid_email(e: &str) -> bool {
    e.len() <= 254 && e.parse::<lettre::Address>().is_ok()
}

pub fn home(_web: Arc<Web>, ctx: Ctx) -> Resp {
    Ok(redirect(
        match (&ctx.session, &ctx.account) {
            (Some(_), Some(a)) => landing(a),
            (Some(_), None) => "/licenses",
            (None, _) => "/login",
        },
        &[],
    ))
}

/// Where a login without a `next` lands: vendor admins on the administration
/// page, customers on their licenses.
pub fn landing(account: &Account) -> &'static str {
    if account.admin {
        "/admin"
    } else {
        "/licenses"
    }
}

fn login_page_with(
    web: &Web,
    ctx: &Ctx,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<String>,
    unverified: bool,
) -> Response<Body> {
    let page = LoginPage {
        c: Chrome::new(web, ctx, ctx.lang.t().login),
        email: email.to_owned(),
        next: next.to_owned(),
        error,
        notice: None,
        unverified,
    };
    pages::render(web, ctx, status, &page)
}

/// The login form. `?next=/path` (a local path only) is where a successful
/// login continues, so links from emails work for visitors who are logged out.
pub fn login_page(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    let next = input::redirect_target(q.get("next").map(String::as_str).unwrap_or(""), "");
    if ctx.session.is_some() {
        let home = ctx.account.as_ref().map_or("/licenses", landing);
        return Ok(redirect(input::redirect_target(next, home), &[]));
    }
    Ok(login_page_with(
        &web,
        &ctx,
        StatusCode::OK,
        "",
        next,
        None,
        false,
    ))
}

pub fn login_post(web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    let t = ctx.lang.t();
    let email = normalize_email(form.get("email"));
    let next = input::redirect_target(form.raw("next"), "/licenses").to_owned();
    let now = web.clock.now();
    let blocked = match web.throttle.blocked_for(&email, &ctx.client, now) {
        Ok(b) => b,
        Err(e) => return Ok(internal_error(&web, &ctx, "login throttle", e)),
    };
    if let Some(wait) = blocked {
        let minutes = wait.div_ceil(60).max(1);
        let msg = t.err_throttled.replace("{minutes}", &minutes.to_string());
        return Ok(login_page_with(
            &web,
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            &next,
            Some(msg),
            false,
        ));
    }
    let account = match web.store.account_by_email(&email) {
        Ok(a) => a,
        Err(e) => return Ok(internal_error(&web, &ctx, "account lookup", e)),
    };
    let pw = form.raw("password").to_owned();
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    // argon2 is deliberately slow: handlers run on blocking threads (see
    // `web::on_blocking_thread`), never on the async workers.
    let ok = match hash {
        Some(h) => password::verify(&pw, &h),
        None => {
            password::verify(&pw, password::dummy_hash());
            false
        }
    };
    let Some(account) = account.filter(|_| ok) else {
        web.throttle.record_failure(&email, &ctx.client, now);
        tracing::info!(client = %ctx.client, "login failed");
        return Ok(login_page_with(
            &web,
            &ctx,
            StatusCode::UNAUTHORIZED,
            &email,
            &next,
            Some(t.err_login.into()),
            false,
        ));
    };
    if !account.email_verified {
        return Ok(login_page_with(
            &web,
            &ctx,
            StatusCode::FORBIDDEN,
            &email,
            &next,
            Some(t.err_unverified.into()),
            true,
        ));
    }
    web.throttle.record_success(&email);
    let remember = form.get("remember") == "1";
    let (s, max_age) = match web.sessions.create(account.id, remember, now) {
        Ok(s) => s,
        Err(e) => return Ok(internal_error(&web, &ctx, "session", e)),
    };
    // Remember the language the customer logged in with, unless they chose one before.
    if web.lang_pref(account.id).is_none() {
        let _ = web.set_lang_pref(account.id, ctx.lang);
    }
    tracing::info!(account = %account.id, remember, "login");
    let secure = web.secure_cookies();
    // No `next` given: the account's landing page (admins: the administration).
    let to = if form.get("next").is_empty() {
        landing(&account)
    } else {
        next.as_str()
    };
    Ok(redirect(
        to,
        &[cookie(session::SESSION_COOKIE, &s.id, max_age, secure)],
    ))
}

pub fn register_page(web: Arc<Web>, ctx: Ctx) -> Resp {
    let page = RegisterPage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().registration),
        v: RegisterValues::default(),
        errors: RegisterErrors::default(),
        general_error: None,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

fn required(t: &super::i18n::Texts, v: &str) -> Option<String> {
    if v.is_empty() {
        Some(t.err_required.into())
    } else if v.chars().count() > MAX_FIELD {
        Some(t.err_too_long.into())
    } else {
        None
    }
}

/// Sends an email with a single-use link (address verification or password
/// reset) in the customer's language.
fn send_link_email(
    web: &Web,
    account: &Account,
    lang: Lang,
    purpose: Purpose,
) -> Result<(), String> {
    let now = web.clock.now();
    let (token, until) = web
        .tokens
        .issue(purpose, account.id, now)
        .map_err(|e| e.to_string())?;
    let reset = purpose == Purpose::Reset;
    let path = if reset { "/password/reset" } else { "/verify" };
    let link = web.link(&format!("{path}?token={token}"));
    let until = pages::email_time(until, lang);
    let name = format!("{} {}", account.first_name, account.last_name);
    let de = lang.is_de();
    let (name, link, until) = (name.as_str(), link.as_str(), until.as_str());
    let text = pages::LinkEmailText {
        reset,
        de,
        name,
        link,
        until,
    }
    .render()
    .map_err(|e| e.to_string())?;
    let html = pages::LinkEmailHtml {
        reset,
        de,
        name,
        link,
        until,
    }
    .render()
    .map_err(|e| e.to_string())?;
    let subject = match (reset, de) {
        (false, true) => "Bitte bestätigen Sie Ihre Email-Adresse",
        (false, false) => "Please confirm your email address",
        (true, true) => "Passwort zurücksetzen",
        (true, false) => "Reset your password",
    };
    web.mailer
        .enqueue(Email {
            to: account.email.clone(),
            subject: subject.into(),
            text,
            html,
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The registration form's values and field errors (the password is checked,
/// never kept).
pub fn register_form(form: &Form, t: &super::i18n::Texts) -> (RegisterValues, RegisterErrors) {
    let v = RegisterValues {
        email: form.get("email").to_owned(),
        company: form.get("company").to_owned(),
        first_name: form.get("first_name").to_owned(),
        last_name: form.get("last_name").to_owned(),
    };
    let pw = form.raw("password");
    let errors = RegisterErrors {
        email: if v.email.is_empty() {
            Some(t.err_required.into())
        } else if !valid_email(&v.email) {
            Some(t.err_email.into())
        } else {
            None
        },
        password: if pw.is_empty() {
            Some(t.err_required.into())
        } else if !password::meets_rule(pw) {
            Some(t.err_password_rule.into())
        } else {
            None
        },
        password2: (pw != form.raw("password2")).then(|| t.err_password_mismatch.into()),
        company: required(t, &v.company),
        first_name: required(t, &v.first_name),
        last_name: required(t, &v.last_name),
    };
    (v, errors)
}

pub fn register_post(web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    let t = ctx.lang.t();
    let (v, mut errors) = register_form(&form, t);
    let pw = form.raw("password");
    let show = |web: &Web, ctx: &Ctx, v: RegisterValues, errors: RegisterErrors| {
        let page = RegisterPage {
            c: Chrome::new(web, ctx, t.registration),
            v,
            errors,
            general_error: None,
        };
        pages::render(web, ctx, StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    if errors.any() {
        return Ok(show(&web, &ctx, v, errors));
    }
    let hash = password::hash(pw);
    let new = NewAccount {
        email: normalize_email(&v.email),
        password_hash: Some(hash),
        company: v.company.clone(),
        first_name: v.first_name.clone(),
        last_name: v.last_name.clone(),
    };
    let now = web.clock.now();
    let account = match web.store.create_account(new, &Actor::System, now) {
        Ok(a) => a,
        Err(crate::store::AccountError::EmailTaken(_)) => {
            errors.email = Some(t.err_email_taken.into());
            return Ok(show(&web, &ctx, v, errors));
        }
        Err(e) => return Ok(internal_error(&web, &ctx, "registration", e)),
    };
    let _ = web.set_lang_pref(account.id, ctx.lang);
    if let Err(e) = send_link_email(&web, &account, ctx.lang, Purpose::Verify) {
        return Ok(internal_error(&web, &ctx, "verification email", e));
    }
    tracing::info!(account = %account.id, "registered");
    Ok(pages::message(
        &web,
        &ctx,
        StatusCode::OK,
        t.registered_title,
        t.registered_text,
    ))
}

pub fn verify(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    let t = ctx.lang.t();
    let token = q.get("token").map(|s| s.as_str()).unwrap_or("");
    let now = web.clock.now();
    match web.tokens.consume(Purpose::Verify, token, now) {
        Ok(TokenCheck::Valid(id)) => {
            if let Err(e) =
                web.store
                    .update_account(id, &Actor::Account(id), now, "email verified", |a| {
                        a.email_verified = true
                    })
            {
                return Ok(internal_error(&web, &ctx, "verification", e));
            }
            Ok(pages::message_with(
                &web,
                &ctx,
                StatusCode::OK,
                t.verified_title,
                vec![t.verified_text.into()],
                Some(("/login".into(), t.login.into())),
                false,
            ))
        }
        Ok(TokenCheck::Invalid) => {
            // Clicked again (or after another link verified the address): nothing
            // is wrong, say so and offer the login.
            let verified = web
                .tokens
                .account_of(Purpose::Verify, token)
                .ok()
                .flatten()
                .and_then(|id| web.store.account(id).ok().flatten())
                .is_some_and(|a| a.email_verified);
            if verified {
                return Ok(pages::message_with(
                    &web,
                    &ctx,
                    StatusCode::OK,
                    t.already_verified_title,
                    vec![t.already_verified_text.into()],
                    Some(("/login".into(), t.login.into())),
                    false,
                ));
            }
            Ok(pages::message_with(
                &web,
                &ctx,
                StatusCode::GONE,
                t.link_invalid_title,
                vec![t.link_invalid_text.into()],
                None,
                true,
            ))
        }
        Err(e) => Ok(internal_error(&web, &ctx, "verification", e)),
    }
}

/// Sends a new verification link. Same answer whether or not the account exists.
pub fn resend_post(web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    let t = ctx.lang.t();
    if let Ok(Some(a)) = web
        .store
        .account_by_email(&normalize_email(form.get("email")))
    {
        if !a.email_verified {
            let lang = web.lang_pref(a.id).unwrap_or(ctx.lang);
            if let Err(e) = send_link_email(&web, &a, lang, Purpose::Verify) {
                return Ok(internal_error(&web, &ctx, "verification email", e));
            }
        }
    }
    Ok(pages::message(
        &web,
        &ctx,
        StatusCode::OK,
        t.registered_title,
        t.resend_sent,
    ))
}

pub fn forgot_page(web: Arc<Web>, ctx: Ctx) -> Resp {
    let page = ForgotPage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().reset_password),
        notice: None,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

/// Sends a reset link. Same answer whether or not the account exists.
pub fn forgot_post(web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    let t = ctx.lang.t();
    if let Ok(Some(a)) = web
        .store
        .account_by_email(&normalize_email(form.get("email")))
    {
        let lang = web.lang_pref(a.id).unwrap_or(ctx.lang);
        let sent = send_link_email(&web, &a, lang, Purpose::Reset);
        if let Err(e) = sent {
            return Ok(internal_error(&web, &ctx, "reset email", e));
        }
    }
    let page = ForgotPage {
        c: Chrome::new(&web, &ctx, t.reset_password),
        notice: Some(t.reset_requested.into()),
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

fn invalid_link(web: &Web, ctx: &Ctx) -> Response<Body> {
    let t = ctx.lang.t();
    pages::message_with(
        web,
        ctx,
        StatusCode::GONE,
        t.link_invalid_title,
        vec![t.link_invalid_text.into()],
        Some(("/password/forgot".into(), t.reset_password.into())),
        false,
    )
}

pub fn reset_page(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    let token = q.get("token").cloned().unwrap_or_default();
    match web.tokens.peek(Purpose::Reset, &token, web.clock.now()) {
        Ok(TokenCheck::Valid(_)) => {
            let page = ResetPage {
                c: Chrome::new(&web, &ctx, ctx.lang.t().reset_password),
                token,
                errors: RegisterErrors::default(),
            };
            Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
        }
        Ok(TokenCheck::Invalid) => Ok(invalid_link(&web, &ctx)),
        Err(e) => Ok(internal_error(&web, &ctx, "reset", e)),
    }
}

pub fn reset_post(web: Arc<Web>, ctx: Ctx, form: Form) -> Resp {
    let t = ctx.lang.t();
    let token = form.get("token").to_owned();
    let pw = form.raw("password").to_owned();
    let errors = RegisterErrors {
        password: (!password::meets_rule(&pw)).then(|| t.err_password_rule.into()),
        password2: (pw != form.raw("password2")).then(|| t.err_password_mismatch.into()),
        ..Default::default()
    };
    let now = web.clock.now();
    if errors.any() {
        if !matches!(
            web.tokens.peek(Purpose::Reset, &token, now),
            Ok(TokenCheck::Valid(_))
        ) {
            return Ok(invalid_link(&web, &ctx));
        }
        let page = ResetPage {
            c: Chrome::new(&web, &ctx, t.reset_password),
            token,
            errors,
        };
        return Ok(pages::render(
            &web,
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            &page,
        ));
    }
    let id = match web.tokens.consume(Purpose::Reset, &token, now) {
        Ok(TokenCheck::Valid(id)) => id,
        Ok(TokenCheck::Invalid) => return Ok(invalid_link(&web, &ctx)),
        Err(e) => return Ok(internal_error(&web, &ctx, "reset", e)),
    };
    let hash = password::hash(&pw);
    // A reset link proves control of the mailbox, so it also verifies the address.
    if let Err(e) = web
        .store
        .update_account(id, &Actor::Account(id), now, "password reset", |a| {
            a.password_hash = Some(hash.clone());
            a.email_verified = true;
        })
    {
        return Ok(internal_error(&web, &ctx, "reset", e));
    }
    // The new password ends every other reset link still outstanding.
    let links_ended = match web.tokens.revoke_all(Purpose::Reset, id) {
        Ok(n) => n,
        Err(e) => return Ok(internal_error(&web, &ctx, "reset", e)),
    };
    let ended = web.sessions.remove_all(id).unwrap_or(0);
    tracing::info!(account = %id, sessions_ended = ended, links_ended, "password reset");
    let secure = web.secure_cookies();
    let mut resp = pages::message_with(
        &web,
        &ctx,
        StatusCode::OK,
        t.reset_password,
        vec![t.password_changed.into()],
        Some(("/login".into(), t.login.into())),
        false,
    );
    if let Ok(v) = expired_cookie(session::SESSION_COOKIE, secure).parse() {
        resp.headers_mut().append(warp::http::header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub fn logout(web: Arc<Web>, ctx: Ctx) -> Resp {
    if let Some(s) = &ctx.session {
        if let Err(e) = web.sessions.remove(&s.id) {
            return Ok(internal_error(&web, &ctx, "logout", e));
        }
    }
    Ok(redirect(
        "/login",
        &[expired_cookie(
            session::SESSION_COOKIE,
            web.secure_cookies(),
        )],
    ))
}

pub fn switch_lang(web: Arc<Web>, ctx: Ctx, code: String, q: HashMap<String, String>) -> Resp {
    let Some(lang) = Lang::from_code(&code) else {
        let t = ctx.lang.t();
        return Ok(pages::message(
            &web,
            &ctx,
            StatusCode::NOT_FOUND,
            t.not_found_title,
            t.not_found_text,
        ));
    };
    if let Some(a) = &ctx.account {
        let _ = web.set_lang_pref(a.id, lang);
    }
    let back = input::redirect_target(q.get("back").map(String::as_str).unwrap_or(""), "/");
    // A year: the language choice is not sensitive.
    Ok(redirect(
        back,
        &[cookie(
            session::LANG_COOKIE,
            lang.code(),
            Some(365 * 24 * 3600),
            web.secure_cookies(),
        )],
    ))
}

pub fn imprint(web: Arc<Web>, ctx: Ctx) -> Resp {
    let t = ctx.lang.t();
    let lines = vec![
        "MST Systemtechnik AG".to_owned(),
        "Airport Business Center 60, CH - 3123 Belp".to_owned(),
        "Mail: info@mst.ch | Web: www.mst.ch".to_owned(),
    ];
    Ok(pages::message_with(
        &web,
        &ctx,
        StatusCode::OK,
        t.imprint,
        lines,
        None,
        false,
    ))
}

pub fn privacy(web: Arc<Web>, ctx: Ctx) -> Resp {
    let t = ctx.lang.t();
    let text = if ctx.lang.is_de() {
        vec![
            "Der ProMoS License Server speichert die Angaben Ihres Kontos (Email, Firma, Name), Ihre Angebote, Bestellungen und Lizenzen sowie die Hardware-ID und den Status der Rechner, auf denen Ihre Lizenzen laufen. Diese Daten dienen nur der Lizenzverwaltung.".to_owned(),
            "Cookies: ein Sitzungs-Cookie für die Anmeldung, ein Cookie zum Schutz der Formulare und ein Cookie für die gewählte Sprache. Es gibt keine Cookies für Werbung oder Statistik.".to_owned(),
        ]
    } else {
        vec![
            "The ProMoS License Server stores your account details (email, company, name), your quotes, orders and licenses, and the hardware ID and status of the computers your licenses run on. This data serves license management only.".to_owned(),
            "Cookies: a session cookie for the login, a cookie protecting the forms and a cookie for the chosen language. There are no advertising or tracking cookies.".to_owned(),
        ]
    };
    Ok(pages::message_with(
        &web,
        &ctx,
        StatusCode::OK,
        t.privacy,
        text,
        None,
        false,
    ))
}

/// The logged-in landing page: the customer's licenses, a page at a time
/// (`page`, 1-based; a license whose only mutations are quotes exists for its
/// number and becomes one of the customer's licenses once something was
/// ordered). One indexed store read per request, whatever the customer has
/// outside the page.
pub fn licenses(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    let Some(account) = &ctx.account else {
        return Ok(login_first(&ctx));
    };
    let de = ctx.lang.is_de();
    if let Some(field) = q.keys().find(|k| k.as_str() != "page") {
        return Ok(pages::bad_list_parameter(&web, &ctx, field));
    }
    let Some(page) = input::list_page(q.get("page").map(String::as_str)) else {
        return Ok(pages::bad_list_parameter(&web, &ctx, "page"));
    };
    let listed = match web
        .store
        .customer_license_page(account.id, page, pages::PAGE_SIZE)
    {
        Ok(l) => l,
        Err(e) => return Ok(internal_error(&web, &ctx, "license list", e)),
    };
    let rows = listed
        .rows
        .into_iter()
        .map(|(l, running)| LicenseRow {
            number: l.number.to_string(),
            kind: match (l.license_type, de) {
                (keys::LicenseType::Standard, true) => "Standard-Lizenz".into(),
                (keys::LicenseType::Standard, false) => "Standard license".into(),
                (keys::LicenseType::Engineering, true) => "Engineering-Lizenz".into(),
                (keys::LicenseType::Engineering, false) => "Engineering license".into(),
            },
            data: format!(
                "{}, {} {}",
                l.license_data.name, l.license_data.postcode, l.license_data.city
            ),
            licensee: l.licensee.company.clone(),
            status: if running {
                "running".into()
            } else {
                "stopped".into()
            },
        })
        .collect();
    let headers = if de {
        vec![
            "Nummer",
            "Typ",
            "Lizenzdaten",
            "Lizenznehmer",
            "ProMoS-Status",
        ]
    } else {
        vec![
            "Number",
            "Type",
            "License data",
            "Licensee",
            "ProMoS status",
        ]
    };
    let page = LicensesPage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().my_licenses),
        headers,
        rows,
        page: listed.page,
        pages: listed.total.div_ceil(pages::PAGE_SIZE).max(1),
        total: listed.total,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}
