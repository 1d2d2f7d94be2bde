//! What a daemon keeps for its peers: the store-and-forward queue, the answers
//! waiting to be collected, the site's grants (gossip) and the per-peer rate
//! limit. No sockets here; [`crate::peer`] moves the bytes.
//!
//! Everything is bounded, because a peer, even a listed one, may be hostile:
//! [`MAX_QUEUED_PER_PEER`] and [`MAX_QUEUED`] requests waiting for the uplink,
//! [`MAX_ANSWERS_PER_PEER`] answers waiting for collection, [`MAX_SITE_GRANTS`]
//! licenses in the grant table, and [`RateLimiter`] per peer. Queue and answers
//! are in the sled cache, so a restart of the relay loses nothing.
//!
//! Nothing here is trusted for a license decision: queued bodies and answers are
//! carried unchanged and verified by the host they belong to; grants are only
//! kept after their signature verified (the caller passes [`Verified`] grants).

use crate::cache::{Cache, CacheWriteError};
use keys::{LicenseGrant, Signed, Verified};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The key of a peer: its Ed25519 public key (raw 32 bytes).
pub type PeerKey = [u8; 32];

/// Requests one peer may have waiting for the uplink. A daemon sends one check
/// per retry (at most hourly while offline), and only the newest answer matters,
/// so 8 is plenty; older ones are dropped first.
pub const MAX_QUEUED_PER_PEER: usize = 8;
/// Requests waiting for the uplink over all peers (a site has a handful of
/// hosts; 64 bodies are at most 64 * 64 KiB = 4 MiB, in practice 64 * 200 bytes).
pub const MAX_QUEUED: usize = 64;
/// Answers waiting for one peer to collect them; older ones are dropped first.
pub const MAX_ANSWERS_PER_PEER: usize = 8;
/// Licenses in the site's grant table. A site has a handful of hosts; the bound
/// only stops a hostile peer from filling the disk with real grants of others.
pub const MAX_SITE_GRANTS: usize = 256;

/// Why a body was not queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the store-and-forward queue is full")]
    Full,
    #[error(transparent)]
    Write(#[from] CacheWriteError),
}

impl From<sled::Error> for QueueError {
    fn from(e: sled::Error) -> Self {
        QueueError::Write(CacheWriteError::from(e))
    }
}

/// One queued body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The sled key (peer key + sequence number).
    pub key: Vec<u8>,
    pub peer: PeerKey,
    pub body: Vec<u8>,
}

