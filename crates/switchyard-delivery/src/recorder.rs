//! The recorder: one task that writes attempt results and hand-backs in batches (one store
//! call, one commit, for many attempts), then reports what they caused. Everything else in the
//! engine reaches it through its handle, [`Recorder`].

use crate::engine::{Engine, EngineEvent};
use std::time::Duration;
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

/// The recorder's handle: where results and hand-backs go to be written, in order.
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Recorder {
    /// A handle and the receiving end its task reads ([`Engine::record`]).
    pub(crate) fn channel() -> (Recorder, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, rx)
    }

    /// Hands over an attempt's result, holding `slot` until it is written; `false` if the
    /// recorder has stopped (the delivery stays claimed and comes back after its lease).
    pub(crate) fn result(&self, result: AttemptResult, slot: Option<OwnedSemaphorePermit>) -> bool {
        self.tx.send(Msg::Result(result, slot)).is_ok()
    }

    /// Hands a claimed delivery back to the store unattempted (due again, for any node).
    pub(crate) fn release(&self, delivery: DeliveryId) {
        let _ = self.tx.send(Msg::Release(delivery));
    }

    /// Waits until everything handed over so far is written (or its write failed, which the
    /// recorder logs), at most `within` if given; `false` if the recorder has stopped.
    pub(crate) async fn flush(&self, within: Option<Duration>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        match within {
            Some(d) => tokio::time::timeout(d, rx).await.is_ok(),
            None => rx.await.is_ok(),
        }
    }
}

/// One batch of what was handed over, sorted by kind.
#[derive(Default)]
struct Batch {
    results: Vec<AttemptResult>,
    releases: Vec<DeliveryId>,
    flushes: Vec<oneshot::Sender<()>>,
    slots: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn of(messages: impl Iterator<Item = Msg>) -> Batch {
        let mut b = Batch::default();
        for m in messages {
            match m {
                Msg::Result(result, slot) => {
                    b.results.push(result);
                    b.slots.extend(slot);
                }
                Msg::Release(id) => b.releases.push(id),
                Msg::Flush(tx) => b.flushes.push(tx),
            }
        }
        b
    }

    /// Counts the batch's attempts in the metrics and the failure log.
    fn observe(&self, failures: &mut crate::failure_log::FailureLog) {
        let now = std::time::Instant::now();
        for r in &self.results {
            let label = match r.outcome {
                Outcome::Delivered => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Failed => "failed",
            };
            metrics::counter!("switchyard_attempts_total", "outcome" => label).increment(1);
            if !matches!(r.outcome, Outcome::Retry { .. }) {
                metrics::counter!("switchyard_deliveries_total", "status" => label).increment(1);
            }
            metrics::histogram!("switchyard_attempt_duration_seconds")
                .record(r.attempt.duration_ms() / 1000.0);
            failures.note(r, now);
        }
    }
}

impl Engine {
    /// The recorder's task: writes each batch of what was handed over, acts on what the writes
    /// caused (an endpoint disabled, deliveries due now), and counts the batch as settled.
    pub(crate) async fn record(self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let inner = &self.inner;
        let mut buf = Vec::with_capacity(1024);
        let mut failures = crate::failure_log::FailureLog::default();
        while rx.recv_many(&mut buf, 4096).await > 0 {
            metrics::gauge!("switchyard_recorder_backlog").set(rx.len() as f64);
            metrics::gauge!("switchyard_engine_queued").set(inner.admission.total() as f64);
            let batch = Batch::of(buf.drain(..));
            let settled = batch.results.len() + batch.releases.len();
            if !batch.results.is_empty() {
                batch.observe(&mut failures);
                match inner
                    .store
                    .record_attempts(
                        &inner.config.node,
                        batch.results,
                        &inner.config.disable_policy,
                    )
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
            if !batch.releases.is_empty()
                && let Err(e) = inner
                    .store
                    .release(&inner.config.node, Some(&batch.releases))
                    .await
            {
                tracing::warn!(error = %e, "handing back deliveries failed; they resume after their lease");
            }
            // Written (or given up on): the attempts waiting for a slot may go.
            drop(batch.slots);
            inner.writes.send_modify(|n| *n += 1);
            self.done(settled);
            for f in batch.flushes {
                let _ = f.send(());
            }
        }
    }
}
