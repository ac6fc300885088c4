//! The platforms' own shapes, accepted verbatim: Enreach's webhook configuration and events
//! (seed 003) and Enate's webhook subscriptions and messages (seed 004), mapped onto
//! endpoints, subscriptions and events through the same rules as the rest of the API.

use crate::AppState;
use crate::endpoints::EndpointIn;
use crate::error::{ApiError, ApiResult, path_id};
use crate::events::{PublishedOut, parse_json, publish_one};
use crate::extract::{Auth, JsonBody, RawBody};
use crate::subscriptions::{SubscriptionIn, create_from};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use switchyard_core::endpoint::Change;
use switchyard_core::enreach::{SubscriptionSpec, guid, id_from_guid};
use switchyard_core::ids::{EndpointId, SubscriptionId};
use switchyard_core::subscription::SubscriptionDefinition;
use switchyard_core::time::now_ms;
use switchyard_core::{Endpoint, Profile, Role, Subscription, enate, enreach};
pub use switchyard_wire::compat::*;

/// An id as given in a platform's path: the GUID we answered with, or our own id.
fn our_id(prefix: &str, given: &str) -> String {
    id_from_guid(prefix, given).unwrap_or_else(|| given.to_string())
}

fn enreach_out(ep: &Endpoint, subs: &[&Subscription]) -> EnreachConfigOut {
    EnreachConfigOut {
        id: guid(&ep.id),
        webhook: EnreachWebhookOut {
            endpoint: ep.url().to_string(),
            insecure_ssl: ep.insecure_tls,
            secret_set: ep.token().is_some(),
            endpoint_id: ep.id.as_str().to_owned(),
        },
        subscriptions: subs
            .iter()
            .flat_map(|sub| {
                sub.event_types().iter().map(|t| EnreachSubscriptionOut {
                    id: guid(&sub.id),
                    event_type: t.clone(),
                    entity_id: sub.entity_id().map(str::to_string),
                    all_entities: sub.entity_id().is_none().then_some(true),
                })
            })
            .collect(),
    }
}

/// Configure an Enreach webhook as seed 003 does: `{"Webhook": {"Endpoint", "InsecureSSL",
/// "Secret"}, "Subscriptions": [{"EventType", "EntityId" | "AllEntities"}]}`. It becomes one
/// `enreach` endpoint (the Secret in `X-Benemen-Token`) and a subscription per entry, stored
/// together or not at all.
#[utoipa::path(post, tag = "compat", path = "/v1/orgs/{org}/compat/enreach/webhooks", request_body = EnreachConfigIn,
    responses((status = 201, body = EnreachConfigOut), (status = 422, description = "invalid configuration, naming the field")))]
