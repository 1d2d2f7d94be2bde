//! The hashed facts a hardware ID is made of (issue 19, hosts whose hardware
//! changes).
//!
//! A daemon computes its hardware ID from a few facts of its host (machine-id,
//! DMI product UUID, CPU brand, the MAC of each physical network card; see
//! `daemon::hwid`). With activation and every check it also sends each fact
//! **hashed** ([`hash_fact`]: SHA-256 over a domain prefix and the fact's
//! `name=value` line), so the server can tell "one network card replaced"
//! from "another computer" without any raw MAC address or UUID leaving the
//! host. The hash hides the value from a casual reader of the database; it is
//! not a secret (a MAC address has few enough possible values to be found by
//! trying), and nothing depends on it being one.
//!
//! The server keeps the facts of the bound host and compares a new host's
//! with them (`portal::domain::fact_changes`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The domain prefix of [`hash_fact`]: these hashes are never confused with
/// any other SHA-256 of the same text.
pub const FACT_HASH_DOMAIN: &[u8] = b"promos-hardware-fact/v1\n";

/// Most facts one host sends. A host has one machine-id, UUID and CPU brand
/// and a few physical network cards; 64 bounds what a hostile request can make
/// the server store.
pub const MAX_FACTS: usize = 64;

/// Which fact a hash is of. The variant order is part of the encoding:
/// append, never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FactKind {
    /// `/etc/machine-id`: the operating system installation. A changed one
    /// always means another host.
    MachineId,
    /// The DMI product UUID (mainboard / VM).
    DmiUuid,
    /// The CPU brand string.
    Cpu,
    /// The MAC address of one physical network card (one fact per card).
    Mac,
}

impl FactKind {
    /// The `name` of the fact's `name=value` line.
    pub fn name(self) -> &'static str {
        match self {
            FactKind::MachineId => "machine-id",
            FactKind::DmiUuid => "dmi-uuid",
            FactKind::Cpu => "cpu",
            FactKind::Mac => "mac",
        }
    }

    /// The kind of a `name=value` line's name.
    pub fn from_name(name: &str) -> Option<FactKind> {
        [
            FactKind::MachineId,
            FactKind::DmiUuid,
            FactKind::Cpu,
            FactKind::Mac,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// The domain prefix of [`HardwareFacts::digest`].
pub const FACTS_DIGEST_DOMAIN: &[u8] = b"promos-hardware-facts-digest/v1\n";

/// 64 bits of SHA-256 over a host's sorted facts ([`HardwareFacts::digest`]).
/// Not a proof of anything: it only spares sending facts the server already
/// has (a wrong one makes the server ask for the facts; one that matches by
/// chance makes it use the facts it keeps of this very host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FactsDigest(pub [u8; 8]);

/// One hashed fact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FactHash {
    pub kind: FactKind,
    pub hash: [u8; 32],
}

impl fmt::Debug for FactHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind.name())?;
        for b in &self.hash[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…")
    }
}

/// The hashed facts of one host, sorted and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardwareFacts(pub Vec<FactHash>);

impl HardwareFacts {
    /// Hashes `name=value` lines (lines of unknown names are left out), sorted.
    pub fn from_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> HardwareFacts {
        HardwareFacts::new(lines.into_iter().filter_map(|l| hash_fact(l.as_ref())))
    }

    /// Sorted, without duplicates, at most [`MAX_FACTS`].
    pub fn new(facts: impl IntoIterator<Item = FactHash>) -> HardwareFacts {
        let mut v: Vec<FactHash> = facts.into_iter().collect();
        v.sort();
        v.dedup();
        v.truncate(MAX_FACTS);
        HardwareFacts(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What stands for these facts in a compact check: the server compares it
    /// with the facts it keeps of the bound host and asks for the facts
    /// themselves only when they differ (a daily check of an unchanged host
    /// sends 8 bytes instead of 34 per fact).
    pub fn digest(&self) -> FactsDigest {
        let mut h = Sha256::new();
        h.update(FACTS_DIGEST_DOMAIN);
        let mut sorted = self.0.clone();
        sorted.sort();
        for f in &sorted {
            h.update([f.kind as u8]);
            h.update(f.hash);
        }
        let full: [u8; 32] = h.finalize().into();
        let mut digest = [0u8; 8];
        digest.copy_from_slice(&full[..8]);
        FactsDigest(digest)
    }

    /// The hashes of one kind.
    pub fn of(&self, kind: FactKind) -> impl Iterator<Item = &[u8; 32]> {
        self.0
            .iter()
            .filter(move |f| f.kind == kind)
            .map(|f| &f.hash)
    }
}

/// The hash of one `name=value` fact line: SHA-256 over [`FACT_HASH_DOMAIN`]
/// and the line. `None` for a line without `=` or of an unknown name.
pub fn hash_fact(line: &str) -> Option<FactHash> {
    let (name, _) = line.split_once('=')?;
    let kind = FactKind::from_name(name)?;
    let mut h = Sha256::new();
    h.update(FACT_HASH_DOMAIN);
    h.update(line.as_bytes());
    Some(FactHash {
        kind,
        hash: h.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_per_line_sorted_and_hide_the_value() {
        let f = HardwareFacts::from_lines([
            "mac=00:11:22:33:44:55",
            "machine-id=0123",
            "cpu=Intel",
            "nonsense",
            "unknown=1",
            "mac=00:11:22:33:44:55",
        ]);
        assert_eq!(f.0.len(), 3, "{f:?}");
        assert_eq!(f.0[0].kind, FactKind::MachineId);
        assert_eq!(f.of(FactKind::Mac).count(), 1);
        let other = hash_fact("mac=00:11:22:33:44:56").expect("mac");
        assert_ne!(Some(&other.hash), f.of(FactKind::Mac).next());
        let debug = format!("{f:?}");
        assert!(!debug.contains("00:11"), "{debug}");
    }

    #[test]
    fn the_digest_stands_for_the_set_of_facts() {
        let a = HardwareFacts::from_lines(["cpu=Intel", "mac=00:11:22:33:44:55"]);
        let same = HardwareFacts(vec![a.0[1], a.0[0]]);
        assert_eq!(a.digest(), same.digest(), "order does not matter");
        let other = HardwareFacts::from_lines(["cpu=Intel", "mac=00:11:22:33:44:56"]);
        assert_ne!(a.digest(), other.digest());
        assert_ne!(a.digest(), HardwareFacts::default().digest());
    }
}
