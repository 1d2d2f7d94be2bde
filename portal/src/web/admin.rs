//! The vendor's admin pages. Every handler first checks that the session belongs
//! to an admin account; anyone else gets the same 404 as for a page that does
//! not exist, so the admin area's existence leaks nothing.

use super::pages::{self, AdminPage, Chrome, MailRow};
use super::{redirect, Ctx, Form, Web};
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

type Resp = Result<Response<Body>, Infallible>;

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

pub async fn index(web: Arc<Web>, ctx: Ctx) -> Resp {
    if !ctx.is_admin() {
        return Ok(not_for_you(&web, &ctx));
    }
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
            next: j.next_attempt.to_string(),
        })
        .collect();
    let page = AdminPage {
        c: Chrome::new(&web, &ctx, ctx.lang.t().admin_area),
        placeholders: false,
        placeholder_warning: "",
        failing,
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

pub async fn retry_mail(web: Arc<Web>, ctx: Ctx, id: u64, form: Form) -> Resp {
    if !ctx.is_admin() {
        return Ok(not_for_you(&web, &ctx));
    }
    if !ctx.csrf_ok(&web, &form) {
        let t = ctx.lang.t();
        return Ok(pages::message(
            &web,
            &ctx,
            StatusCode::FORBIDDEN,
            t.forbidden_title,
            t.err_csrf,
        ));
    }
    let _ = web.mailer.retry_now(id);
    Ok(redirect("/admin", &[]))
}
