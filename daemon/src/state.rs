//! The license state machine: a sans-IO core (no sockets, no clock, no disk).
//!
//! [`LicenseMachine`] takes [`Input`]s (a check succeeded, no answer, a refusal,
//! a dongle scan, the runtime started or stopped, a tick) together with the
//! time they happened ([`Now`]) and answers with a [`Decision`]: licensed or
//! not, the warning (German and English), when the runtime must stop, the
//! entitlements and the reason. Changes of the decision come back as
//! [`Output`]s (events to push to subscribers, "check now"), and
//! [`LicenseMachine::poll_timeout`] names the next moment anything can change
//! (like quinn-proto's `poll_timeout`), so the shell sleeps until exactly then.
//! The tokio shell in [`crate::service`] only moves bytes and time; every rule
//! lives here, so a test walks 40 simulated days in milliseconds.
//!
//! # The rules (PRODUCT.md, manual chapter 10)
//!
//! - **Soft dongle**: check at start and once a day. Periods count from `L`,
//!   the server time in the signed receipt of the last successful check.
//!   `now < L + 10 d`: licensed, silent. `L + 10 d <= now < L + 30 d`: licensed
//!   with the warning that the license server is not reachable, stop scheduled
//!   at `L + 30 d`. Later, a runtime that was already running must stop at
//!   `L + 30 d`; every runtime start after that gets 1 hour. One successful
//!   check restores normal operation. A signed refusal (reset, expired, wrong
//!   host, ...) ends the license at once.
//! - **Hard dongle**: `lic/promos.json` verifies and a dongle with the serial it
//!   names is present. Dongle removed: licensed for 1 more hour after it was last
//!   seen, then stop; back in time: normal. No network at all.
//! - **Engineering**: online activation, the same daily check and offline
//!   periods as a soft dongle, each runtime start may run 24 hours, and the
//!   grant's `valid_until` (3 years) ends it.
//! - **Conflicts**: a soft-dongle or engineering host with a hardware dongle
//!   plugged in, or with a JSON license in `lic/`, gets a diagnosis (shown as a
//!   warning and in `diagnosis`); it does not stop a running plant by itself.
//!
//! # The clock-rollback rule
//!
//! Every rule is evaluated at the *effective time*
//!
//! ```text
//! effective = max(wall clock, persisted high-water mark, anchor + monotonic time since start)
//! ```
//!
//! where `anchor` is the effective time when the daemon started and the
//! monotonic time comes from the OS and cannot be set. The high-water mark is
//! the largest effective time ever seen (and at least the newest receipt's
//! server time); it is persisted at every tick. So:
//!
//! 1. time used by the rules never goes backwards, across restarts either;
//! 2. within a run it advances at least as fast as real time, so setting the
//!    clock back during a 1-hour run, a 24-hour run, a dongle grace hour or a
//!    grace period does not slow any of them down;
//! 3. setting the clock forward is permanent (it only ever shortens periods);
//! 4. a receipt whose server time lies more than [`FUTURE_TOLERANCE_SECS`]
//!    ahead of the effective time is refused (the host clock is wrong, or the
//!    receipt would start the periods in the future); an accepted receipt
//!    raises the high-water mark to its server time.
//!
//! A daemon restart is not a runtime start: the open run is persisted with the
//! boot ID, and a runtime reconnecting in the same boot continues it (see
//! [`OpenRun`]), so restarting the daemon never buys a new 1-hour or 24-hour run.
//!
//! What it cannot do: while the daemon is stopped nothing measures time, so an
//! attacker who stops the daemon and sets the clock back gets nothing back, but
//! the downtime itself is not counted either (no runtime can be licensed
//! without the daemon). Restoring an old copy of the data directory restores
//! its high-water mark; signed state cannot defend against that without a
//! trusted clock, which these sites do not have.

use keys::{
    Binding, DongleSerial, Entitlements, HardwareId, LicenseGrant, Protection, UnixTime, Verified,
};
use serde::{Deserialize, Serialize};
use wire::{CheckReceipt, Nonce, Refusal, RefusalReason};

/// Licensed and silent for this long after the last successful check.
pub const SILENT_SECS: u64 = 10 * UnixTime::DAY;
/// Then licensed with a warning for this much longer (manual: "a further 20 days").
pub const WARNING_SECS: u64 = 20 * UnixTime::DAY;
/// After the grace periods every start without a server answer gets this long.
pub const OFFLINE_START_SECS: u64 = UnixTime::HOUR;
/// A removed hardware dongle is tolerated this long ("about one hour").
pub const DONGLE_GRACE_SECS: u64 = UnixTime::HOUR;
/// Each engineering runtime start may run this long.
pub const ENGINEERING_RUN_SECS: u64 = 24 * UnixTime::HOUR;
/// The soft dongle checks once a day.
pub const CHECK_INTERVAL_SECS: u64 = UnixTime::DAY;
/// A receipt whose server time is more than this ahead of our effective time is
/// refused. One hour tolerates a clock that drifted for months without NTP, but
/// not one set a day back to stretch the periods.
pub const FUTURE_TOLERANCE_SECS: u64 = UnixTime::HOUR;
/// After a failed check, retry after 1 minute, doubling up to this (1 hour): a
/// site with a bad line reconnects soon, and a dead server is not hammered.
pub const MAX_RETRY_SECS: u64 = UnixTime::HOUR;
/// Checks sent through peers whose answer may still come (store and forward).
/// A relay keeps a queued check until its uplink returns, which may be days; the
/// daemon checks at most hourly while offline, so 64 covers a few days of
/// retries, and the oldest are forgotten first (a newer answer supersedes them).
pub const MAX_PENDING_NONCES: usize = 64;
/// Request files written whose answer file may still come (sites without any
/// internet). Kept apart from [`MAX_PENDING_NONCES`], which hourly failing
/// network checks fill within days, while a file may travel for weeks. A
/// customer has one request underway, rarely a few; 16 forgives many
/// abandoned ones (the oldest is forgotten first).
pub const MAX_OFFLINE_PENDING: usize = 16;
const FIRST_RETRY_SECS: u64 = 60;

/// One reading of the clocks, taken by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The wall clock (can be set by anyone with root).
    pub wall: UnixTime,
    /// Seconds of monotonic time since the daemon started (cannot be set).
    pub since_start: u64,
}

