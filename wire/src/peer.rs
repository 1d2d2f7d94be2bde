//! Messages between the daemons of one site (peer relay, ALPN [`crate::PEER_ALPN`]).
//!
//! Peers authenticate each other by their Ed25519 identities in the TLS handshake
//! (both sides present a certificate whose key is the identity, checked against
//! the configured peer list); what they exchange is either a frame body for the
//! license server, carried unchanged, or documents the server signed. A peer is
//! never trusted with anything it could have made up: the receiver verifies every
//! signature and every binding itself.
//!
//! Transport: like the server protocol, one bidirectional stream per request,
//! one [`PeerRequest`] frame, one [`PeerResponse`] frame. The enums' variant
//! order is part of the encoding: append, never reorder.

use keys::{HardwareId, LicenseGrant, Signed};
use serde::{Deserialize, Serialize};

/// A daemon asks one of its peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Who the asking daemon is (its hardware ID, for the server's record of the
    /// path and the relay's logs) and what it runs.
    Hello {
        hardware_id: HardwareId,
        agent: String,
    },
    /// Carry this frame body (version + [`crate::Request`], byte for byte) to the
    /// license server. With an uplink the relay answers [`PeerResponse::Answer`];
    /// without one it keeps the body (bounded, persisted) and answers
    /// [`PeerResponse::Queued`]; the server's answer waits for [`PeerRequest::Collect`].
    Forward { body: Vec<u8> },
    /// The server's answers to requests this peer queued earlier, and the signed
    /// grants the relay knows (gossip).
    Collect,
    /// Gossip: server-signed grants the sender holds or has seen, for any host of
    /// the site. The receiver verifies each and keeps the highest serial per license.
    Grants(Vec<Signed<LicenseGrant>>),
    /// The sender's own check has just reached the license server (its
    /// uplink works): a receiver that could not reach the server itself may
    /// check through the sender now instead of at its next retry. Carries
    /// nothing to trust; answered [`PeerResponse::Ack`]. Sent only to a peer
    /// whose [`PeerResponse::Hello`] agent lists [`CAP_SERVER_REACHED`]: an
    /// older daemon cannot decode this variant and would cut the sender off.
    ServerReached,
}

/// Capability token in the `agent` of [`PeerResponse::Hello`]: this daemon
/// understands [`PeerRequest::ServerReached`]. Capabilities follow the
/// version, separated by spaces (`promos-licd/0.2.0 server-reached`).
pub const CAP_SERVER_REACHED: &str = "server-reached";

/// True if a peer's `agent` (from its [`PeerResponse::Hello`]) lists `capability`.
pub fn has_capability(agent: &str, capability: &str) -> bool {
    agent
        .split_ascii_whitespace()
        .skip(1)
        .any(|c| c == capability)
}

/// Why a peer did not do what was asked. Unsigned: never changes a license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerError {
    /// Too many requests from this peer; retry after this long.
    RateLimited { retry_after_secs: u32 },
    /// This peer's share of the store-and-forward queue is full.
    QueueFull,
    /// The frame could not be used (not a request for the server, nested relay, ...).
    Malformed(String),
}

/// The answer of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Hello {
        hardware_id: HardwareId,
        agent: String,
    },
    /// The server's answer (version + [`crate::Response`]), byte for byte.
    Answer {
        body: Vec<u8>,
    },
    /// No uplink now: the request is kept and forwarded when the uplink returns.
    Queued,
    /// Answers the server gave to this peer's queued requests (each a frame body
    /// as in [`PeerResponse::Answer`]), and grants for the site.
    Collected {
        answers: Vec<Vec<u8>>,
        grants: Vec<Signed<LicenseGrant>>,
    },
    /// Gossip received.
    Ack,
    Error(PeerError),
}
