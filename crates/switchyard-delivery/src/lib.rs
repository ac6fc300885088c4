//! The delivery engine: takes due deliveries, makes signed HTTP attempts, records the outcomes.
//!
//! Shape of the machine (`docs/design/delivery-engine.md` tells it at length):
//! - **Sources of work.** New deliveries arrive straight from a publish, already claimed for this
//!   node in the publishing transaction, in room reserved before the commit
//!   ([`Engine::reserve`], [`Engine::dispatch_reserved`]); retries and anything handed back
//!   come from the store: the poller ([`Engine::run_once`]) finds the endpoints with work due
//!   and each endpoint's worker claims its own as it has room.
//! - **Admission** (`admission.rs`). Counters only: what each endpoint, each organization and
//!   the engine hold in memory, the event hooks waiting, and the unsettled work
//!   [`Engine::until_idle`] waits on.
//! - **One worker per endpoint** (`worker.rs`). Each endpoint gets an `EndpointWorker` with its
//!   own queue: `next_job` (still ours to send?), `admit` (flow control from `flow.rs` — a
//!   congestion window, pauses after 429/503, `max_rps`, all on the engine's clock — and the
//!   organization's request slot) and `send` (one task per attempt), so a slow or dead
//!   endpoint fills only its own queue and never holds back deliveries to healthy ones.
//! - **One recorder** (`recorder.rs`). Attempt results go to a single task that writes them in
//!   batches (one store call, one commit, for many attempts) and reports what they caused (an
//!   endpoint disabled) as [`EngineEvent`]s. The engine never publishes: whoever composes it
//!   (the hub) listens and decides. Failed attempts are logged once per target and cause every
//!   few minutes (`failure_log.rs`), never a line per retry.
//! - **Event hooks** (`hooks.rs`). Deliveries to an executor run through the [`HookRunner`] the
//!   engine is built with, on their own concurrency limit, so a slow executor never delays
//!   webhooks.
//! - **Synchronous deliveries** (`sync.rs`). A `sync` subscription's delivery is attempted once
//!   by the publish that made it ([`Engine::attempt_now`]), outside the queues, and recorded
//!   before the publish answers.
//! - **Outcomes** (`outcome.rs`): an HTTP response or a hook result becomes the delivery's next
//!   state, with the retry schedule's jitter drawn from the engine's own random source.
//! - **Time and lifecycle.** The engine reads time from the [`Clock`] it is given and draws
//!   jitter from a seedable generator, so tests move time instead of waiting, and wait for
//!   [`Engine::until_idle`] instead of polling. One cancellation token stops every task; a task
//!   tracker holds every attempt and hook run, which shutdown waits for up to its grace period.
//!
//! [`HookRunner`]: switchyard_core::hooks::HookRunner
//! [`Clock`]: switchyard_core::time::Clock

mod admission;
mod config;
mod engine;
#[cfg(test)]
mod engine_tests;
mod failure_log;
mod flow;
mod hooks;
pub mod http;
mod leases;
mod outcome;
pub mod profile;
mod recorder;
mod sync;
mod worker;

pub use admission::Reserved;
pub use config::{
    ConfigError, DEFAULT_LEASE_MS, EngineConfig, HOOK_MARGIN_MS, MIN_LEASE_MS, REQUEST_MARGIN_MS,
};
pub use engine::{Engine, EngineEvent};
