//! The writer thread: write jobs, group commit, and how a caller's job reaches the thread.

use super::*;

pub(super) type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// What a write job runs: given the writer's context it runs and returns whether it succeeded
/// and how to answer its caller once the commit is known; given `None` (no transaction could be
/// begun) it only prepares the failure answer.
type Run = Box<dyn FnOnce(Option<&mut WriterCtx>) -> (bool, Completion) + Send>;

/// Statements from which a job is heavy.
const HEAVY_JOB: usize = 32;

/// A write job, and whether it is heavy: many statements that commit together or not at all
/// (a publish's events and their deliveries). Chunks of attempt results stay light.
pub(super) struct Job {
    run: Run,
    heavy: bool,
}

/// What write jobs run against: the writer's connection, the key secrets are sealed with, and
/// the events handed out that someone still holds.
pub(super) struct WriterCtx {
    pub(super) conn: Connection,
    pub(super) key: MasterKey,
    /// Events handed out with deliveries, by `seq`, as long as any delivery in memory holds
    /// them: a thousand endpoints pulling the same event share one copy of it.
    pub(super) events: std::collections::HashMap<i64, std::sync::Weak<Event>>,
    /// Set by the checkpoint thread when the WAL has grown past [`WAL_RESTART_FRAMES`]: the
    /// writer restarts it from the start between two groups ([`restart_wal`]).
    pub(super) wal_long: Arc<AtomicBool>,
}

/// WAL frames (pages) from which the writer restarts the log: 16,384 pages of 4 KiB, 64 MiB,
/// the size `journal_size_limit` truncates the file back to.
pub(super) const WAL_RESTART_FRAMES: i64 = 16_384;
/// How long a restart waits for readers still reading the log before trying again later.
const WAL_RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes the jobs waiting, at most one heavy one per group (it leads its group; a second
/// waits to lead the next), and commits each group once.
pub(super) fn writer_loop(mut ctx: WriterCtx, rx: mpsc::Receiver<Job>) {
    let mut next_lead: Option<Job> = None;
    loop {
        let first = match next_lead.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let (mut lead, mut rest) = (None, Vec::new());
        if first.heavy {
            lead = Some(first);
        } else {
            rest.push(first);
        }
        while rest.len() + usize::from(lead.is_some()) < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) if job.heavy && lead.is_none() => lead = Some(job),
                Ok(job) if job.heavy => {
                    next_lead = Some(job);
                    break;
                }
                Ok(job) => rest.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut ctx, lead, rest);
        if ctx.wal_long.swap(false, Ordering::Relaxed) {
            restart_wal(&ctx.conn);
        }
    }
}

/// Checkpoints the whole WAL and has the next transaction write it from its start again.
///
/// SQLite restarts the log only when a write transaction begins while every frame in it has
/// been copied to the database; under a steady stream of groups the checkpoint thread never
/// catches up in the instant between one commit and the next `BEGIN`, and the file grew without
/// bound (2.4 GB during a fan-out to 1,000 endpoints). The writer is the only writer, so here,
/// between two groups, there is none to wait for: this copies what the checkpoint thread has
/// not yet and waits (briefly) for readers still on old frames. A reader holding on longer
/// only postpones the restart to the checkpoint thread's next report.
fn restart_wal(conn: &Connection) {
    if let Err(e) = conn.busy_timeout(WAL_RESTART_WAIT) {
        tracing::warn!(error = %e, "cannot bound the WAL restart's wait");
        return;
    }
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => metrics::counter!("switchyard_store_wal_restarts_total").increment(1),
        Ok(_) => tracing::debug!("WAL restart postponed: a reader is still on old frames"),
        Err(e) => tracing::warn!(error = %e, "WAL restart failed"),
    }
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::error!(error = %e, "cannot restore the writer's busy timeout");
    }
}

