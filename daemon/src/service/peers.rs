//! The peer relay inside the daemon's shell: answering peers (relay, store and
//! forward, gossip) and asking them (checks through a peer, collecting late
//! answers, passing grants on).
//!
//! Rules kept here:
//! - a relay forwards a peer's check body unchanged, wrapped in
//!   [`wire::RelayEnvelope`]; it only carries checks (activation needs the
//!   customer at the host, and talks to the server directly);
//! - whatever a peer hands over is verified here against the trusted server keys
//!   and against this host (hardware ID, open nonce) before the state machine
//!   sees it; a forged signature, a document for another host or request, a
//!   replayed answer, an undecodable frame or a flood cut the peer off for
//!   [`crate::peer::BAN`] and are logged;
//! - the relay's queue, answers and grant table are bounded ([`crate::relay`]);
//! - a daemon whose own check reached the server says so to each peer that
//!   lists the capability in its `Hello` (`ServerReached`); a peer that could
//!   not reach the server checks through it at once, one such check at a time
//!   and at most one a second. The message carries nothing to trust;
//! - a connection this host opened to a peer is asked on again for a while
//!   ([`LINK_KEPT`]); a failed request is asked again on a new connection
//!   only if it cannot have carried a check to the server (a `Forward` is
//!   asked again only if it was never sent).

use super::{Shared, DAEMON_VERSION};
use crate::cache::Cache;
use crate::client::ServerClient;
use crate::config::PeerEntry;
use crate::peer::{remote_key, PeerConn, PeerEndpoint, PeerExchangeError, PeerGuard};
use crate::relay::{PeerKey, QueueError, RelayStore};
use crate::state::Input;
use keys::{LicenseGrant, Signed, Verified};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use wire::codec;
use wire::peer::{has_capability, CAP_SERVER_REACHED};
use wire::{Nonce, PeerError, PeerRequest, PeerResponse, RelayEnvelope, Request, Response};

/// Answered nonces remembered to recognise replays: a few weeks of daily
/// checks plus hourly retries.
const USED_NONCES: usize = 512;
/// A relay whose last attempt to reach the server failed queues its peers'
/// checks at once, but tries the uplink again for a peer's check after this
/// long, so a line that came back (or a single slow answer) does not leave the
/// site queueing until the relay's own next check.
const UPLINK_PROBE: std::time::Duration = std::time::Duration::from_secs(30);
/// Checks started by `ServerReached` follow each other at least this far
/// apart (none is dropped: a report that comes during one starts the next):
/// a listed peer cannot make this host check, and record open nonces (64
/// kept), faster than that.
const REACHED_CHECK_GAP: std::time::Duration = std::time::Duration::from_secs(1);
/// A peer's `Hello` listing `server-reached` is believed this long; then it
/// is asked again. Saves a request per report (each counts against the
/// peer's rate limit); as long as a peer's ban, so a daemon downgraded
/// meanwhile costs at most one.
const CAPABILITY_KEPT: std::time::Duration = crate::peer::BAN;
/// Peers reported to and exchanged with at the same time after a check. One
/// after another, the last of 49 peers heard a relay's report about a second
/// after the first (the relay bench); 16 at a time still bound what one
/// check opens at once (connections here, checks through this host at the
/// peers' side) while a site of 50 hosts is told in four waves.
const EXCHANGES_AT_ONCE: usize = 16;
/// A connection this host opened to a peer is used again for the next
/// request to that peer if that comes within this long of the last one (and
/// the connection is still open): a check through a relay, the exchange after
/// it, the relay's report and the check that report starts are one
/// mutually authenticated handshake instead of one each (about 200 per round
/// at 50 hosts, the relay bench). Long enough for one round of a site's
/// checks; short, so a connection to a peer that restarted meanwhile (and
/// forgot it) is rarely used. Below the 30 s idle timeout of the transport.
const LINK_KEPT: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes of grants per `Collected` answer: leaves room in the 64 KiB frame for
/// [`crate::relay::MAX_ANSWERS_PER_PEER`] answers of ~3 KiB.
const GRANT_BYTES_PER_ANSWER: usize = 32 * 1024;

