//! The emails of quotes and orders (manual 4.1): the quote with all positions and
//! a link to order it, the order confirmation, the activation notice, the
//! renewal reminders of engineering licenses, and "Hardware geändert" when a
//! binding followed a host whose hardware changed (issue 19). Each has a plain-text and an HTML
//! part from one askama template pair (`emails/mutation.txt|html`), in the
//! language the customer last chose in the portal (German by default).

use super::i18n::Lang;
use super::pages;
use super::views::{country_name, tr, SummaryView};
use super::{Ctx, Web};
use crate::domain::{License, Licensee, Mutation};
use crate::mail::Email;
use askama::Template;

/// What a mutation email says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Quote,
    Ordered,
    Activated,
}

/// The model both parts render.
#[derive(Debug)]
pub struct MutationEmail {
    pub kind: &'static str,
    pub de: bool,
    pub name: String,
    pub id: String,
    pub license: String,
    pub until: String,
    pub link: String,
    /// (label, value) of "Ihre Angaben".
    pub licensee: Vec<(String, String)>,
    pub s: Option<SummaryView>,
    pub days_left: u64,
    /// "activated": what happens now; for a hardware-dongle license, that the
    /// customer downloads the license file (`download`), else that ProMoS receives
    /// the license at its next check. "hardware": what changed and what to do.
    pub activated_text: String,
    /// Hardware dongle: the license file's download link; `file_note` says when it
    /// is available if the dongle serial is not entered yet.
    pub download: Option<String>,
    pub file_note: String,
    pub show_license: &'static str,
    pub download_label: &'static str,
}

#[derive(Template, Debug)]
#[template(path = "emails/mutation.txt")]
pub struct MutationText<'a> {
    pub m: &'a MutationEmail,
}

#[derive(Template, Debug)]
#[template(path = "emails/mutation.html")]
pub struct MutationHtml<'a> {
    pub m: &'a MutationEmail,
}

fn licensee_rows(l: &Licensee, de: bool) -> Vec<(String, String)> {
    vec![
        ("Name".into(), format!("{} {}", l.first_name, l.last_name)),
        (tr(de, "Firma", "Company").into(), l.company.clone()),
        (
            tr(de, "Straße und Hausnummer", "Street and number").into(),
            l.street.clone(),
        ),
        (tr(de, "PLZ", "Postcode").into(), l.postcode.clone()),
        (tr(de, "Ort", "City").into(), l.city.clone()),
        (
            tr(de, "Kanton/Bundesland", "Canton/state").into(),
            l.state.clone(),
        ),
        (
            tr(de, "Land", "Country").into(),
            country_name(&l.country, de),
        ),
    ]
}

/// The owner's address and language, or the licensee's address for licenses the
/// vendor created without an account.
fn recipient(web: &Web, license: &License) -> (String, String, Lang) {
    let lang = web.lang_of(license.account);
    match license
        .account
        .and_then(|a| web.store.account(a).ok().flatten())
    {
        Some(a) => (a.email, format!("{} {}", a.first_name, a.last_name), lang),
        None => (
            license.licensee.email.clone(),
            format!(
                "{} {}",
                license.licensee.first_name, license.licensee.last_name
            ),
            lang,
        ),
    }
}

