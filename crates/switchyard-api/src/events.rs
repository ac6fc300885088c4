//! Events: publishing (single and batch, idempotent by id), listing, and the trace of one event.

use crate::AppState;
use crate::error::{ApiError, ApiResult, path_id};
use crate::extract::{Auth, Query, RawBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::glob::is_valid_pattern;
use switchyard_core::ids::{EventId, OrgId};
use switchyard_core::time::{now_ms, parse_rfc3339};
use switchyard_core::{DeliveryStatus, EntityRef, NewEvent, Role, Target};
use switchyard_hub::HubError;
use switchyard_hub::{EventQuery, Published};
pub use switchyard_wire::events::*;

/// What the store answered for one published event, as the wire shows it.
fn published_out(p: &Published) -> PublishedOut {
    PublishedOut {
        error: None,
        event: EventOut::from(p.event.as_ref()),
        deliveries: p.delivery_count,
        duplicate: p.duplicate,
        sync: p.sync.iter().map(SyncOutcomeOut::from).collect(),
    }
}

/// The answer's status and error: 202, or 502 naming the synchronous targets that failed.
fn sync_verdict(published: &[Published]) -> (StatusCode, Option<ErrorOut>) {
    let failed: Vec<String> = published
        .iter()
        .flat_map(|p| p.sync.iter().filter(|o| !o.ok).map(move |o| (p, o)))
        .map(|(p, o)| {
            let target = match &o.target {
                Target::Endpoint(id) => format!("endpoint `{id}`"),
                Target::Executor(name) => format!("executor `{name}`"),
            };
            let why = o.error.as_deref().unwrap_or("failed");
            format!("event `{}` → {target}: {why}", p.event.id)
        })
        .collect();
    if failed.is_empty() {
        return (StatusCode::ACCEPTED, None);
    }
    let error = ErrorOut {
        code: "sync_failed".into(),
        message: format!(
            "the event is committed, but {} synchronous target(s) failed: {}",
            failed.len(),
            failed.join("; ")
        ),
    };
    (StatusCode::BAD_GATEWAY, Some(error))
}

/// Turns one wire event into a domain event (the hub's publish checks it as it checks every
/// event).
fn parse_event(e: EventIn, at: &str) -> ApiResult<NewEvent> {
    let inv = |m: String| ApiError::invalid(format!("{at}{m}"));
    let id = match e.id.map(EventId::parse_owned) {
        Some(Some(id)) => id,
        Some(None) => {
            return Err(inv(
                "`id` must be 1–200 characters of letters, digits and -_.:@".into(),
            ));
        }
        None => EventId::generate(),
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
                Some(v) => EntityRef::id_from(v, "entity.id").map_err(|x| inv(x.to_string()))?,
                None => None,
            },
        },
    };
    Ok(NewEvent {
        id,
        event_type: e.event_type,
        timestamp,
        entity,
        data: e.data,
    })
}

/// Publishes one event and answers as a publish does: 202 with the event, or 502 naming the
/// synchronous targets that failed.
pub(crate) async fn publish_one(
    s: &AppState,
    org: &OrgId,
    event: NewEvent,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    let published = s.hub.publish(org, vec![event]).await?;
    let (status, error) = sync_verdict(&published);
    let mut out = published
        .first()
        .map(published_out)
        .ok_or_else(|| ApiError::internal("publish returned nothing"))?;
    out.error = error;
    Ok((status, Json(out)))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
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
              (status = 502, body = PublishedOut, description = "committed, but a synchronous target failed"),
              (status = 422, description = "invalid event or schema violation")))]
pub async fn publish(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<PublishedOut>)> {
    let org = s.authorize(&p, org, Role::Publisher).await?;
    let e: EventIn = parse_json(&body)?;
    publish_one(&s, &org, parse_event(e, "")?).await
}

/// Publish up to 1,000 events in one transaction: all are committed, or none.
#[utoipa::path(post, tag = "events", path = "/v1/orgs/{org}/events/batch", request_body = BatchIn,
    responses((status = 202, body = BatchOut), (status = 502, body = BatchOut, description = "committed, but a synchronous target failed"), (status = 413, description = "too many or too large events")))]
pub async fn publish_batch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    let org = s.authorize(&p, org, Role::Publisher).await?;
    let items = batch_items(&body)
        .ok_or_else(|| ApiError::invalid("send `{\"events\": [...]}` or a JSON array of events"))?;
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
        let size = item.get().len();
        if size > s.limits.max_event_bytes {
            return Err(ApiError::too_large(format!(
                "{at}the event is {size} bytes; the limit is {}",
                s.limits.max_event_bytes
            )));
        }
        let e: EventIn =
            serde_json::from_str(item.get()).map_err(|e| ApiError::invalid(format!("{at}{e}")))?;
        events.push(parse_event(e, &at)?);
    }
    // A refused event is named by its place in the batch.
    let published = s.hub.publish(&org, events).await.map_err(|e| match e {
        HubError::EventRefused {
            index,
            reason,
            message,
        } => HubError::EventRefused {
            index,
            reason,
            message: format!("events[{index}]: {message}"),
        },
        other => other,
    })?;
    let (status, error) = sync_verdict(&published);
    Ok((
        status,
        Json(BatchOut {
            error,
            events: published.iter().map(published_out).collect(),
        }),
    ))
}

/// The events of a batch's body (`{"events": [...]}` or a JSON array of events), each as the
/// text it was sent as: measured and parsed once, never built as a JSON tree in between.
fn batch_items(body: &[u8]) -> Option<Vec<&serde_json::value::RawValue>> {
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    match body.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => serde_json::from_slice(body).ok(),
        _ => serde_json::from_slice::<Wrapped>(body)
            .ok()
            .map(|w| w.events),
    }
}

/// List events, newest first.
#[utoipa::path(get, tag = "events", path = "/v1/orgs/{org}/events",
    params(("type" = Option<String>, Query), ("entity_type" = Option<String>, Query), ("entity_id" = Option<String>, Query),
           ("since" = Option<String>, Query), ("until" = Option<String>, Query), ("status" = Option<String>, Query),
           ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = EventPage)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<EventPage>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
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
    let delivery_status = q
        .status
        .as_deref()
        .map(|v| {
            DeliveryStatus::parse(v).ok_or_else(|| {
                ApiError::bad_request("`status` is pending, delivered, failed or blocked")
            })
        })
        .transpose()?;
    let query = EventQuery {
        event_type: type_pattern(q.event_type)?,
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        since: time(&q.since, "since")?,
        until: time(&q.until, "until")?,
        before_seq,
        delivery_status,
        limit,
        ..Default::default()
    };
    let events = s.reads.list_events(&org, &query).await?;
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

/// A `type` filter: an exact name or a pattern with `*`.
pub(crate) fn type_pattern(t: Option<String>) -> ApiResult<Option<String>> {
    match t {
        Some(t) if !is_valid_pattern(&t) => Err(ApiError::bad_request(
            "`type` is an event type or a pattern of letters, digits, -_.: and `*`",
        )),
        t => Ok(t),
    }
}

/// An event with everything that happened to it: deliveries, their attempts, runs.
#[utoipa::path(get, tag = "events", path = "/v1/orgs/{org}/events/{id}", responses((status = 200, body = TraceOut)))]
pub async fn trace(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<TraceOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let id = path_id(EventId::parse(&id), "event")?;
    let t = s.reads.trace(&org, &id).await?;
    let runs = s.reads.runs_for_event(&org, &id).await?;
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
