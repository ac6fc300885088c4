//! The engine itself: its state, how work enters (dispatch, the poller) and how it
//! stops (cancellation, draining, the grace period).

use crate::admission::{Admission, Reserved};
use crate::config::{ConfigError, EngineConfig};
use crate::recorder::Recorder;
use crate::worker::Slot;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::hooks::HookRunner;
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_core::routing::Target as Route;
use switchyard_core::time::{Clock, SystemClock};
use switchyard_core::{DueDelivery, Endpoint, EndpointRef, Target};
use switchyard_egress::Clients;
use switchyard_fair::{FairPool, Shares};
use switchyard_store::HookClaim;
use switchyard_store::Store;
use switchyard_store::StoreError;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Event hooks of one organization that may wait in memory for each hook slot of its share.
const HOOKS_WAITING_PER_SLOT: u64 = 16;

/// What the engine reports to whoever composed it. It acts on nothing here itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// An attempt disabled this endpoint (the receiver answered 410 Gone).
    EndpointDisabled {
        org_id: OrgId,
        endpoint_id: EndpointId,
    },
}

/// The delivery engine. Cheap to clone; all clones drive the same machine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// The engine's shared state; each field says its part in start, run and shutdown.
pub(crate) struct Inner {
    /// Where claims, attempts and endpoint configurations are read and written.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: EngineConfig,
    /// Run: the guarded HTTP clients every attempt goes through.
    pub(crate) clients: Clients,
    /// Run: the time attempts are stamped with and retries are scheduled by.
    pub(crate) clock: Arc<dyn Clock>,
    /// Run: the same clock never going back, which flow control reads (`flow::Steady`).
    pub(crate) steady: Arc<crate::flow::Steady>,
    /// Run: the retry jitter's source.
    pub(crate) rng: Mutex<StdRng>,
    /// Run: what is held in memory and what is not yet settled (`admission.rs`).
    pub(crate) admission: Admission,
    /// Run: each organization's limits.
    pub(crate) shares: Arc<Shares>,
    /// Run: per-endpoint queues, made on first use and removed by their idle worker.
    pub(crate) slots: Mutex<HashMap<EndpointId, Slot>>,
    /// Run: what this node knows of endpoint leases (`leases.rs`).
    pub(crate) leases: crate::leases::LeaseBook,
    /// Run: endpoint configurations, dropped on change and refreshed after the cache TTL.
    pub(crate) configs: Mutex<HashMap<EndpointId, (Arc<Endpoint>, Instant)>>,
    /// Run: writes results and hand-backs (`recorder.rs`). Shutdown: the last is a flush.
    pub(crate) recorder: Recorder,
    /// Run: how many batches the recorder has written; changes after each
    /// ([`Engine::watch_writes`]).
    pub(crate) writes: watch::Sender<u64>,
    /// Run: where [`EngineEvent`]s go.
    pub(crate) events: mpsc::UnboundedSender<EngineEvent>,
    /// Run: wakes the poller early (a replay or retry made work due now).
    pub(crate) wake: Notify,
    /// Shutdown: cancelled once; every loop of the engine ends on it and no attempt starts after.
    pub(crate) cancel: CancellationToken,
    /// Run: every attempt and hook run in progress. Shutdown: closed, then waited for up to
    /// the grace period.
    pub(crate) tasks: TaskTracker,
    /// Run: executes deliveries whose target is an executor.
    pub(crate) hooks: Option<Arc<dyn HookRunner>>,
    /// Run: event hooks running, shared fairly between organizations.
    pub(crate) hook_slots: FairPool,
    /// Run: requests to endpoints in flight, all endpoints together, shared fairly between
    /// organizations.
    pub(crate) request_slots: FairPool,
    /// Run: one permit per attempt result not yet written; the recorder drops them.
    pub(crate) record_slots: Arc<Semaphore>,
}

