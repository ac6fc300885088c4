//! Fair shares: each organization's limits ([`Shares`]), and pools ([`FairPool`]) that hand a
//! shared capacity out round-robin between the organizations waiting for it, each held to its
//! own share.
//!
//! A pool has `total` units (run slots, MiB of memory, requests in flight…). An organization
//! takes units while it holds at most its share (its [`Limits`] field for the pool) and the
//! pool has them; otherwise it waits in its own queue. When units come back, the organizations
//! with work waiting are served in turn, one grant each, so an organization with a thousand
//! waiting runs gets no more turns than one with a single run. An organization at its share
//! waits on itself alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::limits::{Limits, OrgLimits};
use tokio::sync::oneshot;

/// The limits of every organization: the hub's, and the ones the instance admin set for some.
pub struct Shares {
    defaults: Limits,
    orgs: RwLock<HashMap<String, OrgLimits>>,
}

impl Shares {
    /// Every organization under `defaults` until [`Shares::set`] says otherwise.
    pub fn new(defaults: Limits) -> Arc<Shares> {
        Arc::new(Shares {
            defaults,
            orgs: RwLock::new(HashMap::new()),
        })
    }

    /// The hub's limits.
    pub fn defaults(&self) -> Limits {
        self.defaults
    }

    /// The limits `org` runs under now.
    pub fn limits(&self, org: &str) -> Limits {
        match self.orgs.read() {
            Ok(m) => m.get(org).map_or(self.defaults, |o| self.defaults.with(o)),
            Err(_) => self.defaults,
        }
    }

    /// `org`'s own limits changed (or were first read).
    pub fn set(&self, org: &str, limits: &OrgLimits) {
        if let Ok(mut m) = self.orgs.write() {
            if limits.is_empty() {
                m.remove(org);
            } else {
                m.insert(org.to_string(), limits.clone());
            }
        }
    }
}

/// Which limit a refusal hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The organization's own share was full (it waits on itself).
    Share,
    /// The whole pool was full (every organization's work together).
    Hub,
}

/// Why a pool did not hand out units: which limit, its size and how long the caller waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What the pool holds, e.g. "run slots".
    pub pool: &'static str,
    /// The organization's limit that sets its share of the pool, e.g. `runs`.
    pub share_limit: &'static str,
    pub limit: Limit,
    /// The size of that limit, in the pool's units.
    pub size: u64,
    /// What was asked for.
    pub units: u64,
    /// How long the caller waited for room (0: it asked for more than the limit can ever give).
    pub waited: Duration,
}

impl Refused {
    /// Whether waiting longer could have helped (the request fits the limit at all).
    pub fn can_wait(&self) -> bool {
        self.units <= self.size
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whose = match self.limit {
            Limit::Share => format!(
                "this organization's share ({}, its limit `{}`)",
                self.size, self.share_limit
            ),
            Limit::Hub => format!(
                "the hub's capacity for all organizations together ({})",
                self.size
            ),
        };
        if !self.can_wait() {
            return write!(f, "{}: {} needed, more than {whose}", self.pool, self.units);
        }
        write!(
            f,
            "{}: {whose} stayed full for {} ms",
            self.pool,
            self.waited.as_millis()
        )
    }
}

/// A capacity shared fairly between organizations. Cheap to clone.
#[derive(Clone)]
pub struct FairPool {
    pool: Arc<Pool>,
}

struct Pool {
    name: &'static str,
    share_limit: &'static str,
    total: u64,
    shares: Arc<Shares>,
    /// An organization's share of this pool, from its limits and the pool's total.
    share_of: fn(&Limits, u64) -> u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: u64,
    held: HashMap<Arc<str>, u64>,
    /// Each organization's waiters, first come first served within it.
    queues: HashMap<Arc<str>, VecDeque<Waiter>>,
    /// Organizations with waiters, in the order they are served.
    turn: VecDeque<Arc<str>>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    units: u64,
    share: u64,
    tx: oneshot::Sender<()>,
}

