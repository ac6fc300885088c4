//! Per-organization rates: how many events an organization may publish per minute (its limit
//! `events_per_minute`, off by default) and how many deliveries it may replay per hour (its
//! limit `replays_per_hour`). Fixed windows, counted on this node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_core::ids::OrgId;

/// What a rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rate {
    Events,
    Replays,
}

impl Rate {
    fn window(self) -> Duration {
        match self {
            Rate::Events => Duration::from_secs(60),
            Rate::Replays => Duration::from_secs(3600),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rate::Events => "events_per_minute",
            Rate::Replays => "replays_per_hour",
        }
    }
}

/// Used units of each organization's current windows.
#[derive(Default)]
pub(crate) struct Rates {
    used: Mutex<HashMap<(OrgId, Rate), (u64, u64)>>,
}

/// A rate used up: its limit's name and when the window ends.
#[derive(Debug)]
pub(crate) struct Exhausted {
    pub(crate) message: String,
    pub(crate) retry_after_s: u64,
}

impl Rates {
    /// Takes up to `want` units of `org`'s `rate` (limit `limit`, 0: none): the number taken,
    /// all of `want` when `all` (else none and `Err`); `Err` once the window has nothing left.
    pub(crate) fn take(
        &self,
        org: &OrgId,
        rate: Rate,
        want: u64,
        limit: u64,
        all: bool,
    ) -> Result<u64, Exhausted> {
        if limit == 0 || want == 0 {
            return Ok(want);
        }
        let window = rate.window().as_secs();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let index = now / window;
        let retry_after_s = (index + 1) * window - now;
        let Ok(mut used) = self.used.lock() else {
            return Ok(want);
        };
        // Old windows go when the map grows (one entry per organization and rate).
        if used.len() > 10_000 {
            used.retain(|_, (i, _)| *i == index);
        }
        let entry = used.entry((org.clone(), rate)).or_insert((index, 0));
        if entry.0 != index {
            *entry = (index, 0);
        }
        let left = limit.saturating_sub(entry.1);
        let taken = if all {
            if want > left { 0 } else { want }
        } else {
            want.min(left)
        };
        if taken == 0 {
            let message = if all && want > limit {
                format!(
                    "{want} at once is more than this organization's limit `{}` ({limit})",
                    rate.name()
                )
            } else {
                format!(
                    "this organization's limit `{}` ({limit}) is used up for this window; \
                     retry after {retry_after_s} s",
                    rate.name()
                )
            };
            return Err(Exhausted {
                message,
                retry_after_s,
            });
        }
        entry.1 += taken;
        Ok(taken)
    }

    /// Gives back units taken but not used.
    pub(crate) fn give_back(&self, org: &OrgId, rate: Rate, n: u64) {
        if let Ok(mut used) = self.used.lock()
            && let Some(e) = used.get_mut(&(org.clone(), rate))
        {
            e.1 = e.1.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_gives_its_limit_and_no_more() {
        let r = Rates::default();
        let org = OrgId::stored("a".into());
        assert_eq!(r.take(&org, Rate::Events, 3, 5, true).unwrap(), 3);
        assert!(r.take(&org, Rate::Events, 3, 5, true).is_err());
        assert_eq!(r.take(&org, Rate::Events, 3, 5, false).unwrap(), 2);
        let e = r.take(&org, Rate::Events, 1, 5, false).unwrap_err();
        assert!(
            e.message.contains("`events_per_minute` (5)"),
            "{}",
            e.message
        );
        assert!(e.retry_after_s >= 1 && e.retry_after_s <= 60);
        r.give_back(&org, Rate::Events, 2);
        assert_eq!(r.take(&org, Rate::Events, 2, 5, true).unwrap(), 2);
        // Other organizations and other rates are apart; 0 is no limit.
        let b = OrgId::stored("b".into());
        assert_eq!(r.take(&b, Rate::Events, 5, 5, true).unwrap(), 5);
        assert_eq!(r.take(&org, Rate::Replays, 9, 0, true).unwrap(), 9);
    }
}
