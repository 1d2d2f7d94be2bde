//! Page models: one askama template each, plus the layout data every page shares.

use super::i18n::{Lang, Texts};
use super::{html, Ctx, Web};
use askama::Template;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

pub const STYLE_CSS: &str = include_str!("../../static/style.css");

/// The license page's copy button (the page works without it).
pub const LICENSE_JS: &str = include_str!("../../static/license.js");

/// The logged-in user, as the layout shows them.
#[derive(Clone, Debug)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
}

/// What the layout needs: texts, language switch, user, CSRF token, title.
#[derive(Clone, Debug)]
pub struct Chrome {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub path: String,
    pub user: Option<UserView>,
    pub csrf: String,
    pub title: String,
}

impl Chrome {
    /// The German or the English text, by the page's language (new pages keep both
    /// languages side by side where the text is used).
    pub fn tr<'a>(&self, de: &'a str, en: &'a str) -> &'a str {
        if self.lang == "de" {
            de
        } else {
            en
        }
    }

    pub fn new(web: &Web, ctx: &Ctx, title: &str) -> Self {
        Chrome {
            t: ctx.lang.t(),
            lang: ctx.lang.code(),
            other_lang: ctx.lang.other().code(),
            path: ctx.path.clone(),
            user: ctx.account.as_ref().map(|a| UserView {
                name: format!("{} {}", a.first_name, a.last_name),
                admin: a.admin,
            }),
            csrf: ctx.csrf(web),
            title: title.to_owned(),
        }
    }
}

/// Renders a template into an HTML response.
pub fn render<T: Template>(web: &Web, ctx: &Ctx, status: StatusCode, page: &T) -> Response<Body> {
    match page.render() {
        Ok(body) => html(web, ctx, status, body),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            html(
                web,
                ctx,
                StatusCode::INTERNAL_SERVER_ERROR,
                ctx.lang.t().error_text.to_owned(),
            )
        }
    }
}

#[derive(Template, Debug)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub c: Chrome,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub unverified: bool,
}

#[derive(Default, Debug, Clone)]
pub struct RegisterValues {
    pub email: String,
    pub company: String,
    pub first_name: String,
    pub last_name: String,
}

#[derive(Default, Debug, Clone)]
pub struct RegisterErrors {
    pub email: Option<String>,
    pub password: Option<String>,
    pub password2: Option<String>,
    pub company: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl RegisterErrors {
    pub fn any(&self) -> bool {
        self.email.is_some()
            || self.password.is_some()
            || self.password2.is_some()
            || self.company.is_some()
            || self.first_name.is_some()
            || self.last_name.is_some()
    }
}

#[derive(Template, Debug)]
#[template(path = "register.html")]
pub struct RegisterPage {
    pub c: Chrome,
    pub v: RegisterValues,
    pub errors: RegisterErrors,
    pub general_error: Option<String>,
}

#[derive(Template, Debug)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub c: Chrome,
    pub title: String,
    pub paragraphs: Vec<String>,
    pub link: Option<(String, String)>,
    pub resend: bool,
}

#[derive(Template, Debug)]
#[template(path = "forgot.html")]
pub struct ForgotPage {
    pub c: Chrome,
    pub notice: Option<String>,
}

#[derive(Template, Debug)]
#[template(path = "reset.html")]
pub struct ResetPage {
    pub c: Chrome,
    pub token: String,
    pub errors: RegisterErrors,
}

/// Rows per page of every list (the customer's licenses and quotes, the
/// admin's licenses and customers).
pub const PAGE_SIZE: usize = 50;

#[derive(Debug)]
pub struct LicenseRow {
    pub number: String,
    pub kind: String,
    pub data: String,
    pub licensee: String,
    pub status: String,
}

#[derive(Template, Debug)]
#[template(path = "licenses.html")]
pub struct LicensesPage {
    pub c: Chrome,
    pub headers: Vec<&'static str>,
    pub rows: Vec<LicenseRow>,
    /// The page shown (1-based) and the number of pages.
    pub page: usize,
    pub pages: usize,
    /// The customer's licenses on all pages.
    pub total: usize,
}

#[derive(Debug)]
pub struct MailRow {
    pub id: u64,
    pub to: String,
    pub subject: String,
    pub attempts: u32,
    pub error: String,
    pub next: String,
}

