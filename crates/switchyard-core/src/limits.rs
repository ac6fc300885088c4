//! What one organization may take of the hub: its share of each capacity the hub shares
//! (run slots, workers, requests in flight, the hook cache…) and its quotas on stored data.
//!
//! The hub's settings give every organization the same [`Limits`]; the instance admin may set
//! any of them for one organization ([`OrgLimits`], stored with the organization). An
//! organization that uses up its share waits on itself (or is told 429); the others never wait
//! behind it.

use crate::error::CoreError;
use serde::{Deserialize, Serialize};

/// Declares the limits once: the hub's defaults ([`Limits`]), an organization's overrides
/// ([`OrgLimits`], every field optional) and how they combine.
macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $field:ident: $default:expr ),* $(,)?) => {
        /// The limits one organization runs under (the hub's defaults, with its overrides).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl Default for Limits {
            fn default() -> Limits {
                Limits { $( $field: $default, )* }
            }
        }

        /// The limits the instance admin set for one organization; `None` follows the hub's.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct OrgLimits {
            $( $(#[doc = $doc])* #[serde(default, skip_serializing_if = "Option::is_none")]
               pub $field: Option<u64>, )*
        }

        impl Limits {
            /// These limits with `org`'s own where it has them.
            pub fn with(&self, org: &OrgLimits) -> Limits {
                Limits { $( $field: org.$field.unwrap_or(self.$field), )* }
            }
        }

        impl OrgLimits {
            /// Whether no limit is set (the organization follows the hub's).
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )*
            }

            /// Names of every limit, for errors and docs.
            pub const NAMES: &'static [&'static str] = &[$( stringify!($field), )*];
        }
    };
}

limits! {
    // Shares of what runs at once.
    /// Python, PHP and Node.js runs at once (the hub has 64 run slots).
    runs: 16,
    /// JavaScript runs at once (the hub has 256 workers).
    js_runs: 64,
    /// Memory of the organization's runs at once, MiB (the hub's run memory budget is half the
    /// machine's by default; 0 here means a quarter of the hub's budget).
    run_memory_mb: 0,
    /// Synchronous hook calls waiting for their answer at once.
    hook_calls: 32,
    /// Event hooks (subscriptions to executors) running at once.
    event_hooks: 8,
    /// Webhook requests in flight at once, all the organization's endpoints together.
    requests: 64,
    /// Deliveries held in memory for its endpoints; the rest wait in the store.
    queued: 2_500,
    /// Bytes of the synchronous-hook answer cache its answers may take.
    hook_cache_bytes: 16 << 20,
    /// Live event streams open at once.
    streams: 32,
    // Quotas on what it stores and publishes.
    /// Bytes of its executors' key-value storage (keys and values).
    kv_bytes: 256 << 20,
    /// Endpoints.
    endpoints: 1_000,
    /// Subscriptions.
    subscriptions: 10_000,
    /// Executors.
    executors: 1_000,
    /// Schedules.
    schedules: 1_000,
    /// Bytes of all its schedules' definitions together (their event payloads).
    schedule_bytes: 4 << 20,
    /// Events it may publish per minute; 0: no limit.
    events_per_minute: 0,
    /// Deliveries it may replay per hour.
    replays_per_hour: 200_000,
}

/// The largest number any limit may be set to.
pub const MAX_LIMIT: u64 = 1 << 50;

