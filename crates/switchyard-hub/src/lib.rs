//! The hub service: the one place that composes the store, routing, the delivery engine and the
//! executor runner, and the only way events enter the hub.
//!
//! Whoever publishes — the HTTP API, the hub's own system events, later schedules, synchronous
//! hooks and the CLI — calls [`Hub::publish`], which routes (`publish.rs`: a per-organization
//! route table checked against the store's routing version at commit), stores, counts and
//! dispatches. The delivery engine reports what it observes on a channel; `system.rs` turns
//! those reports into `switchyard.*` events through the same publish, and the scheduler
//! (`schedules.rs`) publishes each schedule's events the same way.

mod access;
mod catalog;
mod executors;
mod notices;
mod publish;
mod rates;
mod reads;
mod retention;
mod schedules;
mod schemas;
mod storage;
mod sync_hooks;
mod system;
mod tools;

pub use executors::{ExecutorDefinition, SandboxReport};
pub use retention::{RetentionPass, RetentionSettings};
pub use schedules::ScheduleSettings;
pub use schemas::EventRefusal;
pub use switchyard_delivery::{ConfigError, EngineConfig, EngineEvent, MIN_LEASE_MS};
pub use sync_hooks::{CacheUse, CallError, HookAnswer};
pub use system::ENDPOINT_DISABLED;
pub use tools::{OfferedTool, ToolAnswer, ToolTarget};

pub use reads::Reads;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::Delivery;
use switchyard_core::egress::EgressPolicy;
use switchyard_core::ids::{DeliveryId, EndpointId, OrgId};
use switchyard_core::limits::{Limits, OrgLimits};
use switchyard_delivery::Engine;
use switchyard_egress::Clients;
use switchyard_exec::Runner;
use switchyard_exec::sandbox::Isolation;
pub use switchyard_exec::{ExecError, RunnerLimits};
use switchyard_fair::Shares;
use switchyard_store::Store;
pub use switchyard_store::{DeliveryQuery, EventQuery, Missing, Published, StoreError, Trace};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a node does, so that publishing and delivering scale apart on one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Both (the default; the only choice on SQLite's single node makes sense).
    #[default]
    All,
    /// Serves the API and publishes (attempting synchronous targets itself), but delivers
    /// nothing: every delivery is left due for the worker nodes, which hear of it at commit.
    /// Runs no retention and no scheduler.
    Api,
    /// Delivers, runs retention and the scheduler; serves only health, readiness and metrics.
    Worker,
}

impl Role {
    /// Whether a node of this role delivers (and runs retention and the scheduler).
    pub fn delivers(self) -> bool {
        self != Role::Api
    }

    /// Whether a node of this role serves the API.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }
}

/// Everything the hub is composed from, besides its store.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The engine's settings; its `node` is this node's id.
    pub engine: EngineConfig,
    /// Where tenant-chosen requests may go.
    pub egress: EgressPolicy,
    /// The binary that runs JavaScript workers (`switchyard js-worker`), if JavaScript runs here.
    pub js_worker: Option<PathBuf>,
    /// The operator's bounds on executor runs (temporary files, the memory budget, whether
    /// runs the kernel cannot bound are allowed).
    pub runs: RunnerLimits,
    /// What is deleted when, and how.
    pub retention: RetentionSettings,
    /// How cron lines are read.
    pub schedules: ScheduleSettings,
    /// What this node does; `engine.deliver` follows it.
    pub role: Role,
    /// What each organization may take of the hub, unless the instance admin set its own.
    pub limits: Limits,
    /// Where this node's API listens, for code's `sdk.api` calls (`None`: it serves none).
    pub api_address: Option<std::net::SocketAddr>,
}

