//! Organizations and their API keys.

use serde::{Deserialize, Serialize};
use switchyard_core::org::OrgChanges;
use switchyard_core::time::to_rfc3339;
use switchyard_core::*;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgIn {
    /// 1–64 characters: letters, digits, `-_.:@`.
    pub id: String,
    pub name: String,
    /// Seconds its events, deliveries, attempts and runs are kept (1 to ten years); absent or
    /// `null` follows the hub's `[retention] max_age_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<u64>,
    /// Seconds the payload of an event whose every delivery succeeded is kept, at most
    /// `retention_s`; then `data` becomes `null`. Absent or `null` follows the hub's
    /// `[retention] payload_max_age_s` (by default payloads live as long as their events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_retention_s: Option<u64>,
}

impl OrgIn {
    pub fn changes(self) -> (String, OrgChanges) {
        (
            self.id,
            OrgChanges {
                name: Some(self.name),
                retention_s: Some(self.retention_s),
                payload_retention_s: Some(self.payload_retention_s),
            },
        )
    }
}

/// A patch of an organization: absent fields are kept, a `null` retention goes back to the
/// hub's default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<u64>)]
    pub retention_s: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<u64>)]
    pub payload_retention_s: Option<Option<u64>>,
}

impl From<OrgPatch> for OrgChanges {
    fn from(p: OrgPatch) -> Self {
        OrgChanges {
            name: p.name,
            retention_s: p.retention_s,
            payload_retention_s: p.payload_retention_s,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct OrgOut {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// The organization's own retention in seconds; `null` follows the hub's default.
    pub retention_s: Option<u64>,
    /// The organization's own payload retention in seconds; `null` follows the hub's default.
    pub payload_retention_s: Option<u64>,
}

impl From<Org> for OrgOut {
    fn from(o: Org) -> Self {
        OrgOut {
            id: o.id.into(),
            name: o.name,
            created_at: to_rfc3339(o.created_at),
            retention_s: o.retention_s,
            payload_retention_s: o.payload_retention_s,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// `admin`, `publisher` or `viewer`.
    pub role: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// The key itself: shown once, stored only as a hash.
    pub key: String,
    pub role: String,
    pub org: String,
}

/// Who a key is: what a client (the console, the CLI) needs to know before anything else.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoAmIOut {
    /// The key's organization; absent for the instance admin key.
    pub org: Option<String>,
    /// The organization's name.
    pub org_name: Option<String>,
    /// `viewer`, `publisher` or `admin`.
    pub role: String,
    pub key_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyInfoOut {
    pub id: String,
    /// The first characters of the key, to tell keys apart (never the key).
    pub prefix: String,
    pub role: String,
    pub created_at: String,
    /// When the key was last used (to the minute), if ever.
    pub last_used_at: Option<String>,
}

/// An organization's limits: those in force, those the instance admin set for it, and what it
/// uses of its quotas now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LimitsOut {
    /// The limits in force: the hub's `[limits]`, with the organization's own where set.
    #[schema(value_type = Object)]
    pub limits: switchyard_core::limits::Limits,
    /// The limits the instance admin set for this organization (absent: the hub's).
    #[schema(value_type = Object)]
    pub own: switchyard_core::limits::OrgLimits,
    /// What it stores now, counted against its quotas.
    #[schema(value_type = Object)]
    pub usage: switchyard_core::limits::Usage,
}