/// The peer relay's state in the shell.
#[derive(Debug)]
pub struct PeerNet {
    endpoint: PeerEndpoint,
    guard: PeerGuard,
    store: RelayStore,
    used: Mutex<VecDeque<Nonce>>,
    /// One flush of the queue at a time.
    flushing: tokio::sync::Mutex<()>,
    /// When the uplink was last tried for a peer while it was thought down.
    last_probe: Mutex<Option<std::time::Instant>>,
    /// The peer whose `ServerReached` is still to be acted on (the latest).
    reached_from: Mutex<Option<String>>,
    /// A task is checking through peers that reported `ServerReached`.
    reached_running: std::sync::atomic::AtomicBool,
    /// Peers whose `Hello` listed `server-reached`, and when it said so.
    can_hear_reached: Mutex<HashMap<PeerKey, std::time::Instant>>,
    /// This host took a grant that did not come by a check (an answer file):
    /// [`PeerNet::share_new_grants`] passes it on without waiting for one.
    new_grant: tokio::sync::Notify,
    /// The client that carries the peers' checks to the server, with its one
    /// kept connection (for that server address): every peer's check is a
    /// stream on it instead of a handshake each.
    uplink_client: Mutex<Option<ServerClient>>,
    /// Connections this host opened to its peers, by address, with when each
    /// was last used ([`LINK_KEPT`]). Only these are asked on again: a peer
    /// serves requests on the connections it accepted, so an older daemon
    /// would not answer on one it opened.
    links: Mutex<HashMap<String, (PeerConn, std::time::Instant)>>,
}

/// What a peer did wrong.
struct Hostile(String);

/// How asking one peer to relay a check went.
enum Relayed {
    /// The server's answer (verified, for this request).
    Answer(Box<Input>),
    /// The peer has no uplink and keeps the check.
    Queued,
    /// Not reachable, declined, or cut off.
    Nothing,
}

impl PeerNet {
    pub fn new(endpoint: PeerEndpoint, cache: Cache) -> Self {
        PeerNet {
            endpoint,
            guard: PeerGuard::default(),
            store: RelayStore::new(cache),
            used: Mutex::new(VecDeque::new()),
            flushing: tokio::sync::Mutex::new(()),
            last_probe: Mutex::new(None),
            reached_from: Mutex::new(None),
            reached_running: std::sync::atomic::AtomicBool::new(false),
            can_hear_reached: Mutex::new(HashMap::new()),
            new_grant: tokio::sync::Notify::new(),
            uplink_client: Mutex::new(None),
            links: Mutex::new(HashMap::new()),
        }
    }

    pub fn endpoint(&self) -> &PeerEndpoint {
        &self.endpoint
    }

    pub fn store(&self) -> &RelayStore {
        &self.store
    }

    pub fn guard(&self) -> &PeerGuard {
        &self.guard
    }

    pub fn close(&self) {
        self.endpoint.endpoint().close(0u32.into(), b"shutdown");
    }

    pub(super) fn used_nonce(&self, n: Nonce) {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        u.push_back(n);
        while u.len() > USED_NONCES {
            u.pop_front();
        }
    }

    fn was_used(&self, n: &Nonce) -> bool {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(n)
    }

    /// This host now holds a grant it took outside a check (an answer file
    /// applied): the peers hear of it at once, not only after the next check,
    /// which on a host without any network may be a day away.
    pub(super) fn grant_taken(&self) {
        self.new_grant.notify_one();
    }

    /// Runs until aborted: after each [`PeerNet::grant_taken`], the exchange
    /// that follows every check (collect, then pass the site's grants on).
    /// Grants taken while one runs start one more, not one each.
    pub async fn share_new_grants(self: Arc<Self>, shared: Arc<Shared>) {
        loop {
            self.new_grant.notified().await;
            tracing::info!("a grant came by file: passing it on to the peers");
            self.exchange_with_peers(&shared, false).await;
        }
    }

