//! Synchronous deliveries: a `sync` subscription's delivery attempted once by the publish that
//! made it, while its caller waits, and recorded before the publish answers.
//!
//! A sync attempt skips the endpoint's queue and flow control (its caller is the flow control:
//! one publish waits for it) and is never retried on a schedule: its caller sees the failure
//! and decides. A failed sync delivery stays in the trace and can be retried by hand.

use crate::engine::Engine;
use crate::outcome::{decide, hook_decide, without_request};
use serde_json::Value;
use std::time::Instant;
use switchyard_core::ids::SubscriptionId;
use switchyard_core::{AttemptResult, DueDelivery, Outcome, SyncOutcome, Target};
use switchyard_store::StoreError;

impl Engine {
    /// Attempts `job` (a sync delivery this node claimed in the publish that made it) now, at
    /// most until `deadline`; records the attempt and waits until the store has it; returns
    /// what the target did.
    pub async fn attempt_now(&self, job: DueDelivery, deadline: Instant) -> SyncOutcome {
        let inner = &self.inner;
        inner.admission.dispatched(1);
        let started = Instant::now();
        let at = inner.clock.now_ms();
        let late = |job: &DueDelivery| {
            let ms = inner.config.sync_deadline.as_millis();
            let why = format!(
                "timeout: the synchronous deadline of {ms} ms passed before the target answered"
            );
            let waited = started.elapsed().as_secs_f64() * 1000.0;
            without_request(job, why, Outcome::Failed, at, waited)
        };
        let (mut result, output, run_id) = match &job.target {
            Target::Endpoint(id) => match self.endpoint_config(&job.org_id, id).await {
                Ok(ep) if !ep.enabled() => {
                    let why = "endpoint is disabled; a synchronous delivery is not kept for it";
                    (
                        without_request(&job, why.into(), Outcome::Failed, at, 0.0),
                        None,
                        None,
                    )
                }
                Ok(ep) => {
                    let send = crate::http::send(&inner.clients, &ep, &job.event, at);
                    match tokio::time::timeout_at(deadline.into(), send).await {
                        Ok(resp) => {
                            let body = resp.body.as_deref().map(body_value);
                            (decide(&ep, &job, resp, || 0.0), body, None)
                        }
                        Err(_) => (late(&job), None, None),
                    }
                }
                Err(StoreError::NotFound(_)) => {
                    let why = "endpoint was deleted".to_string();
                    (
                        without_request(&job, why, Outcome::Failed, at, 0.0),
                        None,
                        None,
                    )
                }
                Err(e) => {
                    let why = format!("cannot load the endpoint: {e}");
                    (
                        without_request(&job, why, Outcome::Failed, at, 0.0),
                        None,
                        None,
                    )
                }
            },
            Target::Executor(name) => match inner.hooks.clone() {
                Some(runner) => {
                    let run = runner.run_hook(&job.org_id, name, &job.event, Some(deadline));
                    // The runner stops the code at the deadline and records the run; the
                    // margin covers recording it.
                    let margin = deadline + std::time::Duration::from_secs(2);
                    match tokio::time::timeout_at(margin.into(), run).await {
                        Ok(mut r) => {
                            let output = r.output.take();
                            let run_id = r.run_id.clone();
                            let now = inner.clock.now_ms();
                            (hook_decide(&job, r, at, now, 0.0), output, run_id)
                        }
                        Err(_) => (late(&job), None, None),
                    }
                }
                None => {
                    let why = "no executor runner on this node".to_string();
                    (
                        without_request(&job, why, Outcome::Failed, at, 0.0),
                        None,
                        None,
                    )
                }
            },
        };
        // Once: the caller has seen the failure; a retry is theirs to ask for.
        if matches!(result.outcome, Outcome::Retry { .. }) {
            result.outcome = Outcome::Failed;
            result.attempt.retry_reason = None;
        }
        let outcome = outcome_of(&job, &result, output, run_id);
        self.record_and_wait(result).await;
        outcome
    }

    /// Hands `result` to the recorder and waits until it has been written (or the write
    /// failed, which the recorder logs; the delivery then comes back after its lease).
    async fn record_and_wait(&self, result: AttemptResult) {
        let recorder = &self.inner.recorder;
        if !recorder.result(result, None) || !recorder.flush(None).await {
            self.done(1);
        }
    }
}

/// A response body as the caller sees it: its JSON when it is JSON, its text otherwise.
fn body_value(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}

fn outcome_of(
    job: &DueDelivery,
    result: &AttemptResult,
    output: Option<Value>,
    run_id: Option<switchyard_core::ids::RunId>,
) -> SyncOutcome {
    SyncOutcome {
        delivery_id: job.delivery_id.clone(),
        // Every job attempted now carries its subscription (its publish claimed it as sync).
        subscription_id: job
            .sync
            .clone()
            .unwrap_or_else(|| SubscriptionId::stored(String::new())),
        target: job.target.clone(),
        ok: matches!(result.outcome, Outcome::Delivered),
        status_code: result.attempt.status_code(),
        output,
        error: result.attempt.error().map(str::to_string),
        run_id,
        duration_ms: result.attempt.duration_ms(),
    }
}
