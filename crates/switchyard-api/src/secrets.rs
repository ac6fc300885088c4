//! Secrets: stored encrypted, listed by name, never returned.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::Role;
use switchyard_core::ids::is_valid_name;
use switchyard_core::time::to_rfc3339;
use switchyard_wire::List;
pub use switchyard_wire::secrets::*;

/// Store a secret (encrypted at rest; never returned).
#[utoipa::path(put, tag = "executors", path = "/v1/orgs/{org}/secrets/{name}", request_body = SecretIn, responses((status = 200, body = SecretOut)))]
pub async fn put_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<SecretIn>,
) -> ApiResult<Json<SecretOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    if !is_valid_name(&name, 100) {
        return Err(ApiError::invalid(
            "secret names are 1–100 characters of letters, digits and -_.:@",
        ));
    }
    if body.value.is_empty() || body.value.len() > 64 * 1024 {
        return Err(ApiError::invalid("a secret value is 1 byte to 64 KiB"));
    }
    s.hub.put_secret(&org, &name, &body.value).await?;
    Ok(Json(SecretOut {
        name,
        updated_at: to_rfc3339(switchyard_core::time::now_ms()),
    }))
}

/// List secret names (never values).
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/secrets", responses((status = 200, body = List<SecretOut>)))]
pub async fn list_secrets(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<SecretOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let names = s.reads.list_secrets(&org).await?;
    Ok(Json(List::whole(
        names
            .into_iter()
            .map(|(name, at)| SecretOut {
                name,
                updated_at: to_rfc3339(at),
            })
            .collect(),
    )))
}

/// Delete a secret.
#[utoipa::path(delete, tag = "executors", path = "/v1/orgs/{org}/secrets/{name}", responses((status = 204)))]
pub async fn delete_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub.delete_secret(&org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