impl HubSettings {
    /// A hub for node `node` with the defaults, for embedding and tests: nothing reached but
    /// public destinations, no JavaScript worker, runs bounded to a small budget (16 MiB of
    /// temporary files, 256 MiB for all runs), retention and limits as shipped.
    pub fn defaults(node: &str) -> HubSettings {
        HubSettings {
            engine: EngineConfig::new(node),
            egress: EgressPolicy::default(),
            js_worker: None,
            runs: RunnerLimits {
                max_tmp_mb: 16,
                memory_budget_mb: Some(256),
                allow_unbounded_runs: false,
                warm_interpreters: 0,
                packages: None,
            },
            retention: RetentionSettings::default(),
            schedules: ScheduleSettings::default(),
            role: Role::default(),
            limits: Limits::default(),
            api_address: None,
        }
    }
}

/// Errors of the hub's own making; the store's pass through.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The organization's routing changed under every attempt to publish (it is being changed
    /// continuously); nothing was stored.
    #[error(
        "the organization's subscriptions kept changing while publishing; nothing was stored, try again"
    )]
    RoutingUnstable,
    #[error("starting the hub failed: {0}")]
    Start(String),
    /// The change would take the organization past one of its quotas; nothing was stored.
    #[error("{0}")]
    Quota(String),
    /// The organization's rate (its publishes per minute, its replays per hour) is used up
    /// for now; nothing was stored.
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
    /// A task of the hub's failed (it panicked, or the runtime is shutting down).
    #[error("internal error: {0}")]
    Internal(String),
    /// A definition breaks a rule (the message names the field and the rule); nothing was
    /// stored.
    #[error(transparent)]
    Invalid(#[from] switchyard_core::CoreError),
    /// The organization's share (or the hub) had no room for the work now; the caller may
    /// retry in a few seconds.
    #[error("{0}")]
    NoRoom(String),
    /// Event `index` (0 for a single one) of a publish was refused; nothing was stored.
    #[error("{message}")]
    EventRefused {
        index: usize,
        reason: EventRefusal,
        message: String,
    },
}

/// Events one replay step writes in one transaction.
pub const REPLAY_STEP: u32 = 500;
/// Events one replay call re-sends at most (the rest: another call, from the last one's time).
pub const REPLAY_MAX: u64 = 100_000;

/// The running hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// The hub's parts; each says its role in start, run and shutdown.
struct Inner {
    /// Start: given. Run: every read and write. Shutdown: closed by whoever opened it.
    store: Arc<dyn Store>,
    /// Start: started with the runner as its hook runner. Shutdown: drained first.
    engine: Engine,
    /// Run: executor previews and event hooks.
    runner: Runner,
    /// Run: route tables by organization, each with the routing version it was built from.
    routes: Mutex<HashMap<OrgId, Arc<publish::OrgRoutes>>>,
    /// Run: the route table being built, by organization: one build at a time, the others
    /// wait for it ([`publish`]'s `routes`).
    route_builds: Mutex<HashMap<OrgId, Arc<tokio::sync::Mutex<()>>>>,
    /// Run: route tables this node has built ([`Hub::route_tables_built`]).
    route_tables_built: std::sync::atomic::AtomicU64,
    /// Start: the listener for what the engine reports, the retention task and the scheduler.
    /// Shutdown: awaited after cancellation (the listener first publishes what is left).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Shutdown: tells the listener to publish what is left and end, and stops retention and
    /// the scheduler.
    cancel: CancellationToken,
    /// Run: how long data is kept; the retention task runs on it.
    retention: RetentionSettings,
    /// Run: how far the payload retention has read, per organization.
    payload_marks: retention::PayloadMarks,
    /// Run: answers of synchronous hooks, and their compiled schemas.
    hook_cache: sync_hooks::HookCache,
    /// Run: event types' compiled schemas, which every published event passes.
    schemas: schemas::SchemaCache,
    /// Run: how cron lines are read.
    schedules: ScheduleSettings,
    /// Run: what the scheduler and the engine read the time from (the system's, or a test's
    /// [`ManualClock`](switchyard_core::time::ManualClock)).
    clock: Arc<dyn switchyard_core::time::Clock>,
    /// Run: wakes the scheduler when a schedule changed.
    schedule_wake: Notify,
    /// Run: the organization of each commit on this node, for live tails
    /// ([`Hub::published_orgs`]). Sending costs nothing when nobody listens.
    published: broadcast::Sender<Arc<str>>,
    /// Run: authenticated API keys by hash, dropped when revoked on any node.
    keys: access::KeyCache,
    /// Run: organizations known to exist.
    orgs: access::OrgCache,
    /// Run: credentials of `sdk.api` calls in progress (see `access.rs`).
    run_credentials: Arc<access::RunCredentials>,
    /// Run: each organization's limits, read at start and kept as they change on any node.
    shares: Arc<Shares>,
    /// Run: each organization's publishes per minute and replays per hour, on this node.
    rates: rates::Rates,
}

