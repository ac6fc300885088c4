//! One worker per endpoint: its bounded queue (deliveries handed over at publish, and those it
//! pulls from the store when it has room), its flow control (`max_in_flight`, `max_rps`, and
//! slowing down when the receiver answers 429 or 503), one task per attempt.

use crate::config::REQUEST_MARGIN_MS;
use crate::engine::Engine;
use crate::outcome::{decide, without_request};
use crate::recorder::Msg;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_core::{DueDelivery, Endpoint, EndpointRef, Outcome};
use switchyard_fair::Limit;
use switchyard_store::StoreError;
use tokio::sync::{Notify, mpsc};

/// The longest pause a 429 or 503 without `Retry-After` causes.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest pause a receiver's `Retry-After` can impose on its endpoint.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

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
    queued: AtomicUsize,
    /// The same, summed over every endpoint.
    total: Arc<AtomicUsize>,
    /// The same, summed over its organization's endpoints.
    org: Arc<AtomicUsize>,
    /// How many its organization may hold (limit `queued`), as of the worker's start.
    org_limit: usize,
    /// Deliveries of this endpoint may be due in the store: the worker pulls when it has room.
    /// While set, it counts as one outstanding unit of work (see [`Engine::until_idle`]).
    pub(crate) backlog: AtomicBool,
    /// Wakes the worker: work to pull, or an attempt finished.
    pub(crate) wake: Notify,
    flow: Mutex<Flow>,
}

/// Flow control: how many requests may be in flight now, and until when the endpoint rests.
struct Flow {
    in_flight: u32,
    /// The congestion window: at most `max_in_flight`, halved on every 429/503, grown by one
    /// per window of successes (additive increase, multiplicative decrease).
    window: f64,
    paused_until: Option<Instant>,
    /// Pauses in a row without `Retry-After`: each doubles the last.
    backoff: u32,
}

/// What an attempt tells flow control.
enum Signal {
    Answered,
    /// 429 or 503, with the receiver's `Retry-After` if it sent one.
    Throttled(Option<Duration>),
}

impl Shared {
    /// Deliveries held in memory by this endpoint.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests to the endpoint in flight.
    fn in_flight(&self) -> u32 {
        self.flow.lock().map_or(0, |f| f.in_flight)
    }

    /// How many more deliveries its organization may hold in memory.
    pub(crate) fn org_room(&self) -> usize {
        self.org_limit
            .saturating_sub(self.org.load(Ordering::Relaxed))
    }

    pub(crate) fn hold(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        self.org.fetch_add(n, Ordering::Relaxed);
    }

    /// Like [`Shared::hold`] for deliveries whose room in the total was already taken.
    fn hold_taken(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.org.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn unhold(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.org.fetch_sub(n, Ordering::Relaxed);
    }

    /// Marks that the store may hold due deliveries for this endpoint; returns whether the
    /// mark is new (the caller counts it as outstanding work).
    pub(crate) fn mark_backlog(&self) -> bool {
        !self.backlog.swap(true, Ordering::SeqCst)
    }

    fn finished(&self, signal: Signal, max: u32) {
        if let Ok(mut f) = self.flow.lock() {
            f.in_flight = f.in_flight.saturating_sub(1);
            match signal {
                Signal::Answered => {
                    f.backoff = 0;
                    f.window = (f.window + 1.0 / f.window.max(1.0)).min(max as f64);
                }
                Signal::Throttled(retry_after) => {
                    f.window = (f.window / 2.0).max(1.0);
                    let pause = retry_after.map(|r| r.min(MAX_PAUSE)).unwrap_or_else(|| {
                        f.backoff = (f.backoff + 1).min(7);
                        (Duration::from_millis(500) * 2u32.pow(f.backoff - 1)).min(MAX_BACKOFF)
                    });
                    let until = Instant::now() + pause;
                    f.paused_until = Some(f.paused_until.map_or(until, |p| p.max(until)));
                }
            }
        }
        self.wake.notify_one();
    }
}

/// Why the worker cannot start a request yet.
enum Gate {
    Open,
    Full,
    PausedUntil(Instant),
}

impl Engine {
    /// Starts the worker of `endpoint` and returns its slot.
    pub(crate) fn spawn_worker(&self, endpoint: EndpointRef) -> Slot {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            total: self.inner.queued_total.clone(),
            org: self.org_queued(&endpoint.org_id),
            org_limit: self.org_queued_limit(&endpoint.org_id),
            backlog: AtomicBool::new(false),
            wake: Notify::new(),
            flow: Mutex::new(Flow {
                in_flight: 0,
                window: f64::MAX,
                paused_until: None,
                backoff: 0,
            }),
        });
        tokio::spawn(self.clone().endpoint_worker(endpoint, rx, shared.clone()));
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