/// Keeps the effective time (see the module doc's rollback rule).
#[derive(Clone, Debug)]
pub struct TimeKeeper {
    high_water: UnixTime,
    anchor: UnixTime,
}

impl TimeKeeper {
    /// Starts a run: the anchor is the effective time at start.
    pub fn start(high_water: UnixTime, now: Now) -> Self {
        let anchor = high_water.max(now.wall);
        TimeKeeper {
            high_water: anchor.max(anchor.plus_secs(now.since_start)),
            anchor,
        }
    }

    /// The effective time of `now`; raises the high-water mark.
    pub fn effective(&mut self, now: Now) -> UnixTime {
        let t = now
            .wall
            .max(self.high_water)
            .max(self.anchor.plus_secs(now.since_start));
        self.high_water = t;
        t
    }

    pub fn high_water(&self) -> UnixTime {
        self.high_water
    }

    fn raise_to(&mut self, t: UnixTime) {
        self.high_water = self.high_water.max(t);
    }
}

/// What happened, as far as the license is concerned.
#[derive(Clone, Debug)]
pub enum Input {
    /// A periodic wake-up: re-evaluate (stop times may have been reached).
    Tick,
    /// The server answered a check (or an activation) with a verified receipt
    /// and maybe a newer verified grant. `nonce` is what this daemon sent.
    CheckSucceeded {
        nonce: Nonce,
        receipt: Verified<CheckReceipt>,
        grant: Option<Verified<LicenseGrant>>,
    },
    /// The server answered an activation (a new binding of this host) with a
    /// verified grant and receipt. As `CheckSucceeded`, and every check sent
    /// before it is stale: its answer was decided before the binding (a
    /// refusal after a reset the activation undid must not end the license
    /// again; in the same second it would win over the receipt).
    Activated {
        nonce: Nonce,
        receipt: Verified<CheckReceipt>,
        grant: Verified<LicenseGrant>,
    },
    /// No usable answer (no network, timeout, server error, bad signature).
    CheckFailed {
        reason: String,
    },
    /// The server refused this host (verified).
    Refused {
        nonce: Nonce,
        refusal: Verified<Refusal>,
    },
    /// A check was sent (directly or through a peer) with this nonce; its answer
    /// may come late, through a peer (store and forward).
    CheckSent {
        nonce: Nonce,
    },
    /// A verified receipt (and maybe grant) that came back through a peer, possibly
    /// long after the check. Accepted only if it answers a check this daemon sent
    /// and has not had answered yet (so a replay changes nothing).
    LateReceipt {
        receipt: Verified<CheckReceipt>,
        grant: Option<Verified<LicenseGrant>>,
    },
    /// A verified refusal that came back through a peer; same rule as `LateReceipt`.
    LateRefusal {
        refusal: Verified<Refusal>,
    },
    /// A verified grant a peer passed on (gossip). For this host's license: a
    /// higher serial bound here is an upgrade or renewal; a higher serial bound
    /// elsewhere means the license was reset and moved, and ends it here.
    PeerGrant {
        grant: Verified<LicenseGrant>,
    },
    /// A request file was written with this nonce (`promos-licd offline
    /// request`); its answer file may come days later.
    OfflineRequested {
        nonce: Nonce,
    },
    /// A verified answer file. The shell asks
    /// [`LicenseMachine::offline_verdict`] first: an answer it refuses changes
    /// nothing; one it accepts is taken exactly as a network answer.
    OfflineAnswer(OfflineAnswer),
    /// The serials of the ProMoS dongles currently plugged in.
    DongleScan(Vec<DongleSerial>),
    /// What the `lic/` directory holds.
    ProjectScan(ProjectScan),
    /// The ProMoS runtime reported that it started / stopped.
    RuntimeStarted,
    RuntimeStopped,
}

/// What an answer file brought, verified.
// One per applied file; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum OfflineAnswer {
    /// An activation's or check's receipt, and the grant if one came along.
    Receipt {
        receipt: Verified<CheckReceipt>,
        grant: Option<Verified<LicenseGrant>>,
    },
    Refusal(Verified<Refusal>),
}

impl OfflineAnswer {
    fn nonce(&self) -> Nonce {
        match self {
            OfflineAnswer::Receipt { receipt, .. } => receipt.nonce,
            OfflineAnswer::Refusal(r) => r.nonce,
        }
    }
}

/// Why an answer file is not taken. Nothing changes when one is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfflineRefusal {
    #[error("this answer is for the host with hardware ID {answer}, this host is {this}: apply it on the host that wrote the request")]
    OtherHost {
        answer: HardwareId,
        this: HardwareId,
    },
    #[error("this answer answers no request file this host is waiting for: it was applied already, or the request was not written on this host (write a new request with `promos-licd offline request`)")]
    NotWaiting,
    #[error("a newer answer (server time {held}) is already in force; this one (server time {answer}) would turn the time back, and is not taken")]
    Older { held: UnixTime, answer: UnixTime },
    #[error("this answer is for license {answer}, this host holds license {held}")]
    OtherLicense {
        answer: keys::LicenseNumber,
        held: keys::LicenseNumber,
    },
    #[error("the answer's server time {answer} is more than 1 hour ahead of this computer's clock {here}: set the clock right and apply it again")]
    ClockBehind { answer: UnixTime, here: UnixTime },
}

/// The license files found in the project's `lic/` directory.
#[derive(Clone, Debug, Default)]
pub struct ProjectScan {
    /// `lic/promos.json`: `None` if absent, else the verification result.
    pub promos_json: Option<Result<Verified<LicenseGrant>, String>>,
    /// Names of other `*.json` files in `lic/` (e.g. `<number>.json`).
    pub other_json: Vec<String>,
}

