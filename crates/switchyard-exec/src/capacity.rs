//! What runs may take of the hub at once, shared fairly between organizations: child-process
//! run slots, JavaScript workers and the memory budget of all runs together. An organization
//! waits for its turn (round-robin between the organizations waiting) and never holds more
//! than its share, so another organization's runs start as on an idle hub.

use crate::sandbox::{DEFAULT_SLOTS, JS_WORKER_SLOTS, SLOT_UID_BASE, UidSlot, UidSlots};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_fair::{FairPermit, FairPool, Limit, Refused, Shares};

/// Why a run did not start: the message stored as its error starts with this.
pub(crate) const NO_ROOM: &str = "no room:";

/// The shared capacities of runs.
pub struct Capacity {
    runs: FairPool,
    js_runs: FairPool,
    /// The memory of all concurrent runs together, in MiB.
    memory: FairPool,
    /// The uids of child-process runs (one per run slot, so always free for a permit holder).
    slots: UidSlots,
}

/// What a child-process run holds while it runs: its share and its uid (a slot of its own, or
/// the one its warm interpreter was started with).
pub struct ChildRoom {
    pub slot: UidSlot,
    _share: ChildShare,
}

/// A child-process run's part of the organization's and the hub's capacity: a run slot and
/// its memory in the budget.
pub struct ChildShare {
    _run: FairPermit,
    _memory: FairPermit,
}

impl ChildShare {
    /// The room of a run that uses `slot`.
    pub fn with(self, slot: UidSlot) -> ChildRoom {
        ChildRoom { slot, _share: self }
    }
}

/// What a JavaScript run holds while it runs.
pub struct JsRoom {
    _run: FairPermit,
    _memory: FairPermit,
}

impl Capacity {
    /// A memory budget of `budget_mb` for all runs together; each organization's shares from
    /// `shares`.
    pub fn new(shares: Arc<Shares>, budget_mb: u32) -> Capacity {
        Capacity {
            runs: FairPool::new(
                "run slots",
                "runs",
                u64::from(DEFAULT_SLOTS),
                shares.clone(),
                |l, _| l.runs,
            ),
            js_runs: FairPool::new(
                "JavaScript workers",
                "js_runs",
                u64::from(JS_WORKER_SLOTS),
                shares.clone(),
                |l, _| l.js_runs,
            ),
            memory: FairPool::new(
                "run memory (MiB)",
                "run_memory_mb",
                u64::from(budget_mb.max(1)),
                shares,
                |l, total| l.run_memory_of(total),
            ),
            slots: UidSlots::new(SLOT_UID_BASE, DEFAULT_SLOTS),
        }
    }

    /// The hub-wide memory budget (MiB).
    pub fn memory_mb(&self) -> u32 {
        u32::try_from(self.memory.total()).unwrap_or(u32::MAX)
    }

    /// A share for a child-process run of `org` needing `mb` of memory, waiting up to `wait`.
    pub async fn child_share(
        &self,
        org: &str,
        mb: u32,
        wait: Duration,
    ) -> Result<ChildShare, NoRoom> {
        let started = Instant::now();
        let run = self
            .runs
            .acquire(org, 1, Some(wait))
            .await
            .map_err(no_room)?;
        let memory = self
            .memory
            .acquire(
                org,
                u64::from(mb),
                Some(wait.saturating_sub(started.elapsed())),
            )
            .await
            .map_err(no_room)?;
        Ok(ChildShare {
            _run: run,
            _memory: memory,
        })
    }

    /// A uid of its own for a run holding `share`, waiting up to `wait` (a share holder always
    /// finds one: there are as many as run slots).
    pub async fn child_slot(&self, share: ChildShare, wait: Duration) -> Result<ChildRoom, NoRoom> {
        let slot = self
            .slots
            .take(wait)
            .await
            .ok_or_else(|| NoRoom(format!("{NO_ROOM} no run uid was free")))?;
        Ok(share.with(slot))
    }

    /// Room for a JavaScript run of `org` needing `mb` of memory, waiting up to `wait`.
    pub async fn js_run(&self, org: &str, mb: u32, wait: Duration) -> Result<JsRoom, NoRoom> {
        let started = Instant::now();
        let run = self
            .js_runs
            .acquire(org, 1, Some(wait))
            .await
            .map_err(no_room)?;
        let memory = self
            .memory
            .acquire(
                org,
                u64::from(mb),
                Some(wait.saturating_sub(started.elapsed())),
            )
            .await
            .map_err(no_room)?;
        Ok(JsRoom {
            _run: run,
            _memory: memory,
        })
    }
}

/// A run that found no room in time; the text (the run's stored error) names the limit and
/// how long it waited.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoRoom(pub String);

/// The stored error of a run that found no room: which limit, after how long.
fn no_room(r: Refused) -> NoRoom {
    let hint = match (r.limit, r.can_wait()) {
        (_, false) => "; the run cannot start with these limits",
        (Limit::Share, true) => {
            "; the organization's other runs hold it (the instance admin can change the limit)"
        }
        (Limit::Hub, true) => "; the hub is busy with other organizations' runs",
    };
    NoRoom(format!("{NO_ROOM} {r}{hint}"))
}
