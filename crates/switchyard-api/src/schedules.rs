//! Schedules: define them (with the next five fire times in the answer), list, read, delete;
//! and the built-in Enneo schedules.

use crate::AppState;
use crate::error::{ApiError, ApiResult, existing};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::time::now_ms;
use switchyard_core::{Role, Schedule};
use switchyard_wire::List;
pub use switchyard_wire::schedules::*;

/// Schedules one organization may have: each costs the scheduler work on every fire time.
const MAX_SCHEDULES_PER_ORG: u64 = 1_000;

/// A schedule as the API shows it, with its next fire times.
fn out(s: &AppState, schedule: Schedule) -> ScheduleOut {
    let line = schedule.line(s.hub.schedule_settings().seconds).ok();
    ScheduleOut::from(schedule, line.as_ref())
}

/// Create or replace a schedule: a cron line in a time zone that publishes an event of
/// `event_type` with `data` at each fire time, once per fire time.
#[utoipa::path(put, tag = "schedules", path = "/v1/orgs/{org}/schedules/{name}", request_body = ScheduleIn,
    responses((status = 201, body = ScheduleOut), (status = 200, body = ScheduleOut),
              (status = 422, description = "invalid cron line, time zone, event type or data")))]
pub async fn put(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<ScheduleIn>,
) -> ApiResult<(StatusCode, Json<ScheduleOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let existing = existing(s.reads.get_schedule(&org, &name).await)?;
    if existing.is_none() && s.reads.count_schedules(&org).await? >= MAX_SCHEDULES_PER_ORG {
        return Err(ApiError::invalid(format!(
            "an organization has at most {MAX_SCHEDULES_PER_ORG} schedules; delete one first"
        )));
    }
    let seconds = s.hub.schedule_settings().seconds;
    let schedule = Schedule::define(
        &org,
        &name,
        body.into(),
        existing.as_ref(),
        now_ms(),
        seconds,
    )?;
    // What it will publish must pass the event type's schema now, not fail at 2 am.
    let saved = s.hub.put_schedule(&schedule, existing.as_ref()).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(out(&s, saved))))
}

/// Read a schedule, with its next five fire times.
#[utoipa::path(get, tag = "schedules", path = "/v1/orgs/{org}/schedules/{name}", responses((status = 200, body = ScheduleOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<ScheduleOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let schedule = s.reads.get_schedule(&org, &name).await?;
    Ok(Json(out(&s, schedule)))
}

/// List the organization's schedules.
#[utoipa::path(get, tag = "schedules", path = "/v1/orgs/{org}/schedules", responses((status = 200, body = List<ScheduleOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<ScheduleOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let all = s.reads.list_schedules(&org).await?;
    Ok(Json(List::whole(
        all.into_iter().map(|x| out(&s, x)).collect(),
    )))
}

/// Delete a schedule; the events it published stay.
#[utoipa::path(delete, tag = "schedules", path = "/v1/orgs/{org}/schedules/{name}", responses((status = 204)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub.delete_schedule(&org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The built-in schedules (Enneo's Cron events, with exactly its cron lines); enable one with
/// `PUT /v1/orgs/{org}/schedules/{name}` and `{"preset": "CronDay", "timezone": "Europe/Berlin"}`.
#[utoipa::path(get, tag = "schedules", path = "/v1/schedule-presets", responses((status = 200, body = List<SchedulePresetOut>)))]
pub async fn presets(_caller: Auth) -> Json<Vec<SchedulePresetOut>> {
    Json(
        switchyard_core::schedule::schedule_presets()
            .iter()
            .map(Into::into)
            .collect(),
    )
}
