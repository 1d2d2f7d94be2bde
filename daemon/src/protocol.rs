//! The local socket protocol as types: every request ([`Command`]), every
//! answer ([`Answer`]), the status object ([`Status`]) and the pushed events
//! ([`Event`]). The socket ([`crate::socket`]) and the metrics
//! ([`crate::metrics`]) only build and read these; the JSON the ProMoS runtime
//! sees is what serde makes of them.
//!
//! A compatibility promise (the runtime in the field parses these lines):
//!
//! - The keys of every object come **in alphabetical order**. The protocol
//!   was first built as `serde_json::Value` (a sorted map), and clients may
//!   have come to compare lines; serde writes struct fields in declaration
//!   order, so every struct here declares its fields alphabetically, and the
//!   events (internally tagged, where serde puts the tag first) are written
//!   through a sorted map ([`Event::to_line`]).
//! - Every answer and event is pinned by a snapshot
//!   (`daemon/tests/snapshots/*.json`; `PROMOS_LICD_UPDATE_SNAPSHOTS=1`
//!   rewrites them), so a change of the protocol is a visible diff, and the
//!   README's tables of the status fields and the events are checked against
//!   these types (`protocol::tests`).

use crate::cache::StorageProblem;
use crate::service::{CheckOutcome, Program};
use crate::state::{Phase, Text};
use keys::{Entitlements, LicenseData, LicenseType, MalmModule, Protection, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One request of the protocol, as [`crate::socket::parse_request`] reads it.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Status {},
    Seats {},
    AcquireSeat {
        program: Program,
    },
    ReleaseSeat {
        program: Program,
    },
    RuntimeStarted {},
    RuntimeStopped {},
    Subscribe {},
    CheckNow {},
    Activate {
        license_number: String,
        token: String,
        server: Option<String>,
    },
    Hwid {},
    /// Write a request file (sites without internet); `license_number` only
    /// for a host not activated yet.
    OfflineRequest {
        license_number: Option<String>,
    },
    /// Apply an answer file: its whole text.
    OfflineApply {
        file: String,
    },
}

/// The status object: everything the runtime (and `promos-licd status`, and
/// the metrics) needs to know. Fields in alphabetical order (module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Misconfigurations and storage problems, German and English.
    pub diagnosis: Vec<Text>,
    /// What the license allows; null while not licensed.
    pub entitlements: Option<EntitlementsView>,
    pub grant_serial: Option<u64>,
    pub hardware_id: String,
    /// RFC 3339: server time of the last successful check.
    pub last_check: Option<String>,
    /// Why the last check failed, while it does.
    pub last_check_failure: Option<String>,
    /// Unix seconds of `last_check`.
    pub last_check_unix: Option<u64>,
    pub license_data: Option<LicenseDataView>,
    pub license_number: Option<String>,
    pub license_type: Option<LicenseType>,
    /// **The runtime must stop when this is false.**
    pub licensed: bool,
    /// The effective time (RFC 3339) the status was decided at.
    pub now: String,
    pub protection: Option<Protection>,
    pub reason: Reason,
    pub runtime: Runtime,
    pub seats: SeatsView,
    /// **The runtime must stop when this reaches 0.** Null if no stop is scheduled.
    pub seconds_until_stop: Option<u64>,
    /// The license server that answered last (before any: the first).
    pub server: String,
    /// Every configured license server, in the order they are tried.
    pub servers: Vec<String>,
    pub state: Phase,
    pub stop_at: Option<u64>,
    pub stop_at_text: Option<String>,
    pub storage: Storage,
    pub valid_until: Option<String>,
    pub warning: Option<Text>,
}

/// Why the state is what it is: a stable code and the texts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub de: String,
    pub en: String,
}

/// Whether the ProMoS runtime reports that it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Running,
    Stopped,
}

/// The license data shown in ProMoS (the grant's, keys sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LicenseDataView {
    pub city: String,
    pub name: String,
    pub postcode: String,
}

