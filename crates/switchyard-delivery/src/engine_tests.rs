//! The engine on virtual time: a real SQLite store and a real HTTP receiver on 127.0.0.1, a
//! manual clock moved forward instead of waited for, and `until_idle` instead of polling.

use crate::{DEFAULT_LEASE_MS, Engine, EngineConfig, EngineEvent, MIN_LEASE_MS};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::crypto::MasterKey;
use switchyard_core::egress::EgressPolicy;
use switchyard_core::endpoint::{Change, EndpointChanges};
use switchyard_core::ids::{EndpointId, SubscriptionId};
use switchyard_core::routing::RouteTable;
use switchyard_core::time::{Clock, ManualClock, now_ms};
use switchyard_core::*;
use switchyard_egress::Clients;
use switchyard_store::prelude::*;
use switchyard_store::{Claim, PublishOutcome, RoutedBatch, RoutedEvent, SqliteStore};
use tokio::sync::mpsc;

/// A receiver that answers each request with the next status of `script` (the last one
/// repeats) and counts the requests.
async fn receiver(script: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let code = script[n.min(script.len() - 1)];
            async move { StatusCode::from_u16(code).unwrap_or(StatusCode::OK) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), hits)
}

struct Rig {
    store: Arc<SqliteStore>,
    engine: Engine,
    clock: Arc<ManualClock>,
    events: mpsc::UnboundedReceiver<EngineEvent>,
    endpoint: EndpointId,
    lease_ms: i64,
    _dir: tempfile::TempDir,
}

/// The engine's settings in these tests: a poller that never runs by itself, a fixed jitter.
fn test_config(lease_ms: i64) -> EngineConfig {
    EngineConfig {
        poll_interval: Duration::from_secs(3600),
        jitter_seed: Some(7),
        lease_ms,
        ..EngineConfig::new("node-t")
    }
}

fn test_clients() -> Clients {
    Clients::new(EgressPolicy {
        allow: vec!["127.0.0.0/8".parse().expect("cidr")],
        require_https: false,
    })
}

/// An organization with one endpoint at `url` (retry schedule `schedule`) subscribed to
/// everything, and an engine on a manual clock whose poller never runs by itself.
async fn rig(url: &str, schedule: Vec<u32>) -> Rig {
    rig_with_lease(url, schedule, DEFAULT_LEASE_MS).await
}

/// [`rig`] with claims leased for `lease_ms`.
async fn rig_with_lease(url: &str, schedule: Vec<u32>, lease_ms: i64) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite"), key).expect("open"));
    store
        .create_org(&Org::named("o", "O").expect("valid org"))
        .await
        .expect("org");
    let now = now_ms();
    let mut ep = Endpoint::new(&switchyard_core::ids::OrgId::stored("o".into()), now);
    let settings = EndpointChanges {
        url: Some(url.into()),
        timeout_ms: Some(5000),
        retry_schedule_s: Some(Some(schedule)),
        max_in_flight: Some(4),
        ..Default::default()
    };
    ep.apply(settings, Change::Patch, test_clients().policy())
        .expect("valid settings");
    store.create_endpoint(&ep).await.expect("endpoint");
    let sub = Subscription::stored(switchyard_core::StoredSubscription {
        id: SubscriptionId::generate(),
        org_id: switchyard_core::ids::OrgId::stored("o".into()),
        event_types: vec!["*".into()],
        target: Target::Endpoint(ep.id.clone()),
        entity_id: None,
        filter: None,
        mode: Mode::Async,
        created_at: now,
    });
    store.create_subscription(&sub, None).await.expect("sub");
    let clock = Arc::new(ManualClock::new(now));
    let (tx, events) = mpsc::unbounded_channel();
    let shares = switchyard_fair::Shares::new(Default::default());
    let engine = Engine::start_with_clock(
        store.clone(),
        test_config(lease_ms),
        test_clients(),
        None,
        tx,
        shares,
        clock.clone(),
    )
    .expect("the engine starts");
    Rig {
        store,
        engine,
        clock,
        events,
        endpoint: ep.id,
        lease_ms,
        _dir: dir,
    }
}

