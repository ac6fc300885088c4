//! The read-only handle the hub hands out (`Hub::reads`): what a front may read of the store,
//! and nothing it could write. Writes go through the hub's own methods (`catalog.rs`,
//! `access.rs`, publish, replay…), which keep its caches and the other nodes current.

use std::sync::Arc;
use switchyard_core::executor::{Executor, Run};
use switchyard_core::health::EndpointHealth;
use switchyard_core::ids::{DeliveryId, EndpointId, EventId, OrgId, RunId, SubscriptionId};
use switchyard_core::{
    ApiKeyInfo, Delivery, Endpoint, Event, EventType, Org, Schedule, Subscription, SyncHook,
};
use switchyard_store::{DeliveryQuery, EventQuery, Store, StoreError, Trace};

/// Reads of the hub's store. Cheap to clone.
#[derive(Clone)]
pub struct Reads(pub(crate) Arc<dyn Store>);

/// Each read is the store's own, passed through.
macro_rules! reads {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        impl Reads {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                    self.0.$name($($arg),*).await
                }
            )*
        }
    };
}

reads! {
    get_org(id: &OrgId) -> Org;
    list_orgs() -> Vec<Org>;
    /// An organization's keys: ids, prefixes, roles and use; never the keys.
    list_api_keys(org: &OrgId) -> Vec<ApiKeyInfo>;
    get_event_type(org: &OrgId, name: &str) -> EventType;
    list_event_types(org: &OrgId) -> Vec<EventType>;
    get_endpoint(org: &OrgId, id: &EndpointId) -> Endpoint;
    list_endpoints(org: &OrgId) -> Vec<Endpoint>;
    /// How an endpoint has been answering since `since`.
    endpoint_health(org: &OrgId, id: &EndpointId, since: i64) -> EndpointHealth;
    get_subscription(org: &OrgId, id: &SubscriptionId) -> Subscription;
    list_subscriptions(org: &OrgId) -> Vec<Subscription>;
    list_events(org: &OrgId, q: &EventQuery) -> Vec<Event>;
    /// An event with its deliveries and their attempts.
    trace(org: &OrgId, event_id: &EventId) -> Trace;
    get_delivery(org: &OrgId, id: &DeliveryId) -> Delivery;
    list_deliveries(org: &OrgId, q: &DeliveryQuery) -> Vec<Delivery>;
    /// Deliveries not yet finished, every organization's.
    pending_count() -> u64;
    /// The latest version of an executor.
    get_executor(org: &OrgId, name: &str) -> Executor;
    list_executors(org: &OrgId) -> Vec<Executor>;
    /// Every stored version of an executor, newest first.
    executor_versions(org: &OrgId, name: &str) -> Vec<Executor>;
    get_run(org: &OrgId, id: &RunId) -> Run;
    runs_for_event(org: &OrgId, event_id: &EventId) -> Vec<Run>;
    /// Secret names and update times; never values.
    list_secrets(org: &OrgId) -> Vec<(String, i64)>;
    get_sync_hook(org: &OrgId, name: &str) -> SyncHook;
    list_sync_hooks(org: &OrgId) -> Vec<SyncHook>;
    get_schedule(org: &OrgId, name: &str) -> Schedule;
    list_schedules(org: &OrgId) -> Vec<Schedule>;
    count_schedules(org: &OrgId) -> u64;
    /// Whether the store can write now (readiness).
    probe_write() -> ();
}

impl Reads {
    /// Whether the store's last write failed for want of space (readiness).
    pub fn storage_full(&self) -> bool {
        self.0.storage_full()
    }
}
