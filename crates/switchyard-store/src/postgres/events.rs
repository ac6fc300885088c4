//! The event log: publish (events and their deliveries, one transaction, at a checked routing
//! version, each kind of row written by one statement), reads, the trace and retention.

use super::queue::NewDeliveries;
use super::*;
use switchyard_core::glob::is_glob;

#[async_trait]
impl EventLog for PgStore {
    async fn publish(
        &self,
        org: &OrgId,
        batch: RoutedBatch,
        claim: Claim<'_>,
    ) -> Result<PublishOutcome> {
        self.publish_queued(org, batch, claim).await
    }

    async fn get_event(&self, org: &OrgId, id: &EventId) -> Result<Event> {
        naming(Missing::Event, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1 AND id = $2"),
                    &[org, id],
                )
                .await?;
            event_from_row(&r)
        })
        .await
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
        naming(Missing::Event, async {
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

/// One publish call waiting for the publish writers.
pub(super) struct PublishJob {
    org: OrgId,
    batch: RoutedBatch,
    node: String,
    lease_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<PublishOutcome>>,
}

/// How many publish transactions run at once (each holds one pooled connection).
pub(super) const PUBLISH_WRITERS: usize = 4;
/// Events written by one publish transaction at most; calls beyond wait for the next one.
const GROUP_EVENTS: usize = 2_000;

/// The queue of publish calls that the publish writers share.
pub(super) type PublishQueue =
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<PublishJob>>>;

impl PgStore {
    /// Queues a publish for the writers and waits for its answer.
    async fn publish_queued(
        &self,
        org: &OrgId,
        batch: RoutedBatch,
        claim: Claim<'_>,
    ) -> Result<PublishOutcome> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = PublishJob {
            org: org.clone(),
            batch,
            node: claim.node.to_owned(),
            lease_ms: claim.lease_ms,
            reply,
        };
        let sent = self
            .inner
            .publishes
            .lock()
            .map_err(|_| StoreError::Closed)?
            .as_ref()
            .map(|tx| tx.send(job).is_ok());
        if sent != Some(true) {
            return Err(StoreError::Closed);
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// One publish writer: takes every call waiting (up to [`GROUP_EVENTS`] events) and writes
    /// them in one transaction, the way SQLite's writer groups its commits; ends when the store
    /// closes.
    pub(super) async fn publish_writer(store: std::sync::Weak<Inner>, queue: PublishQueue) {
        loop {
            let mut jobs = Vec::new();
            {
                let mut rx = queue.lock().await;
                match rx.recv().await {
                    Some(job) => jobs.push(job),
                    None => return,
                }
                let mut events = jobs[0].batch.events.len();
                while events < GROUP_EVENTS {
                    let Ok(job) = rx.try_recv() else { break };
                    events += job.batch.events.len();
                    jobs.push(job);
                }
            }
            // Held only while writing: a store that is dropped ends its writers.
            let Some(inner) = store.upgrade() else { return };
            let this = PgStore { inner };
            metrics::histogram!("switchyard_publish_group_calls").record(jobs.len() as f64);
            let answers = match this.publish_group(&jobs).await {
                Ok(answers) => answers.into_iter().map(Ok).collect(),
                // One call's failure (an idempotency conflict, a deleted organization) must not
                // fail the others: each is written again on its own and answered with its own
                // outcome.
                Err(_) if jobs.len() > 1 => {
                    let mut answers = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        let one = this.publish_group(std::slice::from_ref(job)).await;
                        answers.push(one.map(|mut v| v.remove(0)));
                    }
                    answers
                }
                Err(e) => vec![Err(e)],
            };
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.reply.send(this.note(answer));
            }
        }
    }

    /// Writes the publish calls `jobs` in one transaction: each batch at its routing version
    /// (a stale one comes back untouched), every event in one statement, every delivery in
    /// another. An error fails them all; nothing of them is then stored.
    async fn publish_group(&self, jobs: &[PublishJob]) -> Result<Vec<PublishOutcome>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // Held until the commit: a catalog change (which updates the row) waits for these
        // publishes, and a publish after it sees the new version.
        let mut orgs: Vec<&str> = jobs.iter().map(|j| j.org.as_str()).collect();
        orgs.sort_unstable();
        orgs.dedup();
        let mut versions: HashMap<String, i64> = HashMap::with_capacity(orgs.len());
        for r in db
            .rows(
                "SELECT id, routing_version FROM orgs WHERE id = ANY($1) ORDER BY id FOR SHARE",
                &[&orgs],
            )
            .await?
        {
            versions.insert(get(&r, 0)?, get(&r, 1)?);
        }
        let mut current = Vec::with_capacity(jobs.len());
        for j in jobs {
            match versions.get(j.org.as_str()) {
                None => return Err(StoreError::NotFound(Missing::Organization)),
                Some(v) => current.push(*v == j.batch.routing_version),
            }
        }
        let now = now_ms();
        let live = || {
            jobs.iter()
                .zip(&current)
                .filter(|(_, c)| **c)
                .map(|(j, _)| j)
        };
        // Every ordering key the batches add to, locked in one order (no two publishes wait on
        // each other).
        let mut keys: Vec<(&str, &str)> = live()
            .flat_map(|j| j.batch.events.iter())
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
        for j in live() {
            for e in &j.batch.events {
                cols.push(&j.org, &e.event);
            }
        }
        let mut seqs: HashMap<(String, String), i64> = HashMap::with_capacity(cols.ids.len());
        if !cols.ids.is_empty() {
            for r in db
                .rows(
                    "INSERT INTO events (org_id, id, type, timestamp, entity_type, entity_id, data,
                       received_at)
                     SELECT e.org, e.id, e.type, e.ts, e.entity_type, e.entity_id, e.data,
                       $8::bigint
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                       $6::text[], $7::text[])
                       WITH ORDINALITY AS e(org, id, type, ts, entity_type, entity_id, data, n)
                     ORDER BY e.n
                     ON CONFLICT (org_id, id) DO NOTHING RETURNING org_id, id, seq",
                    &[
                        &cols.orgs,
                        &cols.ids,
                        &cols.types,
                        &cols.timestamps,
                        &cols.entity_types,
                        &cols.entity_ids,
                        &cols.data,
                        &now,
                    ],
                )
                .await?
            {
                seqs.insert((get(&r, 0)?, get(&r, 1)?), get(&r, 2)?);
            }
        }

        let mut deliveries = NewDeliveries::default();
        let mut out: Vec<Option<Vec<Option<Published>>>> = Vec::with_capacity(jobs.len());
        let mut duplicates = Vec::new();
        for (k, (j, is_current)) in jobs.iter().zip(&current).enumerate() {
            if !is_current {
                out.push(None);
                continue;
            }
            let mut published = Vec::with_capacity(j.batch.events.len());
            for (i, routed) in j.batch.events.iter().enumerate() {
                let ne = &routed.event;
                // The first with its id is the new one; later ones are duplicates.
                let Some(seq) = seqs.remove(&(j.org.to_string(), ne.id.to_string())) else {
                    duplicates.push((k, i, &j.org, ne));
                    published.push(None);
                    continue;
                };
                let event = Arc::new(Event {
                    id: ne.id.clone(),
                    org_id: j.org.clone(),
                    event_type: ne.event_type.clone(),
                    timestamp: ne.timestamp,
                    entity: ne.entity.clone(),
                    data: ne.data.clone(),
                    seq,
                    received_at: now,
                    payload_dropped_at: None,
                    body: Default::default(),
                });
                self.remember(&event);
                let mut new_deliveries = Vec::new();
                for (t, target) in routed.targets.iter().enumerate() {
                    let take = routed.claim.get(t).copied().unwrap_or(false);
                    let (id, claimed) = deliveries
                        .push(
                            db,
                            &event,
                            &target.target,
                            Some(target.subscription_id.as_str()),
                            target.ordering_key.as_deref(),
                            take.then_some((j.node.as_str(), now + j.lease_ms)),
                            now,
                        )
                        .await?;
                    if !claimed {
                        // Left due for its endpoint to pull, or waiting behind the delivery
                        // before it with the same ordering key.
                        continue;
                    }
                    new_deliveries.push(DueDelivery {
                        delivery_id: id,
                        org_id: j.org.clone(),
                        target: target.target.clone(),
                        attempts: 0,
                        event: event.clone(),
                        lease_until: now + j.lease_ms,
                        ordering_wait_ms: None,
                        sync: target.sync.then(|| target.subscription_id.clone()),
                    });
                }
                published.push(Some(Published {
                    event,
                    duplicate: false,
                    delivery_count: routed.targets.len(),
                    new_deliveries,
                    sync: vec![],
                }));
            }
            out.push(Some(published));
        }
        deliveries.insert(db, now).await?;

        for (k, i, org, ne) in duplicates {
            let event = event_from_row(
                &db.row(
                    &format!("SELECT {EVENT_COLS} FROM events WHERE org_id = $1 AND id = $2"),
                    &[org, &ne.id],
                )
                .await?,
            )?;
            if let Some(what) = idempotency_conflict(&event, ne) {
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
            if let Some(Some(published)) = out.get_mut(k) {
                published[i] = Some(Published {
                    event: Arc::new(event),
                    duplicate: true,
                    delivery_count: usize::try_from(count).unwrap_or(0),
                    new_deliveries: vec![],
                    sync: vec![],
                });
            }
        }
        commit(tx).await?;
        Ok(jobs
            .iter()
            .zip(out)
            .map(|(j, published)| match published {
                Some(p) => PublishOutcome::Committed(p.into_iter().flatten().collect()),
                None => PublishOutcome::StaleRouting(j.batch.clone()),
            })
            .collect())
    }
}

/// The columns of new events, one array each, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct EventColumns<'a> {
    orgs: Vec<&'a str>,
    ids: Vec<&'a str>,
    types: Vec<&'a str>,
    timestamps: Vec<i64>,
    entity_types: Vec<Option<&'a str>>,
    entity_ids: Vec<Option<&'a str>>,
    data: Vec<String>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, org: &'a OrgId, e: &'a NewEvent) {
        self.orgs.push(org.as_str());
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