impl Hub {
    /// Composes the hub on `store`: the guarded HTTP clients, the executor runner that uses them
    /// (after probing which isolation this host allows), the engine that delivers with them and
    /// runs event hooks on the runner, and the listener for what the engine reports.
    pub async fn start(store: Arc<dyn Store>, settings: HubSettings) -> Result<Hub, HubError> {
        let clock = Arc::new(switchyard_core::time::SystemClock);
        Hub::start_with_clock(store, settings, clock).await
    }

    /// [`Hub::start`] on a given clock: the scheduler fires and the engine schedules by it.
    pub async fn start_with_clock(
        store: Arc<dyn Store>,
        settings: HubSettings,
        clock: Arc<dyn switchyard_core::time::Clock>,
    ) -> Result<Hub, HubError> {
        let refused = |e: switchyard_delivery::ConfigError| HubError::Start(e.to_string());
        settings.engine.check().map_err(refused)?;
        let clients = Clients::new(settings.egress.clone());
        let isolation = tokio::task::spawn_blocking({
            let helper = settings.js_worker.clone();
            move || Isolation::probe(helper.as_deref())
        })
        .await
        .map_err(|e| HubError::Start(format!("probing the executor sandbox: {e}")))?;
        tracing::info!(level = %isolation.level(), ?isolation, "executor sandbox");
        if let Some(why) = &isolation.cgroups_unavailable {
            if settings.runs.allow_unbounded_runs {
                tracing::warn!(%why, "no per-run cgroups: Python, PHP and Node.js runs are NOT bounded by the kernel (allowed by allow_unbounded_runs)");
            } else {
                tracing::warn!(%why, "no per-run cgroups: Python, PHP and Node.js executors are refused (allow_unbounded_runs would run them unbounded)");
            }
        }
        // Each organization's limits: the hub's, and those the instance admin set.
        let shares = Shares::new(settings.limits);
        for org in store.list_orgs().await? {
            shares.set(org.id.as_str(), &org.limits);
        }
        let runner = Runner::new(
            store.clone(),
            clients.clone(),
            isolation,
            settings.js_worker.clone(),
            settings.runs.clone(),
            shares.clone(),
        );
        let run_credentials = Arc::new(access::RunCredentials::default());
        runner.plug_self_api(Arc::new(access::SelfApi {
            address: settings.api_address,
            credentials: run_credentials.clone(),
        }));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut engine_config = settings.engine.clone();
        engine_config.deliver = settings.role.delivers();
        let engine = Engine::start_with_clock(
            store.clone(),
            engine_config,
            clients,
            Some(Arc::new(runner.clone())),
            events_tx,
            shares.clone(),
            clock.clone(),
        )
        .map_err(refused)?;
        let hub = Hub {
            inner: Arc::new(Inner {
                store,
                engine,
                runner,
                routes: Mutex::new(HashMap::new()),
                route_builds: Mutex::new(HashMap::new()),
                route_tables_built: std::sync::atomic::AtomicU64::new(0),
                tasks: Mutex::new(Vec::new()),
                cancel: CancellationToken::new(),
                retention: settings.retention.clone(),
                payload_marks: Default::default(),
                hook_cache: sync_hooks::HookCache::new(shares.clone()),
                schemas: schemas::schema_cache(),
                shares,
                rates: Default::default(),
                schedules: settings.schedules,
                clock,
                schedule_wake: Notify::new(),
                published: broadcast::channel(256).0,
                keys: access::key_cache(),
                orgs: access::org_cache(),
                run_credentials,
            }),
        };
        let listener = tokio::spawn(hub.clone().listen(events_rx));
        if let Ok(mut t) = hub.inner.tasks.lock() {
            t.push(listener);
            t.push(tokio::spawn(
                hub.clone().packages_loop(settings.role.delivers()),
            ));
            if settings.role.delivers() {
                t.push(tokio::spawn(hub.clone().retention_loop()));
                t.push(tokio::spawn(hub.clone().schedule_loop()));
            }
            // Other nodes on the same database (PostgreSQL): what they change and leave due.
            if let Some(rx) = hub.inner.store.listen() {
                t.push(tokio::spawn(hub.clone().notice_loop(rx)));
            }
        }
        Ok(hub)
    }

