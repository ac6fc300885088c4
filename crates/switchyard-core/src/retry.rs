//! The retry schedule: when the next attempt of a failed delivery is due.
//!
//! The first attempt is immediate; after the n-th failed attempt the delivery waits
//! `schedule[n-1]` seconds (± jitter) and after the last one it is `failed`.

/// Delays (seconds) after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
pub const DEFAULT_SCHEDULE_S: [u32; 9] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

/// Longest delay a receiver may ask for with `Retry-After`; longer requests are capped.
pub const MAX_RETRY_AFTER_S: u64 = 6 * 3600;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this many milliseconds.
    RetryInMs(u64),
    /// No attempts left: the delivery is `failed`.
    GiveUp,
}

/// Decides the next step after `attempts_made` failed attempts (1 after the first one).
/// `retry_after_s` is the receiver's `Retry-After` (429/503), honoured within
/// [`MAX_RETRY_AFTER_S`]: never earlier than it asks, never later than the cap. `jitter` in
/// `[0, 1]` places the delay within ±10 % of the schedule's step (0.5 is the step itself); the
/// caller draws it, so the schedule stays a pure function.
pub fn next_after_failure(
    schedule_s: &[u32],
    attempts_made: u32,
    retry_after_s: Option<u64>,
    jitter: f64,
) -> Next {
    let Some(&base) = schedule_s.get(attempts_made.saturating_sub(1) as usize) else {
        return Next::GiveUp;
    };
    let base_ms = u64::from(base) * 1000;
    let jittered = spread(base_ms, jitter);
    let ms = match retry_after_s {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER_S) * 1000),
        None => jittered,
    };
    Next::RetryInMs(ms)
}

/// Why the retry [`next_after_failure`] schedules with the same arguments waits as long as it
/// does: the schedule's step and its jitter, or the receiver's `Retry-After` where that is later.
/// `None` when there is no retry.
pub fn retry_reason(
    schedule_s: &[u32],
    attempts_made: u32,
    retry_after_s: Option<u64>,
    jitter: f64,
) -> Option<String> {
    let &base = schedule_s.get(attempts_made.saturating_sub(1) as usize)?;
    let base_ms = u64::from(base) * 1000;
    let jittered = spread(base_ms, jitter);
    let scheduled = format!(
        "retry {attempts_made} of {}: schedule {base} s, jitter {:+.1} s",
        schedule_s.len(),
        (jittered as f64 - base_ms as f64) / 1000.0
    );
    Some(match retry_after_s {
        Some(ra) if ra.min(MAX_RETRY_AFTER_S) * 1000 > jittered => format!(
            "Retry-After {} s from the receiver (later than {scheduled})",
            ra.min(MAX_RETRY_AFTER_S)
        ),
        _ => scheduled,
    })
}

/// ±10 % jitter so that receivers recovering from an outage are not hit by a synchronized wave.
fn spread(ms: u64, jitter: f64) -> u64 {
    let band = ms / 10;
    let offset = (jitter.clamp(0.0, 1.0) * (2 * band) as f64).round() as u64;
    ms - band + offset
}

/// Checks a per-endpoint override: 1–20 steps, each at most 7 days.
pub fn validate_schedule(s: &[u32]) -> Result<(), crate::CoreError> {
    if s.len() > 20 {
        return Err(crate::CoreError::invalid(
            "retry_schedule_s has at most 20 steps",
        ));
    }
    if s.iter().any(|&d| d > 7 * 86400) {
        return Err(crate::CoreError::invalid(
            "each retry delay is at most 604800 s (7 days)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_step_or_the_retry_after() {
        assert_eq!(
            retry_reason(&[5, 60], 1, None, 0.5).as_deref(),
            Some("retry 1 of 2: schedule 5 s, jitter +0.0 s")
        );
        assert_eq!(
            retry_reason(&[5, 60], 2, Some(120), 0.0).as_deref(),
            Some(
                "Retry-After 120 s from the receiver (later than retry 2 of 2: schedule 60 s, jitter -6.0 s)"
            )
        );
        assert_eq!(retry_reason(&[5], 2, None, 0.5), None);
    }

    #[test]
    fn default_schedule_has_ten_attempts() {
        for n in 1..=9 {
            let base = u64::from(DEFAULT_SCHEDULE_S[n as usize - 1]) * 1000;
            let at = |j| next_after_failure(&DEFAULT_SCHEDULE_S, n, None, j);
            assert_eq!(at(0.0), Next::RetryInMs(base - base / 10));
            assert_eq!(at(0.5), Next::RetryInMs(base));
            assert_eq!(at(1.0), Next::RetryInMs(base + base / 10));
        }
        assert_eq!(
            next_after_failure(&DEFAULT_SCHEDULE_S, 10, None, 0.5),
            Next::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let Next::RetryInMs(ms) = next_after_failure(&[1], 1, Some(120), 1.0) else {
            panic!()
        };
        assert_eq!(ms, 120_000);
        let Next::RetryInMs(ms) = next_after_failure(&[1], 1, Some(10 * 86400), 0.5) else {
            panic!()
        };
        assert_eq!(ms, MAX_RETRY_AFTER_S * 1000);
        assert_eq!(next_after_failure(&[], 1, Some(5), 0.5), Next::GiveUp);
        assert_eq!(next_after_failure(&[0], 1, None, 1.0), Next::RetryInMs(0));
    }
}
