//! Retention on a running hub: finished events go with their deliveries and attempts once past
//! the retention; an event still to be delivered stays.

use crate::helpers::*;
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
