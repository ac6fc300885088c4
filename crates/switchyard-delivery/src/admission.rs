//! Admission: how many deliveries the engine holds in memory (each endpoint's queue, each
//! organization's endpoints together, all of them together), how many event hooks wait for a
//! slot, the room a publish reserves before it commits ([`Reserved`]), and the count of work not
//! yet settled that [`Engine::until_idle`](crate::Engine::until_idle) waits on. Counters only:
//! no IO, no tasks; the engine asks before it takes work and tells when work is settled.

use crate::config::EngineConfig;
use crate::worker::Shared;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::EndpointRef;
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_fair::Shares;
use tokio::sync::Notify;

/// Room in memory taken for the deliveries of one publish before it commits
/// ([`Engine::reserve`](crate::Engine::reserve)); the commit's deliveries use it
/// ([`Engine::dispatch_reserved`](crate::Engine::dispatch_reserved)) or it is given back
/// ([`Engine::unreserve`](crate::Engine::unreserve)).
#[derive(Default)]
pub struct Reserved {
    pub(crate) endpoints: HashMap<EndpointId, (Arc<Shared>, usize)>,
    pub(crate) hooks: usize,
    /// The organization whose hooks took `hooks` of room.
    pub(crate) hooks_org: Option<OrgId>,
    /// Endpoints left without room: their deliveries are stored due, for them to pull.
    pub(crate) overflow: Vec<EndpointRef>,
}

impl Reserved {
    /// Notes an endpoint left without room (once).
    pub(crate) fn overflowed(&mut self, endpoint: EndpointRef) {
        if !self.overflow.contains(&endpoint) {
            self.overflow.push(endpoint);
        }
    }
}

/// One endpoint's room: the deliveries it holds in memory, counted in its organization's and the
/// engine's totals too.
pub(crate) struct Room {
    queued: AtomicUsize,
    total: Arc<AtomicUsize>,
    org: Arc<AtomicUsize>,
    /// How many its organization may hold (limit `queued`), as of the room's making.
    org_limit: usize,
}

impl Room {
    /// Deliveries held in memory by this endpoint.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// How many more deliveries its organization may hold in memory.
    pub(crate) fn org_room(&self) -> usize {
        self.org_limit
            .saturating_sub(self.org.load(Ordering::Relaxed))
    }

    pub(crate) fn hold(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        self.org.fetch_add(n, Ordering::Relaxed);
    }

