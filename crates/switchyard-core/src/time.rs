//! Time as the store keeps it (milliseconds since the Unix epoch) and as the wire shows it (RFC 3339).

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
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
