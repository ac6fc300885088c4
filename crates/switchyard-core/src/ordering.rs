//! Ordered delivery: what an ordered endpoint orders by (its ordering key) and what happens
//! when the head of a key finally fails. Pure: the store keeps one key's deliveries in publish
//! order and hands out only the head; this module says what the key of an event is.

use crate::error::CoreError;
use crate::event::EntityRef;
use crate::path::DotPath;
use serde_json::Value;

/// How an ordered endpoint keeps order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordering {
    pub key: OrderingKey,
    pub on_head_failure: HeadFailure,
}

/// What the deliveries of an ordered endpoint are grouped by; each group is delivered in
/// publish order, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderingKey {
    /// The event's entity type and id (`Ticket/123`).
    Entity,
    /// A path into the event's data, written `data.ticketId` (the path below `data`).
    Data(DotPath),
}

/// What a key does when its head fails for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFailure {
    /// The head is marked failed and the key moves on to its next delivery.
    Skip,
    /// The head is marked blocked and the key waits until it is retried by hand.
    Block,
}

impl HeadFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadFailure::Skip => "skip",
            HeadFailure::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Result<HeadFailure, CoreError> {
        match s {
            "skip" => Ok(HeadFailure::Skip),
            "block" => Ok(HeadFailure::Block),
            _ => Err(CoreError::invalid(
                "`on_head_failure` must be `skip` or `block`",
            )),
        }
    }
}

impl OrderingKey {
    /// Parses the `ordering_key` setting: `entity` (the default) or a data path
    /// such as `data.ticketId`.
    pub fn parse(s: &str) -> Result<OrderingKey, CoreError> {
        if s == "entity" {
            return Ok(OrderingKey::Entity);
        }
        let bad = || {
            CoreError::invalid(
                "`ordering_key` must be `entity` or a path into the event's data such as `data.ticketId`",
            )
        };
        DotPath::parse(s)
            .and_then(|p| p.below("data"))
            .map(OrderingKey::Data)
            .ok_or_else(bad)
    }

    /// The setting as written (`entity`, `data.ticketId`).
    pub fn as_setting(&self) -> String {
        match self {
            OrderingKey::Entity => "entity".into(),
            OrderingKey::Data(path) => format!("data.{path}"),
        }
    }

    /// The key of an event about `entity` carrying `data`. Events without an entity share the
    /// key `""`; an event whose data lacks the path falls back to its entity key, so it is still
    /// ordered with its entity.
    pub fn key_of(&self, entity: &EntityRef, data: &Value) -> String {
        if let OrderingKey::Data(path) = self
            && let Some(v) = path.lookup(data)
            && !v.is_null()
        {
            return match v {
                Value::String(s) => format!("data:{s}"),
                other => format!("data:{other}"),
            };
        }
        match (&entity.kind, &entity.id) {
            (None, None) => String::new(),
            (k, i) => format!(
                "{}/{}",
                k.as_deref().unwrap_or(""),
                i.as_deref().unwrap_or("")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use serde_json::json;

    fn ev(kind: Option<&str>, id: Option<&str>, data: Value) -> NewEvent {
        NewEvent {
            id: crate::ids::EventId::stored("e".into()),
            event_type: "T".into(),
            timestamp: 0,
            entity: EntityRef {
                kind: kind.map(str::to_string),
                id: id.map(str::to_string),
            },
            data,
        }
    }

    impl OrderingKey {
        fn of(&self, e: &NewEvent) -> String {
            self.key_of(&e.entity, &e.data)
        }
    }

    #[test]
    fn keys_by_entity_or_data_path() {
        let e = ev(
            Some("Ticket"),
            Some("7"),
            json!({"ticketId": 42, "a": {"b": "x"}}),
        );
        assert_eq!(OrderingKey::Entity.of(&e), "Ticket/7");
        let k = OrderingKey::parse("data.ticketId").unwrap();
        assert_eq!(k.of(&e), "data:42");
        assert_eq!(OrderingKey::parse("data.a.b").unwrap().of(&e), "data:x");
        // A missing path falls back to the entity; no entity at all is one shared key.
        assert_eq!(OrderingKey::parse("data.nope").unwrap().of(&e), "Ticket/7");
        assert_eq!(OrderingKey::Entity.of(&ev(None, None, json!({}))), "");
        assert_eq!(k.as_setting(), "data.ticketId");
    }

    #[test]
    fn refuses_paths_outside_data() {
        for bad in ["ticketId", "data", "data.", "data..x", "entity.id", ""] {
            assert!(OrderingKey::parse(bad).is_err(), "{bad}");
        }
        assert!(HeadFailure::parse("drop").is_err());
        assert_eq!(HeadFailure::parse("block").unwrap(), HeadFailure::Block);
    }
}
