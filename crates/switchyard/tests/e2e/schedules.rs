//! Schedules on a running hub: a fast schedule fires through the real scheduler and its events
//! are routed like any other; the Enneo presets; bad definitions refused; and a hub stopped at
//! the wrong moment fires each fire time once — not twice, not never.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

async fn put_schedule(app: &TestApp, org: &Org, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/v1/orgs/{}/schedules/{name}", org.id),
        &org.admin,
        Some(body),
    )
    .await
}

/// The events of `org` of type `t`, oldest first.
async fn events_of(app: &TestApp, org: &Org, t: &str) -> Vec<Value> {
    let (s, v) = app
        .get(
            &format!("/v1/orgs/{}/events?type={t}&limit=1000", org.id),
            &org.viewer,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut all = v["data"].as_array().expect("data").clone();
    all.reverse();
    all
}

/// Sets a schedule's next fire time in the database of a stopped hub, as a hub that died at
/// that point would have left it.
async fn set_next_fire(dir: &Path, org: &str, name: &str, at_ms: i64) {
    let n = match database_url(dir).await {
        Some(url) => {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .execute(
                    "UPDATE schedules SET next_fire_at = $3 WHERE org_id = $1 AND name = $2",
                    &[&org, &name, &at_ms],
                )
                .await
                .expect("update") as usize
        }
        None => rusqlite::Connection::open(dir.join("switchyard.db"))
            .expect("open db")
            .execute(
                "UPDATE schedules SET next_fire_at = ?3 WHERE org_id = ?1 AND name = ?2",
                rusqlite::params![org, name, at_ms],
            )
            .expect("update"),
    };
    assert_eq!(n, 1);
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("time")
        .timestamp_millis()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_through_the_scheduler_and_its_events_are_routed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| s.schedules.seconds = true).await;
    let org = app.org("sched").await;
    let rx = TestReceiver::start().await;
    app.endpoint(&org, json!({"url": rx.url("/tick")}), &["Tick"])
        .await;

    let (s, v) = put_schedule(
        &app,
        &org,
        "tick",
        json!({"cron": "* * * * * *", "event_type": "Tick", "data": {"job": "sync-tickets"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["timezone"], "UTC");
    assert_eq!(v["misfire"], "fire_once");
    let next: Vec<i64> = v["next_fire_times"]
        .as_array()
        .expect("next fire times")
        .iter()
        .map(|t| ms(t.as_str().expect("time")))
        .collect();
    assert_eq!(next.len(), 5, "{v}");
    assert!(next.windows(2).all(|w| w[1] - w[0] == 1000), "{next:?}");

    // Three fire times, each routed to the endpoint like any event.
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let ids: Vec<String> = got
        .iter()
        .take(3)
        .map(|r| r.header("webhook-id").expect("id"))
        .collect();
    assert!(
        ids.iter().all(|id| id.starts_with("schedule:tick:")),
        "{ids:?}"
    );
    let body = got[0].json();
    assert_eq!(body["data"], json!({"job": "sync-tickets"}));
    assert_eq!(body["type"], "Tick");
    let events = events_of(&app, &org, "Tick").await;
    let stamps: Vec<i64> = events
        .iter()
        .map(|e| ms(e["timestamp"].as_str().expect("timestamp")))
        .collect();
    assert!(
        stamps.iter().all(|t| t % 1000 == 0),
        "fire times are whole seconds: {stamps:?}"
    );
    assert!(
        stamps.windows(2).all(|w| w[1] > w[0]),
        "one event per fire time: {stamps:?}"
    );
    assert_eq!(
        events[0]["entity"],
        json!({"type": "Schedule", "id": "tick"})
    );
    assert_eq!(
        events[0]["id"],
        format!(
            "schedule:tick:{}",
            chrono::DateTime::from_timestamp_millis(stamps[0])
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    );

    // Disabled, it stops; the GET says so.
    let (s, v) = put_schedule(
        &app,
        &org,
        "tick",
        json!({"cron": "* * * * * *", "event_type": "Tick", "enabled": false}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["next_fire_times"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = events_of(&app, &org, "Tick").await.len();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(events_of(&app, &org, "Tick").await.len(), settled);
    let (s, v) = app
        .get(&format!("/v1/orgs/{}/schedules/tick", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    assert!(v["last_fired_at"].is_string(), "{v}");

    // Another organization sees none of it.
    let other = app.org("sched-other").await;
    let (s, _) = app
        .get(&format!("/v1/orgs/{}/schedules/tick", org.id), &other.admin)
        .await;
    assert_eq!(s, 404);
    let (s, v) = app
        .get(&format!("/v1/orgs/{}/schedules", other.id), &other.viewer)
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"data": [], "next_cursor": null}))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_tightened_after_a_schedule_was_saved_holds_for_its_fires() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| s.schedules.seconds = true).await;
    let org = app.org("sched-schema").await;
    let rx = TestReceiver::start().await;
    app.endpoint(&org, json!({"url": rx.url("/tick")}), &["Tick"])
        .await;
    let (s, v) = put_schedule(
        &app,
        &org,
        "tick",
        json!({"cron": "* * * * * *", "event_type": "Tick", "data": {"job": "sync"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    rx.wait_for(1, Duration::from_secs(30)).await;

    // The type's schema now wants what the schedule's data lacks.
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/event-types/Tick", org.id),
            &org.admin,
            Some(json!({"schema": {"type": "object", "required": ["report"]}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let tightened = now_ms();
    let published = events_of(&app, &org, "Tick").await.len();
    // The schedule keeps its times (each fire refused, not retried forever)…
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = app
            .get(&format!("/v1/orgs/{}/schedules/tick", org.id), &org.viewer)
            .await;
        if v["last_fired_at"]
            .as_str()
            .is_some_and(|t| ms(t) >= tightened + 3_000)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule stopped moving on: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and publishes nothing its type refuses (one fire may have been checked before).
    let after = events_of(&app, &org, "Tick").await;
    assert!(
        after.len() <= published + 1,
        "{} events published past the schema",
        after.len() - published
    );
    assert!(
        after
            .iter()
            .all(|e| ms(e["timestamp"].as_str().expect("time")) <= tightened + 1_000),
        "a fire after the change was published: {after:?}"
    );
    // Its data fixed, it fires again.
    let (s, v) = put_schedule(
        &app,
        &org,
        "tick",
        json!({"cron": "* * * * * *", "event_type": "Tick", "data": {"report": "daily"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events_of(&app, &org, "Tick")
        .await
        .iter()
        .any(|e| e["data"] == json!({"report": "daily"}))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the fixed schedule did not fire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enneo_presets_and_what_is_refused() {
    let app = spawn_app().await;
    let org = app.org("sched-presets").await;
    let (s, v) = app.get("/v1/schedule-presets", &org.viewer).await;
    assert_eq!(s, 200, "{v}");
    let lines: Vec<(String, String)> = v
        .as_array()
        .expect("presets")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").into(),
                p["cron"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("CronMinute".to_string(), "*/5 * * * 1-5".to_string()),
            ("CronHour".into(), "1 * * * *".into()),
            ("CronDay".into(), "0 2 * * 1-5".into()),
            ("CronWeek".into(), "0 2 * * 6".into()),
        ]
    );
    let (s, v) = put_schedule(
        &app,
        &org,
        "nightly",
        json!({"preset": "CronDay", "timezone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["cron"], "0 2 * * 1-5");
    assert_eq!(v["event_type"], "CronDay");
    for t in v["next_fire_times"].as_array().expect("times") {
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("time")).expect("time");
        use chrono::{Datelike, Timelike};
        assert_eq!((t.hour(), t.minute()), (2, 0), "{v}");
        assert!(t.weekday().number_from_monday() <= 5, "{v}");
        let offset = t.offset().local_minus_utc();
        assert!(offset == 3600 || offset == 7200, "Berlin time: {v}");
    }
    let (s, v) = put_schedule(&app, &org, "weekly", json!({"preset": "CronWeek"})).await;
    assert_eq!(s, 201, "{v}");
    for t in v["next_fire_times"].as_array().expect("times") {
        use chrono::Datelike;
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("time")).expect("time");
        assert_eq!(t.weekday(), chrono::Weekday::Sat, "{v}");
    }

    // The event type's schema holds for what a schedule will publish.
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/event-types/Report", org.id),
            &org.admin,
            Some(json!({"schema": {"type": "object", "required": ["report"]}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let refused = [
        (
            json!({"cron": "0 2 * *", "event_type": "Report", "data": {"report": 1}}),
            "five fields",
        ),
        (
            json!({"cron": "0 2 * * 1", "event_type": "Report", "data": {"report": 1},
                "timezone": "Europe/Atlantis"}),
            "IANA",
        ),
        (
            json!({"cron": "*/10 * * * * *", "event_type": "Report", "data": {"report": 1}}),
            "five fields",
        ),
        (
            json!({"cron": "0 25 * * *", "event_type": "Report", "data": {"report": 1}}),
            "not valid",
        ),
        (
            json!({"cron": "0 2 * * *", "event_type": "Report", "data": {}}),
            "schema of `Report`",
        ),
        (
            json!({"cron": "0 2 * * *", "event_type": "switchyard.fake"}),
            "event_type",
        ),
        (
            json!({"cron": "0 2 * * *", "event_type": "Report", "data": {"report": 1},
                "misfire": "later"}),
            "misfire",
        ),
        (json!({"preset": "CronYear"}), "CronMinute"),
        (json!({"event_type": "Report"}), "`cron` is required"),
    ];
    for (body, says) in refused {
        let (s, v) = put_schedule(&app, &org, "bad", body.clone()).await;
        assert_eq!(s, 422, "{body} → {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{body} → {msg}");
    }
    // A viewer or publisher may read but not define.
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/schedules/x", org.id),
            &org.publisher,
            Some(json!({"preset": "CronHour"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = app
        .get(&format!("/v1/orgs/{}/schedules", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{}/schedules/weekly", org.id),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, 204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_stopped_at_the_wrong_moment_fires_each_time_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |_| {}).await;
    let org = app.org("sched-crash").await;
    let rx = TestReceiver::start().await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/r")}),
        &["Yearly", "Minutely", "Skipped"],
    )
    .await;
    // A line that will not fire by itself during the test.
    let (s, v) = put_schedule(
        &app,
        &org,
        "yearly",
        json!({"cron": "0 0 1 1 *", "event_type": "Yearly"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = put_schedule(
        &app,
        &org,
        "minutely",
        json!({"cron": "* * * * *", "event_type": "Minutely"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = put_schedule(
        &app,
        &org,
        "skipped",
        json!({"cron": "0 0 1 1 *", "event_type": "Skipped", "misfire": "skip"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    app.stop().await;

    // 1. The hub died after a fire time came and before its event was committed: the next
    //    start fires it — once.
    let fire_time = (now_ms() / 1000 - 3) * 1000;
    set_next_fire(tmp.path(), &org.id, "yearly", fire_time).await;
    // 2. A minutely schedule whose hub was down for ten minutes: `fire_once` fires once, for
    //    the latest missed minute.
    let down_since = (now_ms() / 60_000 - 10) * 60_000;
    set_next_fire(tmp.path(), &org.id, "minutely", down_since).await;
    // 3. A `skip` schedule down as long fires nothing for what it missed.
    set_next_fire(tmp.path(), &org.id, "skipped", down_since).await;
    let restarted_at = now_ms();
    let app = spawn_app_in(tmp.path(), |_| {}).await;
    let yearly = rx
        .wait_until(Duration::from_secs(10), |got| {
            got.iter().any(|r| r.json()["type"] == "Yearly")
                && got.iter().any(|r| r.json()["type"] == "Minutely")
        })
        .await;
    let first_id = format!(
        "schedule:yearly:{}",
        chrono::DateTime::from_timestamp_millis(fire_time)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(
        yearly
            .iter()
            .filter(|r| r.header("webhook-id").as_deref() == Some(first_id.as_str()))
            .count(),
        1
    );
    let missed: Vec<i64> = events_of(&app, &org, "Minutely")
        .await
        .iter()
        .map(|e| ms(e["timestamp"].as_str().expect("timestamp")))
        .filter(|t| *t <= restarted_at)
        .collect();
    assert_eq!(
        missed.len(),
        1,
        "one late event for ten missed minutes: {missed:?}"
    );
    assert!(
        missed[0] > restarted_at - 60_000 && missed[0] % 60_000 == 0,
        "the latest missed minute: {missed:?} vs {restarted_at}"
    );
    let (_, v) = app
        .get(
            &format!("/v1/orgs/{}/schedules/minutely", org.id),
            &org.viewer,
        )
        .await;
    assert!(
        ms(v["next_fire_times"][0].as_str().expect("next")) > restarted_at,
        "{v}"
    );
    let (_, v) = app
        .get(
            &format!("/v1/orgs/{}/schedules/skipped", org.id),
            &org.viewer,
        )
        .await;
    assert!(
        ms(v["next_fire_times"][0].as_str().expect("next")) > now_ms(),
        "{v}"
    );
    assert!(events_of(&app, &org, "Skipped").await.is_empty());
    app.stop().await;

    // 4. The hub died after committing the event and before moving the schedule on: the next
    //    start tries the same fire time again, and it is stored once.
    set_next_fire(tmp.path(), &org.id, "yearly", fire_time).await;
    let app = spawn_app_in(tmp.path(), |_| {}).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = app
            .get(
                &format!("/v1/orgs/{}/schedules/yearly", org.id),
                &org.viewer,
            )
            .await;
        if ms(v["next_fire_times"][0].as_str().expect("next")) > now_ms() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never moved on: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let yearly = events_of(&app, &org, "Yearly").await;
    assert_eq!(yearly.len(), 1, "{yearly:?}");
    assert_eq!(yearly[0]["id"], first_id.as_str());
    let trace = app.trace(&org, &first_id).await;
    assert_eq!(
        trace["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{trace:#}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.received()
            .iter()
            .filter(|r| r.header("webhook-id").as_deref() == Some(first_id.as_str()))
            .count(),
        1,
        "delivered once"
    );
    app.stop().await;
}
