//! Endpoint leases: a node sends to an endpoint only while it holds the endpoint's lease in
//! the store, so one node at a time works each endpoint and `max_rps`, flow control and ordering
//! hold across nodes. A worker takes the lease before it claims; the lease task renews every
//! lease this node holds each third of the lease and gives up those of endpoints without a
//! worker; a lease that is not renewed (a node that died) is taken over when it runs out.
//!
//! Endpoints are spread over the nodes that deliver (each beats in the store with its leases):
//! of the live nodes, an endpoint's first choice is the one whose hash with the endpoint's id is
//! highest (rendezvous hashing, so a node joining or leaving moves only its share). A node
//! takes a free endpoint that is not its own only after the endpoint has waited a third of a
//! lease (its first choice is not taking it).

use crate::engine::Engine;
use std::time::Duration;
use switchyard_core::EndpointRef;
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_store::{Notice, StoreError};

impl Engine {
    /// The part of a lease kept in hand: a lease with less than this left is renewed before
    /// anything more is sent on it (the lease task renews each third of the lease, so a node
    /// whose renewals succeed always holds more).
    fn lease_margin(&self) -> i64 {
        self.inner.config.endpoint_lease_ms / 3
    }

    /// Whether this node holds `endpoint`'s lease with more than the margin left.
    /// One being handed to its first choice is no longer held for sending (its lease is still
    /// renewed until its requests in flight have answered).
    pub(crate) fn holds_lease(&self, endpoint: &EndpointId) -> bool {
        let now = self.inner.clock.now_ms();
        self.inner.leases.lock().is_ok_and(|l| {
            l.get(endpoint)
                .is_some_and(|u| *u > now + self.lease_margin())
        }) && !self.is_yielding(endpoint)
    }

    /// Whether this node is `endpoint`'s first choice among the nodes that deliver (or cannot
    /// tell: no heartbeat yet).
    pub(crate) fn first_choice(&self, endpoint: &EndpointId) -> bool {
        let me = &self.inner.config.node;
        let Ok(live) = self.inner.live.lock() else {
            return true;
        };
        !live.contains(me) || first_choice_of(&live, endpoint) == Some(me)
    }

    /// Makes sure this node holds `endpoint`'s lease, taking or renewing it in the store if
    /// need be; `false` if another node holds it, if it is another node's first choice and has
    /// not waited long, or if the store cannot say.
    pub(crate) async fn ensure_lease(&self, endpoint: &EndpointId) -> bool {
        if self.holds_lease(endpoint) {
            return true;
        }
        let inner = &self.inner;
        if self.is_yielding(endpoint) {
            // Being handed to its first choice: not taken back meanwhile.
            return false;
        }
        let now = inner.clock.now_ms();
        if !self.first_choice(endpoint) {
            let Ok(mut declined) = inner.declined.lock() else {
                return false;
            };
            let from = *declined
                .entry(endpoint.clone())
                .or_insert(now + self.lease_margin());
            if now < from {
                return false;
            }
        }
        let lease = inner.config.endpoint_lease_ms;
        match inner
            .store
            .take_leases(
                &inner.config.node,
                std::slice::from_ref(endpoint),
                now,
                lease,
            )
            .await
        {
            Ok(held) if !held.is_empty() => {
                if let Ok(mut l) = inner.leases.lock() {
                    l.insert(endpoint.clone(), now + lease);
                }
                if let Ok(mut d) = inner.declined.lock() {
                    d.remove(endpoint);
                }
                true
            }
            Ok(_) => {
                if let Ok(mut l) = inner.leases.lock() {
                    l.remove(endpoint);
                }
                if let Ok(mut e) = inner.elsewhere.lock() {
                    e.insert(endpoint.clone(), now + self.lease_margin());
                }
                false
            }
            Err(e) => {
                if !matches!(e, StoreError::Closed) {
                    tracing::warn!(error = %e, endpoint = %endpoint, "taking an endpoint's lease failed");
                }
                false
            }
        }
    }

    /// Whether this node is handing `endpoint` to its first choice.
    pub(crate) fn is_yielding(&self, endpoint: &EndpointId) -> bool {
        self.inner
            .yielding
            .lock()
            .is_ok_and(|y| y.contains(endpoint))
    }

