//! The writer thread: write jobs, group commit, and how a caller's job reaches the thread.

use super::*;

pub(super) type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A write job. Given the writer's context it runs and returns whether it succeeded and how to
/// answer its caller once the commit is known; given `None` (no transaction could be begun) it
/// only prepares the failure answer.
pub(super) type Job = Box<dyn FnOnce(Option<&mut WriterCtx>) -> (bool, Completion) + Send>;

/// What write jobs run against: the writer's connection, the key secrets are sealed with, and
/// the events handed out that someone still holds.
pub(super) struct WriterCtx {
    pub(super) conn: Connection,
    pub(super) key: MasterKey,
    /// Events handed out with deliveries, by `seq`, as long as any delivery in memory holds
    /// them: a thousand endpoints pulling the same event share one copy of it.
    pub(super) events: std::collections::HashMap<i64, std::sync::Weak<Event>>,
}

pub(super) fn writer_loop(mut ctx: WriterCtx, rx: mpsc::Receiver<Job>) {
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
        metrics::histogram!("switchyard_store_group_commit_size").record(group as f64);
        for c in done {
            c(commit.clone());
        }
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ctx| {
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
