//! Schedules and their next fire times: moving one on is a compare-and-set, so of several
//! nodes due to fire the same time only one does.

use super::*;

#[async_trait]
impl ScheduleCatalog for PgStore {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule> {
        let s = schedule;
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                &format!(
                    "INSERT INTO schedules ({SCHEDULE_COLS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description,
                       cron = excluded.cron, timezone = excluded.timezone,
                       event_type = excluded.event_type, data = excluded.data,
                       enabled = excluded.enabled, misfire = excluded.misfire,
                       next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at"
                ),
                &[
                    &s.org_id,
                    &s.name,
                    &s.description,
                    &s.cron,
                    &s.timezone,
                    &s.event_type,
                    &s.data.to_string(),
                    &s.enabled,
                    &s.misfire.as_str(),
                    &s.next_fire_at,
                    &s.last_fired_at,
                    &s.created_at,
                    &s.updated_at,
                ],
            )
            .await?;
        Ok(s.clone())
    }

    async fn get_schedule(&self, org: &OrgId, name: &str) -> Result<Schedule> {
        naming(Missing::Schedule, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!(
                        "SELECT {SCHEDULE_COLS} FROM schedules WHERE org_id = $1 AND name = $2"
                    ),
                    &[org, &name],
                )
                .await?;
            schedule_from_row(&r)
        })
        .await
    }

    async fn list_schedules(&self, org: &OrgId) -> Result<Vec<Schedule>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE org_id = $1 ORDER BY name"),
                &[org],
            )
            .await?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    async fn delete_schedule(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Schedule, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "DELETE FROM schedules WHERE org_id = $1 AND name = $2",
                    &[org, &name],
                )
                .await?;
            found(n)
        })
        .await
    }

    async fn count_schedules(&self, org: &OrgId) -> Result<u64> {
        let c = self.conn().await?;
        let r = Db::C(&c)
            .row("SELECT count(*) FROM schedules WHERE org_id = $1", &[org])
            .await?;
        uint(&r, 0)
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules
                     WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1
                     ORDER BY next_fire_at LIMIT $2"
                ),
                &[&now, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    async fn next_fire_at(&self) -> Result<Option<i64>> {
        let c = self.conn().await?;
        let r = Db::C(&c)
            .row(
                "SELECT min(next_fire_at) FROM schedules WHERE next_fire_at IS NOT NULL",
                &[],
            )
            .await?;
        get(&r, 0)
    }

    async fn advance_schedule(
        &self,
        org: &OrgId,
        name: &str,
        due: i64,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<bool> {
        let c = self.conn().await?;
        let n = Db::C(&c)
            .exec(
                "UPDATE schedules SET next_fire_at = $4, last_fired_at = coalesce($5, last_fired_at)
                 WHERE org_id = $1 AND name = $2 AND next_fire_at = $3",
                &[org, &name, &due, &next, &fired],
            )
            .await?;
        Ok(n == 1)
    }
}
