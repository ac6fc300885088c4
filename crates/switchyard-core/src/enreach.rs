//! Enreach (seed 003), as its receivers and its configuration know it: the request envelope
//! with .NET's GUIDs and timestamps, the webhook configuration and the events it publishes.

use crate::{CoreError, EntityRef, Event, NewEvent, valid_type_name};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The properties every Enreach event has, in the order of seed 003's table.
pub const COMMON: [&str; 7] = [
    "Id",
    "Timestamp",
    "RootEntityType",
    "RootEntityId",
    "EntityType",
    "EntityId",
    "EventType",
];

/// An id as a GUID, the way Enreach's receivers parse `Id` and `RootEntityId`: a UUID stays
/// itself (hyphenated, lowercase); one of our ids (`evt_0193…`) is its UUID; any other text is
/// a name-based UUID of it (version 8, from SHA-256), the same every time.
pub fn guid(id: &str) -> String {
    let uuid = uuid::Uuid::parse_str(id).ok().or_else(|| {
        let (_, hex) = id.split_once('_')?;
        (hex.len() == 32).then(|| uuid::Uuid::parse_str(hex).ok())?
    });
    match uuid {
        Some(u) => u.hyphenated().to_string(),
        None => {
            let digest = Sha256::digest(format!("switchyard:{id}").as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string()
        }
    }
}

/// One of our ids (`prefix_…`) from the GUID [`guid`] made of it, if the text is a GUID.
pub fn id_from_guid(prefix: &str, text: &str) -> Option<String> {
    let u = uuid::Uuid::parse_str(text).ok()?;
    Some(format!("{prefix}_{}", u.simple()))
}

/// Whether `s` is a GUID as .NET writes one (`6cb31d7d-9cd9-41dc-a096-62cf31fd0281`).
pub fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// A time as .NET's JSON serializers write a `DateTime`: UTC, no zone, the fraction without
/// its trailing zeros and without a dot when it is zero (`2018-01-01T08:01:23.45`).
pub fn dotnet_timestamp(ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let digits = format!("{frac:03}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s
}

/// Parses a .NET `DateTime` (`2018-01-01T08:01:23.45`, up to seven fraction digits, with or
/// without a zone; without one it is UTC) into milliseconds since the epoch.
pub fn parse_dotnet_timestamp(s: &str) -> Option<i64> {
    if let Some(ms) = crate::time::parse_rfc3339(s) {
        return Some(ms);
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// The body an `enreach` endpoint receives for `event`.
///
/// An event published in Enreach's own shape (its data holds all seven common properties) goes
/// out exactly as published: its keys, values and order. Any other event gets the common
/// properties first, in the order of seed 003's table — each the data's own when it has one,
/// else made from the event: its id and time as a GUID and a .NET timestamp, the root entity
/// the data's `OrganizationId` (else the organization's id as a GUID) — then its data in the
/// publisher's order. Data that is not an object goes under `Data`.
pub fn envelope(event: &Event) -> Value {
    let data = match &event.data {
        Value::Object(o) => {
            if COMMON.iter().all(|k| o.contains_key(*k)) {
                return event.data.clone();
            }
            Some(o)
        }
        _ => None,
    };
    let own = |k: &str| data.and_then(|d| d.get(k)).cloned();
    let root = own("OrganizationId")
        .filter(|v| v.as_str().is_some_and(is_guid))
        .unwrap_or_else(|| json!(guid(&event.org_id)));
    let mut m = Map::with_capacity(COMMON.len() + data.map_or(1, Map::len));
    m.insert(
        "Id".into(),
        own("Id").unwrap_or_else(|| json!(guid(&event.id))),
    );
    m.insert(
        "Timestamp".into(),
        own("Timestamp").unwrap_or_else(|| json!(dotnet_timestamp(event.timestamp))),
    );
    m.insert(
        "RootEntityType".into(),
        own("RootEntityType").unwrap_or_else(|| json!("Organization")),
    );
    m.insert("RootEntityId".into(), own("RootEntityId").unwrap_or(root));
    m.insert(
        "EntityType".into(),
        own("EntityType")
            .unwrap_or_else(|| json!(event.entity.kind.as_deref().unwrap_or("Undefined"))),
    );
    m.insert(
        "EntityId".into(),
        own("EntityId").unwrap_or_else(|| json!(event.entity.id)),
    );
    m.insert(
        "EventType".into(),
        own("EventType").unwrap_or_else(|| json!(event.event_type)),
    );
    match data {
        Some(d) => {
            for (k, v) in d {
                if !COMMON.contains(&k.as_str()) {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        None if !event.data.is_null() => {
            m.insert("Data".into(), event.data.clone());
        }
        None => {}
    }
    Value::Object(m)
}

/// An event published in Enreach's own shape (seed 003's request body), mapped onto ours: its
/// `Id` is the event's id (so publishing it again stores nothing new: "keep track of handled
/// events based on their Id" holds end to end), `EventType` its type, `Timestamp` its time,
/// `EntityType`/`EntityId` its entity, and the whole body, untouched, its data.
pub fn published_event(body: Value) -> Result<NewEvent, CoreError> {
    let Value::Object(o) = &body else {
        return Err(CoreError::invalid(
            "an Enreach event is a JSON object (seed 003's request body)",
        ));
    };
    let text = |k: &str| -> Result<Option<&str>, CoreError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(CoreError::invalid(format!("`{k}` must be a string"))),
        }
    };
    let event_type =
        text("EventType")?.ok_or_else(|| CoreError::invalid("`EventType` is required"))?;
    if !valid_type_name(event_type) {
        return Err(CoreError::invalid(
            "`EventType` must be 1–200 characters of letters, digits and -_.:",
        ));
    }
    let id = text("Id")?.ok_or_else(|| {
        CoreError::invalid("`Id` is required: it is the event's id, by which duplicates are found")
    })?;
    let Some(id) = crate::ids::EventId::parse(id) else {
        return Err(CoreError::invalid(
            "`Id` must be a GUID (1–200 characters of letters, digits and -_.:@)",
        ));
    };
    let timestamp = match text("Timestamp")? {
        Some(t) => parse_dotnet_timestamp(t).ok_or_else(|| {
            CoreError::invalid(format!(
                "`Timestamp` `{t}` is not a time like `2018-01-01T08:01:23.45`"
            ))
        })?,
        None => crate::time::now_ms(),
    };
    let entity = EntityRef {
        kind: text("EntityType")?.map(str::to_string),
        id: match o.get("EntityId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(CoreError::invalid("`EntityId` must be a string")),
        },
    };
    Ok(NewEvent {
        id,
        event_type: event_type.to_string(),
        timestamp,
        entity,
        data: body,
    })
}

/// One subscription of a webhook configuration: an event type, for one entity or all.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSpec {
    pub event_type: String,
    /// `None`: all entities (`AllEntities: true`).
    pub entity_id: Option<String>,
}

impl SubscriptionSpec {
    /// Checks one subscription as seed 003 defines it: an `EventType`, and either an
    /// `EntityId` or `AllEntities: true`. `at` names it in the error (`Subscriptions[1]`).
    ///
    /// The type need not be in the catalog: seed 003's own sample configuration subscribes
    /// to `QueueCallInConnected` and `QueueCallInAllocated`, which its event list lacks.
    pub fn check(
        event_type: &str,
        entity_id: Option<&str>,
        all_entities: Option<bool>,
        at: &str,
    ) -> Result<SubscriptionSpec, CoreError> {
        if !valid_type_name(event_type) {
            return Err(CoreError::invalid(format!(
                "{at}.EventType must be 1–200 characters of letters, digits and -_.:"
            )));
        }
        let entity_id = match (entity_id, all_entities) {
            (Some(_), Some(true)) => {
                return Err(CoreError::invalid(format!(
                    "{at}: give `EntityId` or `AllEntities: true`, not both"
                )));
            }
            (Some(id), _) if id.is_empty() || id.len() > 200 => {
                return Err(CoreError::invalid(format!(
                    "{at}.EntityId must be 1–200 characters"
                )));
            }
            (Some(id), _) => Some(id.to_string()),
            (None, Some(true)) => None,
            (None, _) => {
                return Err(CoreError::invalid(format!(
                    "{at}: give `EntityId` (one entity's events) or `AllEntities: true`"
                )));
            }
        };
        Ok(SubscriptionSpec {
            event_type: event_type.to_string(),
            entity_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> Event {
        Event {
            id: crate::ids::EventId::stored("evt_0193a1b2c3d4e5f60718293a4b5c6d7e".into()),
            org_id: crate::ids::OrgId::stored("acme".into()),
            event_type: "QueueCallInUserAllocated".into(),
            timestamp: 1_514_793_683_450,
            entity: EntityRef {
                kind: Some("Queue".into()),
                id: Some("6cb31d7d-9cd9-41dc-a096-62cf31fd0281".into()),
            },
            data,
            seq: 1,
            received_at: 0,
            payload_dropped_at: None,
            body: Default::default(),
        }
    }

    #[test]
    fn timestamps_are_written_and_read_as_dotnet_does() {
        assert_eq!(
            dotnet_timestamp(1_514_793_683_450),
            "2018-01-01T08:01:23.45"
        );
        assert_eq!(dotnet_timestamp(1_514_793_683_000), "2018-01-01T08:01:23");
        assert_eq!(
            dotnet_timestamp(1_514_793_683_007),
            "2018-01-01T08:01:23.007"
        );
        for s in [
            "2018-01-01T08:01:23.45",
            "2018-01-01T08:01:23.4500000",
            "2018-01-01T08:01:23.45Z",
            "2018-01-01T10:01:23.45+02:00",
        ] {
            assert_eq!(parse_dotnet_timestamp(s), Some(1_514_793_683_450), "{s}");
        }
        assert_eq!(parse_dotnet_timestamp("yesterday"), None);
    }

    #[test]
    fn ids_become_guids_and_back() {
        let g = guid("evt_0193a1b2c3d4e5f60718293a4b5c6d7e");
        assert_eq!(g, "0193a1b2-c3d4-e5f6-0718-293a4b5c6d7e");
        assert_eq!(
            id_from_guid("evt", &g).as_deref(),
            Some("evt_0193a1b2c3d4e5f60718293a4b5c6d7e")
        );
        assert_eq!(
            guid("85B214F2-1D27-4262-87B6-8F55B3199400"),
            "85b214f2-1d27-4262-87b6-8f55b3199400"
        );
        let named = guid("acme");
        assert!(is_guid(&named));
        assert_eq!(named, guid("acme"));
        assert_ne!(named, guid("acme2"));
        assert_eq!(id_from_guid("sub", "nope"), None);
    }

    #[test]
    fn our_envelope_puts_the_common_properties_first_then_the_data_in_its_order() {
        let data: Value = serde_json::from_str(
            r#"{"QueueName":"Sample queue 1","CallId":"9cae633f-68d0-4315-8b9a-b83c7673d8dc","OrganizationId":"fd434d24-f685-431d-8df5-386b5d5ffa73","Amount":1.50}"#,
        )
        .expect("json");
        let body = serde_json::to_string(&envelope(&event(data))).expect("json");
        assert_eq!(
            body,
            r#"{"Id":"0193a1b2-c3d4-e5f6-0718-293a4b5c6d7e","Timestamp":"2018-01-01T08:01:23.45","RootEntityType":"Organization","RootEntityId":"fd434d24-f685-431d-8df5-386b5d5ffa73","EntityType":"Queue","EntityId":"6cb31d7d-9cd9-41dc-a096-62cf31fd0281","EventType":"QueueCallInUserAllocated","QueueName":"Sample queue 1","CallId":"9cae633f-68d0-4315-8b9a-b83c7673d8dc","OrganizationId":"fd434d24-f685-431d-8df5-386b5d5ffa73","Amount":1.50}"#
        );
        // Without an OrganizationId the root is the organization's own id, as a GUID.
        let v = envelope(&event(json!({"x": 1})));
        assert_eq!(v["RootEntityId"], json!(guid("acme")));
        assert_eq!(envelope(&event(json!([1])))["Data"], json!([1]));
    }

    #[test]
    fn an_event_in_enreachs_own_shape_goes_out_exactly_as_published() {
        let text = r#"{"RootEntityType":"Organization","RootEntityId":"fd434d24-f685-431d-8df5-386b5d5ffa73","EventType":"QueueCallInUserAllocated","EntityType":"Queue","EntityId":"6cb31d7d-9cd9-41dc-a096-62cf31fd0281","Username":"a@b.c","Id":"85b214f2-1d27-4262-87b6-8f55b3199400","Timestamp":"2018-01-01T08:01:23.45"}"#;
        let new = published_event(serde_json::from_str(text).expect("json")).expect("valid");
        assert_eq!(new.id, "85b214f2-1d27-4262-87b6-8f55b3199400");
        assert_eq!(new.event_type, "QueueCallInUserAllocated");
        assert_eq!(new.timestamp, 1_514_793_683_450);
        assert_eq!(new.entity.kind.as_deref(), Some("Queue"));
        let mut e = event(new.data);
        e.id = new.id;
        assert_eq!(serde_json::to_string(&envelope(&e)).expect("json"), text);
    }

    #[test]
    fn a_published_event_names_what_it_lacks() {
        let err = |v: Value| published_event(v).expect_err("invalid").to_string();
        assert!(err(json!([])).contains("object"));
        assert!(err(json!({"Id": "x"})).contains("EventType"));
        assert!(err(json!({"EventType": "QueueStatus"})).contains("Id"));
        assert!(
            err(json!({"EventType": "QueueStatus", "Id": "a", "Timestamp": "noon"}))
                .contains("Timestamp")
        );
        assert!(err(json!({"EventType": 5, "Id": "a"})).contains("EventType"));
    }

    #[test]
    fn a_subscription_has_an_entity_or_all_of_them() {
        let ok = |e: Option<&str>, all: Option<bool>| {
            SubscriptionSpec::check("QueueCallInConnected", e, all, "Subscriptions[0]")
        };
        assert_eq!(ok(None, Some(true)).expect("all").entity_id, None);
        assert_eq!(
            ok(Some("e0"), None).expect("one").entity_id.as_deref(),
            Some("e0")
        );
        assert!(ok(Some("e0"), Some(true)).is_err());
        assert!(ok(None, None).is_err());
        assert!(ok(None, Some(false)).is_err());
        let unknown = SubscriptionSpec::check("a b", None, Some(true), "Subscriptions[1]")
            .expect_err("unknown");
        assert!(unknown.to_string().contains("Subscriptions[1].EventType"));
    }
}
