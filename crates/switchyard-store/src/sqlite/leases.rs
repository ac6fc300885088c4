//! Endpoint leases and node heartbeats on SQLite: the same rows as on PostgreSQL, written by
//! the one writer (a SQLite file has one node, so its leases are always its own, but the
//! engine and the contract are the same on both backends).

use super::*;

#[async_trait]
impl NodeLeases for SqliteStore {
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
        let (node, endpoints) = (node.to_owned(), endpoints.to_vec());
        self.write(move |ctx| {
            let mut held = Vec::with_capacity(endpoints.len());
            for ep in endpoints {
                let before: Option<(String, i64)> = ctx
                    .conn
                    .prepare_cached(
                        "SELECT node, lease_until FROM endpoint_leases WHERE endpoint_id = ?1",
                    )?
                    .query_row([ep.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match &before {
                    Some((holder, until)) if *holder != node && *until > now => continue,
                    _ => {}
                }
                ctx.conn
                    .prepare_cached(
                        "INSERT INTO endpoint_leases (endpoint_id, node, lease_until, epoch)
                         VALUES (?1, ?2, ?3, 1)
                         ON CONFLICT (endpoint_id) DO UPDATE SET lease_until = excluded.lease_until,
                           epoch = epoch + (node <> excluded.node), node = excluded.node",
                    )?
                    .execute(params![ep.as_str(), node, now + lease_ms])?;
                if let Some((holder, _)) = before.filter(|(h, _)| *h != node) {
                    ctx.conn
                        .prepare_cached(
                            "UPDATE deliveries SET claimed_by = NULL, next_attempt_at = ?3
                             WHERE status = 'pending' AND endpoint_id = ?1 AND claimed_by = ?2",
                        )?
                        .execute(params![ep.as_str(), holder, now])?;
                }
                held.push(ep);
            }
            Ok(held)
        })
        .await
    }

    async fn drop_leases(&self, node: &str, endpoints: Option<&[EndpointId]>) -> Result<u64> {
        let node = node.to_owned();
        let endpoints = endpoints.map(<[EndpointId]>::to_vec);
        self.write(move |ctx| {
            let n = match endpoints {
                None => {
                    ctx.conn
                        .prepare_cached("DELETE FROM node_heartbeats WHERE node = ?1")?
                        .execute([&node])?;
                    ctx.conn
                        .prepare_cached("DELETE FROM endpoint_leases WHERE node = ?1")?
                        .execute([&node])?
                }
                Some(eps) => {
                    let mut stmt = ctx.conn.prepare_cached(
                        "DELETE FROM endpoint_leases WHERE node = ?1 AND endpoint_id = ?2",
                    )?;
                    let mut n = 0;
                    for ep in eps {
                        n += stmt.execute(params![node, ep.as_str()])?;
                    }
                    n
                }
            };
            Ok(n as u64)
        })
        .await
    }

    async fn heartbeat(&self, node: &str, now: i64, lease_ms: i64) -> Result<Vec<String>> {
        let node = node.to_owned();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO node_heartbeats (node, seen_until) VALUES (?1, ?2)
                     ON CONFLICT (node) DO UPDATE SET seen_until = excluded.seen_until",
                )?
                .execute(params![node, now + lease_ms])?;
            // Nodes whose beat ran out a lease ago or more are gone: their claims are due again.
            let gone = ctx
                .conn
                .prepare_cached(
                    "DELETE FROM node_heartbeats WHERE seen_until <= ?1 RETURNING node",
                )?
                .query_map([now - lease_ms], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            for gone in &gone {
                super::queue::release_claims_of(&ctx.conn, gone, now)?;
            }
            let mut stmt = ctx.conn.prepare_cached(
                "SELECT node FROM node_heartbeats WHERE seen_until > ?1 ORDER BY node",
            )?;
            let live = stmt
                .query_map([now], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(live)
        })
        .await
    }
}
