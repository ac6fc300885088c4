//! Deliveries: listing by status and endpoint, reading one, retrying one now.

use crate::AppState;
use crate::error::{ApiError, ApiResult, path_id};
use crate::events::DeliveryOut;
use crate::extract::{Auth, Query};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::ids::DeliveryId;
use switchyard_core::{DeliveryStatus, Role};
use switchyard_hub::DeliveryQuery;
pub use switchyard_wire::deliveries::*;

/// List deliveries, newest first.
#[utoipa::path(get, tag = "deliveries", path = "/v1/orgs/{org}/deliveries",
    params(("status" = Option<String>, Query), ("endpoint_id" = Option<String>, Query), ("event_id" = Option<String>, Query),
           ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = DeliveryPage)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<DeliveryPage>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let status = q
        .status
        .as_deref()
        .map(|st| {
            DeliveryStatus::parse(st)
                .ok_or_else(|| ApiError::bad_request("`status` is pending, delivered or failed"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let query = DeliveryQuery {
        status,
        endpoint_id: q.endpoint_id,
        event_id: q.event_id,
        before_id: q.cursor,
        limit,
    };
    let ds = s.reads.list_deliveries(&org, &query).await?;
    let next_cursor = if ds.len() as u32 == limit {
        ds.last().map(|d| d.id.as_str().to_owned())
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        data: ds.iter().map(|d| DeliveryOut::from(d, None)).collect(),
        next_cursor,
    }))
}

/// Read one delivery.
#[utoipa::path(get, tag = "deliveries", path = "/v1/orgs/{org}/deliveries/{id}", responses((status = 200, body = DeliveryOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let d = s
        .reads
        .get_delivery(&org, &path_id(DeliveryId::parse(&id), "delivery")?)
        .await?;
    Ok(Json(DeliveryOut::from(&d, None)))
}

/// Attempt a delivery again now (one more attempt; a failed delivery becomes pending).
#[utoipa::path(post, tag = "deliveries", path = "/v1/orgs/{org}/deliveries/{id}/retry", responses((status = 202, body = DeliveryOut)))]
pub async fn retry(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let d = s
        .hub
        .retry_delivery(&org, &path_id(DeliveryId::parse(&id), "delivery")?)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryOut::from(&d, None))))
}
