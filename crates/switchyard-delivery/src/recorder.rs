//! The recorder: one task that writes attempt results and hand-backs in batches, then reports
//! what they caused.

use crate::engine::{Engine, EngineEvent};
use switchyard_core::ids::DeliveryId;
use switchyard_core::{AttemptResult, Outcome};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

// Nearly every message is a result: boxing it would cost an allocation per attempt.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    /// A result, with the slot it holds until it is written (see `Inner::record_slots`).
    Result(AttemptResult, Option<OwnedSemaphorePermit>),
    Release(DeliveryId),
    Flush(oneshot::Sender<()>),
}

impl Engine {
    pub(crate) async fn recorder(self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let inner = &self.inner;
        let mut buf = Vec::with_capacity(1024);
        let mut failures = crate::failure_log::FailureLog::default();
        while rx.recv_many(&mut buf, 4096).await > 0 {
            metrics::gauge!("switchyard_recorder_backlog").set(rx.len() as f64);
            metrics::gauge!("switchyard_engine_queued").set(
                inner
                    .queued_total
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            );
            let mut results = Vec::new();
            let mut releases = Vec::new();
            let mut flushes = Vec::new();
            let mut slots = Vec::new();
            for m in buf.drain(..) {
                match m {
                    Msg::Result(result, slot) => {
                        results.push(result);
                        slots.extend(slot);
                    }
                    Msg::Release(id) => releases.push(id),
                    Msg::Flush(tx) => flushes.push(tx),
                }
            }
            let settled = results.len() + releases.len();
            if !results.is_empty() {
                let now = std::time::Instant::now();
                for r in &results {
                    let label = match r.outcome {
                        Outcome::Delivered => "delivered",
                        Outcome::Retry { .. } => "retry",
                        Outcome::Failed => "failed",
                    };
                    metrics::counter!("switchyard_attempts_total", "outcome" => label).increment(1);
                    if !matches!(r.outcome, Outcome::Retry { .. }) {
                        metrics::counter!("switchyard_deliveries_total", "status" => label)
                            .increment(1);
                    }
                    metrics::histogram!("switchyard_attempt_duration_seconds")
                        .record(r.attempt.duration_ms / 1000.0);
                    failures.note(r, now);
                }
                match inner
                    .store
                    .record_attempts(&inner.config.node, results, &inner.config.disable_policy)
                    .await
                {
                    Ok(recorded) => {
                        for d in recorded.disabled {
                            self.endpoint_changed(&d.endpoint_id);
                            tracing::warn!(
                                org = %d.org_id,
                                endpoint_id = %d.endpoint_id,
                                "endpoint disabled"
                            );
                            let _ = inner.events.send(EngineEvent::EndpointDisabled {
                                org_id: d.org_id,
                                endpoint_id: d.endpoint_id,
                            });
                        }
                        self.backlog(recorded.due_now);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "recording attempts failed; the deliveries stay claimed and are retried after their lease")
                    }
                }
            }
            if !releases.is_empty()
                && let Err(e) = inner
                    .store
                    .release(&inner.config.node, Some(&releases))
                    .await
            {
                tracing::warn!(error = %e, "handing back deliveries failed; they resume after their lease");
            }
            // Written (or given up on): the attempts waiting for a slot may go.
            drop(slots);
            self.done(settled);
            for f in flushes {
                let _ = f.send(());
            }
        }
    }
}
