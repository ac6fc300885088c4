//! Runs the store contract against SQLite, plus what only a file on disk can show.

mod contract;
use contract::oid;
use switchyard_core::ids::EventId;

use std::sync::Arc;
use switchyard_core::Org;
use switchyard_core::crypto::MasterKey;
use switchyard_store::SqliteStore;
use switchyard_store::prelude::*;

/// A fresh store in a directory of its own, removed when the guard drops.
async fn fresh_sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&dir.path().join("db.sqlite"), key).expect("open");
    (store, dir)
}

contract_tests!(fresh_sqlite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_file_reveals_no_secret_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, key.clone()).expect("open");
    store
        .create_org(&Org::named("o", "O").expect("valid org"))
        .await
        .expect("org");
    let ep = contract::sample_endpoint("o", "https://x.example");
    store.create_endpoint(&ep).await.expect("ep");
    let mut ed = contract::sample_endpoint("o", "https://ed.example");
    let now = switchyard_core::time::now_ms();
    let ed25519 = switchyard_core::endpoint::Rotation {
        secret: Some(switchyard_core::signing::SigningSecret::generate_ed25519()),
        scheme: Some(switchyard_core::signing::Scheme::Ed25519),
        // The HMAC key it replaces stops at once.
        old_expires_at: Some(now),
    };
    ed.rotate_secret(ed25519, now).expect("rotated");
    assert_eq!(ed.secrets().len(), 1);
    store.create_endpoint(&ed).await.expect("ed25519 ep");
    let ed_key = ed.secrets()[0].secret.expose();
    store
        .put_secret(&oid("o"), "ERP_PASSWORD", "hunter2-very-secret")
        .await
        .expect("secret");
    store.close();
    drop(store);

    let mut bytes = std::fs::read(&path).expect("db");
    if let Ok(wal) = std::fs::read(dir.path().join("db.sqlite-wal")) {
        bytes.extend(wal);
    }
    let secret = ep.secrets()[0].secret.expose();
    let b64 = secret.trim_start_matches("whsec_");
    for needle in [
        "tok-secret-value",
        secret.as_str(),
        b64,
        "hunter2-very-secret",
        ed_key.as_str(),
        ed_key.trim_start_matches("whsk_"),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in the database file"
        );
    }

    let again = SqliteStore::open(&path, key).expect("reopen");
    assert_eq!(
        again.get_endpoint(&oid("o"), &ep.id).await.expect("get"),
        ep
    );
    assert_eq!(
        again.get_endpoint(&oid("o"), &ed.id).await.expect("get"),
        ed,
        "an Ed25519 key survives the round trip"
    );
    again.close();
    drop(again);
    // A wrong master key reads nothing: it does not even open the database.
    let (wrong, _) = MasterKey::generate();
    assert!(SqliteStore::open(&path, wrong).is_err());
}

