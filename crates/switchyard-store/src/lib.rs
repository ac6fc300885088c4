//! Switchyard's storage: one trait per role the hub stores data for, and its two backends,
//! SQLite and PostgreSQL.
//!
//! Everything the hub persists goes through these traits; no other crate writes SQL. The roles
//! are the catalog ([`Catalog`]: organizations, keys, event types, endpoints, subscriptions,
//! executors, secrets), the event log ([`EventLog`]), the delivery queue ([`DeliveryQueue`]),
//! which node works which endpoint ([`NodeLeases`]), key-value storage ([`KvStorage`]) and the
//! run log ([`RunLog`]); [`Store`] is a backend that holds all six. Secrets are encrypted by
//! the store with the master key it is opened with, so callers handle plaintext and the
//! database file alone reveals none. The behaviour every
//! backend must show is in `tests/contract/`, one test per check, run per backend.

mod common;
mod error;
pub mod postgres;
mod sqlite;

/// Every role trait, for callers that hold a `dyn Store`.
pub mod prelude {
    pub use crate::{
        Catalog, DeliveryQueue, EndpointCatalog, EventLog, ExecutorCatalog, KvStorage, NodeLeases,
        OrgCatalog, RunLog, ScheduleCatalog, Store,
    };
}

pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use std::sync::Arc;
use switchyard_core::executor::{Executor, Run};
use switchyard_core::health::{DisablePolicy, EndpointHealth};
use switchyard_core::ids::{DeliveryId, EndpointId, EventId, KeyId, OrgId, RunId, SubscriptionId};
use switchyard_core::*;

pub use error::{Missing, Result, StoreError};

/// An organization's routing as of one version: the subscriptions that route (those of enabled
/// endpoints and of executors). Any change to subscriptions or endpoints bumps the version in
/// the transaction that makes it.
#[derive(Debug, Clone)]
pub struct RoutingSnapshot {
    pub version: i64,
    pub subscriptions: Vec<Subscription>,
    /// What each ordered endpoint among them orders by.
    pub ordered: std::collections::HashMap<EndpointId, switchyard_core::ordering::OrderingKey>,
}

/// A new event with the targets routing chose for it.
#[derive(Debug, Clone)]
pub struct RoutedEvent {
    pub event: NewEvent,
    pub targets: Vec<switchyard_core::routing::Target>,
    /// Per target: whether the publishing node takes the delivery at once (it is claimed for
    /// that node and handed back in `new_deliveries`) or leaves it due in the store for its
    /// endpoint to pull (the node has no room for it in memory).
    pub claim: Vec<bool>,
}

/// Events of one organization routed with the routing of `routing_version`.
#[derive(Debug, Clone)]
pub struct RoutedBatch {
    pub routing_version: i64,
    pub events: Vec<RoutedEvent>,
}

/// What a publish did.
#[derive(Debug)]
pub enum PublishOutcome {
    /// Every event is committed (or was there before).
    Committed(Vec<Published>),
    /// The organization's routing changed since the batch was routed: nothing was written and
    /// the batch comes back to be routed again.
    StaleRouting(RoutedBatch),
}

/// One event of a publish call, as the store answered it.
#[derive(Debug, Clone)]
pub struct Published {
    pub event: Arc<Event>,
    /// True if an event with this id already existed: `event` is that first one, and no new
    /// deliveries were made.
    pub duplicate: bool,
    /// How many deliveries the event has.
    pub delivery_count: usize,
    /// The deliveries this call created, claimed for this node: hand them to the engine.
    pub new_deliveries: Vec<DueDelivery>,
    /// What the event's synchronous targets did; the store leaves it empty, the publish that
    /// attempts them fills it in.
    pub sync: Vec<SyncOutcome>,
}

/// Filters of the event listing.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// An exact type name, or a pattern where `*` matches any run of characters.
    pub event_type: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events with `seq` below this (pages go from newest to oldest).
    pub before_seq: Option<i64>,
    /// Only events with `seq` above this, oldest first (how a live tail follows the log).
    pub after_seq: Option<i64>,
    /// Only events with at least one delivery in this status.
    pub delivery_status: Option<DeliveryStatus>,
    pub limit: u32,
}

