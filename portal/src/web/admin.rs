//! The vendor's admin pages: orders awaiting payment ("mark paid" activates),
//! every license and customer with search, a license's audit trail and check-ins,
//! dongle serial entry, trusted customers, and failed emails.
//!
//! Every handler first checks that the session belongs to an admin account;
//! anyone else gets the same 404 as for a page that does not exist, so the admin
//! area's existence leaks nothing. Every change is written with
//! `Actor::Admin(<admin email>)` into the audit trail.

use super::answers::{internal_error, not_for_you};
use super::pages::{self, Chrome, MailRow};
use super::views::{self, tr};
use super::{input, redirect, Ctx, Form, Web};
use crate::domain::{self, Account, AccountId, Actor, License, MutationState};
use crate::store::LicenseError;
use askama::Template;
use keys::{Binding, DongleSerial, LicenseNumber, LicenseType, Protection};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

type Resp = Result<Response<Body>, Infallible>;

pub use super::pages::PAGE_SIZE;

/// The admin's account; everyone else gets [`not_for_you`].
fn admin(ctx: &Ctx) -> Option<Account> {
    ctx.account.clone().filter(|a| a.admin)
}

/// One order awaiting payment.
#[derive(Debug)]
pub struct OrderRow {
    pub id: String,
    pub path: String,
    pub license: String,
    pub kind: String,
    pub licensee: String,
    pub customer: String,
    pub ordered: String,
    pub price: String,
}

#[derive(Template, Debug)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub c: Chrome,
    pub placeholders: bool,
    pub orders: Vec<OrderRow>,
    pub failing: Vec<MailRow>,
    pub licenses: usize,
    pub customers: usize,
}

pub fn index(web: Arc<Web>, ctx: Ctx) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    let de = ctx.lang.is_de();
    let ordered = match web.store.mutations_in_state(MutationState::Ordered) {
        Ok(m) => m,
        Err(e) => return Ok(internal_error(&web, &ctx, "admin orders", e)),
    };
    let mut orders = vec![];
    for m in ordered {
        let Ok(Some(l)) = web.store.license(&m.license) else {
            continue;
        };
        orders.push((
            m.ordered_at,
            OrderRow {
                id: m.id(),
                path: format!("/admin/orders/{}/{}/paid", m.license, m.number),
                license: m.license.to_string(),
                kind: kind_text(m.kind, de).into(),
                licensee: format!(
                    "{} ({} {})",
                    l.licensee.company, l.licensee.first_name, l.licensee.last_name
                ),
                customer: customer_email(&web, &l),
                ordered: m
                    .ordered_at
                    .map(|t| pages::date(t, ctx.lang))
                    .unwrap_or_default(),
                price: views::shown_price(&m, de),
            },
        ));
    }
    orders.sort_by_key(|o| o.0);
    let failing = web
        .mailer
        .failing()
        .into_iter()
        .map(|j| MailRow {
            id: j.id,
            to: j.email.to,
            subject: j.email.subject,
            attempts: j.attempts,
            error: j.last_error.unwrap_or_default(),
            next: pages::email_time(j.next_attempt, ctx.lang),
        })
        .collect();
    let page = AdminPage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().admin_area),
        placeholders: web.prices.has_placeholders(),
        orders: orders.into_iter().map(|(_, o)| o).collect(),
        failing,
        licenses: match web.store.license_count() {
            Ok(n) => n,
            Err(e) => return Ok(internal_error(&web, &ctx, "admin overview", e)),
        },
        customers: match web.store.account_count() {
            Ok(n) => n,
            Err(e) => return Ok(internal_error(&web, &ctx, "admin overview", e)),
        },
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

fn kind_text(k: domain::MutationKind, de: bool) -> &'static str {
    match k {
        domain::MutationKind::New => tr(de, "Neu", "New"),
        domain::MutationKind::Upgrade => "Upgrade",
        domain::MutationKind::Renewal => tr(de, "Verlängerung", "Renewal"),
    }
}

fn customer_email(web: &Web, l: &License) -> String {
    l.account
        .and_then(|a| web.store.account(a).ok().flatten())
        .map(|a| a.email)
        .unwrap_or_else(|| "–".into())
}

pub fn retry_mail(web: Arc<Web>, ctx: Ctx, id: u64) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    let _ = web.mailer.retry_now(id);
    Ok(redirect("/admin", &[]))
}

