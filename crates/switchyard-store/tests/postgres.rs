//! The PostgreSQL backend against the real server on this machine: the store contract (each
//! check in a fresh database), and the schema: its migrations run on a fresh database, run again
//! as a no-op, run from two connections at once, and give the same tables, columns and indexes as
//! SQLite's.
//!
//! The server is `SWITCHYARD_TEST_POSTGRES` (a libpq connection string; default
//! `host=127.0.0.1 port=5432 user=postgres dbname=postgres`). It must be up: these tests fail
//! when it is not, they never skip.

mod contract;

use std::collections::BTreeSet;
use switchyard_core::crypto::MasterKey;
use switchyard_store::{PgOptions, PgStore, SqliteStore};
use tokio_postgres::{Client, NoTls};

fn server() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

async fn connect(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at `{conn}` is not reachable: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own on the server, dropped when the test is done with it.
struct FreshDb {
    admin: Client,
    name: String,
}

impl FreshDb {
    async fn create() -> FreshDb {
        let admin = connect(&server()).await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!("switchyard_test_{}_{nanos}", std::process::id());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        FreshDb { admin, name }
    }
    fn conn(&self) -> String {
        format!("{} dbname={}", server(), self.name)
    }
    async fn drop_db(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop database");
    }
}

/// Drops its database when the test is done (on a thread of its own: the test's runtime is
/// going away).
struct DropOnExit(Option<FreshDb>);

impl Drop for DropOnExit {
    fn drop(&mut self) {
        let Some(db) = self.0.take() else { return };
        let name = db.name.clone();
        drop(db);
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = connect(&server()).await;
                admin
                    .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                    .await
                    .expect("drop database");
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database");
        }
    }
}

/// A store on a database of its own, migrated.
async fn fresh_pg() -> (PgStore, DropOnExit) {
    let db = FreshDb::create().await;
    let (key, _) = MasterKey::generate();
    let store = PgStore::connect(&db.conn(), key, &PgOptions::default())
        .await
        .expect("open the PostgreSQL store");
    (store, DropOnExit(Some(db)))
}

contract_tests!(fresh_pg);

/// `(table, column, type class, not null)` of every table of ours.
type Columns = BTreeSet<(String, String, &'static str, bool)>;

fn class(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "boolean" => "integer",
        "text" | "character varying" => "text",
        "blob" | "bytea" => "bytes",
        "real" | "double precision" => "real",
        other => panic!("a column type the schemas should not use: {other}"),
    }
}

async fn postgres_schema(client: &Client) -> (Columns, BTreeSet<String>) {
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'refinery_schema_history'",
            &[],
        )
        .await
        .expect("columns");
    let columns = rows
        .iter()
        .map(|r| {
            let ty: String = r.get(2);
            let nullable: String = r.get(3);
            (r.get(0), r.get(1), class(&ty), nullable == "NO")
        })
        .collect();
    let rows = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'
             AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
            &[],
        )
        .await
        .expect("indexes");
    let indexes = rows.iter().map(|r| r.get(0)).collect();
    (columns, indexes)
}

fn sqlite_schema(path: &std::path::Path) -> (Columns, BTreeSet<String>) {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut columns = Columns::new();
    let mut tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT IN ('sqlite_sequence', 'refinery_schema_history')",
        )
        .expect("tables");
    let names: Vec<String> = tables
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    for table in names {
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .expect("table info");
        let cols: Vec<(String, String, bool, i64)> = info
            .query_map([&table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .expect("table info")
            .collect::<Result<_, _>>()
            .expect("table info");
        for (name, ty, notnull, pk) in cols {
            columns.insert((table.clone(), name, class(&ty), notnull || pk > 0));
        }
    }
    let mut idx = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index'
             AND name NOT LIKE 'sqlite_autoindex_%'",
        )
        .expect("indexes");
    let indexes = idx
        .query_map([], |r| r.get(0))
        .expect("indexes")
        .collect::<Result<_, _>>()
        .expect("indexes");
    (columns, indexes)
}