impl From<&LicenseData> for LicenseDataView {
    fn from(d: &LicenseData) -> Self {
        LicenseDataView {
            city: d.city.clone(),
            name: d.name.clone(),
            postcode: d.postcode.clone(),
        }
    }
}

/// The grant's entitlements as the protocol shows them: keys sorted, drivers
/// by their name (not by the order of `keys::Driver`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntitlementsView {
    pub drivers: BTreeMap<String, u32>,
    pub ge_users: u32,
    pub malm: BTreeSet<MalmModule>,
    pub mystrom: bool,
    pub philips_hue: bool,
    pub pwa_users: u32,
}

impl From<&Entitlements> for EntitlementsView {
    fn from(e: &Entitlements) -> Self {
        EntitlementsView {
            drivers: e.drivers.iter().map(|(d, n)| (snake_name(d), *n)).collect(),
            ge_users: e.ge_users,
            malm: e.malm.clone(),
            mystrom: e.mystrom,
            philips_hue: e.philips_hue,
            pwa_users: e.pwa_users,
        }
    }
}

/// The name serde gives a unit variant (`Driver::BacnetIp` is `bacnet_ip`).
fn snake_name(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// Seats in use and licensed, per program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeatsView {
    pub ge: SeatCount,
    pub pwa: SeatCount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeatCount {
    pub limit: u32,
    pub used: u32,
}

/// The health of the stored license state (README, "The cache").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub ok: bool,
    pub problems: Vec<StorageProblem>,
    /// The license number being fetched from the server after the state was lost.
    pub recovering_license: Option<String>,
    /// The error of the last write, while writes fail (disk full).
    pub write_error: Option<String>,
}

/// A change pushed to subscribers (one line each). Written with sorted keys
/// by [`Event::to_line`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A warning to show (server unreachable, dongle removed, 1-hour run, conflicts).
    WarningBegins { warning: Text },
    /// The runtime must stop at `at` (Unix seconds; `at_text` RFC 3339).
    StopScheduled { at: UnixTime, at_text: String },
    /// A newer grant is in force (upgrade, renewal).
    NewGrant { serial: u64 },
    /// The license ended: the runtime must stop now.
    LicenseEnded { reason_code: String, reason: Text },
    /// Licensed again after the license ended.
    LicenseRestored,
    /// The scheduled stop is off (dongle back, server reached again).
    StopCancelled,
}

impl Event {
    /// One line of the protocol (without `\n`), keys sorted.
    pub fn to_line(&self) -> Vec<u8> {
        // Through a sorted map: serde writes an internally tagged enum's tag
        // first, and the events have always had their keys sorted.
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// The protocol's name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Event::WarningBegins { .. } => "warning_begins",
            Event::StopScheduled { .. } => "stop_scheduled",
            Event::NewGrant { .. } => "new_grant",
            Event::LicenseEnded { .. } => "license_ended",
            Event::LicenseRestored => "license_restored",
            Event::StopCancelled => "stop_cancelled",
        }
    }
}

/// The stable error codes of `"ok": false` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not a request (not JSON, not an object, unknown command).
    BadRequest,
    /// A request line over [`crate::socket::MAX_LINE`]; the connection closes.
    LineTooLong,
    NoSeatFree,
    NoSeatHeld,
    RuntimeAlreadyRunning,
    NotRunningHere,
    BadLicenseNumber,
    /// Activation could not reach the server or got no usable answer.
    ActivationFailed,
}