/// The page of "mark paid" (`GET /admin/orders/<number>/<n>/paid`): while the
/// order awaits payment, the question with the order's details and a button that
/// posts to [`mark_paid`] (a page of its own, so it works without JavaScript);
/// once it is paid, what happened (`done=1`: just now, the customer's email is
/// on its way). `back` (a local path) is where the page leads back to.
pub fn paid_page(
    web: Arc<Web>,
    ctx: Ctx,
    number: String,
    n: u32,
    q: HashMap<String, String>,
) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    let t = ctx.lang.t();
    let de = ctx.lang.is_de();
    let Ok(number) = number.parse::<LicenseNumber>() else {
        return Ok(not_for_you(&web, &ctx));
    };
    let (license, m) = match (web.store.license(&number), web.store.mutation(&number, n)) {
        (Ok(Some(l)), Ok(Some(m))) => (l, m),
        (Err(e), _) | (_, Err(e)) => return Ok(internal_error(&web, &ctx, "mark paid page", e)),
        _ => return Ok(not_for_you(&web, &ctx)),
    };
    let back =
        super::input::redirect_target(q.get("back").map(String::as_str).unwrap_or(""), "/admin")
            .to_owned();
    let fill = |text: &str| {
        text.replace("{id}", &m.id())
            .replace("{license}", &number.to_string())
            .replace("{customer}", &customer_email(&web, &license))
    };
    let (status, title, text, confirm) = match m.state {
        MutationState::Ordered => (
            StatusCode::OK,
            t.paid_confirm_title,
            fill(t.paid_confirm_text),
            true,
        ),
        MutationState::Activated if q.contains_key("done") => (
            StatusCode::OK,
            t.paid_done_title,
            fill(t.paid_done_text),
            false,
        ),
        MutationState::Activated => (
            StatusCode::OK,
            t.paid_done_title,
            t.paid_already.to_owned(),
            false,
        ),
        _ => (
            StatusCode::CONFLICT,
            tr(de, "Nicht möglich", "Not possible"),
            t.paid_not_ordered.to_owned(),
            false,
        ),
    };
    let page = PaidPage {
        c: Chrome::new(&web, &ctx, title),
        title: title.to_owned(),
        text,
        confirm,
        path: format!("/admin/orders/{}/{}/paid", number, m.number),
        back,
        id: m.id(),
        license: number.to_string(),
        kind: kind_text(m.kind, de).into(),
        licensee: views::licensee_lines(&license.licensee, de),
        customer: customer_email(&web, &license),
        price: views::shown_price(&m, de),
        state: views::shown_state(&m, web.clock.now(), de).into(),
    };
    Ok(pages::render(&web, &ctx, status, &page))
}

/// The confirmation and result page of "mark paid".
#[derive(Template, Debug)]
#[template(path = "admin_paid.html")]
pub struct PaidPage {
    pub c: Chrome,
    pub title: String,
    pub text: String,
    /// Still awaiting payment: show the confirm button.
    pub confirm: bool,
    pub path: String,
    pub back: String,
    pub id: String,
    pub license: String,
    pub kind: String,
    pub licensee: Vec<String>,
    pub customer: String,
    pub price: String,
    pub state: String,
}

/// "Mark paid", confirmed (the button of [`paid_page`]): activates the order,
/// issues a grant if a host or dongle is bound, tells the customer, and shows
/// what happened on [`paid_page`].
pub fn mark_paid(web: Arc<Web>, ctx: Ctx, number: String, n: u32, form: Form) -> Resp {
    let Some(me) = admin(&ctx) else {
        return Ok(not_for_you(&web, &ctx));
    };
    let Ok(number) = number.parse::<LicenseNumber>() else {
        return Ok(not_for_you(&web, &ctx));
    };
    let de = ctx.lang.is_de();
    match web.store.activate_mutation(
        &number,
        n,
        &web.key,
        &Actor::Admin(me.email.clone()),
        web.clock.now(),
    ) {
        Ok(m) => {
            if let Err(e) = super::emails::activated(&web, &m) {
                tracing::error!(error = %e, order = %m.id(), "activation email not queued");
            }
            let back = super::input::redirect_target(form.get("back"), "/admin");
            Ok(redirect(
                &format!(
                    "/admin/orders/{}/{}/paid?done=1&back={}",
                    m.license,
                    m.number,
                    super::answers::urlencode(back)
                ),
                &[],
            ))
        }
        Err(LicenseError::UnknownLicense(_) | LicenseError::UnknownMutation(..)) => {
            Ok(not_for_you(&web, &ctx))
        }
        Err(LicenseError::Transition { .. }) => Ok(pages::message(
            &web,
            &ctx,
            StatusCode::CONFLICT,
            tr(de, "Nicht möglich", "Not possible"),
            ctx.lang.t().paid_not_ordered,
        )),
        Err(e) => Ok(internal_error(&web, &ctx, "mark paid", e)),
    }
}

