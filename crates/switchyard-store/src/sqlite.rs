//! The SQLite backend: one writer thread with group commit, a small pool of reader connections.
//!
//! Every write is a job sent to the writer thread. The writer takes all jobs waiting (up to
//! [`MAX_GROUP`]), runs each inside its own savepoint of one transaction and commits once, with
//! `synchronous=FULL` so the commit is on disk (fsync) before any job's caller hears back. One
//! fsync thus covers many publish requests: that is what lets durable ingest run at thousands of
//! events per second on a disk that does ~1.5k fsyncs/s. A failed job rolls back to its
//! savepoint without disturbing the others in the group.
//!
//! The writer also owns the routing cache: since every subscription and endpoint change passes
//! through it, it can drop an organization's [`RouteTable`] exactly when it changes.

use crate::*;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use switchyard_core::Target;
use switchyard_core::crypto::MasterKey;
use switchyard_core::executor::{Executor, Run, RunStatus};
use switchyard_core::ids::new_id;
use switchyard_core::routing::RouteTable;
use switchyard_core::signing::SigningSecret;
use switchyard_core::time::now_ms;

/// Free space the database's filesystem must have again before a store that ran out of space
/// counts as writable (ready) again.
const FULL_RESERVE_BYTES: u64 = 4 * 1024 * 1024;
/// Most jobs committed together in one transaction.
const MAX_GROUP: usize = 2000;
/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Reader connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_executors.sql"),
    include_str!("../migrations/sqlite/0003_key_management.sql"),
];

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A write job. Given the writer's context it runs and returns whether it succeeded and how to
/// answer its caller once the commit is known; given `None` (no transaction could be begun) it
/// only prepares the failure answer.
type Job = Box<dyn FnOnce(Option<&mut WriterCtx>) -> (bool, Completion) + Send>;

/// What write jobs run against: the writer's connection and the caches it keeps coherent.
struct WriterCtx {
    conn: Connection,
    key: MasterKey,
    routes: HashMap<String, Arc<RouteTable>>,
}

/// A SQLite database file opened for Switchyard. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Feeds the writer thread; dropping the last sender stops it after it drains.
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    /// Dropping it stops the checkpoint thread.
    checkpoint_stop: Mutex<Option<mpsc::Sender<()>>>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    key: MasterKey,
    /// Set while writes fail for lack of space; cleared by the next write that commits.
    full: AtomicBool,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
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

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
         PRAGMA busy_timeout=10000; PRAGMA cache_size=-16000; PRAGMA temp_store=MEMORY;",
    )
    .map_err(db_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, runs pending migrations and starts the
    /// writer thread.
    pub fn open(path: &Path, key: MasterKey) -> Result<SqliteStore> {
        let conn = open_conn(path)?;
        // Owner-only, before the first write creates the WAL (SQLite gives the WAL and shared
        // memory files the database file's permissions).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::Database(format!("cannot restrict {}: {e}", path.display())),
            )?;
        }
        migrate(&conn)?;
        // Checkpoints run on their own thread so that copying the WAL into the database never
        // stalls a commit (and the publishes waiting on it).
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
            .map_err(db_err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let ctx = WriterCtx {
            conn,
            key: key.clone(),
            routes: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(ctx, rx))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let checkpoint_conn = open_conn(path)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop_rx))
            .map_err(|e| StoreError::Database(format!("cannot start checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                checkpoint_stop: Mutex::new(Some(stop_tx)),
                readers: Mutex::new(Vec::new()),
                path: path.to_path_buf(),
                key,
                full: AtomicBool::new(false),
            }),
        })
    }

    /// Stops accepting writes; the writer thread finishes what it holds and exits.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut c) = self.inner.checkpoint_stop.lock() {
            c.take();
        }
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let r = match ctx {
                Some(ctx) => f(ctx),
                None => Err(StoreError::Database(
                    "cannot begin a write transaction".into(),
                )),
            };
            let ok = r.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => r,
                    Err(StoreError::Database(e)) => {
                        Err(StoreError::Database(format!("commit failed: {e}")))
                    }
                    Err(e) => Err(e),
                });
            });
            (ok, done)
        });
        {
            let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        let r = rx.await.map_err(|_| StoreError::Closed)?;
        match &r {
            Err(StoreError::StorageFull(_)) => self.inner.full.store(true, Ordering::Relaxed),
            // A small write may fit where a publish does not: only free space clears the state.
            Ok(_)
                if self.inner.full.load(Ordering::Relaxed)
                    && self
                        .free_bytes()
                        .is_none_or(|free| free >= FULL_RESERVE_BYTES) =>
            {
                self.inner.full.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        r
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
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&inner.path)?,
            };
            let r = f(&conn, &inner.key);
            if let Ok(mut r) = inner.readers.lock()
                && r.len() < MAX_IDLE_READERS
            {
                r.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .map_err(|e| StoreError::Database(format!("migration {next} failed: {e}")))?;
    }
    Ok(())
}

/// Copies committed WAL frames into the database file every [`CHECKPOINT_EVERY`] until the
/// store closes. PASSIVE never blocks the writer; the writer restarts the WAL from the start once
/// everything in it is checkpointed, which keeps the file small.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// `NotFound` when a scoped UPDATE or DELETE touched no row (wrong id, or another org's).
fn found(rows: usize) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Runs a parameterless statement through the statement cache (no re-parse per job).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn writer_loop(mut ctx: WriterCtx, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let group = jobs.len();
        if let Err(e) = ctx.conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, jobs = group, "cannot begin a write transaction");
            let e = StoreError::from(e);
            for job in jobs {
                let (_, answer) = job(None);
                answer(Err(e.clone()));
            }
            continue;
        }
        let mut done = Vec::with_capacity(group);
        for job in jobs {
            let _ = run_cached(&ctx.conn, "SAVEPOINT job");
            let (ok, completion) = job(Some(&mut ctx));
            if ok {
                let _ = run_cached(&ctx.conn, "RELEASE job");
            } else {
                let _ = run_cached(&ctx.conn, "ROLLBACK TO job");
                let _ = run_cached(&ctx.conn, "RELEASE job");
                // The job may have rebuilt or dropped cache entries from state it rolled back.
                ctx.routes.clear();
            }
            done.push(completion);
        }
        let commit = ctx.conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = ctx.conn.execute_batch("ROLLBACK");
            ctx.routes.clear();
        }
        metrics::histogram!("switchyard_store_group_commit_size").record(group as f64);
        for c in done {
            c(commit.clone());
        }
    }
}

