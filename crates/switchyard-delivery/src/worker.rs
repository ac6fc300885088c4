//! One worker per endpoint, [`EndpointWorker`]: its bounded queue (deliveries handed over at
//! publish, and those it pulls from the store when it has room), then for each delivery
//! [`EndpointWorker::next_job`] (is it still ours to send, and to what configuration),
//! [`EndpointWorker::admit`] (flow control from `flow.rs`, the organization's request slot, room
//! to record the result) and [`EndpointWorker::send`] (one task per attempt).

use crate::admission::Room;
use crate::config::REQUEST_MARGIN_MS;
use crate::engine::Engine;
use crate::flow::{Flow, Gate, Pace, Signal};
use crate::outcome::{decide, without_request};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_core::time::Clock;
use switchyard_core::{DueDelivery, Endpoint, EndpointRef, Outcome};
use switchyard_fair::{FairPermit, Limit};
use switchyard_store::StoreError;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};

/// A delivery held in memory for an endpoint. Boxed: a queue slot is then a pointer, so what a
/// burst grew an endpoint's channel and queue to (the channel keeps its blocks while the worker
/// lives) costs 8 bytes per slot, not a whole delivery's size, on each of many endpoints.
pub(crate) type Queued = Box<DueDelivery>;

/// The engine's handle on one endpoint's worker.
pub(crate) struct Slot {
    pub(crate) tx: mpsc::UnboundedSender<Queued>,
    pub(crate) shared: Arc<Shared>,
}

/// What the engine, the worker and its attempts share.
pub struct Shared {
    /// Deliveries held in memory: in the channel and in the worker's pulled queue.
    pub(crate) room: Room,
    /// Deliveries of this endpoint may be due in the store: the worker pulls when it has room.
    /// While set, it counts as one outstanding unit of work (see [`Engine::until_idle`]).
    pub(crate) backlog: AtomicBool,
    /// Wakes the worker: work to pull, or an attempt finished.
    pub(crate) wake: Notify,
    flow: Mutex<Flow>,
}

impl Shared {
    /// Requests to the endpoint in flight.
    fn in_flight(&self) -> u32 {
        self.flow.lock().map_or(0, |f| f.in_flight())
    }

    /// Marks that the store may hold due deliveries for this endpoint; returns whether the
    /// mark is new (the caller counts it as outstanding work).
    pub(crate) fn mark_backlog(&self) -> bool {
        !self.backlog.swap(true, Ordering::SeqCst)
    }

    /// An attempt finished at `now` with `signal`; wakes the worker.
    fn finished(&self, signal: Signal, now: i64, max: u32) {
        if let Ok(mut f) = self.flow.lock() {
            f.finished(signal, now, max);
        }
        self.wake.notify_one();
    }

    /// A request let in by flow control did not start after all.
    fn left(&self) {
        if let Ok(mut f) = self.flow.lock() {
            f.left();
        }
        self.wake.notify_one();
    }
}

impl Engine {
    /// Starts the worker of `endpoint` and returns its slot.
    pub(crate) fn spawn_worker(&self, endpoint: EndpointRef) -> Slot {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            room: self.inner.admission.room_for(&endpoint.org_id),
            backlog: AtomicBool::new(false),
            wake: Notify::new(),
            flow: Mutex::new(Flow::default()),
        });
        let worker = EndpointWorker {
            engine: self.clone(),
            endpoint,
            rx,
            shared: shared.clone(),
            pulled: VecDeque::new(),
            pace: None,
            idle_since: Instant::now(),
        };
        tokio::spawn(worker.run());
        Slot { tx, shared }
    }

    pub(crate) async fn endpoint_config(
        &self,
        org: &OrgId,
        id: &EndpointId,
    ) -> Result<Arc<Endpoint>, StoreError> {
        let ttl = self.inner.config.endpoint_cache_ttl;
        if let Ok(c) = self.inner.configs.lock()
            && let Some((ep, at)) = c.get(id)
            && at.elapsed() < ttl
        {
            return Ok(ep.clone());
        }
        let ep = Arc::new(self.inner.store.get_endpoint(org, id).await?);
        if let Ok(mut c) = self.inner.configs.lock() {
            c.insert(id.clone(), (ep.clone(), Instant::now()));
        }
        Ok(ep)
    }
}

/// One endpoint's worker task.
struct EndpointWorker {
    engine: Engine,
    endpoint: EndpointRef,
    /// Deliveries handed over (at publish, by the poller).
    rx: mpsc::UnboundedReceiver<Queued>,
    shared: Arc<Shared>,
    /// Deliveries it claimed from the store itself.
    pulled: VecDeque<Queued>,
    /// Its `max_rps`, made on first use and again when the setting changes.
    pace: Option<Pace>,
    idle_since: Instant,
}

