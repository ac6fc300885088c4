//! Executors (every version kept), synchronous hooks and the organization's secrets, encrypted.

use super::*;
use switchyard_core::executor::Executor;

#[async_trait]
impl ExecutorCatalog for PgStore {
    async fn put_executor(&self, ex: &Executor) -> Result<Executor> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // Two versions put at once must not both take the same number: the organization's row
        // serializes them.
        db.row("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE", &[&ex.org_id])
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    StoreError::InvalidReference(format!("organization `{}`", ex.org_id))
                }
                other => other,
            })?;
        let latest: Option<i64> = get(
            &db.row(
                "SELECT max(version) FROM executors WHERE org_id = $1 AND name = $2",
                &[&ex.org_id, &ex.name()],
            )
            .await?,
            0,
        )?;
        let version = latest.unwrap_or(0) + 1;
        let now = now_ms();
        db.exec(
            "INSERT INTO executors (org_id, name, version, description, spec, parameters, retries, created_at, tool, packages, packages_state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &ex.org_id,
                &ex.name(),
                &version,
                &ex.description,
                &serde_json::to_string(&ex.spec()).unwrap_or_default(),
                &ex.parameters()
                    .as_ref()
                    .map(|p| serde_json::to_string(p).unwrap_or_default()),
                &ex.retries.map(i64::from),
                &now,
                &ex.tool().map(|t| serde_json::to_string(t).unwrap_or_default()),
                &ex.packages().map(|p| serde_json::to_string(p).unwrap_or_default()),
                &ex.packages_state
                    .as_ref()
                    .map(|s| serde_json::to_string(s).unwrap_or_default()),
            ],
        )
        .await?;
        commit(tx).await?;
        Ok(ex
            .clone()
            .numbered(u32::try_from(version).unwrap_or(u32::MAX), now))
    }

    async fn get_executor(&self, org: &OrgId, name: &str) -> Result<Executor> {
        naming(Missing::Executor, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!(
                        "SELECT {EXECUTOR_COLS} FROM executors WHERE org_id = $1 AND name = $2
                         ORDER BY version DESC LIMIT 1"
                    ),
                    &[org, &name],
                )
                .await?;
            executor_from_row(&r)
        })
        .await
    }

    async fn list_executors(&self, org: &OrgId) -> Result<Vec<Executor>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!(
                    "SELECT DISTINCT ON (name) {EXECUTOR_COLS} FROM executors WHERE org_id = $1
                     ORDER BY name, version DESC"
                ),
                &[org],
            )
            .await?
            .iter()
            .map(executor_from_row)
            .collect()
    }

    async fn executor_versions(&self, org: &OrgId, name: &str) -> Result<Vec<Executor>> {
        naming(Missing::Executor, async {
            let c = self.conn().await?;
            let rows = Db::C(&c)
                .rows(
                    &format!(
                        "SELECT {EXECUTOR_COLS} FROM executors WHERE org_id = $1 AND name = $2
                         ORDER BY version DESC"
                    ),
                    &[org, &name],
                )
                .await?;
            if rows.is_empty() {
                return Err(StoreError::NotFound(Missing::Executor));
            }
            rows.iter().map(executor_from_row).collect()
        })
        .await
    }

    async fn delete_executor(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Executor, async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(pg_err)?;
            let db = Db::T(&tx);
            let n = db
                .exec(
                    "DELETE FROM executors WHERE org_id = $1 AND name = $2",
                    &[org, &name],
                )
                .await?;
            found(n)?;
            // Its event-hook subscriptions go with it.
            db.exec(
                "DELETE FROM subscriptions WHERE org_id = $1 AND executor = $2",
                &[org, &name],
            )
            .await?;
            bump_routing(db, org).await?;
            commit(tx).await
        })
        .await
    }

    async fn set_packages_state(
        &self,
        org: &OrgId,
        name: &str,
        version: u32,
        state: &switchyard_core::packages::PackageState,
    ) -> Result<()> {
        naming(Missing::Executor, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "UPDATE executors SET packages_state = $4 WHERE org_id = $1 AND name = $2 AND version = $3",
                    &[
                        org,
                        &name,
                        &i64::from(version),
                        &serde_json::to_string(state).unwrap_or_default(),
                    ],
                )
                .await?;
            found(n)
        })
        .await
    }

    async fn packages_in_use(&self) -> Result<Vec<String>> {
        let c = self.conn().await?;
        let states: Vec<String> = Db::C(&c)
            .rows(
                "SELECT packages_state FROM executors WHERE packages_state IS NOT NULL",
                &[],
            )
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_>>()?;
        Ok(crate::common::package_keys(&states))
    }

    async fn executors_installing(&self) -> Result<Vec<Executor>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!(
                    "SELECT {EXECUTOR_COLS} FROM executors WHERE packages_state = '{{\"state\":\"installing\"}}'"
                ),
                &[],
            )
            .await?
            .iter()
            .map(executor_from_row)
            .collect()
    }

    async fn put_secret(&self, org: &OrgId, name: &str, value: &str) -> Result<()> {
        let enc = self
            .inner
            .key
            .encrypt(&secret_ctx(org, name), value.as_bytes());
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                "INSERT INTO secrets (org_id, name, value_enc, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, name) DO UPDATE SET value_enc = excluded.value_enc,
                   updated_at = excluded.updated_at",
                &[org, &name, &enc, &now_ms()],
            )
            .await?;
        Ok(())
    }

    async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let Some(r) = Db::C(&c)
            .opt_row(
                "SELECT value_enc FROM secrets WHERE org_id = $1 AND name = $2",
                &[org, &name],
            )
            .await?
        else {
            return Ok(None);
        };
        let plain = self
            .inner
            .key
            .decrypt(&secret_ctx(org, name), get(&r, 0)?)
            .map_err(|e| StoreError::database(format!("secret {name}: {e}")))?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| StoreError::database(format!("secret {name} is not UTF-8")))
    }

    async fn list_secrets(&self, org: &OrgId) -> Result<Vec<(String, i64)>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                "SELECT name, updated_at FROM secrets WHERE org_id = $1 ORDER BY name",
                &[org],
            )
            .await?
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
            .collect()
    }

    async fn delete_secret(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Secret, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "DELETE FROM secrets WHERE org_id = $1 AND name = $2",
                    &[org, &name],
                )
                .await?;
            found(n)
        })
        .await
    }

    async fn put_sync_hook(&self, hook: &SyncHook) -> Result<SyncHook> {
        naming(Missing::Executor, async {
            let c = self.conn().await?;
            let db = Db::C(&c);
            let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
            // One statement: the executor must exist when the hook is written.
            let n = db
                .exec(
                    &format!(
                        "INSERT INTO sync_hooks ({SYNC_HOOK_COLS})
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
                         WHERE EXISTS (SELECT 1 FROM executors WHERE org_id = $1 AND name = $4)
                         ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description, tool = excluded.tool,
                           executor = excluded.executor, timeout_ms = excluded.timeout_ms,
                           cache_ttl_s = excluded.cache_ttl_s, input_schema = excluded.input_schema,
                           output_schema = excluded.output_schema, updated_at = excluded.updated_at"
                    ),
                    &[
                        &hook.org_id,
                        &hook.name,
                        &hook.description,
                        &hook.executor,
                        &i64::from(hook.timeout_ms),
                        &hook.cache_ttl_s.map(i64::from),
                        &json(&hook.input_schema),
                        &json(&hook.output_schema),
                        &hook.created_at,
                        &hook.updated_at,
                        &hook.tool.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default()),
                    ],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::InvalidReference(format!(
                    "no executor `{}` in this organization; create it first",
                    hook.executor
                )));
            }
            Ok(hook.clone())
        })
        .await
    }

    async fn get_sync_hook(&self, org: &OrgId, name: &str) -> Result<SyncHook> {
        naming(Missing::Hook, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!(
                        "SELECT {SYNC_HOOK_COLS} FROM sync_hooks WHERE org_id = $1 AND name = $2"
                    ),
                    &[org, &name],
                )
                .await?;
            sync_hook_from_row(&r)
        })
        .await
    }

    async fn list_sync_hooks(&self, org: &OrgId) -> Result<Vec<SyncHook>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!("SELECT {SYNC_HOOK_COLS} FROM sync_hooks WHERE org_id = $1 ORDER BY name"),
                &[org],
            )
            .await?
            .iter()
            .map(sync_hook_from_row)
            .collect()
    }

    async fn delete_sync_hook(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Hook, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "DELETE FROM sync_hooks WHERE org_id = $1 AND name = $2",
                    &[org, &name],
                )
                .await?;
            found(n)
        })
        .await
    }
}
