//! Vendor administration: the commands behind `pls admin ...`, and the local Unix
//! socket through which they reach a running server.
//!
//! While `pls serve` runs, commands go to the server, which listens on
//! `<data dir>/admin.sock` (mode 0600: only the service user, or root, can
//! administer), so one process does every write and a backup comes from the
//! serving store. The CLI sends one JSON
//! line ([`AdminEnvelope`]) and reads one JSON line back (`Result<AdminReply,
//! String>`). With no server running, the CLI opens the store itself and runs the
//! same [`execute`]. Either way the same code does the work and writes the audit
//! trail.

use crate::domain::{
    Actor, License, Licensee, MutationKind, MutationState, NewAccount, NewLicense,
};
use crate::store::{AccountError, LicenseError, NewMutation, Store, StoreError};
use keys::{
    Binding, Clock, DongleSerial, Entitlements, LicenseData, LicenseNumber, LicenseType,
    Protection, SigningKeyPair,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Largest admin request line; real ones are well under 4 KiB.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// One admin command.
// Sent once per CLI call; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Creates a license directly; `paid` activates its content at once.
    CreateLicense {
        license_type: LicenseType,
        protection: Protection,
        /// The whole initial content (free base included).
        entitlements: Entitlements,
        licensee: Licensee,
        license_data: LicenseData,
        account_email: Option<String>,
        paid: bool,
    },
    CreateAccount {
        email: String,
        company: String,
        first_name: String,
        last_name: String,
    },
    /// Makes an account a vendor admin (creating it if needed) and returns a
    /// one-hour link to set its password in the portal.
    CreateAdmin {
        email: String,
        /// The portal's public address, for the link.
        public_url: String,
    },
    List,
    Show {
        number: LicenseNumber,
    },
    /// Marks an ordered mutation paid (activates it); without a number, every
    /// ordered mutation of the license.
    MarkPaid {
        number: LicenseNumber,
        mutation: Option<u32>,
    },
    /// Adds an upgrade (as an order; `paid` activates it too).
    Upgrade {
        number: LicenseNumber,
        adds: Entitlements,
        paid: bool,
    },
    SetDongle {
        number: LicenseNumber,
        serial: DongleSerial,
    },
    Reset {
        number: LicenseNumber,
    },
    Trust {
        email: String,
        trusted: bool,
    },
    Audit {
        number: Option<LicenseNumber>,
        limit: usize,
    },
    /// Writes a consistent snapshot to `path` (absolute; written by the server).
    Backup {
        path: PathBuf,
    },
    Identity,
    Verify,
    /// The database's schema version and the one this server writes.
    Schema,
    /// The `promos-licd.toml` for this server's daemons (with the license's
    /// number, never its token).
    DaemonConfig {
        number: Option<LicenseNumber>,
    },
    /// The signed license file of a hardware-dongle license.
    ExportLicense {
        number: LicenseNumber,
    },
    /// Answers a request file of a site without internet (`promos-licd
    /// offline request`): the answer file's text. The vendor authorises an
    /// activation.
    OfflineAnswer {
        /// The request file's text.
        request: String,
    },
}

/// Who sends the command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminEnvelope {
    /// The operator's name for the audit trail (the CLI sends the OS user).
    pub operator: String,
    pub request: AdminRequest,
    /// Chosen by the sender once per command and sent again with every retry:
    /// a creating command (`create-license`) that already ran under this key
    /// answers what it made then instead of making it again. 16 to 128
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A command's result: text for people, data for scripts (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminReply {
    pub text: String,
    pub data: serde_json::Value,
}

/// A command failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    License(#[from] LicenseError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backup(#[from] crate::store::BackupError),
    #[error("{0}")]
    Invalid(String),
}

/// What commands need.
#[derive(Debug, Clone)]
pub struct AdminContext {
    pub store: Arc<Store>,
    pub key: Arc<SigningKeyPair>,
    pub clock: Arc<dyn Clock>,
    /// The operator notice (public key, certificate fingerprint).
    pub identity: String,
    /// What a daemon needs (`pls admin identity --daemon-config`).
    pub daemon: crate::daemon_config::DaemonSettings,
    /// The daemon-facing service that answers `offline-answer` as a network
    /// check or activation is answered (hardware tolerance, the "Hardware
    /// geändert" email): the running server's, or one built for the command
    /// on the stopped server's database ([`crate::standalone_daemon_service`]).
    /// `None`: default rules and no email (tests of other commands).
    pub daemon_service: Option<Arc<crate::service::Service>>,
}