/// What a request waits for before it starts, noted for its attempt's `waited`.
struct Waited {
    since_ms: i64,
    why: Vec<&'static str>,
}

impl Waited {
    fn note(&mut self, why: &'static str) {
        if !self.why.contains(&why) {
            self.why.push(why);
        }
    }

    /// What the attempt reports: how long it waited behind its ordering key, then for what.
    fn describe(&self, now_ms: i64, ordering_wait_ms: Option<i64>) -> Option<String> {
        let waited = (!self.why.is_empty()).then(|| {
            let ms = now_ms.saturating_sub(self.since_ms).max(0);
            format!("{ms} ms: {}", self.why.join(", "))
        });
        match (ordering_wait_ms, waited) {
            (Some(ms), Some(w)) => Some(format!(
                "{ms} ms: ordering (behind the head of its key); then {w}"
            )),
            (Some(ms), None) => Some(format!("{ms} ms: ordering (behind the head of its key)")),
            (None, w) => w,
        }
    }
}

/// What a request holds from [`EndpointWorker::admit`] until its result is written.
struct Admitted {
    request_slot: FairPermit,
    record_slot: OwnedSemaphorePermit,
    waited: Option<String>,
}

impl EndpointWorker {
    async fn run(mut self) {
        while let Some((job, ep)) = self.next_job().await {
            match self.admit(&job, &ep).await {
                Some(admitted) => self.send(job, ep, admitted),
                None => self.engine.inner.recorder.release(job.delivery_id),
            }
        }
    }

