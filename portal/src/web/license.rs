//! The license page and its actions (manual chapters 5 to 8): show token, edit
//! the license data, download the license file, reset the hardware binding,
//! upgrade, and the free renewal of engineering licenses with its reminders.
//!
//! Every handler first resolves the license with [`super::answers::owned`]: the owner and vendor
//! staff get it, everyone else the same 404 as for a number that does not exist,
//! so nobody learns which license numbers exist.

use super::answers::{internal_error, login_first, owned};
use super::pages::{self, Chrome};
use super::shop::{self, Entered, Errors, FormState, SummaryPage};
use super::views::{
    self, entitlement_lines, option_lines, program_lines, rule_text, tr, SummaryView,
};
use super::{redirect, Ctx, Form, Web};
use crate::daemon_config::DaemonSettings;
use crate::domain::{
    self, Actor, License, MutationKind, MutationRuleError, MutationState,
    RENEWAL_LAST_REMINDER_DAYS, RENEWAL_WINDOW_DAYS,
};
use crate::store::{LicenseError, NewMutation};
use askama::Template;
use keys::{Binding, Entitlements, LicenseData, LicenseType, Protection, UnixTime};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;

type Resp = Result<Response<Body>, Infallible>;

fn not_found(web: &Web, ctx: &Ctx) -> Response<Body> {
    super::answers::not_for_you(web, ctx)
}

/// The license a page or form is about: the login page for visitors, the 404 for anyone who
/// may not see it.
fn license_for(web: &Web, ctx: &Ctx, number: &str) -> Result<License, Box<Response<Body>>> {
    if ctx.account.is_none() {
        return Err(Box::new(login_first(ctx)));
    }
    owned(web, ctx, number).ok_or_else(|| Box::new(not_found(web, ctx)))
}

fn conflict(web: &Web, ctx: &Ctx, title: &str, text: &str) -> Response<Body> {
    pages::message(web, ctx, StatusCode::CONFLICT, title, text)
}

// ----- the license page -------------------------------------------------------------

/// One line of the mutation history.
#[derive(Clone, Debug)]
pub struct MutationRow {
    pub id: String,
    pub path: String,
    pub kind: String,
    pub state: String,
    pub created: String,
    pub price: String,
}

#[derive(Template, Debug)]
#[template(path = "license.html")]
pub struct LicensePage {
    pub c: Chrome,
    pub number: String,
    pub token: Option<String>,
    pub kind: String,
    pub protection: String,
    pub licensee: Vec<String>,
    pub data: LicenseData,
    pub dongle_serial: Option<String>,
    pub valid_until: Option<String>,
    pub notice: Option<String>,
    pub running: bool,
    pub last_seen: Option<String>,
    pub bound: Option<String>,
    /// The binding followed this host's changed hardware (issue 19): when,
    /// and the hardware ID before.
    pub hardware_changed: Option<(String, String)>,
    pub via: Option<String>,
    pub active: bool,
    pub drivers: Vec<(String, String)>,
    pub programs: Vec<(String, String)>,
    pub options: Vec<String>,
    pub mutations: Vec<MutationRow>,
    pub can_download: bool,
    pub hard_dongle: bool,
    pub can_reset: bool,
    pub can_upgrade: bool,
    pub upgrade_hint: Option<String>,
    pub can_renew: bool,
    /// The daemon's settings for this license (none: no QUIC endpoint known).
    pub daemon: Option<DaemonView>,
}

/// The daemon settings section: the values and the file they make.
#[derive(Clone, Debug)]
pub struct DaemonView {
    pub server: String,
    pub other_servers: Vec<String>,
    pub keys: Vec<String>,
    pub pin: String,
    /// The `promos-licd.toml` as the download gives it.
    pub file: String,
}

impl DaemonView {
    fn new(settings: &DaemonSettings, number: &keys::LicenseNumber) -> DaemonView {
        DaemonView {
            server: settings.server().to_owned(),
            other_servers: settings.servers.iter().skip(1).cloned().collect(),
            keys: settings.key_texts(),
            pin: settings.cert_sha256.clone(),
            file: settings.render(Some(number)),
        }
    }
}

