//! Subscriptions: which events (types, globs, entity, filter) go to which endpoint.

use crate::AppState;
use crate::endpoints::EndpointIn;
use crate::error::{ApiError, ApiResult, path_id};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use switchyard_core::endpoint::Change;
use switchyard_core::ids::{EndpointId, OrgId, SubscriptionId};
use switchyard_core::time::now_ms;
use switchyard_core::{Endpoint, Mode, Role, Subscription, Target};
use switchyard_wire::List;
pub use switchyard_wire::subscriptions::*;

/// An entity id as given: a string, or a number as its decimal text.
pub fn entity_id_text(v: &Value, field: &str) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() && s.len() <= 200 => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(ApiError::invalid(format!(
            "`{field}` must be a non-empty string or a number"
        ))),
    }
}

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
    let secret = owned.and_then(|e| e.secrets.first().map(|k| k.secret.expose()));
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
    let filter = Subscription::check_matching(&body.event_types, body.filter)?;
    let mode = match body.mode.as_deref() {
        None => Mode::Async,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            ApiError::invalid(format!("`mode` must be `async` or `sync`, not `{m}`"))
        })?,
    };
    let entity_id = match &body.entity_id {
        Some(v) => entity_id_text(v, "entity_id")?,
        None => None,
    };
    if body.all_entities == Some(true) && entity_id.is_some() {
        return Err(ApiError::invalid(
            "give `entity_id` or `all_entities: true`, not both",
        ));
    }
    if body.all_entities == Some(false) && entity_id.is_none() {
        return Err(ApiError::invalid(
            "`all_entities: false` needs an `entity_id`",
        ));
    }
    let sub_id = SubscriptionId::generate();
    let inline = body.profile.is_some()
        || body.headers.is_some()
        || body.custom_header.is_some()
        || body.token.is_some()
        || body.insecure_tls.is_some()
        || body.timeout_ms.is_some()
        || body.retry_schedule_s.is_some();
    let (target, owned) = match (body.endpoint_id, body.url, body.executor) {
        (None, None, Some(name)) => {
            if inline {
                return Err(ApiError::invalid(
                    "delivery settings do not apply to an executor subscription",
                ));
            }
            (Target::Executor(name), None)
        }
        (Some(ep), None, None) => {
            if inline {
                return Err(ApiError::invalid(
                    "delivery settings belong to the endpoint; with `endpoint_id` change them there",
                ));
            }
            let id = EndpointId::parse(&ep)
                .ok_or_else(|| ApiError::invalid(format!("endpoint `{ep}` does not exist")))?;
            (Target::Endpoint(id), None)
        }
        (None, Some(url), None) => {
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
            let mut ep = Endpoint::new(org, now_ms());
            ep.description = format!("inline URL of subscription {sub_id}");
            ep.owner_subscription = Some(sub_id.clone());
            let settings = EndpointIn {
                url: Some(url),
                profile: body.profile,
                headers: Some(headers),
                token: body.token.map(Some),
                token_header: body.token_header.map(Some),
                insecure_tls: body.insecure_tls,
                timeout_ms: body.timeout_ms,
                retry_schedule_s: body.retry_schedule_s.map(Some),
                ..Default::default()
            };
            ep.apply(settings.into(), Change::Create, s.hub.clients().policy())?;
            (Target::Endpoint(ep.id.clone()), Some(ep))
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `endpoint_id`, `url` and `executor`",
            ));
        }
    };
    let sub = Subscription {
        id: sub_id,
        org_id: org.clone(),
        event_types: body.event_types,
        target,
        entity_id,
        filter,
        mode,
        created_at: now_ms(),
    };
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
