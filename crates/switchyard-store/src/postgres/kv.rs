//! Per-organization key-value storage for executors, and the run log.

use super::*;
use switchyard_core::executor::Run;

#[async_trait]
impl KvStorage for PgStore {
    async fn kv_get(&self, org: &OrgId, key: &str) -> Result<Option<serde_json::Value>> {
        let c = self.conn().await?;
        let row = Db::C(&c)
            .opt_row(
                "SELECT value FROM kv WHERE org_id = $1 AND key = $2",
                &[org, &key],
            )
            .await?;
        row.map(|r| {
            serde_json::from_str(get(&r, 0)?)
                .map_err(|e| StoreError::database(format!("corrupt stored value of `{key}`: {e}")))
        })
        .transpose()
    }

    async fn kv_set(
        &self,
        org: &OrgId,
        key: &str,
        value: &serde_json::Value,
        max_bytes: u64,
    ) -> Result<()> {
        let value = value.to_string();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // The organization's row first: its key-value writes take turns on its byte count.
        let used: i64 = get(
            &db.row("SELECT kv_bytes FROM orgs WHERE id = $1 FOR UPDATE", &[org])
                .await?,
            0,
        )?;
        let old: i64 = match db
            .opt_row(
                "SELECT (octet_length(key) + octet_length(value))::bigint FROM kv
                 WHERE org_id = $1 AND key = $2",
                &[org, &key],
            )
            .await?
        {
            Some(r) => get(&r, 0)?,
            None => 0,
        };
        let new = (key.len() + value.len()) as i64;
        check_kv_quota(used, old, new, max_bytes)?;
        db.exec(
            "INSERT INTO kv (org_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, key) DO UPDATE SET value = excluded.value,
               updated_at = excluded.updated_at",
            &[org, &key, &value, &now_ms()],
        )
        .await?;
        db.exec(
            "UPDATE orgs SET kv_bytes = GREATEST(kv_bytes - $2 + $3, 0) WHERE id = $1",
            &[org, &old, &new],
        )
        .await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn kv_delete(&self, org: &OrgId, key: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        let old = db
            .opt_row(
                "DELETE FROM kv WHERE org_id = $1 AND key = $2
                 RETURNING (octet_length(key) + octet_length(value))::bigint",
                &[org, &key],
            )
            .await?;
        if let Some(r) = &old {
            let old: i64 = get(r, 0)?;
            db.exec(
                "UPDATE orgs SET kv_bytes = GREATEST(kv_bytes - $2, 0) WHERE id = $1",
                &[org, &old],
            )
            .await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(old.is_some())
    }
}

#[async_trait]
impl RunLog for PgStore {
    async fn record_run(&self, run: &Run) -> Result<()> {
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                &format!(
                    "INSERT INTO runs ({RUN_COLS})
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
                ),
                &[
                    &run.id,
                    &run.org_id,
                    &run.executor,
                    &i64::from(run.version),
                    &run.event_id,
                    &run_status_str(&run.status),
                    &run.input.to_string(),
                    &run.output.as_ref().map(|o| o.to_string()),
                    &run.error,
                    &serde_json::to_string(&run.logs).unwrap_or_default(),
                    &run.stderr,
                    &run.exit.map(i64::from),
                    &run.duration_ms,
                    &run.at,
                    &run.hook,
                    &run.failure
                        .map(switchyard_core::executor::RunFailure::as_str),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_run(&self, org: &OrgId, id: &RunId) -> Result<Run> {
        naming(Missing::Run, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!("SELECT {RUN_COLS} FROM runs WHERE org_id = $1 AND id = $2"),
                    &[org, id],
                )
                .await?;
            run_from_row(&r)
        })
        .await
    }

    async fn runs_for_event(&self, org: &OrgId, event_id: &EventId) -> Result<Vec<Run>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE org_id = $1 AND event_id = $2 ORDER BY id"
                ),
                &[org, event_id],
            )
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn purge_runs(&self, org: &OrgId, before: i64, limit: u32) -> Result<u64> {
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                "DELETE FROM runs WHERE id IN
                 (SELECT id FROM runs WHERE org_id = $1 AND event_id IS NULL AND at < $2 LIMIT $3)",
                &[org, &before, &i64::from(limit)],
            )
            .await
    }
}
