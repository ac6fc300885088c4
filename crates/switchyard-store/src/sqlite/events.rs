//! The event log: publish (events and their deliveries, one transaction, at a checked routing version), reads and the trace.

use super::queue::insert_delivery;
use super::*;
use switchyard_core::glob::is_glob;

#[async_trait]
impl EventLog for SqliteStore {
    async fn publish(
        &self,
        org: &OrgId,
        batch: RoutedBatch,
        claim: Claim<'_>,
    ) -> Result<PublishOutcome> {
        let (org, node, lease_ms) = (org.clone(), claim.node.to_string(), claim.lease_ms);
        let statements: usize = batch.events.iter().map(|e| 1 + e.targets.len()).sum();
        self.write_sized(statements, move |ctx| {
            let version: i64 = ctx
                .conn
                .prepare_cached("SELECT routing_version FROM orgs WHERE id = ?1")?
                .query_row(params![&org], |r| r.get(0))?;
            if version != batch.routing_version {
                return Ok(PublishOutcome::StaleRouting(batch));
            }
            let now = now_ms();
            let lease_until = now + lease_ms;
            let mut out = Vec::with_capacity(batch.events.len());
            for RoutedEvent {
                event: ne,
                targets,
                claim,
            } in batch.events
            {
                let existing: Option<i64> = ctx
                    .conn
                    .prepare_cached("SELECT seq FROM events WHERE org_id = ?1 AND id = ?2")?
                    .query_row(params![&org, &ne.id], |r| r.get(0))
                    .optional()?;
                if let Some(seq) = existing {
                    let event = ctx.load_event_by_seq(seq)?;
                    if let Some(what) = idempotency_conflict(&event, &ne) {
                        return Err(idempotency_error(&ne.id, what));
                    }
                    let count: i64 = ctx
                        .conn
                        .prepare_cached("SELECT count(*) FROM deliveries WHERE org_id = ?1 AND event_id = ?2")?
                        .query_row(params![&org, &ne.id], |r| r.get(0))?;
                    out.push(Published {
                        event: Arc::new(event),
                        duplicate: true,
                        delivery_count: count as usize,
                        new_deliveries: vec![],
                        sync: vec![],
                    });
                    continue;
                }
                let data = ne.data.to_string();
                let seq: i64 = ctx
                    .conn
                    .prepare_cached(
                        "INSERT INTO events (org_id, id, type, timestamp, entity_type, entity_id, data, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
                    )?
                    .query_row(
                        params![org, ne.id, ne.event_type, ne.timestamp, ne.entity.kind, ne.entity.id, data, now],
                        |r| r.get(0),
                    )?;
                let event = Arc::new(Event {
                    id: ne.id,
                    org_id: org.clone(),
                    event_type: ne.event_type,
                    timestamp: ne.timestamp,
                    entity: ne.entity,
                    data: ne.data,
                    seq,
                    received_at: now,
                    payload_dropped_at: None,
                    body: Default::default(),
                });
                ctx.remember(&event);
                let mut new_deliveries = Vec::new();
                let mut count = 0;
                for (i, target) in targets.into_iter().enumerate() {
                    let take = claim.get(i).copied().unwrap_or(false);
                    let (id, claimed) = insert_delivery(
                        &ctx.conn,
                        &org,
                        &event,
                        &target.target,
                        Some(&target.subscription_id),
                        target.ordering_key.as_deref(),
                        take.then_some((node.as_str(), lease_until)),
                        now,
                    )?;
                    count += 1;
                    if !claimed {
                        // Left due for its endpoint to pull, or waiting behind the delivery
                        // before it with the same ordering key.
                        continue;
                    }
                    new_deliveries.push(DueDelivery {
                        delivery_id: id,
                        org_id: org.clone(),
                        target: target.target,
                        attempts: 0,
                        event: event.clone(),
                        lease_until,
                        ordering_wait_ms: None,
                        sync: target.sync.then_some(target.subscription_id),
                    });
                }
                out.push(Published {
                    event,
                    duplicate: false,
                    delivery_count: count,
                    new_deliveries,
                    sync: vec![],
                });
            }
            Ok(PublishOutcome::Committed(out))
        })
        .await
    }

