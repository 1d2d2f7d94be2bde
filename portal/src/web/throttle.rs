//! Login throttling per account and per client address.
//!
//! Limits: 5 failed logins per account and 20 per address within 15 minutes. Five
//! guesses per quarter hour make an online attack on a 10-character password
//! hopeless, while a customer who mistypes a few times is not locked out for long;
//! the per-address limit is higher because offices share one address.

//!
//! The failures live in the store (`login_failures`), so several servers on one
//! database count the same attempts: a load balancer spreading guesses over
//! them gains nothing.

use crate::store::{Store, StoreError};
use keys::UnixTime;
use std::sync::Arc;

pub const WINDOW_SECS: u64 = 15 * 60;
pub const PER_ACCOUNT: usize = 5;
pub const PER_ADDRESS: usize = 20;

pub struct Throttle {
    store: Arc<Store>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

fn keys(account: &str, address: &str) -> [(String, usize); 2] {
    [
        (format!("a:{account}"), PER_ACCOUNT),
        (format!("i:{address}"), PER_ADDRESS),
    ]
}

impl Throttle {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Seconds until the next attempt is allowed, if either key is over its limit.
    pub fn blocked_for(
        &self,
        account: &str,
        address: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        let keys = keys(account, address);
        let names = [keys[0].0.as_str(), keys[1].0.as_str()];
        let since = UnixTime(now.0.saturating_sub(WINDOW_SECS));
        let counts = self.store.login_failures(&names, since)?;
        let mut wait = None;
        for ((_, limit), (n, oldest)) in keys.iter().zip(counts) {
            if n >= *limit {
                let oldest = oldest.unwrap_or(now);
                let w = WINDOW_SECS - now.since(oldest).min(WINDOW_SECS);
                wait = Some(wait.map_or(w, |x: u64| x.max(w)));
            }
        }
        Ok(wait)
    }

    pub fn record_failure(&self, account: &str, address: &str, now: UnixTime) {
        let keys = keys(account, address);
        let names = [keys[0].0.as_str(), keys[1].0.as_str()];
        let forget = UnixTime(now.0.saturating_sub(WINDOW_SECS));
        if let Err(e) = self.store.record_login_failure(&names, now, forget) {
            tracing::error!(error = %e, "cannot record a failed login");
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn record_success(&self, account: &str) {
        if let Err(e) = self.store.clear_login_failures(&format!("a:{account}")) {
            tracing::error!(error = %e, "cannot clear the failed logins of an account");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_address_limits() {
        let store = Arc::new(Store::temporary().unwrap());
        let t = Throttle::new(Arc::clone(&store));
        let blocked_for = |a: &str, i: &str, now| t.blocked_for(a, i, now).unwrap();
        let now = UnixTime(1_000_000);
        for _ in 0..PER_ACCOUNT {
            assert!(blocked_for("a@x", "1.2.3.4", now).is_none());
            t.record_failure("a@x", "1.2.3.4", now);
        }
        assert_eq!(blocked_for("a@x", "1.2.3.4", now), Some(WINDOW_SECS));
        assert!(blocked_for("b@x", "5.6.7.8", now).is_none());
        assert_eq!(
            blocked_for("a@x", "9.9.9.9", now.plus_secs(60)),
            Some(WINDOW_SECS - 60)
        );
        assert!(blocked_for("a@x", "1.2.3.4", now.plus_secs(WINDOW_SECS)).is_none());
        for i in 0..PER_ADDRESS {
            t.record_failure(&format!("u{i}@x"), "6.6.6.6", now);
        }
        assert!(blocked_for("fresh@x", "6.6.6.6", now).is_some());
        // A second server on the same store counts the same failures.
        let other = Throttle::new(store);
        assert!(other
            .blocked_for("fresh@x", "6.6.6.6", now)
            .unwrap()
            .is_some());
        t.record_success("fresh@x");
        assert!(
            other
                .blocked_for("fresh@x", "6.6.6.6", now)
                .unwrap()
                .is_some(),
            "the address stays throttled"
        );
    }
}
