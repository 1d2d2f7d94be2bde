//! The tokio shell around the state machine: [`run`] opens the cache, listens on
//! the local socket, ticks, scans dongles and `lic/`, and talks to the server.
//! It only moves bytes and time; every license rule is in [`crate::state`].

use crate::cache::Cache;
use crate::client::{RequestError, ServerClient};
use crate::config::{CertPin, Config, DEFAULT_SERVER};
use crate::dongle::DongleSource;
use crate::licinfo::LicInfo;
use crate::protocol::StatusJson;
use crate::state::{Decision, Event, Input, LicenseMachine, Now, Output, ProjectScan};
use keys::{Clock, HardwareId, LicenseNumber, TrustedKeys, UnixTime};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, watch, Notify};
use wire::{Activate, Check, Nonce, Request, Response, RuntimeState, Seats, Token};

mod offline;
mod peers;
pub use offline::{OfflineApplied, OfflineError};
pub use peers::PeerNet;

/// How often a daemon that lost its state asks the server for the grant
/// again while the server cannot be reached: often enough to recover within
/// minutes of the line coming back, rarely enough to be no load.
pub const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(120);

/// The step in which the last second before a timeout of the state machine
/// is slept (see [`Inner::until_timeout`]): the effective time counts whole
/// seconds, so a stop is handled at most this late (the goal is 1 s).
pub const TIMEOUT_STEP: std::time::Duration = std::time::Duration::from_millis(100);

/// The version string sent to the server.
pub const DAEMON_VERSION: &str = concat!("promos-licd/", env!("CARGO_PKG_VERSION"));

