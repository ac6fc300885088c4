//! Delivery rules: retries with their trace, 410, redirects, timeouts, Retry-After, isolation of
//! slow endpoints, manual retry and replay, profiles.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

fn codes(trace: &Value) -> Vec<Value> {
    trace["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

#[tokio::test]
async fn failing_receiver_gets_the_event_later_and_the_trace_shows_each_attempt() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(500), Reply::status(503)]);
    let org = app.org("retry").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/"), "retry_schedule_s": [0, 1, 1]}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "r1", "type": "T", "data": {}}))
        .await;
    let got = rx.wait_for(3, Duration::from_secs(15)).await;
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id").as_deref() == Some("r1")),
        "the id is kept across retries"
    );
    let trace = app
        .wait_trace(&org, "r1", Duration::from_secs(5), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    assert_eq!(codes(&trace), vec![json!(500), json!(503), json!(200)]);
    assert_eq!(trace["deliveries"][0]["attempt_count"], 3);
    assert_eq!(
        trace["deliveries"][0]["attempts"][0]["error"],
        "receiver answered 500"
    );
    app.stop().await;
}

#[tokio::test]
async fn after_the_last_attempt_the_delivery_fails_and_can_be_retried_or_replayed() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(500), Reply::status(500)]);
    let org = app.org("fail").await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": rx.url("/"), "retry_schedule_s": [0]}),
            &["*"],
        )
        .await;
    let ep_id = ep["id"].as_str().expect("id");
    let since = switchyard_core::time::to_rfc3339(switchyard_core::time::now_ms() - 1000);
    app.publish(&org, json!({"id": "f1", "type": "T", "data": {}}))
        .await;
    let trace = app
        .wait_trace(&org, "f1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("failed")
        })
        .await;
    assert_eq!(codes(&trace), vec![json!(500), json!(500)]);

    let (s, list) = app
        .get(
            &format!(
                "/v1/orgs/{}/deliveries?status=failed&endpoint_id={ep_id}",
                org.id
            ),
            &org.viewer,
        )
        .await;
    assert_eq!(s, 200);
    let failed = list["data"].as_array().expect("data");
    assert_eq!(failed.len(), 1);
    let dlv = failed[0]["id"].as_str().expect("id").to_string();

    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/deliveries/{dlv}/retry", org.id),
            &org.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    app.wait_trace(&org, "f1", Duration::from_secs(10), |t| {
        first_delivery_status(t) == Some("delivered")
    })
    .await;

    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/endpoints/{ep_id}/replay", org.id),
            &org.admin,
            json!({"since": since}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["deliveries"], 1);
    let trace = app
        .wait_trace(&org, "f1", Duration::from_secs(10), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|x| x["status"] == "delivered"))
        })
        .await;
    assert_eq!(trace["deliveries"].as_array().expect("d").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_emits_an_event() {
    let app = spawn_app().await;
    let gone = TestReceiver::start().await;
    gone.always(Reply::status(410));
    let watcher = TestReceiver::start().await;
    let org = app.org("gone").await;
    let ep = app
        .endpoint(&org, json!({"url": gone.url("/")}), &["T"])
        .await;
    app.endpoint(&org, json!({"url": watcher.url("/ops")}), &["switchyard.*"])
        .await;
    app.publish(&org, json!({"id": "g1", "type": "T", "data": {}}))
        .await;
    let trace = app
        .wait_trace(&org, "g1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("failed")
        })
        .await;
    assert_eq!(codes(&trace), vec![json!(410)], "no retry after 410");
    let got = watcher.wait_for(1, Duration::from_secs(10)).await;
    let body = got[0].json();
    assert_eq!(body["type"], "switchyard.endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], ep["id"]);
    let (_, e) = app
        .get(
            &format!(
                "/v1/orgs/{}/endpoints/{}",
                org.id,
                ep["id"].as_str().expect("id")
            ),
            &org.viewer,
        )
        .await;
    assert_eq!(e["enabled"], false);
    assert!(
        e["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("410")
    );
    // A disabled endpoint gets no new deliveries.
    let v = app.publish(&org, json!({"type": "T", "data": {}})).await;
    assert_eq!(v["deliveries"], 0);
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(302).header("location", &rx.url("/elsewhere")));
    let org = app.org("redir").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/hook"), "retry_schedule_s": []}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "x1", "type": "T", "data": {}}))
        .await;
    let trace = app
        .wait_trace(&org, "x1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("failed")
        })
        .await;
    let a = &trace["deliveries"][0]["attempts"][0];
    assert_eq!(a["status_code"], 302);
    assert!(
        a["error"]
            .as_str()
            .expect("error")
            .contains("redirect not followed"),
        "{a}"
    );
    assert!(
        rx.received().iter().all(|r| r.path == "/hook"),
        "the Location was never requested"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timeout_is_recorded_as_such() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(200).delay(Duration::from_secs(3)));
    let org = app.org("slow").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/"), "timeout_ms": 300, "retry_schedule_s": []}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "t1", "type": "T", "data": {}}))
        .await;
    let trace = app
        .wait_trace(&org, "t1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("failed")
        })
        .await;
    let a = &trace["deliveries"][0]["attempts"][0];
    assert!(
        a["error"].as_str().expect("error").starts_with("timeout"),
        "{a}"
    );
    assert_eq!(a["status_code"], Value::Null);
    let ms = a["duration_ms"].as_f64().expect("duration");
    assert!((250.0..2500.0).contains(&ms), "the attempt took {ms} ms");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(429).header("retry-after", "2")]);
    let org = app.org("ra").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/"), "retry_schedule_s": [0]}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "ra1", "type": "T", "data": {}}))
        .await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_back_a_healthy_one() {
    let app = spawn_app().await;
    let slow = TestReceiver::start().await;
    slow.always(Reply::status(200).delay(Duration::from_secs(5)));
    let fast = TestReceiver::start().await;
    let org = app.org("hol").await;
    app.endpoint(
        &org,
        json!({"url": slow.url("/"), "max_in_flight": 1}),
        &["*"],
    )
    .await;
    app.endpoint(&org, json!({"url": fast.url("/")}), &["*"])
        .await;
    for i in 0..30 {
        app.publish(
            &org,
            json!({"id": format!("h{i}"), "type": "T", "data": {}}),
        )
        .await;
    }
    // 30 deliveries to the slow one would take 150 s in series; the fast one gets all at once.
    fast.wait_for(30, Duration::from_secs(4)).await;
    assert!(slow.received().len() <= 2);
    app.stop().await;
}