    /// Like [`Room::hold`] for deliveries whose room in the total was already taken
    /// ([`Admission::take_total`]).
    pub(crate) fn hold_taken(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.org.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn unhold(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.org.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The engine's memory bounds and its count of unsettled work.
pub(crate) struct Admission {
    per_endpoint: usize,
    total_limit: usize,
    /// Deliveries held in memory by all endpoints together.
    total: Arc<AtomicUsize>,
    /// The same, by organization (each held to its limit `queued`).
    by_org: Mutex<HashMap<OrgId, Arc<AtomicUsize>>>,
    shares: Arc<Shares>,
    /// Event hooks handed over and waiting for a hook slot, all together and by organization.
    hooks_waiting: AtomicUsize,
    hooks_by_org: Mutex<HashMap<OrgId, usize>>,
    /// Deliveries dispatched whose result is not yet recorded (or handed back), and endpoints
    /// marked as having a backlog, one unit each.
    outstanding: AtomicUsize,
    idle: Notify,
}

impl Admission {
    pub(crate) fn new(config: &EngineConfig, shares: Arc<Shares>) -> Admission {
        Admission {
            per_endpoint: config.max_queued_per_endpoint,
            total_limit: config.max_queued_total,
            total: Arc::new(AtomicUsize::new(0)),
            by_org: Mutex::new(HashMap::new()),
            shares,
            hooks_waiting: AtomicUsize::new(0),
            hooks_by_org: Mutex::new(HashMap::new()),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// A new endpoint's room, counted in `org`'s total.
    pub(crate) fn room_for(&self, org: &OrgId) -> Room {
        let org_total = match self.by_org.lock() {
            Ok(mut m) => m.entry(org.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        Room {
            queued: AtomicUsize::new(0),
            total: self.total.clone(),
            org: org_total,
            org_limit: usize::try_from(self.shares.limits(org).queued).unwrap_or(usize::MAX),
        }
    }

    /// Whether an endpoint with `room` may hold one more delivery in memory: within its own
    /// bound, the engine's and its organization's.
    pub(crate) fn has_room(&self, room: &Room) -> bool {
        room.queued() < self.per_endpoint
            && self.total.load(Ordering::Relaxed) < self.total_limit
            && room.org_room() > 0
    }

    /// How many more deliveries an endpoint with `room` may pull into memory now, by its own
    /// bound and its organization's.
    pub(crate) fn pull_room(&self, room: &Room) -> usize {
        self.per_endpoint
            .saturating_sub(room.queued())
            .min(room.org_room())
    }

    /// Deliveries held in memory by all endpoints together.
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes room for up to `want` deliveries in the engine's total, as much as is left (all
    /// endpoints pull at once: the room is taken before the claim and the rest given back with
    /// [`Admission::return_total`]); returns how much it took.
    pub(crate) fn take_total(&self, want: usize) -> usize {
        let mut took = 0usize;
        let _ = self
            .total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |total| {
                took = self.total_limit.saturating_sub(total).min(want);
                (took > 0).then_some(total + took)
            });
        took
    }

    /// Gives back room in the total taken with [`Admission::take_total`] and not used.
    pub(crate) fn return_total(&self, n: usize) {
        self.total.fetch_sub(n, Ordering::SeqCst);
    }

    /// Counts room in the total used beyond what was taken.
    pub(crate) fn add_total(&self, n: usize) {
        self.total.fetch_add(n, Ordering::SeqCst);
    }

    /// Counts one more event hook of `org` waiting for a hook slot, if fewer than the bounds
    /// wait: the engine's (the per-endpoint bound: the hooks together count as one queue) and
    /// `org_limit`, the organization's.
    pub(crate) fn take_hook_room(&self, org: &OrgId, org_limit: usize) -> bool {
        if self.hooks_waiting.load(Ordering::Relaxed) >= self.per_endpoint {
            return false;
        }
        let Ok(mut by_org) = self.hooks_by_org.lock() else {
            return false;
        };
        let waiting = by_org.entry(org.clone()).or_insert(0);
        if *waiting >= org_limit {
            return false;
        }
        *waiting += 1;
        self.hooks_waiting.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives back room [`Admission::take_hook_room`] took for `n` hooks of `org`.
    pub(crate) fn release_hook_room(&self, org: &OrgId, n: usize) {
        if n == 0 {
            return;
        }
        self.hooks_waiting.fetch_sub(n, Ordering::Relaxed);
        if let Ok(mut by_org) = self.hooks_by_org.lock()
            && let Some(w) = by_org.get_mut(org)
        {
            *w = w.saturating_sub(n);
            if *w == 0 {
                by_org.remove(org);
            }
        }
    }

    /// How many more event hooks may wait in memory, all organizations together.
    pub(crate) fn hook_room(&self) -> usize {
        self.per_endpoint
            .saturating_sub(self.hooks_waiting.load(Ordering::Relaxed))
    }

    /// The organizations whose waiting hooks fill their own room (`limit` of each).
    pub(crate) fn hook_orgs_full(&self, limit: impl Fn(&OrgId) -> usize) -> Vec<OrgId> {
        match self.hooks_by_org.lock() {
            Ok(by_org) => by_org
                .iter()
                .filter(|(org, n)| **n >= limit(org))
                .map(|(org, _)| org.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Counts `n` units of work taken on (deliveries dispatched, a backlog mark).
    pub(crate) fn dispatched(&self, n: usize) {
        self.outstanding.fetch_add(n, Ordering::SeqCst);
    }

    /// Counts `n` units of work as settled (recorded, handed back or left to their lease).
    pub(crate) fn settled(&self, n: usize) {
        if n > 0 && self.outstanding.fetch_sub(n, Ordering::SeqCst) == n {
            self.idle.notify_waiters();
        }
    }

    /// Resolves once every unit of work taken on so far has settled, and any taken on meanwhile.
    pub(crate) async fn until_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::limits::Limits;

    fn admission(per_endpoint: usize, total: usize, org_queued: u64) -> Admission {
        let config = EngineConfig {
            max_queued_per_endpoint: per_endpoint,
            max_queued_total: total,
            ..EngineConfig::new("n")
        };
        let shares = Shares::new(Limits {
            queued: org_queued,
            ..Default::default()
        });
        Admission::new(&config, shares)
    }

    fn org(name: &str) -> OrgId {
        OrgId::stored(name.into())
    }

    #[test]
    fn an_endpoint_is_held_to_its_own_its_organizations_and_the_engines_bound() {
        let a = admission(3, 5, 4);
        let r1 = a.room_for(&org("a"));
        let r2 = a.room_for(&org("a"));
        let r3 = a.room_for(&org("b"));
        r1.hold(3);
        assert!(!a.has_room(&r1), "its own bound");
        assert!(a.has_room(&r2));
        r2.hold(1);
        assert!(!a.has_room(&r2), "the organization's bound");
        assert_eq!(a.pull_room(&r2), 0);
        assert!(a.has_room(&r3));
        r3.hold(1);
        assert!(!a.has_room(&r3), "the engine's bound");
        r1.unhold(2);
        assert!(a.has_room(&r3));
        assert_eq!(a.pull_room(&r2), 2);
        assert_eq!(a.total(), 3);
    }

    #[test]
    fn pulled_room_is_taken_from_the_total_before_the_claim() {
        let a = admission(100, 10, 100);
        assert_eq!(a.take_total(6), 6);
        assert_eq!(a.take_total(6), 4, "what is left");
        assert_eq!(a.take_total(1), 0);
        a.return_total(3);
        let r = a.room_for(&org("a"));
        r.hold_taken(7);
        assert_eq!(a.total(), 7);
        assert_eq!(r.org_room(), 93);
    }

    #[test]
    fn waiting_hooks_are_held_per_organization_and_together() {
        let a = admission(3, 10, 10);
        assert!(a.take_hook_room(&org("a"), 2));
        assert!(a.take_hook_room(&org("a"), 2));
        assert!(!a.take_hook_room(&org("a"), 2), "its own room");
        assert_eq!(a.hook_orgs_full(|_| 2), vec![org("a")]);
        assert!(a.take_hook_room(&org("b"), 2));
        assert!(!a.take_hook_room(&org("c"), 2), "the engine's");
        assert_eq!(a.hook_room(), 0);
        a.release_hook_room(&org("a"), 2);
        assert!(a.hook_orgs_full(|_| 2).is_empty());
        assert_eq!(a.hook_room(), 2);
    }

    #[tokio::test]
    async fn until_idle_waits_for_every_unit_taken_on() {
        let a = Arc::new(admission(1, 1, 1));
        a.until_idle().await;
        a.dispatched(2);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.until_idle().await }
        });
        a.settled(1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.settled(1);
        tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
            .await
            .expect("idle")
            .expect("joined");
    }
}
