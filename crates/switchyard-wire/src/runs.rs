//! Runs: preview input, and the trace record of a run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::executor::*;
use switchyard_core::time::to_rfc3339;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunIn {
    #[schema(value_type = Object)]
    #[serde(default)]
    pub input: Value,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RunOut {
    pub id: String,
    pub executor: String,
    pub version: u32,
    pub event_id: Option<String>,
    /// The synchronous hook whose call made the run, if a call did.
    pub hook: Option<String>,
    /// `succeeded` or `failed`.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    pub error: Option<String>,
    /// For a failed run, what kind of failure it was: `code` (it threw, exited non-zero, did
    /// not compile or gave what is not JSON; for an API call, the API answered an error),
    /// `timeout`, `memory`, `output_limit`, `cancelled` (its caller went away), `no_room` (the
    /// organization's share had no room in time) or `crashed` (it could not run, or its
    /// process died). Absent for runs stored before kinds were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
    pub duration_ms: f64,
    pub at: String,
}

impl From<&Run> for RunOut {
    fn from(r: &Run) -> Self {
        RunOut {
            id: r.id.as_str().to_owned(),
            executor: r.executor.clone(),
            version: r.version,
            event_id: r.event_id.as_ref().map(|id| id.as_str().to_owned()),
            hook: r.hook.clone(),
            status: match r.status {
                RunStatus::Succeeded => "succeeded".into(),
                RunStatus::Failed => "failed".into(),
            },
            input: r.input.clone(),
            output: r.output.clone(),
            error: r.error.clone(),
            failure: r.failure.map(|f| f.as_str().to_string()),
            logs: r.logs.clone(),
            stderr: r.stderr.clone(),
            exit: r.exit,
            duration_ms: r.duration_ms,
            at: to_rfc3339(r.at),
        }
    }
}
