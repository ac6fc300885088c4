//! Delivery policy: ordered delivery (skip and block), rate limits measured at the receiver, a
//! 429 pausing only its endpoint, backlogs that drain at once when a receiver comes back,
//! endpoint health and disabling by policy.

use crate::helpers::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A receiver for ordered deliveries: records each arrival as `(entity, n, ok)`, counts how
/// many requests of one entity are in flight at once, and fails chosen `(entity, n)` a given
/// number of times.
#[derive(Default)]
struct OrderState {
    arrivals: Mutex<Vec<(String, u64, bool)>>,
    in_flight: Mutex<HashMap<String, u32>>,
    max_in_flight_per_key: Mutex<u32>,
    fail: Mutex<HashMap<(String, u64), u32>>,
    /// Entities that always fail (until removed).
    down: Mutex<Vec<String>>,
}

async fn order_handler(State(s): State<Arc<OrderState>>, body: Bytes) -> impl IntoResponse {
    let v: Value = serde_json::from_slice(&body).expect("json");
    let entity = v["data"]["entity"].as_str().expect("entity").to_string();
    let n = v["data"]["n"].as_u64().expect("n");
    {
        let mut f = s.in_flight.lock().expect("lock");
        let c = f.entry(entity.clone()).or_default();
        *c += 1;
        let mut m = s.max_in_flight_per_key.lock().expect("lock");
        *m = (*m).max(*c);
    }
    // Long enough for a second request of the same key to overlap, were one sent.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let ok = {
        let mut fail = s.fail.lock().expect("lock");
        let left = fail.entry((entity.clone(), n)).or_default();
        if *left > 0 {
            *left -= 1;
            false
        } else {
            !s.down.lock().expect("lock").contains(&entity)
        }
    };
    s.arrivals
        .lock()
        .expect("lock")
        .push((entity.clone(), n, ok));
    *s.in_flight
        .lock()
        .expect("lock")
        .get_mut(&entity)
        .expect("entry") -= 1;
    if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

