//! The delivery queue: claims (`FOR UPDATE SKIP LOCKED`, so nodes claiming at once never take
//! the same delivery), releases, attempt results written a statement per kind of row, manual
//! retry and replay.

use super::endpoints::get_endpoint_db;
use super::*;
use std::collections::HashSet;
use switchyard_core::health::{DisablePolicy, EndpointHealth, WindowStats};

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn list_deliveries(&self, org: &OrgId, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let mut f = Filtered::new(
            format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = $1"),
            org.clone(),
        );
        if let Some(s) = q.status {
            f.and("status =", s.as_str());
        }
        if let Some(e) = &q.endpoint_id {
            f.and("endpoint_id =", e.clone());
        }
        if let Some(e) = &q.event_id {
            f.and("event_id =", e.clone());
        }
        if let Some(b) = &q.before_id {
            f.and("id <", b.clone());
        }
        f.push(&format!(
            " ORDER BY id DESC LIMIT {}",
            q.limit.clamp(1, 1000)
        ));
        let c = self.conn().await?;
        f.rows(Db::C(&c))
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn get_delivery(&self, org: &OrgId, id: &DeliveryId) -> Result<Delivery> {
        naming(Missing::Delivery, async {
            let c = self.conn().await?;
            let r = Db::C(&c)
                .row(
                    &format!(
                        "SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = $1 AND id = $2"
                    ),
                    &[org, id],
                )
                .await?;
            delivery_from_row(&r)
        })
        .await
    }

    async fn due_endpoints(&self, node: &str, now: i64, limit: u32) -> Result<Vec<EndpointRef>> {
        let c = self.conn().await?;
        // A skip-scan over the endpoints that have pending deliveries (one index seek each),
        // keeping the enabled ones with a delivery due.
        Db::C(&c)
            .rows(
                "WITH RECURSIVE ep(id) AS (
                   SELECT (SELECT min(endpoint_id) FROM deliveries
                           WHERE status = 'pending' AND endpoint_id IS NOT NULL)
                   UNION ALL
                   SELECT (SELECT min(endpoint_id) FROM deliveries
                           WHERE status = 'pending' AND endpoint_id > ep.id)
                   FROM ep WHERE ep.id IS NOT NULL
                 )
                 SELECT x.org_id, ep.id FROM ep CROSS JOIN LATERAL (
                   SELECT e.org_id FROM endpoints e WHERE e.id = ep.id AND e.enabled
                     AND EXISTS (SELECT 1 FROM deliveries d WHERE d.status = 'pending'
                       AND d.endpoint_id = e.id AND d.next_attempt_at <= $1)
                     AND NOT EXISTS (SELECT 1 FROM endpoint_leases l WHERE l.endpoint_id = e.id
                       AND l.node <> $3 AND l.lease_until > $1)
                   -- A fence: each found endpoint is looked up by its keys, never joined by
                   -- scanning endpoints or leases (see EXPLAIN.md).
                   OFFSET 0) x
                 LIMIT $2",
                &[&now, &i64::from(limit), &node],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(EndpointRef {
                    org_id: get(r, 0)?,
                    endpoint_id: get(r, 1)?,
                })
            })
            .collect()
    }

    async fn claim_endpoint(
        &self,
        node: &str,
        endpoint: &EndpointRef,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let lease_until = now + lease_ms;
        self.claim(
            lease_until,
            // The rows are picked once (a materialized CTE): a subquery under `IN` may be run
            // again by the plan, and with SKIP LOCKED each run can pick other rows.
            "WITH picked AS MATERIALIZED (
               SELECT id FROM deliveries WHERE status = 'pending' AND endpoint_id = $5
                 AND next_attempt_at <= $3
                 AND EXISTS (SELECT 1 FROM endpoint_leases WHERE endpoint_id = $5 AND node = $1
                             AND lease_until > $3)
               ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d SET claimed_by = $1, next_attempt_at = $2
             FROM picked WHERE d.id = picked.id AND d.org_id = $6
             RETURNING d.id, d.org_id, d.endpoint_id, d.attempts, d.event_seq, d.executor,
               CASE WHEN d.ordering_key IS NOT NULL AND d.attempts = 0
                 THEN d.updated_at - d.created_at END",
            &[
                &node,
                &lease_until,
                &now,
                &i64::from(limit),
                &endpoint.endpoint_id,
                &endpoint.org_id,
            ],
        )
        .await
    }

    async fn claim_hooks(
        &self,
        node: &str,
        now: i64,
        claim: &HookClaim,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>> {
        let lease_until = now + lease_ms;
        let skip: Vec<&str> = claim.skip.iter().map(OrgId::as_str).collect();
        // The organizations with hooks pending (a skip-scan over `deliveries_hooks_due`), then
        // at most `per_org` of each.
        self.claim(
            lease_until,
            "WITH RECURSIVE o(org) AS (
               (SELECT org_id FROM deliveries WHERE status = 'pending' AND endpoint_id IS NULL
                ORDER BY org_id LIMIT 1)
               UNION ALL
               SELECT (SELECT d.org_id FROM deliveries d
                       WHERE d.status = 'pending' AND d.endpoint_id IS NULL AND d.org_id > o.org
                       ORDER BY d.org_id LIMIT 1)
               FROM o WHERE o.org IS NOT NULL),
             orgs AS (SELECT org FROM o WHERE org IS NOT NULL LIMIT $7),
             picked AS MATERIALIZED (
               SELECT p.id FROM orgs CROSS JOIN LATERAL (
                 SELECT id FROM deliveries
                 WHERE org_id = orgs.org AND status = 'pending' AND endpoint_id IS NULL
                   AND next_attempt_at <= $3
                 ORDER BY next_attempt_at LIMIT $6 FOR UPDATE SKIP LOCKED) p
               WHERE NOT (orgs.org = ANY($5))
               LIMIT $4)
             UPDATE deliveries d SET claimed_by = $1, next_attempt_at = $2
             FROM picked WHERE d.id = picked.id
             RETURNING d.id, d.org_id, d.endpoint_id, d.attempts, d.event_seq, d.executor,
               NULL::bigint",
            &[
                &node,
                &lease_until,
                &now,
                &i64::from(claim.limit),
                &skip,
                &i64::from(claim.per_org),
                &i64::from(HOOK_CLAIM_ORGS),
            ],
        )
        .await
    }

    async fn release(&self, node: &str, ids: Option<&[DeliveryId]>) -> Result<u64> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        let rows = match ids {
            None => release_claims_of(db, &[node], now_ms()).await?,
            Some(ids) => {
                let ids: Vec<&str> = ids.iter().map(DeliveryId::as_str).collect();
                db.rows(
                    "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = $3
                     WHERE id = ANY($2) AND claimed_by = $1 AND status = 'pending'
                     RETURNING org_id, endpoint_id",
                    &[&node, &ids, &now_ms()],
                )
                .await?
            }
        };
        notify_released(db, &rows).await?;
        commit(tx).await?;
        Ok(rows.len() as u64)
    }

    async fn record_attempts(
        &self,
        node: &str,
        results: Vec<AttemptResult>,
        policy: &DisablePolicy,
    ) -> Result<Recorded> {
        let mut out = Recorded::default();
        // A delivery attempted twice in one call is recorded in a second round, after its
        // first attempt (one statement updates each delivery once).
        let mut rounds: Vec<Vec<AttemptResult>> = Vec::new();
        let mut seen: HashMap<DeliveryId, usize> = HashMap::with_capacity(results.len());
        for res in results {
            // The n-th attempt of a delivery in this call goes to round n.
            let n = seen.entry(res.delivery_id.clone()).or_insert(0);
            if *n == rounds.len() {
                rounds.push(Vec::new());
            }
            rounds[*n].push(res);
            *n += 1;
        }
        for round in rounds {
            let r = retrying(|| self.record_round(node, &round, policy)).await;
            let r = self.note(r)?;
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
            let (node, now) = (claim.node, now_ms());
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(pg_err)?;
            let db = Db::T(&tx);
            let r = db
                .row(
                    "SELECT endpoint_id, ordering_key, event_seq FROM deliveries
                     WHERE org_id = $1 AND id = $2",
                    &[org, id],
                )
                .await?;
            let endpoint_id: Option<String> = get(&r, 0)?;
            let key: Option<String> = get(&r, 1)?;
            let seq: i64 = get(&r, 2)?;
            // The event's row first: retention, which takes it for update, cannot delete or empty
            // it while this delivery reopens.
            let dropped: Option<i64> = get(
                &db.row(
                    "SELECT payload_dropped_at FROM events WHERE seq = $1 FOR SHARE",
                    &[&seq],
                )
                .await?,
                0,
            )?;
            if dropped.is_some() {
                return Err(payload_dropped_error());
            }
            let mut claim_now = true;
            if let (Some(key), Some(ep)) = (&key, &endpoint_id) {
                db.lock_key(ep, key).await?;
                // Read again under the key's lock: the head may have settled meanwhile.
                let r = db
                    .row(
                        "SELECT order_slot, next_attempt_at, status FROM deliveries WHERE id = $1 FOR UPDATE",
                        &[id],
                    )
                    .await?;
                let (slot, next, status): (Option<String>, Option<i64>, String) =
                    (get(&r, 0)?, get(&r, 1)?, get(&r, 2)?);
                if status == "pending" && slot.is_some() && next.is_none() {
                    return Err(waits_for_head_error());
                }
                if slot.is_none() {
                    // Settled before: it reopens in its key, and waits if the key is busy.
                    claim_now = !key_open(db, ep, key).await?;
                }
            }
            let (claimed_by, next_at) = if claim_now {
                (Some(node), Some(now + claim.lease_ms))
            } else {
                (None, None)
            };
            let r = db
                .row(
                    "UPDATE deliveries SET status = 'pending', claimed_by = $3, next_attempt_at = $4,
                     updated_at = $5, order_slot = ordering_key
                     WHERE org_id = $1 AND id = $2 RETURNING endpoint_id, attempts, event_seq, executor",
                    &[org, id, &claimed_by, &next_at, &now],
                )
                .await?;
            let target = target_from_columns(&r, get(&r, 0)?, get(&r, 3)?)?;
            let attempts: u32 = uint(&r, 1)?;
            let delivery = delivery_from_row(
                &db.row(
                    &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE org_id = $1 AND id = $2"),
                    &[org, id],
                )
                .await?,
            )?;
            let claimed = if claim_now {
                let event = self
                    .shared_events(db, &[seq])
                    .await?
                    .remove(&seq)
                    .ok_or(StoreError::NotFound(Missing::Event))?;
                Some(DueDelivery {
                    delivery_id: id.clone(),
                    org_id: org.clone(),
                    target,
                    attempts,
                    event,
                    lease_until: now + claim.lease_ms,
                    ordering_wait_ms: None,
                    sync: None,
                })
            } else {
                None
            };
            commit(tx).await?;
            Ok(Retried { delivery, claimed })
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
            let c = self.conn().await?;
            let db = Db::C(&c);
            get_endpoint_db(db, &self.inner.key, org, id).await?;
            let mut h = match db
                .opt_row(
                    &format!("SELECT {HEALTH_COLS} FROM endpoint_health WHERE endpoint_id = $1"),
                    &[id],
                )
                .await?
            {
                Some(r) => health_from_row(&r)?,
                None => EndpointHealth::default(),
            };
            let attempts = db
                .rows(
                    "SELECT status_code, duration_ms FROM attempts WHERE endpoint_id = $1 AND at >= $2
                     ORDER BY at DESC LIMIT 10000",
                    &[id, &since],
                )
                .await?
                .iter()
                .map(|r| {
                    let code: Option<u16> = uint_opt(r, 0)?;
                    Ok((code.is_some_and(|s| (200..300).contains(&s)), get(r, 1)?))
                })
                .collect::<Result<Vec<(bool, f64)>>>()?;
            h.window = WindowStats::of(since, &attempts);
            Ok(h)
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
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(pg_err)?;
            let db = Db::T(&tx);
            let ep = get_endpoint_db(db, &self.inner.key, org, endpoint_id).await?;
            let now = now_ms();
            let picked: Vec<(i64, Option<String>)> = db
                .rows(
                    "SELECT e.seq, min(d.subscription_id) FROM events e
                     JOIN deliveries d ON d.event_seq = e.seq
                     WHERE e.org_id = $1 AND d.endpoint_id = $2 AND e.received_at >= $3
                       AND e.received_at < $4 AND e.payload_dropped_at IS NULL AND e.seq > $5
                     GROUP BY e.seq ORDER BY e.seq LIMIT $6",
                    &[
                        org,
                        endpoint_id,
                        &window.since,
                        &window.until,
                        &window.after_seq,
                        &i64::from(window.limit),
                    ],
                )
                .await?
                .iter()
                .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
                .collect::<Result<_>>()?;
            let target = Target::Endpoint(endpoint_id.clone());
            for page in picked.chunks(1000) {
                let seqs: Vec<i64> = page.iter().map(|p| p.0).collect();
                let events = self.shared_events(db, &seqs).await?;
                let mut keys = Vec::new();
                for (seq, _) in page {
                    let event = events
                        .get(seq)
                        .ok_or(StoreError::NotFound(Missing::Event))?;
                    keys.push(
                        ep.ordering()
                            .as_ref()
                            .map(|o| o.key.key_of(&event.entity, &event.data)),
                    );
                }
                let mut locked: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
                locked.sort_unstable();
                locked.dedup();
                for key in locked {
                    db.lock_key(endpoint_id, key).await?;
                }
                let mut rows = NewDeliveries::default();
                for ((seq, sub), key) in page.iter().zip(&keys) {
                    let event = events
                        .get(seq)
                        .ok_or(StoreError::NotFound(Missing::Event))?;
                    rows.push(
                        db,
                        event,
                        &target,
                        sub.as_deref(),
                        key.as_deref(),
                        None,
                        now,
                    )
                    .await?;
                }
                rows.insert(db, now).await?;
            }
            commit(tx).await?;
            Ok(Replayed {
                created: picked.len() as u64,
                last_seq: picked.last().map(|p| p.0),
            })
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64> {
        let c = self.conn().await?;
        let r = Db::C(&c)
            .row(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'",
                &[],
            )
            .await?;
        uint(&r, 0)
    }
}

impl PgStore {
    /// Claims with `sql` (an `UPDATE … RETURNING id, org_id, endpoint_id, attempts, event_seq,
    /// executor, ordering wait`) and loads the claimed deliveries' events, each once.
    async fn claim(
        &self,
        lease_until: i64,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<DueDelivery>> {
        let c = self.conn().await?;
        let db = Db::C(&c);
        let rows = db.rows(sql, params).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| get(r, 4)).collect::<Result<_>>()?;
        let events = self.shared_events(db, &seqs).await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = get(r, 4)?;
                let wait: Option<i64> = get(r, 6)?;
                Ok(DueDelivery {
                    delivery_id: get(r, 0)?,
                    org_id: get(r, 1)?,
                    target: target_from_columns(r, get(r, 2)?, get(r, 5)?)?,
                    attempts: uint(r, 3)?,
                    event: events
                        .get(&seq)
                        .cloned()
                        .ok_or(StoreError::NotFound(Missing::Event))?,
                    lease_until,
                    ordering_wait_ms: wait.filter(|ms| *ms > 0),
                    sync: None,
                })
            })
            .collect()
    }
}

