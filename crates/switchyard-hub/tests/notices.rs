//! Two hubs on one PostgreSQL database (as two nodes are): what one changes, the other's caches
//! drop at its notice — a revoked key is refused there, a new subscription routes there, a
//! schema tightened there refuses an event — without waiting for a cache to expire.
//!
//! The server is `SWITCHYARD_TEST_POSTGRES` (default `host=127.0.0.1 port=5432 user=postgres
//! dbname=postgres`). It must be up: this test fails when it is not, it never skips.

use std::sync::Arc;
use std::time::Duration;
use switchyard_core::crypto::{MasterKey, hash_api_key};
use switchyard_core::egress::EgressPolicy;
use switchyard_core::ids::OrgId;
use switchyard_core::subscription::SubscriptionDefinition;
use switchyard_core::time::now_ms;
use switchyard_core::*;
use switchyard_hub::{Hub, HubSettings};
use switchyard_store::{PgOptions, PgStore};

mod common;
use common::{MINUTE, event, until};

fn server() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

/// A database of its own on the test server, dropped when the test ends.
struct FreshDb {
    name: String,
}

impl FreshDb {
    async fn create() -> FreshDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!("switchyard_hub_test_{}_{nanos}", std::process::id());
        run_admin(&format!("CREATE DATABASE {name}")).await;
        FreshDb { name }
    }
}

async fn run_admin(sql: &str) {
    let conn = server();
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at `{conn}` is not reachable: {e}"));
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
}

async fn node(db: &FreshDb, key: &MasterKey, name: &str) -> Hub {
    let store = PgStore::connect(
        &format!("{} dbname={}", server(), db.name),
        key.clone(),
        &PgOptions::default(),
    )
    .await
    .expect("store");
    Hub::start(Arc::new(store), HubSettings::defaults(name))
        .await
        .expect("hub")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_changes_the_other_sees_at_its_notice() {
    let db = FreshDb::create().await;
    let (key, _) = MasterKey::generate();
    let (a, b) = (
        node(&db, &key, "node-a").await,
        node(&db, &key, "node-b").await,
    );
    let org: OrgId = a
        .create_org(&Org::named("n", "N").expect("org"))
        .await
        .expect("org")
        .id;

    // A key made on A works on B, and B caches it; revoked on A, B refuses it.
    let hash = hash_api_key("sy_notice_test_key_0123456789abcdef");
    let id = a
        .create_api_key(Some(&org), Role::Admin, &hash, "sy_notic")
        .await
        .expect("key");
    until("B knows the key", MINUTE, || async {
        b.principal_of(&hash).await.expect("lookup").is_some()
    })
    .await;
    a.revoke_api_key(&org, &id).await.expect("revoke");
    // Well within the key cache's 60 s: only A's notice can have told B.
    until(
        "B refuses the revoked key",
        Duration::from_secs(20),
        || async { b.principal_of(&hash).await.expect("lookup").is_none() },
    )
    .await;

    // B builds its route table for `n` (nothing routes), then A subscribes an endpoint: B's
    // next publish routes with the new table.
    let published = b
        .publish(
            &org,
            vec![event("before", "ticket.created", serde_json::json!({}))],
        )
        .await
        .expect("publish");
    assert_eq!(published[0].delivery_count, 0);
    let ep = common::endpoint_to_nowhere(&org);
    let ep = a.create_endpoint(&ep).await.expect("endpoint");
    let def = SubscriptionDefinition {
        event_types: vec!["ticket.*".into()],
        endpoint_id: Some(ep.id.to_string()),
        ..Default::default()
    };
    let (sub, _) =
        Subscription::define(&org, def, now_ms(), &EgressPolicy::default()).expect("subscription");
    a.create_subscription(&sub, None).await.expect("subscribe");
    let mut n = 0;
    until("B routes with A's subscription", MINUTE, || {
        n += 1;
        let (b, org) = (b.clone(), org.clone());
        async move {
            let e = event(
                &format!("after-{n}"),
                "ticket.created",
                serde_json::json!({}),
            );
            b.publish(&org, vec![e]).await.expect("publish")[0].delivery_count == 1
        }
    })
    .await;

    // B checks events of `ticket.updated` against its cached (absent) schema; A gives the
    // type a schema: B refuses what it now forbids.
    let loose = event("loose", "ticket.updated", serde_json::json!({"id": "x"}));
    b.publish(&org, vec![loose]).await.expect("no schema yet");
    let strict = EventType {
        name: "ticket.updated".into(),
        description: String::new(),
        entity_type: None,
        schema: Some(serde_json::json!({
            "type": "object", "properties": {"id": {"type": "integer"}}
        })),
        updated_at: now_ms(),
    };
    a.put_event_type(&org, &strict).await.expect("schema");
    let mut n = 0;
    until("B enforces A's schema", MINUTE, || {
        n += 1;
        let (b, org) = (b.clone(), org.clone());
        async move {
            let e = event(
                &format!("strict-{n}"),
                "ticket.updated",
                serde_json::json!({"id": "x"}),
            );
            b.publish(&org, vec![e]).await.is_err()
        }
    })
    .await;

    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    run_admin(&format!("DROP DATABASE {} WITH (FORCE)", db.name)).await;
}
