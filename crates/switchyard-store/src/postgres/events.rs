//! The event log: publish (events and their deliveries, one transaction, at a checked routing
//! version, each kind of row written by one statement), reads, the trace and retention.

use super::queue::NewDeliveries;
use super::*;
use switchyard_core::glob::is_glob;

#[async_trait]
impl EventLog for PgStore {
    async fn publish(&self, org: &OrgId, batch: RoutedBatch, node: &str) -> Result<PublishOutcome> {
        let r = self.publish_tx(org, batch, node).await;
        self.note(r)
    }

    async fn get_event(&self, org: &OrgId, id: &EventId) -> Result<Event> {
        let c = self.conn().await?;
        let r = Db::C(&c)
            .row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1 AND id = $2"),
                &[org, id],
            )
            .await?;
        event_from_row(&r)
    }

    async fn list_events(&self, org: &OrgId, q: &EventQuery) -> Result<Vec<Event>> {
        let mut f = Filtered::new(
            format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1"),
            org.clone(),
        );
        if let Some(t) = &q.event_type {
            if is_glob(t) {
                f.and("type LIKE", glob_to_like(t));
            } else {
                f.and("type =", t.clone());
            }
        }
        if let Some(t) = &q.entity_type {
            f.and("entity_type =", t.clone());
        }
        if let Some(e) = &q.entity_id {
            f.and("entity_id =", e.clone());
        }
        if let Some(s) = q.since {
            f.and("timestamp >=", s);
        }
        if let Some(u) = q.until {
            f.and("timestamp <", u);
        }
        if let Some(b) = q.before_seq {
            f.and("seq <", b);
        }
        if let Some(a) = q.after_seq {
            f.and("seq >", a);
        }
        if let Some(st) = q.delivery_status {
            f.and(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.org_id = events.org_id \
                 AND d.event_id = events.id AND d.status =",
                st.as_str(),
            );
            f.push(")");
        }
        let order = if q.after_seq.is_some() { "ASC" } else { "DESC" };
        f.push(&format!(
            " ORDER BY seq {order} LIMIT {}",
            q.limit.clamp(1, 1000)
        ));
        let c = self.conn().await?;
        f.rows(Db::C(&c))
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn trace(&self, org: &OrgId, event_id: &EventId) -> Result<Trace> {
        let mut c = self.conn().await?;
        let tx = snapshot(&mut c).await?;
        let db = Db::T(&tx);
        let event = event_from_row(
            &db.row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1 AND id = $2"),
                &[org, event_id],
            )
            .await?,
        )?;
        let deliveries = db
            .rows(
                &format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = $1 AND event_id = $2
                     ORDER BY id"
                ),
                &[org, event_id],
            )
            .await?
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
        let mut attempts: HashMap<DeliveryId, Vec<Attempt>> = HashMap::new();
        for r in db
            .rows(
                &format!(
                    "SELECT {ATTEMPT_COLS} FROM attempts WHERE delivery_id = ANY($1)
                     ORDER BY at, id"
                ),
                &[&ids],
            )
            .await?
        {
            let a = attempt_from_row(&r)?;
            attempts.entry(a.delivery_id.clone()).or_default().push(a);
        }
        commit(tx).await?;
        let deliveries = deliveries
            .into_iter()
            .map(|d| {
                let a = attempts.remove(&d.id).unwrap_or_default();
                (d, a)
            })
            .collect();
        Ok(Trace { event, deliveries })
    }

    async fn purge_events(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<PurgeBatch> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        let (rows, done) = retention_scan(db, org, before, after_seq, limit).await?;
        let mut out = PurgeBatch {
            next_after_seq: rows.last().map_or(after_seq, |r| r.0),
            done,
            ..Default::default()
        };
        // Events still to be delivered (a delivery pending or blocked) are kept until finished.
        let ids = settled_events(db, org, &rows, "status IN ('pending', 'blocked')").await?;
        if !ids.is_empty() {
            out.attempts = db
                .exec(
                    "DELETE FROM attempts WHERE delivery_id IN
                     (SELECT id FROM deliveries WHERE org_id = $1 AND event_id = ANY($2))",
                    &[org, &ids],
                )
                .await?;
            out.deliveries = db
                .exec(
                    "DELETE FROM deliveries WHERE org_id = $1 AND event_id = ANY($2)",
                    &[org, &ids],
                )
                .await?;
            out.runs = db
                .exec(
                    "DELETE FROM runs WHERE org_id = $1 AND event_id = ANY($2)",
                    &[org, &ids],
                )
                .await?;
            out.events = db
                .exec(
                    "DELETE FROM events WHERE org_id = $1 AND id = ANY($2)",
                    &[org, &ids],
                )
                .await?;
        }
        commit(tx).await?;
        Ok(out)
    }

    async fn drop_payloads(
        &self,
        org: &OrgId,
        before: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<DropBatch> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        let (rows, done) = retention_scan(db, org, before, after_seq, limit).await?;
        let mut out = DropBatch {
            next_after_seq: rows.last().map_or(after_seq, |r| r.0),
            done,
            ..Default::default()
        };
        let open: Vec<(i64, String, bool)> = rows.into_iter().filter(|r| !r.2).collect();
        // Pending, blocked or failed: it may be delivered again and needs its data.
        let ids = settled_events(db, org, &open, "status <> 'delivered'").await?;
        out.first_kept = open
            .iter()
            .find(|(_, id, _)| !ids.contains(id))
            .map(|r| r.0);
        if !ids.is_empty() {
            out.dropped = db
                .exec(
                    "UPDATE events SET data = 'null', payload_dropped_at = $3
                     WHERE org_id = $1 AND id = ANY($2)",
                    &[org, &ids, &now_ms()],
                )
                .await?;
            db.exec(
                "UPDATE runs SET input = 'null' WHERE org_id = $1 AND event_id = ANY($2)",
                &[org, &ids],
            )
            .await?;
        }
        commit(tx).await?;
        Ok(out)
    }
}

