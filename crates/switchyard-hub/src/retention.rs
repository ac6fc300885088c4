//! Retention: events, deliveries, attempts and runs older than the retention are deleted in
//! small batches (one short write each, so publishing is never held up), and the freed space is
//! given back.

use crate::Hub;
use std::time::Duration;
use switchyard_core::time::now_ms;
use switchyard_store::{PurgeBatch, StoreError};

/// How long the hub keeps what it stores, and how it deletes.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Age past which finished events and everything of theirs are deleted; `None` keeps
    /// everything.
    pub max_age: Option<Duration>,
    /// How often retention runs.
    pub interval: Duration,
    /// Events deleted per write.
    pub batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            interval: Duration::from_secs(60),
            batch: 100,
        }
    }
}

impl Hub {
    /// Deletes what is older than the retention now; returns what it deleted.
    pub async fn run_retention(&self) -> Result<PurgeBatch, StoreError> {
        let settings = &self.inner.retention;
        let Some(max_age) = settings.max_age else {
            return Ok(PurgeBatch::default());
        };
        let cutoff = now_ms() - max_age.as_millis() as i64;
        let store = &self.inner.store;
        let mut total = PurgeBatch::default();
        let mut after = 0;
        loop {
            if self.inner.cancel.is_cancelled() {
                break;
            }
            let b = store.purge_events(cutoff, after, settings.batch).await?;
            total.events += b.events;
            total.deliveries += b.deliveries;
            total.attempts += b.attempts;
            total.runs += b.runs;
            after = b.next_after_seq;
            if b.done {
                break;
            }
            // Let publishes in between: each batch is its own short transaction.
            tokio::task::yield_now().await;
        }
        loop {
            let n = store.purge_runs(cutoff, settings.batch).await?;
            total.runs += n;
            if n < u64::from(settings.batch) {
                break;
            }
        }
        if total.events + total.runs > 0 {
            store.reclaim_space().await?;
            metrics::counter!("switchyard_retention_deleted_total", "kind" => "events")
                .increment(total.events);
            metrics::counter!("switchyard_retention_deleted_total", "kind" => "deliveries")
                .increment(total.deliveries);
            metrics::counter!("switchyard_retention_deleted_total", "kind" => "attempts")
                .increment(total.attempts);
            metrics::counter!("switchyard_retention_deleted_total", "kind" => "runs")
                .increment(total.runs);
            tracing::info!(
                events = total.events,
                deliveries = total.deliveries,
                attempts = total.attempts,
                runs = total.runs,
                "retention deleted what is older than the retention"
            );
        }
        Ok(total)
    }

    /// Runs retention every interval until shutdown.
    pub(crate) async fn retention_loop(self) {
        if self.inner.retention.max_age.is_none() {
            return;
        }
        let interval = self.inner.retention.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            match self.run_retention().await {
                Ok(_) | Err(StoreError::Closed) => {}
                Err(e) => {
                    tracing::error!(error = %e, "retention failed; it runs again next interval")
                }
            }
        }
    }
}