fn queue_key(peer: &PeerKey, seq: u64) -> Vec<u8> {
    let mut k = peer.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Grants remembered as verified (see [`RelayStore::seen_verified`]): four
/// times the site table, so a site's current grants and the ones they
/// replaced fit; when full it starts again (costing one verification each).
const MAX_SEEN_VERIFIED: usize = 4 * MAX_SITE_GRANTS;

/// The store-and-forward side of the cache.
#[derive(Clone, Debug)]
pub struct RelayStore {
    cache: Cache,
    /// SHA-256 of each grant (key id, payload, signature) that verified in this
    /// process: gossip hands every peer the whole site table at each exchange,
    /// and at 50 hosts verifying it again each time was thousands of Ed25519
    /// verifications per round of checks (the relay bench).
    seen: Arc<Mutex<HashSet<[u8; 32]>>>,
    /// The site table as in sled (its only writer is
    /// [`RelayStore::offer_grant`]), decoded, with each grant's serial: read
    /// at every exchange, where decoding the sled copy's JSON each time was
    /// a few thousand grants per round at 50 hosts. Loaded at first use.
    table: Arc<Mutex<Option<SiteTable>>>,
}

/// License number (the sled key) -> serial and the grant as signed.
type SiteTable = BTreeMap<Vec<u8>, (u64, Signed<LicenseGrant>)>;

impl RelayStore {
    pub fn new(cache: Cache) -> Self {
        RelayStore {
            cache,
            seen: Arc::default(),
            table: Arc::default(),
        }
    }

    /// True if exactly this grant (same key id, payload and signature)
    /// verified before in this process: verifying it again would give the same
    /// answer, so the caller may skip it. Nothing unverified ever passes.
    pub fn seen_verified(&self, g: &Signed<LicenseGrant>) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&fingerprint(g))
    }

    /// Remembers a grant that verified, for [`RelayStore::seen_verified`].
    pub fn verified(&self, g: &Verified<LicenseGrant>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_SEEN_VERIFIED {
            seen.clear();
        }
        seen.insert(fingerprint(g.signed()));
    }

    /// Keeps `body` for the uplink. A peer over its share loses its oldest
    /// entry; a full queue refuses.
    pub fn enqueue(&self, peer: &PeerKey, body: Vec<u8>) -> Result<(), QueueError> {
        let q = self.cache.relay_queue();
        let mine: Vec<sled::IVec> = q.scan_prefix(peer).keys().filter_map(Result::ok).collect();
        if mine.len() >= MAX_QUEUED_PER_PEER {
            q.remove(&mine[0])?;
        } else if q.len() >= MAX_QUEUED {
            return Err(QueueError::Full);
        }
        let seq = self.cache.generate_id()?;
        q.insert(queue_key(peer, seq), body)?;
        q.flush()?;
        Ok(())
    }

    /// Everything queued, oldest first per peer.
    pub fn queued(&self) -> Vec<Queued> {
        self.cache
            .relay_queue()
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                let peer: PeerKey = k.get(..32)?.try_into().ok()?;
                Some(Queued {
                    key: k.to_vec(),
                    peer,
                    body: v.to_vec(),
                })
            })
            .collect()
    }

    pub fn queued_len(&self) -> usize {
        self.cache.relay_queue().len()
    }

    /// The server answered `q`: keep the answer for its peer, drop the request.
    pub fn answered(&self, q: &Queued, answer: Vec<u8>) -> Result<(), CacheWriteError> {
        let a = self.cache.relay_answers();
        let mine: Vec<sled::IVec> = a
            .scan_prefix(q.peer)
            .keys()
            .filter_map(Result::ok)
            .collect();
        if mine.len() >= MAX_ANSWERS_PER_PEER {
            a.remove(&mine[0])?;
        }
        let seq = self.cache.generate_id()?;
        a.insert(queue_key(&q.peer, seq), answer)?;
        self.cache.relay_queue().remove(&q.key)?;
        a.flush()?;
        Ok(())
    }

    /// Drops a queued body the server will never accept (malformed).
    pub fn drop_queued(&self, q: &Queued) -> Result<(), CacheWriteError> {
        self.cache.relay_queue().remove(&q.key)?;
        Ok(())
    }

    /// Hands out (and forgets) the answers waiting for `peer`.
    pub fn collect(&self, peer: &PeerKey) -> Vec<Vec<u8>> {
        let a = self.cache.relay_answers();
        let mut out = Vec::new();
        for (k, v) in a.scan_prefix(peer).filter_map(Result::ok) {
            if a.remove(&k).is_ok() {
                out.push(v.to_vec());
            }
        }
        out
    }

    /// Offers a verified grant to the site table; true if it is new (the highest
    /// serial of its license so far). Highest serial wins.
    pub fn offer_grant(&self, g: &Verified<LicenseGrant>) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = table.get_or_insert_with(|| self.load_table());
        let key = g.license_number.as_str().as_bytes();
        let held = table.get(key).map(|(serial, _)| *serial);
        if held.is_some_and(|h| h >= g.serial) {
            return false;
        }
        if held.is_none() && table.len() >= MAX_SITE_GRANTS {
            return false;
        }
        let stored = self
            .cache
            .site_grants()
            .insert(key, serde_json::to_vec(g.signed()).unwrap_or_default())
            .is_ok();
        if stored {
            table.insert(key.to_vec(), (g.serial, g.signed().clone()));
        }
        stored
    }

    /// The site's grants as the server signed them (verified again by whoever
    /// receives them), in license number order.
    pub fn site_grants(&self) -> Vec<Signed<LicenseGrant>> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .get_or_insert_with(|| self.load_table())
            .values()
            .map(|(_, g)| g.clone())
            .collect()
    }

    /// The site table from sled: what decodes, with its serial (a grant
    /// whose payload does not decode is left out, as it always was).
    fn load_table(&self) -> SiteTable {
        self.cache
            .site_grants()
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                let g: Signed<LicenseGrant> = serde_json::from_slice(&v).ok()?;
                Some((k.to_vec(), (g.peek_serial()?, g)))
            })
            .collect()
    }
}