async fn order_receiver() -> (String, Arc<OrderState>) {
    let state = Arc::new(OrderState::default());
    let app = axum::Router::new()
        .fallback(order_handler)
        .with_state(state.clone());
    let url = format!("http://{}/", serve_on_loopback(app).await);
    (url, state)
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ordered_event(entity: &str, n: u64) -> Value {
    json!({
        "id": format!("{entity}-{n}"),
        "type": "TicketUpdated",
        "entity": {"type": "Ticket", "id": entity},
        "data": {"entity": entity, "n": n},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_deliveries_arrive_in_publish_order_per_entity_while_a_head_fails() {
    let _heavy = TIMING.read().await;
    let app = spawn_app().await;
    let (url, rx) = order_receiver().await;
    // The head of t7 fails twice before it succeeds.
    rx.fail.lock().expect("lock").insert(("t7".into(), 0), 2);
    let org = app.org("ordered").await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": url, "ordered": true, "max_in_flight": 32, "retry_schedule_s": [0, 0, 0]}),
            &["*"],
        )
        .await;
    assert_eq!(ep["ordered"], true);
    assert_eq!(ep["ordering_key"], "entity");
    assert_eq!(ep["on_head_failure"], "skip");
    // 1,000 events over 20 entities: each entity's events published in order, the entities
    // concurrently, in batches.
    let mut tasks = Vec::new();
    for e in 0..20 {
        let (client, base, key) = (
            app.client.clone(),
            app.url(&format!("/v1/orgs/{}/events/batch", org.id)),
            org.publisher.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let entity = format!("t{e}");
            for chunk in 0..5u64 {
                let events: Vec<Value> = (chunk * 10..chunk * 10 + 10)
                    .map(|n| ordered_event(&entity, n))
                    .collect();
                let r = client
                    .post(&base)
                    .bearer_auth(&key)
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    wait_for("every event delivered", Duration::from_secs(60), || {
        rx.arrivals
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.2)
            .count()
            >= 1000
    })
    .await;
    let arrivals = rx.arrivals.lock().expect("lock").clone();
    let mut per_key: HashMap<String, Vec<(u64, bool)>> = HashMap::new();
    for (e, n, ok) in arrivals {
        per_key.entry(e).or_default().push((n, ok));
    }
    assert_eq!(per_key.len(), 20);
    for (e, got) in &per_key {
        let delivered: Vec<u64> = got.iter().filter(|g| g.1).map(|g| g.0).collect();
        assert_eq!(
            delivered,
            (0..50).collect::<Vec<_>>(),
            "{e}: delivered in publish order, each once"
        );
        // Every request, failed ones included, in order: a retried head is never overtaken.
        let all: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "{e}: {all:?}");
    }
    assert_eq!(
        per_key["t7"][..3],
        [(0, false), (0, false), (0, true)],
        "the head retried in place"
    );
    assert_eq!(
        *rx.max_in_flight_per_key.lock().expect("lock"),
        1,
        "one request at a time per key"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_head_blocks_its_key_until_retried_by_hand_or_is_skipped() {
    let app = spawn_app().await;
    let (url, rx) = order_receiver().await;
    rx.down.lock().expect("lock").push("a".into());
    let org = app.org("blocking").await;
    let block = app
        .endpoint(
            &org,
            json!({"url": format!("{url}block"), "ordered": true, "on_head_failure": "block",
                   "ordering_key": "data.entity", "retry_schedule_s": [0]}),
            &["Block"],
        )
        .await;
    assert_eq!(block["ordering_key"], "data.entity");
    for (e, n) in [("a", 0), ("a", 1), ("b", 0)] {
        let mut ev = ordered_event(e, n);
        ev["type"] = "Block".into();
        app.publish(&org, ev).await;
    }
    // a/0 fails twice (the schedule allows one retry) and is blocked; b goes on.
    let head = app
        .wait_trace(&org, "a-0", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("blocked")
        })
        .await;
    let head_delivery = head["deliveries"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.wait_trace(&org, "b-0", Duration::from_secs(10), |t| {
        first_delivery_status(t) == Some("delivered")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = app.trace(&org, "a-1").await;
    assert_eq!(waiting["deliveries"][0]["status"], "pending");
    assert_eq!(waiting["deliveries"][0]["next_attempt_at"], Value::Null);
    assert_eq!(waiting["deliveries"][0]["in_flight"], false);
    assert_eq!(waiting["deliveries"][0]["ordering_key"], "data:a");
    assert!(
        rx.arrivals
            .lock()
            .expect("lock")
            .iter()
            .all(|a| (a.0.as_str(), a.1) != ("a", 1)),
        "the key waits behind its blocked head"
    );
    // Retrying the waiting one is refused: it would overtake its head.
    let waiting_id = waiting["deliveries"][0]["id"].as_str().expect("id");
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/deliveries/{waiting_id}/retry", org.id),
            &org.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // The receiver recovers; retrying the head by hand resumes the key, in order.
    rx.down.lock().expect("lock").clear();
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/deliveries/{head_delivery}/retry", org.id),
            &org.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["in_flight"], true, "a manual retry goes now: {v}");
    let resumed = app
        .wait_trace(&org, "a-1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    // Its trace says why it went this late: it waited behind the head of its key.
    let waited = resumed["deliveries"][0]["attempts"][0]["waited"]
        .as_str()
        .unwrap_or_default();
    assert!(waited.contains("ordering"), "{resumed}");
    let a: Vec<(u64, bool)> = rx
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .filter(|x| x.0 == "a")
        .map(|x| (x.1, x.2))
        .collect();
    assert_eq!(a, vec![(0, false), (0, false), (0, true), (1, true)]);

    // With `skip` (the default), a head that fails for good is marked failed and its key
    // moves on by itself.
    let (url2, rx2) = order_receiver().await;
    rx2.down.lock().expect("lock").push("c".into());
    app.endpoint(
        &org,
        json!({"url": url2, "ordered": true, "retry_schedule_s": [0]}),
        &["Skip"],
    )
    .await;
    for n in 0..3 {
        let mut ev = ordered_event("c", n);
        ev["type"] = "Skip".into();
        ev["id"] = format!("skip-{n}").into();
        app.publish(&org, ev).await;
    }
    wait_for(
        "the key passes its failed head",
        Duration::from_secs(10),
        || rx2.arrivals.lock().expect("lock").len() >= 6,
    )
    .await;
    let c: Vec<u64> = rx2
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .map(|x| x.1)
        .collect();
    assert_eq!(c, vec![0, 0, 1, 1, 2, 2]);
    app.wait_trace(&org, "skip-2", Duration::from_secs(5), |t| {
        first_delivery_status(t) == Some("failed")
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rps_holds_at_the_receiver() {
    let _timed = TIMING.write().await;
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("rps").await;
    app.endpoint(
        &org,
        json!({"url": rx.url("/"), "max_rps": 20, "max_in_flight": 50}),
        &["*"],
    )
    .await;
    let events: Vec<Value> = (0..80)
        .map(|i| json!({"id": format!("r{i}"), "type": "T", "data": {}}))
        .collect();
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/events/batch", org.id),
            &org.publisher,
            json!({"events": events}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let got = rx.wait_for(80, Duration::from_secs(20)).await;
    let span = got[79].at.duration_since(got[0].at).as_secs_f64();
    let rate = 79.0 / span;
    assert!(
        (18.0..=22.0).contains(&rate),
        "{rate:.1} requests/s over {span:.2} s, limit 20"
    );
    // The trace says what held the later attempts back.
    let t = app
        .wait_trace(&org, "r79", Duration::from_secs(5), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    let waited = t["deliveries"][0]["attempts"][0]["waited"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(waited.contains("max_rps"), "{t}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_only_its_endpoint() {
    let app = spawn_app().await;
    let slow = TestReceiver::start().await;
    let fine = TestReceiver::start().await;
    slow.script([Reply::status(429).header("retry-after", "2")]);
    let org = app.org("throttle").await;
    app.endpoint(
        &org,
        json!({"url": slow.url("/"), "max_in_flight": 1, "retry_schedule_s": [1, 1, 1]}),
        &["*"],
    )
    .await;
    app.endpoint(&org, json!({"url": fine.url("/")}), &["*"])
        .await;
    for i in 0..10 {
        app.publish(
            &org,
            json!({"id": format!("t{i}"), "type": "T", "data": {}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = slow.wait_for(11, Duration::from_secs(15)).await;
    let throttled_at = got[0].at;
    let next = got[1].at;
    let paused = next.duration_since(throttled_at);
    assert!(
        paused >= Duration::from_millis(1900),
        "the endpoint rested {paused:?} after Retry-After: 2"
    );
    // The other endpoint went on meanwhile.
    let during = fine
        .received()
        .iter()
        .filter(|r| r.at > throttled_at && r.at < next)
        .count();
    assert!(
        during >= 5,
        "the other endpoint got {during} requests meanwhile"
    );
    // The trace says why: the throttled attempt names the Retry-After, and the attempts held
    // meanwhile name the pause.
    let t = app
        .wait_trace(&org, "t0", Duration::from_secs(5), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| d["status"] == "delivered"))
        })
        .await;
    let throttled = t["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["attempt_count"] == 2)
        .expect("the throttled delivery");
    assert!(
        throttled["attempts"][0]["retry_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Retry-After 2 s"),
        "{throttled}"
    );
    let t1 = app.trace(&org, "t1").await;
    assert!(t1.to_string().contains("paused after a 429/503"), "{t1}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_once_when_its_receiver_answers_again() {
    let _heavy = TIMING.read().await;
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    // 500, not 503: a 503 would make the hub slow down, which is another test.
    rx.always(Reply::status(500));
    let org = app.org("backlog").await;
    let ep = app
        .endpoint(
            &org,
            // The schedule alone would wait ten minutes before trying again.
            json!({"url": rx.url("/"), "retry_schedule_s": [600, 600], "max_in_flight": 50}),
            &["*"],
        )
        .await;
    for b in 0..10 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"id": format!("b{b}-{i}"), "type": "T", "data": {}}))
            .collect();
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/events/batch", org.id),
                &org.publisher,
                json!({"events": events}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
    }
    rx.wait_for(1000, Duration::from_secs(60)).await;
    let health_path = format!(
        "/v1/orgs/{}/endpoints/{}/health",
        org.id,
        ep["id"].as_str().expect("id")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, h) = app.get(&health_path, &org.viewer).await;
        assert_eq!(s, 200, "{h}");
        if h["consecutive_failures"] == 1000 {
            assert_eq!(h["window"]["success_rate"], 0.0);
            assert_eq!(h["last_error"], "receiver answered 500");
            assert!(h["failing_since"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The receiver is back; one fresh event succeeds and the whole backlog follows at once.
    rx.always(Reply::status(200));
    let back = Instant::now();
    app.publish(&org, json!({"id": "fresh", "type": "T", "data": {}}))
        .await;
    rx.wait_for(2001, Duration::from_secs(30)).await;
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "the backlog did not wait for its schedule"
    );
    let (_, h) = app.get(&health_path, &org.viewer).await;
    assert_eq!(h["consecutive_failures"], 0, "{h}");
    assert!(h["last_success_at"].is_string());
    assert!(h["window"]["p99_ms"].is_number());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_past_the_policy_is_disabled_into_its_own_org_and_resumes_when_enabled()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| {
        s.delivery.disable_after_failing_s = 2;
        s.delivery.disable_min_span_s = 1;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(500));
    let watcher = TestReceiver::start().await;
    let bystander_rx = TestReceiver::start().await;
    let org = app.org("policy").await;
    let bystander = app.org("bystander").await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": rx.url("/"), "retry_schedule_s": [1, 1, 1, 1, 1, 1, 1, 1]}),
            &["T"],
        )
        .await;
    app.endpoint(&org, json!({"url": watcher.url("/")}), &["switchyard.*"])
        .await;
    app.endpoint(
        &bystander,
        json!({"url": bystander_rx.url("/")}),
        &["switchyard.*"],
    )
    .await;
    for i in 0..3 {
        app.publish(
            &org,
            json!({"id": format!("p{i}"), "type": "T", "data": {}}),
        )
        .await;
    }
    let got = watcher.wait_for(1, Duration::from_secs(20)).await;
    let ev = got[0].json();
    assert_eq!(ev["type"], "switchyard.endpoint.disabled");
    assert_eq!(ev["data"]["endpoint_id"], ep["id"]);
    assert!(
        ev["data"]["reason"]
            .as_str()
            .expect("reason")
            .contains("every attempt failed"),
        "{ev}"
    );
    let ep_path = format!(
        "/v1/orgs/{}/endpoints/{}",
        org.id,
        ep["id"].as_str().expect("id")
    );
    let (_, now) = app.get(&ep_path, &org.viewer).await;
    assert_eq!(now["enabled"], false);
    // Its deliveries are kept, not failed.
    for i in 0..3 {
        let t = app.trace(&org, &format!("p{i}")).await;
        assert_eq!(t["deliveries"][0]["status"], "pending", "{t}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bystander_rx.received().is_empty(),
        "another org hears nothing"
    );
    // Re-enabled with a working receiver, the kept deliveries go out.
    rx.always(Reply::status(200));
    let (s, v) = app
        .call(
            Method::PATCH,
            &ep_path,
            &org.admin,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for i in 0..3 {
        app.wait_trace(&org, &format!("p{i}"), Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("delivered")
        })
        .await;
    }
    app.stop().await;
}

/// Counts the requests it answers (200, at once).
async fn counting_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .fallback(|State(c): State<Arc<AtomicUsize>>| async move {
            c.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        })
        .with_state(count.clone());
    let addr = serve_on_loopback(app).await;
    (format!("http://{addr}/hook"), count)
}

/// The real binary with 1,000 endpoints, each subscribed to every event: a burst of 20 events
/// (20,000 deliveries) is delivered whole, and the hub's peak resident memory stays under
/// 100 MB on SQLite, 120 MB on PostgreSQL (its client's pool of connections and their buffers:
/// measured 98–102 MB on a fast day, with the code of before and after the performance pass
/// alike; 120 MB is the fan-out bound the performance issue sets). Deliveries beyond what is in
/// flight wait in the store, each endpoint's queue holds pointers, and SQLite's caches are held
/// to a limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_endpoints_take_a_burst_in_under_100_mb() {
    use std::sync::atomic::Ordering;
    const ENDPOINTS: usize = 1_000;
    const EVENTS: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let (url, count) = counting_receiver().await;
    let (s, _) = hub
        .post("/v1/orgs", ADMIN_KEY, json!({"id": "many", "name": "Many"}))
        .await
        .expect("org");
    assert_eq!(s, 201);
    let hub = Arc::new(hub);
    let mut creators = Vec::new();
    for part in 0..8 {
        let (hub, url) = (hub.clone(), url.clone());
        creators.push(tokio::spawn(async move {
            for _ in (part..ENDPOINTS).step_by(8) {
                let (s, ep) = hub
                    .post(
                        "/v1/orgs/many/endpoints",
                        ADMIN_KEY,
                        json!({"url": url, "retry_schedule_s": [1, 1, 1]}),
                    )
                    .await
                    .expect("endpoint");
                assert_eq!(s, 201, "{ep}");
                let (s, sub) = hub
                    .post(
                        "/v1/orgs/many/subscriptions",
                        ADMIN_KEY,
                        json!({"event_types": ["*"], "endpoint_id": ep["id"]}),
                    )
                    .await
                    .expect("subscription");
                assert_eq!(s, 201, "{sub}");
            }
        }));
    }
    for c in creators {
        c.await.expect("creator");
    }
    let publishers: Vec<_> = (0..EVENTS)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let (s, e) = hub
                    .post(
                        "/v1/orgs/many/events",
                        ADMIN_KEY,
                        json!({
                            "type": "TicketUpdated",
                            "entity": {"type": "Ticket", "id": format!("t{n}")},
                            "data": {"n": n, "text": "x".repeat(300)},
                        }),
                    )
                    .await
                    .expect("publish");
                assert_eq!(s, 202, "{e}");
            })
        })
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    wait_for("every delivery", Duration::from_secs(240), || {
        count.load(Ordering::SeqCst) >= ENDPOINTS * EVENTS
    })
    .await;
    let rss = hub.peak_rss_mb();
    eprintln!("peak RSS with {ENDPOINTS} endpoints: {rss} MiB");
    let bound = if on_postgres() { 120 } else { 100 };
    assert!(
        rss < bound,
        "the hub's peak RSS was {rss} MiB with {ENDPOINTS} endpoints (bound {bound} MiB)"
    );
}
