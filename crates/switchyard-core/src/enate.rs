//! Enate (seed 004), as its receivers and its configuration know it: webhook subscriptions
//! filtered by company, contract, service or process, and the PacketCreated message.

use crate::enreach::{guid, is_guid};
use crate::{CoreError, EntityRef, Event, NewEvent, valid_type_name};
use serde_json::{Map, Value, json};

/// The webhooks Enate has (seed 004 names one).
pub const WEBHOOKS: [&str; 1] = ["PacketCreated"];

/// The objects a subscription can filter on: Enate's `FilterObjectType` (the EnateObjects
/// enum), the object's name, and the field of the published message that carries the packet's
/// GUID of it. Enate's message does not include these GUIDs, so a publisher adds them (they
/// are in the catalog's schema), and a subscription matches on them.
pub const FILTER_OBJECTS: [(i64, &str, &str); 4] = [
    (31, "Company", "CompanyGUID"),
    (215, "Contract", "ContractGUID"),
    (217, "Service", "ServiceGUID"),
    (911, "Process", "ProcessGUID"),
];

/// The objects a `PacketCreated` subscription may filter by. Seed 004: "For PacketCreated the
/// FilterObjectType can be either Company, Contract or Service".
pub const PACKET_CREATED_OBJECTS: [i64; 3] = [31, 215, 217];

/// The filter of a subscription to `webhook` for `FilterObjectType` and `FilterObjectGUID`, or an
/// error naming the field that is wrong.
pub fn filter_for(
    webhook: &str,
    object_type: Option<i64>,
    object_guid: Option<&str>,
) -> Result<Value, CoreError> {
    let Some(t) = object_type else {
        return Err(CoreError::invalid(
            "`FilterObjectType` is required: 31 (Company), 215 (Contract), 217 (Service) or 911 (Process)",
        ));
    };
    let Some((_, name, field)) = FILTER_OBJECTS.iter().find(|(n, _, _)| *n == t) else {
        return Err(CoreError::invalid(format!(
            "`FilterObjectType` {t} is not one Enate filters by: 31 (Company), 215 (Contract), 217 (Service) or 911 (Process)"
        )));
    };
    if webhook == "PacketCreated" && !PACKET_CREATED_OBJECTS.contains(&t) {
        return Err(CoreError::invalid(format!(
            "`FilterObjectType` {t} ({name}) is not one a `PacketCreated` subscription filters by: 31 (Company), 215 (Contract) or 217 (Service)"
        )));
    }
    let Some(g) = object_guid else {
        return Err(CoreError::invalid(
            "`FilterObjectGUID` is required: the GUID of the object `FilterObjectType` names",
        ));
    };
    if !is_guid(g) {
        return Err(CoreError::invalid(format!(
            "`FilterObjectGUID` `{g}` is not a GUID"
        )));
    }
    // .NET writes GUIDs in lowercase; a filter compares exactly.
    Ok(json!({ format!("data.{field}"): g.to_ascii_lowercase() }))
}

/// `FilterObjectType` and `FilterObjectGUID` back from a filter [`filter_for`] made.
pub fn filter_of(filter: &Value) -> Option<(i64, String)> {
    let (key, value) = filter.as_object()?.iter().next()?;
    let field = key.strip_prefix("data.")?;
    let (n, _, _) = FILTER_OBJECTS.iter().find(|(_, _, f)| *f == field)?;
    Some((*n, value.as_str()?.to_string()))
}

/// The message an `enate` endpoint receives: the event's data as published — seed 004's
/// message fields, nothing added — with `GUID` ("the Webhook GUID") the GUID of the
/// subscription the endpoint belongs to, the one Enate answered when it was created.
pub fn message(event: &Event, subscription: Option<&str>) -> Value {
    match (&event.data, subscription) {
        (Value::Object(o), Some(sub)) => {
            let mut m: Map<String, Value> = o.clone();
            // In place when the publisher sent one, so the order stays the publisher's.
            m.insert("GUID".into(), json!(guid(sub)));
            Value::Object(m)
        }
        (data, _) => data.clone(),
    }
}