impl State {
    fn fits(&self, org: &str, units: u64, share: u64) -> bool {
        units <= self.free && self.held.get(org).copied().unwrap_or(0) + units <= share
    }

    fn take(&mut self, org: &Arc<str>, units: u64) {
        self.free -= units;
        *self.held.entry(org.clone()).or_insert(0) += units;
    }

    fn give(&mut self, org: &str, units: u64) {
        self.free += units;
        if let Some(h) = self.held.get_mut(org) {
            *h = h.saturating_sub(units);
            if *h == 0 {
                self.held.remove(org);
            }
        }
    }

    /// Hands free units to waiters: each organization in turn gets its first waiter served if
    /// that fits, and goes to the back; stops after a whole round with nothing served.
    fn dispatch(&mut self) {
        let mut idle = 0;
        while idle < self.turn.len() {
            let Some(org) = self.turn.pop_front() else {
                return;
            };
            let Some(q) = self.queues.get_mut(&org) else {
                continue;
            };
            while q.front().is_some_and(|w| w.tx.is_closed()) {
                q.pop_front();
            }
            let Some(head) = q.front() else {
                self.queues.remove(&org);
                continue;
            };
            let (units, share) = (head.units, head.share);
            let held = self.held.get(&org).copied().unwrap_or(0);
            if units > self.free || held + units > share {
                idle += 1;
                self.turn.push_back(org);
                continue;
            }
            let Some(w) = q.pop_front() else { continue };
            let left = !q.is_empty();
            self.take(&org, units);
            if w.tx.send(()).is_err() {
                self.give(&org, units);
            }
            idle = 0;
            if left {
                self.turn.push_back(org);
            } else {
                self.queues.remove(&org);
            }
        }
    }

    fn remove_waiter(&mut self, org: &str, id: u64) {
        if let Some(q) = self.queues.get_mut(org) {
            q.retain(|w| w.id != id);
            if q.is_empty() {
                self.queues.remove(org);
                self.turn.retain(|o| &**o != org);
            }
        }
    }
}

/// Units of a pool held by one organization; given back when dropped.
pub struct FairPermit {
    pool: Arc<Pool>,
    org: Arc<str>,
    units: u64,
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        if let Ok(mut s) = self.pool.state.lock() {
            s.give(&self.org, self.units);
            s.dispatch();
        }
    }
}

/// A wait in progress: if the caller stops waiting (timeout, or its future is dropped), the
/// waiter leaves its queue, and units granted meanwhile go back.
struct Waiting {
    pool: Arc<Pool>,
    org: Arc<str>,
    id: u64,
    units: u64,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Waiting {
    /// Stops waiting: `true` if the units were granted after all.
    fn settle(&mut self, keep: bool) -> bool {
        self.done = true;
        let Ok(mut s) = self.pool.state.lock() else {
            return false;
        };
        // Grants happen under the lock, so this sees any grant made so far.
        let granted = self.rx.try_recv().is_ok();
        if granted && !keep {
            s.give(&self.org, self.units);
        } else if !granted {
            s.remove_waiter(&self.org, self.id);
        }
        s.dispatch();
        granted
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.done {
            self.settle(false);
        }
    }
}

impl FairPool {
    /// A pool of `total` units named `name` (for errors); `share_of` reads an organization's
    /// share from its limits (and the total, for shares that are a part of it), limit
    /// `share_limit` of [`Limits`].
    pub fn new(
        name: &'static str,
        share_limit: &'static str,
        total: u64,
        shares: Arc<Shares>,
        share_of: fn(&Limits, u64) -> u64,
    ) -> FairPool {
        let total = total.max(1);
        FairPool {
            pool: Arc::new(Pool {
                name,
                share_limit,
                total,
                shares,
                share_of,
                state: Mutex::new(State {
                    free: total,
                    ..State::default()
                }),
            }),
        }
    }

