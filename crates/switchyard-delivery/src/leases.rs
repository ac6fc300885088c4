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
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use switchyard_core::EndpointRef;
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_store::{Notice, StoreError};

/// What this node knows of endpoint leases, times by the engine's clock: which it holds and
/// until when, which another node holds, which nodes deliver, which it declined (and from when
/// it takes them anyway), which it is handing over. No IO: the engine asks the store and
/// writes what it learnt here.
#[derive(Default)]
pub(crate) struct LeaseBook {
    /// The endpoints whose lease this node holds, with until when. Renewed by the lease task;
    /// given up at shutdown.
    held: Mutex<HashMap<EndpointId, i64>>,
    /// Endpoints another node was found to hold, until when this node does not ask again (its
    /// poller still finds them if that node dies).
    elsewhere: Mutex<HashMap<EndpointId, i64>>,
    /// The nodes that deliver, as of the lease task's last heartbeat (sorted).
    live: Mutex<Vec<String>>,
    /// Endpoints this node declined as not its first choice (or handed over), with the time
    /// from which it takes them anyway (their first choice is not taking them).
    declined: Mutex<HashMap<EndpointId, i64>>,
    /// Endpoints this node holds but hands to their first choice, a node that joined since:
    /// their worker stops sending, waits for its requests in flight, then gives the lease up
    /// (see [`Engine::hand_over`]).
    yielding: Mutex<HashSet<EndpointId>>,
    /// Held while the lease task renews or gives up leases and while a handover gives one up,
    /// so that a renewal never takes back a lease just given up.
    pub(crate) ops: tokio::sync::Mutex<()>,
}

impl LeaseBook {
    /// Whether this node holds `endpoint`'s lease with more than `margin` left at `now`, and
    /// is not handing it over.
    pub(crate) fn holds(&self, endpoint: &EndpointId, now: i64, margin: i64) -> bool {
        self.held
            .lock()
            .is_ok_and(|l| l.get(endpoint).is_some_and(|u| *u > now + margin))
            && !self.is_yielding(endpoint)
    }

    pub(crate) fn is_yielding(&self, endpoint: &EndpointId) -> bool {
        self.yielding.lock().is_ok_and(|y| y.contains(endpoint))
    }

    /// Whether node `me` is `endpoint`'s first choice among the live nodes (or cannot tell: no
    /// heartbeat with `me` in it yet).
    pub(crate) fn first_choice(&self, me: &str, endpoint: &EndpointId) -> bool {
        let Ok(live) = self.live.lock() else {
            return true;
        };
        !live.iter().any(|n| n == me) || first_choice_of(&live, endpoint).is_some_and(|n| n == me)
    }

    /// For an endpoint that is not this node's first choice: whether it has waited long enough
    /// to be taken anyway. The first ask starts a wait of `grace`.
    pub(crate) fn waited_long_enough(&self, endpoint: &EndpointId, now: i64, grace: i64) -> bool {
        let Ok(mut declined) = self.declined.lock() else {
            return false;
        };
        let from = *declined.entry(endpoint.clone()).or_insert(now + grace);
        now >= from
    }

    /// The store gave this node `endpoint`'s lease until `until`.
    pub(crate) fn took(&self, endpoint: &EndpointId, until: i64) {
        if let Ok(mut l) = self.held.lock() {
            l.insert(endpoint.clone(), until);
        }
        if let Ok(mut d) = self.declined.lock() {
            d.remove(endpoint);
        }
    }

    /// Another node holds `endpoint`: not asked for again until `until`.
    pub(crate) fn held_by_another(&self, endpoint: &EndpointId, until: i64) {
        if let Ok(mut l) = self.held.lock() {
            l.remove(endpoint);
        }
        if let Ok(mut e) = self.elsewhere.lock() {
            e.insert(endpoint.clone(), until);
        }
    }

    /// Whether another node was found to hold `endpoint` (and may still, at `now`).
    pub(crate) fn held_elsewhere(&self, endpoint: &EndpointId, now: i64) -> bool {
        self.elsewhere
            .lock()
            .is_ok_and(|e| e.get(endpoint).is_some_and(|until| *until > now))
    }