/// An Enate message published as it is, mapped onto our event: `Webhook` (default
/// `PacketCreated`) is its type, the packet its entity, `{Webhook}:{PacketGUID}` its id (a
/// packet is created once, so publishing the message again stores nothing new), and the
/// message, untouched, its data.
pub fn published_event(body: Value) -> Result<NewEvent, CoreError> {
    let Value::Object(o) = &body else {
        return Err(CoreError::invalid(
            "an Enate message is a JSON object (seed 004's message)",
        ));
    };
    let webhook = match o.get("Webhook") {
        None | Some(Value::Null) => "PacketCreated",
        Some(Value::String(s)) if valid_type_name(s) => s.as_str(),
        Some(_) => {
            return Err(CoreError::invalid(
                "`Webhook` must name the webhook, e.g. `PacketCreated`",
            ));
        }
    };
    let packet = match o.get("PacketGUID") {
        Some(Value::String(s)) if is_guid(s) => s.to_ascii_lowercase(),
        Some(_) => return Err(CoreError::invalid("`PacketGUID` must be a GUID")),
        None => {
            return Err(CoreError::invalid(
                "`PacketGUID` is required: it identifies the packet the message reports on",
            ));
        }
    };
    Ok(NewEvent {
        // A checked webhook name, `:` and a lower-case GUID: a valid event id.
        id: crate::ids::EventId::stored(format!("{webhook}:{packet}")),
        event_type: webhook.to_string(),
        timestamp: crate::time::now_ms(),
        entity: EntityRef {
            kind: Some("Packet".into()),
            id: Some(packet),
        },
        data: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    const COMPANY: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn filters_match_the_packets_object_and_read_back() {
        let f =
            filter_for("PacketCreated", Some(31), Some(&COMPANY.to_uppercase())).expect("valid");
        assert_eq!(f, json!({"data.CompanyGUID": COMPANY}));
        assert_eq!(filter_of(&f), Some((31, COMPANY.to_string())));
        let parsed = Filter::parse(&f).expect("parses");
        let packet = |company: &str| json!({"data": {"PacketGUID": "p", "CompanyGUID": company}});
        assert!(parsed.matches(&packet(COMPANY)));
        assert!(!parsed.matches(&packet("7c9e6679-7425-40de-944b-e07fc1f90ae7")));
        for (n, _, field) in FILTER_OBJECTS {
            if PACKET_CREATED_OBJECTS.contains(&n) {
                let f = filter_for("PacketCreated", Some(n), Some(COMPANY)).expect("valid");
                assert_eq!(f, json!({ format!("data.{field}"): COMPANY }));
            }
        }
    }

    #[test]
    fn invalid_combinations_name_the_field() {
        let e = |t, g| {
            filter_for("PacketCreated", t, g)
                .expect_err("invalid")
                .to_string()
        };
        assert!(e(Some(32), Some(COMPANY)).contains("`FilterObjectType` 32"));
        // Seed 004: a PacketCreated subscription filters by Company, Contract or Service only.
        assert!(e(Some(911), Some(COMPANY)).contains("911 (Process) is not one a `PacketCreated`"));
        assert!(e(None, Some(COMPANY)).contains("`FilterObjectType` is required"));
        assert!(e(Some(31), None).contains("`FilterObjectGUID` is required"));
        assert!(e(Some(31), Some("acme")).contains("`FilterObjectGUID` `acme`"));
    }

    #[test]
    fn the_message_carries_the_subscription_guid_in_place() {
        let data: Value =
            serde_json::from_str(r#"{"AttachmentCount":0,"GUID":"x","PacketGUID":"p","Status":1}"#)
                .expect("json");
        let event = Event {
            id: crate::ids::EventId::stored("PacketCreated:p".into()),
            org_id: crate::ids::OrgId::stored("o".into()),
            event_type: "PacketCreated".into(),
            timestamp: 0,
            entity: EntityRef::default(),
            data,
            seq: 1,
            received_at: 0,
            payload_dropped_at: None,
            body: Default::default(),
        };
        let sub = "sub_0193a1b2c3d4e5f60718293a4b5c6d7e";
        let body = serde_json::to_string(&message(&event, Some(sub))).expect("json");
        assert_eq!(
            body,
            r#"{"AttachmentCount":0,"GUID":"0193a1b2-c3d4-e5f6-0718-293a4b5c6d7e","PacketGUID":"p","Status":1}"#
        );
    }

    #[test]
    fn a_published_message_is_keyed_by_its_packet() {
        let e = published_event(json!({"PacketGUID": COMPANY, "Status": 0})).expect("valid");
        assert_eq!(e.id, *format!("PacketCreated:{COMPANY}"));
        assert_eq!(e.entity.id.as_deref(), Some(COMPANY));
        assert!(published_event(json!({"Status": 0})).is_err());
        assert!(published_event(json!({"PacketGUID": "p"})).is_err());
        assert!(published_event(json!([])).is_err());
    }
}
