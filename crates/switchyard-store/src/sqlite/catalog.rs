//! Organizations, API keys and event types (the catalog's tenant aggregate), and health.

use super::*;

/// Free pages below which nothing is given back (4 MiB at the default page size).
const RECLAIM_MIN_PAGES: i64 = 1024;
/// Most pages given back per call, so one call is a short write.
const RECLAIM_STEP_PAGES: i64 = 2048;

#[async_trait]
impl OrgCatalog for SqliteStore {
    async fn create_org(&self, org: &Org) -> Result<Org> {
        let org = org.clone();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO orgs (id, name, created_at, retention_s, payload_retention_s, limits)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    org.id,
                    org.name,
                    org.created_at,
                    org.retention_s,
                    org.payload_retention_s,
                    serde_json::to_string(&org.limits).unwrap_or_default()
                ])
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("organization `{}` exists", org.id))
                    }
                    other => other,
                })?;
            Ok(org)
        })
        .await
    }

    async fn usage(&self, org: &OrgId) -> Result<switchyard_core::limits::Usage> {
        let org = org.to_string();
        self.read(move |c, _| {
            let sql = usage_sql("?1", |col| format!("length(CAST({col} AS BLOB))"));
            let v = c.prepare_cached(&sql)?.query_row([org], |r| {
                Ok([
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                ])
            })?;
            Ok(usage_from(v))
        })
        .await
    }

    async fn get_org(&self, id: &OrgId) -> Result<Org> {
        naming(Missing::Organization, async {
            let id = id.to_string();
            self.read(move |c, _| {
                Ok(
                    c.prepare_cached(&format!("SELECT {ORG_COLS} FROM orgs WHERE id = ?1"))?
                        .query_row([id], org_from_row)?,
                )
            })
            .await
        })
        .await
    }

    async fn update_org(&self, org: &Org) -> Result<Org> {
        naming(Missing::Organization, async {
            let org = org.clone();
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE orgs SET name = ?2, retention_s = ?3, payload_retention_s = ?4, limits = ?5
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        org.id,
                        org.name,
                        org.retention_s,
                        org.payload_retention_s,
                        serde_json::to_string(&org.limits).unwrap_or_default()
                    ])?;
                if n == 0 {
                    return Err(StoreError::NotFound(Missing::Organization));
                }
                Ok(org)
            })
            .await
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|c, _| {
            list(
                c,
                &format!("SELECT {ORG_COLS} FROM orgs ORDER BY id"),
                &[],
                org_from_row,
            )
        })
        .await
    }

    async fn create_api_key(
        &self,
        org: Option<&OrgId>,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<KeyId> {
        let (org, hash, prefix) = (org.cloned(), key_hash.to_string(), prefix.to_string());
        self.write(move |ctx| {
            let id = KeyId::generate();
            ctx.conn
                .prepare_cached(
                    "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id, org, role.as_str(), hash, now_ms(), prefix])?;
            Ok(id)
        })
        .await
    }

    async fn list_api_keys(&self, org: &OrgId) -> Result<Vec<ApiKeyInfo>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                "SELECT id, org_id, role, prefix, created_at, last_used_at FROM api_keys
                 WHERE org_id = ?1 ORDER BY created_at, id",
                &[&org],
                |r| {
                    let role: String = r.get(2)?;
                    Ok(ApiKeyInfo {
                        id: r.get(0)?,
                        org_id: r.get(1)?,
                        role: Role::parse(&role).ok_or_else(|| corrupt(2, "role", &role))?,
                        prefix: r.get(3)?,
                        created_at: r.get(4)?,
                        last_used_at: r.get(5)?,
                    })
                },
            )
        })
        .await
    }

    async fn delete_api_key(&self, org: &OrgId, id: &KeyId) -> Result<()> {
        naming(Missing::Key, async {
            let (org, id) = (org.clone(), id.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM api_keys WHERE org_id = ?1 AND id = ?2")?
                    .execute(params![&org, &id])?;
                if n == 0 {
                    return Err(StoreError::NotFound(Missing::Key));
                }
                Ok(())
            })
            .await
        })
        .await
    }

    async fn touch_api_key(&self, id: &KeyId, at: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            Ok(())
        })
        .await
    }

    async fn replace_admin_keys(&self, key_hash: &str, prefix: &str) -> Result<KeyId> {
        let (hash, prefix) = (key_hash.to_string(), prefix.to_string());
        self.write(move |ctx| {
            ctx.conn
                .execute("DELETE FROM api_keys WHERE org_id IS NULL", [])?;
            let id = KeyId::generate();
            ctx.conn.execute(
                "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix) VALUES (?1, NULL, 'admin', ?2, ?3, ?4)",
                params![id, hash, now_ms(), prefix],
            )?;
            Ok(id)
        })
        .await
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<Principal>> {
        let hash = key_hash.to_string();
        self.read(move |c, _| {
            let row = c
                .prepare_cached("SELECT id, org_id, role FROM api_keys WHERE key_hash = ?1")?
                .query_row([hash], |r| {
                    Ok((
                        r.get::<_, KeyId>(0)?,
                        r.get::<_, Option<OrgId>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(key_id, org, role)| {
                Role::parse(&role).map(|role| Principal { org, role, key_id })
            }))
        })
        .await
    }

    async fn count_admin_keys(&self) -> Result<u64> {
        self.read(|c, _| {
            Ok(c.query_row(
                "SELECT count(*) FROM api_keys WHERE org_id IS NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn put_event_types(&self, org: &OrgId, types: &[EventType]) -> Result<Vec<EventType>> {
        let (org, types) = (org.clone(), types.to_vec());
        self.write(move |ctx| {
            let now = now_ms();
            let mut put = ctx.conn.prepare_cached(
                "INSERT INTO event_types (org_id, name, description, entity_type, schema, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description,
                   entity_type = excluded.entity_type, schema = excluded.schema, updated_at = excluded.updated_at",
            )?;
            for t in &types {
                put.execute(params![
                    org,
                    t.name,
                    t.description,
                    t.entity_type,
                    t.schema.as_ref().map(|s| s.to_string()),
                    now
                ])?;
            }
            Ok(types
                .into_iter()
                .map(|t| EventType { updated_at: now, ..t })
                .collect())
        })
        .await
    }

    async fn get_event_type(&self, org: &OrgId, name: &str) -> Result<EventType> {
        naming(Missing::EventType, async {
            let (org, name) = (org.clone(), name.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(
                    "SELECT name, description, entity_type, schema, updated_at FROM event_types
                     WHERE org_id = ?1 AND name = ?2",
                )?
                .query_row(params![org, name], event_type_from_row)?)
            })
            .await
        })
        .await
    }

    async fn list_event_types(&self, org: &OrgId) -> Result<Vec<EventType>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                "SELECT name, description, entity_type, schema, updated_at FROM event_types
                 WHERE org_id = ?1 ORDER BY name",
                &[&org],
                event_type_from_row,
            )
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn storage_full(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }

    async fn probe_write(&self) -> Result<()> {
        self.write(|ctx| {
            ctx.conn
                .prepare_cached("INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?1)")?
                .execute([now_ms()])?;
            Ok(())
        })
        .await?;
        if self.storage_full() {
            return Err(StoreError::StorageFull(format!(
                "less than {} MiB free on the disk holding the database",
                FULL_RESERVE_BYTES >> 20
            )));
        }
        Ok(())
    }

    async fn reclaim_space(&self) -> Result<()> {
        self.write(|ctx| {
            // Free pages are reused by later writes: under a steady load giving them back would
            // only make the file grow again. Only a large surplus (after a burst, or a lowered
            // retention) is given back, a bounded step per call. A no-op on databases made
            // before incremental vacuum was on.
            let free: i64 = ctx
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            let pages: i64 = ctx.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            if free > RECLAIM_MIN_PAGES && free * 4 > pages {
                let step = (free - pages / 8).clamp(0, RECLAIM_STEP_PAGES);
                let mut stmt = ctx
                    .conn
                    .prepare(&format!("PRAGMA incremental_vacuum({step})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            Ok(())
        })
        .await
    }

    async fn notify(&self, _notice: &Notice) -> Result<()> {
        // One node owns a SQLite file: there is nobody else to tell.
        Ok(())
    }

    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notice>> {
        None
    }
}