    /// `endpoint` was handed over: not held, not yielding, not taken back before `until`.
    pub(crate) fn handed_over(&self, endpoint: &EndpointId, until: i64) {
        if let Ok(mut l) = self.held.lock() {
            l.remove(endpoint);
        }
        if let Ok(mut y) = self.yielding.lock() {
            y.remove(endpoint);
        }
        if let Ok(mut d) = self.declined.lock() {
            d.insert(endpoint.clone(), until);
        }
    }

    /// The endpoints whose lease this node holds.
    pub(crate) fn held_ids(&self) -> Vec<EndpointId> {
        self.held
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn set_live(&self, live: &[String]) {
        if let Ok(mut l) = self.live.lock() {
            l.clear();
            l.extend(live.iter().cloned());
        }
    }

    pub(crate) fn start_yielding(&self, endpoints: &[EndpointId]) {
        if let Ok(mut y) = self.yielding.lock() {
            y.extend(endpoints.iter().cloned());
        }
    }

    /// Leases given up as idle (no worker works their endpoint).
    pub(crate) fn gave_up(&self, idle: &[EndpointId]) {
        if let Ok(mut y) = self.yielding.lock() {
            y.retain(|id| !idle.contains(id));
        }
        if let Ok(mut l) = self.held.lock() {
            for id in idle {
                l.remove(id);
            }
        }
    }

    /// Forgets what no longer holds at `now`: another node's leases past their time, and
    /// declines whose grace ended before `stale`.
    pub(crate) fn forget_stale(&self, now: i64, stale: i64) {
        if let Ok(mut e) = self.elsewhere.lock() {
            e.retain(|_, until| *until > now);
        }
        if let Ok(mut d) = self.declined.lock() {
            d.retain(|_, from| *from > stale);
        }
    }

    /// A renewal of `asked` gave this node `held` until `until`; the rest passed to another
    /// node (it was too slow to renew), and their workers stop sending before the next
    /// attempt. Returns those lost.
    pub(crate) fn renewed(
        &self,
        asked: &[EndpointId],
        held: Vec<EndpointId>,
        until: i64,
    ) -> Vec<EndpointId> {
        let lost: Vec<EndpointId> = asked
            .iter()
            .filter(|id| !held.contains(id))
            .cloned()
            .collect();
        if let Ok(mut l) = self.held.lock() {
            for id in &lost {
                l.remove(id);
            }
            for id in held {
                l.insert(id, until);
            }
        }
        lost
    }

    /// Every lease given up (at shutdown).
    pub(crate) fn clear(&self) {
        if let Ok(mut l) = self.held.lock() {
            l.clear();
        }
    }
}

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
        self.inner.leases.holds(endpoint, now, self.lease_margin())
    }

    /// Whether this node is `endpoint`'s first choice among the nodes that deliver (or cannot
    /// tell: no heartbeat yet).
    pub(crate) fn first_choice(&self, endpoint: &EndpointId) -> bool {
        self.inner
            .leases
            .first_choice(&self.inner.config.node, endpoint)
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
        if !self.first_choice(endpoint)
            && !inner
                .leases
                .waited_long_enough(endpoint, now, self.lease_margin())
        {
            return false;
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
                inner.leases.took(endpoint, now + lease);
                true
            }
            Ok(_) => {
                inner
                    .leases
                    .held_by_another(endpoint, now + self.lease_margin());
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
        self.inner.leases.is_yielding(endpoint)
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
        let ops = inner.leases.ops.lock().await;
        if let Err(e) = inner
            .store
            .drop_leases(&inner.config.node, Some(std::slice::from_ref(id)))
            .await
        {
            // It runs out by itself within a lease; the first choice takes it then.
            tracing::warn!(error = %e, endpoint = %id, "giving an endpoint's lease up failed");
        }
        // Not taken back before its first choice has had a whole lease to take it (a node that
        // joined may still be starting up; a shorter grace would pass it back and forth).
        inner
            .leases
            .handed_over(id, inner.clock.now_ms() + inner.config.endpoint_lease_ms);
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
        let wanted: Vec<EndpointRef> = endpoints
            .iter()
            .filter(|id| {
                self.holds_lease(id)
                    || (self.first_choice(id) && !inner.leases.held_elsewhere(id, now))
            })
            .map(|id| EndpointRef {
                org_id: org.clone(),
                endpoint_id: id.clone(),
            })
            .collect();
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
        let held = inner.leases.held_ids();
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
        inner.leases.start_yielding(&handed);
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
                    inner.leases.set_live(&live);
                    self.yield_to_joined(&live, &before);
                    before = live;
                }
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "the heartbeat failed; retrying"),
            }
            // Until the renewal is written: a handover gives its lease up before or after.
            let _ops = inner.leases.ops.lock().await;
            // One lock at a time (elsewhere the slots are locked before the leases).
            let ids = inner.leases.held_ids();
            let Ok((keep, idle)) = inner.slots.lock().map(|slots| {
                ids.into_iter()
                    .partition::<Vec<_>, _>(|id| slots.contains_key(id))
            }) else {
                return;
            };
            if !idle.is_empty() {
                inner.leases.gave_up(&idle);
                if let Err(e) = inner
                    .store
                    .drop_leases(&inner.config.node, Some(&idle))
                    .await
                {
                    tracing::debug!(error = %e, "giving up idle endpoint leases failed");
                }
            }
            // A decline whose grace ended a lease ago is forgotten: the next starts a new grace.
            inner
                .leases
                .forget_stale(now, now - inner.config.endpoint_lease_ms);
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
                    for id in inner.leases.renewed(&keep, held, now + lease) {
                        tracing::warn!(endpoint = %id, "an endpoint's lease passed to another node");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: u8) -> EndpointId {
        EndpointId::stored(format!("ep_{n:032}"))
    }

    #[test]
    fn a_lease_is_held_only_with_its_margin_left_and_not_while_handed_over() {
        let book = LeaseBook::default();
        let a = ep(1);
        assert!(!book.holds(&a, 0, 100));
        book.took(&a, 1_000);
        assert!(book.holds(&a, 0, 100));
        assert!(!book.holds(&a, 900, 100), "less than the margin left");
        book.start_yielding(std::slice::from_ref(&a));
        assert!(!book.holds(&a, 0, 100), "being handed over");
        book.handed_over(&a, 5_000);
        assert!(!book.is_yielding(&a));
        assert!(book.held_ids().is_empty());
        // Handed over: not taken back before the first choice had its time.
        assert!(!book.waited_long_enough(&a, 4_999, 10));
        assert!(book.waited_long_enough(&a, 5_000, 10));
    }

    #[test]
    fn a_decline_waits_its_grace_once_and_is_forgotten_later() {
        let book = LeaseBook::default();
        let a = ep(2);
        assert!(
            !book.waited_long_enough(&a, 1_000, 500),
            "the first ask starts the wait"
        );
        assert!(!book.waited_long_enough(&a, 1_400, 500));
        assert!(book.waited_long_enough(&a, 1_500, 500));
        // Taking it ends the decline; a stale one is forgotten and starts afresh.
        book.took(&a, 10_000);
        assert!(!book.waited_long_enough(&a, 2_000, 500));
        book.forget_stale(3_000, 2_600);
        assert!(!book.waited_long_enough(&a, 3_000, 500), "a new grace");
    }

    #[test]
    fn a_renewal_keeps_what_it_got_and_names_what_passed_on() {
        let book = LeaseBook::default();
        let (a, b) = (ep(3), ep(4));
        book.took(&a, 100);
        book.took(&b, 100);
        let lost = book.renewed(&[a.clone(), b.clone()], vec![a.clone()], 1_000);
        assert_eq!(lost, vec![b.clone()]);
        assert!(book.holds(&a, 500, 0));
        assert!(!book.holds(&b, 0, 0));
        book.held_by_another(&b, 2_000);
        assert!(book.held_elsewhere(&b, 1_999));
        book.forget_stale(2_000, 0);
        assert!(!book.held_elsewhere(&b, 0));
        book.gave_up(std::slice::from_ref(&a));
        assert!(book.held_ids().is_empty());
    }

    #[test]
    fn the_first_choice_is_the_same_for_every_node_and_unknown_means_take_it() {
        let book = LeaseBook::default();
        let a = ep(5);
        assert!(book.first_choice("n1", &a), "no heartbeat yet");
        let live = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        book.set_live(&live);
        let firsts: Vec<bool> = live.iter().map(|n| book.first_choice(n, &a)).collect();
        assert_eq!(firsts.iter().filter(|f| **f).count(), 1, "{firsts:?}");
        assert!(book.first_choice("n9", &a), "a node not live yet takes it");
    }
}
