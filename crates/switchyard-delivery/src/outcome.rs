//! What an attempt's result makes of its delivery: delivered, retried (when), failed, and
//! whether the endpoint is disabled. Pure functions of the result, the time and a jitter draw.

use crate::http;
use switchyard_core::hooks::HookResult;
use switchyard_core::ids::DeliveryId;
use switchyard_core::retry::{DEFAULT_SCHEDULE_S, Next, next_after_failure, retry_reason};
use switchyard_core::{Attempt, AttemptResult, DueDelivery, Endpoint, Outcome, Seen};

/// The attempt of `delivery` that saw `seen`. What breaks an attempt's rules (a bug here, never
/// the receiver's doing: its status and body are bounded when read) is recorded as the
/// attempt's error rather than lost.
fn attempt(delivery: &DeliveryId, seen: Seen) -> Attempt {
    let at = seen.at;
    Attempt::new(delivery, seen).unwrap_or_else(|refused| {
        let why = format!("the attempt could not be kept as it was: {refused}");
        Attempt::without_answer(delivery, at, why)
    })
}

/// Turns an HTTP response into the delivery's next state; `jitter` is drawn only for a retry.
pub(crate) fn decide(
    ep: &Endpoint,
    job: &DueDelivery,
    resp: http::Response,
    jitter: impl FnOnce() -> f64,
) -> AttemptResult {
    let status = resp.status;
    let success = status.is_some_and(|s| ep.profile().accepts(s));
    let mut error = resp.error;
    if let Some(s) = status
        && !success
        && (200..300).contains(&s)
    {
        error = Some(format!(
            "an {} receiver must answer 200 OK; it answered {s}",
            ep.profile().as_str()
        ));
    }
    let mut disable = None;
    let mut retry_why = None;
    let outcome = if success {
        Outcome::Delivered
    } else if status == Some(410) {
        disable = Some("the receiver answered 410 Gone".to_string());
        Outcome::Failed
    } else {
        let retry_after = match status {
            Some(429 | 503) => resp.retry_after_s,
            _ => None,
        };
        let j = jitter();
        retry_why = retry_reason(ep.schedule(), job.attempts + 1, retry_after, j);
        match next_after_failure(ep.schedule(), job.attempts + 1, retry_after, j) {
            Next::RetryInMs(ms) => Outcome::Retry {
                at: resp.at + ms as i64,
            },
            Next::GiveUp => Outcome::Failed,
        }
    };
    let mut attempt = attempt(
        &job.delivery_id,
        Seen {
            at: resp.at,
            status_code: status,
            duration_ms: resp.duration_ms,
            error: if success { None } else { error },
            response_body: resp.body,
            request_headers: resp.request_headers,
        },
    );
    attempt.retry_reason = retry_why;
    AttemptResult {
        org_id: job.org_id.clone(),
        endpoint_id: Some(ep.id.clone()),
        delivery_id: job.delivery_id.clone(),
        attempt,
        outcome,
        disable_endpoint: disable,
    }
}

/// Turns an event hook's result (a run started at `at`, finished at `now`) into the delivery's
/// next state: the executor's `retries` bound the default schedule.
pub(crate) fn hook_decide(
    job: &DueDelivery,
    result: HookResult,
    at: i64,
    now: i64,
    jitter: f64,
) -> AttemptResult {
    let outcome = if result.error.is_none() {
        Outcome::Delivered
    } else if result.permanent {
        Outcome::Failed
    } else {
        let steps = result
            .retries
            .map_or(DEFAULT_SCHEDULE_S.len(), |n| n as usize);
        let schedule = &DEFAULT_SCHEDULE_S[..steps.min(DEFAULT_SCHEDULE_S.len())];
        match next_after_failure(schedule, job.attempts + 1, None, jitter) {
            Next::RetryInMs(ms) => Outcome::Retry {
                at: now + ms as i64,
            },
            Next::GiveUp => Outcome::Failed,
        }
    };
    AttemptResult {
        org_id: job.org_id.clone(),
        endpoint_id: None,
        delivery_id: job.delivery_id.clone(),
        attempt: attempt(
            &job.delivery_id,
            Seen {
                at,
                duration_ms: result.duration_ms,
                error: result.error,
                response_body: result.run_id.map(|id| format!("run {id}")),
                ..Seen::default()
            },
        ),
        outcome,
        disable_endpoint: None,
    }
}

/// An attempt that ended before any request (the endpoint is gone or disabled), after
/// `duration_ms`.
pub(crate) fn without_request(
    job: &DueDelivery,
    why: String,
    outcome: Outcome,
    now: i64,
    duration_ms: f64,
) -> AttemptResult {
    AttemptResult {
        org_id: job.org_id.clone(),
        endpoint_id: job.target.endpoint_id().cloned(),
        delivery_id: job.delivery_id.clone(),
        attempt: attempt(
            &job.delivery_id,
            Seen {
                at: now,
                duration_ms,
                error: Some(why),
                ..Seen::default()
            },
        ),
        outcome,
        disable_endpoint: None,
    }
}