    /// Hands `endpoint` to its first choice (a node that joined): nothing more is sent or
    /// claimed from here; once its requests in flight have answered (and, with `max_rps`, a
    /// second has passed since, so that the two nodes' rates never add up), the lease is given
    /// up and what this node holds of the endpoint in memory is handed back, for the first
    /// choice to claim.
    pub(crate) async fn hand_over(
        &self,
        endpoint: &EndpointRef,
        max_rps: bool,
        in_flight: impl Fn() -> bool,
    ) {
        let inner = &self.inner;
        let id = &endpoint.endpoint_id;
        while in_flight() && !inner.cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if max_rps {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Not while the lease task renews: a renewal that read the lease before could take it
        // back just after it is given up.
        let ops = inner.lease_ops.lock().await;
        if let Ok(mut l) = inner.leases.lock() {
            l.remove(id);
        }
        if let Err(e) = inner
            .store
            .drop_leases(&inner.config.node, Some(std::slice::from_ref(id)))
            .await
        {
            // It runs out by itself within a lease; the first choice takes it then.
            tracing::warn!(error = %e, endpoint = %id, "giving an endpoint's lease up failed");
        }
        if let Ok(mut y) = inner.yielding.lock() {
            y.remove(id);
        }
        // Not taken back before its first choice has had a whole lease to take it (a node that
        // joined may still be starting up; a shorter grace would pass it back and forth).
        if let Ok(mut d) = inner.declined.lock() {
            d.insert(
                id.clone(),
                inner.clock.now_ms() + inner.config.endpoint_lease_ms,
            );
        }
        drop(ops);
        // Its first choice pulls at once, not at its next poll.
        let due = Notice::Due {
            org: endpoint.org_id.to_string(),
            endpoints: vec![id.to_string()],
            hooks: false,
        };
        if let Err(e) = inner.store.notify(&due).await {
            tracing::debug!(error = %e, "telling the first choice of a handed-over endpoint failed; it polls");
        }
        tracing::info!(endpoint = %id, "handed an endpoint to its first choice");
    }

    /// Another node (or this one) made deliveries due now: the endpoints this node holds pull
    /// them; those of which this node is the first choice and that nobody is known to hold get
    /// a worker, which tries to take the lease (the others are left to their first choice, and
    /// to this node's poller if it does not come).
    pub fn due_elsewhere(&self, org: &OrgId, endpoints: &[EndpointId], hooks: bool) {
        let inner = &self.inner;
        if !inner.config.deliver || inner.cancel.is_cancelled() {
            return;
        }
        let now = inner.clock.now_ms();
        let elsewhere = inner.elsewhere.lock().ok();
        let held_elsewhere = |id: &EndpointId| {
            elsewhere
                .as_ref()
                .is_some_and(|e| e.get(id).is_some_and(|until| *until > now))
        };
        let wanted: Vec<EndpointRef> = endpoints
            .iter()
            .filter(|id| self.holds_lease(id) || (self.first_choice(id) && !held_elsewhere(id)))
            .map(|id| EndpointRef {
                org_id: org.clone(),
                endpoint_id: id.clone(),
            })
            .collect();
        drop(elsewhere);
        self.backlog(wanted);
        if hooks {
            self.wake();
        }
    }

    /// Marks for handing over the endpoints this node holds whose first choice among `live` is
    /// another node, live in the heartbeat `before` too (a node that joined, or came back), and
    /// wakes their workers.
    fn yield_to_joined(&self, live: &[String], before: &[String]) {
        let inner = &self.inner;
        let me = &inner.config.node;
        if !live.contains(me) {
            return;
        }
        let Ok(held) = inner
            .leases
            .lock()
            .map(|l| l.keys().cloned().collect::<Vec<_>>())
        else {
            return;
        };
        // Only endpoints with a worker: the others' leases are given up as idle anyway.
        let Ok(handed) = inner.slots.lock().map(|slots| {
            held.into_iter()
                .filter(|id| {
                    slots.contains_key(id)
                        && first_choice_of(live, id).is_some_and(|n| n != me && before.contains(n))
                })
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        if handed.is_empty() {
            return;
        }
        if let Ok(mut y) = inner.yielding.lock() {
            y.extend(handed.iter().cloned());
        }
        if let Ok(slots) = inner.slots.lock() {
            for id in &handed {
                if let Some(s) = slots.get(id) {
                    s.shared.wake.notify_one();
                }
            }
        }
    }

    /// Renews this node's leases each third of the lease, and gives up those of endpoints that
    /// no worker works any more.
    pub(crate) async fn leaser(self) {
        let inner = &self.inner;
        let every = Duration::from_millis((inner.config.endpoint_lease_ms / 3).max(10) as u64);
        let mut first = true;
        // The live nodes of the heartbeat before: an endpoint is handed only to a node seen
        // live twice in a row, so that a node whose heartbeat is late once moves nothing.
        let mut before: Vec<String> = Vec::new();
        loop {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = inner.cancel.cancelled() => return,
                }
            }
            first = false;
            let now = inner.clock.now_ms();
            match inner
                .store
                .heartbeat(&inner.config.node, now, inner.config.endpoint_lease_ms)
                .await
            {
                Ok(live) => {
                    // Known first (a worker asking whether it is an endpoint's first choice
                    // must not take back what is handed over), then acted on.
                    if let Ok(mut l) = inner.live.lock() {
                        l.clone_from(&live);
                    }
                    self.yield_to_joined(&live, &before);
                    before = live;
                }
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "the heartbeat failed; retrying"),
            }
            // Until the renewal is written: a handover gives its lease up before or after.
            let _ops = inner.lease_ops.lock().await;
            // One lock at a time (elsewhere the slots are locked before the leases).
            let Ok(ids) = inner
                .leases
                .lock()
                .map(|l| l.keys().cloned().collect::<Vec<_>>())
            else {
                return;
            };
            let Ok((keep, idle)) = inner.slots.lock().map(|slots| {
                ids.into_iter()
                    .partition::<Vec<_>, _>(|id| slots.contains_key(id))
            }) else {
                return;
            };
            if !idle.is_empty() {
                if let Ok(mut y) = inner.yielding.lock() {
                    y.retain(|id| !idle.contains(id));
                }
                if let Ok(mut l) = inner.leases.lock() {
                    for id in &idle {
                        l.remove(id);
                    }
                }
                if let Err(e) = inner
                    .store
                    .drop_leases(&inner.config.node, Some(&idle))
                    .await
                {
                    tracing::debug!(error = %e, "giving up idle endpoint leases failed");
                }
            }
            if let Ok(mut e) = inner.elsewhere.lock() {
                e.retain(|_, until| *until > now);
            }
            // A decline whose grace ended a lease ago is forgotten: the next starts a new grace.
            let stale = now - inner.config.endpoint_lease_ms;
            if let Ok(mut d) = inner.declined.lock() {
                d.retain(|_, from| *from > stale);
            }
            if keep.is_empty() {
                continue;
            }
            let lease = inner.config.endpoint_lease_ms;
            match inner
                .store
                .take_leases(&inner.config.node, &keep, now, lease)
                .await
            {
                Ok(held) => {
                    if let Ok(mut l) = inner.leases.lock() {
                        for id in &keep {
                            if !held.contains(id) {
                                // Taken over (this node was too slow to renew): its worker
                                // stops sending before the next attempt.
                                tracing::warn!(endpoint = %id, "an endpoint's lease passed to another node");
                                l.remove(id);
                            }
                        }
                        for id in held {
                            l.insert(id, now + lease);
                        }
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing endpoint leases failed; retrying")
                }
            }
        }
    }
}

/// Of the `live` nodes, the first choice for `endpoint`: the one whose hash with the endpoint's
/// id is highest (rendezvous hashing; FNV-1a, the same on every node and every build).
pub(crate) fn first_choice_of<'a>(live: &'a [String], endpoint: &EndpointId) -> Option<&'a String> {
    let weight = |node: &str| {
        node.bytes()
            .chain([0])
            .chain(endpoint.as_str().bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    live.iter().max_by_key(|n| (weight(n), n.as_str()))
}