/// New pending deliveries gathered for one `INSERT … SELECT FROM unnest(…)`, and the ordering
/// keys this batch opened (a key opened by an earlier event of the batch is busy for the later
/// ones, though its row is not written yet). The caller holds the lock of every key it adds to.
#[derive(Default)]
pub(super) struct NewDeliveries {
    orgs: Vec<String>,
    ids: Vec<DeliveryId>,
    seqs: Vec<i64>,
    event_ids: Vec<String>,
    endpoints: Vec<Option<String>>,
    subscriptions: Vec<Option<String>>,
    nexts: Vec<Option<i64>>,
    claimed_by: Vec<Option<String>>,
    executors: Vec<Option<String>>,
    keys: Vec<Option<String>>,
    opened: HashSet<(String, String)>,
}

impl NewDeliveries {
    /// Adds a pending delivery of `event` to `target`. With `claim` it is claimed for that node
    /// until that time and the caller hands it to the engine (returns `true`); without, it is
    /// due now. A delivery whose ordering key already has an open delivery is never claimed:
    /// it waits, with no due time, until the deliveries before it settle.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn push(
        &mut self,
        db: Db<'_>,
        event: &Event,
        target: &Target,
        subscription_id: Option<&str>,
        ordering_key: Option<&str>,
        claim: Option<(&str, i64)>,
        now: i64,
    ) -> Result<(DeliveryId, bool)> {
        let id = DeliveryId::generate();
        let waits = match (ordering_key, target.endpoint_id()) {
            (Some(key), Some(ep)) => {
                let slot = (ep.to_string(), key.to_string());
                let busy = self.opened.contains(&slot) || key_open(db, ep, key).await?;
                self.opened.insert(slot);
                busy
            }
            _ => false,
        };
        let (claimed_by, next) = match (waits, claim) {
            (true, _) => (None, None),
            (false, Some((node, until))) => (Some(node.to_string()), Some(until)),
            (false, None) => (None, Some(now)),
        };
        let claimed = claimed_by.is_some();
        self.orgs.push(event.org_id.to_string());
        self.ids.push(id.clone());
        self.seqs.push(event.seq);
        self.event_ids.push(event.id.to_string());
        self.endpoints
            .push(target.endpoint_id().map(|e| e.to_string()));
        self.subscriptions.push(subscription_id.map(str::to_string));
        self.nexts.push(next);
        self.claimed_by.push(claimed_by);
        self.executors.push(target.executor().map(str::to_string));
        self.keys.push(ordering_key.map(str::to_string));
        Ok((id, claimed))
    }

    /// Inserts every delivery added (of one organization or several), in one statement, and
    /// tells the other nodes of those left due now.
    pub(super) async fn insert(&self, db: Db<'_>, now: i64) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        db.exec(
            "INSERT INTO deliveries (id, org_id, event_seq, event_id, endpoint_id, subscription_id,
               status, attempts, next_attempt_at, claimed_by, created_at, updated_at, executor,
               ordering_key, order_slot)
             SELECT d.id, d.org, d.seq, d.event_id, d.endpoint_id, d.sub, 'pending', 0, d.next,
               d.claimed_by, $2::bigint, $2::bigint, d.executor, d.okey, d.okey
             FROM unnest($1::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
               $8::bigint[], $9::text[], $10::text[], $11::text[])
               AS d(org, id, seq, event_id, endpoint_id, sub, next, claimed_by, executor, okey)",
            &[
                &self.orgs,
                &now,
                &self.ids,
                &self.seqs,
                &self.event_ids,
                &self.endpoints,
                &self.subscriptions,
                &self.nexts,
                &self.claimed_by,
                &self.executors,
                &self.keys,
            ],
        )
        .await?;
        // Deliveries left due now are for their endpoint's lease holder, which may be another
        // node: it hears of them when this transaction commits.
        let due = (0..self.ids.len())
            .filter(|&i| self.nexts[i] == Some(now) && self.claimed_by[i].is_none())
            .map(|i| (self.orgs[i].clone(), self.endpoints[i].clone()));
        notify_due(db, due).await
    }
}

