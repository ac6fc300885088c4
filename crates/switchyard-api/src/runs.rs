//! Runs: running an executor now with a given input (a preview), and reading one run's trace.

use crate::AppState;
use crate::error::{ApiResult, path_id};
use crate::extract::{Auth, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use switchyard_core::Role;
use switchyard_core::ids::RunId;
pub use switchyard_wire::runs::*;

/// Run an executor now with a given input (a preview). The answer is the run's trace record;
/// a failure of the code is a 200 with `status: failed` and the reason.
#[utoipa::path(post, tag = "executors", path = "/v1/orgs/{org}/executors/{name}/run", request_body = RunIn, responses((status = 200, body = RunOut)))]
pub async fn run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RunIn>,
) -> ApiResult<Json<RunOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let run = s.hub.run_executor(&org, &name, body.input).await?;
    Ok(Json(RunOut::from(&run)))
}

/// Read one run.
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/runs/{id}", responses((status = 200, body = RunOut)))]
pub async fn get_run(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<RunOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let run = s
        .reads
        .get_run(&org, &path_id(RunId::parse(&id), "run")?)
        .await?;
    Ok(Json(RunOut::from(&run)))
}