    /// Tells of each commit of new events on this node, by organization: a live tail wakes on
    /// it and reads the store (which also holds what other nodes committed). A listener that
    /// falls behind is told it lagged and reads the store anyway.
    pub fn published_orgs(&self) -> broadcast::Receiver<Arc<str>> {
        self.inner.published.subscribe()
    }

    /// What a front may read of the store; it writes through the hub.
    pub fn reads(&self) -> Reads {
        Reads(self.inner.store.clone())
    }

    /// The guarded HTTP clients (their URL check is the API's too).
    pub fn clients(&self) -> &Clients {
        self.inner.engine.clients()
    }

    /// The limits `org` runs under now.
    pub fn limits(&self, org: &OrgId) -> Limits {
        self.inner.shares.limits(org.as_str())
    }

    /// The hub's own limits (every organization's, unless the instance admin set its own).
    pub fn default_limits(&self) -> Limits {
        self.inner.shares.defaults()
    }

    /// Sets `org`'s own limits (the instance admin's call): stored, in force on this node at
    /// once and on the others when they hear of it.
    pub async fn set_org_limits(
        &self,
        org: &OrgId,
        limits: OrgLimits,
    ) -> Result<switchyard_core::Org, HubError> {
        let mut o = self.inner.store.get_org(org).await?;
        o.limits = limits;
        let o = self.inner.store.update_org(&o).await?;
        self.inner.shares.set(org.as_str(), &o.limits);
        self.announce(switchyard_store::Notice::Org {
            org: org.to_string(),
        });
        Ok(o)
    }

    /// Refuses a change that would take `org` past a quota: `change` applies it to what the
    /// organization stores now. Only what the change grows is checked.
    pub async fn within_quota(
        &self,
        org: &OrgId,
        change: impl FnOnce(&mut switchyard_core::limits::Usage),
    ) -> Result<(), HubError> {
        let before = self.inner.store.usage(org).await?;
        let mut after = before;
        change(&mut after);
        self.limits(org)
            .allows(&before, &after)
            .map_err(|e| HubError::Quota(e.to_string()))
    }

    /// What `org` stores now, for its quotas.
    pub async fn usage(&self, org: &OrgId) -> Result<switchyard_core::limits::Usage, HubError> {
        Ok(self.inner.store.usage(org).await?)
    }

    /// Reads `org`'s limits again (another node changed them).
    pub(crate) async fn reload_limits(&self, org: Option<&OrgId>) {
        let orgs = match org {
            Some(o) => self.inner.store.get_org(o).await.map(|o| vec![o]),
            None => self.inner.store.list_orgs().await,
        };
        match orgs {
            Ok(orgs) => {
                for o in orgs {
                    self.inner.shares.set(o.id.as_str(), &o.limits);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading organization limits failed"),
        }
    }

    /// The hub's retention: the default and ceiling of organizations' own.
    pub fn retention(&self) -> &RetentionSettings {
        &self.inner.retention
    }

    /// Changes each time this node's engine has written attempt results or hand-backs (see
    /// [`Engine::watch_writes`]).
    pub fn watch_deliveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.engine.watch_writes()
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.engine.config().node
    }

    /// This node's claim on the deliveries a publish or a retry makes due at once.
    pub(crate) fn claim(&self) -> switchyard_store::Claim<'_> {
        let config = self.inner.engine.config();
        switchyard_store::Claim {
            node: &config.node,
            lease_ms: config.lease_ms,
        }
    }

