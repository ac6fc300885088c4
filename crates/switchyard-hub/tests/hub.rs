//! The hub on its own, over a real SQLite store: a publish routed with a table another writer
//! made stale is routed again, catalog writes through the hub take effect at the next call,
//! every published event passes the same checks, a revoked key is refused at once, and the
//! scheduler fires by the hub's clock (a test's, moved by hand).

use std::sync::Arc;
use std::time::Duration;
use switchyard_core::crypto::MasterKey;
use switchyard_core::ids::{EventId, OrgId};
use switchyard_core::time::now_ms;
use switchyard_core::*;
use switchyard_hub::{EventRefusal, Hub, HubError, HubSettings};
use switchyard_store::SqliteStore;
use switchyard_store::prelude::*;

mod common;

struct Rig {
    hub: Hub,
    store: Arc<SqliteStore>,
    org: OrgId,
    _dir: tempfile::TempDir,
}

/// A hub on a fresh SQLite file with one organization, `o`.
async fn rig() -> Rig {
    rig_on(Arc::new(switchyard_core::time::SystemClock)).await
}

/// [`rig`] on a given clock.
async fn rig_on(clock: Arc<dyn switchyard_core::time::Clock>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db"), key).expect("store"));
    let hub = Hub::start_with_clock(store.clone(), HubSettings::defaults("hub-test"), clock)
        .await
        .expect("hub");
    let org = hub
        .create_org(&Org::named("o", "O").expect("org"))
        .await
        .expect("create org")
        .id;
    Rig {
        hub,
        store,
        org,
        _dir: dir,
    }
}

impl Rig {
    /// An endpoint (to an address nothing answers on; the egress policy refuses it anyway).
    async fn endpoint(&self) -> Endpoint {
        let ep = common::endpoint_to_nowhere(&self.org);
        self.hub.create_endpoint(&ep).await.expect("endpoint")
    }

    fn subscription(&self, ep: &Endpoint) -> Subscription {
        self.subscription_of(ep, "*")
    }

    /// A subscription of `ep` to events of `event_type`.
    fn subscription_of(&self, ep: &Endpoint, event_type: &str) -> Subscription {
        let def = switchyard_core::subscription::SubscriptionDefinition {
            event_types: vec![event_type.into()],
            endpoint_id: Some(ep.id.to_string()),
            ..Default::default()
        };
        let policy = switchyard_core::egress::EgressPolicy::default();
        Subscription::define(&self.org, def, now_ms(), &policy)
            .expect("subscription")
            .0
    }

    /// Publishes one event; how many deliveries it got.
    async fn deliveries_of(&self, id: &str) -> usize {
        let out = self
            .hub
            .publish(
                &self.org,
                vec![common::event(id, "T", serde_json::json!({}))],
            )
            .await
            .expect("publish");
        out[0].delivery_count
    }