impl Rig {
    /// Publishes one event and hands its deliveries to the engine, as the hub does: claimed
    /// for the rig's lease.
    async fn publish(&self, id: &str) {
        let snapshot = self
            .store
            .routing(&switchyard_core::ids::OrgId::stored("o".into()))
            .await
            .expect("routing");
        let table = RouteTable::new(snapshot.subscriptions, snapshot.ordered);
        let event = NewEvent {
            id: switchyard_core::ids::EventId::stored(id.into()),
            event_type: "T".into(),
            timestamp: self.clock.now_ms(),
            entity: EntityRef::default(),
            data: serde_json::json!({}),
        };
        let batch = RoutedBatch {
            routing_version: snapshot.version,
            events: vec![RoutedEvent {
                claim: vec![true; table.route(&event).len()],
                targets: table.route(&event),
                event,
            }],
        };
        let before = now_ms();
        match self
            .store
            .publish(
                &switchyard_core::ids::OrgId::stored("o".into()),
                batch,
                Claim {
                    node: "node-t",
                    lease_ms: self.lease_ms,
                },
            )
            .await
            .expect("publish")
        {
            PublishOutcome::Committed(out) => {
                for p in out {
                    for d in &p.new_deliveries {
                        let lease = before + self.lease_ms..=now_ms() + self.lease_ms;
                        assert!(lease.contains(&d.lease_until), "claimed for the lease");
                    }
                    self.engine.dispatch(p.new_deliveries);
                }
            }
            PublishOutcome::StaleRouting(_) => panic!("nothing changed the routing"),
        }
    }

    async fn delivery(&self) -> Delivery {
        let list = self
            .store
            .list_deliveries(
                &switchyard_core::ids::OrgId::stored("o".into()),
                &switchyard_store::DeliveryQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(list.len(), 1);
        list[0].clone()
    }
}

#[tokio::test]
async fn retries_follow_the_schedule_on_virtual_time() {
    let (url, hits) = receiver(vec![500, 500, 200]).await;
    let rig = rig(&url, vec![60, 3600]).await;
    let start = rig.clock.now_ms();
    rig.publish("e1").await;
    rig.engine.until_idle().await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let d = rig.delivery().await;
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 1);
    // The first retry is due 60 s ± 10 % after the first attempt.
    let due = d.next_attempt_at.expect("a retry is scheduled") - start;
    assert!((54_000..=66_000).contains(&due), "due after {due} ms");

    // Not due yet: nothing is claimed, nothing is sent.
    rig.clock.advance(50_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 0);
    // Due: claimed and attempted again, failing again; the next step is an hour.
    rig.clock.advance(20_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 1);
    rig.engine.until_idle().await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let d = rig.delivery().await;
    assert_eq!(d.attempts, 2);
    let due = d.next_attempt_at.expect("retry") - rig.clock.now_ms();
    assert!((3_240_000..=3_960_000).contains(&due), "due after {due} ms");

    rig.clock.advance(4_000_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 1);
    rig.engine.until_idle().await;
    let d = rig.delivery().await;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts, 3);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Nothing left to do.
    rig.clock.advance(86_400_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 0);
}

#[tokio::test]
async fn a_lease_shorter_than_the_longest_request_or_run_is_refused() {
    // Under a 10 s lease every claim would end within the 35 s a request may take: each
    // delivery pulled would be skipped, stay claimed, come due and be skipped again.
    let short = test_config(10_000);
    let refused = short.check().expect_err("a 10 s lease is refused");
    let message = refused.to_string();
    assert!(
        message.contains("10000 ms") && message.contains(&MIN_LEASE_MS.to_string()),
        "{message}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite"), key).expect("open"));
    let started = Engine::start_with_clock(
        store,
        short,
        test_clients(),
        None,
        mpsc::unbounded_channel().0,
        switchyard_fair::Shares::new(Default::default()),
        Arc::new(ManualClock::new(now_ms())),
    );
    assert_eq!(started.err(), Some(refused));
    assert!(test_config(MIN_LEASE_MS).check().is_ok());
}

#[tokio::test]
async fn under_the_shortest_lease_a_retried_delivery_is_claimed_for_it_and_sent() {
    let (url, hits) = receiver(vec![500, 200]).await;
    let rig = rig_with_lease(&url, vec![1], MIN_LEASE_MS).await;
    // The publish claims for the engine's lease (checked in `publish`), the first attempt fails.
    rig.publish("e1").await;
    rig.engine.until_idle().await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Due: the poller claims it for the same lease, and the retry is sent, not skipped.
    rig.clock.advance(2_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 1);
    rig.engine.until_idle().await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let d = rig.delivery().await;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts, 2);
}