/// One step of a replay: the time range, and where in it this step starts.
#[derive(Debug, Clone, Copy)]
pub struct ReplayWindow {
    pub since: i64,
    pub until: i64,
    /// Only events with `seq` above this (0 for the first step).
    pub after_seq: i64,
    pub limit: u32,
}

/// What one step of a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Deliveries created (one per event).
    pub created: u64,
    /// The last event's `seq` (the next step's `after_seq`); `None` when there was none.
    pub last_seq: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    /// Only deliveries with an id below this (ids sort by creation time).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// An event with everything that happened to it.
#[derive(Debug, Clone)]
pub struct Trace {
    pub event: Event,
    pub deliveries: Vec<(Delivery, Vec<Attempt>)>,
}

/// Who takes the deliveries a write makes due at once, and for how long: the node that will
/// attempt them, for its lease (another node may take them over once it runs out: a node that
/// crashed never finishes its claims; a restarted node releases its own at once).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub node: &'a str,
    pub lease_ms: i64,
}

/// What a node tells the other nodes sharing its database (PostgreSQL's `NOTIFY`): work due
/// now that it left for the endpoint's lease holder, or a change that makes their caches stale.
/// A notice is a wake-up, never the only path: the pollers still find due work, and cached
/// entries still expire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Deliveries of these endpoints of `org` (and, with `hooks`, event hooks) are due now.
    Due {
        org: String,
        endpoints: Vec<String>,
        #[serde(default)]
        hooks: bool,
    },
    /// An endpoint's settings changed (or it was deleted).
    Endpoint { org: String, endpoint: String },
    /// Where `org`'s events go changed (subscriptions, executors).
    Routing { org: String },
    /// An event type (its schema) changed.
    EventType { org: String, name: String },
    /// A synchronous hook's definition changed.
    Hook { org: String, name: String },
    /// An executor changed.
    Executor { org: String, name: String },
    /// An API key was revoked.
    Key { key_id: String },
    /// A schedule was created, changed or deleted.
    Schedules,
    /// An organization's limits changed.
    Org { org: String },
    /// Notices may have been missed (listening has just begun, or the connection was lost and
    /// is back): every cache is to be dropped.
    Lost,
}

/// A backend that holds every role. Every method is scoped by organization where the data
/// belongs to one; nothing returns another organization's rows.
#[async_trait]
pub trait Store:
    Catalog + EventLog + DeliveryQueue + NodeLeases + KvStorage + RunLog + Send + Sync + 'static
{
    /// True while writes fail because storage is full: set by a failing write, cleared once
    /// space has been freed by the next write that commits (SQLite) or by the next
    /// [`Store::probe_write`] that finds new space (PostgreSQL, where small writes still fit
    /// in pages their tables have while a publish fails).
    fn storage_full(&self) -> bool;
    /// A write that tells whether the store takes writes again (readiness runs it while
    /// [`Store::storage_full`]).
    async fn probe_write(&self) -> Result<()>;
    /// Gives space freed by deletions back to the file system, a bounded amount at a time.
    async fn reclaim_space(&self) -> Result<()>;
    /// Tells the other nodes sharing this database of `notice` (PostgreSQL: `NOTIFY`; SQLite:
    /// nothing, one node owns the file).
    async fn notify(&self, notice: &Notice) -> Result<()>;
    /// The notices sent by any node sharing this database from now on, this one's included
    /// (`None` where no other node can share it). Each time listening takes effect (at first and
    /// after a reconnect, which it makes by itself) it sends [`Notice::Lost`] first; it ends
    /// when the receiver is dropped.
    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>;
}

/// The catalog: what tenants configure. Small, read far more than written, kept in one
/// database for its transactions across aggregates (a subscription and the endpoint it owns).
/// It is three traits, one per aggregate, so that a backend implements each in its own file.
pub trait Catalog: OrgCatalog + EndpointCatalog + ExecutorCatalog + ScheduleCatalog {}
impl<T: OrgCatalog + EndpointCatalog + ExecutorCatalog + ScheduleCatalog> Catalog for T {}

