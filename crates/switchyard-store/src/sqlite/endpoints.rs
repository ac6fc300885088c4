//! Endpoints, subscriptions, and the routing snapshot they make; every change here bumps the organization's routing version.

use super::*;

#[async_trait]
impl EndpointCatalog for SqliteStore {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        let ep = ep.clone();
        self.write(move |ctx| {
            insert_endpoint(&ctx.conn, &ctx.key, &ep)?;
            Ok(ep)
        })
        .await
    }

    async fn get_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<Endpoint> {
        naming(Missing::Endpoint, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, k| get_endpoint_conn(c, k, &org, &id))
                .await
        })
        .await
    }

    async fn list_endpoints(&self, org: &OrgId) -> Result<Vec<Endpoint>> {
        let org = org.clone();
        self.read(move |c, k| {
            list(
                c,
                &format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = ?1 ORDER BY id"),
                &[&org],
                |r| endpoint_from_row(r, k),
            )
        })
        .await
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<Endpoint> {
        naming(Missing::Endpoint, async {
            let ep = ep.clone();
            self.write(move |ctx| {
                let token_enc = encrypt_token(&ctx.key, &ep);
                let (was_enabled, was_ordered): (bool, bool) = ctx
                    .conn
                    .prepare_cached("SELECT enabled, ordering_key IS NOT NULL FROM endpoints WHERE org_id = ?1 AND id = ?2")?
                    .query_row([ep.org_id.as_str(), ep.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE endpoints SET url=?3, description=?4, profile=?5, headers=?6, token_enc=?7,
                         token_header=?8, insecure_tls=?9, timeout_ms=?10, retry_schedule=?11, max_in_flight=?12,
                         secrets_enc=?13, enabled=?14, disabled_reason=?15, updated_at=?16, max_rps=?17,
                         ordering_key=?18, on_head_failure=?19
                         WHERE org_id = ?1 AND id = ?2",
                    )?
                    .execute(params![
                        ep.org_id,
                        ep.id.as_str(),
                        ep.url(),
                        ep.description(),
                        ep.profile().as_str(),
                        serde_json::to_string(&ep.headers()).unwrap_or_default(),
                        token_enc,
                        ep.token_header(),
                        ep.insecure_tls,
                        ep.timeout_ms(),
                        ep.retry_schedule_s().map(|s| serde_json::to_string(s).unwrap_or_default()),
                        ep.max_in_flight(),
                        encrypt_secrets(&ctx.key, &ep),
                        ep.enabled(),
                        ep.disabled_reason(),
                        ep.updated_at,
                        ep.max_rps(),
                        ep.ordering().map(|o| o.key.as_setting()),
                        ep.ordering().map(|o| o.on_head_failure.as_str()),
                    ])?;
                found(n)?;
                let now = now_ms();
                if ep.enabled() && !was_enabled {
                    // Re-enabled: the deliveries kept while it was disabled are due now, and the
                    // failures before it no longer count towards disabling it again.
                    ctx.conn
                        .prepare_cached(
                            "UPDATE deliveries SET next_attempt_at = ?2 WHERE endpoint_id = ?1
                             AND status = 'pending' AND claimed_by IS NULL AND next_attempt_at > ?2",
                        )?
                        .execute(params![ep.id.as_str(), now])?;
                    ctx.conn
                        .prepare_cached(
                            "UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL
                             WHERE endpoint_id = ?1",
                        )?
                        .execute([ep.id.as_str()])?;
                }
                if was_ordered && ep.ordering().is_none() {
                    // No longer ordered: deliveries waiting for their key's head are due now.
                    ctx.conn
                        .prepare_cached(
                            "UPDATE deliveries SET order_slot = NULL, next_attempt_at = coalesce(next_attempt_at, ?2)
                             WHERE endpoint_id = ?1 AND order_slot IS NOT NULL AND status = 'pending'",
                        )?
                        .execute(params![ep.id.as_str(), now])?;
                }
                bump_routing(&ctx.conn, &ep.org_id)?;
                Ok(ep)
            })
            .await
        })
        .await
    }

    async fn delete_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<()> {
        naming(Missing::Endpoint, async {
            let (org, id) = (org.clone(), id.to_string());
            self.write(move |ctx| {
                let now = now_ms();
                ctx.conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, claimed_by = NULL,
                         order_slot = NULL, updated_at = ?3
                         WHERE org_id = ?1 AND endpoint_id = ?2 AND status IN ('pending', 'blocked')",
                    )?
                    .execute(params![org, id, now])?;
                ctx.conn
                    .prepare_cached("DELETE FROM subscriptions WHERE org_id = ?1 AND endpoint_id = ?2")?
                    .execute(params![&org, &id])?;
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM endpoints WHERE org_id = ?1 AND id = ?2")?
                    .execute(params![&org, &id])?;
                found(n)?;
                bump_routing(&ctx.conn, &org)?;
                Ok(())
            })
            .await
        })
        .await
    }

    async fn create_subscriptions(
        &self,
        subs: &[Subscription],
        new_endpoint: Option<&Endpoint>,
    ) -> Result<Vec<Subscription>> {
        let (subs, new_ep) = (subs.to_vec(), new_endpoint.cloned());
        self.write(move |ctx| {
            if let Some(ep) = &new_ep {
                insert_endpoint(&ctx.conn, &ctx.key, ep)?;
            }
            for sub in &subs {
                let (sql, what, name) = match sub.target() {
                    Target::Endpoint(id) => (
                        "SELECT 1 FROM endpoints WHERE org_id = ?1 AND id = ?2",
                        "endpoint",
                        id.as_str(),
                    ),
                    Target::Executor(n) => (
                        "SELECT 1 FROM executors WHERE org_id = ?1 AND name = ?2 LIMIT 1",
                        "executor",
                        n.as_str(),
                    ),
                };
                let exists: Option<i64> = ctx
                    .conn
                    .prepare_cached(sql)?
                    .query_row([sub.org_id.as_str(), name], |r| r.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Err(StoreError::InvalidReference(format!(
                        "{what} `{name}` does not exist"
                    )));
                }
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO subscriptions ({SUB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
                    ))?
                    .execute(params![
                        sub.id,
                        sub.org_id,
                        serde_json::to_string(sub.event_types()).unwrap_or_default(),
                        sub.target().endpoint_id().map(EndpointId::as_str),
                        sub.entity_id(),
                        sub.filter().map(|f| f.doc().to_string()),
                        sub.created_at,
                        sub.target().executor(),
                        sub.mode().as_str(),
                    ])?;
            }
            let orgs: std::collections::BTreeSet<&str> = subs
                .iter()
                .map(|s| s.org_id.as_str())
                .chain(new_ep.iter().map(|e| e.org_id.as_str()))
                .collect();
            for org in orgs {
                bump_routing(&ctx.conn, org)?;
            }
            Ok(subs)
        })
        .await
    }

    async fn get_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<Subscription> {
        naming(Missing::Subscription, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {SUB_COLS} FROM subscriptions WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org, id], sub_from_row)?)
            })
            .await
        })
        .await
    }

    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<Subscription>> {
        let org = org.clone();
        self.read(move |c, _| {
            list(
                c,
                &format!("SELECT {SUB_COLS} FROM subscriptions WHERE org_id = ?1 ORDER BY id"),
                &[&org],
                sub_from_row,
            )
        })
        .await
    }

    async fn routing(&self, org: &OrgId) -> Result<RoutingSnapshot> {
        naming(Missing::Organization, async {
            let org = org.clone();
            self.read(move |c, _| {
                // One read transaction: the version and the subscriptions come from the same snapshot.
                let tx = c.unchecked_transaction()?;
                let version: i64 = tx
                    .prepare_cached("SELECT routing_version FROM orgs WHERE id = ?1")?
                    .query_row(params![&org], |r| r.get(0))?;
                let ordered = list(
                    &tx,
                    "SELECT id, ordering_key FROM endpoints WHERE org_id = ?1 AND ordering_key IS NOT NULL",
                    &[&org],
                    |r| {
                        let key: String = r.get(1)?;
                        let parsed = switchyard_core::ordering::OrderingKey::parse(&key)
                            .map_err(|_| corrupt(1, "ordering key", &key))?;
                        Ok((EndpointId::stored(r.get(0)?), parsed))
                    },
                )?
                .into_iter()
                .collect();
                let subscriptions = list(
                    &tx,
                    "SELECT s.id, s.org_id, s.event_types, s.endpoint_id, s.entity_id, s.filter, s.created_at, s.executor, s.mode
                     FROM subscriptions s LEFT JOIN endpoints e ON e.id = s.endpoint_id
                     WHERE s.org_id = ?1 AND (s.executor IS NOT NULL OR e.enabled = 1)",
                    &[&org],
                    sub_from_row,
                )?;
                tx.finish()?;
                Ok(RoutingSnapshot {
                    version,
                    subscriptions,
                    ordered,
                })
            })
            .await
        })
        .await
    }

    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()> {
        naming(Missing::Subscription, async {
            let (org, id) = (org.clone(), id.to_string());
            self.write(move |ctx| {
                let n = ctx
                    .conn
                    .prepare_cached("DELETE FROM subscriptions WHERE org_id = ?1 AND id = ?2")?
                    .execute(params![&org, &id])?;
                found(n)?;
                // An endpoint made for this subscription's inline URL is disabled with it: nothing
                // routes there any more, and its open deliveries end as failed.
                ctx.conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, claimed_by = NULL,
                         order_slot = NULL, updated_at = ?3
                         WHERE org_id = ?1 AND status IN ('pending', 'blocked') AND endpoint_id IN
                           (SELECT id FROM endpoints WHERE org_id = ?1 AND owner_subscription = ?2)",
                    )?
                    .execute(params![org, id, now_ms()])?;
                ctx.conn
                    .prepare_cached("UPDATE endpoints SET enabled = 0, disabled_reason = 'its subscription was deleted' WHERE org_id = ?1 AND owner_subscription = ?2")?
                    .execute(params![&org, &id])?;
                bump_routing(&ctx.conn, &org)?;
                Ok(())
            })
            .await
        })
        .await
    }
}