impl OrgLimits {
    /// Checks the values an admin set.
    pub fn check(&self) -> Result<(), CoreError> {
        let json = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = json.as_object() {
            for (name, v) in obj {
                if v.as_u64().is_some_and(|n| n > MAX_LIMIT) {
                    return Err(CoreError::invalid(format!(
                        "limit `{name}` must be at most {MAX_LIMIT}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Limits {
    /// The organization's memory share for runs (MiB) given the hub's whole budget: its
    /// `run_memory_mb`, or a quarter of the budget when that is 0.
    pub fn run_memory_of(&self, budget_mb: u64) -> u64 {
        match self.run_memory_mb {
            0 => (budget_mb / 4).max(1),
            mb => mb,
        }
    }
}

/// What an organization stores now, for its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub endpoints: u64,
    pub subscriptions: u64,
    pub executors: u64,
    pub schedules: u64,
    /// Bytes of its schedules' event payloads.
    pub schedule_bytes: u64,
    /// Bytes of its key-value storage (keys and values).
    pub kv_bytes: u64,
}

/// A change refused because it would take an organization past one of its quotas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quota `{quota}` exceeded: this would make {would_be}, and the organization's limit is \
     {limit} (it has {has}); remove some, or ask the instance admin to raise the limit"
)]
pub struct QuotaExceeded {
    /// The quota's key in `[limits]`.
    pub quota: &'static str,
    pub would_be: u64,
    pub limit: u64,
    pub has: u64,
}

impl Limits {
    /// Whether a change from `before` to `after` stays within the quotas: only what the change
    /// grows is checked (an organization above a quota lowered since may still shrink).
    pub fn allows(&self, before: &Usage, after: &Usage) -> Result<(), QuotaExceeded> {
        let quotas = [
            (
                "endpoints",
                before.endpoints,
                after.endpoints,
                self.endpoints,
            ),
            (
                "subscriptions",
                before.subscriptions,
                after.subscriptions,
                self.subscriptions,
            ),
            (
                "executors",
                before.executors,
                after.executors,
                self.executors,
            ),
            (
                "schedules",
                before.schedules,
                after.schedules,
                self.schedules,
            ),
            (
                "schedule_bytes",
                before.schedule_bytes,
                after.schedule_bytes,
                self.schedule_bytes,
            ),
            ("kv_bytes", before.kv_bytes, after.kv_bytes, self.kv_bytes),
        ];
        for (quota, has, would_be, limit) in quotas {
            if would_be > has && would_be > limit {
                return Err(QuotaExceeded {
                    quota,
                    would_be,
                    limit,
                    has,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let hub = Limits::default();
        let org = OrgLimits {
            runs: Some(2),
            ..Default::default()
        };
        let l = hub.with(&org);
        assert_eq!(l.runs, 2);
        assert_eq!(l.js_runs, hub.js_runs);
        assert!(!org.is_empty());
        assert!(OrgLimits::default().is_empty());
    }

    #[test]
    fn unknown_and_huge_limits_are_refused() {
        assert!(serde_json::from_str::<OrgLimits>(r#"{"rnus": 3}"#).is_err());
        let huge = OrgLimits {
            kv_bytes: Some(MAX_LIMIT + 1),
            ..Default::default()
        };
        assert!(huge.check().is_err());
    }

    #[test]
    fn quotas_check_only_what_grows() {
        let l = Limits {
            endpoints: 2,
            ..Limits::default()
        };
        let before = Usage {
            endpoints: 2,
            ..Usage::default()
        };
        let grow = Usage {
            endpoints: 3,
            ..before
        };
        let err = l.allows(&before, &grow).unwrap_err();
        assert_eq!(
            (err.quota, err.would_be, err.limit, err.has),
            ("endpoints", 3, 2, 2)
        );
        let text = err.to_string();
        assert!(
            text.contains("`endpoints`") && text.contains("limit is 2"),
            "{text}"
        );
        // Over a lowered limit, shrinking (or changing something else) is allowed.
        let over = Usage {
            endpoints: 5,
            ..Usage::default()
        };
        let shrink = Usage {
            endpoints: 4,
            ..over
        };
        assert!(l.allows(&over, &shrink).is_ok());
        let other = Usage {
            schedules: 1,
            ..over
        };
        assert!(l.allows(&over, &other).is_ok());
    }

    #[test]
    fn memory_share_defaults_to_a_quarter_of_the_budget() {
        let l = Limits::default();
        assert_eq!(l.run_memory_of(4096), 1024);
        let own = Limits {
            run_memory_mb: 300,
            ..l
        };
        assert_eq!(own.run_memory_of(4096), 300);
    }
}