fn kind_name(t: LicenseType, de: bool) -> &'static str {
    match t {
        LicenseType::Standard => tr(de, "Standard-Lizenz", "Standard license"),
        LicenseType::Engineering => tr(de, "Engineering-Lizenz", "Engineering license"),
    }
}

pub fn page(web: Arc<Web>, ctx: Ctx, number: String, q: HashMap<String, String>) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    let lang = ctx.lang;
    let now = web.clock.now();
    let mutations = match web.store.mutations(&license.number) {
        Ok(m) => m,
        Err(e) => return Ok(internal_error(&web, &ctx, "license page", e)),
    };
    let last = web.store.last_check_in(&license.number).ok().flatten();
    let running = web.store.runtime_running(&license).unwrap_or(false);
    let active = domain::is_active(&license);
    let notice = if let Some(n) = q.get("ordered").and_then(|n| n.parse::<u32>().ok()) {
        mutations.iter().find(|m| m.number == n).map(|m| {
            if m.state == MutationState::Activated {
                tr(
                    de,
                    "Vielen Dank für Ihre Bestellung! Ihre Lizenz ist freigeschaltet.",
                    "Thank you for your order! Your license is activated.",
                )
                .to_owned()
            } else {
                tr(
                    de,
                    "Vielen Dank für Ihre Bestellung! Sobald Ihre Zahlung bei uns eingegangen ist, werden wir Ihre Lizenz schnellstmöglich freischalten und Sie per Email informieren.",
                    "Thank you for your order! As soon as we have received your payment, we will activate your license as quickly as possible and inform you by email.",
                )
                .to_owned()
            }
        })
    } else if q.contains_key("reset") {
        Some(
            tr(
                de,
                "Die Lizenz wurde zurückgesetzt. ProMoS kann jetzt auf einem anderen Rechner gestartet werden; der bisherige Rechner ist nicht mehr lizenziert.",
                "The license was reset. ProMoS can now be started on another computer; the previous computer is no longer licensed.",
            )
            .to_owned(),
        )
    } else if q.contains_key("saved") {
        Some(
            tr(
                de,
                "Die Lizenzdaten wurden gespeichert.",
                "The license data was saved.",
            )
            .to_owned(),
        )
    } else if q.contains_key("renewed") {
        Some(
            tr(
                de,
                "Die Lizenz wurde kostenlos verlängert. ProMoS erhält die neue Lizenz bei der nächsten Prüfung.",
                "The license was renewed free of charge. ProMoS receives the new license at its next check.",
            )
            .to_owned(),
        )
    } else {
        None
    };
    let standard_active = license.license_type == LicenseType::Standard && active;
    let page = LicensePage {
        c: Chrome::new(
            &web,
            &ctx,
            &format!("{} {}", tr(de, "Lizenz", "License"), license.number),
        ),
        number: license.number.to_string(),
        token: (q.get("token").map(String::as_str) == Some("show"))
            .then(|| license.token.expose().to_owned()),
        kind: kind_name(license.license_type, de).into(),
        protection: views::protection_name(license.protection).into(),
        licensee: views::licensee_lines(&license.licensee, de),
        data: license.license_data.clone(),
        dongle_serial: license.dongle_serial.as_ref().map(|s| s.to_string()),
        valid_until: license.valid_until.map(|t| pages::date(t, lang)),
        notice,
        running,
        last_seen: last.as_ref().map(|c| pages::email_time(c.at, lang)),
        bound: match &license.binding {
            Some(Binding::HardwareId(h)) => Some(h.to_string()),
            Some(Binding::DongleSerial(s)) => Some(format!("Dongle {s}")),
            None => None,
        },
        hardware_changed: match (&license.binding, web.store.host_facts(&license.number)) {
            (Some(Binding::HardwareId(h)), Ok(Some(b))) if &b.hardware_id == h => b
                .rebound
                .map(|(at, from)| (pages::email_time(at, lang), from.to_string())),
            _ => None,
        },
        via: last.as_ref().and_then(|c| {
            c.from
                .split_once(" via relay ")
                .map(|(_, peer)| peer.to_owned())
        }),
        active,
        drivers: if active {
            entitlement_lines(&license.entitlements, None, de)
        } else {
            vec![]
        },
        programs: if active {
            program_lines(&license.entitlements, de)
        } else {
            vec![]
        },
        options: option_lines(&license.entitlements, de),
        mutations: mutations
            .iter()
            .filter(|m| m.state != MutationState::Deleted)
            .map(|m| MutationRow {
                id: m.id(),
                path: format!("/quotes/{}/{}", m.license, m.number),
                kind: match m.kind {
                    MutationKind::New => tr(de, "Neu", "New").into(),
                    MutationKind::Upgrade => "Upgrade".into(),
                    MutationKind::Renewal => tr(de, "Verlängerung", "Renewal").into(),
                },
                state: views::shown_state(m, now, de).into(),
                created: pages::date(m.created_at, lang),
                price: views::shown_price(m, de),
            })
            .collect(),
        can_download: license.protection == Protection::HardDongle
            && license.dongle_serial.is_some()
            && license.current_grant.is_some(),
        hard_dongle: license.protection == Protection::HardDongle,
        can_reset: license.protection != Protection::HardDongle
            && matches!(license.binding, Some(Binding::HardwareId(_))),
        can_upgrade: standard_active && !running,
        upgrade_hint: (standard_active && running).then(|| {
            tr(
                de,
                "Ein Upgrade ist möglich, sobald ProMoS beendet ist.",
                "An upgrade is offered once ProMoS is stopped.",
            )
            .to_owned()
        }),
        can_renew: active && domain::renewal_offered(&license, now),
        daemon: web
            .daemon
            .as_deref()
            .map(|d| DaemonView::new(d, &license.number)),
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

// ----- edit -------------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "license_edit.html")]
pub struct EditPage {
    pub c: Chrome,
    pub number: String,
    pub fields: Vec<shop::FieldView>,
}

fn edit_page(
    web: &Web,
    ctx: &Ctx,
    status: StatusCode,
    number: &str,
    data: &LicenseData,
    errors: &Errors,
) -> Response<Body> {
    let de = ctx.lang.is_de();
    let f = |name: &'static str, label: &'static str, value: &str| shop::FieldView {
        name,
        label,
        value: value.to_owned(),
        kind: "text",
        error: errors.get(name).cloned(),
    };
    let page = EditPage {
        c: Chrome::new(web, ctx, tr(de, "Lizenz bearbeiten", "Edit license")),
        number: number.to_owned(),
        fields: vec![
            f("data_name", "Name", &data.name),
            f("data_postcode", tr(de, "PLZ", "Postcode"), &data.postcode),
            f("data_city", tr(de, "Ort", "City"), &data.city),
        ],
    };
    pages::render(web, ctx, status, &page)
}

pub fn edit_get(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    Ok(edit_page(
        &web,
        &ctx,
        StatusCode::OK,
        license.number.as_str(),
        &license.license_data,
        &Errors::new(),
    ))
}

/// The edit form's license data (name, postcode, city) and its field errors.
pub fn license_data_form(form: &Form, de: bool) -> (LicenseData, Errors) {
    let data = LicenseData {
        name: form.get("data_name").to_owned(),
        postcode: form.get("data_postcode").to_owned(),
        city: form.get("data_city").to_owned(),
    };
    let mut errors = Errors::new();
    for (k, v) in [
        ("data_name", &data.name),
        ("data_postcode", &data.postcode),
        ("data_city", &data.city),
    ] {
        if v.is_empty() {
            errors.insert(
                k.into(),
                tr(de, "Bitte ausfüllen.", "Please fill in.").into(),
            );
        } else if v.chars().count() > 200 {
            errors.insert(
                k.into(),
                tr(de, "Höchstens 200 Zeichen.", "At most 200 characters.").into(),
            );
        }
    }
    (data, errors)
}

/// Saves name, postcode and city (manual 5: nothing else can change after ordering).
pub fn edit_post(web: Arc<Web>, ctx: Ctx, number: String, form: Form) -> Resp {
    let Some(account) = ctx.account.clone() else {
        return Ok(login_first(&ctx));
    };
    let Some(license) = owned(&web, &ctx, &number) else {
        return Ok(not_found(&web, &ctx));
    };
    let de = ctx.lang.is_de();
    let (data, errors) = license_data_form(&form, de);
    if !errors.is_empty() {
        return Ok(edit_page(
            &web,
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            license.number.as_str(),
            &data,
            &errors,
        ));
    }
    let actor = if account.admin && license.account != Some(account.id) {
        Actor::Admin(account.email.clone())
    } else {
        Actor::Account(account.id)
    };
    match web
        .store
        .update_license_data(&license.number, data, &web.key, &actor, web.clock.now())
    {
        Ok(_) => Ok(redirect(
            &format!("/licenses/{}?saved=1", license.number),
            &[],
        )),
        Err(e) => Ok(internal_error(&web, &ctx, "editing license data", e)),
    }
}

fn actor_for(ctx: &Ctx, license: &License) -> Actor {
    match &ctx.account {
        Some(a) if a.admin && license.account != Some(a.id) => Actor::Admin(a.email.clone()),
        Some(a) => Actor::Account(a.id),
        None => Actor::System,
    }
}

// ----- download -----------------------------------------------------------------------

/// The signed license file `<number>.json` (manual 6): hardware-dongle licenses
/// only, once the vendor entered the dongle serial. The stored grant is verified
/// against the server's key before it leaves.
pub fn download(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    let title = tr(de, "Lizenz herunterladen", "Download license");
    let refused = |text: &str| Ok(conflict(&web, &ctx, title, text));
    use crate::license_file::LicenseFileError as E;
    let body = match crate::license_file::render(&web.store, &web.key, &license) {
        Ok(body) => body,
        Err(E::NotHardDongle(_)) => return refused(tr(
            de,
            "Die Lizenzdatei gibt es nur für HardDongle-Lizenzen. Eine SoftDongle- oder Engineering-Lizenz wird über das Internet geprüft; sie darf NICHT in das Projekt kopiert werden.",
            "License files exist for hardware-dongle licenses only. A soft-dongle or engineering license is checked over the internet; it must NOT be copied into the project.",
        )),
        Err(E::NoDongleSerial(_)) => return refused(tr(
            de,
            "Die Lizenzdatei kann erst heruntergeladen werden, wenn der Dongle ausgeliefert und seine Nummer im Lizenzserver eingetragen ist.",
            "The license file can be downloaded once the dongle has been delivered and its number entered in the license server.",
        )),
        Err(E::NotActivated(_)) => return refused(tr(
            de,
            "Diese Lizenz enthält noch keine aktiven Services. Die Datei steht bereit, sobald die Bestellung freigeschaltet ist.",
            "This license has no active services yet. The file is available once the order is activated.",
        )),
        Err(e) => return Ok(internal_error(&web, &ctx, "license download", e)),
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.json\"", license.number),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .unwrap_or_default())
}