    /// Hands back every delivery held in memory (shutdown, or the endpoint is disabled).
    fn hand_back(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Queued>,
        pulled: &mut VecDeque<Queued>,
        shared: &Shared,
    ) {
        while let Some(job) = pulled.pop_front().or_else(|| rx.try_recv().ok()) {
            shared.unhold(1);
            let _ = self.inner.recorder.send(Msg::Release(job.delivery_id));
        }
    }

    /// Ends the worker because another node holds the endpoint's lease: hands back what it
    /// holds and leaves the endpoint to that node.
    fn leave_to_holder(
        &self,
        endpoint: &EndpointRef,
        rx: &mut mpsc::UnboundedReceiver<Queued>,
        pulled: &mut VecDeque<Queued>,
        shared: &Arc<Shared>,
    ) {
        // Out of the map first: whatever is dispatched from now on starts a new worker.
        if let Ok(mut slots) = self.inner.slots.lock()
            && slots
                .get(&endpoint.endpoint_id)
                .is_some_and(|s| Arc::ptr_eq(&s.shared, shared))
        {
            slots.remove(&endpoint.endpoint_id);
        }
        self.hand_back(rx, pulled, shared);
        if shared.backlog.swap(false, Ordering::SeqCst) {
            self.done(1);
        }
    }

    /// Claims due deliveries of the endpoint into `pulled`, at most `limit` and never past
    /// `max_queued_total`; returns `false` if there was no room to claim any.
    async fn pull(
        &self,
        endpoint: &EndpointRef,
        pulled: &mut VecDeque<Queued>,
        shared: &Shared,
        limit: u32,
    ) -> bool {
        let inner = &self.inner;
        // Within the organization's room (its endpoints may pull at once and pass it by a
        // batch at most).
        let limit = limit.min(u32::try_from(shared.org_room()).unwrap_or(u32::MAX));
        if limit == 0 {
            return false;
        }
        // Take the room first (all endpoints pull at once), give back what the claim left.
        let mut took = 0usize;
        let _ = inner
            .queued_total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |total| {
                took = inner
                    .config
                    .max_queued_total
                    .saturating_sub(total)
                    .min(limit as usize);
                (took > 0).then_some(total + took)
            });
        if took == 0 {
            // No room: the mark stays, and the worker asks again shortly.
            return false;
        }
        if !shared.backlog.swap(false, Ordering::SeqCst) {
            inner.queued_total.fetch_sub(took, Ordering::SeqCst);
            return true;
        }
        let claimed = inner
            .store
            .claim_endpoint(
                &inner.config.node,
                endpoint,
                inner.clock.now_ms(),
                took as u32,
                inner.config.lease_ms,
            )
            .await;
        let n = claimed.as_ref().map_or(0, Vec::len);
        // The store never answers more than asked; were it to, the total still adds up.
        if n <= took {
            inner.queued_total.fetch_sub(took - n, Ordering::SeqCst);
        } else {
            inner.queued_total.fetch_add(n - took, Ordering::SeqCst);
        }
        match claimed {
            Ok(due) => {
                inner.outstanding.fetch_add(n, Ordering::SeqCst);
                shared.hold_taken(n);
                pulled.extend(due.into_iter().map(Box::new));
                if n >= took && shared.mark_backlog() {
                    // There may be more: keep the mark (and its unit of outstanding work).
                    inner.outstanding.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                if !matches!(e, StoreError::Closed) {
                    tracing::error!(error = %e, endpoint = %endpoint.endpoint_id, "claiming deliveries failed; the poller tries again");
                }
            }
        }
        // The mark taken above is settled.
        self.done(1);
        true
    }

