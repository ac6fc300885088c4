//! Bad input gets the documented error shape and stores nothing.

use crate::helpers::*;
use serde_json::json;

async fn event_count(app: &TestApp, org: &Org) -> usize {
    let (_, v) = app
        .get(
            &format!("/v1/orgs/{}/events?limit=500", org.id),
            &org.viewer,
        )
        .await;
    v["data"].as_array().expect("data").len()
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_nothing_is_half_stored() {
    let app = spawn_app().await;
    let org = app.org("input").await;
    let path = format!("/v1/orgs/{}/events", org.id);

    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&org.publisher)
        .header("content-type", "application/json")
        .body("{\"type\": \"T\", ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("malformed JSON")
    );

    let (s, v) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "T", "data": {}, "tpye": "x"}),
        )
        .await;
    assert_eq!(s, 422, "unknown field: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("tpye")
    );

    let (s, v) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "T", "data": {"blob": "x".repeat(300 * 1024)}}),
        )
        .await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");

    let (s, v) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "bad type!", "data": {}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "T", "timestamp": "yesterday", "data": {}}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "switchyard.endpoint.disabled", "data": {}}),
        )
        .await;
    assert_eq!(s, 422, "reserved types cannot be forged");

    // Schema violations name the failing path.
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{}/event-types/TicketCreated", org.id),
            &org.admin,
            Some(json!({"description": "A ticket was created", "entity_type": "Ticket",
                        "schema": {"type": "object", "required": ["ticketId"], "properties": {"ticketId": {"type": "integer"}}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app
        .post(
            &path,
            &org.publisher,
            json!({"type": "TicketCreated", "data": {"ticketId": "not a number"}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "schema_violation");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("/data/ticketId"),
        "{v}"
    );
    app.publish(
        &org,
        json!({"type": "TicketCreated", "data": {"ticketId": 7}}),
    )
    .await;
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{}/event-types/Bad", org.id),
            &org.admin,
            Some(json!({"schema": {"type": 12}})),
        )
        .await;
    assert_eq!(s, 422, "an invalid schema is refused: {v}");

    // A batch with one bad event stores none of them.
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/events/batch", org.id),
            &org.publisher,
            json!({"events": [{"id": "ok-1", "type": "TicketCreated", "data": {"ticketId": 1}},
                              {"id": "bad-1", "type": "TicketCreated", "data": {"ticketId": "x"}}]}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .starts_with("events[1]"),
        "{v}"
    );
    assert_eq!(
        event_count(&app, &org).await,
        1,
        "only the valid single event is stored"
    );

    // Endpoints and subscriptions.
    let eps = format!("/v1/orgs/{}/endpoints", org.id);
    for (body, what) in [
        (
            json!({"url": "https://example.com", "retry_shedule_s": [1]}),
            "unknown field",
        ),
        (json!({"description": "no url"}), "missing url"),
        (json!({"url": "not a url"}), "bad url"),
        (json!({"url": "ftp://example.com"}), "bad scheme"),
        (
            json!({"url": "https://example.com", "timeout_ms": 60000}),
            "timeout over 30 s",
        ),
        (
            json!({"url": "https://example.com", "profile": "soap"}),
            "unknown profile",
        ),
        (
            json!({"url": "https://example.com", "headers": {"Host": "x"}}),
            "reserved header",
        ),
        (
            json!({"url": "https://example.com", "secret": "nope"}),
            "bad secret",
        ),
        (
            json!({"url": "https://user:pw@example.com"}),
            "credentials in url",
        ),
    ] {
        let (s, v) = app.post(&eps, &org.admin, body).await;
        assert_eq!(s, 422, "{what}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    let (_, list) = app.get(&eps, &org.viewer).await;
    assert_eq!(
        list.as_array().expect("list").len(),
        0,
        "no endpoint half-stored"
    );

    let subs = format!("/v1/orgs/{}/subscriptions", org.id);
    for (body, what) in [
        (
            json!({"event_types": ["*"], "endpoint_id": "ep_missing"}),
            "unknown endpoint",
        ),
        (
            json!({"event_types": [], "url": "https://example.com"}),
            "no types",
        ),
        (
            json!({"event_types": ["a b"], "url": "https://example.com"}),
            "bad pattern",
        ),
        (
            json!({"event_types": ["*"], "url": "https://example.com", "filter": {"data.x": {"$regex": "y"}}}),
            "bad filter",
        ),
        (json!({"event_types": ["*"]}), "no target"),
        (
            json!({"event_types": ["*"], "url": "https://example.com", "mode": "sometimes"}),
            "bad mode",
        ),
    ] {
        let (s, v) = app.post(&subs, &org.admin, body).await;
        assert_eq!(s, 422, "{what}: {v}");
    }
    let (_, list) = app.get(&subs, &org.viewer).await;
    assert_eq!(list.as_array().expect("list").len(), 0);
    let (_, list) = app.get(&eps, &org.viewer).await;
    assert_eq!(
        list.as_array().expect("list").len(),
        0,
        "no inline endpoint left behind"
    );

    let (s, v) = app
        .get(&format!("/v1/orgs/{}/nothing-here", org.id), &org.viewer)
        .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "not_found");
    app.stop().await;
}
