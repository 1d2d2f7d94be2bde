//! Login throttling per account and per client address.
//!
//! Limits: 5 failed logins per account and 20 per address within 15 minutes. Five
//! guesses per quarter hour make an online attack on a 10-character password
//! hopeless, while a customer who mistypes a few times is not locked out for long;
//! the per-address limit is higher because offices share one address.

use keys::UnixTime;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub const WINDOW_SECS: u64 = 15 * 60;
pub const PER_ACCOUNT: usize = 5;
pub const PER_ADDRESS: usize = 20;
/// Bound on tracked keys, so a flood of made-up emails cannot grow memory without limit.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<UnixTime>>>,
}

impl Throttle {
    /// Seconds until the next attempt is allowed, if either key is over its limit.
    pub fn blocked_for(&self, account: &str, address: &str, now: UnixTime) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for (key, limit) in [
            (format!("a:{account}"), PER_ACCOUNT),
            (format!("i:{address}"), PER_ADDRESS),
        ] {
            if let Some(q) = map.get_mut(&key) {
                while q.front().is_some_and(|t| now.since(*t) >= WINDOW_SECS) {
                    q.pop_front();
                }
                if q.len() >= limit {
                    let oldest = q.front().copied().unwrap_or(now);
                    let w = WINDOW_SECS - now.since(oldest);
                    wait = Some(wait.map_or(w, |x: u64| x.max(w)));
                }
            }
        }
        wait
    }

    pub fn record_failure(&self, account: &str, address: &str, now: UnixTime) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, q| q.back().is_some_and(|t| now.since(*t) < WINDOW_SECS));
        }
        for key in [format!("a:{account}"), format!("i:{address}")] {
            let q = map.entry(key).or_default();
            q.push_back(now);
            while q.len() > PER_ADDRESS {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn record_success(&self, account: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("a:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_address_limits() {
        let t = Throttle::default();
        let now = UnixTime(1_000_000);
        for _ in 0..PER_ACCOUNT {
            assert!(t.blocked_for("a@x", "1.2.3.4", now).is_none());
            t.record_failure("a@x", "1.2.3.4", now);
        }
        assert_eq!(t.blocked_for("a@x", "1.2.3.4", now), Some(WINDOW_SECS));
        assert!(t.blocked_for("b@x", "5.6.7.8", now).is_none());
        assert_eq!(
            t.blocked_for("a@x", "9.9.9.9", now.plus_secs(60)),
            Some(WINDOW_SECS - 60)
        );
        assert!(t
            .blocked_for("a@x", "1.2.3.4", now.plus_secs(WINDOW_SECS))
            .is_none());
        for i in 0..PER_ADDRESS {
            t.record_failure(&format!("u{i}@x"), "6.6.6.6", now);
        }
        assert!(t.blocked_for("fresh@x", "6.6.6.6", now).is_some());
    }
}
