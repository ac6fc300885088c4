//! The rules of schedules: a cron line in an IANA time zone that publishes an event of a given
//! type at each fire time, what happens to fire times missed while no hub ran, the event a
//! fire time makes (its id is the fire time, so it is published once however often it is
//! tried), and the built-in Enneo schedules.
//!
//! Cron lines are parsed and evaluated by `croner`: five fields (minute, hour, day of month,
//! month, day of week with 0 or 7 = Sunday and 1 = Monday), a day of month and a day of week
//! both restricted match either (as in Vixie cron). Fire times are found in local time of the
//! zone, and each local time fires once: a time that a spring-forward skips fires at the first
//! instant after the gap, and a time that a fall-back repeats fires at its first occurrence only
//! (so a `*/30` schedule does not fire during the repeated hour).

use crate::error::CoreError;
use crate::event::{EntityRef, NewEvent};
use crate::ids::is_valid_name;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::Value;

/// How far behind its fire time a schedule may be taken up and still count as on time; later,
/// it was missed (no hub ran) and its `misfire` setting decides.
pub const MISFIRE_GRACE_MS: i64 = 60_000;
/// The largest `data` a schedule may carry, as JSON.
pub const MAX_SCHEDULE_DATA_BYTES: usize = 64 * 1024;

/// What a schedule does about fire times that passed while no hub ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misfire {
    /// Fire once, late, for the latest missed time; then go on as scheduled.
    #[default]
    FireOnce,
    /// Fire nothing for missed times; go on with the next one.
    Skip,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::FireOnce => "fire_once",
            Misfire::Skip => "skip",
        }
    }
    pub fn parse(s: &str) -> Option<Misfire> {
        match s {
            "fire_once" => Some(Misfire::FireOnce),
            "skip" => Some(Misfire::Skip),
            _ => None,
        }
    }
}

/// A schedule of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub org_id: crate::ids::OrgId,
    pub name: String,
    pub description: String,
    pub cron: String,
    /// An IANA time zone name (`Europe/Berlin`); the cron line is read in its local time.
    pub timezone: String,
    pub event_type: String,
    pub data: Value,
    pub enabled: bool,
    pub misfire: Misfire,
    /// The next fire time (ms); `None` while disabled, or when the line never fires again.
    pub next_fire_at: Option<i64>,
    /// The last fire time an event was published for.
    pub last_fired_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a PUT carries: the whole definition.
#[derive(Debug, Clone, Default)]
pub struct ScheduleDefinition {
    /// A built-in schedule ([`schedule_presets`]) whose cron line, event type and description
    /// fill in what the definition leaves out.
    pub preset: Option<String>,
    pub description: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub event_type: Option<String>,
    pub data: Option<Value>,
    pub enabled: Option<bool>,
    pub misfire: Option<String>,
}

/// A parsed cron line in its time zone.
#[derive(Debug, Clone)]
pub struct CronLine {
    cron: Cron,
    tz: Tz,
}

impl CronLine {
    /// Parses a standard five-field line (with `seconds`, a sixth leading field for seconds,
    /// which only tests and development hubs allow) in the IANA zone `timezone`.
    pub fn parse(line: &str, timezone: &str, seconds: bool) -> Result<CronLine, CoreError> {
        let tz: Tz = timezone.parse().map_err(|_| {
            CoreError::invalid(format!(
                "`timezone` must be an IANA time zone such as `Europe/Berlin` or `UTC`, not `{timezone}`"
            ))
        })?;
        let fields = line.split_whitespace().count();
        let want = if seconds { [5, 6] } else { [5, 5] };
        if !want.contains(&fields) || line.trim_start().starts_with('@') {
            return Err(CoreError::invalid(format!(
                "`cron` must have five fields (minute hour day-of-month month day-of-week), not `{line}`"
            )));
        }
        let parser = CronParser::builder()
            .seconds(if seconds {
                Seconds::Optional
            } else {
                Seconds::Disallowed
            })
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(line)
            .map_err(|e| CoreError::invalid(format!("`cron` `{line}` is not valid: {e}")))?;
        Ok(CronLine { cron, tz })
    }