/// One answer line. Every variant's fields are in alphabetical order, `id`
/// among them (the request's `id`, echoed; absent if it had none).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `status`, `runtime_started`, `activate`.
    Status {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        status: StatusJson,
    },
    /// `check_now`.
    Check {
        check: CheckOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        status: StatusJson,
    },
    /// `acquire_seat`.
    SeatAcquired {
        held: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        limit: u32,
        ok: bool,
        program: Program,
        used: u32,
    },
    /// `release_seat`.
    SeatReleased {
        held: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        program: Program,
        used: u32,
    },
    /// `seats`.
    Seats {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        seats: SeatsView,
    },
    /// `subscribe`.
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        subscribed: bool,
    },
    /// `hwid`.
    Hwid {
        hardware_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
    },
    /// `offline_request`: the request file's name and text.
    OfflineRequest {
        file: String,
        file_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
    },
    /// `offline_apply`: what the answer did, and the status after it.
    OfflineApplied {
        applied: crate::service::OfflineApplied,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        status: StatusJson,
    },
    /// `offline_request` / `offline_apply` refused: a stable code
    /// (`other_host`, `not_waiting`, `older_answer`, `bad_file`, ...) and why,
    /// in English and German.
    OfflineRefused {
        /// Always `offline_refused`.
        error: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        message: String,
        message_de: String,
        ok: bool,
        reason: &'static str,
    },
    /// `runtime_stopped`.
    Done {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
    },
    /// `activate` refused by the server: its reason code and both texts.
    ActivationRefused {
        /// Always `activation_refused`.
        error: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        message: String,
        message_de: String,
        ok: bool,
        reason: &'static str,
    },
    /// Any other `"ok": false`.
    Error {
        error: ErrorCode,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        message: String,
        ok: bool,
    },
}

impl Answer {
    pub fn status(status: StatusJson) -> Answer {
        Answer::Status {
            id: None,
            ok: true,
            status,
        }
    }

    pub fn error(error: ErrorCode, message: impl Into<String>) -> Answer {
        Answer::Error {
            error,
            id: None,
            message: message.into(),
            ok: false,
        }
    }

    pub fn activation_refused(reason: &'static str, en: &str, de: &str) -> Answer {
        Answer::ActivationRefused {
            error: "activation_refused",
            id: None,
            message: en.to_owned(),
            message_de: de.to_owned(),
            ok: false,
            reason,
        }
    }

    /// An offline request or answer file refused: its code and why.
    pub fn offline_refused(e: &crate::service::OfflineError) -> Answer {
        Answer::OfflineRefused {
            error: "offline_refused",
            id: None,
            message: e.to_string(),
            message_de: e.message_de(),
            ok: false,
            reason: e.code(),
        }
    }

    /// Echoes the request's `id`.
    pub fn with_id(mut self, request_id: Option<Value>) -> Answer {
        match &mut self {
            Answer::Status { id, .. }
            | Answer::OfflineRequest { id, .. }
            | Answer::OfflineApplied { id, .. }
            | Answer::OfflineRefused { id, .. }
            | Answer::Check { id, .. }
            | Answer::SeatAcquired { id, .. }
            | Answer::SeatReleased { id, .. }
            | Answer::Seats { id, .. }
            | Answer::Subscribed { id, .. }
            | Answer::Hwid { id, .. }
            | Answer::Done { id, .. }
            | Answer::ActivationRefused { id, .. }
            | Answer::Error { id, .. } => *id = request_id,
        }
        self
    }

    /// One line of the protocol, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        if serde_json::to_writer(&mut line, self).is_err() {
            // Cannot happen (no map with non-string keys, no failing
            // Serialize impl); still, never a half line.
            line =
                br#"{"error":"internal","message":"answer not serializable","ok":false}"#.to_vec();
        }
        line.push(b'\n');
        line
    }
}

/// A status object already serialized, shared by every answer that carries
/// the same status (the socket builds it once per state change and second;
/// see `Shared::status_json`). serde_json writes it as it is.
#[derive(Clone, Debug)]
pub struct StatusJson(std::sync::Arc<Box<serde_json::value::RawValue>>);

impl StatusJson {
    pub fn new(status: &Status) -> StatusJson {
        let raw = serde_json::value::to_raw_value(status)
            .expect("a Status always serializes (string keys, no failing impls)");
        StatusJson(std::sync::Arc::new(raw))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for StatusJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for StatusJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self.0).serialize(s)
    }
}

#[cfg(test)]
pub(crate) mod tests;
