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
        list["data"].as_array().expect("list").len(),
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
    assert_eq!(list["data"].as_array().expect("list").len(), 0);
    let (_, list) = app.get(&eps, &org.viewer).await;
    assert_eq!(
        list["data"].as_array().expect("list").len(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_never_silently_changed() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("exact").await;
    app.endpoint(&org, json!({"url": rx.url("/")}), &["Big"])
        .await;
    let path = format!("/v1/orgs/{}/events", org.id);
    let big = format!("1{}", "2".repeat(299));
    let body = format!(
        r#"{{"id": "n1", "type": "Big", "data": {{"n": {big}, "f": 0.1, "one": 1.0, "neg": -0.000000000000000000001}}}}"#
    );
    let (s, text) = app.post_raw(&path, &org.publisher, &body).await;
    assert_eq!(s, 202, "{text}");
    // Kept exactly: in the answer, in the trace and in the webhook.
    let expect = format!(r#""n":{big}"#);
    assert!(text.contains(&expect), "{text}");
    let trace = app
        .client
        .get(app.url(&format!("{path}/n1")))
        .bearer_auth(&org.viewer)
        .send()
        .await
        .expect("trace")
        .text()
        .await
        .expect("text");
    assert!(trace.contains(&expect), "{trace}");
    assert!(trace.contains(r#""one":1.0"#) && trace.contains("-0.000000000000000000001"));
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert!(
        String::from_utf8_lossy(&got[0].body).contains(&expect),
        "the webhook changed the number"
    );

    // The same id with the same body: the first event. With another body: 409 naming it.
    let (s, text) = app.post_raw(&path, &org.publisher, &body).await;
    assert_eq!(s, 202, "{text}");
    assert!(text.contains(r#""duplicate":true"#), "{text}");
    let (s, v) = app
        .post(
            &path,
            &org.publisher,
            json!({"id": "n1", "type": "Big", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("different data"),
        "{v}"
    );
    // In a batch, the conflict refuses the whole batch.
    let before = event_count(&app, &org).await;
    let (s, v) = app
        .post(
            &format!("{path}/batch"),
            &org.publisher,
            json!({"events": [{"id": "n2", "type": "Big", "data": {}}, {"id": "n1", "type": "Other", "data": {}}]}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("different type")
    );
    assert_eq!(
        event_count(&app, &org).await,
        before,
        "nothing of the batch was stored"
    );

    // Names made only of dots are refused.
    for name in ["..", "."] {
        let (s, v) = app
            .post(&path, &org.publisher, json!({"type": name, "data": {}}))
            .await;
        assert_eq!(s, 422, "{name}: {v}");
    }
    app.stop().await;
}