// ---------------------------------------------------------------- row mapping

fn org_from_row(r: &Row) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

/// A JSON column decoded strictly: text that does not decode is an error naming the column.
fn json_col<T: serde::de::DeserializeOwned>(
    r: &Row,
    col: usize,
    what: &str,
) -> rusqlite::Result<T> {
    let text: String = r.get(col)?;
    serde_json::from_str(&text).map_err(|e| corrupt(col, what, &format!("{e}")))
}

/// A nullable JSON column decoded strictly.
fn json_col_opt<T: serde::de::DeserializeOwned>(
    r: &Row,
    col: usize,
    what: &str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = r.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(col, what, &format!("{e}"))))
        .transpose()
}

fn event_type_from_row(r: &Row) -> rusqlite::Result<EventType> {
    Ok(EventType {
        name: r.get(0)?,
        description: r.get(1)?,
        entity_type: r.get(2)?,
        schema: json_col_opt(r, 3, "event type schema")?,
        updated_at: r.get(4)?,
    })
}

const EVENT_COLS: &str =
    "seq, org_id, id, type, timestamp, entity_type, entity_id, data, received_at";

fn event_from_row(r: &Row) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        org_id: r.get(1)?,
        id: r.get(2)?,
        event_type: r.get(3)?,
        timestamp: r.get(4)?,
        entity: EntityRef {
            kind: r.get(5)?,
            id: r.get(6)?,
        },
        data: json_col(r, 7, "event data")?,
        received_at: r.get(8)?,
    })
}

const ENDPOINT_COLS: &str = "id, org_id, url, description, profile, headers, token_enc, token_header, \
     insecure_tls, timeout_ms, retry_schedule, max_in_flight, secrets_enc, enabled, disabled_reason, \
     owner_subscription, created_at, updated_at, max_rps";

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSecret {
    s: String,
    exp: Option<i64>,
}

fn secrets_ctx(id: &str) -> String {
    format!("endpoint:{id}:secrets")
}
fn token_ctx(id: &str) -> String {
    format!("endpoint:{id}:token")
}

/// A column whose stored value cannot be decoded: an error, never a silent default.
fn corrupt(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("corrupt {what}: `{value}`").into(),
    )
}

fn endpoint_from_row(r: &Row, key: &MasterKey) -> rusqlite::Result<Endpoint> {
    let id: String = r.get(0)?;
    let bad = |what: &str, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("endpoint {id}: {what}: {e}").into(),
        )
    };
    let token_enc: Option<Vec<u8>> = r.get(6)?;
    let token = match token_enc {
        None => None,
        Some(b) => Some(
            String::from_utf8(
                key.decrypt(&token_ctx(&id), &b)
                    .map_err(|e| bad("token", e.to_string()))?,
            )
            .map_err(|e| bad("token", e.to_string()))?,
        ),
    };
    let secrets_enc: Vec<u8> = r.get(12)?;
    let plain = key
        .decrypt(&secrets_ctx(&id), &secrets_enc)
        .map_err(|e| bad("secrets", e.to_string()))?;
    let stored: Vec<StoredSecret> =
        serde_json::from_slice(&plain).map_err(|e| bad("secrets", e.to_string()))?;
    let secrets = stored
        .into_iter()
        .map(|s| {
            Ok(KeyedSecret {
                secret: SigningSecret::parse(&s.s).map_err(|e| bad("secret", e))?,
                expires_at: s.exp,
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let profile: String = r.get(4)?;
    let headers: String = r.get(5)?;
    let schedule: Option<String> = r.get(10)?;
    Ok(Endpoint {
        org_id: r.get(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        profile: Profile::parse(&profile).ok_or_else(|| corrupt(4, "profile", &profile))?,
        headers: serde_json::from_str(&headers)
            .map_err(|e| corrupt(5, "headers", &e.to_string()))?,
        token,
        token_header: r.get(7)?,
        insecure_tls: r.get(8)?,
        timeout_ms: r.get(9)?,
        retry_schedule_s: schedule
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| corrupt(10, "retry schedule", &e.to_string()))
            })
            .transpose()?,
        max_in_flight: r.get(11)?,
        secrets,
        enabled: r.get(13)?,
        disabled_reason: r.get(14)?,
        owner_subscription: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        max_rps: r.get(18)?,
        id,
    })
}

fn encrypt_secrets(key: &MasterKey, ep: &Endpoint) -> Vec<u8> {
    let stored: Vec<StoredSecret> = ep
        .secrets
        .iter()
        .map(|s| StoredSecret {
            s: s.secret.expose(),
            exp: s.expires_at,
        })
        .collect();
    let plain = serde_json::to_vec(&stored).unwrap_or_default();
    key.encrypt(&secrets_ctx(&ep.id), &plain)
}

const SUB_COLS: &str =
    "id, org_id, event_types, endpoint_id, entity_id, filter, created_at, executor";

fn target_from_columns(
    endpoint_id: Option<String>,
    executor: Option<String>,
) -> rusqlite::Result<Target> {
    Target::from_columns(endpoint_id, executor).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Null,
            "a row must have exactly one of endpoint_id and executor".into(),
        )
    })
}