// ----- daemon settings ------------------------------------------------------------------

/// The daemon's `promos-licd.toml` for this license (server, keys, pin,
/// number; never the token): the owner and vendor staff only, like the page.
pub fn daemon_config(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let Some(settings) = web.daemon.as_deref() else {
        return Ok(not_found(&web, &ctx));
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/toml; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"promos-licd.toml\"",
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(settings.render(Some(&license.number))))
        .unwrap_or_default())
}

// ----- offline check (request and answer files) -----------------------------------------

/// The answer shown after an offline request was answered.
#[derive(Debug)]
pub struct OfflineAnswerView {
    pub outcome: String,
    pub file_name: String,
    pub text: String,
    /// The file for the download link (a `data:` URL works without JavaScript).
    pub base64: String,
}

#[derive(Template, Debug)]
#[template(path = "license_offline.html")]
pub struct OfflinePage {
    pub c: Chrome,
    pub number: String,
    pub error: Option<String>,
    pub entered: String,
    pub answer: Option<OfflineAnswerView>,
}

fn offline_page(
    web: &Web,
    ctx: &Ctx,
    license: &License,
    status: StatusCode,
    error: Option<String>,
    entered: String,
    answer: Option<OfflineAnswerView>,
) -> Response<Body> {
    let page = OfflinePage {
        c: Chrome::new(
            web,
            ctx,
            tr(ctx.lang.is_de(), "Offline-Prüfung", "Offline check"),
        ),
        number: license.number.to_string(),
        error,
        entered,
        answer,
    };
    pages::render(web, ctx, status, &page)
}