impl PgStore {
    async fn publish_tx(
        &self,
        org: &OrgId,
        batch: RoutedBatch,
        node: &str,
    ) -> Result<PublishOutcome> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // Held until the commit: a catalog change (which updates the row) waits for this
        // publish, and a publish after it sees the new version.
        let version: i64 = get(
            &db.row(
                "SELECT routing_version FROM orgs WHERE id = $1 FOR SHARE",
                &[org],
            )
            .await?,
            0,
        )?;
        if version != batch.routing_version {
            return Ok(PublishOutcome::StaleRouting(batch));
        }
        let now = now_ms();
        let lease_until = now + DEFAULT_LEASE_MS;
        // Every ordering key the batch adds to, locked in one order (no two publishes wait on
        // each other).
        let mut keys: Vec<(&str, &str)> = batch
            .events
            .iter()
            .flat_map(|e| e.targets.iter())
            .filter_map(|t| Some((t.target.endpoint_id()?.as_str(), t.ordering_key.as_deref()?)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (ep, key) in &keys {
            db.lock_key(ep, key).await?;
        }

        // The events, in one statement; an id stored before comes back as no row.
        let mut cols = EventColumns::default();
        for e in &batch.events {
            cols.push(&e.event);
        }
        let inserted = db
            .rows(
                "INSERT INTO events (org_id, id, type, timestamp, entity_type, entity_id, data, received_at)
                 SELECT $1::text, e.id, e.type, e.ts, e.entity_type, e.entity_id, e.data, $8::bigint
                 FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
                   WITH ORDINALITY AS e(id, type, ts, entity_type, entity_id, data, n)
                 ORDER BY e.n
                 ON CONFLICT (org_id, id) DO NOTHING RETURNING id, seq",
                &[
                    org,
                    &cols.ids,
                    &cols.types,
                    &cols.timestamps,
                    &cols.entity_types,
                    &cols.entity_ids,
                    &cols.data,
                    &now,
                ],
            )
            .await?;
        let mut seqs: HashMap<String, i64> = HashMap::with_capacity(inserted.len());
        for r in &inserted {
            seqs.insert(get(r, 0)?, get(r, 1)?);
        }

        let mut deliveries = NewDeliveries::default();
        let mut out: Vec<Option<Published>> = Vec::with_capacity(batch.events.len());
        let mut duplicates = Vec::new();
        for (i, routed) in batch.events.into_iter().enumerate() {
            let RoutedEvent {
                event: ne,
                targets,
                claim,
            } = routed;
            // The first of the batch with its id is the new one; later ones are duplicates.
            let Some(seq) = seqs.remove(ne.id.as_str()) else {
                duplicates.push((i, ne));
                out.push(None);
                continue;
            };
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
            });
            self.remember(&event);
            let mut new_deliveries = Vec::new();
            let count = targets.len();
            for (j, target) in targets.into_iter().enumerate() {
                let take = claim.get(j).copied().unwrap_or(false);
                let (id, claimed) = deliveries
                    .push(
                        db,
                        &event,
                        &target.target,
                        Some(target.subscription_id.as_str()),
                        target.ordering_key.as_deref(),
                        take.then_some((node, lease_until)),
                        now,
                    )
                    .await?;
                if !claimed {
                    // Left due for its endpoint to pull, or waiting behind the delivery before
                    // it with the same ordering key.
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
            out.push(Some(Published {
                event,
                duplicate: false,
                delivery_count: count,
                new_deliveries,
                sync: vec![],
            }));
        }
        deliveries.insert(db, org, now).await?;

        for (i, ne) in duplicates {
            let event = event_from_row(
                &db.row(
                    &format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1 AND id = $2"),
                    &[org, &ne.id],
                )
                .await?,
            )?;
            if let Some(what) = idempotency_conflict(&event, &ne) {
                return Err(idempotency_error(&ne.id, what));
            }
            let count: i64 = get(
                &db.row(
                    "SELECT count(*) FROM deliveries WHERE org_id = $1 AND event_id = $2",
                    &[org, &ne.id],
                )
                .await?,
                0,
            )?;
            out[i] = Some(Published {
                event: Arc::new(event),
                duplicate: true,
                delivery_count: usize::try_from(count).unwrap_or(0),
                new_deliveries: vec![],
                sync: vec![],
            });
        }
        commit(tx).await?;
        Ok(PublishOutcome::Committed(
            out.into_iter().flatten().collect(),
        ))
    }
}

/// The columns of new events, one array each, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    types: Vec<&'a str>,
    timestamps: Vec<i64>,
    entity_types: Vec<Option<&'a str>>,
    entity_ids: Vec<Option<&'a str>>,
    data: Vec<String>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(e.id.as_str());
        self.types.push(e.event_type.as_str());
        self.timestamps.push(e.timestamp);
        self.entity_types.push(e.entity.kind.as_deref());
        self.entity_ids.push(e.entity.id.as_deref());
        self.data.push(e.data.to_string());
    }
}