/// What `pls admin schema` prints for a database of schema version `found`
/// (`None`: no database yet), compared with this build's
/// [`crate::store::SCHEMA_VERSION`].
pub fn schema_reply(found: Option<u32>) -> AdminReply {
    let supported = crate::store::SCHEMA_VERSION;
    let text = match found {
        None => format!("no database yet; this pls writes schema version {supported}\n"),
        Some(v) if v == supported => format!(
            "database schema version {v}; this pls writes version {supported}: up to date\n"
        ),
        Some(v) if v < supported => format!(
            "database schema version {v}; this pls writes version {supported}: the next \
             start of this pls migrates it (take a backup first: pls admin backup FILE)\n"
        ),
        Some(v) => format!(
            "database schema version {v}; this pls writes version {supported}: the \
             database is newer than this pls, which refuses to open it; use a newer pls\n"
        ),
    };
    AdminReply {
        text,
        data: serde_json::json!({"database": found, "pls": supported}),
    }
}

/// Runs one command.
pub fn execute(ctx: &AdminContext, envelope: AdminEnvelope) -> Result<AdminReply, AdminError> {
    let actor = Actor::Admin(envelope.operator);
    let now = ctx.clock.now();
    let idempotency_key = envelope.idempotency_key;
    if let Some(k) = &idempotency_key {
        if !(16..=128).contains(&k.len()) {
            return Err(AdminError::Invalid(
                "an idempotency key has 16 to 128 characters".into(),
            ));
        }
    }
    let store = &ctx.store;
    match envelope.request {
        AdminRequest::CreateLicense {
            license_type,
            protection,
            entitlements,
            licensee,
            license_data,
            account_email,
            paid,
        } => {
            let account = match account_email {
                Some(email) => Some(
                    store
                        .account_by_email(&email)?
                        .ok_or_else(|| {
                            AdminError::Invalid(format!("there is no account with email {email}"))
                        })?
                        .id,
                ),
                None => None,
            };
            let new = NewMutation {
                kind: MutationKind::New,
                adds: entitlements,
                price_net: None,
                priced: None,
                remarks: "created by admin".into(),
            };
            // License, first order and (with --paid) its activation: one transaction.
            let (license, _) = store.create_license_keyed(
                NewLicense {
                    account,
                    license_type,
                    protection,
                    licensee,
                    license_data,
                },
                new,
                paid,
                idempotency_key.as_deref(),
                &ctx.key,
                &actor,
                now,
            )?;
            show(store, &license.number)
        }
        AdminRequest::CreateAccount {
            email,
            company,
            first_name,
            last_name,
        } => {
            let a = store.create_account_keyed(
                NewAccount {
                    email,
                    password_hash: None,
                    company,
                    first_name,
                    last_name,
                },
                idempotency_key.as_deref(),
                &actor,
                now,
            )?;
            Ok(AdminReply {
                text: format!("account {} created for {}\n", a.id, a.email),
                data: serde_json::to_value(&a).unwrap_or_default(),
            })
        }
        AdminRequest::CreateAdmin { email, public_url } => {
            let account = match store.account_by_email(&email)? {
                Some(a) => a,
                None => store.create_account(
                    NewAccount {
                        email: email.clone(),
                        password_hash: None,
                        company: "Administration".into(),
                        first_name: "Admin".into(),
                        last_name: "PLS".into(),
                    },
                    &actor,
                    now,
                )?,
            };
            store.set_admin(account.id, true, &actor, now)?;
            // The operator vouches for the address; the link below proves it anyway.
            store.update_account(account.id, &actor, now, "email verified by admin", |a| {
                a.email_verified = true
            })?;
            let tokens = crate::web::tokens::EmailTokens::open(store)?;
            let (token, until) =
                tokens.issue(crate::web::tokens::Purpose::Reset, account.id, now)?;
            let link = format!(
                "{}/password/reset?token={token}",
                public_url.trim_end_matches('/')
            );
            Ok(AdminReply {
                text: format!(
                    "{} is an admin now. Set its password before {until} at:\n  {link}\n",
                    account.email
                ),
                data: serde_json::json!({ "account": account.id.0, "email": account.email, "password_link": link }),
            })
        }
        AdminRequest::List => {
            let licenses = store.licenses()?;
            let mut text = format!(
                "{:<11} {:<12} {:<12} {:<9} {:<34} {}\n",
                "NUMBER", "TYPE", "PROTECTION", "STATUS", "LICENSEE", "LICENSE DATA"
            );
            let mut rows = vec![];
            for l in &licenses {
                let status = if store.runtime_running(l)? {
                    "running"
                } else {
                    "stopped"
                };
                text.push_str(&format!(
                    "{:<11} {:<12} {:<12} {:<9} {:<34} {}, {} {}\n",
                    l.number,
                    type_name(l.license_type),
                    protection_name(l.protection),
                    status,
                    truncate(&l.licensee.company, 34),
                    l.license_data.name,
                    l.license_data.postcode,
                    l.license_data.city
                ));
                rows.push(serde_json::json!({"number": l.number, "license_type": l.license_type, "protection": l.protection, "status": status, "licensee": l.licensee.company}));
            }
            text.push_str(&format!("{} license(s)\n", licenses.len()));
            Ok(AdminReply {
                text,
                data: serde_json::Value::Array(rows),
            })
        }
        AdminRequest::Show { number } => show(store, &number),
        AdminRequest::MarkPaid { number, mutation } => {
            let targets: Vec<u32> = match mutation {
                Some(n) => vec![n],
                None => store
                    .mutations(&number)?
                    .iter()
                    .filter(|m| m.state == MutationState::Ordered)
                    .map(|m| m.number)
                    .collect(),
            };
            if store.license(&number)?.is_none() {
                return Err(LicenseError::UnknownLicense(number).into());
            }
            if targets.is_empty() {
                return Err(AdminError::Invalid(format!(
                    "license {number} has no order awaiting payment"
                )));
            }
            let before = store
                .license(&number)?
                .ok_or_else(|| LicenseError::UnknownLicense(number.clone()))?;
            let mut activated = vec![];
            for n in targets {
                activated.push(store.activate_mutation(&number, n, &ctx.key, &actor, now)?);
            }
            paid_reply(store, &before, &activated)
        }
        AdminRequest::Upgrade { number, adds, paid } => {
            let new = NewMutation {
                kind: MutationKind::Upgrade,
                adds,
                price_net: None,
                priced: None,
                remarks: "upgrade by admin".into(),
            };
            // Order and (with --paid) activation: one transaction, once per key.
            store.order_keyed(
                &number,
                new,
                paid,
                idempotency_key.as_deref(),
                &ctx.key,
                &actor,
                now,
            )?;
            show(store, &number)
        }
        AdminRequest::SetDongle { number, serial } => {
            store.set_dongle_serial(&number, serial, &ctx.key, &actor, now)?;
            show(store, &number)
        }
        AdminRequest::Reset { number } => {
            store.reset_binding(&number, &actor, now)?;
            show(store, &number)
        }
        AdminRequest::Trust { email, trusted } => {
            let a = store.account_by_email(&email)?.ok_or_else(|| {
                AdminError::Invalid(format!("there is no account with email {email}"))
            })?;
            let a = store.set_trusted(a.id, trusted, &actor, now)?;
            let word = if trusted {
                "trusted: orders are activated at once"
            } else {
                "not trusted: orders wait for payment"
            };
            Ok(AdminReply {
                text: format!("account {} ({}) is {word}\n", a.id, a.email),
                data: serde_json::to_value(&a).unwrap_or_default(),
            })
        }
        AdminRequest::Audit { number, limit } => {
            if let Some(n) = &number {
                if store.license(n)?.is_none() {
                    return Err(LicenseError::UnknownLicense(n.clone()).into());
                }
            }
            let entries = store.audit(number.as_ref(), limit)?;
            let mut text = String::new();
            for e in &entries {
                let lic = e
                    .license
                    .as_ref()
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "-".into());
                text.push_str(&format!(
                    "{} {:<10} {:<22} {:<28} {}\n",
                    e.at,
                    lic,
                    e.action,
                    e.actor.to_string(),
                    e.detail
                ));
            }
            Ok(AdminReply {
                text,
                data: serde_json::to_value(&entries).unwrap_or_default(),
            })
        }
        AdminRequest::Backup { path } => {
            if !path.is_absolute() {
                return Err(AdminError::Invalid(
                    "the backup path must be absolute".into(),
                ));
            }
            let summary = store.backup_to(&path, now)?;
            Ok(AdminReply {
                text: format!(
                    "backup written to {}: {} entries, {} licenses, schema version {}\n\
                     (the signing key and QUIC certificate are files in the data directory; back them up once, separately)\n",
                    path.display(),
                    summary.entries,
                    summary.licenses,
                    summary.schema_version
                ),
                data: serde_json::json!({"path": path, "entries": summary.entries, "licenses": summary.licenses}),
            })
        }
        AdminRequest::Identity => Ok(AdminReply {
            text: ctx.identity.clone(),
            data: serde_json::json!({"notice": ctx.identity}),
        }),
        AdminRequest::DaemonConfig { number } => {
            if let Some(n) = &number {
                // A number that is not a license here would make a daemon
                // that can never activate.
                store
                    .license(n)?
                    .ok_or_else(|| LicenseError::UnknownLicense(n.clone()))?;
            }
            let text = ctx.daemon.render(number.as_ref());
            Ok(AdminReply {
                data: serde_json::json!({
                    "server": ctx.daemon.server(),
                    "servers": ctx.daemon.servers,
                    "trusted_keys": ctx.daemon.key_texts(),
                    "server_cert_sha256": ctx.daemon.cert_sha256,
                    "license_number": number,
                    "toml": text,
                }),
                text,
            })
        }
        AdminRequest::ExportLicense { number } => {
            let license = store
                .license(&number)?
                .ok_or_else(|| LicenseError::UnknownLicense(number.clone()))?;
            let file = crate::license_file::render(store, &ctx.key, &license)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            Ok(AdminReply {
                data: serde_json::json!({"license_number": number, "file": file}),
                text: file,
            })
        }
        AdminRequest::OfflineAnswer { request } => {
            let request = wire::offline::read_request(&request)
                .map_err(|e| AdminError::Invalid(format!("the request file: {e}")))?;
            let service = match &ctx.daemon_service {
                Some(s) => Arc::clone(s),
                None => Arc::new(crate::service::Service::new(
                    store.clone(),
                    ctx.key.clone(),
                    ctx.clock.clone(),
                    u32::MAX,
                )),
            };
            let operator = match &actor {
                Actor::Admin(name) => name.clone(),
                other => other.to_string(),
            };
            let response = service.answer_offline(
                request.clone(),
                &crate::service::OfflineAuthor::Vendor(operator),
            );
            let outcome = crate::service::offline_outcome(&response, &ctx.key);
            let file = wire::offline::write_answer(&request, &response)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            Ok(AdminReply {
                data: serde_json::json!({
                    "license_number": request.license_number(),
                    "hardware_id": request.hardware_id().to_string(),
                    "outcome": outcome,
                    "file": file,
                }),
                text: file,
            })
        }
        AdminRequest::Schema => {
            let found = store.schema_version()?;
            Ok(schema_reply(Some(found)))
        }
        AdminRequest::Verify => {
            let mut problems = store.verify()?;
            problems.extend(store.verify_grants(&keys::TrustedKeys::with([ctx.key.public()]))?);
            if !problems.is_empty() {
                // A finding is an error: the command exits non-zero.
                let listed: String = problems.iter().map(|p| format!("\nPROBLEM: {p}")).collect();
                return Err(AdminError::Invalid(format!(
                    "the database check found {} problem(s):{listed}",
                    problems.len()
                )));
            }
            let licenses = store.license_count()?;
            Ok(AdminReply {
                text: format!("database consistent: {licenses} licenses\n"),
                data: serde_json::json!({"problems": problems, "licenses": licenses}),
            })
        }
    }
}