/// Makes every delivery that `nodes` claimed due again at `now` (a node stopping, or nodes
/// found gone); answers their org_id, endpoint_id.
pub(super) async fn release_claims_of(
    db: Db<'_>,
    nodes: &[&str],
    now: i64,
) -> Result<Vec<tokio_postgres::Row>> {
    db.rows(
        "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = $2
         WHERE claimed_by = ANY($1) AND status = 'pending'
         RETURNING org_id, endpoint_id",
        &[&nodes, &now],
    )
    .await
}

/// Tells whoever holds the endpoints of released deliveries (`rows` of org_id, endpoint_id;
/// perhaps another node) that they are due, at commit.
pub(super) async fn notify_released(db: Db<'_>, rows: &[tokio_postgres::Row]) -> Result<()> {
    let due = rows
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect::<Result<Vec<_>>>()?;
    notify_due(db, due).await
}

/// Sends a `Due` notice per organization for deliveries due now, given as (organization,
/// endpoint or `None` for an event hook): each endpoint named once.
async fn notify_due(
    db: Db<'_>,
    due: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<()> {
    let mut by_org: HashMap<String, (Vec<String>, bool)> = HashMap::new();
    for (org, endpoint) in due {
        let (endpoints, hooks) = by_org.entry(org).or_default();
        match endpoint {
            Some(ep) if !endpoints.contains(&ep) => endpoints.push(ep),
            Some(_) => {}
            None => *hooks = true,
        }
    }
    for (org, (endpoints, hooks)) in by_org {
        super::notify::send(
            db,
            &Notice::Due {
                org,
                endpoints,
                hooks,
            },
        )
        .await?;
    }
    Ok(())
}

/// Whether ordering key `key` of endpoint `ep` has an open (pending or blocked) delivery.
async fn key_open(db: Db<'_>, ep: &str, key: &str) -> Result<bool> {
    Ok(db
        .opt_row(
            "SELECT 1 FROM deliveries WHERE endpoint_id = $1 AND order_slot = $2 LIMIT 1",
            &[&ep, &key],
        )
        .await?
        .is_some())
}