fn sub_from_row(r: &Row) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: r.get(0)?,
        org_id: r.get(1)?,
        event_types: json_col(r, 2, "event types")?,
        target: target_from_columns(r.get(3)?, r.get(7)?)?,
        entity_id: r.get(4)?,
        filter: json_col_opt(r, 5, "filter")?,
        created_at: r.get(6)?,
    })
}

const DELIVERY_COLS: &str = "id, org_id, event_id, endpoint_id, subscription_id, status, attempts, \
     next_attempt_at, created_at, updated_at, executor";

fn delivery_from_row(r: &Row) -> rusqlite::Result<Delivery> {
    let status: String = r.get(5)?;
    Ok(Delivery {
        id: r.get(0)?,
        org_id: r.get(1)?,
        event_id: r.get(2)?,
        target: target_from_columns(r.get(3)?, r.get(10)?)?,
        subscription_id: r.get(4)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(5, "delivery status", &status))?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

fn attempt_from_row(r: &Row) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get(0)?,
        delivery_id: r.get(1)?,
        at: r.get(2)?,
        status_code: r.get(3)?,
        duration_ms: r.get(4)?,
        error: r.get(5)?,
        response_body: r.get(6)?,
    })
}

const EXECUTOR_COLS: &str =
    "org_id, name, version, description, spec, parameters, retries, created_at";

fn executor_from_row(r: &Row) -> rusqlite::Result<Executor> {
    Ok(Executor {
        org_id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        description: r.get(3)?,
        spec: json_col(r, 4, "executor spec")?,
        parameters: json_col_opt(r, 5, "executor parameters")?,
        retries: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn secret_ctx(org: &str, name: &str) -> String {
    format!("secret:{org}:{name}")
}

const RUN_COLS: &str = "id, org_id, executor, version, event_id, status, input, output, error, logs, stderr, exit, duration_ms, at";

fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    let status: String = r.get(5)?;
    Ok(Run {
        id: r.get(0)?,
        org_id: r.get(1)?,
        executor: r.get(2)?,
        version: r.get(3)?,
        event_id: r.get(4)?,
        status: match status.as_str() {
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            other => return Err(corrupt(5, "run status", other)),
        },
        input: json_col(r, 6, "run input")?,
        output: json_col_opt(r, 7, "run output")?,
        error: r.get(8)?,
        logs: json_col(r, 9, "run logs")?,
        stderr: r.get(10)?,
        exit: r.get(11)?,
        duration_ms: r.get(12)?,
        at: r.get(13)?,
    })
}

// ---------------------------------------------------------------- write helpers

impl WriterCtx {
    fn route_table(&mut self, org: &str) -> Result<Arc<RouteTable>> {
        if let Some(t) = self.routes.get(org) {
            return Ok(t.clone());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.id, s.org_id, s.event_types, s.endpoint_id, s.entity_id, s.filter, s.created_at, s.executor
             FROM subscriptions s LEFT JOIN endpoints e ON e.id = s.endpoint_id
             WHERE s.org_id = ?1 AND (s.executor IS NOT NULL OR e.enabled = 1)",
        )?;
        let subs = stmt
            .query_map([org], sub_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let table = Arc::new(RouteTable::new(subs));
        self.routes.insert(org.to_string(), table.clone());
        Ok(table)
    }

    fn load_event_by_seq(&self, seq: i64) -> Result<Event> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE seq = ?1"))?;
        Ok(stmt.query_row([seq], event_from_row)?)
    }
}

/// What differs between a stored event and a new one with the same id (the timestamp is not
/// compared: it defaults to the time of publishing).
fn idempotency_conflict(stored: &Event, new: &NewEvent) -> Option<&'static str> {
    if stored.event_type != new.event_type {
        Some("type")
    } else if stored.entity != new.entity {
        Some("entity")
    } else if stored.data != new.data {
        Some("data")
    } else {
        None
    }
}

fn insert_endpoint(conn: &Connection, key: &MasterKey, ep: &Endpoint) -> Result<()> {
    let token_enc = ep
        .token
        .as_ref()
        .map(|t| key.encrypt(&token_ctx(&ep.id), t.as_bytes()));
    conn.prepare_cached(&format!(
        "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)"
    ))?
    .execute(params![
        ep.id,
        ep.org_id,
        ep.url,
        ep.description,
        ep.profile.as_str(),
        serde_json::to_string(&ep.headers).unwrap_or_default(),
        token_enc,
        ep.token_header,
        ep.insecure_tls,
        ep.timeout_ms,
        ep.retry_schedule_s.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default()),
        ep.max_in_flight,
        encrypt_secrets(key, ep),
        ep.enabled,
        ep.disabled_reason,
        ep.owner_subscription,
        ep.created_at,
        ep.updated_at,
        ep.max_rps,
    ])?;
    Ok(())
}

fn get_endpoint_conn(conn: &Connection, key: &MasterKey, org: &str, id: &str) -> Result<Endpoint> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = ?1 AND id = ?2"
    ))?;
    Ok(stmt.query_row([org, id], |r| endpoint_from_row(r, key))?)
}