/// Where the license stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No grant and no license file: run `promos-licd activate`.
    NotActivated,
    /// Licensed, nothing to say.
    Licensed,
    /// Soft dongle / engineering: server unreachable for 10+ days, stop scheduled.
    ServerUnreachable,
    /// Grace periods over: this runtime start runs 1 hour.
    OfflineStartHour,
    /// Hard dongle removed: runs until 1 hour after it was last seen.
    DongleRemoved,
    /// The runtime must stop now (grace over, 1-hour or 24-hour run over).
    Stopped,
    /// The server refused this host (reset, expired, wrong host, ...).
    Refused,
    /// The grant's validity (engineering: 3 years) has ended.
    Expired,
    /// Hard dongle: the dongle named in the license file is not plugged in.
    DongleMissing,
    /// `lic/promos.json` does not verify or is not a hard-dongle license.
    InvalidLicenseFile,
    /// The grant is bound to another hardware ID.
    WrongHost,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::NotActivated,
        Phase::Licensed,
        Phase::ServerUnreachable,
        Phase::OfflineStartHour,
        Phase::DongleRemoved,
        Phase::Stopped,
        Phase::Refused,
        Phase::Expired,
        Phase::DongleMissing,
        Phase::InvalidLicenseFile,
        Phase::WrongHost,
    ];

    /// The protocol's name (`server_unreachable`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::NotActivated => "not_activated",
            Phase::Licensed => "licensed",
            Phase::ServerUnreachable => "server_unreachable",
            Phase::OfflineStartHour => "offline_start_hour",
            Phase::DongleRemoved => "dongle_removed",
            Phase::Stopped => "stopped",
            Phase::Refused => "refused",
            Phase::Expired => "expired",
            Phase::DongleMissing => "dongle_missing",
            Phase::InvalidLicenseFile => "invalid_license_file",
            Phase::WrongHost => "wrong_host",
        }
    }

    pub fn is_licensed(self) -> bool {
        matches!(
            self,
            Phase::Licensed
                | Phase::ServerUnreachable
                | Phase::OfflineStartHour
                | Phase::DongleRemoved
        )
    }
}

/// A text for the user in both languages of the manual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub de: String,
    pub en: String,
}

impl Text {
    fn new(de: impl Into<String>, en: impl Into<String>) -> Self {
        Text {
            de: de.into(),
            en: en.into(),
        }
    }
}

/// What the machine decided at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub phase: Phase,
    pub licensed: bool,
    /// Shown to the user while licensed (server unreachable, dongle removed,
    /// 1-hour run, conflicts).
    pub warning: Option<Text>,
    /// When the runtime must stop, if a stop is scheduled.
    pub stop_at: Option<UnixTime>,
    /// Present only while licensed.
    pub entitlements: Option<Entitlements>,
    /// Why the phase is what it is (a stable code and the texts).
    pub reason_code: &'static str,
    pub reason: Text,
    /// Misconfigurations found (manual chapter 11), in English and German.
    pub diagnosis: Vec<Text>,
    pub now: UnixTime,
}

/// A change worth telling the runtime about (pushed to subscribers; the
/// protocol's type, [`crate::protocol::Event`]).
pub use crate::protocol::Event;

/// What the shell should do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Push this to subscribers.
    Notify(Event),
    /// Run a check with the server as soon as possible.
    CheckNow,
}

/// How the machine is licensed, derived from grant and license file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Online,
    HardDongle,
    None,
}

/// The state that survives restarts (the shell stores it in sled).
#[derive(Clone, Debug)]
pub struct Persisted {
    /// Last verified grant from the server (soft dongle / engineering).
    pub grant: Option<Verified<LicenseGrant>>,
    /// Receipt of the last successful check.
    pub receipt: Option<Verified<CheckReceipt>>,
    /// The refusal that ended the license, if one did and no check succeeded since.
    pub refusal: Option<Verified<Refusal>>,
    pub high_water: UnixTime,
    /// Effective time the hard dongle was last seen.
    pub dongle_last_seen: Option<UnixTime>,
    /// The runtime run that was open when the daemon last stopped.
    pub open_run: Option<OpenRun>,
    /// Nonces of checks sent whose answer has not come yet (oldest first).
    pub pending: Vec<Nonce>,
    /// Nonces of request files written whose answer file has not been
    /// applied yet (oldest first, at most [`MAX_OFFLINE_PENDING`]).
    pub offline_pending: Vec<Nonce>,
    /// A newer grant of this host's license bound to another host (the license
    /// was reset and moved), learned from a peer.
    pub superseded: Option<Verified<LicenseGrant>>,
}

/// A runtime run that was open when the daemon stopped, and the boot it was in.
///
/// A daemon restart is not a runtime start: if the daemon comes back in the same
/// boot (same `/proc/sys/kernel/random/boot_id`), the runtime that reconnects
/// continues this run, so restarting the daemon never buys a new 1-hour or
/// 24-hour run. After a reboot the runtime has certainly restarted, and its
/// start is a new run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRun {
    pub started: UnixTime,
    pub boot_id: String,
}

impl Default for Persisted {
    fn default() -> Self {
        Persisted {
            grant: None,
            receipt: None,
            refusal: None,
            high_water: UnixTime(0),
            dongle_last_seen: None,
            open_run: None,
            pending: Vec::new(),
            offline_pending: Vec::new(),
            superseded: None,
        }
    }
}

/// The license state machine. See the module doc for the rules.
#[derive(Debug)]
pub struct LicenseMachine {
    hardware_id: HardwareId,
    time: TimeKeeper,
    grant: Option<Verified<LicenseGrant>>,
    receipt: Option<Verified<CheckReceipt>>,
    refusal: Option<Verified<Refusal>>,
    pending: Vec<Nonce>,
    /// Checks sent before the last activation (at most
    /// [`MAX_PENDING_NONCES`]): their answers are ignored. Not persisted: a
    /// restart ends every check in flight.
    stale: Vec<Nonce>,
    offline_pending: Vec<Nonce>,
    superseded: Option<Verified<LicenseGrant>>,
    file: Option<Result<Verified<LicenseGrant>, String>>,
    other_json: Vec<String>,
    dongles: Vec<DongleSerial>,
    dongle_last_seen: Option<UnixTime>,
    /// Effective time the current runtime run started.
    run_started: Option<UnixTime>,
    /// A run of this boot left open by the previous daemon process, continued
    /// by the next `RuntimeStarted`.
    adoptable_run: Option<UnixTime>,
    boot_id: String,
    failures: u32,
    last_attempt: Option<UnixTime>,
    last_failure: Option<String>,
    clock_warning: Option<Text>,
    last: Option<Decision>,
    /// The effective time `last` was decided at (the last input): moments
    /// after it are still to be handled (see [`LicenseMachine::poll_timeout`]).
    evaluated_at: UnixTime,
}

