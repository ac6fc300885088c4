//! Endpoints: where and how webhooks are sent, their signing secrets, rotation and replay.

use crate::AppState;
use crate::error::{ApiError, ApiResult, endpoint_id};
use crate::extract::{Auth, JsonBody, OptionalJson};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use switchyard_core::endpoint::{Change, Rotation};
use switchyard_core::ids::OrgId;
use switchyard_core::signing::{Scheme, SigningSecret};
use switchyard_core::time::{now_ms, parse_rfc3339};
use switchyard_core::{Endpoint, Role};
use switchyard_wire::List;
pub use switchyard_wire::endpoints::*;

/// Create an endpoint. The answer carries its signing secret, once.
#[utoipa::path(post, tag = "endpoints", path = "/v1/orgs/{org}/endpoints", request_body = EndpointIn,
    responses((status = 201, body = EndpointOut), (status = 422, description = "invalid settings")))]
pub async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let mut ep = Endpoint::new(&org, now_ms());
    ep.apply(body.into(), Change::Create, s.hub.clients().policy())?;
    let ep = s.hub.create_endpoint(&ep).await?;
    Ok((StatusCode::CREATED, Json(EndpointOut::from(&ep, true))))
}

/// List endpoints.
#[utoipa::path(get, tag = "endpoints", path = "/v1/orgs/{org}/endpoints", responses((status = 200, body = List<EndpointOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<EndpointOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let eps = s.reads.list_endpoints(&org).await?;
    Ok(Json(List::whole(
        eps.iter()
            .map(|e| EndpointOut::from(e, false).for_reader(&p, &org))
            .collect(),
    )))
}

async fn load(s: &AppState, org: &OrgId, id: &str) -> ApiResult<Endpoint> {
    Ok(s.reads.get_endpoint(org, &endpoint_id(id)?).await?)
}

/// Read an endpoint (without its secret).
#[utoipa::path(get, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}", responses((status = 200, body = EndpointOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    Ok(Json(
        EndpointOut::from(&load(&s, &org, &id).await?, false).for_reader(&p, &org),
    ))
}

/// Change some settings of an endpoint.
#[utoipa::path(patch, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}", request_body = EndpointIn, responses((status = 200, body = EndpointOut)))]
pub async fn patch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EndpointIn>,
) -> ApiResult<Json<EndpointOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let mut ep = load(&s, &org, &id).await?;
    ep.apply(body.into(), Change::Patch, s.hub.clients().policy())?;
    ep.updated_at = now_ms();
    let ep = s.hub.update_endpoint(&ep).await?;
    Ok(Json(EndpointOut::from(&ep, false)))
}

/// Delete an endpoint with its subscriptions; its pending deliveries become `failed`.
#[utoipa::path(delete, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}", responses((status = 204)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub.delete_endpoint(&org, &endpoint_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret. The previous one keeps signing beside it for 24 hours, so both
/// signatures are in `webhook-signature` while receivers switch over.
#[utoipa::path(post, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}/rotate-secret", request_body = RotateIn,
    responses((status = 200, body = EndpointOut)))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> ApiResult<Json<EndpointOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let mut ep = load(&s, &org, &id).await?;
    let rotation =
        Rotation {
            secret: body.secret.map(|x| SigningSecret::parse(&x)).transpose()?,
            scheme: body
                .signing
                .as_deref()
                .map(Scheme::parse_setting)
                .transpose()?,
            old_expires_at: match body.old_expires_at.as_deref() {
                None => None,
                Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
                    ApiError::invalid("`old_expires_at` must be an RFC 3339 time")
                })?),
            },
        };
    ep.rotate_secret(rotation, now_ms())?;
    let ep = s.hub.update_endpoint(&ep).await?;
    Ok(Json(EndpointOut::from(&ep, true)))
}

/// How the endpoint has been answering: failures in a row, last success and failure, and over
/// a recent window the success rate and latency percentiles.
#[utoipa::path(get, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}/health", params(HealthQuery),
    responses((status = 200, body = EndpointHealthOut)))]
pub async fn health(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<HealthQuery>,
) -> ApiResult<Json<EndpointHealthOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let window_s = q.window_s.unwrap_or(3600);
    if window_s == 0 || window_s > 30 * 86_400 {
        return Err(ApiError::invalid("`window_s` must be 1–2592000"));
    }
    let ep = load(&s, &org, &id).await?;
    let h = s
        .reads
        .endpoint_health(&org, &ep.id, now_ms() - window_s as i64 * 1000)
        .await?;
    Ok(Json(EndpointHealthOut::from(&ep, &h)))
}

/// Deliver again every event published in `[since, until)` that went to this endpoint before.
#[utoipa::path(post, tag = "endpoints", path = "/v1/orgs/{org}/endpoints/{id}/replay", request_body = ReplayIn,
    responses((status = 202, body = ReplayOut)))]
pub async fn replay(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ReplayIn>,
) -> ApiResult<(StatusCode, Json<ReplayOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let since = parse_rfc3339(&body.since)
        .ok_or_else(|| ApiError::invalid("`since` must be an RFC 3339 time"))?;
    let until = match &body.until {
        Some(u) => {
            parse_rfc3339(u).ok_or_else(|| ApiError::invalid("`until` must be an RFC 3339 time"))?
        }
        None => now_ms() + 1,
    };
    if until <= since {
        return Err(ApiError::invalid("`until` must be after `since`"));
    }
    let n = s.hub.replay(&org, &endpoint_id(&id)?, since, until).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayOut { deliveries: n })))
}
