//! Retention on a running hub: finished events go with their deliveries and attempts once past
//! the retention; an event still to be delivered stays.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn retention_deletes_finished_events_and_keeps_undelivered_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| {
        s.retention.max_age = Some(Duration::from_secs(1));
        s.retention.interval = Duration::from_millis(200);
        s.retention.batch = 2;
    })
    .await;
    let org = app.org("ret").await;
    let ok = TestReceiver::start().await;
    ok.always(Reply::status(200));
    let down = TestReceiver::start().await;
    down.always(Reply::status(503));
    app.endpoint(&org, json!({"url": ok.url("/ok")}), &["Fine"])
        .await;
    app.endpoint(
        &org,
        json!({"url": down.url("/down"), "retry_schedule_s": [3600]}),
        &["Stuck"],
    )
    .await;
    for i in 0..5 {
        app.publish(
            &org,
            json!({"id": format!("f{i}"), "type": "Fine", "data": {}}),
        )
        .await;
    }
    app.publish(&org, json!({"id": "s1", "type": "Stuck", "data": {}}))
        .await;
    ok.wait_for(5, Duration::from_secs(10)).await;
    down.wait_for(1, Duration::from_secs(10)).await;

    // Past the retention, the delivered events disappear: from the listing and the trace.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, page) = app
            .get(
                &format!("/v1/orgs/{}/events?limit=100", org.id),
                &org.viewer,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let ids: Vec<&str> = page["data"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        if ids == ["s1"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not delete the delivered events: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = app
        .get(&format!("/v1/orgs/{}/events/f0", org.id), &org.viewer)
        .await;
    assert_eq!(s, 404, "a deleted event has no trace");
    let (s, page) = app
        .get(
            &format!("/v1/orgs/{}/deliveries?limit=100", org.id),
            &org.viewer,
        )
        .await;
    assert_eq!(s, 200);
    let deliveries = page["data"].as_array().expect("deliveries");
    assert_eq!(
        deliveries.len(),
        1,
        "only the pending delivery is left: {page}"
    );
    assert_eq!(deliveries[0]["status"], "pending");
    // The undelivered event is kept with its attempt, whatever its age.
    let t = app.trace(&org, "s1").await;
    assert_eq!(
        t["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    app.stop().await;
}

/// Polls the event until `done` says it is in the state looked for.
async fn wait_event(
    app: &TestApp,
    org: &Org,
    id: &str,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = app
            .get(&format!("/v1/orgs/{}/events/{id}", org.id), &org.viewer)
            .await;
        if done(s, &v) {
            return (s, v);
        }
        assert!(Instant::now() < deadline, "{id}: {what}; last {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn each_organization_keeps_its_data_as_long_as_it_chooses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| {
        s.retention.max_age = Some(Duration::from_secs(3600));
        s.retention.interval = Duration::from_millis(200);
    })
    .await;
    let ok = TestReceiver::start().await;
    ok.always(Reply::status(200));
    let down = TestReceiver::start().await;
    down.always(Reply::status(503));

    // `short` keeps a second, `long` the hub's hour; `pl` keeps events an hour but drops the
    // payloads of delivered ones after a second.
    let short = app.org("short").await;
    let long = app.org("long").await;
    let pl = app.org("pl").await;
    let patch = |org: &Org, key: &str, body: Value| {
        let (path, key) = (format!("/v1/orgs/{}", org.id), key.to_string());
        let app = &app;
        async move {
            app.call(reqwest::Method::PATCH, &path, &key, Some(body))
                .await
        }
    };
    // A tenant admin cannot keep data longer than the hub does; the instance admin can.
    let (s, v) = patch(&short, &short.admin, json!({"retention_s": 7200})).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("instance admin"),
        "{v}"
    );
    let (s, v) = patch(&short, ADMIN_KEY, json!({"retention_s": 7200})).await;
    assert_eq!(
        (s, &v["retention_s"]),
        (StatusCode::OK, &json!(7200)),
        "{v}"
    );
    // Bad values are refused with the rule.
    let (s, v) = patch(&short, &short.admin, json!({"retention_s": 0})).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = patch(
        &pl,
        &pl.admin,
        json!({"retention_s": 60, "payload_retention_s": 120}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be longer"),
        "{v}"
    );
    // A viewer changes nothing.
    let (s, _) = patch(&pl, &pl.viewer, json!({"payload_retention_s": 1})).await;
    assert_eq!(s, 403);
    let (s, v) = patch(&short, &short.admin, json!({"retention_s": 1})).await;
    assert_eq!((s, &v["retention_s"]), (StatusCode::OK, &json!(1)), "{v}");
    let (s, v) = patch(&pl, &pl.admin, json!({"payload_retention_s": 1})).await;
    assert_eq!(
        (s, &v["retention_s"], &v["payload_retention_s"]),
        (StatusCode::OK, &Value::Null, &json!(1)),
        "{v}"
    );

    for org in [&short, &long, &pl] {
        app.endpoint(org, json!({"url": ok.url("/ok")}), &["Fine"])
            .await;
    }
    app.endpoint(
        &pl,
        json!({"url": down.url("/down"), "retry_schedule_s": [3600]}),
        &["Stuck"],
    )
    .await;
    let data = json!({"customer": {"email": "jane@example.com"}});
    for org in [&short, &long, &pl] {
        app.publish(org, json!({"id": "e1", "type": "Fine", "data": data}))
            .await;
    }
    app.publish(&pl, json!({"id": "s1", "type": "Stuck", "data": data}))
        .await;
    ok.wait_for(3, Duration::from_secs(10)).await;
    down.wait_for(1, Duration::from_secs(10)).await;

    wait_event(
        &app,
        &short,
        "e1",
        "short's event past its retention",
        |s, _| s == 404,
    )
    .await;
    let (_, dropped) = wait_event(&app, &pl, "e1", "pl's payload dropped", |s, v| {
        s == 200 && v["data"].is_null()
    })
    .await;
    assert!(dropped["payload_dropped_at"].is_string(), "{dropped}");
    assert_eq!(
        dropped["deliveries"][0]["status"], "delivered",
        "the trace stays: {dropped}"
    );
    // The undelivered event keeps its payload; the other organization keeps everything.
    let stuck = app.trace(&pl, "s1").await;
    assert_eq!(stuck["data"], data, "{stuck}");
    let kept = app.trace(&long, "e1").await;
    assert_eq!(kept["data"], data, "{kept}");
    assert!(kept.get("payload_dropped_at").is_none(), "{kept}");
    // A dropped payload cannot be sent again.
    let delivery = dropped["deliveries"][0]["id"].as_str().expect("id");
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/deliveries/{delivery}/retry", pl.id),
            &pl.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("payload retention"),
        "{v}"
    );
    app.stop().await;
}
