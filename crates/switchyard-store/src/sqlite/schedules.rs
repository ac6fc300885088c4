//! Schedules and their next fire times.

use super::*;

#[async_trait]
impl ScheduleCatalog for SqliteStore {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule> {
        let s = schedule.clone();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(&format!(
                    "INSERT INTO schedules ({SCHEDULE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description,
                       cron = excluded.cron, timezone = excluded.timezone, event_type = excluded.event_type,
                       data = excluded.data, enabled = excluded.enabled, misfire = excluded.misfire,
                       next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at"
                ))?
                .execute(params![
                    s.org_id,
                    s.name,
                    s.description,
                    s.cron,
                    s.timezone,
                    s.event_type,
                    s.data.to_string(),
                    s.enabled,
                    s.misfire.as_str(),
                    s.next_fire_at,
                    s.last_fired_at,
                    s.created_at,
                    s.updated_at
                ])?;
            Ok(s)
        })
        .await
    }

    async fn get_schedule(&self, org: &OrgId, name: &str) -> Result<Schedule> {
        naming(Missing::Schedule, async {
            let (org, name) = (org.clone(), name.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules WHERE org_id = ?1 AND name = ?2"
                ))?
                .query_row(params![org, name], schedule_from_row)?)
            })
            .await
        })
        .await
    }

    async fn list_schedules(&self, org: &OrgId) -> Result<Vec<Schedule>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE org_id = ?1 ORDER BY name"),
                &[&org],
                schedule_from_row,
            )
        })
        .await
    }

    async fn delete_schedule(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Schedule, async {
            let (org, name) = (org.clone(), name.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM schedules WHERE org_id = ?1 AND name = ?2")?
                    .execute(params![&org, &name])?;
                found(n)
            })
            .await
        })
        .await
    }

    async fn count_schedules(&self, org: &OrgId) -> Result<u64> {
        let org = org.clone();
        self.read(move |c, _| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM schedules WHERE org_id = ?1")?
                    .query_row(params![org], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        self.read(move |c, _| {
            list(
                c,
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules
                     WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?1
                     ORDER BY next_fire_at LIMIT ?2"
                ),
                &[&now, &limit],
                schedule_from_row,
            )
        })
        .await
    }

    async fn next_fire_at(&self) -> Result<Option<i64>> {
        self.read(move |c, _| {
            Ok(c.prepare_cached(
                "SELECT min(next_fire_at) FROM schedules WHERE next_fire_at IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn advance_schedule(
        &self,
        org: &OrgId,
        name: &str,
        due: i64,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<bool> {
        let (org, name) = (org.clone(), name.to_string());
        self.write(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE schedules SET next_fire_at = ?4, last_fired_at = coalesce(?5, last_fired_at)
                     WHERE org_id = ?1 AND name = ?2 AND next_fire_at = ?3",
                )?
                .execute(params![org, name, due, next, fired])?;
            Ok(n == 1)
        })
        .await
    }
}
