//! Every message of protocol version 1.
//!
//! Requests go from a daemon (or a relaying peer) to the server; responses come
//! back. The enums' variant order is part of the encoding: append, never reorder.

use crate::facts::{FactsDigest, HardwareFacts};
use crate::receipt::{CheckReceipt, CompactReceipt, Refusal};
use keys::{HardwareId, LicenseGrant, LicenseNumber, Signed};
use serde::{Deserialize, Serialize};
use std::fmt;

/// 128 random bits that tie an answer to one request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn random() -> Self {
        Nonce(rand::random())
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The license token: the secret a customer copies from the portal into the
/// first-start dialog. Its `Debug` never shows it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token(pub String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Whether the ProMoS runtime on the host is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeState {
    Running,
    Stopped,
}

/// Simultaneous users of the operator programs currently holding a seat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    pub ge: u32,
    pub pwa: u32,
}

/// First message on a connection: which protocol versions the sender speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub min_version: u16,
    pub max_version: u16,
    /// Program and version, e.g. `promos-licd/0.1.0`.
    pub agent: String,
}

/// Bind this host to the license (the manual's first-start dialog).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activate {
    pub license_number: LicenseNumber,
    pub token: Token,
    pub hardware_id: HardwareId,
    pub daemon_version: String,
    pub nonce: Nonce,
}

/// The daily check (and the report of the runtime's state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub license_number: LicenseNumber,
    pub hardware_id: HardwareId,
    /// Serial of the grant the daemon holds, if any.
    pub grant_serial: Option<u64>,
    pub runtime: RuntimeState,
    pub seats: Seats,
    pub daemon_version: String,
    pub nonce: Nonce,
}

/// The host gives its binding back (uninstall). Needs the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivate {
    pub license_number: LicenseNumber,
    pub token: Token,
    pub hardware_id: HardwareId,
    pub nonce: Nonce,
}

/// A [`Check`] with facts in fewer bytes, for the daily check of a host the
/// server knows: the hardware ID as its 16 bytes, the daemon's version
/// without `promos-licd/`, and the facts as their [`FactsDigest`] (the server
/// uses the facts it keeps of this host when the digest names them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactCheck {
    pub license_number: LicenseNumber,
    pub hardware_id: [u8; 16],
    pub grant_serial: Option<u64>,
    pub runtime: RuntimeState,
    pub seats: Seats,
    pub version: String,
    pub nonce: Nonce,
    pub facts: FactsDigest,
}

impl CompactCheck {
    /// What every daemon's [`Check::daemon_version`] starts with.
    pub const AGENT: &'static str = "promos-licd/";

    /// `check` with `facts`, compact; `None` for a check whose daemon version
    /// does not start with [`CompactCheck::AGENT`] (it goes whole).
    pub fn of(check: &Check, facts: &HardwareFacts) -> Option<CompactCheck> {
        let version = check.daemon_version.strip_prefix(Self::AGENT)?;
        Some(CompactCheck {
            license_number: check.license_number.clone(),
            hardware_id: check.hardware_id.to_bytes(),
            grant_serial: check.grant_serial,
            runtime: check.runtime,
            seats: check.seats,
            version: version.to_owned(),
            nonce: check.nonce,
            facts: facts.digest(),
        })
    }

    /// The check this stands for (without its facts).
    pub fn check(&self) -> Check {
        Check {
            license_number: self.license_number.clone(),
            hardware_id: HardwareId::from_bytes(self.hardware_id),
            grant_serial: self.grant_serial,
            runtime: self.runtime,
            seats: self.seats,
            daemon_version: format!("{}{}", Self::AGENT, self.version),
            nonce: self.nonce,
        }
    }
}

/// A peer's encoded request or response, carried unchanged by a relaying daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEnvelope {
    /// Hardware ID of the daemon that forwarded the message (for the server's
    /// record of the path).
    pub relay: HardwareId,
    /// The original frame body (version + message), byte for byte.
    pub body: Vec<u8>,
}

