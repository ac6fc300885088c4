//! The README walk-through as a test: org, key, endpoint, subscription, publish, receipt, trace.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;
use switchyard_core::signing::SigningSecret;

#[tokio::test]
async fn walkthrough_delivers_a_signed_webhook_and_traces_it() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("acme").await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": rx.url("/hook"), "description": "ERP", "headers": {"X-Tenant": "7"},
                   "token": "s3cret", "token_header": "X-Token", "timeout_ms": 5000}),
            &["Ticket*"],
        )
        .await;
    let secret = ep["secret"].as_str().expect("secret shown on create");
    assert!(secret.starts_with("whsec_"));

    let published = app
        .publish(
            &org,
            json!({"id": "my-id-1", "type": "TicketUpdated", "entity": {"type": "Ticket", "id": "456"},
                   "data": {"userId": 123, "changes": {"status": "closed"}, "ticketId": 456}}),
        )
        .await;
    assert_eq!(published["id"], "my-id-1");
    assert_eq!(published["deliveries"], 1);

    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let req = &got[0];
    assert_eq!(req.path, "/hook");
    assert_eq!(req.header("webhook-id").as_deref(), Some("my-id-1"));
    assert_eq!(req.header("x-token").as_deref(), Some("s3cret"));
    assert_eq!(req.header("x-tenant").as_deref(), Some("7"));
    let body = req.json();
    assert_eq!(body["type"], "TicketUpdated");
    assert_eq!(body["entity"], json!({"type": "Ticket", "id": "456"}));
    assert_eq!(body["data"]["changes"]["status"], "closed");
    // Our own check of the signature (the independent one is in `signatures`).
    let ts: i64 = req
        .header("webhook-timestamp")
        .expect("timestamp")
        .parse()
        .expect("number");
    let expected = SigningSecret::parse(secret)
        .expect("secret")
        .sign("my-id-1", ts, &req.body);
    assert_eq!(req.header("webhook-signature"), Some(expected));

    let trace = app
        .wait_trace(&org, "my-id-1", Duration::from_secs(5), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    assert_eq!(trace["type"], "TicketUpdated");
    let d = &trace["deliveries"][0];
    assert_eq!(d["endpoint_id"], ep["id"]);
    assert_eq!(d["attempts"][0]["status_code"], 200);
    assert_eq!(d["attempts"][0]["response_body"], "receiver says hi");
    assert!(d["attempts"][0]["duration_ms"].as_f64().expect("duration") > 0.0);
    assert_eq!(trace["runs"], json!([]));

    // An event of a type nobody subscribed to is stored with no deliveries.
    let other = app
        .publish(&org, json!({"type": "ProfileCreated", "data": {}}))
        .await;
    assert_eq!(other["deliveries"], 0);
    assert!(other["id"].as_str().expect("id").starts_with("evt_"));
    app.stop().await;
}

#[tokio::test]
async fn same_id_twice_stores_one_event_and_delivers_once() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("idem").await;
    app.endpoint(&org, json!({"url": rx.url("/")}), &["*"])
        .await;
    let first = app
        .publish(&org, json!({"id": "dup-1", "type": "A", "data": {"v": 1}}))
        .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    // The same id and body again (another body is a 409: see `input_is_never_silently_changed`).
    let second = app
        .publish(&org, json!({"id": "dup-1", "type": "A", "data": {"v": 1}}))
        .await;
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["type"], "A", "answers with the first event");
    assert_eq!(second["data"], first["data"]);
    // A later marker event arriving proves the duplicate was not queued before it.
    app.publish(&org, json!({"id": "marker", "type": "A", "data": {}}))
        .await;
    let got = rx
        .wait_until(Duration::from_secs(10), |g| {
            g.iter()
                .any(|r| r.header("webhook-id").as_deref() == Some("marker"))
        })
        .await;
    let dups = got
        .iter()
        .filter(|r| r.header("webhook-id").as_deref() == Some("dup-1"))
        .count();
    assert_eq!(dups, 1);
    let (_, list) = app
        .get(&format!("/v1/orgs/{}/events?limit=10", org.id), &org.viewer)
        .await;
    assert_eq!(list["data"].as_array().expect("list").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn batch_publishes_many_in_one_call_and_refuses_too_many() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("batch").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/"), "max_in_flight": 50}),
        &["*"],
    )
    .await;
    let events: Vec<_> = (0..1000)
        .map(|i| json!({"id": format!("b{i}"), "type": "T", "data": {"i": i}}))
        .collect();
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/events/batch", org.id),
            &org.publisher,
            json!({"events": events}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["events"].as_array().expect("events").len(), 1000);
    rx.wait_until(Duration::from_secs(30), |g| {
        let mut ids: Vec<_> = g.iter().filter_map(|r| r.header("webhook-id")).collect();
        ids.sort();
        ids.dedup();
        ids.len() == 1000
    })
    .await;
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"type": "T", "data": {"i": i}}))
        .collect();
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/events/batch", org.id),
            &org.publisher,
            json!(too_many),
        )
        .await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    app.stop().await;
}
