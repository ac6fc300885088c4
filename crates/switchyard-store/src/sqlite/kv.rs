//! Per-organization key-value storage for executors.

use super::*;

#[async_trait]
impl KvStorage for SqliteStore {
    async fn kv_get(&self, org: &OrgId, key: &str) -> Result<Option<Value>> {
        let (org, key) = (org.clone(), key.to_string());
        self.read(move |c, _| {
            let v: Option<String> = c
                .prepare_cached("SELECT value FROM kv WHERE org_id = ?1 AND key = ?2")?
                .query_row(params![&org, &key], |r| r.get(0))
                .optional()?;
            v.map(|s| {
                serde_json::from_str(&s).map_err(|e| {
                    StoreError::database(format!("corrupt stored value of `{key}`: {e}"))
                })
            })
            .transpose()
        })
        .await
    }

    async fn kv_set(&self, org: &OrgId, key: &str, value: &Value, max_bytes: u64) -> Result<()> {
        let (org, key, value) = (org.clone(), key.to_string(), value.to_string());
        self.write(move |ctx| {
            let c = &ctx.conn;
            let old: i64 = c
                .prepare_cached(
                    "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM kv
                     WHERE org_id = ?1 AND key = ?2",
                )?
                .query_row(params![&org, &key], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let used: i64 = c
                .prepare_cached("SELECT kv_bytes FROM orgs WHERE id = ?1")?
                .query_row([&org], |r| r.get(0))?;
            let new = (key.len() + value.len()) as i64;
            check_kv_quota(used, old, new, max_bytes)?;
            c.prepare_cached(
                "INSERT INTO kv (org_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (org_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![org, key, value, now_ms()])?;
            c.prepare_cached("UPDATE orgs SET kv_bytes = max(kv_bytes - ?2 + ?3, 0) WHERE id = ?1")?
                .execute(params![org, old, new])?;
            Ok(())
        })
        .await
    }

    async fn kv_delete(&self, org: &OrgId, key: &str) -> Result<bool> {
        let (org, key) = (org.clone(), key.to_string());
        self.write(move |ctx| {
            let old: Option<i64> = ctx
                .conn
                .prepare_cached(
                    "DELETE FROM kv WHERE org_id = ?1 AND key = ?2
                     RETURNING length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))",
                )?
                .query_row(params![&org, &key], |r| r.get(0))
                .optional()?;
            if let Some(old) = old {
                ctx.conn
                    .prepare_cached(
                        "UPDATE orgs SET kv_bytes = max(kv_bytes - ?2, 0) WHERE id = ?1",
                    )?
                    .execute(params![org, old])?;
            }
            Ok(old.is_some())
        })
        .await
    }
}
