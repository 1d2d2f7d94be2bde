//! The protocol between ProMoS license daemons, their peers and the license server.
//!
//! - [`msg`]: every message, as plain serde types. Each protocol version's types are
//!   a compatibility promise: old daemons in the field keep talking to newer servers.
//! - [`codec`]: the one place that turns messages into bytes (bincode 2.0.1) and
//!   back, with length-prefixed, size-limited, versioned frames.
//! - [`receipt`]: the signed documents only the server issues besides grants:
//!   check receipts and refusals.
//! - [`peer`]: the messages between the daemons of one site (peer relay).
//! - [`offline`]: the request and answer files of sites without any internet.
//! - [`facts`]: the hashed facts a host's hardware ID is made of.
//!
//! Transport: one QUIC bidirectional stream per request, ALPN [`ALPN`]. The client
//! writes one request frame and finishes its side; the server answers with one
//! response frame.

#![forbid(unsafe_code)]

pub mod codec;
pub mod facts;
pub mod msg;
pub mod offline;
pub mod peer;
pub mod receipt;

pub use codec::{DecodeError, MAX_FRAME_BYTES};
pub use facts::{FactHash, FactKind, FactsDigest, HardwareFacts};
pub use msg::*;
pub use peer::{PeerError, PeerRequest, PeerResponse};
pub use receipt::{CheckReceipt, CompactReceipt, Refusal, RefusalReason};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate can still decode.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// The QUIC ALPN, naming the protocol and its version.
pub const ALPN: &[u8] = b"promos-license/1";
/// ALPN of daemon-to-daemon (peer relay) connections.
pub const PEER_ALPN: &[u8] = b"promos-license-peer/1";