#[tokio::test]
async fn enreach_and_enate_profiles_reach_their_receivers_unchanged() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("profiles").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/enreach"), "profile": "enreach", "token": "MySecretString"}),
        &["QueueCallIn*"],
    )
    .await;
    let (s, sub) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", org.id),
            &org.admin,
            json!({"event_types": ["PacketCreated"], "url": rx.url("/enate"), "profile": "enate",
                   "custom_header": "X-Enate-Auth", "custom_header_value": "abc",
                   "filter": {"data.FilterObjectGUID": "c-1"}}),
        )
        .await;
    assert_eq!(s, 201, "{sub}");
    assert!(
        sub["secret"]
            .as_str()
            .expect("secret")
            .starts_with("whsec_")
    );
    app.publish(&org, json!({"id": "85b214f2-1d27-4262-87b6-8f55b3199400", "type": "QueueCallInUserAllocated",
        "entity": {"type": "Queue", "id": "6cb31d7d-9cd9-41dc-a096-62cf31fd0281"},
        "data": {"CallId": "9cae633f", "OrganizationId": "fd434d24-f685-431d-8df5-386b5d5ffa73", "QueueName": "Sample queue 1"}})).await;
    app.publish(
        &org,
        json!({"id": "p1", "type": "PacketCreated", "entity": {"type": "Packet", "id": "p-guid"},
        "data": {"PacketGUID": "p-guid", "Status": 1, "FilterObjectGUID": "c-1"}}),
    )
    .await;
    app.publish(&org, json!({"id": "p2", "type": "PacketCreated", "data": {"PacketGUID": "x", "FilterObjectGUID": "other"}})).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let enreach = got
        .iter()
        .find(|r| r.path == "/enreach")
        .expect("enreach request");
    assert_eq!(
        enreach.header("x-benemen-event").as_deref(),
        Some("QueueCallInUserAllocated")
    );
    assert_eq!(
        enreach.header("x-benemen-token").as_deref(),
        Some("MySecretString")
    );
    let b = enreach.json();
    assert_eq!(b["Id"], "85b214f2-1d27-4262-87b6-8f55b3199400");
    assert_eq!(b["EventType"], "QueueCallInUserAllocated");
    assert_eq!(b["EntityType"], "Queue");
    assert_eq!(b["EntityId"], "6cb31d7d-9cd9-41dc-a096-62cf31fd0281");
    assert_eq!(b["RootEntityType"], "Organization");
    assert_eq!(b["RootEntityId"], "fd434d24-f685-431d-8df5-386b5d5ffa73");
    assert_eq!(b["QueueName"], "Sample queue 1");
    let enate = got
        .iter()
        .find(|r| r.path == "/enate")
        .expect("enate request");
    assert_eq!(enate.header("x-enate-auth").as_deref(), Some("abc"));
    assert_eq!(enate.json()["PacketGUID"], "p-guid");
    // The filtered-out packet never arrives: a later marker proves it.
    app.publish(&org, json!({"id": "p3", "type": "PacketCreated", "data": {"PacketGUID": "m", "FilterObjectGUID": "c-1"}})).await;
    let got = rx
        .wait_until(Duration::from_secs(10), |g| {
            g.iter()
                .any(|r| r.json().get("PacketGUID") == Some(&json!("m")))
        })
        .await;
    assert!(
        !got.iter()
            .any(|r| r.path == "/enate" && r.json()["PacketGUID"] == "x")
    );
    app.stop().await;
}