/// The upload form for a request file (`promos-licd offline request`).
pub fn offline_get(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    if license.protection == Protection::HardDongle {
        return Ok(hard_dongle_offline(&web, &ctx));
    }
    Ok(offline_page(
        &web,
        &ctx,
        &license,
        StatusCode::OK,
        None,
        String::new(),
        None,
    ))
}

fn hard_dongle_offline(web: &Web, ctx: &Ctx) -> Response<Body> {
    let de = ctx.lang.is_de();
    conflict(
        web,
        ctx,
        tr(de, "Offline-Prüfung", "Offline check"),
        tr(
            de,
            "HardDongle-Lizenzen brauchen keine Prüfung: die Lizenzdatei und der Dongle genügen.",
            "Hardware-dongle licenses need no check: the license file and the dongle are enough.",
        ),
    )
}

/// Answers an uploaded request file exactly as the server answers a network
/// check or activation (signed, bound to the host and the nonce), records the
/// check-in as by file, and offers the answer file. The owner's login
/// authorises an activation (no token); vendor staff answer as the vendor.
pub fn offline_post(web: Arc<Web>, ctx: Ctx, number: String, form: Form) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    if license.protection == Protection::HardDongle {
        return Ok(hard_dongle_offline(&web, &ctx));
    }
    let de = ctx.lang.is_de();
    let text = form.raw("request").to_owned();
    let again = |error: String| {
        Ok(offline_page(
            &web,
            &ctx,
            &license,
            StatusCode::BAD_REQUEST,
            Some(error),
            text.clone(),
            None,
        ))
    };
    let request = match wire::offline::read_request(&text) {
        Ok(r) => r,
        Err(e) => {
            return again(format!(
                "{} ({e})",
                tr(
                    de,
                    "Das ist keine gültige Anfragedatei. Fügen Sie den ganzen Inhalt der Datei ein, die promos-licd offline request geschrieben hat.",
                    "This is not a valid request file. Paste the whole content of the file promos-licd offline request wrote.",
                )
            ))
        }
    };
    if request.license_number() != &license.number {
        return again(format!(
            "{} {} {}",
            tr(
                de,
                "Diese Anfragedatei ist für die Lizenz",
                "This request file is for license"
            ),
            request.license_number(),
            tr(
                de,
                "und nicht für diese. Laden Sie sie auf der Seite jener Lizenz hoch.",
                "and not for this one. Upload it on that license's page.",
            )
        ));
    }
    let by = match &ctx.account {
        Some(a) if a.admin && license.account != Some(a.id) => {
            crate::service::OfflineAuthor::Vendor(a.email.clone())
        }
        Some(a) => crate::service::OfflineAuthor::Owner(a.id),
        None => return Ok(login_first(&ctx)),
    };
    let response = web.daemon_service().answer_offline(request.clone(), &by);
    let outcome = crate::service::offline_outcome(&response, &web.key);
    let answer = match wire::offline::write_answer(&request, &response) {
        Ok(a) => a,
        Err(e) => return Ok(internal_error(&web, &ctx, "offline answer", e)),
    };
    let outcome_text = match outcome {
        "activated" => tr(
            de,
            "Der Rechner ist aktiviert, sobald die Antwortdatei dort übernommen ist.",
            "The computer is activated once the answer file is applied there.",
        )
        .to_owned(),
        "checked" => tr(
            de,
            "Die Prüfung war erfolgreich. Die Fristen zählen ab jetzt, sobald die Antwortdatei übernommen ist.",
            "The check succeeded. The grace periods count from now once the answer file is applied.",
        )
        .to_owned(),
        "error" => tr(
            de,
            "Der Lizenzserver konnte die Anfrage gerade nicht beantworten. Bitte versuchen Sie es später noch einmal.",
            "The license server could not answer the request just now. Please try again later.",
        )
        .to_owned(),
        reason => {
            let message = wire::RefusalReason::ALL
                .iter()
                .find(|r| r.key() == reason)
                .map_or(reason, |r| r.message(de));
            format!(
                "{} {message}",
                tr(de, "Der Lizenzserver lehnt ab:", "The license server refuses:")
            )
        }
    };
    use base64::Engine as _;
    let view = OfflineAnswerView {
        outcome: outcome_text,
        file_name: wire::offline::file_name("answer", &license.number),
        base64: base64::engine::general_purpose::STANDARD.encode(answer.as_bytes()),
        text: answer,
    };
    Ok(offline_page(
        &web,
        &ctx,
        &license,
        StatusCode::OK,
        None,
        String::new(),
        Some(view),
    ))
}

