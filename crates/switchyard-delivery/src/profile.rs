//! Request shapes: how an event becomes a webhook body and headers for each receiver profile.

use bytes::Bytes;
use switchyard_core::{Endpoint, Event, Profile, enate, enreach};

/// Header names and values a request carries besides the signature headers.
pub type Headers = Vec<(String, String)>;

/// The body and profile-specific headers of the request delivering `event` to `ep`. The
/// `standard` body is the event's own, serialized once for all its deliveries.
pub fn render(ep: &Endpoint, event: &Event) -> (Bytes, Headers) {
    let mut headers: Headers = Vec::with_capacity(ep.headers().len() + 3);
    let body = match ep.profile() {
        Profile::Standard => {
            headers.push(("content-type".into(), "application/json".into()));
            event.standard_body()
        }
        Profile::Enreach => {
            headers.push((
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ));
            headers.push(("X-Benemen-Event".into(), event.event_type.clone()));
            json_body(&enreach::envelope(event))
        }
        Profile::Enate => {
            headers.push((
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ));
            json_body(&enate::message(event, ep.owner_subscription.as_deref()))
        }
    };
    if let Some(token) = ep.token() {
        let name = ep.token_header().unwrap_or(match ep.profile() {
            Profile::Enreach => "X-Benemen-Token",
            _ => "X-Switchyard-Token",
        });
        headers.push((name.to_string(), token.to_string()));
    }
    for (k, v) in ep.headers() {
        headers.push((k.clone(), v.clone()));
    }
    (body, headers)
}

fn json_body(v: &serde_json::Value) -> Bytes {
    serde_json::to_vec(v).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use switchyard_core::EntityRef;

    fn ep(profile: Profile, token: Option<&str>) -> Endpoint {
        let mut ep = Endpoint::new(&switchyard_core::ids::OrgId::stored("o".into()), 0);
        let settings = switchyard_core::endpoint::EndpointChanges {
            url: Some("https://x".into()),
            profile: Some(profile.as_str().into()),
            headers: Some(BTreeMap::from([("X-Tenant".into(), "7".into())])),
            token: Some(token.map(str::to_string)),
            ..Default::default()
        };
        let policy = switchyard_core::egress::EgressPolicy::default();
        ep.apply(settings, switchyard_core::endpoint::Change::Patch, &policy)
            .expect("valid settings");
        ep
    }

    fn event() -> Event {
        Event {
            id: switchyard_core::ids::EventId::stored(
                "85b214f2-1d27-4262-87b6-8f55b3199400".into(),
            ),
            org_id: switchyard_core::ids::OrgId::stored("o".into()),
            event_type: "QueueCallInUserAllocated".into(),
            timestamp: 0,
            entity: EntityRef {
                kind: Some("Queue".into()),
                id: Some("6cb31d7d".into()),
            },
            data: json!({"CallId": "9cae", "OrganizationId": "fd43", "QueueName": "Sample queue 1"}),
            seq: 1,
            received_at: 0,
            payload_dropped_at: None,
            body: Default::default(),
        }
    }

    #[test]
    fn enreach_profile_matches_seed_003() {
        let (body, headers) = render(&ep(Profile::Enreach, Some("MySecretString")), &event());
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["EventType"], "QueueCallInUserAllocated");
        assert_eq!(v["EntityType"], "Queue");
        assert_eq!(v["EntityId"], "6cb31d7d");
        assert_eq!(v["RootEntityType"], "Organization");
        assert_eq!(v["RootEntityId"], enreach::guid("o"));
        assert_eq!(v["Id"], "85b214f2-1d27-4262-87b6-8f55b3199400");
        assert_eq!(v["QueueName"], "Sample queue 1");
        assert_eq!(v["Timestamp"], "1970-01-01T00:00:00");
        assert!(headers.contains(&("X-Benemen-Event".into(), "QueueCallInUserAllocated".into())));
        assert!(headers.contains(&("X-Benemen-Token".into(), "MySecretString".into())));
        assert!(headers.contains(&("X-Tenant".into(), "7".into())));
    }

    #[test]
    fn standard_profile_is_the_envelope() {
        let (body, headers) = render(&ep(Profile::Standard, None), &event());
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["type"], "QueueCallInUserAllocated");
        assert_eq!(v["entity"]["type"], "Queue");
        assert_eq!(v["data"]["CallId"], "9cae");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert!(!headers.iter().any(|(k, _)| k.starts_with("X-Benemen")));
    }

    #[test]
    fn an_events_standard_body_is_serialized_once_for_all_its_deliveries() {
        let event = event();
        let (first, _) = render(&ep(Profile::Standard, None), &event);
        let (second, _) = render(&ep(Profile::Standard, Some("t")), &event);
        assert_eq!(first, serde_json::to_vec(&event.envelope()).expect("json"));
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, not a copy"
        );
    }

    #[test]
    fn enate_profile_sends_the_message_fields() {
        let mut e = event();
        e.event_type = "PacketCreated".into();
        e.data = json!({"PacketGUID": "p1", "Status": 1});
        let (body, _) = render(&ep(Profile::Enate, None), &e);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v, json!({"PacketGUID": "p1", "Status": 1}));
    }
}