    /// The first fire time strictly after `after_ms`, in ms; `None` if there is none (a line
    /// like `0 0 31 2 *` never fires).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Fire times are whole seconds, whatever fraction `after_ms` has.
        let at = Utc
            .timestamp_millis_opt(after_ms - after_ms.rem_euclid(1000))
            .single()?;
        self.cron
            .find_next_occurrence(&at.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The next `n` fire times after `after_ms`.
    pub fn next_n(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = after_ms;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The last fire time at or before `at_ms` and after `after_ms`, if any.
    pub fn latest_between(&self, after_ms: i64, at_ms: i64) -> Option<i64> {
        let at = Utc
            .timestamp_millis_opt(at_ms - at_ms.rem_euclid(1000))
            .single()?;
        let prev = self
            .cron
            .find_previous_occurrence(&at.with_timezone(&self.tz), true)
            .ok()?
            .timestamp_millis();
        (prev > after_ms).then_some(prev)
    }

    /// `ms` as an RFC 3339 time with the zone's offset (`2026-03-29T03:00:00+02:00`).
    pub fn local_rfc3339(&self, ms: i64) -> String {
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => t
                .with_timezone(&self.tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            None => ms.to_string(),
        }
    }
}

/// What to do now about a schedule whose next fire time is `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The fire time to publish an event for, if any.
    pub fire: Option<i64>,
    /// The schedule's next fire time afterwards.
    pub next: Option<i64>,
}

impl Schedule {
    /// A schedule `name` of `org` from its definition, checked; `existing` keeps its creation
    /// time and last fire time. The next fire time is the first after `now`.
    pub fn define(
        org: &crate::ids::OrgId,
        name: &str,
        mut def: ScheduleDefinition,
        existing: Option<&Schedule>,
        now: i64,
        seconds: bool,
    ) -> Result<Schedule, CoreError> {
        if let Some(preset) = def.preset.take() {
            let Some(p) = schedule_presets().iter().find(|p| p.name == preset) else {
                let known: Vec<&str> = schedule_presets().iter().map(|p| p.name).collect();
                return Err(CoreError::invalid(format!(
                    "no schedule preset `{preset}`; the presets are {}",
                    known.join(", ")
                )));
            };
            def.cron.get_or_insert_with(|| p.cron.to_string());
            def.event_type
                .get_or_insert_with(|| p.event_type.to_string());
            def.description
                .get_or_insert_with(|| p.description.to_string());
        }
        if !is_valid_name(name, 64) {
            return Err(CoreError::invalid(
                "a schedule's name must be 1–64 characters of letters, digits and -_.:@",
            ));
        }
        let cron = def
            .cron
            .ok_or_else(|| CoreError::invalid("`cron` is required (or a `preset`)"))?;
        let timezone = def.timezone.unwrap_or_else(|| "UTC".to_string());
        let line = CronLine::parse(&cron, &timezone, seconds)?;
        let event_type = def
            .event_type
            .ok_or_else(|| CoreError::invalid("`event_type` is required (or a `preset`)"))?;
        crate::event::check_publishable_type(&event_type, "event_type")?;
        let data = def
            .data
            .unwrap_or_else(|| Value::Object(Default::default()));
        let size = data.to_string().len();
        if size > MAX_SCHEDULE_DATA_BYTES {
            return Err(CoreError::invalid(format!(
                "`data` is {size} bytes as JSON; a schedule carries at most {MAX_SCHEDULE_DATA_BYTES}"
            )));
        }
        let misfire = match def.misfire.as_deref() {
            None => Misfire::default(),
            Some(m) => Misfire::parse(m).ok_or_else(|| {
                CoreError::invalid(format!(
                    "`misfire` must be `fire_once` or `skip`, not `{m}`"
                ))
            })?,
        };
        let description = def.description.unwrap_or_default();
        if description.len() > 2000 {
            return Err(CoreError::invalid(
                "`description` must be at most 2000 characters",
            ));
        }
        let enabled = def.enabled.unwrap_or(true);
        Ok(Schedule {
            org_id: org.clone(),
            name: name.to_string(),
            description,
            next_fire_at: if enabled { line.next_after(now) } else { None },
            cron,
            timezone,
            event_type,
            data,
            enabled,
            misfire,
            last_fired_at: existing.and_then(|e| e.last_fired_at),
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at: now,
        })
    }