/// Organizations, their API keys and their event types.
#[async_trait]
pub trait OrgCatalog: Send + Sync {
    /// Stores a new organization; `Conflict` if the id is taken.
    async fn create_org(&self, org: &Org) -> Result<Org>;
    /// Replaces an organization's name and retentions; `NotFound` if there is none.
    async fn update_org(&self, org: &Org) -> Result<Org>;
    async fn get_org(&self, id: &OrgId) -> Result<Org>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;
    /// What the organization stores now, for its quotas.
    async fn usage(&self, org: &OrgId) -> Result<switchyard_core::limits::Usage>;
    /// Stores a key by its hash and a displayable prefix; `org = None` makes an instance admin
    /// key. Returns the key's id.
    async fn create_api_key(
        &self,
        org: Option<&OrgId>,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<KeyId>;
    /// The keys of an organization (never the keys themselves).
    async fn list_api_keys(&self, org: &OrgId) -> Result<Vec<ApiKeyInfo>>;
    /// Revokes a key of `org`; `NotFound` if it has no such key.
    async fn delete_api_key(&self, org: &OrgId, id: &KeyId) -> Result<()>;
    /// Records that a key was used at `at`.
    async fn touch_api_key(&self, id: &KeyId, at: i64) -> Result<()>;
    /// Replaces every instance admin key by one new key (recovery); returns its id.
    async fn replace_admin_keys(&self, key_hash: &str, prefix: &str) -> Result<KeyId>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<Principal>>;
    async fn count_admin_keys(&self) -> Result<u64>;

    /// Creates or replaces an event type.
    async fn put_event_type(&self, org: &OrgId, t: &EventType) -> Result<EventType> {
        let mut saved = self.put_event_types(org, std::slice::from_ref(t)).await?;
        saved.pop().ok_or(StoreError::NotFound(Missing::EventType))
    }
    /// Creates or replaces event types, all or none (a catalog import).
    async fn put_event_types(&self, org: &OrgId, types: &[EventType]) -> Result<Vec<EventType>>;
    async fn get_event_type(&self, org: &OrgId, name: &str) -> Result<EventType>;
    async fn list_event_types(&self, org: &OrgId) -> Result<Vec<EventType>>;
}

/// Endpoints, subscriptions and the routing they make.
#[async_trait]
pub trait EndpointCatalog: Send + Sync {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<Endpoint>;
    async fn get_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<Endpoint>;
    async fn list_endpoints(&self, org: &OrgId) -> Result<Vec<Endpoint>>;
    /// Replaces every field of an existing endpoint (the caller merges a PATCH).
    async fn update_endpoint(&self, ep: &Endpoint) -> Result<Endpoint>;
    /// Deletes the endpoint, its subscriptions and its pending deliveries (marked failed).
    async fn delete_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<()>;