    async fn get_event(&self, org: &OrgId, id: &EventId) -> Result<Event> {
        naming(Missing::Event, async {
            let (org, id) = (org.clone(), id.to_string());
            self.read(move |c, _| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {EVENT_COLS} FROM events WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org, id], event_from_row)?)
            })
            .await
        })
        .await
    }

    async fn list_events(&self, org: &OrgId, q: &EventQuery) -> Result<Vec<Event>> {
        let (org, q) = (org.clone(), q.clone());
        self.read(move |c, _| {
            let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE org_id = ?1");
            let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(org)];
            let mut add = |cond: &str, v: Box<dyn ToSql>| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(t) = q.event_type {
                // Type patterns hold no GLOB metacharacter but `*`, which means the same.
                let op = if is_glob(&t) { "type GLOB" } else { "type =" };
                add(op, Box::new(t));
            }
            if let Some(t) = q.entity_type {
                add("entity_type =", Box::new(t));
            }
            if let Some(e) = q.entity_id {
                add("entity_id =", Box::new(e));
            }
            if let Some(s) = q.since {
                add("timestamp >=", Box::new(s));
            }
            if let Some(u) = q.until {
                add("timestamp <", Box::new(u));
            }
            if let Some(b) = q.before_seq {
                add("seq <", Box::new(b));
            }
            if let Some(a) = q.after_seq {
                add("seq >", Box::new(a));
            }
            if let Some(st) = q.delivery_status {
                add(
                    "EXISTS (SELECT 1 FROM deliveries d WHERE d.org_id = events.org_id \
                     AND d.event_id = events.id AND d.status =",
                    Box::new(st.as_str()),
                );
                sql.push(')');
            }
            let order = if q.after_seq.is_some() { "ASC" } else { "DESC" };
            sql.push_str(&format!(
                " ORDER BY seq {order} LIMIT {}",
                q.limit.clamp(1, 1000)
            ));
            let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
            list(c, &sql, &refs, event_from_row)
        })
        .await
    }

    async fn trace(&self, org: &OrgId, event_id: &EventId) -> Result<Trace> {
        naming(Missing::Event, async {
            let (org, id) = (org.clone(), event_id.to_string());
            self.read(move |c, _| {
                let event = c
                    .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE org_id = ?1 AND id = ?2"))?
                    .query_row(params![&org, &id], event_from_row)?;
                let deliveries = list(
                    c,
                    &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = ?1 AND event_id = ?2 ORDER BY id"),
                    &[&org, &id],
                    delivery_from_row,
                )?;
                let mut out = Vec::with_capacity(deliveries.len());
                let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE delivery_id = ?1 ORDER BY at, id");
                for d in deliveries {
                    let attempts = list(
                        c,
                        &sql,
                        &[&d.id],
                        attempt_from_row,
                    )?;
                    out.push((d, attempts));
                }
                Ok(Trace { event, deliveries: out })
            })
            .await
        })
        .await
    }

    async fn purge_events(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<PurgeBatch> {
        let org = org.clone();
        self.write(move |ctx| {
            let mut out = PurgeBatch {
                next_after_seq: after_seq,
                ..Default::default()
            };
            let (rows, done) = retention_scan(&ctx.conn, &org, before, after_seq, limit)?;
            out.done = done;
            for (seq, id, _) in rows {
                out.next_after_seq = seq;
                let pending: Option<i64> = ctx
                    .conn
                    .prepare_cached(
                        "SELECT 1 FROM deliveries WHERE org_id = ?1 AND event_id = ?2 AND status IN ('pending', 'blocked') LIMIT 1",
                    )?
                    .query_row(params![&org, &id], |r| r.get(0))
                    .optional()?;
                if pending.is_some() {
                    // Still to be delivered: kept until it is finished.
                    continue;
                }
                out.attempts += ctx
                    .conn
                    .prepare_cached(
                        "DELETE FROM attempts WHERE delivery_id IN
                         (SELECT id FROM deliveries WHERE org_id = ?1 AND event_id = ?2)",
                    )?
                    .execute(params![&org, &id])? as u64;
                out.deliveries += ctx
                    .conn
                    .prepare_cached("DELETE FROM deliveries WHERE org_id = ?1 AND event_id = ?2")?
                    .execute(params![&org, &id])? as u64;
                out.runs += ctx
                    .conn
                    .prepare_cached("DELETE FROM runs WHERE org_id = ?1 AND event_id = ?2")?
                    .execute(params![&org, &id])? as u64;
                out.events += ctx
                    .conn
                    .prepare_cached("DELETE FROM events WHERE seq = ?1")?
                    .execute([seq])? as u64;
            }
            Ok(out)
        })
        .await
    }

    async fn drop_payloads(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<DropBatch> {
        let org = org.clone();
        self.write(move |ctx| {
            let now = now_ms();
            let mut out = DropBatch {
                next_after_seq: after_seq,
                ..Default::default()
            };
            let (rows, done) = retention_scan(&ctx.conn, &org, before, after_seq, limit)?;
            out.done = done;
            for (seq, id, dropped) in rows {
                out.next_after_seq = seq;
                if dropped {
                    continue;
                }
                let open: Option<i64> = ctx
                    .conn
                    .prepare_cached(
                        "SELECT 1 FROM deliveries WHERE org_id = ?1 AND event_id = ?2 AND status != 'delivered' LIMIT 1",
                    )?
                    .query_row(params![&org, &id], |r| r.get(0))
                    .optional()?;
                if open.is_some() {
                    // Pending, blocked or failed: it may be delivered again and needs its data.
                    out.first_kept.get_or_insert(seq);
                    continue;
                }
                ctx.conn
                    .prepare_cached("UPDATE events SET data = 'null', payload_dropped_at = ?2 WHERE seq = ?1")?
                    .execute(params![seq, now])?;
                ctx.conn
                    .prepare_cached("UPDATE runs SET input = 'null' WHERE org_id = ?1 AND event_id = ?2")?
                    .execute(params![&org, &id])?;
                out.dropped += 1;
            }
            Ok(out)
        })
        .await
    }
}

/// The next events of `org` a retention pass looks at: up to `limit` after `after_seq` received
/// before `before`, as (seq, id, payload already dropped), and whether none is left after them.
fn retention_scan(
    conn: &rusqlite::Connection,
    org: &str,
    before: i64,
    after_seq: i64,
    limit: u32,
) -> Result<(Vec<Scanned>, bool)> {
    let rows: Vec<(i64, String, i64, bool)> = list(
        conn,
        "SELECT seq, id, received_at, payload_dropped_at IS NOT NULL FROM events
         WHERE org_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        &[&org, &after_seq, &limit],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    Ok(retention_cut(rows, before, limit))
}