/// Runs one group in one transaction and answers each job once it is committed. The lead job
/// runs first and without a savepoint of its own: a failure rolls the transaction back, which
/// then holds nothing else. Every other job runs in its own savepoint, so that its failure
/// leaves the others' writes. (A savepoint held over many statements costs each statement's
/// end a walk of the statement journal: a heavy job in one would cost time growing with the
/// square of its size.)
fn commit_group(ctx: &mut WriterCtx, lead: Option<Job>, rest: Vec<Job>) {
    let group = rest.len() + usize::from(lead.is_some());
    let mut done = Vec::with_capacity(group);
    let mut open = false;
    if let Some(job) = lead {
        if let Err(e) = begin(ctx, group) {
            return fail_all(std::iter::once(job).chain(rest), &e);
        }
        let (ok, completion) = (job.run)(Some(ctx));
        if ok {
            done.push(completion);
            open = true;
        } else {
            if let Err(e) = ctx.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "a failed write job's transaction did not roll back");
            }
            // It answers its own error.
            completion(Ok(()));
        }
    }
    if !rest.is_empty() && !open {
        if let Err(e) = begin(ctx, rest.len()) {
            return fail_all(rest.into_iter(), &e);
        }
        open = true;
    }
    if !open {
        return;
    }
    for job in rest {
        let _ = run_cached(&ctx.conn, "SAVEPOINT job");
        let (ok, completion) = (job.run)(Some(ctx));
        let ended = if ok {
            run_cached(&ctx.conn, "RELEASE job")
        } else {
            run_cached(&ctx.conn, "ROLLBACK TO job")
                .and_then(|_| run_cached(&ctx.conn, "RELEASE job"))
        };
        if let Err(e) = ended {
            tracing::error!(error = %e, "a write job's savepoint did not end");
        }
        done.push(completion);
    }
    let commit = ctx.conn.execute_batch("COMMIT").map_err(StoreError::from);
    if commit.is_err() {
        let _ = ctx.conn.execute_batch("ROLLBACK");
    }
    metrics::histogram!("switchyard_store_group_commit_size").record(done.len() as f64);
    for c in done {
        c(commit.clone());
    }
}

/// Begins the write transaction of a group of `jobs`.
fn begin(ctx: &WriterCtx, jobs: usize) -> Result<()> {
    ctx.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
        tracing::error!(error = %e, jobs, "cannot begin a write transaction");
        StoreError::from(e)
    })
}

/// Answers each of `jobs` with `error` (no transaction could be begun for them).
fn fail_all(jobs: impl Iterator<Item = Job>, error: &StoreError) {
    for job in jobs {
        let (_, answer) = (job.run)(None);
        answer(Err(error.clone()));
    }
}

// ---------------------------------------------------------------- row mapping

impl WriterCtx {
    pub(super) fn load_event_by_seq(&self, seq: i64) -> Result<Event> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE seq = ?1"))?;
        Ok(stmt.query_row([seq], event_from_row)?)
    }

    /// The event `seq`, shared with every delivery in memory that holds it already.
    pub(super) fn shared_event(&mut self, seq: i64) -> Result<Arc<Event>> {
        if let Some(e) = self.events.get(&seq).and_then(std::sync::Weak::upgrade) {
            return Ok(e);
        }
        let e = Arc::new(self.load_event_by_seq(seq)?);
        self.remember(&e);
        Ok(e)
    }

    /// Lets later claims share `event`. Entries nobody holds any more are swept as the map grows.
    pub(super) fn remember(&mut self, event: &Arc<Event>) {
        if self.events.len() >= 4096 && self.events.len().is_power_of_two() {
            self.events.retain(|_, w| w.strong_count() > 0);
        }
        self.events.insert(event.seq, Arc::downgrade(event));
    }
}