    /// Creates a subscription; with `owned_endpoint`, creates that endpoint in the same
    /// transaction (a subscription with an inline URL).
    async fn create_subscription(
        &self,
        sub: &Subscription,
        owned_endpoint: Option<&Endpoint>,
    ) -> Result<Subscription> {
        let mut saved = self
            .create_subscriptions(std::slice::from_ref(sub), owned_endpoint)
            .await?;
        saved
            .pop()
            .ok_or(StoreError::NotFound(Missing::Subscription))
    }
    /// Creates subscriptions, all or none; with `new_endpoint`, creates that endpoint first in
    /// the same transaction (an inline URL, or a platform's webhook with its subscriptions).
    async fn create_subscriptions(
        &self,
        subs: &[Subscription],
        new_endpoint: Option<&Endpoint>,
    ) -> Result<Vec<Subscription>>;
    async fn get_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<Subscription>;
    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>>;
    /// Deletes the subscription and an endpoint it owns.
    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()>;
    /// The organization's current routing and its version, read in one snapshot.
    async fn routing(&self, org: &OrgId) -> Result<RoutingSnapshot>;
}

/// Executors (every version) and the organization's secrets.
#[async_trait]
pub trait ExecutorCatalog: Send + Sync {
    /// Stores a new version of an executor (the given `version` is ignored) and returns it.
    async fn put_executor(&self, ex: &Executor) -> Result<Executor>;
    /// The latest version.
    async fn get_executor(&self, org: &OrgId, name: &str) -> Result<Executor>;
    async fn list_executors(&self, org: &OrgId) -> Result<Vec<Executor>>;
    /// Every stored version of an executor, newest first (`NotFound` if it has none).
    async fn executor_versions(&self, org: &OrgId, name: &str) -> Result<Vec<Executor>>;
    /// Deletes every version, and the subscriptions that run it.
    async fn delete_executor(&self, org: &OrgId, name: &str) -> Result<()>;
    /// Records where the install of version `version`'s packages stands.
    async fn set_packages_state(
        &self,
        org: &OrgId,
        name: &str,
        version: u32,
        state: &switchyard_core::packages::PackageState,
    ) -> Result<()>;
    /// The keys of the package directories some stored version uses (the rest may go).
    async fn packages_in_use(&self) -> Result<Vec<String>>;
    /// The versions, of every organization, whose packages are `installing` (an install a
    /// stop cut short is started again).
    async fn executors_installing(&self) -> Result<Vec<Executor>>;
    async fn put_secret(&self, org: &OrgId, name: &str, value: &str) -> Result<()>;
    async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<String>>;
    /// Names and update times; never values.
    async fn list_secrets(&self, org: &OrgId) -> Result<Vec<(String, i64)>>;
    async fn delete_secret(&self, org: &OrgId, name: &str) -> Result<()>;
    /// Creates or replaces a synchronous hook; the executor it names must exist (`NotFound`
    /// otherwise, naming it).
    async fn put_sync_hook(&self, hook: &SyncHook) -> Result<SyncHook>;
    async fn get_sync_hook(&self, org: &OrgId, name: &str) -> Result<SyncHook>;
    async fn list_sync_hooks(&self, org: &OrgId) -> Result<Vec<SyncHook>>;
    async fn delete_sync_hook(&self, org: &OrgId, name: &str) -> Result<()>;
}

/// Schedules, and where each one stands: its next fire time, moved on by whoever fired it.
#[async_trait]
pub trait ScheduleCatalog: Send + Sync {
    /// Creates or replaces a schedule (its next fire time included).
    async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule>;
    async fn get_schedule(&self, org: &OrgId, name: &str) -> Result<Schedule>;
    async fn list_schedules(&self, org: &OrgId) -> Result<Vec<Schedule>>;
    async fn delete_schedule(&self, org: &OrgId, name: &str) -> Result<()>;
    /// How many schedules the organization has.
    async fn count_schedules(&self, org: &OrgId) -> Result<u64>;
    /// Schedules of every organization whose next fire time is at or before `now`, earliest
    /// first, at most `limit`.
    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>>;
    /// The earliest next fire time of all schedules, if any fires again.
    async fn next_fire_at(&self) -> Result<Option<i64>>;
    /// Moves a schedule due at `due` on to `next`, recording `fired` as its last fire time if
    /// an event was published for it. Only if it is still due at `due` (another node, or a
    /// change of the schedule, did not move it meanwhile); returns whether it did.
    async fn advance_schedule(
        &self,
        org: &OrgId,
        name: &str,
        due: i64,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<bool>;
}

/// The event log: every event published, append-only, with the trace of what happened to it.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Stores routed events and their deliveries in one durable transaction, if the
    /// organization's routing is still at the batch's version; returns once it is committed.
    /// New deliveries the batch marks are claimed by `claim`.
    async fn publish(
        &self,
        org: &OrgId,
        batch: RoutedBatch,
        claim: Claim<'_>,
    ) -> Result<PublishOutcome>;
    async fn get_event(&self, org: &OrgId, id: &EventId) -> Result<Event>;
    async fn list_events(&self, org: &OrgId, q: &EventQuery) -> Result<Vec<Event>>;
    async fn trace(&self, org: &OrgId, event_id: &EventId) -> Result<Trace>;
    /// Retention: deletes up to `limit` events of `org` received before `before` whose
    /// deliveries are all finished (none pending or blocked), with their deliveries, attempts
    /// and runs, scanning in sequence order after `after_seq`. One short transaction, so
    /// publishing is never held up for long; call it again from `next_after_seq` until `done`.
    async fn purge_events(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<PurgeBatch>;
    /// Payload retention: replaces with `null` the data of up to `limit` events of `org`
    /// received before `before` whose every delivery was delivered (and the input of their
    /// runs), scanning in sequence order after `after_seq` like [`EventLog::purge_events`].
    async fn drop_payloads(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<DropBatch>;
}

/// What one payload-retention batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropBatch {
    /// Payloads dropped.
    pub dropped: u64,
    /// Where the next batch starts.
    pub next_after_seq: i64,
    /// The first event scanned that keeps its payload for now (not every delivery is
    /// delivered yet): a later pass must look at it again.
    pub first_kept: Option<i64>,
    /// No event older than the cutoff is left after `next_after_seq`.
    pub done: bool,
}

/// What one retention batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeBatch {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub runs: u64,
    /// Where the next batch starts.
    pub next_after_seq: i64,
    /// No event older than the cutoff is left after `next_after_seq`.
    pub done: bool,
}

/// What recording a batch of attempts caused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Endpoints disabled (a 410, or the disable policy).
    pub disabled: Vec<DisabledEndpoint>,
    /// Endpoints with deliveries this made due now: the next of an ordered key, or the
    /// retries of an endpoint that answered again after failures.
    pub due_now: Vec<EndpointRef>,
}

