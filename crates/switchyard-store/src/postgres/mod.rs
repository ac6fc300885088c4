//! The PostgreSQL backend: every role of [`crate::Store`] on a pool of connections, for one node
//! or several sharing one database.
//!
//! Each call takes a connection from the pool and runs its statements (prepared once per
//! connection) in a transaction of its own where it writes more than one row. Concurrent
//! publishes commit in separate transactions and the server flushes their commits to disk
//! together, the way SQLite's writer thread groups them. What SQLite gets from having one writer,
//! PostgreSQL gets from locks taken in the transaction: a publish holds its organization's row
//! `FOR SHARE` while it checks the routing version (a catalog change takes it for update), an
//! ordering key is serialized on a transaction-scoped advisory lock, and claims take rows
//! `FOR UPDATE SKIP LOCKED` so that nodes claiming at once never take the same delivery.
//!
//! Files by concern: `db` (the connection handle, listings' filters and row decoding), then one
//! file per role like the SQLite backend's: `catalog`, `endpoints`, `executors`, `schedules`,
//! `events` (publish, grouped by the publish writers, reads, retention), `queue` (claims,
//! retry, replay and new deliveries), `record` (recording attempts and what they change),
//! `leases` (endpoint leases and heartbeats), `notify` (notices between nodes) and `kv`
//! (key-value storage and the run log).

mod catalog;
mod db;
mod endpoints;
mod events;
mod executors;
mod kv;
mod leases;
mod notify;
mod queue;
mod record;
mod schedules;

use crate::common::*;
use crate::*;
use db::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use switchyard_core::crypto::MasterKey;
use switchyard_core::time::now_ms;
use tokio_postgres::Row;

/// The PostgreSQL schema's migrations (`migrations/postgres/V{n}__{name}.sql`).
mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How a node uses the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections this node keeps open at most.
    pub pool_size: usize,
    /// The longest any statement may run before the server cancels it, in milliseconds
    /// (0: no limit).
    pub statement_timeout_ms: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            statement_timeout_ms: 30_000,
        }
    }
}

/// A PostgreSQL database opened for Switchyard. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: deadpool_postgres::Pool,
    /// How to connect: the listening connection is one of its own, outside the pool.
    config: tokio_postgres::Config,
    key: MasterKey,
    /// Set while writes fail because the server's disk is full; cleared by the next write.
    full: AtomicBool,
    /// Events handed out with deliveries, by `seq`, as long as any delivery in memory holds
    /// them: a thousand endpoints pulling the same event share one copy of it.
    events: Mutex<HashMap<i64, std::sync::Weak<Event>>>,
    /// Publish calls, for the publish writers; taken by `close` (the writers then end).
    publishes: Mutex<Option<tokio::sync::mpsc::UnboundedSender<events::PublishJob>>>,
}