impl LicenseMachine {
    /// The daemon started with `persisted` state (already verified by the cache).
    /// Returns the machine and its first outputs (a check, for online licenses).
    /// `boot_id` identifies this boot of the machine (see [`OpenRun`]).
    pub fn start(
        hardware_id: HardwareId,
        persisted: Persisted,
        boot_id: &str,
        now: Now,
    ) -> (Self, Vec<Output>) {
        let mut high_water = persisted.high_water;
        if let Some(r) = &persisted.receipt {
            high_water = high_water.max(r.server_time);
        }
        let mut m = LicenseMachine {
            hardware_id,
            time: TimeKeeper::start(high_water, now),
            grant: persisted.grant,
            receipt: persisted.receipt,
            refusal: persisted.refusal,
            pending: persisted.pending,
            stale: Vec::new(),
            offline_pending: persisted.offline_pending,
            superseded: persisted.superseded,
            file: None,
            other_json: Vec::new(),
            dongles: Vec::new(),
            dongle_last_seen: persisted.dongle_last_seen,
            run_started: None,
            adoptable_run: persisted
                .open_run
                .filter(|r| r.boot_id == boot_id)
                .map(|r| r.started),
            boot_id: boot_id.to_owned(),
            failures: 0,
            last_attempt: None,
            last_failure: None,
            clock_warning: None,
            last: None,
            evaluated_at: UnixTime(0),
        };
        let mut out = m.diff(now);
        if m.mode() == Mode::Online {
            out.push(Output::CheckNow);
        }
        (m, out)
    }

