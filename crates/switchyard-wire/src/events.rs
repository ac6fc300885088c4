//! Events: publishing (single, batch), listing, and the trace with deliveries and attempts.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::time::to_rfc3339;
use switchyard_core::*;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EntityIn {
    #[serde(skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<String>,
    /// A string or a number.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Your id for the event: publishing the same id again stores nothing new and answers
    /// with the first event. Generated (`evt_…`) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339; when the event happened (default: now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntityIn>,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub data: Value,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EntityOut {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventOut {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
    pub entity: EntityOut,
    #[schema(value_type = Object)]
    pub data: Value,
    pub received_at: String,
    /// When the organization's payload retention dropped `data` (then `null`): the event is
    /// kept for its trace but cannot be delivered again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_dropped_at: Option<String>,
}

impl From<&Event> for EventOut {
    fn from(e: &Event) -> Self {
        EventOut {
            id: e.id.as_str().to_owned(),
            event_type: e.event_type.clone(),
            timestamp: to_rfc3339(e.timestamp),
            entity: EntityOut {
                kind: e.entity.kind.clone(),
                id: e.entity.id.clone(),
            },
            data: e.data.clone(),
            received_at: to_rfc3339(e.received_at),
            payload_dropped_at: e.payload_dropped_at.map(to_rfc3339),
        }
    }
}

/// Read back through a `Value` ([`PublishedOut::try_from`]): serde's `flatten` buffers the
/// fields beside it, and a buffered number (`arbitrary_precision`) no longer reads as one.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(try_from = "Value")]
pub struct PublishedOut {
    /// Set (with status 502) when a synchronous target failed; the event is committed all the
    /// same, with its other deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorOut>,
    #[serde(flatten)]
    pub event: EventOut,
    /// How many deliveries the event has.
    pub deliveries: usize,
    /// True when this id was published before: the answer is that first event.
    pub duplicate: bool,
    /// What each synchronous (`mode: sync`) target did while the publish waited. Absent when
    /// the event has none (or is a duplicate: its sync targets are not attempted again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<SyncOutcomeOut>,
}

/// Takes the members named `keys` out of `v`, an object, and reads them as `T`; the rest stays.
fn take<T: serde::de::DeserializeOwned>(
    v: &mut Value,
    keys: &[&str],
) -> Result<T, serde_json::Error> {
    let mut taken = serde_json::Map::new();
    if let Value::Object(m) = v {
        for k in keys {
            if let Some(x) = m.remove(*k) {
                taken.insert((*k).to_string(), x);
            }
        }
    }
    serde_json::from_value(Value::Object(taken))
}

/// [`PublishedOut`]'s own members, beside the event's.
#[derive(Deserialize)]
struct PublishedOwn {
    error: Option<ErrorOut>,
    deliveries: usize,
    duplicate: bool,
    #[serde(default)]
    sync: Vec<SyncOutcomeOut>,
}

impl TryFrom<Value> for PublishedOut {
    type Error = serde_json::Error;
    fn try_from(mut v: Value) -> Result<Self, Self::Error> {
        let own: PublishedOwn = take(&mut v, &["error", "deliveries", "duplicate", "sync"])?;
        Ok(PublishedOut {
            error: own.error,
            event: serde_json::from_value(v)?,
            deliveries: own.deliveries,
            duplicate: own.duplicate,
            sync: own.sync,
        })
    }
}

/// The `error` member of an answer that carries more than the error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorOut {
    pub code: String,
    pub message: String,
}

/// One synchronous target's outcome.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SyncOutcomeOut {
    pub subscription_id: String,
    /// The delivery in the event's trace; a failed one can be retried by hand.
    pub delivery_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// `delivered` or `failed`.
    pub status: String,
    /// The endpoint's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The executor's output, or the endpoint's answer (its JSON, or its text; the first
    /// 4 KiB).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub duration_ms: f64,
}