    /// The pool's size.
    pub fn total(&self) -> u64 {
        self.pool.total
    }

    /// `org`'s share of this pool now.
    pub fn share(&self, org: &str) -> u64 {
        (self.pool.share_of)(&self.pool.shares.limits(org), self.pool.total).min(self.pool.total)
    }

    /// Units `org` holds now.
    pub fn held(&self, org: &str) -> u64 {
        self.pool
            .state
            .lock()
            .map_or(0, |s| s.held.get(org).copied().unwrap_or(0))
    }

    fn permit(&self, org: Arc<str>, units: u64) -> FairPermit {
        FairPermit {
            pool: self.pool.clone(),
            org,
            units,
        }
    }

    fn refused(&self, org: &str, units: u64, share: u64, waited: Duration) -> Refused {
        let held = self.held(org);
        let (limit, size) = if units > self.pool.total {
            (Limit::Hub, self.pool.total)
        } else if held + units > share {
            (Limit::Share, share)
        } else {
            (Limit::Hub, self.pool.total)
        };
        Refused {
            pool: self.pool.name,
            share_limit: self.pool.share_limit,
            limit,
            size,
            units,
            waited,
        }
    }

    /// Takes `units` for `org` now, or says which limit is full.
    pub fn try_acquire(&self, org: &str, units: u64) -> Result<FairPermit, Refused> {
        let share = self.share(org);
        let org: Arc<str> = Arc::from(org);
        {
            let Ok(mut s) = self.pool.state.lock() else {
                return Err(self.refused(&org, units, share, Duration::ZERO));
            };
            if !s.queues.contains_key(&org) && s.fits(&org, units, share) {
                s.take(&org, units);
                drop(s);
                return Ok(self.permit(org, units));
            }
        }
        Err(self.refused(&org, units, share, Duration::ZERO))
    }