    /// Feeds one input; returns what changed.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Output> {
        let t = self.time.effective(now);
        let mut extra = Vec::new();
        match input {
            Input::Tick => {}
            Input::CheckSucceeded { nonce, .. } | Input::Refused { nonce, .. }
                if self.stale.contains(&nonce) =>
            {
                // Sent before the activation: decided for an older binding.
            }
            Input::CheckSucceeded {
                nonce,
                receipt,
                grant,
            } => {
                self.pending.retain(|n| *n != nonce);
                extra.extend(self.on_success(nonce, receipt, grant, t, false));
            }
            Input::Activated {
                nonce,
                receipt,
                grant,
            } => {
                self.stale.append(&mut self.pending);
                let excess = self.stale.len().saturating_sub(MAX_PENDING_NONCES);
                self.stale.drain(..excess);
                extra.extend(self.on_success(nonce, receipt, Some(grant), t, false));
            }
            Input::CheckSent { nonce } => {
                if !self.pending.contains(&nonce) {
                    self.pending.push(nonce);
                }
                let excess = self.pending.len().saturating_sub(MAX_PENDING_NONCES);
                self.pending.drain(..excess);
            }
            Input::LateReceipt { receipt, grant } => {
                let nonce = receipt.nonce;
                if self.take_pending(nonce) {
                    extra.extend(self.on_success(nonce, receipt, grant, t, true));
                } else {
                    self.last_failure =
                        Some("a receipt that answers no open check was ignored".into());
                }
            }
            Input::LateRefusal { refusal } => {
                let nonce = refusal.nonce;
                if self.take_pending(nonce) {
                    self.on_refusal(nonce, refusal, t);
                } else {
                    self.last_failure =
                        Some("a refusal that answers no open check was ignored".into());
                }
            }
            Input::PeerGrant { grant } => extra.extend(self.on_peer_grant(grant)),
            Input::OfflineRequested { nonce } => {
                if !self.offline_pending.contains(&nonce) {
                    self.offline_pending.push(nonce);
                }
                let excess = self
                    .offline_pending
                    .len()
                    .saturating_sub(MAX_OFFLINE_PENDING);
                self.offline_pending.drain(..excess);
            }
            Input::OfflineAnswer(answer) => {
                if self.offline_verdict(&answer, now).is_ok() {
                    let nonce = answer.nonce();
                    self.offline_pending.retain(|n| *n != nonce);
                    match answer {
                        OfflineAnswer::Receipt { receipt, grant } => {
                            extra.extend(self.on_success(nonce, receipt, grant, t, true))
                        }
                        OfflineAnswer::Refusal(refusal) if self.grant.is_none() => {
                            // A refused activation: nothing to end here (as a
                            // refused network activation, it is only reported).
                            self.last_failure = Some(format!(
                                "the activation by file was refused: {}",
                                refusal.reason.message(false)
                            ));
                        }
                        OfflineAnswer::Refusal(refusal) => self.on_refusal(nonce, refusal, t),
                    }
                }
            }
            Input::CheckFailed { reason } => {
                self.failures = self.failures.saturating_add(1);
                self.last_attempt = Some(t);
                self.last_failure = Some(reason);
            }
            Input::Refused { nonce, refusal } => {
                self.pending.retain(|n| *n != nonce);
                self.on_refusal(nonce, refusal, t);
            }
            Input::DongleScan(serials) => self.dongles = serials,
            Input::ProjectScan(scan) => {
                self.file = scan.promos_json;
                self.other_json = scan.other_json;
            }
            Input::RuntimeStarted => {
                if self.run_started.is_none() {
                    self.run_started = Some(self.adoptable_run.take().unwrap_or(t));
                    if self.mode() == Mode::Online && self.offline_since(t).is_some() {
                        // "Each start without a server answer": ask first.
                        extra.push(Output::CheckNow);
                    }
                }
            }
            Input::RuntimeStopped => {
                self.run_started = None;
                self.adoptable_run = None;
            }
        }
        if self.mode() == Mode::HardDongle {
            if let Some(serial) = self.hard_serial() {
                if self.dongles.contains(&serial) {
                    self.dongle_last_seen = Some(t);
                }
            }
        }
        let mut out = self.diff(now);
        out.extend(extra);
        if self.check_due(t) && !out.contains(&Output::CheckNow) {
            out.push(Output::CheckNow);
        }
        out
    }

    /// Removes `nonce` from the open checks; false if it was not open.
    fn take_pending(&mut self, nonce: Nonce) -> bool {
        let before = self.pending.len();
        self.pending.retain(|n| *n != nonce);
        self.pending.len() != before
    }

    /// Whether an answer file would be taken, and if not, why. Taken exactly
    /// as a network answer, but only for this host, only for a request file
    /// it is still waiting for (so once), never older than the answer in
    /// force, and under the clock rule of every receipt.
    pub fn offline_verdict(
        &mut self,
        answer: &OfflineAnswer,
        now: Now,
    ) -> Result<(), OfflineRefusal> {
        let t = self.time.effective(now);
        let (host, license, server_time, grant) = match answer {
            OfflineAnswer::Receipt { receipt, grant } => (
                &receipt.hardware_id,
                &receipt.license_number,
                receipt.server_time,
                grant.as_ref(),
            ),
            OfflineAnswer::Refusal(r) => (&r.hardware_id, &r.license_number, r.server_time, None),
        };
        if host != &self.hardware_id {
            return Err(OfflineRefusal::OtherHost {
                answer: host.clone(),
                this: self.hardware_id.clone(),
            });
        }
        if let Some(g) = grant {
            if g.binding != Binding::HardwareId(self.hardware_id.clone()) {
                let answer = match &g.binding {
                    Binding::HardwareId(h) => h.clone(),
                    Binding::DongleSerial(_) => self.hardware_id.clone(),
                };
                return Err(OfflineRefusal::OtherHost {
                    answer,
                    this: self.hardware_id.clone(),
                });
            }
        }
        if !self.offline_pending.contains(&answer.nonce()) {
            return Err(OfflineRefusal::NotWaiting);
        }
        if let Some(held) = &self.grant {
            if &held.license_number != license {
                return Err(OfflineRefusal::OtherLicense {
                    answer: license.clone(),
                    held: held.license_number.clone(),
                });
            }
        }
        let newest = self
            .receipt
            .as_ref()
            .map(|r| r.server_time)
            .into_iter()
            .chain(self.refusal.as_ref().map(|r| r.server_time))
            .max();
        if let Some(held) = newest.filter(|h| *h > server_time) {
            return Err(OfflineRefusal::Older {
                held,
                answer: server_time,
            });
        }
        if server_time > t.plus_secs(FUTURE_TOLERANCE_SECS) {
            return Err(OfflineRefusal::ClockBehind {
                answer: server_time,
                here: t,
            });
        }
        Ok(())
    }

    /// True if a request file with this nonce was written and not answered yet.
    pub fn is_offline_pending(&self, nonce: &Nonce) -> bool {
        self.offline_pending.contains(nonce)
    }

    /// True if a check with this nonce was sent and not answered yet.
    pub fn is_pending(&self, nonce: &Nonce) -> bool {
        self.pending.contains(nonce)
    }

    fn on_refusal(&mut self, nonce: Nonce, refusal: Verified<Refusal>, t: UnixTime) {
        self.last_attempt = Some(t);
        let fits = refusal.nonce == nonce
            && refusal.hardware_id == self.hardware_id
            && self
                .grant
                .as_ref()
                .is_none_or(|g| g.license_number == refusal.license_number);
        if !fits {
            self.failures = self.failures.saturating_add(1);
            self.last_failure = Some("a refusal for another request or host was ignored".into());
            return;
        }
        if self
            .receipt
            .as_ref()
            .is_some_and(|r| r.server_time > refusal.server_time)
        {
            // A late refusal older than a receipt we hold: the newer word wins.
            return;
        }
        self.refusal = Some(refusal);
        self.failures = 0;
    }

    fn on_peer_grant(&mut self, g: Verified<LicenseGrant>) -> Vec<Output> {
        let Some(current) = &self.grant else {
            return Vec::new();
        };
        if g.license_number != current.license_number || g.serial <= current.serial {
            return Vec::new();
        }
        if g.binding == Binding::HardwareId(self.hardware_id.clone()) {
            if self
                .refusal
                .as_ref()
                .is_some_and(|r| r.server_time < g.issued_at)
            {
                // Issued after the refusal (a renewal, a new binding here).
                self.refusal = None;
            }
            let serial = g.serial;
            self.grant = Some(g);
            return vec![Output::Notify(Event::NewGrant { serial })];
        }
        if self.superseded.as_ref().is_none_or(|s| g.serial > s.serial) {
            self.superseded = Some(g);
        }
        Vec::new()
    }

    fn on_success(
        &mut self,
        nonce: Nonce,
        receipt: Verified<CheckReceipt>,
        grant: Option<Verified<LicenseGrant>>,
        t: UnixTime,
        late: bool,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        self.last_attempt = Some(t);
        if receipt.nonce != nonce || receipt.hardware_id != self.hardware_id {
            self.failures = self.failures.saturating_add(1);
            self.last_failure = Some("a receipt for another request or host was ignored".into());
            return out;
        }
        if receipt.server_time > t.plus_secs(FUTURE_TOLERANCE_SECS) {
            self.failures = self.failures.saturating_add(1);
            let msg = format!(
                "the license server's time {} is more than 1 hour ahead of this computer's clock {}; set the clock right",
                receipt.server_time, t
            );
            self.clock_warning = Some(Text::new(
                format!(
                    "Die Uhr dieses Computers geht mehr als 1 Stunde nach (Lizenzserver: {}, hier: {}). Bitte stellen Sie die Uhr richtig.",
                    receipt.server_time, t
                ),
                format!("This computer's clock is more than 1 hour behind the license server ({} here, {} there). Please set the clock right.", t, receipt.server_time),
            ));
            self.last_failure = Some(msg);
            return out;
        }
        if let Some(g) = grant {
            let fits = g.binding == Binding::HardwareId(self.hardware_id.clone())
                && g.license_number == receipt.license_number;
            let newer = self
                .grant
                .as_ref()
                .is_none_or(|old| g.supersedes(old) || old.license_number != g.license_number);
            if fits && newer {
                out.push(Output::Notify(Event::NewGrant { serial: g.serial }));
                self.grant = Some(g);
            }
        }
        let Some(current) = &self.grant else {
            self.last_failure =
                Some("the server confirmed a license this daemon holds no grant for".into());
            return out;
        };
        if current.license_number != receipt.license_number {
            self.failures = self.failures.saturating_add(1);
            self.last_failure = Some("a receipt for another license was ignored".into());
            return out;
        }
        if self
            .receipt
            .as_ref()
            .is_some_and(|old| old.server_time > receipt.server_time)
        {
            // Older than what we hold: keep the newer one (periods only move forward).
            return out;
        }
        if self
            .refusal
            .as_ref()
            .is_some_and(|r| late && r.server_time >= receipt.server_time)
        {
            // A late receipt (an answer to an older check) not newer than the
            // refusal we hold: the refusal stands (in the same second, the
            // reset wins). A direct answer to a check sent after the refusal
            // is newer by causality and restores the license.
            return out;
        }
        self.time.raise_to(receipt.server_time);
        self.receipt = Some(receipt);
        self.refusal = None;
        self.failures = 0;
        self.last_failure = None;
        self.clock_warning = None;
        out
    }

    fn mode(&self) -> Mode {
        if self
            .grant
            .as_ref()
            .is_some_and(|g| g.protection != Protection::HardDongle)
        {
            Mode::Online
        } else if self.file.is_some() {
            Mode::HardDongle
        } else {
            Mode::None
        }
    }

    fn hard_serial(&self) -> Option<DongleSerial> {
        match &self.file {
            Some(Ok(g)) => match &g.binding {
                Binding::DongleSerial(s) => Some(s.clone()),
                Binding::HardwareId(_) => None,
            },
            _ => None,
        }
    }

    /// Seconds since the last successful check, if the server is overdue.
    fn offline_since(&self, t: UnixTime) -> Option<u64> {
        let last = self.receipt.as_ref()?.server_time;
        let d = t.since(last);
        (d >= CHECK_INTERVAL_SECS || self.failures > 0).then_some(d)
    }

    /// When the next check with the server is due (online licenses only).
    pub fn next_check_at(&self) -> Option<UnixTime> {
        if self.mode() != Mode::Online {
            return None;
        }
        if self.failures > 0 {
            let shift = self.failures.saturating_sub(1).min(16);
            let wait = (FIRST_RETRY_SECS << shift).min(MAX_RETRY_SECS);
            return Some(self.last_attempt.unwrap_or(UnixTime(0)).plus_secs(wait));
        }
        if self.refusal.is_some() {
            // Ask again daily: the vendor may have fixed what was refused.
            return Some(
                self.last_attempt
                    .unwrap_or(UnixTime(0))
                    .plus_secs(CHECK_INTERVAL_SECS),
            );
        }
        Some(match &self.receipt {
            Some(r) => r.next_check_due.clamp(
                r.server_time.plus_secs(FIRST_RETRY_SECS),
                r.server_time.plus_secs(CHECK_INTERVAL_SECS),
            ),
            None => UnixTime(0),
        })
    }

    /// The next moment (effective time) at which anything can change: the
    /// next check, the start of the warning, a scheduled stop (end of the
    /// grace periods, of a 1-hour or a 24-hour run, of the dongle hour), the
    /// end of validity. Only moments after the last input count (a moment
    /// already passed but not handled yet is returned: the shell feeds a tick
    /// at once); `None` if nothing is scheduled (a hard dongle that is
    /// plugged in). Like quinn-proto's `Connection::poll_timeout`: the shell sleeps
    /// until then, or until an input arrives, and feeds [`Input::Tick`]. The
    /// dongle and `lic/` are not the machine's to poll (the shell scans them
    /// every `tick_secs`).
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        let t = self.evaluated_at;
        let mut at: Vec<UnixTime> = Vec::new();
        at.extend(self.next_check_at());
        match self.mode() {
            Mode::Online => {
                if let Some(g) = &self.grant {
                    at.extend(g.valid_until);
                    let last = self
                        .receipt
                        .as_ref()
                        .map(|r| r.server_time)
                        .unwrap_or(g.issued_at);
                    let warn_from = last.plus_secs(SILENT_SECS);
                    let grace_end = warn_from.plus_secs(WARNING_SECS);
                    at.extend([warn_from, grace_end]);
                    if let Some(s) = self.run_started {
                        if s >= grace_end {
                            at.push(s.plus_secs(OFFLINE_START_SECS));
                        }
                        if g.protection == Protection::Engineering {
                            at.push(s.plus_secs(ENGINEERING_RUN_SECS));
                        }
                    }
                }
            }
            Mode::HardDongle => {
                if let Some(Ok(g)) = &self.file {
                    at.extend(g.valid_until);
                }
                let present = self
                    .hard_serial()
                    .is_some_and(|s| self.dongles.contains(&s));
                if !present {
                    at.extend(
                        self.dongle_last_seen
                            .map(|seen| seen.plus_secs(DONGLE_GRACE_SECS)),
                    );
                }
            }
            Mode::None => {}
        }
        at.into_iter().filter(|a| *a > t).min()
    }

    fn check_due(&self, t: UnixTime) -> bool {
        self.next_check_at().is_some_and(|due| t >= due)
    }

    /// The effective time of `now` (see the module doc's rollback rule).
    pub fn effective(&mut self, now: Now) -> UnixTime {
        self.time.effective(now)
    }

    /// The current decision at `now`.
    pub fn decide(&mut self, now: Now) -> Decision {
        let t = self.time.effective(now);
        self.decide_at(t)
    }

    /// The decision at effective time `t` (does not touch the clock).
    fn decide_at(&self, t: UnixTime) -> Decision {
        let mut diagnosis = self.diagnosis();
        let (phase, warning, stop_at, code, reason) = match self.mode() {
            Mode::Online => self.decide_online(t),
            Mode::HardDongle => self.decide_hard(t),
            Mode::None => {
                let (code, reason) = if !self.other_json.is_empty() {
                    (
                        "license_file_misnamed",
                        Text::new(
                            format!("Nicht aktiviert. Eine Lizenzdatei muss lic/promos.json heissen (gefunden: {}).", self.other_json.join(", ")),
                            format!("Not activated. A license file must be named lic/promos.json (found: {}).", self.other_json.join(", ")),
                        ),
                    )
                } else {
                    (
                        "not_activated",
                        Text::new(
                            "Nicht aktiviert: Lizenzserver-Adresse, Lizenznummer und Lizenz-Token eingeben (promos-licd activate).",
                            "Not activated: enter license server address, license number and license token (promos-licd activate).",
                        ),
                    )
                };
                (Phase::NotActivated, None, None, code, reason)
            }
        };
        let licensed = phase.is_licensed();
        let mut warning = warning;
        if licensed {
            if let Some(cw) = &self.clock_warning {
                diagnosis.push(cw.clone());
            }
            if warning.is_none() {
                warning = diagnosis.first().cloned();
            }
        }
        let entitlements = if licensed {
            self.active_grant().map(|g| g.entitlements.clone())
        } else {
            None
        };
        Decision {
            phase,
            licensed,
            warning,
            stop_at,
            entitlements,
            reason_code: code,
            reason,
            diagnosis,
            now: t,
        }
    }

    fn active_grant(&self) -> Option<&Verified<LicenseGrant>> {
        match self.mode() {
            Mode::Online => self.grant.as_ref(),
            Mode::HardDongle => self.file.as_ref().and_then(|f| f.as_ref().ok()),
            Mode::None => None,
        }
    }

    /// The grant in force (for status: license number, data, serial).
    pub fn grant(&self) -> Option<&Verified<LicenseGrant>> {
        self.active_grant()
    }

    #[allow(clippy::type_complexity)]
    fn decide_online(
        &self,
        t: UnixTime,
    ) -> (Phase, Option<Text>, Option<UnixTime>, &'static str, Text) {
        let Some(g) = &self.grant else {
            return (
                Phase::NotActivated,
                None,
                None,
                "not_activated",
                Text::new("Nicht aktiviert.", "Not activated."),
            );
        };
        if g.binding != Binding::HardwareId(self.hardware_id.clone()) {
            return (
                Phase::WrongHost,
                None,
                Some(t),
                "wrong_host",
                Text::new(
                    "Die Lizenz ist an eine andere Hardware-ID gebunden. Setzen Sie die Lizenz im Lizenzserver zurück.",
                    "The license is bound to another hardware ID. Reset the license in the license server.",
                ),
            );
        }
        if self
            .superseded
            .as_ref()
            .is_some_and(|s| s.serial > g.serial)
        {
            let reason = RefusalReason::LicenseWasReset;
            return (
                Phase::Refused,
                None,
                Some(t),
                reason.key(),
                Text::new(reason.message(true), reason.message(false)),
            );
        }
        if let Some(r) = &self.refusal {
            let reason = r.reason;
            let phase = if reason == RefusalReason::Expired {
                Phase::Expired
            } else {
                Phase::Refused
            };
            return (
                phase,
                None,
                Some(t),
                reason.key(),
                Text::new(reason.message(true), reason.message(false)),
            );
        }
        if g.is_expired_at(t) {
            return (
                Phase::Expired,
                None,
                g.valid_until,
                "expired",
                Text::new(
                    RefusalReason::Expired.message(true),
                    RefusalReason::Expired.message(false),
                ),
            );
        }
        let last = self
            .receipt
            .as_ref()
            .map(|r| r.server_time)
            .unwrap_or(g.issued_at);
        let warn_from = last.plus_secs(SILENT_SECS);
        let grace_end = warn_from.plus_secs(WARNING_SECS);
        let run_start = self.run_started;

        // The offline rule.
        let (mut phase, mut warning, mut stop_at, mut code, mut reason) = if t < warn_from {
            (
                Phase::Licensed,
                None,
                None,
                "licensed",
                Text::new("Lizenziert.", "Licensed."),
            )
        } else if t < grace_end {
            (
                Phase::ServerUnreachable,
                Some(unreachable_text(last, grace_end)),
                Some(grace_end),
                "server_unreachable",
                unreachable_text(last, grace_end),
            )
        } else {
            match run_start {
                // Not running: the next start gets 1 hour (no stop time yet).
                None => {
                    let text = Text::new(
                        format!("Der Lizenzserver ist seit {last} nicht erreichbar. Ohne Verbindung läuft ProMoS nur 1 Stunde pro Start."),
                        format!("The license server has not been reachable since {last}. Without a connection ProMoS runs only 1 hour per start."),
                    );
                    (
                        Phase::OfflineStartHour,
                        Some(text.clone()),
                        None,
                        "offline_start_hour",
                        text,
                    )
                }
                Some(s) => {
                    let stop = if s < grace_end {
                        grace_end
                    } else {
                        s.plus_secs(OFFLINE_START_SECS)
                    };
                    if t < stop {
                        let text = Text::new(
                            format!("Der Lizenzserver ist seit {last} nicht erreichbar. Ohne Verbindung läuft ProMoS nur 1 Stunde pro Start (bis {stop})."),
                            format!("The license server has not been reachable since {last}. Without a connection ProMoS runs only 1 hour per start (until {stop})."),
                        );
                        (
                            Phase::OfflineStartHour,
                            Some(text.clone()),
                            Some(stop),
                            "offline_start_hour",
                            text,
                        )
                    } else {
                        (
                            Phase::Stopped,
                            None,
                            Some(stop),
                            "server_unreachable_stop",
                            Text::new(
                                format!("Der Lizenzserver ist seit {last} nicht erreichbar. ProMoS muss beendet werden; jeder Start ohne Verbindung läuft 1 Stunde."),
                                format!("The license server has not been reachable since {last}. ProMoS must stop; each start without a connection runs 1 hour."),
                            ),
                        )
                    }
                }
            }
        };

        // Engineering: 24 hours per start, and the end of validity.
        if g.protection == Protection::Engineering && phase.is_licensed() {
            let run_end = run_start.map(|s| s.plus_secs(ENGINEERING_RUN_SECS));
            let end = [stop_at, run_end, g.valid_until]
                .into_iter()
                .flatten()
                .min();
            if end.is_some_and(|end| t >= end) {
                phase = Phase::Stopped;
                warning = None;
                code = "engineering_run_over";
                reason = Text::new(
                    "Die Engineering-Lizenz erlaubt 24 Stunden pro Start: ProMoS muss neu gestartet werden.",
                    "The engineering license allows 24 hours per start: restart ProMoS.",
                );
            }
            stop_at = end;
        }
        (phase, warning, stop_at, code, reason)
    }

    #[allow(clippy::type_complexity)]
    fn decide_hard(
        &self,
        t: UnixTime,
    ) -> (Phase, Option<Text>, Option<UnixTime>, &'static str, Text) {
        let g = match &self.file {
            Some(Ok(g)) => g,
            Some(Err(e)) => {
                return (
                    Phase::InvalidLicenseFile,
                    None,
                    Some(t),
                    "invalid_license_file",
                    Text::new(
                        format!("Die Lizenzdatei lic/promos.json ist ungültig: {e}"),
                        format!("The license file lic/promos.json is not valid: {e}"),
                    ),
                )
            }
            None => {
                return (
                    Phase::NotActivated,
                    None,
                    None,
                    "not_activated",
                    Text::new("Keine Lizenz.", "No license."),
                )
            }
        };
        let Some(serial) = self
            .hard_serial()
            .filter(|_| g.protection == Protection::HardDongle)
        else {
            return (
                Phase::InvalidLicenseFile,
                None,
                Some(t),
                "not_a_dongle_license",
                Text::new(
                    "lic/promos.json ist keine Hardware-Dongle-Lizenz; Soft-Dongle-Lizenzen werden online aktiviert.",
                    "lic/promos.json is not a hardware dongle license; soft dongle licenses are activated online.",
                ),
            );
        };
        if g.is_expired_at(t) {
            return (
                Phase::Expired,
                None,
                g.valid_until,
                "expired",
                Text::new(
                    RefusalReason::Expired.message(true),
                    RefusalReason::Expired.message(false),
                ),
            );
        }
        if self.dongles.contains(&serial) {
            return (
                Phase::Licensed,
                None,
                None,
                "licensed",
                Text::new(
                    "Lizenziert (Hardware-Dongle).",
                    "Licensed (hardware dongle).",
                ),
            );
        }
        match self.dongle_last_seen {
            Some(seen) if t < seen.plus_secs(DONGLE_GRACE_SECS) => {
                let stop = seen.plus_secs(DONGLE_GRACE_SECS);
                let text = Text::new(
                    format!("Der Hardware-Dongle {serial} wurde entfernt. ProMoS wird um {stop} beendet, wenn er nicht wieder eingesteckt wird."),
                    format!("The hardware dongle {serial} was removed. ProMoS will be stopped at {stop} unless it is plugged in again."),
                );
                (
                    Phase::DongleRemoved,
                    Some(text.clone()),
                    Some(stop),
                    "dongle_removed",
                    text,
                )
            }
            _ => (
                Phase::DongleMissing,
                None,
                Some(t),
                "dongle_missing",
                Text::new(
                    format!("Der Hardware-Dongle {serial} ist nicht eingesteckt."),
                    format!("The hardware dongle {serial} is not plugged in."),
                ),
            ),
        }
    }

    fn diagnosis(&self) -> Vec<Text> {
        let mut d = Vec::new();
        if self.mode() == Mode::Online {
            if !self.dongles.is_empty() {
                d.push(Text::new(
                    "Auf einem Soft-Dongle-System darf kein Hardware-Dongle eingesteckt sein: bitte entfernen.",
                    "A hardware dongle is plugged into a soft-dongle host: please remove it.",
                ));
            }
            let mut files: Vec<String> = self.other_json.clone();
            if self.file.is_some() {
                files.insert(0, "promos.json".into());
            }
            if !files.is_empty() {
                d.push(Text::new(
                    format!("Bei Soft-Dongle gehört keine JSON-Lizenz in lic/ (nur licinfo.cfg): {} entfernen (promos-licd doctor --fix).", files.join(", ")),
                    format!("A soft-dongle host must have no JSON license in lic/ (only licinfo.cfg): remove {} (promos-licd doctor --fix).", files.join(", ")),
                ));
            }
        } else if self.mode() == Mode::HardDongle && !self.other_json.is_empty() {
            d.push(Text::new(
                format!(
                    "Weitere Lizenzdateien in lic/ werden ignoriert: {}.",
                    self.other_json.join(", ")
                ),
                format!(
                    "Other license files in lic/ are ignored: {}.",
                    self.other_json.join(", ")
                ),
            ));
        }
        d
    }

    /// Compares the decision with the previous one and turns changes into notices.
    fn diff(&mut self, now: Now) -> Vec<Output> {
        let t = self.time.effective(now);
        self.evaluated_at = t;
        let new = self.decide_at(t);
        let mut out = Vec::new();
        let old = self.last.take();
        let (was_licensed, old_warning, old_stop) = match &old {
            Some(o) => (o.licensed, o.warning.clone(), o.stop_at),
            None => (false, None, None),
        };
        if new.licensed && !was_licensed && old.is_some() {
            out.push(Output::Notify(Event::LicenseRestored));
        }
        if !new.licensed && (was_licensed || old.is_none()) && new.phase != Phase::NotActivated {
            out.push(Output::Notify(Event::LicenseEnded {
                reason_code: new.reason_code.to_owned(),
                reason: new.reason.clone(),
            }));
        }
        if let Some(w) = &new.warning {
            let old_phase = old.as_ref().map(|o| o.phase);
            if old_warning.is_none() || old_phase != Some(new.phase) {
                out.push(Output::Notify(Event::WarningBegins { warning: w.clone() }));
            }
        }
        if new.licensed {
            if let Some(at) = new.stop_at {
                if old_stop != Some(at) || !was_licensed {
                    out.push(Output::Notify(Event::StopScheduled {
                        at,
                        at_text: at.to_string(),
                    }));
                }
            }
        }
        if new.licensed && was_licensed && old_stop.is_some() && new.stop_at.is_none() {
            out.push(Output::Notify(Event::StopCancelled));
        }
        self.last = Some(new);
        out
    }

    /// The state to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            grant: self.grant.clone(),
            receipt: self.receipt.clone(),
            refusal: self.refusal.clone(),
            high_water: self.time.high_water(),
            dongle_last_seen: self.dongle_last_seen,
            open_run: self
                .run_started
                .or(self.adoptable_run)
                .map(|started| OpenRun {
                    started,
                    boot_id: self.boot_id.clone(),
                }),
            pending: self.pending.clone(),
            offline_pending: self.offline_pending.clone(),
            superseded: self.superseded.clone(),
        }
    }

    pub fn high_water(&self) -> UnixTime {
        self.time.high_water()
    }

    pub fn hardware_id(&self) -> &HardwareId {
        &self.hardware_id
    }

    /// Server time of the last successful check.
    pub fn last_check(&self) -> Option<UnixTime> {
        self.receipt.as_ref().map(|r| r.server_time)
    }

    /// Why the last check failed, if it did.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    pub fn runtime_running(&self) -> bool {
        self.run_started.is_some()
    }

    pub fn run_started(&self) -> Option<UnixTime> {
        self.run_started
    }

    /// True if the daemon should talk to the server at all.
    pub fn is_online(&self) -> bool {
        self.mode() == Mode::Online
    }
}

fn unreachable_text(last: UnixTime, stop: UnixTime) -> Text {
    Text::new(
        format!("Der Lizenzserver ist nicht erreichbar (letzte Prüfung {last}). ProMoS wird am {stop} beendet, wenn bis dahin keine Verbindung zustande kommt."),
        format!("The license server is not available (last check {last}). ProMoS will be stopped at {stop} unless a connection succeeds before then."),
    )
}

#[cfg(test)]
mod tests;
