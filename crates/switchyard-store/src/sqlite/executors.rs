//! Executors (every version kept) and the organization's secrets, encrypted.

use super::*;

#[async_trait]
impl ExecutorCatalog for SqliteStore {
    async fn put_executor(&self, ex: &Executor) -> Result<Executor> {
        let ex = ex.clone();
        self.write(move |ctx| {
            let latest: Option<u32> = ctx
                .conn
                .prepare_cached("SELECT max(version) FROM executors WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![ex.org_id, ex.name()], |r| r.get(0))?;
            let version = latest.unwrap_or(0) + 1;
            let now = now_ms();
            ctx.conn
                .prepare_cached(
                    "INSERT INTO executors (org_id, name, version, description, spec, parameters, retries, created_at, tool, packages, packages_state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    ex.org_id,
                    ex.name(),
                    version,
                    ex.description,
                    serde_json::to_string(&ex.spec()).unwrap_or_default(),
                    ex.parameters().as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                    ex.retries,
                    now,
                    ex.tool().map(|t| serde_json::to_string(t).unwrap_or_default()),
                    ex.packages().map(|p| serde_json::to_string(p).unwrap_or_default()),
                    ex.packages_state.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default())
                ])?;
            Ok(ex.numbered(version, now))
        })
        .await
    }

    async fn get_executor(&self, org: &OrgId, name: &str) -> Result<Executor> {
        naming(Missing::Executor, async {
            let (org, name) = (org.clone(), name.to_string());
            self.read(move |c, _| {
                let ex = c
                    .prepare_cached(&format!(
                        "SELECT {EXECUTOR_COLS} FROM executors WHERE org_id = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1"
                    ))?
                    .query_row(params![org, name], executor_from_row)?;
                Ok(ex)
            })
            .await
        })
        .await
    }

    async fn executor_versions(&self, org: &OrgId, name: &str) -> Result<Vec<Executor>> {
        naming(Missing::Executor, async {
            let (org, name) = (org.clone(), name.to_string());
            self.read(move |c, _| {
                let rows = list(
                    c,
                    &format!(
                        "SELECT {EXECUTOR_COLS} FROM executors WHERE org_id = ?1 AND name = ?2 ORDER BY version DESC"
                    ),
                    &[&org, &name],
                    executor_from_row,
                )?;
                if rows.is_empty() {
                    return Err(StoreError::NotFound(Missing::Executor));
                }
                Ok(rows)
            })
            .await
        })
        .await
    }

    async fn list_executors(&self, org: &OrgId) -> Result<Vec<Executor>> {
        let org = org.clone();
        self.read(move |c, _| {
            let rows = list(
                c,
                &format!(
                    "SELECT {EXECUTOR_COLS} FROM executors e WHERE org_id = ?1 AND version =
                     (SELECT max(version) FROM executors x WHERE x.org_id = e.org_id AND x.name = e.name) ORDER BY name"
                ),
                &[&org],
                executor_from_row,
            )?;
            Ok(rows)
        })
        .await
    }

    async fn delete_executor(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Executor, async {
            let (org, name) = (org.clone(), name.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM executors WHERE org_id = ?1 AND name = ?2")?
                    .execute(params![&org, &name])?;
                found(n)?;
                // Its event-hook subscriptions go with it.
                ctx.conn
                    .prepare_cached(
                        "DELETE FROM subscriptions WHERE org_id = ?1 AND executor = ?2",
                    )?
                    .execute(params![&org, &name])?;
                bump_routing(&ctx.conn, &org)?;
                Ok(())
            })
            .await
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
            let (org, name) = (org.clone(), name.to_string());
            let state = serde_json::to_string(state).unwrap_or_default();
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE executors SET packages_state = ?4 WHERE org_id = ?1 AND name = ?2 AND version = ?3",
                    )?
                    .execute(params![org, name, version, state])?;
                found(n)
            })
            .await
        })
        .await
    }

    async fn packages_in_use(&self) -> Result<Vec<String>> {
        self.read(move |c, _| {
            let states: Vec<String> = list(
                c,
                "SELECT packages_state FROM executors WHERE packages_state IS NOT NULL",
                &[],
                |r| r.get(0),
            )?;
            Ok(crate::common::package_keys(&states))
        })
        .await
    }

    async fn executors_installing(&self) -> Result<Vec<Executor>> {
        self.read(move |c, _| {
            list(
                c,
                &format!(
                    "SELECT {EXECUTOR_COLS} FROM executors WHERE packages_state = '{{\"state\":\"installing\"}}'"
                ),
                &[],
                executor_from_row,
            )
        })
        .await
    }

    async fn put_sync_hook(&self, hook: &SyncHook) -> Result<SyncHook> {
        naming(Missing::Executor, async {
            let hook = hook.clone();
            self.write(move |ctx| {
                let exists: Option<i64> = ctx
                    .conn
                    .prepare_cached("SELECT 1 FROM executors WHERE org_id = ?1 AND name = ?2 LIMIT 1")?
                    .query_row(params![hook.org_id, hook.executor], |r| r.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Err(StoreError::InvalidReference(format!(
                        "no executor `{}` in this organization; create it first",
                        hook.executor
                    )));
                }
                let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO sync_hooks ({SYNC_HOOK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description, tool = excluded.tool,
                           executor = excluded.executor, timeout_ms = excluded.timeout_ms,
                           cache_ttl_s = excluded.cache_ttl_s, input_schema = excluded.input_schema,
                           output_schema = excluded.output_schema, updated_at = excluded.updated_at"
                    ))?
                    .execute(params![
                        hook.org_id,
                        hook.name,
                        hook.description,
                        hook.executor,
                        hook.timeout_ms,
                        hook.cache_ttl_s,
                        json(&hook.input_schema),
                        json(&hook.output_schema),
                        hook.created_at,
                        hook.updated_at,
                        hook.tool.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default())
                    ])?;
                Ok(hook)
            })
            .await
        })
        .await
    }

    async fn get_sync_hook(&self, org: &OrgId, name: &str) -> Result<SyncHook> {
        naming(Missing::Hook, async {
            let (org, name) = (org.clone(), name.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {SYNC_HOOK_COLS} FROM sync_hooks WHERE org_id = ?1 AND name = ?2"
                ))?
                .query_row(params![org, name], sync_hook_from_row)?)
            })
            .await
        })
        .await
    }

    async fn list_sync_hooks(&self, org: &OrgId) -> Result<Vec<SyncHook>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                &format!("SELECT {SYNC_HOOK_COLS} FROM sync_hooks WHERE org_id = ?1 ORDER BY name"),
                &[&org],
                sync_hook_from_row,
            )
        })
        .await
    }

    async fn delete_sync_hook(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Hook, async {
            let (org, name) = (org.clone(), name.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM sync_hooks WHERE org_id = ?1 AND name = ?2")?
                    .execute(params![&org, &name])?;
                found(n)
            })
            .await
        })
        .await
    }

    async fn put_secret(&self, org: &OrgId, name: &str, value: &str) -> Result<()> {
        let (org, name, value) = (org.clone(), name.to_string(), value.to_string());
        self.write(move |ctx| {
            let enc = ctx.key.encrypt(&secret_ctx(&org, &name), value.as_bytes());
            ctx.conn
                .prepare_cached(
                    "INSERT INTO secrets (org_id, name, value_enc, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, name) DO UPDATE SET value_enc = excluded.value_enc, updated_at = excluded.updated_at",
                )?
                .execute(params![org, name, enc, now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn get_secret(&self, org: &OrgId, name: &str) -> Result<Option<String>> {
        let (org, name) = (org.clone(), name.to_string());
        self.read(move |c, k| {
            let enc: Option<Vec<u8>> = c
                .prepare_cached("SELECT value_enc FROM secrets WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![&org, &name], |r| r.get(0))
                .optional()?;
            match enc {
                None => Ok(None),
                Some(b) => {
                    let plain = k
                        .decrypt(&secret_ctx(&org, &name), &b)
                        .map_err(|e| StoreError::database(format!("secret {name}: {e}")))?;
                    String::from_utf8(plain)
                        .map(Some)
                        .map_err(|_| StoreError::database(format!("secret {name} is not UTF-8")))
                }
            }
        })
        .await
    }

    async fn list_secrets(&self, org: &OrgId) -> Result<Vec<(String, i64)>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                "SELECT name, updated_at FROM secrets WHERE org_id = ?1 ORDER BY name",
                &[&org],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }

    async fn delete_secret(&self, org: &OrgId, name: &str) -> Result<()> {
        naming(Missing::Secret, async {
            let (org, name) = (org.clone(), name.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM secrets WHERE org_id = ?1 AND name = ?2")?
                    .execute(params![&org, &name])?;
                found(n)?;
                Ok(())
            })
            .await
        })
        .await
    }
}
