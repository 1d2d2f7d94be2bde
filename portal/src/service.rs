//! Answers daemon requests: decodes a frame body, applies the license rules through
//! the store, and signs what goes back. No sockets here; [`crate::quic`] moves the
//! bytes.
//!
//! Every answer about a license is signed with the server key and bound to the
//! asking host's hardware ID and nonce: grants and receipts for yes, refusals for
//! no. Protocol problems get an unsigned [`ErrorReply`], which never changes what
//! a daemon believes about its license.

use crate::domain::AccountId;
use crate::domain::CHECK_INTERVAL_SECS;
use crate::metrics::{request_kind, Metrics};
use crate::store::{
    ActivationAuthority, HostActivation, HostCheck, MailJobFn, RebindMail, Rebound, Store,
};
use keys::{Clock, HardwareId, LicenseNumber, Signed, SigningKeyPair, UnixTime};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wire::codec::{self, DecodeError};
use wire::offline::OfflineRequest;
use wire::{
    CheckReceipt, ErrorReply, FactsDigest, HardwareFacts, Nonce, Refusal, RefusalReason,
    RelayEnvelope, Request, Response, RuntimeState, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// The agent string in `Hello` answers.
pub const AGENT: &str = concat!("pls/", env!("CARGO_PKG_VERSION"));

/// Where a request came from.
#[derive(Clone, Debug)]
pub struct Source {
    pub ip: IpAddr,
    /// For records: the address, and the relay's hardware ID if relayed.
    pub label: String,
}

/// Who brought a request file to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfflineAuthor {
    /// The license's owner, logged in to the portal.
    Owner(AccountId),
    /// The vendor, by operator name (`pls admin offline-answer`).
    Vendor(String),
}

impl OfflineAuthor {
    /// The check-in's and audit trail's "from": marked as by file.
    pub fn label(&self) -> String {
        match self {
            OfflineAuthor::Owner(a) => format!("by file (portal, account {a})"),
            OfflineAuthor::Vendor(op) => format!("by file (vendor {op})"),
        }
    }
}

/// What an answer says, as a stable word: `activated`, `checked`, a refusal's
/// key (`bound_to_another_host`, ...), or `error`. `key` is the server's
/// own, which signed the refusal.
pub fn offline_outcome(response: &Response, key: &SigningKeyPair) -> &'static str {
    match response {
        Response::Activated { .. } => "activated",
        Response::Checked { .. } => "checked",
        Response::Refused(r) => keys::TrustedKeys::with([key.public()])
            .verify(r)
            .map_or("error", |r| r.reason.key()),
        _ => "error",
    }
}

/// The customer's email about every binding that moved to a host whose
/// hardware changed ("Hardware geändert"): `compose` writes it inside the
/// move's transaction, which queues it (the move and its email are stored
/// together or not at all, see [`crate::store::RebindMail`]); `queued` runs
/// after the commit (the portal wakes its mail worker).
#[derive(Clone)]
pub struct HardwareChangeHook {
    pub compose: Arc<HardwareChangeFn>,
    pub queued: Arc<dyn Fn() + Send + Sync>,
}

/// What a [`HardwareChangeHook`] composes with: the move and its server time.
pub type HardwareChangeFn =
    dyn Fn(&Rebound, UnixTime) -> Result<Option<MailJobFn>, String> + Send + Sync;

impl std::fmt::Debug for HardwareChangeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HardwareChangeHook")
    }
}

/// The daemon-facing service.
#[derive(Debug)]
pub struct Service {
    store: Arc<Store>,
    key: Arc<SigningKeyPair>,
    clock: Arc<dyn Clock>,
    activations_per_minute: u32,
    /// Activation attempts per source address in the current minute.
    attempts: Mutex<HashMap<IpAddr, (u64, u32)>>,
    metrics: Arc<Metrics>,
    /// `[licensing] hardware_tolerance` ([`crate::hardware`]).
    hardware_tolerance: u32,
    hardware_changed: Option<HardwareChangeHook>,
}

