//! Switchyard's HTTP API: the axum router, authentication, the JSON wire format and OpenAPI.
//!
//! Only this crate knows the wire format: handlers parse requests into domain values at the
//! edge (`XIn` types), call the hub (or read the store), and render `XOut` types. Each
//! resource lives in its own module with its handlers and wire types.

mod catalogs;
mod compat;
mod console;
mod deliveries;
mod endpoints;
mod error;
mod event_types;
mod events;
mod executors;
mod extract;
mod ops;
mod orgs;
mod runs;
mod schedules;
mod secrets;
mod subscriptions;
mod sync_hooks;
mod tail;

pub use error::{ApiError, ApiResult};
pub use ops::metrics_handle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::crypto::hash_api_key;
use switchyard_core::ids::OrgId;
use switchyard_core::time::now_ms;
use switchyard_core::{Principal, Role};
use switchyard_hub::Hub;
use switchyard_store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Limits the API enforces on input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted event (its JSON as sent), and the body limit of a single publish.
    pub max_event_bytes: usize,
    /// Most events in one batch publish.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 256 * 1024,
            max_batch: 1000,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    /// The hub: publishing, routing, deliveries, executors.
    pub hub: Hub,
    /// The hub's store, for reads and catalog writes.
    pub store: Arc<dyn Store>,
    /// Hash of the operator-given `SWITCHYARD_ADMIN_KEY`, if any.
    pub admin_key_hash: Option<String>,
    pub limits: Limits,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Authenticated keys by hash, with when their use was last recorded. A revoked key is
    /// removed at once ([`StateInner::forget_key`]).
    keys: RwLock<HashMap<String, CachedKey>>,
    /// Organizations known to exist (for the instance admin's requests).
    orgs: RwLock<HashSet<String>>,
    /// Live streams open, per key and per organization (each is capped).
    pub(crate) streams: Arc<tail::Open>,
}

/// A key that authenticated, and when its use was last written to the store.
#[derive(Clone)]
struct CachedKey {
    principal: Principal,
    touched: Instant,
}

/// How often a key's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        hub: Hub,
        admin_key: Option<&str>,
        limits: Limits,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> AppState {
        let changes = hub.changes();
        let state = AppState(Arc::new(StateInner {
            store: hub.store().clone(),
            hub,
            admin_key_hash: admin_key.map(hash_api_key),
            limits,
            metrics,
            keys: RwLock::new(HashMap::new()),
            orgs: RwLock::new(HashSet::new()),
            streams: Arc::default(),
        }));
        tokio::spawn(follow_changes(Arc::downgrade(&state.0), changes));
        state
    }

    async fn authenticate(&self, key: &str) -> ApiResult<Principal> {
        let hash = hash_api_key(key);
        if self.admin_key_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal {
                org: None,
                role: Role::Admin,
                key_id: switchyard_core::ids::KeyId::stored("env-admin".into()),
            });
        }
        let cached = self.keys.read().ok().and_then(|k| k.get(&hash).cloned());
        // A key is read from the store again once a minute (and its use recorded then): a
        // revocation that this node did not hear of takes effect within that minute.
        if let Some(c) = cached.filter(|c| c.touched.elapsed() < TOUCH_EVERY) {
            return Ok(c.principal);
        }
        match self.store.find_api_key(&hash).await? {
            Some(p) => {
                if let Ok(mut k) = self.keys.write() {
                    k.insert(
                        hash,
                        CachedKey {
                            principal: p.clone(),
                            touched: Instant::now(),
                        },
                    );
                }
                self.touch(&p.key_id);
                Ok(p)
            }
            None => {
                if let Ok(mut k) = self.keys.write() {
                    k.remove(&hash);
                }
                Err(ApiError::unauthorized())
            }
        }
    }

    /// Records a key's use without making the request wait for it.
    fn touch(&self, key_id: &switchyard_core::ids::KeyId) {
        let (store, id) = (self.store.clone(), key_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, now_ms()).await {
                tracing::debug!(error = %e, "recording a key's use failed");
            }
        });
    }

    /// Drops a revoked key from the cache of every node, so its next request is refused.
    pub fn forget_key(&self, key_id: &str) {
        self.drop_key(key_id);
        self.hub.key_revoked(key_id);
    }

    fn drop_key(&self, key_id: &str) {
        if let Ok(mut k) = self.keys.write() {
            k.retain(|_, c| c.principal.key_id != key_id);
        }
    }

    /// Lets `p` act in `org` with at least `role`, and answers the organization's id. A key of
    /// another organization gets 404, as if the organization did not exist, so ids do not leak
    /// across tenants; so does an id that cannot be an organization's.
    pub async fn authorize(&self, p: &Principal, org: String, role: Role) -> ApiResult<OrgId> {
        let org = OrgId::parse_owned(org).ok_or_else(|| ApiError::not_found("organization"))?;
        match &p.org {
            Some(own) if *own != org => Err(ApiError::not_found("organization")),
            Some(_) if p.role < role => Err(ApiError::forbidden(format!(
                "this key's role `{}` may not do this (needs `{}`)",
                p.role.as_str(),
                role.as_str()
            ))),
            Some(_) => Ok(org),
            None => {
                if self.orgs.read().is_ok_and(|o| o.contains(org.as_str())) {
                    return Ok(org);
                }
                self.store
                    .get_org(&org)
                    .await
                    .map_err(|e| ApiError::from_store(e, "organization"))?;
                if let Ok(mut o) = self.orgs.write() {
                    o.insert(org.as_str().to_owned());
                }
                Ok(org)
            }
        }
    }
}