/// A manual retry: the delivery as it now is and, if it was claimed at once, the work to hand
/// to the engine.
#[derive(Debug, Clone)]
pub struct Retried {
    pub delivery: Delivery,
    pub claimed: Option<DueDelivery>,
}

/// What [`DeliveryQueue::claim_hooks`] claims.
#[derive(Debug, Clone, Default)]
pub struct HookClaim {
    /// Most hooks claimed in all.
    pub limit: u32,
    /// Most hooks of one organization.
    pub per_org: u32,
    /// Organizations whose hooks are left in the store this time (they have no room).
    pub skip: Vec<OrgId>,
}

/// Organizations one hook claim looks at, at most (the first by id with hooks pending).
pub const HOOK_CLAIM_ORGS: u32 = 1_000;

/// The delivery queue: deliveries waiting, claimed, attempted and finished.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn list_deliveries(&self, org: &OrgId, q: &DeliveryQuery) -> Result<Vec<Delivery>>;
    async fn get_delivery(&self, org: &OrgId, id: &DeliveryId) -> Result<Delivery>;
    /// Enabled endpoints with a delivery due at `now` (at most `limit`), each with its
    /// organization, leaving out those whose lease another node holds past `now`. Deliveries
    /// stay where they are; each endpoint claims its own.
    async fn due_endpoints(&self, node: &str, now: i64, limit: u32) -> Result<Vec<EndpointRef>>;
    /// Claims for `node`, for `lease_ms`, up to `limit` deliveries of one endpoint due at `now`,
    /// oldest first, and only while `node` holds the endpoint's lease past `now` (the fence:
    /// a node whose lease was taken over claims nothing). Of an ordered endpoint only the head
    /// of a key is ever due.
    async fn claim_endpoint(
        &self,
        node: &str,
        endpoint: &EndpointRef,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>>;
    /// Claims deliveries to executors (event hooks) due at `now`: at most `claim.per_org` of
    /// each organization (oldest first), none of the organizations in `claim.skip`, at most
    /// `claim.limit` in all, so that one organization's backlog never hides another's hooks.
    async fn claim_hooks(
        &self,
        node: &str,
        now: i64,
        claim: &HookClaim,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>>;
    /// Makes claimed deliveries due again at once (work handed back at shutdown, or after a
    /// restart: `ids = None` releases everything `node` holds).
    async fn release(&self, node: &str, ids: Option<&[DeliveryId]>) -> Result<u64>;
    /// Records attempts and their outcomes, each scoped to the organization it carries, and
    /// the endpoints' health; disables endpoints the attempts or `policy` say to. Settling the
    /// head of an ordered key makes the key's next delivery due; the first success after
    /// failures makes the endpoint's waiting retries due at once.
    /// `node` is the node that made the attempts (the trace shows it).
    async fn record_attempts(
        &self,
        node: &str,
        results: Vec<AttemptResult>,
        policy: &DisablePolicy,
    ) -> Result<Recorded>;
    /// Makes a delivery pending again with one more attempt. It is claimed by `claim` at once,
    /// unless it must wait for the head of its ordering key.
    async fn retry_delivery(
        &self,
        org: &OrgId,
        id: &DeliveryId,
        claim: Claim<'_>,
    ) -> Result<Retried>;
    /// An endpoint's health, with the attempts made since `since`.
    async fn endpoint_health(
        &self,
        org: &OrgId,
        id: &EndpointId,
        since: i64,
    ) -> Result<EndpointHealth>;
    /// New deliveries to `endpoint_id` for the events received in `[since, until)` that were
    /// delivered to it before: at most `limit` of them with `seq` above `after_seq`, in `seq`
    /// order, in one transaction (a replay is many such calls, so bulk work never holds the
    /// writer long).
    async fn replay(
        &self,
        org: &OrgId,
        endpoint_id: &EndpointId,
        window: ReplayWindow,
    ) -> Result<Replayed>;
    /// Number of pending deliveries (the queue depth).
    async fn pending_count(&self) -> Result<u64>;
}

/// Which node works which endpoint: endpoint leases (only the holder claims an endpoint's
/// deliveries, see [`DeliveryQueue::claim_endpoint`]) and the heartbeats of the nodes that
/// deliver.
#[async_trait]
pub trait NodeLeases: Send + Sync {
    /// Takes for `node`, until `now + lease_ms`, the lease of each of `endpoints` that is free,
    /// expired or already `node`'s (renewing it), and answers those `node` holds now. Taking
    /// over another node's expired lease makes that node's claims on the endpoint's deliveries
    /// due at once: it did not renew, so it is presumed gone.
    async fn take_leases(
        &self,
        node: &str,
        endpoints: &[EndpointId],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<EndpointId>>;
    /// Gives up `node`'s leases: those of `endpoints`, or all of them (and then its heartbeat:
    /// the node stops delivering).
    async fn drop_leases(&self, node: &str, endpoints: Option<&[EndpointId]>) -> Result<u64>;
    /// Records that `node` delivers until `now + lease_ms` and answers, sorted, the nodes that
    /// deliver now (those whose last beat has not run out), `node` included.
    async fn heartbeat(&self, node: &str, now: i64, lease_ms: i64) -> Result<Vec<String>>;
}

/// Per-organization key-value storage for executors.
#[async_trait]
pub trait KvStorage: Send + Sync {
    async fn kv_get(&self, org: &OrgId, key: &str) -> Result<Option<serde_json::Value>>;
    /// Sets `key` to `value`, unless that takes the organization's key-value bytes (keys and
    /// values) past `max_bytes` ([`StoreError::Quota`]; growing only: a smaller value is
    /// always stored).
    async fn kv_set(
        &self,
        org: &OrgId,
        key: &str,
        value: &serde_json::Value,
        max_bytes: u64,
    ) -> Result<()>;
    async fn kv_delete(&self, org: &OrgId, key: &str) -> Result<bool>;
}

/// The run log: every executor run with its input, output and logs.
#[async_trait]
pub trait RunLog: Send + Sync {
    async fn record_run(&self, run: &Run) -> Result<()>;
    async fn get_run(&self, org: &OrgId, id: &RunId) -> Result<Run>;
    async fn runs_for_event(&self, org: &OrgId, event_id: &EventId) -> Result<Vec<Run>>;
    /// Retention: deletes up to `limit` runs of `org` made before `before` that belong to no
    /// event (previews); runs of events go with their events. Returns how many.
    async fn purge_runs(&self, org: &OrgId, before: i64, limit: u32) -> Result<u64>;
}