    /// Takes `units` for `org`, waiting in `org`'s queue for its turn up to `wait` (`None`:
    /// until the caller drops the future). A request larger than the share or the pool is
    /// refused at once.
    pub async fn acquire(
        &self,
        org: &str,
        units: u64,
        wait: Option<Duration>,
    ) -> Result<FairPermit, Refused> {
        let started = Instant::now();
        let share = self.share(org);
        let org: Arc<str> = Arc::from(org);
        if units > share || units > self.pool.total {
            return Err(self.refused(&org, units, share, Duration::ZERO));
        }
        let (id, rx) = {
            let Ok(mut s) = self.pool.state.lock() else {
                return Err(self.refused(&org, units, share, Duration::ZERO));
            };
            if !s.queues.contains_key(&org) && s.fits(&org, units, share) {
                s.take(&org, units);
                drop(s);
                return Ok(self.permit(org, units));
            }
            // Only a caller that waits needs a channel to be woken on.
            let (tx, rx) = oneshot::channel();
            s.next_id += 1;
            let id = s.next_id;
            let q = s.queues.entry(org.clone()).or_default();
            let first = q.is_empty();
            q.push_back(Waiter {
                id,
                units,
                share,
                tx,
            });
            if first {
                s.turn.push_back(org.clone());
            }
            // Units may have come back between the check and the queueing.
            s.dispatch();
            (id, rx)
        };
        let mut waiting = Waiting {
            pool: self.pool.clone(),
            org: org.clone(),
            id,
            units,
            rx,
            done: false,
        };
        let granted = match wait {
            Some(w) => matches!(tokio::time::timeout(w, &mut waiting.rx).await, Ok(Ok(()))),
            None => (&mut waiting.rx).await.is_ok(),
        };
        if granted {
            waiting.done = true;
            return Ok(self.permit(org, units));
        }
        if waiting.settle(true) {
            return Ok(self.permit(org, units));
        }
        Err(self.refused(&org, units, share, started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(total: u64, share: u64) -> FairPool {
        let limits = Limits {
            runs: share,
            ..Limits::default()
        };
        FairPool::new("run slots", "runs", total, Shares::new(limits), |l, _| {
            l.runs
        })
    }

    fn free(p: &FairPool) -> u64 {
        p.pool.state.lock().map(|s| s.free).unwrap_or(0)
    }

    #[tokio::test]
    async fn an_organization_at_its_share_waits_on_itself() {
        let p = pool(4, 2);
        let a1 = p.try_acquire("a", 1).unwrap();
        let _a2 = p.try_acquire("a", 1).unwrap();
        let refused = p.try_acquire("a", 1).err().unwrap();
        assert_eq!(refused.limit, Limit::Share);
        assert_eq!(refused.size, 2);
        // B still has room.
        let _b = p.try_acquire("b", 1).unwrap();
        let waited = p
            .acquire("a", 1, Some(Duration::from_millis(30)))
            .await
            .err()
            .unwrap();
        assert_eq!(waited.limit, Limit::Share);
        assert!(waited.waited >= Duration::from_millis(30));
        assert!(
            waited
                .to_string()
                .contains("this organization's share (2, its limit `runs`) stayed full")
        );
        drop(a1);
        let _a3 = p
            .acquire("a", 1, Some(Duration::from_secs(5)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn waiting_organizations_are_served_in_turn() {
        let p = pool(1, 1);
        let first = p.try_acquire("a", 1).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A queues five, then B one: B is served second, not sixth.
        for (i, org) in ["a", "a", "a", "a", "a", "b"].into_iter().enumerate() {
            let (q, order) = (p.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = q.acquire(org, 1, None).await.unwrap();
                order.lock().unwrap().push(org);
                tokio::task::yield_now().await;
                drop(permit);
            }));
            // Queue them in this order.
            while p
                .pool
                .state
                .lock()
                .unwrap()
                .queues
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
                < i + 1
            {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.iter().position(|o| *o == "b"), Some(1), "{order:?}");
        assert_eq!(free(&p), 1);
    }

    #[tokio::test]
    async fn the_hub_limit_is_named_when_the_pool_is_full() {
        let p = pool(2, 2);
        let _a = p.try_acquire("a", 2).unwrap();
        let r = p
            .acquire("b", 1, Some(Duration::from_millis(10)))
            .await
            .err()
            .unwrap();
        assert_eq!(r.limit, Limit::Hub);
        assert!(
            r.to_string()
                .contains("all organizations together (2) stayed full")
        );
        let too_big = p.try_acquire("b", 3).err().unwrap();
        assert!(!too_big.can_wait());
    }

    #[tokio::test]
    async fn waiters_that_give_up_leave_nothing_held() {
        let p = pool(3, 3);
        let held = p.try_acquire("a", 3).unwrap();
        let mut waits = Vec::new();
        for i in 0..50u64 {
            let p = p.clone();
            waits.push(tokio::spawn(async move {
                let org = if i % 2 == 0 { "a" } else { "b" };
                p.acquire(org, 1, Some(Duration::from_millis(i % 7)))
                    .await
                    .is_ok()
            }));
        }
        // Some are granted while others time out, and some futures are simply dropped.
        let dropped = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire("c", 1, None).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(held);
        dropped.abort();
        for w in waits {
            let _ = w.await;
        }
        let _ = dropped.await;
        assert_eq!(free(&p), 3);
        assert!(p.pool.state.lock().unwrap().held.is_empty());
    }

    #[test]
    fn overrides_change_one_organization_only() {
        let shares = Shares::new(Limits::default());
        shares.set(
            "a",
            &OrgLimits {
                runs: Some(1),
                ..Default::default()
            },
        );
        let p = FairPool::new("run slots", "runs", 64, shares.clone(), |l, _| l.runs);
        assert_eq!(p.share("a"), 1);
        assert_eq!(p.share("b"), Limits::default().runs);
        shares.set("a", &OrgLimits::default());
        assert_eq!(p.share("a"), Limits::default().runs);
    }
}
