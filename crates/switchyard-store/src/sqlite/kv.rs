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
                    StoreError::Database(format!("corrupt stored value of `{key}`: {e}"))
                })
            })
            .transpose()
        })
        .await
    }

    async fn kv_set(&self, org: &OrgId, key: &str, value: &Value) -> Result<()> {
        let (org, key, value) = (org.clone(), key.to_string(), value.to_string());
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO kv (org_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![org, key, value, now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn kv_delete(&self, org: &OrgId, key: &str) -> Result<bool> {
        let (org, key) = (org.clone(), key.to_string());
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached("DELETE FROM kv WHERE org_id = ?1 AND key = ?2")?
                .execute(params![&org, &key])?
                > 0)
        })
        .await
    }
}
