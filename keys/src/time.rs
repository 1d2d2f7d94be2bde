//! Wall-clock instants as whole seconds since the Unix epoch.
//!
//! Every rule with days or hours in it takes a [`UnixTime`] as an input instead of
//! reading the clock itself, so tests can walk through weeks in milliseconds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    pub const MINUTE: u64 = 60;
    pub const HOUR: u64 = 60 * Self::MINUTE;
    pub const DAY: u64 = 24 * Self::HOUR;

    /// The current wall-clock time. Only the thin I/O shells call this; the rules
    /// take the result as an argument.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        UnixTime(secs)
    }

    pub fn secs(self) -> u64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        UnixTime(self.0.saturating_add(secs))
    }

    pub fn plus_days(self, days: u64) -> Self {
        self.plus_secs(days.saturating_mul(Self::DAY))
    }

    /// Seconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub fn since(self, earlier: UnixTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The calendar date (UTC) as `(year, month, day)`, for humans and emails.
    pub fn civil_date(self) -> (i64, u32, u32) {
        // Howard Hinnant's days-to-civil algorithm.
        let z = (self.0 / Self::DAY) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// Hours, minutes and seconds of the day (UTC).
    pub fn civil_time(self) -> (u32, u32, u32) {
        let s = (self.0 % Self::DAY) as u32;
        (s / 3600, (s / 60) % 60, s % 60)
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, e.g. `2021-09-28T14:51:24Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d) = self.civil_date();
        let (h, mi, s) = self.civil_time();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(1_632_840_684).to_string(), "2021-09-28T14:51:24Z");
        assert_eq!(UnixTime(951_782_400).civil_date(), (2000, 2, 29));
        assert_eq!(UnixTime(4_102_444_799).to_string(), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(UnixTime(5).since(UnixTime(10)), 0);
        assert_eq!(UnixTime(u64::MAX).plus_days(3), UnixTime(u64::MAX));
        assert_eq!(UnixTime(0).plus_days(1), UnixTime(86_400));
    }
}

/// Where the current time comes from. Services take a `Clock` so tests can use a
/// [`SimClock`] and walk through weeks in milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> UnixTime;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A simulated clock for tests and demos: it only moves when told to. Clones share
/// the same time.
#[derive(Clone, Debug)]
pub struct SimClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl SimClock {
    pub fn at(t: UnixTime) -> Self {
        SimClock(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(t.0)))
    }
    pub fn set(&self, t: UnixTime) {
        self.0.store(t.0, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance_secs(&self, secs: u64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