fn send(web: &Web, to: String, subject: String, m: &MutationEmail) -> Result<(), String> {
    web.mailer
        .enqueue(render(to, subject, m)?)
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn render(to: String, subject: String, m: &MutationEmail) -> Result<Email, String> {
    let text = MutationText { m }.render().map_err(|e| e.to_string())?;
    let html = MutationHtml { m }.render().map_err(|e| e.to_string())?;
    Ok(Email {
        to,
        subject,
        text,
        html,
    })
}

fn mutation_email(web: &Web, kind: Kind, m: &Mutation, lang: Option<Lang>) -> Result<(), String> {
    let license = web
        .store
        .license(&m.license)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("license {} vanished", m.license))?;
    let (to, name, stored_lang) = recipient(web, &license);
    let lang = lang.unwrap_or(stored_lang);
    let de = lang.is_de();
    let id = m.id();
    let (subject, kind_key) = match kind {
        Kind::Quote => (
            format!(
                "{} {id}",
                tr(de, "Ihr ProMoS Angebot Nr.", "Your ProMoS quote no.")
            ),
            "quote",
        ),
        Kind::Ordered => (
            format!(
                "{} {id}",
                tr(de, "Ihre ProMoS Bestellung Nr.", "Your ProMoS order no.")
            ),
            "ordered",
        ),
        Kind::Activated => (
            format!(
                "{} {} {}",
                tr(de, "Ihre ProMoS Lizenz", "Your ProMoS license"),
                m.license,
                tr(de, "ist freigeschaltet", "is activated")
            ),
            "activated",
        ),
    };
    let t = lang.t();
    let hard_dongle = license.protection == keys::Protection::HardDongle;
    let activated_text = if hard_dongle {
        t.mail_activated_hard_dongle
    } else {
        t.mail_activated
    }
    .replace("{id}", &id)
    .replace("{license}", &m.license.to_string());
    let after = if m.kind == crate::domain::MutationKind::New {
        m.adds.clone()
    } else {
        license.entitlements.clone()
    };
    let email = MutationEmail {
        kind: kind_key,
        de,
        name,
        id,
        license: m.license.to_string(),
        until: pages::date(m.quote_valid_until, lang),
        link: web.link(&match kind {
            Kind::Quote => format!("/quotes/{}/{}", m.license, m.number),
            _ => format!("/licenses/{}", m.license),
        }),
        licensee: licensee_rows(&license.licensee, de),
        s: m.priced
            .as_ref()
            .map(|s| SummaryView::build(s, &after, None, de)),
        days_left: 0,
        activated_text,
        download: hard_dongle.then(|| web.link(&format!("/licenses/{}/download", m.license))),
        file_note: if hard_dongle && license.dongle_serial.is_none() {
            t.mail_file_after_dongle.to_owned()
        } else {
            String::new()
        },
        show_license: t.show_license,
        download_label: t.download_license,
    };
    send(web, to, subject, &email)
}

/// "Ihr ProMoS Angebot Nr. ...": in the language the customer is using right now.
pub fn quote(web: &Web, ctx: &Ctx, m: &Mutation) -> Result<(), String> {
    mutation_email(web, Kind::Quote, m, Some(ctx.lang))
}

pub fn ordered(web: &Web, m: &Mutation) -> Result<(), String> {
    mutation_email(web, Kind::Ordered, m, None)
}

pub fn activated(web: &Web, m: &Mutation) -> Result<(), String> {
    mutation_email(web, Kind::Activated, m, None)
}

/// The reminder that an engineering license ends in `days_left` days.
pub fn renewal_reminder(web: &Web, license: &License, days_left: u64) -> Result<(), String> {
    let (to, name, lang) = recipient(web, license);
    let de = lang.is_de();
    let until = license
        .valid_until
        .map(|t| pages::date(t, lang))
        .unwrap_or_default();
    let email = MutationEmail {
        kind: "reminder",
        de,
        name,
        id: license.number.to_string(),
        license: license.number.to_string(),
        until,
        link: web.link(&format!("/licenses/{}", license.number)),
        licensee: licensee_rows(&license.licensee, de),
        s: None,
        days_left,
        activated_text: String::new(),
        download: None,
        file_note: String::new(),
        show_license: lang.t().show_license,
        download_label: lang.t().download_license,
    };
    let subject = format!(
        "{} {} {}",
        tr(
            de,
            "Ihre ProMoS Engineering-Lizenz",
            "Your ProMoS engineering license"
        ),
        license.number,
        tr(de, "läuft bald ab", "ends soon")
    );
    send(web, to, subject, &email)
}