impl From<&SyncOutcome> for SyncOutcomeOut {
    fn from(o: &SyncOutcome) -> Self {
        SyncOutcomeOut {
            subscription_id: o.subscription_id.as_str().to_owned(),
            delivery_id: o.delivery_id.as_str().to_owned(),
            endpoint_id: o.target.endpoint_id().map(|id| id.as_str().to_owned()),
            executor: o.target.executor().map(str::to_string),
            status: if o.ok { "delivered" } else { "failed" }.into(),
            status_code: o.status_code,
            output: o.output.clone(),
            error: o.error.clone(),
            run_id: o.run_id.as_ref().map(|id| id.as_str().to_owned()),
            duration_ms: o.duration_ms,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct BatchOut {
    /// Set (with status 502) when a synchronous target of any event failed; every event is
    /// committed all the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorOut>,
    pub events: Vec<PublishedOut>,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchIn {
    Wrapped { events: Vec<Value> },
    List(Vec<Value>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// An exact type or a pattern (`Ticket*`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only events with a delivery in this status (`pending`, `delivered`, `failed`,
    /// `blocked`).
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// What a live tail follows.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// An exact type or a pattern (`Ticket*`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Start after this stream id (an earlier message's `id:`); without it (and without a
    /// `Last-Event-ID` header) the tail starts with the next event published.
    pub after: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub at: String,
    pub status_code: Option<u16>,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    /// What held this attempt back once it was due: `max_in_flight`, a pause after a 429 or
    /// 503 (`Retry-After`), or `max_rps`, with how long.
    pub waited: Option<String>,
    /// For a failed attempt that will be retried: why the next one waits as long as it does
    /// (the retry schedule's step and its jitter, or the receiver's `Retry-After`).
    pub retry_reason: Option<String>,
    /// The request's headers as sent, in order; credentials (the endpoint's token header,
    /// `Authorization`, names with `token`, `secret`, `key`, `auth`, `password` or `cookie`) and
    /// signatures are `[redacted]`.
    #[schema(value_type = Option<Object>)]
    pub request_headers: Option<serde_json::Map<String, Value>>,
    /// The id of the node that made the attempt (several nodes can share one database).
    pub node: Option<String>,
}

impl From<&Attempt> for AttemptOut {
    fn from(a: &Attempt) -> Self {
        AttemptOut {
            id: a.id.as_str().to_owned(),
            at: to_rfc3339(a.at),
            status_code: a.status_code(),
            duration_ms: a.duration_ms(),
            error: a.error().map(str::to_string),
            response_body: a.response_body().map(str::to_string),
            waited: a.waited.clone(),
            retry_reason: a.retry_reason.clone(),
            request_headers: a.request_headers.as_ref().map(|hs| {
                hs.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect()
            }),
            node: a.node.clone(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub event_id: String,
    /// The endpoint, for a webhook delivery.
    pub endpoint_id: Option<String>,
    /// The executor, for an event hook (its runs are in the event's `runs`).
    pub executor: Option<String>,
    pub subscription_id: Option<String>,
    /// `pending`, `delivered`, `failed`, or `blocked` (the head of an ordering key that failed
    /// on an endpoint with `on_head_failure: block`; retry it to resume the key).
    pub status: String,
    pub attempt_count: u32,
    /// When a pending delivery is next attempted. `null` while it is being attempted
    /// (`in_flight`) or while it waits for the delivery before it with the same ordering key.
    pub next_attempt_at: Option<String>,
    /// Being attempted now.
    pub in_flight: bool,
    /// For an ordered endpoint: the key this delivery is ordered by.
    pub ordering_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptOut>>,
}

impl DeliveryOut {
    pub fn from(d: &Delivery, attempts: Option<&[Attempt]>) -> Self {
        DeliveryOut {
            id: d.id.as_str().to_owned(),
            event_id: d.event_id.as_str().to_owned(),
            endpoint_id: d.target.endpoint_id().map(|id| id.as_str().to_owned()),
            executor: d.target.executor().map(str::to_string),
            subscription_id: d.subscription_id.as_ref().map(|id| id.as_str().to_owned()),
            status: d.status.as_str().into(),
            attempt_count: d.attempts,
            in_flight: d.in_flight,
            ordering_key: d.ordering_key.clone(),
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

/// Read back through a `Value`, as [`PublishedOut`] is.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(try_from = "Value")]
pub struct TraceOut {
    #[serde(flatten)]
    pub event: EventOut,
    pub deliveries: Vec<DeliveryOut>,
    /// Executor runs the event caused (event hooks).
    pub runs: Vec<crate::runs::RunOut>,
}

/// [`TraceOut`]'s own members, beside the event's.
#[derive(Deserialize)]
struct TraceOwn {
    deliveries: Vec<DeliveryOut>,
    runs: Vec<crate::runs::RunOut>,
}

impl TryFrom<Value> for TraceOut {
    type Error = serde_json::Error;
    fn try_from(mut v: Value) -> Result<Self, Self::Error> {
        let own: TraceOwn = take(&mut v, &["deliveries", "runs"])?;
        Ok(TraceOut {
            event: serde_json::from_value(v)?,
            deliveries: own.deliveries,
            runs: own.runs,
        })
    }
}
