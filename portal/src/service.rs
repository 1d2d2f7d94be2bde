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
use crate::store::{ActivationAuthority, HostActivation, HostCheck, Store};
use keys::{Clock, HardwareId, LicenseNumber, Signed, SigningKeyPair, UnixTime};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wire::codec::{self, DecodeError};
use wire::offline::OfflineRequest;
use wire::{
    CheckReceipt, ErrorReply, Nonce, Refusal, RefusalReason, RelayEnvelope, Request, Response,
    RuntimeState, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
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
        }
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
            Request::Activate(a) => {
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
                    source,
                )
            }
            Request::Check(c) => self.check(&c, source),
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

    fn check(&self, c: &wire::Check, source: &Source) -> Response {
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
        match self.store.check_host(&req, now) {
            Ok(Ok(outcome)) => {
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

    fn activate(
        &self,
        license: &LicenseNumber,
        hardware_id: &HardwareId,
        daemon_version: &str,
        nonce: Nonce,
        authority: ActivationAuthority<'_>,
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
        match self.store.activate_host_as(&req, authority, &self.key, now) {
            Ok(Ok(grant)) => {
                tracing::info!(license = %license, host = %hardware_id, from = %source.label, "activated");
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
        let (kind, response) = match request {
            OfflineRequest::Check(c) => {
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
                ("check", self.check(&c, &source))
            }
            OfflineRequest::Activate(a) => {
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