impl Engine {
    /// Builds the engine and starts its poller and recorder tasks. `clients` are the hub's
    /// guarded HTTP clients; `hooks` runs deliveries whose target is an executor (without it they
    /// fail as "no executor runner"); what the engine observes goes to `events`; `shares` are
    /// each organization's limits. Settings it cannot run with are refused.
    pub fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clients: Clients,
        hooks: Option<Arc<dyn HookRunner>>,
        events: mpsc::UnboundedSender<EngineEvent>,
        shares: Arc<Shares>,
    ) -> Result<Engine, ConfigError> {
        let clock = Arc::new(SystemClock);
        Engine::start_with_clock(store, config, clients, hooks, events, shares, clock)
    }

    /// [`Engine::start`] on a given clock.
    pub fn start_with_clock(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clients: Clients,
        hooks: Option<Arc<dyn HookRunner>>,
        events: mpsc::UnboundedSender<EngineEvent>,
        shares: Arc<Shares>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, ConfigError> {
        config.check()?;
        let (recorder, rx) = Recorder::channel();
        let rng = match config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let inner = Arc::new(Inner {
            clients,
            store,
            hook_slots: FairPool::new(
                "event hook slots",
                "event_hooks",
                config.max_hooks_in_flight as u64,
                shares.clone(),
                |l, _| l.event_hooks,
            ),
            request_slots: FairPool::new(
                "webhook requests in flight",
                "requests",
                config.max_requests_in_flight as u64,
                shares.clone(),
                |l, _| l.requests,
            ),
            record_slots: Arc::new(Semaphore::new(config.max_unrecorded.max(1))),
            admission: Admission::new(&config, shares.clone()),
            config,
            steady: Arc::new(crate::flow::Steady::new(clock.clone())),
            clock,
            rng: Mutex::new(rng),
            slots: Mutex::new(HashMap::new()),
            shares,
            configs: Mutex::new(HashMap::new()),
            leases: Default::default(),
            recorder,
            writes: watch::Sender::new(0),
            events,
            wake: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            hooks,
        });
        let engine = Engine { inner };
        tokio::spawn(engine.clone().record(rx));
        if engine.inner.config.deliver {
            tokio::spawn(engine.clone().poller());
            tokio::spawn(engine.clone().leaser());
        }
        Ok(engine)
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The guarded HTTP clients the engine delivers with (their URL check is the API's too).
    pub fn clients(&self) -> &Clients {
        &self.inner.clients
    }

    /// Queues deliveries that this node has claimed without reserving room (retries, event
    /// hooks the poller claimed). What does not fit in memory is handed back to the store, and
    /// its endpoint pulls it when it has room.
    pub fn dispatch(&self, deliveries: Vec<DueDelivery>) {
        if deliveries.is_empty() {
            return;
        }
        let inner = &self.inner;
        let Ok(mut slots) = inner.slots.lock() else {
            return;
        };
        inner.admission.dispatched(deliveries.len());
        for d in deliveries {
            if inner.cancel.is_cancelled() || !inner.config.deliver {
                // Handed back: due in the store for a node that delivers (told at commit).
                inner.recorder.release(d.delivery_id);
                continue;
            }
            let endpoint = match &d.target {
                Target::Endpoint(id) => EndpointRef {
                    org_id: d.org_id.clone(),
                    endpoint_id: id.clone(),
                },
                Target::Executor(name) => {
                    if !self.take_hook_room(&d.org_id) {
                        // The poller claims it again when hook slots are free.
                        inner.recorder.release(d.delivery_id);
                        continue;
                    }
                    let name = name.clone();
                    tokio::spawn(self.clone().run_hook(d, name));
                    continue;
                }
            };
            let slot = slots
                .entry(endpoint.endpoint_id.clone())
                .or_insert_with(|| self.spawn_worker(endpoint));
            let shared = &slot.shared;
            if !inner.admission.has_room(&shared.room) {
                metrics::counter!("switchyard_deliveries_deferred_total").increment(1);
                inner.recorder.release(d.delivery_id);
                if shared.mark_backlog() {
                    inner.admission.dispatched(1);
                }
                shared.wake.notify_one();
                continue;
            }
            shared.room.hold(1);
            if slot.tx.send(Box::new(d)).is_err() {
                shared.room.unhold(1);
                self.done(1);
            }
        }
    }

    /// Most event hooks of `org` waiting in memory for a slot: [`HOOKS_WAITING_PER_SLOT`] per
    /// slot of its share.
    fn org_hooks_waiting_limit(&self, org: &OrgId) -> usize {
        let share = self.inner.hook_slots.share(org);
        usize::try_from(share.saturating_mul(HOOKS_WAITING_PER_SLOT)).unwrap_or(usize::MAX)
    }

    /// Counts one more event hook of `org` waiting for a hook slot, within the bounds.
    fn take_hook_room(&self, org: &OrgId) -> bool {
        let limit = self.org_hooks_waiting_limit(org);
        self.inner.admission.take_hook_room(org, limit)
    }

    /// Takes room in memory for the deliveries a publish of `org` is about to make, one per
    /// route: `true` where the engine will take the delivery at once (the store claims it for
    /// this node), `false` where there is no room (the store leaves it due, and its endpoint
    /// pulls it when it has room). Nothing beyond the engine's bounds is ever claimed. A sync
    /// route is always claimed and takes no room: its publish attempts it itself.
    pub fn reserve(&self, org: &OrgId, routes: &[Route], reserved: &mut Reserved) -> Vec<bool> {
        let inner = &self.inner;
        let Ok(mut slots) = inner.slots.lock() else {
            return vec![false; routes.len()];
        };
        routes
            .iter()
            .map(|r| match &r.target {
                _ if r.sync => true,
                // Left due in the store: the nodes that deliver hear of it at commit.
                _ if !inner.config.deliver => false,
                Target::Endpoint(id) if !self.holds_lease(id) => {
                    // Another node may hold the endpoint: left due, its holder hears of it at
                    // commit; if nobody does and this node is the endpoint's first choice, its
                    // worker takes the lease and pulls (otherwise the first choice does, or,
                    // after a while, this node's poller).
                    if !self.first_choice(id) {
                        return false;
                    }
                    reserved.overflowed(EndpointRef {
                        org_id: org.clone(),
                        endpoint_id: id.clone(),
                    });
                    false
                }
                Target::Executor(_) => {
                    let taken = self.take_hook_room(org);
                    reserved.hooks += usize::from(taken);
                    if taken {
                        reserved.hooks_org = Some(org.clone());
                    }
                    taken
                }
                Target::Endpoint(id) => {
                    let endpoint = EndpointRef {
                        org_id: org.clone(),
                        endpoint_id: id.clone(),
                    };
                    let slot = slots
                        .entry(id.clone())
                        .or_insert_with(|| self.spawn_worker(endpoint.clone()));
                    let shared = &slot.shared;
                    if !inner.admission.has_room(&shared.room) {
                        metrics::counter!("switchyard_deliveries_deferred_total").increment(1);
                        reserved.overflowed(endpoint);
                        return false;
                    }
                    shared.room.hold(1);
                    reserved
                        .endpoints
                        .entry(id.clone())
                        .or_insert_with(|| (shared.clone(), 0))
                        .1 += 1;
                    true
                }
            })
            .collect()
    }

    /// Queues the deliveries a publish committed, in the room [`Engine::reserve`] took; room
    /// they did not use (a duplicate event, a delivery waiting for its ordering key) is given
    /// back, and endpoints left without room are told to pull.
    pub fn dispatch_reserved(&self, deliveries: Vec<DueDelivery>, mut reserved: Reserved) {
        let inner = &self.inner;
        inner.admission.dispatched(deliveries.len());
        let mut unplanned = Vec::new();
        if let Ok(mut slots) = inner.slots.lock() {
            for d in deliveries {
                if inner.cancel.is_cancelled() {
                    inner.recorder.release(d.delivery_id);
                    continue;
                }
                match &d.target {
                    Target::Executor(name) if reserved.hooks > 0 => {
                        reserved.hooks -= 1;
                        let name = name.clone();
                        tokio::spawn(self.clone().run_hook(d, name));
                    }
                    Target::Endpoint(id) => {
                        let Some(room) = reserved.endpoints.get_mut(id).filter(|r| r.1 > 0) else {
                            unplanned.push(d);
                            continue;
                        };
                        room.1 -= 1;
                        // The worker that had the room may have ended meanwhile: move the
                        // room to the endpoint's current worker.
                        room.0.room.unhold(1);
                        let endpoint = EndpointRef {
                            org_id: d.org_id.clone(),
                            endpoint_id: id.clone(),
                        };
                        let slot = slots
                            .entry(id.clone())
                            .or_insert_with(|| self.spawn_worker(endpoint));
                        slot.shared.room.hold(1);
                        if let Err(e) = slot.tx.send(Box::new(d)) {
                            slot.shared.room.unhold(1);
                            inner.recorder.release(e.0.delivery_id);
                        }
                    }
                    Target::Executor(_) => unplanned.push(d),
                }
            }
        }
        let overflow = std::mem::take(&mut reserved.overflow);
        self.unreserve(reserved);
        if !unplanned.is_empty() {
            // Not reserved (a caller that did not reserve): the bounded path.
            inner.admission.settled(unplanned.len());
            self.dispatch(unplanned);
        }
        self.backlog(overflow);
    }

    /// Gives back room that no delivery will use (the publish failed, or is routed again).
    pub fn unreserve(&self, reserved: Reserved) {
        for (_, (shared, n)) in reserved.endpoints {
            shared.room.unhold(n);
        }
        if let Some(org) = &reserved.hooks_org {
            self.inner.admission.release_hook_room(org, reserved.hooks);
        }
    }

    /// Tells the workers of `endpoints` that deliveries of theirs are due in the store; a
    /// worker is started where there is none.
    pub(crate) fn backlog(&self, endpoints: impl IntoIterator<Item = EndpointRef>) {
        let inner = &self.inner;
        if !inner.config.deliver {
            return;
        }
        let Ok(mut slots) = inner.slots.lock() else {
            return;
        };
        for endpoint in endpoints {
            if inner.cancel.is_cancelled() {
                return;
            }
            let slot = slots
                .entry(endpoint.endpoint_id.clone())
                .or_insert_with(|| self.spawn_worker(endpoint));
            if slot.shared.mark_backlog() {
                inner.admission.dispatched(1);
            }
            slot.shared.wake.notify_one();
        }
    }

    /// Counts `n` dispatched deliveries as settled (recorded, handed back or left to their lease).
    pub(crate) fn done(&self, n: usize) {
        self.inner.admission.settled(n);
    }

    /// Resolves once every delivery dispatched so far has settled: its attempt recorded (or it
    /// was handed back, or left claimed for its lease to run out). Work dispatched meanwhile is
    /// waited for too.
    pub async fn until_idle(&self) {
        self.inner.admission.until_idle().await;
    }

    /// Changes each time the recorder has written a batch of attempt results or hand-backs:
    /// every change the engine makes to a delivery is seen in the store by then. Whoever waits
    /// for a delivery to reach some state (a test, a live view) waits on it instead of polling.
    pub fn watch_writes(&self) -> watch::Receiver<u64> {
        self.inner.writes.subscribe()
    }

    /// Forgets the cached configuration of an endpoint (it was changed or deleted).
    pub fn endpoint_changed(&self, endpoint_id: &str) {
        if let Ok(mut c) = self.inner.configs.lock() {
            c.remove(endpoint_id);
        }
    }

    /// Forgets every cached endpoint configuration.
    pub fn forget_endpoints(&self) {
        if let Ok(mut c) = self.inner.configs.lock() {
            c.clear();
        }
    }

    /// Makes the poller look for due deliveries now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Finds the endpoints with deliveries due now (by the engine's clock) and has each pull
    /// them, and claims due event hooks as far as hook slots are free; returns how many
    /// endpoints and hooks it found.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let endpoints = inner
            .store
            .due_endpoints(&inner.config.node, now, 10_000)
            .await?;
        let found = endpoints.len();
        self.backlog(endpoints);
        // Hooks are claimed while slots are free and there is room for them to wait: a few of
        // each organization, none of one whose waiting hooks fill its own room, so one
        // organization's backlog never hides another's.
        let free = inner
            .config
            .max_hooks_in_flight
            .min(inner.admission.hook_room());
        let hooks = if free > 0 {
            let skip = inner
                .admission
                .hook_orgs_full(|org| self.org_hooks_waiting_limit(org));
            let per_org = inner.shares.defaults().event_hooks.max(1);
            let wanted = HookClaim {
                limit: (free as u32).min(inner.config.claim_batch),
                per_org: u32::try_from(per_org).unwrap_or(u32::MAX),
                skip,
            };
            inner
                .store
                .claim_hooks(&inner.config.node, now, &wanted, inner.config.lease_ms)
                .await?
        } else {
            Vec::new()
        };
        let n = found + hooks.len();
        self.dispatch(hooks);
        Ok(n)
    }

    /// Stops taking work, hands queued deliveries back, waits up to `grace` for requests in
    /// flight and records every result that came in.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.cancel.cancel();
        inner.tasks.close();
        if tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = inner.tasks.len(),
                "grace period over; unfinished deliveries resume at next start"
            );
        }
        inner.recorder.flush(Some(Duration::from_secs(10))).await;
        // Every delivery is recorded or handed back: other nodes may take the endpoints now.
        if inner.config.deliver {
            if let Err(e) = inner.store.drop_leases(&inner.config.node, None).await {
                tracing::warn!(error = %e, "giving up endpoint leases failed; they pass on when they run out");
            }
            inner.leases.clear();
        }
    }

    async fn poller(self) {
        let inner = &self.inner;
        loop {
            if inner.cancel.is_cancelled() {
                return;
            }
            match self.run_once().await {
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(e) => tracing::error!(error = %e, "claiming due deliveries failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.config.poll_interval) => {}
                _ = inner.wake.notified() => {}
                _ = inner.cancel.cancelled() => return,
            }
        }
    }

    /// A jitter draw for the retry schedule.
    pub(crate) fn jitter(&self) -> f64 {
        use rand::Rng;
        match self.inner.rng.lock() {
            Ok(mut r) => r.random::<f64>(),
            Err(_) => 0.5,
        }
    }
}
