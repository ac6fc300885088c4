//! The SQLite backend: one writer thread with group commit, a small pool of reader connections.
//!
//! Every write is a job sent to the writer thread. The writer takes all jobs waiting (up to
//! [`MAX_GROUP`]), runs each inside its own savepoint of one transaction and commits once, with
//! `synchronous=FULL` so the commit is on disk (fsync) before any job's caller hears back. One
//! fsync thus covers many publish requests: that is what lets durable ingest run at thousands of
//! events per second on a disk that does ~1.5k fsyncs/s. A failed job rolls back to its
//! savepoint without disturbing the others in the group. A heavy job (a batch's events: many
//! statements) leads a group of its own, first and without a savepoint — held over thousands
//! of statements, a savepoint makes each statement's end walk the statement journal — and
//! its failure rolls back a transaction that holds nothing else yet.
//!
//! Files by concern: `writer` (the group-commit thread and how jobs reach it), `rows` (decoding
//! stored rows, strictly), then one file per role: `catalog` (organizations, keys, event types),
//! `endpoints` (endpoints, subscriptions, routing), `executors` (executors and secrets),
//! `events` (the event log), `queue` (the delivery queue), `kv` and `runs`.

mod catalog;
mod endpoints;
mod events;
mod executors;
mod kv;
mod leases;
mod queue;
mod rows;
mod runs;
mod schedules;
mod writer;

use crate::common::*;
use crate::*;
use rows::*;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use switchyard_core::Target;
use switchyard_core::crypto::MasterKey;
use switchyard_core::executor::{Executor, Run};
use switchyard_core::time::now_ms;
use writer::{Job, WriterCtx, writer_loop};

/// Free space the database's filesystem must have again before a store that ran out of space
/// counts as writable (ready) again.
const FULL_RESERVE_BYTES: u64 = 4 * 1024 * 1024;
/// Most jobs committed together in one transaction.
const MAX_GROUP: usize = 2000;
/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Reads running at once, and reader connections kept for reuse.
const MAX_READERS: usize = 8;

/// The SQLite schema's migrations (`migrations/sqlite/V{n}__{name}.sql`), run by refinery, the
/// runner the PostgreSQL schema uses too.
mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// A SQLite database file opened for Switchyard. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Start: made by `open`. Run: feeds the writer thread. Shutdown: `close` drops it, and the
    /// writer finishes every job it holds and exits.
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    /// Start: made by `open`. Shutdown: `close` drops it, which stops the checkpoint thread.
    checkpoint_stop: Mutex<Option<mpsc::Sender<()>>>,
    /// The writer and checkpoint threads; `close` joins them.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Run: reader connections kept for reuse.
    readers: Mutex<Vec<Connection>>,
    /// Run: one permit per read running at once. Without it a burst of reads (a thousand
    /// endpoint workers starting together) opened a connection and a blocking thread each.
    reading: tokio::sync::Semaphore,
    path: PathBuf,
    key: MasterKey,
    /// Run: set while writes fail for lack of space; cleared by the next write that commits.
    full: AtomicBool,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::caused_by("SQLite", e)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(Missing::Row),
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::StorageFull(
                    "the disk holding the database is full; nothing of this write was stored"
                        .into(),
                )
            }
            rusqlite::Error::SqliteFailure(f, ref msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let m = msg.clone().unwrap_or_default();
                if m.contains("UNIQUE") || m.contains("PRIMARY KEY") {
                    StoreError::Conflict(m)
                } else {
                    StoreError::InvalidReference(m)
                }
            }
            other => db_err(other),
        }
    }
}

/// Page cache of the writer connection, in KiB: it holds the B-tree pages every commit touches.
const WRITER_CACHE_KIB: u32 = 16_000;
/// Page cache of each reader and of the checkpointer, in KiB: their reads are point lookups
/// and short scans that the operating system's page cache serves as well; a large cache per
/// pooled connection would multiply the hub's memory by the pool size.
const READER_CACHE_KIB: u32 = 2_000;
/// What SQLite may allocate in this process, all connections together, before each page cache
/// reuses its least recently used page instead of growing (`PRAGMA soft_heap_limit`). Without
/// it the writer's cache, the readers' caches and the statement journals of a burst add up to
/// about 40 MB that stay held; with it they stay near this figure at no cost in throughput
/// (BENCHMARKS.md, "Many endpoints: SQLite's heap"; 8 MB rather than 16: "SQLite's heap, halved").
const SOFT_HEAP_LIMIT_BYTES: i64 = 8 * 1024 * 1024;

fn open_conn(path: &Path, cache_kib: u32) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-{cache_kib}; PRAGMA temp_store=MEMORY;
         PRAGMA journal_size_limit=67108864; PRAGMA soft_heap_limit={SOFT_HEAP_LIMIT_BYTES};"
    ))
    .map_err(db_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    Ok(conn)
}