// ----- reset ----------------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "license_reset.html")]
pub struct ResetPage {
    pub c: Chrome,
    pub number: String,
}

fn hard_dongle_reset(web: &Web, ctx: &Ctx) -> Response<Body> {
    let de = ctx.lang.is_de();
    conflict(
        web,
        ctx,
        tr(de, "Zurücksetzen", "Reset"),
        tr(
            de,
            "HardDongle-Lizenzen werden nicht zurückgesetzt: die Lizenz gehört zum Dongle. Stecken Sie den Dongle am neuen Rechner ein und kopieren Sie die Lizenzdatei dorthin.",
            "Hardware-dongle licenses are not reset: the license belongs to the dongle. Plug the dongle into the new computer and copy the license file there.",
        ),
    )
}

pub fn reset_get(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    if license.protection == Protection::HardDongle {
        return Ok(hard_dongle_reset(&web, &ctx));
    }
    let page = ResetPage {
        c: Chrome::new(&web, &ctx, tr(ctx.lang.is_de(), "Zurücksetzen", "Reset")),
        number: license.number.to_string(),
    };
    Ok(pages::render(&web, &ctx, StatusCode::OK, &page))
}

/// Releases the hardware binding (manual 7).
pub fn reset_post(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    let actor = actor_for(&ctx, &license);
    match web
        .store
        .reset_binding(&license.number, &actor, web.clock.now())
    {
        Ok(_) => Ok(redirect(
            &format!("/licenses/{}?reset=1", license.number),
            &[],
        )),
        Err(LicenseError::Reset(domain::ResetError::HardDongle)) => {
            Ok(hard_dongle_reset(&web, &ctx))
        }
        Err(LicenseError::Reset(domain::ResetError::NotBound)) => Ok(conflict(
            &web,
            &ctx,
            tr(de, "Zurücksetzen", "Reset"),
            tr(
                de,
                "Die Lizenz ist an keinen Rechner gebunden; es gibt nichts zurückzusetzen.",
                "The license is not bound to any computer; there is nothing to reset.",
            ),
        )),
        Err(e) => Ok(internal_error(&web, &ctx, "reset", e)),
    }
}

