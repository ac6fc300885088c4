//! The run log.

use super::*;

#[async_trait]
impl RunLog for SqliteStore {
    async fn record_run(&self, run: &Run) -> Result<()> {
        let run = run.clone();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(&format!(
                    "INSERT INTO runs ({RUN_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
                ))?
                .execute(params![
                    run.id,
                    run.org_id,
                    run.executor,
                    run.version,
                    run.event_id,
                    run_status_str(&run.status),
                    run.input.to_string(),
                    run.output.as_ref().map(|o| o.to_string()),
                    run.error,
                    serde_json::to_string(&run.logs).unwrap_or_default(),
                    run.stderr,
                    run.exit,
                    run.duration_ms,
                    run.at,
                    run.hook,
                    run.failure.map(switchyard_core::executor::RunFailure::as_str),
                ])?;
            Ok(())
        })
        .await
    }

    async fn get_run(&self, org: &OrgId, id: &RunId) -> Result<Run> {
        naming(Missing::Run, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org, id], run_from_row)?)
            })
            .await
        })
        .await
    }

    async fn runs_for_event(&self, org: &OrgId, event_id: &EventId) -> Result<Vec<Run>> {
        let (org, id) = (org.clone(), event_id.to_string());
        self.read(move |c, _| {
            list(
                c,
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND event_id = ?2 ORDER BY id"
                ),
                &[&org, &id],
                run_from_row,
            )
        })
        .await
    }

    async fn purge_runs(&self, org: &OrgId, before: i64, limit: u32) -> Result<u64> {
        let org = org.clone();
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached(
                    "DELETE FROM runs WHERE rowid IN
                     (SELECT rowid FROM runs WHERE org_id = ?1 AND event_id IS NULL AND at < ?2 LIMIT ?3)",
                )?
                .execute(params![org, before, limit])? as u64)
        })
        .await
    }
}
