//! Recording attempts: their deliveries' new state and the attempts themselves (a statement
//! each for the whole batch), the ordering heads they settle, and the endpoints' health and
//! disabling.

use super::*;
use switchyard_core::health::{DisablePolicy, EndpointHealth};
use switchyard_core::ordering::HeadFailure;

impl PgStore {
    /// Records attempts of distinct deliveries in one transaction.
    pub(super) async fn record_round(
        &self,
        node: &str,
        results: &[AttemptResult],
        policy: &DisablePolicy,
    ) -> Result<Recorded> {
        let now = now_ms();
        let mut out = Recorded::default();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);

        // The deliveries, in one statement; one that is gone (its endpoint or organization was
        // deleted) comes back as no row and its attempt is not kept.
        let mut ids = Vec::with_capacity(results.len());
        let mut orgs = Vec::with_capacity(results.len());
        let mut statuses = Vec::with_capacity(results.len());
        let mut nexts = Vec::with_capacity(results.len());
        for res in results {
            let (status, next) = outcome_columns(&res.outcome);
            ids.push(res.delivery_id.as_str());
            orgs.push(res.org_id.as_str());
            statuses.push(status);
            nexts.push(next);
        }
        let mut slots: HashMap<String, Option<String>> = HashMap::with_capacity(results.len());
        for r in db
            .rows(
                "UPDATE deliveries d SET status = u.status, attempts = d.attempts + 1,
                   next_attempt_at = u.next, claimed_by = NULL, updated_at = $1
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[])
                   AS u(id, org_id, status, next)
                 WHERE d.id = u.id AND d.org_id = u.org_id
                 RETURNING d.id, d.order_slot",
                &[&now, &ids, &orgs, &statuses, &nexts],
            )
            .await?
        {
            slots.insert(get(&r, 0)?, get(&r, 1)?);
        }
        let kept: Vec<&AttemptResult> = results
            .iter()
            .filter(|r| slots.contains_key(r.delivery_id.as_str()))
            .collect();
        insert_attempts(db, node, &kept).await?;

        // Heads of ordering keys that settled, their keys locked in one order.
        let mut settled: Vec<(&AttemptResult, &EndpointId, &str)> = kept
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Retry { .. }))
            .filter_map(|r| {
                let slot = slots.get(r.delivery_id.as_str())?.as_deref()?;
                Some((*r, r.endpoint_id.as_ref()?, slot))
            })
            .collect();
        settled.sort_by(|a, b| (a.1.as_str(), a.2).cmp(&(b.1.as_str(), b.2)));
        let mut head_failure: HashMap<&EndpointId, HeadFailure> = HashMap::new();
        let mut last_locked: Option<(&str, &str)> = None;
        for (res, ep_id, key) in &settled {
            if last_locked != Some((ep_id.as_str(), key)) {
                db.lock_key(ep_id, key).await?;
                last_locked = Some((ep_id.as_str(), key));
            }
            let on_failure = match head_failure.get(ep_id) {
                Some(h) => *h,
                None => {
                    let h = endpoint_head_failure(db, ep_id).await?;
                    head_failure.insert(ep_id, h);
                    h
                }
            };
            if res.outcome == Outcome::Failed && on_failure == HeadFailure::Block {
                db.exec(
                    "UPDATE deliveries SET status = 'blocked' WHERE id = $1",
                    &[&res.delivery_id],
                )
                .await?;
            } else if settle_head(db, &res.delivery_id, ep_id, key, now).await? {
                push_once(
                    &mut out.due_now,
                    &EndpointRef {
                        org_id: res.org_id.clone(),
                        endpoint_id: (*ep_id).clone(),
                    },
                );
            }
        }

        // Health, one endpoint at a time in one order.
        let mut health: std::collections::BTreeMap<(String, String), HealthDelta> =
            std::collections::BTreeMap::new();
        let mut disable: Vec<(EndpointRef, &str)> = Vec::new();
        for res in &kept {
            let Some(endpoint_id) = &res.endpoint_id else {
                continue;
            };
            health
                .entry((endpoint_id.to_string(), res.org_id.to_string()))
                .or_default()
                .add(res.attempt.at, failure_of(res));
            if let Some(reason) = &res.disable_endpoint {
                disable.push((
                    EndpointRef {
                        org_id: res.org_id.clone(),
                        endpoint_id: endpoint_id.clone(),
                    },
                    reason,
                ));
            }
        }
        for (ep, reason) in disable {
            if disable_endpoint(db, &ep, reason, now).await? {
                out.disabled.push(DisabledEndpoint {
                    org_id: ep.org_id.clone(),
                    endpoint_id: ep.endpoint_id.clone(),
                });
            }
        }
        for ((endpoint_id, org_id), delta) in health {
            let ep = EndpointRef {
                org_id: OrgId::stored(org_id),
                endpoint_id: EndpointId::stored(endpoint_id),
            };
            let Some((h, recovered)) = update_health(db, &ep, &delta).await? else {
                continue;
            };
            if recovered {
                // It answers again: its waiting retries go now rather than on their schedule.
                let n = db
                    .exec(
                        "UPDATE deliveries SET next_attempt_at = $2 WHERE endpoint_id = $1
                         AND status = 'pending' AND claimed_by IS NULL AND next_attempt_at > $2",
                        &[&ep.endpoint_id, &now],
                    )
                    .await?;
                if n > 0 {
                    push_once(&mut out.due_now, &ep);
                }
            }
            if let (Some(since), Some(last)) = (h.failing_since, h.last_failure_at)
                && h.consecutive_failures > 0
                && let Some(reason) = policy.verdict(since, last, now)
                && disable_endpoint(db, &ep, &reason, now).await?
            {
                out.disabled.push(DisabledEndpoint {
                    org_id: ep.org_id.clone(),
                    endpoint_id: ep.endpoint_id.clone(),
                });
            }
        }
        commit(tx).await?;
        Ok(out)
    }
}

