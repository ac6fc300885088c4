//! The store contract: behaviour every backend must show, written once against [`Store`].
//!
//! Each check is a function of a fresh, empty store. [`contract_tests!`] turns every check into
//! its own test for one backend: `tests/sqlite.rs` does so for SQLite, and a PostgreSQL backend's
//! test file does the same. Nothing here is compiled into the library.

#![allow(dead_code)]

use serde_json::json;
use std::collections::BTreeMap;
use switchyard_core::egress::EgressPolicy;
use switchyard_core::endpoint::{Change, EndpointChanges, Rotation};
use switchyard_core::executor::*;
use switchyard_core::health::DisablePolicy;
use switchyard_core::ids::{EndpointId, EventId, OrgId, RunId, SubscriptionId};
use switchyard_core::routing::RouteTable;
use switchyard_core::signing::SigningSecret;
use switchyard_core::time::now_ms;
use switchyard_core::*;
use switchyard_store::prelude::*;
use switchyard_store::*;

/// One test per contract check, each on a fresh store from `$open` (an async fn returning the
/// store and a guard that keeps its storage alive while the test runs).
#[macro_export]
macro_rules! contract_tests {
    ($open:path) => {
        $crate::contract_tests!(@each $open; orgs_and_keys,
            endpoints_round_trip_and_stay_in_their_org,
            publish_routes_and_is_idempotent,
            a_sync_subscription_keeps_its_mode_and_marks_its_deliveries,
            a_webhook_with_its_subscriptions_and_a_catalog_are_written_whole,
            schedules_are_due_once_and_move_on_only_from_where_they_were,
            claims_attempts_and_trace,
            listing_and_cursors,
            replay_and_retry,
            executors_secrets_storage_and_runs,
            a_publish_routed_before_a_change_is_refused_whole,
            retention_deletes_finished_events_and_keeps_pending_ones,
            payload_retention_drops_only_what_is_delivered,
            an_ordered_key_hands_out_only_its_head,
            health_counts_failures_and_a_recovery_makes_retries_due,
            endpoint_leases_fence_claims_and_pass_on_when_they_expire,
            a_node_gone_a_lease_past_its_beat_has_its_claims_released,
            event_hooks_are_claimed_a_few_per_organization,
            every_lookup_names_what_it_did_not_find);
    };
    (@each $open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $open().await;
                contract::$check(&store).await;
            }
        )*
    };
}

/// An organization id as the tests write it.
pub fn oid(s: &str) -> OrgId {
    OrgId::stored(s.to_string())
}

/// The lease the tests claim with, unless one says otherwise.
pub const LEASE_MS: i64 = 5 * 60 * 1000;

/// A claim by `node` for [`LEASE_MS`].
pub fn claim(node: &str) -> Claim<'_> {
    Claim {
        node,
        lease_ms: LEASE_MS,
    }
}

/// Publishes as the hub does: routes with the organization's current routing, and routes again
/// if it changed before the commit.
pub async fn publish(
    store: &dyn Store,
    org: &str,
    events: Vec<NewEvent>,
    node: &str,
) -> Result<Vec<Published>> {
    let mut batch = route(store, org, events).await?;
    loop {
        match store.publish(&oid(org), batch, claim(node)).await? {
            PublishOutcome::Committed(out) => return Ok(out),
            PublishOutcome::StaleRouting(stale) => {
                let events = stale.events.into_iter().map(|e| e.event).collect();
                batch = route(store, org, events).await?;
            }
        }
    }
}

/// Routes `events` with the organization's current routing.
pub async fn route(store: &dyn Store, org: &str, events: Vec<NewEvent>) -> Result<RoutedBatch> {
    let snapshot = store.routing(&oid(org)).await?;
    let table = RouteTable::new(snapshot.subscriptions, snapshot.ordered);
    Ok(RoutedBatch {
        routing_version: snapshot.version,
        events: events
            .into_iter()
            .map(|event| {
                let targets = table.route(&event);
                RoutedEvent {
                    claim: vec![true; targets.len()],
                    targets,
                    event,
                }
            })
            .collect(),
    })
}

/// An endpoint of `org` pointing at `url`, with one fresh secret and a token.
pub fn sample_endpoint(org: &str, url: &str) -> Endpoint {
    let now = now_ms();
    Endpoint::stored(StoredEndpoint {
        id: EndpointId::generate(),
        org_id: oid(org),
        url: url.to_string(),
        description: "test".into(),
        profile: Profile::Standard,
        headers: BTreeMap::from([("X-Tenant".to_string(), "7".to_string())]),
        token: Some("tok-secret-value".into()),
        token_header: Some("X-Token".into()),
        insecure_tls: false,
        timeout_ms: 15000,
        retry_schedule_s: Some(vec![1, 2]),
        max_in_flight: 10,
        max_rps: Some(50),
        ordering: None,
        secrets: vec![KeyedSecret {
            secret: SigningSecret::generate(),
            expires_at: None,
        }],
        enabled: true,
        disabled_reason: None,
        owner_subscription: None,
        created_at: now,
        updated_at: now,
    })
}

/// Changes `ep` through its rules (any destination allowed, as in these tests).
pub fn patch(ep: &mut Endpoint, changes: EndpointChanges) {
    ep.apply(changes, Change::Patch, &EgressPolicy::default())
        .expect("valid settings");
}

pub fn sample_subscription(org: &str, endpoint_id: &EndpointId, types: &[&str]) -> Subscription {
    Subscription::stored(stored_subscription(org, endpoint_id, types))
}

/// [`sample_subscription`]'s parts, for a test to change before it is made.
pub fn stored_subscription(
    org: &str,
    endpoint_id: &EndpointId,
    types: &[&str],
) -> StoredSubscription {
    StoredSubscription {
        id: SubscriptionId::generate(),
        org_id: oid(org),
        event_types: types.iter().map(|s| s.to_string()).collect(),
        target: Target::Endpoint(endpoint_id.clone()),
        entity_id: None,
        filter: None,
        mode: Mode::Async,
        created_at: now_ms(),
    }
}

pub fn sample_event(id: &str, t: &str, entity: &str) -> NewEvent {
    NewEvent {
        id: EventId::stored(id.to_string()),
        event_type: t.to_string(),
        timestamp: now_ms(),
        entity: EntityRef {
            kind: Some("Ticket".into()),
            id: Some(entity.into()),
        },
        data: json!({"ticketId": 456, "changes": {"status": "closed"}}),
    }
}

