//! Check receipts and refusals: signed by the server, bound to the asking host.
//!
//! Both echo the requester's nonce and hardware ID, so a relay or a listener can
//! neither forge one (no key) nor reuse one for another host or another request.

use crate::msg::{Check, Nonce};
use keys::{HardwareId, KeyId, LicenseNumber, Signed, SignedPayload, UnixTime};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The server's signed answer to a successful activation or check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReceipt {
    pub license_number: LicenseNumber,
    pub hardware_id: HardwareId,
    pub nonce: Nonce,
    /// The server's clock when it answered; the daemon's grace periods count from here.
    pub server_time: UnixTime,
    /// When the daemon should check again.
    pub next_check_due: UnixTime,
    /// The serial of the license's current grant on the server.
    pub current_serial: u64,
}

impl SignedPayload for CheckReceipt {
    const CONTEXT: &'static str = "check-receipt";
}

/// A signed [`CheckReceipt`] on the wire without the three fields the asking
/// daemon sent itself (license number, hardware ID, nonce): about 190 bytes
/// less per daily check. The signature is the full receipt's, unchanged: the
/// daemon rebuilds the receipt from its own [`Check`] and these fields
/// ([`CompactReceipt::expand`]) and verifies it as always, so a receipt for
/// another host or another request still does not verify. Only the server
/// compacts, and only when the rebuilt receipt is byte for byte the one it
/// signed ([`CompactReceipt::of`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReceipt {
    pub server_time: UnixTime,
    pub next_check_due: UnixTime,
    pub current_serial: u64,
    /// The signing key's ID as its 8 bytes (16 hex digits in the envelope).
    pub key_id: [u8; 8],
    pub signature: Vec<u8>,
}

impl CompactReceipt {
    /// The compact form of `receipt`, an answer to `check`; `None` if the
    /// receipt does not name exactly the check's license, host and nonce (the
    /// daemon could not rebuild it: it then travels whole).
    pub fn of(receipt: &Signed<CheckReceipt>, check: &Check) -> Option<CompactReceipt> {
        // Not a trust decision: the payload is the server's own, and the
        // daemon verifies what it rebuilds.
        let value: CheckReceipt = serde_json::from_slice(receipt.payload()).ok()?;
        let compact = CompactReceipt {
            server_time: value.server_time,
            next_check_due: value.next_check_due,
            current_serial: value.current_serial,
            key_id: receipt.key_id().to_bytes(),
            signature: receipt.signature().to_vec(),
        };
        (compact.expand(check) == *receipt).then_some(compact)
    }

    /// The signed receipt this stands for, rebuilt with `check`'s license,
    /// host and nonce. Not trusted until verified, like any envelope.
    pub fn expand(&self, check: &Check) -> Signed<CheckReceipt> {
        let value = CheckReceipt {
            license_number: check.license_number.clone(),
            hardware_id: check.hardware_id.clone(),
            nonce: check.nonce,
            server_time: self.server_time,
            next_check_due: self.next_check_due,
            current_serial: self.current_serial,
        };
        Signed::from_parts(
            Signed::canonical_payload(&value),
            KeyId::from_bytes(self.key_id),
            self.signature.clone(),
        )
    }
}

/// Why the server will not license this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalReason {
    UnknownLicense,
    WrongToken,
    BoundToAnotherHost,
    LicenseWasReset,
    /// Ordered but not yet activated (awaiting payment).
    NotYetActivated,
    Expired,
    /// Another computer with nearly the same hardware as the bound one asks
    /// while the binding was moved to a changed host only recently: two hosts
    /// (a clone) take turns with one license. Only sent to daemons that send
    /// their hardware facts (they know this variant); older ones get
    /// `BoundToAnotherHost`.
    ClonedHost,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::UnknownLicense,
        RefusalReason::WrongToken,
        RefusalReason::BoundToAnotherHost,
        RefusalReason::LicenseWasReset,
        RefusalReason::NotYetActivated,
        RefusalReason::Expired,
        RefusalReason::ClonedHost,
    ];

    /// Stable machine name, for logs, metrics and the local socket.
    pub fn key(self) -> &'static str {
        match self {
            RefusalReason::UnknownLicense => "unknown_license",
            RefusalReason::WrongToken => "wrong_token",
            RefusalReason::BoundToAnotherHost => "bound_to_another_host",
            RefusalReason::LicenseWasReset => "license_was_reset",
            RefusalReason::NotYetActivated => "not_yet_activated",
            RefusalReason::Expired => "expired",
            RefusalReason::ClonedHost => "cloned_host",
        }
    }

    /// What the user reads, in German or English.
    pub fn message(self, german: bool) -> &'static str {
        match (self, german) {
            (RefusalReason::UnknownLicense, false) => "The license server does not know this license number. Check the number in the license server.",
            (RefusalReason::UnknownLicense, true) => "Der Lizenzserver kennt diese Lizenznummer nicht. Bitte prüfen Sie die Nummer im Lizenzserver.",
            (RefusalReason::WrongToken, false) => "The license token is wrong. Copy it again from the license server (\"Show token\").",
            (RefusalReason::WrongToken, true) => "Das Lizenz-Token ist falsch. Bitte kopieren Sie es erneut aus dem Lizenzserver (\"Token anzeigen\").",
            (RefusalReason::BoundToAnotherHost, false) => "The license is bound to another computer. Reset the license in the license server to move it here.",
            (RefusalReason::BoundToAnotherHost, true) => "Die Lizenz ist an einen anderen Computer gebunden. Setzen Sie die Lizenz im Lizenzserver zurück, um sie hierher zu verschieben.",
            (RefusalReason::LicenseWasReset, false) => "The license was reset in the license server and now belongs to another computer.",
            (RefusalReason::LicenseWasReset, true) => "Die Lizenz wurde im Lizenzserver zurückgesetzt und gehört jetzt zu einem anderen Computer.",
            (RefusalReason::NotYetActivated, false) => "The license has not been activated yet (awaiting payment).",
            (RefusalReason::NotYetActivated, true) => "Die Lizenz wurde noch nicht freigeschaltet (Zahlung ausstehend).",
            (RefusalReason::Expired, false) => "The license has expired. Renew it in the license server.",
            (RefusalReason::Expired, true) => "Die Lizenz ist abgelaufen. Bitte erneuern Sie sie im Lizenzserver.",
            (RefusalReason::ClonedHost, false) => "Another computer with nearly the same hardware uses this license: the license was moved to a changed computer only recently. A copied (cloned) computer cannot share the license; the vendor sees both in the audit trail. If this computer is the right one, reset the license in the license server.",
            (RefusalReason::ClonedHost, true) => "Ein anderer Computer mit fast gleicher Hardware verwendet diese Lizenz: Die Lizenz wurde erst kürzlich auf einen veränderten Computer umgezogen. Ein kopierter (geklonter) Computer kann die Lizenz nicht mitbenutzen; der Hersteller sieht beide im Protokoll. Ist dieser Computer der richtige, setzen Sie die Lizenz im Lizenzserver zurück.",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message(false))
    }
}

/// The server's signed "no", bound to the host and request it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub license_number: LicenseNumber,
    pub hardware_id: HardwareId,
    pub nonce: Nonce,
    pub server_time: UnixTime,
}

impl SignedPayload for Refusal {
    const CONTEXT: &'static str = "refusal";
}