// ----- upgrade ----------------------------------------------------------------------------

/// Why the license cannot be upgraded now, if it cannot.
fn upgrade_refusal(web: &Web, license: &License, de: bool) -> Option<String> {
    if license.license_type == LicenseType::Engineering {
        return Some(rule_text(&MutationRuleError::EngineeringUpgrade, de));
    }
    if !domain::is_active(license) {
        return Some(
            tr(
                de,
                "Ein Upgrade ist möglich, sobald die Lizenz freigeschaltet ist.",
                "An upgrade is possible once the license is activated.",
            )
            .to_owned(),
        );
    }
    if web.store.runtime_running(license).unwrap_or(false) {
        return Some(rule_text(&MutationRuleError::RuntimeRunning, de));
    }
    None
}

pub fn upgrade_get(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    if let Some(why) = upgrade_refusal(&web, &license, de) {
        return Ok(conflict(&web, &ctx, "Upgrade", &why));
    }
    let entered = Entered::from_entitlements(&license.entitlements);
    let (sel, _) = entered.selection(LicenseType::Standard, de);
    let priced = web
        .prices
        .quote_upgrade(&license.entitlements, &sel, None)
        .ok();
    Ok(shop::form_page(
        &web,
        &ctx,
        StatusCode::OK,
        FormState {
            entered: &entered,
            errors: &Errors::new(),
            priced: priced.as_ref(),
            license_type: LicenseType::Standard,
            upgrade: Some((&license, &license.entitlements)),
        },
    ))
}

