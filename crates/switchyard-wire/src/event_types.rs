//! Event types and their JSON Schemas.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::time::to_rfc3339;
use switchyard_core::*;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EventTypeIn {
    #[serde(default)]
    pub description: String,
    /// What the events are about, e.g. `Ticket`, `Queue`, `Packet`.
    pub entity_type: Option<String>,
    /// A JSON Schema for the event's `data`; publishing data that breaks it is refused (422).
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub entity_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    pub updated_at: String,
}

impl From<EventType> for EventTypeOut {
    fn from(t: EventType) -> Self {
        EventTypeOut {
            name: t.name,
            description: t.description,
            entity_type: t.entity_type,
            schema: t.schema,
            updated_at: to_rfc3339(t.updated_at),
        }
    }
}