/// Daemon (or relay) to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello(Hello),
    Activate(Activate),
    Check(Check),
    Deactivate(Deactivate),
    Relay(RelayEnvelope),
    /// An activation with the hashed facts of the host's hardware ID (daemons
    /// since issue 19). A server that does not know this variant answers
    /// `Malformed`; the daemon then sends the plain [`Request::Activate`].
    ActivateWithFacts(Activate, HardwareFacts),
    /// A check with the hashed facts of the host's hardware ID, so the server
    /// can rebind a host whose hardware changed a little (issue 19).
    CheckWithFacts(Check, HardwareFacts),
    /// The daily check in fewer bytes (daemons since issue 16, on their own
    /// connections): see [`CompactCheck`]; the answer may carry a
    /// [`CompactReceipt`] ([`Response::CheckedCompact`]). A server that keeps
    /// other facts of this host answers [`ErrorReply::FactsNeeded`], one that
    /// does not know this variant `Malformed`; the daemon then sends the
    /// [`Request::CheckWithFacts`].
    CheckCompact(CompactCheck),
}

impl Request {
    /// The same request without the hardware facts, for a server that does
    /// not know the `...WithFacts` variants; `None` if it carries none.
    pub fn without_facts(&self) -> Option<Request> {
        match self {
            Request::ActivateWithFacts(a, _) => Some(Request::Activate(a.clone())),
            Request::CheckWithFacts(c, _) => Some(Request::Check(c.clone())),
            Request::CheckCompact(c) => Some(Request::Check(c.check())),
            _ => None,
        }
    }
}

/// Protocol-level failures, not license decisions. Not signed: they never change
/// what a daemon believes about its license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorReply {
    /// The server speaks `min..=max` only.
    UnsupportedProtocolVersion { min: u16, max: u16 },
    /// The request could not be decoded.
    Malformed(String),
    /// Too many requests from this source; retry later.
    RateLimited { retry_after_secs: u32 },
    /// Something failed on the server; retry later.
    Unavailable,
    /// The facts of a [`Request::CheckCompact`] are not the ones the server
    /// keeps of this host: send the check with the facts themselves.
    FactsNeeded,
}

/// Server to daemon (or relay).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello {
        version: u16,
        agent: String,
    },
    /// Activation succeeded: the grant to enforce and the first receipt.
    Activated {
        grant: Signed<LicenseGrant>,
        receipt: Signed<CheckReceipt>,
    },
    /// Check succeeded; a newer grant comes along if the daemon holds an older one.
    Checked {
        receipt: Signed<CheckReceipt>,
        grant: Option<Signed<LicenseGrant>>,
    },
    /// Binding released.
    Deactivated {
        receipt: Signed<CheckReceipt>,
    },
    Refused(Signed<Refusal>),
    Error(ErrorReply),
    /// The answer to a relayed request, carried back unchanged.
    Relayed(RelayEnvelope),
    /// Check succeeded, the answer to [`Request::CheckCompact`]: as
    /// [`Response::Checked`], with the receipt's fields the daemon sent
    /// itself left out. [`Response::expanded`] turns it back.
    CheckedCompact {
        receipt: CompactReceipt,
        grant: Option<Signed<LicenseGrant>>,
    },
}

impl Response {
    /// The answer to `check` as it travels to a daemon that asked with
    /// [`Request::CheckCompact`]: a [`Response::Checked`] whose receipt the
    /// daemon can rebuild becomes [`Response::CheckedCompact`]; anything else
    /// stays as it is.
    pub fn compacted(self, check: &Check) -> Response {
        match self {
            Response::Checked { receipt, grant } => match CompactReceipt::of(&receipt, check) {
                Some(receipt) => Response::CheckedCompact { receipt, grant },
                None => Response::Checked { receipt, grant },
            },
            other => other,
        }
    }

    /// The answer as the daemon handles it: a [`Response::CheckedCompact`] to
    /// `check` becomes the [`Response::Checked`] it stands for (its receipt
    /// still to be verified); anything else stays as it is.
    pub fn expanded(self, check: &Check) -> Response {
        match self {
            Response::CheckedCompact { receipt, grant } => Response::Checked {
                receipt: receipt.expand(check),
                grant,
            },
            other => other,
        }
    }
}
