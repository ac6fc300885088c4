//! One worker per endpoint: its queue, its in-flight limit and pacing, one task per attempt.

use crate::engine::Engine;
use crate::outcome::{decide, without_request};
use crate::recorder::Msg;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchyard_core::{DueDelivery, Endpoint, Outcome};
use switchyard_store::StoreError;
use tokio::sync::{Semaphore, mpsc};

/// What an endpoint worker's queue carries.
pub(crate) enum Work {
    Deliver(DueDelivery),
}

/// The engine's handle on one endpoint's worker.
pub(crate) struct Slot {
    pub(crate) tx: mpsc::UnboundedSender<Work>,
    /// Deliveries waiting in the queue.
    pub(crate) queued: Arc<AtomicUsize>,
}

impl Engine {
    /// Starts the worker of `endpoint_id` and returns its slot.
    pub(crate) fn spawn_worker(&self, endpoint_id: String, org: String) -> Slot {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(
            self.clone()
                .endpoint_worker(endpoint_id, org, rx, queued.clone()),
        );
        Slot { tx, queued }
    }

    async fn endpoint_config(&self, org: &str, id: &str) -> Result<Arc<Endpoint>, StoreError> {
        let ttl = self.inner.config.endpoint_cache_ttl;
        if let Ok(c) = self.inner.configs.lock()
            && let Some((ep, at)) = c.get(id)
            && at.elapsed() < ttl
        {
            return Ok(ep.clone());
        }
        let ep = Arc::new(self.inner.store.get_endpoint(org, id).await?);
        if let Ok(mut c) = self.inner.configs.lock() {
            c.insert(id.to_string(), (ep.clone(), Instant::now()));
        }
        Ok(ep)
    }

    /// Hands back every delivery still queued (shutdown) and ends the worker.
    fn hand_back(&self, rx: &mut mpsc::UnboundedReceiver<Work>, queued: &AtomicUsize) {
        rx.close();
        while let Ok(Work::Deliver(job)) = rx.try_recv() {
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = self.inner.recorder.send(Msg::Release(job.delivery_id));
        }
    }

    async fn endpoint_worker(
        self,
        endpoint_id: String,
        org: String,
        mut rx: mpsc::UnboundedReceiver<Work>,
        queued: Arc<AtomicUsize>,
    ) {
        let inner = self.inner.clone();
        let mut limit: Option<(u32, Arc<Semaphore>)> = None;
        // Pacing for `max_rps`: the earliest time the next request may start.
        let mut next_slot = tokio::time::Instant::now();
        loop {
            // Fast path first: a busy queue never registers with the cancellation token (its
            // waiter list is shared by every worker); only an empty queue waits on both.
            let next = match rx.try_recv() {
                Ok(work) => Ok(Some(work)),
                Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    _ = inner.cancel.cancelled() => {
                        self.hand_back(&mut rx, &queued);
                        return;
                    }
                    next = tokio::time::timeout(inner.config.worker_idle, rx.recv()) => next,
                },
            };
            let job = match next {
                Ok(Some(Work::Deliver(job))) => job,
                Ok(None) => return,
                Err(_) => {
                    let Ok(mut slots) = inner.slots.lock() else {
                        return;
                    };
                    if rx.is_empty() {
                        slots.remove(&endpoint_id);
                        return;
                    }
                    continue;
                }
            };
            queued.fetch_sub(1, Ordering::Relaxed);
            if inner.cancel.is_cancelled() {
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            let ep = match self.endpoint_config(&org, &endpoint_id).await {
                Ok(ep) => ep,
                Err(StoreError::NotFound) => {
                    let now = inner.clock.now_ms();
                    let result =
                        without_request(&job, "endpoint was deleted".into(), Outcome::Failed, now);
                    let _ = inner.recorder.send(Msg::Result(result));
                    continue;
                }
                Err(e) => {
                    // The store is unwell: leave the delivery claimed; it comes back after its lease.
                    tracing::error!(error = %e, endpoint_id, "cannot load endpoint");
                    self.done(1);
                    continue;
                }
            };
            if !ep.enabled {
                let why = format!(
                    "endpoint is disabled: {}",
                    ep.disabled_reason.as_deref().unwrap_or("by its owner")
                );
                let now = inner.clock.now_ms();
                let result = without_request(&job, why, Outcome::Failed, now);
                let _ = inner.recorder.send(Msg::Result(result));
                continue;
            }
            let max = ep.max_in_flight.max(1);
            let sem = match &limit {
                Some((m, s)) if *m == max => s.clone(),
                _ => {
                    let s = Arc::new(Semaphore::new(max as usize));
                    limit = Some((max, s.clone()));
                    s
                }
            };
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    p = sem.acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = inner.cancel.cancelled() => {
                        let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                        continue;
                    }
                },
            };
            if let Some(rps) = ep.max_rps.filter(|r| *r > 0) {
                let now = tokio::time::Instant::now();
                next_slot = next_slot.max(now);
                tokio::select! {
                    _ = tokio::time::sleep_until(next_slot) => {}
                    _ = inner.cancel.cancelled() => {}
                }
                next_slot += Duration::from_secs(1) / rps;
            }
            if inner.cancel.is_cancelled() {
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            let this = self.clone();
            inner.tasks.spawn(async move {
                let at = this.inner.clock.now_ms();
                let resp = crate::http::send(&this.inner.clients, &ep, &job.event, at).await;
                drop(permit);
                let result = decide(&ep, &job, resp, || this.jitter());
                let _ = this.inner.recorder.send(Msg::Result(result));
            });
        }
    }
}
