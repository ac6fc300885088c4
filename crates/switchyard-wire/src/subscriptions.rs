//! Subscriptions: to an endpoint, an inline URL or an executor.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::filter::SubscriptionFilter;
use switchyard_core::time::to_rfc3339;
use switchyard_core::*;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    /// Event type names or globs (`Ticket*`, `QueueCallIn*`, `*`).
    pub event_types: Vec<String>,
    /// The endpoint to deliver to (or give `url`, or `executor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// Run this executor for each event (an event hook); its runs are in the event's trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Deliver to this URL directly (Enate's SubscriberURL); an endpoint is made for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Only events about this entity (Enreach's EntityId). A string or a number.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<Value>,
    /// Events about all entities (Enreach's AllEntities); the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_entities: Option<bool>,
    /// A filter on the event: `{"data.priority": {"$in": ["high"]}}`.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// `async` (the default): delivered after the publish answered, with retries. `sync`: the
    /// publish attempts the target once and waits for it, answering with its outcome (502 when
    /// it failed; the event stays committed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    // Settings of the endpoint made for `url`:
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Enate's CustomHeader / CustomHeaderValue: one header added to every message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_header_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_schedule_s: Option<Vec<u32>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: String,
    pub event_types: Vec<String>,
    pub endpoint_id: Option<String>,
    pub executor: Option<String>,
    pub entity_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    pub mode: String,
    /// For a subscription made with `url`: the signing secret of its endpoint, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
}

impl SubscriptionOut {
    pub fn from(s: Subscription, secret: Option<String>) -> Self {
        SubscriptionOut {
            id: s.id.as_str().into(),
            event_types: s.event_types().to_vec(),
            endpoint_id: s.target().endpoint_id().map(|id| id.as_str().to_owned()),
            executor: s.target().executor().map(str::to_string),
            entity_id: s.entity_id().map(str::to_string),
            filter: s.filter().cloned().map(SubscriptionFilter::into_doc),
            mode: s.mode().as_str().into(),
            secret,
            created_at: to_rfc3339(s.created_at),
        }
    }
}
