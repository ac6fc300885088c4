//! The delivery queue: claims, releases, attempt results, manual retry and replay.

use super::endpoints::get_endpoint_conn;
use super::*;
use std::collections::HashMap;

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn list_deliveries(&self, org: &str, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let (org, q) = (org.to_string(), q.clone());
        self.read(move |c, _| {
            let mut sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1");
            let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(org)];
            let mut add = |cond: &str, v: Box<dyn ToSql>| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(s) = q.status {
                add("status =", Box::new(s.as_str()));
            }
            if let Some(e) = q.endpoint_id {
                add("endpoint_id =", Box::new(e));
            }
            if let Some(e) = q.event_id {
                add("event_id =", Box::new(e));
            }
            if let Some(b) = q.before_id {
                add("id <", Box::new(b));
            }
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                q.limit.clamp(1, 1000)
            ));
            let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
            list(c, &sql, &refs, delivery_from_row)
        })
        .await
    }

    async fn get_delivery(&self, org: &str, id: &str) -> Result<Delivery> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c, _| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([org, id], delivery_from_row)?)
        })
        .await
    }

    async fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let node = node.to_string();
        self.write(move |ctx| {
            let claimed = {
                let mut stmt = ctx.conn.prepare_cached(
                    "UPDATE deliveries SET claimed_by = ?1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?3
                                  ORDER BY next_attempt_at LIMIT ?4)
                     RETURNING id, org_id, endpoint_id, attempts, event_seq, executor",
                )?;
                stmt.query_map(params![node, now + lease_ms, now, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        target_from_columns(r.get(2)?, r.get(5)?)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut events: HashMap<i64, Arc<Event>> = HashMap::new();
            let mut out = Vec::with_capacity(claimed.len());
            for (id, org_id, target, attempts, seq) in claimed {
                let event = match events.get(&seq) {
                    Some(e) => e.clone(),
                    None => {
                        let e = Arc::new(ctx.load_event_by_seq(seq)?);
                        events.insert(seq, e.clone());
                        e
                    }
                };
                out.push(DueDelivery {
                    delivery_id: id,
                    org_id,
                    target,
                    attempts,
                    event,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn release(&self, node: &str, ids: Option<&[String]>) -> Result<u64> {
        let (node, ids) = (node.to_string(), ids.map(|i| i.to_vec()));
        self.write(move |ctx| {
            let now = now_ms();
            let n = match ids {
                None => ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?2
                         WHERE claimed_by = ?1 AND status = 'pending'",
                    )?
                    .execute(params![node, now])?,
                Some(ids) => {
                    let mut stmt = ctx.conn.prepare_cached(
                        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?3
                         WHERE id = ?2 AND claimed_by = ?1 AND status = 'pending'",
                    )?;
                    let mut n = 0;
                    for id in ids {
                        n += stmt.execute(params![node, id, now])?;
                    }
                    n
                }
            };
            Ok(n as u64)
        })
        .await
    }

    async fn record_attempts(&self, results: Vec<AttemptResult>) -> Result<Vec<DisabledEndpoint>> {
        self.write(move |ctx| {
            let now = now_ms();
            let mut disabled = Vec::new();
            for res in results {
                let a = &res.attempt;
                let (status, next) = match res.outcome {
                    Outcome::Delivered => ("delivered", None),
                    Outcome::Retry { at } => ("pending", Some(at)),
                    Outcome::Failed => ("failed", None),
                };
                let changed = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                         claimed_by = NULL, updated_at = ?5 WHERE id = ?1 AND org_id = ?2",
                    )?
                    .execute(params![res.delivery_id, res.org_id, status, next, now])?;
                if changed == 0 {
                    // The delivery is gone (its endpoint or organization was deleted).
                    continue;
                }
                ctx.conn
                    .prepare_cached(
                        "INSERT INTO attempts (id, delivery_id, org_id, at, status_code, duration_ms, error, response_body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![a.id, res.delivery_id, res.org_id, a.at, a.status_code, a.duration_ms, a.error, a.response_body])?;
                if let (Some(reason), Some(endpoint_id)) = (&res.disable_endpoint, &res.endpoint_id) {
                    let n = ctx
                        .conn
                        .prepare_cached(
                            "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, updated_at = ?4
                             WHERE id = ?1 AND org_id = ?2 AND enabled = 1",
                        )?
                        .execute(params![endpoint_id, res.org_id, reason, now])?;
                    if n > 0 {
                        bump_routing(&ctx.conn, &res.org_id)?;
                        disabled.push(DisabledEndpoint {
                            org_id: res.org_id.clone(),
                            endpoint_id: endpoint_id.clone(),
                        });
                    }
                }
            }
            Ok(disabled)
        })
        .await
    }

    async fn retry_delivery(&self, org: &str, id: &str, node: &str) -> Result<DueDelivery> {
        let (org, id, node) = (org.to_string(), id.to_string(), node.to_string());
        self.write(move |ctx| {
            let now = now_ms();
            let (target, attempts, seq): (Target, u32, i64) = ctx
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', claimed_by = ?3, next_attempt_at = ?4, updated_at = ?5
                     WHERE org_id = ?1 AND id = ?2 RETURNING endpoint_id, attempts, event_seq, executor",
                )?
                .query_row(params![org, id, node, now + DEFAULT_LEASE_MS, now], |r| {
                    Ok((target_from_columns(r.get(0)?, r.get(3)?)?, r.get(1)?, r.get(2)?))
                })?;
            let event = Arc::new(ctx.load_event_by_seq(seq)?);
            Ok(DueDelivery {
                delivery_id: id,
                org_id: org,
                target,
                attempts,
                event,
            })
        })
        .await
    }

    async fn replay(&self, org: &str, endpoint_id: &str, since: i64, until: i64) -> Result<u64> {
        let (org, endpoint_id) = (org.to_string(), endpoint_id.to_string());
        self.write(move |ctx| {
            get_endpoint_conn(&ctx.conn, &ctx.key, &org, &endpoint_id)?;
            let now = now_ms();
            let seqs: Vec<(i64, Option<String>)> = list(
                &ctx.conn,
                "SELECT e.seq, min(d.subscription_id) FROM events e JOIN deliveries d ON d.event_seq = e.seq
                 WHERE e.org_id = ?1 AND d.endpoint_id = ?2 AND e.received_at >= ?3 AND e.received_at < ?4
                 GROUP BY e.seq ORDER BY e.seq LIMIT 100000",
                &[&org, &endpoint_id, &since, &until],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for (seq, sub) in &seqs {
                let event = ctx.load_event_by_seq(*seq)?;
                let target = Target::Endpoint(endpoint_id.clone());
                insert_delivery(&ctx.conn, &org, &event, &target, sub.as_deref(), None, now)?;
            }
            Ok(seqs.len() as u64)
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64> {
        self.read(|c, _| {
            Ok(c.query_row(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

pub(super) fn insert_delivery(
    conn: &Connection,
    org: &str,
    event: &Event,
    target: &Target,
    subscription_id: Option<&str>,
    claim: Option<(&str, i64)>,
    now: i64,
) -> Result<String> {
    let id = new_id("dlv");
    let (claimed_by, next) = match claim {
        Some((node, until)) => (Some(node), until),
        None => (None, now),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (id, org_id, event_seq, event_id, endpoint_id, subscription_id, status,
         attempts, next_attempt_at, claimed_by, created_at, updated_at, executor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?9, ?9, ?10)",
    )?
    .execute(params![
        id,
        org,
        event.seq,
        event.id,
        target.endpoint_id(),
        subscription_id,
        next,
        claimed_by,
        now,
        target.executor()
    ])?;
    Ok(id)
}