/// Applies to the API's caches what any node changed (revoked keys),
/// for as long as the state lives.
async fn follow_changes(
    state: std::sync::Weak<StateInner>,
    mut changes: tokio::sync::broadcast::Receiver<switchyard_store::Notice>,
) {
    use switchyard_store::Notice;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let notice = match changes.recv().await {
            Ok(n) => n,
            // Fell behind: some changes were missed, so all of them may have happened.
            Err(RecvError::Lagged(_)) => Notice::Lost,
            Err(RecvError::Closed) => return,
        };
        let Some(s) = state.upgrade().map(AppState) else {
            return;
        };
        match notice {
            Notice::Key { key_id } => s.drop_key(&key_id),
            Notice::Lost => {
                if let Ok(mut k) = s.keys.write() {
                    k.clear();
                }
                if let Ok(mut o) = s.orgs.write() {
                    o.clear();
                }
            }
            _ => {}
        }
    }
}

/// Every documented route, each registered once: the router and the OpenAPI document both come
/// from here.
fn api_routes(limits: &Limits) -> OpenApiRouter<AppState> {
    let max_event = limits.max_event_bytes;
    let batch_limit = (limits.max_event_bytes * 4).max(32 * 1024 * 1024);
    let publish = OpenApiRouter::new()
        .routes(routes!(events::publish, events::list))
        .routes(routes!(compat::enreach_publish))
        .routes(routes!(compat::enate_publish))
        .layer(DefaultBodyLimit::max(max_event));
    let batch = OpenApiRouter::new()
        .routes(routes!(events::publish_batch))
        .layer(DefaultBodyLimit::max(batch_limit));
    OpenApiRouter::with_openapi(<ops::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(orgs::whoami))
        .routes(routes!(orgs::create, orgs::list))
        .routes(routes!(orgs::get, orgs::patch))
        .routes(routes!(orgs::get_limits, orgs::put_limits))
        .routes(routes!(orgs::create_key, orgs::list_keys))
        .routes(routes!(orgs::revoke_key))
        .routes(routes!(event_types::list))
        .routes(routes!(event_types::put, event_types::get))
        .routes(routes!(endpoints::create, endpoints::list))
        .routes(routes!(endpoints::get, endpoints::patch, endpoints::delete))
        .routes(routes!(endpoints::rotate_secret))
        .routes(routes!(endpoints::replay))
        .routes(routes!(endpoints::health))
        .routes(routes!(subscriptions::create, subscriptions::list))
        .routes(routes!(subscriptions::get, subscriptions::delete))
        .routes(routes!(tail::stream))
        .routes(routes!(events::trace))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::retry))
        .routes(routes!(executors::list))
        .routes(routes!(executors::put, executors::get, executors::delete))
        .routes(routes!(executors::versions))
        .routes(routes!(runs::run))
        .routes(routes!(runs::get_run))
        .routes(routes!(secrets::list_secrets))
        .routes(routes!(secrets::put_secret, secrets::delete_secret))
        .routes(routes!(sync_hooks::presets))
        .routes(routes!(sync_hooks::list))
        .routes(routes!(
            sync_hooks::put,
            sync_hooks::get,
            sync_hooks::delete
        ))
        .routes(routes!(sync_hooks::call))
        .routes(routes!(sync_hooks::empty_cache))
        .routes(routes!(schedules::presets))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::put, schedules::get, schedules::delete))
        .routes(routes!(catalogs::list))
        .routes(routes!(catalogs::get))
        .routes(routes!(catalogs::import))
        .routes(routes!(compat::enreach_create, compat::enreach_list))
        .routes(routes!(compat::enreach_delete))
        .routes(routes!(compat::enate_create, compat::enate_list))
        .routes(routes!(compat::enate_delete))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .merge(publish)
        .merge(batch)
}

/// The whole API. Kept apart from binding a socket so tests can serve it on any listener.
pub fn router(state: AppState) -> Router {
    // The document is rendered on first request, not at start: most hubs never serve it.
    let api: Router<AppState> = api_routes(&state.limits).into();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .merge(api)
        .merge(console::routes())
        .fallback(ops::not_found)
        .route_layer(axum::middleware::from_fn(ops::track))
        .layer(axum::middleware::from_fn(ops::no_sniff_no_store))
        .with_state(state)
}

/// What a node of the `worker` role serves: health, readiness and metrics, nothing of the API.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .route_layer(axum::middleware::from_fn(ops::track))
        .layer(axum::middleware::from_fn(ops::no_sniff_no_store))
        .with_state(state)
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ops::finish(api_routes(&Limits::default()).split_for_parts().1)
}