pub async fn orgs_and_keys(store: &dyn Store) {
    let org = store
        .create_org(&Org::named("c-org1", "One").expect("valid org"))
        .await
        .expect("create org");
    assert_eq!(org.name, "One");
    assert!(matches!(
        store
            .create_org(&Org::named("c-org1", "Again").expect("valid org"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.get_org(&oid("c-nope")).await,
        Err(StoreError::NotFound(Missing::Organization))
    ));
    let key_id = store
        .create_api_key(Some(&oid("c-org1")), Role::Publisher, "hash-1", "sy_abcd")
        .await
        .expect("key");
    let p = store
        .find_api_key("hash-1")
        .await
        .expect("find")
        .expect("present");
    assert_eq!(
        p,
        Principal {
            org: Some(oid("c-org1")),
            role: Role::Publisher,
            key_id: key_id.clone()
        }
    );
    assert!(store.find_api_key("hash-x").await.expect("find").is_none());
    let before = store.count_admin_keys().await.expect("count");
    store
        .create_api_key(None, Role::Admin, "hash-admin", "sy_adm1")
        .await
        .expect("admin key");
    assert_eq!(store.count_admin_keys().await.expect("count"), before + 1);
    assert!(
        store
            .create_api_key(Some(&oid("c-org1")), Role::Viewer, "hash-1", "sy_dup1")
            .await
            .is_err(),
        "hashes are unique"
    );
    assert!(
        store
            .create_api_key(Some(&oid("c-missing")), Role::Viewer, "hash-2", "sy_miss")
            .await
            .is_err(),
        "org must exist"
    );
    // Listing shows the prefix and usage, scoped to the organization; revoking is too.
    store
        .create_org(&Org::named("c-org2", "Other").expect("valid org"))
        .await
        .expect("org");
    store.touch_api_key(&key_id, 1234).await.expect("touch");
    let keys = store.list_api_keys(&oid("c-org1")).await.expect("list");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].prefix.as_str(), keys[0].role, keys[0].last_used_at),
        ("sy_abcd", Role::Publisher, Some(1234))
    );
    assert!(
        store
            .list_api_keys(&oid("c-org2"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(matches!(
        store.delete_api_key(&oid("c-org2"), &key_id).await,
        Err(StoreError::NotFound(Missing::Key))
    ));
    store
        .delete_api_key(&oid("c-org1"), &key_id)
        .await
        .expect("revoke");
    assert!(store.find_api_key("hash-1").await.expect("find").is_none());
    // Recovery replaces every instance admin key by one.
    store
        .replace_admin_keys("hash-new-admin", "sy_new1")
        .await
        .expect("replace");
    assert_eq!(store.count_admin_keys().await.expect("count"), 1);
    assert!(
        store
            .find_api_key("hash-admin")
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .find_api_key("hash-new-admin")
            .await
            .expect("find")
            .is_some()
    );
}

pub async fn endpoints_round_trip_and_stay_in_their_org(store: &dyn Store) {
    store
        .create_org(&Org::named("c-a", "A").expect("valid org"))
        .await
        .expect("org");
    store
        .create_org(&Org::named("c-b", "B").expect("valid org"))
        .await
        .expect("org");
    let ep = sample_endpoint("c-a", "https://a.example/hook");
    store.create_endpoint(&ep).await.expect("create");
    let got = store.get_endpoint(&oid("c-a"), &ep.id).await.expect("get");
    assert_eq!(got, ep, "secrets and token survive encryption");
    assert!(matches!(
        store.get_endpoint(&oid("c-b"), &ep.id).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    assert!(
        store
            .list_endpoints(&oid("c-b"))
            .await
            .expect("list")
            .is_empty()
    );
    let mut other = ep.clone();
    other.org_id = oid("c-b");
    patch(
        &mut other,
        EndpointChanges {
            url: Some("https://evil.example".into()),
            ..Default::default()
        },
    );
    assert!(matches!(
        store.update_endpoint(&other).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    assert!(matches!(
        store.delete_endpoint(&oid("c-b"), &ep.id).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    let mut changed = ep.clone();
    patch(
        &mut changed,
        EndpointChanges {
            url: Some("https://a.example/v2".into()),
            token: Some(None),
            ..Default::default()
        },
    );
    let now = now_ms();
    let rotation = Rotation {
        old_expires_at: Some(now + 1000),
        ..Default::default()
    };
    changed.rotate_secret(rotation, now).expect("rotated");
    assert_eq!(changed.secrets().len(), 2);
    store.update_endpoint(&changed).await.expect("update");
    assert_eq!(
        store.get_endpoint(&oid("c-a"), &ep.id).await.expect("get"),
        changed
    );

    let sub = sample_subscription("c-b", &ep.id, &["*"]);
    assert!(
        matches!(
            store.create_subscription(&sub, None).await,
            Err(StoreError::InvalidReference(_))
        ),
        "cannot subscribe another org's endpoint"
    );
    store
        .delete_endpoint(&oid("c-a"), &ep.id)
        .await
        .expect("delete");
    assert!(matches!(
        store.get_endpoint(&oid("c-a"), &ep.id).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));

    let t = EventType {
        name: "TicketCreated".into(),
        description: "d".into(),
        entity_type: Some("Ticket".into()),
        schema: Some(json!({"type": "object"})),
        updated_at: 0,
    };
    store
        .put_event_type(&oid("c-a"), &t)
        .await
        .expect("put type");
    assert_eq!(
        store
            .get_event_type(&oid("c-a"), "TicketCreated")
            .await
            .expect("get")
            .schema,
        t.schema
    );
    assert!(matches!(
        store.get_event_type(&oid("c-b"), "TicketCreated").await,
        Err(StoreError::NotFound(Missing::EventType))
    ));
    assert_eq!(
        store
            .list_event_types(&oid("c-a"))
            .await
            .expect("list")
            .len(),
        1
    );
}

/// A platform's webhook (an endpoint and its subscriptions) and a catalog import (many event
/// types) are each one transaction: a bad part writes nothing of the rest.
pub async fn a_webhook_with_its_subscriptions_and_a_catalog_are_written_whole(store: &dyn Store) {
    store
        .create_org(&Org::named("c-w", "W").expect("valid org"))
        .await
        .expect("org");
    let before = store.routing(&oid("c-w")).await.expect("routing").version;
    let ep = sample_endpoint("c-w", "https://example.com/hook");
    let subs = [
        sample_subscription("c-w", &ep.id, &["QueueCallInConnected"]),
        sample_subscription("c-w", &ep.id, &["QueueCallInAllocated"]),
    ];
    let saved = store
        .create_subscriptions(&subs, Some(&ep))
        .await
        .expect("webhook");
    assert_eq!(saved.len(), 2);
    let routing = store.routing(&oid("c-w")).await.expect("routing");
    assert!(routing.version > before);
    assert_eq!(routing.subscriptions.len(), 2);

    let other = sample_endpoint("c-w", "https://example.com/other");
    let bad = [
        sample_subscription("c-w", &other.id, &["A"]),
        sample_subscription("c-w", &EndpointId::generate(), &["B"]),
    ];
    assert!(matches!(
        store.create_subscriptions(&bad, Some(&other)).await,
        Err(StoreError::InvalidReference(_))
    ));
    assert!(matches!(
        store.get_endpoint(&oid("c-w"), &other.id).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    assert_eq!(
        store
            .list_subscriptions(&oid("c-w"))
            .await
            .expect("list")
            .len(),
        2
    );

    let types: Vec<EventType> = (0..40)
        .map(|i| EventType {
            name: format!("T{i}"),
            description: format!("type {i}"),
            entity_type: Some("Queue".into()),
            schema: Some(json!({"type": "object", "properties": {"b": {}, "a": {}}})),
            updated_at: 0,
        })
        .collect();
    store
        .put_event_types(&oid("c-w"), &types)
        .await
        .expect("import");
    store
        .put_event_types(&oid("c-w"), &types)
        .await
        .expect("again");
    let listed = store.list_event_types(&oid("c-w")).await.expect("list");
    assert_eq!(listed.len(), 40);
    let t7 = store.get_event_type(&oid("c-w"), "T7").await.expect("get");
    // The schema comes back as written, its keys in their order.
    assert_eq!(
        t7.schema.map(|s| s.to_string()).as_deref(),
        Some(r#"{"type":"object","properties":{"b":{},"a":{}}}"#)
    );
}

pub async fn publish_routes_and_is_idempotent(store: &dyn Store) {
    store
        .create_org(&Org::named("c-p", "P").expect("valid org"))
        .await
        .expect("org");
    let ep1 = store
        .create_endpoint(&sample_endpoint("c-p", "https://one.example"))
        .await
        .expect("ep");
    let ep2 = store
        .create_endpoint(&sample_endpoint("c-p", "https://two.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-p", &ep1.id, &["Ticket*"]), None)
        .await
        .expect("sub");
    let mut s2 = stored_subscription("c-p", &ep2.id, &["TicketUpdated"]);
    s2.entity_id = Some("456".into());
    let s2 = Subscription::stored(s2);
    store.create_subscription(&s2, None).await.expect("sub");

    let out = publish(
        store,
        "c-p",
        vec![
            sample_event("e1", "TicketUpdated", "456"),
            sample_event("e2", "TicketUpdated", "9"),
            sample_event("e3", "Other", "456"),
        ],
        "node-a",
    )
    .await
    .expect("publish");
    let counts: Vec<_> = out.iter().map(|p| p.delivery_count).collect();
    assert_eq!(counts, vec![2, 1, 0]);
    assert!(out.iter().all(|p| !p.duplicate));
    assert!(out[0].event.seq < out[1].event.seq);

    let again = publish(
        store,
        "c-p",
        vec![sample_event("e1", "TicketUpdated", "456")],
        "node-a",
    )
    .await
    .expect("publish");
    assert!(again[0].duplicate);
    assert_eq!(
        again[0].event.seq, out[0].event.seq,
        "the first event is answered"
    );
    assert_eq!(again[0].delivery_count, 2);
    assert!(again[0].new_deliveries.is_empty());
    // The same id with another body is a conflict, and the whole call stores nothing.
    let conflict = publish(
        store,
        "c-p",
        vec![
            sample_event("e4", "TicketUpdated", "1"),
            sample_event("e1", "TicketCreated", "1"),
        ],
        "node-a",
    )
    .await;
    assert!(
        matches!(&conflict, Err(StoreError::Conflict(m)) if m.contains("different type")),
        "{conflict:?}"
    );
    assert!(matches!(
        store
            .trace(&oid("c-p"), &EventId::stored("e4".into()))
            .await,
        Err(StoreError::NotFound(Missing::Event))
    ));

    // The same caller id in another organization is another event.
    store
        .create_org(&Org::named("c-q", "Q").expect("valid org"))
        .await
        .expect("org");
    let q = publish(
        store,
        "c-q",
        vec![sample_event("e1", "TicketUpdated", "456")],
        "node-a",
    )
    .await
    .expect("publish");
    assert!(!q[0].duplicate);
    assert_eq!(q[0].delivery_count, 0, "no cross-org routing");
    assert!(matches!(
        store
            .get_event(&oid("c-q"), &EventId::stored("e2".into()))
            .await,
        Err(StoreError::NotFound(Missing::Event))
    ));

    // A disabled endpoint gets no new deliveries; enabling it again routes again.
    let mut off = store.get_endpoint(&oid("c-p"), &ep2.id).await.expect("get");
    patch(
        &mut off,
        EndpointChanges {
            enabled: Some(false),
            ..Default::default()
        },
    );
    store.update_endpoint(&off).await.expect("disable");
    let out = publish(
        store,
        "c-p",
        vec![sample_event("e4", "TicketUpdated", "456")],
        "node-a",
    )
    .await
    .expect("publish");
    assert_eq!(out[0].delivery_count, 1);
    patch(
        &mut off,
        EndpointChanges {
            enabled: Some(true),
            ..Default::default()
        },
    );
    store.update_endpoint(&off).await.expect("enable");
    let out = publish(
        store,
        "c-p",
        vec![sample_event("e5", "TicketUpdated", "456")],
        "node-a",
    )
    .await
    .expect("publish");
    assert_eq!(out[0].delivery_count, 2);
}

pub async fn a_sync_subscription_keeps_its_mode_and_marks_its_deliveries(store: &dyn Store) {
    store
        .create_org(&Org::named("c-s", "S").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-s", "https://sync.example"))
        .await
        .expect("ep");
    let other = store
        .create_endpoint(&sample_endpoint("c-s", "https://async.example"))
        .await
        .expect("ep");
    let mut sync = stored_subscription("c-s", &ep.id, &["Email"]);
    sync.mode = Mode::Sync;
    let sync = Subscription::stored(sync);
    store.create_subscription(&sync, None).await.expect("sub");
    store
        .create_subscription(&sample_subscription("c-s", &other.id, &["*"]), None)
        .await
        .expect("sub");
    let got = store
        .get_subscription(&oid("c-s"), &sync.id)
        .await
        .expect("get");
    assert_eq!(got.mode(), Mode::Sync);
    let listed = store.list_subscriptions(&oid("c-s")).await.expect("list");
    assert_eq!(listed.iter().filter(|s| s.mode() == Mode::Sync).count(), 1);
    let routing = store.routing(&oid("c-s")).await.expect("routing");
    assert_eq!(
        routing
            .subscriptions
            .iter()
            .find(|s| s.id == sync.id)
            .map(|s| s.mode()),
        Some(Mode::Sync)
    );

    let out = publish(
        store,
        "c-s",
        vec![sample_event("m1", "Email", "1")],
        "node-a",
    )
    .await
    .expect("publish");
    let marks: Vec<_> = out[0]
        .new_deliveries
        .iter()
        .map(|d| {
            (
                d.target
                    .endpoint_id()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                d.sync.is_some(),
            )
        })
        .collect();
    assert!(marks.contains(&(ep.id.to_string(), true)), "{marks:?}");
    assert!(marks.contains(&(other.id.to_string(), false)), "{marks:?}");
    // Claimed again from the store (the publish that made it went away), it is an ordinary
    // delivery.
    store.release("node-a", None).await.expect("release");
    let endpoint = EndpointRef {
        org_id: oid("c-s"),
        endpoint_id: ep.id.clone(),
    };
    let due = claim_as(store, "node-b", &endpoint, now_ms() + 1, 10, 60_000)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert!(due[0].sync.is_none());
}

pub async fn schedules_are_due_once_and_move_on_only_from_where_they_were(store: &dyn Store) {
    use switchyard_core::schedule::{Misfire, ScheduleDefinition};
    for org in ["c-sch", "c-sch2"] {
        store
            .create_org(&Org::named(org, org).expect("valid org"))
            .await
            .expect("org");
    }
    let now = 1_795_428_000_000; // 2026-11-23T10:00:00Z
    let def = |cron: &str| ScheduleDefinition {
        cron: Some(cron.into()),
        event_type: Some("Tick".into()),
        data: Some(json!({"n": 1})),
        misfire: Some("skip".into()),
        ..Default::default()
    };
    let a = Schedule::define(
        &oid("c-sch"),
        "every-5",
        def("*/5 * * * *"),
        None,
        now,
        false,
    )
    .expect("define");
    let b = Schedule::define(&oid("c-sch2"), "hourly", def("0 * * * *"), None, now, false)
        .expect("define");
    store.put_schedule(&a).await.expect("put");
    store.put_schedule(&b).await.expect("put");
    let got = store
        .get_schedule(&oid("c-sch"), "every-5")
        .await
        .expect("get");
    assert_eq!(got, a);
    assert_eq!(got.misfire, Misfire::Skip);
    assert!(matches!(
        store.get_schedule(&oid("c-sch2"), "every-5").await,
        Err(StoreError::NotFound(Missing::Schedule))
    ));
    assert_eq!(
        store
            .list_schedules(&oid("c-sch"))
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        store.count_schedules(&oid("c-sch")).await.expect("count"),
        1
    );
    let five = now + 300_000;
    assert_eq!(store.next_fire_at().await.expect("next"), Some(five));

    // Due across organizations, earliest first.
    assert!(
        store
            .due_schedules(five - 1, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let due = store.due_schedules(now + 3_600_000, 10).await.expect("due");
    let names: Vec<_> = due.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["every-5", "hourly"]);

    // Moving on is compare-and-set on the fire time it was due at.
    assert!(
        store
            .advance_schedule(
                &oid("c-sch"),
                "every-5",
                five,
                Some(five + 300_000),
                Some(five)
            )
            .await
            .expect("advance")
    );
    assert!(
        !store
            .advance_schedule(
                &oid("c-sch"),
                "every-5",
                five,
                Some(five + 300_000),
                Some(five)
            )
            .await
            .expect("advance again"),
        "a second node moving the same fire time on finds it moved"
    );
    let moved = store
        .get_schedule(&oid("c-sch"), "every-5")
        .await
        .expect("get");
    assert_eq!(moved.next_fire_at, Some(five + 300_000));
    assert_eq!(moved.last_fired_at, Some(five));
    // Redefining keeps what it was given; disabling takes it off the due list.
    let off = Schedule {
        enabled: false,
        next_fire_at: None,
        ..moved.clone()
    };
    store.put_schedule(&off).await.expect("disable");
    assert_eq!(store.next_fire_at().await.expect("next"), b.next_fire_at);
    assert!(
        store
            .due_schedules(now + 86_400_000, 10)
            .await
            .expect("due")
            .iter()
            .all(|s| s.name != "every-5")
    );
    store
        .delete_schedule(&oid("c-sch"), "every-5")
        .await
        .expect("delete");
    assert!(matches!(
        store.delete_schedule(&oid("c-sch"), "every-5").await,
        Err(StoreError::NotFound(Missing::Schedule))
    ));
}

pub async fn claims_attempts_and_trace(store: &dyn Store) {
    store
        .create_org(&Org::named("c-d", "D").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-d", "https://d.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-d", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let out = publish(store, "c-d", vec![sample_event("d1", "X", "1")], "node-d")
        .await
        .expect("publish");
    let d = out[0].new_deliveries[0].clone();
    let now = now_ms();
    assert!(
        claim_as(
            store,
            "node-b",
            &EndpointRef {
                org_id: oid("c-d"),
                endpoint_id: ep.id.clone()
            },
            now + 1000,
            100,
            60_000
        )
        .await
        .expect("claim")
        .iter()
        .all(|x| x.delivery_id != d.delivery_id),
        "a fresh delivery is claimed by its publishing node"
    );
    assert_eq!(store.release("node-d", None).await.expect("release"), 1);
    let claimed = claim_as(
        store,
        "node-b",
        &EndpointRef {
            org_id: oid("c-d"),
            endpoint_id: ep.id.clone(),
        },
        now_ms() + 10,
        100,
        60_000,
    )
    .await
    .expect("claim");
    let mine: Vec<_> = claimed
        .iter()
        .filter(|x| x.delivery_id == d.delivery_id)
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].event.id, "d1");
    assert!(
        claim_as(
            store,
            "node-c",
            &EndpointRef {
                org_id: oid("c-d"),
                endpoint_id: ep.id.clone()
            },
            now_ms() + 10,
            100,
            60_000
        )
        .await
        .expect("claim")
        .is_empty(),
        "leased"
    );

    let attempt = |code: u16, outcome: Outcome, disable: Option<&str>| AttemptResult {
        org_id: oid("c-d"),
        endpoint_id: Some(ep.id.clone()),
        delivery_id: d.delivery_id.clone(),
        attempt: Attempt::new(
            &d.delivery_id,
            Seen {
                at: now_ms(),
                status_code: Some(code),
                duration_ms: 1.5,
                response_body: Some("body".into()),
                request_headers: Some(vec![
                    ("webhook-id".into(), "d1".into()),
                    ("X-Crm".into(), format!("answered {code}")),
                ]),
                ..Seen::default()
            },
        )
        .expect("a valid attempt"),
        outcome,
        disable_endpoint: disable.map(str::to_string),
    };
    let disabled = store
        .record_attempts(
            "node-a",
            vec![attempt(
                500,
                Outcome::Retry {
                    at: now_ms() + 3_600_000,
                },
                None,
            )],
            &DisablePolicy::default(),
        )
        .await
        .expect("record");
    assert!(disabled.disabled.is_empty());
    assert!(
        claim_as(
            store,
            "node-b",
            &EndpointRef {
                org_id: oid("c-d"),
                endpoint_id: ep.id.clone()
            },
            now_ms() + 10,
            100,
            60_000
        )
        .await
        .expect("claim")
        .is_empty(),
        "not yet due"
    );
    // A result that names another organization changes nothing of this one.
    let mut foreign = attempt(410, Outcome::Failed, Some("410 Gone"));
    foreign.org_id = oid("c-other");
    assert!(
        store
            .record_attempts("node-a", vec![foreign], &DisablePolicy::default())
            .await
            .expect("record")
            .disabled
            .is_empty()
    );
    assert!(
        store
            .get_endpoint(&oid("c-d"), &ep.id)
            .await
            .expect("get")
            .enabled()
    );
    let disabled = store
        .record_attempts(
            "node-a",
            vec![attempt(410, Outcome::Failed, Some("410 Gone"))],
            &DisablePolicy::default(),
        )
        .await
        .expect("record");
    assert_eq!(
        disabled.disabled,
        vec![DisabledEndpoint {
            org_id: oid("c-d"),
            endpoint_id: ep.id.clone()
        }]
    );
    let ep_now = store.get_endpoint(&oid("c-d"), &ep.id).await.expect("get");
    assert!(!ep_now.enabled());
    assert_eq!(ep_now.disabled_reason(), Some("410 Gone"));

    let trace = store
        .trace(&oid("c-d"), &EventId::stored("d1".into()))
        .await
        .expect("trace");
    assert_eq!(trace.deliveries.len(), 1);
    let (dl, attempts) = &trace.deliveries[0];
    assert_eq!(dl.status, DeliveryStatus::Failed);
    assert_eq!(dl.attempts, 2);
    assert_eq!(
        attempts.iter().map(|a| a.status_code()).collect::<Vec<_>>(),
        vec![Some(500), Some(410)]
    );
    // Each attempt names the node that made it.
    assert!(attempts.iter().all(|a| a.node.as_deref() == Some("node-a")));
    assert_eq!(
        attempts[1].request_headers.as_deref(),
        Some(
            &[
                ("webhook-id".to_string(), "d1".to_string()),
                ("X-Crm".to_string(), "answered 410".to_string())
            ][..]
        ),
        "the headers as sent come back in order"
    );
    let with_status = |status| EventQuery {
        limit: 10,
        delivery_status: Some(status),
        ..Default::default()
    };
    let failed = store
        .list_events(&oid("c-d"), &with_status(DeliveryStatus::Failed))
        .await
        .expect("list");
    assert_eq!(
        failed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["d1"]
    );
    let pending = store
        .list_events(&oid("c-d"), &with_status(DeliveryStatus::Pending))
        .await
        .expect("list");
    assert!(pending.is_empty(), "no delivery of c-d is pending");
    assert!(
        matches!(
            store
                .trace(&oid("c-p"), &EventId::stored("d1".into()))
                .await,
            Err(StoreError::NotFound(Missing::Event))
        ),
        "trace is org-scoped"
    );
}

pub async fn listing_and_cursors(store: &dyn Store) {
    store
        .create_org(&Org::named("c-l", "L").expect("valid org"))
        .await
        .expect("org");
    let evs: Vec<_> = (0..5)
        .map(|i| {
            sample_event(
                &format!("l{i}"),
                if i % 2 == 0 { "A" } else { "B" },
                &i.to_string(),
            )
        })
        .collect();
    publish(store, "c-l", evs, "n").await.expect("publish");
    let page1 = store
        .list_events(
            &oid("c-l"),
            &EventQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(
        page1.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["l4", "l3"]
    );
    let page2 = store
        .list_events(
            &oid("c-l"),
            &EventQuery {
                limit: 2,
                before_seq: Some(page1[1].seq),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(
        page2.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["l2", "l1"]
    );
    let a = store
        .list_events(
            &oid("c-l"),
            &EventQuery {
                limit: 10,
                event_type: Some("A".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(a.len(), 3);
    let list = |q: EventQuery| async move {
        store
            .list_events(&oid("c-l"), &EventQuery { limit: 10, ..q })
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let glob = |t: &str| EventQuery {
        event_type: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(list(glob("*")).await.len(), 5, "`*` matches every type");
    assert_eq!(list(glob("B*")).await, vec!["l3", "l1"]);
    let after = EventQuery {
        after_seq: Some(page2[0].seq),
        ..Default::default()
    };
    assert_eq!(
        list(after).await,
        vec!["l3", "l4"],
        "after a seq, oldest first"
    );
    let kind = |k: &str| EventQuery {
        entity_type: Some(k.into()),
        ..Default::default()
    };
    assert_eq!(list(kind("Ticket")).await.len(), 5);
    assert!(list(kind("Contact")).await.is_empty());
    let one = store
        .list_events(
            &oid("c-l"),
            &EventQuery {
                limit: 10,
                entity_id: Some("3".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    let none = store
        .list_events(
            &oid("c-l"),
            &EventQuery {
                limit: 10,
                since: Some(now_ms() + 60_000),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert!(none.is_empty());
}

pub async fn replay_and_retry(store: &dyn Store) {
    store
        .create_org(&Org::named("c-r", "R").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-r", "https://r.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-r", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let t0 = now_ms();
    let out = publish(
        store,
        "c-r",
        vec![sample_event("r1", "X", "1"), sample_event("r2", "X", "2")],
        "n",
    )
    .await
    .expect("publish");
    let d = &out[0].new_deliveries[0];
    let failed = AttemptResult {
        org_id: oid("c-r"),
        endpoint_id: None,
        delivery_id: d.delivery_id.clone(),
        attempt: Attempt::new(
            &d.delivery_id,
            Seen {
                at: now_ms(),
                status_code: None,
                duration_ms: 0.0,
                error: Some("connection refused".into()),
                ..Seen::default()
            },
        )
        .expect("a valid attempt"),
        outcome: Outcome::Failed,
        disable_endpoint: None,
    };
    store
        .record_attempts("node-a", vec![failed], &DisablePolicy::default())
        .await
        .expect("record");
    let failed_list = store
        .list_deliveries(
            &oid("c-r"),
            &DeliveryQuery {
                status: Some(DeliveryStatus::Failed),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(failed_list.len(), 1);
    // Claimed for the lease asked, not one of the store's own.
    let before = now_ms();
    let again = store
        .retry_delivery(
            &oid("c-r"),
            &d.delivery_id,
            Claim {
                node: "n",
                lease_ms: 123_000,
            },
        )
        .await
        .expect("retry");
    let claimed = again.claimed.expect("claimed at once");
    assert_eq!(claimed.attempts, 1);
    assert!(
        (before + 123_000..=now_ms() + 123_000).contains(&claimed.lease_until),
        "claimed until {} for a lease of 123 s from {before}",
        claimed.lease_until
    );
    assert_eq!(
        store
            .get_delivery(&oid("c-r"), &d.delivery_id)
            .await
            .expect("get")
            .status,
        DeliveryStatus::Pending
    );
    assert!(matches!(
        store
            .retry_delivery(&oid("c-p"), &d.delivery_id, claim("n"))
            .await,
        Err(StoreError::NotFound(Missing::Delivery))
    ));

    let window = |after_seq, limit| ReplayWindow {
        since: t0,
        until: now_ms() + 1,
        after_seq,
        limit,
    };
    // In steps: one event, then the rest after it.
    let first = store
        .replay(&oid("c-r"), &ep.id, window(0, 1))
        .await
        .expect("replay");
    assert_eq!(first.created, 1);
    let last = first.last_seq.expect("a seq");
    let rest = store
        .replay(&oid("c-r"), &ep.id, window(last, 100))
        .await
        .expect("replay");
    assert_eq!(rest.created, 1);
    let none = store
        .replay(
            &oid("c-r"),
            &ep.id,
            window(rest.last_seq.expect("seq"), 100),
        )
        .await
        .expect("replay");
    assert_eq!(none, Replayed::default(), "nothing after the last");
    assert_eq!(
        store
            .trace(&oid("c-r"), &EventId::stored("r2".into()))
            .await
            .expect("trace")
            .deliveries
            .len(),
        2
    );
    assert!(matches!(
        store.replay(&oid("c-p"), &ep.id, window(0, 100)).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    assert!(store.pending_count().await.expect("count") >= 3);
}

pub async fn executors_secrets_storage_and_runs(store: &dyn Store) {
    store
        .create_org(&Org::named("c-x", "X").expect("valid org"))
        .await
        .expect("org");
    store
        .create_org(&Org::named("c-y", "Y").expect("valid org"))
        .await
        .expect("org");
    let stored = StoredExecutor {
        org_id: oid("c-x"),
        name: "double".into(),
        version: 0,
        description: "d".into(),
        spec: ExecutorSpec::Code {
            language: Language::Python,
            source: "v1".into(),
            timeout_ms: 1000,
            memory_mb: 64,
            tmp_mb: 64,
            api_role: ApiRole::default(),
        },
        parameters: Some(BTreeMap::from([("n".to_string(), "data.n".to_string())])),
        retries: Some(0),
        created_at: 0,
        tool: None,
        packages: None,
        packages_state: None,
    };
    let ex = Executor::stored(stored.clone());
    assert_eq!(store.put_executor(&ex).await.expect("put").version, 1);
    let v2 = Executor::stored(StoredExecutor {
        spec: ExecutorSpec::Code {
            language: Language::Python,
            source: "v2".into(),
            timeout_ms: 1000,
            memory_mb: 64,
            tmp_mb: 64,
            api_role: ApiRole::default(),
        },
        tool: Some(
            switchyard_core::tool::Tool::define(
                switchyard_core::tool::ToolDraft {
                    input_schema: Some(json!({"type": "object", "required": ["n"]})),
                    ..Default::default()
                },
                switchyard_core::tool::ToolDefaults {
                    name: "double",
                    description: "Doubles n",
                    input_schema: None,
                },
            )
            .expect("valid tool"),
        ),
        packages: Some(switchyard_core::packages::PackageSet {
            pip: vec!["six==1.16.0".into()],
            ..Default::default()
        }),
        packages_state: Some(switchyard_core::packages::PackageState::Installing),
        ..stored
    });
    assert_eq!(store.put_executor(&v2).await.expect("put").version, 2);
    let got = store
        .get_executor(&oid("c-x"), "double")
        .await
        .expect("get");
    assert_eq!(
        (got.version, got.spec(), got.parameters(), got.tool()),
        (2, v2.spec(), ex.parameters(), v2.tool())
    );
    assert_eq!(
        (got.packages(), &got.packages_state),
        (v2.packages(), &v2.packages_state)
    );
    // An install's outcome is recorded on its version; the directories in use are listed.
    let ready = switchyard_core::packages::PackageState::Ready {
        key: "pip-abc".into(),
        lock: "six==1.16.0 --hash=sha256:00\n".into(),
    };
    store
        .set_packages_state(&oid("c-x"), "double", 2, &ready)
        .await
        .expect("state");
    let got = store
        .get_executor(&oid("c-x"), "double")
        .await
        .expect("get");
    assert_eq!(got.packages_state, Some(ready.clone()));
    assert!(
        store
            .executors_installing()
            .await
            .expect("installing")
            .is_empty(),
        "ready is not installing"
    );
    store
        .set_packages_state(
            &oid("c-x"),
            "double",
            2,
            &switchyard_core::packages::PackageState::Installing,
        )
        .await
        .expect("state");
    let installing = store.executors_installing().await.expect("installing");
    assert_eq!(
        installing
            .iter()
            .map(|e| (e.name(), e.version))
            .collect::<Vec<_>>(),
        vec![("double", 2)]
    );
    store
        .set_packages_state(&oid("c-x"), "double", 2, &ready)
        .await
        .expect("state");
    assert_eq!(
        store.packages_in_use().await.expect("in use"),
        vec!["pip-abc".to_string()]
    );
    assert!(matches!(
        store
            .set_packages_state(&oid("c-x"), "double", 9, &ready)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!((got.version, got.spec()), (2, v2.spec()));
    assert!(matches!(
        store.get_executor(&oid("c-y"), "double").await,
        Err(StoreError::NotFound(Missing::Executor))
    ));
    assert_eq!(
        store.list_executors(&oid("c-x")).await.expect("list").len(),
        1
    );
    assert!(
        store
            .list_executors(&oid("c-y"))
            .await
            .expect("list")
            .is_empty()
    );
    let versions = store
        .executor_versions(&oid("c-x"), "double")
        .await
        .expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    assert_eq!(
        versions[1].spec(),
        ex.spec(),
        "each version keeps what it ran"
    );
    assert!(matches!(
        store.executor_versions(&oid("c-y"), "double").await,
        Err(StoreError::NotFound(Missing::Executor))
    ));
    assert!(matches!(
        store.delete_executor(&oid("c-y"), "double").await,
        Err(StoreError::NotFound(Missing::Executor))
    ));

    store
        .put_secret(&oid("c-x"), "API_TOKEN", "t0ps3cret")
        .await
        .expect("secret");
    store
        .put_secret(&oid("c-x"), "API_TOKEN", "t0ps3cret-2")
        .await
        .expect("replace");
    assert_eq!(
        store
            .get_secret(&oid("c-x"), "API_TOKEN")
            .await
            .expect("get")
            .as_deref(),
        Some("t0ps3cret-2")
    );
    assert_eq!(
        store
            .get_secret(&oid("c-y"), "API_TOKEN")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .list_secrets(&oid("c-x"))
            .await
            .expect("list")
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>(),
        vec!["API_TOKEN"]
    );
    assert!(matches!(
        store.delete_secret(&oid("c-y"), "API_TOKEN").await,
        Err(StoreError::NotFound(Missing::Secret))
    ));

    store
        .kv_set(&oid("c-x"), "k", &json!({"a": 1}), 1 << 20)
        .await
        .expect("set");
    assert_eq!(
        store.kv_get(&oid("c-x"), "k").await.expect("get"),
        Some(json!({"a": 1}))
    );
    assert_eq!(store.kv_get(&oid("c-y"), "k").await.expect("get"), None);
    assert!(!store.kv_delete(&oid("c-y"), "k").await.expect("delete"));
    assert!(store.kv_delete(&oid("c-x"), "k").await.expect("delete"));

    let run = Run {
        id: RunId::generate(),
        org_id: oid("c-x"),
        executor: "double".into(),
        version: 2,
        event_id: Some(EventId::stored("ev-1".into())),
        status: RunStatus::Succeeded,
        input: json!({"n": 21}),
        output: Some(json!({"n": 42})),
        error: None,
        logs: vec!["hello".into()],
        stderr: String::new(),
        exit: Some(0),
        duration_ms: 1.5,
        at: now_ms(),
        hook: Some("contract-by-id".into()),
        failure: None,
    };
    store.record_run(&run).await.expect("run");
    assert_eq!(store.get_run(&oid("c-x"), &run.id).await.expect("get"), run);
    // A failed run keeps what kind of failure it was.
    let failed = Run {
        id: RunId::generate(),
        status: RunStatus::Failed,
        output: None,
        error: Some("memory limit: the code needed more than 64 MB".into()),
        failure: Some(RunFailure::Memory),
        event_id: None,
        ..run.clone()
    };
    store.record_run(&failed).await.expect("failed run");
    assert_eq!(
        store.get_run(&oid("c-x"), &failed.id).await.expect("get"),
        failed
    );
    assert_eq!(
        store
            .runs_for_event(&oid("c-x"), &EventId::stored("ev-1".into()))
            .await
            .expect("runs"),
        vec![run.clone()]
    );
    assert!(
        store
            .runs_for_event(&oid("c-y"), &EventId::stored("ev-1".into()))
            .await
            .expect("runs")
            .is_empty()
    );
    assert!(matches!(
        store.get_run(&oid("c-y"), &run.id).await,
        Err(StoreError::NotFound(Missing::Run))
    ));

    // Synchronous hooks: stored whole, replaced, scoped to their organization, and only in
    // front of an executor that exists.
    use switchyard_core::sync_hook::SyncHookDefinition;
    let def = |executor: &str| SyncHookDefinition {
        executor: executor.into(),
        cache_ttl_s: Some(60),
        input_schema: Some(json!({"type": "object", "required": ["contractId"]})),
        ..Default::default()
    };
    let hook = SyncHook::define(&oid("c-x"), "contract-by-id", def("double"), None, now_ms())
        .expect("valid");
    assert_eq!(store.put_sync_hook(&hook).await.expect("put"), hook);
    assert_eq!(
        store
            .get_sync_hook(&oid("c-x"), "contract-by-id")
            .await
            .expect("get"),
        hook
    );
    let orphan =
        SyncHook::define(&oid("c-x"), "orphan", def("no-such"), None, now_ms()).expect("valid");
    assert!(matches!(
        store.put_sync_hook(&orphan).await,
        Err(StoreError::InvalidReference(_))
    ));
    let mut changed = SyncHook::define(
        &oid("c-x"),
        "contract-by-id",
        def("double"),
        Some(&hook),
        now_ms(),
    )
    .expect("valid");
    changed.timeout_ms = 500;
    changed.tool = Some(
        switchyard_core::tool::Tool::define(
            switchyard_core::tool::ToolDraft::default(),
            switchyard_core::tool::ToolDefaults {
                name: "contract-by-id",
                description: "Finds a contract",
                input_schema: changed.input_schema.as_ref(),
            },
        )
        .expect("valid tool"),
    );
    store.put_sync_hook(&changed).await.expect("replace");
    assert_eq!(
        store.list_sync_hooks(&oid("c-x")).await.expect("list"),
        vec![changed.clone()]
    );
    assert!(
        store
            .list_sync_hooks(&oid("c-y"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(matches!(
        store.get_sync_hook(&oid("c-y"), "contract-by-id").await,
        Err(StoreError::NotFound(Missing::Hook))
    ));
    assert!(matches!(
        store.delete_sync_hook(&oid("c-y"), "contract-by-id").await,
        Err(StoreError::NotFound(Missing::Hook))
    ));
    store
        .delete_sync_hook(&oid("c-x"), "contract-by-id")
        .await
        .expect("delete");
    assert!(
        store
            .list_sync_hooks(&oid("c-x"))
            .await
            .expect("list")
            .is_empty()
    );
    store
        .delete_executor(&oid("c-x"), "double")
        .await
        .expect("delete");
    assert!(matches!(
        store.get_executor(&oid("c-x"), "double").await,
        Err(StoreError::NotFound(Missing::Executor))
    ));
}

pub async fn a_publish_routed_before_a_change_is_refused_whole(store: &dyn Store) {
    store
        .create_org(&Org::named("c-v", "V").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-v", "https://v.example"))
        .await
        .expect("ep");
    let before = store.routing(&oid("c-v")).await.expect("routing");
    assert!(before.subscriptions.is_empty());
    let batch = route(store, "c-v", vec![sample_event("v1", "T", "1")])
        .await
        .expect("route");
    // A subscription appears between routing and the commit (another request, another node).
    store
        .create_subscription(&sample_subscription("c-v", &ep.id, &["T"]), None)
        .await
        .expect("sub");
    let after = store.routing(&oid("c-v")).await.expect("routing");
    assert!(
        after.version > before.version,
        "a subscription bumps the version"
    );
    match store
        .publish(&oid("c-v"), batch, claim("n"))
        .await
        .expect("publish")
    {
        PublishOutcome::StaleRouting(back) => {
            assert_eq!(back.events.len(), 1, "the batch comes back whole");
        }
        PublishOutcome::Committed(_) => panic!("a stale routing must not commit"),
    }
    assert!(
        matches!(
            store
                .get_event(&oid("c-v"), &EventId::stored("v1".into()))
                .await,
            Err(StoreError::NotFound(Missing::Event))
        ),
        "nothing of a stale batch is written"
    );
    let out = publish(store, "c-v", vec![sample_event("v1", "T", "1")], "n")
        .await
        .expect("publish");
    assert_eq!(
        out[0].delivery_count, 1,
        "routed again, it reaches the new subscription"
    );

    // Disabling, enabling and deleting endpoints and subscriptions each bump the version.
    let mut seen = after.version;
    let mut bumped = |v: i64, what: &str| {
        assert!(v > seen, "{what} must bump the routing version");
        seen = v;
    };
    let mut off = store.get_endpoint(&oid("c-v"), &ep.id).await.expect("get");
    patch(
        &mut off,
        EndpointChanges {
            enabled: Some(false),
            ..Default::default()
        },
    );
    store.update_endpoint(&off).await.expect("disable");
    bumped(
        store.routing(&oid("c-v")).await.expect("r").version,
        "disabling an endpoint",
    );
    let sub = store.list_subscriptions(&oid("c-v")).await.expect("subs")[0].clone();
    store
        .delete_subscription(&oid("c-v"), &sub.id)
        .await
        .expect("del sub");
    bumped(
        store.routing(&oid("c-v")).await.expect("r").version,
        "deleting a subscription",
    );
    store
        .delete_endpoint(&oid("c-v"), &ep.id)
        .await
        .expect("del ep");
    bumped(
        store.routing(&oid("c-v")).await.expect("r").version,
        "deleting an endpoint",
    );
    assert!(matches!(
        store.routing(&oid("c-nope")).await,
        Err(StoreError::NotFound(Missing::Organization))
    ));
}

pub async fn retention_deletes_finished_events_and_keeps_pending_ones(store: &dyn Store) {
    store
        .create_org(&Org::named("c-t", "T").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-t", "https://t.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-t", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let out = publish(
        store,
        "c-t",
        vec![
            sample_event("done-1", "T", "1"),
            sample_event("pending-1", "T", "2"),
            sample_event("done-2", "T", "3"),
        ],
        "n",
    )
    .await
    .expect("publish");
    let finish = |p: &Published| {
        let d = &p.new_deliveries[0];
        AttemptResult {
            org_id: oid("c-t"),
            endpoint_id: Some(ep.id.clone()),
            delivery_id: d.delivery_id.clone(),
            attempt: Attempt::new(
                &d.delivery_id,
                Seen {
                    at: now_ms(),
                    status_code: Some(200),
                    duration_ms: 1.0,
                    ..Seen::default()
                },
            )
            .expect("a valid attempt"),
            outcome: Outcome::Delivered,
            disable_endpoint: None,
        }
    };
    store
        .record_attempts(
            "node-a",
            vec![finish(&out[0]), finish(&out[2])],
            &DisablePolicy::default(),
        )
        .await
        .expect("record");
    let hook_run = |event: Option<&str>, at: i64| Run {
        id: RunId::generate(),
        org_id: oid("c-t"),
        executor: "x".into(),
        version: 1,
        event_id: event.map(|e| EventId::stored(e.to_string())),
        status: RunStatus::Succeeded,
        input: json!({}),
        output: None,
        error: None,
        logs: vec![],
        stderr: String::new(),
        exit: Some(0),
        duration_ms: 1.0,
        at,
        hook: None,
        failure: None,
    };
    let of_event = hook_run(Some("done-1"), now_ms());
    let preview = hook_run(None, now_ms());
    store.record_run(&of_event).await.expect("run");
    store.record_run(&preview).await.expect("run");

    // A cutoff before everything deletes nothing.
    let none = store
        .purge_events(&oid("c-t"), 0, 0, 100)
        .await
        .expect("purge");
    assert_eq!(none.events, 0);
    assert!(none.done);

    // Another organization's retention touches nothing of this one's.
    store
        .create_org(&Org::named("c-t2", "T2").expect("valid org"))
        .await
        .expect("org");
    let cutoff = now_ms() + 60_000;
    let other = store
        .purge_events(&oid("c-t2"), cutoff, 0, 100)
        .await
        .expect("purge");
    assert_eq!((other.events, other.deliveries), (0, 0));
    assert_eq!(
        store
            .purge_runs(&oid("c-t2"), cutoff, 100)
            .await
            .expect("runs"),
        0
    );
    assert!(
        store
            .get_event(&oid("c-t"), &EventId::stored("done-1".into()))
            .await
            .is_ok()
    );

    // Past the cutoff, in batches of one: finished events go with everything of theirs.
    let mut after = 0;
    let mut total = PurgeBatch::default();
    loop {
        let b = store
            .purge_events(&oid("c-t"), cutoff, after, 1)
            .await
            .expect("purge");
        total.events += b.events;
        total.deliveries += b.deliveries;
        total.attempts += b.attempts;
        total.runs += b.runs;
        after = b.next_after_seq;
        if b.done {
            break;
        }
    }
    assert_eq!(
        (total.events, total.deliveries, total.attempts, total.runs),
        (2, 2, 2, 1)
    );
    for gone in ["done-1", "done-2"] {
        assert!(matches!(
            store
                .get_event(&oid("c-t"), &EventId::stored(gone.into()))
                .await,
            Err(StoreError::NotFound(Missing::Event))
        ));
        assert!(matches!(
            store
                .trace(&oid("c-t"), &EventId::stored(gone.into()))
                .await,
            Err(StoreError::NotFound(Missing::Event))
        ));
    }
    assert!(matches!(
        store.get_run(&oid("c-t"), &of_event.id).await,
        Err(StoreError::NotFound(Missing::Run))
    ));
    // The pending one is still to be delivered: kept, with its delivery.
    let kept = store
        .trace(&oid("c-t"), &EventId::stored("pending-1".into()))
        .await
        .expect("kept");
    assert_eq!(kept.deliveries.len(), 1);
    // Preview runs have their own cutoff.
    assert_eq!(
        store.purge_runs(&oid("c-t"), 0, 100).await.expect("runs"),
        0
    );
    assert_eq!(
        store
            .purge_runs(&oid("c-t"), cutoff, 100)
            .await
            .expect("runs"),
        1
    );
    assert!(matches!(
        store.get_run(&oid("c-t"), &preview.id).await,
        Err(StoreError::NotFound(Missing::Run))
    ));
    store.reclaim_space().await.expect("reclaim");
}

pub async fn payload_retention_drops_only_what_is_delivered(store: &dyn Store) {
    let mut org = Org::named("c-pl", "PL").expect("valid org");
    store.create_org(&org).await.expect("org");
    org.retention_s = Some(86_400);
    org.payload_retention_s = Some(3_600);
    assert_eq!(store.update_org(&org).await.expect("update"), org);
    assert_eq!(store.get_org(&oid("c-pl")).await.expect("get"), org);
    let ep = store
        .create_endpoint(&sample_endpoint("c-pl", "https://pl.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-pl", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let t0 = now_ms();
    let out = publish(
        store,
        "c-pl",
        vec![
            sample_event("delivered", "T", "1"),
            sample_event("pending", "T", "2"),
            sample_event("failed", "T", "3"),
        ],
        "n",
    )
    .await
    .expect("publish");
    let due = |i: usize| out[i].new_deliveries[0].clone();
    store
        .record_attempts(
            "node-a",
            vec![
                result_for(&due(0), 200, Outcome::Delivered),
                result_for(&due(2), 500, Outcome::Failed),
            ],
            &DisablePolicy::default(),
        )
        .await
        .expect("record");
    let run = Run {
        id: RunId::generate(),
        org_id: oid("c-pl"),
        executor: "x".into(),
        version: 1,
        event_id: Some(EventId::stored("delivered".into())),
        status: RunStatus::Succeeded,
        input: json!({"data": {"secret": "pii"}}),
        output: None,
        error: None,
        logs: vec![],
        stderr: String::new(),
        exit: Some(0),
        duration_ms: 1.0,
        at: now_ms(),
        hook: None,
        failure: None,
    };
    store.record_run(&run).await.expect("run");

    let cutoff = now_ms() + 60_000;
    let b = store
        .drop_payloads(&oid("c-pl"), cutoff, 0, 100)
        .await
        .expect("drop");
    assert_eq!(b.dropped, 1, "{b:?}");
    assert!(b.done);
    let pending_seq = store
        .get_event(&oid("c-pl"), &EventId::stored("pending".into()))
        .await
        .expect("kept")
        .seq;
    assert_eq!(
        b.first_kept,
        Some(pending_seq),
        "the first event that keeps its payload"
    );
    let gone = store
        .get_event(&oid("c-pl"), &EventId::stored("delivered".into()))
        .await
        .expect("event stays");
    assert_eq!(gone.data, serde_json::Value::Null);
    assert!(gone.payload_dropped_at.is_some());
    assert_eq!(
        store
            .get_run(&oid("c-pl"), &run.id)
            .await
            .expect("run")
            .input,
        serde_json::Value::Null,
        "the run's copy of the payload goes too"
    );
    for kept in ["pending", "failed"] {
        let e = store
            .get_event(&oid("c-pl"), &EventId::stored(kept.into()))
            .await
            .expect("kept");
        assert_ne!(e.data, serde_json::Value::Null, "{kept}");
        assert!(e.payload_dropped_at.is_none());
    }
    // Nothing can send the dropped payload again: not a retry, not a replay.
    assert!(matches!(
        store
            .retry_delivery(&oid("c-pl"), &due(0).delivery_id, claim("n"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .replay(
                &oid("c-pl"),
                &ep.id,
                ReplayWindow {
                    since: t0 - 1,
                    until: now_ms() + 1,
                    after_seq: 0,
                    limit: 100
                }
            )
            .await
            .expect("replay")
            .created,
        2
    );
    // Once dropped, a later pass passes over it; another organization is untouched.
    let again = store
        .drop_payloads(&oid("c-pl"), cutoff, 0, 100)
        .await
        .expect("drop");
    assert_eq!(again.dropped, 0);
    assert_eq!(
        store
            .drop_payloads(&oid("c-t-none"), cutoff, 0, 100)
            .await
            .expect("drop")
            .dropped,
        0
    );
}

/// Claims as `node` after taking the endpoint's lease for it (if no other node holds it; if
/// one does, the claim is fenced off and finds nothing).
async fn claim_as(
    store: &dyn Store,
    node: &str,
    endpoint: &EndpointRef,
    now: i64,
    limit: u32,
    lease_ms: i64,
) -> Result<Vec<DueDelivery>> {
    store
        .take_leases(
            node,
            std::slice::from_ref(&endpoint.endpoint_id),
            now_ms(),
            60_000,
        )
        .await?;
    store
        .claim_endpoint(node, endpoint, now, limit, lease_ms)
        .await
}

pub async fn endpoint_leases_fence_claims_and_pass_on_when_they_expire(store: &dyn Store) {
    store
        .create_org(&Org::named("c-l", "Leases").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-l", "http://127.0.0.1:9/l"))
        .await
        .expect("ep");
    let other = store
        .create_endpoint(&sample_endpoint("c-l", "http://127.0.0.1:9/m"))
        .await
        .expect("ep");
    for e in [&ep, &other] {
        store
            .create_subscription(&sample_subscription("c-l", &e.id, &["*"]), None)
            .await
            .expect("sub");
    }
    // Published by a node that claims nothing: both deliveries are due in the store.
    let mut batch = route(store, "c-l", vec![sample_event("l1", "X", "1")])
        .await
        .expect("route");
    for e in &mut batch.events {
        e.claim.iter_mut().for_each(|c| *c = false);
    }
    assert!(matches!(
        store
            .publish(&oid("c-l"), batch, claim("api-node"))
            .await
            .expect("publish"),
        PublishOutcome::Committed(_)
    ));
    let at = EndpointRef {
        org_id: oid("c-l"),
        endpoint_id: ep.id.clone(),
    };
    let t0 = now_ms() + 10;
    let ids = [ep.id.clone(), other.id.clone()];

    // Without the lease nothing is claimed; with it, node A claims.
    assert!(
        store
            .claim_endpoint("node-a", &at, t0, 10, 600_000)
            .await
            .expect("claim")
            .is_empty(),
        "no lease, no claim"
    );
    let held = store
        .take_leases("node-a", &ids[..1], t0, 1_000)
        .await
        .expect("lease");
    assert_eq!(held, vec![ep.id.clone()]);
    // Node B is refused what A holds, and its poller does not see it; both see the free one.
    let held_b = store
        .take_leases("node-b", &ids, t0 + 1, 1_000)
        .await
        .expect("lease");
    assert_eq!(held_b, vec![other.id.clone()]);
    let due_b = store
        .due_endpoints("node-b", t0 + 1, 100)
        .await
        .expect("due");
    assert_eq!(
        due_b
            .iter()
            .map(|e| e.endpoint_id.clone())
            .collect::<Vec<_>>(),
        vec![other.id.clone()]
    );
    let due_a = store
        .due_endpoints("node-a", t0 + 1, 100)
        .await
        .expect("due");
    assert_eq!(
        due_a
            .iter()
            .map(|e| e.endpoint_id.clone())
            .collect::<Vec<_>>(),
        vec![ep.id.clone()]
    );
    assert!(
        store
            .claim_endpoint("node-b", &at, t0 + 1, 10, 600_000)
            .await
            .expect("claim")
            .is_empty(),
        "fenced: node B does not hold the lease"
    );
    let claimed = store
        .claim_endpoint("node-a", &at, t0 + 2, 10, 600_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Renewing keeps it; node A then stops renewing (it died). Before its lease runs out
    // nobody takes it; after, node B does, and A's claim is due again at once for B.
    assert_eq!(
        store
            .take_leases("node-a", &ids[..1], t0 + 500, 1_000)
            .await
            .expect("renew"),
        vec![ep.id.clone()]
    );
    assert!(
        store
            .take_leases("node-b", &ids[..1], t0 + 1_400, 1_000)
            .await
            .expect("lease")
            .is_empty(),
        "renewed until t0 + 1500"
    );
    assert_eq!(
        store
            .take_leases("node-b", &ids[..1], t0 + 1_600, 1_000)
            .await
            .expect("take over"),
        vec![ep.id.clone()]
    );
    let again = store
        .claim_endpoint("node-b", &at, t0 + 1_600, 10, 600_000)
        .await
        .expect("claim");
    assert_eq!(
        again
            .iter()
            .map(|d| d.delivery_id.clone())
            .collect::<Vec<_>>(),
        vec![claimed[0].delivery_id.clone()],
        "the dead node's claim passes to the new holder"
    );
    assert!(
        store
            .claim_endpoint("node-a", &at, t0 + 1_600, 10, 600_000)
            .await
            .expect("claim")
            .is_empty(),
        "fenced: node A lost the lease"
    );
    // Nodes that beat are live until their beat runs out; a node that stops is gone at once.
    assert_eq!(
        store.heartbeat("node-a", t0, 1_000).await.expect("beat"),
        vec!["node-a".to_string()]
    );
    assert_eq!(
        store
            .heartbeat("node-b", t0 + 500, 1_000)
            .await
            .expect("beat"),
        vec!["node-a".to_string(), "node-b".to_string()]
    );
    assert_eq!(
        store
            .heartbeat("node-b", t0 + 1_200, 1_000)
            .await
            .expect("beat"),
        vec!["node-b".to_string()],
        "node A's beat ran out"
    );
    // Dropped leases are free at once.
    assert_eq!(store.drop_leases("node-b", None).await.expect("drop"), 2);
    assert_eq!(
        store
            .heartbeat("node-c", t0 + 1_300, 1_000)
            .await
            .expect("beat"),
        vec!["node-c".to_string()],
        "a node that gave up everything stops beating"
    );
    assert_eq!(
        store
            .take_leases("node-c", &ids, t0 + 1_700, 1_000)
            .await
            .expect("lease")
            .len(),
        2
    );
    assert_eq!(
        store
            .drop_leases("node-c", Some(&ids[1..]))
            .await
            .expect("drop"),
        1
    );
}

/// A node that stops beating (killed) may hold claims nothing else would release before their
/// claim lease (minutes): deliveries it took at publish, event hooks, the heads of an ordered
/// endpoint's keys. Once its beat has run out by another lease, the next beat of any node makes
/// them due again, once.
pub async fn a_node_gone_a_lease_past_its_beat_has_its_claims_released(store: &dyn Store) {
    store
        .create_org(&Org::named("c-g", "Gone").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-g", "http://127.0.0.1:9/g"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-g", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let t0 = now_ms();
    assert_eq!(
        store.heartbeat("node-a", t0, 1_000).await.expect("beat"),
        vec!["node-a".to_string()]
    );
    // Node A publishes and claims the delivery for itself, then dies.
    let mut batch = route(store, "c-g", vec![sample_event("g1", "X", "1")])
        .await
        .expect("route");
    for e in &mut batch.events {
        e.claim.iter_mut().for_each(|c| *c = true);
    }
    let PublishOutcome::Committed(published) = store
        .publish(&oid("c-g"), batch, claim("node-a"))
        .await
        .expect("publish")
    else {
        panic!("stale routing");
    };
    let claimed = &published[0].new_deliveries;
    assert_eq!(claimed.len(), 1, "claimed at publish");
    let due = |at: i64| async move {
        store
            .due_endpoints("node-b", at, 100)
            .await
            .expect("due")
            .into_iter()
            .map(|e| e.endpoint_id)
            .collect::<Vec<_>>()
    };
    // Its beat has run out, but not by a lease yet: its claim stands.
    assert_eq!(
        store
            .heartbeat("node-b", t0 + 1_500, 1_000)
            .await
            .expect("beat"),
        vec!["node-b".to_string()]
    );
    assert!(
        due(t0 + 1_500).await.is_empty(),
        "node A's claim still holds"
    );
    // A lease later it is gone: node B's beat makes the delivery due again.
    assert_eq!(
        store
            .heartbeat("node-b", t0 + 2_100, 1_000)
            .await
            .expect("beat"),
        vec!["node-b".to_string()]
    );
    assert_eq!(due(t0 + 2_100).await, vec![ep.id.clone()]);
    let at = EndpointRef {
        org_id: oid("c-g"),
        endpoint_id: ep.id.clone(),
    };
    store
        .take_leases("node-b", std::slice::from_ref(&ep.id), t0 + 2_100, 1_000)
        .await
        .expect("lease");
    let again = store
        .claim_endpoint("node-b", &at, t0 + 2_100, 10, 600_000)
        .await
        .expect("claim");
    assert_eq!(
        again
            .iter()
            .map(|d| d.delivery_id.clone())
            .collect::<Vec<_>>(),
        vec![claimed[0].delivery_id.clone()]
    );
    // Once: node B's own claim is not released by the next beat.
    store
        .heartbeat("node-c", t0 + 2_200, 1_000)
        .await
        .expect("beat");
    assert!(due(t0 + 2_200).await.is_empty(), "node B's claim holds");
}

fn result_for(d: &DueDelivery, code: u16, outcome: Outcome) -> AttemptResult {
    AttemptResult {
        org_id: d.org_id.clone(),
        endpoint_id: d.target.endpoint_id().cloned(),
        delivery_id: d.delivery_id.clone(),
        attempt: Attempt::new(
            &d.delivery_id,
            Seen {
                at: now_ms(),
                status_code: Some(code),
                duration_ms: 2.0,
                error: (code >= 300).then(|| format!("receiver answered {code}")),
                ..Seen::default()
            },
        )
        .expect("a valid attempt"),
        outcome,
        disable_endpoint: None,
    }
}

pub async fn an_ordered_key_hands_out_only_its_head(store: &dyn Store) {
    use switchyard_core::ordering::{HeadFailure, Ordering, OrderingKey};
    store
        .create_org(&Org::named("c-o", "O").expect("valid org"))
        .await
        .expect("org");
    let mut ep = sample_endpoint("c-o", "https://o.example");
    patch(
        &mut ep,
        EndpointChanges {
            ordered: Some(true),
            on_head_failure: Some("block".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        ep.ordering(),
        Some(&Ordering {
            key: OrderingKey::Entity,
            on_head_failure: HeadFailure::Block,
        })
    );
    let ep = store.create_endpoint(&ep).await.expect("ep");
    store
        .create_subscription(&sample_subscription("c-o", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let at = EndpointRef {
        org_id: oid("c-o"),
        endpoint_id: ep.id.clone(),
    };
    let out = publish(
        store,
        "c-o",
        vec![
            sample_event("o1", "X", "1"),
            sample_event("o2", "X", "1"),
            sample_event("o3", "X", "2"),
        ],
        "n",
    )
    .await
    .expect("publish");
    // The heads of keys 1 and 2 are claimed at once; o2 waits behind o1, undue.
    let counts: Vec<_> = out.iter().map(|p| p.new_deliveries.len()).collect();
    assert_eq!(counts, vec![1, 0, 1]);
    assert_eq!(out[1].delivery_count, 1);
    let waiting = &store
        .trace(&oid("c-o"), &EventId::stored("o2".into()))
        .await
        .expect("trace")
        .deliveries[0]
        .0;
    assert_eq!(waiting.status, DeliveryStatus::Pending);
    assert_eq!(waiting.next_attempt_at, None);
    assert_eq!(waiting.ordering_key.as_deref(), Some("Ticket/1"));
    assert!(
        claim_as(store, "n", &at, now_ms() + 10, 100, 60_000)
            .await
            .expect("claim")
            .is_empty(),
        "only heads are ever due, and both are claimed"
    );
    // A retried head keeps its key; its successor stays undue.
    let policy = DisablePolicy::default();
    let head = &out[0].new_deliveries[0];
    store
        .record_attempts(
            "node-a",
            vec![result_for(head, 500, Outcome::Retry { at: now_ms() })],
            &policy,
        )
        .await
        .expect("record");
    let due = claim_as(store, "n", &at, now_ms() + 10, 100, 60_000)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery_id, head.delivery_id);
    // Delivered: the next of its key becomes due.
    let recorded = store
        .record_attempts(
            "node-a",
            vec![result_for(&due[0], 200, Outcome::Delivered)],
            &policy,
        )
        .await
        .expect("record");
    assert_eq!(recorded.due_now, vec![at.clone()]);
    let next = claim_as(store, "n", &at, now_ms() + 10, 100, 60_000)
        .await
        .expect("claim");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.id, "o2");
    // With `block`, a head that fails for good holds its key; a publish behind it waits.
    store
        .record_attempts(
            "node-a",
            vec![result_for(&next[0], 500, Outcome::Failed)],
            &policy,
        )
        .await
        .expect("record");
    let blocked = store
        .get_delivery(&oid("c-o"), &next[0].delivery_id)
        .await
        .expect("get");
    assert_eq!(blocked.status, DeliveryStatus::Blocked);
    let out = publish(store, "c-o", vec![sample_event("o4", "X", "1")], "n")
        .await
        .expect("publish");
    assert!(out[0].new_deliveries.is_empty(), "o4 waits behind o2");
    // Retrying the waiting one would overtake its head: refused. The head goes at once.
    let o4 = store
        .trace(&oid("c-o"), &EventId::stored("o4".into()))
        .await
        .expect("trace")
        .deliveries[0]
        .0
        .id
        .clone();
    assert!(matches!(
        store.retry_delivery(&oid("c-o"), &o4, claim("n")).await,
        Err(StoreError::Conflict(_))
    ));
    let retried = store
        .retry_delivery(&oid("c-o"), &next[0].delivery_id, claim("n"))
        .await
        .expect("retry");
    assert!(retried.claimed.is_some());
    assert!(retried.delivery.in_flight);
    // A settled delivery retried while its key is busy reopens behind the busy head.
    let again = store
        .retry_delivery(&oid("c-o"), &head.delivery_id, claim("n"))
        .await
        .expect("retry");
    assert!(again.claimed.is_none());
    assert_eq!(again.delivery.next_attempt_at, None);
}

pub async fn health_counts_failures_and_a_recovery_makes_retries_due(store: &dyn Store) {
    store
        .create_org(&Org::named("c-h", "H").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&sample_endpoint("c-h", "https://h.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&sample_subscription("c-h", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let at = EndpointRef {
        org_id: oid("c-h"),
        endpoint_id: ep.id.clone(),
    };
    let out = publish(
        store,
        "c-h",
        vec![sample_event("h1", "X", "1"), sample_event("h2", "X", "2")],
        "n",
    )
    .await
    .expect("publish");
    let (a, b) = (&out[0].new_deliveries[0], &out[1].new_deliveries[0]);
    let policy = DisablePolicy::default();
    let later = now_ms() + 3_600_000;
    store
        .record_attempts(
            "node-a",
            vec![
                result_for(a, 500, Outcome::Retry { at: later }),
                result_for(b, 502, Outcome::Retry { at: later }),
            ],
            &policy,
        )
        .await
        .expect("record");
    let h = store
        .endpoint_health(&oid("c-h"), &ep.id, 0)
        .await
        .expect("health");
    assert_eq!(h.consecutive_failures, 2);
    assert!(h.failing_since.is_some());
    assert_eq!(h.last_error.as_deref(), Some("receiver answered 502"));
    assert_eq!((h.window.attempts, h.window.successes), (2, 0));
    assert!(
        store
            .due_endpoints("n", now_ms() + 10, 100)
            .await
            .expect("due")
            .is_empty(),
        "both wait an hour"
    );
    // A success (h1 published again and delivered) brings h2 forward.
    let c = &publish(store, "c-h", vec![sample_event("h3", "X", "3")], "n")
        .await
        .expect("publish")[0]
        .new_deliveries[0];
    let recorded = store
        .record_attempts(
            "node-a",
            vec![result_for(c, 200, Outcome::Delivered)],
            &policy,
        )
        .await
        .expect("record");
    assert_eq!(recorded.due_now, vec![at.clone()]);
    assert_eq!(
        store
            .due_endpoints("n", now_ms() + 10, 100)
            .await
            .expect("due"),
        vec![at]
    );
    let h = store
        .endpoint_health(&oid("c-h"), &ep.id, 0)
        .await
        .expect("health");
    assert_eq!(h.consecutive_failures, 0);
    assert_eq!(h.failing_since, None);
    assert!(h.last_success_at.is_some());
    assert_eq!(h.window.success_rate(), Some(1.0 / 3.0));
    assert!(matches!(
        store.endpoint_health(&oid("c-other"), &ep.id, 0).await,
        Err(StoreError::NotFound(Missing::Endpoint))
    ));
    // The disable policy: failing long enough, spread wide enough, disables.
    let strict = DisablePolicy {
        failing_for_ms: 0,
        min_span_ms: 0,
    };
    let recorded = store
        .record_attempts(
            "node-a",
            vec![result_for(a, 500, Outcome::Retry { at: later })],
            &strict,
        )
        .await
        .expect("record");
    assert_eq!(recorded.disabled.len(), 1);
    assert!(
        !store
            .get_endpoint(&oid("c-h"), &ep.id)
            .await
            .expect("get")
            .enabled()
    );
}

/// One organization's backlog of event hooks never hides another's: a claim takes at most
/// `per_org` of each organization, and none of one it is told to skip.
pub async fn event_hooks_are_claimed_a_few_per_organization(store: &dyn Store) {
    for org in ["h-a", "h-b"] {
        store
            .create_org(&Org::named(org, org).expect("valid org"))
            .await
            .expect("org");
        let ex = Executor::stored(StoredExecutor {
            org_id: oid(org),
            name: "hook".into(),
            version: 0,
            description: String::new(),
            spec: ExecutorSpec::Code {
                language: Language::Python,
                source: "def main(i, sdk): return i".into(),
                timeout_ms: 1000,
                memory_mb: 64,
                tmp_mb: 8,
                api_role: ApiRole::default(),
            },
            parameters: None,
            retries: Some(0),
            created_at: 0,
            tool: None,
            packages: None,
            packages_state: None,
        });
        store.put_executor(&ex).await.expect("executor");
        let mut sub = stored_subscription(org, &EndpointId::generate(), &["*"]);
        sub.target = Target::Executor("hook".into());
        let sub = Subscription::stored(sub);
        store.create_subscription(&sub, None).await.expect("sub");
    }
    // A's backlog is older than B's one hook.
    let a: Vec<_> = (0..30)
        .map(|i| sample_event(&format!("a-{i}"), "T", "1"))
        .collect();
    let mut batch = route(store, "h-a", a).await.expect("route");
    for e in &mut batch.events {
        e.claim = vec![false; e.targets.len()];
    }
    store
        .publish(&oid("h-a"), batch, claim("n"))
        .await
        .expect("publish");
    let mut batch = route(store, "h-b", vec![sample_event("b-1", "T", "1")])
        .await
        .expect("route");
    for e in &mut batch.events {
        e.claim = vec![false; e.targets.len()];
    }
    store
        .publish(&oid("h-b"), batch, claim("n"))
        .await
        .expect("publish");

    let now = now_ms() + 1_000;
    let wanted = HookClaim {
        limit: 10,
        per_org: 3,
        skip: Vec::new(),
    };
    let claimed = store
        .claim_hooks("n", now, &wanted, 60_000)
        .await
        .expect("claim");
    let of = |org: &str, c: &[DueDelivery]| c.iter().filter(|d| d.org_id.as_str() == org).count();
    assert_eq!(of("h-a", &claimed), 3, "A gets its few");
    assert_eq!(of("h-b", &claimed), 1, "B's hook is not behind A's backlog");

    // Skipped organizations are left alone; the others are claimed.
    let more = store
        .publish(
            &oid("h-b"),
            {
                let mut b = route(store, "h-b", vec![sample_event("b-2", "T", "1")])
                    .await
                    .expect("route");
                for e in &mut b.events {
                    e.claim = vec![false; e.targets.len()];
                }
                b
            },
            claim("n"),
        )
        .await;
    more.expect("publish");
    let wanted = HookClaim {
        limit: 10,
        per_org: 3,
        skip: vec![oid("h-a")],
    };
    let claimed = store
        .claim_hooks("n", now, &wanted, 60_000)
        .await
        .expect("claim");
    assert_eq!(of("h-a", &claimed), 0);
    assert_eq!(of("h-b", &claimed), 1);
}

/// Each lookup, read or write, of something that is not there (or is another organization's)
/// says what it looked for: the edge answers "endpoint not found" from the error alone.
pub async fn every_lookup_names_what_it_did_not_find(store: &dyn Store) {
    use switchyard_core::ids::{DeliveryId, KeyId};
    let org = oid("c-miss");
    store
        .create_org(&Org::named("c-miss", "Miss").expect("valid org"))
        .await
        .expect("org");
    let missing = |r: Result<()>, what: Missing, call: &str| match r {
        Err(StoreError::NotFound(m)) => assert_eq!(m, what, "{call}"),
        other => panic!("{call}: {other:?}"),
    };
    let ep = sample_endpoint("c-miss", "https://miss.example");
    let sub_id = SubscriptionId::generate();
    let other_org = Org::named("c-miss-none", "None").expect("valid org");
    missing(
        store.update_org(&other_org).await.map(drop),
        Missing::Organization,
        "update_org",
    );
    missing(
        store.get_org(&other_org.id).await.map(drop),
        Missing::Organization,
        "get_org",
    );
    missing(
        store.get_endpoint(&org, &ep.id).await.map(drop),
        Missing::Endpoint,
        "get_endpoint",
    );
    missing(
        store.update_endpoint(&ep).await.map(drop),
        Missing::Endpoint,
        "update_endpoint",
    );
    missing(
        store.delete_endpoint(&org, &ep.id).await,
        Missing::Endpoint,
        "delete_endpoint",
    );
    missing(
        store.get_subscription(&org, &sub_id).await.map(drop),
        Missing::Subscription,
        "get_subscription",
    );
    missing(
        store.delete_subscription(&org, &sub_id).await,
        Missing::Subscription,
        "delete_subscription",
    );
    missing(
        store.get_event_type(&org, "no.type").await.map(drop),
        Missing::EventType,
        "get_event_type",
    );
    missing(
        store.delete_api_key(&org, &KeyId::generate()).await,
        Missing::Key,
        "delete_api_key",
    );
    missing(
        store.get_executor(&org, "none").await.map(drop),
        Missing::Executor,
        "get_executor",
    );
    missing(
        store.executor_versions(&org, "none").await.map(drop),
        Missing::Executor,
        "executor_versions",
    );
    missing(
        store.delete_executor(&org, "none").await,
        Missing::Executor,
        "delete_executor",
    );
    missing(
        store.delete_secret(&org, "NONE").await,
        Missing::Secret,
        "delete_secret",
    );
    missing(
        store.get_sync_hook(&org, "none").await.map(drop),
        Missing::Hook,
        "get_sync_hook",
    );
    missing(
        store.delete_sync_hook(&org, "none").await,
        Missing::Hook,
        "delete_sync_hook",
    );
    missing(
        store.get_schedule(&org, "none").await.map(drop),
        Missing::Schedule,
        "get_schedule",
    );
    missing(
        store.delete_schedule(&org, "none").await,
        Missing::Schedule,
        "delete_schedule",
    );
    let event = EventId::generate();
    missing(
        store.get_event(&org, &event).await.map(drop),
        Missing::Event,
        "get_event",
    );
    missing(
        store.trace(&org, &event).await.map(drop),
        Missing::Event,
        "trace",
    );
    missing(
        store
            .get_delivery(&org, &DeliveryId::generate())
            .await
            .map(drop),
        Missing::Delivery,
        "get_delivery",
    );
    missing(
        store.get_run(&org, &RunId::generate()).await.map(drop),
        Missing::Run,
        "get_run",
    );
}