/// "Next", "Back", "Get quote" and "Order now" of the upgrade form.
pub fn upgrade_post(web: Arc<Web>, ctx: Ctx, number: String, form: Form) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    if let Some(why) = upgrade_refusal(&web, &license, de) {
        return Ok(conflict(&web, &ctx, "Upgrade", &why));
    }
    let mut entered = Entered::from_form(&form);
    entered.licensee = license.licensee.clone();
    entered.data = license.license_data.clone();
    entered.protection = match license.protection {
        Protection::HardDongle => "hard_dongle".into(),
        _ => "soft_dongle".into(),
    };
    let current = license.entitlements.clone();
    let mut result = shop::evaluate_submitted(
        &web.prices,
        &form,
        &entered,
        LicenseType::Standard,
        Some(&current),
        de,
    );
    if let Ok(p) = &result {
        if Entitlements::none().covers(&p.added) {
            let mut errors = Errors::new();
            errors.insert(
                "upgrade".into(),
                rule_text(&MutationRuleError::UpgradeAddsNothing, de),
            );
            result = Err(Box::new((errors, Some(p.clone()))));
        }
    }
    let step = form.get("step");
    let priced = match result {
        Ok(p) if step != "back" => p,
        Ok(p) => {
            return Ok(upgrade_form(
                &web,
                &ctx,
                StatusCode::OK,
                &entered,
                &Errors::new(),
                Some(&p),
                &license,
            ))
        }
        Err(e) => {
            let (errors, partial) = *e;
            return Ok(upgrade_form(
                &web,
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                &entered,
                &errors,
                partial.as_ref(),
                &license,
            ));
        }
    };
    let summary = shop::summarize(&priced, &license.licensee.country);
    if step != "quote" && step != "order" {
        let page = SummaryPage {
            c: Chrome::new(&web, &ctx, tr(de, "Zusammenfassung", "Summary")),
            action: format!("/licenses/{}/upgrade", license.number),
            upgrade: Some(license.number.to_string()),
            protection: views::protection_name(license.protection).into(),
            data: license.license_data.clone(),
            licensee: views::licensee_lines(&license.licensee, de),
            s: SummaryView::build(&summary, &priced.entitlements, Some(&current), de),
            hidden: entered.hidden_fields(),
            remarks: entered.remarks.clone(),
        };
        return Ok(pages::render(&web, &ctx, StatusCode::OK, &page));
    }
    let order = step == "order";
    let added = web.store.add_mutation(
        &license.number,
        NewMutation {
            kind: MutationKind::Upgrade,
            adds: priced.added.clone(),
            price_net: Some(summary.net.clone()),
            remarks: entered.remarks.clone(),
            priced: Some(summary),
        },
        order,
        &web.key,
        &actor_for(&ctx, &license),
        web.clock.now(),
    );
    if order {
        return shop::finish_order(&web, &ctx, added);
    }
    match added {
        Ok(m) => {
            if let Err(e) = super::emails::quote(&web, &ctx, &m) {
                tracing::error!(error = %e, quote = %m.id(), "quote email not queued");
            }
            Ok(redirect(
                &format!("/quotes?created={}/{}", m.license, m.number),
                &[],
            ))
        }
        Err(LicenseError::Rule(rule)) => Ok(conflict(&web, &ctx, "Upgrade", &rule_text(&rule, de))),
        Err(e) => Ok(internal_error(&web, &ctx, "upgrade quote", e)),
    }
}

