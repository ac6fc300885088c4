//! Organizations, API keys and event types (the catalog's tenant aggregate).

use super::*;

#[async_trait]
impl OrgCatalog for PgStore {
    async fn create_org(&self, org: &Org) -> Result<Org> {
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                "INSERT INTO orgs (id, name, created_at, retention_s, payload_retention_s, limits)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &org.id,
                    &org.name,
                    &org.created_at,
                    &org.retention_s.map(big),
                    &org.payload_retention_s.map(big),
                    &serde_json::to_string(&org.limits).unwrap_or_default(),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("organization `{}` exists", org.id))
                }
                other => other,
            })?;
        Ok(org.clone())
    }

    async fn update_org(&self, org: &Org) -> Result<Org> {
        naming(Missing::Organization, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "UPDATE orgs SET name = $2, retention_s = $3, payload_retention_s = $4, limits = $5
                     WHERE id = $1",
                    &[
                        &org.id,
                        &org.name,
                        &org.retention_s.map(big),
                        &org.payload_retention_s.map(big),
                        &serde_json::to_string(&org.limits).unwrap_or_default(),
                    ],
                )
                .await?;
            found(n)?;
            Ok(org.clone())
        })
        .await
    }

    async fn usage(&self, org: &OrgId) -> Result<switchyard_core::limits::Usage> {
        let c = self.conn().await?;
        let sql = usage_sql("$1", |col| format!("octet_length({col})"));
        let r = Db::C(&c).row(&sql, &[org]).await?;
        let num = |i: usize| -> Result<i64> {
            let v: Option<i64> = get(&r, i)?;
            Ok(v.unwrap_or(0))
        };
        Ok(usage_from([
            num(0)?,
            num(1)?,
            num(2)?,
            num(3)?,
            num(4)?,
            num(5)?,
        ]))
    }

    async fn get_org(&self, id: &OrgId) -> Result<Org> {
        naming(Missing::Organization, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(&format!("SELECT {ORG_COLS} FROM orgs WHERE id = $1"), &[id])
                .await?;
            org_from_row(&r)
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(&format!("SELECT {ORG_COLS} FROM orgs ORDER BY id"), &[])
            .await?
            .iter()
            .map(org_from_row)
            .collect()
    }

    async fn create_api_key(
        &self,
        org: Option<&OrgId>,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<KeyId> {
        let id = KeyId::generate();
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &org, &role.as_str(), &key_hash, &now_ms(), &prefix],
            )
            .await?;
        Ok(id)
    }

    async fn list_api_keys(&self, org: &OrgId) -> Result<Vec<ApiKeyInfo>> {
        let c = self.conn().await?;
        let rows = Db::C(&c)
            .rows(
                "SELECT id, org_id, role, prefix, created_at, last_used_at FROM api_keys
                 WHERE org_id = $1 ORDER BY created_at, id",
                &[org],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let role: &str = get(r, 2)?;
                Ok(ApiKeyInfo {
                    id: get(r, 0)?,
                    org_id: get(r, 1)?,
                    role: Role::parse(role).ok_or_else(|| corrupt(r, 2, "role", role))?,
                    prefix: get(r, 3)?,
                    created_at: get(r, 4)?,
                    last_used_at: get(r, 5)?,
                })
            })
            .collect()
    }

    async fn delete_api_key(&self, org: &OrgId, id: &KeyId) -> Result<()> {
        naming(Missing::Key, async {
            let c = self.conn().await?;
            let n = Db::C(&c)
                .exec(
                    "DELETE FROM api_keys WHERE org_id = $1 AND id = $2",
                    &[org, id],
                )
                .await?;
            found(n)
        })
        .await
    }

    async fn touch_api_key(&self, id: &KeyId, at: i64) -> Result<()> {
        let c = self.conn().await?;
        Db::C(&c)
            .exec(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
                &[id, &at],
            )
            .await?;
        Ok(())
    }

    async fn replace_admin_keys(&self, key_hash: &str, prefix: &str) -> Result<KeyId> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        db.exec("DELETE FROM api_keys WHERE org_id IS NULL", &[])
            .await?;
        let id = KeyId::generate();
        db.exec(
            "INSERT INTO api_keys (id, org_id, role, key_hash, created_at, prefix)
             VALUES ($1, NULL, 'admin', $2, $3, $4)",
            &[&id, &key_hash, &now_ms(), &prefix],
        )
        .await?;
        commit(tx).await?;
        Ok(id)
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<Principal>> {
        let c = self.conn().await?;
        let row = Db::C(&c)
            .opt_row(
                "SELECT id, org_id, role FROM api_keys WHERE key_hash = $1",
                &[&key_hash],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let (key_id, org, role): (KeyId, Option<OrgId>, &str) =
            (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
        Ok(Role::parse(role).map(|role| Principal { org, role, key_id }))
    }

    async fn count_admin_keys(&self) -> Result<u64> {
        let c = self.conn().await?;
        let r = Db::C(&c)
            .row("SELECT count(*) FROM api_keys WHERE org_id IS NULL", &[])
            .await?;
        uint(&r, 0)
    }

    async fn put_event_types(&self, org: &OrgId, types: &[EventType]) -> Result<Vec<EventType>> {
        let now = now_ms();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        for t in types {
            Db::T(&tx)
                .exec(
                    "INSERT INTO event_types (org_id, name, description, entity_type, schema, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description,
                       entity_type = excluded.entity_type, schema = excluded.schema,
                       updated_at = excluded.updated_at",
                    &[
                        org,
                        &t.name,
                        &t.description,
                        &t.entity_type,
                        &t.schema.as_ref().map(|s| s.to_string()),
                        &now,
                    ],
                )
                .await?;
        }
        commit(tx).await?;
        Ok(types
            .iter()
            .map(|t| EventType {
                updated_at: now,
                ..t.clone()
            })
            .collect())
    }

    async fn get_event_type(&self, org: &OrgId, name: &str) -> Result<EventType> {
        naming(Missing::EventType, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    "SELECT name, description, entity_type, schema, updated_at FROM event_types
                     WHERE org_id = $1 AND name = $2",
                    &[org, &name],
                )
                .await?;
            event_type_from_row(&r)
        })
        .await
    }

    async fn list_event_types(&self, org: &OrgId) -> Result<Vec<EventType>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                "SELECT name, description, entity_type, schema, updated_at FROM event_types
                 WHERE org_id = $1 ORDER BY name",
                &[org],
            )
            .await?
            .iter()
            .map(event_type_from_row)
            .collect()
    }
}