    /// The next delivery to send and its endpoint's configuration; `None` when the worker ends
    /// (shutdown, the endpoint passed to another node, or idle), having handed back what it held.
    async fn next_job(&mut self) -> Option<(Queued, Arc<Endpoint>)> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        loop {
            let job = self.take().await?;
            self.shared.room.unhold(1);
            self.idle_since = Instant::now();
            if inner.clock.now_ms() + REQUEST_MARGIN_MS > job.lease_until {
                // Held too long: its claim may lapse mid-request. Another claim takes it.
                engine.done(1);
                continue;
            }
            if engine.is_yielding(&self.endpoint.endpoint_id) {
                // Being handed over: back to the queue, for `take` to hand back.
                self.shared.room.hold(1);
                self.pulled.push_front(job);
                continue;
            }
            if !engine.ensure_lease(&self.endpoint.endpoint_id).await {
                // The endpoint passed to another node: nothing more is sent from here.
                inner.recorder.release(job.delivery_id);
                self.leave_to_holder();
                return None;
            }
            match engine
                .endpoint_config(&self.endpoint.org_id, &self.endpoint.endpoint_id)
                .await
            {
                Ok(ep) if ep.enabled() => return Some((job, ep)),
                Ok(_) => {
                    // Kept, not failed: re-enabling the endpoint resumes it.
                    inner.recorder.release(job.delivery_id);
                    self.hand_back();
                }
                Err(StoreError::NotFound(_)) => {
                    let now = inner.clock.now_ms();
                    let why = "endpoint was deleted".into();
                    inner
                        .recorder
                        .result(without_request(&job, why, Outcome::Failed, now, 0.0), None);
                }
                Err(e) => {
                    // The store is unwell: leave the delivery claimed; it comes back after its lease.
                    tracing::error!(error = %e, endpoint = %self.endpoint.endpoint_id, "cannot load endpoint");
                    engine.done(1);
                }
            }
        }
    }

    /// The next delivery held in memory, pulling from the store while the endpoint has a
    /// backlog and waiting while it has none; `None` when the worker ends.
    async fn take(&mut self) -> Option<Queued> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        loop {
            if inner.cancel.is_cancelled() {
                self.hand_back();
                // A mark left unpulled is settled: the store keeps the deliveries.
                if self.shared.backlog.swap(false, Ordering::SeqCst) {
                    engine.done(1);
                }
                return None;
            }
            if engine.is_yielding(&self.endpoint.endpoint_id) {
                let max_rps = engine
                    .endpoint_config(&self.endpoint.org_id, &self.endpoint.endpoint_id)
                    .await
                    .is_ok_and(|ep| ep.max_rps().is_some());
                let shared = self.shared.clone();
                engine
                    .hand_over(&self.endpoint, max_rps, || shared.in_flight() > 0)
                    .await;
                self.leave_to_holder();
                return None;
            }
            if let Some(job) = self.pulled.pop_front().or_else(|| self.rx.try_recv().ok()) {
                return Some(job);
            }
            if self.shared.backlog.load(Ordering::SeqCst) {
                if !engine.ensure_lease(&self.endpoint.endpoint_id).await {
                    self.leave_to_holder();
                    return None;
                }
                if !self.pull().await {
                    // No room: the deliveries stay in the store (the mark too) until other
                    // endpoints drain.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = inner.cancel.cancelled() => {}
                    }
                }
                continue;
            }
            // Drained: give back what a burst grew the queue to.
            if self.pulled.capacity() > 64 {
                self.pulled.shrink_to(16);
            }
            let idle_for = inner
                .config
                .worker_idle
                .saturating_sub(self.idle_since.elapsed());
            let notified = self.shared.wake.notified();
            tokio::select! {
                _ = inner.cancel.cancelled() => {}
                next = self.rx.recv() => if let Some(job) = next {
                    self.pulled.push_back(job);
                },
                _ = notified => {}
                _ = tokio::time::sleep(idle_for) => {
                    let Ok(mut slots) = inner.slots.lock() else { return None };
                    let busy = self.shared.in_flight() > 0;
                    if self.rx.is_empty() && !busy && !self.shared.backlog.load(Ordering::SeqCst) {
                        slots.remove(&self.endpoint.endpoint_id);
                        return None;
                    }
                    self.idle_since = Instant::now();
                }
            }
        }
    }

    /// Claims due deliveries of the endpoint into `pulled`, a batch within its own room, its
    /// organization's and the engine's; returns `false` if there was no room to claim any.
    async fn pull(&mut self) -> bool {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        let batch = match engine
            .endpoint_config(&self.endpoint.org_id, &self.endpoint.endpoint_id)
            .await
        {
            Ok(ep) => (ep.max_in_flight().saturating_mul(4)).clamp(16, inner.config.claim_batch),
            Err(_) => 16,
        };
        let want = (batch as usize).min(inner.admission.pull_room(&self.shared.room));
        if want == 0 {
            return false;
        }
        // Take the room first (all endpoints pull at once), give back what the claim left.
        let took = inner.admission.take_total(want);
        if took == 0 {
            // No room: the mark stays, and the worker asks again shortly.
            return false;
        }
        if !self.shared.backlog.swap(false, Ordering::SeqCst) {
            inner.admission.return_total(took);
            return true;
        }
        let claimed = inner
            .store
            .claim_endpoint(
                &inner.config.node,
                &self.endpoint,
                inner.clock.now_ms(),
                took as u32,
                inner.config.lease_ms,
            )
            .await;
        let n = claimed.as_ref().map_or(0, Vec::len);
        // The store never answers more than asked; were it to, the total still adds up.
        if n <= took {
            inner.admission.return_total(took - n);
        } else {
            inner.admission.add_total(n - took);
        }
        match claimed {
            Ok(due) => {
                inner.admission.dispatched(n);
                self.shared.room.hold_taken(n);
                self.pulled.extend(due.into_iter().map(Box::new));
                if n >= took && self.shared.mark_backlog() {
                    // There may be more: keep the mark (and its unit of outstanding work).
                    inner.admission.dispatched(1);
                }
            }
            Err(e) => {
                if !matches!(e, StoreError::Closed) {
                    tracing::error!(error = %e, endpoint = %self.endpoint.endpoint_id, "claiming deliveries failed; the poller tries again");
                }
            }
        }
        // The mark taken above is settled.
        engine.done(1);
        true
    }

    /// Waits until `job` may be sent to `ep`: room in its flow-control window and no pause,
    /// its `max_rps` turn, its organization's request slot and room to record its result.
    /// `None` on shutdown (the caller hands the delivery back).
    async fn admit(&mut self, job: &DueDelivery, ep: &Endpoint) -> Option<Admitted> {
        let inner = &self.engine.inner;
        let cancel = &inner.cancel;
        let max = ep.max_in_flight().max(1);
        let mut waited = Waited {
            since_ms: inner.clock.now_ms(),
            why: Vec::new(),
        };
        loop {
            let now = inner.steady.now_ms();
            let notified = self.shared.wake.notified();
            let gate = match self.shared.flow.lock() {
                Ok(mut f) => f.enter(now, max),
                Err(_) => return None,
            };
            match gate {
                Gate::Open => break,
                Gate::Full => tokio::select! {
                    _ = notified => waited.note("max_in_flight"),
                    _ = cancel.cancelled() => return None,
                },
                Gate::PausedUntil(t) => {
                    let rest = Duration::from_millis(u64::try_from(t - now).unwrap_or(0));
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => waited.note("paused after a 429/503"),
                        _ = cancel.cancelled() => return None,
                    }
                }
            }
        }
        if let Some(rps) = ep.max_rps().and_then(NonZeroU32::new) {
            if self.pace.as_ref().is_none_or(|p| p.rps() != rps.get()) {
                self.pace = Some(Pace::new(rps, inner.steady.clone()));
            }
            while let Some(wait) = self.pace.as_ref().and_then(Pace::turn) {
                waited.note("max_rps");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
        // The organization's turn for a request slot, within its share.
        let org = &self.endpoint.org_id;
        let request_slot = match inner.request_slots.try_acquire(org, 1) {
            Ok(p) => Some(p),
            Err(refused) => {
                waited.note(match refused.limit {
                    Limit::Share => "the organization's share of requests in flight",
                    Limit::Hub => "the hub-wide request limit",
                });
                tokio::select! {
                    p = inner.request_slots.acquire(org, 1, None) => p.ok(),
                    _ = cancel.cancelled() => None,
                }
            }
        };
        // Backpressure: a result waits in memory until the store has written it, and at
        // most `max_unrecorded` do; beyond, no new request starts.
        let record_slot = match inner.record_slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                waited.note("results not yet written");
                tokio::select! {
                    p = inner.record_slots.clone().acquire_owned() => p.ok(),
                    _ = cancel.cancelled() => None,
                }
            }
        };
        match (request_slot, record_slot) {
            (Some(request_slot), Some(record_slot)) if !cancel.is_cancelled() => Some(Admitted {
                request_slot,
                record_slot,
                waited: waited.describe(inner.clock.now_ms(), job.ordering_wait_ms),
            }),
            _ => {
                self.shared.left();
                None
            }
        }
    }

    /// Starts the attempt of `job` to `ep` as a task of its own; its result goes to the
    /// recorder, its signal to flow control.
    fn send(&self, job: Queued, ep: Arc<Endpoint>, admitted: Admitted) {
        let engine = self.engine.clone();
        let shared = self.shared.clone();
        let max = ep.max_in_flight().max(1);
        // Every line the attempt logs names its organization, delivery, endpoint and event.
        let span = tracing::info_span!("attempt", org = %job.org_id, delivery = %job.delivery_id,
            endpoint = %ep.id, event = %job.event.id);
        self.engine
            .inner
            .tasks
            .spawn(tracing::Instrument::instrument(
                async move {
                    let inner = &engine.inner;
                    let at = inner.clock.now_ms();
                    let resp = crate::http::send(&inner.clients, &ep, &job.event, at).await;
                    drop(admitted.request_slot);
                    let signal = Signal::of(resp.status, resp.retry_after_s);
                    let mut result = decide(&ep, &job, resp, || engine.jitter());
                    result.attempt.waited = admitted.waited;
                    inner.recorder.result(result, Some(admitted.record_slot));
                    shared.finished(signal, inner.steady.now_ms(), max);
                },
                span,
            ));
    }

    /// Hands back every delivery held in memory (shutdown, or the endpoint is disabled).
    fn hand_back(&mut self) {
        while let Some(job) = self.pulled.pop_front().or_else(|| self.rx.try_recv().ok()) {
            self.shared.room.unhold(1);
            self.engine.inner.recorder.release(job.delivery_id);
        }
    }

    /// Ends the worker because another node holds the endpoint's lease: hands back what it
    /// holds and leaves the endpoint to that node.
    fn leave_to_holder(&mut self) {
        // Out of the map first: whatever is dispatched from now on starts a new worker.
        if let Ok(mut slots) = self.engine.inner.slots.lock()
            && slots
                .get(&self.endpoint.endpoint_id)
                .is_some_and(|s| Arc::ptr_eq(&s.shared, &self.shared))
        {
            slots.remove(&self.endpoint.endpoint_id);
        }
        self.hand_back();
        if self.shared.backlog.swap(false, Ordering::SeqCst) {
            self.engine.done(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waited;

    #[test]
    fn an_attempt_says_what_it_waited_for() {
        let mut w = Waited {
            since_ms: 1_000,
            why: Vec::new(),
        };
        assert_eq!(w.describe(1_500, None), None);
        assert_eq!(
            w.describe(1_500, Some(20)).as_deref(),
            Some("20 ms: ordering (behind the head of its key)")
        );
        w.note("max_in_flight");
        w.note("max_rps");
        w.note("max_in_flight");
        assert_eq!(
            w.describe(1_250, None).as_deref(),
            Some("250 ms: max_in_flight, max_rps")
        );
        assert_eq!(
            w.describe(1_250, Some(7)).as_deref(),
            Some(
                "7 ms: ordering (behind the head of its key); then 250 ms: max_in_flight, max_rps"
            )
        );
    }
}