/// A type pattern (`*` matches any run of characters) as a LIKE pattern.
fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for ch in glob.chars() {
        match ch {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

/// The next events of `org` a retention pass looks at: up to `limit` after `after_seq` received
/// before `before`, as (seq, id, payload already dropped), and whether none is left after them.
/// They are locked until the transaction ends, so a manual retry (which takes its event's row
/// first) cannot reopen one of them meanwhile.
async fn retention_scan(
    db: Db<'_>,
    org: &OrgId,
    before: i64,
    after_seq: i64,
    limit: u32,
) -> Result<(Vec<Scanned>, bool)> {
    let rows = db
        .rows(
            "SELECT seq, id, received_at, payload_dropped_at IS NOT NULL FROM events
             WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3 FOR UPDATE",
            &[org, &after_seq, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(retention_cut(rows, before, limit))
}

/// Of the scanned events, the ids of those with no delivery matching `open` (read after the
/// events were locked, so it sees every change committed before).
async fn settled_events(
    db: Db<'_>,
    org: &OrgId,
    rows: &[Scanned],
    open: &str,
) -> Result<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    db.rows(
        &format!(
            "SELECT e.id FROM unnest($2::text[]) AS e(id) WHERE NOT EXISTS
             (SELECT 1 FROM deliveries d WHERE d.org_id = $1 AND d.event_id = e.id AND d.{open})"
        ),
        &[org, &ids],
    )
    .await?
    .iter()
    .map(|r| get(r, 0))
    .collect()
}
