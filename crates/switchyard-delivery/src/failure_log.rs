//! Tells the operator about failed attempts without a line per retry: one log line per
//! endpoint (or event hook) and cause, then silence for that pair for a while, the next line
//! saying how many were left out.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchyard_core::{AttemptResult, Outcome};

/// How long a cause stays quiet after it was logged.
const QUIET: Duration = Duration::from_secs(300);
/// Pairs remembered at most; beyond it the memory is emptied (a few repeated lines at worst).
const MAX_KEYS: usize = 4096;

#[derive(Default)]
pub(crate) struct FailureLog {
    /// When each pair was last logged, and how many of it were left out since.
    seen: HashMap<(String, String), (Option<Instant>, u64)>,
}

/// What a failed attempt failed of: its status, or its error up to the first `: ` (a colon
/// followed by a space ends a part of an error chain; the colons of a URL do not), at most 80
/// characters.
fn cause(r: &AttemptResult) -> String {
    match (r.attempt.status_code(), r.attempt.error()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(e)) => error_cause(e),
        (None, None) => "failed".into(),
    }
}

fn error_cause(e: &str) -> String {
    e.split(": ").next().unwrap_or(e).chars().take(80).collect()
}

impl FailureLog {
    /// Logs `r` if it failed and its cause was not logged for its target within [`QUIET`].
    pub(crate) fn note(&mut self, r: &AttemptResult, now: Instant) {
        let final_failure = matches!(r.outcome, Outcome::Failed);
        if matches!(r.outcome, Outcome::Delivered) {
            return;
        }
        let target = r
            .endpoint_id
            .as_ref()
            .map_or_else(|| "event hook".to_string(), ToString::to_string);
        let cause = cause(r);
        let key = (format!("{}/{target}", r.org_id), cause.clone());
        if self.seen.len() >= MAX_KEYS && !self.seen.contains_key(&key) {
            self.seen.clear();
        }
        let entry = self.seen.entry(key).or_insert((None, 0));
        if entry.0.is_some_and(|at| now.duration_since(at) < QUIET) {
            entry.1 += 1;
            return;
        }
        let left_out = std::mem::take(&mut entry.1);
        entry.0 = Some(now);
        let error = r.attempt.error().unwrap_or("");
        if final_failure {
            tracing::warn!(
                org = %r.org_id,
                target,
                delivery_id = %r.delivery_id,
                cause,
                error,
                similar_left_out = left_out,
                "delivery failed for good (no retries left, or refused for good); retry it by hand"
            );
        } else {
            tracing::warn!(
                org = %r.org_id,
                target,
                delivery_id = %r.delivery_id,
                cause,
                error,
                similar_left_out = left_out,
                "delivery attempt failed; it will be retried"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::{DeliveryId, EndpointId};
    use switchyard_core::{Attempt, Seen};

    fn result(endpoint: &str, status: u16, outcome: Outcome) -> AttemptResult {
        AttemptResult {
            org_id: switchyard_core::ids::OrgId::stored("o".into()),
            endpoint_id: Some(EndpointId::stored(endpoint.into())),
            delivery_id: DeliveryId::stored("dlv_1".into()),
            attempt: Attempt::new(
                &DeliveryId::stored("dlv_1".into()),
                Seen {
                    status_code: Some(status),
                    duration_ms: 1.0,
                    ..Seen::default()
                },
            )
            .expect("a valid attempt"),
            outcome,
            disable_endpoint: None,
        }
    }

    #[test]
    fn a_cause_keeps_its_url_whole() {
        assert_eq!(
            error_cause(
                "error sending request for url (http://127.0.0.1:9/hook): client error (Connect): tcp connect error"
            ),
            "error sending request for url (http://127.0.0.1:9/hook)"
        );
        assert_eq!(
            error_cause("timeout: no response within 1000 ms"),
            "timeout"
        );
    }

    #[test]
    fn one_line_per_cause_and_target_then_quiet() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        let retry = Outcome::Retry { at: 0 };
        for _ in 0..5 {
            log.note(&result("ep_a", 500, retry.clone()), t0);
        }
        log.note(&result("ep_a", 503, retry.clone()), t0);
        log.note(&result("ep_b", 500, retry.clone()), t0);
        log.note(&result("ep_a", 200, Outcome::Delivered), t0);
        let a500 = &log.seen[&("o/ep_a".to_string(), "status 500".to_string())];
        assert_eq!(a500.1, 4, "four left out after the first line");
        assert_eq!(log.seen.len(), 3);
        // After the quiet time the next one is logged again, saying how many were left out.
        log.note(&result("ep_a", 500, retry), t0 + QUIET);
        let a500 = &log.seen[&("o/ep_a".to_string(), "status 500".to_string())];
        assert_eq!(a500.1, 0);
        assert_eq!(a500.0, Some(t0 + QUIET));
    }
}
