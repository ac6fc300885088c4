//! The delivery engine: takes due deliveries, makes signed HTTP attempts, records the outcomes.
//!
//! Shape of the machine:
//! - **Sources of work.** New deliveries arrive straight from a publish, already claimed for this
//!   node in the publishing transaction ([`Engine::dispatch`]); retries and anything handed back
//!   come from the store, claimed in batches by the poller.
//! - **One queue per endpoint.** Each endpoint gets a worker task with its own queue and at most
//!   `max_in_flight` concurrent requests, so a slow or dead endpoint fills only its own queue
//!   and never holds back deliveries to healthy ones.
//! - **One recorder.** Attempt results go to a single task that writes them in batches (one
//!   store call, one commit, for many attempts), then emits `switchyard.endpoint.disabled` for
//!   endpoints that an attempt disabled.
//! - **Event hooks.** Deliveries to an executor run through the [`HookRunner`] the binary plugs
//!   in, on their own concurrency limit, so a slow or stuck executor never delays webhooks.
//! - **Shutdown** stops taking work, hands queued deliveries back to the store (they become due
//!   at once), waits a grace period for requests in flight and records their results.

pub mod http;
pub mod profile;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::hooks::HookRunner;
use switchyard_core::ids::new_id;
use switchyard_core::retry::{Next, next_after_failure};
use switchyard_core::time::now_ms;
use switchyard_core::{
    Attempt, AttemptResult, DueDelivery, Endpoint, EntityRef, NewEvent, Outcome, Target,
};
use switchyard_egress::Clients;
use switchyard_store::{DEFAULT_LEASE_MS, Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// Type of the event emitted when an endpoint is disabled.
pub const ENDPOINT_DISABLED: &str = "switchyard.endpoint.disabled";

/// Deliveries an endpoint may have queued in memory; beyond this they stay in the store (still
/// claimed) and come back through the poller when their lease runs out.
const MAX_QUEUED_PER_ENDPOINT: usize = 20_000;
/// How long a cached endpoint configuration is trusted without asking the store again.
const CONFIG_TTL: Duration = Duration::from_secs(5);
/// An idle endpoint worker exits after this long.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// Event hooks running at once; beyond this they wait (webhooks are not affected).
const MAX_HOOKS_IN_FLIGHT: usize = 8;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's id; claims carry it.
    pub node: String,
    /// How often the poller looks for due retries when nothing wakes it.
    pub poll_interval: Duration,
    /// Deliveries claimed per poll.
    pub claim_batch: u32,
}

// Nearly every message is a result: boxing it would cost an allocation per attempt.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Result(AttemptResult),
    Release(String),
    Flush(oneshot::Sender<()>),
}

/// What an endpoint worker's queue carries.
enum Work {
    Deliver(DueDelivery),
    /// Shutdown started: wake up and hand back what is queued.
    Stop,
}

struct Slot {
    tx: mpsc::UnboundedSender<Work>,
    queued: Arc<AtomicUsize>,
}

/// The delivery engine. Cheap to clone; all clones drive the same machine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: EngineConfig,
    clients: Clients,
    /// Per-endpoint queues, created on first use and removed by their idle worker.
    slots: Mutex<HashMap<String, Slot>>,
    /// Endpoint configurations, dropped on change and refreshed after [`CONFIG_TTL`].
    configs: Mutex<HashMap<String, (Arc<Endpoint>, Instant)>>,
    recorder: mpsc::UnboundedSender<Msg>,
    /// Wakes the poller early (a replay or retry made work due now).
    wake: Notify,
    /// Set once shutdown starts: no new attempts begin.
    stopping: AtomicBool,
    /// Attempts whose request is under way; shutdown waits for it to reach zero.
    in_flight: AtomicUsize,
    idle: Notify,
    /// Runs event hooks (deliveries whose target is an executor); given at start-up.
    hooks: Option<Arc<dyn HookRunner>>,
    hook_slots: Arc<Semaphore>,
}