    async fn endpoint_worker(
        self,
        endpoint: EndpointRef,
        mut rx: mpsc::UnboundedReceiver<Queued>,
        shared: Arc<Shared>,
    ) {
        let inner = self.inner.clone();
        let mut pulled: VecDeque<Queued> = VecDeque::new();
        let mut limiter: Option<(u32, DefaultDirectRateLimiter)> = None;
        let mut idle_since = Instant::now();
        loop {
            if inner.cancel.is_cancelled() {
                self.hand_back(&mut rx, &mut pulled, &shared);
                // A mark left unpulled is settled: the store keeps the deliveries.
                if shared.backlog.swap(false, Ordering::SeqCst) {
                    self.done(1);
                }
                return;
            }
            if self.is_yielding(&endpoint.endpoint_id) {
                let max_rps = self
                    .endpoint_config(&endpoint.org_id, &endpoint.endpoint_id)
                    .await
                    .is_ok_and(|ep| ep.max_rps.is_some());
                self.hand_over(&endpoint, max_rps, || shared.in_flight() > 0)
                    .await;
                self.leave_to_holder(&endpoint, &mut rx, &mut pulled, &shared);
                return;
            }
            let job = match pulled.pop_front().or_else(|| rx.try_recv().ok()) {
                Some(job) => job,
                None if shared.backlog.load(Ordering::SeqCst) => {
                    if !self.ensure_lease(&endpoint.endpoint_id).await {
                        self.leave_to_holder(&endpoint, &mut rx, &mut pulled, &shared);
                        return;
                    }
                    let limit = match self
                        .endpoint_config(&endpoint.org_id, &endpoint.endpoint_id)
                        .await
                    {
                        Ok(ep) => {
                            (ep.max_in_flight.saturating_mul(4)).clamp(16, inner.config.claim_batch)
                        }
                        Err(_) => 16,
                    };
                    // Never past the engine's memory bounds: without room, the deliveries
                    // stay in the store (the mark stays too) until other endpoints drain.
                    let room = inner
                        .config
                        .max_queued_per_endpoint
                        .saturating_sub(shared.queued());
                    let tried = room > 0
                        && self
                            .pull(&endpoint, &mut pulled, &shared, limit.min(room as u32))
                            .await;
                    if !tried {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                            _ = inner.cancel.cancelled() => {}
                        }
                    }
                    continue;
                }
                None => {
                    // Drained: give back what a burst grew the queue to.
                    if pulled.capacity() > 64 {
                        pulled.shrink_to(16);
                    }
                    let idle_for = inner
                        .config
                        .worker_idle
                        .saturating_sub(idle_since.elapsed());
                    let notified = shared.wake.notified();
                    tokio::select! {
                        _ = inner.cancel.cancelled() => {}
                        next = rx.recv() => if let Some(job) = next {
                            pulled.push_back(job);
                        },
                        _ = notified => {}
                        _ = tokio::time::sleep(idle_for) => {
                            let Ok(mut slots) = inner.slots.lock() else { return };
                            let busy = shared.flow.lock().map(|f| f.in_flight > 0).unwrap_or(false);
                            if rx.is_empty() && !busy && !shared.backlog.load(Ordering::SeqCst) {
                                slots.remove(&endpoint.endpoint_id);
                                return;
                            }
                            idle_since = Instant::now();
                        }
                    }
                    continue;
                }
            };
            shared.unhold(1);
            idle_since = Instant::now();
            if inner.clock.now_ms() + REQUEST_MARGIN_MS > job.lease_until {
                // Held too long: its claim may lapse mid-request. Another claim takes it.
                self.done(1);
                continue;
            }
            if self.is_yielding(&endpoint.endpoint_id) {
                // Being handed over: back to the queue, for the top of the loop to hand back.
                shared.hold(1);
                pulled.push_front(job);
                continue;
            }
            if !self.ensure_lease(&endpoint.endpoint_id).await {
                // The endpoint passed to another node: nothing more is sent from here.
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                self.leave_to_holder(&endpoint, &mut rx, &mut pulled, &shared);
                return;
            }
            let ep = match self
                .endpoint_config(&endpoint.org_id, &endpoint.endpoint_id)
                .await
            {
                Ok(ep) => ep,
                Err(StoreError::NotFound(_)) => {
                    let now = inner.clock.now_ms();
                    let result =
                        without_request(&job, "endpoint was deleted".into(), Outcome::Failed, now);
                    let _ = inner.recorder.send(Msg::Result(result, None));
                    continue;
                }
                Err(e) => {
                    // The store is unwell: leave the delivery claimed; it comes back after its lease.
                    tracing::error!(error = %e, endpoint = %endpoint.endpoint_id, "cannot load endpoint");
                    self.done(1);
                    continue;
                }
            };
            if !ep.enabled {
                // Kept, not failed: re-enabling the endpoint resumes it.
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                self.hand_back(&mut rx, &mut pulled, &shared);
                continue;
            }
            // Flow control: wait for room in the window and for any pause to end.
            let max = ep.max_in_flight.max(1);
            let due_at = Instant::now();
            let mut held: Vec<&str> = Vec::new();
            let mut hold = |why: &'static str| {
                if !held.contains(&why) {
                    held.push(why);
                }
            };
            let admitted = loop {
                let gate = match shared.flow.lock() {
                    Ok(mut f) => {
                        f.window = f.window.min(max as f64);
                        match f.paused_until {
                            Some(t) if t > Instant::now() => Gate::PausedUntil(t),
                            _ if f.in_flight >= (f.window as u32).max(1) => Gate::Full,
                            _ => {
                                f.paused_until = None;
                                f.in_flight += 1;
                                Gate::Open
                            }
                        }
                    }
                    Err(_) => return,
                };
                let notified = shared.wake.notified();
                match gate {
                    Gate::Open => break true,
                    Gate::Full => tokio::select! {
                        _ = notified => hold("max_in_flight"),
                        _ = inner.cancel.cancelled() => break false,
                    },
                    Gate::PausedUntil(t) => tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => hold("paused after a 429/503"),
                        _ = inner.cancel.cancelled() => break false,
                    },
                }
            };
            if !admitted {
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            if let Some(rps) = ep.max_rps.and_then(NonZeroU32::new) {
                let lim = match &limiter {
                    Some((r, l)) if *r == rps.get() => l,
                    _ => {
                        let l = RateLimiter::direct(
                            Quota::per_second(rps).allow_burst(NonZeroU32::MIN),
                        );
                        &limiter.insert((rps.get(), l)).1
                    }
                };
                while let Err(not_until) = lim.check() {
                    hold("max_rps");
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = inner.cancel.cancelled() => break,
                    }
                }
            }
            // The organization's turn for a request slot, within its share.
            let org = &endpoint.org_id;
            let request_slot = match inner.request_slots.try_acquire(org, 1) {
                Ok(p) => Some(p),
                Err(refused) => {
                    hold(match refused.limit {
                        Limit::Share => "the organization's share of requests in flight",
                        Limit::Hub => "the hub-wide request limit",
                    });
                    tokio::select! {
                        p = inner.request_slots.acquire(org, 1, None) => p.ok(),
                        _ = inner.cancel.cancelled() => None,
                    }
                }
            };
            // Backpressure: a result waits in memory until the store has written it, and at
            // most `max_unrecorded` do; beyond, no new request starts.
            let record_slot = match inner.record_slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    hold("results not yet written");
                    tokio::select! {
                        p = inner.record_slots.clone().acquire_owned() => p.ok(),
                        _ = inner.cancel.cancelled() => None,
                    }
                }
            };
            if inner.cancel.is_cancelled() || request_slot.is_none() || record_slot.is_none() {
                shared.finished(Signal::Answered, max);
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            let mut waited = (!held.is_empty())
                .then(|| format!("{} ms: {}", due_at.elapsed().as_millis(), held.join(", ")));
            if let Some(ms) = job.ordering_wait_ms {
                let behind = format!("{ms} ms: ordering (behind the head of its key)");
                waited = Some(match waited {
                    Some(w) => format!("{behind}; then {w}"),
                    None => behind,
                });
            }
            let this = self.clone();
            let shared = shared.clone();
            // Every line the attempt logs names its organization, delivery, endpoint and event.
            let span = tracing::info_span!("attempt", org = %job.org_id, delivery = %job.delivery_id,
                endpoint = %ep.id, event = %job.event.id);
            inner.tasks.spawn(tracing::Instrument::instrument(
                async move {
                    let at = this.inner.clock.now_ms();
                    let resp = crate::http::send(&this.inner.clients, &ep, &job.event, at).await;
                    drop(request_slot);
                    let signal = match resp.status {
                        Some(429 | 503) => {
                            Signal::Throttled(resp.retry_after_s.map(Duration::from_secs))
                        }
                        _ => Signal::Answered,
                    };
                    let mut result = decide(&ep, &job, resp, || this.jitter());
                    result.attempt.waited = waited;
                    let _ = this.inner.recorder.send(Msg::Result(result, record_slot));
                    shared.finished(signal, max);
                },
                span,
            ));
        }
    }
}