    /// The schedule's cron line, parsed.
    pub fn line(&self, seconds: bool) -> Result<CronLine, CoreError> {
        CronLine::parse(&self.cron, &self.timezone, seconds)
    }

    /// What to do at `now` with this schedule, due at `due`: when on time (or behind by less
    /// than the grace: a busy scheduler catching up), fire for `due` and go on with the fire
    /// time after it, so no time is lost; when later (no hub ran), fire once for the latest
    /// missed time or skip, as `misfire` says, and go on with the first fire time after `now`.
    pub fn plan(&self, line: &CronLine, due: i64, now: i64) -> FirePlan {
        if now - due <= MISFIRE_GRACE_MS {
            return FirePlan {
                fire: Some(due),
                next: line.next_after(due),
            };
        }
        let next = line.next_after(now.max(due));
        let fire = match self.misfire {
            Misfire::Skip => None,
            Misfire::FireOnce => Some(line.latest_between(due - 1, now).unwrap_or(due)),
        };
        FirePlan { fire, next }
    }

    /// The event fire time `at` makes. Its id is the schedule and the fire time, so however
    /// many nodes or restarts try to publish it, it is stored once.
    pub fn event_at(&self, at: i64) -> NewEvent {
        NewEvent {
            // A checked schedule name, `@` and digits: a valid event id.
            id: crate::ids::EventId::stored(schedule_event_id(&self.name, at)),
            event_type: self.event_type.clone(),
            timestamp: at,
            entity: EntityRef {
                kind: Some("Schedule".to_string()),
                id: Some(self.name.clone()),
            },
            data: self.data.clone(),
        }
    }
}

/// The id of the event schedule `name` publishes for fire time `at`.
pub fn schedule_event_id(name: &str, at: i64) -> String {
    let t = Utc
        .timestamp_millis_opt(at)
        .single()
        .map(|t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string());
    format!("schedule:{name}:{t}")
}

/// A built-in schedule.
#[derive(Debug, Clone, Copy)]
pub struct SchedulePreset {
    pub name: &'static str,
    pub cron: &'static str,
    pub event_type: &'static str,
    pub description: &'static str,
}

/// Enneo's Cron events (seed 000), with exactly its cron lines.
pub fn schedule_presets() -> &'static [SchedulePreset] {
    &[
        SchedulePreset {
            name: "CronMinute",
            cron: "*/5 * * * 1-5",
            event_type: "CronMinute",
            description: "Every 5 minutes on weekdays (Enneo's CronMinute)",
        },
        SchedulePreset {
            name: "CronHour",
            cron: "1 * * * *",
            event_type: "CronHour",
            description: "Every hour at the first minute (Enneo's CronHour)",
        },
        SchedulePreset {
            name: "CronDay",
            cron: "0 2 * * 1-5",
            event_type: "CronDay",
            description: "Every Monday to Friday at 2 am (Enneo's CronDay)",
        },
        SchedulePreset {
            name: "CronWeek",
            cron: "0 2 * * 6",
            event_type: "CronWeek",
            description: "Every Saturday at 2 am (Enneo's CronWeek)",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> crate::ids::OrgId {
        crate::ids::OrgId::stored("o".into())
    }
    use chrono::NaiveDate;

    /// `y-m-d h:m` in zone `tz`, as ms (the earlier instant if ambiguous).
    fn local(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        let tz: Tz = tz.parse().expect("zone");
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("date");
        tz.from_local_datetime(&naive)
            .earliest()
            .expect("exists")
            .timestamp_millis()
    }

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_millis()
    }

    fn next_times(line: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        let l = CronLine::parse(line, tz, false).expect("line");
        l.next_n(utc(after), n)
            .into_iter()
            .map(|t| l.local_rfc3339(t))
            .collect()
    }

    #[test]
    fn the_enneo_lines_fire_when_the_seed_says() {
        // Friday 2026-11-20 23:58 UTC onwards.
        assert_eq!(
            next_times("*/5 * * * 1-5", "UTC", "2026-11-20T23:52:00Z", 3),
            [
                "2026-11-20T23:55:00+00:00",
                "2026-11-23T00:00:00+00:00",
                "2026-11-23T00:05:00+00:00"
            ],
            "every 5 minutes on weekdays: nothing on Saturday and Sunday"
        );
        assert_eq!(
            next_times("1 * * * *", "UTC", "2026-11-21T10:01:00Z", 2),
            ["2026-11-21T11:01:00+00:00", "2026-11-21T12:01:00+00:00"]
        );
        assert_eq!(
            next_times("0 2 * * 1-5", "Europe/Berlin", "2026-11-20T12:00:00Z", 2),
            ["2026-11-23T02:00:00+01:00", "2026-11-24T02:00:00+01:00"],
            "Monday to Friday: after Friday comes Monday"
        );
        assert_eq!(
            next_times("0 2 * * 6", "Europe/Berlin", "2026-11-20T12:00:00Z", 2),
            ["2026-11-21T02:00:00+01:00", "2026-11-28T02:00:00+01:00"],
            "6 is Saturday, not Friday"
        );
        let names: Vec<_> = schedule_presets()
            .iter()
            .map(|p| (p.name, p.cron))
            .collect();
        assert_eq!(
            names,
            [
                ("CronMinute", "*/5 * * * 1-5"),
                ("CronHour", "1 * * * *"),
                ("CronDay", "0 2 * * 1-5"),
                ("CronWeek", "0 2 * * 6"),
            ]
        );
        // 0 and 7 are both Sunday.
        assert_eq!(
            next_times("0 9 * * 0", "UTC", "2026-11-20T00:00:00Z", 1),
            next_times("0 9 * * 7", "UTC", "2026-11-20T00:00:00Z", 1)
        );
        assert_eq!(
            next_times("0 9 * * 0", "UTC", "2026-11-20T00:00:00Z", 1),
            ["2026-11-22T09:00:00+00:00"]
        );
    }

    #[test]
    fn daylight_saving_in_berlin() {
        let tz = "Europe/Berlin";
        // Spring forward, Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            next_times("30 2 * * *", tz, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ],
            "a skipped time fires once, right after the gap"
        );
        assert_eq!(
            next_times("0 * * * *", tz, "2026-03-29T00:30:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
            "hourly: the hour that does not exist does not fire"
        );
        // Fall back, Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET.
        assert_eq!(
            next_times("30 2 * * *", tz, "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
                "2026-10-27T02:30:00+01:00"
            ],
            "a repeated time fires once, at its first occurrence"
        );
        assert_eq!(
            next_times("0 2 * * 1-5", tz, "2026-10-23T12:00:00Z", 1),
            ["2026-10-26T02:00:00+01:00"]
        );
        // Local 09:00 stays 09:00 across the change: 08:00 UTC before, 07:00 UTC... in summer.
        let summer = CronLine::parse("0 9 * * *", tz, false).expect("line");
        assert_eq!(
            summer.next_after(local(tz, 2026, 3, 28, 12, 0)),
            Some(utc("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            summer.next_after(local(tz, 2026, 3, 27, 12, 0)),
            Some(utc("2026-03-28T08:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_in_new_york() {
        let tz = "America/New_York";
        // Spring forward, Sunday 2026-03-08: 02:00 EST becomes 03:00 EDT.
        assert_eq!(
            next_times("30 2 * * *", tz, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ],
            "a skipped time fires once, right after the gap"
        );
        // Fall back, Sunday 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        assert_eq!(
            next_times("30 1 * * *", tz, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
        assert_eq!(
            next_times("*/30 * * * *", tz, "2026-11-01T04:50:00Z", 5),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T02:30:00-05:00",
                "2026-11-01T03:00:00-05:00"
            ],
            "each local time fires once: the repeated hour does not fire again"
        );
    }

    #[test]
    fn bad_lines_and_zones_are_refused_clearly() {
        let err = |line: &str, tz: &str| match CronLine::parse(line, tz, false) {
            Err(CoreError::Invalid(m)) => m,
            other => panic!("{line} in {tz}: {other:?}"),
        };
        assert!(err("* * * *", "UTC").contains("five fields"));
        assert!(err("0 * * * * *", "UTC").contains("five fields"));
        assert!(err("@daily", "UTC").contains("five fields"));
        assert!(err("61 * * * *", "UTC").contains("not valid"));
        assert!(err("0 2 * * 8", "UTC").contains("not valid"));
        assert!(err("0 2 * * 1", "Mars/Olympus").contains("IANA"));
        assert!(CronLine::parse("*/2 * * * * *", "UTC", true).is_ok());
    }

    #[test]
    fn a_late_schedule_fires_once_or_skips() {
        let def = ScheduleDefinition {
            cron: Some("*/5 * * * *".into()),
            event_type: Some("Tick".into()),
            ..Default::default()
        };
        let start = utc("2026-11-23T10:00:00Z");
        let s = Schedule::define(&o(), "tick", def.clone(), None, start, false).expect("define");
        assert_eq!(s.next_fire_at, Some(utc("2026-11-23T10:05:00Z")));
        let line = s.line(false).expect("line");
        let due = utc("2026-11-23T10:05:00Z");
        // On time (a little late is on time).
        assert_eq!(
            s.plan(&line, due, due + 400),
            FirePlan {
                fire: Some(due),
                next: Some(utc("2026-11-23T10:10:00Z"))
            }
        );
        // Behind within the grace (a busy scheduler): every fire time still fires, in turn.
        let fast = Schedule::define(
            &o(),
            "fast",
            ScheduleDefinition {
                cron: Some("* * * * * *".into()),
                ..def.clone()
            },
            None,
            start,
            true,
        )
        .expect("define");
        let fast_line = fast.line(true).expect("line");
        assert_eq!(
            fast.plan(&fast_line, start + 1000, start + 3500),
            FirePlan {
                fire: Some(start + 1000),
                next: Some(start + 2000)
            }
        );
        // Down from 10:04 to 10:27: once, for 10:25, then 10:30.
        let now = utc("2026-11-23T10:27:00Z");
        assert_eq!(
            s.plan(&line, due, now),
            FirePlan {
                fire: Some(utc("2026-11-23T10:25:00Z")),
                next: Some(utc("2026-11-23T10:30:00Z"))
            }
        );
        let skip = Schedule {
            misfire: Misfire::Skip,
            ..s.clone()
        };
        assert_eq!(
            skip.plan(&line, due, now),
            FirePlan {
                fire: None,
                next: Some(utc("2026-11-23T10:30:00Z"))
            }
        );
        assert_eq!(
            s.event_at(due).id,
            "schedule:tick:2026-11-23T10:05:00Z",
            "the fire time is the event's identity"
        );
        // Presets fill in; what the definition gives wins.
        let p = Schedule::define(
            &o(),
            "nightly",
            ScheduleDefinition {
                preset: Some("CronDay".into()),
                timezone: Some("Europe/Berlin".into()),
                ..Default::default()
            },
            None,
            start,
            false,
        )
        .expect("preset");
        assert_eq!(
            (p.cron.as_str(), p.event_type.as_str()),
            ("0 2 * * 1-5", "CronDay")
        );
        assert_eq!(p.next_fire_at, Some(utc("2026-11-24T01:00:00Z")));
        let off = Schedule::define(
            &o(),
            "off",
            ScheduleDefinition {
                enabled: Some(false),
                ..def
            },
            None,
            start,
            false,
        )
        .expect("disabled");
        assert_eq!(off.next_fire_at, None);
    }
}
