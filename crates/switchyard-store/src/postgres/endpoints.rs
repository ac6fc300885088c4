//! Endpoints, subscriptions, and the routing snapshot they make; every change here bumps the
//! organization's routing version in its own transaction.

use super::*;

#[async_trait]
impl EndpointCatalog for PgStore {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        insert_endpoint(Db::T(&tx), &self.inner.key, ep).await?;
        commit(tx).await?;
        Ok(ep.clone())
    }

    async fn get_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<Endpoint> {
        naming(Missing::Endpoint, async {
            let c = self.conn().await?;
            get_endpoint_db(Db::C(&c), &self.inner.key, org, id).await
        })
        .await
    }

    async fn list_endpoints(&self, org: &OrgId) -> Result<Vec<Endpoint>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = $1 ORDER BY id"),
                &[org],
            )
            .await?
            .iter()
            .map(|r| endpoint_from_row(r, &self.inner.key))
            .collect()
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        naming(Missing::Endpoint, async {
            let row = EndpointRow::of(&self.inner.key, ep);
            let p = row.params(ep);
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(pg_err)?;
            let db = Db::T(&tx);
            let before = db
                .row(
                    "SELECT enabled, ordering_key IS NOT NULL FROM endpoints
                     WHERE org_id = $1 AND id = $2 FOR UPDATE",
                    &[&ep.org_id, &ep.id],
                )
                .await?;
            let (was_enabled, was_ordered): (bool, bool) = (get(&before, 0)?, get(&before, 1)?);
            // Every column but the id, the organization, the owner and the creation time.
            let n = db
                .exec(
                    "UPDATE endpoints SET url = $3, description = $4, profile = $5, headers = $6,
                     token_enc = $7, token_header = $8, insecure_tls = $9, timeout_ms = $10,
                     retry_schedule = $11, max_in_flight = $12, secrets_enc = $13, enabled = $14,
                     disabled_reason = $15, updated_at = $16, max_rps = $17, ordering_key = $18,
                     on_head_failure = $19
                     WHERE org_id = $1 AND id = $2",
                    &[
                        p[1], p[0], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                        p[12], p[13], p[14], p[17], p[18], p[19], p[20],
                    ],
                )
                .await?;
            found(n)?;
            let now = now_ms();
            if ep.enabled() && !was_enabled {
                // Re-enabled: the deliveries kept while it was disabled are due now, and the
                // failures before it no longer count towards disabling it again.
                db.exec(
                    "UPDATE deliveries SET next_attempt_at = $2 WHERE endpoint_id = $1
                     AND status = 'pending' AND claimed_by IS NULL AND next_attempt_at > $2",
                    &[&ep.id, &now],
                )
                .await?;
                db.exec(
                    "UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL
                     WHERE endpoint_id = $1",
                    &[&ep.id],
                )
                .await?;
            }
            if was_ordered && ep.ordering().is_none() {
                // No longer ordered: deliveries waiting for their key's head are due now.
                db.exec(
                    "UPDATE deliveries SET order_slot = NULL,
                     next_attempt_at = coalesce(next_attempt_at, $2)
                     WHERE endpoint_id = $1 AND order_slot IS NOT NULL AND status = 'pending'",
                    &[&ep.id, &now],
                )
                .await?;
            }
            bump_routing(db, &ep.org_id).await?;
            commit(tx).await?;
            Ok(ep.clone())
        })
        .await
    }

    async fn delete_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<()> {
        naming(Missing::Endpoint, async {
            retrying(|| self.delete_endpoint_once(org, id)).await
        })
        .await
    }

    async fn create_subscriptions(
        &self,
        subs: &[Subscription],
        new_endpoint: Option<&Endpoint>,
    ) -> Result<Vec<Subscription>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        if let Some(ep) = new_endpoint {
            insert_endpoint(db, &self.inner.key, ep).await?;
        }
        for sub in subs {
            let (sql, what, name) = match sub.target() {
                Target::Endpoint(id) => (
                    "SELECT 1 FROM endpoints WHERE org_id = $1 AND id = $2",
                    "endpoint",
                    id.as_str(),
                ),
                Target::Executor(n) => (
                    "SELECT 1 FROM executors WHERE org_id = $1 AND name = $2 LIMIT 1",
                    "executor",
                    n.as_str(),
                ),
            };
            if db.opt_row(sql, &[&sub.org_id, &name]).await?.is_none() {
                return Err(StoreError::InvalidReference(format!(
                    "{what} `{name}` does not exist"
                )));
            }
            db.exec(
                &format!(
                    "INSERT INTO subscriptions ({SUB_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                ),
                &[
                    &sub.id,
                    &sub.org_id,
                    &serde_json::to_string(sub.event_types()).unwrap_or_default(),
                    &sub.target().endpoint_id(),
                    &sub.entity_id(),
                    &sub.filter().map(|f| f.doc().to_string()),
                    &sub.created_at,
                    &sub.target().executor(),
                    &sub.mode().as_str(),
                ],
            )
            .await?;
        }
        let orgs: std::collections::BTreeSet<&str> = subs
            .iter()
            .map(|s| s.org_id.as_str())
            .chain(new_endpoint.iter().map(|e| e.org_id.as_str()))
            .collect();
        for org in orgs {
            bump_routing(db, org).await?;
        }
        commit(tx).await?;
        Ok(subs.to_vec())
    }

    async fn get_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<Subscription> {
        naming(Missing::Subscription, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!("SELECT {SUB_COLS} FROM subscriptions WHERE org_id = $1 AND id = $2"),
                    &[org, id],
                )
                .await?;
            sub_from_row(&r)
        })
        .await
    }

    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>> {
        let c = self.conn().await?;
        Db::C(&c)
            .rows(
                &format!("SELECT {SUB_COLS} FROM subscriptions WHERE org_id = $1 ORDER BY id"),
                &[org],
            )
            .await?
            .iter()
            .map(sub_from_row)
            .collect()
    }

    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()> {
        naming(Missing::Subscription, async {
            retrying(|| self.delete_subscription_once(org, id)).await
        })
        .await
    }

    async fn routing(&self, org: &OrgId) -> Result<RoutingSnapshot> {
        naming(Missing::Organization, async {
            let mut c = self.conn().await?;
            // One snapshot: the version and the subscriptions are read as of the same moment.
            let tx = snapshot(&mut c).await?;
            let db = Db::T(&tx);
            let version: i64 = get(
                &db.row("SELECT routing_version FROM orgs WHERE id = $1", &[org])
                    .await?,
                0,
            )?;
            let mut ordered = HashMap::new();
            for r in db
                .rows(
                    "SELECT id, ordering_key FROM endpoints WHERE org_id = $1 AND ordering_key IS NOT NULL",
                    &[org],
                )
                .await?
            {
                let key: &str = get(&r, 1)?;
                let parsed = switchyard_core::ordering::OrderingKey::parse(key)
                    .map_err(|_| corrupt(&r, 1, "ordering key", key))?;
                ordered.insert(get::<EndpointId>(&r, 0)?, parsed);
            }
            let subscriptions = db
                .rows(
                    "SELECT s.id, s.org_id, s.event_types, s.endpoint_id, s.entity_id, s.filter,
                       s.created_at, s.executor, s.mode
                     FROM subscriptions s LEFT JOIN endpoints e ON e.id = s.endpoint_id
                     WHERE s.org_id = $1 AND (s.executor IS NOT NULL OR e.enabled)",
                    &[org],
                )
                .await?
                .iter()
                .map(sub_from_row)
                .collect::<Result<Vec<_>>>()?;
            commit(tx).await?;
            Ok(RoutingSnapshot {
                version,
                subscriptions,
                ordered,
            })
        })
        .await
    }
}

