//! Events: publishing (single and batch, idempotent by id), listing, and the trace of one event.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::event_types::valid_type_name;
use crate::extract::{Auth, Query, RawBody};
use crate::subscriptions::entity_id_text;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ids::{is_valid_name, new_id};
use switchyard_core::time::{now_ms, parse_rfc3339, to_rfc3339};
use switchyard_core::{Attempt, Delivery, EntityRef, Event, NewEvent, Role};
use switchyard_store::{EventQuery, Published};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EntityIn {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A string or a number.
    #[schema(value_type = Option<String>)]
    pub id: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Your id for the event: publishing the same id again stores nothing new and answers
    /// with the first event. Generated (`evt_…`) when absent.
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339; when the event happened (default: now).
    pub timestamp: Option<String>,
    pub entity: Option<EntityIn>,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EntityOut {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventOut {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
    pub entity: EntityOut,
    #[schema(value_type = Object)]
    pub data: Value,
    pub received_at: String,
}

impl From<&Event> for EventOut {
    fn from(e: &Event) -> Self {
        EventOut {
            id: e.id.clone(),
            event_type: e.event_type.clone(),
            timestamp: to_rfc3339(e.timestamp),
            entity: EntityOut {
                kind: e.entity.kind.clone(),
                id: e.entity.id.clone(),
            },
            data: e.data.clone(),
            received_at: to_rfc3339(e.received_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PublishedOut {
    #[serde(flatten)]
    pub event: EventOut,
    /// How many deliveries the event has.
    pub deliveries: usize,
    /// True when this id was published before: the answer is that first event.
    pub duplicate: bool,
}

impl From<&Published> for PublishedOut {
    fn from(p: &Published) -> Self {
        PublishedOut {
            event: EventOut::from(p.event.as_ref()),
            deliveries: p.delivery_count,
            duplicate: p.duplicate,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BatchOut {
    pub events: Vec<PublishedOut>,
}

/// Turns one wire event into a domain event, checking it fully (schema included).
async fn parse_event(s: &AppState, org: &str, e: EventIn, at: &str) -> ApiResult<NewEvent> {
    let inv = |m: String| ApiError::invalid(format!("{at}{m}"));
    if !valid_type_name(&e.event_type) {
        return Err(inv(
            "`type` must be 1–200 characters of letters, digits and -_.:".into(),
        ));
    }
    if e.event_type.starts_with("switchyard.") {
        return Err(inv(
            "types starting with `switchyard.` are reserved for events of the hub itself".into(),
        ));
    }
    let id = match e.id {
        Some(id) if is_valid_name(&id, 200) => id,
        Some(_) => {
            return Err(inv(
                "`id` must be 1–200 characters of letters, digits and -_.:@".into(),
            ));
        }
        None => new_id("evt"),
    };
    let timestamp = match &e.timestamp {
        Some(t) => {
            parse_rfc3339(t).ok_or_else(|| inv("`timestamp` must be an RFC 3339 time".into()))?
        }
        None => now_ms(),
    };
    let entity = match e.entity {
        None => EntityRef::default(),
        Some(en) => EntityRef {
            kind: en.kind,
            id: match &en.id {
                Some(v) => entity_id_text(v, "entity.id").map_err(|x| inv(x.message))?,
                None => None,
            },
        },
    };
    let mut data = e.data;
    if let Some(schema) = s.schema_for(org, &e.event_type).await? {
        // Off the async workers: a large document never stalls other requests.
        let (checked, back) = tokio::task::spawn_blocking(move || (schema.validate(&data), data))
            .await
            .map_err(|e| ApiError::internal(format!("schema validation failed: {e}")))?;
        data = back;
        if let Err(v) = checked {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema_violation",
                format!(
                    "{at}data does not match the schema of `{}` at {}: {}",
                    e.event_type, v.path, v.message
                ),
            ));
        }
    }
    Ok(NewEvent {
        id,
        event_type: e.event_type,
        timestamp,
        entity,
        data,
    })
}

async fn commit(s: &AppState, org: &str, events: Vec<NewEvent>) -> ApiResult<Vec<Published>> {
    Ok(s.hub.publish(org, events).await?)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::invalid(e.to_string())
        } else {
            ApiError::bad_request(format!("malformed JSON: {e}"))
        }
    })
}

/// Publish one event. 202 means the event and all its deliveries are durably committed.
#[utoipa::path(post, tag = "events", path = "/v1/orgs/{org}/events", request_body = EventIn,
    responses((status = 202, body = PublishedOut), (status = 413, description = "event too large"),
              (status = 422, description = "invalid event or schema violation")))]
pub async fn publish(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    s.authorize(&p, &org, Role::Publisher).await?;
    let e: EventIn = parse_json(&body)?;
    let event = parse_event(&s, &org, e, "").await?;
    let published = commit(&s, &org, vec![event]).await?;
    let out = published
        .first()
        .map(PublishedOut::from)
        .ok_or_else(|| ApiError::internal("publish returned nothing"))?;
    Ok((StatusCode::ACCEPTED, Json(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchIn {
    Wrapped { events: Vec<Value> },
    List(Vec<Value>),
}

/// Publish up to 1,000 events in one transaction: all are committed, or none.
#[utoipa::path(post, tag = "events", path = "/v1/orgs/{org}/events/batch", request_body = BatchIn,
    responses((status = 202, body = BatchOut), (status = 413, description = "too many or too large events")))]
pub async fn publish_batch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    s.authorize(&p, &org, Role::Publisher).await?;
    let items = match parse_json::<BatchIn>(&body)
        .map_err(|_| ApiError::invalid("send `{\"events\": [...]}` or a JSON array of events"))?
    {
        BatchIn::Wrapped { events } | BatchIn::List(events) => events,
    };
    if items.is_empty() {
        return Err(ApiError::invalid("the batch is empty"));
    }
    if items.len() > s.limits.max_batch {
        return Err(ApiError::too_large(format!(
            "a batch holds at most {} events, not {}",
            s.limits.max_batch,
            items.len()
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("events[{i}]: ");
        let size = serde_json::to_vec(&item).map(|v| v.len()).unwrap_or(0);
        if size > s.limits.max_event_bytes {
            return Err(ApiError::too_large(format!(
                "{at}the event is {size} bytes; the limit is {}",
                s.limits.max_event_bytes
            )));
        }
        let e: EventIn =
            serde_json::from_value(item).map_err(|e| ApiError::invalid(format!("{at}{e}")))?;
        events.push(parse_event(&s, &org, e, &at).await?);
    }
    let published = commit(&s, &org, events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchOut {
            events: published.iter().map(PublishedOut::from).collect(),
        }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub entity_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List events, newest first.
#[utoipa::path(get, tag = "events", path = "/v1/orgs/{org}/events",
    params(("type" = Option<String>, Query), ("entity_id" = Option<String>, Query), ("since" = Option<String>, Query),
           ("until" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = EventPage)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<EventPage>> {
    s.authorize(&p, &org, Role::Viewer).await?;
    let time = |v: &Option<String>, name: &str| -> ApiResult<Option<i64>> {
        v.as_deref()
            .map(|t| {
                parse_rfc3339(t).ok_or_else(|| {
                    ApiError::bad_request(format!("`{name}` must be an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let before_seq = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("`cursor` is not one this API gave out"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let query = EventQuery {
        event_type: q.event_type,
        entity_id: q.entity_id,
        since: time(&q.since, "since")?,
        until: time(&q.until, "until")?,
        before_seq,
        limit,
    };
    let events = s.store.list_events(&org, &query).await?;
    let next_cursor = if events.len() as u32 == limit {
        events.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(EventPage {
        data: events.iter().map(EventOut::from).collect(),
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub at: String,
    pub status_code: Option<u16>,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
}

impl From<&Attempt> for AttemptOut {
    fn from(a: &Attempt) -> Self {
        AttemptOut {
            id: a.id.clone(),
            at: to_rfc3339(a.at),
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error.clone(),
            response_body: a.response_body.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub event_id: String,
    /// The endpoint, for a webhook delivery.
    pub endpoint_id: Option<String>,
    /// The executor, for an event hook (its runs are in the event's `runs`).
    pub executor: Option<String>,
    pub subscription_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempt_count: u32,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptOut>>,
}

impl DeliveryOut {
    pub fn from(d: &Delivery, attempts: Option<&[Attempt]>) -> Self {
        DeliveryOut {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            endpoint_id: d.target.endpoint_id().map(str::to_string),
            executor: d.target.executor().map(str::to_string),
            subscription_id: d.subscription_id.clone(),
            status: d.status.as_str().into(),
            attempt_count: d.attempts,
            next_attempt_at: match d.status {
                switchyard_core::DeliveryStatus::Pending => d.next_attempt_at.map(to_rfc3339),
                _ => None,
            },
            created_at: to_rfc3339(d.created_at),
            updated_at: to_rfc3339(d.updated_at),
            attempts: attempts.map(|a| a.iter().map(AttemptOut::from).collect()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TraceOut {
    #[serde(flatten)]
    pub event: EventOut,
    pub deliveries: Vec<DeliveryOut>,
    /// Executor runs the event caused (event hooks).
    pub runs: Vec<crate::runs::RunOut>,
}

/// An event with everything that happened to it: deliveries, their attempts, runs.
#[utoipa::path(get, tag = "events", path = "/v1/orgs/{org}/events/{id}", responses((status = 200, body = TraceOut)))]
pub async fn trace(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<TraceOut>> {
    s.authorize(&p, &org, Role::Viewer).await?;
    let t = s
        .store
        .trace(&org, &id)
        .await
        .map_err(|e| ApiError::from_store(e, "event"))?;
    let runs = s.store.runs_for_event(&org, &id).await?;
    Ok(Json(TraceOut {
        event: EventOut::from(&t.event),
        deliveries: t
            .deliveries
            .iter()
            .map(|(d, a)| DeliveryOut::from(d, Some(a)))
            .collect(),
        runs: runs.iter().map(crate::runs::RunOut::from).collect(),
    }))
}
