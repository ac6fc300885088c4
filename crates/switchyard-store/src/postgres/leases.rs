//! Endpoint leases and node heartbeats on PostgreSQL: taking and renewing leases in one
//! statement (the expired ones of other nodes locked `FOR UPDATE SKIP LOCKED`, their claims
//! released on takeover), giving them up, and the heartbeat that says which nodes deliver.

use super::*;

#[async_trait]
impl NodeLeases for PgStore {
    async fn take_leases(
        &self,
        node: &str,
        endpoints: &[EndpointId],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<EndpointId>> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        let held = retrying(|| self.take_leases_once(node, &ids, now, lease_ms)).await;
        Ok(self
            .note(held)?
            .into_iter()
            .map(EndpointId::stored)
            .collect())
    }

    async fn drop_leases(&self, node: &str, endpoints: Option<&[EndpointId]>) -> Result<u64> {
        let c = self.conn().await?;
        let db = Db::C(&c);
        match endpoints {
            None => {
                db.exec("DELETE FROM node_heartbeats WHERE node = $1", &[&node])
                    .await?;
                db.exec("DELETE FROM endpoint_leases WHERE node = $1", &[&node])
                    .await
            }
            Some(eps) => {
                let ids: Vec<&str> = eps.iter().map(EndpointId::as_str).collect();
                db.exec(
                    "DELETE FROM endpoint_leases WHERE node = $1 AND endpoint_id = ANY($2)",
                    &[&node, &ids],
                )
                .await
            }
        }
    }

    async fn heartbeat(&self, node: &str, now: i64, lease_ms: i64) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        db.exec(
            "INSERT INTO node_heartbeats (node, seen_until) VALUES ($1, $2)
             ON CONFLICT (node) DO UPDATE SET seen_until = EXCLUDED.seen_until",
            &[&node, &(now + lease_ms)],
        )
        .await?;
        // Nodes whose beat ran out a lease ago or more are gone: their claims (event hooks, and
        // deliveries of endpoints nobody has taken over since) are due again. Deleting their
        // beats first makes one node do it, once.
        let gone: Vec<String> = db
            .rows(
                "DELETE FROM node_heartbeats WHERE seen_until <= $1 RETURNING node",
                &[&(now - lease_ms)],
            )
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_>>()?;
        if !gone.is_empty() {
            let nodes: Vec<&str> = gone.iter().map(String::as_str).collect();
            let released = super::queue::release_claims_of(db, &nodes, now).await?;
            if !released.is_empty() {
                tracing::warn!(nodes = ?gone, deliveries = released.len(), "released the claims of nodes that stopped beating");
            }
            super::queue::notify_released(db, &released).await?;
        }
        let live = db
            .rows(
                "SELECT node FROM node_heartbeats WHERE seen_until > $1 ORDER BY node",
                &[&now],
            )
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<Vec<String>>>()?;
        commit(tx).await?;
        Ok(live)
    }
}

impl PgStore {
    /// One transaction of [`NodeLeases::take_leases`] over sorted, distinct `ids`.
    async fn take_leases_once(
        &self,
        node: &str,
        ids: &[&str],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let db = Db::T(&tx);
        // Other nodes' expired leases, locked; one that another node is taking over right now
        // is skipped (that node gets it).
        let (mut gone_ep, mut gone_node) = (Vec::new(), Vec::new());
        for r in db
            .rows(
                "SELECT endpoint_id, node FROM endpoint_leases
                 WHERE endpoint_id = ANY($1) AND node <> $2 AND lease_until <= $3
                 ORDER BY endpoint_id FOR UPDATE SKIP LOCKED",
                &[&ids, &node, &now],
            )
            .await?
        {
            gone_ep.push(get::<String>(&r, 0)?);
            gone_node.push(get::<String>(&r, 1)?);
        }
        let held = db
            .rows(
                "INSERT INTO endpoint_leases (endpoint_id, node, lease_until, epoch)
                 SELECT id, $2, $4, 1 FROM unnest($1::text[]) AS u(id) ORDER BY id
                 ON CONFLICT (endpoint_id) DO UPDATE SET lease_until = EXCLUDED.lease_until,
                   epoch = endpoint_leases.epoch
                     + CASE WHEN endpoint_leases.node = EXCLUDED.node THEN 0 ELSE 1 END,
                   node = EXCLUDED.node
                 WHERE endpoint_leases.node = EXCLUDED.node OR endpoint_leases.lease_until <= $3
                 RETURNING endpoint_id",
                &[&ids, &node, &now, &(now + lease_ms)],
            )
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<Vec<String>>>()?;
        // The previous holder's claims on what it lost are due again at once (a statement per
        // endpoint taken over, each an index range of that endpoint's pending deliveries;
        // takeovers are rare).
        for (ep, gone) in gone_ep.iter().zip(&gone_node) {
            if held.contains(ep) {
                db.exec(
                    "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = $3
                     WHERE status = 'pending' AND endpoint_id = $1 AND claimed_by = $2",
                    &[ep, gone, &now],
                )
                .await?;
            }
        }
        commit(tx).await?;
        Ok(held)
    }
}