/// The attempts of a batch, in one statement.
async fn insert_attempts(db: Db<'_>, node: &str, results: &[&AttemptResult]) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let n = results.len();
    let (mut ids, mut deliveries, mut orgs, mut ats, mut codes, mut durations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut errors, mut bodies, mut endpoints, mut waited, mut reasons, mut headers) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for res in results {
        let a = &res.attempt;
        ids.push(a.id.as_str());
        deliveries.push(res.delivery_id.as_str());
        orgs.push(res.org_id.as_str());
        ats.push(a.at);
        codes.push(a.status_code().map(i64::from));
        durations.push(a.duration_ms());
        errors.push(a.error());
        bodies.push(a.response_body());
        endpoints.push(res.endpoint_id.as_deref());
        waited.push(a.waited.as_deref());
        reasons.push(a.retry_reason.as_deref());
        headers.push(
            a.request_headers
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::database(format!("attempt headers: {e}")))?,
        );
    }
    db.exec(
        "INSERT INTO attempts (id, delivery_id, org_id, at, status_code, duration_ms, error,
           response_body, endpoint_id, waited, retry_reason, request_headers, node)
         SELECT *, $13::text FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
           $6::float8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])",
        &[
            &ids,
            &deliveries,
            &orgs,
            &ats,
            &codes,
            &durations,
            &errors,
            &bodies,
            &endpoints,
            &waited,
            &reasons,
            &headers,
            &node,
        ],
    )
    .await?;
    Ok(())
}
/// The head of a key settled: it leaves its key, and the key's next delivery becomes due.
/// Returns whether there was one.
async fn settle_head(db: Db<'_>, id: &str, ep: &str, key: &str, now: i64) -> Result<bool> {
    db.exec(
        "UPDATE deliveries SET order_slot = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    let n = db
        .exec(
            "UPDATE deliveries SET next_attempt_at = $3, updated_at = $3 WHERE id =
               (SELECT id FROM deliveries WHERE endpoint_id = $1 AND order_slot = $2
                ORDER BY event_seq LIMIT 1)
             AND status = 'pending' AND next_attempt_at IS NULL",
            &[&ep, &key, &now],
        )
        .await?;
    Ok(n > 0)
}

async fn endpoint_head_failure(db: Db<'_>, ep: &str) -> Result<HeadFailure> {
    let h: Option<String> = match db
        .opt_row(
            "SELECT on_head_failure FROM endpoints WHERE id = $1",
            &[&ep],
        )
        .await?
    {
        Some(r) => get(&r, 0)?,
        None => None,
    };
    Ok(match h.as_deref() {
        Some("block") => HeadFailure::Block,
        _ => HeadFailure::Skip,
    })
}

/// Disables an enabled endpoint for `reason`; returns whether it was enabled.
async fn disable_endpoint(db: Db<'_>, ep: &EndpointRef, reason: &str, now: i64) -> Result<bool> {
    let n = db
        .exec(
            "UPDATE endpoints SET enabled = FALSE, disabled_reason = $3, updated_at = $4
             WHERE id = $1 AND org_id = $2 AND enabled",
            &[&ep.endpoint_id, &ep.org_id, &reason, &now],
        )
        .await?;
    if n > 0 {
        bump_routing(db, &ep.org_id).await?;
    }
    Ok(n > 0)
}

/// Applies a batch's delta to an endpoint's stored health (its row locked while it is read and
/// written back); returns the result and whether the batch brought back an endpoint that was
/// failing before it, or `None` if the endpoint is gone.
async fn update_health(
    db: Db<'_>,
    ep: &EndpointRef,
    d: &HealthDelta,
) -> Result<Option<(EndpointHealth, bool)>> {
    // The endpoint's row is held until the commit: an endpoint deleted meanwhile would make
    // the health row's reference fail the whole batch.
    if db
        .opt_row(
            "SELECT 1 FROM endpoints WHERE id = $1 AND org_id = $2 FOR KEY SHARE",
            &[&ep.endpoint_id, &ep.org_id],
        )
        .await?
        .is_none()
    {
        return Ok(None);
    }
    db.exec(
        "INSERT INTO endpoint_health (endpoint_id, org_id, consecutive_failures)
         VALUES ($1, $2, 0) ON CONFLICT (endpoint_id) DO NOTHING",
        &[&ep.endpoint_id, &ep.org_id],
    )
    .await?;
    let Some(r) = db
        .opt_row(
            &format!(
                "SELECT {HEALTH_COLS} FROM endpoint_health WHERE endpoint_id = $1 AND org_id = $2
                 FOR UPDATE"
            ),
            &[&ep.endpoint_id, &ep.org_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let before = health_from_row(&r)?;
    let (h, recovered) = d.apply(&before);
    if !crate::common::health_changed(Some(&before), &h) {
        return Ok(Some((h, recovered)));
    }
    db.exec(
        "UPDATE endpoint_health SET consecutive_failures = $2, failing_since = $3,
           last_success_at = $4, last_failure_at = $5, last_error = $6
         WHERE endpoint_id = $1",
        &[
            &ep.endpoint_id,
            &big(h.consecutive_failures),
            &h.failing_since,
            &h.last_success_at,
            &h.last_failure_at,
            &h.last_error,
        ],
    )
    .await?;
    Ok(Some((h, recovered)))
}
