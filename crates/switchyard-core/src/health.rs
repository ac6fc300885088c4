//! Endpoint health: what the hub knows about how an endpoint has been answering, and the policy
//! that disables an endpoint which has failed for too long. Pure.

/// One endpoint's health as stored and read through the API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointHealth {
    /// Attempts failed in a row since the last success.
    pub consecutive_failures: u64,
    /// First failure of the current run of failures (`None` after a success).
    pub failing_since: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    /// What the last failure said (status or error).
    pub last_error: Option<String>,
    /// Attempts over the window asked for.
    pub window: WindowStats,
}

/// Attempts over a recent window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowStats {
    pub since: i64,
    pub attempts: u64,
    pub successes: u64,
    /// Latency percentiles in milliseconds (`None` without attempts).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl WindowStats {
    /// Stats of the attempts made since `since`, each `(succeeded, duration_ms)`.
    pub fn of(since: i64, attempts: &[(bool, f64)]) -> WindowStats {
        let mut d: Vec<f64> = attempts.iter().map(|(_, ms)| *ms).collect();
        d.sort_by(f64::total_cmp);
        let pct = |p: f64| -> Option<f64> {
            if d.is_empty() {
                return None;
            }
            let i = ((p * d.len() as f64).ceil() as usize).clamp(1, d.len()) - 1;
            Some(d[i])
        };
        WindowStats {
            since,
            attempts: attempts.len() as u64,
            successes: attempts.iter().filter(|(ok, _)| *ok).count() as u64,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    }

    /// Successes per attempt over the window (`None` without attempts).
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.successes as f64 / self.attempts as f64)
    }
}

/// When repeated failure disables an endpoint (a 410 Gone disables at once, whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Every attempt has failed for at least this long (ms).
    pub failing_for_ms: i64,
    /// ... and the failures span at least this long (ms): a failure this long after the first.
    pub min_span_ms: i64,
}

impl Default for DisablePolicy {
    /// Five days of failures, at least one of them twelve hours after the first.
    fn default() -> DisablePolicy {
        DisablePolicy {
            failing_for_ms: 5 * 24 * 3600 * 1000,
            min_span_ms: 12 * 3600 * 1000,
        }
    }
}

impl DisablePolicy {
    /// The reason to disable an endpoint whose failures started at `failing_since` and whose
    /// latest failure is `last_failure_at`, if the policy says so at `now`.
    pub fn verdict(&self, failing_since: i64, last_failure_at: i64, now: i64) -> Option<String> {
        let failing = now - failing_since;
        (failing >= self.failing_for_ms && last_failure_at - failing_since >= self.min_span_ms)
            .then(|| format!("every attempt failed for {} hours", failing / (3600 * 1000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;

    #[test]
    fn disables_after_five_days_of_spread_failures_only() {
        let p = DisablePolicy::default();
        assert!(p.verdict(0, 4 * 24 * H, 4 * 24 * H).is_none());
        assert!(p.verdict(0, 5 * 24 * H, 5 * 24 * H).is_some());
        // Five days since the first failure, but no failure since eleven hours after it.
        assert!(p.verdict(0, 11 * H, 5 * 24 * H).is_none());
    }

    #[test]
    fn window_percentiles_and_rate() {
        let a: Vec<(bool, f64)> = (1..=100).map(|i| (i % 4 != 0, i as f64)).collect();
        let w = WindowStats::of(0, &a);
        assert_eq!((w.attempts, w.successes), (100, 75));
        assert_eq!((w.p50_ms, w.p99_ms), (Some(50.0), Some(99.0)));
        assert_eq!(w.success_rate(), Some(0.75));
        assert_eq!(WindowStats::of(0, &[]).p99_ms, None);
    }
}
