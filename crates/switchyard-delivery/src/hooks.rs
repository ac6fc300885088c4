//! Event hooks: deliveries whose target is an executor, run on the engine's hook runner.

use crate::config::HOOK_MARGIN_MS;
use crate::engine::Engine;
use crate::outcome::hook_decide;
use switchyard_core::DueDelivery;

impl Engine {
    /// Runs an event hook and records it as an attempt of its delivery.
    pub(crate) async fn run_hook(self, job: DueDelivery, executor: String) {
        let inner = self.inner.clone();
        // Its organization's turn for a slot, within its share.
        let permit = tokio::select! {
            p = inner.hook_slots.acquire(&job.org_id, 1, None) => p.ok(),
            _ = inner.cancel.cancelled() => None,
        };
        inner.admission.release_hook_room(&job.org_id, 1);
        let Some(permit) = permit else {
            inner.recorder.release(job.delivery_id);
            return;
        };
        if inner.clock.now_ms() + HOOK_MARGIN_MS > job.lease_until {
            // It waited so long that its claim may lapse before the run ends: left to the
            // claim running out, and claimed again (never run twice at once).
            return self.done(1);
        }
        if inner.cancel.is_cancelled() {
            inner.recorder.release(job.delivery_id);
            return;
        }
        let Some(runner) = inner.hooks.clone() else {
            tracing::error!("an event hook is due but no hook runner is plugged in");
            return self.done(1);
        };
        let this = self.clone();
        // Every line the hook's run logs names its organization, delivery, executor and event.
        let span = tracing::info_span!("event_hook", org = %job.org_id, delivery = %job.delivery_id,
            executor = %executor, event = %job.event.id);
        inner.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let at = this.inner.clock.now_ms();
                let result = runner
                    .run_hook(&job.org_id, &executor, &job.event, None)
                    .await;
                drop(permit);
                let now = this.inner.clock.now_ms();
                let attempt = hook_decide(&job, result, at, now, this.jitter());
                this.inner.recorder.result(attempt, None);
            },
            span,
        ));
    }
}