/// The trace shows each attempt's request headers as the receiver got them, in order, with the
/// endpoint's token, credentials and the signature redacted; nothing secret reaches the trace.
#[tokio::test]
async fn the_trace_shows_the_headers_as_sent_without_secrets() {
    let app = spawn_app().await;
    let org = app.org("headers-sent").await;
    let rx = TestReceiver::start().await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/h"), "token": "tok-s3cret-value", "token_header": "X-Crm-Pass",
               "headers": {"X-Tenant": "north", "Authorization": "Bearer s3cret-bearer"}}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "hdr-1", "type": "TicketCreated"}))
        .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let trace = app
        .wait_trace(&org, "hdr-1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    let sent = &trace["deliveries"][0]["attempts"][0]["request_headers"];
    assert_eq!(sent["webhook-id"], "hdr-1");
    assert_eq!(
        sent["webhook-timestamp"].as_str(),
        got[0].header("webhook-timestamp").as_deref()
    );
    assert_eq!(sent["webhook-signature"], "v1,[redacted]");
    assert_eq!(sent["X-Tenant"], "north");
    let text = app.trace_text(&org, "hdr-1").await;
    for secret in ["tok-s3cret-value", "s3cret-bearer"] {
        assert!(!text.contains(secret), "{secret} is in the trace");
    }
    let names: Vec<String> = sent
        .as_object()
        .expect("headers")
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    for name in ["x-crm-pass", "authorization", "content-type"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    // The receiver got the real values.
    assert_eq!(
        got[0].header("x-crm-pass").as_deref(),
        Some("tok-s3cret-value")
    );
    app.stop().await;
}

/// A replay larger than one step is written in several transactions and still re-sends every
/// event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_more_than_one_step_resends_each_event_once() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("big-replay").await;
    let ep = app
        .endpoint(&org, json!({"url": rx.url("/")}), &["*"])
        .await;
    let ep_id = ep["id"].as_str().expect("id");
    let since = switchyard_core::time::to_rfc3339(switchyard_core::time::now_ms() - 1000);
    let total = switchyard_hub::REPLAY_STEP as usize * 2 + 37;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("r-{i}"), "type": "T", "data": {}}))
            .collect();
        app.publish_batch(&org, events).await;
    }
    rx.wait_for(total, Duration::from_secs(120)).await;
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/endpoints/{ep_id}/replay", org.id),
            &org.admin,
            json!({"since": since}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["deliveries"], total, "every event once, across steps");
    rx.wait_for(2 * total, Duration::from_secs(120)).await;
    app.stop().await;
}