impl SqliteStore {
    /// Runs `f` on the writer thread inside the next group commit; answers once that commit is
    /// on disk (or failed).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let rx = self.submit(f)?;
        self.finish(rx).await
    }

    /// Hands `f` to the writer at once, so that jobs submitted one after another share a group
    /// commit; [`SqliteStore::finish`] waits for its answer.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T>>> {
        self.submit_job(false, f)
    }

    /// [`SqliteStore::write`] for a job that may be heavy (many statements: see
    /// [`HEAVY_JOB`]); a heavy job leads a group of its own.
    pub(super) async fn write_sized<T: Send + 'static>(
        &self,
        statements: usize,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let rx = self.submit_job(statements >= HEAVY_JOB, f)?;
        self.finish(rx).await
    }

    fn submit_job<T: Send + 'static>(
        &self,
        heavy: bool,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let run: Run = Box::new(move |ctx| {
            let r = match ctx {
                Some(ctx) => f(ctx),
                None => Err(StoreError::database("cannot begin a write transaction")),
            };
            let ok = r.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => r,
                    Err(StoreError::Database { message, source }) => Err(StoreError::Database {
                        message: format!("commit failed: {message}"),
                        source,
                    }),
                    Err(e) => Err(e),
                });
            });
            (ok, done)
        });
        let job = Job { run, heavy };
        let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Waits for the answer of a submitted job (after its commit).
    pub(super) async fn finish<T>(
        &self,
        rx: tokio::sync::oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that writes `n` rows tagged `tag` to the test table, then fails when asked to.
    fn rows(
        tag: &'static str,
        n: usize,
        fail: bool,
    ) -> impl FnOnce(&mut WriterCtx) -> Result<()> + Send + 'static {
        move |ctx| {
            for i in 0..n {
                ctx.conn
                    .prepare_cached("INSERT INTO t (tag, i) VALUES (?1, ?2)")?
                    .execute(params![tag, i as i64])?;
            }
            if fail {
                return Err(StoreError::database(format!("{tag} fails")));
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_heavy_job_leaves_nothing_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().expect("dir");
        let (key, _) = MasterKey::generate();
        let store = SqliteStore::open(&dir.path().join("db.sqlite"), key).expect("open");
        store
            .write(|ctx| {
                Ok(ctx
                    .conn
                    .execute_batch("CREATE TABLE t (tag TEXT, i INTEGER)")?)
            })
            .await
            .expect("table");
        // The writer is busy with a slow job while the others queue: they form the next group
        // (a heavy job leads it, the second heavy one leads the one after).
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let slow = store
            .submit(move |_| {
                let _ = started_tx.send(());
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .expect("slow");
        started_rx.recv().expect("the writer started the slow job");
        let light_ok = store.submit(rows("light-ok", 2, false)).expect("submit");
        let heavy_bad = store
            .submit_job(true, rows("heavy-bad", 3 * HEAVY_JOB, true))
            .expect("submit");
        let light_bad = store.submit(rows("light-bad", 2, true)).expect("submit");
        let heavy_ok = store
            .submit_job(true, rows("heavy-ok", 3 * HEAVY_JOB, false))
            .expect("submit");
        let heavy_bad_too = store
            .submit_job(true, rows("heavy-bad-too", 3 * HEAVY_JOB, true))
            .expect("submit");
        store.finish(slow).await.expect("slow");
        store.finish(light_ok).await.expect("light-ok committed");
        store.finish(heavy_ok).await.expect("heavy-ok committed");
        for (what, rx) in [
            ("heavy-bad", heavy_bad),
            ("light-bad", light_bad),
            ("heavy-bad-too", heavy_bad_too),
        ] {
            let e = store.finish(rx).await.expect_err(what);
            assert!(e.to_string().contains("fails"), "{what}: {e}");
        }
        let counts: Vec<(String, i64)> = store
            .write(|ctx| {
                let mut stmt = ctx
                    .conn
                    .prepare("SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag")?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
            .expect("counts");
        assert_eq!(
            counts,
            [
                ("heavy-ok".to_string(), 3 * HEAVY_JOB as i64),
                ("light-ok".to_string(), 2)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_near_its_restart_size_under_writes_that_never_pause() {
        // Small figures, for a short test: restart at 1 MiB (256 pages of 4 KiB), checkpoint
        // every 20 ms.
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("db.sqlite");
        let (key, _) = MasterKey::generate();
        let every = std::time::Duration::from_millis(20);
        let store = SqliteStore::open_with(&path, key, every, 256).expect("open");
        store
            .write(|ctx| Ok(ctx.conn.execute_batch("CREATE TABLE t (b BLOB)")?))
            .await
            .expect("table");
        // 64 writers, each job 16 KiB of new pages, the next job submitted as soon as the last
        // commits: the writer always has a group waiting, as under a steady publish load. 40
        // MiB in all, forty times the restart size.
        let wal = dir.path().join("db.sqlite-wal");
        let largest = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watch = {
            let (wal, largest) = (wal.clone(), largest.clone());
            tokio::spawn(async move {
                loop {
                    if let Ok(m) = std::fs::metadata(&wal) {
                        largest.fetch_max(m.len(), Ordering::Relaxed);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
        };
        let mut writers = Vec::new();
        for _ in 0..64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..40 {
                    store
                        .write(|ctx| {
                            for _ in 0..4 {
                                ctx.conn
                                    .prepare_cached("INSERT INTO t (b) VALUES (randomblob(4096))")?
                                    .execute([])?;
                            }
                            Ok(())
                        })
                        .await
                        .expect("write");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        watch.abort();
        let largest = largest
            .load(Ordering::Relaxed)
            .max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        // The restart size, plus what is written while the checkpoint thread's report reaches
        // the writer: a generous 12 MiB (a loaded machine may delay the checkpoint thread),
        // against the 40 MiB a log that is never restarted grows to.
        assert!(
            largest < 12 * 1024 * 1024,
            "the WAL grew to {} MiB",
            largest / (1024 * 1024)
        );
        let rows: i64 = store
            .write(|ctx| {
                Ok(ctx
                    .conn
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
            })
            .await
            .expect("count");
        assert_eq!(rows, 64 * 40 * 4, "every write is kept");
    }
}
