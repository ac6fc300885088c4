//! Executors: versioned custom code and API calls, defined, read and deleted.

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::Role;
use switchyard_core::executor::SpecDraft;
use switchyard_hub::ExecutorDefinition;
use switchyard_wire::List;
pub use switchyard_wire::executors::*;

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
    let def = ExecutorDefinition {
        name,
        spec: SpecDraft::from(&body),
        description: body.description,
        parameters: body.parameters,
        retries: body.retries,
        tool: body.tool.map(Into::into),
        packages: body.packages,
    };
    let ex = s.hub.define_executor(&org, def).await?;
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
