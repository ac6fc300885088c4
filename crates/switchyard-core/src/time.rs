//! Time as the store keeps it (milliseconds since the Unix epoch) and as the wire shows it (RFC 3339).

use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Where a component that schedules work reads the time: the system clock in the hub, a
/// [`ManualClock`] in tests that move time forward instead of waiting for it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `at` (milliseconds since the epoch).
    pub fn new(at: i64) -> ManualClock {
        ManualClock(AtomicI64::new(at))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T18:00:00.123Z`.
pub fn to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses RFC 3339 (any offset) into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_rfc3339(&to_rfc3339(ms)), Some(ms));
        assert_eq!(
            parse_rfc3339("2026-11-23T02:00:00+01:00"),
            parse_rfc3339("2026-11-23T01:00:00Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