pub(super) fn insert_endpoint(conn: &Connection, key: &MasterKey, ep: &Endpoint) -> Result<()> {
    let token_enc = encrypt_token(key, ep);
    conn.prepare_cached(&format!(
        "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)"
    ))?
    .execute(params![
        ep.id.as_str(),
        ep.org_id,
        ep.url(),
        ep.description(),
        ep.profile().as_str(),
        serde_json::to_string(&ep.headers()).unwrap_or_default(),
        token_enc,
        ep.token_header(),
        ep.insecure_tls,
        ep.timeout_ms(),
        ep.retry_schedule_s().map(|s| serde_json::to_string(s).unwrap_or_default()),
        ep.max_in_flight(),
        encrypt_secrets(key, ep),
        ep.enabled(),
        ep.disabled_reason(),
        ep.owner_subscription,
        ep.created_at,
        ep.updated_at,
        ep.max_rps(),
        ep.ordering().map(|o| o.key.as_setting()),
        ep.ordering().map(|o| o.on_head_failure.as_str()),
    ])?;
    Ok(())
}

pub(super) fn get_endpoint_conn(
    conn: &Connection,
    key: &MasterKey,
    org: &str,
    id: &str,
) -> Result<Endpoint> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLS} FROM endpoints WHERE org_id = ?1 AND id = ?2"
    ))?;
    Ok(stmt.query_row(params![org, id], |r| endpoint_from_row(r, key))?)
}
