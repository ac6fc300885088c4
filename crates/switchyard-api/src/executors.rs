//! Executors: versioned custom code and API calls, defined, read and deleted.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::executor::*;
use switchyard_core::{CoreError, Role};
use switchyard_wire::List;
pub use switchyard_wire::executors::*;

fn parse_spec(s: &AppState, body: &ExecutorIn) -> ApiResult<ExecutorSpec> {
    let runner = s.hub.runner();
    let available = |l: Language| {
        runner
            .language_available(l)
            .map_err(|e| CoreError::invalid(e.to_string()))
    };
    let limits = SpecLimits {
        policy: s.hub.clients().policy(),
        max_tmp_mb: runner.max_tmp_mb(),
        language_available: &available,
    };
    Ok(ExecutorSpec::parse(SpecDraft::from(body), &limits)?)
}

/// Create or replace an executor: every PUT stores a new version; 201 when it is the first.
#[utoipa::path(put, tag = "executors", path = "/v1/orgs/{org}/executors/{name}", request_body = ExecutorIn,
    responses((status = 201, body = ExecutorOut, description = "created: its first version"),
        (status = 200, body = ExecutorOut, description = "a new version of an existing executor"),
        (status = 422, description = "invalid executor, or code that does not compile (the interpreter's message and line)")))]
pub async fn put(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<ExecutorIn>,
) -> ApiResult<(StatusCode, Json<ExecutorOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let spec = parse_spec(&s, &body)?;
    let ex = Executor::define(
        &org,
        &name,
        body.description,
        spec,
        body.parameters,
        body.retries,
    )?;
    // Code that does not compile is refused now, with the interpreter's message and line, not at
    // its first event.
    s.hub
        .runner()
        .check_code(&org, &ex.spec)
        .await
        .map_err(|e| {
            if e.starts_with(switchyard_hub::NO_ROOM) {
                // The check could not run: the organization's runs hold its share.
                ApiError::too_many(
                    "runs_busy",
                    format!("the code could not be checked: {e}"),
                    5,
                )
            } else {
                ApiError::invalid(format!("the code does not compile: {e}"))
            }
        })?;
    let saved = s.hub.put_executor(&ex).await?;
    let status = if saved.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ExecutorOut::from(&saved))))
}

/// Read the latest version of an executor.
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/executors/{name}", responses((status = 200, body = ExecutorOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<ExecutorOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let ex = s.reads.get_executor(&org, &name).await?;
    Ok(Json(ExecutorOut::from(&ex)))
}

/// Every version of an executor, newest first: what each one ran and when it was saved.
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/executors/{name}/versions", responses((status = 200, body = List<ExecutorOut>)))]
pub async fn versions(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<List<ExecutorOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let all = s.reads.executor_versions(&org, &name).await?;
    Ok(Json(List::whole(
        all.iter().map(ExecutorOut::from).collect(),
    )))
}

/// List executors (latest versions).
#[utoipa::path(get, tag = "executors", path = "/v1/orgs/{org}/executors", responses((status = 200, body = List<ExecutorOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<ExecutorOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    Ok(Json(List::whole(
        s.reads
            .list_executors(&org)
            .await?
            .iter()
            .map(ExecutorOut::from)
            .collect(),
    )))
}

/// Delete an executor with all its versions.
#[utoipa::path(delete, tag = "executors", path = "/v1/orgs/{org}/executors/{name}", responses((status = 204)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub.delete_executor(&org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
