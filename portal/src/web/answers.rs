//! Answers every kind of page gives in the same situations: a visitor who
//! must log in first, a page that is not theirs, a store that failed, and the
//! license a request may see. Shared by the page modules ([`super::auth`],
//! [`super::shop`], [`super::license`], [`super::admin`]) so that none of them
//! imports another for these.

use super::{pages, redirect, Ctx, Web};
use crate::domain::License;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

/// Where to send a visitor who must log in first: the login page, coming back here.
pub fn login_first(ctx: &Ctx) -> Response<Body> {
    redirect(
        &format!("/login?next={}", urlencode(&ctx.path_and_query)),
        &[],
    )
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn internal_error(
    web: &Web,
    ctx: &Ctx,
    what: &str,
    e: impl std::fmt::Display,
) -> Response<Body> {
    let text = e.to_string();
    if crate::store::is_full_message(&text) {
        // Nothing was written; the visitor can try again once there is space.
        tracing::error!(error = %text, "{what} failed: storage full");
        let (title, body) = if ctx.lang.is_de() {
            (
                "Speicher voll",
                "Speicher voll: Ihre Eingabe wurde nicht gespeichert. Bitte versuchen Sie es später noch einmal.",
            )
        } else {
            (
                "Storage full",
                "Storage full: nothing was saved. Please try again later.",
            )
        };
        return pages::message(web, ctx, StatusCode::SERVICE_UNAVAILABLE, title, body);
    }
    if crate::store::is_unavailable_message(&text) {
        tracing::error!(error = %text, "{what} failed: the database is unavailable");
        return pages::try_again(web, ctx);
    }
    tracing::error!(error = %text, "{what} failed");
    let t = ctx.lang.t();
    pages::message(
        web,
        ctx,
        StatusCode::INTERNAL_SERVER_ERROR,
        t.error_title,
        t.error_text,
    )
}

/// The answer for non-admins.
pub fn not_for_you(web: &Web, ctx: &Ctx) -> Response<Body> {
    let t = ctx.lang.t();
    pages::message(
        web,
        ctx,
        StatusCode::NOT_FOUND,
        t.not_found_title,
        t.not_found_text,
    )
}

/// The license `number` if the request may see it: its owner, or vendor staff.
pub fn owned(web: &Web, ctx: &Ctx, number: &str) -> Option<License> {
    let account = ctx.account.as_ref()?;
    let number: keys::LicenseNumber = number.parse().ok()?;
    let license = web.store.license(&number).ok()??;
    (account.admin || license.account == Some(account.id)).then_some(license)
}