    // ---- the listening side -------------------------------------------------

    /// Accepts peer connections until the endpoint closes.
    pub async fn serve(self: Arc<Self>, shared: Arc<Shared>) {
        while let Some(incoming) = self.endpoint.endpoint().accept().await {
            let (net, shared) = (self.clone(), shared.clone());
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(error = %e, "peer handshake failed (not a configured peer?)");
                        return;
                    }
                };
                net.serve_conn(shared, conn).await;
            });
        }
    }

    /// Serves one peer connection: each request (stream) in a task of its
    /// own, so a check waiting for the server does not hold up the
    /// exchanges behind it on a connection the peer keeps; at most 8 at once
    /// (the transport's stream limit, [`crate::peer`]).
    async fn serve_conn(self: Arc<Self>, shared: Arc<Shared>, conn: quinn::Connection) {
        let addr = conn.remote_address().to_string();
        let Some(key) = remote_key(&conn) else {
            conn.close(2u32.into(), b"no key");
            return;
        };
        if self.guard.is_banned(&key) {
            conn.close(2u32.into(), b"cut off");
            return;
        }
        loop {
            let (mut send, mut recv) = match conn.accept_bi().await {
                Ok(s) => s,
                Err(_) => return,
            };
            // Cut off meanwhile (by this side or the other): the connection
            // may have been open since before.
            if self.guard.is_banned(&key) {
                conn.close(2u32.into(), b"cut off");
                return;
            }
            if !self.guard.allow(&key) {
                self.guard
                    .ban(&key, &addr, "flood: over the request rate limit");
                conn.close(3u32.into(), b"rate limit");
                return;
            }
            let (net, shared, conn, addr) =
                (self.clone(), shared.clone(), conn.clone(), addr.clone());
            tokio::spawn(async move {
                let request = match codec::read_message::<PeerRequest, _>(&mut recv).await {
                    Ok(r) => r,
                    Err(e) => {
                        net.guard
                            .ban(&key, &addr, &format!("undecodable request: {e}"));
                        conn.close(3u32.into(), b"malformed");
                        return;
                    }
                };
                let answer = match net.answer(&shared, &key, request).await {
                    Ok(a) => a,
                    Err(Hostile(why)) => {
                        net.guard.ban(&key, &addr, &why);
                        conn.close(3u32.into(), b"forged or replayed data");
                        return;
                    }
                };
                if codec::write_message(&mut send, &answer).await.is_ok() {
                    let _ = send.finish();
                }
            });
        }
    }

    async fn answer(
        &self,
        shared: &Arc<Shared>,
        key: &PeerKey,
        request: PeerRequest,
    ) -> Result<PeerResponse, Hostile> {
        Ok(match request {
            PeerRequest::Hello { hardware_id, agent } => {
                tracing::debug!(peer = %hardware_id, %agent, "peer hello");
                PeerResponse::Hello {
                    hardware_id: shared.hardware_id.clone(),
                    agent: format!("{DAEMON_VERSION} {CAP_SERVER_REACHED}"),
                }
            }
            PeerRequest::Forward { body } => self.forward(shared, key, body).await,
            PeerRequest::Collect => PeerResponse::Collected {
                answers: self.store.collect(key),
                grants: self.grants_to_share(shared),
            },
            PeerRequest::Grants(grants) => {
                self.take_grants(shared, grants)?;
                PeerResponse::Ack
            }
            PeerRequest::ServerReached => {
                self.server_reached(shared, key);
                PeerResponse::Ack
            }
        })
    }

    /// Peer `key` reached the server: if this host could not, it checks
    /// through that peer now (in the background; the peer gets its `Ack` at
    /// once). One such check at a time; a report during one starts another
    /// after it.
    fn server_reached(&self, shared: &Arc<Shared>, key: &PeerKey) {
        use std::sync::atomic::Ordering::SeqCst;
        if shared.uplink_ok.load(SeqCst) {
            return;
        }
        let (Some(peer), Some(net)) = (
            shared
                .config
                .peers
                .iter()
                .find(|p| p.public_key.to_bytes() == *key),
            shared.peers.clone(),
        ) else {
            return;
        };
        tracing::info!(peer = %peer.address, "a peer reached the license server: checking through it");
        *self.reached_from.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer.address.clone());
        if self.reached_running.swap(true, SeqCst) {
            return;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let next = net
                    .reached_from
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                match next {
                    Some(address) => {
                        let started = std::time::Instant::now();
                        shared.check_through(&address).await;
                        if let Some(rest) = REACHED_CHECK_GAP.checked_sub(started.elapsed()) {
                            tokio::time::sleep(rest).await;
                        }
                    }
                    None => {
                        net.reached_running.store(false, SeqCst);
                        // A report between `take` and `store` would wait
                        // for the next one: look once more.
                        let again = net
                            .reached_from
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some();
                        if !again || net.reached_running.swap(true, SeqCst) {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Carries a peer's check to the server, or keeps it for later.
    async fn forward(&self, shared: &Shared, key: &PeerKey, body: Vec<u8>) -> PeerResponse {
        match codec::decode_body::<Request>(&body) {
            Ok(Request::Check(_) | Request::CheckWithFacts(..)) => {}
            Ok(_) => {
                return PeerResponse::Error(PeerError::Malformed(
                    "a relay carries checks only".into(),
                ))
            }
            Err(e) => return PeerResponse::Error(PeerError::Malformed(e.to_string())),
        }
        if shared.uplink_ok.load(std::sync::atomic::Ordering::SeqCst) || self.probe_due() {
            if let Some(answer) = self.uplink(shared, body.clone()).await {
                return PeerResponse::Answer { body: answer };
            }
        }
        match self.store.enqueue(key, body) {
            Ok(()) => {
                tracing::info!(peer = %hex::encode(key), "no uplink: a peer's check is queued");
                PeerResponse::Queued
            }
            Err(QueueError::Full) => PeerResponse::Error(PeerError::QueueFull),
            Err(e) => {
                tracing::error!(error = %e, "relay queue not written");
                PeerResponse::Error(PeerError::QueueFull)
            }
        }
    }

    fn probe_due(&self) -> bool {
        let mut last = self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= UPLINK_PROBE);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// One attempt to the server with `body` in a relay envelope; the answer's
    /// body, or `None` if the uplink is down.
    async fn uplink(&self, shared: &Shared, body: Vec<u8>) -> Option<Vec<u8>> {
        let server = shared.server_address();
        let client = {
            let mut kept = self.uplink_client.lock().unwrap_or_else(|p| p.into_inner());
            match kept.as_ref() {
                Some(c) if c.server() == server => c.clone(),
                _ => {
                    let c = shared.client(&server).ok()?;
                    *kept = Some(c.clone());
                    c
                }
            }
        };
        let request = Request::Relay(RelayEnvelope {
            relay: shared.hardware_id.clone(),
            body,
        });
        let was_down = !shared.uplink_ok.load(std::sync::atomic::Ordering::SeqCst);
        let result = client.once_kept(&request).await;
        if was_down && result.is_ok() {
            // The line is back (found by a peer's check): this host checks
            // now too, and then tells its peers (`ServerReached`).
            tracing::info!("uplink back (a peer's check went through)");
            shared
                .check_forced
                .store(true, std::sync::atomic::Ordering::SeqCst);
            shared.check_wanted.notify_one();
        }
        match result {
            Ok(Response::Relayed(env)) => {
                shared
                    .uplink_ok
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.learn(shared, &env.body);
                Some(env.body)
            }
            Ok(other) => {
                shared
                    .uplink_ok
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                codec::encode_body(&other).ok()
            }
            Err(e) => {
                tracing::info!(error = %e, "uplink down");
                shared
                    .uplink_ok
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                None
            }
        }
    }

    /// A relayed answer may carry a newer grant for a host of the site: keep it
    /// for gossip (after verifying it).
    fn learn(&self, shared: &Shared, body: &[u8]) {
        if let Ok(Response::Checked { grant: Some(g), .. }) = codec::decode_body::<Response>(body) {
            if let Ok(v) = shared.trusted.verify(&g) {
                self.store.offer_grant(&v);
            }
        }
    }

    /// Forwards what is queued, now that the uplink is back.
    pub(super) async fn flush(&self, shared: &Shared) {
        let Ok(_one) = self.flushing.try_lock() else {
            return;
        };
        for q in self.store.queued() {
            match self.uplink(shared, q.body.clone()).await {
                Some(answer) => {
                    if let Err(e) = self.store.answered(&q, answer) {
                        tracing::error!(error = %e, "relay answer not stored");
                    }
                }
                None => break,
            }
        }
    }

    fn grants_to_share(&self, shared: &Shared) -> Vec<Signed<LicenseGrant>> {
        if let Some(own) = shared.lock().machine.grant().cloned() {
            self.store.offer_grant(&own);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for g in self.store.site_grants() {
            bytes += g.payload().len() + g.signature().len() + 16;
            if bytes > GRANT_BYTES_PER_ANSWER {
                break;
            }
            out.push(g);
        }
        out
    }

    /// Grants from a peer: every one must verify; the site table keeps the
    /// highest serial per license; one for this host's license goes to the machine.
    fn take_grants(
        &self,
        shared: &Shared,
        grants: Vec<Signed<LicenseGrant>>,
    ) -> Result<(), Hostile> {
        let mut verified = Vec::with_capacity(grants.len());
        for g in &grants {
            // Gossip repeats the whole table at every exchange: a grant that
            // verified before, byte for byte, was taken then.
            if self.store.seen_verified(g) {
                continue;
            }
            match shared.trusted.verify(g) {
                Ok(v) => verified.push(v),
                Err(e) => return Err(Hostile(format!("forged grant: {e}"))),
            }
        }
        for v in verified {
            self.store.verified(&v);
            self.take_grant(shared, v);
        }
        Ok(())
    }

    fn take_grant(&self, shared: &Shared, v: Verified<LicenseGrant>) {
        if !self.store.offer_grant(&v) {
            return;
        }
        let mut inner = shared.lock();
        let mine = inner
            .machine
            .grant()
            .is_some_and(|g| g.license_number == v.license_number);
        if mine {
            tracing::info!(
                serial = v.serial,
                "a newer grant of this license came from a peer"
            );
            inner.apply(Input::PeerGrant { grant: v });
        }
    }

    // ---- the asking side ----------------------------------------------------

    /// The check went nowhere directly: try the peers in their configured order.
    /// `None` if no peer answered for the server.
    pub(super) async fn check_via_peers(
        &self,
        shared: &Shared,
        request: &Request,
        nonce: Nonce,
    ) -> Option<Input> {
        let mut queued_at = Vec::new();
        for peer in &shared.config.peers {
            match self.ask_peer(shared, peer, request, nonce).await {
                Relayed::Answer(input) => return Some(*input),
                Relayed::Queued => queued_at.push(peer.address.clone()),
                Relayed::Nothing => {}
            }
        }
        if queued_at.is_empty() {
            None
        } else {
            Some(Input::CheckFailed {
                reason: format!(
                    "license server not reachable; the check waits at peer(s) {} for their uplink",
                    queued_at.join(", ")
                ),
            })
        }
    }

    /// The check through one peer only; `None` unless it brought the server's answer.
    pub(super) async fn check_via_peer(
        &self,
        shared: &Shared,
        peer: &PeerEntry,
        request: &Request,
        nonce: Nonce,
    ) -> Option<Input> {
        match self.ask_peer(shared, peer, request, nonce).await {
            Relayed::Answer(input) => Some(*input),
            Relayed::Queued | Relayed::Nothing => None,
        }
    }

    async fn ask_peer(
        &self,
        shared: &Shared,
        peer: &PeerEntry,
        request: &Request,
        nonce: Nonce,
    ) -> Relayed {
        let Ok(body) = codec::encode_body(request) else {
            return Relayed::Nothing;
        };
        let key = peer.public_key.to_bytes();
        if self.guard.is_banned(&key) {
            return Relayed::Nothing;
        }
        match self.ask_link(peer, &PeerRequest::Forward { body }).await {
            Ok((conn, PeerResponse::Answer { body })) => {
                match self.relayed_answer(shared, &body, nonce) {
                    Ok(input) => {
                        tracing::info!(peer = %peer.address, "check relayed by a peer");
                        Relayed::Answer(Box::new(input))
                    }
                    Err(Hostile(why)) => {
                        self.guard.ban(&key, &peer.address, &why);
                        self.cut_link(peer, &conn, &why);
                        Relayed::Nothing
                    }
                }
            }
            Ok((_, PeerResponse::Queued)) => Relayed::Queued,
            // A peer older than the hardware facts relays plain checks only.
            Ok((_, PeerResponse::Error(PeerError::Malformed(_))))
                if request.without_facts().is_some() =>
            {
                match request.without_facts() {
                    Some(plain) => Box::pin(self.ask_peer(shared, peer, &plain, nonce)).await,
                    None => Relayed::Nothing,
                }
            }
            Ok((_, other)) => {
                tracing::info!(peer = %peer.address, answer = ?other, "peer did not relay");
                Relayed::Nothing
            }
            Err(e) => {
                tracing::info!(error = %e, "peer exchange failed");
                Relayed::Nothing
            }
        }
    }

    /// A connection to `peer`: the one this host opened before if it is
    /// still open and was last used within [`LINK_KEPT`], else a new one
    /// (kept); `true` if it is new.
    async fn link(&self, peer: &PeerEntry) -> Result<(PeerConn, bool), PeerExchangeError> {
        {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            links.retain(|_, (c, used)| c.is_open() && now.duration_since(*used) < LINK_KEPT);
            if let Some((c, used)) = links.get_mut(&peer.address) {
                *used = now;
                return Ok((c.clone(), false));
            }
        }
        let conn = self.endpoint.connect(&peer.address).await?;
        let replaced = self.links.lock().unwrap_or_else(|p| p.into_inner()).insert(
            peer.address.clone(),
            (conn.clone(), std::time::Instant::now()),
        );
        // Two requests connected at once: the other one's connection closes
        // when its last handle goes.
        drop(replaced);
        Ok((conn, true))
    }

    /// Forgets `conn` as the link to `peer` (if it still is).
    fn drop_link(&self, peer: &PeerEntry, conn: &PeerConn) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(&peer.address).is_some_and(|(c, _)| c.same(conn)) {
            links.remove(&peer.address);
        }
    }

    /// Closes the connections to a peer that misbehaved (the caller bans
    /// it): `conn`, and the link if another one took its place meanwhile.
    fn cut_link(&self, peer: &PeerEntry, conn: &PeerConn, why: &str) {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer.address);
        if let Some((link, _)) = link {
            link.cut_off(why);
        }
        conn.cut_off(why);
    }

    /// One request to `peer` on its link ([`PeerNet::link`]), and the
    /// connection it went on. A request that failed on a link kept from
    /// before (the peer restarted or closed it meanwhile) is asked once more
    /// on a new connection, unless it is a `Forward` that was sent: the peer
    /// may have carried that check to the server already, and a check is
    /// never sent to the server twice. (The asking daemon retries such a
    /// check as any failed one, with a new nonce.)
    async fn ask_link(
        &self,
        peer: &PeerEntry,
        request: &PeerRequest,
    ) -> Result<(PeerConn, PeerResponse), PeerExchangeError> {
        let (conn, fresh) = self.link(peer).await?;
        let e = match conn.ask(request).await {
            Ok(answer) => return Ok((conn, answer)),
            Err(e) => e,
        };
        self.drop_link(peer, &conn);
        conn.close();
        let sent = !matches!(e, PeerExchangeError::NotSent { .. });
        if fresh || (sent && matches!(request, PeerRequest::Forward { .. })) {
            return Err(e);
        }
        tracing::debug!(peer = %peer.address, error = %e, "a kept peer connection failed: asking on a new one");
        let (conn, _) = self.link(peer).await?;
        match conn.ask(request).await {
            Ok(answer) => Ok((conn, answer)),
            Err(e) => {
                self.drop_link(peer, &conn);
                conn.close();
                Err(e)
            }
        }
    }

    /// The server's answer to our check `nonce`, brought by a peer: verified,
    /// bound to this host and this very request.
    fn relayed_answer(&self, shared: &Shared, body: &[u8], nonce: Nonce) -> Result<Input, Hostile> {
        let response = codec::decode_body::<Response>(body)
            .map_err(|e| Hostile(format!("undecodable relayed answer: {e}")))?;
        match response {
            Response::Checked { receipt, grant } => {
                let receipt = shared
                    .trusted
                    .verify(&receipt)
                    .map_err(|e| Hostile(format!("forged receipt: {e}")))?;
                let grant = grant
                    .map(|g| shared.trusted.verify(&g))
                    .transpose()
                    .map_err(|e| Hostile(format!("forged grant: {e}")))?;
                if receipt.hardware_id != shared.hardware_id || receipt.nonce != nonce {
                    return Err(Hostile(
                        "replayed receipt: it answers another host or request".into(),
                    ));
                }
                Ok(Input::CheckSucceeded {
                    nonce,
                    receipt,
                    grant,
                })
            }
            Response::Refused(r) => {
                let refusal = shared
                    .trusted
                    .verify(&r)
                    .map_err(|e| Hostile(format!("forged refusal: {e}")))?;
                if refusal.hardware_id != shared.hardware_id || refusal.nonce != nonce {
                    return Err(Hostile(
                        "replayed refusal: it answers another host or request".into(),
                    ));
                }
                Ok(Input::Refused { nonce, refusal })
            }
            Response::Error(e) => Ok(Input::CheckFailed {
                reason: format!("server error (through a peer): {e:?}"),
            }),
            other => Err(Hostile(format!("not an answer to a check: {other:?}"))),
        }
    }

    /// After every check: collect late answers and grants from each peer and pass
    /// ours on. `reached`: this host's own check just reached the server, so
    /// each peer that understands it hears so first (`ServerReached`) and
    /// checks through this host at once if it could not reach the server.
    pub(super) async fn exchange_with_peers(&self, shared: &Shared, reached: bool) {
        let gate = tokio::sync::Semaphore::new(EXCHANGES_AT_ONCE);
        let each = shared.config.peers.iter().map(|peer| {
            let gate = &gate;
            async move {
                let Ok(_turn) = gate.acquire().await else {
                    return;
                };
                self.exchange_with_peer(shared, peer, reached).await;
            }
        });
        join_all(each.collect()).await;
    }

    async fn exchange_with_peer(&self, shared: &Shared, peer: &PeerEntry, reached: bool) {
        let key = peer.public_key.to_bytes();
        if self.guard.is_banned(&key) {
            return;
        }
        // One connection attempt per exchange (a host that is switched off
        // costs one connect timeout); the requests below go on this link.
        let Ok((conn, _)) = self.link(peer).await else {
            return;
        };
        if reached {
            self.tell_server_reached(shared, peer, &conn).await;
        }
        if let Err(Hostile(why)) = self.exchange(shared, peer).await {
            self.guard.ban(&key, &peer.address, &why);
            self.cut_link(peer, &conn, &why);
        }
    }

    /// `ServerReached` to a peer whose `Hello` lists the capability (an older
    /// daemon would take the unknown message for garbage); the answer to
    /// `Hello` is kept for [`CAPABILITY_KEPT`].
    async fn tell_server_reached(&self, shared: &Shared, peer: &PeerEntry, conn: &PeerConn) {
        let known = {
            let mut can = self
                .can_hear_reached
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            can.retain(|_, at| at.elapsed() < CAPABILITY_KEPT);
            can.contains_key(&conn.key)
        };
        if !known {
            let hello = PeerRequest::Hello {
                hardware_id: shared.hardware_id.clone(),
                agent: format!("{DAEMON_VERSION} {CAP_SERVER_REACHED}"),
            };
            match self.ask_link(peer, &hello).await {
                Ok((_, PeerResponse::Hello { agent, .. }))
                    if has_capability(&agent, CAP_SERVER_REACHED) =>
                {
                    self.can_hear_reached
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(conn.key, std::time::Instant::now());
                }
                _ => return,
            }
        }
        if self
            .ask_link(peer, &PeerRequest::ServerReached)
            .await
            .is_err()
        {
            // Asked again next time (it may have been replaced by an older build).
            self.can_hear_reached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&conn.key);
        }
    }

    async fn exchange(&self, shared: &Shared, peer: &PeerEntry) -> Result<(), Hostile> {
        if let Ok((_, PeerResponse::Collected { answers, grants })) =
            self.ask_link(peer, &PeerRequest::Collect).await
        {
            for body in answers {
                self.late_answer(shared, &body)?;
            }
            self.take_grants(shared, grants)?;
        }
        let ours = self.grants_to_share(shared);
        let _ = self.ask_link(peer, &PeerRequest::Grants(ours)).await;
        Ok(())
    }

    /// An answer to a check queued earlier (store and forward).
    fn late_answer(&self, shared: &Shared, body: &[u8]) -> Result<(), Hostile> {
        let response = codec::decode_body::<Response>(body)
            .map_err(|e| Hostile(format!("undecodable late answer: {e}")))?;
        let (nonce, input) = match response {
            Response::Checked { receipt, grant } => {
                let receipt = shared
                    .trusted
                    .verify(&receipt)
                    .map_err(|e| Hostile(format!("forged receipt: {e}")))?;
                let grant = grant
                    .map(|g| shared.trusted.verify(&g))
                    .transpose()
                    .map_err(|e| Hostile(format!("forged grant: {e}")))?;
                if receipt.hardware_id != shared.hardware_id {
                    return Err(Hostile("a receipt for another host".into()));
                }
                (receipt.nonce, Input::LateReceipt { receipt, grant })
            }
            Response::Refused(r) => {
                let refusal = shared
                    .trusted
                    .verify(&r)
                    .map_err(|e| Hostile(format!("forged refusal: {e}")))?;
                if refusal.hardware_id != shared.hardware_id {
                    return Err(Hostile("a refusal for another host".into()));
                }
                (refusal.nonce, Input::LateRefusal { refusal })
            }
            // The server could not answer the queued check: nothing to learn.
            Response::Error(_) => return Ok(()),
            other => return Err(Hostile(format!("not an answer to a check: {other:?}"))),
        };
        if self.was_used(&nonce) {
            return Err(Hostile(
                "replayed answer: its check was answered before".into(),
            ));
        }
        if !shared.lock().machine.is_pending(&nonce) {
            tracing::info!("a late answer to a check this daemon no longer waits for was ignored");
            return Ok(());
        }
        tracing::info!("a late answer came through a peer (store and forward)");
        shared.apply_answer(input);
        Ok(())
    }
}

/// Runs `futures` concurrently on this task until all are done. A site has a
/// handful of peers (a few hundred at most): polling each on every wake-up is
/// cheap at that size, and it needs no `'static` task per peer.
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in futures.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}