#[tokio::test]
async fn the_postgres_schema_migrates_once_and_matches_sqlite() {
    let db = FreshDb::create().await;
    let mut client = connect(&db.conn()).await;
    switchyard_store::postgres::migrate(&mut client)
        .await
        .expect("migrate a fresh database");
    let first = postgres_schema(&client).await;
    switchyard_store::postgres::migrate(&mut client)
        .await
        .expect("migrate again");
    assert_eq!(
        postgres_schema(&client).await,
        first,
        "a second run changed the schema"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let (key, _) = MasterKey::generate();
    SqliteStore::open(&path, key).expect("sqlite").close();
    let (sqlite_columns, sqlite_indexes) = sqlite_schema(&path);
    let (pg_columns, pg_indexes) = first;
    let only_sqlite: Vec<_> = sqlite_columns.difference(&pg_columns).collect();
    let only_pg: Vec<_> = pg_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "columns only in SQLite: {only_sqlite:?}; only in PostgreSQL: {only_pg:?}"
    );
    assert_eq!(sqlite_indexes, pg_indexes, "the two schemas' indexes");
    drop(client);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let db = FreshDb::create().await;
    let mut a = connect(&db.conn()).await;
    let mut b = connect(&db.conn()).await;
    let (ra, rb) = tokio::join!(
        switchyard_store::postgres::migrate(&mut a),
        switchyard_store::postgres::migrate(&mut b)
    );
    ra.expect("first node");
    rb.expect("second node");
    let applied: i64 = a
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .expect("history")
        .get(0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("the migrations")
        .count();
    assert_eq!(applied as usize, files, "each migration ran once");
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_hear_each_others_notices_at_commit_and_never_of_a_rollback() {
    use contract::*;
    use switchyard_store::Notice;
    use switchyard_store::prelude::*;
    let db = FreshDb::create().await;
    let (key, _) = MasterKey::generate();
    let node = || async {
        PgStore::connect(&db.conn(), key.clone(), &PgOptions::default())
            .await
            .expect("open the PostgreSQL store")
    };
    // Two nodes on one database, each with its own pool; B listens on a connection of its own.
    let (a, b) = (node().await, node().await);
    let mut heard = b.listen().expect("PostgreSQL listens");
    // Listening starts on its own connection; once in place it says what it may have missed.
    assert_eq!(next_notice(&mut heard).await, Notice::Lost);
    // A notice sent by A reaches B.
    a.notify(&Notice::Key {
        key_id: "key_1".into(),
    })
    .await
    .expect("notify");
    assert_eq!(
        next_notice(&mut heard).await,
        Notice::Key {
            key_id: "key_1".into()
        }
    );

    // A publish on A that leaves deliveries due (it claims none) tells B which endpoints.
    a.create_org(&switchyard_core::Org::named("n-1", "N").expect("org"))
        .await
        .expect("org");
    let ep = a
        .create_endpoint(&sample_endpoint("n-1", "http://127.0.0.1:9/n"))
        .await
        .expect("ep");
    a.create_subscription(&sample_subscription("n-1", &ep.id, &["*"]), None)
        .await
        .expect("sub");
    let mut batch = route(&a, "n-1", vec![sample_event("n1", "X", "1")])
        .await
        .expect("route");
    batch.events[0].claim = vec![false];
    a.publish(&oid("n-1"), batch, contract::claim("api"))
        .await
        .expect("publish");
    assert_eq!(
        next_notice(&mut heard).await,
        Notice::Due {
            org: "n-1".into(),
            endpoints: vec![ep.id.to_string()],
            hooks: false
        }
    );

    // A publish that fails (an idempotency conflict rolls its transaction back) tells nobody:
    // the next notice B hears is the one sent after it.
    let mut conflicting = sample_event("n1", "X", "1");
    conflicting.data = serde_json::json!({"other": true});
    let mut batch = route(&a, "n-1", vec![conflicting]).await.expect("route");
    batch.events[0].claim = vec![false];
    assert!(
        a.publish(&oid("n-1"), batch, contract::claim("api"))
            .await
            .is_err()
    );
    // A notice naming more endpoints than one NOTIFY holds arrives whole, in parts.
    let many: Vec<String> = (0..600).map(|i| format!("ep_{i:032x}")).collect();
    a.notify(&Notice::Due {
        org: "n-1".into(),
        endpoints: many.clone(),
        hooks: true,
    })
    .await
    .expect("notify");
    let mut got = Vec::new();
    while got.len() < many.len() {
        match next_notice(&mut heard).await {
            Notice::Due { endpoints, .. } => got.extend(endpoints),
            other => panic!("expected the parts of the long notice first, got {other:?}"),
        }
    }
    assert_eq!(got, many);
    drop(heard);
    a.close();
    b.close();
    db.drop_db().await;
}

/// The next notice, within 30 s (a generous bound: a notice takes milliseconds).
async fn next_notice(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<switchyard_store::Notice>,
) -> switchyard_store::Notice {
    tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .expect("a notice within 30 s")
        .expect("listening")
}

#[tokio::test]
async fn a_node_with_another_master_key_is_refused_at_start() {
    let db = FreshDb::create().await;
    let (key, _) = MasterKey::generate();
    let first = PgStore::connect(&db.conn(), key.clone(), &PgOptions::default())
        .await
        .expect("first node");
    let (other, _) = MasterKey::generate();
    let err = PgStore::connect(&db.conn(), other, &PgOptions::default())
        .await
        .err()
        .expect("a node with another key is refused")
        .to_string();
    assert!(err.contains("same SWITCHYARD_MASTER_KEY"), "{err}");
    let second = PgStore::connect(&db.conn(), key, &PgOptions::default())
        .await
        .expect("a node with the same key");
    first.close();
    second.close();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_transactions_and_one_bad_call_fails_alone() {
    use contract::*;
    use switchyard_store::prelude::*;
    let (store, _guard) = fresh_pg().await;
    let store = std::sync::Arc::new(store);
    for org in ["g-1", "g-2"] {
        store
            .create_org(&switchyard_core::Org::named(org, "G").expect("org"))
            .await
            .expect("org");
        let ep = store
            .create_endpoint(&sample_endpoint(org, "https://x.example"))
            .await
            .expect("ep");
        store
            .create_subscription(&sample_subscription(org, &ep.id, &["*"]), None)
            .await
            .expect("sub");
    }
    publish(&*store, "g-1", vec![sample_event("taken", "T", "1")], "n")
        .await
        .expect("first");
    // 400 calls at once over two organizations, among them one that reuses an id with other
    // content (refused) and one that repeats an id exactly (a duplicate).
    let mut tasks = Vec::new();
    for i in 0..400 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let org = if i % 2 == 0 { "g-1" } else { "g-2" };
            let event = match i {
                100 => sample_event("taken", "T", "other entity"),
                200 => sample_event("taken", "T", "1"),
                _ => sample_event(&format!("c{i}"), "T", "1"),
            };
            (i, publish(&*s, org, vec![event], "n").await)
        }));
    }
    for t in tasks {
        let (i, out) = t.await.expect("join");
        match i {
            100 => {
                let err = out
                    .expect_err("an id reused with other content")
                    .to_string();
                assert!(err.contains("taken"), "{err}");
            }
            200 => assert!(out.expect("a repeat")[0].duplicate),
            _ => {
                let out = out.expect("publish");
                assert!(!out[0].duplicate);
                assert_eq!(out[0].delivery_count, 1);
            }
        }
    }
    // 398 new events and the first: each once, each with its delivery.
    assert_eq!(store.pending_count().await.expect("count"), 399);
}