fn type_name(t: LicenseType) -> &'static str {
    match t {
        LicenseType::Standard => "standard",
        LicenseType::Engineering => "engineering",
    }
}

fn protection_name(p: Protection) -> &'static str {
    match p {
        Protection::SoftDongle => "soft-dongle",
        Protection::HardDongle => "hard-dongle",
        Protection::Engineering => "engineering",
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// What `mark-paid` changed: the orders activated, the services before and after,
/// and the grant it issued. Never the token (`show` prints that).
fn paid_reply(
    store: &Store,
    before: &License,
    activated: &[crate::domain::Mutation],
) -> Result<AdminReply, AdminError> {
    let number = &before.number;
    let after: License = store
        .license(number)?
        .ok_or_else(|| LicenseError::UnknownLicense(number.clone()))?;
    let mut t = String::new();
    for m in activated {
        t.push_str(&format!(
            "marked paid: {} ({}), activated\n",
            m.id(),
            format!("{:?}", m.kind).to_lowercase()
        ));
    }
    t.push_str(&format!("License {number}\n"));
    let (old, new) = (&before.entitlements, &after.entitlements);
    for d in keys::Driver::ALL {
        if old.driver(d) != new.driver(d) {
            t.push_str(&format!(
                "  {:<13} {} -> {}\n",
                d.display_name(),
                old.driver(d),
                new.driver(d)
            ));
        }
    }
    for m in new.malm.difference(&old.malm) {
        t.push_str(&format!("  MALM          + {}\n", m.key()));
    }
    for (name, was, is) in [
        ("myStrom", old.mystrom, new.mystrom),
        ("Philips Hue", old.philips_hue, new.philips_hue),
    ] {
        if was != is {
            t.push_str(&format!("  {name:<13} {was} -> {is}\n"));
        }
    }
    for (name, was, is) in [
        ("GE users", old.ge_users, new.ge_users),
        ("pWA users", old.pwa_users, new.pwa_users),
    ] {
        if was != is {
            t.push_str(&format!("  {name:<13} {was} -> {is}\n"));
        }
    }
    if let Some(end) = after.valid_until.filter(|e| Some(*e) != before.valid_until) {
        t.push_str(&format!("  valid until:  {end}\n"));
    }
    let grant = if after.current_grant != before.current_grant {
        after.current_grant
    } else {
        None
    };
    match (grant, &after.binding) {
        (Some(serial), Some(Binding::HardwareId(h))) => t.push_str(&format!(
            "  grant:        serial {serial} issued for hardware ID {h} (the daemon receives it at its next check)\n"
        )),
        (Some(serial), Some(Binding::DongleSerial(s))) => t.push_str(&format!(
            "  grant:        serial {serial} issued for dongle {s} (the license file can be downloaded)\n"
        )),
        (Some(serial), None) => t.push_str(&format!("  grant:        serial {serial} issued\n")),
        (None, _) => t.push_str(
            "  grant:        none yet (issued when a host activates or the dongle serial is entered)\n",
        ),
    }
    let data = serde_json::json!({
        "license": number,
        "activated": activated.iter().map(|m| m.id()).collect::<Vec<_>>(),
        "entitlements_before": old,
        "entitlements": new,
        "grant_serial": grant,
        "valid_until": after.valid_until,
    });
    Ok(AdminReply { text: t, data })
}

fn show(store: &Store, number: &LicenseNumber) -> Result<AdminReply, AdminError> {
    let l: License = store
        .license(number)?
        .ok_or_else(|| LicenseError::UnknownLicense(number.clone()))?;
    let mutations = store.mutations(number)?;
    let check_in = store.last_check_in(number)?;
    let running = store.runtime_running(&l)?;
    let mut t = String::new();
    t.push_str(&format!("License {}\n", l.number));
    t.push_str(&format!("  token:        {}\n", l.token.expose()));
    t.push_str(&format!(
        "  type:         {} / {}\n",
        type_name(l.license_type),
        protection_name(l.protection)
    ));
    let le = &l.licensee;
    t.push_str(&format!(
        "  licensee:     {} ({} {}), {}, {} {}, {}, {}; {} {}\n",
        le.company,
        le.first_name,
        le.last_name,
        le.street,
        le.postcode,
        le.city,
        le.state,
        le.country,
        le.email,
        le.phone
    ));
    t.push_str(&format!(
        "  license data: {}, {} {}\n",
        l.license_data.name, l.license_data.postcode, l.license_data.city
    ));
    let binding = match &l.binding {
        Some(Binding::HardwareId(h)) => format!("hardware ID {h}"),
        Some(Binding::DongleSerial(s)) => format!("dongle {s}"),
        None => "not bound".into(),
    };
    t.push_str(&format!("  binding:      {binding}\n"));
    t.push_str(&format!(
        "  grant serial: {} (current grant: {})\n",
        l.serial,
        l.current_grant.map_or("none".into(), |s| s.to_string())
    ));
    if let Some(end) = l.valid_until {
        t.push_str(&format!("  valid until:  {end}\n"));
    }
    match &check_in {
        Some(c) => t.push_str(&format!(
            "  ProMoS:       {} (last seen {} from {}, host {}, daemon {}, seats GE {} pWA {})\n",
            if running { "running" } else { "stopped" },
            c.at,
            c.from,
            c.hardware_id,
            c.daemon_version,
            c.ge_seats,
            c.pwa_seats
        )),
        None => t.push_str("  ProMoS:       stopped (never seen)\n"),
    }
    if l.entitlements == Entitlements::none() {
        t.push_str("  services:     none active (no mutation activated yet)\n");
    } else {
        let e = &l.entitlements;
        let drivers: Vec<String> = keys::Driver::ALL
            .into_iter()
            .filter(|d| e.driver(*d) > 0)
            .map(|d| format!("{} {}", d.display_name(), e.driver(d)))
            .collect();
        t.push_str(&format!("  drivers:      {}\n", drivers.join(", ")));
        let malm: Vec<&str> = e.malm.iter().map(|m| m.key()).collect();
        t.push_str(&format!(
            "  options:      MALM [{}], myStrom {}, Philips Hue {}, GE users {}, pWA users {}\n",
            malm.join(", "),
            e.mystrom,
            e.philips_hue,
            e.ge_users,
            e.pwa_users
        ));
    }
    t.push_str("  mutations:\n");
    for m in &mutations {
        t.push_str(&format!(
            "    {:<14} {:<8} {:<10} created {}\n",
            m.id(),
            format!("{:?}", m.kind).to_lowercase(),
            m.state.key(),
            m.created_at
        ));
    }
    let data = serde_json::json!({
        "license": l,
        "token": l.token.expose(),
        "mutations": mutations,
        "last_check_in": check_in,
        "running": running,
    });
    Ok(AdminReply { text: t, data })
}

/// Serves the admin socket until `stop` turns true; then stops accepting and
/// returns once every command it accepted has been carried out and answered.
pub async fn serve_socket(
    listener: tokio::net::UnixListener,
    ctx: AdminContext,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = running.join_next(), if !running.is_empty() => continue,
        };
        let ctx = ctx.clone();
        running.spawn(answer(stream, ctx));
    }
    drop(listener);
    let open = running.len();
    if open > 0 {
        tracing::info!(open, "answering the admin commands still running");
    }
    while running.join_next().await.is_some() {}
}

/// Reads one command from `stream`, carries it out and writes the answer.
async fn answer(stream: tokio::net::UnixStream, ctx: AdminContext) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE_BYTES));
    let reply: Result<AdminReply, String> = match reader.read_line(&mut line).await {
        Ok(_) => match serde_json::from_str::<AdminEnvelope>(&line) {
            Ok(envelope) => {
                tracing::info!(operator = %envelope.operator, command = ?command_name(&envelope.request), "admin command");
                match tokio::task::spawn_blocking(move || execute(&ctx, envelope)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the command failed inside the server: {e}")),
                }
            }
            Err(e) => Err(format!("malformed admin request: {e}")),
        },
        Err(e) => Err(format!("cannot read the admin request: {e}")),
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

fn command_name(r: &AdminRequest) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("command").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Sends one command to a running server. `Ok(None)` if no server listens.
pub async fn send(
    socket: &Path,
    envelope: &AdminEnvelope,
) -> Result<Option<Result<AdminReply, String>>, std::io::Error> {
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(envelope).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    write.shutdown().await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    let reply = serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::other(format!("bad answer from the server: {e}")))?;
    Ok(Some(reply))
}
