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
mod mcp;
mod ops;
mod orgs;
mod runs;
mod schedules;
mod secrets;
mod storage;
mod subscriptions;
mod sync_hooks;
mod tail;

pub use error::{ApiError, ApiResult};
pub use ops::metrics_handle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::ops::Deref;
use std::sync::Arc;
use switchyard_core::crypto::hash_api_key;
use switchyard_core::ids::OrgId;
use switchyard_core::{Principal, Role};
use switchyard_hub::{Hub, Reads};
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
    /// What handlers may read of the hub's store (writes go through the hub).
    pub reads: Reads,
    /// Hash of the operator-given `SWITCHYARD_ADMIN_KEY`, if any.
    pub admin_key_hash: Option<String>,
    pub limits: Limits,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Live streams open, per key and per organization (each is capped).
    pub(crate) streams: Arc<tail::Open>,
}

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
        AppState(Arc::new(StateInner {
            reads: hub.reads(),
            hub,
            admin_key_hash: admin_key.map(hash_api_key),
            limits,
            metrics,
            streams: Arc::default(),
        }))
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
        self.hub
            .principal_of(&hash)
            .await?
            .ok_or_else(ApiError::unauthorized)
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
                self.hub.org_exists(&org).await?;
                Ok(org)
            }
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
        .routes(routes!(
            storage::get_storage,
            storage::put_storage,
            storage::delete_storage
        ))
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
        .route("/v1/orgs/{org}/mcp", axum::routing::any(mcp::serve))
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