/// The hook of the daemon-facing service that emails the customer about a
/// binding that followed a changed computer: composed by
/// [`hardware_changed_job`], queued in the move's transaction, and the mail
/// worker woken after the commit.
pub fn hardware_change_hook(web: &std::sync::Arc<Web>) -> crate::service::HardwareChangeHook {
    let (composer, waker) = (std::sync::Arc::clone(web), std::sync::Arc::clone(web));
    crate::service::HardwareChangeHook {
        compose: std::sync::Arc::new(move |rebound, at| {
            hardware_changed_job(&composer, rebound, at)
        }),
        queued: std::sync::Arc::new(move || waker.mailer.wake()),
    }
}

/// "Hardware geändert": the license followed its computer to a changed
/// hardware ID (issue 19). Says from which ID to which, when, how many facts
/// changed, and what to do if the customer did not change that computer (a
/// copied computer: reset the license and tell the vendor).
///
/// Returned as a mail job for the rebind's own transaction
/// ([`crate::store::RebindMail`]): `None` when the customer has no valid
/// address (the portal's license page still shows the move).
pub fn hardware_changed_job(
    web: &Web,
    rebound: &crate::store::Rebound,
    at: keys::UnixTime,
) -> Result<Option<crate::store::MailJobFn>, String> {
    let email = hardware_changed_email(web, rebound, at)?;
    match web.mailer.job(email) {
        Ok(job) => Ok(Some(job)),
        Err(crate::mail::MailError::BadAddress(to)) => {
            tracing::warn!(license = %rebound.license.number, to, "no valid address for the \"hardware changed\" email");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn hardware_changed_email(
    web: &Web,
    rebound: &crate::store::Rebound,
    at: keys::UnixTime,
) -> Result<Email, String> {
    let license = &rebound.license;
    let (to, name, lang) = recipient(web, license);
    let de = lang.is_de();
    let new = match &license.binding {
        Some(keys::Binding::HardwareId(h)) => h.to_string(),
        _ => String::new(),
    };
    let when = pages::email_time(at, lang);
    let text = if de {
        format!(
            "die Hardware des Computers, an den Ihre ProMoS Lizenz {} gebunden ist, hat sich geändert ({} von ihren Merkmalen, z. B. eine ersetzte Netzwerkkarte). Die Lizenz ist ihm am {when} gefolgt: Hardware-ID bisher {}, jetzt {new}. ProMoS läuft dort ohne Unterbrechung weiter.\n\nHaben Sie an diesem Computer nichts geändert, läuft die Lizenz womöglich auf einer Kopie (einem geklonten Computer): Setzen Sie die Lizenz im Lizenzserver zurück und melden Sie sich bei uns.",
            license.number, rebound.changes, rebound.from
        )
    } else {
        format!(
            "the hardware of the computer your ProMoS license {} is bound to has changed ({} of its features, e.g. a replaced network card). The license followed it on {when}: hardware ID before {}, now {new}. ProMoS runs on there without interruption.\n\nIf you did not change that computer, the license may be running on a copy (a cloned computer): reset the license in the license server and contact us.",
            license.number, rebound.changes, rebound.from
        )
    };
    let email = MutationEmail {
        kind: "hardware",
        de,
        name,
        id: license.number.to_string(),
        license: license.number.to_string(),
        until: String::new(),
        link: web.link(&format!("/licenses/{}", license.number)),
        licensee: licensee_rows(&license.licensee, de),
        s: None,
        days_left: 0,
        activated_text: text,
        download: None,
        file_note: String::new(),
        show_license: lang.t().show_license,
        download_label: lang.t().download_license,
    };
    let subject = format!(
        "{} {}: {}",
        tr(de, "Ihre ProMoS Lizenz", "Your ProMoS license"),
        license.number,
        tr(de, "Hardware geändert", "Hardware changed")
    );
    render(to, subject, &email)
}