fn upgrade_form(
    web: &Web,
    ctx: &Ctx,
    status: StatusCode,
    entered: &Entered,
    errors: &Errors,
    priced: Option<&pricing::Priced>,
    license: &License,
) -> Response<Body> {
    shop::form_page(
        web,
        ctx,
        status,
        FormState {
            entered,
            errors,
            priced,
            license_type: LicenseType::Standard,
            upgrade: Some((license, &license.entitlements)),
        },
    )
}

// ----- engineering renewal ------------------------------------------------------------------

/// The free renewal of an engineering license, from 60 days before its end: a
/// renewal mutation, activated at once; the daemon receives the new grant at its
/// next check.
pub fn renew(web: Arc<Web>, ctx: Ctx, number: String) -> Resp {
    let license = match license_for(&web, &ctx, &number) {
        Ok(l) => l,
        Err(refused) => return Ok(*refused),
    };
    let de = ctx.lang.is_de();
    let now = web.clock.now();
    if !domain::is_active(&license) || !domain::renewal_offered(&license, now) {
        return Ok(conflict(
            &web,
            &ctx,
            tr(de, "Verlängern", "Renew"),
            tr(
                de,
                "Engineering-Lizenzen können ab 60 Tagen vor ihrem Ablauf kostenlos verlängert werden.",
                "Engineering licenses can be renewed free of charge from 60 days before they end.",
            ),
        ));
    }
    let renewed = web.store.add_mutation(
        &license.number,
        NewMutation {
            kind: MutationKind::Renewal,
            adds: Entitlements::none(),
            price_net: Some("0".into()),
            remarks: String::new(),
            priced: None,
        },
        true,
        &web.key,
        &actor_for(&ctx, &license),
        now,
    );
    match renewed {
        Ok(m) => {
            if m.state == MutationState::Activated {
                if let Err(e) = super::emails::activated(&web, &m) {
                    tracing::error!(error = %e, "renewal email not queued");
                }
            }
            Ok(redirect(
                &format!("/licenses/{}?renewed=1", license.number),
                &[],
            ))
        }
        Err(e) => Ok(internal_error(&web, &ctx, "renewal", e)),
    }
}

/// Sends the renewal reminders that are due: 60 and 14 days before an engineering
/// license ends. Each is sent once per end date (a renewal moves the end, and the
/// reminders start over); when both are due at once only the later one goes out.
pub fn send_due_reminders(web: &Web, now: UnixTime) -> Result<(), String> {
    let licenses = web
        .store
        .engineering_licenses()
        .map_err(|e| e.to_string())?;
    for l in licenses {
        let Some(end) = l.valid_until else { continue };
        if l.license_type != LicenseType::Engineering || now >= end || !domain::is_active(&l) {
            continue;
        }
        let due: Vec<u64> = [RENEWAL_WINDOW_DAYS, RENEWAL_LAST_REMINDER_DAYS]
            .into_iter()
            .filter(|d| now.plus_days(*d) >= end)
            .collect();
        let Some(&days) = due.last() else { continue };
        let key = |d: u64| format!("{}:{}:{d}", l.number, end.0);
        if web.reminder_sent(&key(days)) {
            continue;
        }
        let days_left = end.since(now).div_ceil(UnixTime::DAY);
        super::emails::renewal_reminder(web, &l, days_left).map_err(|e| e.to_string())?;
        for d in due {
            web.mark_reminder_sent(&key(d)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