/// How long a connection waits for a lock another holds before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, runs pending migrations and starts the
    /// writer thread.
    pub fn open(path: &Path, key: MasterKey) -> Result<SqliteStore> {
        SqliteStore::open_with(path, key, CHECKPOINT_EVERY, writer::WAL_RESTART_FRAMES)
    }

    /// [`SqliteStore::open`], checkpointing every `checkpoint_every` and restarting the WAL once
    /// it holds `wal_restart_frames`.
    fn open_with(
        path: &Path,
        key: MasterKey,
        checkpoint_every: std::time::Duration,
        wal_restart_frames: i64,
    ) -> Result<SqliteStore> {
        let mut conn = open_conn(path, WRITER_CACHE_KIB)?;
        // Owner-only, before the first write creates the WAL (SQLite gives the WAL and shared
        // memory files the database file's permissions).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::caused_by(format!("cannot restrict {}", path.display()), e),
            )?;
        }
        // A new database gives pages freed by retention back in steps (`reclaim_space`); it can
        // only be chosen before the first table exists.
        let fresh: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(db_err)?;
        if fresh == 0 {
            conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL;")
                .map_err(db_err)?;
        }
        migrate(&mut conn)?;
        conn.execute(
            "INSERT INTO key_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
            [key_check_seal(&key)],
        )
        .map_err(db_err)?;
        let sealed: Vec<u8> = conn
            .query_row("SELECT sealed FROM key_check WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        key_check_verify(&key, &sealed)?;
        // Checkpoints run on their own thread so that copying the WAL into the database never
        // stalls a commit (and the publishes waiting on it).
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
            .map_err(db_err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let wal_long = Arc::new(AtomicBool::new(false));
        let ctx = WriterCtx {
            conn,
            key: key.clone(),
            events: std::collections::HashMap::new(),
            wal_long: wal_long.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(ctx, rx))
            .map_err(|e| StoreError::caused_by("cannot start writer thread", e))?;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let checkpoint_conn = open_conn(path, READER_CACHE_KIB)?;
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                checkpoint_loop(
                    checkpoint_conn,
                    stop_rx,
                    checkpoint_every,
                    wal_restart_frames,
                    wal_long,
                )
            })
            .map_err(|e| StoreError::caused_by("cannot start checkpoint thread", e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                checkpoint_stop: Mutex::new(Some(stop_tx)),
                threads: Mutex::new(vec![writer, checkpointer]),
                readers: Mutex::new(Vec::new()),
                reading: tokio::sync::Semaphore::new(MAX_READERS),
                path: path.to_path_buf(),
                key,
                full: AtomicBool::new(false),
            }),
        })
    }

    /// Stops accepting writes and waits until the writer has committed and answered every job
    /// it held and both threads have exited. Writes after this fail with `Closed`. It blocks:
    /// from async code, call it on a blocking thread.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut c) = self.inner.checkpoint_stop.lock() {
            c.take();
        }
        let threads = match self.inner.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a store thread panicked");
            }
        }
    }

    /// Bytes free to unprivileged writers on the database's filesystem, if it can be asked.
    fn free_bytes(&self) -> Option<u64> {
        let dir = self.inner.path.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let st = nix::sys::statvfs::statvfs(dir).ok()?;
        Some(st.blocks_available() * st.fragment_size())
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &MasterKey) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .inner
            .reading
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&inner.path, READER_CACHE_KIB)?,
            };
            let r = f(&conn, &inner.key);
            if let Ok(mut r) = inner.readers.lock()
                && r.len() < MAX_READERS
            {
                r.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::caused_by("reader task failed", e))?
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let runner = embedded::migrations::runner();
    adopt_user_version(conn, &runner)?;
    runner
        .run(conn)
        .map_err(|e| StoreError::caused_by("migration failed", e))?;
    Ok(())
}

/// A database migrated before refinery ran the migrations counted them in `PRAGMA user_version`
/// (migration N applied = version N). Records those as applied in refinery's history, once, so
/// that only the newer ones run.
fn adopt_user_version(conn: &mut Connection, runner: &refinery::Runner) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let has_history: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'refinery_schema_history'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if version == 0 || has_history > 0 {
        return Ok(());
    }
    let tx = conn.transaction().map_err(db_err)?;
    tx.execute_batch(
        "CREATE TABLE refinery_schema_history(
             version INT4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255),
             checksum VARCHAR(255));",
    )
    .map_err(db_err)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for m in runner.get_migrations() {
        if i64::from(m.version()) <= version {
            tx.execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![m.version(), m.name(), now, m.checksum().to_string()],
            )
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

/// Copies committed WAL frames into the database file every `every` ([`CHECKPOINT_EVERY`])
/// until the store closes. PASSIVE never blocks the writer. When the log has grown to
/// `restart_frames` ([`writer::WAL_RESTART_FRAMES`]) it sets `wal_long`, and the writer
/// restarts the log between two groups (`writer::restart_wal`): the file stays near that size
/// however long the writes go on.
fn checkpoint_loop(
    conn: Connection,
    stop: mpsc::Receiver<()>,
    every: std::time::Duration,
    restart_frames: i64,
    wal_long: Arc<AtomicBool>,
) {
    let passive = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        match passive() {
            Ok(frames) => {
                metrics::gauge!("switchyard_store_wal_frames").set(frames.max(0) as f64);
                if frames >= restart_frames {
                    wal_long.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
    let _ = passive();
}

/// `NotFound` when a scoped UPDATE or DELETE touched no row (wrong id, or another org's).
fn found(rows: usize) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound(Missing::Row))
    } else {
        Ok(())
    }
}

/// Runs a parameterless statement through the statement cache (no re-parse per job).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn list<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    f: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(args, f)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Bumps an organization's routing version: called in the transaction of every change that
/// alters where its events go, so a publish routed before it is refused.
fn bump_routing(conn: &Connection, org: &str) -> Result<()> {
    conn.prepare_cached("UPDATE orgs SET routing_version = routing_version + 1 WHERE id = ?1")?
        .execute(params![org])?;
    Ok(())
}
