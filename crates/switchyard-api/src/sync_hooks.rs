//! Synchronous hooks: define them, call them and wait for the answer, empty their cache.

use crate::AppState;
use crate::error::{ApiResult, existing};
use crate::extract::{Auth, JsonBody, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use std::time::Instant;
use switchyard_core::time::now_ms;
use switchyard_core::{Role, SyncHook};
use switchyard_wire::List;
pub use switchyard_wire::sync_hooks::*;

/// Create or replace a synchronous hook: a named front door to an executor that callers run
/// now and wait for.
#[utoipa::path(put, tag = "hooks", path = "/v1/orgs/{org}/hooks/{name}", request_body = SyncHookIn,
    responses((status = 201, body = SyncHookOut), (status = 200, body = SyncHookOut)))]
pub async fn put(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<SyncHookIn>,
) -> ApiResult<(StatusCode, Json<SyncHookOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let existing = existing(s.reads.get_sync_hook(&org, &name).await)?;
    let hook = SyncHook::define(&org, &name, body.into(), existing.as_ref(), now_ms())?;
    let saved = s.hub.put_sync_hook(&hook).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved.into())))
}

/// The ready-made hook definitions (the four ERP look-ups); install one with
/// `PUT /v1/orgs/{org}/hooks/{name}` and `{"preset": …, "executor": …}`.
#[utoipa::path(get, tag = "hooks", path = "/v1/hook-presets", responses((status = 200, body = List<HookPresetOut>)))]
pub async fn presets(_caller: Auth) -> Json<Vec<HookPresetOut>> {
    Json(
        switchyard_core::hook_presets::hook_presets()
            .into_iter()
            .map(Into::into)
            .collect(),
    )
}

/// Read a hook.
#[utoipa::path(get, tag = "hooks", path = "/v1/orgs/{org}/hooks/{name}", responses((status = 200, body = SyncHookOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<SyncHookOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let h = s.reads.get_sync_hook(&org, &name).await?;
    Ok(Json(h.into()))
}

/// List the organization's hooks.
#[utoipa::path(get, tag = "hooks", path = "/v1/orgs/{org}/hooks", responses((status = 200, body = List<SyncHookOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<SyncHookOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let hooks = s.reads.list_sync_hooks(&org).await?;
    Ok(Json(List::whole(
        hooks.into_iter().map(Into::into).collect(),
    )))
}

/// Delete a hook (its executor stays) and forget its cached answers.
#[utoipa::path(delete, tag = "hooks", path = "/v1/orgs/{org}/hooks/{name}", responses((status = 204)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub.delete_sync_hook(&org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Call a hook: the body is its input (any JSON; empty means `null`). Waits for the executor
/// (or the cache) and answers with its output. A failed run is 502 (`hook_failed`, with the
/// run's reason and id), a timeout 504 (`hook_timeout`), input failing the input schema 422
/// (`input_invalid`, nothing runs), output failing the output schema 502 (`output_invalid`).
/// If the caller disconnects, the run is stopped.
///
/// The answer `{output, run_id, cache, duration_ms}` is the contract; `Switchyard-Run-Id` and
/// `Switchyard-Cache` carry the same for callers that read only the body's `output`.
#[utoipa::path(post, tag = "hooks", path = "/v1/orgs/{org}/hooks/{name}/call",
    request_body(content = Object, description = "the hook's input"),
    responses((status = 200, body = HookCallOut, headers(
        ("Switchyard-Run-Id" = String, description = "the run that answered (on a cache hit, the run whose answer was cached)"),
        ("Switchyard-Cache" = String, description = "`hit`, `miss` or `off`"))),
        (status = 422), (status = 502), (status = 504)))]
pub async fn call(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    OptionalJson(input): OptionalJson<Value>,
) -> ApiResult<([(&'static str, String); 2], Json<HookCallOut>)> {
    let started = Instant::now();
    let org = s.authorize(&p, org, Role::Publisher).await?;
    let answer = s.hub.call_hook(&org, &name, input).await?;
    let out = HookCallOut {
        output: answer.output,
        run_id: answer.run_id.into(),
        cache: answer.cache.as_str().into(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    let headers = [
        ("switchyard-run-id", out.run_id.to_string()),
        ("switchyard-cache", out.cache.to_string()),
    ];
    Ok((headers, Json(out)))
}

/// Forget every cached answer of a hook: the next calls run the executor.
#[utoipa::path(delete, tag = "hooks", path = "/v1/orgs/{org}/hooks/{name}/cache", responses((status = 204)))]
pub async fn empty_cache(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.reads.get_sync_hook(&org, &name).await?;
    s.hub.empty_hook_cache(&org, &name);
    Ok(StatusCode::NO_CONTENT)
}