    async fn stop(self) {
        self.hub.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_meeting_a_newer_routing_is_routed_again() {
    let rig = rig().await;
    let a = rig.endpoint().await;
    rig.hub
        .create_subscriptions(&rig.org, &[rig.subscription(&a)], None)
        .await
        .expect("subscribe a");
    // The hub builds and caches its table at this routing version.
    assert_eq!(rig.deliveries_of("e1").await, 1);
    // Another writer (another node, say) adds a subscription: the store's version moves on,
    // this hub's cached table is stale, and the store refuses a batch routed with it.
    let b = rig.endpoint().await;
    rig.store
        .create_subscriptions(&[rig.subscription(&b)], None)
        .await
        .expect("subscribe b behind the hub's back");
    assert_eq!(
        rig.deliveries_of("e2").await,
        2,
        "routed again with the new table"
    );
    // Through the hub, a change takes effect at the next publish.
    let subs = rig.store.list_subscriptions(&rig.org).await.expect("subs");
    for s in &subs {
        rig.hub
            .delete_subscription(&rig.org, &s.id)
            .await
            .expect("unsubscribe");
    }
    assert_eq!(rig.deliveries_of("e3").await, 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_that_find_no_route_table_together_build_it_once() {
    let rig = rig().await;
    let a = rig.endpoint().await;
    // An organization with many subscriptions: each build loads them all.
    let mut subs: Vec<Subscription> = (0..2000)
        .map(|i| rig.subscription_of(&a, &format!("Other-{i}")))
        .collect();
    subs.push(rig.subscription(&a));
    rig.hub
        .create_subscriptions(&rig.org, &subs, None)
        .await
        .expect("subscribe");
    let before = rig.hub.route_tables_built();
    // 32 publishers at once, none of which finds a table.
    let publishes: Vec<_> = (0..32)
        .map(|i| {
            let (hub, org) = (rig.hub.clone(), rig.org.clone());
            tokio::spawn(async move {
                let ev = common::event(&format!("e{i}"), "T", serde_json::json!({}));
                hub.publish(&org, vec![ev]).await.expect("publish")[0].delivery_count
            })
        })
        .collect();
    for p in publishes {
        assert_eq!(
            p.await.expect("publish task"),
            1,
            "routed by the `*` subscription"
        );
    }
    assert_eq!(
        rig.hub.route_tables_built() - before,
        1,
        "one table built, the other publishers waited for it"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_event_passes_the_same_checks() {
    let rig = rig().await;
    let refused = |r: Result<_, HubError>| match r {
        Err(HubError::EventRefused { index, reason, .. }) => (index, reason),
        other => panic!("not refused: {:?}", other.map(|v: Vec<_>| v.len())),
    };
    // A type that is no name, one of the hub's own: refused, naming the event's place.
    let r = rig
        .hub
        .publish(
            &rig.org,
            vec![
                common::event("ok", "T", serde_json::json!({})),
                common::event("bad", "switchyard.endpoint.disabled", serde_json::json!({})),
            ],
        )
        .await;
    assert_eq!(refused(r), (1, EventRefusal::Invalid));
    // A schema saved through the hub holds for the next publish.
    let t = EventType {
        name: "Order".into(),
        description: String::new(),
        entity_type: None,
        schema: Some(serde_json::json!({"type": "object", "required": ["id"]})),
        updated_at: 0,
    };
    rig.hub
        .put_event_types(&rig.org, &[t])
        .await
        .expect("event type");
    let r = rig
        .hub
        .publish(
            &rig.org,
            vec![common::event("o1", "Order", serde_json::json!({}))],
        )
        .await;
    assert_eq!(refused(r), (0, EventRefusal::SchemaViolation));
    // Nothing of a refused publish is stored.
    let stored = rig
        .store
        .list_events(
            &rig.org,
            &switchyard_store::EventQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert!(stored.is_empty(), "{stored:?}");
    let ok = rig
        .hub
        .publish(
            &rig.org,
            vec![common::event("o2", "Order", serde_json::json!({"id": 7}))],
        )
        .await
        .expect("a valid order");
    assert_eq!(ok.len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once_though_it_was_cached() {
    let rig = rig().await;
    let hash = switchyard_core::crypto::hash_api_key("sy_hub_test_key_0123456789abcdef");
    let id = rig
        .hub
        .create_api_key(Some(&rig.org), Role::Viewer, &hash, "sy_hub_te")
        .await
        .expect("key");
    let p = rig.hub.principal_of(&hash).await.expect("lookup");
    assert_eq!(p.map(|p| p.key_id), Some(id.clone()));
    // Cached now; revoked through the hub, it is gone from the cache too.
    rig.hub.revoke_api_key(&rig.org, &id).await.expect("revoke");
    assert_eq!(rig.hub.principal_of(&hash).await.expect("lookup"), None);
    // Another organization's key id is not this one's to revoke.
    let other = rig
        .hub
        .create_org(&Org::named("p", "P").expect("org"))
        .await
        .expect("org p");
    let their_hash = switchyard_core::crypto::hash_api_key("sy_hub_test_key_of_p_0123456789");
    let theirs = rig
        .hub
        .create_api_key(Some(&other.id), Role::Admin, &their_hash, "sy_hub_te")
        .await
        .expect("key of p");
    assert!(matches!(
        rig.hub.revoke_api_key(&rig.org, &theirs).await,
        Err(HubError::Store(switchyard_store::StoreError::NotFound(
            switchyard_store::Missing::Key
        )))
    ));
    assert!(
        rig.hub
            .principal_of(&their_hash)
            .await
            .expect("lookup")
            .is_some()
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_fires_by_the_hubs_clock_once_per_fire_time() {
    use switchyard_core::schedule::{Schedule, ScheduleDefinition};
    use switchyard_core::time::{Clock, ManualClock, parse_rfc3339};
    // 09:59:30 UTC: the hourly schedule's next fire time is 10:00.
    let start = parse_rfc3339("2026-12-07T09:59:30Z").expect("time");
    let clock = Arc::new(ManualClock::new(start));
    let rig = rig_on(clock.clone()).await;
    let hourly = |misfire: &str| ScheduleDefinition {
        cron: Some("0 * * * *".into()),
        timezone: Some("UTC".into()),
        event_type: Some("report.due".into()),
        data: Some(serde_json::json!({"n": 1})),
        misfire: Some(misfire.into()),
        ..Default::default()
    };
    for (name, misfire) in [("once", "fire_once"), ("skipping", "skip")] {
        let s = Schedule::define(&rig.org, name, hourly(misfire), None, clock.now_ms(), false)
            .expect("schedule");
        rig.hub.put_schedule(&s, None).await.expect("put");
    }
    let fired = |name: &'static str, at: &'static str| {
        let (store, org) = (rig.store.clone(), rig.org.clone());
        let id =
            switchyard_core::schedule::schedule_event_id(name, parse_rfc3339(at).expect("time"));
        async move { store.get_event(&org, &EventId::stored(id)).await.is_ok() }
    };
    // Nothing before its time, however long the test waits in real time.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!fired("once", "2026-12-07T10:00:00Z").await, "fired early");
    // The hub's clock reaches 10:00: both fire, once each.
    clock.advance(30_000);
    common::until("10:00 fired", common::MINUTE, || async {
        fired("once", "2026-12-07T10:00:00Z").await
            && fired("skipping", "2026-12-07T10:00:00Z").await
    })
    .await;
    let ev = rig
        .store
        .get_event(
            &rig.org,
            &EventId::stored(switchyard_core::schedule::schedule_event_id(
                "once",
                parse_rfc3339("2026-12-07T10:00:00Z").expect("time"),
            )),
        )
        .await
        .expect("event");
    assert_eq!(
        ev.timestamp,
        parse_rfc3339("2026-12-07T10:00:00Z").expect("t")
    );
    assert_eq!(ev.event_type, "report.due");
    // The hub was down from 10:30 to 13:05 (by its clock): past the grace, `fire_once` fires
    // once, late, for 13:00; `skip` fires nothing until 14:00. 11:00 and 12:00 are never fired.
    clock.advance(3 * 3_600_000 + 5 * 60_000);
    common::until("the late fire", common::MINUTE, || async {
        fired("once", "2026-12-07T13:00:00Z").await
    })
    .await;
    common::until("the skipping schedule moved on", common::MINUTE, || async {
        let s = rig
            .store
            .get_schedule(&rig.org, "skipping")
            .await
            .expect("schedule");
        s.next_fire_at == parse_rfc3339("2026-12-07T14:00:00Z")
    })
    .await;
    for (name, at) in [
        ("once", "2026-12-07T11:00:00Z"),
        ("once", "2026-12-07T12:00:00Z"),
        ("skipping", "2026-12-07T11:00:00Z"),
        ("skipping", "2026-12-07T12:00:00Z"),
        ("skipping", "2026-12-07T13:00:00Z"),
    ] {
        assert!(!fired(name, at).await, "{name} fired a missed {at}");
    }
    let once = rig
        .store
        .get_schedule(&rig.org, "once")
        .await
        .expect("schedule");
    assert_eq!(once.next_fire_at, parse_rfc3339("2026-12-07T14:00:00Z"));
    rig.stop().await;
}