#[tokio::test]
async fn the_last_failure_fails_the_delivery() {
    let (url, hits) = receiver(vec![503]).await;
    let rig = rig(&url, vec![1]).await;
    rig.publish("e1").await;
    rig.engine.until_idle().await;
    rig.clock.advance(2_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 1);
    rig.engine.until_idle().await;
    let d = rig.delivery().await;
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_gone_endpoint_is_disabled_and_reported_never_published() {
    let (url, _) = receiver(vec![410]).await;
    let mut rig = rig(&url, vec![1]).await;
    rig.publish("e1").await;
    rig.engine.until_idle().await;
    assert_eq!(rig.delivery().await.status, DeliveryStatus::Failed);
    let ev = rig
        .events
        .try_recv()
        .expect("the engine reports the disabled endpoint");
    assert_eq!(
        ev,
        EngineEvent::EndpointDisabled {
            org_id: switchyard_core::ids::OrgId::stored("o".into()),
            endpoint_id: rig.endpoint.clone(),
        }
    );
    let ep = rig
        .store
        .get_endpoint(
            &switchyard_core::ids::OrgId::stored("o".into()),
            &rig.endpoint,
        )
        .await
        .expect("ep");
    assert!(!ep.enabled());
    // The engine publishes nothing itself: the only event is the one published above.
    let events = rig
        .store
        .list_events(
            &switchyard_core::ids::OrgId::stored("o".into()),
            &switchyard_store::EventQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn shutdown_hands_queued_work_back() {
    // A receiver that never answers within the test: attempts stay in flight.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let rig = rig(&url, vec![1]).await;
    let mut ep = rig
        .store
        .get_endpoint(
            &switchyard_core::ids::OrgId::stored("o".into()),
            &rig.endpoint,
        )
        .await
        .expect("ep");
    let one = EndpointChanges {
        max_in_flight: Some(1),
        ..Default::default()
    };
    ep.apply(one, Change::Patch, test_clients().policy())
        .expect("valid settings");
    rig.store.update_endpoint(&ep).await.expect("update");
    rig.engine.endpoint_changed(&rig.endpoint);
    for i in 0..5 {
        rig.publish(&format!("e{i}")).await;
    }
    rig.engine.shutdown(Duration::from_millis(200)).await;
    // The one in flight stays claimed (it resumes after a restart); the four queued are due
    // again at once (by the store's clock), claimed by nobody; the endpoint's lease was given up,
    // so another node takes it at once.
    let held = rig
        .store
        .take_leases(
            "other-node",
            std::slice::from_ref(&rig.endpoint),
            now_ms(),
            60_000,
        )
        .await
        .expect("lease");
    assert_eq!(held.len(), 1, "the stopped node gave up its lease");
    let due = rig
        .store
        .claim_endpoint(
            "other-node",
            &EndpointRef {
                org_id: switchyard_core::ids::OrgId::stored("o".into()),
                endpoint_id: rig.endpoint.clone(),
            },
            now_ms() + 1,
            100,
            60_000,
        )
        .await
        .expect("claim");
    assert_eq!(due.len(), 4);
    drop(listener);
}

#[tokio::test]
async fn a_throttled_endpoint_rests_by_the_engines_clock() {
    // The receiver answers 429 with `Retry-After: 600`, then 200.
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "600")])
                } else {
                    (StatusCode::OK, [("retry-after", "0")])
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let rig = rig(&format!("http://{addr}/hook"), vec![1]).await;
    rig.publish("e1").await;
    rig.engine.until_idle().await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Ten minutes pass on the engine's clock, not on the wall's: the endpoint's rest is over
    // and the retry is sent at once (on a wall clock it would wait the ten minutes).
    rig.clock.advance(601_000);
    assert_eq!(rig.engine.run_once().await.expect("poll"), 1);
    tokio::time::timeout(Duration::from_secs(120), rig.engine.until_idle())
        .await
        .expect("the rest is measured on the engine's clock");
    let d = rig.delivery().await;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts, 2);
}