pub async fn enreach_create(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<EnreachConfigIn>,
) -> ApiResult<(StatusCode, Json<EnreachConfigOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let specs = body
        .subscriptions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            SubscriptionSpec::check(
                &x.event_type,
                x.entity_id.as_deref(),
                x.all_entities,
                &format!("Subscriptions[{i}]"),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = now_ms();
    let mut ep = Endpoint::new(&org, now);
    let settings = EndpointIn {
        url: Some(body.webhook.endpoint),
        description: Some("Enreach webhook".into()),
        profile: Some(Profile::Enreach.as_str().into()),
        token: body.webhook.secret.map(Some),
        insecure_tls: Some(body.webhook.insecure_ssl),
        ..Default::default()
    };
    ep.apply(settings.into(), Change::Create, s.hub.clients().policy())
        .map_err(|e| ApiError::from(e).in_field("`url`", "Webhook.Endpoint"))?;
    let subs = specs
        .into_iter()
        .map(|spec| {
            let def = SubscriptionDefinition {
                event_types: vec![spec.event_type],
                entity_id: spec.entity_id.map(serde_json::Value::String),
                endpoint_id: Some(ep.id.to_string()),
                ..Default::default()
            };
            Subscription::define(&org, def, now, s.hub.clients().policy()).map(|(sub, _)| sub)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let saved = s.hub.create_subscriptions(&org, &subs, Some(&ep)).await?;
    let refs: Vec<&Subscription> = saved.iter().collect();
    Ok((StatusCode::CREATED, Json(enreach_out(&ep, &refs))))
}

/// The organization's Enreach webhooks (its `enreach` endpoints) with their subscriptions.
#[utoipa::path(get, tag = "compat", path = "/v1/orgs/{org}/compat/enreach/webhooks", responses((status = 200, body = Vec<EnreachConfigOut>)))]
pub async fn enreach_list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<EnreachConfigOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let subs = s.reads.list_subscriptions(&org).await?;
    let eps = s.reads.list_endpoints(&org).await?;
    let out = eps
        .iter()
        .filter(|ep| ep.profile() == Profile::Enreach && ep.owner_subscription.is_none())
        .map(|ep| {
            let mine: Vec<&Subscription> = subs
                .iter()
                .filter(|x| x.target().endpoint_id() == Some(&ep.id))
                .collect();
            enreach_out(ep, &mine)
        })
        .collect();
    Ok(Json(out))
}

/// Delete an Enreach webhook (by the `Id` it was answered with) and its subscriptions.
#[utoipa::path(delete, tag = "compat", path = "/v1/orgs/{org}/compat/enreach/webhooks/{id}", responses((status = 204)))]
pub async fn enreach_delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let id = EndpointId::parse(&our_id("ep", &id))
        .ok_or_else(|| ApiError::not_found("Enreach webhook"))?;
    let ep = s
        .reads
        .get_endpoint(&org, &id)
        .await
        .map_err(|e| ApiError::from(e).calling_it("Enreach webhook"))?;
    if ep.profile() != Profile::Enreach || ep.owner_subscription.is_some() {
        return Err(ApiError::not_found("Enreach webhook"));
    }
    s.hub
        .delete_endpoint(&org, &id)
        .await
        .map_err(|e| ApiError::from(e).calling_it("Enreach webhook"))?;
    Ok(StatusCode::NO_CONTENT)
}

fn filter_object_type(v: Option<&Value>) -> ApiResult<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("`FilterObjectType` {n} is not an object type id"))
        }),
        Some(Value::String(t)) => t.trim().parse().map(Some).map_err(|_| {
            ApiError::invalid(format!("`FilterObjectType` `{t}` is not an object type id"))
        }),
        Some(_) => Err(ApiError::invalid(
            "`FilterObjectType` must be a number: 31, 215, 217 or 911",
        )),
    }
}

fn enate_out(sub: &Subscription, ep: &Endpoint, show_values: bool) -> EnateSubscriptionOut {
    let (object_type, object_guid) = match sub.filter().and_then(|f| enate::filter_of(f.doc())) {
        Some((t, g)) => (Some(t), Some(g)),
        None => (None, None),
    };
    let header = ep.headers().iter().next();
    EnateSubscriptionOut {
        guid: guid(&sub.id),
        webhook: sub.event_types().first().cloned().unwrap_or_default(),
        subscriber_url: ep.url().to_string(),
        filter_object_type: object_type,
        filter_object_guid: object_guid,
        custom_header: header.map(|(k, _)| k.clone()),
        custom_header_value: header.map(|(_, v)| {
            if show_values {
                v.clone()
            } else {
                "[hidden]".into()
            }
        }),
        subscription_id: sub.id.as_str().to_owned(),
        endpoint_id: ep.id.as_str().to_owned(),
    }
}

/// Subscribe to an Enate webhook as seed 004 does: `{"Webhook": "PacketCreated",
/// "SubscriberURL", "FilterObjectType", "FilterObjectGUID", "CustomHeader",
/// "CustomHeaderValue"}`. The answer's `GUID` identifies the subscription.
#[utoipa::path(post, tag = "compat", path = "/v1/orgs/{org}/compat/enate/subscriptions", request_body = EnateSubscriptionIn,
    responses((status = 201, body = EnateSubscriptionOut), (status = 422, description = "invalid parameters, naming the one that is wrong")))]
pub async fn enate_create(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<EnateSubscriptionIn>,
) -> ApiResult<(StatusCode, Json<EnateSubscriptionOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    if !enate::WEBHOOKS.contains(&body.webhook.as_str()) {
        return Err(ApiError::invalid(format!(
            "`Webhook` `{}` is not an Enate webhook; there is {}",
            body.webhook,
            enate::WEBHOOKS.join(", ")
        )));
    }
    let object_type = filter_object_type(body.filter_object_type.as_ref())?;
    let filter = enate::filter_for(
        &body.webhook,
        object_type,
        body.filter_object_guid.as_deref(),
    )?;
    match (&body.custom_header, &body.custom_header_value) {
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "`CustomHeader` needs a `CustomHeaderValue`",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "`CustomHeaderValue` needs a `CustomHeader` to be sent in",
            ));
        }
        _ => {}
    }
    let spec = SubscriptionIn {
        event_types: vec![body.webhook],
        url: Some(body.subscriber_url),
        filter: Some(filter),
        profile: Some(Profile::Enate.as_str().into()),
        custom_header: body.custom_header,
        custom_header_value: body.custom_header_value,
        ..Default::default()
    };
    let (sub, ep) = create_from(&s, &org, spec)
        .await
        .map_err(|e| e.in_field("`url`", "SubscriberURL"))?;
    let ep = ep.ok_or_else(|| ApiError::internal("the subscription has no endpoint"))?;
    Ok((StatusCode::CREATED, Json(enate_out(&sub, &ep, true))))
}