/// Organization `o` with one endpoint subscribed to `types`.
async fn subscribed_org(store: &SqliteStore, types: &str) {
    store
        .create_org(&Org::named("o", "O").expect("valid org"))
        .await
        .expect("org");
    let ep = store
        .create_endpoint(&contract::sample_endpoint("o", "https://x.example"))
        .await
        .expect("ep");
    store
        .create_subscription(&contract::sample_subscription("o", &ep.id, &[types]), None)
        .await
        .expect("sub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_are_group_committed_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite"), key).expect("open"));
    subscribed_org(&store, "*").await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            contract::publish(
                &*s,
                "o",
                vec![contract::sample_event(&format!("g{i}"), "T", "1")],
                "n",
            )
            .await
        }));
    }
    for t in tasks {
        let out = t.await.expect("join").expect("publish");
        assert_eq!(out[0].delivery_count, 1);
    }
    assert_eq!(store.pending_count().await.expect("count"), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_an_error_never_a_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, key).expect("open");
    subscribed_org(&store, "T").await;
    assert_eq!(
        store
            .list_subscriptions(&oid("o"))
            .await
            .expect("list")
            .len(),
        1
    );
    // Damage the stored event types behind the store's back.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute("UPDATE subscriptions SET event_types = 'not json'", [])
        .expect("damage");
    drop(raw);
    let err = store.list_subscriptions(&oid("o")).await.unwrap_err();
    assert!(err.to_string().contains("event types"), "{err}");
    // Publishing routes through subscriptions: it refuses rather than silently routing nothing.
    assert!(
        contract::publish(
            &store,
            "o",
            vec![contract::sample_event("x", "T", "1")],
            "n"
        )
        .await
        .is_err()
    );
    // A filter that no longer parses is as corrupt: never a subscription that matches
    // everything, or nothing.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute(
        "UPDATE subscriptions SET event_types = '[\"T\"]', filter = '{\"data.n\": {\"$regex\": 1}}'",
        [],
    )
    .expect("damage");
    drop(raw);
    let err = store.list_subscriptions(&oid("o")).await.unwrap_err();
    assert!(err.to_string().contains("filter"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_table_rebuild_keeps_every_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, key.clone()).expect("open");
    subscribed_org(&store, "*").await;
    for i in 0..20 {
        contract::publish(
            &store,
            "o",
            vec![contract::sample_event(&format!("m{i}"), "T", "1")],
            "n",
        )
        .await
        .expect("publish");
    }
    store.close();
    drop(store);
    // Go back to before migration 5 (undoing what migrations 6 to 16 added), with the
    // deliveries in place, and open again: the table rebuild runs on real rows.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch(
        "DROP INDEX deliveries_order; DROP INDEX deliveries_endpoint_due; DROP INDEX attempts_endpoint;
         DROP TABLE endpoint_health;
         ALTER TABLE endpoints DROP COLUMN ordering_key; ALTER TABLE endpoints DROP COLUMN on_head_failure;
         ALTER TABLE deliveries DROP COLUMN ordering_key; ALTER TABLE deliveries DROP COLUMN order_slot;
         ALTER TABLE attempts DROP COLUMN endpoint_id; ALTER TABLE attempts DROP COLUMN waited;
         ALTER TABLE attempts DROP COLUMN retry_reason; ALTER TABLE attempts DROP COLUMN request_headers;
         ALTER TABLE attempts DROP COLUMN node; DROP TABLE endpoint_leases; DROP TABLE key_check; DROP TABLE node_heartbeats;
         ALTER TABLE orgs DROP COLUMN retention_s; ALTER TABLE orgs DROP COLUMN payload_retention_s;
         ALTER TABLE events DROP COLUMN payload_dropped_at;
         DROP TABLE sync_hooks; ALTER TABLE runs DROP COLUMN hook;
         ALTER TABLE subscriptions DROP COLUMN mode; DROP TABLE schedules;
         DROP INDEX deliveries_hooks_due; ALTER TABLE orgs DROP COLUMN limits;
         ALTER TABLE orgs DROP COLUMN kv_bytes; ALTER TABLE runs DROP COLUMN failure;
         ALTER TABLE executors DROP COLUMN tool; ALTER TABLE executors DROP COLUMN packages;
         ALTER TABLE executors DROP COLUMN packages_state;
         CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
         DELETE FROM refinery_schema_history WHERE version > 4;",
    )
    .expect("rewind");
    drop(raw);
    let store = SqliteStore::open(&path, key).expect("reopen migrates");
    assert_eq!(store.pending_count().await.expect("count"), 20);
    let t = store
        .trace(&oid("o"), &EventId::stored("m7".into()))
        .await
        .expect("trace");
    assert_eq!(t.deliveries.len(), 1);
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let fks: i64 = raw
        .query_row(
            "SELECT count(*) FROM pragma_foreign_key_list('deliveries')",
            [],
            |r| r.get(0),
        )
        .expect("fks");
    assert_eq!(fks, 0, "deliveries no longer reference events");
}

/// A database that the runner before refinery migrated (it counted migrations in
/// `PRAGMA user_version`) opens with everything in it, and only newer migrations run on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_user_version_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let files = [
        include_str!("../migrations/sqlite/V1__init.sql"),
        include_str!("../migrations/sqlite/V2__executors.sql"),
        include_str!("../migrations/sqlite/V3__key_management.sql"),
        include_str!("../migrations/sqlite/V4__routing_version.sql"),
        include_str!("../migrations/sqlite/V5__retention.sql"),
        include_str!("../migrations/sqlite/V6__delivery_policy.sql"),
        include_str!("../migrations/sqlite/V7__org_retention.sql"),
        include_str!("../migrations/sqlite/V8__sync_hooks.sql"),
        include_str!("../migrations/sqlite/V9__sync_subscriptions.sql"),
        include_str!("../migrations/sqlite/V10__schedules.sql"),
    ];
    {
        // The old runner, stopped one migration short of today's schema.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA foreign_keys=ON;")
            .expect("pragma");
        for (i, sql) in files.iter().enumerate() {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .expect("old migration");
        }
        conn.execute(
            "INSERT INTO orgs (id, name, created_at) VALUES ('old', 'Old org', 1)",
            [],
        )
        .expect("an organization of the old database");
    }
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, key.clone()).expect("open the old database");
    assert_eq!(
        store.get_org(&oid("old")).await.expect("org").name,
        "Old org"
    );
    let ep = contract::sample_endpoint("old", "https://x.example");
    store
        .create_endpoint(&ep)
        .await
        .expect("the newest schema is in place");
    store.close();
    drop(store);
    // Opened again: nothing runs twice.
    let again = SqliteStore::open(&path, key).expect("reopen");
    assert_eq!(
        again.list_endpoints(&oid("old")).await.expect("list").len(),
        1
    );
    let conn = rusqlite::Connection::open(&path).expect("open");
    let applied: i64 = conn
        .query_row("SELECT count(*) FROM refinery_schema_history", [], |r| {
            r.get(0)
        })
        .expect("history");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("the migrations")
        .count();
    assert_eq!(applied as usize, files, "each migration ran once");
}

#[tokio::test]
async fn a_database_opened_with_another_master_key_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k.db");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, key.clone()).expect("open");
    store.close();
    drop(store);
    let (other, _) = MasterKey::generate();
    let err = SqliteStore::open(&path, other)
        .err()
        .expect("another key is refused")
        .to_string();
    assert!(err.contains("same SWITCHYARD_MASTER_KEY"), "{err}");
    // The right key still opens it.
    SqliteStore::open(&path, key).expect("reopen").close();
}
