//! Executors: running integration logic — an API call, or custom code in a sandboxed child
//! process — with the SDK every language shares, and tracing each run.
//!
//! [`Runner::run`] takes one executor version and an input and returns the [`Run`] record,
//! already stored. Failure of user code is data: a syntax error, an exception, a timeout, a
//! memory blow-up or a killed child all end as a failed run with a reason, never as an error of
//! the hub. The [`Broker`] answers the SDK calls of one run: HTTP requests made by the hub (so
//! the egress guard applies), the organization's key-value storage, secrets, calls to other
//! executors (UDFs) and log lines.
//!
//! Files: `runner.rs` (runs, event hooks, output caps), `broker.rs` (SDK calls and their wire
//! answers), `redaction.rs` (secrets out of traces), `process.rs` and `js.rs` (the two ways code
//! runs), `api_call.rs`, `sandbox.rs`, `sandbox_exec.rs` and `cgroups.rs` (isolation and
//! per-run kernel limits), `channel.rs` (bounded reads of what user code sends).

mod api_call;
mod broker;
pub mod capacity;
mod cgroups;
pub mod channel;
mod error;
pub mod index_proxy;
pub mod install;
mod js;
pub mod packages;
mod process;
mod redaction;
mod runner;
pub mod runtime;
pub mod sandbox;
pub mod sandbox_exec;
mod seccomp;
mod self_api;
pub mod warm;

pub use broker::Broker;
pub(crate) use broker::sdk_answer;
pub use error::{ExecError, SetupError};
pub use runner::{Runner, RunnerLimits, Waiting};
pub use self_api::SelfApi;

use serde_json::Value;
pub use switchyard_core::executor::RunFailure;

/// Deepest chain of executors calling executors.
pub const MAX_CALL_DEPTH: usize = 5;
/// Most bytes of an HTTP response body (`sdk.http`, `api_call`); a larger one is an error.
pub const HTTP_BODY_CAP: usize = 1024 * 1024;
/// Most bytes of a run's output (as JSON), of its logs, and of its stdout and stderr; more fails
/// the run.
pub const OUTPUT_CAP: usize = 1024 * 1024;

/// A duration in whole milliseconds for messages, rounded up: a run whose 1000 ms had 999.6 left
/// when it started is said to have run longer than 1000 ms, not 999.
pub(crate) fn whole_ms(d: std::time::Duration) -> u128 {
    d.as_micros().div_ceil(1000)
}

/// Why something of a run failed: the kind, and the words for the trace.
pub type Failed = (RunFailure, String);

/// What a run produced, before it becomes a [`Run`].
#[derive(Debug, Default)]
pub struct Outcome {
    pub output: Option<Value>,
    /// Why it failed (`None`: it succeeded).
    pub failure: Option<Failed>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
}

impl Outcome {
    pub fn failed(kind: RunFailure, error: impl Into<String>) -> Outcome {
        Outcome {
            failure: Some((kind, error.into())),
            ..Default::default()
        }
    }
    /// Marks the run failed (its logs and output so far are kept).
    pub fn fail(&mut self, kind: RunFailure, error: impl Into<String>) {
        self.failure = Some((kind, error.into()));
    }
    /// Marks the run failed with the first reason found: one already given stays.
    pub fn fail_first(&mut self, kind: RunFailure, error: impl FnOnce() -> String) {
        if self.failure.is_none() {
            self.failure = Some((kind, error()));
        }
    }
    pub fn succeeded(output: Value) -> Outcome {
        Outcome {
            output: Some(output),
            ..Default::default()
        }
    }
}