/// The organization's Enate webhook subscriptions.
#[utoipa::path(get, tag = "compat", path = "/v1/orgs/{org}/compat/enate/subscriptions", responses((status = 200, body = Vec<EnateSubscriptionOut>)))]
pub async fn enate_list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<EnateSubscriptionOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let show = p.may(&org, Role::Admin);
    let eps: HashMap<EndpointId, Endpoint> = s
        .reads
        .list_endpoints(&org)
        .await?
        .into_iter()
        .filter(|e| e.profile() == Profile::Enate && e.owner_subscription.is_some())
        .map(|e| (e.id.clone(), e))
        .collect();
    let subs = s.reads.list_subscriptions(&org).await?;
    let out = subs
        .iter()
        .filter_map(|sub| {
            let ep = eps.get(sub.target().endpoint_id()?)?;
            (ep.owner_subscription.as_deref() == Some(sub.id.as_str()))
                .then(|| enate_out(sub, ep, show))
        })
        .collect();
    Ok(Json(out))
}

/// Delete an Enate webhook subscription by its `GUID`.
#[utoipa::path(delete, tag = "compat", path = "/v1/orgs/{org}/compat/enate/subscriptions/{guid}", responses((status = 204)))]
pub async fn enate_delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, given)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let id = path_id(
        SubscriptionId::parse(&our_id("sub", &given)),
        "Enate subscription",
    )?;
    let sub = s
        .reads
        .get_subscription(&org, &id)
        .await
        .map_err(|e| ApiError::from(e).calling_it("Enate subscription"))?;
    let owned = match sub.target().endpoint_id() {
        Some(ep) => s
            .reads
            .get_endpoint(&org, ep)
            .await
            .map_err(|e| ApiError::from(e).calling_it("Enate subscription"))?,
        None => return Err(ApiError::not_found("Enate subscription")),
    };
    if owned.profile() != Profile::Enate || owned.owner_subscription.as_deref() != Some(id.as_str())
    {
        return Err(ApiError::not_found("Enate subscription"));
    }
    s.hub
        .delete_subscription(&org, &id)
        .await
        .map_err(|e| ApiError::from(e).calling_it("Enate subscription"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish an event in Enreach's own shape (seed 003's request body), as it is: `Id` is its
/// id (publishing it again stores nothing new), and an `enreach` endpoint receives exactly
/// these keys, values and order.
#[utoipa::path(post, tag = "compat", path = "/v1/orgs/{org}/compat/enreach/events",
    responses((status = 202, body = PublishedOut), (status = 422, description = "not an Enreach event, or a schema violation")))]
pub async fn enreach_publish(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    publish_shaped(&s, &p, &org, &body, enreach::published_event).await
}

/// Publish an Enate message (seed 004) as it is: a `PacketCreated` of its `PacketGUID`, once
/// per packet. Add the packet's `CompanyGUID`, `ContractGUID`, `ServiceGUID` or `ProcessGUID`
/// for subscriptions filtered by them.
#[utoipa::path(post, tag = "compat", path = "/v1/orgs/{org}/compat/enate/events",
    responses((status = 202, body = PublishedOut), (status = 422, description = "not an Enate message, or a schema violation")))]
pub async fn enate_publish(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    publish_shaped(&s, &p, &org, &body, enate::published_event).await
}

/// Publishes a body in a platform's shape: `map` makes it our event, then it is published (and
/// checked) like any other.
async fn publish_shaped(
    s: &AppState,
    p: &switchyard_core::Principal,
    org: &str,
    body: &[u8],
    map: fn(Value) -> Result<switchyard_core::NewEvent, switchyard_core::CoreError>,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    let org = s.authorize(p, org.to_owned(), Role::Publisher).await?;
    publish_one(s, &org, map(parse_json(body)?)?).await
}
