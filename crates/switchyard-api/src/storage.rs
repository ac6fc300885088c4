//! An organization's key-value storage (what its executors keep with `sdk.storage`): read by
//! viewers, written by publishers.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::Role;
pub use switchyard_wire::storage::*;

/// Read one key of the organization's storage.
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/storage/{key}", responses((status = 200, body = StorageOut), (status = 404)))]
pub async fn get_storage(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, key)): Path<(String, String)>,
) -> ApiResult<Json<StorageOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    match s.hub.storage_get(&org, &key).await? {
        Some(value) => Ok(Json(StorageOut { key, value })),
        None => Err(ApiError::not_found("storage key")),
    }
}

/// Store a JSON value under a key (at most 256 KiB; the organization's `kv_bytes` in all).
#[utoipa::path(put, tag = "executors", path = "/v1/orgs/{org}/storage/{key}", request_body = StorageIn, responses((status = 200, body = StorageOut)))]
pub async fn put_storage(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, key)): Path<(String, String)>,
    JsonBody(body): JsonBody<StorageIn>,
) -> ApiResult<Json<StorageOut>> {
    let org = s.authorize(&p, org, Role::Publisher).await?;
    s.hub.storage_set(&org, &key, &body.value).await?;
    Ok(Json(StorageOut {
        key,
        value: body.value,
    }))
}

/// Delete a key.
#[utoipa::path(delete, tag = "executors", path = "/v1/orgs/{org}/storage/{key}", responses((status = 204), (status = 404)))]
pub async fn delete_storage(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Publisher).await?;
    if s.hub.storage_delete(&org, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("storage key"))
    }
}
