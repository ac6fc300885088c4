//! Schedules: the definition in and out, with the next fire times, and the built-in presets.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::Schedule;
use switchyard_core::schedule::{CronLine, ScheduleDefinition, SchedulePreset};
use switchyard_core::time::to_rfc3339;
use utoipa::ToSchema;

/// A schedule's whole definition (a PUT replaces it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    /// A built-in schedule (`GET /v1/schedule-presets`: Enneo's `CronMinute`, `CronHour`,
    /// `CronDay`, `CronWeek`) that fills `cron`, `event_type` and `description` left out.
    pub preset: Option<String>,
    pub description: Option<String>,
    /// Five fields: minute hour day-of-month month day-of-week (0 or 7 = Sunday, 1 = Monday).
    pub cron: Option<String>,
    /// IANA time zone the line is read in (default `UTC`), e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// The type of the event each fire time publishes.
    pub event_type: Option<String>,
    /// The event's data (default `{}`; at most 64 KiB); checked against the type's schema.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Default `true`.
    pub enabled: Option<bool>,
    /// Fire times missed while no hub ran: `fire_once` (default: one event, late, for the
    /// latest; then on schedule) or `skip`.
    pub misfire: Option<String>,
}

impl From<ScheduleIn> for ScheduleDefinition {
    fn from(s: ScheduleIn) -> Self {
        ScheduleDefinition {
            preset: s.preset,
            description: s.description,
            cron: s.cron,
            timezone: s.timezone,
            event_type: s.event_type,
            data: s.data,
            enabled: s.enabled,
            misfire: s.misfire,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ScheduleOut {
    pub name: String,
    pub description: String,
    pub cron: String,
    pub timezone: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub enabled: bool,
    pub misfire: String,
    /// The next five fire times, in the schedule's time zone (empty while disabled).
    pub next_fire_times: Vec<String>,
    /// The last fire time an event was published for (its id is
    /// `schedule:{name}:{fire time in UTC}`).
    pub last_fired_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ScheduleOut {
    /// The schedule as the API shows it; `line` is its parsed cron line (`None` if it no longer
    /// parses under this hub's settings: no fire times shown).
    pub fn from(s: Schedule, line: Option<&CronLine>) -> Self {
        let next_fire_times = match (line, s.next_fire_at) {
            (Some(l), Some(first)) => std::iter::once(first)
                .chain(l.next_n(first, 4))
                .map(|t| l.local_rfc3339(t))
                .collect(),
            _ => Vec::new(),
        };
        ScheduleOut {
            name: s.name,
            description: s.description,
            cron: s.cron,
            timezone: s.timezone,
            event_type: s.event_type,
            data: s.data,
            enabled: s.enabled,
            misfire: s.misfire.as_str().into(),
            next_fire_times,
            last_fired_at: s.last_fired_at.map(to_rfc3339),
            created_at: to_rfc3339(s.created_at),
            updated_at: to_rfc3339(s.updated_at),
        }
    }
}

/// A built-in schedule.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SchedulePresetOut {
    pub name: String,
    pub cron: String,
    pub event_type: String,
    pub description: String,
}

impl From<&SchedulePreset> for SchedulePresetOut {
    fn from(p: &SchedulePreset) -> Self {
        SchedulePresetOut {
            name: p.name.into(),
            cron: p.cron.into(),
            event_type: p.event_type.into(),
            description: p.description.into(),
        }
    }
}