    /// An endpoint was changed or deleted: its cached configuration and its organization's
    /// routes are dropped (the routing version would catch a stale table anyway; this saves
    /// the round trip).
    pub(crate) fn endpoint_changed(&self, org: &OrgId, endpoint: &str) {
        self.inner.engine.endpoint_changed(endpoint);
        self.forget_routes(org);
        // Re-enabled, or no longer ordered: deliveries it kept may be due now.
        self.inner.engine.wake();
        self.announce(switchyard_store::Notice::Endpoint {
            org: org.to_string(),
            endpoint: endpoint.to_string(),
        });
    }

    /// A subscription or executor of `org` was created or deleted: its routes are dropped on
    /// every node.
    pub(crate) fn routing_changed(&self, org: &OrgId) {
        self.forget_routes(org);
        self.announce(switchyard_store::Notice::Routing {
            org: org.to_string(),
        });
    }

    /// Drops this node's route table of `org`.
    pub(crate) fn forget_routes(&self, org: &OrgId) {
        if let Ok(mut r) = self.inner.routes.lock() {
            r.remove(org);
        }
    }

    /// Makes a delivery pending again with one more attempt and starts it on this node (or,
    /// on an ordered endpoint whose key is busy, once the deliveries before it settle). Returns
    /// the delivery as it now is.
    pub async fn retry_delivery(&self, org: &OrgId, id: &DeliveryId) -> Result<Delivery, HubError> {
        let retried = self
            .inner
            .store
            .retry_delivery(org, id, self.claim())
            .await?;
        if let Some(due) = retried.claimed {
            self.inner.engine.dispatch(vec![due]);
        }
        Ok(retried.delivery)
    }

    /// Re-sends to `endpoint` what it was sent in `[since, until)` — at most
    /// [`REPLAY_MAX`] events a call — and returns how many deliveries were made. It is written
    /// in steps of [`REPLAY_STEP`] events, each a transaction of its own, so publishes of every
    /// organization go on between them.
    pub async fn replay(
        &self,
        org: &OrgId,
        endpoint: &EndpointId,
        since: i64,
        until: i64,
    ) -> Result<u64, HubError> {
        let limit = self.limits(org).replays_per_hour;
        let rates = &self.inner.rates;
        let mut window = switchyard_store::ReplayWindow {
            since,
            until,
            after_seq: 0,
            limit: REPLAY_STEP,
        };
        let mut total = 0;
        loop {
            // The organization's replays this hour: a call that finds none left is refused, one
            // that uses the last of them stops there (the answer says how many).
            let want = u64::from(window.limit);
            let granted = match rates.take(org, rates::Rate::Replays, want, limit, false) {
                Ok(n) => n,
                Err(e) if total == 0 => {
                    return Err(HubError::RateLimited {
                        message: format!("replay refused: {}", e.message),
                        retry_after_s: e.retry_after_s,
                    });
                }
                Err(_) => return Ok(total),
            };
            window.limit = u32::try_from(granted).unwrap_or(REPLAY_STEP);
            let step = match self.inner.store.replay(org, endpoint, window).await {
                Ok(step) => step,
                Err(e) => {
                    rates.give_back(org, rates::Rate::Replays, granted);
                    return Err(e.into());
                }
            };
            rates.give_back(
                org,
                rates::Rate::Replays,
                granted - step.created.min(granted),
            );
            total += step.created;
            self.inner.engine.wake();
            match step.last_seq {
                Some(last) if step.created == granted && total < REPLAY_MAX => {
                    window.after_seq = last;
                    window.limit =
                        REPLAY_STEP.min(u32::try_from(REPLAY_MAX - total).unwrap_or(REPLAY_STEP));
                    tokio::task::yield_now().await;
                }
                _ => return Ok(total),
            }
        }
    }

    /// Stops: the engine hands back queued work and waits up to `grace` for attempts in flight,
    /// then what it reported is published, then the listener and retention end.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.engine.shutdown(grace).await;
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        self.inner.cancel.cancel();
        for task in tasks {
            let _ = task.await;
        }
    }
}