/// A page with a title and text, optionally a link.
pub fn message(
    web: &Web,
    ctx: &Ctx,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response<Body> {
    message_with(web, ctx, status, title, vec![text.to_owned()], None, false)
}

/// The 400 page for a list link whose parameter `field` (`page`, `show`) has a
/// value the list does not have: says which and what to do, never guesses.
pub fn bad_list_parameter(web: &Web, ctx: &Ctx, field: &str) -> Response<Body> {
    let de = ctx.lang.is_de();
    let field: String = field.chars().take(40).collect();
    let text = if de {
        format!(
            "Der Wert von \u{201e}{field}\u{201c} in dieser Adresse ist ungültig (eine Seite ist eine ganze Zahl ab 1). Bitte öffnen Sie die Liste neu über das Menü."
        )
    } else {
        format!(
            "The value of \u{201c}{field}\u{201d} in this address is not valid (a page is a whole number from 1). Please open the list again from the menu."
        )
    };
    message(
        web,
        ctx,
        StatusCode::BAD_REQUEST,
        if de {
            "Ungültige Adresse"
        } else {
            "Invalid address"
        },
        &text,
    )
}

/// The 413 page: the input is too long, naming the field where it is known.
pub fn too_long(web: &Web, ctx: &Ctx, field: Option<&str>) -> Response<Body> {
    let t = ctx.lang.t();
    let text = match field {
        Some(f) => t
            .err_field_too_long
            .replace("{field}", &f.chars().take(40).collect::<String>())
            .replace("{max}", &super::input::MAX_FIELD_CHARS.to_string()),
        None => t.err_body_too_long.to_owned(),
    };
    message(
        web,
        ctx,
        StatusCode::PAYLOAD_TOO_LARGE,
        t.too_long_title,
        &text,
    )
}

/// The 422 page of a form that carries a field it does not have (or one field
/// twice): nothing was changed.
pub fn unknown_field(web: &Web, ctx: &Ctx, field: &str) -> Response<Body> {
    let t = ctx.lang.t();
    let text = t
        .err_unknown_field
        .replace("{field}", &field.chars().take(40).collect::<String>());
    message(
        web,
        ctx,
        StatusCode::UNPROCESSABLE_ENTITY,
        t.error_title,
        &text,
    )
}

/// 503, in German and English: the database is away for a moment (a restart,
/// a failover between database servers); nothing was changed.
pub fn try_again(web: &Web, ctx: &Ctx) -> Response<Body> {
    message_with(
        web,
        ctx,
        StatusCode::SERVICE_UNAVAILABLE,
        "Vorübergehend nicht verfügbar / Temporarily unavailable",
        vec![
            "Der Lizenzserver erreicht seine Datenbank gerade nicht. Es wurde nichts geändert; bitte versuchen Sie es in einer Minute noch einmal.".into(),
            "The license server cannot reach its database right now. Nothing was changed; please try again in a minute.".into(),
        ],
        None,
        false,
    )
}

pub fn message_with(
    web: &Web,
    ctx: &Ctx,
    status: StatusCode,
    title: &str,
    paragraphs: Vec<String>,
    link: Option<(String, String)>,
    resend: bool,
) -> Response<Body> {
    let page = MessagePage {
        c: Chrome::new(web, ctx, title),
        title: title.to_owned(),
        paragraphs,
        link,
        resend,
    };
    render(web, ctx, status, &page)
}

/// The plain-text part of an email carrying a link (verification or reset).
#[derive(Template, Debug)]
#[template(path = "emails/link.txt")]
pub struct LinkEmailText<'a> {
    pub reset: bool,
    pub de: bool,
    pub name: &'a str,
    pub link: &'a str,
    pub until: &'a str,
}

/// The HTML part of the same email.
#[derive(Template, Debug)]
#[template(path = "emails/link.html")]
pub struct LinkEmailHtml<'a> {
    pub reset: bool,
    pub de: bool,
    pub name: &'a str,
    pub link: &'a str,
    pub until: &'a str,
}

/// A point in time as the manual's emails write it: "28.09.2021 um 14:51:24 Uhr (UTC)".
pub fn email_time(t: keys::UnixTime, lang: Lang) -> String {
    let (y, mo, d) = t.civil_date();
    let (h, mi, s) = t.civil_time();
    match lang {
        Lang::De => format!("{d:02}.{mo:02}.{y} um {h:02}:{mi:02}:{s:02} Uhr (UTC)"),
        Lang::En => format!("{y}-{mo:02}-{d:02} at {h:02}:{mi:02}:{s:02} UTC"),
    }
}

/// A date as the lists show it: 14.09.2021 / 2021-09-14.
pub fn date(t: keys::UnixTime, lang: Lang) -> String {
    let (y, mo, d) = t.civil_date();
    match lang {
        Lang::De => format!("{d:02}.{mo:02}.{y}"),
        Lang::En => format!("{y}-{mo:02}-{d:02}"),
    }
}