// ----- licenses -------------------------------------------------------------------

#[derive(Debug)]
pub struct LicenseListRow {
    pub number: String,
    pub kind: String,
    pub protection: String,
    pub licensee: String,
    pub data: String,
    pub customer: String,
    pub active: bool,
    pub bound: String,
}

#[derive(Template, Debug)]
#[template(path = "admin_licenses.html")]
pub struct LicensesPage {
    pub c: Chrome,
    pub q: String,
    pub total: usize,
    pub rows: Vec<LicenseListRow>,
    pub page: usize,
    pub pages: usize,
}

/// The lowercased search `q` and the 1-based `page` of a list's query string,
/// or the name of the parameter the list does not have or whose value it
/// refuses ([`input::list_page`]).
pub fn search_and_page(q: &HashMap<String, String>) -> Result<(String, usize), String> {
    if let Some(field) = q.keys().find(|k| !matches!(k.as_str(), "q" | "page")) {
        return Err(field.clone());
    }
    let search = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let page = input::list_page(q.get("page").map(String::as_str)).ok_or("page")?;
    Ok((search, page))
}

pub fn licenses(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    let de = ctx.lang.is_de();
    let (search, page) = match search_and_page(&q) {
        Ok(p) => p,
        Err(field) => return Ok(pages::bad_list_parameter(&web, &ctx, &field)),
    };
    // Without a search only the page is read (one indexed query, the customers'
    // emails joined); with one, the store's search index gives the candidates
    // and only those are decoded and checked (`crate::search`: number,
    // licensee, license data, customer email, binding).
    let (total, listed) = if search.is_empty() {
        match web.store.license_list_page(page, PAGE_SIZE) {
            Ok(p) => (p.total, p.rows),
            Err(e) => return Ok(internal_error(&web, &ctx, "admin license list", e)),
        }
    } else {
        let found = match web.store.search_licenses_with_emails(&search) {
            Ok(l) => l,
            Err(e) => return Ok(internal_error(&web, &ctx, "admin license search", e)),
        };
        let total = found.len();
        let page = page.min(total.div_ceil(PAGE_SIZE).max(1));
        let listed = found
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        (total, listed)
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let rows = listed
        .iter()
        .map(|(l, email)| LicenseListRow {
            number: l.number.to_string(),
            kind: match l.license_type {
                LicenseType::Standard => "Standard".into(),
                LicenseType::Engineering => "Engineering".into(),
            },
            protection: views::protection_name(l.protection).into(),
            licensee: format!(
                "{} ({} {})",
                l.licensee.company, l.licensee.first_name, l.licensee.last_name
            ),
            data: format!(
                "{}, {} {}",
                l.license_data.name, l.license_data.postcode, l.license_data.city
            ),
            customer: email.clone(),
            active: domain::is_active(l),
            bound: match &l.binding {
                Some(Binding::HardwareId(h)) => h.to_string(),
                Some(Binding::DongleSerial(s)) => format!("Dongle {s}"),
                None => "–".into(),
            },
        })
        .collect();
    let page = LicensesPage {
        c: Chrome::new(&web, &ctx, tr(de, "Alle Lizenzen", "All licenses")),
        q: q.get("q").cloned().unwrap_or_default(),
        total,
        rows,
        page,
        pages,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

#[derive(Debug)]
pub struct AdminMutationRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub created: String,
    pub price: String,
    pub paid_path: Option<String>,
}

#[derive(Template, Debug)]
#[template(path = "admin_license.html")]
pub struct LicenseDetailPage {
    pub c: Chrome,
    pub number: String,
    pub kind: String,
    pub protection: String,
    pub hard_dongle: bool,
    pub dongle_serial: String,
    pub dongle_error: Option<String>,
    pub customer: String,
    pub licensee: Vec<String>,
    pub bound: String,
    pub grant_serial: String,
    pub valid_until: String,
    pub mutations: Vec<AdminMutationRow>,
    /// (when, who, what, detail)
    pub audit: Vec<(String, String, String, String)>,
    /// (when, host, running, via)
    pub checkins: Vec<(String, String, String, String)>,
}

fn license_detail(
    web: &Web,
    ctx: &Ctx,
    number: &str,
    status: StatusCode,
    dongle_error: Option<String>,
) -> Response<Body> {
    let de = ctx.lang.is_de();
    let lang = ctx.lang;
    let Ok(number) = number.parse::<LicenseNumber>() else {
        return not_for_you(web, ctx);
    };
    let license = match web.store.license(&number) {
        Ok(Some(l)) => l,
        Ok(None) => return not_for_you(web, ctx),
        Err(e) => return internal_error(web, ctx, "admin license", e),
    };
    let now = web.clock.now();
    let mutations = web
        .store
        .mutations(&number)
        .unwrap_or_default()
        .into_iter()
        .map(|m| AdminMutationRow {
            id: m.id(),
            kind: kind_text(m.kind, de).into(),
            state: views::shown_state(&m, now, de).into(),
            created: pages::date(m.created_at, lang),
            price: views::shown_price(&m, de),
            paid_path: (m.state == MutationState::Ordered)
                .then(|| format!("/admin/orders/{}/{}/paid", m.license, m.number)),
        })
        .collect();
    let mut names: HashMap<AccountId, String> = HashMap::new();
    let audit = web
        .store
        .audit(Some(&number), 200)
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            (
                pages::email_time(a.at, lang),
                actor_name(web, &a.actor, lang, &mut names),
                super::i18n::audit_event(&a.action, lang).to_owned(),
                a.detail,
            )
        })
        .collect();
    let checkins = web
        .store
        .check_in_history(&number)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(50)
        .map(|c| {
            (
                pages::email_time(c.at, lang),
                c.hardware_id.to_string(),
                if c.running { "running" } else { "stopped" }.to_owned(),
                c.from,
            )
        })
        .collect();
    let page = LicenseDetailPage {
        c: Chrome::new(
            web,
            ctx,
            &format!("{} {}", tr(de, "Lizenz", "License"), number),
        ),
        number: number.to_string(),
        kind: match license.license_type {
            LicenseType::Standard => "Standard".into(),
            LicenseType::Engineering => "Engineering".into(),
        },
        protection: views::protection_name(license.protection).into(),
        hard_dongle: license.protection == Protection::HardDongle,
        dongle_serial: license
            .dongle_serial
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        dongle_error,
        customer: customer_email(web, &license),
        licensee: views::licensee_lines(&license.licensee, de),
        bound: match &license.binding {
            Some(Binding::HardwareId(h)) => h.to_string(),
            Some(Binding::DongleSerial(s)) => format!("Dongle {s}"),
            None => "–".into(),
        },
        grant_serial: license
            .current_grant
            .map(|s| s.to_string())
            .unwrap_or_else(|| "–".into()),
        valid_until: license
            .valid_until
            .map(|t| pages::date(t, lang))
            .unwrap_or_else(|| "–".into()),
        mutations,
        audit,
        checkins,
    };
    pages::render(web, ctx, status, &page)
}