fn insert_delivery(
    conn: &Connection,
    org: &str,
    event: &Event,
    target: &Target,
    subscription_id: Option<&str>,
    claim: Option<(&str, i64)>,
    now: i64,
) -> Result<String> {
    let id = new_id("dlv");
    let (claimed_by, next) = match claim {
        Some((node, until)) => (Some(node), until),
        None => (None, now),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (id, org_id, event_seq, event_id, endpoint_id, subscription_id, status,
         attempts, next_attempt_at, claimed_by, created_at, updated_at, executor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?9, ?9, ?10)",
    )?
    .execute(params![
        id,
        org,
        event.seq,
        event.id,
        target.endpoint_id(),
        subscription_id,
        next,
        claimed_by,
        now,
        target.executor()
    ])?;
    Ok(id)
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

#[async_trait]
impl Store for SqliteStore {
    async fn create_org(&self, id: &str, name: &str) -> Result<Org> {
        let org = Org {
            id: id.to_string(),
            name: name.to_string(),
            created_at: now_ms(),
        };
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("INSERT INTO orgs (id, name, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![org.id, org.name, org.created_at])
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("organization `{}` exists", org.id))
                    }
                    other => other,
                })?;
            Ok(org)
        })
        .await
    }

    async fn get_org(&self, id: &str) -> Result<Org> {
        let id = id.to_string();
        self.read(move |c, _| {
            Ok(
                c.prepare_cached("SELECT id, name, created_at FROM orgs WHERE id = ?1")?
                    .query_row([id], org_from_row)?,
            )
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|c, _| {
            list(
                c,
                "SELECT id, name, created_at FROM orgs ORDER BY id",
                &[],
                org_from_row,
            )
        })
        .await
    }

    async fn create_api_key(
        &self,
        org: Option<&str>,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<String> {
        let (org, hash, prefix) = (
            org.map(str::to_string),
            key_hash.to_string(),
            prefix.to_string(),
        );
        self.write(move |ctx| {
            let id = new_id("key");
            ctx.conn
                .prepare_cached(
                    "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id, org, role.as_str(), hash, now_ms(), prefix])?;
            Ok(id)
        })
        .await
    }

    async fn list_api_keys(&self, org: &str) -> Result<Vec<ApiKeyInfo>> {
        let org = org.to_string();
        self.read(move |c, _| {
            list(
                c,
                "SELECT id, org_id, role, prefix, created_at, last_used_at FROM api_keys
                 WHERE org_id = ?1 ORDER BY created_at, id",
                &[&org],
                |r| {
                    let role: String = r.get(2)?;
                    Ok(ApiKeyInfo {
                        id: r.get(0)?,
                        org_id: r.get(1)?,
                        role: Role::parse(&role).ok_or_else(|| corrupt(2, "role", &role))?,
                        prefix: r.get(3)?,
                        created_at: r.get(4)?,
                        last_used_at: r.get(5)?,
                    })
                },
            )
        })
        .await
    }

    async fn delete_api_key(&self, org: &str, id: &str) -> Result<()> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM api_keys WHERE org_id = ?1 AND id = ?2")?
                .execute([&org, &id])?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            Ok(())
        })
        .await
    }

    async fn replace_admin_keys(&self, key_hash: &str, prefix: &str) -> Result<String> {
        let (hash, prefix) = (key_hash.to_string(), prefix.to_string());
        self.write(move |ctx| {
            ctx.conn
                .execute("DELETE FROM api_keys WHERE org_id IS NULL", [])?;
            let id = new_id("key");
            ctx.conn.execute(
                "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix) VALUES (?1, NULL, 'admin', ?2, ?3, ?4)",
                params![id, hash, now_ms(), prefix],
            )?;
            Ok(id)
        })
        .await
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<Principal>> {
        let hash = key_hash.to_string();
        self.read(move |c, _| {
            let row = c
                .prepare_cached("SELECT id, org_id, role FROM api_keys WHERE key_hash = ?1")?
                .query_row([hash], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(key_id, org, role)| {
                Role::parse(&role).map(|role| Principal { org, role, key_id })
            }))
        })
        .await
    }

    fn storage_full(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }

    async fn probe_write(&self) -> Result<()> {
        self.write(|ctx| {
            ctx.conn
                .prepare_cached("INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?1)")?
                .execute([now_ms()])?;
            Ok(())
        })
        .await?;
        if self.storage_full() {
            return Err(StoreError::StorageFull(format!(
                "less than {} MiB free on the disk holding the database",
                FULL_RESERVE_BYTES >> 20
            )));
        }
        Ok(())
    }

    async fn count_admin_keys(&self) -> Result<u64> {
        self.read(|c, _| {
            Ok(c.query_row(
                "SELECT count(*) FROM api_keys WHERE org_id IS NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn put_event_type(&self, org: &str, t: &EventType) -> Result<EventType> {
        let (org, t) = (org.to_string(), t.clone());
        self.write(move |ctx| {
            let now = now_ms();
            ctx.conn
                .prepare_cached(
                    "INSERT INTO event_types (org_id, name, description, entity_type, schema, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description,
                       entity_type = excluded.entity_type, schema = excluded.schema, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    org,
                    t.name,
                    t.description,
                    t.entity_type,
                    t.schema.as_ref().map(|s| s.to_string()),
                    now
                ])?;
            Ok(EventType { updated_at: now, ..t })
        })
        .await
    }

    async fn get_event_type(&self, org: &str, name: &str) -> Result<EventType> {
        let (org, name) = (org.to_string(), name.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(
                "SELECT name, description, entity_type, schema, updated_at FROM event_types
                 WHERE org_id = ?1 AND name = ?2",
            )?
            .query_row([org, name], event_type_from_row)?)
        })
        .await
    }

    async fn list_event_types(&self, org: &str) -> Result<Vec<EventType>> {
        let org = org.to_string();
        self.read(move |c, _| {
            list(
                c,
                "SELECT name, description, entity_type, schema, updated_at FROM event_types
                 WHERE org_id = ?1 ORDER BY name",
                &[&org],
                event_type_from_row,
            )
        })
        .await
    }

    async fn create_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        let ep = ep.clone();
        self.write(move |ctx| {
            insert_endpoint(&ctx.conn, &ctx.key, &ep)?;
            Ok(ep)
        })
        .await
    }

    async fn get_endpoint(&self, org: &str, id: &str) -> Result<Endpoint> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, k| get_endpoint_conn(c, k, &org, &id))
            .await
    }

    async fn list_endpoints(&self, org: &str) -> Result<Vec<Endpoint>> {
        let org = org.to_string();
        self.read(move |c, k| {
            list(
                c,
                &format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = ?1 ORDER BY id"),
                &[&org],
                |r| endpoint_from_row(r, k),
            )
        })
        .await
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        let ep = ep.clone();
        self.write(move |ctx| {
            let token_enc = ep.token.as_ref().map(|t| ctx.key.encrypt(&token_ctx(&ep.id), t.as_bytes()));
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE endpoints SET url=?3, description=?4, profile=?5, headers=?6, token_enc=?7,
                     token_header=?8, insecure_tls=?9, timeout_ms=?10, retry_schedule=?11, max_in_flight=?12,
                     secrets_enc=?13, enabled=?14, disabled_reason=?15, updated_at=?16, max_rps=?17
                     WHERE org_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    ep.org_id,
                    ep.id,
                    ep.url,
                    ep.description,
                    ep.profile.as_str(),
                    serde_json::to_string(&ep.headers).unwrap_or_default(),
                    token_enc,
                    ep.token_header,
                    ep.insecure_tls,
                    ep.timeout_ms,
                    ep.retry_schedule_s.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default()),
                    ep.max_in_flight,
                    encrypt_secrets(&ctx.key, &ep),
                    ep.enabled,
                    ep.disabled_reason,
                    ep.updated_at,
                    ep.max_rps,
                ])?;
            found(n)?;
            ctx.routes.remove(&ep.org_id);
            Ok(ep)
        })
        .await
    }

    async fn delete_endpoint(&self, org: &str, id: &str) -> Result<()> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |ctx| {
            let now = now_ms();
            ctx.conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, claimed_by = NULL,
                     updated_at = ?3 WHERE org_id = ?1 AND endpoint_id = ?2 AND status = 'pending'",
                )?
                .execute(params![org, id, now])?;
            ctx.conn
                .prepare_cached("DELETE FROM subscriptions WHERE org_id = ?1 AND endpoint_id = ?2")?
                .execute([&org, &id])?;
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM endpoints WHERE org_id = ?1 AND id = ?2")?
                .execute([&org, &id])?;
            found(n)?;
            ctx.routes.remove(&org);
            Ok(())
        })
        .await
    }

    async fn create_subscription(
        &self,
        sub: &Subscription,
        owned_endpoint: Option<&Endpoint>,
    ) -> Result<Subscription> {
        let (sub, owned) = (sub.clone(), owned_endpoint.cloned());
        self.write(move |ctx| {
            if let Some(ep) = &owned {
                insert_endpoint(&ctx.conn, &ctx.key, ep)?;
            }
            let (sql, what, name) = match &sub.target {
                Target::Endpoint(id) => (
                    "SELECT 1 FROM endpoints WHERE org_id = ?1 AND id = ?2",
                    "endpoint",
                    id,
                ),
                Target::Executor(n) => (
                    "SELECT 1 FROM executors WHERE org_id = ?1 AND name = ?2 LIMIT 1",
                    "executor",
                    n,
                ),
            };
            let exists: Option<i64> = ctx
                .conn
                .prepare_cached(sql)?
                .query_row([&sub.org_id, name], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::InvalidReference(format!(
                    "{what} `{name}` does not exist"
                )));
            }
            ctx.conn
                .prepare_cached(&format!(
                    "INSERT INTO subscriptions ({SUB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
                ))?
                .execute(params![
                    sub.id,
                    sub.org_id,
                    serde_json::to_string(&sub.event_types).unwrap_or_default(),
                    sub.target.endpoint_id(),
                    sub.entity_id,
                    sub.filter.as_ref().map(|f| f.to_string()),
                    sub.created_at,
                    sub.target.executor(),
                ])?;
            ctx.routes.remove(&sub.org_id);
            Ok(sub)
        })
        .await
    }

    async fn get_subscription(&self, org: &str, id: &str) -> Result<Subscription> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(&format!(
                "SELECT {SUB_COLS} FROM subscriptions WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([org, id], sub_from_row)?)
        })
        .await
    }

    async fn list_subscriptions(&self, org: &str) -> Result<Vec<Subscription>> {
        let org = org.to_string();
        self.read(move |c, _| {
            list(
                c,
                &format!("SELECT {SUB_COLS} FROM subscriptions WHERE org_id = ?1 ORDER BY id"),
                &[&org],
                sub_from_row,
            )
        })
        .await
    }

    async fn delete_subscription(&self, org: &str, id: &str) -> Result<()> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM subscriptions WHERE org_id = ?1 AND id = ?2")?
                .execute([&org, &id])?;
            found(n)?;
            // An endpoint made for this subscription's inline URL is disabled with it: nothing
            // routes there any more, and its pending deliveries end as failed when next due.
            ctx.conn
                .prepare_cached("UPDATE endpoints SET enabled = 0, disabled_reason = 'its subscription was deleted' WHERE org_id = ?1 AND owner_subscription = ?2")?
                .execute([&org, &id])?;
            ctx.routes.remove(&org);
            Ok(())
        })
        .await
    }

    async fn publish(
        &self,
        org: &str,
        events: Vec<NewEvent>,
        node: &str,
    ) -> Result<Vec<Published>> {
        let (org, node) = (org.to_string(), node.to_string());
        self.write(move |ctx| {
            let now = now_ms();
            let lease_until = now + DEFAULT_LEASE_MS;
            let table = ctx.route_table(&org)?;
            let mut out = Vec::with_capacity(events.len());
            for ne in events {
                let existing: Option<i64> = ctx
                    .conn
                    .prepare_cached("SELECT seq FROM events WHERE org_id = ?1 AND id = ?2")?
                    .query_row([&org, &ne.id], |r| r.get(0))
                    .optional()?;
                if let Some(seq) = existing {
                    let event = ctx.load_event_by_seq(seq)?;
                    if let Some(what) = idempotency_conflict(&event, &ne) {
                        return Err(StoreError::Conflict(format!(
                            "event `{}` was published before with a different {what}; an id identifies one event",
                            ne.id
                        )));
                    }
                    let count: i64 = ctx
                        .conn
                        .prepare_cached("SELECT count(*) FROM deliveries WHERE org_id = ?1 AND event_id = ?2")?
                        .query_row([&org, &ne.id], |r| r.get(0))?;
                    out.push(Published {
                        event: Arc::new(event),
                        duplicate: true,
                        delivery_count: count as usize,
                        new_deliveries: vec![],
                    });
                    continue;
                }
                let data = ne.data.to_string();
                let seq: i64 = ctx
                    .conn
                    .prepare_cached(
                        "INSERT INTO events (org_id, id, type, timestamp, entity_type, entity_id, data, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
                    )?
                    .query_row(
                        params![org, ne.id, ne.event_type, ne.timestamp, ne.entity.kind, ne.entity.id, data, now],
                        |r| r.get(0),
                    )?;
                let event = Arc::new(Event {
                    id: ne.id,
                    org_id: org.clone(),
                    event_type: ne.event_type,
                    timestamp: ne.timestamp,
                    entity: ne.entity,
                    data: ne.data,
                    seq,
                    received_at: now,
                });
                let mut new_deliveries = Vec::new();
                for target in table.route(&event) {
                    let id = insert_delivery(
                        &ctx.conn,
                        &org,
                        &event,
                        &target.target,
                        Some(&target.subscription_id),
                        Some((&node, lease_until)),
                        now,
                    )?;
                    new_deliveries.push(DueDelivery {
                        delivery_id: id,
                        org_id: org.clone(),
                        target: target.target,
                        attempts: 0,
                        event: event.clone(),
                    });
                }
                out.push(Published {
                    event,
                    duplicate: false,
                    delivery_count: new_deliveries.len(),
                    new_deliveries,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn get_event(&self, org: &str, id: &str) -> Result<Event> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([org, id], event_from_row)?)
        })
        .await
    }

    async fn list_events(&self, org: &str, q: &EventQuery) -> Result<Vec<Event>> {
        let (org, q) = (org.to_string(), q.clone());
        self.read(move |c, _| {
            let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE org_id = ?1");
            let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(org)];
            let mut add = |cond: &str, v: Box<dyn ToSql>| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(t) = q.event_type {
                add("type =", Box::new(t));
            }
            if let Some(e) = q.entity_id {
                add("entity_id =", Box::new(e));
            }
            if let Some(s) = q.since {
                add("timestamp >=", Box::new(s));
            }
            if let Some(u) = q.until {
                add("timestamp <", Box::new(u));
            }
            if let Some(b) = q.before_seq {
                add("seq <", Box::new(b));
            }
            sql.push_str(&format!(
                " ORDER BY seq DESC LIMIT {}",
                q.limit.clamp(1, 1000)
            ));
            let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
            list(c, &sql, &refs, event_from_row)
        })
        .await
    }

    async fn trace(&self, org: &str, event_id: &str) -> Result<Trace> {
        let (org, id) = (org.to_string(), event_id.to_string());
        self.read(move |c, _| {
            let event = c
                .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE org_id = ?1 AND id = ?2"))?
                .query_row([&org, &id], event_from_row)?;
            let deliveries = list(
                c,
                &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND event_id = ?2 ORDER BY id"),
                &[&org, &id],
                delivery_from_row,
            )?;
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                let attempts = list(
                    c,
                    "SELECT id, delivery_id, at, status_code, duration_ms, error, response_body FROM attempts
                     WHERE delivery_id = ?1 ORDER BY at, id",
                    &[&d.id],
                    attempt_from_row,
                )?;
                out.push((d, attempts));
            }
            Ok(Trace { event, deliveries: out })
        })
        .await
    }

    async fn list_deliveries(&self, org: &str, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let (org, q) = (org.to_string(), q.clone());
        self.read(move |c, _| {
            let mut sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1");
            let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(org)];
            let mut add = |cond: &str, v: Box<dyn ToSql>| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(s) = q.status {
                add("status =", Box::new(s.as_str()));
            }
            if let Some(e) = q.endpoint_id {
                add("endpoint_id =", Box::new(e));
            }
            if let Some(e) = q.event_id {
                add("event_id =", Box::new(e));
            }
            if let Some(b) = q.before_id {
                add("id <", Box::new(b));
            }
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                q.limit.clamp(1, 1000)
            ));
            let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
            list(c, &sql, &refs, delivery_from_row)
        })
        .await
    }

    async fn get_delivery(&self, org: &str, id: &str) -> Result<Delivery> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([org, id], delivery_from_row)?)
        })
        .await
    }

    async fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let node = node.to_string();
        self.write(move |ctx| {
            let claimed = {
                let mut stmt = ctx.conn.prepare_cached(
                    "UPDATE deliveries SET claimed_by = ?1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?3
                                  ORDER BY next_attempt_at LIMIT ?4)
                     RETURNING id, org_id, endpoint_id, attempts, event_seq, executor",
                )?;
                stmt.query_map(params![node, now + lease_ms, now, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        target_from_columns(r.get(2)?, r.get(5)?)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut events: HashMap<i64, Arc<Event>> = HashMap::new();
            let mut out = Vec::with_capacity(claimed.len());
            for (id, org_id, target, attempts, seq) in claimed {
                let event = match events.get(&seq) {
                    Some(e) => e.clone(),
                    None => {
                        let e = Arc::new(ctx.load_event_by_seq(seq)?);
                        events.insert(seq, e.clone());
                        e
                    }
                };
                out.push(DueDelivery {
                    delivery_id: id,
                    org_id,
                    target,
                    attempts,
                    event,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn release(&self, node: &str, ids: Option<&[String]>) -> Result<u64> {
        let (node, ids) = (node.to_string(), ids.map(|i| i.to_vec()));
        self.write(move |ctx| {
            let now = now_ms();
            let n = match ids {
                None => ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?2
                         WHERE claimed_by = ?1 AND status = 'pending'",
                    )?
                    .execute(params![node, now])?,
                Some(ids) => {
                    let mut stmt = ctx.conn.prepare_cached(
                        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?3
                         WHERE id = ?2 AND claimed_by = ?1 AND status = 'pending'",
                    )?;
                    let mut n = 0;
                    for id in ids {
                        n += stmt.execute(params![node, id, now])?;
                    }
                    n
                }
            };
            Ok(n as u64)
        })
        .await
    }

    async fn record_attempts(&self, results: Vec<AttemptResult>) -> Result<Vec<DisabledEndpoint>> {
        self.write(move |ctx| {
            let now = now_ms();
            let mut disabled = Vec::new();
            for res in results {
                let a = &res.attempt;
                let (status, next) = match res.outcome {
                    Outcome::Delivered => ("delivered", None),
                    Outcome::Retry { at } => ("pending", Some(at)),
                    Outcome::Failed => ("failed", None),
                };
                let changed = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                         claimed_by = NULL, updated_at = ?5 WHERE id = ?1 AND org_id = ?2",
                    )?
                    .execute(params![res.delivery_id, res.org_id, status, next, now])?;
                if changed == 0 {
                    // The delivery is gone (its endpoint or organization was deleted).
                    continue;
                }
                ctx.conn
                    .prepare_cached(
                        "INSERT INTO attempts (id, delivery_id, org_id, at, status_code, duration_ms, error, response_body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![a.id, res.delivery_id, res.org_id, a.at, a.status_code, a.duration_ms, a.error, a.response_body])?;
                if let (Some(reason), Some(endpoint_id)) = (&res.disable_endpoint, &res.endpoint_id) {
                    let n = ctx
                        .conn
                        .prepare_cached(
                            "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, updated_at = ?4
                             WHERE id = ?1 AND org_id = ?2 AND enabled = 1",
                        )?
                        .execute(params![endpoint_id, res.org_id, reason, now])?;
                    if n > 0 {
                        ctx.routes.remove(&res.org_id);
                        disabled.push(DisabledEndpoint {
                            org_id: res.org_id.clone(),
                            endpoint_id: endpoint_id.clone(),
                        });
                    }
                }
            }
            Ok(disabled)
        })
        .await
    }

    async fn retry_delivery(&self, org: &str, id: &str, node: &str) -> Result<DueDelivery> {
        let (org, id, node) = (org.to_string(), id.to_string(), node.to_string());
        self.write(move |ctx| {
            let now = now_ms();
            let (target, attempts, seq): (Target, u32, i64) = ctx
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', claimed_by = ?3, next_attempt_at = ?4, updated_at = ?5
                     WHERE org_id = ?1 AND id = ?2 RETURNING endpoint_id, attempts, event_seq, executor",
                )?
                .query_row(params![org, id, node, now + DEFAULT_LEASE_MS, now], |r| {
                    Ok((target_from_columns(r.get(0)?, r.get(3)?)?, r.get(1)?, r.get(2)?))
                })?;
            let event = Arc::new(ctx.load_event_by_seq(seq)?);
            Ok(DueDelivery {
                delivery_id: id,
                org_id: org,
                target,
                attempts,
                event,
            })
        })
        .await
    }

    async fn replay(&self, org: &str, endpoint_id: &str, since: i64, until: i64) -> Result<u64> {
        let (org, endpoint_id) = (org.to_string(), endpoint_id.to_string());
        self.write(move |ctx| {
            get_endpoint_conn(&ctx.conn, &ctx.key, &org, &endpoint_id)?;
            let now = now_ms();
            let seqs: Vec<(i64, Option<String>)> = list(
                &ctx.conn,
                "SELECT e.seq, min(d.subscription_id) FROM events e JOIN deliveries d ON d.event_seq = e.seq
                 WHERE e.org_id = ?1 AND d.endpoint_id = ?2 AND e.received_at >= ?3 AND e.received_at < ?4
                 GROUP BY e.seq ORDER BY e.seq LIMIT 100000",
                &[&org, &endpoint_id, &since, &until],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for (seq, sub) in &seqs {
                let event = ctx.load_event_by_seq(*seq)?;
                let target = Target::Endpoint(endpoint_id.clone());
                insert_delivery(&ctx.conn, &org, &event, &target, sub.as_deref(), None, now)?;
            }
            Ok(seqs.len() as u64)
        })
        .await
    }

    async fn put_executor(&self, ex: &Executor) -> Result<Executor> {
        let ex = ex.clone();
        self.write(move |ctx| {
            let latest: Option<u32> = ctx
                .conn
                .prepare_cached("SELECT max(version) FROM executors WHERE org_id = ?1 AND name = ?2")?
                .query_row([&ex.org_id, &ex.name], |r| r.get(0))?;
            let version = latest.unwrap_or(0) + 1;
            let now = now_ms();
            ctx.conn
                .prepare_cached(
                    "INSERT INTO executors (org_id, name, version, description, spec, parameters, retries, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    ex.org_id,
                    ex.name,
                    version,
                    ex.description,
                    serde_json::to_string(&ex.spec).unwrap_or_default(),
                    ex.parameters.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                    ex.retries,
                    now
                ])?;
            Ok(Executor { version, created_at: now, ..ex })
        })
        .await
    }

    async fn get_executor(&self, org: &str, name: &str) -> Result<Executor> {
        let (org, name) = (org.to_string(), name.to_string());
        self.read(move |c, _| {
            let ex = c
                .prepare_cached(&format!(
                    "SELECT {EXECUTOR_COLS} FROM executors WHERE org_id = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1"
                ))?
                .query_row([org, name], executor_from_row)?;
            Ok(ex)
        })
        .await
    }

    async fn list_executors(&self, org: &str) -> Result<Vec<Executor>> {
        let org = org.to_string();
        self.read(move |c, _| {
            let rows = list(
                c,
                &format!(
                    "SELECT {EXECUTOR_COLS} FROM executors e WHERE org_id = ?1 AND version =
                     (SELECT max(version) FROM executors x WHERE x.org_id = e.org_id AND x.name = e.name) ORDER BY name"
                ),
                &[&org],
                executor_from_row,
            )?;
            Ok(rows)
        })
        .await
    }

    async fn delete_executor(&self, org: &str, name: &str) -> Result<()> {
        let (org, name) = (org.to_string(), name.to_string());
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM executors WHERE org_id = ?1 AND name = ?2")?
                .execute([&org, &name])?;
            found(n)?;
            // Its event-hook subscriptions go with it.
            ctx.conn
                .prepare_cached("DELETE FROM subscriptions WHERE org_id = ?1 AND executor = ?2")?
                .execute([&org, &name])?;
            ctx.routes.remove(&org);
            Ok(())
        })
        .await
    }

    async fn put_secret(&self, org: &str, name: &str, value: &str) -> Result<()> {
        let (org, name, value) = (org.to_string(), name.to_string(), value.to_string());
        self.write(move |ctx| {
            let enc = ctx.key.encrypt(&secret_ctx(&org, &name), value.as_bytes());
            ctx.conn
                .prepare_cached(
                    "INSERT INTO secrets (org_id, name, value_enc, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, name) DO UPDATE SET value_enc = excluded.value_enc, updated_at = excluded.updated_at",
                )?
                .execute(params![org, name, enc, now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn get_secret(&self, org: &str, name: &str) -> Result<Option<String>> {
        let (org, name) = (org.to_string(), name.to_string());
        self.read(move |c, k| {
            let enc: Option<Vec<u8>> = c
                .prepare_cached("SELECT value_enc FROM secrets WHERE org_id = ?1 AND name = ?2")?
                .query_row([&org, &name], |r| r.get(0))
                .optional()?;
            match enc {
                None => Ok(None),
                Some(b) => {
                    let plain = k
                        .decrypt(&secret_ctx(&org, &name), &b)
                        .map_err(|e| StoreError::Database(format!("secret {name}: {e}")))?;
                    String::from_utf8(plain)
                        .map(Some)
                        .map_err(|_| StoreError::Database(format!("secret {name} is not UTF-8")))
                }
            }
        })
        .await
    }

    async fn list_secrets(&self, org: &str) -> Result<Vec<(String, i64)>> {
        let org = org.to_string();
        self.read(move |c, _| {
            list(
                c,
                "SELECT name, updated_at FROM secrets WHERE org_id = ?1 ORDER BY name",
                &[&org],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }

    async fn delete_secret(&self, org: &str, name: &str) -> Result<()> {
        let (org, name) = (org.to_string(), name.to_string());
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached("DELETE FROM secrets WHERE org_id = ?1 AND name = ?2")?
                .execute([&org, &name])?;
            found(n)?;
            Ok(())
        })
        .await
    }

    async fn kv_get(&self, org: &str, key: &str) -> Result<Option<Value>> {
        let (org, key) = (org.to_string(), key.to_string());
        self.read(move |c, _| {
            let v: Option<String> = c
                .prepare_cached("SELECT value FROM kv WHERE org_id = ?1 AND key = ?2")?
                .query_row([&org, &key], |r| r.get(0))
                .optional()?;
            v.map(|s| {
                serde_json::from_str(&s).map_err(|e| {
                    StoreError::Database(format!("corrupt stored value of `{key}`: {e}"))
                })
            })
            .transpose()
        })
        .await
    }

    async fn kv_set(&self, org: &str, key: &str, value: &Value) -> Result<()> {
        let (org, key, value) = (org.to_string(), key.to_string(), value.to_string());
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO kv (org_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![org, key, value, now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn kv_delete(&self, org: &str, key: &str) -> Result<bool> {
        let (org, key) = (org.to_string(), key.to_string());
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached("DELETE FROM kv WHERE org_id = ?1 AND key = ?2")?
                .execute([&org, &key])?
                > 0)
        })
        .await
    }

    async fn record_run(&self, run: &Run) -> Result<()> {
        let run = run.clone();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(&format!(
                    "INSERT INTO runs ({RUN_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
                ))?
                .execute(params![
                    run.id,
                    run.org_id,
                    run.executor,
                    run.version,
                    run.event_id,
                    match run.status {
                        RunStatus::Succeeded => "succeeded",
                        RunStatus::Failed => "failed",
                    },
                    run.input.to_string(),
                    run.output.as_ref().map(|o| o.to_string()),
                    run.error,
                    serde_json::to_string(&run.logs).unwrap_or_default(),
                    run.stderr,
                    run.exit,
                    run.duration_ms,
                    run.at,
                ])?;
            Ok(())
        })
        .await
    }

    async fn get_run(&self, org: &str, id: &str) -> Result<Run> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([org, id], run_from_row)?)
        })
        .await
    }

    async fn runs_for_event(&self, org: &str, event_id: &str) -> Result<Vec<Run>> {
        let (org, id) = (org.to_string(), event_id.to_string());
        self.read(move |c, _| {
            list(
                c,
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND event_id = ?2 ORDER BY id"
                ),
                &[&org, &id],
                run_from_row,
            )
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64> {
        self.read(|c, _| {
            Ok(c.query_row(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
