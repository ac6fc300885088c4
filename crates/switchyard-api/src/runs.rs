//! Runs: running an executor now with a given input (a preview), and reading one run's trace.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::Role;
use switchyard_core::executor::*;
use switchyard_core::time::to_rfc3339;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunIn {
    #[schema(value_type = Object)]
    #[serde(default)]
    pub input: Value,
}

#[derive(Serialize, ToSchema)]
pub struct RunOut {
    pub id: String,
    pub executor: String,
    pub version: u32,
    pub event_id: Option<String>,
    /// `succeeded` or `failed`.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
    pub duration_ms: f64,
    pub at: String,
}

impl From<&Run> for RunOut {
    fn from(r: &Run) -> Self {
        RunOut {
            id: r.id.clone(),
            executor: r.executor.clone(),
            version: r.version,
            event_id: r.event_id.clone(),
            status: match r.status {
                RunStatus::Succeeded => "succeeded".into(),
                RunStatus::Failed => "failed".into(),
            },
            input: r.input.clone(),
            output: r.output.clone(),
            error: r.error.clone(),
            logs: r.logs.clone(),
            stderr: r.stderr.clone(),
            exit: r.exit,
            duration_ms: r.duration_ms,
            at: to_rfc3339(r.at),
        }
    }
}

/// Run an executor now with a given input (a preview). The answer is the run's trace record;
/// a failure of the code is a 200 with `status: failed` and the reason.
#[utoipa::path(post, tag = "executors", path = "/v1/orgs/{org}/executors/{name}/run", request_body = RunIn, responses((status = 200, body = RunOut)))]
pub async fn run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RunIn>,
) -> ApiResult<Json<RunOut>> {
    s.authorize(&p, &org, Role::Admin).await?;
    let ex = s
        .store
        .get_executor(&org, &name)
        .await
        .map_err(|e| ApiError::from_store(e, "executor"))?;
    let run = s.hub.runner().run(&ex, body.input, None).await?;
    Ok(Json(RunOut::from(&run)))
}

/// Read one run.
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/runs/{id}", responses((status = 200, body = RunOut)))]
pub async fn get_run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<RunOut>> {
    s.authorize(&p, &org, Role::Viewer).await?;
    let run = s
        .store
        .get_run(&org, &id)
        .await
        .map_err(|e| ApiError::from_store(e, "run"))?;
    Ok(Json(RunOut::from(&run)))
}