/// Who did something, as the audit trail shows it: a customer by name and email
/// (not "account:19"), an admin, a daemon by host, the server itself. `names`
/// caches the accounts looked up for one page.
fn actor_name(
    web: &Web,
    actor: &Actor,
    lang: super::i18n::Lang,
    names: &mut HashMap<AccountId, String>,
) -> String {
    let t = lang.t();
    match actor {
        Actor::Account(id) => names
            .entry(*id)
            .or_insert_with(|| match web.store.account(*id) {
                Ok(Some(a)) => format!("{} {} ({})", a.first_name, a.last_name, a.email),
                _ => format!("{} {id}", t.actor_unknown_account),
            })
            .clone(),
        Actor::Admin(name) => format!("{} {name}", t.actor_admin),
        Actor::Daemon { hardware_id, from } => {
            format!("{} {hardware_id} ({from})", t.actor_daemon)
        }
        Actor::System => t.actor_system.to_owned(),
    }
}

pub fn license(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    Ok(license_detail(&web, &ctx, &number, StatusCode::OK, None))
}

/// The vendor enters the serial of the dongle shipped with a hardware-dongle
/// license; the license file becomes downloadable.
pub fn set_dongle(web: Arc<Web>, ctx: Ctx, number: String, form: Form) -> Resp {
    let Some(me) = admin(&ctx) else {
        return Ok(not_for_you(&web, &ctx));
    };
    let de = ctx.lang.is_de();
    let Ok(n) = number.parse::<LicenseNumber>() else {
        return Ok(not_for_you(&web, &ctx));
    };
    let serial: DongleSerial = match form.get("serial").parse() {
        Ok(s) => s,
        Err(_) => {
            return Ok(license_detail(
                &web,
                &ctx,
                &number,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(
                    tr(
                        de,
                        "Die Dongle-Nummer besteht aus 1 bis 64 Buchstaben, Ziffern, - oder _.",
                        "A dongle serial is 1 to 64 letters, digits, - or _.",
                    )
                    .into(),
                ),
            ))
        }
    };
    match web.store.set_dongle_serial(
        &n,
        serial,
        &web.key,
        &Actor::Admin(me.email),
        web.clock.now(),
    ) {
        Ok(_) => Ok(redirect(&format!("/admin/licenses/{n}"), &[])),
        Err(LicenseError::NotHardDongle(_)) => Ok(license_detail(
            &web,
            &ctx,
            &number,
            StatusCode::CONFLICT,
            Some(
                tr(
                    de,
                    "Nur HardDongle-Lizenzen haben eine Dongle-Nummer.",
                    "Only hardware-dongle licenses have a dongle serial.",
                )
                .into(),
            ),
        )),
        Err(LicenseError::UnknownLicense(_)) => Ok(not_for_you(&web, &ctx)),
        Err(e) => Ok(internal_error(&web, &ctx, "dongle serial", e)),
    }
}