pub(super) async fn insert_endpoint(db: Db<'_>, key: &MasterKey, ep: &Endpoint) -> Result<()> {
    let row = EndpointRow::of(key, ep);
    db.exec(
        &format!(
            "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,
             $12,$13,$14,$15,$16,$17,$18,$19,$20,$21)"
        ),
        &row.params(ep),
    )
    .await?;
    Ok(())
}

pub(super) async fn get_endpoint_db(
    db: Db<'_>,
    key: &MasterKey,
    org: &OrgId,
    id: &EndpointId,
) -> Result<Endpoint> {
    let r = db
        .row(
            &format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = $1 AND id = $2"),
            &[org, id],
        )
        .await?;
    endpoint_from_row(&r, key)
}

impl PgStore {
    /// One try of [`EndpointCatalog::delete_endpoint`]; it can run into the recorder over a
    /// delivery's row (a deadlock the server breaks), and then runs again.
    async fn delete_endpoint_once(&self, org: &OrgId, id: &EndpointId) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // The organization's row first, as a publish takes it: a publish waits for this
        // change instead of holding a row it needs.
        bump_routing(db, org).await?;
        db.exec(
            "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, claimed_by = NULL,
             order_slot = NULL, updated_at = $3
             WHERE org_id = $1 AND endpoint_id = $2 AND status IN ('pending', 'blocked')",
            &[org, id, &now_ms()],
        )
        .await?;
        db.exec(
            "DELETE FROM subscriptions WHERE org_id = $1 AND endpoint_id = $2",
            &[org, id],
        )
        .await?;
        let n = db
            .exec(
                "DELETE FROM endpoints WHERE org_id = $1 AND id = $2",
                &[org, id],
            )
            .await?;
        found(n)?;
        commit(tx).await
    }

    /// One try of [`EndpointCatalog::delete_subscription`], likewise.
    async fn delete_subscription_once(&self, org: &OrgId, id: &SubscriptionId) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // The organization's row first, as a publish takes it: a publish waits for this
        // change instead of holding a row it needs.
        bump_routing(db, org).await?;
        let n = db
            .exec(
                "DELETE FROM subscriptions WHERE org_id = $1 AND id = $2",
                &[org, id],
            )
            .await?;
        found(n)?;
        // An endpoint made for this subscription's inline URL is disabled with it: nothing
        // routes there any more, and its open deliveries end as failed.
        db.exec(
            "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, claimed_by = NULL,
             order_slot = NULL, updated_at = $3
             WHERE org_id = $1 AND status IN ('pending', 'blocked') AND endpoint_id IN
               (SELECT id FROM endpoints WHERE org_id = $1 AND owner_subscription = $2)",
            &[org, id, &now_ms()],
        )
        .await?;
        db.exec(
            "UPDATE endpoints SET enabled = FALSE, disabled_reason = 'its subscription was deleted'
             WHERE org_id = $1 AND owner_subscription = $2",
            &[org, id],
        )
        .await?;
        commit(tx).await
    }
}
