//! The rules of organizations: a new organization's id and name, and how long it keeps its
//! data. The API, the CLI and config files all change organizations through here.

use crate::error::CoreError;

/// A tenant: everything else belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: crate::ids::OrgId,
    pub name: String,
    pub created_at: i64,
    /// How long its events and runs are kept, in seconds; `None` follows the hub's default.
    pub retention_s: Option<u64>,
    /// How long the payload of an event whose every delivery succeeded is kept, in seconds;
    /// `None` follows the hub's default (by default payloads live as long as their events).
    pub payload_retention_s: Option<u64>,
    /// Its own shares and quotas, set by the instance admin; unset ones follow the hub's.
    pub limits: crate::limits::OrgLimits,
}

/// The longest retention an organization may ask for: ten years, in seconds.
pub const MAX_RETENTION_S: u64 = 10 * 365 * 86_400;

/// Settings a create or a patch carries. `None` keeps the current value; for the retentions,
/// `Some(None)` goes back to the hub's default.
#[derive(Debug, Clone, Default)]
pub struct OrgChanges {
    pub name: Option<String>,
    pub retention_s: Option<Option<u64>>,
    pub payload_retention_s: Option<Option<u64>>,
}

impl Org {
    /// A new organization, checked.
    pub fn new(id: &str, changes: OrgChanges, now: i64) -> Result<Org, CoreError> {
        let Some(id) = crate::ids::OrgId::parse(id) else {
            return Err(CoreError::invalid(
                "`id` must be 1–64 characters of letters, digits and -_.:@",
            ));
        };
        let mut org = Org {
            id,
            name: String::new(),
            created_at: now,
            retention_s: None,
            payload_retention_s: None,
            limits: Default::default(),
        };
        if changes.name.is_none() {
            return Err(CoreError::invalid("`name` is required"));
        }
        org.apply(changes)?;
        Ok(org)
    }

    /// A new organization with the defaults, for tests and tools that need one quickly.
    pub fn named(id: &str, name: &str) -> Result<Org, CoreError> {
        let changes = OrgChanges {
            name: Some(name.to_string()),
            ..Default::default()
        };
        Org::new(id, changes, crate::time::now_ms())
    }

    /// Applies a patch, or nothing if any setting breaks a rule.
    pub fn apply(&mut self, changes: OrgChanges) -> Result<(), CoreError> {
        let mut next = self.clone();
        if let Some(name) = changes.name {
            let name = name.trim();
            if name.is_empty() || name.len() > 200 {
                return Err(CoreError::invalid("`name` must be 1–200 characters"));
            }
            next.name = name.to_string();
        }
        if let Some(r) = changes.retention_s {
            next.retention_s = r.map(|s| check_age("retention_s", s)).transpose()?;
        }
        if let Some(r) = changes.payload_retention_s {
            next.payload_retention_s =
                r.map(|s| check_age("payload_retention_s", s)).transpose()?;
        }
        if let (Some(events), Some(payloads)) = (next.retention_s, next.payload_retention_s)
            && payloads > events
        {
            return Err(CoreError::invalid(format!(
                "`payload_retention_s` ({payloads}) cannot be longer than `retention_s` ({events}): \
                 a payload goes with its event"
            )));
        }
        *self = next;
        Ok(())
    }

    /// How long this organization keeps events and runs, given the hub's default.
    pub fn retention(&self, hub_default: Option<u64>) -> Option<u64> {
        self.retention_s.or(hub_default)
    }

    /// How long this organization keeps the payloads of delivered events, given the hub's
    /// default (an event past its own retention goes whole, payload and all).
    pub fn payload_retention(&self, hub_default: Option<u64>) -> Option<u64> {
        self.payload_retention_s.or(hub_default)
    }
}

fn check_age(field: &str, s: u64) -> Result<u64, CoreError> {
    if s == 0 || s > MAX_RETENTION_S {
        return Err(CoreError::invalid(format!(
            "`{field}` must be between 1 and {MAX_RETENTION_S} seconds (ten years), not {s}"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Org {
        Org::new(
            "acme",
            OrgChanges {
                name: Some("Acme".into()),
                ..Default::default()
            },
            0,
        )
        .expect("valid")
    }

    #[test]
    fn retentions_are_checked_together() {
        let mut o = org();
        let err = o
            .apply(OrgChanges {
                retention_s: Some(Some(3600)),
                payload_retention_s: Some(Some(7200)),
                ..Default::default()
            })
            .expect_err("payloads outliving events");
        assert!(err.to_string().contains("cannot be longer"), "{err}");
        assert_eq!(o.retention_s, None, "nothing applied");
        o.apply(OrgChanges {
            retention_s: Some(Some(7200)),
            payload_retention_s: Some(Some(3600)),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            (o.retention(Some(1)), o.payload_retention(None)),
            (Some(7200), Some(3600))
        );
        o.apply(OrgChanges {
            retention_s: Some(None),
            ..Default::default()
        })
        .expect("back to the default");
        assert_eq!(o.retention(Some(99)), Some(99));
        for bad in [0, MAX_RETENTION_S + 1] {
            assert!(
                o.apply(OrgChanges {
                    retention_s: Some(Some(bad)),
                    ..Default::default()
                })
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_and_names_are_checked() {
        let named = |n: &str| OrgChanges {
            name: Some(n.into()),
            ..Default::default()
        };
        assert!(Org::new("a b", named("x"), 0).is_err());
        assert!(Org::new("ok", named("  "), 0).is_err());
        assert!(Org::new("ok", OrgChanges::default(), 0).is_err());
        assert_eq!(Org::new("ok", named(" Ok "), 0).expect("valid").name, "Ok");
    }
}