// ----- customers ------------------------------------------------------------------

#[derive(Debug)]
pub struct CustomerRow {
    pub id: u64,
    pub email: String,
    pub company: String,
    pub name: String,
    pub verified: bool,
    pub trusted: bool,
    pub admin: bool,
    pub licenses: usize,
}

#[derive(Template, Debug)]
#[template(path = "admin_customers.html")]
pub struct CustomersPage {
    pub c: Chrome,
    pub q: String,
    pub total: usize,
    pub rows: Vec<CustomerRow>,
    pub page: usize,
    pub pages: usize,
}

pub fn customers(web: Arc<Web>, ctx: Ctx, q: HashMap<String, String>) -> Resp {
    if admin(&ctx).is_none() {
        return Ok(not_for_you(&web, &ctx));
    }
    let de = ctx.lang.is_de();
    let (search, page) = match search_and_page(&q) {
        Ok(p) => p,
        Err(field) => return Ok(pages::bad_list_parameter(&web, &ctx, &field)),
    };
    let accounts = match web.store.accounts() {
        Ok(a) => a,
        Err(e) => return Ok(internal_error(&web, &ctx, "admin customers", e)),
    };
    let matching: Vec<Account> = accounts
        .into_iter()
        .filter(|a| {
            search.is_empty()
                || [&a.email, &a.company, &a.first_name, &a.last_name]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&search))
        })
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let rows = matching
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|a| CustomerRow {
            id: a.id.0,
            licenses: web
                .store
                .licenses_of_account(a.id)
                .map(|l| l.len())
                .unwrap_or(0),
            email: a.email,
            company: a.company,
            name: format!("{} {}", a.first_name, a.last_name),
            verified: a.email_verified,
            trusted: a.trusted,
            admin: a.admin,
        })
        .collect();
    let page = CustomersPage {
        c: Chrome::new(&web, &ctx, tr(de, "Kunden", "Customers")),
        q: q.get("q").cloned().unwrap_or_default(),
        total,
        rows,
        page,
        pages,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

/// Marks a customer trusted (orders activate at once) or not.
pub fn set_trusted(web: Arc<Web>, ctx: Ctx, id: u64, form: Form) -> Resp {
    let Some(me) = admin(&ctx) else {
        return Ok(not_for_you(&web, &ctx));
    };
    let trusted = form.get("trusted") == "1";
    match web.store.set_trusted(
        AccountId(id),
        trusted,
        &Actor::Admin(me.email),
        web.clock.now(),
    ) {
        Ok(_) => Ok(redirect(
            super::input::redirect_target(form.get("back"), "/admin/customers"),
            &[],
        )),
        Err(crate::store::AccountError::UnknownAccount(_)) => Ok(not_for_you(&web, &ctx)),
        Err(e) => Ok(internal_error(&web, &ctx, "trusted flag", e)),
    }
}
