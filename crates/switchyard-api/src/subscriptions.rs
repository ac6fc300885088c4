//! Subscriptions: which events (types, globs, entity, filter) go to which endpoint.

use crate::AppState;
use crate::endpoints::EndpointIn;
use crate::error::{ApiError, ApiResult, path_id};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::ids::{OrgId, SubscriptionId};
use switchyard_core::subscription::SubscriptionDefinition;
use switchyard_core::time::now_ms;
use switchyard_core::{Endpoint, Role, Subscription};
use switchyard_wire::List;
pub use switchyard_wire::subscriptions::*;

/// Subscribe an endpoint (or a URL) to events.
#[utoipa::path(post, tag = "subscriptions", path = "/v1/orgs/{org}/subscriptions", request_body = SubscriptionIn,
    responses((status = 201, body = SubscriptionOut), (status = 422, description = "invalid subscription")))]
pub async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<SubscriptionIn>,
) -> ApiResult<(StatusCode, Json<SubscriptionOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let (saved, owned) = create_from(&s, &org, body).await?;
    let secret = owned.and_then(|e| e.secrets().first().map(|k| k.secret.expose()));
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionOut::from(saved, secret)),
    ))
}

/// Checks and stores a subscription (with the endpoint of its inline URL, which it returns),
/// and tells the hub its routing changed. The caller has authorized the request.
pub(crate) async fn create_from(
    s: &AppState,
    org: &OrgId,
    body: SubscriptionIn,
) -> ApiResult<(Subscription, Option<Endpoint>)> {
    let inline = body.profile.is_some()
        || body.headers.is_some()
        || body.custom_header.is_some()
        || body.token.is_some()
        || body.insecure_tls.is_some()
        || body.timeout_ms.is_some()
        || body.retry_schedule_s.is_some();
    let delivery = if inline {
        let mut headers = body.headers.unwrap_or_default();
        match (body.custom_header, body.custom_header_value) {
            (Some(h), Some(v)) => {
                headers.insert(h, v);
            }
            (None, None) => {}
            _ => {
                return Err(ApiError::invalid(
                    "`custom_header` and `custom_header_value` go together",
                ));
            }
        }
        let settings = EndpointIn {
            profile: body.profile,
            headers: Some(headers),
            token: body.token.map(Some),
            token_header: body.token_header.map(Some),
            insecure_tls: body.insecure_tls,
            timeout_ms: body.timeout_ms,
            retry_schedule_s: body.retry_schedule_s.map(Some),
            ..Default::default()
        };
        Some(settings.into())
    } else {
        None
    };
    let def = SubscriptionDefinition {
        event_types: body.event_types,
        filter: body.filter,
        mode: body.mode,
        entity_id: body.entity_id,
        all_entities: body.all_entities,
        endpoint_id: body.endpoint_id,
        url: body.url,
        executor: body.executor,
        delivery,
        url_description: None,
    };
    let (sub, owned) = Subscription::define(org, def, now_ms(), s.hub.clients().policy())?;
    let saved = s.hub.create_subscription(&sub, owned.as_ref()).await?;
    Ok((saved, owned))
}

/// List subscriptions.
#[utoipa::path(get, tag = "subscriptions", path = "/v1/orgs/{org}/subscriptions", responses((status = 200, body = List<SubscriptionOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<SubscriptionOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let subs = s.reads.list_subscriptions(&org).await?;
    Ok(Json(List::whole(
        subs.into_iter()
            .map(|x| SubscriptionOut::from(x, None))
            .collect(),
    )))
}

/// Read a subscription.
#[utoipa::path(get, tag = "subscriptions", path = "/v1/orgs/{org}/subscriptions/{id}", responses((status = 200, body = SubscriptionOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<SubscriptionOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let sub = s
        .reads
        .get_subscription(&org, &path_id(SubscriptionId::parse(&id), "subscription")?)
        .await?;
    Ok(Json(SubscriptionOut::from(sub, None)))
}

/// Delete a subscription (and the endpoint made for its inline URL).
#[utoipa::path(delete, tag = "subscriptions", path = "/v1/orgs/{org}/subscriptions/{id}", responses((status = 204)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub
        .delete_subscription(&org, &path_id(SubscriptionId::parse(&id), "subscription")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
