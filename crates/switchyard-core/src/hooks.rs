//! The contract between the delivery engine and whatever runs event hooks (the executor
//! crate): the engine hands over an event and an executor name and gets a [`HookResult`]. Kept
//! in the domain so that neither side depends on the other.

use crate::event::Event;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// What running an event hook produced.
#[derive(Debug, Clone)]
pub struct HookResult {
    /// The run's id, when a run was made (it is in the event's trace).
    pub run_id: Option<crate::ids::RunId>,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
    /// A failure that no retry can mend (the executor does not exist).
    pub permanent: bool,
    /// The executor's own retry setting (`Some(0)`: never retried).
    pub retries: Option<u32>,
    pub duration_ms: f64,
    /// What the run returned, when it succeeded.
    pub output: Option<serde_json::Value>,
}

/// Runs executors for event hooks; implemented by the executor crate, given to the engine when
/// it is built. A `deadline` earlier than the executor's own timeout stops the run there.
pub trait HookRunner: Send + Sync + 'static {
    fn run_hook<'a>(
        &'a self,
        org: &'a crate::ids::OrgId,
        executor: &'a str,
        event: &'a Event,
        deadline: Option<Instant>,
    ) -> Pin<Box<dyn Future<Output = HookResult> + Send + 'a>>;
}