impl Engine {
    /// Builds the engine and starts its poller and recorder tasks. `clients` are the hub's
    /// guarded HTTP clients; `hooks` runs deliveries whose target is an executor (without it they
    /// fail as "no executor runner").
    pub fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clients: Clients,
        hooks: Option<Arc<dyn HookRunner>>,
    ) -> Engine {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            clients,
            store,
            config,
            slots: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            recorder: tx,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            hooks,
            hook_slots: Arc::new(Semaphore::new(MAX_HOOKS_IN_FLIGHT)),
        });
        let engine = Engine { inner };
        tokio::spawn(engine.clone().recorder(rx));
        tokio::spawn(engine.clone().poller());
        engine
    }

    /// The guarded HTTP clients the engine delivers with (their URL check is the API's too).
    pub fn clients(&self) -> &Clients {
        &self.inner.clients
    }

    /// Queues deliveries that this node has claimed.
    pub fn dispatch(&self, deliveries: Vec<DueDelivery>) {
        if deliveries.is_empty() {
            return;
        }
        let Ok(mut slots) = self.inner.slots.lock() else {
            return;
        };
        for d in deliveries {
            if self.inner.stopping.load(Ordering::Relaxed) {
                let _ = self.inner.recorder.send(Msg::Release(d.delivery_id));
                continue;
            }
            let endpoint_id = match &d.target {
                Target::Endpoint(id) => id.clone(),
                Target::Executor(name) => {
                    let name = name.clone();
                    tokio::spawn(self.clone().run_hook(d, name));
                    continue;
                }
            };
            let slot = slots.entry(endpoint_id.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let queued = Arc::new(AtomicUsize::new(0));
                tokio::spawn(self.clone().endpoint_worker(
                    endpoint_id.clone(),
                    d.org_id.clone(),
                    rx,
                    queued.clone(),
                ));
                Slot { tx, queued }
            });
            if slot.queued.load(Ordering::Relaxed) >= MAX_QUEUED_PER_ENDPOINT {
                // Left claimed in the store; the poller brings it back when the lease ends.
                metrics::counter!("switchyard_deliveries_deferred_total").increment(1);
                continue;
            }
            slot.queued.fetch_add(1, Ordering::Relaxed);
            let _ = slot.tx.send(Work::Deliver(d));
        }
    }

    /// Forgets the cached configuration of an endpoint (it was changed or deleted).
    pub fn endpoint_changed(&self, endpoint_id: &str) {
        if let Ok(mut c) = self.inner.configs.lock() {
            c.remove(endpoint_id);
        }
    }

    /// Makes the poller look for due deliveries now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops taking work, hands queued deliveries back, waits up to `grace` for requests in
    /// flight and records every result that came in.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        // Wake idle workers so they hand back what is queued.
        if let Ok(slots) = self.inner.slots.lock() {
            for slot in slots.values() {
                let _ = slot.tx.send(Work::Stop);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            if tokio::time::timeout_at(deadline, self.inner.idle.notified())
                .await
                .is_err()
            {
                tracing::warn!(
                    in_flight = self.inner.in_flight.load(Ordering::SeqCst),
                    "grace period over; unfinished deliveries resume at next start"
                );
                break;
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.recorder.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }

    async fn poller(self) {
        let inner = &self.inner;
        loop {
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            let batch = inner.config.claim_batch;
            match inner
                .store
                .claim_due(&inner.config.node, now_ms(), batch, DEFAULT_LEASE_MS)
                .await
            {
                Ok(due) => {
                    let full = due.len() as u32 >= batch;
                    self.dispatch(due);
                    if full {
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => tracing::error!(error = %e, "claiming due deliveries failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.config.poll_interval) => {}
                _ = inner.wake.notified() => {}
            }
        }
    }

    async fn endpoint_config(&self, org: &str, id: &str) -> Result<Arc<Endpoint>, StoreError> {
        if let Ok(c) = self.inner.configs.lock()
            && let Some((ep, at)) = c.get(id)
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(ep.clone());
        }
        let ep = Arc::new(self.inner.store.get_endpoint(org, id).await?);
        if let Ok(mut c) = self.inner.configs.lock() {
            c.insert(id.to_string(), (ep.clone(), Instant::now()));
        }
        Ok(ep)
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
            let job = match tokio::time::timeout(WORKER_IDLE, rx.recv()).await {
                Ok(Some(Work::Deliver(job))) => job,
                Ok(Some(Work::Stop)) => continue,
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
            if inner.stopping.load(Ordering::SeqCst) {
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            let ep = match self.endpoint_config(&org, &endpoint_id).await {
                Ok(ep) => ep,
                Err(StoreError::NotFound) => {
                    self.finish_without_request(
                        &job,
                        "endpoint was deleted".into(),
                        Outcome::Failed,
                    );
                    continue;
                }
                Err(e) => {
                    // The store is unwell: leave the delivery claimed; it comes back after its lease.
                    tracing::error!(error = %e, endpoint_id, "cannot load endpoint");
                    continue;
                }
            };
            if !ep.enabled {
                let why = format!(
                    "endpoint is disabled: {}",
                    ep.disabled_reason.as_deref().unwrap_or("by its owner")
                );
                self.finish_without_request(&job, why, Outcome::Failed);
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
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            if let Some(rps) = ep.max_rps.filter(|r| *r > 0) {
                let now = tokio::time::Instant::now();
                next_slot = next_slot.max(now);
                tokio::time::sleep_until(next_slot).await;
                next_slot += Duration::from_secs(1) / rps;
            }
            if inner.stopping.load(Ordering::SeqCst) {
                let _ = inner.recorder.send(Msg::Release(job.delivery_id));
                continue;
            }
            inner.in_flight.fetch_add(1, Ordering::SeqCst);
            let this = self.clone();
            tokio::spawn(async move {
                let resp = http::send(&this.inner.clients, &ep, &job.event).await;
                drop(permit);
                let result = decide(&ep, &job, resp);
                let _ = this.inner.recorder.send(Msg::Result(result));
                if this.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    this.inner.idle.notify_waiters();
                }
            });
        }
    }

    /// Runs an event hook and records it as an attempt of its delivery.
    async fn run_hook(self, job: DueDelivery, executor: String) {
        let inner = self.inner.clone();
        let Ok(permit) = inner.hook_slots.clone().acquire_owned().await else {
            return;
        };
        if inner.stopping.load(Ordering::SeqCst) {
            let _ = inner.recorder.send(Msg::Release(job.delivery_id));
            return;
        }
        let Some(runner) = inner.hooks.clone() else {
            tracing::error!("an event hook is due but no hook runner is plugged in");
            return;
        };
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let at = now_ms();
        let result = runner.run_hook(&job.org_id, &executor, &job.event).await;
        drop(permit);
        let outcome = if result.error.is_none() {
            Outcome::Delivered
        } else if result.permanent {
            Outcome::Failed
        } else {
            let schedule: Vec<u32> = match result.retries {
                Some(n) => switchyard_core::retry::DEFAULT_SCHEDULE_S
                    .iter()
                    .copied()
                    .take(n as usize)
                    .collect(),
                None => switchyard_core::retry::DEFAULT_SCHEDULE_S.to_vec(),
            };
            match next_after_failure(&schedule, job.attempts + 1, None) {
                Next::RetryInMs(ms) => Outcome::Retry {
                    at: now_ms() + ms as i64,
                },
                Next::GiveUp => Outcome::Failed,
            }
        };
        let attempt = AttemptResult {
            org_id: job.org_id.clone(),
            endpoint_id: None,
            delivery_id: job.delivery_id.clone(),
            attempt: Attempt {
                id: new_id("att"),
                delivery_id: job.delivery_id.clone(),
                at,
                status_code: None,
                duration_ms: result.duration_ms,
                error: result.error,
                response_body: result.run_id.map(|id| format!("run {id}")),
            },
            outcome,
            disable_endpoint: None,
        };
        let _ = inner.recorder.send(Msg::Result(attempt));
        if inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            inner.idle.notify_waiters();
        }
    }

    fn finish_without_request(&self, job: &DueDelivery, why: String, outcome: Outcome) {
        let result = AttemptResult {
            org_id: job.org_id.clone(),
            endpoint_id: job.target.endpoint_id().map(str::to_string),
            delivery_id: job.delivery_id.clone(),
            attempt: Attempt {
                id: new_id("att"),
                delivery_id: job.delivery_id.clone(),
                at: now_ms(),
                status_code: None,
                duration_ms: 0.0,
                error: Some(why),
                response_body: None,
            },
            outcome,
            disable_endpoint: None,
        };
        let _ = self.inner.recorder.send(Msg::Result(result));
    }

    async fn recorder(self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let inner = &self.inner;
        let mut buf = Vec::with_capacity(1024);
        while rx.recv_many(&mut buf, 4096).await > 0 {
            let mut results = Vec::new();
            let mut releases = Vec::new();
            let mut flushes = Vec::new();
            for m in buf.drain(..) {
                match m {
                    Msg::Result(result) => results.push(result),
                    Msg::Release(id) => releases.push(id),
                    Msg::Flush(tx) => flushes.push(tx),
                }
            }
            if !results.is_empty() {
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
                }
                match inner.store.record_attempts(results).await {
                    Ok(disabled) => {
                        for d in disabled {
                            self.endpoint_changed(&d.endpoint_id);
                            self.emit_disabled(&d.org_id, &d.endpoint_id).await;
                        }
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
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    async fn emit_disabled(&self, org: &str, endpoint_id: &str) {
        let ep = self.inner.store.get_endpoint(org, endpoint_id).await.ok();
        let event = NewEvent {
            id: new_id("evt"),
            event_type: ENDPOINT_DISABLED.to_string(),
            timestamp: now_ms(),
            entity: EntityRef {
                kind: Some("Endpoint".into()),
                id: Some(endpoint_id.to_string()),
            },
            data: serde_json::json!({
                "endpoint_id": endpoint_id,
                "url": ep.as_ref().map(|e| e.url.clone()),
                "reason": ep.as_ref().and_then(|e| e.disabled_reason.clone()),
            }),
        };
        tracing::warn!(org, endpoint_id, "endpoint disabled");
        match self
            .inner
            .store
            .publish(org, vec![event], &self.inner.config.node)
            .await
        {
            Ok(published) => {
                for p in published {
                    self.dispatch(p.new_deliveries);
                }
            }
            Err(e) => tracing::error!(error = %e, "emitting {ENDPOINT_DISABLED} failed"),
        }
    }
}

/// Turns an HTTP response into the delivery's next state.
fn decide(ep: &Endpoint, job: &DueDelivery, resp: http::Response) -> AttemptResult {
    let status = resp.status;
    let success = status.is_some_and(|s| (200..300).contains(&s));
    let mut disable = None;
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
        match next_after_failure(ep.schedule(), job.attempts + 1, retry_after) {
            Next::RetryInMs(ms) => Outcome::Retry {
                at: resp.at + ms as i64,
            },
            Next::GiveUp => Outcome::Failed,
        }
    };
    AttemptResult {
        org_id: job.org_id.clone(),
        endpoint_id: Some(ep.id.clone()),
        delivery_id: job.delivery_id.clone(),
        attempt: Attempt {
            id: new_id("att"),
            delivery_id: job.delivery_id.clone(),
            at: resp.at,
            status_code: status,
            duration_ms: resp.duration_ms,
            error: if success { None } else { resp.error },
            response_body: resp.body,
        },
        outcome,
        disable_endpoint: disable,
    }
}