impl PgStore {
    /// Connects to the database `url` (a `postgres://` URL or a libpq `key=value` string),
    /// brings its schema up to date and keeps a pool of `options.pool_size` connections.
    pub async fn connect(url: &str, key: MasterKey, options: &PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::caused_by("invalid PostgreSQL connection string", e))?;
        if options.statement_timeout_ms > 0 {
            config.options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                options.statement_timeout_ms, options.statement_timeout_ms
            ));
        }
        config.application_name("switchyard");
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|e| StoreError::caused_by("cannot make the connection pool", e))?;
        let (publishes, queue) = tokio::sync::mpsc::unbounded_channel();
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                config,
                key,
                full: AtomicBool::new(false),
                events: Mutex::new(HashMap::new()),
                publishes: Mutex::new(Some(publishes)),
            }),
        };
        let queue: events::PublishQueue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..events::PUBLISH_WRITERS {
            tokio::spawn(PgStore::publish_writer(
                Arc::downgrade(&store.inner),
                queue.clone(),
            ));
        }
        let mut c = store.conn().await?;
        let client: &mut tokio_postgres::Client = &mut c;
        migrate(client).await?;
        let db = Db::C(&c);
        db.exec(
            "INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&key_check_seal(&store.inner.key)],
        )
        .await?;
        let sealed: Vec<u8> = get(
            &db.row("SELECT sealed FROM key_check WHERE id = 1", &[])
                .await?,
            0,
        )?;
        key_check_verify(&store.inner.key, &sealed)?;
        Ok(store)
    }

    /// Closes every pooled connection; calls after it fail with `Closed`.
    pub fn close(&self) {
        if let Ok(mut p) = self.inner.publishes.lock() {
            p.take();
        }
        self.inner.pool.close();
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        use deadpool_postgres::PoolError;
        self.inner.pool.get().await.map_err(|e| match e {
            PoolError::Closed => StoreError::Closed,
            PoolError::Backend(e) => pg_err(e),
            other => StoreError::caused_by("no database connection", other),
        })
    }

    /// Notes whether a write found the disk full. Only [`Store::probe_write`] says it is not
    /// any more: on a full disk small writes still fit in pages their tables have, while a
    /// publish that needs new space fails.
    fn note<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(StoreError::StorageFull(_)) = &r {
            self.inner.full.store(true, Ordering::Relaxed);
        }
        r
    }

    /// The events of `seqs`, shared with every delivery in memory that holds them already; one
    /// query loads the rest.
    async fn shared_events(&self, db: Db<'_>, seqs: &[i64]) -> Result<HashMap<i64, Arc<Event>>> {
        let mut out = HashMap::with_capacity(seqs.len());
        let mut missing = Vec::new();
        {
            let map = self.inner.events.lock().map_err(|_| StoreError::Closed)?;
            for seq in seqs {
                match map.get(seq).and_then(std::sync::Weak::upgrade) {
                    Some(e) => {
                        out.insert(*seq, e);
                    }
                    None => missing.push(*seq),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        missing.sort_unstable();
        missing.dedup();
        let rows = db
            .rows(
                &format!("SELECT {EVENT_COLS} FROM events WHERE seq = ANY($1)"),
                &[&missing],
            )
            .await?;
        let mut map = self.inner.events.lock().map_err(|_| StoreError::Closed)?;
        if map.len() >= 4096 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        for r in rows {
            let e = Arc::new(event_from_row(&r)?);
            map.insert(e.seq, Arc::downgrade(&e));
            out.insert(e.seq, e);
        }
        Ok(out)
    }

    /// Lets later claims share `event`.
    fn remember(&self, event: &Arc<Event>) {
        if let Ok(mut map) = self.inner.events.lock() {
            map.insert(event.seq, Arc::downgrade(event));
        }
    }
}

/// Brings the database `client` is connected to up to the current schema: runs the migrations
/// it has not run yet (refinery's history table says which), each in its own transaction.
/// Safe to run from several nodes at once: PostgreSQL serializes them on an advisory lock,
/// so a node that starts second finds the migrations done.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    // Any 64-bit constant of ours: the lock only serializes Switchyard's own migrations.
    const MIGRATION_LOCK: i64 = 0x5377_6974_6368_7964;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    let ran = embedded::migrations::runner()
        .run_async(client)
        .await
        .map_err(|e| StoreError::caused_by("migration failed", e));
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err);
    ran?;
    unlocked?;
    Ok(())
}

/// A PostgreSQL error as the store reports it, with the server's message.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(db.message().to_string())
        }
        Some(db) if *db.code() == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::InvalidReference(db.message().to_string())
        }
        Some(db) if *db.code() == SqlState::DISK_FULL => StoreError::StorageFull(
            "the disk holding the PostgreSQL database is full; nothing of this write was stored"
                .into(),
        ),
        // The server's error (its code, message, detail) is the source.
        Some(db) => StoreError::caused_by(format!("SQLSTATE {}", db.code().code()), db.clone()),
        // The cause (refused, timed out, name not resolved) is the error's own source.
        None => StoreError::caused_by("PostgreSQL", e),
    }
}