/// SHA-256 over everything of a signed grant that verification reads.
fn fingerprint(g: &Signed<LicenseGrant>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(g.key_id().to_string().as_bytes());
    h.update((g.payload().len() as u64).to_be_bytes());
    h.update(g.payload());
    h.update(g.signature());
    h.finalize().into()
}

/// Peek at an unverified grant's serial, only to compare with a stored one
/// (stored grants were verified before they were stored).
trait PeekSerial {
    fn peek_serial(&self) -> Option<u64>;
}

impl PeekSerial for Signed<LicenseGrant> {
    fn peek_serial(&self) -> Option<u64> {
        serde_json::from_slice::<LicenseGrant>(self.payload())
            .ok()
            .map(|g| g.serial)
    }
}

/// A token bucket per peer: `burst` requests at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<PeerKey, (f64, f64)>,
}

/// A daemon sends its peers a handful of requests per check (hello, forward,
/// collect, gossip) and checks at most every minute while retrying; 30 at once
/// and one per second after that leave room for restarts and flushes, and a
/// flood is noticed within a second.
pub const PEER_BURST: u32 = 30;
pub const PEER_PER_SEC: u32 = 1;

impl RateLimiter {
    pub fn new(burst: u32, per_sec: u32) -> Self {
        RateLimiter {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `peer` at time `now_secs` (monotonic seconds); false
    /// if the peer is over its limit.
    pub fn allow(&mut self, peer: &PeerKey, now_secs: f64) -> bool {
        let (tokens, last) = self.buckets.entry(*peer).or_insert((self.burst, now_secs));
        *tokens = (*tokens + (now_secs - *last).max(0.0) * self.per_sec).min(self.burst);
        *last = now_secs;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_per_peer_and_in_total_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RelayStore::new(Cache::open(dir.path()).expect("open"));
            for i in 0..(MAX_QUEUED_PER_PEER + 3) {
                store.enqueue(&[1; 32], vec![i as u8]).expect("queued");
            }
            let mine = store.queued();
            assert_eq!(mine.len(), MAX_QUEUED_PER_PEER);
            assert_eq!(mine[0].body, vec![3u8], "the oldest were dropped first");
            for p in 2..=(MAX_QUEUED / MAX_QUEUED_PER_PEER) as u8 {
                for i in 0..MAX_QUEUED_PER_PEER {
                    store.enqueue(&[p; 32], vec![i as u8]).expect("queued");
                }
            }
            assert_eq!(store.queued_len(), MAX_QUEUED);
            assert!(matches!(
                store.enqueue(&[200; 32], vec![0]),
                Err(QueueError::Full)
            ));
        }
        let store = RelayStore::new(Cache::open(dir.path()).expect("reopen"));
        assert_eq!(store.queued_len(), MAX_QUEUED, "persisted");
        let q = store.queued().remove(0);
        store.answered(&q, b"answer".to_vec()).expect("answered");
        assert_eq!(store.queued_len(), MAX_QUEUED - 1);
        assert_eq!(store.collect(&q.peer), vec![b"answer".to_vec()]);
        assert!(store.collect(&q.peer).is_empty(), "collected once");
    }

    /// A standard soft-dongle grant of license `body`, signed by `key`.
    fn test_grant(key: &keys::SigningKeyPair, body: u32, serial: u64) -> Signed<LicenseGrant> {
        use keys::grant::GRANT_FORMAT;
        use keys::{
            Binding, Entitlements, HardwareId, LicenseData, LicenseNumber, LicenseType, Protection,
            UnixTime,
        };
        Signed::sign(
            &LicenseGrant {
                format: GRANT_FORMAT,
                license_number: LicenseNumber::from_body(body).expect("number"),
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                license_data: LicenseData {
                    name: "Muster AG".into(),
                    postcode: "3000".into(),
                    city: "Bern".into(),
                },
                binding: Binding::HardwareId(HardwareId::from_bytes([1; 16])),
                entitlements: Entitlements::standard_base(),
                issued_at: UnixTime(1_800_000_000),
                valid_until: None,
                serial,
                key_id: key.key_id(),
            },
            key,
        )
    }

    #[test]
    fn only_a_grant_identical_to_a_verified_one_counts_as_seen() {
        use keys::{SigningKeyPair, TrustedKeys};
        let key = SigningKeyPair::from_seed(&[42; 32]);
        let grant = |serial| test_grant(&key, 192_190_001, serial);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RelayStore::new(Cache::open(dir.path()).expect("open"));
        let g = grant(5);
        assert!(!store.seen_verified(&g));
        let v = TrustedKeys::with([key.public()])
            .verify(&g)
            .expect("verifies");
        store.verified(&v);
        assert!(store.seen_verified(&g), "the same bytes again");
        assert!(
            store.clone().seen_verified(&g),
            "clones share what was seen"
        );
        assert!(!store.seen_verified(&grant(6)), "another grant");
        let mut signature = g.signature().to_vec();
        signature[0] ^= 1;
        let forged = Signed::from_parts(g.payload().to_vec(), g.key_id(), signature);
        assert!(
            !store.seen_verified(&forged),
            "the same payload with another signature is verified again"
        );
    }

    #[test]
    fn the_site_table_keeps_the_highest_serial_in_memory_and_on_disk() {
        use keys::{SigningKeyPair, TrustedKeys};
        let key = SigningKeyPair::from_seed(&[43; 32]);
        let trusted = TrustedKeys::with([key.public()]);
        let grant = |body: u32, serial| {
            trusted
                .verify(&test_grant(&key, body, serial))
                .expect("verifies")
        };
        let serials = |store: &RelayStore| -> Vec<u64> {
            store
                .site_grants()
                .iter()
                .map(|g| trusted.verify(g).expect("stored as signed").serial)
                .collect()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RelayStore::new(Cache::open(dir.path()).expect("open"));
            assert!(store.offer_grant(&grant(192_190_001, 5)));
            assert!(!store.offer_grant(&grant(192_190_001, 5)), "not newer");
            assert!(!store.offer_grant(&grant(192_190_001, 4)), "older");
            assert!(store.offer_grant(&grant(192_190_001, 6)));
            assert!(store.offer_grant(&grant(192_190_002, 1)));
            assert_eq!(serials(&store), vec![6, 1]);
            assert_eq!(serials(&store.clone()), vec![6, 1], "clones share it");
            store.cache.flush().expect("flushed");
        }
        let store = RelayStore::new(Cache::open(dir.path()).expect("reopen"));
        assert_eq!(serials(&store), vec![6, 1], "read back from sled");
        assert!(!store.offer_grant(&grant(192_190_001, 6)));
        assert!(store.offer_grant(&grant(192_190_001, 7)));
        assert_eq!(serials(&store), vec![7, 1]);
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_the_refill_rate() {
        let mut r = RateLimiter::new(3, 1);
        let p = [7; 32];
        assert!((0..3).all(|_| r.allow(&p, 0.0)));
        assert!(!r.allow(&p, 0.5));
        assert!(r.allow(&p, 1.6));
        assert!(!r.allow(&p, 1.7));
        assert!(r.allow(&[8; 32], 1.7), "other peers have their own bucket");
    }
}
