//! Events: a type and its name rules, what an event is about, an event as published and as
//! stored, and the envelope receivers and filters see.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub entity_type: Option<String>,
    pub schema: Option<Value>,
    pub updated_at: i64,
}

/// What an event is about (Enreach's EntityType/EntityId, Enneo's ticket, Enate's packet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityRef {
    pub kind: Option<String>,
    pub id: Option<String>,
}

impl EntityRef {
    /// An entity id as a caller gives it: a string of 1–200 characters, or a number as its
    /// decimal text; `null` is none. `field` names it in the error.
    pub fn id_from(v: &Value, field: &str) -> Result<Option<String>, crate::CoreError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if !s.is_empty() && s.len() <= 200 => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(crate::CoreError::invalid(format!(
                "`{field}` must be a non-empty string or a number"
            ))),
        }
    }
}

/// A published event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: crate::ids::EventId,
    pub org_id: crate::ids::OrgId,
    pub event_type: String,
    /// When the event happened (the caller's timestamp, else the time of publishing), ms.
    pub timestamp: i64,
    pub entity: EntityRef,
    pub data: Value,
    /// Store-assigned, strictly increasing position; the cursor of event listings.
    pub seq: i64,
    pub received_at: i64,
    /// When the payload was dropped by the organization's payload retention (`data` is then
    /// `null`); such an event cannot be delivered again.
    pub payload_dropped_at: Option<i64>,
    /// Its `standard` body, made by the first delivery that sends it (see [`Event::standard_body`]).
    pub body: StandardBody,
}

/// An event's `standard` request body, serialized once and shared: every delivery of the event
/// that holds the same `Arc<Event>` (a fan-out to 1,000 endpoints, a claim's deliveries of one
/// event) sends these bytes instead of building and serializing the envelope again. It is not
/// part of what the event is: events compare equal whatever it holds.
#[derive(Clone, Default)]
pub struct StandardBody(std::sync::OnceLock<bytes::Bytes>);

impl PartialEq for StandardBody {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for StandardBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.0.get().map(bytes::Bytes::len);
        f.debug_tuple("StandardBody").field(&made).finish()
    }
}

impl Event {
    /// The `standard` profile's body, [`Event::envelope`] as JSON: serialized on first use and
    /// kept. A stored event does not change, so neither do its bytes; whoever changes the
    /// fields of an `Event` value afterwards makes a new one (`body: Default::default()`).
    pub fn standard_body(&self) -> bytes::Bytes {
        self.body
            .0
            .get_or_init(|| {
                serde_json::to_vec(&self.envelope())
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }

    /// The envelope filters look at and the `standard` profile sends:
    /// `{id, type, timestamp, entity: {type, id}, data}`.
    pub fn envelope(&self) -> Value {
        envelope(
            &self.id,
            &self.event_type,
            self.timestamp,
            &self.entity,
            &self.data,
        )
    }
}

/// The envelope of an event: what filters match and receivers get.
fn envelope(id: &str, event_type: &str, timestamp: i64, entity: &EntityRef, data: &Value) -> Value {
    serde_json::json!({
        "id": id,
        "type": event_type,
        "timestamp": crate::time::to_rfc3339(timestamp),
        "entity": {"type": entity.kind, "id": entity.id},
        "data": data,
    })
}

/// An event as submitted for publishing, before the store gives it a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The caller's id (idempotency key) or a generated `evt_…`.
    pub id: crate::ids::EventId,
    pub event_type: String,
    pub timestamp: i64,
    pub entity: EntityRef,
    pub data: Value,
}

impl NewEvent {
    /// What every event an organization publishes must pass, whichever way it came (the API,
    /// a platform's own shape, a schedule): a type of its own. Its data is checked against the
    /// type's schema where the schemas are, in the hub's publish.
    pub fn check(&self) -> Result<(), crate::CoreError> {
        check_publishable_type(&self.event_type, "type")
    }

    /// Whether this is one of the hub's own events.
    pub fn is_system(&self) -> bool {
        self.event_type.starts_with(RESERVED_TYPE_PREFIX)
    }

    /// The envelope this event will have (routing filters match it before the event is stored).
    pub fn envelope(&self) -> Value {
        envelope(
            &self.id,
            &self.event_type,
            self.timestamp,
            &self.entity,
            &self.data,
        )
    }
}

/// Checks an event type name: letters, digits and `-_.:`, 1–200 characters.
pub fn valid_type_name(name: &str) -> bool {
    crate::ids::is_valid_name(name, 200) && !name.contains('@')
}

/// Types starting with this are the hub's own events (`switchyard.endpoint.disabled`…); no
/// organization publishes them.
pub const RESERVED_TYPE_PREFIX: &str = "switchyard.";

/// Checks the type of an event an organization publishes (or schedules): a valid name, not
/// one of the hub's own.
pub fn check_publishable_type(name: &str, field: &str) -> Result<(), crate::CoreError> {
    if !valid_type_name(name) {
        return Err(crate::CoreError::invalid(format!(
            "`{field}` must be 1–200 characters of letters, digits and -_.:"
        )));
    }
    if name.starts_with(RESERVED_TYPE_PREFIX) {
        return Err(crate::CoreError::invalid(format!(
            "`{field}`: types starting with `{RESERVED_TYPE_PREFIX}` are reserved for events of the hub itself"
        )));
    }
    Ok(())
}