/// Whether a transaction failed only because it ran into another (a deadlock the server broke,
/// or a serialization failure): run again, it succeeds.
fn transient(e: &StoreError) -> bool {
    use tokio_postgres::error::{DbError, SqlState};
    let StoreError::Database {
        source: Some(source),
        ..
    } = e
    else {
        return false;
    };
    source.downcast_ref::<DbError>().is_some_and(|db| {
        *db.code() == SqlState::T_R_DEADLOCK_DETECTED
            || *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Runs a transaction `f` again, up to three times, while it fails transiently.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if transient(&e) && tries < 3 => {
                tries += 1;
                tracing::debug!(error = %e, tries, "a transaction ran into another; running it again");
            }
            other => return other,
        }
    }
}

/// `NotFound` when a scoped UPDATE or DELETE touched no row (wrong id, or another org's).
fn found(rows: u64) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound(Missing::Row))
    } else {
        Ok(())
    }
}

/// Bumps an organization's routing version: called in the transaction of every change that
/// alters where its events go, so a publish routed before it is refused (the row lock it takes
/// waits for publishes holding the row `FOR SHARE`).
async fn bump_routing(db: Db<'_>, org: &str) -> Result<()> {
    db.exec(
        "UPDATE orgs SET routing_version = routing_version + 1 WHERE id = $1",
        &[&org],
    )
    .await?;
    Ok(())
}

/// A count or a limit as PostgreSQL's BIGINT.
fn big(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    fn storage_full(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }

    async fn probe_write(&self) -> Result<()> {
        let r = async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(pg_err)?;
            let db = Db::T(&tx);
            db.exec(
                "INSERT INTO write_probe (id, at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                &[&now_ms()],
            )
            .await?;
            // That row is rewritten in a page it has already: it succeeds on a full disk. What
            // tells is new space: a temporary table (in the database's tablespace) grown by
            // about 1 MB (several of the largest events), rolled back with the rest. It runs
            // only while writes are failing for lack of space.
            tx.batch_execute(
                "CREATE TEMP TABLE space_probe (x text) ON COMMIT DROP;
                 INSERT INTO space_probe SELECT md5(random()::text) FROM generate_series(1, 16000)",
            )
            .await
            .map_err(pg_err)?;
            tx.rollback().await.map_err(pg_err)?;
            Ok(())
        }
        .await;
        if r.is_ok() {
            self.inner.full.store(false, Ordering::Relaxed);
        }
        self.note(r)
    }

    async fn reclaim_space(&self) -> Result<()> {
        // Autovacuum makes the space of deleted rows reusable; giving it back to the file
        // system (VACUUM FULL) would lock the tables, which a hub never does on its own.
        Ok(())
    }

    async fn notify(&self, notice: &Notice) -> Result<()> {
        let c = self.conn().await?;
        notify::send(Db::C(&c), notice).await
    }

    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notice>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(notify::listen(self.inner.config.clone(), tx));
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    //! The server's errors as the store keeps them, against the real server
    //! (`SWITCHYARD_TEST_POSTGRES`, as the backend's tests): never skipped.

    use super::*;

    async fn error_of(sql: &str) -> StoreError {
        let conn = std::env::var("SWITCHYARD_TEST_POSTGRES")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into());
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at `{conn}` is not reachable: {e}"));
        tokio::spawn(connection);
        let e = client
            .batch_execute(sql)
            .await
            .expect_err("the statement fails");
        pg_err(e)
    }

    #[tokio::test]
    async fn a_failure_keeps_the_servers_error_as_its_source() {
        let e =
            error_of("DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '40001'; END $$").await;
        assert!(transient(&e), "a serialization failure runs again: {e}");
        let source = std::error::Error::source(&e).expect("a source");
        let db = source
            .downcast_ref::<tokio_postgres::error::DbError>()
            .expect("the server's error");
        assert_eq!(db.message(), "boom");
        assert!(e.to_string().contains("SQLSTATE 40001") && e.to_string().contains("boom"));

        let e = error_of("SELECT 1/0").await;
        assert!(!transient(&e), "a division by zero is not run again: {e}");
        assert!(e.to_string().contains("22012"), "{e}");
    }
}