impl Service {
    pub fn new(
        store: Arc<Store>,
        key: Arc<SigningKeyPair>,
        clock: Arc<dyn Clock>,
        activations_per_minute: u32,
    ) -> Self {
        Service {
            store,
            key,
            clock,
            activations_per_minute,
            attempts: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::new()),
            hardware_tolerance: crate::hardware::DEFAULT_TOLERANCE,
            hardware_changed: None,
        }
    }

    /// How many hardware facts may change for a check from a new hardware ID
    /// to move the binding there (`[licensing] hardware_tolerance`; 0: never).
    pub fn with_hardware_tolerance(mut self, tolerance: u32) -> Self {
        self.hardware_tolerance = tolerance;
        self
    }

    /// Emails the customer about every binding that moved to a changed host.
    pub fn with_hardware_change_hook(mut self, hook: HardwareChangeHook) -> Self {
        self.hardware_changed = Some(hook);
        self
    }

    /// Counts requests into `metrics` (the server's registry) instead of a
    /// private one.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Decodes one frame body and answers it. Never panics on any input.
    pub fn handle_body(&self, body: &[u8], source: &Source) -> Response {
        let started = Instant::now();
        let response = match codec::decode_body::<Request>(body) {
            Ok(request) => return self.handle(request, source),
            Err(DecodeError::UnsupportedVersion(v)) => {
                tracing::info!(from = %source.label, version = v, "request in an unsupported protocol version");
                Response::Error(ErrorReply::UnsupportedProtocolVersion {
                    min: MIN_PROTOCOL_VERSION,
                    max: PROTOCOL_VERSION,
                })
            }
            Err(e) => {
                tracing::warn!(from = %source.label, error = %e, "malformed request");
                Response::Error(ErrorReply::Malformed(e.to_string()))
            }
        };
        self.metrics
            .daemon_request("undecodable", &response, started.elapsed());
        response
    }

    /// Answers one decoded request.
    pub fn handle(&self, request: Request, source: &Source) -> Response {
        let started = Instant::now();
        let kind = request_kind(&request);
        let response = self.answer(request, source);
        self.metrics
            .daemon_request(kind, &response, started.elapsed());
        response
    }

    fn answer(&self, request: Request, source: &Source) -> Response {
        match request {
            Request::Hello(h) => {
                tracing::debug!(from = %source.label, agent = %h.agent, "hello");
                Response::Hello {
                    version: PROTOCOL_VERSION,
                    agent: AGENT.to_owned(),
                }
            }
            Request::Activate(a) => self.activate_by_token(&a, None, source),
            Request::ActivateWithFacts(a, facts) => {
                self.activate_by_token(&a, Some(&facts), source)
            }
            Request::Check(c) => self.check(&c, None, source),
            Request::CheckWithFacts(c, facts) => self.check(&c, Some(&facts), source),
            Request::CheckCompact(c) => self.check_compact(&c.check(), c.facts, source),
            Request::Deactivate(d) => {
                if !self.allow_activation(source.ip) {
                    return Response::Error(ErrorReply::RateLimited {
                        retry_after_secs: 60,
                    });
                }
                let now = self.clock.now();
                match self.store.deactivate_host(
                    &d.license_number,
                    d.token.expose(),
                    &d.hardware_id,
                    source.label.clone(),
                    now,
                ) {
                    Ok(Ok(serial)) => {
                        tracing::info!(license = %d.license_number, host = %d.hardware_id, "deactivated");
                        Response::Deactivated {
                            receipt: self.receipt(
                                &d.license_number,
                                &d.hardware_id,
                                d.nonce,
                                serial,
                                now,
                            ),
                        }
                    }
                    Ok(Err(reason)) => {
                        self.refuse(reason, &d.license_number, &d.hardware_id, d.nonce, source)
                    }
                    Err(e) => self.unavailable(e),
                }
            }
            Request::Relay(envelope) => self.relay(envelope, source),
        }
    }

    /// A check. `facts`: the hashed facts of the host's hardware ID (daemons
    /// since issue 19); with them, a check from a new hardware ID may move the
    /// binding ([`crate::hardware`]), and a clone is refused as such.
    /// A network activation with the customer's token, behind the activation
    /// rate limit of its source address.
    fn activate_by_token(
        &self,
        a: &wire::Activate,
        facts: Option<&HardwareFacts>,
        source: &Source,
    ) -> Response {
        if !self.allow_activation(source.ip) {
            tracing::warn!(from = %source.label, license = %a.license_number, "activation rate limit hit");
            return Response::Error(ErrorReply::RateLimited {
                retry_after_secs: 60,
            });
        }
        self.activate(
            &a.license_number,
            &a.hardware_id,
            &a.daemon_version,
            a.nonce,
            ActivationAuthority::Token(a.token.expose()),
            facts,
            source,
        )
    }

    fn check(&self, c: &wire::Check, facts: Option<&HardwareFacts>, source: &Source) -> Response {
        let req = HostCheck {
            license: &c.license_number,
            hardware_id: &c.hardware_id,
            held_serial: c.grant_serial,
            running: c.runtime == RuntimeState::Running,
            ge_seats: c.seats.ge,
            pwa_seats: c.seats.pwa,
            daemon_version: &c.daemon_version,
            from: source.label.clone(),
        };
        // One reading of the clock: the check-in record and the receipt
        // carry the same time, however long the commit waited.
        let now = self.clock.now();
        let mut result = self.store.check_host(&req, now);
        if let (Ok(Err(RefusalReason::BoundToAnotherHost)), Some(facts)) = (&result, facts) {
            match self.follow_changed_host(&req, facts, now) {
                Ok(Ok(())) => result = self.store.check_host(&req, now),
                Ok(Err(reason)) => result = Ok(Err(reason)),
                Err(e) => return self.unavailable(e),
            }
        }
        match result {
            Ok(Ok(outcome)) => {
                if let Some(facts) = facts {
                    if let Err(e) =
                        self.store
                            .record_host_facts(&c.license_number, &c.hardware_id, facts, now)
                    {
                        tracing::warn!(license = %c.license_number, error = %e, "hardware facts not recorded");
                    }
                }
                tracing::debug!(license = %c.license_number, host = %c.hardware_id, new_grant = outcome.newer_grant.is_some(), "checked");
                let receipt = self.receipt(
                    &c.license_number,
                    &c.hardware_id,
                    c.nonce,
                    outcome.current_serial,
                    now,
                );
                Response::Checked {
                    receipt,
                    grant: outcome.newer_grant,
                }
            }
            Ok(Err(reason)) => {
                self.refuse(reason, &c.license_number, &c.hardware_id, c.nonce, source)
            }
            Err(e) => self.unavailable(e),
        }
    }

    /// A compact daily check: answered as the check with the facts kept of
    /// this host when its digest names them (the answer then with the
    /// compact receipt if the daemon can rebuild it); otherwise the daemon is
    /// asked for the facts themselves.
    fn check_compact(&self, c: &wire::Check, digest: FactsDigest, source: &Source) -> Response {
        match self.store.host_facts(&c.license_number) {
            Ok(Some(kept))
                if kept.hardware_id == c.hardware_id && kept.facts.digest() == digest =>
            {
                self.check(c, Some(&kept.facts), source).compacted(c)
            }
            Ok(_) => Response::Error(ErrorReply::FactsNeeded),
            Err(e) => self.unavailable(e),
        }
    }

    /// A request with hardware facts from a host the license is not bound
    /// to: the binding moves there if [`crate::hardware`] judges it the bound
    /// computer changed (new grant, audit entry, and the customer's email in
    /// the same transaction); otherwise the reason to refuse it (another host,
    /// or a clone).
    fn follow_changed_host(
        &self,
        req: &HostCheck<'_>,
        facts: &HardwareFacts,
        now: UnixTime,
    ) -> Result<Result<(), RefusalReason>, crate::store::StoreError> {
        let no_mail = |_: &Rebound, _: UnixTime| Ok(None);
        let mail: RebindMail<'_> = match &self.hardware_changed {
            Some(hook) => &*hook.compose,
            None => &no_mail,
        };
        let rebound = match self.store.rebind_changed_host(
            req,
            facts,
            self.hardware_tolerance,
            &self.key,
            mail,
            now,
        )? {
            Ok(rebound) => rebound,
            Err(reason) => return Ok(Err(reason)),
        };
        tracing::warn!(license = %req.license, from_host = %rebound.from, host = %req.hardware_id, changes = rebound.changes, from = %req.from, "hardware changed: binding moved");
        if let Some(hook) = &self.hardware_changed {
            (hook.queued)();
        }
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    fn activate(
        &self,
        license: &LicenseNumber,
        hardware_id: &HardwareId,
        daemon_version: &str,
        nonce: Nonce,
        authority: ActivationAuthority<'_>,
        facts: Option<&HardwareFacts>,
        source: &Source,
    ) -> Response {
        let req = HostActivation {
            license,
            // Unused: `authority` decides (the token, if that is what it is).
            token: "",
            hardware_id,
            daemon_version,
            from: source.label.clone(),
        };
        let now = self.clock.now();
        let mut result = self.store.activate_host_as(&req, authority, &self.key, now);
        // Authorised (token, owner or vendor) from a host close to the bound
        // one: the same computer with changed hardware (its state lost, or
        // activated again by hand) follows as a check would, rather than
        // being told "bound to another computer".
        if let (Ok(Err(RefusalReason::BoundToAnotherHost)), Some(facts)) = (&result, facts) {
            let as_check = HostCheck {
                license,
                hardware_id,
                held_serial: None,
                running: false,
                ge_seats: 0,
                pwa_seats: 0,
                daemon_version,
                from: source.label.clone(),
            };
            match self.follow_changed_host(&as_check, facts, now) {
                Ok(Ok(())) => result = self.store.activate_host_as(&req, authority, &self.key, now),
                Ok(Err(reason)) => result = Ok(Err(reason)),
                Err(e) => return self.unavailable(e),
            }
        }
        match result {
            Ok(Ok(grant)) => {
                tracing::info!(license = %license, host = %hardware_id, from = %source.label, "activated");
                if let Some(facts) = facts {
                    if let Err(e) = self
                        .store
                        .record_host_facts(license, hardware_id, facts, now)
                    {
                        tracing::warn!(license = %license, error = %e, "hardware facts not recorded");
                    }
                }
                let serial = self
                    .store
                    .license(license)
                    .ok()
                    .flatten()
                    .map_or(0, |l| l.serial);
                let receipt = self.receipt(license, hardware_id, nonce, serial, now);
                Response::Activated { grant, receipt }
            }
            Ok(Err(reason)) => self.refuse(reason, license, hardware_id, nonce, source),
            Err(e) => self.unavailable(e),
        }
    }

    /// Answers a request that came as a file (a site without any internet):
    /// exactly what the network check or activation would answer, signed and
    /// bound to the request's hardware ID and nonce; the check-in is recorded
    /// as "by file". An activation needs no token: `by` authorises it (the
    /// license's owner in the portal, or the vendor).
    pub fn answer_offline(&self, request: OfflineRequest, by: &OfflineAuthor) -> Response {
        let started = Instant::now();
        let source = Source {
            ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            label: by.label(),
        };
        // The hardware facts (request files since issue 19): the same
        // rebind and clone rule as a network check or activation.
        let facts = request.facts().cloned();
        let (kind, response) = match request {
            OfflineRequest::Check(c) | OfflineRequest::CheckWithFacts(c, _) => {
                if let OfflineAuthor::Owner(account) = by {
                    // One customer never learns about another's license.
                    let owned = self
                        .store
                        .license(&c.license_number)
                        .ok()
                        .flatten()
                        .is_some_and(|l| l.account == Some(*account));
                    if !owned {
                        let r = self.refuse(
                            RefusalReason::UnknownLicense,
                            &c.license_number,
                            &c.hardware_id,
                            c.nonce,
                            &source,
                        );
                        return r;
                    }
                }
                ("check", self.check(&c, facts.as_ref(), &source))
            }
            OfflineRequest::Activate(a) | OfflineRequest::ActivateWithFacts(a, _) => {
                let authority = match by {
                    OfflineAuthor::Owner(account) => ActivationAuthority::Owner(*account),
                    OfflineAuthor::Vendor(_) => ActivationAuthority::Vendor,
                };
                (
                    "activate",
                    self.activate(
                        &a.license_number,
                        &a.hardware_id,
                        &a.daemon_version,
                        a.nonce,
                        authority,
                        facts.as_ref(),
                        &source,
                    ),
                )
            }
        };
        self.metrics
            .daemon_request(kind, &response, started.elapsed());
        response
    }

    /// A request carried by a peer daemon: answered as if it came directly, the
    /// answer carried back unchanged. Relays do not nest.
    fn relay(&self, envelope: RelayEnvelope, source: &Source) -> Response {
        let inner_source = Source {
            ip: source.ip,
            label: format!("{} via relay {}", source.label, envelope.relay),
        };
        let answer = match codec::decode_body::<Request>(&envelope.body) {
            Ok(Request::Relay(_)) => {
                Response::Error(ErrorReply::Malformed("relayed requests do not nest".into()))
            }
            Ok(request) => self.handle(request, &inner_source),
            Err(_) => self.handle_body(&envelope.body, &inner_source),
        };
        match codec::encode_body(&answer) {
            Ok(body) => Response::Relayed(RelayEnvelope {
                relay: envelope.relay,
                body,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a relayed answer");
                Response::Error(ErrorReply::Unavailable)
            }
        }
    }

    fn receipt(
        &self,
        license: &LicenseNumber,
        host: &HardwareId,
        nonce: Nonce,
        current_serial: u64,
        now: UnixTime,
    ) -> Signed<CheckReceipt> {
        let receipt = CheckReceipt {
            license_number: license.clone(),
            hardware_id: host.clone(),
            nonce,
            server_time: now,
            next_check_due: now.plus_secs(CHECK_INTERVAL_SECS),
            current_serial,
        };
        Signed::sign(&receipt, &self.key)
    }

    fn refuse(
        &self,
        reason: RefusalReason,
        license: &LicenseNumber,
        host: &HardwareId,
        nonce: Nonce,
        source: &Source,
    ) -> Response {
        tracing::info!(license = %license, host = %host, from = %source.label, reason = reason.key(), "refused");
        self.metrics.refusal(reason);
        let refusal = Refusal {
            reason,
            license_number: license.clone(),
            hardware_id: host.clone(),
            nonce,
            server_time: self.clock.now(),
        };
        Response::Refused(Signed::sign(&refusal, &self.key))
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Response {
        tracing::error!(error = %e, "store error while answering a daemon");
        Response::Error(ErrorReply::Unavailable)
    }

    /// Fixed one-minute windows per source address (server clock).
    fn allow_activation(&self, ip: IpAddr) -> bool {
        let minute = self.clock.now().secs() / 60;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() > 100_000 {
            // Bound the table: old windows are worthless anyway.
            attempts.retain(|_, (m, _)| *m == minute);
        }
        let entry = attempts.entry(ip).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= self.activations_per_minute
    }
}

#[cfg(test)]
mod tests {
    //! The hardware-change rule through the daemon-facing service (issue 19),
    //! on SQLite and PostgreSQL.
    use super::*;
    use crate::domain::{Actor, MutationKind, NewLicense};
    use crate::store::NewMutation;
    use keys::{
        Binding, Entitlements, LicenseData, LicenseGrant, LicenseType, Protection, SimClock,
        TrustedKeys,
    };
    use wire::{Activate, Check, Seats, Token};

    const T0: UnixTime = UnixTime(1_800_000_000);

    struct Site {
        service: Service,
        store: Arc<Store>,
        clock: SimClock,
        key: Arc<SigningKeyPair>,
        number: LicenseNumber,
        token: String,
        /// What the hook was told: (from, to, changes).
        moved: Arc<Mutex<Vec<(HardwareId, HardwareId, u32)>>>,
        /// Set: the hook cannot compose the email (as a broken template).
        mail_fails: Arc<std::sync::atomic::AtomicBool>,
    }

    fn site(store: Store, tolerance: u32) -> Site {
        let store = Arc::new(store);
        let key = Arc::new(SigningKeyPair::from_seed(&[9; 32]));
        let clock = SimClock::at(T0);
        let (license, _) = store
            .create_license_with(
                NewLicense {
                    account: None,
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Default::default(),
                    license_data: LicenseData {
                        name: "n".into(),
                        postcode: "1".into(),
                        city: "c".into(),
                    },
                },
                NewMutation {
                    kind: MutationKind::New,
                    adds: Entitlements::standard_base(),
                    price_net: None,
                    priced: None,
                    remarks: String::new(),
                },
                true,
                true,
                &key,
                &Actor::System,
                T0,
            )
            .expect("paid license");
        let moved = Arc::new(Mutex::new(vec![]));
        let mail_fails = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook = {
            let moved = Arc::clone(&moved);
            let fails = Arc::clone(&mail_fails);
            HardwareChangeHook {
                compose: Arc::new(move |r: &Rebound, _at| {
                    if fails.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err("the template broke".into());
                    }
                    let to = match &r.license.binding {
                        Some(Binding::HardwareId(h)) => h.clone(),
                        other => panic!("rebound to {other:?}"),
                    };
                    moved
                        .lock()
                        .expect("lock")
                        .push((r.from.clone(), to.clone(), r.changes));
                    let text = format!("hardware changed: {} -> {to}", r.from);
                    let job: MailJobFn = Box::new(move |id| format!("{id} {text}"));
                    Ok(Some(job))
                }),
                queued: Arc::new(|| {}),
            }
        };
        let service = Service::new(
            Arc::clone(&store),
            Arc::clone(&key),
            Arc::new(clock.clone()),
            1000,
        )
        .with_hardware_tolerance(tolerance)
        .with_hardware_change_hook(hook);
        Site {
            service,
            store,
            clock,
            key,
            token: license.token.expose().to_owned(),
            number: license.number,
            moved,
            mail_fails,
        }
    }

    fn pc(replace: &[(&str, &str)]) -> HardwareFacts {
        let mut lines = vec![
            "machine-id=11111111111111111111111111111111".to_owned(),
            "dmi-uuid=4c4c4544-0042-3510".to_owned(),
            "cpu=Intel(R) Core(TM) i5".to_owned(),
            "mac=00:11:22:33:44:01".to_owned(),
            "mac=00:11:22:33:44:02".to_owned(),
        ];
        for (old, new) in replace {
            let i = lines
                .iter()
                .position(|l| l == old)
                .expect("a fact to replace");
            lines[i] = (*new).to_owned();
        }
        HardwareFacts::from_lines(&lines)
    }

    fn id(n: u8) -> HardwareId {
        HardwareId::from_bytes([n; 16])
    }

    fn source() -> Source {
        Source {
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            label: "test".into(),
        }
    }

    impl Site {
        fn activate(&self, host: &HardwareId, facts: &HardwareFacts) -> Response {
            let a = Activate {
                license_number: self.number.clone(),
                token: Token(self.token.clone()),
                hardware_id: host.clone(),
                daemon_version: "promos-licd/test".into(),
                nonce: Nonce::random(),
            };
            self.service
                .handle(Request::ActivateWithFacts(a, facts.clone()), &source())
        }

        fn check(&self, host: &HardwareId, facts: Option<&HardwareFacts>) -> Response {
            let c = Check {
                license_number: self.number.clone(),
                hardware_id: host.clone(),
                grant_serial: None,
                runtime: RuntimeState::Running,
                seats: Seats::default(),
                daemon_version: "promos-licd/test".into(),
                nonce: Nonce::random(),
            };
            let request = match facts {
                Some(f) => Request::CheckWithFacts(c, f.clone()),
                None => Request::Check(c),
            };
            self.service.handle(request, &source())
        }

        /// The refusal's reason, or the grant's host of a successful check.
        fn outcome(&self, r: Response) -> Result<Option<HardwareId>, RefusalReason> {
            let trusted = TrustedKeys::with([self.key.public()]);
            match r {
                Response::Checked { grant, .. } => Ok(grant.map(|g| {
                    let g: keys::Verified<LicenseGrant> = trusted.verify(&g).expect("grant");
                    match &g.binding {
                        Binding::HardwareId(h) => h.clone(),
                        other => panic!("grant bound to {other:?}"),
                    }
                })),
                Response::Activated { .. } => Ok(None),
                Response::Refused(r) => Err(trusted.verify(&r).expect("refusal").reason),
                other => panic!("unexpected answer {other:?}"),
            }
        }

        fn audit_actions(&self) -> Vec<(String, String)> {
            self.store
                .audit(Some(&self.number), 100)
                .expect("audit")
                .into_iter()
                .filter(|e| e.action.starts_with("binding."))
                .map(|e| (e.action, e.detail))
                .collect()
        }

        fn bound(&self) -> Option<Binding> {
            self.store
                .license(&self.number)
                .expect("read")
                .expect("license")
                .binding
        }
    }

    const ONE_MAC: (&str, &str) = ("mac=00:11:22:33:44:02", "mac=00:11:22:33:44:99");

    fn for_each_engine(test: impl Fn(Store)) {
        test(Store::temporary().expect("SQLite store"));
        test(Store::temporary_postgres().expect("PostgreSQL store"));
    }

    #[test]
    fn a_replaced_network_card_moves_the_binding_and_a_clone_is_refused() {
        for_each_engine(|store| {
            let s = site(store, 1);
            let (a, b, c) = (id(0xa), id(0xb), id(0xc));
            assert!(matches!(
                s.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            // (The test's checks hold no grant: each is answered with the current one.)
            assert_eq!(s.outcome(s.check(&a, Some(&pc(&[])))), Ok(Some(a.clone())));
            let known = s.store.host_facts(&s.number).expect("read").expect("facts");
            assert_eq!((known.hardware_id, known.facts), (a.clone(), pc(&[])));

            // One network card replaced: a new grant for the new ID, told to the hook.
            s.clock.advance_secs(UnixTime::DAY);
            let moved = s.outcome(s.check(&b, Some(&pc(&[ONE_MAC]))));
            assert_eq!(
                moved,
                Ok(Some(b.clone())),
                "the new grant is for the new ID"
            );
            assert_eq!(s.bound(), Some(Binding::HardwareId(b.clone())));
            assert_eq!(
                *s.moved.lock().expect("lock"),
                vec![(a.clone(), b.clone(), 1)]
            );
            let trail = s.audit_actions();
            let changed = trail
                .iter()
                .find(|(action, _)| action == "binding.hardware_changed")
                .expect("audit entry");
            assert!(
                changed.1.contains(&a.to_string()) && changed.1.contains(&b.to_string()),
                "{changed:?}"
            );
            // The moved host checks on as usual.
            assert_eq!(
                s.outcome(s.check(&b, Some(&pc(&[ONE_MAC])))),
                Ok(Some(b.clone()))
            );

            // The old computer (a clone that kept the old card) asks again: refused
            // as a clone, and the vendor sees it.
            s.clock.advance_secs(UnixTime::DAY);
            assert_eq!(
                s.outcome(s.check(&a, Some(&pc(&[])))),
                Err(RefusalReason::ClonedHost)
            );
            // A third ID close to the facts: a clone too; the binding stays.
            let third = pc(&[ONE_MAC, ("mac=00:11:22:33:44:01", "mac=00:11:22:33:44:77")]);
            assert_eq!(
                s.outcome(s.check(&c, Some(&third))),
                Err(RefusalReason::ClonedHost)
            );
            assert_eq!(s.bound(), Some(Binding::HardwareId(b.clone())));
            let refused: Vec<_> = s
                .audit_actions()
                .into_iter()
                .filter(|(action, _)| action == "binding.clone_refused")
                .collect();
            assert_eq!(refused.len(), 2, "{refused:?}");
            assert!(refused[0].1.contains(&a.to_string()), "{refused:?}");
            assert!(refused[1].1.contains(&c.to_string()), "{refused:?}");
            // A daemon that sends no facts never gets the reason it cannot decode.
            assert_eq!(
                s.outcome(s.check(&a, None)),
                Err(RefusalReason::BoundToAnotherHost)
            );
            assert_eq!(s.moved.lock().expect("lock").len(), 1, "no second move");
        });
    }

    #[test]
    fn the_move_and_its_email_are_stored_together_or_not_at_all() {
        for_each_engine(|store| {
            let s = site(store, 1);
            let (a, b) = (id(0xa), id(0xb));
            assert!(matches!(
                s.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            let serial = s.store.license(&s.number).expect("read").expect("l").serial;
            // The email cannot be composed inside the move's transaction:
            // nothing of the move is kept, and the host is told to retry.
            s.mail_fails
                .store(true, std::sync::atomic::Ordering::SeqCst);
            s.clock.advance_secs(UnixTime::DAY);
            let r = s.check(&b, Some(&pc(&[ONE_MAC])));
            assert!(matches!(r, Response::Error(_)), "{r:?}");
            assert_eq!(s.bound(), Some(Binding::HardwareId(a.clone())));
            let l = s.store.license(&s.number).expect("read").expect("l");
            assert_eq!(l.serial, serial, "no grant issued");
            assert!(s
                .audit_actions()
                .iter()
                .all(|(action, _)| action != "binding.hardware_changed"));
            assert_eq!(s.store.mail_jobs().expect("jobs"), vec![]);
            let known = s.store.host_facts(&s.number).expect("read").expect("facts");
            assert_eq!((known.hardware_id, known.rebound), (a.clone(), None));
            // The retry moves the binding, and its email is in the queue with it.
            s.mail_fails
                .store(false, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                s.outcome(s.check(&b, Some(&pc(&[ONE_MAC])))),
                Ok(Some(b.clone()))
            );
            let jobs = s.store.mail_jobs().expect("jobs");
            assert_eq!(jobs.len(), 1, "{jobs:?}");
            assert!(
                jobs[0]
                    .1
                    .ends_with(&format!("hardware changed: {a} -> {b}")),
                "{jobs:?}"
            );
            assert!(s
                .audit_actions()
                .iter()
                .any(|(action, _)| action == "binding.hardware_changed"));
        });
    }

    #[test]
    fn an_activation_from_the_bound_computer_with_changed_hardware_follows_it() {
        for_each_engine(|store| {
            let s = site(store, 1);
            let (a, b) = (id(0xa), id(0xb));
            assert!(matches!(
                s.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            // Activated again (with the token) after a network card was
            // replaced: the license follows, as for a check.
            s.clock.advance_secs(UnixTime::DAY);
            let trusted = TrustedKeys::with([s.key.public()]);
            match s.activate(&b, &pc(&[ONE_MAC])) {
                Response::Activated { grant, .. } => {
                    let g: keys::Verified<LicenseGrant> = trusted.verify(&grant).expect("grant");
                    assert_eq!(g.binding, Binding::HardwareId(b.clone()));
                }
                other => panic!("not activated: {other:?}"),
            }
            assert_eq!(s.bound(), Some(Binding::HardwareId(b.clone())));
            assert_eq!(
                *s.moved.lock().expect("lock"),
                vec![(a.clone(), b.clone(), 1)]
            );
            assert_eq!(s.store.mail_jobs().expect("jobs").len(), 1);
            assert!(s
                .audit_actions()
                .iter()
                .any(|(action, _)| action == "binding.hardware_changed"));
            // The computer it left activating again is a clone; one with two
            // facts changed from the moved binding is another computer; the
            // binding stays.
            assert_eq!(
                s.outcome(s.activate(&a, &pc(&[]))),
                Err(RefusalReason::ClonedHost)
            );
            let two = pc(&[
                ONE_MAC,
                ("cpu=Intel(R) Core(TM) i5", "cpu=AMD Ryzen 7"),
                ("dmi-uuid=4c4c4544-0042-3510", "dmi-uuid=ffff"),
            ]);
            assert_eq!(
                s.outcome(s.activate(&id(0xc), &two)),
                Err(RefusalReason::BoundToAnotherHost)
            );
            assert_eq!(s.bound(), Some(Binding::HardwareId(b)));
            assert_eq!(s.moved.lock().expect("lock").len(), 1, "no second move");
        });
    }

    #[test]
    fn a_check_by_file_follows_one_changed_fact_and_refuses_two() {
        for_each_engine(|store| {
            let s = site(store, 1);
            let (a, b) = (id(0xa), id(0xb));
            assert!(matches!(
                s.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            let by_file = |host: &HardwareId, facts: &HardwareFacts| {
                let c = Check {
                    license_number: s.number.clone(),
                    hardware_id: host.clone(),
                    grant_serial: None,
                    runtime: RuntimeState::Running,
                    seats: Seats::default(),
                    daemon_version: "promos-licd/test".into(),
                    nonce: Nonce::random(),
                };
                let text =
                    wire::offline::write_request(&OfflineRequest::Check(c).with_facts(facts))
                        .expect("request file");
                let request = wire::offline::read_request(&text).expect("read back");
                s.service
                    .answer_offline(request, &OfflineAuthor::Vendor("op".into()))
            };
            s.clock.advance_secs(UnixTime::DAY);
            // Two facts changed (with N=1): another computer, by file as on the network.
            let two = pc(&[ONE_MAC, ("cpu=Intel(R) Core(TM) i5", "cpu=AMD Ryzen 7")]);
            assert_eq!(
                s.outcome(by_file(&id(0xc), &two)),
                Err(RefusalReason::BoundToAnotherHost)
            );
            assert_eq!(s.bound(), Some(Binding::HardwareId(a.clone())));
            // One network card replaced: rebound, with the email and the audit
            // entry, and the audit names the file as the way it came.
            assert_eq!(s.outcome(by_file(&b, &pc(&[ONE_MAC]))), Ok(Some(b.clone())));
            assert_eq!(s.bound(), Some(Binding::HardwareId(b.clone())));
            assert_eq!(s.store.mail_jobs().expect("jobs").len(), 1);
            let entry = s
                .store
                .audit(Some(&s.number), 100)
                .expect("audit")
                .into_iter()
                .find(|e| e.action == "binding.hardware_changed")
                .expect("audit entry");
            assert!(
                format!("{:?}", entry.actor).contains("by file"),
                "{entry:?}"
            );
            // The computer it left, by file: a clone.
            assert_eq!(
                s.outcome(by_file(&a, &pc(&[]))),
                Err(RefusalReason::ClonedHost)
            );
        });
    }

    #[test]
    fn two_changed_facts_or_a_new_machine_id_are_another_host() {
        for_each_engine(|store| {
            let s = site(store, 1);
            let a = id(0xa);
            assert!(matches!(
                s.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            let two = pc(&[ONE_MAC, ("cpu=Intel(R) Core(TM) i5", "cpu=AMD Ryzen 7")]);
            assert_eq!(
                s.outcome(s.check(&id(0xb), Some(&two))),
                Err(RefusalReason::BoundToAnotherHost),
                "two facts changed with N=1: another host"
            );
            let other_os = pc(&[(
                "machine-id=11111111111111111111111111111111",
                "machine-id=22222222222222222222222222222222",
            )]);
            assert_eq!(
                s.outcome(s.check(&id(0xd), Some(&other_os))),
                Err(RefusalReason::BoundToAnotherHost),
                "a changed machine-id is always another host"
            );
            assert_eq!(s.bound(), Some(Binding::HardwareId(a.clone())));
            assert!(s.moved.lock().expect("lock").is_empty());
            assert!(s
                .audit_actions()
                .iter()
                .all(|(action, _)| action == "binding.activated"));
        });
    }

    #[test]
    fn tolerance_zero_is_the_manuals_strict_rule() {
        for_each_engine(|store| {
            let a = id(0xa);
            let strict = site(store, 0);
            assert!(matches!(
                strict.activate(&a, &pc(&[])),
                Response::Activated { .. }
            ));
            assert_eq!(
                strict.outcome(strict.check(&id(0xb), Some(&pc(&[ONE_MAC])))),
                Err(RefusalReason::BoundToAnotherHost)
            );
            assert_eq!(strict.bound(), Some(Binding::HardwareId(a)));
        });
    }
}
