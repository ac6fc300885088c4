//! The scheduler: publishes each schedule's event at its fire times, exactly once per fire time.
//!
//! Every node runs this loop. It sleeps until the earliest next fire time of all schedules (at
//! most a second, so that schedules changed on another node are seen), takes the schedules
//! that are due, publishes the event of each fire time through [`Hub::publish`] and then moves
//! the schedule on. The event's id is the schedule and the fire time, so two nodes firing the
//! same time, or a node that restarts after publishing but before moving the schedule on,
//! store it once; moving on is compare-and-set, so a schedule is moved on once. A schedule is
//! moved on only after its event is committed: a crash before that fires it again, never not
//! at all.

use crate::{Hub, HubError};
use futures_util::StreamExt;
use std::time::Duration;
use switchyard_core::Schedule;

/// Most schedules taken up in one pass.
const DUE_BATCH: u32 = 500;
/// Schedules fired at the same time within a pass.
const CONCURRENT_FIRES: usize = 64;
/// The longest the loop sleeps without looking at the store.
const MAX_SLEEP_MS: i64 = 1_000;

/// How the scheduler reads cron lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleSettings {
    /// Accept a sixth, leading field for seconds (tests and development; off by default).
    pub seconds: bool,
}

impl Hub {
    /// This hub's schedule settings.
    pub fn schedule_settings(&self) -> ScheduleSettings {
        self.inner.schedules
    }

    /// Whether what `schedule` publishes passes the checks every published event passes (its
    /// type's schema as it is now): a schedule does not fail at 2 am for a reason known when
    /// it was saved.
    pub async fn check_schedule(&self, schedule: &Schedule) -> Result<(), HubError> {
        let event = schedule.event_at(self.inner.clock.now_ms());
        self.check_events(&schedule.org_id, vec![event])
            .await
            .map(|_| ())
    }

    /// A schedule was created, changed or deleted: the scheduler looks again now.
    pub(crate) fn schedules_changed(&self) {
        self.inner.schedule_wake.notify_one();
        self.announce(switchyard_store::Notice::Schedules);
    }

    pub(crate) async fn schedule_loop(self) {
        let cancel = self.inner.cancel.clone();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let now = self.inner.clock.now_ms();
            let moved_on = match self.fire_due(now).await {
                Ok(all) => all,
                Err(e) => {
                    tracing::error!(error = %e, "firing schedules failed; trying again shortly");
                    false
                }
            };
            // A schedule left due (its publish failed) is tried again after a pause, not in a
            // tight loop.
            let wait = match self.inner.store.next_fire_at().await {
                Ok(Some(t)) if moved_on => (t - self.inner.clock.now_ms()).clamp(0, MAX_SLEEP_MS),
                _ => MAX_SLEEP_MS,
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = self.inner.schedule_wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Fires every schedule due at `now`, up to [`CONCURRENT_FIRES`] at once (their commits
    /// share fsyncs); returns whether every one of them moved on.
    async fn fire_due(&self, now: i64) -> Result<bool, HubError> {
        let due = self.inner.store.due_schedules(now, DUE_BATCH).await?;
        let results: Vec<Result<bool, HubError>> = futures_util::stream::iter(due)
            .map(|s| async move { self.fire(&s, now).await })
            .buffer_unordered(CONCURRENT_FIRES)
            .collect()
            .await;
        let mut all = true;
        for r in results {
            all &= r?;
        }
        Ok(all)
    }

    /// Fires one due schedule and moves it on; returns `false` if it stays due (its event could
    /// not be published).
    async fn fire(&self, s: &Schedule, now: i64) -> Result<bool, HubError> {
        let Some(due) = s.next_fire_at else {
            return Ok(true);
        };
        let store = &self.inner.store;
        let line = match s.line(self.inner.schedules.seconds) {
            Ok(l) => l,
            Err(e) => {
                // Saved under other settings (seconds allowed then, not now): it stops, loudly.
                tracing::error!(org = %s.org_id, schedule = s.name, error = %e, "schedule cannot be read; it no longer fires");
                store
                    .advance_schedule(&s.org_id, &s.name, due, None, None)
                    .await?;
                return Ok(true);
            }
        };
        let plan = s.plan(&line, due, now);
        if let Some(at) = plan.fire {
            match self.publish(&s.org_id, vec![s.event_at(at)]).await {
                Ok(published) => {
                    let late = (self.inner.clock.now_ms() - at).max(0) as f64 / 1000.0;
                    metrics::histogram!("switchyard_schedule_delay_seconds").record(late);
                    let duplicate = published.first().is_some_and(|p| p.duplicate);
                    metrics::counter!("switchyard_schedule_fires_total",
                        "outcome" => if duplicate { "duplicate" } else { "published" })
                    .increment(1);
                }
                Err(e @ HubError::EventRefused { .. }) => {
                    // Its type's schema changed since it was saved and refuses its data: this
                    // fire is refused as a publish would be (trying again cannot help); the
                    // schedule moves on and fires again when its data or the schema is fixed.
                    tracing::error!(org = %s.org_id, schedule = s.name, error = %e, "a scheduled event was refused");
                    metrics::counter!("switchyard_schedule_fires_total", "outcome" => "refused")
                        .increment(1);
                }
                Err(e) => {
                    // Not moved on: tried again on the next pass (and, past the grace, as
                    // `misfire` says).
                    tracing::warn!(org = %s.org_id, schedule = s.name, error = %e, "publishing a scheduled event failed");
                    return Ok(false);
                }
            }
        } else {
            tracing::info!(
                org = %s.org_id,
                schedule = s.name,
                missed_since = due,
                "missed fire times skipped (misfire: skip)"
            );
            metrics::counter!("switchyard_schedule_fires_total", "outcome" => "skipped")
                .increment(1);
        }
        store
            .advance_schedule(&s.org_id, &s.name, due, plan.next, plan.fire)
            .await?;
        Ok(true)
    }
}
