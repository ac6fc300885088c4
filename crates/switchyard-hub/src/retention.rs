//! Retention: each organization's events, deliveries, attempts and runs older than its
//! retention are deleted, and the payloads of its delivered events older than its payload
//! retention are dropped, in small batches (one short write each, so publishing is never held
//! up); the freed space is given back.

use crate::Hub;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_core::ids::OrgId;
use switchyard_core::time::now_ms;
use switchyard_store::{PurgeBatch, StoreError};

/// How long the hub keeps what it stores, and how it deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Age past which finished events and everything of theirs are deleted, for organizations
    /// that set none of their own; `None` keeps everything. Organizations' own admins may not
    /// set a longer one.
    pub max_age: Option<Duration>,
    /// Age past which the payload of an event whose every delivery succeeded is dropped, for
    /// organizations that set none of their own; `None` keeps payloads as long as their events.
    pub payload_max_age: Option<Duration>,
    /// How often retention runs.
    pub interval: Duration,
    /// Events deleted per write.
    pub batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            payload_max_age: None,
            interval: Duration::from_secs(60),
            batch: 100,
        }
    }
}

/// What one retention pass did, over every organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPass {
    pub purged: PurgeBatch,
    pub payloads_dropped: u64,
}

/// Per organization, the sequence up to which every event's payload is dropped or gone, so a
/// pass does not read the same events again; it lives in memory (after a restart, the first
/// pass reads from the start).
#[derive(Debug, Default)]
pub(crate) struct PayloadMarks(std::sync::Mutex<HashMap<OrgId, i64>>);

impl Hub {
    /// Deletes and drops what is past each organization's retentions now.
    pub async fn run_retention(&self) -> Result<RetentionPass, StoreError> {
        let settings = &self.inner.retention;
        let store = &self.inner.store;
        let hub_max = settings.max_age.map(|d| d.as_secs());
        let hub_payload = settings.payload_max_age.map(|d| d.as_secs());
        let mut pass = RetentionPass::default();
        for org in store.list_orgs().await? {
            if self.inner.cancel.is_cancelled() {
                break;
            }
            if let Some(age) = org.retention(hub_max) {
                let b = self.purge_org(&org.id, cutoff(age)).await?;
                let t = &mut pass.purged;
                t.events += b.events;
                t.deliveries += b.deliveries;
                t.attempts += b.attempts;
                t.runs += b.runs;
            }
            if let Some(age) = org.payload_retention(hub_payload) {
                pass.payloads_dropped += self.drop_org_payloads(&org.id, cutoff(age)).await?;
            }
        }
        let t = &pass.purged;
        if t.events + t.runs > 0 {
            store.reclaim_space().await?;
        }
        for (kind, n) in [
            ("events", t.events),
            ("deliveries", t.deliveries),
            ("attempts", t.attempts),
            ("runs", t.runs),
            ("payloads", pass.payloads_dropped),
        ] {
            metrics::counter!("switchyard_retention_deleted_total", "kind" => kind).increment(n);
        }
        if t.events + t.runs + pass.payloads_dropped > 0 {
            tracing::info!(
                events = t.events,
                deliveries = t.deliveries,
                attempts = t.attempts,
                runs = t.runs,
                payloads = pass.payloads_dropped,
                "retention deleted what is past its organization's retention"
            );
        }
        Ok(pass)
    }

    /// Deletes one organization's events and runs received before `before`.
    async fn purge_org(&self, org: &OrgId, before: i64) -> Result<PurgeBatch, StoreError> {
        let store = &self.inner.store;
        let batch = self.inner.retention.batch;
        let mut total = PurgeBatch::default();
        let mut after = 0;
        while !self.inner.cancel.is_cancelled() {
            let b = store.purge_events(org, before, after, batch).await?;
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
            let n = store.purge_runs(org, before, batch).await?;
            total.runs += n;
            if n < u64::from(batch) {
                break;
            }
        }
        Ok(total)
    }

    /// Drops the payloads of one organization's delivered events received before `before`.
    async fn drop_org_payloads(&self, org: &OrgId, before: i64) -> Result<u64, StoreError> {
        let store = &self.inner.store;
        let marks = &self.inner.payload_marks.0;
        let start = marks
            .lock()
            .ok()
            .and_then(|m| m.get(org).copied())
            .unwrap_or(0);
        let (mut after, mut first_kept, mut dropped) = (start, None, 0);
        while !self.inner.cancel.is_cancelled() {
            let b = store
                .drop_payloads(org, before, after, self.inner.retention.batch)
                .await?;
            dropped += b.dropped;
            first_kept = first_kept.or(b.first_kept);
            after = b.next_after_seq;
            if b.done {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Next time, start at the first event that kept its payload, or past the last one read.
        let mark = first_kept.map_or(after, |seq| seq - 1);
        if let Ok(mut m) = marks.lock() {
            m.insert(org.clone(), mark);
        }
        Ok(dropped)
    }

    /// Runs retention every interval until shutdown.
    pub(crate) async fn retention_loop(self) {
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

/// The receipt time before which data `age_s` old is past its retention.
fn cutoff(age_s: u64) -> i64 {
    now_ms().saturating_sub(i64::try_from(age_s.saturating_mul(1000)).unwrap_or(i64::MAX))
}