/// The daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheOpenError),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket group {0:?} does not exist (see /etc/group)")]
    NoSuchGroup(String),
    #[error("peer identity: {0}")]
    PeerIdentity(#[from] crate::peer::IdentityError),
    #[error(transparent)]
    PeerSetup(#[from] crate::peer::PeerSetupError),
    #[error("cannot listen for metrics on {addr}: {source} (change metrics_listen or PROMOS_LICD_METRICS_LISTEN, or set it to off)")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// TEST-ONLY wall clock: the Unix time written in a file, re-read at every
/// reading (config `PROMOS_LICD_TEST_CLOCK_FILE`). Lets an end-to-end test move
/// daemon processes through days together. An unreadable file reads as the
/// system clock, so a test that forgets it sees real time, not a stopped clock.
#[derive(Debug)]
pub struct TestFileClock(pub PathBuf);

impl Clock for TestFileClock {
    fn now(&self) -> UnixTime {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map(UnixTime)
            .unwrap_or_else(UnixTime::now)
    }
}

/// The clock `promos-licd run` uses: the system clock, or the test-only file clock.
pub fn clock_for(config: &Config) -> Arc<dyn Clock> {
    match &config.test_clock_file {
        Some(path) => {
            tracing::warn!(file = %path.display(), "TEST-ONLY clock file in use: never on a real site");
            Arc::new(TestFileClock(path.clone()))
        }
        None => Arc::new(keys::SystemClock),
    }
}

/// An activation did not succeed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("{0}")]
    Transport(#[from] RequestError),
    #[error("the license server refused the activation: {en} / {de}")]
    Refused {
        code: &'static str,
        en: &'static str,
        de: &'static str,
    },
    #[error("the license server answered with an error: {0}")]
    Server(String),
    #[error("the license server's answer did not verify: {0}")]
    Unverified(String),
}

/// A program whose simultaneous users are licensed per seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// GE (Remote).
    Ge,
    /// pWA.
    Pwa,
}

/// Identifies one socket connection.
pub type ConnId = u64;

/// Seats held, per connection.
#[derive(Debug, Default)]
pub struct SeatTable {
    held: HashMap<ConnId, (u32, u32)>,
}

impl SeatTable {
    pub fn used(&self, p: Program) -> u32 {
        self.held
            .values()
            .map(|(ge, pwa)| if p == Program::Ge { *ge } else { *pwa })
            .sum()
    }
    pub fn held_by(&self, c: ConnId, p: Program) -> u32 {
        self.held
            .get(&c)
            .map_or(0, |(ge, pwa)| if p == Program::Ge { *ge } else { *pwa })
    }
    fn slot(&mut self, c: ConnId, p: Program) -> &mut u32 {
        let e = self.held.entry(c).or_default();
        if p == Program::Ge {
            &mut e.0
        } else {
            &mut e.1
        }
    }
    pub fn totals(&self) -> Seats {
        Seats {
            ge: self.used(Program::Ge),
            pwa: self.used(Program::Pwa),
        }
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Inner {
    pub machine: LicenseMachine,
    pub seats: SeatTable,
    runtime_owner: Option<ConnId>,
    run_id: Option<u64>,
    cache: Cache,
    started: Instant,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    check_wanted: Arc<Notify>,
    check_forced: Arc<AtomicBool>,
    /// Woken after every input: the machine's next timeout may have moved.
    timers: Arc<Notify>,
    pub last_check_attempt: Option<UnixTime>,
    /// Bumped by every change that can show in the status (inputs, seats),
    /// so the serialized status can be reused until it changes.
    version: u64,
}

impl Inner {
    pub fn now(&self) -> Now {
        Now {
            wall: self.clock.now(),
            since_start: self.started.elapsed().as_secs(),
        }
    }

    /// Feeds the machine, persists, pushes notices, requests checks.
    pub fn apply(&mut self, input: Input) {
        self.version += 1;
        let now = self.now();
        let outputs = self.machine.handle(input, now);
        // On disk before anything is answered or pushed. A failure (disk full)
        // is logged by the cache once and shown in `status`; the daemon answers
        // from memory and the next save retries.
        if let Err(e) = self.cache.save(&self.machine.persisted()) {
            tracing::debug!(error = %e, "license state not saved");
        }
        for o in outputs {
            match o {
                Output::Notify(n) => {
                    tracing::info!(notice = ?n, "license state changed");
                    let _ = self.events.send(n);
                }
                Output::CheckNow => {
                    self.check_forced.store(true, Ordering::SeqCst);
                    self.check_wanted.notify_one();
                }
            }
        }
        self.timers.notify_one();
    }

    /// How long the shell may sleep before the machine's next timeout
    /// ([`LicenseMachine::poll_timeout`]); `None`: nothing scheduled. The
    /// effective time has whole seconds, so the last second before a moment
    /// is slept in steps of [`TIMEOUT_STEP`]: a stop happens at most that late.
    pub fn until_timeout(&mut self) -> Option<std::time::Duration> {
        let now = self.now();
        let t = self.machine.effective(now);
        let at = self.machine.poll_timeout()?;
        let left = at.0.saturating_sub(t.0);
        Some(if left == 0 {
            std::time::Duration::ZERO
        } else if left == 1 {
            TIMEOUT_STEP
        } else {
            std::time::Duration::from_secs(left - 1)
        })
    }

    pub fn decide(&mut self) -> Decision {
        let now = self.now();
        self.machine.decide(now)
    }

    /// Seat limit of `p` right now (0 while not licensed).
    pub fn seat_limit(&mut self, p: Program) -> u32 {
        let d = self.decide();
        d.entitlements.map_or(0, |e| {
            if p == Program::Ge {
                e.ge_users
            } else {
                e.pwa_users
            }
        })
    }

    /// Takes a seat for connection `c`; `Err(limit)` if none is free.
    pub fn acquire_seat(&mut self, c: ConnId, p: Program) -> Result<u32, u32> {
        let limit = self.seat_limit(p);
        if self.seats.used(p) >= limit {
            return Err(limit);
        }
        *self.seats.slot(c, p) += 1;
        self.version += 1;
        Ok(self.seats.held_by(c, p))
    }

    /// Gives a seat back; false if the connection held none.
    pub fn release_seat(&mut self, c: ConnId, p: Program) -> bool {
        let slot = self.seats.slot(c, p);
        if *slot == 0 {
            return false;
        }
        *slot -= 1;
        self.version += 1;
        true
    }

    /// `Err(())` if another connection owns the running runtime.
    #[allow(clippy::result_unit_err)]
    pub fn runtime_started(&mut self, c: ConnId) -> Result<(), ()> {
        match self.runtime_owner {
            Some(o) if o != c => return Err(()),
            Some(_) => return Ok(()),
            None => {}
        }
        self.runtime_owner = Some(c);
        self.apply(Input::RuntimeStarted);
        let start = self.machine.run_started().unwrap_or(self.clock.now());
        self.run_id = self.cache.start_run(start).ok();
        Ok(())
    }

    /// Ends the run if `c` owns it (or nobody does); `why` goes to the history.
    pub fn runtime_stopped(&mut self, c: ConnId, why: &str) -> bool {
        if self.runtime_owner.is_some_and(|o| o != c) {
            return false;
        }
        if self.runtime_owner.take().is_some() {
            self.apply(Input::RuntimeStopped);
            let t = self.machine.high_water();
            if let Some(id) = self.run_id.take() {
                let _ = self.cache.end_run(id, t, why);
            }
        }
        true
    }

    /// A connection closed: release its seats and its runtime.
    pub fn connection_closed(&mut self, c: ConnId) {
        if self.seats.held.remove(&c).is_some() {
            self.version += 1;
        }
        if self.runtime_owner == Some(c) {
            self.runtime_stopped(c, "connection_closed");
        }
    }

    pub fn runtime_state(&self) -> RuntimeState {
        if self.runtime_owner.is_some() {
            RuntimeState::Running
        } else {
            RuntimeState::Stopped
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

/// How a check ended, for `check_now` (and the CLI's exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// The server (directly or through a peer) confirmed the license.
    Succeeded,
    /// The server refused this host (the license ended).
    Refused,
    /// No usable answer: server unreachable, timeout, bad answer.
    Failed,
    /// Nothing to check: no grant and no `lic/licinfo.cfg` naming a license.
    NotActivated,
    /// No check finished within `check_now`'s time limit.
    TimedOut,
}

/// Checks started and finished (numbered from 1) and the last one's outcome.
#[derive(Clone, Copy, Debug, Default)]
struct CheckProgress {
    started: u64,
    finished: u64,
    outcome: Option<CheckOutcome>,
}

/// What the socket handlers and the checker share.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
    pub hardware_id: HardwareId,
    /// The hashed facts the hardware ID is made of, sent with activation and
    /// every check so the server can follow a host whose hardware changes a
    /// little (issue 19); empty with a test hardware ID.
    pub hardware_facts: wire::HardwareFacts,
    pub trusted: TrustedKeys,
    pub config: Config,
    pub events: broadcast::Sender<Event>,
    check_wanted: Arc<Notify>,
    /// Set by whoever wants a check; cleared when one finishes (requests made
    /// while a check is in flight are answered by that check).
    check_forced: Arc<AtomicBool>,
    /// Checks started and finished, and how the last one ended, so
    /// `check_now` can wait for a check that starts after it was asked.
    checks: watch::Sender<CheckProgress>,
    next_conn: std::sync::atomic::AtomicU64,
    /// The peer relay, if this daemon has peers or listens for them.
    pub peers: Option<Arc<PeerNet>>,
    /// False after the last attempt to reach the server directly failed: a
    /// relay then queues its peers' requests at once instead of waiting for a
    /// timeout per request.
    uplink_ok: AtomicBool,
    /// The license server that answered last (several configured: the next
    /// check starts with it).
    last_server: Mutex<Option<String>>,
    /// When the last check to recover a lost state was asked for.
    recovery_attempt: Mutex<Option<Instant>>,
    /// The last serialized status and what it was decided at: the state's
    /// version and the effective second (`now`, `seconds_until_stop`).
    status_cache: Mutex<Option<(u64, UnixTime, StatusJson)>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is
        // a single assignment chain), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status object, serialized: reused while neither the state nor
    /// the effective second changed (the runtime and scrapers ask often;
    /// deciding and encoding ~1 KB each time was most of the answer's cost).
    /// Every input and seat change makes a new one at once; what changes
    /// without one (`lic/licinfo.cfg`, a flush error of the cache) shows
    /// within the second.
    pub fn status_json(&self) -> StatusJson {
        let key = |s: &Self| {
            let mut inner = s.lock();
            let now = inner.now();
            (inner.version, inner.machine.effective(now))
        };
        let before = key(self);
        let mut cache = self.status_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, t, json)) = cache.as_ref() {
            if (*v, *t) == before {
                return json.clone();
            }
        }
        let json = StatusJson::new(&crate::socket::status(self));
        if key(self) == before {
            *cache = Some((before.0, before.1, json.clone()));
        }
        json
    }

    pub fn new_conn_id(&self) -> ConnId {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks for a check now and waits (up to 2 minutes: four attempts with
    /// backoff fit in it) until a check that *started after this call* has
    /// finished; a check already running when it was asked does not count (its
    /// answer may be from before the line was fixed). Returns how it ended.
    pub async fn check_now(&self) -> CheckOutcome {
        let mut rx = self.checks.subscribe();
        let after = rx.borrow_and_update().started;
        let waited = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            loop {
                // Asked again after each older check ends: that check may
                // have cleared the request when it finished.
                self.check_forced.store(true, Ordering::SeqCst);
                self.check_wanted.notify_one();
                loop {
                    if rx.changed().await.is_err() {
                        return CheckOutcome::TimedOut;
                    }
                    let p = *rx.borrow_and_update();
                    if p.finished > after {
                        return p.outcome.unwrap_or(CheckOutcome::Failed);
                    }
                    if p.finished == p.started {
                        break;
                    }
                }
            }
        })
        .await;
        waited.unwrap_or(CheckOutcome::TimedOut)
    }

    /// The server address: config/env, else `lic/licinfo.cfg`, else the
    /// default. With several servers: the one that answered last, else the first.
    pub fn server_address(&self) -> String {
        let servers = self.server_list();
        let last = self
            .last_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        last.filter(|l| servers.iter().any(|(s, _)| s == l))
            .or_else(|| servers.into_iter().next().map(|(s, _)| s))
            .unwrap_or_else(|| self.config.server.clone())
    }

    /// The servers to try, in order, each with its pin: the configured list
    /// (config/env), else the server `lic/licinfo.cfg` names, else the default.
    pub fn server_list(&self) -> Vec<(String, Option<CertPin>)> {
        if self.config.server != DEFAULT_SERVER || !self.config.more_servers.is_empty() {
            return self.config.servers();
        }
        let server = self
            .licinfo()
            .map(|i| i.server)
            .unwrap_or_else(|| self.config.server.clone());
        vec![(server, self.config.cert_pin.clone())]
    }

    /// Sends `request` to the license servers: each round tries every server
    /// once, starting with the one that answered last, until one answers (an
    /// "unavailable" answer counts as none: that server's database is away);
    /// rounds are `check_attempts` with backoff between them. One server: the
    /// attempts of a plain [`ServerClient::request`].
    /// [`Self::request_any_as_is`]; a server older than the hardware facts
    /// (it answers `Malformed` to them) is asked again without them.
    async fn request_any(&self, request: &Request) -> Result<Response, RequestError> {
        let response = self.request_any_as_is(request).await;
        if let (Ok(Response::Error(wire::ErrorReply::Malformed(why))), Some(plain)) =
            (&response, request.without_facts())
        {
            tracing::info!(%why, "the license server does not take hardware facts (an older server): asking without them");
            return self.request_any_as_is(&plain).await;
        }
        response
    }

    async fn request_any_as_is(&self, request: &Request) -> Result<Response, RequestError> {
        let servers = self.server_list();
        let last = self
            .last_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let start = last
            .and_then(|l| servers.iter().position(|(s, _)| *s == l))
            .unwrap_or(0);
        let mut clients = Vec::with_capacity(servers.len());
        let mut outcome: Result<Response, RequestError> = Err(RequestError::Timeout);
        for (server, pin) in servers.iter().cycle().skip(start).take(servers.len()) {
            match self.client_pinned(server, pin.as_ref()) {
                Ok(c) => clients.push(c),
                Err(e) => outcome = Err(e),
            }
        }
        let backoff = crate::client::Backoff {
            attempts: self.config.check_attempts,
            ..Default::default()
        };
        for n in 0..backoff.attempts.max(1) {
            if clients.is_empty() {
                break;
            }
            if n > 0 {
                tokio::time::sleep(backoff.delay(n, rand::random::<f64>())).await;
            }
            for client in &clients {
                let answer =
                    tokio::time::timeout(self.config.attempt_timeout, client.once(request)).await;
                match answer {
                    Ok(Ok(Response::Error(wire::ErrorReply::Unavailable))) => {
                        tracing::info!(
                            server = client.server(),
                            "license server unavailable; trying the next one"
                        );
                        outcome = Ok(Response::Error(wire::ErrorReply::Unavailable));
                    }
                    Ok(Ok(r)) => {
                        *self.last_server.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(client.server().to_owned());
                        return Ok(r);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(server = client.server(), attempt = n + 1, error = %e, "license server request failed");
                        outcome = Err(e);
                    }
                    Err(_) => outcome = Err(RequestError::Timeout),
                }
            }
        }
        outcome
    }

    /// The license `lic/licinfo.cfg` names for this host while the daemon
    /// holds no grant: the signed state was lost (both copies gone or damaged)
    /// after an activation, and a check can bring it back.
    pub fn lost_license(&self) -> Option<LicenseNumber> {
        if self.lock().machine.grant().is_some() {
            return None;
        }
        self.licinfo_license()
    }

    /// The license `lic/licinfo.cfg` names, if it names this host (or no
    /// host), or another hardware ID while this host sends its hardware
    /// facts: its hardware may have changed, and the server decides whether
    /// the binding follows (issue 19).
    fn licinfo_license(&self) -> Option<LicenseNumber> {
        let info = self.licinfo()?;
        (info
            .hardware_id
            .as_ref()
            .is_none_or(|h| h == &self.hardware_id)
            || !self.hardware_facts.is_empty())
        .then_some(info.license_number)
    }

    /// After a successful check: `lic/licinfo.cfg` names this hardware ID
    /// (it named the old one if the binding followed a hardware change).
    fn licinfo_follows(&self) {
        let Some(dir) = &self.config.project_dir else {
            return;
        };
        let Some(mut info) = self.licinfo() else {
            return;
        };
        if info
            .hardware_id
            .as_ref()
            .is_none_or(|h| h == &self.hardware_id)
        {
            return;
        }
        if self.lock().machine.grant().is_none() {
            return;
        }
        tracing::info!(old = ?info.hardware_id, new = %self.hardware_id, "the license follows this host's changed hardware: lic/licinfo.cfg updated");
        info.hardware_id = Some(self.hardware_id.clone());
        if let Err(e) = info.write(dir) {
            tracing::error!(error = %e, "licinfo.cfg not written");
        }
    }

    /// Asks for a check if the state was lost (see [`Shared::lost_license`]),
    /// at most every [`RECOVERY_RETRY`].
    fn recover_if_lost(&self) {
        let Some(number) = self.lost_license() else {
            return;
        };
        let mut last = self
            .recovery_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < RECOVERY_RETRY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::error!(code = "state_lost", license = %number, "no license state on disk although lic/licinfo.cfg names a license for this host; asking the server for the grant");
        self.check_forced.store(true, Ordering::SeqCst);
        self.check_wanted.notify_one();
    }

    fn licinfo(&self) -> Option<LicInfo> {
        let dir = self.config.project_dir.as_ref()?;
        LicInfo::read(dir).ok().flatten()
    }

    /// This daemon's view of the license (for tests and the benchmark).
    pub fn decision(&self) -> Decision {
        self.lock().decide()
    }

    /// A client for `server` (one of the list: its own pin; another, such as
    /// the dialog's: the first pin).
    fn client(&self, server: &str) -> Result<ServerClient, RequestError> {
        let pin = self
            .server_list()
            .into_iter()
            .find(|(s, _)| s == server)
            .and_then(|(_, pin)| pin)
            .or_else(|| self.config.cert_pin.clone());
        let backoff = crate::client::Backoff {
            attempts: self.config.check_attempts,
            ..Default::default()
        };
        Ok(self
            .client_pinned(server, pin.as_ref())?
            .with_backoff(backoff))
    }

    fn client_pinned(
        &self,
        server: &str,
        pin: Option<&CertPin>,
    ) -> Result<ServerClient, RequestError> {
        let name = if server == self.config.server {
            self.config.tls_name()
        } else {
            host_of(server)
        };
        Ok(
            ServerClient::new(server, &name, pin)?
                .with_attempt_timeout(self.config.attempt_timeout),
        )
    }

    /// The manual's first-start dialog: bind this host to the license.
    pub async fn activate(
        &self,
        server: Option<String>,
        number: LicenseNumber,
        token: Token,
    ) -> Result<Decision, ActivateError> {
        let server = server.map(|s| crate::config::normalize_server(&s));
        let nonce = Nonce::random();
        let request = self.with_facts(Request::Activate(Activate {
            license_number: number.clone(),
            token,
            hardware_id: self.hardware_id.clone(),
            daemon_version: DAEMON_VERSION.into(),
            nonce,
        }));
        // The dialog's server, else the configured ones in turn.
        let response = match &server {
            Some(server) => {
                let client = self.client(server)?;
                match client.request(&request).await? {
                    Response::Error(wire::ErrorReply::Malformed(why)) => {
                        match request.without_facts() {
                            Some(plain) => {
                                tracing::info!(%why, "the license server does not take hardware facts (an older server): activating without them");
                                client.request(&plain).await?
                            }
                            None => Response::Error(wire::ErrorReply::Malformed(why)),
                        }
                    }
                    other => other,
                }
            }
            None => self.request_any(&request).await?,
        };
        match response {
            Response::Activated { grant, receipt } => {
                let grant = self
                    .trusted
                    .verify(&grant)
                    .map_err(|e| ActivateError::Unverified(format!("grant: {e}")))?;
                let receipt = self
                    .trusted
                    .verify(&receipt)
                    .map_err(|e| ActivateError::Unverified(format!("receipt: {e}")))?;
                let mut inner = self.lock();
                inner.apply(Input::Activated {
                    nonce,
                    receipt,
                    grant: grant.clone(),
                });
                if inner.machine.grant().map(|g| g.signed()) != Some(grant.signed()) {
                    let why = inner
                        .machine
                        .last_failure()
                        .unwrap_or("it does not fit this host")
                        .to_owned();
                    return Err(ActivateError::Unverified(format!(
                        "the grant was not accepted: {why}"
                    )));
                }
                let decision = inner.decide();
                // Written (durably) before the lock is released, so nobody
                // sees the host licensed without its licinfo.cfg, the file
                // that recovers a lost state.
                if let Some(dir) = &self.config.project_dir {
                    let info = LicInfo {
                        // The server that answered.
                        server: server.clone().unwrap_or_else(|| self.server_address()),
                        license_number: number,
                        hardware_id: Some(self.hardware_id.clone()),
                        activated: Some(inner.now().wall),
                    };
                    if let Err(e) = info.write(dir) {
                        tracing::error!(error = %e, "licinfo.cfg not written");
                    }
                }
                drop(inner);
                Ok(decision)
            }
            Response::Refused(r) => {
                let r = self
                    .trusted
                    .verify(&r)
                    .map_err(|e| ActivateError::Unverified(format!("refusal: {e}")))?;
                if r.nonce != nonce || r.hardware_id != self.hardware_id {
                    return Err(ActivateError::Unverified(
                        "a refusal for another request".into(),
                    ));
                }
                Err(ActivateError::Refused {
                    code: r.reason.key(),
                    en: r.reason.message(false),
                    de: r.reason.message(true),
                })
            }
            Response::Error(e) => Err(ActivateError::Server(format!("{e:?}"))),
            other => Err(ActivateError::Server(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// One daily check (with retries inside the client).
    pub async fn check(&self) {
        let mut id = 0;
        self.checks.send_modify(|p| {
            p.started += 1;
            id = p.started;
        });
        let outcome = self.check_once().await;
        self.check_forced.store(false, Ordering::SeqCst);
        self.checks.send_modify(|p| {
            p.finished = id;
            p.outcome = Some(outcome);
        });
    }

    /// The check to send now and its nonce (recorded as sent); `None` if
    /// there is nothing to check (not activated).
    fn check_request(&self) -> Option<(Request, Nonce)> {
        let check = self.check_message()?;
        let nonce = check.nonce;
        let mut inner = self.lock();
        inner.last_check_attempt = Some(inner.now().wall);
        inner.apply(Input::CheckSent { nonce });
        drop(inner);
        Some((self.with_facts(Request::Check(check)), nonce))
    }

    /// An activation or check with this host's hardware facts, if it has any.
    fn with_facts(&self, request: Request) -> Request {
        if self.hardware_facts.is_empty() {
            return request;
        }
        match request {
            Request::Activate(a) => Request::ActivateWithFacts(a, self.hardware_facts.clone()),
            Request::Check(c) => Request::CheckWithFacts(c, self.hardware_facts.clone()),
            other => other,
        }
    }

    /// The check this host would send now, with a fresh nonce (not yet
    /// recorded as sent); `None` if there is nothing to check.
    fn check_message(&self) -> Option<Check> {
        {
            let inner = self.lock();
            let held = match inner.machine.grant() {
                Some(g) => inner
                    .machine
                    .is_online()
                    .then(|| (g.license_number.clone(), Some(g.serial))),
                // The state on disk is lost but `lic/licinfo.cfg` names the
                // license: the server answers a check from the bound hardware
                // ID with the current grant (no token needed).
                None => self.licinfo_license().map(|n| (n, None)),
            };
            let grant = held?;
            let nonce = Nonce::random();
            let check = Check {
                license_number: grant.0,
                hardware_id: self.hardware_id.clone(),
                grant_serial: grant.1,
                runtime: inner.runtime_state(),
                seats: inner.seats.totals(),
                daemon_version: DAEMON_VERSION.into(),
                nonce,
            };
            Some(check)
        }
    }

    async fn check_once(&self) -> CheckOutcome {
        let Some((request, nonce)) = self.check_request() else {
            return CheckOutcome::NotActivated;
        };
        let result = self.request_any(&request).await;
        let reached = result.is_ok();
        let input = match result {
            Ok(response) => {
                self.uplink_ok.store(true, Ordering::SeqCst);
                self.answer_input(nonce, response)
            }
            Err(e) => {
                self.uplink_ok.store(false, Ordering::SeqCst);
                match &self.peers {
                    Some(p) if !self.config.peers.is_empty() => {
                        match p.check_via_peers(self, &request, nonce).await {
                            Some(input) => input,
                            None => Input::CheckFailed {
                                reason: format!("{e}; no peer could relay the check"),
                            },
                        }
                    }
                    _ => Input::CheckFailed {
                        reason: e.to_string(),
                    },
                }
            }
        };
        let outcome = match &input {
            Input::CheckFailed { reason } => {
                tracing::warn!(%reason, "license check failed");
                CheckOutcome::Failed
            }
            Input::Refused { .. } | Input::LateRefusal { .. } => CheckOutcome::Refused,
            _ => CheckOutcome::Succeeded,
        };
        self.apply_answer(input);
        if outcome == CheckOutcome::Succeeded {
            self.licinfo_follows();
        }
        if let Some(p) = &self.peers {
            if self.uplink_ok.load(Ordering::SeqCst) {
                p.flush(self).await;
            }
            // This host reached the server itself: the peers that cannot
            // check through it now (their queued checks are answered).
            p.exchange_with_peers(self, reached).await;
        }
        outcome
    }

    /// A peer says its check just reached the server (`ServerReached`):
    /// check through it now. Only for a host whose own last attempt failed;
    /// a host with a working line keeps its own schedule.
    pub async fn check_through(&self, address: &str) {
        let Some(p) = &self.peers else {
            return;
        };
        let Some(peer) = self.config.peers.iter().find(|e| e.address == address) else {
            return;
        };
        let Some((request, nonce)) = self.check_request() else {
            return;
        };
        match p.check_via_peer(self, peer, &request, nonce).await {
            Some(input) => {
                tracing::info!(peer = %address, "checked through a peer that reached the server");
                // A fresh answer: what was queued at the peers is older and
                // can wait for the next exchange (each request counts
                // against this host's rate limit at its peers).
                self.apply_answer(input);
            }
            None => p.exchange_with_peers(self, false).await,
        }
    }

    /// Feeds an answer to the machine and remembers the nonce it used up (a
    /// peer that brings it again is replaying).
    fn apply_answer(&self, input: Input) {
        let used = match &input {
            Input::CheckSucceeded { nonce, .. } | Input::Refused { nonce, .. } => Some(*nonce),
            Input::LateReceipt { receipt, .. } => Some(receipt.nonce),
            Input::LateRefusal { refusal } => Some(refusal.nonce),
            _ => None,
        };
        let mut inner = self.lock();
        let was_pending = used.is_some_and(|n| inner.machine.is_pending(&n));
        inner.apply(input);
        drop(inner);
        if let (Some(n), Some(p), true) = (used, &self.peers, was_pending) {
            p.used_nonce(n);
        }
    }

    /// Turns the server's answer to check `nonce` into the machine's input,
    /// verifying every signature.
    fn answer_input(&self, nonce: Nonce, response: Response) -> Input {
        match response {
            Response::Checked { receipt, grant } => {
                let receipt = self.trusted.verify(&receipt);
                let grant = grant.map(|g| self.trusted.verify(&g)).transpose();
                match (receipt, grant) {
                    (Ok(receipt), Ok(grant)) => Input::CheckSucceeded {
                        nonce,
                        receipt,
                        grant,
                    },
                    (Err(e), _) | (_, Err(e)) => Input::CheckFailed {
                        reason: format!("answer did not verify: {e}"),
                    },
                }
            }
            Response::Refused(r) => match self.trusted.verify(&r) {
                Ok(refusal) => Input::Refused { nonce, refusal },
                Err(e) => Input::CheckFailed {
                    reason: format!("refusal did not verify: {e}"),
                },
            },
            Response::Error(e) => Input::CheckFailed {
                reason: format!("server error: {e:?}"),
            },
            other => Input::CheckFailed {
                reason: format!("unexpected answer: {other:?}"),
            },
        }
    }

    /// Re-reads `lic/` and the dongles and re-evaluates.
    fn scan(&self, dongles: &mut dyn DongleSource) {
        let project = self.project_scan();
        let serials = match dongles.scan() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "dongle scan failed; treating as none present");
                Vec::new()
            }
        };
        let mut inner = self.lock();
        inner.apply(Input::ProjectScan(project));
        inner.apply(Input::DongleScan(serials));
        drop(inner);
        self.apply_dropped_answers();
    }

    fn project_scan(&self) -> ProjectScan {
        let Some(dir) = &self.config.project_dir else {
            return ProjectScan::default();
        };
        let lic = dir.join("lic");
        let promos = lic.join("promos.json");
        let promos_json = promos
            .exists()
            .then(|| keys::file::read(&promos, &self.trusted).map_err(|e| e.kind.to_string()));
        let mut other_json: Vec<String> = std::fs::read_dir(&lic)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.to_ascii_lowercase().ends_with(".json") && n != "promos.json")
            .collect();
        other_json.sort();
        ProjectScan {
            promos_json,
            other_json,
        }
    }
}

fn host_of(server: &str) -> String {
    match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => server.to_owned(),
    }
}

/// Resolves a group name to its gid from `/etc/group`.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

/// Runs the daemon until `shutdown` completes. Tests call this with a temporary
/// directory, a [`keys::SimClock`] and a temporary socket path.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (hardware_id, hardware_facts) = crate::hwid::identity(&config);
    let trusted = config.trusted_keys.clone();
    let cache = Cache::open(&config.data_dir)?;
    // Reads both copies, takes the newest valid one and repairs the other;
    // damage is logged at error level by the cache and kept for `status`.
    let (persisted, report) = cache.load(&trusted, &hardware_id);
    for d in &report.dropped {
        tracing::warn!(dropped = %d, "cached license state not trusted");
    }
    let started = Instant::now();
    let now = Now {
        wall: clock.now(),
        since_start: 0,
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let (machine, first) =
        LicenseMachine::start(hardware_id.clone(), persisted, boot_id.trim(), now);
    if let Err(e) = cache.close_stale_runs(machine.high_water()) {
        tracing::warn!(error = %e, "run history not updated");
    }
    let identity = crate::peer::PeerIdentity::load_or_create(&config.data_dir)?;
    let peers = if config.peers.is_empty() && config.peer_listen.is_none() {
        None
    } else {
        let keys: Vec<keys::PublicKey> = config.peers.iter().map(|p| p.public_key).collect();
        let endpoint = crate::peer::PeerEndpoint::bind(&identity, &keys, config.peer_listen)?;
        tracing::info!(listen = ?endpoint.local_addr(), peers = config.peers.len(), public_key = %identity.public(), "peer relay ready");
        Some(Arc::new(PeerNet::new(endpoint, cache.clone())))
    };
    let (events, _) = broadcast::channel(64);
    let check_wanted = Arc::new(Notify::new());
    let check_forced = Arc::new(AtomicBool::new(false));
    let timers = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            machine,
            seats: SeatTable::default(),
            runtime_owner: None,
            run_id: None,
            cache: cache.clone(),
            started,
            clock,
            events: events.clone(),
            check_wanted: check_wanted.clone(),
            check_forced: check_forced.clone(),
            timers: timers.clone(),
            last_check_attempt: None,
            version: 0,
        }),
        hardware_id,
        hardware_facts,
        trusted,
        config: config.clone(),
        events,
        check_wanted: check_wanted.clone(),
        check_forced: check_forced.clone(),
        checks: watch::channel(CheckProgress::default()).0,
        next_conn: std::sync::atomic::AtomicU64::new(1),
        last_server: Mutex::new(None),
        peers,
        uplink_ok: AtomicBool::new(true),
        recovery_attempt: Mutex::new(None),
        status_cache: Mutex::new(None),
    });
    let peer_server = shared
        .peers
        .as_ref()
        .map(|p| tokio::spawn(p.clone().serve(shared.clone())));
    let peer_gossip = shared
        .peers
        .as_ref()
        .map(|p| tokio::spawn(p.clone().share_new_grants(shared.clone())));
    if let crate::config::DongleBackend::Hidapi {
        vendor_id: None, ..
    }
    | crate::config::DongleBackend::Hidapi {
        product_id: None, ..
    } = &config.dongle
    {
        tracing::warn!("no dongle USB vendor/product id configured ([dongle] vendor_id, product_id): hardware dongles cannot be recognised");
    }
    if config.trusted_keys.is_empty() {
        tracing::warn!(
            "no trusted server keys configured (trusted_keys): no license can be verified"
        );
    }
    let mut dongles = crate::dongle::from_config(&config.dongle);
    shared.scan(dongles.as_mut());
    if first.contains(&Output::CheckNow) {
        check_forced.store(true, Ordering::SeqCst);
        check_wanted.notify_one();
    }
    shared.recover_if_lost();

    let listener = bind_socket(&config)?;
    let metrics = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Metrics { addr, source })?;
            tracing::info!(listen = %l.local_addr().unwrap_or(addr), "metrics listener ready");
            Some(tokio::spawn(crate::metrics::serve(l, shared.clone())))
        }
    };
    tracing::info!(socket = %config.socket_path.display(), hardware_id = %shared.hardware_id, "promos-licd ready");
    crate::notify::notify("READY=1");

    // Unattended activation from the config (license number + token).
    if shared.lock().machine.grant().is_none() {
        if let (Some(n), Some(t)) = (config.license_number.clone(), config.token.clone()) {
            let s = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = s.activate(None, n, t).await {
                    tracing::error!(error = %e, "activation from the configuration failed");
                }
            });
        }
    }

    let checker = {
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                s.check_wanted.notified().await;
                if s.check_forced.load(Ordering::SeqCst) {
                    s.check().await;
                }
            }
        })
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let acceptor = {
        let s = shared.clone();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            connections.spawn(crate::socket::serve_connection(s.clone(), stream));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            connections.shutdown().await;
        })
    };

    // Two clocks: `tick` for what the machine cannot know the time of (a
    // dongle pulled, `lic/` edited, a full disk with space again, the wall
    // clock set), and the machine's own next timeout (a stop, the next
    // check), slept until exactly; any input wakes the loop to recompute it.
    let mut interval = tokio::time::interval(config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let until = shared.lock().until_timeout();
        let timeout = async {
            match until {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => {
                shared.scan(dongles.as_mut());
                shared.recover_if_lost();
                let inner = shared.lock();
                if let Err(e) = inner.cache().flush() {
                    tracing::error!(error = %e, "license cache not flushed");
                }
            }
            _ = timeout => {
                let mut inner = shared.lock();
                if inner.until_timeout() == Some(std::time::Duration::ZERO) {
                    inner.apply(Input::Tick);
                }
            }
            _ = timers.notified() => {}
        }
    }
    let _ = stop_tx.send(true);
    let _ = acceptor.await;
    checker.abort();
    let _ = checker.await;
    for t in [peer_server, peer_gossip, metrics].into_iter().flatten() {
        t.abort();
        let _ = t.await;
    }
    if let Some(p) = &shared.peers {
        p.close();
    }
    {
        let mut inner = shared.lock();
        // The runtime keeps running while the daemon restarts: its run stays open
        // (persisted) for it to continue when it reconnects; only the history
        // notes the daemon's stop.
        if let Some(id) = inner.run_id.take() {
            let t = inner.machine.high_water();
            let _ = inner.cache.end_run(id, t, "daemon_shutdown");
        }
        // Saves the high-water mark as of now.
        inner.apply(Input::Tick);
        let _ = inner.cache().flush();
    }
    let _ = std::fs::remove_file(&config.socket_path);
    crate::notify::notify("STOPPING=1");
    Ok(())
}

fn bind_socket(config: &Config) -> Result<tokio::net::UnixListener, RunError> {
    use std::os::unix::fs::PermissionsExt;
    let path = &config.socket_path;
    let err = |source| RunError::Listen {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    // A socket file left by a crashed daemon: nobody answers on it, replace it.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.socket_mode))
        .map_err(err)?;
    if let Some(group) = &config.socket_group {
        let gid = group_id(group).ok_or_else(|| RunError::NoSuchGroup(group.clone()))?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(err)?;
    }
    Ok(listener)
}
