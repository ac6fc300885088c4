//! The delivery queue: claims, releases, attempt results, manual retry and replay.

use super::endpoints::get_endpoint_conn;
use super::*;
use std::collections::HashMap;
use switchyard_core::health::{DisablePolicy, EndpointHealth, WindowStats};
use switchyard_core::ordering::HeadFailure;

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn list_deliveries(&self, org: &OrgId, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let (org, q) = (org.clone(), q.clone());
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

    async fn get_delivery(&self, org: &OrgId, id: &DeliveryId) -> Result<Delivery> {
        naming(Missing::Delivery, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org, id], delivery_from_row)?)
            })
            .await
        })
        .await
    }

    async fn due_endpoints(&self, node: &str, now: i64, limit: u32) -> Result<Vec<EndpointRef>> {
        let node = node.to_owned();
        self.read(move |c, _| {
            // A skip-scan over the endpoints that have pending deliveries (one index seek each),
            // keeping the enabled ones with a delivery due.
            list(
                c,
                "WITH RECURSIVE ep(id) AS (
                   SELECT (SELECT min(endpoint_id) FROM deliveries WHERE status = 'pending' AND endpoint_id IS NOT NULL)
                   UNION ALL
                   SELECT (SELECT min(endpoint_id) FROM deliveries WHERE status = 'pending' AND endpoint_id > ep.id)
                   FROM ep WHERE ep.id IS NOT NULL
                 )
                 SELECT e.org_id, e.id FROM ep JOIN endpoints e ON e.id = ep.id
                 WHERE e.enabled = 1 AND EXISTS (SELECT 1 FROM deliveries d WHERE d.status = 'pending'
                   AND d.endpoint_id = ep.id AND d.next_attempt_at <= ?1)
                   AND NOT EXISTS (SELECT 1 FROM endpoint_leases l WHERE l.endpoint_id = ep.id
                   AND l.node <> ?3 AND l.lease_until > ?1)
                 LIMIT ?2",
                &[&now, &limit, &node],
                |r| {
                    Ok(EndpointRef {
                        org_id: r.get(0)?,
                        endpoint_id: EndpointId::stored(r.get(1)?),
                    })
                },
            )
        })
        .await
    }

    async fn claim_endpoint(
        &self,
        node: &str,
        endpoint: &EndpointRef,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let (node, ep) = (node.to_string(), endpoint.clone());
        self.write(move |ctx| {
            claim(
                ctx,
                now + lease_ms,
                "UPDATE deliveries SET claimed_by = ?1, next_attempt_at = ?2
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND endpoint_id = ?5
                              AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4)
                   AND org_id = ?6
                   AND EXISTS (SELECT 1 FROM endpoint_leases WHERE endpoint_id = ?5 AND node = ?1
                               AND lease_until > ?3)
                 RETURNING id, org_id, endpoint_id, attempts, event_seq, executor,
                   CASE WHEN ordering_key IS NOT NULL AND attempts = 0 THEN updated_at - created_at END",
                params![node, now + lease_ms, now, limit, ep.endpoint_id.as_str(), ep.org_id],
            )
        })
        .await
    }

    async fn claim_hooks(
        &self,
        node: &str,
        now: i64,
        wanted: &HookClaim,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let (node, wanted) = (node.to_string(), wanted.clone());
        self.write(move |ctx| {
            // The organizations with hooks pending: a skip-scan over `deliveries_hooks_due`.
            let orgs: Vec<OrgId> = ctx
                .conn
                .prepare_cached(
                    "WITH RECURSIVE o(org) AS (
                       SELECT (SELECT MIN(org_id) FROM deliveries
                               WHERE status = 'pending' AND endpoint_id IS NULL)
                       UNION ALL
                       SELECT (SELECT MIN(org_id) FROM deliveries
                               WHERE status = 'pending' AND endpoint_id IS NULL AND org_id > o.org)
                       FROM o WHERE o.org IS NOT NULL)
                     SELECT org FROM o WHERE org IS NOT NULL LIMIT ?1",
                )?
                .query_map([HOOK_CLAIM_ORGS], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for org in orgs.iter().filter(|o| !wanted.skip.contains(o)) {
                let left = (wanted.limit as usize).saturating_sub(out.len());
                if left == 0 {
                    break;
                }
                out.extend(claim(
                    ctx,
                    now + lease_ms,
                    "UPDATE deliveries SET claimed_by = ?1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM deliveries WHERE org_id = ?5 AND status = 'pending'
                                  AND endpoint_id IS NULL AND next_attempt_at <= ?3
                                  ORDER BY next_attempt_at LIMIT ?4)
                     RETURNING id, org_id, endpoint_id, attempts, event_seq, executor, NULL",
                    params![
                        node,
                        now + lease_ms,
                        now,
                        wanted.per_org.min(left as u32),
                        org
                    ],
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn release(&self, node: &str, ids: Option<&[DeliveryId]>) -> Result<u64> {
        let (node, ids) = (node.to_string(), ids.map(|i| i.to_vec()));
        self.write(move |ctx| {
            let now = now_ms();
            let n = match ids {
                None => release_claims_of(&ctx.conn, &node, now)?,
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

    async fn record_attempts(
        &self,
        node: &str,
        mut results: Vec<AttemptResult>,
        policy: &DisablePolicy,
    ) -> Result<Recorded> {
        // In jobs of a few hundred, submitted together so that they share one commit: a job's
        // statement journal holds every page the job changes, and each statement's end walks
        // it, so one job of thousands of results cost time growing with its square.
        let mut pending = Vec::new();
        while !results.is_empty() {
            let rest = results.split_off(results.len().min(RECORD_CHUNK));
            let chunk = std::mem::replace(&mut results, rest);
            // Light jobs, though not small: measured, results share a group with the rest
            // better than they lead groups of their own (BENCHMARKS.md, "Heavy jobs lead").
            pending.push(self.submit(record_chunk(node.to_owned(), chunk, *policy))?);
        }
        let mut out = Recorded::default();
        for rx in pending {
            let r = self.finish(rx).await?;
            out.disabled.extend(r.disabled);
            for ep in r.due_now {
                push_once(&mut out.due_now, &ep);
            }
        }
        Ok(out)
    }

    async fn retry_delivery(
        &self,
        org: &OrgId,
        id: &DeliveryId,
        claim: Claim<'_>,
    ) -> Result<Retried> {
        naming(Missing::Delivery, async {
            let (org, id, node) = (org.clone(), id.to_string(), claim.node.to_string());
            let lease_ms = claim.lease_ms;
            self.write(move |ctx| {
                let now = now_ms();
                let (status, endpoint_id, key, slot, next, dropped): (String, Option<String>, Option<String>, Option<String>, Option<i64>, Option<i64>) = ctx
                    .conn
                    .prepare_cached(
                        "SELECT status, endpoint_id, ordering_key, order_slot, next_attempt_at,
                         (SELECT payload_dropped_at FROM events WHERE seq = deliveries.event_seq)
                         FROM deliveries WHERE org_id = ?1 AND id = ?2",
                    )?
                    .query_row(params![&org, &id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
                if dropped.is_some() {
                    return Err(payload_dropped_error());
                }
                let mut claim_now = true;
                if let (Some(key), Some(ep)) = (&key, &endpoint_id) {
                    if status == "pending" && slot.is_some() && next.is_none() {
                        return Err(waits_for_head_error());
                    }
                    if slot.is_none() {
                        // Settled before: it reopens in its key, and waits if the key is busy.
                        claim_now = !key_open(&ctx.conn, ep, key)?;
                    }
                }
                let (claimed_by, next_at) = if claim_now {
                    (Some(node.as_str()), Some(now + lease_ms))
                } else {
                    (None, None)
                };
                let (target, attempts, seq): (Target, u32, i64) = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'pending', claimed_by = ?3, next_attempt_at = ?4, updated_at = ?5,
                         order_slot = ordering_key
                         WHERE org_id = ?1 AND id = ?2 RETURNING endpoint_id, attempts, event_seq, executor",
                    )?
                    .query_row(params![org, id, claimed_by, next_at, now], |r| {
                        Ok((target_from_columns(r.get(0)?, r.get(3)?)?, r.get(1)?, r.get(2)?))
                    })?;
                let claimed = if claim_now {
                    Some(DueDelivery {
                        delivery_id: DeliveryId::stored(id.clone()),
                        org_id: org.clone(),
                        target,
                        attempts,
                        event: ctx.shared_event(seq)?,
                        lease_until: now + lease_ms,
                        ordering_wait_ms: None,
                        sync: None,
                    })
                } else {
                    None
                };
                let delivery = ctx
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND id = ?2"
                    ))?
                    .query_row(params![&org, &id], delivery_from_row)?;
                Ok(Retried { delivery, claimed })
            })
            .await
        })
        .await
    }

    async fn endpoint_health(
        &self,
        org: &OrgId,
        id: &EndpointId,
        since: i64,
    ) -> Result<EndpointHealth> {
        naming(Missing::Endpoint, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, k| {
                get_endpoint_conn(c, k, &org, &id)?;
                let mut h = c
                    .prepare_cached(&format!(
                        "SELECT {HEALTH_COLS} FROM endpoint_health WHERE endpoint_id = ?1"
                    ))?
                    .query_row([&id], health_from_row)
                    .optional()?
                    .unwrap_or_default();
                let attempts = list(
                    c,
                    "SELECT status_code, duration_ms FROM attempts WHERE endpoint_id = ?1 AND at >= ?2
                     ORDER BY at DESC LIMIT 10000",
                    &[&id, &since],
                    |r| {
                        let code: Option<u16> = r.get(0)?;
                        Ok((
                            code.is_some_and(|s| (200..300).contains(&s)),
                            r.get::<_, f64>(1)?,
                        ))
                    },
                )?;
                h.window = WindowStats::of(since, &attempts);
                Ok(h)
            })
            .await
        })
        .await
    }

    async fn replay(
        &self,
        org: &OrgId,
        endpoint_id: &EndpointId,
        window: ReplayWindow,
    ) -> Result<Replayed> {
        naming(Missing::Endpoint, async {
            let (org, endpoint_id) = (org.clone(), endpoint_id.clone());
            self.write(move |ctx| {
                let ep = get_endpoint_conn(&ctx.conn, &ctx.key, &org, &endpoint_id)?;
                let now = now_ms();
                let seqs: Vec<(i64, Option<String>)> = list(
                    &ctx.conn,
                    "SELECT e.seq, min(d.subscription_id) FROM events e JOIN deliveries d ON d.event_seq = e.seq
                     WHERE e.org_id = ?1 AND d.endpoint_id = ?2 AND e.received_at >= ?3 AND e.received_at < ?4
                     AND e.payload_dropped_at IS NULL AND e.seq > ?5
                     GROUP BY e.seq ORDER BY e.seq LIMIT ?6",
                    &[
                        &org,
                        &endpoint_id,
                        &window.since,
                        &window.until,
                        &window.after_seq,
                        &i64::from(window.limit),
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                for (seq, sub) in &seqs {
                    let event = ctx.load_event_by_seq(*seq)?;
                    let target = Target::Endpoint(endpoint_id.clone());
                    let key = ep.ordering().map(|o| o.key.key_of(&event.entity, &event.data));
                    insert_delivery(&ctx.conn, &org, &event, &target, sub.as_deref(), key.as_deref(), None, now)?;
                }
                Ok(Replayed {
                    created: seqs.len() as u64,
                    last_seq: seqs.last().map(|s| s.0),
                })
            })
            .await
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

/// Results of attempts in chunks of at most this many per write job.
const RECORD_CHUNK: usize = 256;

/// One write job of [`DeliveryQueue::record_attempts`].
fn record_chunk(
    node: String,
    results: Vec<AttemptResult>,
    policy: DisablePolicy,
) -> impl FnOnce(&mut WriterCtx) -> Result<Recorded> + Send + 'static {
    move |ctx| {
        let now = now_ms();
        let mut out = Recorded::default();
        let mut health: HashMap<EndpointRef, HealthDelta> = HashMap::new();
        let mut head_failure: HashMap<EndpointId, HeadFailure> = HashMap::new();
        for res in results {
            let a = &res.attempt;
            let headers = a
                .request_headers
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::database(format!("attempt headers: {e}")))?;
            let (status, next) = outcome_columns(&res.outcome);
            let slot: Option<Option<String>> = ctx
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET status = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                     claimed_by = NULL, updated_at = ?5 WHERE id = ?1 AND org_id = ?2 RETURNING order_slot",
                )?
                .query_row(params![res.delivery_id, res.org_id, status, next, now], |r| r.get(0))
                .optional()?;
            let Some(slot) = slot else {
                // The delivery is gone (its endpoint or organization was deleted).
                continue;
            };
            ctx.conn
                .prepare_cached(
                    "INSERT INTO attempts (id, delivery_id, org_id, at, status_code, duration_ms, error, response_body,
                       endpoint_id, waited, retry_reason, request_headers, node)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?
                .execute(params![a.id, res.delivery_id, res.org_id, a.at, a.status_code(), a.duration_ms(), a.error(),
                    a.response_body(), res.endpoint_id.as_deref(), a.waited, a.retry_reason, headers, node])?;
            let Some(endpoint_id) = &res.endpoint_id else {
                continue;
            };
            let ep = EndpointRef {
                org_id: res.org_id.clone(),
                endpoint_id: endpoint_id.clone(),
            };
            if let (Some(key), false) = (&slot, matches!(res.outcome, Outcome::Retry { .. })) {
                let on_failure = match head_failure.get(endpoint_id) {
                    Some(h) => *h,
                    None => {
                        let h = endpoint_head_failure(&ctx.conn, endpoint_id)?;
                        head_failure.insert(endpoint_id.clone(), h);
                        h
                    }
                };
                if res.outcome == Outcome::Failed && on_failure == HeadFailure::Block {
                    ctx.conn
                        .prepare_cached("UPDATE deliveries SET status = 'blocked' WHERE id = ?1")?
                        .execute([&res.delivery_id])?;
                } else if settle_head(&ctx.conn, &res.delivery_id, endpoint_id, key, now)? {
                    push_once(&mut out.due_now, &ep);
                }
            }
            health
                .entry(ep.clone())
                .or_default()
                .add(a.at, failure_of(&res));
            if let Some(reason) = &res.disable_endpoint
                && disable_endpoint(&ctx.conn, &ep, reason, now)?
            {
                out.disabled.push(DisabledEndpoint {
                    org_id: ep.org_id.clone(),
                    endpoint_id: ep.endpoint_id.clone(),
                });
            }
        }
        for (ep, delta) in health {
            let (h, recovered) = update_health(&ctx.conn, &ep, &delta)?;
            if recovered {
                // It answers again: its waiting retries go now rather than on their schedule.
                let n = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at = ?2 WHERE endpoint_id = ?1
                         AND status = 'pending' AND claimed_by IS NULL AND next_attempt_at > ?2",
                    )?
                    .execute(params![ep.endpoint_id.as_str(), now])?;
                if n > 0 {
                    push_once(&mut out.due_now, &ep);
                }
            }
            if let (Some(since), Some(last)) = (h.failing_since, h.last_failure_at)
                && h.consecutive_failures > 0
                && let Some(reason) = policy.verdict(since, last, now)
                && disable_endpoint(&ctx.conn, &ep, &reason, now)?
            {
                out.disabled.push(DisabledEndpoint {
                    org_id: ep.org_id.clone(),
                    endpoint_id: ep.endpoint_id.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Inserts a pending delivery of `event` to `target`. With `claim` it is claimed for that node
/// until that time and the caller hands it to the engine (returns `true`); without, it is due
/// now. A delivery whose ordering key already has an open delivery is never claimed: it waits,
/// with no due time, until the deliveries before it settle.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_delivery(
    conn: &Connection,
    org: &str,
    event: &Event,
    target: &Target,
    subscription_id: Option<&str>,
    ordering_key: Option<&str>,
    claim: Option<(&str, i64)>,
    now: i64,
) -> Result<(DeliveryId, bool)> {
    let id = DeliveryId::generate();
    let waits = match (ordering_key, target.endpoint_id()) {
        (Some(key), Some(ep)) => key_open(conn, ep, key)?,
        _ => false,
    };
    let (claimed_by, next) = match (waits, claim) {
        (true, _) => (None, None),
        (false, Some((node, until))) => (Some(node), Some(until)),
        (false, None) => (None, Some(now)),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (id, org_id, event_seq, event_id, endpoint_id, subscription_id, status,
         attempts, next_attempt_at, claimed_by, created_at, updated_at, executor, ordering_key, order_slot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?9, ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        id,
        org,
        event.seq,
        event.id,
        target.endpoint_id().map(EndpointId::as_str),
        subscription_id,
        next,
        claimed_by,
        now,
        target.executor(),
        ordering_key,
    ])?;
    Ok((id, claimed_by.is_some()))
}

/// Whether ordering key `key` of endpoint `ep` has an open (pending or blocked) delivery.
fn key_open(conn: &Connection, ep: &str, key: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND order_slot = ?2 LIMIT 1",
        )?
        .query_row([ep, key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The head of a key settled: it leaves its key, and the key's next delivery becomes due.
/// Returns whether there was one.
fn settle_head(conn: &Connection, id: &str, ep: &str, key: &str, now: i64) -> Result<bool> {
    conn.prepare_cached("UPDATE deliveries SET order_slot = NULL WHERE id = ?1")?
        .execute([id])?;
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?3, updated_at = ?3 WHERE id =
               (SELECT id FROM deliveries WHERE endpoint_id = ?1 AND order_slot = ?2 ORDER BY event_seq LIMIT 1)
             AND status = 'pending' AND next_attempt_at IS NULL",
        )?
        .execute(params![ep, key, now])?;
    Ok(n > 0)
}

fn endpoint_head_failure(conn: &Connection, ep: &str) -> Result<HeadFailure> {
    let h: Option<Option<String>> = conn
        .prepare_cached("SELECT on_head_failure FROM endpoints WHERE id = ?1")?
        .query_row([ep], |r| r.get(0))
        .optional()?;
    Ok(match h.flatten().as_deref() {
        Some("block") => HeadFailure::Block,
        _ => HeadFailure::Skip,
    })
}

/// Disables an enabled endpoint for `reason`; returns whether it was enabled.
fn disable_endpoint(conn: &Connection, ep: &EndpointRef, reason: &str, now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, updated_at = ?4
             WHERE id = ?1 AND org_id = ?2 AND enabled = 1",
        )?
        .execute(params![ep.endpoint_id.as_str(), ep.org_id, reason, now])?;
    if n > 0 {
        bump_routing(conn, &ep.org_id)?;
    }
    Ok(n > 0)
}

/// Applies a batch's delta to an endpoint's stored health; returns the result and whether the
/// batch brought back an endpoint that was failing before it.
fn update_health(
    conn: &Connection,
    ep: &EndpointRef,
    d: &HealthDelta,
) -> Result<(EndpointHealth, bool)> {
    let stored: Option<EndpointHealth> = conn
        .prepare_cached(&format!(
            "SELECT {HEALTH_COLS} FROM endpoint_health WHERE endpoint_id = ?1"
        ))?
        .query_row([ep.endpoint_id.as_str()], health_from_row)
        .optional()?;
    let (h, recovered) = d.apply(stored.as_ref().unwrap_or(&EndpointHealth::default()));
    if !crate::common::health_changed(stored.as_ref(), &h) {
        return Ok((h, recovered));
    }
    conn.prepare_cached(
        "INSERT INTO endpoint_health (endpoint_id, org_id, consecutive_failures, failing_since,
           last_success_at, last_failure_at, last_error)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM endpoints WHERE id = ?1 AND org_id = ?2)
         ON CONFLICT (endpoint_id) DO UPDATE SET consecutive_failures = ?3, failing_since = ?4,
           last_success_at = ?5, last_failure_at = ?6, last_error = ?7",
    )?
    .execute(params![
        ep.endpoint_id.as_str(),
        ep.org_id,
        h.consecutive_failures,
        h.failing_since,
        h.last_success_at,
        h.last_failure_at,
        h.last_error
    ])?;
    Ok((h, recovered))
}

/// Claims with `sql` (an `UPDATE … RETURNING id, org_id, endpoint_id, attempts, event_seq,
/// executor`) and loads each claimed delivery's event once.
fn claim(
    ctx: &mut WriterCtx,
    lease_until: i64,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<DueDelivery>> {
    let claimed = {
        let mut stmt = ctx.conn.prepare_cached(sql)?;
        stmt.query_map(args, |r| {
            Ok((
                r.get::<_, DeliveryId>(0)?,
                r.get::<_, OrgId>(1)?,
                target_from_columns(r.get(2)?, r.get(5)?)?,
                r.get::<_, u32>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut out = Vec::with_capacity(claimed.len());
    for (id, org_id, target, attempts, seq, ordering_wait_ms) in claimed {
        let event = ctx.shared_event(seq)?;
        out.push(DueDelivery {
            delivery_id: id,
            org_id,
            target,
            attempts,
            event,
            lease_until,
            ordering_wait_ms: ordering_wait_ms.filter(|ms| *ms > 0),
            sync: None,
        });
    }
    Ok(out)
}

/// Makes every delivery that `node` claimed due again at `now` (the node stopping, or found
/// gone); answers how many.
pub(super) fn release_claims_of(
    conn: &rusqlite::Connection,
    node: &str,
    now: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?2
         WHERE claimed_by = ?1 AND status = 'pending'",
    )?
    .execute(params![node, now])
}
